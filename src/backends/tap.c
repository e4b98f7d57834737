/*
 * tap.c - the "tap" backend: a Linux tap device as a port (see tap.h).
 *
 *  kernel -> switch (recv_burst): per queue, a ring of receive buffers;
 *    each read() brings one frame behind its virtio-net header, which is
 *    turned into offload metadata; the switch copies the frame from there
 *    into its receivers. recv_done frees the buffers (in order).
 *  switch -> kernel (send_reserve/send_commit): one writev() per frame,
 *    the virtio-net header (filled from the frame's offload metadata)
 *    first. A small frame is copied by the switch into a per-queue
 *    staging area and written from there. A large one is reserved as a
 *    foreign buffer: the switch's copy ops for it come to tap_copy, which
 *    keeps those whose source is the sending frame itself
 *    (HS_COPY_SRC_STABLE) as iovecs pointing into the sender's memory and
 *    copies only the rest (switch scratch: a VLAN tag, a segment's patched
 *    header) into the staging area. So the frame's bytes are copied once,
 *    by the kernel, from the sender's buffer into the skb: the one copy of
 *    the design, with no staging copy before it. The staging area holds
 *    HS_RESERVE_MAX frames of the largest size; it is reserved address
 *    space, and only what frames touch becomes memory.
 *
 * With io_uring (built with liburing, unless HS_TAP_NO_URING): the tap
 * interface still moves one frame per read or write, but a round's reads
 * go to the kernel as one batch (one io_uring_enter), and so do the
 * writes of a send_commit. Every op carries RWF_NOWAIT: it completes
 * inside the submitting call (a read with no frame waiting gets EAGAIN),
 * so nothing is in flight once the call returns, order is kept, and the
 * data path never blocks. Since no op outlives the call, rings belong to
 * threads, not to queues: each thread that reads or writes a tap (a
 * worker, a host thread switching in sender context, the thread adding
 * a port) gets one ring on first use, kept until it exits. A ring torn
 * down while other threads had used it would interrupt their sleeping
 * system calls (the kernel's teardown signals every submitter), and a
 * ring per queue and direction would triple a tap's files. A read batch
 * asks for one more frame than the last burst brought, and for twice as
 * many again while every read finds one. tun does RWF_NOWAIT ops only
 * from Linux 6.4 (FMODE_NOWAIT): tap_open asks the kernel with a
 * zero-length read (0 where supported, and no frame is taken; EOPNOTSUPP
 * before), and a port whose kernel cannot, or a thread that cannot have a
 * ring, makes one system call per frame. On this machine (a PVM guest) a
 * system call costs ~1.2 us to enter and leave; a batched read or write
 * ~0.2-0.3 us.
 *
 * The fd of each queue is given to the switch as a level-triggered kick
 * fd (HS_EV_FD_LEVEL): the switch polls it and never reads it; readiness
 * ends when recv_burst has read everything (EAGAIN).
 *
 * The kernel is more trusted than a guest, but headers are still checked:
 * a frame shorter than the header plus an Ethernet header, or with offload
 * metadata that was not enabled, is dropped and counted (bad_descriptor,
 * bad_offload).
 */
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_tun.h>
#include <linux/net_namespace.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#ifdef HS_HAVE_URING
#include <liburing.h>
#include <sys/eventfd.h>
#endif

#include "backends.h"
#include "nl_dump.h"
#include "vnet_hdr.h"

#define TAP_HDR HSB_VNET_HDR_LEN
#define TAP_BUF 65664		   /* 52 + header + HS_FRAME_MAX, rounded */
#define TAP_HEAD 52		   /* header at 52: the frame starts on a line */
#define TAP_DEF_RING 64
#define TAP_MAX_RING 4096
/* Frames of at least this many bytes go out by reference (see above);
 * below it a copy into the staging area costs less than the iovecs. */
#define TAP_ZC_MIN 512
#define TAP_IOV_MAX 2048	   /* iovecs per queue and reservation */
/* A frame in more pieces than this is staged: gathering many small pieces
 * costs the kernel more than one copy here does. */
#define TAP_FRAME_IOV 32
/* Ops per io_uring batch (each ring's submission queue). */
#define TAP_URING_N 64

struct tap_q {
	int fd;
	/* kernel -> switch */
	uint8_t *rx_area;        /* ring * TAP_BUF */
	/* buffers in flight: [tail, head), numbered from 0 (64 bits: they
	 * never wrap; the slot of buffer i is i % ring) */
	uint64_t rx_head, rx_tail;
	struct hs_seg *rx_segs;  /* one per buffer */
	/* switch -> kernel */
	uint8_t *tx_area;        /* HS_RESERVE_MAX * TAP_BUF, reserved */
	size_t tx_area_len;
	struct hs_seg tx_segs[HS_RESERVE_MAX];
	unsigned n_resv;
	/* frames sent by reference: their iovecs (after the header's) */
	struct tap_txf {
		uint8_t *stage;   /* the frame's room in tx_area */
		uint32_t filled;  /* bytes described so far */
		uint16_t iov0, niov;
		bool staged;      /* written from stage after all */
	} txf[HS_RESERVE_MAX];
	struct iovec iov[TAP_IOV_MAX];
	unsigned n_iov;
	/* Counters of this queue, each with one writer (the ingress queue's
	 * owner, or the holder of the egress queue's lock): no line shared
	 * between queues is written. What the core counts already (frames,
	 * drops by reason) is not counted again here. */
	_Atomic uint64_t read_errors, write_errors, by_ref, by_ref_staged;
	_Atomic uint64_t rx_uring_calls, tx_uring_calls;
	int write_errno;       /* the last write error logged (egress lock) */
#ifdef HS_HAVE_URING
	/* this direction batches (see the top of the file); each is only
	 * read and written by that direction's user */
	bool rx_uring, tx_uring;
	uint16_t rx_want;        /* reads in the next burst's first batch */
	struct iovec rx_iov[TAP_URING_N];
	struct iovec tx_one[TAP_URING_N]; /* staged frames' single iovec */
#endif
};

/* Whether two namespace files (fstat'ed) are one namespace. */
static bool same_ns(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* rtnetlink requests: a socket, its buffer, the next sequence number. */
struct tap_req {
	struct mnl_socket *s;
	char *buf;
	uint32_t seq;
};

struct tap_port {
	hs_port_t *port;
	struct hs_tap_config cfg;
	char ifname[IFNAMSIZ];
	unsigned tun_offload;    /* TUN_F_* accepted by the kernel */
	uint32_t caps;           /* the same as HS_CAP_*, both directions */
	struct tap_q *q;        /* cfg.queues */
	_Atomic bool gone;
	bool uring;              /* io_uring batches (set by tap_open) */
	hs_timer_t *gone_t;      /* takes the fds out of the data path */
	bool by_ref;             /* large frames sent by reference */
	/* The device's state, followed over rtnetlink on the loop (see
	 * "the device's state" below): the port's link is up while the
	 * device is up with a carrier, in whatever namespace it is. */
	struct mnl_socket *nl;   /* link events of every namespace with an id */
	char *nl_buf;            /* its messages */
	struct tap_req req;      /* requests (the loop's, once started) */
	hs_watch_t *nl_w;
	struct stat own_ns;      /* the namespace of those sockets */
	int nsid;                /* the device's namespace's id here; -1 ours */
	int ifindex;             /* the device's index there; 0: not followed */
	bool if_up;              /* up with a carrier, as last heard */
	bool all_ns;             /* nl hears other namespaces */
	bool unfollowed;         /* said why it is not followed */
	bool retry_said;         /* said that a look failed and is retried */
	uint32_t retry_ms;       /* the wait before the next look (backoff) */
	hs_timer_t *retry_t;     /* that look (made by tap_start) */
	bool started;            /* set_up changes the port's link */
};

static void tap_close(void *priv);

/* Adds n to a counter that only the calling thread writes. */
static void ctr_add(_Atomic uint64_t *c, uint64_t n)
{
	if (n)
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
				      memory_order_relaxed);
}

static void free_q(struct tap_q *q, uint32_t ring)
{
	if (q->fd >= 0)
		close(q->fd);
	if (q->rx_area)
		munmap(q->rx_area, (size_t)ring * TAP_BUF);
	if (q->tx_area)
		munmap(q->tx_area, q->tx_area_len);
	free(q->rx_segs);
}

static void *reserve_area(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---- io_uring batches ---------------------------------------------------------- */

#ifdef HS_HAVE_URING
struct tap_ring {
	struct io_uring ring;
};
static __thread struct tap_ring *tls_ring;
static __thread int tls_ring_err;       /* why this thread has none */
static __thread uint64_t tls_ring_retry; /* when to try again (transient) */
static __thread bool tls_ring_logged;
static pthread_key_t ring_key;   /* frees a thread's ring when it exits */
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;
static int ring_key_err;         /* 0 once ring_key exists */
static _Atomic bool ring_key_live;
/* What the kernel said to the probe at open: 0 not asked yet, 1 tun does
 * non-blocking io_uring ops, -1 it does not (the same for every tap). */
static _Atomic int kernel_batches;

/* The thread-exit destructor (and the end of a failed ring). Other
 * destructors may still run in this thread and send frames: they find no
 * ring and make system calls. */
static void ring_free(void *p)
{
	struct tap_ring *r = p;
	if (r == tls_ring) {
		tls_ring = NULL;
		tls_ring_err = -ESRCH;
		tls_ring_retry = UINT64_MAX;
	}
	io_uring_queue_exit(&r->ring);
	free(r);
}

/* In a child of fork(): the ring inherited from the forking thread maps
 * the parent's queues; the child lets go of its copy (the parent's ring is
 * untouched: its file is still open there) and makes its own if it needs
 * one. Other threads' rings stay in the child as unused files and
 * mappings until it execs or exits; fork handlers the host registered
 * before the library's first ring run before this one. */
static void ring_atfork_child(void)
{
	struct tap_ring *r = tls_ring;
	tls_ring = NULL;
	tls_ring_err = 0;
	if (r) {
		pthread_setspecific(ring_key, NULL);
		io_uring_queue_exit(&r->ring);
		free(r);
	}
}

static void ring_key_make(void)
{
	ring_key_err = -pthread_key_create(&ring_key, ring_free);
	if (!ring_key_err) {
		atomic_store(&ring_key_live, true);
		ring_key_err = -pthread_atfork(NULL, NULL, ring_atfork_child);
	}
}

/* Unloading the library while threads with rings live: their destructor
 * would be gone; the key goes first (their rings are then left to exit). */
__attribute__((destructor)) static void ring_key_fini(void)
{
	if (atomic_load(&ring_key_live))
		pthread_key_delete(ring_key);
}

/* The calling thread's ring, made on its first use (one allocation and
 * one file per thread, for the thread's life); NULL, with the reason in
 * *err, if the thread has none: io_uring refused (ENOSYS, EPERM under
 * kernel.io_uring_disabled) or could not have one now (EMFILE, ENFILE,
 * ENOMEM: tried again a second later), or its ring failed. The first
 * failure of a thread is logged (port t). */
static struct io_uring *thread_ring(struct tap_port *t, int *err)
{
	if (HSB_LIKELY(tls_ring != NULL))
		return &tls_ring->ring;
	if (tls_ring_err && (tls_ring_retry == UINT64_MAX || hsb_mono_ms() < tls_ring_retry)) {
		*err = tls_ring_err;
		return NULL;
	}
	pthread_once(&ring_once, ring_key_make);
	int rc = ring_key_err;
	bool transient = false;
	struct tap_ring *r = NULL;
	if (!rc) {
		/* A file free for the ring first: io_uring_setup that fails
		 * for want of one (EMFILE) has already made the ring, and its
		 * teardown ends this thread's next sleeping call (EINTR). */
		int probe = eventfd(0, EFD_CLOEXEC);
		if (probe < 0)
			rc = -errno;
		else
			close(probe);
		transient = rc != 0;
	}
	if (!rc && !(r = malloc(sizeof(*r))))
		rc = -ENOMEM;
	if (!rc)
		rc = io_uring_queue_init(TAP_URING_N, &r->ring, 0);
	if (!rc && (rc = -pthread_setspecific(ring_key, r)))
		io_uring_queue_exit(&r->ring);
	if (rc) {
		free(r);
		*err = tls_ring_err = rc < 0 ? rc : -EINVAL;
		/* the key or fork handler failing is not tried again */
		transient |= !ring_key_err &&
			     (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -EAGAIN);
		tls_ring_retry = transient ? hsb_mono_ms() + 1000 : UINT64_MAX;
		if (!tls_ring_logged) {
			tls_ring_logged = true;
			hs_port_log(t->port, HS_LOG_WARN, "tap %s: this thread cannot have an "
				    "io_uring (%s): a system call per frame%s", t->ifname,
				    hs_strerror(rc), transient ? " until it can" : "");
		}
		return NULL;
	}
	tls_ring = r;
	tls_ring_err = 0;
	return &r->ring;
}

/* The thread's ring failed (a submission or a wait that did not work):
 * its submission queue may hold ops that never went in, so it is never
 * used again; the thread makes system calls from now on. (Its teardown
 * may end one of this thread's sleeping system calls early: EINTR.) */
static void ring_failed(struct tap_port *t, int err)
{
	struct tap_ring *r = tls_ring;
	pthread_setspecific(ring_key, NULL);
	ring_free(r);
	tls_ring_err = err;
	hs_port_log(t->port, HS_LOG_WARN, "tap %s: io_uring failed (%s): this thread makes a "
		    "system call per frame from now on", t->ifname, hs_strerror(err));
}

/* Makes a prepared read or write non-blocking (see the top of the file)
 * and tags it with its index in the batch. */
static void nowait_op(struct io_uring_sqe *sqe, uint64_t index)
{
	sqe->rw_flags = RWF_NOWAIT;
	io_uring_sqe_set_data64(sqe, index);
}

/* Submits the k ops prepared on r (user_data: their index) and reaps
 * them into res[]. RWF_NOWAIT ops complete while they are submitted, so
 * the wait ends at once. Returns how many were submitted (in order: ops
 * from there on never ran); *err is 0, or why the ring failed, and then
 * res[i] is -ECANCELED for an op whose completion never came (submitted:
 * its fate is unknown). */
static unsigned uring_run(struct io_uring *r, unsigned k, int32_t *res, int *err)
{
	unsigned sub = 0, got = 0;
	*err = 0;
	for (unsigned i = 0; i < k; i++)
		res[i] = -ECANCELED;
	while (sub < k) {
		int rc = io_uring_submit_and_wait(r, k - sub);
		if (rc == -EINTR)
			continue;
		if (rc <= 0) {
			*err = rc < 0 ? rc : -EIO;
			break;
		}
		sub += (unsigned)rc;
	}
	while (got < sub) {
		struct io_uring_cqe *cqe;
		int rc = io_uring_wait_cqe(r, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc < 0) {
			*err = rc;
			break;
		}
		uint64_t i = io_uring_cqe_get_data64(cqe);
		if (i < k)
			res[i] = cqe->res;
		io_uring_cqe_seen(r, cqe);
		got++;
	}
	return sub;
}

/* A direction of a queue goes back to system calls (once, logged): the
 * kernel refused an op without running it (EOPNOTSUPP), which the probe
 * at open should have found first. */
static void uring_off(struct tap_port *t, uint16_t qi, bool *on, const char *dir, int err)
{
	*on = false;
	hs_port_log(t->port, HS_LOG_WARN, "tap %s queue %u: io_uring cannot %s it (%s): "
		    "one system call per frame from now on", t->ifname, qi, dir,
		    hs_strerror(err));
}

/* Whether the port batches (t->uring): asks the kernel with a zero-length
 * non-blocking read on the calling thread's ring. tun answers 0 without
 * taking a frame where it does RWF_NOWAIT ops (Linux 6.4 on); io_uring
 * answers EOPNOTSUPP before, without calling the device. The answer is
 * the same for every tap: once known, it is not asked again. A thread
 * that cannot ask (no ring now) leaves the port batching: an op refused
 * with EOPNOTSUPP sends that queue back to system calls. */
static void uring_probe(struct tap_port *t)
{
	if (t->cfg.flags & HS_TAP_NO_URING)
		return;
	int known = atomic_load(&kernel_batches);
	if (known) {
		t->uring = known > 0;
		return;
	}
	int err = 0;
	struct io_uring *r = thread_ring(t, &err);
	if (!r) {
		t->uring = err != -ENOSYS && err != -EPERM;
		return;
	}
	static uint8_t none;
	struct iovec v = {.iov_base = &none, .iov_len = 0};
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	if (!sqe) { /* never: nothing else is queued on the thread's ring */
		t->uring = true;
		return;
	}
	io_uring_prep_readv(sqe, t->q[0].fd, &v, 1, 0);
	nowait_op(sqe, 0);
	int32_t res;
	unsigned sub = uring_run(r, 1, &res, &err);
	if (err) {
		ring_failed(t, err);
		t->uring = true;
		return;
	}
	t->uring = sub == 1 && res == 0;
	if (sub == 1 && (res == 0 || res == -EOPNOTSUPP))
		atomic_store(&kernel_batches, res == 0 ? 1 : -1);
	if (!t->uring)
		hs_port_log(t->port, HS_LOG_INFO, "tap %s: the kernel does no non-blocking "
			    "io_uring reads of a tap (%s; Linux 6.4 and later do)", t->ifname,
			    hs_strerror(sub == 1 ? res : -EIO));
}
#endif

/* Opens one queue of the device; the first creates it unless ATTACH. */
static int open_queue(struct tap_port *t, struct tap_q *q, bool first)
{
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int e = -errno;
		hs_port_log(t->port, HS_LOG_ERROR, "cannot open /dev/net/tun: %s",
			    hs_strerror(e));
		return e;
	}
	q->fd = fd;
	struct ifreq ifr = {0};
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (t->cfg.queues > 1)
		ifr.ifr_flags |= IFF_MULTI_QUEUE;
	memcpy(ifr.ifr_name, t->ifname, sizeof(ifr.ifr_name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = -errno;
		hs_port_log(t->port, HS_LOG_ERROR, "tap %s: TUNSETIFF: %s%s",
			    t->ifname[0] ? t->ifname : "(new)", hs_strerror(e),
			    e == -EBUSY    ? " (in use by another program)"
			    : e == -EINVAL ? " (a device of another kind, or other queue flags, has this name)"
			    : e == -EPERM  ? " (needs CAP_NET_ADMIN)"
					   : "");
		return e;
	}
	if (first)
		memcpy(t->ifname, ifr.ifr_name, sizeof(t->ifname));
	int sz = TAP_HDR;
	if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0)
		return -errno;
	if (first && !(t->cfg.flags & HS_TAP_NO_OFFLOAD)) {
		unsigned want = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
#ifdef TUN_F_USO4
		if (ioctl(fd, TUNSETOFFLOAD, want | TUN_F_USO4 | TUN_F_USO6) == 0)
			want |= TUN_F_USO4 | TUN_F_USO6;
		else
#endif
			if (ioctl(fd, TUNSETOFFLOAD, want) < 0)
			want = 0;
		t->tun_offload = want;
	} else if (!(t->cfg.flags & HS_TAP_NO_OFFLOAD)) {
		if (ioctl(fd, TUNSETOFFLOAD, t->tun_offload) < 0)
			return -errno;
	} else if (ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
		return -errno;
	}
	q->rx_area = reserve_area((size_t)t->cfg.ring * TAP_BUF);
	q->tx_area_len = (size_t)HS_RESERVE_MAX * TAP_BUF;
	q->tx_area = reserve_area(q->tx_area_len);
	q->rx_segs = calloc(t->cfg.ring, sizeof(*q->rx_segs));
	if (!q->rx_area || !q->tx_area || !q->rx_segs)
		return -ENOMEM;
	return 0;
}

/* ioctl on the device through a socket (MTU, flags). */
static int if_ioctl(const char *name, unsigned long req, struct ifreq *ifr)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	memcpy(ifr->ifr_name, name, IFNAMSIZ);
	int rc = ioctl(s, req, ifr) < 0 ? -errno : 0;
	close(s);
	return rc;
}

/* ---- the device's state ------------------------------------------------------- */

/* A tap is often moved into another network namespace, where it goes
 * down, comes up again, and may move on or be deleted. Its state is
 * followed from here without holding that namespace: a socket opened
 * there would keep it alive after `ip netns del`, with the device in it.
 * One rtnetlink socket here hears the link messages of every namespace
 * this one has an id for (NETLINK_LISTEN_ALL_NSID: a message from
 * another namespace comes with that id as ancillary data); tun says which
 * namespace its device is in (TUNGETDEVNETNS), and that namespace is
 * given an id here if it has none (RTM_NEWNSID). A device's messages are
 * known by that id and its index there. On a device's RTM_DELLINK (it
 * left the namespace, or was deleted) everything is asked again. The
 * first look is in tap_open; after that the loop reads the socket. Where
 * the process lacks the rights for another namespace (CAP_NET_ADMIN
 * there, CAP_NET_BROADCAST here), the port says so and its link stays up:
 * frames to a down device are then refused by the kernel and counted as
 * port_down, as before. */

static void gone(struct tap_port *t, int err);
static bool is_gone_errno(int e);

/* The port's link follows the device (loop; tap_open before start). */
static void set_up(struct tap_port *t, bool up)
{
	if (up == t->if_up || atomic_load(&t->gone))
		return;
	t->if_up = up;
	if (!t->started)
		return; /* tap_open reports it as the initial state */
	hs_port_log(t->port, HS_LOG_INFO, "tap %s is %s", t->ifname,
		    up ? "up" : "down or without carrier");
	hs_port_set_link(t->port, up);
	if (up && atomic_load(&t->gone)) /* gone() meanwhile, on a data path */
		hs_port_set_link(t->port, false);
}

/* Stops following for good (no rights, a kernel without the ioctl; the
 * reason logged once); the link is left up. */
static void unfollow(struct tap_port *t, const char *what, int err)
{
	t->ifindex = 0; /* matches no message */
	if (!t->unfollowed) {
		t->unfollowed = true;
		hs_port_log(t->port, HS_LOG_WARN, "tap %s: its state is no longer followed "
			    "(%s: %s); frames to it while it is down count as port_down",
			    t->ifname, what, hs_strerror(err));
	}
	set_up(t, true);
}

struct tap_nl_ans {
	bool got, has_mac;
	int nsid, ifindex;
	unsigned flags;
	uint8_t mac[6];
};

static int nsid_cb(const struct nlmsghdr *h, void *data)
{
	struct tap_nl_ans *a = data;
	const struct nlattr *at;
	if (h->nlmsg_type != RTM_NEWNSID ||
	    mnl_nlmsg_get_payload_len(h) < sizeof(struct rtgenmsg))
		return MNL_CB_OK;
	mnl_attr_for_each(at, h, sizeof(struct rtgenmsg)) {
		if (mnl_attr_get_type(at) == NETNSA_NSID &&
		    mnl_attr_validate(at, MNL_TYPE_U32) == 0) {
			a->nsid = (int)mnl_attr_get_u32(at);
			a->got = true;
		}
	}
	return MNL_CB_OK;
}

static int req_open(struct tap_req *r)
{
	struct timeval tv = {.tv_sec = 1}; /* rtnetlink answers at once */
	r->buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	if (!r->buf)
		return -ENOMEM;
	if (!(r->s = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC)) ||
	    mnl_socket_bind(r->s, 0, MNL_SOCKET_AUTOPID) ||
	    setsockopt(mnl_socket_get_fd(r->s), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return -errno;
	return 0;
}

static void req_close(struct tap_req *r)
{
	if (r->s)
		mnl_socket_close(r->s);
	free(r->buf);
	*r = (struct tap_req){0};
}

/* The id this namespace has for the namespace `nsfd`, given one if it
 * has none: >= 0, or -errno. */
static int ns_id(struct tap_req *r, int nsfd)
{
	for (int pass = 0;; pass++) {
		struct nlmsghdr *h = hs_nl_req(r->buf, &r->seq, RTM_GETNSID, 0);
		struct rtgenmsg *g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
		g->rtgen_family = AF_UNSPEC;
		mnl_attr_put_u32(h, NETNSA_FD, (uint32_t)nsfd);
		struct tap_nl_ans a = {.nsid = -1};
		int rc = hs_nl_request(r->s, r->buf, nsid_cb, &a, NULL);
		if (rc)
			return rc;
		if (a.got && a.nsid >= 0)
			return a.nsid;
		if (pass)
			return -ENOENT;
		h = hs_nl_req(r->buf, &r->seq, RTM_NEWNSID, NLM_F_ACK);
		g = mnl_nlmsg_put_extra_header(h, sizeof(*g));
		g->rtgen_family = AF_UNSPEC;
		mnl_attr_put_u32(h, NETNSA_FD, (uint32_t)nsfd);
		mnl_attr_put_u32(h, NETNSA_NSID, (uint32_t)-1); /* any free id */
		rc = hs_nl_request(r->s, r->buf, NULL, NULL, NULL);
		if (rc && rc != -EEXIST) /* EEXIST: given one meanwhile */
			return rc;
	}
}

static int link_cb(const struct nlmsghdr *h, void *data)
{
	struct tap_nl_ans *a = data;
	if (h->nlmsg_type == RTM_NEWLINK &&
	    mnl_nlmsg_get_payload_len(h) >= sizeof(struct ifinfomsg)) {
		const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(h);
		a->ifindex = ifm->ifi_index;
		a->flags = ifm->ifi_flags;
		a->got = true;
		const struct nlattr *at;
		mnl_attr_for_each(at, h, sizeof(*ifm)) {
			if (mnl_attr_get_type(at) == IFLA_ADDRESS &&
			    mnl_attr_get_payload_len(at) == 6) {
				memcpy(a->mac, mnl_attr_get_payload(at), 6);
				a->has_mac = true;
			}
		}
	}
	return MNL_CB_OK;
}

/* The index and flags of the device `name` in namespace `nsid` (-1: this
 * one). 0 or -errno (-ENODEV: no such device there). */
static int get_link(struct tap_req *r, int nsid, const char *name, struct tap_nl_ans *a)
{
	struct nlmsghdr *h = hs_nl_req(r->buf, &r->seq, RTM_GETLINK, 0);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(h, sizeof(*ifm));
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(h, IFLA_IFNAME, name);
	mnl_attr_put_u32(h, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
	if (nsid >= 0)
		mnl_attr_put_u32(h, IFLA_TARGET_NETNSID, (uint32_t)nsid);
	*a = (struct tap_nl_ans){0};
	int rc = hs_nl_request(r->s, r->buf, link_cb, a, NULL);
	return rc ? rc : a->got ? 0 : -ENODEV;
}

/* Where the device is now: *a gets its namespace's id here (-1: this
 * one, `own`), its index and flags there. 0; or -errno, *what the step
 * that failed (a gone device's tun error from the first: is_gone_errno).
 * A device in another namespace is located only if `other_ok` (the port
 * hears that namespace's messages: NETLINK_LISTEN_ALL_NSID). */
static int locate(struct tap_port *t, struct tap_req *r, const struct stat *own, bool other_ok,
		  struct tap_nl_ans *a, const char **what)
{
	for (int tries = 0; tries < 4; tries++) {
		*what = "where is it";
		int nsfd = ioctl(t->q[0].fd, TUNGETDEVNETNS);
		/* Without CAP_NET_ADMIN tun does not say: the device is then
		 * looked for in this namespace only (where it was opened). */
		bool here_only = nsfd < 0 && errno == EPERM;
		if (nsfd < 0 && !here_only) /* EINVAL, ENOTTY: a kernel without it */
			return errno == EINVAL || errno == ENOTTY ? -EOPNOTSUPP : -errno;
		struct stat st = *own;
		int nsid = -1, rc = here_only || !fstat(nsfd, &st) ? 0 : -errno;
		if (!rc && !same_ns(&st, own)) {
			*what = "the id of its namespace";
			rc = other_ok ? (nsid = ns_id(r, nsfd)) : -EPERM;
		}
		if (nsfd >= 0)
			close(nsfd);
		if (rc < 0)
			return rc;
		struct ifreq ifr = {0};
		*what = "its name";
		if (ioctl(t->q[0].fd, TUNGETIFF, &ifr) < 0)
			return -errno;
		*what = "its state";
		rc = get_link(r, nsid, ifr.ifr_name, a);
		if (rc == -ENODEV && here_only) {
			*what = "it left this namespace (another needs CAP_NET_ADMIN)";
			return -EPERM;
		}
		if (rc == -ENODEV)
			continue; /* moved (or renamed) meanwhile */
		if (rc)
			return rc;
		if (here_only) {
			/* the device of that name here must be ours: the same
			 * MAC (tun tells its own without privilege), or it left
			 * and another took its name */
			struct ifreq hw = {0};
			if (ioctl(t->q[0].fd, SIOCGIFHWADDR, &hw) < 0)
				return -errno;
			if (!a->has_mac || memcmp(a->mac, hw.ifr_hwaddr.sa_data, 6)) {
				*what = "it left this namespace (another needs CAP_NET_ADMIN)";
				return -EPERM;
			}
			a->nsid = -1;
			return 0;
		}
		/* still in that namespace? (else a name there may be another's) */
		nsfd = ioctl(t->q[0].fd, TUNGETDEVNETNS);
		struct stat now;
		bool same = nsfd >= 0 && !fstat(nsfd, &now) && same_ns(&now, &st);
		if (nsfd >= 0)
			close(nsfd);
		if (same) {
			a->nsid = nsid;
			return 0;
		}
	}
	*what = "it kept moving";
	return -EAGAIN;
}

static void follow(struct tap_port *t);

/* The retry timer: made (idle) by tap_start, armed by follow_later. */
static void refollow_cb(hs_timer_t *tm, void *arg)
{
	struct tap_port *t = arg;
	(void)tm;
	if (t->retry_ms)
		follow(t);
}

/* A look failed for a cause that passes (the device moving while it was
 * looked at, rtnetlink busy or its buffer full, a namespace ending): it
 * is looked at again later, 100 ms on, doubling to 5 s; the messages it
 * was known by still count meanwhile. */
static void follow_later(struct tap_port *t, const char *what, int err)
{
	if (!t->retry_said) {
		t->retry_said = true;
		hs_port_log(t->port, HS_LOG_WARN, "tap %s: where it is and its state are not "
			    "known (%s: %s); asked again", t->ifname, what, hs_strerror(err));
	}
	t->retry_ms = t->retry_ms ? (t->retry_ms < 2500 ? 2 * t->retry_ms : 5000) : 100;
	if (t->started) /* before: tap_start arms it */
		hs_timer_modify(t->retry_t, t->retry_ms, 0);
}

/* Finds the device (its namespace, index and state) and follows it
 * (tap_open; then the loop). */
static void follow(struct tap_port *t)
{
	if (atomic_load(&t->gone) || t->unfollowed)
		return;
	struct tap_nl_ans a;
	const char *what;
	int rc = locate(t, &t->req, &t->own_ns, t->all_ns, &a, &what);
	if (rc && is_gone_errno(-rc) && t->started) {
		gone(t, rc);
	} else if (rc == -EPERM || rc == -EACCES || rc == -EOPNOTSUPP) {
		unfollow(t, what, rc); /* no rights, or no such ioctl */
	} else if (rc) {
		follow_later(t, what, rc);
	} else {
		t->nsid = a.nsid;
		t->ifindex = a.ifindex;
		t->retry_ms = 0;
		if (t->retry_said) {
			t->retry_said = false;
			hs_port_log(t->port, HS_LOG_INFO, "tap %s: followed again", t->ifname);
		}
		set_up(t, (a.flags & IFF_UP) && (a.flags & IFF_RUNNING));
	}
}

/* The loop: link messages. */
static void nl_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct tap_port *t = arg;
	(void)w, (void)events;
	bool again = false;
	for (int i = 0; i < 16; i++) {
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} cm;
		struct iovec iov = {.iov_base = t->nl_buf, .iov_len = MNL_SOCKET_BUFFER_SIZE};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
				   .msg_controllen = sizeof(cm.b)};
		ssize_t n = recvmsg(fd, &m, MSG_DONTWAIT);
		if (n < 0 && errno == ENOBUFS) {
			again = true; /* messages lost: the state is asked again */
			continue;
		}
		if (n <= 0)
			break;
		int nsid = -1; /* no id: this namespace's own */
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == SOL_NETLINK && c->cmsg_type == NETLINK_LISTEN_ALL_NSID &&
			    c->cmsg_len >= CMSG_LEN(sizeof(int)))
				memcpy(&nsid, CMSG_DATA(c), sizeof(nsid));
		if (nsid != t->nsid)
			continue;
		const struct nlmsghdr *h = (const struct nlmsghdr *)t->nl_buf;
		for (int left = (int)n; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
			if ((h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) ||
			    mnl_nlmsg_get_payload_len(h) < sizeof(struct ifinfomsg))
				continue;
			const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(h);
			if (!t->ifindex || ifm->ifi_index != t->ifindex ||
			    ifm->ifi_family != AF_UNSPEC)
				continue;
			if (h->nlmsg_type == RTM_DELLINK)
				again = true; /* left the namespace, or deleted */
			else
				set_up(t, (ifm->ifi_flags & IFF_UP) && (ifm->ifi_flags & IFF_RUNNING));
		}
	}
	if (again)
		follow(t);
}

/* The sockets, and the first look (tap_open). A port that cannot follow
 * its device says so and works as before. */
static void follow_open(struct tap_port *t)
{
	t->nsid = -1;
	t->if_up = true;
	const char *what = "rtnetlink";
	int one = 1;
	int rc = req_open(&t->req);
	t->nl_buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	if (!rc && !t->nl_buf)
		rc = -ENOMEM;
	if (!rc && (!(t->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC)) ||
		    mnl_socket_bind(t->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID)))
		rc = -errno;
	if (!rc) {
		what = "its namespace";
		rc = stat("/proc/thread-self/ns/net", &t->own_ns) ? -errno : 0;
	}
	if (rc) {
		unfollow(t, what, rc);
		return;
	}
	t->all_ns = setsockopt(mnl_socket_get_fd(t->nl), SOL_NETLINK, NETLINK_LISTEN_ALL_NSID,
			       &one, sizeof(one)) == 0;
	follow(t);
}

static void follow_close(struct tap_port *t)
{
	if (t->nl)
		mnl_socket_close(t->nl);
	req_close(&t->req);
	free(t->nl_buf);
}

/* Sets the MTU of the tap's device, named `name` in the calling thread's
 * namespace `ns`, by its index once the tun file says the device is that
 * one (so the name cannot be another device's that took it meanwhile).
 * 0, -EAGAIN (it moved or was renamed meanwhile: look again), -errno. */
static int set_mtu_here(struct tap_port *t, const struct stat *ns, const char *name,
			uint32_t mtu)
{
	unsigned idx = if_nametoindex(name);
	if (!idx)
		return errno == ENODEV || errno == ENXIO ? -EAGAIN : -errno;
	struct ifreq ifr = {0};
	if (ioctl(t->q[0].fd, TUNGETIFF, &ifr) < 0)
		return -errno;
	if (strncmp(ifr.ifr_name, name, IFNAMSIZ) || if_nametoindex(name) != idx)
		return -EAGAIN;
	int nsfd = ioctl(t->q[0].fd, TUNGETDEVNETNS);
	if (nsfd < 0)
		return -errno;
	struct stat st;
	bool same = !fstat(nsfd, &st) && same_ns(&st, ns);
	close(nsfd);
	if (!same)
		return -EAGAIN;
	struct tap_req r = {0};
	int rc = req_open(&r);
	if (!rc) {
		struct nlmsghdr *h = hs_nl_req(r.buf, &r.seq, RTM_SETLINK, NLM_F_ACK);
		struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(h, sizeof(*ifm));
		ifm->ifi_family = AF_UNSPEC;
		ifm->ifi_index = (int)idx;
		mnl_attr_put_u32(h, IFLA_MTU, mtu);
		rc = hs_nl_request(r.s, r.buf, NULL, NULL, NULL);
	}
	req_close(&r);
	return rc;
}

/* A device in another namespace: rtnetlink takes no other namespace's id
 * for changes, so a thread of its own enters that one (setns, which needs
 * CAP_SYS_ADMIN) and sets it there: no socket stays there, and the
 * caller's thread never moves. */
struct mtu_job {
	struct tap_port *t;
	int nsfd;
	struct stat ns;
	const char *name;
	uint32_t mtu;
	int rc;
};

static void *mtu_main(void *arg)
{
	struct mtu_job *j = arg;
	j->rc = setns(j->nsfd, CLONE_NEWNET) ? -errno : set_mtu_here(j->t, &j->ns, j->name, j->mtu);
	return NULL;
}

int hs_tap_set_mtu(hs_port_t *port, uint32_t mtu)
{
	struct tap_port *t = hs_port_backend_priv(port, &hs__tap_ops);
	if (!t || mtu < 68 || mtu > 65535)
		return -EINVAL;
	struct stat own;
	const char *what = "its namespace";
	int rc = stat("/proc/thread-self/ns/net", &own) ? -errno : -EAGAIN;
	for (int tries = 0; tries < 4 && rc == -EAGAIN; tries++) {
		struct ifreq ifr = {0};
		what = "its name";
		if (ioctl(t->q[0].fd, TUNGETIFF, &ifr) < 0) {
			rc = -errno;
			break;
		}
		what = "its MTU";
		struct mtu_job j = {.t = t, .name = ifr.ifr_name, .mtu = mtu, .ns = own,
				    .nsfd = ioctl(t->q[0].fd, TUNGETDEVNETNS)};
		/* EPERM: no CAP_NET_ADMIN over the device's namespace, where
		 * its MTU could not be set either */
		if (j.nsfd < 0) {
			what = "where is it";
			rc = -errno;
			break;
		}
		if (!fstat(j.nsfd, &j.ns) && same_ns(&j.ns, &own)) {
			rc = set_mtu_here(t, &own, ifr.ifr_name, mtu); /* here: no thread */
		} else {
			pthread_t th;
			rc = -pthread_create(&th, NULL, mtu_main, &j);
			if (!rc) {
				pthread_join(th, NULL);
				rc = j.rc;
			}
		}
		close(j.nsfd);
	}
	if (rc)
		hs_port_log(port, HS_LOG_ERROR, "tap %s: MTU %u: %s: %s", t->ifname, mtu, what,
			    hs_strerror(rc));
	else
		hs_port_log(port, HS_LOG_INFO, "tap %s: MTU %u", t->ifname, mtu);
	return rc;
}

static uint32_t caps_of(unsigned tun)
{
	uint32_t c = 0;
	/* What the kernel takes from us: it accepts any offload metadata it
	 * knows in frames written to a tap; we announce those it also lets
	 * us receive, so both directions stay symmetric. */
	if (tun & TUN_F_CSUM)
		c |= HS_CAP_CSUM;
	if (tun & TUN_F_TSO4)
		c |= HS_CAP_GSO_TCPV4;
	if (tun & TUN_F_TSO6)
		c |= HS_CAP_GSO_TCPV6;
	if (tun & TUN_F_TSO_ECN)
		c |= HS_CAP_GSO_ECN;
#ifdef TUN_F_USO4
	if ((tun & TUN_F_USO4) && (tun & TUN_F_USO6))
		c |= HS_CAP_GSO_UDP_L4;
#endif
	return c;
}

static int tap_open(hs_port_t *port, const void *config, size_t size, void **priv,
		    struct hs_port_info *info)
{
	struct hs_tap_config c = {0};
	if (!config)
		return -EINVAL;
	int crc = hs_config_copy(&c, sizeof(c), config, size, HS_TAP_CONFIG_SIZE_V1);
	if (crc)
		return crc;
	size_t nl = c.ifname ? strlen(c.ifname) : 0;
	if (!c.queues)
		c.queues = 1;
	if (!c.ring)
		c.ring = TAP_DEF_RING;
	if (nl >= IFNAMSIZ || c.queues > HS_MAX_QUEUES || c.ring > TAP_MAX_RING ||
	    (c.flags & ~(HS_TAP_ATTACH | HS_TAP_UP | HS_TAP_NO_OFFLOAD | HS_TAP_STAGED |
			 HS_TAP_NO_URING)) ||
	    (c.mtu && c.mtu < 68) || ((c.flags & HS_TAP_ATTACH) && !nl))
		return -EINVAL;
	struct tap_port *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->port = port;
	t->cfg = c;
	t->cfg.ifname = NULL;
	if (nl)
		memcpy(t->ifname, c.ifname, nl);
	t->q = calloc(t->cfg.queues, sizeof(*t->q));
	if (!t->q) {
		free(t);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < t->cfg.queues; i++)
		t->q[i].fd = -1;
	int rc = 0;
	if ((c.flags & HS_TAP_ATTACH) && !if_nametoindex(t->ifname)) {
		hs_port_log(port, HS_LOG_ERROR, "tap %s does not exist", t->ifname);
		rc = -ENODEV;
	}
	for (unsigned i = 0; !rc && i < t->cfg.queues; i++)
		rc = open_queue(t, &t->q[i], i == 0);
	struct ifreq ifr = {0};
	if (!rc && c.mtu) {
		ifr.ifr_mtu = c.mtu;
		rc = if_ioctl(t->ifname, SIOCSIFMTU, &ifr);
		if (rc)
			hs_port_log(port, HS_LOG_ERROR, "tap %s: MTU %u: %s", t->ifname,
				    c.mtu, hs_strerror(rc));
	}
	if (!rc && (c.flags & HS_TAP_UP)) {
		memset(&ifr, 0, sizeof(ifr));
		rc = if_ioctl(t->ifname, SIOCGIFFLAGS, &ifr);
		ifr.ifr_flags |= IFF_UP;
		if (!rc)
			rc = if_ioctl(t->ifname, SIOCSIFFLAGS, &ifr);
		if (rc)
			hs_port_log(port, HS_LOG_ERROR, "tap %s: link up: %s", t->ifname,
				    hs_strerror(rc));
	}
	if (rc) {
		tap_close(t);
		return rc;
	}
	t->caps = caps_of(t->tun_offload);
	info->n_queues = t->cfg.queues;
	info->caps = t->caps;
	/* With checksum offload the switch never rewrites a frame for this
	 * port: large ones can go out by reference. */
	t->by_ref = (t->caps & HS_CAP_CSUM) && !(c.flags & HS_TAP_STAGED);
#ifdef HS_HAVE_URING
	uring_probe(t);
	for (unsigned i = 0; i < t->cfg.queues; i++) {
		t->q[i].rx_uring = t->q[i].tx_uring = t->uring;
		t->q[i].rx_want = 2;
	}
#endif
	follow_open(t);
	info->link_up = t->if_up;
	*priv = t;
	return 0;
}

/* Takes the queues' fds out of the data path. */
static void unwatch(struct tap_port *t)
{
	for (uint16_t i = 0; i < t->cfg.queues; i++)
		hs_port_set_queue_fd(t->port, i, HS_EV_KICK, -1);
}

static int tap_start(void *priv)
{
	struct tap_port *t = priv;
	for (uint16_t i = 0; i < t->cfg.queues; i++) {
		int rc = hs_port_set_queue_fd(t->port, i, HS_EV_KICK | HS_EV_FD_LEVEL,
					      t->q[i].fd);
		if (rc)
			return rc;
	}
	hs_port_log(t->port, HS_LOG_INFO, "tap %s, %u queue(s), offloads %s, %s, link %s%s",
		    t->ifname, t->cfg.queues, t->tun_offload ? "on" : "off",
		    t->uring ? "io_uring batches" : "a system call per frame",
		    t->if_up ? "up" : "down", t->unfollowed ? " (not followed)" : "");
	/* from here on the loop reads the device's messages and sets the link */
	t->started = true;
	hs_switch_t *sw = hs_port_switch(t->port);
	/* the retry timer before the watch whose callback may arm it: now if
	 * tap_open's look failed, else idle (an hour, then nothing to do) */
	int rc = hs_timer_add(sw, t->retry_ms ? 0 : 3600 * 1000, 0, refollow_cb, t, &t->retry_t);
	if (!rc && t->nl)
		rc = hs_watch_add(sw, mnl_socket_get_fd(t->nl), HS_WATCH_READ, nl_cb, t, &t->nl_w);
	if (rc) {
		hs_watch_del(t->nl_w);
		t->nl_w = NULL;
		hs_timer_del(t->retry_t);
		t->retry_t = NULL;
		hs_timer_del(t->gone_t); /* gone() may have run meanwhile */
		t->gone_t = NULL;
		unwatch(t);
	}
	return rc;
}


static void tap_stop(void *priv)
{
	struct tap_port *t = priv;
	hs_watch_del(t->nl_w); /* waits for its callback */
	t->nl_w = NULL;
	hs_timer_del(t->retry_t);
	t->retry_t = NULL;
	hs_timer_del(t->gone_t);
	t->gone_t = NULL;
	unwatch(t);
}

static void tap_close(void *priv)
{
	struct tap_port *t = priv;
	for (unsigned i = 0; i < t->cfg.queues; i++)
		free_q(&t->q[i], t->cfg.ring);
	free(t->q);
	follow_close(t);
	free(t);
}

/* On the loop thread: a device that is gone leaves the data path's epoll
 * set (its fd would otherwise report an error forever). */
static void gone_cb(hs_timer_t *tm, void *arg)
{
	(void)tm;
	unwatch(arg);
}

/* The device went away under us (deleted, or its namespace died). */
static void gone(struct tap_port *t, int err)
{
	if (!atomic_exchange(&t->gone, true)) {
		if (err == -EBADFD) /* tun's word for a file whose device went */
			hs_port_log(t->port, HS_LOG_ERROR, "tap %s was deleted, or its "
				    "namespace ended; link down", t->ifname);
		else
			hs_port_log(t->port, HS_LOG_ERROR, "tap %s: %s; link down", t->ifname,
				    hs_strerror(err));
		hs_port_set_link(t->port, false);
		hs_timer_add(hs_port_switch(t->port), 0, 0, gone_cb, t, &t->gone_t);
	}
}

static bool is_gone_errno(int e)
{
	/* EIO only means the interface is down (e.g. while it moves to
	 * another namespace): nothing to read, writes dropped; not gone. */
	return e == EBADFD || e == ENODEV || e == ENXIO;
}

/* ---- kernel -> switch ------------------------------------------------------ */

/* A frame of r bytes read into buffer `idx` (absolute: slot idx % ring)
 * becomes *p (its token is idx); false if it is bad (counted). */
static bool take_frame(struct tap_port *t, struct tap_q *q, uint64_t idx, ssize_t r,
		       struct hs_pkt *p, unsigned *bad_desc, unsigned *bad_off)
{
	size_t slot = (size_t)(idx % t->cfg.ring);
	uint8_t *b = q->rx_area + slot * TAP_BUF + TAP_HEAD;
	if (r < TAP_HDR + HS_ETH_HLEN) {
		(*bad_desc)++;
		return false;
	}
	struct hsb_vnet_hdr h;
	memcpy(&h, b, sizeof(h));
	if (!hsb_vnet_to_offload(&h, t->caps, &p->off)) {
		(*bad_off)++;
		return false;
	}
	q->rx_segs[slot] = (struct hs_seg){.base = b + TAP_HDR, .len = (uint32_t)r - TAP_HDR};
	p->segs = &q->rx_segs[slot];
	p->nsegs = 1;
	p->len = (uint32_t)r - TAP_HDR;
	p->token = idx;
	return true;
}

/* A read failed with errno e (the round stops reading). */
static void read_failed(struct tap_port *t, struct tap_q *q, int e)
{
	if (e != EAGAIN && e != EIO) {
		ctr_add(&q->read_errors, 1);
		if (is_gone_errno(e))
			gone(t, -e);
	}
}

#ifdef HS_HAVE_URING
/* Reads through the thread's ring (see the top of the file). Sets
 * *fallback if the rest must be read with system calls (no op ran that
 * was not taken into account). A buffer whose read brought a bad frame,
 * or nothing, before a good one is a hole: recv_done frees it with the
 * good one. */
static unsigned recv_uring(struct tap_port *t, uint16_t qi, struct hs_pkt *pkts, unsigned max,
			   unsigned *bad_desc, unsigned *bad_off, bool *fallback)
{
	struct tap_q *q = &t->q[qi];
	unsigned n = 0, want = q->rx_want, tries = 0;
	const size_t len = TAP_BUF - TAP_HEAD;
	int err = 0;
	struct io_uring *r = thread_ring(t, &err);
	if (!r) {
		*fallback = true;
		return 0;
	}
	for (;;) {
		/* free buffers: at most cfg.ring (<= TAP_MAX_RING) */
		unsigned k = (unsigned)(t->cfg.ring - (q->rx_head - q->rx_tail));
		if (k > max - n)
			k = max - n;
		if (k > want)
			k = want;
		if (k > TAP_URING_N)
			k = TAP_URING_N;
		if (!k || tries >= 2 * max)
			break;
		for (unsigned j = 0; j < k; j++) {
			size_t slot = (size_t)((q->rx_head + j) % t->cfg.ring);
			q->rx_iov[j] = (struct iovec){
				.iov_base = q->rx_area + slot * TAP_BUF + TAP_HEAD, .iov_len = len};
			struct io_uring_sqe *sqe = io_uring_get_sqe(r);
			if (HSB_UNLIKELY(!sqe)) { /* never: the queue is empty and k <= its size */
				k = j;
				break;
			}
			io_uring_prep_readv(sqe, q->fd, &q->rx_iov[j], 1, 0);
			nowait_op(sqe, j);
		}
		if (!k) {
			*fallback = true;
			break;
		}
		int32_t res[TAP_URING_N];
		unsigned sub = uring_run(r, k, res, &err);
		tries += k;
		unsigned used = 0;
		bool more = !err, refused = false;
		for (unsigned j = 0; j < sub; j++) {
			int32_t rv = res[j];
			if (rv == -EOPNOTSUPP) {
				/* io_uring's refusal: the device never saw the op */
				refused = true;
				more = false;
			} else if (rv == -ECANCELED) {
				/* submitted, no completion: it may have taken a frame */
				ctr_add(&q->read_errors, 1);
			} else if (rv < 0) {
				read_failed(t, q, -rv);
				more = false; /* a later read may still have found one */
			} else if (take_frame(t, q, q->rx_head + j, rv, &pkts[n], bad_desc, bad_off)) {
				n++;
				used = j + 1;
			}
		}
		if (sub && !refused)
			ctr_add(&q->rx_uring_calls, 1);
		q->rx_head += used;
		if (refused)
			uring_off(t, qi, &q->rx_uring, "read", -EOPNOTSUPP);
		if (err)
			ring_failed(t, err);
		if (refused || err) {
			*fallback = true;
			break;
		}
		if (!more || atomic_load_explicit(&t->gone, memory_order_relaxed))
			break;
		want = 2 * k;
	}
	/* the next burst's first batch: one more than this one brought */
	q->rx_want = (uint16_t)(n + 1 < 2 ? 2 : n + 1 > TAP_URING_N ? TAP_URING_N : n + 1);
	return n;
}
#endif

static unsigned tap_recv_burst(void *priv, uint16_t qi, struct hs_pkt *pkts,
			       unsigned max)
{
	struct tap_port *t = priv;
	struct tap_q *q = &t->q[qi];
	unsigned n = 0, bad_desc = 0, bad_off = 0;
	if (atomic_load_explicit(&t->gone, memory_order_relaxed))
		return 0;
#ifdef HS_HAVE_URING
	bool fallback = false;
	if (q->rx_uring) {
		n = recv_uring(t, qi, pkts, max, &bad_desc, &bad_off, &fallback);
		if (!fallback)
			goto out;
	}
#endif
	for (unsigned tries = 0; n < max && tries < 2 * max && q->rx_head - q->rx_tail < t->cfg.ring;
	     tries++) {
		size_t slot = (size_t)(q->rx_head % t->cfg.ring);
		uint8_t *b = q->rx_area + slot * TAP_BUF + TAP_HEAD;
		ssize_t r = read(q->fd, b, TAP_BUF - TAP_HEAD);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			read_failed(t, q, errno);
			break;
		}
		/* a bad frame's buffer is reused */
		if (take_frame(t, q, q->rx_head, r, &pkts[n], &bad_desc, &bad_off)) {
			q->rx_head++;
			n++;
		}
	}
#ifdef HS_HAVE_URING
out:
#endif
	if (bad_desc)
		hs_port_count_drop(t->port, qi, HS_DROP_BAD_DESC, bad_desc);
	if (bad_off)
		hs_port_count_drop(t->port, qi, HS_DROP_BAD_OFFLOAD, bad_off);
	return n;
}

static unsigned tap_recv_done(void *priv, uint16_t qi, const struct hs_pkt *pkts,
			      unsigned n)
{
	struct tap_port *t = priv;
	/* Returned in order; the buffers before the last one returned are
	 * free too (frames returned earlier, or holes: see recv_uring). */
	if (n)
		t->q[qi].rx_tail = pkts[n - 1].token + 1;
	return 0;
}

/* ---- switch -> kernel ------------------------------------------------------ */

static unsigned tap_send_reserve(void *priv, uint16_t qi, const struct hs_out *out,
				 unsigned n, struct hs_iobuf *bufs)
{
	struct tap_port *t = priv;
	struct tap_q *q = &t->q[qi];
	size_t off = 0;
	if (n > HS_RESERVE_MAX)
		n = HS_RESERVE_MAX;
	q->n_iov = 0;
	for (unsigned i = 0; i < n; i++) {
		/* Packed by size, each frame on its own cache line. */
		uint8_t *b = q->tx_area + off + TAP_HEAD;
		uint32_t len = out[i].len;
		if (len > HS_FRAME_MAX) {
			bufs[i].nsegs = 0;
			continue;
		}
		q->txf[i] = (struct tap_txf){.stage = b + TAP_HDR};
		if (t->by_ref && len >= TAP_ZC_MIN)
			q->tx_segs[i] = (struct hs_seg){
				.len = len, .flags = HS_SEG_FOREIGN,
				.ref = (uint64_t)qi << 32 | i};
		else
			q->tx_segs[i] = (struct hs_seg){.base = b + TAP_HDR, .len = len};
		bufs[i].segs = &q->tx_segs[i];
		bufs[i].nsegs = 1;
		off += (TAP_HEAD + TAP_HDR + len + 63) & ~(size_t)63;
	}
	q->n_resv = n;
	return n;
}

/* The frame's bytes described so far, copied into its staging room; from
 * now on the frame is staged (one write from there). */
static void stage_all(struct tap_q *q, struct tap_txf *f)
{
	uint32_t at = 0;
	for (unsigned k = 0; k < f->niov; k++) {
		const struct iovec *v = &q->iov[f->iov0 + k];
		if (v->iov_base != f->stage + at)
			memcpy(f->stage + at, v->iov_base, v->iov_len);
		at += (uint32_t)v->iov_len;
	}
	q->n_iov = f->iov0 - 1; /* the frame's iovecs were the last ones */
	f->niov = 0;
	f->staged = true;
}

/* Appends len bytes at `from` to frame f's iovecs (merged with the last
 * one when contiguous); false when the frame or the pool has no room. */
static bool add_iov(struct tap_q *q, struct tap_txf *f, uint8_t *from, uint32_t len)
{
	struct iovec *last = &q->iov[q->n_iov - 1]; /* the header slot at worst */
	if (f->niov && (uint8_t *)last->iov_base + last->iov_len == from) {
		last->iov_len += len;
		return true;
	}
	if (f->niov == TAP_FRAME_IOV || q->n_iov == TAP_IOV_MAX)
		return false;
	q->iov[q->n_iov++] = (struct iovec){.iov_base = from, .iov_len = len};
	f->niov++;
	return true;
}

/* Copy hook: the switch's copies into frames reserved by reference (see
 * the top of the file). Every op is checked against the reservation. */
static int tap_copy(void *priv, const struct hs_copy_op *ops, unsigned n)
{
	struct tap_port *t = priv;
	for (unsigned i = 0; i < n; i++) {
		const struct hs_copy_op *op = &ops[i];
		const struct hs_seg *d = op->dst, *s = op->src;
		uint32_t qi = (uint32_t)(d->ref >> 32), fi = (uint32_t)d->ref;
		if (!(d->flags & HS_SEG_FOREIGN) || qi >= t->cfg.queues)
			return -EINVAL;
		struct tap_q *q = &t->q[qi];
		if (fi >= q->n_resv || d != &q->tx_segs[fi] || (s->flags & HS_SEG_FOREIGN))
			return -EINVAL;
		struct tap_txf *f = &q->txf[fi];
		if (op->dst_off != f->filled || op->len > d->len - op->dst_off ||
		    op->src_off > s->len || op->len > s->len - op->src_off)
			return -EINVAL;
		if (!op->len)
			continue;
		if (!f->filled && !f->staged) {
			/* First op: the frame's iovecs start after the last
			 * frame's, behind a slot for the header. */
			if (q->n_iov + 2 > TAP_IOV_MAX)
				f->staged = true;
			else
				f->iov0 = (uint16_t)(++q->n_iov);
		} else if (!f->staged && f->iov0 + f->niov != q->n_iov) {
			return -EINVAL; /* ops of frames interleaved */
		}
		f->filled += op->len;
		uint8_t *src = s->base + op->src_off, *at = f->stage + op->dst_off;
		/* Only the sending frame itself outlives this call. */
		bool by_ref = !f->staged && (op->flags & HS_COPY_SRC_STABLE);
		if (!by_ref)
			memcpy(at, src, op->len);
		if (f->staged || add_iov(q, f, by_ref ? src : at, op->len))
			continue;
		stage_all(q, f); /* out of iovecs: copy after all */
		if (by_ref)
			memcpy(at, src, op->len);
	}
	return 0;
}

/* What one commit's writes came to. */
struct tap_wres {
	unsigned refused, failed, incomplete, invalid;
};

/* A write of frame `o` failed with errno e. */
static void write_failed(struct tap_port *t, struct tap_q *q, const struct hs_out *o, int e,
			 struct tap_wres *w)
{
	if (e == EAGAIN || e == ENOBUFS || e == ENOMEM) {
		w->refused++;
	} else if (e == EFAULT) {
		w->incomplete++; /* the sender's memory went away under us */
	} else {
		/* EINVAL: the kernel refused the frame's virtio-net header */
		if (e == EINVAL)
			w->invalid++;
		else
			w->failed++;
		if (e != q->write_errno) { /* once per kind, not per frame */
			q->write_errno = e;
			hs_port_log(t->port, HS_LOG_WARN, "the kernel refused a frame "
				    "(%u bytes, gso type %u size %u, checksum %u+%u): %s",
				    o->len, o->off.gso_type, o->off.gso_size,
				    o->off.csum_start, o->off.csum_offset, strerror(e));
		}
		if (is_gone_errno(e))
			gone(t, -e);
	}
}

static void write_one(struct tap_port *t, struct tap_q *q, const struct hs_out *o,
		      const struct iovec *v, int nv, struct tap_wres *w)
{
	ssize_t r;
	do
		r = writev(q->fd, v, nv);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		write_failed(t, q, o, errno, w);
}

#ifdef HS_HAVE_URING
/* Writes the k frames prepared on the thread's ring r (frame idx[j],
 * iovecs v[j], nv[j]); those the ring could not take go out one writev
 * each. Returns false if the rest of the commit must not use r (the ring
 * failed and is gone, or the queue went back to system calls). */
static bool write_batch(struct tap_port *t, uint16_t qi, struct io_uring *r,
			const struct hs_out *out, const uint16_t *idx, struct iovec *const *v,
			const int *nv, unsigned k, struct tap_wres *w)
{
	struct tap_q *q = &t->q[qi];
	int32_t res[TAP_URING_N];
	int err;
	unsigned sub = uring_run(r, k, res, &err);
	bool refused = false;
	for (unsigned j = 0; j < k; j++) {
		const struct hs_out *o = &out[idx[j]];
		int32_t rv = res[j];
		if (rv >= 0)
			continue;
		if (j >= sub || rv == -EOPNOTSUPP) {
			/* never ran: io_uring could not take it */
			refused |= j < sub;
			write_one(t, q, o, v[j], nv[j], w);
		} else if (rv == -ECANCELED) {
			w->failed++; /* submitted, and its completion never came */
		} else {
			write_failed(t, q, o, -rv, w);
		}
	}
	if (sub && !refused)
		ctr_add(&q->tx_uring_calls, 1);
	if (refused && q->tx_uring)
		uring_off(t, qi, &q->tx_uring, "write", -EOPNOTSUPP);
	if (err)
		ring_failed(t, err);
	return !err && q->tx_uring;
}
#endif

static unsigned tap_send_commit(void *priv, uint16_t qi, const struct hs_out *out,
				unsigned n)
{
	struct tap_port *t = priv;
	struct tap_q *q = &t->q[qi];
	struct tap_wres w = {0};
	unsigned by_ref = 0, staged = 0;
#ifdef HS_HAVE_URING
	uint16_t idx[TAP_URING_N];
	struct iovec *bv[TAP_URING_N];
	int bnv[TAP_URING_N];
	unsigned k = 0;
	int rerr = 0;
	struct io_uring *r = q->tx_uring ? thread_ring(t, &rerr) : NULL;
#endif
	for (unsigned i = 0; i < n && i < q->n_resv; i++) {
		if (!out[i].len || out[i].len > HS_FRAME_MAX)
			continue;
		struct tap_txf *f = &q->txf[i];
		bool ref = q->tx_segs[i].flags & HS_SEG_FOREIGN;
		if (ref && f->filled != out[i].len) {
			w.incomplete++; /* never sent half */
			continue;
		}
		if (ref) {
			staged += f->staged;
			ref = !f->staged;
			by_ref += ref;
		}
		/* The header goes in front of the staging room: a staged
		 * frame is one piece, header included; a frame by reference
		 * is the header, then its iovecs (the slot before them). */
		uint8_t *hdr = f->stage - TAP_HDR;
		struct hsb_vnet_hdr h = hsb_vnet_from_offload(&out[i].off, 0);
		memcpy(hdr, &h, TAP_HDR);
		struct iovec one, *v = ref ? &q->iov[f->iov0 - 1] : &one;
		int nv = ref ? f->niov + 1 : 1;
#ifdef HS_HAVE_URING
		if (r && !ref)
			v = &q->tx_one[k];
#endif
		*v = (struct iovec){.iov_base = hdr,
				    .iov_len = TAP_HDR + (ref ? 0 : out[i].len)};
#ifdef HS_HAVE_URING
		if (r) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(r);
			if (HSB_UNLIKELY(!sqe)) { /* never: at most 63 ops are queued */
				if (k && !write_batch(t, qi, r, out, idx, bv, bnv, k, &w))
					r = NULL;
				k = 0;
				write_one(t, q, &out[i], v, nv, &w); /* after those: in order */
				continue;
			}
			io_uring_prep_writev(sqe, q->fd, v, (unsigned)nv, 0);
			nowait_op(sqe, k);
			idx[k] = (uint16_t)i;
			bv[k] = v;
			bnv[k] = nv;
			if (++k == TAP_URING_N) {
				if (!write_batch(t, qi, r, out, idx, bv, bnv, k, &w))
					r = NULL;
				k = 0;
			}
			continue;
		}
#endif
		write_one(t, q, &out[i], v, nv, &w);
	}
#ifdef HS_HAVE_URING
	if (k)
		write_batch(t, qi, r, out, idx, bv, bnv, k, &w);
#endif
	q->n_resv = 0;
	ctr_add(&q->by_ref, by_ref);
	ctr_add(&q->by_ref_staged, staged);
	ctr_add(&q->write_errors, w.failed + w.invalid);
	if (w.incomplete)
		hs_port_count_tx_drop(t->port, qi, HS_DROP_COPY_ERROR, w.incomplete);
	if (w.refused)
		hs_port_count_tx_drop(t->port, qi, HS_DROP_NO_BUFFER, w.refused);
	if (w.failed)
		hs_port_count_tx_drop(t->port, qi, HS_DROP_PORT_DOWN, w.failed);
	if (w.invalid)
		hs_port_count_tx_drop(t->port, qi, HS_DROP_BAD_OFFLOAD, w.invalid);
	return 0; /* the kernel needs no notification */
}

static void tap_notify(void *priv, uint16_t q, unsigned ev)
{
	(void)priv;
	(void)q;
	(void)ev;
}

static void tap_counters(void *priv, void (*cb)(void *arg, const char *name, uint64_t v),
			 void *arg)
{
	struct tap_port *t = priv;
	uint64_t rerr = 0, werr = 0, by_ref = 0, staged = 0, rxu = 0, txu = 0;
	for (unsigned i = 0; i < t->cfg.queues; i++) {
		rerr += atomic_load_explicit(&t->q[i].read_errors, memory_order_relaxed);
		werr += atomic_load_explicit(&t->q[i].write_errors, memory_order_relaxed);
		by_ref += atomic_load_explicit(&t->q[i].by_ref, memory_order_relaxed);
		staged += atomic_load_explicit(&t->q[i].by_ref_staged, memory_order_relaxed);
		rxu += atomic_load_explicit(&t->q[i].rx_uring_calls, memory_order_relaxed);
		txu += atomic_load_explicit(&t->q[i].tx_uring_calls, memory_order_relaxed);
	}
	/* Frames read, bad frames and refused writes are the port's own
	 * counters (rx_packets; drops bad_descriptor, bad_offload,
	 * rx_no_buffer). */
	cb(arg, "read_errors", rerr);
	cb(arg, "write_errors", werr);
	cb(arg, "tx_by_reference", by_ref);
	cb(arg, "tx_by_reference_staged", staged);
	cb(arg, "rx_uring_calls", rxu);
	cb(arg, "tx_uring_calls", txu);
}

const struct hs_backend_ops hs__tap_ops = {
	.name = HS_TAP_BACKEND,
	.abi = HS_BACKEND_ABI,
	.open = tap_open,
	.start = tap_start,
	.stop = tap_stop,
	.close = tap_close,
	.recv_burst = tap_recv_burst,
	.recv_done = tap_recv_done,
	.send_reserve = tap_send_reserve,
	.send_commit = tap_send_commit,
	.notify = tap_notify,
	.copy = tap_copy,
	.counters = tap_counters,
};

const char *hs_tap_ifname(hs_port_t *port)
{
	struct tap_port *t = hs_port_backend_priv(port, &hs__tap_ops);
	return t ? t->ifname : NULL;
}
