#!/usr/bin/env bash
# Builds Plexus and runs the whole test suite (unit and integration tests,
# each integration test starting its own plexusd on a temporary socket).
#
#   tools/run-tests.sh              normal build in build/
#   tools/run-tests.sh --sanitize   AddressSanitizer + UBSan build in build-sanitize/
#
# Extra arguments after the option go to `meson test`.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

dir=build
setup=()
if [ "${1:-}" = "--sanitize" ]; then
    shift
    dir=build-sanitize
    setup=(-Db_sanitize=address,undefined -Db_lundef=false)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi

if [ ! -d "$dir" ]; then
    meson setup "$dir" --werror "${setup[@]}"
fi
meson compile -C "$dir"
meson test -C "$dir" --print-errorlogs "$@"
