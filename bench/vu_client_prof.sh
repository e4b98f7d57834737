#!/usr/bin/env bash
# Where the vhost-user benchmark's client (dpdk-testpmd, one forwarding
# core) spends its time against a peer: perf samples (cpu-clock, so it
# works without hardware counters) of the client's forwarding thread
# (rte-worker-0) for 3 s, from 3 s into the traffic of
# bench/vhost_user.sh's shape, grouped by function. Debian's DPDK is
# stripped, so a function is an address range of its unwind table
# (.eh_frame), named by its start address in its library; the same
# library build gives the same names, so runs against different peers
# compare.
#
#   bench/vu_client_prof.sh [--build DIR] [--peer hyperswitch|iofwd]
#                           [--shape flood|unicast|closed|closed-flood]
#                           [--args "SWITCH OPTIONS"] [--client-args ARGS]
#                           [--top N] [--ring] [--probe LIB@ADDR]...
#
# Prints the client's Rx-pps (both ports) in each second of the window,
# then the functions' shares of the thread's samples, most first. With
# --ring, instead of sampling it counts, over the same window and
# thread, the calls of each function of the mempool ring driver
# (librte_mempool_ring.so: the shared pool a core's mbuf cache refills
# from and flushes to), by uprobes at their starts, per 1000 frames.
# --probe LIB@ADDR (repeatable, with or without --ring) counts, the same
# way, the passes through address ADDR (hex) of library LIB (a file name
# under the DPDK directories), e.g. a branch inside a function; the
# addresses are those of one build (benchmarks.md names Debian 12's).
# --client-args: testpmd options for the client (VU_CLIENT_ARGS).
# Needs root (hugepages), dpdk-testpmd and perf (scripts/deps.sh bench).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build peer=hyperswitch shape=flood args="" top=12 ring=0 probes=()
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--peer) peer=$2; shift 2 ;;
	--shape) shape=$2; shift 2 ;;
	--args) args=$2; shift 2 ;;
	--top) top=$2; shift 2 ;;
	--ring) ring=1; shift ;;
	--probe) probes+=("$2"); shift 2 ;;
	--client-args) export VU_CLIENT_ARGS=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--peer hyperswitch|iofwd] [--shape S] [--args A] [--client-args A] [--top N] [--ring] [--probe LIB@ADDR]" >&2
	   exit 2 ;;
	esac
done
case $peer in hyperswitch|iofwd) ;; *) echo "unknown peer $peer" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "run as root (hugepages)" >&2; exit 1; }
command -v perf >/dev/null || { echo "no perf: scripts/deps.sh bench" >&2; exit 1; }
. "$here/bench/vu_client.sh"
vu_hugepages 1200 1536

ringlib=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_mempool_ring.so.23.0
# what is counted instead of sampled: --ring's function starts, "f"
# probes; --probe's addresses, "p" probes
if [ "$ring" = 1 ]; then
	for a in $(readelf --debug-dump=frames "$ringlib" | sed -n 's/.*pc=0*\([0-9a-f]*\)\.\..*/\1/p' | sort -u); do
		probes+=("f:$ringlib@$a")
	done
fi
count=$((${#probes[@]} > 0))

work=$(mktemp -d /tmp/hs-vuprof.XXXXXX)
sw="" cl=""
cleanup() {
	vu_stop "$cl" "$sw"
	rm -rf "$work"
	rm -f /dev/hugepages/hsq-* 2>/dev/null
	[ "$count" = 0 ] || perf probe -q -d 'hsring:*' 2>/dev/null
}
trap cleanup EXIT

if [ "$peer" = hyperswitch ]; then
	vu_switch_start "$work" "$build" "$args"
	rc=$?
	# shellcheck disable=SC2154 # set by vu_switch_start
	sw=$vu_sw
else
	# shellcheck disable=SC2046 # words, by design (vu_wire_args)
	dpdk-testpmd $(vu_wire_args "$work" hsq-be) </dev/null >"$work/sw.log" 2>&1 &
	sw=$!
	vu_wait_socks "$work"
	rc=$?
fi
[ "$rc" = 0 ] || exit 1
if [ "$count" = 1 ]; then
	perf probe -q -d 'hsring:*' 2>/dev/null
	for pr in "${probes[@]}"; do
		kind=p
		case $pr in f:*) kind=f pr=${pr#f:} ;; esac
		lib=${pr%@*} a=${pr#*@}
		a=${a#0x}
		path=$lib
		for d in /usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0; do
			[ -e "$d/$lib" ] && path=$d/$lib
		done
		perf probe -q -x "$path" -a "hsring:$kind$a=0x$a" 2>/dev/null ||
			{ echo "cannot probe $pr" >&2; exit 1; }
	done
fi
t0=$(date +%s%N)
vu_client "$work" 64 "$shape" 10 hsq-cl &
cl=$!
# the client's forwarding lcore's thread
tp=$(vu_client_pid hsq-cl) || exit 1
tid=""
for _ in $(seq 1 100); do
	for t in /proc/"$tp"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = rte-worker-0 ] && tid=${t##*/}
	done
	[ -n "$tid" ] && break
	sleep 0.05
done
[ -n "$tid" ] || { echo "no forwarding thread of the client found" >&2; exit 1; }
# the traffic starts 3 s after the client is launched: 3 s into it
vu_sleep_since "$t0" 6
if [ "$count" = 1 ]; then
	perf stat -x, -e 'hsring:*' -t "$tid" -- sleep 3 2>"$work/ring.txt" >/dev/null
else
	perf record -q -e cpu-clock -F 2000 -o "$work/perf.data" -t "$tid" -- sleep 3 2>"$work/perf.err" >/dev/null
	[ -s "$work/perf.data" ] || { echo "perf record failed:" >&2; cat "$work/perf.err" >&2; exit 1; }
fi
wait "$cl"
cl=
vu_stop "$sw"
sw=
# one print a second from the start of the traffic; the window is (3, 6] s
mapfile -t secs < <(awk '/Rx-pps:/ {v[n++]=$2} END {for (i=6; i<12 && i+1<n; i+=2) print v[i]+v[i+1]}' "$work/cl.log")
echo "client Rx-pps, both ports, in the window's seconds: ${secs[*]}"
if [ "$count" = 1 ]; then
	frames=0
	for x in "${secs[@]}"; do frames=$((frames + x)); done
	[ "$ring" = 1 ] && echo "calls into $ringlib per 1000 frames ($frames frames):"
	awk -F, -v f="$frames" '$3 ~ /^hsring:f/ && $1 > 0 {n = $3; sub("hsring:f", "0x", n);
		printf "%10.3f  %s (%d calls)\n", 1000 * $1 / f, n, $1; t += $1}
		$3 ~ /^hsring:p/ {n = $3; sub("hsring:p", "0x", n); p = p sprintf("%10.3f  passes at %s (%d)\n", 1000 * $1 / f, n, $1)}
		END {if (t || !p) printf "%10.3f  all\n", f ? 1000 * t / f : 0; printf "%s", p}' "$work/ring.txt"
	exit 0
fi
perf report -i "$work/perf.data" --no-children --sort dso,sym -F sample,dso,sym 2>/dev/null |
	grep -v '^#' | awk 'NF >= 4 {print $1, $2, $4}' >"$work/samples"
python3 - "$work/samples" "$top" <<'PY'
import bisect, collections, os, re, subprocess, sys
ranges = {}
def funcs(dso):
    """Start and end of each function of dso, from its unwind table."""
    if dso not in ranges:
        dirs = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0", "/usr/bin"]
        path = next((d + "/" + dso for d in dirs if os.path.exists(d + "/" + dso)), dso)
        fde = sorted((int(a, 16), int(b, 16)) for a, b in re.findall(
            r"pc=([0-9a-f]+)\.\.([0-9a-f]+)",
            subprocess.getoutput(f"readelf --debug-dump=frames {path}")))
        ranges[dso] = fde
    return ranges[dso]
share = collections.Counter()
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
total = sum(int(n) for n, _, _ in rows) or 1
for n, dso, sym in rows:
    pct = 100.0 * int(n) / total
    name = sym
    if sym.startswith("0x"):
        fde = funcs(dso)
        a = int(sym, 16)
        i = bisect.bisect_right([s for s, _ in fde], a) - 1
        name = hex(fde[i][0]) if i >= 0 and a < fde[i][1] else sym
    share[(dso, name)] += pct
for (dso, name), pct in share.most_common(int(sys.argv[2])):
    print("%6.2f%%  %-28s %s" % (pct, dso, name))
PY
