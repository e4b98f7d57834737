#!/usr/bin/env bash
# Instructions per frame of `hs-bench single` (the whole traffic loop: the
# host's mem calls and the switch's round), counted with callgrind, so
# that a change to the per-frame path can be judged on this noisy machine
# by a number that does not move with the load. The loop is timed, so the
# script runs it twice (0.1 s and 1 s under callgrind, collecting only
# inside run_single) and divides the difference of the instruction counts
# by the difference of the frames (hs_mem_tx_burst calls from run_single,
# times the burst of 32): setup and teardown cancel out.
#   bench/single_cost.sh [--build DIR] [--json FILE] [hs-bench single options]
# e.g. bench/single_cost.sh --build /tmp/rel --frame 64 --ports 2 --macs 2
# (--macs equal to --ports: one MAC per port, every burst one flow).
# Needs valgrind (scripts/deps.sh test) and a RelWithDebInfo build.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build json=
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) args+=("$1"); shift ;;
	esac
done
command -v valgrind >/dev/null || { echo "no valgrind: scripts/deps.sh test" >&2; exit 1; }
[ -x "$build/bench/hs-bench" ] || { echo "no $build/bench/hs-bench: build first" >&2; exit 1; }
work=$(mktemp -d /tmp/hs-single-cost.XXXXXX)
trap 'rm -rf "$work"' EXIT
for s in 0.1 1.0; do
	valgrind --tool=callgrind --callgrind-out-file="$work/$s.out" --toggle-collect=run_single \
		"$build/bench/hs-bench" single --seconds "$s" "${args[@]}" >"$work/$s.log" 2>&1 ||
		{ echo "hs-bench failed: $(tail -3 "$work/$s.log")" >&2; exit 1; }
done
python3 - "$work" "$json" "${args[*]}" <<'PY'
import json, re, sys
work, out, args = sys.argv[1], sys.argv[2], sys.argv[3]
def count(path):
    """total instructions, and hs_mem_tx_burst calls made by run_single"""
    names, fn, cfn, calls, total = {}, None, None, 0, None
    for line in open(path):
        m = re.match(r'^(c?fn)=\((\d+)\)(?: (.*))?$', line.rstrip('\n'))
        if m:
            kind, i, name = m.groups()
            if name:
                names[i] = name
            if kind == 'fn':
                fn = names.get(i)
            else:
                cfn = names.get(i)
            continue
        m = re.match(r'^calls=(\d+)', line)
        if m and cfn and fn and cfn.endswith('hs_mem_tx_burst') and fn.endswith('run_single'):
            calls += int(m.group(1))
        m = re.match(r'^totals: (\d+)', line) or re.match(r'^summary: (\d+)', line)
        if m:
            total = int(m.group(1))
    return total, calls * 32
(t0, f0), (t1, f1) = count(f'{work}/0.1.out'), count(f'{work}/1.0.out')
if f1 <= f0 or t0 is None or t1 is None:
    sys.exit('could not count: frames %d, %d' % (f0, f1))
ipf = (t1 - t0) / (f1 - f0)
print('hs-bench single %s: %.1f instructions per frame (%d and %d frames)' % (args, ipf, f0, f1))
if out:
    with open(out, 'w') as f:
        json.dump({'benchmark': 'single_cost', 'arguments': args,
                   'instructions_per_frame': round(ipf, 1), 'frames': [f0, f1]}, f, indent=1)
        f.write('\n')
PY
