#!/usr/bin/env bash
# What deadlines cost the broker: starts a private plexusd, arms 100,000
# call timeouts and 100,000 name leases through bench-timers, lets the
# broker expire them all, and prints broker CPU per timer event and the
# latency of ordinary calls before and while they fire. The table also goes
# to docs/benchmarks/timers.md. Counts: BENCH_TIMER_CALLS, BENCH_TIMER_LEASES.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/install-deps.sh
build=${BENCH_BUILD_DIR:-build-bench}
if [ ! -d "$build" ]; then
    meson setup "$build" --buildtype=release -Dtests=false
fi
meson compile -C "$build" plexusd bench-timers >/dev/null

dir=$(mktemp -d)
"$build/daemon/plexusd" -a "$dir/bus" 2>"$dir/plexusd.log" &
broker=$!
trap 'kill "$broker" 2>/dev/null; wait "$broker" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    [ -S "$dir/bus" ] && break
    sleep 0.05
done

# The broker's soft fd limit is its hard one; the benchmark needs ~600 connections.
ulimit -n "$(ulimit -Hn)"
mkdir -p docs/benchmarks
"$build/bench/bench-timers" "$dir/bus" "$broker" "${BENCH_TIMER_CALLS:-100000}" "${BENCH_TIMER_LEASES:-100000}" \
    | tee docs/benchmarks/timers.md
