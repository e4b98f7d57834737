/*
 * vswitch.c - a switch process for virtual machines: vhost-user ports
 * for VMMs (QEMU, cloud-hypervisor) and DPDK virtio-user, tap devices
 * for the host's network stack and VXLAN tunnels to other hosts, until
 * SIGINT/SIGTERM; counters and the forwarding tables on exit.
 *
 *   vswitch [--workers N] [--busy-poll] [--poll-us US] [--burst N] [--stats SECONDS]
 *           [--pidfile FILE] [--keep-quiet] [--no-backlog] [--posted-each]
 *           [--vhost-user PATH[,client][,queues=N][,vlan=V][,no-packed][,no-in-order]
 *                         [,no-announce][,no-vcpu-state][,no-learn]]...
 *           [--tap IFNAME[,attach][,no-offload][,staged][,no-uring][,queues=N][,vlan=V][,mtu=M]]...
 *           [--vxlan LOCAL,vni=N[,remote=ADDR]...[,vlan=V][,port=P][,mtu=M][,no-learn]
 *                    [,ageing=S][,underlay=IF][,follow=DEV[,follow-any-port][,export=BRPORT]]]...
 *           [--uplink IFNAME[,queues=N][,vlan=V][,trunk][,no-offload][,no-promisc][,bypass][,packet|xdp|xdp-zerocopy|xdp-generic]]...
 *
 * Each --vhost-user adds a port (server mode: the VMM connects to PATH;
 * "client": the switch connects to the VMM's PATH and reconnects); each
 * --tap a tap device (created, or an existing one with "attach"), brought
 * up, as port IFNAME; each --vxlan a tunnel endpoint at address LOCAL;
 * each --uplink a host interface (a NIC, a veth) as port IFNAME, "trunk"
 * making it carry every VLAN tagged; AF_XDP where it can attach, else
 * AF_PACKET, unless "packet" or "xdp" (or "xdp-generic") says which.
 * --busy-poll sets HS_SW_BUSY_POLL (workers spin when idle instead of
 * sleeping: no wake-up on the path of a frame, at the cost of a core per
 * worker) and --poll-us the adaptive polling's poll_us; both mean
 * something only with --workers.
 * --keep-quiet sets HS_SW_KEEP_QUIET (a busy worker keeps polling every
 * queue it took), to compare with the default; --no-backlog sets
 * HS_SW_NO_BACKLOG (a frame that finds no receive buffer is dropped at
 * once), the ablation table's row; --posted-each sets HS_SW_POSTED_EACH
 * (a receiver with a backlog is asked to signal its posts at every
 * delivery), to compare with the default. "no-learn" on a vhost-user port sets
 * HS_PORT_NO_LEARN: its source MACs are never learned (frames toward
 * them are flooded), as for a port facing a hub or a monitor.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hyperswitch/hyperswitch.h>

#define MAX_PORTS 64

static void log_line(void *opaque, enum hs_log_level level, const char *msg)
{
	(void)opaque;
	static const char *names[] = {"error", "warn", "info", "debug"};
	fprintf(stderr, "[%s] %s\n", names[level], msg);
}

/* Parses "PATH[,client][,queues=N][,vlan=V][,no-packed][,no-in-order][,no-announce][,no-vcpu-state][,no-learn][,mode=0660][,owner=UID]
 * [,group=GID]" (mode, owner, group: who may connect to a server socket). */
static int add_vhost_user(hs_switch_t *sw, char *spec, unsigned n, hs_port_t **out)
{
	struct hs_vhost_user_config vc = {0};
	struct hs_port_config pc = {.backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc,
				    .backend_config_size = sizeof(vc), .mtu = 9000};
	char *save = NULL, *tok = strtok_r(spec, ",", &save);
	vc.path = tok;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "client"))
			vc.flags |= HS_VU_CLIENT;
		else if (!strncmp(tok, "queues=", 7))
			vc.queue_pairs = (uint16_t)atoi(tok + 7);
		else if (!strncmp(tok, "vlan=", 5))
			pc.vlan = (uint16_t)atoi(tok + 5);
		else if (!strcmp(tok, "no-packed"))
			vc.features_off |= 1ull << HS_VIRTIO_F_RING_PACKED;
		else if (!strcmp(tok, "no-in-order")) /* for the ablation */
			vc.features_off |= 1ull << HS_VIRTIO_F_IN_ORDER;
		else if (!strcmp(tok, "no-announce")) /* the VMM sends SEND_RARP instead */
			vc.features_off |= 1ull << HS_VIRTIO_NET_F_GUEST_ANNOUNCE;
		else if (!strcmp(tok, "no-vcpu-state")) /* for the ablation */
			vc.flags |= HS_VU_NO_VCPU_STATE;
		else if (!strcmp(tok, "no-learn"))
			pc.flags |= HS_PORT_NO_LEARN;
		else if (!strncmp(tok, "mode=", 5))
			vc.socket_mode = (uint32_t)strtoul(tok + 5, NULL, 8);
		else if (!strncmp(tok, "owner=", 6) || !strncmp(tok, "group=", 6)) {
			vc.flags |= HS_VU_SOCKET_OWNER;
			if (!vc.socket_uid && !vc.socket_gid) {
				vc.socket_uid = (uint32_t)getuid();
				vc.socket_gid = (uint32_t)getgid();
			}
			uint32_t id = (uint32_t)strtoul(tok + 6, NULL, 10);
			if (tok[0] == 'o')
				vc.socket_uid = id;
			else
				vc.socket_gid = id;
		} else {
			fprintf(stderr, "unknown option %s\n", tok);
			return -EINVAL;
		}
	}
	char name[32];
	snprintf(name, sizeof(name), "vhu%u", n);
	pc.name = name;
	int rc = hs_port_add(sw, &pc, out);
	if (rc)
		fprintf(stderr, "port %s on %s: %s\n", name, vc.path ? vc.path : "?",
			hs_strerror(rc));
	return rc;
}

/* Parses "IFNAME[,attach][,no-offload][,staged][,no-uring][,queues=N][,vlan=V][,mtu=M]": a tap
 * device (created unless "attach"), brought up, as port IFNAME. */
static int add_tap(hs_switch_t *sw, char *spec, hs_port_t **out)
{
	struct hs_tap_config tc = {.flags = HS_TAP_UP};
	struct hs_port_config pc = {.backend = HS_TAP_BACKEND, .backend_config = &tc,
				    .backend_config_size = sizeof(tc)};
	char *save = NULL, *tok = strtok_r(spec, ",", &save);
	tc.ifname = tok;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "attach"))
			tc.flags |= HS_TAP_ATTACH;
		else if (!strcmp(tok, "no-offload"))
			tc.flags |= HS_TAP_NO_OFFLOAD;
		else if (!strcmp(tok, "staged"))
			tc.flags |= HS_TAP_STAGED;
		else if (!strcmp(tok, "no-uring"))
			tc.flags |= HS_TAP_NO_URING;
		else if (!strncmp(tok, "queues=", 7))
			tc.queues = (uint16_t)atoi(tok + 7);
		else if (!strncmp(tok, "vlan=", 5))
			pc.vlan = (uint16_t)atoi(tok + 5);
		else if (!strncmp(tok, "mtu=", 4))
			tc.mtu = pc.mtu = (uint16_t)atoi(tok + 4);
		else {
			fprintf(stderr, "unknown option %s\n", tok);
			return -EINVAL;
		}
	}
	pc.name = tc.ifname;
	int rc = hs_port_add(sw, &pc, out);
	if (rc)
		fprintf(stderr, "tap port %s: %s\n", tc.ifname ? tc.ifname : "?",
			hs_strerror(rc));
	return rc;
}

/* Parses "IFNAME[,queues=N][,vlan=V][,trunk][,no-offload][,no-promisc][,bypass]":
 * the host interface IFNAME as port IFNAME. */
static int add_uplink(hs_switch_t *sw, char *spec, hs_port_t **out)
{
	struct hs_uplink_config uc = {0};
	struct hs_port_config pc = {.backend = HS_UPLINK_BACKEND, .backend_config = &uc,
				    .backend_config_size = sizeof(uc)};
	char *save = NULL, *tok = strtok_r(spec, ",", &save);
	uc.ifname = tok;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "no-offload"))
			uc.flags |= HS_UPLINK_NO_OFFLOAD;
		else if (!strcmp(tok, "no-promisc"))
			uc.flags |= HS_UPLINK_NO_PROMISC;
		else if (!strcmp(tok, "bypass"))
			uc.flags |= HS_UPLINK_QDISC_BYPASS;
		else if (!strcmp(tok, "trunk"))
			pc.vlan_mode = HS_VLAN_TRUNK;
		else if (!strcmp(tok, "packet"))
			uc.mode = HS_UPLINK_PACKET;
		else if (!strcmp(tok, "xdp"))
			uc.mode = HS_UPLINK_XDP;
		else if (!strcmp(tok, "xdp-zerocopy")) {
			uc.mode = HS_UPLINK_XDP;
			uc.flags |= HS_UPLINK_XDP_ZEROCOPY;
		} else if (!strcmp(tok, "xdp-generic")) {
			uc.mode = HS_UPLINK_XDP;
			uc.flags |= HS_UPLINK_XDP_GENERIC;
		} else if (!strncmp(tok, "queues=", 7))
			uc.queues = (uint16_t)atoi(tok + 7);
		else if (!strncmp(tok, "vlan=", 5))
			pc.vlan = (uint16_t)atoi(tok + 5);
		else {
			fprintf(stderr, "unknown option %s\n", tok);
			return -EINVAL;
		}
	}
	pc.name = uc.ifname;
	int rc = hs_port_add(sw, &pc, out);
	if (rc)
		fprintf(stderr, "uplink port %s: %s\n", uc.ifname ? uc.ifname : "?",
			hs_strerror(rc));
	else
		printf("uplink %s: mode %s\n", uc.ifname, hs_uplink_mode(*out));
	return rc;
}

/* Parses "LOCAL,vni=N[,remote=ADDR]...[,vlan=V][,port=P][,mtu=M][,no-learn][,no-csum]
 * [,ageing=S][,underlay=IF][,follow=DEV[,follow-any-port][,export=BRPORT]]": a VXLAN tunnel
 * endpoint at address LOCAL for VNI N, flooding to every remote VTEP
 * (head-end replication), as port vxlanN; "follow" takes the FDB of the
 * Linux vxlan device DEV (hs_vxlan_follow_with), "follow-any-port" whatever
 * DEV's UDP port, "underlay" sends through interface IF (next hops resolved
 * by the switch), and "export" keeps the switch's local MACs as static
 * entries on BRPORT, a port of DEV's bridge (for FRR's EVPN). */
static int add_vxlan(hs_switch_t *sw, char *spec, hs_port_t **out)
{
	struct hs_vxlan_config vc = {0};
	struct hs_port_config pc = {.backend = HS_VXLAN_BACKEND, .backend_config = &vc,
				    .backend_config_size = sizeof(vc)};
	const char *remotes[16];
	struct hs_vxlan_follow_opts fo = {0};
	unsigned nr = 0;
	char *save = NULL, *tok = strtok_r(spec, ",", &save);
	vc.local = tok;
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strncmp(tok, "vni=", 4))
			vc.vni = (uint32_t)strtoul(tok + 4, NULL, 10);
		else if (!strncmp(tok, "remote=", 7) && nr < 16)
			remotes[nr++] = tok + 7;
		else if (!strncmp(tok, "vlan=", 5))
			pc.vlan = (uint16_t)atoi(tok + 5);
		else if (!strncmp(tok, "port=", 5))
			vc.dst_port = (uint16_t)atoi(tok + 5);
		else if (!strncmp(tok, "mtu=", 4))
			vc.underlay_mtu = (uint16_t)atoi(tok + 4);
		else if (!strncmp(tok, "underlay=", 9))
			vc.underlay_if = tok + 9;
		else if (!strcmp(tok, "no-learn"))
			vc.flags |= HS_VXLAN_NO_LEARN;
		else if (!strcmp(tok, "no-csum"))
			vc.flags |= HS_VXLAN_NO_UDP_CSUM;
		else if (!strncmp(tok, "ageing=", 7))
			vc.ageing_s = (uint32_t)strtoul(tok + 7, NULL, 10);
		else if (!strncmp(tok, "follow=", 7))
			fo.ifname = tok + 7;
		else if (!strcmp(tok, "follow-any-port"))
			fo.flags |= HS_VXLAN_FOLLOW_ANY_PORT;
		else if (!strncmp(tok, "export=", 7))
			fo.export_port = tok + 7;
		else {
			fprintf(stderr, "unknown option %s\n", tok);
			return -EINVAL;
		}
	}
	char name[32];
	snprintf(name, sizeof(name), "vxlan%u", vc.vni);
	pc.name = name;
	int rc = hs_port_add(sw, &pc, out);
	static const uint8_t flood[6];
	for (unsigned i = 0; !rc && i < nr; i++)
		if ((rc = hs_vxlan_fdb_add(*out, flood, remotes[i], 0)))
			fprintf(stderr, "vxlan remote %s: %s\n", remotes[i], hs_strerror(rc));
	if (!rc && (fo.export_port || fo.flags) && !fo.ifname) {
		fprintf(stderr, "vxlan: export and follow-any-port go with follow=DEV\n");
		rc = -EINVAL;
	}
	if (!rc && fo.ifname && (rc = hs_vxlan_follow_with(*out, &fo, sizeof(fo))))
		fprintf(stderr, "vxlan: following %s: %s\n", fo.ifname, hs_strerror(rc));
	if (rc)
		fprintf(stderr, "vxlan port %s: %s\n", name, hs_strerror(rc));
	return rc;
}

static int print_vxlan_entry(void *arg, const struct hs_vxlan_fdb_entry *e)
{
	printf("vxlan %s: %02x:%02x:%02x:%02x:%02x:%02x dst %s%s%s\n", (const char *)arg,
	       e->mac[0], e->mac[1], e->mac[2], e->mac[3], e->mac[4], e->mac[5], e->remote,
	       (e->flags & HS_VXLAN_FDB_STATIC) ? " static" : "",
	       (e->flags & HS_VXLAN_FDB_EXTERN) ? " extern" : "");
	return 0;
}

static int print_fdb_entry(const struct hs_fdb_info *e, void *arg)
{
	(void)arg;
	printf("fdb: %02x:%02x:%02x:%02x:%02x:%02x vlan %u on %s%s, idle %us\n", e->mac[0],
	       e->mac[1], e->mac[2], e->mac[3], e->mac[4], e->mac[5], e->vid,
	       hs_port_name(e->port), e->is_static ? " (static)" : "", e->idle_s);
	return 0;
}

static void print_counter(void *arg, const char *name, uint64_t v)
{
	(void)arg;
	printf(" %s %llu", name, (unsigned long long)v);
}

static void print_stats(hs_switch_t *sw, hs_port_t **ports, unsigned n)
{
	struct hs_switch_stats st;
	hs_switch_get_stats(sw, &st);
	printf("switch: rx %llu tx %llu, %llu MACs, rounds %llu (sender %llu, worker %llu), "
	       "handoffs %llu, quiet_releases %llu\n",
	       (unsigned long long)st.rx_packets, (unsigned long long)st.tx_packets,
	       (unsigned long long)st.fdb_entries, (unsigned long long)st.rounds,
	       (unsigned long long)st.rounds_sender, (unsigned long long)st.rounds_worker,
	       (unsigned long long)st.handoffs, (unsigned long long)st.quiet_releases);
	for (unsigned i = 0; i < n; i++) {
		struct hs_port_stats ps;
		hs_port_get_stats(ports[i], &ps);
		printf("port %s: rx_packets %llu tx_packets %llu rx_bytes %llu tx_bytes %llu "
		       "rx_flooded %llu macs %llu tx_gso_segments %llu tx_csum_sw %llu "
		       "tx_notify %llu tx_backlogged %llu",
		       hs_port_name(ports[i]), (unsigned long long)ps.rx_packets,
		       (unsigned long long)ps.tx_packets, (unsigned long long)ps.rx_bytes,
		       (unsigned long long)ps.tx_bytes, (unsigned long long)ps.rx_flooded,
		       (unsigned long long)ps.fdb_entries,
		       (unsigned long long)ps.tx_gso_segments,
		       (unsigned long long)ps.tx_csum_sw, (unsigned long long)ps.tx_notify,
		       (unsigned long long)ps.tx_backlogged);
		for (int r = 0; r < HS_DROP__COUNT; r++)
			if (ps.drops[r])
				printf(" %s %llu", hs_drop_reason_name(r),
				       (unsigned long long)ps.drops[r]);
		printf("\nport %s backend:", hs_port_name(ports[i]));
		hs_port_backend_counters(ports[i], print_counter, NULL);
		printf("\n");
		hs_vxlan_fdb_dump(ports[i], print_vxlan_entry, (void *)hs_port_name(ports[i]));
	}
	hs_fdb_dump(sw, print_fdb_entry, NULL);
	fflush(stdout);
}

struct stats_ctx {
	hs_switch_t *sw;
	hs_port_t **ports;
	unsigned n;
};

static void stats_cb(hs_timer_t *t, void *arg)
{
	struct stats_ctx *c = arg;
	(void)t;
	print_stats(c->sw, c->ports, c->n);
}

struct sigctx {
	hs_switch_t *sw;
	sigset_t set;
};

static void *signal_main(void *arg)
{
	struct sigctx *s = arg;
	int sig;
	sigwait(&s->set, &sig);
	hs_stop(s->sw);
	return NULL;
}

int main(int argc, char **argv)
{
	struct hs_switch_config cfg = {.name = "vswitch", .log_fn = log_line,
				       .log_level = HS_LOG_INFO};
	char *specs[MAX_PORTS];
	char kinds[MAX_PORTS];
	unsigned nspecs = 0, stats_s = 0;
	const char *pidfile = NULL;
	static const struct option lo[] = {{"workers", required_argument, 0, 'w'},
					   {"burst", required_argument, 0, 'b'},
					   {"vhost-user", required_argument, 0, 'v'},
					   {"tap", required_argument, 0, 't'},
					   {"vxlan", required_argument, 0, 'x'},
					   {"uplink", required_argument, 0, 'u'},
					   {"stats", required_argument, 0, 's'},
					   {"pidfile", required_argument, 0, 'p'},
					   {"keep-quiet", no_argument, 0, 'k'},
					   {"no-backlog", no_argument, 0, 'n'},
					   {"posted-each", no_argument, 0, 'e'},
					   {"busy-poll", no_argument, 0, 'B'},
					   {"poll-us", required_argument, 0, 'P'},
					   {0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "w:b:v:t:x:u:s:p:kneBP:", lo, NULL)) != -1) {
		switch (ch) {
		case 'w': cfg.n_workers = (uint32_t)atoi(optarg); break;
		case 'b': cfg.burst = (uint32_t)atoi(optarg); break;
		case 's': stats_s = (unsigned)atoi(optarg); break;
		case 'p': pidfile = optarg; break;
		case 'k': cfg.flags |= HS_SW_KEEP_QUIET; break; /* for comparison */
		case 'n': cfg.flags |= HS_SW_NO_BACKLOG; break; /* the ablation's row */
		case 'e': cfg.flags |= HS_SW_POSTED_EACH; break; /* for comparison */
		case 'B': cfg.flags |= HS_SW_BUSY_POLL; break;
		case 'P': cfg.poll_us = (uint32_t)atoi(optarg); break;
		case 'v':
		case 't':
		case 'x':
		case 'u':
			if (nspecs < MAX_PORTS) {
				kinds[nspecs] = (char)ch;
				specs[nspecs++] = optarg;
			}
			break;
		default:
			fprintf(stderr, "usage: %s [--workers N] [--busy-poll] [--poll-us US] [--burst N] [--stats S] "
				"[--pidfile F] [--keep-quiet] [--no-backlog] [--posted-each] [--vhost-user PATH[,client][,queues=N]"
				"[,vlan=V][,no-packed][,no-in-order][,no-announce][,no-vcpu-state][,no-learn][,mode=M][,owner=U][,group=G]]... [--tap IFNAME[,attach]"
				"[,no-offload][,staged][,no-uring][,queues=N][,vlan=V][,mtu=M]]... [--vxlan LOCAL,vni=N"
				"[,remote=ADDR]...[,vlan=V][,port=P][,mtu=M][,no-learn][,no-csum][,ageing=S][,underlay=IF][,follow=DEV[,follow-any-port][,export=BRPORT]]]... [--uplink IFNAME"
				"[,queues=N][,vlan=V][,trunk][,no-offload][,no-promisc][,bypass][,packet|xdp|xdp-zerocopy|xdp-generic]]...\n",
				argv[0]);
			return 2;
		}
	}
	/* Signals go to one thread, which stops the loop. */
	struct sigctx sc;
	sigemptyset(&sc.set);
	sigaddset(&sc.set, SIGINT);
	sigaddset(&sc.set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sc.set, NULL);

	hs_switch_t *sw;
	int rc = hs_switch_create(&cfg, &sw);
	if (rc) {
		fprintf(stderr, "hs_switch_create: %s\n", hs_strerror(rc));
		return 1;
	}
	hs_port_t *ports[MAX_PORTS];
	for (unsigned i = 0, nvu = 0; i < nspecs; i++) {
		rc = kinds[i] == 'v'   ? add_vhost_user(sw, specs[i], nvu++, &ports[i])
		     : kinds[i] == 't' ? add_tap(sw, specs[i], &ports[i])
		     : kinds[i] == 'u' ? add_uplink(sw, specs[i], &ports[i])
				       : add_vxlan(sw, specs[i], &ports[i]);
		if (rc) {
			hs_switch_destroy(sw);
			return 1;
		}
	}
	if (pidfile) {
		FILE *f = fopen(pidfile, "w");
		if (f) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
	}
	sc.sw = sw;
	pthread_t st;
	pthread_create(&st, NULL, signal_main, &sc);
	/* Periodic counters from a timer on the switch's own loop. */
	struct stats_ctx sctx = {.sw = sw, .ports = ports, .n = nspecs};
	hs_timer_t *stats_t = NULL;
	if (stats_s)
		hs_timer_add(sw, stats_s * 1000ull, stats_s * 1000ull, stats_cb, &sctx,
			     &stats_t);
	printf("vswitch: %u port(s), %u worker(s); running\n", nspecs, cfg.n_workers);
	fflush(stdout);
	hs_run(sw);
	hs_timer_del(stats_t);
	print_stats(sw, ports, nspecs);
	pthread_join(st, NULL);
	hs_switch_destroy(sw);
	if (pidfile)
		remove(pidfile);
	return 0;
}
