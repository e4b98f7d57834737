/*
 * hs-bench - hyperswitch benchmarks with machine-readable output.
 *
 *   single    frames through mem ports on one core, next to memcpy
 *   ablation  the Hyper-Switch mechanisms switched on one by one
 *   scaling   aggregate throughput as sender/receiver pairs grow
 *   latency   one-way latency to a blocked receiver
 *   idle      CPU used by an idle switch
 *   fanin     1..8 senders (and one per CPU on >9 CPUs) to one receiver port
 *   xen       Xen vifs through the emulated hypervisor, with copy accounting
 *   all       every one of them
 *
 * Every figure is printed as a table and, with --json, written as one JSON
 * document per command; the last line of stdout is a one-line summary.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* ---- main --------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: hs-bench COMMAND [--quick] [--seconds S] [--json FILE]\n"
		"       [--frame BYTES] [--ports N] [--macs N]   (run only matching cases)\n"
		"       [--ring N]   mem ring entries per queue (default 256); ablation,\n"
		"                    scaling: also the frames a sender keeps in flight\n"
		"       [--repeat N] runs per case; the median is reported (max 32)\n"
		"       [--flood]    single: every port sends from one MAC to one never\n"
		"                    learned (testpmd flowgen's traffic): each burst moves\n"
		"                    the source and is flooded\n"
		"       [--vlan VID] single: ports are trunks, frames tagged VID\n"
		"       [--rx-poll]  ablation, scaling: receivers poll (yield when\n"
		"                    empty, a guest that polls) instead of sleeping\n"
		"commands:\n"
		"  single    frames through mem ports on one core vs memcpy\n"
		"  ablation  baseline, +single copy, +batching, +offload\n"
		"  scaling   aggregate throughput for 1..16 sender/receiver pairs\n"
		"  latency   one-way latency to a blocked receiver, p50/p99\n"
		"  idle      CPU used by an idle switch with workers\n"
		"  fanin     1..8 senders (one per CPU too, >9 CPUs) to one receiver port\n"
		"  xen       Xen vifs (emulated hypervisor): rate, grant copies per frame\n"
		"  all       all of the above (--json names a directory)\n");
}

/* A count option's value: decimal digits only, so that "--ring abc" or
 * "4096x" is refused instead of read as 0 (the default) or 4096. */
static int num(const char *s, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (!isdigit((unsigned char)*s) || *end || errno || v > UINT_MAX) {
		fprintf(stderr, "hs-bench: '%s' is not a count\n", s);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_opts o = {0};
	if (argc < 2) {
		usage();
		return 2;
	}
	const char *cmd = argv[1];
	static const struct option lo[] = {{"quick", no_argument, 0, 'q'},
					   {"seconds", required_argument, 0, 's'},
					   {"json", required_argument, 0, 'j'},
					   {"frame", required_argument, 0, 'f'},
					   {"ports", required_argument, 0, 'p'},
					   {"macs", required_argument, 0, 'm'},
					   {"ring", required_argument, 0, 'r'},
					   {"repeat", required_argument, 0, 'n'},
					   {"flood", no_argument, 0, 'F'},
					   {"rx-poll", no_argument, 0, 'P'},
					   {"vlan", required_argument, 0, 'V'},
					   {0, 0, 0, 0}};
	int ch;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "qs:j:f:p:m:r:n:", lo, NULL)) != -1) {
		switch (ch) {
		case 'f': if (num(optarg, &o.only_frame)) return 2; break;
		case 'p': if (num(optarg, &o.only_ports)) return 2; break;
		case 'm': if (num(optarg, &o.only_macs)) return 2; break;
		case 'r': if (num(optarg, &o.ring)) return 2; break;
		case 'n': if (num(optarg, &o.repeat)) return 2; break;
		case 'q': o.quick = 1; break;
		case 'F': o.flood = 1; break;
		case 'P': o.rx_poll = 1; break;
		case 'V':
			if (num(optarg, &o.vlan) || !o.vlan || o.vlan > 4094) {
				fprintf(stderr, "--vlan: a VID from 1 to 4094\n");
				return 2;
			}
			break;
		case 's': o.seconds = atof(optarg); break;
		case 'j': o.json_path = optarg; break;
		default: usage(); return 2;
		}
	}
	if (o.vlan && strcmp(cmd, "single")) {
		fprintf(stderr, "--vlan: for single only\n");
		return 2;
	}
	if (o.rx_poll && strcmp(cmd, "ablation") && strcmp(cmd, "scaling") &&
	    strcmp(cmd, "all")) {
		fprintf(stderr, "--rx-poll: for ablation and scaling only\n");
		return 2;
	}
	/* --ring is checked here, before anything runs: "all" would otherwise
	 * run single with it and stop at ablation. */
	if (o.ring && strcmp(cmd, "single") && strcmp(cmd, "ablation") &&
	    strcmp(cmd, "scaling") && strcmp(cmd, "all")) {
		fprintf(stderr, "--ring: for single, ablation and scaling only\n");
		return 2;
	}
	if (o.ring && !bench_ring_ok(o.ring)) {
		fprintf(stderr, "--ring: a power of two from %u to %u\n", BENCH_RING_MIN,
			BENCH_RING_MAX);
		return 2;
	}
	if (!strcmp(cmd, "single"))
		return cmd_single(&o);
	if (!strcmp(cmd, "ablation"))
		return cmd_ablation(&o);
	if (!strcmp(cmd, "scaling"))
		return cmd_scaling(&o);
	if (!strcmp(cmd, "latency"))
		return cmd_latency(&o);
	if (!strcmp(cmd, "idle"))
		return cmd_idle(&o);
	if (!strcmp(cmd, "fanin"))
		return cmd_fanin(&o);
#ifdef HS_BENCH_XEN
	if (!strcmp(cmd, "xen"))
		return cmd_xen(&o);
#endif
	if (!strcmp(cmd, "all"))
		return cmd_all(&o);
	usage();
	return 2;
}
