#!/usr/bin/env bash
# The cargo-fuzz targets in fuzz/ (one per decoder; see fuzz/README.md), on the stable toolchain
# with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz if it is missing.
#
#   scripts/fuzz.sh --smoke [SECONDS]   builds every target, then runs each over its committed
#                                       corpus and SECONDS more (default 8) of new inputs; new
#                                       inputs go to a scratch directory, the corpus is not touched.
#                                       Fails on the first crash (the input is in fuzz/artifacts/).
#   scripts/fuzz.sh --long [RUNS] [TARGET...]
#                                       runs each target (default: all) for RUNS executions
#                                       (default 10^7), one after the other, niced, adding to its
#                                       corpus; prints the final stats line for fuzz/RUNS.md.
#
# Built without AddressSanitizer (the decoders are safe Rust: a panic or an abort is the crash
# libFuzzer reports; ASan would cost ~3x the executions for nothing) and with debug assertions,
# so an arithmetic overflow is a crash too.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
FLAGS=(-s none -a)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it" >&2
    cargo install cargo-fuzz --locked
fi

mode=${1:---smoke}
shift || true
mapfile -t all_targets < <(cargo fuzz list)

case "$mode" in
--smoke)
    seconds=${1:-8}
    started=$(date +%s)
    cargo fuzz build "${FLAGS[@]}"
    built=$(date +%s)
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for target in "${all_targets[@]}"; do
        mkdir -p "$scratch/$target"
        log="$scratch/$target.log"
        if ! cargo fuzz run "${FLAGS[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
            -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            echo "fuzz smoke: $target crashed; the input is in fuzz/artifacts/$target/" >&2
            exit 1
        fi
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz smoke: $target ok ($runs executions, corpus $(ls "corpus/$target" | wc -l) files)"
    done
    echo "fuzz smoke: build $((built - started)) s, runs $(($(date +%s) - built)) s"
    ;;
--long)
    runs=${1:-10000000}
    shift || true
    targets=("$@")
    [ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
    cargo fuzz build "${FLAGS[@]}"
    for target in "${targets[@]}"; do
        log=$(mktemp)
        start=$(date +%s)
        status=ok
        nice -n 19 cargo fuzz run "${FLAGS[@]}" "$target" -- \
            -runs="$runs" -max_len=4096 -print_final_stats=1 >"$log" 2>&1 || status=crash
        executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "| $(date -u +%F) | $target | ${executed:-?} | $(($(date +%s) - start)) | $status |"
        if [ "$status" != ok ]; then
            tail -n 40 "$log" >&2
            exit 1
        fi
        rm -f "$log"
    done
    ;;
*)
    echo "usage: scripts/fuzz.sh --smoke [SECONDS] | --long [RUNS] [TARGET...]" >&2
    exit 2
    ;;
esac
