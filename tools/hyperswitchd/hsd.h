/*
 * hsd.h - hyperswitchd's state. Everything here runs on the daemon's one
 * libuv loop (the switch's control plane is attached to the same loop);
 * only the log functions are called from other threads (the library's
 * data-path and worker threads log through them).
 */
#ifndef HSD_H
#define HSD_H

#include <stdarg.h>
#include <uv.h>

#include "conf.h"

struct hsd_port {
	struct hsd_port_conf conf;
	hs_port_t *port;
	uint64_t link_changes, broken; /* events.c, on the loop */
	char last_broken[96];
};

struct hsd_ctl;     /* ctl.c */
struct hsd_conn;    /* ctl.c: one control connection */
struct hsd_mirror;  /* mirror.c */
struct hsd_capture; /* mirror.c */
struct hsd_metrics; /* metrics.c */

struct hsd {
	uv_loop_t *loop;
	hs_switch_t *sw;
	struct hsd_conf conf;  /* switch, control and log settings in force;
				  its ports are not used (see ports below) */
	const char *config_file;
	struct hsd_port *ports; /* the running ports, in order */
	unsigned n_ports, cap_ports;
	uint64_t start_ns;
	struct hsd_ctl *ctl;
	struct hsd_metrics *metrics;
	struct hsd_mirror *mirrors;
	unsigned capture_serial;
	bool stopping;
	bool level_from_cmdline; /* -l: reload leaves the level alone */
	bool socket_from_cmdline; /* -s: the file's control.socket is not used */
};

/* ---- ports.c: the forwarding table read out ---- */
struct hsd_fdb_rows {
	const hs_port_t *static_of; /* NULL: every entry; else this port's static ones */
	const uint8_t *mac;         /* NULL: every MAC; else this one's entries */
	struct hs_fdb_info *v;      /* to free */
	size_t n, cap;
};
/* Reads the table's entries into rows; 0, or -ENOMEM (rows->v freed). */
int hsd_fdb_rows(struct hsd *d, struct hsd_fdb_rows *rows);
/* "aa:bb:cc:dd:ee:ff" */
void hsd_fmt_mac(const uint8_t m[6], char out[18]);

/* ---- main.c ---- */
/* Tells systemd (Type=notify) the daemon's state; nothing without
 * libsystemd or NOTIFY_SOCKET. */
void hsd_notify(const char *state);

/* ---- log.c ---- */
void hsd_log_init(enum hs_log_level level, bool use_syslog);
/* With syslog: warnings and errors go to stderr too (a daemon before it
 * detaches). */
void hsd_log_stderr_too(bool on);
/* Keeps the library's first error logged by this thread in buf (emptied
 * here) until called again with NULL. */
void hsd_log_capture(char *buf, size_t len);
void hsd_log_set_level(enum hs_log_level level);
enum hs_log_level hsd_log_level(void);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void hsd_log(enum hs_log_level level, const char *fmt, ...);
/* The library's log callback (any thread). */
void hsd_log_lib(void *opaque, enum hs_log_level level, const char *msg);

/* ---- ports.c ---- */
/* Creates the switch d->conf describes and attaches it to d->loop; 0 or
 * -errno (logged). */
int hsd_switch_start(struct hsd *d);
/* Whether the port's frames may be in VLAN vid: an access port's VLAN; a
 * trunk's native VLAN and its allowed ones (every VLAN without a list). */
bool hsd_port_carries(const struct hsd_port_conf *c, uint16_t vid);
/* Adds a port from its config; on failure err says why. */
int hsd_port_add(struct hsd *d, const struct hsd_port_conf *pc, char *err, size_t errlen);
int hsd_port_del(struct hsd *d, const char *name);
/* Whether pc clashes with a running port other than `skip`. */
int hsd_ports_unique(struct hsd *d, const struct hsd_port_conf *pc, const char *skip,
		     char *err, size_t errlen);
struct hsd_port *hsd_port_get(struct hsd *d, const char *name);
/* Replaces a port by one with new settings (delete, then add). */
int hsd_port_replace(struct hsd *d, const struct hsd_port_conf *pc, char *err, size_t errlen);
/* The HS_PORT_SET_* bits that change port a into b in place, or 0 when it
 * must be made again (a backend setting changed). */
uint32_t hsd_port_in_place(const struct hsd_port_conf *a, const struct hsd_port_conf *b);
/* Applies pc to the running port of its name with hs_port_reconfigure. */
int hsd_port_reconfigure(struct hsd *d, const struct hsd_port_conf *pc, uint32_t bits,
			 char *err, size_t errlen);
/* Reads the config file again and applies the difference; fills `result`
 * as the reload command returns it. -EINVAL (err set) when the file is
 * rejected; then nothing changed. */
int hsd_reload(struct hsd *d, json_t **result, char *err, size_t errlen);
void hsd_ports_del_all(struct hsd *d);

/* ---- ctl.c ---- */
int hsd_ctl_start(struct hsd *d, char *err, size_t errlen);
void hsd_ctl_stop(struct hsd *d);
struct hsd_ctl_stats {
	uint64_t connections;   /* open now */
	uint64_t accepted;      /* connections taken */
	uint64_t refused;       /* too many: told EBUSY and closed */
	uint64_t idle;          /* closed after IDLE_MS without a request */
	uint64_t lingered;      /* shut down, closed unread after LINGER_MS */
	uint64_t errors;        /* closed after a protocol error */
	uint64_t requests;      /* requests answered */
};
void hsd_ctl_stats(struct hsd *d, struct hsd_ctl_stats *st);

/* Streams on a control connection (captures): the connection owns buf
 * (malloc'd) once called; bytes queued and not yet written; shutdown
 * after what is queued. */
void hsd_conn_send_raw(struct hsd_conn *c, void *buf, size_t len);
size_t hsd_conn_pending(struct hsd_conn *c);
void hsd_conn_end(struct hsd_conn *c);
void hsd_conn_attach_capture(struct hsd_conn *c, struct hsd_capture *cap);
void hsd_conn_detach_capture(struct hsd_conn *c);

/* ---- mirror.c ---- */
int hsd_dir_parse(const char *s, uint32_t *flags);
const char *hsd_dir_name(uint32_t flags); /* "rx", "tx", "both" */
int hsd_mirror_add(struct hsd *d, const char *src, const char *dst, uint32_t flags,
		   char *err, size_t errlen);
int hsd_mirror_del(struct hsd *d, const char *src, const char *dst, char *err, size_t errlen);
/* The sources of the operator's mirrors to port dst ([] if none). */
json_t *hsd_mirror_sources_json(struct hsd *d, const char *dst);
int hsd_mirror_set(struct hsd *d, const char *src, const char *dst, uint32_t flags,
		   char *err, size_t errlen);
json_t *hsd_mirrors_json(struct hsd *d);
int hsd_capture_start(struct hsd *d, struct hsd_conn *conn, const char *port, uint32_t flags,
		      uint32_t snaplen, char *err, size_t errlen);
void hsd_capture_conn_closed(struct hsd_capture *c);
uint32_t hsd_capture_snaplen_max(void);
void hsd_mirrors_port_gone(struct hsd *d, const char *name);
/* Captures of a port whose VLANs changed take the new ones. */
void hsd_captures_follow(struct hsd *d, const struct hsd_port_conf *pc);
void hsd_mirrors_del_all(struct hsd *d);

/* ---- events.c ---- */
int hsd_events_start(struct hsd *d);
void hsd_events_stop(struct hsd *d);

/* ---- metrics.c ---- */
int hsd_metrics_start(struct hsd *d, char *err, size_t errlen); /* 0 when off */
void hsd_metrics_stop(struct hsd *d);
/* The Prometheus text; malloc'd, *len bytes. */
char *hsd_metrics_render(struct hsd *d, size_t *len);

uint64_t hsd_now_ns(void);

#endif /* HSD_H */
