/*
 * value.c - command-line words to JSON values. Port settings get the
 * types hyperswitchd.conf(5) gives them (docs/hyperswitchd.md), so that
 * "vlan=abc" is hsctl's usage error rather than a round trip, and
 * "vlan=10" reaches the daemon as the integer it checks for.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hsctl.h"

const char *const hsctl_int_keys[] = {
	"vlan", "mtu", "mac_limit", "queues", "reconnect_ms", "vcpu_idle_ms", "ring", "domid",
	"devid", "backend_domid", "vni", "dst_port", "src_port_min", "src_port_max", "underlay_mtu",
	"ageing_s", "max_entries", "ttl", "tos", "rx_blocks", "rx_block_kib", "tx_slots",
	"block_tov_ms", "xdp_frames", "xdp_macs", NULL,
};
const char *const hsctl_bool_keys[] = {
	"learn", "flood", "client", "packed", "in_order", "guest_announce", "offer_mtu",
	"attach", "up", "offload", "staged", "vcpu_state", "remote_learning", "udp_csum", "df",
	"promisc", "qdisc_bypass", "follow_any_port",
	NULL,
};

static bool in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (!strcmp(*list, s))
			return true;
	return false;
}

/* The checks jansson makes (no overlong forms, no surrogates, at most
 * U+10FFFF): a word that passes here is one json_string() takes, so a
 * NULL from it can only mean memory ran out. */
bool hsctl_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p++, n;
		uint32_t cp;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)	/* the NUL too */
				return false;
			cp = cp << 6 | (*p & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* A decimal integer, the whole word (strtoll alone would take " 1", "+1"
 * and "1x"). The range is the daemon's to check. */
bool hsctl_parse_int(const char *s, long long *v)
{
	const char *d = s[0] == '-' ? s + 1 : s;
	if (*d < '0' || *d > '9')
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

/* A duration in seconds, fractions allowed; above a year is a typo. */
bool hsctl_parse_seconds(const char *s, double *v)
{
	if ((*s < '0' || *s > '9') && *s != '.')
		return false;
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (errno || *end || !isfinite(x) || x > 366 * 86400.0)
		return false;
	*v = x;
	return true;
}

static bool parse_bool(const char *s, bool *v)
{
	static const char *const yes[] = {"true", "yes", "on", "1", NULL};
	static const char *const no[] = {"false", "no", "off", "0", NULL};
	for (int i = 0; yes[i]; i++) {
		if (!strcasecmp(s, yes[i]) || !strcasecmp(s, no[i])) {
			*v = !strcasecmp(s, yes[i]);
			return true;
		}
	}
	return false;
}

/* Sets obj[key] (json_object_set_new frees the value when it fails). */
static int set_new(json_t *obj, const char *key, json_t *v)
{
	return json_object_set_new(obj, key, v) ? hsctl_nomem() : HSCTL_OK;
}

int hsctl_set_string(json_t *obj, const char *key, const char *s)
{
	if (!hsctl_utf8_valid(s))
		return hsctl_usage_error("%s: not valid UTF-8", key);
	return set_new(obj, key, json_string(s));
}

/* obj[key] = the integer s; what names it in the message when it is not. */
int hsctl_set_int(json_t *obj, const char *key, const char *s, const char *what)
{
	long long v;
	if (!hsctl_parse_int(s, &v))
		return hsctl_usage_error("%s: not an integer: %s", what, s);
	return set_new(obj, key, json_integer((json_int_t)v));
}

static bool digits(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* One item of a trunks list: "10" -> 10, "100-199" -> "100-199". */
static int trunk_item(const char *s, size_t n, json_t *list)
{
	const char *dash = memchr(s, '-', n);
	size_t a = dash ? (size_t)(dash - s) : n;
	/* Past 19 digits is past 64 bits: the VLAN's range is the daemon's
	 * to check, the number's is ours. */
	if (!digits(s, a) || (dash && !digits(dash + 1, n - a - 1)) || a > 18 ||
	    n - a > 19)
		return hsctl_usage_error("trunks: not a VLAN or a range A-B: %.*s",
					 (int)n, s);
	json_t *item;
	if (dash) {
		/* Written anew, so that "010-20" reaches the daemon as "10-20". */
		char buf[48];
		snprintf(buf, sizeof(buf), "%lld-%lld", strtoll(s, NULL, 10),
			 strtoll(dash + 1, NULL, 10));
		item = json_string(buf);
	} else {
		item = json_integer(strtoll(s, NULL, 10));
	}
	return json_array_append_new(list, item) ? hsctl_nomem() : HSCTL_OK;
}

/* "10,100-199" -> [10, "100-199"]; "" -> [] (all VLANs). */
static int trunks_value(const char *s, json_t **out)
{
	json_t *list = json_array();
	int rc = list ? HSCTL_OK : hsctl_nomem();
	while (*s && !rc) {
		size_t n = strcspn(s, ",");
		if (!n)
			rc = hsctl_usage_error("trunks: an empty item");
		else
			rc = trunk_item(s, n, list);
		s += n;
		if (*s == ',' && !*++s)	/* "10," */
			rc = rc ? rc : hsctl_usage_error("trunks: an empty item");
	}
	if (rc)
		json_decref(list);
	else
		*out = list;
	return rc;
}

static int setting(json_t *port, const char *key, const char *val)
{
	if (in_list(hsctl_int_keys, key))
		return hsctl_set_int(port, key, val, key);
	if (in_list(hsctl_bool_keys, key)) {
		bool b;
		if (!parse_bool(val, &b))
			return hsctl_usage_error("%s: not a boolean (true/false, yes/no, "
						 "on/off, 1/0): %s", key, val);
		return set_new(port, key, json_boolean(b));
	}
	if (!strcmp(key, "trunks")) {
		json_t *list = NULL;
		int rc = trunks_value(val, &list);
		return rc ? rc : set_new(port, key, list);
	}
	if (!strcmp(key, "remotes")) { /* "a,b": ["a", "b"]; "": none */
		if (!hsctl_utf8_valid(val))
			return hsctl_usage_error("remotes: not valid UTF-8");
		json_t *list = json_array();
		int rc = list ? HSCTL_OK : hsctl_nomem();
		for (const char *q = val; *q && !rc;) {
			size_t n = strcspn(q, ",");
			if (!n)
				rc = hsctl_usage_error("remotes: an empty item");
			else if (json_array_append_new(list, json_stringn(q, n)))
				rc = hsctl_nomem();
			q += n + (q[n] == ',');
		}
		if (rc) {
			json_decref(list);
			return rc;
		}
		return set_new(port, key, list);
	}
	/* Other keys, known or not, go as strings: the daemon rejects a key it
	 * does not know, so a typo still fails, with its message. */
	return hsctl_set_string(port, key, val);
}

/* KEY=VALUE words into port (which may hold name and type already); what
 * is the command, for messages. */
int hsctl_port_settings(json_t *port, char **kv, int n, const char *what)
{
	for (int i = 0; i < n; i++) {
		char *eq = strchr(kv[i], '=');
		if (!eq || eq == kv[i])
			return hsctl_usage_error("%s: expected KEY=VALUE: %s", what, kv[i]);
		*eq = '\0';	/* argv is ours to cut */
		const char *key = kv[i], *val = eq + 1;
		if (!strcmp(key, "name") || !strcmp(key, "type"))
			return hsctl_usage_error("%s: %s is not a setting here", what, key);
		if (!hsctl_utf8_valid(key))
			return hsctl_usage_error("%s: a key that is not valid UTF-8", what);
		if (json_object_get(port, key))
			return hsctl_usage_error("%s: %s given twice", what, key);
		int rc = setting(port, key, val);
		if (rc)
			return rc;
	}
	return HSCTL_OK;
}
