/*
 * internal.h - private structures shared by the core's files.
 *
 * Nothing here is part of the public API; internal helpers carry the hs__
 * prefix. Which thread touches what is stated next to each structure.
 *
 * RCU flavour: liburcu QSBR, named in one place (rcu.c). Data-plane
 * threads announce a quiescent state after every round and go offline while
 * sleeping; host threads that enter the data path (hs_port_kick,
 * hs_mem_tx_burst) are registered on first use and are online only for the
 * duration of the call. Pointer publication and reads use C11 atomics
 * (hs__rcu_load/store), which is what liburcu's rcu_dereference and
 * rcu_assign_pointer do, without a function call per read.
 */
#ifndef HS_CORE_INTERNAL_H
#define HS_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "hyperswitch/hyperswitch.h"

#define HS__CACHELINE 64
#define HS__ALIGNED __attribute__((aligned(HS__CACHELINE)))
#define HS__LIKELY(x) __builtin_expect(!!(x), 1)
#define HS__UNLIKELY(x) __builtin_expect(!!(x), 0)

#define HS__BURST_MAX 64      /* frames per round; masks are uint64_t */
#define HS__OUT_MAX HS_RESERVE_MAX /* frames per reserve/commit chunk */
#define HS__PORT_NONE 0xffffu
#define HS__MAX_PORTS 65534u
#define HS__NVID 4096
#define HS__BL_TAGGED 0x8000 /* hs__bl_ent.vid: the frame is stored tagged */
#define HS__CTX_MAX 64        /* sender-context scratch areas per switch */
#define HS__GSO_MAX_LEN HS_FRAME_MAX

#define hs__rcu_load(p) atomic_load_explicit(&(p), memory_order_acquire)
#define hs__rcu_store(p, v) atomic_store_explicit(&(p), (v), memory_order_release)

/* ---- counters: one writer at a time, summed on read --------------------- */

typedef _Atomic uint64_t hs__ctr;

static inline void hs__ctr_add(hs__ctr *c, uint64_t n)
{
	/* Single writer: a plain load and store, no locked instruction. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t hs__ctr_get(const hs__ctr *c)
{
	return atomic_load_explicit((hs__ctr *)c, memory_order_relaxed);
}

/* CLOCK_MONOTONIC in nanoseconds: for the data path's own short waits
 * (not hs__now_ns, which is coarse and may be the host's clock_fn). */
static inline uint64_t hs__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Tells the CPU we are spinning: PAUSE on x86, YIELD on arm64, a
 * compiler barrier elsewhere. */
static inline void hs__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ volatile("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* ---- the egress queue lock: spin briefly, then sleep --------------------- *
 *
 * Held across one destination's reserve/copy/commit of a burst, which for
 * large frames is several microseconds of copying, and taken by sender
 * threads the host may preempt. A pure spin lock loses there: waiters burn
 * their time slice while the holder waits for a CPU. This one spins for
 * about as long as a burst takes, then sleeps on a futex (state 2 says
 * someone may sleep; the release that sees it wakes one). Uncontended, it
 * costs what a spin lock does: one compare-and-swap to take, one exchange
 * to release. */

typedef struct {
	_Atomic uint32_t v;   /* 0 free, 1 held, 2 held and a waiter may sleep */
} hs__lock;

bool hs__lock_wait(hs__lock *l, bool may_sleep); /* lock.c: contended path */
void hs__lock_wake(hs__lock *l);

static inline void hs__lock_init(hs__lock *l)
{
	atomic_init(&l->v, 0);
}

/* Returns true when the wait included a sleep (the caller counts it).
 * may_sleep false: spin without bound (switches in HS_SW_BUSY_POLL, whose
 * threads promise never to sleep). */
static inline bool hs__lock_take_ex(hs__lock *l, bool may_sleep)
{
	uint32_t z = 0;
	if (HS__LIKELY(atomic_compare_exchange_strong_explicit(
		    &l->v, &z, 1, memory_order_acquire, memory_order_relaxed)))
		return false;
	return hs__lock_wait(l, may_sleep);
}

static inline bool hs__lock_take(hs__lock *l)
{
	return hs__lock_take_ex(l, true);
}

static inline void hs__lock_release(hs__lock *l)
{
	if (HS__UNLIKELY(atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2))
		hs__lock_wake(l);
}

/* ---- logging ------------------------------------------------------------ */

void hs__event(struct hs_switch *sw, const struct hs_event *ev);
void hs__event_locked(struct hs_switch *sw, const struct hs_event *ev); /* ev_lock held */
void hs__stats_out(void *dst, size_t size, const void *src, size_t have);
void hs__log(const hs_switch_t *sw, enum hs_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void hs__vlog(const hs_switch_t *sw, enum hs_log_level lvl, const char *prefix,
	      const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/* ---- ingress queue: owned by one thread at a time ----------------------- */

/* hs__inq.state bits */
#define HS__Q_OWNED 0x01    /* a thread is processing the queue */
#define HS__Q_PENDING 0x02  /* work signalled while owned: owner re-checks */
#define HS__Q_DISARMED 0x04 /* its fd left the data-plane epoll set (taken
			       from epoll): the releasing owner re-arms it */
#define HS__Q_PAUSED 0x08   /* hs_port_quiesce: no new owner */
#define HS__Q_DEAD 0x10     /* port going away: no new owner, owner drops */
#define HS__Q_POLLED 0x20   /* owned by a worker that busy-polls it */
#define HS__Q_KICKS_OFF 0x40 /* the backend suppresses the peer's kicks (a
				poller did): only hs__q_release lets go of such
				a queue, enabling them first; if the port is
				paused or dead the bit stays and resume visits
				the queue, so it is never left unowned, unpolled
				and deaf */
/* A busy worker gives a queue back to its sender (offload.c, "hand
 * back"): SHED, set by the owning worker with the queue's kicks on,
 * offers it; TAKE, set by a sender in hs_port_kick, asks for it; GIVEN,
 * set by the worker as it lets go, passes ownership (OWNED stays set) to
 * that waiting sender, which clears it. */
#define HS__Q_SHED 0x80
#define HS__Q_TAKE 0x100
#define HS__Q_GIVEN 0x200

struct hs__inq {
	_Atomic uint32_t state;
	uint16_t qid;
	struct hs_port *port;
	_Atomic int kick_fd; /* HS_EV_KICK fd in the data-plane epoll set */
	_Atomic bool kick_level; /* kick_fd is level-triggered (HS_EV_FD_LEVEL) */
	_Atomic bool sender;     /* a host thread kicks it (hs_port_kick): it
				    can run its own rounds (hand back) */
	/* owner-written counters */
	hs__ctr rx_packets, rx_bytes, rx_bcast, rx_mcast, rx_flooded, rx_notify;
	hs__ctr drops[HS_DROP__COUNT];
} HS__ALIGNED;

/* ---- egress queue: fed by any thread under `lock` ----------------------- */

/* Parsed L3/L4 layout of a frame that needs checksum or segmentation
 * work (copy.c). */
struct hs__l4 {
	uint16_t l3_off, l4_off, hdr_len;
	uint8_t ipv6;       /* 0: IPv4 */
	uint8_t proto;      /* IPPROTO_TCP / IPPROTO_UDP */
};

struct hs__bl_ent {        /* one frame waiting for receiver buffers */
	uint32_t off, len;     /* bytes in the backlog's byte ring */
	struct hs_offload off_meta;
	uint16_t first;        /* GSO frames cut in software: next piece */
	uint16_t vid;          /* its VLAN, HS__BL_TAGGED if stored tagged */
	struct hs__l4 l4;      /* layout, as the frame is stored */
};

struct hs__backlog {       /* bounded, FIFO; the only second copy */
	struct hs__bl_ent *ent;
	uint32_t ent_cap, ent_head, ent_n;
	uint8_t *buf;          /* mmap'ed: costs memory only once used */
	uint32_t buf_cap, buf_head, buf_tail, buf_used;
};

struct hs__outq {
	hs__lock lock;
	uint16_t qid;
	_Atomic int posted_fd;      /* HS_EV_POSTED fd in the epoll set */
	_Atomic int peer_state;     /* enum hs_peer_state, set by the host */
	_Atomic uint32_t bl_count;  /* backlog frames: read without the lock */
	struct hs__backlog bl;      /* under lock */
	bool posted_armed;          /* under lock: HS_EV_POSTED enabled */
	uint32_t seen_down;         /* under lock: the port's link downs seen */
	/* counters written under lock */
	hs__ctr tx_packets, tx_bytes, tx_notify, tx_backlogged;
	hs__ctr tx_lost;            /* of tx_packets, dropped by the backend
				       after delivery (hs_port_count_tx_drop) */
	hs__ctr tx_gso_segments, tx_csum_sw;
	hs__ctr tx_lock_sleeps;     /* deliveries that slept for the lock */
	hs__ctr drops[HS_DROP__COUNT];
} HS__ALIGNED;

/* ---- port --------------------------------------------------------------- */

struct hs__pvlan {             /* a port's VLANs (immutable once published) */
	uint8_t mode;              /* enum hs_vlan_mode */
	uint16_t pvid;             /* access VLAN, or trunk native VLAN (0: none) */
	uint64_t trunk[HS__NVID / 64]; /* trunk: allowed VLAN bitmap */
};

struct hs_port {
	struct hs_switch *sw;
	uint16_t index;            /* slot in the topology's port array */
	uint32_t serial;           /* unique per switch: tells stale epoll
				      events (index reused) apart */
	char name[HS_PORT_NAME_MAX];
	const struct hs_backend_ops *ops;
	void *priv;
	uint16_t nq;
	_Atomic uint16_t nq_active;/* queues the peer uses (egress spread) */
	struct hs__inq *inq;       /* [nq] */
	struct hs__outq *outq;     /* [nq] */

	/* VLANs: an immutable object any round reads without a lock (the
	 * port's own rounds, and every round that sends to it), replaced by
	 * hs_port_reconfigure (RCU, freed after a grace period): a round
	 * sees one version or the other, never a mix. */
	struct hs__pvlan *_Atomic vl;
	/* flags: read by the port's own rounds and under ctl_lock, changed
	 * while quiesced; mac_limit: under the fdb lock */
	uint32_t flags, mac_limit;
	_Atomic uint32_t mtu;      /* in force: the smaller of cfg_mtu and
				      peer_mtu (at the end, with mtu_lock) */

	_Atomic uint32_t caps;     /* HS_CAP_* of the receiver */
	_Atomic bool link_up;
	_Atomic uint32_t link_downs; /* times the link went down: a backlog
					from before a down is dropped, not
					delivered once it is up again */
	_Atomic bool dead;         /* being deleted: not a destination */
	_Atomic uint32_t refs;     /* the switch's 1 + hs_port_hold()s */
	_Atomic uint32_t holds;    /* hs_port_hold()s not released yet */
	_Atomic bool paused;       /* hs_port_quiesce: frames wait in backlog */
	pthread_mutex_t quiesce_lock; /* serialises quiesce/resume */
	unsigned quiesce_depth;    /* nested hs_port_quiesce calls, under it */
	bool gone;                 /* deleted and its backend stopped: the
				      queues go, quiesce/resume refuse (under
				      quiesce_lock); a port being deleted
				      until then still pauses and resumes */
	_Atomic bool quiesced;     /* hs_port_quiesce returned, resume not yet:
				      no data-path op may run (beops.h) */
	void *data;

	/* forwarding-table accounting, under the fdb lock */
	_Atomic uint32_t fdb_count; /* written under the fdb lock, read by stats */
	hs__ctr fdb_limit_hits;
	bool started;

	pthread_mutex_t mtu_lock;  /* orders changes of mtu and the two below */
	uint32_t cfg_mtu, peer_mtu;/* the host's, the backend's (0: none) */
};

static inline const struct hs__pvlan *hs__port_vl(const struct hs_port *p)
{
	return hs__rcu_load(((struct hs_port *)p)->vl);
}

static inline bool hs__vl_has(const struct hs__pvlan *v, uint16_t vid)
{
	if (v->mode == HS_VLAN_ACCESS)
		return v->pvid == vid;
	return (v->trunk[vid >> 6] >> (vid & 63)) & 1;
}

static inline bool hs__port_in_vlan(const struct hs_port *p, uint16_t vid)
{
	return hs__vl_has(hs__port_vl(p), vid);
}

/* How frames leave towards a port, read once per destination: tagged
 * unless it is an access port or the frame's VLAN is its native one. */
struct hs__vout {
	uint32_t untagged; /* the VLAN that leaves untagged; HS__NVID: all */
};

static inline struct hs__vout hs__vl_vout(const struct hs__pvlan *v)
{
	return (struct hs__vout){v->mode == HS_VLAN_TRUNK ? v->pvid : HS__NVID};
}

static inline struct hs__vout hs__port_vout(const struct hs_port *p)
{
	return hs__vl_vout(hs__port_vl(p));
}

static inline bool hs__vout_tags(struct hs__vout vo, uint16_t vid)
{
	return vo.untagged != HS__NVID && vid != vo.untagged;
}

/* Whether a frame of VLAN vid leaves towards p tagged. */
static inline bool hs__port_tags(const struct hs_port *p, uint16_t vid)
{
	return hs__vout_tags(hs__port_vout(p), vid);
}

/* ---- topology: ports by index and flood sets, one RCU snapshot ---------- */

struct hs__vset {          /* ports that receive flooded frames of a VLAN */
	uint16_t n;
	uint16_t port[];
};

/* Mirrors of one port (by port index in the snapshot): where copies of
 * what it receives (rx) and of what it is sent (tx) go, and whether the
 * port is itself a mirror output (then it is out of flooding and what it
 * sends is dropped). */
#define HS__MIRROR_MAX 4
_Static_assert(HS_DROP__COUNT <= HS_DROP_SLOTS, "room for the drop reasons");

struct hs__mir {
	uint8_t n_rx, n_tx;
	bool is_out;
	uint16_t rx[HS__MIRROR_MAX], tx[HS__MIRROR_MAX];
};

struct hs_mirror {
	struct hs_switch *sw;
	struct hs_port *src, *dst;
	uint32_t flags;               /* HS_MIRROR_RX | HS_MIRROR_TX */
	struct hs_mirror *next;       /* sw->mirrors, under ctl_lock */
};

struct hs__topo {
	uint32_t max_ports;
	struct hs_port **port;            /* [max_ports], NULL: free slot */
	struct hs__vset *vset[HS__NVID];  /* NULL: no member */
	struct hs__mir *mir;              /* [max_ports]; NULL: no mirror at all */
};

/* ---- forwarding table (fdb.c) -------------------------------------------- */

#include "fdb.h"

/* ---- per-thread scratch for rounds --------------------------------------- */

struct hs__notify {          /* a notification deferred to end of round */
	struct hs_port *port;
	uint16_t qid;
	uint16_t ev;
};

struct hs__ctx {
	struct hs_switch *sw;
	unsigned idx;             /* spreads egress over multiqueue ports */
	uint32_t now_s;           /* coarse time of the round (fdb) */
	bool in_round;            /* guards hs_port_del from callbacks */

	struct hs_pkt pkts[HS__BURST_MAX];
	uint16_t vid[HS__BURST_MAX];
	uint16_t tci[HS__BURST_MAX];   /* ingress 802.1Q TCI, if tagged */
	uint64_t tagged;               /* frames with an 802.1Q tag (bit i) */
	uint64_t plain;                /* frames without offload metadata */
	uint64_t ok;                   /* frames that passed classification */
	uint8_t hdr[HS__BURST_MAX][20];/* first bytes when seg 0 is short */

	/* grouping: bit i of mask[p] = frame i goes to port p */
	uint64_t *mask;           /* [max_ports] */
	uint16_t *touched;        /* [max_ports] ports with a mask */
	uint32_t n_touched;
	uint32_t max_ports;

#define HS__DEFER_MAX 128
	struct hs__notify defer[HS__DEFER_MAX];
	uint32_t n_defer;

	/* delivery scratch (copy.c / deliver.c) */
	struct hs__dl *dl;

	/* A polling worker's (defer_posted): receivers it left a backlog in
	 * without asking them for "buffers posted", since its next delivery
	 * drains the backlog anyway; hit: delivered to since the last
	 * hs__pend_flush; missed: calls of it since then, and since: when
	 * the HS__PEND_SWEEPS-th was. Asked once they missed twice that
	 * many sweeps or more in a row, pend_ns after that one (deliver.c).
	 * By port index and serial: kept across quiescent states. Only in
	 * a worker's sweeps (defer_posted): hs__pend_flush follows them. */
#define HS__PEND_MAX 16
#define HS__PEND_SWEEPS 16
	struct hs__pend {
		uint32_t serial;
		uint16_t idx, q;
		bool hit;
		uint32_t missed;
		uint64_t since;
	} pend[HS__PEND_MAX];
	uint32_t n_pend;
	bool defer_posted;
	uint64_t pend_ns;

	/* counters of this thread */
	hs__ctr rounds, handoffs, handbacks, sleeps, quiet_releases;
};

/* ---- switch -------------------------------------------------------------- */

struct hs__loop;
struct hs__pool;

struct hs_switch {
	struct hs_switch_config cfg;   /* defaults filled in */
	char name[32];
	void *data;
	_Atomic int log_level;         /* hs_switch_set_log_level */
	pthread_mutex_t ev_lock;       /* held while the event callback runs */
	hs_event_fn ev_fn;             /* under ev_lock */
	void *ev_opaque;

	pthread_mutex_t ctl_lock;      /* port add/del, topology writers */
	uint32_t next_serial;
	struct hs__topo *_Atomic topo; /* RCU */
	uint32_t n_ports;
	struct hs_mirror *mirrors;     /* under ctl_lock */
	/* what deleted ports counted, so that the switch's totals never go
	 * back (under ctl_lock) */
	struct hs_switch_stats gone;  /* only the ports' sums (hs__stats_sum) */

	struct hs__fdb fdb;
	uint64_t clock_base_ns;

	/* data-plane scheduling */
	int dp_epfd;                   /* kick fds of idle queues (ONESHOT) */
	pthread_mutex_t dp_lock;       /* queue fd (un)registration */
	struct hs__pool *pool;         /* offload workers, NULL if none */
	struct hs__loop *loop;         /* libuv adapter */

	/* sender-context scratch areas */
	_Atomic uint64_t ctx_free;     /* bit set: ctxs[i] free */
	pthread_mutex_t ctx_alloc_lock;
	struct hs__ctx *ctxs[HS__CTX_MAX];

	/* totals of workers that were stopped */
	hs__ctr rounds_worker, handoffs, handbacks, worker_sleeps, quiet_releases;
	_Atomic uint32_t workers_idle;  /* asleep in epoll_wait */
	_Atomic uint32_t workers_avail; /* asleep, or polling empty queues */
};

/* ---- functions shared between core files --------------------------------- */

uint64_t hs__loop_rounds(struct hs_switch *sw);
/* Adds a port's counters to the switch's totals (rx/tx, drops). */
void hs__stats_sum(struct hs_switch_stats *st, const struct hs_port_stats *ps);

/* rcu.c */
void hs__rcu_enter(void);   /* registers the thread if needed, goes online */
void hs__rcu_leave(void);   /* quiescent + offline */
void hs__rcu_quiescent(void);
void hs__rcu_register(void);
void hs__rcu_unregister(void);
void hs__rcu_synchronize(void);
bool hs__rcu_thread_online(void);

/* time */
uint64_t hs__now_ns(const struct hs_switch *sw);
uint32_t hs__now_s(const struct hs_switch *sw);

/* ctx.c */
struct hs__ctx *hs__ctx_new(struct hs_switch *sw, unsigned idx);
void hs__ctx_free(struct hs__ctx *c);
struct hs__ctx *hs__ctx_get(struct hs_switch *sw);
void hs__ctx_put(struct hs__ctx *c);
extern _Thread_local struct hs__ctx *hs__cur_ctx;

/* datapath.c */
unsigned hs__round(struct hs__ctx *c, struct hs__inq *iq);
bool hs__q_acquire(struct hs__inq *iq, bool from_epoll);
bool hs__q_release(struct hs__inq *iq, bool force);
bool hs__q_kicks(struct hs__inq *iq, bool enable);
bool hs__q_take_back(struct hs__inq *iq);
int hs__port_kick(struct hs_port *port, uint16_t queue, bool host);
int hs__q_run(struct hs__ctx *c, struct hs__inq *iq, unsigned budget);
void hs__flush_deferred(struct hs__ctx *c);

/* deliver.c */
void hs__deliver(struct hs__ctx *c, struct hs_port *dp, uint64_t mask);
/* Asks the receivers c left a backlog in (c->pend) for "buffers posted",
 * draining what their buffers take: all of them, or (all false) those c
 * has not delivered to for long enough (struct hs__ctx). A worker calls
 * it after every sweep (all false), before it sleeps and before it
 * exits. */
void hs__pend_flush(struct hs__ctx *c, bool all);
void hs__drain_backlog(struct hs__ctx *c, struct hs_port *dp,
		       struct hs__outq *oq, unsigned *ev, bool each);
void hs__posted(struct hs__ctx *c, struct hs_port *dp, struct hs__outq *oq);
/* Under oq's lock: withdraws the "buffers posted" request of a queue
 * whose backlog is empty (its frames dropped), unless the port is paused
 * or dead (resume_port calls it again). */
void hs__posted_withdraw(struct hs_port *dp, struct hs__outq *oq);
/* A queue the peer stopped using: its backlog dropped (port_down) under
 * its lock, its request withdrawn. */
void hs__outq_retire(struct hs_port *dp, struct hs__outq *oq);
int hs__dl_init(struct hs__ctx *c);
void hs__dl_fini(struct hs__ctx *c);
int hs__backlog_init(struct hs__backlog *bl, uint32_t frames, uint32_t bytes);
unsigned hs__backlog_purge_vlans(struct hs_port *p, bool mirror_out);
void hs__backlog_fini(struct hs__backlog *bl);

/* port.c */
void hs__port_del_all(struct hs_switch *sw);
struct hs__topo *hs__topo_get(struct hs_switch *sw);
int hs__topo_init(struct hs_switch *sw);
int hs__topo_rebuild(struct hs_switch *sw);
/* mirror.c: mirrors with `p` at either end, taken off sw->mirrors (ctl_lock
 * held); freed after the snapshot without them is published. */
struct hs_mirror *hs__mirrors_unlink_port(struct hs_switch *sw, struct hs_port *p);
void hs__mirrors_free(struct hs_mirror *list);
bool hs__mirror_is_output(const struct hs_switch *sw, const struct hs_port *p); /* ctl_lock */
void hs__topo_fini(struct hs_switch *sw);

/* offload.c: worker pool, data-plane epoll set, adaptive polling */
int hs__dp_init(struct hs_switch *sw);
void hs__dp_fini(struct hs_switch *sw);
int hs__pool_start(struct hs_switch *sw);
void hs__pool_stop(struct hs_switch *sw);
void hs__pool_stats(struct hs_switch *sw, uint64_t *rounds, uint64_t *handoffs,
		    uint64_t *handbacks, uint64_t *sleeps, uint64_t *quiet);
bool hs__pool_handoff(struct hs_switch *sw, struct hs__inq *iq);
int hs__dp_fd_add(struct hs_port *p, uint16_t q, unsigned ev, int fd);
void hs__dp_fd_del(struct hs_port *p, uint16_t q, unsigned ev);
void hs__dp_rearm(struct hs_switch *sw, struct hs__inq *iq);
bool hs__dp_signal(struct hs__inq *iq);
/* Signals queue q's "buffers posted" fd, as the peer would: whoever
 * handles it drains the backlog. False without one. */
bool hs__dp_signal_posted(struct hs_port *p, uint16_t q);
/* The loop thread's share of the data plane when there are no workers:
 * handles ready queue fds without blocking. */
unsigned hs__dp_dispatch(struct hs_switch *sw, struct hs__ctx *c,
			 unsigned budget);

/* loop.c: the libuv adapter */
int hs__loop_init(struct hs_switch *sw);
void hs__loop_fini(struct hs_switch *sw);
void hs__loop_dp_changed(struct hs_switch *sw);

/* registry.c */
const struct hs_backend_ops *hs__backend_get(const char *name);
void hs__backend_put(const struct hs_backend_ops *ops);
void hs__backends_builtin(void);

#endif /* HS_CORE_INTERNAL_H */
