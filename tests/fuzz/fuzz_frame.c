/*
 * fuzz_frame.c - libFuzzer target (c): one frame and the virtio-net header
 * a guest put in front of it (every transmit offload negotiated) into
 * classification, the offload checks, VLAN changes, software
 * segmentation and checksums, and the copy into bounded buffers of
 * receivers of every shape, local and behind a copy hook. The harness and
 * its oracles: fuzz_switch.h. Input: [mode 1][virtio-net header 12][frame].
 */
#include "fuzz_switch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_run(data, size, HS_CAP_CSUM | HS_CAP_GSO_TCPV4 | HS_CAP_GSO_TCPV6 | HS_CAP_GSO_ECN |
				   HS_CAP_GSO_UDP_L4,
	       false);
	return 0;
}
