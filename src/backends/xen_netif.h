/*
 * xen_netif.h - Xen's netif protocol (xen/io/netif.h, xen/io/ring.h from
 * Debian's libxen-dev) for the backend, and the parser of what a
 * front-end puts on its transmit ring.
 *
 * The headers want the including program to say which interface version
 * it speaks and to supply the memory barriers of the ring macros (they
 * fail to link otherwise: XEN.md); both are here, once.
 *
 * The transmit ring is hostile input. The parser reads each request out
 * of the shared page once (a local copy the front-end cannot change
 * under it) and follows the rules Linux's netback enforces, which real
 * front-ends obey:
 *  - a packet is a first request whose size is the whole packet's, then
 *    extra-info slots if it says so (each at most once, of a known type,
 *    chained by XEN_NETIF_EXTRA_FLAG_MORE), then one request per further
 *    fragment while NETTXF_more_data is set; the first fragment's own
 *    length is what the others leave of the total;
 *  - refused (the packet is dropped, its requests answered with an error,
 *    and counted): a packet under 14 bytes, more than
 *    XEN_NETIF_NR_SLOTS_MIN data slots, a fragment larger than what the
 *    total leaves;
 *  - fatal (the front-end is broken: its vif stops, as Linux disables
 *    the interface): 22 or more slots (Linux's fatal_skb_slots: 20
 *    followers read, another announced; 19 to 21 slots are dropped), a fragment or the first slot
 *    crossing its page, a packet or its extras running past what the
 *    front-end produced, an unknown or repeated extra type, a GSO extra
 *    with size 0 or an unknown GSO type, a producer index further ahead
 *    than the ring holds.
 */
#ifndef HS_BACKENDS_XEN_NETIF_H
#define HS_BACKENDS_XEN_NETIF_H

#include <stdatomic.h>
#include <stdint.h>

#define __XEN_INTERFACE_VERSION__ 0x00040e00
#define xen_mb() atomic_thread_fence(memory_order_seq_cst)
#define xen_rmb() atomic_thread_fence(memory_order_acquire)
#define xen_wmb() atomic_thread_fence(memory_order_release)

#include <xen/grant_table.h>
#include <xen/io/netif.h>
#include <xen/io/ring.h>

#include "xen_svc.h"

/* Data slots a packet may have (more is refused), and the count from
 * which a front-end is treated as broken: Linux drops a packet with more
 * than 18 slots and disables the interface when 20 or more follow the
 * first (fatal_skb_slots), i.e. from 21 in all. */
#define HS__XTX_SLOTS_MAX XEN_NETIF_NR_SLOTS_MIN
#define HS__XTX_SLOTS_FATAL 22

struct hs__xtx_slot {
	uint32_t gref;
	uint16_t offset;
	uint16_t len;   /* this slot's own bytes */
	uint16_t id;
};

/* One packet taken off the transmit ring. */
struct hs__xtx_pkt {
	uint32_t len;          /* the whole frame */
	uint16_t flags;        /* the first request's NETTXF_csum_blank and
				  NETTXF_data_validated */
	uint16_t gso_size;     /* 0: no GSO extra */
	uint8_t gso_type;      /* XEN_NETIF_GSO_TYPE_* */
	uint8_t n_extra;       /* extra-info slots taken (answered NULL) */
	uint16_t n_slots;      /* data slots taken (all of them, also when
				  refused: each is answered) */
	uint16_t ids[HS__XTX_SLOTS_FATAL - 1]; /* the data slots' ids, in order */
	struct hs__xtx_slot slot[HS__XTX_SLOTS_MAX];
};
/* Its requests are answered in ring order: the first data slot, its
 * extras (NETIF_RSP_NULL), then the other data slots. */

enum hs__xtx_verdict {
	HS__XTX_NONE = 0,   /* nothing produced */
	HS__XTX_OK,         /* a packet, *taken requests consumed */
	HS__XTX_REFUSED,    /* a packet to drop (why says why); its
			       requests are consumed and must be answered
			       NETIF_RSP_ERROR */
	HS__XTX_FATAL,      /* the front-end broke the protocol (why) */
};

/* Parses the packet starting at request index `cons` of the shared ring
 * (`ring_size` slots), the front-end having produced up to `prod`. On
 * OK and REFUSED, *taken is the number of requests it spans. */
enum hs__xtx_verdict hs__xtx_parse(const netif_tx_sring_t *sring, unsigned ring_size,
				   RING_IDX cons, RING_IDX prod, struct hs__xtx_pkt *pkt,
				   unsigned *taken, const char **why);

#endif /* HS_BACKENDS_XEN_NETIF_H */
