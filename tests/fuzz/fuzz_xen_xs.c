/*
 * fuzz_xen_xs.c - the Xen backend's xenstore handshake against a hostile
 * front-end: a vif on a switch over the emulated hypervisor, and a guest
 * that writes, removes and rewrites its keys in any order and with any
 * values (ring references valid or not, event channels bound or not,
 * queue counts, feature flags, states, its whole directory gone), kicks
 * its event channels, and puts a few packets on whatever rings it
 * offered, while the switch's loop runs between its steps.
 *
 * Input: a sequence of 3-byte steps [op, key, value]:
 *  op % 8: 0-1 write key = value, 2 remove key, 3 write state = value % 9,
 *          4 run the loop, 5 kick every channel, 6 a packet on queue 0's
 *          transmit ring (if offered), 7 remove the front-end's directory
 *  value: < 200 the number; 200-207 a valid ring page reference; 208-215
 *         a bound-able event channel; 216 ""; 217 "-1"; 218 a huge number;
 *         219 "1x"; else "0".
 * Oracle, besides the sanitizers: the back-end's state is always one of
 * the xenbus states, and the vif's link is up only while it says
 * Connected; the port is deleted cleanly after every input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hyperswitch/hyperswitch.h"
#include "backends/xen_emu.h"
#include "backends/xen_netif.h"

static const char *const keys[] = {
	"state", "tx-ring-ref", "rx-ring-ref", "event-channel", "event-channel-tx",
	"event-channel-rx", "request-rx-copy", "feature-rx-notify", "feature-sg",
	"feature-gso-tcpv4", "feature-gso-tcpv6", "feature-no-csum-offload",
	"feature-ipv6-csum-offload", "multi-queue-num-queues", "queue-0/tx-ring-ref",
	"queue-0/rx-ring-ref", "queue-0/event-channel", "queue-1/tx-ring-ref",
	"queue-1/rx-ring-ref", "queue-1/event-channel", "queue-1/event-channel-tx",
	"queue-1/event-channel-rx",
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_xen_xs: %s\n", what);
		abort();
	}
}

/* Silent, unless FUZZ_XEN_LOG is set (to see what a seed reaches). */
static void quiet_log(void *opaque, enum hs_log_level lvl, const char *msg)
{
	(void)opaque, (void)lvl;
	if (getenv("FUZZ_XEN_LOG"))
		fprintf(stderr, "%s\n", msg);
}

static hs_switch_t *sw;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!sw) {
		struct hs_switch_config c = {.log_fn = quiet_log, .log_level = HS_LOG_INFO};
		check(hs_switch_create(&c, &sw) == 0, "switch");
	}
	struct hs__xemu *emu;
	check(hs__xemu_create(&emu) == 0, "emulation");
	const struct hs__xsvc_ops *ops = hs__xemu_ops();
	struct hs__xemu_dom *d0 = hs__xemu_domain(emu, 0, 0, NULL);
	uint8_t *mem;
	struct hs__xemu_dom *g = hs__xemu_domain(emu, 1, 8, &mem);
	check(d0 && g, "domains");
	void *xs = ops->xs_open(g), *evt = ops->evt_open(g);
	const char *fe = "/local/domain/1/device/vif/0";
	ops->xs_write(xs, HS__XBT_NULL, "/local/domain/1/device/vif/0/state", "1", 1);
	int refs[8], ports[8];
	for (int i = 0; i < 8; i++) {
		refs[i] = hs__xemu_grant(g, (uint32_t)i, 0, false);
		ports[i] = hs__xemu_evt_alloc_unbound(evt, 0);
	}
	/* the rings as a front-end sets them up, on pages 0 (tx) and 1 (rx) */
	netif_tx_sring_t *txs = (netif_tx_sring_t *)mem;
	netif_tx_front_ring_t txf;
	SHARED_RING_INIT(txs);
	FRONT_RING_INIT(&txf, txs, HS__XEN_PAGE);
	SHARED_RING_INIT((netif_rx_sring_t *)(mem + HS__XEN_PAGE));

	struct hs_xen_config xc = {.frontend_domid = 1, .max_queues = 2, .hypervisor = d0};
	struct hs_port_config pc = {.name = "x", .backend = HS_XEN_BACKEND, .backend_config = &xc,
				    .backend_config_size = sizeof(xc)};
	hs_port_t *port;
	check(hs_port_add(sw, &pc, &port) == 0, "port");
	hs_switch_dispatch(sw);
	for (size_t i = 0; i + 3 <= size && i < 3 * 200; i += 3) {
		unsigned op = data[i] % 8, k = data[i + 1] % NKEYS, v = data[i + 2];
		char path[160], val[32];
		snprintf(path, sizeof(path), "%s/%s", fe, keys[k]);
		if (v < 200)
			snprintf(val, sizeof(val), "%u", v);
		else if (v < 208)
			snprintf(val, sizeof(val), "%d", refs[v - 200]);
		else if (v < 216)
			snprintf(val, sizeof(val), "%d", ports[v - 208]);
		else if (v == 216)
			val[0] = 0;
		else if (v == 217)
			snprintf(val, sizeof(val), "-1");
		else if (v == 218)
			snprintf(val, sizeof(val), "99999999999999999999");
		else if (v == 219)
			snprintf(val, sizeof(val), "1x");
		else
			snprintf(val, sizeof(val), "0");
		switch (op) {
		case 0:
		case 1:
			ops->xs_write(xs, HS__XBT_NULL, path, val, (unsigned)strlen(val));
			break;
		case 2:
			ops->xs_rm(xs, HS__XBT_NULL, path);
			break;
		case 3:
			snprintf(val, sizeof(val), "%u", v % 9);
			ops->xs_write(xs, HS__XBT_NULL, "/local/domain/1/device/vif/0/state", val,
				      (unsigned)strlen(val));
			break;
		case 4:
			hs_switch_dispatch(sw);
			break;
		case 5:
			for (int p = 0; p < 8; p++)
				ops->evt_notify(evt, (uint32_t)ports[p]);
			break;
		case 6: {
			/* a one-slot packet from page 2, of the value's size */
			netif_tx_request_t *r = RING_GET_REQUEST(&txf, txf.req_prod_pvt++);
			r->gref = (uint32_t)refs[2 + v % 6];
			r->offset = (uint16_t)(v * 13 % 4096);
			r->flags = (uint16_t)(k % 16);
			r->id = (uint16_t)i;
			r->size = (uint16_t)(v * 16);
			int notify;
			RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&txf, notify);
			(void)notify;
			break;
		}
		case 7:
			ops->xs_rm(xs, HS__XBT_NULL, fe);
			break;
		}
		/* the back-end's state is a xenbus state; up only if Connected */
		unsigned len = 0;
		char *st = ops->xs_read(xs, HS__XBT_NULL, "/local/domain/0/backend/vif/1/0/state",
					&len);
		int s = st ? atoi(st) : -1;
		free(st);
		check(s >= 1 && s <= 6, "back-end state out of range");
		check(!hs_port_link_up(port) || s == 4, "link up while not Connected");
	}
	hs_switch_dispatch(sw);
	check(hs_port_del(port) == 0, "port delete");
	hs_switch_dispatch(sw);
	ops->evt_close(evt);
	ops->xs_close(xs);
	hs__xemu_destroy(emu);
	return 0;
}
