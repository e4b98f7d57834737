#!/usr/bin/env bash
# Two real Linux guests (Debian's kernel, a busybox initramfs built here)
# under QEMU (software emulation) on two vhost-user ports of the vswitch
# example: they ping each other (also fragmented), move 1 MiB over TCP
# (checksums compared), then one guest is killed and restarted and traffic
# resumes. Three device configurations: defaults (split ring, mergeable
# buffers, event index, offloads), packed ring with multiqueue, and
# everything off (no mrg_rxbuf, no event_idx, no checksum/TSO offloads).
#   test_qemu_guests.sh BUILD_DIR SOURCE_DIR   (HS_TEST_WORKERS=N: polling workers)
# Exits 77 (skipped) when QEMU or a guest kernel is not installed.
set -uo pipefail
build=$1 src=$2
vswitch=$build/examples/vswitch
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }
. "$src/tests/interop/guests.sh"
guest_work hs-qemu
guest_kit

# guest NAME SOCKET MAC ROLE IP PEER (CPUS, DEV, NET and CHR from run_pass)
guest() {
	guest_qemu "$1" "$cpus" "socket,id=c0,path=$2$chr" "$net" ",mac=$3,vectors=0$dev" \
		"hs.role=$4 hs.ip=$5 hs.peer=$6 hs.bytes=1048576"
	echo $!
}

workers=${HS_TEST_WORKERS:-0}
start_switch() { # log
	"$vswitch" --workers "$workers" --vhost-user "$work/a.sock$popt" --vhost-user "$work/b.sock$popt" \
		>"$work/$1" 2>&1 &
	vs=$!
	pids+=("$vs")
	wait_for "$work/$1" "running" 10 || fail "$name: vswitch did not start"
}

last_pong() { grep -o 'HS-PONG [0-9]*' "$work/ga.log" | tail -1 | cut -d' ' -f2; }

# run_pass NAME MODE DEVICE_OPTS NETDEV_OPTS PORT_OPTS GUEST_CPUS RESTART_SWITCH
# MODE server: the switch listens, QEMU connects (and reconnects after a
# switch restart); client: QEMU listens, the switch connects and reconnects.
run_pass() {
	name=$1 dev=$3 net=$4 popt=$5 cpus=$6
	local mode=$2 restart_switch=$7
	if [ "$mode" = client ]; then
		popt="$popt,client" chr=",server=on,wait=off"
	else
		chr=",reconnect=1"
	fi
	rm -f "$work"/*.log "$work"/*.sock
	start_switch vswitch.log
	guest gb "$work/b.sock" 52:54:00:00:00:02 server 10.0.0.2 10.0.0.1 >/dev/null
	local ga
	ga=$(guest ga "$work/a.sock" 52:54:00:00:00:01 client 10.0.0.1 10.0.0.2)
	pids+=("$ga") # started in a subshell: its own pids+= did not reach us
	wait_for "$work/ga.log" "HS-PING-OK" 120 || fail "$name: guest a cannot ping b"
	wait_for "$work/ga.log" "HS-FRAG-OK" 60 || fail "$name: fragmented ping failed"
	wait_for "$work/gb.log" "HS-RECEIVED" 120 || fail "$name: TCP stream did not arrive"
	stream_intact "$name" "$work/ga.log" "$work/gb.log" 1048576
	echo "$name: ping, fragmented ping and 1 MiB TCP ok"
	if [ "$cpus" -gt 1 ]; then
		grep -q "vhu0: 2 of 2 queue pair(s) active" "$work/vswitch.log" ||
			fail "$name: the guest did not enable both queue pairs"
	fi

	# The VMM of guest a dies; a new one starts on the same socket.
	kill -KILL "$ga"
	wait "$ga" 2>/dev/null
	wait_for "$work/vswitch.log" "vhu0: front-end disconnected" 30 ||
		fail "$name: switch did not see the guest go"
	mv "$work/ga.log" "$work/ga-first.log"
	guest ga "$work/a.sock" 52:54:00:00:00:01 ping 10.0.0.1 10.0.0.2 >/dev/null
	wait_for "$work/ga.log" "HS-PONG" 120 || fail "$name: no traffic after the restart"
	echo "$name: traffic resumed after the guest was killed and restarted"

	kill -INT "$vs"
	wait "$vs" || fail "$name: the switch exited with status $? (sanitizer report in its log?)"
	grep -q "^port vhu0: rx_packets [1-9]" "$work/vswitch.log" || fail "$name: no counters"
	if grep -E "^port .*(bad_descriptor|bad_offload|copy_error)" "$work/vswitch.log"; then
		fail "$name: unexpected drops"
	fi

	if [ "$restart_switch" = 1 ]; then
		# The switch goes away without warning while the guests run; a new
		# one starts and both guests' links come back.
		start_switch vswitch2.log
		if ! { wait_for "$work/vswitch2.log" "vhu0: link up" 60 &&
		       wait_for "$work/vswitch2.log" "vhu1: link up" 60; }; then
			fail "$name: the guests did not come back to the restarted switch"
		fi
		local before=$(($(last_pong) + 0))
		local end=$((SECONDS + 60))
		while [ $(($(last_pong) + 0)) -le $((before + 2)) ]; do
			[ $SECONDS -lt $end ] || fail "$name: no traffic through the restarted switch"
			sleep 0.5
		done
		kill -KILL "$vs"
		wait "$vs" 2>/dev/null
		start_switch vswitch3.log
		wait_for "$work/vswitch3.log" "vhu1: link up" 60 ||
			fail "$name: no link after a switch crash"
		before=$(($(last_pong) + 0))
		end=$((SECONDS + 60))
		while [ $(($(last_pong) + 0)) -le $((before + 2)) ]; do
			[ $SECONDS -lt $end ] || fail "$name: no traffic after a switch crash"
			sleep 0.5
		done
		kill -INT "$vs"
		wait "$vs" || fail "$name: the switch exited with status $? (sanitizer report in its log?)"
		echo "$name: traffic resumed after the switch was stopped, and after it was killed"
	fi
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	pids=()
}

# Two vCPUs in the multiqueue pass: Linux enables one queue pair per CPU.
# QEMU cannot resume a packed ring after losing its back-end (it has no
# index of the ring's progress to fall back on), so the switch restart is
# tested on split rings.
run_pass default server "" "" "" 1 1
run_pass packed-mq server ",packed=on,mq=on" ",queues=2" ",queues=2" 2 0
run_pass plain client ",mrg_rxbuf=off,event_idx=off,csum=off,guest_csum=off,guest_tso4=off,guest_tso6=off,host_tso4=off,host_tso6=off" "" "" 1 1
echo "3 passed, 0 failed"
