/*
 * test_vhost_user.c - the vhost-user backend against an in-test front-end
 * and virtio-net driver (vu_driver.h): negotiation, traffic on split and
 * packed rings with every feature combination, mergeable buffers, GSO
 * pass-through and segmentation, notifications, interop with mem ports,
 * reconnection (server and client mode), malformed rings and malformed
 * messages (the switch and other ports keep working).
 */
#include <pthread.h>
#include <stdio.h>

#include <sys/stat.h>

#include "vu_env.h"

#define F(b) (1ull << (b))
#define ALL_FEATURES (~F(HS_VIRTIO_F_IOMMU_PLATFORM)) /* no vIOMMU: addresses are GPAs */

/* ---- negotiation -------------------------------------------------------------------- */

START_TEST(negotiates_features_and_connects)
{
	struct env e;
	env_up(&e, 0);
	struct vud v;
	ck_assert_int_eq(vud_connect(&v, e.path[0]), 0);
	uint64_t f;
	ck_assert_int_eq(vud_get_u64(&v, VUD_GET_FEATURES, &f), 0);
	static const unsigned must[] = {HS_VIRTIO_F_VERSION_1, HS_VIRTIO_F_RING_PACKED,
					HS_VIRTIO_F_EVENT_IDX, HS_VIRTIO_F_INDIRECT_DESC,
					HS_VIRTIO_NET_F_MRG_RXBUF, HS_VIRTIO_NET_F_CSUM,
					HS_VIRTIO_NET_F_GUEST_CSUM, HS_VIRTIO_NET_F_HOST_TSO4,
					HS_VIRTIO_NET_F_GUEST_TSO6, HS_VIRTIO_NET_F_MTU, 30};
	for (unsigned i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		ck_assert_msg((f >> must[i]) & 1, "feature %u not offered", must[i]);
	ck_assert((f >> 26) & 1); /* dirty logging: live migration */
	ck_assert_int_eq(vud_start(&v, ALL_FEATURES, 1), 0);
	uint64_t qn;
	ck_assert_int_eq(vud_get_u64(&v, VUD_GET_QUEUE_NUM, &qn), 0);
	ck_assert_uint_eq(qn, 1);
	ck_assert(TH_WAIT(hs_vhost_user_connected(e.p[0]) == 1, 3000));
	ck_assert_uint_eq(hs_vhost_user_features(e.p[0]), v.features);
	ck_assert_uint_eq(hs_port_caps(e.p[0]) & HS_CAP_CSUM, HS_CAP_CSUM);
	vud_post_rx(&v, 0, 16, VUD_BUF);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	vud_close(&v);
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]) &&
			  hs_vhost_user_connected(e.p[0]) == 0, 3000));
	env_down(&e);
}
END_TEST

/* ---- traffic, every combination ------------------------------------------------------ */

static void traffic(uint64_t want, unsigned pieces)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guests_up(&e, &a, &b, want); /* then a talks to b and b answers */
	static uint8_t f[2000], g[10000];
	size_t n;
	for (uint32_t i = 1; i <= 300; i++) {
		size_t len = 60 + (i * 37) % 1400;
		n = mkframe(f, 2, 1, len, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, pieces) == -ENOSPC)
			vud_reap_tx(&a, 0);
		struct vud_net_hdr h;
		int got = recv_wait(&b, g, sizeof(g), &h);
		ck_assert_msg(got == (int)n, "frame %u: got %d of %zu (features %llx)", i,
			      got, n, (unsigned long long)a.features);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		if (b.hdr_len == 12)
			ck_assert_uint_eq(h.num_buffers, 1);
		vud_post_rx(&b, 0, 1, VUD_BUF);
		if (i % 50 == 0)
			vud_reap_tx(&a, 0);
	}
	ck_assert(TH_WAIT((vud_reap_tx(&a, 0), th_pstats(e.p[0]).rx_packets == 300), 3000));
	/* (tx_packets is counted after the commit that made the frame seen) */
	ck_assert(TH_WAIT(th_pstats(e.p[1]).tx_packets == 300, 3000));
	struct hs_port_stats sb = th_pstats(e.p[1]);
	for (int r = 0; r < HS_DROP__COUNT; r++)
		ck_assert_msg(sb.drops[r] == 0 && th_pstats(e.p[0]).drops[r] == 0,
			      "dropped: %s", hs_drop_reason_name(r));
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}

static const uint64_t base = F(HS_VIRTIO_F_VERSION_1) | F(30);

START_TEST(split_ring_traffic)
{
	traffic(base, 1);
}
END_TEST

START_TEST(packed_ring_traffic)
{
	traffic(base | F(HS_VIRTIO_F_RING_PACKED), 1);
}
END_TEST

START_TEST(every_feature_combination_carries_traffic)
{
	for (unsigned combo = 0; combo < 16; combo++) {
		uint64_t want = base;
		if (combo & 1)
			want |= F(HS_VIRTIO_F_RING_PACKED);
		if (combo & 2)
			want |= F(HS_VIRTIO_NET_F_MRG_RXBUF);
		if (combo & 4)
			want |= F(HS_VIRTIO_F_EVENT_IDX);
		if (combo & 8) /* legacy 10-byte header; legacy has no packed rings */
			want &= ~(F(HS_VIRTIO_F_VERSION_1) | F(HS_VIRTIO_F_RING_PACKED));
		traffic(want, combo % 3 + 1);
	}
}
END_TEST

START_TEST(large_frames_merge_receive_buffers)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	uint64_t want = base | F(HS_VIRTIO_NET_F_MRG_RXBUF);
	guest_up(&a, e.path[0], want, e.p[0]);
	ck_assert_int_eq(vud_connect(&b, e.path[1]), 0);
	ck_assert_int_eq(vud_start(&b, want, 1), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 64, 1024), 0); /* small buffers */
	ck_assert(TH_WAIT(hs_port_link_up(e.p[1]), 3000));
	static uint8_t f[9100], g[10000];
	size_t n = mkframe(f, 0, 1, 9000, 7);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 4), 0);
	struct vud_net_hdr h;
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), &h), (int)n);
	ck_assert_uint_eq(h.num_buffers, (9000 + 12 + 1023) / 1024);
	ck_assert_int_eq(memcmp(g, f, n), 0);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

START_TEST(frames_larger_than_single_buffers_are_dropped_oversize)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base, e.p[0]); /* no MRG_RXBUF */
	ck_assert_int_eq(vud_connect(&b, e.path[1]), 0);
	ck_assert_int_eq(vud_start(&b, base, 1), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 8, 1024), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[1]), 3000));
	static uint8_t f[3000], g[3000];
	size_t n = mkframe(f, 0, 1, 2000, 1);
	vud_send(&a, 0, f, (uint32_t)n, NULL, 1);
	ck_assert(TH_WAIT(th_pstats(e.p[1]).drops[HS_DROP_OVERSIZE] == 1, 3000));
	/* The buffers are still there for frames that fit. */
	n = mkframe(f, 0, 1, 500, 2);
	vud_send(&a, 0, f, (uint32_t)n, NULL, 1);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- offloads ------------------------------------------------------------------------------ */

START_TEST(gso_passes_through_or_is_segmented)
{
	for (int seg = 0; seg < 2; seg++) {
		struct env e;
		env_up(&e, 0);
		struct vud a, b;
		uint64_t tso = F(HS_VIRTIO_NET_F_CSUM) | F(HS_VIRTIO_NET_F_GUEST_CSUM) |
			       F(HS_VIRTIO_NET_F_HOST_TSO4) | F(HS_VIRTIO_NET_F_GUEST_TSO4) |
			       F(HS_VIRTIO_NET_F_MRG_RXBUF);
		guest_up(&a, e.path[0], base | tso, e.p[0]);
		/* b takes TSO frames, or (seg) nothing but plain frames */
		uint64_t bw = seg ? base | F(HS_VIRTIO_NET_F_MRG_RXBUF) : base | tso;
		guest_up(&b, e.path[1], bw, e.p[1]);
		vud_post_rx(&b, 0, 100, VUD_BUF);
		static uint8_t f[70000], g[70000];
		/* learn b */
		size_t n0 = mkframe(f, 0, 2, 64, 0);
		vud_send(&b, 0, f, (uint32_t)n0, NULL, 1);
		recv_wait(&a, g, sizeof(g), NULL);
		struct vud_net_hdr h;
		uint32_t n = tcp_frame(f, 30000, &h);
		ck_assert_int_eq(vud_send(&a, 0, f, n, &h, 8), 0);
		struct vud_net_hdr rh;
		if (!seg) {
			ck_assert_int_eq(recv_wait(&b, g, sizeof(g), &rh), (int)n);
			ck_assert_uint_eq(rh.gso_type, 1);
			ck_assert_uint_eq(rh.gso_size, 1448);
			ck_assert_int_eq(memcmp(g, f, n), 0);
		} else {
			uint32_t pieces = (30000 + 1447) / 1448, total = 0;
			for (uint32_t i = 0; i < pieces; i++) {
				int k = recv_wait(&b, g, sizeof(g), &rh);
				ck_assert_int_gt(k, 54);
				ck_assert_uint_eq(rh.gso_type, 0);
				ck_assert_int_eq(memcmp(g + 54, f + 54 + i * 1448, (size_t)k - 54), 0);
				total += (uint32_t)k - 54;
			}
			ck_assert_uint_eq(total, 30000);
		}
		vud_close(&a);
		vud_close(&b);
		env_down(&e);
	}
}
END_TEST

/* DATA_VALID is the device's word to the driver; a driver must not set
 * it (virtio 1.2, 5.1.6.2.1), and Linux's tun ignores it on write. A
 * guest's claim is dropped: a receiver that takes checksum offload does
 * not get a frame with a wrong checksum marked verified (review 48). */
START_TEST(a_guests_data_valid_is_not_passed_on)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	uint64_t cs = F(HS_VIRTIO_NET_F_CSUM) | F(HS_VIRTIO_NET_F_GUEST_CSUM);
	guest_up(&a, e.path[0], base | cs, e.p[0]);
	guest_up(&b, e.path[1], base | cs, e.p[1]);
	vud_post_rx(&b, 0, 16, VUD_BUF);
	static uint8_t f[4000], g[4000];
	size_t n0 = mkframe(f, 0, 2, 64, 0); /* learn b */
	vud_send(&b, 0, f, (uint32_t)n0, NULL, 1);
	recv_wait(&a, g, sizeof(g), NULL);
	struct vud_net_hdr h;
	uint32_t n = tcp_frame(f, 500, &h);
	f[n - 1] ^= 0xff; /* the TCP checksum no longer holds */
	h = (struct vud_net_hdr){.flags = 2}; /* DATA_VALID */
	ck_assert_int_eq(vud_send(&a, 0, f, n, &h, 1), 0);
	struct vud_net_hdr rh;
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), &rh), (int)n);
	ck_assert_uint_eq(rh.flags, 0);
	ck_assert_uint_eq(th_pstats(e.p[0]).drops[HS_DROP_BAD_OFFLOAD], 0);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

START_TEST(offloads_not_negotiated_are_refused)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base, e.p[0]); /* no CSUM, no TSO */
	guest_up(&b, e.path[1], base, e.p[1]);
	static uint8_t f[70000];
	struct vud_net_hdr h;
	uint32_t n = tcp_frame(f, 3000, &h);
	vud_send(&a, 0, f, n, &h, 1);
	ck_assert(TH_WAIT(th_pstats(e.p[0]).drops[HS_DROP_BAD_OFFLOAD] == 1, 3000));
	ck_assert(TH_WAIT(vud_reap_tx(&a, 0) == 1, 3000)); /* completed anyway */
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- with mem ports --------------------------------------------------------------------- */

/* The header the switch writes in front of a received frame, with offload
 * metadata, comes out byte for byte the same whatever the shape of the
 * guest's buffer: header and frame in one piece, the header exactly in its
 * own piece, split across pieces, a byte per piece, one byte short; for
 * both header sizes (12 bytes, and the legacy 10 without VERSION_1 or
 * MRG_RXBUF) and both ring layouts. The one-piece header has its own fast
 * path (hsb_vnet_store); the others take segs_write. */
static void header_shapes(uint64_t want)
{
	struct env e;
	env_up(&e, 0);
	struct th_port_opts o = {.name = "m", .caps = HS_CAP_ALL};
	hs_port_t *m = th_port_opts(e.sw, &o);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&a, want, 1), 0);
	const unsigned H = a.hdr_len;
	ck_assert(H == 10 || H == 12);
	uint8_t want_hdr[3][12];
	for (int shape = 0; shape < 6; shape++) {
		uint8_t *b = vud_alloc(&a, 16384, 64);
		uint8_t *pp[16];
		uint32_t pl[16];
		unsigned n = 0, off = 0;
		/* pieces 64 bytes apart: never merged into one segment */
#define PIECE(L) (pp[n] = b + off, pl[n] = (L), off += (L) + 64, n++)
		switch (shape) {
		case 0: PIECE(H + 4000); break;
		case 1: PIECE(H); PIECE(4000); break;
		case 2: PIECE(5); PIECE(4000); break;
		case 3: for (unsigned k = 0; k < H; k++) PIECE(1); PIECE(4000); break;
		case 4: PIECE(H + 3); PIECE(4000); break;
		case 5: PIECE(H - 1); PIECE(4000); break;
		}
#undef PIECE
		uint64_t g[16];
		for (unsigned k = 0; k < n; k++)
			g[k] = vud_gpa(&a, pp[k]);
		for (int fr = 0; fr < 3; fr++) {
			memset(b, 0xee, 16384);
			ck_assert_int_eq(vud_add(&a, &a.r[0], g, pl, n, g[0]), 0);
			vud_kick(&a.r[0]);
			if (shape == 0 && fr == 0)
				ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
			static uint8_t f[4000], got[4100];
			struct vud_net_hdr vh;
			uint32_t fl = tcp_frame(f, fr == 2 ? 3000 : 200 + fr * 77, &vh);
			th_mac(f, 0x21 + fr); /* unknown: flooded to the guest */
			struct hs_offload md = {.flags = HS_OFF_DATA_VALID};
			if (fr >= 1)
				md = (struct hs_offload){.flags = HS_OFF_NEEDS_CSUM,
							 .csum_start = 34, .csum_offset = 16};
			if (fr == 2) {
				md.gso_type = HS_GSO_TCPV4;
				md.gso_size = 1448;
				md.hdr_len = 54;
			}
			ck_assert_int_eq(th_send_off(m, f, fl, &md), 0);
			uint64_t tag;
			uint32_t len;
			ck_assert(TH_WAIT(vud_used(&a, &a.r[0], &tag, &len), 3000));
			ck_assert_uint_eq(len, H + fl);
			for (unsigned k = 0, at = 0; k < n && at < H + fl; k++) {
				unsigned t = pl[k] < H + fl - at ? pl[k] : H + fl - at;
				memcpy(got + at, pp[k], t);
				ck_assert_uint_eq(pp[k][pl[k]], 0xee); /* nothing past a piece */
				at += t;
			}
			ck_assert_int_eq(memcmp(got + H, f, fl), 0);
			struct vud_net_hdr h = {0};
			memcpy(&h, got, H);
			ck_assert_uint_eq(h.flags, fr ? 1 : 2); /* NEEDS_CSUM / DATA_VALID */
			ck_assert_uint_eq(h.csum_start, fr ? 34 : 0);
			ck_assert_uint_eq(h.csum_offset, fr ? 16 : 0);
			ck_assert_uint_eq(h.gso_type, fr == 2 ? 1 : 0);
			ck_assert_uint_eq(h.gso_size, fr == 2 ? 1448 : 0);
			if (H == 12)
				ck_assert_uint_eq(h.num_buffers, 1);
			if (shape == 0)
				memcpy(want_hdr[fr], got, H);
			else
				ck_assert_int_eq(memcmp(got, want_hdr[fr], H), 0);
		}
	}
	th_drain(m);
	vud_close(&a);
	env_down(&e);
}

START_TEST(receive_headers_are_whole_in_any_buffer_shape)
{
	uint64_t off = F(HS_VIRTIO_NET_F_CSUM) | F(HS_VIRTIO_NET_F_GUEST_CSUM) |
		       F(HS_VIRTIO_NET_F_HOST_TSO4) | F(HS_VIRTIO_NET_F_GUEST_TSO4);
	uint64_t legacy = (base & ~F(HS_VIRTIO_F_VERSION_1)) | off;
	uint64_t mrg = F(HS_VIRTIO_NET_F_MRG_RXBUF);
	uint64_t packed = F(HS_VIRTIO_F_RING_PACKED);
	header_shapes(base | off);
	header_shapes(base | off | mrg);
	header_shapes(base | off | packed);
	header_shapes(base | off | packed | mrg);
	header_shapes(legacy); /* the 10-byte header */
	header_shapes(legacy | mrg);
}
END_TEST

START_TEST(vhost_user_and_mem_ports_talk)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "host", 0);
	struct vud a;
	guest_up(&a, e.path[0], base | F(HS_VIRTIO_F_RING_PACKED), e.p[0]);
	static uint8_t f[2000], g[2000];
	size_t n = mkframe(f, 0, 5, 100, 1);
	ck_assert_int_eq(th_send(m, f, n), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	ck_assert_int_eq(memcmp(g, f, n), 0);
	n = mkframe(f, 5, 1, 300, 2);
	vud_send(&a, 0, f, (uint32_t)n, NULL, 2);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	ck_assert_int_eq(hs_mem_recv(m, 0, g, sizeof(g), NULL), (int)n);
	ck_assert_int_eq(memcmp(g, f, n), 0);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* ---- notifications ------------------------------------------------------------------------ */

START_TEST(guest_gets_interrupts_only_when_it_asks)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base, e.p[0]);
	guest_up(&b, e.path[1], base, e.p[1]);
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 1, 100, 1);
	vud_calls(&b.r[0]);
	vud_send(&a, 0, f, (uint32_t)n, NULL, 1);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	ck_assert(TH_WAIT(vud_calls(&b.r[0]) >= 1, 3000));
	/* The driver suppresses interrupts: none comes. */
	b.r[0].avail[0] = 1; /* VRING_AVAIL_F_NO_INTERRUPT */
	vud_send(&a, 0, f, (uint32_t)n, NULL, 1);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	usleep(50000);
	ck_assert_uint_eq(vud_calls(&b.r[0]), 0);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* A receive ring asks for "buffers posted" kicks only while frames wait in
 * the switch for buffers. Asked for always, a driver without event indexes
 * (DPDK's virtio) kicks after every refill: a system call per burst on the
 * guest's core (it halved a closed loop of DPDK guests). The driver here
 * kicks exactly when the ring says so; a device that forgot to ask while
 * frames wait would leave them there. */
static void rx_kicks(uint64_t want)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guests_up(&e, &a, &b, want);
	static uint8_t f[200], g[200];
	size_t n;
	struct vud_ring *rx = &b.r[0];
	rx->kicks = 0;
	for (uint32_t i = 1; i <= 20; i++) { /* buffers to spare: no kick wanted */
		n = mkframe(f, 2, 1, 100, i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
		ck_assert_int_eq(vud_post_rx(&b, 0, 1, VUD_BUF), 0);
		vud_reap_tx(&a, 0);
	}
	ck_assert_uint_eq(rx->kicks, 0);
	/* b stops posting: its 128 buffers fill, 40 frames wait in the switch */
	for (uint32_t i = 0; i < 168; i++) {
		n = mkframe(f, 2, 1, 100, 100 + i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			vud_reap_tx(&a, 0);
	}
	ck_assert(TH_WAIT((vud_reap_tx(&a, 0), th_pstats(e.p[1]).tx_backlogged == 40), 3000));
	for (uint32_t i = 0; i < 128; i++)
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	ck_assert_int_eq(vud_recv(&b, 0, g, sizeof(g), NULL), 0);
	/* The ring asks for kicks: the switch does so after it counts the
	 * frames backlogged (a polling worker may still be between the two:
	 * seen under TSan) */
	ck_assert(TH_WAIT(vud_asks_for_kicks(&b, rx), 3000));
	/* Posting now must kick, and the waiting frames come in. */
	ck_assert_int_eq(vud_post_rx(&b, 0, 64, VUD_BUF), 0);
	ck_assert_uint_eq(rx->kicks, 1);
	for (uint32_t i = 0; i < 40; i++) {
		int got = recv_wait(&b, g, sizeof(g), NULL);
		ck_assert_msg(got == (int)n, "waiting frame %u: got %d", i, got);
	}
	/* The backlog is empty: the ring stops asking (at the next delivery). */
	for (uint32_t i = 0; i < 20; i++) {
		n = mkframe(f, 2, 1, 100, 1000 + i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
		vud_reap_tx(&a, 0);
	}
	unsigned k = rx->kicks;
	for (uint32_t i = 0; i < 20; i++) {
		n = mkframe(f, 2, 1, 100, 2000 + i);
		ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
		ck_assert_int_eq(vud_post_rx(&b, 0, 1, VUD_BUF), 0);
		vud_reap_tx(&a, 0);
	}
	ck_assert_uint_eq(rx->kicks, k);
	ck_assert(TH_WAIT(th_pstats(e.p[1]).tx_packets == 20 + 168 + 40, 3000));
	struct hs_port_stats sb = th_pstats(e.p[1]);
	for (int r = 0; r < HS_DROP__COUNT; r++)
		ck_assert_msg(sb.drops[r] == 0, "dropped: %s", hs_drop_reason_name(r));
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}

START_TEST(receive_rings_ask_for_kicks_only_while_frames_wait)
{
	rx_kicks(base);                          /* split, flags */
	rx_kicks(base | F(HS_VIRTIO_F_EVENT_IDX)); /* split, event index */
	rx_kicks(base | F(HS_VIRTIO_F_RING_PACKED));
}
END_TEST

/* A device reset drops what waited and the request for kicks with it: a
 * guest that reconnects is not asked to kick after every refill (it was,
 * until the next frame for it, found by a review). */
START_TEST(a_reconnected_guest_is_not_asked_for_kicks)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base, e.p[0]);
	guest_up(&b, e.path[1], base, e.p[1]);
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 2, 64, 0);
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	for (uint32_t i = 0; i < 148; i++) { /* 128 buffers: 20 wait */
		n = mkframe(f, 2, 1, 100, 100 + i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			vud_reap_tx(&a, 0);
	}
	ck_assert(TH_WAIT((vud_reap_tx(&a, 0), th_pstats(e.p[1]).tx_backlogged == 20), 3000));
	/* kicks asked for: the switch clears NO_NOTIFY after it counts the
	 * frames backlogged (a worker may still be between the two) */
	ck_assert(TH_WAIT(vud_asks_for_kicks(&b, &b.r[0]), 3000));
	vud_close(&b);
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[1]), 3000));
	struct vud b2;
	guest_up(&b2, e.path[1], base, e.p[1]);
	b2.r[0].kicks = 0;
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(vud_post_rx(&b2, 0, 1, VUD_BUF), 0);
	ck_assert_uint_eq(b2.r[0].kicks, 0);
	n = mkframe(f, 0, 2, 64, 1);
	ck_assert_int_eq(vud_send(&b2, 0, f, (uint32_t)n, NULL, 1), 0);
	n = mkframe(f, 2, 1, 100, 5);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&b2, g, sizeof(g), NULL), (int)n);
	vud_close(&a);
	vud_close(&b2);
	env_down(&e);
}
END_TEST

/* A TSO frame that needs more merged receive buffers than one frame may
 * take (VU_RX_MAX_CHAINS, 64: here 79 of 512 bytes) can never go in: it
 * is dropped and counted (oversize). It used to count as "no buffers
 * now" and wait at the head of the backlog for good, every frame for
 * that guest behind it (found by a review). */
START_TEST(a_frame_needing_more_than_64_buffers_does_not_block_the_guest)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	uint64_t tso = F(HS_VIRTIO_NET_F_CSUM) | F(HS_VIRTIO_NET_F_GUEST_CSUM) |
		       F(HS_VIRTIO_NET_F_HOST_TSO4) | F(HS_VIRTIO_NET_F_GUEST_TSO4) |
		       F(HS_VIRTIO_NET_F_MRG_RXBUF);
	guest_up(&a, e.path[0], base | tso, e.p[0]);
	ck_assert_int_eq(vud_connect(&b, e.path[1]), 0);
	ck_assert_int_eq(vud_start(&b, base | tso, 1), 0);
	ck_assert_int_eq(vud_post_rx(&b, 0, 250, 512), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[1]), 3000));
	static uint8_t f[70000], g[70000];
	size_t n = mkframe(f, 0, 2, 64, 0);
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_gt(recv_wait(&a, g, sizeof(g), NULL), 0);
	struct vud_net_hdr h;
	uint32_t big = tcp_frame(f, 40000, &h);
	ck_assert_int_eq(vud_send(&a, 0, f, big, &h, 8), 0);
	n = mkframe(f, 2, 1, 100, 7);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	ck_assert_mem_eq(g, f, n);
	/* counted just after the commit that the guest may see first */
	ck_assert(TH_WAIT(th_pstats(e.p[1]).tx_packets == 1, 3000));
	struct hs_port_stats sb = th_pstats(e.p[1]);
	ck_assert_uint_eq(sb.drops[HS_DROP_OVERSIZE], 1);
	ck_assert_uint_eq(sb.tx_packets, 1);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- reconnection ------------------------------------------------------------------------- */

START_TEST(a_restarted_front_end_gets_traffic_again)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&b, e.path[1], base, e.p[1]);
	static uint8_t f[200], g[200];
	for (int round = 0; round < 3; round++) {
		guest_up(&a, e.path[0], round % 2 ? base | F(HS_VIRTIO_F_RING_PACKED) : base,
			 e.p[0]);
		size_t n = mkframe(f, 0, 1, 100, (uint32_t)round);
		vud_send(&a, 0, f, (uint32_t)n, NULL, 1);
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
		vud_post_rx(&b, 0, 1, VUD_BUF);
		vud_close(&a); /* the VMM goes away */
		ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]), 3000));
	}
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* A front-end whose memory comes in several regions (DPDK gives one per
 * memory segment): frames from buffers in every region, one after the
 * other, each in another region than the last (the switch guesses the
 * region of the last translation first), and one buffer across the
 * boundary of two regions (contiguous for the guest, not for the switch:
 * two pieces), all arrive intact and in order. */
START_TEST(buffers_in_several_regions_are_translated)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.mem_split = 4;
	ck_assert_int_eq(vud_start(&a, base, 1), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	guest_up(&b, e.path[1], base, e.p[1]);
	enum { PER = 3, NB = 4 * PER + 1 };
	const size_t reg = VUD_MEM / 4;
	uint8_t *buf[NB];
	/* PER buffers near the start of each region (the rings lie in the
	 * first), then one across the boundary of regions 2 and 3 */
	for (unsigned k = 0; k < 4; k++) {
		if (a.used_mem < k * reg + 4096)
			a.used_mem = k * reg + 4096;
		for (unsigned j = 0; j < PER; j++)
			buf[j * 4 + k] = vud_alloc(&a, 256, 64);
	}
	buf[NB - 1] = a.mem + 3 * reg - 100;
	struct vud_ring *r = &a.r[1];
	static uint8_t f[NB][200], g[200];
	size_t len[NB];
	for (unsigned i = 0; i < NB; i++) {
		ck_assert_ptr_nonnull(buf[i]);
		memset(buf[i], 0, a.hdr_len);
		len[i] = mkframe(f[i], 0, 1, 150, i);
		memcpy(buf[i] + a.hdr_len, f[i], len[i]);
		uint64_t gpa = vud_gpa(&a, buf[i]);
		uint32_t l = a.hdr_len + (uint32_t)len[i];
		uint16_t old = r->avail_idx;
		ck_assert_int_eq(vud_add(&a, r, &gpa, &l, 1, gpa), 0);
		vud_kick_if_needed(&a, r, old);
	}
	for (unsigned i = 0; i < NB; i++) {
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)len[i]);
		ck_assert_msg(!memcmp(g, f[i], len[i]), "frame %u differs", i);
		vud_post_rx(&b, 0, 1, VUD_BUF);
	}
	struct hs_port_stats st = th_pstats(e.p[0]);
	for (unsigned d = 0; d < HS_DROP__COUNT; d++)
		ck_assert_uint_eq(st.drops[d], 0);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* Memory given region by region (CONFIGURE_MEM_SLOTS), the same region
 * twice as QEMU does with one vhost device per queue pair: the region stays
 * mapped until it has been removed as many times as it was added. */
START_TEST(memory_slots_are_counted_per_add)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.mem_adds = 2;
	ck_assert_int_eq(vud_start(&a, base, 1), 0);
	ck_assert_uint_eq((a.proto >> 15) & 1, 1);
	ck_assert_int_eq(vud_post_rx(&a, 0, 128, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	guest_up(&b, e.path[1], base, e.p[1]);
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 1, 100, 1);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	vud_post_rx(&b, 0, 1, VUD_BUF);
	/* One removal: still mapped, still forwarding. */
	ck_assert_int_eq(vud_mem_reg(&a, VUD_REM_MEM_REG), 0);
	ck_assert(hs_port_link_up(e.p[0]));
	n = mkframe(f, 0, 1, 100, 2);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	vud_post_rx(&b, 0, 1, VUD_BUF);
	/* The last removal unmaps it: the rings cannot be reached any more. */
	ck_assert_int_eq(vud_mem_reg(&a, VUD_REM_MEM_REG), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]), 3000));
	ck_assert_int_lt(vud_mem_reg(&a, VUD_REM_MEM_REG), 0); /* nothing left */
	/* Added back: traffic resumes. */
	ck_assert_int_eq(vud_mem_reg(&a, VUD_ADD_MEM_REG), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	n = mkframe(f, 0, 1, 100, 3);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

START_TEST(client_mode_reconnects_to_the_vmm)
{
	struct hs_switch_config cfg = {.n_workers = env_workers()};
	hs_switch_t *sw = th_switch(&cfg);
	char path[108];
	struct sockaddr_un sa;
	int ls = vmm_listen(path, "vu-client", 1, &sa);
	struct hs_vhost_user_config vc = {.path = path, .flags = HS_VU_CLIENT,
					  .reconnect_ms = 20};
	struct hs_port_config pc = {.name = "c", .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc)};
	hs_port_t *p;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	pthread_t t;
	pthread_create(&t, NULL, env_loop_main, sw);
	for (int round = 0; round < 2; round++) {
		struct pollfd pf = {.fd = ls, .events = POLLIN};
		ck_assert_int_eq(poll(&pf, 1, 3000), 1);
		int c = accept(ls, NULL, NULL);
		ck_assert_int_ge(c, 0);
		ck_assert(TH_WAIT(hs_vhost_user_connected(p) == 1, 3000));
		/* Speak as the VMM would. */
		struct vud v = {.sock = c};
		uint64_t f;
		ck_assert_int_eq(vud_get_u64(&v, VUD_GET_FEATURES, &f), 0);
		ck_assert_uint_ne(f, 0);
		close(c); /* the VMM restarts */
		ck_assert(TH_WAIT(hs_vhost_user_connected(p) == 0, 3000));
	}
	hs_stop(sw);
	pthread_join(t, NULL);
	hs_switch_destroy(sw);
	close(ls);
	unlink(path);
}
END_TEST

/* ---- the socket and the MTU ---------------------------------------------------------------- */

START_TEST(the_socket_gets_its_mode_and_owner_before_it_listens)
{
	struct hs_switch_config cfg = {.n_workers = env_workers()};
	hs_switch_t *sw = th_switch(&cfg);
	char path[2][108];
	for (int i = 0; i < 2; i++)
		snprintf(path[i], sizeof(path[i]), "/tmp/hs-vu-mode-%d-%d.sock", (int)getpid(), i);
	/* Default: the switch's own user only. */
	hs_port_t *p0 = vu_port(sw, "d", path[0], 0, 1, 0);
	struct stat st;
	ck_assert_int_eq(stat(path[0], &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	/* A group of VMMs: mode 0660, group 1 (daemon). */
	struct hs_vhost_user_config vc = {.path = path[1], .flags = HS_VU_SOCKET_OWNER,
					  .socket_mode = 0660, .socket_uid = (uint32_t)getuid(),
					  .socket_gid = 1};
	struct hs_port_config pc = {.name = "g", .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc)};
	hs_port_t *p1;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p1), 0);
	ck_assert_int_eq(stat(path[1], &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0660);
	ck_assert_uint_eq(st.st_gid, 1);
	ck_assert_uint_eq(st.st_uid, getuid());
	/* Bad modes are refused. */
	vc.socket_mode = 01777;
	pc.name = "bad";
	ck_assert_int_eq(hs_port_add(sw, &pc, &p1), -EINVAL);
	hs_port_del(p0);
	hs_switch_destroy(sw);
	ck_assert_int_ne(access(path[0], F_OK), 0);
	ck_assert_int_ne(access(path[1], F_OK), 0);
}
END_TEST

/* NET_SET_MTU: the guest's MTU; larger frames from it are oversize. */
START_TEST(the_guests_mtu_is_honoured)
{
	struct env e;
	env_up(&e, 0);
	hs_port_t *m = th_port(e.sw, "m", 0);
	struct vud a;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.proto_extra = 1ull << 4; /* VHOST_USER_PROTOCOL_F_MTU */
	ck_assert_int_eq(vud_start(&a, base | F(HS_VIRTIO_NET_F_MTU), 1), 0);
	ck_assert((a.proto >> 4) & 1);
	ck_assert_int_eq(vud_post_rx(&a, 0, 16, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	ck_assert_int_eq(vud_u64(&a, 20, 9001), -EIO); /* above what was offered */
	ck_assert_int_eq(vud_u64(&a, 20, 1000), 0);
	static uint8_t f[2000];
	size_t n = mkframe(f, 0, 1, 14 + 1000, 1); /* fits */
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(th_pending(m) == 1, 3000));
	th_drain(m);
	n = mkframe(f, 0, 1, 14 + 1001, 2); /* one byte too many */
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert(TH_WAIT(th_pstats(e.p[0]).drops[HS_DROP_OVERSIZE] == 1, 3000));
	ck_assert_int_eq(th_pending(m), 0);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* ---- hostile rings ---------------------------------------------------------------------- */

enum abuse { AVAIL_JUMP, HEAD_RANGE, LOOP, OUTSIDE, WRONG_DIR, NESTED_INDIRECT,
	     BAD_INDIRECT_LEN, NEXT_RANGE, N_ABUSE };

static void abuse_split(struct vud *v, enum abuse kind)
{
	struct vud_ring *r = &v->r[1];
	uint16_t head = r->free_head;
	uint8_t *b = vud_alloc(v, 256, 64);
	memset(b, 0, 256);
	r->desc[head].addr = vud_gpa(v, b);
	r->desc[head].len = 100;
	r->desc[head].flags = 0;
	switch (kind) {
	case AVAIL_JUMP:
		r->avail[2 + (r->avail_idx & (r->size - 1))] = head;
		__atomic_store_n(&r->avail[1], (uint16_t)(r->avail_idx + 1000), __ATOMIC_RELEASE);
		break;
	case HEAD_RANGE:
		r->avail[2 + (r->avail_idx & (r->size - 1))] = 999;
		break;
	case LOOP:
		r->desc[head].flags = 1;
		r->desc[head].next = head;
		break;
	case OUTSIDE:
		r->desc[head].addr = 0x10;
		break;
	case WRONG_DIR:
		r->desc[head].flags = 2; /* device-writable on a transmit ring */
		break;
	case NESTED_INDIRECT: {
		uint64_t *t = (uint64_t *)b; /* one entry that is itself indirect */
		t[0] = vud_gpa(v, b);
		t[1] = (uint64_t)16 | ((uint64_t)4 << 32);
		r->desc[head].flags = 4;
		r->desc[head].len = 16;
		break;
	}
	case BAD_INDIRECT_LEN:
		r->desc[head].flags = 4;
		r->desc[head].len = 17;
		break;
	case NEXT_RANGE:
		r->desc[head].flags = 1;
		r->desc[head].next = 5000;
		break;
	default:
		break;
	}
	if (kind != AVAIL_JUMP) {
		if (kind != HEAD_RANGE)
			r->avail[2 + (r->avail_idx & (r->size - 1))] = head;
		r->avail_idx++;
		__atomic_store_n(&r->avail[1], r->avail_idx, __ATOMIC_RELEASE);
	}
	vud_kick(r);
}

START_TEST(hostile_rings_stop_only_their_port)
{
	for (int kind = 0; kind < N_ABUSE; kind++) {
		struct env e;
		env_up(&e, 0);
		hs_port_t *m1 = th_port(e.sw, "m1", 0), *m2 = th_port(e.sw, "m2", 0);
		struct vud a;
		uint64_t want = base | F(HS_VIRTIO_F_INDIRECT_DESC);
		guest_up(&a, e.path[0], want, e.p[0]);
		abuse_split(&a, (enum abuse)kind);
		ck_assert_msg(TH_WAIT(!hs_port_link_up(e.p[0]), 3000), "abuse %d", kind);
		/* The others keep switching; a reset (new connection) heals. */
		others_keep_switching_then_port_recovers(&e, &a, m1, m2, want);
		env_down(&e);
	}
}
END_TEST

START_TEST(oversized_and_overlong_chains_are_refused_not_fatal)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base, e.p[0]);
	guest_up(&b, e.path[1], base, e.p[1]);
	/* 70,000 bytes: more than any frame. */
	struct vud_ring *r = &a.r[1];
	uint8_t *big = vud_alloc(&a, 70000, 64);
	uint64_t g0 = vud_gpa(&a, big);
	uint32_t l0 = 70000;
	memset(big, 0, 64);
	vud_add(&a, r, &g0, &l0, 1, g0);
	vud_kick(r);
	ck_assert(TH_WAIT(th_pstats(e.p[0]).drops[HS_DROP_BAD_DESC] == 1, 3000));
	ck_assert(hs_port_link_up(e.p[0])); /* not fatal */
	ck_assert(TH_WAIT(vud_reap_tx(&a, 0) == 1, 3000));
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 1, 100, 1);
	vud_send(&a, 0, f, (uint32_t)n, NULL, 1);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- hostile messages ---------------------------------------------------------------------- */

START_TEST(malformed_messages_get_errors_not_crashes)
{
	struct env e;
	env_up(&e, 0);
	struct vud v;
	ck_assert_int_eq(vud_connect(&v, e.path[0]), 0);
	ck_assert_int_eq(vud_start(&v, base, 1), 0); /* REPLY_ACK on */
	ck_assert((v.proto >> 3) & 1);
	uint64_t junk[8] = {0};
	/* unknown request */
	ck_assert_int_eq(vud_call(&v, 99, junk, 8, NULL, 0), -EIO);
	/* payload of the wrong size */
	ck_assert_int_eq(vud_call(&v, VUD_SET_FEATURES, junk, 4, NULL, 0), -EIO);
	/* features never offered */
	ck_assert_int_eq(vud_u64(&v, VUD_SET_FEATURES, 1ull << 63), -EIO);
	/* vring index out of range */
	ck_assert_int_eq(vud_state(&v, VUD_SET_VRING_NUM, 77, 256), -EIO);
	/* ring size not a power of two on a split ring, and too big */
	ck_assert_int_eq(vud_state(&v, VUD_SET_VRING_NUM, 0, 100), -EIO);
	ck_assert_int_eq(vud_state(&v, VUD_SET_VRING_NUM, 0, 65536), -EIO);
	/* a memory table whose fd count does not match its regions */
	uint64_t mt[6] = {2, VUD_GPA, 4096, 0, 0, 0};
	ck_assert_int_eq(vud_call(&v, VUD_SET_MEM_TABLE, mt, 8 + 32, &v.memfd, 1), -EIO);
	/* a region larger than its file, overflowing addresses */
	uint64_t mt2[5] = {1, UINT64_MAX - 10, 4096, 0, 0};
	ck_assert_int_eq(vud_call(&v, VUD_SET_MEM_TABLE, mt2, 8 + 32, &v.memfd, 1), -EIO);
	/* a vring address outside guest memory */
	uint64_t addr[5] = {0, 0x10, 0x10, 0x10, 0};
	ck_assert_int_eq(vud_call(&v, VUD_SET_VRING_ADDR, addr, 40, NULL, 0), -EIO);
	/* a kick with flags the protocol does not have */
	ck_assert_int_eq(vud_u64(&v, VUD_SET_VRING_KICK, 0x200 | 0x100), -EIO);
	/* still alive: a good request works */
	uint64_t f;
	ck_assert_int_eq(vud_get_u64(&v, VUD_GET_FEATURES, &f), 0);
	/* an oversized payload ends the connection */
	uint32_t h[3] = {VUD_SET_FEATURES, 1, 100000};
	ck_assert_int_eq(send(v.sock, h, 12, MSG_NOSIGNAL), 12);
	ck_assert(TH_WAIT(hs_vhost_user_connected(e.p[0]) == 0, 3000));
	vud_close(&v);
	/* and a new front-end is welcome; one that speaks another version
	 * of the protocol is not */
	struct vud w;
	guest_up(&w, e.path[0], base, e.p[0]);
	uint32_t hv[3] = {VUD_GET_FEATURES, 2, 0};
	ck_assert_int_eq(send(w.sock, hv, 12, MSG_NOSIGNAL), 12);
	ck_assert(TH_WAIT(hs_vhost_user_connected(e.p[0]) == 0, 3000));
	vud_close(&w);
	/* nor one that sends more descriptors than any message carries */
	guest_up(&w, e.path[0], base, e.p[0]);
	int many[12];
	for (unsigned i = 0; i < 12; i++)
		many[i] = w.memfd;
	uint64_t msgs = backend_ctr(e.p[0], "messages");
	ck_assert_int_eq(vud_send_msg(&w, VUD_GET_FEATURES, 0, NULL, 0, many, 12), 0);
	ck_assert(TH_WAIT(hs_vhost_user_connected(e.p[0]) == 0, 3000));
	ck_assert_uint_eq(backend_ctr(e.p[0], "messages"), msgs + 1); /* a message too */
	vud_close(&w);
	/* Each refused request above was counted once, the oversized one,
	 * the wrong version and the descriptors too (each ended its
	 * connection). */
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "disconnects") == 3, 3000));
	ck_assert_uint_eq(backend_ctr(e.p[0], "bad_messages"), 13);
	env_down(&e);
}
END_TEST

START_TEST(a_second_front_end_is_refused)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	guest_up(&a, e.path[0], base, e.p[0]);
	ck_assert_int_eq(vud_connect(&b, e.path[0]), 0);
	char c;
	struct pollfd pf = {.fd = b.sock, .events = POLLIN};
	ck_assert_int_eq(poll(&pf, 1, 3000), 1);
	ck_assert_int_eq(recv(b.sock, &c, 1, 0), 0); /* closed on it */
	ck_assert(hs_port_link_up(e.p[0]));
	vud_close(&b);
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* ---- front-ends that poll, device reset ------------------------------------------ */

/* A front-end that polls its rings and never kicks (NOFD kick fds, as a
 * busy-polling virtio-user does): the switch looks at the rings itself,
 * and frames flow both ways with every kick the driver writes going
 * nowhere. */
START_TEST(a_front_end_that_polls_gets_its_frames)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	uint64_t want = base | F(HS_VIRTIO_F_EVENT_IDX);
	guest_up(&a, e.path[0], want, e.p[0]);
	guest_up(&b, e.path[1], want, e.p[1]);
	for (unsigned i = 0; i < 2; i++) {
		uint64_t nofd = i | 0x100;
		ck_assert_int_eq(vud_call(&a, VUD_SET_VRING_KICK, &nofd, 8, NULL, 0), 0);
		ck_assert_int_eq(vud_call(&b, VUD_SET_VRING_KICK, &nofd, 8, NULL, 0), 0);
	}
	static uint8_t f[2000], g[2000];
	for (uint32_t i = 1; i <= 200; i++) {
		size_t n = mkframe(f, 2, 1, 60 + i % 1400, i);
		while (vud_send(&a, 0, f, (uint32_t)n, NULL, 1) == -ENOSPC)
			vud_reap_tx(&a, 0);
		ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
		ck_assert_int_eq(memcmp(g, f, n), 0);
		if (i % 100 == 0) /* b reposts: the switch must notice by itself */
			ck_assert_int_eq(vud_post_rx(&b, 0, 100, VUD_BUF), 0);
	}
	ck_assert(TH_WAIT(th_pstats(e.p[0]).rx_packets == 200, 3000));
	ck_assert(TH_WAIT(th_pstats(e.p[1]).tx_packets == 200, 3000));
	/* back to kicks: the switch's polling stops, frames still flow */
	ck_assert_int_eq(vud_ring_fd(&a, VUD_SET_VRING_KICK, 1, a.r[1].kick), 0);
	size_t n = mkframe(f, 2, 1, 100, 999);
	ck_assert_int_eq(vud_send(&a, 0, f, (uint32_t)n, NULL, 1), 0);
	vud_kick(&a.r[1]);
	ck_assert_int_eq(recv_wait(&b, g, sizeof(g), NULL), (int)n);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* RESET_DEVICE: the rings stop and the device forgets its configuration
 * but keeps the connection; configured again on it, it carries traffic. */
START_TEST(reset_device_keeps_the_connection)
{
	struct env e;
	env_up(&e, 0);
	struct vud a, b;
	ck_assert_int_eq(vud_connect(&a, e.path[0]), 0);
	a.proto_extra = 1ull << 13; /* VHOST_USER_PROTOCOL_F_RESET_DEVICE */
	ck_assert_int_eq(vud_start(&a, base, 1), 0);
	ck_assert_int_eq(vud_post_rx(&a, 0, 64, VUD_BUF), 0);
	ck_assert((a.proto >> 13) & 1);
	guest_up(&b, e.path[1], base, e.p[1]);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	ck_assert_int_eq(vud_call(&a, 34, NULL, 0, NULL, 0), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(e.p[0]), 3000));
	ck_assert_uint_eq(hs_vhost_user_features(e.p[0]), 0);
	ck_assert_int_eq(hs_vhost_user_connected(e.p[0]), 1);
	/* the same connection, configured again (no SET_OWNER, no protocol
	 * features: they stayed) */
	ck_assert_int_eq(vud_u64(&a, VUD_SET_FEATURES, a.features), 0);
	ck_assert_int_eq(vud_mem_table(&a), 0);
	for (unsigned i = 0; i < 2; i++) {
		close(a.r[i].kick);
		close(a.r[i].call);
		vud_ring_alloc(&a, &a.r[i], !(i & 1));
		ck_assert_int_eq(vud_ring_setup(&a, i), 0);
	}
	ck_assert_int_eq(vud_post_rx(&a, 0, 64, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(e.p[0]), 3000));
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 2, 100, 1);
	ck_assert_int_eq(vud_send(&b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(&a, g, sizeof(g), NULL), (int)n);
	vud_close(&a);
	vud_close(&b);
	env_down(&e);
}
END_TEST

/* ---- the guest's vCPU state ---------------------------------------------------------
 * The front-end is this process (SO_PEERCRED gives the test's own pid), so
 * a thread of the test named like a VMM's vCPU thread is the guest's vCPU:
 * spinning it is "running" ('R'), waiting on a condition is "blocked"
 * ('S'). The test's other threads (the switch's loop, workers, the
 * test's own TH_WAIT, which spins) must not count. */

enum { FV_SPIN, FV_SLEEP, FV_EXIT };

struct fake_vcpu {
	pthread_t t;
	pthread_mutex_t m;
	pthread_cond_t c;
	_Atomic int mode;
};

static void *fake_vcpu_main(void *arg)
{
	struct fake_vcpu *v = arg;
	for (;;) {
		int m = atomic_load(&v->mode);
		if (m == FV_EXIT)
			return NULL;
		if (m == FV_SLEEP) {
			pthread_mutex_lock(&v->m);
			while (atomic_load(&v->mode) == FV_SLEEP)
				pthread_cond_wait(&v->c, &v->m);
			pthread_mutex_unlock(&v->m);
		}
	}
}

/* A thread named `name` (set before this returns), in `mode`. */
static void fake_vcpu_start(struct fake_vcpu *v, const char *name, int mode)
{
	pthread_mutex_init(&v->m, NULL);
	pthread_cond_init(&v->c, NULL);
	atomic_store(&v->mode, mode);
	ck_assert_int_eq(pthread_create(&v->t, NULL, fake_vcpu_main, v), 0);
	ck_assert_int_eq(pthread_setname_np(v->t, name), 0);
}

static void fake_vcpu_set(struct fake_vcpu *v, int mode)
{
	pthread_mutex_lock(&v->m);
	atomic_store(&v->mode, mode);
	pthread_cond_signal(&v->c);
	pthread_mutex_unlock(&v->m);
}

static void fake_vcpu_end(struct fake_vcpu *v)
{
	fake_vcpu_set(v, FV_EXIT);
	pthread_join(v->t, NULL);
	pthread_mutex_destroy(&v->m);
	pthread_cond_destroy(&v->c);
}

START_TEST(the_peer_state_follows_the_front_ends_vcpu_thread)
{
	struct env e;
	vu_env_vcpu_idle_ms = HS_VU_VCPU_IDLE_NEVER; /* no traffic here */
	env_up(&e, 0);
	vu_env_vcpu_idle_ms = 0;
	struct fake_vcpu cpu;
	fake_vcpu_start(&cpu, "CPU 0/TCG", FV_SPIN);
	ck_assert_int_eq(hs_port_peer_state(e.p[0], 0), HS_PEER_UNKNOWN);
	struct vud a;
	guest_up(&a, e.path[0], base, e.p[0]);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_RUNNING, 1000));
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_threads"), 1); /* this one only */
	ck_assert_int_eq(hs_port_peer_state(e.p[1], 0), HS_PEER_UNKNOWN); /* no front-end */
	/* the vCPU halts, runs again, halts */
	fake_vcpu_set(&cpu, FV_SLEEP);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_BLOCKED, 1000));
	fake_vcpu_set(&cpu, FV_SPIN);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_RUNNING, 1000));
	fake_vcpu_set(&cpu, FV_SLEEP);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_BLOCKED, 1000));
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "peer_running") >= 2 &&
				  backend_ctr(e.p[0], "peer_not_running") >= 2,
			  3000));
	ck_assert_uint_gt(backend_ctr(e.p[0], "vcpu_state_reads"), 0);
	/* traffic still flows while the state is known */
	struct vud b;
	guest_up(&b, e.path[1], base, e.p[1]);
	frame_a_to_b(&a, &b, 1);
	/* the front-end goes: nobody's state is known */
	fake_vcpu_set(&cpu, FV_SPIN);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_RUNNING, 1000));
	vud_close(&a);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_UNKNOWN, 1000));
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_threads"), 0);
	vud_close(&b);
	fake_vcpu_end(&cpu);
	env_down(&e);
}
END_TEST

/* QEMU connects the netdev before it creates its vCPUs, and vCPUs come and
 * go (hot-plug): the thread list is read again. */
START_TEST(vcpu_threads_are_found_after_the_connect_and_lost_when_they_end)
{
	struct env e;
	vu_env_vcpu_idle_ms = HS_VU_VCPU_IDLE_NEVER; /* no traffic here */
	env_up(&e, 0);
	vu_env_vcpu_idle_ms = 0;
	struct vud a;
	guest_up(&a, e.path[0], base, e.p[0]);
	ck_assert_uint_ge(backend_ctr(e.p[0], "vcpu_scans"), 1);
	ck_assert_int_eq(hs_port_peer_state(e.p[0], 0), HS_PEER_UNKNOWN);
	struct fake_vcpu cpu;
	fake_vcpu_start(&cpu, "vcpu0", FV_SLEEP); /* cloud-hypervisor's name */
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_BLOCKED, 3000));
	struct fake_vcpu cpu2;
	fake_vcpu_start(&cpu2, "fc_vcpu 1", FV_SPIN); /* Firecracker's */
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_RUNNING, 3000));
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_threads"), 2);
	fake_vcpu_end(&cpu2); /* unplugged: the other one decides */
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_BLOCKED, 1000));
	fake_vcpu_end(&cpu); /* no vCPU left */
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_UNKNOWN, 1000));
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_threads"), 0);
	/* QEMU's single-threaded TCG runs every vCPU on one thread */
	fake_vcpu_start(&cpu, "ALL CPUs/TCG", FV_SPIN);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_RUNNING, 3000));
	fake_vcpu_end(&cpu);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_UNKNOWN, 1000));
	vud_close(&a);
	env_down(&e);
}
END_TEST

/* Threads whose names only look like vCPUs' are not vCPUs, and a port
 * with HS_VU_NO_VCPU_STATE samples nothing. */
START_TEST(no_peer_state_without_vcpu_threads_or_with_the_flag)
{
	struct env e;
	vu_env_vcpu_idle_ms = HS_VU_VCPU_IDLE_NEVER; /* no traffic here */
	env_up(&e, 0);
	vu_env_vcpu_idle_ms = 0;
	static const char *const lookalike[] = {"CPU /KVM", "CPU 0", "CPU x/TCG", "cpu 0/KVM",
						"vcpu", "vcpu0x", "fc_vcpu", "fc_vcpu 1a",
						" CPU 0/KVM", "vcpu 0", "ALL CPUs/KVM"};
	enum { NL = sizeof(lookalike) / sizeof(lookalike[0]) };
	struct fake_vcpu other[NL];
	for (unsigned i = 0; i < NL; i++)
		fake_vcpu_start(&other[i], lookalike[i], i < 2 ? FV_SPIN : FV_SLEEP);
	struct vud a;
	guest_up(&a, e.path[0], base, e.p[0]);
	/* two thread lists read (a second apart): none of them counted */
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "vcpu_scans") >= 2, 3000));
	ck_assert_int_eq(hs_port_peer_state(e.p[0], 0), HS_PEER_UNKNOWN);
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_threads"), 0);
	ck_assert_uint_eq(backend_ctr(e.p[0], "peer_running"), 0);
	ck_assert_uint_eq(backend_ctr(e.p[0], "peer_not_running"), 0);
	for (unsigned i = 0; i < NL; i++)
		fake_vcpu_end(&other[i]);
	/* a third port, opted out, next to port 0, which samples the same
	 * process: port 0 sees the vCPU, port 2 does not look */
	char path[108];
	snprintf(path, sizeof(path), "/tmp/hs-vu-test-%d-2.sock", (int)getpid());
	hs_port_t *p2 = vu_port(e.sw, "vc", path, HS_VU_NO_VCPU_STATE, 1, 0);
	struct fake_vcpu cpu;
	fake_vcpu_start(&cpu, "CPU 12/KVM", FV_SPIN);
	struct vud c;
	guest_up(&c, path, base, p2);
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_RUNNING, 3000));
	uint64_t scans = backend_ctr(e.p[0], "vcpu_scans");
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "vcpu_scans") > scans, 3000));
	ck_assert_int_eq(hs_port_peer_state(p2, 0), HS_PEER_UNKNOWN);
	ck_assert_uint_eq(backend_ctr(p2, "vcpu_scans"), 0);
	ck_assert_uint_eq(backend_ctr(p2, "vcpu_state_reads"), 0);
	vud_close(&c);
	vud_close(&a);
	fake_vcpu_end(&cpu);
	hs_port_del(p2);
	ck_assert_int_ne(access(path, F_OK), 0);
	env_down(&e);
}
END_TEST

/* A quiet port stops sampling (the state goes back to unknown: every
 * batch the guest asks for is notified), and the next frame starts it
 * again. vcpu_idle_ms: 0 is the default (100 ms), HS_VU_VCPU_IDLE_NEVER
 * keeps sampling, and a caller built against the V1 config (48 bytes, its
 * tail padding unset) gets the default. */
START_TEST(vcpu_sampling_pauses_while_the_port_is_quiet)
{
	struct env e;
	env_up(&e, 0); /* both ports: vcpu_idle_ms 0 */
	struct fake_vcpu cpu;
	fake_vcpu_start(&cpu, "CPU 0/KVM", FV_SPIN);
	char path[2][108];
	hs_port_t *q[2];
	for (int i = 0; i < 2; i++)
		snprintf(path[i], sizeof(path[i]), "/tmp/hs-vu-test-%d-%d.sock", (int)getpid(),
			 2 + i);
	vu_env_vcpu_idle_ms = HS_VU_VCPU_IDLE_NEVER;
	q[0] = vu_port(e.sw, "never", path[0], 0, 1, 0);
	vu_env_vcpu_idle_ms = 0;
	struct hs_vhost_user_config old = {.path = path[1], .queue_pairs = 1};
	memset((char *)&old + HS_VHOST_USER_CONFIG_SIZE_V1, 0xaa, 4); /* V1's padding */
	struct hs_port_config pc = {.name = "v1", .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &old,
				    .backend_config_size = HS_VHOST_USER_CONFIG_SIZE_V1 + 4};
	ck_assert_int_eq(hs_port_add(e.sw, &pc, &q[1]), 0);
	struct vud a, b, c, d;
	guest_up(&a, e.path[0], base, e.p[0]);
	guest_up(&b, e.path[1], base, e.p[1]);
	guest_up(&c, path[0], base, q[0]);
	guest_up(&d, path[1], base, q[1]);
	/* no frame yet: they sample, then pause; the V1 caller's too */
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "vcpu_idle") == 1, 3000));
	ck_assert(TH_WAIT(backend_ctr(e.p[1], "vcpu_idle") == 1, 3000));
	ck_assert(TH_WAIT(backend_ctr(q[1], "vcpu_idle") == 1, 3000));
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_UNKNOWN, 1000));
	uint64_t reads = backend_ctr(e.p[0], "vcpu_state_reads");
	uint64_t scans = backend_ctr(e.p[0], "vcpu_scans");
	uint64_t never = backend_ctr(q[0], "vcpu_state_reads");
	usleep(1200 * 1000); /* ~1200 samples and a rescan if it did not pause */
	ck_assert_uint_le(backend_ctr(e.p[0], "vcpu_state_reads"), reads + 5);
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_scans"), scans);
	ck_assert_uint_eq(backend_ctr(e.p[0], "vcpu_idle"), 1);
	/* the port that never pauses went on, running */
	ck_assert_uint_eq(backend_ctr(q[0], "vcpu_idle"), 0);
	ck_assert_uint_gt(backend_ctr(q[0], "vcpu_state_reads"), never + 100);
	ck_assert_int_eq(hs_port_peer_state(q[0], 0), HS_PEER_RUNNING);
	/* a frame from a to b: both ports resume (a rescan fell due: it
	 * comes first), see the guest running, and pause again once quiet */
	uint64_t running = backend_ctr(e.p[0], "peer_running");
	frame_a_to_b(&a, &b, 1);
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "peer_running") > running, 1000));
	ck_assert_uint_gt(backend_ctr(e.p[0], "vcpu_state_reads"), reads);
	ck_assert_uint_gt(backend_ctr(e.p[0], "vcpu_scans"), scans);
	ck_assert(TH_WAIT(backend_ctr(e.p[0], "vcpu_idle") == 2, 3000));
	ck_assert(TH_WAIT(backend_ctr(e.p[1], "vcpu_idle") == 2, 3000));
	ck_assert(TH_WAIT(hs_port_peer_state(e.p[0], 0) == HS_PEER_UNKNOWN, 1000));
	vud_close(&a);
	vud_close(&b);
	vud_close(&c);
	vud_close(&d);
	fake_vcpu_end(&cpu);
	hs_port_del(q[0]);
	hs_port_del(q[1]);
	env_down(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vhost_user");
	TCase *tc = tcase_create("vhost_user");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, negotiates_features_and_connects);
	tcase_add_test(tc, split_ring_traffic);
	tcase_add_test(tc, packed_ring_traffic);
	tcase_add_test(tc, every_feature_combination_carries_traffic);
	tcase_add_test(tc, large_frames_merge_receive_buffers);
	tcase_add_test(tc, frames_larger_than_single_buffers_are_dropped_oversize);
	tcase_add_test(tc, gso_passes_through_or_is_segmented);
	tcase_add_test(tc, offloads_not_negotiated_are_refused);
	tcase_add_test(tc, a_guests_data_valid_is_not_passed_on);
	tcase_add_test(tc, receive_headers_are_whole_in_any_buffer_shape);
	tcase_add_test(tc, vhost_user_and_mem_ports_talk);
	tcase_add_test(tc, guest_gets_interrupts_only_when_it_asks);
	tcase_add_test(tc, receive_rings_ask_for_kicks_only_while_frames_wait);
	tcase_add_test(tc, a_reconnected_guest_is_not_asked_for_kicks);
	tcase_add_test(tc, a_frame_needing_more_than_64_buffers_does_not_block_the_guest);
	tcase_add_test(tc, a_restarted_front_end_gets_traffic_again);
	tcase_add_test(tc, buffers_in_several_regions_are_translated);
	tcase_add_test(tc, memory_slots_are_counted_per_add);
	tcase_add_test(tc, client_mode_reconnects_to_the_vmm);
	tcase_add_test(tc, the_socket_gets_its_mode_and_owner_before_it_listens);
	tcase_add_test(tc, the_guests_mtu_is_honoured);
	tcase_add_test(tc, hostile_rings_stop_only_their_port);
	tcase_add_test(tc, oversized_and_overlong_chains_are_refused_not_fatal);
	tcase_add_test(tc, malformed_messages_get_errors_not_crashes);
	tcase_add_test(tc, a_second_front_end_is_refused);
	tcase_add_test(tc, a_front_end_that_polls_gets_its_frames);
	tcase_add_test(tc, reset_device_keeps_the_connection);
	tcase_add_test(tc, the_peer_state_follows_the_front_ends_vcpu_thread);
	tcase_add_test(tc, vcpu_threads_are_found_after_the_connect_and_lost_when_they_end);
	tcase_add_test(tc, no_peer_state_without_vcpu_threads_or_with_the_flag);
	tcase_add_test(tc, vcpu_sampling_pauses_while_the_port_is_quiet);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
