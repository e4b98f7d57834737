/*
 * port.c - ports: add/remove at any time, the topology snapshot (ports by
 * index and per-VLAN flood sets, published with RCU), per-port state the
 * backends change, and counters.
 *
 * Threads: add/del/reconfigure/set_queue_fd run in any host thread and
 * are serialised by the switch's ctl_lock; quiesce/resume by the port's
 * quiesce_lock (lock order: ctl_lock -> quiesce_lock, ctl_lock -> fdb
 * lock -> egress queue lock). The data path reads the topology lock-free.
 *
 * Removal while traffic flows (hs_port_del): the port is marked dead (no
 * new learning onto it, deliveries to it drop as port_down), a topology
 * without it is published, its MACs are flushed, its queues are marked
 * dead and leave the epoll set; then we wait until no thread owns one of
 * its ingress queues and for an RCU grace period, after which no thread
 * can hold a pointer to it. Only then is the backend stopped and closed.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

#include "copy.h"

struct hs__topo *hs__topo_get(struct hs_switch *sw)
{
	return hs__rcu_load(sw->topo);
}

static void topo_free(struct hs__topo *t)
{
	if (!t)
		return;
	for (unsigned v = 0; v < HS__NVID; v++)
		free(t->vset[v]);
	free(t->port);
	free(t->mir);
	free(t);
}

/* Builds a snapshot from the current one, with `add` added and `del`
 * removed (either may be NULL). ctl_lock held. */
static struct hs__topo *topo_build(struct hs_switch *sw, struct hs_port *add,
				   struct hs_port *del)
{
	struct hs__topo *old = hs__topo_get(sw);
	struct hs__topo *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->max_ports = sw->cfg.max_ports;
	t->port = calloc(t->max_ports, sizeof(*t->port));
	if (!t->port)
		goto fail;
	if (old)
		memcpy(t->port, old->port, t->max_ports * sizeof(*t->port));
	if (del)
		t->port[del->index] = NULL;
	if (add)
		t->port[add->index] = add;
	if (sw->mirrors) {
		t->mir = calloc(t->max_ports, sizeof(*t->mir));
		if (!t->mir)
			goto fail;
		for (const struct hs_mirror *m = sw->mirrors; m; m = m->next) {
			struct hs__mir *src = &t->mir[m->src->index];
			if (m->flags & HS_MIRROR_RX)
				src->rx[src->n_rx++] = m->dst->index;
			if (m->flags & HS_MIRROR_TX)
				src->tx[src->n_tx++] = m->dst->index;
			t->mir[m->dst->index].is_out = true;
		}
	}

	uint16_t count[HS__NVID] = {0};
	for (unsigned i = 0; i < t->max_ports; i++) {
		struct hs_port *p = t->port[i];
		if (!p || (p->flags & HS_PORT_NO_FLOOD) || (t->mir && t->mir[i].is_out))
			continue;
		for (unsigned v = 1; v <= HS_VLAN_MAX; v++)
			if (hs__port_in_vlan(p, (uint16_t)v))
				count[v]++;
	}
	for (unsigned v = 1; v <= HS_VLAN_MAX; v++) {
		if (!count[v])
			continue;
		t->vset[v] = malloc(sizeof(struct hs__vset) +
				    count[v] * sizeof(uint16_t));
		if (!t->vset[v])
			goto fail;
		t->vset[v]->n = 0;
	}
	for (unsigned i = 0; i < t->max_ports; i++) {
		struct hs_port *p = t->port[i];
		if (!p || (p->flags & HS_PORT_NO_FLOOD) || (t->mir && t->mir[i].is_out))
			continue;
		for (unsigned v = 1; v <= HS_VLAN_MAX; v++)
			if (t->vset[v] && hs__port_in_vlan(p, (uint16_t)v))
				t->vset[v]->port[t->vset[v]->n++] = (uint16_t)i;
	}
	return t;
fail:
	topo_free(t);
	return NULL;
}

/* Publishes t and frees the previous snapshot after a grace period. */
static void topo_publish(struct hs_switch *sw, struct hs__topo *t)
{
	struct hs__topo *old = hs__topo_get(sw);
	hs__rcu_store(sw->topo, t);
	hs__rcu_synchronize();
	topo_free(old);
}

/* A new snapshot after a change of the mirrors. ctl_lock held. */
int hs__topo_rebuild(struct hs_switch *sw)
{
	struct hs__topo *t = topo_build(sw, NULL, NULL);
	if (!t)
		return -ENOMEM;
	topo_publish(sw, t);
	return 0;
}

int hs__topo_init(struct hs_switch *sw)
{
	struct hs__topo *t = topo_build(sw, NULL, NULL);
	if (!t)
		return -ENOMEM;
	hs__rcu_store(sw->topo, t);
	return 0;
}

void hs__topo_fini(struct hs_switch *sw)
{
	topo_free(hs__topo_get(sw));
	hs__rcu_store(sw->topo, NULL);
}

/* ---- add ------------------------------------------------------------------- */

static int check_config(const struct hs_switch *sw, const struct hs_port_config *c)
{
	if (c->name && (!c->name[0] || strlen(c->name) >= HS_PORT_NAME_MAX))
		return -EINVAL;
	if (c->vlan_mode != HS_VLAN_ACCESS && c->vlan_mode != HS_VLAN_TRUNK)
		return -EINVAL;
	if (c->vlan > HS_VLAN_MAX)
		return -EINVAL;
	if (c->vlan_mode == HS_VLAN_ACCESS && (c->trunks || c->n_trunks))
		return -EINVAL;
	if (c->n_trunks && !c->trunks)
		return -EINVAL;
	for (unsigned i = 0; i < c->n_trunks; i++)
		if (c->trunks[i] < 1 || c->trunks[i] > HS_VLAN_MAX)
			return -EINVAL;
	if (c->mtu && (c->mtu < 68 || c->mtu > 65535 - HS_ETH_HLEN - HS_VLAN_HLEN))
		return -EINVAL;
	if (c->flags & ~(HS_PORT_NO_LEARN | HS_PORT_NO_FLOOD))
		return -EINVAL;
	if (c->backend_config && !c->backend_config_size)
		return -EINVAL;
	(void)sw;
	return 0;
}

static struct hs_port *find_locked(struct hs_switch *sw, const char *name)
{
	struct hs__topo *t = hs__topo_get(sw);
	for (unsigned i = 0; i < t->max_ports; i++)
		if (t->port[i] && !strcmp(t->port[i]->name, name))
			return t->port[i];
	return NULL;
}

static int free_index(struct hs_switch *sw)
{
	struct hs__topo *t = hs__topo_get(sw);
	for (unsigned i = 0; i < t->max_ports; i++)
		if (!t->port[i])
			return (int)i;
	return -ENOSPC;
}

static void queues_free(struct hs_port *p)
{
	if (p->outq)
		for (unsigned q = 0; q < p->nq; q++)
			hs__backlog_fini(&p->outq[q].bl);
	free(p->inq);
	free(p->outq);
	p->inq = NULL;
	p->outq = NULL;
}

static int queues_alloc(struct hs_port *p)
{
	struct hs_switch *sw = p->sw;
	p->inq = aligned_alloc(HS__CACHELINE, p->nq * sizeof(*p->inq));
	p->outq = aligned_alloc(HS__CACHELINE, p->nq * sizeof(*p->outq));
	if (!p->inq || !p->outq) {
		queues_free(p);
		return -ENOMEM;
	}
	memset(p->inq, 0, p->nq * sizeof(*p->inq));
	memset(p->outq, 0, p->nq * sizeof(*p->outq));
	for (unsigned q = 0; q < p->nq; q++) {
		struct hs__inq *iq = &p->inq[q];
		struct hs__outq *oq = &p->outq[q];
		iq->qid = (uint16_t)q;
		iq->port = p;
		atomic_init(&iq->kick_fd, -1);
		oq->qid = (uint16_t)q;
		atomic_init(&oq->posted_fd, -1);
		hs__lock_init(&oq->lock);
	}
	for (unsigned q = 0; q < p->nq; q++) {
		int rc = hs__backlog_init(&p->outq[q].bl, sw->cfg.backlog_frames,
					  sw->cfg.backlog_bytes);
		if (rc) {
			queues_free(p);
			return rc;
		}
	}
	return 0;
}

/* c's VLANs as an object for p->vl (NULL: out of memory). */
static struct hs__pvlan *vlans_make(const struct hs_port_config *c)
{
	struct hs__pvlan *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->mode = (uint8_t)c->vlan_mode;
	if (c->vlan_mode == HS_VLAN_ACCESS) {
		v->pvid = c->vlan ? c->vlan : 1;
		return v;
	}
	v->pvid = c->vlan; /* native VLAN, 0: none */
	if (!c->n_trunks) {
		memset(v->trunk, 0xff, sizeof(v->trunk));
		v->trunk[0] &= ~1ull;                         /* VLAN 0 */
		v->trunk[HS__NVID / 64 - 1] &= ~(1ull << 63); /* VLAN 4095 */
	} else {
		for (unsigned i = 0; i < c->n_trunks; i++)
			v->trunk[c->trunks[i] >> 6] |= 1ull << (c->trunks[i] & 63);
	}
	if (v->pvid)
		v->trunk[v->pvid >> 6] |= 1ull << (v->pvid & 63);
	return v;
}

/* The MTU in force: the host's, or the peer's when smaller. mtu_lock. */
static void mtu_update(struct hs_port *p)
{
	uint32_t m = p->peer_mtu && p->peer_mtu < p->cfg_mtu ? p->peer_mtu : p->cfg_mtu;
	atomic_store_explicit(&p->mtu, m, memory_order_relaxed);
}

int hs_port_add(hs_switch_t *sw, const struct hs_port_config *cfg,
		hs_port_t **out)
{
	static const struct hs_port_config defaults;
	if (!sw)
		return -EINVAL;
	if (!cfg)
		cfg = &defaults;
	struct hs_port_config mine;
	int rc = hs_config_copy(&mine, sizeof(mine), cfg,
				cfg->size ? cfg->size : HS_PORT_CONFIG_SIZE_V1,
				HS_PORT_CONFIG_SIZE_V1);
	if (rc)
		return rc;
	cfg = &mine;
	rc = check_config(sw, cfg);
	if (rc)
		return rc;
	if (hs__rcu_thread_online())
		return -EDEADLK;
	const char *bname = cfg->backend ? cfg->backend : HS_MEM_BACKEND;
	const struct hs_backend_ops *ops = hs__backend_get(bname);
	if (!ops)
		return -ENOENT;

	struct hs_port *p = calloc(1, sizeof(*p));
	if (!p) {
		hs__backend_put(ops);
		return -ENOMEM;
	}
	p->sw = sw;
	p->ops = ops;
	p->data = cfg->data;
	p->flags = cfg->flags;
	p->cfg_mtu = cfg->mtu ? cfg->mtu : 1500;
	atomic_init(&p->mtu, p->cfg_mtu);
	atomic_init(&p->refs, 1);
	pthread_mutex_init(&p->quiesce_lock, NULL);
	pthread_mutex_init(&p->mtu_lock, NULL);
	p->mac_limit = cfg->mac_limit ? cfg->mac_limit
		       : sw->cfg.fdb_port_limit ? sw->cfg.fdb_port_limit
						: UINT32_MAX;
	struct hs__pvlan *vl = vlans_make(cfg);
	if (!vl) {
		hs__backend_put(ops);
		pthread_mutex_destroy(&p->quiesce_lock);
		pthread_mutex_destroy(&p->mtu_lock);
		free(p);
		return -ENOMEM;
	}
	atomic_init(&p->vl, vl);

	pthread_mutex_lock(&sw->ctl_lock);
	if (cfg->name && find_locked(sw, cfg->name)) {
		rc = -EEXIST;
		goto fail_unlock;
	}
	rc = free_index(sw);
	if (rc < 0)
		goto fail_unlock;
	p->index = (uint16_t)rc;
	p->serial = ++sw->next_serial;
	if (cfg->name) {
		snprintf(p->name, sizeof(p->name), "%s", cfg->name);
	} else {
		/* "port<index>", made unique if a host named a port so. */
		snprintf(p->name, sizeof(p->name), "port%u", p->index);
		for (unsigned k = 1; find_locked(sw, p->name); k++)
			snprintf(p->name, sizeof(p->name), "port%u.%u", p->index, k);
	}

	struct hs_port_info info = {.n_queues = 1, .link_up = true};
	rc = ops->open(p, cfg->backend_config, cfg->backend_config_size, &p->priv,
		       &info);
	if (rc) {
		if (rc > 0)
			rc = -EINVAL;
		goto fail_unlock;
	}
	if (info.n_queues < 1 || info.n_queues > HS_MAX_QUEUES) {
		rc = -EINVAL;
		goto fail_close;
	}
	p->nq = info.n_queues;
	atomic_store(&p->nq_active, p->nq);
	atomic_store(&p->caps, info.caps & HS_CAP_ALL);
	atomic_store(&p->link_up, info.link_up);
	rc = queues_alloc(p);
	if (rc)
		goto fail_close;

	struct hs__topo *t = topo_build(sw, p, NULL);
	if (!t) {
		rc = -ENOMEM;
		goto fail_queues;
	}
	topo_publish(sw, t);
	sw->n_ports++;
	if (ops->start) {
		rc = ops->start(p->priv);
		if (rc) {
			pthread_mutex_unlock(&sw->ctl_lock);
			hs_port_log(p, HS_LOG_ERROR, "backend %s failed to start: %s",
				    ops->name, hs_strerror(rc));
			hs_port_del(p);
			return rc > 0 ? -EINVAL : rc;
		}
	}
	p->started = true;
	pthread_mutex_unlock(&sw->ctl_lock);
	hs_port_log(p, HS_LOG_INFO, "added (backend %s, %u queue%s, index %u)",
		    ops->name, p->nq, p->nq == 1 ? "" : "s", p->index);
	if (out)
		*out = p;
	return 0;

fail_queues:
	queues_free(p);
fail_close:
	ops->close(p->priv);
fail_unlock:
	pthread_mutex_unlock(&sw->ctl_lock);
	hs__backend_put(ops);
	pthread_mutex_destroy(&p->quiesce_lock);
	pthread_mutex_destroy(&p->mtu_lock);
	free(atomic_load(&p->vl));
	free(p);
	return rc;
}

/* ---- change in place -------------------------------------------------------- */

/* VLANs and flags of a quiesced port; ctl_lock held. The VLANs are an
 * object rounds read whole, replaced here: a round sees the old one or
 * the new one. Rounds that decided with the old one may have sent frames
 * for this port, but it is paused: they wait in its backlog. So: publish
 * the new object and a snapshot with the new flood sets, wait a grace
 * period (no round of the old one left), then drop from the backlog what
 * the port no longer takes as it was stored. */
static int change_vlans(struct hs_port *p, const struct hs_port_config *c, uint32_t what,
			struct hs__pvlan **old_vl)
{
	struct hs_switch *sw = p->sw;
	struct hs__pvlan *old = atomic_load(&p->vl), *nv = NULL;
	uint32_t old_flags = p->flags;
	if (what & HS_PORT_SET_VLAN) {
		if (!(nv = vlans_make(c)))
			return -ENOMEM;
		hs__rcu_store(p->vl, nv);
	}
	if (what & HS_PORT_SET_FLAGS)
		p->flags = c->flags;
	struct hs__topo *t = topo_build(sw, NULL, NULL);
	if (!t) {
		/* nothing changes; rounds that saw the new object had their
		 * frames for this port wait, and are checked below */
		if (nv)
			hs__rcu_store(p->vl, old);
		p->flags = old_flags;
		hs__rcu_synchronize();
		hs__backlog_purge_vlans(p, hs__mirror_is_output(sw, p));
		free(nv);
		return -ENOMEM;
	}
	topo_publish(sw, t); /* and its grace period */
	*old_vl = nv ? old : NULL;
	unsigned purged = hs__backlog_purge_vlans(p, hs__mirror_is_output(sw, p));
	if (purged)
		hs_port_log(p, HS_LOG_INFO, "VLAN change: %u waiting frame%s dropped", purged,
			    purged == 1 ? "" : "s");
	return 0;
}

int hs_port_reconfigure(hs_port_t *port, const struct hs_port_config *cfg, uint32_t what)
{
	if (!port || !cfg || !what || (what & ~(uint32_t)HS_PORT_SET_ALL))
		return -EINVAL;
	struct hs_port_config c;
	int rc = hs_config_copy(&c, sizeof(c), cfg,
				cfg->size ? cfg->size : HS_PORT_CONFIG_SIZE_V1,
				HS_PORT_CONFIG_SIZE_V1);
	if (rc)
		return rc;
	/* check the fields that change, the others as if zero */
	struct hs_port_config chk = {.size = sizeof(chk)};
	if (what & HS_PORT_SET_VLAN) {
		chk.vlan_mode = c.vlan_mode;
		chk.vlan = c.vlan;
		chk.trunks = c.trunks;
		chk.n_trunks = c.n_trunks;
	}
	if (what & HS_PORT_SET_MTU)
		chk.mtu = c.mtu;
	if (what & HS_PORT_SET_FLAGS)
		chk.flags = c.flags;
	rc = check_config(port->sw, &chk);
	if (rc)
		return rc;
	if (hs__rcu_thread_online() || (hs__cur_ctx && hs__cur_ctx->in_round))
		return -EDEADLK;

	struct hs_switch *sw = port->sw;
	struct hs__pvlan *old_vl = NULL;
	bool quiet = what & (HS_PORT_SET_VLAN | HS_PORT_SET_FLAGS);
	if (quiet) {
		rc = hs_port_quiesce(port); /* nests in the host's own */
		if (rc)
			return rc;
	}
	pthread_mutex_lock(&sw->ctl_lock);
	if (atomic_load(&port->dead)) {
		rc = -ENODEV;
		goto out;
	}
	if (quiet) {
		rc = change_vlans(port, &c, what, &old_vl);
		if (rc)
			goto out;
	}
	if (what & HS_PORT_SET_MAC_LIMIT)
		hs__fdb_set_limit(sw, port, c.mac_limit ? c.mac_limit
					    : sw->cfg.fdb_port_limit ? sw->cfg.fdb_port_limit
								     : UINT32_MAX);
	if (what & HS_PORT_SET_MTU) {
		pthread_mutex_lock(&port->mtu_lock);
		port->cfg_mtu = c.mtu ? c.mtu : 1500;
		mtu_update(port);
		pthread_mutex_unlock(&port->mtu_lock);
	}
	hs_port_log(port, HS_LOG_INFO, "reconfigured:%s%s%s%s",
		    what & HS_PORT_SET_VLAN ? " vlan" : "", what & HS_PORT_SET_MTU ? " mtu" : "",
		    what & HS_PORT_SET_MAC_LIMIT ? " mac_limit" : "",
		    what & HS_PORT_SET_FLAGS ? " flags" : "");
out:
	pthread_mutex_unlock(&sw->ctl_lock);
	if (quiet) {
		int r2 = hs_port_resume(port);
		if (!rc && r2 && r2 != -ENODEV)
			rc = r2;
	}
	if (old_vl) {
		/* no round has used it since change_vlans' grace period */
		free(old_vl);
		/* learned MACs in VLANs the port left go, after the pause so
		 * that the table walk does not lengthen it (a frame for one of
		 * them meanwhile is dropped and counted as vlan) */
		pthread_mutex_lock(&sw->ctl_lock);
		unsigned forgot = atomic_load(&port->dead) ? 0 : hs__fdb_flush_left_vlans(sw, port);
		pthread_mutex_unlock(&sw->ctl_lock);
		if (forgot)
			hs_port_log(port, HS_LOG_INFO, "VLAN change: %u MAC%s forgotten", forgot,
				    forgot == 1 ? "" : "s");
	}
	return rc;
}

/* ---- delete --------------------------------------------------------------------- */

static void wait_unowned(struct hs_port *p)
{
	for (unsigned q = 0; q < p->nq; q++)
		while (atomic_load_explicit(&p->inq[q].state, memory_order_acquire) &
		       HS__Q_OWNED)
			sched_yield();
}

/* Removes port p; ctl_lock held. */
/* The last reference frees what is left of a deleted port: the struct. */
static void port_put(struct hs_port *p)
{
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
		pthread_mutex_destroy(&p->quiesce_lock);
		pthread_mutex_destroy(&p->mtu_lock);
		free(atomic_load(&p->vl));
		free(p);
	}
}

int hs_port_hold(hs_port_t *port)
{
	if (!port)
		return -EINVAL;
	atomic_fetch_add_explicit(&port->holds, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&port->refs, 1, memory_order_relaxed);
	return 0;
}

void hs_port_release(hs_port_t *port)
{
	if (!port)
		return;
	/* a release without a hold would free a port the switch still has:
	 * refused (and said), not carried out */
	uint32_t h = atomic_load_explicit(&port->holds, memory_order_relaxed);
	do {
		if (!h) {
			hs_port_log(port, HS_LOG_ERROR, "hs_port_release without a hold: ignored");
			return;
		}
	} while (!atomic_compare_exchange_weak_explicit(&port->holds, &h, h - 1,
							memory_order_relaxed,
							memory_order_relaxed));
	port_put(port);
}

static void port_stats(const struct hs_port *port, struct hs_port_stats *st);

static void port_del_locked(struct hs_port *p)
{
	struct hs_switch *sw = p->sw;
	atomic_store(&p->dead, true);
	/* what a held handle reads; and a management plane that tracks links
	 * hears this one go */
	pthread_mutex_lock(&sw->ev_lock);
	if (atomic_exchange(&p->link_up, false)) {
		struct hs_event ev = {.size = sizeof(ev), .type = HS_EVENT_LINK, .port = p,
				      .link_up = false};
		hs__event_locked(sw, &ev);
	}
	pthread_mutex_unlock(&sw->ev_lock);
	for (unsigned q = 0; q < p->nq; q++)
		atomic_fetch_or(&p->inq[q].state, HS__Q_DEAD);
	/* its mirrors go with it (the snapshot below no longer has them;
	 * the data path knows mirrors only by port index) */
	struct hs_mirror *gone = hs__mirrors_unlink_port(sw, p);
	struct hs__topo *t = topo_build(sw, NULL, p);
	if (t) {
		topo_publish(sw, t);
	} else {
		/* Out of memory: the old snapshot stays and the port only
		 * leaves its slot (readers load the slot as one word);
		 * deliveries still in flight see `dead` and drop. */
		struct hs__topo *cur = hs__topo_get(sw);
		__atomic_store_n(&cur->port[p->index], NULL, __ATOMIC_RELEASE);
		/* its mirrors are in the old tables by index, and the index
		 * will be reused: every mirror stops until the next snapshot
		 * (rounds load the pointer once) */
		struct hs__mir *mir = __atomic_exchange_n(&cur->mir, NULL, __ATOMIC_ACQ_REL);
		if (mir)
			hs__log(sw, HS_LOG_ERROR, "out of memory: mirrors stopped until the next "
				"port or mirror change");
		hs__rcu_synchronize();
		free(mir);
	}
	hs__mirrors_free(gone);
	hs__fdb_flush_port(sw, p, true);
	for (unsigned q = 0; q < p->nq; q++) {
		hs__dp_fd_del(p, (uint16_t)q, HS_EV_KICK);
		hs__dp_fd_del(p, (uint16_t)q, HS_EV_POSTED);
	}
	wait_unowned(p);
	hs__rcu_synchronize();
	/* Serialise with any hs_port_posted still draining. */
	for (unsigned q = 0; q < p->nq; q++) {
		(void)hs__lock_take(&p->outq[q].lock);
		hs__lock_release(&p->outq[q].lock);
	}
	if (p->started && p->ops->stop)
		p->ops->stop(p->priv);
	/* Until here the backend's own control path (its loop callbacks,
	 * which stop has ended) could still pause and resume the dying
	 * port; from here its queues go. */
	pthread_mutex_lock(&p->quiesce_lock);
	p->gone = true;
	pthread_mutex_unlock(&p->quiesce_lock);
	/* Frames still waiting for it are dropped (port_down): counted,
	 * not lost. Then its share of the switch's totals stays in them
	 * (under ctl_lock, as hs_switch_get_stats reads them): no data path
	 * touches it now. */
	for (unsigned q = 0; q < p->nq; q++)
		if (p->outq[q].bl.ent_n)
			hs__ctr_add(&p->outq[q].drops[HS_DROP_PORT_DOWN], p->outq[q].bl.ent_n);
	struct hs_port_stats ps;
	port_stats(p, &ps);
	hs__stats_sum(&sw->gone, &ps);
	p->ops->close(p->priv);
	sw->n_ports--;
	hs__log(sw, HS_LOG_INFO, "%s: removed", p->name);
	queues_free(p);
	hs__backend_put(p->ops);
	port_put(p);
}

int hs_port_del(hs_port_t *port)
{
	if (!port)
		return -EINVAL;
	if (hs__rcu_thread_online() || (hs__cur_ctx && hs__cur_ctx->in_round))
		return -EDEADLK;
	struct hs_switch *sw = port->sw;
	pthread_mutex_lock(&sw->ctl_lock);
	int rc = 0;
	if (atomic_load(&port->dead))
		rc = -ENODEV; /* deleted already: a held handle */
	else
		port_del_locked(port);
	pthread_mutex_unlock(&sw->ctl_lock);
	return rc;
}

void hs__port_del_all(struct hs_switch *sw)
{
	pthread_mutex_lock(&sw->ctl_lock);
	/* Each removal publishes a new snapshot: read the current one. */
	for (unsigned i = 0; i < sw->cfg.max_ports; i++) {
		struct hs_port *p = hs__topo_get(sw)->port[i];
		if (p)
			port_del_locked(p);
	}
	pthread_mutex_unlock(&sw->ctl_lock);
}

/* ---- lookups and getters ---------------------------------------------------- */

int hs_port_find(hs_switch_t *sw, const char *name, hs_port_t **out)
{
	return hs_port_find_hold(sw, name, false, out);
}

int hs_port_find_hold(hs_switch_t *sw, const char *name, bool hold, hs_port_t **out)
{
	if (!sw || !name || !out)
		return -EINVAL;
	pthread_mutex_lock(&sw->ctl_lock);
	struct hs_port *p = find_locked(sw, name);
	if (p && hold)
		hs_port_hold(p);
	pthread_mutex_unlock(&sw->ctl_lock);
	if (!p)
		return -ENOENT;
	*out = p;
	return 0;
}

const char *hs_port_name(const hs_port_t *port)
{
	return port ? port->name : NULL;
}

hs_switch_t *hs_port_switch(const hs_port_t *port)
{
	return port ? port->sw : NULL;
}

void *hs_port_data(const hs_port_t *port)
{
	return port ? port->data : NULL;
}

void hs_port_set_data(hs_port_t *port, void *data)
{
	if (port)
		port->data = data;
}

void *hs_port_backend_priv(const hs_port_t *port, const struct hs_backend_ops *ops)
{
	return port && ops && port->ops == ops ? port->priv : NULL;
}

int hs_port_backend_call(hs_port_t *port, const struct hs_backend_ops *ops,
			 int (*fn)(void *priv, void *arg), void *arg)
{
	if (!port || !ops || !fn)
		return -EINVAL;
	if (port->ops != ops)
		return -ENODEV;
	/* close runs a grace period after `dead` is set: inside this read
	 * section the private state outlives the call */
	hs__rcu_enter();
	int rc = atomic_load(&port->dead) ? -ENODEV : fn(port->priv, arg);
	hs__rcu_leave();
	return rc;
}

uint16_t hs_port_n_queues(const hs_port_t *port)
{
	return port ? port->nq : 0;
}

uint32_t hs_port_caps(const hs_port_t *port)
{
	return port ? atomic_load(&((hs_port_t *)port)->caps) : 0;
}

bool hs_port_link_up(const hs_port_t *port)
{
	return port && atomic_load(&((hs_port_t *)port)->link_up);
}

int hs_port_pvid(const hs_port_t *port)
{
	if (!port)
		return -EINVAL;
	hs__rcu_enter();
	int rc = atomic_load(&((hs_port_t *)port)->dead) ? -ENODEV : hs__port_vl(port)->pvid;
	hs__rcu_leave();
	return rc;
}

/* The getters below may race with hs_port_del on a held handle: they
 * look at `dead` inside an RCU read-side section, and the deletion waits
 * for a grace period between setting it and freeing the queues and the
 * backend. */
int hs_port_backend_counters(const hs_port_t *port,
			     void (*cb)(void *arg, const char *name, uint64_t value), void *arg)
{
	if (!port || !cb)
		return -EINVAL;
	hs__rcu_enter();
	int rc = atomic_load(&((hs_port_t *)port)->dead) ? -ENODEV : 0;
	if (!rc && port->ops->counters)
		port->ops->counters(port->priv, cb, arg);
	hs__rcu_leave();
	return rc;
}

/* Copies what both sides know into the caller's struct of `size` bytes
 * and zeroes the rest of it. */
void hs__stats_out(void *dst, size_t size, const void *src, size_t have)
{
	memcpy(dst, src, size < have ? size : have);
	if (size > have)
		memset((char *)dst + have, 0, size - have);
}

/* The port's counters into *st (zeroed); its queues must be there. */
static void port_stats(const struct hs_port *port, struct hs_port_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (unsigned q = 0; q < port->nq; q++) {
		const struct hs__inq *iq = &port->inq[q];
		const struct hs__outq *oq = &port->outq[q];
		st->rx_packets += hs__ctr_get(&iq->rx_packets);
		st->rx_bytes += hs__ctr_get(&iq->rx_bytes);
		st->rx_broadcast += hs__ctr_get(&iq->rx_bcast);
		st->rx_multicast += hs__ctr_get(&iq->rx_mcast);
		st->rx_flooded += hs__ctr_get(&iq->rx_flooded);
		st->rx_notify += hs__ctr_get(&iq->rx_notify);
		/* Frames the backend lost after delivery are drops, not
		 * transmissions. tx_lost is added first (inside send_commit),
		 * tx_packets after: a reader in between must not go below. */
		uint64_t txp = hs__ctr_get(&oq->tx_packets), lost = hs__ctr_get(&oq->tx_lost);
		st->tx_packets += txp > lost ? txp - lost : 0;
		st->tx_bytes += hs__ctr_get(&oq->tx_bytes);
		st->tx_notify += hs__ctr_get(&oq->tx_notify);
		st->tx_backlogged += hs__ctr_get(&oq->tx_backlogged);
		st->tx_gso_segments += hs__ctr_get(&oq->tx_gso_segments);
		st->tx_csum_sw += hs__ctr_get(&oq->tx_csum_sw);
		st->tx_lock_sleeps += hs__ctr_get(&oq->tx_lock_sleeps);
		for (unsigned r = 0; r < HS_DROP__COUNT; r++)
			st->drops[r] += hs__ctr_get(&iq->drops[r]) +
					hs__ctr_get(&oq->drops[r]);
	}
	st->fdb_entries = atomic_load_explicit(&port->fdb_count, memory_order_relaxed);
	st->fdb_limit_hits = hs__ctr_get(&port->fdb_limit_hits);
}

int hs_port_get_stats_sized(const hs_port_t *port, struct hs_port_stats *out, size_t size)
{
	if (!port || !out || size < HS_PORT_STATS_SIZE_V1)
		return -EINVAL;
	struct hs_port_stats st;
	hs__rcu_enter();
	if (atomic_load(&((hs_port_t *)port)->dead)) {
		hs__rcu_leave();
		return -ENODEV;
	}
	port_stats(port, &st);
	hs__rcu_leave();
	hs__stats_out(out, size, &st, sizeof(st));
	return 0;
}

/* ---- called by backends and VMMs ------------------------------------------- */

int hs_port_set_peer_state(hs_port_t *port, uint16_t queue,
			   enum hs_peer_state state)
{
	if (!port || queue >= port->nq ||
	    (state != HS_PEER_UNKNOWN && state != HS_PEER_RUNNING &&
	     state != HS_PEER_BLOCKED))
		return -EINVAL;
	atomic_store_explicit(&port->outq[queue].peer_state, state,
			      memory_order_relaxed);
	return 0;
}

int hs_port_peer_state(const hs_port_t *port, uint16_t queue)
{
	if (!port || queue >= port->nq)
		return -EINVAL;
	return atomic_load_explicit(&((hs_port_t *)port)->outq[queue].peer_state,
				    memory_order_relaxed);
}

int hs_port_set_caps(hs_port_t *port, uint32_t caps)
{
	if (!port || (caps & ~HS_CAP_ALL))
		return -EINVAL;
	atomic_store(&port->caps, caps);
	return 0;
}

int hs_port_set_active_queues(hs_port_t *port, uint16_t n)
{
	if (!port || !n || n > port->nq)
		return -EINVAL;
	/* Frames that wait for a queue the peer no longer uses would wait
	 * for good (it posts there no more): they go, counted. After the
	 * store: a delivery that picked such a queue with the old count
	 * either left its frames before the retirement below, or sees the
	 * new count under the queue's lock and picks again (deliver.c). */
	atomic_store(&port->nq_active, n);
	for (uint16_t q = n; q < port->nq; q++)
		hs__outq_retire(port, &port->outq[q]);
	return 0;
}

int hs_port_set_link(hs_port_t *port, bool up)
{
	if (!port)
		return -EINVAL;
	/* the change and its event under one lock: two threads changing the
	 * link report in the order the changes happened */
	pthread_mutex_lock(&port->sw->ev_lock);
	bool was = atomic_exchange(&port->link_up, up);
	if (was && !up)
		atomic_fetch_add(&port->link_downs, 1);
	if (was != up) {
		hs_port_log(port, HS_LOG_INFO, "link %s", up ? "up" : "down");
		struct hs_event ev = {.size = sizeof(ev), .type = HS_EVENT_LINK, .port = port,
				      .link_up = up};
		hs__event_locked(port->sw, &ev);
	}
	pthread_mutex_unlock(&port->sw->ev_lock);
	/* The MACs learned behind a port whose link went down are forgotten
	 * (static ones stay), as a bridge's disabled port's are: frames for
	 * them are flooded to where they may be now instead of dropped as
	 * port_down until they age; nothing is learned behind it while it is
	 * down, and they are learned again at their next frame after. After
	 * the event (whose callback may use the table). */
	if (was && !up)
		hs__fdb_forget_port(port->sw, port);
	return 0;
}

int hs_port_report_broken(hs_port_t *port, uint16_t q, const char *reason)
{
	if (!port || q >= port->nq)
		return -EINVAL;
	struct hs_event ev = {.size = sizeof(ev), .type = HS_EVENT_BROKEN, .port = port,
			      .queue = q, .reason = reason ? reason : "?"};
	hs__event(port->sw, &ev);
	return 0;
}

int hs_port_set_mtu(hs_port_t *port, uint32_t mtu)
{
	if (!port || (mtu && mtu < 68))
		return -EINVAL;
	pthread_mutex_lock(&port->mtu_lock);
	port->peer_mtu = mtu;
	mtu_update(port);
	pthread_mutex_unlock(&port->mtu_lock);
	return 0;
}

int hs_port_set_queue_fd(hs_port_t *port, uint16_t q, unsigned ev, int fd)
{
	bool level = ev & HS_EV_FD_LEVEL;
	ev &= ~(unsigned)HS_EV_FD_LEVEL;
	if (!port || q >= port->nq || (ev != HS_EV_KICK && ev != HS_EV_POSTED) ||
	    (level && ev != HS_EV_KICK) || fd < -1)
		return -EINVAL;
	if (fd >= 0 && atomic_load(&port->dead))
		return -ENODEV;
	hs__dp_fd_del(port, q, ev);
	if (ev == HS_EV_KICK)
		port->inq[q].kick_level = level;
	return fd >= 0 ? hs__dp_fd_add(port, q, ev, fd) : 0;
}

#ifndef NDEBUG
void hs__be_violation(const struct hs_port *p, const char *op)
{
	hs__log(p->sw, HS_LOG_ERROR, "%s: backend op %s called while the port is "
		"quiesced (hs_port_quiesce's contract broken)", p->name, op);
	abort();
}
#endif

static void pause_port(struct hs_port *port);
static void resume_port(struct hs_port *port);

int hs_port_quiesce(hs_port_t *port)
{
	if (!port)
		return -EINVAL;
	if (hs__rcu_thread_online() || (hs__cur_ctx && hs__cur_ctx->in_round))
		return -EDEADLK;
	/* Nested: only the outermost call pauses; the others hold the lock
	 * until it is done, so none returns before the port is quiet. */
	pthread_mutex_lock(&port->quiesce_lock);
	int rc = 0;
	if (port->gone)
		rc = -ENODEV; /* a held handle of a deleted port */
	else if (port->quiesce_depth++ == 0)
		pause_port(port);
	pthread_mutex_unlock(&port->quiesce_lock);
	return rc;
}

static void pause_port(struct hs_port *port)
{
	atomic_store(&port->paused, true);
	for (unsigned q = 0; q < port->nq; q++)
		atomic_fetch_or(&port->inq[q].state, HS__Q_PAUSED);
	wait_unowned(port);
	/* Deliveries check `paused` under the queue lock: after taking each
	 * lock once, none is in progress with the old value. */
	for (unsigned q = 0; q < port->nq; q++) {
		(void)hs__lock_take(&port->outq[q].lock);
		hs__lock_release(&port->outq[q].lock);
	}
	/* A delivery notifies after releasing the queue lock, inside its
	 * round (an RCU read-side section): one grace period later no
	 * notification that read the backend's old state is in flight. */
	hs__rcu_synchronize();
	atomic_store_explicit(&port->quiesced, true, memory_order_release);
}

int hs_port_resume(hs_port_t *port)
{
	if (!port)
		return -EINVAL;
	if (hs__rcu_thread_online() || (hs__cur_ctx && hs__cur_ctx->in_round))
		return -EDEADLK;
	pthread_mutex_lock(&port->quiesce_lock);
	int rc = 0;
	if (port->gone)
		rc = -ENODEV; /* a held handle of a deleted port */
	else if (!port->quiesce_depth)
		rc = -EINVAL; /* not quiesced: an unbalanced resume */
	else if (--port->quiesce_depth == 0)
		resume_port(port);
	pthread_mutex_unlock(&port->quiesce_lock);
	return rc;
}

static void resume_port(struct hs_port *port)
{
	atomic_store_explicit(&port->quiesced, false, memory_order_release);
	atomic_store(&port->paused, false);
	/* Nothing signalled while paused is lost: a queue whose fd fired
	 * (DISARMED) is re-armed, one that had work (PENDING: a kick, or its
	 * last owner found frames when it enabled kicks) is run now, and
	 * frames that waited for a receiver are delivered. */
	for (unsigned q = 0; q < port->nq; q++) {
		struct hs__inq *iq = &port->inq[q];
		uint32_t s = atomic_fetch_and(&iq->state,
					      ~(uint32_t)(HS__Q_PAUSED | HS__Q_PENDING |
							  HS__Q_DISARMED));
		if (s & HS__Q_DISARMED)
			hs__dp_rearm(port->sw, iq);
		if (s & HS__Q_PENDING)
			hs__port_kick(port, (uint16_t)q, false);
		/* A delivery that saw `paused` set backlogs its frames and
		 * stores bl_count under the queue's lock: once we have held
		 * it, that store is visible to hs_port_posted, and later
		 * deliveries see the port resumed (found by review: without
		 * this, such frames waited for a next delivery). A backlog
		 * dropped while paused (link down, a VLAN change's purge) left
		 * its "buffers posted" request on: withdrawn here (found by
		 * review: hs_port_posted returns early with nothing waiting). */
		(void)hs__lock_take(&port->outq[q].lock);
		hs__posted_withdraw(port, &port->outq[q]);
		hs__lock_release(&port->outq[q].lock);
		hs_port_posted(port, (uint16_t)q);
	}
}
