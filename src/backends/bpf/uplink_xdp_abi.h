/* SPDX-License-Identifier: BSD-2-Clause */
/* uplink_xdp_abi.h - what the uplink's XDP program and its loader share. */
#ifndef HS_UPLINK_XDP_ABI_H
#define HS_UPLINK_XDP_ABI_H

/* queues (the interface's receive queues with an AF_XDP socket) */
#define HS_XDP_MAX_QUEUES 64
/* one AF_XDP frame (UMEM chunk) */
#define HS_XDP_CHUNK 2048
/* the kernel keeps XDP_PACKET_HEADROOM (256) in front of the data: a
 * larger frame would not fit and stays on the AF_PACKET path */
#define HS_XDP_FRAME_MAX (HS_XDP_CHUNK - 256)

#endif
