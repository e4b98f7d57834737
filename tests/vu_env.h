/*
 * vu_env.h - a switch with two vhost-user ports (server mode) and its loop
 * thread, for the vhost-user test programs. HS_TEST_WORKERS=N in the
 * environment runs the switch with N polling workers (the suite runs once
 * without and once with them: a worker owns a queue and suppresses its
 * kicks, which is a different life for every ring).
 */
#ifndef HS_VU_ENV_H
#define HS_VU_ENV_H

#include <pthread.h>
#include <stdio.h>

#include "helpers.h"
#include "vu_driver.h"

struct env {
	hs_switch_t *sw;
	pthread_t loop;
	char path[2][108];
	hs_port_t *p[2];
};

static void *env_loop_main(void *arg)
{
	hs_run(arg);
	return NULL;
}

static inline unsigned env_workers(void)
{
	const char *w = getenv("HS_TEST_WORKERS");
	return w ? (unsigned)atoi(w) : 0;
}

/* The ports' vcpu_idle_ms (0: the default); a test that watches the vCPU
 * sampler on a port without traffic sets HS_VU_VCPU_IDLE_NEVER. */
static uint32_t vu_env_vcpu_idle_ms;

static inline hs_port_t *vu_port(hs_switch_t *sw, const char *name, const char *path,
				 uint32_t flags, uint16_t qp, uint64_t off)
{
	struct hs_vhost_user_config vc = {.path = path, .flags = flags, .queue_pairs = qp,
					  .features_off = off, .mtu = 9000,
					  .vcpu_idle_ms = vu_env_vcpu_idle_ms};
	struct hs_port_config pc = {.name = name, .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc),
				    .mtu = 9000};
	hs_port_t *p = NULL;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	return p;
}

/* A switch (with `cfg`, or the environment's worker count) and two ports. */
static inline void env_up_cfg(struct env *e, uint64_t off, const struct hs_switch_config *cfg)
{
	memset(e, 0, sizeof(*e));
	struct hs_switch_config c = {.n_workers = env_workers()};
	if (cfg)
		c = *cfg;
	e->sw = th_switch(&c);
	for (int i = 0; i < 2; i++) {
		snprintf(e->path[i], sizeof(e->path[i]), "/tmp/hs-vu-test-%d-%d.sock",
			 (int)getpid(), i);
		e->p[i] = vu_port(e->sw, i ? "vb" : "va", e->path[i], 0, 1, off);
	}
	pthread_create(&e->loop, NULL, env_loop_main, e->sw);
}

static inline void env_up(struct env *e, uint64_t off)
{
	env_up_cfg(e, off, NULL);
}

static inline void env_down(struct env *e)
{
	hs_stop(e->sw);
	pthread_join(e->loop, NULL);
	hs_switch_destroy(e->sw);
	for (int i = 0; i < 2; i++)
		ck_assert_int_ne(access(e->path[i], F_OK), 0); /* socket removed */
}

static inline void guest_up(struct vud *v, const char *path, uint64_t want, hs_port_t *p)
{
	ck_assert_int_eq(vud_connect(v, path), 0);
	ck_assert_int_eq(vud_start(v, want, 1), 0);
	ck_assert_int_eq(vud_post_rx(v, 0, 128, VUD_BUF), 0);
	ck_assert(TH_WAIT(hs_port_link_up(p), 3000));
}

static inline size_t mkframe(uint8_t *f, unsigned dst, unsigned src, size_t len,
			     uint32_t seq)
{
	uint8_t d[6], s[6];
	th_mac(d, dst);
	th_mac(s, src);
	return th_frame(f, dst ? d : th_bcast, s, -1, len, seq);
}

/* Waits for one frame on v's queue 0. */
static inline int recv_wait(struct vud *v, uint8_t *buf, uint32_t max,
			    struct vud_net_hdr *h)
{
	int n = 0;
	TH_WAIT((n = vud_recv(v, 0, buf, max, h)) != 0, 3000);
	return n;
}

/* A frame (sequence seq) from guest 1 on a to guest 2 on b, in one
 * descriptor: it must arrive whole. */
static inline void frame_a_to_b(struct vud *a, struct vud *b, uint32_t seq)
{
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 2, 1, 100, seq);
	ck_assert_int_eq(vud_send(a, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(b, g, sizeof(g), NULL), (int)n);
	ck_assert_int_eq(memcmp(g, f, n), 0);
}

/* A VMM's listening socket for client ports: path[108] gets
 * /tmp/hs-TAG-PID.sock, *sa its address (for connections of the test's
 * own); returns the listening fd. */
static inline int vmm_listen(char *path, const char *tag, int backlog,
			     struct sockaddr_un *sa)
{
	snprintf(path, 108, "/tmp/hs-%s-%d.sock", tag, (int)getpid());
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	ck_assert_int_eq(listen(fd, backlog), 0);
	return fd;
}

/* Guests a (guest 1, on port 0) and b (guest 2, on port 1) up with
 * features `want`; b announces itself (a broadcast a receives), so that
 * the switch knows where guest 2 is. */
static inline void guests_up(struct env *e, struct vud *a, struct vud *b, uint64_t want)
{
	static uint8_t f[200], g[200];
	guest_up(a, e->path[0], want, e->p[0]);
	guest_up(b, e->path[1], want, e->p[1]);
	size_t n = mkframe(f, 0, 2, 64, 0);
	ck_assert_int_eq(vud_send(b, 0, f, (uint32_t)n, NULL, 1), 0);
	ck_assert_int_eq(recv_wait(a, g, sizeof(g), NULL), (int)n);
}

/* After port 0's front-end misbehaved: mem port m1's broadcast still
 * reaches m2, and once the front-end is replaced (a new connection,
 * features `want`) port 0 carries m1's frames again. Closes *a. */
static inline void others_keep_switching_then_port_recovers(struct env *e, struct vud *a,
							    hs_port_t *m1, hs_port_t *m2,
							    uint64_t want)
{
	static uint8_t f[200], g[200];
	size_t n = mkframe(f, 0, 9, 100, 1);
	th_drain(m2);
	ck_assert_int_eq(th_send(m1, f, n), 0);
	ck_assert(TH_WAIT(th_drain(m2) == 1, 3000));
	vud_close(a);
	struct vud a2;
	guest_up(&a2, e->path[0], want, e->p[0]);
	n = mkframe(f, 0, 9, 100, 2);
	ck_assert_int_eq(th_send(m1, f, n), 0);
	ck_assert_int_eq(recv_wait(&a2, g, sizeof(g), NULL), (int)n);
	vud_close(&a2);
}

/* A TCP/IPv4 frame from guest 1 to guest 2 with `payload` bytes and the
 * virtio-net header that asks for TSO (MSS 1448) and checksum offload. */
static inline uint32_t tcp_frame(uint8_t *f, uint32_t payload, struct vud_net_hdr *h)
{
	uint8_t d[6], s[6];
	th_mac(d, 2);
	th_mac(s, 1);
	memcpy(f, d, 6);
	memcpy(f + 6, s, 6);
	f[12] = 0x08, f[13] = 0x00;
	uint8_t *ip = f + 14, *tcp = ip + 20;
	memset(ip, 0, 40);
	uint32_t len = 14 + 20 + 20 + payload;
	ip[0] = 0x45;
	ip[2] = (uint8_t)((len - 14) >> 8), ip[3] = (uint8_t)(len - 14);
	ip[8] = 64, ip[9] = 6;
	ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
	tcp[12] = 0x50, tcp[13] = 0x10;
	for (uint32_t i = 0; i < payload; i++)
		f[54 + i] = (uint8_t)i;
	*h = (struct vud_net_hdr){.flags = 1, .gso_type = 1, .hdr_len = 54,
				  .gso_size = 1448, .csum_start = 34, .csum_offset = 16};
	return len;
}

#endif /* HS_VU_ENV_H */
