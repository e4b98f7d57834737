/*
 * switch.c - the switch object: configuration defaults, creation and
 * teardown in dependency order, and the summed counters.
 *
 * Threads: create/destroy in any host thread (destroy not concurrently
 * with other calls on the switch); stats from any thread.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#define DEF_MAX_PORTS 1024
#define DEF_BURST 32
#define DEF_FDB_CAPACITY 8192
#define DEF_AGING_S 300
#define DEF_BACKLOG_FRAMES 256
#define DEF_BACKLOG_BYTES (512u * 1024)
#define DEF_POLL_US 200
#define MAX_WORKERS 256
#define MAX_FDB_CAPACITY (1u << 24)

static int check_config(const struct hs_switch_config *c)
{
	const uint32_t flags = HS_SW_DOUBLE_COPY | HS_SW_NOTIFY_EACH |
			       HS_SW_NO_BACKLOG | HS_SW_NO_OFFLOAD | HS_SW_NO_POLL |
			       HS_SW_BUSY_POLL | HS_SW_KEEP_QUIET | HS_SW_POSTED_EACH;
	if (c->max_ports > HS__MAX_PORTS || c->burst > HS__BURST_MAX ||
	    c->n_workers > MAX_WORKERS || c->fdb_capacity > MAX_FDB_CAPACITY ||
	    (c->flags & ~flags) ||
	    ((c->flags & HS_SW_NO_POLL) && (c->flags & HS_SW_BUSY_POLL)) ||
	    (unsigned)c->log_level > HS_LOG_DEBUG)
		return -EINVAL;
	if (c->backlog_frames > (1u << 20) || c->backlog_bytes > (1u << 30) ||
	    c->poll_us > 10000000)
		return -EINVAL;
	if (c->name && strlen(c->name) >= sizeof(((struct hs_switch *)0)->name))
		return -EINVAL;
	if (c->worker_cpus)
		for (unsigned i = 0; i < c->n_workers; i++)
			if (c->worker_cpus[i] < 0 || c->worker_cpus[i] >= CPU_SETSIZE)
				return -EINVAL;
	return 0;
}

static void apply_defaults(struct hs_switch_config *c)
{
	if (!c->max_ports)
		c->max_ports = DEF_MAX_PORTS;
	if (!c->burst)
		c->burst = DEF_BURST;
	if (!c->fdb_capacity)
		c->fdb_capacity = DEF_FDB_CAPACITY;
	if (!c->fdb_aging_s)
		c->fdb_aging_s = DEF_AGING_S;
	if (!c->backlog_frames)
		c->backlog_frames = DEF_BACKLOG_FRAMES;
	if (!c->backlog_bytes)
		c->backlog_bytes = DEF_BACKLOG_BYTES;
	if (!c->poll_us)
		c->poll_us = DEF_POLL_US;
}

int hs_switch_create(const struct hs_switch_config *cfg, hs_switch_t **out)
{
	static const struct hs_switch_config defaults;
	if (!out)
		return -EINVAL;
	if (!cfg)
		cfg = &defaults;
	/* the caller's layout (an older or newer header) into ours */
	struct hs_switch_config mine;
	int rc = hs_config_copy(&mine, sizeof(mine), cfg,
				cfg->size ? cfg->size : HS_SWITCH_CONFIG_SIZE_V1,
				HS_SWITCH_CONFIG_SIZE_V1);
	if (rc)
		return rc;
	cfg = &mine;
	rc = check_config(cfg);
	if (rc)
		return rc;
	hs__backends_builtin();

	struct hs_switch *sw = calloc(1, sizeof(*sw));
	if (!sw)
		return -ENOMEM;
	sw->cfg = *cfg;
	atomic_init(&sw->log_level, (int)cfg->log_level);
	apply_defaults(&sw->cfg);
	snprintf(sw->name, sizeof(sw->name), "%s", cfg->name ? cfg->name : "hs0");
	sw->cfg.name = sw->name;
	sw->cfg.worker_cpus = NULL;
	sw->data = cfg->data;
	sw->dp_epfd = -1;
	pthread_mutex_init(&sw->ctl_lock, NULL);
	pthread_mutex_init(&sw->ev_lock, NULL);
	atomic_init(&sw->ctx_free, ~0ull);
	sw->clock_base_ns = hs__now_ns(sw);

	rc = hs__fdb_init(&sw->fdb, sw->cfg.fdb_capacity, sw->cfg.fdb_aging_s,
			  sw->cfg.fdb_port_limit);
	if (rc)
		goto fail;
	rc = hs__topo_init(sw);
	if (!rc)
		rc = hs__dp_init(sw);
	if (!rc)
		rc = hs__loop_init(sw);
	if (!rc) {
		/* worker_cpus is only read while the workers start. */
		sw->cfg.worker_cpus = cfg->worker_cpus;
		rc = hs__pool_start(sw);
		sw->cfg.worker_cpus = NULL;
	}
	if (rc)
		goto fail;
	hs__log(sw, HS_LOG_INFO,
		"created (hyperswitch %s, %u workers, burst %u, fdb %u MACs)",
		HS_VERSION_STRING, sw->cfg.n_workers, sw->cfg.burst,
		sw->cfg.fdb_capacity);
	*out = sw;
	return 0;
fail:
	hs_switch_destroy(sw);
	return rc;
}

void hs_switch_destroy(hs_switch_t *sw)
{
	if (!sw)
		return;
	/* Ports first: their backends may still use loop watches, and
	 * workers must let go of their queues. */
	if (hs__topo_get(sw))
		hs__port_del_all(sw);
	hs__pool_stop(sw);
	hs__loop_fini(sw);
	for (unsigned i = 0; i < HS__CTX_MAX; i++)
		hs__ctx_free(sw->ctxs[i]);
	hs__topo_fini(sw);
	hs__dp_fini(sw);
	if (sw->fdb.b)
		hs__fdb_fini(&sw->fdb);
	pthread_mutex_destroy(&sw->ctl_lock);
	pthread_mutex_destroy(&sw->ev_lock);
	free(sw);
}

void *hs_switch_data(const hs_switch_t *sw)
{
	return sw ? sw->data : NULL;
}

void hs_switch_set_data(hs_switch_t *sw, void *data)
{
	if (sw)
		sw->data = data;
}

static _Thread_local bool in_event; /* this thread runs the event callback */

int hs_switch_set_event_fn(hs_switch_t *sw, hs_event_fn fn, void *opaque)
{
	if (!sw)
		return -EINVAL;
	if (in_event)
		return -EDEADLK; /* from inside the callback: it holds ev_lock */
	pthread_mutex_lock(&sw->ev_lock);
	sw->ev_fn = fn;
	sw->ev_opaque = opaque;
	pthread_mutex_unlock(&sw->ev_lock);
	return 0;
}

/* Events are rare (link flaps, broken rings): one lock serialises them,
 * which also lets hs_switch_set_event_fn promise the old callback is done. */
void hs__event_locked(struct hs_switch *sw, const struct hs_event *ev)
{
	if (sw->ev_fn) {
		in_event = true;
		sw->ev_fn(sw->ev_opaque, ev);
		in_event = false;
	}
}

void hs__event(struct hs_switch *sw, const struct hs_event *ev)
{
	pthread_mutex_lock(&sw->ev_lock);
	hs__event_locked(sw, ev);
	pthread_mutex_unlock(&sw->ev_lock);
}

int hs_switch_set_log_level(hs_switch_t *sw, enum hs_log_level level)
{
	if (!sw || (unsigned)level > HS_LOG_DEBUG)
		return -EINVAL;
	atomic_store_explicit(&sw->log_level, (int)level, memory_order_relaxed);
	return 0;
}

const char *hs_switch_name(const hs_switch_t *sw)
{
	return sw ? sw->name : NULL;
}

void hs__stats_sum(struct hs_switch_stats *st, const struct hs_port_stats *ps)
{
	st->rx_packets += ps->rx_packets;
	st->rx_bytes += ps->rx_bytes;
	st->tx_packets += ps->tx_packets;
	st->tx_bytes += ps->tx_bytes;
	for (unsigned r = 0; r < HS_DROP__COUNT; r++)
		st->drops[r] += ps->drops[r];
}

int hs_switch_get_stats_sized(hs_switch_t *sw, struct hs_switch_stats *out, size_t size)
{
	if (!sw || !out || size < HS_SWITCH_STATS_SIZE_V1)
		return -EINVAL;
	struct hs_switch_stats mine, *st = &mine;
	pthread_mutex_lock(&sw->ctl_lock);
	*st = sw->gone; /* what deleted ports counted: the totals never go back */
	struct hs__topo *t = hs__topo_get(sw);
	for (unsigned i = 0; i < t->max_ports; i++) {
		struct hs_port *p = t->port[i];
		struct hs_port_stats ps;
		if (!p || hs_port_get_stats(p, &ps))
			continue;
		st->n_ports++;
		hs__stats_sum(st, &ps);
	}
	pthread_mutex_unlock(&sw->ctl_lock);

	struct hs__fdb *f = &sw->fdb;
	pthread_mutex_lock(&f->lock);
	st->fdb_entries = f->count;
	pthread_mutex_unlock(&f->lock);
	st->fdb_capacity = f->capacity;
	st->fdb_learned = atomic_load(&f->learned);
	st->fdb_moved = atomic_load(&f->moved);
	st->fdb_aged = atomic_load(&f->aged);
	st->fdb_evicted = atomic_load(&f->evicted);
	st->fdb_static_refused = atomic_load(&f->static_refused);

	uint64_t wr, wh, wb, ws, wq;
	hs__pool_stats(sw, &wr, &wh, &wb, &ws, &wq);
	st->rounds_worker = hs__ctr_get(&sw->rounds_worker) + wr;
	st->handoffs = hs__ctr_get(&sw->handoffs) + wh;
	st->handbacks = hs__ctr_get(&sw->handbacks) + wb;
	st->worker_sleeps = hs__ctr_get(&sw->worker_sleeps) + ws;
	st->quiet_releases = hs__ctr_get(&sw->quiet_releases) + wq;
	st->rounds_sender = hs__loop_rounds(sw);
	for (unsigned i = 0; i < HS__CTX_MAX; i++) {
		struct hs__ctx *c = __atomic_load_n(&sw->ctxs[i], __ATOMIC_ACQUIRE);
		if (c)
			st->rounds_sender += hs__ctr_get(&c->rounds);
	}
	st->rounds = st->rounds_sender + st->rounds_worker;
	st->workers_idle = atomic_load(&sw->workers_idle);
	hs__stats_out(out, size, st, sizeof(*st));
	return 0;
}
