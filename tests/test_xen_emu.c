/*
 * test_xen_emu.c - the emulated hypervisor the Xen backend is tested on
 * (src/backends/xen_emu.c) behaves as the real libraries are documented
 * to: grant copies checked segment by segment (domain, reference, who it
 * was granted to, read-only, page bounds), mappings contiguous and not
 * revocable while mapped, event channels that mask a port when it fires
 * and fire again on unmask if an event came meanwhile, and xenstore with
 * implicit parents, watches (once when set, then on changes at, below
 * and above them) and transactions that see a snapshot and fail with
 * EAGAIN on a conflict. The Xen backend's own tests build on these
 * rules, so they are pinned here against the services' documentation,
 * not the backend.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>

#include "helpers.h"
#include "backends/xen_emu.h"

static const struct hs__xsvc_ops *ops;

/* The permissions ("rw-", "---") of the mapping holding addr, from
 * /proc/self/maps; "" if none holds it. */
static const char *prot_of(const void *addr)
{
	static char perm[4];
	perm[0] = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	ck_assert_ptr_nonnull(f);
	unsigned long lo, hi, a = (unsigned long)(uintptr_t)addr;
	char pm[5];
	while (fscanf(f, "%lx-%lx %4s%*[^\n]", &lo, &hi, pm) == 3)
		if (a >= lo && a < hi) {
			memcpy(perm, pm, 3);
			perm[3] = 0;
			break;
		}
	fclose(f);
	return perm;
}

static bool readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1;
}

START_TEST(grant_copies_are_checked_segment_by_segment)
{
	struct hs__xemu *x;
	ck_assert_int_eq(hs__xemu_create(&x), 0);
	ops = hs__xemu_ops();
	uint8_t *m1, *m2;
	struct hs__xemu_dom *back = hs__xemu_domain(x, 0, 0, NULL);
	struct hs__xemu_dom *d1 = hs__xemu_domain(x, 1, 4, &m1);
	struct hs__xemu_dom *d2 = hs__xemu_domain(x, 2, 2, &m2);
	ck_assert(back && d1 && d2 && m1 && m2);
	int rw = hs__xemu_grant(d1, 0, 0, false), ro = hs__xemu_grant(d1, 1, 0, true);
	int other = hs__xemu_grant(d1, 2, 5, false), r2 = hs__xemu_grant(d2, 1, 0, false);
	ck_assert_int_ge(rw, 8); /* Xen reserves the first references */
	ck_assert_int_ge(ro, 8);
	ck_assert_int_eq(hs__xemu_grant(d1, 4, 0, false), -EINVAL); /* no such page */
	void *g = ops->gnt_open(back);
	uint8_t local[256];
	for (unsigned i = 0; i < sizeof(local); i++)
		local[i] = (uint8_t)i;
	memset(m1 + 4096, 0x5a, 4096);
#define GREF(d, r, o) {.foreign = {.ref = (uint32_t)(r), .offset = (o), .domid = (d)}}
	struct hs__xcopy seg[8] = {
		/* 0: local -> writable grant */
		{.source.virt = local, .dest = GREF(1, rw, 100), .len = 200,
		 .flags = HS__XCOPY_DST_GREF},
		/* 1: into a read-only grant */
		{.source.virt = local, .dest = GREF(1, ro, 0), .len = 10,
		 .flags = HS__XCOPY_DST_GREF},
		/* 2: from a read-only grant: fine */
		{.source = GREF(1, ro, 4000), .dest.virt = local + 100, .len = 96,
		 .flags = HS__XCOPY_SRC_GREF},
		/* 3: granted to domain 5, not to us */
		{.source = GREF(1, other, 0), .dest.virt = local, .len = 4,
		 .flags = HS__XCOPY_SRC_GREF},
		/* 4: past the end of the page */
		{.source.virt = local, .dest = GREF(1, rw, 4000), .len = 97,
		 .flags = HS__XCOPY_DST_GREF},
		/* 5: a reference never granted */
		{.source = GREF(1, 9999, 0), .dest.virt = local, .len = 4,
		 .flags = HS__XCOPY_SRC_GREF},
		/* 6: no such domain */
		{.source = GREF(40, rw, 0), .dest.virt = local, .len = 4,
		 .flags = HS__XCOPY_SRC_GREF},
		/* 7: guest to guest, both granted: the single copy */
		{.source = GREF(1, rw, 100), .dest = GREF(2, r2, 8), .len = 200,
		 .flags = HS__XCOPY_SRC_GREF | HS__XCOPY_DST_GREF},
	};
	ck_assert_int_eq(ops->gnt_copy(g, 8, seg), 0);
	ck_assert_int_eq(seg[0].status, HS__GNTST_OKAY);
	ck_assert_mem_eq(m1 + 100, local, 100); /* local[100..] was overwritten later */
	ck_assert_int_eq(seg[1].status, HS__GNTST_PERMISSION_DENIED);
	ck_assert_uint_eq(m1[4096], 0x5a);
	ck_assert_int_eq(seg[2].status, HS__GNTST_OKAY);
	ck_assert_uint_eq(local[100], 0x5a);
	ck_assert_int_eq(seg[3].status, HS__GNTST_PERMISSION_DENIED);
	ck_assert_int_eq(seg[4].status, HS__GNTST_BAD_COPY_ARG);
	ck_assert_int_eq(seg[5].status, HS__GNTST_BAD_GNTREF);
	ck_assert_int_eq(seg[6].status, HS__GNTST_BAD_DOMAIN);
	ck_assert_int_eq(seg[7].status, HS__GNTST_OKAY);
	ck_assert_mem_eq(m2 + 4096 + 8, m1 + 100, 200);
	struct hs__xemu_stats st;
	hs__xemu_stats(x, &st);
	ck_assert_uint_eq(st.copy_calls, 1);
	ck_assert_uint_eq(st.copy_segs, 8);
	ck_assert_uint_eq(st.copy_errors, 5);
	/* a revoked grant is gone */
	ck_assert_int_eq(hs__xemu_ungrant(d1, (uint32_t)rw), 0);
	ck_assert_int_eq(ops->gnt_copy(g, 1, seg), 0);
	ck_assert_int_eq(seg[0].status, HS__GNTST_BAD_GNTREF);
	ops->gnt_close(g);
	hs__xemu_destroy(x);
}
END_TEST

START_TEST(mappings_are_contiguous_and_pin_their_grants)
{
	struct hs__xemu *x;
	ck_assert_int_eq(hs__xemu_create(&x), 0);
	ops = hs__xemu_ops();
	uint8_t *m1;
	struct hs__xemu_dom *back = hs__xemu_domain(x, 0, 0, NULL);
	struct hs__xemu_dom *d1 = hs__xemu_domain(x, 1, 4, &m1);
	uint32_t refs[2] = {(uint32_t)hs__xemu_grant(d1, 3, 0, false),
			    (uint32_t)hs__xemu_grant(d1, 1, 0, false)};
	uint32_t ro = (uint32_t)hs__xemu_grant(d1, 2, 0, true);
	void *g = ops->gnt_open(back);
	uint8_t *p = ops->gnt_map(g, 2, 1, refs, HS__XMAP_READ | HS__XMAP_WRITE);
	ck_assert_ptr_nonnull(p);
	/* page 3 then page 1 of the guest, at one address */
	p[0] = 0x11;
	p[4096] = 0x22;
	ck_assert_uint_eq(m1[3 * 4096], 0x11);
	ck_assert_uint_eq(m1[1 * 4096], 0x22);
	m1[3 * 4096 + 5] = 0x33;
	ck_assert_uint_eq(p[5], 0x33);
	/* the page after the mapping is reserved and not accessible */
	ck_assert_str_eq(prot_of(p + 2 * 4096), "---");
	ck_assert_str_eq(prot_of(p), "rw-");
	/* mapped: cannot be revoked */
	ck_assert_int_eq(hs__xemu_ungrant(d1, refs[0]), -EBUSY);
	/* a read-only grant does not map writable */
	errno = 0;
	ck_assert_ptr_null(ops->gnt_map(g, 1, 1, &ro, HS__XMAP_READ | HS__XMAP_WRITE));
	ck_assert_int_eq(errno, EPERM);
	uint8_t *q = ops->gnt_map(g, 1, 1, &ro, HS__XMAP_READ);
	ck_assert_ptr_nonnull(q);
	ck_assert_int_eq(ops->gnt_unmap(g, q, 1), 0);
	/* a bad reference among good ones maps nothing and pins nothing */
	uint32_t mixed[2] = {refs[1], 9999};
	ck_assert_ptr_null(ops->gnt_map(g, 2, 1, mixed, HS__XMAP_READ));
	ck_assert_int_eq(ops->gnt_unmap(g, p, 2), 0);
	ck_assert_int_eq(hs__xemu_ungrant(d1, refs[0]), 0);
	ck_assert_int_eq(hs__xemu_ungrant(d1, refs[1]), 0);
	ck_assert_int_eq(ops->gnt_unmap(g, p, 2), -1); /* not mapped any more */
	struct hs__xemu_stats st;
	hs__xemu_stats(x, &st);
	ck_assert_uint_eq(st.maps, 3);
	ops->gnt_close(g);
	hs__xemu_destroy(x);
}
END_TEST

START_TEST(event_channels_mask_when_they_fire)
{
	struct hs__xemu *x;
	ck_assert_int_eq(hs__xemu_create(&x), 0);
	ops = hs__xemu_ops();
	struct hs__xemu_dom *back = hs__xemu_domain(x, 0, 0, NULL);
	struct hs__xemu_dom *d1 = hs__xemu_domain(x, 1, 1, NULL);
	void *ge = ops->evt_open(d1), *be = ops->evt_open(back);
	int gport = hs__xemu_evt_alloc_unbound(ge, 0);
	ck_assert_int_gt(gport, 0);
	/* only the domain it was allocated for binds */
	void *other = ops->evt_open(hs__xemu_domain(x, 3, 0, NULL));
	ck_assert_int_eq(ops->evt_bind(other, 1, (uint32_t)gport), -1);
	ops->evt_close(other);
	int bport = ops->evt_bind(be, 1, (uint32_t)gport);
	ck_assert_int_gt(bport, 0);
	ck_assert_int_eq(ops->evt_bind(be, 1, (uint32_t)gport), -1); /* bound already */
	int bfd = ops->evt_fd(be), gfd = ops->evt_fd(ge);
	ck_assert(!readable(bfd));
	ck_assert_int_eq(ops->evt_pending(be), -1);
	ck_assert_int_eq(errno, EAGAIN);
	/* guest -> back-end */
	ck_assert_int_eq(ops->evt_notify(ge, (uint32_t)gport), 0);
	ck_assert(readable(bfd));
	ck_assert(!readable(gfd));
	ck_assert_int_eq(ops->evt_pending(be), bport);
	ck_assert(!readable(bfd));
	/* masked now: more events leave it pending, no upcall */
	ck_assert_int_eq(ops->evt_notify(ge, (uint32_t)gport), 0);
	ck_assert_int_eq(ops->evt_notify(ge, (uint32_t)gport), 0);
	ck_assert(!readable(bfd));
	/* unmask: what came meanwhile fires once */
	ck_assert_int_eq(ops->evt_unmask(be, (uint32_t)bport), 0);
	ck_assert(readable(bfd));
	ck_assert_int_eq(ops->evt_pending(be), bport);
	ck_assert_int_eq(ops->evt_pending(be), -1);
	ck_assert_int_eq(ops->evt_unmask(be, (uint32_t)bport), 0);
	ck_assert(!readable(bfd)); /* nothing was pending */
	/* back-end -> guest */
	ck_assert_int_eq(ops->evt_notify(be, (uint32_t)bport), 0);
	ck_assert_int_eq(ops->evt_pending(ge), gport);
	/* someone else's port */
	ck_assert_int_eq(ops->evt_notify(be, (uint32_t)gport + 100), -1);
	/* the guest closes its end: notifying it does nothing */
	ops->evt_close(ge);
	ck_assert_int_eq(ops->evt_notify(be, (uint32_t)bport), 0);
	ck_assert_int_eq(ops->evt_unbind(be, (uint32_t)bport), 0);
	ck_assert_int_eq(ops->evt_unbind(be, (uint32_t)bport), -1);
	ops->evt_close(be);
	hs__xemu_destroy(x);
}
END_TEST

static char *rd(void *xs, uint32_t t, const char *path)
{
	unsigned len = 0;
	return ops->xs_read(xs, t, path, &len);
}

/* Takes every waiting watch event; returns how many named `path`. */
static int events_for(void *xs, const char *path, const char *token)
{
	int n = 0;
	char **ev;
	while ((ev = ops->xs_check_watch(xs))) {
		if (!strcmp(ev[HS__XS_WATCH_PATH], path) &&
		    !strcmp(ev[HS__XS_WATCH_TOKEN], token))
			n++;
		free(ev);
	}
	return n;
}

START_TEST(xenstore_watches_and_transactions)
{
	struct hs__xemu *x;
	ck_assert_int_eq(hs__xemu_create(&x), 0);
	ops = hs__xemu_ops();
	void *a = ops->xs_open(hs__xemu_domain(x, 0, 0, NULL));
	void *b = ops->xs_open(hs__xemu_domain(x, 1, 0, NULL));
	const char *fe = "/local/domain/1/device/vif/0";
	char path[128];
	snprintf(path, sizeof(path), "%s/state", fe);
	/* implicit parents, listed */
	ck_assert(ops->xs_write(b, HS__XBT_NULL, path, "1", 1));
	snprintf(path, sizeof(path), "%s/tx-ring-ref", fe);
	ck_assert(ops->xs_write(b, HS__XBT_NULL, path, "8", 1));
	unsigned n = 0;
	char **dir = ops->xs_directory(a, HS__XBT_NULL, fe, &n);
	ck_assert_ptr_nonnull(dir);
	ck_assert_uint_eq(n, 2);
	ck_assert(!strcmp(dir[0], "state") || !strcmp(dir[1], "state"));
	free(dir);
	char *v = rd(a, HS__XBT_NULL, "/local/domain/1/device");
	ck_assert_ptr_nonnull(v); /* a parent exists, empty */
	ck_assert_str_eq(v, "");
	free(v);
	ck_assert_ptr_null(rd(a, HS__XBT_NULL, "/local/domain/1/nothing"));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert(!ops->xs_write(a, HS__XBT_NULL, "relative/path", "x", 1));
	ck_assert(!ops->xs_write(a, HS__XBT_NULL, "/trailing/", "x", 1));

	/* a watch fires once when set, then on changes at, below and above */
	int fd = ops->xs_fileno(a);
	ck_assert(ops->xs_watch(a, fe, "fe"));
	ck_assert(readable(fd));
	ck_assert_int_eq(events_for(a, fe, "fe"), 1);
	ck_assert(!readable(fd));
	snprintf(path, sizeof(path), "%s/state", fe);
	ck_assert(ops->xs_write(b, HS__XBT_NULL, path, "4", 1));
	ck_assert_int_eq(events_for(a, path, "fe"), 1);
	ck_assert(ops->xs_write(b, HS__XBT_NULL, "/local/domain/1/other", "x", 1));
	ck_assert(!readable(fd)); /* not ours */
	ck_assert(ops->xs_rm(b, HS__XBT_NULL, "/local/domain/1/device"));
	ck_assert_int_eq(events_for(a, "/local/domain/1/device", "fe"), 1);
	ck_assert_ptr_null(rd(a, HS__XBT_NULL, path));

	/* transactions: a snapshot; changes appear at the end */
	uint32_t t = ops->xs_transaction_start(a);
	ck_assert_uint_ne(t, HS__XBT_NULL);
	ck_assert(ops->xs_write(a, t, "/backend/vif/1/0/state", "2", 1));
	ck_assert_ptr_null(rd(b, HS__XBT_NULL, "/backend/vif/1/0/state"));
	v = rd(a, t, "/backend/vif/1/0/state");
	ck_assert_str_eq(v, "2");
	free(v);
	ck_assert(ops->xs_transaction_end(a, t, false));
	v = rd(b, HS__XBT_NULL, "/backend/vif/1/0/state");
	ck_assert_str_eq(v, "2");
	free(v);
	/* a write by someone else meanwhile: EAGAIN, nothing applied */
	t = ops->xs_transaction_start(a);
	ck_assert(ops->xs_write(a, t, "/backend/vif/1/0/state", "4", 1));
	ck_assert(ops->xs_write(b, HS__XBT_NULL, "/local/domain/1/x", "y", 1));
	ck_assert(!ops->xs_transaction_end(a, t, false));
	ck_assert_int_eq(errno, EAGAIN);
	v = rd(b, HS__XBT_NULL, "/backend/vif/1/0/state");
	ck_assert_str_eq(v, "2");
	free(v);
	/* failures on request, then the retry goes through */
	hs__xemu_fail_transactions(x, 2);
	int tries = 0;
	bool ok = false;
	while (!ok && tries++ < 5) {
		t = ops->xs_transaction_start(a);
		ck_assert(ops->xs_write(a, t, "/backend/vif/1/0/state", "4", 1));
		ok = ops->xs_transaction_end(a, t, false);
		if (!ok)
			ck_assert_int_eq(errno, EAGAIN);
	}
	ck_assert(ok);
	ck_assert_int_eq(tries, 3);
	/* aborted: nothing */
	t = ops->xs_transaction_start(a);
	ck_assert(ops->xs_write(a, t, "/backend/vif/1/0/state", "6", 1));
	ck_assert(ops->xs_transaction_end(a, t, true));
	v = rd(b, HS__XBT_NULL, "/backend/vif/1/0/state");
	ck_assert_str_eq(v, "4");
	free(v);
	/* an unknown transaction */
	ck_assert(!ops->xs_write(a, 12345, "/x", "1", 1));
	ck_assert(ops->xs_unwatch(a, fe, "fe"));
	ck_assert(!ops->xs_unwatch(a, fe, "fe"));
	ops->xs_close(a);
	ops->xs_close(b);
	hs__xemu_destroy(x);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("xen_emu");
	TCase *tc = tcase_create("xen_emu");
	tcase_add_test(tc, grant_copies_are_checked_segment_by_segment);
	tcase_add_test(tc, mappings_are_contiguous_and_pin_their_grants);
	tcase_add_test(tc, event_channels_mask_when_they_fire);
	tcase_add_test(tc, xenstore_watches_and_transactions);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
