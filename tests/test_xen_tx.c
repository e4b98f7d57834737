/*
 * test_xen_tx.c - the Xen backend's transmit-ring parser against packets
 * a front-end writes with the protocol's own ring macros: one slot, many
 * slots, extra info (GSO, multicast), and every refusal and every fatal
 * case of the rules in src/backends/xen_netif.h (which are Linux
 * netback's), across the ring's wrap and the index's.
 */
#include "helpers.h"
#include "backends/xen_netif.h"

struct txring {
	netif_tx_sring_t *s;
	netif_tx_front_ring_t f;
	unsigned size;
};

static void ring_new(struct txring *r, RING_IDX start)
{
	r->s = aligned_alloc(4096, 4096);
	ck_assert_ptr_nonnull(r->s);
	SHARED_RING_INIT(r->s);
	FRONT_RING_INIT(&r->f, r->s, 4096);
	r->size = RING_SIZE(&r->f);
	/* start the indices anywhere, e.g. just before they wrap */
	r->s->req_prod = r->s->rsp_prod = start;
	r->f.req_prod_pvt = r->f.rsp_cons = start;
}

static void ring_free(struct txring *r)
{
	free(r->s);
}

static void put(struct txring *r, uint32_t gref, uint16_t off, uint16_t flags, uint16_t id,
		uint16_t size)
{
	netif_tx_request_t *q = RING_GET_REQUEST(&r->f, r->f.req_prod_pvt++);
	*q = (netif_tx_request_t){.gref = gref, .offset = off, .flags = flags, .id = id,
				  .size = size};
}

static void put_extra(struct txring *r, uint8_t type, uint8_t flags, uint16_t gso_size,
		      uint8_t gso_type)
{
	netif_extra_info_t *e =
		(netif_extra_info_t *)RING_GET_REQUEST(&r->f, r->f.req_prod_pvt++);
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->flags = flags;
	if (type == XEN_NETIF_EXTRA_TYPE_GSO) {
		e->u.gso.size = gso_size;
		e->u.gso.type = gso_type;
	}
}

static void push(struct txring *r)
{
	int notify;
	RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&r->f, notify);
	(void)notify;
}

static enum hs__xtx_verdict parse(struct txring *r, RING_IDX cons, struct hs__xtx_pkt *p,
				  unsigned *taken, const char **why)
{
	return hs__xtx_parse(r->s, r->size, cons, r->s->req_prod, p, taken, why);
}

START_TEST(packets_in_one_and_many_slots)
{
	struct txring r;
	ring_new(&r, _i ? 0xfffffff0u : 0); /* and across the index's wrap */
	/* enough packets to go round the ring's 256 slots twice */
	RING_IDX cons = r.s->req_prod;
	for (unsigned round = 0; round < 60; round++) {
		/* one slot */
		put(&r, 10, 100, NETTXF_csum_blank, 1, 60);
		/* 3 slots: 1514 bytes = 514 + 500 + 500 */
		put(&r, 11, 0, NETTXF_more_data, 2, 1514);
		put(&r, 12, 3596, NETTXF_more_data, 3, 500);
		put(&r, 13, 0, 0, 4, 500);
		/* GSO, with a multicast extra chained behind it */
		put(&r, 14, 0, NETTXF_extra_info | NETTXF_more_data | NETTXF_data_validated, 5,
		    3000);
		put_extra(&r, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE, 1448,
			  XEN_NETIF_GSO_TYPE_TCPV4);
		put_extra(&r, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0, 0, 0);
		put(&r, 15, 0, 0, 6, 2000);
		push(&r);
		struct hs__xtx_pkt p;
		unsigned taken;
		const char *why;
		ck_assert_int_eq(parse(&r, cons, &p, &taken, &why), HS__XTX_OK);
		ck_assert_uint_eq(taken, 1);
		ck_assert_uint_eq(p.len, 60);
		ck_assert_uint_eq(p.n_slots, 1);
		ck_assert_uint_eq(p.slot[0].gref, 10);
		ck_assert_uint_eq(p.slot[0].offset, 100);
		ck_assert_uint_eq(p.flags, NETTXF_csum_blank);
		ck_assert_uint_eq(p.gso_size, 0);
		cons += taken;
		ck_assert_int_eq(parse(&r, cons, &p, &taken, &why), HS__XTX_OK);
		ck_assert_uint_eq(taken, 3);
		ck_assert_uint_eq(p.len, 1514);
		ck_assert_uint_eq(p.n_slots, 3);
		ck_assert_uint_eq(p.slot[0].len, 514);
		ck_assert_uint_eq(p.slot[1].len, 500);
		ck_assert_uint_eq(p.slot[1].offset, 3596);
		ck_assert_uint_eq(p.slot[2].gref, 13);
		ck_assert_uint_eq(p.ids[0], 2);
		ck_assert_uint_eq(p.ids[2], 4);
		cons += taken;
		ck_assert_int_eq(parse(&r, cons, &p, &taken, &why), HS__XTX_OK);
		ck_assert_uint_eq(taken, 4);
		ck_assert_uint_eq(p.n_extra, 2);
		ck_assert_uint_eq(p.n_slots, 2);
		ck_assert_uint_eq(p.slot[0].len, 1000);
		ck_assert_uint_eq(p.slot[1].len, 2000);
		ck_assert_uint_eq(p.gso_size, 1448);
		ck_assert_uint_eq(p.gso_type, XEN_NETIF_GSO_TYPE_TCPV4);
		ck_assert_uint_eq(p.flags, NETTXF_data_validated);
		cons += taken;
		ck_assert_int_eq(parse(&r, cons, &p, &taken, &why), HS__XTX_NONE);
		/* the back-end's responses free the slots */
		r.f.rsp_cons = cons;
		r.s->rsp_prod = cons;
		r.f.sring->rsp_event = cons + 1;
	}
	ring_free(&r);
}
END_TEST

struct bad {
	const char *name;
	enum hs__xtx_verdict want;
	unsigned taken; /* REFUSED: requests consumed */
};

/* Writes bad packet number k on r (then a good one behind it). */
static void put_bad(struct txring *r, int k)
{
	switch (k) {
	case 0: /* runt */
		put(r, 10, 0, 0, 1, 13);
		break;
	case 1: /* 19 data slots: refused, all taken */
		put(r, 10, 0, NETTXF_more_data, 1, 19 * 60);
		for (int s = 1; s < 19; s++)
			put(r, 10, 0, s < 18 ? NETTXF_more_data : 0, (uint16_t)(s + 1), 60);
		break;
	case 2: /* a fragment larger than what is left */
		put(r, 10, 0, NETTXF_more_data, 1, 100);
		put(r, 11, 0, 0, 2, 200);
		break;
	case 3: /* 22 slots: fatal (as Linux's fatal_skb_slots) */
		put(r, 10, 0, NETTXF_more_data, 1, 22 * 60);
		for (int s = 1; s < 22; s++)
			put(r, 10, 0, s < 21 ? NETTXF_more_data : 0, (uint16_t)(s + 1), 60);
		break;
	case 4: /* a fragment crossing its page */
		put(r, 10, 0, NETTXF_more_data, 1, 200);
		put(r, 11, 4000, 0, 2, 100);
		break;
	case 5: /* the first slot crossing its page */
		put(r, 10, 4000, NETTXF_more_data, 1, 300);
		put(r, 11, 0, 0, 2, 100);
		break;
	case 6: /* more_data on the last request produced */
		put(r, 10, 0, NETTXF_more_data, 1, 300);
		break;
	case 7: /* extra info promised, none produced */
		put(r, 10, 0, NETTXF_extra_info, 1, 300);
		break;
	case 8: /* an unknown extra type */
		put(r, 10, 0, NETTXF_extra_info, 1, 300);
		put_extra(r, XEN_NETIF_EXTRA_TYPE_MAX, 0, 0, 0);
		break;
	case 9: /* one type twice */
		put(r, 10, 0, NETTXF_extra_info, 1, 300);
		put_extra(r, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE, 1448,
			  XEN_NETIF_GSO_TYPE_TCPV4);
		put_extra(r, XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448, XEN_NETIF_GSO_TYPE_TCPV4);
		break;
	case 10: /* GSO size 0 */
		put(r, 10, 0, NETTXF_extra_info, 1, 300);
		put_extra(r, XEN_NETIF_EXTRA_TYPE_GSO, 0, 0, XEN_NETIF_GSO_TYPE_TCPV4);
		break;
	case 11: /* GSO of an unknown type */
		put(r, 10, 0, NETTXF_extra_info, 1, 300);
		put_extra(r, XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448, 7);
		break;
	case 12: /* type NONE */
		put(r, 10, 0, NETTXF_extra_info, 1, 300);
		put_extra(r, XEN_NETIF_EXTRA_TYPE_NONE, 0, 0, 0);
		break;
	case 13: /* 20 slots: refused (Linux drops it; 22 would be fatal) */
		put(r, 10, 0, NETTXF_more_data, 1, 20 * 60);
		for (int s = 1; s < 20; s++)
			put(r, 10, 0, s < 19 ? NETTXF_more_data : 0, (uint16_t)(s + 1), 60);
		break;
	case 14: /* 21 slots: refused too (Linux drops it), all taken */
		put(r, 10, 0, NETTXF_more_data, 1, 21 * 60);
		for (int s = 1; s < 21; s++)
			put(r, 10, 0, s < 20 ? NETTXF_more_data : 0, (uint16_t)(s + 1), 60);
		break;
	}
}

START_TEST(bad_packets_are_refused_or_fatal)
{
	static const struct bad cases[] = {
		{"runt", HS__XTX_REFUSED, 1},
		{"19 slots", HS__XTX_REFUSED, 19},
		{"fragment too large", HS__XTX_REFUSED, 2},
		{"22 slots", HS__XTX_FATAL, 0},
		{"fragment crosses page", HS__XTX_FATAL, 0},
		{"first crosses page", HS__XTX_FATAL, 0},
		{"continues past prod", HS__XTX_FATAL, 0},
		{"extra missing", HS__XTX_FATAL, 0},
		{"unknown extra", HS__XTX_FATAL, 0},
		{"extra twice", HS__XTX_FATAL, 0},
		{"GSO size 0", HS__XTX_FATAL, 0},
		{"GSO type", HS__XTX_FATAL, 0},
		{"extra type NONE", HS__XTX_FATAL, 0},
		{"20 slots", HS__XTX_REFUSED, 20},
		{"21 slots", HS__XTX_REFUSED, 21},
	};
	for (int k = 0; k < (int)(sizeof(cases) / sizeof(cases[0])); k++) {
		struct txring r;
		ring_new(&r, (RING_IDX)(k * 1000));
		RING_IDX cons = r.s->req_prod;
		put_bad(&r, k);
		bool good_after = cases[k].want == HS__XTX_REFUSED;
		if (good_after)
			put(&r, 20, 0, 0, 99, 64);
		push(&r);
		struct hs__xtx_pkt p;
		unsigned taken;
		const char *why;
		enum hs__xtx_verdict v = parse(&r, cons, &p, &taken, &why);
		ck_assert_msg(v == cases[k].want, "%s: verdict %d, want %d (%s)", cases[k].name, v,
			      cases[k].want, why ? why : "");
		ck_assert_msg(why != NULL, "%s: no reason", cases[k].name);
		if (v == HS__XTX_REFUSED) {
			ck_assert_uint_eq(taken, cases[k].taken);
			ck_assert_uint_eq(p.n_slots + p.n_extra, taken);
			/* the packet behind it is read normally */
			ck_assert_int_eq(parse(&r, cons + taken, &p, &taken, &why), HS__XTX_OK);
			ck_assert_uint_eq(p.ids[0], 99);
		}
		ring_free(&r);
	}
	/* a producer index further ahead than the ring holds */
	struct txring r;
	ring_new(&r, 0);
	put(&r, 10, 0, 0, 1, 64);
	push(&r);
	struct hs__xtx_pkt p;
	unsigned taken;
	const char *why;
	ck_assert_int_eq(hs__xtx_parse(r.s, r.size, 0, r.size + 1, &p, &taken, &why),
			 HS__XTX_FATAL);
	ck_assert_int_eq(hs__xtx_parse(r.s, r.size, 5, 4, &p, &taken, &why), HS__XTX_FATAL);
	ring_free(&r);
}
END_TEST


/* review 48: random rings; the parser's promises hold for every verdict */
static uint64_t rr_seed = 0x9e3779b97f4a7c15ull;
static uint64_t rr_rnd(void)
{
	rr_seed ^= rr_seed << 13;
	rr_seed ^= rr_seed >> 7;
	rr_seed ^= rr_seed << 17;
	return rr_seed;
}

START_TEST(random_rings_keep_the_parsers_promises)
{
	struct txring r;
	unsigned counts[4] = {0};
	for (unsigned iter = 0; iter < 200000; iter++) {
		ring_new(&r, (RING_IDX)rr_rnd());
		/* a mostly well-formed packet, each field wrong now and then */
		unsigned slots = 1 + (unsigned)(rr_rnd() % 24);
		uint32_t total = 0;
		uint16_t sz[24];
		for (unsigned k = 0; k < slots; k++) {
			sz[k] = (uint16_t)(rr_rnd() % 8 ? rr_rnd() % 3000 : rr_rnd());
			total += sz[k];
		}
		bool extra = rr_rnd() % 3 == 0;
		for (unsigned k = 0; k < slots; k++) {
			uint16_t fl = (uint16_t)(rr_rnd() % 16 ? 0 : rr_rnd() & 0xf);
			fl &= (uint16_t)~(NETTXF_more_data | NETTXF_extra_info);
			if (k + 1 < slots ? rr_rnd() % 32 != 0 : rr_rnd() % 32 == 0)
				fl |= NETTXF_more_data;
			if (k == 0 && extra)
				fl |= NETTXF_extra_info;
			uint16_t size = k == 0 ? (uint16_t)(rr_rnd() % 8 ? total : rr_rnd()) : sz[k];
			uint16_t off = (uint16_t)(rr_rnd() % 8 ? rr_rnd() % (4097 - (sz[k] % 4097)) : rr_rnd());
			put(&r, (uint32_t)rr_rnd(), off, fl, (uint16_t)rr_rnd(), size);
			if (k == 0 && extra) {
				unsigned ne = 1 + (unsigned)(rr_rnd() % 4);
				for (unsigned j = 0; j < ne; j++)
					put_extra(&r, (uint8_t)(rr_rnd() % 8 ? 1 + rr_rnd() % 4 : rr_rnd() % 6),
						  (uint8_t)(j + 1 < ne ? XEN_NETIF_EXTRA_FLAG_MORE : 0),
						  (uint16_t)(rr_rnd() % 8 ? 1448 : rr_rnd() % 3),
						  (uint8_t)(rr_rnd() % 8 ? 1 + rr_rnd() % 2 : rr_rnd() % 4));
			}
		}
		push(&r);
		RING_IDX cons = r.f.rsp_cons;
		struct hs__xtx_pkt p;
		unsigned taken;
		const char *why;
		enum hs__xtx_verdict v = parse(&r, cons, &p, &taken, &why);
		counts[v]++;
		if (v == HS__XTX_OK || v == HS__XTX_REFUSED) {
			ck_assert_uint_eq(taken, p.n_slots + p.n_extra);
			ck_assert_uint_le(p.n_slots, HS__XTX_SLOTS_FATAL - 1);
		}
		if (v == HS__XTX_OK) {
			uint32_t sum = 0;
			ck_assert_uint_le(p.n_slots, HS__XTX_SLOTS_MAX);
			for (unsigned i = 0; i < p.n_slots; i++) {
				ck_assert_uint_le((uint32_t)p.slot[i].offset + p.slot[i].len, 4096);
				sum += p.slot[i].len;
			}
			ck_assert_uint_eq(sum, p.len);
			ck_assert_uint_ge(p.len, 14);
		}
		ring_free(&r);
	}
	fprintf(stderr, "random rings: none %u ok %u refused %u fatal %u\n", counts[0],
		counts[1], counts[2], counts[3]);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("xen_tx");
	TCase *tc = tcase_create("xen_tx");
	tcase_add_loop_test(tc, packets_in_one_and_many_slots, 0, 2);
	tcase_add_test(tc, bad_packets_are_refused_or_fatal);
	tcase_add_test(tc, random_rings_keep_the_parsers_promises);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
