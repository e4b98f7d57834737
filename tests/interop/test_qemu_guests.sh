#!/usr/bin/env bash
# Two real Linux guests (Debian's kernel, a busybox initramfs built here)
# under QEMU (software emulation) on two vhost-user ports of the vswitch
# example: they ping each other (also fragmented), move 1 MiB over TCP
# (checksums compared), then one guest is killed and restarted and traffic
# resumes. Three device configurations: defaults (split ring, mergeable
# buffers, event index, offloads), packed ring with multiqueue, and
# everything off (no mrg_rxbuf, no event_idx, no checksum/TSO offloads).
#   test_qemu_guests.sh BUILD_DIR SOURCE_DIR
# Exits 77 (skipped) when QEMU or a guest kernel is not installed.
set -uo pipefail
build=$1 src=$2
vswitch=$build/examples/vswitch
command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }
work=$(mktemp -d /tmp/hs-qemu.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
kernel=$("$src/tests/interop/build_guest.sh" "$work/initrd.gz") || { echo "SKIP: cannot build guest"; exit 77; }

fail() { echo "FAIL: $*"; for f in "$work"/*.log; do echo "--- $f"; tail -n 20 "$f"; done; exit 1; }

# wait_for FILE PATTERN SECONDS
wait_for() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.5
	done
	return 1
}

# guest NAME SOCKET MAC ROLE IP PEER DEVICE_OPTS NETDEV_OPTS
guest() {
	qemu-system-x86_64 -accel tcg -m 256 -smp 1 -display none -monitor none \
		-no-reboot -kernel "$kernel" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet hs.role=$4 hs.ip=$5 hs.peer=$6 hs.bytes=1048576" \
		-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
		-chardev "socket,id=c0,path=$2" -netdev "vhost-user,id=n0,chardev=c0$8" \
		-device "virtio-net-pci,netdev=n0,mac=$3,vectors=0$7" \
		-serial "file:$work/$1.log" >"$work/$1.qemu" 2>&1 &
	pids+=("$!")
	echo $!
}

run_pass() { # name device-opts netdev-opts port-opts
	local name=$1 dev=$2 net=$3 popt=$4
	rm -f "$work"/*.log
	"$vswitch" --vhost-user "$work/a.sock$popt" --vhost-user "$work/b.sock$popt" \
		>"$work/vswitch.log" 2>&1 &
	local vs=$!
	pids+=("$vs")
	wait_for "$work/vswitch.log" "running" 10 || fail "$name: vswitch did not start"
	guest gb "$work/b.sock" 52:54:00:00:00:02 server 10.0.0.2 10.0.0.1 "$dev" "$net" >/dev/null
	local ga
	ga=$(guest ga "$work/a.sock" 52:54:00:00:00:01 client 10.0.0.1 10.0.0.2 "$dev" "$net")
	wait_for "$work/ga.log" "HS-PING-OK" 120 || fail "$name: guest a cannot ping b"
	wait_for "$work/ga.log" "HS-FRAG-OK" 60 || fail "$name: fragmented ping failed"
	wait_for "$work/gb.log" "HS-RECEIVED" 120 || fail "$name: TCP stream did not arrive"
	local sent got
	sent=$(grep -o 'HS-DATA [0-9a-f]*' "$work/ga.log" | cut -d' ' -f2)
	got=$(grep -o 'HS-RECEIVED [0-9]* [0-9a-f]*' "$work/gb.log")
	[ "$got" = "HS-RECEIVED 1048576 $sent" ] || fail "$name: stream corrupted: sent $sent, $got"
	echo "$name: ping, fragmented ping and 1 MiB TCP ok"

	# The VMM of guest a dies; a new one starts on the same socket.
	kill -KILL "$ga"
	wait_for "$work/vswitch.log" "vhu0: front-end disconnected" 30 ||
		fail "$name: switch did not see the guest go"
	mv "$work/ga.log" "$work/ga-first.log"
	guest ga "$work/a.sock" 52:54:00:00:00:01 ping 10.0.0.1 10.0.0.2 "$dev" "$net" >/dev/null
	wait_for "$work/ga.log" "HS-PING-OK" 120 || fail "$name: no traffic after the restart"
	echo "$name: traffic resumed after the guest was killed and restarted"

	kill -INT "$vs"
	wait "$vs" 2>/dev/null
	grep -q "^port vhu0: rx_packets [1-9]" "$work/vswitch.log" || fail "$name: no counters"
	if grep -E "^port .*(bad_descriptor|bad_offload|copy_error)" "$work/vswitch.log"; then
		fail "$name: unexpected drops"
	fi
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	pids=()
}

run_pass default "" "" ""
run_pass packed-mq ",packed=on,mq=on" ",queues=2" ",queues=2"
run_pass plain ",mrg_rxbuf=off,event_idx=off,csum=off,guest_csum=off,guest_tso4=off,guest_tso6=off,host_tso4=off,host_tso6=off" "" ""
echo "3 passed, 0 failed"
