#!/usr/bin/env bash
# The VXLAN benchmark: a TCP stream (iperf3) from a namespace V through a
# VTEP to a kernel vxlan device in namespace U (VNI 42, over a veth
# underlay), the VTEP on V's side being
#   hyperswitch  the vswitch example: a tap to V, a vxlan port (one
#                worker, pinned to CPU 1)
#   hyperswitch-underlay  the same, its datagrams sent through the veth's
#                packet socket (underlay_if), next hops resolved here
#   kernel       the Linux bridge with a veth to V and a kernel vxlan
#                device (its offloads on: TSO through the tunnel)
#   kernel-seg   the same with the offloads of V's veth and of the vxlan
#                device off: every frame segmented and checksummed by
#                the kernel, as hyperswitch's vxlan port does for now
# in interleaved rounds; Gbit/s at the receiver. U's side is the same in
# both (its vxlan device and veth with offloads off, as the interop test
# needs: between namespaces the kernel would hand a socket checksums left
# to hardware). The namespaces are made here and removed on every exit.
#
#   bench/vxlan.sh [--build DIR] [--seconds S] [--rounds R] [--json FILE]
#
# Needs root, iproute2, ethtool and iperf3 (scripts/deps.sh test).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build secs=8 rounds=3 json=
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--json) json=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--seconds S] [--rounds R] [--json FILE]" >&2; exit 2 ;;
	esac
done
vswitch=$build/examples/vswitch
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for c in ip bridge iperf3 ethtool python3; do
	command -v $c >/dev/null || { echo "no $c: scripts/deps.sh test" >&2; exit 1; }
done
[ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }

id=$$
nsS="hsb-$id-s" nsU="hsb-$id-u" nsV="hsb-$id-v"
work=$(mktemp -d /tmp/hs-bench-vxlan.XXXXXX)
vs=
cleanup() {
	[ -n "$vs" ] && kill -KILL "$vs" 2>/dev/null
	wait 2>/dev/null
	for n in "$nsS" "$nsU" "$nsV"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT

# U and the underlay, made afresh for each run
setup_u() {
	for n in "$nsS" "$nsU" "$nsV"; do
		ip netns add "$n" && ip -n "$n" link set lo up || exit 1
	done
	ip -n "$nsS" link add ul type veth peer name ul netns "$nsU"
	ip -n "$nsS" addr add 192.168.77.1/24 dev ul && ip -n "$nsS" link set ul up
	ip -n "$nsU" addr add 192.168.77.2/24 dev ul && ip -n "$nsU" link set ul up
	ip -n "$nsU" link add vx0 type vxlan id 42 dstport 4789 local 192.168.77.2 dev ul
	bridge -n "$nsU" fdb append 00:00:00:00:00:00 dev vx0 dst 192.168.77.1
	ip -n "$nsU" addr add 10.9.0.2/24 dev vx0 && ip -n "$nsU" link set vx0 up
	ip netns exec "$nsU" ethtool -K vx0 tx off tso off gso off >/dev/null
	ip netns exec "$nsU" ethtool -K ul tx off tso off gso off >/dev/null
}

teardown() {
	[ -n "$vs" ] && kill -INT "$vs" 2>/dev/null && wait "$vs" 2>/dev/null
	vs=
	for n in "$nsS" "$nsU" "$nsV"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
}

setup_hyperswitch() {
	ip netns exec "$nsS" taskset -c 0 "$vswitch" --workers 1 --tap vmv \
		--vxlan "192.168.77.1,vni=42,remote=192.168.77.2${1:-}" >"$work/vswitch.log" 2>&1 &
	vs=$!
	for _ in $(seq 50); do grep -q running "$work/vswitch.log" && break; sleep 0.1; done
	ip -n "$nsS" link set vmv netns "$nsV"
	ip -n "$nsV" link set vmv mtu 1450
	ip -n "$nsV" addr add 10.9.0.1/24 dev vmv && ip -n "$nsV" link set vmv up
}

setup_hyperswitch-underlay() {
	setup_hyperswitch ",underlay=ul"
}

setup_kernel() {
	ip -n "$nsS" link add br0 type bridge && ip -n "$nsS" link set br0 up
	ip -n "$nsS" link add vx0 type vxlan id 42 dstport 4789 local 192.168.77.1 dev ul
	bridge -n "$nsS" fdb append 00:00:00:00:00:00 dev vx0 dst 192.168.77.2
	ip -n "$nsS" link set vx0 master br0 && ip -n "$nsS" link set vx0 up
	ip -n "$nsS" link add vmv type veth peer name vmv netns "$nsV"
	ip -n "$nsS" link set vmv master br0 && ip -n "$nsS" link set vmv up
	ip -n "$nsV" link set vmv mtu 1450
	ip -n "$nsV" addr add 10.9.0.1/24 dev vmv && ip -n "$nsV" link set vmv up
}

setup_kernel-seg() {
	setup_kernel
	ip netns exec "$nsS" ethtool -K vx0 tx off tso off gso off >/dev/null
	ip netns exec "$nsV" ethtool -K vmv tx off tso off gso off >/dev/null
}

# run MODE ROUND: one TCP stream V -> U; prints Gbit/s
run() {
	setup_u
	"setup_$1"
	ip netns exec "$nsV" ping -c 1 -W 3 10.9.0.2 >/dev/null 2>&1 || { echo 0; teardown; return; }
	ip netns exec "$nsU" iperf3 -s -1 -B 10.9.0.2 >/dev/null 2>&1 &
	local srv=$!
	for _ in $(seq 100); do
		ip netns exec "$nsU" ss -Hltn "sport = :5201" | grep -q . && break
		sleep 0.1
	done
	ip netns exec "$nsV" taskset -c 1 iperf3 -c 10.9.0.2 -t "$secs" -J \
		>"$work/$1-$2.json" 2>/dev/null
	wait "$srv" 2>/dev/null
	teardown
	python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]; print("%.2f" % (e["sum_received"]["bits_per_second"]/1e9))' \
		"$work/$1-$2.json" 2>/dev/null || echo 0
}

declare -A res
for r in $(seq 1 "$rounds"); do
	for m in hyperswitch hyperswitch-underlay kernel kernel-seg; do
		g=$(run "$m" "$r")
		res[$m]+="$g "
		echo "round $r $m: $g Gbit/s"
	done
done
python3 - "${res[hyperswitch]}" "${res[kernel]}" "${res[kernel-seg]}" "$secs" "$json" \
	"${res[hyperswitch-underlay]}" <<'PY'
import json, statistics, sys
hs, k, ks = ([float(x) for x in a.split()] for a in sys.argv[1:4])
hu = [float(x) for x in sys.argv[6].split()]
m = statistics.median
out = {"test": "vxlan_tcp", "seconds": int(sys.argv[4]),
       "hyperswitch_gbps": hs, "hyperswitch_underlay_gbps": hu, "kernel_gbps": k,
       "kernel_seg_gbps": ks, "median_hyperswitch": m(hs), "median_hyperswitch_underlay": m(hu),
       "median_kernel": m(k), "median_kernel_seg": m(ks),
       "ratio_kernel": m(hs) / m(k) if m(k) else None,
       "ratio_kernel_seg": m(hs) / m(ks) if m(ks) else None,
       "ratio_underlay_kernel": m(hu) / m(k) if m(k) else None,
       "ratio_underlay_kernel_seg": m(hu) / m(ks) if m(ks) else None}
print(json.dumps(out))
if sys.argv[5]:
    json.dump(out, open(sys.argv[5], "w"), indent=1)
PY
