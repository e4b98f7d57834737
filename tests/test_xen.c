/*
 * test_xen.c - the Xen netif backend against front-ends written from the
 * protocol (xen_front.h) on the emulated hypervisor: the handshake,
 * frames both ways in one and many slots, guest to guest in one grant
 * copy, a front-end that breaks the transmit ring (only its vif stops),
 * refused packets and revoked grants counted, and a front-end that
 * closes and comes back. HS_TEST_WORKERS=N runs it with polling workers.
 */
#include <pthread.h>

#include "helpers.h"
#include "xen_front.h"

struct xenv {
	hs_switch_t *sw;
	pthread_t loop;
	struct hs__xemu *emu;
	struct hs__xemu_dom *dom0;
	hs_port_t *m;
};

static void *loop_main(void *arg)
{
	hs_run(arg);
	return NULL;
}

static void xenv_up(struct xenv *e)
{
	memset(e, 0, sizeof(*e));
	const char *w = getenv("HS_TEST_WORKERS");
	struct hs_switch_config c = {.n_workers = w ? (unsigned)atoi(w) : 0};
	e->sw = th_switch(&c);
	ck_assert_int_eq(hs__xemu_create(&e->emu), 0);
	e->dom0 = hs__xemu_domain(e->emu, 0, 0, NULL);
	struct th_port_opts mo = {.name = "m", .buf = 9100, .caps = 0};
	e->m = th_port_opts(e->sw, &mo);
	struct hs_port_config jumbo = {.size = sizeof(jumbo), .mtu = 9000};
	ck_assert_int_eq(hs_port_reconfigure(e->m, &jumbo, HS_PORT_SET_MTU), 0);
	pthread_create(&e->loop, NULL, loop_main, e->sw);
}

static hs_port_t *xen_port(struct xenv *e, const char *name, uint32_t domid)
{
	struct hs_xen_config xc = {.frontend_domid = domid, .devid = 0, .backend_domid = 0,
				   .hypervisor = e->dom0};
	struct hs_port_config pc = {.name = name, .backend = HS_XEN_BACKEND,
				    .backend_config = &xc, .backend_config_size = sizeof(xc),
				    .mtu = 9000};
	hs_port_t *p = NULL;
	ck_assert_int_eq(hs_port_add(e->sw, &pc, &p), 0);
	return p;
}

static void xenv_down(struct xenv *e)
{
	hs_stop(e->sw);
	pthread_join(e->loop, NULL);
	hs_switch_destroy(e->sw);
	hs__xemu_destroy(e->emu);
}

struct ctr_arg {
	const char *name;
	uint64_t v;
};

static void ctr_cb(void *arg, const char *n, uint64_t v)
{
	struct ctr_arg *c = arg;
	if (!strcmp(c->name, n))
		c->v = v;
}

static uint64_t ctr(hs_port_t *p, const char *name)
{
	struct ctr_arg c = {name, UINT64_MAX};
	hs_port_backend_counters(p, ctr_cb, &c);
	return c.v;
}

/* Waits for a frame on the front-end. */
static int recv_wait(struct xfront *f, uint8_t *buf, uint32_t max, struct xf_rx *info)
{
	int got = 0;
	TH_WAIT((xf_events(f), got = xf_recv(f, buf, max, info)) != 0, 3000);
	return got;
}

/* A guest up: its vif on the switch, the handshake done. */
static hs_port_t *guest_up(struct xenv *e, struct xfront *f, const char *name, uint32_t domid)
{
	xf_create(f, e->emu, domid, 0, 0);
	hs_port_t *p = xen_port(e, name, domid);
	xf_connect(f);
	ck_assert(TH_WAIT(hs_port_link_up(p), 3000));
	return p;
}

START_TEST(frames_both_ways_in_one_and_many_slots)
{
	struct xenv e;
	xenv_up(&e);
	struct xfront f;
	hs_port_t *x = guest_up(&e, &f, "x1", 1);
	ck_assert_uint_eq(ctr(x, "connects"), 1);
	static uint8_t fr[10000], got[70000];
	uint8_t mx[6], mm[6];
	th_mac(mx, 1);
	th_mac(mm, 2);
	/* guest -> m: one slot, then three */
	size_t n = th_frame(fr, th_bcast, mx, -1, 60, 1);
	xf_send(&f, fr, (uint32_t)n, 1, 100, 0, 0, 0);
	ck_assert(TH_WAIT(th_pending(e.m) == 1, 3000));
	struct hs_mem_frame mf;
	ck_assert_int_eq(hs_mem_rx_burst(e.m, 0, &mf, 1), 1);
	ck_assert_uint_eq(mf.len, n);
	ck_assert_mem_eq(mf.data, fr, n);
	hs_mem_rx_release(e.m, 0, 1);
	ck_assert(TH_WAIT((xf_reap_tx(&f), f.tx_out == 0), 3000));
	ck_assert_int_eq(f.last_tx_status, NETIF_RSP_OKAY);
	n = th_frame(fr, mm, mx, -1, 3000, 2);
	xf_send(&f, fr, (uint32_t)n, 3, 0, 0, 0, 0);
	ck_assert(TH_WAIT(th_pending(e.m) == 1, 3000));
	ck_assert_int_eq(hs_mem_rx_burst(e.m, 0, &mf, 1), 1);
	ck_assert_uint_eq(mf.len, n);
	ck_assert_mem_eq(mf.data, fr, n);
	hs_mem_rx_release(e.m, 0, 1);
	/* m -> guest (learned): 1514 bytes, then 9000 in three pages */
	struct xf_rx ri;
	n = th_frame(fr, mx, mm, -1, 1514, 3);
	ck_assert_int_eq(th_send(e.m, fr, n), 0);
	ck_assert_int_eq(recv_wait(&f, got, sizeof(got), &ri), 1);
	ck_assert_uint_eq(ri.len, n);
	ck_assert_uint_eq(ri.slots, 1);
	ck_assert_mem_eq(got, fr, n);
	n = th_frame(fr, mx, mm, -1, 9000, 4);
	ck_assert_int_eq(th_send(e.m, fr, n), 0);
	ck_assert_int_eq(recv_wait(&f, got, sizeof(got), &ri), 1);
	ck_assert_uint_eq(ri.len, n);
	ck_assert_uint_eq(ri.slots, 3);
	ck_assert_mem_eq(got, fr, n);
	/* a hundred more each way, the rings wrapping */
	for (uint32_t i = 0; i < 300; i++) {
		n = th_frame(fr, mm, mx, -1, 64 + (i * 37) % 4000, 100 + i);
		xf_send(&f, fr, (uint32_t)n, 1 + i % 3, (uint16_t)(i % 2 ? 0 : 32), 0, 0, 0);
		ck_assert(TH_WAIT(th_pending(e.m) == 1, 3000));
		ck_assert_int_eq(hs_mem_rx_burst(e.m, 0, &mf, 1), 1);
		ck_assert_mem_eq(mf.data, fr, n);
		hs_mem_rx_release(e.m, 0, 1);
		xf_reap_tx(&f);
		n = th_frame(fr, mx, mm, -1, 64 + (i * 53) % 6000, 1000 + i);
		ck_assert_int_eq(th_send(e.m, fr, n), 0);
		ck_assert_int_eq(recv_wait(&f, got, sizeof(got), &ri), 1);
		ck_assert_uint_eq(ri.len, n);
		ck_assert_mem_eq(got, fr, n);
	}
	ck_assert(TH_WAIT((xf_reap_tx(&f), f.tx_out == 0), 3000));
	ck_assert_uint_eq(th_pstats(x).rx_packets, 302);
	xf_destroy(&f);
	xenv_down(&e);
}
END_TEST

START_TEST(guest_to_guest_in_one_grant_copy)
{
	struct xenv e;
	xenv_up(&e);
	struct xfront a, b;
	guest_up(&e, &a, "xa", 1);
	guest_up(&e, &b, "xb", 2);
	static uint8_t fr[4000], got[70000];
	uint8_t ma[6], mb[6];
	th_mac(ma, 1);
	th_mac(mb, 2);
	struct xf_rx ri;
	/* b announces itself (a gets the flood) */
	size_t n = th_frame(fr, th_bcast, mb, -1, 64, 0);
	xf_send(&b, fr, (uint32_t)n, 1, 0, 0, 0, 0);
	ck_assert_int_eq(recv_wait(&a, got, sizeof(got), &ri), 1);
	th_drain(e.m);
	struct hs__xemu_stats s0, s1;
	hs__xemu_stats(e.emu, &s0);
	n = th_frame(fr, mb, ma, -1, 1514, 1);
	xf_send(&a, fr, (uint32_t)n, 1, 0, 0, 0, 0);
	ck_assert_int_eq(recv_wait(&b, got, sizeof(got), &ri), 1);
	ck_assert_uint_eq(ri.len, n);
	ck_assert_mem_eq(got, fr, n);
	hs__xemu_stats(e.emu, &s1);
	/* the first 128 bytes came local to be switched; the other 1386 went
	 * from a's grant into b's in one segment: nothing in between */
	ck_assert_uint_eq(s1.copy_g2g - s0.copy_g2g, 1);
	ck_assert_uint_eq(s1.copy_bytes - s0.copy_bytes, 128 + n);
	xf_destroy(&a);
	xf_destroy(&b);
	xenv_down(&e);
}
END_TEST

/* Refused packets and revoked grants are answered with errors and
 * counted; a broken ring stops only its vif. */
START_TEST(hostile_front_ends_stop_only_themselves)
{
	struct xenv e;
	xenv_up(&e);
	struct xfront a, b;
	hs_port_t *xa = guest_up(&e, &a, "xa", 1);
	hs_port_t *xb = guest_up(&e, &b, "xb", 2);
	static uint8_t fr[4000], got[70000];
	uint8_t ma[6], mm[6];
	th_mac(ma, 1);
	th_mac(mm, 9);
	/* a runt: refused, answered, counted */
	size_t n = th_frame(fr, th_bcast, ma, -1, 64, 1);
	xf_send(&a, fr, 12, 1, 0, 0, 0, 0);
	ck_assert(TH_WAIT((xf_reap_tx(&a), a.tx_out == 0), 3000));
	ck_assert_int_eq(a.last_tx_status, NETIF_RSP_ERROR);
	ck_assert_uint_eq(th_pstats(xa).drops[HS_DROP_BAD_DESC], 1);
	/* a page whose grant the guest revoked: the copy fails, counted */
	unsigned pg = a.tx_next % XF_TXP;
	ck_assert_int_eq(hs__xemu_ungrant(a.dom, a.txp_ref[pg]), 0);
	xf_send(&a, fr, (uint32_t)n, 1, 0, 0, 0, 0);
	ck_assert(TH_WAIT((xf_reap_tx(&a), a.tx_out == 0), 3000));
	ck_assert_int_eq(a.last_tx_status, NETIF_RSP_ERROR);
	ck_assert_uint_eq(th_pstats(xa).drops[HS_DROP_COPY_ERROR], 1);
	a.txp_ref[pg] = (uint32_t)hs__xemu_grant(a.dom, 2 + pg, 0, true);
	/* still fine */
	xf_send(&a, fr, (uint32_t)n, 1, 0, 0, 0, 0);
	ck_assert(TH_WAIT(th_pending(e.m) == 1, 3000));
	th_drain(e.m);
	ck_assert(TH_WAIT(recv_wait(&b, got, sizeof(got), &(struct xf_rx){0}) == 1, 3000));
	/* 20 slots: a broken ring; a's vif goes down, b goes on */
	n = th_frame(fr, th_bcast, ma, -1, 20 * 100, 2);
	xf_send(&a, fr, (uint32_t)n, 20, 0, 0, 0, 0);
	ck_assert(TH_WAIT(!hs_port_link_up(xa), 3000));
	ck_assert_uint_eq(ctr(xa, "protocol_errors"), 1);
	ck_assert(hs_port_link_up(xb));
	uint8_t mbb[6];
	th_mac(mbb, 2);
	n = th_frame(fr, th_bcast, mbb, -1, 64, 3);
	xf_send(&b, fr, (uint32_t)n, 1, 0, 0, 0, 0);
	ck_assert(TH_WAIT(th_pending(e.m) == 1, 3000));
	xf_destroy(&a);
	xf_destroy(&b);
	xenv_down(&e);
}
END_TEST

/* The front-end closes (link down, back-end Closing then Closed), comes
 * back (Initialising: the back-end waits again) and connects anew. */
START_TEST(a_front_end_closes_and_comes_back)
{
	struct xenv e;
	xenv_up(&e);
	struct xfront f;
	hs_port_t *x = guest_up(&e, &f, "x1", 1);
	static uint8_t fr[2000], got[70000];
	uint8_t mx[6], mm[6];
	th_mac(mx, 1);
	th_mac(mm, 2);
	for (int round = 0; round < 3; round++) {
		xf_putu(&f, "state", 5);
		ck_assert(xf_wait_be(&f, 5, 3000));
		ck_assert(!hs_port_link_up(x));
		xf_putu(&f, "state", 6);
		ck_assert(xf_wait_be(&f, 6, 3000));
		xf_putu(&f, "state", 1);
		xf_connect(&f);
		ck_assert(TH_WAIT(hs_port_link_up(x), 3000));
		size_t n = th_frame(fr, th_bcast, mx, -1, 100, (uint32_t)round);
		xf_send(&f, fr, (uint32_t)n, 1, 0, 0, 0, 0);
		ck_assert(TH_WAIT(th_pending(e.m) == 1, 3000));
		th_drain(e.m);
		n = th_frame(fr, mx, mm, -1, 200, (uint32_t)round);
		ck_assert_int_eq(th_send(e.m, fr, n), 0);
		struct xf_rx ri;
		ck_assert_int_eq(recv_wait(&f, got, sizeof(got), &ri), 1);
		ck_assert_mem_eq(got, fr, n);
	}
	ck_assert_uint_eq(ctr(x, "connects"), 4);
	ck_assert_uint_eq(ctr(x, "disconnects"), 3);
	/* the port goes: the back-end says Closed */
	ck_assert_int_eq(hs_port_del(x), 0);
	ck_assert_int_eq(xf_be_state(&f), 6);
	xf_destroy(&f);
	xenv_down(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("xen");
	TCase *tc = tcase_create("xen");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, frames_both_ways_in_one_and_many_slots);
	tcase_add_test(tc, guest_to_guest_in_one_grant_copy);
	tcase_add_test(tc, hostile_front_ends_stop_only_themselves);
	tcase_add_test(tc, a_front_end_closes_and_comes_back);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
