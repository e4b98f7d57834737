/*
 * conf.h - hyperswitchd's configuration: what the file (or a control
 * request) says, checked, as plain structs the daemon applies through the
 * library's public API. One parser reads both libconfig settings and JSON
 * objects (hsctl port add/set), so the two cannot disagree.
 */
#ifndef HSD_CONF_H
#define HSD_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sys/socket.h>

#include <hyperswitch/hyperswitch.h>

#define HSD_DEFAULT_CONFIG "/etc/hyperswitch/hyperswitchd.conf"
#define HSD_DEFAULT_SOCKET "/run/hyperswitch/hyperswitchd.sock"
#define HSD_MAX_PORTS 4096
#define HSD_MAX_WORKERS 256

enum hsd_port_type { HSD_VHOST_USER, HSD_TAP, HSD_XEN, HSD_VXLAN, HSD_UPLINK };

/* One port as configured. Strings are owned (malloc'd). */
struct hsd_port_conf {
	char *name;
	enum hsd_port_type type;
	/* common */
	enum hs_vlan_mode vlan_mode;
	uint16_t vlan;
	uint16_t n_trunks;  /* 0: every VLAN (trunk) */
	uint16_t *trunks;   /* sorted, unique */
	uint32_t mtu, mac_limit;
	bool mtu_set; /* given (a tap's device MTU is then set to it) */
	bool learn, flood;
	/* vhost-user */
	char *path;
	bool client, packed, in_order, guest_announce, offer_mtu;
	uint16_t queues;
	uint32_t reconnect_ms, socket_mode;
	bool socket_owner_set;
	uint32_t socket_uid, socket_gid;
	char *socket_owner, *socket_group; /* as written, for show */
	/* tap (uplink: ifname, offload, queues) */
	char *ifname;
	bool attach, up, offload, staged, uring;
	uint16_t ring;
	/* uplink */
	bool promisc, qdisc_bypass;
	uint16_t rx_blocks, tx_slots, block_tov_ms;
	uint32_t rx_block_kib;
	char *uplink_mode;           /* "auto", "packet", "xdp", "xdp-generic" */
	uint32_t xdp_frames, xdp_macs;
	/* xen (queues above: the most the guest may use) */
	uint32_t domid, devid, backend_domid;
	bool vcpu_state;             /* read the guest's vCPU state (xen: dom0;
					vhost-user: the front-end's threads) */
	uint32_t vcpu_idle_ms;       /* vhost-user: the sampler pauses after
					this long without a frame; 0: never */
	/* vxlan */
	char *local;                 /* the VTEP address, normalised */
	char *remotes;               /* the flood list: addresses, ',' between */
	char *follow;                /* a Linux vxlan device whose FDB it follows */
	bool follow_any_port;        /* HS_VXLAN_FOLLOW_ANY_PORT */
	char *underlay_if;           /* hs_vxlan_config.underlay_if */
	char *export_port;           /* a bridge port for the local MACs */
	uint32_t vni, ageing_s, max_entries;
	uint16_t dst_port, src_port_min, src_port_max, underlay_mtu;
	uint16_t ttl, tos;
	bool remote_learning, udp_csum, df;
};

/* The next address of a vxlan port's remotes: walks *q (NULL or "a,b")
 * and copies each into out; false at the end. */
bool hsd_remotes_next(const char **q, char out[64]);

/* "vhost-user", "tap", "xen", "vxlan", "uplink" */
const char *hsd_port_type_name(enum hsd_port_type t);

/* Switch settings that need a restart to change, and those that do not. */
struct hsd_conf {
	char *file;
	/* switch */
	char *name;
	uint32_t workers, n_cpus;
	int *cpus;
	uint32_t flags; /* HS_SW_BUSY_POLL / HS_SW_NO_POLL */
	uint32_t poll_us, burst, max_ports;
	uint32_t fdb_capacity, fdb_aging_s, fdb_port_limit;
	uint32_t backlog_frames, backlog_bytes;
	/* control */
	char *socket;
	uint32_t socket_mode;
	bool socket_group_set;
	uint32_t socket_gid;
	/* metrics: "ADDR:PORT", NULL when off */
	char *metrics_listen;
	/* log */
	enum hs_log_level log_level;
	bool syslog;
	/* ports */
	unsigned n_ports;
	struct hsd_port_conf *ports;
};

/* Reads and checks FILE. On error returns -EINVAL (or -errno when the file
 * cannot be read) with "file:line: reason" in err. */
int hsd_conf_load(const char *file, struct hsd_conf *c, char *err, size_t errlen);
void hsd_conf_free(struct hsd_conf *c);

/* A port from a JSON object with the config file's keys (port.add). */
int hsd_port_from_json(json_t *obj, struct hsd_port_conf *p, char *err, size_t errlen);
/* Applies the keys of a JSON object on top of a copy of `base` (port.set):
 * `name` and `type` may not change. */
int hsd_port_update_json(const struct hsd_port_conf *base, json_t *obj,
			 struct hsd_port_conf *out, char *err, size_t errlen);
/* Checks a port against the others (unique name, path, ifname). */
int hsd_port_check_unique(const struct hsd_port_conf *p, const struct hsd_port_conf *others,
			  unsigned n, const char *skip_name, char *err, size_t errlen);

void hsd_port_conf_free(struct hsd_port_conf *p);
int hsd_port_conf_copy(struct hsd_port_conf *dst, const struct hsd_port_conf *src);
/* Appends the names of the settings that differ to the JSON array
 * `changed`; true when any does. */
bool hsd_port_conf_diff(const struct hsd_port_conf *a, const struct hsd_port_conf *b,
			json_t *changed);
/* A trunk port's VLANs as the config writes them: ids, and "A-B" for
 * three or more in a row; [] for every VLAN. */
json_t *hsd_trunks_json(const struct hsd_port_conf *p);
/* The port as a JSON object with the config file's keys (show). */
json_t *hsd_port_conf_json(const struct hsd_port_conf *p);

/* Whether a metrics.listen value parses (metrics.c). */
int hsd_metrics_check_listen(const char *listen);
/* metrics.listen: "ADDR:PORT" or "[ADDR6]:PORT" into a socket address. */
int hsd_listen_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sl);

const char *hsd_level_name(enum hs_log_level l);
int hsd_level_parse(const char *s, enum hs_log_level *out);

#endif /* HSD_CONF_H */
