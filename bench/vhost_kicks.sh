#!/usr/bin/env bash
# What notifications cost the two sides of a vhost-user switch: the
# system calls of the client (its eventfd writes are its kicks) and of
# the switch (its reads of those eventfds, its epoll looks) while
# bench/vhost_user.sh's traffic runs through the vswitch example (one
# worker, CPU 1), counted with perf's system-call tracepoints over a
# window of the traffic, with the frames moved meanwhile. Variants of the
# switch (its command-line options) run in interleaved rounds:
#
#   bench/vhost_kicks.sh [--build DIR] [--shape flood|unicast|closed|closed-flood]
#                        [--seconds S] [--rounds R] [--variants "default;--posted-each"]
#                        [--json FILE]
#
# Variants are separated by ";", "default" being no option. Per run, per
# second and per million frames: the client's kicks (its writes to its
# eventfds) and all its writes (testpmd's console output included), the
# switch's reads and epoll_wait calls (all its threads); the frames: the
# median and the mean second of both ports' Rx-pps in the window (per
# million frames divides by the mean); the share of frames that went
# through the switch's backlog (its tx_backlogged over its rx, whole run).
# A receiver asked for "buffers posted" (a backlog waits for it) makes
# DPDK's virtio-user write its kick eventfd after every refill: with the
# flood shape's open loop a backlog stands (benchmarks.md, section 6).
#
# Needs root (hugepages), dpdk-testpmd and perf (scripts/deps.sh bench).
# Prints one line a run, then one JSON document (to --json FILE too).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build shape=flood secs=12 rounds=3 variants="default;--posted-each" json=
args="$*"
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--shape) shape=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--variants) variants=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--shape S] [--seconds S] [--rounds R] [--variants LIST] [--json FILE]" >&2
	   exit 2 ;;
	esac
done
case $shape in flood|unicast|closed|closed-flood) ;; *) echo "unknown shape $shape" >&2; exit 2 ;; esac
[ "$secs" -ge 8 ] || { echo "--seconds: 8 or more (3 of warm-up, a window, 1 to spare)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (hugepages)" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "no dpdk-testpmd: scripts/deps.sh bench" >&2; exit 1; }
command -v perf >/dev/null || { echo "no perf: scripts/deps.sh bench" >&2; exit 1; }
vswitch=$build/examples/vswitch
[ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs" >&2; exit 1; }

. "$here/bench/vu_client.sh"
vu_hugepages 1200 1536

work=$(mktemp -d /tmp/hs-vukicks.XXXXXX)
sw="" cl=""
cleanup() {
	vu_stop "$cl" "$sw"
	rm -rf "$work"
	rm -f /dev/hugepages/hsk-* 2>/dev/null
}
trap cleanup EXIT

win=$((secs - 4)) # from 3 s into the traffic to 1 s before its end
# count PID FILE [FDS]: system calls of PID (all its threads) over the
# window: write, read, epoll_wait, and writes to the fds FDS ("N M ...")
count() {
	local filt="fd == 4294967295" f
	for f in ${3:-}; do filt="$filt || fd == $f"; done
	perf stat -x, -e syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait \
		-e syscalls:sys_enter_write --filter "$filt" \
		-p "$1" -- sleep "$win" 2>"$2" >/dev/null
}

# eventfds PID: the eventfd descriptors PID holds. Those of DPDK's
# virtio-user are its rings' kick and call fds; it writes only the kick
# fds (the switch writes the call fds), so its writes to them are kicks.
# Its other writes (testpmd's console output) are not.
eventfds() {
	local f
	for f in /proc/"$1"/fd/*; do
		[ "$(readlink "$f")" = "anon_inode:[eventfd]" ] && printf '%s ' "${f##*/}"
	done
}

# one_run VARIANT ROUND -> appends a JSON line to $work/runs
one_run() {
	local v=$1 args=$1
	[ "$v" = default ] && args=
	vu_switch_start "$work" "$build" "$args"
	local rc=$?
	# shellcheck disable=SC2154 # set by vu_switch_start
	sw=$vu_sw
	[ "$rc" = 0 ] || return 1
	local t0 tp
	t0=$(date +%s%N)
	vu_client "$work" 64 "$shape" "$secs" hsk-cl &
	cl=$!
	tp=$(vu_client_pid hsk-cl) || return 1
	# the client starts its traffic 3 s after it is launched (vu_client)
	vu_sleep_since "$t0" 6
	count "$tp" "$work/cl.perf" "$(eventfds "$tp")" &
	local pc=$!
	count "$sw" "$work/sw.perf"
	wait "$pc"
	wait "$cl"
	cl=
	vu_stop "$sw"
	sw=
	python3 - "$v" "$2" "$work" "$win" <<'PY' >>"$work/runs"
import json, re, statistics, sys
v, rnd, work, win = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def perf(f):
    # in the order counted: write, read, epoll_wait, write to the fds given
    out = {}
    for l in open(f):
        p = l.strip().split(",")
        if len(p) > 2 and p[2].startswith("syscalls:sys_enter_"):
            k = p[2][len("syscalls:sys_enter_"):]
            k = "fd_write" if k in out else k
            out[k] = int(p[0]) if p[0].isdigit() else None
    return out
pps = [float(x) for x in re.findall(r"Rx-pps:\s+(\d+)", open(work + "/cl.log").read())]
secs = [a + b for a, b in zip(pps[0::2], pps[1::2])][3:-1]
log = open(work + "/sw.log").read()
rx = re.search(r"^switch: rx (\d+)", log, re.M)
bl = sum(int(x) for x in re.findall(r"tx_backlogged (\d+)", log))
cl, sw = perf(work + "/cl.perf"), perf(work + "/sw.perf")
mpps = statistics.median(secs) / 1e6 if secs else 0.0
mean = statistics.mean(secs) / 1e6 if secs else 0.0 # frames per second in the window
r = {"variant": v, "round": rnd, "window_s": win, "mpps": round(mpps, 3),
     "mpps_mean": round(mean, 3), "client_kicks": cl.get("fd_write"),
     "client_writes": cl.get("write"), "switch_reads": sw.get("read"),
     "switch_epoll_waits": sw.get("epoll_wait"),
     "backlogged_share": round(bl / int(rx.group(1)), 4) if rx and int(rx.group(1)) else None}
for k in ("client_kicks", "client_writes", "switch_reads", "switch_epoll_waits"):
    if r[k] is not None:
        r[k + "_per_s"] = round(r[k] / win)
        r[k + "_per_mframe"] = round(r[k] / win / mean, 1) if mean else None
print(json.dumps(r))
PY
	tail -n 1 "$work/runs" >&2
}

IFS=';' read -r -a vlist <<<"$variants"
echo "vhost-user kicks: shape $shape, variants ${vlist[*]}, $rounds round(s) of $secs s" >&2
for r in $(seq 1 "$rounds"); do
	for v in "${vlist[@]}"; do
		one_run "$v" "$r" || exit 1
	done
done

python3 - "$work/runs" "$shape" "$secs" "$args" "$build" <<'PY' | tee "${json:-/dev/null}"
import datetime, json, platform, statistics, subprocess, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def cpu():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
out = {"benchmark": "vhost_kicks", "date": datetime.date.today().isoformat(),
       "machine": f"{cpu()}, {subprocess.getoutput('nproc')} CPUs, {platform.release()}",
       "arguments": sys.argv[4], "shape": sys.argv[2], "frame_bytes": 64,
       "seconds_per_run": int(sys.argv[3]),
       "build": sys.argv[5], "runs": runs, "medians": {}}
for v in dict.fromkeys(r["variant"] for r in runs):
    rs = [r for r in runs if r["variant"] == v]
    out["medians"][v] = {k: statistics.median(r[k] for r in rs)
                         for k in ("mpps", "client_kicks_per_s", "client_writes_per_s",
                                   "switch_reads_per_s",
                                   "switch_epoll_waits_per_s", "backlogged_share")
                         if all(r.get(k) is not None for r in rs)}
print(json.dumps(out, indent=1))
PY
