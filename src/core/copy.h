/*
 * copy.h - private interface of the copy engine (copy.c) and the delivery
 * scratch it shares with deliver.c.
 */
#ifndef HS_CORE_COPY_H
#define HS_CORE_COPY_H

#include "beops.h"
#include "internal.h"

#define HS__HDR_MAX 192      /* largest L2..L4 header we segment behind */
#define HS__GSO_PIECES_MAX 1024
#define HS__OPS_MAX 1024     /* foreign copy ops per batch */

/* ---- Internet checksum ---------------------------------------------------- */

/* 32-bit partial ones'-complement sum of buf, added to sum. Byte order of
 * memory (little endian here): fold and store as-is. */
uint32_t hs__csum_partial(const void *buf, size_t len, uint32_t sum);

static inline uint32_t hs__csum_add(uint32_t a, uint32_t b)
{
	a += b;
	return a + (a < b);
}

/* Adds the partial sum of a block that started at byte offset `off` of
 * the checksummed region (odd offsets swap the bytes' roles). */
static inline uint32_t hs__csum_block_add(uint32_t sum, uint32_t part,
					  uint32_t off)
{
	if (off & 1)
		part = (part >> 8) | (part << 24);
	return hs__csum_add(sum, part);
}

/* Folds to 16 bits and complements: the value to store in a header. */
static inline uint16_t hs__csum_fold(uint32_t sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Copies n bytes (n <= 128) with a few overlapping fixed-size moves and
 * no call: the common small frame. */
static inline void hs__copy_small(uint8_t *d, const uint8_t *s, uint32_t n)
{
	if (n >= 64) {
		memcpy(d, s, 64);
		memcpy(d + n - 64, s + n - 64, 64);
	} else if (n >= 32) {
		memcpy(d, s, 32);
		memcpy(d + n - 32, s + n - 32, 32);
	} else if (n >= 16) {
		memcpy(d, s, 16);
		memcpy(d + n - 16, s + n - 16, 16);
	} else {
		memcpy(d, s, n);
	}
}

static inline void hs__copy_bytes(uint8_t *d, const uint8_t *s, uint32_t n)
{
	if (HS__LIKELY(n <= 128))
		hs__copy_small(d, s, n);
	else
		memcpy(d, s, n);
}

/* ---- frame views ------------------------------------------------------------ */

/* One range of an outgoing frame: `len` bytes from `off` of either a
 * local segment (`lseg`: switch memory such as a patched header or a VLAN
 * tag) or the sender's frame `pkt`. */
struct hs__range {
	const struct hs_seg *lseg;
	const struct hs_pkt *pkt;
	uint32_t off, len;
};

struct hs__view {
	struct hs__range r[3];
	unsigned n;
	uint32_t len;
};

/* How the frame leaves for the current destination. */
enum hs__mode {
	HS__PASS = 0, /* as is (offloads, if any, accepted by the receiver) */
	HS__CSUM,     /* complete the checksum in software while copying */
	HS__SEGMENT,  /* cut a GSO frame into pieces in software */
};

/* One frame to deliver to the current destination. */
struct hs__src {
	const struct hs_pkt *pkt;
	uint32_t len;            /* after the VLAN change */
	int16_t delta;           /* +4 tag pushed, -4 popped, 0 */
	uint8_t strip, ins;      /* VLAN change at byte 12 */
	uint8_t mode;            /* enum hs__mode */
	uint8_t local;           /* pkt has no foreign segment */
	uint8_t tag[4];          /* tag to insert (network order) */
	struct hs_seg tag_seg;
	struct hs_offload off;   /* metadata after the VLAN change */
	struct hs__l4 l4;        /* SEGMENT/CSUM: layout after the change */
	uint16_t pieces;         /* SEGMENT: number of pieces, else 1 */
	uint16_t first;          /* first piece still to deliver */
	uint16_t vid;            /* its VLAN, | HS__BL_TAGGED if it leaves tagged */
	uint8_t *hdr;            /* SEGMENT: header template (post-VLAN) */
};

/* Delivery scratch of one thread (hs__ctx.dl). */
struct hs__dl {
	/* per frame of the round: L3/L4 layout found by classification */
	struct hs__l4 l4in[HS__BURST_MAX];

	/* frames of the round for the current destination */
	struct hs__src src[HS__BURST_MAX];
	uint8_t tmpl[HS__BURST_MAX][HS__HDR_MAX];
	/* frames of the backlog being drained */
	struct hs__src blsrc[HS__BURST_MAX];
	uint8_t bltmpl[HS__BURST_MAX][HS__HDR_MAX];

	struct hs_out out[HS__OUT_MAX];
	struct hs_iobuf bufs[HS__OUT_MAX];
	uint16_t out_src[HS__OUT_MAX];
	uint16_t out_piece[HS__OUT_MAX];
	uint8_t piece_hdr[HS__OUT_MAX][HS__HDR_MAX];
	struct hs_seg piece_seg[HS__OUT_MAX];
	uint8_t csum_val[HS__OUT_MAX][2];
	struct hs_seg csum_seg[HS__OUT_MAX];
	/* send_plain: the tag of a tagged frame copied through views, kept
	 * until the batch's flush (a copy hook's op points at it) */
	uint8_t tag_val[HS__BURST_MAX][4];
	struct hs_seg tag_seg[HS__BURST_MAX];

	/* copies the switch cannot do itself, batched per copy hook */
	struct hs_copy_op ops_src[HS__OPS_MAX], ops_dst[HS__OPS_MAX];
	unsigned n_ops_src, n_ops_dst;
	struct hs_port *src_port, *dst_port;
	int ops_err;

	/* linear copy of a frame: foreign frames needing software work */
	uint8_t *bounce;         /* 2 x (HS__GSO_MAX_LEN + HS__HDR_MAX): a
				    frame in, a finished frame out */
	struct hs_seg bounce_seg;
	struct hs_pkt bounce_pkt;

	/* backlog frames being drained, as packets */
	struct hs_pkt blpkt[HS__BURST_MAX];
};

/* Copies view v into the buffers b. If csum_start != UINT32_MAX, also
 * sums the bytes from that view offset on and stores the partial sum in
 * *csum. Foreign memory on either side becomes copy ops in dl (flushed by
 * hs__copy_flush). Returns 0, or -EMSGSIZE if b is too small. */
int hs__copy_view(struct hs__dl *dl, const struct hs__view *v,
		  const struct hs_iobuf *b, uint32_t csum_start, uint32_t *csum);

/* Writes n local bytes at offset `at` of b (e.g. a checksum). The bytes
 * must stay valid until hs__copy_flush when b is foreign. */
int hs__copy_put(struct hs__dl *dl, const struct hs_iobuf *b, uint32_t at,
		 const uint8_t *bytes, const struct hs_seg *bseg, uint32_t n);

/* Runs the batched foreign copies through the ports' copy hooks. Returns 0
 * or the first hook error. */
int hs__copy_flush(struct hs__dl *dl);

/* Builds the view of frame s (PASS/CSUM modes, or piece `piece` of a
 * SEGMENT frame whose patched header is at hdr). */
void hs__view_frame(const struct hs__src *s, struct hs__view *v);
void hs__view_piece(const struct hs__src *s, unsigned piece, const uint8_t *hdr,
		    const struct hs_seg *hseg, struct hs__view *v);

/* Validates the offload metadata of a received frame and parses its
 * L3/L4 layout when checksum or segmentation work may be needed. `hdr`
 * holds the frame's first min(len, HS__HDR_MAX) bytes. Returns 0 or
 * -EINVAL (drop: bad_offload). */
int hs__offload_check(const struct hs_pkt *p, const uint8_t *hdr, uint32_t hlen,
		      struct hs__l4 *l4);
/* The largest frame a GSO frame of `len` bytes stands for (its layout l,
 * as hs__offload_check found it): what must fit the sender's MTU. */
uint32_t hs__largest_piece(uint32_t len, const struct hs_offload *o, const struct hs__l4 *l);

/* Length of piece `i` of a SEGMENT frame, and its patched header (written
 * to out, from the template). The L4 checksum field gets the
 * pseudo-header seed: the receiver (or our software sum) completes it. */
uint32_t hs__piece_len(const struct hs__src *s, unsigned i);
void hs__piece_header(const struct hs__src *s, unsigned i, uint8_t *out);

/* Gathers bytes [off, off+n) of a packet's addressable segments into dst;
 * returns the number gathered (less if segments are short or foreign). */
uint32_t hs__pkt_gather(const struct hs_pkt *p, uint32_t off, uint8_t *dst,
			uint32_t n);

#endif /* HS_CORE_COPY_H */
