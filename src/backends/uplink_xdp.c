/*
 * uplink_xdp.c - the uplink's AF_XDP receive path (see uplink.h).
 *
 * The program (bpf/uplink_xdp.bpf.c, built with clang and embedded as
 * hs_uplink_xdp_obj) redirects to an AF_XDP socket only the unicast
 * frames for MACs in its map, the MACs the switch has behind its other
 * ports; everything else takes the AF_PACKET path as before. So frames
 * for VMs skip the host's stack (no skb, no packet socket), while the
 * host, broadcast and multicast, and anything the map does not know yet
 * keep working unchanged.
 *
 * Per queue (of the uplink's, up to the interface's receive queues): a
 * UMEM of `frames` frames of HS_XDP_CHUNK bytes, a fill ring and a
 * receive ring of as many entries (so every frame can always go back to
 * the fill ring, in any order), no send ring: the switch sends through
 * the AF_PACKET ring, which carries the offload metadata AF_XDP lacks,
 * and one path keeps a flow's frames in order.
 *
 * A received frame is handed to the switch where it lies in the UMEM;
 * its token is its frame index; it goes back to the fill ring when the
 * switch is done with it. Descriptors from the kernel are checked against
 * the UMEM before use.
 *
 * The MAC map is brought to the switch's table by the uplink's timer on
 * the loop (ul_xdp_sync_macs): a VM's MAC takes the fast path within a
 * tick of being learned, and leaves it within a tick of aging out or
 * moving behind the uplink. The interface's own unicast MACs are never in
 * the map: the host's unicast cannot be taken from it, whatever a VM
 * claims.
 *
 * The program is attached through a bpf_link (closing it detaches; no
 * one else can replace it), native XDP with the driver's VLAN hint by
 * default: the attach order and why are at ul_xdp_open.
 */
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <xdp/xsk.h>

#include "backends.h"
#include "bpf/uplink_xdp_abi.h"
#include "keyset.h"
#include "uplink_xdp.h"

#ifndef BPF_F_XDP_DEV_BOUND_ONLY
#define UL_XDP_DEV_BOUND (1u << 6) /* linux 6.3 */
#else
#define UL_XDP_DEV_BOUND BPF_F_XDP_DEV_BOUND_ONLY
#endif

/* the program, built with the VLAN hint and without */
extern const unsigned char hs_uplink_xdp_vlan_obj[], hs_uplink_xdp_plain_obj[];
extern const size_t hs_uplink_xdp_vlan_obj_len, hs_uplink_xdp_plain_obj_len;

struct ul_xsk {
	struct xsk_socket *xsk;
	struct xsk_umem *umem;
	struct xsk_ring_prod fq;
	struct xsk_ring_cons cq, rx;
	uint8_t *area;
	size_t area_len;
	int fd;
	/* by the queue's ingress owner; read by the counters */
	_Atomic uint64_t rx_frames, rx_bad, rx_partial;
};

struct ul_xdp {
	hs_port_t *port;
	int ifindex;
	int link_fd;             /* the attachment (a bpf_link: it goes with the
				    fd, the device, or the device's namespace) */
	const char *mode;
	bool hint;               /* the program sees VLAN tags kept out of frames */
	struct bpf_object *obj;
	int prog_fd, xsks_fd, macs_fd, cfg_fd, stats_fd;
	uint32_t cfg[2];         /* hs_cfg as last set */
	unsigned nq;             /* queues with a socket */
	uint32_t frames;
	struct ul_xsk *s;        /* [nq] */
	struct hs_keyset macs;   /* the map's MACs, the loop's alone */
	uint32_t max_macs;
	_Atomic uint64_t map_full, map_errors, n_macs_pub;
};

static void unload(struct ul_xdp *x)
{
	if (x->obj)
		bpf_object__close(x->obj);
	x->obj = NULL;
	x->prog_fd = x->xsks_fd = x->macs_fd = x->cfg_fd = x->stats_fd = -1;
	x->cfg[0] = x->cfg[1] = 0;
}

/* The program with the VLAN hint is bound to the device (ifindex). */
static int load(struct ul_xdp *x, bool hint)
{
	LIBBPF_OPTS(bpf_object_open_opts, o, .object_name = "hs_uplink_xdp");
	x->obj = hint ? bpf_object__open_mem(hs_uplink_xdp_vlan_obj, hs_uplink_xdp_vlan_obj_len, &o)
		      : bpf_object__open_mem(hs_uplink_xdp_plain_obj, hs_uplink_xdp_plain_obj_len,
					     &o);
	if (!x->obj)
		return errno ? -errno : -EINVAL;
	struct bpf_map *macs = bpf_object__find_map_by_name(x->obj, "hs_macs");
	struct bpf_map *xsks = bpf_object__find_map_by_name(x->obj, "hs_xsks");
	struct bpf_map *cfg = bpf_object__find_map_by_name(x->obj, "hs_cfg");
	struct bpf_map *stats = bpf_object__find_map_by_name(x->obj, "hs_stats");
	struct bpf_program *prog = bpf_object__find_program_by_name(x->obj, "hs_uplink_xdp");
	if (!macs || !xsks || !cfg || !stats || !prog)
		return -EINVAL;
	int rc = bpf_map__set_max_entries(macs, x->max_macs);
	if (!rc && hint) {
		bpf_program__set_ifindex(prog, (__u32)x->ifindex);
		rc = bpf_program__set_flags(prog, bpf_program__flags(prog) | UL_XDP_DEV_BOUND);
	}
	if (!rc)
		rc = bpf_object__load(x->obj);
	if (rc)
		return rc < 0 ? rc : -EINVAL;
	x->prog_fd = bpf_program__fd(prog);
	x->xsks_fd = bpf_map__fd(xsks);
	x->macs_fd = bpf_map__fd(macs);
	x->cfg_fd = bpf_map__fd(cfg);
	x->stats_fd = bpf_map__fd(stats);
	return x->prog_fd < 0 || x->xsks_fd < 0 || x->macs_fd < 0 || x->cfg_fd < 0 ||
			       x->stats_fd < 0
		       ? -EINVAL
		       : 0;
}

/* The interface's receive queues (ETHTOOL_GCHANNELS; 1 if it cannot say). */
static unsigned rx_queues(const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return 1;
	struct ethtool_channels ch = {.cmd = ETHTOOL_GCHANNELS};
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1));
	ifr.ifr_data = (void *)&ch;
	unsigned n = 1;
	if (ioctl(s, SIOCETHTOOL, &ifr) == 0 && ch.rx_count + ch.combined_count > 0)
		n = ch.rx_count + ch.combined_count;
	close(s);
	return n;
}

static void close_socket(struct ul_xdp *x, unsigned qi)
{
	struct ul_xsk *s = &x->s[qi];
	if (s->xsk) {
		uint32_t k = qi;
		bpf_map_delete_elem(x->xsks_fd, &k);
		xsk_socket__delete(s->xsk);
	}
	if (s->umem)
		xsk_umem__delete(s->umem);
	if (s->area)
		munmap(s->area, s->area_len);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

static void close_sockets(struct ul_xdp *x)
{
	for (unsigned i = 0; x->s && i < x->nq; i++)
		close_socket(x, i);
	free(x->s);
	x->s = NULL;
	x->nq = 0;
}

static int open_socket(struct ul_xdp *x, const char *ifname, unsigned qi, uint16_t bind)
{
	struct ul_xsk *s = &x->s[qi];
	s->fd = -1;
	s->area_len = (size_t)x->frames * HS_XDP_CHUNK;
	s->area = mmap(NULL, s->area_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (s->area == MAP_FAILED) {
		s->area = NULL;
		return -errno;
	}
	struct xsk_umem_config uc = {.fill_size = x->frames, .comp_size = 64,
				     .frame_size = HS_XDP_CHUNK};
	int rc = xsk_umem__create(&s->umem, s->area, s->area_len, &s->fq, &s->cq, &uc);
	if (rc) {
		s->umem = NULL;
		return rc;
	}
	struct xsk_socket_config sc = {.rx_size = x->frames,
				       .libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD,
				       .bind_flags = bind | XDP_USE_NEED_WAKEUP};
	rc = xsk_socket__create(&s->xsk, ifname, qi, s->umem, &s->rx, NULL, &sc);
	if (rc) {
		s->xsk = NULL;
		return rc;
	}
	s->fd = xsk_socket__fd(s->xsk);
	/* every frame to the kernel */
	uint32_t idx = 0;
	if (xsk_ring_prod__reserve(&s->fq, x->frames, &idx) != x->frames)
		return -ENOSPC;
	for (uint32_t f = 0; f < x->frames; f++)
		*xsk_ring_prod__fill_addr(&s->fq, idx + f) = (uint64_t)f * HS_XDP_CHUNK;
	xsk_ring_prod__submit(&s->fq, x->frames);
	uint32_t k = qi;
	int fd = s->fd;
	if (bpf_map_update_elem(x->xsks_fd, &k, &fd, BPF_ANY))
		return -errno;
	return 0;
}

static int open_sockets(struct ul_xdp *x, const char *ifname, unsigned nq, uint16_t bind)
{
	x->s = calloc(nq, sizeof(*x->s));
	if (!x->s)
		return -ENOMEM;
	x->nq = nq;
	int rc = 0;
	for (unsigned i = 0, t; !rc && i < nq; i++) {
		/* EBUSY: the queue still has a socket's buffer pool. The kernel
		 * lets go of a closed socket's pool in a work item, so one
		 * closed just before (this port deleted and added again, a
		 * restart) holds the queue a moment longer: wait for it, up to
		 * a second, then say whose it must be. */
		for (t = 0; (rc = open_socket(x, ifname, i, bind)) == -EBUSY && t < 50; t++) {
			close_socket(x, i);
			usleep(20000);
		}
		if (rc == -EBUSY)
			rc = -EADDRINUSE;
		else if (t)
			hs_port_log(x->port, HS_LOG_INFO, "uplink %s: queue %u was held by a "
				    "closed AF_XDP socket: waited %u ms", ifname, i, t * 20);
	}
	if (rc)
		close_sockets(x);
	return rc;
}

/* Closing the link detaches the program (if the device still has it:
 * the kernel detaches it itself when the device goes or changes
 * namespace). Nobody else can replace or remove a link's program. */
static void detach(struct ul_xdp *x)
{
	if (x->link_fd >= 0)
		close(x->link_fd);
	x->link_fd = -1;
}

/* One way to attach: the program, the attach, the sockets; nothing left
 * on failure. *stage says how far it got (0: load, 1: attach). */
static int try_mode(struct ul_xdp *x, const struct ul_xdp_params *p, unsigned nq,
		    uint32_t attach, uint16_t bind, bool hint, int *stage)
{
	*stage = 0;
	int rc = load(x, hint);
	if (rc) {
		unload(x);
		return rc;
	}
	*stage = 1;
	LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = attach);
	x->link_fd = bpf_link_create(x->prog_fd, x->ifindex, BPF_XDP, &lo);
	if (x->link_fd < 0) {
		rc = x->link_fd;
		x->link_fd = -1;
		unload(x);
		return rc;
	}
	*stage = 2;
	rc = open_sockets(x, p->ifname, nq, bind);
	if (rc) {
		detach(x);
		unload(x);
	}
	return rc;
}

int ul_xdp_open(const struct ul_xdp_params *p, struct ul_xdp **out)
{
	struct ul_xdp *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->port = p->port;
	x->ifindex = p->ifindex;
	x->frames = p->frames;
	x->max_macs = p->max_macs;
	x->prog_fd = x->xsks_fd = x->macs_fd = x->cfg_fd = x->stats_fd = -1;
	x->link_fd = -1;
	unsigned nq = rx_queues(p->ifname);
	if (nq > p->queues)
		nq = p->queues;
	if (nq > HS_XDP_MAX_QUEUES)
		nq = HS_XDP_MAX_QUEUES;
	/* Native XDP (zero-copy only on request: with it the NIC puts every
	 * frame of the queue, the host's too, in the switch's UMEM, so the
	 * host's traffic would wait on the switch's fill ring), with the VLAN
	 * hint; generic XDP only on request: it cannot see a tag kept outside
	 * the frame, nor can native XDP without the hint (kernels before
	 * 6.8), which is therefore not used. */
	static const struct {
		uint32_t attach;
		uint16_t bind;
		const char *mode;
	} tries[] = {
		{XDP_FLAGS_DRV_MODE, XDP_ZEROCOPY, "xdp-zerocopy"},
		{XDP_FLAGS_DRV_MODE, XDP_COPY, "xdp-native"},
		{XDP_FLAGS_SKB_MODE, XDP_COPY, "xdp-generic"},
	};
	int rc = -EOPNOTSUPP;
	size_t first = p->generic_only ? 2 : p->zerocopy ? 0 : 1;
	size_t last = p->generic_only ? 2 : 1;
	for (size_t t = first; t <= last; t++) {
		bool native = tries[t].attach == XDP_FLAGS_DRV_MODE;
		int stage;
		rc = try_mode(x, p, nq, tries[t].attach, tries[t].bind, native, &stage);
		if (!rc) {
			x->mode = tries[t].mode;
			x->hint = native;
			if (!native)
				hs_port_log(p->port, HS_LOG_WARN,
					    "uplink %s: generic XDP cannot see a VLAN tag kept "
					    "outside a frame (a NIC's rx-vlan-offload, a peer's VLAN "
					    "device): such frames are taken as untagged; use it only "
					    "where the interface carries no VLANs", p->ifname);
			*out = x;
			return 0;
		}
		if (stage == 0) {
			hs_port_log(p->port, HS_LOG_WARN, "uplink %s: XDP program not loaded: %s%s",
				    p->ifname, hs_strerror(rc),
				    native ? " (native XDP needs the VLAN hint: Linux 6.8)" : "");
			break;
		}
		if (stage == 1 && (rc == -EBUSY || rc == -EEXIST)) {
			/* someone else's program: not ours to replace */
			hs_port_log(p->port, HS_LOG_INFO,
				    "uplink %s: the interface has an XDP program already",
				    p->ifname);
			rc = -EBUSY;
			break;
		}
		hs_port_log(p->port, HS_LOG_INFO, "uplink %s: %s refused: %s", p->ifname,
			    tries[t].mode, hs_strerror(rc));
	}
	ul_xdp_close(x);
	return rc ? rc : -EOPNOTSUPP;
}

void ul_xdp_detach(struct ul_xdp *x)
{
	if (x)
		detach(x);
}

void ul_xdp_close(struct ul_xdp *x)
{
	if (!x)
		return;
	close_sockets(x);
	detach(x);
	unload(x);
	hs_keyset_free(&x->macs);
	free(x);
}

const char *ul_xdp_mode(const struct ul_xdp *x)
{
	return x->mode;
}

int ul_xdp_fd(const struct ul_xdp *x, unsigned qi)
{
	return x && qi < x->nq ? x->s[qi].fd : -1;
}

/* Frames back to the kernel's fill ring (room for all of them, always). */
static void refill(struct ul_xsk *s, const uint32_t *fr, unsigned n)
{
	uint32_t idx = 0;
	if (!n || xsk_ring_prod__reserve(&s->fq, n, &idx) != n)
		return; /* cannot happen: the ring holds every frame */
	for (unsigned i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&s->fq, idx + i) = (uint64_t)fr[i] * HS_XDP_CHUNK;
	xsk_ring_prod__submit(&s->fq, n);
	if (xsk_ring_prod__needs_wakeup(&s->fq))
		recvfrom(s->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* ---- receive ----------------------------------------------------------------------- */

unsigned ul_xdp_recv(struct ul_xdp *x, unsigned qi, struct hs_pkt *pkts, struct hs_seg *segs,
		     unsigned max)
{
	if (!x || qi >= x->nq || !max)
		return 0;
	struct ul_xsk *s = &x->s[qi];
	uint32_t idx = 0;
	unsigned got = xsk_ring_cons__peek(&s->rx, max, &idx), n = 0, bad = 0, runt = 0,
		 partial = 0;
	uint32_t back[HS_RESERVE_MAX];
	unsigned nback = 0;
	for (unsigned i = 0; i < got; i++) {
		const struct xdp_desc *d = xsk_ring_cons__rx_desc(&s->rx, idx + i);
		uint64_t addr = d->addr;
		uint32_t len = d->len;
		uint64_t f = addr / HS_XDP_CHUNK, off = addr % HS_XDP_CHUNK;
		if (f >= x->frames) {
			bad++; /* not ours: nothing to give back */
			continue;
		}
		if (off + len > HS_XDP_CHUNK || len < HS_ETH_HLEN) {
			if (len < HS_ETH_HLEN)
				runt++;
			else
				bad++;
			if (nback < HS_RESERVE_MAX)
				back[nback++] = (uint32_t)f;
			continue;
		}
		struct hs_pkt *pk = &pkts[n];
		segs[n] = (struct hs_seg){.base = s->area + addr, .len = len};
		pk->segs = &segs[n];
		pk->nsegs = 1;
		pk->len = len;
		memset(&pk->off, 0, sizeof(pk->off));
		partial += ul_partial_csum(s->area + addr, len, &pk->off);
		pk->token = UL_XDP_TOKEN | f;
		n++;
	}
	if (got)
		xsk_ring_cons__release(&s->rx, got);
	if (nback)
		refill(s, back, nback);
	if (bad) {
		hs_port_count_drop(x->port, (uint16_t)qi, HS_DROP_BAD_DESC, bad);
		atomic_fetch_add_explicit(&s->rx_bad, bad, memory_order_relaxed);
	}
	if (runt)
		hs_port_count_drop(x->port, (uint16_t)qi, HS_DROP_RUNT, runt);
	if (n)
		atomic_store_explicit(&s->rx_frames,
				      atomic_load_explicit(&s->rx_frames, memory_order_relaxed) + n,
				      memory_order_relaxed);
	if (partial)
		atomic_store_explicit(&s->rx_partial,
				      atomic_load_explicit(&s->rx_partial, memory_order_relaxed) +
					      partial,
				      memory_order_relaxed);
	return n;
}

void ul_xdp_done(struct ul_xdp *x, unsigned qi, const uint64_t *tokens, unsigned n)
{
	if (!x || qi >= x->nq)
		return;
	struct ul_xsk *s = &x->s[qi];
	uint32_t back[64];
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t f = tokens[i] & ~UL_XDP_TOKEN;
		if (f >= x->frames)
			continue;
		back[k++] = (uint32_t)f;
		if (k == sizeof(back) / sizeof(back[0])) {
			refill(s, back, k);
			k = 0;
		}
	}
	if (k)
		refill(s, back, k);
}

/* ---- the MAC map, on the loop ---------------------------------------------------- */

struct mac_walk {
	const struct hs_keyset *host; /* the interface's own unicast MACs */
	struct hs_keyset set;
};

static int mac_cb(const uint8_t mac[6], uint16_t vid, uint32_t idle_s, void *arg)
{
	struct mac_walk *w = arg;
	(void)vid, (void)idle_s;
	uint64_t k = hs_mac_key(mac);
	if ((mac[0] & 1) || hs_keyset_has(w->host, k))
		return 0;
	return hs_keyset_push(&w->set, k);
}

static bool map_add(void *arg, uint64_t k)
{
	struct ul_xdp *x = arg;
	uint32_t one = 1;
	if (bpf_map_update_elem(x->macs_fd, &k, &one, BPF_ANY) == 0)
		return true;
	atomic_fetch_add(errno == E2BIG ? &x->map_full : &x->map_errors, 1);
	return false;
}

static void map_del(void *arg, uint64_t k)
{
	struct ul_xdp *x = arg;
	if (bpf_map_delete_elem(x->macs_fd, &k) && errno != ENOENT)
		atomic_fetch_add(&x->map_errors, 1);
}

void ul_xdp_set_dev(struct ul_xdp *x, uint32_t mtu, bool no_rxvlan)
{
	uint32_t v[2] = {mtu + HS_ETH_HLEN, no_rxvlan};
	for (uint32_t k = 0; k < 2; k++) {
		if (v[k] == x->cfg[k])
			continue;
		if (bpf_map_update_elem(x->cfg_fd, &k, &v[k], BPF_ANY) == 0)
			x->cfg[k] = v[k];
		else
			atomic_fetch_add(&x->map_errors, 1);
	}
}

void ul_xdp_sync_macs(struct ul_xdp *x, hs_switch_t *sw, const struct hs_keyset *host)
{
	struct mac_walk w = {.host = host};
	if (hs_fdb_walk_macs(sw, x->port, mac_cb, &w)) {
		hs_keyset_free(&w.set);
		atomic_fetch_add(&x->map_errors, 1);
		return;
	}
	hs_keyset_sort(&w.set); /* the same MAC in several VLANs: once */
	hs_keyset_apply(&x->macs, &w.set, map_add, map_del, x);
	atomic_store(&x->n_macs_pub, x->macs.n);
}

void ul_xdp_counters(struct ul_xdp *x, void (*cb)(void *arg, const char *name, uint64_t v),
		     void *arg)
{
	uint64_t rx = 0, bad = 0, partial = 0, dropped = 0, full = 0, fill_empty = 0, invalid = 0;
	for (unsigned i = 0; i < x->nq; i++) {
		struct ul_xsk *s = &x->s[i];
		rx += atomic_load_explicit(&s->rx_frames, memory_order_relaxed);
		bad += atomic_load_explicit(&s->rx_bad, memory_order_relaxed);
		partial += atomic_load_explicit(&s->rx_partial, memory_order_relaxed);
		struct xdp_statistics st = {0};
		socklen_t l = sizeof(st);
		if (getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &st, &l) == 0) {
			dropped += st.rx_dropped;
			full += st.rx_ring_full;
			fill_empty += st.rx_fill_ring_empty_descs;
			invalid += st.rx_invalid_descs;
		}
	}
	/* frames the driver could not vouch for (no VLAN hint), per CPU */
	uint64_t unknown = 0;
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *pc = ncpu > 0 ? calloc((size_t)ncpu, sizeof(*pc)) : NULL;
	uint32_t k0 = 0;
	if (pc && bpf_map_lookup_elem(x->stats_fd, &k0, pc) == 0)
		for (int c = 0; c < ncpu; c++)
			unknown += pc[c];
	free(pc);
	cb(arg, "xdp_queues", x->nq);
	cb(arg, "xdp_vlan_hint", x->hint);
	cb(arg, "xdp_no_hint_passed", unknown);
	cb(arg, "xdp_rx_frames", rx);
	cb(arg, "xdp_rx_bad", bad);
	cb(arg, "xdp_rx_csum_partial", partial);
	cb(arg, "xdp_macs", atomic_load(&x->n_macs_pub));
	cb(arg, "xdp_map_full", atomic_load(&x->map_full));
	cb(arg, "xdp_map_errors", atomic_load(&x->map_errors));
	/* frames the kernel redirected to a socket but could not queue */
	cb(arg, "xdp_kernel_drops", dropped + full + invalid);
	cb(arg, "xdp_fill_empty", fill_empty);
}
