/*
 * fuzz_vxlan.c - libFuzzer target: the vxlan port's hostile surface. Any
 * host that reaches the VTEP's UDP port chooses whole datagrams and their
 * source address; a control plane adds and removes table entries; local
 * frames look the table up on their way out. An input is a list of such
 * events, played against a real vxlan port (127.0.0.1, VNI 42, a table of
 * 64 entries so that it fills) through real sockets from four remote
 * addresses, in a network namespace of the fuzzing process's own.
 *
 * Oracles, besides the sanitizers: the switch takes every datagram (the
 * socket drains); the table dump agrees with the port's counters (entries
 * and flood VTEPs), never holds more than its size, names only addresses
 * of the four remotes, and keeps every static or external entry where the
 * control plane put it, whatever the tunnel sends.
 *
 * Input: records [op 1][len 1][bytes len]; op & 3: 0 a datagram from
 * remote (op >> 2) & 3; 1 hs_vxlan_fdb_add (mac = bytes[0..5], remote
 * bytes[6] & 3, flags bytes[7] % 3, the all-zeros MAC for the flood list
 * when bytes[8] is odd); 2 hs_vxlan_fdb_del; 3 a frame from the local mem
 * port (broadcast, or unicast to bytes[0..5]).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hyperswitch/hyperswitch.h"
#include "th_netns.h"

#define NREMOTE 4
#define TABLE 64

static hs_switch_t *sw;
static hs_port_t *vx, *mem;
static int rfd[NREMOTE];
static struct sockaddr_in vtep;
static bool ready;

/* pinned entries the control plane made: where they must stay */
static struct pin {
	uint8_t mac[6];
	int remote;
	bool used;
} pins[32];

static void quiet(void *opaque, enum hs_log_level lvl, const char *msg)
{
	(void)opaque;
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "[hs %d] %s\n", lvl, msg);
}

static const char *remote_addr(int r)
{
	static const char *a[NREMOTE] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};
	return a[r & 3];
}

static void setup(void)
{
	int rc = th_netns_own();
	if (rc) {
		fprintf(stderr, "fuzz_vxlan: no private network namespace with its loopback up "
			"(%s): needs root\n", strerror(-rc));
		abort();
	}
	struct hs_switch_config sc = {.log_fn = quiet};
	if (hs_switch_create(&sc, &sw))
		abort();
	struct hs_mem_config mc = {0};
	struct hs_port_config mp = {.name = "m", .backend = HS_MEM_BACKEND, .backend_config = &mc,
				    .backend_config_size = sizeof(mc)};
	struct hs_vxlan_config vc = {.local = "127.0.0.1", .vni = 42, .max_entries = TABLE,
				     .ageing_s = 1};
	struct hs_port_config vp = {.name = "vx", .backend = HS_VXLAN_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc)};
	if (hs_port_add(sw, &mp, &mem) || hs_port_add(sw, &vp, &vx))
		abort();
	for (int r = 0; r < NREMOTE; r++) {
		rfd[r] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(4789)};
		inet_pton(AF_INET, remote_addr(r), &a.sin_addr);
		if (rfd[r] < 0 || bind(rfd[r], (struct sockaddr *)&a, sizeof(a)))
			abort();
	}
	vtep = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(4789)};
	inet_pton(AF_INET, "127.0.0.1", &vtep.sin_addr);
	ready = true;
}

struct ctr {
	const char *name;
	uint64_t v;
};

static void ctr_cb(void *arg, const char *name, uint64_t v)
{
	struct ctr *c = arg;
	if (!strcmp(name, c->name))
		c->v = v;
}

static uint64_t ctr(const char *name)
{
	struct ctr c = {name, UINT64_MAX};
	hs_port_backend_counters(vx, ctr_cb, &c);
	return c.v;
}

struct walk {
	unsigned n, flood;
};

static int check_cb(void *arg, const struct hs_vxlan_fdb_entry *e)
{
	struct walk *w = arg;
	static const uint8_t zero[6];
	bool known = false;
	for (int r = 0; r < NREMOTE; r++)
		known |= !strcmp(e->remote, remote_addr(r));
	if (!known) {
		fprintf(stderr, "fuzz_vxlan: an entry names %s\n", e->remote);
		abort();
	}
	if (!memcmp(e->mac, zero, 6)) {
		w->flood++;
		return 0;
	}
	w->n++;
	for (unsigned i = 0; i < sizeof(pins) / sizeof(pins[0]); i++)
		if (pins[i].used && !memcmp(pins[i].mac, e->mac, 6) &&
		    (strcmp(e->remote, remote_addr(pins[i].remote)) ||
		     !(e->flags & (HS_VXLAN_FDB_STATIC | HS_VXLAN_FDB_EXTERN)))) {
			fprintf(stderr, "fuzz_vxlan: a pinned entry moved to %s\n", e->remote);
			abort();
		}
	return 0;
}

/* Lets the switch take what the sockets hold. */
static void settle(void)
{
	for (int i = 0; i < 64; i++)
		hs_switch_dispatch(sw);
	struct hs_mem_frame f[64];
	int n;
	while ((n = hs_mem_rx_burst(mem, 0, f, 64)) > 0)
		hs_mem_rx_release(mem, 0, (unsigned)n);
}

static void pin_set(const uint8_t *mac, int remote, bool on)
{
	int free_i = -1;
	for (unsigned i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
		if (pins[i].used && !memcmp(pins[i].mac, mac, 6)) {
			pins[i].used = on;
			pins[i].remote = remote;
			return;
		}
		if (!pins[i].used && free_i < 0)
			free_i = (int)i;
	}
	if (on && free_i >= 0)
		pins[free_i] = (struct pin){.remote = remote, .used = true};
	if (on && free_i >= 0)
		memcpy(pins[free_i].mac, mac, 6);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ready)
		setup();
	size_t off = 0;
	while (off + 2 <= size) {
		uint8_t op = data[off], len = data[off + 1];
		off += 2;
		if (len > size - off)
			len = (uint8_t)(size - off);
		const uint8_t *b = data + off;
		off += len;
		uint8_t mac[6] = {0};
		if (len >= 6)
			memcpy(mac, b, 6);
		mac[0] &= 0xfe;
		int remote = len > 6 ? b[6] & 3 : 0;
		uint32_t flags = len > 7 ? b[7] % 3 : 0;
		if (len > 8 && (b[8] & 1))
			memset(mac, 0, 6);
		switch (op & 3) {
		case 0: {
			/* a datagram: the bytes as they are, after a header that
			 * is right more often than not */
			uint8_t d[300] = {0x08, 0, 0, 0, 0, 0, 42, 0};
			size_t n = len;
			if (op & 0x10) {
				memcpy(d, b, len);
			} else {
				memcpy(d + 8, b, len);
				n = 8u + len;
			}
			/* with an outer ECN field from the op byte: the
			 * decapsulation rewrites the inner header (RFC 6040) */
			int tos = (op >> 5) & 3;
			union {
				struct cmsghdr h;
				char c[CMSG_SPACE(sizeof(int))];
			} cb;
			struct iovec iov = {d, n};
			struct msghdr mh = {.msg_name = &vtep, .msg_namelen = sizeof(vtep),
					    .msg_iov = &iov, .msg_iovlen = 1};
			if (tos) {
				cb.h.cmsg_len = CMSG_LEN(sizeof(int));
				cb.h.cmsg_level = IPPROTO_IP;
				cb.h.cmsg_type = IP_TOS;
				memcpy(CMSG_DATA(&cb.h), &tos, sizeof(tos));
				mh.msg_control = &cb;
				mh.msg_controllen = sizeof(cb);
			}
			if (sendmsg(rfd[(op >> 2) & 3], &mh, 0) < 0) {
				/* full: the switch takes them below */
			}
			break;
		}
		case 1:
			if (hs_vxlan_fdb_add(vx, mac, remote_addr(remote), flags) == 0 &&
			    (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
				pin_set(mac, remote, flags != 0);
			break;
		case 2:
			if (hs_vxlan_fdb_del(vx, mac, (op & 4) ? remote_addr(remote) : NULL) == 0)
				pin_set(mac, remote, false);
			break;
		case 3: {
			uint8_t f[300] = {0};
			memset(f, 0xff, 6);
			if (op & 4)
				memcpy(f, mac, 6);
			f[6] = 0x02, f[11] = 1;
			f[12] = 0x08, f[13] = 0x00;
			memcpy(f + 14, b, len);
			struct hs_mem_frame mf = {.data = f, .len = 14u + len < 60 ? 60 : 14u + len};
			hs_mem_tx_burst(mem, 0, &mf, 1);
			uint64_t ck;
			hs_mem_tx_reap(mem, 0, &ck, 1);
			break;
		}
		}
		if ((op & 0xe0) == 0xe0)
			settle();
	}
	settle();
	struct walk w = {0};
	if (hs_vxlan_fdb_dump(vx, check_cb, &w))
		abort();
	if (w.n > TABLE || w.n != ctr("entries") || w.flood != ctr("flood_vteps")) {
		fprintf(stderr, "fuzz_vxlan: dump %u entries and %u flood VTEPs, counters %llu and "
			"%llu\n", w.n, w.flood, (unsigned long long)ctr("entries"),
			(unsigned long long)ctr("flood_vteps"));
		abort();
	}
	return 0;
}
