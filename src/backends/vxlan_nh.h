/*
 * vxlan_nh.h - a vxlan port's underlay interface (hs_vxlan_config's
 * underlay_if): the remote VTEPs' next hops, resolved through the host's
 * routes and neighbour table over rtnetlink (or given by the embedder),
 * and the packet socket the datagrams leave by, their Ethernet and IP
 * headers built here from a template per VTEP.
 *
 * The table is the port's: the data path and the control calls read and
 * write it under the port's lock (vxlan.c). The resolver runs on the
 * switch's loop (vx_nh_tick); it takes the lock only to copy out what to
 * ask and to write back the answers, never across a netlink round trip.
 */
#ifndef HS_VXLAN_NH_H
#define HS_VXLAN_NH_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hyperswitch/port.h"

union vx_addr {
	struct in_addr v4;
	struct in6_addr v6;
};

/* Whether a and b are the same address of family (AF_INET: only the
 * first 4 bytes count). */
static inline bool vx_addr_same(int family, const union vx_addr *a, const union vx_addr *b)
{
	if (family == AF_INET)
		return a->v4.s_addr == b->v4.s_addr;
	uint64_t x[2], y[2];
	memcpy(x, a, 16);
	memcpy(y, b, 16);
	return !((x[0] ^ y[0]) | (x[1] ^ y[1]));
}

#define VX_NH_L2L3_MAX (14 + 40) /* Ethernet + IPv6 */

/* One remote VTEP's way out. The data path reads hdr and ipsum while ok. */
struct vx_nh {
	union vx_addr remote;
	uint8_t hdr[VX_NH_L2L3_MAX]; /* Ethernet + IP, lengths/ID/ECN/checksum 0 */
	uint32_t ipsum;         /* IPv4: the header's sum without those words */
	uint32_t psum;          /* the UDP pseudo-header's sum without its length */
	uint8_t mac[6];         /* the next hop's */
	union vx_addr hop;      /* ... and its address (the VTEP or the gateway) */
	bool ok;                /* hdr is good: send through the interface */
	bool used;              /* the data path wanted it since the last look */
	bool pinned;            /* mac given by the embedder */
	bool lapsed;            /* not ok since a neighbour notice, until looked up */
	uint16_t mtu;           /* the largest IP packet that goes this way */
	uint32_t route_mtu;     /* the route's MTU, 0 if it gives none */
	uint64_t used_ms;       /* last wanted */
	uint64_t checked_ms;    /* last looked up */
	uint64_t tried_ms;      /* last taken for a lookup (0: never) */
	int32_t next;           /* chain, or the free list */
};

/* An entry looked up longer ago than this is not used (its datagrams
 * take the kernel's way) until looked up again: entries in use are looked
 * up every second, so this bounds how long a changed next hop is missed
 * after a pause. */
#define VX_NH_FRESH_MS 2000

/* (Lock held.) Whether e's datagrams of ip_len bytes (the outer IP
 * packet) may go through the interface now: not larger than its MTU or
 * the route's (those take the kernel's way, which fragments them unless
 * DF is set). */
static inline bool vx_nh_usable(const struct vx_nh *e, uint64_t now_ms, uint32_t ip_len)
{
	return e->ok && ip_len <= e->mtu &&
	       (e->pinned || (int64_t)(now_ms - e->checked_ms) < VX_NH_FRESH_MS);
}

struct vx_nh_params {
	const char *ifname;
	int family;             /* AF_INET or AF_INET6 */
	union vx_addr local;
	uint8_t ttl, tos;       /* tos without the ECN bits */
	bool df;                /* IPv4: set DF */
	uint32_t capacity;      /* remote VTEPs at most */
};

struct vx_nh_tab;

/* Counters (vx_nh_read), in this order. */
#define VX_NH_NCTR 8
extern const char *const vx_nh_counter_names[VX_NH_NCTR];

/* Opens the interface's packet socket and a netlink socket. -ENODEV (no
 * such interface), -EINVAL (not an Ethernet interface), -EPERM, -ENOMEM. */
int vx_nh_open(struct vx_nh_tab **out, const struct vx_nh_params *p, hs_port_t *port);
void vx_nh_close(struct vx_nh_tab *t);
/* The packet socket (bound to the interface, with PACKET_VNET_HDR). */
int vx_nh_fd(const struct vx_nh_tab *t);
/* (Lock held.) Copies the socket address for a datagram (its EtherType
 * and interface) to sa, a struct sockaddr_ll; its length. */
unsigned vx_nh_sa(const struct vx_nh_tab *t, void *sa);

/* (Lock held.) remote's entry, made if new (NULL: the table is full),
 * marked as wanted now. */
struct vx_nh *vx_nh_get(struct vx_nh_tab *t, const union vx_addr *remote, uint64_t now_ms);
/* (Lock held.) Pins remote's next hop to mac, or (mac NULL) lets the
 * neighbour table say again. -ENOSPC (full), -ENOENT (nothing to unpin). */
int vx_nh_pin(struct vx_nh_tab *t, const union vx_addr *remote, const uint8_t *mac);

/* On the loop: looks the wanted entries up (routes, neighbours), follows
 * the interface's address, drops entries idle for a minute. */
void vx_nh_tick(struct vx_nh_tab *t, pthread_mutex_t *lock);

/* Counts a datagram sent through the interface (ok) or the kernel's way. */
void vx_nh_count(struct vx_nh_tab *t, unsigned through, unsigned kernel);
/* (Lock held, or not: the counters are atomic.) */
void vx_nh_read(struct vx_nh_tab *t, uint64_t out[VX_NH_NCTR]);

#endif
