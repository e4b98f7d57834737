#!/usr/bin/env bash
# What the vCPU sampler costs while a guest is idle: the vswitch example's
# CPU time (utime + stime) over --seconds with one idle QEMU guest
# (tests/interop's busybox kit, --smp vCPUs, named threads) on a
# vhost-user port, for each build of --builds, and for the first build
# with `,no-vcpu-state` (the floor: the switch without the sampler).
# Passes alternate between the cases.
#
#   bench/vcpu_idle.sh [--builds "DIR..."] [--seconds S] [--rounds N]
#                      [--smp N] [--accel tcg|kvm]
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
builds=$src/build secs=30 rounds=2 smp=2 accel=tcg
while [ $# -gt 0 ]; do
	case "$1" in
	--builds) builds=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--accel) accel=$2; shift 2 ;;
	*) echo "usage: $0 [--builds \"DIR...\"] [--seconds S] [--rounds N] [--smp N] [--accel A]" >&2
	   exit 2 ;;
	esac
done
for b in $builds; do
	[ -x "$b/examples/vswitch" ] || { echo "no $b/examples/vswitch: build first" >&2; exit 1; }
done
. "$src/tests/interop/guests.sh"
guest_work hs-vidle
guest_kit

one() { # BUILD PORT_OPTS
	rm -f "$work"/*.log "$work"/*.sock
	"$1/examples/vswitch" --vhost-user "$work/g.sock$2" >"$work/sw.log" 2>&1 &
	local vs=$! a b
	pids+=("$vs")
	wait_for "$work/sw.log" running 10 || fail "vswitch did not start"
	HS_GUEST_ACCEL=$accel guest_qemu g "$smp" "socket,id=c0,path=$work/g.sock,reconnect=1" "" \
		",mac=52:54:00:00:00:0a,vectors=0" "hs.role=none hs.ip=10.9.0.1"
	local q=$!
	wait_for "$work/g.log" HS-DONE 300 || fail "the guest did not boot"
	sleep 3 # past the boot's own frames
	a=$(awk '{print $14 + $15}' "/proc/$vs/stat")
	sleep "$secs"
	b=$(awk '{print $14 + $15}' "/proc/$vs/stat")
	kill -KILL "$q" "$vs" 2>/dev/null
	wait "$q" "$vs" 2>/dev/null
	awk -v t=$((b - a)) -v s="$secs" -v hz="$(getconf CLK_TCK)" -v w="$1$2" \
		'BEGIN { printf "%-40s vswitch CPU %6.0f ms in %s s idle: %.2f%% of a core\n", w, t * 1000 / hz, s, t * 100 / hz / s }'
}

first=${builds%% *}
echo "idle guest: accel $accel, -smp $smp, $secs s per pass, $rounds round(s)"
for r in $(seq 1 "$rounds"); do
	for b in $builds; do one "$b" ""; done
	one "$first" ",no-vcpu-state"
done
