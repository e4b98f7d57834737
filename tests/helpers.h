/*
 * helpers.h - shared test helpers: frame building, mem ports, a settable
 * clock, bounded waiting. Header-only so every test binary stays
 * self-contained.
 */
#ifndef HS_TEST_HELPERS_H
#define HS_TEST_HELPERS_H

#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hyperswitch/hyperswitch.h>

/* ---- clock ------------------------------------------------------------------ */

static _Atomic uint64_t th_now_ns = 1000000000ull;

static inline uint64_t th_clock(void *opaque)
{
	(void)opaque;
	return atomic_load(&th_now_ns);
}

static inline void th_advance_s(unsigned s)
{
	atomic_fetch_add(&th_now_ns, (uint64_t)s * 1000000000ull);
}

static inline uint64_t th_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for a condition with a bounded timeout (never a bare sleep). */
#define TH_WAIT(cond, ms)                                                   \
	({                                                                  \
		uint64_t th_dl_ = th_mono_ms() + (ms);                      \
		bool th_ok_;                                                \
		while (!(th_ok_ = (cond)) && th_mono_ms() < th_dl_)         \
			sched_yield();                                      \
		th_ok_;                                                     \
	})

/* ---- logging ------------------------------------------------------------------ */

static inline void th_log(void *opaque, enum hs_log_level lvl, const char *msg)
{
	(void)opaque;
	if (lvl <= HS_LOG_WARN || getenv("HS_TEST_VERBOSE"))
		fprintf(stderr, "[hs %d] %s\n", lvl, msg);
}

/* ---- frames -------------------------------------------------------------------- */

static inline void th_mac(uint8_t m[6], unsigned id)
{
	m[0] = 0x02;
	m[1] = 0x00;
	m[2] = (uint8_t)(id >> 24);
	m[3] = (uint8_t)(id >> 16);
	m[4] = (uint8_t)(id >> 8);
	m[5] = (uint8_t)id;
}

static const uint8_t th_bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* Builds an Ethernet frame of `len` bytes: dst, src, optional 802.1Q tag
 * (vlan >= 0, with pcp), ethertype 0x88b5 and a payload whose first 4
 * bytes carry `seq` and the rest a pattern derived from it. */
static inline size_t th_frame(uint8_t *buf, const uint8_t dst[6],
			      const uint8_t src[6], int vlan, size_t len,
			      uint32_t seq)
{
	size_t o = 0;
	memcpy(buf, dst, 6);
	memcpy(buf + 6, src, 6);
	o = 12;
	if (vlan >= 0) {
		buf[o++] = 0x81;
		buf[o++] = 0x00;
		buf[o++] = (uint8_t)(vlan >> 8);
		buf[o++] = (uint8_t)vlan;
	}
	buf[o++] = 0x88;
	buf[o++] = 0xb5;
	for (size_t i = o; i < len; i++)
		buf[i] = (uint8_t)(seq * 7 + i);
	if (len >= o + 4)
		memcpy(buf + o, &seq, 4);
	return len;
}

/* ---- switches and ports ------------------------------------------------------------ */

static inline hs_switch_t *th_switch(struct hs_switch_config *cfg)
{
	struct hs_switch_config c = {0};
	if (cfg)
		c = *cfg;
	if (!c.log_fn)
		c.log_fn = th_log;
	c.log_level = HS_LOG_DEBUG;
	if (!c.clock_fn)
		c.clock_fn = th_clock;
	hs_switch_t *sw = NULL;
	ck_assert_int_eq(hs_switch_create(&c, &sw), 0);
	return sw;
}

struct th_port_opts {
	const char *name;
	enum hs_vlan_mode mode;
	uint16_t vlan;
	const uint16_t *trunks;
	uint16_t n_trunks;
	uint32_t mac_limit;
	uint32_t ring;
	uint32_t buf;
	uint32_t caps;
	uint32_t mem_flags;
	uint32_t port_flags;
	uint16_t queues;
};

static inline hs_port_t *th_port_opts(hs_switch_t *sw, const struct th_port_opts *o)
{
	struct hs_mem_config mc = {.ring_size = o->ring, .buf_size = o->buf,
				   .caps = o->caps, .flags = o->mem_flags,
				   .n_queues = o->queues};
	struct hs_port_config pc = {
		.name = o->name, .backend = HS_MEM_BACKEND, .backend_config = &mc,
		.backend_config_size = sizeof(mc), .vlan_mode = o->mode,
		.vlan = o->vlan, .trunks = o->trunks, .n_trunks = o->n_trunks,
		.mac_limit = o->mac_limit, .flags = o->port_flags};
	hs_port_t *p = NULL;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	return p;
}

static inline hs_port_t *th_port(hs_switch_t *sw, const char *name, uint16_t vlan)
{
	struct th_port_opts o = {.name = name, .vlan = vlan};
	return th_port_opts(sw, &o);
}

/* Sends one frame and waits until the switch completed it. */
static inline int th_send_off(hs_port_t *p, const void *frame, size_t len,
			      const struct hs_offload *off)
{
	struct hs_mem_frame f = {.data = (void *)frame, .len = (uint32_t)len,
				 .cookie = 42};
	if (off)
		f.off = *off;
	int n = hs_mem_tx_burst(p, 0, &f, 1);
	if (n != 1)
		return n < 0 ? n : -EAGAIN;
	uint64_t cookie;
	if (!TH_WAIT(hs_mem_tx_reap(p, 0, &cookie, 1) == 1, 5000))
		return -ETIMEDOUT;
	return 0;
}

static inline int th_send(hs_port_t *p, const void *frame, size_t len)
{
	return th_send_off(p, frame, len, NULL);
}

/* Counter `name` of a port's backend (UINT64_MAX if it has none). */
struct env_ctr {
	const char *name;
	uint64_t v;
};

static inline void env_ctr_cb(void *arg, const char *name, uint64_t v)
{
	struct env_ctr *c = arg;
	if (!strcmp(name, c->name))
		c->v = v;
}

static inline uint64_t backend_ctr(hs_port_t *p, const char *name)
{
	struct env_ctr c = {.name = name, .v = UINT64_MAX};
	hs_port_backend_counters(p, env_ctr_cb, &c);
	return c.v;
}

/* Number of frames waiting on a port (not consumed). */
static inline int th_pending(hs_port_t *p)
{
	struct hs_mem_frame f[256];
	return hs_mem_rx_burst(p, 0, f, 256);
}

/* Receives and discards everything; returns how many. */
static inline int th_drain(hs_port_t *p)
{
	int total = 0, n;
	struct hs_mem_frame f[64];
	while ((n = hs_mem_rx_burst(p, 0, f, 64)) > 0) {
		hs_mem_rx_release(p, 0, (unsigned)n);
		total += n;
	}
	return total;
}

static inline struct hs_port_stats th_pstats(hs_port_t *p)
{
	struct hs_port_stats st;
	ck_assert_int_eq(hs_port_get_stats(p, &st), 0);
	return st;
}

static inline struct hs_switch_stats th_sstats(hs_switch_t *sw)
{
	struct hs_switch_stats st;
	ck_assert_int_eq(hs_switch_get_stats(sw, &st), 0);
	return st;
}

/* Frames dropped on a port, all reasons together. */
static inline uint64_t th_all_drops(const struct hs_port_stats *st)
{
	uint64_t d = 0;
	for (unsigned r = 0; r < HS_DROP__COUNT; r++)
		d += st->drops[r];
	return d;
}

/* A thread that reads and releases everything arriving on queue 0 of a
 * mem port until `stop`, counting the frames in `got`. Keep it static in
 * a test: a failed check under CK_FORK=no leaves the thread running. */
struct th_reader {
	hs_port_t *port;
	_Atomic bool stop;
	_Atomic uint64_t got;
};

static inline void *th_reader_main(void *arg)
{
	struct th_reader *r = arg;
	struct hs_mem_frame f[64];
	while (!atomic_load(&r->stop)) {
		int n = hs_mem_rx_burst(r->port, 0, f, 64);
		if (n > 0) {
			hs_mem_rx_release(r->port, 0, (unsigned)n);
			atomic_fetch_add(&r->got, (uint64_t)n);
		} else {
			sched_yield(); /* valgrind runs one thread at a time */
		}
	}
	return NULL;
}

/* Runs a suite and returns the process exit status. */
static inline int th_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif /* HS_TEST_HELPERS_H */
