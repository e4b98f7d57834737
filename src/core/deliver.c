/*
 * deliver.c - the second pass of a round: frames grouped by destination
 * are delivered, destination by destination, under that egress queue's
 * lock: reserve the receiver's posted buffers, copy each frame once
 * straight into them (copy.c), commit, then notify (or not) by the peer
 * state rules.
 *
 * Preemptive copying: the copy happens now, at switching time. A receiver
 * without posted buffers gets its frames in a bounded per-queue backlog
 * (the only place a second copy can happen), drained in order the moment
 * it posts buffers (hs_port_posted) or on the next delivery; when the
 * backlog is full the frame is dropped and counted (rx_no_buffer). The
 * sender never waits.
 *
 * Notifications: at most one per destination queue per round. A blocked
 * (or unknown-state) peer that asked is notified at the end of its batch;
 * a running peer that asked is notified once at the end of the round; a
 * peer that did not ask is never notified.
 *
 * Locks: one egress queue lock at a time, held across reserve/copy/commit
 * only; backend notify calls happen outside it.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "copy.h"
#include "../backends/prefetch.h" /* one write-prefetch helper for both */

#define HS__SW_ABLATION (HS_SW_DOUBLE_COPY | HS_SW_NOTIFY_EACH | HS_SW_NO_BACKLOG)

/* ---- backlog --------------------------------------------------------------- */

int hs__backlog_init(struct hs__backlog *bl, uint32_t frames, uint32_t bytes)
{
	memset(bl, 0, sizeof(*bl));
	bl->ent = calloc(frames, sizeof(*bl->ent));
	if (!bl->ent)
		return -ENOMEM;
	/* Reserved, not committed: a backlog costs memory only once used. */
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED) {
		free(bl->ent);
		bl->ent = NULL;
		return -ENOMEM;
	}
	bl->buf = m;
	bl->ent_cap = frames;
	bl->buf_cap = bytes;
	return 0;
}

void hs__backlog_fini(struct hs__backlog *bl)
{
	if (bl->buf)
		munmap(bl->buf, bl->buf_cap);
	free(bl->ent);
	memset(bl, 0, sizeof(*bl));
}

/* Space for `need` contiguous bytes in the byte ring, FIFO with the
 * entries; returns the offset or UINT32_MAX. */
static uint32_t bl_alloc(struct hs__backlog *bl, uint32_t need)
{
	if (bl->ent_n == bl->ent_cap || need > bl->buf_cap)
		return UINT32_MAX;
	if (!bl->ent_n) {
		bl->buf_tail = 0;
		return 0;
	}
	uint32_t head = bl->ent[bl->ent_head].off;
	if (bl->buf_tail > head) { /* used: [head, tail) */
		if (bl->buf_cap - bl->buf_tail >= need)
			return bl->buf_tail;
		if (head >= need)
			return 0;
		return UINT32_MAX;
	}
	/* wrapped: used [head, cap) + [0, tail) */
	if (head - bl->buf_tail >= need)
		return bl->buf_tail;
	return UINT32_MAX;
}

/* Copies frame s (after its VLAN change) into the backlog. */
static bool bl_push(struct hs__dl *dl, struct hs__backlog *bl,
		    const struct hs__src *s)
{
	uint32_t off = bl_alloc(bl, s->len);
	if (off == UINT32_MAX)
		return false;
	struct hs_seg seg = {.base = bl->buf + off, .len = s->len};
	struct hs_iobuf b = {.segs = &seg, .nsegs = 1};
	struct hs__view v;
	hs__view_frame(s, &v);
	if (hs__copy_view(dl, &v, &b, UINT32_MAX, NULL))
		return false;
	if ((dl->n_ops_src || dl->n_ops_dst) && hs__copy_flush(dl))
		return false;
	struct hs__bl_ent *e = &bl->ent[(bl->ent_head + bl->ent_n) % bl->ent_cap];
	e->off = off;
	e->len = s->len;
	e->off_meta = s->off;
	e->first = s->first;
	e->vid = s->vid;
	e->l4 = s->l4;
	bl->ent_n++;
	bl->buf_tail = off + s->len;
	return true;
}

static void bl_pop(struct hs__backlog *bl, unsigned n)
{
	bl->ent_head = (bl->ent_head + n) % bl->ent_cap;
	bl->ent_n -= n;
	if (!bl->ent_n)
		bl->ent_head = bl->buf_tail = 0;
}

/* Drops what the backlogs of p hold that p no longer takes as stored,
 * after a change of its VLANs: frames of a VLAN it left (a mirror output
 * takes every VLAN) or tagged where they now leave untagged, or the other
 * way round. Counted as vlan drops; the rest keep their order. */
unsigned hs__backlog_purge_vlans(struct hs_port *p, bool mirror_out)
{
	unsigned total = 0;
	for (unsigned q = 0; q < p->nq; q++) {
		struct hs__outq *oq = &p->outq[q];
		struct hs__backlog *bl = &oq->bl;
		(void)hs__lock_take(&oq->lock);
		uint32_t kept = 0;
		for (uint32_t r = 0; r < bl->ent_n; r++) {
			struct hs__bl_ent *e = &bl->ent[(bl->ent_head + r) % bl->ent_cap];
			uint16_t vid = e->vid & 0x0fff;
			bool tagged = e->vid & HS__BL_TAGGED;
			if (tagged != hs__port_tags(p, vid) ||
			    (!mirror_out && !hs__port_in_vlan(p, vid)))
				continue;
			struct hs__bl_ent *w = &bl->ent[(bl->ent_head + kept) % bl->ent_cap];
			if (w != e)
				*w = *e;
			kept++;
		}
		unsigned gone = bl->ent_n - kept;
		if (gone) {
			bl->ent_n = kept;
			if (!kept) {
				bl->ent_head = bl->buf_tail = 0;
			} else {
				/* space freed inside the ring comes back as the
				 * frames before it drain; what was at its end now */
				const struct hs__bl_ent *last =
					&bl->ent[(bl->ent_head + kept - 1) % bl->ent_cap];
				bl->buf_tail = last->off + last->len;
			}
			hs__ctr_add(&oq->drops[HS_DROP_VLAN], gone);
			atomic_store_explicit(&oq->bl_count, kept, memory_order_relaxed);
		}
		hs__lock_release(&oq->lock);
		total += gone;
	}
	return total;
}

/* ---- per-destination preparation ---------------------------------------- */

static uint32_t gso_cap(const struct hs_offload *o)
{
	uint32_t c;
	switch (o->gso_type) {
	case HS_GSO_TCPV4: c = HS_CAP_GSO_TCPV4; break;
	case HS_GSO_TCPV6: c = HS_CAP_GSO_TCPV6; break;
	case HS_GSO_UDP: c = HS_CAP_GSO_UDP; break;
	default: c = HS_CAP_GSO_UDP_L4; break;
	}
	if (o->flags & HS_OFF_GSO_ECN)
		c |= HS_CAP_GSO_ECN;
	return c | HS_CAP_CSUM; /* receiving GSO implies checksum offload */
}

static bool pkt_local(const struct hs_pkt *p)
{
	for (unsigned i = 0; i < p->nsegs; i++)
		if (p->segs[i].flags & HS_SEG_FOREIGN)
			return false;
	return true;
}

/* Decides how frame p leaves for a receiver with `caps`: VLAN change
 * already set in s (strip/ins/delta/tag), l4 layout in the frame's own
 * coordinates. Returns 0, or -1 for a frame this receiver cannot get. */
static int prepare(struct hs__src *s, const struct hs_pkt *p,
		   const struct hs__l4 *l4, uint32_t caps, uint8_t *tmpl)
{
	s->pkt = p;
	s->len = p->len + (uint32_t)(int32_t)s->delta;
	s->off = p->off;
	s->pieces = 1;
	s->mode = HS__PASS;
	/* whether every byte is addressable: a foreign frame's copy can fail
	 * (its sender's hook), and then it must not be published */
	s->local = pkt_local(p);
	if (HS__LIKELY(!p->off.flags && !p->off.gso_type))
		return 0;

	if (s->off.flags & HS_OFF_NEEDS_CSUM)
		s->off.csum_start = (uint16_t)(s->off.csum_start + s->delta);
	if (!(caps & HS_CAP_CSUM))
		s->off.flags &= (uint8_t)~HS_OFF_DATA_VALID;
	if (s->off.gso_type) {
		s->l4 = *l4;
		s->l4.l3_off = (uint16_t)(s->l4.l3_off + s->delta);
		s->l4.l4_off = (uint16_t)(s->l4.l4_off + s->delta);
		s->l4.hdr_len = (uint16_t)(s->l4.hdr_len + s->delta);
		s->off.hdr_len = s->l4.hdr_len;
		uint32_t need = gso_cap(&s->off);
		if ((caps & need) == need)
			return 0; /* passes through unsegmented */
		if (s->off.gso_type == HS_GSO_UDP)
			return -1; /* UFO needs IP fragmentation: not done */
		s->mode = HS__SEGMENT;
		s->pieces = (uint16_t)((s->len - s->l4.hdr_len + s->off.gso_size - 1) /
				       s->off.gso_size);
		/* Header template, after the VLAN change. */
		uint32_t h = s->l4.hdr_len, got;
		if (!s->strip && !s->ins) {
			got = hs__pkt_gather(p, 0, tmpl, h);
		} else {
			got = hs__pkt_gather(p, 0, tmpl, 12);
			uint32_t at = 12;
			if (s->ins) {
				memcpy(tmpl + 12, s->tag, HS_VLAN_HLEN);
				at += HS_VLAN_HLEN;
				got += HS_VLAN_HLEN;
			}
			got += hs__pkt_gather(p, 12u + (s->strip ? HS_VLAN_HLEN : 0),
					      tmpl + at, h - at);
		}
		if (got != h)
			return -1;
		s->hdr = tmpl;
		return 0;
	}
	if ((s->off.flags & HS_OFF_NEEDS_CSUM) && !(caps & HS_CAP_CSUM))
		s->mode = HS__CSUM;
	return 0;
}

/* An 802.1Q tag of tci, written from the switch's memory (one store). A
 * frame that keeps its tag gets the classified one, never the sender's
 * bytes read again (vlan_change). */
static inline void tag_bytes(uint8_t t[HS_VLAN_HLEN], uint16_t tci)
{
	const uint8_t w[HS_VLAN_HLEN] = {0x81, 0x00, (uint8_t)(tci >> 8), (uint8_t)tci};
	memcpy(t, w, sizeof(w)); /* one store */
}

/* The VLAN change for frame i of the round towards port dp. */
static void vlan_change(const struct hs__ctx *c, unsigned i,
			struct hs__vout vo, struct hs__src *s)
{
	uint16_t vid = c->vid[i];
	bool in = (c->tagged >> i) & 1;
	bool out = hs__vout_tags(vo, vid);
	s->first = 0;
	s->vid = (uint16_t)(vid | (out ? HS__BL_TAGGED : 0));
	/* A tag that leaves as it came is still written from the switch's
	 * memory (taken out and put back): the sender's may be a guest's,
	 * which another of its vCPUs can rewrite between classification
	 * and the copy, and the frame, switched in its VLAN, would leave
	 * tagged with another (found by review 48). Untagged frames leave
	 * as they came: an ethertype turned into a tag then gives nothing a
	 * priority-tagged frame with a tag inside does not (the outer tag
	 * taken off leaves the inner one). */
	if (!in && !out) {
		s->strip = s->ins = 0;
		s->delta = 0;
		return;
	}
	s->strip = in;
	s->ins = out;
	s->delta = (int16_t)((out ? HS_VLAN_HLEN : 0) - (in ? HS_VLAN_HLEN : 0));
	if (out) {
		tag_bytes(s->tag, (uint16_t)((in ? (c->tci[i] & 0xf000) : 0) | vid));
		s->tag_seg = (struct hs_seg){.base = s->tag, .len = HS_VLAN_HLEN};
	}
}

/* ---- one frame into one reserved buffer ---------------------------------- */

static void out_desc(const struct hs__src *s, unsigned piece, uint32_t caps,
		     struct hs_out *o)
{
	if (s->mode == HS__PASS) {
		o->len = s->len;
		o->off = s->off;
		return;
	}
	memset(&o->off, 0, sizeof(o->off));
	if (s->mode == HS__CSUM) {
		o->len = s->len;
		return;
	}
	o->len = hs__piece_len(s, piece);
	if (caps & HS_CAP_CSUM) {
		o->off.flags = HS_OFF_NEEDS_CSUM;
		o->off.csum_start = s->l4.l4_off;
		o->off.csum_offset = s->l4.proto == 6 ? 16 : 6;
	}
}

/* The copy loops' part of prefetching receive buffers (prefetch.h): a
 * large burst is copied in runs of HSB_PREFETCH_AHEAD frames, and before
 * each run the next run's buffers are prefetched (the backend did the
 * first run's when it reserved them; vhost-user does all of its). A small
 * burst is one run: its frames pay nothing for this. The loops, where n
 * frames asked for buffers and k got them:
 *	run = run_len(dl, n, k);
 *	for (j0 = 0; j0 < k; j0 = j1)
 *		for (j = j0, j1 = run_begin(dl, j0, run, k); j < j1; j++) */
static inline unsigned run_len(const struct hs__dl *dl, unsigned n, unsigned k)
{
	return hsb_prefetch_count(dl->out, n) < n ? HSB_PREFETCH_AHEAD : k;
}

/* Where the run from j0 ends, its next run's buffers prefetched. */
static inline unsigned run_begin(const struct hs__dl *dl, unsigned j0, unsigned run,
				 unsigned k)
{
	if (run < k) {
		unsigned a = j0 + run, end = a + run < k ? a + run : k;
		for (; a < end; a++)
			if (dl->bufs[a].nsegs && !(dl->bufs[a].segs[0].flags & HS_SEG_FOREIGN))
				hsb_prefetch_w(dl->bufs[a].segs[0].base);
	}
	return j0 + run < k ? j0 + run : k;
}

static bool buf_foreign(const struct hs_iobuf *b)
{
	for (unsigned i = 0; i < b->nsegs; i++)
		if (b->segs[i].flags & HS_SEG_FOREIGN)
			return true;
	return false;
}

/* A GSO frame passed whole was checked in its sender's memory, which the
 * sender (a guest's other vCPUs) may write until the copy has read it:
 * the metadata must still describe the headers the receiver got. Checked
 * in the receiver's buffer, which the sender cannot write (one where the
 * switch can look: a foreign one's receiver checks for itself). */
static bool passed_as_checked(const struct hs__src *s, const struct hs_out *o,
			      const struct hs_iobuf *b)
{
	if (buf_foreign(b))
		return true;
	struct hs_pkt p = {.segs = b->segs, .nsegs = b->nsegs, .len = o->len, .off = o->off};
	uint8_t hdr[HS__HDR_MAX];
	uint32_t hl = hs__pkt_gather(&p, 0, hdr, o->len < HS__HDR_MAX ? o->len : HS__HDR_MAX);
	struct hs__l4 l4;
	return !hs__offload_check(&p, hdr, hl, &l4) && l4.l3_off == s->l4.l3_off &&
	       l4.l4_off == s->l4.l4_off && l4.hdr_len == s->l4.hdr_len &&
	       l4.proto == s->l4.proto && l4.ipv6 == s->l4.ipv6;
}

/* Linearises a frame with foreign segments into the bounce buffer so that
 * software checksums can read it. Copy ops still pending may read the
 * bounce buffer (pieces of the previous frame for a foreign receiver):
 * they run first. */
static int bounce_pkt(struct hs__dl *dl, const struct hs_pkt *p)
{
	if ((dl->n_ops_src || dl->n_ops_dst) && hs__copy_flush(dl))
		return dl->ops_err;
	struct hs_iobuf b = {.segs = &dl->bounce_seg, .nsegs = 1};
	dl->bounce_seg = (struct hs_seg){.base = dl->bounce, .len = p->len};
	struct hs__view v = {.n = 1, .len = p->len,
			     .r[0] = {.pkt = p, .off = 0, .len = p->len}};
	int rc = hs__copy_view(dl, &v, &b, UINT32_MAX, NULL);
	if (!rc)
		rc = hs__copy_flush(dl);
	if (rc)
		return rc;
	dl->bounce_pkt = *p;
	dl->bounce_pkt.segs = &dl->bounce_seg;
	dl->bounce_pkt.nsegs = 1;
	return 0;
}

static int bounce_in(struct hs__dl *dl, struct hs__src *s)
{
	int rc = bounce_pkt(dl, s->pkt);
	if (rc)
		return rc;
	s->pkt = &dl->bounce_pkt;
	s->local = 1;
	return 0;
}

/* Foreign memory on both sides, of two backends: each copy hook reaches
 * its own backend's memory only, so such a frame comes local first (a
 * second copy, for such pairs only; between two ports of one backend,
 * e.g. two Xen guests, its hook copies straight). */
static bool cross_foreign(const struct hs__dl *dl, bool src_local, const struct hs_iobuf *b)
{
	return !src_local && dl->src_port && dl->src_port->ops != dl->dst_port->ops &&
	       buf_foreign(b);
}

/* Writes out frame `oi` (piece `piece` of s) into dl->bufs[oi]. */
static int copy_out(struct hs__dl *dl, struct hs__src *s, unsigned piece,
		    unsigned oi, uint32_t caps)
{
	const struct hs_iobuf *b = &dl->bufs[oi];
	if (HS__UNLIKELY(cross_foreign(dl, s->local, b))) {
		int rc = bounce_in(dl, s);
		if (rc)
			return rc;
	}
	const struct hs_pkt *p = s->pkt;
	if (s->mode == HS__PASS) {
		/* The common case: one segment each side, nothing to change,
		 * or a tag taken out and another put in its place (the same
		 * length: the copy, then the tag written over). */
		if (HS__LIKELY(s->strip == s->ins && p->nsegs == 1 &&
			       b->nsegs == 1 && b->segs[0].len >= p->len &&
			       !((p->segs[0].flags | b->segs[0].flags) &
				 HS_SEG_FOREIGN))) {
			hs__copy_bytes(b->segs[0].base, p->segs[0].base, p->len);
			if (s->ins)
				memcpy((uint8_t *)b->segs[0].base + 12, s->tag, HS_VLAN_HLEN);
			return 0;
		}
		struct hs__view v;
		hs__view_frame(s, &v);
		return hs__copy_view(dl, &v, b, UINT32_MAX, NULL);
	}

	/* Software work needs the source bytes addressable. */
	if (!s->local) {
		int rc = bounce_in(dl, s);
		if (rc)
			return rc;
	}
	struct hs__view v;
	uint32_t cstart, cfield;
	bool sum = true;
	if (s->mode == HS__CSUM) {
		hs__view_frame(s, &v);
		cstart = s->off.csum_start;
		cfield = cstart + s->off.csum_offset;
	} else {
		uint8_t *h = dl->piece_hdr[oi];
		hs__piece_header(s, piece, h);
		dl->piece_seg[oi] = (struct hs_seg){.base = h, .len = s->l4.hdr_len};
		hs__view_piece(s, piece, h, &dl->piece_seg[oi], &v);
		cstart = s->l4.l4_off;
		cfield = cstart + (s->l4.proto == 6 ? 16u : 6u);
		sum = !(caps & HS_CAP_CSUM);
	}
	if (!sum)
		return hs__copy_view(dl, &v, b, UINT32_MAX, NULL);

	/* A foreign receiver gets the finished frame from a local copy: its
	 * copy hook may not order two writes to the same bytes. */
	const struct hs_iobuf *target = b;
	struct hs_iobuf lb;
	struct hs_seg lseg;
	bool via_bounce = buf_foreign(b);
	uint8_t *obuf = dl->bounce + HS__GSO_MAX_LEN + HS__HDR_MAX;
	if (via_bounce) {
		lseg = (struct hs_seg){.base = obuf, .len = v.len};
		lb = (struct hs_iobuf){.segs = &lseg, .nsegs = 1};
		target = &lb;
	}
	uint32_t part;
	int rc = hs__copy_view(dl, &v, target, cstart, &part);
	if (rc)
		return rc;
	uint16_t c = hs__csum_fold(part);
	if (!c)
		c = 0xffff;
	memcpy(dl->csum_val[oi], &c, 2);
	dl->csum_seg[oi] = (struct hs_seg){.base = dl->csum_val[oi], .len = 2};
	rc = hs__copy_put(dl, target, cfield, dl->csum_val[oi], &dl->csum_seg[oi], 2);
	if (rc || !via_bounce)
		return rc;
	struct hs__view lv = {.n = 1, .len = v.len,
			      .r[0] = {.lseg = &lseg, .off = 0, .len = v.len}};
	rc = hs__copy_view(dl, &lv, b, UINT32_MAX, NULL);
	return rc ? rc : hs__copy_flush(dl);
}

/* ---- sending a list of frames -------------------------------------------- */

static void notify_now(struct hs_port *dp, struct hs__outq *oq, unsigned ev)
{
	hs__ctr_add(&oq->tx_notify, 1);
	hs__be_notify(dp, oq->qid, ev);
}

/* Delivers srcs[0..ns) in order. Returns how many were delivered
 * completely; the next one's `first` tells how far it got. `each`: one
 * frame per commit, each notified (the HS_SW_NOTIFY_EACH measurement). */
static unsigned send_srcs(struct hs__ctx *c, struct hs_port *dp,
			  struct hs__outq *oq, struct hs__src *srcs, unsigned ns,
			  unsigned *ev, bool each)
{
	struct hs__dl *dl = c->dl;
	uint32_t caps = atomic_load_explicit(&dp->caps, memory_order_relaxed);
	unsigned chunk = each ? 1 : HS__OUT_MAX;
	unsigned si = 0;
	uint64_t pk = 0, by = 0, seg = 0, csw = 0;

	while (si < ns) {
		unsigned no = 0, sj = si, pj = srcs[si].first;
		bool gso_pass = false; /* frames passed whole as GSO: checked again */
		while (sj < ns && no < chunk) {
			struct hs__src *s = &srcs[sj];
			out_desc(s, pj, caps, &dl->out[no]);
			gso_pass |= dl->out[no].off.gso_type != HS_GSO_NONE;
			dl->out_src[no] = (uint16_t)sj;
			dl->out_piece[no] = (uint16_t)pj;
			no++;
			if (++pj >= s->pieces) {
				sj++;
				pj = sj < ns ? srcs[sj].first : 0;
			}
		}
		/* Where the next chunk resumes the frame this one ends in; put
		 * back below if the reservation stops before that frame, or
		 * the frame's first pieces would be skipped, never sent nor
		 * counted (found by review: a TSO burst to a full ring). */
		const uint16_t sj_first = sj < ns ? srcs[sj].first : 0;
		if (sj < ns)
			srcs[sj].first = (uint16_t)pj;
		unsigned k = hs__be_send_reserve(dp, oq->qid, dl->out, no, dl->bufs);
		if (k > no)
			k = no;
		dl->ops_err = 0;
		const unsigned run = run_len(dl, no, k);
		for (unsigned j0 = 0, j1; j0 < k; j0 = j1) {
			j1 = run_begin(dl, j0, run, k);
			for (unsigned j = j0; j < j1; j++) {
				if (!dl->bufs[j].nsegs) {
					hs__ctr_add(&oq->drops[HS_DROP_OVERSIZE], 1);
					continue;
				}
				struct hs__src *s = &srcs[dl->out_src[j]];
				int rc = copy_out(dl, s, dl->out_piece[j], j, caps);
				if (rc) {
					dl->out[j].len = 0;
					hs__ctr_add(&oq->drops[rc == -EMSGSIZE
								? HS_DROP_OVERSIZE
								: HS_DROP_COPY_ERROR], 1);
				}
			}
		}
		if ((dl->n_ops_src || dl->n_ops_dst) && hs__copy_flush(dl))
			dl->ops_err = dl->ops_err ? dl->ops_err : -EIO;
		if (HS__UNLIKELY(dl->ops_err)) {
			/* The batch's hook failed: which frame's bytes made it
			 * is unknown, so none of the frames with foreign memory
			 * is published. */
			for (unsigned j = 0; j < k; j++) {
				struct hs__src *s = &srcs[dl->out_src[j]];
				if (dl->bufs[j].nsegs && dl->out[j].len &&
				    (!s->local || buf_foreign(&dl->bufs[j]))) {
					dl->out[j].len = 0;
					hs__ctr_add(&oq->drops[HS_DROP_COPY_ERROR], 1);
				}
			}
		}
		if (HS__UNLIKELY(gso_pass)) {
			for (unsigned j = 0; j < k; j++) {
				const struct hs__src *s = &srcs[dl->out_src[j]];
				if (dl->bufs[j].nsegs && dl->out[j].len && s->mode == HS__PASS &&
				    s->off.gso_type && !passed_as_checked(s, &dl->out[j], &dl->bufs[j])) {
					dl->out[j].len = 0;
					hs__ctr_add(&oq->drops[HS_DROP_BAD_OFFLOAD], 1);
				}
			}
		}
		*ev |= hs__be_send_commit(dp, oq->qid, dl->out, k);
		for (unsigned j = 0; j < k; j++) {
			if (!dl->bufs[j].nsegs || !dl->out[j].len)
				continue;
			const struct hs__src *s = &srcs[dl->out_src[j]];
			pk++;
			by += dl->out[j].len;
			seg += s->mode == HS__SEGMENT;
			csw += s->mode == HS__CSUM ||
			       (s->mode == HS__SEGMENT && !(caps & HS_CAP_CSUM));
		}
		if (each && (*ev & HS_EV_DELIVERED)) {
			notify_now(dp, oq, HS_EV_DELIVERED);
			*ev &= ~HS_EV_DELIVERED;
		}
		if (k < no) {
			unsigned stop = dl->out_src[k];
			if (sj < ns)
				srcs[sj].first = sj_first;
			srcs[stop].first = dl->out_piece[k];
			si = stop;
			break;
		}
		si = sj;
	}
	hs__ctr_add(&oq->tx_packets, pk);
	hs__ctr_add(&oq->tx_bytes, by);
	if (seg)
		hs__ctr_add(&oq->tx_gso_segments, seg);
	if (csw)
		hs__ctr_add(&oq->tx_csum_sw, csw);
	return si;
}

/* ---- backlog drain ------------------------------------------------------------ */

void hs__drain_backlog(struct hs__ctx *c, struct hs_port *dp,
		       struct hs__outq *oq, unsigned *ev, bool each)
{
	struct hs__dl *dl = c->dl;
	struct hs__backlog *bl = &oq->bl;
	uint32_t caps = atomic_load_explicit(&dp->caps, memory_order_relaxed);
	while (bl->ent_n) {
		unsigned n = bl->ent_n < HS__BURST_MAX ? bl->ent_n : HS__BURST_MAX;
		unsigned ns = 0, dropped_head = 0;
		for (unsigned j = 0; j < n; j++) {
			struct hs__bl_ent *e = &bl->ent[(bl->ent_head + j) % bl->ent_cap];
			struct hs_pkt *p = &dl->blpkt[j];
			p->seg[0] = (struct hs_seg){.base = bl->buf + e->off, .len = e->len};
			p->segs = p->seg;
			p->nsegs = 1;
			p->len = e->len;
			p->off = e->off_meta;
			struct hs__src *s = &dl->blsrc[ns];
			s->strip = s->ins = 0;
			s->delta = 0;
			/* A frame partly cut already is cut to the end, even if
			 * its receiver now takes it whole: its first pieces are
			 * out. */
			uint32_t fc = e->first ? caps & ~(gso_cap(&p->off) & ~HS_CAP_CSUM) : caps;
			if (prepare(s, p, &e->l4, fc, dl->bltmpl[ns])) {
				/* Its receiver changed and cannot take it. */
				if (ns == 0) {
					dropped_head++;
					hs__ctr_add(&oq->drops[HS_DROP_BAD_OFFLOAD], 1);
					continue;
				}
				break;
			}
			s->first = e->first;
			if (s->first && s->mode != HS__SEGMENT)
				s->first = 0;
			ns++;
		}
		if (dropped_head) {
			bl_pop(bl, dropped_head);
			continue;
		}
		unsigned done = send_srcs(c, dp, oq, dl->blsrc, ns, ev, each);
		bl_pop(bl, done);
		if (done < ns) {
			bl->ent[bl->ent_head].first = dl->blsrc[done].first;
			break;
		}
	}
	atomic_store_explicit(&oq->bl_count, bl->ent_n, memory_order_relaxed);
}

/* After a delivery to a port that is not paused (under the egress lock):
 * while the backlog holds frames, ask for a "buffers posted" signal, and
 * ask again after every drain (a peer with event indexes is only asked
 * for the next post: a request made before buffers were taken is stale,
 * and the receiver stalled with frames waiting, found by the vu_session
 * fuzzer); once it is empty, stop asking. Returns true while frames wait:
 * the caller then looks for buffers by draining. A paused port's backend
 * is not ours to call: hs_port_resume drains its backlog, and that drain
 * comes back here.
 *
 * Frames waiting are published (bl_count) and fenced before that look. A
 * receiver posting after the look sees them (hs_port_posted fences, then
 * reads bl_count) and drains; one that posted before it is seen by the
 * look. Published only after the look, as before, a post in between was
 * lost and the frames waited for a delivery that might never come (found
 * by a churn test in CI). The look is set_notify's answer (buffers there
 * now?), or for a backend without set_notify a drain: not a drain always,
 * since a drain that finds no buffers still prepares a burst of the
 * backlog, on every delivery to an overloaded receiver. */
static bool posted_watch(struct hs_port *dp, struct hs__outq *oq)
{
	bool want = oq->bl.ent_n != 0;
	if (!want && !oq->posted_armed)
		return false;
	if (want) {
		atomic_store_explicit(&oq->bl_count, oq->bl.ent_n, memory_order_relaxed);
		atomic_thread_fence(memory_order_seq_cst);
	}
	if (!dp->ops->set_notify)
		return want; /* the look is a drain: it reserves what is there */
	oq->posted_armed = want;
	return hs__be_set_notify(dp, oq->qid, HS_EV_POSTED, want) && want;
}

/* A polling worker that leaves a backlog in a receiver it delivers to
 * does not ask it for "buffers posted": its next delivery there drains
 * the backlog first anyway, and a receiver asked posts with a signal
 * (a guest's kick: a system call, or a VM exit) that costs both sides
 * while a backlog stands, as it does when senders outpace a receiver
 * that takes one burst for each it posts (benchmarks.md, section 6). The
 * receiver goes on c->pend, and its request is dropped if it was made;
 * hs__pend_flush asks it once the worker stops delivering there: after
 * 2 * HS__PEND_SWEEPS sweeps in a row or more without a delivery there,
 * the last of them c->pend_ns (the worker's look_ns, 25 us by default)
 * or more after the HS__PEND_SWEEPS-th (the clock is read every
 * HS__PEND_SWEEPS sweeps). Counted in sweeps alone, an open-loop sender
 * whose ring was empty for a few sweeps now and then (empty sweeps are
 * short) had it asked each time.
 * Returns false if c cannot keep it (not a worker's, the list full):
 * asked now. */
static bool posted_defer(struct hs__ctx *c, struct hs_port *dp, struct hs__outq *oq)
{
	if (!c->defer_posted || !dp->ops->set_notify)
		return false;
	unsigned i = 0;
	while (i < c->n_pend && (c->pend[i].idx != dp->index ||
				 c->pend[i].serial != dp->serial || c->pend[i].q != oq->qid))
		i++;
	if (i == c->n_pend) {
		if (i == HS__PEND_MAX)
			return false;
		c->pend[c->n_pend++] = (struct hs__pend){
			.serial = dp->serial, .idx = dp->index, .q = oq->qid};
	}
	c->pend[i].hit = true;
	c->pend[i].missed = 0;
	if (oq->posted_armed) {
		oq->posted_armed = false;
		hs__be_set_notify(dp, oq->qid, HS_EV_POSTED, false);
	}
	return true;
}

/* Drains the backlog while the receiver has buffers for it, leaving the
 * "posted" request in place while frames still wait. Stops when a drain
 * moves nothing (buffers there, but too few for the next frame: the next
 * post signals). A worker in its sweeps keeps the request back instead
 * (posted_defer). */
static void drain_posted(struct hs__ctx *c, struct hs_port *dp, struct hs__outq *oq,
			 unsigned *ev, bool each)
{
	if (oq->bl.ent_n && posted_defer(c, dp, oq))
		return;
	while (posted_watch(dp, oq)) {
		uint32_t before = oq->bl.ent_n;
		hs__drain_backlog(c, dp, oq, ev, each);
		if (oq->bl.ent_n == before)
			break;
	}
}

/* Decides the notification for a batch that asked (ev): returns the
 * events to send now, deferring those of running peers to round end. */
static unsigned notify_decide(struct hs__ctx *c, struct hs_port *dp,
			      struct hs__outq *oq, unsigned ev)
{
	if (!(ev & HS_EV_DELIVERED))
		return 0;
	int st = atomic_load_explicit(&oq->peer_state, memory_order_relaxed);
	if (st != HS_PEER_RUNNING || !c->in_round)
		return HS_EV_DELIVERED;
	for (unsigned i = 0; i < c->n_defer; i++)
		if (c->defer[i].port == dp && c->defer[i].qid == oq->qid)
			return 0;
	if (c->n_defer == HS__DEFER_MAX)
		return HS_EV_DELIVERED;
	c->defer[c->n_defer++] = (struct hs__notify){
		.port = dp, .qid = oq->qid, .ev = HS_EV_DELIVERED};
	hs__ctr_add(&oq->tx_notify, 1);
	return 0;
}

/* True if frame i of the round leaves for dp as it came: no offload
 * metadata, and untagged in and out, or tagged with its VLAN in and out
 * (the tag then written from the switch's memory: vlan_change). */
static inline bool frame_plain(const struct hs__ctx *c, unsigned i,
			       struct hs__vout vo)
{
	if (!(c->plain & (1ull << i)))
		return false;
	bool out = hs__vout_tags(vo, c->vid[i]);
	return (bool)((c->tagged >> i) & 1) == out &&
	       (!out || (c->tci[i] & 0x0fff) == c->vid[i]);
}

/* The fast path: plain frames into a receiver with an empty backlog. One
 * reserve, one copy each, one commit. Returns the frames that found no
 * buffer. */
static uint64_t send_plain(struct hs__ctx *c, struct hs_port *dp,
			   struct hs__outq *oq, uint64_t mask, unsigned *ev)
{
	struct hs__dl *dl = c->dl;
	const struct hs_pkt *pk[HS__BURST_MAX];
	uint8_t fi[HS__BURST_MAX]; /* frame indexes: for tagged frames only */
	const uint64_t tagm = mask & c->tagged;
	unsigned n = 0;
	if (HS__UNLIKELY(tagm))
		for (uint64_t m = mask; m; m &= m - 1)
			fi[n++] = (uint8_t)__builtin_ctzll(m);
	n = 0;
	for (uint64_t m = mask; m; m &= m - 1) {
		const struct hs_pkt *p = &c->pkts[__builtin_ctzll(m)];
		pk[n] = p;
		dl->out[n].len = p->len;
		dl->out[n].off = (struct hs_offload){0};
		n++;
	}
	unsigned k = hs__be_send_reserve(dp, oq->qid, dl->out, n, dl->bufs);
	if (k > n)
		k = n;
	uint64_t by = 0, pk_ok = 0, foreign = 0, viewed = 0;
	dl->ops_err = 0; /* any flush of this batch that fails sets it */
	const unsigned run = run_len(dl, n, k); /* in runs (run_begin) */
	for (unsigned j0 = 0, j1; j0 < k; j0 = j1) {
		j1 = run_begin(dl, j0, run, k);
		for (unsigned j = j0; j < j1; j++) {
			const struct hs_iobuf *b = &dl->bufs[j];
			const struct hs_pkt *p = pk[j];
			if (HS__UNLIKELY(!b->nsegs)) {
				hs__ctr_add(&oq->drops[HS_DROP_OVERSIZE], 1);
				continue;
			}
			if (HS__LIKELY(p->nsegs == 1 && b->nsegs == 1 &&
				       b->segs[0].len >= p->len &&
				       !((p->segs[0].flags | b->segs[0].flags) &
					 HS_SEG_FOREIGN))) {
				/* (a tagged frame's tag is written over below) */
				hs__copy_bytes(b->segs[0].base, p->segs[0].base, p->len);
			} else {
				/* tagged in and out: the tag from the switch's memory */
				const bool tagged = HS__UNLIKELY(tagm) && ((tagm >> fi[j]) & 1);
				viewed |= 1ull << j;
				int rc = 0;
				bool local = pkt_local(p);
				/* its bytes move through a copy hook, maybe in a batch
				 * that runs later (and may fail then) */
				if (!local || buf_foreign(b))
					foreign |= 1ull << j;
				if (HS__UNLIKELY(cross_foreign(dl, local, b))) {
					rc = bounce_pkt(dl, p);
					p = &dl->bounce_pkt;
				}
				struct hs__view v = {.n = 1, .len = p->len,
						     .r[0] = {.pkt = p, .off = 0, .len = p->len}};
				if (tagged) {
					/* in dl, not on the stack: a copy hook's op
					 * reads it at the flush, after this loop
					 * (found by review 48's second look) */
					tag_bytes(dl->tag_val[j], c->tci[fi[j]]);
					dl->tag_seg[j] = (struct hs_seg){.base = dl->tag_val[j],
									 .len = HS_VLAN_HLEN};
					v.r[0].len = 12;
					v.r[1] = (struct hs__range){.lseg = &dl->tag_seg[j], .off = 0,
								    .len = HS_VLAN_HLEN};
					v.r[2] = (struct hs__range){.pkt = p, .off = 16,
								    .len = p->len - 16};
					v.n = 3;
				}
				if (!rc)
					rc = hs__copy_view(dl, &v, b, UINT32_MAX, NULL);
				if (rc) {
					dl->out[j].len = 0;
					hs__ctr_add(&oq->drops[rc == -EMSGSIZE ? HS_DROP_OVERSIZE
										: HS_DROP_COPY_ERROR], 1);
					continue;
				}
			}
			pk_ok++;
			by += p->len;
		}
	}
	/* Tagged frames copied whole (one local segment each side): the tag
	 * the frame was switched by, written over what the copy read from
	 * the sender's memory, which may have changed since (vlan_change).
	 * Out of the copy loop, so that untagged frames pay nothing. */
	if (HS__UNLIKELY(tagm))
		for (unsigned j = 0; j < k; j++)
			if (((tagm >> fi[j]) & 1) && !((viewed >> j) & 1) && dl->bufs[j].nsegs)
				tag_bytes((uint8_t *)dl->bufs[j].segs[0].base + 12, c->tci[fi[j]]);
	if (HS__UNLIKELY(dl->n_ops_src || dl->n_ops_dst))
		hs__copy_flush(dl);
	if (HS__UNLIKELY(dl->ops_err)) {
		/* A batch of the hook failed (at the end, or earlier: when the
		 * ops array filled, or before a bounce): which frame's bytes
		 * made it is unknown, so none with foreign memory goes out. */
		for (uint64_t m = foreign; m; m &= m - 1) {
			unsigned j = (unsigned)__builtin_ctzll(m);
			if (dl->out[j].len) {
				dl->out[j].len = 0;
				pk_ok--;
				by -= pk[j]->len;
				hs__ctr_add(&oq->drops[HS_DROP_COPY_ERROR], 1);
			}
		}
	}
	*ev |= hs__be_send_commit(dp, oq->qid, dl->out, k);
	hs__ctr_add(&oq->tx_packets, pk_ok);
	hs__ctr_add(&oq->tx_bytes, by);
	for (unsigned j = 0; j < k; j++)
		mask &= mask - 1;
	return mask;
}

/* Ends a batch: decides the notification (under the lock, where it is
 * counted), releases the queue lock, then notifies. */
static void unlock_and_notify(struct hs__ctx *c, struct hs_port *dp,
			      struct hs__outq *oq, unsigned ev)
{
	unsigned now = notify_decide(c, dp, oq, ev);
	if (now)
		hs__ctr_add(&oq->tx_notify, 1);
	hs__lock_release(&oq->lock);
	if (now)
		hs__be_notify(dp, oq->qid, now);
}

/* Describes the frames of `mask` as sources for dp (VLAN change, offload
 * plan) in dl->src; frames dp cannot take are dropped and counted.
 * Returns how many sources there are. */
static unsigned prepare_mask(struct hs__ctx *c, struct hs_port *dp,
			     struct hs__outq *oq, uint64_t mask)
{
	struct hs__dl *dl = c->dl;
	uint32_t caps = atomic_load_explicit(&dp->caps, memory_order_relaxed);
	unsigned ns = 0, bad = 0;
	const struct hs__vout vo = hs__port_vout(dp);
	for (uint64_t m = mask; m; m &= m - 1) {
		unsigned i = (unsigned)__builtin_ctzll(m);
		struct hs__src *s = &dl->src[ns];
		vlan_change(c, i, vo, s);
		if (HS__UNLIKELY(prepare(s, &c->pkts[i], &dl->l4in[i], caps, dl->tmpl[ns])))
			bad++;
		else
			ns++;
	}
	if (bad)
		hs__ctr_add(&oq->drops[HS_DROP_BAD_OFFLOAD], bad);
	return ns;
}

/* Frames that found no buffer wait in the backlog (or, full, are dropped
 * and counted). */
static void backlog_srcs(struct hs__ctx *c, struct hs__outq *oq, const struct hs__src *srcs,
			 unsigned n, bool drop)
{
	for (unsigned j = 0; j < n; j++) {
		if (!drop && bl_push(c->dl, &oq->bl, &srcs[j]))
			hs__ctr_add(&oq->tx_backlogged, 1);
		else
			hs__ctr_add(&oq->drops[HS_DROP_NO_BUFFER], 1);
	}
}

static bool all_plain(const struct hs__ctx *c, const struct hs_port *dp, uint64_t mask)
{
	const struct hs__vout vo = hs__port_vout(dp);
	if (mask & ~c->plain)
		return false;
	/* the common case at once: untagged frames to a port that tags none */
	if (!(mask & c->tagged) && vo.untagged == HS__NVID)
		return true;
	for (uint64_t m = mask; m; m &= m - 1)
		if (!frame_plain(c, (unsigned)__builtin_ctzll(m), vo))
			return false;
	return true;
}

/* The production delivery, under the egress lock of a port that is up and
 * not paused: frames go straight into the receiver's posted buffers, in
 * order behind anything already waiting; what finds no buffer waits. */
static void deliver_now(struct hs__ctx *c, struct hs_port *dp, struct hs__outq *oq,
			uint64_t mask, unsigned *ev)
{
	unsigned done = 0, ns;
	if (!oq->bl.ent_n && all_plain(c, dp, mask)) {
		mask = send_plain(c, dp, oq, mask, ev); /* left: no buffer */
		ns = prepare_mask(c, dp, oq, mask);
	} else {
		if (oq->bl.ent_n)
			hs__drain_backlog(c, dp, oq, ev, false);
		ns = prepare_mask(c, dp, oq, mask);
		if (!oq->bl.ent_n)
			done = send_srcs(c, dp, oq, c->dl->src, ns, ev, false);
	}
	backlog_srcs(c, oq, c->dl->src + done, ns - done, false);
}

/* The measured variants of the ablation table, kept apart so that the
 * production path above carries none of their decisions:
 * HS_SW_DOUBLE_COPY (every frame through the backlog: a second copy),
 * HS_SW_NOTIFY_EACH (one frame per commit, each notified) and
 * HS_SW_NO_BACKLOG (no buffer: dropped at once). */
static void deliver_ablation(struct hs__ctx *c, struct hs_port *dp, struct hs__outq *oq,
			     uint64_t mask, unsigned *ev)
{
	uint32_t f = c->sw->cfg.flags;
	bool each = f & HS_SW_NOTIFY_EACH;
	unsigned ns = prepare_mask(c, dp, oq, mask), done = 0;
	if (f & HS_SW_DOUBLE_COPY) {
		backlog_srcs(c, oq, c->dl->src, ns, false);
		hs__drain_backlog(c, dp, oq, ev, each);
		return;
	}
	if (oq->bl.ent_n)
		hs__drain_backlog(c, dp, oq, ev, each);
	if (!oq->bl.ent_n)
		done = send_srcs(c, dp, oq, c->dl->src, ns, ev, each);
	backlog_srcs(c, oq, c->dl->src + done, ns - done, f & HS_SW_NO_BACKLOG);
}

/* Under oq's lock, with the backlog empty: the "buffers posted" request
 * made for frames that are gone goes too, or a driver that signals only
 * when asked would go on signalling each post for nothing (seen by
 * review after link flaps). A dead port's backend is not called (it is
 * closing), nor a paused one's: the request then stays marked, and
 * resume_port (port.c) calls this again, which also covers a VLAN
 * change's purge (hs__backlog_purge_vlans runs with the port paused). */
void hs__posted_withdraw(struct hs_port *dp, struct hs__outq *oq)
{
	if (HS__LIKELY(!oq->posted_armed) || oq->bl.ent_n ||
	    atomic_load_explicit(&dp->dead, memory_order_relaxed) ||
	    atomic_load_explicit(&dp->paused, memory_order_acquire))
		return;
	posted_watch(dp, oq);
}

/* Under oq's lock: every frame waiting in the backlog goes, counted as
 * HS_DROP_PORT_DOWN with `more` frames of the caller's, and with them
 * the request made for them (hs__posted_withdraw). */
static void drop_backlog(struct hs_port *dp, struct hs__outq *oq, uint64_t more)
{
	if (!oq->bl.ent_n && !more)
		return;
	hs__ctr_add(&oq->drops[HS_DROP_PORT_DOWN], oq->bl.ent_n + more);
	bl_pop(&oq->bl, oq->bl.ent_n);
	hs__posted_withdraw(dp, oq);
}

/* Under oq's lock: the link went down since this queue last looked, so
 * its backlog waited for a peer that went away; it goes, counted, also
 * when the link is up again by now (it is stale). */
static inline void drop_backlog_after_down(struct hs_port *dp, struct hs__outq *oq)
{
	uint32_t downs = atomic_load_explicit(&dp->link_downs, memory_order_relaxed);
	if (HS__LIKELY(downs == oq->seen_down))
		return;
	oq->seen_down = downs;
	drop_backlog(dp, oq, 0);
}

/* Takes the lock of the queue of dp that c delivers to: one the peer
 * still uses. The count is read again under the lock: a peer that stopped
 * using the queue meanwhile (hs_port_set_active_queues) has retired it
 * after storing the count, so either that retirement drops what we leave
 * there or we see the new count and pick again; frames are never left
 * where nobody looks (found by review). */
static struct hs__outq *outq_take(struct hs__ctx *c, struct hs_port *dp)
{
	for (;;) {
		struct hs__outq *oq = &dp->outq[c->idx % atomic_load_explicit(
							 &dp->nq_active, memory_order_relaxed)];
		if (HS__UNLIKELY(hs__lock_take_ex(&oq->lock,
						  !(c->sw->cfg.flags & HS_SW_BUSY_POLL))))
			hs__ctr_add(&oq->tx_lock_sleeps, 1);
		if (HS__LIKELY(oq->qid < atomic_load_explicit(&dp->nq_active,
							      memory_order_relaxed)))
			return oq;
		hs__lock_release(&oq->lock);
	}
}

/* Under no lock, from hs_port_set_active_queues after it stored the new
 * count: a queue the peer no longer uses drops what waits there (counted
 * as port_down: the peer is gone from it) with its "buffers posted"
 * request. */
void hs__outq_retire(struct hs_port *dp, struct hs__outq *oq)
{
	(void)hs__lock_take(&oq->lock);
	drop_backlog(dp, oq, 0);
	atomic_store_explicit(&oq->bl_count, 0, memory_order_relaxed);
	hs__lock_release(&oq->lock);
}

void hs__deliver(struct hs__ctx *c, struct hs_port *dp, uint64_t mask)
{
	unsigned ev = 0;

	c->dl->dst_port = dp;
	struct hs__outq *oq = outq_take(c, dp);
	drop_backlog_after_down(dp, oq);
	if (HS__UNLIKELY(!atomic_load_explicit(&dp->link_up, memory_order_relaxed) ||
			 atomic_load_explicit(&dp->dead, memory_order_relaxed))) {
		drop_backlog(dp, oq, (uint64_t)__builtin_popcountll(mask));
		atomic_store_explicit(&oq->bl_count, 0, memory_order_relaxed);
		hs__lock_release(&oq->lock);
		return;
	}
	/* Acquire: a backend changes what the data path reads while the port
	 * is paused; seeing `paused` clear makes those changes visible. A
	 * paused port's backend is not called at all: its frames wait, and
	 * hs_port_resume delivers them. */
	if (HS__UNLIKELY(atomic_load_explicit(&dp->paused, memory_order_acquire))) {
		backlog_srcs(c, oq, c->dl->src, prepare_mask(c, dp, oq, mask), false);
	} else {
		if (HS__LIKELY(!(c->sw->cfg.flags & HS__SW_ABLATION)))
			deliver_now(c, dp, oq, mask, &ev);
		else
			deliver_ablation(c, dp, oq, mask, &ev);
		drain_posted(c, dp, oq, &ev, c->sw->cfg.flags & HS_SW_NOTIFY_EACH);
	}
	atomic_store_explicit(&oq->bl_count, oq->bl.ent_n, memory_order_relaxed);
	unlock_and_notify(c, dp, oq, ev);
}

/* Drains the backlog of (dp, q) outside a round, and asks the receiver
 * again while frames still wait: it posted buffers (a worker in its
 * sweeps then keeps the request back, as after a delivery: with event
 * indexes a request is good for one signal, and renewed at each it would
 * keep the receiver signalling while a backlog stands), or a worker that
 * kept the request back no longer delivers there (hs__pend_flush, which
 * asks). */
void hs__posted(struct hs__ctx *c, struct hs_port *dp, struct hs__outq *oq)
{
	unsigned ev = 0;
	bool each = c->sw->cfg.flags & HS_SW_NOTIFY_EACH;
	c->dl->dst_port = dp;
	c->dl->src_port = NULL;
	if (HS__UNLIKELY(hs__lock_take_ex(&oq->lock,
					  !(c->sw->cfg.flags & HS_SW_BUSY_POLL))))
		hs__ctr_add(&oq->tx_lock_sleeps, 1);
	drop_backlog_after_down(dp, oq);
	if (oq->bl.ent_n && (!atomic_load_explicit(&dp->link_up, memory_order_relaxed) ||
			     atomic_load_explicit(&dp->dead, memory_order_relaxed))) {
		/* the peer went away: what waited for it goes, counted (also
		 * on queues it no longer uses, which no delivery visits) */
		drop_backlog(dp, oq, 0);
	} else if (oq->bl.ent_n && !atomic_load_explicit(&dp->paused, memory_order_acquire)) {
		hs__drain_backlog(c, dp, oq, &ev, each);
		drain_posted(c, dp, oq, &ev, each);
	}
	/* also a request found standing over an empty backlog (a post or
	 * a POSTED event after one dropped while the port was paused) */
	hs__posted_withdraw(dp, oq);
	atomic_store_explicit(&oq->bl_count, oq->bl.ent_n, memory_order_relaxed);
	unlock_and_notify(c, dp, oq, ev);
}

void hs__pend_flush(struct hs__ctx *c, bool all)
{
	struct hs__pend ask[HS__PEND_MAX];
	unsigned kept = 0, n_ask = 0;
	for (unsigned i = 0; i < c->n_pend; i++) {
		struct hs__pend e = c->pend[i];
		if (!all) {
			bool keep = true;
			if (e.hit)
				e.missed = 0;
			else if (++e.missed == HS__PEND_SWEEPS)
				e.since = hs__mono_ns(); /* the clock: seldom */
			if (e.missed > HS__PEND_SWEEPS && e.missed % HS__PEND_SWEEPS == 0)
				keep = hs__mono_ns() - e.since < c->pend_ns;
			if (keep) {
				e.hit = false;
				c->pend[kept++] = e;
				continue;
			}
		}
		ask[n_ask++] = e;
	}
	/* The list is whole, and c asks at once, before anything is called:
	 * asking calls the backend (its notify), which may post buffers and
	 * call hs_port_posted, in this thread and with this context. Edited
	 * in place, the entry such a call listed again was dropped (found by
	 * review), and listed again in the flush before the worker sleeps,
	 * it waited with nothing asked (found by the next). */
	c->n_pend = kept;
	bool defer = c->defer_posted;
	c->defer_posted = false;
	struct hs__topo *t = hs__topo_get(c->sw);
	for (unsigned i = 0; i < n_ask; i++) {
		/* a port removed since is gone from the topology, or another
		 * port holds its slot (another serial): its backlog went with it */
		struct hs__pend e = ask[i];
		struct hs_port *p = e.idx < t->max_ports ? t->port[e.idx] : NULL;
		if (p && p->serial == e.serial && e.q < p->nq)
			hs__posted(c, p, &p->outq[e.q]);
	}
	c->defer_posted = defer;
}

/* End of round: the coalesced notifications of running peers. */
void hs__flush_deferred(struct hs__ctx *c)
{
	for (unsigned i = 0; i < c->n_defer; i++) {
		struct hs__notify *n = &c->defer[i];
		hs__be_notify(n->port, n->qid, n->ev);
	}
	c->n_defer = 0;
}
