/*
 * fdb.h - private interface of the forwarding table (see fdb.c).
 */
#ifndef HS_CORE_FDB_H
#define HS_CORE_FDB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define HS__FDB_WAYS 4
#define HS__FDB_VALID (1ull << 63)
#define HS__FDB_STATIC 0x80000000u /* in hs__fdb_ent.port */
#define HS__FDB_PORT_MASK 0xffffu

/* One entry. Readers load key, then port/stamp, then key again: a changed
 * key means a writer reused the slot meanwhile and the read is retried. */
struct hs__fdb_ent {
	_Atomic uint64_t key;    /* HS__FDB_VALID | vid << 48 | mac, 0: empty */
	_Atomic uint32_t port;   /* port index | HS__FDB_STATIC */
	_Atomic uint32_t stamp;  /* switch seconds when last refreshed */
};

struct hs__fdb_bucket {
	struct hs__fdb_ent e[HS__FDB_WAYS];
} __attribute__((aligned(64)));

struct hs__fdb {
	struct hs__fdb_bucket *b;
	uint64_t mask;             /* buckets - 1 */
	uint64_t seed;             /* random per table: no chosen collisions */
	_Atomic uint32_t move_seq; /* odd while entries are displaced */

	pthread_mutex_t lock;      /* writers: learn (slow path), age, admin */
	uint32_t capacity, count, n_static;
	uint32_t aging_s, port_limit;
	uint64_t cursor;           /* eviction sampling position */

	/* counters, written under lock */
	_Atomic uint64_t learned, moved, aged, evicted, static_refused;
};

struct hs_switch;
struct hs_port;

int hs__fdb_init(struct hs__fdb *f, uint32_t capacity, uint32_t aging_s,
		 uint32_t port_limit);
void hs__fdb_fini(struct hs__fdb *f);

static inline uint64_t hs__fdb_key(uint16_t vid, uint64_t mac48)
{
	return HS__FDB_VALID | ((uint64_t)vid << 48) | mac48;
}

/* One 64x64->128 multiply by a random odd constant, folded, then the
 * high half folded into the low: the seed makes collisions unguessable
 * from outside. The last fold is for the buckets (h's low bits, and bits
 * 32 up): MACs handed out in sequence (a VM pool's 52:54:00:..., whose
 * last bytes vary, key bits 32-47) filled a third of the first buckets a
 * uniform hash would, so static entries were refused at 15% of the
 * capacity (a review). */
static inline uint64_t hs__fdb_hash(const struct hs__fdb *f, uint64_t key)
{
	__uint128_t m = (__uint128_t)(key ^ f->seed) * 0x9e3779b97f4a7c15ull;
	uint64_t h = (uint64_t)(m >> 64) ^ (uint64_t)m;
	return h ^ (h >> 29);
}

static inline struct hs__fdb_bucket *hs__fdb_b1(const struct hs__fdb *f,
						uint64_t h)
{
	return &f->b[h & f->mask];
}

static inline struct hs__fdb_bucket *hs__fdb_b2(const struct hs__fdb *f,
						uint64_t h)
{
	return &f->b[(h >> 32) & f->mask];
}

static inline void hs__fdb_prefetch(const struct hs__fdb *f, uint64_t h)
{
	__builtin_prefetch(hs__fdb_b1(f, h));
}

/* Lock-free lookup; returns the entry (whose port/stamp the caller reads
 * with hs__fdb_read) or NULL. */
static inline struct hs__fdb_ent *hs__fdb_probe(const struct hs__fdb *f,
						uint64_t key, uint64_t h)
{
	struct hs__fdb_bucket *b = hs__fdb_b1(f, h);
	for (int i = 0; i < HS__FDB_WAYS; i++)
		if (atomic_load_explicit(&b->e[i].key, memory_order_acquire) == key)
			return &b->e[i];
	b = hs__fdb_b2(f, h);
	for (int i = 0; i < HS__FDB_WAYS; i++)
		if (atomic_load_explicit(&b->e[i].key, memory_order_acquire) == key)
			return &b->e[i];
	return NULL;
}

/* Looks key (whose hash is h) up; on a hit returns true with the entry's
 * port word and stamp. Retries while entries are being displaced (a
 * seqlock: move_seq odd, or changed since the start), so a present key
 * is never missed, and a hit is never a slot a walk was rewriting (its
 * key with another entry's port, or one the walk's undo put back). */
static inline bool hs__fdb_lookup_h(const struct hs__fdb *f, uint64_t key,
				    uint64_t h, uint32_t *port, uint32_t *stamp)
{
	for (;;) {
		uint32_t seq = atomic_load_explicit(&f->move_seq,
						    memory_order_acquire);
		struct hs__fdb_ent *e = hs__fdb_probe(f, key, h);
		uint32_t p = 0, s = 0;
		bool hit = false;
		if (e) {
			p = atomic_load_explicit(&e->port, memory_order_acquire);
			s = atomic_load_explicit(&e->stamp, memory_order_relaxed);
		}
		atomic_thread_fence(memory_order_acquire);
		/* a slot reused outside a walk changes its key */
		if (e)
			hit = atomic_load_explicit(&e->key, memory_order_relaxed) == key;
		uint32_t seq2 = atomic_load_explicit(&f->move_seq,
						     memory_order_relaxed);
		if (!(seq & 1) && seq == seq2 && (hit || !e)) {
			if (hit) {
				*port = p;
				*stamp = s;
			}
			return hit;
		}
		hs__cpu_relax();
	}
}

static inline bool hs__fdb_lookup(const struct hs__fdb *f, uint64_t key,
				  uint32_t *port, uint32_t *stamp)
{
	return hs__fdb_lookup_h(f, key, hs__fdb_hash(f, key), port, stamp);
}

/* Learning: called for every frame with its (vid, source) key and hash.
 * The fast path reads one entry and writes it only once per second (stamp
 * refresh); new MACs, moves and limits take the slow path, which re-checks
 * everything under the lock. The fast path may read a slot a writer is
 * reusing or a cuckoo walk is rewriting: the worst outcome is a needless
 * slow path, one refresh skipped or given to the entry that takes the
 * slot, or a move seen one frame late, so it does without the seqlock
 * of lookups. */
void hs__fdb_learn_slow(struct hs_switch *sw, uint64_t key, struct hs_port *p,
			uint32_t now);

/* The fast path alone: true when the key is already behind p (learned:
 * its stamp refreshed; or static), false when learning needs the slow
 * path, which this does not take. */
static inline bool hs__fdb_learn_fast(struct hs__fdb *f, uint64_t key, uint64_t h,
				      const struct hs_port *p, uint32_t now)
{
	struct hs__fdb_ent *e = hs__fdb_probe(f, key, h);
	if (HS__UNLIKELY(e == NULL))
		return false;
	uint32_t w = atomic_load_explicit(&e->port, memory_order_relaxed);
	if (HS__LIKELY(w == p->index)) { /* learned, not static */
		if (HS__UNLIKELY(atomic_load_explicit(&e->stamp, memory_order_relaxed) != now))
			atomic_store_explicit(&e->stamp, now, memory_order_relaxed);
		return true;
	}
	return w == (p->index | HS__FDB_STATIC);
}

static inline void hs__fdb_learn(struct hs_switch *sw, struct hs__fdb *f,
				 uint64_t key, uint64_t h, struct hs_port *p,
				 uint32_t now)
{
	if (!hs__fdb_learn_fast(f, key, h, p, now))
		hs__fdb_learn_slow(sw, key, p, now);
}

/* Control plane (fdb.c): removal of a port's entries, aging. */
unsigned hs__fdb_flush_port(struct hs_switch *sw, struct hs_port *p,
			    bool include_static);
/* Removes p's learned entries while its link is down (any thread; the
 * table's lock only). */
unsigned hs__fdb_forget_port(struct hs_switch *sw, struct hs_port *p);
/* Removes p's learned entries in VLANs it is no longer a member of. */
unsigned hs__fdb_flush_left_vlans(struct hs_switch *sw, struct hs_port *p);
/* Sets p's learning limit (under the table's lock, where it is read). */
void hs__fdb_set_limit(struct hs_switch *sw, struct hs_port *p, uint32_t limit);

#endif /* HS_CORE_FDB_H */
