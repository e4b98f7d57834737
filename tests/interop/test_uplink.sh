#!/usr/bin/env bash
# The uplink backend (AF_PACKET, TPACKET_V3; or AF_XDP with
# HS_TEST_UPLINK_MODE=xdp or xdp-generic) on one end of a veth pair,
# between network namespaces made here:
#   S: the host: the vswitch example with the uplink on vethS, which also
#      carries the host's own address 10.78.0.1 (the host stack keeps the
#      interface), and a tap that is moved to namespace V;
#   V: a VM's stand-in on the switch's tap, 10.78.0.3;
#   P: the "physical network" behind the wire, vethP, 10.78.0.2.
# Checks: P pings V through the uplink and the host's own address beside
# it; the host's unicast never reaches V (a capture on V's tap); TCP both
# ways with iperf3, offloads on: TSO frames cross the uplink whole (the
# switch segments nothing: tx_gso_segments stays 0) and the kernel does
# what the wire needs; the interface
# deleted under the switch takes the port's link down and the switch
# keeps running. Namespaces are removed on every exit path.
#   test_uplink.sh BUILD_DIR SOURCE_DIR   (HS_TEST_WORKERS=N: polling workers)
# Exits 77 (skipped) when not root or without ip/iperf3/ping/tcpdump.
set -uo pipefail
build=$1
vswitch=$build/examples/vswitch
#   KEEP=1 keeps the work folder (logs).
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for c in ip iperf3 ping tcpdump python3; do
	command -v $c >/dev/null || { echo "SKIP: no $c"; exit 77; }
done
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
fi
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }

id=$$
nsS="hs-$id-s" nsP="hs-$id-p" nsV="hs-$id-v"
vethS="hsu${id}s" vethP="hsu${id}p" tap="hst$id"
work=$(mktemp -d /tmp/hs-uplink.XXXXXX)
vs= cap= srv=
cleanup() {
	for p in $vs $cap $srv; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "$nsS" "$nsP" "$nsV"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
say() { echo "[${SECONDS}s] $*"; }
fail() {
	say "FAIL: $*"
	if [ -n "$vs" ] && kill -INT "$vs" 2>/dev/null; then
		for _ in $(seq 30); do kill -0 "$vs" 2>/dev/null || break; sleep 0.1; done
	fi
	ip -n "$nsP" -s link show 2>&1
	ip -n "$nsV" neigh show 2>&1
	tail -n 40 "$work"/*.log
	say "FAIL: $*"
	exit 1
}
wait_for() { # file pattern seconds
	local end=$((SECONDS + $3))
	until grep -q -- "$2" "$1" 2>/dev/null; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}
# the last "port NAME:" counters line vswitch printed
counter() { # port name
	grep "^port $1: " "$work/vswitch.log" | tail -n 1 | grep -o " $2 [0-9]*" | awk '{print $2}'
}

for n in "$nsS" "$nsP" "$nsV"; do
	ip netns add "$n" || fail "cannot create namespace $n"
	ip -n "$n" link set lo up
done
ip -n "$nsS" link add "$vethS" type veth peer name "$vethP" netns "$nsP" &&
	ip -n "$nsS" addr add 10.78.0.1/24 dev "$vethS" && ip -n "$nsS" link set "$vethS" up &&
	ip -n "$nsP" addr add 10.78.0.2/24 dev "$vethP" && ip -n "$nsP" link set "$vethP" up ||
	fail "cannot make the veth pair"
smac=$(ip -n "$nsS" -o link show "$vethS" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')

workers=${HS_TEST_WORKERS:-0}
# HS_TEST_UPLINK_MODE: packet, xdp or xdp-generic; unset: the default
# (AF_PACKET); AF_XDP native on a veth where built
umode=${HS_TEST_UPLINK_MODE:-}
ip netns exec "$nsS" "$vswitch" --workers "$workers" --stats 1 --tap "$tap" \
	--uplink "$vethS${umode:+,$umode}" >"$work/vswitch.log" 2>&1 &
vs=$!
wait_for "$work/vswitch.log" running 10 || fail "vswitch did not start"
got=$(sed -n "s/^uplink $vethS: mode //p" "$work/vswitch.log")
case "${umode:-default}" in
default | packet) want=packet ;;
xdp) want=xdp-native ;;
xdp-generic) want=xdp-generic ;;
esac
[ -f "$build/uplink_xdp_plain.bpf.o" ] || want=packet # built without AF_XDP
[ -n "$got" ] && [ "$got" = "$want" ] || fail "the uplink's mode is ${got:-not reported}, not $want"
say "uplink mode: $got"
ip -n "$nsS" link set "$tap" netns "$nsV" &&
	ip -n "$nsV" addr add 10.78.0.3/24 dev "$tap" && ip -n "$nsV" link set "$tap" up ||
	fail "cannot move the tap to $nsV"

# V's view: nothing addressed to the host's own MAC may reach it
ip netns exec "$nsV" tcpdump -i "$tap" -n -U --immediate-mode -w "$work/v.pcap" \
	ether dst "$smac" >"$work/tcpdump.log" 2>&1 &
cap=$!
wait_for "$work/tcpdump.log" "listening on" 10 || fail "tcpdump did not start"

ip netns exec "$nsP" ping -c 3 -i 0.2 -W 2 10.78.0.3 >"$work/ping-pv.log" 2>&1 ||
	fail "P cannot ping V through the uplink"
ip netns exec "$nsV" ping -c 3 -i 0.2 -W 2 10.78.0.2 >"$work/ping-vp.log" 2>&1 ||
	fail "V cannot ping P through the uplink"
say "ping P<->V through the uplink ok ($(grep -o 'rtt.*' "$work/ping-pv.log"))"
ip netns exec "$nsP" ping -c 20 -i 0.05 -W 2 10.78.0.1 >"$work/ping-ps.log" 2>&1 ||
	fail "P cannot ping the host's own address on the uplink's interface"
say "ping P->host stack on the same interface ok"
sleep 0.3
kill -INT "$cap"
wait "$cap" 2>/dev/null
cap=
leaked=$(tcpdump -r "$work/v.pcap" -n 2>/dev/null | wc -l)
[ "$leaked" = 0 ] || fail "$leaked frames for the host's MAC reached V: $(tcpdump -r "$work/v.pcap" -n 2>&1 | head -3)"
say "the host's unicast stayed out of the switch"

# TCP both ways, offloads on
iperf() { # server-ns server-addr client-ns label
	ip netns exec "$1" iperf3 -s -1 -B "$2" >"$work/iperf-s-$4.log" 2>&1 &
	srv=$!
	local end=$((SECONDS + 20))
	until ip netns exec "$1" ss -Hltn "sport = :5201" | grep . >/dev/null; do
		[ $SECONDS -lt $end ] || fail "iperf3 server did not start"
		sleep 0.1
	done
	timeout 20 ip netns exec "$3" iperf3 -c "$2" -t 2 --connect-timeout 3000 -J \
		>"$work/iperf-$4.json" 2>"$work/iperf-c-$4.log" || fail "iperf3 $4 failed"
	timeout 10 tail --pid="$srv" -f /dev/null || fail "the iperf3 server did not end"
	srv=
	read -r bytes mbps < <(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]; print(int(e["sum_received"]["bytes"]), int(e["sum_received"]["bits_per_second"]/1e6))' "$work/iperf-$4.json")
	[ "${bytes:-0}" -gt 1000000 ] || fail "TCP $4 moved only ${bytes:-0} bytes"
	say "TCP $4 through the uplink: $mbps Mbit/s"
}
iperf "$nsP" 10.78.0.2 "$nsV" "V->P"
iperf "$nsV" 10.78.0.3 "$nsP" "P->V"
sleep 1.2 # a counters line after the streams
gso=$(counter "$vethS" tx_gso_segments)
[ "${gso:-x}" = 0 ] || fail "the switch cut TSO frames for the uplink (tx_gso_segments ${gso:-?})"
gso=$(counter "$tap" tx_gso_segments)
[ "${gso:-x}" = 0 ] || fail "the switch cut TSO frames from the uplink for the tap (tx_gso_segments ${gso:-?})"
say "large frames crossed whole both ways"
if [ "$got" != packet ]; then
	# the frames to V's MAC took the XDP path, their partial checksums
	# (a veth peer's) marked for finishing
	bl=$(grep "^port $vethS backend: " "$work/vswitch.log" | tail -n 1)
	xr=$(echo "$bl" | grep -o " xdp_rx_frames [0-9]*" | awk '{print $2}')
	xp=$(echo "$bl" | grep -o " xdp_rx_csum_partial [0-9]*" | awk '{print $2}')
	[ "${xr:-0}" -gt 1000 ] || fail "few frames took the XDP path: $bl"
	[ "${xp:-0}" -gt 0 ] || fail "no partial checksum was marked: $bl"
	say "$xr frames took the XDP path ($xp with partial checksums)"
fi
line=$(grep "^port $vethS: " "$work/vswitch.log" | tail -n 1)
for d in bad_descriptor bad_offload oversize; do
	case "$line" in *" $d "*) fail "the uplink dropped frames from the kernel: $line" ;; esac
done

# the interface deleted under the switch: link down, the switch runs on
ip -n "$nsP" link del "$vethP" || fail "cannot delete the veth"
wait_for "$work/vswitch.log" "uplink $vethS is gone; link down" 10 ||
	fail "the uplink did not notice its interface went away"
kill -0 "$vs" || fail "vswitch died with its uplink"
kill -INT "$vs"
wait "$vs" || fail "vswitch exited with status $?"
vs=
grep "^port $vethS" "$work/vswitch.log" | tail -n 2
say "uplink: PASS"
