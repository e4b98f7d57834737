# guests.sh - what the QEMU guest tests share (sourced, not run):
#   guest_kit          skips (77) without QEMU; builds the guest's
#                      initramfs into $work and sets $kernel
#   fail MSG...        prints MSG and the tail of every log in $work, exits 1
#   wait_for FILE PATTERN SECONDS
#   stream_intact NAME SENDER RECEIVER BYTES
#                      fails unless the receiver's HS-RECEIVED matches the
#                      size and md5 the sender's HS-DATA announced
#   guest_qemu NAME CPUS CHARDEV NETDEV_OPTS DEVICE_OPTS APPEND [QEMU_ARG...]
#                      starts a guest of the kit in the background ($! and
#                      pids+=): 256 MiB of shared memfd memory, one
#                      vhost-user netdev on CHARDEV (id c0), the console in
#                      $work/NAME.log; its threads named (debug-threads=on,
#                      as libvirt asks: the switch's vCPU sampler finds
#                      them); HS_GUEST_ACCEL picks the accelerator (tcg).
#                      An empty CHARDEV makes NETDEV_OPTS the whole -netdev
#                      (another back end: tap,id=n0,...)
#   guest_work PREFIX  makes $work (/tmp/PREFIX.XXXXXX) and pids=(); on exit
#                      kills every pid in pids and removes $work
#   sw_counter LOG PORT NAME
#                      the last value of counter NAME on PORT's line of the
#                      vswitch example's --stats output in LOG
# The caller sets $src (the source tree), and $work unless guest_work does.

guest_work() {
	work=$(mktemp -d "/tmp/$1.XXXXXX")
	pids=()
	trap 'for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	      wait 2>/dev/null; rm -rf "$work"' EXIT
}

sw_counter() {
	grep "^port $2: " "$1" | tail -1 | grep -o " $3 [0-9]*" | tail -1 | cut -d' ' -f3
}

guest_kit() {
	command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
	kernel=$("$src/tests/interop/build_guest.sh" "$work/initrd.gz" 2>"$work/guest.err") ||
		{ echo "SKIP: cannot build guest: $(tr '\n' ' ' <"$work/guest.err")"; exit 77; }
}

fail() {
	local f
	echo "FAIL: $*"
	for f in "$work"/*.log "$work"/*.qemu; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 25 "$f"; }
	done
	echo "FAIL: $*"
	exit 1
}

wait_for() {
	local end=$((SECONDS + $3))
	while [ $SECONDS -lt $end ]; do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}

stream_intact() {
	local sent got
	sent=$(grep -o 'HS-DATA [0-9a-f]*' "$2" | cut -d' ' -f2)
	got=$(grep -o 'HS-RECEIVED [0-9]* [0-9a-f]*' "$3")
	[ "$got" = "HS-RECEIVED $4 $sent" ] || fail "$1: stream corrupted: sent $sent, $got"
}

guest_qemu() {
	local name=$1 cpus=$2 chr=$3 net=$4 dev=$5 append=$6 nd
	shift 6
	if [ -n "$chr" ]; then
		nd=(-chardev "$chr" -netdev "vhost-user,id=n0,chardev=c0$net")
	else
		nd=(-netdev "$net") # another back end, e.g. tap,id=n0,...
	fi
	qemu-system-x86_64 -name "$name,debug-threads=on" -accel "${HS_GUEST_ACCEL:-tcg}" \
		-m 256 -smp "$cpus" -display none -monitor none -no-reboot \
		-kernel "$kernel" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet $append" \
		-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
		"${nd[@]}" -device "virtio-net-pci,netdev=n0$dev" "$@" \
		-serial "file:$work/$name.log" >"$work/$name.qemu" 2>&1 &
	pids+=("$!")
}
