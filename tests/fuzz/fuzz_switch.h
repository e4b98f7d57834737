/*
 * fuzz_switch.h - the harness of the frame-level fuzz targets (c) and (d):
 * a switch whose ingress ports (the test backend of tests/testbe.h, frames
 * cut into input-chosen segments, optionally in memory only its copy hook
 * reaches) send one input frame, with offload metadata from an input
 * virtio-net header, to receivers of every shape: no offloads and 2 KiB
 * buffers (software segmentation and checksums), scattered small
 * segments, full offloads, a copy hook with foreign buffers, tiny buffers
 * (oversize), access and trunk VLANs. What they receive is checked.
 *
 * Oracles, besides the sanitizers: a frame never exceeds its receiver's
 * buffers; a frame a receiver without checksum offload gets has every
 * checksum the switch was asked to finish right (the ones' complement sum
 * over the checksummed range plus the sender's seed is 0xffff); pieces of a frame the switch
 * segmented carry IP lengths and TCP/UDP checksums (pseudo-header
 * included) that are right.
 */
#ifndef HS_FUZZ_SWITCH_H
#define HS_FUZZ_SWITCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/vnet_hdr.h"
/* A GSO frame cut into 1024 pieces takes a reservation per piece: room
 * for the largest receiver's 1024 reservations in the arena's half. */
#define TBE_ARENA (256u << 20)
#include "testbe.h"

struct fz_rx {
	const char *name;
	struct tbe_config cfg;
	enum hs_vlan_mode mode;
	uint16_t vlan;
	hs_port_t *port;
};

static struct fz_rx fz_rx[] = {
	{"plain", {.caps = 0, .rx_seg = 2048}, HS_VLAN_ACCESS, 1, NULL},
	{"scatter", {.caps = HS_CAP_CSUM, .rx_seg = 256, .rx_nseg = 40},
	 HS_VLAN_TRUNK, 0, NULL},
	{"offload", {.caps = HS_CAP_ALL, .rx_seg = 65536 + 64}, HS_VLAN_ACCESS, 1, NULL},
	{"foreign", {.caps = HS_CAP_CSUM | HS_CAP_GSO_TCPV4, .rx_seg = 1024, .rx_nseg = 16,
		     .foreign_rx = true}, HS_VLAN_TRUNK, 0, NULL},
	{"foreign-plain", {.caps = 0, .rx_seg = 4096, .rx_nseg = 2, .foreign_rx = true},
	 HS_VLAN_ACCESS, 5, NULL},
	{"tiny", {.caps = 0, .rx_seg = 128}, HS_VLAN_ACCESS, 1, NULL},
};
#define FZ_NRX (sizeof(fz_rx) / sizeof(fz_rx[0]))

static hs_switch_t *fz_sw;
static hs_port_t *fz_in[2]; /* local and foreign sender, trunk, native VLAN 1 */

static void fz_quiet(void *opaque, enum hs_log_level lvl, const char *msg)
{
	(void)opaque;
	if (getenv("FUZZ_VERBOSE")) /* to see what an input does */
		fprintf(stderr, "[hs %d] %s\n", lvl, msg);
}

static hs_port_t *fz_port(const char *name, const struct tbe_config *cfg,
			  enum hs_vlan_mode mode, uint16_t vlan)
{
	int rc = hs_backend_register(&tbe_ops);
	if (rc && rc != -EEXIST)
		abort();
	struct tbe_config c = *cfg;
	struct hs_port_config pc = {.name = name, .backend = TBE_NAME, .backend_config = &c,
				    .backend_config_size = sizeof(c), .vlan_mode = mode,
				    .vlan = vlan, .mtu = 9000};
	hs_port_t *p = NULL;
	if (hs_port_add(fz_sw, &pc, &p))
		abort();
	return p;
}

static void fz_setup(void)
{
	struct hs_switch_config sc = {.log_fn = fz_quiet,
				      .log_level = getenv("FUZZ_VERBOSE") ? HS_LOG_DEBUG : HS_LOG_ERROR};
	if (hs_switch_create(&sc, &fz_sw))
		abort();
	struct tbe_config in = {.caps = HS_CAP_ALL};
	fz_in[0] = fz_port("in", &in, HS_VLAN_TRUNK, 1);
	in.foreign_tx = true;
	fz_in[1] = fz_port("in-foreign", &in, HS_VLAN_TRUNK, 1);
	/* Receivers always have buffers (what they used is posted again after
	 * every input): a backlog would carry one input's frames into the
	 * next one's checks. */
	for (unsigned i = 0; i < FZ_NRX; i++) {
		fz_rx[i].cfg.rx_posted = 1u << 20;
		fz_rx[i].port = fz_port(fz_rx[i].name, &fz_rx[i].cfg, fz_rx[i].mode, fz_rx[i].vlan);
	}
}

/* ---- checks ---------------------------------------------------------------- */

static uint32_t fz_sum(const uint8_t *p, size_t n, uint32_t s)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t fz_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static void fz_fail(const char *what, const char *rx, uint32_t len)
{
	fprintf(stderr, "fuzz_switch: %s (receiver %s, frame of %u bytes)\n", what, rx, len);
	abort();
}

/* L2 header length (Ethernet, an 802.1Q tag) and ethertype. */
static unsigned fz_l2(const uint8_t *f, uint32_t len, uint16_t *et)
{
	if (len < 14)
		return 0;
	unsigned o = 12;
	*et = (uint16_t)(f[o] << 8 | f[o + 1]);
	if (*et == 0x8100 && len >= 18) {
		o += 4;
		*et = (uint16_t)(f[o] << 8 | f[o + 1]);
	}
	return o + 2;
}

/* A piece the switch cut from a GSO frame, delivered without checksum
 * offload: IP lengths and the L4 checksum (with pseudo-header) must be
 * right. */
static void fz_check_piece(const uint8_t *f, uint32_t len, const char *rx)
{
	uint16_t et;
	unsigned l3 = fz_l2(f, len, &et), l4, proto;
	uint32_t s = 0;
	if (!l3)
		fz_fail("runt piece", rx, len);
	if (et == 0x0800) {
		unsigned ihl = (f[l3] & 15u) * 4;
		if (len < l3 + 20 || ihl < 20 || len < l3 + ihl)
			fz_fail("piece without an IPv4 header", rx, len);
		if ((uint32_t)(f[l3 + 2] << 8 | f[l3 + 3]) != len - l3)
			fz_fail("IPv4 total length of a piece", rx, len);
		if (fz_fold(fz_sum(f + l3, ihl, 0)) != 0xffff)
			fz_fail("IPv4 header checksum of a piece", rx, len);
		l4 = l3 + ihl;
		proto = f[l3 + 9];
		s = fz_sum(f + l3 + 12, 8, 0);
	} else if (et == 0x86dd) {
		if (len < l3 + 40)
			fz_fail("piece without an IPv6 header", rx, len);
		if ((uint32_t)(f[l3 + 4] << 8 | f[l3 + 5]) != len - l3 - 40)
			fz_fail("IPv6 payload length of a piece", rx, len);
		l4 = l3 + 40;
		proto = f[l3 + 6];
		s = fz_sum(f + l3 + 8, 32, 0);
	} else {
		fz_fail("piece that is not IP", rx, len);
		return;
	}
	unsigned th = proto == 6 ? (len >= l4 + 13 ? (f[l4 + 12] >> 4) * 4u : 0) : 8;
	if (len < l4 + th || th < 8)
		fz_fail("piece without its L4 header", rx, len);
	s += proto + (len - l4);
	if (fz_fold(fz_sum(f + l4, len - l4, s)) != 0xffff)
		fz_fail("L4 checksum of a piece", rx, len);
}

/* Sends one frame (vnet header already turned into offload metadata) and
 * checks what every receiver got. */
static void fz_switch_frame(const uint8_t *frame, uint32_t len, const struct hs_offload *off,
			    bool foreign, const uint32_t *split)
{
	hs_port_t *in = fz_in[foreign];
	tbe_queue(in, 0, frame, len, off, split);
	tbe_kick(in, 0);
	for (unsigned i = 0; i < FZ_NRX; i++) {
		struct tbe_rxf r;
		uint32_t cap = fz_rx[i].cfg.rx_seg * (fz_rx[i].cfg.rx_nseg ? fz_rx[i].cfg.rx_nseg : 1);
		bool csum_cap = fz_rx[i].cfg.caps & HS_CAP_CSUM;
		struct hs_port_stats rs;
		hs_port_get_stats(fz_rx[i].port, &rs);
		if (rs.tx_backlogged)
			fz_fail("a receiver with buffers got a backlog", fz_rx[i].name, len);
		uint32_t got = 0;
		while (tbe_pop(fz_rx[i].port, 0, &r)) {
			got++;
			if (r.len > cap)
				fz_fail("frame larger than the receiver's buffers", fz_rx[i].name, r.len);
			if (off->gso_type && !r.off.gso_type && !csum_cap)
				fz_check_piece(r.data, r.len, fz_rx[i].name);
			else if ((off->flags & HS_OFF_NEEDS_CSUM) && !off->gso_type && !csum_cap &&
				 !(off->csum_offset & 1) &&
				 off->csum_start + off->csum_offset + 2u <= len) {
				/* Delivered finished. The sender seeded the field with
				 * v (its pseudo-header sum); the switch summed the
				 * range, seed included, and stored the complement, so
				 * the range now sums to ~v. */
				int delta = (int)r.len - (int)len;
				uint32_t at = (uint32_t)((int)off->csum_start + delta);
				const uint8_t *fld = frame + off->csum_start + off->csum_offset;
				uint32_t v = (uint32_t)(fld[0] << 8 | fld[1]);
				if (at < r.len &&
				    fz_fold(fz_sum(r.data + at, r.len - at, v)) != 0xffff)
					fz_fail("checksum the switch finished", fz_rx[i].name, r.len);
			}
			free(r.data);
		}
		tbe_post(fz_rx[i].port, 0, got);
	}
	while (tbe_pending_tx(in, 0))
		tbe_kick(in, 0);
}

/* Input: [mode 1][vnet header 12][frame]. mode bit 0: the sender's
 * memory is foreign; bits 1-3: how the frame is cut into segments. */
static inline void fz_run(const uint8_t *data, size_t size, uint32_t sender_caps, bool one_piece)
{
	if (!fz_sw)
		fz_setup();
	if (size < 1 + HSB_VNET_HDR_LEN + 14 || size > 1 + HSB_VNET_HDR_LEN + 65535)
		return;
	uint8_t mode = data[0];
	struct hsb_vnet_hdr h;
	memcpy(&h, data + 1, sizeof(h));
	struct hs_offload off;
	if (!hsb_vnet_to_offload(&h, sender_caps, &off))
		return; /* the backend refuses it before the switch sees it */
	const uint8_t *frame = data + 1 + HSB_VNET_HDR_LEN;
	uint32_t len = (uint32_t)(size - 1 - HSB_VNET_HDR_LEN);
	static const uint32_t splits[8][6] = {
		{0}, {14, 0}, {1, 1, 1, 0}, {60, 1000, 0}, {7, 13, 54, 0}, {100, 0},
		{4000, 0}, {3, 64, 3, 64, 3, 0}};
	if (one_piece) /* as a tap reads it: one local buffer */
		mode = 0;
	fz_switch_frame(frame, len, &off, mode & 1, splits[(mode >> 1) & 7]);
}

#endif /* HS_FUZZ_SWITCH_H */
