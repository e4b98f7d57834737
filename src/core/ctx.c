/*
 * ctx.c - per-thread scratch for rounds (struct hs__ctx). Workers and the
 * loop thread own one each; threads entering in sender context borrow one
 * of the switch's HS__CTX_MAX contexts for the duration of the call (a
 * bitmap of free slots, one CAS to take and one to return, allocated on
 * first use). Nothing is allocated per frame.
 */
#include <errno.h>
#include <stdlib.h>

#include "copy.h"

_Thread_local struct hs__ctx *hs__cur_ctx;

struct hs__ctx *hs__ctx_new(struct hs_switch *sw, unsigned idx)
{
	struct hs__ctx *c = aligned_alloc(HS__CACHELINE,
					  (sizeof(*c) + HS__CACHELINE - 1) &
						  ~(size_t)(HS__CACHELINE - 1));
	if (!c)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->sw = sw;
	c->idx = idx;
	c->max_ports = sw->cfg.max_ports;
	c->mask = calloc(c->max_ports, sizeof(*c->mask));
	c->touched = calloc(c->max_ports, sizeof(*c->touched));
	c->dl = calloc(1, sizeof(*c->dl));
	if (c->dl)
		c->dl->bounce = malloc(2 * (HS__GSO_MAX_LEN + HS__HDR_MAX));
	if (!c->mask || !c->touched || !c->dl || !c->dl->bounce) {
		hs__ctx_free(c);
		return NULL;
	}
	return c;
}

void hs__ctx_free(struct hs__ctx *c)
{
	if (!c)
		return;
	if (c->dl)
		free(c->dl->bounce);
	free(c->dl);
	free(c->mask);
	free(c->touched);
	free(c);
}

struct hs__ctx *hs__ctx_get(struct hs_switch *sw)
{
	uint64_t f = atomic_load_explicit(&sw->ctx_free, memory_order_relaxed);
	unsigned i;
	for (;;) {
		if (!f) {
			errno = EBUSY;
			return NULL;
		}
		i = (unsigned)__builtin_ctzll(f);
		if (atomic_compare_exchange_weak_explicit(&sw->ctx_free, &f,
							  f & ~(1ull << i),
							  memory_order_acquire,
							  memory_order_relaxed))
			break;
	}
	struct hs__ctx *c = sw->ctxs[i];
	if (HS__UNLIKELY(!c)) {
		/* Slot i is ours: nobody else writes ctxs[i] meanwhile. */
		c = hs__ctx_new(sw, sw->cfg.n_workers + 1 + i);
		if (!c) {
			atomic_fetch_or(&sw->ctx_free, 1ull << i);
			errno = ENOMEM;
			return NULL;
		}
		__atomic_store_n(&sw->ctxs[i], c, __ATOMIC_RELEASE);
	}
	return c;
}

void hs__ctx_put(struct hs__ctx *c)
{
	struct hs_switch *sw = c->sw;
	unsigned i = c->idx - sw->cfg.n_workers - 1;
	atomic_fetch_or_explicit(&sw->ctx_free, 1ull << i, memory_order_release);
}
