#!/usr/bin/env bash
# Fuzzing: builds the libFuzzer targets with clang (ASan + UBSan) and runs
# each for a bounded time from its seed corpus, then the process-level
# fuzzer of the vhost-user socket against the ASan-built vswitch.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#     SECONDS_PER_TARGET  default 45 (scripts/test.sh, and so CI, runs 30);
#                         the long run is scripts/fuzz.sh 3600 (an hour each)
#     TARGET              virtq vu_msg frame tap vxlan uplink conf ctl xen_tx xen_xs
#                         vu_session (default: all; the last is the process fuzzer)
# Every target's corpus grows in build-fuzz/corpus/NAME (the seeds in
# tests/fuzz/corpus/NAME are never written); a crash is kept as
# build-fuzz/crash-NAME-* with the command that reproduces it, and makes
# the script fail. The libFuzzer targets run one a CPU at a time, the
# process fuzzer after them. One line per target: executions, rate, result.
# Ends with "fuzz: N targets, N executions, N crashes".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
secs=${1:-45}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(virtq vu_msg frame tap vxlan uplink conf ctl xen_tx xen_xs vu_session)
jobs=$(nproc)

missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "fuzz: cannot install ${missing[*]}"; exit 1; }
fi

CC=clang cmake -S . -B build-fuzz -DHS_FUZZ=ON -DHS_WERROR=ON -DHS_BUILD_TESTS=OFF \
  -DHS_BUILD_BENCH=OFF -DHS_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build build-fuzz -j"$jobs" >build-fuzz/build.log 2>&1 ||
  { tail -n 30 build-fuzz/build.log; echo "fuzz: build failed"; exit 1; }

# One libFuzzer target a CPU at a time (each fuzzes on one thread, so a
# target gets the same executions as alone while CI waits half as long);
# the process fuzzer runs last, alone, as its vswitch polls with workers.
# Each target's lines go to build-fuzz/result-NAME, printed in order.
fuzz_target() { # name -> build-fuzz/result-NAME, exit 1 on a crash
  local t=$1 bin=build-fuzz/tests/fuzz/fuzz_$1 res=build-fuzz/result-$1
  [ -x "$bin" ] || { echo "$t: no such target" >"$res"; return 1; }
  local corpus=build-fuzz/corpus/$t log=build-fuzz/fuzz-$t.log
  mkdir -p "$corpus"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/crash-$t-" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  local rc=$?
  local n r
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  r=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "executions ${n:-0}" >"$res.n"
  if [ "$rc" = 0 ]; then
    echo "$t: ${n:-?} executions in ${secs} s (${r:-?}/s), no crash" >"$res"
    return 0
  fi
  {
    echo "$t: CRASH after ${n:-?} executions"
    grep -E "ERROR|SUMMARY|fuzz_|==[0-9]+==" "$log" | head -n 20
    for a in build-fuzz/crash-"$t"-*; do
      [ -e "$a" ] && echo "  reproduce: $bin $a"
    done
  } >"$res"
  return 1
}

total=0 crashes=0 ran=0 session=0 running=0
lib=()
for t in "${targets[@]}"; do
  if [ "$t" = vu_session ]; then session=1; else lib+=("$t"); fi
done
for t in "${lib[@]}"; do
  rm -f "build-fuzz/result-$t" "build-fuzz/result-$t.n"
  if ((running >= jobs)); then wait -n; running=$((running - 1)); fi
  fuzz_target "$t" &
  running=$((running + 1))
done
wait
for t in "${lib[@]}"; do
  ran=$((ran + 1))
  if [ -r "build-fuzz/result-$t" ]; then cat "build-fuzz/result-$t"; else echo "$t: no result"; fi
  grep -q ", no crash$" "build-fuzz/result-$t" 2>/dev/null || crashes=$((crashes + 1))
  n=$(sed -n 's/^executions //p' "build-fuzz/result-$t.n" 2>/dev/null)
  total=$((total + ${n:-0}))
done
if ((session)); then
  # The process-level fuzzer: a real vswitch (ASan build) with polling
  # workers, hostile sessions on one socket, a well-behaved client on
  # another checked after each session.
  vs=build-asan/examples/vswitch
  if [ ! -x "$vs" ]; then
    cmake -S . -B build-asan -DHS_WERROR=ON -DHS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
      -DHS_BUILD_BENCH=OFF >/dev/null && cmake --build build-asan -j"$jobs" >/dev/null 2>&1
  fi
  sess=build-asan/tests/vu_session
  ran=$((ran + 1))
  if [ ! -x "$sess" ] || [ ! -x "$vs" ]; then
    echo "vu_session: not built"; crashes=$((crashes + 1))
  else
    seed=${FUZZ_SEED:-$(date +%s)}
    out=$(ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$sess" --vswitch "$vs" --fd-types \
            --seconds "$secs" --seed "$seed" 2>&1)
    rc=$?
    echo "$out" | tail -n 1
    if [ "$rc" != 0 ]; then
      echo "$out" | tail -n 60
      echo "vu_session: FAILED (reproduce: $sess --vswitch $vs --seed $seed)"
      crashes=$((crashes + 1))
    fi
  fi
fi
echo "fuzz: $ran targets, $total executions, $crashes crashes"
[ "$crashes" = 0 ]
