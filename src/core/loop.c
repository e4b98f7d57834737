/*
 * loop.c - the libuv adapter: the only file that includes uv.h.
 *
 * The core and the backends ask for fd watches and timers (hs_watch_*,
 * hs_timer_*) as logical objects; this file maps them onto whichever libuv
 * loop the switch is attached to: its own (hs_run, or hs_switch_fd +
 * hs_switch_dispatch) or the host's (hs_switch_attach). Objects outlive
 * attachments: detaching closes their libuv handles, attaching makes new
 * ones.
 *
 * libuv handles live in small blocks of their own (struct uvw, struct glue)
 * that only their close callbacks free, so a detached switch can be
 * destroyed before a host loop has run those callbacks.
 *
 * Threads: handles are touched only on the loop's thread. Other threads
 * change the logical lists under `lock` and wake the loop through an
 * async handle; the loop thread reconciles handles with the lists.
 * Callbacks run under `cb_lock` (recursive), which hs_watch_del and
 * hs_timer_del take off the loop thread, so no callback runs after they
 * return.
 *
 * Also attached to the loop: MAC aging (every second) and, when the switch
 * has no workers, the data-plane epoll set (offload.c), so queues that
 * signal through fds are served by the loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "internal.h"

struct uvw {          /* libuv side of a watch or timer */
	union {
		uv_poll_t poll;
		uv_timer_t timer;
	} h;
	void *obj;        /* struct hs_watch / hs_timer, NULL once detached */
};

struct hs_watch {
	struct hs__loop *l;
	int fd;
	int own_fd;             /* a dup of fd: what libuv polls. The caller may
				   close fd once hs_watch_del returns, while the
				   loop thread has yet to drop its poll handle;
				   the dup keeps that number from being reused
				   under libuv's epoll_ctl calls */
	unsigned events;
	hs_watch_cb cb;
	void *arg;
	struct uvw *u;
	_Atomic bool dead;      /* written under cb_lock, read under lock too */
	bool dirty;
	struct hs_watch *next;
};

struct hs_timer {
	struct hs__loop *l;
	uint64_t after, repeat;
	hs_timer_cb cb;
	void *arg;
	struct uvw *u;
	_Atomic bool dead;      /* written under cb_lock, read under lock too */
	bool dirty;             /* under lock: after/repeat changed */
	struct hs_timer *next;
};

struct glue {         /* the adapter's own handles for one attachment */
	uv_async_t async;
	uv_timer_t aging;
	uv_poll_t dp;
	struct hs__loop *l; /* NULL once detached */
	int open;
	bool dp_on;
};

struct hs__loop {
	struct hs_switch *sw;
	pthread_mutex_t lock;    /* lists, attachment */
	pthread_mutex_t cb_lock; /* held while a callback runs; recursive */
	struct hs_watch *watches;
	struct hs_timer *timers;
	uv_loop_t *loop;         /* attached loop, or NULL */
	uv_loop_t own;
	bool own_inited, own_attached, fd_mode;
	pthread_t tid;
	struct glue *g;
	_Atomic bool stop_req, running;
	struct hs__ctx *ctx;     /* data-plane scratch of the loop thread */
};

static bool on_loop(const struct hs__loop *l)
{
	return l->loop && pthread_equal(l->tid, pthread_self());
}

static void free_cb(uv_handle_t *h)
{
	free(h);
}

/* ---- reconciling handles with the logical lists (loop thread) ------------ */

static unsigned to_uv(unsigned ev)
{
	return ((ev & HS_WATCH_READ) ? UV_READABLE : 0) |
	       ((ev & HS_WATCH_WRITE) ? UV_WRITABLE : 0) | UV_DISCONNECT;
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
	struct uvw *u = (struct uvw *)h;
	struct hs_watch *w = u->obj;
	if (!w)
		return;
	struct hs__loop *l = w->l;
	unsigned ev = ((events & UV_READABLE) ? HS_WATCH_READ : 0) |
		      ((events & UV_WRITABLE) ? HS_WATCH_WRITE : 0);
	if (status < 0 || (events & UV_DISCONNECT))
		ev |= HS_WATCH_ERROR;
	pthread_mutex_lock(&l->cb_lock);
	if (!w->dead)
		w->cb(w, w->fd, ev, w->arg);
	pthread_mutex_unlock(&l->cb_lock);
}

static void timer_cb(uv_timer_t *h)
{
	struct uvw *u = (struct uvw *)h;
	struct hs_timer *t = u->obj;
	if (!t)
		return;
	struct hs__loop *l = t->l;
	pthread_mutex_lock(&l->cb_lock);
	if (!t->dead)
		t->cb(t, t->arg);
	pthread_mutex_unlock(&l->cb_lock);
}

static void uvw_close(struct uvw *u)
{
	u->obj = NULL;
	uv_close((uv_handle_t *)&u->h, free_cb);
}

/* lock held, loop thread */
static void reconcile(struct hs__loop *l)
{
	for (struct hs_watch **pp = &l->watches; *pp;) {
		struct hs_watch *w = *pp;
		if (w->dead) {
			if (w->u)
				uvw_close(w->u); /* out of epoll now */
			*pp = w->next;
			close(w->own_fd);
			free(w);
			continue;
		}
		if (!w->u && l->loop) {
			struct uvw *u = calloc(1, sizeof(*u));
			if (u && !uv_poll_init(l->loop, &u->h.poll, w->own_fd)) {
				u->obj = w;
				w->u = u;
				w->dirty = true;
			} else {
				free(u);
				hs__log(l->sw, HS_LOG_ERROR, "cannot watch fd %d", w->fd);
			}
		}
		if (w->u && w->dirty) {
			uv_poll_start(&w->u->h.poll, (int)to_uv(w->events), poll_cb);
			w->dirty = false;
		}
		pp = &w->next;
	}
	for (struct hs_timer **pp = &l->timers; *pp;) {
		struct hs_timer *t = *pp;
		if (t->dead) {
			if (t->u)
				uvw_close(t->u);
			*pp = t->next;
			free(t);
			continue;
		}
		if (!t->u && l->loop) {
			struct uvw *u = calloc(1, sizeof(*u));
			if (u) {
				uv_timer_init(l->loop, &u->h.timer);
				u->obj = t;
				t->u = u;
				t->dirty = true;
			}
		}
		if (t->u && t->dirty) { /* (re)starts it: also from its own callback */
			uv_timer_start(&t->u->h.timer, timer_cb, t->after, t->repeat);
			t->dirty = false;
		}
		pp = &t->next;
	}
}

/* Makes the loop thread reconcile soon (or now, on it). */
static void poke(struct hs__loop *l)
{
	pthread_mutex_lock(&l->lock);
	if (on_loop(l))
		reconcile(l);
	else if (l->g)
		uv_async_send(&l->g->async);
	pthread_mutex_unlock(&l->lock);
}

/* ---- glue: async (reconcile, stop), aging, data plane --------------------- */

static void glue_close_cb(uv_handle_t *h)
{
	struct glue *g = h->data;
	if (--g->open == 0)
		free(g);
}

static void async_cb(uv_async_t *h)
{
	struct glue *g = h->data;
	struct hs__loop *l = g->l;
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	reconcile(l);
	pthread_mutex_unlock(&l->lock);
	if (atomic_load(&l->stop_req) && l->own_attached)
		uv_stop(l->loop);
}

static void aging_cb(uv_timer_t *h)
{
	struct glue *g = h->data;
	if (g->l && g->l->sw->cfg.fdb_aging_s != HS_FDB_AGING_NEVER)
		hs_fdb_age(g->l->sw);
}

static void dp_cb(uv_poll_t *h, int status, int events)
{
	struct glue *g = h->data;
	(void)status;
	(void)events;
	if (!g->l)
		return;
	struct hs__loop *l = g->l;
	struct hs__ctx *prev = hs__cur_ctx;
	hs__cur_ctx = l->ctx;
	hs__rcu_enter();
	/* A budget keeps the control plane responsive under load: leftover
	 * work re-signals its fd and comes back on the next iteration. */
	hs__dp_dispatch(l->sw, l->ctx, 64 * l->sw->cfg.burst);
	hs__rcu_leave();
	hs__cur_ctx = prev;
}

/* lock held */
static int attach_locked(struct hs__loop *l, uv_loop_t *loop, bool own)
{
	struct glue *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->l = l;
	int rc = uv_async_init(loop, &g->async, async_cb);
	if (rc) {
		free(g);
		return rc;
	}
	g->async.data = g;
	g->open++;
	uv_timer_init(loop, &g->aging);
	g->aging.data = g;
	g->open++;
	uv_timer_start(&g->aging, aging_cb, 1000, 1000);
	if (!l->sw->pool) {
		if (!uv_poll_init(loop, &g->dp, l->sw->dp_epfd)) {
			g->dp.data = g;
			g->open++;
			g->dp_on = true;
			uv_poll_start(&g->dp, UV_READABLE, dp_cb);
		}
	}
	l->g = g;
	l->loop = loop;
	l->own_attached = own;
	l->tid = pthread_self();
	reconcile(l);
	return 0;
}

/* lock held, loop thread */
static void detach_locked(struct hs__loop *l)
{
	for (struct hs_watch *w = l->watches; w; w = w->next)
		if (w->u) {
			uvw_close(w->u);
			w->u = NULL;
		}
	for (struct hs_timer *t = l->timers; t; t = t->next)
		if (t->u) {
			uvw_close(t->u);
			t->u = NULL;
		}
	struct glue *g = l->g;
	if (g) {
		g->l = NULL;
		uv_close((uv_handle_t *)&g->async, glue_close_cb);
		uv_close((uv_handle_t *)&g->aging, glue_close_cb);
		if (g->dp_on)
			uv_close((uv_handle_t *)&g->dp, glue_close_cb);
	}
	l->g = NULL;
	l->loop = NULL;
	l->own_attached = false;
}

/* Detaches from the own loop and runs it until every handle is closed. */
static void detach_own(struct hs__loop *l)
{
	pthread_mutex_lock(&l->lock);
	detach_locked(l);
	pthread_mutex_unlock(&l->lock);
	while (uv_loop_alive(&l->own))
		uv_run(&l->own, UV_RUN_NOWAIT);
}

int hs__loop_init(struct hs_switch *sw)
{
	struct hs__loop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->sw = sw;
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&l->cb_lock, &a);
	pthread_mutexattr_destroy(&a);
	pthread_mutex_init(&l->lock, NULL);
	l->ctx = hs__ctx_new(sw, sw->cfg.n_workers);
	sw->loop = l;
	return l->ctx ? 0 : -ENOMEM;
}

void hs__loop_fini(struct hs_switch *sw)
{
	struct hs__loop *l = sw->loop;
	if (!l)
		return;
	if (l->loop) {
		if (l->own_attached) {
			detach_own(l);
		} else {
			pthread_mutex_lock(&l->lock);
			detach_locked(l);
			pthread_mutex_unlock(&l->lock);
		}
	}
	if (l->own_inited) {
		while (uv_loop_alive(&l->own))
			uv_run(&l->own, UV_RUN_NOWAIT);
		uv_loop_close(&l->own);
	}
	while (l->watches) {
		struct hs_watch *w = l->watches;
		l->watches = w->next;
		close(w->own_fd);
		free(w);
	}
	while (l->timers) {
		struct hs_timer *t = l->timers;
		l->timers = t->next;
		free(t);
	}
	hs__ctx_free(l->ctx);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->cb_lock);
	free(l);
	sw->loop = NULL;
}

uint64_t hs__loop_rounds(struct hs_switch *sw)
{
	return sw->loop && sw->loop->ctx ? hs__ctr_get(&sw->loop->ctx->rounds) : 0;
}

/* ---- public: running and attaching ----------------------------------------- */

static int own_loop(struct hs__loop *l)
{
	if (!l->own_inited) {
		int rc = uv_loop_init(&l->own);
		if (rc)
			return rc;
		l->own_inited = true;
	}
	return 0;
}

int hs_run(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	struct hs__loop *l = sw->loop;
	pthread_mutex_lock(&l->lock);
	if ((l->loop && !l->own_attached) || atomic_load(&l->running)) {
		pthread_mutex_unlock(&l->lock);
		return -EBUSY;
	}
	int rc = own_loop(l);
	if (!rc && !l->loop)
		rc = attach_locked(l, &l->own, true);
	if (rc) {
		pthread_mutex_unlock(&l->lock);
		return rc;
	}
	l->tid = pthread_self();
	atomic_store(&l->running, true);
	pthread_mutex_unlock(&l->lock);
	hs__rcu_register();
	while (!atomic_load(&l->stop_req))
		uv_run(&l->own, UV_RUN_DEFAULT);
	atomic_store(&l->stop_req, false);
	if (!l->fd_mode)
		detach_own(l);
	atomic_store(&l->running, false);
	return 0;
}

int hs_stop(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	struct hs__loop *l = sw->loop;
	atomic_store(&l->stop_req, true);
	pthread_mutex_lock(&l->lock);
	if (l->g)
		uv_async_send(&l->g->async);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int hs_switch_attach(hs_switch_t *sw, struct uv_loop_s *loop)
{
	if (!sw || !loop)
		return -EINVAL;
	struct hs__loop *l = sw->loop;
	pthread_mutex_lock(&l->lock);
	int rc = (l->loop || atomic_load(&l->running)) ? -EBUSY
						      : attach_locked(l, loop, false);
	pthread_mutex_unlock(&l->lock);
	if (!rc)
		hs__rcu_register();
	return rc;
}

int hs_switch_detach(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	struct hs__loop *l = sw->loop;
	pthread_mutex_lock(&l->lock);
	int rc = 0;
	if (!l->loop || l->own_attached)
		rc = -ENOTCONN;
	else
		detach_locked(l);
	pthread_mutex_unlock(&l->lock);
	return rc;
}

/* hs_switch_fd mode: the own loop stays attached; the host polls its fd. */
static int fd_mode(struct hs__loop *l)
{
	int rc = 0;
	pthread_mutex_lock(&l->lock);
	if (l->loop && !l->own_attached)
		rc = -EBUSY;
	else if (!l->loop) {
		rc = own_loop(l);
		if (!rc)
			rc = attach_locked(l, &l->own, true);
	}
	if (!rc) {
		l->fd_mode = true;
		l->tid = pthread_self();
	}
	pthread_mutex_unlock(&l->lock);
	if (!rc)
		hs__rcu_register();
	return rc;
}

int hs_switch_fd(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	int rc = fd_mode(sw->loop);
	return rc ? rc : uv_backend_fd(&sw->loop->own);
}

int hs_switch_timeout_ms(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	int rc = fd_mode(sw->loop);
	return rc ? rc : uv_backend_timeout(&sw->loop->own);
}

int hs_switch_dispatch(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	int rc = fd_mode(sw->loop);
	if (rc)
		return rc;
	uv_run(&sw->loop->own, UV_RUN_NOWAIT);
	return 0;
}

/* ---- public: watches and timers --------------------------------------------------- */

int hs_watch_add(hs_switch_t *sw, int fd, unsigned events, hs_watch_cb cb,
		 void *arg, hs_watch_t **out)
{
	if (!sw || fd < 0 || !cb || !out || !events ||
	    (events & ~(HS_WATCH_READ | HS_WATCH_WRITE)))
		return -EINVAL;
	struct hs__loop *l = sw->loop;
	struct hs_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct hs_watch){.l = l, .fd = fd, .events = events, .cb = cb,
			       .arg = arg, .own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)};
	if (w->own_fd < 0) {
		int rc = -errno;
		free(w);
		return rc;
	}
	*out = w; /* before the loop can see it: cb may read it */
	pthread_mutex_lock(&l->lock);
	w->next = l->watches;
	l->watches = w;
	pthread_mutex_unlock(&l->lock);
	poke(l);
	return 0;
}

int hs_watch_modify(hs_watch_t *w, unsigned events)
{
	if (!w || !events || (events & ~(HS_WATCH_READ | HS_WATCH_WRITE)))
		return -EINVAL;
	struct hs__loop *l = w->l;
	pthread_mutex_lock(&l->lock);
	w->events = events;
	w->dirty = true;
	pthread_mutex_unlock(&l->lock);
	poke(l);
	return 0;
}

/* Marks a watch or timer dead: its callback cannot start once this
 * returns (cb_lock), and its memory goes at the next reconcile (now, when
 * the switch is attached to no loop). */
static void retire(struct hs__loop *l, _Atomic bool *dead)
{
	pthread_mutex_lock(&l->cb_lock);
	atomic_store(dead, true);
	pthread_mutex_unlock(&l->cb_lock);
	poke(l);
	pthread_mutex_lock(&l->lock);
	if (!l->loop)
		reconcile(l);
	pthread_mutex_unlock(&l->lock);
}

void hs_watch_del(hs_watch_t *w)
{
	if (w)
		retire(w->l, &w->dead);
}

int hs_timer_add(hs_switch_t *sw, uint64_t after_ms, uint64_t repeat_ms,
		 hs_timer_cb cb, void *arg, hs_timer_t **out)
{
	if (!sw || !cb || !out)
		return -EINVAL;
	struct hs__loop *l = sw->loop;
	struct hs_timer *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	*t = (struct hs_timer){.l = l, .after = after_ms, .repeat = repeat_ms,
			       .cb = cb, .arg = arg};
	*out = t; /* before the loop can see it: cb may read it */
	pthread_mutex_lock(&l->lock);
	t->next = l->timers;
	l->timers = t;
	pthread_mutex_unlock(&l->lock);
	poke(l);
	return 0;
}

int hs_timer_modify(hs_timer_t *t, uint64_t after_ms, uint64_t repeat_ms)
{
	if (!t)
		return -EINVAL;
	struct hs__loop *l = t->l;
	pthread_mutex_lock(&l->lock);
	t->after = after_ms;
	t->repeat = repeat_ms;
	t->dirty = true;
	pthread_mutex_unlock(&l->lock);
	poke(l);
	return 0;
}

void hs_timer_del(hs_timer_t *t)
{
	if (t)
		retire(t->l, &t->dead);
}
