/*
 * hyperswitch/xen.h - the Xen netif backend: a port is one guest's
 * virtual interface (vif), reached through the hypervisor's grant tables,
 * event channels and xenstore, as Linux's xen-netback is.
 *
 * The switch plays the back-end half of the xenstore handshake: it writes
 * its features and state under its backend path, watches the front-end's
 * state, and when the front-end (Linux netfront, or any that follows
 * xen/io/netif.h) has written its ring references and event channel,
 * maps the rings and connects; it disconnects when the front-end closes
 * and connects again when it comes back. Frames move by grant copy: a
 * frame from one Xen guest to another goes in one copy from the sender's
 * granted page into the receiver's (no buffer in between), and frames to
 * and from other kinds of ports too.
 *
 * Supported: multi-queue (the front-end picks up to max_queues queue
 * pairs), one event channel per queue or split ones (transmit and
 * receive), scatter-gather, checksum offload and TCP segmentation
 * offload (v4 and v6) both ways; a front-end that breaks the protocol
 * stops its own vif only.
 *
 * Threads and ownership: as for every port (port.h). The handshake runs
 * on the switch's loop.
 */
#ifndef HYPERSWITCH_XEN_H
#define HYPERSWITCH_XEN_H

#include <hyperswitch/port.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HS_XEN_BACKEND "xen"

struct hs_xen_config {
	uint32_t frontend_domid; /* the guest */
	uint32_t devid;          /* its vif number (device/vif/<devid>) */
	uint32_t backend_domid;  /* the domain this switch runs in (0: dom0) */
	uint32_t max_queues;     /* queue pairs offered (multi-queue-max-
				    queues); 0 -> 1 */
	uint32_t flags;          /* HS_XEN_* */
	void *hypervisor;        /* NULL: Xen itself, through libxen; else
				    the project's in-process emulation (its
				    tests and benchmarks) */
};
/* Do not read the guest's vCPU state (the peer-state mechanism). By
 * default a switch in a domain that may read it (dom0) does, every
 * millisecond, and notifies a guest that is not running at the end of
 * each batch, one that is running once per round; elsewhere the ring's
 * event requests alone decide. */
#define HS_XEN_NO_VCPU_STATE 0x1u

#define HS_XEN_CONFIG_SIZE_V1 (offsetof(struct hs_xen_config, hypervisor) + sizeof(void *))

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_XEN_H */
