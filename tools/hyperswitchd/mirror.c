/*
 * mirror.c - mirrors (hsctl mirror) and captures (hsctl capture).
 *
 * A capture is a mirror whose output is a mem port the daemon owns: the
 * switch copies the port's frames into that port's buffers (bounded: a
 * full ring drops and counts, the data path never waits), the daemon's
 * loop wakes on the port's eventfd and streams the frames to the hsctl
 * that asked, as binary records on its control connection (docs/control.md).
 * A connection with more than CAP_BACKLOG bytes unsent loses frames
 * (counted) rather than holding buffers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hsd.h"

#define CAP_RING 256
#define CAP_BACKLOG (4u << 20)
#define CAP_SNAPLEN_MAX 262144

struct hsd_mirror {
	char src[HS_PORT_NAME_MAX], dst[HS_PORT_NAME_MAX];
	uint32_t flags;
	hs_mirror_t *h;
	struct hsd_capture *cap; /* NULL: an operator's mirror */
	struct hsd_mirror *next;
};

struct hsd_capture {
	struct hsd *d;
	struct hsd_conn *conn;
	hs_port_t *port;        /* the internal mem port */
	struct hsd_mirror *mirror;
	uv_poll_t poll;
	uv_timer_t timer;
	int handles;
	uint32_t snaplen;
	uint64_t sent, dropped;
};

const char *hsd_dir_name(uint32_t f)
{
	return f == (HS_MIRROR_RX | HS_MIRROR_TX) ? "both" : f == HS_MIRROR_RX ? "rx" : "tx";
}

int hsd_dir_parse(const char *s, uint32_t *flags)
{
	if (!s || !strcmp(s, "both"))
		*flags = HS_MIRROR_RX | HS_MIRROR_TX;
	else if (!strcmp(s, "rx"))
		*flags = HS_MIRROR_RX;
	else if (!strcmp(s, "tx"))
		*flags = HS_MIRROR_TX;
	else
		return -EINVAL;
	return 0;
}

static int mirror_make(struct hsd *d, hs_port_t *src, hs_port_t *dst, const char *dst_name,
		       uint32_t flags, struct hsd_mirror **out, char *err, size_t errlen)
{
	struct hsd_mirror *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	struct hs_mirror_config mc = {.size = sizeof(mc), .flags = flags, .src = src, .dst = dst};
	int rc = hs_mirror_add(d->sw, &mc, &m->h);
	if (rc) {
		snprintf(err, errlen, "mirror of %s to %s: %s", hs_port_name(src), dst_name,
			 rc == -EINVAL ? "a port cannot be both a mirror source and an output"
			 : rc == -EEXIST ? "exists already"
			 : rc == -ENOSPC ? "the source has the most outputs it can have (4)"
					 : hs_strerror(rc));
		free(m);
		return rc;
	}
	snprintf(m->src, sizeof(m->src), "%s", hs_port_name(src));
	snprintf(m->dst, sizeof(m->dst), "%s", dst_name);
	m->flags = flags;
	m->next = d->mirrors;
	d->mirrors = m;
	*out = m;
	return 0;
}

static void mirror_unlink(struct hsd *d, struct hsd_mirror *m)
{
	for (struct hsd_mirror **pp = &d->mirrors; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			return;
		}
}

int hsd_mirror_add(struct hsd *d, const char *src, const char *dst, uint32_t flags,
		   char *err, size_t errlen)
{
	struct hsd_port *s = hsd_port_get(d, src), *t = hsd_port_get(d, dst);
	if (!s || !t) {
		snprintf(err, errlen, "no port named %s", !s ? src : dst);
		return -ENOENT;
	}
	struct hsd_mirror *m;
	int rc = mirror_make(d, s->port, t->port, dst, flags, &m, err, errlen);
	if (!rc)
		hsd_log(HS_LOG_INFO, "mirror %s of %s to %s", hsd_dir_name(flags), src, dst);
	return rc;
}

/* The operator's mirror of src to dst (not a capture's), or NULL and
 * the reason in err. */
static struct hsd_mirror *mirror_find(struct hsd *d, const char *src, const char *dst,
				      int *rc, char *err, size_t errlen)
{
	for (struct hsd_mirror *m = d->mirrors; m; m = m->next) {
		if (strcmp(m->src, src) || strcmp(m->dst, dst))
			continue;
		if (m->cap) {
			snprintf(err, errlen, "that mirror is a capture: stop the hsctl capture");
			*rc = -EBUSY;
			return NULL;
		}
		return m;
	}
	snprintf(err, errlen, "no mirror of %s to %s", src, dst);
	*rc = -ENOENT;
	return NULL;
}

int hsd_mirror_set(struct hsd *d, const char *src, const char *dst, uint32_t flags,
		   char *err, size_t errlen)
{
	int rc;
	struct hsd_mirror *m = mirror_find(d, src, dst, &rc, err, errlen);
	if (!m)
		return rc;
	if ((rc = hs_mirror_set_flags(m->h, flags))) {
		snprintf(err, errlen, "mirror of %s to %s: %s", src, dst,
			 rc == -ENOSPC ? "the source has the most outputs it can have (4) that way"
				       : hs_strerror(rc));
		return rc;
	}
	m->flags = flags; /* (the library logs the change) */
	return 0;
}

int hsd_mirror_del(struct hsd *d, const char *src, const char *dst, char *err, size_t errlen)
{
	int rc;
	struct hsd_mirror *m = mirror_find(d, src, dst, &rc, err, errlen);
	if (m) {
		rc = hs_mirror_del(m->h);
		if (rc) {
			snprintf(err, errlen, "%s", hs_strerror(rc));
			return rc;
		}
		mirror_unlink(d, m);
		free(m);
		hsd_log(HS_LOG_INFO, "mirror of %s to %s deleted", src, dst);
	}
	return rc;
}

json_t *hsd_mirror_sources_json(struct hsd *d, const char *dst)
{
	json_t *list = json_array();
	for (const struct hsd_mirror *m = d->mirrors; m; m = m->next)
		if (!m->cap && !strcmp(m->dst, dst)) /* (the list is newest first) */
			json_array_insert_new(list, 0, json_string(m->src));
	return list;
}

json_t *hsd_mirrors_json(struct hsd *d)
{
	json_t *list = json_array();
	for (const struct hsd_mirror *m = d->mirrors; m; m = m->next)
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:b}", "src", m->src, "dst",
						      m->dst, "direction", hsd_dir_name(m->flags),
						      "capture", m->cap != NULL));
	return list;
}

/* ---- captures ---------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void send_record(struct hsd_capture *c, uint32_t type, const void *payload, size_t len)
{
	uint8_t *b = malloc(16 + len);
	if (!b)
		return;
	memset(b, 0, 16);
	put32(b, type);
	put32(b + 4, (uint32_t)len);
	if (len)
		memcpy(b + 16, payload, len);
	hsd_conn_send_raw(c->conn, b, 16 + len);
}

static uint64_t port_drops(hs_port_t *p)
{
	struct hs_port_stats st;
	memset(&st, 0, sizeof(st));
	hs_port_get_stats(p, &st);
	uint64_t n = 0;
	for (int r = 0; r < HS_DROP__COUNT; r++)
		n += st.drops[r];
	return n;
}

/* Once a second; skipped while the client is CAP_BACKLOG behind (it does
 * not read: nothing may grow without bound), except the last one. */
static void send_counters(struct hsd_capture *c, bool last)
{
	if (!last && hsd_conn_pending(c->conn) > CAP_BACKLOG)
		return;
	uint8_t p[24];
	put64(p, c->sent);
	put64(p + 8, port_drops(c->port));
	put64(p + 16, c->dropped);
	send_record(c, 2, p, sizeof(p));
}

/* Moves what the switch delivered to the capture port onto the
 * connection, then re-arms the port's eventfd: at most DRAIN_BURSTS
 * bursts a call, so that frames arriving as fast as they are taken (with
 * workers) cannot hold the loop; past that, the eventfd is signalled
 * for the next turn. all: everything there (the mirror is gone: no more
 * comes, and the ring bounds it). */
#define DRAIN_BURSTS 8
static void drain(struct hsd_capture *c, bool all)
{
	struct hs_mem_frame f[32];
	int n;
	unsigned bursts = 0;
	do {
		while ((n = hs_mem_rx_burst(c->port, 0, f, 32)) > 0) {
			bursts++;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
			size_t total = 0;
			for (int i = 0; i < n; i++)
				total += 32 + (f[i].len < c->snaplen ? f[i].len : c->snaplen);
			uint8_t *b = NULL;
			if (hsd_conn_pending(c->conn) + total <= CAP_BACKLOG)
				b = malloc(total);
			if (!b) {
				c->dropped += (uint64_t)n;
			} else {
				size_t o = 0;
				for (int i = 0; i < n; i++) {
					uint32_t cap = f[i].len < c->snaplen ? f[i].len : c->snaplen;
					memset(b + o, 0, 32);
					put32(b + o, 1);
					put32(b + o + 4, 16 + cap);
					put64(b + o + 16, ns);
					put32(b + o + 24, f[i].len);
					memcpy(b + o + 32, f[i].data, cap);
					o += 32 + cap;
				}
				hsd_conn_send_raw(c->conn, b, total);
				c->sent += (uint64_t)n;
			}
			hs_mem_rx_release(c->port, 0, (unsigned)n);
			if (bursts == DRAIN_BURSTS && !all) {
				uint64_t one = 1;
				if (write(hs_mem_rx_fd(c->port, 0), &one, sizeof(one)) < 0) {
					/* a full counter: it is signalled anyway */
				}
				return;
			}
		}
	} while (hs_mem_rx_arm(c->port, 0) == 1);
}

static void on_readable(uv_poll_t *p, int status, int events)
{
	(void)status;
	(void)events;
	struct hsd_capture *c = p->data;
	uint64_t v;
	if (read(hs_mem_rx_fd(c->port, 0), &v, sizeof(v)) < 0) {
		/* nothing to clear: drain anyway */
	}
	drain(c, false);
}

static void on_tick(uv_timer_t *t)
{
	struct hsd_capture *c = t->data;
	drain(c, false);
	send_counters(c, false);
}

static void cap_handle_closed(uv_handle_t *h)
{
	struct hsd_capture *c = h->data;
	if (--c->handles == 0)
		free(c);
}

/* Ends a capture: the mirror and the internal port go; `final` sends the
 * last counters and the end record and closes the connection (the port
 * went away), otherwise the connection is closing already. */
static void capture_end(struct hsd_capture *c, bool final)
{
	struct hsd *d = c->d;
	uv_poll_stop(&c->poll);
	uv_timer_stop(&c->timer);
	/* no frame comes after this; if it fails (no memory), some may: the
	 * last drain is then bounded as the others */
	int mrc = hs_mirror_del(c->mirror->h);
	if (mrc)
		hsd_log(HS_LOG_ERROR, "capture of %s: the mirror stays: %s", c->mirror->src,
			strerror(-mrc));
	if (final) {
		drain(c, mrc == 0);
		send_counters(c, true);
		send_record(c, 3, NULL, 0);
	}
	hsd_log(HS_LOG_INFO, "capture of %s ended: %llu frames sent, %llu dropped by the "
		"switch, %llu by the daemon", c->mirror->src, (unsigned long long)c->sent,
		(unsigned long long)port_drops(c->port), (unsigned long long)c->dropped);
	mirror_unlink(d, c->mirror);
	free(c->mirror);
	hs_port_del(c->port);
	uv_close((uv_handle_t *)&c->poll, cap_handle_closed);
	uv_close((uv_handle_t *)&c->timer, cap_handle_closed);
	struct hsd_conn *conn = c->conn;
	hsd_conn_detach_capture(conn);
	if (final)
		hsd_conn_end(conn);
}

void hsd_capture_conn_closed(struct hsd_capture *c)
{
	capture_end(c, false);
}

int hsd_capture_start(struct hsd *d, struct hsd_conn *conn, const char *port, uint32_t flags,
		      uint32_t snaplen, char *err, size_t errlen)
{
	struct hsd_port *src = hsd_port_get(d, port);
	if (!src) {
		snprintf(err, errlen, "no port named %s", port);
		return -ENOENT;
	}
	struct hsd_capture *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->d = d;
	c->conn = conn;
	c->snaplen = snaplen;
	/* the capture port has the source's VLAN settings, so that copies
	 * are formatted as on the source's link; '/' keeps its name apart
	 * from every name the config allows */
	char name[HS_PORT_NAME_MAX];
	snprintf(name, sizeof(name), "capture/%u", ++d->capture_serial);
	struct hs_mem_config mc = {.n_queues = 1, .ring_size = CAP_RING,
				   .buf_size = HS_FRAME_MAX, .caps = HS_CAP_ALL};
	struct hs_port_config pc = {
		.name = name, .backend = HS_MEM_BACKEND, .backend_config = &mc,
		.backend_config_size = sizeof(mc), .vlan_mode = src->conf.vlan_mode,
		.vlan = src->conf.vlan, .trunks = src->conf.n_trunks ? src->conf.trunks : NULL,
		.n_trunks = src->conf.n_trunks, .mtu = 65517,
		.flags = HS_PORT_NO_LEARN | HS_PORT_NO_FLOOD};
	int rc = hs_port_add(d->sw, &pc, &c->port);
	if (rc) {
		snprintf(err, errlen, "capture of %s: %s", port, hs_strerror(rc));
		free(c);
		return rc;
	}
	rc = mirror_make(d, src->port, c->port, name, flags, &c->mirror, err, errlen);
	if (rc == -EINVAL)
		snprintf(err, errlen, "capture of %s: it is a mirror output (its frames are "
			 "not switched): capture the mirror's source", port);
	else if (rc == -ENOSPC)
		snprintf(err, errlen, "capture of %s: it has the most mirror outputs a port "
			 "can have (4) in that direction", port);
	if (rc) {
		hs_port_del(c->port);
		free(c);
		return rc;
	}
	c->mirror->cap = c;
	uv_poll_init(d->loop, &c->poll, hs_mem_rx_fd(c->port, 0));
	uv_timer_init(d->loop, &c->timer);
	c->poll.data = c->timer.data = c;
	c->handles = 2;
	uv_poll_start(&c->poll, UV_READABLE, on_readable);
	uv_timer_start(&c->timer, on_tick, 1000, 1000);
	hs_mem_rx_arm(c->port, 0);
	hsd_conn_attach_capture(conn, c);
	hsd_log(HS_LOG_INFO, "capture of %s (%s) started on %s", port, hsd_dir_name(flags), name);
	return 0;
}

/* Before a port is deleted: mirrors at either end go (the library would
 * free them with the port; the daemon forgets them first), captures of it
 * end and tell their client. */
void hsd_captures_follow(struct hsd *d, const struct hsd_port_conf *pc)
{
	struct hs_port_config c = {.size = sizeof(c), .vlan_mode = pc->vlan_mode,
				   .vlan = pc->vlan,
				   .trunks = pc->n_trunks ? pc->trunks : NULL,
				   .n_trunks = pc->n_trunks};
	for (struct hsd_mirror *m = d->mirrors; m; m = m->next) {
		if (!m->cap || strcmp(m->src, pc->name))
			continue;
		int rc = hs_port_reconfigure(m->cap->port, &c, HS_PORT_SET_VLAN);
		if (rc)
			hsd_log(HS_LOG_WARN, "capture %s of %s keeps the old VLANs: %s", m->dst,
				pc->name, hs_strerror(rc));
	}
}

void hsd_mirrors_port_gone(struct hsd *d, const char *name)
{
	struct hsd_mirror *m = d->mirrors;
	while (m) {
		struct hsd_mirror *next = m->next;
		if (!strcmp(m->src, name) || !strcmp(m->dst, name)) {
			if (m->cap) {
				capture_end(m->cap, true);
			} else {
				hs_mirror_del(m->h);
				mirror_unlink(d, m);
				hsd_log(HS_LOG_INFO, "mirror of %s to %s deleted with port %s",
					m->src, m->dst, name);
				free(m);
			}
		}
		m = next;
	}
}

void hsd_mirrors_del_all(struct hsd *d)
{
	while (d->mirrors) {
		struct hsd_mirror *m = d->mirrors;
		if (m->cap) {
			capture_end(m->cap, true);
		} else {
			hs_mirror_del(m->h);
			mirror_unlink(d, m);
			free(m);
		}
	}
}

uint32_t hsd_capture_snaplen_max(void)
{
	return CAP_SNAPLEN_MAX;
}
