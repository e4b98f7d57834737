/*
 * test_copy.c - the copy engine (src/core/copy.c, deliver.c): one copy
 * from any source segment layout into any destination segment layout,
 * foreign memory through the batched copy hook, VLAN changes inside the
 * copy, software checksums and GSO segmentation checked against an
 * independent reference, offload pass-through, bad metadata, and GSO
 * pieces through the backlog. And metadata a sender may choose (a cold
 * review's cases): a GSO flag on a frame that is not, a piece longer than
 * an IP datagram or than the sender's MTU, a frame cut in part before its
 * receiver took GSO, a failed sender copy where a tag goes in.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/copy.h"
#include "helpers.h"
#include "testbe.h"

/* ---- reference checksum (big-endian words, textbook) --------------------------- */

static uint32_t ref_add(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t ref_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* True if the L4 checksum of an IPv4/IPv6 TCP/UDP packet at l3 verifies. */
static bool l4_ok(const uint8_t *f, uint32_t len, uint32_t l3)
{
	uint32_t sum = 0, l4, l4len;
	uint8_t proto;
	if ((f[l3] >> 4) == 4) {
		uint32_t ihl = (f[l3] & 15) * 4u;
		if (ref_fold(ref_add(0, f + l3, ihl)) != 0xffff)
			return false; /* IPv4 header checksum */
		proto = f[l3 + 9];
		l4 = l3 + ihl;
		l4len = (uint32_t)((f[l3 + 2] << 8) | f[l3 + 3]) - ihl;
		sum = ref_add(sum, f + l3 + 12, 8);
	} else {
		proto = f[l3 + 6];
		l4 = l3 + 40;
		l4len = (uint32_t)((f[l3 + 4] << 8) | f[l3 + 5]);
		sum = ref_add(sum, f + l3 + 8, 32);
	}
	if (l4 + l4len != len)
		return false;
	sum += proto + l4len;
	sum = ref_add(sum, f + l4, l4len);
	return ref_fold(sum) == 0xffff;
}

/* ---- frame builders -------------------------------------------------------------- */

enum { V4, V6 };

/* Builds Ethernet (+tag) / IP / TCP or UDP with `pay` payload bytes; the
 * L4 checksum field holds the pseudo-header seed (checksum offload
 * convention) and the offload metadata is filled for NEEDS_CSUM. */
static uint32_t build_l4(uint8_t *f, int ipv, uint8_t proto, uint32_t pay,
			 int vlan, struct hs_offload *off)
{
	uint8_t src[6], dst[6];
	th_mac(src, 1);
	th_mac(dst, 2);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	uint32_t o = 12;
	if (vlan >= 0) {
		f[o++] = 0x81;
		f[o++] = 0;
		f[o++] = (uint8_t)(vlan >> 8);
		f[o++] = (uint8_t)vlan;
	}
	uint32_t l3 = o + 2;
	uint32_t l4hl = proto == IPPROTO_TCP ? 32 : 8; /* TCP with 12 option bytes */
	uint32_t l3hl = ipv == V4 ? 20 : 40;
	uint32_t l4 = l3 + l3hl, len = l4 + l4hl + pay;
	f[o++] = ipv == V4 ? 0x08 : 0x86;
	f[o++] = ipv == V4 ? 0x00 : 0xdd;
	memset(f + l3, 0, l3hl + l4hl);
	uint32_t sum = 0;
	if (ipv == V4) {
		f[l3] = 0x45;
		uint16_t tot = (uint16_t)(len - l3);
		f[l3 + 2] = (uint8_t)(tot >> 8);
		f[l3 + 3] = (uint8_t)tot;
		f[l3 + 4] = 0x12;
		f[l3 + 5] = 0x34;
		f[l3 + 6] = 0x40; /* DF */
		f[l3 + 8] = 64;
		f[l3 + 9] = proto;
		uint8_t a[8] = {10, 0, 0, 1, 10, 0, 0, 2};
		memcpy(f + l3 + 12, a, 8);
		uint16_t c = (uint16_t)~ref_fold(ref_add(0, f + l3, 20));
		f[l3 + 10] = (uint8_t)(c >> 8);
		f[l3 + 11] = (uint8_t)c;
		sum = ref_add(0, f + l3 + 12, 8);
	} else {
		f[l3] = 0x60;
		uint16_t pl = (uint16_t)(len - l4);
		f[l3 + 4] = (uint8_t)(pl >> 8);
		f[l3 + 5] = (uint8_t)pl;
		f[l3 + 6] = proto;
		f[l3 + 7] = 64;
		for (int i = 0; i < 16; i++) {
			f[l3 + 8 + i] = (uint8_t)(0x20 + i);
			f[l3 + 24 + i] = (uint8_t)(0x40 + i);
		}
		sum = ref_add(0, f + l3 + 8, 32);
	}
	uint32_t l4len = len - l4;
	sum += proto + l4len;
	uint16_t seed = ref_fold(sum);
	uint32_t cfield;
	if (proto == IPPROTO_TCP) {
		f[l4 + 0] = 0x30, f[l4 + 1] = 0x39; /* ports */
		f[l4 + 2] = 0x00, f[l4 + 3] = 0x50;
		f[l4 + 4] = 0x11, f[l4 + 5] = 0x22, f[l4 + 6] = 0x33, f[l4 + 7] = 0x44;
		f[l4 + 12] = 0x80;          /* doff 8 words */
		f[l4 + 13] = 0x18 | 0x01 | 0x80; /* PSH ACK FIN CWR */
		f[l4 + 20] = 1, f[l4 + 21] = 1, f[l4 + 22] = 8, f[l4 + 23] = 10;
		cfield = 16;
	} else {
		f[l4 + 0] = 0x30, f[l4 + 1] = 0x39;
		f[l4 + 2] = 0x00, f[l4 + 3] = 0x35;
		f[l4 + 4] = (uint8_t)(l4len >> 8), f[l4 + 5] = (uint8_t)l4len;
		cfield = 6;
	}
	f[l4 + cfield] = (uint8_t)(seed >> 8);
	f[l4 + cfield + 1] = (uint8_t)seed;
	for (uint32_t i = 0; i < pay; i++)
		f[l4 + l4hl + i] = (uint8_t)(i * 13 + (i >> 8));
	if (off)
		*off = (struct hs_offload){.flags = HS_OFF_NEEDS_CSUM,
					   .csum_start = (uint16_t)l4,
					   .csum_offset = (uint16_t)cfield,
					   .hdr_len = (uint16_t)(l4 + l4hl)};
	return len;
}

/* ---- checksum primitives ----------------------------------------------------------- */

START_TEST(partial_checksum_matches_the_reference)
{
	uint8_t buf[600];
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	for (unsigned start = 0; start < 8; start++)
		for (unsigned n = 0; n < 520; n++) {
			uint16_t mine = (uint16_t)~hs__csum_fold(
				hs__csum_partial(buf + start, n, 0));
			ck_assert_uint_eq(ntohs(mine) == 0 ? 0xffff : ntohs(mine),
					  ref_fold(ref_add(0, buf + start, n)) == 0
						  ? 0xffff
						  : ref_fold(ref_add(0, buf + start, n)));
		}
	/* Blocks summed separately at any offsets add up to the whole. */
	for (unsigned cut = 0; cut < 300; cut++) {
		uint32_t a = hs__csum_partial(buf, cut, 0);
		uint32_t b = hs__csum_partial(buf + cut, 300 - cut, 0);
		ck_assert_uint_eq(hs__csum_fold(hs__csum_block_add(a, b, cut)),
				  hs__csum_fold(hs__csum_partial(buf, 300, 0)));
	}
}
END_TEST

/* ---- single copy, every layout ------------------------------------------------------------ */

static void check_layouts(bool foreign_tx, bool foreign_rx, bool defer)
{
	static const uint32_t seg_sizes[] = {1, 7, 64, 333, 2048};
	static const uint32_t lens[] = {14, 60, 61, 127, 128, 129, 1514, 4000};
	static const uint32_t splits[][4] = {{0}, {1, 0}, {6, 6, 1, 0}, {13, 3, 0},
					     {100, 0}, {64, 64, 0}, {3, 200, 7, 0}};
	static uint8_t fr[4096];
	for (unsigned sz = 0; sz < 5; sz++) {
		hs_switch_t *sw = th_switch(NULL);
		struct tbe_config ta = {.foreign_tx = foreign_tx};
		struct tbe_config tb = {.rx_seg = seg_sizes[sz],
					.rx_nseg = (4096 + seg_sizes[sz] - 1) / seg_sizes[sz],
					.foreign_rx = foreign_rx, .rx_posted = 100000,
					.defer_stable = defer};
		if (tb.rx_nseg > TBE_SEGS) {
			tb.rx_nseg = TBE_SEGS;
		}
		hs_port_t *a = tbe_port(sw, "a", &ta, 0), *b = tbe_port(sw, "b", &tb, 0);
		uint8_t src[6];
		th_mac(src, 1);
		uint32_t cap = tb.rx_seg * tb.rx_nseg;
		for (unsigned li = 0; li < 8; li++)
			for (unsigned si = 0; si < 7; si++) {
				uint32_t len = lens[li];
				if (len > 1514)
					continue; /* beyond the default MTU */
				th_frame(fr, th_bcast, src, -1, len, li * 10 + si);
				tbe_queue(a, 0, fr, len, NULL, splits[si]);
				ck_assert_int_ge(tbe_kick(a, 0), 0);
				struct tbe_rxf r;
				if (len > cap) {
					ck_assert(!tbe_pop(b, 0, &r));
					continue;
				}
				ck_assert_msg(tbe_pop(b, 0, &r), "len %u split %u seg %u",
					      len, si, seg_sizes[sz]);
				ck_assert_uint_eq(r.len, len);
				ck_assert_int_eq(memcmp(r.data, fr, len), 0);
				free(r.data);
			}
		struct tbe *tbb = tbe_of(b), *tba = tbe_of(a);
		if (foreign_rx) {
			ck_assert_uint_gt(atomic_load(&tbb->hook_calls), 0);
			/* Frames of one segment come from the sender's own memory. */
			ck_assert_uint_gt(atomic_load(&tbb->hook_stable_ops), 0);
		}
		if (foreign_tx && !foreign_rx && cap > HS_PKT_HDR_MIN)
			ck_assert_uint_gt(atomic_load(&tba->hook_calls), 0);
		if (!foreign_tx && !foreign_rx)
			ck_assert_uint_eq(atomic_load(&tba->hook_calls) +
						  atomic_load(&tbb->hook_calls), 0);
		hs_switch_destroy(sw);
	}
}

START_TEST(one_copy_for_every_segment_layout)
{
	check_layouts(false, false, false);
}
END_TEST

START_TEST(foreign_source_memory_goes_through_the_hook)
{
	check_layouts(true, false, false);
}
END_TEST

START_TEST(foreign_destination_memory_goes_through_the_hook)
{
	check_layouts(false, true, false);
	check_layouts(true, true, false);
}
END_TEST

/* A destination hook that defers the copies whose source the switch marks
 * stable (HS_COPY_SRC_STABLE) until send_commit, as the tap backend does
 * with writev: the frames must still arrive intact, whatever layout, VLAN
 * change or software segmentation produced the copies. */
START_TEST(hooks_may_defer_copies_from_stable_sources)
{
	check_layouts(false, true, true);
	check_layouts(true, true, true);
}
END_TEST

START_TEST(hook_copies_are_batched_per_destination)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tb = {.foreign_rx = true};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0), *b = tbe_port(sw, "b", &tb, 0);
	uint8_t fr[256], src[6];
	th_mac(src, 1);
	for (uint32_t i = 0; i < 32; i++) {
		th_frame(fr, th_bcast, src, -1, 200, i);
		tbe_queue(a, 0, fr, 200, NULL, NULL);
	}
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 32);
	/* 32 frames in one round: one hook call carrying 32 copies. */
	ck_assert_uint_eq(atomic_load(&tbe_of(b)->hook_calls), 1);
	ck_assert_uint_eq(atomic_load(&tbe_of(b)->hook_ops), 32);
	tbe_drop_all(b, 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(failing_hook_drops_and_counts)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tb = {.foreign_rx = true, .hook_fails = true};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0), *b = tbe_port(sw, "b", &tb, 0);
	hs_port_t *c = tbe_port(sw, "c", NULL, 0);
	uint8_t fr[256], src[6];
	th_mac(src, 1);
	for (uint32_t i = 0; i < 8; i++) {
		th_frame(fr, th_bcast, src, -1, 100, i);
		tbe_queue(a, 0, fr, 100, NULL, NULL);
	}
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 0);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_COPY_ERROR], 8);
	ck_assert_uint_eq(tbe_rx_count(c, 0), 8); /* others unaffected */
	ck_assert_uint_eq(tbe_pending_tx(a, 0), 0);
	tbe_drop_all(c, 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(vlan_changes_cross_segment_boundaries)
{
	hs_switch_t *sw = th_switch(NULL);
	/* Receiver buffers of 5-byte segments: the tag lands across them. */
	struct tbe_config tt = {.rx_seg = 5, .rx_nseg = 60};
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct hs_port_config pc = {.name = "trunk", .backend = TBE_NAME,
				    .backend_config = &tt, .backend_config_size = sizeof(tt),
				    .vlan_mode = HS_VLAN_TRUNK};
	hs_port_t *t;
	ck_assert_int_eq(hs_port_add(sw, &pc, &t), 0);
	struct tbe_config ta = {.rx_seg = 5, .rx_nseg = 64};
	hs_port_t *a = tbe_port(sw, "a", &ta, 7);
	uint8_t fr[300], src[6];
	th_mac(src, 1);
	static const uint32_t split[] = {11, 2, 3, 0};
	uint32_t n = (uint32_t)th_frame(fr, th_bcast, src, -1, 250, 1);
	tbe_queue(a, 0, fr, n, NULL, split);
	tbe_kick(a, 0);
	struct tbe_rxf r;
	ck_assert(tbe_pop(t, 0, &r));
	ck_assert_uint_eq(r.len, n + 4);
	ck_assert_int_eq(memcmp(r.data, fr, 12), 0);
	ck_assert_uint_eq(r.data[12], 0x81);
	ck_assert_uint_eq(r.data[15], 7);
	ck_assert_int_eq(memcmp(r.data + 16, fr + 12, n - 12), 0);
	free(r.data);
	/* And back, tagged -> access, through 5-byte segments. */
	th_mac(src, 2);
	n = (uint32_t)th_frame(fr, th_bcast, src, 7, 250, 2);
	tbe_queue(t, 0, fr, n, NULL, split);
	tbe_kick(t, 0);
	ck_assert(tbe_pop(a, 0, &r));
	ck_assert_uint_eq(r.len, n - 4);
	ck_assert_int_eq(memcmp(r.data, fr, 12), 0);
	ck_assert_int_eq(memcmp(r.data + 12, fr + 16, n - 16), 0);
	free(r.data);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- checksum offload ---------------------------------------------------------------------- */

START_TEST(checksums_are_completed_for_receivers_without_offload)
{
	for (int ipv = V4; ipv <= V6; ipv++)
		for (int proto = 0; proto < 2; proto++) {
			uint8_t pr = proto ? IPPROTO_UDP : IPPROTO_TCP;
			hs_switch_t *sw = th_switch(NULL);
			struct tbe_config tc = {.caps = HS_CAP_CSUM};
			hs_port_t *a = tbe_port(sw, "a", NULL, 0);
			hs_port_t *plain = tbe_port(sw, "plain", NULL, 0);
			hs_port_t *csum = tbe_port(sw, "csum", &tc, 0);
			static uint8_t fr[2000];
			struct hs_offload off;
			uint32_t n = build_l4(fr, ipv, pr, 1000, -1, &off);
			memcpy(fr, th_bcast, 6);
			static const uint32_t split[] = {20, 33, 500, 0};
			tbe_queue(a, 0, fr, n, &off, split);
			tbe_kick(a, 0);
			struct tbe_rxf r;
			ck_assert(tbe_pop(plain, 0, &r));
			ck_assert_uint_eq(r.len, n);
			ck_assert_msg(l4_ok(r.data, r.len, 14), "ipv %d proto %d", ipv, pr);
			ck_assert_uint_eq(r.off.flags & HS_OFF_NEEDS_CSUM, 0);
			free(r.data);
			ck_assert_uint_eq(th_pstats(plain).tx_csum_sw, 1);
			/* The receiver that can finish it gets it as sent. */
			ck_assert(tbe_pop(csum, 0, &r));
			ck_assert_int_eq(memcmp(r.data, fr, n), 0);
			ck_assert_uint_eq(r.off.flags, HS_OFF_NEEDS_CSUM);
			ck_assert_uint_eq(r.off.csum_start, off.csum_start);
			free(r.data);
			hs_switch_destroy(sw);
		}
}
END_TEST

START_TEST(checksum_completion_reads_foreign_frames)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config ta = {.foreign_tx = true}, tb = {.foreign_rx = true};
	hs_port_t *a = tbe_port(sw, "a", &ta, 0), *b = tbe_port(sw, "b", &tb, 0);
	static uint8_t fr[2000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 1200, -1, &off);
	memcpy(fr, th_bcast, 6);
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	struct tbe_rxf r;
	ck_assert(tbe_pop(b, 0, &r));
	ck_assert(l4_ok(r.data, r.len, 14));
	free(r.data);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- segmentation ---------------------------------------------------------------------------- */

struct gso_case {
	int ipv;
	uint8_t proto;
	uint8_t type;
	uint32_t cap;
};

static const struct gso_case gso_cases[] = {
	{V4, IPPROTO_TCP, HS_GSO_TCPV4, HS_CAP_GSO_TCPV4},
	{V6, IPPROTO_TCP, HS_GSO_TCPV6, HS_CAP_GSO_TCPV6},
	{V4, IPPROTO_UDP, HS_GSO_UDP_L4, HS_CAP_GSO_UDP_L4},
	{V6, IPPROTO_UDP, HS_GSO_UDP_L4, HS_CAP_GSO_UDP_L4},
};

/* Checks the pieces a receiver got from one GSO frame `orig`. */
static void check_pieces_of(hs_port_t *rx, const uint8_t *orig, uint32_t len,
			    const struct hs_offload *off, const struct gso_case *gc,
			    bool partial, int l2_delta)
{
	uint32_t l3 = 14 + (uint32_t)(l2_delta > 0 ? 4 : 0);
	uint32_t oh = off->hdr_len, mss = off->gso_size;
	uint32_t pieces = (len - oh + mss - 1) / mss;
	uint32_t seq0 = 0x11223344;
	for (uint32_t i = 0; i < pieces; i++) {
		struct tbe_rxf r;
		ck_assert_msg(tbe_pop(rx, 0, &r), "piece %u of %u missing", i, pieces);
		uint32_t pay = i + 1 == pieces ? len - oh - i * mss : mss;
		uint32_t h = oh + (uint32_t)l2_delta;
		ck_assert_uint_eq(r.len, h + pay);
		ck_assert_int_eq(memcmp(r.data + h, orig + oh + i * mss, pay), 0);
		if (partial) {
			/* Finish the checksum as the receiver would. */
			ck_assert_uint_eq(r.off.flags, HS_OFF_NEEDS_CSUM);
			uint32_t cs = r.off.csum_start, co = r.off.csum_offset;
			uint16_t c = (uint16_t)~ref_fold(ref_add(0, r.data + cs, r.len - cs));
			r.data[cs + co] = (uint8_t)(c >> 8);
			r.data[cs + co + 1] = (uint8_t)c;
		} else {
			ck_assert_uint_eq(r.off.flags, 0);
		}
		ck_assert_msg(l4_ok(r.data, r.len, l3), "piece %u bad checksum", i);
		uint32_t l4 = l3 + (gc->ipv == V4 ? 20 : 40);
		if (gc->ipv == V4) /* IP id increments */
			ck_assert_uint_eq((r.data[l3 + 4] << 8 | r.data[l3 + 5]),
					  0x1234 + i);
		if (gc->proto == IPPROTO_TCP) {
			uint32_t seq = (uint32_t)r.data[l4] << 24 | (uint32_t)r.data[l4 + 1] << 16 |
				       (uint32_t)r.data[l4 + 2] << 8 | r.data[l4 + 3];
			(void)seq;
			uint32_t s = (uint32_t)r.data[l4 + 4] << 24 |
				     (uint32_t)r.data[l4 + 5] << 16 |
				     (uint32_t)r.data[l4 + 6] << 8 | r.data[l4 + 7];
			ck_assert_uint_eq(s, seq0 + i * mss);
			uint8_t fl = r.data[l4 + 13];
			bool last = i + 1 == pieces;
			ck_assert_uint_eq(!!(fl & 0x01), last); /* FIN */
			ck_assert_uint_eq(!!(fl & 0x08), last); /* PSH */
			ck_assert_uint_eq(!!(fl & 0x80), i == 0); /* CWR */
			ck_assert_uint_eq(!!(fl & 0x10), 1);     /* ACK always */
		}
		free(r.data);
	}
}

/* The same, and nothing after the pieces. */
static void check_pieces(hs_port_t *rx, const uint8_t *orig, uint32_t len,
			 const struct hs_offload *off, const struct gso_case *gc,
			 bool partial, int l2_delta)
{
	check_pieces_of(rx, orig, len, off, gc, partial, l2_delta);
	struct tbe_rxf extra;
	ck_assert(!tbe_pop(rx, 0, &extra));
}

START_TEST(gso_frames_are_segmented_for_receivers_without_gso)
{
	for (unsigned k = 0; k < 4; k++) {
		const struct gso_case *gc = &gso_cases[k];
		hs_switch_t *sw = th_switch(NULL);
		struct tbe_config tc = {.caps = HS_CAP_CSUM, .rx_posted = 1000};
		struct tbe_config tn = {.rx_posted = 1000};
		struct tbe_config tg = {.caps = gc->cap | HS_CAP_CSUM, .rx_seg = 2048,
					.rx_nseg = 40};
		hs_port_t *a = tbe_port(sw, "a", NULL, 0);
		hs_port_t *none = tbe_port(sw, "none", &tn, 0);
		hs_port_t *csum = tbe_port(sw, "csum", &tc, 0);
		hs_port_t *gso = tbe_port(sw, "gso", &tg, 0);
		static uint8_t fr[70000];
		struct hs_offload off;
		uint32_t n = build_l4(fr, gc->ipv, gc->proto, 60000, -1, &off);
		memcpy(fr, th_bcast, 6);
		off.gso_type = gc->type;
		/* an MSS as Linux picks it: the headers and one fill an MTU of 1500 */
		off.gso_size = gc->proto == IPPROTO_UDP ? 1400 : gc->ipv == V4 ? 1448 : 1428;
		static const uint32_t split[] = {54, 1000, 7, 30000, 0};
		tbe_queue(a, 0, fr, n, &off, split);
		tbe_kick(a, 0);
		check_pieces(none, fr, n, &off, gc, false, 0);
		check_pieces(csum, fr, n, &off, gc, true, 0);
		struct tbe_rxf r;
		ck_assert(tbe_pop(gso, 0, &r));
		ck_assert_uint_eq(r.len, n);
		ck_assert_int_eq(memcmp(r.data, fr, n), 0);
		ck_assert_uint_eq(r.off.gso_type, gc->type);
		ck_assert_uint_eq(r.off.gso_size, off.gso_size);
		free(r.data);
		uint32_t pieces = (n - off.hdr_len + off.gso_size - 1) / off.gso_size;
		ck_assert_uint_eq(th_pstats(none).tx_gso_segments, pieces);
		ck_assert_uint_eq(th_pstats(none).tx_packets, pieces);
		hs_switch_destroy(sw);
	}
}
END_TEST

START_TEST(gso_segments_get_the_vlan_change)
{
	hs_switch_t *sw = th_switch(NULL);
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct tbe_config tt = {.rx_posted = 1000};
	struct hs_port_config pc = {.name = "trunk", .backend = TBE_NAME,
				    .backend_config = &tt, .backend_config_size = sizeof(tt),
				    .vlan_mode = HS_VLAN_TRUNK};
	hs_port_t *t;
	ck_assert_int_eq(hs_port_add(sw, &pc, &t), 0);
	hs_port_t *a = tbe_port(sw, "a", NULL, 9);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 20000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 1000;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	check_pieces(t, fr, n, &off, &gso_cases[0], false, 4);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(gso_pieces_wait_in_the_backlog_in_order)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_posted = 10};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 40000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 1448;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 10);
	ck_assert_uint_eq(th_pstats(b).tx_backlogged, 1);
	tbe_post(b, 0, 7);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 17);
	tbe_post(b, 0, 100);
	check_pieces(b, fr, n, &off, &gso_cases[0], false, 0);
	hs_switch_destroy(sw);
}
END_TEST

/* Foreign GSO frames cut for a foreign receiver whose hook defers stable
 * copies: the pieces' payload comes from the switch's bounce copy of each
 * frame, which the next frame reuses, so those copies must not be marked
 * stable; a tagged receiver adds the VLAN tag (switch scratch) too. */
START_TEST(deferred_hook_copies_of_segmented_foreign_frames)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config ta = {.foreign_tx = true};
	struct tbe_config tb = {.caps = HS_CAP_CSUM, .foreign_rx = true,
				.defer_stable = true, .rx_posted = 1000};
	hs_port_t *a = tbe_port(sw, "a", &ta, 9), *b = tbe_port(sw, "b", &tb, 9);
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct hs_port_config pc = {.name = "trunk", .backend = TBE_NAME,
				    .backend_config = &tb, .backend_config_size = sizeof(tb),
				    .vlan_mode = HS_VLAN_TRUNK};
	hs_port_t *t;
	ck_assert_int_eq(hs_port_add(sw, &pc, &t), 0);
	static uint8_t fr[3][8000];
	struct hs_offload off[3];
	uint32_t n[3];
	for (unsigned k = 0; k < 3; k++) {
		n[k] = build_l4(fr[k], V4, IPPROTO_TCP, 5000 + 100 * k, -1, &off[k]);
		memcpy(fr[k], th_bcast, 6);
		for (uint32_t i = off[k].hdr_len; i < n[k]; i++)
			fr[k][i] ^= (uint8_t)(0x5a * (k + 1)); /* each its own bytes */
		off[k].gso_type = HS_GSO_TCPV4;
		off[k].gso_size = 1000;
		tbe_queue(a, 0, fr[k], n[k], &off[k], NULL);
	}
	tbe_kick(a, 0); /* one round: the three share the bounce buffer */
	for (unsigned k = 0; k < 3; k++) {
		check_pieces_of(b, fr[k], n[k], &off[k], &gso_cases[0], true, 0);
		check_pieces_of(t, fr[k], n[k], &off[k], &gso_cases[0], true, 4);
	}
	struct tbe_rxf extra;
	ck_assert(!tbe_pop(b, 0, &extra));
	ck_assert(!tbe_pop(t, 0, &extra));
	hs_switch_destroy(sw);
}
END_TEST

/* A GSO frame cut across a reserve chunk (HS_RESERVE_MAX
 * outputs) whose reservation stops at an earlier frame must go to the
 * backlog whole, not with its first pieces skipped. */
START_TEST(a_gso_frame_cut_by_a_chunk_keeps_its_first_pieces)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_posted = 1};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t small[2][200], fr[70000];
	uint8_t src[6];
	th_mac(src, 77);
	for (unsigned k = 0; k < 2; k++) {
		th_frame(small[k], th_bcast, src, -1, sizeof(small[k]), k);
		tbe_queue(a, 0, small[k], sizeof(small[k]), NULL, NULL);
	}
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 60000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 200; /* 300 pieces: more than one chunk of 256 */
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0); /* one round: 2 small frames and the GSO frame */
	struct tbe_rxf r;
	ck_assert(tbe_pop(b, 0, &r)); /* the one posted buffer: small[0] */
	ck_assert_uint_eq(r.len, sizeof(small[0]));
	free(r.data);
	ck_assert_uint_eq(th_pstats(b).tx_backlogged, 2);
	tbe_post(b, 0, 1000);
	ck_assert(tbe_pop(b, 0, &r)); /* small[1] */
	ck_assert_uint_eq(r.len, sizeof(small[1]));
	free(r.data);
	uint32_t pieces = (n - off.hdr_len + off.gso_size - 1) / off.gso_size;
	struct hs_port_stats st = th_pstats(b);
	ck_assert_msg(st.tx_packets == 2 + pieces,
		      "b got %llu frames, expected 2 + %u pieces (drops %llu)",
		      (unsigned long long)st.tx_packets, pieces,
		      (unsigned long long)th_all_drops(&st));
	check_pieces(b, fr, n, &off, &gso_cases[0], false, 0);
	hs_switch_destroy(sw);
}
END_TEST

/* The common shape of that (review 48): a burst of 7 TSO frames of 64 KB (45
 * pieces of 1448 each) towards a receiver without GSO whose ring has 1
 * buffer free. The reserve chunk of 256 ends inside the sixth frame. */
START_TEST(a_tso_burst_to_a_full_receiver_keeps_every_piece)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_posted = 1};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t fr[7][66000];
	struct hs_offload off[7];
	uint32_t n[7], pieces = 0;
	for (unsigned k = 0; k < 7; k++) {
		n[k] = build_l4(fr[k], V4, IPPROTO_TCP, 65000, -1, &off[k]);
		memcpy(fr[k], th_bcast, 6);
		off[k].gso_type = HS_GSO_TCPV4;
		off[k].gso_size = 1448;
		pieces += (n[k] - off[k].hdr_len + 1447) / 1448;
		tbe_queue(a, 0, fr[k], n[k], &off[k], NULL);
	}
	tbe_kick(a, 0);
	tbe_post(b, 0, 4000);
	struct hs_port_stats st = th_pstats(b);
	ck_assert_msg(st.tx_packets + th_all_drops(&st) == pieces,
		      "%u pieces sent, %llu delivered, %llu dropped",
		      pieces, (unsigned long long)st.tx_packets,
		      (unsigned long long)th_all_drops(&st));
	hs_switch_destroy(sw);
}
END_TEST

/* A frame cut by a chunk, in each shape (review 48, second look). `nsmall`
 * small frames then `ngso` GSO frames of 300 pieces, to a receiver without
 * GSO with `posted` buffers; then buffers for all: every frame arrives, in
 * order, whole, none dropped. */
static void rv_cut(uint32_t flags, unsigned nsmall, unsigned ngso, uint32_t posted)
{
	struct hs_switch_config cfg = {.flags = flags};
	hs_switch_t *sw = th_switch(&cfg);
	struct tbe_config tn = {.rx_posted = posted};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t small[4][200], fr[70000];
	uint8_t src[6];
	th_mac(src, 78);
	for (unsigned k = 0; k < nsmall; k++) {
		th_frame(small[k], th_bcast, src, -1, sizeof(small[k]), k);
		tbe_queue(a, 0, small[k], sizeof(small[k]), NULL, NULL);
	}
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 60000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 200; /* 300 pieces */
	for (unsigned g = 0; g < ngso; g++)
		tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	for (unsigned i = 0; i < 8; i++)
		tbe_post(b, 0, 1000);
	uint32_t pieces = (n - off.hdr_len + off.gso_size - 1) / off.gso_size;
	struct hs_port_stats st = th_pstats(b);
	ck_assert_msg(st.tx_packets == nsmall + ngso * pieces && !th_all_drops(&st),
		      "flags %#x small %u gso %u posted %u: b got %llu, expected %u (drops %llu)",
		      flags, nsmall, ngso, posted, (unsigned long long)st.tx_packets,
		      nsmall + ngso * pieces, (unsigned long long)th_all_drops(&st));
	for (unsigned k = 0; k < nsmall; k++) {
		struct tbe_rxf r;
		ck_assert(tbe_pop(b, 0, &r));
		ck_assert_uint_eq(r.len, sizeof(small[k]));
		ck_assert_int_eq(memcmp(r.data, small[k], r.len), 0);
		free(r.data);
	}
	for (unsigned g = 0; g + 1 < ngso; g++)
		check_pieces_of(b, fr, n, &off, &gso_cases[0], false, 0);
	check_pieces(b, fr, n, &off, &gso_cases[0], false, 0);
	hs_switch_destroy(sw);
}

START_TEST(a_cut_frame_resumes_where_it_stopped_in_every_shape)
{
	static const struct { uint32_t flags; unsigned ns, ng; uint32_t posted; } c[] = {
		{0, 2, 1, 100},   /* stop == sj: the cut frame partly reserved */
		{0, 2, 1, 1},     /* stop < sj (the reviewer's) */
		{0, 2, 1, 2},     /* k == index of the cut frame's first piece */
		{0, 0, 2, 280},   /* 2nd chunk: stop == si < sj */
		{0, 0, 2, 256},   /* 2nd chunk: k == 0, stop == si < sj */
		{0, 0, 2, 400},   /* 2nd chunk: stop == sj */
		{0, 0, 2, 512},   /* 2nd chunk ends exactly, 3rd k == 0 */
		{0, 0, 1, 255},   /* one frame, 1st chunk k < no */
		{HS_SW_NOTIFY_EACH, 2, 1, 1},
		{HS_SW_NOTIFY_EACH, 2, 1, 100},
		{HS_SW_NOTIFY_EACH, 0, 2, 300},
		{HS_SW_NOTIFY_EACH, 0, 2, 301},
		{HS_SW_DOUBLE_COPY, 2, 1, 100},
		{HS_SW_DOUBLE_COPY, 0, 2, 280},
		{HS_SW_DOUBLE_COPY | HS_SW_NOTIFY_EACH, 0, 2, 299},
	};
	rv_cut(c[_i].flags, c[_i].ns, c[_i].ng, c[_i].posted);
}
END_TEST

/* A queue retired with a backlog (review 48, second look) and a "buffers
 * posted" request standing, the receiver quiesced (as vhost-user does it)
 * or not: the frames go, counted; the request goes (at once, or at
 * resume); no data-path op while quiesced; later frames go to queue 0. */
static void rv_retire(bool quiesced, uint32_t flags)
{
	struct hs_switch_config cfg = {.flags = flags};
	hs_switch_t *sw = th_switch(&cfg);
	struct tbe_config tn = {.n_queues = 2, .rx_posted = 1};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t f[8][200];
	uint8_t src[6];
	th_mac(src, 79);
	for (unsigned k = 0; k < 4; k++) {
		th_frame(f[k], th_bcast, src, -1, sizeof(f[k]), k);
		tbe_queue(a, 0, f[k], sizeof(f[k]), NULL, NULL);
	}
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 0);
	ck_assert_uint_eq(tbe_rx_count(b, 1), 1); /* the kicker's context: idx 1 */
	ck_assert_uint_eq(th_pstats(b).tx_backlogged, 3);
	ck_assert(atomic_load(&tbe_of(b)->posted_asked));
	if (quiesced)
		ck_assert_int_eq(tbe_quiesce(b), 0);
	ck_assert_int_eq(hs_port_set_active_queues(b, 1), 0);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_PORT_DOWN], 3);
	if (quiesced) {
		ck_assert(atomic_load(&tbe_of(b)->posted_asked)); /* not ours to call */
		ck_assert_int_eq(tbe_resume(b), 0);
		ck_assert_uint_eq(atomic_load(&tbe_of(b)->calls_quiesced), 0);
	}
	ck_assert_msg(!atomic_load(&tbe_of(b)->posted_asked), "request left on a retired queue");
	for (unsigned k = 4; k < 8; k++) {
		th_frame(f[k], th_bcast, src, -1, sizeof(f[k]), k);
		tbe_queue(a, 0, f[k], sizeof(f[k]), NULL, NULL);
	}
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 1);
	ck_assert_uint_eq(tbe_rx_count(b, 1), 1);
	tbe_post(b, 0, 10);
	tbe_post(b, 1, 10); /* the peer posts on the retired queue anyway */
	ck_assert_uint_eq(tbe_rx_count(b, 0), 4);
	ck_assert_uint_eq(tbe_rx_count(b, 1), 1);
	struct hs_port_stats st = th_pstats(b);
	ck_assert_uint_eq(st.tx_packets + th_all_drops(&st), 8);
	hs_switch_destroy(sw);
}

START_TEST(a_queue_retired_with_a_request_standing_drops_both)
{
	rv_retire(_i & 1, _i & 2 ? HS_SW_NOTIFY_EACH : 0);
}
END_TEST

START_TEST(bad_offload_metadata_is_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = tbe_port(sw, "a", NULL, 0), *b = tbe_port(sw, "b", NULL, 0);
	static uint8_t fr[70000];
	struct hs_offload good, off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 3000, -1, &good);
	memcpy(fr, th_bcast, 6);
	good.gso_type = HS_GSO_TCPV4;
	good.gso_size = 1448;
	struct hs_offload bad[] = {
		good, good, good, good, good, good, good, good, good, good, good,
	};
	bad[0].csum_start = (uint16_t)(n - 1);      /* field beyond the frame */
	bad[1].gso_size = 0;
	bad[2].gso_type = HS_GSO_TCPV6;            /* headers say IPv4 */
	bad[3].gso_type = 9;                       /* unknown type */
	bad[4].flags |= 0x40;                      /* unknown flag */
	bad[5].csum_start = 20;                    /* before any L4 header could be */
	bad[6].gso_size = 1;                       /* far too many pieces */
	/* Segmentation hands the receiver the TCP checksum to finish: its
	 * fields must name the TCP header (fuzz_tap found the kernel refusing
	 * what passed before). */
	bad[7].csum_start = (uint16_t)(good.csum_start + 100);
	bad[8].csum_offset = 0;
	bad[9].flags = 0;                          /* no partial checksum */
	/* GSO_BY_FRAGS, which the kernel refuses from a virtio header (found
	 * by the long fuzz_tap run: a tap wrote EINVAL) */
	bad[10].gso_size = 0xffff;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		off = bad[i];
		tbe_queue(a, 0, fr, n, &off, NULL);
	}
	/* USO in more than 128 segments (the kernel's UDP_MAX_SEGMENTS) */
	static uint8_t fr2[4000];
	struct hs_offload uso;
	uint32_t n2 = build_l4(fr2, V4, IPPROTO_UDP, 3000, -1, &uso);
	memcpy(fr2, th_bcast, 6);
	uso.gso_type = HS_GSO_UDP_L4;
	uso.gso_size = 20;
	tbe_queue(a, 0, fr2, n2, &uso, NULL);
	/* UFO to a receiver that cannot take it: not cut in software. */
	uint32_t u = build_l4(fr, V4, IPPROTO_UDP, 3000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_UDP;
	off.gso_size = 1400;
	tbe_queue(a, 0, fr, u, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 0);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_BAD_OFFLOAD], 12);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_BAD_OFFLOAD], 1);
	ck_assert_uint_eq(tbe_pending_tx(a, 0), 0);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- two backends' foreign memory ------------------------------------------ */

/* A second test backend: the same code under another name, so that its
 * foreign memory is another backend's. */
static struct hs_backend_ops tbe2_ops;

static hs_port_t *tbe2_port(hs_switch_t *sw, const char *name, struct tbe_config c)
{
	tbe2_ops = tbe_ops;
	tbe2_ops.name = "tbe2";
	int rc = hs_backend_register(&tbe2_ops);
	if (rc && rc != -EEXIST)
		abort();
	struct hs_port_config pc = {.name = name, .backend = "tbe2", .backend_config = &c,
				    .backend_config_size = sizeof(c)};
	hs_port_t *p = NULL;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	return p;
}

/* Frames from one backend's foreign memory into another's foreign
 * buffers: neither copy hook reaches the other's memory, so the switch
 * fetches each frame local first and they arrive intact, on the plain
 * path and the prepared one. When the receiver's hook fails, no frame
 * goes out with bytes that were never written: each is counted (a
 * review found the plain path publishing the frame whose copy failed and
 * blaming the next one). */
static void cross(bool plain, bool fails)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config sc = {.foreign_tx = true};
	hs_port_t *s = tbe_port(sw, "src", &sc, 0);
	struct tbe_config dc = {.foreign_rx = true, .hook_fails = fails};
	hs_port_t *d = tbe2_port(sw, "dst", dc);
	static uint8_t fr[2][1000];
	uint8_t ms[6];
	th_mac(ms, 1);
	struct hs_offload off = {.flags = HS_OFF_DATA_VALID};
	size_t n[2];
	for (unsigned i = 0; i < 2; i++) {
		n[i] = th_frame(fr[i], th_bcast, ms, -1, 600 + i * 100, i);
		tbe_queue(s, 0, fr[i], (uint32_t)n[i], plain ? NULL : &off, NULL);
	}
	ck_assert_int_eq(tbe_kick(s, 0), 2); /* one round, both frames */
	struct tbe *t2 = hs_port_backend_priv(d, &tbe2_ops);
	struct tbe_q *tq = &t2->q[0];
	unsigned got = tq->rx_tail - tq->rx_head;
	struct hs_port_stats st = th_pstats(d);
	if (fails) {
		ck_assert_uint_eq(got, 0);
		ck_assert_uint_eq(st.drops[HS_DROP_COPY_ERROR], 2);
		ck_assert_uint_eq(st.tx_packets, 0);
	} else {
		ck_assert_uint_eq(got, 2);
		for (unsigned i = 0; i < 2; i++) {
			struct tbe_rxf *r = &tq->rx[(tq->rx_head + i) % TBE_RXMAX];
			ck_assert_uint_eq(r->len, n[i]);
			ck_assert_mem_eq(r->data, fr[i], n[i]);
		}
		ck_assert_uint_eq(st.drops[HS_DROP_COPY_ERROR], 0);
	}
	hs_switch_destroy(sw);
}

START_TEST(two_backends_foreign_memory)
{
	cross(true, false);
	cross(false, false);
	cross(true, true);
	cross(false, true);
}
END_TEST

/* ---- offload metadata a sender may choose (a cold review, 2026-12-06) ---- */

/* HS_OFF_GSO_ECN belongs to GSO: alone, Linux refuses it (a virtio-net
 * header of gso_type 0x80), so the frame is refused here and counted. */
START_TEST(an_ecn_flag_without_gso_is_refused)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tc = {.caps = HS_CAP_CSUM};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tc, 0);
	hs_port_t *n = tbe_port(sw, "n", NULL, 0);
	static uint8_t fr[2000];
	struct hs_offload off;
	uint32_t len = build_l4(fr, V4, IPPROTO_TCP, 500, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.flags = HS_OFF_GSO_ECN;
	tbe_queue(a, 0, fr, len, &off, NULL);
	off.flags = HS_OFF_NEEDS_CSUM | HS_OFF_GSO_ECN;
	tbe_queue(a, 0, fr, len, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_BAD_OFFLOAD], 2);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 0);
	ck_assert_uint_eq(tbe_rx_count(n, 0), 0);
	hs_switch_destroy(sw);
}
END_TEST

/* A frame without offload metadata that needs a VLAN change (access to
 * trunk) goes the way of frames to be rewritten; if its sender's copy
 * hook fails (a Xen guest that revoked its grants), it is withdrawn and
 * counted, never published with its buffer's old bytes. */
START_TEST(a_failed_sender_copy_is_counted_when_a_tag_goes_in)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config ta = {.foreign_tx = true, .hook_fails = true};
	hs_port_t *a = tbe_port(sw, "a", &ta, 9); /* access VLAN 9 */
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct tbe_config tt = {0};
	struct hs_port_config pc = {.name = "trunk", .backend = TBE_NAME,
				    .backend_config = &tt, .backend_config_size = sizeof(tt),
				    .vlan_mode = HS_VLAN_TRUNK};
	hs_port_t *t;
	ck_assert_int_eq(hs_port_add(sw, &pc, &t), 0);
	static uint8_t fr[1000];
	uint8_t src[6];
	th_mac(src, 1);
	size_t n = th_frame(fr, th_bcast, src, -1, 600, 7);
	tbe_queue(a, 0, fr, (uint32_t)n, NULL, NULL);
	tbe_kick(a, 0);
	struct hs_port_stats st = th_pstats(t);
	ck_assert_uint_eq(tbe_rx_count(t, 0), 0);
	ck_assert_uint_eq(st.tx_packets, 0);
	ck_assert_uint_eq(st.drops[HS_DROP_COPY_ERROR], 1);
	hs_switch_destroy(sw);
}
END_TEST

/* Ten pieces of a cut GSO frame go out, the rest waits (the receiver's
 * buffers ran out); then the receiver takes TSO (hs_port_set_caps may
 * come at any time). The rest is still cut: the whole frame again would
 * deliver the first ten pieces' payload twice. */
START_TEST(a_frame_cut_in_part_is_cut_to_the_end)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_posted = 10, .rx_seg = 65536};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 40000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 1448;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 10);
	ck_assert_int_eq(hs_port_set_caps(b, HS_CAP_CSUM | HS_CAP_GSO_TCPV4), 0);
	tbe_post(b, 0, 100);
	uint32_t payload = 0, frames = 0;
	struct tbe_rxf r;
	while (tbe_pop(b, 0, &r)) {
		ck_assert_uint_le(r.len, off.hdr_len + 1448u);
		ck_assert_uint_eq(r.off.gso_type, HS_GSO_NONE);
		ck_assert(!memcmp(r.data + off.hdr_len, fr + off.hdr_len + frames * 1448u,
				  r.len - off.hdr_len));
		payload += r.len - off.hdr_len;
		frames++;
		free(r.data);
	}
	ck_assert_uint_eq(payload, n - off.hdr_len);
	ck_assert_uint_eq(frames, (40000 + 1447) / 1448);
	hs_switch_destroy(sw);
}
END_TEST

/* A TCPv4 GSO frame of the largest size whose gso_size covers all of its
 * payload: its one piece would be an IP datagram of 65536 bytes, whose
 * total length field cannot say so (it wrapped to 0). Refused. */
START_TEST(a_piece_longer_than_an_ip_datagram_is_refused)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_seg = 32768, .rx_nseg = 3};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t pay = HS_FRAME_MAX - 14 - 20 - 32;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, pay, -1, &off);
	memcpy(fr, th_bcast, 6);
	ck_assert_uint_eq(n, HS_FRAME_MAX);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = (uint16_t)pay;
	tbe_queue(a, 0, fr, n, &off, NULL);
	off.gso_size = 1448; /* the same frame in pieces of an MSS: fine */
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_BAD_OFFLOAD], 1);
	ck_assert_uint_eq(th_pstats(b).tx_gso_segments, (pay + 1447) / 1448);
	struct tbe_rxf r;
	while (tbe_pop(b, 0, &r)) {
		uint32_t tot = (uint32_t)r.data[16] << 8 | r.data[17];
		ck_assert_uint_eq(tot, r.len - 14);
		free(r.data);
	}
	hs_switch_destroy(sw);
}
END_TEST

/* A GSO frame may be larger than the sender's MTU, its pieces may not:
 * one whose payload fits in one gso_size is one frame of that size to a
 * receiver without TSO (Linux: "too small packets are not really GSO
 * ones"), and one with a gso_size beyond the MTU makes pieces beyond it.
 * Both are oversize, as the same frame without GSO is; an MSS within the
 * MTU passes. */
START_TEST(gso_pieces_keep_to_the_senders_mtu)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_seg = 65536, .rx_posted = 256};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0); /* MTU 1500 */
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 9000, -1, &off);
	memcpy(fr, th_bcast, 6);
	tbe_queue(a, 0, fr, n, &off, NULL); /* checksum offload only */
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 9000;                /* one piece */
	tbe_queue(a, 0, fr, n, &off, NULL);
	off.gso_size = 3000;                /* three, each too large */
	tbe_queue(a, 0, fr, n, &off, NULL);
	off.gso_size = (uint16_t)(1514 - off.hdr_len); /* the largest that fits */
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_OVERSIZE], 3);
	struct tbe_rxf r;
	uint32_t payload = 0;
	while (tbe_pop(b, 0, &r)) {
		ck_assert_uint_le(r.len, 1514);
		payload += r.len - off.hdr_len;
		free(r.data);
	}
	ck_assert_uint_eq(payload, 9000);
	hs_switch_destroy(sw);
}
END_TEST

/* Hostile metadata: refused, counted, nothing delivered. */

START_TEST(hostile_metadata_is_refused_and_counted)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", NULL, 0);
	static uint8_t fr[70000];
	struct hs_offload good;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 3000, -1, &good);
	memcpy(fr, th_bcast, 6);
	good.gso_type = HS_GSO_TCPV4;
	good.gso_size = 1448;
	unsigned sent = 0;
	/* TCP data offset 0..4 words (doff < 20) */
	static uint8_t f2[70000];
	memcpy(f2, fr, n);
	f2[14 + 20 + 12] = 0x40;
	tbe_queue(a, 0, f2, n, &good, NULL), sent++;
	/* IHL 15 with total frame shorter than IP header + TCP header */
	memcpy(f2, fr, n);
	f2[14] = 0x4f;
	tbe_queue(a, 0, f2, 14 + 60 + 10, &good, NULL), sent++;
	/* csum_offset pushes the field past the end */
	struct hs_offload o = good;
	o.gso_type = 0;
	o.csum_offset = 0xffff;
	tbe_queue(a, 0, fr, n, &o, NULL), sent++;
	/* csum field exactly 1 byte over */
	o.csum_offset = (uint16_t)(n - o.csum_start - 1);
	tbe_queue(a, 0, fr, n, &o, NULL), sent++;
	/* gso frame with only headers, no payload */
	tbe_queue(a, 0, fr, 14 + 20 + 32, &good, NULL), sent++;
	/* IPv6 with an extension header (hop-by-hop) */
	uint32_t n6 = build_l4(f2, V6, IPPROTO_TCP, 3000, -1, &o);
	memcpy(f2, th_bcast, 6);
	f2[14 + 6] = 0;
	o.gso_type = HS_GSO_TCPV6;
	o.gso_size = 1000;
	tbe_queue(a, 0, f2, n6, &o, NULL), sent++;
	/* gso_size 1 with a 2000-byte payload: 2000 pieces */
	o = good;
	o.gso_size = 1;
	tbe_queue(a, 0, fr, 14 + 20 + 32 + 2000, &o, NULL), sent++;
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 0);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_BAD_OFFLOAD], sent);
	hs_switch_destroy(sw);
}
END_TEST

/* gso_size 1 with 1000 payload bytes: 1000 pieces, each correct. */
START_TEST(a_tiny_mss_makes_correct_pieces)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tn = {.rx_posted = 4000};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *b = tbe_port(sw, "b", &tn, 0);
	static uint8_t fr[4000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V6, IPPROTO_TCP, 1000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV6;
	off.gso_size = 1;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	ck_assert_uint_eq(tbe_rx_count(b, 0), 1000);
	struct tbe_rxf r;
	uint32_t i = 0;
	while (tbe_pop(b, 0, &r)) {
		ck_assert_uint_eq(r.len, off.hdr_len + 1);
		ck_assert_uint_eq(r.data[r.len - 1], fr[off.hdr_len + i]);
		i++;
		free(r.data);
	}
	hs_switch_destroy(sw);
}
END_TEST

/* A GSO frame passed whole is checked in its sender's memory, which a
 * guest's other vCPUs may write until the copy has read it: a receiver
 * taking the offload must not get metadata for headers that are no
 * longer there. Made deterministic: the receiver's send_reserve (after
 * the check, before the copy) rewrites the sender's IPv4 protocol to
 * UDP, as a racing vCPU would. The frame is checked again in the
 * receiver's buffer, and dropped (bad_offload). */
static struct hs_backend_ops mut_ops;
static uint8_t *mut_at, mut_val; /* the byte a reservation rewrites, and to what */

static unsigned mut_reserve(void *priv, uint16_t q, const struct hs_out *out, unsigned n,
			    struct hs_iobuf *bufs)
{
	if (mut_at)
		*mut_at = mut_val;
	return tbe_send_reserve(priv, q, out, n, bufs);
}

/* tbe's ops, but send_reserve rewrites *mut_at first, as a guest's other
 * vCPU could between a check and the copy; registered once */
static void mut_register(void)
{
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	mut_ops = tbe_ops;
	mut_ops.name = "tbemut";
	mut_ops.send_reserve = mut_reserve;
	rc = hs_backend_register(&mut_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
}

START_TEST(gso_metadata_matches_the_headers_delivered)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	mut_register();
	mut_val = IPPROTO_UDP;
	struct tbe_config tg = {.caps = HS_CAP_CSUM | HS_CAP_GSO_TCPV4, .rx_seg = 65536};
	struct hs_port_config pc = {.name = "g", .backend = "tbemut", .backend_config = &tg,
				    .backend_config_size = sizeof(tg)};
	hs_port_t *g;
	ck_assert_int_eq(hs_port_add(sw, &pc, &g), 0);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 20000, -1, &off);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 1448;
	tbe_queue(a, 0, fr, n, &off, NULL);
	struct tbe *ta = tbe_of(a);
	struct tbe_txf *f = &ta->q[0].tx[(ta->q[0].tx_tail - 1) % TBE_TXMAX];
	mut_at = tbe_addr(&f->seg[0], 14 + 9);
	tbe_kick(a, 0);
	mut_at = NULL;
	struct tbe *tgp = hs_port_backend_priv(g, &mut_ops);
	struct tbe_q *tq = &tgp->q[0];
	ck_assert_uint_eq(tq->rx_tail - tq->rx_head, 0);
	ck_assert_uint_eq(th_pstats(g).drops[HS_DROP_BAD_OFFLOAD], 1);
	ck_assert_uint_eq(th_pstats(g).tx_packets, 0);
	hs_switch_destroy(sw);
}
END_TEST

/* UFO (HS_GSO_UDP) as Linux makes it: gso_size is the IP
 * fragment's payload (UDP header included in the first), so a 1500-MTU
 * sender's gso_size is 1480 and each fragment 14 + 20 + 1480 = 1514:
 * within the MTU (the MTU rule once counted the UDP header twice). */
START_TEST(ufo_of_a_1500_mtu_sender_passes)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tu = {.caps = HS_CAP_CSUM | HS_CAP_GSO_UDP, .rx_seg = 65536,
				.rx_posted = 256};
	hs_port_t *a = tbe_port(sw, "a", &tu, 0); /* MTU 1500 */
	hs_port_t *b = tbe_port(sw, "b", &tu, 0);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_UDP, 3000, -1, &off);
	fr[14 + 6] = 0; /* no DF: it is to be fragmented */
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_UDP;
	off.gso_size = 1480;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	uint64_t over = th_pstats(a).drops[HS_DROP_OVERSIZE];
	struct tbe_rxf r;
	unsigned got = 0;
	while (tbe_pop(b, 0, &r)) {
		got++;
		free(r.data);
	}
	hs_switch_destroy(sw);
	ck_assert_msg(got == 1 && over == 0, "a Linux UFO frame (MTU 1500, gso_size 1480): "
		      "delivered %u, oversize %llu", got, (unsigned long long)over);
}
END_TEST

/* A GSO frame of nearly the largest length, passed whole to a trunk port
 * (a tag pushed): 4 bytes longer than the largest untagged frame, and
 * still right for the check in the receiver's buffer. */
START_TEST(a_tag_pushed_on_the_largest_gso_frame_passes)
{
	hs_switch_t *sw = th_switch(NULL);
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct tbe_config tg = {.caps = HS_CAP_CSUM | HS_CAP_GSO_TCPV4, .rx_seg = 65536,
				.rx_nseg = 2};
	struct hs_port_config pc = {.name = "g", .backend = TBE_NAME, .backend_config = &tg,
				    .backend_config_size = sizeof(tg), .vlan_mode = HS_VLAN_TRUNK};
	hs_port_t *g;
	ck_assert_int_eq(hs_port_add(sw, &pc, &g), 0);
	hs_port_t *a = tbe_port(sw, "a", NULL, 7);
	static uint8_t fr[70000];
	struct hs_offload off;
	uint32_t n = build_l4(fr, V4, IPPROTO_TCP, 65549 - 66, -1, &off);
	ck_assert_uint_eq(n, 65549);
	memcpy(fr, th_bcast, 6);
	off.gso_type = HS_GSO_TCPV4;
	off.gso_size = 1448;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	struct hs_port_stats st = th_pstats(g);
	ck_assert_uint_eq(st.drops[HS_DROP_BAD_OFFLOAD], 0);
	ck_assert_uint_eq(tbe_rx_count(g, 0), 1);
	struct tbe_rxf r;
	ck_assert(tbe_pop(g, 0, &r));
	ck_assert_uint_eq(r.len, n + 4);
	free(r.data);
	hs_switch_destroy(sw);
}
END_TEST

/* Frames waiting in a port's backlog when it is deleted are dropped and
 * counted (port_down): what the switch received is what it sent plus what
 * it dropped. */
START_TEST(a_deleted_ports_backlog_is_counted)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	struct tbe_config tb = {.rx_posted = 1};
	hs_port_t *b = tbe_port(sw, "b", &tb, 0);
	ck_assert_ptr_nonnull(b);
	uint8_t fr[200], src[6];
	th_mac(src, 1);
	for (int i = 0; i < 5; i++) {
		uint32_t n = (uint32_t)th_frame(fr, th_bcast, src, -1, 100, (uint8_t)i);
		tbe_queue(a, 0, fr, n, NULL, NULL);
	}
	tbe_kick(a, 0);
	ck_assert_uint_eq(th_pstats(b).tx_packets, 1);
	ck_assert_int_eq(hs_port_del(b), 0);
	struct hs_switch_stats ss;
	ck_assert_int_eq(hs_switch_get_stats(sw, &ss), 0);
	uint64_t d = 0;
	for (unsigned r = 0; r < HS_DROP__COUNT; r++)
		d += ss.drops[r];
	ck_assert_uint_eq(ss.drops[HS_DROP_PORT_DOWN], 4);
	ck_assert_uint_eq(ss.rx_packets, ss.tx_packets + d);
	hs_switch_destroy(sw);
}
END_TEST


/* ---- offload metadata and tags against Linux (review 48, a netdev maintainer) --- */

#include "backends/vnet_hdr.h"

/* Ethernet (+802.1Q tag) / IPv4 with `ihl` words (options: NOPs) or IPv6 /
 * TCP with `doff` words (options: NOPs) or UDP / `pay` bytes. The L4
 * checksum field holds the pseudo-header seed; *off is filled for
 * NEEDS_CSUM at the L4 header. */
static uint32_t rv_build(uint8_t *f, int ipv, uint8_t proto, unsigned ihl, unsigned doff,
			 uint32_t pay, int vlan, struct hs_offload *off)
{
	memcpy(f, th_bcast, 6);
	th_mac(f + 6, 1);
	uint32_t o = 12;
	if (vlan >= 0) {
		f[o++] = 0x81, f[o++] = 0;
		f[o++] = (uint8_t)(vlan >> 8), f[o++] = (uint8_t)vlan;
	}
	f[o++] = ipv == V4 ? 0x08 : 0x86;
	f[o++] = ipv == V4 ? 0x00 : 0xdd;
	uint32_t l3 = o, l3hl = ipv == V4 ? ihl * 4 : 40;
	uint32_t l4hl = proto == IPPROTO_TCP ? doff * 4 : 8;
	uint32_t l4 = l3 + l3hl, len = l4 + l4hl + pay, l4len = len - l4;
	memset(f + l3, 1, l3hl + l4hl); /* NOP options */
	uint32_t sum;
	if (ipv == V4) {
		f[l3] = (uint8_t)(0x40 | ihl);
		f[l3 + 1] = 0;
		f[l3 + 2] = (uint8_t)((len - l3) >> 8), f[l3 + 3] = (uint8_t)(len - l3);
		f[l3 + 4] = 0x12, f[l3 + 5] = 0x34, f[l3 + 6] = 0x40, f[l3 + 7] = 0;
		f[l3 + 8] = 64, f[l3 + 9] = proto, f[l3 + 10] = 0, f[l3 + 11] = 0;
		uint8_t a[8] = {10, 0, 0, 1, 10, 0, 0, 2};
		memcpy(f + l3 + 12, a, 8);
		uint16_t c = (uint16_t)~ref_fold(ref_add(0, f + l3, l3hl));
		f[l3 + 10] = (uint8_t)(c >> 8), f[l3 + 11] = (uint8_t)c;
		sum = ref_add(0, f + l3 + 12, 8);
	} else {
		memset(f + l3, 0, 40);
		f[l3] = 0x60;
		f[l3 + 4] = (uint8_t)(l4len >> 8), f[l3 + 5] = (uint8_t)l4len;
		f[l3 + 6] = proto, f[l3 + 7] = 64;
		for (int i = 0; i < 16; i++)
			f[l3 + 8 + i] = (uint8_t)(0x20 + i), f[l3 + 24 + i] = (uint8_t)(0x40 + i);
		sum = ref_add(0, f + l3 + 8, 32);
	}
	sum += proto + l4len;
	uint16_t seed = ref_fold(sum);
	uint32_t cf;
	if (proto == IPPROTO_TCP) {
		memset(f + l4, 0, 20);
		f[l4] = 0x30, f[l4 + 1] = 0x39, f[l4 + 3] = 0x50;
		f[l4 + 4] = 0x11, f[l4 + 5] = 0x22, f[l4 + 6] = 0x33, f[l4 + 7] = 0x44;
		f[l4 + 12] = (uint8_t)(doff << 4);
		f[l4 + 13] = 0x18 | 0x01 | 0x80;
		cf = 16;
	} else {
		f[l4] = 0x30, f[l4 + 1] = 0x39, f[l4 + 2] = 0, f[l4 + 3] = 0x35;
		f[l4 + 4] = (uint8_t)(l4len >> 8), f[l4 + 5] = (uint8_t)l4len;
		cf = 6;
	}
	f[l4 + cf] = (uint8_t)(seed >> 8), f[l4 + cf + 1] = (uint8_t)seed;
	for (uint32_t i = 0; i < pay; i++)
		f[l4 + l4hl + i] = (uint8_t)(i * 7 + (i >> 9) + 3);
	if (off)
		*off = (struct hs_offload){.flags = HS_OFF_NEEDS_CSUM, .csum_start = (uint16_t)l4,
					   .csum_offset = (uint16_t)cf,
					   .hdr_len = (uint16_t)(l4 + l4hl)};
	return len;
}

static hs_port_t *rv_trunk(hs_switch_t *sw, const char *name, struct tbe_config *c)
{
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct hs_port_config pc = {.name = name, .backend = TBE_NAME, .backend_config = c,
				    .backend_config_size = sizeof(*c), .vlan_mode = HS_VLAN_TRUNK,
				    .mtu = 9000};
	hs_port_t *t;
	ck_assert_int_eq(hs_port_add(sw, &pc, &t), 0);
	return t;
}

/* R1. USO with the ECN flag (virtio gso_type 0x85), from a guest that
 * negotiated HOST_USO and HOST_ECN, is accepted and passed whole to a
 * receiver that takes USO and ECN (a tap with TUN_F_USO4|6|TSO_ECN, the
 * uplink, a guest with GUEST_USO4|6|GUEST_ECN). Linux's
 * virtio_net_hdr_to_skb refuses SKB_GSO_UDP_L4|SKB_GSO_TCP_ECN (EINVAL:
 * "if (gso_type != SKB_GSO_UDP_L4) return -EINVAL"). */
START_TEST(uso_with_ecn_is_refused)
{
	struct hsb_vnet_hdr vh = {.flags = HSB_VNET_F_NEEDS_CSUM,
				  .gso_type = HS_GSO_UDP_L4 | HSB_VNET_GSO_ECN,
				  .gso_size = 1400, .csum_start = 34, .csum_offset = 6};
	struct hs_offload fromguest;
	ck_assert(hsb_vnet_to_offload(&vh, HS_CAP_ALL & ~HS_CAP_GSO_UDP, &fromguest));
	ck_assert(fromguest.flags & HS_OFF_GSO_ECN);

	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config tg = {.caps = HS_CAP_CSUM | HS_CAP_GSO_UDP_L4 | HS_CAP_GSO_ECN,
				.rx_seg = 65536};
	hs_port_t *a = tbe_port(sw, "a", NULL, 0);
	hs_port_t *g = tbe_port(sw, "g", &tg, 0);
	static uint8_t fr[8000];
	struct hs_offload off;
	uint32_t n = rv_build(fr, V4, IPPROTO_UDP, 5, 0, 4000, -1, &off);
	off.gso_type = fromguest.gso_type;
	off.gso_size = fromguest.gso_size;
	off.flags = fromguest.flags;
	tbe_queue(a, 0, fr, n, &off, NULL);
	tbe_kick(a, 0);
	struct tbe_rxf r;
	bool got = tbe_pop(g, 0, &r);
	unsigned t = got ? r.off.gso_type : 0, fl = got ? r.off.flags : 0;
	if (got)
		free(r.data);
	uint64_t dropped = th_pstats(a).drops[HS_DROP_BAD_OFFLOAD];
	hs_switch_destroy(sw);
	ck_assert_msg(!(t == HS_GSO_UDP_L4 && (fl & HS_OFF_GSO_ECN)),
		      "USO frame with ECN passed whole: receiver got gso_type %u flags %#x "
		      "(virtio gso_type 0x85, which Linux refuses); bad_offload drops %llu",
		      t, fl, (unsigned long long)dropped);
}
END_TEST

/* Linux's skb_checksum_help on frame f (len bytes): sum [start, len),
 * store the folded complement at start + coff (0 -> 0xffff). */
static void rv_linux_csum(uint8_t *f, uint32_t len, uint32_t start, uint32_t coff)
{
	uint16_t c = (uint16_t)~ref_fold(ref_add(0, f + start, len - start));
	if (!c)
		c = 0xffff;
	f[start + coff] = (uint8_t)(c >> 8);
	f[start + coff + 1] = (uint8_t)c;
}

/* H1. Checksum completion at any csum_start/csum_offset (odd ones
 * included), frames split at odd places, local or foreign, untagged to
 * trunk (tag pushed) and tagged to access (tag popped): byte-identical to
 * Linux's skb_checksum_help on the same frame. */
START_TEST(checksum_completion_matches_linux_at_odd_offsets)
{
	static const uint32_t splits[][5] = {{0}, {1, 1, 1, 0}, {35, 3, 0}, {37, 1, 7, 0},
					     {129, 0}, {15, 2, 600, 1, 0}};
	static const uint16_t starts[] = {34, 35, 38, 41, 54, 55, 100};
	static const uint16_t offs[] = {0, 1, 6, 7, 16, 17, 301};
	static uint8_t fr[2000], ex[2000];
	for (int foreign = 0; foreign < 2; foreign++)
		for (int tagged = 0; tagged < 2; tagged++) {
			hs_switch_t *sw = th_switch(NULL);
			struct tbe_config ts = {.foreign_tx = foreign, .rx_posted = 4096};
			struct tbe_config tr = {.rx_posted = 4096, .rx_seg = 13, .rx_nseg = 64};
			hs_port_t *src, *dst;
			if (tagged) { /* tagged sender (trunk) -> access 9: tag popped */
				src = rv_trunk(sw, "s", &ts);
				dst = tbe_port(sw, "d", &(struct tbe_config){.rx_posted = 4096}, 9);
			} else { /* access 9 -> trunk: tag pushed */
				src = tbe_port(sw, "s", &ts, 9);
				dst = rv_trunk(sw, "d", &tr);
			}
			(void)tr;
			for (unsigned si = 0; si < 6; si++)
				for (unsigned a = 0; a < 7; a++)
					for (unsigned b = 0; b < 7; b++) {
						uint32_t n = rv_build(fr, V4, IPPROTO_TCP, 5, 5, 700,
								      tagged ? 9 : -1, NULL);
						uint32_t st = starts[a] + (tagged ? 4u : 0u);
						if (st + offs[b] + 2u > n)
							continue;
						struct hs_offload off = {.flags = HS_OFF_NEEDS_CSUM,
									 .csum_start = (uint16_t)st,
									 .csum_offset = offs[b]};
						tbe_queue(src, 0, fr, n, &off, splits[si]);
						tbe_kick(src, 0);
						/* expected: the frame after the VLAN change, then Linux */
						uint32_t en;
						if (tagged) {
							memcpy(ex, fr, 12);
							memcpy(ex + 12, fr + 16, n - 16);
							en = n - 4;
						} else {
							memcpy(ex, fr, 12);
							ex[12] = 0x81, ex[13] = 0, ex[14] = 0, ex[15] = 9;
							memcpy(ex + 16, fr + 12, n - 12);
							en = n + 4;
						}
						uint32_t est = tagged ? st - 4 : st + 4;
						rv_linux_csum(ex, en, est, offs[b]);
						struct tbe_rxf r;
						ck_assert_msg(tbe_pop(dst, 0, &r), "split %u start %u off %u",
							      si, st, offs[b]);
						ck_assert_uint_eq(r.len, en);
						ck_assert_msg(!memcmp(r.data, ex, en),
							      "foreign %d tagged %d split %u start %u off %u: "
							      "checksum differs from Linux's",
							      foreign, tagged, si, st, offs[b]);
						ck_assert_uint_eq(r.off.flags, 0);
						free(r.data);
					}
			hs_switch_destroy(sw);
		}
}
END_TEST

/* H2. Segmentation with the longest headers (IPv4 IHL 15, TCP doff 15),
 * header bytes in 1-byte segments, the sender's tag popped on the way,
 * local and foreign: every piece right, for receivers with and without
 * checksum offload; the GSO receiver gets the derived hdr_len, not the
 * sender's lie. */
static void rv_check_piece(const struct tbe_rxf *r, const uint8_t *orig, uint32_t oh,
			   uint32_t mss, uint32_t i, uint32_t pieces, uint32_t len, bool partial,
			   int delta, bool tcp)
{
	uint32_t pay = i + 1 == pieces ? len - oh - i * mss : mss;
	uint32_t h = (uint32_t)((int)oh + delta);
	ck_assert_uint_eq(r->len, h + pay);
	ck_assert_int_eq(memcmp(r->data + h, orig + oh + i * mss, pay), 0);
	uint8_t *d = r->data;
	if (partial) {
		ck_assert_uint_eq(r->off.flags, HS_OFF_NEEDS_CSUM);
		rv_linux_csum(d, r->len, r->off.csum_start, r->off.csum_offset);
	} else {
		ck_assert_uint_eq(r->off.flags, 0);
	}
	uint32_t l3 = (d[12] == 0x81) ? 18 : 14;
	ck_assert_msg(l4_ok(d, r->len, l3), "piece %u of %u: bad checksum or length", i, pieces);
	(void)tcp;
}

START_TEST(longest_headers_in_byte_segments_with_a_tag_popped)
{
	static const uint32_t bytes[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
					 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
					 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
					 1, 1, 1, 0};
	for (int ipv = V4; ipv <= V6; ipv++)
		for (int proto = 0; proto < 2; proto++)
			for (int foreign = 0; foreign < 2; foreign++) {
				uint8_t pr = proto ? IPPROTO_UDP : IPPROTO_TCP;
				hs_switch_t *sw = th_switch(NULL);
				struct tbe_config ts = {.foreign_tx = foreign};
				hs_port_t *s = rv_trunk(sw, "s", &ts);
				struct tbe_config tn = {.rx_posted = 1000};
				struct tbe_config tc = {.caps = HS_CAP_CSUM, .rx_posted = 1000,
							.rx_seg = 3, .rx_nseg = 64};
				struct tbe_config tg = {.caps = HS_CAP_ALL & ~HS_CAP_GSO_UDP,
							.rx_seg = 65536};
				hs_port_t *none = tbe_port(sw, "n", &tn, 9);
				hs_port_t *cs = tbe_port(sw, "c", &tc, 9);
				hs_port_t *g = tbe_port(sw, "g", &tg, 9);
				ck_assert_ptr_nonnull(none);
				ck_assert_ptr_nonnull(cs);
				static uint8_t fr[20000];
				struct hs_offload off;
				/* foreign: the first 128 bytes only are local (HS_PKT_HDR_MIN) */
				uint32_t n = rv_build(fr, ipv, pr, foreign ? 10 : 15, 15, 3000, 9, &off);
				off.gso_type = pr == IPPROTO_UDP ? HS_GSO_UDP_L4
					       : ipv == V4 ? HS_GSO_TCPV4 : HS_GSO_TCPV6;
				off.gso_size = 100; /* 30 pieces, a 3-byte-segment receiver: ~60 segs */
				uint32_t real_hdr = off.hdr_len;
				off.hdr_len = 7; /* the sender's hint lies */
				tbe_queue(s, 0, fr, n, &off, bytes);
				tbe_kick(s, 0);
				uint32_t pieces = (n - real_hdr + 99) / 100;
				struct tbe_rxf r;
				for (uint32_t i = 0; i < pieces; i++) {
					ck_assert_msg(tbe_pop(none, 0, &r), "ipv %d pr %u foreign %d: "
						      "piece %u missing (drops: %llu bad_offload at s)",
						      ipv, pr, foreign, i,
						      (unsigned long long)th_pstats(s).drops[HS_DROP_BAD_OFFLOAD]);
					rv_check_piece(&r, fr, real_hdr, 100, i, pieces, n, false, -4,
						       pr == IPPROTO_TCP);
					free(r.data);
				}
				/* 3-byte segments x 64 hold 192: pieces of hdr+100 fit only
				 * when the header is short; oversize is counted otherwise */
				while (tbe_pop(cs, 0, &r)) {
					free(r.data);
				}
				ck_assert(tbe_pop(g, 0, &r));
				ck_assert_uint_eq(r.len, n - 4);
				ck_assert_uint_eq(r.off.hdr_len, real_hdr - 4);
				ck_assert_uint_eq(r.off.csum_start, off.csum_start - 4);
				free(r.data);
				hs_switch_destroy(sw);
			}
}
END_TEST

/* H3. Partial-checksum pieces (receiver with checksum offload, no GSO),
 * tag pushed, IPv6 USO and TCPv4 with options, through the backlog too:
 * the receiver finishing them as Linux does gets right checksums. */
START_TEST(partial_pieces_finish_right_through_the_backlog)
{
	for (int k = 0; k < 4; k++) {
		int ipv = k & 1 ? V6 : V4;
		uint8_t pr = k & 2 ? IPPROTO_UDP : IPPROTO_TCP;
		hs_switch_t *sw = th_switch(NULL);
		hs_port_t *s = tbe_port(sw, "s", NULL, 9);
		struct tbe_config tc = {.caps = HS_CAP_CSUM, .rx_posted = 3};
		hs_port_t *t = rv_trunk(sw, "t", &tc);
		static uint8_t fr[20000];
		struct hs_offload off;
		uint32_t n = rv_build(fr, ipv, pr, 7, 11, 5001, -1, &off);
		off.gso_type = pr == IPPROTO_UDP ? HS_GSO_UDP_L4 : ipv == V4 ? HS_GSO_TCPV4 : HS_GSO_TCPV6;
		off.gso_size = 999;
		tbe_queue(s, 0, fr, n, &off, (const uint32_t[]){13, 29, 1, 0});
		tbe_kick(s, 0);
		tbe_post(t, 0, 100);
		uint32_t pieces = (n - off.hdr_len + 998) / 999;
		struct tbe_rxf r;
		for (uint32_t i = 0; i < pieces; i++) {
			ck_assert_msg(tbe_pop(t, 0, &r), "k %d piece %u", k, i);
			rv_check_piece(&r, fr, off.hdr_len, 999, i, pieces, n, true, 4,
				       pr == IPPROTO_TCP);
			free(r.data);
		}
		ck_assert(!tbe_pop(t, 0, &r));
		hs_switch_destroy(sw);
	}
}
END_TEST

/* R3. The VLAN a frame is switched in is read from the sender's memory at
 * classification; a frame that leaves a trunk with its tag unchanged is
 * then copied with the tag bytes as they are in the sender's memory at
 * copy time. A guest's other vCPU that rewrites the tag in between (made
 * deterministic here: the receiver's send_reserve, after classification
 * and before the copy, rewrites VID 10 to 20 in the sender's frame) gets a
 * frame switched in VLAN 10 out on a trunk tagged VLAN 20, a VLAN the
 * sender's port does not even carry. */
START_TEST(a_tag_rewritten_after_classification_leaves_in_its_vlan)
{
	/* _i: 0 the fast path (plain frames, one local segment each side);
	 * 1 a foreign sender (the copy through views); 2 a partial checksum
	 * passed to a receiver that takes it (the general path's copy) */
	hs_switch_t *sw = th_switch(NULL);
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	static const uint16_t only10[] = {10};
	struct tbe_config ts = {.foreign_tx = _i == 1};
	struct hs_port_config pcs = {.name = "s", .backend = TBE_NAME, .backend_config = &ts,
				     .backend_config_size = sizeof(ts), .vlan_mode = HS_VLAN_TRUNK,
				     .trunks = only10, .n_trunks = 1};
	hs_port_t *s;
	ck_assert_int_eq(hs_port_add(sw, &pcs, &s), 0);
	mut_register();
	mut_val = 20; /* TCI low byte: VID 10 -> 20 */
	struct tbe_config tu = {.caps = _i == 2 ? HS_CAP_CSUM : 0};
	struct hs_port_config pcu = {.name = "uplink", .backend = "tbemut",
				     .backend_config = &tu, .backend_config_size = sizeof(tu),
				     .vlan_mode = HS_VLAN_TRUNK}; /* all VLANs */
	hs_port_t *u;
	ck_assert_int_eq(hs_port_add(sw, &pcu, &u), 0);
	static uint8_t fr[200];
	uint8_t src[6];
	th_mac(src, 1);
	uint32_t n = (uint32_t)th_frame(fr, th_bcast, src, 10, 150, 1);
	ck_assert_uint_eq(fr[15], 10);
	struct hs_offload off = {.flags = HS_OFF_NEEDS_CSUM, .csum_start = 38, .csum_offset = 6};
	tbe_queue(s, 0, fr, n, _i == 2 ? &off : NULL, NULL);
	struct tbe *tsp = tbe_of(s);
	struct tbe_txf *f = &tsp->q[0].tx[(tsp->q[0].tx_tail - 1) % TBE_TXMAX];
	mut_at = tbe_addr(&f->seg[0], 15);
	tbe_kick(s, 0);
	mut_at = NULL;
	struct tbe *tup = hs_port_backend_priv(u, &mut_ops);
	struct tbe_q *tq = &tup->q[0];
	ck_assert_uint_eq(tq->rx_tail - tq->rx_head, 1);
	struct tbe_rxf *r = &tq->rx[tq->rx_head % TBE_RXMAX];
	unsigned vid = (unsigned)((r->data[14] & 0x0f) << 8 | r->data[15]);
	hs_switch_destroy(sw);
	ck_assert_msg(vid == 10, "a frame switched in VLAN 10 left the trunk tagged VLAN %u "
		      "(the sender's port carries VLAN 10 only)", vid);
}
END_TEST


/* ==== review 48 (cold, OVS/bridge maintainer): more shapes of the tag race ==== */
static uint8_t *rw_at[8];
static unsigned rw_n;
static bool rw_ins;
static struct hs_backend_ops rw_ops;

static unsigned rw_reserve(void *priv, uint16_t q, const struct hs_out *out, unsigned n,
			   struct hs_iobuf *bufs)
{
	for (unsigned i = 0; i < rw_n; i++)
		if (rw_at[i]) {
			if (rw_ins) { /* an ethertype turned into a tag of VLAN 20 */
				rw_at[i][0] = 0x81, rw_at[i][1] = 0x00;
				rw_at[i][2] = 0x00, rw_at[i][3] = 20;
				continue;
			}
			rw_at[i][0] = 0x00; /* PCP/DEI cleared, VID 0x0?? */
			rw_at[i][1] = 20;   /* VID -> 20 */
		}
	return tbe_send_reserve(priv, q, out, n, bufs);
}

static void rw_register(void)
{
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	rw_ops = tbe_ops;
	rw_ops.name = "tbemutrw";
	rw_ops.send_reserve = rw_reserve;
	rc = hs_backend_register(&rw_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
}

/* Queues a frame of tci on s and arms the rewrite of its bytes 14..15. */
static void rw_queue(hs_port_t *s, const uint8_t *fr, uint32_t n, const struct hs_offload *off)
{
	tbe_queue(s, 0, fr, n, off, NULL);
	struct tbe *tsp = tbe_of(s);
	struct tbe_txf *f = &tsp->q[0].tx[(tsp->q[0].tx_tail - 1) % TBE_TXMAX];
	rw_at[rw_n++] = tbe_addr(&f->seg[0], 14);
}

static unsigned rw_tcis(hs_port_t *u, uint16_t *tci, unsigned max)
{
	struct tbe *tup = hs_port_backend_priv(u, &rw_ops);
	struct tbe_q *tq = &tup->q[0];
	unsigned k = 0;
	for (uint32_t i = tq->rx_head; i != tq->rx_tail && k < max; i++) {
		struct tbe_rxf *r = &tq->rx[i % TBE_RXMAX];
		tci[k++] = r->data[12] == 0x81 && r->data[13] == 0 ?
				   (uint16_t)(r->data[14] << 8 | r->data[15]) : 0xffff;
	}
	return k;
}

/* _i shapes:
 * 0 fast path, foreign receiver (send_plain's view branch, tag a range)
 * 1 foreign sender and foreign receiver (one backend: hook copies straight)
 * 2 local multi-segment receiver (view branch, memcpy at once)
 * 3 backlog: one buffer posted, the second frame waits (bl_push), drained
 * 4 HS_SW_DOUBLE_COPY
 * 5 GSO TCPv4 cut in software for a receiver without GSO (template)
 * 6 partial checksum finished in software (HS__CSUM)
 * 7 tx mirror to a trunk output (frames sent to a trunk, mirrored)
 * 8 cross_foreign: foreign sender (tbe) to foreign receiver of another backend
 */
START_TEST(tag_and_pcp_come_from_the_switch_in_every_shape)
{
	struct hs_switch_config swc = {0};
	if (_i == 4)
		swc.flags = HS_SW_DOUBLE_COPY;
	hs_switch_t *sw = th_switch(&swc);
	rw_register();
	static const uint16_t only10[] = {10};
	struct tbe_config ts = {.foreign_tx = _i == 1 || _i == 8};
	struct hs_port_config pcs = {.name = "s", .backend = TBE_NAME, .backend_config = &ts,
				     .backend_config_size = sizeof(ts), .vlan_mode = HS_VLAN_TRUNK,
				     .trunks = only10, .n_trunks = 1};
	if (_i == 9) /* 9: an access port in VLAN 10, untagged frame; its ethertype rewritten */
		pcs = (struct hs_port_config){.name = "s", .backend = TBE_NAME, .backend_config = &ts,
					      .backend_config_size = sizeof(ts),
					      .vlan_mode = HS_VLAN_ACCESS, .vlan = 10};
	hs_port_t *s;
	ck_assert_int_eq(hs_port_add(sw, &pcs, &s), 0);
	struct tbe_config tu = {0};
	if (_i == 0 || _i == 1 || _i == 8)
		tu.foreign_rx = true;
	if (_i == 2)
		tu.rx_seg = 64, tu.rx_nseg = 8;
	if (_i == 3)
		tu.rx_posted = 1;
	if (_i == 6)
		tu.caps = 0;
	hs_port_t *u, *dst = NULL;
	if (_i == 7) {
		/* the frames go to a plain tbe trunk "d"; the mirror output
		 * (the mutating backend) takes what d is sent */
		struct tbe_config td = {0};
		struct hs_port_config pcd = {.name = "d", .backend = TBE_NAME, .backend_config = &td,
					     .backend_config_size = sizeof(td),
					     .vlan_mode = HS_VLAN_TRUNK};
		ck_assert_int_eq(hs_port_add(sw, &pcd, &dst), 0);
	}
	struct hs_port_config pcu = {.name = "uplink", .backend = "tbemutrw",
				     .backend_config = &tu, .backend_config_size = sizeof(tu),
				     .vlan_mode = HS_VLAN_TRUNK};
	ck_assert_int_eq(hs_port_add(sw, &pcu, &u), 0);
	if (_i == 7) {
		struct hs_mirror_config mc = {.size = sizeof(mc), .flags = HS_MIRROR_TX,
					      .src = dst, .dst = u};
		hs_mirror_t *m;
		ck_assert_int_eq(hs_mirror_add(sw, &mc, &m), 0);
	}
	/* PCP 5, DEI 1, VID 10 */
	const uint16_t tci = _i == 9 ? 0x000a : 0xb00a;
	static uint8_t fr[8000];
	uint8_t src[6];
	th_mac(src, 1);
	unsigned nf = 2;
	rw_n = 0;
	memset(rw_at, 0, sizeof(rw_at));
	if (_i == 5 || _i == 6) {
		struct hs_offload off;
		uint32_t n = rv_build(fr, V4, IPPROTO_TCP, 5, 5, _i == 5 ? 3000 : 700, tci, &off);
		if (_i == 5) {
			off.gso_type = HS_GSO_TCPV4;
			off.gso_size = 1000;
			nf = 3;
		} else {
			off.gso_type = HS_GSO_NONE;
			nf = 1;
		}
		rw_queue(s, fr, n, &off);
	} else {
		for (unsigned j = 0; j < nf; j++) {
			uint32_t n = (uint32_t)th_frame(fr, th_bcast, src, _i == 9 ? -1 : tci, 300, j);
			rw_queue(s, fr, n, NULL);
			if (_i == 9)
				rw_at[rw_n - 1] -= 2; /* bytes 12..15 */
		}
	}
	rw_ins = _i == 9;
	tbe_kick(s, 0);
	rw_ins = false;
	if (_i == 3) {
		struct tbe *tup = hs_port_backend_priv(u, &rw_ops);
		pthread_mutex_lock(&tup->q[0].lock);
		tup->q[0].posted += 4;
		pthread_mutex_unlock(&tup->q[0].lock);
		hs_port_posted(u, 0);
	}
	rw_n = 0;
	uint16_t got[8];
	unsigned k = rw_tcis(u, got, 8);
	hs_switch_destroy(sw);
	ck_assert_msg(k == nf, "shape %d: %u frames out, %u expected", _i, k, nf);
	for (unsigned j = 0; j < k; j++)
		ck_assert_msg(got[j] == tci, "shape %d: frame %u left with TCI %#06x, switched with %#06x",
			      _i, j, got[j], tci);
}
END_TEST

/* Two tagged frames of two VLANs (and two priorities), one burst, a trunk
 * to a trunk whose receive buffers are foreign (a Xen guest, a tap with a
 * deferring hook): send_plain's view branch puts the tag in a range whose
 * bytes live in a block-scoped array of the loop, read by the hook only at
 * the flush after the loop. _i: 0 foreign receiver, 1 foreign both sides. */
START_TEST(two_vlans_in_one_burst_to_a_foreign_receiver_keep_their_tags)
{
	hs_switch_t *sw = th_switch(NULL);
	int rc = hs_backend_register(&tbe_ops);
	ck_assert(rc == 0 || rc == -EEXIST);
	struct tbe_config ts = {.foreign_tx = _i == 1};
	struct hs_port_config pcs = {.name = "s", .backend = TBE_NAME, .backend_config = &ts,
				     .backend_config_size = sizeof(ts), .vlan_mode = HS_VLAN_TRUNK};
	hs_port_t *s, *u;
	ck_assert_int_eq(hs_port_add(sw, &pcs, &s), 0);
	struct tbe_config tu = {.foreign_rx = true};
	struct hs_port_config pcu = {.name = "u", .backend = TBE_NAME, .backend_config = &tu,
				     .backend_config_size = sizeof(tu), .vlan_mode = HS_VLAN_TRUNK};
	ck_assert_int_eq(hs_port_add(sw, &pcu, &u), 0);
	static const uint16_t tcis[3] = {0xa00a, 0x4014, 0x201e}; /* 5/10, 2/20, 1/30 */
	static uint8_t fr[400];
	uint8_t src[6];
	th_mac(src, 1);
	for (unsigned j = 0; j < 3; j++) {
		uint32_t n = (uint32_t)th_frame(fr, th_bcast, src, tcis[j], 300, j);
		tbe_queue(s, 0, fr, n, NULL, NULL);
	}
	tbe_kick(s, 0);
	uint16_t got[3] = {0};
	unsigned k = 0;
	struct tbe_rxf r;
	while (k < 3 && tbe_pop(u, 0, &r)) {
		got[k++] = (uint16_t)(r.data[14] << 8 | r.data[15]);
		free(r.data);
	}
	hs_switch_destroy(sw);
	ck_assert_uint_eq(k, 3);
	for (unsigned j = 0; j < 3; j++)
		ck_assert_msg(got[j] == tcis[j], "frame %u (TCI %#06x) left with TCI %#06x", j,
			      tcis[j], got[j]);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("copy");
	TCase *tc = tcase_create("copy");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, partial_checksum_matches_the_reference);
	tcase_add_test(tc, one_copy_for_every_segment_layout);
	tcase_add_test(tc, foreign_source_memory_goes_through_the_hook);
	tcase_add_test(tc, foreign_destination_memory_goes_through_the_hook);
	tcase_add_test(tc, hooks_may_defer_copies_from_stable_sources);
	tcase_add_test(tc, deferred_hook_copies_of_segmented_foreign_frames);
	tcase_add_test(tc, hook_copies_are_batched_per_destination);
	tcase_add_test(tc, failing_hook_drops_and_counts);
	tcase_add_test(tc, vlan_changes_cross_segment_boundaries);
	tcase_add_test(tc, checksums_are_completed_for_receivers_without_offload);
	tcase_add_test(tc, checksum_completion_reads_foreign_frames);
	tcase_add_test(tc, gso_frames_are_segmented_for_receivers_without_gso);
	tcase_add_test(tc, gso_segments_get_the_vlan_change);
	tcase_add_test(tc, gso_pieces_wait_in_the_backlog_in_order);
	tcase_add_test(tc, a_gso_frame_cut_by_a_chunk_keeps_its_first_pieces);
	tcase_add_test(tc, a_tso_burst_to_a_full_receiver_keeps_every_piece);
	tcase_add_test(tc, bad_offload_metadata_is_dropped);
	tcase_add_loop_test(tc, a_queue_retired_with_a_request_standing_drops_both, 0, 4);
	tcase_add_loop_test(tc, a_cut_frame_resumes_where_it_stopped_in_every_shape, 0, 15);
	tcase_add_test(tc, two_backends_foreign_memory);
	tcase_add_test(tc, an_ecn_flag_without_gso_is_refused);
	tcase_add_test(tc, a_failed_sender_copy_is_counted_when_a_tag_goes_in);
	tcase_add_test(tc, a_frame_cut_in_part_is_cut_to_the_end);
	tcase_add_test(tc, a_piece_longer_than_an_ip_datagram_is_refused);
	tcase_add_test(tc, gso_pieces_keep_to_the_senders_mtu);
	tcase_add_test(tc, ufo_of_a_1500_mtu_sender_passes);
	tcase_add_test(tc, a_tag_pushed_on_the_largest_gso_frame_passes);
	tcase_add_test(tc, a_deleted_ports_backlog_is_counted);
	tcase_add_test(tc, hostile_metadata_is_refused_and_counted);
	tcase_add_test(tc, a_tiny_mss_makes_correct_pieces);
	tcase_add_test(tc, gso_metadata_matches_the_headers_delivered);
	tcase_add_test(tc, uso_with_ecn_is_refused);
	tcase_add_test(tc, checksum_completion_matches_linux_at_odd_offsets);
	tcase_add_test(tc, longest_headers_in_byte_segments_with_a_tag_popped);
	tcase_add_test(tc, partial_pieces_finish_right_through_the_backlog);
	tcase_add_loop_test(tc, a_tag_rewritten_after_classification_leaves_in_its_vlan, 0, 3);
	TCase *r48 = tcase_create("tags");
	tcase_add_loop_test(r48, tag_and_pcp_come_from_the_switch_in_every_shape, 0, 10);
	tcase_add_loop_test(r48, two_vlans_in_one_burst_to_a_foreign_receiver_keep_their_tags, 0, 2);
	suite_add_tcase(s, r48);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
