/*
 * hyperswitch/backend.h - the backend plugin interface.
 *
 * A backend connects ports to the outside: guests (vhost-user), the host
 * kernel (tap), the host program itself (mem), or anything a user writes.
 * It is one const struct hs_backend_ops table plus a private state struct
 * per port; the switch calls it only through the table. The built-in
 * backends register through hs_backend_register() like any user backend.
 *
 * Lifecycle of one port's backend instance:
 *
 *     open -> start -> [data path calls] -> stop -> close
 *
 *  - open   (control thread, may block): parse config, allocate, fill
 *           struct hs_port_info. The port exists but carries no traffic.
 *  - start  (control thread, may block, optional): the port has joined
 *           the switch; data-path calls may begin as soon as it returns
 *           (even during it, for queues the backend already announced).
 *  - stop   (control thread, may block, optional): no data-path call is in
 *           progress and none will come; release peers, sockets, mappings.
 *  - close  (control thread, may block): free everything. Never fails.
 *
 * The data path moves frames in rounds. For one ingress queue, one thread
 * at a time (the queue's owner) calls:
 *
 *     recv_burst -> [classify; for each destination queue, under that
 *     queue's lock: send_reserve -> copy -> send_commit] -> recv_done
 *     -> notify (outside locks)
 *
 * Nothing on the data path may block, allocate per frame, or take a lock
 * per frame. Ownership of frames:
 *  - recv_burst hands out references (struct hs_pkt) to frames still in the
 *    peer's memory; they stay valid, and the peer's buffers stay reserved,
 *    until recv_done returns them. recv_done is called exactly once for
 *    every frame recv_burst returned, in the same order, whatever happened
 *    to the frame (delivered, backlogged, dropped).
 *  - send_reserve hands out destination buffers (struct hs_iobuf) for
 *    frames described by struct hs_out; the switch writes exactly out.len
 *    bytes into each and then calls send_commit for the same frames
 *    before releasing the queue lock.
 */
#ifndef HYPERSWITCH_BACKEND_H
#define HYPERSWITCH_BACKEND_H

#include <stdarg.h>

#include <hyperswitch/types.h>
#include <hyperswitch/switch.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on incompatible changes to struct hs_backend_ops. */
#define HS_BACKEND_ABI 1

/* Filled by ops->open. */
struct hs_port_info {
	uint16_t n_queues; /* queue pairs, 1..HS_MAX_QUEUES */
	uint32_t caps;     /* HS_CAP_* the peer accepts on receive; may change
			      later with hs_port_set_caps() */
	bool link_up;      /* initial link state (hs_port_set_link later) */
};

#define HS_MAX_QUEUES 64

/* The switch never passes more than this many frames to one send_reserve
 * (backends size their per-reservation records with it). */
#define HS_RESERVE_MAX 256

/* One frame the switch is about to write into a destination. */
struct hs_out {
	uint32_t len;          /* bytes of the frame as written */
	struct hs_offload off; /* metadata to present to the receiver; only
				  offloads within the port's caps appear */
};

/* The buffers reserved for one outgoing frame: the frame's bytes go into
 * segs[0], then segs[1], ... The backend owns the array (it stays valid
 * until send_commit). nsegs == 0 means the frame can never fit this
 * receiver's buffers: the switch drops it (oversize). */
struct hs_iobuf {
	struct hs_seg *segs;
	uint16_t nsegs;
};

/* One copy for a backend copy hook: len bytes from src (at src_off) to
 * dst (at dst_off). Either segment may be HS_SEG_FOREIGN. */
struct hs_copy_op {
	const struct hs_seg *src;
	const struct hs_seg *dst;
	uint32_t src_off;
	uint32_t dst_off;
	uint32_t len;
	uint32_t flags; /* HS_COPY_* */
};

/* src is a segment of the sending frame itself (not a switch scratch
 * buffer): its bytes stay valid, and the switch does not change them,
 * until the destination's send_commit for this frame has returned. A
 * destination's hook may then defer the copy to send_commit, e.g. to hand
 * the sender's memory to one writev() (the tap backend does). Without the
 * flag, the bytes must be copied before the hook returns. */
#define HS_COPY_SRC_STABLE 0x1

/* Events a queue can signal or be sent (bit flags). */
#define HS_EV_KICK 0x1      /* peer -> switch: frames queued for sending */
#define HS_EV_POSTED 0x2    /* peer -> switch: receive buffers posted */
#define HS_EV_DELIVERED 0x4 /* switch -> peer: frames were delivered */
#define HS_EV_COMPLETED 0x8 /* switch -> peer: its frames were consumed */
/* With HS_EV_KICK in hs_port_set_queue_fd: the fd is not an eventfd but a
 * level-triggered source (a tap, a socket): the switch only polls it, never
 * reads or writes it; readiness ends when recv_burst has taken everything. */
#define HS_EV_FD_LEVEL 0x100

struct hs_backend_ops {
	const char *name; /* unique, e.g. "mem"; at most 31 characters */
	uint32_t abi;     /* HS_BACKEND_ABI */

	/* -- control (see lifecycle above) -- */
	int (*open)(hs_port_t *port, const void *config, size_t config_size,
		    void **priv, struct hs_port_info *info);
	int (*start)(void *priv);  /* optional */
	void (*stop)(void *priv);  /* optional */
	void (*close)(void *priv);

	/* -- data path, by the owner of ingress queue q -- */

	/* Fills up to max descriptors for frames the peer sent on queue q;
	 * returns how many. Frames that fail validation are not returned:
	 * the backend completes them itself and counts them
	 * (hs_port_count_drop, HS_DROP_BAD_DESC). */
	unsigned (*recv_burst)(void *priv, uint16_t q, struct hs_pkt *pkts,
			       unsigned max);
	/* Returns the n frames to the peer. Returns HS_EV_COMPLETED if the
	 * peer asked to be told, else 0; the switch then calls notify. */
	unsigned (*recv_done)(void *priv, uint16_t q, const struct hs_pkt *pkts,
			      unsigned n);

	/* -- data path, under the lock of egress queue q -- */

	/* Reserves buffers for out[0..n) in order; returns how many it could
	 * (fewer when the peer has not posted enough). Must not publish. */
	unsigned (*send_reserve)(void *priv, uint16_t q, const struct hs_out *out,
				 unsigned n, struct hs_iobuf *bufs);
	/* Publishes the frames of the last send_reserve: out and n are the
	 * same as there, n being what it returned. Entries given nsegs == 0
	 * are skipped; an entry whose out.len the switch set to 0 was not
	 * written (copy failure): give its buffers back or publish it empty.
	 * Returns HS_EV_DELIVERED if the peer asked to be notified, else 0. */
	unsigned (*send_commit)(void *priv, uint16_t q, const struct hs_out *out,
				unsigned n);

	/* -- data path, outside any lock -- */

	/* Sends the peer the notification(s) `ev` (HS_EV_DELIVERED and/or
	 * HS_EV_COMPLETED) for queue q: an interrupt, an eventfd write. */
	void (*notify)(void *priv, uint16_t q, unsigned ev);

	/* Optional copy hook, for memory the switch cannot address
	 * (HS_SEG_FOREIGN): performs the n copies, all at once (e.g. one
	 * batched grant-copy hypercall). Called with the destination queue's
	 * lock held. The ops that fill one foreign destination frame come
	 * (across calls) in order of dst_off and cover it once, without gaps.
	 * Returns 0 or a negative errno; on error every frame touched by the
	 * batch counts as HS_DROP_COPY_ERROR. */
	int (*copy)(void *priv, const struct hs_copy_op *ops, unsigned n);

	/* Optional, for adaptive polling: enable (or suppress) the peer's
	 * signals `ev` (HS_EV_KICK or HS_EV_POSTED) on queue q. When enabling,
	 * returns true if work is already pending (the caller must then not
	 * sleep); for HS_EV_POSTED, true if buffers are posted now (the switch
	 * has fenced since it published that frames wait; a backend that
	 * signals posts through hs_port_posted must still answer this, or a
	 * post made while the switch looked is lost). Called by the ingress
	 * owner (HS_EV_KICK) or under the egress lock (HS_EV_POSTED). */
	bool (*set_notify)(void *priv, uint16_t q, unsigned ev, bool enable);

	/* Optional: reports backend-specific counters by name. Any thread. */
	void (*counters)(void *priv,
			 void (*cb)(void *arg, const char *name, uint64_t value),
			 void *arg);
};

/* Registers a backend for hs_port_add(cfg.backend = ops->name). The table
 * must outlive every port using it. Thread-safe. Errors: -EINVAL (missing
 * mandatory op, ABI mismatch, bad name), -EEXIST, -ENOSPC. */
HS_EXTERN int hs_backend_register(const struct hs_backend_ops *ops);
/* Unregisters; -EBUSY while ports use it, -ENOENT if unknown. */
HS_EXTERN int hs_backend_unregister(const char *name);

/* ---- Calls a backend makes into the switch ------------------------------ */

/* The private state ops->open stored for `port`, if the port belongs to
 * the backend `ops`; NULL otherwise. Lets a backend's own API (such as
 * hs_mem_*) check the handles it is given. Any thread. */
HS_EXTERN void *hs_port_backend_priv(const hs_port_t *port,
				     const struct hs_backend_ops *ops);

/* Calls fn(priv, arg) if `port` belongs to the backend `ops` and is not
 * being deleted, such that its private state cannot be freed during the
 * call (a backend's own API, called from any thread while another may be
 * deleting the port, goes through here). fn must not block for long nor
 * delete ports. Returns fn's result, or -ENODEV (another backend's port,
 * or one being deleted). */
HS_EXTERN int hs_port_backend_call(hs_port_t *port, const struct hs_backend_ops *ops,
				   int (*fn)(void *priv, void *arg), void *arg);

/* The peer's receive capabilities changed (e.g. after feature
 * negotiation). Any thread. */
HS_EXTERN int hs_port_set_caps(hs_port_t *port, uint32_t caps);

/* How many of the port's queues (the first n, 1..n_queues) the peer uses
 * now; frames are delivered to those only. Frames waiting for buffers on
 * a queue beyond n are dropped (HS_DROP_PORT_DOWN): the peer posts there
 * no more. Any thread, but not from the port's own send_reserve,
 * send_commit, copy or set_notify (they run under a queue's lock, which
 * this takes). */
HS_EXTERN int hs_port_set_active_queues(hs_port_t *port, uint16_t n);

/* Link state. While down, frames for the port are dropped
 * (HS_DROP_PORT_DOWN) and no MAC is learned behind it (frames it still
 * returns are switched). A link that goes down loses the MACs learned
 * behind it (static entries stay), as a bridge's disabled port does:
 * frames for them are flooded until they are learned again. Any thread,
 * but not from an hs_fdb_dump or hs_fdb_walk_macs callback (the table's
 * lock is held there). */
HS_EXTERN int hs_port_set_link(hs_port_t *port, bool up);

/* A backend found its peer breaking the rules on queue pair q and stopped
 * it: logged, and HS_EVENT_BROKEN goes to the host's event callback.
 * Any thread. */
HS_EXTERN int hs_port_report_broken(hs_port_t *port, uint16_t q, const char *reason);

/* The peer's own MTU (e.g. what a VMM configured for its guest): frames
 * from the port larger than the smaller of it and the port's configured
 * MTU are dropped (HS_DROP_OVERSIZE). 0 goes back to the configured MTU.
 * -EINVAL below 68. Any thread. */
HS_EXTERN int hs_port_set_mtu(hs_port_t *port, uint32_t mtu);

/* Sets the file descriptor the data path waits on for `ev` (HS_EV_KICK:
 * the peer queued frames; HS_EV_POSTED: it posted receive buffers) on
 * queue q; -1 removes it. Readiness is consumed by reading 8 bytes
 * (eventfd semantics). The switch may also write to a HS_EV_KICK fd, to
 * hand the queue to an idle worker. HS_EV_KICK | HS_EV_FD_LEVEL: see
 * HS_EV_FD_LEVEL (such a queue is switched by whichever thread polls it).
 * Control thread, from ops->start on (queues exist once open has
 * returned). */
HS_EXTERN int hs_port_set_queue_fd(hs_port_t *port, uint16_t q, unsigned ev,
				   int fd);

/* The peer posted receive buffers on queue q: frames waiting in the
 * switch's backlog for it are delivered now, in the calling thread. Any
 * thread; cheap when the backlog is empty (a fence and a load). Call it
 * after the buffers are visible to send_reserve. A post that races a
 * delivery is not lost: the switch marks frames as waiting, fences, and
 * only then looks for buffers (set_notify(HS_EV_POSTED), or without
 * set_notify another send_reserve), while this call fences before it
 * reads the mark, so one side or the other delivers them. */
HS_EXTERN void hs_port_posted(hs_port_t *port, uint16_t q);

/* Counts n frames the backend could not hand to its peer after the switch
 * delivered them (e.g. the kernel refused a write: HS_DROP_NO_BUFFER).
 * They count as dropped with `reason`, not as transmitted (tx_packets),
 * so that sent = transmitted + dropped holds. Call from send_commit,
 * under egress queue q's lock. */
HS_EXTERN void hs_port_count_tx_drop(hs_port_t *port, uint16_t q,
				     enum hs_drop_reason reason, unsigned n);

/* Counts n frames dropped by the backend itself (e.g. HS_DROP_BAD_DESC).
 * Data path: call as the owner of ingress queue q. */
HS_EXTERN void hs_port_count_drop(hs_port_t *port, uint16_t q,
				  enum hs_drop_reason reason, unsigned n);

/* Pauses the data path on the port: when it returns 0, no thread is inside
 * a data-path call for it (notify() included) and none will start until
 * the matching hs_port_resume(). Use it around changes the data path must
 * not see half-done (e.g. a new guest memory table). Control threads
 * only: from a data-path callback it fails with -EDEADLK and the port
 * keeps running, so the result must be checked.
 * Nestable: calls may nest (also from several control threads); the port
 * is paused from the first quiesce until the resume that matches it, and
 * a nested quiesce returns only once the port is quiet. hs_port_resume
 * without a quiesce to match returns -EINVAL. A port being deleted still
 * pauses and resumes until its backend's stop has returned (so a
 * backend's own control path, which stop ends, never sees a failure);
 * after that both return -ENODEV (a held handle). */
HS_EXTERN HS_MUST_CHECK int hs_port_quiesce(hs_port_t *port);
HS_EXTERN HS_MUST_CHECK int hs_port_resume(hs_port_t *port);

/* Logs through the switch's log callback, prefixed with the port name. */
HS_EXTERN void hs_port_log(const hs_port_t *port, enum hs_log_level level,
			   const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- Control-plane event sources on the switch's loop ---------------------
 * Callbacks run on the loop's thread (hs_run, or the host loop after
 * hs_switch_attach). Add/del may be called from any thread; del returns
 * only once the callback cannot run any more (unless called from the
 * loop's own thread, where that is immediate). */

typedef struct hs_watch hs_watch_t;
typedef struct hs_timer hs_timer_t;

#define HS_WATCH_READ 0x1
#define HS_WATCH_WRITE 0x2
#define HS_WATCH_ERROR 0x4 /* reported only: hangup or error on the fd */

typedef void (*hs_watch_cb)(hs_watch_t *w, int fd, unsigned events, void *arg);
typedef void (*hs_timer_cb)(hs_timer_t *t, void *arg);

/* Watches fd (which stays the caller's: the switch polls a duplicate of
 * it, so fd may be closed as soon as hs_watch_del has returned, even
 * while the loop thread has yet to let go of its poll). *out is set
 * before cb can first run, on the loop thread, so cb may read it. */
HS_EXTERN int hs_watch_add(hs_switch_t *sw, int fd, unsigned events,
			   hs_watch_cb cb, void *arg, hs_watch_t **out);
/* Changes the events watched for. */
HS_EXTERN int hs_watch_modify(hs_watch_t *w, unsigned events);
HS_EXTERN void hs_watch_del(hs_watch_t *w);

/* Calls cb after `after_ms` (0: on the loop's next turn), then every
 * `repeat_ms` if non-zero. As with hs_watch_add, *out is set before cb
 * can first run. */
HS_EXTERN int hs_timer_add(hs_switch_t *sw, uint64_t after_ms,
			   uint64_t repeat_ms, hs_timer_cb cb, void *arg,
			   hs_timer_t **out);
/* Calls cb `after_ms` from now, then every `repeat_ms` if non-zero,
 * instead of what the timer had. Any thread, its own callback included:
 * a callback that wants another period changes it here rather than
 * deleting its timer and adding another, which a hs_timer_del of the old
 * one on another thread would race. */
HS_EXTERN int hs_timer_modify(hs_timer_t *t, uint64_t after_ms, uint64_t repeat_ms);
HS_EXTERN void hs_timer_del(hs_timer_t *t);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_BACKEND_H */
