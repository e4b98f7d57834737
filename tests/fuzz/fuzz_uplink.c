/*
 * fuzz_uplink.c - libFuzzer target (i): a frame as the uplink's AF_XDP
 * path gets it from the wire, without metadata: ul_partial_csum decides
 * whether its checksum is one a local sender left to offloading, then the
 * frame is switched with that metadata to the receivers of fuzz_switch.h,
 * whose oracles check what they got (a finished checksum sums right).
 * Its own oracles: a frame it marks has its checksum field inside the
 * frame, holding the pseudo-header's sum, and does not verify as it is.
 * Input: [mode 1][frame].
 */
#include "fuzz_switch.h"
#include "backends/uplink_xdp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fz_sw)
		fz_setup();
	if (size < 1 + 14 || size > 1 + 9216)
		return 0;
	const uint8_t *frame = data + 1;
	uint32_t len = (uint32_t)(size - 1);
	/* the copy the kernel would have made: exactly len bytes */
	uint8_t *f = malloc(len);
	if (!f)
		return 0;
	memcpy(f, frame, len);
	struct hs_offload off = {0};
	if (ul_partial_csum(f, len, &off)) {
		uint32_t at = off.csum_start + off.csum_offset;
		if (off.flags != HS_OFF_NEEDS_CSUM || at + 2 > len || off.csum_start < 14)
			fz_fail("a checksum marked outside the frame", "ul_partial_csum", len);
		uint32_t v = (uint32_t)(f[at] << 8 | f[at + 1]);
		if (!v)
			fz_fail("a zero field marked as partial", "ul_partial_csum", len);
	}
	static const uint32_t split[1] = {0};
	fz_switch_frame(f, len, &off, data[0] & 1, split);
	free(f);
	return 0;
}
