/*
 * mirror.c - port mirrors (hyperswitch/port.h): a list under the switch's
 * ctl_lock that every topology snapshot turns into per-port tables of
 * output indices (port.c), which the round reads (datapath.c). Adding or
 * removing a mirror publishes a new snapshot, so no data-path thread ever
 * sees half of one.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static unsigned outputs(const struct hs_switch *sw, const struct hs_port *src, uint32_t dir)
{
	unsigned n = 0;
	for (const struct hs_mirror *m = sw->mirrors; m; m = m->next)
		n += m->src == src && (m->flags & dir);
	return n;
}

static bool is_output(const struct hs_switch *sw, const struct hs_port *p)
{
	for (const struct hs_mirror *m = sw->mirrors; m; m = m->next)
		if (m->dst == p)
			return true;
	return false;
}

static bool is_source(const struct hs_switch *sw, const struct hs_port *p)
{
	for (const struct hs_mirror *m = sw->mirrors; m; m = m->next)
		if (m->src == p)
			return true;
	return false;
}

static bool listed(const struct hs_switch *sw, const struct hs_mirror *m)
{
	for (const struct hs_mirror *x = sw->mirrors; x; x = x->next)
		if (x == m)
			return true;
	return false;
}

static bool flags_ok(uint32_t flags)
{
	return flags && !(flags & ~(uint32_t)(HS_MIRROR_RX | HS_MIRROR_TX));
}

/* Whether src has room for one more output each way `flags` names. */
static bool room_for(const struct hs_switch *sw, const struct hs_port *src, uint32_t flags)
{
	return !((flags & HS_MIRROR_RX) && outputs(sw, src, HS_MIRROR_RX) >= HS_MIRROR_MAX) &&
	       !((flags & HS_MIRROR_TX) && outputs(sw, src, HS_MIRROR_TX) >= HS_MIRROR_MAX);
}

/* "rx", "tx" or "rx+tx", for the log */
static const char *flags_name(uint32_t flags)
{
	return flags == (HS_MIRROR_RX | HS_MIRROR_TX) ? "rx+tx"
	       : flags & HS_MIRROR_RX		      ? "rx"
						      : "tx";
}

/* Mirrors change the topology, which waits for data-path threads. */
static bool in_data_path(void)
{
	return hs__rcu_thread_online() || (hs__cur_ctx && hs__cur_ctx->in_round);
}

static int check(const struct hs_switch *sw, const struct hs_mirror_config *c)
{
	if (!c->src || !c->dst || !flags_ok(c->flags) ||
	    c->src == c->dst || c->src->sw != sw || c->dst->sw != sw ||
	    atomic_load(&c->src->dead) || atomic_load(&c->dst->dead))
		return -EINVAL;
	if (is_output(sw, c->src) || is_source(sw, c->dst))
		return -EINVAL;
	for (const struct hs_mirror *m = sw->mirrors; m; m = m->next)
		if (m->src == c->src && m->dst == c->dst)
			return -EEXIST;
	return room_for(sw, c->src, c->flags) ? 0 : -ENOSPC;
}

int hs_mirror_add(hs_switch_t *sw, const struct hs_mirror_config *cfg, hs_mirror_t **out)
{
	if (!sw)
		return -EINVAL;
	if (in_data_path())
		return -EDEADLK;
	struct hs_mirror_config mine;
	if (!cfg)
		return -EINVAL;
	int crc = hs_config_copy(&mine, sizeof(mine), cfg,
				 cfg->size ? cfg->size : HS_MIRROR_CONFIG_SIZE_V1,
				 HS_MIRROR_CONFIG_SIZE_V1);
	if (crc)
		return crc;
	cfg = &mine;
	pthread_mutex_lock(&sw->ctl_lock);
	int rc = check(sw, cfg);
	struct hs_mirror *m = NULL;
	if (!rc && !(m = calloc(1, sizeof(*m))))
		rc = -ENOMEM;
	if (!rc) {
		*m = (struct hs_mirror){.sw = sw, .src = cfg->src, .dst = cfg->dst,
					.flags = cfg->flags, .next = sw->mirrors};
		sw->mirrors = m;
		rc = hs__topo_rebuild(sw);
		if (rc) {
			sw->mirrors = m->next;
			free(m);
			m = NULL;
		}
	}
	if (!rc) {
		/* the output serves the mirror only: no MAC leads to it any
		 * more, static ones included */
		hs__fdb_flush_port(sw, m->dst, true);
		hs__log(sw, HS_LOG_INFO, "mirror %s of %s to %s", flags_name(m->flags),
			m->src->name, m->dst->name);
	}
	pthread_mutex_unlock(&sw->ctl_lock);
	if (!rc && out)
		*out = m;
	return rc;
}

int hs_mirror_del(hs_mirror_t *m)
{
	if (!m)
		return -EINVAL;
	if (in_data_path())
		return -EDEADLK;
	struct hs_switch *sw = m->sw;
	pthread_mutex_lock(&sw->ctl_lock);
	struct hs_mirror **pp = &sw->mirrors;
	while (*pp && *pp != m)
		pp = &(*pp)->next;
	int rc = *pp ? 0 : -EINVAL;
	if (!rc) {
		*pp = m->next;
		rc = hs__topo_rebuild(sw);
		if (rc) {
			m->next = *pp;
			*pp = m;
		}
	}
	if (!rc)
		hs__log(sw, HS_LOG_INFO, "mirror of %s to %s removed", m->src->name,
			m->dst->name);
	pthread_mutex_unlock(&sw->ctl_lock);
	if (!rc)
		free(m);
	return rc;
}

int hs_mirror_set_flags(hs_mirror_t *m, uint32_t flags)
{
	if (!m || !flags_ok(flags))
		return -EINVAL;
	if (in_data_path())
		return -EDEADLK;
	struct hs_switch *sw = m->sw;
	pthread_mutex_lock(&sw->ctl_lock);
	int rc = listed(sw, m) ? 0 : -EINVAL;
	uint32_t old = rc ? 0 : m->flags;
	/* a direction it takes on counts against the source's outputs that
	 * way (the mirror's own not among them yet) */
	if (!rc && !room_for(sw, m->src, flags & ~old))
		rc = -ENOSPC;
	if (!rc && flags != old) {
		m->flags = flags;
		rc = hs__topo_rebuild(sw);
		if (rc)
			m->flags = old;
		else
			hs__log(sw, HS_LOG_INFO, "mirror of %s to %s now %s", m->src->name,
				m->dst->name, flags_name(flags));
	}
	pthread_mutex_unlock(&sw->ctl_lock);
	return rc;
}

bool hs__mirror_is_output(const struct hs_switch *sw, const struct hs_port *p)
{
	return is_output(sw, p);
}

struct hs_mirror *hs__mirrors_unlink_port(struct hs_switch *sw, struct hs_port *p)
{
	struct hs_mirror *gone = NULL, **pp = &sw->mirrors;
	while (*pp) {
		struct hs_mirror *m = *pp;
		if (m->src == p || m->dst == p) {
			*pp = m->next;
			m->next = gone;
			gone = m;
		} else {
			pp = &m->next;
		}
	}
	return gone;
}

void hs__mirrors_free(struct hs_mirror *list)
{
	while (list) {
		struct hs_mirror *n = list->next;
		free(list);
		list = n;
	}
}
