#!/usr/bin/env bash
# The uplink benchmark: a VM's stand-in (namespace V) reaches the
# "physical network" (namespace P, behind a veth) through the host S,
# where the last hop is
#   packet       the vswitch example: a tap to V and an uplink port on
#                S's end of the veth (AF_PACKET, TPACKET_V3 rings; one
#                worker, pinned to CPU 0)
#   xdp          the same with the uplink in AF_XDP mode (native XDP on
#                the veth, copy mode: veth has no zero-copy), where built
#   bridge       the Linux bridge with a veth to V and S's end of the veth
#                to P (what an uplink replaces: an interface enslaved to
#                a bridge)
# in interleaved rounds: TCP V->P and P->V (iperf3, Gbit/s at the
# receiver), and 64-byte frames P->V (iperf3 UDP, 18-byte payloads, as
# fast as P can send; packets per second V received). The namespaces
# are made here and removed on every exit.
#
#   bench/uplink.sh [--build DIR] [--seconds S] [--rounds R] [--json FILE]
#
# Needs root, iproute2 and iperf3 (scripts/deps.sh test).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$here/build secs=5 rounds=3 json=
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
for c in ip iperf3 python3 taskset; do
	command -v $c >/dev/null || { echo "no $c: scripts/deps.sh test" >&2; exit 1; }
done
[ -x "$vswitch" ] || { echo "no $vswitch: build first" >&2; exit 1; }

id=$$
nsS="hsb-$id-s" nsP="hsb-$id-p" nsV="hsb-$id-v"
work=$(mktemp -d /tmp/hs-bench-uplink.XXXXXX)
vs=
teardown() {
	[ -n "$vs" ] && kill -INT "$vs" 2>/dev/null && wait "$vs" 2>/dev/null
	vs=
	for n in "$nsS" "$nsP" "$nsV"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
}
cleanup() {
	[ -n "$vs" ] && kill -KILL "$vs" 2>/dev/null
	wait 2>/dev/null
	teardown
	rm -rf "$work"
}
trap cleanup EXIT

setup_common() {
	for n in "$nsS" "$nsP" "$nsV"; do
		ip netns add "$n" && ip -n "$n" link set lo up || exit 1
	done
	ip -n "$nsS" link add ul type veth peer name ul netns "$nsP"
	ip -n "$nsS" link set ul up
	ip -n "$nsP" addr add 10.78.0.2/24 dev ul && ip -n "$nsP" link set ul up
}

setup_hyperswitch() { # uplink mode: packet or xdp
	ip netns exec "$nsS" taskset -c 0 "$vswitch" --workers 1 --tap vmv --uplink "ul,$1" \
		>"$work/vswitch.log" 2>&1 &
	vs=$!
	for _ in $(seq 50); do grep -q running "$work/vswitch.log" && break; sleep 0.1; done
	ip -n "$nsS" link set vmv netns "$nsV"
	ip -n "$nsV" addr add 10.78.0.3/24 dev vmv && ip -n "$nsV" link set vmv up
}

setup_packet() { setup_hyperswitch packet; }
setup_xdp() { setup_hyperswitch xdp; }

setup_bridge() {
	ip -n "$nsS" link add br0 type bridge && ip -n "$nsS" link set br0 up
	ip -n "$nsS" link set ul master br0
	ip -n "$nsS" link add vmv type veth peer name vmv netns "$nsV"
	ip -n "$nsS" link set vmv master br0 && ip -n "$nsS" link set vmv up
	ip -n "$nsV" addr add 10.78.0.3/24 dev vmv && ip -n "$nsV" link set vmv up
}

# iperf SERVER_NS SERVER_ADDR CLIENT_NS OUT [client options]: one run
iperf() {
	local sns=$1 addr=$2 cns=$3 out=$4
	shift 4
	ip netns exec "$sns" iperf3 -s -1 -B "$addr" >/dev/null 2>&1 &
	local srv=$!
	for _ in $(seq 100); do
		ip netns exec "$sns" ss -Hltn "sport = :5201" | grep -q . && break
		sleep 0.1
	done
	ip netns exec "$cns" taskset -c 1 iperf3 -c "$addr" -t "$secs" -J "$@" >"$out" 2>/dev/null
	wait "$srv" 2>/dev/null
}

# run MODE ROUND: prints "tcp_vp tcp_pv udp64_pps"
run() {
	setup_common
	"setup_$1"
	if ! ip netns exec "$nsV" ping -c 1 -W 3 10.78.0.2 >/dev/null 2>&1; then
		teardown
		echo "0 0 0"
		return
	fi
	iperf "$nsP" 10.78.0.2 "$nsV" "$work/$1-$2-vp.json"
	iperf "$nsV" 10.78.0.3 "$nsP" "$work/$1-$2-pv.json"
	iperf "$nsV" 10.78.0.3 "$nsP" "$work/$1-$2-udp.json" -u -l 18 -b 0
	teardown
	python3 - "$work/$1-$2" <<'PY' 2>/dev/null || echo "0 0 0"
import json, sys
b = sys.argv[1]
def gbps(f):
    return json.load(open(f))["end"]["sum_received"]["bits_per_second"] / 1e9
u = json.load(open(b + "-udp.json"))["end"]["sum"]
pps = (u["packets"] - u["lost_packets"]) / u["seconds"]
print("%.2f %.2f %.0f" % (gbps(b + "-vp.json"), gbps(b + "-pv.json"), pps))
PY
}

declare -A res
modes="packet xdp bridge"
[ -f "$build/uplink_xdp_plain.bpf.o" ] || modes="packet bridge"
for r in $(seq 1 "$rounds"); do
	for m in $modes; do
		v=$(run "$m" "$r")
		res[$m]+="$v;"
		echo "round $r $m: TCP V->P, P->V Gbit/s, 64-byte P->V pps: $v"
	done
done
python3 - "${res[packet]}" "${res[xdp]:-}" "${res[bridge]}" "$secs" "$json" <<'PY'
import json, statistics, sys
def parse(s):
    rows = [[float(x) for x in r.split()] for r in s.split(";") if r.strip()]
    return [list(c) for c in zip(*rows)]
modes = {"packet": parse(sys.argv[1]), "xdp": parse(sys.argv[2]), "bridge": parse(sys.argv[3])}
m = statistics.median
names = ["tcp_vp_gbps", "tcp_pv_gbps", "udp64_pps"]
out = {"test": "uplink", "seconds": int(sys.argv[4])}
br = modes["bridge"]
for mode in ("packet", "xdp"):
    hs = modes[mode]
    if not hs:
        continue
    for i, n in enumerate(names):
        out[mode + "_" + n] = hs[i]
        out["ratio_" + mode + "_" + n] = m(hs[i]) / m(br[i]) if m(br[i]) else None
for i, n in enumerate(names):
    out["bridge_" + n] = br[i]
print(json.dumps(out))
if sys.argv[5]:
    json.dump(out, open(sys.argv[5], "w"), indent=1)
PY
