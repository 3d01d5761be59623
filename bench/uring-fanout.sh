#!/usr/bin/env bash
# Runs bench/uring-fanout (see its opening comment) over N = 1, 10, 100
# receivers and B = 1, 4, 16 frames per receiver per round, for each send
# method, pinned (everything on CPU 0, as bench/run.sh's pinned mode) and
# unpinned, BENCH_URING_REPS times with the methods interleaved, plus the
# null system call and two io_uring ablations; prints every raw line to
# stderr and a markdown table of medians on stdout.
#
#   bench/uring-fanout.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/bench/uring-fanout
reps=${BENCH_URING_REPS:-3}
datagrams=${BENCH_URING_DATAGRAMS:-100000}
modes=${BENCH_MODES:-pinned unpinned}
methods=(sendmsg sendmmsg uring-sendmsg uring-send uring-link)
raw=$(mktemp /tmp/uring-fanout.XXXXXX)
trap 'rm -f "$raw"' EXIT

if [ ! -x "$bin" ]; then
    echo "uring-fanout: $bin not built (needs liburing-dev)" >&2
    exit 1
fi
all_cpus="0-$(($(nproc) - 1))"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(uname -sr)," \
     "io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo n/a)," \
     "load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for rep in $(seq "$reps"); do
    for mode in $modes; do
        case $mode in
        pinned) pin=(taskset -c 0) ;;
        *) pin=(taskset -c "$all_cpus") ;;
        esac
        echo "$mode $("${pin[@]}" "$bin" null)" | tee -a "$raw" >&2
        for n in 1 10 100; do
            for b in 1 4 16; do
                # Rotate the order so no method always runs first.
                for i in $(seq 0 $((${#methods[@]} - 1))); do
                    m=${methods[$(( (i + rep + n + b) % ${#methods[@]} ))]}
                    line=$(timeout 120 "${pin[@]}" "$bin" -m "$m" -n "$n" -b "$b" -d "$datagrams") ||
                        line="method=$m n=$n b=$b FAILED"
                    echo "$mode $line" | tee -a "$raw" >&2
                done
            done
        done
        for flags in -F -P; do
            line=$(timeout 120 "${pin[@]}" "$bin" -m uring-send -n 100 -b 16 -d "$datagrams" "$flags") ||
                line="FAILED"
            echo "$mode ablation$flags $line" | tee -a "$raw" >&2
        done
    done
    echo "load after rep $rep: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done
python3 - "$raw" <<'PY'
import re, statistics, sys
from collections import defaultdict
cpu = defaultdict(list); tput = defaultdict(list); csw = defaultdict(list); null = defaultdict(list); fails = 0
for line in open(sys.argv[1]):
    mode, rest = line.split(' ', 1)
    kv = dict(re.findall(r'(\w+)=(\S+)', rest))
    if 'FAILED' in rest:
        fails += 1
        continue
    if kv.get('method') == 'null':
        null[mode].append(float(kv['cpu_us_per_call']))
        continue
    key = (mode, rest.startswith('ablation-F') and 'uring-send (no fixed files)' or
           rest.startswith('ablation-P') and 'uring-send (plain setup flags)' or kv['method'],
           int(kv['n']), int(kv['b']))
    cpu[key].append(float(kv['cpu_us_per_dgram']))
    tput[key].append(float(kv['dgrams_per_s']))
    csw[key].append(float(kv['csw_per_round']))
med = statistics.median
for mode in ('pinned', 'unpinned'):
    if mode not in null:
        continue
    print(f"\n{mode}: null system call {med(null[mode]):.2f} µs CPU (median of {len(null[mode])})\n")
    methods = [m for m in ('sendmsg', 'sendmmsg', 'uring-sendmsg', 'uring-send', 'uring-link')
               if any(k[0] == mode and k[1] == m for k in cpu)]
    print("| N | B | " + " | ".join(methods) + " | best io_uring ÷ sendmmsg |")
    print("|---|---|" + "---|" * (len(methods) + 1))
    for n in (1, 10, 100):
        for b in (1, 4, 16):
            cells = []
            for m in methods:
                k = (mode, m, n, b)
                if k in cpu:
                    cells.append(f"{med(cpu[k]):.2f} µs, {med(tput[k])/1000:.0f} k/s")
                else:
                    cells.append("–")
            ref = cpu.get((mode, 'sendmmsg', n, b))
            best = min((med(cpu[(mode, m, n, b)]) for m in ('uring-send', 'uring-sendmsg', 'uring-link')
                        if (mode, m, n, b) in cpu), default=None)
            ratio = f"{med(ref)/best:.2f}x less CPU" if ref and best else "–"
            print(f"| {n} | {b} | " + " | ".join(cells) + f" | {ratio} |")
    print(f"\nSender context switches per round ({mode}, medians):\n")
    print("| N | B | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for n in (1, 10, 100):
        for b in (1, 4, 16):
            print(f"| {n} | {b} | " + " | ".join(f"{med(csw[(mode, m, n, b)]):.2f}" if (mode, m, n, b) in csw
                                              else "–" for m in methods) + " |")
    for name in ('uring-send (no fixed files)', 'uring-send (plain setup flags)'):
        k = (mode, name, 100, 16)
        if k in cpu:
            print(f"\nAblation, N=100 B=16, {name}: {med(cpu[k]):.2f} µs, {med(tput[k])/1000:.0f} k/s")
if fails:
    print(f"\n{fails} runs FAILED")
    sys.exit(1)
PY
