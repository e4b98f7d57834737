/*
 * stats.c - "stats": the counters of the switch and its ports. With -i,
 * two samples SECONDS apart and the rates between them, over the time
 * between the samples' own time_ns (the daemon's CLOCK_MONOTONIC), not
 * our sleep, which the requests' round trips lengthen.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsctl.h"

/* Not a port name: those have no parentheses. */
#define SWITCH_ROW "(switch)"

/* 0, 0.5, 999.9, 1.23k, 45.67M: rates at a glance. */
static const char *si(double x, char *buf, size_t size)
{
	static const char units[] = " kMGTPE";
	int u = 0;
	while (x >= 999.95 && units[u + 1]) {	/* no "1000.0" */
		x /= 1000;
		u++;
	}
	if (x == 0)
		snprintf(buf, size, "0");
	else if (!u)
		snprintf(buf, size, "%.1f", x);
	else
		snprintf(buf, size, "%.2f%c", x, units[u]);
	return buf;
}

/* "runt=2 no_buffer=3": the drop reasons that are not zero ("-": none),
 * as counters or (rates) in SI form. */
static void print_drops(FILE *f, const json_t *drops, bool rates)
{
	const char *k;
	json_t *v;
	int n = 0;
	char buf[32];
	json_object_foreach((json_t *)drops, k, v) {
		if (!json_is_number(v) || json_number_value(v) == 0)
			continue;
		fprintf(f, "%s%s=%s", n++ ? " " : "", k,
			rates ? si(json_number_value(v), buf, sizeof(buf))
			      : hsctl_text(v, buf, sizeof(buf)));
	}
	if (!n)
		fputs("-", f);
}

static void print_drop_counts(FILE *f, const json_t *drops)
{
	print_drops(f, drops, false);
}

static void print_drop_rates(FILE *f, const json_t *drops)
{
	print_drops(f, drops, true);
}

static void counters_row(struct table *t, const char *name, const json_t *e)
{
	if (name)
		table_add(t, "%s", name);
	else
		table_json(t, json_object_get(e, "name"));
	table_json(t, json_object_get(e, "rx_packets"));
	table_json(t, json_object_get(e, "rx_bytes"));
	table_json(t, json_object_get(e, "tx_packets"));
	table_json(t, json_object_get(e, "tx_bytes"));
	table_take(t, hsctl_memprint(print_drop_counts, json_object_get(e, "drops")));
}

static int print_counters(const json_t *r, bool with_switch)
{
	const json_t *ports = json_object_get(r, "ports"), *p;
	const json_t *sw = json_object_get(r, "switch");
	size_t i;
	if (!json_is_array(ports))
		return hsctl_malformed("stats", "no ports list");
	struct table *t = table_new("lrrrrl", "PORT", "RX_PACKETS", "RX_BYTES", "TX_PACKETS",
				    "TX_BYTES", "DROPS");
	json_array_foreach(ports, i, p)
		counters_row(t, NULL, p);
	if (with_switch && json_is_object(sw))
		counters_row(t, SWITCH_ROW, sw);
	return table_print(t);
}

static int print_all(struct hsctl *h, json_t *r)
{
	(void)h;
	return print_counters(r, true);
}

/* "stats PORT": the port alone, without the switch's totals. */
static int print_port(struct hsctl *h, json_t *r)
{
	(void)h;
	return print_counters(r, false);
}

/* ---- rates ---------------------------------------------------------------- */

/* b - a for a number in two samples; false when either lacks it. */
static bool delta(const json_t *a, const json_t *b, double *d)
{
	if (json_is_integer(a) && json_is_integer(b) && json_integer_value(a) >= 0 &&
	    json_integer_value(b) >= 0) {
		/* exact while both are integers; no overflow: both >= 0 */
		*d = (double)(json_integer_value(b) - json_integer_value(a));
		return true;
	}
	if (!json_is_number(a) || !json_is_number(b))
		return false;
	*d = json_number_value(b) - json_number_value(a);
	return true;
}

/* The rate of a counter, times scale (8: bits from bytes); null when a
 * sample lacks it or it went back, as when the port was replaced (port
 * set, reload) between the samples and its counters started again. */
static json_t *rate(const json_t *a, const json_t *b, const char *key, double scale, double dt)
{
	double d;
	if (!delta(json_object_get(a, key), json_object_get(b, key), &d) || d < 0)
		return json_null();
	return json_real(d * scale / dt);
}

/* The rates of the switch or of a port (name: its name, or NULL). */
static json_t *entity_rates(const json_t *name, const json_t *a, const json_t *b, double dt)
{
	json_t *r = json_object(), *drops = json_object(), *v;
	json_t *da = json_object_get(a, "drops"), *db = json_object_get(b, "drops");
	const char *k;
	if ((name && json_object_set(r, "name", (json_t *)name)) ||
	    json_object_set_new(r, "rx_packets_per_s", rate(a, b, "rx_packets", 1, dt)) ||
	    json_object_set_new(r, "rx_bits_per_s", rate(a, b, "rx_bytes", 8, dt)) ||
	    json_object_set_new(r, "tx_packets_per_s", rate(a, b, "tx_packets", 1, dt)) ||
	    json_object_set_new(r, "tx_bits_per_s", rate(a, b, "tx_bytes", 8, dt))) {
		json_decref(drops);
		goto fail;
	}
	if (json_object_set_new(r, "drops_per_s", drops))
		goto fail;
	json_object_foreach(db, k, v)
		if (json_object_set_new(drops, k, rate(da, db, k, 1, dt)))
			goto fail;
	return r;
fail:
	json_decref(r);
	return NULL;
}

static const json_t *find_port(const json_t *ports, const char *name)
{
	size_t i;
	const json_t *p;
	json_array_foreach(ports, i, p) {
		const char *n = json_string_value(json_object_get(p, "name"));
		if (n && !strcmp(n, name))
			return p;
	}
	return NULL;
}

/* {"switch": {...}, "ports": [{"name": ...}]}: the ports in both samples. */
static json_t *rates(const json_t *s1, const json_t *s2, double dt)
{
	const json_t *sw1 = json_object_get(s1, "switch"), *sw2 = json_object_get(s2, "switch");
	const json_t *ports1 = json_object_get(s1, "ports"), *p2;
	json_t *r = json_object(), *ports = json_array();
	size_t i;
	if (json_is_object(sw1) && json_is_object(sw2) &&
	    json_object_set_new(r, "switch", entity_rates(NULL, sw1, sw2, dt))) {
		json_decref(ports);
		goto fail;
	}
	if (json_object_set_new(r, "ports", ports))
		goto fail;
	json_array_foreach(json_object_get(s2, "ports"), i, p2) {
		const json_t *name = json_object_get(p2, "name");
		const json_t *p1 = json_is_string(name)
					 ? find_port(ports1, json_string_value(name)) : NULL;
		if (p1 && json_array_append_new(ports, entity_rates(name, p1, p2, dt)))
			goto fail;
	}
	return r;
fail:
	json_decref(r);
	return NULL;
}

/* {"interval_s": ..., "samples": [first, second], "rates": {...}} */
static int sampled(json_t *s1, json_t *s2, json_t **out)
{
	double dt;
	if (!delta(json_object_get(s1, "time_ns"), json_object_get(s2, "time_ns"), &dt))
		return hsctl_malformed("stats", "no time_ns");
	if (dt <= 0)
		return hsctl_malformed("stats", "time_ns did not advance between the samples");
	if (!json_is_array(json_object_get(s1, "ports")) ||
	    !json_is_array(json_object_get(s2, "ports")))
		return hsctl_malformed("stats", "no ports list");
	dt /= 1e9;
	json_t *r = json_object(), *samples = json_array();
	if (json_object_set_new(r, "interval_s", json_real(dt)) ||
	    json_object_set_new(r, "samples", samples) ||
	    json_array_append(samples, s1) || json_array_append(samples, s2) ||
	    json_object_set_new(r, "rates", rates(s1, s2, dt))) {
		json_decref(r);
		return hsctl_nomem();
	}
	*out = r;
	return HSCTL_OK;
}

static void rates_row(struct table *t, const char *name, const json_t *e)
{
	char buf[32];
	static const char *const keys[] = {"rx_packets_per_s", "rx_bits_per_s",
					   "tx_packets_per_s", "tx_bits_per_s"};
	if (name)
		table_add(t, "%s", name);
	else
		table_json(t, json_object_get(e, "name"));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const json_t *v = json_object_get(e, keys[i]);
		table_add(t, "%s", json_is_number(v) ? si(json_number_value(v), buf, sizeof(buf))
						     : "-");
	}
	table_take(t, hsctl_memprint(print_drop_rates, json_object_get(e, "drops_per_s")));
}

/* The second sample's counters, then the rates. */
static int print_sampled(const json_t *r, bool with_switch)
{
	const json_t *rt = json_object_get(r, "rates"), *p;
	const json_t *sw = json_object_get(rt, "switch");
	size_t i;
	int rc = print_counters(json_array_get(json_object_get(r, "samples"), 1), with_switch);
	if (rc)
		return rc;
	printf("\nrates over %.3f s (bits/s, packets/s):\n",
	       json_real_value(json_object_get(r, "interval_s")));
	struct table *t = table_new("lrrrrl", "PORT", "RX_PKT/S", "RX_BIT/S", "TX_PKT/S",
				    "TX_BIT/S", "DROPS/S");
	json_array_foreach(json_object_get(rt, "ports"), i, p)
		rates_row(t, NULL, p);
	if (with_switch && json_is_object(sw))
		rates_row(t, SWITCH_ROW, sw);
	return table_print(t);
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s};
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int sample_twice(struct hsctl *h, json_t *args, double secs, bool with_switch)
{
	json_t *s1 = NULL, *s2 = NULL, *r = NULL;
	int rc = hsctl_call(h, "stats", json_incref(args), &s1);
	if (!rc) {
		sleep_s(secs);
		rc = hsctl_call(h, "stats", json_incref(args), &s2);
	}
	if (!rc)
		rc = sampled(s1, s2, &r);
	if (!rc)
		rc = h->json ? hsctl_print_json(r) : print_sampled(r, with_switch);
	json_decref(r);
	json_decref(s2);
	json_decref(s1);
	json_decref(args);
	return rc;
}

int hsctl_cmd_stats(struct hsctl *h, int argc, char **argv)
{
	const char *interval = NULL;
	const struct opt opts[] = {
		{"-i", "--interval", &interval, NULL}, {NULL, NULL, NULL, NULL},
	};
	double secs = 0;
	int n, rc = hsctl_words(h, "stats", argc, argv, opts, 0, 1, &n);
	if (rc)
		return rc;
	if (interval && (!hsctl_parse_seconds(interval, &secs) || secs <= 0))
		return hsctl_usage_error("-i: not a number of seconds above 0: %s", interval);
	json_t *args = json_object();
	if (n && (rc = hsctl_set_string(args, "port", argv[0]))) {
		json_decref(args);
		return rc;
	}
	if (interval)
		return sample_twice(h, args, secs, !n);
	return hsctl_request(h, "stats", args, n ? print_port : print_all);
}
