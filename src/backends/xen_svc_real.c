/*
 * xen_svc_real.c - the hypervisor services over Xen's own libraries:
 * libxengnttab (grant copy and mapping), libxenevtchn (event channels),
 * libxenstore and libxenctrl (domain information). Built where Debian's libxen-dev is installed; each
 * call passes straight through (xen_svc.h says what each one means).
 *
 * Nothing here runs on the machines this project is tested on (no
 * hypervisor): the emulation behind the same table is what the tests
 * drive, and the layout checks below keep the two interchangeable.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "xen_svc.h"

#ifdef HS_HAVE_XEN

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

_Static_assert(sizeof(struct hs__xcopy) == sizeof(xengnttab_grant_copy_segment_t),
	       "grant copy segment layout");
_Static_assert(offsetof(struct hs__xcopy, dest) ==
		       offsetof(xengnttab_grant_copy_segment_t, dest),
	       "grant copy segment layout");
_Static_assert(offsetof(struct hs__xcopy, len) == offsetof(xengnttab_grant_copy_segment_t, len),
	       "grant copy segment layout");
_Static_assert(offsetof(struct hs__xcopy, flags) ==
		       offsetof(xengnttab_grant_copy_segment_t, flags),
	       "grant copy segment layout");
_Static_assert(offsetof(struct hs__xcopy, status) ==
		       offsetof(xengnttab_grant_copy_segment_t, status),
	       "grant copy segment layout");
_Static_assert(offsetof(struct hs__xcopy, source.foreign.offset) ==
		       offsetof(xengnttab_grant_copy_segment_t, source.foreign.offset),
	       "grant copy segment layout");
_Static_assert(HS__XCOPY_SRC_GREF == GNTCOPY_source_gref &&
		       HS__XCOPY_DST_GREF == GNTCOPY_dest_gref,
	       "grant copy flags");
_Static_assert(HS__GNTST_OKAY == GNTST_okay && HS__GNTST_BAD_GNTREF == GNTST_bad_gntref &&
		       HS__GNTST_PERMISSION_DENIED == GNTST_permission_denied &&
		       HS__GNTST_BAD_COPY_ARG == GNTST_bad_copy_arg &&
		       HS__GNTST_BAD_DOMAIN == GNTST_bad_domain,
	       "grant status values");
_Static_assert(HS__XMAP_READ == PROT_READ && HS__XMAP_WRITE == PROT_WRITE, "map protection");
_Static_assert(HS__XBT_NULL == XBT_NULL, "no transaction");
_Static_assert(HS__XS_WATCH_PATH == XS_WATCH_PATH && HS__XS_WATCH_TOKEN == XS_WATCH_TOKEN,
	       "watch vector");

/* ---- grant table ------------------------------------------------------------ */

static void *gnt_open(void *ctx)
{
	(void)ctx;
	return xengnttab_open(NULL, 0);
}

static void gnt_close(void *g)
{
	xengnttab_close(g);
}

static int gnt_copy(void *g, uint32_t n, struct hs__xcopy *segs)
{
	return xengnttab_grant_copy(g, n, (xengnttab_grant_copy_segment_t *)segs);
}

static void *gnt_map(void *g, uint32_t n, uint32_t domid, const uint32_t *refs, int prot)
{
	return xengnttab_map_domain_grant_refs(g, n, domid, (uint32_t *)refs, prot);
}

static int gnt_unmap(void *g, void *addr, uint32_t n)
{
	return xengnttab_unmap(g, addr, n);
}

/* ---- event channels ------------------------------------------------------------- */

static void *evt_open(void *ctx)
{
	(void)ctx;
	return xenevtchn_open(NULL, 0);
}

static void evt_close(void *e)
{
	xenevtchn_close(e);
}

static int evt_fd(void *e)
{
	return xenevtchn_fd(e);
}

static int evt_bind(void *e, uint32_t domid, uint32_t remote)
{
	return xenevtchn_bind_interdomain(e, domid, remote);
}

static int evt_unbind(void *e, uint32_t port)
{
	return xenevtchn_unbind(e, port);
}

static int evt_notify(void *e, uint32_t port)
{
	return xenevtchn_notify(e, port);
}

static int evt_pending(void *e)
{
	return xenevtchn_pending(e);
}

static int evt_unmask(void *e, uint32_t port)
{
	return xenevtchn_unmask(e, port);
}

/* ---- xenstore ---------------------------------------------------------------- */

static void *xs_open_(void *ctx)
{
	(void)ctx;
	return xs_open(0);
}

static void xs_close_(void *x)
{
	xs_close(x);
}

static void *xs_read_(void *x, uint32_t t, const char *path, unsigned *len)
{
	return xs_read(x, t, path, len);
}

static bool xs_write_(void *x, uint32_t t, const char *path, const void *data, unsigned len)
{
	return xs_write(x, t, path, data, len);
}

static bool xs_rm_(void *x, uint32_t t, const char *path)
{
	return xs_rm(x, t, path);
}

static char **xs_directory_(void *x, uint32_t t, const char *path, unsigned *num)
{
	return xs_directory(x, t, path, num);
}

static uint32_t xs_transaction_start_(void *x)
{
	return xs_transaction_start(x);
}

static bool xs_transaction_end_(void *x, uint32_t t, bool abort)
{
	return xs_transaction_end(x, t, abort);
}

static bool xs_watch_(void *x, const char *path, const char *token)
{
	return xs_watch(x, path, token);
}

static bool xs_unwatch_(void *x, const char *path, const char *token)
{
	return xs_unwatch(x, path, token);
}

static int xs_fileno_(void *x)
{
	return xs_fileno(x);
}

static char **xs_check_watch_(void *x)
{
	return xs_check_watch(x);
}

/* ---- domain control ---------------------------------------------------------------- */

/* libxenctrl logs its failures itself (to stderr by default); the
 * backend reports what a failure means for the port instead. */
static void quiet_vmessage(struct xentoollog_logger *l, xentoollog_level level, int errnoval,
			   const char *context, const char *format, va_list al)
{
	(void)l, (void)level, (void)errnoval, (void)context, (void)format, (void)al;
}

static void quiet_destroy(struct xentoollog_logger *l)
{
	(void)l;
}

static xentoollog_logger quiet = {.vmessage = quiet_vmessage, .destroy = quiet_destroy};

static void *ctl_open(void *ctx)
{
	(void)ctx;
	return xc_interface_open(&quiet, &quiet, 0);
}

static void ctl_close(void *c)
{
	xc_interface_close(c);
}

/* xc_domain_getinfolist (the sysctl: the domains from first_domid on),
 * not xc_domain_getinfo, which Xen 4.18 removed. */
static int ctl_getinfo(void *c, uint32_t first_domid, unsigned max, struct hs__xdominfo *info)
{
	xc_domaininfo_t di[8];
	if (max > 8)
		max = 8;
	int n = xc_domain_getinfolist(c, first_domid, max, di);
	for (int i = 0; i < n; i++) {
		uint32_t f = di[i].flags;
		info[i] = (struct hs__xdominfo){.domid = di[i].domain,
						.dying = f & XEN_DOMINF_dying,
						.shutdown = f & XEN_DOMINF_shutdown,
						.paused = f & XEN_DOMINF_paused,
						.blocked = f & XEN_DOMINF_blocked,
						.running = f & XEN_DOMINF_running,
						.nr_online_vcpus = di[i].nr_online_vcpus};
	}
	return n;
}

static const struct hs__xsvc_ops real_ops = {
	.name = "xen",
	.gnt_open = gnt_open,
	.gnt_close = gnt_close,
	.gnt_copy = gnt_copy,
	.gnt_map = gnt_map,
	.gnt_unmap = gnt_unmap,
	.evt_open = evt_open,
	.evt_close = evt_close,
	.evt_fd = evt_fd,
	.evt_bind = evt_bind,
	.evt_unbind = evt_unbind,
	.evt_notify = evt_notify,
	.evt_pending = evt_pending,
	.evt_unmask = evt_unmask,
	.xs_open = xs_open_,
	.xs_close = xs_close_,
	.xs_read = xs_read_,
	.xs_write = xs_write_,
	.xs_rm = xs_rm_,
	.xs_directory = xs_directory_,
	.xs_transaction_start = xs_transaction_start_,
	.xs_transaction_end = xs_transaction_end_,
	.xs_watch = xs_watch_,
	.xs_unwatch = xs_unwatch_,
	.xs_fileno = xs_fileno_,
	.xs_check_watch = xs_check_watch_,
	.ctl_open = ctl_open,
	.ctl_close = ctl_close,
	.ctl_getinfo = ctl_getinfo,
};

const struct hs__xsvc_ops *hs__xsvc_real(void)
{
	return &real_ops;
}

#else /* !HS_HAVE_XEN */

const struct hs__xsvc_ops *hs__xsvc_real(void)
{
	return NULL; /* built without libxen: the emulation only */
}

#endif
