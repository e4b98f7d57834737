#!/usr/bin/env bash
# Installs the library into a temporary prefix and builds the example the
# way an outside program would: with nothing but
# `pkg-config --cflags --libs hyperswitch`, then with CMake's
# find_package(hyperswitch). Both programs must run.
#   tests/link_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$(find "$tmp/prefix" -name hyperswitch.pc -print -quit)
PKG_CONFIG_PATH=$(dirname "$pc")
export PKG_CONFIG_PATH
libdir=$(pkg-config --variable=libdir hyperswitch)

# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror "$src/examples/embed.c" \
  $(pkg-config --cflags --libs hyperswitch) -o "$tmp/embed"
LD_LIBRARY_PATH=$libdir "$tmp/embed" >"$tmp/out.txt"
grep -q "MACs learned" "$tmp/out.txt"
echo "pkg-config: built and ran against $(pkg-config --modversion hyperswitch)"

# Static linking needs the private dependencies too.
# shellcheck disable=SC2046
cc -std=c11 "$src/examples/embed.c" -o "$tmp/embed-static" \
  $(pkg-config --cflags hyperswitch) "$libdir/libhyperswitch.a" \
  $(pkg-config --libs --static hyperswitch | sed 's/-lhyperswitch//')
"$tmp/embed-static" >/dev/null
echo "pkg-config --static: built and ran"

cmake -S "$src/tests/link" -B "$tmp/consumer" -DEXAMPLE="$src/examples/embed.c" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/consumer/consumer" >/dev/null
echo "find_package(hyperswitch): built and ran"
