/*
 * offload.c - the data-plane epoll set, the offload worker pool and
 * adaptive polling.
 *
 * Every queue that signals work through a file descriptor (a guest's kick
 * eventfd, a mem port's eventfd, a receiver's "buffers posted" eventfd) is
 * in one epoll set per switch, EPOLLONESHOT: an idle queue wakes exactly
 * one thread. The thread that wakes is the one that learned of the frames
 * and processes them (sender context); with no workers that is the loop
 * thread (hs__dp_dispatch), otherwise an idle worker.
 *
 * Offload to idle cores (the Hyper-Switch policy): hs_port_kick() hands a
 * queue to a worker only while one is available, by signalling the queue's
 * fd; otherwise the caller switches its own frames. A worker is available
 * while it sleeps, and while it polls queues that have carried no frame for
 * poll_us/8 (its core is free: it takes handed-off queues as it polls).
 * A worker that falls behind on two or more busy queues gives one back to
 * its sender's thread ("hand back", below).
 *
 * Adaptive polling: a worker that took a queue suppresses its kicks
 * (backend set_notify) and busy-polls it together with its other queues.
 * After poll_us microseconds without a frame (a time, not a round count:
 * an empty round costs tens of nanoseconds, while senders sharing a core
 * come back every few microseconds or more) it re-enables kicks, checks
 * once more, lets go of every queue that is still empty (which re-arms
 * its fd) and sleeps in epoll_wait. An idle switch uses no CPU; a busy
 * one never sleeps. Busy workers also take newly ready queues every 16
 * rounds; after rounds that moved frames, at most once per poll_us/8,
 * capped at 25 us (look_due).
 *
 * Epoll events carry (port serial, index, queue, kind) rather than a
 * pointer: after waking, a thread goes online in RCU and looks the port up
 * in the current topology, so an event for a port removed meanwhile is
 * ignored instead of touching freed memory.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define HS__WORKER_QMAX 256
#define HS__EV_STOP UINT64_MAX

struct hs__worker {
	struct hs_switch *sw;
	pthread_t tid;
	struct hs__ctx *ctx;
	unsigned id;
	int cpu;
	unsigned n_owned;
	struct hs__inq *owned[HS__WORKER_QMAX];
	uint16_t streak[HS__WORKER_QMAX]; /* full rounds in a row */
	uint32_t quiet[HS__WORKER_QMAX];  /* empty rounds in a row */
	uint64_t quiet_since[HS__WORKER_QMAX]; /* when the quiet streak began (ns) */
	struct hs__inq *shed;     /* the owned queue offered back, if any */
	uint64_t shed_at;         /* when it was offered (ns) */
	unsigned shed_age;        /* rounds on it since the offer */
	/* adaptive polling */
	unsigned empty, iter;     /* empty rounds in a row; rounds */
	bool busy;                /* its last sweep moved frames */
	uint64_t idle_since;      /* start of the idle streak (ns) */
	uint64_t looked;          /* last look for ready queues while busy */
	uint64_t look_ns;         /* least time between such looks; 0: none */
	bool avail;               /* counted in sw->workers_avail */
};

struct hs__pool {
	unsigned n;
	_Atomic bool stop;
	int stop_fd;
	struct hs__worker *w;
};

/* ---- the epoll set ------------------------------------------------------------ */

static uint64_t ev_key(const struct hs_port *p, uint16_t q, unsigned ev)
{
	return ((uint64_t)p->serial << 32) | ((uint64_t)p->index << 16) |
	       ((uint64_t)q << 8) | ev;
}

int hs__dp_init(struct hs_switch *sw)
{
	pthread_mutex_init(&sw->dp_lock, NULL);
	sw->dp_epfd = epoll_create1(EPOLL_CLOEXEC);
	return sw->dp_epfd < 0 ? -errno : 0;
}

void hs__dp_fini(struct hs_switch *sw)
{
	if (sw->dp_epfd >= 0)
		close(sw->dp_epfd);
	sw->dp_epfd = -1;
	pthread_mutex_destroy(&sw->dp_lock);
}

static _Atomic int *fd_slot(struct hs_port *p, uint16_t q, unsigned ev)
{
	return ev == HS_EV_KICK ? &p->inq[q].kick_fd : &p->outq[q].posted_fd;
}

int hs__dp_fd_add(struct hs_port *p, uint16_t q, unsigned ev, int fd)
{
	struct hs_switch *sw = p->sw;
	struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT,
				.data.u64 = ev_key(p, q, ev)};
	int rc = 0;
	pthread_mutex_lock(&sw->dp_lock);
	/* The slot first: the fd may be ready already, and the thread that
	 * takes its event re-arms it from the slot when it lets the queue go.
	 * Stored after the ADD, a queue taken and let go in between stayed
	 * disarmed for good (its fd never reported again). */
	atomic_store(fd_slot(p, q, ev), fd);
	if (epoll_ctl(sw->dp_epfd, EPOLL_CTL_ADD, fd, &e)) {
		rc = -errno;
		atomic_store(fd_slot(p, q, ev), -1);
	}
	pthread_mutex_unlock(&sw->dp_lock);
	return rc;
}

void hs__dp_fd_del(struct hs_port *p, uint16_t q, unsigned ev)
{
	struct hs_switch *sw = p->sw;
	pthread_mutex_lock(&sw->dp_lock);
	int fd = atomic_exchange(fd_slot(p, q, ev), -1);
	if (fd >= 0)
		epoll_ctl(sw->dp_epfd, EPOLL_CTL_DEL, fd, NULL);
	pthread_mutex_unlock(&sw->dp_lock);
}

/* Readers of a queue's fd slot (re-arm, drain, signal) hold dp_lock like
 * the writers do: a removed fd is closed by its backend as soon as
 * hs_port_set_queue_fd(-1) returns, and its number may at once belong to
 * another file, which a racing epoll_ctl, read or write would then hit
 * (a MOD re-arming another port's registration with our key, a read
 * eating another queue's signal). */
static void rearm(struct hs_switch *sw, struct hs_port *p, uint16_t q,
		  unsigned ev)
{
	struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT,
				.data.u64 = ev_key(p, q, ev)};
	pthread_mutex_lock(&sw->dp_lock);
	int fd = atomic_load(fd_slot(p, q, ev));
	/* ENOENT: the fd left the set meanwhile (port removal, new fd). */
	if (fd >= 0)
		epoll_ctl(sw->dp_epfd, EPOLL_CTL_MOD, fd, &e);
	pthread_mutex_unlock(&sw->dp_lock);
}

void hs__dp_rearm(struct hs_switch *sw, struct hs__inq *iq)
{
	rearm(sw, iq->port, iq->qid, HS_EV_KICK);
}

/* Consumes an eventfd's readiness. */
static void drain(struct hs_switch *sw, struct hs_port *p, uint16_t q, unsigned ev)
{
	uint64_t v;
	pthread_mutex_lock(&sw->dp_lock);
	int fd = atomic_load(fd_slot(p, q, ev));
	if (fd >= 0) {
		ssize_t r = read(fd, &v, sizeof(v));
		(void)r;
	}
	pthread_mutex_unlock(&sw->dp_lock);
}

bool hs__dp_signal(struct hs__inq *iq)
{
	struct hs_switch *sw = iq->port->sw;
	bool ok = false;
	uint64_t one = 1;
	pthread_mutex_lock(&sw->dp_lock);
	int fd = atomic_load_explicit(&iq->kick_fd, memory_order_relaxed);
	if (fd >= 0 && !atomic_load_explicit(&iq->kick_level, memory_order_relaxed))
		ok = write(fd, &one, sizeof(one)) == sizeof(one);
	pthread_mutex_unlock(&sw->dp_lock);
	return ok;
}

bool hs__dp_signal_posted(struct hs_port *p, uint16_t q)
{
	struct hs_switch *sw = p->sw;
	bool ok = false;
	uint64_t one = 1;
	pthread_mutex_lock(&sw->dp_lock);
	int fd = atomic_load(fd_slot(p, q, HS_EV_POSTED));
	if (fd >= 0)
		ok = write(fd, &one, sizeof(one)) == sizeof(one);
	pthread_mutex_unlock(&sw->dp_lock);
	return ok;
}

/* Resolves an event to its port in the current topology (caller online). */
static struct hs_port *ev_port(struct hs_switch *sw, uint64_t key, uint16_t *q,
			       unsigned *ev)
{
	uint32_t serial = (uint32_t)(key >> 32);
	uint16_t idx = (uint16_t)(key >> 16);
	*q = (uint8_t)(key >> 8);
	*ev = (uint8_t)key;
	struct hs__topo *t = hs__topo_get(sw);
	if (idx >= t->max_ports)
		return NULL;
	struct hs_port *p = t->port[idx];
	if (!p || p->serial != serial || *q >= p->nq)
		return NULL;
	return p;
}

/* Handles one ready fd. Returns the ingress queue now owned by the caller
 * (HS_EV_KICK) or NULL. */
static struct hs__inq *take(struct hs_switch *sw, struct hs__ctx *c,
			    uint64_t key)
{
	uint16_t q;
	unsigned ev;
	struct hs_port *p = ev_port(sw, key, &q, &ev);
	if (!p)
		return NULL;
	if (ev == HS_EV_POSTED) {
		drain(sw, p, q, HS_EV_POSTED);
		hs__posted(c, p, &p->outq[q]);
		rearm(sw, p, q, HS_EV_POSTED);
		return NULL;
	}
	struct hs__inq *iq = &p->inq[q];
	if (!atomic_load_explicit(&iq->kick_level, memory_order_relaxed))
		drain(sw, p, q, HS_EV_KICK);
	return hs__q_acquire(iq, true) ? iq : NULL;
}

unsigned hs__dp_dispatch(struct hs_switch *sw, struct hs__ctx *c, unsigned budget)
{
	struct epoll_event evs[16];
	int n = epoll_wait(sw->dp_epfd, evs, 16, 0);
	unsigned moved = 0;
	for (int i = 0; i < n; i++) {
		struct hs__inq *iq = take(sw, c, evs[i].data.u64);
		if (iq)
			moved += (unsigned)hs__q_run(c, iq, budget);
	}
	return moved;
}

/* ---- sender context -> idle worker ---------------------------------------------- */

bool hs__pool_handoff(struct hs_switch *sw, struct hs__inq *iq)
{
	if (!sw->pool || !atomic_load_explicit(&sw->workers_avail, memory_order_relaxed))
		return false;
	return hs__dp_signal(iq);
}

/* ---- workers --------------------------------------------------------------------- *
 *
 * The worker loop, step by step (worker_main):
 *   sleep         nothing owned: wait in epoll for a ready queue, own it
 *                 (its kicks suppressed: the worker will poll it);
 *   poll          one round on every owned queue; queues of ports being
 *                 paused or removed are let go;
 *   busy / idle   a round that moved frames ends any idle streak; a
 *                 streak of empty rounds makes the worker "available"
 *                 after poll_us/8 (senders hand it their queues, it
 *                 takes ready ones) and lets go after poll_us;
 *   release idle  every owned queue that is still empty is let go, its
 *                 kicks enabled (hs__q_release); one that got frames
 *                 meanwhile stays, polled;
 *   release quiet while the worker is busy, a queue with no frame for
 *                 poll_us is let go alone (worker_quiet), as the whole
 *                 set would be if the worker were idle.
 * A queue leaves a worker only through hs__q_release (worker_let_go), so
 * never with its kicks left suppressed.
 */

static void own(struct hs__worker *w, struct hs__inq *iq)
{
	if (w->n_owned == HS__WORKER_QMAX) {
		/* Full: serve it once, like a sender would, and like a sender
		 * ask receivers at once (these rounds, until the queue is
		 * empty, are not a sweep: no hs__pend_flush follows them,
		 * so those listed already are asked first) */
		hs__pend_flush(w->ctx, true);
		bool defer = w->ctx->defer_posted;
		w->ctx->defer_posted = false;
		hs__q_run(w->ctx, iq, 0);
		w->ctx->defer_posted = defer;
		return;
	}
	atomic_fetch_or(&iq->state, HS__Q_POLLED);
	hs__q_kicks(iq, false);
	w->streak[w->n_owned] = 0;
	w->quiet[w->n_owned] = 0;
	w->owned[w->n_owned++] = iq;
}

/* Drops owned queue i from the worker's list (it has left already). */
static void forget(struct hs__worker *w, unsigned i)
{
	if (w->shed == w->owned[i])
		w->shed = NULL;
	w->n_owned--;
	w->owned[i] = w->owned[w->n_owned];
	w->streak[i] = w->streak[w->n_owned];
	w->quiet[i] = w->quiet[w->n_owned];
	w->quiet_since[i] = w->quiet_since[w->n_owned];
}

/* Lets go of owned queue i. Returns true if it did; false if frames
 * arrived meanwhile: the queue stays, polled, its kicks suppressed again
 * (and no longer offered back). */
static bool worker_let_go(struct hs__worker *w, unsigned i)
{
	struct hs__inq *iq = w->owned[i];
	if (hs__q_release(iq, false)) {
		forget(w, i);
		return true;
	}
	if (w->shed == iq) {
		atomic_fetch_and(&iq->state, ~(uint32_t)HS__Q_SHED);
		w->shed = NULL;
	}
	hs__q_kicks(iq, false);
	return false;
}

/* ---- hand back: a busy worker gives a queue back to its sender ------------------ *
 *
 * Offload pays while the worker has time to spare. A worker whose rounds
 * on two or more queues all take a full burst, round after round, is
 * behind: frames pile up while their senders' own threads could switch
 * them (the Hyper-Switch policy: sender context unless a core is idle).
 * So after HS__SHED_ROUNDS such rounds in a row on two queues, it offers
 * one of them back (HS__Q_SHED), one at a time: a queue whose sender is a
 * host thread that kicks it (hs_port_kick). Its kicks are turned on; the
 * sender's next kick asks for it (hs__q_take_back) and the worker passes
 * it over at its next round on it (worker_hand_back), between two rounds,
 * so the queue's frames keep their order. Until then the worker polls it
 * as before: a sender that never kicks again loses nothing. The offer
 * ends (kicks off again) if the sender declines it (it waited too long
 * for the worker's answer) or does not ask within HS__OFFER_NS: then the
 * queue counts as not kicked by a host thread until its next
 * hs_port_kick, and another may be offered. (A host whose tx calls kick
 * only while asked, as mem's do, does not kick again while the worker
 * keeps it: such a queue is not offered again before the worker lets it
 * go. The time is long against a sender's next transmit, so only one
 * that stalls that long is treated so.) Queues whose
 * only signal is an fd (a guest's kick) have no such thread and stay.
 * Once back, the sender's kicks hand the queue to a worker again only
 * when one is available (asleep, or idle a while). Counter: handbacks. */
#ifndef HS__SHED_ROUNDS
#define HS__SHED_ROUNDS 64 /* -DHS__SHED_ROUNDS=N for experiments; at most 65535 */
#endif
#define HS__OFFER_NS 5000000u /* 5 ms */

/* Ends the offer of owned queue i: kicks off again, its streak restarts.
 * `unasked`: its sender did not ask in time; it is not taken for a host
 * thread's queue until it kicks again. */
static void worker_withdraw(struct hs__worker *w, unsigned i, bool unasked)
{
	struct hs__inq *iq = w->owned[i];
	atomic_fetch_and(&iq->state, ~(uint32_t)HS__Q_SHED);
	if (unasked)
		atomic_store_explicit(&iq->sender, false, memory_order_relaxed);
	hs__q_kicks(iq, false);
	w->streak[i] = 0;
	w->shed = NULL;
}

static bool worker_hand_back(struct hs__worker *w, unsigned i)
{
	struct hs__inq *iq = w->owned[i];
	uint32_t s = atomic_load_explicit(&iq->state, memory_order_relaxed);
	for (;;) {
		if ((s & (HS__Q_SHED | HS__Q_TAKE)) != (HS__Q_SHED | HS__Q_TAKE) ||
		    (s & (HS__Q_PAUSED | HS__Q_DEAD | HS__Q_KICKS_OFF)))
			return false;
		uint32_t ns = (s & ~(HS__Q_SHED | HS__Q_TAKE | HS__Q_POLLED | HS__Q_DISARMED |
				     HS__Q_PENDING)) |
			      HS__Q_GIVEN;
		if (atomic_compare_exchange_weak_explicit(&iq->state, &s, ns,
							  memory_order_release,
							  memory_order_relaxed))
			break;
	}
	/* as hs__q_release does: a queue taken from epoll goes back in */
	if (s & HS__Q_DISARMED)
		hs__dp_rearm(w->sw, iq);
	forget(w, i);
	hs__ctr_add(&w->ctx->handbacks, 1);
	return true;
}

/* After a pass: offers owned queue `cand` back if `busy` queues (two or
 * more) have taken full bursts for HS__SHED_ROUNDS rounds in a row. */
static void worker_shed(struct hs__worker *w, unsigned busy, unsigned cand)
{
	if (busy < 2 || cand >= w->n_owned || w->shed)
		return;
	struct hs__inq *iq = w->owned[cand];
	if (atomic_load_explicit(&iq->state, memory_order_relaxed) &
	    (HS__Q_PAUSED | HS__Q_DEAD))
		return;
	atomic_fetch_or(&iq->state, HS__Q_SHED);
	hs__q_kicks(iq, true); /* its sender kicks again; frames waiting are ours */
	w->shed = iq;
	w->shed_at = hs__mono_ns();
	w->shed_age = 0;
}

/* Owns the queues of n ready events (caller online). Returns how many. */
static unsigned own_ready(struct hs__worker *w, const struct epoll_event *evs, int n,
			  bool handoff)
{
	unsigned took = 0;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == HS__EV_STOP)
			continue;
		struct hs__inq *iq = take(w->sw, w->ctx, evs[i].data.u64);
		if (iq) {
			own(w, iq);
			took++;
			if (handoff)
				hs__ctr_add(&w->ctx->handoffs, 1);
		}
	}
	return took;
}

/* Takes queues that are ready now, without waiting. Returns how many. */
static unsigned take_ready(struct hs__worker *w)
{
	struct epoll_event evs[16];
	return own_ready(w, evs, epoll_wait(w->sw->dp_epfd, evs, 16, 0), false);
}

/* Available: asleep, or polling queues that have been empty a while. */
static void set_avail(struct hs__worker *w, bool avail)
{
	if (w->avail == avail)
		return;
	w->avail = avail;
	if (avail)
		atomic_fetch_add(&w->sw->workers_avail, 1);
	else
		atomic_fetch_sub(&w->sw->workers_avail, 1);
}

/* Step "sleep": no queue owned. Offline in RCU while asleep. */
static void worker_sleep(struct hs__worker *w)
{
	struct hs_switch *sw = w->sw;
	hs__pend_flush(w->ctx, true); /* every listed receiver asked: this
					 worker sweeps no more until woken */
	set_avail(w, true);
	atomic_fetch_add(&sw->workers_idle, 1);
	hs__ctr_add(&w->ctx->sleeps, 1);
	hs__rcu_leave();
	struct epoll_event evs[16];
	int n = epoll_wait(sw->dp_epfd, evs, 16, -1);
	hs__rcu_enter();
	atomic_fetch_sub(&sw->workers_idle, 1);
	set_avail(w, false);
	own_ready(w, evs, n, true);
	w->empty = 0;
}

/* Never let a quiet queue go (HS_SW_BUSY_POLL, HS_SW_KEEP_QUIET). */
#define HS__QUIET_NEVER UINT64_MAX

/* Step "release quiet": owned queue i found nothing for the 32nd round in
 * a row (a multiple of 32: the clock is read that seldom; with quiet_ns 0,
 * HS_SW_NO_POLL, every empty round lets go). While other queues keep the
 * worker busy it never idles, so without this every queue it ever took
 * stayed with it, polled each round: a host of many quiet guests and one
 * busy pair would have its worker poll them all between the pair's
 * bursts. One empty for quiet_ns (poll_us) is let go as an idle worker
 * lets go of all of its (its guest kicks again; a ready queue is taken at
 * the next look, within look_ns). Only while the worker is busy (its last
 * sweep moved frames): idle, worker_idle decides for the whole set.
 * Returns true if it let go (owned[i] is another queue now). */
static bool worker_quiet(struct hs__worker *w, unsigned i, uint64_t quiet_ns)
{
	if (quiet_ns && w->quiet[i] == 32) {
		/* the streak's start, busy or not: it is what the time
		 * counts from (unstamped, a later check would read the
		 * previous streak's, or another queue's) */
		w->quiet_since[i] = hs__mono_ns();
		return false;
	}
	if (!w->busy || (quiet_ns && hs__mono_ns() - w->quiet_since[i] < quiet_ns))
		return false;
	if (!worker_let_go(w, i)) {
		w->quiet[i] = 0; /* frames came meanwhile: polled again */
		return false;
	}
	hs__ctr_add(&w->ctx->quiet_releases, 1);
	return true;
}

/* Step "poll": one round on every owned queue. Returns frames moved. */
static unsigned worker_poll(struct hs__worker *w, uint64_t quiet_ns)
{
	unsigned moved = 0, busy = 0, cand = UINT32_MAX, full = w->sw->cfg.burst;
	for (unsigned i = 0; i < w->n_owned;) {
		struct hs__inq *iq = w->owned[i];
		uint32_t s = atomic_load_explicit(&iq->state, memory_order_relaxed);
		if (HS__UNLIKELY(s & (HS__Q_DEAD | HS__Q_PAUSED)) && worker_let_go(w, i))
			continue; /* owned[i] is another queue now (a paused one
				     left PENDING: resume runs it) */
		if (HS__UNLIKELY(s & HS__Q_TAKE) && worker_hand_back(w, i))
			continue;
		if (HS__UNLIKELY(iq == w->shed)) {
			if (!(s & HS__Q_SHED))
				worker_withdraw(w, i, false); /* declined */
			else if ((++w->shed_age & 15) == 0 &&
				 hs__mono_ns() - w->shed_at > HS__OFFER_NS)
				worker_withdraw(w, i, true); /* not asked for */
		}
		unsigned n = hs__round(w->ctx, iq);
		moved += n;
		if (n) {
			w->quiet[i] = 0;
		} else if (quiet_ns != HS__QUIET_NEVER &&
			   HS__UNLIKELY((++w->quiet[i] & 31) == 0 || !quiet_ns) &&
			   worker_quiet(w, i, quiet_ns)) {
			continue;
		}
		if (n < full) {
			w->streak[i] = 0;
		} else if (w->streak[i] < HS__SHED_ROUNDS) {
			w->streak[i]++;
		} else {
			busy++;
			if (atomic_load_explicit(&iq->sender, memory_order_relaxed))
				cand = i;
		}
		i++;
	}
	worker_shed(w, busy, cand);
	return moved;
}

/* Step "idle": after a round that moved nothing. An idle streak starts at
 * its 32nd empty round; the clock is read only every 32 empty rounds. A
 * worker whose queues have been empty for poll_us/8 has a free core: it
 * says so (senders then hand it their queues) and takes ready queues as
 * it keeps polling; a queue taken gets a round before the worker can let
 * go (the signal that made it ready was drained: let go unpolled, it was
 * lost). Returns true once the streak lasted poll_us (or at once without
 * polling): time to let go. */
static bool worker_idle(struct hs__worker *w, uint64_t poll_ns)
{
	if (!poll_ns)
		return true;
	if (++w->empty & 31) {
		hs__cpu_relax();
		return false;
	}
	uint64_t now = hs__mono_ns();
	if (w->empty == 32)
		w->idle_since = now;
	if (now - w->idle_since >= poll_ns / 8) {
		set_avail(w, true);
		if (take_ready(w))
			return false; /* polled before the next release check */
	}
	return now - w->idle_since >= poll_ns;
}

/* Whether a worker that polls queues looks for newly ready ones now
 * (every 16 rounds, when no worker is available). The look is a system
 * call (about a microsecond in a VM) that mostly finds nothing, and
 * rounds that move a few frames each take well under a microsecond:
 * counted in rounds alone, the look cost a closed loop of two guests 9%
 * of the worker's time. So after a round that moved frames it also waits
 * for poll_us/8 since the last look (the time after which an idle worker
 * would offer itself and take a ready queue), at most HS__LOOK_MAX_NS: a
 * queue that becomes ready while every worker is busy waits no longer
 * than that plus 16 rounds. After an empty round the look takes no time
 * from frames and is not held back: a worker not yet available (the
 * first poll_us/8 of an idle streak), or one that never is
 * (HS_SW_BUSY_POLL), takes a ready queue or a receiver's "buffers posted"
 * as promptly as before. Without polling (poll_ns 0, so look_ns 0) a
 * worker sleeps as soon as a round moves nothing: every 16 rounds stays. */
#define HS__LOOK_MAX_NS 25000u
static bool look_due(struct hs__worker *w, unsigned moved)
{
	if (!w->look_ns || !moved)
		return true;
	uint64_t now = hs__mono_ns();
	if (now - w->looked < w->look_ns)
		return false;
	w->looked = now;
	return true;
}

/* Step "release idle": lets go of every queue still empty. */
static void worker_release_idle(struct hs__worker *w)
{
	for (unsigned i = 0; i < w->n_owned;)
		if (!worker_let_go(w, i))
			i++;
	w->empty = 0;
}

static void *worker_main(void *arg)
{
	struct hs__worker *w = arg;
	struct hs_switch *sw = w->sw;
	struct hs__pool *pool = sw->pool;
	uint32_t flags = sw->cfg.flags;
	uint64_t poll_ns = (flags & HS_SW_NO_POLL) ? 0 : sw->cfg.poll_us * 1000ull;
	w->look_ns = poll_ns / 8 < HS__LOOK_MAX_NS ? poll_ns / 8 : HS__LOOK_MAX_NS;
	uint64_t quiet_ns = (flags & (HS_SW_BUSY_POLL | HS_SW_KEEP_QUIET)) ? HS__QUIET_NEVER
									     : poll_ns;

	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	hs__cur_ctx = w->ctx;
	w->ctx->defer_posted = !(flags & HS_SW_POSTED_EACH);
	w->ctx->pend_ns = w->look_ns;
	hs__rcu_register();
	hs__rcu_enter();
	while (!atomic_load_explicit(&pool->stop, memory_order_relaxed)) {
		if (!w->n_owned) {
			worker_sleep(w);
			continue;
		}
		unsigned moved = worker_poll(w, quiet_ns);
		w->busy = moved != 0;
		/* receivers left with a backlog that it stopped delivering
		 * to are asked for "buffers posted" (hs__pend_flush) */
		if (w->ctx->n_pend)
			hs__pend_flush(w->ctx, false);
		hs__rcu_quiescent();
		/* Nobody available to take newly ready queues: take them, and
		 * poll them before anything can be let go idle. */
		if ((++w->iter & 15) == 0 && !w->avail &&
		    !atomic_load_explicit(&sw->workers_avail, memory_order_relaxed) &&
		    look_due(w, moved) && take_ready(w))
			continue;
		if (moved) {
			w->empty = 0;
			set_avail(w, false);
			continue;
		}
		if (flags & HS_SW_BUSY_POLL) {
			hs__cpu_relax();
			continue;
		}
		if (worker_idle(w, poll_ns))
			worker_release_idle(w);
	}
	set_avail(w, false);
	hs__pend_flush(w->ctx, true);
	while (w->n_owned) {
		hs__q_release(w->owned[0], true);
		w->owned[0] = w->owned[--w->n_owned];
	}
	hs__rcu_leave();
	hs__rcu_unregister();
	return NULL;
}

int hs__pool_start(struct hs_switch *sw)
{
	unsigned n = sw->cfg.n_workers;
	if (!n)
		return 0;
	struct hs__pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pool->w = calloc(n, sizeof(*pool->w));
	pool->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!pool->w || pool->stop_fd < 0) {
		if (pool->stop_fd >= 0)
			close(pool->stop_fd);
		free(pool->w);
		free(pool);
		return -ENOMEM;
	}
	/* Level-triggered, never drained once signalled: wakes every worker. */
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = HS__EV_STOP};
	epoll_ctl(sw->dp_epfd, EPOLL_CTL_ADD, pool->stop_fd, &e);
	sw->pool = pool;
	for (unsigned i = 0; i < n; i++) {
		struct hs__worker *w = &pool->w[i];
		w->sw = sw;
		w->id = i;
		w->cpu = sw->cfg.worker_cpus ? sw->cfg.worker_cpus[i] : -1;
		w->ctx = hs__ctx_new(sw, i);
		if (!w->ctx || pthread_create(&w->tid, NULL, worker_main, w)) {
			hs__ctx_free(w->ctx);
			w->ctx = NULL;
			pool->n = i;
			hs__pool_stop(sw);
			return -ENOMEM;
		}
		pool->n = i + 1;
	}
	return 0;
}

void hs__pool_stop(struct hs_switch *sw)
{
	struct hs__pool *pool = sw->pool;
	if (!pool)
		return;
	atomic_store(&pool->stop, true);
	uint64_t one = 1;
	ssize_t r = write(pool->stop_fd, &one, sizeof(one));
	(void)r;
	for (unsigned i = 0; i < pool->n; i++) {
		struct hs__worker *w = &pool->w[i];
		pthread_join(w->tid, NULL);
		hs__ctr_add(&sw->rounds_worker, hs__ctr_get(&w->ctx->rounds));
		hs__ctr_add(&sw->handoffs, hs__ctr_get(&w->ctx->handoffs));
		hs__ctr_add(&sw->handbacks, hs__ctr_get(&w->ctx->handbacks));
		hs__ctr_add(&sw->worker_sleeps, hs__ctr_get(&w->ctx->sleeps));
		hs__ctr_add(&sw->quiet_releases, hs__ctr_get(&w->ctx->quiet_releases));
		hs__ctx_free(w->ctx);
	}
	epoll_ctl(sw->dp_epfd, EPOLL_CTL_DEL, pool->stop_fd, NULL);
	close(pool->stop_fd);
	free(pool->w);
	free(pool);
	sw->pool = NULL;
}

/* Live totals of the workers (for hs_switch_get_stats). */
void hs__pool_stats(struct hs_switch *sw, uint64_t *rounds, uint64_t *handoffs,
		    uint64_t *handbacks, uint64_t *sleeps, uint64_t *quiet)
{
	struct hs__pool *pool = sw->pool;
	*rounds = *handoffs = *handbacks = *sleeps = *quiet = 0;
	if (!pool)
		return;
	for (unsigned i = 0; i < pool->n; i++) {
		*rounds += hs__ctr_get(&pool->w[i].ctx->rounds);
		*handoffs += hs__ctr_get(&pool->w[i].ctx->handoffs);
		*handbacks += hs__ctr_get(&pool->w[i].ctx->handbacks);
		*sleeps += hs__ctr_get(&pool->w[i].ctx->sleeps);
		*quiet += hs__ctr_get(&pool->w[i].ctx->quiet_releases);
	}
}

int hs_switch_worker_stats(hs_switch_t *sw, unsigned worker, struct hs_worker_stats *st)
{
	if (!sw || !st || st->size < HS_WORKER_STATS_SIZE_V1)
		return -EINVAL;
	struct hs__pool *pool = sw->pool;
	if (!pool || worker >= pool->n)
		return -ENOENT;
	const struct hs__worker *w = &pool->w[worker];
	/* fill what both sides know: a caller built against an older header
	 * passes a smaller size and gets the fields it has */
	struct hs_worker_stats v = {.size = st->size < sizeof(v) ? st->size : (uint32_t)sizeof(v),
				    .cpu = w->cpu,
				    .rounds = hs__ctr_get(&w->ctx->rounds),
				    .handoffs = hs__ctr_get(&w->ctx->handoffs),
				    .sleeps = hs__ctr_get(&w->ctx->sleeps),
				    .handbacks = hs__ctr_get(&w->ctx->handbacks),
				    .quiet_releases = hs__ctr_get(&w->ctx->quiet_releases)};
	memcpy(st, &v, v.size);
	return 0;
}
