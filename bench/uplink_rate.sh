#!/usr/bin/env bash
# The uplink's receive rate per mode: bench/uplink_rate.c on a veth pair
# in a namespace made here, in interleaved rounds of each mode (packet,
# xdp, xdp-generic), at one frame size; medians and the ratio of each
# AF_XDP mode to AF_PACKET. One core sends (and runs the kernel's receive
# work: the veth's softirq), the other runs the switch and the sink.
#
#   bench/uplink_rate.sh [--build DIR] [--seconds S] [--rounds R] [--bytes B]
#                        [--workers 0|1] [--json FILE]
#
# Needs root and a build with AF_XDP (libxdp-dev, libbpf-dev, clang).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build secs=5 rounds=3 bytes=64 workers=0 json=
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--bytes) bytes=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--seconds S] [--rounds R] [--bytes B] [--workers 0|1] [--json FILE]" >&2; exit 2 ;;
	esac
done
bin=$build/bench/uplink_rate
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$bin" ] || { echo "no $bin: build first" >&2; exit 1; }
[ -f "$build/uplink_xdp_plain.bpf.o" ] || { echo "built without AF_XDP" >&2; exit 1; }

ns="hsr-$$"
cleanup() { ip netns del "$ns" 2>/dev/null; }
trap cleanup EXIT
ip netns add "$ns" && ip -n "$ns" link set lo up &&
	ip -n "$ns" link add ra type veth peer name rb &&
	ip -n "$ns" link set ra up && ip -n "$ns" link set rb up || exit 1

out=$(mktemp)
for r in $(seq 1 "$rounds"); do
	for m in packet xdp xdp-generic; do
		line=$(HS_BENCH_WORKERS=$workers ip netns exec "$ns" "$bin" ra rb "$m" "$secs" "$bytes") ||
			{ echo "round $r $m failed" >&2; exit 1; }
		echo "round $r: $line"
		echo "$line" >>"$out"
	done
done
python3 - "$out" "$bytes" "$secs" "$workers" "$json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = {"test": "uplink_rate", "frame_bytes": int(sys.argv[2]), "seconds": float(sys.argv[3]),
       "workers": int(sys.argv[4])}
med = {}
for m in ("packet", "xdp", "xdp-generic"):
    r = [x for x in rows if x["mode"] == m]
    out[m] = {"got": r[0]["got"], "uplink_rx_pps": [x["uplink_rx_pps"] for x in r],
              "sent_pps": [x["sent_pps"] for x in r],
              "kernel_drops_ps": [x["kernel_drops_ps"] for x in r]}
    med[m] = statistics.median(out[m]["uplink_rx_pps"])
for m in ("xdp", "xdp-generic"):
    out["ratio_%s_to_packet" % m] = med[m] / med["packet"] if med["packet"] else None
print(json.dumps(out))
if sys.argv[5]:
    json.dump(out, open(sys.argv[5], "w"), indent=1)
PY
rm -f "$out"
