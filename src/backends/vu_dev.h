/*
 * vu_dev.h - private state of one vhost-user port, shared by the files of
 * the backend:
 *   vu_conn.c           the socket (server or reconnecting client), message
 *                       framing and dispatch, the backend's lifecycle;
 *   vu_msg.c            the message handlers (one table, one row each);
 *   vu_ring.c           vring state: the one place where a ring becomes
 *                       live (vu_rings_update) and where it starts/stops;
 *   vu_mem.c            guest memory regions: mapping, checks against the
 *                       file, what a fault in guest memory does;
 *   vu_vcpu.c           the front-end's vCPU threads, sampled for the
 *                       peer state (VM-state-aware notification);
 *   vhost_user_net.c    the data path (virtio-net on the rings);
 *   virtq.c             split and packed rings, device side.
 *
 * Ownership: the control plane runs on the switch's loop thread and
 * changes anything the data path reads only while the port is quiesced
 * (hs_port_quiesce); the data path uses a queue pair's rings from the
 * thread that owns its ingress queue (transmit ring) or holds its egress
 * lock (receive ring).
 */
#ifndef HS_VU_DEV_H
#define HS_VU_DEV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "backends.h"
#include "hyperswitch/vhost_user.h"
#include "virtq.h"
#include "vnet_hdr.h"

#define VU_MAX_QP 32
#define VU_TX_SEGS 64      /* segments of one transmitted frame */
#define VU_RX_MAX_CHAINS 64 /* receive buffers merged into one frame */
#define VU_VCPU_MAX 512     /* vCPU threads of a front-end sampled */

/* Protocol constants (docs/interop/vhost-user.rst). */
enum {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_LOG_BASE = 6,
	VU_SET_LOG_FD = 7,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_SEND_RARP = 19,
	VU_NET_SET_MTU = 20,
	VU_SET_BACKEND_REQ_FD = 21,
	VU_IOTLB_MSG = 22,
	VU_GET_MAX_MEM_SLOTS = 36,
	VU_ADD_MEM_REG = 37,
	VU_REM_MEM_REG = 38,
	VU_RESET_DEVICE = 34,
	VU_SET_STATUS = 39,
	VU_GET_STATUS = 40,
};

#define VU_VERSION 0x1
#define VU_FLAG_REPLY 0x4
#define VU_FLAG_NEED_REPLY 0x8
#define VU_F_PROTOCOL_FEATURES 30
#define VU_F_LOG_ALL 26
#define VU_PF_MQ 0
#define VU_PF_LOG_SHMFD 1
#define VU_PF_RARP 2
#define VU_PF_REPLY_ACK 3
#define VU_PF_BACKEND_REQ 5
#define VU_PF_IOTLB 7
#define VU_PF_MTU 4
#define VU_PF_MEM_SLOTS 15
#define VU_PF_RESET_DEVICE 13
#define VU_PF_STATUS 16
#define VU_BACKEND_IOTLB_MSG 1 /* back-end -> front-end request */
#define VU_IOTLB_MISS 1
#define VU_IOTLB_UPDATE 2
#define VU_IOTLB_INVALIDATE 3
#define VU_VRING_F_LOG 0x1 /* SET_VRING_ADDR flags: log the used ring */
#define VU_VRING_NOFD 0x100
#define VU_VRING_IDX 0xff
#define VU_MAX_PAYLOAD 4096
#define VU_TOKEN_ANNOUNCE UINT64_MAX /* recv_burst token of the announce frame */
#define VU_MAX_MEM_SLOTS VU_MAX_REGIONS

struct vu_hdr {
	uint32_t request, flags, size;
};

struct vu_state {
	uint32_t index, num;
};

struct vu_addr {
	uint32_t index, flags;
	uint64_t desc, used, avail, log;
};

struct vu_iotlb_msg {
	uint64_t iova, size, uaddr;
	uint8_t perm, type;
	uint8_t pad[6];
};

struct vu_log_desc {
	uint64_t mmap_size, mmap_offset;
};

struct vu_region_desc {
	uint64_t gpa, size, uva, mmap_off;
};

struct vu_memory {
	uint32_t nregions, padding;
	struct vu_region_desc r[8];
};

/* One message being handled: header, payload, the fds that came with it
 * (a handler takes what it keeps), and the reply payload. */
struct vu_msg {
	struct vu_hdr hdr;
	uint8_t *payload;
	int *fds;
	unsigned nfds;
	uint8_t reply[64];
	uint32_t reply_size;
};

/* One vring. What the front-end sets is kept as it sent it and
 * interpreted only by vu_ring_start (position, size) and vu_rings_update
 * (addresses against the memory table in force), never on arrival: the
 * front-end chooses the order of its messages. */
struct vu_vring {
	uint32_t num;              /* SET_VRING_NUM */
	uint64_t desc_uva, avail_uva, used_uva; /* SET_VRING_ADDR */
	bool addr_set;
	bool log_used;             /* VHOST_VRING_F_LOG */
	uint64_t log_gpa;          /* where the front-end says the used ring is */
	uint32_t base;             /* SET_VRING_BASE; where a stopped ring was */
	int kickfd, callfd, errfd;
	bool started;              /* SET_VRING_KICK seen, GET_VRING_BASE not since */
	bool fresh;                /* started, notifications not yet set up */
	bool enabled;              /* SET_VRING_ENABLE */
	bool live;                 /* the data path may use it; the data
				      path clears it too (vu_ring_broken):
				      read with vu_ring_live outside
				      vu_quiesce */
	const char *why_not;       /* why it is not live (logged on change) */
	bool kicks_off;            /* data path: a poller suppressed kicks */
	_Atomic bool posted_want;  /* a receive ring: the switch asked to be
				      told of posted buffers (frames wait in
				      its backlog); kept across ring restarts,
				      cleared by a device reset */
	bool miss_reported;        /* vq.miss was sent to the front-end */
	bool polled;               /* started without a kick fd (NOFD): the
				      front-end polls, so the switch looks at
				      the ring every millisecond (its own
				      eventfd as kickfd, vu_ring.c) */
	struct vq vq;              /* data-path state */
};

/* A receive reservation: the buffers given for one outgoing frame. */
struct vu_resv {
	uint16_t first, n;         /* chains in vu_rxq.chain[] */
	uint32_t seg0;             /* where the frame goes: vu_rxq.segs[seg0..] */
	uint16_t nseg;
	struct hs_seg hdr[HSB_VNET_HDR_LEN]; /* where the virtio-net header goes:
				      any layout, down to a byte a piece */
	uint16_t nhdr;
};

/* Scratch of one receive ring, sized from its ring size when it starts
 * (a reservation can never pop more chains than the ring holds). */
struct vu_rxq {
	struct vq_chain *chain;    /* [chain_cap] */
	uint32_t chain_cap, n_chain;
	struct hs_seg *segs;       /* [seg_cap]: 4 per chain */
	uint32_t seg_cap, n_seg;
	struct vu_resv resv[HS_RESERVE_MAX];
	uint32_t n_resv;
	_Atomic uint64_t bad_buffers; /* receive buffers given back unused */
};

struct vu_txq {
	struct hs_seg segs[64][VU_TX_SEGS];
};

/* Refused chains of a transmit ring's current burst that follow good
 * frames: given back after the frames before them (recv_done), so that
 * the used ring keeps the order the chains came in (VIRTIO_F_IN_ORDER). */
struct vu_txlate {
	struct vq_chain ch[64];
	uint8_t at[64];       /* how many of the burst's frames come first */
	uint8_t n, next, done;
};

/* The front-end's vCPU threads (vu_vcpu.c; loop thread). */
struct vu_vcpus {
	int procfd;                /* /proc/<pid> of the front-end; -1: none */
	pid_t pid;
	hs_timer_t *timer;         /* from the connect to vu_vcpu_stop */
	uint32_t period_ms;        /* the timer's */
	uint32_t ms;               /* since the thread list was read */
	unsigned n, at;            /* threads sampled; the last found running */
	bool full_logged;          /* more than VU_VCPU_MAX: said once */
	bool idle;                 /* no frames lately: not sampled */
	uint32_t quiet_ms;         /* since the port last moved a frame */
	uint32_t act_ms;           /* since its frame count was read */
	uint64_t frames;           /* rx + tx, when last read */
	enum hs_peer_state peer;   /* what the core was last told */
	int fd[VU_VCPU_MAX];       /* task/<tid>/stat, open */
	unsigned tid[VU_VCPU_MAX];
};

struct vu_dev {
	hs_port_t *port;
	struct hs_vhost_user_config cfg;
	char path[108];
	uint16_t nqp;

	/* connection (loop thread) */
	int listen_fd, conn_fd;
	bool created_socket;
	hs_watch_t *listen_w, *conn_w;
	hs_timer_t *retry_t;
	hs_timer_t *poll_t;        /* while some ring is polled */
	uint8_t rbuf[VU_MAX_PAYLOAD + sizeof(struct vu_hdr)];
	size_t rlen;
	int rfds[8];
	unsigned nrfds;

	/* guest memory faults (vu_mem.c): the SIGBUS handler signals fault_fd */
	int fault_fd;
	hs_watch_t *fault_w;

	/* negotiation */
	uint64_t offered, features, proto_offered, proto;
	bool owner;
	uint8_t status;
	uint16_t hdr_len;          /* 10 or 12 */
	bool mrg;
	uint32_t tx_caps;          /* HS_CAP_* the guest may send (HOST_*) */
	uint32_t mtu;              /* NET_SET_MTU, 0: none */

	/* live migration: the dirty page log (SET_LOG_BASE) the data path
	 * marks while VHOST_F_LOG_ALL is negotiated (vu_rings_update gives
	 * each ring's vq a pointer to `log`), and the optional eventfd
	 * (SET_LOG_FD) signalled after a burst marked pages */
	struct vu_log log;
	struct vu_region log_map;
	int log_fd;

	/* vIOMMU (vu_iotlb.c): the device IOTLB (with VIRTIO_F_IOMMU_PLATFORM
	 * every ring and descriptor address is an IOVA translated through
	 * it), its scratch, and the back-end request channel on which misses
	 * are reported (data-path threads too: backend_lock) */
	struct vu_iotlb *iotlb, *iotlb_tmp;
	int backend_fd;
	pthread_mutex_t backend_lock;

	/* announce (SEND_RARP): a RARP frame from the guest's MAC that the
	 * next transmit burst of queue 0 hands the switch as if the guest had
	 * sent it, so the switch learns where the guest is now and the rest
	 * of the network hears it */
	_Atomic bool announce;
	uint8_t announce_frame[60];

	struct vu_mem *mem;        /* current table; data path reads it */
	struct vu_vring vr[2 * VU_MAX_QP];
	struct vu_txq *txq;        /* [nqp] */
	struct vu_txlate *txlate;  /* [nqp] */
	struct vu_rxq *rxq;        /* [nqp] */

	struct vu_vcpus vcpu;

	_Atomic bool connected;
	_Atomic uint64_t acked;    /* features, for hs_vhost_user_features */
	uint16_t active_qp; /* queue pairs live, last logged */
	/* counters */
	_Atomic uint64_t msgs, bad_msgs, connects, disconnects, broken_rings,
		memory_faults, log_overflow, announces, iotlb_misses, iotlb_updates,
		iotlb_invalidates, iotlb_flushes, vcpu_reads, vcpu_scans, vcpu_threads,
		peer_running, peer_not_running, vcpu_idle;
};

static inline bool vu_has(const struct vu_dev *d, unsigned bit)
{
	return (d->features >> bit) & 1;
}

/* Adds one to an eventfd (kick, call, error or log fd): the one way the
 * backend signals. A full counter is signalled already; a front-end that
 * closed its end gets nothing (and no SIGPIPE: eventfds only). */
static inline void vu_poke(int fd)
{
	uint64_t one = 1;
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0) {
		/* full or gone: nothing more to do */
	}
}

/* Whether the ring is live, read by the control plane while the data
 * path runs: vu_ring_broken may clear it meanwhile (a stale answer only
 * costs a look at a ring that just stopped). */
static inline bool vu_ring_live(const struct vu_vring *vr)
{
	return __atomic_load_n(&vr->live, __ATOMIC_RELAXED);
}

/* Makes the data path look at a ring as a kick from the driver would. */
static inline void vu_ring_look(const struct vu_vring *vr)
{
	vu_poke(vr->kickfd);
}

static inline void vu_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* vu_conn.c */
void vu_disconnect(struct vu_dev *d, const char *why);
/* Back to a device nobody configured; RESET_DEVICE keeps the owner and
 * the protocol features (the session), a disconnect does not. */
void vu_device_reset(struct vu_dev *d, bool keep_session);

/* vu_vcpu.c (loop thread; stop also from the port's stop): sampling the
 * vCPU state of the process at the other end of conn_fd starts at a
 * connect and stops (peer state back to unknown) at a disconnect */
void vu_vcpu_start(struct vu_dev *d, int conn_fd);
void vu_vcpu_stop(struct vu_dev *d);

/* vu_msg.c: handles one complete message; false ends the connection */
bool vu_dispatch(struct vu_dev *d, struct vu_msg *m);

/* vu_ring.c (control plane, port quiesced unless said otherwise) */
void vu_rings_update(struct vu_dev *d);
int vu_ring_start(struct vu_dev *d, unsigned i, int kickfd);
uint32_t vu_ring_stop(struct vu_dev *d, unsigned i);
void vu_ring_reset(struct vu_dev *d, unsigned i);
void vu_poll_update(struct vu_dev *d); /* polled rings: timer on or off */
const char *vu_ring_check_addr(const struct vu_dev *d, unsigned i, uint64_t desc,
			       uint64_t avail, uint64_t used);
/* data path: a ring broke while the data path used it */
void vu_ring_broken(struct vu_dev *d, struct vu_vring *vr);

/* vu_log.c (control plane) */
int vu_log_set(struct vu_dev *d, const struct vu_log_desc *ld, int fd);
void vu_log_reset(struct vu_dev *d);
void vu_log_drop(struct vu_dev *d); /* unmaps the log; quiesced */
void vu_log_ring(const struct vu_dev *d, const struct vu_vring *vr, struct vq *vq);
void vu_announce(struct vu_dev *d, const uint8_t mac[6]);
/* Pauses and resumes the port's data path around a change it must not see
 * half-done. The backend does this from the switch's loop thread only,
 * never inside a round, where hs_port_quiesce cannot fail; a failure is a
 * broken invariant, and going on would let the data path read memory
 * being replaced: stop. */
static inline void vu_quiesce(struct vu_dev *d)
{
	int rc = hs_port_quiesce(d->port);
	if (rc) {
		hs_port_log(d->port, HS_LOG_ERROR, "cannot pause the data path: %s",
			    hs_strerror(rc));
		abort();
	}
}

static inline void vu_resume(struct vu_dev *d)
{
	int rc = hs_port_resume(d->port);
	if (rc) {
		hs_port_log(d->port, HS_LOG_ERROR, "unbalanced resume: %s", hs_strerror(rc));
		abort();
	}
}

/* data path: signals the log eventfd (SET_LOG_FD) after a burst */
static inline void vu_log_signal(const struct vu_dev *d)
{
	vu_poke(d->log_fd);
}

/* vu_iotlb.c */
int vu_iotlb_msg(struct vu_dev *d, const struct vu_iotlb_msg *m);
int vu_iotlb_set_channel(struct vu_dev *d, int fd);
void vu_iotlb_reset(struct vu_dev *d, bool keep_channel);
const char *vu_ring_area(const struct vu_dev *d, struct vq *vq, uint64_t addr,
			 uint64_t len, uint8_t perm, void **out);
/* reports vr's IOTLB miss to the front-end once (data path or control) */
void vu_iotlb_report(struct vu_dev *d, struct vu_vring *vr);
extern const char vu_iotlb_wait[]; /* why a ring waits for an entry */

/* vu_mem.c */
int vu_region_map(struct vu_dev *d, struct vu_region *out,
		  const struct vu_region_desc *rd, int fd);
void vu_region_unmap(struct vu_region *r);
void vu_mem_free(struct vu_mem *m);
bool vu_regions_overlap(const struct vu_mem *m);
struct vu_mem *vu_mem_install(struct vu_dev *d, struct vu_mem *m);
int vu_faults_watch(struct vu_dev *d);

/* vhost_user_net.c: the data-path ops */
unsigned vu_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts, unsigned max);
unsigned vu_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts, unsigned n);
unsigned vu_send_reserve(void *priv, uint16_t q, const struct hs_out *out,
			 unsigned n, struct hs_iobuf *bufs);
unsigned vu_send_commit(void *priv, uint16_t q, const struct hs_out *out,
			unsigned n);
void vu_notify(void *priv, uint16_t q, unsigned ev);
bool vu_set_notify(void *priv, uint16_t q, unsigned ev, bool enable);

extern const struct hs_backend_ops hs__vhost_user_ops;

#endif /* HS_VU_DEV_H */
