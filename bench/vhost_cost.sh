#!/usr/bin/env bash
# Instructions per frame of the switch's rounds through vhost-user,
# counted with callgrind, so that a change to the vhost-user data path can
# be judged by a number that does not move with this shared machine's
# load (bench/vhost_user.sh's rates move by 2x between rounds).
#
# The vswitch example (one worker) runs under callgrind, collecting only
# inside hs__round (one poll of one queue: taking the guest's chains,
# classification, delivery into the other guest's buffers, returning the
# chains); one dpdk-testpmd with two virtio-user ports drives it with the
# traffic of bench/vhost_user.sh's shape (flood, unicast, closed or closed-flood) for
# SECONDS. Two figures, each divided by the frames the switch took (its rx
# counter, printed on exit):
#   - per frame in rounds that took frames: the two functions that run
#     only then (vu_recv_frames, the transmit ring's burst, and
#     hs__round_frames, the rest of the round), read off the profile;
#     the steady figure, by which a change to the data path is judged;
#   - per frame, polls included: all of hs__round, with the polls that
#     found the ring empty. How many there are per frame depends on how
#     far the client is ahead of the switch, which the machine's load
#     moves; the count of polls and their cost apart are printed too.
# (Before 2026-12-05 only the second was printed, and the polls were
# taken for negligible: in runs made while other jobs loaded the machine
# it rose by up to 1.5x, each empty poll then costing ~200 instructions.)
# Frames that found the receiving guest without buffers wait in the
# switch's backlog (a second copy, and drains): how many did is printed
# too, since that share depends on how fast the client refills and is not
# steady from run to run with the mac-mode shapes (unicast, closed); the
# flood shape's receivers keep up. On an otherwise idle machine A the
# total repeated within 0.2% (unicast, 8 runs: 699.2-700.5).
#
#   bench/vhost_cost.sh [--build DIR] [--shape flood|unicast|closed|closed-flood]
#                       [--size BYTES] [--seconds S] [--json FILE]
#                       [--quiet N] [--opts "VSWITCH OPTIONS"]
#                       [--profile FILE] [--peer hyperswitch|iofwd]
#
# --peer iofwd counts testpmd's io-forward wire instead (its vhost PMD,
# as bench/vhost_user.sh runs it), the same traffic, the same way: the
# reference hyperswitch is timed against, counted where this machine's
# phases cannot move the figure. Debian's testpmd has no symbols, so its
# functions are found by what they call: the PMD's receive calls
# rte_vhost_dequeue_burst, its transmit rte_vhost_enqueue_burst, the
# forwarding function calls both (the transmit only after a receive that
# got frames: a burst), and the frames are the calls of the transmit's
# per-frame callee (an out-of-line rte_pktmbuf_free in Debian's DPDK
# 22.11 PMD; the frames it sent, so testpmd's TX-dropped is printed
# too: frames it dropped would be missing from the count). The
# forwarding lcore's instructions are counted in two windows: idle (the
# client still connected after its traffic stopped), for the cost of a
# poll that finds nothing, and traffic (from 3 s after it starts to 1 s before it
# ends), whose frames' work is the forwarding function's total less its
# empty polls at the idle cost; "polls included" is that total as it
# is, the figure to set beside hyperswitch's all-of-hs__round. Every
# poll of both windows must reach rte_vhost (the device up), or the
# run fails. This is Debian 12's testpmd, a shared build: lcore-id
# lookups through __tls_get_addr and calls a static or LTO build of
# DPDK would inline are in its count.
#
# --profile FILE keeps callgrind's profile there (callgrind_annotate
# --inclusive=yes FILE shows where the instructions went; with --peer
# iofwd, the forwarding lcore's traffic window).
#
# --quiet N adds N quiet guests: N more vhost-user ports, whose
# virtio-user front-ends (a second testpmd, started with the first) send
# one burst each a second (and kick) while the busy pair runs: each
# time the busy worker takes their queues. Whether it keeps polling them
# (HS_SW_KEEP_QUIET, vswitch --keep-quiet through --opts) or lets them go
# shows in the polls per frame. Use it with unicast or closed: the flood
# shape would flood them too.
#
# Needs root (hugepages), valgrind and dpdk-testpmd (scripts/deps.sh test),
# and a RelWithDebInfo build.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peer=hyperswitch build=$here/build shape=flood size=64 secs=10 json= quiet=0 opts= profile=
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--shape) shape=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	--quiet) quiet=$2; shift 2 ;;
	--opts) opts=$2; shift 2 ;;
	--profile) profile=$2; shift 2 ;;
	--peer) peer=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--shape flood|unicast|closed|closed-flood] [--size BYTES] [--seconds S] [--json FILE] [--quiet N] [--opts O] [--profile FILE] [--peer hyperswitch|iofwd]" >&2
	   exit 2 ;;
	esac
done
case $shape in flood|unicast|closed|closed-flood) ;; *) echo "unknown shape $shape" >&2; exit 2 ;; esac
case $peer in hyperswitch|iofwd) ;; *) echo "unknown peer $peer" >&2; exit 2 ;; esac
[ "$peer" = iofwd ] && [ "$quiet" != 0 ] && { echo "--quiet: hyperswitch only" >&2; exit 2; }
[ "$peer" = iofwd ] && [ "$secs" -lt 6 ] && { echo "--peer iofwd: at least 6 seconds" >&2; exit 2; }
# Debian's DPDK takes 32 ports a process (RTE_MAX_ETHPORTS)
[ "$quiet" -le 32 ] || { echo "--quiet: at most 32" >&2; exit 2; }
. "$here/bench/vu_client.sh"
vswitch=$build/examples/vswitch
[ "$(id -u)" = 0 ] || { echo "run as root (hugepages)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "no valgrind: scripts/deps.sh test" >&2; exit 1; }
command -v dpdk-testpmd >/dev/null || { echo "no dpdk-testpmd: scripts/deps.sh test" >&2; exit 1; }
[ "$peer" = iofwd ] || [ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }

vu_hugepages 600 1024

work=$(mktemp -d /tmp/hs-vucost.XXXXXX)
swpid=
cleanup() {
	[ -n "$swpid" ] && kill -KILL "$swpid" 2>/dev/null
	[ -n "${qpid:-}" ] && kill -KILL "$qpid" 2>/dev/null
	[ -n "${ctl:-}" ] && { pkill -KILL -P "$ctl"; kill -KILL "$ctl"; } 2>/dev/null
	if [ -n "$profile" ] && [ "$peer" = iofwd ]; then
		[ -s "$work/lcore" ] && cp "$(cat "$work/lcore")" "$profile"
	elif [ -n "$profile" ] && [ -f "$work/cg.out" ]; then
		cp "$work/cg.out" "$profile"
	fi
	rm -rf "$work"
	rm -f /dev/hugepages/hsc-* 2>/dev/null
}
trap cleanup EXIT

qports=() qdevs=() qpeers=()
for i in $(seq 1 "$quiet"); do
	qports+=(--vhost-user "$work/q$i")
	qdevs+=(--vdev "net_virtio_user$((i + 1)),path=$work/q$i,queues=1")
	# to the busy pair's first MAC, learned: not flooded
	qpeers+=("--eth-peer=$((i - 1)),02:00:00:00:00:01")
done
if [ "$peer" = iofwd ]; then
	# --fair-sched: valgrind runs one thread at a time, and with its
	# default lock the forwarding lcore stalled after the first bursts
	# (checked). Instrumented from the start: callgrind names a function
	# it first meets mid-way by that address, and later calls of it then
	# split between two names (seen with the instrumentation switched on
	# late)
	# shellcheck disable=SC2046 # words, by design (vu_wire_args)
	valgrind --tool=callgrind --separate-threads=yes --fair-sched=yes \
		--callgrind-out-file="$work/cg.out" \
		dpdk-testpmd $(vu_wire_args "$work" hsc-be) </dev/null >"$work/sw.log" 2>&1 &
else
	# shellcheck disable=SC2086 # opts: words
	valgrind --tool=callgrind --toggle-collect=hs__round --callgrind-out-file="$work/cg.out" \
		"$vswitch" --workers 1 $opts --vhost-user "$work/s0" --vhost-user "$work/s1" "${qports[@]}" \
		>"$work/sw.log" 2>&1 &
fi
swpid=$!
end=$((SECONDS + 90))
until [ -S "$work/s0" ] && [ -S "$work/s1" ]; do
	[ $SECONDS -lt $end ] && kill -0 "$swpid" 2>/dev/null ||
		{ echo "the switch did not open its sockets: $(tail -3 "$work/sw.log")" >&2; exit 1; }
	sleep 0.2
done
ctl=
if [ "$peer" = iofwd ]; then
	# the windows, timed from the client's start (vu_client: traffic
	# from 3 s for $secs s, then 4 s connected and idle): traffic from
	# 6 s to 1 s before its end (dump 1), idle from 1.5 s after it
	# (dump 3; dump 2, the end of the traffic, is not used). Idle comes
	# last because the client connects during its first seconds: polls
	# before that return early in the PMD and are no switch's poll.
	# (each one's result to $work/ctl, checked with the counts:
	# callgrind_control exits 0 even when it found no such process, so
	# its output is looked at)
	cgc() {
		if callgrind_control "$@" "$swpid" 2>&1 | grep -q '^Error'; then
			echo 1 >>"$work/ctl"
		else
			echo 0 >>"$work/ctl"
		fi
	}
	{
		sleep 6
		cgc -z
		sleep $((secs - 4))
		cgc --dump=traffic
		sleep 2.5
		cgc --dump=stop
		sleep 1.5
		cgc --dump=idle
	} &
	ctl=$!
fi
qpid=
if [ "$quiet" -gt 0 ]; then
	# the quiet guests: ports started (rings live, receive buffers
	# posted); once a second each sends one burst (testpmd's tx_first,
	# then stop: its forwarding core spins only that long), as a quiet
	# guest's ARP or keepalive would, until the busy pair's traffic ends
	{
		{
			sleep 8 # both started, the busy pair's traffic running
			for _ in $(seq 5 "$secs"); do
				echo "start tx_first 1"
				sleep 0.05
				echo stop
				sleep 0.95
			done
			echo quit
		} |
			timeout -s INT $((secs + 30)) dpdk-testpmd --lcores 0@1,1@1 --main-lcore 1 \
				--file-prefix hsc-q --no-pci -m 1024 --single-file-segments \
				--iova-mode=va "${qdevs[@]}" -- -i "${qpeers[@]}" \
				--total-num-mbufs=$((quiet * 600 + 2048)) >"$work/q.log" 2>&1
	} &
	qpid=$!
fi
if [ "$peer" = iofwd ]; then
	vu_client "$work" "$size" "$shape" "$secs" hsc-cl 4
else
	vu_client "$work" "$size" "$shape" "$secs" hsc-cl
fi
[ -n "$ctl" ] && wait "$ctl"
[ -n "$qpid" ] && wait "$qpid"
kill -INT "$swpid"
for _ in $(seq 1 100); do kill -0 "$swpid" 2>/dev/null || break; sleep 0.2; done
wait "$swpid" 2>/dev/null
swpid=
python3 - "$work" "$json" "$shape" "$size" "$secs" "$build" "$quiet" "$opts" "$peer" <<'PY'
import collections, glob, json, re, sys
work, out, shape, size, secs, build, quiet, opts, peer = sys.argv[1:10]
def parse(path):
    """The profile, by function: own cost, the calls each makes (count
    and inclusive cost), the total -- callgrind's format with compressed
    names."""
    names, own = {}, collections.Counter()
    calls, ncalls = collections.Counter(), collections.Counter()
    total = fn = cfn = pending = None
    def name(v):
        m = re.match(r'\((\d+)\)(?: (.*))?$', v.strip())
        if not m:
            return v.strip()
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names[m.group(1)]
    for line in open(path):
        if line.startswith('fn='):
            fn = name(line[3:])
        elif line.startswith('cfn='):
            cfn = name(line[4:])
        elif line.startswith('calls='):
            pending = int(line[6:].split()[0])
        elif line[:1] in '0123456789+-*':
            f = line.split()
            cost = int(f[1]) if len(f) > 1 else 0
            if pending is not None:
                calls[fn, cfn] += cost
                ncalls[fn, cfn] += pending
                pending = None
            else:
                own[fn] += cost
        else:
            m = re.match(r'^(?:totals|summary): (\d+)', line)
            if m:
                total = int(m.group(1))
    def incl(f):
        return own[f] + sum(c for (a, _), c in calls.items() if a == f)
    def called(f):
        return sum(n for (_, b), n in ncalls.items() if b == f)
    def caller(f):
        return {a for (a, b) in ncalls if b == f}
    def callees(f):
        return {b: n for (a, b), n in ncalls.items() if a == f}
    return total, incl, called, caller, callees
if peer == 'iofwd':
    def window(n):
        """The forwarding lcore's profile in dump n: the thread's file
        that calls rte_vhost_dequeue_burst."""
        for path in sorted(glob.glob(f'{work}/cg.out.{n}-*')):
            total, incl, called, caller, callees = parse(path)
            rx = caller('rte_vhost_dequeue_burst')
            if len(rx) > 1:
                sys.exit(f'dump {n}: the receive goes by several names: {rx}')
            if not rx:
                continue
            rx = rx.pop()
            fwd = caller(rx)
            if len(fwd) != 1:
                sys.exit(f'dump {n}: the receive has callers {fwd}')
            fwd = fwd.pop()
            # a poll before the device is up (or after the client quit)
            # returns early in the PMD: cheaper, and not a switch's poll
            # (a dump may fall inside a call: a count or two of slack)
            if called(rx) - called('rte_vhost_dequeue_burst') > 2:
                sys.exit(f'dump {n}: {called(rx) - called("rte_vhost_dequeue_burst")} of '
                         f'{called(rx)} polls found the device down: the window is not '
                         'inside the client\'s run (slow start, or late callgrind_control)')
            return path, incl, called, caller, callees, rx, fwd
        sys.exit(f'no forwarding lcore in dump {n} (the dump missing, or no poll of a '
                 f'connected device in it): {sorted(glob.glob(work + "/cg.out*"))}')
    try:
        ctl = open(f'{work}/ctl').read().split()
    except OSError:
        ctl = []
    if ctl != ['0'] * 4:
        sys.exit(f'callgrind_control failed ({ctl}: 1 = an error): the windows are not known')
    # idle: every poll finds nothing; the forwarding function's cost a poll
    _, incl, called, caller, callees, rx, fwd = window(3)
    idle_polls = called(fwd)
    if not idle_polls or called('rte_vhost_enqueue_burst'):
        sys.exit('the idle window saw %d polls, %d bursts' %
                 (idle_polls, called('rte_vhost_enqueue_burst')))
    empty = incl(fwd) / idle_polls
    path, incl, called, caller, callees, rx, fwd = window(1)
    tx = caller('rte_vhost_enqueue_burst')
    if len(tx) != 1 or tx != set(callees(fwd)) - {rx}:
        sys.exit('the transmit is not the forwarding function\'s other callee: %s %s' %
                 (tx, callees(fwd)))
    tx = tx.pop()
    polls, bursts = called(fwd), called(tx)
    per = [n for f, n in callees(tx).items() if f != 'rte_vhost_enqueue_burst']
    if not per:
        sys.exit('the transmit calls nothing per frame: not the PMD this script knows')
    frames = max(per)
    # a per-burst callee would give about one a burst; a window may end
    # inside a burst (one burst's frames of slack); most polls must take
    # frames, or the window was not the traffic's
    if not bursts or not 2 * bursts <= frames <= 32 * (bursts + 1):
        sys.exit('frames %d in %d bursts' % (frames, bursts))
    if polls - bursts > polls / 2:
        sys.exit('%d of %d polls empty: the traffic window saw little traffic' %
                 (polls - bursts, polls))
    with open(f'{work}/lcore', 'w') as f:
        f.write(path)
    dropped = 0
    for line in open(f'{work}/sw.log'):
        m = re.search(r'TX-dropped:\s*(\d+)', line)
        if m:
            dropped = max(dropped, int(m.group(1)))
    work_ir = incl(fwd) - (polls - bursts) * empty
    res = {'benchmark': 'vhost_cost', 'peer': 'iofwd', 'shape': shape,
           'frame_bytes': int(size), 'seconds': float(secs), 'frames': frames,
           'bursts': bursts, 'polls': polls, 'empty_polls': polls - bursts,
           'instructions_per_empty_poll': round(empty, 1),
           'instructions_per_frame': round(work_ir / frames, 1),
           'polls_included_per_frame': round(incl(fwd) / frames, 1),
           'tx_dropped_whole_run': dropped}
    print('io-forward wire %s %s B: %.1f instructions per frame in polls that took frames '
          '(%d frames, %.1f a burst); polls included: %.1f per frame (%d polls, %.2f empty '
          'ones per frame, %.1f instructions each, from the idle window); the wire dropped '
          '%d frames in the whole run (missing from the count)' %
          (shape, size, res['instructions_per_frame'], frames, frames / bursts,
           res['polls_included_per_frame'], polls, (polls - bursts) / frames, empty, dropped))
    if out:
        with open(out, 'w') as f:
            json.dump(res, f, indent=1)
            f.write('\n')
    sys.exit(0)
total, incl, called, _, _ = parse(f'{work}/cg.out')
frames = rounds = res_quiet = None
backlogged = 0
for line in open(f'{work}/sw.log'):
    m = re.match(r'^switch: rx (\d+) .* rounds (\d+)', line)
    if m:
        frames, rounds = int(m.group(1)), int(m.group(2))
    m = re.search(r' quiet_releases (\d+)', line)
    if m:
        res_quiet = int(m.group(1))
    m = re.match(r'^port .* tx_backlogged (\d+)', line)
    if m:
        backlogged += int(m.group(1))
if not total or not frames:
    sys.exit('could not count: instructions %s, frames %s' % (total, frames))
res = {'benchmark': 'vhost_cost', 'peer': 'hyperswitch', 'shape': shape, 'frame_bytes': int(size),
       'seconds': float(secs), 'build': build, 'frames': frames, 'rounds': rounds,
       'backlogged': backlogged, 'hs_round_per_frame': round(total / frames, 1),
       'quiet_ports': int(quiet), 'vswitch_opts': opts}
if res_quiet is not None:
    res['quiet_releases'] = res_quiet
polls = called('vu_recv_burst')
if called('vu_recv_frames') and polls:
    work_ir = incl('vu_recv_frames') + incl('hs__round_frames')
    res.update(instructions_per_frame=round(work_ir / frames, 1), polls=polls,
               empty_polls=polls - called('hs__round_frames'),
               instructions_per_poll_besides=round((total - work_ir) / polls, 1))
    print('vhost-user %s %s B: %.1f instructions per frame in rounds that took frames '
          '(%d frames, %.1f a round, %.1f%% through the backlog); all of hs__round, '
          'polls included: %.1f per frame (%d polls, %.2f empty ones per frame, '
          '%.1f instructions a poll besides the frames\' work)' %
          (shape, size, res['instructions_per_frame'], frames, frames / rounds,
           100.0 * backlogged / frames, res['hs_round_per_frame'], polls,
           res['empty_polls'] / frames, res['instructions_per_poll_besides']))
else: # a build from before vu_recv_frames: the total and the polls only
    res.update(polls=polls, empty_polls=polls - rounds)
    print('vhost-user %s %s B: %.1f instructions per frame in hs__round, polls included '
          '(%d frames, %.1f a round, %.1f%% through the backlog; %d polls, %.2f empty '
          'ones per frame)' %
          (shape, size, res['hs_round_per_frame'], frames, frames / rounds,
           100.0 * backlogged / frames, polls, (polls - rounds) / frames))
if int(quiet):
    print('  %s quiet guests (vswitch options "%s"): %s queues let go while quiet' %
          (quiet, opts, res.get('quiet_releases', '?')))
if out:
    with open(out, 'w') as f:
        json.dump(res, f, indent=1)
        f.write('\n')
PY
