/*
 * test_api.c - every public call with bad arguments returns a clear error
 * (negative errno) and leaves the switch usable; version and error
 * strings; backend registration rules; config validation.
 */
#include <uv.h>

#include "helpers.h"

START_TEST(version_is_consistent)
{
	ck_assert_uint_eq(hs_version(), HS_VERSION_HEX);
	ck_assert_str_eq(hs_version_string(), HS_VERSION_STRING);
	ck_assert_uint_eq(HS_VERSION_HEX >> 16, HS_VERSION_MAJOR);
}
END_TEST

START_TEST(error_strings_are_readable)
{
	ck_assert_str_eq(hs_strerror(0), "success");
	ck_assert_ptr_nonnull(strstr(hs_strerror(-EINVAL), "nvalid"));
	ck_assert_ptr_nonnull(hs_strerror(1));
	ck_assert_str_eq(hs_drop_reason_name(HS_DROP_NO_BUFFER), "rx_no_buffer");
	ck_assert_str_eq(hs_drop_reason_name(HS_DROP__COUNT), "unknown");
	for (int r = 0; r < HS_DROP__COUNT; r++)
		ck_assert_str_ne(hs_drop_reason_name(r), "unknown");
}
END_TEST

START_TEST(switch_create_rejects_bad_config)
{
	hs_switch_t *sw = NULL;
	ck_assert_int_eq(hs_switch_create(NULL, NULL), -EINVAL);
	struct hs_switch_config c = {.burst = 65};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	c = (struct hs_switch_config){.max_ports = 70000};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	c = (struct hs_switch_config){.flags = 0x8000};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	c = (struct hs_switch_config){.flags = HS_SW_NO_POLL | HS_SW_BUSY_POLL};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	c = (struct hs_switch_config){.log_level = 9};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	c = (struct hs_switch_config){.fdb_capacity = 1u << 30};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	int cpus[1] = {-1};
	c = (struct hs_switch_config){.n_workers = 1, .worker_cpus = cpus};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	c = (struct hs_switch_config){.name = "a-name-that-is-far-too-long-to-fit-the-buffer"};
	ck_assert_int_eq(hs_switch_create(&c, &sw), -EINVAL);
	ck_assert_ptr_null(sw);
	/* NULL config means defaults. */
	ck_assert_int_eq(hs_switch_create(NULL, &sw), 0);
	ck_assert_str_eq(hs_switch_name(sw), "hs0");
	hs_switch_destroy(sw);
	hs_switch_destroy(NULL);
}
END_TEST

START_TEST(getters_tolerate_null)
{
	ck_assert_ptr_null(hs_switch_data(NULL));
	ck_assert_ptr_null(hs_switch_name(NULL));
	ck_assert_ptr_null(hs_port_name(NULL));
	ck_assert_ptr_null(hs_port_switch(NULL));
	ck_assert_ptr_null(hs_port_data(NULL));
	ck_assert_uint_eq(hs_port_n_queues(NULL), 0);
	ck_assert_uint_eq(hs_port_caps(NULL), 0);
	ck_assert(!hs_port_link_up(NULL));
	hs_port_set_data(NULL, NULL);
	hs_switch_set_data(NULL, NULL);
	ck_assert_int_eq(hs_switch_get_stats_sized(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_port_get_stats_sized(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_run(NULL), -EINVAL);
	ck_assert_int_eq(hs_stop(NULL), -EINVAL);
	ck_assert_int_eq(hs_switch_attach(NULL, NULL), -EINVAL);
	ck_assert_int_eq(hs_switch_detach(NULL), -EINVAL);
	ck_assert_int_eq(hs_switch_fd(NULL), -EINVAL);
	ck_assert_int_eq(hs_switch_dispatch(NULL), -EINVAL);
	ck_assert_int_eq(hs_port_kick(NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_port_del(NULL), -EINVAL);
	ck_assert_int_eq(hs_port_set_peer_state(NULL, 0, HS_PEER_RUNNING), -EINVAL);
	ck_assert_int_eq(hs_port_peer_state(NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_port_set_caps(NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_port_set_link(NULL, true), -EINVAL);
	ck_assert_int_eq(hs_port_set_queue_fd(NULL, 0, HS_EV_KICK, -1), -EINVAL);
	ck_assert_int_eq(hs_port_quiesce(NULL), -EINVAL);
	ck_assert_int_eq(hs_port_resume(NULL), -EINVAL);
	hs_port_posted(NULL, 0);
	hs_port_count_drop(NULL, 0, HS_DROP_RUNT, 1);
	hs_port_log(NULL, HS_LOG_ERROR, "nothing");
	ck_assert_int_eq(hs_fdb_age(NULL), -EINVAL);
	ck_assert_int_eq(hs_fdb_flush(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_fdb_dump(NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(hs_mem_tx_burst(NULL, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_mem_tx_reap(NULL, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_mem_rx_burst(NULL, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_mem_rx_release(NULL, 0, 0), -EINVAL);
	ck_assert_int_eq(hs_mem_recv(NULL, 0, NULL, 0, NULL), -EINVAL);
	ck_assert_int_eq(hs_mem_rx_fd(NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_mem_rx_arm(NULL, 0), -EINVAL);
	ck_assert_int_eq(hs_watch_add(NULL, 0, HS_WATCH_READ, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(hs_timer_add(NULL, 0, 0, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(hs_watch_modify(NULL, HS_WATCH_READ), -EINVAL);
	ck_assert_int_eq(hs_timer_modify(NULL, 1, 1), -EINVAL);
	hs_watch_del(NULL);
	hs_timer_del(NULL);
}
END_TEST

START_TEST(port_add_rejects_bad_config)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *p = NULL;
	struct hs_port_config c = {.name = ""};
	ck_assert_int_eq(hs_port_add(NULL, &c, &p), -EINVAL);
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.name = "0123456789012345678901234567890123"};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.vlan = 4095};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.vlan_mode = 7};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	uint16_t bad[] = {10, 0};
	c = (struct hs_port_config){.vlan_mode = HS_VLAN_TRUNK, .trunks = bad,
				    .n_trunks = 2};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.vlan_mode = HS_VLAN_TRUNK, .n_trunks = 2};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.trunks = bad, .n_trunks = 1}; /* access */
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.mtu = 20};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.flags = 0x100};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c = (struct hs_port_config){.backend = "no-such-backend"};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -ENOENT);
	struct hs_mem_config mc = {.ring_size = 100};
	c = (struct hs_port_config){.backend_config = &mc,
				    .backend_config_size = sizeof(mc)};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	c.backend_config_size = sizeof(mc) - 1;
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	mc = (struct hs_mem_config){.buf_size = 10};
	c.backend_config_size = sizeof(mc);
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	mc = (struct hs_mem_config){.n_queues = 65};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), -EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(th_sstats(sw).n_ports, 0);

	/* Names are unique; NULL config means a default mem port. */
	c = (struct hs_port_config){.name = "x"};
	ck_assert_int_eq(hs_port_add(sw, &c, &p), 0);
	ck_assert_int_eq(hs_port_add(sw, &c, NULL), -EEXIST);
	hs_port_t *q = NULL;
	ck_assert_int_eq(hs_port_add(sw, NULL, &q), 0);
	ck_assert_str_eq(hs_port_name(q), "port1"); /* index 1: "x" has 0 */
	hs_port_t *f = NULL;
	ck_assert_int_eq(hs_port_find(sw, "x", &f), 0);
	ck_assert_ptr_eq(f, p);
	ck_assert_int_eq(hs_port_find(sw, "nope", &f), -ENOENT);
	ck_assert_int_eq(hs_port_find(sw, NULL, &f), -EINVAL);
	ck_assert_ptr_eq(hs_port_switch(p), sw);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(port_table_full_is_enospc)
{
	struct hs_switch_config cfg = {.max_ports = 3};
	hs_switch_t *sw = th_switch(&cfg);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(hs_port_add(sw, NULL, NULL), 0);
	ck_assert_int_eq(hs_port_add(sw, NULL, NULL), -ENOSPC);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(port_calls_reject_bad_queues_and_values)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *p = th_port(sw, "p", 0);
	ck_assert_int_eq(hs_port_kick(p, 1), -EINVAL);
	ck_assert_int_eq(hs_port_set_peer_state(p, 1, HS_PEER_RUNNING), -EINVAL);
	ck_assert_int_eq(hs_port_peer_state(p, 1), -EINVAL);
	ck_assert_int_eq(hs_port_peer_state(p, 0), HS_PEER_UNKNOWN);
	ck_assert_int_eq(hs_port_set_peer_state(p, 0, HS_PEER_RUNNING), 0);
	ck_assert_int_eq(hs_port_peer_state(p, 0), HS_PEER_RUNNING);
	ck_assert_int_eq(hs_port_set_peer_state(p, 0, HS_PEER_UNKNOWN), 0);
	ck_assert_int_eq(hs_port_set_caps(p, 0x1000), -EINVAL);
	ck_assert_int_eq(hs_port_set_queue_fd(p, 0, HS_EV_DELIVERED, -1), -EINVAL);
	ck_assert_int_eq(hs_port_set_queue_fd(p, 3, HS_EV_KICK, -1), -EINVAL);
	ck_assert_int_eq(hs_port_set_queue_fd(p, 0, HS_EV_KICK, -5), -EINVAL);
	ck_assert_int_eq(hs_mem_rx_release(p, 0, 1), -EINVAL); /* nothing held */
	ck_assert_int_eq(hs_mem_recv(p, 0, NULL, 0, NULL), -EAGAIN);
	ck_assert_int_eq(hs_mem_rx_fd(p, 2), -EINVAL);
	ck_assert_int_eq(hs_fdb_flush(sw, p, 0x10), -EINVAL);
	uint8_t m[6];
	th_mac(m, 1);
	ck_assert_int_eq(hs_fdb_add_static(sw, 0, m, p), -EINVAL);
	ck_assert_int_eq(hs_fdb_add_static(sw, 4095, m, p), -EINVAL);
	ck_assert_int_eq(hs_fdb_add_static(sw, 1, NULL, p), -EINVAL);
	ck_assert_int_eq(hs_fdb_add_static(sw, 1, m, NULL), -EINVAL);
	ck_assert_int_eq(hs_fdb_lookup(sw, 0, m, NULL), -EINVAL);
	ck_assert_int_eq(hs_fdb_del(sw, 5000, m), -EINVAL);

	/* A port of another switch is refused. */
	hs_switch_t *other = th_switch(NULL);
	hs_port_t *op = th_port(other, "o", 0);
	ck_assert_int_eq(hs_fdb_add_static(sw, 1, m, op), -EINVAL);
	ck_assert_int_eq(hs_fdb_flush(sw, op, 0), -EINVAL);
	hs_switch_destroy(other);

	/* Still fully working after all of that. */
	hs_port_t *b = th_port(sw, "b", 0);
	uint8_t f[64];
	th_send(p, f, th_frame(f, th_bcast, m, -1, 64, 1));
	ck_assert_int_eq(th_drain(b), 1);
	hs_switch_destroy(sw);
}
END_TEST

/* The smallest valid backend: a port that never sends or accepts. */
static int t_open(hs_port_t *port, const void *cfg, size_t size, void **priv,
		  struct hs_port_info *info)
{
	(void)cfg, (void)size;
	*priv = port;
	info->n_queues = 1;
	return 0;
}
static void t_close(void *priv) { (void)priv; }
static unsigned t_recv(void *priv, uint16_t q, struct hs_pkt *p, unsigned n)
{
	(void)priv, (void)q, (void)p, (void)n;
	return 0;
}
static unsigned t_done(void *priv, uint16_t q, const struct hs_pkt *p, unsigned n)
{
	(void)priv, (void)q, (void)p, (void)n;
	return 0;
}
static unsigned t_reserve(void *priv, uint16_t q, const struct hs_out *o,
			  unsigned n, struct hs_iobuf *b)
{
	(void)priv, (void)q, (void)o, (void)n, (void)b;
	return 0;
}
static unsigned t_commit(void *priv, uint16_t q, const struct hs_out *o, unsigned n)
{
	(void)priv, (void)q, (void)o, (void)n;
	return 0;
}
static void t_notify(void *priv, uint16_t q, unsigned ev) { (void)priv, (void)q, (void)ev; }

static struct hs_backend_ops test_ops_template(void)
{
	return (struct hs_backend_ops){
		.name = "apitest", .abi = HS_BACKEND_ABI, .open = t_open,
		.close = t_close, .recv_burst = t_recv, .recv_done = t_done,
		.send_reserve = t_reserve, .send_commit = t_commit,
		.notify = t_notify};
}

START_TEST(backend_registration_rules)
{
	static struct hs_backend_ops ops;
	ops = test_ops_template();
	ck_assert_int_eq(hs_backend_register(NULL), -EINVAL);
	struct hs_backend_ops bad = ops;
	bad.abi = 999;
	ck_assert_int_eq(hs_backend_register(&bad), -EINVAL);
	bad = ops;
	bad.recv_burst = NULL;
	ck_assert_int_eq(hs_backend_register(&bad), -EINVAL);
	bad = ops;
	bad.name = "";
	ck_assert_int_eq(hs_backend_register(&bad), -EINVAL);
	bad = ops;
	bad.name = HS_MEM_BACKEND;
	ck_assert_int_eq(hs_backend_register(&bad), -EEXIST);
	ck_assert_int_eq(hs_backend_register(&ops), 0);
	ck_assert_int_eq(hs_backend_register(&ops), -EEXIST);

	/* A backend cannot go while a port uses it. */
	hs_switch_t *sw = th_switch(NULL);
	struct hs_port_config pc = {.backend = ops.name};
	hs_port_t *p;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	ck_assert_int_eq(hs_backend_unregister(ops.name), -EBUSY);
	hs_port_del(p);
	ck_assert_int_eq(hs_backend_unregister(ops.name), 0);
	ck_assert_int_eq(hs_backend_unregister(ops.name), -ENOENT);
	ck_assert_int_eq(hs_backend_unregister(NULL), -EINVAL);
	hs_switch_destroy(sw);
}
END_TEST

START_TEST(run_and_attach_exclude_each_other)
{
	hs_switch_t *sw = th_switch(NULL);
	uv_loop_t loop;
	uv_loop_init(&loop);
	ck_assert_int_eq(hs_switch_detach(sw), -ENOTCONN);
	ck_assert_int_eq(hs_switch_attach(sw, &loop), 0);
	ck_assert_int_eq(hs_switch_attach(sw, &loop), -EBUSY);
	ck_assert_int_eq(hs_run(sw), -EBUSY);
	ck_assert_int_eq(hs_switch_fd(sw), -EBUSY);
	ck_assert_int_eq(hs_switch_detach(sw), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	hs_switch_destroy(sw);
}
END_TEST

/* Caller structs that grow: size 0 is the first layout, smaller than it
 * is refused, bigger is accepted with a zero tail (a newer caller that
 * asked for nothing new) and refused with E2BIG otherwise. */
START_TEST(config_structs_carry_their_size)
{
	struct {
		struct hs_switch_config c;
		uint64_t newer;
	} big = {.c = {.size = sizeof(big)}};
	hs_switch_t *sw;
	ck_assert_int_eq(hs_switch_create(&big.c, &sw), 0);
	hs_switch_destroy(sw);
	big.newer = 1;
	ck_assert_int_eq(hs_switch_create(&big.c, &sw), -E2BIG);
	struct hs_switch_config small = {.size = HS_SWITCH_CONFIG_SIZE_V1 - 1};
	ck_assert_int_eq(hs_switch_create(&small, &sw), -EINVAL);
	small.size = 0; /* the first layout */
	ck_assert_int_eq(hs_switch_create(&small, &sw), 0);

	struct {
		struct hs_port_config c;
		uint64_t newer;
	} pbig = {.c = {.size = sizeof(pbig), .name = "p"}};
	hs_port_t *p;
	ck_assert_int_eq(hs_port_add(sw, &pbig.c, &p), 0);
	pbig.newer = 7;
	pbig.c.name = "q";
	ck_assert_int_eq(hs_port_add(sw, &pbig.c, &p), -E2BIG);
	struct hs_port_config ps = {.size = 8, .name = "r"};
	ck_assert_int_eq(hs_port_add(sw, &ps, &p), -EINVAL);

	/* a backend config: an older (shorter) one is refused below V1,
	 * a newer one with an unknown non-zero field too */
	struct {
		struct hs_mem_config m;
		uint32_t newer;
	} mbig = {.m = {.ring_size = 64}};
	struct hs_port_config pc = {.name = "m", .backend = HS_MEM_BACKEND,
				    .backend_config = &mbig, .backend_config_size = sizeof(mbig)};
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), 0);
	mbig.newer = 1;
	pc.name = "m2";
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), -E2BIG);
	pc.backend_config_size = HS_MEM_CONFIG_SIZE_V1 - 1;
	ck_assert_int_eq(hs_port_add(sw, &pc, &p), -EINVAL);
	hs_switch_destroy(sw);

	/* the copy itself: zero-extends what the caller did not have */
	uint8_t out[8], in[4] = {1, 2, 3, 4};
	memset(out, 0xaa, sizeof(out));
	ck_assert_int_eq(hs_config_copy(out, sizeof(out), in, sizeof(in), 2), 0);
	ck_assert_uint_eq(out[3], 4);
	ck_assert_uint_eq(out[4], 0);
	ck_assert_int_eq(hs_config_copy(out, sizeof(out), in, 1, 2), -EINVAL);
	ck_assert_int_eq(hs_config_copy(NULL, sizeof(out), in, 4, 2), -EINVAL);
}
END_TEST

static int n_logged;

static void count_log(void *opaque, enum hs_log_level level, const char *msg)
{
	(void)opaque;
	(void)level;
	(void)msg;
	n_logged++;
}

/* The level changes at once; bad levels are refused. */
START_TEST(log_level_changes_at_run_time)
{
	struct hs_switch_config c = {.log_fn = count_log, .log_level = HS_LOG_ERROR};
	hs_switch_t *sw = th_switch(&c);
	hs_port_t *p;
	ck_assert_int_eq(hs_switch_set_log_level(sw, HS_LOG_ERROR), 0);
	n_logged = 0;
	ck_assert_int_eq(hs_port_add(sw, &(struct hs_port_config){.name = "p0"}, &p), 0);
	ck_assert_int_eq(n_logged, 0); /* "added" is info */
	ck_assert_int_eq(hs_switch_set_log_level(sw, HS_LOG_DEBUG), 0);
	hs_port_log(p, HS_LOG_DEBUG, "now heard");
	ck_assert_int_eq(n_logged, 1);
	ck_assert_int_eq(hs_switch_set_log_level(sw, (enum hs_log_level)4), -EINVAL);
	ck_assert_int_eq(hs_switch_set_log_level(NULL, HS_LOG_INFO), -EINVAL);
	ck_assert_int_eq(hs_switch_set_log_level(sw, HS_LOG_WARN), 0);
	hs_port_log(p, HS_LOG_INFO, "not heard");
	ck_assert_int_eq(n_logged, 1);
	hs_switch_destroy(sw);
}
END_TEST

/* Per-worker counters: numbered workers, sizes checked, an older (smaller)
 * caller struct filled only as far as it goes. */
START_TEST(worker_stats_by_index_and_size)
{
	int cpus[2] = {1, 0};
	struct hs_switch_config c = {.n_workers = 2, .worker_cpus = cpus};
	hs_switch_t *sw = th_switch(&c);
	struct hs_worker_stats ws = {.size = sizeof(ws)};
	ck_assert_int_eq(hs_switch_worker_stats(sw, 0, &ws), 0);
	ck_assert_int_eq(ws.size, sizeof(ws));
	ck_assert_int_eq(ws.cpu, 1);
	ws.size = sizeof(ws);
	ck_assert_int_eq(hs_switch_worker_stats(sw, 1, &ws), 0);
	ck_assert_int_eq(ws.cpu, 0);
	ws.size = sizeof(ws);
	ck_assert_int_eq(hs_switch_worker_stats(sw, 2, &ws), -ENOENT);
	ws.size = 8;
	ck_assert_int_eq(hs_switch_worker_stats(sw, 0, &ws), -EINVAL);
	ck_assert_int_eq(hs_switch_worker_stats(NULL, 0, &ws), -EINVAL);
	/* a caller whose struct is bigger than ours (a newer header): we
	 * fill ours and say so */
	struct {
		struct hs_worker_stats s;
		uint64_t future;
	} big = {.s = {.size = sizeof(big)}, .future = 0x1234};
	ck_assert_int_eq(hs_switch_worker_stats(sw, 0, &big.s), 0);
	ck_assert_int_eq(big.s.size, sizeof(struct hs_worker_stats));
	ck_assert_uint_eq(big.future, 0x1234);
	hs_switch_destroy(sw);
	hs_switch_t *none = th_switch(NULL);
	ws.size = sizeof(ws);
	ck_assert_int_eq(hs_switch_worker_stats(none, 0, &ws), -ENOENT);
	hs_switch_destroy(none);
	struct hs_switch_config c1 = {.n_workers = 1};
	hs_switch_t *free_cpu = th_switch(&c1);
	ws.size = sizeof(ws);
	ck_assert_int_eq(hs_switch_worker_stats(free_cpu, 0, &ws), 0);
	ck_assert_int_eq(ws.cpu, -1);
	hs_switch_destroy(free_cpu);
}
END_TEST

/* A caller built against the first layout of struct hs_port_stats gets
 * that much filled and nothing written past it; a larger caller gets the
 * tail zeroed; a smaller one is refused. */
START_TEST(port_stats_fill_what_the_caller_has)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t f[64], m[6];
	th_mac(m, 1);
	th_send(a, f, th_frame(f, th_bcast, m, -1, 64, 0));
	uint8_t buf[sizeof(struct hs_port_stats) + 64];
	memset(buf, 0xa5, sizeof(buf));
	ck_assert_int_eq(hs_port_get_stats_sized(a, (struct hs_port_stats *)(void *)buf,
						 HS_PORT_STATS_SIZE_V1), 0);
	struct hs_port_stats st;
	memcpy(&st, buf, HS_PORT_STATS_SIZE_V1);
	ck_assert_uint_eq(st.rx_packets, 1);
	for (size_t i = HS_PORT_STATS_SIZE_V1; i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0xa5);
	memset(buf, 0xa5, sizeof(buf));
	ck_assert_int_eq(hs_port_get_stats_sized(a, (struct hs_port_stats *)(void *)buf,
						 sizeof(buf)), 0);
	memcpy(&st, buf, sizeof(st));
	ck_assert_uint_eq(st.rx_packets, 1);
	ck_assert_uint_eq(st.tx_lock_sleeps, 0);
	for (size_t i = sizeof(st); i < sizeof(buf); i++)
		ck_assert_uint_eq(buf[i], 0);
	ck_assert_int_eq(hs_port_get_stats_sized(a, &st, HS_PORT_STATS_SIZE_V1 - 8), -EINVAL);
	(void)b;
	hs_switch_destroy(sw);
}
END_TEST

/* The switch's totals count every port it has had: a port deleted
 * leaves what it received, sent and dropped in them (an operator reads
 * them as counters that never go back). */
START_TEST(switch_totals_keep_deleted_ports_share)
{
	hs_switch_t *sw = th_switch(NULL);
	hs_port_t *a = th_port(sw, "a", 0), *b = th_port(sw, "b", 0);
	uint8_t f[64], m[6];
	th_mac(m, 1);
	for (int i = 0; i < 3; i++)
		th_send(a, f, th_frame(f, th_bcast, m, -1, 64, (unsigned)i));
	th_send(a, f, 10); /* a runt: dropped */
	struct hs_switch_stats before = th_sstats(sw);
	ck_assert_uint_eq(before.rx_packets, 4);
	ck_assert_uint_eq(before.tx_packets, 3);
	ck_assert_uint_eq(before.drops[HS_DROP_RUNT], 1);
	ck_assert_int_eq(hs_port_del(b), 0);
	ck_assert_int_eq(hs_port_del(a), 0);
	struct hs_switch_stats after = th_sstats(sw);
	ck_assert_uint_eq(after.n_ports, 0);
	ck_assert_uint_eq(after.rx_packets, before.rx_packets);
	ck_assert_uint_eq(after.rx_bytes, before.rx_bytes);
	ck_assert_uint_eq(after.tx_packets, before.tx_packets);
	ck_assert_uint_eq(after.tx_bytes, before.tx_bytes);
	for (unsigned r = 0; r < HS_DROP__COUNT; r++)
		ck_assert_uint_eq(after.drops[r], before.drops[r]);
	hs_switch_destroy(sw);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("api");
	tcase_add_test(tc, version_is_consistent);
	tcase_add_test(tc, error_strings_are_readable);
	tcase_add_test(tc, switch_create_rejects_bad_config);
	tcase_add_test(tc, getters_tolerate_null);
	tcase_add_test(tc, port_stats_fill_what_the_caller_has);
	tcase_add_test(tc, switch_totals_keep_deleted_ports_share);
	tcase_add_test(tc, port_add_rejects_bad_config);
	tcase_add_test(tc, port_table_full_is_enospc);
	tcase_add_test(tc, port_calls_reject_bad_queues_and_values);
	tcase_add_test(tc, backend_registration_rules);
	tcase_add_test(tc, run_and_attach_exclude_each_other);
	tcase_add_test(tc, log_level_changes_at_run_time);
	tcase_add_test(tc, config_structs_carry_their_size);
	tcase_add_test(tc, worker_stats_by_index_and_size);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(suite());
}
