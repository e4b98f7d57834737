/*
 * uplink_csum.c - checksum state for frames that arrive without metadata
 * (the uplink's AF_XDP path; see uplink_xdp.h). Pure: fuzzed by
 * tests/fuzz/fuzz_uplink.c.
 */
#include <string.h>

#include "uplink_xdp.h"

/* Ones'-complement sum of p[0..n) as big-endian 16-bit words, added to s. */
static uint32_t sum16(uint32_t s, const uint8_t *p, uint32_t n)
{
	for (; n >= 2; p += 2, n -= 2)
		s += (uint32_t)p[0] << 8 | p[1];
	if (n)
		s += (uint32_t)p[0] << 8;
	return s;
}

static uint16_t fold16(uint32_t s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* AF_XDP carries no checksum metadata. A sender that leaves its
 * checksums to offloading (a veth peer's stack: CHECKSUM_PARTIAL) puts
 * only the pseudo-header's sum in a TCP or UDP checksum field; AF_PACKET
 * would have said so in the virtio-net header. Such a frame is marked
 * HS_OFF_NEEDS_CSUM here, as on the AF_PACKET path, so that its receivers
 * finish it. A field that holds a complete checksum stays as it is, even
 * one equal to that sum (checked over the whole segment, which only such
 * frames cost); a NIC's frames are complete. IPv4 (not fragments) and
 * IPv6 without extension headers, behind at most one VLAN tag. */
bool ul_partial_csum(const uint8_t *f, uint32_t len, struct hs_offload *off)
{
	uint32_t l3 = HS_ETH_HLEN, l4, plen, ps;
	uint16_t et = (uint16_t)(f[12] << 8 | f[13]);
	uint8_t proto;
	if ((et == 0x8100 || et == 0x88a8) && len >= 18) {
		et = (uint16_t)(f[16] << 8 | f[17]);
		l3 = 18;
	}
	const uint8_t *ip = f + l3;
	if (et == 0x0800 && len >= l3 + 20) {
		uint32_t ihl = (ip[0] & 15u) * 4, tot = (uint32_t)ip[2] << 8 | ip[3];
		if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || l3 + tot > len ||
		    (ip[6] & 0x3f) || ip[7])
			return false;
		proto = ip[9];
		l4 = l3 + ihl;
		plen = tot - ihl;
		ps = sum16(0, ip + 12, 8);
	} else if (et == 0x86dd && len >= l3 + 40) {
		plen = (uint32_t)ip[4] << 8 | ip[5];
		proto = ip[6];
		l4 = l3 + 40;
		if ((ip[0] >> 4) != 6 || l4 + plen > len)
			return false;
		ps = sum16(0, ip + 8, 32);
	} else {
		return false;
	}
	uint32_t co;
	if (proto == 6 && plen >= 20)
		co = 16;
	else if (proto == 17 && plen >= 8)
		co = 6;
	else
		return false;
	ps += proto + plen;
	uint16_t field = (uint16_t)(f[l4 + co] << 8 | f[l4 + co + 1]);
	if (field != fold16(ps) || fold16(sum16(ps, f + l4, plen)) == 0xffff)
		return false;
	off->flags = HS_OFF_NEEDS_CSUM;
	off->csum_start = (uint16_t)l4;
	off->csum_offset = (uint16_t)co;
	return true;
}
