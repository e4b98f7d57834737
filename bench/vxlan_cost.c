/*
 * vxlan_cost.c - the work of a VXLAN port per frame, for instruction
 * counts (bench/vxlan_cost.sh runs it under callgrind): frames from a mem
 * port through a vxlan port to another switch's vxlan port over the
 * loopback and out of its mem port; then the same frames between two
 * mem ports of one switch, the plain switching the tunnel adds to.
 * Unicast IPv4/UDP frames to a learned MAC (no flooding), paced so that
 * no datagram is lost. Needs 127.0.0.1 and 127.0.0.2 (any loopback).
 * With "underlay", the first port sends through an underlay interface
 * instead (hs_vxlan_config.underlay_if): a veth pair in a network
 * namespace of the program's own (root), 10.66.0.1 on one end, the
 * second port at 10.66.0.2 on the other, the next hop given
 * (hs_vxlan_set_nexthop: both ends are local, so no route leaves by the
 * veth).
 *
 *   vxlan_cost FRAMES FRAME_BYTES [underlay]
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hyperswitch/hyperswitch.h>

#define BURST 32

static void *loop_main(void *arg)
{
	hs_run(arg);
	return NULL;
}

static hs_switch_t *sw_new(pthread_t *t)
{
	struct hs_switch_config c = {.log_level = HS_LOG_ERROR};
	hs_switch_t *sw;
	if (hs_switch_create(&c, &sw))
		exit(1);
	pthread_create(t, NULL, loop_main, sw);
	return sw;
}

static hs_port_t *mem_port(hs_switch_t *sw, const char *name)
{
	struct hs_mem_config mc = {.ring_size = 256};
	struct hs_port_config pc = {.name = name, .backend = HS_MEM_BACKEND,
				    .backend_config = &mc, .backend_config_size = sizeof(mc)};
	hs_port_t *p;
	if (hs_port_add(sw, &pc, &p))
		exit(1);
	return p;
}

static hs_port_t *vx_port(hs_switch_t *sw, const char *local, const char *remote,
			  const char *underlay)
{
	struct hs_vxlan_config vc = {.local = local, .vni = 42, .dst_port = 47899,
				     .underlay_if = underlay};
	struct hs_port_config pc = {.name = "vx", .backend = HS_VXLAN_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc)};
	hs_port_t *p;
	int rc = hs_port_add(sw, &pc, &p);
	static const uint8_t flood[6];
	if (rc || hs_vxlan_fdb_add(p, flood, remote, 0)) {
		fprintf(stderr, "vxlan port %s: %s\n", local, hs_strerror(rc));
		exit(1);
	}
	return p;
}

/* An IPv4/UDP frame from src to dst of len bytes. */
static void frame(uint8_t *f, unsigned len, const uint8_t *dst, const uint8_t *src, unsigned k)
{
	memset(f, 0, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[2] = (uint8_t)((len - 14) >> 8), ip[3] = (uint8_t)(len - 14);
	ip[8] = 64, ip[9] = 17;
	ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
	ip[20] = (uint8_t)(k >> 8), ip[21] = (uint8_t)k, ip[23] = 80; /* ports */
}

/* Sends n frames from `from` to `to`, a burst at a time, each burst
 * received before the next is sent. */
static void run(hs_port_t *from, hs_port_t *to, unsigned n, unsigned len, const uint8_t *dst,
		const uint8_t *src)
{
	static uint8_t buf[BURST][9216];
	struct hs_mem_frame f[BURST];
	for (unsigned done = 0; done < n;) {
		unsigned b = n - done < BURST ? n - done : BURST;
		for (unsigned i = 0; i < b; i++) {
			frame(buf[i], len, dst, src, done + i);
			f[i] = (struct hs_mem_frame){.data = buf[i], .len = len};
		}
		if (hs_mem_tx_burst(from, 0, f, b) != (int)b)
			exit(1);
		uint64_t ck[BURST];
		unsigned reaped = 0, got = 0;
		while (reaped < b || got < b) {
			int r = hs_mem_tx_reap(from, 0, ck, BURST);
			reaped += r > 0 ? (unsigned)r : 0;
			struct hs_mem_frame rf[BURST];
			int k = hs_mem_rx_burst(to, 0, rf, BURST);
			if (k > 0) {
				hs_mem_rx_release(to, 0, (unsigned)k);
				got += (unsigned)k;
			}
			if (r <= 0 && k <= 0)
				sched_yield();
		}
		done += b;
	}
}

int main(int argc, char **argv)
{
	bool under = argc == 4 && !strcmp(argv[3], "underlay");
	if (argc != 3 && !under)
		return fprintf(stderr, "usage: %s FRAMES FRAME_BYTES [underlay]\n", argv[0]), 2;
	unsigned n = (unsigned)atoi(argv[1]), len = (unsigned)atoi(argv[2]);
	if (len < 60 || len > 1450)
		return fprintf(stderr, "FRAME_BYTES: 60..1450 (the underlay's MTU)\n"), 2;
	uint8_t ma[6] = {2, 0, 0, 0, 0, 0xa}, mb[6] = {2, 0, 0, 0, 0, 0xb};
	/* through the tunnel: A -> vx1 ~ 127.0.0.1 -> 127.0.0.2 ~ vx2 -> B */
	pthread_t t1, t2;
	hs_switch_t *s1 = sw_new(&t1), *s2 = sw_new(&t2);
	hs_port_t *a = mem_port(s1, "a"), *b = mem_port(s2, "b");
	if (under) {
		if (unshare(CLONE_NEWNET) ||
		    system("ip link set lo up && ip link add u0 type veth peer name u1 && "
			   "ip addr add 10.66.0.1/24 dev u0 && ip addr add 10.66.0.2/24 dev u1 && "
			   "ip link set u0 up && ip link set u1 up && "
			   "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.u1.rp_filter=0 "
			   "net.ipv4.conf.u1.accept_local=1"))
			return fprintf(stderr, "underlay: needs root (a network namespace)\n"), 1;
		/* u1's MAC: the next hop */
		struct ifreq ifr = {0};
		int fd = socket(AF_INET, SOCK_DGRAM, 0);
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "u1");
		if (fd < 0 || ioctl(fd, SIOCGIFHWADDR, &ifr))
			return 1;
		close(fd);
		hs_port_t *v1 = vx_port(s1, "10.66.0.1", "10.66.0.2", "u0");
		vx_port(s2, "10.66.0.2", "10.66.0.1", NULL);
		if (hs_vxlan_set_nexthop(v1, "10.66.0.2", (const uint8_t *)ifr.ifr_hwaddr.sa_data))
			return 1;
	} else {
		vx_port(s1, "127.0.0.1", "127.0.0.2", NULL);
		vx_port(s2, "127.0.0.2", "127.0.0.1", NULL);
	}
	run(b, a, 1, len, ma, mb); /* every table learns b, then a */
	run(a, b, 1, len, mb, ma);
	run(a, b, n, len, mb, ma);
	hs_stop(s1);
	hs_stop(s2);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	struct hs_port_stats st;
	hs_port_get_stats(b, &st);
	printf("tunnel%s: %llu frames of %u bytes to b\n", under ? " (underlay)" : "",
	       (unsigned long long)st.tx_packets, len);
	hs_switch_destroy(s1);
	hs_switch_destroy(s2);
	/* plain switching: C -> D */
	pthread_t t3;
	hs_switch_t *s3 = sw_new(&t3);
	hs_port_t *c = mem_port(s3, "c"), *d = mem_port(s3, "d");
	run(d, c, 1, len, ma, mb);
	run(c, d, n + 2, len, mb, ma);
	hs_stop(s3);
	pthread_join(t3, NULL);
	hs_port_get_stats(d, &st);
	printf("plain: %llu frames to d\n", (unsigned long long)st.tx_packets);
	hs_switch_destroy(s3);
	return 0;
}
