/*
 * copy.c - the copy engine: the one copy from the sender's segments
 * straight into the receiver's posted buffers.
 *
 * A frame leaving for a destination is described as a view: up to three
 * byte ranges taken from the sender's frame or from small local buffers
 * (a VLAN tag to insert, a patched header of a software-cut GSO piece).
 * hs__copy_view walks the view and the destination's segments together;
 * every chunk is a memcpy between addressable memory, or, when either side
 * is foreign (HS_SEG_FOREIGN), a copy op batched for the owning backend's
 * copy hook (hs__copy_flush runs a whole batch at once). Checksums that
 * must be finished in software are summed from the source bytes in the
 * same walk, chunk by chunk, while they are in cache.
 *
 * Also here: validation and parsing of offload metadata, and the header
 * patching of software GSO pieces (TCP over IPv4/IPv6, UDP L4).
 *
 * Threads: pure functions over the caller's scratch (struct hs__dl); run
 * by whichever thread delivers, under the destination queue's lock.
 */
#include <errno.h>
#include <netinet/in.h>

#include "copy.h"

/* ---- checksum ---------------------------------------------------------- */

uint32_t hs__csum_partial(const void *buf, size_t len, uint32_t sum32)
{
	const uint8_t *p = buf;
	uint64_t s = sum32, c = 0, w;
	/* Summing 64-bit words is a ones'-complement sum modulo 2^16 - 1:
	 * 2^16 == 1 there, and so is a carry out of bit 63. */
	while (len >= 32) {
		uint64_t a, b, d, e;
		memcpy(&a, p, 8);
		memcpy(&b, p + 8, 8);
		memcpy(&d, p + 16, 8);
		memcpy(&e, p + 24, 8);
		s += a;
		c += s < a;
		s += b;
		c += s < b;
		s += d;
		c += s < d;
		s += e;
		c += s < e;
		p += 32;
		len -= 32;
	}
	while (len >= 8) {
		memcpy(&w, p, 8);
		s += w;
		c += s < w;
		p += 8;
		len -= 8;
	}
	w = 0;
	if (len >= 4) {
		uint32_t v;
		memcpy(&v, p, 4);
		w += v;
		p += 4;
		len -= 4;
	}
	if (len >= 2) {
		uint16_t v;
		memcpy(&v, p, 2);
		w += v;
		p += 2;
		len -= 2;
	}
	if (len)
		w += *p; /* little endian: an even-offset byte is the low byte */
	s += w;
	c += s < w;
	uint64_t r = (s & 0xffffffffu) + (s >> 32) + c;
	r = (r & 0xffffffffu) + (r >> 32);
	r = (r & 0xffffffffu) + (r >> 32);
	return (uint32_t)r;
}

/* ---- gathering ---------------------------------------------------------- */

uint32_t hs__pkt_gather(const struct hs_pkt *p, uint32_t off, uint8_t *dst,
			uint32_t n)
{
	uint32_t got = 0;
	for (unsigned i = 0; i < p->nsegs && got < n; i++) {
		const struct hs_seg *s = &p->segs[i];
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		if (s->flags & HS_SEG_FOREIGN)
			break;
		uint32_t k = s->len - off;
		if (k > n - got)
			k = n - got;
		memcpy(dst + got, s->base + off, k);
		got += k;
		off = 0;
	}
	return got;
}

/* ---- the copy walk --------------------------------------------------------- */

struct dcur {
	const struct hs_iobuf *b;
	unsigned si;  /* destination segment */
	uint32_t so;  /* offset in it */
};

struct csum_state {
	uint32_t start; /* view offset where summing starts; UINT32_MAX: off */
	uint32_t sum;
};

static int add_op(struct hs__dl *dl, const struct hs_seg *s, uint32_t soff,
		  const struct hs_seg *d, uint32_t doff, uint32_t len, uint32_t flags)
{
	bool to_dst = d->flags & HS_SEG_FOREIGN;
	struct hs_copy_op *ops = to_dst ? dl->ops_dst : dl->ops_src;
	unsigned *n = to_dst ? &dl->n_ops_dst : &dl->n_ops_src;
	if (*n == HS__OPS_MAX) {
		int rc = hs__copy_flush(dl);
		if (rc)
			return rc;
	}
	ops[(*n)++] = (struct hs_copy_op){
		.src = s, .dst = d, .src_off = soff, .dst_off = doff, .len = len,
		.flags = flags};
	return 0;
}

/* Copies n bytes of source segment s from soff to the destination cursor;
 * `pos` is the view offset of the first byte (for the checksum). `flags`:
 * HS_COPY_* for the copy ops this makes. */
static int emit(struct hs__dl *dl, struct dcur *d, const struct hs_seg *s,
		uint32_t soff, uint32_t n, uint32_t pos, struct csum_state *cs,
		uint32_t flags)
{
	while (n) {
		if (d->si >= d->b->nsegs)
			return -EMSGSIZE;
		const struct hs_seg *ds = &d->b->segs[d->si];
		if (d->so >= ds->len) {
			d->si++;
			d->so = 0;
			continue;
		}
		uint32_t k = ds->len - d->so;
		if (k > n)
			k = n;
		if (HS__LIKELY(!((s->flags | ds->flags) & HS_SEG_FOREIGN))) {
			memcpy(ds->base + d->so, s->base + soff, k);
		} else {
			int rc = add_op(dl, s, soff, ds, d->so, k, flags);
			if (rc)
				return rc;
		}
		if (cs->start != UINT32_MAX && pos + k > cs->start) {
			/* Callers make sure summed source bytes are addressable. */
			uint32_t skip = pos < cs->start ? cs->start - pos : 0;
			uint32_t part = hs__csum_partial(s->base + soff + skip,
							 k - skip, 0);
			cs->sum = hs__csum_block_add(cs->sum, part,
						     pos + skip - cs->start);
		}
		d->so += k;
		soff += k;
		pos += k;
		n -= k;
	}
	return 0;
}

static int emit_pkt(struct hs__dl *dl, struct dcur *d, const struct hs_pkt *p,
		    uint32_t off, uint32_t n, uint32_t pos, struct csum_state *cs)
{
	/* The sender's frame (or a backlog entry) outlives the commit; the
	 * bounce copy of a foreign frame is reused by the next frame. */
	uint32_t flags = p == &dl->bounce_pkt ? 0 : HS_COPY_SRC_STABLE;
	for (unsigned i = 0; i < p->nsegs && n; i++) {
		const struct hs_seg *s = &p->segs[i];
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		uint32_t k = s->len - off;
		if (k > n)
			k = n;
		int rc = emit(dl, d, s, off, k, pos, cs, flags);
		if (rc)
			return rc;
		pos += k;
		n -= k;
		off = 0;
	}
	return n ? -EMSGSIZE : 0;
}

int hs__copy_view(struct hs__dl *dl, const struct hs__view *v,
		  const struct hs_iobuf *b, uint32_t csum_start, uint32_t *csum)
{
	struct dcur d = {.b = b};
	struct csum_state cs = {.start = csum_start};
	uint32_t pos = 0;
	for (unsigned i = 0; i < v->n; i++) {
		const struct hs__range *r = &v->r[i];
		int rc = r->lseg ? emit(dl, &d, r->lseg, r->off, r->len, pos, &cs, 0)
				 : emit_pkt(dl, &d, r->pkt, r->off, r->len, pos, &cs);
		if (rc)
			return rc;
		pos += r->len;
	}
	if (csum)
		*csum = cs.sum;
	return 0;
}

int hs__copy_put(struct hs__dl *dl, const struct hs_iobuf *b, uint32_t at,
		 const uint8_t *bytes, const struct hs_seg *bseg, uint32_t n)
{
	struct dcur d = {.b = b};
	/* Seek to `at`. */
	while (d.si < b->nsegs && at >= b->segs[d.si].len)
		at -= b->segs[d.si++].len;
	d.so = at;
	struct csum_state cs = {.start = UINT32_MAX};
	return emit(dl, &d, bseg, (uint32_t)(bytes - bseg->base), n, 0, &cs, 0);
}

int hs__copy_flush(struct hs__dl *dl)
{
	int rc = 0;
	if (dl->n_ops_src) {
		rc = hs__be_copy(dl->src_port, dl->ops_src, dl->n_ops_src);
		dl->n_ops_src = 0;
	}
	if (dl->n_ops_dst) {
		int rc2 = hs__be_copy(dl->dst_port, dl->ops_dst, dl->n_ops_dst);
		dl->n_ops_dst = 0;
		if (!rc)
			rc = rc2;
	}
	if (rc && !dl->ops_err)
		dl->ops_err = rc;
	return rc;
}

/* ---- views -------------------------------------------------------------- */

void hs__view_frame(const struct hs__src *s, struct hs__view *v)
{
	const struct hs_pkt *p = s->pkt;
	v->len = s->len;
	if (!s->strip && !s->ins) {
		v->r[0] = (struct hs__range){.pkt = p, .off = 0, .len = p->len};
		v->n = 1;
		return;
	}
	unsigned n = 0;
	v->r[n++] = (struct hs__range){.pkt = p, .off = 0, .len = 12};
	if (s->ins)
		v->r[n++] = (struct hs__range){.lseg = &s->tag_seg, .off = 0,
					       .len = HS_VLAN_HLEN};
	uint32_t rest = 12u + (s->strip ? HS_VLAN_HLEN : 0);
	v->r[n++] = (struct hs__range){.pkt = p, .off = rest,
				       .len = p->len - rest};
	v->n = n;
}

uint32_t hs__piece_len(const struct hs__src *s, unsigned i)
{
	uint32_t payload = s->len - s->l4.hdr_len;
	uint32_t mss = s->off.gso_size;
	uint32_t done = i * mss;
	uint32_t k = payload - done < mss ? payload - done : mss;
	return s->l4.hdr_len + k;
}

void hs__view_piece(const struct hs__src *s, unsigned piece, const uint8_t *hdr,
		    const struct hs_seg *hseg, struct hs__view *v)
{
	uint32_t h = s->l4.hdr_len;
	uint32_t len = hs__piece_len(s, piece);
	/* Payload offsets are in the sender's frame: before the VLAN change. */
	uint32_t src_off = (uint32_t)((int32_t)h - s->delta) +
			   piece * (uint32_t)s->off.gso_size;
	v->r[0] = (struct hs__range){.lseg = hseg,
				     .off = (uint32_t)(hdr - hseg->base),
				     .len = h};
	v->r[1] = (struct hs__range){.pkt = s->pkt, .off = src_off,
				     .len = len - h};
	v->n = 2;
	v->len = len;
}

/* ---- offload metadata ------------------------------------------------------ */

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t rd32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

uint32_t hs__largest_piece(uint32_t len, const struct hs_offload *o, const struct hs__l4 *l)
{
	/* UFO's pieces are IP fragments: gso_size bytes of the datagram, its
	 * UDP header among them, behind the IP header (IPv6: and an 8-byte
	 * fragment header); the others' are segments behind all headers. A
	 * frame that is one piece is not cut at all. */
	bool ufo = o->gso_type == HS_GSO_UDP;
	uint32_t at = ufo ? l->l4_off : l->hdr_len, body = len - at;
	if (body <= o->gso_size)
		return len; /* one piece: not cut at all */
	return at + (ufo && l->ipv6 ? 8u : 0u) + o->gso_size;
}

int hs__offload_check(const struct hs_pkt *p, const uint8_t *hdr, uint32_t hlen,
		      struct hs__l4 *l4)
{
	const struct hs_offload *o = &p->off;
	if (o->flags & ~(HS_OFF_NEEDS_CSUM | HS_OFF_DATA_VALID | HS_OFF_GSO_ECN))
		return -EINVAL;
	uint32_t l2 = HS_ETH_HLEN;
	if (hlen >= 18 && rd16(hdr + 12) == 0x8100)
		l2 += HS_VLAN_HLEN;
	if (o->flags & HS_OFF_NEEDS_CSUM) {
		/* A partial checksum starts past an IP header at least (20
		 * bytes): Linux refuses less (fuzz_tap: a tap writes EINVAL,
		 * a guest drops the frame). */
		if (o->csum_start < l2 + 20 ||
		    (uint32_t)o->csum_start + o->csum_offset + 2 > p->len)
			return -EINVAL;
	}
	if (o->gso_type == HS_GSO_NONE) /* ECN is a GSO flag: Linux refuses it alone */
		return (o->flags & HS_OFF_GSO_ECN) ? -EINVAL : 0;
	if (o->gso_type != HS_GSO_TCPV4 && o->gso_type != HS_GSO_TCPV6 &&
	    o->gso_type != HS_GSO_UDP_L4 && o->gso_type != HS_GSO_UDP)
		return -EINVAL;
	/* ECN (CWR) is TCP's: Linux refuses it with UDP (a tap writes EINVAL
	 * for virtio's 0x85, a guest drops it as bad GSO); review 48 */
	if ((o->flags & HS_OFF_GSO_ECN) && o->gso_type != HS_GSO_TCPV4 &&
	    o->gso_type != HS_GSO_TCPV6)
		return -EINVAL;
	/* 0xffff is GSO_BY_FRAGS inside Linux, refused from a virtio header
	 * (a tap writes EINVAL, a guest drops it): found by a long fuzz_tap
	 * run. */
	/* (a tag's 4 bytes above the largest: one pushed on the way) */
	if (!o->gso_size || o->gso_size == 0xffff ||
	    p->len > HS__GSO_MAX_LEN + (l2 > HS_ETH_HLEN ? HS_VLAN_HLEN : 0))
		return -EINVAL;
	/* Parse the real headers: the sender's hdr_len is only a hint. */
	if (hlen < l2 + 20)
		return -EINVAL;
	uint16_t et = rd16(hdr + l2 - 2);
	uint32_t l3 = l2, l4o;
	uint8_t proto;
	bool v6;
	if (et == 0x0800) {
		uint32_t ihl = (hdr[l3] & 0x0f) * 4u;
		if ((hdr[l3] >> 4) != 4 || ihl < 20 || l3 + ihl > hlen)
			return -EINVAL;
		if (rd16(hdr + l3 + 6) & 0x3fff) /* a fragment */
			return -EINVAL;
		proto = hdr[l3 + 9];
		l4o = l3 + ihl;
		v6 = false;
	} else if (et == 0x86dd) {
		if (l3 + 40 > hlen || (hdr[l3] >> 4) != 6)
			return -EINVAL;
		proto = hdr[l3 + 6]; /* extension headers are not supported */
		l4o = l3 + 40;
		v6 = true;
	} else {
		return -EINVAL;
	}
	uint32_t h;
	if (proto == IPPROTO_TCP) {
		if (o->gso_type != (v6 ? HS_GSO_TCPV6 : HS_GSO_TCPV4))
			return -EINVAL;
		if (l4o + 20 > hlen)
			return -EINVAL;
		uint32_t doff = (hdr[l4o + 12] >> 4) * 4u;
		if (doff < 20)
			return -EINVAL;
		h = l4o + doff;
	} else if (proto == IPPROTO_UDP) {
		if (o->gso_type != HS_GSO_UDP_L4 && o->gso_type != HS_GSO_UDP)
			return -EINVAL;
		h = l4o + 8;
	} else {
		return -EINVAL;
	}
	if (h > hlen || h > HS__HDR_MAX || h >= p->len)
		return -EINVAL;
	uint32_t pieces = (p->len - h + o->gso_size - 1) / o->gso_size;
	if (pieces > HS__GSO_PIECES_MAX)
		return -EINVAL;
	l4->l3_off = (uint16_t)l3;
	l4->l4_off = (uint16_t)l4o;
	l4->hdr_len = (uint16_t)h;
	l4->ipv6 = v6;
	l4->proto = proto;
	/* Each piece's IP length must fit its 16-bit field (IPv6: the
	 * payload's, past the 40-byte header). */
	if (hs__largest_piece(p->len, o, l4) - l3 - (v6 ? 40 : 0) > 0xffff)
		return -EINVAL;
	/* Linux takes USO in at most UDP_MAX_SEGMENTS (128) pieces. */
	if (o->gso_type == HS_GSO_UDP_L4 && pieces > 128)
		return -EINVAL;
	/* TCP and UDP segmentation offload hand the receiver a partial
	 * checksum of the L4 header: it must be there, exactly. Linux refuses
	 * anything else (virtio_net_hdr_to_skb: EINVAL on a tap, a dropped
	 * frame in a guest); found by fuzz_tap. */
	if (o->gso_type != HS_GSO_UDP &&
	    (!(o->flags & HS_OFF_NEEDS_CSUM) || o->csum_start != l4o ||
	     o->csum_offset != (proto == IPPROTO_TCP ? 16 : 6)))
		return -EINVAL;
	return 0;
}

void hs__piece_header(const struct hs__src *s, unsigned i, uint8_t *out)
{
	const struct hs__l4 *l = &s->l4;
	uint32_t h = l->hdr_len, l3 = l->l3_off, l4 = l->l4_off;
	uint32_t len = hs__piece_len(s, i);
	bool last = i + 1 == s->pieces;
	memcpy(out, s->hdr, h);

	uint32_t pseudo;
	if (!l->ipv6) {
		uint8_t *ip = out + l3;
		uint32_t ihl = (ip[0] & 0x0f) * 4u;
		wr16(ip + 2, (uint16_t)(len - l3));
		wr16(ip + 4, (uint16_t)(rd16(ip + 4) + i));
		wr16(ip + 10, 0);
		uint16_t c = hs__csum_fold(hs__csum_partial(ip, ihl, 0));
		memcpy(ip + 10, &c, 2);
		pseudo = hs__csum_partial(ip + 12, 8, 0);
	} else {
		uint8_t *ip = out + l3;
		wr16(ip + 4, (uint16_t)(len - l3 - 40));
		pseudo = hs__csum_partial(ip + 8, 32, 0);
	}
	uint32_t l4len = len - l4;
	pseudo = hs__csum_add(pseudo, htons((uint16_t)l4len));
	pseudo = hs__csum_add(pseudo, htons(l->proto));
	/* The receiver (or our own software checksum) completes the sum over
	 * the L4 header and payload from this pseudo-header seed. */
	uint16_t seed = (uint16_t)~hs__csum_fold(pseudo);
	uint8_t *t = out + l4;
	if (l->proto == IPPROTO_TCP) {
		wr32(t + 4, rd32(t + 4) + i * (uint32_t)s->off.gso_size);
		if (!last)
			t[13] &= (uint8_t)~0x09; /* FIN, PSH: last piece only */
		if (i)
			t[13] &= (uint8_t)~0x80; /* CWR: first piece only */
		memcpy(t + 16, &seed, 2);
	} else {
		wr16(t + 4, (uint16_t)l4len);
		memcpy(t + 6, &seed, 2);
	}
}
