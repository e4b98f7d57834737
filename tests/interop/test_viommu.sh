#!/usr/bin/env bash
# Two real Linux guests behind a virtual IOMMU (QEMU's intel-iommu with a
# device IOTLB; virtio-net with iommu_platform=on, ats=on) on two
# vhost-user ports of the vswitch example: every ring and buffer address
# the switch sees is an IOVA it translates through the IOTLB QEMU keeps
# for it (misses asked on the back-end channel, invalidations as the
# guest unmaps). They ping each other (also fragmented) and move 1 MiB
# over TCP (md5 compared); the switch must have counted IOTLB misses and
# updates and seen no bad frame.
# Passes: the guest's IOMMU in its default lazy mode on split rings; in
# strict mode (every unmap invalidated at once) on packed rings, with a
# polling worker.
#   test_viommu.sh BUILD_DIR SOURCE_DIR [PASS...]   (KEEP=1: keep the work folder)
# QEMU 7.2 forwards invalidations to a vhost back-end only when the guest
# enabled ATS, which Linux does for a device behind a PCIe root port: the
# NIC sits behind one (on the root complex itself the back-end would keep
# stale translations: a QEMU bug fixed in 8.1).
# Exits 77 (skipped) when QEMU or a guest kernel is not installed.
set -uo pipefail
build=$1 src=$2
shift 2
vswitch=$build/examples/vswitch
[ -x "$vswitch" ] || { echo "SKIP: $vswitch not built"; exit 77; }
work=$(mktemp -d /tmp/hs-viommu.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
. "$src/tests/interop/guests.sh"
guest_kit

# guest NAME SOCKET MAC ROLE IP PEER (APPEND and DEV from the pass)
guest() {
	qemu-system-x86_64 -accel tcg -machine q35 -m 256 -smp 1 -display none -monitor none \
		-no-reboot -kernel "$kernel" -initrd "$work/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet intel_iommu=on$append hs.role=$4 hs.ip=$5 hs.peer=$6 hs.bytes=1048576" \
		-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
		-device intel-iommu,intremap=off,device-iotlb=on \
		-device pcie-root-port,id=rp1,bus=pcie.0,chassis=1 \
		-chardev "socket,id=c0,path=$2,reconnect=1" -netdev vhost-user,id=n0,chardev=c0 \
		-device "virtio-net-pci,bus=rp1,netdev=n0,mac=$3,vectors=0,iommu_platform=on,ats=on,disable-legacy=on$dev" \
		-serial "file:$work/$1.log" >"$work/$1.qemu" 2>&1 &
	pids+=("$!")
}

counter() { # PORT NAME: the last value the switch printed
	grep "^port $1 backend:" "$work/vswitch.log" | tail -n 1 | grep -oE "$2 [0-9]+" | cut -d' ' -f2
}

# run_pass NAME KERNEL_ARGS DEVICE_OPTS WORKERS
run_pass() {
	local name=$1 workers=$4 p
	append=$2 dev=$3
	rm -f "$work"/*.log "$work"/*.sock "$work"/*.qemu
	"$vswitch" --workers "$workers" --vhost-user "$work/a.sock" --vhost-user "$work/b.sock" \
		>"$work/vswitch.log" 2>&1 &
	local vs=$!
	pids+=("$vs")
	wait_for "$work/vswitch.log" "running" 10 || fail "$name: vswitch did not start"
	guest gb "$work/b.sock" 52:54:00:00:00:02 server 10.0.0.2 10.0.0.1
	guest ga "$work/a.sock" 52:54:00:00:00:01 client 10.0.0.1 10.0.0.2
	wait_for "$work/ga.log" "HS-PING-OK" 180 || fail "$name: guest a cannot ping b"
	wait_for "$work/ga.log" "HS-FRAG-OK" 60 || fail "$name: fragmented ping failed"
	wait_for "$work/gb.log" "HS-RECEIVED" 180 || fail "$name: TCP stream did not arrive"
	stream_intact "$name" "$work/ga.log" "$work/gb.log" 1048576
	kill -INT "$vs"
	wait "$vs" || fail "$name: the switch exited with status $? (sanitizer report in its log?)"
	if grep -E "^port .*(bad_src_mac|bad_descriptor|bad_offload|copy_error)" "$work/vswitch.log"; then
		fail "$name: bad frames: translations went stale"
	fi
	grep -q "broken_rings [1-9]" "$work/vswitch.log" && fail "$name: a ring broke"
	local misses updates inval
	misses=$(counter vhu0 iotlb_misses) updates=$(counter vhu0 iotlb_updates)
	inval=$(counter vhu0 iotlb_invalidates)
	[ "${misses:-0}" -gt 0 ] && [ "${updates:-0}" -gt 0 ] ||
		fail "$name: the switch never used the IOTLB (misses ${misses:-?}, updates ${updates:-?})"
	echo "$name: ping, fragmented ping and 1 MiB TCP ok behind the vIOMMU" \
	     "(vhu0: $misses misses, $updates updates, $inval invalidations)"
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	pids=()
}

passes=("$@")
[ ${#passes[@]} -gt 0 ] || passes=(lazy strict)
n=0
for p in "${passes[@]}"; do
	case $p in
	lazy) run_pass lazy "" "" 0 ;;
	strict) run_pass strict " iommu.strict=1" ",packed=on" 1 ;;
	*) echo "unknown pass $p"; exit 2 ;;
	esac
	n=$((n + 1))
done
echo "$n passed, 0 failed"
