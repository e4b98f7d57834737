/*
 * xen_tx.c - the transmit-ring parser of the Xen backend (rules in
 * xen_netif.h). Pure: it reads the shared ring and fills a packet
 * description; answering the requests and fetching the bytes are the
 * backend's.
 */
#include <string.h>

#include "xen_netif.h"

/* Request i of the ring, read once into local memory. */
static netif_tx_request_t req_at(const netif_tx_sring_t *s, unsigned size, RING_IDX i)
{
	netif_tx_request_t r;
	const volatile netif_tx_request_t *src =
		(const volatile netif_tx_request_t *)&s->ring[i & (size - 1)].req;
	r.gref = src->gref;
	r.offset = src->offset;
	r.flags = src->flags;
	r.id = src->id;
	r.size = src->size;
	return r;
}

static netif_extra_info_t extra_at(const netif_tx_sring_t *s, unsigned size, RING_IDX i)
{
	netif_extra_info_t e;
	const volatile uint8_t *src = (const volatile uint8_t *)&s->ring[i & (size - 1)].req;
	uint8_t raw[sizeof(e)];
	for (unsigned k = 0; k < sizeof(e); k++)
		raw[k] = src[k];
	memcpy(&e, raw, sizeof(e));
	return e;
}

enum hs__xtx_verdict hs__xtx_parse(const netif_tx_sring_t *s, unsigned size, RING_IDX cons,
				   RING_IDX prod, struct hs__xtx_pkt *pkt, unsigned *taken,
				   const char **why)
{
	*why = NULL;
	*taken = 0;
	RING_IDX avail = prod - cons;
	if (avail > size) {
		*why = "producer index ahead of what the ring holds";
		return HS__XTX_FATAL;
	}
	if (!avail)
		return HS__XTX_NONE;
	memset(pkt, 0, offsetof(struct hs__xtx_pkt, ids));
	netif_tx_request_t first = req_at(s, size, cons);
	RING_IDX i = cons + 1;
	pkt->len = first.size;
	pkt->flags = first.flags & (NETTXF_csum_blank | NETTXF_data_validated);
	pkt->ids[0] = first.id;
	pkt->n_slots = 1;

	/* extras, right after the first request */
	bool seen[XEN_NETIF_EXTRA_TYPE_MAX] = {false};
	if (first.flags & NETTXF_extra_info) {
		uint8_t more;
		do {
			if (i == prod) {
				*why = "extra info missing";
				return HS__XTX_FATAL;
			}
			netif_extra_info_t e = extra_at(s, size, i++);
			pkt->n_extra++;
			if (e.type == XEN_NETIF_EXTRA_TYPE_NONE || e.type >= XEN_NETIF_EXTRA_TYPE_MAX) {
				*why = "extra info of an unknown type";
				return HS__XTX_FATAL;
			}
			if (seen[e.type]) {
				*why = "extra info of one type twice";
				return HS__XTX_FATAL;
			}
			seen[e.type] = true;
			if (e.type == XEN_NETIF_EXTRA_TYPE_GSO) {
				if (!e.u.gso.size) {
					*why = "GSO extra with size 0";
					return HS__XTX_FATAL;
				}
				if (e.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV4 &&
				    e.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV6) {
					*why = "GSO extra of an unknown type";
					return HS__XTX_FATAL;
				}
				pkt->gso_size = e.u.gso.size;
				pkt->gso_type = e.u.gso.type;
			}
			/* multicast and hash extras: taken, not used */
			more = e.flags & XEN_NETIF_EXTRA_FLAG_MORE;
		} while (more);
	}

	/* the other fragments; the first keeps what they leave */
	const char *refuse = NULL;
	uint32_t left = first.size;
	uint16_t flags = first.flags;
	while (flags & NETTXF_more_data) {
		if (i == prod) {
			*why = "packet continues past the producer index";
			return HS__XTX_FATAL;
		}
		if (pkt->n_slots + 1 >= HS__XTX_SLOTS_FATAL) { /* this would be the 22nd */
			*why = "packet in too many slots";
			return HS__XTX_FATAL;
		}
		netif_tx_request_t r = req_at(s, size, i++);
		flags = r.flags;
		pkt->ids[pkt->n_slots] = r.id;
		if (pkt->n_slots >= HS__XTX_SLOTS_MAX && !refuse)
			refuse = "packet in more slots than a packet may have";
		if ((uint32_t)r.offset + r.size > HS__XEN_PAGE) {
			*why = "fragment crosses its page";
			return HS__XTX_FATAL;
		}
		if (!refuse && r.size > left)
			refuse = "fragment larger than the packet's size leaves";
		if (!refuse) {
			left -= r.size;
			pkt->slot[pkt->n_slots] = (struct hs__xtx_slot){
				.gref = r.gref, .offset = r.offset, .len = r.size, .id = r.id};
		}
		pkt->n_slots++;
	}
	*taken = i - cons;
	if (!refuse && (uint32_t)first.offset + left > HS__XEN_PAGE) {
		*why = "first slot crosses its page";
		return HS__XTX_FATAL;
	}
	if (!refuse && first.size < 14)
		refuse = "packet shorter than an Ethernet header";
	if (refuse) {
		*why = refuse;
		return HS__XTX_REFUSED;
	}
	pkt->slot[0] = (struct hs__xtx_slot){
		.gref = first.gref, .offset = first.offset, .len = (uint16_t)left, .id = first.id};
	return HS__XTX_OK;
}
