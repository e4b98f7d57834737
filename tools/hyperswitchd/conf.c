/*
 * conf.c - reading and checking hyperswitchd's configuration.
 *
 * The file is libconfig (Debian's libconfig: typed values, comments, line
 * numbers in errors); ports also arrive as JSON objects from hsctl. Both
 * go through one reader (struct src) so a key means the same in both, and
 * every key is checked: unknown keys, wrong types and values out of range
 * are errors that name the place and the setting.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"

/* ---- one reader over libconfig groups and JSON objects ------------------ */

struct src {
	const config_setting_t *cs; /* a libconfig group, or */
	json_t *js;                 /* a JSON object */
	const char *file;           /* libconfig: for messages */
	const char *what;           /* "port vm1", "switch", ... */
	char *err;
	size_t errlen;
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int fail(const struct src *s, const char *key, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const config_setting_t *at = s->cs;
	if (s->cs && key && config_setting_get_member(s->cs, key))
		at = config_setting_get_member(s->cs, key);
	char where[300] = "";
	if (s->cs)
		snprintf(where, sizeof(where), "%s:%d: ", s->file ? s->file : "?",
			 at ? config_setting_source_line(at) : 0);
	snprintf(s->err, s->errlen, "%s%s%s%s: %s", where, s->what,
		 key ? ": " : "", key ? key : "", msg);
	return -EINVAL;
}

enum vtype { V_ABSENT, V_INT, V_BOOL, V_STR, V_LIST, V_GROUP, V_OTHER };

static enum vtype vtype_cs(const config_setting_t *m)
{
	switch (config_setting_type(m)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64: return V_INT;
	case CONFIG_TYPE_BOOL: return V_BOOL;
	case CONFIG_TYPE_STRING: return V_STR;
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST: return V_LIST;
	case CONFIG_TYPE_GROUP: return V_GROUP;
	default: return V_OTHER;
	}
}

static enum vtype vtype_js(const json_t *v)
{
	if (json_is_integer(v))
		return V_INT;
	if (json_is_boolean(v))
		return V_BOOL;
	if (json_is_string(v))
		return V_STR;
	if (json_is_array(v))
		return V_LIST;
	if (json_is_object(v))
		return V_GROUP;
	return V_OTHER;
}

static enum vtype src_type(const struct src *s, const char *key)
{
	if (s->cs) {
		const config_setting_t *m = config_setting_get_member(s->cs, key);
		return m ? vtype_cs(m) : V_ABSENT;
	}
	json_t *v = json_object_get(s->js, key);
	return v ? vtype_js(v) : V_ABSENT;
}

static const char *type_name(enum vtype t)
{
	static const char *n[] = {"absent", "an integer", "a boolean", "a string",
				  "a list", "a group", "something else"};
	return n[t];
}

/* Every key of the group must be in `known` (NULL-terminated). */
static int src_known(const struct src *s, const char *const *known, const char *hint)
{
	const char *bad = NULL;
	if (s->cs) {
		for (int i = 0; !bad && i < config_setting_length(s->cs); i++) {
			const char *k = config_setting_name(config_setting_get_elem(s->cs, (unsigned)i));
			bad = k;
			for (const char *const *q = known; *q; q++)
				if (!strcmp(*q, k))
					bad = NULL;
		}
	} else {
		const char *k;
		json_t *v;
		json_object_foreach(s->js, k, v) {
			bad = k;
			for (const char *const *q = known; *q; q++)
				if (!strcmp(*q, k))
					bad = NULL;
			if (bad)
				break;
		}
	}
	if (bad)
		return fail(s, bad, "unknown setting%s%s", hint ? " " : "", hint ? hint : "");
	return 0;
}

static int want(const struct src *s, const char *key, enum vtype t, bool *present)
{
	enum vtype got = src_type(s, key);
	*present = got != V_ABSENT;
	if (got == V_ABSENT || got == t)
		return 0;
	return fail(s, key, "must be %s, not %s", type_name(t), type_name(got));
}

/* An integer in [min, max]; *out keeps its value when the key is absent. */
static int get_int(const struct src *s, const char *key, long long min, long long max,
		   long long *out)
{
	bool present;
	int rc = want(s, key, V_INT, &present);
	if (rc || !present)
		return rc;
	long long v = s->cs ? config_setting_get_int64(config_setting_get_member(s->cs, key))
			    : json_integer_value(json_object_get(s->js, key));
	if (v < min || v > max)
		return fail(s, key, "%lld is out of range %lld..%lld", v, min, max);
	*out = v;
	return 0;
}

static int get_u32(const struct src *s, const char *key, long long min, long long max,
		   uint32_t *out)
{
	long long v = *out;
	int rc = get_int(s, key, min, max, &v);
	*out = (uint32_t)v;
	return rc;
}

static int get_u16(const struct src *s, const char *key, long long min, long long max,
		   uint16_t *out)
{
	long long v = *out;
	int rc = get_int(s, key, min, max, &v);
	*out = (uint16_t)v;
	return rc;
}

static int get_bool(const struct src *s, const char *key, bool *out)
{
	bool present;
	int rc = want(s, key, V_BOOL, &present);
	if (rc || !present)
		return rc;
	*out = s->cs ? config_setting_get_bool(config_setting_get_member(s->cs, key))
		     : json_is_true(json_object_get(s->js, key));
	return 0;
}

/* A string of 1..maxlen bytes; NULL when absent. Points into the source. */
static int get_str(const struct src *s, const char *key, size_t maxlen, const char **out)
{
	bool present;
	int rc = want(s, key, V_STR, &present);
	if (rc || !present)
		return rc;
	const char *v = s->cs ? config_setting_get_string(config_setting_get_member(s->cs, key))
			      : json_string_value(json_object_get(s->js, key));
	if (!v || !*v)
		return fail(s, key, "must not be empty");
	if (strlen(v) > maxlen)
		return fail(s, key, "longer than %zu characters", maxlen);
	/* the control protocol shows every setting in JSON, which is UTF-8 */
	json_t *probe = json_string(v);
	if (!probe)
		return fail(s, key, "not valid UTF-8");
	json_decref(probe);
	*out = v;
	return 0;
}

static int get_group(const struct src *s, const char *key, struct src *sub)
{
	bool present;
	int rc = want(s, key, V_GROUP, &present);
	*sub = *s;
	sub->what = key;
	if (s->cs)
		sub->cs = present ? config_setting_get_member(s->cs, key) : NULL;
	else
		sub->js = present ? json_object_get(s->js, key) : NULL;
	return rc;
}

static bool src_empty(const struct src *s)
{
	return !s->cs && !s->js;
}

/* List elements, as ints or strings. */
static unsigned list_len(const struct src *s, const char *key)
{
	if (s->cs)
		return (unsigned)config_setting_length(config_setting_get_member(s->cs, key));
	return (unsigned)json_array_size(json_object_get(s->js, key));
}

static enum vtype list_elem(const struct src *s, const char *key, unsigned i,
			    long long *iv, const char **sv)
{
	if (s->cs) {
		const config_setting_t *e =
			config_setting_get_elem(config_setting_get_member(s->cs, key), i);
		enum vtype t = vtype_cs(e);
		if (t == V_INT)
			*iv = config_setting_get_int64(e);
		else if (t == V_STR)
			*sv = config_setting_get_string(e);
		return t;
	}
	json_t *e = json_array_get(json_object_get(s->js, key), i);
	enum vtype t = vtype_js(e);
	if (t == V_INT)
		*iv = json_integer_value(e);
	else if (t == V_STR)
		*sv = json_string_value(e);
	return t;
}

/* Permission bits as three octal digits, "660" as chmod takes them, or
 * four with a leading 0, "0660" (a digit dropped, "66", would grant the
 * world what the owner was meant to have: refused). */
static int get_mode(const struct src *s, const char *key, uint32_t *out)
{
	const char *v = NULL;
	int rc = get_str(s, key, 8, &v);
	if (rc || !v)
		return rc;
	size_t n = strlen(v);
	unsigned long m = strtoul(v, NULL, 8);
	if (n < 3 || n > 4 || (n == 4 && v[0] != '0') || strspn(v, "01234567") != n)
		return fail(s, key, "\"%s\" is not a mode of 3 octal digits like \"660\" "
			    "(or \"0660\")", v);
	*out = (uint32_t)m;
	return 0;
}

static int parse_id(const char *v, bool user, uint32_t *out)
{
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	if (!*end && end != v && n < UINT32_MAX) {
		*out = (uint32_t)n;
		return 0;
	}
	if (user) {
		struct passwd *pw = getpwnam(v);
		if (!pw)
			return -ENOENT;
		*out = pw->pw_uid;
	} else {
		struct group *gr = getgrnam(v);
		if (!gr)
			return -ENOENT;
		*out = gr->gr_gid;
	}
	return 0;
}

/* One spelling per socket path, so that two spellings of one socket are
 * caught as the same path: "." and empty parts dropped, ".." taken back
 * lexically, then the directory resolved (symlinks too) when it exists.
 * `in` is absolute. Returns a malloc'd string, NULL when out of memory or
 * too long for a socket. */
static char *normalize_path(const char *in)
{
	size_t n = strlen(in);
	char *tmp = malloc(n + 2);
	if (!tmp)
		return NULL;
	size_t o = 0;
	for (const char *p = in; *p;) {
		while (*p == '/')
			p++;
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (!len)
			break;
		if (len == 1 && p[0] == '.') {
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (o > 0 && tmp[--o] != '/')
				;
		} else {
			tmp[o++] = '/';
			memcpy(tmp + o, p, len);
			o += len;
		}
		p += len;
	}
	tmp[o] = 0;
	char *slash = strrchr(tmp, '/');
	char real[PATH_MAX];
	char *out = NULL;
	if (slash && slash != tmp) {
		*slash = 0;
		if (realpath(tmp, real)) {
			size_t rl = strlen(real), bl = strlen(slash + 1);
			out = malloc(rl + bl + 2);
			if (out)
				snprintf(out, rl + bl + 2, "%s/%s", strcmp(real, "/") ? real : "",
					 slash + 1);
		}
		*slash = '/';
	}
	if (!out)
		out = strdup(tmp);
	free(tmp);
	if (out && strlen(out) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		free(out);
		return NULL;
	}
	return out;
}

static char *dup_or_null(const char *v)
{
	return v ? strdup(v) : NULL;
}

/* ---- levels ----------------------------------------------------------- */

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* "ADDR:PORT" or "[ADDR6]:PORT". */
int hsd_listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	size_t nd = strlen(colon + 1);
	if (!nd || nd > 5 || strspn(colon + 1, "0123456789") != nd)
		return -EINVAL; /* digits only: ": 9477" is no port */
	unsigned long port = strtoul(colon + 1, NULL, 10);
	if (!port || port > 65535)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	memset(ss, 0, sizeof(*ss));
	size_t hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = 0;
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
			return -EINVAL;
		*sl = sizeof(*a);
		return 0;
	}
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	/* ":PORT" (every IPv4 address, as Prometheus' own
	 * --web.listen-address writes it) and "localhost:PORT" (127.0.0.1;
	 * no other name is looked up) */
	if (!*host)
		a->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (!strcmp(host, "localhost"))
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
		return -EINVAL;
	*sl = sizeof(*a);
	return 0;
}

int hsd_metrics_check_listen(const char *s)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	return hsd_listen_parse(s, &ss, &sl);
}

const char *hsd_level_name(enum hs_log_level l)
{
	return (unsigned)l < 4 ? level_names[l] : "?";
}

int hsd_level_parse(const char *s, enum hs_log_level *out)
{
	for (int i = 0; i < 4; i++)
		if (s && !strcmp(s, level_names[i])) {
			*out = (enum hs_log_level)i;
			return 0;
		}
	return -EINVAL;
}

/* ---- ports ----------------------------------------------------------- */

static const char *const common_keys[] = {"name", "type", "vlan_mode", "vlan", "trunks",
					  "mtu", "mac_limit", "learn", "flood"};
static const char *const vu_keys[] = {"path", "client", "queues", "reconnect_ms",
				      "socket_mode", "socket_owner", "socket_group",
				      "packed", "in_order", "guest_announce", "offer_mtu",
				      "vcpu_state", "vcpu_idle_ms"};
static const char *const tap_keys[] = {"ifname", "attach", "up", "offload", "staged",
				       "uring", "queues", "ring"};
static const char *const xen_keys[] = {"domid", "devid", "backend_domid", "queues",
				       "vcpu_state"};
static const char *const vxlan_keys[] = {"local", "vni", "remotes", "dst_port",
					 "src_port_min", "src_port_max", "underlay_mtu",
					 "ageing_s", "max_entries", "ttl", "tos",
					 "remote_learning", "udp_csum", "df", "follow",
					 "follow_any_port", "export", "underlay"};
static const char *const uplink_keys[] = {"ifname", "queues", "offload", "promisc",
					  "qdisc_bypass", "rx_blocks", "rx_block_kib",
					  "tx_slots", "block_tov_ms", "mode", "xdp_frames",
					  "xdp_macs"};

const char *hsd_port_type_name(enum hsd_port_type t)
{
	return t == HSD_VHOST_USER ? "vhost-user" : t == HSD_TAP ? "tap"
		: t == HSD_XEN ? "xen" : t == HSD_VXLAN ? "vxlan" : "uplink";
}
#define NKEYS(a) (sizeof(a) / sizeof((a)[0]))

static bool name_ok(const char *n)
{
	for (const char *c = n; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr("_.:-", *c)))
			return false;
	return true;
}

static int get_trunks(const struct src *s, struct hsd_port_conf *p)
{
	bool present;
	int rc = want(s, "trunks", V_LIST, &present);
	if (rc || !present)
		return rc;
	if (p->vlan_mode != HS_VLAN_TRUNK)
		return fail(s, "trunks", "only for vlan_mode \"trunk\"");
	static uint8_t seen[HS_VLAN_MAX + 1];
	memset(seen, 0, sizeof(seen));
	unsigned n = list_len(s, "trunks"), count = 0;
	if (!n)
		return fail(s, "trunks", "empty list (leave it out for every VLAN)");
	for (unsigned i = 0; i < n; i++) {
		long long iv = 0, lo, hi;
		const char *sv = NULL;
		enum vtype t = list_elem(s, "trunks", i, &iv, &sv);
		if (t == V_INT) {
			lo = hi = iv;
		} else if (t == V_STR) {
			char *e1, *e2;
			lo = strtoll(sv, &e1, 10);
			if (*e1 != '-' || e1 == sv)
				return fail(s, "trunks", "\"%s\" is not a range like \"100-199\"", sv);
			hi = strtoll(e1 + 1, &e2, 10);
			if (*e2 || e2 == e1 + 1 || hi < lo)
				return fail(s, "trunks", "\"%s\" is not a range like \"100-199\"", sv);
		} else {
			return fail(s, "trunks", "items must be VLAN ids or \"A-B\" ranges");
		}
		if (lo < 1 || hi > HS_VLAN_MAX)
			return fail(s, "trunks", "VLAN ids are 1..%d", HS_VLAN_MAX);
		for (long long v = lo; v <= hi; v++)
			if (!seen[v]) {
				seen[v] = 1;
				count++;
			}
	}
	p->trunks = malloc(count * sizeof(*p->trunks));
	if (!p->trunks)
		return -ENOMEM;
	p->n_trunks = 0;
	for (unsigned v = 1; v <= HS_VLAN_MAX; v++)
		if (seen[v])
			p->trunks[p->n_trunks++] = (uint16_t)v;
	return 0;
}

static void port_defaults(struct hsd_port_conf *p)
{
	memset(p, 0, sizeof(*p));
	p->vlan_mode = HS_VLAN_ACCESS;
	p->mtu = 1500;
	p->learn = p->flood = true;
	p->packed = p->in_order = p->guest_announce = p->vcpu_state = true;
	p->queues = 1;
	p->reconnect_ms = 500;
	p->vcpu_idle_ms = 100;
	p->socket_mode = 0600;
	p->up = p->offload = p->uring = true;
	p->ring = 64;
	p->dst_port = 4789;
	p->src_port_min = 32768;
	p->src_port_max = 60999;
	p->underlay_mtu = 1500;
	p->ageing_s = 300;
	p->max_entries = 4096;
	p->ttl = 64;
	p->remote_learning = p->udp_csum = true;
	p->promisc = true;
	p->rx_blocks = 16;
	p->rx_block_kib = 256;
	p->tx_slots = 60;
	p->block_tov_ms = 1;
	p->xdp_frames = 2048;
	p->xdp_macs = 8192;
}

/* An IPv4 or IPv6 unicast address, written back in its usual form;
 * *family gets its family. false if it is none. */
static bool vtep_addr(const char *s, int *family, char out[INET6_ADDRSTRLEN])
{
	unsigned char a[16];
	if (inet_pton(AF_INET, s, a) == 1) {
		*family = AF_INET;
		if ((a[0] & 0xf0) == 0xe0 || !(a[0] | a[1] | a[2] | a[3]))
			return false;
	} else if (inet_pton(AF_INET6, s, a) == 1) {
		static const unsigned char zero[16];
		*family = AF_INET6;
		if (a[0] == 0xff || !memcmp(a, zero, 16))
			return false;
	} else {
		return false;
	}
	return inet_ntop(*family, a, out, INET6_ADDRSTRLEN) != NULL;
}

bool hsd_remotes_next(const char **q, char out[64])
{
	if (!*q || !**q)
		return false;
	size_t k = strcspn(*q, ",");
	snprintf(out, 64, "%.*s", (int)k, *q);
	*q += k + ((*q)[k] == ',');
	return true;
}

/* "remotes": a list of VTEP addresses of the local address's family. */
static int get_remotes(const struct src *s, struct hsd_port_conf *p, int family)
{
	bool present;
	int rc = want(s, "remotes", V_LIST, &present);
	if (rc || !present)
		return rc;
	unsigned n = list_len(s, "remotes");
	if (n > 256)
		return fail(s, "remotes", "%u VTEPs: at most 256", n);
	size_t cap = (size_t)n * INET6_ADDRSTRLEN + 1, len = 0;
	char *all = malloc(cap);
	if (!all)
		return -ENOMEM;
	all[0] = '\0';
	for (unsigned i = 0; i < n; i++) {
		long long iv;
		const char *sv = NULL;
		char a[INET6_ADDRSTRLEN];
		int f;
		if (list_elem(s, "remotes", i, &iv, &sv) != V_STR || !vtep_addr(sv, &f, a) ||
		    f != family) {
			free(all);
			return fail(s, "remotes", "item %u is not a unicast %s address", i + 1,
				    family == AF_INET ? "IPv4" : "IPv6");
		}
		/* each once */
		const char *q = all;
		char seen[64];
		while (hsd_remotes_next(&q, seen))
			if (!strcmp(seen, a)) {
				free(all);
				return fail(s, "remotes", "%s is there twice", a);
			}
		len += (size_t)snprintf(all + len, cap - len, "%s%s", len ? "," : "", a);
	}
	free(p->remotes);
	p->remotes = all;
	return 0;
}

/* The settings of the port's type; everything else in `p` is already
 * the default or the base (port.set). */
static int port_fill(const struct src *s, struct hsd_port_conf *p)
{
	int rc;
	const char *v = NULL;
	if ((rc = get_str(s, "vlan_mode", 8, &v)))
		return rc;
	if (v) {
		if (!strcmp(v, "access"))
			p->vlan_mode = HS_VLAN_ACCESS;
		else if (!strcmp(v, "trunk"))
			p->vlan_mode = HS_VLAN_TRUNK;
		else
			return fail(s, "vlan_mode", "\"%s\" is neither \"access\" nor \"trunk\"", v);
		if (p->vlan_mode == HS_VLAN_ACCESS) {
			free(p->trunks);
			p->trunks = NULL;
			p->n_trunks = 0;
		}
	}
	if (p->vlan_mode == HS_VLAN_ACCESS && !p->vlan)
		p->vlan = 1;
	if ((rc = get_u16(s, "vlan", p->vlan_mode == HS_VLAN_ACCESS ? 1 : 0, HS_VLAN_MAX,
			  &p->vlan)))
		return rc;
	if (src_type(s, "trunks") != V_ABSENT) {
		free(p->trunks);
		p->trunks = NULL;
		p->n_trunks = 0;
	}
	if (src_type(s, "mtu") != V_ABSENT)
		p->mtu_set = true;
	if ((rc = get_trunks(s, p)) || (rc = get_u32(s, "mtu", 68, 65517, &p->mtu)) ||
	    (rc = get_u32(s, "mac_limit", 0, UINT32_MAX, &p->mac_limit)) ||
	    (rc = get_bool(s, "learn", &p->learn)) || (rc = get_bool(s, "flood", &p->flood)))
		return rc;
	const char *const *keys = p->type == HSD_VHOST_USER ? vu_keys
				  : p->type == HSD_TAP	  ? tap_keys
				  : p->type == HSD_XEN	  ? xen_keys
				  : p->type == HSD_UPLINK ? uplink_keys
							  : vxlan_keys;
	size_t nk = p->type == HSD_VHOST_USER ? NKEYS(vu_keys)
		    : p->type == HSD_TAP     ? NKEYS(tap_keys)
		    : p->type == HSD_XEN     ? NKEYS(xen_keys)
		    : p->type == HSD_UPLINK  ? NKEYS(uplink_keys)
					     : NKEYS(vxlan_keys);
	const char *known[NKEYS(common_keys) + NKEYS(vxlan_keys) + 1];
	size_t n = 0;
	for (size_t i = 0; i < NKEYS(common_keys); i++)
		known[n++] = common_keys[i];
	for (size_t i = 0; i < nk; i++)
		known[n++] = keys[i];
	known[n] = NULL;
	char of[32];
	snprintf(of, sizeof(of), "of %s ports", hsd_port_type_name(p->type));
	if ((rc = src_known(s, known, of)))
		return rc;
	if (p->type == HSD_VHOST_USER) {
		const char *path = NULL, *owner = NULL, *group = NULL;
		if ((rc = get_str(s, "path", sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
				  &path)) ||
		    (rc = get_bool(s, "client", &p->client)) ||
		    (rc = get_u16(s, "queues", 1, 32, &p->queues)) ||
		    (rc = get_u32(s, "reconnect_ms", 1, 3600000, &p->reconnect_ms)) ||
		    (rc = get_mode(s, "socket_mode", &p->socket_mode)) ||
		    (rc = get_str(s, "socket_owner", 64, &owner)) ||
		    (rc = get_str(s, "socket_group", 64, &group)) ||
		    (rc = get_bool(s, "packed", &p->packed)) ||
		    (rc = get_bool(s, "in_order", &p->in_order)) ||
		    (rc = get_bool(s, "guest_announce", &p->guest_announce)) ||
		    (rc = get_bool(s, "offer_mtu", &p->offer_mtu)) ||
		    (rc = get_bool(s, "vcpu_state", &p->vcpu_state)) ||
		    (rc = get_u32(s, "vcpu_idle_ms", 0, 86400000, &p->vcpu_idle_ms)))
			return rc;
		if (path) {
			if (path[0] != '/')
				return fail(s, "path", "\"%s\" is not an absolute path", path);
			free(p->path);
			if (!(p->path = normalize_path(path)))
				return fail(s, "path", "\"%s\" is too long for a socket", path);
			if (!p->path[0])
				return fail(s, "path", "\"%s\" names no file", path);
		}
		if (!p->path)
			return fail(s, "path", "required for vhost-user ports");
		if (owner) {
			free(p->socket_owner);
			p->socket_owner = strdup(owner);
		}
		if (group) {
			free(p->socket_group);
			p->socket_group = strdup(group);
		}
		p->socket_owner_set = p->socket_owner || p->socket_group;
		p->socket_uid = (uint32_t)getuid();
		p->socket_gid = (uint32_t)getgid();
		if (p->socket_owner && parse_id(p->socket_owner, true, &p->socket_uid))
			return fail(s, "socket_owner", "no user \"%s\"", p->socket_owner);
		if (p->socket_group && parse_id(p->socket_group, false, &p->socket_gid))
			return fail(s, "socket_group", "no group \"%s\"", p->socket_group);
		if (p->client && (p->socket_owner_set || p->socket_mode != 0600))
			return fail(s, "socket_mode", "socket_mode/owner/group are for server mode "
				    "(the VMM owns a client port's socket)");
		if (p->offer_mtu && p->mtu > 65535)
			return fail(s, "offer_mtu", "mtu %u cannot be offered", p->mtu);
	} else if (p->type == HSD_XEN) {
		/* domain ids below DOMID_FIRST_RESERVED (0x7ff0) */
		bool has_domid = src_type(s, "domid") != V_ABSENT;
		if ((rc = get_u32(s, "domid", 1, 0x7fef, &p->domid)) ||
		    (rc = get_u32(s, "devid", 0, 0xffff, &p->devid)) ||
		    (rc = get_u32(s, "backend_domid", 0, 0x7fef, &p->backend_domid)) ||
		    (rc = get_u16(s, "queues", 1, HS_MAX_QUEUES, &p->queues)) ||
		    (rc = get_bool(s, "vcpu_state", &p->vcpu_state)))
			return rc;
		if (!has_domid && !p->domid)
			return fail(s, "domid", "required for xen ports (the guest's domain)");
		if (p->domid == p->backend_domid)
			return fail(s, "domid", "the guest cannot be the back-end's own domain %u",
				    p->domid);
	} else if (p->type == HSD_VXLAN) {
		const char *local = NULL, *follow = NULL, *exp = NULL, *under = NULL;
		bool has_vni = src_type(s, "vni") != V_ABSENT;
		if ((rc = get_str(s, "local", INET6_ADDRSTRLEN - 1, &local)) ||
		    (rc = get_str(s, "follow", 15, &follow)) ||
		    (rc = get_str(s, "export", 15, &exp)) ||
		    (rc = get_str(s, "underlay", 15, &under)) ||
		    (rc = get_bool(s, "follow_any_port", &p->follow_any_port)) ||
		    (rc = get_u32(s, "vni", 1, 0xffffff, &p->vni)) ||
		    (rc = get_u16(s, "dst_port", 1, 65535, &p->dst_port)) ||
		    (rc = get_u16(s, "src_port_min", 1, 65535, &p->src_port_min)) ||
		    (rc = get_u16(s, "src_port_max", 1, 65535, &p->src_port_max)) ||
		    (rc = get_u16(s, "underlay_mtu", 576, 65535, &p->underlay_mtu)) ||
		    (rc = get_u32(s, "ageing_s", 1, 86400 * 365, &p->ageing_s)) ||
		    (rc = get_u32(s, "max_entries", 1, 1u << 20, &p->max_entries)) ||
		    (rc = get_u16(s, "ttl", 1, 255, &p->ttl)) ||
		    (rc = get_u16(s, "tos", 0, 255, &p->tos)) ||
		    (rc = get_bool(s, "remote_learning", &p->remote_learning)) ||
		    (rc = get_bool(s, "udp_csum", &p->udp_csum)) ||
		    (rc = get_bool(s, "df", &p->df)))
			return rc;
		if (follow) {
			free(p->follow);
			if (!(p->follow = strdup(follow)))
				return -ENOMEM;
		}
		if (exp) {
			if (!name_ok(exp) || strchr(exp, ':'))
				return fail(s, "export", "\"%s\" is not a valid device name", exp);
			free(p->export_port);
			if (!(p->export_port = strdup(exp)))
				return -ENOMEM;
		}
		if (under) {
			if (!name_ok(under) || strchr(under, ':'))
				return fail(s, "underlay", "\"%s\" is not a valid device name",
					    under);
			free(p->underlay_if);
			if (!(p->underlay_if = strdup(under)))
				return -ENOMEM;
		}
		if ((p->export_port || p->follow_any_port) && !p->follow)
			return fail(s, p->export_port ? "export" : "follow_any_port",
				    "goes with follow (the Linux vxlan device)");
		int family = 0;
		char a[INET6_ADDRSTRLEN];
		if (local) {
			if (!vtep_addr(local, &family, a))
				return fail(s, "local", "\"%s\" is not a unicast IPv4 or IPv6 address",
					    local);
			free(p->local);
			p->local = strdup(a);
		}
		if (!p->local)
			return fail(s, "local", "required for vxlan ports (the VTEP's address)");
		if (!local && !vtep_addr(p->local, &family, a))
			return fail(s, "local", "\"%s\" is not an address", p->local);
		if (!has_vni && !p->vni)
			return fail(s, "vni", "required for vxlan ports (1..16777215)");
		if (p->src_port_min > p->src_port_max)
			return fail(s, "src_port_min", "%u is above src_port_max %u",
				    p->src_port_min, p->src_port_max);
		if (family == AF_INET6 && !p->udp_csum)
			return fail(s, "udp_csum", "an IPv6 underlay needs UDP checksums");
		if (src_type(s, "remotes") != V_ABSENT || (p->remotes && local)) {
			/* a new local address: the list is checked again */
			if (src_type(s, "remotes") == V_ABSENT) {
				const char *q = p->remotes;
				char item[64];
				int f;
				while (hsd_remotes_next(&q, item))
					if (!vtep_addr(item, &f, a) || f != family)
						return fail(s, "remotes", "%s is not of the local "
							    "address's family", item);
			} else if ((rc = get_remotes(s, p, family))) {
				return rc;
			}
		}
	} else if (p->type == HSD_UPLINK) {
		const char *ifname = NULL;
		if ((rc = get_str(s, "ifname", 15, &ifname)) ||
		    (rc = get_u16(s, "queues", 1, 16, &p->queues)) ||
		    (rc = get_bool(s, "offload", &p->offload)) ||
		    (rc = get_bool(s, "promisc", &p->promisc)) ||
		    (rc = get_bool(s, "qdisc_bypass", &p->qdisc_bypass)) ||
		    (rc = get_u16(s, "rx_blocks", 2, 256, &p->rx_blocks)) ||
		    (rc = get_u32(s, "rx_block_kib", 128, 4096, &p->rx_block_kib)) ||
		    (rc = get_u16(s, "tx_slots", 15, 1020, &p->tx_slots)) ||
		    (rc = get_u16(s, "block_tov_ms", 1, 1000, &p->block_tov_ms)) ||
		    (rc = get_u32(s, "xdp_frames", 64, 32768, &p->xdp_frames)) ||
		    (rc = get_u32(s, "xdp_macs", 1, 1 << 20, &p->xdp_macs)))
			return rc;
		if (p->rx_block_kib & (p->rx_block_kib - 1))
			return fail(s, "rx_block_kib", "%u is not a power of two", p->rx_block_kib);
		if (p->xdp_frames & (p->xdp_frames - 1))
			return fail(s, "xdp_frames", "%u is not a power of two", p->xdp_frames);
		const char *mode = NULL;
		if ((rc = get_str(s, "mode", 16, &mode)))
			return rc;
		if (mode && strcmp(mode, "auto") && strcmp(mode, "packet") && strcmp(mode, "xdp") &&
		    strcmp(mode, "xdp-generic") && strcmp(mode, "xdp-zerocopy"))
			return fail(s, "mode",
				    "\"%s\" is not auto, packet, xdp, xdp-zerocopy or xdp-generic",
				    mode);
		if (mode) {
			free(p->uplink_mode);
			p->uplink_mode = strdup(mode);
			if (!p->uplink_mode)
				return -ENOMEM;
		}
		if (ifname) {
			free(p->ifname);
			p->ifname = strdup(ifname);
		}
		if (!p->ifname)
			return fail(s, "ifname", "required for uplink ports (the host interface)");
		if (!name_ok(p->ifname) || strchr(p->ifname, ':'))
			return fail(s, "ifname", "\"%s\" is not a valid device name", p->ifname);
	} else {
		const char *ifname = NULL;
		if ((rc = get_str(s, "ifname", 15, &ifname)) ||
		    (rc = get_bool(s, "attach", &p->attach)) || (rc = get_bool(s, "up", &p->up)) ||
		    (rc = get_bool(s, "offload", &p->offload)) ||
		    (rc = get_bool(s, "staged", &p->staged)) ||
		    (rc = get_bool(s, "uring", &p->uring)) ||
		    (rc = get_u16(s, "queues", 1, HS_MAX_QUEUES, &p->queues)) ||
		    (rc = get_u16(s, "ring", 1, 4096, &p->ring)))
			return rc;
		if (ifname) {
			free(p->ifname);
			p->ifname = strdup(ifname);
		}
		if (!p->ifname) {
			if (strlen(p->name) > 15)
				return fail(s, "ifname", "required: the name \"%s\" is longer than "
					    "a device name (15)", p->name);
			p->ifname = strdup(p->name);
		}
		if (!name_ok(p->ifname) || strchr(p->ifname, ':'))
			return fail(s, "ifname", "\"%s\" is not a valid device name", p->ifname);
	}
	return 0;
}

static int port_parse(const struct src *s0, struct hsd_port_conf *p)
{
	struct src s = *s0;
	port_defaults(p);
	const char *name = NULL, *type = NULL;
	int rc = get_str(&s, "name", HS_PORT_NAME_MAX - 1, &name);
	if (rc)
		return rc;
	if (!name)
		return fail(&s, "name", "required");
	if (!name_ok(name))
		return fail(&s, "name", "\"%s\" has characters other than A-Z a-z 0-9 _ . : -",
			    name);
	char what[64];
	snprintf(what, sizeof(what), "port %s", name);
	s.what = what;
	p->name = strdup(name);
	if ((rc = get_str(&s, "type", 16, &type)))
		return rc;
	if (!type)
		return fail(&s, "type", "required (\"vhost-user\", \"tap\", \"xen\", \"vxlan\" or "
			    "\"uplink\")");
	if (!strcmp(type, "vhost-user"))
		p->type = HSD_VHOST_USER;
	else if (!strcmp(type, "tap"))
		p->type = HSD_TAP;
	else if (!strcmp(type, "xen"))
		p->type = HSD_XEN;
	else if (!strcmp(type, "vxlan"))
		p->type = HSD_VXLAN;
	else if (!strcmp(type, "uplink"))
		p->type = HSD_UPLINK;
	else
		return fail(&s, "type", "\"%s\" is not a port type (vhost-user, tap, xen, vxlan, "
			    "uplink)",
			    type);
	return port_fill(&s, p);
}

int hsd_port_check_unique(const struct hsd_port_conf *p, const struct hsd_port_conf *o,
			  unsigned n, const char *skip, char *err, size_t errlen)
{
	for (unsigned i = 0; i < n; i++) {
		if (skip && !strcmp(o[i].name, skip))
			continue;
		const char *clash = NULL;
		if (!strcmp(o[i].name, p->name))
			clash = "name";
		else if (p->path && o[i].path && !strcmp(p->path, o[i].path))
			clash = "path";
		else if (p->ifname && o[i].ifname && !strcmp(p->ifname, o[i].ifname))
			clash = "ifname";
		else if (p->type == HSD_XEN && o[i].type == HSD_XEN && p->domid == o[i].domid &&
			 p->devid == o[i].devid && p->backend_domid == o[i].backend_domid)
			clash = "vif (domid, devid)";
		else if (p->type == HSD_VXLAN && o[i].type == HSD_VXLAN &&
			 !strcmp(p->local, o[i].local) && p->dst_port == o[i].dst_port &&
			 p->vni == o[i].vni)
			clash = "VNI on its VTEP (local, dst_port, vni)";
		if (clash && !strcmp(clash, "name")) {
			snprintf(err, errlen, "port %s: another port has this name", p->name);
			return -EEXIST;
		}
		if (clash) {
			snprintf(err, errlen, "port %s: %s is the same as port %s's", p->name,
				 clash, o[i].name);
			return -EEXIST;
		}
	}
	return 0;
}

int hsd_port_from_json(json_t *obj, struct hsd_port_conf *p, char *err, size_t errlen)
{
	struct src s = {.js = obj, .what = "port", .err = err, .errlen = errlen};
	if (!json_is_object(obj)) {
		port_defaults(p);
		return fail(&s, NULL, "must be an object");
	}
	int rc = port_parse(&s, p);
	if (rc)
		hsd_port_conf_free(p);
	return rc;
}

int hsd_port_update_json(const struct hsd_port_conf *base, json_t *obj,
			 struct hsd_port_conf *out, char *err, size_t errlen)
{
	char what[64];
	snprintf(what, sizeof(what), "port %s", base->name);
	struct src s = {.js = obj, .what = what, .err = err, .errlen = errlen};
	int rc = hsd_port_conf_copy(out, base);
	if (rc)
		return rc;
	if (src_type(&s, "name") != V_ABSENT || src_type(&s, "type") != V_ABSENT)
		rc = fail(&s, NULL, "name and type cannot change (delete and add the port)");
	else
		rc = port_fill(&s, out);
	if (rc)
		hsd_port_conf_free(out);
	return rc;
}

void hsd_port_conf_free(struct hsd_port_conf *p)
{
	free(p->name);
	free(p->trunks);
	free(p->path);
	free(p->socket_owner);
	free(p->socket_group);
	free(p->ifname);
	free(p->local);
	free(p->remotes);
	free(p->follow);
	free(p->export_port);
	free(p->underlay_if);
	free(p->uplink_mode);
	memset(p, 0, sizeof(*p));
}

int hsd_port_conf_copy(struct hsd_port_conf *d, const struct hsd_port_conf *s)
{
	*d = *s;
	d->name = dup_or_null(s->name);
	d->path = dup_or_null(s->path);
	d->socket_owner = dup_or_null(s->socket_owner);
	d->socket_group = dup_or_null(s->socket_group);
	d->ifname = dup_or_null(s->ifname);
	d->local = dup_or_null(s->local);
	d->remotes = dup_or_null(s->remotes);
	d->uplink_mode = dup_or_null(s->uplink_mode);
	d->follow = dup_or_null(s->follow);
	d->export_port = dup_or_null(s->export_port);
	d->underlay_if = dup_or_null(s->underlay_if);
	d->trunks = NULL;
	if (s->n_trunks) {
		d->trunks = malloc(s->n_trunks * sizeof(*d->trunks));
		if (d->trunks)
			memcpy(d->trunks, s->trunks, s->n_trunks * sizeof(*d->trunks));
	}
	if (!d->name || (s->path && !d->path) || (s->ifname && !d->ifname) ||
	    (s->socket_owner && !d->socket_owner) || (s->socket_group && !d->socket_group) ||
	    (s->n_trunks && !d->trunks) || (s->local && !d->local) ||
	    (s->remotes && !d->remotes) || (s->follow && !d->follow) ||
	    (s->uplink_mode && !d->uplink_mode) || (s->export_port && !d->export_port) ||
	    (s->underlay_if && !d->underlay_if)) {
		hsd_port_conf_free(d);
		return -ENOMEM;
	}
	return 0;
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

bool hsd_port_conf_diff(const struct hsd_port_conf *a, const struct hsd_port_conf *b,
			json_t *changed)
{
	size_t before = json_array_size(changed);
#define D(cond, key)                                                             \
	do {                                                                     \
		if (cond)                                                        \
			json_array_append_new(changed, json_string(key));        \
	} while (0)
	D(a->type != b->type, "type");
	D(a->vlan_mode != b->vlan_mode, "vlan_mode");
	D(a->vlan != b->vlan, "vlan");
	D(a->n_trunks != b->n_trunks ||
		  (a->n_trunks && memcmp(a->trunks, b->trunks, a->n_trunks * sizeof(uint16_t))),
	  "trunks");
	D(a->mtu != b->mtu, "mtu");
	D(a->mac_limit != b->mac_limit, "mac_limit");
	D(a->learn != b->learn, "learn");
	D(a->flood != b->flood, "flood");
	if (a->type == b->type && a->type == HSD_VHOST_USER) {
		D(!str_eq(a->path, b->path), "path");
		D(a->client != b->client, "client");
		D(a->queues != b->queues, "queues");
		D(a->reconnect_ms != b->reconnect_ms, "reconnect_ms");
		D(a->socket_mode != b->socket_mode, "socket_mode");
		D(a->socket_owner_set != b->socket_owner_set || a->socket_uid != b->socket_uid,
		  "socket_owner");
		D(a->socket_owner_set != b->socket_owner_set || a->socket_gid != b->socket_gid,
		  "socket_group");
		D(a->packed != b->packed, "packed");
		D(a->in_order != b->in_order, "in_order");
		D(a->guest_announce != b->guest_announce, "guest_announce");
		D(a->offer_mtu != b->offer_mtu, "offer_mtu");
		D(a->vcpu_state != b->vcpu_state, "vcpu_state");
		D(a->vcpu_idle_ms != b->vcpu_idle_ms, "vcpu_idle_ms");
	} else if (a->type == b->type && a->type == HSD_XEN) {
		D(a->domid != b->domid, "domid");
		D(a->devid != b->devid, "devid");
		D(a->backend_domid != b->backend_domid, "backend_domid");
		D(a->queues != b->queues, "queues");
		D(a->vcpu_state != b->vcpu_state, "vcpu_state");
	} else if (a->type == b->type && a->type == HSD_VXLAN) {
		D(!str_eq(a->local, b->local), "local");
		D(a->vni != b->vni, "vni");
		D(!str_eq(a->remotes, b->remotes), "remotes");
		D(!str_eq(a->follow, b->follow), "follow");
		D(!str_eq(a->export_port, b->export_port), "export");
		D(!str_eq(a->underlay_if, b->underlay_if), "underlay");
		D(a->follow_any_port != b->follow_any_port, "follow_any_port");
		D(a->dst_port != b->dst_port, "dst_port");
		D(a->src_port_min != b->src_port_min, "src_port_min");
		D(a->src_port_max != b->src_port_max, "src_port_max");
		D(a->underlay_mtu != b->underlay_mtu, "underlay_mtu");
		D(a->ageing_s != b->ageing_s, "ageing_s");
		D(a->max_entries != b->max_entries, "max_entries");
		D(a->ttl != b->ttl, "ttl");
		D(a->tos != b->tos, "tos");
		D(a->remote_learning != b->remote_learning, "remote_learning");
		D(a->udp_csum != b->udp_csum, "udp_csum");
		D(a->df != b->df, "df");
	} else if (a->type == b->type && a->type == HSD_UPLINK) {
		D(!str_eq(a->ifname, b->ifname), "ifname");
		D(a->queues != b->queues, "queues");
		D(a->offload != b->offload, "offload");
		D(a->promisc != b->promisc, "promisc");
		D(a->qdisc_bypass != b->qdisc_bypass, "qdisc_bypass");
		D(a->rx_blocks != b->rx_blocks, "rx_blocks");
		D(a->rx_block_kib != b->rx_block_kib, "rx_block_kib");
		D(a->tx_slots != b->tx_slots, "tx_slots");
		D(a->block_tov_ms != b->block_tov_ms, "block_tov_ms");
		D(!str_eq(a->uplink_mode, b->uplink_mode), "mode");
		D(a->xdp_frames != b->xdp_frames, "xdp_frames");
		D(a->xdp_macs != b->xdp_macs, "xdp_macs");
	} else if (a->type == b->type) {
		D(!str_eq(a->ifname, b->ifname), "ifname");
		D(a->attach != b->attach, "attach");
		D(a->up != b->up, "up");
		D(a->offload != b->offload, "offload");
		D(a->staged != b->staged, "staged");
		D(a->uring != b->uring, "uring");
		D(a->queues != b->queues, "queues");
		D(a->ring != b->ring, "ring");
	}
#undef D
	return json_array_size(changed) != before;
}

json_t *hsd_trunks_json(const struct hsd_port_conf *p)
{
	json_t *tr = json_array();
	for (unsigned i = 0; i < p->n_trunks;) {
		unsigned j = i;
		while (j + 1 < p->n_trunks && p->trunks[j + 1] == p->trunks[j] + 1)
			j++;
		if (j - i >= 2) { /* three or more in a row: a range */
			char r[16];
			snprintf(r, sizeof(r), "%u-%u", p->trunks[i], p->trunks[j]);
			json_array_append_new(tr, json_string(r));
		} else {
			for (unsigned k = i; k <= j; k++)
				json_array_append_new(tr, json_integer(p->trunks[k]));
		}
		i = j + 1;
	}
	return tr;
}

json_t *hsd_port_conf_json(const struct hsd_port_conf *p)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:b, s:b}", "name", p->name,
			      "type", hsd_port_type_name(p->type),
			      "vlan_mode", p->vlan_mode == HS_VLAN_TRUNK ? "trunk" : "access",
			      "vlan", (int)p->vlan, "mtu", (json_int_t)p->mtu,
			      "mac_limit", (json_int_t)p->mac_limit, "learn", p->learn,
			      "flood", p->flood);
	if (!o)
		return NULL;
	/* as the file writes them: a trunk of every VLAN has no list */
	if (p->n_trunks)
		json_object_set_new(o, "trunks", hsd_trunks_json(p));
	if (p->type == HSD_VHOST_USER) {
		char mode[8];
		snprintf(mode, sizeof(mode), "0%03o", p->socket_mode);
		json_object_update_new(o, json_pack("{s:s, s:b, s:i, s:I, s:b, s:b, s:b, s:b, s:b, s:I}",
			"path", p->path, "client", p->client, "queues", (int)p->queues,
			"reconnect_ms", (json_int_t)p->reconnect_ms, "packed", p->packed,
			"in_order", p->in_order, "guest_announce", p->guest_announce,
			"offer_mtu", p->offer_mtu, "vcpu_state", p->vcpu_state,
			"vcpu_idle_ms", (json_int_t)p->vcpu_idle_ms));
		if (!p->client)
			json_object_set_new(o, "socket_mode", json_string(mode));
		if (p->socket_owner)
			json_object_set_new(o, "socket_owner", json_string(p->socket_owner));
		if (p->socket_group)
			json_object_set_new(o, "socket_group", json_string(p->socket_group));
	} else if (p->type == HSD_XEN) {
		json_object_update_new(o, json_pack("{s:I, s:I, s:I, s:i, s:b}", "domid",
			(json_int_t)p->domid, "devid", (json_int_t)p->devid, "backend_domid",
			(json_int_t)p->backend_domid, "queues", (int)p->queues, "vcpu_state",
			p->vcpu_state));
	} else if (p->type == HSD_VXLAN) {
		json_t *r = json_array();
		const char *q = p->remotes;
		char item[64];
		while (r && hsd_remotes_next(&q, item))
			json_array_append_new(r, json_string(item));
		json_object_update_new(o, json_pack("{s:s, s:I, s:o, s:i, s:i, s:i, s:i, s:I, s:I, "
			"s:i, s:i, s:b, s:b, s:b}", "local", p->local, "vni", (json_int_t)p->vni,
			"remotes", r, "dst_port", (int)p->dst_port, "src_port_min",
			(int)p->src_port_min, "src_port_max", (int)p->src_port_max,
			"underlay_mtu", (int)p->underlay_mtu, "ageing_s", (json_int_t)p->ageing_s,
			"max_entries", (json_int_t)p->max_entries, "ttl", (int)p->ttl, "tos",
			(int)p->tos, "remote_learning", p->remote_learning, "udp_csum", p->udp_csum,
			"df", p->df));
		if (p->follow_any_port)
			json_object_set_new(o, "follow_any_port", json_true());
		if (p->export_port)
			json_object_set_new(o, "export", json_string(p->export_port));
		if (p->underlay_if)
			json_object_set_new(o, "underlay", json_string(p->underlay_if));
	} else if (p->type == HSD_UPLINK) {
		json_object_update_new(o, json_pack("{s:s, s:i, s:b, s:b, s:b, s:i, s:I, s:i, s:i}",
			"ifname", p->ifname, "queues", (int)p->queues, "offload", p->offload,
			"promisc", p->promisc, "qdisc_bypass", p->qdisc_bypass, "rx_blocks",
			(int)p->rx_blocks, "rx_block_kib", (json_int_t)p->rx_block_kib,
			"tx_slots", (int)p->tx_slots, "block_tov_ms", (int)p->block_tov_ms));
		json_object_update_new(o, json_pack("{s:s, s:I, s:I}", "mode",
			p->uplink_mode ? p->uplink_mode : "auto", "xdp_frames",
			(json_int_t)p->xdp_frames, "xdp_macs", (json_int_t)p->xdp_macs));
	} else {
		json_object_update_new(o, json_pack("{s:s, s:b, s:b, s:b, s:b, s:b, s:i, s:i}",
			"ifname", p->ifname, "attach", p->attach, "up", p->up,
			"offload", p->offload, "staged", p->staged, "uring", p->uring,
			"queues", (int)p->queues,
			"ring", (int)p->ring));
	}
	return o;
}

/* ---- the file ---------------------------------------------------------- */

static const char *const top_keys[] = {"switch", "control", "log", "metrics", "ports", NULL};
static const char *const switch_keys[] = {"name", "workers", "worker_cpus", "polling",
					  "poll_us", "burst", "max_ports", "fdb",
					  "backlog", NULL};

static int load_switch(const struct src *top, struct hsd_conf *c)
{
	struct src s, sub;
	int rc = get_group(top, "switch", &s);
	if (rc || src_empty(&s))
		return rc;
	const char *name = NULL, *polling = NULL;
	if ((rc = src_known(&s, switch_keys, NULL)) || (rc = get_str(&s, "name", 31, &name)) ||
	    (rc = get_u32(&s, "workers", 0, HSD_MAX_WORKERS, &c->workers)) ||
	    (rc = get_str(&s, "polling", 16, &polling)) ||
	    (rc = get_u32(&s, "poll_us", 0, 1000000, &c->poll_us)) ||
	    (rc = get_u32(&s, "burst", 1, 64, &c->burst)) ||
	    (rc = get_u32(&s, "max_ports", 1, 65534, &c->max_ports)))
		return rc;
	if (name) {
		free(c->name);
		c->name = strdup(name);
	}
	if (polling) {
		if (!strcmp(polling, "busy"))
			c->flags |= HS_SW_BUSY_POLL;
		else if (!strcmp(polling, "off"))
			c->flags |= HS_SW_NO_POLL;
		else if (strcmp(polling, "adaptive"))
			return fail(&s, "polling", "\"%s\" is not adaptive, busy or off", polling);
	}
	bool present;
	if ((rc = want(&s, "worker_cpus", V_LIST, &present)))
		return rc;
	if (present) {
		unsigned n = list_len(&s, "worker_cpus");
		if (n != c->workers)
			return fail(&s, "worker_cpus", "%u CPUs for %u workers", n, c->workers);
		c->cpus = calloc(n ? n : 1, sizeof(int));
		if (!c->cpus)
			return -ENOMEM;
		c->n_cpus = n;
		for (unsigned i = 0; i < n; i++) {
			long long v = -1;
			const char *sv;
			if (list_elem(&s, "worker_cpus", i, &v, &sv) != V_INT || v < 0 || v > 4095)
				return fail(&s, "worker_cpus", "item %u is not a CPU number", i);
			c->cpus[i] = (int)v;
		}
	}
	static const char *const fdb_keys[] = {"capacity", "aging_s", "port_limit", NULL};
	if ((rc = get_group(&s, "fdb", &sub)))
		return rc;
	if (!src_empty(&sub) &&
	    ((rc = src_known(&sub, fdb_keys, NULL)) ||
	     (rc = get_u32(&sub, "capacity", 1, 1u << 24, &c->fdb_capacity)) ||
	     (rc = get_u32(&sub, "aging_s", 0, 1000000, &c->fdb_aging_s)) ||
	     (rc = get_u32(&sub, "port_limit", 0, 1u << 24, &c->fdb_port_limit))))
		return rc;
	static const char *const bl_keys[] = {"frames", "bytes", NULL};
	if ((rc = get_group(&s, "backlog", &sub)))
		return rc;
	if (!src_empty(&sub) &&
	    ((rc = src_known(&sub, bl_keys, NULL)) ||
	     (rc = get_u32(&sub, "frames", 1, 1u << 20, &c->backlog_frames)) ||
	     (rc = get_u32(&sub, "bytes", 1, 1u << 30, &c->backlog_bytes))))
		return rc;
	return 0;
}

static int load_control_log(const struct src *top, struct hsd_conf *c)
{
	struct src s;
	int rc = get_group(top, "control", &s);
	if (rc)
		return rc;
	if (!src_empty(&s)) {
		static const char *const keys[] = {"socket", "mode", "group", NULL};
		const char *sock = NULL, *group = NULL;
		if ((rc = src_known(&s, keys, NULL)) ||
		    (rc = get_str(&s, "socket", sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
				  &sock)) ||
		    (rc = get_mode(&s, "mode", &c->socket_mode)) ||
		    (rc = get_str(&s, "group", 64, &group)))
			return rc;
		if (sock) {
			if (sock[0] != '/')
				return fail(&s, "socket", "\"%s\" is not an absolute path", sock);
			free(c->socket);
			c->socket = strdup(sock);
		}
		if (group) {
			if (parse_id(group, false, &c->socket_gid))
				return fail(&s, "group", "no group \"%s\"", group);
			c->socket_group_set = true;
		}
	}
	if ((rc = get_group(top, "metrics", &s)))
		return rc;
	if (!src_empty(&s)) {
		static const char *const mkeys[] = {"listen", NULL};
		const char *listen = NULL;
		if ((rc = src_known(&s, mkeys, NULL)) || (rc = get_str(&s, "listen", 63, &listen)))
			return rc;
		if (listen && hsd_metrics_check_listen(listen))
			return fail(&s, "listen", "\"%s\" is not ADDR:PORT, [ADDR6]:PORT, "
				    "localhost:PORT or :PORT", listen);
		if (listen && !(c->metrics_listen = strdup(listen)))
			return -ENOMEM;
	}
	if ((rc = get_group(top, "log", &s)) || src_empty(&s))
		return rc;
	static const char *const lkeys[] = {"level", "syslog", NULL};
	const char *level = NULL;
	if ((rc = src_known(&s, lkeys, NULL)) || (rc = get_str(&s, "level", 8, &level)) ||
	    (rc = get_bool(&s, "syslog", &c->syslog)))
		return rc;
	if (level && hsd_level_parse(level, &c->log_level))
		return fail(&s, "level", "\"%s\" is not error, warn, info or debug", level);
	return 0;
}

static int load_ports(const struct src *top, struct hsd_conf *c)
{
	bool present;
	int rc = want(top, "ports", V_LIST, &present);
	if (rc || !present)
		return rc;
	const config_setting_t *list = config_setting_get_member(top->cs, "ports");
	unsigned n = (unsigned)config_setting_length(list);
	if (n > HSD_MAX_PORTS)
		return fail(top, "ports", "more than %d ports", HSD_MAX_PORTS);
	c->ports = calloc(n ? n : 1, sizeof(*c->ports));
	if (!c->ports)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, i);
		struct src s = {.cs = e, .file = top->file, .what = "port", .err = top->err,
				.errlen = top->errlen};
		if (vtype_cs(e) != V_GROUP)
			return fail(&s, NULL, "ports are groups: { name = ...; type = ...; }");
		rc = port_parse(&s, &c->ports[i]);
		c->n_ports = i + 1; /* freed with the rest on error */
		if (rc)
			return rc;
		char msg[256];
		if (hsd_port_check_unique(&c->ports[i], c->ports, i, NULL, msg, sizeof(msg))) {
			snprintf(top->err, top->errlen, "%s:%d: %s", top->file,
				 config_setting_source_line(e), msg);
			return -EINVAL;
		}
	}
	return 0;
}

#define CONF_MAX (4u << 20) /* a config file larger than this is refused */

/* The file's text, NUL-terminated, read whole: libconfig then parses
 * memory, never a stream, so a read error cannot reach its scanner (the
 * flex scanner of libconfig 1.5 exits the process on one). Refuses what
 * the text may not hold: NUL bytes, and @include (libconfig reads the
 * named file itself, with the same fatal exit on a directory: an
 * operator's typo would stop the switch at a reload). */
static char *read_text(const char *file, char *err, size_t errlen, int *rc)
{
	FILE *f = fopen(file, "r");
	if (!f) {
		*rc = -errno;
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return NULL;
	}
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	errno = 0;
	*rc = buf ? 0 : -ENOMEM;
	while (!*rc) {
		if (n + 1 == cap) {
			char *nb = cap < CONF_MAX ? realloc(buf, cap * 2) : NULL;
			if (!nb) {
				*rc = cap < CONF_MAX ? -ENOMEM : -EFBIG;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - 1 - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f))
				*rc = errno ? -errno : -EIO;
			break;
		}
	}
	fclose(f);
	if (*rc) {
		snprintf(err, errlen, "%s: %s", file,
			 *rc == -EFBIG ? "larger than 4 MiB" : strerror(-*rc));
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	unsigned line = 1;
	const char *why = NULL;
	bool line_start = true; /* only blanks so far on this line */
	for (size_t i = 0; i < n && !why; i++) {
		if (!buf[i])
			why = "a NUL byte (not a text file)";
		else if (buf[i] == '@' && line_start)
			why = "@ directives (@include) are not supported: put every "
			      "setting in this file";
		if (buf[i] == '\n') {
			line++;
			line_start = true;
		} else if (buf[i] != ' ' && buf[i] != '\t') {
			line_start = false;
		}
	}
	if (why) {
		snprintf(err, errlen, "%s:%u: %s", file, line, why);
		*rc = -EINVAL;
		free(buf);
		return NULL;
	}
	return buf;
}

int hsd_conf_load(const char *file, struct hsd_conf *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->file = strdup(file);
	c->name = strdup("hs0");
	c->socket = strdup(HSD_DEFAULT_SOCKET);
	c->socket_mode = 0600;
	c->log_level = HS_LOG_INFO;
	c->burst = 32;
	c->max_ports = 1024;
	c->poll_us = 200;
	c->fdb_capacity = 8192;
	c->fdb_aging_s = 300;
	c->backlog_frames = 256;
	c->backlog_bytes = 512 * 1024;
	if (!c->file || !c->name || !c->socket) {
		hsd_conf_free(c);
		return -ENOMEM;
	}
	config_t cfg;
	config_init(&cfg);
	int rc = 0;
	if (errlen)
		err[0] = 0;
	char *text = read_text(file, err, errlen, &rc);
	if (!text) {
		/* rc and err say why */
	} else if (config_read_string(&cfg, text) != CONFIG_TRUE) {
		snprintf(err, errlen, "%s:%d: %s", file, config_error_line(&cfg),
			 config_error_text(&cfg));
		rc = -EINVAL;
	} else {
		struct src top = {.cs = config_root_setting(&cfg), .file = file,
				  .what = "config", .err = err, .errlen = errlen};
		if (!(rc = src_known(&top, top_keys, NULL)) && !(rc = load_switch(&top, c)) &&
		    !(rc = load_control_log(&top, c)))
			rc = load_ports(&top, c);
		if (rc == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", file);
	}
	free(text);
	config_destroy(&cfg);
	if (rc)
		hsd_conf_free(c);
	return rc;
}

void hsd_conf_free(struct hsd_conf *c)
{
	for (unsigned i = 0; i < c->n_ports; i++)
		hsd_port_conf_free(&c->ports[i]);
	free(c->ports);
	free(c->cpus);
	free(c->file);
	free(c->name);
	free(c->socket);
	free(c->metrics_listen);
	memset(c, 0, sizeof(*c));
}
