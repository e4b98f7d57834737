/*
 * vxlan.c - the "vxlan" backend: a VXLAN tunnel endpoint as a port (see
 * include/hyperswitch/vxlan.h for what it does on the wire).
 *
 *  tunnel -> switch (recv_burst): recvmmsg() on a UDP socket bound to the
 *    local VTEP address and port fills up to a burst of buffers; each
 *    datagram's VXLAN header is checked (I flag, the port's VNI), its
 *    inner source MAC is learned behind the sender's address, and the
 *    inner frame is handed to the switch where it lies. recv_done has
 *    nothing to give back: the buffers are the queue's, reused next burst.
 *  switch -> tunnel (send_reserve/send_commit): the switch writes each
 *    frame into a staging slot with room for the UDP and VXLAN headers in
 *    front; send_commit looks up the remote VTEP(s) of the whole burst
 *    under one lock, writes the headers (source port from the inner
 *    flow's hash, checksum) and sends every copy of the burst with one
 *    sendmmsg() on a raw socket (the kernel adds the outer IP header).
 *    Broadcast, multicast and unknown unicast go to every VTEP of the
 *    flood list, one message each, from the same staged frame.
 *
 * The tunnel table is a hash of MAC -> VTEP over a fixed pool, plus the
 * flood list; one mutex guards both, taken once per burst on the data
 * path and by the control calls. A timer on the loop ages learned
 * entries once a second.
 *
 * The tunnel is as hostile as a guest: short datagrams, a missing I
 * flag, another VNI, a pinned MAC from the wrong VTEP are dropped and
 * counted (the port's bad_descriptor, plus a backend counter per cause).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/sock_diag.h>

#include "backends.h"
#include "hyperswitch/vxlan.h"
#include "vnet_hdr.h"
#include "vxlan_follow.h"
#include "vxlan_nh.h"
#include "vxlan_vtep.h"

#define VX_HDRS 16            /* UDP 8 + VXLAN 8 */
#define VX_BURST 64           /* receive buffers per queue: one burst */
#define VX_FLOOD_MAX 256      /* VTEPs in the flood list */
#define VX_MSG_MAX 512        /* messages in one sendmmsg */
#define VX_DEF_PORT 4789
#define VX_DEF_SRC_MIN 32768  /* Linux's ephemeral range */
#define VX_DEF_SRC_MAX 60999
#define VX_OVER4 36           /* outer IPv4 20 + UDP 8 + VXLAN 8 */
#define VX_OVER6 56           /* outer IPv6 40 + UDP 8 + VXLAN 8 */
#define VX_NH_TICK_MS 250     /* the underlay's next hops looked up */
#define VX_AGE_CHUNK 256      /* entries aged under the lock at a time */
#define VX_AGE_BUDGET_NS 1000000 /* ... for at most this long a turn */
#define VX_AGE_AGAIN_MS 10    /* ... and the next turn, while more are due */

struct vx_ent {
	uint8_t mac[6];
	uint8_t flags;          /* HS_VXLAN_FDB_* */
	int32_t next;           /* chain, or the free list */
	union vx_addr remote;
	uint64_t seen_s;        /* last seen (learned entries) */
	int32_t older, newer;   /* learned entries: the ageing list */
};

struct vx_msg_hdr {             /* the headers in front of one copy */
	uint8_t b[VX_HDRS];
};

#define VX_VNET 10              /* PACKET_VNET_HDR's header */
struct vx_pk_hdr {              /* ... sent through the underlay interface */
	uint8_t b[VX_VNET + VX_NH_L2L3_MAX + VX_HDRS];
};

union vx_ctl {                  /* ancillary data: TOS or TCLASS, SO_RXQ_OVFL */
	struct cmsghdr h;
	char b[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(uint32_t))];
};

struct vxlan {
	hs_port_t *port;
	struct hs_vxlan_config cfg;
	int family;             /* AF_INET or AF_INET6 */
	union vx_addr local;
	int rx_fd, tx_fd;       /* rx_fd: the VTEP group's (vxlan_vtep.c) */
	struct vx_vtep *vtep;
	uint32_t max_frame;     /* largest inner frame the underlay carries */
	uint32_t csum_const;    /* IPv4: the outer UDP checksum's constant words */
	/* tunnel table */
	pthread_mutex_t lock;
	struct vx_ent *ent;     /* [cfg.max_entries] */
	int32_t *bucket;        /* [nbucket] */
	uint32_t nbucket, n_ent;
	uint64_t seed;          /* random: no chosen collisions */
	int32_t free_head;
	int32_t lru_old, lru_new; /* learned entries, least recently seen first */
	union vx_addr flood[VX_FLOOD_MAX];
	unsigned n_flood;
	hs_timer_t *age_t;
	struct vx_follow *follow; /* a Linux vxlan device's FDB, under lock */
	bool follow_opening;
	/* tunnel -> switch (the ingress owner) */
	uint8_t *rx_area;       /* VX_BURST buffers of rx_buf bytes */
	uint32_t rx_buf;
	struct mmsghdr rx_msg[VX_BURST];
	struct iovec rx_iov[VX_BURST];
	struct sockaddr_in6 rx_from[VX_BURST];
	union vx_ctl rx_ctl[VX_BURST]; /* the outer TOS / traffic class */
	/* switch -> tunnel (under the egress lock) */
	uint8_t *stage;         /* HS_RESERVE_MAX slots of slot bytes */
	size_t stage_len;
	uint32_t slot;
	struct hs_seg tx_segs[HS_RESERVE_MAX];
	struct mmsghdr tx_msg[VX_MSG_MAX];
	struct iovec tx_iov[VX_MSG_MAX][2];
	struct vx_msg_hdr tx_hdr[VX_MSG_MAX];
	struct sockaddr_in6 tx_to[VX_MSG_MAX];
	union vx_ctl tx_ctl[VX_MSG_MAX]; /* the outer ECN, where not Not-ECT */
	int32_t tx_frame[VX_MSG_MAX]; /* the frame each message carries */
	uint16_t tx_fail[HS_RESERVE_MAX]; /* messages of a frame that failed */
	uint16_t tx_sent[HS_RESERVE_MAX]; /* ... that went */
	union vx_addr tx_dst[VX_FLOOD_MAX];
	unsigned tx_rot;
	/* the underlay interface (underlay_if): its own messages */
	struct vx_nh_tab *nh;
	hs_timer_t *nh_t;
	uint16_t ip_id;
	struct sockaddr_ll pk_sa;
	struct mmsghdr pk_msg[VX_MSG_MAX];
	struct iovec pk_iov[VX_MSG_MAX][2];
	struct vx_pk_hdr pk_hdr[VX_MSG_MAX];
	int32_t pk_frame[VX_MSG_MAX];
	int tx_errno;           /* the last send error logged */
	uint64_t tx_logged_s;   /* when */
	/* counters (one writer each, or atomic adds from the control side) */
	_Atomic uint64_t bad_header, unknown_vni, src_pinned, learned, moved, aged, no_vtep,
		send_errors, replicated, table_full, too_big, ecn_marked, ecn_dropped;
	_Atomic uint64_t src_local, rx_truncated, rx_overflow;
	_Atomic uint32_t rx_ovfl_seen;   /* the socket's drop count, as last told */
	_Atomic uint32_t rx_lost_pending; /* of those, not yet a port drop */
};

static uint64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec;
}

static void ctr_add(_Atomic uint64_t *c, uint64_t n)
{
	if (n)
		atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static bool mac_zero(const uint8_t *m)
{
	static const uint8_t z[6];
	return !memcmp(m, z, 6);
}

/* Seeded and mixed through a 128-bit product: every bucket bit depends on
 * every MAC bit, and a remote VTEP cannot choose MACs that collide (it
 * can send any source MAC it likes). */
static uint32_t mac_hash(const struct vxlan *v, const uint8_t *m)
{
	uint64_t k = 0;
	memcpy(&k, m, 6);
	__uint128_t x = (__uint128_t)(k ^ v->seed) * 0x9e3779b97f4a7c15ull;
	uint64_t h = (uint64_t)x ^ (uint64_t)(x >> 64);
	return (uint32_t)(h >> 32) & (v->nbucket - 1);
}

static bool addr_eq(const struct vxlan *v, const union vx_addr *a, const union vx_addr *b)
{
	return v->family == AF_INET ? a->v4.s_addr == b->v4.s_addr
				    : !memcmp(&a->v6, &b->v6, sizeof(a->v6));
}

/* unicast only (head-end replication: no multicast underlay yet); no
 * link-local IPv6 (it would need a scope) or v4-mapped address */
static bool unicast(int family, const union vx_addr *a)
{
	if (family == AF_INET)
		return !(a->v4.s_addr == 0 || a->v4.s_addr == INADDR_BROADCAST ||
			 IN_MULTICAST(ntohl(a->v4.s_addr)));
	return !(IN6_IS_ADDR_UNSPECIFIED(&a->v6) || IN6_IS_ADDR_MULTICAST(&a->v6) ||
		 IN6_IS_ADDR_LINKLOCAL(&a->v6) || IN6_IS_ADDR_V4MAPPED(&a->v6));
}

static int parse_addr(int family, const char *s, union vx_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (!s || inet_pton(family, s, family == AF_INET ? (void *)&a->v4 : (void *)&a->v6) != 1)
		return -EINVAL;
	return unicast(family, a) ? 0 : -EINVAL;
}

static void fill_sa(const struct vxlan *v, const union vx_addr *a, uint16_t port,
		    struct sockaddr_in6 *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (v->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		s4->sin_addr = a->v4;
		*len = sizeof(*s4);
	} else {
		ss->sin6_family = AF_INET6;
		ss->sin6_port = htons(port);
		ss->sin6_addr = a->v6;
		*len = sizeof(*ss);
	}
}

/* ---- the tunnel table (lock held) -------------------------------------------------- */

static struct vx_ent *ent_find(struct vxlan *v, const uint8_t *mac, int32_t **link)
{
	int32_t *l = &v->bucket[mac_hash(v, mac)];
	for (; *l >= 0; l = &v->ent[*l].next)
		if (!memcmp(v->ent[*l].mac, mac, 6)) {
			if (link)
				*link = l;
			return &v->ent[*l];
		}
	return NULL;
}

static struct vx_ent *ent_new(struct vxlan *v, const uint8_t *mac)
{
	if (v->free_head < 0)
		return NULL;
	int32_t i = v->free_head;
	struct vx_ent *e = &v->ent[i];
	v->free_head = e->next;
	int32_t *b = &v->bucket[mac_hash(v, mac)];
	memset(e, 0, sizeof(*e));
	memcpy(e->mac, mac, 6);
	e->older = e->newer = -1;
	e->next = *b;
	*b = i;
	v->n_ent++;
	return e;
}

/* Learned entries are kept in the order they were last seen, so that
 * ageing, and a control plane's add into a full table, take the least
 * recently seen from one end instead of walking the table under the lock
 * the data path takes (a table may hold 2^20). A hit moves its entry to
 * the other end at most once a second: seen_s counts seconds, and all
 * seen_s are taken under the lock from a monotonic clock, so the list is
 * ordered by seen_s. */
static void lru_del(struct vxlan *v, int32_t i)
{
	struct vx_ent *e = &v->ent[i];
	if (e->older >= 0)
		v->ent[e->older].newer = e->newer;
	else
		v->lru_old = e->newer;
	if (e->newer >= 0)
		v->ent[e->newer].older = e->older;
	else
		v->lru_new = e->older;
	e->older = e->newer = -1;
}

static void lru_add(struct vxlan *v, int32_t i)
{
	struct vx_ent *e = &v->ent[i];
	e->newer = -1;
	e->older = v->lru_new;
	if (v->lru_new >= 0)
		v->ent[v->lru_new].newer = i;
	else
		v->lru_old = i;
	v->lru_new = i;
}

/* A learned entry seen at `now`. */
static void ent_seen(struct vxlan *v, struct vx_ent *e, uint64_t now)
{
	if (e->seen_s == now || !(e->flags & HS_VXLAN_FDB_LEARNED))
		return;
	e->seen_s = now;
	int32_t i = (int32_t)(e - v->ent);
	if (v->lru_new != i) {
		lru_del(v, i);
		lru_add(v, i);
	}
}

static void ent_unlink(struct vxlan *v, int32_t *link)
{
	int32_t i = *link;
	if (v->ent[i].flags & HS_VXLAN_FDB_LEARNED)
		lru_del(v, i);
	*link = v->ent[i].next;
	v->ent[i].next = v->free_head;
	v->free_head = i;
	v->n_ent--;
}

/* The least recently seen learned entry, if there is one and, with
 * `expired`, it is past its age (seen_s + ageing_s <= now): unlinked. */
static bool unlink_oldest(struct vxlan *v, bool expired, uint64_t now)
{
	int32_t i = v->lru_old, *link;
	if (i < 0 || (expired && v->ent[i].seen_s + v->cfg.ageing_s > now))
		return false;
	ent_find(v, v->ent[i].mac, &link);
	ent_unlink(v, link);
	return true;
}

/* Learns mac behind `from`. Returns false if the frame must be dropped (a
 * pinned MAC behind another VTEP). */
static bool learn(struct vxlan *v, const uint8_t *mac, const union vx_addr *from, uint64_t now)
{
	struct vx_ent *e = ent_find(v, mac, NULL);
	if (e) {
		if (addr_eq(v, &e->remote, from)) {
			ent_seen(v, e, now);
			return true;
		}
		if (e->flags & (HS_VXLAN_FDB_STATIC | HS_VXLAN_FDB_EXTERN)) {
			ctr_add(&v->src_pinned, 1);
			return false;
		}
		e->remote = *from;
		ent_seen(v, e, now);
		ctr_add(&v->moved, 1);
		return true;
	}
	e = ent_new(v, mac);
	if (!e && unlink_oldest(v, true, now)) {
		/* full, but its oldest is past its age (the timer takes a
		 * bounded number a tick): its room is taken now */
		ctr_add(&v->aged, 1);
		e = ent_new(v, mac);
	}
	if (!e) {
		ctr_add(&v->table_full, 1);
		return true;
	}
	e->flags = HS_VXLAN_FDB_LEARNED;
	e->remote = *from;
	e->seen_s = now;
	lru_add(v, (int32_t)(e - v->ent));
	ctr_add(&v->learned, 1);
	return true;
}

/* The kernel's count of datagrams it dropped on the receive socket (a
 * full buffer, a bad checksum) is now d: the growth since it was last
 * told is counted (rx_overflow at once, the port's rx_no_buffer by the
 * next burst, which owns that counter). From the burst (each datagram
 * says the count as it was queued: SO_RXQ_OVFL) and once a second (the
 * count now: SO_MEMINFO, for the drops after the last datagram queued). */
/* The receive socket's drop count now (SO_MEMINFO). 0 or -errno. */
static int rx_drops(const struct vxlan *v, uint32_t *d)
{
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t ml = sizeof(mi);
	if (getsockopt(v->rx_fd, SOL_SOCKET, SO_MEMINFO, mi, &ml))
		return -errno;
	if (ml <= SK_MEMINFO_DROPS * sizeof(uint32_t))
		return -EOPNOTSUPP;
	*d = mi[SK_MEMINFO_DROPS];
	return 0;
}

static void kernel_drops(struct vxlan *v, uint32_t d)
{
	uint32_t old = atomic_load(&v->rx_ovfl_seen);
	while ((int32_t)(d - old) > 0) {
		if (atomic_compare_exchange_weak(&v->rx_ovfl_seen, &old, d)) {
			atomic_fetch_add(&v->rx_overflow, d - old);
			atomic_fetch_add(&v->rx_lost_pending, d - old);
			return;
		}
	}
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void age_cb(hs_timer_t *t, void *arg)
{
	struct vxlan *v = arg;
	uint32_t d;
	if (!rx_drops(v, &d))
		kernel_drops(v, d);
	/* From the old end, in chunks with the lock let go between (the
	 * data path waits on it), for at most VX_AGE_BUDGET_NS a turn (the
	 * loop's other work waits too, and so does the data path where it
	 * runs on the loop): a table that aged at once (2^20 entries) is
	 * emptied over some seconds, a turn every VX_AGE_AGAIN_MS, and
	 * learning takes the room of an expired entry meanwhile. */
	uint64_t n = 0, t0 = mono_ns();
	bool more;
	do {
		unsigned k = 0;
		pthread_mutex_lock(&v->lock);
		uint64_t now = now_s(); /* under the lock: no seen_s is newer */
		while (k < VX_AGE_CHUNK && unlink_oldest(v, true, now))
			k++;
		pthread_mutex_unlock(&v->lock);
		more = k == VX_AGE_CHUNK;
		n += k;
	} while (more && mono_ns() - t0 < VX_AGE_BUDGET_NS);
	ctr_add(&v->aged, n);
	if (more) /* the rest soon; then once a second again */
		hs_timer_modify(t, VX_AGE_AGAIN_MS, 1000);
}

/* ---- control ----------------------------------------------------------------------- */

static void vx_close(void *priv);

static int open_sockets(struct vxlan *v)
{
	struct sockaddr_in6 sa;
	socklen_t len;
	/* this VNI's socket on the VTEP, which other VNIs' ports may share */
	fill_sa(v, &v->local, v->cfg.dst_port, &sa, &len);
	int rc = vx_vtep_join((struct sockaddr *)&sa, len, v->cfg.vni, &v->rx_fd, &v->vtep);
	/* A VTEP keeps a VNI's socket when the VNI leaves, for the next
	 * one: its drop count is the earlier port's, from here on ours. */
	uint32_t d;
	if (!rc && !rx_drops(v, &d))
		atomic_store(&v->rx_ovfl_seen, d);
	if (rc)
		return rc;
	/* raw UDP: the kernel routes and adds the IP header, the UDP header
	 * (its source port per flow) is ours */
	v->tx_fd = socket(v->family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
	if (v->tx_fd < 0)
		return -errno;
	fill_sa(v, &v->local, 0, &sa, &len);
	if (bind(v->tx_fd, (struct sockaddr *)&sa, len))
		return -errno;
	/* it would also get a copy of every UDP datagram of the host: none */
	if ((rc = vx_sock_deaf(v->tx_fd)))
		return rc;
	/* room for a burst's copies (the kernel caps it at wmem_max) */
	int sndbuf = 4 << 20;
	setsockopt(v->tx_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	/* The outer ECN field is the inner one's (RFC 6040, normal mode): the
	 * socket's default is Not-ECT, a message of an ECN-capable frame
	 * carries its own (send_commit). */
	int ttl = v->cfg.ttl, tos = v->cfg.tos & ~3, on = 1;
	if (v->family == AF_INET) {
		/* DF: refused (too_big) above the path MTU, the route's or one
		 * learned; else fragmented by it */
		int pmtu = (v->cfg.flags & HS_VXLAN_DF) ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT;
		if (setsockopt(v->rx_fd, IPPROTO_IP, IP_RECVTOS, &on, sizeof(on)) ||
		    setsockopt(v->tx_fd, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)) ||
		    setsockopt(v->tx_fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)) ||
		    setsockopt(v->tx_fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof(pmtu)))
			return -errno;
	} else {
		int off = 6; /* the kernel fills the UDP checksum (mandatory over IPv6) */
		/* the same; IPv6 has no DF bit: without it the source fragments */
		int pmtu = (v->cfg.flags & HS_VXLAN_DF) ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_DONT;
		if (setsockopt(v->rx_fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &on, sizeof(on)) ||
		    setsockopt(v->tx_fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof(ttl)) ||
		    setsockopt(v->tx_fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos)) ||
		    setsockopt(v->tx_fd, IPPROTO_IPV6, IPV6_CHECKSUM, &off, sizeof(off)) ||
		    setsockopt(v->tx_fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof(pmtu)))
			return -errno;
	}
	return 0;
}

static int vx_open(hs_port_t *port, const void *config, size_t size, void **priv,
		   struct hs_port_info *info)
{
	struct hs_vxlan_config c = {0};
	if (!config)
		return -EINVAL;
	int rc = hs_config_copy(&c, sizeof(c), config, size, HS_VXLAN_CONFIG_SIZE_V1);
	if (rc)
		return rc;
	if (!c.dst_port)
		c.dst_port = VX_DEF_PORT;
	if (!c.src_min && !c.src_max) {
		c.src_min = VX_DEF_SRC_MIN;
		c.src_max = VX_DEF_SRC_MAX;
	}
	if (!c.underlay_mtu)
		c.underlay_mtu = 1500;
	if (!c.ageing_s)
		c.ageing_s = 300;
	if (!c.max_entries)
		c.max_entries = 4096;
	if (!c.ttl)
		c.ttl = 64;
	if (!c.vni || c.vni > 0xffffff || c.src_min > c.src_max || !c.src_min ||
	    c.underlay_mtu < 576 || c.max_entries > (1u << 20) ||
	    (c.flags & ~(HS_VXLAN_NO_LEARN | HS_VXLAN_NO_UDP_CSUM | HS_VXLAN_DF)))
		return -EINVAL;
	struct vxlan *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->port = port;
	v->cfg = c;
	v->cfg.local = v->cfg.underlay_if = NULL; /* not the caller's strings beyond open */
	v->rx_fd = v->tx_fd = -1;
	pthread_mutex_init(&v->lock, NULL);
	if (!parse_addr(AF_INET, c.local, &v->local))
		v->family = AF_INET;
	else if (!parse_addr(AF_INET6, c.local, &v->local))
		v->family = AF_INET6;
	else {
		hs_port_log(port, HS_LOG_ERROR, "local VTEP address \"%s\" is not a unicast IPv4 or "
			    "IPv6 address", c.local ? c.local : "(none)");
		rc = -EINVAL;
		goto fail;
	}
	if (c.underlay_if && !*c.underlay_if) {
		rc = -EINVAL;
		goto fail;
	}
	if (v->family == AF_INET6 && (c.flags & HS_VXLAN_NO_UDP_CSUM)) {
		hs_port_log(port, HS_LOG_ERROR, "an IPv6 underlay needs UDP checksums");
		rc = -EINVAL;
		goto fail;
	}
	if (v->family == AF_INET) {
		uint32_t l = ntohl(v->local.v4.s_addr);
		v->csum_const = 17 + (l >> 16) + (l & 0xffff) + c.dst_port + 0x0800 +
				((c.vni >> 8) & 0xffff) + ((c.vni & 0xff) << 8);
	}
	uint32_t over = v->family == AF_INET ? VX_OVER4 : VX_OVER6;
	v->max_frame = c.underlay_mtu - over;
	v->nbucket = 1;
	while (v->nbucket < c.max_entries)
		v->nbucket <<= 1;
	v->ent = calloc(c.max_entries, sizeof(*v->ent));
	v->bucket = malloc(v->nbucket * sizeof(*v->bucket));
	v->rx_buf = (c.underlay_mtu + 63) & ~63u;
	v->rx_area = malloc((size_t)VX_BURST * v->rx_buf);
	v->slot = (VX_HDRS + v->max_frame + 63) & ~63u;
	v->stage_len = (size_t)HS_RESERVE_MAX * v->slot;
	v->stage = mmap(NULL, v->stage_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
			MAP_NORESERVE, -1, 0);
	if (v->stage == MAP_FAILED)
		v->stage = NULL;
	if (!v->ent || !v->bucket || !v->rx_area || !v->stage) {
		rc = -ENOMEM;
		goto fail;
	}
	if (getrandom(&v->seed, sizeof(v->seed), GRND_NONBLOCK) != sizeof(v->seed))
		v->seed = (uint64_t)now_s() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)v;
	v->ip_id = (uint16_t)(v->seed >> 48); /* ports sharing an address: apart */
	for (uint32_t b = 0; b < v->nbucket; b++)
		v->bucket[b] = -1;
	for (uint32_t i = 0; i < c.max_entries; i++)
		v->ent[i].next = i + 1 < c.max_entries ? (int32_t)(i + 1) : -1;
	v->free_head = 0;
	v->lru_old = v->lru_new = -1;
	for (unsigned i = 0; i < VX_BURST; i++) {
		v->rx_iov[i] = (struct iovec){v->rx_area + (size_t)i * v->rx_buf, v->rx_buf};
		v->rx_msg[i].msg_hdr = (struct msghdr){.msg_iov = &v->rx_iov[i], .msg_iovlen = 1};
	}
	rc = open_sockets(v);
	if (rc) {
		char a[INET6_ADDRSTRLEN];
		inet_ntop(v->family, &v->local, a, sizeof(a));
		hs_port_log(port, HS_LOG_ERROR, "cannot open the tunnel's sockets on %s port %u: %s%s",
			    a, c.dst_port, hs_strerror(rc),
			    rc == -EPERM	 ? " (sending needs CAP_NET_RAW)"
			    : rc == -EEXIST	 ? " (another port has this VNI on this VTEP)"
			    : rc == -EOPNOTSUPP ? " (several VNIs on one VTEP need "
						  "SO_ATTACH_REUSEPORT_CBPF)"
			    : rc == -EADDRINUSE ? " (another program, or a kernel vxlan device "
						  "that is up, holds it)"
						: "");
		goto fail;
	}
	if (c.underlay_if) {
		struct vx_nh_params np = {.ifname = c.underlay_if, .family = v->family,
					  .local = v->local, .ttl = c.ttl,
					  .tos = (uint8_t)(c.tos & ~3),
					  .df = (c.flags & HS_VXLAN_DF) != 0,
					  .capacity = c.max_entries + VX_FLOOD_MAX};
		if ((rc = vx_nh_open(&v->nh, &np, port))) {
			hs_port_log(port, HS_LOG_ERROR, "cannot send through underlay %s: %s%s",
				    c.underlay_if, hs_strerror(rc),
				    rc == -EPERM ? " (needs CAP_NET_RAW)" : "");
			goto fail;
		}
	}
	if (hs_port_set_mtu(port, v->max_frame - 14) == 0)
		hs_port_log(port, HS_LOG_INFO, "VNI %u over %s: inner MTU %u", c.vni,
			    v->family == AF_INET ? "IPv4" : "IPv6", v->max_frame - 14);
	*priv = v;
	info->n_queues = 1;
	/* through an underlay interface, a frame's checksum left to offloading
	 * is left to the interface (or the kernel) */
	info->caps = v->nh ? HS_CAP_CSUM : 0;
	info->link_up = true;
	return 0;
fail:
	vx_close(v);
	return rc;
}

/* The underlay's next hops looked up (on the loop). */
static void nh_cb(hs_timer_t *t, void *arg)
{
	struct vxlan *v = arg;
	(void)t;
	vx_nh_tick(v->nh, &v->lock);
}

static int vx_start(void *priv)
{
	struct vxlan *v = priv;
	int rc = hs_port_set_queue_fd(v->port, 0, HS_EV_KICK | HS_EV_FD_LEVEL, v->rx_fd);
	if (!rc)
		rc = hs_timer_add(hs_port_switch(v->port), 1000, 1000, age_cb, v, &v->age_t);
	if (!rc && v->nh)
		rc = hs_timer_add(hs_port_switch(v->port), 0, VX_NH_TICK_MS, nh_cb, v, &v->nh_t);
	return rc;
}

static void vx_stop(void *priv)
{
	struct vxlan *v = priv;
	pthread_mutex_lock(&v->lock);
	struct vx_follow *fol = v->follow;
	v->follow = NULL;
	pthread_mutex_unlock(&v->lock);
	vx_follow_close(fol); /* its watch first: it changes the table */
	hs_port_set_queue_fd(v->port, 0, HS_EV_KICK, -1);
	if (v->age_t)
		hs_timer_del(v->age_t);
	v->age_t = NULL;
	if (v->nh_t)
		hs_timer_del(v->nh_t);
	v->nh_t = NULL;
}

static void vx_close(void *priv)
{
	struct vxlan *v = priv;
	vx_follow_close(v->follow); /* never started */
	vx_vtep_leave(v->vtep, v->cfg.vni); /* rx_fd stays the group's */
	vx_nh_close(v->nh);
	if (v->tx_fd >= 0)
		close(v->tx_fd);
	if (v->stage)
		munmap(v->stage, v->stage_len);
	free(v->rx_area);
	free(v->ent);
	free(v->bucket);
	pthread_mutex_destroy(&v->lock);
	free(v);
}

/* ---- tunnel -> switch ------------------------------------------------------------ */

/* ---- ECN through the tunnel (RFC 6040) --------------------------------------------- */

#define ECN_NOT_ECT 0
#define ECN_ECT1 1
#define ECN_ECT0 2
#define ECN_CE 3

static bool is_vlan_tpid(uint16_t et)
{
	return et == 0x8100 || et == 0x88a8 || et == 0x9100;
}

/* Where an inner frame's IP header starts (past up to two VLAN tags:
 * QinQ) and its version; -1 if it has none. */
static int inner_ip(const uint8_t *f, uint32_t len, int *ver)
{
	uint32_t o = 12;
	uint16_t et = (uint16_t)(f[o] << 8 | f[o + 1]);
	for (int tags = 0; tags < 2 && is_vlan_tpid(et) && len >= o + 6; tags++) {
		o += 4;
		et = (uint16_t)(f[o] << 8 | f[o + 1]);
	}
	o += 2;
	if (et == 0x0800 && len >= o + 20 && (f[o] >> 4) == 4) {
		*ver = 4;
		return (int)o;
	}
	if (et == 0x86dd && len >= o + 40 && (f[o] >> 4) == 6) {
		*ver = 6;
		return (int)o;
	}
	return -1;
}

static unsigned inner_ecn(const uint8_t *ip, int ver)
{
	return ver == 4 ? ip[1] & 3u : (ip[1] >> 4) & 3u;
}

/* Sets the inner header's ECN field (an IPv4 header's checksum updated
 * as RFC 1624 says). */
static void set_inner_ecn(uint8_t *ip, int ver, unsigned ecn)
{
	if (ver == 6) {
		ip[1] = (uint8_t)((ip[1] & 0xcf) | ecn << 4);
		return;
	}
	uint16_t old = (uint16_t)(ip[0] << 8 | ip[1]);
	ip[1] = (uint8_t)((ip[1] & ~3u) | ecn);
	uint16_t neu = (uint16_t)(ip[0] << 8 | ip[1]);
	uint32_t sum = (uint16_t)~(ip[10] << 8 | ip[11]);
	sum += (uint16_t)~old;
	sum += neu;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	uint16_t c = (uint16_t)~sum;
	ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
}

/* The outer header's ECN field, from a datagram's ancillary data. */
/* A datagram's ancillary data: its outer ECN field (returned), and the
 * socket's count of datagrams the kernel dropped before it was queued
 * (SO_RXQ_OVFL). */
static unsigned outer_ecn(struct vxlan *v, struct msghdr *mh)
{
	unsigned ecn = ECN_NOT_ECT;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (v->family == AF_INET && c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS &&
		    c->cmsg_len >= CMSG_LEN(1))
			ecn = *(uint8_t *)CMSG_DATA(c) & 3u;
		if (v->family == AF_INET6 && c->cmsg_level == IPPROTO_IPV6 &&
		    c->cmsg_type == IPV6_TCLASS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
			int tc;
			memcpy(&tc, CMSG_DATA(c), sizeof(tc));
			ecn = (unsigned)tc & 3u;
		}
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL &&
		    c->cmsg_len >= CMSG_LEN(sizeof(uint32_t))) {
			uint32_t d;
			memcpy(&d, CMSG_DATA(c), sizeof(d));
			kernel_drops(v, d);
		}
	}
	return ecn;
}

/* A datagram's outer source that may not teach the table: one the API
 * refuses as a remote (multicast, link-local, v4-mapped...) or this VTEP
 * itself (a local process bound to its address; over IPv6 any host on
 * the underlay may claim it): frames to its MACs would come back here. */
static bool bad_source(const struct vxlan *v, const union vx_addr *a)
{
	return addr_eq(v, a, &v->local) || !unicast(v->family, a);
}

/* Decapsulation (RFC 6040, section 4.2): the outer field's congestion
 * mark reaches the inner header; CE on a frame that is not ECN-capable
 * is a drop (false: drop it). Non-IP frames have no field: unchanged. */
static bool decap_ecn(uint8_t *f, uint32_t len, unsigned outer, bool *marked)
{
	int ver;
	int o = outer == ECN_NOT_ECT || outer == ECN_ECT0 ? -1 : inner_ip(f, len, &ver);
	if (o < 0)
		return true;
	unsigned in = inner_ecn(f + o, ver);
	if (outer == ECN_CE) {
		if (in == ECN_NOT_ECT)
			return false;
		if (in != ECN_CE) {
			set_inner_ecn(f + o, ver, ECN_CE);
			*marked = true;
		}
	} else if (in == ECN_ECT0) { /* outer ECT(1) */
		set_inner_ecn(f + o, ver, ECN_ECT1);
	}
	return true;
}

static unsigned vx_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts, unsigned max)
{
	struct vxlan *v = priv;
	if (max > VX_BURST)
		max = VX_BURST;
	for (unsigned i = 0; i < max; i++) {
		v->rx_msg[i].msg_hdr.msg_name = &v->rx_from[i];
		v->rx_msg[i].msg_hdr.msg_namelen = sizeof(v->rx_from[i]);
		v->rx_msg[i].msg_hdr.msg_control = &v->rx_ctl[i];
		v->rx_msg[i].msg_hdr.msg_controllen = sizeof(v->rx_ctl[i]);
	}
	int got = recvmmsg(v->rx_fd, v->rx_msg, max, MSG_DONTWAIT, NULL);
	if (got <= 0)
		return 0;
	unsigned n = 0, bad = 0, vni = 0, pinned = 0, ecn_drop = 0, ecn_mark = 0;
	unsigned local = 0, trunc = 0;
	pthread_mutex_lock(&v->lock);
	uint64_t now = now_s();
	for (int i = 0; i < got; i++) {
		uint8_t *b = v->rx_iov[i].iov_base;
		uint32_t len = v->rx_msg[i].msg_len;
		unsigned outer = outer_ecn(v, &v->rx_msg[i].msg_hdr);
		if (v->rx_msg[i].msg_hdr.msg_flags & MSG_TRUNC) {
			trunc++; /* a frame larger than any this port takes */
			continue;
		}
		/* flags exactly I, reserved bytes zero: Linux and Open vSwitch
		 * drop the rest (VXLAN-GPE's next protocol, group policy) */
		if (len < 8 + 14 || b[0] != 0x08 || b[1] | b[2] | b[3] | b[7]) {
			bad++;
			continue;
		}
		if ((((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 8) | b[6]) != v->cfg.vni) {
			vni++;
			continue;
		}
		union vx_addr from;
		if (v->family == AF_INET)
			from.v4 = ((struct sockaddr_in *)&v->rx_from[i])->sin_addr;
		else
			from.v6 = v->rx_from[i].sin6_addr;
		if (bad_source(v, &from)) {
			local++;
			continue;
		}
		const uint8_t *src = b + 8 + 6;
		if (!(v->cfg.flags & HS_VXLAN_NO_LEARN) && !(src[0] & 1) && !mac_zero(src) &&
		    !learn(v, src, &from, now)) {
			pinned++;
			continue;
		}
		bool marked = false;
		if (!decap_ecn(b + 8, len - 8, outer, &marked)) {
			ecn_drop++;
			continue;
		}
		ecn_mark += marked;
		pkts[n] = (struct hs_pkt){.segs = pkts[n].seg, .nsegs = 1, .len = len - 8};
		pkts[n].seg[0] = (struct hs_seg){.base = b + 8, .len = len - 8};
		n++;
	}
	pthread_mutex_unlock(&v->lock);
	ctr_add(&v->bad_header, bad);
	ctr_add(&v->unknown_vni, vni);
	ctr_add(&v->ecn_dropped, ecn_drop);
	ctr_add(&v->ecn_marked, ecn_mark);
	ctr_add(&v->src_local, local);
	ctr_add(&v->rx_truncated, trunc);
	uint32_t lost = atomic_exchange(&v->rx_lost_pending, 0);
	if (bad + vni + pinned + ecn_drop + local)
		hs_port_count_drop(v->port, q, HS_DROP_BAD_DESC,
				   bad + vni + pinned + ecn_drop + local);
	if (trunc)
		hs_port_count_drop(v->port, q, HS_DROP_OVERSIZE, trunc);
	if (lost)
		hs_port_count_drop(v->port, q, HS_DROP_NO_BUFFER, lost);
	return n;
}

static unsigned vx_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts, unsigned n)
{
	(void)priv, (void)q, (void)pkts, (void)n; /* the buffers are reused next burst */
	return 0;
}

/* ---- switch -> tunnel ------------------------------------------------------------ */

static unsigned vx_send_reserve(void *priv, uint16_t q, const struct hs_out *out, unsigned n,
				struct hs_iobuf *bufs)
{
	struct vxlan *v = priv;
	(void)q;
	for (unsigned i = 0; i < n; i++) {
		v->tx_segs[i] = (struct hs_seg){.base = v->stage + (size_t)i * v->slot + VX_HDRS,
						 .len = out[i].len};
		bufs[i] = (struct hs_iobuf){.segs = &v->tx_segs[i],
					    .nsegs = out[i].len <= v->max_frame ? 1 : 0};
	}
	return n;
}

/* The UDP source port: a hash of the inner flow (MACs and EtherType, and
 * the IP protocol, addresses and ports when the frame has them), within
 * the configured range. */
static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t x;
	memcpy(&x, p, sizeof(x));
	return x;
}

static inline uint64_t ld32(const uint8_t *p)
{
	uint32_t x;
	memcpy(&x, p, sizeof(x));
	return x;
}

/* One word into the flow hash: a multiply and a shift, not a loop per
 * byte (the port is computed for every frame). */
static inline uint64_t mix(uint64_t h, uint64_t x)
{
	h = (h ^ x) * 0x9e3779b97f4a7c15ull;
	return h ^ (h >> 31);
}

static uint16_t flow_port(const struct vxlan *v, const uint8_t *f, uint32_t len)
{
	uint32_t l3 = 14;
	uint16_t et = (uint16_t)(f[12] << 8 | f[13]);
	/* the MACs and the outer EtherType (frames are at least 14 bytes) */
	uint64_t h = mix(mix(v->seed, ld64(f)), ld32(f + 8) << 16 | (uint64_t)et);
	for (int tags = 0; tags < 2 && is_vlan_tpid(et) && len >= l3 + 4; tags++) {
		h = mix(h, ld32(f + l3 - 2)); /* the tag: its VLAN goes in */
		et = (uint16_t)(f[l3 + 2] << 8 | f[l3 + 3]);
		l3 += 4;
	}
	uint32_t l4 = 0;
	if (et == 0x0800 && len >= l3 + 20 && (f[l3] >> 4) == 4) {
		uint32_t ihl = (uint32_t)(f[l3] & 15) * 4;
		uint8_t p = f[l3 + 9];
		bool frag = ((f[l3 + 6] & 0x3f) | f[l3 + 7]) != 0;
		h = mix(h, ld64(f + l3 + 12) ^ p); /* addresses, protocol */
		if (!frag && (p == 6 || p == 17) && ihl >= 20 && len >= l3 + ihl + 4)
			l4 = l3 + ihl;
	} else if (et == 0x86dd && len >= l3 + 40) {
		uint8_t p = f[l3 + 6];
		const uint8_t *a = f + l3 + 8;
		h = mix(mix(mix(mix(h, ld64(a) ^ p), ld64(a + 8)), ld64(a + 16)), ld64(a + 24));
		if ((p == 6 || p == 17) && len >= l3 + 44)
			l4 = l3 + 40;
	}
	if (l4)
		h = mix(h, ld32(f + l4)); /* the ports */
	uint32_t range = (uint32_t)v->cfg.src_max - v->cfg.src_min + 1;
	return (uint16_t)(v->cfg.src_min + (uint32_t)((h >> 16) % range));
}

/* Adds the bytes at p to a ones'-complement sum of big-endian 16-bit
 * words, 8 bytes at a time (a sum of 32-bit words is the same modulo
 * 0xffff); the result stays below 0x20000 so that callers may add a few
 * more words before folding. */
static inline __attribute__((always_inline)) uint32_t csum_add(uint32_t s, const uint8_t *p,
								uint32_t len)
{
	uint64_t acc = s;
	uint32_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = be64toh(ld64(p + i));
		acc += (w >> 32) + (w & 0xffffffffu);
	}
	for (; i + 1 < len; i += 2)
		acc += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (i < len)
		acc += (uint32_t)p[i] << 8;
	acc = (acc & 0xffffffffu) + (acc >> 32);
	acc = (acc & 0xffffffffu) + (acc >> 32);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return (uint32_t)acc;
}

static uint16_t csum_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* The UDP and VXLAN headers, the checksum 0. */
static void fill_udp(const struct vxlan *v, uint8_t *h, uint16_t sport, uint32_t ulen)
{
	h[0] = (uint8_t)(sport >> 8), h[1] = (uint8_t)sport;
	h[2] = (uint8_t)(v->cfg.dst_port >> 8), h[3] = (uint8_t)v->cfg.dst_port;
	h[4] = (uint8_t)(ulen >> 8), h[5] = (uint8_t)ulen;
	h[6] = h[7] = 0;
	h[8] = 0x08, h[9] = h[10] = h[11] = 0;
	h[12] = (uint8_t)(v->cfg.vni >> 16), h[13] = (uint8_t)(v->cfg.vni >> 8);
	h[14] = (uint8_t)v->cfg.vni, h[15] = 0;
}

/* Fills the UDP and VXLAN headers for one copy of a frame of flen bytes
 * (whose bytes sum to fsum, for the checksum) to dst. */
static void fill_hdrs(const struct vxlan *v, uint8_t *h, uint16_t sport, uint32_t fsum,
		      uint32_t flen, const union vx_addr *dst)
{
	uint32_t ulen = VX_HDRS + flen;
	fill_udp(v, h, sport, ulen);
	if (v->family != AF_INET || (v->cfg.flags & HS_VXLAN_NO_UDP_CSUM))
		return; /* IPv6: the kernel fills it (IPV6_CHECKSUM) */
	/* What is the same for every datagram (protocol, our address, the
	 * ports' and VXLAN header's constant words) is summed once, at open;
	 * per datagram: the destination, the source port, the UDP length
	 * (in the pseudo-header and the header). */
	uint32_t d = ntohl(dst->v4.s_addr);
	uint32_t s = fsum + v->csum_const + (d >> 16) + (d & 0xffff) + sport + 2 * ulen;
	uint16_t c = csum_fold(s);
	if (!c)
		c = 0xffff;
	h[6] = (uint8_t)(c >> 8), h[7] = (uint8_t)c;
}

/* Every header in front of one copy of a frame of flen bytes sent
 * through the underlay interface to nh (the virtio-net header, Ethernet,
 * IP, UDP, VXLAN): their length. The outer UDP checksum is left to the
 * interface (or the kernel, where it cannot): the field holds the
 * pseudo-header's sum, as for any checksum offload. */
static unsigned fill_under(struct vxlan *v, const struct vx_nh *nh, uint8_t *b, uint16_t sport,
			   uint32_t flen, unsigned ecn, const struct hs_offload *in, uint32_t lco)
{
	bool v4 = v->family == AF_INET;
	unsigned l3 = v4 ? 20 : 40;
	uint8_t *ip = b + VX_VNET + 14, *u = ip + l3;
	uint32_t ulen = VX_HDRS + flen;
	if (v4) /* constant lengths: copied inline */
		memcpy(b + VX_VNET, nh->hdr, 14 + 20);
	else
		memcpy(b + VX_VNET, nh->hdr, 14 + 40);
	if (v4) {
		uint32_t tot = l3 + ulen;
		uint16_t id = v->ip_id++;
		ip[1] |= (uint8_t)ecn;
		ip[2] = (uint8_t)(tot >> 8), ip[3] = (uint8_t)tot;
		ip[4] = (uint8_t)(id >> 8), ip[5] = (uint8_t)id;
		uint16_t c = csum_fold(nh->ipsum + tot + id + ecn);
		ip[10] = (uint8_t)(c >> 8), ip[11] = (uint8_t)c;
	} else {
		/* the flow label from the inner flow, as the kernel's own */
		uint32_t fl = ((uint32_t)sport * 2654435761u) >> 12 & 0xfffff;
		ip[1] |= (uint8_t)(ecn << 4 | fl >> 16);
		ip[2] = (uint8_t)(fl >> 8), ip[3] = (uint8_t)fl;
		ip[4] = (uint8_t)(ulen >> 8), ip[5] = (uint8_t)ulen;
	}
	fill_udp(v, u, sport, ulen);
	struct hsb_vnet_hdr vh = {0};
	bool outer = !v4 || !(v->cfg.flags & HS_VXLAN_NO_UDP_CSUM);
	if (in) {
		/* The inner checksum is the interface's to fill; the outer one
		 * is known already (local checksum offload): once the inner
		 * field is filled, the inner bytes from its csum_start on sum
		 * to the complement of what the field holds now, so the outer
		 * checksum needs only the headers and the bytes before it
		 * (lco: their sum, and that complement). */
		if (outer) {
			uint16_t c = csum_fold(nh->psum + ulen + csum_add(0, u, VX_HDRS) + lco);
			if (!c)
				c = 0xffff;
			u[6] = (uint8_t)(c >> 8), u[7] = (uint8_t)c;
		}
		vh.flags = HSB_VNET_F_NEEDS_CSUM;
		vh.csum_start = (uint16_t)(14 + l3 + VX_HDRS + in->csum_start);
		vh.csum_offset = in->csum_offset;
	} else if (outer) {
		uint32_t s = nh->psum + ulen;
		while (s >> 16)
			s = (s & 0xffff) + (s >> 16);
		u[6] = (uint8_t)(s >> 8), u[7] = (uint8_t)s;
		vh.flags = HSB_VNET_F_NEEDS_CSUM;
		vh.csum_start = (uint16_t)(14 + l3);
		vh.csum_offset = 6;
	}
	memcpy(b, &vh, VX_VNET);
	return VX_VNET + 14 + l3 + VX_HDRS;
}

/* Fills in the checksum a frame left to offloading (bounds checked). */
static void finish_csum(uint8_t *f, uint32_t len, const struct hs_offload *o)
{
	uint8_t *c = f + o->csum_start + o->csum_offset;
	uint16_t v = csum_fold(csum_add(0, f + o->csum_start, len - o->csum_start));
	if (!v)
		v = 0xffff;
	c[0] = (uint8_t)(v >> 8), c[1] = (uint8_t)v;
}

/* Sends messages [0, m) of msg on fd; counts what failed per frame. */
static void flush(struct vxlan *v, int fd, struct mmsghdr *msg, const int32_t *frame, unsigned m)
{
	unsigned done = 0;
	while (done < m) {
		int k = sendmmsg(fd, msg + done, m - done, MSG_DONTWAIT);
		if (k > 0) {
			for (int i = 0; i < k; i++)
				v->tx_sent[frame[done + (unsigned)i]]++;
			done += (unsigned)k;
			continue;
		}
		int e = k < 0 ? errno : EIO;
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == ENOBUFS) {
			/* no room: the rest would fail one syscall each */
			ctr_add(&v->send_errors, m - done);
			for (; done < m; done++)
				v->tx_fail[frame[done]]++;
			break;
		}
		/* the message at `done` failed (its address, say): count it, go
		 * on after it; logged once per error, and once a second at most */
		uint64_t now = now_s();
		if (e != v->tx_errno && now != v->tx_logged_s) {
			v->tx_errno = e;
			v->tx_logged_s = now;
			hs_port_log(v->port, HS_LOG_WARN, "tunnel send failed: %s", strerror(e));
		}
		v->tx_fail[frame[done]]++;
		ctr_add(e == EMSGSIZE ? &v->too_big : &v->send_errors, 1);
		done++;
	}
}

static unsigned vx_send_commit(void *priv, uint16_t q, const struct hs_out *out, unsigned n)
{
	struct vxlan *v = priv;
	unsigned m = 0, k = 0, no_vtep = 0, copies = 0, through = 0, kernel = 0;
	memset(v->tx_fail, 0, n * sizeof(v->tx_fail[0]));
	memset(v->tx_sent, 0, n * sizeof(v->tx_sent[0]));
	bool csum = v->family == AF_INET && !(v->cfg.flags & HS_VXLAN_NO_UDP_CSUM);
	uint64_t now = v->nh ? hsb_mono_ms() : 0;
	socklen_t pk_len = 0;
	struct vx_nh *last = NULL; /* the burst's last next hop: most frames share it */
	uint32_t over_ip = (v->family == AF_INET ? 20 : 40) + VX_HDRS;
	pthread_mutex_lock(&v->lock);
	if (v->nh)
		pk_len = vx_nh_sa(v->nh, &v->pk_sa);
	for (unsigned i = 0; i < n; i++) {
		uint32_t len = out[i].len;
		if (!len || len > v->max_frame)
			continue; /* not written, or dropped as oversize */
		const uint8_t *f = v->tx_segs[i].base;
		/* its VTEPs, copied: the lock may be dropped to send */
		struct vx_ent *e = (f[0] & 1) ? NULL : ent_find(v, f, NULL);
		unsigned nd = e ? 1 : v->n_flood;
		if (e) {
			v->tx_dst[0] = e->remote;
		} else if (nd) {
			/* the first VTEP turns: when the socket runs out of room
			 * mid-list, the same ones do not always go without */
			unsigned r = v->tx_rot++ % nd;
			memcpy(v->tx_dst, v->flood + r, (nd - r) * sizeof(v->flood[0]));
			memcpy(v->tx_dst + (nd - r), v->flood, r * sizeof(v->flood[0]));
		}
		if (!nd) {
			no_vtep++;
			v->tx_fail[i] = 1;
			continue;
		}
		uint16_t sport = flow_port(v, f, len);
		uint32_t fsum = 0, lco = 0;
		bool have_fsum = !csum;
		/* a checksum left to offloading (only with an underlay) */
		const struct hs_offload *in = NULL;
		if (out[i].off.flags & HS_OFF_NEEDS_CSUM) {
			uint32_t cs = out[i].off.csum_start, co = out[i].off.csum_offset;
			if (cs + co + 2 > len) {
				/* the core checked it; never sent wrong */
				v->tx_fail[i] = 1;
				ctr_add(&v->send_errors, 1);
				continue;
			}
			if ((cs | co) & 1 || cs + 14 + 40 + VX_HDRS > 0xffff) {
				/* odd offsets (only a broken or hostile guest sends
				 * them), or beyond the header's 16 bits: done here */
				finish_csum((uint8_t *)f, len, &out[i].off);
			} else {
				in = &out[i].off;
				lco = csum_add(0, f, cs) +
				      (uint16_t)~(f[cs + co] << 8 | f[cs + co + 1]);
			}
		}
		int ver, o = inner_ip(f, len, &ver);
		unsigned ecn = o < 0 ? ECN_NOT_ECT : inner_ecn(f + o, ver);
		for (unsigned d = 0; d < nd; d++) {
			if (m == VX_MSG_MAX || k == VX_MSG_MAX) {
				pthread_mutex_unlock(&v->lock);
				flush(v, v->nh ? vx_nh_fd(v->nh) : -1, v->pk_msg, v->pk_frame, k);
				flush(v, v->tx_fd, v->tx_msg, v->tx_frame, m);
				pthread_mutex_lock(&v->lock);
				m = k = 0;
				last = NULL; /* the resolver may have let it go meanwhile */
			}
			/* through the underlay interface, once the VTEP's next
			 * hop is known; the kernel's way until then */
			struct vx_nh *nh = last;
			if (v->nh && (!nh || !vx_addr_same(v->family, &nh->remote, &v->tx_dst[d])))
				nh = last = vx_nh_get(v->nh, &v->tx_dst[d], now);
			if (nh && vx_nh_usable(nh, now, over_ip + len)) {
				unsigned hl = fill_under(v, nh, v->pk_hdr[k].b, sport, len, ecn, in,
							 lco);
				v->pk_iov[k][0] = (struct iovec){v->pk_hdr[k].b, hl};
				v->pk_iov[k][1] = (struct iovec){(void *)f, len};
				v->pk_msg[k].msg_hdr = (struct msghdr){.msg_name = &v->pk_sa,
								       .msg_namelen = pk_len,
								       .msg_iov = v->pk_iov[k],
								       .msg_iovlen = 2};
				v->pk_frame[k++] = (int32_t)i;
				through++;
				continue;
			}
			kernel += v->nh != NULL;
			if (in) {
				/* the kernel's way takes finished frames: the
				 * checksum is done here, once the messages that
				 * left it to the interface are gone */
				if (k && v->pk_frame[k - 1] == (int32_t)i) {
					flush(v, vx_nh_fd(v->nh), v->pk_msg, v->pk_frame, k);
					k = 0;
				}
				finish_csum((uint8_t *)f, len, in);
				in = NULL;
			}
			if (!have_fsum) {
				fsum = csum_add(0, f, len);
				have_fsum = true;
			}
			socklen_t sl;
			fill_hdrs(v, v->tx_hdr[m].b, sport, fsum, len, &v->tx_dst[d]);
			fill_sa(v, &v->tx_dst[d], 0, &v->tx_to[m], &sl);
			v->tx_iov[m][0] = (struct iovec){v->tx_hdr[m].b, VX_HDRS};
			v->tx_iov[m][1] = (struct iovec){(void *)f, len};
			v->tx_msg[m].msg_hdr = (struct msghdr){.msg_name = &v->tx_to[m],
							       .msg_namelen = sl,
							       .msg_iov = v->tx_iov[m],
							       .msg_iovlen = 2};
			if (ecn != ECN_NOT_ECT) {
				union vx_ctl *c = &v->tx_ctl[m];
				int tos = (v->cfg.tos & ~3) | (int)ecn;
				c->h.cmsg_len = CMSG_LEN(sizeof(int));
				c->h.cmsg_level = v->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
				c->h.cmsg_type = v->family == AF_INET ? IP_TOS : IPV6_TCLASS;
				memcpy(CMSG_DATA(&c->h), &tos, sizeof(tos));
				v->tx_msg[m].msg_hdr.msg_control = c;
				v->tx_msg[m].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(int));
			}
			v->tx_frame[m] = (int32_t)i;
			m++;
		}
	}
	pthread_mutex_unlock(&v->lock);
	if (k)
		flush(v, vx_nh_fd(v->nh), v->pk_msg, v->pk_frame, k);
	flush(v, v->tx_fd, v->tx_msg, v->tx_frame, m);
	if (v->nh)
		vx_nh_count(v->nh, through, kernel);
	unsigned lost = 0;
	for (unsigned i = 0; i < n; i++) {
		if (v->tx_fail[i] && !v->tx_sent[i])
			lost++;
		if (v->tx_sent[i] > 1)
			copies += v->tx_sent[i] - 1u; /* copies that went */
	}
	lost -= no_vtep;
	ctr_add(&v->no_vtep, no_vtep);
	ctr_add(&v->replicated, copies);
	if (no_vtep)
		hs_port_count_tx_drop(v->port, q, HS_DROP_NO_ROUTE, no_vtep);
	if (lost)
		hs_port_count_tx_drop(v->port, q, HS_DROP_NO_BUFFER, lost);
	return 0;
}

static void vx_notify(void *priv, uint16_t q, unsigned ev)
{
	(void)priv, (void)q, (void)ev; /* datagrams need no signal */
}

static void vx_counters(void *priv, void (*cb)(void *arg, const char *name, uint64_t v),
			void *arg)
{
	struct vxlan *v = priv;
	cb(arg, "bad_header", atomic_load(&v->bad_header));
	cb(arg, "unknown_vni", atomic_load(&v->unknown_vni));
	cb(arg, "src_pinned", atomic_load(&v->src_pinned));
	cb(arg, "learned", atomic_load(&v->learned));
	cb(arg, "moved", atomic_load(&v->moved));
	cb(arg, "aged", atomic_load(&v->aged));
	cb(arg, "no_vtep", atomic_load(&v->no_vtep));
	cb(arg, "send_errors", atomic_load(&v->send_errors));
	cb(arg, "replicated", atomic_load(&v->replicated));
	cb(arg, "table_full", atomic_load(&v->table_full));
	cb(arg, "too_big", atomic_load(&v->too_big));
	cb(arg, "src_local", atomic_load(&v->src_local));
	cb(arg, "rx_truncated", atomic_load(&v->rx_truncated));
	cb(arg, "rx_overflow", atomic_load(&v->rx_overflow));
	cb(arg, "ecn_marked", atomic_load(&v->ecn_marked));
	cb(arg, "ecn_dropped", atomic_load(&v->ecn_dropped));
	/* one look under the lock (the follower is freed once let go of);
	 * the callbacks after it */
	uint64_t fc[VX_FOLLOW_NCTR];
	pthread_mutex_lock(&v->lock);
	uint64_t ne = v->n_ent, nf = v->n_flood;
	bool following = v->follow;
	if (following)
		vx_follow_read(v->follow, fc);
	pthread_mutex_unlock(&v->lock);
	cb(arg, "entries", ne);
	cb(arg, "flood_vteps", nf);
	for (unsigned i = 0; following && i < VX_FOLLOW_NCTR; i++)
		cb(arg, vx_follow_counter_names[i], fc[i]);
	if (v->nh) {
		uint64_t nc[VX_NH_NCTR];
		vx_nh_read(v->nh, nc);
		for (unsigned i = 0; i < VX_NH_NCTR; i++)
			cb(arg, vx_nh_counter_names[i], nc[i]);
	}
}

const struct hs_backend_ops hs__vxlan_ops = {
	.name = HS_VXLAN_BACKEND,
	.abi = HS_BACKEND_ABI,
	.open = vx_open,
	.start = vx_start,
	.stop = vx_stop,
	.close = vx_close,
	.recv_burst = vx_recv_burst,
	.recv_done = vx_recv_done,
	.send_reserve = vx_send_reserve,
	.send_commit = vx_send_commit,
	.notify = vx_notify,
	.counters = vx_counters,
};

/* ---- the table's API ------------------------------------------------------------- *
 * Each call goes through hs_port_backend_call, so that a port being
 * deleted meanwhile (a control plane's thread racing hs_port_del) is
 * refused instead of its state being used after close.
 */

struct fdb_op {
	const uint8_t *mac;
	const char *remote;
	uint32_t flags;
	int (*cb)(void *arg, const struct hs_vxlan_fdb_entry *e);
	void *arg;
	struct hs_vxlan_fdb_entry *snap; /* dump: what was copied */
	size_t n;
};

static int fdb_add_cb(void *priv, void *arg)
{
	struct vxlan *v = priv;
	const struct fdb_op *op = arg;
	union vx_addr a;
	if (parse_addr(v->family, op->remote, &a) || addr_eq(v, &a, &v->local))
		return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&v->lock);
	if (mac_zero(op->mac)) {
		bool have = false;
		for (unsigned i = 0; i < v->n_flood; i++)
			have |= addr_eq(v, &v->flood[i], &a);
		if (!have && v->n_flood == VX_FLOOD_MAX)
			rc = -ENOSPC;
		else if (!have)
			v->flood[v->n_flood++] = a;
	} else {
		struct vx_ent *e = ent_find(v, op->mac, NULL);
		/* a full table makes room for a control plane's entry from
		 * the least recently seen learned one (learned entries are
		 * soft state, and a remote sending junk source MACs must not
		 * lock EVPN out); for a learned one only from one past its
		 * age, as learning does */
		if (!e && !(e = ent_new(v, op->mac))) {
			bool expired = !op->flags;
			if (unlink_oldest(v, expired, now_s())) {
				if (expired)
					ctr_add(&v->aged, 1);
				e = ent_new(v, op->mac);
			}
		}
		if (!e) {
			rc = -ENOSPC;
		} else {
			/* a learned entry becomes what the caller says; a static
			 * or external one without either flag becomes learned */
			int32_t i = (int32_t)(e - v->ent);
			if (e->flags & HS_VXLAN_FDB_LEARNED)
				lru_del(v, i);
			e->flags = (uint8_t)(op->flags ? op->flags : HS_VXLAN_FDB_LEARNED);
			e->remote = a;
			e->seen_s = now_s();
			if (e->flags & HS_VXLAN_FDB_LEARNED)
				lru_add(v, i);
		}
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

int hs_vxlan_fdb_add(hs_port_t *port, const uint8_t mac[6], const char *remote, uint32_t flags)
{
	if (!mac || (mac[0] & 1) || !remote ||
	    (flags & ~(HS_VXLAN_FDB_STATIC | HS_VXLAN_FDB_EXTERN)) ||
	    flags == (HS_VXLAN_FDB_STATIC | HS_VXLAN_FDB_EXTERN))
		return port && hs_port_backend_priv(port, &hs__vxlan_ops) ? -EINVAL : -ENODEV;
	struct fdb_op op = {.mac = mac, .remote = remote, .flags = flags};
	return hs_port_backend_call(port, &hs__vxlan_ops, fdb_add_cb, &op);
}

static int fdb_del_cb(void *priv, void *arg)
{
	struct vxlan *v = priv;
	const struct fdb_op *op = arg;
	union vx_addr a;
	if (op->remote && parse_addr(v->family, op->remote, &a))
		return -EINVAL;
	int rc = -ENOENT;
	pthread_mutex_lock(&v->lock);
	if (mac_zero(op->mac)) {
		for (unsigned i = 0; i < v->n_flood;) {
			if (!op->remote || addr_eq(v, &v->flood[i], &a)) {
				v->flood[i] = v->flood[--v->n_flood];
				rc = 0;
			} else {
				i++;
			}
		}
	} else {
		int32_t *link;
		struct vx_ent *e = ent_find(v, op->mac, &link);
		if (e && (!op->remote || addr_eq(v, &e->remote, &a))) {
			ent_unlink(v, link);
			rc = 0;
		}
	}
	pthread_mutex_unlock(&v->lock);
	return rc;
}

int hs_vxlan_fdb_del(hs_port_t *port, const uint8_t mac[6], const char *remote)
{
	if (!mac)
		return port && hs_port_backend_priv(port, &hs__vxlan_ops) ? -EINVAL : -ENODEV;
	struct fdb_op op = {.mac = mac, .remote = remote};
	return hs_port_backend_call(port, &hs__vxlan_ops, fdb_del_cb, &op);
}

/* Buckets copied under one hold of the lock in a dump: about as many
 * entries (the table has as many buckets as it may hold entries), tens of
 * microseconds. */
#define VX_DUMP_SLICE 4096

struct vx_raw {
	uint8_t mac[6];
	uint8_t flags;
	uint32_t age_s;
	union vx_addr a;
};

/* Copies bucket b's chain to raw[*k..cap) (lock held). false, *k as it
 * was, if it does not fit. */
static bool copy_chain(struct vxlan *v, uint32_t b, uint64_t now, struct vx_raw *raw,
		       size_t *k, size_t cap)
{
	size_t at = *k;
	for (int32_t i = v->bucket[b]; i >= 0; i = v->ent[i].next) {
		if (at == cap)
			return false;
		const struct vx_ent *e = &v->ent[i];
		raw[at] = (struct vx_raw){.flags = e->flags, .a = e->remote,
					  .age_s = (e->flags & HS_VXLAN_FDB_LEARNED) &&
							   now > e->seen_s
						   ? (uint32_t)(now - e->seen_s) : 0};
		memcpy(raw[at++].mac, e->mac, 6);
	}
	*k = at;
	return true;
}

/* Copies the table a slice of buckets at a time, formatted after the
 * lock is let go: the data path and the ageing timer wait on that lock,
 * and a table of 2^20 entries copied in one hold kept them waiting tens
 * of milliseconds. Not a snapshot, as a netlink dump of a kernel table is
 * not: an entry added or deleted while the dump runs is listed or not;
 * none is listed twice (an entry never changes bucket), and one present
 * throughout is always listed. */
static int fdb_snap_cb(void *priv, void *arg)
{
	struct vxlan *v = priv;
	struct fdb_op *op = arg;
	/* the flood list and the count, in one short hold */
	union vx_addr flood[VX_FLOOD_MAX];
	pthread_mutex_lock(&v->lock);
	unsigned nf = v->n_flood;
	memcpy(flood, v->flood, nf * sizeof(flood[0]));
	size_t want = v->n_ent; /* as it is now: grown if need be */
	pthread_mutex_unlock(&v->lock);
	size_t k = 0, cap = nf + want + 2 * VX_DUMP_SLICE;
	struct vx_raw *raw = malloc(cap * sizeof(*raw));
	if (!raw)
		return -ENOMEM;
	for (; k < nf; k++)
		raw[k] = (struct vx_raw){.flags = HS_VXLAN_FDB_STATIC, .a = flood[k]};
	uint32_t b = 0;
	bool full = false;
	while (b < v->nbucket) {
		/* room for a slice at the table's load, or for a chain that
		 * did not fit */
		if (full || cap - k < 2 * VX_DUMP_SLICE) {
			struct vx_raw *n = realloc(raw, 2 * cap * sizeof(*raw));
			if (!n) {
				free(raw);
				return -ENOMEM;
			}
			raw = n, cap *= 2;
		}
		pthread_mutex_lock(&v->lock);
		uint64_t now = now_s();
		uint32_t end = b + VX_DUMP_SLICE < v->nbucket ? b + VX_DUMP_SLICE : v->nbucket;
		for (full = false; b < end && !full;)
			if (copy_chain(v, b, now, raw, &k, cap))
				b++;
			else
				full = true;
		pthread_mutex_unlock(&v->lock);
	}
	op->snap = calloc(k ? k : 1, sizeof(*op->snap));
	if (!op->snap) {
		free(raw);
		return -ENOMEM;
	}
	for (size_t i = 0; i < k; i++) {
		struct hs_vxlan_fdb_entry *e = &op->snap[i];
		memcpy(e->mac, raw[i].mac, 6);
		inet_ntop(v->family, &raw[i].a, e->remote, sizeof(e->remote));
		e->flags = raw[i].flags;
		e->age_s = raw[i].age_s;
	}
	op->n = k;
	free(raw);
	return 0;
}

int hs_vxlan_fdb_dump(hs_port_t *port, int (*cb)(void *arg, const struct hs_vxlan_fdb_entry *e),
		      void *arg)
{
	if (!cb)
		return port && hs_port_backend_priv(port, &hs__vxlan_ops) ? -EINVAL : -ENODEV;
	struct fdb_op op = {0};
	int rc = hs_port_backend_call(port, &hs__vxlan_ops, fdb_snap_cb, &op);
	/* cb runs outside the port's protection: it may call back in */
	for (size_t i = 0; !rc && i < op.n; i++)
		rc = cb(arg, &op.snap[i]);
	free(op.snap);
	return rc;
}

/* ---- following a Linux vxlan device's FDB (vxlan_follow.c) ---------------------- */

/* ---- the underlay's next hops --------------------------------------------------- */

struct nh_op {
	const char *remote;
	const uint8_t *mac;
};

static int nh_pin_cb(void *priv, void *arg)
{
	struct vxlan *v = priv;
	const struct nh_op *op = arg;
	union vx_addr a;
	if (!v->nh)
		return -EOPNOTSUPP;
	if (parse_addr(v->family, op->remote, &a) || addr_eq(v, &a, &v->local))
		return -EINVAL;
	pthread_mutex_lock(&v->lock);
	int rc = vx_nh_pin(v->nh, &a, op->mac);
	pthread_mutex_unlock(&v->lock);
	return rc;
}

int hs_vxlan_set_nexthop(hs_port_t *port, const char *remote, const uint8_t mac[6])
{
	static const uint8_t zero[6];
	if (!remote || (mac && ((mac[0] & 1) || !memcmp(mac, zero, 6))))
		return port && hs_port_backend_priv(port, &hs__vxlan_ops) ? -EINVAL : -ENODEV;
	struct nh_op op = {.remote = remote, .mac = mac};
	return hs_port_backend_call(port, &hs__vxlan_ops, nh_pin_cb, &op);
}

static int follow_apply(void *arg, bool add, const uint8_t mac[6], const char *remote,
			uint32_t flags)
{
	struct fdb_op op = {.mac = mac, .remote = remote, .flags = flags};
	return add ? fdb_add_cb(arg, &op) : fdb_del_cb(arg, &op);
}

/* In the port's RCU read section (hs_port_backend_call): nothing here
 * waits for the loop, whose callbacks may be waiting for a grace period
 * (a watch is only deleted when the port stops, outside it). */
static int follow_cb(void *priv, void *arg)
{
	struct vxlan *v = priv;
	const struct hs_vxlan_follow_opts *o = arg;
	pthread_mutex_lock(&v->lock);
	bool busy = v->follow || v->follow_opening;
	v->follow_opening = true;
	pthread_mutex_unlock(&v->lock);
	if (busy)
		return -EBUSY;
	struct vx_follow_config c = {
		.ifname = o->ifname,
		.export_ifname = o->export_port,
		.any_port = o->flags & HS_VXLAN_FOLLOW_ANY_PORT,
		.vni = v->cfg.vni,
		.dst_port = v->cfg.dst_port,
		.family = v->family,
		.max = v->cfg.max_entries + VX_FLOOD_MAX,
		.apply = follow_apply,
		.arg = v,
	};
	struct vx_follow *f = NULL;
	int rc = vx_follow_open(v->port, &c, &f);
	pthread_mutex_lock(&v->lock);
	v->follow = f;
	v->follow_opening = false;
	pthread_mutex_unlock(&v->lock);
	return rc;
}

int hs_vxlan_follow_with(hs_port_t *port, const struct hs_vxlan_follow_opts *opts, size_t size)
{
	struct hs_vxlan_follow_opts o = {0};
	if (!port || !hs_port_backend_priv(port, &hs__vxlan_ops))
		return -ENODEV;
	if (!opts)
		return -EINVAL;
	int rc = hs_config_copy(&o, sizeof(o), opts, size, HS_VXLAN_FOLLOW_OPTS_SIZE_V1);
	if (rc)
		return rc;
	if (!o.ifname || !o.ifname[0] || strlen(o.ifname) >= 16 ||
	    (o.export_port && (!o.export_port[0] || strlen(o.export_port) >= 16)) ||
	    (o.flags & ~HS_VXLAN_FOLLOW_ANY_PORT))
		return -EINVAL;
	return hs_port_backend_call(port, &hs__vxlan_ops, follow_cb, &o);
}

int hs_vxlan_follow(hs_port_t *port, const char *ifname)
{
	struct hs_vxlan_follow_opts o = {.ifname = ifname};
	return hs_vxlan_follow_with(port, &o, sizeof(o));
}
