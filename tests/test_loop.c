/*
 * test_loop.c - the libuv adapter (src/core/loop.c): hs_run/hs_stop, fd
 * watches and timers from any thread (timers changed in place too), attaching to a host loop, the
 * fd + dispatch mode, MAC aging on the loop, and fd-driven queues served
 * by the loop thread when there are no workers.
 */
#include <poll.h>
#include <pthread.h>
#include <uv.h>

#include "helpers.h"
#include "testbe.h"

static void *run_main(void *arg)
{
	hs_switch_t *sw = arg;
	ck_assert_int_eq(hs_run(sw), 0);
	return NULL;
}

struct tctx {
	_Atomic int hits;
	hs_switch_t *sw;
	int stop_at;
};

static void timer_cb(hs_timer_t *t, void *arg)
{
	struct tctx *c = arg;
	(void)t;
	if (atomic_fetch_add(&c->hits, 1) + 1 == c->stop_at)
		hs_stop(c->sw);
}

START_TEST(run_returns_after_stop_from_another_thread)
{
	hs_switch_t *sw = th_switch(NULL);
	pthread_t t;
	pthread_create(&t, NULL, run_main, sw);
	/* hs_stop works whether or not the loop has started yet. */
	ck_assert_int_eq(hs_stop(sw), 0);
	pthread_join(t, NULL);
	/* It can run again afterwards; stop it once it is seen running. */
	struct tctx c = {.sw = sw, .stop_at = 0};
	hs_timer_t *tm;
	ck_assert_int_eq(hs_timer_add(sw, 1, 1, timer_cb, &c, &tm), 0);
	pthread_create(&t, NULL, run_main, sw);
	ck_assert(TH_WAIT(atomic_load(&c.hits) > 0, 3000));
	ck_assert_int_eq(hs_stop(sw), 0);
	pthread_join(t, NULL);
	hs_timer_del(tm);
	hs_switch_destroy(sw);
}
END_TEST

struct wctx {
	_Atomic int hits;
	int fd;
	hs_switch_t *sw;
	bool stop_on_hit;
};

static void watch_cb(hs_watch_t *w, int fd, unsigned ev, void *arg)
{
	struct wctx *c = arg;
	(void)w;
	ck_assert(ev & HS_WATCH_READ);
	char buf[64];
	ssize_t r = read(fd, buf, sizeof(buf));
	(void)r;
	atomic_fetch_add(&c->hits, 1);
	if (c->stop_on_hit)
		hs_stop(c->sw);
}

START_TEST(watches_fire_and_stop_after_delete)
{
	hs_switch_t *sw = th_switch(NULL);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	struct wctx c = {.fd = p[0], .sw = sw};
	hs_watch_t *w;
	/* Added before the loop runs... */
	ck_assert_int_eq(hs_watch_add(sw, p[0], HS_WATCH_READ, watch_cb, &c, &w), 0);
	pthread_t t;
	pthread_create(&t, NULL, run_main, sw);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert(TH_WAIT(atomic_load(&c.hits) == 1, 3000));
	/* ...deleted from another thread while it runs: no more calls. */
	hs_watch_del(w);
	ck_assert_int_eq(write(p[1], "y", 1), 1);
	usleep(50000);
	ck_assert_int_eq(atomic_load(&c.hits), 1);
	/* Added while the loop runs (from another thread). */
	struct wctx c2 = {.fd = p[0], .sw = sw, .stop_on_hit = true};
	ck_assert_int_eq(hs_watch_add(sw, p[0], HS_WATCH_READ, watch_cb, &c2, &w), 0);
	pthread_join(t, NULL); /* the callback stopped the loop */
	ck_assert_int_ge(atomic_load(&c2.hits), 1);
	hs_watch_del(w);
	close(p[0]);
	close(p[1]);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(timers_repeat_until_deleted)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tctx c = {.sw = sw, .stop_at = 3};
	hs_timer_t *t;
	ck_assert_int_eq(hs_timer_add(sw, 5, 5, timer_cb, &c, &t), 0);
	ck_assert_int_eq(hs_run(sw), 0);
	ck_assert_int_eq(atomic_load(&c.hits), 3);
	hs_timer_del(t);
	/* A one-shot timer fires once. */
	struct tctx c1 = {.sw = sw, .stop_at = 1};
	ck_assert_int_eq(hs_timer_add(sw, 1, 0, timer_cb, &c1, &t), 0);
	ck_assert_int_eq(hs_run(sw), 0);
	ck_assert_int_eq(atomic_load(&c1.hits), 1);
	hs_timer_del(t);
	hs_switch_destroy(sw);
}
END_TEST

/* A one-shot timer that makes itself repeat from its callback. */
static void self_modify_cb(hs_timer_t *t, void *arg)
{
	struct tctx *c = arg;
	if (atomic_fetch_add(&c->hits, 1) == 0)
		ck_assert_int_eq(hs_timer_modify(t, 1, 1), 0);
}

START_TEST(timers_change_their_period_in_place)
{
	hs_switch_t *sw = th_switch(NULL);
	pthread_t th;
	pthread_create(&th, NULL, run_main, sw);
	/* from another thread: a timer an hour away is due in 5 ms, then
	 * every 5 ms */
	struct tctx c = {.sw = sw};
	hs_timer_t *t;
	ck_assert_int_eq(hs_timer_add(sw, 3600000, 0, timer_cb, &c, &t), 0);
	ck_assert_int_eq(hs_timer_modify(t, 5, 5), 0);
	ck_assert(TH_WAIT(atomic_load(&c.hits) >= 3, 3000));
	/* and back to an hour: it stops firing */
	ck_assert_int_eq(hs_timer_modify(t, 3600000, 0), 0);
	/* The loop thread applies it at its next reconcile, which also
	 * starts any timer added after it: once that one has fired, the
	 * change is in (a fixed wait was not enough for a starved loop
	 * thread). */
	struct tctx cm = {.sw = sw};
	hs_timer_t *mark;
	ck_assert_int_eq(hs_timer_add(sw, 1, 0, timer_cb, &cm, &mark), 0);
	ck_assert(TH_WAIT(atomic_load(&cm.hits) >= 1, 3000));
	hs_timer_del(mark);
	int h = atomic_load(&c.hits);
	usleep(100000);
	ck_assert_int_eq(atomic_load(&c.hits), h);
	hs_timer_del(t);
	/* from its own callback: a one-shot that goes on repeating */
	struct tctx c2 = {.sw = sw};
	ck_assert_int_eq(hs_timer_add(sw, 1, 0, self_modify_cb, &c2, &t), 0);
	ck_assert(TH_WAIT(atomic_load(&c2.hits) >= 5, 3000));
	hs_timer_del(t);
	hs_stop(sw);
	pthread_join(th, NULL);
	hs_switch_destroy(sw);
}
END_TEST

/* ---- a host loop ---------------------------------------------------------------- */

struct host {
	hs_switch_t *sw;
	uv_loop_t loop;
	_Atomic int hits;
};

static void detach_cb(hs_timer_t *t, void *arg)
{
	struct host *h = arg;
	atomic_fetch_add(&h->hits, 1);
	hs_timer_del(t);
	/* On the loop's thread, from a library callback: allowed. */
	ck_assert_int_eq(hs_switch_detach(h->sw), 0);
}

START_TEST(attached_to_a_host_loop)
{
	struct host h = {0};
	h.sw = th_switch(NULL);
	ck_assert_int_eq(uv_loop_init(&h.loop), 0);
	ck_assert_int_eq(hs_switch_attach(h.sw, &h.loop), 0);
	hs_timer_t *t;
	ck_assert_int_eq(hs_timer_add(h.sw, 10, 0, detach_cb, &h, &t), 0);
	/* The host runs its loop; once detached, nothing keeps it alive. */
	ck_assert_int_eq(uv_run(&h.loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(atomic_load(&h.hits), 1);
	hs_switch_destroy(h.sw);
	ck_assert_int_eq(uv_loop_close(&h.loop), 0);
}
END_TEST

START_TEST(destroyed_while_attached_leaves_the_host_loop_clean)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	hs_switch_t *sw = th_switch(NULL);
	ck_assert_int_eq(hs_switch_attach(sw, &loop), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	hs_switch_destroy(sw); /* from the loop's thread: detaches */
	ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(fd_and_dispatch_for_other_loops)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tctx c = {.sw = sw, .stop_at = 1000};
	hs_timer_t *t;
	ck_assert_int_eq(hs_timer_add(sw, 1, 1, timer_cb, &c, &t), 0);
	int fd = hs_switch_fd(sw);
	ck_assert_int_ge(fd, 0);
	uint64_t deadline = th_mono_ms() + 3000;
	while (atomic_load(&c.hits) < 3 && th_mono_ms() < deadline) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		poll(&pf, 1, hs_switch_timeout_ms(sw));
		ck_assert_int_eq(hs_switch_dispatch(sw), 0);
	}
	ck_assert_int_ge(atomic_load(&c.hits), 3);
	hs_timer_del(t);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(macs_age_out_while_the_loop_runs)
{
	struct hs_switch_config cfg = {.fdb_aging_s = 60};
	hs_switch_t *sw = th_switch(&cfg);
	hs_port_t *a = th_port(sw, "a", 0);
	th_port(sw, "b", 0);
	uint8_t f[64], m[6];
	th_mac(m, 1);
	th_send(a, f, th_frame(f, th_bcast, m, -1, 64, 1));
	ck_assert_uint_eq(th_sstats(sw).fdb_entries, 1);
	th_advance_s(61);
	pthread_t t;
	pthread_create(&t, NULL, run_main, sw);
	ck_assert(TH_WAIT(th_sstats(sw).fdb_entries == 0, 4000));
	hs_stop(sw);
	pthread_join(t, NULL);
	ck_assert_uint_eq(th_sstats(sw).fdb_aged, 1);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(fd_driven_queues_are_served_by_the_loop_thread)
{
	hs_switch_t *sw = th_switch(NULL);
	struct tbe_config ta = {.kick_fd = true};
	hs_port_t *a = tbe_port(sw, "a", &ta, 0), *b = tbe_port(sw, "b", NULL, 0);
	pthread_t t;
	pthread_create(&t, NULL, run_main, sw);
	uint8_t f[128], m[6];
	th_mac(m, 1);
	for (uint32_t i = 0; i < 100; i++) {
		th_frame(f, th_bcast, m, -1, 128, i);
		tbe_queue(a, 0, f, 128, NULL, NULL);
	}
	ck_assert_int_eq(tbe_kick(a, 0), 0); /* an eventfd write, nothing else */
	ck_assert(TH_WAIT(tbe_rx_count(b, 0) == 100, 3000));
	/* (the last round delivers to b before it completes a's frames) */
	ck_assert(TH_WAIT(tbe_pending_tx(a, 0) == 0, 3000));
	ck_assert_uint_gt(th_sstats(sw).rounds_sender, 0);
	/* Again, to see the fd was re-armed. */
	tbe_queue(a, 0, f, 128, NULL, NULL);
	tbe_kick(a, 0);
	ck_assert(TH_WAIT(tbe_rx_count(b, 0) == 101, 3000));
	hs_stop(sw);
	pthread_join(t, NULL);
	tbe_drop_all(b, 0);
	hs_switch_destroy(sw);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("loop");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, run_returns_after_stop_from_another_thread);
	tcase_add_test(tc, watches_fire_and_stop_after_delete);
	tcase_add_test(tc, timers_repeat_until_deleted);
	tcase_add_test(tc, timers_change_their_period_in_place);
	tcase_add_test(tc, attached_to_a_host_loop);
	tcase_add_test(tc, destroyed_while_attached_leaves_the_host_loop_clean);
	tcase_add_test(tc, fd_and_dispatch_for_other_loops);
	tcase_add_test(tc, macs_age_out_while_the_loop_runs);
	tcase_add_test(tc, fd_driven_queues_are_served_by_the_loop_thread);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
