/*
 * metrics.c - the switch's counters in the Prometheus text format
 * (version 0.0.4) over HTTP, GET /metrics, served by libmicrohttpd.
 *
 * libmicrohttpd runs without a thread of its own (MHD_USE_EPOLL): its
 * epoll fd is watched by the daemon's loop and MHD_run is called from it,
 * so a scrape reads the port list on the same thread that changes it.
 * Connections are limited (16) and time out (10 s).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "hsd.h"

struct hsd_metrics {
	struct MHD_Daemon *mhd;
	uv_poll_t poll;
	uv_timer_t timer;
	struct hsd *d;
	int handles;
};

/* ---- rendering ------------------------------------------------------------- */

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values: backslash, double quote and newline escaped. */
static void label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fputc('\\', f);
		if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void port_sample(FILE *f, const char *name, const char *port, uint64_t v)
{
	fprintf(f, "%s{port=\"", name);
	label(f, port);
	fprintf(f, "\"} %llu\n", (unsigned long long)v);
}

#define PORT_COUNTERS(X)                                                               \
	X(rx_packets, "Frames the switch received from the port's peer.")               \
	X(rx_bytes, "Bytes the switch received from the port's peer.")                 \
	X(tx_packets, "Frames the switch delivered to the port's peer.")                \
	X(tx_bytes, "Bytes the switch delivered to the port's peer.")                   \
	X(rx_broadcast, "Broadcast frames received.")                                   \
	X(rx_multicast, "Multicast frames received.")                                   \
	X(rx_flooded, "Unknown unicast frames received and flooded.")                   \
	X(tx_notify, "Notifications (interrupts, kicks) sent for delivered frames.")    \
	X(rx_notify, "Completion notifications sent to the sender.")                    \
	X(tx_backlogged, "Frames that waited in the backlog for receive buffers.")      \
	X(tx_gso_segments, "Frames cut from GSO frames in software.")                   \
	X(tx_csum_sw, "Checksums completed in software.")                               \
	X(tx_lock_sleeps, "Deliveries that slept for the port's egress queue lock.")      \
	X(fdb_limit_hits, "Learning refused or evicted by the port's MAC limit.")

struct backend_ctx {
	FILE *f;
	const char *port;
	const char *want; /* render only this counter */
	bool seen;
};

static void backend_one(void *arg, const char *name, uint64_t v)
{
	struct backend_ctx *c = arg;
	if (strcmp(name, c->want))
		return;
	c->seen = true;
	bool gauge = !strcmp(name, "connected");
	char metric[128];
	snprintf(metric, sizeof(metric), "hyperswitch_port_backend_%s%s", name,
		 gauge ? "" : "_total");
	port_sample(c->f, metric, c->port, v);
}

struct names {
	char **v;
	unsigned n, cap;
};

static void collect_name(void *arg, const char *name, uint64_t v)
{
	(void)v;
	struct names *ns = arg;
	for (unsigned i = 0; i < ns->n; i++)
		if (!strcmp(ns->v[i], name))
			return;
	if (ns->n == ns->cap) {
		unsigned cap = ns->cap ? 2 * ns->cap : 16;
		char **nv = realloc(ns->v, cap * sizeof(*nv));
		if (!nv)
			return;
		ns->v = nv;
		ns->cap = cap;
	}
	char *s = strdup(name);
	if (s)
		ns->v[ns->n++] = s;
}

/* Backend counters: one family per counter name, each port that has it. */
static void render_backend(FILE *f, struct hsd *d)
{
	struct names ns = {0};
	for (unsigned i = 0; i < d->n_ports; i++)
		hs_port_backend_counters(d->ports[i].port, collect_name, &ns);
	for (unsigned k = 0; k < ns.n; k++) {
		bool gauge = !strcmp(ns.v[k], "connected");
		char metric[128], help[160];
		snprintf(metric, sizeof(metric), "hyperswitch_port_backend_%s%s", ns.v[k],
			 gauge ? "" : "_total");
		snprintf(help, sizeof(help), "The backend's own counter %s.", ns.v[k]);
		family(f, metric, gauge ? "gauge" : "counter", help);
		for (unsigned i = 0; i < d->n_ports; i++) {
			struct backend_ctx c = {.f = f, .port = d->ports[i].conf.name,
						.want = ns.v[k]};
			hs_port_backend_counters(d->ports[i].port, backend_one, &c);
		}
		free(ns.v[k]);
	}
	free(ns.v);
}

static void render_ports(FILE *f, struct hsd *d)
{
	unsigned n = d->n_ports;
	struct hs_port_stats *st = calloc(n ? n : 1, sizeof(*st));
	if (!st)
		return;
	for (unsigned i = 0; i < n; i++)
		hs_port_get_stats(d->ports[i].port, &st[i]);
	family(f, "hyperswitch_port_info", "gauge", "One per port, with its type and VLAN mode.");
	for (unsigned i = 0; i < n; i++) {
		const struct hsd_port_conf *c = &d->ports[i].conf;
		fprintf(f, "hyperswitch_port_info{port=\"");
		label(f, c->name);
		fprintf(f, "\",type=\"%s\",vlan_mode=\"%s\"} 1\n",
			hsd_port_type_name(c->type),
			c->vlan_mode == HS_VLAN_TRUNK ? "trunk" : "access");
	}
	family(f, "hyperswitch_port_link_up", "gauge", "1 when the port's link is up.");
	for (unsigned i = 0; i < n; i++)
		port_sample(f, "hyperswitch_port_link_up", d->ports[i].conf.name,
			    hs_port_link_up(d->ports[i].port));
	family(f, "hyperswitch_port_fdb_entries", "gauge", "MACs learned or static on the port.");
	for (unsigned i = 0; i < n; i++)
		port_sample(f, "hyperswitch_port_fdb_entries", d->ports[i].conf.name,
			    st[i].fdb_entries);
	family(f, "hyperswitch_port_link_changes_total", "counter",
	       "Times the port's link went up or down (library events).");
	for (unsigned i = 0; i < n; i++)
		port_sample(f, "hyperswitch_port_link_changes_total", d->ports[i].conf.name,
			    d->ports[i].link_changes);
	family(f, "hyperswitch_port_broken_total", "counter",
	       "Times the port's peer broke the rules and a queue was stopped.");
	for (unsigned i = 0; i < n; i++)
		port_sample(f, "hyperswitch_port_broken_total", d->ports[i].conf.name,
			    d->ports[i].broken);
#define X(field, help)                                                              \
	family(f, "hyperswitch_port_" #field "_total", "counter", help);            \
	for (unsigned i = 0; i < n; i++)                                            \
		port_sample(f, "hyperswitch_port_" #field "_total", d->ports[i].conf.name, \
			    st[i].field);
	PORT_COUNTERS(X)
#undef X
	family(f, "hyperswitch_port_drops_total", "counter",
	       "Frames dropped, by port and reason (every reason the library names).");
	for (unsigned i = 0; i < n; i++)
		for (int r = 0; r < HS_DROP__COUNT; r++) {
			fprintf(f, "hyperswitch_port_drops_total{port=\"");
			label(f, d->ports[i].conf.name);
			fprintf(f, "\",reason=\"%s\"} %llu\n",
				hs_drop_reason_name((enum hs_drop_reason)r),
				(unsigned long long)st[i].drops[r]);
		}
	free(st);
	render_backend(f, d);
}

static void render_switch(FILE *f, struct hsd *d)
{
	struct hs_switch_stats s;
	memset(&s, 0, sizeof(s));
	hs_switch_get_stats(d->sw, &s);
	family(f, "hyperswitch_info", "gauge", "The daemon's version and switch name.");
	fprintf(f, "hyperswitch_info{version=\"%s\",switch=\"", HS_VERSION_STRING);
	label(f, d->conf.name);
	fprintf(f, "\"} 1\n");
	family(f, "hyperswitch_uptime_seconds", "gauge", "Seconds since the daemon started.");
	fprintf(f, "hyperswitch_uptime_seconds %llu\n",
		(unsigned long long)((hsd_now_ns() - d->start_ns) / 1000000000ull));
	family(f, "hyperswitch_ports", "gauge", "Ports on the switch.");
	fprintf(f, "hyperswitch_ports %u\n", d->n_ports);
	family(f, "hyperswitch_fdb_entries", "gauge", "Entries in the forwarding table.");
	fprintf(f, "hyperswitch_fdb_entries %llu\n", (unsigned long long)s.fdb_entries);
	family(f, "hyperswitch_fdb_capacity", "gauge", "Capacity of the forwarding table.");
	fprintf(f, "hyperswitch_fdb_capacity %llu\n", (unsigned long long)s.fdb_capacity);
#define FDB(field, help)                                                              \
	family(f, "hyperswitch_fdb_" #field "_total", "counter", help);               \
	fprintf(f, "hyperswitch_fdb_" #field "_total %llu\n", (unsigned long long)s.fdb_##field);
	FDB(learned, "MACs learned.")
	FDB(moved, "Learned MACs that moved to another port.")
	FDB(aged, "Learned MACs aged out.")
	FDB(evicted, "Learned MACs evicted to make room.")
	FDB(static_refused, "Learning refused because a static entry holds the MAC.")
#undef FDB
	family(f, "hyperswitch_rounds_total", "counter",
	       "Switching rounds that moved frames, by the thread that ran them.");
	fprintf(f, "hyperswitch_rounds_total{context=\"sender\"} %llu\n",
		(unsigned long long)s.rounds_sender);
	fprintf(f, "hyperswitch_rounds_total{context=\"worker\"} %llu\n",
		(unsigned long long)s.rounds_worker);
	family(f, "hyperswitch_workers", "gauge", "Offload worker threads.");
	fprintf(f, "hyperswitch_workers %u\n", d->conf.workers);
	family(f, "hyperswitch_workers_idle", "gauge", "Offload workers asleep now.");
	fprintf(f, "hyperswitch_workers_idle %u\n", s.workers_idle);
	static const char *const wf[] = {"rounds", "handoffs", "sleeps", "handbacks",
					 "quiet_releases"};
	static const char *const wh[] = {"Rounds the worker ran that moved frames.",
					 "Queues the worker took over.",
					 "Times the worker went to sleep.",
					 "Queues the worker, busy, gave back to their sender.",
					 "Queues the worker, busy, let go after poll_us without a frame."};
	for (int k = 0; k < 5 && d->conf.workers; k++) {
		char name[64];
		snprintf(name, sizeof(name), "hyperswitch_worker_%s_total", wf[k]);
		family(f, name, "counter", wh[k]);
		for (unsigned w = 0; w < d->conf.workers; w++) {
			struct hs_worker_stats ws = {.size = sizeof(ws)};
			if (hs_switch_worker_stats(d->sw, w, &ws))
				continue;
			uint64_t v = k == 0   ? ws.rounds
				     : k == 1 ? ws.handoffs
				     : k == 2 ? ws.sleeps
				     : k == 3 ? ws.handbacks
						: ws.quiet_releases;
			fprintf(f, "%s{worker=\"%u\"} %llu\n", name, w, (unsigned long long)v);
		}
	}
}

static void render_control(FILE *f, struct hsd *d)
{
	struct hsd_ctl_stats c;
	hsd_ctl_stats(d, &c);
	family(f, "hyperswitch_control_connections", "gauge",
	       "Connections open on the control socket.");
	fprintf(f, "hyperswitch_control_connections %llu\n", (unsigned long long)c.connections);
	family(f, "hyperswitch_control_requests_total", "counter",
	       "Requests answered on the control socket.");
	fprintf(f, "hyperswitch_control_requests_total %llu\n", (unsigned long long)c.requests);
	family(f, "hyperswitch_control_connections_total", "counter",
	       "Control connections: accepted, and refused or closed by the daemon, by reason.");
	const char *what[] = {"accepted", "refused_busy", "closed_idle", "closed_unread",
			      "closed_error"};
	uint64_t v[] = {c.accepted, c.refused, c.idle, c.lingered, c.errors};
	for (unsigned i = 0; i < 5; i++)
		fprintf(f, "hyperswitch_control_connections_total{event=\"%s\"} %llu\n", what[i],
			(unsigned long long)v[i]);
}

char *hsd_metrics_render(struct hsd *d, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	if (!f)
		return NULL;
	render_switch(f, d);
	render_control(f, d);
	render_ports(f, d);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- HTTP ------------------------------------------------------------------- */

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **state)
{
	(void)version;
	(void)upload;
	(void)state;
	struct hsd *d = cls;
	struct MHD_Response *resp;
	unsigned code = MHD_HTTP_OK;
	if (*upload_size) {
		*upload_size = 0; /* a body: ignored, answered below */
		return MHD_YES;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		static const char m[] = "only GET\n";
		resp = MHD_create_response_from_buffer(sizeof(m) - 1, (void *)m,
						       MHD_RESPMEM_PERSISTENT);
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics")) {
		static const char m[] = "not found: the metrics are at /metrics\n";
		resp = MHD_create_response_from_buffer(sizeof(m) - 1, (void *)m,
						       MHD_RESPMEM_PERSISTENT);
		code = MHD_HTTP_NOT_FOUND;
	} else {
		size_t len = 0;
		char *text = hsd_metrics_render(d, &len);
		if (!text)
			return MHD_NO;
		resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
		if (resp)
			MHD_add_response_header(resp, "Content-Type",
						"text/plain; version=0.0.4; charset=utf-8");
	}
	if (!resp)
		return MHD_NO;
	enum MHD_Result r = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return r;
}

static void arm_timer(struct hsd_metrics *m);

static void run_mhd(struct hsd_metrics *m)
{
	MHD_run(m->mhd);
	arm_timer(m);
}

static void on_timer(uv_timer_t *t)
{
	run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	run_mhd(p->data);
}

static void arm_timer(struct hsd_metrics *m)
{
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(m->mhd, &ms) == MHD_YES)
		uv_timer_start(&m->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&m->timer);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 0)))
#endif
static void log_mhd(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = 0;
	hsd_log(HS_LOG_WARN, "metrics: %s", msg);
}

int hsd_metrics_start(struct hsd *d, char *err, size_t errlen)
{
	if (!d->conf.metrics_listen)
		return 0;
	struct sockaddr_storage ss;
	socklen_t sl;
	if (hsd_listen_parse(d->conf.metrics_listen, &ss, &sl)) {
		snprintf(err, errlen, "metrics: bad listen address %s", d->conf.metrics_listen);
		return -EINVAL;
	}
	struct hsd_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	/* the port is the address's (MHD binds that); given here too, it is
	 * the one MHD's messages name ("Failed to bind to port 0" otherwise) */
	uint16_t port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
	m->mhd = MHD_start_daemon(flags, port, NULL, NULL, answer, d, MHD_OPTION_EXTERNAL_LOGGER,
				  log_mhd, NULL, MHD_OPTION_SOCK_ADDR, &ss,
				  MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
				  10u, MHD_OPTION_END);
	if (!m->mhd) {
		snprintf(err, errlen, "metrics: cannot listen on %s", d->conf.metrics_listen);
		free(m);
		return -EADDRNOTAVAIL;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	m->d = d;
	uv_poll_init(d->loop, &m->poll, info->epoll_fd);
	uv_timer_init(d->loop, &m->timer);
	m->poll.data = m->timer.data = m;
	uv_poll_start(&m->poll, UV_READABLE, on_poll);
	arm_timer(m);
	d->metrics = m;
	if (d->conf.metrics_listen[0] == ':') /* ":PORT" */
		hsd_log(HS_LOG_INFO, "metrics on http://0.0.0.0%s/metrics (every IPv4 address)",
			d->conf.metrics_listen);
	else
		hsd_log(HS_LOG_INFO, "metrics on http://%s/metrics", d->conf.metrics_listen);
	return 0;
}

static void handle_closed(uv_handle_t *h)
{
	struct hsd_metrics *m = h->data;
	if (--m->handles == 0) {
		MHD_stop_daemon(m->mhd);
		free(m);
	}
}

void hsd_metrics_stop(struct hsd *d)
{
	struct hsd_metrics *m = d->metrics;
	if (!m)
		return;
	d->metrics = NULL;
	m->handles = 2;
	uv_close((uv_handle_t *)&m->poll, handle_closed);
	uv_close((uv_handle_t *)&m->timer, handle_closed);
}
