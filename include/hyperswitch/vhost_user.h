/*
 * hyperswitch/vhost_user.h - the "vhost-user" backend: a port that is the
 * back-end of a virtio-net device whose front-end is a VMM (QEMU,
 * cloud-hypervisor, ...) or DPDK's virtio-user, over a unix socket
 * (QEMU docs/interop/vhost-user.rst, virtio 1.2).
 *
 * Frames are copied once, guest to guest: from the sender's transmit
 * descriptors straight into the buffers the receiving guest posted.
 *
 * Supported: split and packed rings, EVENT_IDX, INDIRECT_DESC, VERSION_1,
 * MRG_RXBUF, checksum offload both ways, TSO4/6 and USO both ways (GSO
 * frames pass through unsegmented where both ends allow), MQ, MTU; the
 * protocol features MQ, REPLY_ACK, MTU (NET_SET_MTU: larger frames from
 * the guest are dropped as oversize), CONFIGURE_MEM_SLOTS (ADD_MEM_REG,
 * REM_MEM_REG) and STATUS. Live migration: VHOST_F_LOG_ALL with LOG_SHMFD
 * (every guest page the switch writes is marked in the VMM's dirty log),
 * GUEST_ANNOUNCE and RARP (SEND_RARP: a RARP from the guest's MAC enters
 * the switch from the port, so the table moves at once). RESET_DEVICE
 * (the device forgets its configuration, the connection stays). A
 * front-end that polls its rings (kick without an fd,
 * VHOST_USER_VRING_NOFD_MASK) has them looked at every millisecond.
 * Guests behind a virtual IOMMU: IOMMU_PLATFORM with the protocol
 * features IOTLB and BACKEND_REQ (a device IOTLB the front-end fills,
 * misses reported on the back-end channel).
 * Little-endian hosts only; legacy (pre-1.0) guests must share the host's
 * byte order (cross-endian is not offered, so QEMU refuses the others).
 *
 * Message order is the front-end's: a ring's size, position and
 * addresses may come in any order and are checked together when the ring
 * starts (SET_VRING_KICK); its size, position and the features cannot
 * change while it runs (-EBUSY, until GET_VRING_BASE stops it). Memory
 * regions must lie within their files, on tmpfs, hugetlbfs or ramfs
 * (memfd, /dev/shm, /dev/hugepages); a file shrunk under a mapping stops
 * that port's rings (backend counter memory_faults), not the process.
 * Kick, call and error fds must be eventfds (made non-blocking). The
 * backend installs a process-wide SIGBUS handler for that, chained to
 * the one it replaces for every other SIGBUS. Backend counters (hs_port_backend_counters): connected,
 * connects, disconnects, messages, bad_messages, broken_rings,
 * memory_faults, bad_rx_buffers (receive buffers in more pieces than the
 * switch can track, given back unused), dirty_log_overflow (pages written
 * beyond the dirty log: the VMM gave too small a log), announces,
 * iotlb_misses, iotlb_updates, iotlb_invalidates, iotlb_flushes (a full
 * IOTLB emptied), and for the vCPU state (HS_VU_NO_VCPU_STATE):
 * vcpu_state_reads (samples taken), vcpu_scans (thread lists read),
 * vcpu_threads (vCPU threads sampled now), peer_running and
 * peer_not_running (changes of the peer state to running / blocked),
 * vcpu_idle (times sampling paused because the port moved no frame for
 * 100 ms; the state is then unknown until the next frame).
 *
 * Threading: the socket is handled on the switch's loop thread; rings are
 * processed by the data path. Guests are untrusted: every descriptor,
 * address, length and index is checked; a guest that breaks the rules has
 * its port's link taken down with a logged reason until it resets the
 * device, and other ports keep running.
 */
#ifndef HYPERSWITCH_VHOST_USER_H
#define HYPERSWITCH_VHOST_USER_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_VHOST_USER_BACKEND "vhost-user"

/* hs_vhost_user_config.flags */
#define HS_VU_CLIENT 0x1 /* connect to the VMM's socket, and reconnect
			    whenever it goes away (default: listen on it);
			    the first try is the loop thread's, on its next
			    turn after hs_port_add, never in it */
#define HS_VU_SOCKET_OWNER 0x2 /* server mode: give the socket the owner
				  socket_uid and group socket_gid */
/* Do not sample the front-end's vCPU state (the peer-state mechanism,
 * as HS_XEN_NO_VCPU_STATE). By default, when a front-end connects, the
 * switch takes its process from the socket (SO_PEERCRED), finds that
 * process's vCPU threads by name (QEMU "CPU <n>/KVM" and the like,
 * cloud-hypervisor "vcpu<n>", Firecracker "fc_vcpu <n>"; at most 512,
 * looked for again every second) and reads their scheduler state from
 * /proc every millisecond: a vCPU runnable makes the guest running (its
 * notifications wait for the end of the round and go out once), all
 * asleep make it blocked (notified at the end of each batch). The sample
 * is an estimate ('R' is also "waiting for a CPU", and halt polling
 * keeps a halted vCPU runnable for a while). Where the VMM embeds the
 * library, hs_port_set_peer_state from the VMM is the exact path: set
 * this flag there, so the sample does not overwrite what the VMM says. A
 * front-end without vCPU threads (DPDK's virtio-user), one in another
 * pid namespace, or one whose socket another process opened (a listening
 * socket libvirt passed to QEMU) leaves the state unknown: the ring's
 * event requests alone decide, as with this flag. So does QEMU started
 * without `-name ...,debug-threads=on`: only then does it name its vCPU
 * threads (libvirt always asks for it). */
#define HS_VU_NO_VCPU_STATE 0x4

/* Backend config for hs_port_config.backend_config ("vhost-user"). */
struct hs_vhost_user_config {
	const char *path;      /* unix socket path; required */
	uint32_t flags;        /* HS_VU_* */
	uint16_t queue_pairs;  /* queue pairs offered (MQ); 0 -> 1; max 32 */
	uint16_t mtu;          /* offered with VIRTIO_NET_F_MTU; 0: not offered */
	uint32_t reconnect_ms; /* client mode retry interval; 0 -> 500 */
	uint64_t features_off; /* virtio feature bits never offered, e.g.
				  1ull << 34 (RING_PACKED) to force split */
	/* Server mode: who may connect. The socket gets these permission
	 * bits (0 -> 0600: the switch's own user only) and, with
	 * HS_VU_SOCKET_OWNER, this owner and group, before it listens. A
	 * VMM running as another user (e.g. libvirt's qemu) needs a group
	 * and 0660. */
	uint32_t socket_mode;
	uint32_t socket_uid, socket_gid;
	/* V1 ends here, with 4 bytes of tail padding that callers built
	 * against it pass in (sizeof was 48) and may leave unset: the
	 * library ignores this word. */
	uint32_t reserved0;
	/* The vCPU sampler (unless HS_VU_NO_VCPU_STATE) pauses after this
	 * many milliseconds in which the port moved no frame, and starts
	 * again with the next one (within 50 ms; meanwhile the state is
	 * unknown: the guest's own event requests decide). 0 -> 100;
	 * HS_VU_VCPU_IDLE_NEVER: never pauses. Absent (a V1 config): 100. */
	uint32_t vcpu_idle_ms;
	uint32_t reserved1; /* zero; no tail padding for a later version */
};
#define HS_VHOST_USER_CONFIG_SIZE_V1 \
	(offsetof(struct hs_vhost_user_config, socket_gid) + sizeof(uint32_t))
#define HS_VHOST_USER_CONFIG_SIZE_V2 \
	(offsetof(struct hs_vhost_user_config, vcpu_idle_ms) + sizeof(uint32_t))
#define HS_VU_VCPU_IDLE_NEVER UINT32_MAX

/* Virtio feature bits, for features_off and hs_vhost_user_features(). */
#define HS_VIRTIO_NET_F_CSUM 0
#define HS_VIRTIO_NET_F_GUEST_CSUM 1
#define HS_VIRTIO_NET_F_MTU 3
#define HS_VIRTIO_NET_F_GUEST_TSO4 7
#define HS_VIRTIO_NET_F_GUEST_TSO6 8
#define HS_VIRTIO_NET_F_GUEST_ECN 9
#define HS_VIRTIO_NET_F_GUEST_UFO 10
#define HS_VIRTIO_NET_F_HOST_TSO4 11
#define HS_VIRTIO_NET_F_HOST_TSO6 12
#define HS_VIRTIO_NET_F_HOST_ECN 13
#define HS_VIRTIO_NET_F_MRG_RXBUF 15
#define HS_VIRTIO_NET_F_STATUS 16
#define HS_VIRTIO_NET_F_CTRL_VQ 17
#define HS_VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define HS_VIRTIO_NET_F_MQ 22
#define HS_VHOST_F_LOG_ALL 26
#define HS_VIRTIO_F_INDIRECT_DESC 28
#define HS_VIRTIO_F_EVENT_IDX 29
#define HS_VIRTIO_F_VERSION_1 32
#define HS_VIRTIO_F_IOMMU_PLATFORM 33
#define HS_VIRTIO_F_RING_PACKED 34
#define HS_VIRTIO_F_IN_ORDER 35 /* buffers are used in the order made available */
#define HS_VIRTIO_NET_F_GUEST_USO4 54
#define HS_VIRTIO_NET_F_GUEST_USO6 55
#define HS_VIRTIO_NET_F_HOST_USO 56

/* Whether a front-end is connected (1), not (0), or -EINVAL. */
HS_EXTERN int hs_vhost_user_connected(hs_port_t *port);

/* The virtio features the front-end acknowledged (0 when none yet). */
HS_EXTERN uint64_t hs_vhost_user_features(hs_port_t *port);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_VHOST_USER_H */
