#!/usr/bin/env bash
# Guest to host: a QEMU guest (tests/interop's busybox kit, one vCPU)
# talking to a process in a network namespace of the host, through
#   hyperswitch  the vswitch example: the guest on a vhost-user port, a tap
#                (moved into the namespace) on another
#   hyperswitch-syscalls  the same, the tap's reads and writes one system
#                call each instead of io_uring batches (not run by default)
#   hyperswitch-poll  the same with one switch worker that busy-polls
#                (--workers 1 --busy-poll): no wake-up of the switch on a
#                frame's path, for a core (not run by default)
#   hyperswitch-workers  one worker polling adaptively (--workers 1: it
#                sleeps after 200 us without frames; not run by default)
#   qemu-tap     QEMU's own tap back end (vhost-net when /dev/vhost-net
#                exists, else QEMU's userspace virtio-net) on a Linux
#                bridge, and a veth pair into the namespace: what users
#                compare a vswitch with
# Passes alternate between the modes. Each pass: the guest pings the
# namespace 200 times (20 ms apart), sends --bytes over TCP to it, then
# receives --bytes from it; the guest times both transfers
# (guest_init.sh, role measure). The host-side CPU that is not the guest's
# vCPU is taken over the two transfers: the vswitch process, and QEMU's
# main thread (where QEMU's tap back end and virtio-net device run; it is
# idle with vhost-user), in seconds per GB moved.
#
#   bench/guest_host.sh [--build DIR] [--rounds N] [--bytes N]
#                       [--modes "hyperswitch qemu-tap"] [--accel tcg|kvm]
#                       [--json FILE]
#
# Needs root, QEMU and iproute2. The namespace, taps, veths and bridge are
# made here and removed on every exit path. Under TCG (this machine's only
# working accelerator) the guest is emulated and bounds both modes: the
# rates are the emulator's and only same-run ratios mean anything.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$src/build rounds=3 bytes=$((32 << 20)) accel=tcg json='' modes="hyperswitch qemu-tap"
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--bytes) bytes=$2; shift 2 ;;
	--modes) modes=$2; shift 2 ;;
	--accel) accel=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--rounds N] [--bytes N] [--modes M] [--accel A] [--json FILE]" >&2
	   exit 2 ;;
	esac
done
vswitch=$build/examples/vswitch
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }
command -v busybox >/dev/null || { echo "no busybox (its nc is the host side)" >&2; exit 1; }
bytes=$((bytes / 65536 * 65536))
id=$$
ns=hsg-$id tap=hsg${id}t br=hsg${id}br qtap=hsg${id}q veth=hsg${id}v
work=$(mktemp -d /tmp/hs-g2h.XXXXXX)
pids=()
teardown() {
	exec 3>&2 2>/dev/null # not the shell's "Killed" lines
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	pids=()
	ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
	wait 2>/dev/null
	ip netns del "$ns" 2>/dev/null
	for l in "$br" "$tap" "$qtap" "$veth" "${veth}p"; do ip link del "$l" 2>/dev/null; done
	exec 2>&3 3>&-
}
cleanup() { teardown; rm -rf "$work"; }
trap cleanup EXIT
. "$src/tests/interop/guests.sh"
guest_kit
head -c "$bytes" /dev/zero >"$work/rx.bin"
vhost=off
[ -c /dev/vhost-net ] && vhost=on

# vectors=0 (INTx, as the interop tests use): QEMU 7.2 under TCG crashes
# in msix_set_vector_notifiers when a vhost back end starts with MSI-X.
# Both modes get the same device.
guest() { # CHARDEV NETDEV
	HS_GUEST_ACCEL=$accel guest_qemu g 1 "$1" "$2" ",mac=52:54:00:00:00:0a,vectors=0" \
		"hs.role=measure hs.ip=10.9.0.1 hs.peer=10.9.0.2 hs.bytes=$bytes hs.rx=$bytes"
}

ns_up() { # DEV
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add 10.9.0.2/24 dev "$1"
	ip -n "$ns" link set "$1" up
}

vs=''
setup_hyperswitch() { # [TAP OPTIONS [SWITCH OPTION...]]
	local topt=${1:-}
	shift || true
	ip netns add "$ns" || return 1
	"$vswitch" --stats 2 "$@" --vhost-user "$work/g.sock" --tap "$tap$topt" >"$work/sw.log" 2>&1 &
	vs=$!
	pids+=("$vs")
	wait_for "$work/sw.log" running 10 || return 1
	ip link set "$tap" netns "$ns" && ns_up "$tap" || return 1
	guest "socket,id=c0,path=$work/g.sock,reconnect=1" ""
	qemu=$!
}

# the same with the tap's reads and writes one system call each (no
# io_uring batches)
setup_hyperswitch-syscalls() { setup_hyperswitch ,no-uring; }
setup_hyperswitch-poll() { setup_hyperswitch "" --workers 1 --busy-poll; }
setup_hyperswitch-workers() { setup_hyperswitch "" --workers 1; }

setup_qemu-tap() {
	vs=''
	ip netns add "$ns" || return 1
	ip link add "$br" type bridge && ip link set "$br" up || return 1
	ip link add "$veth" type veth peer name "${veth}p" || return 1
	ip link set "${veth}p" master "$br" && ip link set "${veth}p" up || return 1
	ip link set "$veth" netns "$ns" && ns_up "$veth" || return 1
	guest "" "tap,id=n0,ifname=$qtap,script=no,downscript=no,vhost=$vhost"
	qemu=$!
	local end=$((SECONDS + 10))
	until ip link show "$qtap" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
	ip link set "$qtap" master "$br" && ip link set "$qtap" up
}

# ticks: CPU clock ticks so far of the vswitch (0 without one) and of
# QEMU's main thread
ticks() {
	local v=0 q
	[ -n "$vs" ] && v=$(awk '{print $14 + $15}' "/proc/$vs/stat" 2>/dev/null || echo 0)
	q=$(awk '{print $14 + $15}' "/proc/$qemu/task/$qemu/stat" 2>/dev/null || echo 0)
	echo "$v $q"
}

results=()
one() { # MODE ROUND
	local mode=$1 r=$2
	rm -f "$work"/*.log "$work"/*.qemu "$work"/*.sock
	"setup_$mode" || fail "$mode: setup failed"
	# the sink: busybox nc ends at its stdin's EOF, so that stays open
	# (in the namespace, so that teardown's `ip netns pids` finds both)
	ip netns exec "$ns" sh -c 'sleep 100000 | busybox nc -l -p 5001 >/dev/null' &
	wait_for "$work/g.log" HS-RTT 600 || fail "$mode: no round trips"
	local t0 t1 t2
	t0=$(ticks)
	wait_for "$work/g.log" HS-RX-READY 600 || fail "$mode: guest did not send"
	t1=$(ticks)
	ip netns exec "$ns" busybox nc 10.9.0.1 5002 <"$work/rx.bin" &
	pids+=("$!")
	wait_for "$work/g.log" 'HS-RX ' 600 || fail "$mode: guest did not receive"
	t2=$(ticks)
	local rtt tx rx
	rtt=$(grep -o 'round-trip min/avg/max = [0-9./]*' "$work/g.log" | awk '{print $4}')
	tx=$(grep -o 'HS-XFER [0-9]* [0-9.]* [0-9.]*' "$work/g.log" |
		awk '{d = $4 - $3; printf "%.1f", (d > 0 ? $2 * 8 / d / 1e6 : 0)}')
	rx=$(grep -o 'HS-RX [0-9]* [0-9.]* [0-9.]*' "$work/g.log" |
		awk '{d = $4 - $3; printf "%.1f", (d > 0 ? $2 * 8 / d / 1e6 : 0)}')
	# the vswitch's frames each way (its last stats block): how large
	# they were (TSO) tells what its CPU per GB paid for
	local fr=''
	if [ -n "$vs" ]; then
		sleep 2.2 # one more stats block
		fr="$(sw_counter "$work/sw.log" vhu0 rx_packets) $(sw_counter "$work/sw.log" vhu0 tx_packets)"
	fi
	local cpu
	cpu=$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$bytes" -v hz="$(getconf CLK_TCK)" 'BEGIN {
		split(a, x, " "); split(b, y, " "); split(c, z, " "); gb = n / 1e9
		printf "%.3f %.3f %.3f %.3f", (y[1] - x[1]) / hz / gb, (y[2] - x[2]) / hz / gb,
			(z[1] - y[1]) / hz / gb, (z[2] - y[2]) / hz / gb }')
	local c
	read -ra c <<<"$cpu"
	local f
	read -ra f <<<"${fr:-0 0}"
	printf "%-11s %2s  rtt min/avg/max %-22s  guest->host %7s Mbit/s  host->guest %7s Mbit/s  CPU s/GB: vswitch %s/%s, QEMU main %s/%s (g2h/h2g)%s\n" \
		"$mode" "$r" "$rtt" "$tx" "$rx" "${c[0]}" "${c[2]}" "${c[1]}" "${c[3]}" \
		"${fr:+; guest port frames ${f[0]} in, ${f[1]} out}"
	results+=("{\"mode\":\"$mode\",\"round\":$r,\"rtt_ms\":\"$rtt\",\"g2h_mbps\":${tx:-0},\"h2g_mbps\":${rx:-0},\"vswitch_cpu_s_per_gb_g2h\":${c[0]},\"qemu_main_cpu_s_per_gb_g2h\":${c[1]},\"vswitch_cpu_s_per_gb_h2g\":${c[2]},\"qemu_main_cpu_s_per_gb_h2g\":${c[3]},\"guest_port_rx_frames\":${f[0]},\"guest_port_tx_frames\":${f[1]}}")
	teardown
}

echo "guest to host: accel $accel, 1 vCPU, $bytes bytes each way, QEMU tap vhost=$vhost, $rounds round(s)"
for r in $(seq 1 "$rounds"); do
	set -- $modes
	[ $((r % 2)) = 0 ] && set -- $(printf '%s\n' $modes | tac)
	for m; do one "$m" "$r"; done
done
if [ -n "$json" ]; then
	{
		printf '{"bench":"guest_host","date":"%s","machine":"%s, %s CPUs, %s","accel":"%s","vhost_net":"%s","bytes":%s,"results":[\n' \
			"$(date -u +%FT%TZ)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
			"$(nproc)" "$(uname -r)" "$accel" "$vhost" "$bytes"
		(IFS=,; printf '%s\n' "${results[*]}")
		printf ']}\n'
	} >"$json"
fi
