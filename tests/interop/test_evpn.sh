#!/usr/bin/env bash
# BGP EVPN between hyperswitch and the Linux kernel, with FRR (Debian's
# frr: zebra and bgpd) as the control plane on both hosts, each a network
# namespace made here, joined by a veth underlay (10.80.0.0/24) that also
# carries their iBGP session (l2vpn evpn, advertise-all-vni):
#   H1: hyperswitch (the vswitch example), VTEP 10.80.0.1 for VNI 100, a
#       tap to V1 (10.81.0.1). FRR sees the VNI through a Linux vxlan
#       device vx100 in bridge br100, kept up (zebra advertises only an up
#       VNI) on UDP port 4790 so that 4789 stays hyperswitch's; the switch
#       follows vx100's FDB (follow-any-port: zebra's entries name no port)
#       and keeps its local MACs as static entries on hsx, a port of br100
#       (export=hsx), which zebra takes for local MACs.
#   H2: the Linux kernel: vx100 (VNI 100, port 4789, nolearning) and
#       veths to V2 (10.81.0.2) and V3 (10.81.0.3) in bridge br100, as an
#       EVPN host runs it.
# Checks: BGP carries V1's MAC (type-2, learned by hyperswitch, exported)
# to H2, where zebra puts it in the kernel's FDB (extern_learn, dst
# 10.80.0.1), and V2's MAC and H2's flood entry (type-3) to H1, where
# zebra puts them in vx100's FDB and hyperswitch follows; V1 and V2 ping
# each other both ways; V1's MAC moves to H2 (V2 takes it) and comes back
# (MAC mobility: advertised from H1 again, V1 pings V3 on H2); when the
# switch stops, its exported MAC leaves br100 and BGP withdraws it from H2. Processes and namespaces are
# removed on every exit path.
#   test_evpn.sh BUILD_DIR SOURCE_DIR   (HS_TEST_WORKERS=N: polling workers)
# Exits 77 (skipped) when not root or without FRR, ip, bridge or ping.
set -uo pipefail
build=$1
vswitch=$build/examples/vswitch
frr=/usr/lib/frr
#   KEEP=1 keeps the work folder (logs, FRR's configs).
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for c in ip bridge ping; do
	command -v $c >/dev/null || { echo "SKIP: no $c"; exit 77; }
done
[ -x $frr/zebra ] && [ -x $frr/bgpd ] && command -v vtysh >/dev/null &&
	id frr >/dev/null 2>&1 || { echo "SKIP: no FRR (Debian's frr)"; exit 77; }
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
fi
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }

id=$$
h1="hs-$id-e1" h2="hs-$id-e2" v1="hs-$id-ev1" v2="hs-$id-ev2" v3="hs-$id-ev3"
tap="hse$id"
work=$(mktemp -d /tmp/hs-evpn.XXXXXX)
chmod 755 "$work"
vs=
cleanup() {
	[ -n "$vs" ] && kill -KILL "$vs" 2>/dev/null
	for h in 1 2; do
		for d in bgpd zebra; do
			[ -f "$work/h$h/$d.pid" ] && kill -KILL "$(cat "$work/h$h/$d.pid")" 2>/dev/null
		done
	done
	wait 2>/dev/null
	for n in "$h1" "$h2" "$v1" "$v2" "$v3"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
say() { echo "[${SECONDS}s] $*"; }
fail() {
	say "FAIL: $*"
	for n in "$h1" "$h2"; do
		echo "-- $n: vx100's FDB"; bridge -n "$n" fdb show dev vx100 2>&1
	done
	vtysh --vty_socket "$work/h1" -c "show bgp l2vpn evpn summary" 2>&1 | tail -n 5
	vtysh --vty_socket "$work/h1" -c "show bgp l2vpn evpn" 2>&1 | grep -E '^\*|\[[23]\]'
	tail -n 20 "$work"/*.log "$work"/h*/*.log 2>/dev/null
	say "FAIL: $*"
	exit 1
}
mac_of() { # ns dev
	ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'
}
until_ok() { # seconds command...: polls until the command succeeds
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.3
	done
}
counter() { # name: the last value vswitch printed for the vxlan port
	grep "^port vxlan100 backend: " "$work/vswitch.log" | tail -n 1 |
		grep -o " $1 [0-9]*" | awk '{print $2}'
}

for n in "$h1" "$h2" "$v1" "$v2" "$v3"; do
	ip netns add "$n" && ip -n "$n" link set lo up || fail "cannot create namespace $n"
done
for n in "$v1" "$v2" "$v3"; do # the VMs say only what the test makes them say
	ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$h1" link add u1 type veth peer name u2 netns "$h2" &&
	ip -n "$h1" addr add 10.80.0.1/24 dev u1 && ip -n "$h1" link set u1 up &&
	ip -n "$h2" addr add 10.80.0.2/24 dev u2 && ip -n "$h2" link set u2 up ||
	fail "cannot make the underlay"
for h in 1 2; do
	n=$h1 port=4790
	[ $h = 2 ] && n=$h2 port=4789
	ip -n "$n" link add br100 type bridge && ip -n "$n" link set br100 up &&
		ip -n "$n" link add vx100 type vxlan id 100 local 10.80.0.$h dstport $port \
			nolearning &&
		ip -n "$n" link set vx100 master br100 && ip -n "$n" link set vx100 up ||
		fail "cannot make H$h's bridge and vxlan device"
done
# H1's export port: a bridge port that learns nothing by itself
ip -n "$h1" link add hsx type veth peer name hsxp && ip -n "$h1" link set hsx master br100 &&
	ip -n "$h1" link set hsx type bridge_slave learning off &&
	ip -n "$h1" link set hsx up && ip -n "$h1" link set hsxp up || fail "cannot make hsx"
# V2 and V3 on H2's bridge
for i in 2 3; do
	v=$v2
	[ $i = 3 ] && v=$v3
	ip -n "$h2" link add v$i type veth peer name eth0 netns "$v" &&
		ip -n "$h2" link set v$i master br100 && ip -n "$h2" link set v$i up &&
		ip -n "$v" addr add 10.81.0.$i/24 dev eth0 && ip -n "$v" link set eth0 up ||
		fail "cannot make V$i"
done

# FRR on both hosts: zebra and bgpd, iBGP over the underlay
for h in 1 2; do
	n=$h1 o=2
	[ $h = 2 ] && n=$h2 o=1
	d=$work/h$h
	mkdir -p "$d" && chown frr:frr "$d"
	printf 'hostname h%s\nlog file %s/zebra.log\n' $h "$d" >"$d/zebra.conf"
	cat >"$d/bgpd.conf" <<EOF
hostname h$h
log file $d/bgpd.log
router bgp 65000
 bgp router-id 10.80.0.$h
 no bgp default ipv4-unicast
 timers bgp 3 9
 neighbor 10.80.0.$o remote-as 65000
 neighbor 10.80.0.$o timers connect 1
 address-family l2vpn evpn
  neighbor 10.80.0.$o activate
  advertise-all-vni
 exit-address-family
EOF
	chown frr:frr "$d"/*.conf
	common=(-d -u frr -g frr -z "$d/zserv.api" --vty_socket "$d" -P 0)
	ip netns exec "$n" $frr/zebra "${common[@]}" -f "$d/zebra.conf" -i "$d/zebra.pid" \
		>"$work/zebra$h.log" 2>&1 || fail "zebra on H$h did not start"
	until_ok 10 test -S "$d/zserv.api" || fail "zebra on H$h has no socket"
	ip netns exec "$n" $frr/bgpd "${common[@]}" -f "$d/bgpd.conf" -i "$d/bgpd.pid" \
		-p 179 -l 10.80.0.$h >"$work/bgpd$h.log" 2>&1 || fail "bgpd on H$h did not start"
done
say "FRR started on both hosts"

# hyperswitch on H1
workers=${HS_TEST_WORKERS:-0}
ip netns exec "$h1" "$vswitch" --workers "$workers" --stats 1 --tap "$tap" \
	--vxlan 10.80.0.1,vni=100,follow=vx100,follow-any-port,export=hsx \
	>"$work/vswitch.log" 2>&1 &
vs=$!
until_ok 10 grep -q running "$work/vswitch.log" || fail "vswitch did not start"
ip -n "$h1" link set "$tap" netns "$v1" && ip -n "$v1" addr add 10.81.0.1/24 dev "$tap" &&
	ip -n "$v1" link set "$tap" up || fail "cannot move the tap to V1"
m1=$(mac_of "$v1" "$tap") m2=$(mac_of "$v2" eth0)

# V1 speaks once (hyperswitch learns its MAC; its flood reaches nobody
# yet, or H2): then the MAC goes to hsx, zebra, BGP, H2's kernel
ip netns exec "$v1" ping -c 1 -W 1 10.81.0.2 >/dev/null 2>&1
# (grep without -q: it reads to the end, so the writer never dies of SIGPIPE,
# which pipefail would report as a failure even when a line matched)
fdb_has() { # ns mac pattern
	bridge -n "$1" fdb show dev vx100 | grep "^$2 .*$3" >/dev/null
}
until_ok 30 fdb_has "$h2" "$m1" "dst 10.80.0.1 self extern_learn" ||
	fail "BGP did not carry V1's MAC ($m1) to H2's kernel FDB"
say "V1's MAC learned by hyperswitch, advertised by BGP, in H2's kernel FDB"
bridge -n "$h1" fdb show dev hsx | grep "^$m1 .*master br100 static" >/dev/null ||
	fail "V1's MAC is not a static entry on hsx"
# V2 speaks: its MAC comes to H1's vx100 (zebra) and hyperswitch's table
ip netns exec "$v2" ping -c 1 -W 1 10.81.0.1 >/dev/null 2>&1
until_ok 30 fdb_has "$h1" "$m2" "dst 10.80.0.2 self extern_learn" ||
	fail "BGP did not carry V2's MAC ($m2) to H1's vx100"
fdb_has "$h1" "00:00:00:00:00:00" "dst 10.80.0.2 self permanent" ||
	fail "H2's flood entry (type-3) is not in H1's vx100"
say "V2's MAC and H2's flood entry in H1's vx100"

ip netns exec "$v1" ping -c 3 -i 0.2 -W 2 10.81.0.2 >"$work/ping12.log" 2>&1 ||
	fail "V1 cannot ping V2 over EVPN"
ip netns exec "$v2" ping -c 3 -i 0.2 -W 2 10.81.0.1 >"$work/ping21.log" 2>&1 ||
	fail "V2 cannot ping V1 over EVPN"
say "V1 <-> V2 over VXLAN, programmed by BGP EVPN ($(grep -o 'rtt.*' "$work/ping12.log"))"
sleep 1.2 # a counters line
for c in follow_added export_added exported; do
	v=$(counter $c)
	[ "${v:-0}" -ge 1 ] || fail "$c is ${v:-not shown}"
done
[ "$(counter follow_skipped)" = 0 ] || fail "follow_skipped $(counter follow_skipped)"
[ "$(counter export_errors)" = 0 ] || fail "export_errors $(counter export_errors)"
grep "^port vxlan100 backend: " "$work/vswitch.log" | tail -n 1

# MAC mobility: V1's MAC appears behind H2 (V2 takes it and talks to V3,
# unicast only, so hyperswitch still has it behind its tap), then comes
# back: the switch sees it again and takes it back from zebra's remote
# entry; BGP advertises it from H1 again (a higher sequence number)
m3=$(mac_of "$v3" eth0)
ip -n "$v2" link set eth0 address "$m1" && ip -n "$v2" addr add 10.81.0.11/24 dev eth0 &&
	ip -n "$v2" neigh replace 10.81.0.3 lladdr "$m3" dev eth0 nud permanent &&
	ip -n "$v3" neigh replace 10.81.0.11 lladdr "$m1" dev eth0 nud permanent ||
	fail "cannot move V1's MAC to V2"
ip netns exec "$v2" ping -I 10.81.0.11 -c 3 -i 0.3 -W 1 10.81.0.3 >/dev/null 2>&1
until_ok 20 fdb_has "$h1" "$m1" "dst 10.80.0.2 self extern_learn" ||
	fail "BGP did not move V1's MAC to H2"
say "V1's MAC moved to H2 (advertised from there, remote at H1)"
ip -n "$v2" link set eth0 address "$m2" || fail "cannot give V2 its MAC back"
ip -n "$v1" neigh replace 10.81.0.3 lladdr "$m3" dev "$tap" nud permanent &&
	ip -n "$v3" neigh replace 10.81.0.1 lladdr "$m1" dev eth0 nud permanent ||
	fail "cannot set V1's and V3's neighbours"
ip netns exec "$v1" ping -c 6 -i 0.5 -W 1 10.81.0.3 >/dev/null 2>&1
until_ok 20 fdb_has "$h2" "$m1" "dst 10.80.0.1 self extern_learn" ||
	fail "V1's MAC did not come back to H1 (still advertised from H2)"
ip netns exec "$v1" ping -c 3 -i 0.2 -W 2 10.81.0.3 >"$work/ping13.log" 2>&1 ||
	fail "V1 cannot ping V3 after its MAC came back"
bridge -n "$h1" fdb show dev hsx | grep "^$m1 .*master br100 static" >/dev/null ||
	fail "V1's MAC is not back on hsx"
say "V1's MAC back at H1: advertised again, V1 <-> V3"

# the switch stops: its MAC leaves br100, BGP withdraws it from H2
kill -INT "$vs"
wait "$vs" || fail "vswitch exited with status $?"
vs=
bridge -n "$h1" fdb show dev hsx | grep "^$m1 " >/dev/null && fail "V1's MAC stayed on hsx"
until_ok 20 sh -c "! bridge -n $h2 fdb show dev vx100 | grep '^$m1 ' >/dev/null" ||
	fail "BGP did not withdraw V1's MAC from H2"
say "stopped: V1's MAC withdrawn from H2"
say "evpn: PASS"
