#!/usr/bin/env bash
# DPDK's virtio-user against hyperswitch's vhost-user ports: one testpmd
# (receiver, rxonly) and another (sender, exactly 100 bursts of 32 frames,
# in 25 rounds of "start tx_first 4") on two ports of the vswitch example; every
# frame sent must arrive, and the switch's counters must say the same.
# Split and packed rings, each in order (VIRTIO_F_IN_ORDER: DPDK's default
# when the switch offers it, with its in-order paths) and not.
#   test_testpmd.sh BUILD_DIR SOURCE_DIR   (HS_TEST_WORKERS=N: polling workers)
# Exits 77 (skipped) without dpdk-testpmd or hugepages.
set -uo pipefail
build=$1
vswitch=$build/examples/vswitch
command -v dpdk-testpmd >/dev/null || { echo "SKIP: no dpdk-testpmd (package dpdk-dev)"; exit 77; }
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }
if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 600 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo 1024 > /proc/sys/vm/nr_hugepages
		mkdir -p /dev/hugepages
		mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
	fi
	[ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -ge 600 ] ||
		{ echo "SKIP: not enough free 2 MiB hugepages"; exit 77; }
fi
work=$(mktemp -d /tmp/hs-testpmd.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work" /dev/hugepages/hs-tp-* 2>/dev/null
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -n 30 "$work"/*.log; exit 1; }

wait_exit() { # pid seconds
	local end=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
	wait "$1" 2>/dev/null
	return 0
}

wait_for() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

pass() { # name vdev-extra
	local name=$1 extra=$2
	# Fresh logs and sockets: the last pass's "running" and "Checking link"
	# must not pass for this one's.
	rm -f "$work"/*.log "$work"/*.sock
	"$vswitch" --workers "${HS_TEST_WORKERS:-0}" --vhost-user "$work/a.sock" \
		--vhost-user "$work/b.sock" >"$work/vswitch.log" 2>&1 &
	local vs=$!
	pids+=("$vs")
	wait_for "$work/vswitch.log" running 10 || fail "$name: vswitch did not start"
	mkfifo "$work/rx.in" "$work/tx.in"
	dpdk-testpmd -l 0,1 --main-lcore 0 --file-prefix hs-tp-rx --no-pci -m 256 \
		--single-file-segments --iova-mode=va \
		--vdev "net_virtio_user0,path=$work/b.sock,queues=1,mac=02:00:00:00:00:02$extra" \
		-- -i --forward-mode=rxonly --nb-cores=1 <"$work/rx.in" >"$work/rx.log" 2>&1 &
	local rx=$!
	pids+=("$rx")
	exec 7>"$work/rx.in"
	echo start >&7
	wait_for "$work/rx.log" "Checking link" 60 || fail "$name: receiver did not start"
	dpdk-testpmd -l 1,0 --main-lcore 1 --file-prefix hs-tp-tx --no-pci -m 256 \
		--single-file-segments --iova-mode=va \
		--vdev "net_virtio_user0,path=$work/a.sock,queues=1,mac=02:00:00:00:00:01$extra" \
		-- -i --forward-mode=io --eth-peer=0,02:00:00:00:00:02 --nb-cores=1 --burst=32 \
		<"$work/tx.in" >"$work/tx.log" 2>&1 &
	local tx=$!
	pids+=("$tx")
	exec 8>"$work/tx.in"
	wait_for "$work/tx.log" "Checking link" 60 || fail "$name: sender did not start"
	sleep 1
	# 25 rounds of 4 bursts of 32, paced so that the sender's ring (256
	# descriptors) never overflows, even with a sanitizer-slowed switch.
	# testpmd's output is block-buffered: statistics show at exit.
	for _ in $(seq 25); do
		printf 'start tx_first 4\n' >&8
		sleep 0.3
		printf 'stop\n' >&8
	done
	sleep 1
	printf 'quit\n' >&8
	exec 8>&-
	wait_exit "$tx" 30 || fail "$name: sender did not quit"
	sleep 1
	printf 'stop\nquit\n' >&7
	exec 7>&-
	wait_exit "$rx" 30 || fail "$name: receiver did not quit"
	kill -INT "$vs"
	wait "$vs" || fail "$name: the switch exited with status $? (sanitizer report in its log?)"
	local sent got swin swout
	# The sum over the rounds' per-port statistics.
	sent=$(grep -A2 'Forward statistics for port 0' "$work/tx.log" |
		sed -n 's/.*TX-packets: *\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s + 0}')
	got=$(grep -m1 -o 'RX-packets: *[0-9]*' "$work/rx.log" | grep -o '[0-9]*$')
	swin=$(sed -n 's/^port vhu0: rx_packets \([0-9]*\).*/\1/p' "$work/vswitch.log")
	swout=$(sed -n 's/^port vhu1: .*tx_packets \([0-9]*\).*/\1/p' "$work/vswitch.log")
	echo "$name: testpmd sent $sent, switch received $swin and delivered $swout, testpmd received $got"
	[ "$sent" = 3200 ] || fail "$name: the sender sent $sent frames, expected 3200"
	if [ "$swin" != "$sent" ] || [ "$swout" != "$sent" ] || [ "$got" != "$sent" ]; then
		fail "$name: counts differ"
	fi
	rm -f "$work/rx.in" "$work/tx.in"
	pids=()
}

pass split ",packed_vq=0"
pass packed ",packed_vq=1"
pass "split, not in order" ",packed_vq=0,in_order=0"
pass "packed, not in order" ",packed_vq=1,in_order=0"
echo "4 passed, 0 failed"
