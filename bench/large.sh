# shellcheck shell=bash disable=SC2154,SC2034  # sourced by run.sh, which sets and uses the variables
# bench/run.sh --large: the large-payload measurements. Sourced by run.sh
# after its set-up (packages, build, machine.txt, the D-Bus configuration,
# the journal sink and parent bus for dbus-broker), so it uses run.sh's
# start_brokers, stop_brokers, note, and its variables; not run on its own.
#
# Every measurement is one plexus-bench-large run (bench/large.c): one
# method, one size. The repetitions per size move about BENCH_LARGE_BYTES
# in total, at least BENCH_LARGE_MIN_REPS and at most BENCH_LARGE_MAX_REPS
# times, after a tenth as many untimed ones (at least one).
#
# Environment:
#   BENCH_LARGE_SIZES      sizes, with K/M suffixes (KiB, MiB)
#   BENCH_LARGE_BYTES      bytes per measurement
#   BENCH_LARGE_CPUS       pinned mode: CPUs of sender, broker, receiver
#   BENCH_LARGE_DBUS_MAX   largest size tried through dbus-broker: the D-Bus
#                          specification caps an array at 64 MiB
#   BENCH_LARGE_FANOUT     fan-out: "SIZE SUBSCRIBERS"
#   BENCH_MODES            pinned and/or unpinned, as for run.sh

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    large_sizes=${BENCH_LARGE_SIZES:-64K 128K 1M 16M}
    large_bytes=${BENCH_LARGE_BYTES:-$((256 << 20))}
    large_min_reps=${BENCH_LARGE_MIN_REPS:-3}
    large_max_reps=${BENCH_LARGE_MAX_REPS:-200}
else
    large_sizes=${BENCH_LARGE_SIZES:-16K 32K 64K 128K 256K 512K 1M 16M 64M 256M}
    large_bytes=${BENCH_LARGE_BYTES:-$((512 << 20))}
    large_min_reps=${BENCH_LARGE_MIN_REPS:-3}
    large_max_reps=${BENCH_LARGE_MAX_REPS:-500}
fi
large_dbus_max=${BENCH_LARGE_DBUS_MAX:-$((64 << 20))}
read -r large_fanout_size large_fanout_subscribers <<<"${BENCH_LARGE_FANOUT:-16M 3}"
if [ "$cpus" -ge 2 ]; then
    read -r cpu_sender cpu_broker cpu_receiver <<<"${BENCH_LARGE_CPUS:-0 0 1}"
else
    read -r cpu_sender cpu_broker cpu_receiver <<<"0 0 0"
fi
large_methods=(memcpy raw process-vm memfd buffer inline dbus)

if [ ! -x "$bench_large" ]; then
    note "$bench_large was not built"
    exit 1
fi

# 64K -> 65536
to_bytes() {
    case $1 in
    *K) echo $(( ${1%K} << 10 )) ;;
    *M) echo $(( ${1%M} << 20 )) ;;
    *G) echo $(( ${1%G} << 30 )) ;;
    *) echo "$1" ;;
    esac
}

reps_for() {
    local reps=$(( large_bytes / $1 ))

    [ "$reps" -lt "$large_min_reps" ] && reps=$large_min_reps
    [ "$reps" -gt "$large_max_reps" ] && reps=$large_max_reps
    echo "$reps"
}

{
    echo "sizes=$large_sizes"
    echo "bytes per measurement=$large_bytes (repetitions $large_min_reps..$large_max_reps, plus a tenth untimed)"
    echo "pinned CPUs=sender $cpu_sender, broker $cpu_broker, receiver(s) $cpu_receiver"
    echo "dbus-broker sizes=up to $large_dbus_max bytes"
    echo "fan-out=$large_fanout_size to $large_fanout_subscribers subscribers"
    echo "modes=$modes"
} >"$tmp/config.txt"
echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/machine.txt"

large_results=$tmp/large.tsv
: >"$large_results"

# run_large METHOD SIZE [OPTIONS]: one measurement, recorded.
run_large() {
    local method=$1 size=$2 bus="" rc=0 result bytes reps
    local args=()
    shift 2

    case $method in
    memcpy | raw | syscall) ;;
    dbus) bus=dbus-broker ;;
    *) bus=plexus ;;
    esac
    if [ "$bus" = dbus-broker ] && [ "$have_broker" != 1 ]; then
        return 0
    fi
    if [ -n "$bus" ]; then
        args+=(-a "${address[$bus]}" -P "${broker_pid[$bus]}")
    fi
    if [ "$mode" = pinned ]; then
        args+=(--sender-cpu "$cpu_sender" --receiver-cpu "$cpu_receiver")
    fi
    bytes=$(to_bytes "$size")
    reps=$(reps_for "$bytes")
    args+=(-s "$bytes" -n "$reps" -w $(( reps / 10 > 0 ? reps / 10 : 1 )))
    note "$mode: $method $size"
    echo "== $mode $method $size: plexus-bench-large ${args[*]} $* $method" >>"$logs/large.log"
    result=$(timeout "$timeout_s" "$bench_large" "${args[@]}" "$@" "$method" 2>>"$logs/large.log") || rc=$?
    if [ "$rc" -eq 0 ] && [ -n "$result" ]; then
        printf '%s\t%s\t%s\t%s\n' "$mode" "$method" "$bytes" "$result" >>"$large_results"
        echo "$result" >>"$logs/large.log"
    else
        printf '%s\t%s\t%s\tFAILED\n' "$mode" "$method" "$bytes" >>"$large_results"
        note "  FAILED (exit $rc), see $logs/large.log"
        n_failed=$((n_failed + 1))
    fi
}

measure_large() {
    local size method bytes

    run_large syscall 8
    for size in $large_sizes; do
        bytes=$(to_bytes "$size")
        for method in "${large_methods[@]}"; do
            if [ "$method" = dbus ] && [ "$bytes" -gt "$large_dbus_max" ]; then
                continue
            fi
            run_large "$method" "$size"
        done
    done
    for method in fanout-memfd fanout-buffer fanout-process-vm; do
        run_large "$method" "$large_fanout_size" -S "$large_fanout_subscribers"
    done
}

for mode in $modes; do
    case $mode in
    pinned) pin=(taskset -c "$cpu_broker") ;;
    unpinned) pin=(taskset -c "$all_cpus") ;;
    *) note "unknown mode $mode"; exit 1 ;;
    esac
    note "--- $mode: starting plexusd, dbus-broker"
    if ! start_brokers; then
        note "the brokers did not start, see $logs"
        exit 1
    fi
    measure_large
    stop_brokers
done
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/machine.txt"

# --- report --------------------------------------------------------------------

mkdir -p "$out"
status=0
report=$out/large-$(date -u +%Y-%m-%d).txt
if python3 bench/report-large.py --results "$large_results" --machine "$tmp/machine.txt" \
        --config "$tmp/config.txt" >"$tmp/report.txt"; then
    cp "$tmp/report.txt" "$report"
    cat "$report"
    note "written: $report"
else
    status=1
fi
if [ "$n_failed" -gt 0 ]; then
    note "$n_failed measurements failed"
    status=1
fi
