/*
 * test_vhost_user_iommu.c - guests behind a virtual IOMMU
 * (VIRTIO_F_IOMMU_PLATFORM): every ring and descriptor address is an IOVA
 * the switch translates through the IOTLB the front-end keeps (IOTLB_MSG
 * UPDATE/INVALIDATE), reporting misses on the back-end request channel.
 * Against the in-test front-end (vu_driver.h), whose IOVAs are its guest
 * physical addresses: traffic on split and packed rings once mapped,
 * rings that wait for their areas, a chain that waits for its buffer,
 * invalidation, permissions, and hostile updates. Also with workers.
 */
#include <poll.h>
#include <stdio.h>

#include "vu_env.h"

#define F(b) (1ull << (b))
#define PF_BACKEND_REQ 5
#define PF_IOTLB 7
#define VUD_SET_BACKEND_REQ_FD 21
#define VUD_IOTLB_MSG 22

static const uint64_t base = F(HS_VIRTIO_F_VERSION_1) | F(30) |
			     F(HS_VIRTIO_F_IOMMU_PLATFORM);

struct iotlb_msg {
	uint64_t iova, size, uaddr;
	uint8_t perm, type;
	uint8_t pad[6];
};

/* A front-end behind an IOMMU: connected, negotiated, rings set up (they
 * wait for their IOTLB entries), request channel in *chan. */
static void iommu_up(struct vud *v, const char *path, uint64_t want, int *chan)
{
	ck_assert_int_eq(vud_connect(v, path), 0);
	v->proto_extra = F(PF_BACKEND_REQ) | F(PF_IOTLB);
	ck_assert_int_eq(vud_start(v, want, 1), 0);
	ck_assert(v->iommu);
	ck_assert_uint_eq(v->proto & (F(PF_BACKEND_REQ) | F(PF_IOTLB)),
			  F(PF_BACKEND_REQ) | F(PF_IOTLB));
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	ck_assert_int_eq(vud_call(v, VUD_SET_BACKEND_REQ_FD, NULL, 0, &sp[1], 1), 0);
	close(sp[1]);
	*chan = sp[0];
}

static int iotlb(struct vud *v, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr,
		 uint8_t perm)
{
	struct iotlb_msg m = {.iova = iova, .size = size, .uaddr = uaddr, .perm = perm,
			      .type = type};
	return vud_call(v, VUD_IOTLB_MSG, &m, sizeof(m), NULL, 0);
}

/* Maps [gpa, gpa + len) of the driver's memory at IOVA gpa. */
static int map(struct vud *v, uint64_t gpa, uint64_t len, uint8_t perm)
{
	return iotlb(v, 2, gpa, len, (uint64_t)(uintptr_t)vud_hva(v, gpa), perm);
}

/* Waits for a miss report on the request channel; returns its IOVA
 * (UINT64_MAX if none came) and its permission in *perm. */
static uint64_t next_miss(int chan, uint8_t *perm)
{
	struct pollfd pf = {.fd = chan, .events = POLLIN};
	if (poll(&pf, 1, 3000) != 1)
		return UINT64_MAX;
	uint32_t h[3];
	struct iotlb_msg m;
	if (recv(chan, h, 12, MSG_WAITALL) != 12 || h[0] != 1 || (h[1] & 3) != 1 ||
	    h[2] != sizeof(m) || recv(chan, &m, sizeof(m), MSG_WAITALL) != sizeof(m) ||
	    m.type != 1)
		return UINT64_MAX - 1;
	if (perm)
		*perm = m.perm;
	return m.iova;
}

static void drain_misses(int chan)
{
	struct pollfd pf = {.fd = chan, .events = POLLIN};
	char buf[4096];
	while (poll(&pf, 1, 0) == 1 && recv(chan, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
	}
}

/* ---- traffic once mapped ---------------------------------------------------------------- */

static void mapped_traffic(uint64_t want)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	int ca, cb;
	iommu_up(&a, e.path[0], want, &ca);
	iommu_up(&b, e.path[1], want, &cb);
	/* nothing mapped: the rings wait and their areas are asked for */
	uint8_t perm = 0;
	uint64_t miss = next_miss(ca, &perm);
	ck_assert_uint_ge(miss, VUD_GPA);
	ck_assert_uint_lt(miss, VUD_GPA + VUD_MEM);
	ck_assert_uint_ge(backend_ctr(e.p[0], "iotlb_misses"), 1);
	/* everything mapped read-write: both come up and carry traffic */
	ck_assert_int_eq(map(&a, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(map(&b, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 128, VUD_BUF), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 128, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]) && hs_port_link_up(e.p[1]), 3000));
	static uint8_t f[2000], g[2000];
	for (uint32_t i = 1; i <= 200; i++) {
		size_t n = mkframe(f, 2, 1, 60 + (i * 37) % 1400, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1 + i % 3) == -ENOSPC)
			vud_reap_tx(&a, 0);
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		vud_post_rx(&b, 0, 1, VUD_BUF);
	}
	ck_assert_uint_eq(th_pstats(e.p[1]).tx_packets, 200);
	ck_assert_uint_eq(backend_ctr(e.p[0], "broken_rings"), 0);
	close(ca);
	close(cb);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}

START_TEST(split_rings_behind_an_iommu)
{
	mapped_traffic(base | F(HS_VIRTIO_F_EVENT_IDX) | F(HS_VIRTIO_F_INDIRECT_DESC));
}
END_TEST

START_TEST(packed_rings_behind_an_iommu)
{
	mapped_traffic(base | F(HS_VIRTIO_F_RING_PACKED) | F(HS_VIRTIO_NET_F_MRG_RXBUF));
}
END_TEST

/* ---- misses answered one page at a time ------------------------------------------------ */

/* The front-end answers every miss with the one page asked for, as
 * QEMU's vIOMMU does: rings come up, frames flow, nothing breaks. */
START_TEST(misses_are_answered_page_by_page)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	int ca, cb;
	iommu_up(&a, e.path[0], base, &ca);
	iommu_up(&b, e.path[1], base, &cb);
	ck_assert_int_eq(map(&b, VUD_GPA, VUD_MEM, 3), 0); /* b: all of it */
	ck_assert_int_eq(vud_post_rx(&b, 0, 64, VUD_BUF), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	static uint8_t f[2000], g[2000];
	unsigned answered = 0;
	for (uint32_t i = 1; i <= 20; i++) {
		size_t n = mkframe(f, 2, 1, 100 + i * 50, i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		int got = 0;
		for (int k = 0; k < 64 && !got; k++) {
			got = vud_recv(&b, 0, g, sizeof(g), NULL);
			if (got)
				break;
			uint8_t perm;
			struct pollfd pf = {.fd = ca, .events = POLLIN};
			if (poll(&pf, 1, 100) != 1)
				continue;
			uint64_t iova = next_miss(ca, &perm);
			ck_assert_uint_lt(iova, UINT64_MAX - 1);
			ck_assert(perm == 1 || perm == 2 || perm == 3);
			uint64_t page = iova & ~4095ull;
			ck_assert_int_eq(map(&a, page, 4096, 3), 0); /* rings share pages */
			answered++;
		}
		if (!got)
			got = recv_wait(&b, g, sizeof(g), NULL);
		ck_assert_int_eq(got, (int)n);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		vud_post_rx(&b, 0, 1, VUD_BUF);
	}
	ck_assert_uint_ge(answered, 3); /* rings and buffers were asked for */
	ck_assert_uint_eq(backend_ctr(e.p[0], "broken_rings"), 0);
	close(ca);
	close(cb);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- invalidation, permissions ------------------------------------------------------- */

START_TEST(invalidated_ring_areas_stop_the_ring_until_mapped_again)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	int ca, cb;
	iommu_up(&a, e.path[0], base, &ca);
	iommu_up(&b, e.path[1], base, &cb);
	ck_assert_int_eq(map(&a, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(map(&b, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 64, VUD_BUF), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[1]), 3000));
	drain_misses(cb);
	/* the guest unmaps b's receive ring: the ring stops at once (after
	 * the reply nothing may use the old translation) and asks again */
	uint64_t used = vud_gpa(&b, b.r[0].used);
	ck_assert_int_eq(iotlb(&b, 3, used & ~4095ull, 4096, 0, 0), 0);
	uint8_t perm;
	uint64_t miss = next_miss(cb, &perm);
	ck_assert_uint_ge(miss, used & ~4095ull);
	ck_assert_uint_lt(miss, (used & ~4095ull) + 4096);
	ck_assert_uint_ge(backend_ctr(e.p[1], "iotlb_invalidates"), 1);
	/* a frame for b meanwhile waits (not a link event, nothing dropped) */
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 2, 1, 100, 1);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(th_pstats(e.p[0]).rx_packets == 1, 3000));
	usleep(100000);
	ck_assert_int_eq(vud_recv(&b, 0, g, sizeof(g), NULL), 0);
	ck_assert(hs_port_link_up(e.p[1]));
	/* mapped again: the waiting frame arrives */
	ck_assert_int_eq(map(&b, used & ~4095ull, 4096, 3), 0);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	ck_assert_int_eq(memcmp(g, f, n), 0);
	for (int r = 0; r < HS_DROP__COUNT; r++)
		ck_assert_msg(th_pstats(e.p[1]).drops[r] == 0, "dropped: %s",
			      hs_drop_reason_name(r));
	close(ca);
	close(cb);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* A frame in memory the IOMMU lets the device write but not read: the
 * guest broke the rules; its port stops, the other goes on. */
START_TEST(a_buffer_without_the_permission_stops_the_ring)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	int ca, cb;
	iommu_up(&a, e.path[0], base, &ca);
	iommu_up(&b, e.path[1], base, &cb);
	ck_assert_int_eq(map(&b, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 64, VUD_BUF), 0);
	/* a: rings read-write, everything after them write-only */
	uint64_t ring_end = VUD_GPA + ((a.used_mem + 4095) & ~(size_t)4095);
	ck_assert_int_eq(map(&a, VUD_GPA, ring_end - VUD_GPA, 3), 0);
	ck_assert_int_eq(map(&a, ring_end, VUD_GPA + VUD_MEM - ring_end, 2), 0);
	a.used_mem = ring_end - VUD_GPA;
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[200];
	size_t n = mkframe(f, 2, 1, 100, 1);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "broken_rings") == 1, 3000));
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]), 3000));
	ck_assert(hs_port_link_up(e.p[1]));
	close(ca);
	close(cb);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- hostile updates ------------------------------------------------------------------ */

START_TEST(hostile_iotlb_messages_are_refused)
{
	struct env e;
	env_up(&e, 0);
	struct vud a;
	int ca;
	iommu_up(&a, e.path[0], base, &ca);
	uint64_t uva = (uint64_t)(uintptr_t)a.mem;
	ck_assert_int_ne(iotlb(&a, 2, VUD_GPA, 0, uva, 3), 0);            /* empty */
	ck_assert_int_ne(iotlb(&a, 2, UINT64_MAX - 10, 4096, uva, 3), 0); /* wraps */
	ck_assert_int_ne(iotlb(&a, 2, VUD_GPA, 4096, uva, 0), 0);         /* no permission */
	ck_assert_int_ne(iotlb(&a, 2, VUD_GPA, 4096, uva, 4), 0);         /* unknown bits */
	ck_assert_int_ne(iotlb(&a, 2, VUD_GPA, 4096, 0x1000, 3), 0);      /* not guest memory */
	ck_assert_int_ne(iotlb(&a, 2, VUD_GPA, VUD_MEM + 4096, uva, 3), 0); /* runs past it */
	ck_assert_int_ne(iotlb(&a, 2, VUD_GPA, 4096, UINT64_MAX - 100, 3), 0); /* uaddr wraps */
	ck_assert_int_ne(iotlb(&a, 9, VUD_GPA, 4096, uva, 3), 0);         /* unknown type */
	ck_assert_int_ne(iotlb(&a, 1, VUD_GPA, 4096, uva, 3), 0);         /* a miss is ours */
	ck_assert_int_ne(iotlb(&a, 3, UINT64_MAX - 10, 4096, 0, 0), 0);   /* wraps */
	/* a request channel that is not a socket */
	int pp[2];
	ck_assert_int_eq(pipe(pp), 0);
	ck_assert_int_ne(vud_call(&a, VUD_SET_BACKEND_REQ_FD, NULL, 0, &pp[0], 1), 0);
	close(pp[0]);
	close(pp[1]);
	ck_assert_uint_eq(backend_ctr(e.p[0], "iotlb_updates"), 0);
	/* still alive, and it works once mapped properly */
	ck_assert_int_eq(map(&a, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	close(ca);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* More entries than the table holds (one page each, as a strict guest
 * IOMMU produces them): the table is emptied and refilled by misses;
 * traffic goes on. Overlapping updates replace what they cover. */
START_TEST(a_full_iotlb_is_emptied_and_refilled)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	int ca, cb;
	iommu_up(&a, e.path[0], base, &ca);
	iommu_up(&b, e.path[1], base, &cb);
	ck_assert_int_eq(map(&b, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 64, VUD_BUF), 0);
	for (uint64_t p = 0; p < VUD_MEM; p += 4096) /* 4096 pages */
		ck_assert_int_eq(map(&a, VUD_GPA + p, 4096, 3), 0);
	for (uint64_t p = 0; p < 8 * 4096; p += 4096) /* and aliases far away */
		ck_assert_int_eq(iotlb(&a, 2, (1ull << 40) + p, 4096,
				       (uint64_t)(uintptr_t)a.mem + p, 3), 0);
	ck_assert_int_eq(map(&a, VUD_GPA, VUD_MEM / 2, 3), 0); /* overlaps many */
	ck_assert_int_eq(map(&a, VUD_GPA + 4096, 100, 1), 0);  /* splits one */
	ck_assert_uint_ge(backend_ctr(e.p[0], "iotlb_flushes"), 1);
	static uint8_t f[2000], g[2000];
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	for (uint32_t i = 1; i <= 50; i++) {
		size_t n = mkframe(f, 2, 1, 60 + i * 20, i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		int got = 0;
		for (int k = 0; k < 64 && !got; k++) {
			if ((got = vud_recv(&b, 0, g, sizeof(g), NULL)))
				break;
			struct pollfd pf = {.fd = ca, .events = POLLIN};
			if (poll(&pf, 1, 50) == 1) {
				uint8_t perm;
				uint64_t iova = next_miss(ca, &perm);
				ck_assert_uint_lt(iova, UINT64_MAX - 1);
				ck_assert_int_eq(map(&a, iova & ~4095ull, 4096, 3), 0);
			}
		}
		if (!got)
			got = recv_wait(&b, g, sizeof(g), NULL);
		ck_assert_int_eq(got, (int)n);
		vud_post_rx(&b, 0, 1, VUD_BUF);
		vud_reap_tx(&a, 0);
	}
	close(ca);
	close(cb);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vhost_user_iommu");
	TCase *tc = tcase_create("iommu");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, split_rings_behind_an_iommu);
	tcase_add_test(tc, packed_rings_behind_an_iommu);
	tcase_add_test(tc, misses_are_answered_page_by_page);
	tcase_add_test(tc, invalidated_ring_areas_stop_the_ring_until_mapped_again);
	tcase_add_test(tc, a_buffer_without_the_permission_stops_the_ring);
	tcase_add_test(tc, hostile_iotlb_messages_are_refused);
	tcase_add_test(tc, a_full_iotlb_is_emptied_and_refilled);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
