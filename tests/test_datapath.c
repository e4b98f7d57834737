/*
 * test_datapath.c - rounds through mem ports (src/core/datapath.c,
 * deliver.c): classification and drops by reason, VLAN access/trunk
 * behaviour, split horizon, counters, scatter-gather frames, the bounded
 * backlog (bound, in-order drain), notification rules and the mechanism
 * switches.
 */
#include <pthread.h>
#include <unistd.h>

#include "helpers.h"

static uint8_t fb[20000];
static uint8_t rb[20000];

static uint64_t drops(hs_port_t *p, enum hs_drop_reason r)
{
	return th_pstats(p).drops[r];
}

/* ---- drops by reason ------------------------------------------------------------ */

START_TEST(runt_frames_are_dropped_and_counted)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	memset(fb, 0xff, 13);
	ck_assert_int_eq(th_send(a, fb, 13), 0);
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(drops(a, HS_DROP_RUNT), 1);
	ck_assert_uint_eq(th_pstats(a).rx_packets, 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(group_source_address_is_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t zero[6] = {0}, mb[6];
	th_mac(mb, 2);
	th_send(a, fb, th_frame(fb, mb, th_bcast, -1, 64, 1));
	th_send(a, fb, th_frame(fb, mb, zero, -1, 64, 1));
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(drops(a, HS_DROP_BAD_SRC_MAC), 2);
	ck_assert_uint_eq(th_sstats(sw).fdb_entries, 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(frames_over_the_mtu_are_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	th_send(a, fb, th_frame(fb, th_bcast, ma, -1, 1514, 1));
	th_send(a, fb, th_frame(fb, th_bcast, ma, -1, 1515, 2));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_uint_eq(drops(a, HS_DROP_OVERSIZE), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(frames_larger_than_receiver_buffers_are_dropped_there)
{
	struct hs_switch_config cfg = {0};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a = th_port(sw, "a", 0);
	struct th_port_opts o = {.name = "small", .buf = 256};
	hs_port_t *s = th_port_opts(sw, &o);
	hs_port_t *c = th_port(sw, "c", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	th_send(a, fb, th_frame(fb, th_bcast, ma, -1, 1000, 1));
	ck_assert_int_eq(th_drain(s), 0);
	ck_assert_int_eq(th_drain(c), 1);
	ck_assert_uint_eq(drops(s, HS_DROP_OVERSIZE), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(destination_on_ingress_port_is_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t m1[6], m2[6];
	th_mac(m1, 1);
	th_mac(m2, 2);
	th_send(a, fb, th_frame(fb, th_bcast, m2, -1, 64, 1)); /* m2 on a */
	th_drain(b);
	th_send(a, fb, th_frame(fb, m2, m1, -1, 64, 2));
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(drops(a, HS_DROP_SAME_PORT), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(flood_with_no_other_member_counts_no_route)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 5);
	th_port(sw, "b", 6);
	uint8_t m1[6];
	th_mac(m1, 1);
	th_send(a, fb, th_frame(fb, th_bcast, m1, -1, 64, 1));
	ck_assert_uint_eq(drops(a, HS_DROP_NO_ROUTE), 1);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- flooding and counters ---------------------------------------------------------- */

START_TEST(broadcast_reaches_everyone_but_the_sender)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *p[5];
	char name[8];
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		p[i] = th_port(sw, name, 0);
	}
	uint8_t m[6];
	th_mac(m, 1);
	th_send(p[2], fb, th_frame(fb, th_bcast, m, -1, 100, 1));
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(th_drain(p[i]), i == 2 ? 0 : 1);
	struct hs_port_stats st = th_pstats(p[2]);
	ck_assert_uint_eq(st.rx_broadcast, 1);
	ck_assert_uint_eq(st.rx_packets, 1);
	ck_assert_uint_eq(st.rx_bytes, 100);
	ck_assert_uint_eq(th_pstats(p[0]).tx_packets, 1);
	ck_assert_uint_eq(th_pstats(p[0]).tx_bytes, 100);
	struct hs_switch_stats ss = th_sstats(sw);
	ck_assert_uint_eq(ss.rx_packets, 1);
	ck_assert_uint_eq(ss.tx_packets, 4);
	ck_assert_uint_eq(ss.n_ports, 5);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(multicast_is_flooded_and_counted)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t mc[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, m[6];
	th_mac(m, 1);
	th_send(a, fb, th_frame(fb, mc, m, -1, 64, 1));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_uint_eq(th_pstats(a).rx_multicast, 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(no_flood_ports_get_only_their_unicast)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0);
	struct th_port_opts o = {.name = "quiet", .port_flags = HS_PORT_NO_FLOOD};
	hs_port_t *q = th_port_opts(sw, &o);
	hs_port_t *b = th_port(sw, "b", 0);
	uint8_t ma[6], mq[6];
	th_mac(ma, 1);
	th_mac(mq, 2);
	th_send(a, fb, th_frame(fb, th_bcast, ma, -1, 64, 1));
	ck_assert_int_eq(th_drain(q), 0);
	ck_assert_int_eq(th_drain(b), 1);
	/* Once q's MAC is known, unicast reaches it. */
	th_send(q, fb, th_frame(fb, ma, mq, -1, 64, 2));
	th_drain(a);
	th_send(a, fb, th_frame(fb, mq, ma, -1, 64, 3));
	ck_assert_int_eq(th_drain(q), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(no_learn_ports_are_never_learned)
{
	hs_switch_t *sw = th_switch(NULL);
	struct th_port_opts o = {.name = "nl", .port_flags = HS_PORT_NO_LEARN};
	hs_port_t *n = th_port_opts(sw, &o);
	hs_port_t *b = th_port(sw, "b", 0);
	uint8_t m[6];
	th_mac(m, 1);
	th_send(n, fb, th_frame(fb, th_bcast, m, -1, 64, 1));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(hs_fdb_lookup(sw, 1, m, NULL), -ENOENT);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- VLANs ---------------------------------------------------------------------------- */

static int recv_one(hs_port_t *p, uint8_t *buf)
{
	return hs_mem_recv(p, 0, buf, sizeof(rb), NULL);
}

START_TEST(access_ports_in_different_vlans_are_isolated)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10), *b = th_port(sw, "b", 10),
		  *c = th_port(sw, "c", 20);
	uint8_t ma[6], mc[6];
	th_mac(ma, 1);
	th_mac(mc, 3);
	th_send(c, fb, th_frame(fb, th_bcast, mc, -1, 64, 0)); /* learn mc in 20 */
	th_send(a, fb, th_frame(fb, th_bcast, ma, -1, 64, 1));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_drain(c), 0);
	/* Unicast to a MAC known only in VLAN 20 is unknown in VLAN 10. */
	th_send(a, fb, th_frame(fb, mc, ma, -1, 64, 2));
	ck_assert_int_eq(th_drain(c), 0);
	ck_assert_int_eq(th_drain(b), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(tagged_frames_on_access_ports_are_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10), *b = th_port(sw, "b", 10);
	uint8_t ma[6];
	th_mac(ma, 1);
	th_send(a, fb, th_frame(fb, th_bcast, ma, 10, 64, 1));
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(drops(a, HS_DROP_VLAN), 1);
	/* Priority-tagged (VLAN 0) frames belong to the access VLAN and leave
	 * untagged. */
	int n = (int)th_frame(fb, th_bcast, ma, 0, 64, 2);
	fb[14] |= 0xa0; /* PCP 5 */
	th_send(a, fb, (size_t)n);
	ck_assert_int_eq(recv_one(b, rb), n - 4);
	ck_assert_int_eq(rb[12], 0x88);
	ck_assert_int_eq(memcmp(rb + 14, fb + 18, (size_t)n - 18), 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(trunk_tags_and_access_untags)
{
	hs_switch_t *sw = th_switch(NULL);
	static const uint16_t allowed[] = {10, 20};
	struct th_port_opts to = {.name = "trunk", .mode = HS_VLAN_TRUNK,
				  .trunks = allowed, .n_trunks = 2};
	hs_port_t *t = th_port_opts(sw, &to);
	hs_port_t *a = th_port(sw, "a10", 10), *c = th_port(sw, "c20", 20);
	uint8_t ma[6], mt[6];
	th_mac(ma, 1);
	th_mac(mt, 2);

	/* Access VLAN 10 -> trunk: tagged with 10, payload intact. */
	size_t n = th_frame(fb, th_bcast, ma, -1, 100, 7);
	th_send(a, fb, n);
	ck_assert_int_eq(recv_one(t, rb), (int)n + 4);
	ck_assert_int_eq(rb[12], 0x81);
	ck_assert_int_eq(rb[13], 0x00);
	ck_assert_int_eq(((rb[14] << 8) | rb[15]) & 0xfff, 10);
	ck_assert_int_eq(memcmp(rb + 16, fb + 12, n - 12), 0);
	ck_assert_int_eq(memcmp(rb, fb, 12), 0);
	ck_assert_int_eq(th_drain(c), 0);

	/* Trunk, tagged 20 -> access VLAN 20: untagged. */
	n = th_frame(fb, th_bcast, mt, 20, 120, 8);
	th_send(t, fb, n);
	ck_assert_int_eq(recv_one(c, rb), (int)n - 4);
	ck_assert_int_eq(memcmp(rb, fb, 12), 0);
	ck_assert_int_eq(memcmp(rb + 12, fb + 16, n - 16), 0);
	ck_assert_int_eq(th_drain(a), 0);

	/* Not allowed VLAN, and untagged without a native VLAN: dropped. */
	th_send(t, fb, th_frame(fb, th_bcast, mt, 30, 64, 9));
	th_send(t, fb, th_frame(fb, th_bcast, mt, -1, 64, 9));
	ck_assert_uint_eq(drops(t, HS_DROP_VLAN), 2);
	ck_assert_int_eq(th_drain(a) + th_drain(c), 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(trunk_native_vlan_is_untagged_both_ways)
{
	hs_switch_t *sw = th_switch(NULL);
	struct th_port_opts to = {.name = "trunk", .mode = HS_VLAN_TRUNK, .vlan = 10};
	hs_port_t *t = th_port_opts(sw, &to);
	hs_port_t *a = th_port(sw, "a10", 10), *c = th_port(sw, "c30", 30);
	uint8_t ma[6], mt[6];
	th_mac(ma, 1);
	th_mac(mt, 2);
	size_t n = th_frame(fb, th_bcast, ma, -1, 90, 1);
	th_send(a, fb, n);
	ck_assert_int_eq(recv_one(t, rb), (int)n); /* native: untagged */
	ck_assert_int_eq(memcmp(rb, fb, n), 0);
	n = th_frame(fb, th_bcast, mt, -1, 90, 2);
	th_send(t, fb, n);
	ck_assert_int_eq(recv_one(a, rb), (int)n);
	ck_assert_int_eq(th_drain(c), 0);
	/* With no trunk list, every VLAN is allowed: 30 gets through. */
	n = th_frame(fb, th_bcast, mt, 30, 90, 3);
	th_send(t, fb, n);
	ck_assert_int_eq(recv_one(c, rb), (int)n - 4);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(trunk_to_trunk_keeps_the_tag_and_priority)
{
	hs_switch_t *sw = th_switch(NULL);
	struct th_port_opts o1 = {.name = "t1", .mode = HS_VLAN_TRUNK};
	struct th_port_opts o2 = {.name = "t2", .mode = HS_VLAN_TRUNK};
	hs_port_t *t1 = th_port_opts(sw, &o1), *t2 = th_port_opts(sw, &o2);
	uint8_t m[6];
	th_mac(m, 1);
	size_t n = th_frame(fb, th_bcast, m, 100, 80, 1);
	fb[14] |= 0x60; /* PCP 3 */
	th_send(t1, fb, n);
	ck_assert_int_eq(recv_one(t2, rb), (int)n);
	ck_assert_int_eq(memcmp(rb, fb, n), 0);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- frames and buffers ------------------------------------------------------------------ */

START_TEST(scatter_gather_frames_arrive_intact)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t m[6];
	th_mac(m, 1);
	size_t n = th_frame(fb, th_bcast, m, -1, 1500, 77);
	/* Every split of the frame into 1..16 pieces, including pieces that
	 * cut the Ethernet header. */
	for (unsigned parts = 1; parts <= 16; parts++) {
		struct iovec iov[16];
		size_t off = 0;
		for (unsigned i = 0; i < parts; i++) {
			size_t len = i + 1 == parts ? n - off : (i % 3) + 1 + i * 7;
			iov[i] = (struct iovec){.iov_base = fb + off, .iov_len = len};
			off += len;
		}
		struct hs_mem_frame f = {.iov = iov, .iovcnt = (uint16_t)parts};
		ck_assert_int_eq(hs_mem_tx_burst(a, 0, &f, 1), 1);
		uint64_t ck;
		ck_assert_int_eq(hs_mem_tx_reap(a, 0, &ck, 1), 1);
		memset(rb, 0, n);
		ck_assert_int_eq(recv_one(b, rb), (int)n);
		ck_assert_int_eq(memcmp(rb, fb, n), 0);
	}
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(bad_tx_descriptors_are_refused)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0);
	struct hs_mem_frame f = {.data = fb, .len = 0};
	ck_assert_int_eq(hs_mem_tx_burst(a, 0, &f, 1), -EINVAL);
	f.len = HS_FRAME_MAX + 1;
	ck_assert_int_eq(hs_mem_tx_burst(a, 0, &f, 1), -EINVAL);
	struct iovec iov[17];
	for (int i = 0; i < 17; i++)
		iov[i] = (struct iovec){.iov_base = fb, .iov_len = 10};
	f = (struct hs_mem_frame){.iov = iov, .iovcnt = 17};
	ck_assert_int_eq(hs_mem_tx_burst(a, 0, &f, 1), -EINVAL);
	iov[1].iov_len = 0;
	f.iovcnt = 2;
	ck_assert_int_eq(hs_mem_tx_burst(a, 0, &f, 1), -EINVAL);
	ck_assert_int_eq(hs_mem_tx_burst(a, 1, &f, 1), -EINVAL);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- backlog (preemptive copying without buffers) --------------------------------------- */

static void send_seq(hs_port_t *a, const uint8_t *dst, const uint8_t *src,
		     uint32_t from, uint32_t count, size_t len)
{
	for (uint32_t i = 0; i < count; i++) {
		th_frame(fb, dst, src, -1, len, from + i);
		ck_assert_int_eq(th_send(a, fb, len), 0);
	}
}

static uint32_t seq_of(const uint8_t *frame)
{
	uint32_t s;
	memcpy(&s, frame + 14, 4);
	return s;
}

/* Port "a" and a receiver with options o, whose MAC (mr, a's ma) the
 * switch has learned. Returns the receiver. */
static hs_port_t *learned_pair(hs_switch_t *sw, const struct th_port_opts *o, hs_port_t **a,
			       uint8_t ma[6], uint8_t mr[6])
{
	*a = th_port(sw, "a", 0);
	hs_port_t *r = th_port_opts(sw, o);
	th_mac(ma, 1);
	th_mac(mr, 2);
	th_send(r, fb, th_frame(fb, th_bcast, mr, -1, 64, 0));
	th_drain(*a);
	return r;
}

START_TEST(backlog_holds_frames_until_buffers_are_posted_in_order)
{
	struct hs_switch_config cfg = {.backlog_frames = 16};
	hs_switch_t *sw = th_switch(&cfg);
	struct th_port_opts o = {.name = "slow", .ring = 8};
	hs_port_t *a;
	uint8_t ma[6], ms[6];
	hs_port_t *s = learned_pair(sw, &o, &a, ma, ms);
	send_seq(a, ms, ma, 0, 30, 200);
	/* 8 in the ring, 16 waiting, 6 dropped. */
	ck_assert_int_eq(th_pending(s), 8);
	struct hs_port_stats st = th_pstats(s);
	ck_assert_uint_eq(st.tx_backlogged, 16);
	ck_assert_uint_eq(st.drops[HS_DROP_NO_BUFFER], 6);
	ck_assert_uint_eq(st.tx_packets, 8);
	/* Each release drains the backlog at once, in order. */
	uint32_t expect = 0;
	struct hs_mem_frame f[8];
	for (int round = 0; round < 4; round++) {
		int n = hs_mem_rx_burst(s, 0, f, 8);
		for (int i = 0; i < n; i++)
			ck_assert_uint_eq(seq_of(f[i].data), expect++);
		hs_mem_rx_release(s, 0, (unsigned)n);
	}
	ck_assert_uint_eq(expect, 24);
	ck_assert_uint_eq(th_pstats(s).tx_packets, 24);
	/* New frames after the backlog emptied keep the order too. */
	send_seq(a, ms, ma, 24, 3, 200);
	int n = hs_mem_rx_burst(s, 0, f, 8);
	ck_assert_int_eq(n, 3);
	for (int i = 0; i < n; i++)
		ck_assert_uint_eq(seq_of(f[i].data), expect++);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(no_backlog_mode_drops_at_once)
{
	struct hs_switch_config cfg = {.flags = HS_SW_NO_BACKLOG};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a = th_port(sw, "a", 0);
	struct th_port_opts o = {.name = "slow", .ring = 8};
	hs_port_t *s = th_port_opts(sw, &o);
	uint8_t ma[6];
	th_mac(ma, 1);
	send_seq(a, th_bcast, ma, 0, 12, 64);
	ck_assert_int_eq(th_pending(s), 8);
	ck_assert_uint_eq(drops(s, HS_DROP_NO_BUFFER), 4);
	ck_assert_uint_eq(th_pstats(s).tx_backlogged, 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(double_copy_mode_delivers_the_same_frames)
{
	struct hs_switch_config cfg = {.flags = HS_SW_DOUBLE_COPY};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	for (uint32_t i = 0; i < 50; i++) {
		size_t n = th_frame(fb, th_bcast, ma, -1, 60 + i * 13, i);
		th_send(a, fb, n);
		ck_assert_int_eq(recv_one(b, rb), (int)n);
		ck_assert_int_eq(memcmp(rb, fb, n), 0);
	}
	ck_assert_uint_eq(th_pstats(b).tx_backlogged, 50);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(backlog_bytes_bound_is_enforced)
{
	struct hs_switch_config cfg = {.backlog_frames = 1000,
				       .backlog_bytes = 10000};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a = th_port(sw, "a", 0);
	struct th_port_opts o = {.name = "slow", .ring = 8};
	hs_port_t *s = th_port_opts(sw, &o);
	uint8_t ma[6];
	th_mac(ma, 1);
	send_seq(a, th_bcast, ma, 0, 8 + 20, 1000);
	struct hs_port_stats st = th_pstats(s);
	ck_assert_uint_eq(st.tx_backlogged, 10);
	ck_assert_uint_eq(st.drops[HS_DROP_NO_BUFFER], 10);
	/* Wrap-around of the byte ring while draining and refilling. */
	uint32_t expect = 0;
	for (int k = 0; k < 50; k++) {
		struct hs_mem_frame f[8];
		int n = hs_mem_rx_burst(s, 0, f, 8);
		for (int i = 0; i < n; i++) {
			if (expect == 18)
				expect = 28; /* the 10 that were dropped */
			ck_assert_uint_eq(seq_of(f[i].data), expect++);
		}
		hs_mem_rx_release(s, 0, (unsigned)n);
		send_seq(a, th_bcast, ma, 28 + (uint32_t)k * 4, 4, 700 + (size_t)k * 16);
	}
	ck_assert_uint_eq(drops(s, HS_DROP_NO_BUFFER), 10);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- notifications ---------------------------------------------------------------------------- */

static uint64_t read_efd(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void burst_to(hs_port_t *a, const uint8_t *dst, const uint8_t *src,
		     unsigned n)
{
	struct hs_mem_frame f[32];
	static uint8_t frames[32][64];
	for (unsigned i = 0; i < n; i++) {
		th_frame(frames[i], dst, src, -1, 64, i);
		f[i] = (struct hs_mem_frame){.data = frames[i], .len = 64};
	}
	ck_assert_int_eq(hs_mem_tx_burst(a, 0, f, n), (int)n);
	uint64_t ck[32];
	ck_assert_int_eq(hs_mem_tx_reap(a, 0, ck, 32), (int)n);
}

/* Sends the n (at most 32) frames f as one burst and waits until the
 * switch completed them all. */
static void send_burst(hs_port_t *a, struct hs_mem_frame *f, unsigned n)
{
	ck_assert_int_eq(hs_mem_tx_burst(a, 0, f, n), (int)n);
	uint64_t ck[32];
	unsigned done = 0;
	ck_assert(TH_WAIT(({
		int k = hs_mem_tx_reap(a, 0, ck, 32);
		done += k > 0 ? (unsigned)k : 0;
		done == n;
	}), 5000));
}

/* Waits until every frame sent to r was read or counted as dropped;
 * fails saying how many were left waiting after `rounds` rounds. */
static void all_accounted(hs_port_t *r, struct th_reader *rd, uint64_t sent, uint64_t rounds)
{
	bool ok = TH_WAIT(({
		struct hs_port_stats st = th_pstats(r);
		atomic_load(&rd->got) == st.tx_packets && st.tx_packets + th_all_drops(&st) == sent;
	}), 2000);
	if (!ok) {
		struct hs_port_stats st = th_pstats(r);
		ck_abort_msg("round %llu: sent %llu, read %llu, dropped %llu: "
			     "%llu frames left waiting",
			     (unsigned long long)rounds, (unsigned long long)sent,
			     (unsigned long long)atomic_load(&rd->got),
			     (unsigned long long)th_all_drops(&st),
			     (unsigned long long)(sent - st.tx_packets - th_all_drops(&st)));
	}
}

/* Sender a and receiver r (learned, ring slots) on sw, and f: 32 frames
 * of len bytes from a to r. */
static void race_rig(hs_switch_t *sw, uint32_t ring, uint32_t len, hs_port_t **a,
		     hs_port_t **r, struct hs_mem_frame f[32])
{
	static uint8_t frames[32][1500];
	*a = th_port(sw, "a", 0);
	struct th_port_opts o = {.name = "r", .ring = ring};
	*r = th_port_opts(sw, &o);
	uint8_t ma[6], mr[6];
	th_mac(ma, 1);
	th_mac(mr, 2);
	th_send(*r, fb, th_frame(fb, th_bcast, mr, -1, 64, 0));
	th_drain(*a);
	for (unsigned i = 0; i < 32; i++)
		f[i] = (struct hs_mem_frame){
			.data = frames[i],
			.len = (uint32_t)th_frame(frames[i], mr, ma, -1, len, i)};
}

/* A receiver that takes frames while the switch is still delivering to it
 * must find its backlog drained: the buffers it releases in the middle of
 * a delivery (after the ring was found full, before the frames that did
 * not fit were stored as waiting) are a "posted" signal that must not be
 * lost, or the frames wait until some later delivery, which may never
 * come (seen in CI as 32 frames left over at the end of a churn test). */
START_TEST(buffers_posted_during_a_delivery_drain_the_backlog)
{
	struct hs_switch_config cfg = {.n_workers = (unsigned)_i * 2};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a, *r;
	struct hs_mem_frame f[32];
	race_rig(sw, 16, 128, &a, &r, f);
	static struct th_reader rd; /* static: see th_reader */
	rd = (struct th_reader){.port = r};
	pthread_t t;
	pthread_create(&t, NULL, th_reader_main, &rd);
	uint64_t sent = 0, rounds = 0, deadline = th_mono_ms() + 1500;
	while (th_mono_ms() < deadline || rounds < 50) {
		send_burst(a, f, 32);
		sent += 32;
		rounds++;
		/* Nothing else is sent until the reader has it all: a frame
		 * left waiting now waits for good. */
		all_accounted(r, &rd, sent, rounds);
	}
	atomic_store(&rd.stop, true);
	pthread_join(t, NULL);
	ck_assert_uint_gt(th_pstats(r).tx_backlogged, 0);
	hs_switch_destroy(sw);
}
END_TEST

/* The same with the receiver paused and resumed around each burst: a
 * delivery that finds the port paused backlogs its frames, and the resume
 * must drain them even when it comes in the middle of that delivery
 * (found by review: resume read "nothing waits" before the delivery
 * stored that something did). */
struct pause_ctl {
	hs_port_t *port;
	_Atomic int phase; /* 0 idle, 1 go, 2 paused, 3 resumed, 4 sent */
	_Atomic bool stop, hold; /* hold: resume only once the burst is sent */
	unsigned seed;
};

static void *pause_ctl_main(void *arg)
{
	struct pause_ctl *c = arg;
	while (!atomic_load(&c->stop)) {
		if (atomic_load(&c->phase) != 1) {
			sched_yield();
			continue;
		}
		ck_assert_int_eq(hs_port_quiesce(c->port), 0);
		atomic_store(&c->phase, 2);
		/* Resume as soon as the burst's first frame is put in the
		 * backlog, in the middle of that delivery (or after 0-15 us
		 * if none is seen: sometimes before the delivery) */
		if (atomic_load(&c->hold))
			while (atomic_load(&c->phase) != 4)
				sched_yield();
		uint64_t bl0 = th_pstats(c->port).tx_backlogged;
		struct timespec t0, t1;
		long wait = (long)(rand_r(&c->seed) % 15000);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do
			clock_gettime(CLOCK_MONOTONIC, &t1);
		while ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec < wait &&
		       th_pstats(c->port).tx_backlogged == bl0);
		ck_assert_int_eq(hs_port_resume(c->port), 0);
		atomic_store(&c->phase, 3);
	}
	return NULL;
}

START_TEST(a_resume_during_a_paused_delivery_drains_the_backlog)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a, *r;
	struct hs_mem_frame f[32];
	race_rig(sw, 256, 1500, &a, &r, f);
	static struct th_reader rd; /* static: see th_reader */
	static struct pause_ctl ctl;
	rd = (struct th_reader){.port = r};
	ctl = (struct pause_ctl){.port = r, .seed = 1};
	pthread_t t, tc;
	pthread_create(&t, NULL, th_reader_main, &rd);
	pthread_create(&tc, NULL, pause_ctl_main, &ctl);
	uint64_t sent = 0, rounds = 0, deadline = th_mono_ms() + 1500;
	while (th_mono_ms() < deadline || rounds < 50) {
		/* every fourth burst surely meets the port paused */
		atomic_store(&ctl.hold, rounds % 4 == 0);
		atomic_store(&ctl.phase, 1);
		ck_assert(TH_WAIT(atomic_load(&ctl.phase) != 1, 5000));
		send_burst(a, f, 32);
		sent += 32;
		rounds++;
		if (atomic_load(&ctl.hold))
			atomic_store(&ctl.phase, 4);
		ck_assert(TH_WAIT(atomic_load(&ctl.phase) == 3, 5000));
		atomic_store(&ctl.phase, 0);
		all_accounted(r, &rd, sent, rounds);
	}
	atomic_store(&ctl.stop, true);
	atomic_store(&rd.stop, true);
	pthread_join(tc, NULL);
	pthread_join(t, NULL);
	ck_assert_uint_gt(th_pstats(r).tx_backlogged, 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(unarmed_receiver_gets_no_notification)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	burst_to(a, th_bcast, ma, 16);
	ck_assert_uint_eq(read_efd(hs_mem_rx_fd(b, 0)), 0);
	ck_assert_uint_eq(th_pstats(b).tx_notify, 0);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(armed_receiver_is_notified_once_per_batch)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	ck_assert_int_eq(hs_mem_rx_arm(b, 0), 0);
	burst_to(a, th_bcast, ma, 16);
	ck_assert_uint_eq(read_efd(hs_mem_rx_fd(b, 0)), 1);
	ck_assert_uint_eq(th_pstats(b).tx_notify, 1);
	/* One-shot: the next batch does not notify unless re-armed. */
	burst_to(a, th_bcast, ma, 16);
	ck_assert_uint_eq(read_efd(hs_mem_rx_fd(b, 0)), 0);
	/* Arming with frames waiting says so: do not sleep. */
	ck_assert_int_eq(hs_mem_rx_arm(b, 0), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(always_notify_receiver_gets_one_per_round_or_one_per_frame)
{
	for (int each = 0; each < 2; each++) {
		struct hs_switch_config cfg = {.flags = each ? HS_SW_NOTIFY_EACH : 0};
		hs_switch_t *sw = th_switch(&cfg);
		hs_port_t *a = th_port(sw, "a", 0);
		struct th_port_opts o = {.name = "b", .mem_flags = HS_MEM_RX_NOTIFY_ALWAYS};
		hs_port_t *b = th_port_opts(sw, &o);
		uint8_t ma[6];
		th_mac(ma, 1);
		burst_to(a, th_bcast, ma, 16); /* 16 frames, one round */
		ck_assert_uint_eq(read_efd(hs_mem_rx_fd(b, 0)), each ? 16 : 1);
		ck_assert_uint_eq(th_pstats(b).tx_notify, each ? 16 : 1);
		hs_switch_destroy(sw);
	}
}
END_TEST

START_TEST(running_peer_is_notified_once_per_round_only_if_it_asked)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	ck_assert_int_eq(hs_port_set_peer_state(b, 0, HS_PEER_RUNNING), 0);
	burst_to(a, th_bcast, ma, 16);
	ck_assert_uint_eq(read_efd(hs_mem_rx_fd(b, 0)), 0);
	hs_mem_rx_arm(b, 0);
	th_drain(b);
	hs_mem_rx_arm(b, 0);
	burst_to(a, th_bcast, ma, 16);
	ck_assert_uint_eq(read_efd(hs_mem_rx_fd(b, 0)), 1);
	ck_assert_int_eq(hs_port_set_peer_state(b, 0, 7), -EINVAL);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- several queues ----------------------------------------------------------------------------- */

START_TEST(multiqueue_ports_use_every_queue)
{
	hs_switch_t *sw = th_switch(NULL);
	struct th_port_opts oa = {.name = "a", .queues = 4};
	hs_port_t *a = th_port_opts(sw, &oa);
	hs_port_t *b = th_port(sw, "b", 0);
	ck_assert_uint_eq(hs_port_n_queues(a), 4);
	uint8_t ma[6];
	th_mac(ma, 1);
	for (uint16_t q = 0; q < 4; q++) {
		size_t n = th_frame(fb, th_bcast, ma, -1, 64, q);
		struct hs_mem_frame f = {.data = fb, .len = (uint32_t)n};
		ck_assert_int_eq(hs_mem_tx_burst(a, q, &f, 1), 1);
	}
	ck_assert_int_eq(th_drain(b), 4);
	ck_assert_uint_eq(th_pstats(a).rx_packets, 4);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- bursts of one flow and mixed bursts ----------------------------------------- */

/* A burst whose frames share one source and one destination takes a
 * shorter path (the source learned once, the table asked once or the
 * burst flooded as a whole) unless learning its source is refused, which
 * sends it through the frame-by-frame loop. The same
 * frames sent as bursts of one flow each and as mixed bursts must be
 * switched alike, every counter included: a known destination, an unknown one, a
 * destination behind the sender, a source that is static elsewhere (the
 * refusal counted per frame), a source that moves, a frame over the MTU,
 * a port at its MAC limit, a broadcast and a multicast destination. */
enum { FLOW_ROWS = 10, FLOW_REPS = 4 };

struct flow_rig {
	hs_switch_t *sw;
	hs_port_t *a, *b, *c, *lim;
	uint8_t frame[FLOW_ROWS][1600];
	uint32_t len[FLOW_ROWS];
	hs_port_t *from[FLOW_ROWS];
};

static void flow_rig_up(struct flow_rig *r, unsigned workers)
{
	memset(r, 0, sizeof(*r));
	struct hs_switch_config cfg = {.n_workers = workers};
	r->sw = th_switch(&cfg);
	r->a = th_port(r->sw, "a", 0);
	r->b = th_port(r->sw, "b", 0);
	r->c = th_port(r->sw, "c", 0);
	struct th_port_opts o = {.name = "lim", .mac_limit = 1};
	r->lim = th_port_opts(r->sw, &o);
	uint8_t ma[6], mb[6], mc[6], mu[6], mx[6], mm[6], ml[6], m2[6], m3[6], mn[6], mv[6];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_mac(mc, 3);
	th_mac(mu, 4);  /* never seen */
	th_mac(mx, 5);  /* static on b */
	th_mac(mm, 6);  /* learned on c, then sent from a */
	th_mac(ml, 7);  /* lim's one MAC */
	th_mac(m2, 8);
	th_mac(m3, 9);
	th_mac(mn, 10); /* new on lim */
	th_mac(mv, 11); /* learned on b, then sent from a */
	static const uint8_t mgrp[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
	ck_assert_int_eq(hs_fdb_add_static(r->sw, 1, mx, r->b), 0);
	const struct {
		hs_port_t *p;
		const uint8_t *m;
	} learn[] = {{r->a, ma}, {r->b, mb}, {r->c, mc}, {r->c, mm}, {r->lim, ml},
				 {r->b, mv}};
	for (unsigned k = 0; k < sizeof(learn) / sizeof(learn[0]); k++)
		ck_assert_int_eq(th_send(learn[k].p, fb, th_frame(fb, th_bcast, learn[k].m, -1, 64, k)), 0);
	const struct {
		hs_port_t *p;
		const uint8_t *dst, *src;
		uint32_t len;
	} row[FLOW_ROWS] = {
		{r->a, mb, ma, 64},     /* to b */
		{r->a, mu, m2, 64},     /* flooded; m2 learned */
		{r->a, ma, m3, 64},     /* behind the sender: dropped; m3 learned */
		{r->a, mc, mx, 64},     /* static on b: refused each time, to c */
		{r->a, mb, mm, 128},    /* mm moves from c to a, to b */
		{r->a, mb, ma, 1515},   /* over the MTU */
		{r->lim, mb, mn, 64},   /* lim at its limit: ml evicted for mn */
		{r->lim, mc, mn, 64},   /* to c */
		{r->a, th_bcast, ma, 64}, /* to b, c and lim */
		{r->a, mgrp, mv, 64},   /* to b, c and lim; mv moves from b to a */
	};
	for (unsigned k = 0; k < FLOW_ROWS; k++) {
		r->from[k] = row[k].p;
		r->len[k] = (uint32_t)th_frame(r->frame[k], row[k].dst, row[k].src, -1, row[k].len, k);
	}
	th_drain(r->a);
	th_drain(r->b);
	th_drain(r->c);
	th_drain(r->lim);
}

struct flow_result {
	int got[4];
	struct hs_port_stats st[4];
	struct hs_switch_stats sw;
};

static void flow_take(struct flow_rig *r, struct flow_result *o)
{
	hs_port_t *ps[4] = {r->a, r->b, r->c, r->lim};
	for (unsigned k = 0; k < 4; k++) {
		o->got[k] = th_drain(ps[k]);
		o->st[k] = th_pstats(ps[k]);
	}
	o->sw = th_sstats(r->sw);
	hs_switch_destroy(r->sw);
}

/* Large frames are copied in runs of 8 (src/core/deliver.c, run_begin):
 * bursts of 30 1000-byte frames, one of them too large for the
 * receiver's buffers, into rings with room for 0 to 32, with and without
 * a worker (_i & 1), through both copy loops (send_plain; with _i & 2,
 * HS_SW_NO_BACKLOG's send_srcs): every frame that found a buffer arrives
 * whole and in order, and the rest are counted. */
START_TEST(large_bursts_arrive_whole_whatever_room_is_left)
{
	static const unsigned rooms[] = {0, 1, 7, 8, 9, 11, 12, 15, 16, 17, 24, 29, 32};
	static uint8_t frames[30][1400];
	struct hs_mem_frame f[30];
	for (unsigned room = 0; room < sizeof(rooms) / sizeof(rooms[0]); room++) {
		struct hs_switch_config cfg = {.flags = _i & 2 ? HS_SW_NO_BACKLOG : 0,
					       .n_workers = (unsigned)_i & 1};
		const unsigned big = 11; /* the frame over the buffer */
		hs_switch_t *sw = th_switch(&cfg);
		struct th_port_opts o = {.name = "r", .ring = 32, .buf = 1200};
		hs_port_t *a;
		uint8_t ma[6], mr[6];
		hs_port_t *r = learned_pair(sw, &o, &a, ma, mr);
		/* fill the ring but for `room` buffers */
		send_seq(a, mr, ma, 1000, 32 - rooms[room], 64);
		for (unsigned i = 0; i < 30; i++) {
			size_t len = i == big ? 1300 : 1000;
			f[i] = (struct hs_mem_frame){.data = frames[i],
						     .len = th_frame(frames[i], mr, ma, -1, len, i)};
		}
		send_burst(a, f, 30);
		/* the oversize frame takes no buffer, and is reached only if
		 * the frames before it found theirs */
		const unsigned reached = rooms[room] >= big;
		unsigned want = rooms[room] < 29 ? rooms[room] : 29;
		unsigned fill = 32 - rooms[room];
		struct hs_mem_frame g[32];
		int n = hs_mem_rx_burst(r, 0, g, 32);
		ck_assert_int_eq(n, (int)(fill + want));
		for (unsigned i = fill, seq = 0; i < (unsigned)n; i++, seq++) {
			if (seq == big)
				seq++;
			ck_assert_uint_eq(g[i].len, 1000);
			ck_assert(!memcmp(g[i].data, frames[seq], 1000));
		}
		/* (before a release lets a backlog drain) */
		struct hs_port_stats st = th_pstats(r);
		ck_assert_uint_eq(st.drops[HS_DROP_OVERSIZE], reached);
		ck_assert_uint_eq(st.drops[HS_DROP_NO_BUFFER] + st.tx_backlogged + reached + want, 30);
		hs_mem_rx_release(r, 0, (unsigned)n);
		hs_switch_destroy(sw);
	}
}
END_TEST

START_TEST(bursts_of_one_flow_and_mixed_bursts_are_switched_alike)
{
	static struct flow_rig r;
	struct flow_result one, mixed;
	struct hs_mem_frame f[FLOW_ROWS * FLOW_REPS];

	/* each row as a burst of FLOW_REPS identical frames */
	flow_rig_up(&r, (unsigned)_i * 2);
	for (unsigned k = 0; k < FLOW_ROWS; k++) {
		for (unsigned j = 0; j < FLOW_REPS; j++)
			f[j] = (struct hs_mem_frame){.data = r.frame[k], .len = r.len[k]};
		send_burst(r.from[k], f, FLOW_REPS);
	}
	flow_take(&r, &one);

	/* the same frames, FLOW_REPS rounds of a burst per sender with one
	 * of each of its rows */
	flow_rig_up(&r, (unsigned)_i * 2);
	for (unsigned j = 0; j < FLOW_REPS; j++)
		for (unsigned s = 0; s < 2; s++) {
			hs_port_t *from = s ? r.lim : r.a;
			unsigned n = 0;
			for (unsigned k = 0; k < FLOW_ROWS; k++)
				if (r.from[k] == from)
					f[n++] = (struct hs_mem_frame){.data = r.frame[k],
								       .len = r.len[k]};
			send_burst(from, f, n);
		}
	flow_take(&r, &mixed);

	/* what a frame-by-frame switch does with FLOW_REPS of each row */
	struct flow_result *x = &one;
	ck_assert_int_eq(x->got[1], FLOW_REPS * 6); /* b: rows 0, 1, 4, 6, 8, 9 */
	ck_assert_int_eq(x->got[2], FLOW_REPS * 5); /* c: rows 1, 3, 7, 8, 9 */
	ck_assert_int_eq(x->got[3], FLOW_REPS * 3); /* lim: rows 1, 8, 9 */
	ck_assert_int_eq(x->got[0], 0);
	ck_assert_uint_eq(x->st[0].rx_flooded, FLOW_REPS);
	ck_assert_uint_eq(x->st[0].rx_broadcast, FLOW_REPS + 1); /* + the learning one */
	ck_assert_uint_eq(x->st[0].rx_multicast, FLOW_REPS);
	ck_assert_uint_eq(x->st[0].drops[HS_DROP_SAME_PORT], FLOW_REPS);
	ck_assert_uint_eq(x->st[0].drops[HS_DROP_OVERSIZE], FLOW_REPS);
	ck_assert_uint_eq(x->sw.fdb_static_refused, FLOW_REPS);
	ck_assert_uint_eq(x->sw.fdb_moved, 2); /* mm and mv to a */
	ck_assert_uint_eq(x->st[3].fdb_limit_hits, 1);
	ck_assert_uint_eq(x->st[3].fdb_entries, 1);

	/* and the mixed bursts the same, counter by counter */
	for (unsigned k = 0; k < 4; k++) {
		ck_assert_int_eq(mixed.got[k], one.got[k]);
		ck_assert_uint_eq(mixed.st[k].rx_packets, one.st[k].rx_packets);
		ck_assert_uint_eq(mixed.st[k].rx_flooded, one.st[k].rx_flooded);
		ck_assert_uint_eq(mixed.st[k].rx_broadcast, one.st[k].rx_broadcast);
		ck_assert_uint_eq(mixed.st[k].rx_multicast, one.st[k].rx_multicast);
		ck_assert_uint_eq(mixed.st[k].tx_packets, one.st[k].tx_packets);
		ck_assert_uint_eq(mixed.st[k].fdb_entries, one.st[k].fdb_entries);
		ck_assert_uint_eq(mixed.st[k].fdb_limit_hits, one.st[k].fdb_limit_hits);
		for (unsigned d = 0; d < HS_DROP__COUNT; d++)
			ck_assert_uint_eq(mixed.st[k].drops[d], one.st[k].drops[d]);
	}
	ck_assert_uint_eq(mixed.sw.fdb_entries, one.sw.fdb_entries);
	ck_assert_uint_eq(mixed.sw.fdb_learned, one.sw.fdb_learned);
	ck_assert_uint_eq(mixed.sw.fdb_moved, one.sw.fdb_moved);
	ck_assert_uint_eq(mixed.sw.fdb_evicted, one.sw.fdb_evicted);
	ck_assert_uint_eq(mixed.sw.fdb_static_refused, one.sw.fdb_static_refused);
}
END_TEST

/* The tag's 4 bytes are allowed above the MTU: 1518 bytes tagged pass,
 * 1519 do not, in one-flow and mixed bursts alike. */
START_TEST(tagged_frames_over_the_mtu_are_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	struct th_port_opts o = {.name = "t", .mode = HS_VLAN_TRUNK, .vlan = 0};
	hs_port_t *t = th_port_opts(sw, &o), *b = th_port(sw, "b", 0);
	uint8_t mt[6];
	th_mac(mt, 1);
	static uint8_t fr[4][1600];
	struct hs_mem_frame f[4];
	uint32_t len[4] = {1518, 1519, 1518, 1519};
	for (unsigned k = 0; k < 4; k++) {
		th_frame(fr[k], th_bcast, mt, 1, len[k], k);
		f[k] = (struct hs_mem_frame){.data = fr[k], .len = len[k]};
	}
	ck_assert_int_eq(hs_mem_tx_burst(t, 0, f, 4), 4);
	uint64_t ck[4];
	ck_assert(TH_WAIT(hs_mem_tx_reap(t, 0, ck, 4) == 4, 5000));
	ck_assert_int_eq(recv_one(b, rb), 1514);
	ck_assert_int_eq(recv_one(b, rb), 1514);
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(drops(t, HS_DROP_OVERSIZE), 2);
	hs_switch_destroy(sw);
}
END_TEST

/* Offload metadata is checked at the ingress also on a frame within the
 * MTU (no GSO): an unknown flag, a checksum field beyond the frame. */
START_TEST(small_frames_with_bad_offload_metadata_are_dropped)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6];
	th_mac(ma, 1);
	size_t n = th_frame(fb, th_bcast, ma, -1, 100, 1);
	struct hs_offload bad1 = {.flags = 0x80};
	struct hs_offload bad2 = {.flags = HS_OFF_NEEDS_CSUM, .csum_start = 90, .csum_offset = 16};
	ck_assert_int_eq(th_send_off(a, fb, n, &bad1), 0);
	ck_assert_int_eq(th_send_off(a, fb, n, &bad2), 0);
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(drops(a, HS_DROP_BAD_OFFLOAD), 2);
	hs_switch_destroy(sw);
}
END_TEST

/* A receiver whose peer stops using a queue
 * (hs_port_set_active_queues, as vhost-user does when a guest disables a
 * queue pair) must not keep frames in that queue's backlog for good,
 * neither delivered nor counted. */
START_TEST(a_backlog_on_a_queue_no_longer_used_is_not_stranded)
{
	hs_switch_t *sw = th_switch(NULL); /* no workers: the sender's context */
	hs_port_t *a = th_port(sw, "a", 0);
	struct th_port_opts ro = {.name = "r", .ring = 4, .queues = 2};
	hs_port_t *r = th_port_opts(sw, &ro);
	uint8_t ma[6], mr[6];
	th_mac(ma, 1);
	th_mac(mr, 2);
	ck_assert_int_eq(th_send(r, fb, th_frame(fb, th_bcast, mr, -1, 64, 0)), 0);
	th_drain(a);
	struct hs_mem_frame f[8];
	unsigned sent = 0;
	for (; sent < 10; sent++)
		ck_assert_int_eq(th_send(a, fb, th_frame(fb, mr, ma, -1, 64, sent)), 0);
	/* the one sender context has idx n_workers + 1 = 1: r's queue 1 got
	 * 4 in its ring, 6 wait in its backlog */
	ck_assert_int_eq(hs_mem_rx_burst(r, 0, f, 8), 0);
	ck_assert_int_eq(hs_mem_rx_burst(r, 1, f, 8), 4);
	ck_assert_uint_eq(th_pstats(r).tx_backlogged, 6);
	/* the peer stops using queue 1: it reads and posts on queue 0 only;
	 * what waited for queue 1 goes, counted, at once */
	ck_assert_int_eq(hs_port_set_active_queues(r, 1), 0);
	ck_assert_uint_eq(th_pstats(r).drops[HS_DROP_PORT_DOWN], 6);
	for (; sent < 20; sent++)
		ck_assert_int_eq(th_send(a, fb, th_frame(fb, mr, ma, -1, 64, sent)), 0);
	int got0 = 0;
	for (int n; (n = hs_mem_rx_burst(r, 0, f, 8)) > 0;) {
		hs_mem_rx_release(r, 0, (unsigned)n);
		got0 += n;
	}
	ck_assert_int_eq(got0, 10);
	/* a link flap, and time: still nothing delivered or dropped */
	ck_assert_int_eq(hs_port_set_link(r, false), 0);
	ck_assert_int_eq(hs_port_set_link(r, true), 0);
	for (; sent < 21; sent++)
		ck_assert_int_eq(th_send(a, fb, th_frame(fb, mr, ma, -1, 64, sent)), 0);
	ck_assert_int_eq(th_drain(r), 1);
	struct hs_port_stats st = th_pstats(r);
	/* 4 still in queue 1's ring (delivered), the rest read or dropped */
	ck_assert_msg(st.tx_packets + th_all_drops(&st) == sent,
		      "sent %u, delivered %llu, dropped %llu: %llu frames neither",
		      sent, (unsigned long long)st.tx_packets,
		      (unsigned long long)th_all_drops(&st),
		      (unsigned long long)(sent - st.tx_packets - th_all_drops(&st)));
	hs_switch_destroy(sw);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("datapath");
	TCase *tc = tcase_create("datapath");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, runt_frames_are_dropped_and_counted);
	tcase_add_test(tc, a_backlog_on_a_queue_no_longer_used_is_not_stranded);
	tcase_add_test(tc, group_source_address_is_dropped);
	tcase_add_test(tc, frames_over_the_mtu_are_dropped);
	tcase_add_test(tc, tagged_frames_over_the_mtu_are_dropped);
	tcase_add_test(tc, small_frames_with_bad_offload_metadata_are_dropped);
	tcase_add_test(tc, frames_larger_than_receiver_buffers_are_dropped_there);
	tcase_add_test(tc, destination_on_ingress_port_is_dropped);
	tcase_add_loop_test(tc, bursts_of_one_flow_and_mixed_bursts_are_switched_alike, 0, 2);
	tcase_add_test(tc, flood_with_no_other_member_counts_no_route);
	tcase_add_test(tc, broadcast_reaches_everyone_but_the_sender);
	tcase_add_test(tc, multicast_is_flooded_and_counted);
	tcase_add_test(tc, no_flood_ports_get_only_their_unicast);
	tcase_add_test(tc, no_learn_ports_are_never_learned);
	tcase_add_test(tc, access_ports_in_different_vlans_are_isolated);
	tcase_add_test(tc, tagged_frames_on_access_ports_are_dropped);
	tcase_add_test(tc, trunk_tags_and_access_untags);
	tcase_add_test(tc, trunk_native_vlan_is_untagged_both_ways);
	tcase_add_test(tc, trunk_to_trunk_keeps_the_tag_and_priority);
	tcase_add_test(tc, scatter_gather_frames_arrive_intact);
	tcase_add_test(tc, bad_tx_descriptors_are_refused);
	tcase_add_test(tc, backlog_holds_frames_until_buffers_are_posted_in_order);
	tcase_add_loop_test(tc, large_bursts_arrive_whole_whatever_room_is_left, 0, 4);
	tcase_add_test(tc, no_backlog_mode_drops_at_once);
	tcase_add_test(tc, double_copy_mode_delivers_the_same_frames);
	tcase_add_test(tc, backlog_bytes_bound_is_enforced);
	tcase_add_loop_test(tc, buffers_posted_during_a_delivery_drain_the_backlog, 0, 2);
	tcase_add_test(tc, a_resume_during_a_paused_delivery_drains_the_backlog);
	tcase_add_test(tc, unarmed_receiver_gets_no_notification);
	tcase_add_test(tc, armed_receiver_is_notified_once_per_batch);
	tcase_add_test(tc, always_notify_receiver_gets_one_per_round_or_one_per_frame);
	tcase_add_test(tc, running_peer_is_notified_once_per_round_only_if_it_asked);
	tcase_add_test(tc, multiqueue_ports_use_every_queue);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
