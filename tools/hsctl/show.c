/*
 * show.c - "show" (the switch and a line per port) and "vlan" (the VLANs
 * and their members, worked out here from "show": the daemon has no such
 * command, and the ports' settings say it all).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsctl.h"

#define VLAN_IDS 4096

/* "12s", "5m12s", "3h05m", "2d03h": an uptime at a glance. */
static const char *duration(const json_t *v, char *buf, size_t size)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return hsctl_text(v, buf, size);
	long long s = json_integer_value(v);
	if (s < 60)
		snprintf(buf, size, "%llds", s);
	else if (s < 3600)
		snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
	return buf;
}

static void print_switch(const json_t *sw)
{
	char b[32];
#define F(key) hsctl_text(json_object_get(sw, key), b, sizeof(b))
	printf("switch %s", F("name"));
	printf(": pid %s", F("pid"));
	printf(", up %s", duration(json_object_get(sw, "uptime_s"), b, sizeof(b)));
	printf(", config %s\n", F("config"));
	printf("workers %s", F("workers"));
	printf(" (%s idle)", F("workers_idle"));
	printf(", burst %s", F("burst"));
	printf(", max ports %s", F("max_ports"));
	printf(", fdb %s", F("fdb_entries"));
	printf("/%s", F("fdb_capacity"));
	printf(" aging %ss", F("fdb_aging_s"));
	printf(", log %s\n\n", F("log_level"));
#undef F
}

/* A VLAN id. A trunk without a native VLAN may show "vlan": 0 (or null, or
 * none): 0 is no VLAN id (802.1Q), so it means none. */
static bool is_vid(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 1 &&
	       json_integer_value(v) <= VLAN_IDS - 2;
}

/* A trunk's VLANs as "10,100-199": runs of ints are joined into ranges;
 * range strings pass as they are. */
static void print_trunks(FILE *f, const json_t *trunks)
{
	size_t i, n = json_array_size(trunks);
	for (i = 0; i < n; i++) {
		const json_t *v = json_array_get(trunks, i);
		const char *sep = i ? "," : "";
		if (!json_is_integer(v)) {
			char buf[32];
			fprintf(f, "%s%s", sep, hsctl_text(v, buf, sizeof(buf)));
			continue;
		}
		json_int_t first = json_integer_value(v), last = first;
		for (; i + 1 < n; i++) {
			const json_t *next = json_array_get(trunks, i + 1);
			if (!json_is_integer(next) || last == LLONG_MAX ||
			    json_integer_value(next) != last + 1)
				break;
			last++;
		}
		if (last == first)
			fprintf(f, "%s%" JSON_INTEGER_FORMAT, sep, first);
		else
			fprintf(f, "%s%" JSON_INTEGER_FORMAT "-%" JSON_INTEGER_FORMAT, sep,
				first, last);
	}
}

/* "10" for an access port; "trunk 10,100-199 native 5" for a trunk. */
static void print_vlan_mode(FILE *f, const json_t *port)
{
	const char *mode = json_string_value(json_object_get(port, "vlan_mode"));
	const json_t *vlan = json_object_get(port, "vlan");
	const json_t *trunks = json_object_get(port, "trunks");
	char buf[32];
	if (!mode || !strcmp(mode, "access")) {
		fputs(hsctl_text(vlan, buf, sizeof(buf)), f);
		return;
	}
	if (strcmp(mode, "trunk")) {	/* a mode this hsctl does not know */
		fprintf(f, "%s %s", mode, hsctl_text(vlan, buf, sizeof(buf)));
		return;
	}
	fputs("trunk ", f);
	if (json_array_size(trunks))
		print_trunks(f, trunks);
	else
		fputs("all", f);
	if (is_vid(vlan))
		fprintf(f, " native %" JSON_INTEGER_FORMAT, json_integer_value(vlan));
}

/* print_vlan_mode, then ", mirror of a,b" for a mirror output, which
 * takes mirrored frames only (its VLAN settings format them). */
static void print_vlan(FILE *f, const json_t *port)
{
	const json_t *src = json_object_get(port, "mirror_of"), *v;
	size_t i;
	char buf[64];
	print_vlan_mode(f, port);
	json_array_foreach(src, i, v)
		fprintf(f, "%s%s", i ? "," : ", mirror of ", hsctl_text(v, buf, sizeof(buf)));
}

/* "server /run/hyperswitch/vm1.sock, connected, packed", "hs-ns1,
 * offload", "domain 7 vif 0, connected"; a peer of a type hsctl does not
 * know, as compact JSON. */
static void print_peer(FILE *f, const json_t *port)
{
	const char *type = json_string_value(json_object_get(port, "type"));
	const json_t *peer = json_object_get(port, "peer");
	char b1[32], b2[32];
#define F(key, b) hsctl_text(json_object_get(peer, key), b, sizeof(b))
	if (!json_is_object(peer)) {
		fputs("-", f);
	} else if (type && !strcmp(type, "vhost-user")) {
		fprintf(f, "%s %s", F("mode", b1), F("path", b2));
		fputs(json_is_true(json_object_get(peer, "connected")) ? ", connected"
								       : ", not connected", f);
		if (json_is_true(json_object_get(peer, "packed")))
			fputs(", packed", f);
	} else if (type && !strcmp(type, "tap")) {
		fprintf(f, "%s", F("ifname", b1));
		fputs(json_is_false(json_object_get(peer, "offload")) ? ", no offload"
								       : ", offload", f);
	} else if (type && !strcmp(type, "vxlan")) {
		fprintf(f, "VTEP %s VNI %s", F("local", b1), F("vni", b2));
		if (json_is_string(json_object_get(peer, "follow")))
			fprintf(f, ", follows %s", F("follow", b1));
		if (json_is_string(json_object_get(peer, "underlay")))
			fprintf(f, ", through %s", F("underlay", b1));
	} else if (type && !strcmp(type, "uplink")) {
		fprintf(f, "%s, %s", F("ifname", b1), F("mode", b2));
		fputs(json_is_false(json_object_get(peer, "offload")) ? ", no offload"
								       : ", offload", f);
	} else if (type && !strcmp(type, "xen")) {
		fprintf(f, "domain %s vif %s", F("domid", b1), F("devid", b2));
		fputs(json_is_true(json_object_get(peer, "connected")) ? ", connected"
								       : ", not connected", f);
	} else {
		json_dumpf(peer, f, JSON_COMPACT);
	}
#undef F
}

static int print_ports(const json_t *r)
{
	const json_t *ports = json_object_get(r, "ports"), *p;
	size_t i;
	struct table *t = table_new("llllrrl", "NAME", "TYPE", "LINK", "VLAN", "MTU", "MACS",
				    "PEER");
	json_array_foreach(ports, i, p) {
		table_json(t, json_object_get(p, "name"));
		table_json(t, json_object_get(p, "type"));
		table_json(t, json_object_get(p, "link"));
		table_take(t, hsctl_memprint(print_vlan, p));
		table_json(t, json_object_get(p, "mtu"));
		table_json(t, json_object_get(p, "macs"));
		table_take(t, hsctl_memprint(print_peer, p));
	}
	return table_print(t);
}

static int print_show(struct hsctl *h, json_t *r)
{
	(void)h;
	if (!json_is_array(json_object_get(r, "ports")))
		return hsctl_malformed("show", "no ports list");
	if (json_is_object(json_object_get(r, "switch")))
		print_switch(json_object_get(r, "switch"));
	return print_ports(r);
}

/* "show PORT": the port's line without the switch's. */
static int print_show_port(struct hsctl *h, json_t *r)
{
	(void)h;
	if (!json_is_array(json_object_get(r, "ports")))
		return hsctl_malformed("show", "no ports list");
	return print_ports(r);
}

int hsctl_cmd_show(struct hsctl *h, int argc, char **argv)
{
	int n, rc = hsctl_words(h, "show", argc, argv, NULL, 0, 1, &n);
	if (rc)
		return rc;
	json_t *args = json_object();
	if (!n)
		return hsctl_request(h, "show", args, print_show);
	if ((rc = hsctl_set_string(args, "port", argv[0]))) {
		json_decref(args);
		return rc;
	}
	return hsctl_request(h, "show", args, print_show_port);
}

/* ---- vlan ---------------------------------------------------------------- */

enum member { NONE, ACCESS, TRUNK, NATIVE, MIRROR };
static const char *const member_names[] = {"none", "access", "trunk", "native",
					   "mirror output"};

static void mark(unsigned char *m, long long first, long long last, enum member how)
{
	if (first < 0)
		first = 0;
	for (long long v = first; v <= last && v < VLAN_IDS; v++)
		m[v] = (unsigned char)how;
}

/* One item of a trunks list: 10, or a range "100-199". */
static void mark_trunk_item(unsigned char *m, const json_t *v)
{
	long long a, b;
	const char *s = json_string_value(v);
	if (json_is_integer(v))
		mark(m, json_integer_value(v), json_integer_value(v), TRUNK);
	else if (s && sscanf(s, "%lld-%lld", &a, &b) == 2)
		mark(m, a, b, TRUNK);
	else if (s && sscanf(s, "%lld", &a) == 1)
		mark(m, a, a, TRUNK);
}

/* m[vid]: how the port belongs to each VLAN. A trunk with no list carries
 * every VLAN (1..4094); its native VLAN, if any, is untagged on it. */
static void membership(const json_t *port, unsigned char *m)
{
	const char *mode = json_string_value(json_object_get(port, "vlan_mode"));
	const json_t *vlan = json_object_get(port, "vlan"), *v;
	const json_t *trunks = json_object_get(port, "trunks");
	size_t i;
	if (mode && !strcmp(mode, "trunk")) {
		if (!json_array_size(trunks))
			mark(m, 1, VLAN_IDS - 2, TRUNK);
		json_array_foreach(trunks, i, v)
			mark_trunk_item(m, v);
		if (is_vid(vlan))
			mark(m, json_integer_value(vlan), json_integer_value(vlan), NATIVE);
	} else if (!mode || !strcmp(mode, "access")) {
		/* 1 is the access VLAN's default (hyperswitchd.conf(5)) */
		json_int_t id = json_is_integer(vlan) ? json_integer_value(vlan) : 1;
		mark(m, id, id, ACCESS);
	}
	/* a mirror output is in its VLANs only to format the copies: it
	 * forwards nothing there */
	if (json_array_size(json_object_get(port, "mirror_of")))
		for (unsigned id = 0; id < VLAN_IDS; id++)
			if (m[id] != NONE)
				m[id] = MIRROR;
}

/* Whether VLANs a and b have the same members, in the same ways. */
static bool same(const unsigned char *m, size_t nports, unsigned a, unsigned b)
{
	for (size_t p = 0; p < nports; p++)
		if (m[p * VLAN_IDS + a] != m[p * VLAN_IDS + b])
			return false;
	return true;
}

/* {"first": 2, "last": 9, "ports": [{"name": "up0", "mode": "trunk"}]} */
static json_t *vlan_row(const json_t *ports, const unsigned char *m, unsigned first,
			unsigned last)
{
	json_t *row = json_object(), *list = NULL;
	size_t i;
	const json_t *p;
	if (json_object_set_new(row, "first", json_integer(first)) ||
	    json_object_set_new(row, "last", json_integer(last)) ||
	    json_object_set_new(row, "ports", list = json_array()))
		goto fail;
	json_array_foreach(ports, i, p) {
		unsigned how = m[i * VLAN_IDS + first];
		json_t *name = json_object_get(p, "name");
		if (how != NONE && json_array_append_new(list,
			    json_pack("{sOss}", "name", name ? name : json_null(),
				      "mode", member_names[how])))
			goto fail;
	}
	if (json_array_size(list))
		return row;
fail:
	json_decref(row);
	return NULL;
}

/* The VLANs, runs of them with the same members made one row. */
static int vlan_rows(const json_t *ports, const unsigned char *m, json_t *rows)
{
	size_t nports = json_array_size(ports);
	for (unsigned first = 0; first < VLAN_IDS;) {
		unsigned last = first;
		while (last + 1 < VLAN_IDS && same(m, nports, first, last + 1))
			last++;
		bool any = false;
		for (size_t p = 0; p < nports; p++)
			any |= m[p * VLAN_IDS + first] != NONE;
		if (any && json_array_append_new(rows, vlan_row(ports, m, first, last)))
			return hsctl_nomem();
		first = last + 1;
	}
	return HSCTL_OK;
}

/* {"vlans": [rows]} from show's result. */
static int vlans(const json_t *show, json_t **out)
{
	const json_t *ports = json_object_get(show, "ports"), *p;
	size_t i, nports = json_array_size(ports);
	if (!json_is_array(ports))
		return hsctl_malformed("show", "no ports list");
	unsigned char *m = calloc(nports ? nports : 1, VLAN_IDS);
	json_t *res = json_object(), *rows = json_array();
	int rc = json_object_set_new(res, "vlans", rows) || !m ? hsctl_nomem() : HSCTL_OK;
	if (!rc) {
		json_array_foreach(ports, i, p)
			membership(p, m + i * VLAN_IDS);
		rc = vlan_rows(ports, m, rows);
	}
	free(m);
	if (rc)
		json_decref(res);
	else
		*out = res;
	return rc;
}

/* "vm1 (access), up0 (trunk)" */
static void print_members(FILE *f, const json_t *row)
{
	const json_t *p;
	size_t i;
	char buf[32];
	json_array_foreach(json_object_get(row, "ports"), i, p)
		fprintf(f, "%s%s (%s)", i ? ", " : "",
			hsctl_text(json_object_get(p, "name"), buf, sizeof(buf)),
			json_string_value(json_object_get(p, "mode")));
}

static int print_vlans(const json_t *res)
{
	const json_t *row;
	size_t i;
	struct table *t = table_new("ll", "VLAN", "PORTS");
	json_array_foreach(json_object_get(res, "vlans"), i, row) {
		json_int_t first = json_integer_value(json_object_get(row, "first"));
		json_int_t last = json_integer_value(json_object_get(row, "last"));
		if (first == last)
			table_add(t, "%" JSON_INTEGER_FORMAT, first);
		else
			table_add(t, "%" JSON_INTEGER_FORMAT "-%" JSON_INTEGER_FORMAT, first, last);
		table_take(t, hsctl_memprint(print_members, row));
	}
	return table_print(t);
}

int hsctl_cmd_vlan(struct hsctl *h, int argc, char **argv)
{
	json_t *show, *res = NULL;
	int n, rc = hsctl_words(h, "vlan", argc, argv, NULL, 0, 0, &n);
	if (!rc)
		rc = hsctl_call(h, "show", json_object(), &show);
	if (rc)
		return rc;
	rc = vlans(show, &res);
	json_decref(show);
	if (!rc)
		rc = h->json ? hsctl_print_json(res) : print_vlans(res);
	json_decref(res);
	return rc;
}
