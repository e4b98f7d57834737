/*
 * test_reconfig.c - hs_port_reconfigure: a port's VLANs, MTU, MAC limit
 * and flags changed in place. The port keeps its peer, counters and the
 * MACs that still apply; frames waiting for it that it no longer takes
 * as stored are dropped and counted; flooding follows; bad requests are
 * refused with nothing changed; and VLANs flipped while traffic flows
 * lose, reorder or misformat no frame.
 */
#include <pthread.h>
#include <unistd.h>

#include "helpers.h"

static int reconf_vlan(hs_port_t *p, enum hs_vlan_mode mode, uint16_t vlan,
		       const uint16_t *trunks, uint16_t n)
{
	struct hs_port_config c = {.size = sizeof(c), .vlan_mode = mode, .vlan = vlan,
				   .trunks = trunks, .n_trunks = n};
	return hs_port_reconfigure(p, &c, HS_PORT_SET_VLAN);
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

static bool known(hs_switch_t *sw, uint16_t vid, const uint8_t mac[6], hs_port_t *want)
{
	hs_port_t *p = NULL;
	return hs_fdb_lookup(sw, vid, mac, &p) == 0 && p == want;
}

/* An access port moves from VLAN 10 to 20: its MACs in 10 go, floods and
 * unicast follow the new VLAN, its counters and link stay. */
START_TEST(access_port_moves_vlan)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10), *b = th_port(sw, "b", 10), *c = th_port(sw, "c", 20);
	uint8_t ma[6], mb[6], mc[6], f[128], g[256];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_mac(mc, 3);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 0));
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 0));
	th_send(c, f, th_frame(f, th_bcast, mc, -1, 64, 0));
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(th_drain(a), 1);
	ck_assert_int_eq(th_drain(c), 0);
	ck_assert(known(sw, 10, mb, b));
	uint8_t static_mac[6];
	th_mac(static_mac, 9);
	ck_assert_int_eq(hs_fdb_add_static(sw, 10, static_mac, b), 0);
	struct hs_port_stats before = th_pstats(b);

	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_ACCESS, 20, NULL, 0), 0);
	ck_assert(!known(sw, 10, mb, b));        /* learned in a VLAN it left */
	ck_assert(known(sw, 10, static_mac, b)); /* static entries stay */
	struct hs_port_stats after = th_pstats(b);
	ck_assert_uint_eq(after.rx_packets, before.rx_packets);
	ck_assert_uint_eq(after.tx_packets, before.tx_packets);
	ck_assert(hs_port_link_up(b));

	/* a's broadcast (VLAN 10) no longer reaches b; c's (20) does */
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 1));
	ck_assert_int_eq(th_pending(b), 0);
	size_t len = th_frame(f, th_bcast, mc, -1, 70, 2);
	th_send(c, f, len);
	ck_assert_uint_eq(take(b, g), len);
	ck_assert_mem_eq(g, f, len);
	/* b's own frames now belong to VLAN 20: unicast to c, learned in 20 */
	len = th_frame(f, mc, mb, -1, 80, 3);
	th_send(b, f, len);
	ck_assert_uint_eq(take(c, g), len);
	ck_assert(known(sw, 20, mb, b));
	ck_assert_int_eq(th_pending(a), 0);
	/* a unicast from a to b's old address in 10 is flooded in 10, not
	 * sent to b */
	th_send(a, f, th_frame(f, mb, ma, -1, 64, 4));
	ck_assert_int_eq(th_pending(b), 0);
	hs_switch_destroy(sw);
}
END_TEST

/* Access to trunk and back: frames leave tagged with their VLAN except
 * the native one, and tagged frames from the port join their VLAN. */
START_TEST(access_to_trunk_and_back)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10), *b = th_port(sw, "b", 10), *c = th_port(sw, "c", 20);
	uint8_t ma[6], mb[6], mc[6], f[128], g[256], want[128];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_mac(mc, 3);
	static const uint16_t tr[] = {10, 20};
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_TRUNK, 0, tr, 2), 0);
	size_t len = th_frame(f, th_bcast, ma, -1, 100, 1);
	th_send(a, f, len);
	size_t tl = th_frame(want, th_bcast, ma, 10, 104, 1);
	ck_assert_uint_eq(take(b, g), tl);
	ck_assert_mem_eq(g, want, 16);
	ck_assert_mem_eq(g + 16, f + 12, len - 12);
	/* b sends tagged 20: c gets it untagged */
	len = th_frame(f, mc, mb, 20, 90, 2);
	th_send(b, f, len);
	ck_assert_uint_eq(take(c, g), len - 4);
	ck_assert_mem_eq(g, f, 12);
	ck_assert_mem_eq(g + 12, f + 16, len - 16);
	ck_assert(known(sw, 20, mb, b));
	/* native VLAN 10: a's frames arrive untagged again */
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_TRUNK, 10, tr, 2), 0);
	len = th_frame(f, th_bcast, ma, -1, 100, 3);
	th_send(a, f, len);
	ck_assert_uint_eq(take(b, g), len);
	ck_assert_mem_eq(g, f, len);
	ck_assert(known(sw, 20, mb, b)); /* still a member of 20 */
	/* back to access 20: tagged frames from b are dropped */
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_ACCESS, 20, NULL, 0), 0);
	struct hs_port_stats s0 = th_pstats(b);
	th_send(b, f, th_frame(f, mc, mb, 20, 90, 4));
	ck_assert_int_eq(th_pending(c), 0);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_VLAN], s0.drops[HS_DROP_VLAN] + 1);
	hs_switch_destroy(sw);
}
END_TEST

/* Frames that waited in the port's backlog across the change: kept when
 * the port still takes them as stored, dropped and counted when not. */
START_TEST(backlog_is_checked_again)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10);
	struct th_port_opts bo = {.name = "b", .vlan = 10, .ring = 4};
	hs_port_t *b = th_port_opts(sw, &bo);
	uint8_t ma[6], mb[6], f[128], g[256];
	th_mac(ma, 1);
	th_mac(mb, 2);
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 0));
	th_drain(a);
	/* 10 unicast frames: 4 fill b's ring, 6 wait */
	for (uint32_t i = 1; i <= 10; i++)
		ck_assert_int_eq(th_send(a, f, th_frame(f, mb, ma, -1, 64, i)), 0);
	ck_assert_uint_eq(th_pstats(b).tx_backlogged, 6);
	/* trunk with native VLAN 10: still untagged members, all kept */
	static const uint16_t tr[] = {30};
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_TRUNK, 10, tr, 1), 0);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_VLAN], 0);
	uint32_t seq = 1;
	size_t n;
	while ((n = take(b, g)) > 0) {
		uint32_t s;
		memcpy(&s, g + 14, 4);
		ck_assert_uint_eq(n, 64);
		ck_assert_uint_eq(s, seq++);
	}
	ck_assert_uint_eq(seq, 11);

	/* again, and now VLAN 10 becomes tagged: the 6 waiting ones were
	 * stored untagged, so they go (counted); the 4 in the ring had been
	 * delivered already */
	for (uint32_t i = 11; i <= 20; i++)
		ck_assert_int_eq(th_send(a, f, th_frame(f, mb, ma, -1, 64, i)), 0);
	static const uint16_t tr2[] = {10, 30};
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_TRUNK, 0, tr2, 2), 0);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_VLAN], 6);
	ck_assert_int_eq(th_drain(b), 4);
	/* frames sent now arrive tagged */
	th_send(a, f, th_frame(f, mb, ma, -1, 64, 21));
	ck_assert_uint_eq(take(b, g), 68);
	ck_assert_uint_eq(g[12], 0x81);
	ck_assert_uint_eq(((g[14] & 0x0f) << 8) | g[15], 10);

	/* and leaving VLAN 10 drops what waits in it */
	for (uint32_t i = 22; i <= 31; i++)
		ck_assert_int_eq(th_send(a, f, th_frame(f, mb, ma, -1, 64, i)), 0);
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_ACCESS, 30, NULL, 0), 0);
	ck_assert_uint_eq(th_pstats(b).drops[HS_DROP_VLAN], 12);
	ck_assert_int_eq(th_drain(b), 4);
	hs_switch_destroy(sw);
}
END_TEST

/* The MTU in force is the smaller of the host's and the peer's. */
START_TEST(mtu_changes_in_place)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	static uint8_t f[9100];
	uint8_t ma[6];
	th_mac(ma, 1);
	struct hs_port_config c = {.size = sizeof(c), .mtu = 1000};
	ck_assert_int_eq(th_send(a, f, th_frame(f, th_bcast, ma, -1, 1514, 1)), 0);
	ck_assert_int_eq(th_drain(b), 1);
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_MTU), 0);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 1514, 2));
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_OVERSIZE], 1);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 1014, 3));
	ck_assert_int_eq(th_drain(b), 1);
	/* the peer says 800: that is in force even after the host raises
	 * its own to 9000, until the peer lets go */
	ck_assert_int_eq(hs_port_set_mtu(a, 800), 0);
	c.mtu = 9000;
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_MTU), 0);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 1014, 4));
	ck_assert_int_eq(th_drain(b), 0);
	ck_assert_int_eq(hs_port_set_mtu(a, 0), 0);
	struct th_port_opts bo = {.name = "big", .buf = 9100};
	hs_port_t *big = th_port_opts(sw, &bo);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 9014, 5));
	ck_assert_int_eq(th_drain(big), 1);
	ck_assert_uint_eq(th_pstats(a).drops[HS_DROP_OVERSIZE], 2);
	hs_switch_destroy(sw);
}
END_TEST

/* Flags and the MAC limit. */
START_TEST(flags_and_limit_change_in_place)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t ma[6], f[128];
	th_mac(ma, 1);
	struct hs_port_config c = {.size = sizeof(c), .flags = HS_PORT_NO_FLOOD};
	ck_assert_int_eq(hs_port_reconfigure(b, &c, HS_PORT_SET_FLAGS), 0);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 1));
	ck_assert_int_eq(th_drain(b), 0);
	c.flags = HS_PORT_NO_LEARN;
	ck_assert_int_eq(hs_port_reconfigure(b, &c, HS_PORT_SET_FLAGS), 0);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 2));
	ck_assert_int_eq(th_drain(b), 1);
	uint8_t mb[6];
	th_mac(mb, 50);
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 3));
	ck_assert(!known(sw, 1, mb, b));
	c.flags = 0;
	ck_assert_int_eq(hs_port_reconfigure(b, &c, HS_PORT_SET_FLAGS), 0);
	th_send(b, f, th_frame(f, th_bcast, mb, -1, 64, 4));
	ck_assert(known(sw, 1, mb, b));

	/* limit 2: the third MAC replaces one of a's own */
	c.mac_limit = 2;
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_MAC_LIMIT), 0);
	for (unsigned i = 0; i < 3; i++) {
		uint8_t m[6];
		th_mac(m, 100 + i);
		th_advance_s(2);
		th_send(a, f, th_frame(f, th_bcast, m, -1, 64, 10 + i));
	}
	ck_assert_uint_eq(th_pstats(a).fdb_entries, 2);
	ck_assert_uint_ge(th_pstats(a).fdb_limit_hits, 1);
	c.mac_limit = 0; /* back to the switch's: none */
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_MAC_LIMIT), 0);
	uint8_t m[6];
	th_mac(m, 200);
	th_send(a, f, th_frame(f, th_bcast, m, -1, 64, 20));
	ck_assert_uint_eq(th_pstats(a).fdb_entries, 3);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(bad_requests_change_nothing)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10), *b = th_port(sw, "b", 10);
	struct hs_port_config c = {.size = sizeof(c), .vlan = 20};
	ck_assert_int_eq(hs_port_reconfigure(NULL, &c, HS_PORT_SET_VLAN), -EINVAL);
	ck_assert_int_eq(hs_port_reconfigure(a, NULL, HS_PORT_SET_VLAN), -EINVAL);
	ck_assert_int_eq(hs_port_reconfigure(a, &c, 0), -EINVAL);
	ck_assert_int_eq(hs_port_reconfigure(a, &c, 0x100), -EINVAL);
	c.vlan = 4095;
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_VLAN), -EINVAL);
	static const uint16_t tr[] = {10, 0};
	ck_assert_int_eq(reconf_vlan(a, HS_VLAN_ACCESS, 10, tr, 1), -EINVAL);
	ck_assert_int_eq(reconf_vlan(a, HS_VLAN_TRUNK, 0, tr, 2), -EINVAL);
	ck_assert_int_eq(reconf_vlan(a, HS_VLAN_TRUNK, 0, NULL, 3), -EINVAL);
	ck_assert_int_eq(reconf_vlan(a, (enum hs_vlan_mode)7, 0, NULL, 0), -EINVAL);
	c = (struct hs_port_config){.size = sizeof(c), .mtu = 20};
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_MTU), -EINVAL);
	c = (struct hs_port_config){.size = sizeof(c), .flags = 0x80};
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_FLAGS), -EINVAL);
	c = (struct hs_port_config){.size = 3};
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_FLAGS), -EINVAL);
	/* a bad VLAN in a request that also names a good MTU: nothing */
	c = (struct hs_port_config){.size = sizeof(c), .vlan = 5000, .mtu = 900};
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_VLAN | HS_PORT_SET_MTU),
			 -EINVAL);
	uint8_t ma[6], f[1600];
	th_mac(ma, 1);
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 1514, 1));
	ck_assert_int_eq(th_drain(b), 1); /* still VLAN 10, MTU 1500 */
	/* inside the host's own quiesce: it nests */
	ck_assert_int_eq(hs_port_quiesce(a), 0);
	ck_assert_int_eq(reconf_vlan(a, HS_VLAN_ACCESS, 20, NULL, 0), 0);
	ck_assert_int_eq(hs_port_resume(a), 0);
	ck_assert_int_eq(hs_port_resume(a), -EINVAL); /* balanced */
	th_send(a, f, th_frame(f, th_bcast, ma, -1, 64, 2));
	ck_assert_int_eq(th_drain(b), 0);
	/* a held handle of a deleted port */
	ck_assert_int_eq(hs_port_hold(a), 0);
	ck_assert_int_eq(hs_port_del(a), 0);
	ck_assert_int_eq(reconf_vlan(a, HS_VLAN_ACCESS, 10, NULL, 0), -ENODEV);
	c = (struct hs_port_config){.size = sizeof(c), .mtu = 900};
	ck_assert_int_eq(hs_port_reconfigure(a, &c, HS_PORT_SET_MTU), -ENODEV);
	hs_port_release(a);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- under traffic ---------------------------------------------------------- */

struct flipper {
	hs_port_t *b;
	bool leave;          /* also move b out of VLAN 10 (to 20) */
	_Atomic bool stop;
	_Atomic unsigned flips;
};

static void *flip_main(void *arg)
{
	struct flipper *fl = arg;
	static const uint16_t tr[] = {10};
	while (!atomic_load(&fl->stop)) {
		/* access 10 (untagged), trunk {10} (tagged), and maybe access
		 * 20 (gone from 10) */
		int rc;
		switch (atomic_load(&fl->flips) % (fl->leave ? 3 : 2)) {
		case 0: rc = reconf_vlan(fl->b, HS_VLAN_TRUNK, 0, tr, 1); break;
		case 1: rc = reconf_vlan(fl->b, HS_VLAN_ACCESS, 10, NULL, 0); break;
		default: rc = reconf_vlan(fl->b, HS_VLAN_ACCESS, 20, NULL, 0); break;
		}
		if (rc)
			abort();
		atomic_fetch_add(&fl->flips, 1);
	}
	return NULL;
}

/* Takes what b received, checking each frame; returns how many. */
static uint32_t take_checked(hs_port_t *b, uint32_t *last)
{
	struct hs_mem_frame r[64];
	int n;
	uint32_t got = 0;
	while ((n = hs_mem_rx_burst(b, 0, r, 64)) > 0) {
		for (int k = 0; k < n; k++) {
			const uint8_t *d = r[k].data;
			uint32_t s;
			if (r[k].len == 68) {
				ck_assert_uint_eq(d[12], 0x81);
				ck_assert_uint_eq(((d[14] & 0x0f) << 8) | d[15], 10);
				memcpy(&s, d + 18, 4);
			} else {
				ck_assert_uint_eq(r[k].len, 64);
				ck_assert_uint_eq(d[12], 0x88);
				memcpy(&s, d + 14, 4);
			}
			ck_assert_uint_gt(s, *last);
			*last = s;
			got++;
		}
		hs_mem_rx_release(b, 0, (unsigned)n);
	}
	return got;
}

/* a sends numbered frames to b (a static entry in VLAN 10) while another
 * thread changes b's VLANs; b drains its small ring only every 8 frames,
 * so frames wait in its backlog across changes. Every frame is either
 * received by b, well-formed and in order, or counted: as a VLAN drop at
 * a (b was out of VLAN 10: only when `leave`), as a VLAN drop at b (it
 * waited across a change of its tagging or VLANs), or as no_buffer (the
 * backlog was full). None is lost uncounted; none reaches b in a VLAN it
 * had left; a VLAN b stays in never drops a frame at the sender. */
static void flip_under_traffic(bool leave)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 10);
	struct th_port_opts bo = {.name = "b", .vlan = 10, .ring = 8};
	hs_port_t *b = th_port_opts(sw, &bo);
	hs_port_t *c = th_port(sw, "c", 20);
	uint8_t ma[6], mb[6], f[128];
	th_mac(ma, 1);
	th_mac(mb, 2);
	ck_assert_int_eq(hs_fdb_add_static(sw, 10, mb, b), 0);
	struct flipper fl = {.b = b, .leave = leave};
	pthread_t t;
	pthread_create(&t, NULL, flip_main, &fl);
	const uint32_t total = 4000;
	uint32_t got = 0, last = 0;
	for (uint32_t i = 1; i <= total; i++) {
		ck_assert_int_eq(th_send(a, f, th_frame(f, mb, ma, -1, 64, i)), 0);
		if (i % 8 == 0)
			got += take_checked(b, &last);
		/* On a loaded machine the flipper may not run at all while
		 * 4000 frames go: every 500 frames, wait (up to 10 s) until it
		 * has made one more change, so changes meet traffic. */
		for (int w = 0; i % 500 == 0 && w < 100000 &&
				atomic_load(&fl.flips) < i / 500; w++)
			usleep(100);
	}
	atomic_store(&fl.stop, true);
	pthread_join(t, NULL);
	ck_assert_int_eq(reconf_vlan(b, HS_VLAN_ACCESS, 10, NULL, 0), 0);
	/* what still waits comes out as b's ring drains */
	for (int k = 0; k < 100 && th_pstats(b).tx_packets + th_pstats(b).drops[HS_DROP_VLAN] +
					   th_pstats(b).drops[HS_DROP_NO_BUFFER] +
					   th_pstats(a).drops[HS_DROP_VLAN] < total; k++) {
		got += take_checked(b, &last);
		usleep(1000);
	}
	got += take_checked(b, &last);
	struct hs_port_stats sa = th_pstats(a), sb = th_pstats(b);
	ck_assert_int_eq(th_drain(c), 0); /* VLAN 20 never saw a's frames */
	fprintf(stderr, "flips %u%s: b got %u, dropped %llu at a, %llu waiting at b, "
		"%llu for room\n", atomic_load(&fl.flips), leave ? " (leaving 10)" : "", got,
		(unsigned long long)sa.drops[HS_DROP_VLAN],
		(unsigned long long)sb.drops[HS_DROP_VLAN],
		(unsigned long long)sb.drops[HS_DROP_NO_BUFFER]);
	ck_assert_uint_gt(atomic_load(&fl.flips), 3);
	if (!leave)
		ck_assert_uint_eq(sa.drops[HS_DROP_VLAN], 0);
	ck_assert_uint_eq(got + sa.drops[HS_DROP_VLAN] + sb.drops[HS_DROP_VLAN] +
				  sb.drops[HS_DROP_NO_BUFFER],
			  total);
	hs_switch_destroy(sw);
}

START_TEST(tagging_flips_under_traffic)
{
	flip_under_traffic(false);
}
END_TEST

START_TEST(vlans_flip_under_traffic)
{
	flip_under_traffic(true);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("reconfig");
	TCase *tc = tcase_create("reconfig");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, access_port_moves_vlan);
	tcase_add_test(tc, access_to_trunk_and_back);
	tcase_add_test(tc, backlog_is_checked_again);
	tcase_add_test(tc, mtu_changes_in_place);
	tcase_add_test(tc, flags_and_limit_change_in_place);
	tcase_add_test(tc, bad_requests_change_nothing);
	tcase_add_test(tc, tagging_flips_under_traffic);
	tcase_add_test(tc, vlans_flip_under_traffic);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
