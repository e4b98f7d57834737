#!/usr/bin/env bash
# The VXLAN port's instructions per frame, counted with callgrind: frames
# from a mem port through a vxlan port to another switch's over the
# loopback (bench/vxlan_cost.c), and the same frames between two mem
# ports, whose backend's work is the plain-switching reference. Prints,
# and with --json writes, instructions per frame of each backend call
# (inclusive: what it calls, the libc side of its syscalls included; the
# kernel's work is not counted). Then again with the first port sending
# through an underlay interface (a veth; "underlay_*" in the JSON).
#   bench/vxlan_cost.sh [--build DIR] [--frames N] [--json FILE]
# Needs valgrind (scripts/deps.sh test).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build frames=5000 json=
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--frames) frames=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--frames N] [--json FILE]" >&2; exit 2 ;;
	esac
done
command -v valgrind >/dev/null || { echo "no valgrind: scripts/deps.sh test" >&2; exit 1; }
[ -x "$build/bench/vxlan_cost" ] || { echo "no $build/bench/vxlan_cost: build first" >&2; exit 1; }
work=$(mktemp -d /tmp/hs-vxlan-cost.XXXXXX)
trap 'rm -rf "$work"' EXIT
for mode in "" underlay; do
	for len in 64 1450; do
		o=$work/$mode$len
		valgrind --tool=callgrind --callgrind-out-file="$o.out" \
			"$build/bench/vxlan_cost" "$frames" "$len" $mode >"$o.log" 2>&1 ||
			{ echo "vxlan_cost failed: $(tail -3 "$o.log")" >&2; exit 1; }
		callgrind_annotate --inclusive=yes --threshold=100 "$o.out" >"$o.txt" 2>/dev/null
	done
done
python3 - "$work" "$frames" "$json" <<'PY'
import json, re, sys
work, frames, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fns = ["vx_send_reserve", "vx_send_commit", "vx_recv_burst", "vx_recv_done",
       "mem_send_reserve", "mem_send_commit", "mem_recv_burst", "mem_recv_done"]
res = {"test": "vxlan_cost", "frames": frames}
for mode, ln in [(m, l) for m in ("", "underlay") for l in (64, 1450)]:
    ir = {}
    for line in open("%s/%s%d.txt" % (work, mode, ln)):
        m = re.match(r"\s*([\d,]+) .*:(\w+) \[", line)
        if m and m.group(2) in fns and m.group(2) not in ir:
            ir[m.group(2)] = int(m.group(1).replace(",", ""))
    n = frames + 2  # the two that teach the tables
    per = {k: ir.get(k, 0) / n for k in fns}
    encap = per["vx_send_reserve"] + per["vx_send_commit"]
    decap = per["vx_recv_burst"] + per["vx_recv_done"]
    mem_tx = per["mem_send_reserve"] + per["mem_send_commit"]
    mem_rx = (per["mem_recv_burst"] + per["mem_recv_done"]) / 2  # both runs send from mem
    res[(mode + "_" if mode else "") + str(ln)] = {"encap_ir": round(encap), "decap_ir": round(decap),
                    "mem_send_ir": round(mem_tx / 2), "mem_recv_ir": round(mem_rx),
                    "encap_over_plain_ir": round(encap - mem_tx / 2),
                    "decap_over_plain_ir": round(decap - mem_rx)}
    print("%4d bytes%s: encapsulation %d, decapsulation %d instructions per frame "
          "(a mem port: send %d, receive %d)" % (ln, " through the underlay" if mode else "",
                                               encap, decap, mem_tx / 2, mem_rx))
print(json.dumps(res))
if out:
    json.dump(res, open(out, "w"), indent=1)
PY
