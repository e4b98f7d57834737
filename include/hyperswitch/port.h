/*
 * hyperswitch/port.h - ports: attachment points of a switch.
 *
 * A port is one backend instance ("mem", "vhost-user", "tap", or a backend
 * the host registered) with 1..N queue pairs, a VLAN mode, limits and
 * counters.
 *
 * Threading and ownership:
 *  - hs_port_add/hs_port_del: any thread, at any time, also while traffic
 *    flows through the switch, but not from inside a library callback
 *    (-EDEADLK). They are serialised per switch.
 *  - The switch owns the port; the handle stays valid until hs_port_del()
 *    returns (or the switch is destroyed). hs_port_del() waits until no
 *    thread processes the port any more, then closes its backend.
 *  - A thread that may use a handle while another deletes the port (a
 *    management thread reading counters while the VMM tears a device
 *    down) holds it: hs_port_hold, or hs_port_find_hold. A held handle
 *    outlives hs_port_del: on a deleted port hs_port_name and
 *    hs_port_data still work, hs_port_link_up is false, hs_port_get_stats
 *    and hs_port_backend_counters return -ENODEV, hs_port_del returns
 *    -ENODEV, so do hs_port_quiesce and hs_port_resume; nothing else may
 *    be called. hs_port_release drops one hold (the last reference frees
 *    the handle; a release without a hold is refused and logged);
 *    release every hold before destroying the switch. Deleting a port
 *    whose link is up reports HS_EVENT_LINK (down).
 *  - hs_port_kick, hs_port_set_peer_state, getters and stats: any thread
 *    while the handle is valid.
 */
#ifndef HYPERSWITCH_PORT_H
#define HYPERSWITCH_PORT_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum hs_vlan_mode {
	HS_VLAN_ACCESS = 0, /* one VLAN, frames untagged on the wire */
	HS_VLAN_TRUNK = 1,  /* a set of VLANs, frames tagged (802.1Q) */
};

/* hs_port_config.flags */
#define HS_PORT_NO_LEARN 0x01 /* never learn source MACs from this port */
#define HS_PORT_NO_FLOOD 0x02 /* do not send flooded frames to this port
				 (only frames for MACs learned/static on it) */

#define HS_PORT_NAME_MAX 32 /* including the terminating NUL */

/* Port configuration. Valid when zero-initialised. */
struct hs_port_config {
	uint32_t size;             /* bytes the caller filled: sizeof(struct
				      hs_port_config), or 0 for the first
				      layout (HS_PORT_CONFIG_SIZE_V1) */
	const char *name;          /* unique in the switch; NULL -> "portN" */
	const char *backend;       /* backend name; NULL -> "mem" */
	const void *backend_config;/* the backend's own config struct (e.g.
				      struct hs_mem_config), or NULL */
	size_t backend_config_size;/* sizeof(*backend_config): backends take
				      smaller (older) and bigger (newer, zero
				      tail) structs, see types.h */

	enum hs_vlan_mode vlan_mode;
	uint16_t vlan;             /* access: its VLAN (0 -> 1); trunk: the
				      native VLAN that untagged frames join
				      and leave untagged (0 -> none: untagged
				      frames are dropped) */
	const uint16_t *trunks;    /* trunk: allowed VLANs; NULL -> 1..4094 */
	uint16_t n_trunks;

	uint32_t mac_limit;        /* MACs this port may hold in the table;
				      0 -> the switch's fdb_port_limit */
	uint32_t mtu;              /* 0 -> 1500; largest frame is mtu + 14
				      (+4 when tagged); a GSO frame may be
				      larger, its segments may not (headers
				      plus gso_size) */
	uint32_t flags;            /* HS_PORT_* */
	void *data;                /* host's own pointer: hs_port_data() */
	/* fields added later go here, and HS_PORT_CONFIG_SIZE_V1 stays */
};
#define HS_PORT_CONFIG_SIZE_V1 (offsetof(struct hs_port_config, data) + sizeof(void *))

/* Adds a port. `cfg` is copied. On success stores the handle in *out
 * (which may be NULL) and returns 0. Errors: -EINVAL bad config, -ENOENT
 * unknown backend, -EEXIST name in use, -ENOSPC max_ports reached, or the
 * backend's own error. */
HS_EXTERN int hs_port_add(hs_switch_t *sw, const struct hs_port_config *cfg,
			  hs_port_t **out);

/* Removes a port, also while traffic flows: it stops being a destination,
 * its MACs are forgotten, threads processing it let go, then its backend
 * is closed and the handle freed (unless held: see above). Frames for it
 * still in flight are dropped and counted (port_down). Returns 0, -EINVAL,
 * -ENODEV (a held handle of a port deleted already), or -EDEADLK when
 * called from a data-path callback. */
HS_EXTERN int hs_port_del(hs_port_t *port);

/* What hs_port_reconfigure changes (the other fields of its config are
 * ignored): */
#define HS_PORT_SET_VLAN      0x1 /* vlan_mode, vlan, trunks, n_trunks */
#define HS_PORT_SET_MTU       0x2 /* mtu */
#define HS_PORT_SET_MAC_LIMIT 0x4 /* mac_limit */
#define HS_PORT_SET_FLAGS     0x8 /* flags (HS_PORT_NO_LEARN, HS_PORT_NO_FLOOD) */
#define HS_PORT_SET_ALL       0xf

/* Changes settings of a port in place: its backend, peer connection,
 * queues, counters and the MACs it keeps stay. Only the fields `what`
 * names are read from `cfg` (checked as hs_port_add checks them).
 *  - VLAN and flags: the port is quiesced for the change (its peer's
 *    frames wait; frames for it wait in its backlog, dropped and counted
 *    as no_buffer only if that fills, as for a receiver out of buffers).
 *    Every thread sees the old VLANs or the new ones, never a mix, so a
 *    VLAN the port keeps loses nothing. When no thread decides with the
 *    old settings any more, frames still waiting that the port no longer
 *    takes as they were formatted (a VLAN it left, or tagged where it now
 *    wants them untagged, or the other way round) are dropped and counted
 *    (HS_DROP_VLAN); after the port resumes, its learned MACs in VLANs it
 *    left are forgotten; static entries stay. Flooding follows the new
 *    settings (flooded frames already waiting are delivered). Turning
 *    HS_PORT_NO_LEARN on keeps what was learned until it ages.
 *  - MTU: rounds that start after the call use it (the smaller of it and
 *    the peer's, hs_port_set_mtu, is in force). A backend's own MTU (a
 *    tap device's, the MTU a vhost-user port offers its guest) does not
 *    change.
 *  - MAC limit: a port above a lowered limit keeps its entries until
 *    they age; a new MAC then replaces one of its own.
 * Threading: like hs_port_add (any thread, not from a data-path
 * callback). Returns 0, -EINVAL (bad config or `what`), -ENODEV (a held
 * handle of a deleted port), -EDEADLK, or -ENOMEM (nothing changed). */
HS_EXTERN int hs_port_reconfigure(hs_port_t *port, const struct hs_port_config *cfg,
				  uint32_t what);

/* Finds a port by name; -ENOENT if none. */
HS_EXTERN int hs_port_find(hs_switch_t *sw, const char *name, hs_port_t **out);
/* The same, and with `hold` the handle is held (atomically with the
 * lookup: it cannot be deleted in between); release it with
 * hs_port_release. */
HS_EXTERN int hs_port_find_hold(hs_switch_t *sw, const char *name, bool hold,
				hs_port_t **out);
/* Holds a handle the caller knows is valid now (any thread): it stays
 * usable, as described above, after the port is deleted. */
HS_EXTERN int hs_port_hold(hs_port_t *port);
HS_EXTERN void hs_port_release(hs_port_t *port);

HS_EXTERN const char *hs_port_name(const hs_port_t *port);
HS_EXTERN hs_switch_t *hs_port_switch(const hs_port_t *port);
HS_EXTERN void *hs_port_data(const hs_port_t *port);
HS_EXTERN void hs_port_set_data(hs_port_t *port, void *data);
HS_EXTERN uint16_t hs_port_n_queues(const hs_port_t *port);
/* Offloads the port's receiver accepts now (HS_CAP_*). */
HS_EXTERN uint32_t hs_port_caps(const hs_port_t *port);
HS_EXTERN bool hs_port_link_up(const hs_port_t *port);
/* The port's access VLAN, or a trunk's native VLAN (0: none); -ENODEV
 * for a deleted port's held handle, -EINVAL for NULL. Any thread. */
HS_EXTERN int hs_port_pvid(const hs_port_t *port);

struct hs_port_stats;
/* Sums the port's per-queue counters into *st (the macro passes the
 * caller's sizeof: see hs_switch_get_stats). -ENODEV for a deleted port's
 * held handle. */
HS_EXTERN int hs_port_get_stats_sized(const hs_port_t *port, struct hs_port_stats *st,
				      size_t size);
#define hs_port_get_stats(port, st) hs_port_get_stats_sized((port), (st), sizeof(*(st)))

/* Calls cb once per backend-specific counter of the port (e.g. vhost-user:
 * connects, disconnects, bad_messages, broken_rings), by name. Any thread
 * that may use the handle (a held one too: -ENODEV once deleted). Returns
 * 0, -EINVAL or -ENODEV. A backend without such counters calls cb never.
 * This and hs_port_get_stats register the calling thread with the
 * library's RCU (liburcu-qsbr) until it exits; a host thread that uses
 * liburcu-qsbr itself must not call them (see src/core/rcu.c). */
HS_EXTERN int hs_port_backend_counters(const hs_port_t *port,
				       void (*cb)(void *arg, const char *name, uint64_t value),
				       void *arg);

/*
 * Sender-context processing: tells the switch that the port's peer has
 * queued frames on `queue` (a VMM calls it when its guest kicks). If an
 * offload worker is idle the queue is handed to it; otherwise the frames
 * are switched right here, in the caller's thread, before it returns.
 * Returns the number of frames switched in the caller's thread (0 when
 * handed off, or when another thread is processing the queue and will see
 * the new frames), or a negative errno: -EINVAL, -EDEADLK (called from
 * inside a round), -EBUSY (every sender context busy and the queue has no
 * kick fd to take the signal), -ENOMEM.
 */
HS_EXTERN int hs_port_kick(hs_port_t *port, uint16_t queue);

/*
 * A VMM that knows its vCPUs' states says whether the peer behind a queue
 * is running (it will see new frames: notifications are coalesced, one
 * per round at most, and only if the peer asked) or blocked (it is
 * notified at the end of the batch that filled its queue).
 * HS_PEER_UNKNOWN returns to the backend's own signals.
 */
HS_EXTERN int hs_port_set_peer_state(hs_port_t *port, uint16_t queue,
				     enum hs_peer_state state);
/* The peer state in force for a queue (whoever set it: the VMM, or a
 * backend that reads it, as the Xen backend does in dom0), or -EINVAL. */
HS_EXTERN int hs_port_peer_state(const hs_port_t *port, uint16_t queue);

/* ---- Mirrors -------------------------------------------------------------
 * A mirror copies the frames one port receives (HS_MIRROR_RX: what its
 * peer sent, once they passed the switch's checks) and/or the frames the
 * switch delivers to it (HS_MIRROR_TX) to another port, the output: e.g. a
 * tap that tcpdump reads, or a mem port an application captures from.
 * Each copy is delivered like any frame: formatted for the output port's
 * VLAN mode (an access output gets untagged frames, a trunk output tagged
 * ones), counted in its tx counters, and dropped and counted
 * (rx_no_buffer) when the output has no room; so a slow output never slows
 * the data path beyond the copy itself. A frame that several mirrored
 * ports get in one round reaches an output they share once.
 *
 * An output port is for mirroring only: it leaves flooding, what its peer
 * sends is dropped (HS_DROP_MIRROR_PORT), and no MAC leads to it: its
 * entries, static ones too, are removed and no static entry may name it. A port is either a source or an output of mirrors, not both,
 * and a source has at most HS_MIRROR_MAX outputs per direction.
 *
 * Threading: like hs_port_add/hs_port_del (any thread, not from a
 * data-path callback). Deleting either port deletes the mirror: its handle
 * is then invalid. */

typedef struct hs_mirror hs_mirror_t;

#define HS_MIRROR_RX 0x1 /* frames the switch receives from `src` */
#define HS_MIRROR_TX 0x2 /* frames the switch sends to `src` while its link
			    is up (also those `src` then has no room for) */
#define HS_MIRROR_MAX 4

struct hs_mirror_config {
	uint32_t size;  /* sizeof(struct hs_mirror_config): the struct may grow */
	uint32_t flags; /* HS_MIRROR_RX and/or HS_MIRROR_TX */
	hs_port_t *src; /* the port whose traffic is copied */
	hs_port_t *dst; /* the output */
};
#define HS_MIRROR_CONFIG_SIZE_V1 (offsetof(struct hs_mirror_config, dst) + sizeof(void *))

/* Errors: -EINVAL (bad config, ports of another switch, src == dst, a port
 * that would be both source and output), -EEXIST (src already mirrored to
 * dst), -ENOSPC (src has HS_MIRROR_MAX outputs), -ENOMEM. */
HS_EXTERN int hs_mirror_add(hs_switch_t *sw, const struct hs_mirror_config *cfg,
			    hs_mirror_t **out);
/* Stops the mirror and frees the handle; the output port returns to
 * normal switching when no other mirror uses it. Returns 0, -EINVAL,
 * -EDEADLK (from a data-path callback) or -ENOMEM (then it stays). */
HS_EXTERN int hs_mirror_del(hs_mirror_t *m);
/* Changes which frames of its source the mirror copies (HS_MIRROR_RX
 * and/or HS_MIRROR_TX), in place: frames keep being copied the ways both
 * the old and the new flags name. Returns 0, -EINVAL (bad flags, NULL),
 * -ENOSPC (the source has HS_MIRROR_MAX outputs a way the mirror would
 * take on), -EDEADLK or -ENOMEM (then it is as it was). As for
 * hs_mirror_del, a handle whose port was deleted is gone: not to be
 * passed. */
HS_EXTERN int hs_mirror_set_flags(hs_mirror_t *m, uint32_t flags);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_PORT_H */
