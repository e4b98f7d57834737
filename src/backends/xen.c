/*
 * xen.c - the Xen netif backend (include/hyperswitch/xen.h): a userspace
 * netback on the hypervisor services of xen_svc.h.
 *
 * Handshake (on the switch's loop): open writes the back-end's features
 * and state InitWait; a watch on the front-end's state connects when the
 * front-end has written its rings and event channel (Initialised or
 * Connected), disconnects when it closes or goes away, and waits again
 * when it comes back (Initialising).
 *
 * Transmit (guest -> switch), by the queue's owner: xen_tx.c parses each
 * packet off the shared ring (refused ones are answered with an error at
 * once, a broken ring stops the vif); the first XEN_TX_HEAD bytes of
 * every packet of the burst come into local memory in one grant-copy
 * call; the rest stays in the guest's pages as foreign segments, which
 * the receiver's copy reads by grant copy: a frame is copied once.
 * recv_done answers the requests and tells the front-end if it asked.
 *
 * Receive (switch -> guest), under the egress lock: send_reserve takes a
 * receive request (a granted page) per 4 KiB of the frame, plus a slot
 * for the GSO extra; the copy hook turns the switch's copies into one
 * grant-copy call per batch, straight from the sender's grant when the
 * sender is a Xen guest too; send_commit answers each request in its own
 * ring slot.
 *
 * Events: one event channel per vif; the loop reads it, unmasks it, and
 * hands the work to the data path: the queue's kick eventfd for transmit
 * requests, hs_port_posted for receive buffers.
 *
 * Peer state (the paper's VM-state-aware notification): where the switch's
 * domain may read the guest's domain information (dom0; libxenctrl), the
 * loop reads it every millisecond and tells the core whether the guest is
 * running (a vCPU on a CPU: its notifications wait for the end of the
 * round and go out once) or not (notified at the end of each batch). A
 * sample, not the scheduler's own view: Xen does not tell a userspace
 * back-end when a vCPU blocks. Elsewhere (EPERM) the ring's event requests
 * alone decide, as without the mechanism.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "backends.h"
#include "hyperswitch/xen.h"
#include "xen_emu.h"
#include "xen_netif.h"

#define TX_BURST 64
#define RX_SLOTS_MAX 17 /* a 64 KiB frame in 4 KiB pages, and a bit */
#define COPY_CHUNK 64
#define VCPU_PERIOD_MS 1 /* how often the guest's vCPU state is read */

/* xenbus states (xen/io/xenbus.h) */
enum { XB_UNKNOWN, XB_INITIALISING, XB_INITWAIT, XB_INITIALISED, XB_CONNECTED,
       XB_CLOSING, XB_CLOSED, XB_RECONFIGURING, XB_RECONFIGURED };

/* A foreign segment's reference: a tag, the granting domain, the offset
 * in the page and the grant reference. */
#define XREF_TAG 0xaull
static inline uint64_t xref(uint32_t domid, uint32_t gref, uint32_t off)
{
	return XREF_TAG << 60 | (uint64_t)(domid & 0xffff) << 44 |
	       (uint64_t)(off & 0xfff) << 32 | gref;
}

/* The first bytes of a transmitted packet brought into local memory: the
 * switch parses and segments behind headers of up to 192 bytes (the
 * core's HS__HDR_MAX), so a TSO frame with IPv4 and TCP options of 134
 * bytes, which Linux's netback takes, is not refused as bad_offload for
 * want of its last header bytes (with HS_PKT_HDR_MIN, 128, until review
 * 48). */
#define XEN_TX_HEAD 192
_Static_assert(XEN_TX_HEAD >= HS_PKT_HDR_MIN, "a backend's head holds HS_PKT_HDR_MIN bytes");

struct txpkt {                  /* a packet of the current burst */
	struct hs__xtx_pkt p;
	uint8_t hdr[XEN_TX_HEAD];
	struct hs_seg segs[1 + HS__XTX_SLOTS_MAX];
	uint16_t hseg0, nhseg;  /* its header's segments in the burst's hcopy */
};

struct rxres {                  /* one reserved frame */
	RING_IDX idx;           /* its first request's ring index */
	uint8_t nslots;         /* requests taken (data slots + GSO extra) */
	bool gso;
	uint16_t id[RX_SLOTS_MAX + 1];
	struct hs_seg seg[RX_SLOTS_MAX];
};

struct xq {                      /* one queue pair */
	struct xnb *x;
	uint16_t qid;
	_Atomic bool kicks_off;     /* a poller suppressed transmit kicks */
	uint32_t tx_port, rx_port;  /* local event channels (equal unless split) */
	int kick_fd;
	void *tx_page, *rx_page;
	netif_tx_back_ring_t tx;    /* the owner's */
	netif_rx_back_ring_t rx;    /* under the egress lock */
	struct txpkt txp[TX_BURST];
	struct hs__xcopy hcopy[TX_BURST * HS__XTX_SLOTS_MAX];
	struct rxres res[HS_RESERVE_MAX];
	unsigned refused_logged;
	/* the loop's view, for events that bring nothing (late unmask) */
	RING_IDX tx_seen;           /* transmit req_prod at the last event */
	RING_IDX rx_seen;           /* the furthest receive req_prod seen (a
				       ring behind the consumer at least) */
	_Atomic RING_IDX rx_cons;   /* rx.req_cons, published for the loop */
	struct xport_eoi {
		unsigned spurious;  /* events in a row that found nothing new */
		uint64_t until_ms;  /* deferred: unmask then (0: not deferred) */
	} eoi[2];                   /* [0]: tx_port, [1]: rx_port (if split) */
};

struct xnb {
	hs_port_t *port;
	struct hs_xen_config cfg;
	const struct hs__xsvc_ops *ops;
	void *gnt, *evt, *xs;
	char fe_path[96], be_path[96];
	hs_watch_t *xs_watch, *evt_watch;
	int state;                  /* ours, XB_* */
	_Atomic bool live;          /* rings mapped, event channels bound */
	_Atomic bool broken;        /* the front-end broke the protocol */
	bool fe_sg, split;
	uint64_t fail_log_ms;       /* connect failures: the last logged */
	unsigned fail_unlogged;     /* and how many since, not logged (loop) */
	uint16_t nq;                /* queues the front-end connected */
	struct xq *q;               /* [cfg.max_queues] */
	void *ctl;                  /* domain control: NULL when not readable */
	hs_timer_t *vcpu_timer;
	hs_timer_t *eoi_timer;      /* unmasks deferred event channels (loop) */
	enum hs_peer_state peer;    /* what the core was last told (loop) */
	unsigned vcpu_backoff;      /* ticks to skip after an error (loop) */
	int vcpu_errno;             /* the last error logged (loop) */
	_Atomic uint64_t connects, disconnects, protocol_errors, tx_refused, tx_copy_errors,
		copy_errors, grant_copies, grant_copy_segs, vcpu_reads, vcpu_errors,
		peer_running, peer_not_running, events, events_spurious, events_deferred;
};

/* ---- xenstore ---------------------------------------------------------------- */

static bool xs_put(struct xnb *x, uint32_t t, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static bool xs_put(struct xnb *x, uint32_t t, const char *key, const char *fmt, ...)
{
	char path[160], val[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s", x->be_path, key);
	return x->ops->xs_write(x->xs, t, path, val, (unsigned)strlen(val));
}

/* The front-end's key as a number: 0 and *v, -ENOENT if absent, -EINVAL
 * if not a decimal number up to max. */
static int fe_uint(struct xnb *x, const char *key, uint32_t max, uint32_t *v)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", x->fe_path, key);
	unsigned len = 0;
	char *s = x->ops->xs_read(x->xs, HS__XBT_NULL, path, &len);
	if (!s)
		return -ENOENT;
	int rc = 0;
	char *end;
	errno = 0;
	unsigned long n = strtoul(s, &end, 10);
	if (!len || end != s + len || errno || n > max || s[0] == '-' || s[0] == ' ')
		rc = -EINVAL;
	else
		*v = (uint32_t)n;
	free(s);
	return rc;
}

static bool fe_flag(struct xnb *x, const char *key)
{
	uint32_t v = 0;
	return fe_uint(x, key, 1, &v) == 0 && v == 1;
}

static void set_state(struct xnb *x, int state)
{
	if (x->state == state)
		return;
	x->state = state;
	if (!xs_put(x, HS__XBT_NULL, "state", "%d", state))
		hs_port_log(x->port, HS_LOG_WARN, "xenstore: cannot write state %d", state);
}

/* ---- connect and disconnect ---------------------------------------------------- */

/* The front-end's key for queue q: under queue-<q>/ when it connected
 * several queues (multi-queue-num-queues), else at its top. */
static int fe_qkey(struct xnb *x, unsigned nq, unsigned q, const char *key, uint32_t *v)
{
	char k[64];
	if (nq > 1)
		snprintf(k, sizeof(k), "queue-%u/%s", q, key);
	else
		snprintf(k, sizeof(k), "%s", key);
	return fe_uint(x, k, UINT32_MAX, v);
}

/* Lets go of what queue q holds: kick fd, event channels, rings. */
static void queue_release(struct xnb *x, struct xq *xq)
{
	if (xq->kick_fd >= 0)
		close(xq->kick_fd);
	xq->kick_fd = -1;
	if (xq->rx_port && xq->rx_port != xq->tx_port)
		x->ops->evt_unbind(x->evt, xq->rx_port);
	if (xq->tx_port)
		x->ops->evt_unbind(x->evt, xq->tx_port);
	xq->tx_port = xq->rx_port = 0;
	memset(xq->eoi, 0, sizeof(xq->eoi));
	xq->tx_seen = xq->rx_seen = 0;
	atomic_store(&xq->rx_cons, 0);
	if (xq->tx_page)
		x->ops->gnt_unmap(x->gnt, xq->tx_page, 1);
	if (xq->rx_page)
		x->ops->gnt_unmap(x->gnt, xq->rx_page, 1);
	xq->tx_page = xq->rx_page = NULL;
	memset(&xq->tx, 0, sizeof(xq->tx));
	memset(&xq->rx, 0, sizeof(xq->rx));
}

/* Whether the data path may use queue q now: connected, and a queue the
 * front-end set up (the core still calls the others, e.g. to drain their
 * backlogs after a reconnect with fewer queues). */
static inline bool q_live(const struct xnb *x, uint16_t q)
{
	return atomic_load_explicit(&x->live, memory_order_acquire) && q < x->nq;
}

static void disconnect(struct xnb *x)
{
	if (!atomic_load(&x->live))
		return;
	hs_port_set_link(x->port, false);
	if (hs_port_quiesce(x->port)) {
		/* cannot happen from the loop (a port being deleted still
		 * pauses until stop, which ends these callbacks); if it did,
		 * a round might run: leave the release to stop */
		return;
	}
	atomic_store(&x->live, false);
	for (unsigned q = 0; q < x->nq; q++) {
		hs_port_set_queue_fd(x->port, (uint16_t)q, HS_EV_KICK, -1);
		queue_release(x, &x->q[q]);
	}
	x->nq = 0;
	if (hs_port_resume(x->port))
		hs_port_log(x->port, HS_LOG_ERROR, "resume after disconnect failed");
	atomic_fetch_add(&x->disconnects, 1);
	hs_port_log(x->port, HS_LOG_INFO, "front-end disconnected");
}

/* Logged once a second at most: a front-end may rewrite its state over
 * bad keys at every turn of the loop (each write is a connect tried, as
 * netback does), counted in protocol_errors. */
static int connect_fail(struct xnb *x, const char *why, unsigned q)
{
	uint64_t now = hsb_mono_ms();
	if (!x->fail_log_ms || now - x->fail_log_ms >= 1000) {
		hs_port_log(x->port, HS_LOG_WARN, "front-end %s not connected: queue %u: %s%s",
			    x->fe_path, q, why, x->fail_unlogged ? " (and earlier tries, "
			    "not logged: see protocol_errors)" : "");
		x->fail_log_ms = now;
		x->fail_unlogged = 0;
	} else {
		x->fail_unlogged++;
	}
	for (unsigned i = 0; i < x->cfg.max_queues; i++)
		queue_release(x, &x->q[i]);
	atomic_fetch_add(&x->protocol_errors, 1);
	return -EPROTO;
}

/* Maps queue q's rings and binds its event channel(s); NULL or why not. */
static const char *queue_connect(struct xnb *x, unsigned nq, unsigned q)
{
	struct xq *xq = &x->q[q];
	uint32_t tx_ref, rx_ref, ech, ech_tx, ech_rx, fe = x->cfg.frontend_domid;
	if (fe_qkey(x, nq, q, "tx-ring-ref", &tx_ref) || fe_qkey(x, nq, q, "rx-ring-ref", &rx_ref))
		return "no valid tx-ring-ref and rx-ring-ref";
	bool split = !fe_qkey(x, nq, q, "event-channel-tx", &ech_tx) &&
		     !fe_qkey(x, nq, q, "event-channel-rx", &ech_rx);
	if (!split && fe_qkey(x, nq, q, "event-channel", &ech))
		return "no valid event-channel, nor event-channel-tx and -rx";
	xq->tx_page = x->ops->gnt_map(x->gnt, 1, fe, &tx_ref, HS__XMAP_READ | HS__XMAP_WRITE);
	xq->rx_page = x->ops->gnt_map(x->gnt, 1, fe, &rx_ref, HS__XMAP_READ | HS__XMAP_WRITE);
	if (!xq->tx_page || !xq->rx_page)
		return "its ring pages cannot be mapped";
	int tp = x->ops->evt_bind(x->evt, fe, split ? ech_tx : ech);
	if (tp < 0)
		return "its event channel cannot be bound";
	xq->tx_port = xq->rx_port = (uint32_t)tp;
	if (split) {
		int rp = x->ops->evt_bind(x->evt, fe, ech_rx);
		if (rp < 0)
			return "its receive event channel cannot be bound";
		xq->rx_port = (uint32_t)rp;
	}
	xq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (xq->kick_fd < 0)
		return "out of file descriptors";
	BACK_RING_INIT(&xq->tx, (netif_tx_sring_t *)xq->tx_page, HS__XEN_PAGE);
	BACK_RING_INIT(&xq->rx, (netif_rx_sring_t *)xq->rx_page, HS__XEN_PAGE);
	atomic_store(&xq->kicks_off, false);
	xq->refused_logged = 0;
	return NULL;
}

static void wake(struct xnb *x, unsigned q, bool tx, bool rx)
{
	if (tx) {
		uint64_t one = 1;
		if (write(x->q[q].kick_fd, &one, 8) != 8) {
			/* the counter is full: the queue is signalled anyway */
		}
	}
	if (rx)
		hs_port_posted(x->port, (uint16_t)q);
}

static int connect(struct xnb *x)
{
	uint32_t v, nq = 1;
	if (!fe_flag(x, "request-rx-copy"))
		return connect_fail(x, "it does not ask for receive by copy (request-rx-copy)", 0);
	if (!fe_flag(x, "feature-rx-notify"))
		return connect_fail(x, "it does not say feature-rx-notify", 0);
	if (fe_uint(x, "multi-queue-num-queues", 0xffff, &v) == 0) {
		if (v < 1 || v > x->cfg.max_queues)
			return connect_fail(x, "it asks for more queues than offered", 0);
		nq = v;
	}
	for (unsigned q = 0; q < nq; q++) {
		const char *why = queue_connect(x, nq, q);
		if (why)
			return connect_fail(x, why, q);
	}
	bool sg = fe_flag(x, "feature-sg");
	bool gso4 = fe_flag(x, "feature-gso-tcpv4"), gso6 = fe_flag(x, "feature-gso-tcpv6");
	bool csum = !fe_flag(x, "feature-no-csum-offload") &&
		    fe_flag(x, "feature-ipv6-csum-offload");
	x->fe_sg = sg;
	x->nq = (uint16_t)nq;
	x->split = x->q[0].rx_port != x->q[0].tx_port;
	atomic_store(&x->broken, false);
	hs_port_set_caps(x->port, (csum ? HS_CAP_CSUM : 0) |
				  (csum && sg && gso4 ? HS_CAP_GSO_TCPV4 : 0) |
				  (csum && sg && gso6 ? HS_CAP_GSO_TCPV6 : 0));
	hs_port_set_active_queues(x->port, (uint16_t)nq);
	atomic_store(&x->live, true);
	for (unsigned q = 0; q < nq; q++) {
		int rc = hs_port_set_queue_fd(x->port, (uint16_t)q, HS_EV_KICK, x->q[q].kick_fd);
		if (rc) {
			disconnect(x);
			return rc;
		}
	}
	/* counted before the link goes up: whoever sees it up sees it counted */
	atomic_fetch_add(&x->connects, 1);
	hs_port_set_link(x->port, true);
	set_state(x, XB_CONNECTED);
	hs_port_log(x->port, HS_LOG_INFO, "front-end %s connected: %u queue%s, %s event "
		    "channels (%s%s%s%s)", x->fe_path, nq, nq == 1 ? "" : "s",
		    x->split ? "split" : "shared", sg ? "sg" : "no sg", csum ? ", csum" : "",
		    gso4 ? ", gso tcpv4" : "", gso6 ? ", gso tcpv6" : "");
	/* requests may be waiting already */
	for (unsigned q = 0; q < nq; q++)
		wake(x, q, true, true);
	return 0;
}

/* The front-end's state changed (or may have): its state key was written
 * (the one key watched). */
static void fe_changed(struct xnb *x)
{
	uint32_t st = XB_UNKNOWN;
	if (fe_uint(x, "state", XB_RECONFIGURED, &st))
		st = XB_UNKNOWN; /* gone, or nonsense: treated as gone */
	switch (st) {
	case XB_INITIALISED:
	case XB_CONNECTED:
		if (atomic_load(&x->live))
			break;
		/* From Closed or Closing (the front-end closed, then
		 * connected with no Initialising seen between, which a watch
		 * may merge; or a connect of ours failed), walk through
		 * InitWait as Linux's netback does: a connect is tried at
		 * each write of the front-end's state, and only then. */
		if (x->state == XB_CLOSED || x->state == XB_CLOSING)
			set_state(x, XB_INITWAIT);
		if (x->state == XB_INITWAIT && connect(x))
			set_state(x, XB_CLOSING); /* it must start over */
		break;
	case XB_INITIALISING:
	case XB_INITWAIT:
		disconnect(x);
		if (x->state != XB_INITWAIT)
			set_state(x, XB_INITWAIT);
		break;
	case XB_CLOSING:
		disconnect(x);
		set_state(x, XB_CLOSING);
		break;
	default: /* closed, gone, unknown */
		disconnect(x);
		if (x->state != XB_INITWAIT || st == XB_CLOSED)
			set_state(x, XB_CLOSED);
		break;
	}
}

static void xs_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct xnb *x = arg;
	(void)w, (void)fd, (void)events;
	/* a bounded number per turn: a guest rewriting its keys without end
	 * does not keep the loop from its other work (the fd stays readable) */
	char **ev;
	bool any = false;
	for (unsigned k = 0; k < 64 && (ev = x->ops->xs_check_watch(x->xs)); k++) {
		free(ev);
		any = true;
	}
	if (any)
		fe_changed(x);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Deferred unmasks whose time came (the timer runs while any waits). */
static void eoi_cb(hs_timer_t *t, void *arg)
{
	struct xnb *x = arg;
	(void)t;
	uint64_t now = mono_ms();
	bool waiting = false;
	for (unsigned q = 0; q < x->nq; q++)
		for (unsigned k = 0; k < 2; k++) {
			struct xport_eoi *e = &x->q[q].eoi[k];
			if (!e->until_ms)
				continue;
			if (now < e->until_ms) {
				waiting = true;
				continue;
			}
			e->until_ms = 0;
			x->ops->evt_unmask(x->evt, k ? x->q[q].rx_port : x->q[q].tx_port);
		}
	if (!waiting) {
		hs_timer_del(x->eoi_timer);
		x->eoi_timer = NULL;
	}
}

/* Events are unmasked at once while they bring work: new transmit
 * requests (an index moved anyhow: the ring's reader checks it, and one
 * moved back or past the ring breaks the vif, whose events are then never
 * unmasked, evt_cb), or new receive requests: the producer further than
 * ever before and within a ring of the consumer, so that a guest moving
 * it back and forth, or on past the ring, brings no work; one that posts
 * buffers brings at most two rings' worth before some are used. An
 * event with no work is spurious: from the second in a row on, its port
 * stays masked for 1, 2, 4 ... up to 1000 ms (as Linux's late EOI,
 * XSA-332), so a guest that notifies without end costs the loop little;
 * any event with work ends the streak. */
static void evt_one(struct xnb *x, uint32_t p)
{
	for (unsigned q = 0; q < x->nq; q++) {
		struct xq *xq = &x->q[q];
		bool on_tx = xq->tx_port == p, on_rx = xq->rx_port == p;
		if (!on_tx && !on_rx)
			continue;
		RING_IDX tp = __atomic_load_n(&xq->tx.sring->req_prod, __ATOMIC_ACQUIRE);
		RING_IDX rp = __atomic_load_n(&xq->rx.sring->req_prod, __ATOMIC_ACQUIRE);
		unsigned size = RING_SIZE(&xq->rx);
		/* read after rp: a consumer moving between the two reads is
		 * seen past rp, not behind it (a full ring stays within) */
		RING_IDX cons = atomic_load_explicit(&xq->rx_cons, memory_order_acquire);
		/* The window: a ring behind the consumer to a ring ahead. The
		 * furthest seen is kept in it: a guest posts without events
		 * while nobody asks (a stream), so the consumer runs ahead of
		 * it; and a kick that comes after its buffers were used (the
		 * consumer already at rp) is still new. */
		RING_IDX lo = cons - size;
		if (xq->rx_seen - lo > 2 * size)
			xq->rx_seen = lo;
		bool tx = on_tx && tp != xq->tx_seen,
		     rx = on_rx && rp - lo <= 2 * size && rp - xq->rx_seen - 1 < 2 * size;
		if (on_tx)
			xq->tx_seen = tp;
		if (rx)
			xq->rx_seen = rp;
		struct xport_eoi *e = &xq->eoi[on_tx ? 0 : 1];
		if (tx || rx) {
			e->spurious = 0;
			x->ops->evt_unmask(x->evt, p);
			wake(x, q, tx, rx);
			return;
		}
		atomic_fetch_add(&x->events_spurious, 1);
		if (++e->spurious < 2) {
			x->ops->evt_unmask(x->evt, p);
			return;
		}
		unsigned sh = e->spurious - 2 < 10 ? e->spurious - 2 : 10;
		uint64_t delay = (uint64_t)1 << sh;
		e->until_ms = mono_ms() + (delay < 1000 ? delay : 1000);
		atomic_fetch_add(&x->events_deferred, 1);
		if (!x->eoi_timer &&
		    hs_timer_add(hs_port_switch(x->port), 1, 1, eoi_cb, x, &x->eoi_timer)) {
			e->until_ms = 0; /* no timer: unmask now rather than never */
			x->ops->evt_unmask(x->evt, p);
		}
		return;
	}
	x->ops->evt_unmask(x->evt, p); /* not ours any more (a queue gone) */
}

static void evt_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct xnb *x = arg;
	(void)w, (void)fd, (void)events;
	int p;
	/* bounded per turn, as above: a guest kicking without end shares
	 * the loop (the fd stays readable while events wait) */
	for (unsigned k = 0; k < 256 && (p = x->ops->evt_pending(x->evt)) >= 0; k++) {
		atomic_fetch_add(&x->events, 1);
		if (!atomic_load(&x->live)) {
			x->ops->evt_unmask(x->evt, (uint32_t)p);
			continue;
		}
		/* A front-end that broke the protocol is not served until it
		 * connects again (Linux's xenvif_fatal_tx_err disables the
		 * vif): its port stays masked, and a reconnect binds new ones. */
		if (atomic_load(&x->broken)) {
			atomic_fetch_add(&x->events_spurious, 1);
			continue;
		}
		evt_one(x, (uint32_t)p);
	}
}

/* ---- lifecycle ---------------------------------------------------------------- */

static int xnb_open(hs_port_t *port, const void *config, size_t size, void **priv,
		    struct hs_port_info *info)
{
	struct hs_xen_config c = {0};
	if (!config)
		return -EINVAL;
	int rc = hs_config_copy(&c, sizeof(c), config, size, HS_XEN_CONFIG_SIZE_V1);
	if (rc)
		return rc;
	if (!c.max_queues)
		c.max_queues = 1;
	if ((c.flags & ~HS_XEN_NO_VCPU_STATE) || c.frontend_domid > 0x7fef || c.backend_domid > 0x7fef ||
	    c.frontend_domid == c.backend_domid || c.max_queues > HS_MAX_QUEUES)
		return -EINVAL;
	const struct hs__xsvc_ops *ops = c.hypervisor ? hs__xemu_ops() : hs__xsvc_real();
	if (!ops) {
		hs_port_log(port, HS_LOG_ERROR, "built without libxen: no Xen here");
		return -ENOTSUP;
	}
	struct xnb *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->q = calloc(c.max_queues, sizeof(*x->q));
	if (!x->q) {
		free(x);
		return -ENOMEM;
	}
	for (unsigned q = 0; q < c.max_queues; q++) {
		x->q[q].x = x;
		x->q[q].qid = (uint16_t)q;
		x->q[q].kick_fd = -1;
	}
	x->port = port;
	x->cfg = c;
	x->ops = ops;
	x->state = XB_UNKNOWN;
	snprintf(x->fe_path, sizeof(x->fe_path), "/local/domain/%u/device/vif/%u",
		 c.frontend_domid, c.devid);
	snprintf(x->be_path, sizeof(x->be_path), "/local/domain/%u/backend/vif/%u/%u",
		 c.backend_domid, c.frontend_domid, c.devid);
	x->gnt = ops->gnt_open(c.hypervisor);
	x->evt = ops->evt_open(c.hypervisor);
	x->xs = ops->xs_open(c.hypervisor);
	if (!x->gnt || !x->evt || !x->xs) {
		rc = errno ? -errno : -ENODEV;
		hs_port_log(port, HS_LOG_ERROR, "no Xen here: cannot open the %s (%s); a vif "
			    "needs a Xen domain with xen-gntdev, xen-evtchn and xenstore",
			    !x->gnt ? "grant device" : !x->evt ? "event channel device" : "xenstore",
			    hs_strerror(rc));
		goto fail;
	}
	/* the back-end's features, in one transaction (redone on EAGAIN) */
	bool ok = false;
	for (int tries = 0; !ok && tries < 16; tries++) {
		uint32_t t = ops->xs_transaction_start(x->xs);
		if (t == HS__XBT_NULL)
			break;
		bool w = xs_put(x, t, "frontend", "%s", x->fe_path) &&
			 xs_put(x, t, "frontend-id", "%u", c.frontend_domid) &&
			 xs_put(x, t, "handle", "%u", c.devid) &&
			 xs_put(x, t, "feature-sg", "1") && xs_put(x, t, "feature-gso-tcpv4", "1") &&
			 xs_put(x, t, "feature-gso-tcpv6", "1") &&
			 xs_put(x, t, "feature-ipv6-csum-offload", "1") &&
			 xs_put(x, t, "feature-rx-copy", "1") && xs_put(x, t, "feature-rx-flip", "0") &&
			 xs_put(x, t, "feature-split-event-channels", "1") &&
			 xs_put(x, t, "multi-queue-max-queues", "%u", c.max_queues) &&
			 xs_put(x, t, "state", "%d", XB_INITWAIT);
		ok = ops->xs_transaction_end(x->xs, t, !w) && w;
		if (!w || (!ok && errno != EAGAIN))
			break;
	}
	if (!ok) {
		hs_port_log(port, HS_LOG_ERROR, "xenstore: cannot write %s", x->be_path);
		rc = -EIO;
		goto fail;
	}
	x->state = XB_INITWAIT;
	*priv = x;
	info->n_queues = (uint16_t)c.max_queues;
	info->caps = 0;
	info->link_up = false;
	return 0;
fail:
	if (x->xs)
		ops->xs_close(x->xs);
	if (x->evt)
		ops->evt_close(x->evt);
	if (x->gnt)
		ops->gnt_close(x->gnt);
	free(x->q);
	free(x);
	return rc;
}

/* ---- the guest's vCPU state ------------------------------------------------------- */

static void set_peer(struct xnb *x, enum hs_peer_state st)
{
	if (st == x->peer)
		return;
	x->peer = st;
	for (unsigned q = 0; q < x->cfg.max_queues; q++)
		hs_port_set_peer_state(x->port, (uint16_t)q, st);
	if (st == HS_PEER_RUNNING)
		atomic_fetch_add(&x->peer_running, 1);
	else if (st == HS_PEER_BLOCKED)
		atomic_fetch_add(&x->peer_not_running, 1);
}

static void vcpu_stop(struct xnb *x)
{
	if (x->vcpu_timer)
		hs_timer_del(x->vcpu_timer);
	x->vcpu_timer = NULL;
	if (x->ctl)
		x->ops->ctl_close(x->ctl);
	x->ctl = NULL;
	set_peer(x, HS_PEER_UNKNOWN);
}

static void vcpu_cb(hs_timer_t *t, void *arg)
{
	struct xnb *x = arg;
	(void)t;
	/* only a connected guest gets notifications */
	if (!atomic_load_explicit(&x->live, memory_order_relaxed) || x->vcpu_backoff) {
		if (x->vcpu_backoff)
			x->vcpu_backoff--;
		set_peer(x, HS_PEER_UNKNOWN);
		return;
	}
	struct hs__xdominfo di;
	int n = x->ops->ctl_getinfo(x->ctl, x->cfg.frontend_domid, 1, &di);
	atomic_fetch_add(&x->vcpu_reads, 1);
	if (n < 0) {
		int e = errno;
		atomic_fetch_add(&x->vcpu_errors, 1);
		if (e == EPERM || e == EACCES) {
			hs_port_log(x->port, HS_LOG_INFO, "domain %u's vCPU state is not "
				    "readable from here (%s): notifications follow the "
				    "ring's event requests only", x->cfg.frontend_domid,
				    hs_strerror(-e));
			vcpu_stop(x);
			return;
		}
		if (e != x->vcpu_errno)
			hs_port_log(x->port, HS_LOG_WARN, "domain %u's vCPU state: %s (tried "
				    "again every second)", x->cfg.frontend_domid, hs_strerror(-e));
		x->vcpu_errno = e;
		x->vcpu_backoff = 1000 / VCPU_PERIOD_MS;
		set_peer(x, HS_PEER_UNKNOWN);
		return;
	}
	x->vcpu_errno = 0;
	if (n == 0 || di.domid != x->cfg.frontend_domid || di.dying) {
		set_peer(x, HS_PEER_UNKNOWN); /* the domain is gone (or going) */
		return;
	}
	/* Running: it will look at its rings soon. Anything else (blocked,
	 * waiting for a CPU, paused) gets its notification at once: an event
	 * is what wakes a blocked vCPU. */
	set_peer(x, di.running ? HS_PEER_RUNNING : HS_PEER_BLOCKED);
}

static void vcpu_start(struct xnb *x)
{
	if (x->cfg.flags & HS_XEN_NO_VCPU_STATE)
		return;
	x->ctl = x->ops->ctl_open(x->cfg.hypervisor);
	if (!x->ctl) {
		hs_port_log(x->port, HS_LOG_INFO, "domain %u's vCPU state not known: no domain "
			    "control here (%s)", x->cfg.frontend_domid, hs_strerror(-errno));
		return;
	}
	if (hs_timer_add(hs_port_switch(x->port), VCPU_PERIOD_MS, VCPU_PERIOD_MS, vcpu_cb, x,
			 &x->vcpu_timer)) {
		x->ops->ctl_close(x->ctl);
		x->ctl = NULL;
		hs_port_log(x->port, HS_LOG_WARN, "domain %u's vCPU state not read: no timer",
			    x->cfg.frontend_domid);
	}
}

static int xnb_start(void *priv)
{
	struct xnb *x = priv;
	hs_switch_t *sw = hs_port_switch(x->port);
	int rc = hs_watch_add(sw, x->ops->xs_fileno(x->xs), HS_WATCH_READ, xs_cb, x,
			      &x->xs_watch);
	if (!rc)
		rc = hs_watch_add(sw, x->ops->evt_fd(x->evt), HS_WATCH_READ, evt_cb, x,
				  &x->evt_watch);
	char path[160];
	snprintf(path, sizeof(path), "%s/state", x->fe_path);
	if (!rc && !x->ops->xs_watch(x->xs, path, "fe"))
		rc = -EIO; /* it fires once now: the loop looks at the state */
	if (rc) {
		/* the port goes without stop: nothing may call back into x */
		if (x->xs_watch)
			hs_watch_del(x->xs_watch);
		if (x->evt_watch)
			hs_watch_del(x->evt_watch);
		x->xs_watch = x->evt_watch = NULL;
	} else {
		vcpu_start(x);
	}
	return rc;
}

static void xnb_stop(void *priv)
{
	struct xnb *x = priv;
	vcpu_stop(x);
	if (x->eoi_timer)
		hs_timer_del(x->eoi_timer);
	x->eoi_timer = NULL;
	if (x->xs_watch)
		hs_watch_del(x->xs_watch);
	if (x->evt_watch)
		hs_watch_del(x->evt_watch);
	x->xs_watch = x->evt_watch = NULL;
	char path[160];
	snprintf(path, sizeof(path), "%s/state", x->fe_path);
	x->ops->xs_unwatch(x->xs, path, "fe");
	/* no data-path call any more: let go without a quiesce */
	atomic_store(&x->live, false);
	for (unsigned q = 0; q < x->cfg.max_queues; q++)
		queue_release(x, &x->q[q]);
	x->nq = 0;
	set_state(x, XB_CLOSED);
}

static void xnb_close(void *priv)
{
	struct xnb *x = priv;
	x->ops->xs_close(x->xs);
	x->ops->evt_close(x->evt);
	x->ops->gnt_close(x->gnt);
	free(x->q);
	free(x);
}

/* ---- transmit: guest -> switch -------------------------------------------------- */

static void tx_respond(struct xq *xq, const struct hs__xtx_pkt *p, int16_t status)
{
	netif_tx_response_t *r = RING_GET_RESPONSE(&xq->tx, xq->tx.rsp_prod_pvt++);
	r->id = p->ids[0];
	r->status = status;
	for (unsigned e = 0; e < p->n_extra; e++)
		RING_GET_RESPONSE(&xq->tx, xq->tx.rsp_prod_pvt++)->status = NETIF_RSP_NULL;
	for (unsigned i = 1; i < p->n_slots; i++) {
		r = RING_GET_RESPONSE(&xq->tx, xq->tx.rsp_prod_pvt++);
		r->id = p->ids[i];
		r->status = status;
	}
}

static bool tx_push(struct xq *xq)
{
	int notify;
	RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&xq->tx, notify);
	return notify;
}

static void protocol_error(struct xq *xq, const char *why)
{
	struct xnb *x = xq->x;
	if (atomic_exchange(&x->broken, true))
		return;
	atomic_fetch_add(&x->protocol_errors, 1);
	hs_port_set_link(x->port, false);
	hs_port_report_broken(x->port, xq->qid, why);
	hs_port_log(x->port, HS_LOG_ERROR, "front-end broke the transmit ring: %s; the vif "
		    "stays down until it connects again", why);
}

/* Offload metadata from the packet's flags and its local header. */
static int tx_offload(const struct txpkt *t, uint32_t hl, struct hs_offload *o)
{
	const struct hs__xtx_pkt *p = &t->p;
	const uint8_t *h = t->hdr;
	memset(o, 0, sizeof(*o));
	if (p->flags & NETTXF_data_validated)
		o->flags |= HS_OFF_DATA_VALID;
	if (!(p->flags & NETTXF_csum_blank) && !p->gso_size)
		return 0;
	uint32_t l3 = 14;
	if (hl < 14)
		return -1;
	uint16_t et = (uint16_t)(h[12] << 8 | h[13]);
	if (et == 0x8100) {
		if (hl < 18)
			return -1;
		l3 = 18;
		et = (uint16_t)(h[16] << 8 | h[17]);
	}
	uint32_t l4;
	uint8_t proto;
	bool v6 = false;
	if (et == 0x0800 && hl >= l3 + 20) {
		l4 = l3 + (uint32_t)(h[l3] & 15) * 4;
		proto = h[l3 + 9];
		if ((h[l3 + 6] & 0x3f) | h[l3 + 7])
			return -1; /* a fragment: no L4 checksum to fill (Linux: EPROTO) */
	} else if (et == 0x86dd && hl >= l3 + 40) {
		l4 = l3 + 40;
		proto = h[l3 + 6];
		v6 = true;
		/* Extension headers before the transport one are skipped, as
		 * Linux's skb_checksum_setup_ipv6 does (until review 48 such
		 * frames were refused); a fragment header is refused there. */
		for (unsigned k = 0; k < 8 && (proto == 0 || proto == 43 || proto == 60 ||
					       proto == 51); k++) {
			if (hl < l4 + 8)
				return -1;
			uint32_t len = proto == 51 ? ((uint32_t)h[l4 + 1] + 2) * 4
						   : ((uint32_t)h[l4 + 1] + 1) * 8;
			proto = h[l4];
			l4 += len;
		}
		if (l4 + 8 > hl)
			return -1;
	} else {
		return -1;
	}
	if (proto != 6 && (proto != 17 || p->gso_size))
		return -1;
	o->flags |= HS_OFF_NEEDS_CSUM;
	o->csum_start = (uint16_t)l4;
	o->csum_offset = proto == 6 ? 16 : 6;
	if (p->gso_size) {
		/* the switch cuts no IPv6 frame with extension headers
		 * (hs__offload_check): refused here, answered as such, rather
		 * than dropped after the guest was told it went (review 48) */
		if ((p->gso_type == XEN_NETIF_GSO_TYPE_TCPV6) != v6 || hl < l4 + 13 ||
		    (v6 && l4 != l3 + 40))
			return -1;
		o->gso_type = v6 ? HS_GSO_TCPV6 : HS_GSO_TCPV4;
		o->gso_size = p->gso_size;
		o->hdr_len = (uint16_t)(l4 + (uint32_t)(h[l4 + 12] >> 4) * 4);
	}
	return 0;
}

static unsigned xnb_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts, unsigned max)
{
	struct xnb *x = priv;
	struct xq *xq = &x->q[q];
	if (!q_live(x, q) || atomic_load_explicit(&x->broken, memory_order_relaxed))
		return 0;
	if (max > TX_BURST)
		max = TX_BURST;
	unsigned size = RING_SIZE(&xq->tx);
	uint32_t fe = x->cfg.frontend_domid;
	RING_IDX prod = __atomic_load_n(&xq->tx.sring->req_prod, __ATOMIC_ACQUIRE);
	unsigned n = 0, nseg = 0, refused = 0;
	bool notify = false;
	while (n + refused < max) { /* refused ones count: bounded per call */
		struct txpkt *t = &xq->txp[n];
		unsigned taken;
		const char *why;
		enum hs__xtx_verdict v = hs__xtx_parse(xq->tx.sring, size, xq->tx.req_cons, prod,
						       &t->p, &taken, &why);
		if (v == HS__XTX_NONE) {
			/* re-arm the front-end's kick, then look once more
			 * (RING_FINAL_CHECK_FOR_REQUESTS), unless a poller
			 * keeps the kicks off */
			if (atomic_load_explicit(&xq->kicks_off, memory_order_relaxed))
				break;
			xq->tx.sring->req_event = xq->tx.req_cons + 1;
			xen_mb();
			prod = __atomic_load_n(&xq->tx.sring->req_prod, __ATOMIC_ACQUIRE);
			if (prod == xq->tx.req_cons)
				break;
			continue;
		}
		if (v == HS__XTX_FATAL) {
			protocol_error(xq, why);
			break;
		}
		xq->tx.req_cons += taken;
		if (v == HS__XTX_REFUSED) {
			tx_respond(xq, &t->p, NETIF_RSP_ERROR);
			refused++;
			if (xq->refused_logged < 8) {
				xq->refused_logged++;
				hs_port_log(x->port, HS_LOG_WARN, "transmit packet refused: %s", why);
			}
			continue;
		}
		/* its first bytes into local memory (one call for the burst) */
		uint32_t hl = t->p.len < XEN_TX_HEAD ? t->p.len : XEN_TX_HEAD, got = 0;
		t->hseg0 = (uint16_t)nseg;
		for (unsigned i = 0; got < hl; i++) {
			const struct hs__xtx_slot *s = &t->p.slot[i];
			uint32_t k = s->len < hl - got ? s->len : hl - got;
			if (!k)
				continue;
			xq->hcopy[nseg++] = (struct hs__xcopy){
				.source.foreign = {.ref = s->gref, .offset = s->offset, .domid = (uint16_t)fe},
				.dest.virt = t->hdr + got, .len = (uint16_t)k,
				.flags = HS__XCOPY_SRC_GREF};
			got += k;
		}
		t->nhseg = (uint16_t)(nseg - t->hseg0);
		n++;
	}
	if (refused) {
		atomic_fetch_add(&x->tx_refused, refused);
		hs_port_count_drop(x->port, q, HS_DROP_BAD_DESC, refused);
		notify |= tx_push(xq);
	}
	if (!n) {
		if (notify)
			x->ops->evt_notify(x->evt, xq->tx_port);
		if (n + refused == max && !atomic_load_explicit(&xq->kicks_off, memory_order_relaxed))
			wake(x, q, true, false); /* more may wait: come back later */
		return 0;
	}
	bool fail = x->ops->gnt_copy(x->gnt, nseg, xq->hcopy) != 0;
	atomic_fetch_add(&x->grant_copies, 1);
	atomic_fetch_add(&x->grant_copy_segs, nseg);
	/* the packets, their first bytes local and the rest foreign */
	unsigned out = 0, bad_copy = 0, bad_off = 0;
	for (unsigned k = 0; k < n; k++) {
		struct txpkt *t = &xq->txp[k];
		uint32_t hl = t->p.len < XEN_TX_HEAD ? t->p.len : XEN_TX_HEAD;
		struct hs_pkt *pk = &pkts[out];
		bool copy_failed = fail;
		for (unsigned i = 0; i < t->nhseg; i++)
			copy_failed |= xq->hcopy[t->hseg0 + i].status != HS__GNTST_OKAY;
		if (copy_failed) {
			bad_copy++;
			tx_respond(xq, &t->p, NETIF_RSP_ERROR);
			continue;
		}
		if (tx_offload(t, hl, &pk->off)) {
			bad_off++;
			tx_respond(xq, &t->p, NETIF_RSP_ERROR);
			continue;
		}
		unsigned ns = 0;
		t->segs[ns++] = (struct hs_seg){.base = t->hdr, .len = hl};
		uint32_t skip = hl;
		for (unsigned i = 0; i < t->p.n_slots; i++) {
			const struct hs__xtx_slot *s = &t->p.slot[i];
			uint32_t k2 = skip < s->len ? skip : s->len;
			skip -= k2;
			if (s->len > k2)
				t->segs[ns++] = (struct hs_seg){
					.len = s->len - k2, .flags = HS_SEG_FOREIGN,
					.ref = xref(fe, s->gref, s->offset + k2)};
		}
		pk->segs = t->segs;
		pk->nsegs = (uint16_t)ns;
		pk->len = t->p.len;
		pk->token = k;
		out++;
	}
	if (bad_copy) {
		atomic_fetch_add(&x->tx_copy_errors, bad_copy);
		hs_port_count_drop(x->port, q, HS_DROP_COPY_ERROR, bad_copy);
	}
	if (bad_off)
		hs_port_count_drop(x->port, q, HS_DROP_BAD_OFFLOAD, bad_off);
	if (bad_copy || bad_off)
		notify |= tx_push(xq);
	if (notify)
		x->ops->evt_notify(x->evt, xq->tx_port);
	/* A whole burst answered with errors: more may wait, and the loop
	 * ended before re-arming req_event; returning nothing would read as
	 * "drained" to the owner, and the front-end would not kick again.
	 * The queue signals itself instead of looping (as netback's NAPI
	 * reschedules), so a front-end that keeps producing bad requests
	 * waits its turn behind the other queues. */
	if (!out && n + refused == max && !atomic_load_explicit(&xq->kicks_off, memory_order_relaxed))
		wake(x, q, true, false); /* as napi_schedule: after the others */
	return out;
}

static unsigned xnb_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts, unsigned n)
{
	struct xnb *x = priv;
	struct xq *xq = &x->q[q];
	if (!q_live(x, q))
		return 0; /* cannot happen: rings go only while no round runs */
	for (unsigned i = 0; i < n; i++)
		tx_respond(xq, &xq->txp[pkts[i].token].p, NETIF_RSP_OKAY);
	return n && tx_push(xq) ? HS_EV_COMPLETED : 0;
}

/* ---- receive: switch -> guest ---------------------------------------------------- */

static unsigned xnb_send_reserve(void *priv, uint16_t q, const struct hs_out *out, unsigned n,
				 struct hs_iobuf *bufs)
{
	struct xnb *x = priv;
	struct xq *xq = &x->q[q];
	if (!q_live(x, q) || atomic_load_explicit(&x->broken, memory_order_relaxed))
		return 0;
	RING_IDX prod = __atomic_load_n(&xq->rx.sring->req_prod, __ATOMIC_ACQUIRE);
	RING_IDX cons = xq->rx.req_cons;
	unsigned size = RING_SIZE(&xq->rx);
	if (prod - cons > size) {
		protocol_error(xq, "receive producer index ahead of what the ring holds");
		return 0;
	}
	uint32_t fe = x->cfg.frontend_domid;
	unsigned i;
	for (i = 0; i < n; i++) {
		struct rxres *r = &xq->res[i];
		uint32_t len = out[i].len;
		unsigned ns = len ? (len + HS__XEN_PAGE - 1) / HS__XEN_PAGE : 1;
		bool gso = out[i].off.gso_type != HS_GSO_NONE;
		r->nslots = 0;
		if (ns > RX_SLOTS_MAX || (ns > 1 && !x->fe_sg)) {
			bufs[i].nsegs = 0; /* can never fit: the switch drops it */
			continue;
		}
		unsigned need = ns + gso;
		if (prod - cons < need || cons + need - xq->rx.rsp_prod_pvt > size)
			break;
		r->idx = cons;
		r->nslots = (uint8_t)need;
		r->gso = gso;
		uint32_t left = len;
		for (unsigned s = 0, d = 0; s < need; s++) {
			const volatile netif_rx_request_t *vq =
				(const volatile netif_rx_request_t *)RING_GET_REQUEST(&xq->rx, cons + s);
			uint16_t id = vq->id;
			uint32_t gref = vq->gref;
			r->id[s] = id;
			if (gso && s == 1)
				continue; /* the extra's slot: its page is not used */
			uint32_t k = left < HS__XEN_PAGE ? left : HS__XEN_PAGE;
			r->seg[d++] = (struct hs_seg){.len = k, .flags = HS_SEG_FOREIGN,
						      .ref = xref(fe, gref, 0)};
			left -= k;
		}
		cons += need;
		bufs[i].segs = r->seg;
		bufs[i].nsegs = (uint16_t)ns;
	}
	if (cons != xq->rx.req_cons) { /* (the loop reads it: written only when moved) */
		xq->rx.req_cons = cons;
		atomic_store_explicit(&xq->rx_cons, cons, memory_order_release);
	}
	return i;
}

static unsigned xnb_send_commit(void *priv, uint16_t q, const struct hs_out *out, unsigned n)
{
	struct xnb *x = priv;
	struct xq *xq = &x->q[q];
	if (!q_live(x, q))
		return 0; /* send_reserve gave nothing on such a queue */
	bool any = false;
	for (unsigned i = 0; i < n; i++) {
		const struct rxres *r = &xq->res[i];
		if (!r->nslots)
			continue;
		any = true;
		uint32_t len = out[i].len, left = len;
		bool fail = !len;
		unsigned ns = r->nslots - r->gso;
		uint16_t f0 = 0;
		if (out[i].off.flags & HS_OFF_NEEDS_CSUM)
			f0 |= NETRXF_csum_blank | NETRXF_data_validated;
		else if (out[i].off.flags & HS_OFF_DATA_VALID)
			f0 |= NETRXF_data_validated;
		for (unsigned s = 0, d = 0; s < r->nslots; s++) {
			RING_IDX idx = r->idx + s;
			if (r->gso && s == 1 && !fail) {
				netif_extra_info_t *e = (netif_extra_info_t *)RING_GET_RESPONSE(&xq->rx, idx);
				memset(e, 0, sizeof(*e));
				e->type = XEN_NETIF_EXTRA_TYPE_GSO;
				e->u.gso.size = out[i].off.gso_size;
				e->u.gso.type = out[i].off.gso_type == HS_GSO_TCPV6
							? XEN_NETIF_GSO_TYPE_TCPV6
							: XEN_NETIF_GSO_TYPE_TCPV4;
				continue;
			}
			netif_rx_response_t *rsp = RING_GET_RESPONSE(&xq->rx, idx);
			rsp->id = r->id[s];
			rsp->offset = 0;
			if (fail) {
				rsp->flags = 0;
				rsp->status = NETIF_RSP_ERROR;
				continue;
			}
			uint32_t k = left < HS__XEN_PAGE ? left : HS__XEN_PAGE;
			left -= k;
			uint16_t fl = d + 1 < ns ? NETRXF_more_data : 0;
			if (d == 0)
				fl |= f0 | (r->gso ? NETRXF_extra_info : 0);
			rsp->flags = fl;
			rsp->status = (int16_t)k;
			d++;
		}
		xq->rx.rsp_prod_pvt = r->idx + r->nslots;
	}
	if (!any)
		return 0;
	int notify;
	RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&xq->rx, notify);
	return notify ? HS_EV_DELIVERED : 0;
}

static void xnb_notify(void *priv, uint16_t q, unsigned ev)
{
	struct xnb *x = priv;
	struct xq *xq = &x->q[q];
	if (!q_live(x, q))
		return;
	if (ev & HS_EV_COMPLETED)
		x->ops->evt_notify(x->evt, xq->tx_port);
	if ((ev & HS_EV_DELIVERED) && (xq->rx_port != xq->tx_port || !(ev & HS_EV_COMPLETED)))
		x->ops->evt_notify(x->evt, xq->rx_port);
}

/* One side of a copy op as a grant-copy pointer; false if it cannot be. */
static bool copy_side(const struct hs_seg *s, uint32_t off, uint32_t len,
		      union hs__xcopy_ptr *p, uint16_t *flags, uint16_t gref_flag)
{
	if (!(s->flags & HS_SEG_FOREIGN)) {
		p->virt = s->base + off;
		return true;
	}
	if ((s->ref >> 60) != XREF_TAG)
		return false; /* another backend's memory */
	uint32_t poff = (uint32_t)(s->ref >> 32) & 0xfff;
	if (poff + off + len > HS__XEN_PAGE)
		return false;
	p->foreign.ref = (uint32_t)s->ref;
	p->foreign.offset = (uint16_t)(poff + off);
	p->foreign.domid = (uint16_t)(s->ref >> 44);
	*flags |= gref_flag;
	return true;
}

static int xnb_copy(void *priv, const struct hs_copy_op *ops, unsigned n)
{
	struct xnb *x = priv;
	struct hs__xcopy seg[COPY_CHUNK];
	int rc = 0;
	for (unsigned base = 0; base < n; base += COPY_CHUNK) {
		unsigned k = n - base < COPY_CHUNK ? n - base : COPY_CHUNK;
		for (unsigned i = 0; i < k; i++) {
			const struct hs_copy_op *op = &ops[base + i];
			struct hs__xcopy *c = &seg[i];
			c->flags = 0;
			c->len = (uint16_t)op->len;
			if (op->len > HS__XEN_PAGE ||
			    !copy_side(op->src, op->src_off, op->len, &c->source, &c->flags,
				       HS__XCOPY_SRC_GREF) ||
			    !copy_side(op->dst, op->dst_off, op->len, &c->dest, &c->flags,
				       HS__XCOPY_DST_GREF)) {
				atomic_fetch_add(&x->copy_errors, 1);
				return -EINVAL;
			}
		}
		atomic_fetch_add(&x->grant_copies, 1);
		atomic_fetch_add(&x->grant_copy_segs, k);
		if (x->ops->gnt_copy(x->gnt, k, seg)) {
			atomic_fetch_add(&x->copy_errors, k);
			rc = -EIO;
			continue;
		}
		for (unsigned i = 0; i < k; i++)
			if (seg[i].status != HS__GNTST_OKAY) {
				atomic_fetch_add(&x->copy_errors, 1);
				rc = -EIO;
			}
	}
	return rc;
}

static bool xnb_set_notify(void *priv, uint16_t q, unsigned ev, bool enable)
{
	struct xnb *x = priv;
	struct xq *xq = &x->q[q];
	if (ev == HS_EV_KICK)
		atomic_store_explicit(&xq->kicks_off, !enable, memory_order_relaxed);
	if (!q_live(x, q) || !enable)
		return false; /* a request index not moved: the front-end stays quiet */
	if (ev == HS_EV_KICK) {
		xq->tx.sring->req_event = xq->tx.req_cons + 1;
		xen_mb();
		return __atomic_load_n(&xq->tx.sring->req_prod, __ATOMIC_ACQUIRE) !=
		       xq->tx.req_cons;
	}
	/* as xenvif_rx_ring_slots_available: the next post signals, even
	 * when some requests (too few for the waiting frame) are there */
	RING_IDX prod = __atomic_load_n(&xq->rx.sring->req_prod, __ATOMIC_ACQUIRE);
	xq->rx.sring->req_event = prod + 1;
	xen_mb();
	RING_IDX now = __atomic_load_n(&xq->rx.sring->req_prod, __ATOMIC_ACQUIRE);
	return now != prod || prod != xq->rx.req_cons;
}

static void xnb_counters(void *priv, void (*cb)(void *arg, const char *name, uint64_t v),
			 void *arg)
{
	struct xnb *x = priv;
	cb(arg, "connects", atomic_load(&x->connects));
	cb(arg, "disconnects", atomic_load(&x->disconnects));
	cb(arg, "protocol_errors", atomic_load(&x->protocol_errors));
	cb(arg, "tx_refused", atomic_load(&x->tx_refused));
	cb(arg, "tx_copy_errors", atomic_load(&x->tx_copy_errors));
	cb(arg, "copy_errors", atomic_load(&x->copy_errors));
	cb(arg, "grant_copies", atomic_load(&x->grant_copies));
	cb(arg, "grant_copy_segments", atomic_load(&x->grant_copy_segs));
	cb(arg, "vcpu_state_reads", atomic_load(&x->vcpu_reads));
	cb(arg, "vcpu_state_errors", atomic_load(&x->vcpu_errors));
	cb(arg, "peer_running", atomic_load(&x->peer_running));
	cb(arg, "peer_not_running", atomic_load(&x->peer_not_running));
	cb(arg, "events", atomic_load(&x->events));
	cb(arg, "events_spurious", atomic_load(&x->events_spurious));
	cb(arg, "events_deferred", atomic_load(&x->events_deferred));
}

const struct hs_backend_ops hs__xen_ops = {
	.name = HS_XEN_BACKEND,
	.abi = HS_BACKEND_ABI,
	.open = xnb_open,
	.start = xnb_start,
	.stop = xnb_stop,
	.close = xnb_close,
	.recv_burst = xnb_recv_burst,
	.recv_done = xnb_recv_done,
	.send_reserve = xnb_send_reserve,
	.send_commit = xnb_send_commit,
	.notify = xnb_notify,
	.copy = xnb_copy,
	.set_notify = xnb_set_notify,
	.counters = xnb_counters,
};
