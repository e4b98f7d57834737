#!/usr/bin/env bash
# The VXLAN benchmark: TCP and 64-byte UDP (iperf3) between a namespace V
# and, through a VTEP, a kernel vxlan device in namespace U (VNI 42, over a veth
# underlay), the VTEP on V's side being
#   hyperswitch  the vswitch example: a tap to V, a vxlan port (one
#                worker, pinned to CPU 0; the iperf3 client on CPU 1)
#   hyperswitch-underlay  the same, its datagrams sent through the veth's
#                packet socket (underlay_if), next hops resolved here
#   kernel       the Linux bridge with a veth to V and a kernel vxlan
#                device (its offloads on: TSO through the tunnel)
#   kernel-seg   the same with the offloads of V's veth and of the vxlan
#                device off: every frame segmented and checksummed by
#                the kernel, as hyperswitch's vxlan port does for now
# in interleaved rounds: one TCP stream V -> U (Gbit/s at the receiver),
# then 64-byte frames (iperf3 UDP, 18-byte payloads) V -> U and U -> V
# (packets per second received). U's side is the same in
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

# iperf SERVER_NS SERVER_ADDR CLIENT_NS CLIENT_CPU OUT [client options]: one run
iperf() {
	local sns=$1 addr=$2 cns=$3 cpu=$4 out=$5
	shift 5
	ip netns exec "$sns" iperf3 -s -1 -B "$addr" >/dev/null 2>&1 &
	local srv=$!
	for _ in $(seq 100); do
		ip netns exec "$sns" ss -Hltn "sport = :5201" | grep -q . && break
		sleep 0.1
	done
	ip netns exec "$cns" taskset -c "$cpu" iperf3 -c "$addr" -t "$secs" -J "$@" >"$out" 2>/dev/null
	wait "$srv" 2>/dev/null
}

# run MODE ROUND: one TCP stream V -> U (Gbit/s), then 64-byte frames
# (iperf3 UDP, 18-byte payloads, as fast as the sender goes) V -> U and
# U -> V (packets per second received); prints the three
run() {
	setup_u
	"setup_$1"
	if ! ip netns exec "$nsV" ping -c 1 -W 3 10.9.0.2 >/dev/null 2>&1; then
		teardown
		echo "0 0 0"
		return
	fi
	iperf "$nsU" 10.9.0.2 "$nsV" 1 "$work/$1-$2-tcp.json"
	iperf "$nsU" 10.9.0.2 "$nsV" 1 "$work/$1-$2-vu.json" -u -l 18 -b 0
	iperf "$nsV" 10.9.0.1 "$nsU" 1 "$work/$1-$2-uv.json" -u -l 18 -b 0
	teardown
	python3 - "$work/$1-$2" <<'PY' 2>/dev/null || echo "0 0 0"
import json, sys
b = sys.argv[1]
def pps(f):
    u = json.load(open(f))["end"]["sum"]
    return (u["packets"] - u["lost_packets"]) / u["seconds"]
t = json.load(open(b + "-tcp.json"))["end"]["sum_received"]["bits_per_second"] / 1e9
print("%.2f %.0f %.0f" % (t, pps(b + "-vu.json"), pps(b + "-uv.json")))
PY
}

modes="hyperswitch hyperswitch-underlay kernel kernel-seg"
declare -A res
for r in $(seq 1 "$rounds"); do
	for m in $modes; do
		v=$(run "$m" "$r")
		res[$m]+="$v;"
		echo "round $r $m: TCP V->U Gbit/s, 64-byte V->U pps, 64-byte U->V pps: $v"
	done
done
python3 - "$secs" "$json" "${res[hyperswitch]}" "${res[hyperswitch-underlay]}" \
	"${res[kernel]}" "${res[kernel-seg]}" <<'PY'
import json, statistics, sys
def parse(s):
    rows = [[float(x) for x in r.split()] for r in s.split(";") if r.strip()]
    return [list(c) for c in zip(*rows)]
names = ["tcp_gbps", "udp64_vu_pps", "udp64_uv_pps"]
modes = dict(zip(["hyperswitch", "hyperswitch_underlay", "kernel", "kernel_seg"],
                 [parse(a) for a in sys.argv[3:7]]))
m = statistics.median
out = {"test": "vxlan", "seconds": int(sys.argv[1])}
for mode, cols in modes.items():
    for n, c in zip(names, cols):
        out["%s_%s" % (mode, n)] = c
        out["median_%s_%s" % (mode, n)] = m(c)
for hs in ("hyperswitch", "hyperswitch_underlay"):
    for ref in ("kernel", "kernel_seg"):
        for n in names:
            d = out.get("median_%s_%s" % (ref, n))
            out["ratio_%s_%s_%s" % (hs, ref, n)] = out["median_%s_%s" % (hs, n)] / d if d else None
print(json.dumps(out))
if sys.argv[2]:
    json.dump(out, open(sys.argv[2], "w"), indent=1)
PY
