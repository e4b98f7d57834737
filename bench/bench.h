/*
 * bench.h - small helpers shared by the benchmark programs: time, TSC rate,
 * machine description and JSON output.
 */
#ifndef HS_BENCH_H
#define HS_BENCH_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

struct bench_opts {
	int quick;
	unsigned only_frame, only_ports, only_macs; /* 0: all */
	unsigned ring;                              /* mem ring size, 0: 256 */
	unsigned repeat;                            /* runs per case, 0: 1 */
	int flood;                                  /* single: flowgen's traffic */
	unsigned vlan;                              /* single: trunks, frames tagged
						       with this VID; 0: untagged */
	int rx_poll;                                /* ablation, scaling: receivers
						       poll, never sleep */
	double seconds;
	const char *json_path;
	FILE *json;
	int json_items;
};

/* --ring: a power of two the mem backend takes, at least two of the
 * benchmarks' 32-frame bursts (a sender sends whole bursts), at most the
 * window a pair's sender tracks. */
#define BENCH_RING_MIN 64u
#define BENCH_RING_MAX 4096u
static inline int bench_ring_ok(unsigned r)
{
	return r >= BENCH_RING_MIN && r <= BENCH_RING_MAX && !(r & (r - 1));
}

static inline double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* TSC ticks per nanosecond, measured once against CLOCK_MONOTONIC. */
static inline double bench_tsc_ghz(void)
{
	static double ghz;
	if (ghz == 0) {
		double t0 = bench_now();
		uint64_t c0 = __rdtsc();
		while (bench_now() - t0 < 0.05)
			;
		ghz = (double)(__rdtsc() - c0) / ((bench_now() - t0) * 1e9);
	}
	return ghz;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median of n values (sorts them). */
static inline double bench_median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline void bench_cpu_model(char *out, size_t n)
{
	snprintf(out, n, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "model name", 10)) {
			char *c = strchr(line, ':');
			if (c) {
				c += 2;
				c[strcspn(c, "\n")] = 0;
				snprintf(out, n, "%s", c);
			}
			break;
		}
	fclose(f);
}

static inline void bench_json_begin(struct bench_opts *o, const char *name)
{
	if (!o->json_path)
		return;
	o->json = fopen(o->json_path, "w");
	if (!o->json) {
		perror(o->json_path);
		return;
	}
	char cpu[128], date[64];
	struct utsname u;
	uname(&u);
	bench_cpu_model(cpu, sizeof(cpu));
	time_t now = time(NULL);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	fprintf(o->json,
		"{\"bench\":\"%s\",\"date\":\"%s\",\"machine\":{\"cpu\":\"%s\","
		"\"cpus\":%ld,\"kernel\":\"%s\",\"tsc_ghz\":%.3f},\"results\":[\n",
		name, date, cpu, sysconf(_SC_NPROCESSORS_ONLN), u.release,
		bench_tsc_ghz());
}

__attribute__((format(printf, 2, 3)))
static inline void bench_json_item(struct bench_opts *o, const char *fmt, ...)
{
	if (!o->json)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(o->json, "%s  ", o->json_items++ ? ",\n" : "");
	vfprintf(o->json, fmt, ap);
	va_end(ap);
}

static inline void bench_json_end(struct bench_opts *o)
{
	if (!o->json)
		return;
	fprintf(o->json, "\n]}\n");
	fclose(o->json);
	o->json = NULL;
}

/* Commands (one file each). */
int cmd_single(struct bench_opts *o);
int cmd_ablation(struct bench_opts *o);
int cmd_scaling(struct bench_opts *o);
int cmd_latency(struct bench_opts *o);
int cmd_idle(struct bench_opts *o);
int cmd_fanin(struct bench_opts *o);
int cmd_all(struct bench_opts *o);
int cmd_xen(struct bench_opts *o);
double memcpy_rate(size_t size, double seconds);

#endif /* HS_BENCH_H */
