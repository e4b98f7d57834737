#!/usr/bin/env bash
# The tap backend against the host kernel: three network namespaces made
# here, each holding one tap of the vswitch example (A and B in VLAN 10, C
# in VLAN 20, all in one IP subnet). Checks: ping both ways between A and
# B, nothing between A and C (VLAN isolation), a TCP stream with iperf3,
# MAC learning visible in the counters and the forwarding table; passes
# with offloads on (TSO frames cross unsegmented), off, and mixed (the
# switch segments for the tap without offloads). Namespaces and taps are
# removed on every exit path.
#   test_tap.sh BUILD_DIR SOURCE_DIR
# Exits 77 (skipped) when not root or without ip/iperf3/ping.
set -uo pipefail
build=$1
vswitch=$build/examples/vswitch
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for c in ip iperf3 ping; do
	command -v $c >/dev/null || { echo "SKIP: no $c"; exit 77; }
done
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
fi
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }

id=$$
ns=("hs-$id-a" "hs-$id-b" "hs-$id-c")
tap=("hs${id}a" "hs${id}b" "hs${id}c")
ip4=(10.77.0.1 10.77.0.2 10.77.0.3)
work=$(mktemp -d /tmp/hs-tap.XXXXXX)
vs=
cleanup() {
	[ -n "$vs" ] && kill -KILL "$vs" 2>/dev/null
	wait 2>/dev/null
	for n in "${ns[@]}"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	for t in "${tap[@]}"; do ip link del "$t" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
# Every line says how far into the test it was printed, so a failure on a
# slow machine can be told from a wrong result.
say() { echo "[${SECONDS}s] $*"; }
# On failure: the switch's counters and forwarding table (it prints them
# when stopped), the kernel's view of each namespace's tap (link counters,
# neighbours), then the logs.
fail() {
	say "FAIL: $*"
	if [ -n "$vs" ] && kill -INT "$vs" 2>/dev/null; then
		for _ in $(seq 30); do kill -0 "$vs" 2>/dev/null || break; sleep 0.1; done
	fi
	for i in 0 1 2; do
		echo "== ${ns[$i]}: ${tap[$i]}"
		ip -n "${ns[$i]}" -s addr show "${tap[$i]}" 2>&1
		ip -n "${ns[$i]}" neigh show 2>&1
		ip -n "${ns[$i]}" -s qdisc show dev "${tap[$i]}" 2>&1
	done
	tail -n 40 "$work"/*.log
	exit 1
}

wait_for() { # file pattern seconds
	local end=$((SECONDS + $3))
	until grep -q -- "$2" "$1" 2>/dev/null; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

for n in "${ns[@]}"; do ip netns add "$n" || fail "cannot create namespace $n"; done

# run_pass NAME OPTS_A OPTS_B
run_pass() {
	local name=$1 oa=$2 ob=$3
	# A fresh log: the last pass's "running" must not pass for this one's
	# (the shell truncates the file only once the new process is forked).
	rm -f "$work/vswitch.log" "$work"/ping-*.log "$work"/iperf*
	"$vswitch" --workers 1 --tap "${tap[0]},vlan=10$oa" --tap "${tap[1]},vlan=10$ob" \
		--tap "${tap[2]},vlan=20" >"$work/vswitch.log" 2>&1 &
	vs=$!
	wait_for "$work/vswitch.log" running 10 || fail "$name: vswitch did not start"
	for i in 0 1 2; do
		ip link set "${tap[$i]}" netns "${ns[$i]}" || fail "$name: cannot move ${tap[$i]}"
		ip -n "${ns[$i]}" link set lo up &&
			ip -n "${ns[$i]}" addr add "${ip4[$i]}/24" dev "${tap[$i]}" &&
			ip -n "${ns[$i]}" link set "${tap[$i]}" up ||
			fail "$name: cannot configure ${tap[$i]} in ${ns[$i]}"
	done
	ip netns exec "${ns[0]}" ping -c 3 -i 0.2 -W 2 "${ip4[1]}" >"$work/ping-ab.log" 2>&1 ||
		fail "$name: A cannot ping B"
	ip netns exec "${ns[1]}" ping -c 3 -i 0.2 -W 2 "${ip4[0]}" >"$work/ping-ba.log" 2>&1 ||
		fail "$name: B cannot ping A"
	if ip netns exec "${ns[0]}" ping -c 2 -i 0.2 -W 1 "${ip4[2]}" >"$work/ping-ac.log" 2>&1; then
		fail "$name: A reached C across VLANs"
	fi
	say "$name: ping A<->B ok, A-/->C (other VLAN) ok"

	ip netns exec "${ns[1]}" iperf3 -s -1 -B "${ip4[1]}" >"$work/iperf-s.log" 2>&1 &
	local srv=$!
	# The client starts once the server listens (a loaded machine can take
	# longer than any fixed sleep to start it).
	local end=$((SECONDS + 20))
	until ip netns exec "${ns[1]}" ss -Hltn "sport = :5201" | grep . >/dev/null; do
		[ $SECONDS -lt $end ] || fail "$name: iperf3 server did not start"
		sleep 0.1
	done
	ip netns exec "${ns[0]}" iperf3 -c "${ip4[1]}" -t 2 -J >"$work/iperf.json" 2>"$work/iperf-c.log" ||
		fail "$name: iperf3 failed"
	wait "$srv"
	local bytes mbps
	read -r bytes mbps < <(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]; print(int(e["sum_received"]["bytes"]), int(e["sum_received"]["bits_per_second"]/1e6))' "$work/iperf.json")
	[ "${bytes:-0}" -gt 1000000 ] || fail "$name: TCP moved only ${bytes:-0} bytes"
	say "$name: TCP A->B $mbps Mbit/s"

	kill -INT "$vs"
	wait "$vs" || fail "$name: vswitch exited with status $?"
	vs=
	# Learning: A's and B's addresses on their ports.
	grep -q "^fdb: .* vlan 10 on ${tap[0]}" "$work/vswitch.log" || fail "$name: A's MAC not learned"
	grep -q "^fdb: .* vlan 10 on ${tap[1]}" "$work/vswitch.log" || fail "$name: B's MAC not learned"
	grep -q "^port ${tap[0]}: .* macs [1-9]" "$work/vswitch.log" || fail "$name: no MAC count on A"
	grep "^port ${tap[0]}:\|^port ${tap[1]}:" "$work/vswitch.log" | sed "s/^/$name: /"
	cp "$work/vswitch.log" "$work/$name.vswitch"
}

# rx_avg LOG PORT: average frame size the switch received from PORT
rx_avg() {
	sed -n "s/^port $2: rx_packets \([0-9]*\) .*rx_bytes \([0-9]*\) .*/\2 \1/p" "$1" |
		awk '{ if ($2) print int($1 / $2); else print 0 }'
}
tx_gso() {
	sed -n "s/^port $2: .* tx_gso_segments \([0-9]*\).*/\1/p" "$1"
}
# by_ref LOG PORT: frames the switch wrote to PORT's tap straight from the
# sender's memory (writev, no staging copy)
by_ref() {
	sed -n "s/^port $2 backend: .* tx_by_reference \([0-9]*\).*/\1/p" "$1"
}

# Kernel errors reach the caller: a name held by another kind of device,
# and attaching to a device that does not exist.
if "$vswitch" --tap lo >"$work/clash.log" 2>&1; then fail "a tap named lo was accepted"; fi
grep -q "TUNSETIFF" "$work/clash.log" || fail "no clear error for a name clash: $(cat "$work/clash.log")"
if "$vswitch" --tap "hs${id}none,attach" >"$work/attach.log" 2>&1; then
	fail "attaching to a missing tap succeeded"
fi
grep -q "does not exist" "$work/attach.log" || fail "no clear error for a missing tap"
say "errors: name clash and missing device reported"

run_pass offload "" ""
avg=$(rx_avg "$work/offload.vswitch" "${tap[0]}")
[ "$avg" -gt 1514 ] || fail "offload: frames from A averaged $avg bytes: no TSO frames crossed"
say "offload: frames from A average $avg bytes (TSO passed through unsegmented)"
ref=$(by_ref "$work/offload.vswitch" "${tap[1]}")
[ "${ref:-0}" -gt 100 ] || fail "offload: only ${ref:-0} frames to B were written from A's buffers"
say "offload: $ref frames to B written straight from A's buffers"

run_pass no-offload ",no-offload" ",no-offload"
avg=$(rx_avg "$work/no-offload.vswitch" "${tap[0]}")
[ "$avg" -le 1514 ] || fail "no-offload: frames from A averaged $avg bytes"
ref=$(by_ref "$work/no-offload.vswitch" "${tap[1]}")
[ "${ref:-1}" = 0 ] || fail "no-offload: ${ref:-?} frames written by reference to a tap the switch checksums for"

run_pass mixed "" ",no-offload"
seg=$(tx_gso "$work/mixed.vswitch" "${tap[1]}")
[ "${seg:-0}" -gt 0 ] || fail "mixed: the switch did not segment for B"
say "mixed: the switch cut $seg segments for the tap without offloads"
# A device that disappears (its namespace deleted under a running switch):
# the port goes down with a logged reason, the switch keeps running, idle.
"$vswitch" --tap "${tap[0]}" --tap "${tap[1]}" >"$work/gone.log" 2>&1 &
vs=$!
wait_for "$work/gone.log" running 10 || fail "gone: vswitch did not start"
ip link set "${tap[1]}" netns "${ns[1]}" || fail "gone: cannot move ${tap[1]}"
ip -n "${ns[1]}" link set "${tap[1]}" up
ip netns del "${ns[1]}"
wait_for "$work/gone.log" "${tap[1]}: link down" 30 || fail "gone: no link down for ${tap[1]}"
# CPU use over two seconds from now (ps would give the lifetime average).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
t0=$(cpu_ticks "$vs")
sleep 2
t1=$(cpu_ticks "$vs")
cpu=$(( (t1 - t0) * 100 / ($(getconf CLK_TCK) * 2) ))
[ "${cpu:-100}" -lt 50 ] || fail "gone: the switch spins (${cpu}% CPU)"
kill -INT "$vs"
wait "$vs" || fail "gone: vswitch exited with status $?"
vs=
grep "${tap[1]}" "$work/gone.log" | grep "was deleted, or its namespace ended\|No such device" >/dev/null || fail "gone: no reason logged"
say "gone: device removal logged, port down, switch idle (${cpu}% CPU)"
say "tap: all passes ok"
