/*
 * mem.c - the "mem" backend: the host program as a port.
 *
 * Per queue pair, two single-producer/single-consumer rings shared between
 * the host and the switch, shaped like a virtio device:
 *
 *  transmit (host -> switch): `prod` is written by the host, `next` (frames
 *  handed to the switch) and `done` (frames completed, in order) by the
 *  switch; the host reaps completions up to `done` into `reap`, and only
 *  then may reuse those slots. Frames are referenced, never copied here:
 *  the switch copies each one once, into its receivers' buffers.
 *
 *  receive (switch -> host): ring_size buffers of buf_size bytes owned by
 *  the port. The switch reserves the next free slots, copies into them and
 *  publishes `prod`; the host reads frames in place and releases them by
 *  advancing `cons`, which posts the buffers again (and drains the
 *  switch's backlog for this queue at once).
 *
 * Notifications: the host kicks the switch after queueing only while
 * `need_kick` is set (a worker busy-polling the queue clears it); the
 * switch signals the rx eventfd only while the host armed it (one-shot)
 * or always with HS_MEM_RX_NOTIFY_ALWAYS. Both decisions use the virtio
 * pattern: publish, full fence, then read the other side's flag.
 *
 * The host is trusted no more than any peer: descriptors are checked in
 * hs_mem_tx_burst (length, segment count), once, before the switch sees
 * them.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <stdatomic.h>
#include <string.h>

#include "backends.h"
#include "prefetch.h"

#define MEM_MAX_SEGS 16
#define DEF_RING 256
#define DEF_BUF 2048
#define MAX_RING 32768

struct mem_txq {
	_Atomic uint32_t prod HSB_ALIGNED; /* host */
	uint32_t reap;                     /* host: next cookie to report */
	_Atomic uint32_t done HSB_ALIGNED; /* switch: completed up to */
	uint32_t next;                     /* switch: received up to */
	_Atomic uint32_t need_kick;        /* switch: host must kick */
	struct hs_mem_frame *ring HSB_ALIGNED;
	struct hs_seg *segs;               /* [ring][MEM_MAX_SEGS] */
	int kick_fd;
};

struct mem_rxslot {
	uint32_t len;
	struct hs_offload off;
};

struct mem_rxq {
	_Atomic uint32_t prod HSB_ALIGNED; /* switch: published up to */
	uint32_t n_resv;                   /* switch: reserved, unpublished */
	uint8_t got[HS_RESERVE_MAX];       /* switch: entry got a slot */
	_Atomic uint32_t cons HSB_ALIGNED; /* host: released up to */
	_Atomic uint32_t armed;            /* host: notify once */
	struct mem_rxslot *meta HSB_ALIGNED;
	struct hs_seg *segs;               /* one per slot, preset */
	uint8_t *bufs;
	int fd;
};

struct mem_port {
	hs_port_t *port;
	struct hs_mem_config cfg;
	uint32_t mask;
	struct mem_txq *tx;
	struct mem_rxq *rx;
};

static struct mem_port *mem_of(hs_port_t *p, uint16_t q)
{
	struct mem_port *m = hs_port_backend_priv(p, &hs__mem_ops);
	return m && q < m->cfg.n_queues ? m : NULL;
}

/* ---- lifecycle --------------------------------------------------------------- */

static void mem_close(void *priv)
{
	struct mem_port *m = priv;
	if (!m)
		return;
	for (unsigned q = 0; q < m->cfg.n_queues; q++) {
		if (m->tx) {
			free(m->tx[q].ring);
			free(m->tx[q].segs);
			if (m->tx[q].kick_fd >= 0)
				close(m->tx[q].kick_fd);
		}
		if (m->rx) {
			free(m->rx[q].meta);
			free(m->rx[q].segs);
			free(m->rx[q].bufs);
			if (m->rx[q].fd >= 0)
				close(m->rx[q].fd);
		}
	}
	free(m->tx);
	free(m->rx);
	free(m);
}

static int mem_open(hs_port_t *port, const void *config, size_t size,
		    void **priv, struct hs_port_info *info)
{
	struct hs_mem_config c = {0};
	if (config) {
		int rc = hs_config_copy(&c, sizeof(c), config, size, HS_MEM_CONFIG_SIZE_V1);
		if (rc)
			return rc;
	}
	if (!c.n_queues)
		c.n_queues = 1;
	if (!c.ring_size)
		c.ring_size = DEF_RING;
	if (!c.buf_size)
		c.buf_size = DEF_BUF;
	if (c.n_queues > HS_MAX_QUEUES || c.ring_size > MAX_RING ||
	    (c.ring_size & (c.ring_size - 1)) || c.buf_size < 64 ||
	    c.buf_size > 2 * HS_FRAME_MAX || (c.caps & ~HS_CAP_ALL) ||
	    (c.flags & ~(HS_MEM_NO_KICK | HS_MEM_RX_NOTIFY_ALWAYS)))
		return -EINVAL;

	struct mem_port *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->port = port;
	m->cfg = c;
	m->mask = c.ring_size - 1;
	m->tx = aligned_alloc(HSB_CACHELINE, c.n_queues * sizeof(*m->tx));
	m->rx = aligned_alloc(HSB_CACHELINE, c.n_queues * sizeof(*m->rx));
	if (!m->tx || !m->rx) {
		free(m->tx);
		free(m->rx);
		free(m);
		return -ENOMEM;
	}
	memset(m->tx, 0, c.n_queues * sizeof(*m->tx));
	memset(m->rx, 0, c.n_queues * sizeof(*m->rx));
	for (unsigned q = 0; q < c.n_queues; q++) {
		m->tx[q].kick_fd = m->rx[q].fd = -1;
		atomic_init(&m->tx[q].need_kick, 1);
	}
	for (unsigned q = 0; q < c.n_queues; q++) {
		struct mem_txq *t = &m->tx[q];
		struct mem_rxq *r = &m->rx[q];
		t->ring = calloc(c.ring_size, sizeof(*t->ring));
		t->segs = calloc((size_t)c.ring_size * MEM_MAX_SEGS, sizeof(*t->segs));
		t->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		r->meta = calloc(c.ring_size, sizeof(*r->meta));
		r->segs = calloc(c.ring_size, sizeof(*r->segs));
		r->bufs = aligned_alloc(HSB_CACHELINE, (size_t)c.ring_size * c.buf_size);
		r->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (!t->ring || !t->segs || t->kick_fd < 0 || !r->meta || !r->segs ||
		    !r->bufs || r->fd < 0) {
			mem_close(m);
			return -ENOMEM;
		}
		for (uint32_t i = 0; i < c.ring_size; i++)
			r->segs[i] = (struct hs_seg){
				.base = r->bufs + (size_t)i * c.buf_size,
				.len = c.buf_size};
	}
	*priv = m;
	info->n_queues = c.n_queues;
	info->caps = c.caps;
	info->link_up = true;
	return 0;
}

static int mem_start(void *priv)
{
	struct mem_port *m = priv;
	for (unsigned q = 0; q < m->cfg.n_queues; q++) {
		int rc = hs_port_set_queue_fd(m->port, (uint16_t)q, HS_EV_KICK,
					      m->tx[q].kick_fd);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- data path: switch side ------------------------------------------------------- */

static unsigned mem_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts,
			       unsigned max)
{
	struct mem_port *m = priv;
	struct mem_txq *t = &m->tx[q];
	uint32_t prod = atomic_load_explicit(&t->prod, memory_order_acquire);
	uint32_t n = prod - t->next;
	if (n > max)
		n = max;
	const uint32_t next = t->next, mask = m->mask;
	const struct hs_mem_frame *ring = t->ring;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot = (next + i) & mask;
		const struct hs_mem_frame *f = &ring[slot];
		struct hs_pkt *p = &pkts[i];
		p->off = f->off;
		p->token = slot;
		if (HSB_LIKELY(!f->iov)) {
			p->seg[0] = (struct hs_seg){.base = f->data, .len = f->len};
			p->segs = p->seg;
			p->nsegs = 1;
			p->len = f->len;
			continue;
		}
		/* Converted in hs_mem_tx_burst, which also checked them. */
		p->segs = &t->segs[(size_t)slot * MEM_MAX_SEGS];
		p->nsegs = f->iovcnt;
		p->len = f->len;
	}
	t->next += n;
	return n;
}

static unsigned mem_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts,
			      unsigned n)
{
	struct mem_port *m = priv;
	struct mem_txq *t = &m->tx[q];
	(void)pkts;
	atomic_store_explicit(&t->done,
			      atomic_load_explicit(&t->done, memory_order_relaxed) + n,
			      memory_order_release);
	return 0;
}

static unsigned mem_send_reserve(void *priv, uint16_t q, const struct hs_out *out,
				 unsigned n, struct hs_iobuf *bufs)
{
	struct mem_port *m = priv;
	struct mem_rxq *r = &m->rx[q];
	uint32_t prod = atomic_load_explicit(&r->prod, memory_order_relaxed);
	uint32_t cons = atomic_load_explicit(&r->cons, memory_order_acquire);
	uint32_t room = m->cfg.ring_size - (prod - cons);
	uint32_t slot = prod;
	/* in locals: the stores below could alias them for the compiler */
	const uint32_t buf_size = m->cfg.buf_size, mask = m->mask;
	struct hs_seg *segs = r->segs;
	uint8_t *got = r->got;
	const unsigned pf = hsb_prefetch_count(out, n);
	unsigned i;
	for (i = 0; i < n; i++) {
		if (HSB_UNLIKELY(out[i].len > buf_size)) {
			bufs[i].nsegs = 0;
			got[i] = 0;
			continue;
		}
		if (!room)
			break;
		bufs[i].segs = &segs[slot & mask];
		bufs[i].nsegs = 1;
		/* the host's thread last read this buffer, maybe on another
		 * core: its first line is fetched before the copy, here for
		 * a small burst's and a large one's first, by the copy loop
		 * for the rest (prefetch.h) */
		if (i < pf)
			hsb_prefetch_w(segs[slot & mask].base);
		got[i] = 1;
		slot++;
		room--;
	}
	r->n_resv = slot - prod;
	return i;
}

static unsigned mem_send_commit(void *priv, uint16_t q, const struct hs_out *out,
				unsigned n)
{
	struct mem_port *m = priv;
	struct mem_rxq *r = &m->rx[q];
	uint32_t slot = atomic_load_explicit(&r->prod, memory_order_relaxed);
	const uint32_t mask = m->mask;
	const uint8_t *got = r->got;
	struct mem_rxslot *meta = r->meta;
	for (unsigned i = 0; i < n; i++) {
		if (!got[i])
			continue;
		struct mem_rxslot *s = &meta[slot++ & mask];
		s->len = out[i].len;
		s->off = out[i].off;
	}
	r->n_resv = 0;
	atomic_store_explicit(&r->prod, slot, memory_order_release);
	if (m->cfg.flags & HS_MEM_RX_NOTIFY_ALWAYS)
		return HS_EV_DELIVERED;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->armed, memory_order_relaxed) &&
	    atomic_exchange_explicit(&r->armed, 0, memory_order_relaxed))
		return HS_EV_DELIVERED;
	return 0;
}

static void mem_notify(void *priv, uint16_t q, unsigned ev)
{
	struct mem_port *m = priv;
	if (ev & HS_EV_DELIVERED) {
		uint64_t one = 1;
		ssize_t w = write(m->rx[q].fd, &one, sizeof(one));
		(void)w;
	}
}

static bool mem_set_notify(void *priv, uint16_t q, unsigned ev, bool enable)
{
	struct mem_port *m = priv;
	if (ev == HS_EV_POSTED) {
		/* hs_mem_rx_release signals every post (hs_port_posted); the
		 * switch asks here whether buffers came before it looked. It
		 * fenced after publishing "frames waiting", before this call. */
		if (!enable)
			return false;
		struct mem_rxq *r = &m->rx[q];
		return atomic_load_explicit(&r->prod, memory_order_relaxed) -
			       atomic_load_explicit(&r->cons, memory_order_acquire) <
		       m->cfg.ring_size;
	}
	struct mem_txq *t = &m->tx[q];
	atomic_store_explicit(&t->need_kick, enable, memory_order_relaxed);
	if (!enable)
		return false;
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&t->prod, memory_order_relaxed) != t->next;
}

static void mem_counters(void *priv,
			 void (*cb)(void *arg, const char *name, uint64_t value),
			 void *arg)
{
	struct mem_port *m = priv;
	uint64_t queued = 0, waiting = 0;
	for (unsigned q = 0; q < m->cfg.n_queues; q++) {
		queued += atomic_load(&m->tx[q].prod) - m->tx[q].next;
		waiting += atomic_load(&m->rx[q].prod) - atomic_load(&m->rx[q].cons);
	}
	cb(arg, "tx_queued", queued);
	cb(arg, "rx_waiting", waiting);
}

const struct hs_backend_ops hs__mem_ops = {
	.name = HS_MEM_BACKEND,
	.abi = HS_BACKEND_ABI,
	.open = mem_open,
	.start = mem_start,
	.close = mem_close,
	.recv_burst = mem_recv_burst,
	.recv_done = mem_recv_done,
	.send_reserve = mem_send_reserve,
	.send_commit = mem_send_commit,
	.notify = mem_notify,
	.set_notify = mem_set_notify,
	.counters = mem_counters,
};

/* ---- host side -------------------------------------------------------------------- */

/* Checks one frame and converts its gather list; returns its length or a
 * negative errno. */
static int check_frame(const struct hs_mem_frame *f, struct hs_seg *segs)
{
	if (!f->iov) {
		if (!f->data || !f->len || f->len > HS_FRAME_MAX)
			return -EINVAL;
		return (int)f->len;
	}
	if (!f->iovcnt || f->iovcnt > MEM_MAX_SEGS)
		return -EINVAL;
	uint64_t len = 0;
	for (unsigned i = 0; i < f->iovcnt; i++) {
		if (!f->iov[i].iov_base || !f->iov[i].iov_len ||
		    f->iov[i].iov_len > HS_FRAME_MAX)
			return -EINVAL;
		segs[i] = (struct hs_seg){.base = f->iov[i].iov_base,
					  .len = (uint32_t)f->iov[i].iov_len};
		len += f->iov[i].iov_len;
	}
	if (len > HS_FRAME_MAX)
		return -EINVAL;
	return (int)len;
}

int hs_mem_tx_burst(hs_port_t *port, uint16_t q, const struct hs_mem_frame *frames,
		    unsigned n)
{
	struct mem_port *m = mem_of(port, q);
	if (!m || (n && !frames))
		return -EINVAL;
	struct mem_txq *t = &m->tx[q];
	uint32_t prod = atomic_load_explicit(&t->prod, memory_order_relaxed);
	uint32_t room = m->cfg.ring_size - (prod - t->reap);
	if (n > room)
		n = room;
	unsigned i;
	for (i = 0; i < n; i++) {
		uint32_t slot = (prod + i) & m->mask;
		int len = check_frame(&frames[i], &t->segs[(size_t)slot * MEM_MAX_SEGS]);
		if (len < 0) {
			if (!i)
				return len;
			break;
		}
		t->ring[slot] = frames[i];
		t->ring[slot].len = (uint32_t)len;
	}
	if (!i)
		return 0;
	atomic_store_explicit(&t->prod, prod + i, memory_order_release);
	if (!(m->cfg.flags & HS_MEM_NO_KICK)) {
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&t->need_kick, memory_order_relaxed)) {
			int rc = hs_port_kick(port, q);
			if (rc < 0 && rc != -EBUSY)
				return rc;
		}
	}
	return (int)i;
}

int hs_mem_tx_reap(hs_port_t *port, uint16_t q, uint64_t *cookies, unsigned n)
{
	struct mem_port *m = mem_of(port, q);
	if (!m || (n && !cookies))
		return -EINVAL;
	struct mem_txq *t = &m->tx[q];
	uint32_t done = atomic_load_explicit(&t->done, memory_order_acquire);
	uint32_t k = done - t->reap;
	if (k > n)
		k = n;
	for (uint32_t i = 0; i < k; i++)
		cookies[i] = t->ring[(t->reap + i) & m->mask].cookie;
	t->reap += k;
	return (int)k;
}

int hs_mem_rx_burst(hs_port_t *port, uint16_t q, struct hs_mem_frame *frames,
		    unsigned n)
{
	struct mem_port *m = mem_of(port, q);
	if (!m || (n && !frames))
		return -EINVAL;
	struct mem_rxq *r = &m->rx[q];
	uint32_t prod = atomic_load_explicit(&r->prod, memory_order_acquire);
	uint32_t cons = atomic_load_explicit(&r->cons, memory_order_relaxed);
	/* Frames whose copy failed were published empty: skip them. Their
	 * slots are buffers posted again, as a release would post them. */
	uint32_t from = cons;
	while (cons != prod && !r->meta[cons & m->mask].len)
		cons++;
	if (cons != from) {
		atomic_store_explicit(&r->cons, cons, memory_order_release);
		hs_port_posted(port, q);
	}
	uint32_t k = prod - cons;
	if (k > n)
		k = n;
	unsigned i;
	for (i = 0; i < k; i++) {
		uint32_t slot = (cons + i) & m->mask;
		const struct mem_rxslot *s = &r->meta[slot];
		if (!s->len)
			break;
		frames[i] = (struct hs_mem_frame){
			.data = r->bufs + (size_t)slot * m->cfg.buf_size,
			.len = s->len, .off = s->off};
	}
	return (int)i;
}

int hs_mem_rx_release(hs_port_t *port, uint16_t q, unsigned n)
{
	struct mem_port *m = mem_of(port, q);
	if (!m)
		return -EINVAL;
	struct mem_rxq *r = &m->rx[q];
	uint32_t prod = atomic_load_explicit(&r->prod, memory_order_acquire);
	uint32_t cons = atomic_load_explicit(&r->cons, memory_order_relaxed);
	if (n > prod - cons)
		return -EINVAL;
	atomic_store_explicit(&r->cons, cons + n, memory_order_release);
	hs_port_posted(port, q);
	return 0;
}

int hs_mem_recv(hs_port_t *port, uint16_t q, void *buf, size_t len,
		struct hs_offload *off)
{
	struct hs_mem_frame f;
	int n = hs_mem_rx_burst(port, q, &f, 1);
	if (n <= 0)
		return n ? n : -EAGAIN;
	size_t k = f.len < len ? f.len : len;
	if (buf)
		memcpy(buf, f.data, k);
	if (off)
		*off = f.off;
	hs_mem_rx_release(port, q, 1);
	return f.len > len ? -EMSGSIZE : (int)f.len;
}

int hs_mem_rx_fd(hs_port_t *port, uint16_t q)
{
	struct mem_port *m = mem_of(port, q);
	return m ? m->rx[q].fd : -EINVAL;
}

int hs_mem_rx_arm(hs_port_t *port, uint16_t q)
{
	struct mem_port *m = mem_of(port, q);
	if (!m)
		return -EINVAL;
	struct mem_rxq *r = &m->rx[q];
	atomic_store_explicit(&r->armed, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&r->prod, memory_order_relaxed) !=
	       atomic_load_explicit(&r->cons, memory_order_relaxed);
}
