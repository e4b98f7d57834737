/*
 * hyperswitch/uplink.h - the "uplink" backend: a network interface of the
 * host (a NIC, a veth, a bond) as a port, so that the switch's VMs reach
 * the physical network, as an interface enslaved to a Linux bridge does,
 * while the host's own stack keeps using the same interface.
 *
 * Mode: AF_PACKET (HS_UPLINK_PACKET), with TPACKET_V3 rings in memory
 * shared with the kernel, mapped once:
 *  - receive: frames arrive packed in blocks of the receive ring; the
 *    switch copies them from there into their destinations (the one copy
 *    of the design; no system call per frame or per burst). A block goes
 *    back to the kernel once every frame in it has been switched. The
 *    kernel hands a block over when it is full or when block_tov_ms has
 *    passed since its first frame: at low rates that is the latency the
 *    ring adds (1 ms by default), the price of its batching.
 *  - send: the switch copies each frame straight into a slot of the send
 *    ring (preemptive copying); one send() per burst tells the kernel,
 *    which sends every published slot; large frames leave the ring's pages
 *    without another copy.
 *  - PACKET_VNET_HDR: checksum-offloaded and TSO/USO frames cross both ways
 *    with their metadata (a guest's 64 KiB TCP frame leaves as one frame;
 *    the NIC or the kernel segments it), unless HS_UPLINK_NO_OFFLOAD.
 *  - VLAN tags the NIC took off on receive are put back, so the switch
 *    sees the frame as it was on the wire.
 *
 * Mode: AF_XDP (HS_UPLINK_XDP), on top of the above, in builds with
 * libxdp/libbpf (HS_HAVE_XDP; hs_uplink_xdp_built()): a small XDP program
 * of the library's own is attached to the interface. It takes unicast
 * frames addressed to a MAC the switch has learned (or was given) behind
 * one of its other ports, up to 1792 bytes, straight to an AF_XDP socket
 * of the uplink's, before the host's stack sees them: no skb (on a NIC's
 * native XDP), no packet socket, no block timeout. Everything else (the
 * host's traffic, broadcast, multicast, unknown unicast, frames larger
 * than the interface's MTU, tagged or not, or than an AF_XDP frame) goes
 * on to the host's stack and reaches the switch over AF_PACKET as above,
 * so the XDP path changes how fast, never what the switch gets.
 *  - The MACs: the port copies the switch's table into the program's map
 *    every 100 ms (xdp_macs entries at most; more go the AF_PACKET way
 *    and count xdp_map_full). The interface's own unicast MACs are never
 *    taken, whatever a VM claims: its address and the secondary ones of
 *    its unicast list (macvlan children, VRRP), read each time; if they
 *    cannot be read, the map is not changed (xdp_host_mac_errors).
 *  - Sockets: one per queue, bound to the interface's receive queue of
 *    the same number, each with its own UMEM of xdp_frames frames of
 *    2 KiB; queues beyond the interface's receive queues, and receive
 *    queues beyond the uplink's, have none (their frames go the AF_PACKET
 *    way): give the uplink as many queues as the NIC has receive queues.
 *  - Attaching: native XDP (hs_uplink_mode() "xdp-native"); with
 *    HS_UPLINK_XDP_ZEROCOPY, zero-copy first ("xdp-zerocopy": the NIC
 *    then puts every frame of the queue, the host's too, in the switch's
 *    UMEM, so the host's traffic depends on the switch returning frames);
 *    with HS_UPLINK_XDP_GENERIC, generic XDP instead ("xdp-generic").
 *    The program is a bpf_link's: nothing else can replace it, an
 *    interface with another XDP program is left alone, and it goes with
 *    the port, or when the interface is deleted or leaves the namespace.
 *    It declares multi-buffer support (and passes such frames), so the
 *    interface's MTU may still be raised while it is attached.
 *  - VLANs: a tag the NIC (rx-vlan-offload) or a veth peer's VLAN device
 *    keeps outside the frame is invisible to plain XDP, which would take
 *    the frame for an untagged one. Native XDP asks the driver (the VLAN
 *    hint, Linux 6.8+) and leaves tagged frames to AF_PACKET, which puts
 *    the tag back; a driver without the hint gets its frames taken only
 *    while its rx-vlan-offload is off (else they pass: counted in
 *    xdp_no_hint_passed). Kernels without the hint get no native XDP.
 *    Generic XDP cannot ask: only where the interface carries no VLANs.
 *  - Sending stays on the AF_PACKET ring (offload metadata; one path
 *    keeps a flow's frames in order). A flow whose MAC enters the map
 *    may see its frames reordered once, at that moment (the ring is read
 *    first, but a block it has not handed over yet waits).
 *  - Frames the XDP path takes are not seen by packet captures (tcpdump)
 *    on the interface. AF_XDP has no checksum metadata: a TCP or UDP
 *    frame (IPv4, or IPv6 without extension headers, behind at most one
 *    tag) whose checksum field holds just the pseudo-header's sum (what
 *    a local sender leaving checksums to offloading writes, e.g. a veth
 *    peer's stack) and does not verify is marked as needing its checksum,
 *    as AF_PACKET's header would have said (xdp_rx_csum_partial); other
 *    offloaded checksums from a local sender (SCTP, IPv6 extension
 *    headers, tunnels) are not recognised: use AF_PACKET for such peers.
 *  - If XDP cannot attach (not built, an XDP program there already, the
 *    driver refuses, no VLAN hint), the port runs on AF_PACKET alone and
 *    logs why; hs_uplink_mode() says which mode it got.
 * HS_UPLINK_AUTO is AF_PACKET: on the interfaces measured here (veth,
 * docs/benchmarks.md) it takes small frames faster than AF_XDP (veth's
 * XDP starts from an skb it must copy, and its NAPI costs more per
 * frame), and bulk TCP much faster (AF_PACKET gets GRO's aggregates;
 * XDP runs before GRO, and a veth with an XDP program turns its peer's
 * TSO off). Native XDP on a NIC driver, which this machine cannot
 * measure, is where HS_UPLINK_XDP is meant to pay.
 *
 * The host's own traffic on the interface is left alone: a socket filter
 * keeps out what the host sends through it and what is addressed to the
 * host (the kernel's PACKET_HOST: its own MAC address, whatever it is now),
 * so the host's unicast never floods to VMs. Broadcast and
 * multicast reach both the host and the switch, as on a bridge. The
 * switch's frames go to the wire, not up the host's stack: to reach the
 * host itself, give it a tap port. The interface is put in promiscuous
 * mode while the port lives (so a NIC passes frames for the VMs' MACs),
 * unless HS_UPLINK_NO_PROMISC.
 *
 * Several queues are several sockets in one PACKET_FANOUT group (hashed by
 * flow), each with its own rings, so polling workers split the receive
 * work. Needs CAP_NET_RAW.
 *
 * The port's link follows the interface (rtnetlink, on the switch's
 * loop): up while it is up with a carrier, down otherwise (the switch then
 * drops and counts frames for it: port_down); the interface going away
 * (deleted, moved to another namespace) takes the link down for good.
 * Other ports keep running.
 *
 * Nothing is lost silently: frames larger than a receive block (truncated
 * by the kernel: rx_truncated, dropped as oversize), frames the kernel
 * dropped because the receive ring was full (rx_kernel_drops, from
 * PACKET_STATISTICS) are counted (hs_port_backend_counters), besides the
 * port's own counters. A send the kernel stops early (its qdisc or send
 * buffer full) leaves the rest published; a timer retries it, waiting
 * longer while nothing moves (tx_retries, which also counts the checks
 * for room while the switch's backlog waits); sends it refuses for other
 * reasons (the interface down or gone) are tx_kick_errors, and stop the
 * retries. Frames the kernel had not sent when the interface went down
 * are dropped when it is up again, not sent late (tx_stale; they were
 * counted as transmitted), as is the switch's backlog for the port. A frame the switch sends that the kernel
 * finds malformed is skipped by it (PACKET_LOSS) and not counted: the
 * switch only sends offload metadata it checked.
 */
#ifndef HYPERSWITCH_UPLINK_H
#define HYPERSWITCH_UPLINK_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_UPLINK_BACKEND "uplink"

enum hs_uplink_mode {
	HS_UPLINK_AUTO = 0,   /* the mode measured best: AF_PACKET today */
	HS_UPLINK_PACKET = 1, /* AF_PACKET, TPACKET_V3 rings */
	HS_UPLINK_XDP = 2,    /* AF_XDP for the switch's unicast, AF_PACKET
				 for the rest; AF_PACKET alone (logged) if
				 XDP cannot attach */
};

/* hs_uplink_config.flags */
#define HS_UPLINK_NO_PROMISC 0x1  /* leave the interface's promiscuity */
#define HS_UPLINK_NO_OFFLOAD 0x2  /* hand the kernel plain frames only: the
				     switch checksums and segments first */
#define HS_UPLINK_QDISC_BYPASS 0x4 /* send past the interface's qdisc
				      (PACKET_QDISC_BYPASS): faster, but no
				      traffic shaping and no queue to absorb
				      bursts */
#define HS_UPLINK_XDP_GENERIC 0x8 /* generic XDP (not the driver's): it cannot
				     see VLAN tags kept outside frames, so
				     only where the interface has no VLANs */
#define HS_UPLINK_XDP_ZEROCOPY 0x10 /* native XDP: try zero-copy first (the
				       NIC then puts the queue's every frame,
				       the host's too, in the switch's UMEM) */

/* Backend config for hs_port_config.backend_config ("uplink"). */
struct hs_uplink_config {
	const char *ifname;    /* the interface (must exist), in the calling
				  thread's network namespace */
	uint32_t mode;         /* enum hs_uplink_mode */
	uint32_t flags;        /* HS_UPLINK_* */
	uint16_t queues;       /* sockets in a fanout group; 0 -> 1; <= 16 */
	uint16_t rx_blocks;    /* receive blocks per queue; 0 -> 16; 2..256 (kernel
				  memory, allocated up front) */
	uint32_t rx_block_kib; /* receive block size in KiB; 0 -> 256;
				  128..4096 (a block holds at least one
				  64 KiB frame) */
	uint16_t tx_slots;     /* send ring slots per queue; 0 -> 60;
				  15..1020, rounded up to a multiple of 15
				  (15 slots of 64 KiB share a 1 MiB block;
				  the kernel allocates the ring up front) */
	uint16_t block_tov_ms; /* hand over a receive block this long after
				  its first frame; 0 -> 1 */
	/* since HS_UPLINK_CONFIG_SIZE_V2 (read only from a config at least
	 * that long: a V1 caller's sizeof, 32, covers xdp_frames's place
	 * with its unset tail padding) */
	uint32_t xdp_frames;   /* AF_XDP frames (2 KiB) per queue; 0 -> 2048;
				  64..32768, a power of two */
	uint32_t xdp_macs;     /* MACs the XDP program takes; 0 -> 8192;
				  1..1048576 */
};
#define HS_UPLINK_CONFIG_SIZE_V1 \
	(offsetof(struct hs_uplink_config, block_tov_ms) + sizeof(uint16_t))
#define HS_UPLINK_CONFIG_SIZE_V2 \
	(offsetof(struct hs_uplink_config, xdp_macs) + sizeof(uint32_t))

/* "packet", "xdp-zerocopy", "xdp-native" or "xdp-generic": the mode the
 * port got. NULL if port is not an uplink. Any thread. */
HS_EXTERN const char *hs_uplink_mode(hs_port_t *port);

/* Whether this build has the AF_XDP mode. */
HS_EXTERN bool hs_uplink_xdp_built(void);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_UPLINK_H */
