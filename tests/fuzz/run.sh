#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz, one after the other.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS per target (default 60); TARGETs among fuzz-header, fuzz-broker,
# fuzz-topic-name, fuzz-config, fuzz-pb-dynamic (default: all). Builds build-fuzz/ (clang,
# ASan + UBSan, -Dfuzzing=true) if it is not there. Each target starts from
# its committed seeds (tests/fuzz/corpus/TARGET, never written to) and
# keeps what it finds in build-fuzz/fuzz-corpus/TARGET, so later runs go
# on from there. A crashing input is saved as
# build-fuzz/fuzz-artifacts/TARGET/crash-*; replay it with
#   build-fuzz/tests/fuzz/TARGET FILE
# Fails if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/../.."

tools/install-deps.sh

seconds=60
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(fuzz-header fuzz-broker fuzz-topic-name fuzz-config fuzz-pb-dynamic)
fi

dir=build-fuzz
if [ ! -d "$dir" ]; then
    CC=clang meson setup "$dir" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
fi
meson compile -C "$dir" "${targets[@]/#/tests/fuzz/}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=()
for t in "${targets[@]}"; do
    corpus="$dir/fuzz-corpus/$t"
    artifacts="$dir/fuzz-artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    echo "== $t: $seconds s"
    if ! "$dir/tests/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 \
            -artifact_prefix="$artifacts/" "$corpus" "tests/fuzz/corpus/$t"; then
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (inputs in $dir/fuzz-artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets ran $seconds s each without a crash"
