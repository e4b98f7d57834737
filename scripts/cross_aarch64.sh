#!/usr/bin/env bash
# The library on arm64: cross-compiles it with Debian's aarch64 toolchain
# (warnings as errors) and runs its unit tests under qemu-user
# (qemu-aarch64). Installs what is missing first: the arm64 architecture
# in dpkg, gcc-aarch64-linux-gnu, qemu-user and the :arm64 -dev packages
# of libuv, liburcu, check, libmnl and liburing.
#   scripts/cross_aarch64.sh [BUILD_DIR] [--build-only]   (default build-aarch64)
# Ends with ctest's summary; exit status is ctest's. scripts/test.sh runs
# it with --build-only and then the tests itself (to count them).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-aarch64}
build_only=${2:-}
pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libuv1-dev:arm64
      liburcu-dev:arm64 check:arm64 libmnl-dev:arm64 liburing-dev:arm64 pkg-config cmake)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "installing: ${missing[*]}"
  "${sudo[@]}" dpkg --add-architecture arm64
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update >/dev/null
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null || exit 1
fi
# The library and its unit tests only: the tools, examples and benchmarks
# need x86 peers (QEMU guests, DPDK) that are not part of this check.
cmake -S . -B "$build" -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DHS_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHS_BUILD_TOOLS=OFF -DHS_BUILD_EXAMPLES=OFF \
  -DHS_BUILD_BENCH=OFF >/dev/null || exit 1
cmake --build "$build" -j"$(nproc)" || exit 1
readelf -h "$build/tests/test_api" | grep -q "AArch64" || { echo "not an arm64 build"; exit 1; }
[ "$build_only" = --build-only ] && exit 0
# Every unit suite (the tap suite too: the kernel's tun device works
# through the emulator); link is an x86 install check.
cd "$build" && ctest --output-on-failure --timeout 900 -E '^link$'
