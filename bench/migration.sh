#!/usr/bin/env bash
# Live migration and restart of a guest on hyperswitch against Open vSwitch
# with DPDK: the same scenarios (tests/interop/test_migration.sh: a QEMU
# guest receiving a TCP stream is moved between two QEMU processes on the
# switch, precopy at 24 MiB/s; or the switch is SIGKILLed under the
# stream and started again) through each switch, rounds interleaved.
# Reports QEMU's downtime and total time (restart: until both ports are
# up again), pings lost (one every 50 ms), and every failure as it happened.
#   bench/migration.sh [--rounds N] [--passes "split packed restart"]
#                      [--switches "hyperswitch ovs-dpdk"] [--json FILE] [--log FILE]
#   bench/migration.sh --from-log FILE [--json FILE]   (summarise a run's log)
# Each run is one "round R SWITCH PASS rc=RC ..." line on stderr (and in
# --log FILE); the JSON summary is computed from those lines.
# Needs root (hugepages for OVS), qemu-system-x86, a Debian guest kernel,
# busybox-static, ovs-vswitchd-dpdk (scripts/deps.sh bench and test).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build rounds=3 passes="split" switches="hyperswitch ovs-dpdk" json= from= runlog=
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) rounds=$2; shift 2 ;;
	--passes) passes=$2; shift 2 ;;
	--switches) switches=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	--log) runlog=$2; shift 2 ;;
	--from-log) from=$2; shift 2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done
out=$from
if [ -z "$from" ]; then
	out=${runlog:-$(mktemp /tmp/hs-migbench.XXXXXX)}
	: >"$out"
	[ -n "$runlog" ] || trap 'rm -f "$out"' EXIT
	for r in $(seq 1 "$rounds"); do
		for p in $passes; do
			for s in $switches; do
				# guest consoles end lines with \r: keep them out of the record
				log=$(HS_MIG_SWITCH=$s HS_MIG_MEMCMP=0 "$here/tests/interop/test_migration.sh" \
					"$build" "$here" "$p" 2>&1 | tr -d '\r')
				rc=${PIPESTATUS[0]}
				line=$(grep -m1 '^MIGRATION ' <<<"$log")
				why=$(grep -m1 '^FAIL' <<<"$log")
				panic=$(grep -o 'kernel BUG at [^!]*\|Kernel panic.*' <<<"$log" | head -n 1)
				echo "round $r $s $p rc=$rc ${line:-$why} ${panic:+(guest: $panic)}" |
					tee -a "$out" >&2
			done
		done
	done
fi
python3 - "$out" <<'EOF' | tee "${json:-/dev/null}"
import datetime, json, platform, re, statistics, subprocess, sys
# One line per run: "round R SWITCH PASS rc=RC (MIGRATION ...|FAIL: ...)
# [(guest: ...)]". A carriage return from a guest's console inside a line
# (logs of older runs have them) does not end it.
text = open(sys.argv[1], newline="").read().replace("\r", "")
def cpu():
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            return l.split(":", 1)[1].strip()
res, rounds = {}, 0
for l in text.split("\n"):
    m = re.match(r"round (\d+) (\S+) (\S+) rc=(\d+) (.*)$", l)
    if not m:
        continue
    r, sw, p, rc, rest = m.groups()
    rounds = max(rounds, int(r))
    d = res.setdefault((sw, p), {"runs": [], "failures": []})
    g = re.search(r"\(guest: (.*)\)\s*$", rest)
    if rc == "0" and rest.startswith("MIGRATION"):
        num = lambda k: float(re.search(k + r": (\d+)", rest).group(1))
        pm = re.search(r"(\d+) packets transmitted, (\d+) packets received", rest)
        d["runs"].append({"downtime_ms": num("downtime_ms"), "total_ms": num("total_ms"),
                          "pings_lost": int(pm.group(1)) - int(pm.group(2))})
    else:
        why = re.sub(r"\s*\(guest: .*\)\s*$", "", rest).strip()
        d["failures"].append({"round": int(r), "why": why or "no result",
                              "guest": g.group(1) if g else None})
out = {"benchmark": "live migration of a QEMU guest (TCG, 128 MiB, virtio-net without "
                    "mergeable buffers) between two QEMU processes on one switch under a "
                    "TCP stream, precopy at 24 MiB/s; and the switch SIGKILLed and "
                    "restarted under the stream",
       "date": datetime.date.today().isoformat(),
       "machine": f"{cpu()}, {subprocess.getoutput('nproc')} CPUs, {platform.release()}",
       "rounds": rounds, "results": []}
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
