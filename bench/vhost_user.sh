#!/usr/bin/env bash
# The vhost-user benchmark: two DPDK virtio-user clients (one dpdk-testpmd,
# one forwarding core on CPU 0) exchange traffic through
#   hyperswitch  the vswitch example, one worker, CPU 1
#   ovs-dpdk     Open vSwitch with its DPDK datapath, bridge with action
#                NORMAL (L2 learning), PMD thread on CPU 1
#   iofwd        testpmd's own vhost PMD in io-forward mode, CPU 1: a wire
#                with no switching logic (the ceiling of a two-copy switch)
#   base         the vswitch example of another build (--base DIR), as
#                hyperswitch: interleaved A/B runs of a change; --base-opts
#                adds port options (e.g. ",no-in-order", with --base naming
#                the same build: one mechanism off), --base-args switch
#                options (e.g. "--no-backlog")
# in interleaved rounds (the machine is shared and noisy: compare figures
# of one run). Each run lasts SECONDS; its figure is the median, after 3 s
# of warm-up, of the per-second sum of both clients' Rx-pps. The traffic
# comes in four shapes (--shapes):
#   flood    open loop, testpmd flowgen: this DPDK sends every frame from
#            one fixed MAC to another on both ports, so a learning switch
#            floods every frame and moves the source every burst
#   unicast  saturated loop, testpmd mac mode: each port sends with its own
#            MAC to the other's (learned unicast), whatever a port receives
#            it sends on; 64 bursts per port are put in at the start, more
#            than the rings hold, so every stage stays busy as in an open
#            loop (the surplus is dropped once, at the start)
#   closed   closed loop, the same with only 4 bursts per port in flight:
#            the switch's per-round latency bounds the rate, as it bounds
#            TCP between guests
#   closed-flood  the closed loop toward a MAC no port has: every frame
#            flooded (to the one other port), sources learned and stable;
#            against closed it isolates the flood from flood's open loop
#            and moving source (not in the default list)
#
#   bench/vhost_user.sh [--build DIR] [--seconds S] [--rounds R]
#                       [--sizes "64 1518"] [--peers "hyperswitch ovs-dpdk iofwd"]
#                       [--shapes "flood unicast closed"] [--base DIR]
#                       [--base-opts OPTS] [--base-args ARGS] [--client-args ARGS]
#                       [--base-client-args ARGS] [--json FILE] [--logs DIR]
#
# --client-args passes testpmd options to the clients of every run (e.g.
# --mbcache=512: their per-core mbuf cache, which the flood shape's
# refills run through; benchmarks.md, section 6); --base-client-args to
# the clients of the base peer's runs only, instead (with --base naming
# the same build: the client's setting compared, interleaved).
# --logs DIR keeps each run's switch and client output there
# (PEER-SHAPE-BYTES-rROUND.sw.log, .cl.log: the vswitch prints its counters,
# rounds included, and its forwarding table on exit).
#
# Needs root (hugepages), dpdk-testpmd (dpdk-dev), ovs-vswitchd-dpdk
# (openvswitch-switch-dpdk): scripts/deps.sh bench installs them.
# Prints a table, the ratios, and one JSON document (to --json FILE too).
# Also the phases: machine A's rate moves between levels (mostly about
# 6-7 and 12-21 Mpps at 64 B), for a whole run or within one; so the
# seconds of all runs of a shape are pooled, split at their largest
# jump, and the peers compared within each level ("phases" in the JSON;
# bench/vu_phases.py says how, and pools the JSON of several runs).
# Gbps counts frame bytes (no preamble, no CRC): Mpps x size x 8 / 1000.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build secs=10 rounds=3 sizes="64 1518" peers="hyperswitch ovs-dpdk iofwd" json=
shapes="flood unicast closed" base= base_opts= base_args= base_client= logs=
args="$*"
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--sizes) sizes=$2; shift 2 ;;
	--peers) peers=$2; shift 2 ;;
	--shapes) shapes=$2; shift 2 ;;
	--base) base=$2; shift 2 ;;
	--base-opts) base_opts=$2; shift 2 ;;
	--base-args) base_args=$2; shift 2 ;;
	--client-args) export VU_CLIENT_ARGS=$2; shift 2 ;;
	--base-client-args) base_client=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	--logs) logs=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--seconds S] [--rounds R] [--sizes LIST] [--peers LIST] [--shapes LIST] [--base DIR] [--base-opts OPTS] [--base-args ARGS] [--client-args ARGS] [--base-client-args ARGS] [--json FILE] [--logs DIR]" >&2
	   exit 2 ;;
	esac
done
[ -z "$logs" ] || mkdir -p "$logs" || exit 1
vswitch=$build/examples/vswitch
ovs=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk
[ "$(id -u)" = 0 ] || { echo "run as root (hugepages)" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "no dpdk-testpmd: scripts/deps.sh bench" >&2; exit 1; }
[ -x "$vswitch" ] || { echo "no $vswitch: build first (cmake --build build)" >&2; exit 1; }
case " $peers " in *" base "*)
	[ -x "$base/examples/vswitch" ] || { echo "peer base needs --base DIR (a build)" >&2; exit 1; } ;;
esac
case " $peers " in *" ovs-dpdk "*)
	[ -x "$ovs" ] || { echo "no $ovs: scripts/deps.sh bench" >&2; exit 1; } ;;
esac
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 1; }

. "$here/bench/vu_client.sh"
vu_hugepages 1200 1536

work=$(mktemp -d /tmp/hs-vubench.XXXXXX)
pids=()
stop_all() {
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
	sleep 1
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	pids=()
	wait 2>/dev/null
}
# Open vSwitch's netdev datapath leaves taps behind (its bridge's, and
# ovs-netdev): removed unless they were there before.
had_ovs_netdev=false
ip link show ovs-netdev >/dev/null 2>&1 && had_ovs_netdev=true
cleanup() {
	stop_all
	rm -rf "$work"
	rm -f /dev/hugepages/hsb-* 2>/dev/null
	ip link del hsb-br0 2>/dev/null
	$had_ovs_netdev || ip link del ovs-netdev 2>/dev/null
}
trap cleanup EXIT

wait_for_sock() { # path seconds
	local end=$((SECONDS + $2))
	until [ -S "$1" ]; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

# ---- the switches under test: each listens on $work/s0 and $work/s1 ----
start_hyperswitch() { # [vswitch binary] [port options] [switch options]
	# shellcheck disable=SC2086 # switch options: words, by design
	taskset -c 1 "${1:-$vswitch}" --workers 1 ${3:-} --vhost-user "$work/s0${2:-}" \
		--vhost-user "$work/s1${2:-}" \
		>"$work/sw.log" 2>&1 &
	pids+=("$!")
}

start_iofwd() {
	# shellcheck disable=SC2046 # words, by design (vu_wire_args)
	dpdk-testpmd $(vu_wire_args "$work" hsb-be) </dev/null >"$work/sw.log" 2>&1 &
	pids+=("$!")
}

start_ovs() {
	local d=$work/ovs
	rm -rf "$d"
	mkdir -p "$d"
	export OVS_RUNDIR=$d OVS_LOGDIR=$d OVS_DBDIR=$d
	ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
	ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" --pidfile="$d/ovsdb.pid" \
		--log-file="$d/ovsdb.log" --detach 2>>"$d/start.log" || return 1
	pids+=("$(cat "$d/ovsdb.pid")")
	local vs=(ovs-vsctl "--db=unix:$d/db.sock")
	"${vs[@]}" --no-wait init
	"${vs[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
		other_config:dpdk-lcore-mask=0x1 other_config:pmd-cpu-mask=0x2 \
		other_config:dpdk-socket-mem=1024 \
		"other_config:dpdk-extra=--no-pci --file-prefix=hsb-ovs"
	"$ovs" "unix:$d/db.sock" --pidfile="$d/vswitchd.pid" --detach \
		--log-file="$d/vswitchd.log" 2>>"$d/start.log" || return 1
	pids+=("$(cat "$d/vswitchd.pid")")
	"${vs[@]}" add-br hsb-br0 -- set bridge hsb-br0 datapath_type=netdev || return 1
	"${vs[@]}" add-port hsb-br0 vh0 -- set Interface vh0 type=dpdkvhostuser || return 1
	"${vs[@]}" add-port hsb-br0 vh1 -- set Interface vh1 type=dpdkvhostuser || return 1
	wait_for_sock "$d/vh0" 20 && wait_for_sock "$d/vh1" 20 || return 1
	ln -sf "$d/vh0" "$work/s0"
	ln -sf "$d/vh1" "$work/s1"
	unset OVS_RUNDIR OVS_LOGDIR OVS_DBDIR
}

# one_run PEER SIZE SHAPE ROUND -> prints Mpps (empty on failure)
one_run() {
	rm -f "$work/s0" "$work/s1" "$work/cl.log"
	case $1 in
	hyperswitch) start_hyperswitch ;;
	base) start_hyperswitch "$base/examples/vswitch" "$base_opts" "$base_args" ;;
	iofwd) start_iofwd ;;
	ovs-dpdk) start_ovs || { echo "ovs failed to start" >&2; stop_all; return; } ;;
	esac
	if ! { wait_for_sock "$work/s0" 30 && wait_for_sock "$work/s1" 30; }; then
		echo "$1 did not open its sockets" >&2
		tail -n 5 "$work/sw.log" >&2
		stop_all
		return
	fi
	local ca=${VU_CLIENT_ARGS:-}
	[ "$1" = base ] && [ -n "$base_client" ] && ca=$base_client
	VU_CLIENT_ARGS=$ca vu_client "$work" "$2" "$3" "$secs" hsb-cl
	stop_all
	cp "$work/cl.log" "$work/cl-$1-$2-$3.log"
	if [ -n "$logs" ]; then
		cp "$work/sw.log" "$logs/$1-$3-$2-r$4.sw.log" 2>/dev/null
		cp "$work/cl.log" "$logs/$1-$3-$2-r$4.cl.log"
	fi
	[ -d "$work/ovs" ] && cp "$work/ovs/vswitchd.log" "$work/ovs-$2-$3.log" 2>/dev/null
	# Per-second Rx-pps of port 0 and port 1, summed; drop 3 s of warm-up
	# (kept, one file a run, for the phases below); the run's median.
	local sec=$work/sec-$1-$3-$2-r$4.txt
	awk '/Rx-pps:/ {v[n++]=$2} END {for (i=0; i+1<n; i+=2) print v[i]+v[i+1]}' "$work/cl.log" |
		tail -n +4 >"$sec"
	sort -n "$sec" | awk '{a[NR]=$1} END {if (NR) printf "%.3f\n", a[int((NR+1)/2)]/1e6}'
}

echo "vhost-user benchmark: peers $peers; sizes $sizes; shapes $shapes;" \
	"$rounds round(s) of $secs s" >&2
results=()
for r in $(seq 1 "$rounds"); do
	for shape in $shapes; do
		for size in $sizes; do
			for peer in $peers; do
				m=$(one_run "$peer" "$size" "$shape" "$r")
				[ -n "$m" ] || m=0
				echo "round $r $shape size $size $peer: $m Mpps" >&2
				results+=("$peer $shape $size $r $m")
			done
		done
	done
done

printf '%s\n' "${results[@]}" > "$work/results.txt"
python3 - "$work/results.txt" "$secs" "$rounds" "$args" "$work" "$here/bench" <<'EOF' | tee "$work/out.json"
import glob, json, os, re, statistics, sys, platform, datetime, subprocess
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
secs, rounds = int(sys.argv[2]), int(sys.argv[3])
res = {}
for peer, shape, size, r, m in rows:
    res.setdefault((peer, shape, int(size)), []).append(float(m))
def cpu():
    for l in open('/proc/cpuinfo'):
        if l.startswith('model name'):
            return l.split(':', 1)[1].strip()
shape_doc = {
    "flood": "open loop, testpmd flowgen: one fixed MAC pair on both ports (flooded, source moves)",
    "unicast": "saturated loop, testpmd mac mode, learned unicast MACs, 64 bursts per port put in",
    "closed": "closed loop, testpmd mac mode, learned unicast MACs, 4 bursts per port in flight",
    "closed-flood": "closed loop, testpmd mac mode, 4 bursts per port, toward a MAC no port has (flooded, sources stable)",
}
out = {
    "benchmark": "vhost-user, two virtio-user clients (testpmd, 1 core) through the switch (1 core)",
    "date": datetime.date.today().isoformat(),
    "machine": f"{cpu()}, {subprocess.getoutput('nproc')} CPUs, {platform.release()}",
    "arguments": sys.argv[4],
    "seconds_per_run": secs, "rounds": rounds,
    "shapes": {k: v for k, v in shape_doc.items() if any(k == s for _, s, _ in res)},
    "results": [], "ratios": [],
}
order = {"flood": 0, "unicast": 1, "closed": 2, "closed-flood": 3}
med = {}
for (peer, shape, size), v in sorted(res.items(),
                                     key=lambda kv: (order.get(kv[0][1], 9), kv[0][2], kv[0][0])):
    m = statistics.median(v)
    med[(peer, shape, size)] = m
    out["results"].append({"peer": peer, "shape": shape, "frame_bytes": size, "mpps_runs": v,
                           "mpps_median": round(m, 3),
                           "gbps_median": round(m * size * 8 / 1000, 2)})
for shape, size in sorted({(sh, sz) for _, sh, sz in med}, key=lambda k: (order.get(k[0], 9), k[1])):
    hs = med.get(("hyperswitch", shape, size))
    for other in ("ovs-dpdk", "iofwd", "base"):
        o = med.get((other, shape, size))
        if hs is not None and o:
            # ratio of medians, and the range of per-round ratios
            per = [a / b for a, b in zip(res[("hyperswitch", shape, size)],
                                         res[(other, shape, size)]) if b]
            out["ratios"].append({"shape": shape, "frame_bytes": size, "vs": other,
                                  "ratio_of_medians": round(hs / o, 2),
                                  "per_round": [round(x, 2) for x in per]})
# Phases (bench/vu_phases.py): every run's seconds go into the JSON
# ("seconds"), so that a split can be checked, and runs pooled later.
sys.path.insert(0, sys.argv[6])
from vu_phases import phases, describe
out["seconds"] = {}
for f in sorted(glob.glob(os.path.join(sys.argv[5], "sec-*.txt"))):
    out["seconds"][os.path.basename(f)[4:-4]] = [float(x) / 1e6 for x in open(f).read().split()]
out["phases"] = phases({(k, 0): v for k, v in out["seconds"].items()})
print(json.dumps(out, indent=1))
tab = sys.stderr
print("\n%-12s %-12s %6s %10s %10s   %s" % ("peer", "shape", "bytes", "Mpps", "Gbps", "runs (Mpps)"),
      file=tab)
for e in out["results"]:
    print("%-12s %-12s %6d %10.2f %10.2f   %s" % (e["peer"], e["shape"], e["frame_bytes"],
          e["mpps_median"], e["gbps_median"], " ".join("%.2f" % x for x in e["mpps_runs"])),
          file=tab)
for e in out["ratios"]:
    print("hyperswitch / %-9s %-8s at %4d B: %.2fx (rounds: %s)" % (e["vs"], e["shape"],
          e["frame_bytes"], e["ratio_of_medians"], " ".join("%.2f" % x for x in e["per_round"])),
          file=tab)
describe(out["phases"], tab)
EOF
[ -z "$json" ] || cp "$work/out.json" "$json"
