/*
 * vxlan_nh.c - a vxlan port's underlay interface: next hops and the
 * packet socket (vxlan_nh.h).
 *
 * A remote VTEP's datagrams go out of the interface only once its next
 * hop is known: the kernel's route to it (from the local VTEP address)
 * leaves by this interface, directly or through a gateway, and the
 * neighbour table holds that next hop's MAC in a usable state (reachable,
 * stale, delay, probe, permanent). Until then, and whenever that stops
 * being so, its datagrams take the kernel's way (the raw socket): the
 * kernel routes them and resolves the neighbour itself. The resolver asks
 * the kernel to resolve (NTF_USE, as the kernel's own sending would) for
 * entries in use that are not usable, so a stale entry is confirmed and
 * an unknown one is looked for, since the datagrams sent here never pass
 * the kernel's neighbour code. The neighbour table's own notices
 * (RTNLGRP_NEIGH) are read each tick: an entry whose next hop was
 * deleted, stopped being usable or changed its address takes the
 * kernel's way at once and is looked up again in that tick if in use,
 * rather than at its next recheck.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include "backends.h"
#include "nl_dump.h"
#include "vxlan_nh.h"

#define NH_RECHECK_MS 1000 /* an entry in use is looked up again this often */
#define NH_IDLE_MS 60000   /* an entry nobody used this long goes */
#define NH_RETRY_MS 500    /* ... and one not usable, this often */
#define NH_PER_TICK 256    /* lookups per tick at most: 1024 a second */

const char *const vx_nh_counter_names[VX_NH_NCTR] = {
	"underlay_sent", "underlay_kernel", "nh_resolved", "nh_changed", "nh_errors", "nh_other_if",
	"nh_noticed", "nh_notices_lost",
};

struct vx_nh_tab {
	hs_port_t *port;
	struct vx_nh_params p;
	char ifname[IF_NAMESIZE];
	int ifindex;            /* 0: the interface is gone */
	uint32_t ifmtu;
	uint8_t ifmac[6];
	int fd;
	struct sockaddr_ll sa;
	struct mnl_socket *nl;
	struct mnl_socket *mon; /* the neighbour table's notices, non-blocking */
	char *buf;
	uint32_t seq;
	/* the table (under the port's lock) */
	struct vx_nh *ent;
	int32_t *bucket;
	uint32_t nbucket, cap;
	int32_t free_head;
	uint32_t cursor;        /* the bucket the next tick's lookups start at */
	uint64_t seed;
	_Atomic uint64_t ctr[VX_NH_NCTR];
};

enum { C_SENT, C_KERNEL, C_RESOLVED, C_CHANGED, C_ERRORS, C_OTHER_IF, C_NOTICED,
       C_NOTICES_LOST };

static unsigned alen(const struct vx_nh_tab *t)
{
	return t->p.family == AF_INET ? 4 : 16;
}

static uint32_t hash(const struct vx_nh_tab *t, const union vx_addr *a)
{
	uint64_t h = t->seed, w[2] = {0, 0};
	if (t->p.family == AF_INET)
		memcpy(w, a, 4);
	else
		memcpy(w, a, 16);
	h = (h ^ w[0]) * 0x9e3779b97f4a7c15ull;
	h = (h ^ (h >> 29) ^ w[1]) * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(h >> 32) & (t->nbucket - 1);
}

static struct vx_nh *find(struct vx_nh_tab *t, const union vx_addr *a, int32_t **link)
{
	int32_t *l = &t->bucket[hash(t, a)];
	for (; *l >= 0; l = &t->ent[*l].next)
		if (vx_addr_same(t->p.family, &t->ent[*l].remote, a))
			break;
	if (link)
		*link = l;
	return *l >= 0 ? &t->ent[*l] : NULL;
}

/* 16-bit big-endian words of p summed */
static uint32_t words(const uint8_t *p, unsigned len)
{
	uint32_t s = 0;
	for (unsigned i = 0; i + 1 < len; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	return s;
}

/* The template of e's Ethernet and IP headers (lengths, ID, ECN and
 * checksum left 0), and the sums the data path finishes. */
static void build(const struct vx_nh_tab *t, struct vx_nh *e)
{
	uint8_t *h = e->hdr, *ip = h + 14;
	memset(h, 0, sizeof(e->hdr));
	memcpy(h, e->mac, 6);
	memcpy(h + 6, t->ifmac, 6);
	unsigned al = alen(t);
	if (t->p.family == AF_INET) {
		h[12] = 0x08, h[13] = 0x00;
		ip[0] = 0x45;
		ip[1] = t->p.tos;
		ip[6] = t->p.df ? 0x40 : 0;
		ip[8] = t->p.ttl;
		ip[9] = 17;
		memcpy(ip + 12, &t->p.local, 4);
		memcpy(ip + 16, &e->remote, 4);
		e->ipsum = words(ip, 20);
		e->psum = words(ip + 12, 8) + 17;
	} else {
		h[12] = 0x86, h[13] = 0xdd;
		ip[0] = (uint8_t)(0x60 | t->p.tos >> 4);
		ip[1] = (uint8_t)((t->p.tos & 0xf) << 4);
		ip[6] = 17;
		ip[7] = t->p.ttl;
		memcpy(ip + 8, &t->p.local, al);
		memcpy(ip + 24, &e->remote, al);
		e->ipsum = 0;
		e->psum = words(ip + 8, 32) + 17;
	}
}

/* The largest IP packet through the interface to a VTEP whose route says
 * route_mtu (0: nothing). */
static uint16_t path_mtu(const struct vx_nh_tab *t, uint32_t route_mtu)
{
	uint32_t m = t->ifmtu;
	if (route_mtu && route_mtu < m)
		m = route_mtu;
	return (uint16_t)(m > 65535 ? 65535 : m);
}

struct vx_nh *vx_nh_get(struct vx_nh_tab *t, const union vx_addr *remote, uint64_t now)
{
	int32_t *link;
	struct vx_nh *e = find(t, remote, &link);
	if (!e) {
		if (t->free_head < 0)
			return NULL;
		int32_t i = t->free_head;
		e = &t->ent[i];
		t->free_head = e->next;
		memset(e, 0, sizeof(*e));
		e->remote = *remote;
		e->next = -1;
		e->mtu = path_mtu(t, 0);
		*link = i;
	}
	e->used = true;
	e->used_ms = now;
	return e;
}

int vx_nh_pin(struct vx_nh_tab *t, const union vx_addr *remote, const uint8_t *mac)
{
	if (!mac) {
		struct vx_nh *e = find(t, remote, NULL);
		if (!e || !e->pinned)
			return -ENOENT;
		e->pinned = false;
		e->ok = false; /* the neighbour table says again */
		e->lapsed = false;
		e->tried_ms = 0;
		return 0;
	}
	struct vx_nh *e = vx_nh_get(t, remote, hsb_mono_ms());
	if (!e)
		return -ENOSPC;
	e->pinned = true;
	e->lapsed = false;
	memcpy(e->mac, mac, 6);
	build(t, e);
	e->ok = t->ifindex > 0;
	return 0;
}

/* ---- asking the kernel ------------------------------------------------------------ */

struct route_ans {
	int family;
	int oif;
	uint32_t mtu;           /* the route's, or 0 */
	bool unicast, gw;
	union vx_addr via;
};

static int metric_attr(const struct nlattr *a, void *data)
{
	struct route_ans *r = data;
	if (mnl_attr_get_type(a) == RTAX_MTU && mnl_attr_get_payload_len(a) >= 4)
		r->mtu = mnl_attr_get_u32(a);
	return MNL_CB_OK;
}

static int route_attr(const struct nlattr *a, void *data)
{
	struct route_ans *r = data;
	unsigned al = r->family == AF_INET ? 4 : 16;
	switch (mnl_attr_get_type(a)) {
	case RTA_OIF:
		if (mnl_attr_get_payload_len(a) >= 4)
			r->oif = (int)mnl_attr_get_u32(a);
		break;
	case RTA_GATEWAY:
		if (mnl_attr_get_payload_len(a) == al) {
			memcpy(&r->via, mnl_attr_get_payload(a), al);
			r->gw = true;
		}
		break;
	case RTA_METRICS:
		mnl_attr_parse_nested(a, metric_attr, r);
		break;
	case RTA_VIA: /* an IPv4 route through an IPv6 next hop: not taken */
		r->unicast = false;
		break;
	default:
		break;
	}
	return MNL_CB_OK;
}

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
	struct route_ans *r = data;
	if (nlh->nlmsg_type != RTM_NEWROUTE || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct rtmsg))
		return MNL_CB_OK;
	const struct rtmsg *rt = mnl_nlmsg_get_payload(nlh);
	r->unicast = rt->rtm_type == RTN_UNICAST;
	mnl_attr_parse(nlh, sizeof(*rt), route_attr, r);
	return MNL_CB_OK;
}

struct neigh_ans {
	int state;
	bool have_mac;
	uint8_t mac[6];
};

static int neigh_attr(const struct nlattr *a, void *data)
{
	struct neigh_ans *n = data;
	if (mnl_attr_get_type(a) == NDA_LLADDR && mnl_attr_get_payload_len(a) == 6) {
		memcpy(n->mac, mnl_attr_get_payload(a), 6);
		n->have_mac = true;
	}
	return MNL_CB_OK;
}

static int neigh_cb(const struct nlmsghdr *nlh, void *data)
{
	struct neigh_ans *n = data;
	if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
		return MNL_CB_OK;
	const struct ndmsg *nd = mnl_nlmsg_get_payload(nlh);
	n->state = nd->ndm_state;
	mnl_attr_parse(nlh, sizeof(*nd), neigh_attr, n);
	return MNL_CB_OK;
}

/* A neighbour request about hop on the interface, built in t->buf. */
static void neigh_req(struct vx_nh_tab *t, uint16_t type, uint16_t flags, uint8_t ndm_flags,
		      const union vx_addr *hop)
{
	struct nlmsghdr *nlh = hs_nl_req(t->buf, &t->seq, type, flags);
	struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
	nd->ndm_family = (uint8_t)t->p.family;
	nd->ndm_ifindex = t->ifindex;
	nd->ndm_flags = ndm_flags;
	mnl_attr_put(nlh, NDA_DST, alen(t), hop);
}

#define NUD_USABLE (NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP)

struct answer {
	bool ok, other_if, error;
	uint8_t mac[6];
	union vx_addr hop;      /* the next hop looked up, where ok */
	uint32_t mtu;           /* the route's, or 0 */
};

/* Where remote's datagrams would go: the route from the local address,
 * then its next hop's neighbour entry; asks the kernel to resolve it
 * where that is not usable yet, or only stale. */
static void resolve(struct vx_nh_tab *t, const union vx_addr *remote, struct answer *out)
{
	unsigned al = alen(t);
	*out = (struct answer){0};
	struct nlmsghdr *nlh = hs_nl_req(t->buf, &t->seq, RTM_GETROUTE, 0);
	struct rtmsg *rt = mnl_nlmsg_put_extra_header(nlh, sizeof(*rt));
	rt->rtm_family = (uint8_t)t->p.family;
	rt->rtm_dst_len = rt->rtm_src_len = (uint8_t)(al * 8);
	mnl_attr_put(nlh, RTA_DST, al, remote);
	mnl_attr_put(nlh, RTA_SRC, al, &t->p.local);
	struct route_ans r = {.family = t->p.family};
	if (hs_nl_request(t->nl, t->buf, route_cb, &r, NULL) || !r.unicast) {
		/* no route (or not a unicast one): the kernel's way says why */
		out->error = true;
		return;
	}
	if (r.oif != t->ifindex) {
		out->other_if = true;
		return;
	}
	out->mtu = r.mtu;
	union vx_addr hop = r.gw ? r.via : *remote;
	neigh_req(t, RTM_GETNEIGH, 0, 0, &hop);
	struct neigh_ans n = {0};
	int rc = hs_nl_request(t->nl, t->buf, neigh_cb, &n, NULL);
	if (rc && rc != -ENOENT) {
		out->error = true;
		return;
	}
	if (!rc && (n.state & NUD_USABLE) && n.have_mac) {
		out->ok = true;
		memcpy(out->mac, n.mac, 6);
		out->hop = hop;
	}
	if (!rc && (n.state & (NUD_REACHABLE | NUD_PERMANENT | NUD_NOARP | NUD_INCOMPLETE |
			       NUD_DELAY | NUD_PROBE)))
		return; /* known, or being confirmed or resolved already */
	/* none, failed or stale: in use, so have the kernel (re)confirm it */
	neigh_req(t, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_ACK, NTF_USE, &hop);
	if (hs_nl_request(t->nl, t->buf, NULL, NULL, NULL))
		out->error = !out->ok;
}

static int notice_filter(struct vx_nh_tab *t, int ifindex);

/* The interface's index, MAC and MTU now (by name: it may have been
 * made again). Rebinds the socket to a new index. The ioctls go through
 * the packet socket: they look in its network namespace (the one the port
 * was opened in), not the loop thread's. */
static void follow_link(struct vx_nh_tab *t, pthread_mutex_t *lock)
{
	struct ifreq ifr = {0};
	int idx = 0;
	uint32_t mtu = 0;
	uint8_t mac[6] = {0};
	memcpy(ifr.ifr_name, t->ifname, sizeof(t->ifname));
	if (!ioctl(t->fd, SIOCGIFINDEX, &ifr))
		idx = ifr.ifr_ifindex;
	if (idx && !ioctl(t->fd, SIOCGIFHWADDR, &ifr) && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER)
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	else
		idx = 0;
	if (idx && !ioctl(t->fd, SIOCGIFMTU, &ifr) && ifr.ifr_mtu > 0)
		mtu = (uint32_t)ifr.ifr_mtu;
	if (idx == t->ifindex && !memcmp(mac, t->ifmac, 6)) {
		if (mtu && mtu != t->ifmtu) {
			pthread_mutex_lock(lock);
			t->ifmtu = mtu;
			for (uint32_t i = 0; i < t->cap; i++)
				t->ent[i].mtu = path_mtu(t, t->ent[i].route_mtu);
			pthread_mutex_unlock(lock);
		}
		return;
	}
	if (idx && idx != t->ifindex) {
		struct sockaddr_ll sa = t->sa;
		sa.sll_ifindex = idx;
		sa.sll_protocol = 0; /* still send only */
		if (bind(t->fd, (struct sockaddr *)&sa, sizeof(sa)))
			idx = 0;
	}
	/* the notices of the new index (0: none pass); those that came in
	 * between do not matter: every entry is looked up again below */
	if (t->mon && idx != t->ifindex)
		notice_filter(t, idx);
	hs_port_log(t->port, idx ? HS_LOG_INFO : HS_LOG_WARN,
		    idx ? "underlay %s: index %d, address %02x:%02x:%02x:%02x:%02x:%02x"
			: "underlay %s is gone: datagrams take the kernel's way",
		    t->ifname, idx, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	pthread_mutex_lock(lock);
	t->ifindex = idx;
	t->sa.sll_ifindex = idx;
	if (mtu)
		t->ifmtu = mtu;
	memcpy(t->ifmac, mac, 6);
	for (uint32_t i = 0; i < t->cap; i++) {
		struct vx_nh *e = &t->ent[i];
		e->tried_ms = 0; /* looked up again: the routes may differ */
		e->lapsed = false;
		e->route_mtu = 0;
		e->mtu = path_mtu(t, 0);
		if (!e->pinned)
			e->ok = false;
		else if ((e->ok = idx > 0))
			build(t, e);
	}
	pthread_mutex_unlock(lock);
}

/* ---- the neighbour table's notices ------------------------------------------------ */

#define NOTICE_EV_MAX 64      /* distinct next hops a tick applies one by one */
#define NOTICE_READS_MAX 1024 /* datagrams a tick reads at most */

struct notice_ev {
	union vx_addr hop;
	bool gone;              /* deleted, or not usable */
	bool have_mac;
	uint8_t mac[6];
};

struct notice {
	struct vx_nh_tab *t;
	bool all;               /* some were lost, or too many: every entry looked up again */
	unsigned n;
	struct notice_ev ev[NOTICE_EV_MAX];
};

/* The kernel sends RTM_NEWNEIGH/RTM_DELNEIGH for every neighbour of every
 * interface and family (bridge FDBs included) to the group: a socket
 * filter keeps only this interface's, of this family, so that other
 * interfaces' churn neither fills the socket nor costs a tick. Netlink is
 * host-endian; the filter's loads are big-endian, hence the byte swaps.
 * Attached again when the interface's index changes. */
static int notice_filter(struct vx_nh_tab *t, int ifindex)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_type)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_NEWNEIGH), 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_DELNEIGH), 0, 5),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS,
			 NLMSG_LENGTH(0) + offsetof(struct ndmsg, ndm_family)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)t->p.family, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 NLMSG_LENGTH(0) + offsetof(struct ndmsg, ndm_ifindex)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htonl((uint32_t)ifindex), 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	return setsockopt(mnl_socket_get_fd(t->mon), SOL_SOCKET, SO_ATTACH_FILTER, &prog,
			  sizeof(prog)) ? -errno : 0;
}

static int notice_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);
	if (type == NDA_DST || type == NDA_LLADDR)
		tb[type] = a;
	return MNL_CB_OK;
}

static int notice_cb(const struct nlmsghdr *nlh, void *data)
{
	struct notice *no = data;
	struct vx_nh_tab *t = no->t;
	if ((nlh->nlmsg_type != RTM_NEWNEIGH && nlh->nlmsg_type != RTM_DELNEIGH) ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
		return MNL_CB_OK;
	const struct ndmsg *nd = mnl_nlmsg_get_payload(nlh);
	if (nd->ndm_family != t->p.family || nd->ndm_ifindex != t->ifindex)
		return MNL_CB_OK;
	const struct nlattr *tb[NDA_MAX + 1] = {0};
	mnl_attr_parse(nlh, sizeof(*nd), notice_attr, tb);
	if (!tb[NDA_DST] || mnl_attr_get_payload_len(tb[NDA_DST]) != alen(t))
		return MNL_CB_OK;
	struct notice_ev v = {0};
	memcpy(&v.hop, mnl_attr_get_payload(tb[NDA_DST]), alen(t));
	v.gone = nlh->nlmsg_type == RTM_DELNEIGH || !(nd->ndm_state & NUD_USABLE);
	if (tb[NDA_LLADDR] && mnl_attr_get_payload_len(tb[NDA_LLADDR]) == 6) {
		memcpy(v.mac, mnl_attr_get_payload(tb[NDA_LLADDR]), 6);
		v.have_mac = true;
	}
	/* one event per next hop, the latest notice's */
	for (unsigned k = 0; k < no->n; k++)
		if (vx_addr_same(t->p.family, &no->ev[k].hop, &v.hop)) {
			no->ev[k] = v;
			return MNL_CB_OK;
		}
	if (no->n == NOTICE_EV_MAX)
		no->all = true;
	else
		no->ev[no->n++] = v;
	return MNL_CB_OK;
}

/* (Lock held.) What the notices said, in one pass over the table: entries
 * whose next hop went, or changed its address, stop being usable (the
 * kernel's way, which is right whatever the table holds) and are due for
 * a lookup now. Where notices were lost or too many, nothing is known to
 * be wrong: every entry is due for a lookup, and the usable stay usable
 * until it. */
static void apply_notices(struct vx_nh_tab *t, const struct notice *no)
{
	for (uint32_t i = 0; i < t->cap; i++) {
		struct vx_nh *e = &t->ent[i];
		if (e->pinned || !e->ok)
			continue;
		if (no->all)
			e->tried_ms = 0;
		bool hit = false;
		for (unsigned k = 0; !hit && k < no->n; k++)
			hit = vx_addr_same(t->p.family, &e->hop, &no->ev[k].hop) &&
			      (no->ev[k].gone || !no->ev[k].have_mac ||
			       memcmp(no->ev[k].mac, e->mac, 6));
		if (hit) {
			e->ok = false;
			e->lapsed = true;
			e->tried_ms = 0;
			atomic_fetch_add(&t->ctr[C_NOTICED], 1);
		}
	}
}

/* The notices since the last tick (at most NOTICE_READS_MAX datagrams: the
 * rest wait for the next tick), applied once. Only the kernel's count
 * (sender port 0). While the interface is gone they are read and dropped:
 * its return looks every entry up again anyway. */
static void read_notices(struct vx_nh_tab *t, pthread_mutex_t *lock)
{
	if (!t->mon)
		return;
	struct notice no = {.t = t};
	int fd = mnl_socket_get_fd(t->mon);
	for (unsigned r = 0; r < NOTICE_READS_MAX; r++) {
		struct sockaddr_nl from;
		socklen_t fl = sizeof(from);
		ssize_t len = recvfrom(fd, t->buf, MNL_SOCKET_BUFFER_SIZE, MSG_DONTWAIT,
				       (struct sockaddr *)&from, &fl);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			/* ENOBUFS: the socket overflowed, some were lost; any
			 * other error: none can be trusted to have come */
			if (errno == ENOBUFS)
				atomic_fetch_add(&t->ctr[C_NOTICES_LOST], 1);
			no.all = true;
			break;
		}
		if (len == 0 || fl != sizeof(from) || from.nl_pid != 0 || t->ifindex <= 0)
			continue;
		mnl_cb_run(t->buf, (size_t)len, 0, 0, notice_cb, &no);
	}
	if (t->ifindex <= 0 || (!no.all && !no.n))
		return;
	pthread_mutex_lock(lock);
	apply_notices(t, &no);
	pthread_mutex_unlock(lock);
}

/* How long ago t was, from now (signed: a data path that read the clock
 * before this thread may have stored a later time). */
static int64_t since(uint64_t now, uint64_t t)
{
	return (int64_t)(now - t);
}

void vx_nh_tick(struct vx_nh_tab *t, pthread_mutex_t *lock)
{
	follow_link(t, lock);
	read_notices(t, lock);
	union vx_addr todo[NH_PER_TICK];
	unsigned n = 0;
	pthread_mutex_lock(lock);
	uint64_t now = hsb_mono_ms();
	/* every bucket, for the idle entries; the lookups from where the last
	 * tick ran out of them, so that each entry's turn comes */
	uint32_t next = t->cursor;
	bool full = false;
	for (uint32_t k = 0; k < t->nbucket; k++) {
		uint32_t b = (t->cursor + k) & (t->nbucket - 1);
		for (int32_t *l = &t->bucket[b]; *l >= 0;) {
			struct vx_nh *e = &t->ent[*l];
			if (!e->pinned && since(now, e->used_ms) >= NH_IDLE_MS) {
				int32_t i = *l;
				*l = e->next;
				e->ok = false; /* free: no notice applies to it */
				e->next = t->free_head;
				t->free_head = i;
				continue;
			}
			/* usable ones again each second while in use; the others
			 * at once when new, then every half second */
			bool due = !e->pinned && e->used && t->ifindex > 0 &&
				   (!e->tried_ms ||
				    since(now, e->tried_ms) >= (e->ok ? NH_RECHECK_MS : NH_RETRY_MS));
			if (due && n < NH_PER_TICK) {
				todo[n++] = e->remote;
				e->used = false;
				e->tried_ms = now;
			} else if (due && !full) {
				full = true;
				next = b;
			}
			l = &e->next;
		}
	}
	t->cursor = next;
	pthread_mutex_unlock(lock);
	for (unsigned i = 0; i < n; i++) {
		struct answer a;
		resolve(t, &todo[i], &a);
		pthread_mutex_lock(lock);
		struct vx_nh *e = find(t, &todo[i], NULL);
		if (e && !e->pinned && t->ifindex > 0) {
			e->checked_ms = now;
			bool same = !memcmp(e->mac, a.mac, 6);
			if (a.ok && (!e->ok || !same)) {
				/* after a notice's lapse: a change if the address
				 * changed, nothing if it came back as it was */
				if (!e->lapsed || !same)
					atomic_fetch_add(&t->ctr[e->ok || e->lapsed ? C_CHANGED
										   : C_RESOLVED], 1);
				memcpy(e->mac, a.mac, 6);
				build(t, e);
			}
			if (a.ok)
				e->hop = a.hop;
			e->ok = a.ok;
			e->lapsed = false;
			e->route_mtu = a.mtu;
			e->mtu = path_mtu(t, a.mtu);
		}
		pthread_mutex_unlock(lock);
		if (a.other_if)
			atomic_fetch_add(&t->ctr[C_OTHER_IF], 1);
		if (a.error)
			atomic_fetch_add(&t->ctr[C_ERRORS], 1);
	}
}

/* ---- the socket ------------------------------------------------------------------- */

int vx_nh_open(struct vx_nh_tab **out, const struct vx_nh_params *p, hs_port_t *port)
{
	if (!p->ifname || !*p->ifname || strlen(p->ifname) >= IF_NAMESIZE)
		return -ENODEV;
	struct vx_nh_tab *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->port = port;
	t->p = *p;
	t->p.ifname = NULL;
	snprintf(t->ifname, sizeof(t->ifname), "%s", p->ifname);
	t->fd = -1;
	t->cap = p->capacity;
	t->nbucket = 1;
	while (t->nbucket < t->cap)
		t->nbucket <<= 1;
	t->ent = calloc(t->cap, sizeof(*t->ent));
	t->bucket = malloc(t->nbucket * sizeof(*t->bucket));
	t->buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	int rc = 0;
	if (!t->ent || !t->bucket || !t->buf) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t b = 0; b < t->nbucket; b++)
		t->bucket[b] = -1;
	for (uint32_t i = 0; i < t->cap; i++)
		t->ent[i].next = i + 1 < t->cap ? (int32_t)(i + 1) : -1;
	if (getrandom(&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
		t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull;
	/* send only: protocol 0 receives nothing */
	t->fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->fd < 0) {
		rc = -errno;
		goto fail;
	}
	int on = 1, sndbuf = 4 << 20;
	if (setsockopt(t->fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on))) {
		rc = -errno;
		goto fail;
	}
	setsockopt(t->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	t->sa.sll_family = AF_PACKET;
	t->sa.sll_protocol = htons(p->family == AF_INET ? ETH_P_IP : ETH_P_IPV6);
	t->sa.sll_halen = 6;
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, t->ifname, sizeof(t->ifname));
	if (ioctl(t->fd, SIOCGIFINDEX, &ifr)) {
		rc = -ENODEV;
		goto fail;
	}
	t->ifindex = t->sa.sll_ifindex = ifr.ifr_ifindex;
	if (ioctl(t->fd, SIOCGIFHWADDR, &ifr) || ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
		hs_port_log(port, HS_LOG_ERROR, "underlay %s is not an Ethernet interface",
			    t->ifname);
		rc = -EINVAL;
		goto fail;
	}
	memcpy(t->ifmac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(t->fd, SIOCGIFMTU, &ifr) || ifr.ifr_mtu <= 0) {
		rc = -errno;
		goto fail;
	}
	t->ifmtu = (uint32_t)ifr.ifr_mtu;
	struct sockaddr_ll sa = t->sa;
	sa.sll_protocol = 0;
	if (bind(t->fd, (struct sockaddr *)&sa, sizeof(sa))) {
		rc = -errno;
		goto fail;
	}
	struct timeval tv = {1, 0};
	if (!(t->nl = mnl_socket_open(NETLINK_ROUTE)) ||
	    mnl_socket_bind(t->nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(t->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))) {
		rc = -errno;
		goto fail;
	}
	/* the neighbour table's notices (without them, changes are seen at the
	 * next recheck only) */
	if (!(t->mon = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC)) ||
	    mnl_socket_bind(t->mon, RTMGRP_NEIGH, MNL_SOCKET_AUTOPID) < 0) {
		int err = errno;
		if (t->mon)
			mnl_socket_close(t->mon);
		t->mon = NULL;
		hs_port_log(port, HS_LOG_WARN, "underlay %s: no neighbour notices (%s): "
			    "changes are seen within %d ms", t->ifname, strerror(err),
			    NH_RECHECK_MS);
	} else if ((rc = notice_filter(t, t->ifindex))) {
		/* still right, only dearer: every neighbour's notice is read */
		hs_port_log(port, HS_LOG_WARN, "underlay %s: no filter on the neighbour "
			    "notices (%s)", t->ifname, strerror(-rc));
		rc = 0;
	}
	*out = t;
	return 0;
fail:
	vx_nh_close(t);
	return rc;
}

void vx_nh_close(struct vx_nh_tab *t)
{
	if (!t)
		return;
	if (t->fd >= 0)
		close(t->fd);
	if (t->nl)
		mnl_socket_close(t->nl);
	if (t->mon)
		mnl_socket_close(t->mon);
	free(t->buf);
	free(t->ent);
	free(t->bucket);
	free(t);
}

int vx_nh_fd(const struct vx_nh_tab *t)
{
	return t->fd;
}

unsigned vx_nh_sa(const struct vx_nh_tab *t, void *sa)
{
	memcpy(sa, &t->sa, sizeof(t->sa));
	return sizeof(t->sa);
}

void vx_nh_count(struct vx_nh_tab *t, unsigned through, unsigned kernel)
{
	if (through)
		atomic_fetch_add_explicit(&t->ctr[C_SENT], through, memory_order_relaxed);
	if (kernel)
		atomic_fetch_add_explicit(&t->ctr[C_KERNEL], kernel, memory_order_relaxed);
}

void vx_nh_read(struct vx_nh_tab *t, uint64_t out[VX_NH_NCTR])
{
	for (unsigned i = 0; i < VX_NH_NCTR; i++)
		out[i] = atomic_load(&t->ctr[i]);
}
