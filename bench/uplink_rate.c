/*
 * uplink_rate.c - the uplink's receive rate: small frames from a veth
 * peer into the switch, as fast as one core can send them, in one uplink
 * mode (bench/uplink_rate.sh runs the modes in interleaved rounds).
 *
 * A generator thread (CPU 1) sends FRAME_BYTES UDP frames to a MAC the
 * switch has learned behind a mem port, through a packet socket on PEER
 * (qdisc bypassed, sendmmsg bursts of 64, varied source ports); the
 * kernel's receive work for IFNAME (the XDP program, or the stack and the
 * packet socket) runs on that core too, in the veth's softirq. The
 * switch's loop (CPU 0) takes the frames from the uplink and copies them
 * into the mem port, which the main thread (CPU 0) drains.
 *
 *   [HS_BENCH_WORKERS=1] uplink_rate IFNAME PEER MODE SECONDS FRAME_BYTES
 *     MODE: packet | xdp | xdp-generic
 * Prints one JSON line: frames per second sent, taken by the uplink,
 * delivered to the mem port, and what the kernel dropped.
 */
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hyperswitch/hyperswitch.h>

#include "bench_ctr.h"

#define GEN_BURST 64

static _Atomic bool stop;
static _Atomic uint64_t sent;
static const uint8_t sink_mac[6] = {2, 0, 0, 0, 0, 0x5};
static const uint8_t gen_mac[6] = {2, 0, 0, 0, 0, 0x6};

static void pin(unsigned cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	pthread_setaffinity_np(pthread_self(), sizeof(s), &s);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct gen {
	const char *peer;
	unsigned len;
};

static void *gen_main(void *arg)
{
	struct gen *g = arg;
	pin(1);
	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
	int one = 1;
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = (int)if_nametoindex(g->peer)};
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("generator socket");
		exit(1);
	}
	static uint8_t f[GEN_BURST][1514];
	struct iovec iov[GEN_BURST];
	struct mmsghdr mm[GEN_BURST];
	for (unsigned i = 0; i < GEN_BURST; i++) {
		uint8_t *p = f[i];
		memcpy(p, sink_mac, 6);
		memcpy(p + 6, gen_mac, 6);
		p[12] = 0x08;
		uint8_t *ip = p + 14;
		ip[0] = 0x45;
		ip[2] = (uint8_t)((g->len - 14) >> 8), ip[3] = (uint8_t)(g->len - 14);
		ip[8] = 64, ip[9] = 17;
		ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
		ip[23] = 9; /* discard */
		iov[i] = (struct iovec){.iov_base = p, .iov_len = g->len};
		mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
	}
	unsigned k = 0;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (unsigned i = 0; i < GEN_BURST; i++, k++) {
			f[i][34] = (uint8_t)(k >> 8); /* source port: flows vary */
			f[i][35] = (uint8_t)k;
		}
		int n = sendmmsg(fd, mm, GEN_BURST, 0);
		if (n > 0)
			atomic_fetch_add_explicit(&sent, (uint64_t)n, memory_order_relaxed);
	}
	close(fd);
	return NULL;
}

static void *loop_main(void *arg)
{
	pin(0);
	hs_run(arg);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 6)
		return fprintf(stderr, "usage: %s IFNAME PEER packet|xdp|xdp-generic SECONDS "
				       "FRAME_BYTES\n", argv[0]), 2;
	const char *mode = argv[3];
	double secs = atof(argv[4]);
	struct gen g = {.peer = argv[2], .len = (unsigned)atoi(argv[5])};
	if (g.len < 60 || g.len > 1514)
		return fprintf(stderr, "FRAME_BYTES: 60..1514\n"), 2;
	pin(0);
	/* HS_BENCH_WORKERS=1: a polling worker (CPU 0) takes the uplink's
	 * frames instead of the loop, woken by nothing while frames flow */
	const char *w = getenv("HS_BENCH_WORKERS");
	static const int cpu0[1] = {0};
	struct hs_switch_config sc = {.log_level = HS_LOG_WARN,
				      .n_workers = w ? (uint32_t)atoi(w) : 0,
				      .worker_cpus = w && atoi(w) == 1 ? cpu0 : NULL};
	hs_switch_t *sw;
	if (hs_switch_create(&sc, &sw))
		return 1;
	struct hs_mem_config mc = {.ring_size = 4096};
	struct hs_port_config pc = {.name = "sink", .backend = HS_MEM_BACKEND,
				    .backend_config = &mc, .backend_config_size = sizeof(mc)};
	hs_port_t *sink, *up;
	if (hs_port_add(sw, &pc, &sink))
		return 1;
	struct hs_uplink_config uc = {.ifname = argv[1]};
	if (!strcmp(mode, "packet"))
		uc.mode = HS_UPLINK_PACKET;
	else if (!strcmp(mode, "xdp"))
		uc.mode = HS_UPLINK_XDP;
	else if (!strcmp(mode, "xdp-generic"))
		uc.mode = HS_UPLINK_XDP, uc.flags = HS_UPLINK_XDP_GENERIC;
	else
		return fprintf(stderr, "unknown mode %s\n", mode), 2;
	struct hs_port_config upc = {.name = "up", .backend = HS_UPLINK_BACKEND,
				     .backend_config = &uc, .backend_config_size = sizeof(uc)};
	int rc = hs_port_add(sw, &upc, &up);
	if (rc)
		return fprintf(stderr, "uplink %s (%s): %s\n", argv[1], mode, hs_strerror(rc)), 1;
	pthread_t lt, gt;
	pthread_create(&lt, NULL, loop_main, sw);
	/* the sink's MAC is learned (and, in AF_XDP mode, in the map) */
	uint8_t hello[60] = {0};
	memset(hello, 0xff, 6);
	memcpy(hello + 6, sink_mac, 6);
	hello[12] = 0x88, hello[13] = 0xb5;
	struct hs_mem_frame hf = {.data = hello, .len = sizeof(hello)};
	hs_mem_tx_burst(sink, 0, &hf, 1);
	usleep(500000);
	pthread_create(&gt, NULL, gen_main, &g);
	usleep(300000); /* warm */
	struct hs_port_stats a, b, sa, sb;
	hs_port_get_stats(up, &a);
	hs_port_get_stats(sink, &sa);
	uint64_t s0 = atomic_load(&sent);
	uint64_t kd0 = bench_backend_ctr(up, "rx_kernel_drops") +
		       bench_backend_ctr(up, "xdp_kernel_drops");
	double t0 = now(), t1;
	struct hs_mem_frame rf[256];
	while ((t1 = now()) - t0 < secs) {
		int n = hs_mem_rx_burst(sink, 0, rf, 256);
		if (n > 0)
			hs_mem_rx_release(sink, 0, (unsigned)n);
		else
			sched_yield();
	}
	hs_port_get_stats(up, &b);
	hs_port_get_stats(sink, &sb);
	uint64_t s1 = atomic_load(&sent);
	uint64_t kd1 = bench_backend_ctr(up, "rx_kernel_drops") +
		       bench_backend_ctr(up, "xdp_kernel_drops");
	uint64_t xr = bench_backend_ctr(up, "xdp_rx_frames");
	atomic_store(&stop, true);
	pthread_join(gt, NULL);
	double dt = t1 - t0;
	printf("{\"mode\": \"%s\", \"got\": \"%s\", \"frame_bytes\": %u, \"seconds\": %.2f, "
	       "\"sent_pps\": %.0f, \"uplink_rx_pps\": %.0f, \"delivered_pps\": %.0f, "
	       "\"kernel_drops_ps\": %.0f, \"xdp_rx_frames\": %llu}\n",
	       mode, hs_uplink_mode(up), g.len, dt, (double)(s1 - s0) / dt,
	       (double)(b.rx_packets - a.rx_packets) / dt,
	       (double)(sb.tx_packets - sa.tx_packets) / dt, (double)(kd1 - kd0) / dt,
	       (unsigned long long)xr);
	hs_stop(sw);
	pthread_join(lt, NULL);
	hs_switch_destroy(sw);
	return 0;
}
