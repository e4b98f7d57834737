#!/usr/bin/env bash
# The vxlan backend against the Linux kernel's own vxlan device, over a
# veth underlay between two network namespaces made here:
#   S: the vswitch example, its VTEP at 192.168.77.1 (VNI 42, flooding to
#      192.168.77.2), and a tap that is moved to namespace V (a VM's
#      stand-in, 10.9.0.1);
#   U: a kernel vxlan device (VNI 42, dstport 4789, local 192.168.77.2,
#      flooding to 192.168.77.1) holding 10.9.0.2.
# Checks: ping both ways; a TCP stream with iperf3; the kernel's FDB
# ("bridge fdb") learns V's MAC behind our VTEP and ours learns the
# kernel's; a capture of the underlay shows UDP port 4789, VXLAN flags
# 0x08 and VNI 42, outer UDP checksums the kernel and tshark call valid,
# and several source ports for several inner flows; a frame too large for
# the underlay is counted, not fragmented. Namespaces are removed on every
# exit path.
#   test_vxlan.sh BUILD_DIR SOURCE_DIR   (HS_TEST_WORKERS=N: polling workers)
# HS_TEST_UNDERLAY=1: our datagrams leave through the veth's packet socket
# (underlay_if), next hops resolved by the switch: S's neighbour table is
# emptied first (the first datagrams take the kernel's way, which resolves
# it), then most must go through the veth (underlay_sent); the veth
# computes no checksums there, so the capture checks the pseudo-header
# sums the switch left for offloading; a wrong neighbour entry must stop
# traffic and its removal restore it, which shows the table is followed.
# The kernel side's checksum and segmentation offloads are turned off
# (ethtool): between namespaces nothing ever reaches a wire, so the kernel
# would hand over frames with checksums left to a NIC, and tunnel
# super-datagrams, that no real underlay carries.
# Exits 77 (skipped) when not root or without ip/iperf3/ping/tcpdump/ethtool.
set -uo pipefail
build=$1
vswitch=$build/examples/vswitch
#   KEEP=1 keeps the work folder (logs, the capture).
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for c in ip bridge iperf3 ping tcpdump ethtool python3; do
	command -v $c >/dev/null || { echo "SKIP: no $c"; exit 77; }
done
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
fi
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }

id=$$
nsS="hs-$id-s" nsU="hs-$id-u" nsV="hs-$id-v"
vethS="hsv${id}s" vethU="hsv${id}u" tap="hst$id"
work=$(mktemp -d /tmp/hs-vxlan.XXXXXX)
vs= cap=
cleanup() {
	[ -n "$vs" ] && kill -KILL "$vs" 2>/dev/null
	[ -n "$cap" ] && kill -KILL "$cap" 2>/dev/null
	wait 2>/dev/null
	for n in "$nsS" "$nsU" "$nsV"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
say() { echo "[${SECONDS}s] $*"; }
fail() {
	local why="$*"
	say "FAIL: $why"
	if [ -n "$vs" ] && kill -INT "$vs" 2>/dev/null; then
		for _ in $(seq 30); do kill -0 "$vs" 2>/dev/null || break; sleep 0.1; done
	fi
	ip -n "$nsU" -s link show 2>&1
	bridge -n "$nsU" fdb show dev vx0 2>&1
	ip -n "$nsV" neigh show 2>&1
	tail -n 40 "$work"/*.log "$work"/wire.txt 2>/dev/null
	dmesg 2>/dev/null | grep -iE 'segfault|general protection|vswitch' | tail -n 3
	say "FAIL: $why" # again, last: a log cut short keeps its end
	exit 1
}
wait_for() { # file pattern seconds
	local end=$((SECONDS + $3))
	until grep -q -- "$2" "$1" 2>/dev/null; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

for n in "$nsS" "$nsU" "$nsV"; do
	ip netns add "$n" || fail "cannot create namespace $n"
	ip -n "$n" link set lo up
done
# the underlay
ip -n "$nsS" link add "$vethS" type veth peer name "$vethU" netns "$nsU" &&
	ip -n "$nsS" addr add 192.168.77.1/24 dev "$vethS" && ip -n "$nsS" link set "$vethS" up &&
	ip -n "$nsU" addr add 192.168.77.2/24 dev "$vethU" && ip -n "$nsU" link set "$vethU" up ||
	fail "cannot make the veth underlay"
# the kernel's VTEP
ip -n "$nsU" link add vx0 type vxlan id 42 dstport 4789 local 192.168.77.2 dev "$vethU" &&
	bridge -n "$nsU" fdb append 00:00:00:00:00:00 dev vx0 dst 192.168.77.1 &&
	ip -n "$nsU" addr add 10.9.0.2/24 dev vx0 && ip -n "$nsU" link set vx0 up &&
	ip netns exec "$nsU" ethtool -K vx0 tx off tso off gso off >/dev/null &&
	ip netns exec "$nsU" ethtool -K "$vethU" tx off tso off gso off >/dev/null ||
	fail "cannot make the kernel's vxlan device"
kmtu=$(ip -n "$nsU" -o link show vx0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')

# ours
workers=${HS_TEST_WORKERS:-0}
under=
if [ -n "${HS_TEST_UNDERLAY:-}" ]; then
	under=",underlay=$vethS"
	ip netns exec "$nsS" ethtool -K "$vethS" tx off >/dev/null || fail "ethtool on $vethS"
	ip -n "$nsS" neigh flush all
fi
ip netns exec "$nsS" "$vswitch" --workers "$workers" --tap "$tap,mtu=9000" \
	--vxlan "192.168.77.1,vni=42,remote=192.168.77.2$under" >"$work/vswitch.log" 2>&1 &
vs=$!
wait_for "$work/vswitch.log" running 10 || fail "vswitch did not start"
grep -q "inner MTU $kmtu" "$work/vswitch.log" ||
	fail "the inner MTU is not the kernel's ($kmtu): $(grep -o 'inner MTU [0-9]*' "$work/vswitch.log")"
ip -n "$nsS" link set "$tap" netns "$nsV" &&
	ip -n "$nsV" addr add 10.9.0.1/24 dev "$tap" && ip -n "$nsV" link set "$tap" mtu "$kmtu" &&
	ip -n "$nsV" link set "$tap" up || fail "cannot move the tap to $nsV"
vmac=$(ip -n "$nsV" -o link show "$tap" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
kmac=$(ip -n "$nsU" -o link show vx0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')

# a capture of the underlay, from the kernel's side
ip netns exec "$nsU" tcpdump -i "$vethU" -n -U --immediate-mode -w "$work/underlay.pcap" udp port 4789 \
	>"$work/tcpdump.log" 2>&1 &
cap=$!
wait_for "$work/tcpdump.log" "listening on" 10 || fail "tcpdump did not start"

ip netns exec "$nsV" ping -c 3 -i 0.2 -W 2 10.9.0.2 >"$work/ping-vu.log" 2>&1 ||
	fail "V cannot ping the kernel's VTEP side"
ip netns exec "$nsU" ping -c 3 -i 0.2 -W 2 10.9.0.1 >"$work/ping-uv.log" 2>&1 ||
	fail "the kernel's side cannot ping V"
say "ping V<->U over VXLAN ok"
if [ -n "$under" ]; then
	# a wrong next hop in S's neighbour table stops our datagrams (the veth
	# drops frames for another MAC); its removal brings them back
	ip -n "$nsS" neigh replace 192.168.77.2 lladdr 02:00:00:00:00:99 dev "$vethS" nud permanent
	# one datagram through the entry (crossing or not): the switch looks
	# again only at entries used since its last look, which may have come
	# between the pings above and the replace
	ip netns exec "$nsV" ping -c 1 -W 1 10.9.0.2 >/dev/null 2>&1
	sleep 2.5
	ip netns exec "$nsV" ping -c 2 -i 0.2 -W 1 10.9.0.2 >/dev/null 2>&1 &&
		fail "pings crossed with a wrong next hop in the neighbour table: not followed"
	ip -n "$nsS" neigh del 192.168.77.2 dev "$vethS"
	# an entry in use is looked up again once a second, on a 250 ms tick,
	# and only if traffic used it since: the switch follows within 1.25 s,
	# so pings until 2 s after the del (the last of three, at 1 s, came
	# within 0.1-0.2 s of missing when no other traffic crossed)
	ip netns exec "$nsV" ping -c 5 -i 0.5 -W 2 10.9.0.2 >"$work/ping-back.log" 2>&1 ||
		fail "no traffic once the wrong neighbour entry went"
	say "the switch follows S's neighbour table"
fi
# several inner flows (UDP to ten ports; the kernel answers port unreachable)
for p in $(seq 5001 5010); do
	ip netns exec "$nsV" bash -c "echo x > /dev/udp/10.9.0.2/$p" 2>/dev/null
done
# the largest frame the underlay carries
ip netns exec "$nsV" ping -c 1 -W 2 -M do -s $((kmtu - 28)) 10.9.0.2 >"$work/ping-max.log" 2>&1 ||
	fail "a ping of the inner MTU did not cross"
sleep 0.3
kill -INT "$cap"
wait "$cap" 2>/dev/null
cap=
# TCP through the tunnel (the tap hands over TSO frames: the switch cuts
# them for the tunnel, which takes no offloads yet)
ip netns exec "$nsU" iperf3 -s -1 -B 10.9.0.2 >"$work/iperf-s.log" 2>&1 &
srv=$!
end=$((SECONDS + 20))
# (grep without -q: it reads to the end, so the writer never dies of SIGPIPE,
# which pipefail would report as a failure even when a line matched)
until ip netns exec "$nsU" ss -Hltn "sport = :5201" | grep . >/dev/null; do
	[ $SECONDS -lt $end ] || fail "iperf3 server did not start"
	sleep 0.1
done
timeout 20 ip netns exec "$nsV" iperf3 -c 10.9.0.2 -t 2 --connect-timeout 3000 -J >"$work/iperf.json" 2>"$work/iperf-c.log" ||
	fail "iperf3 failed"
timeout 10 tail --pid="$srv" -f /dev/null || fail "the iperf3 server did not end"
read -r bytes mbps < <(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]; print(int(e["sum_received"]["bytes"]), int(e["sum_received"]["bits_per_second"]/1e6))' "$work/iperf.json")
[ "${bytes:-0}" -gt 1000000 ] || fail "TCP moved only ${bytes:-0} bytes"
say "TCP V->U over VXLAN: $mbps Mbit/s"
# too large for the underlay: dropped and counted, never fragmented
ip -n "$nsV" link set "$tap" mtu 9000
ip netns exec "$nsV" ping -c 1 -W 1 -M do -s 3000 10.9.0.2 >/dev/null 2>&1 &&
	fail "a 3000-byte ping crossed a 1500-byte underlay"

# the kernel learned V's MAC behind our VTEP
bridge -n "$nsU" fdb show dev vx0 | grep "^$vmac dst 192.168.77.1" >/dev/null ||
	fail "the kernel did not learn $vmac behind 192.168.77.1: $(bridge -n "$nsU" fdb show dev vx0)"
kill -INT "$vs"
wait "$vs"
st=$?
vs=
[ "$st" = 0 ] || fail "vswitch exited with status $st$([ "$st" -gt 128 ] && echo " (signal $((st - 128)))")"
# ... and we learned the kernel's behind its VTEP
grep -q "^vxlan vxlan42: $kmac dst 192.168.77.2" "$work/vswitch.log" ||
	fail "the switch did not learn $kmac behind 192.168.77.2"
grep -q "^port vxlan42: .* oversize [1-9]" "$work/vswitch.log" ||
	fail "the oversize frame was not counted: $(grep '^port vxlan42:' "$work/vswitch.log")"

# the wire, read from the capture: every datagram from our VTEP to port
# 4789 with flags 0x08 and VNI 42 and a valid UDP checksum, no fragment,
# nothing larger than the underlay's MTU, several source ports
python3 - "$work/underlay.pcap" >"$work/wire.txt" 2>&1 <<'PY' || fail "the wire: $(cat "$work/wire.txt")"
import struct, sys
data = open(sys.argv[1], "rb").read()
magic = struct.unpack("<I", data[:4])[0]
end = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
off, ours, bad, ports, big = 24, 0, [], set(), 0
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s
while off + 16 <= len(data):
    _, _, incl, orig = struct.unpack(end + "IIII", data[off:off + 16])
    pkt = data[off + 16:off + 16 + incl]
    off += 16 + incl
    if len(pkt) < 14 + 20 + 8 or pkt[12:14] != b"\x08\x00":
        continue
    ip = pkt[14:]
    ihl = (ip[0] & 15) * 4
    src = ".".join(str(x) for x in ip[12:16])
    if src != "192.168.77.1":
        continue
    ours += 1
    frag = struct.unpack("!H", ip[6:8])[0]
    if frag & 0x3fff:
        bad.append("a fragment")
    if orig > 1514:
        big += 1
    udp = ip[ihl:struct.unpack("!H", ip[2:4])[0]]
    sport, dport, ulen, uck = struct.unpack("!HHHH", udp[:8])
    ports.add(sport)
    if dport != 4789:
        bad.append("port %d" % dport)
    if udp[8] != 0x08 or int.from_bytes(udp[12:15], "big") != 42:
        bad.append("flags %#x vni %d" % (udp[8], int.from_bytes(udp[12:15], "big")))
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    if uck == 0 or csum(pseudo + udp) != 0xffff:
        bad.append("checksum %#06x" % uck)
print("%d datagrams from our VTEP, %d source ports, %d larger than the underlay" %
      (ours, len(ports), big))
if bad:
    print("bad:", bad[:5]); sys.exit(1)
if ours < 10 or len(ports) < 3 or big:
    sys.exit(1)
PY
say "wire: $(cat "$work/wire.txt"); port 4789, flags 0x08, VNI 42, checksums valid"
grep "^port vxlan42" "$work/vswitch.log"
if [ -n "$under" ]; then
	ctr() { grep -o "$1 [0-9]*" "$work/vswitch.log" | tail -1 | cut -d' ' -f2; }
	sent=$(ctr underlay_sent) kern=$(ctr underlay_kernel) res=$(ctr nh_resolved) chg=$(ctr nh_changed)
	say "underlay: $sent datagrams through $vethS, ${kern:-?} the kernel's way, $res resolutions, $chg changes"
	# resolved, changed to the wrong MAC, and back: the way back counts as
	# a change, or as a new resolution when a check ran while S had no
	# entry (between the del and the kernel's own resolution)
	[ "${sent:-0}" -gt 1000 ] && [ "${sent:-0}" -gt "$((${kern:-0} * 10))" ] && [ "${res:-0}" -ge 1 ] &&
		[ "${chg:-0}" -ge 1 ] && [ $((${res:-0} + ${chg:-0})) -ge 3 ] ||
		fail "the datagrams did not go through the underlay interface"
fi
say "vxlan: PASS"
