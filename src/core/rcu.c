/*
 * rcu.c - the one place that names the RCU flavour: liburcu QSBR.
 *
 * Why QSBR: data-plane threads already have a natural quiescent point
 * (the end of a round), so read-side sections cost nothing at all. The
 * price is that every registered thread must either announce quiescent
 * states or be offline, or grace periods stall. So:
 *  - workers and the loop thread register once, announce a quiescent state
 *    per round and go offline before sleeping;
 *  - host threads entering the data path (hs_port_kick, hs_mem_tx_burst)
 *    are registered on first use and are online only inside the call
 *    (hs__rcu_enter/hs__rcu_leave); they are unregistered at thread exit.
 * A host thread that registers itself with urcu-qsbr for its own use must
 * not also call into the data path.
 */
#include <pthread.h>
#include <urcu/urcu-qsbr.h>

#include "internal.h"

/* ThreadSanitizer cannot see liburcu's synchronisation (it is not
 * instrumented): tell it what a grace period guarantees, namely that
 * everything a reader did before its quiescent state (or going offline)
 * happens before synchronize returns. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char hb_token;
#define HB_READER_DONE() __tsan_release(&hb_token)
#define HB_GRACE_PERIOD() __tsan_acquire(&hb_token)
#else
#define HB_READER_DONE() ((void)0)
#define HB_GRACE_PERIOD() ((void)0)
#endif

static _Thread_local bool registered;
static _Thread_local int depth;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *unused)
{
	(void)unused;
	if (registered) {
		urcu_qsbr_unregister_thread();
		registered = false;
	}
}

static void make_key(void)
{
	pthread_key_create(&exit_key, on_thread_exit);
}

void hs__rcu_register(void)
{
	if (registered)
		return;
	pthread_once(&exit_once, make_key);
	urcu_qsbr_register_thread();
	/* Registered threads start online; ours stay offline when idle. */
	urcu_qsbr_thread_offline();
	registered = true;
	/* Non-NULL value so the destructor runs at thread exit. */
	pthread_setspecific(exit_key, &registered);
}

void hs__rcu_unregister(void)
{
	if (!registered)
		return;
	urcu_qsbr_unregister_thread();
	registered = false;
	pthread_setspecific(exit_key, NULL);
}

void hs__rcu_enter(void)
{
	hs__rcu_register();
	if (depth++ == 0)
		urcu_qsbr_thread_online();
}

void hs__rcu_leave(void)
{
	if (--depth == 0) {
		HB_READER_DONE();
		urcu_qsbr_thread_offline();
	}
}

void hs__rcu_quiescent(void)
{
	HB_READER_DONE();
	urcu_qsbr_quiescent_state();
}

bool hs__rcu_thread_online(void)
{
	return registered && depth > 0;
}

/* Callers are never online (they would wait for themselves): the public
 * entry points that can get here refuse with -EDEADLK when
 * hs__rcu_thread_online(). */
void hs__rcu_synchronize(void)
{
	urcu_qsbr_synchronize_rcu();
	HB_GRACE_PERIOD();
}
