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
 *
 * Adaptive polling: a worker that took a queue suppresses its kicks
 * (backend set_notify) and busy-polls it together with its other queues.
 * After poll_us microseconds without a frame (a time, not a round count:
 * an empty round costs tens of nanoseconds, while senders sharing a core
 * come back every few microseconds or more) it re-enables kicks, checks
 * once more, lets go of every queue that is still empty (which re-arms
 * its fd) and sleeps in epoll_wait. An idle switch uses no CPU; a busy
 * one never sleeps. Busy workers also take newly ready queues every 16
 * rounds.
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

static void rearm(struct hs_switch *sw, struct hs_port *p, uint16_t q,
		  unsigned ev)
{
	int fd = atomic_load(fd_slot(p, q, ev));
	if (fd < 0)
		return;
	struct epoll_event e = {.events = EPOLLIN | EPOLLONESHOT,
				.data.u64 = ev_key(p, q, ev)};
	/* ENOENT: the fd left the set meanwhile (port removal, new fd). */
	epoll_ctl(sw->dp_epfd, EPOLL_CTL_MOD, fd, &e);
}

void hs__dp_rearm(struct hs_switch *sw, struct hs__inq *iq)
{
	rearm(sw, iq->port, iq->qid, HS_EV_KICK);
}

static void drain_fd(int fd)
{
	uint64_t v;
	if (fd >= 0) {
		ssize_t r = read(fd, &v, sizeof(v));
		(void)r;
	}
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
		drain_fd(atomic_load(&p->outq[q].posted_fd));
		hs__posted(c, p, &p->outq[q]);
		rearm(sw, p, q, HS_EV_POSTED);
		return NULL;
	}
	struct hs__inq *iq = &p->inq[q];
	if (!iq->kick_level)
		drain_fd(atomic_load(&iq->kick_fd));
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
	int fd;
	if (!sw->pool || !atomic_load_explicit(&sw->workers_avail, memory_order_relaxed))
		return false;
	fd = atomic_load_explicit(&iq->kick_fd, memory_order_relaxed);
	if (fd < 0 || iq->kick_level)
		return false;
	uint64_t one = 1;
	return write(fd, &one, sizeof(one)) == sizeof(one);
}

/* ---- workers --------------------------------------------------------------------- */

static void own(struct hs__worker *w, struct hs__inq *iq)
{
	struct hs_port *p = iq->port;
	if (w->n_owned == HS__WORKER_QMAX) {
		/* Full: serve it once, like a sender would. */
		hs__q_run(w->ctx, iq, 0);
		return;
	}
	atomic_fetch_or(&iq->state, HS__Q_POLLED);
	if (p->ops->set_notify)
		p->ops->set_notify(p->priv, iq->qid, HS_EV_KICK, false);
	w->owned[w->n_owned++] = iq;
}

static void disown(struct hs__worker *w, unsigned i)
{
	w->owned[i] = w->owned[--w->n_owned];
}

/* Lets go of queue i if it is idle; returns true if it did. */
static bool try_release(struct hs__worker *w, unsigned i)
{
	struct hs__inq *iq = w->owned[i];
	struct hs_port *p = iq->port;
	uint32_t st = atomic_load(&iq->state);
	if (!(st & (HS__Q_DEAD | HS__Q_PAUSED)) && p->ops->set_notify &&
	    p->ops->set_notify(p->priv, iq->qid, HS_EV_KICK, true)) {
		/* Frames arrived while we were deciding: keep polling. */
		p->ops->set_notify(p->priv, iq->qid, HS_EV_KICK, false);
		return false;
	}
	if (!hs__q_release(iq)) {
		if (p->ops->set_notify)
			p->ops->set_notify(p->priv, iq->qid, HS_EV_KICK, false);
		return false;
	}
	disown(w, i);
	return true;
}

static void take_ready(struct hs__worker *w, int timeout)
{
	struct hs_switch *sw = w->sw;
	struct epoll_event evs[16];
	int n = epoll_wait(sw->dp_epfd, evs, 16, timeout);
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == HS__EV_STOP)
			continue;
		struct hs__inq *iq = take(sw, w->ctx, evs[i].data.u64);
		if (iq)
			own(w, iq);
	}
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
	struct hs__worker *w = arg;
	struct hs_switch *sw = w->sw;
	struct hs__pool *pool = sw->pool;
	uint32_t flags = sw->cfg.flags;
	uint64_t poll_ns = (flags & HS_SW_NO_POLL) ? 0 : sw->cfg.poll_us * 1000ull;
	uint64_t idle_since = 0;
	unsigned empty = 0, iter = 0;

	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	hs__cur_ctx = w->ctx;
	hs__rcu_register();
	hs__rcu_enter();
	bool avail = false; /* counted in workers_avail while idle-polling */
	while (!atomic_load_explicit(&pool->stop, memory_order_relaxed)) {
		if (!w->n_owned) {
			if (avail)
				avail = false;
			else
				atomic_fetch_add(&sw->workers_avail, 1);
			atomic_fetch_add(&sw->workers_idle, 1);
			hs__ctr_add(&w->ctx->sleeps, 1);
			hs__rcu_leave();
			struct epoll_event evs[16];
			int n = epoll_wait(sw->dp_epfd, evs, 16, -1);
			hs__rcu_enter();
			atomic_fetch_sub(&sw->workers_idle, 1);
			atomic_fetch_sub(&sw->workers_avail, 1);
			for (int i = 0; i < n; i++) {
				if (evs[i].data.u64 == HS__EV_STOP)
					continue;
				struct hs__inq *iq = take(sw, w->ctx, evs[i].data.u64);
				if (iq) {
					own(w, iq);
					hs__ctr_add(&w->ctx->handoffs, 1);
				}
			}
			empty = 0;
			continue;
		}
		unsigned moved = 0;
		for (unsigned i = 0; i < w->n_owned;) {
			struct hs__inq *iq = w->owned[i];
			if (atomic_load_explicit(&iq->state, memory_order_relaxed) &
			    (HS__Q_DEAD | HS__Q_PAUSED)) {
				hs__q_release(iq);
				disown(w, i);
				continue;
			}
			moved += hs__round(w->ctx, iq);
			i++;
		}
		hs__rcu_quiescent();
		/* Nobody available to take newly ready queues: take them. */
		if ((++iter & 15) == 0 && !avail &&
		    !atomic_load_explicit(&sw->workers_avail, memory_order_relaxed))
			take_ready(w, 0);
		if (moved) {
			empty = 0;
			if (avail) {
				avail = false;
				atomic_fetch_sub(&sw->workers_avail, 1);
			}
			continue;
		}
		if (flags & HS_SW_BUSY_POLL) {
			__builtin_ia32_pause();
			continue;
		}
		/* An idle streak starts at its 32nd empty round; the clock is
		 * read only every 32 empty rounds. A worker whose queues have
		 * been empty for poll_us/8 has a free core: it says so (senders
		 * then hand their queues to it) and takes ready queues while it
		 * keeps polling; after poll_us it lets go and sleeps. */
		if (poll_ns) {
			if (++empty & 31) {
				__builtin_ia32_pause();
				continue;
			}
			uint64_t now = mono_ns();
			if (empty == 32)
				idle_since = now;
			if (now - idle_since >= poll_ns / 8) {
				if (!avail) {
					avail = true;
					atomic_fetch_add(&sw->workers_avail, 1);
				}
				take_ready(w, 0);
			}
			if (now - idle_since < poll_ns)
				continue;
		}
		for (unsigned i = 0; i < w->n_owned;)
			if (!try_release(w, i))
				i++;
		empty = 0;
	}
	if (avail)
		atomic_fetch_sub(&sw->workers_avail, 1);
	while (w->n_owned) {
		hs__q_release(w->owned[0]);
		disown(w, 0);
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
		hs__ctr_add(&sw->worker_sleeps, hs__ctr_get(&w->ctx->sleeps));
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
		    uint64_t *sleeps)
{
	struct hs__pool *pool = sw->pool;
	*rounds = *handoffs = *sleeps = 0;
	if (!pool)
		return;
	for (unsigned i = 0; i < pool->n; i++) {
		*rounds += hs__ctr_get(&pool->w[i].ctx->rounds);
		*handoffs += hs__ctr_get(&pool->w[i].ctx->handoffs);
		*sleeps += hs__ctr_get(&pool->w[i].ctx->sleeps);
	}
}
