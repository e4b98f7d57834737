#!/usr/bin/env bash
# What a large VXLAN table costs (bench/vxlan_table.c): a control plane's
# adds into a full table of learned entries, and the delay of datagrams
# into the switch while the ageing timer runs over it (nothing to age;
# then the whole table ageing at once), and while another thread dumps
# the table over and over (an operator's listing of it), per table
# size. With several
# --build, the builds take turns in each round (an A/B of two trees, the
# same run); medians per build and size.
#
#   bench/vxlan_table.sh [--build DIR]... [--entries "N ..."] [--seconds S]
#                        [--rounds R] [--json FILE]
#
# Needs root (a network namespace of the program's own).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
builds=() entries="4096 65536 1048576" secs=3 rounds=3 json=
while [ $# -gt 0 ]; do
	case $1 in
	--build) builds+=("$2"); shift 2 ;;
	--entries) entries=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR]... [--entries \"N ...\"] [--seconds S] [--rounds R] [--json FILE]" >&2; exit 2 ;;
	esac
done
[ ${#builds[@]} -gt 0 ] || builds=("$here/build")
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for b in "${builds[@]}"; do
	[ -x "$b/bench/vxlan_table" ] || { echo "no $b/bench/vxlan_table: build first" >&2; exit 1; }
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
	for n in $entries; do
		for b in "${builds[@]}"; do
			line=$("$b/bench/vxlan_table" "$n" "$secs") ||
				{ echo "round $r, $n entries, $b: failed" >&2; exit 1; }
			echo "round $r $b: $line"
			echo "{\"build\": \"$b\", \"row\": $line}" >>"$out"
		done
	done
done
python3 - "$out" "$secs" "$json" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = ["fill_adds_per_s", "evicts", "evict_add_us", "evict_add_us_max", "steady_rx_ms_p50",
        "steady_rx_ms_p99", "steady_rx_ms_max", "steady_over_5ms", "dump_ms", "dump_rx_ms_p50",
        "dump_rx_ms_p99", "dump_rx_ms_max", "dump_over_5ms", "ageall_rx_ms_p50",
        "ageall_rx_ms_p99", "ageall_rx_ms_max", "ageall_over_5ms", "ageall_empty_s"]
res = {"test": "vxlan_table", "seconds": float(sys.argv[2]), "results": []}
for b in dict.fromkeys(r["build"] for r in rows):
    for n in dict.fromkeys(r["row"]["entries"] for r in rows):
        rs = [r["row"] for r in rows if r["build"] == b and r["row"]["entries"] == n]
        med = {k: statistics.median(x[k] for x in rs) for k in keys}
        res["results"].append({"build": b, "entries": n, "rounds": len(rs), "median": med,
                               "all": {k: [x[k] for x in rs] for k in keys}})
        print("%-20s %8d entries: add into full %8.2f us (max %8.1f); rx p50 %.3f ms, "
              "max %.2f ms, %g over 5 ms; dumping (%.1f ms a dump): max %.2f ms, %g over 5 ms; "
              "all ageing: max %.2f ms, %g over 5 ms, empty after %.2f s"
              % (b[-20:], n, med["evict_add_us"], med["evict_add_us_max"],
                 med["steady_rx_ms_p50"], med["steady_rx_ms_max"], med["steady_over_5ms"],
                 med["dump_ms"], med["dump_rx_ms_max"], med["dump_over_5ms"],
                 med["ageall_rx_ms_max"], med["ageall_over_5ms"], med["ageall_empty_s"]))
if sys.argv[3]:
    json.dump(res, open(sys.argv[3], "w"), indent=1)
PY
