#!/usr/bin/env bash
# Where the vhost-user benchmark's client (dpdk-testpmd, one forwarding
# core) spends its time against a peer: perf samples (cpu-clock, so it
# works without hardware counters) of the client for 3 s, from 3 s into
# the traffic of bench/vhost_user.sh's shape, grouped by function. Debian's
# DPDK is stripped, so a function is an address range of its unwind table
# (.eh_frame), named by its start address in its library; the same
# library build gives the same names, so runs against different peers
# compare.
#
#   bench/vu_client_prof.sh [--build DIR] [--peer hyperswitch|iofwd]
#                           [--shape flood|unicast|closed|closed-flood]
#                           [--args "SWITCH OPTIONS"] [--top N]
#
# Prints the client's Rx-pps (both ports) per second, then the functions'
# shares of the client's samples, most first.
# Needs root (hugepages), dpdk-testpmd and perf (scripts/deps.sh bench).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build peer=hyperswitch shape=flood args="" top=12
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--peer) peer=$2; shift 2 ;;
	--shape) shape=$2; shift 2 ;;
	--args) args=$2; shift 2 ;;
	--top) top=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--peer hyperswitch|iofwd] [--shape S] [--args A] [--top N]" >&2
	   exit 2 ;;
	esac
done
case $peer in hyperswitch|iofwd) ;; *) echo "unknown peer $peer" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "run as root (hugepages)" >&2; exit 1; }
command -v perf >/dev/null || { echo "no perf: scripts/deps.sh bench" >&2; exit 1; }
. "$here/bench/vu_client.sh"
vu_hugepages 1200 1536

work=$(mktemp -d /tmp/hs-vuprof.XXXXXX)
sw="" cl=""
cleanup() {
	[ -z "$cl" ] || kill -INT "$cl" 2>/dev/null
	[ -z "$sw" ] || kill -INT "$sw" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work"
	rm -f /dev/hugepages/hsq-* 2>/dev/null
}
trap cleanup EXIT

if [ "$peer" = hyperswitch ]; then
	vu_switch_start "$work" "$build" "$args"
	rc=$?
	sw=$vu_sw
else
	# shellcheck disable=SC2046 # words, by design (vu_wire_args)
	dpdk-testpmd $(vu_wire_args "$work" hsq-be) </dev/null >"$work/sw.log" 2>&1 &
	sw=$!
	vu_wait_socks "$work"
	rc=$?
fi
[ "$rc" = 0 ] || exit 1
vu_client "$work" 64 "$shape" 10 hsq-cl &
cl=$!
sleep 0.5
tp=$(pgrep -n -x dpdk-testpmd)
sleep 6 # the client starts its traffic 3 s after it is launched
perf record -q -e cpu-clock -F 2000 -o "$work/perf.data" -p "$tp" -- sleep 3 >/dev/null 2>&1
wait "$cl"
cl=
kill -INT "$sw"
wait "$sw"
sw=
echo "client Rx-pps, both ports, per second:" \
	"$(awk '/Rx-pps:/ {v[n++]=$2} END {for (i=0; i+1<n; i+=2) printf "%d ", v[i]+v[i+1]}' "$work/cl.log")"
perf report -i "$work/perf.data" --no-children --sort dso,sym -F overhead,dso,sym 2>/dev/null |
	grep -v '^#' | awk 'NF >= 4 {gsub("%", "", $1); print $1, $2, $4}' >"$work/samples"
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
for line in open(sys.argv[1]):
    pct, dso, sym = line.split()
    name = sym
    if sym.startswith("0x"):
        fde = funcs(dso)
        a = int(sym, 16)
        i = bisect.bisect_right([s for s, _ in fde], a) - 1
        name = hex(fde[i][0]) if i >= 0 and a < fde[i][1] else sym
    share[(dso, name)] += float(pct)
for (dso, name), pct in share.most_common(int(sys.argv[2])):
    print("%6.2f%%  %-28s %s" % (pct, dso, name))
PY
