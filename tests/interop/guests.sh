# guests.sh - what the QEMU guest tests share (sourced, not run):
#   guest_kit          skips (77) without QEMU; builds the guest's
#                      initramfs into $work and sets $kernel
#   fail MSG...        prints MSG and the tail of every log in $work, exits 1
#   wait_for FILE PATTERN SECONDS
#   stream_intact NAME SENDER RECEIVER BYTES
#                      fails unless the receiver's HS-RECEIVED matches the
#                      size and md5 the sender's HS-DATA announced
# The caller sets $work (its scratch folder) and $src (the source tree).

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
