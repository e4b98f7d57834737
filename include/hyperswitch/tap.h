/*
 * hyperswitch/tap.h - the "tap" backend: a Linux tap device as a port, so
 * the host kernel's network stack (and anything behind it: a namespace, a
 * bridge, a VMM that hands its guest a tap) is on the switch.
 *
 * The device is opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, one
 * /dev/net/tun file per queue (IFF_MULTI_QUEUE when queues > 1). With
 * offloads on (the default), TUNSETOFFLOAD lets the kernel hand the switch
 * checksum-offloaded and TSO/USO frames, and frames the switch writes keep
 * their offload metadata in the virtio-net header: large frames cross
 * between the kernel and guests unsegmented wherever both sides allow;
 * the switch segments and checksums in software where they do not.
 *
 * Frames to the kernel are written straight from the sender's memory (one
 * writev() per frame, no copy before the kernel's own) when they are large
 * and no software checksum is needed; small ones are staged first.
 *
 * I/O is non-blocking and batched: a round reads up to a burst of frames
 * and writes what the round sends, and the fd's readiness is watched by
 * the switch's adaptive polling. The tap interface moves one frame per
 * read or write; where the library was built with liburing and the
 * kernel allows io_uring and does non-blocking io_uring reads and writes
 * of a tap (Linux 6.4 and later), a round's reads (and its writes) go to
 * the kernel as one batch, one system call for all of them, each op
 * non-blocking (RWF_NOWAIT) and complete before the round goes on, so
 * frames keep their order and no op outlives the round. Otherwise, or
 * with HS_TAP_NO_URING, one read or writev per frame. The rings belong to
 * threads: each thread that moves a tap's frames (the switch's workers,
 * a host thread switching in its own context, the thread that adds a tap
 * port) gets one io_uring, one file, on first use, freed when the thread
 * exits. Deleting a port touches no ring. Writes that
 * the kernel refuses for lack of room (EAGAIN, ENOBUFS) are dropped and
 * counted (rx_no_buffer), never retried in a loop; a frame whose offload
 * metadata the kernel refuses (EINVAL) counts as bad_offload, other
 * refusals as port_down. Besides the port's
 * counters, hs_port_backend_counters gives read_errors and write_errors
 * (the kernel failed a read or write, not for lack of room),
 * tx_by_reference (frames written from the sender's memory),
 * tx_by_reference_staged (large frames copied after all: too many pieces),
 * and rx_uring_calls and tx_uring_calls (io_uring batches that ran, for
 * reads and for writes: 0 when the port does one system call per frame).
 *
 * The port's link follows the device: up while the device is up with a
 * carrier (IFF_UP and IFF_RUNNING), in whatever network namespace it is
 * moved to (a tap moved into a namespace goes down with the move, and up
 * when it is set up there), read at hs_port_add and then from rtnetlink
 * on the switch's loop (hs_run, or the host's loop). While it is down,
 * frames to it count as port_down and are not written. Namespaces are
 * followed without being held (no socket is opened in them, so `ip netns
 * del` still ends a namespace and its devices); the device's namespace is
 * given an id in the switch's own (RTM_NEWNSID) if it has none. Following a
 * device in another namespace needs CAP_NET_ADMIN there and
 * CAP_NET_BROADCAST here; without CAP_NET_ADMIN a device is followed in
 * the switch's own namespace only. Where it cannot be followed, the port
 * logs why and its link stays up. A look that fails for a passing cause
 * (the device moving meanwhile, rtnetlink busy) is tried again, from
 * 100 ms to every 5 s.
 *
 * Errors from the kernel (device gone, permission denied, name clash) are
 * returned by hs_port_add, or, once running, logged; the port's link then
 * goes down and other ports keep running.
 */
#ifndef HYPERSWITCH_TAP_H
#define HYPERSWITCH_TAP_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_TAP_BACKEND "tap"

/* hs_tap_config.flags */
#define HS_TAP_ATTACH 0x1     /* the device must exist already (a persistent
				 tap, or one a VMM made): never create one */
#define HS_TAP_UP 0x2         /* bring the link up (IFF_UP) after opening */
#define HS_TAP_NO_OFFLOAD 0x4 /* no TUNSETOFFLOAD and no offload metadata to
				 the kernel: plain frames both ways */
#define HS_TAP_STAGED 0x8     /* never hand the kernel the sender's memory:
				 every frame is first copied into the
				 backend's staging area (for comparisons; by
				 default, with offloads on, frames of 512
				 bytes or more go to writev() straight from
				 the sender's buffers) */
#define HS_TAP_NO_URING 0x10  /* one read or writev per frame, never
				 io_uring batches (for comparisons; also what
				 a port does when the library has no liburing
				 or the kernel refuses io_uring) */

/* Backend config for hs_port_config.backend_config ("tap"). */
struct hs_tap_config {
	const char *ifname; /* device name (at most 15 characters); NULL or ""
			       lets the kernel pick (tapN) */
	uint32_t flags;     /* HS_TAP_* */
	uint16_t queues;    /* queues (IFF_MULTI_QUEUE when > 1); 0 -> 1 */
	uint16_t mtu;       /* set the device MTU; 0: leave it */
	uint16_t ring;      /* receive buffers per queue, 0 -> 64; frames the
			       kernel sends wait in them for the switch */
};
#define HS_TAP_CONFIG_SIZE_V1 (offsetof(struct hs_tap_config, ring) + sizeof(uint16_t))

/* The device's name (as the kernel named it). NULL if port is not a tap. */
HS_EXTERN const char *hs_tap_ifname(hs_port_t *port);

/* Sets the device's MTU, in whatever network namespace the device is now
 * (as its link is followed, above; moving it into another namespace
 * keeps its addresses and routes there, where deleting and making the
 * port again would lose them). The switch's side of the port is
 * hs_port_reconfigure's (HS_PORT_SET_MTU). Needs CAP_NET_ADMIN over the
 * device's namespace, and CAP_SYS_ADMIN when that is not the caller's
 * (the call enters it from a thread of its own). Blocks on rtnetlink; not
 * from a data-path callback. -EINVAL (not a tap port, mtu outside
 * 68..65535), or the kernel's error (-EINVAL above the device's largest
 * MTU, -EPERM), also logged. */
HS_EXTERN int hs_tap_set_mtu(hs_port_t *port, uint32_t mtu);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_TAP_H */
