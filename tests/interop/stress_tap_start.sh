#!/usr/bin/env bash
# Start-and-ping loop (manual, not in the suite): starts the vswitch example
# with two taps in VLAN 10 (brought up at creation, so their first frames
# race the switch's start), moves each into its own namespace, pings once,
# stops the switch; N times. A start after which the ping fails is kept
# with the switch's counters, its epoll set (/proc fdinfo: an fd whose
# events read 40000000 is disarmed), and both namespaces' view.
#   tests/interop/stress_tap_start.sh [BUILD_DIR] [N]
# Load the machine meanwhile (e.g. an iperf3 pair on loopback) to widen
# races. Found the fd-slot ordering bug fixed in offload.c (at least 4
# stuck starts in about 2900 under load before the fix; 0 in 1500 after).
set -uo pipefail
build=${1:-build} runs=${2:-300}
vswitch=$build/examples/vswitch
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
[ -x "$vswitch" ] || { echo "no $vswitch" >&2; exit 1; }
id=$$
ns=("hss-$id-a" "hss-$id-b")
tap=("hs${id}sa" "hs${id}sb")
ip4=(10.79.0.1 10.79.0.2)
work=$(mktemp -d /tmp/hs-stress.XXXXXX)
vs=
cleanup() {
	[ -n "$vs" ] && kill -KILL "$vs" 2>/dev/null
	wait 2>/dev/null
	for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null; done
}
trap cleanup EXIT
for n in "${ns[@]}"; do ip netns add "$n" || exit 1; done
fails=0
for r in $(seq "$runs"); do
	rm -f "$work/vs.log"
	"$vswitch" --workers 1 --tap "${tap[0]},vlan=10" --tap "${tap[1]},vlan=10" \
		>"$work/vs.log" 2>&1 &
	vs=$!
	until grep -q running "$work/vs.log" 2>/dev/null; do sleep 0.05; done
	for i in 0 1; do
		ip link set "${tap[$i]}" netns "${ns[$i]}" &&
			ip -n "${ns[$i]}" addr add "${ip4[$i]}/24" dev "${tap[$i]}" &&
			ip -n "${ns[$i]}" link set "${tap[$i]}" up || exit 1
	done
	if ! ip netns exec "${ns[0]}" ping -c 3 -i 0.2 -W 2 "${ip4[1]}" >/dev/null 2>&1; then
		fails=$((fails + 1))
		f=$work/fail-$r.txt
		{
			for fd in /proc/$vs/fdinfo/*; do
				grep -q "^tfd" "$fd" && { echo "$fd"; cat "$fd"; }
			done
			for i in 0 1; do
				ip -n "${ns[$i]}" -s addr show "${tap[$i]}"
				ip -n "${ns[$i]}" neigh
			done
		} >"$f" 2>&1
		kill -INT "$vs"
		wait "$vs"
		cat "$work/vs.log" >>"$f"
		echo "start $r: ping failed; kept in $f"
	else
		kill -INT "$vs"
		wait "$vs"
	fi
	vs=
done
if [ "$fails" = 0 ]; then
	echo "$runs starts, 0 failed"
	rm -rf "$work"
	exit 0
fi
echo "$runs starts, $fails failed (details in $work)"
exit 1
