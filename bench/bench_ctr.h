/*
 * bench_ctr.h - one backend counter of a port, by name (for benchmark
 * programs that do not need bench.h's timing helpers).
 */
#ifndef HS_BENCH_CTR_H
#define HS_BENCH_CTR_H

#include <stdint.h>
#include <string.h>

#include <hyperswitch/hyperswitch.h>

struct bench_ctr {
	const char *name;
	uint64_t v;
};

static inline void bench_ctr_cb(void *arg, const char *name, uint64_t v)
{
	struct bench_ctr *c = (struct bench_ctr *)arg;
	if (!strcmp(name, c->name))
		c->v = v;
}

/* The counter's value, or 0 where the port's backend has none by that
 * name. */
static inline uint64_t bench_backend_ctr(hs_port_t *p, const char *name)
{
	struct bench_ctr c = {name, 0};
	hs_port_backend_counters(p, bench_ctr_cb, &c);
	return c.v;
}

#endif
