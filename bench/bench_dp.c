/*
 * bench_dp.c - the Hyper-Switch evaluation on mem ports:
 *
 *   ablation  baseline (two copies through a switch buffer, notify every
 *             frame, no offload), then + single copy, + state-aware
 *             batching, + offload to an idle core; 64 B, 1518 B and 64 KiB
 *             GSO frames; throughput, CPU cycles per frame, notifications
 *             per frame.
 *   scaling   aggregate throughput as sender/receiver pairs grow (1..16),
 *             with and without workers.
 *   latency   one-way latency (p50/p99) to a receiver blocked on its
 *             eventfd, with immediate notification on and off.
 *   idle      CPU used by an idle switch with workers.
 *   fanin     1..8 senders to one receiver port, switching in their own
 *             threads, spread over every CPU (more threads than cores
 *             from 4 on a 2-CPU machine): the receiver's egress lock
 *             under contention and preemption.
 *
 * Each pair is a sender thread (a "VM" transmitting on its port, switching
 * in its own thread unless a worker takes the queue) and a receiver thread
 * (consuming frames, sleeping on its eventfd when none are waiting). A
 * sender keeps at most a ring's worth of frames in flight towards its
 * receiver (flow control, as a guest's full ring would impose), so nothing
 * is dropped and the figures measure the switch path, not losses.
 *
 * As in the paper's setup, the "VM" threads are pinned to the VM cores
 * (the first CPUs) and the offload workers to the remaining cores, which
 * are otherwise idle: without offload those cores stay unused. On a
 * 2-CPU machine that is one VM core and one core to offload to.
 */
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hyperswitch/hyperswitch.h>

#include "bench.h"

#define B 32
#define RING 256     /* default ring, and the sender's window */
#define RING_MAX BENCH_RING_MAX
_Static_assert(BENCH_RING_MIN >= 2 * B, "a sender sends whole bursts: two fit a ring");
#define GSO_FRAME 65536

static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void mac(uint8_t m[6], unsigned id)
{
	m[0] = 0x02, m[1] = 0x51, m[2] = 0, m[3] = 0;
	m[4] = (uint8_t)(id >> 8), m[5] = (uint8_t)id;
}

/* Fills f with a frame from src to dst: a plain frame, or for GSO_FRAME a
 * TCP/IPv4 super frame with checksum and segmentation offload. */
static void build(uint8_t *f, size_t len, const uint8_t *dst, const uint8_t *src,
		  struct hs_offload *off)
{
	memset(f, 0x5a, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x08, f[13] = 0x00;
	*off = (struct hs_offload){0};
	if (len != GSO_FRAME)
		return;
	uint8_t *ip = f + 14, *tcp = ip + 20;
	memset(ip, 0, 40);
	ip[0] = 0x45;
	ip[2] = (uint8_t)((len - 14) >> 8), ip[3] = (uint8_t)(len - 14);
	ip[6] = 0x40, ip[8] = 64, ip[9] = 6;
	ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
	tcp[12] = 0x50, tcp[13] = 0x18;
	*off = (struct hs_offload){.flags = HS_OFF_NEEDS_CSUM, .gso_type = HS_GSO_TCPV4,
				   .gso_size = 1448, .csum_start = 34, .csum_offset = 16,
				   .hdr_len = 54};
}

/* ---- pairs of threads around a switch ------------------------------------------- */

struct pair {
	hs_port_t *tx, *rx;
	int cpu;                     /* VM core this pair runs on */
	int rx_cpu;                  /* fan-in: the receiver's, if >= 0 */
	size_t frame;
	bool one_shot;               /* receiver arms before sleeping */
	bool rx_poll;                /* receiver never sleeps: yields when empty */
	unsigned ring;               /* ring entries, and frames in flight at most */
	_Atomic bool *stop;
	_Atomic uint64_t sent, consumed;
	/* fan-in: the window is shared by every sender (pair 0's counters) */
	_Atomic uint64_t *gsent, *gconsumed;
	uint8_t *frames;
	pthread_t ts, tr;
};

static void pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *sender(void *arg)
{
	struct pair *p = arg;
	pin(p->cpu);
	struct hs_mem_frame f[B];
	struct hs_offload off;
	uint8_t d[6], s[6];
	memcpy(d, p->frames, 6);
	memcpy(s, p->frames + 6, 6);
	build(p->frames, p->frame, d, s, &off);
	for (unsigned i = 0; i < B; i++)
		f[i] = (struct hs_mem_frame){.data = p->frames, .len = (uint32_t)p->frame,
					     .off = off};
	uint64_t ck[RING_MAX];
	const uint64_t window = p->ring;
	_Atomic uint64_t *sentp = p->gsent ? p->gsent : &p->sent;
	_Atomic uint64_t *consp = p->gconsumed ? p->gconsumed : &p->consumed;
	while (!atomic_load_explicit(p->stop, memory_order_relaxed)) {
		uint64_t sent = atomic_load_explicit(sentp, memory_order_relaxed);
		if (sent - atomic_load_explicit(consp, memory_order_acquire) + B > window) {
			sched_yield();
			continue;
		}
		/* Every frame is the same constant buffer: the switch only
		 * reads it, so reusing it before completion is harmless. */
		int n = hs_mem_tx_burst(p->tx, 0, f, B);
		if (n > 0) {
			if (p->gsent)
				atomic_fetch_add_explicit(sentp, (uint64_t)n,
							  memory_order_relaxed);
			else
				atomic_store_explicit(sentp, sent + (uint64_t)n,
						      memory_order_relaxed);
		}
		hs_mem_tx_reap(p->tx, 0, ck, RING_MAX);
		if (n <= 0)
			sched_yield();
	}
	return NULL;
}

static void *receiver(void *arg)
{
	struct pair *p = arg;
	pin(p->rx_cpu >= 0 ? p->rx_cpu : p->cpu);
	int fd = hs_mem_rx_fd(p->rx, 0);
	struct hs_mem_frame f[64];
	volatile uint8_t sink = 0;
	while (!atomic_load_explicit(p->stop, memory_order_relaxed)) {
		int n = hs_mem_rx_burst(p->rx, 0, f, 64);
		if (n > 0) {
			for (int i = 0; i < n; i++)
				sink = (uint8_t)(sink + ((uint8_t *)f[i].data)[14]);
			hs_mem_rx_release(p->rx, 0, (unsigned)n);
			atomic_fetch_add_explicit(&p->consumed, (uint64_t)n,
						  memory_order_release);
			continue;
		}
		/* Nothing waiting: a polling guest gives its CPU up and looks
		 * again, without asking to be notified; any other sleeps until
		 * notified (a blocked guest). */
		if (p->rx_poll) {
			sched_yield();
			continue;
		}
		if (p->one_shot && hs_mem_rx_arm(p->rx, 0))
			continue;
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 20) > 0) {
			uint64_t v;
			ssize_t r = read(fd, &v, sizeof(v));
			(void)r;
		}
	}
	(void)sink;
	return NULL;
}

struct dp_setup {
	const char *name;
	unsigned pairs, workers;
	unsigned vm_cpus;       /* CPUs the pairs are pinned to (the first ones) */
	uint32_t flags;
	size_t frame;
	bool notify_each_frame; /* receivers ask for every frame (baseline) */
	bool rx_poll;           /* receivers poll (yield when empty), never sleep */
	unsigned ring;          /* mem ring entries and the senders' window; 0: RING */
	bool fanin;             /* every sender to pair 0's receiver; senders
				   spread over all CPUs, the receiver on the last */
	double seconds;
};

struct dp_result {
	double mpps, gbps, cycles, notify, cpu;
	uint64_t frames, drops;
	uint64_t handoffs, handbacks, sleeps, rounds_worker, rounds_sender;
	uint64_t lock_sleeps;   /* deliveries that slept for an egress lock */
};

static int run_pairs(const struct dp_setup *su, struct dp_result *res)
{
	size_t frame = su->frame;
	int wcpu[64];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	for (unsigned w = 0; w < su->workers && w < 64; w++)
		wcpu[w] = (int)((su->vm_cpus + w) % (unsigned)cpus);
	struct hs_switch_config sc = {
		.n_workers = su->workers, .flags = su->flags, .burst = B,
		.worker_cpus = su->workers ? wcpu : NULL,
		.backlog_frames = 1024,
		.backlog_bytes = (uint32_t)(2 * B * (frame + 64) + (1u << 20))};
	hs_switch_t *sw;
	if (hs_switch_create(&sc, &sw))
		return -1;
	struct pair *pr = calloc(su->pairs, sizeof(*pr));
	_Atomic bool stop = false;
	unsigned nrx = su->fanin ? 1 : su->pairs; /* receiver ports and threads */
	uint32_t buf = frame <= 2048 ? 2048 : (uint32_t)frame;
	for (unsigned i = 0; i < su->pairs; i++) {
		unsigned ring = su->ring ? su->ring : RING;
		struct hs_mem_config tx = {.ring_size = ring};
		struct hs_mem_config rx = {
			.ring_size = ring, .buf_size = buf,
			.caps = HS_CAP_CSUM | HS_CAP_GSO_TCPV4 | HS_CAP_GSO_TCPV6,
			.flags = su->notify_each_frame ? HS_MEM_RX_NOTIFY_ALWAYS : 0};
		struct hs_port_config pt = {.backend = HS_MEM_BACKEND, .backend_config = &tx,
					    .backend_config_size = sizeof(tx), .mtu = 9000};
		struct hs_port_config pr_ = {.backend = HS_MEM_BACKEND, .backend_config = &rx,
					     .backend_config_size = sizeof(rx), .mtu = 9000};
		if (hs_port_add(sw, &pt, &pr[i].tx) ||
		    (i < nrx && hs_port_add(sw, &pr_, &pr[i].rx)))
			return -1;
		pr[i].frame = frame;
		pr[i].cpu = (int)(i % (su->vm_cpus ? su->vm_cpus : 1));
		pr[i].rx_cpu = -1;
		if (su->fanin) {
			pr[i].rx = pr[0].rx;
			pr[i].gsent = &pr[0].sent;
			pr[i].gconsumed = &pr[0].consumed;
			pr[i].cpu = (int)(i % (unsigned)cpus);
			pr[i].rx_cpu = (int)cpus - 1;
		}
		pr[i].one_shot = !su->notify_each_frame;
		pr[i].rx_poll = su->rx_poll;
		pr[i].ring = ring;
		pr[i].stop = &stop;
		pr[i].frames = aligned_alloc(64, (frame + 63) & ~(size_t)63);
		/* Learn both MACs, so that traffic is unicast. */
		uint8_t f[64], dummy[64];
		struct hs_offload off;
		for (int side = 0; side < (i < nrx ? 2 : 1); side++) {
			uint8_t m[6], bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
			mac(m, 2 * i + (unsigned)side);
			build(f, 64, bc, m, &off);
			struct hs_mem_frame fr = {.data = f, .len = 64};
			hs_port_t *p = side ? pr[i].rx : pr[i].tx;
			hs_mem_tx_burst(p, 0, &fr, 1);
			uint64_t ck;
			while (hs_mem_tx_reap(p, 0, &ck, 1) != 1)
				sched_yield();
		}
		(void)dummy;
		mac(pr[i].frames, su->fanin ? 1 : 2 * i + 1);
		mac(pr[i].frames + 6, 2 * i);
	}
	/* Empty the rings of the learning floods. */
	for (unsigned i = 0; i < su->pairs; i++)
		for (int side = 0; side < (i < nrx ? 2 : 1); side++) {
			hs_port_t *p = side ? pr[i].rx : pr[i].tx;
			struct hs_mem_frame f[64];
			int n;
			while ((n = hs_mem_rx_burst(p, 0, f, 64)) > 0)
				hs_mem_rx_release(p, 0, (unsigned)n);
		}
	for (unsigned i = 0; i < su->pairs; i++) {
		if (i < nrx)
			pthread_create(&pr[i].tr, NULL, receiver, &pr[i]);
		pthread_create(&pr[i].ts, NULL, sender, &pr[i]);
	}
	/* Warm up, then measure a window. */
	double t = bench_now();
	while (bench_now() - t < 0.2)
		usleep(10000);
	struct hs_switch_stats s0;
	hs_switch_get_stats(sw, &s0);
	uint64_t n0 = 0, notif0 = 0, ls0 = 0;
	for (unsigned i = 0; i < nrx; i++) {
		struct hs_port_stats ps;
		hs_port_get_stats(pr[i].rx, &ps);
		notif0 += ps.tx_notify;
		ls0 += ps.tx_lock_sleeps;
		n0 += atomic_load(&pr[i].consumed);
	}
	double c0 = cpu_now(), t0 = bench_now();
	while (bench_now() - t0 < su->seconds)
		usleep(20000);
	double c1 = cpu_now(), t1 = bench_now();
	uint64_t n1 = 0, notif1 = 0, ls1 = 0;
	for (unsigned i = 0; i < nrx; i++) {
		struct hs_port_stats ps;
		hs_port_get_stats(pr[i].rx, &ps);
		notif1 += ps.tx_notify;
		ls1 += ps.tx_lock_sleeps;
		n1 += atomic_load(&pr[i].consumed);
	}
	struct hs_switch_stats s1;
	hs_switch_get_stats(sw, &s1);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < su->pairs; i++) {
		pthread_join(pr[i].ts, NULL);
		if (i < nrx)
			pthread_join(pr[i].tr, NULL);
		free(pr[i].frames);
	}
	res->frames = n1 - n0;
	res->mpps = (double)res->frames / (t1 - t0) / 1e6;
	res->gbps = (double)res->frames * (double)frame * 8 / (t1 - t0) / 1e9;
	res->cpu = (c1 - c0) / (t1 - t0);
	res->cycles = res->frames ? (c1 - c0) * bench_tsc_ghz() * 1e9 / (double)res->frames : 0;
	res->notify = res->frames ? (double)(notif1 - notif0) / (double)res->frames : 0;
	res->drops = 0;
	for (unsigned r = 0; r < HS_DROP__COUNT; r++)
		res->drops += s1.drops[r] - s0.drops[r];
	res->handoffs = s1.handoffs - s0.handoffs;
	res->handbacks = s1.handbacks - s0.handbacks;
	res->sleeps = s1.worker_sleeps - s0.worker_sleeps;
	res->lock_sleeps = ls1 - ls0;
	res->rounds_worker = s1.rounds_worker - s0.rounds_worker;
	res->rounds_sender = s1.rounds_sender - s0.rounds_sender;
	free(pr);
	hs_switch_destroy(sw);
	return 0;
}

/* Runs a setup `reps` times and keeps the median throughput's run. */
static int run_median(struct dp_setup *su, unsigned reps, struct dp_result *out)
{
	struct dp_result r[32];
	double v[32];
	for (unsigned k = 0; k < reps; k++) {
		if (run_pairs(su, &r[k]))
			return -1;
		v[k] = r[k].mpps;
	}
	double med = bench_median(v, reps);
	*out = r[0];
	for (unsigned k = 0; k < reps; k++)
		if (r[k].mpps == med || (reps % 2 == 0 && fabs(r[k].mpps - med) <
							   fabs(out->mpps - med)))
			*out = r[k];
	out->mpps = med;
	return 0;
}

static const char *size_name(size_t f)
{
	return f == 64 ? "64 B" : f == 1518 ? "1518 B" : "64 KiB GSO";
}

/* The pairs' rings and window: --ring (checked by main), else RING. */
static unsigned pairs_ring(const struct bench_opts *o)
{
	return o->ring ? o->ring : RING;
}

int cmd_ablation(struct bench_opts *o)
{
	static const size_t sizes[] = {64, 1518, GSO_FRAME};
	struct dp_setup rows[] = {
		{.name = "baseline", .flags = HS_SW_DOUBLE_COPY | HS_SW_NOTIFY_EACH,
		 .notify_each_frame = true},
		{.name = "+single copy", .flags = HS_SW_NOTIFY_EACH, .notify_each_frame = true},
		{.name = "+batching", .flags = HS_SW_NO_OFFLOAD},
		{.name = "+offload", .workers = 1},
	};
	unsigned reps = o->repeat ? (o->repeat < 32 ? o->repeat : 32) : 1;
	double secs = o->seconds > 0 ? o->seconds : (o->quick ? 0.3 : 1.5);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned vm = cpus > 1 ? (unsigned)cpus / 2 : 1;
	unsigned ring = pairs_ring(o);
	bench_json_begin(o, "ablation");
	printf("one sender and one receiver thread pinned to %u VM core(s); offload "
	       "workers on the other %ld; %u run(s) of %.1f s each, median; the "
	       "receiver %s; rings of %u, as many frames in flight at most\n", vm,
	       cpus - (long)vm, reps, secs,
	       o->rx_poll ? "polls (yields when empty)" : "sleeps when empty", ring);
	printf("%-11s %-13s %9s %9s %11s %10s %8s %7s\n", "frame", "mechanisms", "Mpps",
	       "Gbit/s", "cycles/frm", "notif/frm", "CPU", "drops");
	double first = 0, last = 0;
	for (unsigned s = 0; s < 3; s++) {
		if (o->only_frame && o->only_frame != sizes[s] &&
		    !(o->only_frame == 65536 && sizes[s] == GSO_FRAME))
			continue;
		for (unsigned r = 0; r < 4; r++) {
			struct dp_setup su = rows[r];
			su.pairs = 1;
			su.vm_cpus = vm;
			if (su.workers)
				su.workers = (unsigned)cpus - vm;
			su.frame = sizes[s];
			su.seconds = secs;
			su.rx_poll = o->rx_poll;
			su.ring = ring;
			struct dp_result res;
			if (run_median(&su, reps, &res))
				return 1;
			printf("%-11s %-13s %9.3f %9.2f %11.0f %10.3f %7.0f%% %7llu\n",
			       size_name(sizes[s]), su.name, res.mpps, res.gbps, res.cycles,
			       res.notify, res.cpu * 100, (unsigned long long)res.drops);
			fflush(stdout);
			bench_json_item(o,
					"{\"case\":\"ablation\",\"frame\":%zu,\"mechanisms\":\"%s\","
					"\"rx\":\"%s\",\"ring\":%u,\"mpps\":%.4f,\"gbps\":%.3f,\"cycles_per_frame\":%.0f,"
					"\"notify_per_frame\":%.4f,\"cpu\":%.3f,\"drops\":%llu,"
					"\"runs\":%u}",
					sizes[s], su.name, o->rx_poll ? "poll" : "sleep", ring,
					res.mpps, res.gbps, res.cycles, res.notify,
					res.cpu, (unsigned long long)res.drops, reps);
			if (s == 0 && r == 0)
				first = res.mpps;
			if (s == 0 && r == 3)
				last = res.mpps;
		}
	}
	bench_json_end(o);
	if (first > 0)
		printf("summary: 64 B, all mechanisms vs baseline: %.2f / %.2f Mpps = %.2fx\n",
		       last, first, last / first);
	else
		printf("summary: ablation done\n");
	return 0;
}

int cmd_scaling(struct bench_opts *o)
{
	static const unsigned pairs[] = {1, 2, 4, 8, 16};
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned vm = cpus > 1 ? (unsigned)cpus / 2 : 1;
	unsigned wmax = cpus > 1 ? (unsigned)cpus - vm : 1;
	unsigned reps = o->repeat ? (o->repeat < 32 ? o->repeat : 32) : 1;
	double secs = o->seconds > 0 ? o->seconds : (o->quick ? 0.3 : 1.5);
	size_t frame = o->only_frame ? o->only_frame : 1518;
	unsigned ring = pairs_ring(o);
	bench_json_begin(o, "scaling");
	printf("%zu-byte frames, all mechanisms on; pairs pinned to %u VM core(s), "
	       "workers on the other %u; %u run(s) of %.1f s, median; receivers %s; "
	       "rings of %u\n", frame, vm, wmax, reps, secs,
	       o->rx_poll ? "poll (yield when empty)" : "sleep when empty", ring);
	printf("%6s %8s %9s %9s %11s %8s  %9s %9s %9s %10s %10s\n", "pairs", "workers",
	       "Mpps", "Gbit/s", "cycles/frm", "CPU", "takeovers", "handbacks", "sleeps",
	       "rnd_sender", "rnd_worker");
	double one = 0, best = 0;
	for (unsigned i = 0; i < 5; i++)
		for (unsigned w = 0; w <= wmax; w = w ? w * 2 : 1) {
			if (w && w > wmax)
				break;
			struct dp_setup su = {.name = "scaling", .pairs = pairs[i], .workers = w,
					      .vm_cpus = vm,
					      .frame = frame, .seconds = secs,
					      .rx_poll = o->rx_poll != 0, .ring = ring,
					      .flags = w ? 0 : HS_SW_NO_OFFLOAD};
			struct dp_result res;
			if (run_median(&su, reps, &res))
				return 1;
			printf("%6u %8u %9.3f %9.2f %11.0f %7.0f%%  %9llu %9llu %9llu %10llu %10llu\n",
			       su.pairs, w, res.mpps, res.gbps, res.cycles, res.cpu * 100,
			       (unsigned long long)res.handoffs, (unsigned long long)res.handbacks,
			       (unsigned long long)res.sleeps,
			       (unsigned long long)res.rounds_sender,
			       (unsigned long long)res.rounds_worker);
			fflush(stdout);
			bench_json_item(o,
					"{\"case\":\"scaling\",\"frame\":%zu,\"pairs\":%u,"
					"\"rx\":\"%s\",\"ring\":%u,\"workers\":%u,\"mpps\":%.4f,\"gbps\":%.3f,"
					"\"cycles_per_frame\":%.0f,\"cpu\":%.3f,\"drops\":%llu,"
					"\"handoffs\":%llu,\"handbacks\":%llu,"
					"\"rounds_sender\":%llu,\"rounds_worker\":%llu}",
					frame, su.pairs, o->rx_poll ? "poll" : "sleep", ring, w,
					res.mpps, res.gbps, res.cycles, res.cpu,
					(unsigned long long)res.drops,
					(unsigned long long)res.handoffs,
					(unsigned long long)res.handbacks,
					(unsigned long long)res.rounds_sender,
					(unsigned long long)res.rounds_worker);
			if (i == 0 && w == 0)
				one = res.mpps;
			if (res.mpps > best)
				best = res.mpps;
			if (w == wmax)
				break;
		}
	bench_json_end(o);
	printf("summary: best aggregate %.2f Mpps = %.2fx one pair in sender context "
	       "(%ld CPUs)\n", best, one > 0 ? best / one : 0, cpus);
	return 0;
}

/* ---- fan-in: many senders, one receiver --------------------------------------------- */

int cmd_fanin(struct bench_opts *o)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	/* On a machine with more than 9 CPUs, a last row fills every CPU but
	 * the receiver's with a sender: all of them really in parallel. */
	unsigned senders[] = {1, 2, 4, 8, cpus > 9 ? (unsigned)cpus - 1 : 0};
	static const size_t frames[] = {64, 1518};
	unsigned reps = o->repeat ? (o->repeat < 32 ? o->repeat : 32) : 3;
	double secs = o->seconds > 0 ? o->seconds : (o->quick ? 0.3 : 1.0);
	bench_json_begin(o, "fanin");
	printf("N senders to one receiver port, switching in their own threads (no "
	       "workers), spread over %ld CPU(s), the receiver on the last; %u run(s) "
	       "of %.1f s, median\n", cpus, reps, secs);
	printf("%6s %8s %9s %9s %11s %8s %12s\n", "frame", "senders", "Mpps", "Gbit/s",
	       "cycles/frm", "CPU", "lock sleeps");
	for (unsigned f = 0; f < 2; f++) {
		if (o->only_frame && o->only_frame != frames[f])
			continue;
		for (unsigned i = 0; i < 5 && senders[i]; i++) {
			struct dp_setup su = {.name = "fanin", .pairs = senders[i],
					      .vm_cpus = (unsigned)cpus, .fanin = true,
					      .frame = frames[f], .seconds = secs,
					      .flags = HS_SW_NO_OFFLOAD};
			struct dp_result res;
			if (run_median(&su, reps, &res))
				return 1;
			double ls = res.frames ? (double)res.lock_sleeps * 1e3 / (double)res.frames : 0;
			printf("%6zu %8u %9.3f %9.2f %11.0f %7.0f%% %9.2f/k\n", frames[f], su.pairs,
			       res.mpps, res.gbps, res.cycles, res.cpu * 100, ls);
			fflush(stdout);
			bench_json_item(o,
					"{\"case\":\"fanin\",\"frame\":%zu,\"senders\":%u,"
					"\"mpps\":%.4f,\"gbps\":%.3f,\"cycles_per_frame\":%.0f,"
					"\"cpu\":%.3f,\"drops\":%llu,\"lock_sleeps_per_kframe\":%.3f}",
					frames[f], su.pairs, res.mpps, res.gbps, res.cycles,
					res.cpu, (unsigned long long)res.drops, ls);
		}
	}
	bench_json_end(o);
	return 0;
}

/* ---- latency -------------------------------------------------------------------- */

struct lat {
	hs_port_t *rx;
	_Atomic int armed;     /* the receiver is about to sleep */
	_Atomic bool stop;
	double *samples;
	_Atomic unsigned n;
	unsigned max;
};

static void *lat_receiver(void *arg)
{
	struct lat *l = arg;
	int fd = hs_mem_rx_fd(l->rx, 0);
	while (!atomic_load(&l->stop)) {
		struct hs_mem_frame f[8];
		int n = hs_mem_rx_burst(l->rx, 0, f, 8);
		if (n > 0) {
			uint64_t now = __rdtsc();
			for (int i = 0; i < n; i++) {
				uint64_t ts;
				memcpy(&ts, (uint8_t *)f[i].data + 14, 8);
				unsigned k = atomic_load(&l->n);
				if (k < l->max) {
					l->samples[k] = (double)(now - ts) / bench_tsc_ghz() / 1e3;
					atomic_store(&l->n, k + 1);
				}
			}
			hs_mem_rx_release(l->rx, 0, (unsigned)n);
			continue;
		}
		if (hs_mem_rx_arm(l->rx, 0))
			continue;
		atomic_store(&l->armed, 1);
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 100) > 0) {
			uint64_t v;
			ssize_t r = read(fd, &v, sizeof(v));
			(void)r;
		}
	}
	return NULL;
}

static int run_latency(bool immediate, unsigned fillers, size_t filler_size,
		       unsigned probes, double *p50, double *p99)
{
	struct hs_switch_config sc = {.burst = 64};
	hs_switch_t *sw;
	if (hs_switch_create(&sc, &sw))
		return -1;
	struct hs_mem_config mc = {.ring_size = 512, .buf_size = 10240};
	struct hs_port_config pc = {.backend = HS_MEM_BACKEND, .backend_config = &mc,
				    .backend_config_size = sizeof(mc), .mtu = 9000};
	hs_port_t *tx, *rx, *sink;
	if (hs_port_add(sw, &pc, &tx) || hs_port_add(sw, &pc, &rx) ||
	    hs_port_add(sw, &pc, &sink))
		return -1;
	if (!immediate)
		hs_port_set_peer_state(rx, 0, HS_PEER_RUNNING);
	uint8_t mt[6], mr[6], ms[6], bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	mac(mt, 100), mac(mr, 101), mac(ms, 102);
	hs_port_t *ports[3] = {tx, rx, sink};
	const uint8_t *macs[3] = {mt, mr, ms};
	struct hs_offload off;
	uint8_t *frames = aligned_alloc(64, (fillers + 1) * ((filler_size + 63) & ~63ul) + 64);
	for (int i = 0; i < 3; i++) { /* learn */
		build(frames, 64, bc, macs[i], &off);
		struct hs_mem_frame f = {.data = frames, .len = 64};
		hs_mem_tx_burst(ports[i], 0, &f, 1);
		uint64_t ck;
		hs_mem_tx_reap(ports[i], 0, &ck, 1);
	}
	for (int i = 0; i < 3; i++) {
		struct hs_mem_frame f[8];
		int n;
		while ((n = hs_mem_rx_burst(ports[i], 0, f, 8)) > 0)
			hs_mem_rx_release(ports[i], 0, (unsigned)n);
	}
	struct lat l = {.rx = rx, .max = probes};
	l.samples = calloc(probes, sizeof(double));
	pthread_t t;
	pthread_create(&t, NULL, lat_receiver, &l);
	struct hs_mem_frame f[65];
	size_t stride = (filler_size + 63) & ~63ul;
	uint8_t *probe = frames + fillers * stride;
	build(probe, 64, mr, mt, &off);
	f[0] = (struct hs_mem_frame){.data = probe, .len = 64};
	for (unsigned i = 0; i < fillers; i++) {
		build(frames + i * stride, filler_size, ms, mt, &off);
		f[1 + i] = (struct hs_mem_frame){.data = frames + i * stride,
						 .len = (uint32_t)filler_size};
	}
	for (unsigned k = 0; k < probes; k++) {
		/* Wait until the receiver sleeps in poll(). */
		while (!atomic_load(&l.armed))
			sched_yield();
		atomic_store(&l.armed, 0);
		usleep(200);
		uint64_t ts = __rdtsc();
		memcpy(probe + 14, &ts, 8);
		hs_mem_tx_burst(tx, 0, f, 1 + fillers); /* probe first, then fillers */
		uint64_t ck[65];
		hs_mem_tx_reap(tx, 0, ck, 65);
		struct hs_mem_frame s[64];
		int n;
		while ((n = hs_mem_rx_burst(sink, 0, s, 64)) > 0)
			hs_mem_rx_release(sink, 0, (unsigned)n);
		uint64_t deadline = __rdtsc() + (uint64_t)(bench_tsc_ghz() * 1e9);
		while (atomic_load(&l.n) <= k && __rdtsc() < deadline)
			sched_yield();
	}
	atomic_store(&l.stop, true);
	pthread_join(t, NULL);
	unsigned n = atomic_load(&l.n);
	qsort(l.samples, n, sizeof(double), bench_cmp_double);
	*p50 = n ? l.samples[n / 2] : 0;
	*p99 = n ? l.samples[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0;
	free(l.samples);
	free(frames);
	hs_switch_destroy(sw);
	return n == probes ? 0 : -1;
}

int cmd_latency(struct bench_opts *o)
{
	unsigned probes = o->quick ? 300 : 3000;
	bench_json_begin(o, "latency");
	printf("one-way latency, sender to a receiver blocked on its eventfd; %u probes\n",
	       probes);
	printf("%-10s %-26s %10s %10s\n", "immediate", "same burst", "p50 us", "p99 us");
	struct {
		unsigned fillers;
		size_t size;
		const char *what;
	} loads[] = {{0, 64, "probe alone"},
		     {63, 9000, "+63 x 9000 B to another port"}};
	double on50 = 0, off50 = 0;
	for (unsigned li = 0; li < 2; li++)
		for (int imm = 1; imm >= 0; imm--) {
			double p50, p99;
			if (run_latency(imm, loads[li].fillers, loads[li].size, probes, &p50,
					&p99)) {
				fprintf(stderr, "latency run lost probes\n");
				return 1;
			}
			printf("%-10s %-26s %10.1f %10.1f\n", imm ? "on" : "off", loads[li].what,
			       p50, p99);
			fflush(stdout);
			bench_json_item(o,
					"{\"case\":\"latency\",\"immediate\":%s,\"fillers\":%u,"
					"\"filler_bytes\":%zu,\"p50_us\":%.2f,\"p99_us\":%.2f,"
					"\"probes\":%u}",
					imm ? "true" : "false", loads[li].fillers, loads[li].size,
					p50, p99, probes);
			if (li == 1)
				*(imm ? &on50 : &off50) = p50;
		}
	bench_json_end(o);
	printf("summary: blocked receiver behind a loaded round: p50 %.1f us with immediate "
	       "notification, %.1f us without\n", on50, off50);
	return 0;
}

/* ---- idle ---------------------------------------------------------------------------- */

static double idle_cpu(uint32_t flags, unsigned workers, double secs)
{
	struct hs_switch_config sc = {.n_workers = workers, .flags = flags};
	hs_switch_t *sw;
	if (hs_switch_create(&sc, &sw))
		return -1;
	hs_port_t *p[4];
	for (int i = 0; i < 4; i++)
		hs_port_add(sw, NULL, &p[i]);
	uint8_t fr[64], bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, m[6];
	struct hs_offload off;
	for (int i = 0; i < 4; i++) { /* some traffic first, then silence */
		mac(m, (unsigned)i);
		build(fr, 64, bc, m, &off);
		struct hs_mem_frame f = {.data = fr, .len = 64};
		hs_mem_tx_burst(p[i], 0, &f, 1);
	}
	double t = bench_now();
	struct hs_switch_stats st;
	do {
		usleep(10000);
		hs_switch_get_stats(sw, &st);
	} while (st.workers_idle < workers && !(flags & HS_SW_BUSY_POLL) &&
		 bench_now() - t < 5);
	double c0 = cpu_now(), t0 = bench_now();
	while (bench_now() - t0 < secs)
		usleep(50000);
	double used = (cpu_now() - c0) / (bench_now() - t0);
	hs_switch_destroy(sw);
	return used;
}

int cmd_idle(struct bench_opts *o)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned w = cpus > 1 ? (unsigned)cpus : 1;
	double secs = o->seconds > 0 ? o->seconds : (o->quick ? 0.5 : 2.0);
	bench_json_begin(o, "idle");
	double adaptive = idle_cpu(0, w, secs);
	double busy = idle_cpu(HS_SW_BUSY_POLL, w, secs);
	printf("idle switch, %u workers, 4 ports, after traffic stopped, over %.1f s:\n", w,
	       secs);
	printf("  adaptive polling (default): %6.2f%% of one CPU\n", adaptive * 100);
	printf("  busy polling (HS_SW_BUSY_POLL): %6.2f%% of one CPU\n", busy * 100);
	bench_json_item(o, "{\"case\":\"idle\",\"workers\":%u,\"mode\":\"adaptive\","
			   "\"cpu\":%.4f}", w, adaptive);
	bench_json_item(o, "{\"case\":\"idle\",\"workers\":%u,\"mode\":\"busy_poll\","
			   "\"cpu\":%.4f}", w, busy);
	bench_json_end(o);
	printf("summary: idle switch with %u workers uses %.2f%% of a CPU "
	       "(busy polling: %.0f%%)\n", w, adaptive * 100, busy * 100);
	return 0;
}

int cmd_all(struct bench_opts *o)
{
	const char *dir = o->json_path;
	char path[512];
	int (*cmds[])(struct bench_opts *) = {cmd_single, cmd_ablation, cmd_scaling,
					      cmd_latency, cmd_idle};
	const char *names[] = {"single", "ablation", "scaling", "latency", "idle"};
	if (dir)
		mkdir(dir, 0755);
	for (unsigned i = 0; i < 5; i++) {
		struct bench_opts c = *o;
		c.json_path = NULL;
		if (dir) {
			snprintf(path, sizeof(path), "%s/%s.json", dir, names[i]);
			c.json_path = path;
		}
		printf("\n===== %s =====\n", names[i]);
		fflush(stdout);
		if (cmds[i](&c))
			return 1;
	}
	return 0;
}
