#!/bin/busybox sh
# shellcheck shell=dash disable=SC2013
# /init of the test guests: a busybox system with virtio-net, whose role
# comes from the kernel command line (hs.role, hs.ip, hs.peer, hs.bytes).
# It prints HS-* markers on the serial console for the test to wait on.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
	 virtio_pci failover net_failover virtio_net; do
	insmod /lib/modules/$m.ko 2>/dev/null
done
role=none ip='' peer='' bytes=1048576 pace=0.1 pause='' rx=0
for a in $(cat /proc/cmdline); do
	case "$a" in
	hs.role=*) role=${a#hs.role=} ;;
	hs.ip=*) ip=${a#hs.ip=} ;;
	hs.peer=*) peer=${a#hs.peer=} ;;
	hs.bytes=*) bytes=${a#hs.bytes=} ;;
	hs.pace=*) pace=${a#hs.pace=} ;;
	hs.pause=*) pause=${a#hs.pause=} ;;
	hs.rx=*) rx=${a#hs.rx=} ;;
	esac
done
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add "$ip/24" dev eth0
echo "HS-UP $ip $(cat /sys/class/net/eth0/address)"

wait_peer() {
	n=0
	while ! ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
		n=$((n+1))
		[ $n -gt 120 ] && { echo "HS-PING-FAIL $peer"; return 1; }
	done
	return 0
}

case "$role" in
server)
	# A listener whose stdin stays open (busybox nc quits at stdin EOF).
	# hs.pause=BYTES:SECONDS: after BYTES the reader stops for SECONDS,
	# with a receive window of megabytes: what arrives meanwhile stays in
	# the pages the device wrote (a live migration test moves the guest
	# then; those pages must come along through the dirty log).
	if [ -n "$pause" ]; then
		echo "4096 4194304 8388608" > /proc/sys/net/ipv4/tcp_rmem
		sleep 100000 | nc -l -p 5001 | {
			dd bs=65536 count=$((${pause%:*} / 65536)) 2>/dev/null
			echo "HS-SINK-PAUSE" >&2
			sleep "${pause#*:}"
			echo "HS-SINK-RESUME" >&2
			cat
		} > /tmp/data &
	else
		sleep 100000 | nc -l -p 5001 > /tmp/data &
	fi
	echo "HS-LISTENING"
	wait_peer && echo "HS-PING-OK $peer"
	while [ "$(wc -c < /tmp/data)" -lt "$bytes" ]; do sleep 0.2; done
	echo "HS-RECEIVED $(wc -c < /tmp/data) $(md5sum < /tmp/data | cut -d' ' -f1)"
	;;
client)
	wait_peer && echo "HS-PING-OK $peer"
	ping -c 3 -s 3000 "$peer" >/dev/null 2>&1 && echo "HS-FRAG-OK $peer"
	dd if=/dev/urandom of=/tmp/data bs=1024 count=$((bytes / 1024)) 2>/dev/null
	echo "HS-DATA $(md5sum < /tmp/data | cut -d' ' -f1)"
	n=0
	until nc "$peer" 5001 < /tmp/data; do
		n=$((n+1)); [ $n -gt 30 ] && break; sleep 1
	done
	echo "HS-SENT"
	;;
stream)
	# A TCP stream paced to last a while (64 KiB every hs.pace seconds),
	# e.g. across a live migration of its peer, with pings every 50 ms
	# beside it: HS-PINGSTAT says how many were lost.
	wait_peer && echo "HS-PING-OK $peer"
	chunks=$((bytes / 65536))
	dd if=/dev/urandom of=/tmp/data bs=65536 count=$chunks 2>/dev/null
	echo "HS-DATA $(md5sum < /tmp/data | cut -d' ' -f1)"
	ping -q -i 0.05 -w 600 "$peer" > /tmp/ping.txt 2>&1 &
	pp=$!
	echo "HS-STREAM-START"
	i=0
	while [ $i -lt $chunks ]; do
		dd if=/tmp/data bs=65536 skip=$i count=1 2>/dev/null
		i=$((i + 1))
		[ $((i % 16)) = 0 ] && echo "HS-CHUNKS $i" >&2
		sleep "$pace"
	done | nc "$peer" 5001
	echo "HS-SENT"
	sleep 2
	kill -INT $pp
	wait $pp
	echo "HS-PINGSTAT $(grep transmitted /tmp/ping.txt)"
	;;
measure)
	# For bench/vcpu_state.sh: round trips (200 pings, 20 ms apart), then
	# hs.bytes over TCP to a server, timed (uptime: 10 ms resolution).
	wait_peer && echo "HS-PING-OK $peer"
	dd if=/dev/zero of=/tmp/data bs=65536 count=$((bytes / 65536)) 2>/dev/null
	echo "HS-RTT $(ping -q -c 200 -i 0.02 "$peer" 2>&1 | grep -E 'round-trip|loss' | tr '\n' ' ')"
	t0=$(cut -d' ' -f1 /proc/uptime)
	n=0
	until nc "$peer" 5001 < /tmp/data; do
		n=$((n+1)); [ $n -gt 30 ] && break; sleep 1
	done
	t1=$(cut -d' ' -f1 /proc/uptime)
	echo "HS-XFER $(wc -c < /tmp/data) $t0 $t1"
	# hs.rx=BYTES (bench/guest_host.sh): then receive BYTES on port 5002,
	# timed from the first byte seen (20 ms polls) to the last (50 ms).
	if [ "$rx" -gt 0 ]; then
		rm -f /tmp/data
		sleep 100000 | nc -l -p 5002 > /tmp/rx &
		echo "HS-RX-READY"
		while [ ! -s /tmp/rx ]; do sleep 0.02; done
		t0=$(cut -d' ' -f1 /proc/uptime)
		while [ "$(wc -c < /tmp/rx)" -lt "$rx" ]; do sleep 0.05; done
		t1=$(cut -d' ' -f1 /proc/uptime)
		echo "HS-RX $(wc -c < /tmp/rx) $t0 $t1"
	fi
	;;
ping)
	# Pings for ever and numbers each answer, so that the test can tell
	# answers that came after an event (a switch restart) from older ones.
	wait_peer && echo "HS-PING-OK $peer"
	n=0
	while true; do
		if ping -c 1 -W 1 "$peer" >/dev/null 2>&1; then
			n=$((n+1))
			echo "HS-PONG $n"
		fi
		sleep 0.5
	done
	;;
esac
echo "HS-DONE"
while true; do sleep 1000; done
