/*
 * xen_front.h - a Xen netif front-end for tests, written from the
 * protocol (xen/io/netif.h, xen/io/ring.h, the xenstore handshake as
 * Linux's netfront does it), not from the backend: a guest domain of the
 * emulated hypervisor with its own memory, that grants its ring pages
 * and buffers, allocates an event channel, writes its keys, and moves
 * frames through the rings with the protocol's own macros.
 *
 * Memory: page 0 the transmit ring, page 1 the receive ring, then
 * XF_TXP transmit pages (granted read-only, one per slot) and XF_RXP
 * receive pages (granted writable, one per posted request).
 */
#ifndef HS_TEST_XEN_FRONT_H
#define HS_TEST_XEN_FRONT_H

#include <poll.h>

#include "backends/xen_emu.h"
#include "backends/xen_netif.h"

#define XF_TXP 256
#define XF_RXP 256
#define XF_PAGES (2 + XF_TXP + XF_RXP)

struct xfront {
	struct hs__xemu *emu;
	struct hs__xemu_dom *dom;
	const struct hs__xsvc_ops *ops;
	uint8_t *mem;
	uint32_t domid, devid, backend_domid;
	void *evt, *xs;
	int port;
	netif_tx_front_ring_t tx;
	netif_rx_front_ring_t rx;
	uint32_t tx_ref, rx_ref;
	uint32_t txp_ref[XF_TXP], rxp_ref[XF_RXP];
	uint16_t rx_shadow[256];  /* receive slot -> the page its request gave
				     (ids are slot numbers, as Linux's) */
	unsigned tx_next;         /* next transmit page, round robin */
	uint16_t tx_id;
	unsigned tx_out;          /* requests without a response yet */
	int16_t last_tx_status;
	char fe[96], be[96];
	/* features this front-end announces */
	bool sg, gso4, gso6, no_csum;
	bool no_rx_copy;          /* leaves request-rx-copy out */
	unsigned post_rx;         /* receive pages posted at connect (0: all) */
	uint32_t bad_tx_ref;      /* if set, written as tx-ring-ref */
};

static inline uint8_t *xf_page(struct xfront *f, unsigned page)
{
	return f->mem + (size_t)page * HS__XEN_PAGE;
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
	char bpath[128];
	snprintf(bpath, sizeof(bpath), "%s", f->be);
	xf_put(f, "backend", bpath);
	xf_putu(f, "backend-id", backend_domid);
	xf_putu(f, "handle", devid);
	xf_putu(f, "state", 1);
	for (unsigned i = 0; i < XF_TXP; i++) {
		int r = hs__xemu_grant(f->dom, 2 + i, backend_domid, true);
		ck_assert_int_ge(r, 0);
		f->txp_ref[i] = (uint32_t)r;
	}
	for (unsigned i = 0; i < XF_RXP; i++) {
		int r = hs__xemu_grant(f->dom, 2 + XF_TXP + i, backend_domid, false);
		ck_assert_int_ge(r, 0);
		f->rxp_ref[i] = (uint32_t)r;
	}
}

static inline bool xf_wait_be(struct xfront *f, int state, int ms)
{
	return TH_WAIT(xf_be_state(f) == state, ms);
}

/* Posts receive page `i` on the ring (not pushed). */
static inline void xf_post_one(struct xfront *f, unsigned i)
{
	uint16_t slot = (uint16_t)(f->rx.req_prod_pvt & (RING_SIZE(&f->rx) - 1));
	netif_rx_request_t *r = RING_GET_REQUEST(&f->rx, f->rx.req_prod_pvt++);
	r->id = slot;
	r->gref = f->rxp_ref[i];
	f->rx_shadow[slot] = (uint16_t)i;
}

static inline void xf_kick_if(struct xfront *f, int notify)
{
	if (notify)
		ck_assert_int_eq(f->ops->evt_notify(f->evt, (uint32_t)f->port), 0);
}

/* The handshake, the front-end's half: rings, event channel, keys,
 * receive pages posted, state Connected (the back-end's answer is the
 * caller's to wait for). */
static inline void xf_offer(struct xfront *f)
{
	ck_assert(xf_wait_be(f, 2, 3000)); /* InitWait */
	netif_tx_sring_t *txs = (netif_tx_sring_t *)xf_page(f, 0);
	netif_rx_sring_t *rxs = (netif_rx_sring_t *)xf_page(f, 1);
	SHARED_RING_INIT(txs);
	FRONT_RING_INIT(&f->tx, txs, HS__XEN_PAGE);
	SHARED_RING_INIT(rxs);
	FRONT_RING_INIT(&f->rx, rxs, HS__XEN_PAGE);
	if (!f->tx_ref) {
		f->tx_ref = (uint32_t)hs__xemu_grant(f->dom, 0, f->backend_domid, false);
		f->rx_ref = (uint32_t)hs__xemu_grant(f->dom, 1, f->backend_domid, false);
	}
	f->port = hs__xemu_evt_alloc_unbound(f->evt, f->backend_domid);
	ck_assert_int_gt(f->port, 0);
	f->tx_out = 0;
	unsigned n = RING_SIZE(&f->rx) < XF_RXP ? RING_SIZE(&f->rx) : XF_RXP;
	if (f->post_rx && f->post_rx < n)
		n = f->post_rx;
	for (unsigned i = 0; i < n; i++)
		xf_post_one(f, i);
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f->rx, notify);
	(void)notify;
	xf_putu(f, "tx-ring-ref", f->bad_tx_ref ? f->bad_tx_ref : f->tx_ref);
	xf_putu(f, "rx-ring-ref", f->rx_ref);
	xf_putu(f, "event-channel", (unsigned)f->port);
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

/* Posts receive pages [from, from + n) and kicks as the ring says. */
static inline void xf_post(struct xfront *f, unsigned from, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		xf_post_one(f, from + i);
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f->rx, notify);
	xf_kick_if(f, notify);
}

/* Sends a frame in `slots` transmit slots (each on a page of its own,
 * at offset `off`), with an optional GSO extra; pushes and kicks as the
 * ring says. */
static inline void xf_send(struct xfront *f, const void *frame, uint32_t len, unsigned slots,
			   uint16_t off, uint16_t flags, uint16_t gso_size, uint8_t gso_type)
{
	const uint8_t *b = frame;
	uint32_t per = (len + slots - 1) / slots, done = 0;
	for (unsigned s = 0; s < slots; s++) {
		uint32_t k = len - done < per ? len - done : per;
		unsigned pg = f->tx_next++ % XF_TXP;
		memcpy(xf_page(f, 2 + pg) + off, b + done, k);
		netif_tx_request_t *r = RING_GET_REQUEST(&f->tx, f->tx.req_prod_pvt++);
		r->gref = f->txp_ref[pg];
		r->offset = off;
		r->id = f->tx_id++;
		r->size = (uint16_t)(s == 0 ? len : k);
		r->flags = (uint16_t)((s + 1 < slots ? NETTXF_more_data : 0) |
				      (s == 0 ? flags | (gso_size ? NETTXF_extra_info : 0) : 0));
		f->tx_out++;
		if (s == 0 && gso_size) {
			netif_extra_info_t *e =
				(netif_extra_info_t *)RING_GET_REQUEST(&f->tx, f->tx.req_prod_pvt++);
			memset(e, 0, sizeof(*e));
			e->type = XEN_NETIF_EXTRA_TYPE_GSO;
			e->u.gso.size = gso_size;
			e->u.gso.type = gso_type;
			f->tx_out++;
		}
		done += k;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f->tx, notify);
	xf_kick_if(f, notify);
}

/* Takes the transmit responses; returns how many (last_tx_status keeps
 * the last data response's status). */
static inline unsigned xf_reap_tx(struct xfront *f)
{
	unsigned n = 0;
	RING_IDX prod = __atomic_load_n(&f->tx.sring->rsp_prod, __ATOMIC_ACQUIRE);
	while (f->tx.rsp_cons != prod) {
		netif_tx_response_t *r = RING_GET_RESPONSE(&f->tx, f->tx.rsp_cons++);
		if (r->status != NETIF_RSP_NULL)
			f->last_tx_status = r->status;
		f->tx_out--;
		n++;
		if (f->tx.rsp_cons == prod) {
			int more;
			RING_FINAL_CHECK_FOR_RESPONSES(&f->tx, more);
			prod = __atomic_load_n(&f->tx.sring->rsp_prod, __ATOMIC_ACQUIRE);
			(void)more;
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
	int16_t status;    /* < 0: an error response */
};

/* Receives one frame into buf (its pieces reassembled, their pages posted
 * again); returns 1, or 0 if none waits. */
static inline int xf_recv(struct xfront *f, uint8_t *buf, uint32_t max, struct xf_rx *info)
{
	RING_IDX prod = __atomic_load_n(&f->rx.sring->rsp_prod, __ATOMIC_ACQUIRE);
	if (f->rx.rsp_cons == prod)
		return 0;
	memset(info, 0, sizeof(*info));
	bool first = true, more = true;
	while (more) {
		ck_assert_msg(f->rx.rsp_cons != prod, "a frame ends past the responses");
		RING_IDX idx = f->rx.rsp_cons++;
		netif_rx_response_t r = *RING_GET_RESPONSE(&f->rx, idx);
		unsigned slot = idx & (RING_SIZE(&f->rx) - 1), page = f->rx_shadow[slot];
		/* the response sits in its request's slot and echoes its id */
		ck_assert_uint_eq(r.id, slot);
		info->slots++;
		if (r.status < 0) {
			info->status = r.status;
			xf_post_one(f, page);
			more = r.flags & NETRXF_more_data;
			first = false;
			continue;
		}
		ck_assert_uint_le((uint32_t)r.offset + (uint32_t)r.status, HS__XEN_PAGE);
		ck_assert_uint_le(info->len + (uint32_t)r.status, max);
		memcpy(buf + info->len, xf_page(f, 2 + XF_TXP + page) + r.offset, (size_t)r.status);
		info->len += (uint32_t)r.status;
		xf_post_one(f, page);
		if (first) {
			info->flags = r.flags;
			if (r.flags & NETRXF_extra_info) {
				/* the extra sits in the next slot, whose request it used */
				ck_assert_msg(f->rx.rsp_cons != prod, "extra info missing");
				RING_IDX ei = f->rx.rsp_cons++;
				const netif_extra_info_t *e =
					(const netif_extra_info_t *)RING_GET_RESPONSE(&f->rx, ei);
				ck_assert_uint_eq(e->type, XEN_NETIF_EXTRA_TYPE_GSO);
				info->gso_size = e->u.gso.size;
				info->gso_type = e->u.gso.type;
				/* that request's page is posted again */
				xf_post_one(f, f->rx_shadow[ei & (RING_SIZE(&f->rx) - 1)]);
				info->slots++;
			}
		}
		first = false;
		more = r.flags & NETRXF_more_data;
	}
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f->rx, notify);
	xf_kick_if(f, notify);
	return 1;
}

/* Drains and unmasks the front-end's event channel; returns the events. */
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
