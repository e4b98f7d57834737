/*
 * hyperswitch/types.h - types shared by every part of the public API.
 *
 * Conventions used throughout the API:
 *  - Every function that can fail returns 0 (or a non-negative count) on
 *    success and a negative errno value on failure; hs_strerror() turns it
 *    into text.
 *  - Handles (hs_switch_t, hs_port_t) are opaque.
 *  - Config structs are valid when zero-initialised: zero means "default".
 *  - Structs the caller fills can grow (new fields only at the end): the
 *    caller says how many bytes it filled, in a `size` field (0: the
 *    first layout, HS_..._SIZE_V1) or a size argument. A library older
 *    than the caller accepts a bigger struct when the bytes it does not
 *    know are zero (-E2BIG otherwise: the caller asked for something it
 *    cannot do); a newer library zero-extends a smaller one.
 */
#ifndef HYPERSWITCH_TYPES_H
#define HYPERSWITCH_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbol visibility: the library is built with -fvisibility=hidden and
 * exports exactly the functions marked HS_EXTERN. */
#if defined(__GNUC__)
#define HS_EXTERN __attribute__((visibility("default")))
#else
#define HS_EXTERN
#endif

/* Results a caller must look at (a quiesce that failed leaves the port
 * running). */
#if defined(__GNUC__)
#define HS_MUST_CHECK __attribute__((warn_unused_result))
#else
#define HS_MUST_CHECK
#endif

typedef struct hs_switch hs_switch_t;
typedef struct hs_port hs_port_t;

/* Copies a caller's struct of `size` bytes into `out` (`out_size` bytes,
 * the library's layout) by the rules above: -EINVAL when size is below
 * min_size (the first layout), -E2BIG when bytes past out_size are not
 * zero. For backends reading their config (hs_backend_ops.open). */
HS_EXTERN int hs_config_copy(void *out, size_t out_size, const void *in, size_t size,
			     size_t min_size);

/* Returns a static, human-readable string for a (negative) error code. */
HS_EXTERN const char *hs_strerror(int err);

/* ---- Logging ------------------------------------------------------------ */

enum hs_log_level {
	HS_LOG_ERROR = 0,
	HS_LOG_WARN = 1,
	HS_LOG_INFO = 2,
	HS_LOG_DEBUG = 3,
};

/* Host-supplied log sink. Called from any library thread, possibly
 * concurrently: the loop thread, offload workers and the threads of hosts
 * that switch in sender context, also in the middle of a round (the data
 * path logs what a hostile peer did). So it must be thread-safe, must not
 * block for long (a slow sink slows switching; hand lines to another
 * thread if it may) and must not call back into the library. `msg` is
 * only valid during the call and has no newline. The level filter
 * (hs_switch_config.log_level, hs_switch_set_log_level) is applied before
 * the message is formatted. The library never prints on its own: without
 * a callback, logs are discarded. */
typedef void (*hs_log_fn)(void *opaque, enum hs_log_level level,
			  const char *msg);

/* ---- Ethernet ----------------------------------------------------------- */

#define HS_ETH_ALEN 6
#define HS_ETH_HLEN 14
#define HS_VLAN_HLEN 4
#define HS_VLAN_MAX 4094 /* valid VLAN ids are 1..4094 */
/* Largest frame the switch carries: a 64 KiB GSO frame plus its 802.1Q
 * Ethernet header. */
#define HS_FRAME_MAX 65550

/* ---- Offload metadata ---------------------------------------------------- */

/* GSO types, numbered as in the virtio-net header (VIRTIO_NET_HDR_GSO_*). */
enum hs_gso_type {
	HS_GSO_NONE = 0,
	HS_GSO_TCPV4 = 1,
	HS_GSO_UDP = 3, /* UFO: one UDP datagram, IP fragmentation */
	HS_GSO_TCPV6 = 4,
	HS_GSO_UDP_L4 = 5, /* USO: UDP segmentation */
};

/* hs_offload.flags, as VIRTIO_NET_HDR_F_* (plus ECN from gso_type). */
#define HS_OFF_NEEDS_CSUM 0x01 /* checksum at csum_start+csum_offset must be
				  completed over [csum_start, len) */
#define HS_OFF_DATA_VALID 0x02 /* checksums were already verified */
#define HS_OFF_GSO_ECN 0x04    /* TCP GSO frame carries ECN (CWR) */

/*
 * Offload metadata of one frame, with virtio-net header semantics.
 * A frame with gso_type != HS_GSO_NONE is a "super frame" that the receiver
 * (or the switch, if the receiver cannot) cuts into gso_size payload pieces,
 * each behind a copy of the first hdr_len bytes.
 */
struct hs_offload {
	uint8_t flags;       /* HS_OFF_* */
	uint8_t gso_type;    /* enum hs_gso_type */
	uint16_t hdr_len;    /* L2..L4 header bytes (GSO); a hint, re-derived */
	uint16_t gso_size;   /* payload bytes per segment (GSO) */
	uint16_t csum_start; /* from frame start (HS_OFF_NEEDS_CSUM) */
	uint16_t csum_offset; /* from csum_start */
};

/* What a port's receiver accepts (hs_port caps): frames outside these are
 * finished in software by the switch (checksummed, segmented). */
#define HS_CAP_CSUM 0x01	/* frames with HS_OFF_NEEDS_CSUM */
#define HS_CAP_GSO_TCPV4 0x02
#define HS_CAP_GSO_TCPV6 0x04
#define HS_CAP_GSO_UDP 0x08	/* UFO */
#define HS_CAP_GSO_UDP_L4 0x10	/* USO */
#define HS_CAP_GSO_ECN 0x20
#define HS_CAP_ALL 0x3f

/* ---- Frames as references into the sender's memory ---------------------- */

/* hs_seg.flags */
#define HS_SEG_FOREIGN 0x1 /* `base` is not addressable: `ref` names the
			      memory for the owning backend's copy hook */

/* One contiguous piece of a frame (or of a destination buffer). */
struct hs_seg {
	uint8_t *base;   /* address, NULL when HS_SEG_FOREIGN */
	uint32_t len;    /* bytes */
	uint32_t flags;  /* HS_SEG_* */
	uint64_t ref;    /* backend-defined reference (HS_SEG_FOREIGN) */
};

#define HS_PKT_INLINE_SEGS 2

/*
 * A packet descriptor: a *reference* to a frame that still lives in the
 * sender's memory, valid from the backend's recv_burst until its recv_done
 * (see backend.h). The switch copies it exactly once per receiver, straight
 * into the receiver's posted buffers.
 *
 * Rule for backends: the first segments must hold at least the first
 * min(len, HS_PKT_HDR_MIN) bytes in addressable memory (not FOREIGN), so the
 * switch can classify the frame and patch headers when segmenting.
 */
#define HS_PKT_HDR_MIN 128

struct hs_pkt {
	struct hs_seg *segs;     /* nsegs segments: `seg` or backend storage */
	uint16_t nsegs;
	uint16_t _rsvd;
	uint32_t len;            /* frame length, sum of the segments */
	struct hs_offload off;   /* offload metadata as the sender gave it */
	uint64_t token;          /* the backend's own completion token */
	struct hs_seg seg[HS_PKT_INLINE_SEGS]; /* storage for short frames */
};

/* ---- Peer state (VM-state-aware batching) -------------------------------- */

enum hs_peer_state {
	HS_PEER_UNKNOWN = 0, /* backend signals decide (default) */
	HS_PEER_RUNNING = 1, /* peer runs and will look at its queue soon */
	HS_PEER_BLOCKED = 2, /* peer sleeps until notified */
};

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_TYPES_H */
