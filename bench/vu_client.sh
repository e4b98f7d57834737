# Sourced by bench/vhost_user.sh and bench/vhost_cost.sh: the testpmd
# client both drive a switch with, so that a count and a rate are taken
# with the same traffic.

# vu_hugepages MIN_FREE PAGES: at least MIN_FREE free 2 MiB pages (else
# PAGES in all), hugetlbfs on /dev/hugepages.
vu_hugepages() {
	if [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -lt "$1" ]; then
		echo "$2" > /proc/sys/vm/nr_hugepages
	fi
	mkdir -p /dev/hugepages
	mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
}

# vu_wire_args DIR PREFIX: the arguments of testpmd's io-forward wire
# (its vhost PMD, forwarding on CPU 1) serving DIR/s0 and DIR/s1, one
# word each (DIR without spaces): the reference both scripts measure.
vu_wire_args() {
	echo "-l 0,1 --main-lcore 0 --file-prefix $2 --no-pci -m 512" \
		"--vdev net_vhost0,iface=$1/s0,queues=1 --vdev net_vhost1,iface=$1/s1,queues=1" \
		"-- --forward-mode=io --nb-cores=1 --stats-period 1 --burst=32"
}

# vu_switch_start DIR BUILD [ARGS]: BUILD's vswitch example (one worker,
# CPU 1) serving DIR/s0 and DIR/s1, with switch options ARGS (words); its
# PID in vu_sw, its output in DIR/sw.log; returns once both sockets are
# there (non-zero after 30 s without).
vu_switch_start() {
	rm -f "$1/s0" "$1/s1"
	# shellcheck disable=SC2086 # options: words, by design
	taskset -c 1 "$2/examples/vswitch" --workers 1 ${3:-} --vhost-user "$1/s0" \
		--vhost-user "$1/s1" >"$1/sw.log" 2>&1 &
	# shellcheck disable=SC2034 # read by the caller
	vu_sw=$!
	vu_wait_socks "$1"
}

# vu_wait_socks DIR: until DIR/s0 and DIR/s1 are sockets (30 s at most)
vu_wait_socks() {
	local end=$((SECONDS + 30))
	until [ -S "$1/s0" ] && [ -S "$1/s1" ]; do
		[ $SECONDS -lt $end ] || { echo "no sockets in $1 after 30 s" >&2; return 1; }
		sleep 0.2
	done
}

# vu_client_pid PREFIX: the PID of the testpmd run with --file-prefix
# PREFIX (vu_client's, not a wire's), once it is there (5 s at most)
vu_client_pid() {
	local p
	for _ in $(seq 1 100); do
		for p in $(pgrep -x dpdk-testpmd); do
			if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--file-prefix $1 "; then
				echo "$p"
				return 0
			fi
		done
		sleep 0.05
	done
	echo "no testpmd with file prefix $1" >&2
	return 1
}

# vu_sleep_since T0 SECS: sleeps until SECS seconds after T0 (date +%s%N)
vu_sleep_since() {
	sleep "$(awk -v t0="$1" -v s="$2" -v now="$(date +%s%N)" \
		'BEGIN {d = s - (now - t0) / 1e9; print (d > 0 ? d : 0)}')"
}

# vu_stop PID...: SIGINT to each PID given (empty ones skipped), then
# waits for the caller's children
vu_stop() {
	local p
	for p in "$@"; do
		[ -z "$p" ] || kill -INT "$p" 2>/dev/null
	done
	wait 2>/dev/null
}

# vu_client DIR SIZE SHAPE SECS PREFIX [IDLE]: one dpdk-testpmd, one forwarding
# core on CPU 0, two virtio-user ports on DIR/s0 and DIR/s1, sends SIZE-byte
# frames of SHAPE for SECS seconds and prints each port's statistics once
# a second, port 0 then port 1 (output in DIR/cl.log). Shapes:
#   flood    flowgen: this DPDK sends every frame from one fixed MAC to
#            another on both ports (a learning switch floods them all)
#   unicast  mac mode, 64 bursts per port put in at the start
#   closed   mac mode, 4 bursts per port in flight
#   closed-flood  as closed, but both ports send to a MAC no port has
#            (02:00:00:00:00:99): every frame flooded, sources stable
# In mac mode a frame taken on one port leaves by the other, from that
# port's MAC to its peer's; "start tx_first N" puts N bursts in. IDLE
# (seconds, default 0): after the traffic stops, the ports stay
# connected that long before testpmd quits (vhost_cost.sh --peer iofwd
# counts an empty poll there). VU_CLIENT_ARGS: more testpmd options, one
# word each (e.g. --mbcache=512, vhost_user.sh --client-args).
vu_client() {
	local dir=$1 size=$2 shape=$3 secs=$4 prefix=$5 idle=${6:-0} mode start
	local peer0=02:00:00:00:00:02 peer1=02:00:00:00:00:01
	case $shape in
	flood) mode=flowgen start=start ;;
	unicast) mode=mac start="start tx_first 64" ;;
	closed) mode=mac start="start tx_first 4" ;;
	closed-flood) mode=mac start="start tx_first 4" peer0=02:00:00:00:00:99 peer1=02:00:00:00:00:99 ;;
	*) echo "unknown shape $shape" >&2; return 2 ;;
	esac
	local eal=(-l 1,0 --main-lcore 1 --file-prefix "$prefix" --no-pci -m 512
		--single-file-segments --iova-mode=va
		--vdev "net_virtio_user0,path=$dir/s0,queues=1,mac=02:00:00:00:00:01"
		--vdev "net_virtio_user1,path=$dir/s1,queues=1,mac=02:00:00:00:00:02")
	local app=("--eth-peer=0,$peer0" "--eth-peer=1,$peer1"
		--nb-cores=1 --burst=32 --txpkts="$size")
	# shellcheck disable=SC2206 # words, by design
	app+=(${VU_CLIENT_ARGS:-})
	{
		sleep 3
		echo "$start"
		for _ in $(seq 1 "$secs"); do sleep 1; echo "show port stats all"; done
		echo stop
		sleep "$idle"
		echo quit
	} | timeout -s INT $((secs + idle + 40)) dpdk-testpmd "${eal[@]}" -- -i --forward-mode=$mode \
		"${app[@]}" >"$dir/cl.log" 2>&1
}
