#!/usr/bin/env bash
# The tap benchmark: two network namespaces, each with one interface,
# joined by
#   hyperswitch  the vswitch example with one worker (pinned to CPU 1), a
#                tap per namespace, offloads on
#   bridge       the Linux bridge, a veth pair per namespace
#   hyperswitch-staged  (only if asked for with --modes) hyperswitch with
#                every frame staged before its write (HS_TAP_STAGED), to
#                show what writing from the sender's memory gains
#   hyperswitch-syscalls  (only if asked for) hyperswitch with one read or
#                writev per frame (HS_TAP_NO_URING), to show what batching
#                a round's reads and writes through io_uring gains
# and, in interleaved rounds, iperf3 between them: a TCP stream (Gbit/s at
# the receiver) and a UDP flood of 64-byte payloads (datagrams per second
# that arrive), and the switch's CPU seconds per GB moved in the TCP test;
# for hyperswitch also the frames per second the switch wrote to the
# receiving tap during the UDP test (the median second of its counters):
# on a machine with few cores the receiver's socket, not the switch, may
# be what limits the datagrams that arrive.
# The namespaces, taps, veths and bridge are made here and
# removed on every exit path.
#
#   bench/tap.sh [--build DIR] [--seconds S] [--rounds R] [--json FILE]
#                [--modes "hyperswitch bridge"] [--perf FILE]
#   --perf FILE  also profiles the whole machine (perf record -a -e cpu-clock,
#                the middle half of the first hyperswitch TCP test) and
#                writes the top of `perf report --sort comm,sym` to FILE
#
# Needs root, iproute2 and iperf3 (scripts/deps.sh bench).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build secs=8 rounds=3 json= modes="hyperswitch bridge" tapopt= perf_out=
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	--modes) modes=$2; shift 2 ;;
	--perf) perf_out=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--seconds S] [--rounds R] [--json FILE] [--modes M]" >&2; exit 2 ;;
	esac
done
vswitch=$build/examples/vswitch
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "no iperf3: scripts/deps.sh bench" >&2; exit 1; }
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "no /dev/net/tun" >&2; exit 1; }
fi
[ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }
[ -z "$perf_out" ] || command -v perf >/dev/null || { echo "no perf (package linux-perf)" >&2; exit 1; }

id=$$
na=hsb-$id-a nb=hsb-$id-b
ta=hsb${id}a tb=hsb${id}b br=hsb${id}br
work=$(mktemp -d /tmp/hs-tapbench.XXXXXX)
vs=
teardown() {
	[ -n "$vs" ] && { kill -INT "$vs" 2>/dev/null; sleep 0.5; kill -KILL "$vs" 2>/dev/null; }
	vs=
	wait 2>/dev/null
	for n in "$na" "$nb"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	ip link del "$br" 2>/dev/null
	for l in "$ta" "$tb" "${ta}p" "${tb}p"; do ip link del "$l" 2>/dev/null; done
}
cleanup() { teardown; rm -rf "$work"; }
trap cleanup EXIT

addr() { # ns dev ip
	ip -n "$1" link set lo up
	ip -n "$1" addr add "$3/24" dev "$2"
	ip -n "$1" link set "$2" up
}

setup_hyperswitch() {
	ip netns add "$na" && ip netns add "$nb" || return 1
	taskset -c 1 "$vswitch" --workers 1 --stats 1 --tap "$ta$tapopt" --tap "$tb$tapopt" \
		>"$work/vs.log" 2>&1 &
	vs=$!
	local end=$((SECONDS + 10))
	until grep -q running "$work/vs.log"; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
	ip link set "$ta" netns "$na" && ip link set "$tb" netns "$nb" || return 1
	addr "$na" "$ta" 10.78.0.1 && addr "$nb" "$tb" 10.78.0.2
}

setup_hyperswitch-staged() { tapopt=,staged; setup_hyperswitch; local rc=$?; tapopt=; return $rc; }
setup_hyperswitch-syscalls() { tapopt=,no-uring; setup_hyperswitch; local rc=$?; tapopt=; return $rc; }

setup_bridge() {
	ip netns add "$na" && ip netns add "$nb" || return 1
	ip link add "$br" type bridge || return 1
	ip link set "$br" up
	ip link add "$ta" type veth peer name "${ta}p" && ip link add "$tb" type veth peer name "${tb}p" || return 1
	ip link set "$ta" netns "$na" && ip link set "$tb" netns "$nb" || return 1
	for p in "${ta}p" "${tb}p"; do
		ip link set "$p" master "$br" && ip link set "$p" up || return 1
	done
	addr "$na" "$ta" 10.78.0.1 && addr "$nb" "$tb" 10.78.0.2
}

# cpu_ticks: the vswitch's user+system time so far (clock ticks), 0 for the bridge
cpu_ticks() {
	if [ -n "$vs" ]; then awk '{print $14 + $15}' "/proc/$vs/stat" 2>/dev/null || echo 0; else echo 0; fi
}

# stats_lines: how many counter lines the vswitch has printed (0: none)
stats_lines() {
	if [ -n "$vs" ]; then grep -c '^switch: rx' "$work/vs.log"; else echo 0; fi
}
# sw_rate FROM TO: the median, over the seconds between counter lines FROM
# and TO (1-based), of the frames the switch transmitted per second
sw_rate() {
	[ "$2" -gt $(($1 + 1)) ] || { echo 0; return; }
	grep '^switch: rx' "$work/vs.log" | sed -n "$1,$2p" | python3 -c '
import re, statistics, sys
tx = [int(re.search(r"tx (\d+)", l).group(1)) for l in sys.stdin]
print(int(statistics.median(b - a for a, b in zip(tx, tx[1:]))))'
}

# measure MODE ROUND: appends "MODE ROUND tcp_gbps udp_pps cpu_s_per_gb
# sw_fps" to results (the switch's CPU seconds per GB of the TCP test and
# frames it wrote per second in the UDP test; 0 for the bridge)
measure() {
	local tcp=0 udp=0 c0 c1 cpugb l0 l1 swfps
	ip netns exec "$na" ping -c 2 -W 2 10.78.0.2 >/dev/null 2>&1 || { echo "$1: no connectivity" >&2; return; }
	ip netns exec "$nb" iperf3 -s -1 -B 10.78.0.2 >/dev/null 2>&1 &
	sleep 0.5
	c0=$(cpu_ticks)
	local prof=
	if [ -n "$perf_out" ] && [ "$1" = hyperswitch ] && [ ! -e "$work/perf.data" ]; then
		(sleep "$(awk "BEGIN { print $secs / 4 }")"
		 perf record -a -e cpu-clock -o "$work/perf.data" -- sleep "$(awk "BEGIN { print $secs / 2 }")" \
			 >/dev/null 2>&1) &
		prof=$!
	fi
	ip netns exec "$na" iperf3 -c 10.78.0.2 -t "$secs" -J >"$work/tcp.json" 2>/dev/null
	c1=$(cpu_ticks)
	if [ -n "$prof" ]; then
		wait "$prof"
		perf report -i "$work/perf.data" --no-children --sort comm,sym --stdio 2>/dev/null |
			grep -v '^#' | grep -v '^$' | head -n 40 >"$perf_out"
	fi
	wait $! 2>/dev/null
	tcp=$(python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e9))' "$work/tcp.json" 2>/dev/null || echo 0)
	cpugb=$(python3 -c '
import json, os, sys
b = json.load(open(sys.argv[1]))["end"]["sum_received"]["bytes"]
print("%.3f" % ((int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK") / (b / 1e9)))' \
		"$work/tcp.json" "$c0" "$c1" 2>/dev/null || echo 0)
	ip netns exec "$nb" iperf3 -s -1 -B 10.78.0.2 >/dev/null 2>&1 &
	sleep 0.5
	l0=$(stats_lines)
	ip netns exec "$na" iperf3 -c 10.78.0.2 -u -b 0 -l 64 -t "$secs" -J >"$work/udp.json" 2>/dev/null
	l1=$(stats_lines)
	wait $! 2>/dev/null
	# the seconds wholly inside the test: its first and last are partial
	swfps=$(sw_rate $((l0 + 2)) "$l1")
	udp=$(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum"]
print(int((s["packets"] - s["lost_packets"]) / s["seconds"]))' "$work/udp.json" 2>/dev/null || echo 0)
	echo "round $2 $1: TCP $tcp Gbit/s (switch CPU $cpugb s/GB), UDP 64 B $udp datagrams/s" \
		"(switch wrote $swfps frames/s)" >&2
	echo "$1 $2 $tcp $udp $cpugb $swfps" >>"$work/results.txt"
}

echo "tap benchmark: $rounds round(s), $secs s per test" >&2
: >"$work/results.txt"
for r in $(seq 1 "$rounds"); do
	for mode in $modes; do
		if "setup_$mode"; then
			measure "$mode" "$r"
		else
			echo "$mode: setup failed" >&2
		fi
		teardown
	done
done

python3 - "$work/results.txt" "$secs" "$rounds" <<'EOF' | tee "$work/out.json"
import json, statistics, sys, platform, datetime, subprocess
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
res = {}
for mode, r, tcp, udp, cpugb, swfps in rows:
    res.setdefault(mode, {"tcp": [], "udp": [], "cpu": [], "sw": []})
    res[mode]["tcp"].append(float(tcp))
    res[mode]["udp"].append(int(udp))
    res[mode]["cpu"].append(float(cpugb))
    res[mode]["sw"].append(int(swfps))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
out = {"benchmark": "tap: two namespaces through hyperswitch (taps, 1 worker) vs the Linux bridge (veths)",
       "date": datetime.date.today().isoformat(),
       "machine": f"{cpu}, {subprocess.getoutput('nproc')} CPUs, {platform.release()}",
       "seconds_per_test": int(sys.argv[2]), "rounds": int(sys.argv[3]), "results": {}, "ratios": {}}
for mode, v in res.items():
    out["results"][mode] = {"tcp_gbps_runs": v["tcp"], "tcp_gbps_median": statistics.median(v["tcp"]),
                            "udp64_pps_runs": v["udp"], "udp64_pps_median": statistics.median(v["udp"])}
    if any(v["cpu"]):
        out["results"][mode]["switch_cpu_s_per_gb_runs"] = v["cpu"]
        out["results"][mode]["switch_cpu_s_per_gb_median"] = statistics.median(v["cpu"])
    if any(v["sw"]):
        out["results"][mode]["udp64_switch_fps_runs"] = v["sw"]
        out["results"][mode]["udp64_switch_fps_median"] = statistics.median(v["sw"])
h, b = out["results"].get("hyperswitch"), out["results"].get("bridge")
st = out["results"].get("hyperswitch-staged")
if h and st and st["tcp_gbps_median"]:
    out["ratios"]["tcp_vs_staged"] = round(h["tcp_gbps_median"] / st["tcp_gbps_median"], 2)
sc = out["results"].get("hyperswitch-syscalls")
if h and sc:
    if sc["tcp_gbps_median"]:
        out["ratios"]["tcp_vs_syscalls"] = round(h["tcp_gbps_median"] / sc["tcp_gbps_median"], 2)
    if sc["udp64_pps_median"]:
        out["ratios"]["udp64_vs_syscalls"] = round(h["udp64_pps_median"] / sc["udp64_pps_median"], 2)
    if sc.get("udp64_switch_fps_median") and h.get("udp64_switch_fps_median"):
        out["ratios"]["udp64_switch_fps_vs_syscalls"] = round(
            h["udp64_switch_fps_median"] / sc["udp64_switch_fps_median"], 2)
if h and b:
    if b["tcp_gbps_median"]:
        out["ratios"]["tcp"] = round(h["tcp_gbps_median"] / b["tcp_gbps_median"], 2)
    if b["udp64_pps_median"]:
        out["ratios"]["udp64"] = round(h["udp64_pps_median"] / b["udp64_pps_median"], 2)
print(json.dumps(out, indent=1))
for mode, v in out["results"].items():
    print("%-18s TCP %6.2f Gbit/s (%s)   UDP 64 B %9d/s (%s)" % (mode, v["tcp_gbps_median"],
          " ".join("%.2f" % x for x in v["tcp_gbps_runs"]), v["udp64_pps_median"],
          " ".join(str(x) for x in v["udp64_pps_runs"])) +
          ("   switch CPU %.3f s/GB" % v["switch_cpu_s_per_gb_median"]
           if "switch_cpu_s_per_gb_median" in v else "") +
          ("   switch wrote %d frames/s (UDP)" % v["udp64_switch_fps_median"]
           if "udp64_switch_fps_median" in v else ""), file=sys.stderr)
for k, v in out["ratios"].items():
    print("ratio, hyperswitch to %s: %.2fx" % (k if "_vs_" in k else "bridge, " + k, v), file=sys.stderr)
EOF
[ -z "$json" ] || cp "$work/out.json" "$json"
