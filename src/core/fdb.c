/*
 * fdb.c - the forwarding table: (VLAN, MAC) -> port.
 *
 * Layout: a cuckoo hash of 64-byte buckets holding 4 entries each; every
 * key may live in one of two buckets, so a lookup reads at most two cache
 * lines. The table is sized once (capacity / 3 buckets, rounded up to a
 * power of two: at most 75% full) and never moves, so readers need no RCU
 * for it; entries are updated in place.
 *
 * Threads: lookups and the learning fast path run lock-free on every
 * data-plane thread. Everything that writes a key (learning a new MAC, a
 * move, aging, static entries, flushes) holds `lock`. Readers detect a
 * concurrent slot reuse by re-reading the key (hs__fdb_lookup) and wait out
 * cuckoo displacements through `move_seq`, so a present key is never
 * missed.
 *
 * Lock order: switch ctl_lock -> fdb lock. The data path takes only the
 * fdb lock. Functions here that map entries to ports read the topology, so
 * their callers are either RCU readers (data path) or hold ctl_lock.
 *
 * Defences: a per-port learning limit (a port at its limit replaces its
 * own least recently refreshed entry) and fair eviction when the table is
 * full (the least recently refreshed entry of the port that holds the most
 * entries goes, as in Open vSwitch); static entries never age, get evicted
 * or change port (a cuckoo walk may move them to their other bucket, and
 * never drops one). The "least recently refreshed" entry is the oldest of the
 * first 8 of that port's entries met from a rotating cursor (approximate
 * LRU, exact for ports with up to 8 entries): exact LRU lists would need a
 * write per refresh.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "internal.h"

static uint64_t next_pow2(uint64_t v)
{
	uint64_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

int hs__fdb_init(struct hs__fdb *f, uint32_t capacity, uint32_t aging_s,
		 uint32_t port_limit)
{
	memset(f, 0, sizeof(*f));
	uint64_t nb = next_pow2(((uint64_t)capacity + 2) / 3);
	if (nb < 4)
		nb = 4;
	f->b = aligned_alloc(64, nb * sizeof(struct hs__fdb_bucket));
	if (!f->b)
		return -ENOMEM;
	memset(f->b, 0, nb * sizeof(struct hs__fdb_bucket));
	f->mask = nb - 1;
	if (getrandom(&f->seed, sizeof(f->seed), GRND_NONBLOCK) != sizeof(f->seed))
		f->seed = (uint64_t)(uintptr_t)f ^ 0x5bd1e9955bd1e995ull;
	f->capacity = capacity;
	f->aging_s = aging_s;
	f->port_limit = port_limit;
	pthread_mutex_init(&f->lock, NULL);
	return 0;
}

void hs__fdb_fini(struct hs__fdb *f)
{
	free(f->b);
	f->b = NULL;
	pthread_mutex_destroy(&f->lock);
}

static void ctr_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static struct hs_port *port_at(struct hs_switch *sw, uint32_t word)
{
	struct hs__topo *t = hs__topo_get(sw);
	uint32_t idx = word & HS__FDB_PORT_MASK;
	return idx < t->max_ports ? t->port[idx] : NULL;
}

/* ---- writer-side primitives (lock held) ---------------------------------- */

static struct hs__fdb_ent *find_locked(struct hs__fdb *f, uint64_t key)
{
	return hs__fdb_probe(f, key, hs__fdb_hash(f, key));
}

static void ent_write(struct hs__fdb_ent *e, uint64_t key, uint32_t port,
		      uint32_t stamp)
{
	atomic_store_explicit(&e->port, port, memory_order_relaxed);
	atomic_store_explicit(&e->stamp, stamp, memory_order_relaxed);
	atomic_store_explicit(&e->key, key, memory_order_release);
}

/* Removes an entry whose port word is `word` and whose port (for a
 * learned one) is p, known to the caller or NULL, and fixes the
 * accounting. */
static void ent_remove_of(struct hs__fdb *f, struct hs__fdb_ent *e, uint32_t word,
			  struct hs_port *p)
{
	atomic_store_explicit(&e->key, 0, memory_order_release);
	f->count--;
	if (word & HS__FDB_STATIC)
		f->n_static--;
	else if (p && p->fdb_count)
		p->fdb_count--;
}

/* Removes an entry and fixes the accounting: its port from the topology
 * (the caller is an RCU reader or holds ctl_lock). */
static void ent_remove(struct hs_switch *sw, struct hs__fdb *f,
		       struct hs__fdb_ent *e)
{
	uint32_t word = atomic_load_explicit(&e->port, memory_order_relaxed);
	ent_remove_of(f, e, word,
		      (word & HS__FDB_STATIC) ? NULL : port_at(sw, word));
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

/* The longest cuckoo walk: a table at most 75% full finds room in a few
 * steps; a walk this long means the key's buckets and those reachable
 * from them are full (crafted or pathological keys). */
#define HS__FDB_WALK 256

/* The first learned entry of bucket b, or NULL if it holds static
 * entries only (a full bucket: every slot holds a key). */
static struct hs__fdb_ent *learned_in(struct hs__fdb_bucket *b)
{
	for (int i = 0; i < HS__FDB_WAYS; i++)
		if (!(atomic_load_explicit(&b->e[i].port, memory_order_relaxed) &
		      HS__FDB_STATIC))
			return &b->e[i];
	return NULL;
}

/* One slot a walk wrote over, with what it held: enough to undo it. */
struct fdb_step {
	struct hs__fdb_ent *e;
	uint64_t key;
	uint32_t port, stamp;
};

/* Puts a key that is not in the table into it. Returns false only if a
 * cuckoo walk failed: `*lost` is the entry left with no home, a learned
 * one displaced on the way or the key itself. A static entry is never
 * the one lost: a walk that ends holding one is undone, and the key then
 * takes the place of a learned entry in its own buckets, or gets no home
 * if they hold static entries only. Entries of both kinds move between
 * their two buckets (a static entry that could not move once made a
 * table of static entries refuse keys at 40% of its capacity). */
static bool place(struct hs__fdb *f, uint64_t key, uint32_t port,
		  uint32_t stamp, struct hs__fdb_ent *lost)
{
	uint64_t h = hs__fdb_hash(f, key);
	struct hs__fdb_bucket *bs[2] = {hs__fdb_b1(f, h), hs__fdb_b2(f, h)};
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < HS__FDB_WAYS; i++)
			if (!atomic_load_explicit(&bs[k]->e[i].key,
						  memory_order_relaxed)) {
				ent_write(&bs[k]->e[i], key, port, stamp);
				return true;
			}

	/* Both buckets full: random-walk displacement. Readers retry while
	 * move_seq is odd or changed, hits as well as misses, through the
	 * undo too (a slot read mid-write, or one put back, cannot give a
	 * key another's port). The fence orders the walk's stores after the
	 * increment for a reader that sees one of them. */
	atomic_fetch_add_explicit(&f->move_seq, 1, memory_order_acq_rel);
	atomic_thread_fence(memory_order_release);
	struct fdb_step path[HS__FDB_WALK];
	int n = 0;
	uint64_t ck = key;
	uint32_t cp = port, cs = stamp;
	struct hs__fdb_bucket *b = bs[xorshift(&f->cursor) & 1];
	bool ok = false;
	while (n < HS__FDB_WALK && !ok) {
		struct hs__fdb_ent *v = &b->e[xorshift(&f->cursor) % HS__FDB_WAYS];
		struct fdb_step *st = &path[n++];
		st->e = v;
		st->key = atomic_load_explicit(&v->key, memory_order_relaxed);
		st->port = atomic_load_explicit(&v->port, memory_order_relaxed);
		st->stamp = atomic_load_explicit(&v->stamp, memory_order_relaxed);
		ent_write(v, ck, cp, cs);
		ck = st->key, cp = st->port, cs = st->stamp;
		uint64_t vh = hs__fdb_hash(f, ck);
		b = (b == hs__fdb_b1(f, vh)) ? hs__fdb_b2(f, vh) : hs__fdb_b1(f, vh);
		for (int i = 0; i < HS__FDB_WAYS; i++)
			if (!atomic_load_explicit(&b->e[i].key,
						  memory_order_relaxed)) {
				ent_write(&b->e[i], ck, cp, cs);
				ok = true;
				break;
			}
	}
	if (!ok && (cp & HS__FDB_STATIC)) {
		/* undo, last step first: every entry back where it was */
		while (n--)
			ent_write(path[n].e, path[n].key, path[n].port,
				  path[n].stamp);
		ck = key, cp = port, cs = stamp;
		/* then the key takes the slot of a learned entry in one of its
		 * own buckets, if they hold one: that entry is the one lost */
		struct hs__fdb_ent *v = learned_in(bs[0]);
		if (!v)
			v = learned_in(bs[1]);
		if (v) {
			ck = atomic_load_explicit(&v->key, memory_order_relaxed);
			cp = atomic_load_explicit(&v->port, memory_order_relaxed);
			cs = atomic_load_explicit(&v->stamp, memory_order_relaxed);
			ent_write(v, key, port, stamp);
		}
	}
	atomic_fetch_add_explicit(&f->move_seq, 1, memory_order_acq_rel);
	if (!ok) {
		lost->key = ck;
		lost->port = cp;
		lost->stamp = cs;
	}
	return ok;
}

/* Evicts the least recently refreshed learned entry of port p, chosen
 * among the first 8 of its entries met from the rotating cursor (all of
 * them when it has fewer). Returns true if one was evicted. */
static bool evict_from(struct hs_switch *sw, struct hs__fdb *f,
		       const struct hs_port *p)
{
	struct hs__fdb_ent *best = NULL;
	uint32_t best_stamp = 0, seen = 0;
	uint32_t want = p->fdb_count < 8 ? p->fdb_count : 8;
	uint64_t nb = f->mask + 1;
	for (uint64_t n = 0; n < nb && (seen < want || !best); n++) {
		struct hs__fdb_bucket *b = &f->b[f->cursor++ & f->mask];
		for (int i = 0; i < HS__FDB_WAYS; i++) {
			struct hs__fdb_ent *e = &b->e[i];
			if (!atomic_load_explicit(&e->key, memory_order_relaxed))
				continue;
			uint32_t w = atomic_load_explicit(&e->port,
							  memory_order_relaxed);
			if ((w & HS__FDB_STATIC) ||
			    (w & HS__FDB_PORT_MASK) != p->index)
				continue;
			uint32_t s = atomic_load_explicit(&e->stamp,
							  memory_order_relaxed);
			seen++;
			if (!best || (int32_t)(s - best_stamp) < 0) {
				best = e;
				best_stamp = s;
			}
		}
	}
	if (!best)
		return false;
	ent_remove(sw, f, best);
	ctr_inc(&f->evicted);
	return true;
}

/* The port holding the most learned entries (ties: the lowest index). */
static struct hs_port *largest_port(struct hs_switch *sw)
{
	struct hs__topo *t = hs__topo_get(sw);
	struct hs_port *best = NULL;
	for (uint32_t i = 0; i < t->max_ports; i++) {
		struct hs_port *p = t->port[i];
		if (p && p->fdb_count && (!best || p->fdb_count > best->fdb_count))
			best = p;
	}
	return best;
}

/* Makes room for one learned entry of port p. Returns false if none. */
static bool make_room(struct hs_switch *sw, struct hs__fdb *f, struct hs_port *p)
{
	if (p->fdb_count >= p->mac_limit) {
		hs__ctr_add(&p->fdb_limit_hits, 1);
		if (!evict_from(sw, f, p))
			return false;
	}
	if (f->count >= f->capacity) {
		struct hs_port *v = largest_port(sw);
		/* A port as large as the largest gives up its own entry. */
		if (v && p->fdb_count >= v->fdb_count)
			v = p;
		if (!v || !evict_from(sw, f, v))
			return false;
	}
	return true;
}

/* Inserts an entry counted by the caller (its port's fdb_count or
 * n_static). Returns false if the entry itself found no home (its count
 * undone, the table as it was); a learned entry displaced for it and left
 * homeless is dropped like an eviction. Static entries are never lost. */
static bool insert_locked(struct hs_switch *sw, struct hs__fdb *f, uint64_t key,
			  uint32_t word, uint32_t now)
{
	struct hs__fdb_ent lost;
	f->count++;
	if (place(f, key, word, now, &lost))
		return true;
	struct hs__fdb_ent tmp;
	atomic_init(&tmp.port, lost.port);
	atomic_init(&tmp.key, lost.key);
	ent_remove(sw, f, &tmp);
	if (lost.key == key)
		return false;
	ctr_inc(&f->evicted);
	return true;
}

void hs__fdb_learn_slow(struct hs_switch *sw, uint64_t key, struct hs_port *p,
			uint32_t now)
{
	struct hs__fdb *f = &sw->fdb;
	/* (read again under the lock below: this one spares a down port
	 * that still sends the lock for each of its frames) */
	if ((p->flags & HS_PORT_NO_LEARN) ||
	    !atomic_load_explicit(&p->link_up, memory_order_relaxed))
		return;
	pthread_mutex_lock(&f->lock);
	/* nothing is learned behind a down link (a backend may still return
	 * a burst it took before it found its peer gone): its entries were
	 * forgotten when it went down (hs__fdb_forget_port, this lock) */
	if (atomic_load_explicit(&p->dead, memory_order_acquire) ||
	    !atomic_load_explicit(&p->link_up, memory_order_relaxed))
		goto out;
	struct hs__fdb_ent *e = find_locked(f, key);
	if (e) {
		uint32_t w = atomic_load_explicit(&e->port, memory_order_relaxed);
		if (w & HS__FDB_STATIC) {
			if ((w & HS__FDB_PORT_MASK) != p->index)
				ctr_inc(&f->static_refused);
			goto out;
		}
		if ((w & HS__FDB_PORT_MASK) == p->index) {
			atomic_store_explicit(&e->stamp, now, memory_order_relaxed);
			goto out;
		}
		/* MAC move: the address now lives behind another port. */
		if (p->fdb_count >= p->mac_limit) {
			hs__ctr_add(&p->fdb_limit_hits, 1);
			if (!evict_from(sw, f, p))
				goto out;
			e = find_locked(f, key); /* eviction may not touch e, but
						    be exact */
			if (!e)
				goto out;
		}
		struct hs_port *old = port_at(sw, w);
		if (old && old->fdb_count)
			old->fdb_count--;
		p->fdb_count++;
		atomic_store_explicit(&e->stamp, now, memory_order_relaxed);
		atomic_store_explicit(&e->port, p->index, memory_order_release);
		ctr_inc(&f->moved);
		goto out;
	}
	if (!make_room(sw, f, p))
		goto out;
	p->fdb_count++;
	if (insert_locked(sw, f, key, p->index, now))
		ctr_inc(&f->learned);
	else
		ctr_inc(&f->evicted); /* no home for it: as if evicted at once */
out:
	pthread_mutex_unlock(&f->lock);
}

/* Calls fn for every entry (lock held); fn returns 1 to remove the entry,
 * 0 to keep it, or a negative value to stop the walk with that value.
 * Returns the number removed or the stop value. */
static int walk(struct hs_switch *sw,
		int (*fn)(struct hs__fdb_ent *e, uint64_t key, uint32_t word,
			  uint32_t stamp, void *arg),
		void *arg)
{
	struct hs__fdb *f = &sw->fdb;
	int removed = 0;
	for (uint64_t bi = 0; bi <= f->mask; bi++)
		for (int i = 0; i < HS__FDB_WAYS; i++) {
			struct hs__fdb_ent *e = &f->b[bi].e[i];
			uint64_t k = atomic_load_explicit(&e->key, memory_order_relaxed);
			if (!k)
				continue;
			int rc = fn(e, k,
				    atomic_load_explicit(&e->port, memory_order_relaxed),
				    atomic_load_explicit(&e->stamp, memory_order_relaxed),
				    arg);
			if (rc < 0)
				return rc;
			if (rc) {
				ent_remove(sw, f, e);
				removed++;
			}
		}
	return removed;
}

struct flush_arg {
	const struct hs_port *p;
	bool include_static;
	bool left_vlans;  /* only entries in VLANs p is not a member of */
};

static int flush_fn(struct hs__fdb_ent *e, uint64_t key, uint32_t w,
		    uint32_t stamp, void *arg)
{
	const struct flush_arg *a = arg;
	(void)e, (void)stamp;
	if ((w & HS__FDB_STATIC) && !a->include_static)
		return 0;
	if (a->p && (w & HS__FDB_PORT_MASK) != a->p->index)
		return 0;
	return !a->left_vlans || !hs__port_in_vlan(a->p, (uint16_t)((key >> 48) & 0xfff));
}

unsigned hs__fdb_flush_port(struct hs_switch *sw, struct hs_port *p,
			    bool include_static)
{
	struct flush_arg a = {.p = p, .include_static = include_static};
	pthread_mutex_lock(&sw->fdb.lock);
	int n = walk(sw, flush_fn, &a);
	pthread_mutex_unlock(&sw->fdb.lock);
	return (unsigned)n;
}

/* The table's lock only, no topology (its callers, hs_port_set_link's,
 * are on any thread, in no RCU read section and without ctl_lock, which
 * hs_port_del holds while it waits for them): every entry removed is a
 * learned one of p, whose count is p's own. Also when the link is up
 * again by the time the lock is had (what it learned before the down
 * goes; what it learned since is learned again at its next frame). */
unsigned hs__fdb_forget_port(struct hs_switch *sw, struct hs_port *p)
{
	struct hs__fdb *f = &sw->fdb;
	unsigned n = 0;
	pthread_mutex_lock(&f->lock);
	for (uint64_t bi = 0; bi <= f->mask && p->fdb_count; bi++)
		for (int i = 0; i < HS__FDB_WAYS; i++) {
			struct hs__fdb_ent *e = &f->b[bi].e[i];
			uint32_t w = atomic_load_explicit(&e->port, memory_order_relaxed);
			if (!atomic_load_explicit(&e->key, memory_order_relaxed) ||
			    (w & HS__FDB_STATIC) || (w & HS__FDB_PORT_MASK) != p->index)
				continue;
			ent_remove_of(f, e, w, p);
			n++;
		}
	pthread_mutex_unlock(&f->lock);
	return n;
}

unsigned hs__fdb_flush_left_vlans(struct hs_switch *sw, struct hs_port *p)
{
	struct flush_arg a = {.p = p, .left_vlans = true};
	pthread_mutex_lock(&sw->fdb.lock);
	int n = walk(sw, flush_fn, &a);
	pthread_mutex_unlock(&sw->fdb.lock);
	return (unsigned)n;
}

void hs__fdb_set_limit(struct hs_switch *sw, struct hs_port *p, uint32_t limit)
{
	pthread_mutex_lock(&sw->fdb.lock);
	p->mac_limit = limit;
	pthread_mutex_unlock(&sw->fdb.lock);
}

/* ---- public API ---------------------------------------------------------- */

static uint64_t mac_to_u64(const uint8_t mac[HS_ETH_ALEN])
{
	uint64_t m = 0;
	memcpy(&m, mac, HS_ETH_ALEN); /* little endian: byte 0 lowest */
	return m;
}

static int check_vid_mac(uint16_t vid, const uint8_t *mac)
{
	if (!mac || vid < 1 || vid > HS_VLAN_MAX)
		return -EINVAL;
	return 0;
}

int hs_fdb_add_static(hs_switch_t *sw, uint16_t vid,
		      const uint8_t mac[HS_ETH_ALEN], hs_port_t *port)
{
	if (!sw || !port || port->sw != sw || check_vid_mac(vid, mac))
		return -EINVAL;
	if (mac[0] & 1)
		return -EINVAL; /* group addresses are flooded, not looked up */
	struct hs__fdb *f = &sw->fdb;
	uint64_t key = hs__fdb_key(vid, mac_to_u64(mac));
	int rc = 0;
	pthread_mutex_lock(&sw->ctl_lock);
	pthread_mutex_lock(&f->lock);
	if (atomic_load(&port->dead)) {
		rc = -EINVAL;
		goto out;
	}
	if (hs__mirror_is_output(sw, port)) {
		rc = -EBUSY; /* it serves a mirror only */
		goto out;
	}
	uint32_t now = hs__now_s(sw);
	struct hs__fdb_ent *e = find_locked(f, key);
	if (e) {
		uint32_t w = atomic_load_explicit(&e->port, memory_order_relaxed);
		if (!(w & HS__FDB_STATIC)) {
			struct hs_port *old = port_at(sw, w);
			if (old && old->fdb_count)
				old->fdb_count--;
			f->n_static++;
		}
		atomic_store_explicit(&e->stamp, now, memory_order_relaxed);
		atomic_store_explicit(&e->port, port->index | HS__FDB_STATIC,
				      memory_order_release);
		goto out;
	}
	if (f->count >= f->capacity) {
		struct hs_port *v = largest_port(sw);
		if (!v || !evict_from(sw, f, v)) {
			rc = -ENOSPC;
			goto out;
		}
	}
	f->n_static++;
	if (!insert_locked(sw, f, key, port->index | HS__FDB_STATIC, now))
		rc = -ENOSPC; /* no room made for it by moving others */
out:
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_unlock(&sw->ctl_lock);
	return rc;
}

int hs_fdb_del(hs_switch_t *sw, uint16_t vid, const uint8_t mac[HS_ETH_ALEN])
{
	if (!sw || check_vid_mac(vid, mac))
		return -EINVAL;
	struct hs__fdb *f = &sw->fdb;
	int rc = -ENOENT;
	pthread_mutex_lock(&sw->ctl_lock);
	pthread_mutex_lock(&f->lock);
	struct hs__fdb_ent *e = find_locked(f, hs__fdb_key(vid, mac_to_u64(mac)));
	if (e) {
		ent_remove(sw, f, e);
		rc = 0;
	}
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_unlock(&sw->ctl_lock);
	return rc;
}

static uint32_t idle_at(uint32_t now, uint32_t stamp)
{
	return (int32_t)(now - stamp) > 0 ? now - stamp : 0;
}

/* What the entry (key k, port word w) says (ctl_lock or an RCU reader:
 * its port from the topology). */
static void info_of(struct hs_switch *sw, uint64_t k, uint32_t w, uint32_t idle_s,
		    struct hs_fdb_info *info)
{
	*info = (struct hs_fdb_info){
		.vid = (uint16_t)((k >> 48) & 0xfff),
		.port = port_at(sw, w),
		.idle_s = idle_s,
		.is_static = (w & HS__FDB_STATIC) != 0,
	};
	uint64_t m = k & 0xffffffffffffull;
	memcpy(info->mac, &m, HS_ETH_ALEN);
}

int hs_fdb_get(hs_switch_t *sw, uint16_t vid, const uint8_t mac[HS_ETH_ALEN],
	       struct hs_fdb_info *info)
{
	if (!sw || check_vid_mac(vid, mac))
		return -EINVAL;
	uint64_t key = hs__fdb_key(vid, mac_to_u64(mac));
	uint32_t w, stamp;
	int rc = -ENOENT;
	pthread_mutex_lock(&sw->ctl_lock);
	if (hs__fdb_lookup(&sw->fdb, key, &w, &stamp) && port_at(sw, w)) {
		if (info)
			info_of(sw, key, w, idle_at(hs__now_s(sw), stamp), info);
		rc = 0;
	}
	pthread_mutex_unlock(&sw->ctl_lock);
	return rc;
}

int hs_fdb_lookup(hs_switch_t *sw, uint16_t vid, const uint8_t mac[HS_ETH_ALEN],
		  hs_port_t **port)
{
	struct hs_fdb_info info;
	int rc = hs_fdb_get(sw, vid, mac, &info);
	if (!rc && port)
		*port = info.port;
	return rc;
}

int hs_fdb_flush(hs_switch_t *sw, hs_port_t *port, unsigned flags)
{
	if (!sw || (port && port->sw != sw) || (flags & ~HS_FDB_FLUSH_STATIC))
		return -EINVAL;
	pthread_mutex_lock(&sw->ctl_lock);
	int n = (int)hs__fdb_flush_port(sw, port, flags & HS_FDB_FLUSH_STATIC);
	pthread_mutex_unlock(&sw->ctl_lock);
	return n;
}

struct age_arg {
	struct hs__fdb *f;
	uint32_t now;
};

/* Seconds an entry has been idle at `now`. The data path refreshes stamps
 * without the table's lock, from a clock it may have read after the caller
 * read `now`: a stamp one second ahead is an entry just seen (0), not one
 * idle for 2^32 - 1 seconds, which aging would remove at once. */
static int age_fn(struct hs__fdb_ent *e, uint64_t key, uint32_t w, uint32_t stamp,
		  void *arg)
{
	struct age_arg *a = arg;
	(void)e, (void)key;
	if ((w & HS__FDB_STATIC) || idle_at(a->now, stamp) < a->f->aging_s)
		return 0;
	ctr_inc(&a->f->aged);
	return 1;
}

int hs_fdb_age(hs_switch_t *sw)
{
	if (!sw)
		return -EINVAL;
	struct hs__fdb *f = &sw->fdb;
	if (f->aging_s == HS_FDB_AGING_NEVER)
		return 0;
	pthread_mutex_lock(&sw->ctl_lock);
	pthread_mutex_lock(&f->lock);
	struct age_arg a = {.f = f, .now = hs__now_s(sw)};
	int n = walk(sw, age_fn, &a);
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_unlock(&sw->ctl_lock);
	return n;
}

struct dump_arg {
	struct hs_switch *sw;
	uint32_t now;
	int (*cb)(const struct hs_fdb_info *, void *);
	void *arg;
	int rc;
};

static int dump_fn(struct hs__fdb_ent *e, uint64_t k, uint32_t w, uint32_t stamp,
		   void *arg)
{
	struct dump_arg *a = arg;
	(void)e;
	struct hs_fdb_info info;
	info_of(a->sw, k, w, idle_at(a->now, stamp), &info);
	a->rc = a->cb(&info, a->arg);
	return a->rc ? -1 : 0;
}

struct macs_arg {
	uint32_t except;      /* a port index, or UINT32_MAX */
	uint32_t now;
	int (*cb)(const uint8_t mac[6], uint16_t vid, uint32_t idle_s, void *arg);
	void *arg;
	int rc;
};

static int macs_fn(struct hs__fdb_ent *e, uint64_t k, uint32_t w, uint32_t stamp, void *arg)
{
	struct macs_arg *a = arg;
	(void)e;
	if ((w & HS__FDB_PORT_MASK) == a->except)
		return 0;
	uint64_t m = k & 0xffffffffffffull;
	uint8_t mac[HS_ETH_ALEN];
	memcpy(mac, &m, HS_ETH_ALEN);
	a->rc = a->cb(mac, (uint16_t)((k >> 48) & 0xfff), idle_at(a->now, stamp), a->arg);
	return a->rc ? -1 : 0;
}

/* The table's lock only (no ctl_lock, no topology: the port is compared by
 * index), so that loop callbacks may call it while a port is being
 * deleted under ctl_lock. */
int hs_fdb_walk_macs(hs_switch_t *sw, const hs_port_t *except,
		     int (*cb)(const uint8_t mac[6], uint16_t vid, uint32_t idle_s, void *arg),
		     void *arg)
{
	if (!sw || !cb)
		return -EINVAL;
	struct macs_arg a = {.except = except ? except->index : UINT32_MAX, .cb = cb, .arg = arg};
	pthread_mutex_lock(&sw->fdb.lock);
	a.now = hs__now_s(sw);
	walk(sw, macs_fn, &a);
	pthread_mutex_unlock(&sw->fdb.lock);
	return a.rc;
}

int hs_fdb_dump(hs_switch_t *sw, int (*cb)(const struct hs_fdb_info *, void *),
		void *arg)
{
	if (!sw || !cb)
		return -EINVAL;
	struct dump_arg a = {.sw = sw, .cb = cb, .arg = arg};
	pthread_mutex_lock(&sw->ctl_lock);
	pthread_mutex_lock(&sw->fdb.lock);
	a.now = hs__now_s(sw);
	walk(sw, dump_fn, &a);
	pthread_mutex_unlock(&sw->fdb.lock);
	pthread_mutex_unlock(&sw->ctl_lock);
	return a.rc;
}
