/*
 * xen_svc.h - the hypervisor services the Xen netif backend uses, behind
 * one table, so that the backend runs on the real libraries
 * (libxengnttab, libxenevtchn, libxenstore: xen_svc_real.c) or on the
 * in-process emulation that tests and benchmarks use (xen_emu.c).
 *
 * Every call mirrors the library call it stands for: the same arguments,
 * the same results and the same error conventions (-1 or NULL or false,
 * with errno set), so the real table is a pass-through and the emulation
 * is held to the libraries' documented behaviour:
 *  - grant table: a batch of grant copies in one call, with a status per
 *    segment (the call itself fails only when the batch could not be
 *    issued); a segment's granted side never crosses a page. Mapping a
 *    domain's granted pages (the shared rings) at one contiguous address.
 *  - event channels: a handle has one pollable fd; events on the ports
 *    bound through it make it readable; pending() returns one fired port,
 *    which stays masked (no further event) until unmask().
 *  - xenstore: read, write, remove, list, in or out of transactions; a
 *    transaction's end may fail with EAGAIN (then redo it); watches fire
 *    once when set, then on every change at or below their path, and may
 *    fire spuriously; their events are read from a pollable fd.
 *  - domain control (libxenctrl): what the scheduler says of a domain's
 *    vCPUs, for the peer-state mechanism. Only a privileged domain may
 *    ask about another (dom0, or one the XSM policy allows): elsewhere
 *    the interface opens and the call fails with EPERM.
 *
 * Threads: one handle of each kind per user; calls on one handle are not
 * made concurrently, except grant copy and event notify, which the data
 * path makes from several threads (both libraries allow it).
 */
#ifndef HS_BACKENDS_XEN_SVC_H
#define HS_BACKENDS_XEN_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HS__XEN_PAGE 4096u

/* One grant-copy segment: the layout of libxengnttab's
 * xengnttab_grant_copy_segment_t (checked where the real library is
 * built), so that a batch goes to the hypervisor as it is. */
struct hs__xcopy {
	union hs__xcopy_ptr {
		void *virt;
		struct {
			uint32_t ref;
			uint16_t offset;
			uint16_t domid;
		} foreign;
	} source, dest;
	uint16_t len;
	uint16_t flags;  /* HS__XCOPY_*_GREF */
	int16_t status;  /* HS__GNTST_* after the call */
};

/* segment flags (Xen's GNTCOPY_source_gref / GNTCOPY_dest_gref) */
#define HS__XCOPY_SRC_GREF 0x1
#define HS__XCOPY_DST_GREF 0x2

/* segment status (Xen's GNTST_*) */
#define HS__GNTST_OKAY 0
#define HS__GNTST_GENERAL_ERROR (-1)
#define HS__GNTST_BAD_DOMAIN (-2)
#define HS__GNTST_BAD_GNTREF (-3)
#define HS__GNTST_PERMISSION_DENIED (-8)
#define HS__GNTST_BAD_COPY_ARG (-10)

/* mapping protection (PROT_READ, PROT_WRITE) */
#define HS__XMAP_READ 0x1
#define HS__XMAP_WRITE 0x2

/* no transaction (Xen's XBT_NULL) */
#define HS__XBT_NULL 0u

/* xs_check_watch's result: vec[HS__XS_WATCH_PATH], vec[HS__XS_WATCH_TOKEN] */
#define HS__XS_WATCH_PATH 0
#define HS__XS_WATCH_TOKEN 1

/* One domain's entry of xc_domain_getinfo (the fields the backend uses). */
struct hs__xdominfo {
	uint32_t domid;
	bool dying, shutdown, paused;
	bool blocked;  /* every online vCPU waits for an event */
	bool running;  /* some vCPU is on a physical CPU now */
	uint32_t nr_online_vcpus;
};

struct hs__xsvc_ops {
	const char *name; /* "xen", "emulated" */

	/* grant table (xengnttab_*) */
	void *(*gnt_open)(void *ctx);
	void (*gnt_close)(void *g);
	/* 0 when the batch was issued (look at each status), -1 otherwise */
	int (*gnt_copy)(void *g, uint32_t n, struct hs__xcopy *segs);
	/* n pages of domid's grants refs[0..n) at one address, or NULL */
	void *(*gnt_map)(void *g, uint32_t n, uint32_t domid, const uint32_t *refs,
			 int prot);
	int (*gnt_unmap)(void *g, void *addr, uint32_t n);

	/* event channels (xenevtchn_*) */
	void *(*evt_open)(void *ctx);
	void (*evt_close)(void *e);
	int (*evt_fd)(void *e);
	/* binds to domid's port `remote`: the local port, or -1 */
	int (*evt_bind)(void *e, uint32_t domid, uint32_t remote);
	int (*evt_unbind)(void *e, uint32_t port);
	int (*evt_notify)(void *e, uint32_t port);
	/* a fired port (masked now), or -1 with errno EAGAIN when none */
	int (*evt_pending)(void *e);
	int (*evt_unmask)(void *e, uint32_t port);

	/* xenstore (xs_*) */
	void *(*xs_open)(void *ctx);
	void (*xs_close)(void *x);
	/* the value (malloc'ed, NUL-terminated beyond *len), or NULL */
	void *(*xs_read)(void *x, uint32_t t, const char *path, unsigned *len);
	bool (*xs_write)(void *x, uint32_t t, const char *path, const void *data,
			 unsigned len);
	bool (*xs_rm)(void *x, uint32_t t, const char *path);
	/* the names of path's children (one malloc'ed block), or NULL */
	char **(*xs_directory)(void *x, uint32_t t, const char *path, unsigned *num);
	uint32_t (*xs_transaction_start)(void *x); /* HS__XBT_NULL on failure */
	bool (*xs_transaction_end)(void *x, uint32_t t, bool abort);
	bool (*xs_watch)(void *x, const char *path, const char *token);
	bool (*xs_unwatch)(void *x, const char *path, const char *token);
	int (*xs_fileno)(void *x);
	/* a fired watch (one malloc'ed block: path, token), or NULL with
	 * errno EAGAIN when none waits */
	char **(*xs_check_watch)(void *x);

	/* domain control (xc_*) */
	void *(*ctl_open)(void *ctx);
	void (*ctl_close)(void *c);
	/* xc_domain_getinfolist: the domains from first_domid on (at most
	 * max): how many were filled, or -1. The first may not be
	 * first_domid (that one is gone): check its domid. */
	int (*ctl_getinfo)(void *c, uint32_t first_domid, unsigned max,
			   struct hs__xdominfo *info);
};

/* The real hypervisor's services, or NULL when the library was built
 * without libxen (then only the emulation exists). */
const struct hs__xsvc_ops *hs__xsvc_real(void);

#endif /* HS_BACKENDS_XEN_SVC_H */
