/*
 * test_vxlan_nh.c - the vxlan port's next-hop table (src/backends/
 * vxlan_nh.c) on its own, in a network namespace of each case's own
 * (root): every VTEP in use gets its turn at lookups however many there
 * are and however many never resolve; a burst that read the clock after
 * the resolver does not get its entry freed; the packet socket stays
 * send-only when the interface is made again; the neighbour table's
 * notices (changes, deletions, gateways, IPv6) are followed at the next
 * tick, and no other interface's, nor a forged one, changes anything. The wire and the public
 * API are tested in test_vxlan.c.
 */
#include <arpa/inet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "backends/vxlan_nh.h"
#include "helpers.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A namespace with a veth pair u0 (10.77.0.1/16) - u1; false if not root
 * (or under qemu-user, which does not translate packet socket options). */
static bool netns(void)
{
#ifdef HS_TEST_EMULATED
	return false;
#endif
	if (geteuid() != 0 || unshare(CLONE_NEWNET))
		return false;
	ck_assert_int_eq(system("ip link set lo up && ip link add u0 type veth peer name u1 && "
				"ip link set u0 up && ip link set u1 up && "
				"ip addr add 10.77.0.1/16 dev u0"), 0);
	return true;
}

#define NEED_NETNS()                                                              \
	do {                                                                      \
		if (!netns()) {                                                   \
			fprintf(stderr, "skipped: needs root (a network namespace), "  \
				"and no qemu-user\n");                      \
			return;                                                   \
		}                                                                 \
	} while (0)

static struct vx_nh_tab *tab(uint32_t cap)
{
	struct vx_nh_params p = {.ifname = "u0", .family = AF_INET, .ttl = 64, .capacity = cap};
	ck_assert_int_eq(inet_pton(AF_INET, "10.77.0.1", &p.local), 1);
	struct vx_nh_tab *t = NULL;
	ck_assert_int_eq(vx_nh_open(&t, &p, NULL), 0);
	return t;
}

static union vx_addr addr(unsigned i, unsigned net)
{
	char s[32];
	snprintf(s, sizeof(s), "10.%u.%u.%u", net, 1 + i / 250, 1 + i % 250);
	union vx_addr a;
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(inet_pton(AF_INET, s, &a.v4), 1);
	return a;
}

/* n VTEPs on u0 with permanent neighbours, and `dead` routed by another
 * interface, all in use (wanted every 50 ms): every good one is usable
 * within a few seconds, and stays so. */
static void turns(unsigned n, unsigned dead)
{
	char cmd[256];
	FILE *b = popen("ip -batch -", "w");
	ck_assert_ptr_nonnull(b);
	for (unsigned i = 0; i < n; i++) {
		union vx_addr a = addr(i, 77);
		char s[32];
		inet_ntop(AF_INET, &a.v4, s, sizeof(s));
		fprintf(b, "neigh add %s lladdr 02:00:00:00:%02x:%02x dev u0 nud permanent\n", s,
			i >> 8, i & 0xff);
	}
	ck_assert_int_eq(pclose(b), 0);
	if (dead) {
		snprintf(cmd, sizeof(cmd), "ip link add d0 type veth peer name d1 && ip link set d0 up "
			 "&& ip route add 10.99.0.0/16 dev d0");
		ck_assert_int_eq(system(cmd), 0);
	}
	struct vx_nh_tab *t = tab(n + dead + 16);
	uint64_t start = mono_ms(), all_at = 0;
	unsigned lapses = 0;
	while (mono_ms() - start < 6000) {
		unsigned ok = 0;
		uint64_t now = mono_ms();
		pthread_mutex_lock(&lock);
		for (unsigned i = 0; i < n + dead; i++) {
			union vx_addr a = i < n ? addr(i, 77) : addr(i - n, 99);
			struct vx_nh *e = vx_nh_get(t, &a, now);
			ck_assert_ptr_nonnull(e);
			if (i < n && vx_nh_usable(e, now, 1500))
				ok++;
			if (i >= n)
				ck_assert(!vx_nh_usable(e, now, 1500));
		}
		pthread_mutex_unlock(&lock);
		if (ok == n && !all_at)
			all_at = now;
		else if (ok < n && all_at)
			lapses++;
		vx_nh_tick(t, &lock);
		usleep(50000);
	}
	ck_assert_msg(all_at, "not every VTEP got a usable next hop in 6 s");
	ck_assert_uint_eq(lapses, 0);
	fprintf(stderr, "%u VTEPs (+%u routed elsewhere): all usable after %llu ms\n", n, dead,
		(unsigned long long)(all_at - start));
	vx_nh_close(t);
}

START_TEST(every_vtep_gets_its_turn)
{
	NEED_NETNS();
	turns(1000, 0);
}
END_TEST

START_TEST(vteps_that_never_resolve_do_not_starve_the_others)
{
	NEED_NETNS();
	turns(50, 100);
}
END_TEST

START_TEST(a_later_clock_on_the_data_path_frees_nothing)
{
	NEED_NETNS();
	ck_assert_int_eq(system("ip neigh add 10.77.1.1 lladdr 02:00:00:00:00:01 dev u0 "
				"nud permanent"), 0);
	struct vx_nh_tab *t = tab(16);
	union vx_addr a = addr(0, 77);
	/* a burst whose clock reads a little ahead of the resolver's */
	for (int i = 0; i < 10; i++) {
		pthread_mutex_lock(&lock);
		struct vx_nh *e = vx_nh_get(t, &a, mono_ms() + 50);
		pthread_mutex_unlock(&lock);
		ck_assert_ptr_nonnull(e);
		vx_nh_tick(t, &lock);
	}
	pthread_mutex_lock(&lock);
	struct vx_nh *e = vx_nh_get(t, &a, mono_ms());
	ck_assert(vx_nh_usable(e, mono_ms(), 100));
	pthread_mutex_unlock(&lock);
	vx_nh_close(t);
}
END_TEST

/* Counter i of t (vx_nh_counter_names: 2 nh_resolved, 3 nh_changed,
 * 6 nh_noticed, 7 nh_notices_lost). */
static uint64_t ctr(struct vx_nh_tab *t, unsigned i)
{
	uint64_t c[VX_NH_NCTR];
	vx_nh_read(t, c);
	return c[i];
}

static void sh(const char *cmd)
{
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

/* Wants a, ticks, and says whether a is usable (its MAC in mac). */
static bool want_tick(struct vx_nh_tab *t, const union vx_addr *a, uint8_t mac[6])
{
	pthread_mutex_lock(&lock);
	vx_nh_get(t, a, mono_ms());
	pthread_mutex_unlock(&lock);
	vx_nh_tick(t, &lock);
	pthread_mutex_lock(&lock);
	struct vx_nh *e = vx_nh_get(t, a, mono_ms());
	bool ok = vx_nh_usable(e, mono_ms(), 100);
	memcpy(mac, e->mac, 6);
	pthread_mutex_unlock(&lock);
	return ok;
}

static const uint8_t mac1[6] = {2, 0, 0, 0, 0, 1}, mac2[6] = {2, 0, 0, 0, 0, 2};

/* A next hop replaced or deleted in the neighbour table is followed at
 * the next tick, not only at the entry's recheck a second later: the
 * kernel queues its notice before `ip neigh` returns, so the tick finds
 * it (nh_noticed says that the notice, not a recheck that came due on a
 * slow machine, made the entry look again). */
START_TEST(a_changed_or_deleted_next_hop_is_followed_at_the_next_tick)
{
	NEED_NETNS();
	sh("ip neigh add 10.77.1.1 lladdr 02:00:00:00:00:01 dev u0 nud permanent");
	struct vx_nh_tab *t = tab(16);
	union vx_addr a = addr(0, 77);
	uint8_t m[6];
	ck_assert_str_eq(vx_nh_counter_names[3], "nh_changed");
	ck_assert_str_eq(vx_nh_counter_names[6], "nh_noticed");
	ck_assert(want_tick(t, &a, m)); /* looked up: mac1 */
	ck_assert_mem_eq(m, mac1, 6);
	sh("ip neigh replace 10.77.1.1 lladdr 02:00:00:00:00:02 dev u0 nud permanent");
	ck_assert(want_tick(t, &a, m));
	ck_assert_mem_eq(m, mac2, 6);
	ck_assert_uint_eq(ctr(t, 3), 1); /* counted as a change, not a resolution */
	ck_assert_uint_eq(ctr(t, 6), 1);
	sh("ip neigh del 10.77.1.1 dev u0");
	ck_assert(!want_tick(t, &a, m)); /* nobody answers for it */
	ck_assert_uint_eq(ctr(t, 6), 2);
	vx_nh_close(t);
}
END_TEST

/* Notices that keep the MAC (the kernel's state machine at work) and a
 * delete followed by the same entry again before the tick change nothing;
 * a gateway's new MAC moves every VTEP behind it. */
START_TEST(a_gateways_notices_move_every_vtep_behind_it_and_no_other)
{
	NEED_NETNS();
	sh("ip neigh add 10.77.1.1 lladdr 02:00:00:00:00:01 dev u0 nud permanent && "
	   "ip route add 10.88.0.0/16 via 10.77.1.1");
	struct vx_nh_tab *t = tab(16);
	union vx_addr a[3] = {addr(0, 88), addr(1, 88), addr(2, 88)};
	uint8_t m[6];
	for (int i = 0; i < 3; i++) {
		ck_assert(want_tick(t, &a[i], m));
		ck_assert_mem_eq(m, mac1, 6);
	}
	static const char *const st[] = {"stale", "reachable", "delay", "probe", "noarp",
					 "permanent"};
	for (unsigned i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
		char cmd[160];
		snprintf(cmd, sizeof(cmd), "ip neigh replace 10.77.1.1 lladdr 02:00:00:00:00:01 "
			 "dev u0 nud %s", st[i]);
		sh(cmd);
		ck_assert(want_tick(t, &a[0], m));
	}
	sh("ip neigh del 10.77.1.1 dev u0 && "
	   "ip neigh add 10.77.1.1 lladdr 02:00:00:00:00:01 dev u0 nud permanent");
	ck_assert(want_tick(t, &a[0], m));
	ck_assert_uint_eq(ctr(t, 6), 0);
	ck_assert_uint_eq(ctr(t, 2), 3); /* the first lookups only */
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 3; i++)
		vx_nh_get(t, &a[i], mono_ms());
	pthread_mutex_unlock(&lock);
	sh("ip neigh replace 10.77.1.1 lladdr 02:00:00:00:00:02 dev u0 nud permanent");
	vx_nh_tick(t, &lock);
	pthread_mutex_lock(&lock);
	for (int i = 0; i < 3; i++) {
		struct vx_nh *e = vx_nh_get(t, &a[i], mono_ms());
		ck_assert(vx_nh_usable(e, mono_ms(), 100));
		ck_assert_mem_eq(e->mac, mac2, 6);
	}
	pthread_mutex_unlock(&lock);
	ck_assert_uint_eq(ctr(t, 6), 3);
	ck_assert_uint_eq(ctr(t, 3), 3);
	vx_nh_close(t);
}
END_TEST

/* IPv6 through a link-local gateway; an IPv4 notice on the same
 * interface is not its business. */
START_TEST(an_ipv6_link_local_gateway_is_followed)
{
	NEED_NETNS();
	sh("ip -6 addr add 2001:db8::1/64 dev u0 nodad && "
	   "ip -6 neigh add fe80::2 lladdr 02:00:00:00:00:01 dev u0 nud permanent && "
	   "ip -6 route add 2001:db8:99::/64 via fe80::2 dev u0 && "
	   "ip neigh add 10.77.1.1 lladdr 02:00:00:00:00:01 dev u0 nud permanent");
	struct vx_nh_params p = {.ifname = "u0", .family = AF_INET6, .ttl = 64, .capacity = 16};
	ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::1", &p.local), 1);
	struct vx_nh_tab *t = NULL;
	ck_assert_int_eq(vx_nh_open(&t, &p, NULL), 0);
	union vx_addr a;
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8:99::5", &a.v6), 1);
	uint8_t m[6];
	ck_assert(want_tick(t, &a, m));
	ck_assert_mem_eq(m, mac1, 6);
	sh("ip neigh del 10.77.1.1 dev u0");
	ck_assert(want_tick(t, &a, m));
	ck_assert_uint_eq(ctr(t, 6), 0);
	sh("ip -6 neigh replace fe80::2 lladdr 02:00:00:00:00:02 dev u0 nud permanent");
	ck_assert(want_tick(t, &a, m));
	ck_assert_mem_eq(m, mac2, 6);
	ck_assert_uint_eq(ctr(t, 6), 1);
	sh("ip -6 neigh del fe80::2 dev u0");
	ck_assert(!want_tick(t, &a, m));
	ck_assert_uint_eq(ctr(t, 6), 2);
	vx_nh_close(t);
}
END_TEST

/* Thousands of neighbours and bridge entries of other interfaces between
 * two ticks (a host's churn, an EVPN bridge's FDB): none reaches the
 * table's socket (its filter), none is lost, no entry lapses or is looked
 * up again for them. And a notice a process forges to the group is not
 * the kernel's: ignored. */
START_TEST(other_interfaces_churn_and_forged_notices_change_nothing)
{
	NEED_NETNS();
	sh("ip link add d0 type veth peer name d1 && ip link set d0 up && ip link set d1 up && "
	   "ip addr add 10.99.0.1/16 dev d0 && ip link add br9 type bridge && "
	   "ip link add d2 type veth peer name d3 && ip link set d2 master br9 && "
	   "ip link set br9 up && ip link set d2 up");
	FILE *b = popen("ip -batch -", "w");
	ck_assert_ptr_nonnull(b);
	for (unsigned i = 0; i < 50; i++)
		fprintf(b, "neigh add 10.77.%u.%u lladdr 02:00:00:00:00:%02x dev u0 nud permanent\n",
			1 + i / 250, 1 + i % 250, i);
	ck_assert_int_eq(pclose(b), 0);
	struct vx_nh_tab *t = tab(64);
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < 50; i++) {
		union vx_addr a = addr(i, 77);
		vx_nh_get(t, &a, mono_ms());
	}
	pthread_mutex_unlock(&lock);
	vx_nh_tick(t, &lock);
	ck_assert_uint_eq(ctr(t, 2), 50);
	b = popen("ip -batch -", "w");
	ck_assert_ptr_nonnull(b);
	for (unsigned i = 0; i < 2000; i++)
		fprintf(b, "neigh add 10.99.%u.%u lladdr 02:00:00:01:%02x:%02x dev d0 nud permanent\n",
			1 + i / 250, 1 + i % 250, i >> 8, i & 0xff);
	ck_assert_int_eq(pclose(b), 0);
	b = popen("bridge -batch -", "w");
	ck_assert_ptr_nonnull(b);
	for (unsigned i = 0; i < 2000; i++)
		fprintf(b, "fdb add 02:00:00:02:%02x:%02x dev d2 master static\n", i >> 8, i & 0xff);
	ck_assert_int_eq(pclose(b), 0);
	/* forged: a delete of the first VTEP's neighbour, from a process */
	int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	ck_assert_int_ge(fd, 0);
	struct {
		struct nlmsghdr h;
		struct ndmsg nd;
		struct rtattr ra;
		struct in_addr dst;
	} msg = {0};
	msg.h.nlmsg_len = sizeof(msg);
	msg.h.nlmsg_type = RTM_DELNEIGH;
	msg.nd.ndm_family = AF_INET;
	msg.nd.ndm_ifindex = (int)if_nametoindex("u0");
	msg.nd.ndm_state = NUD_FAILED;
	msg.ra.rta_len = RTA_LENGTH(sizeof(struct in_addr));
	msg.ra.rta_type = NDA_DST;
	msg.dst = addr(0, 77).v4;
	struct sockaddr_nl to = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_NEIGH};
	ck_assert_int_eq(sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&to, sizeof(to)),
			 (ssize_t)sizeof(msg));
	close(fd);
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < 50; i++) {
		union vx_addr a = addr(i, 77);
		vx_nh_get(t, &a, mono_ms());
	}
	pthread_mutex_unlock(&lock);
	vx_nh_tick(t, &lock);
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < 50; i++) {
		union vx_addr a = addr(i, 77);
		ck_assert(vx_nh_usable(vx_nh_get(t, &a, mono_ms()), mono_ms(), 100));
	}
	pthread_mutex_unlock(&lock);
	ck_assert_uint_eq(ctr(t, 6), 0);
	ck_assert_uint_eq(ctr(t, 7), 0);
	ck_assert_uint_eq(ctr(t, 2), 50); /* nothing looked up again */
	vx_nh_close(t);
}
END_TEST

/* The protocol of the packet socket bound to interface index idx, from
 * /proc/net/packet (-1 if none). */
static int packet_proto(int idx)
{
	FILE *f = fopen("/proc/net/packet", "r");
	ck_assert_ptr_nonnull(f);
	char line[256];
	int proto = -1;
	while (fgets(line, sizeof(line), f)) {
		char sk[32];
		unsigned ref, type, pr;
		int iface;
		if (sscanf(line, "%31s %u %u %x %d", sk, &ref, &type, &pr, &iface) == 5 &&
		    iface == idx)
			proto = (int)pr;
	}
	fclose(f);
	return proto;
}

START_TEST(the_socket_stays_send_only_when_the_interface_is_made_again)
{
	NEED_NETNS();
	struct vx_nh_tab *t = tab(16);
	ck_assert_int_eq(packet_proto((int)if_nametoindex("u0")), 0);
	ck_assert_int_eq(system("ip link del u0 && ip link add u0 type veth peer name u1 && "
				"ip link set u0 up && ip link set u1 up"), 0);
	vx_nh_tick(t, &lock); /* follows the new index */
	ck_assert_int_eq(packet_proto((int)if_nametoindex("u0")), 0);
	vx_nh_close(t);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vxlan_nh");
	TCase *tc = tcase_create("vxlan_nh");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_vtep_gets_its_turn);
	tcase_add_test(tc, vteps_that_never_resolve_do_not_starve_the_others);
	tcase_add_test(tc, a_later_clock_on_the_data_path_frees_nothing);
	tcase_add_test(tc, the_socket_stays_send_only_when_the_interface_is_made_again);
	tcase_add_test(tc, a_changed_or_deleted_next_hop_is_followed_at_the_next_tick);
	tcase_add_test(tc, a_gateways_notices_move_every_vtep_behind_it_and_no_other);
	tcase_add_test(tc, an_ipv6_link_local_gateway_is_followed);
	tcase_add_test(tc, other_interfaces_churn_and_forged_notices_change_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
