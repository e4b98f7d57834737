/*
 * test_vxlan_nh.c - the vxlan port's next-hop table (src/backends/
 * vxlan_nh.c) on its own, in a network namespace of each case's own
 * (root): every VTEP in use gets its turn at lookups however many there
 * are and however many never resolve; a burst that read the clock after
 * the resolver does not get its entry freed; the packet socket stays
 * send-only when the interface is made again. The wire and the public
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

/* A next hop replaced or deleted in the neighbour table is followed at
 * the next tick, not only at the entry's recheck a second later: the
 * kernel queues its notice before `ip neigh` returns, so the tick finds
 * it (nh_noticed says that the notice, not a recheck that came due on a
 * slow machine, made the entry look again). */
START_TEST(a_changed_or_deleted_next_hop_is_followed_at_the_next_tick)
{
	NEED_NETNS();
	ck_assert_int_eq(system("ip neigh add 10.77.1.1 lladdr 02:00:00:00:00:01 dev u0 "
				"nud permanent"), 0);
	struct vx_nh_tab *t = tab(16);
	union vx_addr a = addr(0, 77);
	static const uint8_t m1[6] = {2, 0, 0, 0, 0, 1}, m2[6] = {2, 0, 0, 0, 0, 2};
	uint64_t c[VX_NH_NCTR];
	ck_assert_str_eq(vx_nh_counter_names[3], "nh_changed");
	ck_assert_str_eq(vx_nh_counter_names[6], "nh_noticed");
	pthread_mutex_lock(&lock);
	vx_nh_get(t, &a, mono_ms());
	pthread_mutex_unlock(&lock);
	vx_nh_tick(t, &lock); /* looked up: m1 */
	pthread_mutex_lock(&lock);
	struct vx_nh *e = vx_nh_get(t, &a, mono_ms());
	ck_assert(vx_nh_usable(e, mono_ms(), 100));
	ck_assert_mem_eq(e->mac, m1, 6);
	pthread_mutex_unlock(&lock);
	ck_assert_int_eq(system("ip neigh replace 10.77.1.1 lladdr 02:00:00:00:00:02 dev u0 "
				"nud permanent"), 0);
	vx_nh_tick(t, &lock);
	pthread_mutex_lock(&lock);
	e = vx_nh_get(t, &a, mono_ms());
	ck_assert(vx_nh_usable(e, mono_ms(), 100));
	ck_assert_mem_eq(e->mac, m2, 6);
	pthread_mutex_unlock(&lock);
	vx_nh_read(t, c);
	ck_assert_uint_eq(c[3], 1); /* counted as a change, not a resolution */
	ck_assert_uint_eq(c[6], 1);
	ck_assert_int_eq(system("ip neigh del 10.77.1.1 dev u0"), 0);
	vx_nh_tick(t, &lock);
	pthread_mutex_lock(&lock);
	e = vx_nh_get(t, &a, mono_ms());
	ck_assert(!vx_nh_usable(e, mono_ms(), 100)); /* nobody answers for it */
	pthread_mutex_unlock(&lock);
	vx_nh_read(t, c);
	ck_assert_uint_eq(c[6], 2);
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
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
