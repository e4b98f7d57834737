#!/usr/bin/env bash
# Faults under traffic, against the vswitch example and real peers: taps in
# network namespaces made here, Linux guests under QEMU (software
# emulation) and DPDK testpmd on vhost-user sockets. One pass per fault:
#   1. guest-kill:  a QEMU guest is SIGKILLed while it answers 100 pings/s;
#                   the switch logs the disconnect, its port goes down and
#                   counts the frames for it; a new guest on the same socket
#                   gets traffic again.
#   2. switch-kill: the switch is SIGKILLed under traffic and restarted; QEMU
#                   reconnects (chardev reconnect=1) and the guest's traffic
#                   with a tap resumes within a bound.
#   3. tap-gone:    a tap is deleted from under the switch (ip link del in its
#                   namespace) while it carries traffic: the port goes down
#                   with a logged reason, the switch does not spin, frames for
#                   it are counted.
#   4. stuck:       a testpmd front-end stops posting receive buffers
#                   (SIGSTOP): its ring fills, the switch backlogs, then drops
#                   as rx_no_buffer; after SIGCONT the backlog drains and it
#                   gets traffic again; testpmd's count closes with the switch's.
#   5. churn:       short-lived testpmd front-ends connect, transmit at full
#                   speed and go away, six times: three quit (every frame they
#                   sent was received), three are killed mid-traffic; every
#                   connection is seen coming and going.
# In every pass a steady ping flow between two other taps (A and B, 100 frames
# a second each way) keeps going, with no gap longer than $gap_max s and
# every frame accounted for exactly: what A's tap transmitted equals what the
# switch received on A's port, what it delivered to B's port (plus every drop
# reason on both ports, which must all be zero) and what B's tap received;
# the same the other way.
#
# Noise is removed first so that the numbers can close exactly: each flow has
# a VLAN of its own with exactly two members (so a flooded frame is delivered
# once, or dropped and counted), IPv6 is off in the namespaces (no router
# solicitations, MLD, DAD) and in the guests (ipv6.disable=1), and neighbours
# are static (no ARP from the taps). Counters are compared as differences
# between two moments at which the flows are stopped and the switch's counters
# (printed every second with --stats 1) have settled; setup traffic (a new
# tap's first frames in the root namespace, before it moves) falls before the
# first moment.
#
# The vswitch example cannot add or remove ports at run time yet, so the
# "port add/remove churn" of the issue is exercised as vhost-user connection
# churn on a configured port (connect, negotiate, map memory, start rings,
# traffic, disconnect).
#
#   test_faults.sh BUILD_DIR SOURCE_DIR
# About a minute on 2 cores (the guests boot in under 10 s each under TCG).
# HS_FAULTS_GAP_MAX (1 s) and HS_FAULTS_RESUME_MAX (20 s) set the bounds;
# HS_FAULTS_KEEP=DIR copies the logs there before cleaning up.
# Exits 77 (skipped) when not root or when a peer (QEMU and a guest kernel,
# DPDK testpmd and hugepages, iproute2, ping, python3, /dev/net/tun) cannot
# be set up. Everything it creates (namespaces, taps, processes, sockets,
# hugepage files, temporary files) is removed on every exit path; it stops
# only processes it started, by PID.
set -uo pipefail
build=${1:?usage: test_faults.sh BUILD_DIR SOURCE_DIR}
src=${2:?usage: test_faults.sh BUILD_DIR SOURCE_DIR}
vswitch=$build/examples/vswitch
gap_max=${HS_FAULTS_GAP_MAX:-1}   # seconds without an answer on a steady flow
resume_max=${HS_FAULTS_RESUME_MAX:-20} # seconds from a switch kill to traffic again

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (namespaces, taps, hugepages)"
for c in ip ping python3 awk qemu-system-x86_64 dpdk-testpmd; do
	command -v "$c" >/dev/null || skip "no $c"
done
[ -x "$vswitch" ] || skip "$vswitch not built"
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net && mknod /dev/net/tun c 10 200 2>/dev/null
	[ -c /dev/net/tun ] || skip "no /dev/net/tun"
fi

id=$$
work=$(mktemp -d /tmp/hs-faults.XXXXXX)
pids=()        # every process started here
nslist=()      # every namespace made here
hp_old=        # nr_hugepages before this test raised it
hp_mounted=    # whether this test mounted /dev/hugepages
vs=            # the running switch
swout='' swerr=''  # its stdout (counters) and stderr (log)
pab='' pcg='' pcg2='' pcg3='' ped=''  # the pings (ping_start)

cleanup() {
	local p n
	for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in "${nslist[@]}"; do ip netns del "$n" 2>/dev/null; done
	# Taps live as long as the switch's fd; one still in the root namespace
	# (a failure between creation and the move) is gone with the switch.
	rm -rf /dev/hugepages/hsf-"$id"-* /var/run/dpdk/hsf-"$id"-* 2>/dev/null
	[ -n "$hp_old" ] && echo "$hp_old" >/proc/sys/vm/nr_hugepages
	[ -n "$hp_mounted" ] && umount /dev/hugepages 2>/dev/null
	[ -n "${HS_FAULTS_KEEP:-}" ] && cp -r "$work"/. "$HS_FAULTS_KEEP"/ 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# DPDK needs 2 MiB hugepages: two testpmd processes of 256 MiB at most.
hp_free() { awk '/HugePages_Free/ {print $2}' /proc/meminfo; }
if [ "$(hp_free)" -lt 300 ]; then
	hp_old=$(cat /proc/sys/vm/nr_hugepages)
	echo $((hp_old + 300 - $(hp_free))) >/proc/sys/vm/nr_hugepages
fi
mkdir -p /dev/hugepages
if ! mountpoint -q /dev/hugepages; then
	mount -t hugetlbfs nodev /dev/hugepages && hp_mounted=1
fi
[ "$(hp_free)" -ge 300 ] && mountpoint -q /dev/hugepages ||
	skip "not enough free 2 MiB hugepages for testpmd"

kernel=$("$src/tests/interop/build_guest.sh" "$work/initrd.gz" 2>"$work/guest.err") ||
	skip "cannot build the guest: $(tr '\n' ' ' <"$work/guest.err")"

T0=$(date +%s.%N)
# Every line says how far into the test it was printed.
say() { echo "[$(awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "%.1f", a - b }')s] $*"; }
passed=0
pass() { passed=$((passed + 1)); say "ok $passed: $*"; }

# ---- the ports ---------------------------------------------------------------
# Taps A, B (VLAN 10): the steady flow of every pass. C (VLAN 20): the
# guests' peer. D, E (VLAN 30): D is deleted under E's flow. F (VLAN 40): the
# sender to the stuck testpmd. vhu0 (VLAN 20): the guests; vhu1 (VLAN 40):
# the stuck testpmd; vhu2 (VLAN 50, alone): the churning testpmds.
declare -A NS TAP MAC IP VLAN PEER
for x in a b c d e f; do NS[$x]=hsf-$id-$x; TAP[$x]=hf$id$x; done
MAC[a]=02:00:00:00:0a:01 IP[a]=10.78.10.1 VLAN[a]=10 PEER[a]=b
MAC[b]=02:00:00:00:0a:02 IP[b]=10.78.10.2 VLAN[b]=10 PEER[b]=a
MAC[c]=02:00:00:00:14:03 IP[c]=10.78.20.3 VLAN[c]=20 PEER[c]=g
MAC[d]=02:00:00:00:1e:04 IP[d]=10.78.30.4 VLAN[d]=30 PEER[d]=e
MAC[e]=02:00:00:00:1e:05 IP[e]=10.78.30.5 VLAN[e]=30 PEER[e]=d
MAC[f]=02:00:00:00:28:06 IP[f]=10.78.40.6 VLAN[f]=40 PEER[f]=s
MAC[g]=52:54:00:00:14:01 IP[g]=10.78.20.1   # the guest
MAC[s]=02:00:00:00:28:11 IP[s]=10.78.40.11  # the stuck testpmd
MAC[k]=02:00:00:00:32:21                    # the churning testpmds
ring=(split packed)
drop_names="runt oversize bad_src_mac vlan same_port rx_no_buffer bad_offload port_down bad_descriptor copy_error no_route"
live_taps="a b c d e f"

# ---- logs, failure ----------------------------------------------------------
fail() {
	say "FAIL: $*"
	echo "== the switch's last counters (every port; drops by reason)"
	[ -n "$swout" ] && awk '/^switch: rx/ {b = ""} {b = b $0 "\n"} END {printf "%s", b}' "$swout" |
		grep -v '^fdb:'
	echo "== the switch's log (last 30 lines)"
	[ -n "$swerr" ] && tail -n 30 "$swerr"
	local x
	for x in $live_taps; do
		echo "== ${NS[$x]}: ${TAP[$x]}"
		ip -n "${NS[$x]}" -s link show "${TAP[$x]}" 2>&1
	done
	for f in "$work"/*.log; do
		[ -e "$f" ] || continue
		echo "--- $f (last 8 lines)"
		tail -n 8 "$f"
	done
	echo "$passed passed, 1 failed"
	exit 1
}

# wait_for FILE PATTERN SECONDS [COUNT]: until PATTERN occurs COUNT times (1)
wait_for() {
	local end=$((SECONDS + $3)) n=${4:-1} c
	while c=$(grep -c -- "$2" "$1" 2>/dev/null); [ "${c:-0}" -lt "$n" ]; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
# forget PID: a process of ours that has been waited for (its PID may be
# reused: never signal it again).
forget() {
	local p keep=()
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}
# reap PID: waits for a process of ours that was killed; its status in $rc.
reap() { wait "$1" 2>/dev/null; rc=$?; forget "$1"; }
# wait_exit PID SECONDS: waits for a process of ours to exit; status in $rc.
wait_exit() {
	local end=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
	reap "$1"
}

# ---- counters ----------------------------------------------------------------
# The switch's counters: the blocks it prints every second on stdout
# ("switch: ..." then "port P: key value ..." and "port P backend: key value
# ..."). load_snap TAG [settled]: S[TAG.P.key] from the newest block holding
# each port's line (settled: from the last complete block only). A last line
# still being written is left out.
declare -A S K
nblocks() { grep -c '^switch: rx' "$swout" 2>/dev/null; }
load_snap() {
	local tag=$1 upto=1000000000 p k v f=$swout
	[ "${2:-}" = settled ] && upto=$(($(nblocks) - 1))
	for k in "${!S[@]}"; do [[ $k == "$tag".* ]] && unset "S[$k]"; done
	local cut=cat
	[ -n "$(tail -c1 "$f")" ] && cut='head -n -1'
	while read -r p k v; do S[$tag.$p.$k]=$v; done < <($cut "$f" | awk -v upto="$upto" '
		/^switch: rx/ { n++; next }
		n > upto { next }
		/^port [^ ]+: rx_packets [0-9]+ .* tx_csum_sw [0-9]+/ {
			p = $2; sub(/:$/, "", p); L[p] = $0; next }
		/^port [^ ]+ backend:/ { B[$2] = $0 }
		END {
			for (p in L) { m = split(L[p], f, " ")
				for (i = 3; i < m; i += 2) print p, f[i], f[i + 1] }
			for (p in B) { m = split(B[p], f, " ")
				for (i = 4; i < m; i += 2) print p, "be_" f[i], f[i + 1] } }')
}
# Kernel counters of each live tap, from ip -s link in its namespace.
# tx_packets: frames the switch read from the tap (tun counts a frame sent
# when the reader takes it); tx_dropped: frames the kernel dropped because
# the switch did not read them in time (the tap's queue was full): lost
# before the switch, so they count as drops of the kernel, not of the
# switch. rx_packets: frames the switch wrote that the kernel took;
# rx_dropped: writes the kernel refused (the interface down, say).
load_kern() {
	local tag=$1 x r
	for x in $live_taps; do
		r=$(ip -n "${NS[$x]}" -s link show dev "${TAP[$x]}" 2>/dev/null | awk '
			$1 == "RX:" { getline; rp = $2; rd = $4 }
			$1 == "TX:" { getline; tp = $2; td = $4 }
			END { print rp + 0, rd + 0, tp + 0, td + 0 }')
		read -r K[$tag.$x.rxp] K[$tag.$x.rxd] K[$tag.$x.txp] K[$tag.$x.txd] <<<"$r"
	done
}
# settle TAG: both sets of counters once the switch has printed a block that
# began a second or more after this call (its flows are stopped: nothing
# changes any more; the first block after the call may come a few ms
# after a stop the switch has not finished taking).
settle() {
	local c0
	c0=$(nblocks)
	wait_for "$swout" '^switch: rx' 10 $((c0 + 3)) || fail "the switch stopped printing counters"
	load_snap "$1" settled
	load_kern "$1"
}
# sd T0 T1 PORT KEY: the switch's counter KEY of PORT from T0 to T1
sd() { echo $(( ${S[$2.$3.$4]:-0} - ${S[$1.$3.$4]:-0} )); }
# sdrops T0 T1 PORT: all drop reasons of PORT, summed
sdrops() {
	local r t=0
	for r in $drop_names; do t=$((t + $(sd "$1" "$2" "$3" "$r"))); done
	echo $t
}
# sdrops_list T0 T1 PORT: the non-zero ones, by name
sdrops_list() {
	local r v out=
	for r in $drop_names; do
		v=$(sd "$1" "$2" "$3" "$r")
		[ "$v" = 0 ] || out+=" $r $v"
	done
	echo "${out:- none}"
}
kd() { echo $(( ${K[$2.$3.$4]:-0} - ${K[$1.$3.$4]:-0} )); }
port() { case $1 in g) echo vhu0 ;; s) echo vhu1 ;; k) echo vhu2 ;; *) echo "${TAP[$1]}" ;; esac; }

# tap_pair_check NAME T0 T1 X Y ZERO: the flow between taps X and Y (the only
# members of their VLAN) from T0 to T1 closes exactly; ZERO=1: and nothing of
# it was dropped anywhere. Returns 1 with the numbers in $why otherwise.
# Per direction X->Y: X's stack hands frames to its tap; the kernel drops
# those the switch does not read in time (X tx_dropped) and counts the rest
# as X tx_packets as the switch reads them (= the switch's rx on X's port,
# exactly); the switch delivers each one to Y's port (tx_packets) or counts
# it under a drop reason (on X's port for ingress reasons, on Y's for egress
# ones); what it writes to Y's tap the kernel takes (Y rx_packets = the
# switch's tx on Y's port, exactly) or refuses (Y rx_dropped, and the switch
# counts the failed write as a drop). The two directions share the ports'
# drop counters, so the switch's own balance is checked over the VLAN:
# rx(X) + rx(Y) = tx(X) + tx(Y) + drops(X) + drops(Y). So sent = received +
# counted drops, exactly, with the kernel's drops on either side counted in.
tap_pair_check() {
	local t0=$2 t1=$3 x=$4 y=$5 zero=$6 s
	why=
	local -A ktx ktxd krx krxd srx stx sdr
	for s in "$x" "$y"; do
		ktx[$s]=$(kd "$t0" "$t1" "$s" txp) ktxd[$s]=$(kd "$t0" "$t1" "$s" txd)
		krx[$s]=$(kd "$t0" "$t1" "$s" rxp) krxd[$s]=$(kd "$t0" "$t1" "$s" rxd)
		srx[$s]=$(sd "$t0" "$t1" "$(port "$s")" rx_packets)
		stx[$s]=$(sd "$t0" "$t1" "$(port "$s")" tx_packets)
		sdr[$s]=$(sdrops "$t0" "$t1" "$(port "$s")")
	done
	acct=
	for s in "$x:$y" "$y:$x"; do
		local i=${s%:*} o=${s#*:}
		acct+="${i^^}->${o^^}: sent ${ktx[$i]} (kernel tx_dropped ${ktxd[$i]}), switch rx ${srx[$i]}, "
		acct+="delivered ${stx[$o]}, received ${krx[$o]} (kernel rx_dropped ${krxd[$o]}); "
	done
	acct+="switch drops: ${TAP[$x]}$(sdrops_list "$t0" "$t1" "$(port "$x")"), "
	acct+="${TAP[$y]}$(sdrops_list "$t0" "$t1" "$(port "$y")")"
	for s in "$x" "$y"; do
		[ "${ktx[$s]}" = "${srx[$s]}" ] ||
			why+=" ${s^^}'s tap sent ${ktx[$s]} but the switch received ${srx[$s]};"
		[ "${stx[$s]}" = "${krx[$s]}" ] ||
			why+=" the switch delivered ${stx[$s]} to ${s^^} but its tap received ${krx[$s]};"
	done
	[ $((srx[$x] + srx[$y])) = $((stx[$x] + stx[$y] + sdr[$x] + sdr[$y])) ] ||
		why+=" switch: received $((srx[$x] + srx[$y])) != delivered $((stx[$x] + stx[$y])) + dropped $((sdr[$x] + sdr[$y]));"
	if [ "$zero" = 1 ]; then
		[ $((sdr[$x] + sdr[$y] + ktxd[$x] + ktxd[$y] + krxd[$x] + krxd[$y])) = 0 ] ||
			why+=" frames of this flow were dropped;"
		[ "${ktx[$x]}" = "${krx[$y]}" ] && [ "${ktx[$y]}" = "${krx[$x]}" ] ||
			why+=" sent != received;"
		[ "${ktx[$x]}" -gt 0 ] && [ "${ktx[$y]}" -gt 0 ] || why+=" no traffic;"
	fi
	[ -z "$why" ]
}

# check_flow NAME T0 T1 X Y ZERO: settles T1 (again, up to 3 times, if a
# straggler was still on its way) and fails unless the flow closes.
check_flow() {
	local try
	for try in 1 2 3; do
		tap_pair_check "$@" && break
		[ "$try" = 3 ] && fail "$1: ${TAP[$4]}<->${TAP[$5]} does not close:$why ($acct)"
		settle "$3"
	done
}

# ---- peers -------------------------------------------------------------------
make_ns() { # x
	ip netns add "${NS[$1]}" || fail "cannot create namespace ${NS[$1]}"
	nslist+=("${NS[$1]}")
	ip netns exec "${NS[$1]}" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1 >/dev/null ||
		fail "cannot disable IPv6 in ${NS[$1]}"
}
# setup_tap x: moves the switch's tap into its namespace, gives it its MAC and
# address, a static neighbour for its peer, and brings it up.
setup_tap() {
	local x=$1 p=${PEER[$1]}
	ip link set "${TAP[$x]}" netns "${NS[$x]}" &&
		ip -n "${NS[$x]}" link set "${TAP[$x]}" address "${MAC[$x]}" &&
		ip -n "${NS[$x]}" addr add "${IP[$x]}/24" dev "${TAP[$x]}" &&
		ip -n "${NS[$x]}" link set "${TAP[$x]}" up &&
		ip -n "${NS[$x]}" neigh replace "${IP[$p]}" lladdr "${MAC[$p]}" \
			dev "${TAP[$x]}" nud permanent ||
		fail "cannot set up ${TAP[$x]} in ${NS[$x]}"
}
# start_switch NAME: the switch with every port, its taps in their namespaces.
start_switch() {
	swout=$work/$1.out swerr=$work/$1.log
	local args=() x
	for x in a b c d e f; do args+=(--tap "${TAP[$x]},vlan=${VLAN[$x]}"); done
	"$vswitch" --workers 1 --stats 1 "${args[@]}" \
		--vhost-user "$work/guest.sock,vlan=20" --vhost-user "$work/stuck.sock,vlan=40" \
		--vhost-user "$work/churn.sock,vlan=50" >"$swout" 2>"$swerr" &
	vs=$!
	pids+=("$vs")
	wait_for "$swout" running 10 || fail "$1: the switch did not start"
	for x in $live_taps; do setup_tap "$x"; done
}
# guest NAME: a QEMU guest on vhu0 (VLAN 20), address IP[g]; answers pings.
guest() {
	qemu-system-x86_64 -accel tcg -m 256 -smp 1 -display none -monitor none \
		-no-reboot -kernel "$kernel" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet ipv6.disable=1 hs.role=none hs.ip=${IP[g]} hs.peer=${IP[c]}" \
		-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
		-chardev "socket,id=c0,path=$work/guest.sock,reconnect=1" \
		-netdev vhost-user,id=n0,chardev=c0 \
		-device "virtio-net-pci,netdev=n0,mac=${MAC[g]},vectors=0" \
		-serial "file:$work/$1.log" >"$work/$1.qemu.log" 2>&1 &
	gpid=$!
	pids+=("$gpid")
}
# ping_start VAR x DST: a steady ping (100/s) from namespace x; its log has a
# timestamp per answer.
ping_start() {
	ip netns exec "${NS[$2]}" ping -D -O -i 0.01 -W 1 "$3" >"$work/ping-$1.log" 2>&1 &
	pids+=("$!")
	printf -v "$1" %s "$!"
}
ping_stop() { kill -INT "$1" 2>/dev/null; wait_exit "$1" 10; }
# ping_stats NAME [SINCE]: "answers max_gap_s first_answer_after_SINCE answers_after_SINCE"
ping_stats() {
	awk -F'[][]' -v since="${2:-0}" '/bytes from/ { t = $2
		if (p) { g = t - p; if (g > m) m = g }
		p = t; n++
		if (t > since) { if (!f) f = t; a++ } }
		END { printf "%d %.2f %s %d\n", n, m, f ? f : "none", a }' "$work/ping-$1.log"
}
# ping_answers NAME: answers so far
ping_answers() {
	local c
	c=$(grep -c 'bytes from' "$work/ping-$1.log" 2>/dev/null)
	echo "${c:-0}"
}
wait_answers() { # NAME N SECONDS
	local end=$((SECONDS + $3))
	until [ "$(ping_answers "$1")" -ge "$2" ]; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.1
	done
}
# steady_check PASS NAME SINCE: the steady ping kept going: answers after
# SINCE (the fault), and no silence longer than gap_max.
steady_check() {
	local n gap first after
	read -r n gap first after < <(ping_stats "$2" "$3")
	[ "$after" -ge 100 ] || fail "$1: the A->B flow got only $after answers after the fault"
	awk -v g="$gap" -v m="$gap_max" 'BEGIN { exit !(g <= m) }' ||
		fail "$1: the A->B flow went silent for ${gap}s (more than ${gap_max}s)"
	steady_gap=$gap steady_n=$n
}
now() { date +%s.%N; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# cpu_pct PID: its CPU use over the next two seconds, in percent of a core
# (ps would give the average over its life).
cpu_pct() {
	local t0 t1
	t0=$(cpu_ticks "$1")
	sleep 2
	t1=$(cpu_ticks "$1")
	echo $(( (t1 - t0) * 100 / ($(getconf CLK_TCK) * 2) ))
}
# send_frames x DSTMAC N: N Ethernet frames (EtherType 0x88b5, 60 bytes) from
# namespace x's tap, about 2000 a second (ping would slow down to 100 a
# second once answers stop coming).
send_frames() {
	ip netns exec "${NS[$1]}" python3 - "${TAP[$1]}" "$2" "${MAC[$1]}" "$3" <<'EOF' ||
import socket, sys, time
dev, dst, srcmac, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
hdr = bytes.fromhex(dst.replace(':', '')) + bytes.fromhex(srcmac.replace(':', '')) + b'\x88\xb5'
for i in range(n):
    s.send(hdr + i.to_bytes(4, 'big') + bytes(42))
    if i % 20 == 19:
        time.sleep(0.01)
EOF
		fail "cannot send frames from ${NS[$1]}"
}

for x in a b c d e f; do make_ns "$x"; done

# =============================================================================
start_switch s1
# The steady pair answers.
ip netns exec "${NS[a]}" ping -c 2 -i 0.1 -W 2 "${IP[b]}" >/dev/null 2>&1 ||
	fail "setup: A cannot ping B"
settle base1
say "setup: switch up, 6 taps in their namespaces, A<->B answers"

# ---- 1. a guest killed in the middle of its traffic -------------------------
P=guest-kill
guest g1
wait_for "$work/g1.log" "HS-UP" 120 || fail "$P: guest 1 did not come up"
wait_for "$swerr" "vhu0: link up" 30 || fail "$P: no link up for the guest's port"
ping_start pab a "${IP[b]}"
ping_start pcg c "${IP[g]}"
wait_answers pcg 100 60 || fail "$P: the guest does not answer C"
pass "$P: guest 1 booted and answers C's pings, A<->B flowing"
tkill=$(now)
kill -KILL "$gpid"
reap "$gpid"
wait_for "$swerr" "vhu0: front-end disconnected" 10 || fail "$P: the switch did not see the guest go"
wait_for "$swerr" "vhu0: link down" 10 || fail "$P: the guest's port did not go down"
# C keeps sending to the dead guest: the switch must count each such frame.
end=$((SECONDS + 10))
until load_snap now && [ "$(sd base1 now vhu0 port_down)" -gt 0 ]; do
	[ $SECONDS -lt $end ] || fail "$P: frames for the dead guest are not counted as port_down"
	sleep 0.2
done
pass "$P: disconnect logged, port down, frames for it counted (port_down $(sd base1 now vhu0 port_down) so far)"
# A new guest on the same socket gets traffic again.
guest g2
tg2=$(now)
wait_for "$work/g2.log" "HS-UP" 120 || fail "$P: guest 2 did not come up"
end=$((SECONDS + 60))
until [ "$(ping_stats pcg "$tg2" | cut -d' ' -f4)" -ge 50 ]; do
	[ $SECONDS -lt $end ] || fail "$P: guest 2 on the same socket gets no traffic"
	sleep 0.2
done
pass "$P: guest 2 on the same socket answers C"
steady_check "$P" pab "$tkill"
ping_stop "$pab"
ping_stop "$pcg"
settle p1
check_flow "$P" base1 p1 a b 1
pass "$P: A<->B kept going (longest silence ${steady_gap}s, $steady_n answers) and closes exactly: $acct"
# VLAN 20 (C and the guests' port) at the switch: what it received equals
# what it delivered plus what it counted as dropped (the frames for the dead
# guest); C's side of it matches C's kernel.
rx=$(( $(sd base1 p1 "${TAP[c]}" rx_packets) + $(sd base1 p1 vhu0 rx_packets) ))
tx=$(( $(sd base1 p1 "${TAP[c]}" tx_packets) + $(sd base1 p1 vhu0 tx_packets) ))
dr=$(( $(sdrops base1 p1 "${TAP[c]}") + $(sdrops base1 p1 vhu0) ))
c_acct="C sent $(kd base1 p1 c txp), switch rx from C $(sd base1 p1 "${TAP[c]}" rx_packets) from the guests $(sd base1 p1 vhu0 rx_packets); delivered to C $(sd base1 p1 "${TAP[c]}" tx_packets) (C received $(kd base1 p1 c rxp)), to the guests $(sd base1 p1 vhu0 tx_packets); drops: vhu0$(sdrops_list base1 p1 vhu0), ${TAP[c]}$(sdrops_list base1 p1 "${TAP[c]}")"
[ "$rx" = $((tx + dr)) ] || fail "$P: VLAN 20 does not close: received $rx, delivered $tx, dropped $dr ($c_acct)"
[ "$(kd base1 p1 c txp)" = "$(sd base1 p1 "${TAP[c]}" rx_packets)" ] &&
	[ "$(kd base1 p1 c rxp)" = "$(sd base1 p1 "${TAP[c]}" tx_packets)" ] ||
	fail "$P: C's kernel and the switch disagree ($c_acct)"
pass "$P: C<->guests closes exactly: $c_acct"

# ---- 2. the switch killed under traffic and restarted -----------------------
P=switch-kill
ping_start pcg2 c "${IP[g]}"
wait_answers pcg2 50 30 || fail "$P: guest 2 does not answer C"
tkill=$(now)
kill -KILL "$vs"
reap "$vs"
ping_stop "$pcg2"
start_switch s2
# C's tap is a new device: a new ping from C, and the time from the kill to
# its first answer.
ping_start pcg3 c "${IP[g]}"
wait_for "$swerr" "vhu0: front-end connected" "$resume_max" || fail "$P: QEMU did not reconnect"
wait_answers pcg3 1 "$resume_max" || fail "$P: no traffic between C and the guest through the restarted switch"
read -r _ _ first _ < <(ping_stats pcg3)
took=$(awk -v a="$first" -v b="$tkill" 'BEGIN { printf "%.1f", a - b }')
awk -v t="$took" -v m="$resume_max" 'BEGIN { exit !(t <= m) }' ||
	fail "$P: traffic resumed only ${took}s after the kill (bound ${resume_max}s)"
wait_answers pcg3 100 30 || fail "$P: traffic with the guest did not keep going after the restart"
kill -0 "$gpid" 2>/dev/null || fail "$P: QEMU died with the switch"
# One connection, kept: no reconnect loop.
n=$(grep -c "vhu0: front-end \(connected\|disconnected\)" "$swerr")
[ "$n" = 1 ] || fail "$P: the guest's connection to the new switch flapped ($n connects/disconnects)"
pass "$P: QEMU reconnected; C<->guest traffic resumed ${took}s after the kill (bound ${resume_max}s)"
ping_stop "$pcg3"
# The guest is no longer needed: one core less busy for the passes left.
kill -KILL "$gpid"
reap "$gpid"
wait_for "$swerr" "vhu0: front-end disconnected" 10 || fail "$P: the switch did not see the guest go"

# ---- 3. a tap deleted from under the switch ---------------------------------
P=tap-gone
settle base3
ping_start pab a "${IP[b]}"
ping_start ped e "${IP[d]}"
wait_answers ped 100 30 || fail "$P: D does not answer E"
tdel=$(now)
ip -n "${NS[d]}" link del "${TAP[d]}" || fail "$P: cannot delete ${TAP[d]}"
live_taps="a b c e f"
wait_for "$swerr" "${TAP[d]}: tap ${TAP[d]}[: ].*link down" 10 || fail "$P: no reason logged for ${TAP[d]}"
wait_for "$swerr" "${TAP[d]}: link down" 10 || fail "$P: ${TAP[d]} did not go down"
# E keeps sending to D: every frame must be counted.
end=$((SECONDS + 10))
until load_snap now && [ "$(sd base3 now "${TAP[d]}" port_down)" -gt 0 ]; do
	[ $SECONDS -lt $end ] || fail "$P: frames for the deleted tap are not counted as port_down"
	sleep 0.2
done
# No spinning on the dead fd: CPU over two seconds, with both flows going.
cpu=$(cpu_pct "$vs")
[ "$cpu" -lt 50 ] || fail "$P: the switch spins after the deletion (${cpu}% CPU)"
pass "$P: deletion logged ($(grep -o "tap ${TAP[d]}: [^;]*" "$swerr" | head -1)), port down, frames for it counted, switch at ${cpu}% CPU"
steady_check "$P" pab "$tdel"
ping_stop "$pab"
ping_stop "$ped"
settle p3
check_flow "$P" base3 p3 a b 1
pass "$P: A<->B kept going (longest silence ${steady_gap}s, $steady_n answers) and closes exactly: $acct"
# VLAN 30: E's kernel against the switch, and the switch's conservation
# (D's kernel counters went with the device).
rx=$(( $(sd base3 p3 "${TAP[e]}" rx_packets) + $(sd base3 p3 "${TAP[d]}" rx_packets) ))
tx=$(( $(sd base3 p3 "${TAP[e]}" tx_packets) + $(sd base3 p3 "${TAP[d]}" tx_packets) ))
dr=$(( $(sdrops base3 p3 "${TAP[e]}") + $(sdrops base3 p3 "${TAP[d]}") ))
e_acct="E sent $(kd base3 p3 e txp), switch rx from E $(sd base3 p3 "${TAP[e]}" rx_packets) from D $(sd base3 p3 "${TAP[d]}" rx_packets); delivered to D $(sd base3 p3 "${TAP[d]}" tx_packets), to E $(sd base3 p3 "${TAP[e]}" tx_packets) (E received $(kd base3 p3 e rxp)); drops: ${TAP[d]}$(sdrops_list base3 p3 "${TAP[d]}"), ${TAP[e]}$(sdrops_list base3 p3 "${TAP[e]}"); ${TAP[d]} write_errors $(sd base3 p3 "${TAP[d]}" be_write_errors)"
[ "$(kd base3 p3 e txp)" = "$(sd base3 p3 "${TAP[e]}" rx_packets)" ] &&
	[ "$(kd base3 p3 e rxp)" = "$(sd base3 p3 "${TAP[e]}" tx_packets)" ] ||
	fail "$P: E's kernel and the switch disagree ($e_acct)"
if [ "$rx" != $((tx + dr)) ]; then
	# A write the kernel refused is counted by the tap backend as a drop
	# (port_down) after the core counted it delivered (tx_packets): say so
	# when that is the difference.
	we=$(sd base3 p3 "${TAP[d]}" be_write_errors)
	[ "$((tx + dr - rx))" = "$we" ] && [ "$we" != 0 ] &&
		e_acct+="; the difference is the $we frame(s) whose write to the deleted tap failed: counted both delivered and dropped"
	fail "$P: VLAN 30 does not close: received $rx, delivered $tx, dropped $dr ($e_acct)"
fi
pass "$P: E<->D closes exactly: $e_acct"

# ---- 4. a front-end that stops posting receive buffers ----------------------
P=stuck
mkfifo "$work/stuck.in"
dpdk-testpmd -l 0,1 --main-lcore 0 --file-prefix "hsf-$id-stuck" --no-pci -m 256 \
	--single-file-segments --iova-mode=va \
	--vdev "net_virtio_user0,path=$work/stuck.sock,queues=1,mac=${MAC[s]}" \
	-- -i --forward-mode=rxonly --nb-cores=1 <"$work/stuck.in" >"$work/stuck.log" 2>&1 &
tp=$!
pids+=("$tp")
exec 7>"$work/stuck.in"
echo start >&7
wait_for "$swerr" "vhu1: link up" 60 || fail "$P: testpmd did not come up"
# Ready once a frame reaches it (testpmd restarts its rings while it sets
# the port up: the link goes up, down and up again).
end=$((SECONDS + 30))
until load_snap now && [ "${S[now.vhu1.tx_packets]:-0}" -gt 0 ]; do
	[ $SECONDS -lt $end ] || fail "$P: testpmd gets no frames"
	send_frames f "${MAC[s]}" 1
	sleep 0.3
done
settle base4
# testpmd's count at base4 (the first RX-packets line in its log, which
# it writes at exit, its output being block-buffered; the forward
# statistics of its stop come after): what it receives from here is
# compared with what the switch delivers from here. A readiness probe
# delivered while testpmd was still restarting its rings (its link goes
# up, down and up as it starts) is lost with the ring by testpmd and must
# not count against the switch. Nothing is sent to it until it has read
# the command (a second is plenty for its prompt).
printf 'show port stats 0\n' >&7
sleep 1
ping_start pab a "${IP[b]}"
# n1 frames while it polls: all delivered.
n1=200 n2=1500 n3=300
send_frames f "${MAC[s]}" $n1
end=$((SECONDS + 10))
until load_snap now && [ $(( ${S[now.vhu1.tx_packets]:-0} - ${S[base4.vhu1.tx_packets]:-0} )) -ge $n1 ]; do
	[ $SECONDS -lt $end ] || fail "$P: testpmd did not get the first $n1 frames"
	sleep 0.2
done
tstop=$(now)
kill -STOP "$tp"
send_frames f "${MAC[s]}" $n2
settle p4a
# While it is stopped: sent = delivered into its ring + dropped (rx_no_buffer)
# + waiting in the switch's backlog (at most 256 frames by default).
fsent=$(kd base4 p4a f txp)
fin=$(sd base4 p4a "${TAP[f]}" rx_packets)
fdel=$(sd base4 p4a vhu1 tx_packets)
fnob=$(sd base4 p4a vhu1 rx_no_buffer)
fdrop=$(( $(sdrops base4 p4a vhu1) + $(sdrops base4 p4a "${TAP[f]}") ))
held=$((fin - fdel - fdrop))
stall="F sent $fsent, switch rx $fin, delivered $fdel, rx_no_buffer $fnob, other drops $((fdrop - fnob)), held $held"
[ "$fsent" = $((n1 + n2)) ] && [ "$fin" = "$fsent" ] || fail "$P: F's frames did not all reach the switch ($stall)"
[ "$fnob" -gt 0 ] || fail "$P: no rx_no_buffer drops for the stopped front-end ($stall)"
[ "$held" -gt 0 ] && [ "$held" -le 256 ] || fail "$P: backlog of $held frames: not within 1..256 ($stall)"
[ "$fdrop" = "$fnob" ] || fail "$P: drops other than rx_no_buffer ($stall)"
pass "$P: testpmd stopped: its ring filled, $held frames backlogged, $fnob counted rx_no_buffer ($stall)"
kill -CONT "$tp"
# The backlog drains once it posts buffers again.
end=$((SECONDS + 15))
until settle p4b && [ "$(sd base4 p4b "${TAP[f]}" rx_packets)" = $(( $(sd base4 p4b vhu1 tx_packets) + $(sdrops base4 p4b vhu1) + $(sdrops base4 p4b "${TAP[f]}") )) ]; do
	[ $SECONDS -lt $end ] || fail "$P: the backlog did not drain after SIGCONT"
done
[ "$(sd p4a p4b vhu1 tx_packets)" = "$held" ] && [ "$(sdrops p4a p4b vhu1)" = 0 ] ||
	fail "$P: after SIGCONT $(sd p4a p4b vhu1 tx_packets) frames delivered, $(sdrops p4a p4b vhu1) dropped; $held were held"
pass "$P: after SIGCONT the $held backlogged frames were delivered"
send_frames f "${MAC[s]}" $n3
end=$((SECONDS + 10))
until load_snap now && [ $(( ${S[now.vhu1.tx_packets]:-0} - ${S[p4b.vhu1.tx_packets]:-0} )) -ge $n3 ]; do
	[ $SECONDS -lt $end ] || fail "$P: testpmd did not get the $n3 frames sent after it resumed"
	sleep 0.2
done
steady_check "$P" pab "$tstop"
ping_stop "$pab"
printf 'stop\nquit\n' >&7
exec 7>&-
wait_exit "$tp" 30 || fail "$P: testpmd did not quit"
settle p4
check_flow "$P" base4 p4 a b 1
pass "$P: A<->B kept going (longest silence ${steady_gap}s, $steady_n answers) and closes exactly: $acct"
got0=$(grep -o 'RX-packets: *[0-9]*' "$work/stuck.log" | sed -n 1p | grep -o '[0-9]*$')
got1=$(grep -o 'RX-packets: *[0-9]*' "$work/stuck.log" | sed -n 2p | grep -o '[0-9]*$')
got=
[ -n "$got0" ] && [ -n "$got1" ] && got=$((got1 - got0))
fsent=$(kd base4 p4 f txp)
fin=$(sd base4 p4 "${TAP[f]}" rx_packets)
fdel=$(sd base4 p4 vhu1 tx_packets)
fdrop=$(( $(sdrops base4 p4 vhu1) + $(sdrops base4 p4 "${TAP[f]}") ))
# testpmd's count since base4 (its total at the stop, less its count then).
stuck_acct="F sent $fsent, switch rx $fin, delivered $fdel, dropped $fdrop (vhu1$(sdrops_list base4 p4 vhu1)); testpmd received ${got:-?}"
[ "$fsent" = $((n1 + n2 + n3)) ] && [ "$fin" = "$fsent" ] && [ "$fin" = $((fdel + fdrop)) ] &&
	[ "${got:-x}" = "$fdel" ] || fail "$P: F->testpmd does not close: $stuck_acct"
pass "$P: F->testpmd closes exactly: $stuck_acct"

# ---- 5. connection churn under load ------------------------------------------
# Six short-lived testpmd front-ends on vhu2 (alone in VLAN 50: every frame
# it gets is flooded to nobody and counted as no_route), each transmitting
# at full speed (txonly, its ring full all the time), split and packed rings
# in turn. The first three stop transmitting, and quit once the switch's
# counters have settled: every frame testpmd counts as sent must have been
# taken from the ring by then (none stranded in a full ring). The last three
# are killed (SIGKILL) in the middle of their traffic.
P=churn
cycles=6
settle base5
ping_start pab a "${IP[b]}"
tchurn=$(now)
c0=$(grep -c "vhu2: front-end connected" "$swerr")
d0=$(grep -c "vhu2: front-end disconnected" "$swerr")
prev=base5 q_acct=
for i in $(seq $cycles); do
	pre=hsf-$id-churn$i
	mkfifo "$work/churn$i.in"
	dpdk-testpmd -l 0,1 --main-lcore 0 --file-prefix "$pre" --no-pci -m 256 \
		--single-file-segments --iova-mode=va \
		--vdev "net_virtio_user0,path=$work/churn.sock,queues=1,mac=${MAC[k]},packed_vq=$((i % 2))" \
		-- -i --forward-mode=txonly --eth-peer=0,02:00:00:00:32:99 --nb-cores=1 \
		<"$work/churn$i.in" >"$work/churn$i.log" 2>&1 &
	cp=$!
	pids+=("$cp")
	exec 8>"$work/churn$i.in"
	wait_for "$swerr" "vhu2: front-end connected" 30 $((c0 + i)) || fail "$P: front-end $i did not connect"
	load_snap now
	rx0=${S[now.vhu2.rx_packets]:-0}
	echo start >&8
	# Transmitting: the switch's counters show its frames.
	end=$((SECONDS + 20))
	until load_snap now && [ "${S[now.vhu2.rx_packets]:-0}" -gt "$rx0" ]; do
		[ $SECONDS -lt $end ] || fail "$P: no frames from front-end $i"
		sleep 0.1
	done
	if [ "$i" -le 3 ]; then
		echo stop >&8
		settle "c$i"
		echo quit >&8
		exec 8>&-
		wait_exit "$cp" 20 || fail "$P: front-end $i did not quit"
		t=$(grep -A3 'Forward statistics for port 0' "$work/churn$i.log" |
			sed -n 's/.*TX-packets: *\([0-9]*\).*/\1/p' | head -1)
		r=$(sd "$prev" "c$i" vhu2 rx_packets)
		d=$(sdrops "$prev" "c$i" vhu2)
		q_acct+=" front-end $i (${ring[$((i % 2))]}) sent ${t:-?}, switch received $r, dropped $d (vhu2$(sdrops_list "$prev" "c$i" vhu2));"
		[ -n "$t" ] && [ "$t" -gt 0 ] && [ "$r" = "$t" ] && [ "$d" = "$r" ] ||
			fail "$P: front-end $i does not close:$q_acct"
		prev=c$i
	else
		kill -KILL "$cp"
		reap "$cp"
		exec 8>&-
	fi
	rm -rf /dev/hugepages/"$pre"* /var/run/dpdk/"$pre"
	wait_for "$swerr" "vhu2: front-end disconnected" 10 $((d0 + i)) ||
		fail "$P: the switch did not see front-end $i go"
	# The steady flow is still answered while the front-ends come and go.
	n=$(ping_answers pab)
	wait_answers pab $((n + 20)) 5 || fail "$P: the A->B flow stopped during cycle $i"
done
pass "$P: $cycles front-ends connected, transmitted and went away (split and packed rings; 3 quitting, 3 killed), A<->B answered in every cycle"
pass "$P: the quitting front-ends close exactly:$q_acct"
steady_check "$P" pab "$tchurn"
ping_stop "$pab"
settle p5
check_flow "$P" base5 p5 a b 1
pass "$P: A<->B kept going (longest silence ${steady_gap}s, $steady_n answers) and closes exactly: $acct"
# The killed ones: no count of their own; the switch counts every frame it
# took from them as dropped, and saw every connection come and go.
kill_rx=$(sd "$prev" p5 vhu2 rx_packets)
kill_dr=$(sdrops "$prev" p5 vhu2)
conn=$(sd base5 p5 vhu2 be_connects) disc=$(sd base5 p5 vhu2 be_disconnects)
k_acct="the switch received $kill_rx from the 3 killed front-ends and dropped $kill_dr (vhu2$(sdrops_list "$prev" p5 vhu2)); connects $conn, disconnects $disc"
[ "$kill_rx" -gt 0 ] && [ "$kill_rx" = "$kill_dr" ] || fail "$P: does not close: $k_acct"
[ "$conn" = $cycles ] && [ "$disc" = $cycles ] || fail "$P: backend counters disagree: $k_acct"
pass "$P: $k_acct"
# Nothing left running: the switch idles once the last front-end is gone.
cpu=$(cpu_pct "$vs")
[ "$cpu" -lt 20 ] || fail "$P: the switch spins after the churn (${cpu}% CPU, no traffic)"
pass "$P: the switch is idle afterwards (${cpu}% CPU)"

# ---- the switch stops cleanly ------------------------------------------------
kill -INT "$vs"
wait_exit "$vs" 20 || fail "the switch did not stop on SIGINT"
vs=
[ "$rc" = 0 ] || fail "the switch exited with status $rc (sanitizer report in its log?)"
# A sanitizer build reports into the log; the first switch was killed, so
# its exit status says nothing.
if grep -E "ERROR: (Address|Leak|Thread)Sanitizer|runtime error:" "$work"/s1.log "$work"/s2.log; then
	fail "sanitizer report in the switch's log"
fi
if grep -E "^port .*(bad_descriptor|bad_offload|copy_error)" "$work"/s1.out "$swout" | tail -3 | grep .; then
	fail "unexpected drops"
fi
pass "the switch stopped cleanly: exit status 0, no sanitizer report, no bad_descriptor/bad_offload/copy_error drops"
echo "$passed passed, 0 failed"
