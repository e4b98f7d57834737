/*
 * fuzz_xen_tx.c - the Xen backend's transmit-ring parser on a hostile
 * front-end's ring page.
 *
 * Input: bytes 0-3 the consumer index, 4-5 how many requests the
 * front-end claims to have produced (may exceed the ring), then the
 * shared ring's request slots (the rest of the page is zero).
 *
 * Beyond the sanitizers, the oracle checks what the backend relies on:
 * an accepted packet has at most XEN_NETIF_NR_SLOTS_MIN data slots, each
 * within its page, adding up to the packet's length, at least an
 * Ethernet header; a GSO packet has a size and a known type; every
 * verdict but NONE and FATAL consumes its slots and no more than were
 * produced, so a loop over the ring always ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/xen_netif.h"

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_xen_tx: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	static _Alignas(4096) uint8_t page[4096];
	memset(page, 0, sizeof(page));
	netif_tx_sring_t *s = (netif_tx_sring_t *)page;
	netif_tx_back_ring_t b;
	SHARED_RING_INIT(s);
	BACK_RING_INIT(&b, s, sizeof(page));
	unsigned rsize = RING_SIZE(&b);
	RING_IDX cons;
	uint16_t n;
	memcpy(&cons, data, 4);
	memcpy(&n, data + 4, 2);
	size_t ring_bytes = sizeof(page) - (size_t)((uint8_t *)&s->ring[0] - page);
	size_t k = size - 6 < ring_bytes ? size - 6 : ring_bytes;
	memcpy(&s->ring[0], data + 6, k);
	RING_IDX prod = cons + n;
	s->req_prod = prod;

	for (unsigned rounds = 0; rounds <= rsize; rounds++) {
		struct hs__xtx_pkt p;
		unsigned taken = 0;
		const char *why = NULL;
		enum hs__xtx_verdict v = hs__xtx_parse(s, rsize, cons, prod, &p, &taken, &why);
		if (v == HS__XTX_NONE) {
			check(cons == prod, "NONE with requests left");
			return 0;
		}
		if (v == HS__XTX_FATAL) {
			check(why != NULL, "fatal without a reason");
			return 0;
		}
		check(taken >= 1 && taken <= prod - cons, "consumed nothing, or more than produced");
		check(taken == (unsigned)p.n_slots + p.n_extra, "slots and extras do not add up");
		check(p.n_slots < HS__XTX_SLOTS_FATAL, "a fatal slot count passed");
		if (v == HS__XTX_OK) {
			check(p.n_slots <= HS__XTX_SLOTS_MAX, "too many data slots accepted");
			uint32_t sum = 0;
			for (unsigned i = 0; i < p.n_slots; i++) {
				check((uint32_t)p.slot[i].offset + p.slot[i].len <= HS__XEN_PAGE,
				      "a slot crosses its page");
				sum += p.slot[i].len;
			}
			check(sum == p.len, "slots do not add up to the packet");
			check(p.len >= 14, "a runt accepted");
			check(!p.gso_size == !p.gso_type, "GSO size without type or the reverse");
			check(!p.gso_type || p.gso_type == XEN_NETIF_GSO_TYPE_TCPV4 ||
				      p.gso_type == XEN_NETIF_GSO_TYPE_TCPV6,
			      "unknown GSO type accepted");
		} else {
			check(why != NULL, "refused without a reason");
		}
		cons += taken;
	}
	check(false, "the loop over the ring did not end");
	return 0;
}
