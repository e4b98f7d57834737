/*
 * virtq.h - guest memory and virtqueues (split and packed), device side.
 *
 * Security model: everything in guest memory is written by an untrusted
 * guest, possibly while we read it. Every descriptor is copied out of the
 * ring once (virtq_read_*) and only the copy is validated and used; indices
 * are checked against the ring size; every address range is translated
 * through the memory table and must lie inside a mapped region; chains are
 * bounded by the ring size (loops), indirect tables by their own length and
 * may not nest. A violation sets vq->broken (a reason string) and the ring
 * is not touched again until the front-end resets it; it never aborts.
 *
 * Threads: the control plane configures a virtqueue while the port is
 * quiesced; the data path then uses it from one thread at a time (the
 * ingress queue owner for a transmit ring, the egress lock holder for a
 * receive ring).
 */
#ifndef HS_VIRTQ_H
#define HS_VIRTQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hyperswitch/types.h"
#include "prefetch.h"

/* ---- guest memory ---------------------------------------------------------- */

#define VU_MAX_REGIONS 32

struct vu_region {
	uint64_t gpa, size, uva, mmap_off;
	uint8_t *hva;    /* where gpa is mapped here */
	void *map;       /* the reservation: guard, file mapping, guard */
	size_t map_len;
	uint32_t refs;   /* ADD_MEM_REG of an identical region (one per
			  * vhost device of a multiqueue QEMU) adds a ref */
	int fault_slot;  /* registration with the SIGBUS handler (vu_mem.c) */
};

struct vu_mem {
	uint32_t n;
	struct vu_region r[VU_MAX_REGIONS];
};

/* The host address of gpa if region r holds it, with in *got how many of
 * the len bytes are there; NULL otherwise. */
static inline uint8_t *vu_region_gpa(const struct vu_region *r, uint64_t gpa,
				     uint64_t len, uint64_t *got)
{
	if (gpa >= r->gpa && gpa - r->gpa < r->size) {
		uint64_t left = r->size - (gpa - r->gpa);
		*got = len < left ? len : left;
		return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

/* Translates a front-end virtual address range (vring addresses). */
uint8_t *vu_uva(const struct vu_mem *m, uint64_t uva, uint64_t len);
/* Like vq_gpa, by front-end virtual address: how much is contiguous. */
uint8_t *vu_uva_part(const struct vu_mem *m, uint64_t uva, uint64_t len, uint64_t *got);

/* ---- device IOTLB (VIRTIO_F_IOMMU_PLATFORM) -----------------------------------
 *
 * With a virtual IOMMU every address the guest gives the device (ring
 * areas, descriptors) is an I/O virtual address. The front-end tells the
 * back-end what an IOVA range maps to (front-end virtual address, like a
 * ring address) and with which permission (IOTLB_MSG UPDATE), withdraws
 * it (INVALIDATE), and answers a miss the back-end reports. The table is
 * kept sorted by IOVA, entries never overlap; the control plane changes
 * it only while the port is quiesced, the data path reads it. */
#define VU_IOTLB_MAX 4096
#define VU_PERM_RO 1 /* the device reads */
#define VU_PERM_WO 2 /* the device writes */

struct vu_iotlb_entry {
	uint64_t iova, size, uva;
	uint8_t perm;
};

struct vu_iotlb {
	uint32_t n;
	struct vu_iotlb_entry e[VU_IOTLB_MAX];
};

/* Looks iova up: 1 with the front-end virtual address and how many of
 * len bytes the entry covers (*n), 0 if no entry holds it (a miss), -1
 * if one does without the permission asked. */
int vu_iotlb_lookup(const struct vu_iotlb *t, uint64_t iova, uint64_t len,
		    uint8_t perm, uint64_t *uva, uint64_t *n);

/* The guest physical address of a front-end virtual address, or of a
 * host address inside a mapped region; false if in none. */
bool vu_uva_gpa(const struct vu_mem *m, uint64_t uva, uint64_t *gpa);
bool vu_hva_gpa(const struct vu_mem *m, const void *p, uint64_t *gpa);

/* ---- dirty page log (live migration) ----------------------------------------
 *
 * While the front-end migrates the guest (VHOST_F_LOG_ALL), every byte the
 * switch writes into guest memory marks its 4 KiB guest page in a bitmap
 * the front-end shares (SET_LOG_BASE) and clears as it copies pages: bit
 * (gpa / 4096) % 8 of byte gpa / 4096 / 8. A bit is set (atomically: the
 * front-end clears bits concurrently) after the bytes it covers were
 * written, so that a page the front-end copies after clearing its bit
 * holds them. A page beyond the bitmap (or any page, with an empty log:
 * LOG_ALL without one) cannot be marked: it is counted
 * (dirty_log_overflow). */
#define VU_LOG_PAGE_SHIFT 12

struct vu_log {
	uint8_t *bits;               /* NULL: no log */
	uint64_t len;                /* bytes of bitmap */
	_Atomic uint64_t *overflow;  /* pages that were beyond it */
};

static inline void vu_log_gpa(const struct vu_log *l, uint64_t gpa, uint64_t len)
{
	if (!len)
		return;
	uint64_t page = gpa >> VU_LOG_PAGE_SHIFT;
	uint64_t last = (gpa + (len - 1)) >> VU_LOG_PAGE_SHIFT;
	if (gpa + (len - 1) < gpa)
		last = UINT64_MAX >> VU_LOG_PAGE_SHIFT;
	for (; page <= last; page++) {
		if (page / 8 >= l->len) {
			atomic_fetch_add_explicit(l->overflow, last - page + 1,
						  memory_order_relaxed);
			return;
		}
		__atomic_fetch_or(&l->bits[page / 8], (uint8_t)(1u << (page % 8)),
				  __ATOMIC_RELEASE);
	}
}

/* Marks a written range given by its host address (a segment of a
 * translated chain: inside one region). */
static inline void vu_log_hva(const struct vu_log *l, const struct vu_mem *m,
			      const void *p, uint64_t len)
{
	uint64_t gpa;
	if (vu_hva_gpa(m, p, &gpa))
		vu_log_gpa(l, gpa, len);
	else /* cannot happen for a translated chain; never silent */
		atomic_fetch_add_explicit(l->overflow, 1, memory_order_relaxed);
}

/* ---- rings ------------------------------------------------------------------ */

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_PACKED_F_AVAIL (1 << 7)
#define VRING_PACKED_F_USED (1 << 15)
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_EVENT_F_ENABLE 0
#define VRING_EVENT_F_DISABLE 1
#define VRING_EVENT_F_DESC 2

#define VQ_MAX_SIZE 32768
#define VQ_MAX_INDIRECT 4096 /* descriptors in one indirect table */

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_packed_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t id, flags;
};

struct vring_packed_event {
	uint16_t off_wrap, flags;
};

/* Split ring layout: avail = {flags, idx, ring[size], used_event};
 * used = {flags, idx, {id, len}[size], avail_event}. */
struct vq {
	/* configuration (control plane, while quiesced) */
	uint16_t size;
	bool packed, event_idx, indirect;
	struct vring_desc *desc;               /* split */
	uint16_t *avail;                       /* split: flags, idx, ring... */
	uint16_t *used;                        /* split: flags, idx, ring... */
	struct vring_packed_desc *pdesc;       /* packed */
	struct vring_packed_event *drv_evt;    /* packed: driver area */
	struct vring_packed_event *dev_evt;    /* packed: device area */
	const struct vu_mem *mem;
	/* dirty logging: NULL when off; the guest physical addresses of the
	 * areas the device writes: split: the used ring; packed: the
	 * descriptor ring (log_used) and the device event area (log_evt) */
	const struct vu_log *log;
	uint64_t log_used, log_evt;
	/* vIOMMU: descriptor addresses are IOVAs translated through this
	 * table (NULL: guest physical addresses). A chain that needs an IOVA
	 * the table lacks is left in the ring and `miss` says which (the
	 * back-end asks the front-end; an UPDATE clears it). */
	const struct vu_iotlb *iotlb;
	bool miss;
	uint64_t miss_iova;
	uint8_t miss_perm;

	/* data path */
	uint16_t last_avail;  /* split: free running; packed: slot */
	uint16_t avail_shadow; /* split: the available index last read */
	bool avail_wrap;
	uint16_t used_idx;    /* split: free running; packed: slot */
	bool used_wrap;
	uint16_t signalled;   /* used index at the last flush (vring_need_event's old) */
	bool signalled_valid;
	uint16_t pending;     /* pushed but not yet published (split) */
	/* the region of the last translation (vq_gpa): a copy of its bounds,
	 * so that a descriptor in it is checked against two numbers in the
	 * ring's own cache lines instead of through the memory table. Empty
	 * (size 0) after vq_reset and vq_set_mem: the copy is only ever of a
	 * region of the table the ring was translated with, and the control
	 * plane changes that table only with the port quiesced. */
	uint64_t reg_gpa, reg_size;
	uint8_t *reg_hva;
	const char *broken;   /* why the ring was stopped, or NULL */
};

/* One chain popped from the available ring. */
struct vq_chain {
	uint16_t id;     /* split: head index; packed: buffer id */
	uint16_t ndesc;  /* packed: ring slots it used (1 if indirect) */
	uint32_t len;    /* bytes it describes */
	uint16_t nseg;   /* segments it was translated into */
	bool writable;   /* device-writable (a receive buffer) */
};

/* Where the ring's translations look (the table in force; vu_ring.c, while
 * quiesced): forgets the region kept from the table before. */
static inline void vq_set_mem(struct vq *vq, const struct vu_mem *m)
{
	vq->mem = m;
	vq->reg_gpa = vq->reg_size = 0;
	vq->reg_hva = NULL;
}

/* vq_gpa's search of the whole table (out of line): keeps the region
 * found. */
uint8_t *vq_gpa_find(struct vq *vq, uint64_t gpa, uint64_t len, uint64_t *got);

/* Debug builds check, at every use of the kept region, that it is one of
 * the table in force: a path that changed the table or a region without
 * vq_set_mem (or vq_reset) aborts there instead of translating through
 * memory the table no longer maps. Release builds compile it away. */
#ifndef NDEBUG
void vq_check_reg(const struct vq *vq);
#define VQ_CHECK_REG(vq) vq_check_reg(vq)
#else
#define VQ_CHECK_REG(vq) ((void)0)
#endif

/* Translates a guest physical range: returns the host address of gpa and,
 * in *got, how many of the len bytes are contiguous there (a range may
 * continue in another region); NULL if gpa is in no region. The region
 * of the last translation is tried first: a ring's buffers mostly lie in
 * one region, and a front-end with several (DPDK's virtio-user registers
 * one per memory segment) paid a comparison per region before its
 * buffers' for every descriptor. */
static inline uint8_t *vq_gpa(struct vq *vq, uint64_t gpa, uint64_t len, uint64_t *got)
{
	uint64_t off = gpa - vq->reg_gpa;
	if (__builtin_expect(off < vq->reg_size, 1)) {
		VQ_CHECK_REG(vq);
		uint64_t left = vq->reg_size - off;
		*got = len < left ? len : left;
		return vq->reg_hva + off;
	}
	return vq_gpa_find(vq, gpa, len, got);
}

/* Prefetches (for writing) the used-ring space the next n pushes write. */
void vq_prefetch_used(const struct vq *vq, unsigned n);

/* Sets a virtqueue to its reset state (not configured). */
void vq_reset(struct vq *vq);

/* Whether chains are waiting (an index read; no side effect). */
bool vq_has_avail(struct vq *vq);

/* Pops the next available chain, translating it into at most seg_max
 * segments of guest memory; `writable` says whether the device writes it
 * (receive) or reads it (transmit): every descriptor must agree.
 * Returns 1 with the chain; 1 with *bad set if it needs more than seg_max
 * segments or `limit` bytes (it was consumed: complete it with
 * vq_push(len 0)); 0 if none is available (or, with vq->miss set, the
 * next one needs an IOVA the IOTLB lacks: it stays in the ring); -1 if
 * the ring is broken (vq->broken says why). *bad means nothing unless 1
 * is returned. vq_pop (below) is the same, with the common case inline. */
int vq_pop_slow(struct vq *vq, bool writable, struct vq_chain *ch, struct hs_seg *segs,
		unsigned seg_max, uint32_t limit, bool *bad);

/* Copies a split descriptor out of the ring: two relaxed 64-bit loads
 * (rings are 16-byte aligned, vu_ring.c), so that no compiler may read
 * the guest's memory again after the copy was checked. */
static inline struct vring_desc vq_read_desc(const struct vring_desc *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	uint64_t v[2] = {__atomic_load_n(&w[0], __ATOMIC_RELAXED),
			 __atomic_load_n(&w[1], __ATOMIC_RELAXED)};
	struct vring_desc d;
	memcpy(&d, v, sizeof(d));
	return d;
}

/* Copies 16 bytes of a descriptor out of guest memory that need not be
 * aligned (an indirect table's, or a packed ring's), read once: the
 * values pass through an empty asm that the compiler cannot see through,
 * so, as for vq_read_desc, no compiler may read the guest's memory again
 * in place of the copy once it was checked (the guest may change it
 * meanwhile). */
static inline void vq_read_once16(void *out, const void *p)
{
	uint64_t w[2];
	memcpy(w, p, sizeof(w));
	__asm__("" : "+r"(w[0]), "+r"(w[1]));
	memcpy(out, w, sizeof(w));
}

_Static_assert(sizeof(struct vring_desc) == 16 && sizeof(struct vring_packed_desc) == 16,
	       "vq_read_desc and vq_read_once16 copy 16-byte descriptors");
_Static_assert(sizeof(struct hs_seg) == 24,
	       "vq_split_direct fills a segment field by field: add new fields there");

/* The common chain: the descriptor at `head` (< size) alone, direct, in
 * the right direction, 1 to `limit` bytes, inside one region, on a ring
 * without an IOMMU. Fills ch and segs[0] (field by field: a compound
 * literal of the segment became a `rep stos`) and returns true; false
 * changes nothing but the ring's kept region (vq_gpa). The one place
 * this is decided, for the inline vq_pop and the slow path's walk alike. */
static inline __attribute__((always_inline)) bool
vq_split_direct(struct vq *vq, uint16_t head, bool writable, struct vq_chain *ch,
		struct hs_seg *segs, uint32_t limit)
{
	struct vring_desc d = vq_read_desc(&vq->desc[head]);
	uint64_t got, off = d.addr - vq->reg_gpa;
	uint8_t *p;
	if ((d.flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT)) ||
	    !!(d.flags & VRING_DESC_F_WRITE) != writable || !d.len || d.len > limit)
		return false;
	/* vq_gpa, with the whole descriptor in the kept region as one test
	 * (both halves: off alone may have wrapped below the region). Through
	 * vq_gpa and `got != d.len` it cost 5 instructions a pop more. */
	if (__builtin_expect(off < vq->reg_size && d.len <= vq->reg_size - off, 1)) {
		VQ_CHECK_REG(vq);
		p = vq->reg_hva + off;
	} else if (!(p = vq_gpa_find(vq, d.addr, d.len, &got)) || got != d.len)
		return false;
	ch->id = head;
	ch->ndesc = 1;
	ch->len = d.len;
	ch->nseg = 1;
	ch->writable = writable;
	segs[0].base = p;
	segs[0].len = d.len;
	segs[0].flags = 0;
	segs[0].ref = 0;
	return true;
}

/* The inline half of vq_pop, without popping: for a split ring without an
 * IOMMU whose available index was already read (vq_pop_slow reads it, a
 * batch at a time), whether the next chain is one vq_split_direct takes
 * (how drivers post most frames and receive buffers), filling ch and
 * segs[0] if so. vq_take pops it; a caller that finds it unfit (a
 * receive buffer too small for the frame) leaves it in the ring. Needs
 * room for one segment. */
static inline __attribute__((always_inline)) bool
vq_peek_direct(struct vq *vq, bool writable, struct vq_chain *ch, struct hs_seg *segs,
	       uint32_t limit)
{
	if (!__builtin_expect(!vq->packed && !vq->iotlb && !vq->broken && !vq->miss &&
			      vq->avail_shadow != vq->last_avail, 1))
		return false;
	uint16_t head = __atomic_load_n(vq->avail + 2 + (vq->last_avail & (vq->size - 1)),
					__ATOMIC_RELAXED);
	return head < vq->size && vq_split_direct(vq, head, writable, ch, segs, limit);
}

/* Pops the chain vq_peek_direct found. */
static inline void vq_take(struct vq *vq)
{
	vq->last_avail++;
}

/* Inline (forced: GCC kept an out-of-line copy per unit): the common chain
 * (vq_peek_direct) here; anything else, every error included, goes to
 * vq_pop_slow, which reads the descriptor again. */
static inline __attribute__((always_inline)) int
vq_pop(struct vq *vq, bool writable, struct vq_chain *ch, struct hs_seg *segs,
       unsigned seg_max, uint32_t limit, bool *bad)
{
	if (__builtin_expect(seg_max != 0, 1) &&
	    vq_peek_direct(vq, writable, ch, segs, limit)) {
		vq_take(vq);
		*bad = false;
		return 1;
	}
	return vq_pop_slow(vq, writable, ch, segs, seg_max, limit, bad);
}

/* Whether a packed descriptor's flags make it available in the current
 * wrap (the driver's side of the ring). */
static inline bool vq_packed_avail(uint16_t flags, bool wrap)
{
	return !!(flags & VRING_PACKED_F_AVAIL) == wrap &&
	       !!(flags & VRING_PACKED_F_USED) != wrap;
}

/* Whether the ring certainly has no chain to pop now: what a poll of an
 * empty ring asks before anything else, with one load (the available
 * index, or the next packed descriptor's flags) after the batch read
 * earlier is used up. False whenever vq_pop may have more to say: chains
 * waiting, an IOTLB miss, a broken ring. Validates nothing, so decides
 * nothing else: a ring found not drained is popped as before. */
static inline __attribute__((always_inline)) bool vq_drained(const struct vq *vq)
{
	if (vq->broken || vq->miss || !vq->size)
		return false;
	if (vq->packed)
		return !vq_packed_avail(__atomic_load_n(&vq->pdesc[vq->last_avail].flags,
							__ATOMIC_ACQUIRE), vq->avail_wrap);
	return vq->avail_shadow == vq->last_avail &&
	       __atomic_load_n(vq->avail + 1, __ATOMIC_ACQUIRE) == vq->last_avail;
}

/* Sets the ring's position (SET_VRING_BASE). */
void vq_set_base(struct vq *vq, uint16_t avail, bool avail_wrap);

/* Gives back the last n popped chains (newest last in ch[]). */
void vq_unpop(struct vq *vq, const struct vq_chain *ch, unsigned n);

/* vq_push_id of a packed ring (out of line). */
void vq_push_packed(struct vq *vq, uint16_t id, uint16_t ndesc, bool writable, uint32_t len);

/* Used element i (free running) of a split ring: {id, len}. */
static inline uint32_t *vq_split_used_elem(const struct vq *vq, uint16_t i)
{
	return (uint32_t *)(vq->used + 2) + 2 * (i & (vq->size - 1));
}

/* Returns a chain to the driver with `len` bytes written; visible after
 * vq_flush. vq_push_id takes the chain's fields themselves: a caller that
 * has them packed in a token would otherwise build a vq_chain on its stack
 * and have it read back wider than it was written (a store-forwarding
 * stall per frame). Inline for a split ring (its used element: two
 * stores), twice a frame. */
static inline __attribute__((always_inline)) void
vq_push_id(struct vq *vq, uint16_t id, uint16_t ndesc, bool writable, uint32_t len)
{
	if (__builtin_expect(!vq->packed, 1)) {
		uint32_t *e = vq_split_used_elem(vq, (uint16_t)(vq->used_idx + vq->pending));
		__atomic_store_n(&e[0], id, __ATOMIC_RELAXED);
		__atomic_store_n(&e[1], len, __ATOMIC_RELAXED);
		vq->pending++;
		return;
	}
	vq_push_packed(vq, id, ndesc, writable, len);
}

static inline void vq_push(struct vq *vq, const struct vq_chain *ch, uint32_t len)
{
	vq_push_id(vq, ch->id, ch->ndesc, ch->writable, len);
}

/* Publishes pushed chains; returns true if the driver asked to be
 * notified (interrupt) for them. */
bool vq_flush(struct vq *vq);

/* Enables or suppresses the driver's kicks; when enabling returns true if
 * chains are already available (the caller must not sleep then). */
bool vq_set_kicks(struct vq *vq, bool enable);

#endif /* HS_VIRTQ_H */
