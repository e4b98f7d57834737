/*
 * testbe.h - "tbe", a backend for tests, written against the public
 * backend interface only (as a user's backend would be).
 *
 * What it lets a test control and observe:
 *  - frames to send, split into chosen segment sizes, optionally living in
 *    "foreign" memory (an arena the switch cannot address, reached only
 *    through the copy hook, as Xen grant references are), with only the
 *    first HS_PKT_HDR_MIN bytes local;
 *  - receive buffers made of chosen segment sizes, local or foreign, a
 *    chosen number posted;
 *  - whether the peer asks for notifications; every notification, copy
 *    hook call and set_notify call is counted;
 *  - kicks by eventfd (fd-driven queue) or by hs_port_kick.
 */
#ifndef HS_TESTBE_H
#define HS_TESTBE_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <hyperswitch/hyperswitch.h>

#define TBE_NAME "tbe"
#define TBE_Q 4
#define TBE_TXMAX 1024
#define TBE_RXMAX 4096
#define TBE_SEGS 64
#ifndef TBE_ARENA /* bytes of memory for segments; half of it in use at most */
#define TBE_ARENA (16u << 20)
#endif
#define TBE_DEFER 16384

struct tbe_config {
	uint16_t n_queues;    /* 0 -> 1 */
	uint32_t caps;
	uint32_t rx_posted;   /* buffers posted at start per queue; 0 -> 256 */
	uint32_t rx_seg;      /* bytes per receive segment; 0 -> 2048 */
	uint32_t rx_nseg;     /* segments per receive buffer; 0 -> 1 */
	bool foreign_rx;      /* receive buffers are foreign */
	bool foreign_tx;      /* frames beyond the first 128 bytes are foreign */
	bool want_delivered;  /* peer asks for a notification on every commit */
	bool want_completed;
	bool kick_fd;         /* frames are signalled through an eventfd */
	bool notify_blind;    /* set_notify never reports work waiting (work
				 only its kick says is there, as a vhost-user
				 announce is): every kick must get a round */
	bool hook_fails;      /* the copy hook returns -EIO */
	bool defer_stable;    /* the hook defers HS_COPY_SRC_STABLE copies to
				 send_commit, as the tap backend does: a
				 source the switch reuses before then would
				 show as a corrupted frame */
};

struct tbe_txf {              /* a frame waiting to be sent */
	uint32_t len, nseg;
	struct hs_offload off;
	struct hs_seg seg[TBE_SEGS];
};

struct tbe_rxf {              /* a frame received, reassembled for tests */
	uint8_t *data;
	uint32_t len;
	struct hs_offload off;
};

struct tbe_q {
	pthread_mutex_t lock;     /* host side vs switch side */
	struct tbe_txf tx[TBE_TXMAX];
	uint32_t tx_head, tx_tail, tx_inflight;
	struct tbe_rxf rx[TBE_RXMAX];
	uint32_t rx_head, rx_tail;
	uint32_t posted;          /* receive buffers available */
	struct hs_iobuf resv_buf[HS_RESERVE_MAX];
	struct hs_seg resv_seg[HS_RESERVE_MAX][TBE_SEGS];
	uint32_t resv_len[HS_RESERVE_MAX];
	uint32_t resv_n;
	int kfd;
	_Atomic bool kicks_on;
};

/* One arena for every tbe port of the process: foreign references are
 * global, as grant references (with their domain) are. */
static uint8_t *tbe_arena;
static _Atomic uint64_t tbe_arena_used;
static pthread_once_t tbe_arena_once = PTHREAD_ONCE_INIT;

static inline void tbe_arena_init(void)
{
	tbe_arena = malloc(TBE_ARENA);
}

struct tbe {
	hs_port_t *port;
	struct tbe_config cfg;
	struct tbe_q q[TBE_Q];
	_Atomic uint64_t n_delivered, n_completed, hook_calls, hook_ops,
		set_notify_calls, commits, hook_stable_ops;
	/* "buffers posted" requests: made (enable), and whether one stands
	 * (a driver that signals only when asked would signal its posts) */
	_Atomic uint64_t posted_asks;
	_Atomic bool posted_asked;
	/* Between tbe_quiesce and tbe_resume no data-path op may be called
	 * (hs_port_quiesce's contract): each call then is counted here. */
	_Atomic bool quiesced;
	_Atomic uint64_t calls_quiesced;
	/* The next receive burst that takes frames takes the link down too
	 * and still returns them, as a backend that finds its peer broken in
	 * the middle of a burst does (xen's protocol_error, vhost-user's
	 * broken ring). */
	_Atomic bool down_in_burst;
	pthread_mutex_t defer_lock; /* deferred copies (defer_stable) */
	struct tbe_defer {
		uint8_t *dst;
		const uint8_t *src;
		uint32_t len;
	} defer[TBE_DEFER];
	unsigned n_defer;
};

static inline struct tbe *tbe_of(hs_port_t *p);

static inline uint8_t *tbe_addr(const struct hs_seg *s, uint32_t off)
{
	return (s->flags & HS_SEG_FOREIGN) ? tbe_arena + s->ref + off : s->base + off;
}

/* Memory for a segment, from the shared arena: addressable, or foreign
 * (then only its offset is given to the switch). The arena is reused in a
 * circle of half its size; tests keep far less in flight. */
static inline struct hs_seg tbe_mem(uint32_t len, bool foreign)
{
	uint64_t off = atomic_fetch_add(&tbe_arena_used, (len + 63) & ~63u) %
		       (TBE_ARENA / 2);
	if (foreign)
		return (struct hs_seg){.base = NULL, .len = len, .flags = HS_SEG_FOREIGN,
				       .ref = off};
	return (struct hs_seg){.base = tbe_arena + off, .len = len};
}

/* ---- backend ops ------------------------------------------------------------ */

static inline void tbe_check_active(struct tbe *t)
{
	if (atomic_load(&t->quiesced))
		atomic_fetch_add(&t->calls_quiesced, 1);
}

static inline int tbe_open(hs_port_t *port, const void *cfg, size_t size, void **priv,
		    struct hs_port_info *info)
{
	struct tbe *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	if (cfg && size == sizeof(t->cfg))
		memcpy(&t->cfg, cfg, size);
	if (!t->cfg.n_queues)
		t->cfg.n_queues = 1;
	if (!t->cfg.rx_posted)
		t->cfg.rx_posted = 256;
	if (!t->cfg.rx_seg)
		t->cfg.rx_seg = 2048;
	if (!t->cfg.rx_nseg)
		t->cfg.rx_nseg = 1;
	pthread_once(&tbe_arena_once, tbe_arena_init);
	t->port = port;
	pthread_mutex_init(&t->defer_lock, NULL);
	for (unsigned q = 0; q < TBE_Q; q++) {
		pthread_mutex_init(&t->q[q].lock, NULL);
		t->q[q].posted = t->cfg.rx_posted;
		t->q[q].kfd = t->cfg.kick_fd ? eventfd(0, EFD_NONBLOCK) : -1;
		atomic_init(&t->q[q].kicks_on, true);
	}
	*priv = t;
	info->n_queues = t->cfg.n_queues;
	info->caps = t->cfg.caps;
	info->link_up = true;
	return 0;
}

static inline int tbe_start(void *priv)
{
	struct tbe *t = priv;
	for (uint16_t q = 0; q < t->cfg.n_queues; q++)
		if (t->q[q].kfd >= 0) {
			int rc = hs_port_set_queue_fd(t->port, q, HS_EV_KICK, t->q[q].kfd);
			if (rc)
				return rc;
		}
	return 0;
}

static inline void tbe_close(void *priv)
{
	struct tbe *t = priv;
	for (unsigned q = 0; q < TBE_Q; q++) {
		struct tbe_q *tq = &t->q[q];
		for (uint32_t i = tq->rx_head; i != tq->rx_tail; i++)
			free(tq->rx[i % TBE_RXMAX].data);
		if (tq->kfd >= 0)
			close(tq->kfd);
		pthread_mutex_destroy(&tq->lock);
	}
	pthread_mutex_destroy(&t->defer_lock);
	free(t);
}

static inline unsigned tbe_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts,
			       unsigned max)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	struct tbe_q *tq = &t->q[q];
	pthread_mutex_lock(&tq->lock);
	unsigned n = 0;
	while (n < max && tq->tx_head + tq->tx_inflight != tq->tx_tail) {
		struct tbe_txf *f = &tq->tx[(tq->tx_head + tq->tx_inflight) % TBE_TXMAX];
		struct hs_pkt *p = &pkts[n++];
		p->segs = f->seg;
		p->nsegs = (uint16_t)f->nseg;
		p->len = f->len;
		p->off = f->off;
		p->token = tq->tx_head + tq->tx_inflight;
		tq->tx_inflight++;
	}
	pthread_mutex_unlock(&tq->lock);
	if (n && atomic_exchange(&t->down_in_burst, false))
		hs_port_set_link(t->port, false);
	return n;
}

static inline unsigned tbe_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts,
			      unsigned n)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	struct tbe_q *tq = &t->q[q];
	pthread_mutex_lock(&tq->lock);
	for (unsigned i = 0; i < n; i++)
		if (pkts[i].token != tq->tx_head)
			abort(); /* completion out of order: a switch bug */
		else
			tq->tx_head++, tq->tx_inflight--;
	pthread_mutex_unlock(&tq->lock);
	return t->cfg.want_completed ? HS_EV_COMPLETED : 0;
}

static inline unsigned tbe_send_reserve(void *priv, uint16_t q, const struct hs_out *out,
				 unsigned n, struct hs_iobuf *bufs)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	struct tbe_q *tq = &t->q[q];
	uint32_t cap = t->cfg.rx_seg * t->cfg.rx_nseg;
	unsigned i, used = 0;
	pthread_mutex_lock(&tq->lock);
	for (i = 0; i < n; i++) {
		if (out[i].len > cap) {
			bufs[i].nsegs = 0;
			tq->resv_len[i] = 0;
			continue;
		}
		if (used == tq->posted || tq->rx_tail - tq->rx_head + used >= TBE_RXMAX)
			break;
		for (uint32_t s = 0; s < t->cfg.rx_nseg; s++)
			tq->resv_seg[i][s] = tbe_mem(t->cfg.rx_seg, t->cfg.foreign_rx);
		tq->resv_buf[i] = (struct hs_iobuf){.segs = tq->resv_seg[i],
						    .nsegs = (uint16_t)t->cfg.rx_nseg};
		bufs[i] = tq->resv_buf[i];
		tq->resv_len[i] = 1;
		used++;
	}
	tq->resv_n = i;
	pthread_mutex_unlock(&tq->lock);
	return i;
}

static inline void tbe_run_deferred(struct tbe *t);

static inline unsigned tbe_send_commit(void *priv, uint16_t q, const struct hs_out *out,
				unsigned n)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	struct tbe_q *tq = &t->q[q];
	tbe_run_deferred(t);
	pthread_mutex_lock(&tq->lock);
	if (n != tq->resv_n)
		abort(); /* commit must match the reservation */
	for (unsigned i = 0; i < n; i++) {
		if (!tq->resv_len[i])
			continue;
		tq->posted--;
		if (!out[i].len)
			continue; /* not written: buffer consumed, nothing seen */
		struct tbe_rxf *r = &tq->rx[tq->rx_tail++ % TBE_RXMAX];
		r->len = out[i].len;
		r->off = out[i].off;
		r->data = malloc(r->len);
		uint32_t got = 0;
		for (uint32_t s = 0; s < t->cfg.rx_nseg && got < r->len; s++) {
			uint32_t k = r->len - got < t->cfg.rx_seg ? r->len - got : t->cfg.rx_seg;
			memcpy(r->data + got, tbe_addr(&tq->resv_seg[i][s], 0), k);
			got += k;
		}
	}
	tq->resv_n = 0;
	pthread_mutex_unlock(&tq->lock);
	atomic_fetch_add(&t->commits, 1);
	return t->cfg.want_delivered ? HS_EV_DELIVERED : 0;
}

static inline void tbe_notify(void *priv, uint16_t q, unsigned ev)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	(void)q;
	if (ev & HS_EV_DELIVERED)
		atomic_fetch_add(&t->n_delivered, 1);
	if (ev & HS_EV_COMPLETED)
		atomic_fetch_add(&t->n_completed, 1);
}

static inline int tbe_copy(void *priv, const struct hs_copy_op *ops, unsigned n)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	atomic_fetch_add(&t->hook_calls, 1);
	atomic_fetch_add(&t->hook_ops, n);
	if (t->cfg.hook_fails)
		return -EIO;
	for (unsigned i = 0; i < n; i++) {
		const struct hs_copy_op *o = &ops[i];
		if (o->flags & HS_COPY_SRC_STABLE)
			atomic_fetch_add(&t->hook_stable_ops, 1);
		if (t->cfg.defer_stable && (o->flags & HS_COPY_SRC_STABLE)) {
			pthread_mutex_lock(&t->defer_lock);
			bool room = t->n_defer < TBE_DEFER;
			if (room)
				t->defer[t->n_defer++] = (struct tbe_defer){
					tbe_addr(o->dst, o->dst_off),
					tbe_addr(o->src, o->src_off), o->len};
			pthread_mutex_unlock(&t->defer_lock);
			if (room)
				continue;
		}
		memcpy(tbe_addr(o->dst, o->dst_off), tbe_addr(o->src, o->src_off),
		       o->len);
	}
	return 0;
}

/* Runs the deferred copies (at commit: the latest a stable source lasts). */
static inline void tbe_run_deferred(struct tbe *t)
{
	pthread_mutex_lock(&t->defer_lock);
	for (unsigned i = 0; i < t->n_defer; i++)
		memcpy(t->defer[i].dst, t->defer[i].src, t->defer[i].len);
	t->n_defer = 0;
	pthread_mutex_unlock(&t->defer_lock);
}

static inline bool tbe_set_notify(void *priv, uint16_t q, unsigned ev, bool enable)
{
	struct tbe *t = priv;
	tbe_check_active(t);
	struct tbe_q *tq = &t->q[q];
	atomic_fetch_add(&t->set_notify_calls, 1);
	if (ev == HS_EV_POSTED) {
		/* tbe_post signals every post (hs_port_posted); asked whether
		 * buffers are there now, it answers, or a post made while the
		 * switch looked would be lost */
		atomic_store(&t->posted_asked, enable);
		if (!enable)
			return false;
		atomic_fetch_add(&t->posted_asks, 1);
		pthread_mutex_lock(&tq->lock);
		bool room = tq->posted && tq->rx_tail - tq->rx_head < TBE_RXMAX;
		pthread_mutex_unlock(&tq->lock);
		return room;
	}
	if (ev != HS_EV_KICK)
		return false;
	atomic_store(&tq->kicks_on, enable);
	if (!enable || t->cfg.notify_blind)
		return false;
	pthread_mutex_lock(&tq->lock);
	bool pending = tq->tx_head + tq->tx_inflight != tq->tx_tail;
	pthread_mutex_unlock(&tq->lock);
	return pending;
}

static const struct hs_backend_ops tbe_ops = {
	.name = TBE_NAME,
	.abi = HS_BACKEND_ABI,
	.open = tbe_open,
	.start = tbe_start,
	.close = tbe_close,
	.recv_burst = tbe_recv_burst,
	.recv_done = tbe_recv_done,
	.send_reserve = tbe_send_reserve,
	.send_commit = tbe_send_commit,
	.notify = tbe_notify,
	.copy = tbe_copy,
	.set_notify = tbe_set_notify,
};

static inline struct tbe *tbe_of(hs_port_t *p)
{
	return hs_port_backend_priv(p, &tbe_ops);
}

/* ---- host side ------------------------------------------------------------------ */

static inline hs_port_t *tbe_port(hs_switch_t *sw, const char *name,
			   const struct tbe_config *cfg, uint16_t vlan)
{
	int rc = hs_backend_register(&tbe_ops);
	if (rc && rc != -EEXIST)
		abort();
	struct tbe_config c = cfg ? *cfg : (struct tbe_config){0};
	struct hs_port_config pc = {.name = name, .backend = TBE_NAME,
				    .backend_config = &c,
				    .backend_config_size = sizeof(c), .vlan = vlan};
	hs_port_t *p = NULL;
	if (hs_port_add(sw, &pc, &p))
		return NULL;
	return p;
}

/* Queues a frame, cut into pieces of the sizes in `split` (0-terminated,
 * the rest in one piece). With foreign_tx the bytes past the first
 * HS_PKT_HDR_MIN live in foreign memory. */
static inline void tbe_queue(hs_port_t *port, uint16_t q, const uint8_t *data,
		      uint32_t len, const struct hs_offload *off,
		      const uint32_t *split)
{
	struct tbe *t = tbe_of(port);
	struct tbe_q *tq = &t->q[q];
	pthread_mutex_lock(&tq->lock);
	struct tbe_txf *f = &tq->tx[tq->tx_tail % TBE_TXMAX];
	f->len = len;
	f->off = off ? *off : (struct hs_offload){0};
	f->nseg = 0;
	uint32_t done = 0, k = 0;
	while (done < len && f->nseg < TBE_SEGS - 1) {
		uint32_t piece = split && split[k] ? split[k++] : len - done;
		if (piece > len - done)
			piece = len - done;
		bool foreign = t->cfg.foreign_tx && done >= HS_PKT_HDR_MIN;
		if (t->cfg.foreign_tx && done < HS_PKT_HDR_MIN &&
		    done + piece > HS_PKT_HDR_MIN)
			piece = HS_PKT_HDR_MIN - done; /* header stays local */
		struct hs_seg s = tbe_mem(piece, foreign);
		memcpy(tbe_addr(&s, 0), data + done, piece);
		f->seg[f->nseg++] = s;
		done += piece;
	}
	if (done < len) {
		struct hs_seg s = tbe_mem(len - done, t->cfg.foreign_tx);
		memcpy(tbe_addr(&s, 0), data + done, len - done);
		f->seg[f->nseg++] = s;
	}
	tq->tx_tail++;
	pthread_mutex_unlock(&tq->lock);
}

/* Signals queued frames: by eventfd for fd-driven queues, else by
 * hs_port_kick in this (the sender's) thread. */
static inline int tbe_kick(hs_port_t *port, uint16_t q)
{
	struct tbe *t = tbe_of(port);
	if (t->q[q].kfd >= 0) {
		uint64_t one = 1;
		return write(t->q[q].kfd, &one, 8) == 8 ? 0 : -errno;
	}
	return hs_port_kick(port, q);
}

static inline unsigned tbe_pending_tx(hs_port_t *port, uint16_t q)
{
	struct tbe *t = tbe_of(port);
	struct tbe_q *tq = &t->q[q];
	pthread_mutex_lock(&tq->lock);
	unsigned n = tq->tx_tail - tq->tx_head;
	pthread_mutex_unlock(&tq->lock);
	return n;
}

static inline unsigned tbe_rx_count(hs_port_t *port, uint16_t q)
{
	struct tbe *t = tbe_of(port);
	struct tbe_q *tq = &t->q[q];
	pthread_mutex_lock(&tq->lock);
	unsigned n = tq->rx_tail - tq->rx_head;
	pthread_mutex_unlock(&tq->lock);
	return n;
}

/* Pops the oldest received frame (caller frees r->data); false if none. */
static inline bool tbe_pop(hs_port_t *port, uint16_t q, struct tbe_rxf *r)
{
	struct tbe *t = tbe_of(port);
	struct tbe_q *tq = &t->q[q];
	pthread_mutex_lock(&tq->lock);
	bool ok = tq->rx_head != tq->rx_tail;
	if (ok)
		*r = tq->rx[tq->rx_head++ % TBE_RXMAX];
	pthread_mutex_unlock(&tq->lock);
	return ok;
}

static inline void tbe_drop_all(hs_port_t *port, uint16_t q)
{
	struct tbe_rxf r;
	while (tbe_pop(port, q, &r))
		free(r.data);
}

/* Posts n more receive buffers and tells the switch. */
static inline void tbe_post(hs_port_t *port, uint16_t q, uint32_t n)
{
	struct tbe *t = tbe_of(port);
	pthread_mutex_lock(&t->q[q].lock);
	t->q[q].posted += n;
	pthread_mutex_unlock(&t->q[q].lock);
	hs_port_posted(port, q);
}

/* Quiesces the port (hs_port_quiesce) and, from its return until
 * tbe_resume, counts every data-path op the switch calls. */
static inline int tbe_quiesce(hs_port_t *port)
{
	int rc = hs_port_quiesce(port);
	atomic_store(&tbe_of(port)->quiesced, true);
	return rc;
}

static inline int tbe_resume(hs_port_t *port)
{
	atomic_store(&tbe_of(port)->quiesced, false);
	return hs_port_resume(port);
}

#endif /* HS_TESTBE_H */
