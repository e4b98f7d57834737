/*
 * vnet_hdr.h - the virtio-net header (virtio 1.2, 5.1.6) that guests
 * (vhost-user) and the kernel (tap, IFF_VNET_HDR) put in front of every
 * frame, and its translation to and from the switch's offload metadata.
 * One place for both backends: the header means the same from either peer.
 */
#ifndef HS_VNET_HDR_H
#define HS_VNET_HDR_H

#include <stddef.h>
#include <string.h>

#include "backends.h"

/* 12 bytes with VERSION_1 or MRG_RXBUF (and always for taps here); legacy
 * virtio without MRG_RXBUF uses the first 10. */
struct hsb_vnet_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};

#define HSB_VNET_HDR_LEN 12
#define HSB_VNET_F_NEEDS_CSUM 1
#define HSB_VNET_F_DATA_VALID 2
#define HSB_VNET_GSO_ECN 0x80

/* Turns a header the peer sent into offload metadata. `caps` (HS_CAP_*)
 * are the offloads the peer may use when sending (what was negotiated);
 * false for a header that claims anything else, or is malformed. */
static inline bool hsb_vnet_to_offload(const struct hsb_vnet_hdr *h, uint32_t caps,
				       struct hs_offload *o)
{
	*o = (struct hs_offload){0};
	if (h->flags & ~(HSB_VNET_F_NEEDS_CSUM | HSB_VNET_F_DATA_VALID))
		return false;
	if (h->flags & HSB_VNET_F_NEEDS_CSUM) {
		if (!(caps & HS_CAP_CSUM))
			return false;
		o->flags |= HS_OFF_NEEDS_CSUM;
		o->csum_start = h->csum_start;
		o->csum_offset = h->csum_offset;
	}
	if (h->flags & HSB_VNET_F_DATA_VALID)
		o->flags |= HS_OFF_DATA_VALID;
	uint8_t type = h->gso_type & (uint8_t)~HSB_VNET_GSO_ECN;
	bool ecn = h->gso_type & HSB_VNET_GSO_ECN;
	if (type == HS_GSO_NONE)
		return !ecn;
	uint32_t need = type == HS_GSO_TCPV4	? HS_CAP_GSO_TCPV4
			: type == HS_GSO_TCPV6	? HS_CAP_GSO_TCPV6
			: type == HS_GSO_UDP_L4 ? HS_CAP_GSO_UDP_L4
						: 0;
	if (ecn)
		need |= HS_CAP_GSO_ECN;
	if (!(need & ~HS_CAP_GSO_ECN) || (caps & need) != need || !h->gso_size)
		return false;
	o->gso_type = type;
	o->gso_size = h->gso_size;
	o->hdr_len = h->hdr_len;
	if (ecn)
		o->flags |= HS_OFF_GSO_ECN;
	return true;
}

/* The header for a frame the switch hands to the peer. */
static inline struct hsb_vnet_hdr hsb_vnet_from_offload(const struct hs_offload *o,
							 uint16_t num_buffers)
{
	return (struct hsb_vnet_hdr){
		.flags = (uint8_t)(((o->flags & HS_OFF_NEEDS_CSUM) ? HSB_VNET_F_NEEDS_CSUM : 0) |
				   ((o->flags & HS_OFF_DATA_VALID) ? HSB_VNET_F_DATA_VALID : 0)),
		.gso_type = (uint8_t)(o->gso_type |
				      ((o->flags & HS_OFF_GSO_ECN) ? HSB_VNET_GSO_ECN : 0)),
		.hdr_len = o->hdr_len,
		.gso_size = o->gso_size,
		.csum_start = o->csum_start,
		.csum_offset = o->csum_offset,
		.num_buffers = num_buffers,
	};
}

/* Writes a header (len: 10 or 12 bytes, the second with num_buffers) to
 * dst, which need not be aligned, a field at a time. Copying the struct
 * instead reads it back in wider loads than the narrow stores that built
 * it, which cannot be forwarded: a stall of a dozen cycles per frame. */
_Static_assert(sizeof(struct hsb_vnet_hdr) == HSB_VNET_HDR_LEN &&
	       offsetof(struct hsb_vnet_hdr, num_buffers) == 10,
	       "hsb_vnet_store writes the header's fields one by one: add new ones there");

static inline void hsb_vnet_store(uint8_t *dst, const struct hsb_vnet_hdr *h, uint32_t len)
{
	dst[0] = h->flags;
	dst[1] = h->gso_type;
	memcpy(dst + 2, &h->hdr_len, 2);
	memcpy(dst + 4, &h->gso_size, 2);
	memcpy(dst + 6, &h->csum_start, 2);
	memcpy(dst + 8, &h->csum_offset, 2);
	if (len >= HSB_VNET_HDR_LEN)
		memcpy(dst + 10, &h->num_buffers, 2);
}

#endif /* HS_VNET_HDR_H */
