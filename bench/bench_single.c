/*
 * bench_single.c - `hs-bench single`: frames through mem ports on one core
 * (sender context: the sending thread switches its own frames), for 64,
 * 1518 and 9000-byte frames, 2/8/64 ports, 1k/64k learned MACs, next to the
 * single-core memcpy rate of the same sizes measured in the same run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <hyperswitch/hyperswitch.h>

#include "bench.h"

/* ---- memcpy baseline ---------------------------------------------------------- */

/* Copies `size` bytes from a rotating set of sources into a rotating set
 * of destinations, the footprint a 2-port switch touches (32 frames each
 * side): cache-resident, one core. Returns copies per second. */
double memcpy_rate(size_t size, double seconds)
{
	enum { N = 32 };
	uint8_t *src = aligned_alloc(64, N * ((size + 63) & ~(size_t)63));
	uint8_t *dst = aligned_alloc(64, N * ((size + 63) & ~(size_t)63));
	size_t stride = (size + 63) & ~(size_t)63;
	memset(src, 1, N * stride);
	memset(dst, 2, N * stride);
	uint64_t copies = 0;
	double t0 = bench_now(), t;
	do {
		for (unsigned r = 0; r < 1024; r++) {
			unsigned i = (unsigned)(copies + r) % N;
			memcpy(dst + i * stride, src + ((i * 7) % N) * stride, size);
			__asm__ volatile("" ::: "memory");
		}
		copies += 1024;
		t = bench_now();
	} while (t - t0 < seconds);
	free(src);
	free(dst);
	return (double)copies / (t - t0);
}

/* ---- single core through mem ports ----------------------------------------------- */

struct single_case {
	unsigned ports, macs;
	size_t frame;
	bool flood; /* one source on every port, an unlearned destination */
	uint16_t vlan; /* ports are trunks, frames carry this tag; 0: none */
};

struct single_result {
	double mpps, gbps, tsc_per_pkt;
	uint64_t frames, drops;
};

static void mac_of(uint8_t m[6], unsigned id)
{
	m[0] = 0x02;
	m[1] = 0x42;
	m[2] = (uint8_t)(id >> 24);
	m[3] = (uint8_t)(id >> 16);
	m[4] = (uint8_t)(id >> 8);
	m[5] = (uint8_t)id;
}

/* mac_of(id) as a little-endian word: 02:42:id[31..0]. */
static inline uint64_t mac_word(unsigned id)
{
	return 0x4202ull | ((uint64_t)__builtin_bswap32(id) << 16);
}

/* MAC j of port p: ids p, p + P, p + 2P, ... */
static unsigned mac_id(unsigned p, unsigned j, unsigned ports)
{
	return p + j * ports;
}

/* Receives and releases what port p holds (up to a burst). */
static inline uint64_t rx_take(hs_port_t *p, struct hs_mem_frame *rx)
{
	int m = hs_mem_rx_burst(p, 0, rx, 32);
	if (m <= 0)
		return 0;
	hs_mem_rx_release(p, 0, (unsigned)m);
	return (uint64_t)m;
}

/* noinline: bench/single_cost.sh counts the instructions inside it */
__attribute__((noinline)) static int run_single(const struct single_case *c, unsigned ring, double seconds,
		      struct single_result *r)
{
	const unsigned B = 32;
	struct hs_switch_config sc = {.burst = B, .fdb_capacity = c->macs + c->macs / 4 + 64,
				      .max_ports = c->ports + 1};
	hs_switch_t *sw;
	if (hs_switch_create(&sc, &sw))
		return -1;
	uint32_t buf = c->frame <= 2048 ? 2048 : (uint32_t)((c->frame + 1023) & ~1023u);
	struct hs_mem_config mc = {.ring_size = ring ? ring : 256, .buf_size = buf};
	hs_port_t **port = calloc(c->ports, sizeof(*port));
	const uint16_t trunks[1] = {c->vlan};
	for (unsigned p = 0; p < c->ports; p++) {
		struct hs_port_config pc = {.backend = HS_MEM_BACKEND, .backend_config = &mc,
					    .backend_config_size = sizeof(mc),
					    .mtu = c->frame > 1514 ? 9216 : 0};
		if (c->vlan) {
			pc.vlan_mode = HS_VLAN_TRUNK;
			pc.trunks = trunks;
			pc.n_trunks = 1;
		}
		if (hs_port_add(sw, &pc, &port[p]))
			return -1;
	}
	unsigned per = c->macs / c->ports;
	uint8_t *frames = aligned_alloc(64, B * ((c->frame + 63) & ~(size_t)63));
	size_t stride = (c->frame + 63) & ~(size_t)63;
	for (unsigned i = 0; i < B; i++) {
		uint8_t *f = frames + i * stride;
		memset(f, 0x5a, c->frame);
		unsigned at = 12;
		if (c->vlan) { /* 802.1Q, PCP 0: the frame's length includes it */
			f[at++] = 0x81, f[at++] = 0x00;
			f[at++] = (uint8_t)(c->vlan >> 8), f[at++] = (uint8_t)c->vlan;
		}
		f[at] = 0x08;
		f[at + 1] = 0x00;
	}
	struct hs_mem_frame tx[32], rx[32];
	uint64_t ck[256];
	/* Learn every MAC: each port sends one broadcast from each of its MACs. */
	for (unsigned p = 0; p < c->ports; p++)
		for (unsigned j = 0; j < per; j += B) {
			unsigned n = per - j < B ? per - j : B;
			for (unsigned i = 0; i < n; i++) {
				uint8_t *f = frames + i * stride;
				memset(f, 0xff, 6);
				mac_of(f + 6, mac_id(p, j + i, c->ports));
				tx[i] = (struct hs_mem_frame){.data = f, .len = 64};
			}
			hs_mem_tx_burst(port[p], 0, tx, n);
			hs_mem_tx_reap(port[p], 0, ck, 256);
			for (unsigned q = 0; q < c->ports; q++) {
				int k;
				while ((k = hs_mem_rx_burst(port[q], 0, rx, 32)) > 0)
					hs_mem_rx_release(port[q], 0, (unsigned)k);
			}
		}
	struct hs_switch_stats st0;
	hs_switch_get_stats(sw, &st0);

	/* Traffic: port p sends to port p+1, walking through both ports' MACs
	 * with different strides so that lookups hit the whole table. Or,
	 * flooding (testpmd flowgen's traffic), every port sends every frame
	 * from one MAC to one no port sends from: the source moves to the
	 * sending port every burst, and every frame goes to every other port
	 * (received and counted at each). */
	const uint64_t flood_dm = mac_word(0xfffffd), flood_sm = mac_word(0xfffffe);
	for (unsigned i = 0; i < B; i++) {
		tx[i] = (struct hs_mem_frame){.data = frames + i * stride,
					      .len = (uint32_t)c->frame};
		if (c->flood) {
			memcpy(frames + i * stride, &flood_dm, 6);
			memcpy(frames + i * stride + 6, &flood_sm, 6);
		}
	}
	unsigned *cursor = calloc(c->ports, sizeof(unsigned));
	uint64_t sent = 0, got = 0;
	double t0 = bench_now(), t;
	uint64_t c0 = __rdtsc();
	do {
		for (unsigned it = 0; it < 64; it++) {
			unsigned p = (unsigned)(sent / B) % c->ports;
			unsigned d = (p + 1) % c->ports;
			unsigned k = cursor[p];
			/* The generator's own work: two computed 6-byte stores
			 * per frame, no table (no cache misses of its own);
			 * flooded frames stay as they were set up. */
			if (!c->flood) {
				for (unsigned i = 0; i < B; i++, k++) {
					uint8_t *f = frames + i * stride;
					uint64_t dm = mac_word(mac_id(d, (k * 7) % per, c->ports));
					uint64_t sm = mac_word(mac_id(p, k % per, c->ports));
					memcpy(f, &dm, 6);
					memcpy(f + 6, &sm, 6);
				}
				cursor[p] = k;
			}
			int n = hs_mem_tx_burst(port[p], 0, tx, B);
			hs_mem_tx_reap(port[p], 0, ck, 256);
			sent += (uint64_t)(n > 0 ? n : 0);
			if (!c->flood)
				got += rx_take(port[d], rx);
			else
				for (unsigned q = 0; q < c->ports; q++)
					if (q != p)
						got += rx_take(port[q], rx);
		}
		t = bench_now();
	} while (t - t0 < seconds);
	uint64_t c1 = __rdtsc();
	struct hs_switch_stats st;
	hs_switch_get_stats(sw, &st);
	r->frames = got;
	r->drops = 0;
	for (unsigned i = 0; i < HS_DROP__COUNT; i++)
		r->drops += st.drops[i] - st0.drops[i];
	r->mpps = (double)got / (t - t0) / 1e6;
	r->gbps = (double)got * (double)c->frame * 8 / (t - t0) / 1e9;
	r->tsc_per_pkt = got ? (double)(c1 - c0) / (double)got : 0;
	if (st.fdb_entries < c->macs)
		fprintf(stderr, "warning: only %llu of %u MACs learned\n",
			(unsigned long long)st.fdb_entries, c->macs);
	free(cursor);
	free(frames);
	free(port);
	hs_switch_destroy(sw);
	return 0;
}

int cmd_single(struct bench_opts *o)
{
	static const size_t sizes[] = {64, 1518, 9000};
	static const unsigned ports[] = {2, 8, 64};
	/* 0: one MAC per port, as guests send (every frame of a burst has
	 * the same source and destination); then tables of 1k and 64k */
	static const unsigned macs[] = {0, 1024, 65536};
	enum { NCASE = 27 };
	double secs = o->seconds > 0 ? o->seconds : (o->quick ? 0.3 : 2.0);
	unsigned reps = o->repeat ? (o->repeat < 32 ? o->repeat : 32) : 1;
	struct single_case cases[NCASE];
	unsigned nc = 0;
	for (unsigned s = 0; s < 3; s++)
		for (unsigned p = 0; p < 3; p++)
			for (unsigned m = 0; m < 3; m++) {
				struct single_case c = {.ports = ports[p],
							.macs = macs[m] ? macs[m] : ports[p],
							.frame = sizes[s], .flood = o->flood,
							.vlan = (uint16_t)o->vlan};
				if (o->flood && macs[m])
					continue; /* the table's size changes nothing */
				if ((o->only_frame && o->only_frame != c.frame) ||
				    (o->only_ports && o->only_ports != c.ports) ||
				    (o->only_macs && o->only_macs != c.macs))
					continue;
				cases[nc++] = c;
			}

	/* Repeats are interleaved (pass after pass over every case, memcpy
	 * included) so that a noisy spell on a shared machine spreads over
	 * all cases instead of hitting one; medians are reported. */
	static double mpps[NCASE][32], tsc[NCASE][32], mcv[3][32];
	static uint64_t drops[NCASE];
	for (unsigned k = 0; k < reps; k++) {
		for (unsigned s = 0; s < 3; s++)
			if (!o->only_frame || o->only_frame == sizes[s])
				mcv[s][k] = memcpy_rate(sizes[s], secs / 2);
		for (unsigned i = 0; i < nc; i++) {
			struct single_result r;
			if (run_single(&cases[i], o->ring, secs, &r)) {
				fprintf(stderr, "case failed\n");
				return 1;
			}
			mpps[i][k] = r.mpps;
			tsc[i][k] = r.tsc_per_pkt;
			drops[i] += r.drops;
		}
	}

	bench_json_begin(o, "single");
	double mc[3] = {0};
	printf("memcpy baseline (one core, cache-resident):\n");
	for (unsigned s = 0; s < 3; s++) {
		if (o->only_frame && o->only_frame != sizes[s])
			continue;
		mc[s] = bench_median(mcv[s], reps);
		printf("  %5zu B: %8.2f M copies/s  %7.2f Gbit/s\n", sizes[s], mc[s] / 1e6,
		       mc[s] * (double)sizes[s] * 8 / 1e9);
		bench_json_item(o, "{\"case\":\"memcpy\",\"frame\":%zu,\"mcopies\":%.3f,"
				   "\"gbps\":%.3f}",
				sizes[s], mc[s] / 1e6, mc[s] * (double)sizes[s] * 8 / 1e9);
	}
	if (o->vlan)
		printf("\ntraffic: every port a trunk of VLAN %u, every frame tagged with it "
		       "(a tag in, the same tag out)\n", o->vlan);
	if (o->flood)
		printf("\ntraffic: flooded (one source MAC on every port, toward a MAC "
		       "never learned); Mpps counts frames received at all ports\n");
	printf("\n%6s %6s %7s %10s %9s %9s %13s %8s%s\n", "frame", "ports", "macs",
	       "Mpps", "Gbit/s", "tsc/pkt", "vs memcpy", "drops",
	       reps > 1 ? "  (min-max Mpps)" : "");
	double headline = 0, headline_tsc = 0, headline_ratio = 0;
	for (unsigned i = 0; i < nc; i++) {
		const struct single_case *c = &cases[i];
		unsigned si = c->frame == 64 ? 0 : c->frame == 1518 ? 1 : 2;
		double lo = mpps[i][0], hi = mpps[i][0];
		for (unsigned k = 1; k < reps; k++) {
			lo = mpps[i][k] < lo ? mpps[i][k] : lo;
			hi = mpps[i][k] > hi ? mpps[i][k] : hi;
		}
		double med = bench_median(mpps[i], reps), t = bench_median(tsc[i], reps);
		double gbps = med * 1e6 * (double)c->frame * 8 / 1e9;
		double ratio = med * 1e6 / mc[si];
		printf("%6zu %6u %7u %10.2f %9.2f %9.1f %12.1f%% %8llu", c->frame, c->ports,
		       c->macs, med, gbps, t, ratio * 100, (unsigned long long)drops[i]);
		if (reps > 1)
			printf("  (%.2f-%.2f)", lo, hi);
		printf("\n");
		bench_json_item(o,
				"{\"case\":\"%s\",\"vlan\":%u,\"frame\":%zu,\"ports\":%u,"
				"\"macs\":%u,\"mpps\":%.3f,\"mpps_min\":%.3f,"
				"\"mpps_max\":%.3f,\"runs\":%u,\"gbps\":%.3f,"
				"\"tsc_per_pkt\":%.1f,\"memcpy_ratio\":%.4f,\"drops\":%llu}",
				c->flood ? "single-flood" : "single", c->vlan, c->frame, c->ports,
				c->macs, med, lo, hi, reps, gbps, t, ratio,
				(unsigned long long)drops[i]);
		if (c->frame == 64 && c->ports == 2 && c->macs == 1024) {
			headline = med;
			headline_tsc = t;
			headline_ratio = ratio;
		}
	}
	bench_json_end(o);
	if (headline > 0)
		printf("summary: single-core 64B 2 ports 1k MACs %.2f Mpps (%.1f%% of the "
		       "memcpy-64 rate, %.0f TSC cycles/frame at %.2f GHz)\n",
		       headline, headline_ratio * 100, headline_tsc, bench_tsc_ghz());
	else
		printf("summary: %u cases run\n", nc);
	return 0;
}

