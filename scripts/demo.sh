#!/usr/bin/env bash
# The main job: installs what is missing, builds hyperswitch, runs the
# embedding example (frames switched between in-memory ports, counters
# printed), a short single-core benchmark, and hyperswitchd with two
# network namespaces pinging through it (scripts/daemon_demo.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

echo
echo "== example: examples/embed.c =="
./build/examples/embed
echo
echo "== benchmark: hs-bench single --quick (full run: see docs/benchmarks.md) =="
./build/bench/hs-bench single --quick --ports 2 --json build/bench-single-quick.json
echo "(machine-readable results: build/bench-single-quick.json)"
echo
echo "== hyperswitchd and hsctl: two namespaces pinging through the daemon (docs/hyperswitchd.md) =="
scripts/daemon_demo.sh build
