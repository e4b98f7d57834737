/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * uplink_xdp.bpf.c - the uplink port's XDP program (built with clang for
 * the BPF target and embedded in the library; see uplink_xdp.c).
 *
 * It takes from the interface only what the switch would have taken
 * anyway, and only where AF_XDP can carry it whole: a unicast frame to a
 * MAC address the switch has learned (or been told) behind one of its
 * other ports, no larger than an AF_XDP frame or the interface's MTU, goes to the uplink's
 * AF_XDP socket for the receive queue it came in on. Everything else
 * (the host's own traffic, broadcast and multicast, unknown unicast,
 * frames too large, queues without a socket) passes to the host's stack,
 * where the uplink's AF_PACKET sockets still see what the switch needs.
 * So the XDP path is a fast path, never the only path: the map being
 * behind the switch's table, or a queue without a socket, costs speed,
 * not frames.
 *
 * The GPL licence is the kernel's condition for the helpers used; the
 * program is the project's own (BSD-2-Clause as the rest).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "uplink_xdp_abi.h"

#ifdef HS_XDP_VLAN_HINT
/* The driver's receive metadata (kernel 6.8+; a program bound to the
 * device, native XDP only): a VLAN tag the NIC (or a veth peer's VLAN
 * device) kept out of the frame, which XDP would otherwise take for an
 * untagged frame. -ENODATA: no such tag. */
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto,
					__u16 *vlan_tci) __ksym;
#define HS_ENODATA 61
#define HS_EOPNOTSUPP 95
#endif

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, HS_XDP_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} hs_xsks SEC(".maps");

/* key: the MAC in the first 6 bytes, zero after; value unused (the loader
 * sets max_entries) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
} hs_macs SEC(".maps");

/* [0]: the largest untagged frame to take, the interface's MTU + 14 (set
 * by the loader, and again when the MTU changes; 0 takes nothing). A
 * larger frame is a GRO or GSO aggregate whose segment size only the
 * stack knows (AF_PACKET carries it), or a jumbo frame.
 * [1]: 1 if the interface keeps no VLAN tag outside the frame (its
 * rx-vlan-offload is off), so a driver that cannot tell (the VLAN hint's
 * -EOPNOTSUPP) still has its untagged frames taken. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} hs_cfg SEC(".maps");

/* [0]: frames passed because the driver could not say whether a tag was
 * kept outside them (per CPU; summed by the loader) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hs_stats SEC(".maps");

/* xdp.frags: the program copes with multi-buffer frames (it passes them),
 * so drivers need not cap the MTU while it is attached, nor (veth) turn
 * off the peer's GSO. */
SEC("xdp.frags")
int hs_uplink_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || end - data > HS_XDP_FRAME_MAX)
		return XDP_PASS;
	if (bpf_xdp_get_buff_len(ctx) != (__u64)(end - data))
		return XDP_PASS; /* more than one buffer: the stack's */
	if (eth->h_dest[0] & 1)
		return XDP_PASS; /* broadcast, multicast: the host's too */
	__u32 zero = 0, one = 1;
	__u32 *max = bpf_map_lookup_elem(&hs_cfg, &zero);
	__u32 *no_rxvlan = bpf_map_lookup_elem(&hs_cfg, &one);
	if (!max || !no_rxvlan)
		return XDP_PASS;
	__u32 lim = *max;
	if (eth->h_proto == __builtin_bswap16(ETH_P_8021Q) ||
	    eth->h_proto == __builtin_bswap16(ETH_P_8021AD))
		lim += 4;
	if (end - data > lim)
		return XDP_PASS;
	__u64 key = 0;
	__builtin_memcpy(&key, eth->h_dest, ETH_ALEN);
	if (!bpf_map_lookup_elem(&hs_macs, &key))
		return XDP_PASS;
#ifdef HS_XDP_VLAN_HINT
	/* a tag outside the frame: the AF_PACKET path, which puts tags back;
	 * a driver that cannot tell: only if the interface strips none */
	__be16 vproto;
	__u16 vtci;
	int r = bpf_xdp_metadata_rx_vlan_tag(ctx, &vproto, &vtci);
	if (r != -HS_ENODATA && !(r == -HS_EOPNOTSUPP && *no_rxvlan)) {
		if (r == -HS_EOPNOTSUPP) {
			__u64 *n = bpf_map_lookup_elem(&hs_stats, &zero);
			if (n)
				(*n)++;
		}
		return XDP_PASS;
	}
#endif
	/* no socket on this queue: XDP_PASS */
	return bpf_redirect_map(&hs_xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
