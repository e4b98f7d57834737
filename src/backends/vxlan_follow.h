/*
 * vxlan_follow.h - a vxlan port's table following a Linux vxlan device's
 * FDB over rtnetlink (hs_vxlan_follow), so that `bridge fdb` and FRR's
 * zebra (EVPN) program the port without a new protocol.
 */
#ifndef HS_VXLAN_FOLLOW_H
#define HS_VXLAN_FOLLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "hyperswitch/backend.h"

struct vx_follow;

/* Adds (add) or deletes an entry of the port's table: mac (all zeros: the
 * flood list) -> remote, flags HS_VXLAN_FDB_STATIC or _EXTERN. Returns 0
 * or a negative errno. */
typedef int (*vx_follow_apply)(void *arg, bool add, const uint8_t mac[6], const char *remote,
			       uint32_t flags);

struct vx_follow_config {
	const char *ifname;  /* the Linux vxlan device */
	const char *export_ifname; /* NULL, or the bridge port for local MACs */
	bool any_port;       /* HS_VXLAN_FOLLOW_ANY_PORT */
	uint32_t vni;        /* the port's */
	uint16_t dst_port;   /* the port's */
	int family;          /* the port's underlay: AF_INET or AF_INET6 */
	unsigned max;        /* entries it may hold: table size + flood list */
	vx_follow_apply apply;
	void *arg;
};

/* Reads the device's FDB (a dump: on return the table holds its entries)
 * and watches for changes on the switch's loop. -ENODEV (no such device),
 * -EINVAL (not a vxlan device, or one of another VNI without external
 * metadata), -errno of netlink. Loop thread or any thread. */
int vx_follow_open(hs_port_t *port, const struct vx_follow_config *c, struct vx_follow **out);
/* Stops watching (the entries it added stay in the table). */
void vx_follow_close(struct vx_follow *f);
/* Its counters, in the order of vx_follow_counter_names. */
#define VX_FOLLOW_NCTR 11
extern const char *const vx_follow_counter_names[VX_FOLLOW_NCTR];
void vx_follow_read(struct vx_follow *f, uint64_t out[VX_FOLLOW_NCTR]);

#endif
