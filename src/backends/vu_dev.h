/*
 * vu_dev.h - private state of one vhost-user port, shared by the control
 * plane (vhost_user.c: socket, messages, memory table, vring setup) and
 * the data path (vhost_user_net.c: the backend ops on the rings).
 *
 * Ownership: the control plane runs on the switch's loop thread and
 * changes anything the data path reads only while the port is quiesced
 * (hs_port_quiesce); the data path uses a queue pair's rings from the
 * thread that owns its ingress queue (transmit ring) or holds its egress
 * lock (receive ring).
 */
#ifndef HS_VU_DEV_H
#define HS_VU_DEV_H

#include <stdatomic.h>

#include "backends.h"
#include "hyperswitch/vhost_user.h"
#include "virtq.h"
#include "vnet_hdr.h"

#define VU_MAX_QP 32
#define VU_TX_SEGS 64      /* segments of one transmitted frame */
#define VU_RX_MAX_CHAINS 64 /* receive buffers merged into one frame */

/* One vring as the control plane sees it. */
struct vu_vring {
	uint32_t num;              /* size set by SET_VRING_NUM */
	uint64_t desc_uva, avail_uva, used_uva;
	bool addr_set;
	uint32_t base;             /* from SET_VRING_BASE */
	int kickfd, callfd, errfd;
	bool kick_set, enabled;
	bool live;                 /* the data path may use it */
	bool kicks_off;            /* data path: a poller suppressed kicks */
	struct vq vq;              /* data-path state */
};

/* A receive reservation: the buffers given for one outgoing frame. */
struct vu_resv {
	uint16_t first, n;         /* chains in vu_rxq.chain[] */
	struct hs_seg hdr[2];      /* where the virtio-net header goes */
	uint16_t nhdr;
};

/* Scratch of one receive ring, sized from its ring size when it is set up
 * (a reservation can never pop more chains than the ring holds). */
struct vu_rxq {
	struct vq_chain *chain;    /* [chain_cap] */
	uint32_t chain_cap, n_chain;
	struct hs_seg *segs;       /* [seg_cap]: 4 per chain */
	uint32_t seg_cap, n_seg;
	struct vu_resv resv[HS_RESERVE_MAX];
	uint32_t n_resv;
};

struct vu_txq {
	struct hs_seg segs[64][VU_TX_SEGS];
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
	uint8_t rbuf[4096 + 12];
	size_t rlen;
	int rfds[8];
	unsigned nrfds;

	/* negotiation */
	uint64_t offered, features, proto_offered, proto;
	bool owner;
	uint8_t status;
	uint16_t hdr_len;          /* 10 or 12 */
	bool mrg;
	uint32_t tx_caps;          /* HS_CAP_* the guest may send (HOST_*) */

	struct vu_mem *mem;        /* current table; data path reads it */
	struct vu_vring vr[2 * VU_MAX_QP];
	struct vu_txq *txq;        /* [nqp] */
	struct vu_rxq *rxq;        /* [nqp] */

	_Atomic bool connected;
	_Atomic uint64_t acked;    /* features, for hs_vhost_user_features */
	uint16_t active_qp; /* queue pairs live, last logged */
	/* counters */
	_Atomic uint64_t msgs, bad_msgs, connects, disconnects, broken_rings;
};

/* vhost_user_net.c: the data-path ops */
unsigned vu_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts, unsigned max);
unsigned vu_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts, unsigned n);
unsigned vu_send_reserve(void *priv, uint16_t q, const struct hs_out *out,
			 unsigned n, struct hs_iobuf *bufs);
unsigned vu_send_commit(void *priv, uint16_t q, const struct hs_out *out,
			unsigned n);
void vu_notify(void *priv, uint16_t q, unsigned ev);
bool vu_set_notify(void *priv, uint16_t q, unsigned ev, bool enable);

/* vhost_user.c: a ring broke while the data path used it */
void vu_ring_broken(struct vu_dev *d, struct vu_vring *vr);

extern const struct hs_backend_ops hs__vhost_user_ops;

#endif /* HS_VU_DEV_H */
