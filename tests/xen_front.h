/*
 * xen_front.h - a Xen netif front-end for tests, written from the
 * protocol (xen/io/netif.h, xen/io/ring.h, the xenstore handshake as
 * Linux's netfront does it), not from the backend: a guest domain of the
 * emulated hypervisor with its own memory, that grants its ring pages
 * and buffers, allocates event channels, writes its keys, and moves
 * frames through the rings with the protocol's own macros. It may ask
 * for several queues (multi-queue-num-queues, keys under queue-N/) and
 * for split event channels (event-channel-tx and -rx).
 *
 * Memory: pages 0..2*XF_QMAX-1 the rings (transmit, receive per queue),
 * then XF_TXP transmit pages (granted read-only, one per slot), then
 * XF_RXP receive pages (granted writable, shared out among the queues).
 * Receive request ids are slot numbers, as Linux's are.
 */
#ifndef HS_TEST_XEN_FRONT_H
#define HS_TEST_XEN_FRONT_H

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/xen_emu.h"
#include "backends/xen_netif.h"

#ifndef ck_assert
/* Outside a Check test (hs-bench): a failed expectation aborts. */
#define XF_FAIL(c) (fprintf(stderr, "xen_front: %s\n", c), abort())
#define ck_assert(c) ((c) ? (void)0 : XF_FAIL(#c))
#define ck_assert_msg(c, ...) ck_assert(c)
#define ck_assert_int_eq(a, b) ck_assert((a) == (b))
#define ck_assert_int_ge(a, b) ck_assert((a) >= (b))
#define ck_assert_int_gt(a, b) ck_assert((a) > (b))
#define ck_assert_uint_eq(a, b) ck_assert((a) == (b))
#define ck_assert_uint_le(a, b) ck_assert((a) <= (b))
#define ck_assert_ptr_nonnull(a) ck_assert((a) != NULL)
#endif
#ifndef TH_WAIT
#include <sched.h>
#include <time.h>
static inline uint64_t xf_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
#define TH_WAIT(cond, ms)                                                   \
	({                                                                  \
		uint64_t xf_dl_ = xf_ms() + (ms);                           \
		bool xf_ok_;                                                \
		while (!(xf_ok_ = (cond)) && xf_ms() < xf_dl_)              \
			sched_yield();                                      \
		xf_ok_;                                                     \
	})
#endif

#define XF_QMAX 4
#define XF_TXP 256
#define XF_RXP 256
#define XF_RING0 0
#define XF_TXP0 (2 * XF_QMAX)
#define XF_RXP0 (XF_TXP0 + XF_TXP)
#define XF_PAGES (XF_RXP0 + XF_RXP)

struct xfq {                     /* one queue pair */
	netif_tx_front_ring_t tx;
	netif_rx_front_ring_t rx;
	uint32_t tx_ref, rx_ref;
	int port_tx, port_rx;        /* equal unless split */
	uint16_t rx_shadow[256];     /* receive slot -> the page its request gave */
};

struct xfront {
	struct hs__xemu *emu;
	struct hs__xemu_dom *dom;
	const struct hs__xsvc_ops *ops;
	uint8_t *mem;
	uint32_t domid, devid, backend_domid;
	void *evt, *xs;
	struct xfq q[XF_QMAX];
	unsigned nq;                 /* queues asked for (0 or 1: the top keys) */
	bool split;                  /* event-channel-tx and -rx */
	uint32_t txp_ref[XF_TXP], rxp_ref[XF_RXP];
	unsigned tx_next;            /* next transmit page, round robin */
	uint16_t tx_id;
	unsigned tx_out;             /* requests without a response yet */
	int16_t last_tx_status;
	char fe[96], be[96];
	/* features this front-end announces */
	bool sg, gso4, gso6, no_csum;
	bool no_rx_copy;             /* leaves request-rx-copy out */
	unsigned post_rx;            /* receive pages posted per queue at connect (0: all) */
	uint32_t bad_tx_ref;         /* if set, written as queue 0's tx-ring-ref */
};

static inline uint8_t *xf_page(struct xfront *f, unsigned page)
{
	return f->mem + (size_t)page * HS__XEN_PAGE;
}

static inline unsigned xf_nq(const struct xfront *f)
{
	return f->nq ? f->nq : 1;
}

static inline void xf_put(struct xfront *f, const char *key, const char *val)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", f->fe, key);
	ck_assert(f->ops->xs_write(f->xs, HS__XBT_NULL, path, val, (unsigned)strlen(val)));
}

static inline void xf_putu(struct xfront *f, const char *key, unsigned v)
{
	char s[24];
	snprintf(s, sizeof(s), "%u", v);
	xf_put(f, key, s);
}

/* Queue q's key: under queue-<q>/ with several queues. */
static inline void xf_putqu(struct xfront *f, unsigned q, const char *key, unsigned v)
{
	char k[64];
	if (f->nq > 1)
		snprintf(k, sizeof(k), "queue-%u/%s", q, key);
	else
		snprintf(k, sizeof(k), "%s", key);
	xf_putu(f, k, v);
}

/* The back-end's state (0 if none). */
static inline int xf_be_state(struct xfront *f)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/state", f->be);
	unsigned len;
	char *s = f->ops->xs_read(f->xs, HS__XBT_NULL, path, &len);
	int st = s ? atoi(s) : 0;
	free(s);
	return st;
}

/* A guest domain with its vif's front-end directory, as a toolstack
 * makes it (state Initialising); features all on. */
static inline void xf_create(struct xfront *f, struct hs__xemu *emu, uint32_t domid,
			     uint32_t devid, uint32_t backend_domid)
{
	memset(f, 0, sizeof(*f));
	f->emu = emu;
	f->ops = hs__xemu_ops();
	f->domid = domid;
	f->devid = devid;
	f->backend_domid = backend_domid;
	f->dom = hs__xemu_domain(emu, domid, XF_PAGES, &f->mem);
	ck_assert_ptr_nonnull(f->dom);
	f->xs = f->ops->xs_open(f->dom);
	f->evt = f->ops->evt_open(f->dom);
	ck_assert(f->xs && f->evt);
	snprintf(f->fe, sizeof(f->fe), "/local/domain/%u/device/vif/%u", domid, devid);
	snprintf(f->be, sizeof(f->be), "/local/domain/%u/backend/vif/%u/%u", backend_domid, domid,
		 devid);
	f->sg = f->gso4 = f->gso6 = true;
	xf_put(f, "backend", f->be);
	xf_putu(f, "backend-id", backend_domid);
	xf_putu(f, "handle", devid);
	xf_putu(f, "state", 1);
	for (unsigned i = 0; i < XF_TXP; i++) {
		int r = hs__xemu_grant(f->dom, XF_TXP0 + i, backend_domid, true);
		ck_assert_int_ge(r, 0);
		f->txp_ref[i] = (uint32_t)r;
	}
	for (unsigned i = 0; i < XF_RXP; i++) {
		int r = hs__xemu_grant(f->dom, XF_RXP0 + i, backend_domid, false);
		ck_assert_int_ge(r, 0);
		f->rxp_ref[i] = (uint32_t)r;
	}
}

static inline bool xf_wait_be(struct xfront *f, int state, int ms)
{
	return TH_WAIT(xf_be_state(f) == state, ms);
}

/* Posts receive page `i` on queue q's ring (not pushed). */
static inline void xf_post_one(struct xfront *f, unsigned q, unsigned i)
{
	struct xfq *fq = &f->q[q];
	uint16_t slot = (uint16_t)(fq->rx.req_prod_pvt & (RING_SIZE(&fq->rx) - 1));
	netif_rx_request_t *r = RING_GET_REQUEST(&fq->rx, fq->rx.req_prod_pvt++);
	r->id = slot;
	r->gref = f->rxp_ref[i];
	fq->rx_shadow[slot] = (uint16_t)i;
}

static inline void xf_kick(struct xfront *f, int port, int notify)
{
	if (notify)
		ck_assert_int_eq(f->ops->evt_notify(f->evt, (uint32_t)port), 0);
}

/* The handshake, the front-end's half: rings, event channels, keys,
 * receive pages posted, state Connected (the back-end's answer is the
 * caller's to wait for). */
static inline void xf_offer(struct xfront *f)
{
	ck_assert(xf_wait_be(f, 2, 3000)); /* InitWait */
	unsigned nq = xf_nq(f), per = XF_RXP / nq;
	for (unsigned q = 0; q < nq; q++) {
		struct xfq *fq = &f->q[q];
		netif_tx_sring_t *txs = (netif_tx_sring_t *)xf_page(f, XF_RING0 + 2 * q);
		netif_rx_sring_t *rxs = (netif_rx_sring_t *)xf_page(f, XF_RING0 + 2 * q + 1);
		SHARED_RING_INIT(txs);
		FRONT_RING_INIT(&fq->tx, txs, HS__XEN_PAGE);
		SHARED_RING_INIT(rxs);
		FRONT_RING_INIT(&fq->rx, rxs, HS__XEN_PAGE);
		if (!fq->tx_ref) {
			fq->tx_ref = (uint32_t)hs__xemu_grant(f->dom, XF_RING0 + 2 * q,
							      f->backend_domid, false);
			fq->rx_ref = (uint32_t)hs__xemu_grant(f->dom, XF_RING0 + 2 * q + 1,
							      f->backend_domid, false);
		}
		fq->port_tx = hs__xemu_evt_alloc_unbound(f->evt, f->backend_domid);
		fq->port_rx = f->split ? hs__xemu_evt_alloc_unbound(f->evt, f->backend_domid)
				       : fq->port_tx;
		ck_assert_int_gt(fq->port_tx, 0);
		ck_assert_int_gt(fq->port_rx, 0);
		unsigned n = RING_SIZE(&fq->rx) < per ? RING_SIZE(&fq->rx) : per;
		if (f->post_rx && f->post_rx < n)
			n = f->post_rx;
		for (unsigned i = 0; i < n; i++)
			xf_post_one(f, q, q * per + i);
		int notify;
		RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fq->rx, notify);
		(void)notify;
		xf_putqu(f, q, "tx-ring-ref", q == 0 && f->bad_tx_ref ? f->bad_tx_ref : fq->tx_ref);
		xf_putqu(f, q, "rx-ring-ref", fq->rx_ref);
		if (f->split) {
			xf_putqu(f, q, "event-channel-tx", (unsigned)fq->port_tx);
			xf_putqu(f, q, "event-channel-rx", (unsigned)fq->port_rx);
		} else {
			xf_putqu(f, q, "event-channel", (unsigned)fq->port_tx);
		}
	}
	f->tx_out = 0;
	if (f->nq)
		xf_putu(f, "multi-queue-num-queues", f->nq);
	if (!f->no_rx_copy) {
		xf_put(f, "request-rx-copy", "1");
	} else {
		char path[160];
		snprintf(path, sizeof(path), "%s/request-rx-copy", f->fe);
		f->ops->xs_rm(f->xs, HS__XBT_NULL, path); /* from an earlier offer */
	}
	xf_put(f, "feature-rx-notify", "1");
	xf_put(f, "feature-sg", f->sg ? "1" : "0");
	xf_put(f, "feature-gso-tcpv4", f->gso4 ? "1" : "0");
	xf_put(f, "feature-gso-tcpv6", f->gso6 ? "1" : "0");
	xf_put(f, "feature-ipv6-csum-offload", "1");
	if (f->no_csum)
		xf_put(f, "feature-no-csum-offload", "1");
	xf_putu(f, "state", 4);
}

/* The handshake to the end: the back-end Connected. */
static inline void xf_connect(struct xfront *f)
{
	xf_offer(f);
	ck_assert(xf_wait_be(f, 4, 3000));
}

/* Posts receive pages [from, from + n) on queue q and kicks as the ring
 * says. */
static inline void xf_post_q(struct xfront *f, unsigned q, unsigned from, unsigned n)
{
	struct xfq *fq = &f->q[q];
	for (unsigned i = 0; i < n; i++)
		xf_post_one(f, q, from + i);
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fq->rx, notify);
	xf_kick(f, fq->port_rx, notify);
}

static inline void xf_post(struct xfront *f, unsigned from, unsigned n)
{
	xf_post_q(f, 0, from, n);
}

/* Sends a frame on queue q in `slots` transmit slots (each on a page of
 * its own, at offset `off`), with an optional GSO extra; pushes and
 * kicks as the ring says. */
static inline void xf_send_q(struct xfront *f, unsigned q, const void *frame, uint32_t len,
			     unsigned slots, uint16_t off, uint16_t flags, uint16_t gso_size,
			     uint8_t gso_type)
{
	struct xfq *fq = &f->q[q];
	const uint8_t *b = frame;
	uint32_t per = (len + slots - 1) / slots, done = 0;
	for (unsigned s = 0; s < slots; s++) {
		uint32_t k = len - done < per ? len - done : per;
		unsigned pg = f->tx_next++ % XF_TXP;
		memcpy(xf_page(f, XF_TXP0 + pg) + off, b + done, k);
		netif_tx_request_t *r = RING_GET_REQUEST(&fq->tx, fq->tx.req_prod_pvt++);
		r->gref = f->txp_ref[pg];
		r->offset = off;
		r->id = f->tx_id++;
		r->size = (uint16_t)(s == 0 ? len : k);
		r->flags = (uint16_t)((s + 1 < slots ? NETTXF_more_data : 0) |
				      (s == 0 ? flags | (gso_size ? NETTXF_extra_info : 0) : 0));
		f->tx_out++;
		if (s == 0 && gso_size) {
			netif_extra_info_t *e =
				(netif_extra_info_t *)RING_GET_REQUEST(&fq->tx, fq->tx.req_prod_pvt++);
			memset(e, 0, sizeof(*e));
			e->type = XEN_NETIF_EXTRA_TYPE_GSO;
			e->u.gso.size = gso_size;
			e->u.gso.type = gso_type;
			f->tx_out++;
		}
		done += k;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fq->tx, notify);
	xf_kick(f, fq->port_tx, notify);
}

static inline void xf_send(struct xfront *f, const void *frame, uint32_t len, unsigned slots,
			   uint16_t off, uint16_t flags, uint16_t gso_size, uint8_t gso_type)
{
	xf_send_q(f, 0, frame, len, slots, off, flags, gso_size, gso_type);
}

/* Takes every queue's transmit responses; returns how many
 * (last_tx_status keeps the last data response's status). */
static inline unsigned xf_reap_tx(struct xfront *f)
{
	unsigned n = 0;
	for (unsigned q = 0; q < xf_nq(f); q++) {
		struct xfq *fq = &f->q[q];
		RING_IDX prod = __atomic_load_n(&fq->tx.sring->rsp_prod, __ATOMIC_ACQUIRE);
		while (fq->tx.rsp_cons != prod) {
			netif_tx_response_t *r = RING_GET_RESPONSE(&fq->tx, fq->tx.rsp_cons++);
			if (r->status != NETIF_RSP_NULL)
				f->last_tx_status = r->status;
			f->tx_out--;
			n++;
			if (fq->tx.rsp_cons == prod) {
				int more;
				RING_FINAL_CHECK_FOR_RESPONSES(&fq->tx, more);
				prod = __atomic_load_n(&fq->tx.sring->rsp_prod, __ATOMIC_ACQUIRE);
				(void)more;
			}
		}
	}
	return n;
}

struct xf_rx {
	uint32_t len;
	uint16_t flags;    /* the first response's NETRXF_* */
	uint16_t gso_size;
	uint8_t gso_type;
	unsigned slots;
	unsigned queue;
	int16_t status;    /* < 0: an error response */
};

/* Receives one frame from queue q into buf (its pieces reassembled, their
 * pages posted again); returns 1, or 0 if none waits. */
static inline int xf_recv_q(struct xfront *f, unsigned q, uint8_t *buf, uint32_t max,
			    struct xf_rx *info)
{
	struct xfq *fq = &f->q[q];
	RING_IDX prod = __atomic_load_n(&fq->rx.sring->rsp_prod, __ATOMIC_ACQUIRE);
	if (fq->rx.rsp_cons == prod)
		return 0;
	memset(info, 0, sizeof(*info));
	info->queue = q;
	bool first = true, more = true;
	unsigned mask = RING_SIZE(&fq->rx) - 1;
	while (more) {
		ck_assert_msg(fq->rx.rsp_cons != prod, "a frame ends past the responses");
		RING_IDX idx = fq->rx.rsp_cons++;
		netif_rx_response_t r = *RING_GET_RESPONSE(&fq->rx, idx);
		unsigned slot = idx & mask, page = fq->rx_shadow[slot];
		/* the response sits in its request's slot and echoes its id */
		ck_assert_uint_eq(r.id, slot);
		info->slots++;
		if (r.status < 0) {
			info->status = r.status;
			xf_post_one(f, q, page);
			more = r.flags & NETRXF_more_data;
			first = false;
			continue;
		}
		ck_assert_uint_le((uint32_t)r.offset + (uint32_t)r.status, HS__XEN_PAGE);
		ck_assert_uint_le(info->len + (uint32_t)r.status, max);
		memcpy(buf + info->len, xf_page(f, XF_RXP0 + page) + r.offset, (size_t)r.status);
		info->len += (uint32_t)r.status;
		xf_post_one(f, q, page);
		if (first) {
			info->flags = r.flags;
			if (r.flags & NETRXF_extra_info) {
				/* the extra sits in the next slot, whose request it used */
				ck_assert_msg(fq->rx.rsp_cons != prod, "extra info missing");
				RING_IDX ei = fq->rx.rsp_cons++;
				const netif_extra_info_t *e =
					(const netif_extra_info_t *)RING_GET_RESPONSE(&fq->rx, ei);
				ck_assert_uint_eq(e->type, XEN_NETIF_EXTRA_TYPE_GSO);
				info->gso_size = e->u.gso.size;
				info->gso_type = e->u.gso.type;
				xf_post_one(f, q, fq->rx_shadow[ei & mask]);
				info->slots++;
			}
		}
		first = false;
		more = r.flags & NETRXF_more_data;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fq->rx, notify);
	xf_kick(f, fq->port_rx, notify);
	return 1;
}

/* A frame from any queue. */
static inline int xf_recv(struct xfront *f, uint8_t *buf, uint32_t max, struct xf_rx *info)
{
	for (unsigned q = 0; q < xf_nq(f); q++)
		if (xf_recv_q(f, q, buf, max, info))
			return 1;
	return 0;
}

/* Drains and unmasks the front-end's event channels; returns the events. */
static inline unsigned xf_events(struct xfront *f)
{
	unsigned n = 0;
	int p;
	while ((p = f->ops->evt_pending(f->evt)) >= 0) {
		f->ops->evt_unmask(f->evt, (uint32_t)p);
		n++;
	}
	return n;
}

static inline void xf_destroy(struct xfront *f)
{
	f->ops->evt_close(f->evt);
	f->ops->xs_close(f->xs);
}

#endif /* HS_TEST_XEN_FRONT_H */
