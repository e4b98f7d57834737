/*
 * xen_emu.h - an emulated Xen hypervisor in the process, behind the same
 * service table as the real libraries (xen_svc.h), for tests and
 * benchmarks: no hypervisor runs on the machines this project is built
 * on.
 *
 * What it emulates, with the rules the real ones enforce:
 *  - domains with memory (a memfd of whole 4 KiB pages, mapped for the
 *    domain's own use);
 *  - grant tables: a domain grants one of its pages to another domain,
 *    read-only or writable; grant copies check the domain, the reference,
 *    that it was granted to the copier, that a read-only grant is never
 *    written, and that the granted side stays within its page, each
 *    segment getting its own status; mappings place granted pages at one
 *    address followed by an inaccessible page, and a mapped grant cannot
 *    be revoked;
 *  - event channels: a domain allocates an unbound port for another
 *    domain, which binds to it; notifications fire the other end's port,
 *    which is masked when it fires (as Linux's evtchn device does) until
 *    unmasked, events meanwhile leaving it pending;
 *  - xenstore: a tree of nodes with implicit parents, transactions that
 *    see a snapshot and fail with EAGAIN at their end if the tree changed
 *    meanwhile (or when a test asks), watches that fire once when set and
 *    on every change at, below or above their path. Nodes have no
 *    permissions: every domain may write everywhere (a hostile front-end
 *    test writes where it likes);
 *  - domain control: what a domain's vCPUs do (running, runnable, blocked,
 *    paused: set by the test), readable only by a privileged domain (dom0
 *    unless a test says otherwise), others getting EPERM.
 * Counters say how many grant-copy calls and segments ran, for the copy
 * accounting of the benchmarks.
 *
 * Threads: grant copy and notify may be called from any thread; the rest
 * from one control thread per handle, as with the real libraries.
 */
#ifndef HS_BACKENDS_XEN_EMU_H
#define HS_BACKENDS_XEN_EMU_H

#include "xen_svc.h"

struct hs__xemu;

/* A domain as a user of the services: the `ctx` of the table's *_open
 * calls. */
struct hs__xemu_dom;

int hs__xemu_create(struct hs__xemu **out);
/* Every handle must be closed and every mapping unmapped first. */
void hs__xemu_destroy(struct hs__xemu *x);
const struct hs__xsvc_ops *hs__xemu_ops(void);

/* Domain domid (created with npages of memory the first time; 0 pages for
 * a domain that only uses the services, such as the back-end's), or NULL
 * with errno. *mem, if not NULL, gets the domain's memory. */
struct hs__xemu_dom *hs__xemu_domain(struct hs__xemu *x, uint32_t domid, uint32_t npages,
				     uint8_t **mem);

/* Grants page `page` of d's memory to domain `to`; returns the reference
 * or -errno. */
int hs__xemu_grant(struct hs__xemu_dom *d, uint32_t page, uint32_t to, bool readonly);
/* Revokes a grant: -EBUSY while it is mapped, -EINVAL if unknown. */
int hs__xemu_ungrant(struct hs__xemu_dom *d, uint32_t ref);
/* An unbound port of d that domain `remote` may bind to, on event
 * handle e (opened with d as its ctx); the port or -errno. */
int hs__xemu_evt_alloc_unbound(void *e, uint32_t remote);
/* What d's vCPUs do, as the scheduler would report it (domain control);
 * a new domain is blocked. */
enum hs__xemu_sched {
	HS__XEMU_BLOCKED,  /* every vCPU waits for an event */
	HS__XEMU_RUNNING,  /* a vCPU is on a physical CPU */
	HS__XEMU_RUNNABLE, /* wants a CPU, has none now */
	HS__XEMU_PAUSED,
};
void hs__xemu_sched(struct hs__xemu_dom *d, enum hs__xemu_sched st);
/* Whether d may read other domains' information (dom0: yes). */
void hs__xemu_privileged(struct hs__xemu_dom *d, bool privileged);
/* The next `n` transaction ends fail with EAGAIN. */
void hs__xemu_fail_transactions(struct hs__xemu *x, unsigned n);
/* The next `n` grant-copy calls (any domain's) fail whole, as a failed
 * ioctl does: -1 with errno EIO, no segment copied or given a status. */
void hs__xemu_fail_copies(struct hs__xemu *x, unsigned n);

struct hs__xemu_stats {
	uint64_t copy_calls;    /* grant-copy calls */
	uint64_t copy_segs;     /* segments in them */
	uint64_t copy_bytes;
	uint64_t copy_errors;   /* segments that failed */
	uint64_t copy_calls_failed; /* calls that failed whole */
	uint64_t copy_g2g;      /* segments from one grant straight into
				   another (guest to guest: the single copy) */
	uint64_t maps;          /* pages mapped */
	uint64_t notifies;
	uint64_t ctl_calls;     /* domain control calls (vCPU state reads) */
};
void hs__xemu_stats(struct hs__xemu *x, struct hs__xemu_stats *st);

#endif /* HS_BACKENDS_XEN_EMU_H */
