/*
 * ports.c - the running ports: adding them from their config through the
 * public API, and reload, which applies only the difference between the
 * running ports and the file so that untouched ports lose nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsd.h"

struct hsd_port *hsd_port_get(struct hsd *d, const char *name)
{
	for (unsigned i = 0; i < d->n_ports; i++)
		if (!strcmp(d->ports[i].conf.name, name))
			return &d->ports[i];
	return NULL;
}

/* The backend configs a library port config may point at. */
struct lib_cfgs {
	struct hs_vhost_user_config vc;
	struct hs_tap_config tc;
	struct hs_xen_config xc;
	struct hs_vxlan_config xl;
	struct hs_uplink_config ul;
};

/* The library's port config for `pc`, pointing into `b`. */
static void to_lib(const struct hsd_port_conf *pc, struct hs_port_config *c, struct lib_cfgs *b)
{
	struct hs_vhost_user_config *vc = &b->vc;
	struct hs_tap_config *tc = &b->tc;
	struct hs_xen_config *xc = &b->xc;
	memset(c, 0, sizeof(*c));
	c->name = pc->name;
	c->vlan_mode = pc->vlan_mode;
	c->vlan = pc->vlan;
	c->trunks = pc->n_trunks ? pc->trunks : NULL;
	c->n_trunks = pc->n_trunks;
	c->mac_limit = pc->mac_limit;
	c->mtu = pc->mtu;
	c->flags = (pc->learn ? 0 : HS_PORT_NO_LEARN) | (pc->flood ? 0 : HS_PORT_NO_FLOOD);
	if (pc->type == HSD_VHOST_USER) {
		memset(vc, 0, sizeof(*vc));
		vc->path = pc->path;
		vc->flags = (pc->client ? HS_VU_CLIENT : 0) |
			    (pc->socket_owner_set ? HS_VU_SOCKET_OWNER : 0) |
			    (pc->vcpu_state ? 0 : HS_VU_NO_VCPU_STATE);
		vc->queue_pairs = pc->queues;
		vc->mtu = pc->offer_mtu ? (uint16_t)pc->mtu : 0;
		vc->reconnect_ms = pc->reconnect_ms;
		vc->vcpu_idle_ms = pc->vcpu_idle_ms ? pc->vcpu_idle_ms : HS_VU_VCPU_IDLE_NEVER;
		vc->features_off = (pc->packed ? 0 : 1ull << HS_VIRTIO_F_RING_PACKED) |
				   (pc->in_order ? 0 : 1ull << HS_VIRTIO_F_IN_ORDER) |
				   (pc->guest_announce ? 0 : 1ull << HS_VIRTIO_NET_F_GUEST_ANNOUNCE);
		vc->socket_mode = pc->socket_mode;
		vc->socket_uid = pc->socket_uid;
		vc->socket_gid = pc->socket_gid;
		c->backend = HS_VHOST_USER_BACKEND;
		c->backend_config = vc;
		c->backend_config_size = sizeof(*vc);
	} else if (pc->type == HSD_XEN) {
		memset(xc, 0, sizeof(*xc));
		xc->frontend_domid = pc->domid;
		xc->devid = pc->devid;
		xc->backend_domid = pc->backend_domid;
		xc->max_queues = pc->queues;
		xc->flags = pc->vcpu_state ? 0 : HS_XEN_NO_VCPU_STATE;
		c->backend = HS_XEN_BACKEND;
		c->backend_config = xc;
		c->backend_config_size = sizeof(*xc);
	} else if (pc->type == HSD_VXLAN) {
		struct hs_vxlan_config *xl = &b->xl;
		memset(xl, 0, sizeof(*xl));
		xl->local = pc->local;
		xl->vni = pc->vni;
		xl->dst_port = pc->dst_port;
		xl->src_min = pc->src_port_min;
		xl->src_max = pc->src_port_max;
		xl->underlay_mtu = pc->underlay_mtu;
		xl->underlay_if = pc->underlay_if;
		xl->ageing_s = pc->ageing_s;
		xl->max_entries = pc->max_entries;
		xl->ttl = (uint8_t)pc->ttl;
		xl->tos = (uint8_t)pc->tos;
		xl->flags = (pc->remote_learning ? 0 : HS_VXLAN_NO_LEARN) |
			    (pc->udp_csum ? 0 : HS_VXLAN_NO_UDP_CSUM) | (pc->df ? HS_VXLAN_DF : 0);
		c->backend = HS_VXLAN_BACKEND;
		c->backend_config = xl;
		c->backend_config_size = sizeof(*xl);
	} else if (pc->type == HSD_UPLINK) {
		struct hs_uplink_config *ul = &b->ul;
		memset(ul, 0, sizeof(*ul));
		ul->ifname = pc->ifname;
		const char *m = pc->uplink_mode ? pc->uplink_mode : "auto";
		ul->mode = !strcmp(m, "packet")		? HS_UPLINK_PACKET
			   : !strncmp(m, "xdp", 3)	? HS_UPLINK_XDP
							: HS_UPLINK_AUTO;
		ul->flags = (pc->offload ? 0 : HS_UPLINK_NO_OFFLOAD) |
			    (pc->promisc ? 0 : HS_UPLINK_NO_PROMISC) |
			    (pc->qdisc_bypass ? HS_UPLINK_QDISC_BYPASS : 0) |
			    (!strcmp(m, "xdp-generic") ? HS_UPLINK_XDP_GENERIC : 0) |
			    (!strcmp(m, "xdp-zerocopy") ? HS_UPLINK_XDP_ZEROCOPY : 0);
		ul->xdp_frames = pc->xdp_frames;
		ul->xdp_macs = pc->xdp_macs;
		ul->queues = pc->queues;
		ul->rx_blocks = pc->rx_blocks;
		ul->rx_block_kib = pc->rx_block_kib;
		ul->tx_slots = pc->tx_slots;
		ul->block_tov_ms = pc->block_tov_ms;
		c->backend = HS_UPLINK_BACKEND;
		c->backend_config = ul;
		c->backend_config_size = sizeof(*ul);
	} else {
		memset(tc, 0, sizeof(*tc));
		tc->ifname = pc->ifname;
		tc->flags = (pc->attach ? HS_TAP_ATTACH : 0) | (pc->up ? HS_TAP_UP : 0) |
			    (pc->offload ? 0 : HS_TAP_NO_OFFLOAD) | (pc->staged ? HS_TAP_STAGED : 0) |
			    (pc->uring ? 0 : HS_TAP_NO_URING);
		tc->queues = pc->queues;
		tc->ring = pc->ring;
		tc->mtu = pc->mtu_set ? (uint16_t)pc->mtu : 0;
		c->backend = HS_TAP_BACKEND;
		c->backend_config = tc;
		c->backend_config_size = sizeof(*tc);
	}
}

int hsd_ports_unique(struct hsd *d, const struct hsd_port_conf *pc, const char *skip,
		     char *err, size_t errlen)
{
	struct hsd_port_conf *running = malloc((d->n_ports + 1) * sizeof(*running));
	if (!running)
		return -ENOMEM;
	for (unsigned i = 0; i < d->n_ports; i++)
		running[i] = d->ports[i].conf;
	int rc = hsd_port_check_unique(pc, running, d->n_ports, skip, err, errlen);
	free(running);
	return rc;
}

int hsd_port_add(struct hsd *d, const struct hsd_port_conf *pc, char *err, size_t errlen)
{
	if (hsd_port_get(d, pc->name)) {
		snprintf(err, errlen, "port %s exists already", pc->name);
		return -EEXIST;
	}
	int rc = hsd_ports_unique(d, pc, NULL, err, errlen);
	if (rc)
		return rc;
	if (d->n_ports == d->cap_ports) {
		unsigned cap = d->cap_ports ? 2 * d->cap_ports : 16;
		struct hsd_port *np = realloc(d->ports, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		d->ports = np;
		d->cap_ports = cap;
	}
	struct hsd_port *p = &d->ports[d->n_ports];
	memset(p, 0, sizeof(*p));
	if ((rc = hsd_port_conf_copy(&p->conf, pc))) {
		snprintf(err, errlen, "port %s: out of memory", pc->name);
		return rc;
	}
	struct hs_port_config c;
	struct lib_cfgs b;
	to_lib(&p->conf, &c, &b);
	char why[256];
	hsd_log_capture(why, sizeof(why));
	rc = hs_port_add(d->sw, &c, &p->port);
	/* a vxlan port's flood list */
	static const uint8_t flood[6];
	const char *q = pc->type == HSD_VXLAN ? pc->remotes : NULL;
	char a[64];
	while (!rc && hsd_remotes_next(&q, a))
		rc = hs_vxlan_fdb_add(p->port, flood, a, 0);
	/* and the Linux vxlan device whose FDB it follows */
	bool following = !rc && pc->type == HSD_VXLAN && pc->follow;
	if (following) {
		struct hs_vxlan_follow_opts fo = {
			.ifname = pc->follow, .export_port = pc->export_port,
			.flags = pc->follow_any_port ? HS_VXLAN_FOLLOW_ANY_PORT : 0};
		rc = hs_vxlan_follow_with(p->port, &fo, sizeof(fo));
	}
	hsd_log_capture(NULL, 0);
	if (rc && p->port) {
		hs_port_del(p->port);
		p->port = NULL;
	}
	if (rc) {
		/* with the library's own words where it logged some */
		if (following)
			snprintf(err, errlen, "port %s: %s (following the FDB of %s)%s%s",
				 pc->name, hs_strerror(rc), pc->follow, why[0] ? ": " : "", why);
		else
			snprintf(err, errlen, "port %s: %s%s%s%s", pc->name, hs_strerror(rc),
				 pc->type == HSD_XEN ? " (a xen port needs the switch to run in "
						       "a Xen domain: the daemon's log says what "
						       "was missing)" : "",
				 why[0] ? ": " : "", why);
		hsd_port_conf_free(&p->conf);
		return rc;
	}
	d->n_ports++;
	if (pc->type == HSD_XEN)
		hsd_log(HS_LOG_INFO, "port %s added (xen: domain %u vif %u)", pc->name, pc->domid,
			pc->devid);
	else if (pc->type == HSD_VXLAN)
		hsd_log(HS_LOG_INFO, "port %s added (vxlan: VTEP %s, VNI %u%s%s)", pc->name,
			pc->local, pc->vni, pc->follow ? ", following " : "",
			pc->follow ? pc->follow : "");
	else if (pc->type == HSD_UPLINK)
		hsd_log(HS_LOG_INFO, "port %s added (uplink %s, mode %s)", pc->name, pc->ifname,
			hs_uplink_mode(p->port));
	else
		hsd_log(HS_LOG_INFO, "port %s added (%s %s)", pc->name,
			hsd_port_type_name(pc->type),
			pc->type == HSD_VHOST_USER ? pc->path : pc->ifname);
	return 0;
}

int hsd_port_del(struct hsd *d, const char *name)
{
	struct hsd_port *p = hsd_port_get(d, name);
	if (!p)
		return -ENOENT;
	hsd_mirrors_port_gone(d, name);
	int rc = hs_port_del(p->port);
	if (rc)
		return rc;
	hsd_log(HS_LOG_INFO, "port %s deleted", name);
	hsd_port_conf_free(&p->conf);
	unsigned i = (unsigned)(p - d->ports);
	memmove(p, p + 1, (d->n_ports - i - 1) * sizeof(*p));
	d->n_ports--;
	return 0;
}

static int collect_row(const struct hs_fdb_info *e, void *arg)
{
	struct hsd_fdb_rows *rows = arg;
	if ((rows->static_of && (!e->is_static || e->port != rows->static_of)) ||
	    (rows->mac && memcmp(e->mac, rows->mac, 6)))
		return 0;
	if (rows->n == rows->cap) {
		size_t cap = rows->cap ? 2 * rows->cap : 64;
		struct hs_fdb_info *nv = realloc(rows->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		rows->v = nv;
		rows->cap = cap;
	}
	rows->v[rows->n++] = *e;
	return 0;
}

int hsd_fdb_rows(struct hsd *d, struct hsd_fdb_rows *rows)
{
	int rc = hs_fdb_dump(d->sw, collect_row, rows);
	if (rc) {
		free(rows->v);
		rows->v = NULL;
		rows->n = rows->cap = 0;
	}
	return rc;
}

void hsd_fmt_mac(const uint8_t m[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* The static FDB entries an operator gave a port are kept across its
 * being made again (the switch drops a deleted port's entries with it). */
/* Before port p goes: its static entries into *st (none if memory runs
 * out, said in the log). */
static void statics_save(struct hsd *d, const struct hsd_port *p, struct hsd_fdb_rows *st)
{
	*st = (struct hsd_fdb_rows){.static_of = p->port};
	if (hsd_fdb_rows(d, st))
		hsd_log(HS_LOG_ERROR, "port %s: out of memory keeping its static FDB entries",
			p->conf.name);
}

bool hsd_port_carries(const struct hsd_port_conf *c, uint16_t vid)
{
	if (c->vlan_mode != HS_VLAN_TRUNK)
		return vid == (c->vlan ? c->vlan : 1);
	if (vid == c->vlan || !c->n_trunks)
		return true;
	for (unsigned i = 0; i < c->n_trunks; i++)
		if (c->trunks[i] == vid)
			return true;
	return false;
}

/* After the port named is back: its static entries again, those in a
 * VLAN it still carries (one it left could match no frame, and would
 * keep the MAC from being learned where it is now). */
static void statics_restore(struct hsd *d, const char *name, struct hsd_fdb_rows *st)
{
	struct hsd_port *p = hsd_port_get(d, name);
	unsigned kept = 0;
	if (!p && st->n)
		hsd_log(HS_LOG_WARN, "port %s did not come back: its %zu static FDB entr%s "
			"went with it", name, st->n, st->n == 1 ? "y" : "ies");
	for (size_t i = 0; p && i < st->n; i++) {
		const struct hs_fdb_info *e = &st->v[i];
		char m[18];
		hsd_fmt_mac(e->mac, m);
		if (!hsd_port_carries(&p->conf, e->vid)) {
			hsd_log(HS_LOG_WARN, "port %s: static entry %s VLAN %u not kept: the port "
				"no longer carries VLAN %u", name, m, e->vid, e->vid);
			continue;
		}
		int rc = hs_fdb_add_static(d->sw, e->vid, e->mac, p->port);
		if (rc)
			hsd_log(HS_LOG_WARN, "port %s: static entry %s VLAN %u not kept: %s", name,
				m, e->vid, hs_strerror(rc));
		else
			kept++;
	}
	if (kept)
		hsd_log(HS_LOG_INFO, "port %s: %u static FDB entr%s kept", name, kept,
			kept == 1 ? "y" : "ies");
	free(st->v);
	*st = (struct hsd_fdb_rows){0};
}

/* After a port was made again with settings pc (or failed to be): its
 * static entries back, and if it is a tap the daemon made, a warning:
 * that is a new device, in the daemon's network namespace, and what the
 * old one had been given since (addresses, a namespace it was moved to)
 * is gone; the operator should hear of it where they look. */
static void came_back(struct hsd *d, const struct hsd_port_conf *pc, struct hsd_fdb_rows *st)
{
	if (hsd_port_get(d, pc->name) && pc->type == HSD_TAP && !pc->attach)
		hsd_log(HS_LOG_WARN, "port %s: tap %s is a new device now, in the daemon's "
			"network namespace: the old one's addresses, and a namespace it "
			"was moved to, are gone", pc->name, pc->ifname);
	statics_restore(d, pc->name, st);
}

int hsd_port_replace(struct hsd *d, const struct hsd_port_conf *pc, char *err, size_t errlen)
{
	struct hsd_port *p = hsd_port_get(d, pc->name);
	if (!p) {
		snprintf(err, errlen, "no port named %s", pc->name);
		return -ENOENT;
	}
	struct hsd_port_conf old;
	struct hsd_fdb_rows st;
	statics_save(d, p, &st);
	int rc = hsd_port_conf_copy(&old, &p->conf);
	if (!rc && (rc = hsd_port_del(d, pc->name)))
		hsd_port_conf_free(&old);
	if (rc) {
		free(st.v);
		snprintf(err, errlen, "port %s: %s", pc->name, hs_strerror(rc));
		return rc;
	}
	rc = hsd_port_add(d, pc, err, errlen);
	if (rc) {
		/* the new settings were refused (e.g. by the kernel): the port
		 * comes back as it was, so a bad change does not cost it */
		char why[256];
		if (hsd_port_add(d, &old, why, sizeof(why)))
			hsd_log(HS_LOG_ERROR, "port %s: the old settings failed too: %s",
				pc->name, why);
		else
			hsd_log(HS_LOG_WARN, "port %s: new settings refused; the old ones are "
				"back (its mirrors and learned MACs are gone)", pc->name);
	}
	came_back(d, rc ? &old : pc, &st);
	hsd_port_conf_free(&old);
	return rc;
}

uint32_t hsd_port_in_place(const struct hsd_port_conf *a, const struct hsd_port_conf *b)
{
	/* a with b's switch-side settings: if that equals b, nothing else
	 * changed */
	struct hsd_port_conf t = *a;
	t.vlan_mode = b->vlan_mode;
	t.vlan = b->vlan;
	t.trunks = b->trunks;
	t.n_trunks = b->n_trunks;
	t.mtu = b->mtu;
	t.mac_limit = b->mac_limit;
	t.learn = b->learn;
	t.flood = b->flood;
	json_t *rest = json_array();
	bool other = !rest || hsd_port_conf_diff(&t, b, rest);
	json_decref(rest);
	if (other)
		return 0;
	uint32_t bits = 0;
	if (a->vlan_mode != b->vlan_mode || a->vlan != b->vlan || a->n_trunks != b->n_trunks ||
	    (a->n_trunks && memcmp(a->trunks, b->trunks, a->n_trunks * sizeof(uint16_t))))
		bits |= HS_PORT_SET_VLAN;
	if (a->mtu != b->mtu) {
		/* the MTU a vhost-user port offers its guest is taken only when
		 * the port is made again (the guest reads it at connection); a
		 * tap device's is set where the device is (hsd_port_reconfigure) */
		if (a->type == HSD_VHOST_USER && (a->offer_mtu || b->offer_mtu))
			return 0;
		bits |= HS_PORT_SET_MTU;
	}
	if (a->mac_limit != b->mac_limit)
		bits |= HS_PORT_SET_MAC_LIMIT;
	if (a->learn != b->learn || a->flood != b->flood)
		bits |= HS_PORT_SET_FLAGS;
	return bits;
}

int hsd_port_reconfigure(struct hsd *d, const struct hsd_port_conf *pc, uint32_t bits,
			 char *err, size_t errlen)
{
	struct hsd_port *p = hsd_port_get(d, pc->name);
	if (!p) {
		snprintf(err, errlen, "no port named %s", pc->name);
		return -ENOENT;
	}
	struct hsd_port_conf nc;
	int rc = hsd_port_conf_copy(&nc, pc);
	if (rc) {
		snprintf(err, errlen, "port %s: out of memory", pc->name);
		return rc;
	}
	struct hs_port_config c;
	struct lib_cfgs b;
	to_lib(&nc, &c, &b);
	c.size = sizeof(c);
	/* a tap given an MTU has it on its device too, in whatever namespace
	 * the device was moved to; one the daemon made whose MTU is taken out
	 * of the file goes back to the default (1500, as a new device would
	 * have); an attached device without one keeps its own */
	bool dev = (bits & HS_PORT_SET_MTU) && nc.type == HSD_TAP &&
		   (nc.mtu_set || (p->conf.mtu_set && !nc.attach));
	if (dev && (rc = hs_tap_set_mtu(p->port, nc.mtu))) {
		snprintf(err, errlen, "port %s: the tap's MTU %u: %s", pc->name, nc.mtu,
			 hs_strerror(rc));
		hsd_port_conf_free(&nc);
		return rc;
	}
	rc = hs_port_reconfigure(p->port, &c, bits);
	if (rc && dev && (p->conf.mtu_set || !p->conf.attach))
		hs_tap_set_mtu(p->port, p->conf.mtu); /* the device as it was */
	if (rc) {
		snprintf(err, errlen, "port %s: %s", pc->name, hs_strerror(rc));
		hsd_port_conf_free(&nc);
		return rc;
	}
	if (bits & HS_PORT_SET_VLAN)
		hsd_captures_follow(d, &nc);
	hsd_port_conf_free(&p->conf);
	p->conf = nc;
	hsd_log(HS_LOG_INFO, "port %s changed in place", pc->name);
	return 0;
}

void hsd_ports_del_all(struct hsd *d)
{
	while (d->n_ports)
		hsd_port_del(d, d->ports[d->n_ports - 1].conf.name);
	free(d->ports);
	d->ports = NULL;
	d->cap_ports = 0;
}

/* Switch settings that only a restart changes. */
static void restart_needed(const struct hsd_conf *a, const struct hsd_conf *b,
			   bool ignore_socket, json_t *out)
{
#define R(cond, key)                                                        \
	do {                                                                \
		if (cond)                                                   \
			json_array_append_new(out, json_string(key));       \
	} while (0)
	R(strcmp(a->name, b->name), "switch.name");
	R(a->workers != b->workers, "switch.workers");
	R(a->n_cpus != b->n_cpus ||
		  (a->n_cpus && memcmp(a->cpus, b->cpus, a->n_cpus * sizeof(int))),
	  "switch.worker_cpus");
	R(a->flags != b->flags, "switch.polling");
	R(a->poll_us != b->poll_us, "switch.poll_us");
	R(a->burst != b->burst, "switch.burst");
	R(a->max_ports != b->max_ports, "switch.max_ports");
	R(a->fdb_capacity != b->fdb_capacity, "switch.fdb.capacity");
	R(a->fdb_aging_s != b->fdb_aging_s, "switch.fdb.aging_s");
	R(a->fdb_port_limit != b->fdb_port_limit, "switch.fdb.port_limit");
	R(a->backlog_frames != b->backlog_frames, "switch.backlog.frames");
	R(a->backlog_bytes != b->backlog_bytes, "switch.backlog.bytes");
	R(!ignore_socket && strcmp(a->socket, b->socket), "control.socket");
	R(a->socket_mode != b->socket_mode, "control.mode");
	R(a->socket_group_set != b->socket_group_set || a->socket_gid != b->socket_gid,
	  "control.group");
	R(a->syslog != b->syslog, "log.syslog");
	R((a->metrics_listen || b->metrics_listen) &&
		  (!a->metrics_listen || !b->metrics_listen ||
		   strcmp(a->metrics_listen, b->metrics_listen)),
	  "metrics.listen");
#undef R
}

static bool in_file(const struct hsd_conf *c, const char *name)
{
	for (unsigned i = 0; i < c->n_ports; i++)
		if (!strcmp(c->ports[i].name, name))
			return true;
	return false;
}

static bool listed(json_t *names, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(names, i, v) {
		if (!strcmp(json_string_value(v), name))
			return true;
	}
	return false;
}

static void failed(json_t *list, const char *name, const char *why)
{
	hsd_log(HS_LOG_ERROR, "reload: %s", why);
	json_array_append_new(list, json_pack("{s:s, s:s}", "port", name, "error", why));
}

static int reload(struct hsd *d, json_t **result, char *err, size_t errlen);

int hsd_reload(struct hsd *d, json_t **result, char *err, size_t errlen)
{
	/* SIGHUP or hsctl: systemd hears of both */
	hsd_notify("RELOADING=1");
	int rc = reload(d, result, err, errlen);
	hsd_notify("READY=1");
	return rc;
}

static int reload(struct hsd *d, json_t **result, char *err, size_t errlen)
{
	struct hsd_conf nc;
	int rc = hsd_conf_load(d->config_file, &nc, err, errlen);
	if (rc) {
		hsd_log(HS_LOG_ERROR, "reload rejected, running configuration kept: %s", err);
		return -EINVAL;
	}
	/* the static entries of ports made again, by their index in nc */
	struct hsd_fdb_rows *st = calloc(nc.n_ports ? nc.n_ports : 1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		hsd_log(HS_LOG_ERROR, "reload rejected, running configuration kept: %s", err);
		hsd_conf_free(&nc);
		return -ENOMEM;
	}
	json_t *added = json_array(), *removed = json_array(), *changed = json_array();
	json_t *fails = json_array(), *restart = json_array(), *in_place = json_array();
	restart_needed(&d->conf, &nc, d->socket_from_cmdline, restart); /* -s wins */
	unsigned unchanged = 0;
	char why[512];
	/* removals first, so that a path or device a removed port held can
	 * go to another port of the file */
	for (unsigned i = d->n_ports; i-- > 0;) {
		const char *name = d->ports[i].conf.name;
		if (in_file(&nc, name))
			continue;
		json_t *gone = json_string(name); /* name goes with the port */
		if ((rc = hsd_port_del(d, name))) {
			json_decref(gone);
			failed(fails, name, hs_strerror(rc));
		} else {
			json_array_append_new(removed, gone);
		}
	}
	/* changed ports go first, all of them, and come back below with the
	 * new ones: two ports that swap a path or device never clash */
	for (unsigned i = 0; i < nc.n_ports; i++) {
		const struct hsd_port_conf *pc = &nc.ports[i];
		struct hsd_port *p = hsd_port_get(d, pc->name);
		if (!p)
			continue;
		json_t *what = json_array();
		if (!hsd_port_conf_diff(&p->conf, pc, what)) {
			unchanged++;
			json_decref(what);
			continue;
		}
		char *list = json_dumps(what, JSON_COMPACT);
		hsd_log(HS_LOG_INFO, "reload: port %s changed: %s", pc->name, list ? list : "?");
		free(list);
		json_decref(what);
		json_array_append_new(changed, json_string(pc->name));
		uint32_t bits = hsd_port_in_place(&p->conf, pc);
		if (bits) {
			if (hsd_port_reconfigure(d, pc, bits, why, sizeof(why)))
				failed(fails, pc->name, why);
			else
				json_array_append_new(in_place, json_string(pc->name));
			continue;
		}
		statics_save(d, p, &st[i]);
		if ((rc = hsd_port_del(d, pc->name)))
			failed(fails, pc->name, hs_strerror(rc));
	}
	for (unsigned i = 0; i < nc.n_ports; i++) {
		const struct hsd_port_conf *pc = &nc.ports[i];
		if (hsd_port_get(d, pc->name))
			continue; /* unchanged, or a changed one that could not go */
		/* a port is listed as added once it is there (a changed one
		 * made again stays under changed) */
		int arc = hsd_port_add(d, pc, why, sizeof(why));
		if (arc)
			failed(fails, pc->name, why);
		if (listed(changed, pc->name))
			came_back(d, pc, &st[i]);
		else if (!arc)
			json_array_append_new(added, json_string(pc->name));
	}
	/* the running list in the file's order (ports added by hsctl and
	 * not in the file are gone by now) */
	for (unsigned i = 0, at = 0; i < nc.n_ports; i++) {
		struct hsd_port *p = hsd_port_get(d, nc.ports[i].name);
		if (!p)
			continue;
		struct hsd_port t = *p;
		*p = d->ports[at];
		d->ports[at++] = t;
	}
	if (!d->level_from_cmdline && nc.log_level != hsd_log_level()) {
		hsd_log_set_level(nc.log_level);
		hs_switch_set_log_level(d->sw, nc.log_level);
	}
	d->conf.log_level = nc.log_level;
	for (unsigned i = 0; i < nc.n_ports; i++)
		free(st[i].v); /* a changed port that could not go: it kept them */
	free(st);
	hsd_log(HS_LOG_INFO, "reload: %zu added, %zu removed, %zu changed, %u unchanged, "
		"%zu failed", json_array_size(added), json_array_size(removed),
		json_array_size(changed), unchanged, json_array_size(fails));
	if (json_array_size(restart)) {
		/* kept as they run until the next start: said where a log at
		 * "warn" shows it, and by name (SIGHUP has no other answer) */
		char names[512] = "";
		size_t at = 0, k;
		json_t *v;
		json_array_foreach(restart, k, v) {
			int w = snprintf(names + at, sizeof(names) - at, "%s%s", k ? ", " : "",
					 json_string_value(v));
			if (w < 0 || (size_t)w >= sizeof(names) - at)
				break;
			at += (size_t)w;
		}
		hsd_log(HS_LOG_WARN, "reload: changed, running as before until a restart: %s",
			names);
	}
	hsd_conf_free(&nc);
	*result = json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "added", added, "removed",
			    removed, "changed", changed, "in_place", in_place, "unchanged",
			    (json_int_t)unchanged, "failed", fails, "restart_needed", restart);
	return 0;
}

/* The switch of d.conf, attached to d.loop. */
int hsd_switch_start(struct hsd *d)
{
	const struct hsd_conf *c = &d->conf;
	struct hs_switch_config sc = {
		.name = c->name, .max_ports = c->max_ports, .burst = c->burst,
		.n_workers = c->workers, .fdb_capacity = c->fdb_capacity,
		.fdb_aging_s = c->fdb_aging_s ? c->fdb_aging_s : HS_FDB_AGING_NEVER,
		.fdb_port_limit = c->fdb_port_limit, .backlog_frames = c->backlog_frames,
		.backlog_bytes = c->backlog_bytes, .poll_us = c->poll_us, .flags = c->flags,
		.worker_cpus = c->n_cpus ? c->cpus : NULL, .log_fn = hsd_log_lib,
		.log_level = hsd_log_level()};
	int rc = hs_switch_create(&sc, &d->sw);
	if (rc) {
		hsd_log(HS_LOG_ERROR, "cannot create the switch: %s", hs_strerror(rc));
		return rc;
	}
	rc = hs_switch_attach(d->sw, d->loop);
	if (rc)
		hsd_log(HS_LOG_ERROR, "cannot attach the switch to the loop: %s",
			hs_strerror(rc));
	return rc;
}

uint64_t hsd_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
