/*
 * prefetch.h - a write prefetch for backends that fill memory another
 * core reads (a guest's buffers and used ring, a mem port's receive
 * buffers), and the rule by which backends and the core's copy loops
 * share a burst's receive buffers between them.
 */
#ifndef HS_BACKENDS_PREFETCH_H
#define HS_BACKENDS_PREFETCH_H

#include "hyperswitch/backend.h"

/* How a burst's receive buffers are prefetched for the copies into them
 * (2026-12-06, docs/benchmarks.md: for large frames, 32 prefetches at
 * once outran the misses a core keeps in flight). A burst is large when
 * its frame HSB_PREFETCH_AHEAD is over HSB_PREFETCH_SMALL bytes (one
 * frame decides, so that the rule costs a compare a burst, not a frame).
 * A backend prefetches, when it reserves them, every buffer of a small
 * burst and the first HSB_PREFETCH_AHEAD of a large one; the core's copy
 * loops prefetch the rest of a large burst, HSB_PREFETCH_AHEAD frames
 * ahead of the copy (src/core/deliver.c). */
#define HSB_PREFETCH_AHEAD 8
#define HSB_PREFETCH_SMALL 256

/* How many of a burst's n buffers its backend prefetches itself: all, or
 * the first few (the core takes the rest). */
static inline unsigned hsb_prefetch_count(const struct hs_out *out, unsigned n)
{
	if (n > HSB_PREFETCH_AHEAD && out[HSB_PREFETCH_AHEAD].len > HSB_PREFETCH_SMALL)
		return HSB_PREFETCH_AHEAD;
	return n;
}

/* Starts loading a cache line we are about to write, in exclusive state
 * (PREFETCHW; a no-op on x86 CPUs without it, a write prefetch elsewhere).
 * Another core last touched these lines: a plain prefetch would fetch them
 * shared and the store would still wait for the upgrade. Issued ahead of
 * the copies (the rule above), the misses overlap instead of each
 * stalling the copy that meets it. */
static inline void hsb_prefetch_w(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1);
#endif
}

#endif /* HS_BACKENDS_PREFETCH_H */
