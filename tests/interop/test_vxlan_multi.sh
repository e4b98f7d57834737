#!/usr/bin/env bash
# One VXLAN network (VNI 42) across three hosts, each a network namespace
# made here, on an underlay bridge (namespace N, 192.168.88.0/24):
#   H1: hyperswitch (the vswitch example), VTEP 192.168.88.1, its flood
#       list given on the command line, sending through its underlay
#       interface's packet socket (underlay_if), next hops resolved by the
#       switch; a tap to V1 (10.10.0.1);
#   H2: the Linux kernel: a vxlan device in a bridge with a veth to V2
#       (10.10.0.2), flooding to both other VTEPs;
#   H3: hyperswitch again, VTEP 192.168.88.3, with no flood list of its
#       own: it follows the FDB of a Linux vxlan device on H3 (left down),
#       which `bridge fdb` programs, as FRR's zebra would; a tap to V3
#       (10.10.0.3).
# Checks: every VM pings every other (broadcast ARP replicated head-end
# to both other VTEPs, replies unicast to the learned VTEP); each VTEP
# learned the others' VMs behind the right address (both hyperswitch
# tables and the kernel's `bridge fdb`); an entry added with `bridge fdb`
# on H3's device appears in H3's table as static and goes with `bridge
# fdb del`; a flood VTEP deleted there leaves H3's flood list; learned
# entries age out (ageing 4 s) once the traffic stops, flood entries
# stay; H1's datagrams to both other VTEPs went through its interface.
# Namespaces are removed on every exit path.
#   test_vxlan_multi.sh BUILD_DIR SOURCE_DIR   (HS_TEST_WORKERS=N: workers)
# The kernel side's checksum and segmentation offloads are off, as in
# test_vxlan.sh (between namespaces nothing reaches a wire).
# Exits 77 (skipped) when not root or without ip/bridge/ping/ethtool.
set -uo pipefail
build=$1
vswitch=$build/examples/vswitch
#   KEEP=1 keeps the work folder (logs).
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for c in ip bridge ping ethtool sysctl; do
	command -v $c >/dev/null || { echo "SKIP: no $c"; exit 77; }
done
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
fi
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }

id=$$
nsN="hs-$id-n"
ns=("$nsN")
for i in 1 2 3; do ns+=("hs-$id-h$i" "hs-$id-v$i"); done
work=$(mktemp -d /tmp/hs-vxlan3.XXXXXX)
vs1= vs3=
cleanup() {
	for p in $vs1 $vs3; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "${ns[@]}"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
say() { echo "[${SECONDS}s] $*"; }
fail() {
	say "FAIL: $*"
	bridge -n "hs-$id-h2" fdb show dev vx0 2>&1
	tail -n 30 "$work"/*.log
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
# The newest table dump of a vswitch log (--stats 1 prints one a second):
# the "vxlan" lines after the last "switch:" line.
table() { # log
	awk '/^switch:/ {n = 0; delete t} /^vxlan / {t[n++] = $0}
	     END {for (i = 0; i < n; i++) print t[i]}' "$1"
}
# (grep without -q: it reads to the end, so the writer never dies of SIGPIPE,
# which pipefail would report as a failure even when a line matched)
# waits until the newest table of log has (has=1) or lacks (has=0) a line
# matching pattern
wait_table() { # log pattern has seconds
	local end=$((SECONDS + $4))
	while :; do
		if table "$1" | grep -- "$2" >/dev/null; then [ "$3" = 1 ] && return 0
		else [ "$3" = 0 ] && return 0; fi
		[ $SECONDS -lt $end ] || return 1
		sleep 0.3
	done
}
mac_of() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }

for n in "${ns[@]}"; do
	ip netns add "$n" || fail "cannot create namespace $n"
	ip -n "$n" link set lo up
	# no IPv6: its router solicitations would keep learned entries fresh
	ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 || fail "sysctl in $n"
done
ip -n "$nsN" link add br0 type bridge && ip -n "$nsN" link set br0 up || fail "underlay bridge"
for i in 1 2 3; do
	h="hs-$id-h$i"
	ip -n "$nsN" link add "u$i" type veth peer name ul netns "$h" &&
		ip -n "$nsN" link set "u$i" master br0 && ip -n "$nsN" link set "u$i" up &&
		ip -n "$h" addr add "192.168.88.$i/24" dev ul && ip -n "$h" link set ul up ||
		fail "underlay link to $h"
done
h1="hs-$id-h1" h2="hs-$id-h2" h3="hs-$id-h3" v1="hs-$id-v1" v2="hs-$id-v2" v3="hs-$id-v3"

# H2: the kernel's VTEP, a bridge, a veth to V2
ip -n "$h2" link add vx0 type vxlan id 42 dstport 4789 local 192.168.88.2 dev ul &&
	bridge -n "$h2" fdb append 00:00:00:00:00:00 dev vx0 dst 192.168.88.1 &&
	bridge -n "$h2" fdb append 00:00:00:00:00:00 dev vx0 dst 192.168.88.3 &&
	ip -n "$h2" link add br2 type bridge && ip -n "$h2" link set br2 up &&
	ip -n "$h2" link set vx0 master br2 && ip -n "$h2" link set vx0 up &&
	ip -n "$h2" link add vm type veth peer name vm netns "$v2" &&
	ip -n "$h2" link set vm master br2 && ip -n "$h2" link set vm up &&
	ip -n "$v2" addr add 10.10.0.2/24 dev vm && ip -n "$v2" link set vm mtu 1450 &&
	ip -n "$v2" link set vm up &&
	ip netns exec "$h2" ethtool -K vx0 tx off tso off gso off >/dev/null &&
	ip netns exec "$h2" ethtool -K ul tx off tso off gso off >/dev/null &&
	ip netns exec "$v2" ethtool -K vm tx off tso off gso off >/dev/null ||
	fail "cannot build H2"

# H3's followed device: down (no socket), no learning of its own
ip -n "$h3" link add vxf type vxlan id 42 dstport 4789 local 192.168.88.3 nolearning &&
	bridge -n "$h3" fdb append 00:00:00:00:00:00 dev vxf dst 192.168.88.1 &&
	bridge -n "$h3" fdb append 00:00:00:00:00:00 dev vxf dst 192.168.88.2 ||
	fail "cannot make H3's vxlan device"

workers=${HS_TEST_WORKERS:-0}
ip netns exec "$h1" "$vswitch" --workers "$workers" --stats 1 --tap t1 \
	--vxlan 192.168.88.1,vni=42,remote=192.168.88.2,remote=192.168.88.3,ageing=4,underlay=ul \
	>"$work/h1.log" 2>&1 &
vs1=$!
ip netns exec "$h3" "$vswitch" --workers "$workers" --stats 1 --tap t3 \
	--vxlan 192.168.88.3,vni=42,follow=vxf,ageing=4 >"$work/h3.log" 2>&1 &
vs3=$!
wait_for "$work/h1.log" running 10 || fail "H1's vswitch did not start"
wait_for "$work/h3.log" running 10 || fail "H3's vswitch did not start"
for i in 1 3; do
	ip -n "hs-$id-h$i" link set "t$i" netns "hs-$id-v$i" &&
		ip -n "hs-$id-v$i" addr add "10.10.0.$i/24" dev "t$i" &&
		ip -n "hs-$id-v$i" link set "t$i" mtu 1450 && ip -n "hs-$id-v$i" link set "t$i" up ||
		fail "cannot move t$i to V$i"
done
m1=$(mac_of "$v1" t1) m2=$(mac_of "$v2" vm) m3=$(mac_of "$v3" t3)
wait_table "$work/h3.log" "00:00:00:00:00:00 dst 192.168.88.2" 1 5 ||
	fail "H3 did not take the flood list from vxf: $(table "$work/h3.log")"

# every VM reaches every other
for pair in "1 2" "1 3" "3 2" "2 3" "2 1" "3 1"; do
	set -- $pair
	ip netns exec "hs-$id-v$1" ping -c 2 -i 0.2 -W 2 "10.10.0.$2" >"$work/ping-$1$2.log" 2>&1 ||
		fail "V$1 cannot ping V$2"
done
say "pings between all three VMs ok"

# learning, at every VTEP
wait_table "$work/h1.log" "$m2 dst 192.168.88.2\$" 1 3 || fail "H1 did not learn V2: $(table "$work/h1.log")"
wait_table "$work/h1.log" "$m3 dst 192.168.88.3\$" 1 3 || fail "H1 did not learn V3: $(table "$work/h1.log")"
wait_table "$work/h3.log" "$m1 dst 192.168.88.1\$" 1 3 || fail "H3 did not learn V1: $(table "$work/h3.log")"
wait_table "$work/h3.log" "$m2 dst 192.168.88.2\$" 1 3 || fail "H3 did not learn V2: $(table "$work/h3.log")"
bridge -n "$h2" fdb show dev vx0 >"$work/fdb2.txt"
grep -q "^$m1 dst 192.168.88.1" "$work/fdb2.txt" || fail "the kernel did not learn V1 behind H1"
grep -q "^$m3 dst 192.168.88.3" "$work/fdb2.txt" || fail "the kernel did not learn V3 behind H3"
say "every VTEP learned the others' VMs"

# entries programmed over netlink on H3's device
bridge -n "$h3" fdb add 02:00:00:00:07:77 dev vxf dst 192.168.88.2 ||
	fail "bridge fdb add on vxf"
wait_table "$work/h3.log" "02:00:00:00:07:77 dst 192.168.88.2 static" 1 5 ||
	fail "H3 did not take a static entry from vxf: $(table "$work/h3.log")"
bridge -n "$h3" fdb del 02:00:00:00:07:77 dev vxf dst 192.168.88.2 || fail "bridge fdb del"
wait_table "$work/h3.log" "02:00:00:00:07:77" 0 5 ||
	fail "H3 kept an entry vxf deleted: $(table "$work/h3.log")"
bridge -n "$h3" fdb del 00:00:00:00:00:00 dev vxf dst 192.168.88.2 || fail "bridge fdb del (flood)"
wait_table "$work/h3.log" "00:00:00:00:00:00 dst 192.168.88.2" 0 5 ||
	fail "H3 kept a flood VTEP vxf deleted: $(table "$work/h3.log")"
say "netlink-programmed entries followed on H3"

# ageing: no traffic now; learned entries go within ageing (4 s) and the
# scan (1 s); flood entries stay
wait_table "$work/h1.log" "$m2 dst" 0 12 || fail "H1's entry for V2 did not age: $(table "$work/h1.log")"
wait_table "$work/h1.log" "$m3 dst" 0 12 || fail "H1's entry for V3 did not age: $(table "$work/h1.log")"
table "$work/h1.log" | grep "00:00:00:00:00:00 dst 192.168.88.3" >/dev/null ||
	fail "H1's flood list aged: $(table "$work/h1.log")"
say "learned entries aged out, flood entries kept"

for p in $vs1 $vs3; do
	kill -INT "$p"
	wait "$p" || fail "a vswitch exited with status $?"
done
vs1= vs3=
grep "^port vxlan42" "$work/h1.log" | tail -n 2
ctr() { grep -o "$1 [0-9]*" "$work/h1.log" | tail -1 | cut -d' ' -f2; }
[ "$(ctr underlay_sent)" -gt 0 ] && [ "$(ctr nh_resolved)" -ge 2 ] ||
	fail "H1's datagrams did not go through its underlay interface"
say "H1: $(ctr underlay_sent) datagrams through its interface, $(ctr underlay_kernel) the kernel's way"
say "vxlan_multi: PASS"
