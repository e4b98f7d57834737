/*
 * test_vhost_user_hostile.c - what a hostile or merely unusual front-end
 * may choose, against the vhost-user backend:
 *  - the order of the setup messages (any order is either correct or
 *    refused; a ring never becomes live with a position outside it);
 *  - control messages in the middle of traffic while workers poll (a
 *    queue must never be left with its kicks suppressed and nobody
 *    polling it);
 *  - memory files shorter than the regions they are said to back, or
 *    shrunk while mapped (the switch must neither die nor stop others).
 * Guest memory outside the rings is filled with a canary and checked: the
 * switch must not write outside the rings and buffers it was given.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "vu_env.h"

#define F(b) (1ull << (b))
static const uint64_t base = F(HS_VIRTIO_F_VERSION_1) | F(30);

#define CANARY 0x5a
#define CANARY_LEN (1u << 20)

/* The front-end shrinks its memory file under the switch (our own view
 * of that memory goes first: we must not touch it any more), then kicks:
 * the switch's next look at the rings is past the end of the file. */
static void shrink_guest_memory(struct vud *a)
{
	munmap(a->mem, VUD_MEM);
	a->mem = NULL;
	ck_assert_int_eq(ftruncate(a->memfd, 0), 0);
	vud_kick(&a->r[1]);
}

/* ---- 1. packed ring positions -------------------------------------------------- */

enum order {
	NUM_BIG_BASE_NUM_SMALL, /* NUM(32768), BASE(20000), NUM(256) */
	BASE_BEFORE_NUM,        /* BASE(20000), NUM(256) */
	SPLIT_BASE_THEN_PACKED, /* features without RING_PACKED, BASE(20000), then
				 * SET_FEATURES with RING_PACKED */
	N_ORDER
};

/* The transmit ring's descriptor table sits on its own page with a
 * canary megabyte after it, where slot 20000 would be; a valid-looking
 * descriptor is planted there. The switch must neither forward that frame
 * nor write anything past the ring. */
static void packed_position(enum order order)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	uint64_t want = base | F(HS_VIRTIO_F_RING_PACKED);
	uint64_t first = order == SPLIT_BASE_THEN_PACKED ? base : want;
	ck_assert_int_eq(vud_hello(&a, want), 0);
	ck_assert(a.packed);
	ck_assert_int_eq(vud_u64(&a, VUD_SET_FEATURES, first), 0);
	ck_assert_int_eq(vud_mem_table(&a), 0);
	a.nqp = 1;
	vud_ring_alloc(&a, &a.r[0], true);
	vud_ring_alloc(&a, &a.r[1], false);
	struct vud_ring *tx = &a.r[1];
	tx->pdesc = vud_alloc(&a, 4096, 4096);
	uint8_t *canary = vud_alloc(&a, CANARY_LEN, 4096);
	memset(canary, CANARY, CANARY_LEN);
	/* A frame the ring does not hold, at slot 20000 of a ring that large. */
	static uint8_t f[200];
	size_t n = mkframe(f, 0, 1, 100, 1);
	uint8_t *buf = vud_alloc(&a, 512, 64);
	memset(buf, 0, a.hdr_len);
	memcpy(buf + a.hdr_len, f, n);
	uint8_t *slot = (uint8_t *)tx->pdesc + 20000 * 16;
	ck_assert((uintptr_t)slot >= (uintptr_t)canary);
	struct { uint64_t addr; uint32_t len; uint16_t id, flags; } d = {
		vud_gpa(&a, buf), (uint32_t)(a.hdr_len + n), 7, 1 << 7};
	memcpy(slot, &d, sizeof(d));
	static uint8_t before[CANARY_LEN];
	memcpy(before, canary, CANARY_LEN);

	/* The receive ring, canonically. */
	ck_assert_int_eq(vud_ring_setup(&a, 0), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	/* The transmit ring in the chosen order; any step may be refused. */
	int rc = 0;
	switch (order) {
	case NUM_BIG_BASE_NUM_SMALL:
		rc |= vud_state(&a, VUD_SET_VRING_NUM, 1, 32768);
		rc |= vud_state(&a, VUD_SET_VRING_BASE, 1, 20000 | 0x8000);
		rc |= vud_state(&a, VUD_SET_VRING_NUM, 1, 256);
		break;
	case BASE_BEFORE_NUM:
		rc |= vud_state(&a, VUD_SET_VRING_BASE, 1, 20000 | 0x8000);
		rc |= vud_state(&a, VUD_SET_VRING_NUM, 1, 256);
		break;
	case SPLIT_BASE_THEN_PACKED:
		rc |= vud_state(&a, VUD_SET_VRING_NUM, 1, 256);
		rc |= vud_state(&a, VUD_SET_VRING_BASE, 1, 20000 | 0x8000);
		rc |= vud_u64(&a, VUD_SET_FEATURES, want);
		break;
	default:
		break;
	}
	rc |= vud_ring_addr(&a, 1);
	rc |= vud_ring_fd(&a, VUD_SET_VRING_KICK, 1, tx->kick);
	rc |= vud_ring_fd(&a, VUD_SET_VRING_CALL, 1, tx->call);
	rc |= vud_state(&a, VUD_SET_VRING_ENABLE, 1, 1);
	(void)rc; /* refusing a step is a correct answer */
	vud_kick(tx);
	/* What the bug did: read the planted descriptor (the frame floods
	 * to m) and mark it used (a write into the canary). */
	ck_assert_msg(!TH_WAIT(th_pending(m) > 0 || memcmp(before, canary, CANARY_LEN), 300),
		      "order %d: the switch used memory outside the ring", order);
	ck_assert_uint_eq(th_pstats(e.p[0]).rx_packets, 0);
	/* The switch and its other ports carry on. */
	hs_port_t *m2 = th_port(e.sw, "m2", 0);
	n = mkframe(f, 0, 9, 100, 2);
	ck_assert_int_eq(th_send(m2, f, n), 0);
	ck_assert_int_eq(th_drain(m), 1);
	vud_close(&a);
	env_down(&e);
}

START_TEST(packed_position_outside_the_ring_is_never_used)
{
	packed_position((enum order)_i);
}
END_TEST

/* ---- 2. control messages in the middle of traffic, workers polling ---------------- */

enum ctl {
	CTL_CALL, CTL_ENABLE, CTL_MEM_ADD, CTL_ERR, CTL_DISABLE, CTL_KICK, CTL_RX_KICK,
	CTL_NOFD, CTL_STOP_START, CTL_ADDR, CTL_LOG_ALL, N_CTL
};

/* a sends `total` frames to b while the switch's worker polls a's transmit
 * queue (kicks suppressed); every 40 frames a's front-end sends a control
 * message that pauses the port. Every frame must arrive. CTL_DISABLE
 * sends the next frame while a's transmit ring is disabled and enables it
 * again: the guest's kick is taken while the ring is not live, and with
 * EVENT_IDX the driver would not kick again (found by a review). */
static void traffic_with_control(uint64_t want, enum ctl ctl)
{
	struct hs_switch_config cfg = {.n_workers = 1, .poll_us = 100000};
	struct env e;
	env_up_cfg(&e, 0, &cfg);
	struct vud a, b;
	guests_up(&e, &a, &b, want);
	static uint8_t f[2000], g[2000];
	size_t n;
	const uint32_t total = 400;
	int extra_fd = -1;
	bool disabled = false, polled = false;
	for (uint32_t i = 1; i <= total; i++) {
		n = mkframe(f, 2, 1, 60 + i % 700, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			vud_reap_tx(&a, 0);
		if (disabled) { /* the frame and its kick went to a disabled ring */
			usleep(20000);
			ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_ENABLE, 1, 1), 0);
			disabled = false;
		}
		int got = recv_wait(&b, g, sizeof(g), NULL);
		ck_assert_msg(got == (int)n, "frame %u of %u stuck after a control message "
			      "(%d, features %llx)", i, total, ctl,
			      (unsigned long long)a.features);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		vud_post_rx(&b, 0, 1, VUD_BUF);
		vud_reap_tx(&a, 0);
		if (i % 40)
			continue;
		switch (ctl) {
		case CTL_CALL: /* QEMU does this when a guest masks a vector */
			ck_assert_int_eq(vud_ring_fd(&a, VUD_SET_VRING_CALL, 1, a.r[1].call), 0);
			break;
		case CTL_ENABLE: /* ethtool -L, or a repeated enable */
			ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_ENABLE, 1, 1), 0);
			break;
		case CTL_MEM_ADD: { /* memory hot-plug: a region added, then removed */
			if (extra_fd < 0) {
				extra_fd = memfd_create("vud-extra", MFD_CLOEXEC);
				ck_assert_int_eq(ftruncate(extra_fd, 1 << 20), 0);
			}
			uint64_t reg[5] = {0, 0x100000000ull, 1 << 20, 0x10000000000ull, 0};
			uint32_t req = (i / 40) % 2 ? VUD_ADD_MEM_REG : VUD_REM_MEM_REG;
			ck_assert_int_eq(vud_call(&a, req, reg, sizeof(reg), &extra_fd, 1), 0);
			break;
		}
		case CTL_ERR: {
			int efd = eventfd(0, EFD_CLOEXEC);
			ck_assert_int_eq(vud_ring_fd(&a, VUD_SET_VRING_ERR, 1, efd), 0);
			close(efd);
			break;
		}
		case CTL_DISABLE: /* ethtool -L down and up again */
			ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_ENABLE, 1, 0), 0);
			disabled = true;
			break;
		case CTL_KICK: /* a new kick fd for the running transmit ring */
		case CTL_RX_KICK: { /* and for the receiver's running receive ring */
			struct vud *v = ctl == CTL_KICK ? &a : &b;
			unsigned r = ctl == CTL_KICK ? 1 : 0;
			int k = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
			ck_assert_int_eq(vud_ring_fd(v, VUD_SET_VRING_KICK, r, k), 0);
			close(v->r[r].kick);
			v->r[r].kick = k;
			break;
		}
		case CTL_NOFD: { /* the front-end starts or stops polling the ring */
			uint64_t ki = 1 | (polled ? 0 : 0x100);
			ck_assert_int_eq(vud_call(&a, VUD_SET_VRING_KICK, &ki, 8,
						  polled ? &a.r[1].kick : NULL, polled ? 1 : 0), 0);
			polled = !polled;
			break;
		}
		case CTL_STOP_START: { /* vm stop / cont */
			uint32_t st[2] = {1, 0};
			ck_assert_int_eq(vud_send_msg(&a, VUD_GET_VRING_BASE, 0, st, 8, NULL, 0), 0);
			ck_assert_int_eq(vud_recv_reply(&a, VUD_GET_VRING_BASE, st, 8), 8);
			ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_BASE, 1, st[1]), 0);
			ck_assert_int_eq(vud_ring_fd(&a, VUD_SET_VRING_KICK, 1, a.r[1].kick), 0);
			break;
		}
		case CTL_ADDR: /* the same addresses again (QEMU on LOG toggles) */
			ck_assert_int_eq(vud_ring_addr(&a, 1), 0);
			break;
		case CTL_LOG_ALL: /* LOG_ALL on and off while running */
			ck_assert_int_eq(vud_u64(&a, VUD_SET_FEATURES,
						 a.features | ((i / 40) % 2 ? F(26) : 0)), 0);
			break;
		default:
			break;
		}
	}
	if (extra_fd >= 0)
		close(extra_fd);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}

START_TEST(control_messages_mid_traffic_never_stall_a_polled_queue)
{
	static const uint64_t rings[] = {
		0, F(HS_VIRTIO_F_EVENT_IDX), F(HS_VIRTIO_F_RING_PACKED),
		F(HS_VIRTIO_F_RING_PACKED) | F(HS_VIRTIO_F_EVENT_IDX)};
	traffic_with_control(base | rings[_i % 4], (enum ctl)(_i / 4));
}
END_TEST

/* ---- 3. memory files ---------------------------------------------------------------- */

START_TEST(a_region_larger_than_its_file_is_refused)
{
	struct env e;
	env_up(&e, 0);
	struct vud v;
	ck_assert_int_eq(vud_connect(&v, e.path[0]), 0);
	ck_assert_int_eq(vud_hello(&v, base), 0);
	ck_assert_int_eq(vud_u64(&v, VUD_SET_FEATURES, v.features), 0);
	int small = memfd_create("vud-small", MFD_CLOEXEC);
	ck_assert_int_eq(ftruncate(small, 4096), 0);
	/* 16 MiB described, 4 KiB behind it; then an offset past the end. */
	uint64_t mt[5] = {1, VUD_GPA, VUD_MEM, (uint64_t)(uintptr_t)v.mem, 0};
	ck_assert_int_eq(vud_call(&v, VUD_SET_MEM_TABLE, mt, 8 + 32, &small, 1), -EIO);
	uint64_t mt2[5] = {1, VUD_GPA, 4096, (uint64_t)(uintptr_t)v.mem, 4096};
	ck_assert_int_eq(vud_call(&v, VUD_SET_MEM_TABLE, mt2, 8 + 32, &small, 1), -EIO);
	uint64_t reg[5] = {0, VUD_GPA, VUD_MEM, (uint64_t)(uintptr_t)v.mem, 0};
	ck_assert_int_eq(vud_call(&v, VUD_ADD_MEM_REG, reg, sizeof(reg), &small, 1), -EIO);
	close(small);
	/* The same connection then sets up properly and works. */
	ck_assert_int_eq(vud_mem_table(&v), 0);
	v.nqp = 1;
	for (unsigned i = 0; i < 2; i++) {
		vud_ring_alloc(&v, &v.r[i], !(i & 1));
		ck_assert_int_eq(vud_ring_setup(&v, i), 0);
	}
	ck_assert_int_eq(vud_post_rx(&v, 0, 16, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	vud_close(&v);
	env_down(&e);
}
END_TEST

/* The front-end shrinks its memory file after the switch mapped it: the
 * switch's next access to the rings is past the end of the file. */
START_TEST(a_memory_file_shrunk_under_the_switch_stops_only_its_port)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m1 = th_port(e.sw, "m1", 0), *m2 = th_port(e.sw, "m2", 0);
	struct vud a;
	guest_up(&a, e.path[0], base | (_i ? F(HS_VIRTIO_F_RING_PACKED) : 0), e.p[0]);
	shrink_guest_memory(&a);
	static uint8_t f[200];
	size_t n = mkframe(f, 0, 9, 100, 1);
	ck_assert_int_eq(th_send(m1, f, n), 0); /* floods into a's rings too */
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]), 3000));
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "memory_faults") >= 1, 3000));
	/* Everyone else keeps switching; a new front-end on the port works. */
	others_keep_switching_then_port_recovers(&e, &a, m1, m2, base);
	env_down(&e);
}
END_TEST

/* ---- 4. setup messages in any order -------------------------------------------------- */

/* Steps of a front-end's setup, applied to both rings of queue pair 0. */
enum step {
	S_END, S_FEAT, S_MEM, S_NUM, S_BASE, S_ADDR, S_KICK, S_CALL, S_ENABLE,
	S_FEAT_OTHER,   /* features that differ (EVENT_IDX toggled) */
	S_NUM_OTHER,    /* another ring size */
	S_BASE_OTHER,   /* another position */
	S_MEM_NORING,   /* a table without the rings' region */
	S_GET_BASE,     /* stop the rings */
	S_ADDR_BAD,     /* addresses outside guest memory */
	S_BASE_WIDE,    /* a position wider than 16 bits */
	S_NUM_BIG,      /* 32768 */
	S_BASE_FAR,     /* slot 20000 */
	S_BASE_USED_FAR, /* packed: used slot 20000 (upper half, as QEMU sends it) */
};

enum expect { WORKS, REFUSED, EITHER };

struct scenario {
	const char *name;
	enum expect expect;
	enum step steps[24];
};

#define CANON S_FEAT, S_MEM, S_NUM, S_BASE, S_ADDR, S_KICK, S_CALL, S_ENABLE
static const struct scenario scenarios[] = {
	{"canonical", WORKS, {CANON}},
	{"memory before features", WORKS,
	 {S_MEM, S_FEAT, S_NUM, S_BASE, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
	{"rings before features and memory", WORKS,
	 {S_NUM, S_BASE, S_ADDR, S_CALL, S_FEAT, S_MEM, S_KICK, S_ENABLE}},
	{"kick before memory", WORKS,
	 {S_FEAT, S_NUM, S_BASE, S_ADDR, S_KICK, S_CALL, S_ENABLE, S_MEM}},
	{"addresses before size", WORKS,
	 {S_FEAT, S_MEM, S_ADDR, S_BASE, S_NUM, S_KICK, S_CALL, S_ENABLE}},
	{"enable before kick", WORKS,
	 {S_FEAT, S_MEM, S_NUM, S_BASE, S_ADDR, S_ENABLE, S_CALL, S_KICK}},
	{"everything twice", WORKS,
	 {S_FEAT, S_FEAT, S_MEM, S_MEM, S_NUM, S_NUM, S_BASE, S_BASE, S_ADDR, S_ADDR,
	  S_KICK, S_KICK, S_CALL, S_CALL, S_ENABLE, S_ENABLE}},
	{"features changed after start", WORKS, {CANON, S_FEAT_OTHER}},
	{"size changed after start", WORKS, {CANON, S_NUM_OTHER}},
	{"position changed after start", WORKS, {CANON, S_BASE_OTHER}},
	{"memory table replaced under live rings", WORKS, {CANON, S_MEM, S_MEM}},
	{"rings' memory removed, then back", WORKS, {CANON, S_MEM_NORING, S_MEM}},
	{"stopped and started again", WORKS, {CANON, S_GET_BASE, S_KICK}},
	{"bad addresses, then good ones", WORKS,
	 {S_FEAT, S_MEM, S_NUM, S_BASE, S_ADDR_BAD, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
	{"rings' memory removed", REFUSED, {CANON, S_MEM_NORING}},
	{"stopped", REFUSED, {CANON, S_GET_BASE}},
	{"kick before size", REFUSED,
	 {S_FEAT, S_MEM, S_KICK, S_NUM, S_BASE, S_ADDR, S_CALL, S_ENABLE}},
	{"position wider than 16 bits", EITHER,
	 {S_FEAT, S_MEM, S_NUM, S_BASE_WIDE, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
	{"big ring, far position, small ring", EITHER,
	 {S_FEAT, S_MEM, S_NUM_BIG, S_BASE_FAR, S_NUM, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
	{"far position before size", EITHER,
	 {S_FEAT, S_MEM, S_BASE_FAR, S_NUM, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
	{"bad addresses only", REFUSED,
	 {S_FEAT, S_MEM, S_NUM, S_BASE, S_ADDR_BAD, S_KICK, S_CALL, S_ENABLE}},
	{"no position", EITHER, {S_FEAT, S_MEM, S_NUM, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
	{"used position far outside", REFUSED,
	 {S_FEAT, S_MEM, S_NUM, S_BASE_USED_FAR, S_ADDR, S_KICK, S_CALL, S_ENABLE}},
};
#define N_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* Guest memory for the permutation test: region 0 holds the rings, each
 * ring's last area ending on a page boundary, and the region ends right
 * after the transmit ring (the switch maps a guard after every region:
 * an access past that ring faults); region 1 holds the buffer pools and,
 * after them, the canary. */
#define PERM_R0 (64u << 10)
#define POOL_N 64

struct perm {
	struct vud v;
	uint8_t *rx_pool, *tx_pool, *canary;
	size_t canary_len;
	unsigned rx_next, tx_next;
	uint64_t feat;
};

/* A table with region 0 (the rings) and/or region 1 (the pools). */
static int perm_mem_of(struct perm *p, bool with_rings, bool with_pools)
{
	struct vud *v = &p->v;
	uint64_t mt[1 + 2 * 4] = {0};
	uint32_t n = (uint32_t)with_rings + (uint32_t)with_pools;
	memcpy(mt, &n, 4);
	uint64_t *r = mt + 1;
	if (with_rings) {
		r[0] = VUD_GPA, r[1] = PERM_R0, r[2] = (uint64_t)(uintptr_t)v->mem, r[3] = 0;
		r += 4;
	}
	if (with_pools) {
		r[0] = VUD_GPA + PERM_R0, r[1] = VUD_MEM - PERM_R0;
		r[2] = (uint64_t)(uintptr_t)v->mem + PERM_R0, r[3] = PERM_R0;
	}
	int fds[2] = {v->memfd, v->memfd};
	return vud_call(v, VUD_SET_MEM_TABLE, mt, 8 + 32 * n, fds, n);
}

static int perm_mem(struct perm *p, bool with_rings)
{
	return perm_mem_of(p, with_rings, true);
}

/* Lays out one ring so that its last area ends at `end` (page aligned). */
static void perm_ring(struct perm *p, unsigned i, size_t end)
{
	struct vud *v = &p->v;
	struct vud_ring *r = &v->r[i];
	vud_ring_alloc(v, r, !(i & 1)); /* state and fds; areas placed below */
	uint8_t *e = v->mem + end;
	if (!v->packed) {
		r->used = (uint16_t *)(e - 2056);           /* 6 + 8n, 8-aligned start */
		r->avail = (uint16_t *)(e - 4096 - 520);    /* 6 + 2n */
		r->desc = (void *)(e - 8192);               /* 16n */
	} else {
		r->pdesc = (void *)(e - 4096);
		r->drv_evt = (uint16_t *)(e - 8192);
		r->dev_evt = (uint16_t *)(e - 8192 + 64);
	}
}

static int perm_step(struct perm *p, enum step st)
{
	struct vud *v = &p->v;
	int rc = 0;
	for (unsigned i = 0; i < 2 && !rc; i++) {
		struct vud_ring *r = &v->r[i];
		switch (st) {
		case S_FEAT:
			return vud_u64(v, VUD_SET_FEATURES, p->feat);
		case S_FEAT_OTHER:
			return vud_u64(v, VUD_SET_FEATURES, p->feat ^ F(HS_VIRTIO_F_EVENT_IDX));
		case S_MEM:
			return perm_mem(p, true);
		case S_MEM_NORING:
			return perm_mem(p, false);
		case S_NUM:
			rc = vud_state(v, VUD_SET_VRING_NUM, i, VUD_QSIZE);
			break;
		case S_NUM_OTHER:
			rc = vud_state(v, VUD_SET_VRING_NUM, i, VUD_QSIZE / 2);
			break;
		case S_NUM_BIG:
			rc = vud_state(v, VUD_SET_VRING_NUM, i, 32768);
			break;
		case S_BASE:
			rc = vud_state(v, VUD_SET_VRING_BASE, i, v->packed ? 0x8000 : 0);
			break;
		case S_BASE_OTHER:
			rc = vud_state(v, VUD_SET_VRING_BASE, i, v->packed ? 0x8000 | 7 : 7);
			break;
		case S_BASE_WIDE:
			rc = vud_state(v, VUD_SET_VRING_BASE, i, 0x18000);
			break;
		case S_BASE_FAR:
			rc = vud_state(v, VUD_SET_VRING_BASE, i, 0x8000 | 20000);
			break;
		case S_BASE_USED_FAR:
			rc = vud_state(v, VUD_SET_VRING_BASE, i, 0x8000 | (0x8000u | 20000) << 16);
			break;
		case S_ADDR:
			rc = vud_ring_addr(v, i);
			break;
		case S_ADDR_BAD: {
			uint64_t a[5] = {i, 0x10, 0x10, 0x10, 0};
			rc = vud_call(v, VUD_SET_VRING_ADDR, a, 40, NULL, 0);
			break;
		}
		case S_KICK:
			rc = vud_ring_fd(v, VUD_SET_VRING_KICK, i, r->kick);
			break;
		case S_CALL:
			rc = vud_ring_fd(v, VUD_SET_VRING_CALL, i, r->call);
			break;
		case S_ENABLE:
			rc = vud_state(v, VUD_SET_VRING_ENABLE, i, 1);
			break;
		case S_GET_BASE: {
			uint32_t stt[2] = {i, 0}, out[2];
			rc = vud_send_msg(v, VUD_GET_VRING_BASE, 0, stt, 8, NULL, 0);
			if (!rc)
				rc = vud_recv_reply(v, VUD_GET_VRING_BASE, out, 8) == 8 ? 0 : -EPROTO;
			break;
		}
		default:
			break;
		}
	}
	return rc;
}

static void perm_post(struct perm *p, unsigned n)
{
	struct vud_ring *r = &p->v.r[0];
	uint16_t old = r->avail_idx;
	for (unsigned k = 0; k < n; k++) {
		uint64_t g = vud_gpa(&p->v, p->rx_pool + (p->rx_next++ % POOL_N) * VUD_BUF);
		uint32_t len = VUD_BUF;
		if (vud_add(&p->v, r, &g, &len, 1, g))
			break;
	}
	vud_kick_if_needed(&p->v, r, old);
}

static void perm_send(struct perm *p, const uint8_t *f, uint32_t n)
{
	struct vud *v = &p->v;
	struct vud_ring *r = &v->r[1];
	vud_reap_tx(v, 0);
	uint8_t *b = p->tx_pool + (p->tx_next++ % POOL_N) * VUD_BUF;
	memset(b, 0, v->hdr_len);
	memcpy(b + v->hdr_len, f, n);
	uint64_t g = vud_gpa(v, b);
	uint32_t len = v->hdr_len + n;
	uint16_t old = r->avail_idx;
	if (!vud_add(v, r, &g, &len, 1, g))
		vud_kick_if_needed(v, r, old);
}

/* Brings up the switch, connects to its port 0 and lays out the guest's
 * memory (nothing sent yet). */
static void perm_connect(struct perm *p, struct env *e, bool packed)
{
	env_up(e, 0);
	memset(p, 0, sizeof(*p));
	struct vud *v = &p->v;
	ck_assert_int_eq(vud_connect(v, e->path[0]), 0);
	uint64_t want = base | F(HS_VIRTIO_F_EVENT_IDX) | (packed ? F(HS_VIRTIO_F_RING_PACKED) : 0);
	ck_assert_int_eq(vud_hello(v, want), 0);
	p->feat = v->features;
	v->nqp = 1;
	perm_ring(p, 0, PERM_R0 / 2);
	perm_ring(p, 1, PERM_R0);
	v->used_mem = PERM_R0;
	p->rx_pool = vud_alloc(v, POOL_N * VUD_BUF, 4096);
	p->tx_pool = vud_alloc(v, POOL_N * VUD_BUF, 4096);
	p->canary = vud_alloc(v, 1, 4096);
	p->canary_len = VUD_MEM - (size_t)(p->canary - v->mem);
	memset(p->canary, CANARY, p->canary_len);
}

static void permutation(const struct scenario *sc, bool packed)
{
	struct env e;
	static struct perm p;
	struct vud *v = &p.v;
	perm_connect(&p, &e, packed);
	hs_port_t *m = th_port(e.sw, "m", 0), *m2 = th_port(e.sw, "m2", 0);
	int refused = 0;
	for (unsigned k = 0; k < 24 && sc->steps[k] != S_END; k++)
		refused += perm_step(&p, sc->steps[k]) != 0;
	perm_post(&p, 32);
	/* Traffic both ways: m floods to the guest, the guest answers m. */
	static uint8_t f[200], g[2100];
	size_t n = mkframe(f, 0, 7, 100, 1);
	ck_assert_int_eq(th_send(m, f, n), 0);
	int got = 0;
	TH_WAIT((got = vud_recv(v, 0, g, sizeof(g), NULL)) != 0, sc->expect == WORKS ? 3000 : 200);
	n = mkframe(f, 7, 1, 100, 2);
	perm_send(&p, f, (uint32_t)n);
	bool back = TH_WAIT(th_pending(m) > 0, sc->expect == WORKS ? 3000 : 200);
	bool works = got == (int)n && back;
	if (sc->expect == WORKS)
		ck_assert_msg(works, "%s (%s): no traffic (got %d, back %d, %d steps refused)",
			      sc->name, packed ? "packed" : "split", got, back, refused);
	else if (sc->expect == REFUSED)
		ck_assert_msg(!works, "%s (%s): traffic through a ring that should not run",
			      sc->name, packed ? "packed" : "split");
	/* Whatever happened, nothing was written outside the rings and the
	 * buffers, and the rest of the switch works. */
	size_t bad = 0;
	while (bad < p.canary_len && p.canary[bad] == CANARY)
		bad++;
	ck_assert_msg(bad == p.canary_len, "%s (%s): byte %zu past the pools written",
		      sc->name, packed ? "packed" : "split", bad);
	th_drain(m);
	th_drain(m2);
	n = mkframe(f, 0, 9, 100, 3);
	hs_port_t *m3 = th_port(e.sw, "m3", 0);
	ck_assert_int_eq(th_send(m3, f, n), 0);
	ck_assert(TH_WAIT(th_drain(m2) == 1, 3000));
	vud_close(v);
	env_down(&e);
}

START_TEST(setup_messages_in_any_order_work_or_are_refused)
{
	permutation(&scenarios[_i / 2], _i % 2);
}
END_TEST

/* ---- 5. hostile packed rings --------------------------------------------------------- */

enum pabuse { P_LOOP, P_OUTSIDE, P_WRONG_DIR, P_NESTED_INDIRECT, P_BAD_INDIRECT_LEN,
	      P_INDIRECT_NOT_NEGOTIATED, P_INDIRECT_WITH_NEXT, N_PBROKEN,
	      /* not breaking the ring, but not to be taken as frames either */
	      P_WRONG_WRAP = N_PBROKEN, P_USED_LOOKING, N_PABUSE };

struct pdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t id, flags;
};

static void abuse_packed(struct vud *v, enum pabuse kind)
{
	struct vud_ring *r = &v->r[1];
	struct pdesc *ring = (struct pdesc *)r->pdesc;
	uint16_t s = r->avail_idx;
	uint16_t av = r->avail_wrap ? (1 << 7) : (1 << 15);
	uint8_t *b = vud_alloc(v, 4096, 64);
	memset(b, 0, 4096);
	struct pdesc d = {vud_gpa(v, b), 100, 3, av};
	switch (kind) {
	case P_LOOP: /* every slot says NEXT: a chain longer than the ring.
		      * The head last, as a driver publishes a chain: a polling
		      * worker may look at the ring while it is being written,
		      * and would take the part written so far for a chain of
		      * its own (which ends where the writing is). */
		for (unsigned k = 0; k < r->size; k++)
			if (k != s)
				ring[k] = (struct pdesc){vud_gpa(v, b), 8, 3, (uint16_t)(av | 1)};
		__atomic_thread_fence(__ATOMIC_RELEASE);
		d.flags = (uint16_t)(av | 1);
		break;
	case P_OUTSIDE:
		d.addr = 0x10;
		break;
	case P_WRONG_DIR:
		d.flags = (uint16_t)(av | 2);
		break;
	case P_NESTED_INDIRECT: {
		struct pdesc *t = (struct pdesc *)(b + 1024);
		t[0] = (struct pdesc){vud_gpa(v, b), 16, 0, 4};
		d = (struct pdesc){vud_gpa(v, t), 16, 3, (uint16_t)(av | 4)};
		break;
	}
	case P_BAD_INDIRECT_LEN:
		d = (struct pdesc){vud_gpa(v, b), 17, 3, (uint16_t)(av | 4)};
		break;
	case P_INDIRECT_NOT_NEGOTIATED: /* the port below does not offer it */
		d = (struct pdesc){vud_gpa(v, b), 16, 3, (uint16_t)(av | 4)};
		break;
	case P_INDIRECT_WITH_NEXT:
		d = (struct pdesc){vud_gpa(v, b), 16, 3, (uint16_t)(av | 4 | 1)};
		break;
	case P_WRONG_WRAP: /* marked available for the other lap */
		d.flags = (uint16_t)(av ^ ((1 << 7) | (1 << 15)));
		break;
	case P_USED_LOOKING: /* both bits as this lap's used descriptors */
		d.flags = r->avail_wrap ? (uint16_t)((1 << 7) | (1 << 15)) : 0;
		break;
	default:
		break;
	}
	/* the flags last: they make the descriptor available */
	ring[s].addr = d.addr;
	ring[s].len = d.len;
	ring[s].id = d.id;
	__atomic_store_n(&ring[s].flags, d.flags, __ATOMIC_RELEASE);
	vud_kick(r);
}

/* What a management plane hears of a broken ring (HS_EVENT_BROKEN) and
 * the link it takes down (HS_EVENT_LINK): counted, the reason kept. */
struct heard {
	_Atomic int broken, link_down;
	char reason[96];
	hs_port_t *port;
};

static void hear(void *opaque, const struct hs_event *ev)
{
	struct heard *h = opaque;
	if (ev->type == HS_EVENT_BROKEN && ev->port == h->port) {
		snprintf(h->reason, sizeof(h->reason), "%s", ev->reason);
		atomic_fetch_add(&h->broken, 1);
	} else if (ev->type == HS_EVENT_LINK && ev->port == h->port && !ev->link_up) {
		atomic_fetch_add(&h->link_down, 1);
	}
}

START_TEST(hostile_packed_rings_stop_only_their_port)
{
	enum pabuse kind = (enum pabuse)_i;
	struct env e;
	uint64_t off = kind == P_INDIRECT_NOT_NEGOTIATED ? F(HS_VIRTIO_F_INDIRECT_DESC) : 0;
	env_up(&e, off);
	static struct heard h;
	memset(&h, 0, sizeof(h));
	h.port = e.p[0];
	ck_assert_int_eq(hs_switch_set_event_fn(e.sw, hear, &h), 0);
	hs_port_t *m1 = th_port(e.sw, "m1", 0), *m2 = th_port(e.sw, "m2", 0);
	struct vud a;
	uint64_t want = base | F(HS_VIRTIO_F_RING_PACKED) | F(HS_VIRTIO_F_INDIRECT_DESC);
	guest_up(&a, e.path[0], want, e.p[0]);
	abuse_packed(&a, kind);
	if (kind < N_PBROKEN) {
		ck_assert_msg(TH_WAIT(!hs_port_link_up(e.p[0]), 3000), "abuse %d", kind);
		ck_assert_uint_eq(backend_ctr(e.p[0], "broken_rings"), 1);
		/* the events follow the state change: wait for them (under
		 * qemu-user the check once came first) */
		ck_assert(TH_WAIT(atomic_load(&h.broken) == 1, 3000));
		ck_assert(h.reason[0] && strcmp(h.reason, "?"));
		ck_assert(TH_WAIT(atomic_load(&h.link_down) >= 1, 3000));
	} else {
		/* Not available to the device: nothing taken, nothing broken. */
		ck_assert(!TH_WAIT(th_pstats(e.p[0]).rx_packets > 0 ||
				   backend_ctr(e.p[0], "broken_rings") > 0, 200));
		ck_assert(hs_port_link_up(e.p[0]));
	}
	others_keep_switching_then_port_recovers(&e, &a, m1, m2, want);
	ck_assert_int_eq(hs_switch_set_event_fn(e.sw, NULL, NULL), 0);
	env_down(&e);
}
END_TEST

/* Packed buffer ids are the driver's: any 16-bit value comes back as it
 * was given, and an indirect table in a packed ring carries a frame. */
START_TEST(packed_ids_and_indirect_tables_are_the_drivers)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	uint64_t want = base | F(HS_VIRTIO_F_RING_PACKED) | F(HS_VIRTIO_F_INDIRECT_DESC);
	guest_up(&a, e.path[0], want, e.p[0]);
	struct vud_ring *r = &a.r[1];
	struct pdesc *ring = (struct pdesc *)r->pdesc;
	static uint8_t f[300];
	size_t n = mkframe(f, 5, 1, 200, 1);
	uint8_t *b = vud_alloc(&a, 512, 64);
	memset(b, 0, a.hdr_len);
	memcpy(b + a.hdr_len, f, n);
	/* An indirect table of three pieces, buffer id 60000. */
	struct pdesc *t = vud_alloc(&a, 3 * 16, 16);
	t[0] = (struct pdesc){vud_gpa(&a, b), a.hdr_len, 0, 0};
	t[1] = (struct pdesc){vud_gpa(&a, b + a.hdr_len), 50, 0, 0};
	t[2] = (struct pdesc){vud_gpa(&a, b + a.hdr_len + 50), (uint32_t)n - 50, 0, 0};
	uint16_t s = r->avail_idx;
	ring[s] = (struct pdesc){vud_gpa(&a, t), 48, 60000,
				 (uint16_t)((r->avail_wrap ? 1 << 7 : 1 << 15) | 4)};
	vud_kick(r);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	struct hs_mem_frame fr;
	ck_assert_int_eq(hs_mem_rx_burst(m, 0, &fr, 1), 1);
	ck_assert_uint_eq(fr.len, n);
	ck_assert_int_eq(memcmp(fr.data, f, n), 0);
	hs_mem_rx_release(m, 0, 1);
	/* The used descriptor carries id 60000 in the slot of the chain. */
	ck_assert(TH_WAIT(__atomic_load_n(&ring[s].flags, __ATOMIC_ACQUIRE) ==
				  (r->avail_wrap ? ((1 << 7) | (1 << 15)) : 0), 3000));
	ck_assert_uint_eq(ring[s].id, 60000);
	ck_assert(hs_port_link_up(e.p[0]));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* A receive buffer in more pieces than the switch can track is given back
 * unused and counted; the receiver keeps getting frames. */
START_TEST(a_receive_buffer_in_too_many_pieces_does_not_stall_the_guest)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	uint64_t want = base | F(HS_VIRTIO_F_INDIRECT_DESC) | (_i ? F(HS_VIRTIO_F_RING_PACKED) : 0);
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, want, 1), 0);
	struct vud_ring *r = &a.r[0];
	/* 2000 one-byte pieces, every other byte: nothing merges. */
	uint8_t *b = vud_alloc(&a, 4096, 64);
	void *tbl = vud_alloc(&a, 2000 * 16, 16);
	for (unsigned k = 0; k < 2000; k++) {
		uint64_t addr = vud_gpa(&a, b + 2 * k);
		if (a.packed)
			((struct pdesc *)tbl)[k] = (struct pdesc){addr, 1, 0, 2};
		else
			((struct vring_d { uint64_t a; uint32_t l; uint16_t f, n; } *)tbl)[k] =
				(struct vring_d){addr, 1, (uint16_t)(2 | (k + 1 < 2000)),
						 (uint16_t)(k + 1)};
	}
	if (a.packed) {
		struct pdesc *ring = (struct pdesc *)r->pdesc;
		ring[r->avail_idx] = (struct pdesc){vud_gpa(&a, tbl), 2000 * 16, 0,
						     (uint16_t)((1 << 7) | 4 | 2)};
		r->avail_idx++;
		r->nfree--;
		r->chain_len[0] = 1;
		r->out[0] = true;
		r->n_id_free--; /* id 0 (the next free one) taken */
	} else {
		uint16_t head = r->free_head;
		r->desc[head].addr = vud_gpa(&a, tbl);
		r->desc[head].len = 2000 * 16;
		r->desc[head].flags = 4 | 2;
		r->free_head = r->next_free[head];
		r->nfree--;
		r->chain_len[head] = 1;
		r->out[head] = true;
		r->avail[2 + (r->avail_idx & (r->size - 1))] = head;
		r->avail_idx++;
		__atomic_store_n(&r->avail[1], r->avail_idx, __ATOMIC_RELEASE);
	}
	ck_assert_int_eq(vud_post_rx(&a, 0, 8, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[200], g[2100];
	for (uint32_t i = 0; i < 3; i++) {
		size_t n = mkframe(f, 0, 7, 100, i);
		ck_assert_int_eq(th_send(m, f, n), 0);
		int got = 0;
		if (i == 0) /* the bad buffer comes back empty first */
			TH_WAIT((got = vud_recv(&a, 0, g, sizeof(g), NULL)) != 0, 3000);
		TH_WAIT((got = vud_recv(&a, 0, g, sizeof(g), NULL)) != 0, 3000);
		ck_assert_int_eq(got, (int)n);
	}
	ck_assert_uint_eq(backend_ctr(e.p[0], "bad_rx_buffers"), 1);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* Receive buffers the switch can never use, anywhere in what one frame
 * or one burst takes (found by a review): longer than the limit, too
 * short for anything (empty; with MRG_RXBUF shorter than the virtio-net
 * header, without it than that and an Ethernet header), after a good
 * buffer too small for the frame (MRG_RXBUF: the reservation's second
 * chain), or the first of a burst's second frame. Each goes back unused
 * (with any buffer before it in its frame's reservation, in order) and
 * is counted once in bad_rx_buffers; every frame arrives, in order, none
 * dropped as oversize. Before, the first case stalled the queue for good
 * (it popped the same two chains again each time, "out of buffers") and
 * a zero-length buffer without MRG_RXBUF had every frame dropped as
 * oversize. */
enum unusable { UN_LONG_SECOND, UN_ZERO, UN_SHORT, UN_ZERO_IN_BURST, N_UNUSABLE };

static void post_one_rx(struct vud *v, uint64_t gpa, uint32_t len)
{
	ck_assert_int_eq(vud_add(v, &v->r[0], &gpa, &len, 1, gpa), 0);
}

START_TEST(an_unusable_receive_buffer_is_given_back_wherever_it_is)
{
	enum unusable kind = (enum unusable)(_i / 4);
	bool packed = _i & 1, mrg = _i & 2;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base | (mrg ? F(HS_VIRTIO_NET_F_MRG_RXBUF) : 0) |
					   (packed ? F(HS_VIRTIO_F_RING_PACKED) : 0), 1), 0);
	ck_assert(a.packed == packed);
	uint8_t *small = vud_alloc(&a, 64, 64), *any = vud_alloc(&a, 4096, 64);
	unsigned unused = 1; /* used entries of length 0 before the frames */
	switch (kind) {
	case UN_LONG_SECOND:
		if (mrg) { /* too small for the frame: the bad one is second */
			post_one_rx(&a, vud_gpa(&a, small), 64);
			unused = 2;
		}
		post_one_rx(&a, vud_gpa(&a, any), 0x80000000u); /* > UINT32_MAX / 2 */
		break;
	case UN_ZERO:
		post_one_rx(&a, vud_gpa(&a, any), 0);
		break;
	case UN_SHORT: /* with MRG_RXBUF short of the header, without it of an
			* Ethernet header after it */
		post_one_rx(&a, vud_gpa(&a, any), mrg ? a.hdr_len - 1 : a.hdr_len + 13);
		break;
	case UN_ZERO_IN_BURST: /* the burst's first frame takes a good buffer */
		ck_assert_int_eq(vud_post_rx(&a, 0, 1, VUD_BUF), 0);
		post_one_rx(&a, vud_gpa(&a, any), 0);
		break;
	default:
		ck_abort();
	}
	ck_assert_int_eq(vud_post_rx(&a, 0, 8, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));

	/* two frames in one burst, 100 and 120 bytes */
	static uint8_t f[2][200];
	struct hs_mem_frame fr[2];
	for (unsigned k = 0; k < 2; k++)
		fr[k] = (struct hs_mem_frame){.data = f[k], .cookie = k,
					      .len = (uint32_t)mkframe(f[k], 0, 7, 100 + 20 * k, k)};
	ck_assert_int_eq(hs_mem_tx_burst(m, 0, fr, 2), 2);
	uint64_t ck[2];
	ck_assert(TH_WAIT(hs_mem_tx_reap(m, 0, ck, 2) == 2, 5000));
	/* what the guest sees, in order: 0-length entries, then the frames
	 * (the good buffer before the bad one in a burst holds the first) */
	uint32_t want[4], got[4];
	unsigned nw = 0, ng = 0;
	if (kind == UN_ZERO_IN_BURST)
		want[nw++] = fr[0].len + a.hdr_len;
	for (unsigned k = 0; k < unused; k++)
		want[nw++] = 0;
	for (unsigned k = kind == UN_ZERO_IN_BURST; k < 2; k++)
		want[nw++] = fr[k].len + a.hdr_len;
	for (unsigned t = 0; t < 3000 && ng < nw; t++) {
		uint64_t tag;
		uint32_t len;
		while (ng < 4 && vud_used(&a, &a.r[0], &tag, &len))
			got[ng++] = len;
		if (ng < nw)
			usleep(1000);
	}
	struct hs_port_stats st = th_pstats(e.p[0]);
	ck_assert_msg(ng == nw, "case %d: %u used entries of %u (tx_packets %llu, oversize "
		      "%llu, bad_rx_buffers %llu)", _i, ng, nw,
		      (unsigned long long)st.tx_packets,
		      (unsigned long long)st.drops[HS_DROP_OVERSIZE],
		      (unsigned long long)backend_ctr(e.p[0], "bad_rx_buffers"));
	for (unsigned k = 0; k < nw; k++)
		ck_assert_msg(got[k] == want[k], "case %d: used entry %u is %u bytes, not %u", _i,
			      k, got[k], want[k]);
	/* the counters follow the used ring: a worker may count after the
	 * guest saw its frames (aarch64 under qemu-user showed it) */
	ck_assert(TH_WAIT(th_pstats(e.p[0]).tx_packets == 2, 3000));
	st = th_pstats(e.p[0]);
	ck_assert_uint_eq(st.tx_packets, 2);
	ck_assert_uint_eq(st.drops[HS_DROP_OVERSIZE], 0);
	ck_assert_uint_eq(backend_ctr(e.p[0], "bad_rx_buffers"), 1);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* A guest that keeps its receive ring full of zero-length buffers, re-posting
 * each one as soon as the switch gives it back (split ring: it learns that
 * from the used element the switch writes, before any flush). The give-back
 * stops after a ring's worth and the frame waits, instead of the thread that
 * delivers it (holding the queue's egress lock) being the guest's for as
 * long as it re-posts: before, 35 thousand to 1.9 million buffers and up to
 * 0.3 s for one frame (found by a review). */
struct hostile_rx {
	struct vud *v;
	uint64_t until_ms;
	_Atomic unsigned long reposted;
};

#define SENTINEL 0xffffffffu

static void *hostile_rx_main(void *arg)
{
	struct hostile_rx *h = arg;
	struct vud_ring *r = &h->v->r[0];
	uint32_t *used = (uint32_t *)(r->used + 2);
	unsigned long k = 0;
	while (th_mono_ms() < h->until_ms) {
		unsigned long n = k;
		/* every entry the switch used since the last look */
		while (n - k < r->size &&
		       __atomic_load_n(&used[2 * (n & (r->size - 1)) + 1], __ATOMIC_ACQUIRE) !=
			       SENTINEL)
			n++;
		if (n == k) {
			continue;
		}
		for (unsigned long j = k; j < n; j++)
			__atomic_store_n(&used[2 * (j & (r->size - 1)) + 1], SENTINEL,
					 __ATOMIC_RELAXED);
		__atomic_store_n(&r->avail[1], (uint16_t)(n + r->size), __ATOMIC_RELEASE);
		k = n;
		atomic_store(&h->reposted, k);
	}
	return NULL;
}

START_TEST(a_guest_reposting_unusable_buffers_does_not_hold_the_delivering_thread)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base, 1), 0);
	struct vud_ring *r = &a.r[0];
	uint8_t *any = vud_alloc(&a, 4096, 64);
	r->desc[0].addr = vud_gpa(&a, any);
	r->desc[0].len = 0; /* unusable: shorter than the header */
	r->desc[0].flags = 2; /* WRITE */
	uint32_t *used = (uint32_t *)(r->used + 2);
	for (unsigned i = 0; i < r->size; i++) {
		r->avail[2 + i] = 0;
		used[2 * i + 1] = SENTINEL;
	}
	__atomic_store_n(&r->avail[1], r->size, __ATOMIC_RELEASE);
	vud_kick(r);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));

	struct hostile_rx h = {.v = &a, .until_ms = th_mono_ms() + 3000};
	pthread_t t;
	pthread_create(&t, NULL, hostile_rx_main, &h);
	usleep(20000);
	static uint8_t f[200];
	uint64_t worst_ms = 0, worst_given = 0;
	for (unsigned i = 0; i < 10 && th_mono_ms() + 300 < h.until_ms; i++) {
		struct hs_mem_frame fr = {.data = f, .cookie = i,
					  .len = (uint32_t)mkframe(f, 0, 7, 100, i)};
		uint64_t before = backend_ctr(e.p[0], "bad_rx_buffers");
		uint64_t t0 = th_mono_ms(), ck;
		ck_assert_int_eq(hs_mem_tx_burst(m, 0, &fr, 1), 1);
		ck_assert(TH_WAIT(hs_mem_tx_reap(m, 0, &ck, 1) == 1, 5000));
		uint64_t ms = th_mono_ms() - t0;
		uint64_t given = backend_ctr(e.p[0], "bad_rx_buffers") - before;
		if (ms > worst_ms)
			worst_ms = ms;
		if (given > worst_given)
			worst_given = given;
		usleep(20000);
	}
	pthread_join(t, NULL);
	fprintf(stderr, "hostile rx: worst frame %llu ms, %llu buffers given back for one "
		"frame (ring %u)\n", (unsigned long long)worst_ms,
		(unsigned long long)worst_given, r->size);
	/* a bounded give-back: a few rings' worth per frame at most */
	ck_assert_msg(worst_given <= 4u * r->size, "one frame's delivery gave back %llu "
		      "buffers (ring %u) and took %llu ms: the delivering thread is the "
		      "guest's for as long as it re-posts", (unsigned long long)worst_given,
		      r->size, (unsigned long long)worst_ms);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* The unusable buffer is the first of a burst's second frame (the
 * reservation is undone, the frame waits), and the guest, a driver as
 * Linux's (EVENT_IDX, kicks only when asked), posts its buffers once,
 * after the link is up, and never again. Every frame must arrive. */
START_TEST(a_frame_behind_an_unusable_buffer_needs_no_new_kick)
{
	bool packed = _i & 1, mrg = _i & 2, second = _i & 4;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base | F(HS_VIRTIO_F_EVENT_IDX) |
					   (mrg ? F(HS_VIRTIO_NET_F_MRG_RXBUF) : 0) |
					   (packed ? F(HS_VIRTIO_F_RING_PACKED) : 0), 1), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	struct vud_ring *r = &a.r[0];
	uint16_t old = r->avail_idx;
	uint8_t *good = vud_alloc(&a, 4096, 64), *small = vud_alloc(&a, 64, 64),
		*any = vud_alloc(&a, 4096, 64);
	uint64_t g;
	uint32_t len;
	g = vud_gpa(&a, good); len = 4096;
	ck_assert_int_eq(vud_add(&a, r, &g, &len, 1, g), 0);
	if (second && mrg) { /* a small good one, then the bad one: the frame's 2nd chain */
		g = vud_gpa(&a, small); len = 64;
		ck_assert_int_eq(vud_add(&a, r, &g, &len, 1, g), 0);
	}
	g = vud_gpa(&a, any); len = 0;
	ck_assert_int_eq(vud_add(&a, r, &g, &len, 1, g), 0);
	for (unsigned k = 0; k < 4; k++) {
		uint8_t *b = vud_alloc(&a, VUD_BUF, 64);
		g = vud_gpa(&a, b); len = VUD_BUF;
		ck_assert_int_eq(vud_add(&a, r, &g, &len, 1, g), 0);
	}
	vud_kick_if_needed(&a, r, old);

	static uint8_t f[3][300];
	struct hs_mem_frame fr[3];
	for (unsigned k = 0; k < 3; k++)
		fr[k] = (struct hs_mem_frame){.data = f[k], .cookie = k,
					      .len = (uint32_t)mkframe(f[k], 0, 7, 100 + 20 * k, k)};
	ck_assert_int_eq(hs_mem_tx_burst(m, 0, fr, 3), 3);
	uint64_t ck[3];
	ck_assert(TH_WAIT(hs_mem_tx_reap(m, 0, ck, 3) == 3, 5000));
	unsigned frames = 0, zeros = 0, n = 0;
	for (unsigned t = 0; t < 2000 && frames < 3; t++) {
		uint64_t tag;
		uint32_t l;
		while (vud_used(&a, r, &tag, &l)) {
			n++;
			if (l)
				frames++;
			else
				zeros++;
		}
		if (frames < 3)
			usleep(1000);
	}
	struct hs_port_stats st = th_pstats(e.p[0]);
	ck_assert_msg(frames == 3, "case %d: %u frames of 3 (%u empty used entries, tx_packets "
		      "%llu, bad_rx_buffers %llu, guest kicks %u)", _i, frames, zeros,
		      (unsigned long long)st.tx_packets,
		      (unsigned long long)backend_ctr(e.p[0], "bad_rx_buffers"), r->kicks);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* ---- 6. a front-end that stops posting receive buffers ---------------------------------- */

/* b's guest stops posting receive buffers (a hung guest, a driver that
 * stopped NAPI) while a sends to it: a is never held up, b's frames wait
 * in its bounded backlog and the rest are dropped and counted, another
 * port keeps getting traffic; when b posts again it gets the backlog, in
 * order. Every frame is accounted for. */
START_TEST(a_receiver_that_stops_posting_buffers_holds_up_nobody)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	uint64_t want = base | (_i ? F(HS_VIRTIO_F_RING_PACKED) : 0);
	struct vud a, b;
	guest_up(&a, e.path[0], want, e.p[0]);
	ck_assert_int_eq(vud_connect(&b, e.path[1]), 0);
	ck_assert_int_eq(vud_start(&b, want, 1), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 8, VUD_BUF), 0); /* 8, then nothing */
	ck_assert(TH_WAIT(hs_port_link_up(e.p[1]), 3000));
	static uint8_t f[300], g[2100];
	size_t n = mkframe(f, 0, 2, 64, 0); /* b announces itself */
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	ck_assert(TH_WAIT(th_drain(m) == 1, 3000));
	const uint32_t total = 600;
	for (uint32_t i = 1; i <= total; i++) {
		n = mkframe(f, 2, 1, 200, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			ck_assert(TH_WAIT(vud_reap_tx(&a, 0) > 0, 3000)); /* never held up */
		if (i % 100 == 0) { /* the others keep forwarding meanwhile */
			size_t k = mkframe(f, 0, 1, 64, 10000 + i);
			/* the last send may have filled a's ring: wait for room */
			while (vud_send(&a, 0, f, (uint32_t)k, NULL, 1) == -ENOSPC)
				ck_assert(TH_WAIT(vud_reap_tx(&a, 0) > 0, 3000));
			ck_assert(TH_WAIT(th_drain(m) == 1, 3000));
		}
	}
	ck_assert(TH_WAIT((vud_reap_tx(&a, 0), th_pstats(e.p[0]).rx_packets == total + 6), 3000));
	const uint64_t to_b = total + 6; /* the unicast frames and the broadcasts */
	struct hs_port_stats sb = th_pstats(e.p[1]);
	ck_assert_uint_eq(sb.tx_packets, 8);
	ck_assert_uint_gt(sb.tx_backlogged, 0);
	ck_assert_uint_gt(sb.drops[HS_DROP_NO_BUFFER], 0);
	/* b takes its 8, then posts again, a few at a time: the backlog comes,
	 * in order, until it is empty. */
	uint32_t got = 0, last = 0;
	uint64_t end = th_mono_ms() + 20000;
	for (bool more = true;;) {
		int r;
		while ((r = vud_recv(&b, 0, g, sizeof(g), NULL)) != 0) {
			ck_assert_int_gt(r, 0);
			uint32_t seq;
			memcpy(&seq, g + 14, 4);
			if (seq < 10000) { /* unicast ones: increasing, gaps are drops */
				ck_assert_uint_gt(seq, last);
				last = seq;
			}
			got++;
		}
		if (!more)
			break;
		uint64_t before = th_pstats(e.p[1]).tx_packets;
		ck_assert_int_eq(vud_post_rx(&b, 0, 32, VUD_BUF), 0);
		/* The switch serves a post at once while frames wait: none
		 * served in 300 ms means the backlog is empty, unless the
		 * switch was starved of CPU meanwhile. So it ends only once
		 * every frame for b is delivered or counted (or 20 s pass),
		 * and takes what came last. */
		while (!TH_WAIT(th_pstats(e.p[1]).tx_packets > before, 300)) {
			struct hs_port_stats st = th_pstats(e.p[1]);
			if (st.tx_packets + st.drops[HS_DROP_NO_BUFFER] >= to_b ||
			    th_mono_ms() > end) {
				more = false;
				break;
			}
		}
	}
	sb = th_pstats(e.p[1]);
	ck_assert_uint_eq(sb.tx_packets, got);
	/* Sent to b = delivered + dropped with a reason: nothing lost silently. */
	ck_assert_msg(to_b == sb.tx_packets + sb.drops[HS_DROP_NO_BUFFER],
		      "%llu frames for b: %llu delivered, %llu dropped (no buffer)",
		      (unsigned long long)to_b, (unsigned long long)sb.tx_packets,
		      (unsigned long long)sb.drops[HS_DROP_NO_BUFFER]);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* A receiver with event indexes (Linux's default: split ring, EVENT_IDX)
 * that refills its ring a little at a time, kicking only when asked: the
 * switch must ask for the next post every time frames wait for buffers.
 * It asked once, with an index behind what the driver had published, so
 * after the second refill the driver never kicked and frames waited for
 * good (found by the vu_session fuzzer). The same with a frame that needs
 * more buffers than are posted (mergeable buffers). */
START_TEST(a_receiver_refilling_its_ring_gets_every_frame)
{
	struct env e;
	env_up(&e, 0);
	uint64_t want = base | F(HS_VIRTIO_F_EVENT_IDX) | (_i ? F(HS_VIRTIO_NET_F_MRG_RXBUF) : 0);
	struct vud b, c;
	guest_up(&c, e.path[1], want, e.p[1]);
	ck_assert_int_eq(vud_connect(&b, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&b, want, 1), 0);
	static uint8_t f[6000], g[9000];
	size_t n = mkframe(f, 0, 11, 100, 0); /* b announces itself */
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&c, g, sizeof(g), NULL), (int)n);
	uint32_t bufsz = _i ? 2048 : VUD_BUF, frame = _i ? 5000 : 100;
	ck_assert_int_eq(vud_post_rx(&b, 0, _i ? 2 : 16, bufsz), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	const unsigned total = _i ? 6 : 56;
	for (unsigned i = 0; i < total; i++) {
		n = mkframe(f, 11, 12, frame, i);
		while (vud_send(&c, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			vud_reap_tx(&c, 0);
	}
	unsigned got = 0;
	for (unsigned round = 0; round < 40 && got < total; round++) {
		int r, k = 0;
		while (TH_WAIT((r = vud_recv(&b, 0, g, sizeof(g), NULL)) != 0, 200)) {
			ck_assert_int_eq(r, (int)frame);
			k++;
		}
		got += (unsigned)k;
		/* Give back what was used, a few at a time; kicks only if asked. */
		ck_assert_int_eq(vud_post_rx(&b, 0, _i ? 3 : (unsigned)(k ? k : 1), bufsz), 0);
	}
	ck_assert_msg(got == total, "the receiver got %u of %u frames", got, total);
	vud_close(&b);
	vud_close(&c);
	env_down(&e);
}
END_TEST

/* ---- 7. what a cold review found (each once broke as described) ---------------------- */

/* A port that fails to start leaves nothing behind: its memory-fault
 * watch used to stay registered on freed memory, so the next port's
 * memory fault wrote into it (use-after-free under ASan). */
START_TEST(a_port_that_fails_to_start_leaves_nothing_behind)
{
	struct env e;
	env_up(&e, 0);
	char path[108];
	snprintf(path, sizeof(path), "/tmp/hs-vu-notsock-%d", (int)getpid());
	int f = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600); /* not a socket */
	close(f);
	struct hs_vhost_user_config vc = {.path = path};
	struct hs_port_config pc = {.name = "bad", .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc)};
	hs_port_t *bad;
	ck_assert_int_eq(hs_port_add(e.sw, &pc, &bad), -EEXIST);
	ck_assert_int_eq(access(path, F_OK), 0); /* never removed: not ours */
	unlink(path);
	/* A second server on a socket somebody listens on: refused, the
	 * first keeps it. */
	vc.path = e.path[1];
	pc.name = "thief";
	ck_assert_int_eq(hs_port_add(e.sw, &pc, &bad), -EADDRINUSE);
	struct vud a;
	guest_up(&a, e.path[1], base, e.p[1]);
	shrink_guest_memory(&a);
	ck_assert(TH_WAIT(backend_ctr(e.p[1], "memory_faults") >= 1, 3000));
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[1]), 3000));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* Kick, call and error fds must be eventfds (a pipe without a reader
 * killed the switch with SIGPIPE on the first delivery; a memfd as a new
 * kick fd was refused only after the old one had left the epoll set,
 * leaving a running ring deaf); an eventfd is made non-blocking. */
START_TEST(ring_fds_must_be_eventfds_and_a_refused_one_changes_nothing)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	guest_up(&a, e.path[0], base, e.p[0]);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	close(p[0]);
	int mfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
	for (uint32_t req = VUD_SET_VRING_KICK; req <= VUD_SET_VRING_ERR; req++) {
		ck_assert_int_eq(vud_ring_fd(&a, req, 0, p[1]), -EIO);
		ck_assert_int_eq(vud_ring_fd(&a, req, 1, mfd), -EIO);
	}
	close(p[1]);
	close(mfd);
	int blocking = eventfd(0, EFD_CLOEXEC);
	ck_assert_int_eq(vud_ring_fd(&a, VUD_SET_VRING_CALL, 0, blocking), 0);
	ck_assert(fcntl(blocking, F_GETFL) & O_NONBLOCK);
	close(blocking);
	/* Both rings still work. */
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 9, 100, 1);
	ck_assert_int_eq(th_send(m, f, n), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	n = mkframe(f, 0, 1, 100, 2);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* SET_VRING_ADDR with addresses outside guest memory on a running ring is
 * refused before anything changes (it used to stop the ring and lose its
 * good addresses); a broken transmit ring keeps the link down through
 * unrelated updates until the front-end restarts it. */
START_TEST(refusals_change_nothing_and_broken_rings_stay_down)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	guest_up(&a, e.path[0], base, e.p[0]);
	uint64_t bad[5] = {1, 0x10, 0x10, 0x10, 0};
	ck_assert_int_eq(vud_call(&a, VUD_SET_VRING_ADDR, bad, 40, NULL, 0), -EIO);
	static uint8_t f[200];
	size_t n = mkframe(f, 0, 1, 100, 1);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	/* Break the transmit ring: a descriptor outside guest memory. */
	struct vud_ring *tx = &a.r[1];
	uint16_t head = tx->free_head;
	tx->desc[head].addr = 0x10;
	tx->desc[head].len = 100;
	tx->desc[head].flags = 0;
	tx->avail[2 + (tx->avail_idx & (tx->size - 1))] = head;
	tx->avail_idx++;
	__atomic_store_n(&tx->avail[1], tx->avail_idx, __ATOMIC_RELEASE);
	vud_kick(tx);
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]), 3000));
	ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_ENABLE, 0, 1), 0); /* any update */
	ck_assert(!TH_WAIT(hs_port_link_up(e.p[0]), 200));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* A receive buffer whose virtio-net header spans several descriptors
 * (4 + 4 + 4 bytes, then the frame) is legal; it used to be put back and
 * retried by every frame, stalling the guest's receive ring for good. */
START_TEST(a_header_in_pieces_is_written_in_pieces)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base | (_i ? F(HS_VIRTIO_F_RING_PACKED) : 0), 1), 0);
	uint8_t *b = vud_alloc(&a, 4096, 64);
	uint64_t g[4] = {vud_gpa(&a, b), vud_gpa(&a, b + 64), vud_gpa(&a, b + 128),
			 vud_gpa(&a, b + 192)}; /* not contiguous: not merged */
	uint32_t l[4] = {4, 4, 4, 2048};
	ck_assert_int_eq(vud_add(&a, &a.r[0], g, l, 4, g[0]), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[200];
	size_t n = mkframe(f, 0, 9, 100, 1);
	ck_assert_int_eq(th_send(m, f, n), 0);
	uint64_t tag;
	uint32_t len;
	ck_assert(TH_WAIT(vud_used(&a, &a.r[0], &tag, &len), 3000));
	ck_assert_uint_eq(len, a.hdr_len + n);
	struct vud_net_hdr h;
	memcpy(&h, b, 4);
	memcpy((uint8_t *)&h + 4, b + 64, 4);
	memcpy((uint8_t *)&h + 8, b + 128, 4);
	ck_assert_uint_eq(h.flags, 0);
	ck_assert_uint_eq(h.gso_type, 0);
	ck_assert_int_eq(memcmp(b + 192, f, n), 0);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* A SIGBUS sent to the process (not a fault in guest memory) still does
 * what it would do without the switch: it kills. It used to be swallowed,
 * with the handler gone for good. */
/* More than a burst of bad chains (shorter than the virtio-net header),
 * then a good frame, all behind one kick with EVENT_IDX: the round that
 * drops a whole burst moved no frame but did not drain the ring, and the
 * driver will not kick again (avail_event is behind it): the good frame
 * must still go out (found by a review). */
START_TEST(a_burst_of_bad_chains_does_not_stall_the_ring)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base | F(29), e.p[0]);
	guest_up(&b, e.path[1], base | F(29), e.p[1]);
	ck_assert_int_eq(hs_port_quiesce(e.p[0]), 0); /* all of it seen at once */
	struct vud_ring *r = &a.r[1];
	uint8_t *tiny = vud_alloc(&a, 64, 64);
	for (unsigned i = 0; i < 40; i++) {
		uint64_t g = vud_gpa(&a, tiny);
		uint32_t l = 4;
		uint16_t old = r->avail_idx;
		ck_assert_int_eq(vud_add(&a, r, &g, &l, 1, g), 0);
		vud_kick_if_needed(&a, r, old);
	}
	static uint8_t f[200], g2[200];
	size_t n = mkframe(f, 2, 1, 100, 1);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(hs_port_resume(e.p[0]), 0);
	ck_assert_int_eq(recv_wait(&b, g2, sizeof(g2), NULL), (int)n);
	ck_assert_mem_eq(g2, f, n);
	ck_assert(TH_WAIT(th_pstats(e.p[0]).drops[HS_DROP_BAD_DESC] == 40, 3000));
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* VIRTIO_F_IN_ORDER: chains come back in the order the driver made them
 * available, also when some are refused (too short for the header, or
 * offloads not negotiated) between good frames. A refused chain used to
 * go back at once, ahead of the good frames before it. */
static void refused_in_place(uint64_t want)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], want, e.p[0]);
	guest_up(&b, e.path[1], want, e.p[1]);
	ck_assert_uint_eq(hs_vhost_user_features(e.p[0]) & F(HS_VIRTIO_F_IN_ORDER),
			  want & F(HS_VIRTIO_F_IN_ORDER));
	ck_assert_int_eq(hs_port_quiesce(e.p[0]), 0); /* all of it seen at once */
	struct vud_ring *r = &a.r[1];
	uint64_t tags[12];
	static uint8_t f[200], g2[200];
	unsigned good = 0;
	for (unsigned i = 0; i < 12; i++) {
		uint32_t l;
		uint8_t *buf = vud_alloc(&a, 256, 64);
		memset(buf, 0, a.hdr_len);
		if (i % 3 == 1) {
			l = 4; /* shorter than the header */
		} else if (i % 3 == 2 && i != 11) {
			buf[0] = 1; /* NEEDS_CSUM, not negotiated */
			l = a.hdr_len + 100;
		} else {
			size_t n = mkframe(f, 2, 1, 100, i);
			memcpy(buf + a.hdr_len, f, n);
			l = a.hdr_len + (uint32_t)n;
			good++;
		}
		tags[i] = vud_gpa(&a, buf);
		uint16_t old = r->avail_idx;
		ck_assert_int_eq(vud_add(&a, r, &tags[i], &l, 1, tags[i]), 0);
		vud_kick_if_needed(&a, r, old);
	}
	ck_assert_int_eq(hs_port_resume(e.p[0]), 0);
	for (unsigned i = 0; i < good; i++)
		ck_assert_int_gt(recv_wait(&b, g2, sizeof(g2), NULL), 0);
	for (unsigned i = 0; i < 12; i++) {
		uint64_t tag = 0;
		uint32_t len;
		ck_assert(TH_WAIT(vud_used(&a, r, &tag, &len), 3000));
		ck_assert_msg(tag == tags[i], "used entry %u is chain %d", i,
			      tag == tags[(i + 1) % 12] ? (int)(i + 1) % 12 : -1);
	}
	struct hs_port_stats st = th_pstats(e.p[0]);
	ck_assert_uint_eq(st.drops[HS_DROP_BAD_DESC], 4);
	ck_assert_uint_eq(st.drops[HS_DROP_BAD_OFFLOAD], 3);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}

START_TEST(refused_chains_are_used_in_their_place)
{
	refused_in_place(base | F(HS_VIRTIO_F_IN_ORDER));
	refused_in_place(base | F(HS_VIRTIO_F_IN_ORDER) | F(HS_VIRTIO_F_RING_PACKED));
	refused_in_place(base); /* the same order without it */
}
END_TEST

/* The ring keeps a copy of the bounds of the region its last buffer was
 * in (vq_gpa), so that the next one is checked without the memory table.
 * A table that no longer has that region (the guest's buffer memory
 * unplugged by a new SET_MEM_TABLE) must make the copy go with it: a
 * buffer the guest still posts there is outside guest memory, which stops
 * the ring as any such descriptor does, and is never read or written
 * through the range the switch unmapped (or whatever was mapped there
 * since). _i: bit 0 packed, bit 1 the receive ring (else transmit). */
START_TEST(a_removed_buffer_region_is_not_used_through_a_kept_copy)
{
	bool packed = _i & 1, rx = _i & 2;
	struct env e;
	static struct perm p;
	struct vud *v = &p.v;
	perm_connect(&p, &e, packed);
	hs_port_t *m = th_port(e.sw, "m", 0), *m2 = th_port(e.sw, "m2", 0);
	static const enum step canon[] = {CANON};
	for (unsigned k = 0; k < sizeof(canon) / sizeof(canon[0]); k++)
		ck_assert_int_eq(perm_step(&p, canon[k]), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	/* both rings translate a buffer in the pools' region (and keep it) */
	static uint8_t f[200], g[2100];
	perm_post(&p, 4);
	size_t n = mkframe(f, 7, 1, 100, 1);
	perm_send(&p, f, (uint32_t)n);
	ck_assert(TH_WAIT(th_drain(m) == 1, 3000));
	n = mkframe(f, 1, 7, 100, 2);
	ck_assert_int_eq(th_send(m, f, n), 0);
	int got = 0;
	ck_assert(TH_WAIT((got = vud_recv(v, 0, g, sizeof(g), NULL)) != 0, 3000));
	ck_assert_int_eq(got, (int)n);
	/* the pools' region goes; the rings stay, and so does the link */
	ck_assert_int_eq(perm_mem_of(&p, true, false), 0);
	ck_assert(hs_port_link_up(e.p[0]));
	if (rx) {
		/* three receive buffers are left posted there */
		n = mkframe(f, 1, 7, 100, 3);
		ck_assert_int_eq(th_send(m, f, n), 0);
	} else {
		n = mkframe(f, 7, 1, 100, 3);
		perm_send(&p, f, (uint32_t)n);
	}
	ck_assert_msg(TH_WAIT(!hs_port_link_up(e.p[0]), 3000),
		      "a buffer outside guest memory was taken (%s, %s)",
		      packed ? "packed" : "split", rx ? "receive" : "transmit");
	ck_assert_int_eq(th_drain(m), 0);
	ck_assert_int_eq(vud_recv(v, 0, g, sizeof(g), NULL), 0);
	size_t bad = 0;
	while (bad < p.canary_len && p.canary[bad] == CANARY)
		bad++;
	ck_assert_uint_eq(bad, p.canary_len);
	/* the rest of the switch goes on */
	th_drain(m2); /* the guest's first frame, flooded */
	n = mkframe(f, 0, 9, 100, 4);
	ck_assert_int_eq(th_send(m, f, n), 0);
	ck_assert(TH_WAIT(th_drain(m2) == 1, 3000));
	vud_close(v);
	env_down(&e);
}
END_TEST

START_TEST(a_sent_sigbus_still_kills)
{
#if defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer takes over signal delivery and does not carry out
	 * a default action the program restores from its handler. */
	return;
#endif
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct env e;
		env_up(&e, 0);
		struct vud a;
		guest_up(&a, e.path[0], base, e.p[0]); /* a region: the handler is in */
		kill(getpid(), SIGBUS);
		/* (ThreadSanitizer delivers signals at its next interception.) */
		for (int i = 0; i < 200; i++)
			usleep(10000);
		_exit(0); /* survived */
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
#if defined(__SANITIZE_ADDRESS__)
	/* AddressSanitizer reports a SIGBUS itself, then aborts or (without
	 * abort_on_error) exits with status 1: either way it did not survive */
	ck_assert_msg(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0),
		      "the process survived a sent SIGBUS");
#else
	ck_assert_msg(WIFSIGNALED(st), "the process survived a sent SIGBUS");
#endif
}
END_TEST

/* ---- found by a review of the control plane (2026-12-05) ------------------------- */

/* A transmit ring that goes live again is looked at. */

/* a's guest queues a frame (and kicks, as its driver is told to) while the
 * front-end has its transmit ring disabled; the front-end enables it
 * again. The frame must go out without another kick from the guest: the
 * kick it made was consumed while the ring was not live. */
static void live_again_case(uint64_t want, int how)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guests_up(&e, &a, &b, want);
	static uint8_t f[2000], g[2000];
	size_t n;
	frame_a_to_b(&a, &b, 1); /* a works */
	vud_reap_tx(&a, 0);
	unsigned kicks0 = a.r[1].kicks;
	if (how == 0) {
		ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_ENABLE, 1, 0), 0);
	} else {
		/* the same through the memory table: the rings' region goes
		 * (REM) and comes back (ADD), as memory hot-unplug/plug of a
		 * front-end that re-sends its table does */
		ck_assert_int_eq(vud_mem_reg(&a, VUD_REM_MEM_REG), 0);
	}
	n = mkframe(f, 2, 1, 100, 2);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_msg(a.r[1].kicks == kicks0 + 1, "the guest did not kick (%u)",
		      a.r[1].kicks - kicks0);
	usleep(100000); /* the switch takes the kick: the ring is not live */
	if (how == 0)
		ck_assert_int_eq(vud_state(&a, VUD_SET_VRING_ENABLE, 1, 1), 0);
	else
		ck_assert_int_eq(vud_mem_reg(&a, VUD_ADD_MEM_REG), 0);
	int got = 0;
	TH_WAIT((got = vud_recv(&b, 0, g, sizeof(g), NULL)) != 0, 2000);
	if (got == 0) {
		/* and later frames? */
		unsigned k1 = a.r[1].kicks;
		size_t n2 = mkframe(f, 2, 1, 100, 3);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n2, NULL, 1), 0);
		TH_WAIT((got = vud_recv(&b, 0, g, sizeof(g), NULL)) != 0, 1000);
		fprintf(stderr, "F1 (features %llx, workers %u): a later frame: guest kicked %u "
			"time(s), %s\n", (unsigned long long)a.features, env_workers(),
			a.r[1].kicks - k1, got ? "ring moves again" : "still stuck: for good");
		got = 0;
	}
	ck_assert_msg(got == (int)n, "frame queued while the transmit ring was %s never "
		      "sent after it came back (got %d, features %llx, workers %u)",
		      how ? "unmapped" : "disabled", got, (unsigned long long)a.features,
		      env_workers());
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}

START_TEST(a_transmit_ring_live_again_is_looked_at)
{
	static const uint64_t rings[] = {F(HS_VIRTIO_F_EVENT_IDX), 0,
					 F(HS_VIRTIO_F_RING_PACKED)};
	live_again_case(base | rings[_i % 3], _i / 3);
}
END_TEST

/* The guest's offload permissions end with its connection: a disconnect or
 * RESET_DEVICE used to leave the last connection's HOST_* caps in force. */

/* A connection that sets everything up except SET_FEATURES (features 0,
 * legal: QEMU's vhost-user-test "connect-fail" style front-ends, or any
 * front-end choosing the order). */
static void featureless_up(struct vud *v, const char *path, hs_port_t *p)
{
	ck_assert_int_eq(vud_connect(v, path), 0);
	v->features = 0;
	v->hdr_len = 12; /* what the back-end uses without SET_FEATURES */
	ck_assert_int_eq(vud_send_msg(v, VUD_SET_OWNER, 0, NULL, 0, NULL, 0), 0);
	ck_assert_int_eq(vud_mem_table(v), 0);
	v->nqp = 1;
	for (unsigned i = 0; i < 2; i++) {
		vud_ring_alloc(v, &v->r[i], !(i & 1));
		ck_assert_int_eq(vud_ring_setup(v, i), 0);
	}
	ck_assert_int_eq(vud_post_rx(v, 0, 64, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(p), 3000));
}

static uint64_t bad_offload(hs_port_t *p)
{
	return th_pstats(p).drops[HS_DROP_BAD_OFFLOAD];
}

/* Sends a frame asking for checksum offload (VIRTIO_NET_HDR_F_NEEDS_CSUM)
 * and returns whether the port refused it (bad_offload). */
static bool csum_frame_refused(struct vud *v, hs_port_t *p)
{
	static uint8_t f[2000];
	struct vud_net_hdr h;
	uint32_t len = tcp_frame(f, 100, &h);
	h.gso_type = 0, h.gso_size = 0; /* checksum only */
	uint64_t before = bad_offload(p);
	uint64_t tx0 = th_pstats(p).rx_packets;
	ck_assert_int_eq(vud_send(v, 0, f, len, &h, 1), 0);
	TH_WAIT(bad_offload(p) != before || th_pstats(p).rx_packets != tx0, 2000);
	return bad_offload(p) != before;
}

START_TEST(offload_permissions_end_with_the_connection)
{
	struct env e;
	env_up(&e, 0);
	/* control: b never negotiated CSUM: its guest's request is refused */
	struct vud b;
	featureless_up(&b, e.path[1], e.p[1]);
	ck_assert_msg(csum_frame_refused(&b, e.p[1]),
		      "control: a fresh device accepted checksum offload it never negotiated");
	/* a negotiates CSUM and TSO, then goes away */
	struct vud a;
	guest_up(&a, e.path[0],
		 base | F(HS_VIRTIO_NET_F_CSUM) | F(HS_VIRTIO_NET_F_HOST_TSO4), e.p[0]);
	ck_assert(!csum_frame_refused(&a, e.p[0]));
	uint64_t disc = backend_ctr(e.p[0], "disconnects");
	vud_close(&a);
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "disconnects") == disc + 1, 3000));
	ck_assert(TH_WAIT(hs_vhost_user_features(e.p[0]) == 0, 3000));
	/* the next front-end never sends SET_FEATURES */
	featureless_up(&a, e.path[0], e.p[0]);
	bool refused = csum_frame_refused(&a, e.p[0]);
	ck_assert_msg(refused, "after a reconnect the device (features %llx) still "
		      "accepts checksum offload from the guest: HOST_* caps of the "
		      "previous connection", (unsigned long long)hs_vhost_user_features(e.p[0]));
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* In client mode the front-end (the VMM) listens. A hostile one listens
 * with a full backlog (listen(0), one connection it never accepts), then
 * drops the switch's connection: the switch's retry connects with a
 * blocking socket from the loop thread, which then waits for ever, and
 * every other port's control plane with it. */
START_TEST(a_client_port_reconnecting_never_blocks_the_loop)
{
	struct env e;
	env_up(&e, 0);
	char cpath[108];
	struct sockaddr_un sa;
	int lfd = vmm_listen(cpath, "hostile-client", 0, &sa);
	struct hs_vhost_user_config vc = {.path = cpath, .flags = HS_VU_CLIENT,
					  .queue_pairs = 1, .reconnect_ms = 20};
	struct hs_port_config pc = {.name = "vc", .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc)};
	hs_port_t *cp = NULL;
	ck_assert_int_eq(hs_port_add(e.sw, &pc, &cp), 0);
	int cfd = accept(lfd, NULL, NULL); /* the switch's connection */
	ck_assert_int_ge(cfd, 0);
	ck_assert(TH_WAIT(hs_vhost_user_connected(cp) == 1, 2000));
	/* fill the backlog: a connection nobody accepts */
	int filler = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_eq(connect(filler, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(cfd); /* the front-end drops the switch */
	ck_assert(TH_WAIT(hs_vhost_user_connected(cp) == 0, 2000));
	usleep(200000); /* a few retries */
	/* another port's front-end: does the switch still answer? */
	struct vud b;
	ck_assert_int_eq(vud_connect(&b, e.path[1]), 0);
	uint64_t feat = 0;
	int rc = vud_get_u64(&b, VUD_GET_FEATURES, &feat);
	/* unblock the loop before judging, so the test can clean up */
	int f2 = accept(lfd, NULL, NULL);
	ck_assert_msg(rc == 0, "another port's GET_FEATURES got no answer in 5 s (%s): "
		      "the loop thread is stuck in the client port's connect()",
		      strerror(-rc));
	close(f2);
	close(filler);
	vud_close(&b);
	close(lfd);
	unlink(cpath);
	env_down(&e);
}
END_TEST

/* A client port's first connection is answered at once: a VMM that speaks
 * as soon as it accepts (QEMU in server mode sends GET_FEATURES) gets its
 * reply. The first try ran on hs_port_add's caller's thread, and adopt()
 * added the connection's watch before it stored d->conn_fd: the loop thread
 * could dispatch the message while conn_fd was still -1, and the reply was
 * lost (rare by timing; TSan reported the race every time; found by a
 * review). */
struct eager_server {
	int lfd;
	_Atomic int replies, accepted;
	int rounds;
};

static void *eager_server_main(void *arg)
{
	struct eager_server *s = arg;
	for (int i = 0; i < s->rounds; i++) {
		int fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			break;
		s->accepted++;
		uint32_t hdr[3] = {VUD_GET_FEATURES, 1, 0};
		if (send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL) != sizeof(hdr)) {
			close(fd);
			continue;
		}
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 1000) == 1) {
			uint8_t buf[64];
			if (recv(fd, buf, sizeof(buf), 0) >= 12)
				s->replies++;
		}
		close(fd);
	}
	return NULL;
}

START_TEST(a_client_ports_first_connection_answers_at_once)
{
	struct env e;
	env_up(&e, 0);
	char cpath[108];
	struct sockaddr_un sa;
	int lfd = vmm_listen(cpath, "eager-client", 8, &sa);
	struct eager_server srv = {.lfd = lfd, .rounds = 20};
	pthread_t t;
	pthread_create(&t, NULL, eager_server_main, &srv);
	for (int i = 0; i < srv.rounds; i++) {
		/* no retry within the round: one connection per port */
		struct hs_vhost_user_config vc = {.path = cpath, .flags = HS_VU_CLIENT,
						  .queue_pairs = 1, .reconnect_ms = 60000};
		char name[16];
		snprintf(name, sizeof(name), "c%d", i);
		struct hs_port_config pc = {.name = name, .backend = HS_VHOST_USER_BACKEND,
					    .backend_config = &vc,
					    .backend_config_size = sizeof(vc)};
		hs_port_t *cp = NULL;
		ck_assert_int_eq(hs_port_add(e.sw, &pc, &cp), 0);
		/* its connection accepted and answered, or given up on */
		TH_WAIT(srv.accepted == i + 1, 5000);
		TH_WAIT(srv.replies == i + 1, 1500);
		ck_assert_int_eq(hs_port_del(cp), 0);
		ck_assert_msg(srv.replies == i + 1, "round %d: the first connection's "
			      "GET_FEATURES got no reply", i);
	}
	pthread_join(t, NULL);
	ck_assert_int_eq(srv.replies, srv.rounds);
	close(lfd);
	unlink(cpath);
	env_down(&e);
}
END_TEST

/* ---- layouts, lengths and control messages a cold review tried (review 48) ---- */

/* One piece of a buffer: guest address and length. */
struct rvp {
	uint64_t gpa;
	uint32_t len;
};

/* Makes one buffer of pieces available on r: as a chain of ring
 * descriptors, or (tbl) through an indirect table written at tbl. */
static void rv_post(struct vud *v, struct vud_ring *r, const struct rvp *pc, unsigned n,
		    void *tbl, uint64_t tag)
{
	uint16_t w = r->rx ? 2 : 0;
	if (!tbl) {
		static uint64_t g[VUD_QSIZE];
		static uint32_t l[VUD_QSIZE];
		for (unsigned k = 0; k < n; k++)
			g[k] = pc[k].gpa, l[k] = pc[k].len;
		ck_assert_int_eq(vud_add(v, r, g, l, n, tag), 0);
	} else {
		if (!v->packed) {
			struct sd { uint64_t a; uint32_t l; uint16_t f, nx; } *t = tbl;
			for (unsigned k = 0; k < n; k++)
				t[k] = (struct sd){pc[k].gpa, pc[k].len,
						   (uint16_t)(w | (k + 1 < n ? 1 : 0)),
						   (uint16_t)(k + 1)};
		} else {
			struct pdesc *t = tbl;
			for (unsigned k = 0; k < n; k++)
				t[k] = (struct pdesc){pc[k].gpa, pc[k].len, 0, w};
		}
		uint64_t g = vud_gpa(v, tbl);
		uint32_t l = 16 * n;
		ck_assert_int_eq(vud_add_flags(v, r, &g, &l, 1, tag, 4), 0);
	}
	vud_kick(r);
}

/* Bytes [0, len) of a buffer's pieces, gathered. */
static uint32_t rv_gather(struct vud *v, const struct rvp *pc, unsigned n, uint8_t *out,
			  uint32_t len)
{
	uint32_t got = 0;
	for (unsigned k = 0; k < n && got < len; k++) {
		uint32_t c = pc[k].len < len - got ? pc[k].len : len - got;
		memcpy(out + got, vud_hva(v, pc[k].gpa), c);
		got += c;
	}
	return got;
}

enum rv_layout {
	RV_ZERO_OUTSIDE, /* a zero-length piece at an address outside guest memory */
	RV_HDR_BYTES,    /* the header one byte a piece, none contiguous */
	RV_SPAN,         /* one piece across two memory regions, inside the header */
	RV_END,          /* one piece ending at the last byte of guest memory */
	RV_IND_SPAN,     /* an indirect table across two regions, a zero piece in it */
	N_RV_LAYOUT
};

#define RV_HALF (VUD_MEM / 2)

/* The pieces of layout lay for a buffer of `total` bytes (header
 * included); returns how many, and sets *tbl for indirect layouts. */
static unsigned rv_layout(struct vud *v, enum rv_layout lay, uint32_t total, struct rvp *pc,
			  void **tbl)
{
	*tbl = NULL;
	unsigned n = 0;
	switch (lay) {
	case RV_ZERO_OUTSIDE: {
		uint8_t *b = vud_alloc(v, total, 64);
		pc[n++] = (struct rvp){vud_gpa(v, b), 5};
		pc[n++] = (struct rvp){0x10, 0}; /* nowhere, but empty */
		pc[n++] = (struct rvp){vud_gpa(v, b + 5), total - 5};
		break;
	}
	case RV_HDR_BYTES: {
		uint8_t *b = vud_alloc(v, 64 * 12 + total, 64);
		for (unsigned k = 0; k < v->hdr_len; k++)
			pc[n++] = (struct rvp){vud_gpa(v, b + 64 * k), 1};
		pc[n++] = (struct rvp){vud_gpa(v, b + 64 * 12), total - v->hdr_len};
		break;
	}
	case RV_SPAN: /* the region boundary 6 bytes into the piece */
		pc[n++] = (struct rvp){VUD_GPA + RV_HALF - 6, total};
		break;
	case RV_END:
		pc[n++] = (struct rvp){VUD_GPA + VUD_MEM - total, total};
		break;
	case RV_IND_SPAN: {
		/* 5 entries, the table's boundary after the second; the
		 * pieces themselves below the 1 MiB mark of the upper half */
		uint8_t *t = v->mem + RV_HALF - 32;
		uint8_t *b = v->mem + RV_HALF + 4096;
		pc[n++] = (struct rvp){vud_gpa(v, b), 7};
		pc[n++] = (struct rvp){vud_gpa(v, b + 100), 0};
		pc[n++] = (struct rvp){vud_gpa(v, b + 200), 9};
		pc[n++] = (struct rvp){vud_gpa(v, b + 300), 40};
		pc[n++] = (struct rvp){vud_gpa(v, b + 400), total - 56};
		*tbl = t;
		break;
	}
	default:
		break;
	}
	return n;
}

/* Transmit: every layout carries its frame whole, on split and packed
 * rings, and breaks nothing. _i: layout * 2 + packed. */
START_TEST(transmit_layouts_carry_the_frame_whole)
{
	enum rv_layout lay = (enum rv_layout)(_i / 2);
	bool packed = _i & 1;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.mem_split = 2;
	uint64_t want = base | F(HS_VIRTIO_F_INDIRECT_DESC) |
			(packed ? F(HS_VIRTIO_F_RING_PACKED) : 0);
	ck_assert_int_eq(vud_start(&a, want, 1), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[400], frame[400];
	size_t n = mkframe(f, 0, 1, 300, 1);
	memset(frame, 0, a.hdr_len);
	memcpy(frame + a.hdr_len, f, n);
	uint32_t total = (uint32_t)(a.hdr_len + n);
	struct rvp pc[32];
	void *tbl;
	unsigned np = rv_layout(&a, lay, total, pc, &tbl);
	/* the frame's bytes into its pieces */
	for (unsigned k = 0, at = 0; k < np; k++) {
		if (pc[k].len)
			memcpy(vud_hva(&a, pc[k].gpa), frame + at, pc[k].len);
		at += pc[k].len;
	}
	rv_post(&a, &a.r[1], pc, np, tbl, 1);
	ck_assert_msg(TH_WAIT(th_pending(m) == 1, 3000), "layout %d packed %d: no frame", lay,
		      packed);
	struct hs_mem_frame fr;
	ck_assert_int_eq(hs_mem_rx_burst(m, 0, &fr, 1), 1);
	ck_assert_uint_eq(fr.len, n);
	ck_assert_int_eq(memcmp(fr.data, f, n), 0);
	hs_mem_rx_release(m, 0, 1);
	ck_assert(TH_WAIT(vud_reap_tx(&a, 0) == 1, 3000));
	ck_assert(hs_port_link_up(e.p[0]));
	ck_assert_uint_eq(backend_ctr(e.p[0], "broken_rings"), 0);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* Receive: every layout gets its frame whole, the header where the
 * layout puts it, the used length exact. _i: layout * 2 + packed. */
START_TEST(receive_layouts_get_the_frame_whole)
{
	enum rv_layout lay = (enum rv_layout)(_i / 2);
	bool packed = _i & 1;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.mem_split = 2;
	uint64_t want = base | F(HS_VIRTIO_F_INDIRECT_DESC) |
			(packed ? F(HS_VIRTIO_F_RING_PACKED) : 0);
	ck_assert_int_eq(vud_start(&a, want, 1), 0);
	static uint8_t f[400], got[400];
	size_t n = mkframe(f, 0, 9, 300, 1);
	uint32_t total = (uint32_t)(a.hdr_len + n);
	struct rvp pc[32];
	void *tbl;
	unsigned np = rv_layout(&a, lay, total, pc, &tbl);
	for (unsigned k = 0; k < np; k++)
		if (pc[k].len)
			memset(vud_hva(&a, pc[k].gpa), 0xee, pc[k].len);
	rv_post(&a, &a.r[0], pc, np, tbl, 77);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	ck_assert_int_eq(th_send(m, f, n), 0);
	uint64_t tag;
	uint32_t len;
	ck_assert_msg(TH_WAIT(vud_used(&a, &a.r[0], &tag, &len), 3000),
		      "layout %d packed %d: nothing received", lay, packed);
	ck_assert_uint_eq(tag, 77);
	ck_assert_uint_eq(len, total);
	ck_assert_uint_eq(rv_gather(&a, pc, np, got, total), total);
	struct vud_net_hdr h;
	memcpy(&h, got, a.hdr_len);
	ck_assert_uint_eq(h.flags, 0);
	ck_assert_uint_eq(h.gso_type, 0);
	ck_assert_uint_eq(h.num_buffers, 1);
	ck_assert_int_eq(memcmp(got + a.hdr_len, f, n), 0);
	ck_assert(hs_port_link_up(e.p[0]));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* Lengths whose 32-bit sum wraps: a transmit chain of two pieces of 2 GiB
 * (sum 0 in 32 bits), and a receive buffer of 4 GiB - 1 bytes. Neither is
 * used; neither stops the ring; the next frame goes through. _i: packed. */
START_TEST(lengths_that_wrap_32_bits_are_refused)
{
	bool packed = _i & 1;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base | (packed ? F(HS_VIRTIO_F_RING_PACKED) : 0), 1), 0);
	uint8_t *b = vud_alloc(&a, 4096, 64);
	memset(b, 0, 4096);
	/* receive: one huge buffer first, then good ones */
	struct rvp big = {vud_gpa(&a, b), 0xffffffffu};
	rv_post(&a, &a.r[0], &big, 1, NULL, 1);
	ck_assert_int_eq(vud_post_rx(&a, 0, 8, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[200], g[2100];
	size_t n = mkframe(f, 0, 9, 100, 1);
	ck_assert_int_eq(th_send(m, f, n), 0);
	uint64_t tag;
	uint32_t len;
	ck_assert(TH_WAIT(vud_used(&a, &a.r[0], &tag, &len), 3000));
	ck_assert_uint_eq(tag, 1); /* given back first, unused */
	ck_assert_uint_eq(len, 0);
	int got = 0;
	TH_WAIT((got = vud_recv(&a, 0, g, sizeof(g), NULL)) != 0, 3000);
	ck_assert_int_eq(got, (int)n);
	/* transmit: 2 GiB + 2 GiB */
	struct rvp two[2] = {{vud_gpa(&a, b), 0x80000000u}, {vud_gpa(&a, b), 0x80000000u}};
	rv_post(&a, &a.r[1], two, 2, NULL, 2);
	ck_assert(TH_WAIT(th_pstats(e.p[0]).drops[HS_DROP_BAD_DESC] == 1, 3000));
	n = mkframe(f, 0, 1, 100, 2);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	ck_assert(hs_port_link_up(e.p[0]));
	ck_assert_uint_eq(th_pstats(e.p[0]).rx_packets, 1);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* A chain as long as the ring (every descriptor of it, 256 one-byte
 * pieces in a row), starting mid-ring so that it wraps: taken whole as one
 * frame, used once, and the ring goes on after it. _i: packed. */
START_TEST(a_chain_of_the_whole_ring_wraps_and_is_used_once)
{
	bool packed = _i & 1;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base | (packed ? F(HS_VIRTIO_F_RING_PACKED) : 0), 1), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 8, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[400], frame[400];
	/* move the ring's position: 100 frames sent and used */
	for (uint32_t i = 0; i < 100; i++) {
		size_t n = mkframe(f, 0, 1, 100, i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
		th_drain(m);
		ck_assert(TH_WAIT(vud_reap_tx(&a, 0) == 1, 3000));
	}
	size_t n = mkframe(f, 0, 1, VUD_QSIZE - a.hdr_len, 1000);
	ck_assert_uint_eq(n + a.hdr_len, VUD_QSIZE);
	memset(frame, 0, a.hdr_len);
	memcpy(frame + a.hdr_len, f, n);
	uint8_t *b = vud_alloc(&a, VUD_QSIZE, 64);
	memcpy(b, frame, VUD_QSIZE);
	struct rvp pc[VUD_QSIZE];
	for (unsigned k = 0; k < VUD_QSIZE; k++)
		pc[k] = (struct rvp){vud_gpa(&a, b + k), 1};
	rv_post(&a, &a.r[1], pc, VUD_QSIZE, NULL, 5);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	struct hs_mem_frame fr;
	ck_assert_int_eq(hs_mem_rx_burst(m, 0, &fr, 1), 1);
	ck_assert_uint_eq(fr.len, n);
	ck_assert_int_eq(memcmp(fr.data, f, n), 0);
	hs_mem_rx_release(m, 0, 1);
	ck_assert(TH_WAIT(vud_reap_tx(&a, 0) == 1, 3000));
	ck_assert_int_eq(vud_reap_tx(&a, 0), 0);
	/* and on */
	for (uint32_t i = 0; i < 300; i++) {
		n = mkframe(f, 0, 1, 100, 2000 + i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		ck_assert_msg(TH_WAIT(th_pending(m) == 1, 3000), "frame %u after", i);
		th_drain(m);
		ck_assert(TH_WAIT(vud_reap_tx(&a, 0) == 1, 3000));
	}
	ck_assert(hs_port_link_up(e.p[0]));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* MRG_RXBUF with buffers that hold the header and nothing more, each
 * followed by a larger one: a frame takes both (num_buffers 2), the
 * header alone in the first, the frame whole in the second. _i: packed. */
START_TEST(mergeable_buffers_of_exactly_a_header)
{
	bool packed = _i & 1;
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, base | F(HS_VIRTIO_NET_F_MRG_RXBUF) |
					       (packed ? F(HS_VIRTIO_F_RING_PACKED) : 0), 1), 0);
	ck_assert_uint_eq(a.hdr_len, 12);
	uint8_t *h0 = vud_alloc(&a, 64, 64), *b1 = vud_alloc(&a, 2048, 64);
	struct rvp p0 = {vud_gpa(&a, h0), 12}, p1 = {vud_gpa(&a, b1), 2048};
	rv_post(&a, &a.r[0], &p0, 1, NULL, 10);
	rv_post(&a, &a.r[0], &p1, 1, NULL, 11);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[400];
	size_t n = mkframe(f, 0, 9, 300, 1);
	ck_assert_int_eq(th_send(m, f, n), 0);
	uint64_t tag;
	uint32_t len;
	ck_assert(TH_WAIT(vud_used(&a, &a.r[0], &tag, &len), 3000));
	ck_assert_uint_eq(tag, 10);
	ck_assert_uint_eq(len, 12);
	struct vud_net_hdr h;
	memcpy(&h, h0, 12);
	ck_assert_uint_eq(h.num_buffers, 2);
	ck_assert(TH_WAIT(vud_used(&a, &a.r[0], &tag, &len), 3000));
	ck_assert_uint_eq(tag, 11);
	ck_assert_uint_eq(len, n);
	ck_assert_int_eq(memcmp(b1, f, n), 0);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* More control messages in the middle of traffic while a worker polls (as
 * traffic_with_control): a memory table sent again (QEMU on hot-plug: the
 * same memory, new mappings), an announce (SEND_RARP; its RARP reaches b
 * and is skipped there), a dirty log set and logging on for good, the ring
 * addresses sent again with logging on. Every frame must arrive. _i:
 * ctl * 4 + ring kind. */
enum ctl2 { CTL2_MEM_TABLE, CTL2_RARP, CTL2_LOG, N_CTL2 };

static int recv_skip_rarp(struct vud *v, uint8_t *g, uint32_t max)
{
	for (;;) {
		int got = recv_wait(v, g, max, NULL);
		if (got >= 14 && g[12] == 0x80 && g[13] == 0x35) {
			vud_post_rx(v, 0, 1, VUD_BUF);
			continue;
		}
		return got;
	}
}

START_TEST(more_control_messages_mid_traffic)
{
	static const uint64_t rings[] = {
		0, F(HS_VIRTIO_F_EVENT_IDX), F(HS_VIRTIO_F_RING_PACKED),
		F(HS_VIRTIO_F_RING_PACKED) | F(HS_VIRTIO_F_EVENT_IDX)};
	enum ctl2 ctl = (enum ctl2)(_i / 4);
	uint64_t want = base | rings[_i % 4] | F(HS_VIRTIO_NET_F_MRG_RXBUF);
	struct hs_switch_config cfg = {.n_workers = 1, .poll_us = 100000};
	struct env e;
	env_up_cfg(&e, 0, &cfg);
	struct vud a, b;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.proto_extra = (1ull << 1) | (1ull << 2); /* LOG_SHMFD, RARP */
	ck_assert_int_eq(vud_start(&a, want, 1), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 128, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	guest_up(&b, e.path[1], want, e.p[1]);
	static uint8_t f[2000], g[2000];
	size_t n = mkframe(f, 0, 2, 64, 0);
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	int logfd = -1;
	for (uint32_t i = 1; i <= 400; i++) {
		n = mkframe(f, 2, 1, 60 + i % 700, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			vud_reap_tx(&a, 0);
		int got = recv_skip_rarp(&b, g, sizeof(g));
		ck_assert_msg(got == (int)n, "frame %u stuck after a control message (%d, "
			      "features %llx)", i, ctl, (unsigned long long)a.features);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		vud_post_rx(&b, 0, 1, VUD_BUF);
		vud_reap_tx(&a, 0);
		if (i % 40)
			continue;
		switch (ctl) {
		case CTL2_MEM_TABLE:
			ck_assert_int_eq(vud_mem_table(&a), 0);
			break;
		case CTL2_RARP: {
			uint64_t mac = 0;
			uint8_t m6[6];
			th_mac(m6, 1);
			memcpy(&mac, m6, 6);
			ck_assert_int_eq(vud_u64(&a, 19 /* SEND_RARP */, mac), 0);
			break;
		}
		case CTL2_LOG:
			if (logfd < 0) {
				logfd = memfd_create("vud-log", MFD_CLOEXEC);
				ck_assert_int_eq(ftruncate(logfd, 1 << 20), 0);
				uint64_t ld[2] = {1 << 20, 0};
				ck_assert_int_eq(vud_send_msg(&a, 6 /* SET_LOG_BASE */, 0, ld, 16,
							      &logfd, 1), 0);
				uint64_t r;
				ck_assert_int_ge(vud_recv_reply(&a, 6, &r, 8), 0);
				ck_assert_int_eq(vud_u64(&a, VUD_SET_FEATURES, a.features | F(26)),
						 0);
			} else {
				ck_assert_int_eq(vud_ring_addr(&a, 1), 0);
				ck_assert_int_eq(vud_ring_addr(&a, 0), 0);
			}
			break;
		default:
			break;
		}
	}
	if (logfd >= 0)
		close(logfd);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* Behind an IOMMU, while a worker polls: every 40 frames the guest unmaps
 * everything and maps it again (_i bit 2: it only unmaps, and each miss
 * the switch reports is answered with its page, as a lazy guest IOMMU
 * does). Every frame must arrive. _i & 3: ring kind. */
struct rv_iotlb_msg {
	uint64_t iova, size, uaddr;
	uint8_t perm, type;
	uint8_t pad[6];
};

static int rv_iotlb(struct vud *v, uint8_t type, uint64_t iova, uint64_t size, uint8_t perm)
{
	struct rv_iotlb_msg m = {.iova = iova, .size = size,
				 .uaddr = type == 2 ? (uint64_t)(uintptr_t)vud_hva(v, iova) : 0,
				 .perm = perm, .type = type};
	return vud_call(v, 22 /* IOTLB_MSG */, &m, sizeof(m), NULL, 0);
}

/* Answers the misses waiting on chan with their pages; returns how many. */
static unsigned rv_answer(struct vud *v, int chan)
{
	unsigned n = 0;
	struct pollfd pf = {.fd = chan, .events = POLLIN};
	while (poll(&pf, 1, 0) == 1) {
		uint32_t h[3];
		struct rv_iotlb_msg m;
		if (recv(chan, h, 12, MSG_WAITALL) != 12 ||
		    recv(chan, &m, sizeof(m), MSG_WAITALL) != sizeof(m))
			break;
		uint64_t page = m.iova & ~4095ull;
		if (page >= VUD_GPA && page < VUD_GPA + VUD_MEM)
			ck_assert_int_eq(rv_iotlb(v, 2, page, 4096, 3), 0);
		n++;
	}
	return n;
}

static void rv_iommu_up(struct vud *v, const char *path, uint64_t want, int *chan)
{
	ck_assert_int_eq(vud_connect(v, path), 0);
	v->proto_extra = (1ull << 5) | (1ull << 7); /* BACKEND_REQ, IOTLB */
	ck_assert_int_eq(vud_start(v, want, 1), 0);
	ck_assert(v->iommu);
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	ck_assert_int_eq(vud_call(v, 21 /* SET_BACKEND_REQ_FD */, NULL, 0, &sp[1], 1), 0);
	close(sp[1]);
	*chan = sp[0];
	ck_assert_int_eq(rv_iotlb(v, 2, VUD_GPA, VUD_MEM, 3), 0);
	ck_assert_int_eq(vud_post_rx(v, 0, 128, VUD_BUF), 0);
}

START_TEST(iotlb_changes_mid_traffic)
{
	static const uint64_t rings[] = {
		0, F(HS_VIRTIO_F_EVENT_IDX), F(HS_VIRTIO_F_RING_PACKED),
		F(HS_VIRTIO_F_RING_PACKED) | F(HS_VIRTIO_F_EVENT_IDX)};
	bool lazy = _i & 4;
	uint64_t want = base | rings[_i & 3] | F(HS_VIRTIO_F_IOMMU_PLATFORM) |
			F(HS_VIRTIO_F_INDIRECT_DESC) | F(HS_VIRTIO_NET_F_MRG_RXBUF);
	struct hs_switch_config cfg = {.n_workers = 1, .poll_us = 100000};
	struct env e;
	env_up_cfg(&e, 0, &cfg);
	struct vud a, b;
	int ca, cb;
	rv_iommu_up(&a, e.path[0], want, &ca);
	rv_iommu_up(&b, e.path[1], want, &cb);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]) && hs_port_link_up(e.p[1]), 3000));
	static uint8_t f[2000], g[2000];
	size_t n = mkframe(f, 0, 2, 64, 0);
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	for (uint32_t i = 1; i <= 400; i++) {
		n = mkframe(f, 2, 1, 60 + (i * 37) % 1400, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1 + i % 3) == -ENOSPC)
			vud_reap_tx(&a, 0);
		int got = 0;
		for (int t = 0; t < 3000 && !got; t++) {
			rv_answer(&a, ca);
			rv_answer(&b, cb);
			got = vud_recv(&b, 0, g, sizeof(g), NULL);
			if (!got)
				usleep(1000);
		}
		ck_assert_msg(got == (int)n, "frame %u stuck (got %d; features %llx, lazy %d)",
			      i, got, (unsigned long long)a.features, lazy);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		vud_post_rx(&b, 0, 1, VUD_BUF);
		vud_reap_tx(&a, 0);
		if (i % 40)
			continue;
		struct vud *v = (i / 40) % 2 ? &a : &b;
		ck_assert_int_eq(rv_iotlb(v, 3, 0, 0, 0), 0); /* everything */
		if (!lazy)
			ck_assert_int_eq(rv_iotlb(v, 2, VUD_GPA, VUD_MEM, 3), 0);
	}
	ck_assert_uint_eq(backend_ctr(e.p[0], "broken_rings"), 0);
	ck_assert_uint_eq(backend_ctr(e.p[1], "broken_rings"), 0);
	ck_assert_uint_ge(backend_ctr(e.p[0], "iotlb_invalidates"), 5);
	if (lazy)
		ck_assert_uint_ge(backend_ctr(e.p[0], "iotlb_misses"), 5);
	close(ca);
	close(cb);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* RV48_MORE */

static Suite *suite(void)
{
	Suite *s = suite_create("vhost_user_hostile");
	TCase *tc = tcase_create("orders");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, packed_position_outside_the_ring_is_never_used, 0, N_ORDER);
	suite_add_tcase(s, tc);
	tc = tcase_create("control_mid_traffic");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, control_messages_mid_traffic_never_stall_a_polled_queue, 0,
			    4 * N_CTL);
	suite_add_tcase(s, tc);
	tc = tcase_create("permutations");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, setup_messages_in_any_order_work_or_are_refused, 0,
			    2 * N_SCENARIOS);
	suite_add_tcase(s, tc);
	tc = tcase_create("hostile_rings");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, hostile_packed_rings_stop_only_their_port, 0, N_PABUSE);
	tcase_add_test(tc, packed_ids_and_indirect_tables_are_the_drivers);
	tcase_add_loop_test(tc, a_receive_buffer_in_too_many_pieces_does_not_stall_the_guest,
			    0, 2);
	tcase_add_loop_test(tc, an_unusable_receive_buffer_is_given_back_wherever_it_is, 0,
			    4 * N_UNUSABLE);
	tcase_add_test(tc, a_guest_reposting_unusable_buffers_does_not_hold_the_delivering_thread);
	tcase_add_loop_test(tc, a_frame_behind_an_unusable_buffer_needs_no_new_kick, 0, 8);
	suite_add_tcase(s, tc);
	tc = tcase_create("stuck_receiver");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, a_receiver_that_stops_posting_buffers_holds_up_nobody, 0, 2);
	tcase_add_loop_test(tc, a_receiver_refilling_its_ring_gets_every_frame, 0, 2);
	suite_add_tcase(s, tc);
	tc = tcase_create("review");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, a_port_that_fails_to_start_leaves_nothing_behind);
	tcase_add_test(tc, ring_fds_must_be_eventfds_and_a_refused_one_changes_nothing);
	tcase_add_test(tc, refusals_change_nothing_and_broken_rings_stay_down);
	tcase_add_loop_test(tc, a_header_in_pieces_is_written_in_pieces, 0, 2);
	tcase_add_test(tc, a_burst_of_bad_chains_does_not_stall_the_ring);
	tcase_add_test(tc, a_sent_sigbus_still_kills);
	tcase_add_loop_test(tc, a_transmit_ring_live_again_is_looked_at, 0, 6);
	tcase_add_test(tc, offload_permissions_end_with_the_connection);
	tcase_add_test(tc, a_client_port_reconnecting_never_blocks_the_loop);
	tcase_add_test(tc, a_client_ports_first_connection_answers_at_once);
	suite_add_tcase(s, tc);
	tc = tcase_create("memory_files");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, a_region_larger_than_its_file_is_refused);
	tcase_add_test(tc, refused_chains_are_used_in_their_place);
	tcase_add_loop_test(tc, a_removed_buffer_region_is_not_used_through_a_kept_copy, 0, 4);
	tcase_add_loop_test(tc, a_memory_file_shrunk_under_the_switch_stops_only_its_port, 0, 2);
	suite_add_tcase(s, tc);
	tc = tcase_create("layouts");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, transmit_layouts_carry_the_frame_whole, 0, 2 * N_RV_LAYOUT);
	tcase_add_loop_test(tc, receive_layouts_get_the_frame_whole, 0, 2 * N_RV_LAYOUT);
	tcase_add_loop_test(tc, lengths_that_wrap_32_bits_are_refused, 0, 2);
	tcase_add_loop_test(tc, a_chain_of_the_whole_ring_wraps_and_is_used_once, 0, 2);
	tcase_add_loop_test(tc, mergeable_buffers_of_exactly_a_header, 0, 2);
	tcase_add_loop_test(tc, more_control_messages_mid_traffic, 0, 4 * N_CTL2);
	tcase_add_loop_test(tc, iotlb_changes_mid_traffic, 0, 8);
	/* RV48_TCASE */
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
