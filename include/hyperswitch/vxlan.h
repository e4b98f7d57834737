/*
 * hyperswitch/vxlan.h - the "vxlan" backend: a VXLAN tunnel endpoint
 * (VTEP, RFC 7348) as a port, so that the switch's VMs share a layer-2
 * network with VMs on other hosts: other hyperswitch instances, a Linux
 * vxlan device (with or without FRR's BGP EVPN), Open vSwitch.
 *
 * A port is one VNI; several ports (VNIs) may share a VTEP (the same local
 * address and dst_port), each datagram reaching its VNI's port (another
 * port of the same VNI on it: -EEXIST from hs_port_add). Map each VNI to a
 * VLAN of the switch with the port's VLAN settings. Frames the switch
 * sends to it go to the remote VTEP
 * its tunnel table names for their destination MAC, or, for broadcast,
 * multicast and unknown unicast, to every VTEP of the VNI's flood list
 * (head-end replication; entries with the all-zeros MAC, as in the Linux
 * vxlan device's FDB). Frames from the tunnel teach the table where their
 * source MAC lives (flood-and-learn), unless the port says not to.
 *
 * The table follows the Linux vxlan FDB's semantics, which FRR's zebra
 * programs for EVPN: learned entries move when their MAC shows up behind
 * another VTEP and age out (ageing_s); static entries (HS_VXLAN_FDB_STATIC,
 * like NUD_PERMANENT) and entries a control plane learned
 * (HS_VXLAN_FDB_EXTERN, like NTF_EXT_LEARNED with NUD_NOARP) never age and
 * are never moved by learning: a frame from another VTEP with such a
 * source MAC is dropped and counted (src_pinned). With HS_VXLAN_NO_LEARN
 * the tunnel teaches nothing at all (as the kernel's nolearning): no
 * entry moves, none is learned, no frame is dropped for its source. When
 * the table is full, a static or external entry takes the place of the
 * least recently seen learned one. Nothing goes back to the VTEP it came
 * from (the switch never sends a frame back out of the port it entered
 * by).
 *
 * Flood-and-learn trusts the underlay: any host that can send to the
 * VTEP's port can claim any source MAC. Filter spoofed sources in the
 * underlay, pin the MACs that matter (static or external entries) and
 * bound what the port may teach the switch (hs_port_config.mac_limit).
 *
 * On the wire: UDP to dst_port (4789 by default), VXLAN flags 0x08, the
 * UDP source port a hash of the inner flow (MACs, IP addresses and ports)
 * within [src_min, src_max], so that ECMP and RSS on the way spread flows;
 * outer UDP checksum on IPv4 unless HS_VXLAN_NO_UDP_CSUM (always on IPv6),
 * zero checksums accepted on receive over IPv4. Frames larger than
 * underlay_mtu minus the encapsulation (50 bytes over IPv4, 70 over IPv6)
 * are dropped and counted (oversize), never fragmented; the inner MTU is
 * the port's MTU (hs_port_set_mtu), so guests can be told. With
 * HS_VXLAN_DF a datagram the kernel refuses as larger than the path MTU
 * (the route's, or one learned from ICMP) is counted as too_big; without
 * it the kernel fragments such a datagram (IPv4 and IPv6 alike). A path
 * MTU learned from ICMP is the kernel's path MTU discovery, with its
 * exposure: an ICMP "fragmentation needed" that quotes a datagram of this
 * VTEP, forged or not, lowers it (to net.ipv4.route.min_pmtu, 552 by
 * default, for net.ipv4.route.mtu_expires, 10 minutes), and frames larger
 * than that then count as too_big; the senders inside the tunnel are not
 * told (no ICMP towards them, no lower MTU for the port). ECN as RFC 6040 says (normal mode): the outer
 * header's ECN field is the inner IP header's (the rest of the outer
 * TOS/traffic class is `tos`); on receive a CE mark on the outer header
 * reaches an ECN-capable inner header (ecn_marked; an IPv4 header's
 * checksum is updated), a CE-marked frame that is not ECN-capable is
 * dropped (ecn_dropped), ECT(1) outside turns an inner ECT(0) into ECT(1).
 *
 * The underlay is the host's IP stack: a UDP socket bound to the local
 * address and dst_port receives (the kernel's GRO and RSS apply), and by
 * default a raw socket sends (the outer IP header, its routing and its
 * next hop are the kernel's). With underlay_if, datagrams leave through
 * that Ethernet interface instead, by a packet socket (one sendmmsg per
 * burst; no routing, netfilter or neighbour code per datagram), their
 * Ethernet and IP headers built here from a template per remote VTEP and
 * patched per datagram, the outer UDP checksum left to the interface (or
 * to the kernel where the interface cannot: captures on the sending side
 * show it unfilled, as for any checksum offload). A remote VTEP's next
 * hop is found through the host's tables, as the kernel would: the route
 * to it from the local address (it must leave by underlay_if, directly or
 * through a gateway), then that next hop's MAC in the neighbour table
 * (reachable, stale, delay or probe, permanent), looked up again every
 * second while in use (after a pause of two seconds, a VTEP's datagrams
 * take the kernel's way until it has been looked up again); the kernel is asked to resolve or confirm entries
 * that are missing, failed or stale (NTF_USE), since these datagrams
 * never pass its neighbour code. Or the embedder gives the next hop
 * (hs_vxlan_set_nexthop). Until a VTEP's next hop is known, and whenever
 * it stops being (the route moves to another interface, the entry fails,
 * the interface goes), its datagrams take the kernel's way above, so
 * nothing waits on resolution; the frames of a flow may be reordered once,
 * as they change ways. Datagrams larger than the interface's MTU or the
 * route's take the kernel's way too, which fragments them (or, with
 * HS_VXLAN_DF, refuses them: too_big): nothing is fragmented here. Each
 * lookup tick (every 250 ms) looks up at most 256 VTEPs, in turn, so up
 * to about 1000 VTEPs in steady use stay fresh (beyond, some of their
 * datagrams take the kernel's way at times); one whose next hop is not
 * usable is looked up again every half second. The neighbour table's
 * notices are read each tick: a next hop deleted, failed or given another
 * MAC stops being used at once and is looked up in that tick, rather than
 * at the next second's look. One route per VTEP: an ECMP route's paths are not
 * spread over by flow. Counted: underlay_sent (handed to the interface's
 * socket; one it refuses is also a send error), underlay_kernel (sent the
 * kernel's way instead), nh_resolved, nh_changed (a next hop's MAC
 * changed), nh_errors (no route, or netlink failed), nh_other_if (the
 * route leaves by another interface), nh_noticed (entries a neighbour
 * notice took out of use until looked up again), nh_notices_lost (the
 * notice socket overflowed: every entry is looked up again). UDP-tunnel segmentation offload is
 * not available through packet sockets (Linux takes it only from taps
 * and virtio devices): frames a guest hands over as TSO are cut by the
 * switch before encapsulation. Needs CAP_NET_RAW. Received frames must carry the port's VNI (unknown_vni)
 * and flags of exactly I with the reserved bytes zero, as Linux and Open
 * vSwitch require (bad_header): others are dropped and counted. So are
 * datagrams whose outer source is no remote the API would take: this
 * VTEP's own address (frames to the MACs it would teach would come back
 * here; over IPv6 any underlay host can claim it), multicast, link-local
 * (src_local); datagrams larger than any frame the port takes
 * (rx_truncated, counted as oversize); and datagrams the kernel dropped
 * before the port read them (rx_overflow, within a second; the port's
 * rx_no_buffer by its next burst: a full receive buffer, of 4 MiB or
 * net.core.rmem_max if less, or a bad UDP checksum).
 *
 * Threads: the hs_vxlan_fdb_* calls from any thread.
 */
#ifndef HYPERSWITCH_VXLAN_H
#define HYPERSWITCH_VXLAN_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_VXLAN_BACKEND "vxlan"

/* hs_vxlan_config.flags */
#define HS_VXLAN_NO_LEARN 0x1    /* frames from the tunnel teach nothing */
#define HS_VXLAN_NO_UDP_CSUM 0x2 /* zero outer UDP checksum (IPv4 only) */
#define HS_VXLAN_DF 0x4          /* set DF on the outer IPv4 header; over
				    IPv6, do not fragment at the source */

struct hs_vxlan_config {
	const char *local;     /* the local VTEP address (IPv4 or IPv6
				  literal): the tunnel's source, bound */
	uint32_t vni;          /* 1..16777215 */
	uint16_t dst_port;     /* 0 -> 4789 */
	uint16_t src_min;      /* source port range; 0, 0 -> 32768..60999 */
	uint16_t src_max;
	uint16_t underlay_mtu; /* 0 -> 1500 */
	uint32_t ageing_s;     /* learned entries; 0 -> 300 */
	uint32_t max_entries;  /* table size; 0 -> 4096 */
	uint8_t ttl;           /* 0 -> 64 */
	uint8_t tos;           /* outer TOS/traffic class */
	uint32_t flags;        /* HS_VXLAN_* */
	/* since HS_VXLAN_CONFIG_SIZE_V2 */
	const char *underlay_if; /* NULL, or the Ethernet interface (in the
				    calling thread's network namespace) the
				    datagrams leave through, next hops
				    resolved here (see above) */
};
#define HS_VXLAN_CONFIG_SIZE_V1 (offsetof(struct hs_vxlan_config, flags) + sizeof(uint32_t))
#define HS_VXLAN_CONFIG_SIZE_V2 \
	(offsetof(struct hs_vxlan_config, underlay_if) + sizeof(const char *))

/* Tunnel table entry flags */
#define HS_VXLAN_FDB_STATIC 0x1 /* never aged, never moved by learning */
#define HS_VXLAN_FDB_EXTERN 0x2 /* learned by a control plane (EVPN):
				   never aged, never moved by learning */
#define HS_VXLAN_FDB_LEARNED 0x4 /* (dump only) learned from the tunnel */

struct hs_vxlan_fdb_entry {
	uint8_t mac[6];        /* all zeros: a flood-list entry */
	char remote[46];       /* the remote VTEP's address, as text */
	uint32_t flags;        /* HS_VXLAN_FDB_* */
	uint32_t age_s;        /* seconds since last seen (learned entries) */
};

/* Adds (or, for a unicast MAC, replaces) the entry mac -> remote. The
 * all-zeros MAC adds remote to the flood list (one entry per VTEP). A
 * learned entry for mac is replaced. remote must be a unicast address of
 * the local address's family, not the local one (nor IPv6 link-local or
 * v4-mapped). -EINVAL (bad MAC, address or flags), -ENOSPC (table full:
 * for flags 0, or no learned entry to replace), -ENODEV (not a vxlan
 * port, or one being deleted). */
HS_EXTERN int hs_vxlan_fdb_add(hs_port_t *port, const uint8_t mac[6], const char *remote,
			       uint32_t flags);
/* Deletes mac's entry (remote NULL: whatever VTEP; for the all-zeros MAC,
 * NULL empties the flood list). -ENOENT if none matched. */
HS_EXTERN int hs_vxlan_fdb_del(hs_port_t *port, const uint8_t mac[6], const char *remote);
/* Calls cb for every entry, from a copy taken a slice of the table at a
 * time (the data path is not held up by a large table's copy): an entry
 * present throughout is listed once, one added or deleted meanwhile at
 * most once. cb runs after the copy and may call hs_vxlan_* again. A
 * non-zero return from cb stops the walk and is returned; -ENOMEM. */
HS_EXTERN int hs_vxlan_fdb_dump(hs_port_t *port,
				int (*cb)(void *arg, const struct hs_vxlan_fdb_entry *e),
				void *arg);

/* Pins the next hop of the remote VTEP `remote` (an address of the local
 * one's family) to the MAC `mac`, for a port with an underlay_if: its
 * datagrams go there without asking the neighbour table. mac NULL: the
 * neighbour table says again. -EINVAL (bad address or MAC), -ENOSPC (as
 * many VTEPs as the table holds: max_entries + 256), -ENOENT (nothing
 * pinned to unpin), -EOPNOTSUPP (no underlay_if), -ENODEV (not a vxlan
 * port). Any thread. */
HS_EXTERN int hs_vxlan_set_nexthop(hs_port_t *port, const char *remote, const uint8_t mac[6]);

/* Follows the FDB of the Linux vxlan device `ifname` (in the calling
 * thread's network namespace) over rtnetlink, so that `bridge fdb`
 * commands and FRR's zebra (BGP EVPN) program this port as they program
 * the kernel's device. Its entries of this port's VNI go into the table:
 * NTF_EXT_LEARNED ones (zebra's remote MACs) as HS_VXLAN_FDB_EXTERN,
 * permanent or static ones (`bridge fdb add MAC dev DEV dst IP`) as
 * HS_VXLAN_FDB_STATIC, the all-zeros MAC to the flood list; the entries
 * the device learned from its own traffic are not taken, nor those of
 * another address family or UDP port (counted: follow_skipped). On
 * return the table holds the device's entries; later changes follow on
 * the switch's loop, and what the device deletes is deleted here (only
 * what the follower added). A lost notification (the socket overflowed)
 * makes it read the whole FDB again (follow_resyncs). The device may be
 * down: it then holds no UDP socket, and this port may own the VTEP's.
 * The device must carry this port's VNI, or be an external (collect
 * metadata) one whose entries name their VNI. If it is deleted, what the
 * follower added goes; a device made again under the same name (a
 * control plane restarting) is followed again if it still suits the port
 * (follow_relinks). Entries naming a nexthop group instead of a VTEP
 * (EVPN multihoming) are counted in follow_skipped and left out.
 * One device per port, for the port's life: -EBUSY for a second call.
 * -ENODEV (no such device, or not a vxlan port), -EINVAL (not a vxlan
 * device, or another VNI), or a netlink error. Any thread. */
HS_EXTERN int hs_vxlan_follow(hs_port_t *port, const char *ifname);

/* hs_vxlan_follow_opts.flags */
#define HS_VXLAN_FOLLOW_ANY_PORT 0x1 /* entries that name no UDP port of
	their own are this port's, whatever the device's port is: the device
	is the control plane's copy of the VTEP, kept up on another UDP port
	(zebra advertises a VNI only while its device is up, and an up device
	holds its port, which is this port's on the wire) */

struct hs_vxlan_follow_opts {
	const char *ifname;      /* the Linux vxlan device to follow */
	const char *export_port; /* NULL, or a port of the Linux bridge the
				    device is in, left to the switch (a veth
				    with `learning off`): the MACs the switch
				    has in this port's VLAN behind its other
				    ports are kept there as static bridge FDB
				    entries, so that the control plane (FRR's
				    zebra) takes them for local MACs and BGP
				    advertises them (EVPN type-2). Once a
				    second the bridge is read and brought to
				    the switch's table (at most 256 changes a
				    pass), so whatever else changed it is
				    repaired: static entries on the port that
				    the switch does not have are removed;
				    entries on other ports and the bridge's own
				    are never touched (export_conflicts); a
				    MAC the control plane moved to the vxlan
				    device (advertised from another VTEP) is
				    taken back, in one move, only once the
				    switch sees it here again (MAC mobility).
				    A bridge without VLAN filtering (one
				    bridge per VNI, zebra's classic model),
				    holding the followed device: otherwise
				    nothing is exported and the reason is
				    logged. Counted: export_added,
				    export_removed, export_errors,
				    export_conflicts, exported. */
	uint32_t flags;          /* HS_VXLAN_FOLLOW_* */
};
#define HS_VXLAN_FOLLOW_OPTS_SIZE_V1 \
	(offsetof(struct hs_vxlan_follow_opts, flags) + sizeof(uint32_t))

/* hs_vxlan_follow with options. The same errors, and -ENODEV for a
 * missing export_port. */
HS_EXTERN int hs_vxlan_follow_with(hs_port_t *port, const struct hs_vxlan_follow_opts *opts,
				   size_t size);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_VXLAN_H */
