/*
 * hyperswitch/switch.h - the switch object: lifecycle, event loop, counters.
 *
 * Threading:
 *  - hs_switch_create/hs_switch_destroy: any thread; destroy must not run
 *    concurrently with any other call on the same switch.
 *  - hs_run: one thread at a time; hs_stop: any thread, any time.
 *  - hs_switch_attach/hs_switch_detach/hs_switch_dispatch: the thread that
 *    runs (or will run) the loop.
 *  - hs_switch_get_stats: any thread.
 */
#ifndef HYPERSWITCH_SWITCH_H
#define HYPERSWITCH_SWITCH_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Mechanism switches (hs_switch_config.flags) ------------------------
 * Zero enables every mechanism of the Hyper-Switch data path; each flag
 * switches one off, so its effect can be measured (bench/). */
#define HS_SW_DOUBLE_COPY 0x01  /* copy every frame into a switch buffer first,
				   then into the receiver (the classic two
				   copies), instead of one copy */
#define HS_SW_NOTIFY_EACH 0x02  /* notify the receiver (and complete the
				   sender) after every frame: no batching */
#define HS_SW_NO_BACKLOG 0x04   /* drop at once when the receiver has no
				   posted buffers (no bounded backlog) */
#define HS_SW_NO_OFFLOAD 0x08   /* never hand a kicked queue to an idle
				   worker: always process in sender context */
#define HS_SW_NO_POLL 0x10      /* workers never busy-poll: re-arm
				   notifications after every empty round */
#define HS_SW_BUSY_POLL 0x20    /* workers never sleep (spin when idle) */
#define HS_SW_KEEP_QUIET 0x40   /* a busy worker keeps every queue it took,
				   polled each round, however long it stays
				   without frames (by default one quiet for
				   poll_us is let go, its kicks on again) */
#define HS_SW_POSTED_EACH 0x80  /* a worker delivering to a receiver with a
				   backlog asks it for a "buffers posted"
				   signal at every delivery (by default it
				   asks once it stops delivering there: its
				   next delivery drains the backlog anyway) */

#define HS_FDB_AGING_NEVER UINT32_MAX

/* Switch configuration. Valid when zero-initialised; 0 means default. */
struct hs_switch_config {
	uint32_t size;           /* bytes the caller filled: sizeof(struct
				    hs_switch_config), or 0 for the first
				    layout (HS_SWITCH_CONFIG_SIZE_V1) */
	const char *name;        /* for logs; default "hs0" */
	uint32_t max_ports;      /* 0 -> 1024; at most 65534 */
	uint32_t burst;          /* frames per round; 0 -> 32; at most 64 */
	uint32_t n_workers;      /* offload worker threads; 0 = none: all work
				    runs in the sender's (or the loop's) thread */
	uint32_t fdb_capacity;   /* learned + static MACs; 0 -> 8192 */
	uint32_t fdb_aging_s;    /* 0 -> 300; HS_FDB_AGING_NEVER disables */
	uint32_t fdb_port_limit; /* default MACs learnable per port; 0 -> no
				    limit beyond fdb_capacity */
	uint32_t backlog_frames; /* per destination queue; 0 -> 256 */
	uint32_t backlog_bytes;  /* per destination queue; 0 -> 512 KiB */
	uint32_t poll_us;        /* adaptive polling: microseconds a worker
				    keeps polling queues that carry no frame
				    before it sleeps, and a busy worker one
				    queue without frames before it lets it
				    go; 0 -> 200 */
	uint32_t flags;          /* HS_SW_* */
	const int *worker_cpus;  /* optional CPU for each worker (n_workers) */

	hs_log_fn log_fn;        /* NULL: logs are discarded */
	void *log_opaque;
	enum hs_log_level log_level; /* most verbose level passed to log_fn */

	/* Monotonic clock in nanoseconds, for MAC aging. NULL uses
	 * CLOCK_MONOTONIC; tests inject their own. Called from any thread. */
	uint64_t (*clock_fn)(void *opaque);
	void *clock_opaque;

	void *data;              /* host's own pointer: hs_switch_data() */
	/* fields added later go here, and HS_SWITCH_CONFIG_SIZE_V1 stays */
};
#define HS_SWITCH_CONFIG_SIZE_V1 (offsetof(struct hs_switch_config, data) + sizeof(void *))

/* Creates a switch. `cfg` may be NULL for all defaults; it is copied (the
 * name string too). Starts n_workers threads. On success stores the handle
 * in *out and returns 0. */
HS_EXTERN int hs_switch_create(const struct hs_switch_config *cfg,
			       hs_switch_t **out);

/* Deletes every port, stops the workers, detaches from any loop and frees
 * the switch. Never fails; NULL is a no-op. Must not be called from a
 * thread that is inside a library callback, nor while hs_run() runs (call
 * hs_stop() and wait for hs_run() to return first). */
HS_EXTERN void hs_switch_destroy(hs_switch_t *sw);

HS_EXTERN void *hs_switch_data(const hs_switch_t *sw);
HS_EXTERN void hs_switch_set_data(hs_switch_t *sw, void *data);
HS_EXTERN const char *hs_switch_name(const hs_switch_t *sw);

/* Changes the most verbose level passed to log_fn (initially
 * hs_switch_config.log_level). Any thread; takes effect at once, also in
 * data-path threads. Returns 0 or -EINVAL. */
HS_EXTERN int hs_switch_set_log_level(hs_switch_t *sw, enum hs_log_level level);

/* ---- Event loop ----------------------------------------------------------
 * The control plane (backend sockets, MAC aging, stop requests) and, when
 * n_workers is 0, the processing of queues that signal work through file
 * descriptors, run on a libuv loop: either the switch's own (hs_run, or
 * hs_switch_fd + hs_switch_dispatch for hosts with another kind of loop),
 * or one the host already runs (hs_switch_attach). */

/* Runs the switch's own loop in the calling thread until hs_stop().
 * Returns 0, or -EBUSY if the switch is attached to a host loop or already
 * running. */
HS_EXTERN int hs_run(hs_switch_t *sw);

/* Makes hs_run() return soon. Safe from any thread and from signal-free
 * contexts; idempotent. Returns 0. */
HS_EXTERN int hs_stop(hs_switch_t *sw);

struct uv_loop_s;

/* Attaches the switch's control plane to a libuv loop the host runs.
 * Call from the loop's thread. Returns -EBUSY if already attached or
 * running. */
HS_EXTERN int hs_switch_attach(hs_switch_t *sw, struct uv_loop_s *loop);

/* Detaches from the host loop (call from the loop's thread). The handles
 * finish closing on the loop's next iteration; the switch itself may be
 * destroyed right away. Returns -ENOTCONN when not attached. */
HS_EXTERN int hs_switch_detach(hs_switch_t *sw);

/* For hosts with a non-libuv loop: a file descriptor that becomes readable
 * when the switch has control-plane work, and the maximum time in
 * milliseconds before hs_switch_dispatch() must be called regardless
 * (-1: none). hs_switch_dispatch() does the pending work without blocking.
 * Not usable while attached to a host loop (-EBUSY). */
HS_EXTERN int hs_switch_fd(hs_switch_t *sw);
HS_EXTERN int hs_switch_timeout_ms(hs_switch_t *sw);
HS_EXTERN int hs_switch_dispatch(hs_switch_t *sw);

/* ---- Events --------------------------------------------------------------
 * What a management plane would otherwise poll counters for: a port's
 * link going up or down, a queue stopped because its peer broke the rules. */

enum hs_event_type {
	HS_EVENT_LINK = 1,   /* the port's link changed: see link_up */
	HS_EVENT_BROKEN = 2, /* the peer broke the rules on `queue`; `reason`
				says how; the backend keeps the queue (and, for
				vhost-user, the link) down until the peer resets */
};

struct hs_event {
	uint32_t size;           /* sizeof(struct hs_event) as the library has
				    it: fields are only added at the end */
	enum hs_event_type type;
	hs_port_t *port;         /* valid during the call */
	uint16_t queue;          /* HS_EVENT_BROKEN: the queue (pair) index */
	bool link_up;            /* HS_EVENT_LINK: the new state */
	const char *reason;      /* HS_EVENT_BROKEN: text, valid during the call */
};

typedef void (*hs_event_fn)(void *opaque, const struct hs_event *ev);

/* Sets (fn non-NULL) or clears the switch's event callback. Events are
 * delivered one at a time, in the thread where they happen (the loop
 * thread, a worker, a sender's thread in the middle of a round), so the
 * callback has the log callback's rules: thread-safe, quick, and no call
 * back into the library (hand the event to another thread if it must do
 * more). When this returns, the previous callback is not running and will
 * not be called again. Any thread except from inside the callback. */
HS_EXTERN int hs_switch_set_event_fn(hs_switch_t *sw, hs_event_fn fn, void *opaque);

/* ---- Counters ------------------------------------------------------------ */

/* Every place the switch can drop a frame has a reason and a counter. */
enum hs_drop_reason {
	HS_DROP_RUNT = 0,      /* shorter than an Ethernet header */
	HS_DROP_OVERSIZE,      /* longer than the port's MTU allows, or larger
				  than any buffer the receiver can post */
	HS_DROP_BAD_SRC_MAC,   /* multicast or all-zero source address */
	HS_DROP_VLAN,          /* VLAN not allowed on the port */
	HS_DROP_SAME_PORT,     /* destination learned on the ingress port */
	HS_DROP_NO_BUFFER,     /* rx_no_buffer: receiver had no buffers and
				  the backlog was full */
	HS_DROP_BAD_OFFLOAD,   /* inconsistent checksum/GSO metadata or
				  headers that cannot be segmented */
	HS_DROP_PORT_DOWN,     /* destination link down, port or queue going away */
	HS_DROP_BAD_DESC,      /* the backend rejected a malformed frame from
				  the peer (bad descriptor, address, length) */
	HS_DROP_COPY_ERROR,    /* the backend's copy hook failed */
	HS_DROP_NO_ROUTE,      /* flood with no other member in the VLAN */
	HS_DROP_MIRROR_PORT,   /* sent by the peer of a mirror output port */
	HS_DROP__COUNT         /* reasons this header knows; grows */
};

/* The drops arrays below have room for HS_DROP_SLOTS reasons, so that new
 * reasons do not change the structs' size: a program built against an
 * older header reads the reasons it knows (HS_DROP__COUNT of its time)
 * and the slots after them stay zero for it. */
#define HS_DROP_SLOTS 32

/* Stable, short name for a drop reason ("rx_no_buffer", ...). */
HS_EXTERN const char *hs_drop_reason_name(enum hs_drop_reason r);

/* Counters of one port. "rx" is what the switch received from the port's
 * peer; "tx" is what it delivered to the peer. */
struct hs_port_stats {
	uint64_t rx_packets, rx_bytes;
	uint64_t tx_packets, tx_bytes;
	uint64_t rx_broadcast, rx_multicast;
	uint64_t rx_flooded;      /* unknown unicast received and flooded */
	uint64_t tx_notify;       /* notifications sent for delivered frames */
	uint64_t rx_notify;       /* completion notifications to the sender */
	uint64_t tx_backlogged;   /* frames that waited in the backlog */
	uint64_t tx_gso_segments; /* frames cut from GSO frames in software */
	uint64_t tx_csum_sw;      /* checksums completed in software */
	uint64_t fdb_entries;     /* MACs currently learned on the port */
	uint64_t fdb_limit_hits;  /* learning refused/evicted by mac_limit */
	uint64_t drops[HS_DROP_SLOTS]; /* by reason; [0, HS_DROP__COUNT) used */
	/* Added after HS_PORT_STATS_SIZE_V1: filled when the caller's struct has it. */
	uint64_t tx_lock_sleeps;  /* deliveries to the port that found its
				     egress queue lock busy past a short spin
				     and slept for it: contention among the
				     threads switching toward this port */
};

#define HS_PORT_STATS_SIZE_V1 (offsetof(struct hs_port_stats, drops) + sizeof(uint64_t) * HS_DROP_SLOTS)

struct hs_switch_stats {
	uint32_t n_ports;
	/* these two lines are sums over every port the switch has had: a
	 * port deleted leaves its share in them (they never go back) */
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t drops[HS_DROP_SLOTS]; /* summed over ports, by reason */
	/* forwarding table */
	uint64_t fdb_entries, fdb_capacity;
	uint64_t fdb_learned, fdb_moved, fdb_aged, fdb_evicted;
	uint64_t fdb_static_refused; /* learning that hit a static entry */
	/* data path */
	uint64_t rounds;          /* rounds that moved at least one frame */
	uint64_t rounds_sender;   /* ... in the sender's (caller's) context */
	uint64_t rounds_worker;   /* ... in an offload worker */
	uint64_t handoffs;        /* queues an idle worker took over (handed
				     off by a sender, or woken by their fd) */
	uint64_t worker_sleeps;   /* times a worker went to sleep */
	uint32_t workers_idle;    /* workers asleep now */
	uint64_t handbacks;       /* queues a busy worker gave back to their
				     sender's thread (offload.c, "hand back") */
	uint64_t quiet_releases;  /* queues a busy worker let go after poll_us
				     without a frame (offload.c, "release
				     quiet"); their next kick or hs_port_kick
				     brings them back */
};

#define HS_SWITCH_STATS_SIZE_V1 (offsetof(struct hs_switch_stats, workers_idle) + sizeof(uint32_t))

/* Sums the per-queue and per-thread counters. Any thread. The macro passes
 * the caller's sizeof, so the struct can grow: the library fills what
 * both know and zeroes the rest of the caller's struct. -EINVAL below
 * HS_SWITCH_STATS_SIZE_V1. */
HS_EXTERN int hs_switch_get_stats_sized(hs_switch_t *sw, struct hs_switch_stats *st,
					size_t size);
#define hs_switch_get_stats(sw, st) hs_switch_get_stats_sized((sw), (st), sizeof(*(st)))

/* Counters of one offload worker. The caller sets `size` to
 * sizeof(struct hs_worker_stats) as its header has it; the library fills
 * that many bytes at most (fields added later stay untouched for callers
 * built against an older header) and sets `size` to what it filled. */
struct hs_worker_stats {
	uint32_t size;     /* in: the caller's sizeof; out: bytes filled */
	int32_t cpu;       /* the CPU it is pinned to, -1: not pinned */
	uint64_t rounds;   /* rounds that moved at least one frame */
	uint64_t handoffs; /* queues it took over */
	uint64_t sleeps;   /* times it went to sleep */
	uint64_t handbacks; /* queues it gave back to their sender, busy */
	uint64_t quiet_releases; /* queues it let go, quiet while it was busy */
};
#define HS_WORKER_STATS_SIZE_V1 32 /* the first layout: size to sleeps */

/* Workers are numbered 0..n_workers-1. Any thread. Returns 0, -EINVAL
 * (size below HS_WORKER_STATS_SIZE_V1) or -ENOENT (no such worker). */
HS_EXTERN int hs_switch_worker_stats(hs_switch_t *sw, unsigned worker,
				     struct hs_worker_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_SWITCH_H */
