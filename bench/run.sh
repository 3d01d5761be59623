#!/usr/bin/env bash
# Benchmarks plexusd against dbus-broker, dbus-daemon and a raw
# SOCK_SEQPACKET ping-pong (the floor), side by side in one run on this
# machine.
#
#   bench/run.sh
#
# Installs the Debian packages it needs when missing, builds into
# build-bench/, starts a private plexusd, dbus-daemon and dbus-broker in a
# temporary directory, runs every measurement against each of them twice
# (first with every process pinned to CPU 0 by `taskset -c 0`, then on all
# CPUs), prints one markdown table with absolute figures and ratios on
# stdout, and writes docs/benchmarks/ (results.md, results.tsv, PNG charts
# drawn by gnuplot). Progress goes to stderr; logs of every process to
# build-bench/bench-logs/. Everything it starts is stopped on exit, also
# after an error or Ctrl-C. Exits 0 only if every measurement ran and
# verified everything it received.
#
# The counts below are environment variables; BENCH_QUICK=1 divides the
# defaults by ten for a quick try. A full run takes about five minutes on a
# 2-CPU machine. Needs root (or sudo) to install packages; dbus-broker also
# needs root to stand in for journald (see start_journal_sink). The last
# thing on stdout is a one-screen summary: one row per goal of
# docs/performance.md with its figure, ratio and PASS/MISSED, the broker
# CPU per routed frame of plexusd, dbus-broker and dbus-daemon, and a
# machine line with the cost of a null system call measured in the run.
#
#   bench/run.sh --guard
#
# (also bench/guard.sh) is the regression guard .ci/run calls: pinned only,
# plexusd against dbus-broker and the raw floor, small counts (about half a
# minute), no charts and nothing written to docs/. It exits 1 only on a
# gross regression: a ratio past the thresholds of bench/report.py
# (GUARD_LIMITS), never on an absolute time.
#
#   bench/run.sh --large [--quick]
#
# measures large payloads instead (plexus-bench-large, see bench/large.c):
# plexusd's process_vm and memfd paths, inline calls, dbus-broker, a raw
# stream socket and memcpy() at each of BENCH_LARGE_SIZES, a 16 MiB signal
# to 3 subscribers, and the cost of a system call; pinned (sender, broker
# and receiver each on a fixed CPU, BENCH_LARGE_CPUS) and unpinned. The
# report goes to stdout and docs/benchmarks/large-DATE.txt. --quick (or
# BENCH_QUICK=1): fewer sizes and repetitions, for a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

large=0
guard=0
for arg in "$@"; do
    case $arg in
    --large) large=1 ;;
    --quick) export BENCH_QUICK=1 ;;
    --guard) guard=1 ;;
    *) echo "usage: $0 [--large | --guard] [--quick]" >&2; exit 2 ;;
    esac
done

note() {
    echo "bench: [${SECONDS}s] $*" >&2
}

scaled() {
    if [ "${BENCH_QUICK:-0}" = 1 ]; then
        echo $(( ($1 + 9) / 10 ))
    else
        echo "$1"
    fi
}

rtt_calls=${BENCH_RTT_CALLS:-$(scaled 50000)}
warmup=${BENCH_WARMUP:-$(scaled 5000)}
pipeline_calls=${BENCH_PIPELINE_CALLS:-$(scaled 200000)}
pipeline_depth=${BENCH_PIPELINE_DEPTH:-128}
fanout_deliveries=${BENCH_FANOUT_DELIVERIES:-$(scaled 500000)}
fanout_burst=${BENCH_FANOUT_BURST:-100}
connects=${BENCH_CONNECTS:-$(scaled 10000)}
idle_clients=${BENCH_IDLE_CLIENTS:-100000}
idle_per_process=${BENCH_IDLE_PER_PROCESS:-500}
idle_calls=${BENCH_IDLE_CALLS:-$(scaled 50000)}
modes=${BENCH_MODES:-pinned unpinned}
timeout_s=${BENCH_TIMEOUT:-300}
build=${BENCH_BUILD_DIR:-build-bench}
out=${BENCH_OUT:-docs/benchmarks}

buses=(raw plexus dbus-broker dbus-daemon)
brokers=(plexus dbus-broker dbus-daemon)

# The guard: only what its ratios need, pinned, with counts small enough
# for the whole of it to take about half a minute (see measure_guard),
# in rounds.
guard_rounds=${BENCH_GUARD_ROUNDS:-3}
if [ "$guard" = 1 ]; then
    rtt_calls=${BENCH_RTT_CALLS:-2000}
    warmup=${BENCH_WARMUP:-200}
    pipeline_calls=${BENCH_PIPELINE_CALLS:-8000}
    fanout_deliveries=${BENCH_FANOUT_DELIVERIES:-20000}
    modes=pinned
    buses=(raw plexus dbus-broker)
    brokers=(plexus dbus-broker)
fi

# --- packages and build ------------------------------------------------------

install_missing() {
    local missing=() p sudo=""

    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    note "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

tools/install-deps.sh >&2
# dbus: dbus-daemon; systemd: systemd-socket-activate; util-linux: taskset;
# liburing-dev: bench/uring-fanout (bench/uring-fanout.sh); tools/install-deps.sh
# installs it too, for plexusd's io_uring send path.
# The guard draws no charts: no gnuplot, whose dependencies are many.
if [ "$guard" = 1 ]; then
    install_missing dbus dbus-broker libsystemd-dev util-linux systemd python3
else
    install_missing dbus dbus-broker libsystemd-dev gnuplot-nox util-linux systemd python3 liburing-dev
fi

if [ ! -d "$build" ]; then
    meson setup "$build" --werror -Dtests=false >&2
fi
meson compile -C "$build" >&2
bench=$root/$build/bench/plexus-bench
bench_large=$root/$build/bench/plexus-bench-large
plexusd=$root/$build/daemon/plexusd
if [ ! -x "$bench" ]; then
    note "$bench was not built: the top-level meson.build must have subdir('bench')"
    exit 1
fi

logs=$root/$build/bench-logs
rm -rf "$logs"
mkdir -p "$logs"

# --- processes we start, and stopping them -----------------------------------

tmp=$(mktemp -d /tmp/plexus-bench.XXXXXX)
global_pids=()          # for the whole run: journal sink, dbus-broker's parent bus
mode_pids=()            # per CPU mode: the three brokers (and dbus-broker itself)
journal_socket=/run/systemd/journal/socket
journal_dir=/run/systemd/journal
created_journal_dir=0
created_journal_socket=0

# Alive and not a zombie: a broker's zombie stays until its parent reaps it.
alive() {
    local state

    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

stop_pid() {
    local pid=$1 i

    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            note "process $pid did not stop on SIGTERM, killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

stop_brokers() {
    local i

    for (( i = ${#mode_pids[@]} - 1; i >= 0; i-- )); do
        stop_pid "${mode_pids[i]}"
    done
    mode_pids=()
}

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
    local i

    trap - EXIT INT TERM
    stop_brokers
    for (( i = ${#global_pids[@]} - 1; i >= 0; i-- )); do
        stop_pid "${global_pids[i]}"
    done
    # The sink removes its socket on SIGTERM; this is for a sink that was killed.
    if [ "$created_journal_socket" = 1 ] && [ -S "$journal_socket" ]; then
        rm -f "$journal_socket"
    fi
    if [ "$created_journal_dir" = 1 ]; then
        rmdir "$journal_dir" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- limits and machine --------------------------------------------------------

# Brokers inherit our RLIMIT_NOFILE. plexusd holds one descriptor per idle
# client, its socket, on Linux 6.5 and later (SO_PEERPIDFD: the pidfd that
# HELLO needs is closed after it); older kernels keep a pidfd per client
# too, hence BENCH_IDLE_FDS_PER_CLIENT=2 there. The D-Bus brokers hold one. 256 more cover
# the listener, the loop and the active pair. The clients are spread over
# holder processes of $idle_per_process each, which raise their own soft
# limit. Raising the hard limit needs CAP_SYS_RESOURCE, which some
# containers do not grant, and it stops at fs.nr_open.
fds_per_client=${BENCH_IDLE_FDS_PER_CLIENT:-1}
idle_wanted=$idle_clients
fd_needed=$((fds_per_client * idle_wanted + 256))
idle_limited_by=""
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$fd_needed" ]; then
    nr_open=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo "$fd_needed")
    ulimit -Hn $((fd_needed < nr_open ? fd_needed : nr_open)) 2>/dev/null || true
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
if [ "$fd_limit" != unlimited ] && [ "$fd_limit" -lt "$fd_needed" ]; then
    idle_clients=$(( (fd_limit - 256) / fds_per_client ))
    idle_limited_by="RLIMIT_NOFILE is $fd_limit and cannot be raised (no CAP_SYS_RESOURCE, or fs.nr_open); $idle_wanted idle clients need $fd_needed"
    note "$idle_limited_by: measuring $idle_clients idle clients on every bus"
fi

cpus=$(nproc)
all_cpus="0-$((cpus - 1))"
{
    echo "cpus=$cpus"
    echo "cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "kernel=$(uname -sr)"
    # shellcheck source=/dev/null
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "plexus=$("$plexusd" --version), built with meson's default buildtype (-O2 -g)"
    echo "dbus-daemon=$(dbus-daemon --version | head -1)"
    echo "dbus-broker=$(dbus-broker --version 2>/dev/null | head -1)"
    echo "compiler=$(cc --version | head -1)"
    # Other work on the machine disturbs every wall-time figure: say how much there was.
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$tmp/machine.txt"
{
    echo "BENCH_RTT_CALLS=$rtt_calls"
    echo "BENCH_WARMUP=$warmup"
    echo "BENCH_PIPELINE_CALLS=$pipeline_calls"
    echo "BENCH_PIPELINE_DEPTH=$pipeline_depth"
    echo "BENCH_FANOUT_DELIVERIES=$fanout_deliveries"
    echo "BENCH_FANOUT_BURST=$fanout_burst"
    echo "BENCH_CONNECTS=$connects"
    echo "BENCH_IDLE_CLIENTS=$idle_clients"
    echo "BENCH_IDLE_PER_PROCESS=$idle_per_process"
    echo "BENCH_IDLE_CALLS=$idle_calls"
    echo "idle_wanted=$idle_wanted"
    echo "idle_fds_per_client=$fds_per_client"
    echo "idle_fd_needed=$fd_needed"
    echo "RLIMIT_NOFILE=$fd_limit"
    if [ -n "$idle_limited_by" ]; then
        echo "idle clients lowered because=$idle_limited_by"
    fi
} >"$tmp/config.txt"

# --- bus configuration ---------------------------------------------------------

# The same policy and limits for dbus-daemon and dbus-broker: allow
# everything, and limits far above what the benchmarks use (as in the
# session bus configuration), so that neither refuses a measurement.
write_dbus_config() {
    local file=$1 listen=$2

    cat >"$file" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  ${listen:+<listen>$listen</listen>}
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_completed_connections">100000</limit>
  <limit name="max_incomplete_connections">10000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_names_per_connection">50000</limit>
</busconfig>
EOF
}

# dbus-broker-launch and dbus-broker log only to journald's socket and fail
# without it. Use the real one if it exists; otherwise stand in for it with
# plexus-bench's sink, remembering to remove exactly what we created.
start_journal_sink() {
    local i

    if [ -S "$journal_socket" ]; then
        note "dbus-broker logs to the existing $journal_socket"
        return 0
    fi
    if [ -e "$journal_socket" ] || [ "$(id -u)" -ne 0 ]; then
        note "cannot provide $journal_socket (not root, or not a socket): skipping dbus-broker"
        return 1
    fi
    if [ ! -d "$journal_dir" ]; then
        mkdir -p "$journal_dir"
        created_journal_dir=1
    fi
    "$bench" journal-sink --address "$journal_socket" >"$logs/journal.log" 2>&1 &
    global_pids+=($!)
    for i in $(seq 50); do
        if [ -S "$journal_socket" ]; then
            created_journal_socket=1
            return 0
        fi
        sleep 0.1
    done
    note "the journal sink did not start: skipping dbus-broker"
    return 1
}

# dbus-broker-launch --scope user connects to the bus at
# $XDG_RUNTIME_DIR/bus (its parent bus, for activation); a throwaway
# dbus-daemon provides it.
start_parent_bus() {
    mkdir -p "$tmp/xdg"
    write_dbus_config "$tmp/parent-bus.conf" "unix:path=$tmp/xdg/bus"
    dbus-daemon --config-file="$tmp/parent-bus.conf" --nofork 2>"$logs/parent-bus.log" &
    global_pids+=($!)
    wait_socket "$tmp/xdg/bus"
}

wait_socket() {
    local i

    for i in $(seq 100); do
        [ -S "$1" ] && return 0
        sleep 0.1
    done
    note "no socket at $1"
    return 1
}

# The first connection also makes systemd-socket-activate start dbus-broker.
wait_bus() {
    local kind=$1 address=$2 i

    for i in $(seq 100); do
        if "$bench" "$kind" connect -n 1 -w 0 -a "$address" >/dev/null 2>>"$logs/wait.log"; then
            return 0
        fi
        sleep 0.1
    done
    note "no bus answers at $address"
    return 1
}

have_broker=0
if command -v dbus-broker-launch >/dev/null && command -v systemd-socket-activate >/dev/null; then
    if start_journal_sink && start_parent_bus; then
        have_broker=1
    fi
fi
write_dbus_config "$tmp/dbus-broker.conf" ""

# plexusd's defaults are for a system bus: 16,384 clients, 256 per uid, 64
# per uid before HELLO. Here every client has our uid, so the limits go as
# high as the configuration allows (docs/configuration.md); -c also keeps
# it from reading /etc/plexus/plexusd.conf.
cat >"$tmp/plexusd.conf" <<EOF
[limits]
max_clients = 1000000
max_user_clients = 1000000
max_unauthenticated = 1000000
max_user_unauthenticated = 1000000
EOF

# --- one CPU mode: start the brokers, measure, stop them -----------------------

declare -A address
declare -A broker_pid

start_brokers() {
    local dir=$tmp/$mode launcher i

    mkdir -p "$dir"
    address[raw]=$dir/raw.sock
    address[plexus]=$dir/plexus.sock
    address[dbus-daemon]=unix:path=$dir/dbus-daemon.sock
    address[dbus-broker]=unix:path=$dir/dbus-broker.sock
    broker_pid=()

    "${pin[@]}" "$plexusd" -c "$tmp/plexusd.conf" -a "$dir/plexus.sock" 2>"$logs/plexusd-$mode.log" &
    mode_pids+=($!)
    broker_pid[plexus]=$!
    wait_bus plexus "${address[plexus]}" || return 1

    if [ "$large" = 0 ] && [ "$guard" = 0 ]; then
        write_dbus_config "$dir/dbus-daemon.conf" "${address[dbus-daemon]}"
        "${pin[@]}" dbus-daemon --config-file="$dir/dbus-daemon.conf" --nofork 2>"$logs/dbus-daemon-$mode.log" &
        mode_pids+=($!)
        broker_pid[dbus-daemon]=$!
        wait_bus dbus "${address[dbus-daemon]}" || return 1
    fi

    if [ "$have_broker" = 1 ]; then
        "${pin[@]}" systemd-socket-activate -l "$dir/dbus-broker.sock" -E XDG_RUNTIME_DIR="$tmp/xdg" \
            dbus-broker-launch --scope user --config-file "$tmp/dbus-broker.conf" \
            2>"$logs/dbus-broker-$mode.log" &
        launcher=$!
        mode_pids+=("$launcher")
        wait_socket "$dir/dbus-broker.sock" || return 1
        wait_bus dbus "${address[dbus-broker]}" || return 1
        # The launcher forks dbus-broker itself; stop it after the launcher.
        for i in $(seq 50); do
            broker_pid[dbus-broker]=$(cut -d' ' -f1 "/proc/$launcher/task/$launcher/children" 2>/dev/null || true)
            [ -n "${broker_pid[dbus-broker]}" ] && break
            sleep 0.1
        done
        if [ -z "${broker_pid[dbus-broker]}" ]; then
            note "cannot find the dbus-broker process"
            return 1
        fi
        mode_pids=("${broker_pid[dbus-broker]}" "${mode_pids[@]}")
    fi
}

results=$tmp/results.tsv
: >"$results"
n_failed=0

# run BUS TEST MODE [OPTIONS]: one measurement of plexus-bench, recorded.
# Against a broker it also gets the broker's pid, for its CPU time.
run() {
    local bus=$1 test=$2 kind rc=0 result pid_arg=()
    shift 2

    case $bus in
    raw) kind=raw ;;
    plexus) kind=plexus ;;
    *) kind=dbus ;;
    esac
    if [ "$bus" = dbus-broker ] && [ "$have_broker" != 1 ]; then
        return 0
    fi
    if [ -n "${broker_pid[$bus]:-}" ]; then
        pid_arg=(-P "${broker_pid[$bus]}")
    fi
    note "$mode: $bus $test"
    {
        echo "== $mode $bus $test: plexus-bench $kind $*"
    } >>"$logs/measurements.log"
    result=$(timeout "$timeout_s" "${pin[@]}" "$bench" "$kind" -a "${address[$bus]}" "$@" "${pid_arg[@]}" \
             2>>"$logs/measurements.log") || rc=$?
    if [ "$rc" -eq 0 ] && [ -n "$result" ]; then
        printf '%s\t%s\t%s\t%s\n' "$mode" "$bus" "$test" "$result" >>"$results"
        echo "$result" >>"$logs/measurements.log"
    else
        printf '%s\t%s\t%s\tFAILED\n' "$mode" "$bus" "$test" >>"$results"
        note "  FAILED (exit $rc), see $logs/measurements.log"
        n_failed=$((n_failed + 1))
    fi
}

measure_all() {
    local bus size n

    # The cost of a null system call, on the CPUs of this mode.
    run raw syscall syscall -n 100000
    for size in 64 4096; do
        for bus in "${buses[@]}"; do
            run "$bus" "rtt$size" rtt -s "$size" -n "$rtt_calls" -w "$warmup"
        done
    done
    for bus in "${buses[@]}"; do
        run "$bus" pipeline pipeline -s 64 -d "$pipeline_depth" -n "$pipeline_calls" \
            -w $((pipeline_calls / 10))
    done
    for n in 1 10 100; do
        for bus in "${brokers[@]}"; do
            run "$bus" "fanout$n" fanout -s 64 -S "$n" -b "$fanout_burst" -w "$fanout_burst" \
                -n $(( (fanout_deliveries / n + fanout_burst - 1) / fanout_burst * fanout_burst ))
        done
    done
    for bus in "${buses[@]}"; do
        run "$bus" connect connect -n "$connects" -w $((connects / 10))
    done
    for bus in "${brokers[@]}"; do
        [ -n "${broker_pid[$bus]:-}" ] || continue
        # Let the brokers finish tearing down the connections of the
        # previous measurement, so that the pair's latency "alone" is that.
        sleep 1
        run "$bus" idle idle -c "$idle_clients" -p "$idle_per_process" -n "$idle_calls" -w "$warmup"
    done
}

# The guard's measurements: the floor and the three ratios it judges
# (report.py --guard), in $guard_rounds rounds, each bus right after the
# other. report.py takes each bus's best round, so that a burst of other
# work on the machine during one round does not decide the verdict.
measure_guard() {
    local bus

    run raw syscall syscall -n 10000
    for _ in $(seq "$guard_rounds"); do
        for bus in raw plexus dbus-broker; do
            run "$bus" rtt64 rtt -s 64 -n "$rtt_calls" -w "$warmup"
        done
        for bus in plexus dbus-broker; do
            run "$bus" pipeline pipeline -s 64 -d "$pipeline_depth" -n "$pipeline_calls" \
                -w $((pipeline_calls / 10))
        done
        for bus in plexus dbus-broker; do
            run "$bus" fanout10 fanout -s 64 -S 10 -b "$fanout_burst" -w "$fanout_burst" \
                -n $(( (fanout_deliveries / 10 + fanout_burst - 1) / fanout_burst * fanout_burst ))
        done
    done
}

if [ "$large" = 1 ]; then
    # shellcheck source=bench/large.sh
    . bench/large.sh
    exit "$status"
fi

for mode in $modes; do
    case $mode in
    pinned) pin=(taskset -c 0) ;;
    unpinned) pin=(taskset -c "$all_cpus") ;;
    *) note "unknown mode $mode"; exit 1 ;;
    esac
    note "--- $mode: starting ${brokers[*]}"
    if ! start_brokers; then
        note "the brokers did not start, see $logs"
        exit 1
    fi
    if [ "$guard" = 1 ]; then
        measure_guard
    else
        measure_all
    fi
    stop_brokers
done

# --- report --------------------------------------------------------------------

echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$tmp/machine.txt"

if [ "$guard" = 1 ]; then
    if [ "$have_broker" != 1 ]; then
        note "guard: dbus-broker could not run here, and every threshold is a ratio to it"
        exit 1
    fi
    status=0
    cp "$results" "$logs/guard-results.tsv"
    python3 bench/report.py --guard --results "$results" --machine "$tmp/machine.txt" || status=1
    if [ "$n_failed" -gt 0 ]; then
        note "guard: $n_failed measurements failed, see $logs/measurements.log"
        status=1
    fi
    exit "$status"
fi

mkdir -p "$out"
status=0
python3 bench/report.py --results "$results" --machine "$tmp/machine.txt" --config "$tmp/config.txt" \
    --out "$out" --data "$tmp/plot" || status=1
gnuplot -e "datadir='$tmp/plot'" -e "outdir='$out'" bench/charts.gp || status=1
if [ "$n_failed" -gt 0 ]; then
    note "$n_failed measurements failed"
    status=1
fi
note "written: $out/results.md, $out/results.tsv, $out/*.png"
exit "$status"
