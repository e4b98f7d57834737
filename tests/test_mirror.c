/*
 * test_mirror.c - port mirrors: what reaches the output (rx, tx, both),
 * byte for byte and formatted for its VLAN mode; the output leaves normal
 * switching; the rules (no chains, limits, duplicates); mirrors die with
 * their ports; and mirrors added and removed while traffic flows.
 */
#include <pthread.h>

#include "helpers.h"

static hs_mirror_t *mirror(hs_switch_t *sw, hs_port_t *src, hs_port_t *dst, uint32_t flags)
{
	struct hs_mirror_config mc = {.size = sizeof(mc), .flags = flags, .src = src, .dst = dst};
	hs_mirror_t *m = NULL;
	ck_assert_int_eq(hs_mirror_add(sw, &mc, &m), 0);
	return m;
}

/* HS_MIRROR_MAX new ports o0..o3, each an output of src's `flags`
 * traffic: src has no room left that way. */
static void fill_outputs(hs_switch_t *sw, hs_port_t *src, uint32_t flags)
{
	for (int i = 0; i < HS_MIRROR_MAX; i++) {
		char n[8];
		snprintf(n, sizeof(n), "o%d", i);
		mirror(sw, src, th_port(sw, n, 0), flags);
	}
}

/* Receives one frame from p into buf (returns its length, 0 if none). */
static size_t take(hs_port_t *p, uint8_t *buf)
{
	struct hs_mem_frame f;
	if (hs_mem_rx_burst(p, 0, &f, 1) != 1)
		return 0;
	memcpy(buf, f.data, f.len);
	size_t n = f.len;
	hs_mem_rx_release(p, 0, 1);
	return n;
}

START_TEST(rx_and_tx_copies_reach_the_output)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0), *c = th_port(sw, "c", 0),
		  *m = th_port(sw, "m", 0);
	uint8_t ma[6], mb[6], mc[6], f[128], g[256];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_mac(mc, 3);
	/* learn b and c first, with nothing mirrored (m gets the floods) */
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 0));
	th_send(c, f, th_frame(f, th_bcast, mc, -1, 64, 0));
	th_drain(a);
	th_drain(b);
	th_drain(c);
	ck_assert_int_eq(th_drain(m), 2);
	hs_mirror_t *rx = mirror(sw, a, m, HS_MIRROR_RX);
	/* a -> b: the copy from a's receive side, byte for byte */
	size_t len = th_frame(f, mb, ma, -1, 100, 7);
	ck_assert_int_eq(th_send(a, f, len), 0);
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_uint_eq(take(m, g), len);
	ck_assert_mem_eq(g, f, len);
	/* c -> b: not a's traffic, not copied */
	th_send(c, f, th_frame(f, mb, mc, -1, 80, 8));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_pending(m), 0);
	/* a tx mirror of b as well: c -> b is copied now, once */
	hs_mirror_t *tx = mirror(sw, b, m, HS_MIRROR_TX);
	len = th_frame(f, mb, mc, -1, 90, 9);
	th_send(c, f, len);
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_uint_eq(take(m, g), len);
	ck_assert_mem_eq(g, f, len);
	ck_assert_int_eq(th_pending(m), 0);
	/* a -> b is both a's rx and b's tx: one copy */
	th_send(a, f, th_frame(f, mb, ma, -1, 70, 10));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_drain(m), 1);
	/* broadcasts from a: the flood reaches b and c, not m (an output
	 * leaves flooding); the copy reaches m once */
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 11));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_drain(c), 1);
	ck_assert_int_eq(th_drain(m), 1);
	/* b's link down: what is sent to it is dropped, not copied */
	ck_assert_int_eq(hs_port_set_link(b, false), 0);
	th_send(c, f, th_frame(f, mb, mc, -1, 64, 14));
	ck_assert_int_eq(th_pending(m), 0);
	ck_assert_int_eq(th_drain(a), 1); /* flooded: b forgot mb with its link */
	ck_assert_int_eq(hs_port_set_link(b, true), 0);
	ck_assert_int_eq(hs_mirror_del(rx), 0);
	ck_assert_int_eq(hs_mirror_del(tx), 0);
	/* mb learned again (the flood reaches m, not mirrored) */
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 15));
	ck_assert_int_eq(th_drain(a) + th_drain(c) + th_drain(m), 3);
	/* back to normal: m gets floods again, a's traffic is not copied */
	th_send(a, f, th_frame(f, mb, ma, -1, 64, 12));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_pending(m), 0);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 13));
	ck_assert_int_eq(th_drain(m), 1);
	hs_switch_destroy(sw);
}
END_TEST

/* The output formats copies for its own VLAN mode: a trunk output sees
 * the VLAN of each frame as a tag, an access output untagged frames. */
START_TEST(copies_are_formatted_for_the_output)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10), *b = th_port(sw, "b", 10);
	struct th_port_opts to = {.name = "trunk", .mode = HS_VLAN_TRUNK};
	hs_port_t *t = th_port_opts(sw, &to);
	hs_port_t *acc = th_port(sw, "acc", 20);
	mirror(sw, a, t, HS_MIRROR_RX);
	mirror(sw, b, acc, HS_MIRROR_TX);
	uint8_t ma[6], mb[6], f[128], g[256], want[128];
	th_mac(ma, 1);
	th_mac(mb, 2);
	size_t len = th_frame(f, mb, ma, -1, 100, 1);
	ck_assert_int_eq(th_send(a, f, len), 0);
	ck_assert_int_eq(th_drain(b), 1);
	/* the trunk output: the frame with a VLAN 10 tag */
	size_t tl = th_frame(want, mb, ma, 10, 104, 1);
	ck_assert_uint_eq(take(t, g), tl);
	ck_assert_mem_eq(g, want, 16);
	ck_assert_mem_eq(g + 16, f + 12, len - 12);
	/* the access output (VLAN 20): untagged, as b got it */
	ck_assert_uint_eq(take(acc, g), len);
	ck_assert_mem_eq(g, f, len);
	hs_switch_destroy(sw);
}
END_TEST

/* What an output's peer sends is dropped and counted; its MACs go. */
START_TEST(an_output_leaves_switching)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *m = th_port(sw, "m", 0);
	uint8_t ma[6], mm[6], f[128];
	th_mac(ma, 1);
	th_mac(mm, 9);
	uint8_t ms[6];
	th_mac(ms, 10);
	th_send(m, f, th_frame(f, th_bcast, mm, -1, 64, 0));
	ck_assert_int_eq(th_drain(a), 1);
	ck_assert_int_eq(hs_fdb_lookup(sw, 1, mm, NULL), 0);
	ck_assert_int_eq(hs_fdb_add_static(sw, 1, ms, m), 0);
	hs_mirror_t *x = mirror(sw, a, m, HS_MIRROR_TX);
	/* no MAC leads to an output, static ones included */
	ck_assert_int_eq(hs_fdb_lookup(sw, 1, mm, NULL), -ENOENT);
	ck_assert_int_eq(hs_fdb_lookup(sw, 1, ms, NULL), -ENOENT);
	ck_assert_int_eq(hs_fdb_add_static(sw, 1, ms, m), -EBUSY);
	for (int i = 0; i < 3; i++)
		th_send(m, f, th_frame(f, ma, mm, -1, 64, (uint32_t)i));
	ck_assert_int_eq(th_pending(a), 0);
	ck_assert_int_eq(hs_fdb_lookup(sw, 1, mm, NULL), -ENOENT);
	struct hs_port_stats st = th_pstats(m);
	ck_assert_uint_eq(st.drops[HS_DROP_MIRROR_PORT], 3);
	ck_assert_uint_eq(st.rx_packets, 4);
	ck_assert_str_eq(hs_drop_reason_name(HS_DROP_MIRROR_PORT), "mirror_port");
	ck_assert_int_eq(hs_mirror_del(x), 0);
	th_send(m, f, th_frame(f, ma, mm, -1, 64, 5));
	ck_assert_int_eq(th_drain(a), 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(rules_are_enforced)
{
	hs_switch_t *sw = th_switch(NULL), *other = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0), *m = th_port(sw, "m", 0);
	hs_port_t *x = th_port(other, "x", 0);
	struct hs_mirror_config c = {.size = sizeof(c), .flags = HS_MIRROR_RX, .src = a, .dst = m};
	hs_mirror_t *h;
	ck_assert_int_eq(hs_mirror_add(NULL, &c, &h), -EINVAL);
	ck_assert_int_eq(hs_mirror_add(sw, NULL, &h), -EINVAL);
	c.size = 8;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), -EINVAL);
	c.size = 0; /* the first layout */
	c.flags = HS_MIRROR_TX;
	c.dst = b;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), 0);
	ck_assert_int_eq(hs_mirror_del(h), 0);
	c.dst = m;
	c.size = sizeof(c);
	c.flags = 0;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), -EINVAL);
	c.flags = 0x4;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), -EINVAL);
	c.flags = HS_MIRROR_RX;
	c.dst = a;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), -EINVAL); /* src == dst */
	c.dst = x;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), -EINVAL); /* another switch */
	c.dst = m;
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), 0);
	ck_assert_int_eq(hs_mirror_add(sw, &c, &h), -EEXIST);
	/* no chains: m is an output, so not a source; a is a source, so
	 * not an output */
	struct hs_mirror_config chain = {.size = sizeof(c), .flags = HS_MIRROR_TX, .src = m, .dst = b};
	ck_assert_int_eq(hs_mirror_add(sw, &chain, NULL), -EINVAL);
	chain.src = b;
	chain.dst = a;
	ck_assert_int_eq(hs_mirror_add(sw, &chain, NULL), -EINVAL);
	/* at most HS_MIRROR_MAX outputs per direction */
	fill_outputs(sw, b, HS_MIRROR_TX);
	hs_port_t *one_more = th_port(sw, "o9", 0);
	struct hs_mirror_config oc = {.size = sizeof(c), .flags = HS_MIRROR_TX, .src = b,
				      .dst = one_more};
	ck_assert_int_eq(hs_mirror_add(sw, &oc, NULL), -ENOSPC);
	oc.flags = HS_MIRROR_RX; /* the other direction has room */
	ck_assert_int_eq(hs_mirror_add(sw, &oc, NULL), 0);
	ck_assert_int_eq(hs_mirror_del(NULL), -EINVAL);
	hs_switch_destroy(other);
	hs_switch_destroy(sw); /* frees the mirrors with the ports */
}
END_TEST

/* A mirror's direction changes in place: rx only, then tx only, then
 * both, each copying just what it says; taking on a direction in which
 * the source has HS_MIRROR_MAX outputs already is refused, and the
 * mirror stays as it was. */
START_TEST(a_mirrors_direction_changes_in_place)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0), *m = th_port(sw, "m", 0);
	uint8_t ma[6], mb[6], f[128];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 0));
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 0));
	th_drain(a);
	th_drain(b);
	th_drain(m);
	hs_mirror_t *h = mirror(sw, a, m, HS_MIRROR_RX);
	/* copies of a -> b (a's rx) and of b -> a (a's tx), per flags */
	static const struct {
		uint32_t flags;
		int rx, tx;
	} step[] = {{HS_MIRROR_RX, 1, 0},
		    {HS_MIRROR_TX, 0, 1},
		    {HS_MIRROR_RX | HS_MIRROR_TX, 1, 1},
		    {HS_MIRROR_RX, 1, 0}};
	for (unsigned k = 0; k < sizeof(step) / sizeof(step[0]); k++) {
		ck_assert_int_eq(hs_mirror_set_flags(h, step[k].flags), 0);
		th_send(a, f, th_frame(f, mb, ma, -1, 64, 10 + k));
		ck_assert_int_eq(th_drain(b), 1);
		ck_assert_int_eq(th_drain(m), step[k].rx);
		th_send(b, f, th_frame(f, ma, mb, -1, 64, 20 + k));
		ck_assert_int_eq(th_drain(a), 1);
		ck_assert_int_eq(th_drain(m), step[k].tx);
	}
	ck_assert_int_eq(hs_mirror_set_flags(h, 0), -EINVAL);
	ck_assert_int_eq(hs_mirror_set_flags(h, 0x4), -EINVAL);
	ck_assert_int_eq(hs_mirror_set_flags(NULL, HS_MIRROR_RX), -EINVAL);
	/* a has HS_MIRROR_MAX tx outputs besides m: m cannot take on tx */
	fill_outputs(sw, a, HS_MIRROR_TX);
	ck_assert_int_eq(hs_mirror_set_flags(h, HS_MIRROR_TX), -ENOSPC);
	ck_assert_int_eq(hs_mirror_set_flags(h, HS_MIRROR_RX | HS_MIRROR_TX), -ENOSPC);
	ck_assert_int_eq(hs_mirror_set_flags(h, HS_MIRROR_RX), 0); /* unchanged: fine */
	th_send(a, f, th_frame(f, mb, ma, -1, 64, 30));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_drain(m), 1);
	th_send(b, f, th_frame(f, ma, mb, -1, 64, 31));
	ck_assert_int_eq(th_drain(a), 1);
	ck_assert_int_eq(th_drain(m), 0);
	hs_switch_destroy(sw);
}
END_TEST

/* Deleting either end deletes the mirror; the output works normally
 * again once no mirror uses it. */
START_TEST(mirrors_die_with_their_ports)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0), *m = th_port(sw, "m", 0);
	uint8_t ma[6], mb[6], f[128];
	th_mac(ma, 1);
	th_mac(mb, 2);
	mirror(sw, a, m, HS_MIRROR_RX | HS_MIRROR_TX);
	ck_assert_int_eq(hs_port_del(a), 0);
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 1));
	ck_assert_int_eq(th_drain(m), 1); /* m floods again */
	hs_port_t *c = th_port(sw, "c", 0);
	mirror(sw, c, b, HS_MIRROR_RX);
	ck_assert_int_eq(hs_port_del(b), 0);
	th_send(c, f, th_frame(f, th_bcast, ma, -1, 64, 2));
	ck_assert_int_eq(th_drain(m), 1);
	hs_switch_destroy(sw);
}
END_TEST

/* Mirrors come and go while a worker switches a stream: every frame
 * reaches its destination, copies only ever reach the output while a
 * mirror exists, and nothing crashes (run under ASan/TSan too). */
struct churn {
	hs_switch_t *sw;
	hs_port_t *a, *m;
	_Atomic bool stop;
	int cycles, set_failed;
};

static void *churn_main(void *arg)
{
	struct churn *ch = arg;
	while (!atomic_load(&ch->stop)) {
		struct hs_mirror_config mc = {.size = sizeof(mc), .flags = HS_MIRROR_RX | HS_MIRROR_TX,
					      .src = ch->a, .dst = ch->m};
		hs_mirror_t *h;
		if (hs_mirror_add(ch->sw, &mc, &h) == 0) {
			/* its direction changed in place too, with a worker
			 * switching meanwhile */
			ch->set_failed += hs_mirror_set_flags(h, HS_MIRROR_RX) != 0;
			ch->set_failed += hs_mirror_set_flags(h, HS_MIRROR_TX) != 0;
			hs_mirror_del(h);
			ch->cycles++;
		}
	}
	return NULL;
}

START_TEST(mirrors_change_under_traffic)
{
	struct hs_switch_config cfg = {.n_workers = 1};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0), *m = th_port(sw, "m", 0);
	uint8_t ma[6], mb[6], f[128];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 0));
	th_drain(a);
	th_drain(m);
	struct churn ch = {.sw = sw, .a = a, .m = m};
	pthread_t t;
	pthread_create(&t, NULL, churn_main, &ch);
	int got = 0, copies = 0;
	for (uint32_t i = 0; i < 2000; i++) {
		ck_assert_int_eq(th_send(a, f, th_frame(f, mb, ma, -1, 64, i)), 0);
		got += th_drain(b);
		copies += th_drain(m);
	}
	atomic_store(&ch.stop, true);
	pthread_join(t, NULL);
	got += th_drain(b);
	ck_assert_int_eq(got, 2000);
	ck_assert_int_le(copies, 2000);
	ck_assert_int_gt(ch.cycles, 0);
	ck_assert_int_eq(ch.set_failed, 0);
	hs_switch_destroy(sw);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mirror");
	TCase *tc = tcase_create("mirror");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, rx_and_tx_copies_reach_the_output);
	tcase_add_test(tc, copies_are_formatted_for_the_output);
	tcase_add_test(tc, an_output_leaves_switching);
	tcase_add_test(tc, rules_are_enforced);
	tcase_add_test(tc, a_mirrors_direction_changes_in_place);
	tcase_add_test(tc, mirrors_die_with_their_ports);
	tcase_add_test(tc, mirrors_change_under_traffic);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
