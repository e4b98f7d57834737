/*
 * vxlan_table.c - what a large VXLAN table costs the data path and the
 * control plane (bench/vxlan_table.sh runs it). A vxlan port on
 * 127.0.0.1 (a network namespace of the program's own) with a table of
 * ENTRIES learned entries (added without flags: soft state, as learned
 * from the tunnel), a mem port beside it, a fake VTEP on 127.0.0.3:
 *
 *  - evict: a control plane's external adds into the full table, each
 *    taking the room of a learned entry (microseconds per add; 1000
 *    adds, or as many as 5 s allow);
 *  - steady: SECONDS of probe datagrams from the fake VTEP, one at a
 *    time, each timed until the mem port has its frame (the ageing timer
 *    runs once a second meanwhile; nothing is old enough to age): the
 *    median, 99th percentile, worst, and how many waited over 5 ms (on
 *    a shared machine the worst is often the scheduler's; a stall that
 *    comes every second shows in the count);
 *  - dump: the same port probed the same way for SECONDS while another
 *    thread dumps the table over and over (hs_vxlan_fdb_dump, an
 *    operator's listing; SCHED_IDLE, so that the probes wait
 *    for its lock, not for a CPU): the probes, and a dump's time;
 *  - ageall: a second port, entries aged after 1 s, filled, then probed
 *    the same way while the whole table ages (and until it is empty).
 *
 * One JSON object on stdout.
 *
 *   vxlan_table ENTRIES SECONDS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hyperswitch/hyperswitch.h>

#include "bench_ctr.h"
#include "th_netns.h"

#define EVICTS 1000
#define VX_PORT 47898

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *loop_main(void *arg)
{
	hs_run(arg);
	return NULL;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "vxlan_table: %s: %s\n", what, hs_strerror(rc));
	exit(1);
}

struct side {
	hs_switch_t *sw;
	hs_port_t *vx, *m;
	pthread_t loop;
};

static void side_up(struct side *s, uint32_t entries, uint32_t ageing)
{
	struct hs_switch_config c = {.log_level = HS_LOG_ERROR};
	int rc = hs_switch_create(&c, &s->sw);
	if (rc)
		die("switch", rc);
	struct hs_mem_config mc = {.ring_size = 256};
	struct hs_port_config pc = {.name = "m", .backend = HS_MEM_BACKEND,
				    .backend_config = &mc, .backend_config_size = sizeof(mc)};
	if ((rc = hs_port_add(s->sw, &pc, &s->m)))
		die("mem port", rc);
	struct hs_vxlan_config vc = {.local = "127.0.0.1", .vni = 42, .dst_port = VX_PORT,
				     .max_entries = entries, .ageing_s = ageing};
	pc = (struct hs_port_config){.name = "vx", .backend = HS_VXLAN_BACKEND,
				     .backend_config = &vc, .backend_config_size = sizeof(vc)};
	if ((rc = hs_port_add(s->sw, &pc, &s->vx)))
		die("vxlan port", rc);
	pthread_create(&s->loop, NULL, loop_main, s->sw);
}

static void side_down(struct side *s)
{
	hs_stop(s->sw);
	pthread_join(s->loop, NULL);
	hs_switch_destroy(s->sw);
}

static void mac_of(uint8_t m[6], uint32_t i)
{
	m[0] = 2, m[1] = 0x42;
	m[2] = (uint8_t)(i >> 24), m[3] = (uint8_t)(i >> 16), m[4] = (uint8_t)(i >> 8);
	m[5] = (uint8_t)i;
}

/* entries learned entries, MACs from `first` on; adds a second. */
static double fill(hs_port_t *vx, uint32_t first, uint32_t n)
{
	double t0 = now_ms();
	uint8_t m[6];
	for (uint32_t i = 0; i < n; i++) {
		mac_of(m, first + i);
		int rc = hs_vxlan_fdb_add(vx, m, "127.0.0.4", 0);
		if (rc)
			die("fill", rc);
	}
	return n / ((now_ms() - t0) / 1e3);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct probe {
	double p50, p99, max;
	unsigned n, over_5ms; /* probes that waited longer than 5 ms */
};

/* Datagrams one at a time for `secs` (and, with until_empty, at least
 * until the port's table is empty, its time then in *empty_s). */
static struct probe probe(struct side *s, int fd, double secs, bool until_empty, double *empty_s)
{
	static uint8_t d[8 + 100];
	memset(d, 0, sizeof(d));
	d[0] = 0x08;
	d[6] = 42;
	memset(d + 8, 0xff, 6); /* broadcast, from a MAC of its own */
	mac_of(d + 8 + 6, 0xfffffff0);
	d[8 + 12] = 0x08;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(VX_PORT)};
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	static double lat[1 << 20];
	unsigned n = 0;
	double t_start = now_ms(), t_end = t_start + secs * 1e3;
	bool empty = false;
	while ((now_ms() < t_end || (until_empty && !empty)) && n < (1u << 20)) {
		double t0 = now_ms();
		if (sendto(fd, d, sizeof(d), 0, (struct sockaddr *)&to, sizeof(to)) != sizeof(d)) {
			perror("sendto");
			exit(1);
		}
		struct hs_mem_frame f;
		while (hs_mem_rx_burst(s->m, 0, &f, 1) < 1) {
			if (now_ms() - t0 > 5000) {
				fprintf(stderr, "vxlan_table: a datagram lost\n");
				exit(1);
			}
		}
		hs_mem_rx_release(s->m, 0, 1);
		lat[n++] = now_ms() - t0;
		/* the probe's own MAC stays: empty means it alone */
		if (until_empty && !empty && bench_backend_ctr(s->vx, "entries") <= 1) {
			empty = true;
			*empty_s = (now_ms() - t_start) / 1e3;
		}
	}
	qsort(lat, n, sizeof(lat[0]), cmp_d);
	unsigned slow = 0;
	while (slow < n && lat[n - 1 - slow] > 5.0)
		slow++;
	return (struct probe){.p50 = lat[n / 2], .p99 = lat[n * 99 / 100], .max = lat[n - 1],
			      .n = n, .over_5ms = slow};
}

struct dumper {
	hs_port_t *vx;
	_Atomic bool stop;
	unsigned dumps;
	size_t listed;
	double ms;
};

static int count_cb(void *arg, const struct hs_vxlan_fdb_entry *e)
{
	(void)e;
	((struct dumper *)arg)->listed++;
	return 0;
}

static void *dump_main(void *arg)
{
	struct dumper *d = arg;
	/* on a CPU nothing else wants: what the probes show is waiting for
	 * the table's lock, not for a CPU (two CPUs here, and the prober
	 * spins) */
	struct sched_param sp = {0};
	pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
	double t0 = now_ms();
	while (!atomic_load(&d->stop)) {
		int rc = hs_vxlan_fdb_dump(d->vx, count_cb, d);
		if (rc)
			die("dump", rc);
		d->dumps++;
	}
	d->ms = now_ms() - t0;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return fprintf(stderr, "usage: %s ENTRIES SECONDS\n", argv[0]), 2;
	uint32_t entries = (uint32_t)strtoul(argv[1], NULL, 0);
	double secs = atof(argv[2]);
	if (entries < 2 * EVICTS || entries > (1u << 20) || secs <= 0)
		return fprintf(stderr, "ENTRIES: %u..%u\n", 2 * EVICTS, 1u << 20), 2;
	int rc = th_netns_own();
	if (rc)
		return fprintf(stderr, "a network namespace of our own: %s (needs root)\n",
			       strerror(-rc)), 1;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in me = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.3", &me.sin_addr);
	if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof(me)))
		return perror("fake VTEP"), 1;

	struct side s;
	side_up(&s, entries, 0);
	double fill_rate = fill(s.vx, 0, entries);
	double worst = 0, t0 = now_ms();
	uint8_t m[6];
	uint32_t evicts = 0;
	for (uint32_t i = 0; i < EVICTS && now_ms() - t0 < 5000; i++, evicts++) {
		mac_of(m, 0x40000000u + i);
		double a = now_ms();
		if ((rc = hs_vxlan_fdb_add(s.vx, m, "127.0.0.2", HS_VXLAN_FDB_EXTERN)))
			die("external add", rc);
		if (now_ms() - a > worst)
			worst = now_ms() - a;
	}
	double evict_us = (now_ms() - t0) * 1e3 / evicts;
	struct probe st = probe(&s, fd, secs, false, NULL);
	struct dumper dd = {.vx = s.vx};
	pthread_t dt;
	pthread_create(&dt, NULL, dump_main, &dd);
	struct probe du = probe(&s, fd, secs, false, NULL);
	atomic_store(&dd.stop, true);
	pthread_join(dt, NULL);
	if (!dd.dumps || dd.listed / dd.dumps < entries)
		return fprintf(stderr, "vxlan_table: dumps listed %zu of %u entries\n",
			       dd.dumps ? dd.listed / dd.dumps : 0, entries), 1;
	side_down(&s);

	side_up(&s, entries, 1);
	fill(s.vx, 0, entries);
	double empty_s = 0;
	struct probe ag = probe(&s, fd, secs, true, &empty_s);
	side_down(&s);
	close(fd);
	printf("{\"test\": \"vxlan_table\", \"entries\": %u, \"fill_adds_per_s\": %.0f, "
	       "\"evicts\": %u, \"evict_add_us\": %.2f, \"evict_add_us_max\": %.1f, "
	       "\"steady_probes\": %u, \"steady_rx_ms_p50\": %.3f, \"steady_rx_ms_p99\": %.3f, "
	       "\"steady_rx_ms_max\": %.3f, \"steady_over_5ms\": %u, \"dumps\": %u, "
	       "\"dump_ms\": %.1f, \"dump_probes\": %u, \"dump_rx_ms_p50\": %.3f, "
	       "\"dump_rx_ms_p99\": %.3f, \"dump_rx_ms_max\": %.3f, \"dump_over_5ms\": %u, "
	       "\"ageall_probes\": %u, "
	       "\"ageall_rx_ms_p50\": %.3f, \"ageall_rx_ms_p99\": %.3f, \"ageall_rx_ms_max\": %.3f, "
	       "\"ageall_over_5ms\": %u, \"ageall_empty_s\": %.2f}\n",
	       entries, fill_rate, evicts, evict_us, worst * 1e3, st.n, st.p50, st.p99, st.max,
	       st.over_5ms, dd.dumps, dd.ms / dd.dumps, du.n, du.p50, du.p99, du.max,
	       du.over_5ms, ag.n, ag.p50, ag.p99, ag.max, ag.over_5ms, empty_s);
	return 0;
}
