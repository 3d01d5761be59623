#!/usr/bin/env bash
# Builds Plexus and runs the whole test suite (unit and integration tests,
# each integration test starting its own plexusd on a temporary socket).
#
#   tools/run-tests.sh              normal build in build/
#   tools/run-tests.sh --sanitize   AddressSanitizer + UBSan build in build-sanitize/
#   tools/run-tests.sh --valgrind   normal build, every test and every plexusd
#                                   they start under valgrind (memcheck)
#
# Extra arguments after the option go to `meson test`.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh

dir=build
setup=()
testargs=()
case "${1:-}" in
--sanitize)
    shift
    dir=build-sanitize
    setup=(-Db_sanitize=address,undefined -Db_lundef=false)
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    ;;
--valgrind)
    shift
    vg="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
    # The integration harness runs plexusd under the same wrapper and
    # stretches its own waits; a broker with valgrind errors exits 99.
    export PLEXUS_TEST_BROKER_WRAPPER="$vg"
    export PLEXUS_TEST_TIMEOUT_SCALE=5
    testargs=(--wrapper "$vg" --timeout-multiplier 5)
    ;;
esac

if [ ! -d "$dir" ]; then
    meson setup "$dir" --werror "${setup[@]}"
fi
meson compile -C "$dir"
status=0
meson test -C "$dir" --print-errorlogs "${testargs[@]}" "$@" || status=$?

# One closing line any CI can read: counts from meson's own log of this run
# (testlog.json, or testlog-valgrind.json with a wrapper: the newest).
python3 - "$dir/meson-logs" <<'PY' || true
import glob, json, os, sys
log = max(glob.glob(os.path.join(sys.argv[1], "testlog*.json")), key=os.path.getmtime)
passed = failed = skipped = 0
for line in open(log):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit "$status"
