/*
 * prefetch.h - a write prefetch for backends that fill memory another
 * core reads (a guest's buffers and used ring, a mem port's receive
 * buffers).
 */
#ifndef HS_BACKENDS_PREFETCH_H
#define HS_BACKENDS_PREFETCH_H

/* Starts loading a cache line we are about to write, in exclusive state
 * (PREFETCHW; a no-op on x86 CPUs without it, a write prefetch elsewhere).
 * Another core last touched these lines: a plain prefetch would fetch them
 * shared and the store would still wait for the upgrade. Issued for a
 * whole burst before its copies, the misses overlap instead of each
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
