/*
 * fuzz_tap.c - libFuzzer target (d): tap frames with virtio-net headers.
 * A frame as the tap backend reads it from the kernel (the header, then
 * the frame, in one buffer) is parsed with the offloads a tap negotiates
 * (TUNSETOFFLOAD: checksum, TSO4/6, ECN, USO) and switched, to the
 * receivers of fuzz_switch.h and to three real tap devices: offloads on
 * (large frames written by reference from the sender's memory), staged,
 * and offloads off (the switch segments and checksums). The kernel
 * checks every virtio-net header the switch writes: one it refuses
 * (a write error other than "no room") is a finding.
 *
 * The taps live in a network namespace of the fuzzing process's own
 * (unshare(CLONE_NEWNET), root), so nothing reaches the host's network;
 * without root or /dev/net/tun the target says so and runs without taps.
 * Input: [mode 1][virtio-net header 12][frame].
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "fuzz_switch.h"

static hs_port_t *taps[3];
static unsigned ntaps;

static void sysctl_set(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, v, strlen(v)) < 0) {
		}
		close(fd);
	}
}

static void taps_setup(void)
{
	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "fuzz_tap: no private network namespace (%s): running "
			"without tap devices\n", strerror(errno));
		return;
	}
	sysctl_set("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	sysctl_set("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	if (access("/dev/net/tun", F_OK)) {
		mkdir("/dev/net", 0755);
		mknod("/dev/net/tun", S_IFCHR | 0666, makedev(10, 200));
	}
	static const uint32_t flags[3] = {HS_TAP_UP, HS_TAP_UP | HS_TAP_STAGED,
					  HS_TAP_UP | HS_TAP_NO_OFFLOAD};
	static const char *names[3] = {"fz-tap", "fz-staged", "fz-plain"};
	for (unsigned i = 0; i < 3; i++) {
		struct hs_tap_config tc = {.ifname = names[i], .flags = flags[i], .mtu = 9000};
		struct hs_port_config pc = {.name = names[i], .backend = HS_TAP_BACKEND,
					    .backend_config = &tc,
					    .backend_config_size = sizeof(tc), .mtu = 9000,
					    .vlan_mode = i == 2 ? HS_VLAN_TRUNK : HS_VLAN_ACCESS,
					    .vlan = 1};
		int rc = hs_port_add(fz_sw, &pc, &taps[ntaps]);
		if (rc) {
			fprintf(stderr, "fuzz_tap: tap %s: %s: running without it\n", names[i],
				hs_strerror(rc));
			continue;
		}
		ntaps++;
	}
}

struct ctr_q {
	const char *name;
	uint64_t v;
};

static void ctr_cb(void *arg, const char *name, uint64_t v)
{
	struct ctr_q *c = arg;
	if (!strcmp(name, c->name))
		c->v = v;
}

static uint64_t ctr(hs_port_t *p, const char *name)
{
	struct ctr_q c = {name, 0};
	hs_port_backend_counters(p, ctr_cb, &c);
	return c.v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!fz_sw) {
		fz_setup();
		taps_setup();
	}
	fz_run(data, size, HS_CAP_CSUM | HS_CAP_GSO_TCPV4 | HS_CAP_GSO_TCPV6 | HS_CAP_GSO_ECN |
				   HS_CAP_GSO_UDP_L4,
	       true);
	for (unsigned i = 0; i < ntaps; i++)
		if (ctr(taps[i], "write_errors")) {
			fprintf(stderr, "fuzz_tap: the kernel refused a frame the switch wrote to %s\n",
				hs_port_name(taps[i]));
			abort();
		}
	return 0;
}
