#!/usr/bin/env bash
# bench/device.sh - the in-process benchmarks that two CPUs cannot show,
# packed here and run in one call on a machine with more cores (the lent
# `device` machine: 16 CPUs, not Debian, no packages of ours).
#
#   bench/device.sh pack --build DIR      (here) copies DIR's hs-bench with
#                                         every shared library it loads, the
#                                         dynamic loader included, to .device/
#   bench/device.sh run --out DIR [--seconds S] [--repeat N]
#                                         (there) runs the list below through
#                                         the carried loader (0.5 s, 1 run a
#                                         case by default); JSON and text into
#                                         DIR, summaries and the ablation and
#                                         fan-in rows on the console
#
# The list (docs/benchmarks.md, the sections named): the ablation with
# sleeping and with polling receivers (section 2), pairs and workers at
# 64 and 1518 bytes with sleeping and with polling receivers (section 3),
# and many senders to one port (section 5b). With the device tool:
#
#   run(command="bench/device.sh run --out $OUT", carry=[".device"], timeout_s=300)
#
# It took 30-40 s on this project's 2-CPU machine with --seconds 0.2-0.3;
# on 16 CPUs scaling and fan-in have more rows (not yet timed there).
# Rows that run one after another are of one build on one machine: compare
# them as ratios within the run, as everywhere in benchmarks.md.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
# a path given relative to where the script was called from
abspath() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }

pack() {
    local build=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --build) [ $# -ge 2 ] || usage; build=$(abspath "$2"); shift 2 ;;
            *) usage ;;
        esac
    done
    if [ -z "$build" ] || [ ! -x "$build/bench/hs-bench" ]; then
        echo "device.sh: no $build/bench/hs-bench" >&2; exit 1
    fi
    rm -rf .device
    mkdir -p .device/bin .device/lib
    cp "$build/bench/hs-bench" .device/bin/
    # every library the loader resolves, and the loader itself
    local libs
    libs=$(ldd "$build/bench/hs-bench")
    if grep -q "not found" <<<"$libs"; then
        echo "device.sh: ldd finds no file for some libraries:" >&2
        grep "not found" <<<"$libs" >&2; exit 1
    fi
    awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' <<<"$libs" |
        while read -r lib; do cp -L "$lib" .device/lib/; done
    [ -e .device/lib/ld-linux-x86-64.so.2 ] || { echo "device.sh: no loader found by ldd" >&2; exit 1; }
    # what was built: the build's source tree, its commit (+dirty), its type
    local src type commit
    src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
    type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
    commit=$(git -C "${src:-.}" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "${src:-.}" diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
    echo "$commit ${type:-unknown build type} ($build)" > .device/commit
    case "$type" in RelWithDebInfo|Release) ;; *) echo "device.sh: note: build type '${type:-?}', not RelWithDebInfo" >&2 ;; esac
    # the device tool carries only ignored paths
    local ex
    if ex=$(git rev-parse --git-path info/exclude 2>/dev/null); then
        mkdir -p "$(dirname "$ex")"
        grep -qx '/.device/' "$ex" 2>/dev/null || echo '/.device/' >> "$ex"
    fi
    cat .device/commit
    du -sh .device
}

run() {
    local out="" secs=0.5 rep=1
    while [ $# -gt 0 ]; do
        [ $# -ge 2 ] || usage
        case "$1" in
            --out) out=$(abspath "$2"); shift 2 ;;
            --seconds) secs=$2; shift 2 ;;
            --repeat) rep=$2; shift 2 ;;
            *) usage ;;
        esac
    done
    [ -n "$out" ] || usage
    [ -x .device/bin/hs-bench ] || { echo "device.sh: run 'bench/device.sh pack' first (and carry .device)" >&2; exit 1; }
    mkdir -p "$out"
    local hb=(.device/lib/ld-linux-x86-64.so.2 --library-path .device/lib .device/bin/hs-bench)
    { echo "build $(cat .device/commit), $(nproc) CPUs, $(uname -r), $(date -u +%FT%TZ)"
      grep -m1 'model name' /proc/cpuinfo || true; } | tee "$out/machine.txt"
    # Each step: a name, then hs-bench's arguments. Short runs, so the list
    # fits one call with time left to rerun it (about 100 s estimated on 16 CPUs).
    local steps=(
        "ablation-sleep ablation"
        "ablation-poll ablation --rx-poll"
        "scaling-64-sleep scaling --frame 64"
        "scaling-64-poll scaling --frame 64 --rx-poll"
        "scaling-1518-sleep scaling --frame 1518"
        "scaling-1518-poll scaling --frame 1518 --rx-poll"
        "fanin fanin"
    )
    local s name failed=0
    for s in "${steps[@]}"; do
        name="${s%% *}"
        # shellcheck disable=SC2086 # the step's arguments split on purpose
        set -- ${s#* }
        echo "== $name: hs-bench $* --seconds $secs --repeat $rep"
        if ! "${hb[@]}" "$@" --seconds "$secs" --repeat "$rep" \
                --json "$out/$name.json" > "$out/$name.txt" 2>&1; then
            echo "   FAILED"; failed=$((failed + 1))
        fi
        grep -E '^summary|^ *(64|1518|65536)' "$out/$name.txt" | tail -n 40 || true
    done
    echo "device.sh: ${#steps[@]} steps, $failed failed; results in $out"
    [ "$failed" -eq 0 ]
}

case "${1:-}" in
    pack) shift; pack "$@" ;;
    run) shift; run "$@" ;;
    *) usage ;;
esac
