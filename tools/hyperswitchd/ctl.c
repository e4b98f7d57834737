/*
 * ctl.c - the control socket: one JSON request per line, one JSON response
 * per line (docs/control.md). Runs on the daemon's loop; requests are
 * answered in order, each completely before the next is run, so a
 * command sees the state the previous one left; connections take turns
 * (a few requests each), so one client cannot hold the loop.
 *
 * The socket is the daemon's trust boundary for local users: it is owner
 * only (0600) unless the config opens it to a group, a line is at most
 * 64 KiB, connections are limited in number and idle time, and every
 * request is checked (unknown commands and arguments are errors).
 */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hsd.h"

#define LINE_MAX_BYTES 65536
#define MAX_CONNS 64
/* Of MAX_CONNS, kept for the daemon's own user (root): group members the
 * socket is opened to cannot lock the operator out. */
#define OWNER_CONNS 8
#define IDLE_MS 60000
/* A connection being shut down (after an error, a capture's end, or the
 * client's end of stream) whose client reads nothing of what is left
 * for this long goes. */
#define LINGER_MS 5000
/* Responses a client has not read: past this, its requests wait (reading
 * stops) until it reads; so a client that never reads costs this much. */
#define RESP_BACKLOG (1u << 20)
/* Requests one connection may have run in one turn of the loop, and the
 * time: past either, its other complete lines wait for the next turn
 * (reading stopped meanwhile), so that the switch's watches, signals and
 * other clients go between. All connections' turns together stop after
 * TURN_NS (one connection at least), the next turn starting with the
 * next connection. */
#define CONN_REQS 8
#define CONN_NS 1000000ull
#define TURN_NS 2000000ull
#define PROTO_MIN 1
#define PROTO_MAX 1

struct hsd_conn {
	uv_pipe_t pipe;
	uv_timer_t idle;
	struct hsd *d;
	struct hsd_conn *next;
	struct hsd_capture *capture; /* streaming a capture: requests ignored */
	size_t len;
	bool closing;
	bool ending;    /* shut down after what is queued (the linger timer runs) */
	bool throttled; /* reading stopped: RESP_BACKLOG unread */
	bool queued;    /* reading stopped: complete lines wait for the next turn */
	bool eof;       /* the client ended its side: answer what came, then end */
	bool error;     /* ending after a protocol error (counted as such) */
	size_t linger_left; /* ending: bytes unsent at the last look */
	int handles; /* open uv handles: freed at 0 */
	char buf[LINE_MAX_BYTES + 1];
};

struct hsd_ctl {
	uv_pipe_t server;
	uv_idle_t turn;  /* runs while a connection is queued */
	int handles;     /* server and turn: ctl freed at 0 */
	struct hsd_conn *conns;
	unsigned n_conns;
	unsigned rr;     /* where the next turn starts */
	struct hsd_ctl_stats st;
	uint64_t refused_logged_ns;
	uint64_t refused_since_log;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* ---- responses --------------------------------------------------------- */

struct req {
	struct hsd *d;
	struct hsd_conn *conn;
	json_t *args;    /* borrowed */
	json_t *result;  /* set on success */
	int err;         /* negative errno on failure */
	char msg[512];
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int req_fail(struct req *r, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->err = err;
	return err;
}

static json_t *error_obj(int err, const char *msg)
{
	const char *name = strerrorname_np(-err);
	return json_pack("{s:s, s:i, s:s}", "code", name ? name : "EIO", "errno", -err,
			 "message", msg);
}

/* ---- argument helpers ---------------------------------------------------- */

static int args_known(struct req *r, const char *const *known)
{
	const char *k;
	json_t *v;
	json_object_foreach(r->args, k, v) {
		bool ok = false;
		for (const char *const *q = known; *q; q++)
			ok |= !strcmp(*q, k);
		if (!ok)
			return req_fail(r, -EINVAL, "unknown argument \"%s\"", k);
	}
	return 0;
}

/* A string argument; NULL when absent (then an error if required). */
static int arg_str(struct req *r, const char *key, bool required, const char **out)
{
	json_t *v = json_object_get(r->args, key);
	*out = NULL;
	if (!v)
		return required ? req_fail(r, -EINVAL, "argument \"%s\" is required", key) : 0;
	if (!json_is_string(v))
		return req_fail(r, -EINVAL, "argument \"%s\" must be a string", key);
	*out = json_string_value(v);
	return 0;
}

static int arg_vlan(struct req *r, uint16_t *vid, bool *given)
{
	json_t *v = json_object_get(r->args, "vlan");
	if (given)
		*given = v != NULL;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > HS_VLAN_MAX)
		return req_fail(r, -EINVAL, "argument \"vlan\" must be 1..%d", HS_VLAN_MAX);
	*vid = (uint16_t)json_integer_value(v);
	return 0;
}

static int arg_port(struct req *r, const char *key, bool required, struct hsd_port **out)
{
	const char *name;
	int rc = arg_str(r, key, required, &name);
	*out = NULL;
	if (rc || !name)
		return rc;
	*out = hsd_port_get(r->d, name);
	if (!*out)
		return req_fail(r, -ENOENT, "no port named %s", name);
	return 0;
}

/* Exactly "xx:xx:xx:xx:xx:xx" (hex digits, either case). */
static int parse_mac(const char *s, uint8_t mac[6])
{
	if (!s || strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		const char *p = s + 3 * i;
		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]) ||
		    (i < 5 && p[2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)strtoul((char[3]){p[0], p[1], 0}, NULL, 16);
	}
	return 0;
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_version(struct req *r)
{
	static const char *const known[] = {NULL};
	if (args_known(r, known))
		return r->err;
	r->result = json_pack("{s:s, s:s, s:[i,i]}", "daemon", HS_VERSION_STRING, "library",
			      hs_version_string(), "protocol", PROTO_MIN, PROTO_MAX);
	return 0;
}

/* Per queue: what the VM-state-aware notification knows of the peer
 * (a Xen guest's vCPU state in dom0; "unknown": its own signals decide). */
static json_t *peer_state_json(hs_port_t *port)
{
	static const char *const names[] = {"unknown", "running", "blocked"};
	json_t *a = json_array();
	for (uint16_t q = 0; a && q < hs_port_n_queues(port); q++) {
		int st = hs_port_peer_state(port, q);
		json_array_append_new(a, json_string(st >= 0 && st <= 2 ? names[st] : "unknown"));
	}
	return a;
}

static json_t *port_json(struct hsd *d, struct hsd_port *p)
{
	const struct hsd_port_conf *c = &p->conf;
	struct hs_port_stats st;
	memset(&st, 0, sizeof(st));
	hs_port_get_stats(p->port, &st);
	json_t *trunks = hsd_trunks_json(c);
	json_t *peer;
	if (c->type == HSD_VHOST_USER) {
		uint64_t f = hs_vhost_user_features(p->port);
		char feat[24];
		snprintf(feat, sizeof(feat), "0x%llx", (unsigned long long)f);
		peer = json_pack("{s:s, s:s, s:b, s:s, s:b}", "path", c->path, "mode",
				 c->client ? "client" : "server", "connected",
				 hs_vhost_user_connected(p->port) == 1, "features", feat, "packed",
				 (f >> HS_VIRTIO_F_RING_PACKED) & 1);
	} else if (c->type == HSD_XEN) {
		peer = json_pack("{s:I, s:I, s:b}", "domid", (json_int_t)c->domid, "devid",
				 (json_int_t)c->devid, "connected", hs_port_link_up(p->port));
	} else if (c->type == HSD_VXLAN) {
		peer = json_pack("{s:s, s:I, s:i}", "local", c->local, "vni", (json_int_t)c->vni,
				 "dst_port", (int)c->dst_port);
		if (peer && c->follow)
			json_object_set_new(peer, "follow", json_string(c->follow));
		if (peer && c->underlay_if)
			json_object_set_new(peer, "underlay", json_string(c->underlay_if));
	} else if (c->type == HSD_UPLINK) {
		peer = json_pack("{s:s, s:s, s:b}", "ifname", c->ifname, "mode",
				 hs_uplink_mode(p->port), "offload", c->offload);
	} else {
		const char *ifn = hs_tap_ifname(p->port);
		peer = json_pack("{s:s, s:b}", "ifname", ifn ? ifn : c->ifname, "offload",
				 c->offload);
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:o, s:I, s:I, s:b, s:b, s:I, s:o, "
			 "s:o}",
			 "name", c->name, "type", hsd_port_type_name(c->type),
			 "link", hs_port_link_up(p->port) ? "up" : "down", "queues",
			 (int)hs_port_n_queues(p->port), "vlan_mode",
			 c->vlan_mode == HS_VLAN_TRUNK ? "trunk" : "access", "vlan", (int)c->vlan,
			 "trunks", trunks, "mtu", (json_int_t)c->mtu, "mac_limit",
			 (json_int_t)c->mac_limit, "learn", c->learn, "flood", c->flood, "macs",
			 (json_int_t)st.fdb_entries, "peer", peer, "config",
			 hsd_port_conf_json(c));
	if (o)
		json_object_update_new(o, json_pack("{s:I, s:I, s:s, s:o, s:o}", "link_changes",
						    (json_int_t)p->link_changes, "broken",
						    (json_int_t)p->broken, "last_broken",
						    p->last_broken, "peer_state",
						    peer_state_json(p->port), "mirror_of",
						    hsd_mirror_sources_json(d, c->name)));
	return o;
}

static int cmd_show(struct req *r)
{
	static const char *const known[] = {"port", NULL};
	struct hsd_port *only;
	if (args_known(r, known) || arg_port(r, "port", false, &only))
		return r->err;
	struct hsd *d = r->d;
	struct hs_switch_stats st;
	memset(&st, 0, sizeof(st));
	hs_switch_get_stats(d->sw, &st);
	json_t *ports = json_array();
	for (unsigned i = 0; i < d->n_ports; i++)
		if (!only || only == &d->ports[i])
			json_array_append_new(ports, port_json(d, &d->ports[i]));
	json_t *sw = json_pack(
		"{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:s}", "name",
		d->conf.name, "config", d->config_file, "pid", (int)getpid(), "uptime_s",
		(json_int_t)((hsd_now_ns() - d->start_ns) / 1000000000ull), "workers",
		(json_int_t)d->conf.workers, "workers_idle", (json_int_t)st.workers_idle, "burst",
		(json_int_t)d->conf.burst, "max_ports", (json_int_t)d->conf.max_ports,
		"fdb_capacity", (json_int_t)st.fdb_capacity, "fdb_aging_s",
		(json_int_t)d->conf.fdb_aging_s, "fdb_entries", (json_int_t)st.fdb_entries,
		"log_level", hsd_level_name(hsd_log_level()), "polling",
		(d->conf.flags & HS_SW_BUSY_POLL) ? "busy"
		: (d->conf.flags & HS_SW_NO_POLL) ? "off"
						  : "adaptive");
	r->result = json_pack("{s:o, s:o}", "switch", sw, "ports", ports);
	return 0;
}

static int cmd_port_add(struct req *r)
{
	static const char *const known[] = {"port", NULL};
	if (args_known(r, known))
		return r->err;
	json_t *obj = json_object_get(r->args, "port");
	if (!obj)
		return req_fail(r, -EINVAL, "argument \"port\" is required");
	struct hsd_port_conf pc;
	int rc = hsd_port_from_json(obj, &pc, r->msg, sizeof(r->msg));
	if (rc)
		return r->err = rc;
	rc = hsd_port_add(r->d, &pc, r->msg, sizeof(r->msg));
	if (!rc)
		r->result = json_pack("{s:s}", "port", pc.name);
	hsd_port_conf_free(&pc);
	return r->err = rc;
}

static int cmd_port_del(struct req *r)
{
	static const char *const known[] = {"name", NULL};
	struct hsd_port *p;
	if (args_known(r, known) || arg_port(r, "name", true, &p))
		return r->err;
	char *name = strdup(p->conf.name);
	int rc = name ? hsd_port_del(r->d, name) : -ENOMEM;
	if (rc)
		req_fail(r, rc, "port %s: %s", p->conf.name, hs_strerror(rc));
	else
		r->result = json_pack("{s:s}", "port", name);
	free(name);
	return rc;
}

static int cmd_port_set(struct req *r)
{
	struct hsd_port *p;
	if (arg_port(r, "name", true, &p))
		return r->err;
	json_t *settings = json_deep_copy(r->args);
	json_object_del(settings, "name");
	struct hsd_port_conf nc;
	int rc = hsd_port_update_json(&p->conf, settings, &nc, r->msg, sizeof(r->msg));
	json_decref(settings);
	if (rc)
		return r->err = rc;
	json_t *changed = json_array();
	bool in_place = false;
	if (hsd_port_conf_diff(&p->conf, &nc, changed)) {
		uint32_t bits = hsd_port_in_place(&p->conf, &nc);
		in_place = bits != 0;
		if (in_place)
			rc = hsd_port_reconfigure(r->d, &nc, bits, r->msg, sizeof(r->msg));
		else if (!(rc = hsd_ports_unique(r->d, &nc, nc.name, r->msg, sizeof(r->msg))))
			rc = hsd_port_replace(r->d, &nc, r->msg, sizeof(r->msg));
	}
	if (!rc)
		r->result = json_pack("{s:s, s:O, s:b}", "port", nc.name, "changed", changed,
				      "in_place", in_place);
	json_decref(changed);
	hsd_port_conf_free(&nc);
	return r->err = rc;
}

static int cmp_row(const void *a, const void *b)
{
	const struct hs_fdb_info *x = a, *y = b;
	if (x->vid != y->vid)
		return x->vid < y->vid ? -1 : 1;
	return memcmp(x->mac, y->mac, 6);
}

static int cmd_fdb_show(struct req *r)
{
	static const char *const known[] = {"port", "vlan", NULL};
	struct hsd_port *only;
	uint16_t vid = 0;
	bool by_vlan;
	if (args_known(r, known) || arg_port(r, "port", false, &only) ||
	    arg_vlan(r, &vid, &by_vlan))
		return r->err;
	struct hsd_fdb_rows rows = {0};
	int rc = hsd_fdb_rows(r->d, &rows);
	if (rc)
		return req_fail(r, rc, "reading the table: %s", hs_strerror(rc));
	if (rows.n) /* (an empty table: no array to sort, rows.v is NULL) */
		qsort(rows.v, rows.n, sizeof(*rows.v), cmp_row);
	json_t *list = json_array();
	for (size_t i = 0; i < rows.n; i++) {
		const struct hs_fdb_info *e = &rows.v[i];
		if ((only && e->port != only->port) || (by_vlan && e->vid != vid))
			continue;
		char mac[18];
		hsd_fmt_mac(e->mac, mac);
		json_array_append_new(list, json_pack("{s:s, s:i, s:s, s:b, s:I}", "mac", mac,
						      "vlan", (int)e->vid, "port",
						      hs_port_name(e->port), "static",
						      e->is_static, "idle_s",
						      (json_int_t)e->idle_s));
	}
	free(rows.v);
	r->result = json_pack("{s:o}", "entries", list);
	return 0;
}

static int mac_arg(struct req *r, uint8_t mac[6])
{
	const char *s;
	if (arg_str(r, "mac", true, &s))
		return r->err;
	if (parse_mac(s, mac))
		return req_fail(r, -EINVAL, "\"%s\" is not a MAC like 52:54:00:00:00:01", s);
	return 0;
}

/* The port of the static entry (vid, mac) other than `p`, if any. */
static const char *static_elsewhere(struct hsd *d, uint16_t vid, const uint8_t mac[6],
				    const struct hsd_port *p)
{
	struct hs_fdb_info e;
	if (hs_fdb_get(d->sw, vid, mac, &e) || !e.is_static || e.port == p->port)
		return NULL;
	return hs_port_name(e.port);
}

static int cmd_fdb_add(struct req *r)
{
	static const char *const known[] = {"mac", "port", "vlan", "replace", NULL};
	struct hsd_port *p;
	uint8_t mac[6];
	uint16_t vid = 1;
	bool vlan_given;
	if (args_known(r, known) || mac_arg(r, mac) || arg_port(r, "port", true, &p) ||
	    arg_vlan(r, &vid, &vlan_given))
		return r->err;
	json_t *rep = json_object_get(r->args, "replace");
	if (rep && !json_is_boolean(rep))
		return req_fail(r, -EINVAL, "argument \"replace\" must be true or false");
	const struct hsd_port_conf *c = &p->conf;
	/* without a VLAN: the port's own (an access port's, a trunk's native
	 * one), where an entry for it can match traffic */
	if (!vlan_given && c->vlan)
		vid = c->vlan;
	if (!hsd_port_carries(c, vid)) {
		char what[48];
		if (c->vlan_mode != HS_VLAN_TRUNK)
			snprintf(what, sizeof(what), "access VLAN %u", c->vlan ? c->vlan : 1);
		else
			snprintf(what, sizeof(what), "a trunk without it");
		return req_fail(r, -EINVAL, "port %s does not carry VLAN %u (%s): no frame could "
				"match the entry", c->name, vid, what);
	}
	const char *other = json_is_true(rep) ? NULL : static_elsewhere(r->d, vid, mac, p);
	if (other) {
		char m[18];
		hsd_fmt_mac(mac, m);
		return req_fail(r, -EEXIST, "%s in VLAN %u is static on port %s already "
				"(\"replace\": true moves it)", m, vid, other);
	}
	int rc = hs_fdb_add_static(r->d->sw, vid, mac, p->port);
	if (rc)
		return req_fail(r, rc, "%s", rc == -EINVAL ? "a multicast MAC cannot be static"
					     : rc == -EBUSY ? "the port is a mirror output"
							    : hs_strerror(rc));
	r->result = json_object();
	return 0;
}

/* Without a VLAN: the one VLAN the MAC has an entry in. 0, or an error
 * (none, or several: the caller must say which). */
static int vlan_of_mac(struct req *r, const uint8_t mac[6], uint16_t *vid)
{
	struct hsd_fdb_rows rows = {.mac = mac};
	if (hsd_fdb_rows(r->d, &rows))
		return req_fail(r, -ENOMEM, "out of memory");
	char m[18], list[128] = "";
	hsd_fmt_mac(mac, m);
	size_t at = 0;
	for (size_t i = 0; i < rows.n && at < sizeof(list); i++)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%u", i ? ", " : "",
				       rows.v[i].vid);
	size_t n = rows.n;
	if (n == 1)
		*vid = rows.v[0].vid;
	free(rows.v);
	if (!n)
		return req_fail(r, -ENOENT, "no entry for %s", m);
	if (n > 1)
		return req_fail(r, -EINVAL, "%s has entries in VLANs %s: say which (\"vlan\")", m,
				list);
	return 0;
}

static int cmd_fdb_del(struct req *r)
{
	static const char *const known[] = {"mac", "vlan", NULL};
	uint8_t mac[6];
	uint16_t vid = 1;
	bool given;
	if (args_known(r, known) || mac_arg(r, mac) || arg_vlan(r, &vid, &given))
		return r->err;
	if (!given && vlan_of_mac(r, mac, &vid))
		return r->err;
	int rc = hs_fdb_del(r->d->sw, vid, mac);
	if (rc == -ENOENT) {
		char m[18];
		hsd_fmt_mac(mac, m);
		return req_fail(r, rc, "no entry for %s in VLAN %u", m, vid);
	}
	if (rc)
		return req_fail(r, rc, "%s", hs_strerror(rc));
	r->result = json_object();
	return 0;
}

static int cmd_fdb_flush(struct req *r)
{
	static const char *const known[] = {"port", "static", NULL};
	struct hsd_port *p;
	if (args_known(r, known) || arg_port(r, "port", false, &p))
		return r->err;
	json_t *st = json_object_get(r->args, "static");
	if (st && !json_is_boolean(st))
		return req_fail(r, -EINVAL, "argument \"static\" must be true or false");
	int n = hs_fdb_flush(r->d->sw, p ? p->port : NULL,
			     json_is_true(st) ? HS_FDB_FLUSH_STATIC : 0);
	if (n < 0)
		return req_fail(r, n, "%s", hs_strerror(n));
	r->result = json_pack("{s:i}", "removed", n);
	return 0;
}

static json_t *drops_json(const uint64_t *drops)
{
	json_t *o = json_object();
	for (int i = 0; i < HS_DROP__COUNT; i++)
		json_object_set_new(o, hs_drop_reason_name((enum hs_drop_reason)i),
				    json_integer((json_int_t)drops[i]));
	return o;
}

static void backend_ctr(void *arg, const char *name, uint64_t v)
{
	json_object_set_new(arg, name, json_integer((json_int_t)v));
}

static json_t *port_stats_json(struct hsd_port *p)
{
	struct hs_port_stats s;
	memset(&s, 0, sizeof(s));
	hs_port_get_stats(p->port, &s);
	json_t *be = json_object();
	hs_port_backend_counters(p->port, backend_ctr, be);
#define C(f) #f, (json_int_t)s.f
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I, s:I, s:I, s:o, s:o}",
			 "name", p->conf.name, C(rx_packets), C(rx_bytes), C(tx_packets),
			 C(tx_bytes), C(rx_broadcast), C(rx_multicast), C(rx_flooded),
			 C(tx_notify), C(rx_notify), C(tx_backlogged), C(tx_gso_segments),
			 C(tx_csum_sw), C(tx_lock_sleeps), C(fdb_entries), C(fdb_limit_hits), "drops",
			 drops_json(s.drops), "backend", be);
#undef C
}

static int cmd_stats(struct req *r)
{
	static const char *const known[] = {"port", NULL};
	struct hsd_port *only;
	if (args_known(r, known) || arg_port(r, "port", false, &only))
		return r->err;
	struct hs_switch_stats s;
	memset(&s, 0, sizeof(s));
	uint64_t now = hsd_now_ns();
	hs_switch_get_stats(r->d->sw, &s);
	json_t *ports = json_array();
	for (unsigned i = 0; i < r->d->n_ports; i++)
		if (!only || only == &r->d->ports[i])
			json_array_append_new(ports, port_stats_json(&r->d->ports[i]));
#define C(f) #f, (json_int_t)s.f
	json_t *sw = json_pack("{s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			       "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			       C(rx_packets), C(rx_bytes), C(tx_packets), C(tx_bytes), "drops",
			       drops_json(s.drops), C(n_ports), C(fdb_entries), C(fdb_capacity),
			       C(fdb_learned), C(fdb_moved), C(fdb_aged), C(fdb_evicted),
			       C(fdb_static_refused), C(rounds), C(rounds_sender),
			       C(rounds_worker), C(handoffs), C(handbacks), C(worker_sleeps),
			       C(quiet_releases));
#undef C
	json_object_set_new(sw, "workers_idle", json_integer(s.workers_idle));
	r->result = json_pack("{s:I, s:o, s:o}", "time_ns", (json_int_t)now, "switch", sw,
			      "ports", ports);
	return 0;
}

static int cmd_log_level(struct req *r)
{
	static const char *const known[] = {"level", NULL};
	const char *lv;
	if (args_known(r, known) || arg_str(r, "level", false, &lv))
		return r->err;
	if (lv) {
		enum hs_log_level l;
		if (hsd_level_parse(lv, &l))
			return req_fail(r, -EINVAL, "\"%s\" is not error, warn, info or debug", lv);
		hsd_log_set_level(l);
		hs_switch_set_log_level(r->d->sw, l);
		hsd_log(HS_LOG_INFO, "log level set to %s", lv);
	}
	r->result = json_pack("{s:s}", "level", hsd_level_name(hsd_log_level()));
	return 0;
}

static int arg_dir(struct req *r, uint32_t *flags)
{
	const char *dir;
	if (arg_str(r, "direction", false, &dir))
		return r->err;
	if (hsd_dir_parse(dir, flags))
		return req_fail(r, -EINVAL, "direction \"%s\" is not rx, tx or both", dir);
	return 0;
}

/* mirror.add, and mirror.set (set: an existing one's direction) */
static int mirror_with_dir(struct req *r, bool set)
{
	static const char *const known[] = {"src", "dst", "direction", NULL};
	const char *src, *dst;
	uint32_t flags;
	if (args_known(r, known) || arg_str(r, "src", true, &src) ||
	    arg_str(r, "dst", true, &dst) || arg_dir(r, &flags))
		return r->err;
	int rc = (set ? hsd_mirror_set : hsd_mirror_add)(r->d, src, dst, flags, r->msg,
							 sizeof(r->msg));
	if (rc)
		return r->err = rc;
	r->result = json_pack("{s:s, s:s, s:s}", "src", src, "dst", dst, "direction",
			      hsd_dir_name(flags));
	return 0;
}

static int cmd_mirror_add(struct req *r)
{
	return mirror_with_dir(r, false);
}

static int cmd_mirror_set(struct req *r)
{
	return mirror_with_dir(r, true);
}

static int cmd_mirror_del(struct req *r)
{
	static const char *const known[] = {"src", "dst", NULL};
	const char *src, *dst;
	if (args_known(r, known) || arg_str(r, "src", true, &src) ||
	    arg_str(r, "dst", true, &dst))
		return r->err;
	int rc = hsd_mirror_del(r->d, src, dst, r->msg, sizeof(r->msg));
	if (rc)
		return r->err = rc;
	r->result = json_object();
	return 0;
}

static int cmd_mirror_show(struct req *r)
{
	static const char *const known[] = {NULL};
	if (args_known(r, known))
		return r->err;
	r->result = json_pack("{s:o}", "mirrors", hsd_mirrors_json(r->d));
	return 0;
}

static int cmd_capture(struct req *r)
{
	static const char *const known[] = {"port", "direction", "snaplen", NULL};
	const char *port;
	uint32_t flags, max = hsd_capture_snaplen_max(), snaplen = max;
	if (args_known(r, known) || arg_str(r, "port", true, &port) || arg_dir(r, &flags))
		return r->err;
	json_t *sl = json_object_get(r->args, "snaplen");
	if (sl) {
		if (!json_is_integer(sl) || json_integer_value(sl) < 64 ||
		    json_integer_value(sl) > max)
			return req_fail(r, -EINVAL, "snaplen must be 64..%u", max);
		snaplen = (uint32_t)json_integer_value(sl);
	}
	if (r->conn->capture)
		return req_fail(r, -EBUSY, "this connection captures already");
	int rc = hsd_capture_start(r->d, r->conn, port, flags, snaplen, r->msg, sizeof(r->msg));
	if (rc)
		return r->err = rc;
	r->result = json_pack("{s:s, s:i, s:I}", "port", port, "linktype", 1, "snaplen",
			      (json_int_t)snaplen);
	return 0;
}

static int cmd_reload(struct req *r)
{
	static const char *const known[] = {NULL};
	if (args_known(r, known))
		return r->err;
	int rc = hsd_reload(r->d, &r->result, r->msg, sizeof(r->msg));
	return r->err = rc;
}

static const struct {
	const char *name;
	int (*fn)(struct req *r);
} commands[] = {
	{"version", cmd_version},   {"show", cmd_show},         {"port.add", cmd_port_add},
	{"port.del", cmd_port_del}, {"port.set", cmd_port_set}, {"fdb.show", cmd_fdb_show},
	{"fdb.add", cmd_fdb_add},   {"fdb.del", cmd_fdb_del},   {"fdb.flush", cmd_fdb_flush},
	{"stats", cmd_stats},       {"log.level", cmd_log_level}, {"reload", cmd_reload},
	{"mirror.add", cmd_mirror_add}, {"mirror.del", cmd_mirror_del},
	{"mirror.set", cmd_mirror_set},
	{"mirror.show", cmd_mirror_show}, {"capture", cmd_capture},
};

/* Answers one request line. Returns the response; *close_after when the
 * connection cannot go on. */
static json_t *handle_line(struct hsd_conn *c, const char *line, size_t len, bool *close_after)
{
	struct hsd *d = c->d;
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *resp = json_object();
	json_object_set_new(resp, "version", json_integer(PROTO_MAX));
	if (!req || !json_is_object(req)) {
		char m[300];
		snprintf(m, sizeof(m), "not a JSON object: %s", req ? "another value" : jerr.text);
		json_object_set_new(resp, "ok", json_false());
		json_object_set_new(resp, "error", error_obj(-EPROTO, m));
		json_decref(req);
		*close_after = true;
		return resp;
	}
	json_t *id = json_object_get(req, "id");
	if (id)
		json_object_set(resp, "id", id);
	struct req r = {.d = d, .conn = c};
	json_t *ver = json_object_get(req, "version");
	json_t *cmd = json_object_get(req, "command");
	json_t *args = json_object_get(req, "args");
	const char *k;
	json_t *v;
	json_object_foreach(req, k, v) {
		if (strcmp(k, "version") && strcmp(k, "id") && strcmp(k, "command") &&
		    strcmp(k, "args")) {
			req_fail(&r, -EINVAL, "unknown request field \"%s\"", k);
			break;
		}
	}
	if (r.err) {
	} else if (ver && (!json_is_integer(ver) || json_integer_value(ver) < PROTO_MIN ||
			   json_integer_value(ver) > PROTO_MAX)) {
		req_fail(&r, -EPROTONOSUPPORT, "protocol versions %d..%d are spoken here",
			 PROTO_MIN, PROTO_MAX);
	} else if (!json_is_string(cmd)) {
		req_fail(&r, -EINVAL, "\"command\" (a string) is required");
		*close_after = true;
	} else if (args && !json_is_object(args)) {
		req_fail(&r, -EINVAL, "\"args\" must be an object");
	} else {
		json_t *empty = json_object();
		r.args = args ? args : empty;
		size_t i;
		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (!strcmp(commands[i].name, json_string_value(cmd)))
				break;
		if (i == sizeof(commands) / sizeof(commands[0]))
			req_fail(&r, -ENOSYS, "unknown command \"%s\"", json_string_value(cmd));
		else if (commands[i].fn(&r) && !r.err)
			r.err = -EIO;
		else if (!r.err && !r.result) /* json_pack failed: a bug or no memory */
			req_fail(&r, -EIO, "internal error: the result could not be built");
		hsd_log(HS_LOG_DEBUG, "control: %s: %s", json_string_value(cmd),
			r.err ? r.msg : "ok");
		json_decref(empty);
	}
	if (r.err) {
		json_decref(r.result);
		json_object_set_new(resp, "ok", json_false());
		json_t *e = error_obj(r.err, r.msg[0] ? r.msg : hs_strerror(r.err));
		if (r.err == -EPROTONOSUPPORT)
			json_object_set_new(e, "versions", json_pack("[i,i]", PROTO_MIN, PROTO_MAX));
		json_object_set_new(resp, "error", e);
	} else {
		json_object_set_new(resp, "ok", json_true());
		json_object_set_new(resp, "result", r.result ? r.result : json_object());
	}
	json_decref(req);
	return resp;
}

/* ---- connections ---------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h)
{
	struct hsd_conn *c = h->data;
	if (--c->handles == 0)
		free(c);
}

static void conn_close(struct hsd_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	struct hsd_ctl *ctl = c->d->ctl;
	for (struct hsd_conn **pp = &ctl->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	ctl->n_conns--;
	if (c->capture) {
		struct hsd_capture *cap = c->capture;
		c->capture = NULL;
		hsd_capture_conn_closed(cap);
	}
	uv_close((uv_handle_t *)&c->pipe, conn_handle_closed);
	uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
	(void)status;
	conn_close(req->data);
	free(req);
}

static void on_idle(uv_timer_t *t)
{
	struct hsd_conn *c = t->data;
	if (c->ending) {
		/* the linger is LINGER_MS without progress: a client reading
		 * what is left, however slowly, gets it all */
		size_t left = hsd_conn_pending(c);
		if (left && left < c->linger_left) {
			c->linger_left = left;
			uv_timer_start(&c->idle, on_idle, LINGER_MS, 0);
			return;
		}
		c->d->ctl->st.lingered += !c->error; /* (one close, one reason) */
		hsd_log(HS_LOG_DEBUG, "control: closing a connection whose client did not "
			"read its last %zu bytes in %d s", hsd_conn_pending(c), LINGER_MS / 1000);
	} else {
		c->d->ctl->st.idle++;
		hsd_log(HS_LOG_DEBUG, "control: closing a connection idle for %d s",
			IDLE_MS / 1000);
	}
	conn_close(c);
}

/* Shuts the connection down after what is queued; a client that reads
 * none of it for LINGER_MS loses the connection. */
void hsd_conn_end(struct hsd_conn *c)
{
	if (c->closing || c->ending)
		return;
	c->ending = true;
	c->queued = false;
	c->len = 0; /* nothing more is read or run */
	uv_read_stop((uv_stream_t *)&c->pipe);
	c->linger_left = hsd_conn_pending(c);
	uv_timer_start(&c->idle, on_idle, LINGER_MS, 0);
	uv_shutdown_t *sr = malloc(sizeof(*sr));
	if (!sr || uv_shutdown(sr, (uv_stream_t *)&c->pipe, shutdown_done)) {
		free(sr);
		conn_close(c);
		return;
	}
	sr->data = c;
}

struct wreq {
	uv_write_t w;
	char *text;
	struct hsd_conn *conn;
};

static void conn_next(struct hsd_conn *c);
static void on_turn(uv_idle_t *h);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* Write callbacks run before the connection's close callback (libuv
 * cancels pending writes first), so wr->conn is valid here. */
static void write_done(uv_write_t *w, int status)
{
	struct wreq *wr = (struct wreq *)w;
	struct hsd_conn *c = wr->conn;
	free(wr->text);
	free(wr);
	if (status < 0 && status != UV_ECANCELED) {
		hsd_log(HS_LOG_DEBUG, "control: write: %s", uv_strerror(status));
		/* the client is gone (EPIPE, ECONNRESET): what it sent and
		 * what it would be answered are dropped, not run */
		conn_close(c);
		return;
	}
	if (c->throttled && !c->closing && !c->ending &&
	    hsd_conn_pending(c) < RESP_BACKLOG / 4) {
		c->throttled = false;
		conn_next(c);
	}
}

static void conn_send(struct hsd_conn *c, json_t *resp, bool close_after)
{
	char *text = json_dumps(resp, JSON_COMPACT);
	struct wreq *wr = text ? malloc(sizeof(*wr)) : NULL;
	if (!wr) {
		free(text);
		conn_close(c);
		return;
	}
	size_t n = strlen(text);
	text[n] = '\n'; /* replaces the NUL: one line */
	wr->text = text;
	wr->conn = c;
	uv_buf_t b = uv_buf_init(text, (unsigned)n + 1);
	if (uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, write_done)) {
		free(text);
		free(wr);
		conn_close(c);
		return;
	}
	if (close_after) { /* (only after a protocol error) */
		c->d->ctl->st.errors++;
		c->error = true;
		hsd_conn_end(c);
	}
}

/* A response that is only an error. */
static json_t *error_resp(int err, const char *msg)
{
	return json_pack("{s:i, s:b, s:o}", "version", PROTO_MAX, "ok", 0, "error",
			 error_obj(err, msg));
}

/* An error line, then the end of the connection. */
static void conn_refuse(struct hsd_conn *c, int err, const char *msg)
{
	json_t *resp = error_resp(err, msg);
	conn_send(c, resp, true);
	json_decref(resp);
}

void hsd_conn_send_raw(struct hsd_conn *c, void *buf, size_t len)
{
	if (c->closing || c->ending) {
		free(buf);
		return;
	}
	struct wreq *wr = malloc(sizeof(*wr));
	if (!wr) {
		free(buf);
		return;
	}
	wr->text = buf;
	wr->conn = c;
	uv_buf_t b = uv_buf_init(buf, (unsigned)len);
	if (uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, write_done)) {
		free(buf);
		free(wr);
	}
}

size_t hsd_conn_pending(struct hsd_conn *c)
{
	return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

void hsd_conn_attach_capture(struct hsd_conn *c, struct hsd_capture *cap)
{
	c->capture = cap;
	uv_timer_stop(&c->idle); /* a capture may be quiet for long */
}

void hsd_conn_detach_capture(struct hsd_conn *c)
{
	c->capture = NULL;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)hint;
	struct hsd_conn *c = h->data;
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(LINE_MAX_BYTES + 1 - c->len));
}

/* Answers complete request lines in the buffer, in order: at most
 * CONN_REQS of them or CONN_NS of time, and none while the client has
 * RESP_BACKLOG of answers unread (write_done resumes). The idle timer
 * restarts only for a whole request, so a client dribbling bytes cannot
 * hold a connection. */
static void conn_process(struct hsd_conn *c)
{
	char *start = c->buf, *nl;
	uint64_t t0 = hsd_now_ns();
	unsigned done = 0;
	while (!c->closing && !c->ending && !c->capture &&
	       (nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
		if (hsd_conn_pending(c) > RESP_BACKLOG) {
			c->throttled = true;
			break;
		}
		if (done == CONN_REQS || (done && hsd_now_ns() - t0 > CONN_NS))
			break;
		bool close_after = false;
		uv_timer_again(&c->idle);
		/* a capture's response goes out before its first record: the
		 * records are written from later loop callbacks */
		json_t *resp = handle_line(c, start, (size_t)(nl - start), &close_after);
		c->d->ctl->st.requests++;
		done++;
		conn_send(c, resp, close_after);
		json_decref(resp);
		start = nl + 1;
	}
	if (c->closing || c->ending)
		return; /* (hsd_conn_end emptied the buffer) */
	if (c->capture) { /* the rest is a stream: what the client sends is ignored */
		c->len = 0;
		return;
	}
	c->len -= (size_t)(start - c->buf);
	memmove(c->buf, start, c->len);
}

static bool conn_has_line(const struct hsd_conn *c)
{
	return memchr(c->buf, '\n', c->len) != NULL;
}

/* After requests ran: reading again, or waiting for the next turn (more
 * complete lines), for the client to read (throttled), or the end. */
static void conn_next(struct hsd_conn *c)
{
	if (c->closing || c->ending)
		return;
	c->queued = false;
	bool read = true;
	if (c->capture) {
		/* read on, only to see the close */
	} else if (c->throttled) {
		read = false;
	} else if (conn_has_line(c)) {
		c->queued = true;
		read = false;
		uv_idle_start(&c->d->ctl->turn, on_turn);
	} else if (c->len > LINE_MAX_BYTES) {
		char m[96];
		snprintf(m, sizeof(m), "request longer than %d bytes", LINE_MAX_BYTES);
		hsd_log(HS_LOG_WARN, "control: %s: connection closed", m);
		conn_refuse(c, -EMSGSIZE, m);
		return;
	} else if (c->eof) {
		/* what came before the end of stream is answered; a line the
		 * end cut short cannot be */
		if (c->len)
			conn_refuse(c, -EPROTO, "request cut short by the end of the stream");
		else
			hsd_conn_end(c);
		return;
	}
	/* (starting a stream that reads already changes nothing) */
	if (read)
		uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
	else
		uv_read_stop((uv_stream_t *)&c->pipe);
}

/* One turn: each queued connection runs its share, from where the last
 * turn stopped, until TURN_NS is spent. */
static void on_turn(uv_idle_t *h)
{
	struct hsd_ctl *ctl = h->data;
	struct hsd_conn *q[MAX_CONNS + 1];
	unsigned n = 0;
	for (struct hsd_conn *c = ctl->conns; c && n < MAX_CONNS + 1; c = c->next)
		if (c->queued)
			q[n++] = c;
	if (!n) {
		uv_idle_stop(h);
		return;
	}
	uint64_t t0 = hsd_now_ns();
	unsigned i = 0;
	for (; i < n; i++) {
		struct hsd_conn *c = q[(ctl->rr + i) % n];
		if (i && hsd_now_ns() - t0 > TURN_NS)
			break;
		if (c->closing || !c->queued)
			continue; /* (closed by another's request this turn) */
		conn_process(c);
		conn_next(c);
	}
	ctl->rr += i;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	(void)buf;
	struct hsd_conn *c = s->data;
	if (n == 0 || c->closing || c->ending)
		return;
	if (n < 0) {
		/* A client that ends its side (shutdown(SHUT_WR), as socat or
		 * nc -N do after a batch) is answered first; any other error,
		 * or the end while capturing, closes. */
		if (n != UV_EOF || c->capture) {
			conn_close(c);
			return;
		}
		c->eof = true;
	} else if (c->capture) { /* only the close matters now */
		c->len = 0;
		return;
	} else {
		c->len += (size_t)n;
	}
	/* (the requests run in the loop's next turn, within its budget:
	 * run here, each connection read would get its own) */
	conn_next(c);
}

static uid_t peer_uid(struct hsd_conn *c)
{
	uv_os_fd_t fd;
	struct ucred cr;
	socklen_t l = sizeof(cr);
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l))
		return (uid_t)-1;
	return cr.uid;
}

/* Too many connections: the new one is told why and closed. Logged once,
 * then as a count at most every 10 s. */
static void refuse_busy(struct hsd_conn *c, bool owner)
{
	struct hsd_ctl *ctl = c->d->ctl;
	char m[128];
	snprintf(m, sizeof(m), "too many control connections (%d%s)",
		 owner ? MAX_CONNS : MAX_CONNS - OWNER_CONNS,
		 owner ? "" : " for users other than the daemon's");
	json_t *resp = error_resp(-EBUSY, m);
	char *line = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	json_decref(resp);
	if (line) { /* a new socket has room: written now, before the close */
		size_t k = strlen(line);
		line[k] = '\n'; /* replaces the NUL: one line */
		uv_buf_t b = uv_buf_init(line, (unsigned)k + 1);
		(void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
		free(line);
	}
	ctl->st.refused++;
	ctl->refused_since_log++;
	uint64_t now = hsd_now_ns();
	if (!ctl->refused_logged_ns || now - ctl->refused_logged_ns >= 10000000000ull) {
		hsd_log(HS_LOG_WARN, "control: %s: refused %llu connection%s", m,
			(unsigned long long)ctl->refused_since_log,
			ctl->refused_since_log == 1 ? "" : "s (since the last such line)");
		ctl->refused_logged_ns = now;
		ctl->refused_since_log = 0;
	}
	conn_close(c);
}

static void on_connect(uv_stream_t *server, int status)
{
	struct hsd *d = server->data;
	if (status < 0)
		return;
	struct hsd_conn *c = malloc(sizeof(*c));
	if (!c)
		return;
	memset(c, 0, offsetof(struct hsd_conn, buf));
	c->d = d;
	uv_pipe_init(d->loop, &c->pipe, 0);
	uv_timer_init(d->loop, &c->idle);
	c->pipe.data = c->idle.data = c;
	c->handles = 2;
	c->next = d->ctl->conns;
	d->ctl->conns = c;
	d->ctl->n_conns++;
	if (uv_accept(server, (uv_stream_t *)&c->pipe)) {
		conn_close(c);
		return;
	}
	bool owner = peer_uid(c) == geteuid();
	if (d->ctl->n_conns > (owner ? MAX_CONNS : MAX_CONNS - OWNER_CONNS)) {
		refuse_busy(c, owner);
		return;
	}
	d->ctl->st.accepted++;
	uv_timer_start(&c->idle, on_idle, IDLE_MS, IDLE_MS);
	uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

void hsd_ctl_stats(struct hsd *d, struct hsd_ctl_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!d->ctl)
		return;
	*st = d->ctl->st;
	st->connections = d->ctl->n_conns;
}

/* ---- the listening socket ------------------------------------------------- */

static int mkdir_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	for (char *p = dir + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(dir, 0755) && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/* A socket file nobody listens on is a leftover; one that answers belongs
 * to a running daemon. */
static int take_path(const char *path)
{
	struct stat st;
	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int live = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	if (live)
		return -EADDRINUSE;
	return unlink(path) ? -errno : 0;
}

int hsd_ctl_start(struct hsd *d, char *err, size_t errlen)
{
	struct hsd_ctl *ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return -ENOMEM;
	snprintf(ctl->path, sizeof(ctl->path), "%s", d->conf.socket);
	int rc = mkdir_parent(ctl->path);
	if (!rc)
		rc = take_path(ctl->path);
	if (rc) {
		snprintf(err, errlen, "control socket %s: %s", ctl->path,
			 rc == -EADDRINUSE ? "another hyperswitchd answers on it" : strerror(-rc));
		free(ctl);
		return rc;
	}
	uv_pipe_init(d->loop, &ctl->server, 0);
	uv_idle_init(d->loop, &ctl->turn);
	ctl->server.data = d;
	ctl->turn.data = ctl;
	ctl->handles = 2;
	/* created owner-only, then opened as configured, before listen() */
	mode_t old = umask(0177);
	rc = uv_pipe_bind(&ctl->server, ctl->path);
	umask(old);
	if (!rc && chmod(ctl->path, d->conf.socket_mode))
		rc = -errno;
	if (!rc && d->conf.socket_group_set && chown(ctl->path, (uid_t)-1, d->conf.socket_gid))
		rc = -errno;
	if (!rc)
		rc = uv_listen((uv_stream_t *)&ctl->server, 16, on_connect);
	if (rc) {
		snprintf(err, errlen, "control socket %s: %s", ctl->path, uv_strerror(rc));
		uv_close((uv_handle_t *)&ctl->server, NULL);
		uv_close((uv_handle_t *)&ctl->turn, NULL);
		unlink(ctl->path);
		uv_run(d->loop, UV_RUN_NOWAIT);
		free(ctl);
		return rc;
	}
	d->ctl = ctl;
	hsd_log(HS_LOG_INFO, "control socket %s (mode %04o)", ctl->path, d->conf.socket_mode);
	return 0;
}

static void ctl_handle_closed(uv_handle_t *h)
{
	struct hsd_ctl *ctl = h->data;
	if (--ctl->handles == 0)
		free(ctl);
}

void hsd_ctl_stop(struct hsd *d)
{
	if (!d->ctl)
		return;
	while (d->ctl->conns)
		conn_close(d->ctl->conns);
	unlink(d->ctl->path);
	/* (the server's data becomes the ctl: no connection comes now) */
	d->ctl->server.data = d->ctl;
	uv_close((uv_handle_t *)&d->ctl->server, ctl_handle_closed);
	uv_close((uv_handle_t *)&d->ctl->turn, ctl_handle_closed);
	d->ctl = NULL;
}
