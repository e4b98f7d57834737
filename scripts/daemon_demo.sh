#!/usr/bin/env bash
# hyperswitchd doing real work (part of the main job, scripts/demo.sh):
# a config with two taps, each moved into a network namespace made here,
# the namespaces pinging each other through the switch, then what an
# operator sees: hsctl show, stats, fdb show, and the metrics endpoint.
# Root is needed (namespaces, taps); everything made here is removed on
# exit, also on failure.
#   scripts/daemon_demo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
[ "$(id -u)" = 0 ] || { echo "daemon demo: needs root (namespaces, taps); skipped"; exit 0; }

id=$$
work=$(mktemp -d /tmp/hs-demo.XXXXXX)
ns=("hsdemo-$id-1" "hsdemo-$id-2")
tap=("hsdemo${id}a" "hsdemo${id}b")
daemon=
cleanup() {
	[ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/hyperswitchd.conf" <<EOF
# The sample with every setting is tools/hyperswitchd/hyperswitchd.conf.
switch = { name = "demo"; workers = 0; };
control = { socket = "$work/hyperswitchd.sock"; };
metrics = { listen = "127.0.0.1:$((20000 + id % 20000))"; };
ports = (
  { name = "ns1"; type = "tap"; ifname = "${tap[0]}"; vlan = 10; },
  { name = "ns2"; type = "tap"; ifname = "${tap[1]}"; vlan = 10; },
  { name = "vm1"; type = "vhost-user"; path = "$work/vm1.sock"; vlan = 10; }
);
EOF
hsctl() { "$build/tools/hsctl/hsctl" -s "$work/hyperswitchd.sock" "$@"; }

echo "\$ cat hyperswitchd.conf"
cat "$work/hyperswitchd.conf"
echo "\$ hyperswitchd -c hyperswitchd.conf &"
"$build/tools/hyperswitchd/hyperswitchd" -c "$work/hyperswitchd.conf" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 50); do [ -S "$work/hyperswitchd.sock" ] && break; sleep 0.1; done
sed 's/^/  /' "$work/daemon.log"
for i in 0 1; do
	ip netns add "${ns[$i]}"
	ip link set "${tap[$i]}" netns "${ns[$i]}"
	ip -n "${ns[$i]}" addr add "10.79.0.$((i + 1))/24" dev "${tap[$i]}"
	ip -n "${ns[$i]}" link set "${tap[$i]}" up
done
echo "\$ ip netns exec ${ns[0]} ping -c 3 10.79.0.2"
ip netns exec "${ns[0]}" ping -c 3 -i 0.2 10.79.0.2
echo "\$ hsctl show"
hsctl show
echo "\$ hsctl stats"
hsctl stats
echo "\$ hsctl fdb show"
hsctl fdb show
echo "\$ curl http://127.0.0.1:$((20000 + id % 20000))/metrics | grep port_rx_packets"
python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$((20000 + id % 20000))/metrics').read().decode())" |
	grep '^hyperswitch_port_rx_packets_total'
echo "\$ kill -TERM \$(pidof hyperswitchd)"
kill -TERM "$daemon"
wait "$daemon"
daemon=
tail -n 1 "$work/daemon.log" | sed 's/^/  /'
