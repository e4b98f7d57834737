/*
 * lock.c - the contended path of the egress queue lock (internal.h).
 *
 * The states: 0 free, 1 held, 2 held and a waiter may be asleep. A waiter
 * first spins, re-trying only when the word reads free, for about as long
 * as a burst of large copies holds the lock on this kind of machine; then
 * it marks the word 2 and sleeps in FUTEX_WAIT until a release that saw 2
 * wakes one sleeper. A woken waiter takes the lock as 2, not 1: it cannot
 * know whether others still sleep, and a spare wake costs one system call,
 * a lost one a stalled queue. This is the classic three-state futex mutex
 * (Drepper, "Futexes Are Tricky", mutex 3) with a bounded spin in front.
 *
 * Why not sched_yield: with CFS a yielding thread keeps its place, so the
 * preempted holder gets no earlier turn; a sleeper leaves the run queue.
 */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* Relax rounds before sleeping. PAUSE takes 10 to 140 cycles depending on
 * the core, so this is 5 to 70 thousand cycles: a burst of 32 frames of
 * 1518 bytes copies in about 10 to 15 thousand. Chosen with
 * `hs-bench fanin` (docs/benchmarks.md 5b); -DHS__LOCK_SPINS=N builds
 * another for such comparisons. */
#ifndef HS__LOCK_SPINS
#define HS__LOCK_SPINS 512
#endif

/* Returns true if it slept: EAGAIN (the word changed before we slept)
 * and EINTR both just mean "look again". */
static bool futex_wait(_Atomic uint32_t *w, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0) == 0;
}

/* One spin round: takes the lock if the word reads free (reading before
 * the CAS keeps waiters off the holder's cache line). */
static inline bool spin_take(hs__lock *l)
{
	uint32_t z = 0;
	if (atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
	    atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire,
						  memory_order_relaxed))
		return true;
	hs__cpu_relax();
	return false;
}

bool hs__lock_wait(hs__lock *l, bool may_sleep)
{
	/* HS_SW_BUSY_POLL: its threads never sleep, here neither */
	while (!may_sleep)
		if (spin_take(l))
			return false;
	for (unsigned i = 0; i < HS__LOCK_SPINS; i++)
		if (spin_take(l))
			return false;
	bool slept = false;
	while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
		slept |= futex_wait(&l->v, 2);
	return slept;
}

void hs__lock_wake(hs__lock *l)
{
	syscall(SYS_futex, (uint32_t *)&l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
