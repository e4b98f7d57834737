#!/usr/bin/env bash
# VM-state-aware notification for vhost-user guests, on and off, with real
# QEMU guests: two Linux guests (tests/interop's busybox kit) on two
# vhost-user ports of the vswitch example. Guest A pings B 200 times
# (20 ms apart), then sends hs.bytes over TCP; the switch's counters give
# the notifications (interrupts) it sent per frame delivered. "on" is the
# default (the front-end's vCPU threads sampled, src/backends/vu_vcpu.c);
# "off" is `,no-vcpu-state` on both ports. Passes alternate on/off.
#
#   bench/vcpu_state.sh [--build DIR] [--rounds N] [--bytes N] [--smp N]
#                       [--accel tcg|kvm] [--json FILE]
#
# Under TCG (this machine's only working accelerator) guest time is
# emulated: latencies and rates are the emulator's, and only the
# on/off ratios of one run mean anything.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build rounds=3 bytes=$((32 << 20)) smp=2 accel=tcg json=''
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--bytes) bytes=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--accel) accel=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--rounds N] [--bytes N] [--smp N] [--accel A] [--json FILE]" >&2
	   exit 2 ;;
	esac
done
vswitch=$build/examples/vswitch
[ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }
. "$src/tests/interop/guests.sh"
guest_work hs-vcpu
guest_kit

guest() { # NAME SOCKET MAC ROLE IP PEER
	HS_GUEST_ACCEL=$accel guest_qemu "$1" "$smp" "socket,id=c0,path=$2,reconnect=1" "" \
		",mac=$3,vectors=0" "hs.role=$4 hs.ip=$5 hs.peer=$6 hs.bytes=$bytes"
}

bcounter() {
	grep "^port $2 backend:" "$1" | tail -1 | grep -o " $3 [0-9]*" | tail -1 | cut -d' ' -f3
}

results=()
one() { # MODE ROUND
	local mode=$1 r=$2 popt=''
	[ "$mode" = off ] && popt=',no-vcpu-state'
	rm -f "$work"/*.log "$work"/*.sock
	"$vswitch" --stats 1 --vhost-user "$work/a.sock$popt" --vhost-user "$work/b.sock$popt" \
		>"$work/sw.log" 2>&1 &
	local vs=$!
	pids+=("$vs")
	wait_for "$work/sw.log" running 10 || fail "vswitch did not start"
	guest gb "$work/b.sock" 52:54:00:00:00:0b server 10.9.0.2 10.9.0.1
	local qb=$!
	guest ga "$work/a.sock" 52:54:00:00:00:0a measure 10.9.0.1 10.9.0.2
	local qa=$!
	wait_for "$work/ga.log" HS-XFER 600 || fail "$mode: guest A did not finish"
	wait_for "$work/gb.log" HS-RECEIVED 60 || fail "$mode: guest B did not receive"
	sleep 1.5 # one more stats block
	kill -INT "$vs"; wait "$vs" 2>/dev/null
	kill -KILL "$qa" "$qb" 2>/dev/null; wait "$qa" "$qb" 2>/dev/null
	local rtt x
	rtt=$(grep -o 'round-trip min/avg/max = [0-9./]*' "$work/ga.log" | awk '{print $4}')
	x=$(grep -o 'HS-XFER [0-9]* [0-9.]* [0-9.]*' "$work/ga.log")
	local sec mbps
	sec=$(echo "$x" | awk '{printf "%.2f", $4 - $3}')
	mbps=$(echo "$x" | awk '{d = $4 - $3; printf "%.1f", (d > 0 ? $2 * 8 / d / 1e6 : 0)}')
	local ta na tb nb thr run notrun
	# the vswitch names its ports vhu0 (a.sock, guest A), vhu1 (b.sock, B)
	ta=$(sw_counter "$work/sw.log" vhu0 tx_packets) na=$(sw_counter "$work/sw.log" vhu0 tx_notify)
	tb=$(sw_counter "$work/sw.log" vhu1 tx_packets) nb=$(sw_counter "$work/sw.log" vhu1 tx_notify)
	thr=$(bcounter "$work/sw.log" vhu1 vcpu_threads)
	run=$(bcounter "$work/sw.log" vhu1 peer_running)
	notrun=$(bcounter "$work/sw.log" vhu1 peer_not_running)
	local npf
	npf=$(awk -v a="$na" -v b="$nb" -v x="$ta" -v y="$tb" \
		'BEGIN { printf "%.3f", (x + y) ? (a + b) / (x + y) : 0 }')
	printf "%-4s %5s  rtt min/avg/max %-22s  %8s Mbit/s (%s s)  notify/frame %s (A %s/%s, B %s/%s)  B: vcpu_threads %s, ->running %s, ->not %s\n" \
		"$mode" "$r" "$rtt" "$mbps" "$sec" "$npf" "$na" "$ta" "$nb" "$tb" "${thr:-?}" "${run:-?}" "${notrun:-?}"
	results+=("{\"mode\":\"$mode\",\"round\":$r,\"rtt_ms\":\"$rtt\",\"mbps\":$mbps,\"seconds\":$sec,\"notify_per_frame\":$npf,\"a_tx_packets\":${ta:-0},\"a_tx_notify\":${na:-0},\"b_tx_packets\":${tb:-0},\"b_tx_notify\":${nb:-0},\"b_vcpu_threads\":${thr:-0},\"b_peer_running\":${run:-0},\"b_peer_not_running\":${notrun:-0}}")
}

echo "vhost-user guests, vCPU-state sampling on/off: accel $accel, -smp $smp, $bytes bytes, $rounds round(s)"
for r in $(seq 1 "$rounds"); do
	if [ $((r % 2)) = 1 ]; then one on "$r"; one off "$r"; else one off "$r"; one on "$r"; fi
done
if [ -n "$json" ]; then
	{
		printf '{"bench":"vcpu_state","date":"%s","accel":"%s","smp":%s,"bytes":%s,"results":[\n' \
			"$(date -u +%FT%TZ)" "$accel" "$smp" "$bytes"
		(IFS=,; printf '%s\n' "${results[*]}")
		printf ']}\n'
	} >"$json"
fi
