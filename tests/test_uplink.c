/*
 * test_uplink.c - the uplink backend (AF_PACKET, TPACKET_V3 rings) on one
 * end of a veth pair, in a network namespace of the test case's own; a
 * packet socket on the other end plays the wire: it injects frames and
 * reads what the switch sent, byte for byte. Covered: frames both ways,
 * the host's own unicast kept out of the switch, many rounds through
 * small rings (every block and slot reused many times, bursts larger than
 * the send ring waiting in the backlog for the kernel to free slots), VLAN
 * tags the kernel took off put back (and the tags of frames sent), a
 * fanout group of several queues (the host's own traffic kept out of it
 * too), the interface going down, up and away (the port's link follows),
 * a qdisc that stops the kernel's sends early (retried, no busy loop),
 * bad configurations. HS_TEST_WORKERS=N runs it with polling workers. Pings
 * and TCP between namespaces: tests/interop/test_uplink.sh.
 * Needs root (skips otherwise).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

struct rig {
	hs_switch_t *sw;
	pthread_t loop;
	hs_port_t *m, *m7, *up;
	int ps;          /* packet socket on ul1, the wire's far end */
	uint8_t ul0_mac[6];
};

static void *loop_main(void *arg)
{
	hs_run(arg);
	return NULL;
}

/* A namespace of this case's own with the veth pair ul0 (the switch's)
 * and ul1 (the test's), IPv6 off so that nothing else talks on them. */
static bool own_netns(void)
{
#ifdef HS_TEST_EMULATED
	return false; /* a user-mode emulator does not carry packet rings */
#endif
	if (geteuid() != 0 || unshare(CLONE_NEWNET))
		return false;
	return system("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
		      "net.ipv6.conf.default.disable_ipv6=1 && "
		      "ip link add ul0 type veth peer name ul1 && "
		      "ip link set ul0 up && ip link set ul1 up") == 0;
}

#define NEED_NETNS()                                                              \
	do {                                                                      \
		if (!own_netns()) {                                               \
			fprintf(stderr, "skipped: needs root (a network namespace) and a native build\n"); \
			return;                                                   \
		}                                                                 \
	} while (0)

static int uplink_add(hs_switch_t *sw, const struct hs_uplink_config *uc, bool trunk,
		      hs_port_t **out)
{
	struct hs_port_config pc = {.name = "up", .backend = HS_UPLINK_BACKEND,
				    .backend_config = uc, .backend_config_size = sizeof(*uc),
				    .vlan_mode = trunk ? HS_VLAN_TRUNK : HS_VLAN_ACCESS};
	return hs_port_add(sw, &pc, out);
}

static void rig_up(struct rig *r, struct hs_uplink_config *uc, bool trunk)
{
	const char *w = getenv("HS_TEST_WORKERS");
	struct hs_switch_config c = {.n_workers = w ? (unsigned)atoi(w) : 0};
	memset(r, 0, sizeof(*r));
	r->sw = th_switch(&c);
	r->m = th_port(r->sw, "m", 0);
	if (trunk)
		r->m7 = th_port(r->sw, "m7", 7);
	uc->ifname = "ul0";
	/* HS_TEST_UPLINK_MODE=xdp: the cases that take the default mode
	 * (AF_PACKET) run in AF_XDP mode (where built) */
	const char *m = getenv("HS_TEST_UPLINK_MODE");
	if (!uc->mode && m && !strcmp(m, "xdp"))
		uc->mode = HS_UPLINK_XDP;
	ck_assert_int_eq(uplink_add(r->sw, uc, trunk, &r->up), 0);
	const char *want = uc->mode != HS_UPLINK_XDP || !hs_uplink_xdp_built() ? "packet"
			   : (uc->flags & HS_UPLINK_XDP_GENERIC)                ? "xdp-generic"
										: "xdp-native";
	ck_assert_str_eq(hs_uplink_mode(r->up), want);
	pthread_create(&r->loop, NULL, loop_main, r->sw);

	r->ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	ck_assert_int_ge(r->ps, 0);
	int one = 1;
	ck_assert_int_eq(setsockopt(r->ps, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one,
				    sizeof(one)), 0);
	ck_assert_int_eq(setsockopt(r->ps, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one)), 0);
	int big = 16 << 20;
	setsockopt(r->ps, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = (int)if_nametoindex("ul1")};
	ck_assert_int_eq(bind(r->ps, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "ul0");
	ck_assert_int_eq(ioctl(r->ps, SIOCGIFHWADDR, &ifr), 0);
	memcpy(r->ul0_mac, ifr.ifr_hwaddr.sa_data, 6);
}

static void rig_down(struct rig *r)
{
	close(r->ps);
	hs_stop(r->sw);
	pthread_join(r->loop, NULL);
	hs_switch_destroy(r->sw);
}

/* Puts a frame on the wire toward the switch. */
static void inject(struct rig *r, const uint8_t *f, size_t n)
{
	ck_assert_int_eq(send(r->ps, f, n, 0), (ssize_t)n);
}

/* The next test frame (ethertype 0x88b5, tagged or not) the switch sent,
 * within 3 s; its VLAN from the kernel's metadata (-1: none). */
static ssize_t wire_next(struct rig *r, uint8_t *buf, size_t cap, int *vlan)
{
	for (;;) {
		struct pollfd p = {.fd = r->ps, .events = POLLIN};
		if (poll(&p, 1, 3000) != 1)
			return -1;
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
		} cb;
		struct iovec iov = {.iov_base = buf, .iov_len = cap};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cb,
				    .msg_controllen = sizeof(cb)};
		ssize_t n = recvmsg(r->ps, &mh, 0);
		if (n < 14 || buf[12] != 0x88 || buf[13] != 0xb5)
			continue;
		*vlan = -1;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			struct tpacket_auxdata a;
			if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA)
				continue;
			memcpy(&a, CMSG_DATA(c), sizeof(a));
			if (a.tp_status & TP_STATUS_VLAN_VALID)
				*vlan = a.tp_vlan_tci & 0xfff;
		}
		return n;
	}
}

/* Waits for one frame on mem port p and checks it is f. */
static void expect(hs_port_t *p, const uint8_t *f, size_t n)
{
	ck_assert(TH_WAIT(th_pending(p) >= 1, 3000));
	struct hs_mem_frame mf;
	ck_assert_int_eq(hs_mem_rx_burst(p, 0, &mf, 1), 1);
	ck_assert_uint_eq(mf.len, n);
	ck_assert_mem_eq(mf.data, f, n);
	hs_mem_rx_release(p, 0, 1);
}

#define NEED_XDP()                                                                \
	do {                                                                      \
		if (!hs_uplink_xdp_built()) {                                     \
			fprintf(stderr, "skipped: built without AF_XDP\n");     \
			return;                                                   \
		}                                                                 \
	} while (0)

/* Port m sends a frame from `mac`; the uplink's XDP map holds `want`
 * MACs within three seconds (its sync ticks every 100 ms). */
static void learn_behind(hs_port_t *m, hs_port_t *up, const uint8_t mac[6], uint64_t want)
{
	uint8_t f[200], b[6];
	th_mac(b, 0xb);
	ck_assert_int_eq(th_send(m, f, th_frame(f, b, mac, -1, 100, 1)), 0);
	ck_assert(TH_WAIT(backend_ctr(up, "xdp_macs") == want, 3000));
}

START_TEST(frames_cross_both_ways)
{
	NEED_NETNS();
	struct rig r;
	struct hs_uplink_config uc = {0};
	rig_up(&r, &uc, false);
	uint8_t a[6], b[6], f[1600], g[1600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	/* wire -> switch: a broadcast reaches the VM, as it was sent */
	size_t n = th_frame(f, th_bcast, b, -1, 200, 1);
	inject(&r, f, n);
	expect(r.m, f, n);
	/* switch -> wire: to b, learned behind the uplink */
	n = th_frame(f, b, a, -1, 1514, 2);
	ck_assert_int_eq(th_send(r.m, f, n), 0);
	int vlan;
	ck_assert_int_eq(wire_next(&r, g, sizeof(g), &vlan), (ssize_t)n);
	ck_assert_mem_eq(g, f, n);
	ck_assert_int_eq(vlan, -1);
	/* the host's unicast (to ul0's own MAC) stays out of the switch: the
	 * broadcast sent after it is the only frame that arrives */
	n = th_frame(f, r.ul0_mac, b, -1, 100, 3);
	inject(&r, f, n);
	n = th_frame(f, th_bcast, b, -1, 60, 4);
	inject(&r, f, n);
	expect(r.m, f, n);
	usleep(20000);
	ck_assert_int_eq(th_pending(r.m), 0);
	struct hs_port_stats st = th_pstats(r.up);
	ck_assert_uint_eq(st.rx_packets, 2);
	ck_assert_uint_eq(st.tx_packets, 1);
	ck_assert_uint_eq(backend_ctr(r.up, "rx_truncated"), 0);
	ck_assert_uint_eq(backend_ctr(r.up, "tx_kick_errors"), 0);
	rig_down(&r);
}
END_TEST

/* Small rings, many rounds: every receive block and send slot is reused
 * many times; bursts of 30 frames meet a send ring of 15 slots, so half
 * of each waits in the switch's backlog until the kernel frees slots.
 * A ring of two blocks holds little: when a slow switch (sanitizers, a
 * loaded machine) still holds both as the kernel needs one, the kernel
 * drops frames and counts them. So the check is the accounting: every
 * frame arrives intact and in order, or is counted as the kernel's drop
 * (and a pace of ten frames per block keeps those rare). */
START_TEST(small_rings_many_rounds)
{
	NEED_NETNS();
	struct rig r;
	struct hs_uplink_config uc = {.rx_blocks = 2, .rx_block_kib = 128, .tx_slots = 15};
	rig_up(&r, &uc, false);
	uint8_t a[6], b[6], f[1600], g[1600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	uint32_t seq = 0, next = 0, got = 0;
	uint64_t kdrops = 0;
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 50; i++) {
			size_t n = th_frame(f, a, b, -1, 1000 + (seq % 400), seq);
			inject(&r, f, n);
			seq++;
			if (i % 10 == 9)
				ck_assert(TH_WAIT(th_pstats(r.up).rx_packets +
							  (kdrops = backend_ctr(r.up, "rx_kernel_drops")) ==
						  seq, 5000));
		}
		struct hs_mem_frame mf[50];
		int k;
		ck_assert(TH_WAIT((k = hs_mem_rx_burst(r.m, 0, mf, 50)) ==
					  (int)(th_pstats(r.up).rx_packets - got), 3000));
		for (int i = 0; i < k; i++) {
			uint32_t s;
			memcpy(&s, (uint8_t *)mf[i].data + 14, 4);
			ck_assert_uint_ge(s, next); /* in order, some maybe dropped */
			ck_assert_uint_lt(s, seq);
			size_t n = th_frame(f, a, b, -1, 1000 + (s % 400), s);
			ck_assert_uint_eq(mf[i].len, n);
			ck_assert_mem_eq(mf[i].data, f, n);
			next = s + 1;
		}
		hs_mem_rx_release(r.m, 0, (unsigned)k);
		got += (uint32_t)k;
	}
	ck_assert_uint_eq(got + kdrops, 2000);
	if (kdrops)
		fprintf(stderr, "small rings: the kernel dropped %llu of 2000 frames (ring full)\n",
			(unsigned long long)kdrops);
	ck_assert_uint_lt(kdrops, 200);
	/* and back: 40 bursts of 30 */
	static uint8_t frames[30][1600];
	seq = 0;
	for (int round = 0; round < 40; round++) {
		struct hs_mem_frame mf[30];
		for (int i = 0; i < 30; i++) {
			size_t n = th_frame(frames[i], b, a, -1, 64 + (seq + (uint32_t)i) % 1450,
					    seq + (uint32_t)i);
			mf[i] = (struct hs_mem_frame){.data = frames[i], .len = (uint32_t)n};
		}
		ck_assert_int_eq(hs_mem_tx_burst(r.m, 0, mf, 30), 30);
		uint64_t ck[30];
		int reaped = 0;
		ck_assert(TH_WAIT((reaped += hs_mem_tx_reap(r.m, 0, ck, 30)) == 30, 3000));
		for (int i = 0; i < 30; i++, seq++) {
			int vlan;
			size_t n = th_frame(f, b, a, -1, 64 + seq % 1450, seq);
			ck_assert_int_eq(wire_next(&r, g, sizeof(g), &vlan), (ssize_t)n);
			ck_assert_mem_eq(g, f, n);
		}
	}
	struct hs_port_stats st = th_pstats(r.up);
	ck_assert_uint_eq(st.rx_packets, got);
	ck_assert_uint_eq(st.tx_packets, 1200);
	for (int d = 0; d < HS_DROP__COUNT; d++)
		ck_assert_uint_eq(st.drops[d], 0);
	rig_down(&r);
}
END_TEST

/* The kernel takes a VLAN tag off before a packet socket sees the frame
 * (into the ring's metadata): the uplink puts it back, so a trunk uplink
 * switches it by VLAN. Frames out of the trunk carry their tag. */
START_TEST(vlan_tags_put_back)
{
	NEED_NETNS();
	struct rig r;
	struct hs_uplink_config uc = {0};
	rig_up(&r, &uc, true);
	uint8_t a[6], b[6], f[1600], g[1600], inner[1600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	size_t n = th_frame(f, th_bcast, b, 7, 300, 1);
	inject(&r, f, n);
	/* m7 (access, VLAN 7) gets it untagged; m (VLAN 1) nothing */
	memcpy(inner, f, 12);
	memcpy(inner + 12, f + 16, n - 16);
	expect(r.m7, inner, n - 4);
	ck_assert_uint_eq(backend_ctr(r.up, "rx_vlan_restored"), 1);
	usleep(20000);
	ck_assert_int_eq(th_pending(r.m), 0);
	/* m7 -> b: tagged 7 on the wire */
	n = th_frame(f, b, a, -1, 500, 2);
	ck_assert_int_eq(th_send(r.m7, f, n), 0);
	int vlan;
	ssize_t got = wire_next(&r, g, sizeof(g), &vlan);
	ck_assert_int_eq(got, (ssize_t)n); /* the kernel shows it untagged ... */
	ck_assert_int_eq(vlan, 7);        /* ... with the tag in its metadata */
	ck_assert_mem_eq(g, f, n);
	rig_down(&r);
}
END_TEST

/* Four queues in a fanout group: frames of many flows spread over them
 * and every one arrives. */
START_TEST(fanout_queues)
{
	NEED_NETNS();
	struct rig r;
	struct hs_uplink_config uc = {.queues = 4};
	rig_up(&r, &uc, false);
	uint8_t a[6], f[128];
	th_mac(a, 0xa);
	for (unsigned i = 0; i < 400; i++) {
		uint8_t src[6];
		th_mac(src, 0x100 + i % 64);
		/* IPv4/UDP, so the flow hash sees addresses and ports */
		memset(f, 0, sizeof(f));
		memcpy(f, a, 6);
		memcpy(f + 6, src, 6);
		f[12] = 0x08;
		f[14] = 0x45;
		f[16] = 0;
		f[17] = 100;
		f[22] = 64;
		f[23] = 17;
		f[26] = 10, f[27] = 0, f[28] = (uint8_t)(i >> 8), f[29] = (uint8_t)i;
		f[30] = 10, f[31] = 1, f[32] = 0, f[33] = 1;
		f[34] = (uint8_t)(i >> 8), f[35] = (uint8_t)i, f[36] = 0x13, f[37] = 0x89;
		f[38] = 0, f[39] = 80;
		inject(&r, f, 114);
		if (i % 50 == 49) {
			ck_assert(TH_WAIT(th_pending(r.m) >= 50, 3000));
			ck_assert_int_eq(th_drain(r.m), 50);
		}
	}
	ck_assert_uint_eq(th_pstats(r.up).rx_packets, 400);
	/* the host's own traffic on the interface stays the host's, also in
	 * a fanout group: frames it sends out, frames to its address */
	int hs = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	ck_assert_int_ge(hs, 0);
	struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = (int)if_nametoindex("ul0")};
	ck_assert_int_eq(bind(hs, (struct sockaddr *)&sa, sizeof(sa)), 0);
	uint8_t b[6];
	th_mac(b, 0xb);
	for (unsigned i = 0; i < 20; i++) {
		size_t n = th_frame(f, th_bcast, r.ul0_mac, -1, 100, i);
		ck_assert_int_eq(send(hs, f, n, 0), (ssize_t)n);
		n = th_frame(f, r.ul0_mac, b, -1, 100, i);
		inject(&r, f, n);
	}
	close(hs);
	size_t n = th_frame(f, th_bcast, b, -1, 100, 99);
	inject(&r, f, n);
	expect(r.m, f, n); /* the only one: the switch's */
	usleep(20000);
	ck_assert_int_eq(th_pending(r.m), 0);
	rig_down(&r);
}
END_TEST

/* The interface goes down: the port's link follows it (frames for it are
 * dropped and counted by the switch, none wait stale in the ring); back
 * up, frames flow again. Deleted, the port's link goes down for good and
 * the switch runs on. */
START_TEST(interface_down_up_and_gone)
{
	NEED_NETNS();
	struct rig r;
	struct hs_uplink_config uc = {.tx_slots = 15};
	rig_up(&r, &uc, false);
	uint8_t a[6], b[6], f[1600], g[1600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	size_t n = th_frame(f, th_bcast, b, -1, 100, 1);
	inject(&r, f, n);
	expect(r.m, f, n);
	ck_assert(hs_port_link_up(r.up));
	ck_assert_int_eq(system("ip link set ul0 down"), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.up), 3000));
	/* more than the send ring holds */
	for (uint32_t seq = 2; seq < 42; seq++) {
		n = th_frame(f, b, a, -1, 100, seq);
		ck_assert_int_eq(th_send(r.m, f, n), 0);
	}
	ck_assert_uint_ge(th_pstats(r.up).drops[HS_DROP_PORT_DOWN], 40);
	ck_assert_int_eq(system("ip link set ul0 up"), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.up), 5000));
	/* frames flow again, and none of those sent while down */
	bool through = false;
	for (uint32_t seq = 100; !through && seq < 200; seq++) {
		n = th_frame(f, b, a, -1, 100, seq);
		ck_assert_int_eq(th_send(r.m, f, n), 0);
		int vlan;
		ssize_t got;
		while (!through && (got = wire_next(&r, g, sizeof(g), &vlan)) > 0) {
			uint32_t s;
			memcpy(&s, g + 14, 4);
			ck_assert_uint_ge(s, 100);
			through = got == (ssize_t)n && !memcmp(g, f, n);
		}
	}
	ck_assert(through);
	n = th_frame(f, th_bcast, b, -1, 100, 4);
	ck_assert(TH_WAIT((inject(&r, f, n), th_pending(r.m) >= 1), 5000));
	th_drain(r.m);
	/* gone */
	ck_assert_int_eq(system("ip link del ul0"), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.up), 3000));
	hs_port_t *m2 = th_port(r.sw, "m2", 0);
	n = th_frame(f, th_bcast, a, -1, 100, 5);
	ck_assert_int_eq(th_send(r.m, f, n), 0);
	expect(m2, f, n);
	rig_down(&r);
}
END_TEST

/* A qdisc that takes only a few frames at a time: the kernel's send
 * stops early (ENOBUFS) and the rest stays published; the uplink retries
 * until every frame has left, with a wait that grows (no busy loop),
 * also when no frame follows. */
START_TEST(a_full_qdisc_is_retried)
{
	NEED_NETNS();
	if (system("tc qdisc add dev ul0 root tbf rate 2mbit burst 4kb limit 4kb")) {
		fprintf(stderr, "skipped: no tc/tbf\n");
		return;
	}
	struct rig r;
	struct hs_uplink_config uc = {.tx_slots = 15};
	rig_up(&r, &uc, false);
	uint8_t a[6], b[6], g[1600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	static uint8_t frames[60][1600];
	struct hs_mem_frame mf[60];
	for (uint32_t i = 0; i < 60; i++) {
		size_t n = th_frame(frames[i], b, a, -1, 1400, i);
		mf[i] = (struct hs_mem_frame){.data = frames[i], .len = (uint32_t)n};
	}
	/* 60 x 1.4 kB at 2 Mbit/s: about 340 ms on the wire */
	ck_assert_int_eq(hs_mem_tx_burst(r.m, 0, mf, 60), 60);
	uint64_t t0 = th_mono_ms();
	for (uint32_t i = 0; i < 60; i++) {
		int vlan;
		ck_assert_int_eq(wire_next(&r, g, sizeof(g), &vlan), 1400);
		ck_assert_mem_eq(g, frames[i], 1400);
	}
	uint64_t ms = th_mono_ms() - t0;
	uint64_t retries = backend_ctr(r.up, "tx_retries");
	fprintf(stderr, "60 frames through a 2 Mbit/s qdisc: %llu ms, %llu retries\n",
		(unsigned long long)ms, (unsigned long long)retries);
	ck_assert_uint_gt(retries, 0);
	/* a busy loop would retry some thousand times a second */
	ck_assert_uint_lt(retries, 200 + ms);
	for (int d = 0; d < HS_DROP__COUNT; d++)
		ck_assert_uint_eq(th_pstats(r.up).drops[d], 0);
	rig_down(&r);
}
END_TEST

/* Frames the kernel had not sent when the interface went down (held back
 * by a slow qdisc) are dropped, not sent late when it comes back
 * (tx_stale); and the interface leaving a bridge is not it going away. */
START_TEST(no_stale_frames_after_a_down)
{
	NEED_NETNS();
	/* slow enough that, however slow this machine, frames still wait
	 * when the interface goes down (30 frames: some 3 s) */
	if (system("tc qdisc add dev ul0 root tbf rate 100kbit burst 2kb limit 3kb")) {
		fprintf(stderr, "skipped: no tc/tbf\n");
		return;
	}
	ck_assert_int_eq(system("ip link add br0 type bridge && ip link set ul0 master br0"), 0);
	struct rig r;
	struct hs_uplink_config uc = {.tx_slots = 15};
	rig_up(&r, &uc, false);
	uint8_t a[6], b[6], g[1600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	/* leaving the bridge: the bridge's own link messages about its port
	 * are not the interface's deletion */
	ck_assert_int_eq(system("ip link set ul0 nomaster && ip link del br0"), 0);
	usleep(200000);
	ck_assert(hs_port_link_up(r.up));
	static uint8_t frames[30][1600];
	struct hs_mem_frame mf[30];
	for (uint32_t i = 0; i < 30; i++) {
		size_t n = th_frame(frames[i], b, a, -1, 1400, i);
		mf[i] = (struct hs_mem_frame){.data = frames[i], .len = (uint32_t)n};
	}
	ck_assert_int_eq(hs_mem_tx_burst(r.m, 0, mf, 30), 30);
	/* the kernel's send stopped early: frames wait in the ring (a slow
	 * switch, sanitizers, may take a while to get them there) */
	ck_assert(TH_WAIT(backend_ctr(r.up, "tx_retries") > 0, 5000));
	ck_assert_int_eq(system("ip link set ul0 down"), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.up), 3000));
	int vlan;
	while (wire_next(&r, g, sizeof(g), &vlan) > 0) {
		/* what left before the down */
	}
	ck_assert_int_eq(system("ip link set ul0 up"), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.up), 5000));
	uint8_t f[1600];
	size_t n = th_frame(f, b, a, -1, 100, 100);
	ck_assert_int_eq(th_send(r.m, f, n), 0);
	ssize_t got = wire_next(&r, g, sizeof(g), &vlan);
	ck_assert_int_eq(got, (ssize_t)n); /* the new frame, none before it */
	ck_assert_mem_eq(g, f, n);
	/* and none of the old ones after it: what the ring still held was
	 * dropped (tx_stale; how many it held at the down depends on the
	 * machine's speed and the qdisc, so only the counter's presence is
	 * checked) */
	struct pollfd pf = {.fd = r.ps, .events = POLLIN};
	while (poll(&pf, 1, 300) == 1) {
		ssize_t k = recv(r.ps, g, sizeof(g), 0);
		if (k >= 18 && g[12] == 0x88 && g[13] == 0xb5) {
			uint32_t seq;
			memcpy(&seq, g + 14, 4);
			ck_assert_msg(seq >= 100, "frame %u from before the down sent after it", seq);
		}
	}
	ck_assert_uint_ne(backend_ctr(r.up, "tx_stale"), UINT64_MAX);
	rig_down(&r);
}
END_TEST

/* The AF_XDP fast path: unicast to a MAC the switch has behind another
 * port goes through the XDP program and the AF_XDP socket (xdp_rx_frames),
 * byte for byte; what the program must leave to the host's stack does not:
 * the host's own MAC (even when a VM claims it), broadcast, frames larger
 * than an AF_XDP frame, MACs the switch forgot. Nothing is lost either way. */
START_TEST(xdp_takes_only_the_switchs_unicast)
{
	NEED_NETNS();
	NEED_XDP();
	/* room for frames larger than an AF_XDP frame (native XDP on a veth
	 * allows an MTU up to about 3.5 KiB) */
	ck_assert_int_eq(system("ip link set ul0 mtu 2500 && ip link set ul1 mtu 2500"), 0);
	struct rig r;
	struct hs_uplink_config uc = {.mode = HS_UPLINK_XDP};
	rig_up(&r, &uc, false);
	struct hs_port_config mc = {.mtu = 2500};
	ck_assert_int_eq(hs_port_reconfigure(r.m, &mc, HS_PORT_SET_MTU), 0);
	ck_assert_int_eq(hs_port_reconfigure(r.up, &mc, HS_PORT_SET_MTU), 0);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_queues"), 1);
	uint8_t a[6], b[6], f[2600];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	/* a is learned behind m; the map follows within a tick */
	learn_behind(r.m, r.up, a, 1);
	size_t n;
	for (unsigned i = 0; i < 50; i++) {
		n = th_frame(f, a, b, -1, 60 + i * 30, 10 + i);
		inject(&r, f, n);
		expect(r.m, f, n);
	}
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_frames"), 50);
	/* larger than an AF_XDP frame: the AF_PACKET way, whole */
	n = th_frame(f, a, b, -1, 2000, 99);
	inject(&r, f, n);
	expect(r.m, f, n);
	/* broadcast: the AF_PACKET way (the host gets it too) */
	n = th_frame(f, th_bcast, b, -1, 80, 100);
	inject(&r, f, n);
	expect(r.m, f, n);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_frames"), 50);
	/* a VM claiming the host's MAC does not get the host's unicast */
	n = th_frame(f, b, r.ul0_mac, -1, 100, 101);
	ck_assert_int_eq(th_send(r.m, f, n), 0);
	usleep(300000); /* three ticks */
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_macs"), 1);
	n = th_frame(f, r.ul0_mac, b, -1, 100, 102);
	inject(&r, f, n);
	n = th_frame(f, th_bcast, b, -1, 60, 103);
	inject(&r, f, n);
	expect(r.m, f, n);
	usleep(20000);
	ck_assert_int_eq(th_pending(r.m), 0);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_frames"), 50);
	/* forgotten: out of the map, flooded the AF_PACKET way */
	hs_fdb_flush(r.sw, r.m, 0);
	ck_assert(TH_WAIT(backend_ctr(r.up, "xdp_macs") == 0, 3000));
	n = th_frame(f, a, b, -1, 300, 104);
	inject(&r, f, n);
	expect(r.m, f, n);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_frames"), 50);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_kernel_drops"), 0);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_bad"), 0);
	rig_down(&r);
	/* the program went with the port */
	ck_assert_int_ne(system("ip link show ul0 | grep -q xdp"), 0);
}
END_TEST

/* An interface that already has an XDP program (here another switch's
 * uplink) is left alone: the uplink falls back to AF_PACKET and says so;
 * the other program stays until its owner goes. Then generic XDP on
 * request. */
START_TEST(xdp_refused_falls_back)
{
	NEED_NETNS();
	NEED_XDP();
	hs_switch_t *other = th_switch(NULL);
	hs_port_t *op = NULL;
	struct hs_uplink_config oc = {.ifname = "ul0", .mode = HS_UPLINK_XDP};
	ck_assert_int_eq(uplink_add(other, &oc, false, &op), 0);
	ck_assert_str_eq(hs_uplink_mode(op), "xdp-native");
	ck_assert_uint_eq(backend_ctr(op, "xdp_vlan_hint"), 1);
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *p = NULL;
	struct hs_uplink_config uc = {.ifname = "ul0", .mode = HS_UPLINK_XDP};
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), 0);
	ck_assert_str_eq(hs_uplink_mode(p), "packet");
	ck_assert_int_eq(hs_port_del(p), 0);
	/* the other's program is still there, and goes with it */
	ck_assert_int_eq(system("ip link show ul0 | grep -q xdp"), 0);
	ck_assert_int_eq(hs_port_del(op), 0);
	ck_assert_int_ne(system("ip link show ul0 | grep -q xdp"), 0);
	hs_switch_destroy(other);
	hs_switch_destroy(sw);

	struct rig r;
	struct hs_uplink_config gc = {.mode = HS_UPLINK_XDP, .flags = HS_UPLINK_XDP_GENERIC};
	rig_up(&r, &gc, false);
	uint8_t a[6], b[6], f[200];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	learn_behind(r.m, r.up, a, 1);
	size_t n = th_frame(f, a, b, -1, 100, 2);
	inject(&r, f, n);
	expect(r.m, f, n);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_frames"), 1);
	rig_down(&r);
}
END_TEST

/* A secondary MAC of the interface (a macvlan's here: a container's or
 * the host's) is the host's too: a VM that claims it does not take its
 * unicast through the XDP path. */
START_TEST(xdp_never_takes_the_hosts_secondary_macs)
{
	NEED_NETNS();
	NEED_XDP();
	struct rig r;
	struct hs_uplink_config uc = {.mode = HS_UPLINK_XDP};
	rig_up(&r, &uc, false);
	if (system("ip link add mv0 link ul0 type macvlan mode bridge && "
		   "ip link set mv0 address 02:00:00:00:0c:01 && ip link set mv0 up")) {
		fprintf(stderr, "skipped: no macvlan\n");
		rig_down(&r);
		return;
	}
	uint8_t mv[6] = {2, 0, 0, 0, 0x0c, 1}, b[6], f[200], g[400];
	th_mac(b, 0xb);
	int hs = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
	struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = (int)if_nametoindex("mv0")};
	ck_assert_int_eq(bind(hs, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* the VM claims the macvlan's MAC, and one of its own */
	uint8_t a[6];
	th_mac(a, 0xa);
	size_t n = th_frame(f, b, mv, -1, 100, 1);
	ck_assert_int_eq(th_send(r.m, f, n), 0);
	learn_behind(r.m, r.up, a, 1);
	usleep(300000);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_macs"), 1);
	for (unsigned i = 0; i < 10; i++) {
		n = th_frame(f, mv, b, -1, 100, 10 + i);
		inject(&r, f, n);
	}
	unsigned got = 0;
	uint64_t end = th_mono_ms() + 3000;
	while (got < 10 && th_mono_ms() < end) {
		ssize_t k = recv(hs, g, sizeof(g), 0);
		if (k >= 14 && g[12] == 0x88 && g[13] == 0xb5 && !memcmp(g, mv, 6))
			got++;
		else if (k < 0)
			usleep(1000);
	}
	ck_assert_uint_eq(got, 10);
	ck_assert_uint_eq(backend_ctr(r.up, "xdp_rx_frames"), 0);
	close(hs);
	rig_down(&r);
}
END_TEST

/* The program is a bpf_link's: the interface moving to another namespace
 * takes it off there (no frames for VMs dropped into unbound sockets, no
 * program left for good), and the port going does too. While attached,
 * the interface's MTU may still be raised (the program takes
 * multi-buffer frames: it passes them). */
START_TEST(xdp_leaves_with_the_interface)
{
	NEED_NETNS();
	NEED_XDP();
	struct rig r;
	struct hs_uplink_config uc = {.mode = HS_UPLINK_XDP};
	rig_up(&r, &uc, false);
	ck_assert_int_eq(system("ip link show ul0 | grep -q xdp"), 0);
	ck_assert_int_eq(system("ip link set ul1 mtu 9000 && ip link set ul0 mtu 9000"), 0);
	ck_assert_int_eq(system("ip link set ul0 mtu 1500 && ip link set ul1 mtu 1500"), 0);
	char ns[32], cmd[160];
	snprintf(ns, sizeof(ns), "hsxdp%d", (int)getpid());
	snprintf(cmd, sizeof(cmd), "ip netns add %s && ip link set ul0 netns %s", ns, ns);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.up), 3000));
	/* The link may go down on the interface's down event, before the
	 * one that says it left the namespace (which detaches): wait for
	 * the program to go, not for the link. */
	snprintf(cmd, sizeof(cmd), "ip -n %s link show ul0 | grep -q xdp", ns);
	int there = 0;
	TH_WAIT((there = system(cmd)) != 0, 3000);
	rig_down(&r);
	int after = system(cmd);
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns);
	system(cmd);
	ck_assert_int_ne(there, 0);
	ck_assert_int_ne(after, 0);
}
END_TEST

/* A driver without the VLAN hint (tun): with no VLAN offload on the
 * device, its untagged frames are taken all the same. */
START_TEST(xdp_on_a_driver_without_the_vlan_hint)
{
	NEED_NETNS();
	NEED_XDP();
	int tfd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (tfd < 0) {
		fprintf(stderr, "skipped: no /dev/net/tun\n");
		return;
	}
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "tp0");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	ck_assert_int_eq(ioctl(tfd, TUNSETIFF, &ifr), 0);
	ck_assert_int_eq(system("ip link set tp0 up"), 0);
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *m = th_port(sw, "m", 0), *up = NULL;
	struct hs_uplink_config uc = {.ifname = "tp0", .mode = HS_UPLINK_XDP};
	ck_assert_int_eq(uplink_add(sw, &uc, false, &up), 0);
	ck_assert_str_eq(hs_uplink_mode(up), "xdp-native");
	pthread_t loop;
	pthread_create(&loop, NULL, loop_main, sw);
	uint8_t a[6], b[6], f[200];
	th_mac(a, 0xa);
	th_mac(b, 0xb);
	learn_behind(m, up, a, 1);
	usleep(200000);
	size_t n;
	for (unsigned i = 0; i < 20; i++) {
		n = th_frame(f, a, b, -1, 100, 10 + i);
		ck_assert_int_eq(write(tfd, f, n), (ssize_t)n);
		expect(m, f, n);
	}
	ck_assert_uint_eq(backend_ctr(up, "xdp_rx_frames"), 20);
	ck_assert_uint_eq(backend_ctr(up, "xdp_no_hint_passed"), 0);
	hs_stop(sw);
	pthread_join(loop, NULL);
	hs_switch_destroy(sw);
	close(tfd);
}
END_TEST

START_TEST(bad_configs)
{
	NEED_NETNS();
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *p = NULL;
	struct hs_uplink_config uc = {0};
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL); /* no name */
	uc.ifname = "nosuch0";
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -ENODEV);
	uc.ifname = "ul0";
	uc.rx_block_kib = 100; /* not a power of two */
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL);
	uc.rx_block_kib = 0;
	uc.queues = 17;
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL);
	uc.queues = 0;
	uc.mode = 7;
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL);
	uc.mode = 0;
	uc.xdp_frames = 100; /* not a power of two */
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL);
	uc.xdp_frames = 1u << 16;
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL);
	uc.xdp_frames = 0;
	uc.xdp_macs = (1u << 20) + 1;
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EINVAL);
	uc.xdp_macs = 0;
	uc.mode = HS_UPLINK_PACKET;
	uc.ifname = "lo"; /* not Ethernet */
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), -EPROTONOSUPPORT);
	uc.ifname = "ul0";
	ck_assert_int_eq(uplink_add(sw, &uc, false, &p), 0);
	ck_assert_ptr_null(hs_uplink_mode(th_port(sw, "m", 0)));
	ck_assert_int_eq(hs_port_del(p), 0);
	/* a caller built against V1 passes its sizeof (32), tail padding
	 * unset, where xdp_frames now is: ignored, not refused */
	memset((char *)&uc + HS_UPLINK_CONFIG_SIZE_V1, 0xaa,
	       offsetof(struct hs_uplink_config, xdp_frames) + 4 - HS_UPLINK_CONFIG_SIZE_V1);
	struct hs_port_config pc = {.name = "v1", .backend = HS_UPLINK_BACKEND,
				    .backend_config = &uc,
				    .backend_config_size = offsetof(struct hs_uplink_config,
								    xdp_frames) + 4};
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	ck_assert_int_eq(hs_port_del(p), 0);
	hs_switch_destroy(sw);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("uplink");
	TCase *tc = tcase_create("uplink");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, frames_cross_both_ways);
	tcase_add_test(tc, small_rings_many_rounds);
	tcase_add_test(tc, vlan_tags_put_back);
	tcase_add_test(tc, fanout_queues);
	tcase_add_test(tc, interface_down_up_and_gone);
	tcase_add_test(tc, a_full_qdisc_is_retried);
	tcase_add_test(tc, no_stale_frames_after_a_down);
	tcase_add_test(tc, xdp_takes_only_the_switchs_unicast);
	tcase_add_test(tc, xdp_refused_falls_back);
	tcase_add_test(tc, xdp_never_takes_the_hosts_secondary_macs);
	tcase_add_test(tc, xdp_leaves_with_the_interface);
	tcase_add_test(tc, xdp_on_a_driver_without_the_vlan_hint);
	tcase_add_test(tc, bad_configs);
	suite_add_tcase(s, tc);
	return th_run(s);
}
