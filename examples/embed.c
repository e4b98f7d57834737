/*
 * embed.c - the smallest useful program around libhyperswitch.
 *
 * It creates a switch, plugs in three in-memory ports the way a host
 * program would (two "VMs" on VLAN 10 and a trunk towards an uplink),
 * switches a few frames between them and prints the counters.
 *
 *   cc embed.c $(pkg-config --cflags --libs hyperswitch) -o embed
 */
#include <stdio.h>
#include <string.h>

#include <hyperswitch/hyperswitch.h>

static void log_line(void *opaque, enum hs_log_level level, const char *msg)
{
	(void)opaque;
	static const char *names[] = {"error", "warn", "info", "debug"};
	printf("  [%s] %s\n", names[level], msg);
}

/* Adds an in-memory port; returns NULL on failure. */
static hs_port_t *add_port(hs_switch_t *sw, const char *name,
			   enum hs_vlan_mode mode, uint16_t vlan)
{
	struct hs_mem_config mem = {.ring_size = 64};
	struct hs_port_config cfg = {
		.name = name,
		.backend = HS_MEM_BACKEND,
		.backend_config = &mem,
		.backend_config_size = sizeof(mem),
		.vlan_mode = mode,
		.vlan = vlan, /* access VLAN, or the trunk's native VLAN (0: none) */
	};
	hs_port_t *port;
	int rc = hs_port_add(sw, &cfg, &port);
	if (rc) {
		fprintf(stderr, "adding %s: %s\n", name, hs_strerror(rc));
		return NULL;
	}
	return port;
}

/* Builds a small Ethernet frame from `src` to `dst`. */
static size_t make_frame(uint8_t *buf, const uint8_t dst[6], const uint8_t src[6],
			 const char *text)
{
	memcpy(buf, dst, 6);
	memcpy(buf + 6, src, 6);
	buf[12] = 0x88; /* a local experimental EtherType */
	buf[13] = 0xb5;
	size_t n = strlen(text);
	memcpy(buf + 14, text, n);
	size_t len = 14 + n;
	if (len < 60) { /* pad to the Ethernet minimum */
		memset(buf + len, 0, 60 - len);
		len = 60;
	}
	return len;
}

/* Sends one frame: the switch copies it straight into the receivers'
 * buffers, here in this thread (no workers), before the call returns. */
static void send_frame(hs_port_t *port, void *frame, size_t len)
{
	struct hs_mem_frame f = {.data = frame, .len = (uint32_t)len, .cookie = 1};
	if (hs_mem_tx_burst(port, 0, &f, 1) != 1)
		fprintf(stderr, "send on %s failed\n", hs_port_name(port));
	uint64_t cookie; /* our buffer is ours again once completed */
	hs_mem_tx_reap(port, 0, &cookie, 1);
}

/* Prints and consumes whatever arrived on a port. */
static void receive_all(hs_port_t *port)
{
	struct hs_mem_frame f[16];
	int n = hs_mem_rx_burst(port, 0, f, 16);
	for (int i = 0; i < n; i++) {
		const uint8_t *d = f[i].data;
		int tagged = d[12] == 0x81 && d[13] == 0x00;
		/* The text is NUL-padded to the Ethernet minimum. */
		printf("  %-6s got %u bytes%s: \"%.20s\"\n", hs_port_name(port),
		       f[i].len, tagged ? " (802.1Q tagged, VLAN 10)" : "",
		       (const char *)d + 14 + (tagged ? 4 : 0));
	}
	if (n > 0)
		hs_mem_rx_release(port, 0, (unsigned)n); /* post the buffers again */
}

int main(void)
{
	printf("hyperswitch %s\n", hs_version_string());

	/* 1. A switch with default settings and a log callback. */
	struct hs_switch_config cfg = {.name = "demo", .log_fn = log_line,
				       .log_level = HS_LOG_INFO};
	hs_switch_t *sw;
	int rc = hs_switch_create(&cfg, &sw);
	if (rc) {
		fprintf(stderr, "hs_switch_create: %s\n", hs_strerror(rc));
		return 1;
	}

	/* 2. Ports: two VMs on VLAN 10 and a trunk carrying every VLAN. */
	hs_port_t *vm1 = add_port(sw, "vm1", HS_VLAN_ACCESS, 10);
	hs_port_t *vm2 = add_port(sw, "vm2", HS_VLAN_ACCESS, 10);
	hs_port_t *up = add_port(sw, "uplink", HS_VLAN_TRUNK, 0);
	if (!vm1 || !vm2 || !up)
		return 1;

	/* 3. Traffic. vm2's address is not known yet, so vm1's first frame
	 * is flooded (vm2 and, tagged with VLAN 10, the uplink); the reply
	 * teaches the switch where vm2 lives, so the next frame is unicast. */
	const uint8_t mac1[6] = {0x02, 0, 0, 0, 0, 1}, mac2[6] = {0x02, 0, 0, 0, 0, 2};
	uint8_t frame[64];
	printf("vm1 -> vm2 (vm2 unknown: flooded)\n");
	send_frame(vm1, frame, make_frame(frame, mac2, mac1, "hello vm2"));
	receive_all(vm2);
	receive_all(up);
	printf("vm2 -> vm1 (vm1 learned: unicast)\n");
	send_frame(vm2, frame, make_frame(frame, mac1, mac2, "hello vm1"));
	receive_all(vm1);
	receive_all(up);
	printf("vm1 -> vm2 (both learned: unicast)\n");
	send_frame(vm1, frame, make_frame(frame, mac2, mac1, "again vm2"));
	receive_all(vm2);
	receive_all(up);

	/* 4. Counters. */
	struct hs_switch_stats st;
	hs_switch_get_stats(sw, &st);
	printf("switch: %u ports, %llu frames in, %llu out, %llu MACs learned\n",
	       st.n_ports, (unsigned long long)st.rx_packets,
	       (unsigned long long)st.tx_packets, (unsigned long long)st.fdb_entries);
	hs_port_t *ports[] = {vm1, vm2, up};
	for (int i = 0; i < 3; i++) {
		struct hs_port_stats ps;
		hs_port_get_stats(ports[i], &ps);
		printf("  %-6s rx %llu tx %llu flooded %llu\n", hs_port_name(ports[i]),
		       (unsigned long long)ps.rx_packets,
		       (unsigned long long)ps.tx_packets,
		       (unsigned long long)ps.rx_flooded);
	}

	/* 5. Destroying the switch removes its ports. */
	hs_switch_destroy(sw);
	return 0;
}
