#!/usr/bin/env bash
# hyperswitchd and hsctl as an operator uses them: the daemon started from
# a config file with three taps moved into network namespaces made here
# (A and B in VLAN 10, C in VLAN 20) and a vhost-user port with DPDK's
# testpmd (virtio-user) connected. Checked:
#  - ping A<->B through the daemon, C isolated;
#  - every hsctl command (show, stats, stats -i, fdb show/add/del/flush,
#    port add/set/del, vlan, log level, version, reload), with --json read
#    back, and bad arguments (exit 2), daemon-side errors (exit 1), a dead
#    socket (exit 3);
#  - the protocol's hostile cases on the raw socket: malformed JSON, an
#    oversized line, an unknown command or argument, a version the daemon
#    does not speak; the daemon keeps serving;
#  - a mirror of A to tap D read with tcpdump (3 echo requests, no reply:
#    rx only); hsctl capture of A to a pcap file read back with tcpdump,
#    the frames sent from A compared byte for byte;
#  - reload under traffic (a ping every 10 ms A->B): C's VLAN changed in
#    place (the same tap, its counters kept, a capture of C goes on and
#    sees C's new VLAN), a port added, another removed; A and B untouched:
#    no ping lost, their learned MACs and counters kept, testpmd still on
#    its first connection; two ports swapping their sockets in one reload
#    (a capture of one running: the daemon ends it, hsctl exits 0);
#  - port set in place (VLANs, trunks, MTU, learning) and replacing (queues);
#  - a client that never reads its answers costs bounded memory; a client
#    flooding requests gets turns, not the loop; a batch ended by
#    SHUT_WR is answered whole; a shut-down client that never reads is
#    closed; the connection limit answers EBUSY and keeps 8 for the
#    daemon's own user; a port
#    set the system refuses leaves the port as it was;
#  - a file with an error is rejected whole (file:line in the message),
#    at reload and with --check; the running configuration stays;
#  - the metrics endpoint: the Prometheus text parses (python3-prometheus-
#    client's parser when installed), port counters agree with hsctl
#    stats, every drop reason is a series;
#  - a reload with a port the library refuses (failed, not added) and a
#    setting for the next start (named, and logged as a warning);
#  - SIGHUP reloads; a second daemon on the same pid file is refused, one
#    on the same control socket too, before it makes any port; a failed
#    start with --daemon says why on stderr;
#  - SIGTERM stops it cleanly: exit 0, socket, pid file and taps gone.
#   test_daemon.sh BUILD_DIR SOURCE_DIR
# Exits 77 (skipped) when not root or without ip/ping/python3/jq.
set -uo pipefail
build=$1 src=$2
hsd=$build/tools/hyperswitchd/hyperswitchd
hsctl_bin=$build/tools/hsctl/hsctl
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
for c in ip ping python3 jq; do
	command -v $c >/dev/null || { echo "SKIP: no $c"; exit 77; }
done
[ -x "$hsd" ] && [ -x "$hsctl_bin" ] || { echo "SKIP: hyperswitchd/hsctl not built"; exit 77; }
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || { echo "SKIP: no /dev/net/tun"; exit 77; }
fi

id=$$
ns=("hsd-$id-a" "hsd-$id-b" "hsd-$id-c")
tap=("hsd${id}a" "hsd${id}b" "hsd${id}c")
ip4=(10.78.0.1 10.78.0.2 10.78.0.3)
work=$(mktemp -d /tmp/hs-daemon.XXXXXX)
sock=$work/ctl.sock
mport=$((20000 + id % 20000))
conf=$work/hs.conf
pids=()
daemon=
cleanup() {
	for p in "${pids[@]}" $daemon; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "${ns[@]}"; do
		ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
	for t in "${tap[@]}" "hsd${id}d" "hsd${id}x" "hsd${id}u"; do ip link del "$t" 2>/dev/null; done
	rm -rf "$work" /dev/hugepages/"hsd-tp-$id"* /var/run/dpdk/"hsd-tp-$id" 2>/dev/null
}
trap cleanup EXIT
say() { echo "[${SECONDS}s] $*"; }
. "$src/tests/interop/guests.sh" # fail, wait_for
hsctl() { "$hsctl_bin" -s "$sock" "$@"; }
# json [jq options] FILTER: jq's raw output of FILTER on stdin (jq starts in
# a few ms; python3 took ~0.35 s a call here, a third of this test's time)
json() { jq -r "$@"; }
# port_field NAME FILTER: FILTER on port NAME's object in stdin's "ports"
port_field() { jq -r --arg n "$1" ".ports[] | select(.name == \$n) | $2"; }
# expect_rc RC COMMAND...: runs hsctl, checks its exit code
expect_rc() {
	local want=$1 rc
	shift
	hsctl "$@" >"$work/out.txt" 2>"$work/err.txt"
	rc=$?
	[ $rc = "$want" ] ||
		fail "hsctl $* exited $rc, expected $want: $(cat "$work/out.txt" "$work/err.txt")"
}

# ---- the config: taps A, B (VLAN 10), C (VLAN 20), vhost-user vm1 (VLAN 10),
# and a tap D that the reload removes ----
write_conf() { # C_VLAN WITH_D WITH_E [S1_SOCK S2_SOCK]
	{
		cat <<-EOF
		switch = { name = "hsd"; workers = ${HS_TEST_WORKERS:-0}; fdb = { aging_s = 600; }; };
		control = { socket = "$sock"; };
		metrics = { listen = "127.0.0.1:$mport"; };
		log = { level = "info"; };
		ports = (
		  { name = "a"; type = "tap"; ifname = "${tap[0]}"; vlan = 10; },
		  { name = "b"; type = "tap"; ifname = "${tap[1]}"; vlan = 10; uring = false; },
		  { name = "c"; type = "tap"; ifname = "${tap[2]}"; vlan = $1; },
		  { name = "vm1"; type = "vhost-user"; path = "$work/vm1.sock"; vlan = 10; },
		  { name = "s1"; type = "vhost-user"; path = "$work/${4:-p}.sock"; },
		  { name = "s2"; type = "vhost-user"; path = "$work/${5:-q}.sock"; }
		EOF
		[ "$2" = 1 ] && echo "  , { name = \"d\"; type = \"tap\"; ifname = \"hsd${id}d\"; vlan = 30; }"
		[ "$3" = 1 ] && echo "  , { name = \"e\"; type = \"vhost-user\"; path = \"$work/e.sock\"; vlan_mode = \"trunk\"; trunks = (10, \"100-102\"); }"
		echo ");"
	} >"$conf"
}
write_conf 20 1 0

say "config check"
"$hsd" -c "$conf" --check >"$work/check.log" 2>&1 || fail "--check refused a valid file"
grep -q "valid" "$work/check.log" || fail "--check did not say valid"
printf 'ports = ( { name = "x"; type = "tap"; vlan = 5000; } );\n' >"$work/bad.conf"
"$hsd" -c "$work/bad.conf" --check >"$work/check2.log" 2>&1 && fail "--check passed a bad VLAN"
grep -q "bad.conf:1: port x: vlan: 5000 is out of range" "$work/check2.log" ||
	fail "--check's message lacks file, line and setting: $(cat "$work/check2.log")"
# libconfig's own @include would read any file, and its scanner exits the
# process on a directory: refused with a reason, at --check as at reload
printf 'log = { level = "info"; };\n  @include "."\n' >"$work/inc.conf"
"$hsd" -c "$work/inc.conf" --check >"$work/check3.log" 2>&1
[ $? = 1 ] || fail "--check of an @include did not exit 1: $(cat "$work/check3.log")"
grep -q "inc.conf:2: @ directives (@include) are not supported" "$work/check3.log" ||
	fail "@include not refused by name: $(cat "$work/check3.log")"
# --daemon: a start that fails says why on the terminal it was started
# from (it logs to syslog, which this machine may not have)
printf 'control = { socket = "%s/d.sock"; };\nports = ( { name = "v"; type = "vhost-user"; path = "%s/nodir/v.sock"; } );\n' \
	"$work" "$work" >"$work/d.conf"
"$hsd" -c "$work/d.conf" --daemon >"$work/d.log" 2>&1
[ $? = 1 ] || fail "--daemon with a port that cannot start did not exit 1"
grep -q "error.*cannot listen on $work/nodir/v.sock" "$work/d.log" ||
	fail "--daemon's failed start did not say why: $(cat "$work/d.log")"
# xen ports parse and are checked (no Xen runs here: adding one fails,
# saying why)
printf 'ports = ( { name = "vm7"; type = "xen"; domid = 7; queues = 2; vlan = 10; },\n  { name = "vm8"; type = "xen"; domid = 7; } );\n' >"$work/xen.conf"
"$hsd" -c "$work/xen.conf" --check >"$work/check6.log" 2>&1 && fail "--check passed two xen ports on one vif"
grep -q "vif (domid, devid) is the same as port vm7" "$work/check6.log" ||
	fail "the vif clash was not named: $(cat "$work/check6.log")"
printf 'ports = ( { name = "vm7"; type = "xen"; domid = 7; queues = 2; vlan = 10; vcpu_state = false; } );\n' >"$work/xen.conf"
"$hsd" -c "$work/xen.conf" --check >"$work/check6.log" 2>&1 || fail "--check refused a xen port: $(cat "$work/check6.log")"
grep -q '"type":"xen".*"domid":7' "$work/check6.log" || fail "--check did not show the xen port"
grep -q '"vcpu_state":false' "$work/check6.log" || fail "--check did not show vcpu_state"
printf 'ports = ( { name = "vm9"; type = "vhost-user"; path = "%s/vm9.sock"; vcpu_state = false; } );\n' "$work" >"$work/vu.conf"
"$hsd" -c "$work/vu.conf" --check >"$work/check6.log" 2>&1 || fail "--check refused vcpu_state on vhost-user: $(cat "$work/check6.log")"
grep -q '"type":"vhost-user".*"vcpu_state":false' "$work/check6.log" || fail "--check did not show a vhost-user port's vcpu_state"
grep -q '"type":"vhost-user".*"vcpu_idle_ms":100' "$work/check6.log" || fail "--check did not show the default vcpu_idle_ms"
printf 'ports = ( { name = "vm9"; type = "vhost-user"; path = "%s/vm9.sock"; vcpu_idle_ms = 0; } );\n' "$work" >"$work/vu.conf"
"$hsd" -c "$work/vu.conf" --check >"$work/check6.log" 2>&1 || fail "--check refused vcpu_idle_ms = 0: $(cat "$work/check6.log")"
grep -q '"vcpu_idle_ms":0' "$work/check6.log" || fail "--check did not show vcpu_idle_ms = 0"
printf 'ports = ( { name = "vm9"; type = "vhost-user"; path = "%s/vm9.sock"; vcpu_idle_ms = 90000000; } );\n' "$work" >"$work/vu.conf"
"$hsd" -c "$work/vu.conf" --check >"$work/check6.log" 2>&1 && fail "--check took vcpu_idle_ms = 90000000"
grep -q 'vcpu_idle_ms' "$work/check6.log" || fail "the refusal did not name vcpu_idle_ms: $(cat "$work/check6.log")"
printf 'ports = ( { name = "vx"; type = "vxlan"; local = "192.0.2.1"; vni = 42; remotes = ["192.0.2.2"]; } );\n' >"$work/vx.conf"
"$hsd" -c "$work/vx.conf" --check >"$work/check7.log" 2>&1 || fail "--check refused a vxlan port: $(cat "$work/check7.log")"
grep -q '"type":"vxlan".*"vni":42,"remotes":\["192.0.2.2"\]' "$work/check7.log" ||
	fail "--check did not show the vxlan port: $(cat "$work/check7.log")"
printf 'ports = ( { name = "x\xc3"; type = "tap"; } );\n' >"$work/utf.conf"
"$hsd" -c "$work/utf.conf" --check >"$work/check4.log" 2>&1 && fail "--check passed a name that is not UTF-8"
grep -q "not valid UTF-8" "$work/check4.log" || fail "bad UTF-8 not named: $(cat "$work/check4.log")"
"$hsd" -c "$work" --check >"$work/check5.log" 2>&1 && fail "--check passed a directory"
# socket_mode as chmod takes it, with or without the leading 0; not as
# anything else
for m in 660 0660; do
	printf 'ports = ( { name = "vm9"; type = "vhost-user"; path = "%s/vm9.sock"; socket_mode = "%s"; } );\n' "$work" "$m" >"$work/vu.conf"
	"$hsd" -c "$work/vu.conf" --check >"$work/check6.log" 2>&1 || fail "--check refused socket_mode \"$m\": $(cat "$work/check6.log")"
	grep -q '"socket_mode":"0660"' "$work/check6.log" || fail "socket_mode \"$m\" is not 0660: $(cat "$work/check6.log")"
done
for m in 689 1777 " 660" -660 rw 66 7 0 00660 7777 "660 "; do
	printf 'ports = ( { name = "vm9"; type = "vhost-user"; path = "%s/vm9.sock"; socket_mode = "%s"; } );\n' "$work" "$m" >"$work/vu.conf"
	"$hsd" -c "$work/vu.conf" --check >"$work/check6.log" 2>&1 && fail "--check took socket_mode \"$m\""
	grep -q 'not a mode of 3 octal digits' "$work/check6.log" || fail "socket_mode \"$m\": $(cat "$work/check6.log")"
done
# two ports of one name: said so, at the second's line
printf 'ports = (\n  { name = "a"; type = "tap"; },\n  { name = "a"; type = "tap"; ifname = "x"; } );\n' >"$work/dup.conf"
"$hsd" -c "$work/dup.conf" --check >"$work/check9.log" 2>&1 && fail "--check passed two ports named a"
grep -q "dup.conf:3: port a: another port has this name" "$work/check9.log" ||
	fail "the duplicate name was not said: $(cat "$work/check9.log")"
# the metrics address in the forms an operator types
for l in localhost:9477 :9477 "[::1]:9477" 127.0.0.1:9477; do
	printf 'metrics = { listen = "%s"; };\nports = ( { name = "t"; type = "tap"; } );\n' "$l" >"$work/m.conf"
	"$hsd" -c "$work/m.conf" --check >"$work/check8.log" 2>&1 || fail "--check refused listen \"$l\": $(cat "$work/check8.log")"
done
for l in example.com:9477 localhost: 9477 "localhost:0" "[::1]9477" ": 9477" ":+9477" "localhost: 9477" :123456; do
	printf 'metrics = { listen = "%s"; };\nports = ( { name = "t"; type = "tap"; } );\n' "$l" >"$work/m.conf"
	"$hsd" -c "$work/m.conf" --check >"$work/check8.log" 2>&1 && fail "--check took listen \"$l\""
	grep -q "is not ADDR:PORT" "$work/check8.log" || fail "listen \"$l\": $(cat "$work/check8.log")"
done
# the version without a running daemon; a stray argument is named
"$hsd" --version >"$work/ver.log" 2>&1 || fail "--version failed: $(cat "$work/ver.log")"
grep -Eq '^hyperswitchd [0-9]+\.[0-9]+\.[0-9]+ \(library [0-9]+\.[0-9]+\.[0-9]+\)$' "$work/ver.log" ||
	fail "--version printed: $(cat "$work/ver.log")"
"$hsd" -V | cmp -s - "$work/ver.log" || fail "-V is not --version"
"$hsd" bogus >"$work/bogus.log" 2>&1
[ $? = 2 ] || fail "a stray argument did not exit 2"
grep -q 'unexpected argument "bogus"' "$work/bogus.log" || fail "the stray argument was not named: $(cat "$work/bogus.log")"

say "start"
# systemd's side of Type=notify: a datagram socket in NOTIFY_SOCKET that
# records what the daemon says (when it was built with libsystemd)
notify=
# (grep without -q: it reads to the end, so the writer never dies of SIGPIPE,
# which pipefail would report as a failure even when a line matched)
if ldd "$hsd" | grep libsystemd >/dev/null; then
	python3 - "$work/notify.sock" "$work/notify.log" <<'EOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    print("listening", file=out)
    while True:
        msg = s.recv(4096).decode()
        print(" ".join(msg.split("\n")), file=out)
EOF
	notify=$!
	pids+=("$notify")
	wait_for "$work/notify.log" "listening" 10 || fail "the notify listener did not start"
fi
NOTIFY_SOCKET=${notify:+$work/notify.sock} "$hsd" -c "$conf" -p "$work/hsd.pid" >"$work/daemon.log" 2>&1 &
daemon=$!
wait_for "$work/daemon.log" "running" 20 || fail "the daemon did not start"
[ "$(cat "$work/hsd.pid")" = "$daemon" ] || fail "pid file does not hold the daemon's pid"
[ "$(stat -c %a "$sock")" = 600 ] || fail "control socket mode $(stat -c %a "$sock"), expected 600"
"$hsd" -c "$conf" -p "$work/hsd.pid" -s "$work/other.sock" >"$work/second.log" 2>&1 &&
	fail "a second daemon on the same pid file started"
grep -q "runs already" "$work/second.log" || fail "the second daemon did not say why it stopped"
# one on the same control socket (no pid file) stops before any port
"$hsd" -c "$conf" >"$work/second2.log" 2>&1 && fail "a second daemon on the same socket started"
grep -q "another hyperswitchd answers on it" "$work/second2.log" ||
	fail "the second daemon did not name the running one: $(cat "$work/second2.log")"
! grep -q "added" "$work/second2.log" ||
	fail "the second daemon made ports first: $(cat "$work/second2.log")"

for i in 0 1 2; do
	ip netns add "${ns[$i]}" || fail "cannot create namespace ${ns[$i]}"
	ip netns exec "${ns[$i]}" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip link set "${tap[$i]}" netns "${ns[$i]}" || fail "cannot move ${tap[$i]}"
	ip -n "${ns[$i]}" addr add "${ip4[$i]}/24" dev "${tap[$i]}"
	ip -n "${ns[$i]}" link set "${tap[$i]}" up
	ip -n "${ns[$i]}" link set lo up
done

# testpmd on vm1, receiving (optional: skipped without DPDK or hugepages)
tp=
td=
if command -v dpdk-testpmd >/dev/null; then
	if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt 300 ]; then
		echo 1024 >/proc/sys/vm/nr_hugepages
		mkdir -p /dev/hugepages
		mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
	fi
	if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -ge 300 ]; then
		mkfifo "$work/tp.in"
		dpdk-testpmd -l 0,1 --main-lcore 0 --file-prefix "hsd-tp-$id" --no-pci -m 256 \
			--single-file-segments --iova-mode=va \
			--vdev "net_virtio_user0,path=$work/vm1.sock,queues=1,mac=02:00:00:00:00:42" \
			-- -i --forward-mode=rxonly --nb-cores=1 <"$work/tp.in" >"$work/testpmd.log" 2>&1 &
		tp=$!
		pids+=("$tp")
		exec 7>"$work/tp.in"
		echo start >&7
		wait_for "$work/testpmd.log" "Checking link" 60 || fail "testpmd did not start"
	fi
fi
[ -n "$tp" ] || say "no testpmd (dpdk-testpmd or hugepages missing): vm1 stays without a peer"

say "traffic"
ip netns exec "${ns[0]}" ping -c 3 -i 0.2 -W 2 "${ip4[1]}" >"$work/ping-ab.log" 2>&1 ||
	fail "A cannot ping B through the daemon"
ip netns exec "${ns[0]}" ping -c 2 -i 0.2 -W 1 "${ip4[2]}" >/dev/null 2>&1 &&
	fail "A reached C across VLANs"

say "hsctl show / stats / fdb / vlan / version"
expect_rc 0 show
grep -q "vm1" "$work/out.txt" && grep -q "${tap[0]}" "$work/out.txt" || fail "show lacks ports: $(cat "$work/out.txt")"
hsctl --json show >"$work/show.json" || fail "show --json failed"
[ "$(json '.ports | length' <"$work/show.json")" = 7 ] || fail "show has not 7 ports"
[ "$(port_field a .link <"$work/show.json")" = up ] ||
	fail "port a's link is not up"
# the link follows the tap in its namespace: down there, down here
link_of() { hsctl --json show | port_field "$1" .link; }
ip -n "${ns[2]}" link set "${tap[2]}" down
for _ in $(seq 50); do [ "$(link_of c)" = down ] && break; sleep 0.1; done
[ "$(link_of c)" = down ] || fail "c's link is $(link_of c) with its tap down in ${ns[2]}"
ip -n "${ns[2]}" link set "${tap[2]}" up
for _ in $(seq 50); do [ "$(link_of c)" = up ] && break; sleep 0.1; done
[ "$(link_of c)" = up ] || fail "c's link is $(link_of c) with its tap up again"
# a tap's MTU changes in place, on the device where it is now
expect_rc 0 --json port set c mtu=1400
[ "$(json .in_place <"$work/out.txt")" = true ] || fail "c's MTU was not changed in place: $(cat "$work/out.txt")"
ip -n "${ns[2]}" -o link show "${tap[2]}" | grep -q " mtu 1400 " ||
	fail "c's device in ${ns[2]}: $(ip -n "${ns[2]}" -o link show "${tap[2]}" 2>&1)"
expect_rc 0 port set c mtu=1500
ip -n "${ns[2]}" -o link show "${tap[2]}" | grep -q " mtu 1500 " || fail "c's MTU did not come back"
if [ -n "$tp" ]; then
	[ "$(port_field vm1 .peer.connected <"$work/show.json")" = true ] ||
		fail "show does not see testpmd on vm1"
	[ "$(port_field vm1 .link_changes <"$work/show.json")" -ge 1 ] ||
		fail "the daemon heard no link event for vm1 when testpmd came"
fi
expect_rc 0 stats
hsctl --json stats >"$work/stats1.json" || fail "stats --json failed"
a_rx1=$(port_field a .rx_packets <"$work/stats1.json")
[ "$a_rx1" -ge 3 ] || fail "port a received $a_rx1 frames, expected at least 3"
json '.ports[0].drops.rx_no_buffer' <"$work/stats1.json" | grep -E '^[0-9]+$' >/dev/null ||
	fail "stats has no per-reason drops"
# b has uring = false: a system call per frame; a batches through io_uring
# where the daemon's log says the kernel allows it
uring_of() { port_field "$1" '.backend.rx_uring_calls + .backend.tx_uring_calls' <"$work/stats1.json"; }
grep -q "tap ${tap[1]}, 1 queue(s), offloads on, a system call per frame" "$work/daemon.log" ||
	fail "the log does not say that b makes a system call per frame"
[ "$(uring_of b)" = 0 ] || fail "b (uring = false) used io_uring: $(uring_of b) batches"
if grep -q "tap ${tap[0]}, 1 queue(s), offloads on, io_uring batches" "$work/daemon.log"; then
	[ "$(uring_of a)" -gt 0 ] || fail "a says io_uring batches but counted none"
else
	echo "no io_uring here: $(grep "tap ${tap[0]}" "$work/daemon.log" | head -2)"
fi
expect_rc 0 stats a -i 1
hsctl --json fdb show >"$work/fdb1.json" || fail "fdb show --json failed"
mac_a=$(ip -n "${ns[0]}" -j link show "${tap[0]}" | json '.[0].address')
mac_b=$(ip -n "${ns[1]}" -j link show "${tap[1]}" | json '.[0].address')
[ "$(jq -r --arg m "$mac_a" '.entries[] | select(.mac == $m) | .port' <"$work/fdb1.json")" = a ] ||
	fail "fdb show does not have A's MAC on a"
expect_rc 0 fdb add 02:00:00:00:10:01 b --vlan 10
expect_rc 0 fdb show --port b
grep -q "02:00:00:00:10:01" "$work/out.txt" || fail "the static entry is not shown"
expect_rc 0 fdb del 02:00:00:00:10:01 --vlan 10
expect_rc 1 fdb del 02:00:00:00:10:01 --vlan 10
grep -q "no entry for 02:00:00:00:10:01 in VLAN 10" "$work/err.txt" ||
	fail "fdb del's error does not name the entry: $(cat "$work/err.txt")"
expect_rc 1 fdb add 01:00:5e:00:00:01 b
# an entry no frame could match is refused; without --vlan, the port's own
expect_rc 1 fdb add 02:00:00:00:10:02 b --vlan 20
grep -q "port b does not carry VLAN 20 (access VLAN 10)" "$work/err.txt" ||
	fail "fdb add into a VLAN b does not carry: $(cat "$work/err.txt")"
expect_rc 0 fdb add 02:00:00:00:10:02 b
hsctl --json fdb show --port b | json -e '.entries[] | select(.mac == "02:00:00:00:10:02" and .vlan == 10 and .static)' >/dev/null ||
	fail "fdb add without --vlan did not go into b's VLAN: $(hsctl fdb show)"
# a static entry moves only with --replace (bridge fdb add / replace)
expect_rc 1 fdb add 02:00:00:00:10:02 a
grep -q "02:00:00:00:10:02 in VLAN 10 is static on port b already" "$work/err.txt" ||
	fail "fdb add moved a static entry, or said nothing: $(cat "$work/err.txt")"
expect_rc 0 fdb add 02:00:00:00:10:02 b
expect_rc 0 fdb add 02:00:00:00:10:02 a --replace
hsctl --json fdb show --port a | json -e '.entries[] | select(.mac == "02:00:00:00:10:02" and .static)' >/dev/null ||
	fail "fdb add --replace did not move the entry: $(hsctl fdb show)"
expect_rc 0 fdb del 02:00:00:00:10:02
hsctl --json fdb show | json -e '.entries[] | select(.mac == "02:00:00:00:10:02")' >/dev/null &&
	fail "fdb del without --vlan did not find the entry in VLAN 10"
expect_rc 0 vlan
grep -q "20" "$work/out.txt" || fail "vlan does not list VLAN 20"
expect_rc 0 version
expect_rc 0 log level debug
[ "$(hsctl --json log level | json .level)" = debug ] || fail "log level not debug"
expect_rc 0 log level info

say "metrics"
# a second daemon whose metrics port the first holds: refused, the
# message naming the port (libmicrohttpd's said "port 0")
printf 'control = { socket = "%s/m2.sock"; };\nmetrics = { listen = "localhost:%s"; };\nports = ( );\n' "$work" "$mport" >"$work/m2.conf"
timeout 20 "$hsd" -c "$work/m2.conf" >"$work/m2.log" 2>&1 && fail "a second daemon on a taken metrics port started"
grep -q "port $mport: Address already in use" "$work/m2.log" ||
	fail "the taken port was not named: $(cat "$work/m2.log")"
grep -q "cannot listen on localhost:$mport" "$work/m2.log" ||
	fail "the taken address was not named: $(cat "$work/m2.log")"
/usr/bin/python3 - "$mport" "$work/stats1.json" <<'EOF' || fail "the metrics endpoint is wrong"
import json, sys, urllib.request, urllib.error
port, stats = sys.argv[1], json.load(open(sys.argv[2]))
url = "http://127.0.0.1:%s" % port
r = urllib.request.urlopen(url + "/metrics", timeout=10)
assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
text = r.read().decode()
try:
    urllib.request.urlopen(url + "/other", timeout=10)
    raise SystemExit("a path other than /metrics answered")
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
samples = {}
try:
    from prometheus_client.parser import text_string_to_metric_families
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    how = "prometheus_client's parser"
except ImportError:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        labels = ()
        if "{" in name:
            name, rest = name.split("{", 1)
            pairs = [kv.split("=", 1) for kv in rest.rstrip("}").split(",")]
            labels = tuple(sorted((k, v.strip('"')) for k, v in pairs))
        samples[(name, labels)] = float(value)
    how = "a plain line reader"
a_rx = samples[("hyperswitch_port_rx_packets_total", (("port", "a"),))]
a_stats = [p for p in stats["ports"] if p["name"] == "a"][0]["rx_packets"]
assert a_rx >= a_stats, (a_rx, a_stats)
reasons = {dict(l)["reason"] for (n, l) in samples
           if n == "hyperswitch_port_drops_total" and dict(l)["port"] == "a"}
assert reasons == set(stats["ports"][0]["drops"]), reasons
assert samples[("hyperswitch_ports", ())] == 7
nw = int(samples[("hyperswitch_workers", ())])
for k in ("rounds", "handoffs", "sleeps", "handbacks", "quiet_releases"):
    assert k in ("rounds", "sleeps") or k in stats["switch"], k
    for w in range(nw):
        assert ("hyperswitch_worker_%s_total" % k, (("worker", str(w)),)) in samples, (k, w)
print("metrics: %d series, read with %s; port a rx %d (hsctl said %d before)"
      % (len(samples), how, a_rx, a_stats))
EOF

say "hsctl errors"
expect_rc 2 bogus
expect_rc 2 port add t9 tap vlan=abc
expect_rc 2 fdb add
expect_rc 1 port del nosuch
expect_rc 1 port add t9 tap vlan=5000
grep -q "out of range" "$work/err.txt" || fail "port add's error lacks the reason: $(cat "$work/err.txt")"
expect_rc 1 port add a tap
# a port the library refuses: the answer carries the library's reason
expect_rc 1 port add t8 vhost-user path="$work/nodir/t8.sock"
grep -q "cannot listen on $work/nodir/t8.sock" "$work/err.txt" ||
	fail "port add's error lacks the library's reason: $(cat "$work/err.txt")"
"$hsctl_bin" -s "$work/nobody.sock" show >/dev/null 2>&1
[ $? = 3 ] || fail "hsctl on a dead socket did not exit 3"

say "port add / set / del at run time"
expect_rc 0 port add t9 vhost-user path="$work/t9.sock" vlan=10
[ -S "$work/t9.sock" ] || fail "port add did not create t9's socket"
expect_rc 0 port set t9 vlan=11
[ "$(hsctl --json show t9 | json '.ports[0].vlan')" = 11 ] || fail "port set did not change the VLAN"
grep -q "changed in place" "$work/out.txt" || fail "a VLAN change was not made in place: $(cat "$work/out.txt")"
expect_rc 0 --json port set t9 vlan_mode=trunk trunks=11,20-22 mtu=9000 learn=false
[ "$(json .in_place <"$work/out.txt")" = true ] || fail "port set was not in place: $(cat "$work/out.txt")"
hsctl --json show t9 >"$work/t9.json"
[ "$(json -c '.ports[0].trunks' <"$work/t9.json")" = '[11,"20-22"]' ] ||
	fail "port set did not change the trunks: $(cat "$work/t9.json")"
expect_rc 0 fdb add 02:00:00:00:19:01 t9 --vlan 20
expect_rc 0 fdb add 02:00:00:00:19:02 t9 --vlan 22
expect_rc 0 --json port set t9 queues=2 trunks=11,20-21
[ "$(json .in_place <"$work/out.txt")" = false ] || fail "a queue change was made in place"
# the port made again keeps the static entry it was given, in a VLAN it
# still carries; not the one in VLAN 22, which it left (logged)
hsctl --json fdb show --port t9 | json -e '.entries[] | select(.mac == "02:00:00:00:19:01" and .vlan == 20 and .static)' >/dev/null ||
	fail "t9's static entry did not outlive t9's being made again: $(hsctl fdb show)"
hsctl --json fdb show | json -e '.entries[] | select(.mac == "02:00:00:00:19:02")' >/dev/null &&
	fail "t9's static entry in VLAN 22, which it left, came back"
grep -q "port t9: static entry 02:00:00:00:19:02 VLAN 22 not kept: the port no longer carries VLAN 22" "$work/daemon.log" ||
	fail "the daemon did not say why t9's entry in VLAN 22 went"
grep -q "port t9 changed in place" "$work/daemon.log" || fail "the daemon did not log the in-place change"
# a boolean key: hsctl must send false, not "false" (which is refused)
expect_rc 0 port set t9 in_order=false
expect_rc 0 port del t9
[ -e "$work/t9.sock" ] && fail "t9's socket stayed after port del"
expect_rc 1 port add x9 xen domid=5
grep -q "needs the switch to run in a Xen domain" "$work/err.txt" ||
	fail "a xen port on a machine without Xen: no reason given: $(cat "$work/err.txt")"
grep -q "x9: no Xen here" "$work/daemon.log" || fail "the daemon's log does not say what Xen lacked"
# a vxlan port: its flood list from hsctl, shown as given, then removed
expect_rc 0 port add v9 vxlan local=127.0.0.1 vni=4242 dst_port=47891 remotes=127.0.0.2,127.0.0.3 vlan=10
hsctl --json show v9 >"$work/v9.json"
[ "$(json -c '.ports[0].config.remotes' <"$work/v9.json")" = '["127.0.0.2","127.0.0.3"]' ] ||
	fail "the vxlan port's flood list: $(cat "$work/v9.json")"
[ "$(json '.ports[0].peer.vni' <"$work/v9.json")" = 4242 ] ||
	fail "the vxlan port's peer: $(cat "$work/v9.json")"
hsctl show >"$work/show-v9.txt" 2>&1
grep -q "VTEP 127.0.0.1 VNI 4242" "$work/show-v9.txt" || fail "show's table: $(cat "$work/show-v9.txt")"
expect_rc 1 port add v8 vxlan local=127.0.0.1 vni=4242 dst_port=47891
grep -q "VNI on its VTEP (local, dst_port, vni) is the same as port v9" "$work/err.txt" ||
	fail "two vxlan ports of one VNI on one VTEP: $(cat "$work/err.txt")"
# another VNI on the same VTEP is fine
expect_rc 0 port add v8 vxlan local=127.0.0.1 vni=7 dst_port=47891
expect_rc 0 port del v8
expect_rc 1 port add v8 vxlan local=127.0.0.1 vni=7 remotes=::1
grep -q "not a unicast IPv4 address" "$work/err.txt" || fail "a mixed flood list: $(cat "$work/err.txt")"
expect_rc 0 port del v9
# a vxlan port following a Linux vxlan device's FDB (kept down: it holds
# no socket); a device that is not there is refused with the reason
vx=hsd${id}x
ip link add "$vx" type vxlan id 4243 dstport 47892 local 127.0.0.1 nolearning ||
	fail "cannot create a vxlan device"
bridge fdb append 00:00:00:00:00:00 dev "$vx" dst 127.0.0.5 &&
	bridge fdb add 02:00:00:00:00:31 dev "$vx" dst 127.0.0.6 extern_learn ||
	fail "cannot program $vx's FDB"
expect_rc 1 port add v7 vxlan local=127.0.0.1 vni=4243 dst_port=47892 follow=hsdnosuch
grep -q "following the FDB of hsdnosuch" "$work/err.txt" ||
	fail "following a missing device: $(cat "$work/err.txt")"
expect_rc 0 port add v7 vxlan local=127.0.0.1 vni=4243 dst_port=47892 follow="$vx"
bridge fdb add 02:00:00:00:00:32 dev "$vx" dst 127.0.0.7
end=$((SECONDS + 5))
until hsctl --json stats v7 >"$work/v7.json" &&
	[ "$(json '.ports[0].backend.follow_added' <"$work/v7.json")" = 3 ]; do
	[ $SECONDS -lt $end ] || fail "v7 did not take $vx's entries: $(cat "$work/v7.json")"
	sleep 0.2
done
[ "$(json '.ports[0].backend.flood_vteps' <"$work/v7.json")" = 1 ] ||
	fail "v7's flood list: $(cat "$work/v7.json")"
hsctl show v7 >"$work/show-v7.txt" 2>&1
grep -q "follows $vx" "$work/show-v7.txt" || fail "show does not say what v7 follows: $(cat "$work/show-v7.txt")"
expect_rc 0 port del v7
# follow's options: export without follow refused; a device on another
# UDP port taken whole with follow_any_port; the local MACs' bridge port
expect_rc 1 port add v8 vxlan local=127.0.0.1 vni=4243 export=hsdnosuch
grep -q "export.*goes with follow" "$work/err.txt" ||
	fail "export without follow: $(cat "$work/err.txt")"
br=hsd${id}b ex=hsd${id}e
ip link add "$br" type bridge && ip link set "$vx" master "$br" &&
	ip link add "$ex" type veth peer name "${ex}p" && ip link set "$ex" master "$br" &&
	ip link set "$ex" up && ip link set "${ex}p" up || fail "cannot make a bridge for export"
expect_rc 0 port add v8 vxlan local=127.0.0.1 vni=4243 dst_port=47893 follow="$vx" \
	follow_any_port=true export="$ex"
hsctl --json stats v8 >"$work/v8.json" || fail "no stats for v8"
[ "$(json '.ports[0].backend.follow_added' <"$work/v8.json")" = 3 ] &&
	[ "$(json '.ports[0].backend.follow_skipped' <"$work/v8.json")" = 0 ] &&
	[ "$(json '.ports[0].backend.export_errors' <"$work/v8.json")" = 0 ] ||
	fail "v8 (follow_any_port, export): $(cat "$work/v8.json")"
expect_rc 0 port del v8
# an underlay interface: a missing one refused, one there taken (its
# counters among the port's)
expect_rc 1 port add v9 vxlan local=127.0.0.1 vni=4244 underlay=hsdnosuch
grep -q "v9: No such device" "$work/err.txt" || fail "a missing underlay: $(cat "$work/err.txt")"
expect_rc 0 port add v9 vxlan local=127.0.0.1 vni=4244 underlay="$ex"
hsctl show v9 >"$work/show-v9.txt" 2>&1
grep -q "through $ex" "$work/show-v9.txt" || fail "show does not say v9's underlay: $(cat "$work/show-v9.txt")"
hsctl --json stats v9 >"$work/v9.json" || fail "no stats for v9"
[ "$(json '.ports[0].backend.underlay_sent' <"$work/v9.json")" = 0 ] ||
	fail "v9's underlay counters: $(cat "$work/v9.json")"
expect_rc 0 port del v9
ip link del "$ex"
ip link del "$br"
ip link del "$vx"
# an uplink on one end of a veth pair: its mode shown, frames from the
# other end counted; a missing interface refused with the reason
ul=hsd${id}u
ip link add "$ul" type veth peer name "${ul}p" && ip link set "$ul" up &&
	ip link set "${ul}p" up || fail "cannot make a veth pair"
expect_rc 1 port add u9 uplink ifname=hsdnosuch
grep -q "u9: No such device" "$work/err.txt" || fail "an uplink on a missing interface: $(cat "$work/err.txt")"
expect_rc 1 port add u9 uplink ifname="$ul" rx_block_kib=300
grep -q "rx_block_kib.*not a power of two" "$work/err.txt" ||
	fail "a bad block size was not refused: $(cat "$work/err.txt")"
expect_rc 0 port add u9 uplink ifname="$ul" vlan=10 queues=2
hsctl show u9 >"$work/show-u9.txt" 2>&1
grep -q "$ul, packet, offload" "$work/show-u9.txt" || fail "show's uplink: $(cat "$work/show-u9.txt")"
python3 -c "
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('${ul}p', 0))
for i in range(5):
    s.send(b'\xff' * 6 + bytes([2, 0, 0, 0, 0, 0x77]) + b'\x88\xb5' + bytes(50))
" || fail "cannot send on ${ul}p"
end=$((SECONDS + 5))
until hsctl --json stats u9 >"$work/u9.json" &&
	[ "$(json '.ports[0].rx_packets' <"$work/u9.json")" -ge 5 ]; do
	[ $SECONDS -lt $end ] || fail "u9 did not receive from ${ul}p: $(cat "$work/u9.json")"
	sleep 0.2
done
[ "$(json '.ports[0].backend.rx_kernel_drops' <"$work/u9.json")" = 0 ] ||
	fail "u9's backend counters: $(cat "$work/u9.json")"
expect_rc 0 port del u9
# AF_XDP mode on request (native XDP on a veth, where built)
expect_rc 1 port add u8 uplink ifname="$ul" mode=fast
grep -q "mode.*not auto, packet, xdp, xdp-zerocopy or xdp-generic" "$work/err.txt" ||
	fail "a bad uplink mode was not refused: $(cat "$work/err.txt")"
expect_rc 0 port add u8 uplink ifname="$ul" mode=xdp xdp_frames=256
hsctl show u8 >"$work/show-u8.txt" 2>&1
want=packet
[ -f "$build/uplink_xdp_plain.bpf.o" ] && want=xdp-native
grep -q "$ul, $want, offload" "$work/show-u8.txt" || fail "show's uplink in mode xdp: $(cat "$work/show-u8.txt")"
expect_rc 0 port del u8
ip link del "$ul"

say "raw protocol: hostile requests"
python3 - "$sock" <<'EOF' || fail "the protocol checks failed"
import json, socket, sys
path = sys.argv[1]
def ask(raw, expect_close=False):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(raw)
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    r = json.loads(data)
    if expect_close:
        s.settimeout(5)
        try:
            rest = s.recv(1)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", "connection not closed"
    s.close()
    return r
r = ask(b"this is not json\n", True)
assert r["ok"] is False and r["error"]["code"] == "EPROTO", r
r = ask(b"[1,2]\n", True)
assert r["error"]["code"] == "EPROTO", r
r = ask(b'{"command": "x' + b"y" * 70000 + b'"}\n', True)
assert r["error"]["code"] == "EMSGSIZE", r
r = ask(b'{"version": 1, "id": "q", "command": "nope"}\n')
assert r["error"]["code"] == "ENOSYS" and r["id"] == "q", r
r = ask(b'{"command": "show", "args": {"colour": "red"}}\n')
assert r["error"]["code"] == "EINVAL", r
r = ask(b'{"version": 2, "command": "show"}\n')
assert r["error"]["code"] == "EPROTONOSUPPORT" and r["error"]["versions"] == [1, 1], r
r = ask(b'{"command": "fdb.add", "args": {"mac": "zz", "port": "a"}}\n')
assert r["error"]["code"] == "EINVAL", r
# two requests in one write, answered in order
s = socket.socket(socket.AF_UNIX); s.connect(path)
s.sendall(b'{"id": 1, "command": "version"}\n{"id": 2, "command": "version"}\n')
f = s.makefile("rb")
assert json.loads(f.readline())["id"] == 1 and json.loads(f.readline())["id"] == 2
s.close()
print("protocol: 8 hostile or odd requests answered as specified")
EOF
expect_rc 0 version

say "a client that does not read its answers costs bounded memory"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$daemon/status"; }
rss0=$(rss)
python3 - "$sock" <<'EOF' || fail "the non-reading client check failed"
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.setblocking(False)
req = b'{"command": "stats"}\n' * 2000
sent, end = 0, time.time() + 3
while time.time() < end and sent < 40 << 20:
    try:
        sent += s.send(req)
    except BlockingIOError:
        time.sleep(0.01)
print("non-reading client: %d KiB of requests written before the daemon stopped reading" % (sent >> 10))
s.close()
EOF
rss1=$(rss)
[ $((rss1 - rss0)) -lt 65536 ] ||
	fail "the daemon grew by $(((rss1 - rss0) >> 10)) MiB for a client that does not read"
expect_rc 0 version

say "clients take turns; a batch ended by shutdown(SHUT_WR) is answered whole"
# A client keeping the socket full of requests (reading every answer) used
# to hold the loop for as long as it went on: another client waited the
# whole flood (and with no workers, so did switching). Now each connection
# runs at most a few requests a turn.
python3 - "$sock" <<'EOF' || fail "the turns or the end-of-stream checks failed"
import json, socket, sys, threading, time
path = sys.argv[1]
# the flood is of reloads (costly, with short answers), each changing
# nothing: the ports running are the file's
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
s.sendall(b'{"command": "reload"}\n')
r = json.loads(s.makefile("rb").readline())["result"]
assert not (r["added"] or r["removed"] or r["changed"] or r["in_place"]), r
s.close()
stop = time.time() + 3
def flood():
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    got = [0]
    def reader():
        f = s.makefile("rb")
        while f.readline():
            got[0] += 1
    t = threading.Thread(target=reader); t.start()
    batch = b'{"command": "reload"}\n' * 3000
    while time.time() < stop:
        s.sendall(batch)
    s.shutdown(socket.SHUT_WR); t.join(); s.close()
    print("flooding client: %d answers" % got[0])
th = threading.Thread(target=flood); th.start()
time.sleep(0.5)
worst = 0
for i in range(5):
    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
    t0 = time.time()
    s.sendall(b'{"command": "version"}\n')
    assert json.loads(s.makefile("rb").readline())["ok"]
    worst = max(worst, time.time() - t0)
    s.close()
th.join()
print("another client during the flood: worst round trip %.3f s" % worst)
# (the flood goes on 2.5 s after the first of these: waiting for its end
# would take that long)
assert worst < 1.5, "a flooding client held the loop: %.3f s for one request" % worst
# a batch, then the end of the client's side: every answer comes, in order
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
s.sendall(b"".join(b'{"id": %d, "command": "version"}\n' % i for i in range(1500)))
s.shutdown(socket.SHUT_WR)
time.sleep(0.5)
lines = s.makefile("rb").read().split(b"\n")
assert lines[-1] == b"", "an answer was cut short"
ids = [json.loads(l)["id"] for l in lines[:-1]]
assert ids == list(range(1500)), "%d answers of 1500 after SHUT_WR" % len(ids)
# a line the end of stream cuts short is refused, saying why
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(path)
s.sendall(b'{"id": 1, "command": "version"}\n{"id": 2, "comm')
s.shutdown(socket.SHUT_WR)
f = s.makefile("rb")
assert json.loads(f.readline())["id"] == 1
r = json.loads(f.readline())
assert r["error"]["code"] == "EPROTO" and "cut short" in r["error"]["message"], r
assert f.readline() == b""
print("end of stream: 1500 answers in order; a cut line refused")
EOF

say "connections: a shut-down client that never reads goes; the limit says why"
python3 - "$sock" "$mport" "$hsctl_bin" <<'EOF' || fail "the connection limit checks failed"
import re, socket, subprocess, sys, time, urllib.request
path, mport, hsctl = sys.argv[1], sys.argv[2], sys.argv[3]
def metric(event=None):
    t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % mport, timeout=5).read().decode()
    if event is None: # the connections open
        return int(re.search(r'^hyperswitch_control_connections (\d+)$', t, re.M).group(1))
    if event == "requests":
        return int(re.search(r'^hyperswitch_control_requests_total (\d+)$', t, re.M).group(1))
    return int(re.search(r'hyperswitch_control_connections_total\{event="%s"\} (\d+)' % event,
                         t).group(1))
# answers it does not read (below the 1 MiB that stops its requests),
# then a line that ends the connection: the
# daemon shuts down after its queued answers, and closes it unread later
open0, err0 = metric(), metric("closed_error")
s = socket.socket(socket.AF_UNIX)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(path)
s.setblocking(False)
s.send(b'{"command": "stats"}\n' * 200 + b"not json\n")
deadline = time.time() + 15
while metric() != open0 and time.time() < deadline:
    time.sleep(0.5)
assert metric() == open0, "a non-reading client's connection was kept"
assert metric("closed_error") == err0 + 1 # (one close, one reason)
s.close()
# a client that sends a batch and goes: the rest of its batch is not run
# (it used to be, all of it: seconds of the loop for nobody)
req0 = metric("requests")
s = socket.socket(socket.AF_UNIX); s.connect(path)
s.sendall(b'{"command": "stats"}\n' * 3000)
s.close()
time.sleep(1.5)
req1 = metric("requests")
assert req1 - req0 < 1500, "%d requests of a client gone were run" % (req1 - req0)
print("a client gone: %d of its 3000 requests run" % (req1 - req0))
# 64 connections: the next is told why
held = []
for i in range(64):
    c = socket.socket(socket.AF_UNIX); c.connect(path); held.append(c)
# (a timeout set before connect would make it fail at once, EAGAIN, while
# the daemon has not yet taken the others from its listen backlog)
c = socket.socket(socket.AF_UNIX); c.connect(path); c.settimeout(5)
r = c.makefile("rb").readline()
assert b'"EBUSY"' in r and b"too many control connections (64)" in r, r
c.close()
# hsctl sends at once: its send fails (EPIPE), and it reads the why
for i in range(5):
    p = subprocess.run([hsctl, "-s", path, "version"], capture_output=True, text=True)
    assert p.returncode == 1 and "EBUSY: too many control connections" in p.stderr, p
for c in held:
    c.close()
time.sleep(0.3)
# users other than the daemon's have 56: the daemon's own user still gets in
# (the socket and its directory opened to them for this)
import os
wdir = os.path.dirname(path)
wmode = os.stat(wdir).st_mode & 0o7777
os.chmod(wdir, wmode | 0o011)
subprocess.run(["chmod", "0666", path], check=True)
try:
    script = ("import socket,sys,time\n"
              "h=[]\n"
              "for i in range(57):\n"
              " c=socket.socket(socket.AF_UNIX);c.connect(sys.argv[1]);c.settimeout(5);h.append(c)\n"
              "print(h[-1].makefile('rb').readline().decode().strip(),flush=True)\n"
              "time.sleep(2)\n")
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          "/usr/bin/python3", "-c", script, path], stdout=subprocess.PIPE)
    line = p.stdout.readline().decode()
    assert "EBUSY" in line and "other than the daemon" in line, line
    c = socket.socket(socket.AF_UNIX); c.connect(path); c.settimeout(5)
    c.sendall(b'{"command": "version"}\n')
    assert b'"ok":true' in c.makefile("rb").readline()
    c.close()
    p.wait()
finally:
    subprocess.run(["chmod", "0600", path], check=True)
    os.chmod(wdir, wmode)
assert metric("refused_busy") >= 2
print("connections: a shut-down one closed unread; EBUSY says why; 8 kept for the daemon's user")
EOF
expect_rc 0 version

say "port set: new settings the system refuses leave the port as it was"
expect_rc 0 port add t8 vhost-user path="$work/t8.sock"
expect_rc 1 port set t8 path=/nonexistent-dir/t8.sock
[ -S "$work/t8.sock" ] || fail "port t8 did not come back on its old socket"
[ "$(hsctl --json show t8 | json '.ports[0].peer.path')" = "$work/t8.sock" ] ||
	fail "port t8's settings changed after a refused port set"
expect_rc 0 port del t8
expect_rc 1 fdb add 02:00:00:00:10:01 ' b'
expect_rc 1 fdb add ' 2:00:00:00:10:01' b

say "mirror to a tap, read with tcpdump"
have_tcpdump=
command -v tcpdump >/dev/null && have_tcpdump=1
expect_rc 0 mirror add a d --rx
expect_rc 0 mirror show
grep -q "a *d *rx" "$work/out.txt" || fail "mirror show: $(cat "$work/out.txt")"
# the output is marked where an operator looks for its VLAN
expect_rc 0 show d
grep -q "30, mirror of a" "$work/out.txt" || fail "show d does not mark the output: $(cat "$work/out.txt")"
expect_rc 0 vlan
grep -q "d (mirror output)" "$work/out.txt" || fail "vlan does not mark the output: $(cat "$work/out.txt")"
expect_rc 1 mirror add b a      # a is a source: it cannot be an output
expect_rc 1 mirror add a a
expect_rc 2 mirror add a
# a usage error shows the command's own usage, not every command's
grep -q "^  mirror add SRC DST" "$work/err.txt" && ! grep -q "fdb add" "$work/err.txt" ||
	fail "mirror add's usage error: $(cat "$work/err.txt")"
# three pings A->B; tcpdump on D (with one) counts WANT_REQ requests and
# WANT_REP replies, what the mirror's direction says D gets
mirror_pings() { # WANT_REQ WANT_REP WHAT
	local td=
	if [ -n "$have_tcpdump" ]; then
		# --immediate-mode: otherwise frames wait in a kernel block that is
		# handed over once a second, and those still there when tcpdump
		# stops are lost
		tcpdump -i "hsd${id}d" --immediate-mode -nn -U -w "$work/mirror.pcap" icmp \
			>"$work/tcpdump-mirror.log" 2>&1 &
		td=$!
		pids+=("$td")
		wait_for "$work/tcpdump-mirror.log" "listening on" 10 || fail "tcpdump did not start"
	fi
	ip netns exec "${ns[0]}" ping -c 3 -i 0.2 -W 2 "${ip4[1]}" >/dev/null 2>&1 ||
		fail "A->B failed with a mirror on A"
	if [ -n "$td" ]; then
		sleep 0.5
		kill -INT "$td"
		wait "$td"
		req=$(tcpdump -r "$work/mirror.pcap" -nn 2>/dev/null | grep -c "${ip4[0]} > ${ip4[1]}: ICMP echo request")
		rep=$(tcpdump -r "$work/mirror.pcap" -nn 2>/dev/null | grep -c "${ip4[1]} > ${ip4[0]}: ICMP echo reply")
		[ "$req" = "$1" ] && [ "$rep" = "$2" ] ||
			fail "the $3 mirror of A showed $req requests and $rep replies, expected $1 and $2"
	fi
}
mirror_pings 3 0 rx
# the direction changed in place: now what the switch sends to A
expect_rc 0 mirror set a d --tx
expect_rc 0 mirror show
grep -q "a *d *tx" "$work/out.txt" || fail "mirror show after set: $(cat "$work/out.txt")"
mirror_pings 0 3 tx
expect_rc 1 mirror set a b      # no such mirror
grep -q "no mirror of a to b" "$work/err.txt" || fail "mirror set a b: $(cat "$work/err.txt")"
expect_rc 0 mirror set a d
expect_rc 0 mirror show
grep -q "a *d *both" "$work/out.txt" || fail "mirror show after set: $(cat "$work/out.txt")"
expect_rc 0 mirror del a d
expect_rc 1 mirror del a d

say "capture to a pcap file, checked byte for byte"
# the binary itself in the background ($! must be hsctl's pid); stopped
# with SIGTERM: a background job's SIGINT is ignored, and hsctl keeps it so
# (as tcpdump does)
"$hsctl_bin" -s "$sock" capture a -w "$work/cap.pcap" >"$work/capture.log" 2>&1 &
cap=$!
pids+=("$cap")
wait_for "$work/capture.log" "capturing on" 10 || fail "the capture did not start: $(cat "$work/capture.log")"
ip netns exec "${ns[0]}" python3 - "${tap[0]}" "$mac_b" "$mac_a" <<'EOF' || fail "cannot send raw frames from A"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
dst, src = bytes.fromhex(sys.argv[2].replace(":", "")), bytes.fromhex(sys.argv[3].replace(":", ""))
for i in range(10):
    s.send(dst + src + b"\x88\xb5" + bytes((i * 7 + k) & 255 for k in range(46 + 146 * i)))
EOF
ip netns exec "${ns[0]}" ping -c 2 -i 0.2 -W 2 "${ip4[1]}" >/dev/null 2>&1
sleep 1.5
kill -TERM "$cap"
end=$((SECONDS + 10))
while kill -0 "$cap" 2>/dev/null; do
	[ $SECONDS -lt $end ] || fail "hsctl capture did not stop on SIGTERM"
	sleep 0.1
done
wait "$cap"
rc=$?
[ $rc = 0 ] || fail "hsctl capture exited $rc: $(cat "$work/capture.log")"
grep -q "frames captured" "$work/capture.log" || fail "capture did not report its counts: $(cat "$work/capture.log")"
/usr/bin/python3 - "$work/cap.pcap" "$mac_b" "$mac_a" "${have_tcpdump:-0}" <<'EOF' || fail "the capture file is wrong"
import struct, subprocess, sys
path, dst, src, td = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), bytes.fromhex(sys.argv[3].replace(":", "")), sys.argv[4] == "1"
want = [dst + src + b"\x88\xb5" + bytes((i * 7 + k) & 255 for k in range(46 + 146 * i)) for i in range(10)]
frames = []
if td:
    # read back with tcpdump: every frame's bytes from its -xx hex dump
    out = subprocess.run(["tcpdump", "-r", path, "-nn", "-xx", "ether proto 0x88b5"],
                         capture_output=True, text=True, check=True).stdout
    cur = None
    for line in out.splitlines():
        if line.startswith("\t0x"):
            cur += bytes.fromhex("".join(line.split(":", 1)[1].split()))
        else:
            if cur is not None:
                frames.append(cur)
            cur = b""
    if cur:
        frames.append(cur)
    how = "tcpdump"
else:
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xa1b2c3d4, 0xa1b23c4d), hex(magic)
    o = 24
    while o < len(data):
        _, _, incl, orig = struct.unpack("<IIII", data[o:o + 16])
        f = data[o + 16:o + 16 + incl]
        if f[12:14] == b"\x88\xb5":
            frames.append(f)
        o += 16 + incl
    how = "a pcap reader"
assert frames == want, "captured %d frames of ours, expected %d; sizes %s" % (
    len(frames), len(want), [len(f) for f in frames])
print("capture: 10 frames read back with %s, byte for byte" % how)
EOF

say "reload under traffic"
# -w: wait for every reply (with -c alone, ping stops waiting twice the
# slowest round trip after the last request, and a slow last reply is lost)
ip netns exec "${ns[0]}" ping -i 0.01 -c 400 -w 30 "${ip4[1]}" >"$work/ping-reload.log" 2>&1 &
pinger=$!
pids+=("$pinger")
# a capture of s1, which the reload replaces: the daemon ends it; one of
# C, which changes VLAN in place: it goes on, in C's new VLAN
"$hsctl_bin" -s "$sock" capture s1 -w "$work/cap-s1.pcap" >"$work/capture-s1.log" 2>&1 &
caps1=$!
pids+=("$caps1")
"$hsctl_bin" -s "$sock" capture c -w "$work/cap-c.pcap" >"$work/capture-c.log" 2>&1 &
capc=$!
pids+=("$capc")
c_ifindex=$(ip -n "${ns[2]}" -o link show "${tap[2]}" | cut -d: -f1)
c_rx1=$(hsctl --json stats c | port_field c .rx_packets)
for l in capture-s1 capture-c; do
	wait_for "$work/$l.log" "capturing on" 10 || fail "$l did not start: $(cat "$work/$l.log")"
done
sleep 1 # traffic before the reload
write_conf 10 0 1 q p # and s1, s2 swap their sockets
expect_rc 0 --json reload
cp "$work/out.txt" "$work/reload.json"
[ "$(json -c .in_place <"$work/reload.json")" = '["c"]' ] ||
	fail "C's VLAN change was not made in place: $(cat "$work/reload.json")"
hsctl --json reload >/dev/null # nothing changed now
sleep 1
wait "$pinger"
end=$((SECONDS + 10))
while kill -0 "$caps1" 2>/dev/null; do
	[ $SECONDS -lt $end ] || fail "the capture of s1 did not end when the reload replaced s1"
	sleep 0.1
done
wait "$caps1" || fail "hsctl capture of s1 exited $? when s1 went: $(cat "$work/capture-s1.log")"
kill -0 "$capc" 2>/dev/null || fail "the capture of C ended though C changed in place"
lost=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$work/ping-reload.log")
[ "$lost" = 400 ] || fail "A->B lost frames across the reload: $(tail -n 3 "$work/ping-reload.log")"
hsctl --json show >"$work/show2.json"
python3 - "$work/show2.json" <<'EOF' || fail "the reload did not apply as expected"
import json, sys
r = json.load(open(sys.argv[1]))
ports = {p["name"]: p for p in r["ports"]}
assert set(ports) == {"a", "b", "c", "vm1", "e", "s1", "s2"}, sorted(ports)
assert ports["s1"]["peer"]["path"].endswith("/q.sock"), ports["s1"]["peer"]
assert ports["s2"]["peer"]["path"].endswith("/p.sock"), ports["s2"]["peer"]
assert ports["c"]["vlan"] == 10, ports["c"]
assert ports["e"]["trunks"] == [10, "100-102"], ports["e"]["trunks"]
EOF
hsctl --json fdb show >"$work/fdb2.json"
[ "$(jq -r --arg m "$mac_a" '.entries[] | select(.mac == $m) | .port' <"$work/fdb2.json")" = a ] ||
	fail "A's learned MAC was lost in the reload"
hsctl --json stats >"$work/stats2.json"
a_rx2=$(port_field a .rx_packets <"$work/stats2.json")
[ "$a_rx2" -ge $((a_rx1 + 400)) ] || fail "port a's counters restarted ($a_rx1 -> $a_rx2)"
if [ -n "$tp" ]; then
	[ "$(port_field vm1 .backend.connects <"$work/stats2.json")" = 1 ] ||
		fail "testpmd had to reconnect to vm1 across the reload"
fi
# C moved to VLAN 10 in place: the same tap, in its namespace still, its
# counters kept; A reaches it now, and the capture of C sees that
[ "$(ip -n "${ns[2]}" -o link show "${tap[2]}" 2>/dev/null | cut -d: -f1)" = "$c_ifindex" ] ||
	fail "C's tap was made again by a VLAN change"
c_rx2=$(hsctl --json stats c | port_field c .rx_packets)
[ "$c_rx2" -ge "$c_rx1" ] || fail "port c's counters restarted ($c_rx1 -> $c_rx2)"
ip netns exec "${ns[0]}" ping -c 3 -i 0.2 -W 2 "${ip4[2]}" >/dev/null 2>&1 ||
	fail "A cannot reach C after C moved to VLAN 10"
sleep 0.5
kill -TERM "$capc"
wait "$capc" || fail "hsctl capture of C exited $?: $(cat "$work/capture-c.log")"
n=$(tcpdump -nr "$work/cap-c.pcap" "icmp[icmptype] = icmp-echo and src host ${ip4[0]} and not vlan" 2>/dev/null | wc -l)
[ "$n" -ge 3 ] || fail "the capture of C saw $n of A's echo requests after C changed VLAN"

say "a bad file is rejected whole"
cp "$conf" "$work/good.conf"
printf 'ports = ( { name = "a"; type = "tap"; vlan = } );\n' >"$conf" # no value
expect_rc 1 reload
grep -q "hs.conf:1" "$work/err.txt" || fail "reload error lacks file:line: $(cat "$work/err.txt")"
printf 'ports = ( { name = "a"; type = "tap"; colour = "red"; } );\n' >"$conf"
expect_rc 1 reload
grep -q "colour: unknown setting" "$work/err.txt" || fail "unknown key not named: $(cat "$work/err.txt")"
[ "$(hsctl --json show | json '.ports | length')" = 7 ] || fail "a rejected reload changed the ports"

say "a port the library refuses, and a setting for the next start"
# a tap to attach that does not exist: failed, and not listed as added;
# workers changed: named in the result and in a warning
sed -e "s/workers = [0-9]*;/workers = 3;/" -e '$d' "$work/good.conf" >"$conf"
printf '  , { name = "z"; type = "tap"; ifname = "hsd%sz"; attach = true; }\n);\n' "$id" >>"$conf"
expect_rc 1 --json reload
[ "$(json -c .added <"$work/out.txt")" = '[]' ] || fail "a refused port was listed as added: $(cat "$work/out.txt")"
[ "$(json -r '.failed[0].port' <"$work/out.txt")" = z ] || fail "the refused port is not in failed: $(cat "$work/out.txt")"
[ "$(json -c .restart_needed <"$work/out.txt")" = '["switch.workers"]' ] ||
	fail "restart_needed: $(cat "$work/out.txt")"
grep -q "warn.*running as before until a restart: switch.workers" "$work/daemon.log" ||
	fail "no warning names the setting: $(grep reload "$work/daemon.log" | tail -n 3)"
hsctl --json show | json -e '.ports[] | select(.name == "z")' >/dev/null &&
	fail "the refused port z runs"

say "SIGHUP"
cp "$work/good.conf" "$conf"
write_conf 10 0 0
kill -HUP "$daemon"
end=$((SECONDS + 10))
until [ "$(hsctl --json show | json '.ports | length')" = 6 ]; do
	[ $SECONDS -lt $end ] || fail "SIGHUP did not reload (e still there)"
	sleep 0.2
done

say "stop"
if [ -n "$tp" ]; then
	printf 'stop\nquit\n' >&7
	exec 7>&-
fi
kill -TERM "$daemon"
wait "$daemon"
rc=$?
daemon=
[ $rc = 0 ] || fail "the daemon exited with $rc on SIGTERM"
[ -e "$sock" ] && fail "the control socket stayed"
[ -e "$work/hsd.pid" ] && fail "the pid file stayed"
ip -n "${ns[0]}" link show "${tap[0]}" >/dev/null 2>&1 && fail "tap A stayed after the daemon stopped"
grep -q "stopped" "$work/daemon.log" || fail "the daemon did not log its stop"
if [ -n "$notify" ]; then
	# READY once running, RELOADING then READY around each reload,
	# STOPPING at the end, and nothing before READY
	python3 - "$work/notify.log" <<'EOF' || fail "sd_notify: $(cat "$work/notify.log")"
import sys
msgs = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
flat = [m for line in msgs for m in line if m.split("=")[0] in ("READY", "RELOADING", "STOPPING")]
assert flat[0] == "READY=1", flat
assert flat[-1] == "STOPPING=1", flat
reloads = flat.count("RELOADING=1")
assert reloads >= 3, flat  # hsctl reloads and the SIGHUP
for i, m in enumerate(flat):
    if m == "RELOADING=1":
        assert flat[i + 1] == "READY=1", flat
print("sd_notify: READY, %d reloads each closed by READY, STOPPING" % reloads)
EOF
fi
# the unit as installed, with this build's paths, checked by systemd
if command -v systemd-analyze >/dev/null; then
	sed "s|^\(Exec[A-Za-z]*=\)[^ ]*/hyperswitchd|\1$hsd|" \
		"$build/tools/hyperswitchd/hyperswitchd.service" >"$work/hyperswitchd.service"
	systemd-analyze verify "$work/hyperswitchd.service" >"$work/verify.log" 2>&1 ||
		fail "systemd-analyze verify: $(cat "$work/verify.log")"
fi
say "daemon: PASS"
