#!/usr/bin/env python3
"""Turn the results of bench/run.sh into the markdown table, the goals, the
results page and the data files for the charts.

    report.py --results FILE --machine FILE --config FILE --out DIR --data DIR

FILE of results: one line per measurement, tab-separated: CPU mode
("pinned" or "unpinned"), bus, test, then the key=value pairs printed by
plexus-bench, or FAILED. Prints the table and the goals on stdout, writes
DIR/results.md and DIR/results.tsv, and gnuplot data files into --data.
"""

import argparse
import datetime
import os
import shutil
import sys

BUSES = ["raw", "plexus", "dbus-broker", "dbus-daemon"]
BUS_TITLES = {
    "raw": "raw SEQPACKET (floor)",
    "plexus": "plexus",
    "dbus-broker": "dbus-broker",
    "dbus-daemon": "dbus-daemon",
}
MODES = ["pinned", "unpinned"]
MODE_TITLES = {"pinned": "pinned", "unpinned": "unpinned"}

# label, test, key, unit, lower is better
ROWS = [
    ("Call round trip p50, 64 B", "rtt64", "p50_us", "µs", True),
    ("Call round trip p99, 64 B", "rtt64", "p99_us", "µs", True),
    ("Call round trip p50, 4 KiB", "rtt4096", "p50_us", "µs", True),
    ("Call round trip p99, 4 KiB", "rtt4096", "p99_us", "µs", True),
    ("Pipelined calls, 64 B, {depth} in flight", "pipeline", "calls_per_s", "calls/s", False),
    ("Fan-out to 1 subscriber, 64 B", "fanout1", "msgs_per_s", "msgs/s", False),
    ("Fan-out to 10 subscribers, 64 B", "fanout10", "msgs_per_s", "msgs/s", False),
    ("Fan-out to 100 subscribers, 64 B", "fanout100", "msgs_per_s", "msgs/s", False),
    ("Connection set-up (connect + hello + disconnect)", "connect", "conn_per_s", "conn/s", False),
    ("{idle} idle clients: broker memory per client", "idle", "rss_per_client_b", "bytes", True),
    ("{idle} idle clients: active pair p99", "idle", "idle_p99_us", "µs", True),
    ("Same pair p99 before they connected", "idle", "base_p99_us", "µs", True),
    ("Active pair p99, with ÷ without idle clients", "idle", "p99_ratio", "×", True),
]


def parse_results(path):
    """{(mode, bus, test): dict or None for FAILED}"""
    results = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            mode, bus, test, rest = line.split("\t", 3)
            if rest.strip() == "FAILED":
                results[(mode, bus, test)] = None
                continue
            kv = {}
            for item in rest.split():
                k, _, v = item.partition("=")
                try:
                    kv[k] = float(v)
                except ValueError:
                    kv[k] = v
            results[(mode, bus, test)] = kv
    return results


def parse_kv_file(path):
    out = {}
    if not path or not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                out[k] = v
    return out


def value(results, mode, bus, test, key):
    """The number, None if not measured (n/a), or "FAILED"."""
    if (mode, bus, test) not in results:
        return None
    kv = results[(mode, bus, test)]
    if kv is None:
        return "FAILED"
    v = kv.get(key)
    return v if isinstance(v, float) else None


def fmt(v, unit):
    if v is None:
        return "n/a"
    if v == "FAILED":
        return "**FAILED**"
    if unit == "µs":
        return f"{v:.1f}" if v < 1000 else f"{v:,.0f}"
    if unit == "×":
        return f"{v:.2f}"
    return f"{v:,.0f}".replace(",", " ")


def advantage(plexus, other, lower_better):
    """How many times better plexus is than @other (>1: plexus better)."""
    if not isinstance(plexus, float) or not isinstance(other, float) or plexus <= 0 or other <= 0:
        return None
    return other / plexus if lower_better else plexus / other


def cost_vs_floor(plexus, floor, lower_better):
    """How many times the floor's cost plexus pays (>= 1 normally)."""
    if not isinstance(plexus, float) or not isinstance(floor, float) or plexus <= 0 or floor <= 0:
        return None
    return plexus / floor if lower_better else floor / plexus


def ratio_str(r):
    return "" if r is None else f"{r:.2f}×"


def build_table(results, config):
    depth = config.get("BENCH_PIPELINE_DEPTH", "128")
    idle = f"{int(config.get('BENCH_IDLE_CLIENTS', '10000')):,}"
    head = ("| Measurement | run | unit | " + " | ".join(BUS_TITLES[b] for b in BUSES) +
            " | plexus ÷ floor | plexus vs dbus-broker | plexus vs dbus-daemon |")
    sep = "|" + "---|" * (3 + len(BUSES) + 3)
    lines = [head, sep]
    for label, test, key, unit, lower in ROWS:
        label = label.format(depth=depth, idle=idle)
        for mode in MODES:
            vals = {b: value(results, mode, b, test, key) for b in BUSES}
            if all(v is None for v in vals.values()):
                continue
            cells = [label, MODE_TITLES[mode], unit] + [fmt(vals[b], unit) for b in BUSES]
            cells.append(ratio_str(cost_vs_floor(vals["plexus"], vals["raw"], lower)))
            cells.append(ratio_str(advantage(vals["plexus"], vals["dbus-broker"], lower)))
            cells.append(ratio_str(advantage(vals["plexus"], vals["dbus-daemon"], lower)))
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("| Large payloads | | | not measured yet: waits for the large-message issue | | | | | | |")
    return "\n".join(lines)


def goals(results, config):
    """[(goal, target, pinned, unpinned, met)] judged on the pinned run."""
    out = []
    n_idle = int(config.get("BENCH_IDLE_CLIENTS", "10000"))
    idle_note = "" if n_idle >= 10000 else f" ({n_idle:,} clients)"

    def v(mode, bus, test, key):
        x = value(results, mode, bus, test, key)
        return x if isinstance(x, float) else None

    def verdict(x, ok):
        if x is None:
            return "not measured"
        return "met" if ok(x) else "**missed**"

    for size, test in (("64 B", "rtt64"), ("4 KiB", "rtt4096")):
        r = {m: cost_vs_floor(v(m, "plexus", test, "p50_us"), v(m, "raw", test, "p50_us"), True)
             for m in MODES}
        out.append((f"Call round trip (p50, {size}) ≤ 2.5× the raw SEQPACKET floor", "≤ 2.50×",
                    ratio_str(r["pinned"]), ratio_str(r["unpinned"]),
                    verdict(r["pinned"], lambda x: x <= 2.5)))
    r = {m: advantage(v(m, "plexus", "pipeline", "calls_per_s"),
                      v(m, "dbus-broker", "pipeline", "calls_per_s"), False) for m in MODES}
    out.append(("Pipelined calls/s ≥ 3× dbus-broker", "≥ 3.00×", ratio_str(r["pinned"]),
                ratio_str(r["unpinned"]), verdict(r["pinned"], lambda x: x >= 3)))
    for n in (1, 10, 100):
        test = f"fanout{n}"
        r = {m: advantage(v(m, "plexus", test, "msgs_per_s"), v(m, "dbus-broker", test, "msgs_per_s"), False)
             for m in MODES}
        out.append((f"Fan-out msgs/s to {n} subscriber{'s' if n > 1 else ''} ≥ 2× dbus-broker", "≥ 2.00×",
                    ratio_str(r["pinned"]), ratio_str(r["unpinned"]),
                    verdict(r["pinned"], lambda x: x >= 2)))
    mem = {m: v(m, "plexus", "idle", "rss_per_client_b") for m in MODES}
    out.append(("10,000 idle clients cost ≤ 16 KiB of broker memory each", "≤ 16 384 B",
                fmt(mem["pinned"], "B") + " B" + idle_note if mem["pinned"] is not None else "",
                fmt(mem["unpinned"], "B") + " B" + idle_note if mem["unpinned"] is not None else "",
                verdict(mem["pinned"], lambda x: x <= 16384)))
    pr = {m: v(m, "plexus", "idle", "p99_ratio") for m in MODES}
    out.append(("Active pair p99 with 10,000 idle clients ≤ 2× without", "≤ 2.00×",
                ratio_str(pr["pinned"]) + (idle_note if pr["pinned"] is not None else ""),
                ratio_str(pr["unpinned"]) + (idle_note if pr["unpinned"] is not None else ""),
                verdict(pr["pinned"], lambda x: x <= 2)))
    return out


def goals_table(gl):
    lines = ["| Goal | Target | Measured, pinned | Measured, unpinned | Verdict (pinned) |",
             "|---|---|---|---|---|"]
    for g in gl:
        lines.append("| " + " | ".join(g) + " |")
    return "\n".join(lines)


def write_data(results, datadir):
    """gnuplot data: one row per group, one column per bus; ? = missing.
    modes.gp tells charts.gp which CPU modes have figures at all."""
    os.makedirs(datadir, exist_ok=True)
    with open(os.path.join(datadir, "modes.gp"), "w", encoding="utf-8") as f:
        for mode in MODES:
            have = any(m == mode and v is not None for (m, _, _), v in results.items())
            f.write(f"have_{mode} = {1 if have else 0}\n")

    def num(x):
        return f"{x:.3f}" if isinstance(x, float) else "?"

    for mode in MODES:
        with open(os.path.join(datadir, f"rtt-{mode}.dat"), "w", encoding="utf-8") as f:
            f.write("# group " + " ".join(BUSES) + "\n")
            for test, size in (("rtt64", "64 B"), ("rtt4096", "4 KiB")):
                for key, name in (("p50_us", "p50"), ("p99_us", "p99")):
                    f.write(f'"{size} {name}" ' + " ".join(num(value(results, mode, b, test, key))
                                                         for b in BUSES) + "\n")
        with open(os.path.join(datadir, f"fanout-{mode}.dat"), "w", encoding="utf-8") as f:
            f.write("# subscribers " + " ".join(BUSES) + "\n")
            for n in (1, 10, 100):
                f.write(f'"{n}" ' + " ".join(num(value(results, mode, b, f"fanout{n}", "msgs_per_s"))
                                              for b in BUSES) + "\n")
    for name, test, key in (("pipeline", "pipeline", "calls_per_s"), ("connect", "connect", "conn_per_s"),
                            ("memory", "idle", "rss_per_client_b")):
        with open(os.path.join(datadir, f"{name}.dat"), "w", encoding="utf-8") as f:
            f.write("# mode " + " ".join(BUSES) + "\n")
            for mode in MODES:
                f.write(f'"{mode}" ' + " ".join(num(value(results, mode, b, test, key)) for b in BUSES) + "\n")
    with open(os.path.join(datadir, "idle-p99.dat"), "w", encoding="utf-8") as f:
        f.write("# group " + " ".join(BUSES) + "\n")
        for mode in MODES:
            for key, name in (("base_p99_us", "alone"), ("idle_p99_us", "idle")):
                f.write(f'"{mode}: {name}" ' + " ".join(num(value(results, mode, b, "idle", key))
                                                        for b in BUSES) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--machine")
    ap.add_argument("--config")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()

    results = parse_results(args.results)
    machine = parse_kv_file(args.machine)
    config = parse_kv_file(args.config)
    table = build_table(results, config)
    gl = goals(results, config)
    gtable = goals_table(gl)

    print(table)
    print()
    print(gtable)

    os.makedirs(args.out, exist_ok=True)
    shutil.copyfile(args.results, os.path.join(args.out, "results.tsv"))
    write_data(results, args.data)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
        f.write("# Benchmark results\n\n")
        f.write(f"Written by `bench/run.sh` on {now}. How the figures are measured, and what\n"
                "they mean for the goals, is explained in [../performance.md](../performance.md).\n\n")
        f.write("## Machine\n\n")
        for k in ("cpus", "cpu", "kernel", "os", "plexus", "dbus-daemon", "dbus-broker", "compiler"):
            if k in machine:
                f.write(f"- {k}: {machine[k]}\n")
        f.write("\n## Results\n\n")
        f.write("\"pinned\": every process (brokers, servers, clients) ran on CPU 0 under\n"
                f"`taskset -c 0`; \"unpinned\": on all {machine.get('cpus', '?')} CPUs. "
                "\"plexus ÷ floor\": how many times the cost\n"
                "of the raw SOCK_SEQPACKET exchange between two processes plexus pays.\n"
                "\"plexus vs X\": how many times better plexus is than X (above 1: plexus is\n"
                "better; below 1: X is better). n/a: does not apply.\n\n")
        f.write(table + "\n\n")
        f.write("## Goals\n\nJudged on the pinned run (see the issue and ../performance.md).\n\n")
        f.write(gtable + "\n\n")
        f.write("## Charts\n\n")
        for png, title in (("rtt.png", "Call round trip"), ("pipeline.png", "Pipelined calls"),
                           ("fanout.png", "Publish fan-out"), ("connect.png", "Connection set-up"),
                           ("idle.png", "Idle clients")):
            f.write(f"![{title}]({png})\n\n")
        f.write("## Configuration of this run\n\n")
        for k in sorted(config):
            if k.startswith("BENCH_"):
                f.write(f"- `{k}={config[k]}`\n")
            else:
                f.write(f"- {k}: {config[k]}\n")
        f.write("\nRaw figures: [results.tsv](results.tsv) (one line per measurement, the\n"
                "key=value pairs printed by `plexus-bench`).\n")

    failed = [k for k, v in results.items() if v is None]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
