#!/usr/bin/env bash
# Builds the test guests' initramfs: busybox, the virtio-net modules of the
# installed Debian kernel, tests/interop/guest_init.sh as /init.
#   build_guest.sh OUT.cpio.gz   (prints the kernel to boot)
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
kver=
for d in /lib/modules/*-amd64; do [ -d "$d" ] && kver=${d##*/}; done
[ -n "$kver" ] || { echo "no Debian amd64 kernel" >&2; exit 1; }
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || { echo "no $kernel" >&2; exit 1; }
bb=$(command -v busybox)
file "$bb" 2>/dev/null | grep -q "statically linked" || [ -x /bin/busybox ] || { echo "no static busybox" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,dev,proc,sys,tmp,lib/modules}
cp /bin/busybox "$tmp/bin/busybox"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
	 failover net_failover virtio_net; do
	f=$(find "/lib/modules/$kver" -name "$m.ko*" | head -1)
	[ -n "$f" ] || { echo "module $m missing" >&2; exit 1; }
	case "$f" in
	*.xz) xz -dc "$f" > "$tmp/lib/modules/$m.ko" ;;
	*.zst) zstd -qdc "$f" > "$tmp/lib/modules/$m.ko" ;;
	*) cp "$f" "$tmp/lib/modules/$m.ko" ;;
	esac
done
cp "$here/guest_init.sh" "$tmp/init"
chmod +x "$tmp/init"
(cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
echo "$kernel"
