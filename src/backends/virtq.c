/*
 * virtq.c - device side of split and packed virtqueues over guest memory
 * mapped from a vhost-user memory table. See virtq.h for the security
 * model: descriptors are read once into local copies, indices and
 * addresses are checked, violations stop the ring with a reason.
 *
 * Memory ordering follows the virtio spec: the available index (split) or
 * a descriptor's flags (packed) are read with acquire before the entries
 * they publish; used entries are written before the used index (split)
 * or before each used descriptor's flags (packed) with release; a full
 * fence separates publishing from reading the driver's notification
 * suppression fields.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtq.h"

static inline uint16_t ld16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline uint16_t ld16_acq(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void st16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void st16_rel(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

uint8_t *vu_uva(const struct vu_mem *m, uint64_t uva, uint64_t len)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct vu_region *r = &m->r[i];
		if (uva >= r->uva && uva - r->uva < r->size &&
		    len <= r->size - (uva - r->uva))
			return r->hva + (uva - r->uva);
	}
	return NULL;
}

uint8_t *vu_uva_part(const struct vu_mem *m, uint64_t uva, uint64_t len, uint64_t *got)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct vu_region *r = &m->r[i];
		if (uva >= r->uva && uva - r->uva < r->size) {
			uint64_t left = r->size - (uva - r->uva);
			*got = len < left ? len : left;
			return r->hva + (uva - r->uva);
		}
	}
	return NULL;
}

int vu_iotlb_lookup(const struct vu_iotlb *t, uint64_t iova, uint64_t len,
		    uint8_t perm, uint64_t *uva, uint64_t *n)
{
	uint32_t lo = 0, hi = t->n;
	while (lo < hi) { /* the first entry that ends after iova */
		uint32_t mid = (lo + hi) / 2;
		const struct vu_iotlb_entry *e = &t->e[mid];
		if (e->iova + (e->size - 1) < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == t->n || t->e[lo].iova > iova)
		return 0;
	const struct vu_iotlb_entry *e = &t->e[lo];
	if ((e->perm & perm) != perm)
		return -1;
	uint64_t off = iova - e->iova, left = e->size - off;
	*uva = e->uva + off;
	*n = len < left ? len : left;
	return 1;
}

/* Host address of [addr, addr + len) as far as it is contiguous here
 * (*got). NULL with *miss when the IOTLB lacks it (vq->miss records it),
 * NULL without when it is nowhere or not allowed. */
static uint8_t *vq_map(struct vq *vq, uint64_t addr, uint64_t len, uint8_t perm,
		       uint64_t *got, bool *miss)
{
	*miss = false;
	if (!vq->iotlb)
		return vq_gpa(vq, addr, len, got);
	uint64_t uva, n;
	int rc = vu_iotlb_lookup(vq->iotlb, addr, len, perm, &uva, &n);
	if (rc == 0) {
		*miss = true;
		vq->miss = true;
		vq->miss_iova = addr;
		vq->miss_perm = perm;
		return NULL;
	}
	return rc < 0 ? NULL : vu_uva_part(vq->mem, uva, n, got);
}

uint8_t *vq_gpa_find(struct vq *vq, uint64_t gpa, uint64_t len, uint64_t *got)
{
	const struct vu_mem *m = vq->mem;
	for (uint32_t i = 0; m && i < m->n; i++) {
		const struct vu_region *r = &m->r[i];
		uint8_t *p = vu_region_gpa(r, gpa, len, got);
		if (p) {
			vq->reg_gpa = r->gpa;
			vq->reg_size = r->size;
			vq->reg_hva = r->hva;
			return p;
		}
	}
	return NULL;
}

#ifndef NDEBUG
void vq_check_reg(const struct vq *vq)
{
	const struct vu_mem *m = vq->mem;
	for (uint32_t i = 0; m && i < m->n; i++)
		if (m->r[i].gpa == vq->reg_gpa && m->r[i].size == vq->reg_size &&
		    m->r[i].hva == vq->reg_hva)
			return;
	fprintf(stderr, "virtq: the ring's kept region [%#llx, +%#llx) is not in its "
		"memory table (changed without vq_set_mem)\n",
		(unsigned long long)vq->reg_gpa, (unsigned long long)vq->reg_size);
	abort();
}
#endif

bool vu_uva_gpa(const struct vu_mem *m, uint64_t uva, uint64_t *gpa)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct vu_region *r = &m->r[i];
		if (uva >= r->uva && uva - r->uva < r->size) {
			*gpa = r->gpa + (uva - r->uva);
			return true;
		}
	}
	return false;
}

bool vu_hva_gpa(const struct vu_mem *m, const void *p, uint64_t *gpa)
{
	uintptr_t a = (uintptr_t)p;
	for (uint32_t i = 0; i < m->n; i++) {
		const struct vu_region *r = &m->r[i];
		uintptr_t h = (uintptr_t)r->hva;
		if (a >= h && a - h < r->size) {
			*gpa = r->gpa + (a - h);
			return true;
		}
	}
	return false;
}

void vq_reset(struct vq *vq)
{
	memset(vq, 0, sizeof(*vq));
	vq->avail_wrap = vq->used_wrap = true; /* packed rings start at 1 */
}

static int broken(struct vq *vq, const char *why)
{
	if (!vq->broken)
		vq->broken = why;
	return -1;
}

/* ---- split ring fields ------------------------------------------------------ */

static inline uint16_t *split_avail_idx(struct vq *vq) { return vq->avail + 1; }
static inline uint16_t *split_avail_ring(struct vq *vq, uint16_t i)
{
	return vq->avail + 2 + (i & (vq->size - 1));
}
static inline uint16_t *split_used_event(struct vq *vq) { return vq->avail + 2 + vq->size; }
static inline uint16_t *split_used_idx(struct vq *vq) { return vq->used + 1; }
static inline uint16_t *split_avail_event(struct vq *vq)
{
	return (uint16_t *)((uint32_t *)(vq->used + 2) + 2 * vq->size);
}

/* ---- translating a descriptor into segments ------------------------------- */

struct walk {
	struct vq *vq;
	struct vq_chain *ch;
	struct hs_seg *segs;
	unsigned seg_max;
	uint32_t limit;
	bool writable;
	bool *bad;
};

/* Adds [addr, addr+len) to the chain. Returns -1 if outside guest memory
 * (or not allowed), -2 on an IOTLB miss (vq->miss). */
static int add_range(struct walk *w, uint64_t addr, uint32_t len)
{
	struct vq_chain *ch = w->ch;
	if (ch->len > w->limit || len > w->limit - ch->len) {
		*w->bad = true; /* too long: keep validating, stop mapping */
		ch->len = w->limit + 1;
		return 0;
	}
	while (len) {
		uint64_t got;
		bool miss;
		uint8_t *p = vq_map(w->vq, addr, len, w->writable ? VU_PERM_WO : VU_PERM_RO,
				    &got, &miss);
		if (!p)
			return miss ? -2 : -1;
		if (!*w->bad) {
			struct hs_seg *prev = ch->nseg ? &w->segs[ch->nseg - 1] : NULL;
			if (prev && prev->base + prev->len == p) {
				prev->len += (uint32_t)got; /* contiguous: merge */
			} else if (ch->nseg < w->seg_max) {
				w->segs[ch->nseg++] = (struct hs_seg){.base = p,
								      .len = (uint32_t)got};
			} else {
				*w->bad = true;
			}
		}
		ch->len += (uint32_t)got;
		addr += got;
		len -= (uint32_t)got;
	}
	return 0;
}

static int check_dir(struct walk *w, uint16_t flags)
{
	return !!(flags & VRING_DESC_F_WRITE) == w->writable ? 0 : -1;
}

/* An indirect table: its host address when it lies in one piece there,
 * else (across IOTLB entries or memory regions) read a descriptor at a
 * time through the translation. */
struct itab {
	const uint8_t *p;
	uint64_t addr;
	uint32_t n;
};

/* Copies descriptor k of t (16 bytes, read once). 0, -1 (outside guest
 * memory or not readable) or -2 (an IOTLB miss). */
static int itab_read(struct walk *w, const struct itab *t, uint32_t k, void *out)
{
	if (t->p) {
		vq_read_once16(out, t->p + 16 * (size_t)k);
		return 0;
	}
	uint64_t addr = t->addr + 16ull * k, left = 16;
	uint8_t *dst = out;
	while (left) {
		uint64_t got;
		bool miss;
		const uint8_t *p = vq_map(w->vq, addr, left, VU_PERM_RO, &got, &miss);
		if (!p)
			return miss ? -2 : -1;
		memcpy(dst, p, got);
		dst += got;
		addr += got;
		left -= got;
	}
	vq_read_once16(out, out); /* pieced together: opaque all the same */
	return 0;
}

/* Walks an indirect table of split-layout descriptors (packed tables use
 * the same 16-byte layout with id/flags: handled by the caller). */
static int walk_indirect_split(struct walk *w, const struct itab *t)
{
	uint32_t i = 0, count = 0;
	for (;;) {
		struct vring_desc d;
		int rc = itab_read(w, t, i, &d);
		if (rc)
			return rc == -2 ? -2 : broken(w->vq, "indirect table outside guest memory");
		if (++count > t->n)
			return broken(w->vq, "indirect descriptor chain loops");
		if (d.flags & VRING_DESC_F_INDIRECT)
			return broken(w->vq, "nested indirect descriptor table");
		if (check_dir(w, d.flags))
			return broken(w->vq, "descriptor with the wrong direction");
		rc = add_range(w, d.addr, d.len);
		if (rc)
			return rc == -2 ? -2 : broken(w->vq, "descriptor outside guest memory");
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		i = d.next;
		if (i >= t->n)
			return broken(w->vq, "indirect next index out of range");
	}
}

/* The table of an indirect descriptor: 0, -1 (the ring broke) or -2 (an
 * IOTLB miss on its first piece). */
static int indirect_table(struct walk *w, uint64_t addr, uint32_t len, uint16_t flags,
			  struct itab *t)
{
	if (!w->vq->indirect)
		return broken(w->vq, "indirect descriptor not negotiated");
	if (flags & VRING_DESC_F_NEXT)
		return broken(w->vq, "indirect descriptor with NEXT");
	if (!len || len % 16 || len / 16 > VQ_MAX_INDIRECT)
		return broken(w->vq, "bad indirect table length");
	uint64_t got = 0;
	bool miss;
	const uint8_t *p = vq_map(w->vq, addr, len, VU_PERM_RO, &got, &miss);
	if (!p)
		return miss ? -2 : broken(w->vq, "indirect table outside guest memory");
	*t = (struct itab){.p = got == len ? p : NULL, .addr = addr, .n = len / 16};
	return 0;
}

/* ---- split ---------------------------------------------------------------------- */

/* Reads the driver's available index (once per batch, not per chain: its
 * cache line is the one the driver writes) and starts loading the
 * descriptors it published, so that their cache misses overlap. */
static uint16_t split_refill(struct vq *vq)
{
	uint16_t idx = ld16_acq(split_avail_idx(vq));
	uint16_t n = (uint16_t)(idx - vq->last_avail);
	if (n > vq->size) {
		broken(vq, "available index ahead of the ring size");
		return 0;
	}
	vq->avail_shadow = idx;
	for (uint16_t k = 0; k < n && k < 64; k++) {
		uint16_t h = ld16(split_avail_ring(vq, (uint16_t)(vq->last_avail + k)));
		__builtin_prefetch(&vq->desc[h & (vq->size - 1)]);
	}
	return n;
}

static int split_walk(struct walk *w, uint16_t head);

static int split_pop(struct walk *w)
{
	struct vq *vq = w->vq;
	if (vq->avail_shadow == vq->last_avail && !split_refill(vq))
		return vq->broken ? -1 : 0;
	uint16_t head = ld16(split_avail_ring(vq, vq->last_avail));
	if (head >= vq->size)
		return broken(vq, "available head index out of range");
	vq->last_avail++;
	w->ch->id = head;
	w->ch->ndesc = 1;
	int rc = split_walk(w, head);
	if (rc == -2) { /* IOTLB miss: the chain stays in the ring */
		vq->last_avail--;
		return 0;
	}
	return rc;
}

static int split_walk(struct walk *w, uint16_t head)
{
	struct vq *vq = w->vq;
	uint16_t i = head;
	uint32_t count = 0;
	/* Fast path: one direct descriptor (how drivers post most frames and
	 * receive buffers), inside one region. */
	if (!vq->iotlb && w->seg_max &&
	    vq_split_direct(vq, head, w->writable, w->ch, w->segs, w->limit))
		return 1;
	for (;;) {
		struct vring_desc d = vq_read_desc(&vq->desc[i]); /* read once */
		if (++count > vq->size)
			return broken(vq, "descriptor chain loops");
		if (d.flags & VRING_DESC_F_INDIRECT) {
			struct itab t;
			int rc = indirect_table(w, d.addr, d.len, d.flags, &t);
			if (!rc)
				rc = walk_indirect_split(w, &t);
			return rc == -2 ? -2 : rc ? -1 : 1;
		}
		if (check_dir(w, d.flags))
			return broken(vq, "descriptor with the wrong direction");
		int rc = add_range(w, d.addr, d.len);
		if (rc)
			return rc == -2 ? -2 : broken(vq, "descriptor outside guest memory");
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 1;
		i = d.next;
		if (i >= vq->size)
			return broken(vq, "next descriptor index out of range");
	}
}

/* ---- packed ---------------------------------------------------------------------- */

static int packed_pop(struct walk *w)
{
	struct vq *vq = w->vq;
	uint16_t slot = vq->last_avail;
	bool wrap = vq->avail_wrap;
	uint16_t flags = ld16_acq(&vq->pdesc[slot].flags);
	if (!vq_packed_avail(flags, wrap))
		return 0;
	uint32_t count = 0;
	for (;;) {
		struct vring_packed_desc d;
		vq_read_once16(&d, (const void *)&vq->pdesc[slot]);
		if (++count > vq->size)
			return broken(vq, "packed descriptor chain longer than the ring");
		w->ch->id = d.id; /* the buffer id of a chain is in its last */
		int rc;
		if (d.flags & VRING_DESC_F_INDIRECT) {
			struct itab t;
			if ((rc = indirect_table(w, d.addr, d.len, d.flags, &t)))
				return rc == -2 ? 0 : -1; /* a miss: nothing consumed yet */
			for (uint32_t k = 0; k < t.n; k++) {
				struct vring_packed_desc e;
				if ((rc = itab_read(w, &t, k, &e)))
					return rc == -2 ? 0 : broken(vq, "indirect table outside guest memory");
				if (e.flags & VRING_DESC_F_INDIRECT)
					return broken(vq, "nested indirect descriptor table");
				if (check_dir(w, e.flags))
					return broken(vq, "descriptor with the wrong direction");
				if ((rc = add_range(w, e.addr, e.len)))
					return rc == -2 ? 0 : broken(vq, "descriptor outside guest memory");
			}
		} else {
			if (check_dir(w, d.flags))
				return broken(vq, "descriptor with the wrong direction");
			if ((rc = add_range(w, d.addr, d.len)))
				return rc == -2 ? 0 : broken(vq, "descriptor outside guest memory");
		}
		if (++slot == vq->size) {
			slot = 0;
			wrap = !wrap;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
	}
	w->ch->ndesc = (uint16_t)count;
	vq->last_avail = slot;
	vq->avail_wrap = wrap;
	return 1;
}

/* ---- common ---------------------------------------------------------------------- */

bool vq_has_avail(struct vq *vq)
{
	if (vq->broken || !vq->size || vq->miss) /* a miss waits for its UPDATE */
		return false;
	if (vq->packed)
		return vq_packed_avail(ld16_acq(&vq->pdesc[vq->last_avail].flags),
				    vq->avail_wrap);
	return ld16_acq(split_avail_idx(vq)) != vq->last_avail;
}

int vq_pop_slow(struct vq *vq, bool writable, struct vq_chain *ch, struct hs_seg *segs,
		unsigned seg_max, uint32_t limit, bool *bad)
{
	*bad = false;
	if (vq->broken)
		return -1;
	if (vq->miss)
		return 0;
	*ch = (struct vq_chain){.writable = writable};
	struct walk w = {.vq = vq, .ch = ch, .segs = segs, .seg_max = seg_max,
			 .limit = limit, .writable = writable, .bad = bad};
	return vq->packed ? packed_pop(&w) : split_pop(&w);
}

void vq_prefetch_used(const struct vq *vq, unsigned n)
{
	if (!vq->size || !n)
		return;
	if (!vq->packed) {
		uint16_t first = (uint16_t)(vq->used_idx + vq->pending);
		/* 8-byte elements: one line per 8 of them, plus the one the
		 * first starts in. */
		for (unsigned k = 0; k < n + 8; k += 8) {
			uint16_t i = (uint16_t)(first + (k < n ? k : n - 1));
			hsb_prefetch_w(vq_split_used_elem(vq, i));
		}
		hsb_prefetch_w(vq->used); /* flags and the used index */
		return;
	}
	for (unsigned k = 0; k < n + 4; k += 4) {
		unsigned slot = vq->used_idx + (k < n ? k : n - 1);
		hsb_prefetch_w(&vq->pdesc[slot % vq->size]);
	}
}

void vq_set_base(struct vq *vq, uint16_t avail, bool avail_wrap)
{
	vq->last_avail = vq->used_idx = vq->avail_shadow = avail;
	vq->avail_wrap = vq->used_wrap = avail_wrap;
}

void vq_unpop(struct vq *vq, const struct vq_chain *ch, unsigned n)
{
	for (unsigned i = n; i-- > 0;) {
		if (!vq->packed) {
			vq->last_avail--;
			continue;
		}
		if (vq->last_avail >= ch[i].ndesc) {
			vq->last_avail = (uint16_t)(vq->last_avail - ch[i].ndesc);
		} else {
			vq->last_avail = (uint16_t)(vq->last_avail + vq->size - ch[i].ndesc);
			vq->avail_wrap = !vq->avail_wrap;
		}
	}
}

void vq_push_packed(struct vq *vq, uint16_t id, uint16_t ndesc, bool writable, uint32_t len)
{
	struct vring_packed_desc *d = &vq->pdesc[vq->used_idx];
	__atomic_store_n(&d->id, id, __ATOMIC_RELAXED);
	__atomic_store_n(&d->len, len, __ATOMIC_RELAXED);
	uint16_t flags = vq->used_wrap ? (VRING_PACKED_F_AVAIL | VRING_PACKED_F_USED) : 0;
	if (writable)
		flags |= VRING_DESC_F_WRITE;
	st16_rel(&d->flags, flags);
	if (vq->log)
		vu_log_gpa(vq->log, vq->log_used + 16ull * vq->used_idx, 16);
	vq->used_idx = (uint16_t)(vq->used_idx + ndesc);
	if (vq->used_idx >= vq->size) {
		vq->used_idx = (uint16_t)(vq->used_idx - vq->size);
		vq->used_wrap = !vq->used_wrap;
	}
	vq->pending++;
}

/* Marks the used elements [from, from + n) and the used index dirty. */
static void split_log_used(struct vq *vq, uint16_t from, uint16_t n)
{
	uint16_t first = from & (vq->size - 1);
	uint16_t till_end = (uint16_t)(vq->size - first);
	uint16_t a = n < till_end ? n : till_end;
	vu_log_gpa(vq->log, vq->log_used + 4 + 8ull * first, 8ull * a);
	if (n > a)
		vu_log_gpa(vq->log, vq->log_used + 4, 8ull * (n - a));
	vu_log_gpa(vq->log, vq->log_used + 2, 2);
}

/* vring_need_event: the driver wants an event when the used index passes
 * `event`, counting from `old` to `new`. */
static inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool vq_flush(struct vq *vq)
{
	if (!vq->pending)
		return false;
	bool valid = vq->signalled_valid;
	uint16_t old = vq->signalled;
	if (!vq->packed) {
		uint16_t new_idx = (uint16_t)(vq->used_idx + vq->pending);
		st16_rel(split_used_idx(vq), new_idx);
		if (vq->log)
			split_log_used(vq, vq->used_idx, vq->pending);
		vq->used_idx = new_idx;
		vq->pending = 0;
		vq->signalled = new_idx;
		vq->signalled_valid = true;
		atomic_thread_fence(memory_order_seq_cst);
		if (!vq->event_idx)
			return !(ld16(vq->avail) & VRING_AVAIL_F_NO_INTERRUPT);
		return !valid || need_event(ld16(split_used_event(vq)), new_idx, old);
	}
	vq->pending = 0;
	uint16_t new_idx = vq->used_idx;
	vq->signalled = new_idx;
	vq->signalled_valid = true;
	atomic_thread_fence(memory_order_seq_cst);
	uint16_t flags = ld16(&vq->drv_evt->flags);
	if (flags != VRING_EVENT_F_DESC || !vq->event_idx)
		return flags != VRING_EVENT_F_DISABLE;
	if (!valid)
		return true;
	uint16_t off_wrap = ld16(&vq->drv_evt->off_wrap);
	uint16_t off = off_wrap & 0x7fff;
	if (new_idx <= old)
		old = (uint16_t)(old - vq->size);
	if (!!(off_wrap >> 15) != vq->used_wrap)
		off = (uint16_t)(off - vq->size);
	return need_event(off, new_idx, old);
}

bool vq_set_kicks(struct vq *vq, bool enable)
{
	if (vq->broken || !vq->size)
		return false;
	if (!vq->packed) {
		if (vq->event_idx) {
			/* The driver kicks when its index crosses this one as it
			 * publishes: ask for the next thing it publishes (what
			 * Linux's vhost writes: the index it read last), not for
			 * what we have taken so far, which may lie behind it
			 * (the driver would then kick only 65536 posts later). */
			if (enable) {
				st16(split_avail_event(vq), ld16_acq(split_avail_idx(vq)));
				if (vq->log)
					vu_log_gpa(vq->log, vq->log_used + 4 + 8ull * vq->size, 2);
			}
		} else {
			st16(vq->used, enable ? 0 : VRING_USED_F_NO_NOTIFY);
			if (vq->log)
				vu_log_gpa(vq->log, vq->log_used, 2);
		}
	} else {
		st16(&vq->dev_evt->flags, enable ? VRING_EVENT_F_ENABLE
						 : VRING_EVENT_F_DISABLE);
		if (vq->log)
			vu_log_gpa(vq->log, vq->log_evt + 2, 2);
	}
	if (!enable)
		return false;
	atomic_thread_fence(memory_order_seq_cst);
	return vq_has_avail(vq);
}
