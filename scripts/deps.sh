#!/usr/bin/env bash
# Installs the Debian 12 packages hyperswitch needs, if any is missing
# (root, or sudo, needed then).
#   deps.sh         building and the demo
#   deps.sh test    + the test suite's peers: valgrind, DPDK's testpmd,
#                   QEMU, a Debian guest kernel and busybox, iproute2,
#                   ping and iperf3 (namespaces), clang with libFuzzer, FRR
#                   (zebra and bgpd for the EVPN test)
#   deps.sh bench   + the benchmarks' peers: Open vSwitch with DPDK, iperf3
set -euo pipefail

pkgs=(build-essential cmake pkg-config libuv1-dev liburcu-dev check libconfig-dev libjansson-dev
      libpcap-dev libmnl-dev liburing-dev
      libsystemd-dev libmicrohttpd-dev libxen-dev libbpf-dev libxdp-dev clang)
case "${1:-build}" in
build) ;;
test) pkgs+=(valgrind dpdk-dev qemu-system-x86 linux-image-amd64 busybox-static cpio
             iproute2 iputils-ping iperf3 jq python3 python3-prometheus-client tcpdump ethtool clang
             libclang-rt-14-dev frr) ;;
bench) pkgs+=(dpdk-dev openvswitch-switch-dpdk iperf3 iproute2 iputils-ping python3 linux-perf) ;;
*) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
((${#missing[@]})) || exit 0

echo "installing: ${missing[*]}"
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "run as root to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get -o Acquire::Retries=3 update
"${sudo[@]}" apt-get -o Acquire::Retries=3 install -y --no-install-recommends "${missing[@]}"
