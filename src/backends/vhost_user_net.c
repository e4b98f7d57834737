/*
 * vhost_user_net.c - the data path of a vhost-user port: virtio-net on the
 * guest's rings (virtq.c), as the switch's backend ops.
 *
 *  transmit ring (vring 2q+1, the guest sends): recv_burst pops chains,
 *    reads the virtio-net header out of guest memory once, turns it into
 *    offload metadata and hands the switch references to the frame bytes
 *    that follow; recv_done returns the chains (length 0).
 *  receive ring (vring 2q, the guest receives): send_reserve pops enough
 *    chains for each frame (several with MRG_RXBUF), keeping room for the
 *    header; the switch copies the frame straight in; send_commit writes
 *    the header and returns the chains with the lengths written.
 *
 * Security model: as virtq.h. In addition, offload metadata the guest
 * did not negotiate is refused (bad_offload), a frame longer than 64 KiB
 * plus headers or with more than VU_TX_SEGS pieces is refused
 * (bad_descriptor), and a broken ring takes the port's link down until the
 * front-end resets it.
 */
#include <string.h>
#include <unistd.h>

#include "vu_dev.h"

/* Copies n bytes at offset `at` of a segment list into dst (or out of src
 * into the list): headers may straddle descriptors. */
static void segs_read(const struct hs_seg *s, unsigned ns, uint32_t at,
		      uint8_t *dst, uint32_t n)
{
	if (__builtin_expect(!!(ns && at == 0 && s[0].len >= n), 1)) {
		/* The usual case: the header is in the first piece. Both
		 * header sizes get a fixed-size (inlined) copy. */
		if (n == 12)
			memcpy(dst, s[0].base, 12);
		else if (n == 10)
			memcpy(dst, s[0].base, 10);
		else
			memcpy(dst, s[0].base, n);
		return;
	}
	for (unsigned i = 0; i < ns && n; i++) {
		if (at >= s[i].len) {
			at -= s[i].len;
			continue;
		}
		uint32_t k = s[i].len - at < n ? s[i].len - at : n;
		memcpy(dst, s[i].base + at, k);
		dst += k;
		n -= k;
		at = 0;
	}
}

/* (A header in one piece is written by hsb_vnet_store instead: this is
 * the rare header split across the guest's descriptors.) */
static void segs_write(const struct hs_seg *s, unsigned ns, const uint8_t *src,
		       uint32_t n)
{
	for (unsigned i = 0; i < ns && n; i++) {
		uint32_t k = s[i].len < n ? s[i].len : n;
		memcpy(s[i].base, src, k);
		src += k;
		n -= k;
	}
}

/* Drops the first n bytes of a segment list; returns the new count. */
static unsigned segs_skip(struct hs_seg *s, unsigned ns, uint32_t n)
{
	if (__builtin_expect(!!(ns && s[0].len > n), 1)) {
		s[0].base += n;
		s[0].len -= n;
		return ns;
	}
	unsigned i = 0;
	while (i < ns && n >= s[i].len)
		n -= s[i++].len;
	if (i < ns) {
		s[i].base += n;
		s[i].len -= n;
	}
	memmove(s, s + i, (ns - i) * sizeof(*s));
	return ns - i;
}

/* ---- transmit: the guest's frames into the switch ------------------------------- */

static uint64_t token_of(const struct vq_chain *ch)
{
	return (uint64_t)ch->id | ((uint64_t)ch->ndesc << 16);
}

/* A chain refused in pass 2 goes back to the driver with length 0: at once
 * if no frame of the burst comes before it, else right after the frames
 * before it (vu_recv_done), so that chains are used in the order the
 * driver made them available, as VIRTIO_F_IN_ORDER promises. */
static void refuse(struct vq *vq, struct vu_txlate *l, const struct vq_chain *ch,
		   unsigned before)
{
	if (!before) {
		vq_push(vq, ch, 0);
		return;
	}
	l->ch[l->n] = *ch;
	l->at[l->n++] = (uint8_t)before;
}

/* vu_recv_burst past its look at an empty ring. */
static __attribute__((noinline)) unsigned
vu_recv_frames(struct vu_dev *d, uint16_t q, struct vu_vring *vr, struct hs_pkt *pkts,
	    unsigned max)
{
	struct vq *vq = &vr->vq;
	struct vu_txq *t = &d->txq[q];
	struct vq_chain ch[64];
	bool bad[64];
	unsigned got = 0, n = 0, bad_desc = 0, bad_off = 0;
	if (max > 64)
		max = 64;
	struct vu_txlate *late = &d->txlate[q];
	late->n = late->next = late->done = 0;
	if (q == 0 && max && atomic_load_explicit(&d->announce, memory_order_relaxed) &&
	    atomic_exchange_explicit(&d->announce, false, memory_order_acquire)) {
		/* SEND_RARP: the guest's announce goes first (vu_log.c). */
		struct hs_pkt *p = &pkts[n++];
		*p = (struct hs_pkt){.segs = p->seg, .nsegs = 1,
				     .len = sizeof(d->announce_frame),
				     .token = VU_TOKEN_ANNOUNCE};
		p->seg[0] = (struct hs_seg){.base = d->announce_frame,
					    .len = sizeof(d->announce_frame)};
		max--;
	}
	/* Pass 1: pop the chains and start loading each frame's first bytes
	 * (virtio-net and Ethernet headers), so that the cache misses on
	 * memory the guest just wrote overlap instead of queueing up. */
	unsigned empty_looks = 0; /* looks again that found nothing */
	bool looked = false;
	while (got < max) {
		int rc = vq_pop(vq, false, &ch[got], t->segs[got], VU_TX_SEGS,
				d->hdr_len + HS_FRAME_MAX, &bad[got]);
		if (rc == 0) {
			if (vq->miss) { /* behind an IOMMU: ask, come back on UPDATE */
				vu_iotlb_report(d, vr);
				break;
			}
			/* Drained. With EVENT_IDX the driver kicks only when it
			 * passes avail_event: move it here while kicks are wanted,
			 * then look once more (it may have added meanwhile). A
			 * look that said "more" and a pop that then found none
			 * means the index went back, which only a hostile driver
			 * does: a few of those and the round ends, or one that
			 * timed its flips could hold this thread here (review 48).
			 * avail_event was moved at each look. */
			if (looked && ++empty_looks >= 4)
				break;
			looked = false;
			if (!vr->kicks_off && vq->event_idx && !vq->packed &&
			    vq_set_kicks(vq, true)) {
				looked = true;
				continue;
			}
			break;
		}
		looked = false;
		if (rc < 0) {
			vu_ring_broken(d, vr);
			break;
		}
		if (ch[got].nseg) {
			const uint8_t *b = t->segs[got][0].base;
			__builtin_prefetch(b);
			__builtin_prefetch(b + d->hdr_len + HS_ETH_HLEN - 1);
		}
		got++;
	}
	/* recv_done (or pass 2, for bad chains) returns them all. */
	vq_prefetch_used(vq, got);
	/* Pass 2: headers into offload metadata; bad chains go straight back. */
	for (unsigned i = 0; i < got; i++) {
		struct hs_seg *segs = t->segs[i];
		struct hsb_vnet_hdr h = {0};
		if (bad[i] || ch[i].len < d->hdr_len) {
			refuse(vq, late, &ch[i], n);
			bad_desc++;
			continue;
		}
		segs_read(segs, ch[i].nseg, 0, (uint8_t *)&h, d->hdr_len);
		/* DATA_VALID is the device's to set, never the driver's
		 * (virtio 1.2, 5.1.6.2.1): ignored, as Linux's tun does, or a
		 * guest's word would mark its frames' checksums verified for
		 * the guests that receive them (review 48). */
		h.flags &= (uint8_t)~HSB_VNET_F_DATA_VALID;
		struct hs_pkt *p = &pkts[n];
		if (!hsb_vnet_to_offload(&h, d->tx_caps, &p->off)) {
			refuse(vq, late, &ch[i], n);
			bad_off++;
			continue;
		}
		p->nsegs = (uint16_t)segs_skip(segs, ch[i].nseg, d->hdr_len);
		p->segs = segs;
		p->len = ch[i].len - d->hdr_len;
		p->token = token_of(&ch[i]);
		n++;
	}
	if (bad_desc)
		hs_port_count_drop(d->port, q, HS_DROP_BAD_DESC, bad_desc);
	if (bad_off)
		hs_port_count_drop(d->port, q, HS_DROP_BAD_OFFLOAD, bad_off);
	if ((bad_desc || bad_off) && !n && vq_flush(vq))
		vu_notify(d, q, HS_EV_COMPLETED);
	/* A whole burst of bad chains: more may wait, and pass 1 ended before
	 * moving avail_event; returning nothing reads as "drained" to the
	 * owner, and the driver would not kick again. Look again later,
	 * through the ring's kick (after the other queues: a driver that
	 * keeps posting bad chains does not hold the thread). */
	if (!n && got == max && max)
		vu_ring_look(vr);
	return n;
}

unsigned vu_recv_burst(void *priv, uint16_t q, struct hs_pkt *pkts, unsigned max)
{
	struct vu_dev *d = priv;
	struct vu_vring *vr = &d->vr[2 * q + 1];
	if (!vr->live)
		return 0;
	/* An empty ring, what most polls of a busy worker find: one load and
	 * back, without the burst's setup (its stack, the announce, pass 1's
	 * look at the index, which cost ~170 instructions a poll). With kicks
	 * wanted on an EVENT_IDX split ring pass 1 moves avail_event first;
	 * an announce waiting goes out on an empty ring too. */
	if (vq_drained(&vr->vq) &&
	    (vr->kicks_off || !vr->vq.event_idx || vr->vq.packed) &&
	    !(q == 0 && atomic_load_explicit(&d->announce, memory_order_relaxed)))
		return 0;
	return vu_recv_frames(d, q, vr, pkts, max);
}

unsigned vu_recv_done(void *priv, uint16_t q, const struct hs_pkt *pkts, unsigned n)
{
	struct vu_dev *d = priv;
	struct vu_vring *vr = &d->vr[2 * q + 1];
	struct vu_txlate *late = &d->txlate[q];
	for (unsigned i = 0; i < n; i++) {
		uint64_t tok = pkts[i].token;
		if (tok != VU_TOKEN_ANNOUNCE) /* the switch's own: no chain */
			vq_push_id(&vr->vq, (uint16_t)tok, (uint16_t)(tok >> 16), false, 0);
		if (__builtin_expect(late->n != 0, 0)) { /* refused chains after it */
			late->done++;
			while (late->next < late->n && late->at[late->next] <= late->done)
				vq_push(&vr->vq, &late->ch[late->next++], 0);
		}
	}
	bool logged = vr->vq.log && vr->vq.pending;
	unsigned ev = vq_flush(&vr->vq) ? HS_EV_COMPLETED : 0;
	if (logged)
		vu_log_signal(d); /* after the used ring's marks */
	return ev;
}

/* ---- receive: frames into the guest's buffers ---------------------------------- */

/* Pops the buffers for one frame of `need` bytes (header included).
 * Returns 1, 0 (not enough buffers now: nothing kept) or -1 (broken);
 * *too_big when the frame can never fit: a single buffer (no MRG_RXBUF)
 * is smaller than it, or it needs more buffers than one frame may take
 * (VU_RX_MAX_CHAINS) or than the ring holds. Taken for "not now", such a
 * frame (a TSO frame into small buffers) would wait at the head of the
 * backlog for good, and every frame behind it too. */
static int reserve_one(struct vu_dev *d, struct vq *vq, struct vu_rxq *r,
		       uint32_t need, struct vu_resv *rv, bool *too_big)
{
	rv->first = (uint16_t)r->n_chain;
	rv->n = 0;
	uint32_t cap = 0, seg0 = r->n_seg, given = 0;
	/* a buffer smaller than this never holds anything: with MRG_RXBUF
	 * the header (which the spec requires of every buffer), without it
	 * the header and an Ethernet header */
	const uint32_t least = d->hdr_len + (d->mrg ? 0 : 14);
	*too_big = false;
	while (cap < need) {
		if (rv->n && !d->mrg) {
			*too_big = true;
			goto undo;
		}
		if (rv->n == VU_RX_MAX_CHAINS || rv->n == r->chain_cap) {
			*too_big = true;
			goto undo;
		}
		if (r->n_chain == r->chain_cap)
			goto undo;
		struct vq_chain *ch = &r->chain[r->n_chain];
		bool bad;
		int rc = vq_pop(vq, true, ch, r->segs + r->n_seg, r->seg_cap - r->n_seg,
				UINT32_MAX / 2, &bad);
		if (rc < 0)
			return -1;
		if (rc == 0)
			goto undo;
		r->n_chain++;
		rv->n++;
		/* A chain that can never be used: more pieces than the scratch
		 * holds, longer than the limit, or too short for anything. */
		if (__builtin_expect(bad || ch->len < least, 0)) {
			/* With reservations before it in the scratch, waiting
			 * to be pushed, the next burst starts from an empty one.
			 * From an empty scratch the chains of this reservation
			 * would only be popped again, so they go back unused,
			 * in order (IN_ORDER), and the reservation goes on with
			 * the next ones, instead of stalling this receiver for
			 * good (the good buffers before the bad one are lost to
			 * this frame, not to the guest: it gets them back). */
			if (rv->first)
				goto undo;
			for (unsigned k = 0; k < rv->n; k++)
				vq_push(vq, &r->chain[k], 0);
			if (!atomic_fetch_add_explicit(&r->bad_buffers, 1, memory_order_relaxed))
				hs_port_log(d->port, HS_LOG_WARN,
					    "receive buffer %s given back unused (counted in "
					    "bad_rx_buffers)",
					    ch->len < least ? "too short to hold a frame"
					    : "in too many pieces or too long");
			given += rv->n;
			r->n_chain = 0;
			r->n_seg = seg0;
			rv->n = 0;
			cap = 0;
			/* A guest that posts bad buffers again as fast as they
			 * come back would keep this thread here (holding the
			 * queue's lock): after a ring's worth, "out of buffers".
			 * The frame waits in the backlog, and is tried again
			 * when the guest posts buffers or the next frame for it
			 * comes: only this guest's frames wait. */
			if (given >= r->chain_cap)
				return 0;
			continue;
		}
		r->n_seg += ch->nseg;
		cap += ch->len;
	}
	return 1;
undo:
	vq_unpop(vq, &r->chain[rv->first], rv->n);
	r->n_chain = rv->first;
	r->n_seg = seg0;
	rv->n = 0;
	return 0;
}

unsigned vu_send_reserve(void *priv, uint16_t q, const struct hs_out *out,
			 unsigned n, struct hs_iobuf *bufs)
{
	struct vu_dev *d = priv;
	struct vu_vring *vr = &d->vr[2 * q];
	struct vu_rxq *r = &d->rxq[q];
	r->n_chain = r->n_seg = r->n_resv = 0;
	if (!vr->live || !r->chain)
		return 0;
	unsigned i;
	for (i = 0; i < n; i++) {
		struct vu_resv *rv = &r->resv[i];
		bool too_big;
		uint32_t seg0 = r->n_seg, need = out[i].len + d->hdr_len;
		struct vq_chain *ch = &r->chain[r->n_chain];
		struct hs_seg *s = r->segs + seg0;
		/* The common buffer: one descriptor that holds the header
		 * and the whole (non-empty) frame after it, popped here.
		 * reserve_one takes every other case (and reads the
		 * descriptor again: nothing of this look is kept). */
		if (__builtin_expect(r->n_chain < r->chain_cap && seg0 < r->seg_cap &&
				     out[i].len, 1) &&
		    vq_peek_direct(&vr->vq, true, ch, s, UINT32_MAX / 2) && ch->len >= need) {
			vq_take(&vr->vq);
			rv->first = (uint16_t)r->n_chain++;
			rv->n = 1;
			r->n_seg = seg0 + 1;
		} else {
			int rc = reserve_one(d, &vr->vq, r, need, rv, &too_big);
			if (rc < 0) {
				vu_ring_broken(d, vr);
				break;
			}
			if (!rc) {
				if (vr->vq.miss) /* behind an IOMMU: ask, come back on UPDATE */
					vu_iotlb_report(d, vr);
				if (!too_big)
					break; /* out of buffers */
				bufs[i].nsegs = 0; /* larger than the guest's buffers */
				continue;
			}
		}
		/* The header goes first: remember where, and leave it out of
		 * the segments the switch writes the frame into. */
		unsigned ns = r->n_seg - seg0;
		if (__builtin_expect(s[0].len > d->hdr_len, 1)) {
			/* the common buffer: header and frame in one piece
			 * (only base and len of a header piece are read:
			 * its flags and ref are left as they were) */
			rv->hdr[0].base = s[0].base;
			rv->hdr[0].len = d->hdr_len;
			rv->nhdr = 1;
			s[0].base += d->hdr_len;
			s[0].len -= d->hdr_len;
		} else {
			rv->nhdr = 0;
			for (unsigned k = 0, left = d->hdr_len; k < ns && left; k++) {
				/* at least a byte each (pieces are never
				 * empty): 12 at most */
				uint32_t take = s[k].len < left ? s[k].len : left;
				rv->hdr[rv->nhdr++] = (struct hs_seg){.base = s[k].base,
								      .len = take};
				left -= take;
			}
			ns = segs_skip(s, ns, d->hdr_len);
		}
		r->n_seg = seg0 + ns;
		rv->seg0 = seg0;
		rv->nseg = (uint16_t)ns;
		/* The copy writes here soon: start owning the lines now, the
		 * header's and, where it is another, the frame's first (a
		 * DPDK client's header ends where a line starts: its mbuf
		 * headroom puts the frame at a line boundary). */
		hsb_prefetch_w(rv->hdr[0].base);
		if (ns && (((uintptr_t)s[0].base ^ (uintptr_t)rv->hdr[0].base) & ~(uintptr_t)63))
			hsb_prefetch_w(s[0].base);
		bufs[i].segs = s;
		bufs[i].nsegs = (uint16_t)ns;
	}
	r->n_resv = i;
	vq_prefetch_used(&vr->vq, r->n_chain);
	return i;
}

/* Dirty logging: marks the pages one frame was written to (its header
 * and its first len bytes, whichever path of the copy engine wrote them). */
static void log_frame(const struct vq *vq, const struct vu_rxq *r,
		      const struct vu_resv *rv, uint32_t len)
{
	for (unsigned k = 0; k < rv->nhdr; k++)
		vu_log_hva(vq->log, vq->mem, rv->hdr[k].base, rv->hdr[k].len);
	for (unsigned k = 0; k < rv->nseg && len; k++) {
		const struct hs_seg *s = &r->segs[rv->seg0 + k];
		uint32_t n = s->len < len ? s->len : len;
		vu_log_hva(vq->log, vq->mem, s->base, n);
		len -= n;
	}
}

unsigned vu_send_commit(void *priv, uint16_t q, const struct hs_out *out, unsigned n)
{
	struct vu_dev *d = priv;
	struct vu_vring *vr = &d->vr[2 * q];
	struct vu_rxq *r = &d->rxq[q];
	struct vq *vq = &vr->vq;
	/* (read once: the header stores below write through byte pointers,
	 * which the compiler must assume may change any field) */
	const bool log = vq->log != NULL;
	const uint32_t hdr_len = d->hdr_len, m = n < r->n_resv ? n : r->n_resv;
	for (unsigned i = 0; i < m; i++) {
		const struct vu_resv *rv = &r->resv[i];
		/* The common frame: one buffer, the header in one piece. (The
		 * general loop below does the same for it, 22 instructions a
		 * frame slower by bench/vhost_cost.sh, hoisting or not.) */
		if (__builtin_expect(rv->n == 1 && out[i].len && rv->hdr[0].len >= hdr_len &&
				     !log, 1)) {
			struct hsb_vnet_hdr h = hsb_vnet_from_offload(&out[i].off, 1);
			hsb_vnet_store(rv->hdr[0].base, &h, hdr_len);
			const struct vq_chain *ch = &r->chain[rv->first];
			/* (the buffer holds it, as reserved; bounded all the same) */
			uint32_t total = out[i].len + hdr_len;
			vq_push_id(vq, ch->id, ch->ndesc, true, total < ch->len ? total : ch->len);
			continue;
		}
		if (!rv->n)
			continue;
		uint32_t total = out[i].len ? out[i].len + hdr_len : 0;
		if (out[i].len) {
			struct hsb_vnet_hdr h = hsb_vnet_from_offload(&out[i].off,
								      (uint16_t)rv->n);
			if (__builtin_expect(rv->hdr[0].len >= d->hdr_len, 1))
				hsb_vnet_store(rv->hdr[0].base, &h, d->hdr_len);
			else
				segs_write(rv->hdr, rv->nhdr, (const uint8_t *)&h, d->hdr_len);
			if (vq->log)
				log_frame(vq, r, rv, out[i].len);
		}
		for (unsigned k = 0; k < rv->n; k++) {
			const struct vq_chain *ch = &r->chain[rv->first + k];
			uint32_t len = total < ch->len ? total : ch->len;
			vq_push(vq, ch, len);
			total -= len;
		}
	}
	r->n_resv = 0;
	bool logged = vq->log && vq->pending;
	unsigned ev = vq_flush(vq) ? HS_EV_DELIVERED : 0;
	if (logged)
		vu_log_signal(d); /* after the used ring's marks */
	return ev;
}

/* ---- notifications ------------------------------------------------------------------ */

void vu_notify(void *priv, uint16_t q, unsigned ev)
{
	struct vu_dev *d = priv;
	/* a full or closed call fd: the guest polls */
	if (ev & HS_EV_DELIVERED)
		vu_poke(d->vr[2 * q].callfd);
	if (ev & HS_EV_COMPLETED)
		vu_poke(d->vr[2 * q + 1].callfd);
}

bool vu_set_notify(void *priv, uint16_t q, unsigned ev, bool enable)
{
	struct vu_dev *d = priv;
	struct vu_vring *vr = &d->vr[ev == HS_EV_KICK ? 2 * q + 1 : 2 * q];
	if (ev == HS_EV_POSTED) /* applied again when the ring goes live */
		atomic_store_explicit(&vr->posted_want, enable, memory_order_relaxed);
	if (!vr->live)
		return false;
	if (ev == HS_EV_KICK)
		vr->kicks_off = !enable;
	return vq_set_kicks(&vr->vq, enable);
}
