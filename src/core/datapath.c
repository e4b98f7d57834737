/*
 * datapath.c - rounds: receive a burst from one ingress queue, classify
 * every frame (VLAN, learning, lookup), group by destination, deliver
 * (deliver.c), complete the sender's frames, notify.
 *
 * Ownership: an ingress queue is processed by exactly one thread at a
 * time. hs__q_acquire/hs__q_release implement that with one atomic state
 * word and no lock; a kick that finds the queue owned leaves PENDING and
 * the owner runs again before letting go, so no kick is ever lost.
 *
 * Sender context: hs_port_kick() runs the rounds in the caller's thread,
 * unless an offload worker is idle (offload.c), in which case the queue
 * is handed to it; a worker that falls behind offers it back, and the
 * sender's next kick takes it (hs__q_take_back).
 *
 * Threads: any data-plane thread, online in RCU for the whole round; the
 * topology snapshot read at the start of a round stays valid to its end.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"

/* ---- time ---------------------------------------------------------------- */

uint64_t hs__now_ns(const struct hs_switch *sw)
{
	if (sw->cfg.clock_fn)
		return sw->cfg.clock_fn(sw->cfg.clock_opaque);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint32_t hs__now_s(const struct hs_switch *sw)
{
	/* Seconds since the switch was created, plus one so that a stamp of
	 * zero never means "now". */
	return (uint32_t)((hs__now_ns(sw) - sw->clock_base_ns) / 1000000000ull) + 1;
}

/* ---- queue ownership ------------------------------------------------------- */

bool hs__q_acquire(struct hs__inq *iq, bool from_epoll)
{
	uint32_t s = atomic_load_explicit(&iq->state, memory_order_relaxed);
	uint32_t mark = HS__Q_PENDING | (from_epoll ? HS__Q_DISARMED : 0);
	for (;;) {
		uint32_t ns;
		bool won = false;
		if (s & (HS__Q_OWNED | HS__Q_PAUSED | HS__Q_DEAD)) {
			ns = s | mark; /* the owner (or resume) sees it */
		} else {
			ns = (s | HS__Q_OWNED | (from_epoll ? HS__Q_DISARMED : 0)) &
			     ~HS__Q_PENDING;
			won = true;
		}
		/* acq_rel: winning takes the queue; marking PENDING tells the
		 * owner of frames published before it (a weakly ordered CPU
		 * must not let the owner see the mark before them) */
		if (atomic_compare_exchange_weak_explicit(&iq->state, &s, ns,
							  memory_order_acq_rel,
							  memory_order_relaxed))
			return won;
	}
}

/* Enables or suppresses the peer's kicks on an owned queue: the one place
 * that does, so that HS__Q_KICKS_OFF always says whether they are off.
 * Returns the backend's answer when enabling (work already waiting). */
bool hs__q_kicks(struct hs__inq *iq, bool enable)
{
	struct hs_port *p = iq->port;
	if (!p->ops->set_notify)
		return false;
	if (enable)
		atomic_fetch_and(&iq->state, ~(uint32_t)HS__Q_KICKS_OFF);
	else
		atomic_fetch_or(&iq->state, HS__Q_KICKS_OFF);
	return hs__be_set_notify(p, iq->qid, HS_EV_KICK, enable);
}

/* Lets go of an owned queue: the only way a queue stops being owned, so
 * the invariant "an unowned queue has its kicks enabled" lives here.
 * Kicks a poller suppressed are enabled first, also on a port being
 * paused (quiesce waits for this owner, so the backend is still ours);
 * only a port going away is left as it is. If that finds frames waiting,
 * or a kick marked the queue PENDING meanwhile, the queue is kept (returns
 * false: run it again) unless the port is being paused, when it is left
 * PENDING for hs_port_resume to act on (always: see below), or `force`
 * (the caller made sure somebody comes back, e.g. by signalling the
 * queue's fd). */
bool hs__q_release(struct hs__inq *iq, bool force)
{
	uint32_t s = atomic_load_explicit(&iq->state, memory_order_relaxed);
	if ((s & HS__Q_KICKS_OFF) && !(s & HS__Q_DEAD)) {
		if (hs__q_kicks(iq, true))
			atomic_fetch_or(&iq->state, HS__Q_PENDING);
		s = atomic_load_explicit(&iq->state, memory_order_relaxed);
	}
	for (;;) {
		if (!force && (s & HS__Q_PENDING) && !(s & (HS__Q_PAUSED | HS__Q_DEAD))) {
			if (atomic_compare_exchange_weak_explicit(
				    &iq->state, &s, s & ~HS__Q_PENDING,
				    memory_order_acq_rel, memory_order_relaxed))
				return false; /* more work: keep it */
			continue;
		}
		uint32_t ns = s & ~(HS__Q_OWNED | HS__Q_DISARMED | HS__Q_POLLED | HS__Q_SHED);
		/* Let go because the port pauses: the owner may have drained a
		 * signal it had no round for (the round saw PAUSED first), so
		 * the queue is owed one: resume runs it (one spare round at
		 * most). */
		if ((s & HS__Q_PAUSED) && !(s & HS__Q_DEAD))
			ns |= HS__Q_PENDING;
		if (atomic_compare_exchange_weak_explicit(&iq->state, &s, ns,
							  memory_order_release,
							  memory_order_relaxed)) {
			if ((s & HS__Q_DISARMED) && !(s & HS__Q_DEAD))
				hs__dp_rearm(iq->port->sw, iq);
			return true;
		}
	}
}

/* A sender takes back a queue that its busy worker offers (HS__Q_SHED):
 * it asks (HS__Q_TAKE) and waits for the worker to pass ownership
 * (HS__Q_GIVEN), which the worker does at its next round on the queue, or
 * for the queue to be let go. Returns true if the caller owns the queue
 * now. False if somebody else owns it (marked PENDING, as a kick that
 * finds a queue owned does), or if the worker did not answer within
 * HS__TAKE_BACK_NS: then the sender declines the offer (clears SHED, and
 * the worker turns the queue's kicks off again at its next round), so its
 * later kicks do not wait again; the worker still owns and polls the
 * queue, so the frames wait for nobody. The wait spins briefly, then
 * yields: the worker may need this CPU to answer. A yield can last a
 * time slice when other threads want the CPU, so the wait can end past
 * the deadline, and a hand-over can be claimed late: the queue then
 * waits for this thread as for any preempted owner. Every way out clears
 * the caller's TAKE unless the worker consumed it. */
#define HS__TAKE_BACK_NS 200000u
#define HS__TAKE_BACK_SPINS 256u
bool hs__q_take_back(struct hs__inq *iq)
{
	uint32_t s = atomic_load_explicit(&iq->state, memory_order_relaxed);
	uint64_t deadline = 0;
	for (unsigned spin = 0;; spin++) {
		uint32_t ns;
		if (s & HS__Q_GIVEN) {
			ns = s & ~HS__Q_GIVEN; /* ours: OWNED stays */
		} else if (!(s & HS__Q_OWNED)) {
			if (s & (HS__Q_PAUSED | HS__Q_DEAD)) {
				ns = (s & ~HS__Q_TAKE) | HS__Q_PENDING;
			} else {
				ns = (s | HS__Q_OWNED) & ~(HS__Q_PENDING | HS__Q_TAKE);
			}
			if (atomic_compare_exchange_weak_explicit(&iq->state, &s, ns,
								  memory_order_acq_rel,
								  memory_order_relaxed))
				return !(ns & HS__Q_PENDING);
			continue;
		} else if (!(s & HS__Q_SHED) || (s & (HS__Q_PAUSED | HS__Q_DEAD))) {
			ns = (s & ~HS__Q_TAKE) | HS__Q_PENDING; /* another owner */
			if (atomic_compare_exchange_weak_explicit(&iq->state, &s, ns,
								  memory_order_release,
								  memory_order_relaxed))
				return false;
			continue;
		} else if (!(s & HS__Q_TAKE)) {
			ns = s | HS__Q_TAKE;
		} else {
			/* Asked: wait for the worker's round on the queue. */
			if (spin >= HS__TAKE_BACK_SPINS || (spin & 63) == 0) {
				uint64_t now = hs__mono_ns();
				if (!deadline) {
					deadline = now + HS__TAKE_BACK_NS;
				} else if (now > deadline) {
					/* decline: no more waits for this offer */
					ns = (s & ~(HS__Q_TAKE | HS__Q_SHED)) | HS__Q_PENDING;
					if (atomic_compare_exchange_strong_explicit(
						    &iq->state, &s, ns, memory_order_release,
						    memory_order_relaxed))
						return false;
					continue;
				}
			}
			if (spin < HS__TAKE_BACK_SPINS)
				hs__cpu_relax();
			else
				sched_yield();
			s = atomic_load_explicit(&iq->state, memory_order_relaxed);
			continue;
		}
		if (atomic_compare_exchange_weak_explicit(&iq->state, &s, ns,
							  memory_order_acquire,
							  memory_order_relaxed)) {
			if (s & HS__Q_GIVEN)
				return true;
			s = ns;
		}
	}
}

/* Runs rounds on an owned queue until it is empty (or `budget` frames,
 * if non-zero), then releases it. Returns the frames moved. */
int hs__q_run(struct hs__ctx *c, struct hs__inq *iq, unsigned budget)
{
	unsigned total = 0;
	for (;;) {
		unsigned n;
		while ((n = hs__round(c, iq)) > 0) {
			total += n;
			hs__rcu_quiescent();
			if (budget && total >= budget)
				break;
		}
		if (budget && total >= budget) {
			/* Out of budget with work left: let go and make sure
			 * somebody comes back through the epoll set. A
			 * level-triggered fd is still readable: epoll reports it
			 * again once the release re-arms it; an eventfd gets a
			 * signal. With neither, nothing would bring the queue
			 * back: finish it now. */
			bool level = atomic_load_explicit(&iq->kick_level, memory_order_relaxed);
			if (!level && !hs__dp_signal(iq)) {
				budget = 0;
				continue;
			}
			hs__q_release(iq, true);
			break;
		}
		if (hs__q_release(iq, false))
			break;
	}
	return (int)total;
}

/* ---- classification -------------------------------------------------------- */

static inline uint64_t load_mac(const uint8_t *p)
{
	uint32_t a;
	uint16_t b;
	memcpy(&a, p, 4);
	memcpy(&b, p + 4, 2);
	return (uint64_t)a | ((uint64_t)b << 32);
}

static inline void mark(struct hs__ctx *c, uint32_t pidx, unsigned i)
{
	if (!c->mask[pidx])
		c->touched[c->n_touched++] = (uint16_t)pidx;
	c->mask[pidx] |= 1ull << i;
}

static void mark_mask(struct hs__ctx *c, uint16_t pidx, uint64_t m)
{
	if (!m)
		return;
	if (!c->mask[pidx])
		c->touched[c->n_touched++] = pidx;
	c->mask[pidx] |= m;
}

/* Marks the frames of mask m (one VLAN: vid) for every other port of the
 * VLAN, or counts them as dropped when there is none. */
static void flood(struct hs__ctx *c, const struct hs__topo *t,
		  const struct hs_port *in, struct hs__inq *iq, uint16_t vid,
		  uint64_t m)
{
	const struct hs__vset *vs = t->vset[vid];
	unsigned n = 0;
	if (vs)
		for (unsigned k = 0; k < vs->n; k++)
			if (vs->port[k] != in->index) {
				mark_mask(c, vs->port[k], m);
				n++;
			}
	if (!n)
		hs__ctr_add(&iq->drops[HS_DROP_NO_ROUTE], (uint64_t)__builtin_popcountll(m));
}

/* flood() for frames towards a group address (key): broadcasts and
 * multicasts counted in *bc and *mc. */
static void flood_group(struct hs__ctx *c, const struct hs__topo *t,
			const struct hs_port *in, struct hs__inq *iq, uint16_t vid,
			uint64_t key, uint64_t m, uint64_t *bc, uint64_t *mc)
{
	uint64_t n = (uint64_t)__builtin_popcountll(m);
	if (key == hs__fdb_key(vid, 0xffffffffffffull))
		*bc += n;
	else
		*mc += n;
	flood(c, t, in, iq, vid, m);
}

static void drop(struct hs__inq *iq, enum hs_drop_reason r)
{
	hs__ctr_add(&iq->drops[r], 1);
}

/* Above the port's largest frame (max_len: MTU + Ethernet header), a
 * tag's 4 bytes allowed. */
static inline bool over_mtu(uint32_t len, uint32_t max_len, bool tagged)
{
	return len > max_len + (tagged ? HS_VLAN_HLEN : 0);
}

/* The checks a parsed frame passes before it is switched: offload
 * metadata that matches its headers, and a size within the port's MTU. */
static inline bool frame_ok(struct hs__ctx *c, struct hs__inq *iq, unsigned i, bool plain,
			    bool tagged, uint32_t max_len)
{
	struct hs_pkt *p = &c->pkts[i];
	if (HS__UNLIKELY(!plain)) {
		uint8_t tmp[HS__HDR_MAX];
		uint32_t hl = p->len < HS__HDR_MAX ? p->len : HS__HDR_MAX;
		hl = hs__pkt_gather(p, 0, tmp, hl);
		if (hs__offload_check(p, tmp, hl, &c->dl->l4in[i])) {
			drop(iq, HS_DROP_BAD_OFFLOAD);
			return false;
		}
	}
	/* A GSO frame may be larger than the MTU, but not the frames it
	 * stands for: its largest piece (all of it, if it is one) must fit
	 * as a frame would. Linux sends no larger ones: its MSS is the
	 * MTU's. */
	uint32_t len = p->off.gso_type ? hs__largest_piece(p->len, &p->off, &c->dl->l4in[i])
				       : p->len;
	if (HS__UNLIKELY(over_mtu(len, max_len, tagged))) {
		drop(iq, HS_DROP_OVERSIZE);
		return false;
	}
	return true;
}

/* Decides every frame's destination set (c->mask): parses every frame's
 * headers and checks it; then asks the table once for a one-flow burst,
 * or else hashes every frame's keys and prefetches both table buckets
 * before it learns, looks up and marks frame by frame. Sets c->plain:
 * frames with no offload metadata (their delivery needs no transform
 * beyond a possible VLAN change). */
static void classify(struct hs__ctx *c, struct hs_port *in, struct hs__inq *iq,
		     unsigned n, const struct hs__topo *t)
{
	struct hs_switch *sw = c->sw;
	struct hs__fdb *f = &sw->fdb;
	/* Invariants in locals: stores into the per-frame arrays below would
	 * otherwise force the compiler to reload them for every frame. */
	const bool learn = !(in->flags & HS_PORT_NO_LEARN);
	const struct hs__pvlan *ivl = hs__port_vl(in);
	const bool access = ivl->mode == HS_VLAN_ACCESS;
	const uint16_t pvid = ivl->pvid;
	const uint32_t max_len = atomic_load_explicit(&in->mtu, memory_order_relaxed) +
				 HS_ETH_HLEN;
	const uint32_t now = c->now_s;
	struct hs_port *const *ports = t->port;
	const uint32_t max_ports = t->max_ports;
	uint64_t bytes = 0, bc = 0, mc = 0, fl = 0, live = 0, plain = 0, tagm = 0, big = 0;
	uint64_t dkey[HS__BURST_MAX], skey[HS__BURST_MAX];
	uint64_t dh[HS__BURST_MAX], sh[HS__BURST_MAX];
	/* all keys equal when their OR equals their AND */
	uint64_t sor = 0, sand = ~0ull, dor = 0, dand = ~0ull;

	for (unsigned i = 0; i < n; i++) {
		struct hs_pkt *p = &c->pkts[i];
		uint32_t len = p->len;
		bytes += len;
		if (HS__UNLIKELY(len < HS_ETH_HLEN)) {
			drop(iq, HS_DROP_RUNT);
			continue;
		}
		const uint8_t *h = p->segs[0].base;
		if (HS__UNLIKELY(p->segs[0].len < 18 ||
				 (p->segs[0].flags & HS_SEG_FOREIGN))) {
			uint32_t want = len < 18 ? len : 18;
			if (hs__pkt_gather(p, 0, c->hdr[i], want) != want) {
				drop(iq, HS_DROP_BAD_DESC);
				continue;
			}
			h = c->hdr[i];
		}
		uint64_t dst = load_mac(h), src = load_mac(h + 6);
		uint16_t et, tci = 0, vid = pvid;
		memcpy(&et, h + 12, 2);
		bool tagged = et == 0x0081 && len >= 18; /* 0x8100, big endian */
		if (HS__UNLIKELY(tagged)) {
			tci = (uint16_t)((h[14] << 8) | h[15]);
			uint16_t tv = tci & 0x0fff;
			if (access)
				vid = tv ? 0 : pvid;
			else if (tv)
				vid = hs__vl_has(ivl, tv) ? tv : 0;
		}
		if (HS__UNLIKELY(!vid)) {
			drop(iq, HS_DROP_VLAN);
			continue;
		}
		if (HS__UNLIKELY((src & 1) || !src)) {
			drop(iq, HS_DROP_BAD_SRC_MAC);
			continue;
		}
		c->vid[i] = vid;
		c->tci[i] = tci;
		tagm |= (uint64_t)tagged << i;
		dkey[i] = hs__fdb_key(vid, dst);
		skey[i] = hs__fdb_key(vid, src);
		sor |= skey[i];
		sand &= skey[i];
		dor |= dkey[i];
		dand &= dkey[i];
		if (HS__LIKELY(!p->off.flags && !p->off.gso_type))
			plain |= 1ull << i;
		/* above the MTU (a tag's 4 bytes allowed): frame_ok decides */
		big |= (uint64_t)over_mtu(len, max_len, tagged) << i;
		live |= 1ull << i;
	}
	c->tagged = tagm;

	/* The checks after parsing: a plain frame within the MTU passes them
	 * without a call; the others (offload metadata to check, a size to
	 * judge against it) go through frame_ok. */
	uint64_t ok = live & plain & ~big;
	for (uint64_t m = live & ~ok; m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctzll(m);
		if (frame_ok(c, iq, i, (plain >> i) & 1, (tagm >> i) & 1, max_len))
			ok |= 1ull << i;
	}

	/* One source, one destination: a guest's burst towards its peer or
	 * its gateway (or, flooded, towards a group address or a MAC not
	 * learned). Once every frame is checked, the source is learned once
	 * for the burst: if it is already behind this port (the learn's fast
	 * path), the later frames' learns would change nothing; if it is new
	 * or moved here, the first frame's learn (the slow path) makes it so.
	 * Then the table is asked once, or the burst flooded as a whole. A
	 * learn the slow path refuses (a static entry elsewhere, the port's
	 * limit) leaves the checked frames to the frame-by-frame loop below,
	 * which counts each refusal, the first frame's excepted (done here). */
	uint64_t todo = ok, learned = 0;
	unsigned i0 = ok ? (unsigned)__builtin_ctzll(ok) : 0;
	if (ok && sor == sand && dor == dand) {
		sh[i0] = hs__fdb_hash(f, skey[i0]);
		bool src_ok = !learn || hs__fdb_learn_fast(f, skey[i0], sh[i0], in, now);
		if (!src_ok) {
			hs__fdb_learn_slow(sw, skey[i0], in, now);
			learned = 1ull << i0;
			src_ok = hs__fdb_learn_fast(f, skey[i0], sh[i0], in, now);
		}
		uint64_t dk = dkey[i0];
		unsigned nok = (unsigned)__builtin_popcountll(ok);
		if (src_ok && (dk & 1)) { /* group address: byte 0, bit 0 */
			flood_group(c, t, in, iq, c->vid[i0], dk, ok, &bc, &mc);
			todo = 0;
		} else if (src_ok) {
			uint32_t w, stamp;
			const struct hs_port *dp = NULL;
			if (hs__fdb_lookup_h(f, dk, hs__fdb_hash(f, dk), &w, &stamp)) {
				uint32_t pidx = w & HS__FDB_PORT_MASK;
				dp = pidx < max_ports ? ports[pidx] : NULL;
			}
			if (HS__LIKELY(dp)) {
				if (HS__UNLIKELY(dp == in))
					hs__ctr_add(&iq->drops[HS_DROP_SAME_PORT], nok);
				else if (HS__UNLIKELY(!hs__port_in_vlan(dp, c->vid[i0])))
					hs__ctr_add(&iq->drops[HS_DROP_VLAN], nok);
				else
					mark_mask(c, (uint16_t)(w & HS__FDB_PORT_MASK), ok);
			} else {
				fl = nok;
				flood(c, t, in, iq, c->vid[i0], ok);
			}
			todo = 0;
		}
	}

	/* Frame by frame: both table buckets of every frame prefetched
	 * before the first lookup (hashed here, not while parsing: a one-flow
	 * burst hashes once) */
	for (uint64_t m = todo; m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctzll(m);
		sh[i] = hs__fdb_hash(f, skey[i]);
		hs__fdb_prefetch(f, sh[i]);
		if (!(dkey[i] & 1)) {
			dh[i] = hs__fdb_hash(f, dkey[i]);
			hs__fdb_prefetch(f, dh[i]);
		}
	}
	for (uint64_t m = todo; m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctzll(m);
		uint16_t vid = c->vid[i];
		if (learn && !((learned >> i) & 1))
			hs__fdb_learn(sw, f, skey[i], sh[i], in, now);
		if (dkey[i] & 1) { /* group address: byte 0, bit 0 */
			flood_group(c, t, in, iq, vid, dkey[i], 1ull << i, &bc, &mc);
			continue;
		}
		uint32_t w, stamp;
		if (hs__fdb_lookup_h(f, dkey[i], dh[i], &w, &stamp)) {
			uint32_t pidx = w & HS__FDB_PORT_MASK;
			const struct hs_port *dp = pidx < max_ports ? ports[pidx] : NULL;
			if (HS__LIKELY(dp)) {
				if (HS__UNLIKELY(dp == in))
					drop(iq, HS_DROP_SAME_PORT);
				else if (HS__UNLIKELY(!hs__port_in_vlan(dp, vid)))
					drop(iq, HS_DROP_VLAN);
				else
					mark(c, pidx, i);
				continue;
			}
		}
		fl++;
		flood(c, t, in, iq, vid, 1ull << i);
	}
	c->plain = plain;
	c->ok = ok;
	hs__ctr_add(&iq->rx_packets, n);
	hs__ctr_add(&iq->rx_bytes, bytes);
	if (bc)
		hs__ctr_add(&iq->rx_bcast, bc);
	if (mc)
		hs__ctr_add(&iq->rx_mcast, mc);
	if (fl)
		hs__ctr_add(&iq->rx_flooded, fl);
}

/* ---- mirrors ------------------------------------------------------------------ */

/* Adds the mirror outputs to the round's destinations: the frames `in`
 * received go to its rx outputs, and the frames each destination gets go
 * to that destination's tx outputs. Runs only when the snapshot has
 * mirrors. */
static void mirror_marks(struct hs__ctx *c, const struct hs__topo *t, const struct hs__mir *mir,
			 const struct hs_port *in)
{
	const struct hs__mir *mi = &mir[in->index];
	unsigned touched = c->n_touched; /* the outputs added below are not sources */
	for (unsigned k = 0; k < touched; k++) {
		uint16_t d = c->touched[k];
		const struct hs__mir *md = &mir[d];
		const struct hs_port *dp = t->port[d];
		/* what a port with its link down is sent is dropped, not
		 * delivered: not a frame it gets, not copied */
		if (md->n_tx && (!dp || !atomic_load_explicit(&((struct hs_port *)dp)->link_up,
							      memory_order_relaxed)))
			continue;
		for (unsigned j = 0; j < md->n_tx; j++)
			mark_mask(c, md->tx[j], c->mask[d]);
	}
	for (unsigned j = 0; j < mi->n_rx; j++)
		mark_mask(c, mi->rx[j], c->ok);
}

/* ---- the round ---------------------------------------------------------------- */

/* A round past its receive: the n frames in c->pkts switched, delivered
 * and given back. Out of line, so that a poll that finds nothing (most
 * polls of a busy worker) costs the caller's frame and little else. */
static __attribute__((noinline)) unsigned hs__round_frames(struct hs__ctx *c,
							   struct hs__inq *iq, unsigned n)
{
	struct hs_port *in = iq->port;
	struct hs_switch *sw = c->sw;
	c->in_round = true;
	c->now_s = hs__now_s(sw);
	const struct hs__topo *t = hs__topo_get(sw);
	c->dl->src_port = in;

	/* one load: port.c may take a snapshot's mirrors away in place when
	 * it is out of memory (then frees them a grace period later) */
	const struct hs__mir *mir = __atomic_load_n(&t->mir, __ATOMIC_ACQUIRE);
	if (HS__UNLIKELY(mir != NULL)) {
		if (mir[in->index].is_out) { /* a mirror output: not switched */
			uint64_t bytes = 0;
			for (unsigned i = 0; i < n; i++)
				bytes += c->pkts[i].len;
			hs__ctr_add(&iq->rx_packets, n);
			hs__ctr_add(&iq->rx_bytes, bytes);
			hs__ctr_add(&iq->drops[HS_DROP_MIRROR_PORT], n);
		} else {
			classify(c, in, iq, n, t);
			mirror_marks(c, t, mir, in);
		}
	} else {
		classify(c, in, iq, n, t);
	}
	for (unsigned k = 0; k < c->n_touched; k++) {
		uint16_t m = c->touched[k];
		struct hs_port *dp = t->port[m];
		if (dp)
			hs__deliver(c, dp, c->mask[m]);
		c->mask[m] = 0;
	}
	c->n_touched = 0;

	unsigned ev = 0;
	if (HS__UNLIKELY(sw->cfg.flags & HS_SW_NOTIFY_EACH)) {
		for (unsigned i = 0; i < n; i++)
			if (hs__be_recv_done(in, iq->qid, &c->pkts[i], 1) & HS_EV_COMPLETED) {
				hs__ctr_add(&iq->rx_notify, 1);
				hs__be_notify(in, iq->qid, HS_EV_COMPLETED);
			}
	} else {
		ev = hs__be_recv_done(in, iq->qid, c->pkts, n);
	}
	if (ev & HS_EV_COMPLETED) {
		hs__ctr_add(&iq->rx_notify, 1);
		hs__be_notify(in, iq->qid, HS_EV_COMPLETED);
	}
	hs__flush_deferred(c);
	hs__ctr_add(&c->rounds, 1);
	c->in_round = false;
	return n;
}

unsigned hs__round(struct hs__ctx *c, struct hs__inq *iq)
{
	if (HS__UNLIKELY(atomic_load_explicit(&iq->state, memory_order_acquire) &
			 (HS__Q_DEAD | HS__Q_PAUSED)))
		return 0;
	unsigned burst = c->sw->cfg.burst;
	unsigned n = hs__be_recv_burst(iq->port, iq->qid, c->pkts, burst);
	if (!n)
		return 0;
	return hs__round_frames(c, iq, n < burst ? n : burst);
}

/* ---- sender context ------------------------------------------------------------ */

/* host: the caller is the queue's own sender (hs_port_kick), not the
 * switch acting once for it (resume). */
int hs__port_kick(struct hs_port *port, uint16_t queue, bool host)
{
	struct hs_switch *sw = port->sw;
	struct hs__inq *iq = &port->inq[queue];
	if (hs__rcu_thread_online())
		return -EDEADLK; /* called from inside a round */
	if (host && HS__UNLIKELY(!atomic_load_explicit(&iq->sender, memory_order_relaxed)))
		atomic_store_explicit(&iq->sender, true, memory_order_relaxed);
	/* Offered back by its busy worker: take it rather than hand it off. */
	bool back = atomic_load_explicit(&iq->state, memory_order_relaxed) & HS__Q_SHED;
	if (!back && !(sw->cfg.flags & HS_SW_NO_OFFLOAD) && hs__pool_handoff(sw, iq))
		return 0;
	struct hs__ctx *c = hs__ctx_get(sw);
	if (!c) { /* every sender context busy: through the fd, if it has one */
		int err = errno;
		return hs__dp_signal(iq) ? 0 : -err;
	}
	int n = 0;
	hs__rcu_enter();
	if (back ? hs__q_take_back(iq) : hs__q_acquire(iq, false))
		n = hs__q_run(c, iq, 0);
	hs__rcu_leave();
	hs__ctx_put(c);
	return n;
}

int hs_port_kick(hs_port_t *port, uint16_t queue)
{
	if (!port || queue >= port->nq)
		return -EINVAL;
	return hs__port_kick(port, queue, true);
}

void hs_port_posted(hs_port_t *port, uint16_t q)
{
	if (!port || q >= port->nq)
		return;
	struct hs__outq *oq = &port->outq[q];
	/* The caller's post before the read of bl_count; pairs with the fence
	 * in deliver.c's posted_watch (frames published, then buffers looked
	 * for): one of the two sides sees the other. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&oq->bl_count, memory_order_relaxed))
		return;
	struct hs__ctx *c = hs__cur_ctx;
	bool own = !c || c->sw != port->sw || c->in_round;
	if (own) {
		c = hs__ctx_get(port->sw);
		if (!c) {
			/* No context free now: through the queue's "posted" fd,
			 * as the peer's own signal would come (a receiver whose
			 * signals are off until frames wait may send none, and a
			 * next delivery may never come). A backend without that
			 * fd (mem, Xen) has only this call: wait for a context,
			 * which a round holds only while it runs. */
			if (hs__dp_signal_posted(port, q))
				return;
			while (!(c = hs__ctx_get(port->sw))) {
				if (errno == ENOMEM) {
					/* a context cannot be made: the frames
					 * wait for the next delivery or post */
					hs_port_log(port, HS_LOG_ERROR,
						    "queue %u: buffers posted, but no memory "
						    "to switch the frames waiting for them",
						    q);
					return;
				}
				sched_yield();
			}
		}
	}
	/* Online in RCU while draining: the notification at its end must be
	 * inside the grace period hs_port_quiesce waits for (outside it, a
	 * reset could close the call fd under the write). */
	hs__rcu_enter();
	hs__posted(c, port, oq);
	hs__rcu_leave();
	if (own)
		hs__ctx_put(c);
}

static bool drop_args_ok(const hs_port_t *port, uint16_t q, enum hs_drop_reason reason)
{
	return port && q < port->nq && (unsigned)reason < HS_DROP__COUNT;
}

void hs_port_count_tx_drop(hs_port_t *port, uint16_t q, enum hs_drop_reason reason,
			   unsigned n)
{
	if (drop_args_ok(port, q, reason)) {
		hs__ctr_add(&port->outq[q].drops[reason], n);
		hs__ctr_add(&port->outq[q].tx_lost, n);
	}
}

void hs_port_count_drop(hs_port_t *port, uint16_t q, enum hs_drop_reason reason,
			unsigned n)
{
	if (drop_args_ok(port, q, reason))
		hs__ctr_add(&port->inq[q].drops[reason], n);
}
