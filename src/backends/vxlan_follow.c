/*
 * vxlan_follow.c - a vxlan port's table following a Linux vxlan device's
 * FDB over rtnetlink (libmnl), in the semantics FRR's zebra programs for
 * EVPN and `bridge fdb` gives an operator:
 *
 *  - an entry with NTF_EXT_LEARNED (zebra's remote MACs) becomes an
 *    external entry (HS_VXLAN_FDB_EXTERN); one that is NUD_PERMANENT or
 *    NUD_NOARP (`bridge fdb add ... dst`, `... static`) a static one; the
 *    all-zeros MAC (zebra's and the operator's flood entries) a flood-list
 *    VTEP. Entries the kernel device learned itself from its own traffic
 *    (reachable/stale, no NTF_EXT_LEARNED) are its data plane, not a
 *    control plane: left out.
 *  - only entries of the port's VNI are taken (an external device's name
 *    theirs in NDA_SRC_VNI; a plain device's are of its own VNI, which
 *    must be the port's), of the port's address family, sent with that
 *    VNI (NDA_VNI, where given, the same: no translation) and, when
 *    NDA_PORT names one, to the port's UDP port; the others of this VNI
 *    are counted (follow_skipped).
 *  - RTM_DELNEIGH removes what this follower added, nothing else.
 *
 * The device is only read: it may be down (a vxlan device opens its UDP
 * socket only when up, so a host may keep one down as the control plane's
 * copy while hyperswitch owns the VTEP's port). A unicast MAC has one VTEP
 * here (the kernel may append several): the last one given wins.
 *
 * The device may be deleted and made again (FRR restarting, an operator's
 * script): the follower watches links too, removes what it had added
 * when the device goes, and takes the new device of the same name (if it
 * still suits the port) and its FDB when it comes (follow_relinks).
 * Entries that name a nexthop group (NDA_NH_ID: EVPN multihoming) instead
 * of a VTEP are not supported yet: counted (follow_skipped), left out.
 *
 * The entries it added are indexed by a hash of (MAC, and for the flood
 * list VTEP), so a dump of many thousand entries costs linear time.
 *
 * Lost notifications (ENOBUFS: the socket's buffer overflowed) are not
 * lost entries: the follower dumps the FDB again, and what it had added
 * that the dump no longer holds is removed (follow_resyncs).
 *
 * Threads: open runs the first dump on the caller's thread, before the
 * watch exists; after that only the watch callback (the loop) touches the
 * state, and close deletes the watch first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>

#include "hyperswitch/fdb.h"
#include "hyperswitch/port.h"
#include "hyperswitch/vxlan.h"
#include "keyset.h"
#include "nl_dump.h"
#include "vxlan_follow.h"

#define FOLLOW_RCVBUF (1 << 20) /* socket buffer: bursts of zebra's adds */
#define FOLLOW_READS 64         /* datagrams per callback: the loop goes on */
#define EXPORT_NS 1000000000L   /* the local MACs go to the bridge this often */

struct follow_ent {
	uint8_t mac[6];
	bool stale;             /* a resync's dump has not shown it yet */
	uint32_t flags;
	uint32_t next;          /* the next in its hash chain, index + 1 */
	uint32_t hash;
	char remote[INET6_ADDRSTRLEN];
};

struct vx_follow {
	hs_port_t *port;
	struct vx_follow_config c;
	char ifname[IF_NAMESIZE];
	int ifindex;
	bool external;          /* a collect-metadata device: VNIs per entry */
	uint16_t dev_port;      /* the device's UDP port: entries without NDA_PORT */
	uint32_t drops;         /* the socket's drop count when a dump began */
	struct mnl_socket *nl;
	hs_watch_t *w;
	uint32_t seq;
	uint32_t dump_seq;      /* a resync's dump is running */
	bool resync_again;      /* overflowed during that dump */
	struct follow_ent *ent; /* what this follower added */
	unsigned n;
	uint32_t *bucket;       /* hash chains: the first index + 1, 0: none */
	uint32_t nbucket;       /* a power of two */
	char *buf;              /* MNL_SOCKET_BUFFER_SIZE */
	_Atomic uint64_t added, removed, skipped, resyncs, errors, relinks;
	/* Exporting the switch's local MACs to a bridge port (the loop's,
	 * through its own timer and request socket) */
	char export_name[IF_NAMESIZE];
	int export_ifindex;
	int export_tfd;
	hs_watch_t *export_w;
	struct mnl_socket *enl;
	uint32_t eseq;
	char *ebuf;             /* MNL_SOCKET_BUFFER_SIZE */
	const char *export_why; /* the last reason nothing was exported */
	_Atomic uint64_t export_added, export_removed, export_errors, exported,
		export_conflicts;
};

/* ---- parsing ---------------------------------------------------------------------- */

struct attrs {
	const struct nlattr *a[NDA_MAX + 1];
};

static int neigh_attr(const struct nlattr *attr, void *data)
{
	struct attrs *t = data;
	uint16_t type = mnl_attr_get_type(attr);
	if (type > NDA_MAX)
		return MNL_CB_OK; /* newer kernels' attributes */
	size_t len = mnl_attr_get_payload_len(attr);
	bool ok = true;
	switch (type) {
	case NDA_LLADDR: ok = len == 6; break;
	case NDA_DST: ok = len == 4 || len == 16; break;
	case NDA_VNI: ok = len == 4; break;
	case NDA_SRC_VNI: ok = len == 4; break;
	case NDA_PORT: ok = len == 2; break;
	case NDA_NH_ID: ok = len == 4; break;
	case NDA_MASTER: ok = len == 4; break;
	default: break;
	}
	if (ok)
		t->a[type] = attr;
	return MNL_CB_OK;
}

static const uint8_t zero_mac[6];

/* A unicast MAC has one entry (its VTEP may change); the flood list one
 * per VTEP. */
static uint32_t ent_hash(const uint8_t mac[6], const char *remote)
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 6; i++)
		h = (h ^ mac[i]) * 16777619u;
	if (!memcmp(mac, zero_mac, 6))
		for (const char *c = remote; *c; c++)
			h = (h ^ (uint8_t)*c) * 16777619u;
	return h;
}

static struct follow_ent *find(struct vx_follow *f, const uint8_t mac[6], const char *remote)
{
	bool flood = !memcmp(mac, zero_mac, 6);
	uint32_t h = ent_hash(mac, remote);
	for (uint32_t i = f->bucket[h & (f->nbucket - 1)]; i; i = f->ent[i - 1].next) {
		struct follow_ent *e = &f->ent[i - 1];
		if (e->hash == h && !memcmp(e->mac, mac, 6) &&
		    (!flood || !strcmp(e->remote, remote)))
			return e;
	}
	return NULL;
}

static void link_in(struct vx_follow *f, uint32_t i)
{
	uint32_t *b = &f->bucket[f->ent[i].hash & (f->nbucket - 1)];
	f->ent[i].next = *b;
	*b = i + 1;
}

static void link_out(struct vx_follow *f, uint32_t i)
{
	uint32_t *p = &f->bucket[f->ent[i].hash & (f->nbucket - 1)];
	while (*p != i + 1)
		p = &f->ent[*p - 1].next;
	*p = f->ent[i].next;
}

/* Drops e from the index; the last entry moves into its place. */
static void forget(struct vx_follow *f, struct follow_ent *e)
{
	uint32_t i = (uint32_t)(e - f->ent), last = --f->n;
	link_out(f, i);
	if (i != last) {
		link_out(f, last);
		*e = f->ent[last];
		link_in(f, i);
	}
}

static void apply_del(struct vx_follow *f, struct follow_ent *e)
{
	int rc = f->c.apply(f->c.arg, false, e->mac, e->remote, 0);
	if (rc && rc != -ENOENT) /* gone already: deleted through the API */
		atomic_fetch_add(&f->errors, 1);
	else
		atomic_fetch_add(&f->removed, 1);
	forget(f, e);
}

static void skip(struct vx_follow *f, const char *why, const uint8_t *m)
{
	/* the first is logged: a misconfiguration shows at once */
	if (!atomic_fetch_add(&f->skipped, 1))
		hs_port_log(f->port, HS_LOG_WARN, "%s: entry %02x:%02x:%02x:%02x:%02x:%02x "
			    "left out: %s (counted in follow_skipped)", f->ifname, m[0], m[1], m[2],
			    m[3], m[4], m[5], why);
}

static void on_neigh(struct vx_follow *f, const struct nlmsghdr *nlh)
{
	bool add = nlh->nlmsg_type == RTM_NEWNEIGH;
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg)) {
		atomic_fetch_add(&f->errors, 1);
		return;
	}
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	if (ndm->ndm_family != AF_BRIDGE || ndm->ndm_ifindex != f->ifindex)
		return; /* another device's, or the IP neighbour table */
	struct attrs t = {0};
	mnl_attr_parse(nlh, sizeof(*ndm), neigh_attr, &t);
	if (t.a[NDA_LLADDR] && !t.a[NDA_DST] && t.a[NDA_NH_ID] && add &&
	    (!f->external ||
	     (t.a[NDA_SRC_VNI] && mnl_attr_get_u32(t.a[NDA_SRC_VNI]) == f->c.vni))) {
		skip(f, "a nexthop group (EVPN multihoming), not supported yet",
		     mnl_attr_get_payload(t.a[NDA_LLADDR]));
		return;
	}
	if (!t.a[NDA_LLADDR] || !t.a[NDA_DST])
		return; /* not a VTEP entry (e.g. the device's own address) */
	/* The entry's own VNI: an external device's name it (NDA_SRC_VNI),
	 * a plain device's are of its VNI, the port's (checked at open).
	 * NDA_VNI is the VNI to send with, put where it is not the default:
	 * translating between VNIs is not this port's. */
	if (f->external && (!t.a[NDA_SRC_VNI] || mnl_attr_get_u32(t.a[NDA_SRC_VNI]) != f->c.vni))
		return; /* another VNI's: not this port's (not counted) */
	const uint8_t *mac = mnl_attr_get_payload(t.a[NDA_LLADDR]);
	size_t alen = mnl_attr_get_payload_len(t.a[NDA_DST]);
	char remote[INET6_ADDRSTRLEN];
	int fam = alen == 4 ? AF_INET : AF_INET6;
	inet_ntop(fam, mnl_attr_get_payload(t.a[NDA_DST]), remote, sizeof(remote));
	struct follow_ent *e = find(f, mac, remote);
	if (!add) {
		if (e && !strcmp(e->remote, remote))
			apply_del(f, e);
		return;
	}
	bool translated = t.a[NDA_VNI] && mnl_attr_get_u32(t.a[NDA_VNI]) != f->c.vni;
	uint16_t udp = t.a[NDA_PORT] ? ntohs(mnl_attr_get_u16(t.a[NDA_PORT]))
		       : f->c.any_port ? f->c.dst_port
				       : f->dev_port;
	const char *why = fam != f->c.family ? "VTEP of the other address family"
			  : udp && udp != f->c.dst_port ? "VTEP on another UDP port"
			  : mac[0] & 1 ? "multicast MAC"
			  : translated ? "sent with another VNI (translation)" : NULL;
	uint32_t flags = 0;
	if (ndm->ndm_flags & NTF_EXT_LEARNED)
		flags = HS_VXLAN_FDB_EXTERN;
	else if (ndm->ndm_state & (NUD_PERMANENT | NUD_NOARP))
		flags = HS_VXLAN_FDB_STATIC;
	if (why || !flags) {
		/* (!flags: learned by the device's own data plane.) What this
		 * entry replaced, if it was ours, is gone from the device. */
		if (why)
			skip(f, why, mac);
		if (e)
			apply_del(f, e);
		return;
	}
	if (e && !strcmp(e->remote, remote) && e->flags == flags) {
		e->stale = false; /* a dump showing what is there */
		return;
	}
	if (!e && f->n == f->c.max) {
		atomic_fetch_add(&f->errors, 1);
		hs_port_log(f->port, HS_LOG_WARN, "%s: more entries than the port's table holds",
			    f->ifname);
		return;
	}
	int rc = f->c.apply(f->c.arg, true, mac, remote, flags);
	if (rc) {
		atomic_fetch_add(&f->errors, 1);
		hs_port_log(f->port, HS_LOG_WARN, "%s: entry %02x:%02x:%02x:%02x:%02x:%02x -> %s "
			    "not added: %s", f->ifname, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5],
			    remote, strerror(-rc));
		return;
	}
	atomic_fetch_add(&f->added, 1);
	if (e) /* a unicast MAC moved to another VTEP: same key */
		link_out(f, (uint32_t)(e - f->ent));
	else
		e = &f->ent[f->n++];
	memcpy(e->mac, mac, 6);
	memcpy(e->remote, remote, sizeof(remote));
	e->flags = flags;
	e->stale = false;
	e->hash = ent_hash(mac, remote);
	link_in(f, (uint32_t)(e - f->ent));
}

/* ---- the device going and coming back --------------------------------------------- */

struct link_info {
	char kind[16];
	char name[IF_NAMESIZE];
	uint32_t vni;
	uint16_t port;
	bool have_vni, external;
	uint32_t master;        /* IFLA_MASTER: the bridge it is a port of */
	bool vlan_filtering;    /* a bridge's IFLA_BR_VLAN_FILTERING */
};

static int info_data_attr(const struct nlattr *attr, void *data)
{
	struct link_info *li = data;
	uint16_t type = mnl_attr_get_type(attr);
	if (!strcmp(li->kind, "bridge")) {
		if (type == IFLA_BR_VLAN_FILTERING && mnl_attr_get_payload_len(attr) >= 1)
			li->vlan_filtering = mnl_attr_get_u8(attr) != 0;
		return MNL_CB_OK;
	}
	if (type == IFLA_VXLAN_ID && mnl_attr_get_payload_len(attr) == 4) {
		li->vni = mnl_attr_get_u32(attr);
		li->have_vni = true;
	} else if (type == IFLA_VXLAN_PORT && mnl_attr_get_payload_len(attr) == 2) {
		li->port = ntohs(mnl_attr_get_u16(attr));
	} else if (type == IFLA_VXLAN_COLLECT_METADATA && mnl_attr_get_payload_len(attr) >= 1) {
		li->external = mnl_attr_get_u8(attr) != 0;
	}
	return MNL_CB_OK;
}

static int info_attr(const struct nlattr *attr, void *data)
{
	struct link_info *li = data;
	uint16_t type = mnl_attr_get_type(attr);
	if (type == IFLA_INFO_KIND) {
		size_t len = mnl_attr_get_payload_len(attr);
		if (len > sizeof(li->kind) - 1)
			len = sizeof(li->kind) - 1;
		memcpy(li->kind, mnl_attr_get_payload(attr), len);
		li->kind[len] = 0;
	} else if (type == IFLA_INFO_DATA) {
		mnl_attr_parse_nested(attr, info_data_attr, li);
	}
	return MNL_CB_OK;
}

static int link_attr(const struct nlattr *attr, void *data)
{
	struct link_info *li = data;
	uint16_t type = mnl_attr_get_type(attr);
	if (type == IFLA_LINKINFO) {
		mnl_attr_parse_nested(attr, info_attr, data);
	} else if (type == IFLA_MASTER && mnl_attr_get_payload_len(attr) == 4) {
		li->master = mnl_attr_get_u32(attr);
	} else if (type == IFLA_IFNAME) {
		size_t len = strnlen(mnl_attr_get_payload(attr), mnl_attr_get_payload_len(attr));
		if (len < sizeof(li->name)) {
			memcpy(li->name, mnl_attr_get_payload(attr), len);
			li->name[len] = 0;
		}
	}
	return MNL_CB_OK;
}

/* Whether a device can be followed by this port; logs why not. */
static int suits(hs_port_t *port, const char *ifname, const struct link_info *li, uint32_t vni)
{
	if (strcmp(li->kind, "vxlan")) {
		hs_port_log(port, HS_LOG_WARN, "%s is not a vxlan device (%s)", ifname,
			    li->kind[0] ? li->kind : "no kind");
		return -EINVAL;
	}
	if (!li->external && (!li->have_vni || li->vni != vni)) {
		hs_port_log(port, HS_LOG_WARN, "%s carries VNI %u, this port %u", ifname, li->vni,
			    vni);
		return -EINVAL;
	}
	return 0;
}

static void start_dump(struct vx_follow *f);
static void device_gone(struct vx_follow *f);
static void relink(struct vx_follow *f, int ifindex, const struct link_info *li);

static void on_link(struct vx_follow *f, const struct nlmsghdr *nlh)
{
	if (mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
		return;
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	if (nlh->nlmsg_type == RTM_DELLINK) {
		if (ifm->ifi_index != f->ifindex)
			return;
		/* Its entries go with it (the kernel says so too, entry by
		 * entry; this also covers what a full socket lost). */
		device_gone(f);
		return;
	}
	if (f->ifindex)
		return; /* ours changing state, or another device */
	struct link_info li = {0};
	mnl_attr_parse(nlh, sizeof(*ifm), link_attr, &li);
	if (strcmp(li.name, f->ifname))
		return;
	if (suits(f->port, f->ifname, &li, f->c.vni)) {
		atomic_fetch_add(&f->errors, 1);
		return;
	}
	relink(f, ifm->ifi_index, &li);
	start_dump(f);
}

/* The device went away: what was taken from it goes. */
static void device_gone(struct vx_follow *f)
{
	hs_port_log(f->port, HS_LOG_WARN, "%s was deleted: its entries are removed; "
		    "following it again if it comes back", f->ifname);
	while (f->n)
		apply_del(f, &f->ent[f->n - 1]);
	f->ifindex = 0;
}

/* A device of the name, made again: followed from now on. */
static void relink(struct vx_follow *f, int ifindex, const struct link_info *li)
{
	f->ifindex = ifindex;
	f->external = li->external;
	f->dev_port = li->port;
	atomic_fetch_add(&f->relinks, 1);
	hs_port_log(f->port, HS_LOG_INFO, "%s is back: reading its FDB", f->ifname);
}

/* One datagram's messages; true when it ended the running dump (seq),
 * *err then the error the kernel ended it with (0: none). */
static bool on_datagram(struct vx_follow *f, size_t len, uint32_t seq, int *err)
{
	bool done = false;
	const struct nlmsghdr *nlh = (const struct nlmsghdr *)f->buf;
	for (int left = (int)len; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
		if (seq && nlh->nlmsg_seq == seq && (nlh->nlmsg_flags & NLM_F_DUMP_INTR))
			f->resync_again = true; /* the FDB changed under the dump */
		if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) {
			bool ours = seq && nlh->nlmsg_seq == seq;
			done |= ours;
			if (nlh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
				if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(*e) && e->error) {
					atomic_fetch_add(&f->errors, 1);
					if (ours && err)
						*err = e->error;
				}
			}
			continue;
		}
		if (nlh->nlmsg_type == RTM_NEWNEIGH || nlh->nlmsg_type == RTM_DELNEIGH)
			on_neigh(f, nlh);
		else if (nlh->nlmsg_type == RTM_NEWLINK || nlh->nlmsg_type == RTM_DELLINK)
			on_link(f, nlh);
	}
	return done;
}

/* ---- dumps ------------------------------------------------------------------------ */

static int dump_request(struct vx_follow *f)
{
	char req[MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(struct ndmsg))];
	memset(req, 0, sizeof(req));
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(req);
	nlh->nlmsg_type = RTM_GETNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = ++f->seq ? f->seq : ++f->seq;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = AF_BRIDGE; /* every device's FDB: filtered here */
	if (mnl_socket_sendto(f->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	return 0;
}

/* Notifications the socket dropped so far (SO_MEMINFO); 0 if unknown. */
static uint32_t sock_drops(struct vx_follow *f)
{
	uint32_t mi[SK_MEMINFO_VARS] = {0};
	socklen_t len = sizeof(mi);
	if (getsockopt(mnl_socket_get_fd(f->nl), SOL_SOCKET, SO_MEMINFO, mi, &len) ||
	    len <= SK_MEMINFO_DROPS * sizeof(uint32_t))
		return 0;
	return mi[SK_MEMINFO_DROPS];
}

/* The end of a resync's dump: what it did not show is gone. The kernel
 * reports ENOBUFS once per overflow: notifications dropped while the
 * dump ran (its cursor already past their entries) show only in the
 * socket's drop count, and then it reads everything again. */
static void resync_done(struct vx_follow *f)
{
	f->dump_seq = 0;
	if (sock_drops(f) != f->drops)
		f->resync_again = true;
	for (unsigned i = 0; i < f->n;)
		if (f->ent[i].stale)
			apply_del(f, &f->ent[i]); /* moves the last one here */
		else
			i++;
	if (f->resync_again) {
		f->resync_again = false;
		atomic_fetch_add(&f->resyncs, 1);
		for (unsigned i = 0; i < f->n; i++)
			f->ent[i].stale = true;
		f->drops = sock_drops(f);
		if (!dump_request(f))
			f->dump_seq = f->seq;
	}
}

static void relink(struct vx_follow *f, int ifindex, const struct link_info *li);
static int link_query(int ifindex, struct link_info *li);

/* Reads the whole FDB again: what it no longer shows is removed. First,
 * the device by its name: the notifications of its deletion and of its
 * making again may have been among those lost. */
static void start_dump(struct vx_follow *f)
{
	int idx = (int)if_nametoindex(f->ifname);
	if (idx != f->ifindex) {
		struct link_info li = {0};
		if (f->ifindex)
			device_gone(f);
		if (idx && !link_query(idx, &li) && !suits(f->port, f->ifname, &li, f->c.vni)) {
			relink(f, idx, &li);
		} else if (idx) {
			atomic_fetch_add(&f->errors, 1);
			return;
		} else {
			return; /* no device: nothing to read */
		}
	}
	if (f->dump_seq) { /* one dump at a time per socket */
		f->resync_again = true;
		return;
	}
	for (unsigned i = 0; i < f->n; i++)
		f->ent[i].stale = true;
	f->drops = sock_drops(f);
	int rc = dump_request(f);
	if (rc) {
		atomic_fetch_add(&f->errors, 1);
		return;
	}
	f->dump_seq = f->seq;
}

static void resync(struct vx_follow *f)
{
	atomic_fetch_add(&f->resyncs, 1);
	hs_port_log(f->port, HS_LOG_WARN, "%s: notifications lost (socket buffer full): "
		    "reading the FDB again", f->ifname);
	start_dump(f);
}

static void on_readable(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct vx_follow *f = arg;
	(void)w, (void)events;
	for (int i = 0; i < FOLLOW_READS; i++) {
		ssize_t n = recv(fd, f->buf, MNL_SOCKET_BUFFER_SIZE, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == ENOBUFS) {
				resync(f);
				continue;
			}
			if (errno != EAGAIN && errno != EINTR)
				atomic_fetch_add(&f->errors, 1);
			return;
		}
		int derr = 0;
		if (on_datagram(f, (size_t)n, f->dump_seq, &derr) && f->dump_seq) {
			if (derr) {
				/* a dump that failed showed nothing: nothing is
				 * removed for it; the next overflow or a new
				 * device reads again */
				hs_port_log(f->port, HS_LOG_WARN, "%s: reading the FDB failed: %s",
					    f->ifname, strerror(-derr));
				f->dump_seq = 0;
				for (unsigned k = 0; k < f->n; k++)
					f->ent[k].stale = false;
			} else {
				resync_done(f);
			}
		}
	}
}

/* ---- the device ------------------------------------------------------------------- */

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	if (nlh->nlmsg_type == RTM_NEWLINK &&
	    mnl_nlmsg_get_payload_len(nlh) >= sizeof(struct ifinfomsg))
		mnl_attr_parse(nlh, sizeof(struct ifinfomsg), link_attr, data);
	return MNL_CB_OK;
}

/* What kind of device ifindex is, on a socket of its own. */
static int link_query(int ifindex, struct link_info *li)
{
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	if (!nl)
		return -errno;
	char *buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	int rc = buf ? 0 : -ENOMEM;
	if (!rc && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		rc = -errno;
	if (!rc) {
		struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
		nlh->nlmsg_type = RTM_GETLINK;
		nlh->nlmsg_flags = NLM_F_REQUEST;
		nlh->nlmsg_seq = 1;
		struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
		ifm->ifi_family = AF_UNSPEC;
		ifm->ifi_index = ifindex;
		/* one request, one answer: the device or an error */
		rc = hs_nl_request(nl, buf, link_cb, li, NULL);
	}
	free(buf);
	mnl_socket_close(nl);
	return rc;
}

/* ---- exporting local MACs to a bridge port ---------------------------------------- *
 *
 * Once a second (on the loop) the export port's bridge is read and
 * brought to the switch's table: every pass compares what the bridge
 * holds now with what the switch has, so whatever else changed the
 * bridge (zebra moving a MAC to the vxlan device, the port leaving and
 * rejoining its bridge, an entry deleted by hand, a crash that left
 * entries behind) is repaired at the next pass. The export port is the
 * switch's: the static entries on it are the switch's MACs, and those
 * the switch does not have are removed. Entries on other ports and the
 * bridge's own (local, permanent) are never touched; a MAC zebra moved
 * to the vxlan device (it was advertised from another VTEP) comes back
 * only when the switch sees it again behind a local port, as a Linux
 * bridge port would take it back. At most EXPORT_OPS requests a pass,
 * the rest at the next: the loop is not held long. */

#define EXPORT_OPS 256

/* Sends one request and waits for its own answer (answers to earlier
 * requests that timed out are skipped). 0 or a negative errno. */
static int export_req(struct vx_follow *f, bool add, bool replace, int ifindex, uint64_t key)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(f->ebuf);
	nlh->nlmsg_type = add ? RTM_NEWNEIGH : RTM_DELNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK |
			   (add ? NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL) : 0);
	nlh->nlmsg_seq = ++f->eseq;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = AF_BRIDGE;
	ndm->ndm_ifindex = ifindex;
	ndm->ndm_state = NUD_NOARP; /* static: never aged by the bridge */
	ndm->ndm_flags = NTF_MASTER;
	mnl_attr_put(nlh, NDA_LLADDR, 6, &key); /* the key's first 6 bytes */
	return hs_nl_request(f->enl, f->ebuf, NULL, NULL, NULL);
}

/* What the bridge holds for one MAC, from a dump of its FDB. */
struct br_ent {
	uint64_t key;
	uint8_t where;          /* BR_* */
};
enum { BR_EXPORT = 1, BR_REMOTE = 2, BR_OTHER = 4 };

struct br_dump {
	int bridge, export_ifindex, vx_ifindex;
	struct br_ent *v;
	size_t n, cap;
	int rc;
};

static int br_cb(const struct nlmsghdr *nlh, void *data)
{
	struct br_dump *d = data;
	if (nlh->nlmsg_type != RTM_NEWNEIGH || mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
		return MNL_CB_OK;
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	struct attrs t = {0};
	mnl_attr_parse(nlh, sizeof(*ndm), neigh_attr, &t);
	if (ndm->ndm_family != AF_BRIDGE || !t.a[NDA_LLADDR] || t.a[NDA_DST] ||
	    (ndm->ndm_flags & NTF_SELF))
		return MNL_CB_OK; /* a VTEP entry, or a device's own list */
	if (t.a[NDA_MASTER] && (int)mnl_attr_get_u32(t.a[NDA_MASTER]) != d->bridge)
		return MNL_CB_OK; /* another bridge's (an unfiltered dump) */
	const uint8_t *mac = mnl_attr_get_payload(t.a[NDA_LLADDR]);
	if (mac[0] & 1)
		return MNL_CB_OK;
	uint8_t where = BR_OTHER;
	if (ndm->ndm_ifindex == d->export_ifindex && (ndm->ndm_state & NUD_NOARP) &&
	    !(ndm->ndm_state & NUD_PERMANENT))
		where = BR_EXPORT;
	else if (ndm->ndm_ifindex == d->vx_ifindex && (ndm->ndm_flags & NTF_EXT_LEARNED) &&
		 !(ndm->ndm_state & NUD_PERMANENT))
		where = BR_REMOTE;
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 256;
		struct br_ent *v = realloc(d->v, cap * sizeof(*v));
		if (!v) {
			d->rc = -ENOMEM;
			return MNL_CB_ERROR;
		}
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n++] = (struct br_ent){.key = hs_mac_key(mac), .where = where};
	return MNL_CB_OK;
}

static int cmp_br(const void *a, const void *b)
{
	const struct br_ent *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* The bridge's FDB (its ports' entries), sorted by MAC; a MAC on several
 * ports (several VLANs) has every place or'ed into one. */
static int br_read(struct vx_follow *f, int bridge, struct br_dump *d)
{
	*d = (struct br_dump){.bridge = bridge, .export_ifindex = f->export_ifindex,
			      .vx_ifindex = f->ifindex};
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(f->ebuf);
	nlh->nlmsg_type = RTM_GETNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = ++f->eseq;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = AF_BRIDGE;
	mnl_attr_put_u32(nlh, NDA_MASTER, (uint32_t)bridge);
	int rc = hs_nl_request(f->enl, f->ebuf, br_cb, d, &d->rc);
	if (rc) {
		free(d->v);
		d->v = NULL;
		return rc;
	}
	if (d->n)
		qsort(d->v, d->n, sizeof(*d->v), cmp_br);
	size_t m = 0;
	for (size_t i = 0; i < d->n; i++) {
		if (m && d->v[m - 1].key == d->v[i].key)
			d->v[m - 1].where |= d->v[i].where;
		else
			d->v[m++] = d->v[i];
	}
	d->n = m;
	return 0;
}

struct export_walk {
	int pvid;
	struct hs_keyset set, fresh; /* the switch's MACs; those seen a pass ago */
};

static int export_cb(const uint8_t mac[6], uint16_t vid, uint32_t idle_s, void *arg)
{
	struct export_walk *w = arg;
	if (vid != w->pvid || (mac[0] & 1))
		return 0;
	uint64_t k = hs_mac_key(mac);
	int rc = hs_keyset_push(&w->set, k);
	if (!rc && idle_s <= 1)
		rc = hs_keyset_push(&w->fresh, k);

	return rc;
}

/* Says once (per reason) why nothing is exported. */
static void export_off(struct vx_follow *f, const char *why)
{
	if (f->export_why != why)
		hs_port_log(f->port, HS_LOG_WARN, "not exporting local MACs to %s: %s",
			    f->export_name, why);
	f->export_why = why;
	atomic_store(&f->exported, 0);
}

/* Where the export port is: its bridge, the followed device's too, not
 * VLAN-filtering. 0 and the bridge's ifindex, or why not. */
static const char *export_bridge(struct vx_follow *f, int *bridge)
{
	char name[IF_NAMESIZE];
	if (!f->export_ifindex || !if_indextoname((unsigned)f->export_ifindex, name))
		f->export_ifindex = (int)if_nametoindex(f->export_name); /* made again */
	if (!f->export_ifindex)
		return "the port does not exist";
	struct link_info pl = {0}, dl = {0}, bl = {0};
	if (link_query(f->export_ifindex, &pl) || link_query(f->ifindex, &dl))
		return "cannot read the ports";
	if (!pl.master)
		return "the port is in no bridge";
	if (pl.master != dl.master)
		return "the port is not in the followed device's bridge";
	if (link_query((int)pl.master, &bl) || strcmp(bl.kind, "bridge"))
		return "the port's master is not a bridge";
	if (bl.vlan_filtering)
		return "the bridge filters VLANs (one bridge per VNI is supported)";
	*bridge = (int)pl.master;
	return NULL;
}

/* One pass: the export port's static entries brought to the MACs the
 * switch has in this port's VLAN behind its other ports. */
static void export_sync(struct vx_follow *f)
{
	int bridge = 0;
	const char *why = export_bridge(f, &bridge);
	struct export_walk w = {.pvid = hs_port_pvid(f->port)};
	if (!why && w.pvid <= 0)
		why = "the vxlan port has no access or native VLAN";
	if (why) {
		export_off(f, why);
		return;
	}
	struct br_dump d;
	if (br_read(f, bridge, &d) ||
	    hs_fdb_walk_macs(hs_port_switch(f->port), f->port, export_cb, &w)) {
		atomic_fetch_add(&f->export_errors, 1);
		hs_keyset_free(&w.set);
		hs_keyset_free(&w.fresh);
		free(d.v);
		return;
	}
	f->export_why = NULL;
	hs_keyset_sort(&w.set);
	hs_keyset_sort(&w.fresh);
	unsigned ops = 0;
	uint64_t there = 0;
	/* both sorted: one merge */
	size_t i = 0, j = 0;
	while (i < w.set.n || j < d.n) {
		bool in_want = i < w.set.n && (j == d.n || w.set.v[i] <= d.v[j].key);
		bool in_br = j < d.n && (i == w.set.n || d.v[j].key <= w.set.v[i]);
		uint64_t k = in_want ? w.set.v[i] : d.v[j].key;
		uint8_t where = in_br ? d.v[j].where : 0;
		i += in_want;
		j += in_br;
		if (in_want && (where & BR_EXPORT)) {
			there++;
			continue;
		}
		if (!in_want) {
			/* the switch's port: a static MAC the switch lacks goes */
			if ((where & BR_EXPORT) && ops < EXPORT_OPS) {
				ops++;
				int rc = export_req(f, false, false, f->export_ifindex, k);
				atomic_fetch_add(rc && rc != -ENOENT ? &f->export_errors
								      : &f->export_removed, 1);
			}
			continue;
		}
		if (where & BR_OTHER) {
			/* on another port, or the bridge's own: not ours */
			atomic_fetch_add(&f->export_conflicts, 1);
			continue;
		}
		/* absent, or moved to the vxlan device by the control plane:
		 * back only once the switch sees it here again */
		bool remote = where & BR_REMOTE;
		if ((remote && !hs_keyset_has(&w.fresh, k)) || ops >= EXPORT_OPS)
			continue;
		ops++;
		/* a remote entry is moved (replaced) in one step, as the
		 * bridge's own learning moves it: zebra takes the move for the
		 * MAC's return (a higher sequence number). Deleting it first
		 * would have zebra put its remote entry back. */
		int rc = export_req(f, true, remote, f->export_ifindex, k);
		if (!rc) {
			there++;
			atomic_fetch_add(&f->export_added, 1);
		} else if (rc == -EEXIST) {
			atomic_fetch_add(&f->export_conflicts, 1); /* came meanwhile */
		} else {
			atomic_fetch_add(&f->export_errors, 1);
		}
	}
	atomic_store(&f->exported, there);
	hs_keyset_free(&w.set);
	hs_keyset_free(&w.fresh);
	free(d.v);
}

static void on_export_tick(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	(void)w, (void)events;
	uint64_t ticks;
	if (read(fd, &ticks, sizeof(ticks)) > 0)
		export_sync(arg);
}

/* The export's socket and timer (its watch comes after the follower's). */
static int export_open(struct vx_follow *f)
{
	strcpy(f->export_name, f->c.export_ifname);
	f->c.export_ifname = f->export_name;
	f->export_ifindex = (int)if_nametoindex(f->export_name);
	if (!f->export_ifindex)
		return -ENODEV;
	if (f->export_ifindex == f->ifindex)
		return -EINVAL; /* the followed device itself */
	struct timeval tv = {.tv_sec = 2};
	int one = 1;
	f->ebuf = malloc(MNL_SOCKET_BUFFER_SIZE);
	f->enl = mnl_socket_open(NETLINK_ROUTE);
	if (!f->ebuf)
		return -ENOMEM;
	if (!f->enl || mnl_socket_bind(f->enl, 0, MNL_SOCKET_AUTOPID) < 0 ||
	    setsockopt(mnl_socket_get_fd(f->enl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)))
		return -errno;
	/* dumps of one bridge's FDB (else of every one, filtered here) */
	setsockopt(mnl_socket_get_fd(f->enl), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one,
		   sizeof(one));
	f->export_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct itimerspec its = {.it_interval = {.tv_nsec = EXPORT_NS - 1},
				 .it_value = {.tv_nsec = 100000000}};
	if (f->export_tfd < 0 || timerfd_settime(f->export_tfd, 0, &its, NULL))
		return -errno;
	return 0;
}

/* After the export's watch is gone: the switch's MACs leave the bridge
 * (every static entry on its port, with no limit per pass). */
static void export_close(struct vx_follow *f)
{
	int bridge = 0;
	struct br_dump d = {0};
	if (f->enl && f->ebuf && !export_bridge(f, &bridge) && !br_read(f, bridge, &d))
		for (size_t i = 0; i < d.n; i++)
			if (d.v[i].where & BR_EXPORT)
				export_req(f, false, false, f->export_ifindex, d.v[i].key);
	free(d.v);
	if (f->enl)
		mnl_socket_close(f->enl);
	if (f->export_tfd >= 0)
		close(f->export_tfd);
	free(f->ebuf);
}

int vx_follow_open(hs_port_t *port, const struct vx_follow_config *c, struct vx_follow **out)
{
	if (!c->ifname || !c->ifname[0] || strlen(c->ifname) >= IF_NAMESIZE || !c->max)
		return -EINVAL;
	int ifindex = (int)if_nametoindex(c->ifname);
	if (!ifindex)
		return -ENODEV;
	struct link_info li = {0};
	int rc = link_query(ifindex, &li);
	if (!rc)
		rc = suits(port, c->ifname, &li, c->vni);
	if (rc)
		return rc;
	struct vx_follow *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->port = port;
	f->c = *c;
	f->c.ifname = f->ifname;
	strcpy(f->ifname, c->ifname);
	f->ifindex = ifindex;
	f->export_tfd = -1;
	f->external = li.external;
	f->dev_port = li.port;
	if (c->export_ifname && (rc = export_open(f))) {
		hs_port_log(port, HS_LOG_WARN, "cannot export local MACs to %s: %s",
			    c->export_ifname, hs_strerror(rc));
		export_close(f);
		free(f);
		return rc;
	}
	f->ent = calloc(c->max, sizeof(*f->ent));
	for (f->nbucket = 16; f->nbucket < c->max; f->nbucket <<= 1)
		;
	f->bucket = calloc(f->nbucket, sizeof(*f->bucket));
	f->buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	f->nl = mnl_socket_open(NETLINK_ROUTE);
	rc = f->ent && f->bucket && f->buf ? 0 : -ENOMEM;
	if (!rc && !f->nl)
		rc = -errno;
	int sz = FOLLOW_RCVBUF;
	struct timeval tv = {.tv_sec = 5};
	/* subscribed before the dump: nothing changes unseen in between;
	 * the buffer past rmem_max where the caller may (CAP_NET_ADMIN) */
	if (!rc && setsockopt(mnl_socket_get_fd(f->nl), SOL_SOCKET, SO_RCVBUFFORCE, &sz,
			      sizeof(sz)) < 0)
		setsockopt(mnl_socket_get_fd(f->nl), SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (!rc && (mnl_socket_bind(f->nl, RTMGRP_NEIGH | RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0 ||
		    setsockopt(mnl_socket_get_fd(f->nl), SOL_SOCKET, SO_RCVTIMEO, &tv,
			       sizeof(tv)) < 0))
		rc = -errno;
	if (!rc) {
		f->drops = sock_drops(f);
		rc = dump_request(f);
	}
	/* The first dump on this thread, notifications interleaved as they
	 * come (applied in order, they leave the same table). It counts as
	 * the running dump: a device made again meanwhile asks for another
	 * after it, not beside it. */
	bool overflowed = false;
	f->dump_seq = f->seq;
	while (!rc) {
		ssize_t n = recv(mnl_socket_get_fd(f->nl), f->buf, MNL_SOCKET_BUFFER_SIZE, 0);
		if (n < 0 && errno == ENOBUFS) {
			overflowed = true; /* the dump goes on; read it again after */
			continue;
		}
		if (n < 0) {
			rc = -errno;
			break;
		}
		int derr = 0;
		if (on_datagram(f, (size_t)n, f->seq, &derr)) {
			rc = derr; /* the dump failed: nothing is followed */
			break;
		}
	}
	f->dump_seq = 0;
	if (!rc && (overflowed || sock_drops(f) != f->drops || f->resync_again)) {
		f->resync_again = false;
		resync(f); /* its answer comes to the watch */
	}
	unsigned taken = f->n;
	uint64_t left_out = atomic_load(&f->skipped);
	/* from here on the loop may run on_readable: f is the watch's */
	if (!rc)
		rc = hs_watch_add(hs_port_switch(port), mnl_socket_get_fd(f->nl), HS_WATCH_READ,
				  on_readable, f, &f->w);
	if (!rc && f->enl &&
	    (rc = hs_watch_add(hs_port_switch(port), f->export_tfd, HS_WATCH_READ,
			       on_export_tick, f, &f->export_w)))
		hs_watch_del(f->w); /* (out of memory: rare) */
	if (rc) {
		export_close(f);
		/* what a failed dump added goes again */
		for (; f->n; f->n--)
			f->c.apply(f->c.arg, false, f->ent[f->n - 1].mac, f->ent[f->n - 1].remote, 0);
		if (f->nl)
			mnl_socket_close(f->nl);
		free(f->buf);
		free(f->bucket);
		free(f->ent);
		free(f);
		return rc;
	}
	hs_port_log(port, HS_LOG_INFO,
		    "following the FDB of %s (%u entries taken, %llu left out)%s%s", c->ifname,
		    taken, (unsigned long long)left_out, c->export_ifname ? "; local MACs to " : "",
		    c->export_ifname ? c->export_ifname : "");
	*out = f;
	return 0;
}

void vx_follow_close(struct vx_follow *f)
{
	if (!f)
		return;
	hs_watch_del(f->w);
	hs_watch_del(f->export_w);
	export_close(f);
	mnl_socket_close(f->nl);
	free(f->buf);
	free(f->bucket);
	free(f->ent);
	free(f);
}

const char *const vx_follow_counter_names[VX_FOLLOW_NCTR] = {
	"follow_added", "follow_removed", "follow_skipped", "follow_resyncs", "follow_errors",
	"follow_relinks", "export_added", "export_removed", "export_errors", "exported",
	"export_conflicts"};

void vx_follow_read(struct vx_follow *f, uint64_t out[VX_FOLLOW_NCTR])
{
	out[0] = atomic_load(&f->added);
	out[1] = atomic_load(&f->removed);
	out[2] = atomic_load(&f->skipped);
	out[3] = atomic_load(&f->resyncs);
	out[4] = atomic_load(&f->errors);
	out[5] = atomic_load(&f->relinks);
	out[6] = atomic_load(&f->export_added);
	out[7] = atomic_load(&f->export_removed);
	out[8] = atomic_load(&f->export_errors);
	out[9] = atomic_load(&f->exported);
	out[10] = atomic_load(&f->export_conflicts);
}
