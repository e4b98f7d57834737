#!/usr/bin/env bash
# Live migration of a guest on hyperswitch against Open vSwitch with DPDK:
# the same migration (tests/interop/test_migration.sh: a QEMU guest moved
# between two QEMU processes on the switch while a TCP stream runs to it,
# precopy at 24 MiB/s) through each switch, rounds interleaved. Reports
# QEMU's downtime and total time, pings lost (one every 50 ms), whether the
# stream arrived intact, and failures as they happened.
#   bench/migration.sh [--rounds N] [--passes "split packed"]
#                      [--switches "hyperswitch ovs-dpdk"] [--json FILE]
# Needs root (hugepages for OVS), qemu-system-x86, a Debian guest kernel,
# busybox-static, ovs-vswitchd-dpdk (scripts/deps.sh bench and test).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build rounds=3 passes="split" switches="hyperswitch ovs-dpdk" json=
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--passes) passes=$2; shift 2 ;;
	--switches) switches=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
out=$(mktemp /tmp/hs-migbench.XXXXXX)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
	for p in $passes; do
		for s in $switches; do
			log=$(HS_MIG_SWITCH=$s "$here/tests/interop/test_migration.sh" "$build" "$here" "$p" 2>&1)
			rc=$?
			line=$(grep -m1 '^MIGRATION ' <<<"$log")
			why=$(grep -m1 '^FAIL' <<<"$log")
			panic=$(grep -o 'kernel BUG at [^!]*\|Kernel panic[^\r]*' <<<"$log" | head -n 1)
			echo "round $r $s $p rc=$rc ${line:-$why} ${panic:+(guest: $panic)}" >&2
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$s" "$p" "$rc" "$line" "$why" "$panic" >>"$out"
		done
	done
done
python3 - "$out" "$rounds" <<'EOF' | tee "${json:-/dev/null}"
import datetime, json, platform, re, statistics, subprocess, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def cpu():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
res = {}
for r, sw, p, rc, line, why, panic in rows:
    d = res.setdefault((sw, p), {"runs": [], "failures": []})
    if rc == "0" and line:
        num = lambda k: float(re.search(k + r": (\d+)", line).group(1))
        m = re.search(r"(\d+) packets transmitted, (\d+) packets received", line)
        d["runs"].append({"downtime_ms": num("downtime_ms"), "total_ms": num("total_ms"),
                          "pings_lost": int(m.group(1)) - int(m.group(2))})
    else:
        d["failures"].append({"round": int(r), "why": why or "no result",
                              "guest": panic or None})
out = {"benchmark": "live migration of a QEMU guest (TCG, 128 MiB, virtio-net without "
                    "mergeable buffers) between two QEMU processes on one switch, "
                    "TCP stream to it, precopy at 24 MiB/s",
       "date": datetime.date.today().isoformat(),
       "machine": f"{cpu()}, {subprocess.getoutput('nproc')} CPUs, {platform.release()}",
       "rounds": int(sys.argv[2]), "results": []}
for (sw, p), d in sorted(res.items()):
    e = {"switch": sw, "pass": p, "completed": len(d["runs"]),
         "failed": len(d["failures"]), "runs": d["runs"], "failures": d["failures"]}
    for k in ("downtime_ms", "total_ms", "pings_lost"):
        v = [x[k] for x in d["runs"]]
        if v:
            e[k + "_median"] = statistics.median(v)
    out["results"].append(e)
print(json.dumps(out, indent=1))
EOF
