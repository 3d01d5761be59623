#!/usr/bin/env python3
"""Turn the results of bench/run.sh --large into a plain-text report.

    report-large.py --results FILE --machine FILE --config FILE

FILE of results: one line per measurement, tab-separated: CPU mode
("pinned" or "unpinned"), method, size in bytes, then the key=value pairs
printed by plexus-bench-large, or FAILED. Prints the tables, the ratios
against the goals and the crossovers between paths on stdout, followed by
the raw lines.

GB/s are of the median repetition (robust on a shared machine); the mean
over all repetitions and the best one are in the raw lines. CPU is seconds
of sender + broker + receiver(s) per GiB delivered, over the timed phase.
"""

import argparse
import datetime
import sys

MODES = ["pinned", "unpinned"]
METHODS = ["memcpy", "raw", "process-vm", "memfd", "buffer", "inline", "dbus"]
TITLES = {
    "memcpy": "memcpy",
    "raw": "raw sock",
    "process-vm": "proc_vm",
    "memfd": "memfd",
    "buffer": "plx_buf",
    "inline": "inline*",
    "dbus": "dbus-brk",
}
LARGE_PATHS = ["process-vm", "memfd", "buffer"]
FANOUT = ["fanout-memfd", "fanout-buffer", "fanout-process-vm"]
MiB = 1 << 20


def parse_results(path):
    """{(mode, method, size): dict, or None for FAILED}, and the raw lines"""
    results, lines = {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            lines.append(line)
            mode, method, size, rest = line.split("\t", 3)
            key = (mode, method, int(size))
            if rest.strip() == "FAILED":
                results[key] = None
                continue
            kv = {}
            for item in rest.split():
                k, _, v = item.partition("=")
                try:
                    kv[k] = float(v)
                except ValueError:
                    kv[k] = v
            results[key] = kv
    return results, lines


def parse_kv_file(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                out.append((k, v))
    return out


def size_name(n):
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def get(results, mode, method, size, key):
    r = results.get((mode, method, size))
    if not r or key not in r:
        return None
    return r[key]


def fmt(v, spec="{:.2f}"):
    if v is None:
        return "-"
    return spec.format(v)


def table(results, mode, sizes, key, spec, title):
    out = [title, ""]
    head = f"{'size':>9} |" + "".join(f" {TITLES[m]:>8} |" for m in METHODS)
    out.append(head)
    out.append("-" * len(head))
    for s in sizes:
        row = f"{size_name(s):>9} |"
        for m in METHODS:
            r = results.get((mode, m, s), "absent")
            if r is None:
                cell = "FAILED"
            elif r == "absent":
                cell = "-"
            else:
                cell = fmt(r.get(key), spec)
            row += f" {cell:>8} |"
        out.append(row)
    return out


def verdict(ok):
    if ok is None:
        return "not measured"
    return "met" if ok else "MISSED"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def goals(results, mode):
    out = [f"Goals ({mode}; GB/s of the median repetition)", ""]
    s16, s64 = 16 * MiB, 64 * MiB

    pv = get(results, mode, "process-vm", s16, "gbps_p50")
    db = get(results, mode, "dbus", s16, "gbps_p50")
    r = ratio(pv, db)
    out.append(f"  process_vm vs dbus-broker at 16 MiB: {fmt(pv)} / {fmt(db)} GB/s = "
               f"{fmt(r)}x (goal >= 10x): {verdict(None if r is None else r >= 10)}")

    mc = get(results, mode, "memcpy", s64, "gbps_p50")
    for m in LARGE_PATHS:
        g = get(results, mode, m, s64, "gbps_p50")
        r = ratio(g, mc)
        out.append(f"  {m} vs memcpy at 64 MiB: {fmt(g)} / {fmt(mc)} GB/s = "
                   f"{fmt(None if r is None else 100 * r, '{:.0f}')} % (goal >= 60 %): "
                   f"{verdict(None if r is None else r >= 0.6)}")

    out.append("")
    out.append("  CPU seconds per GiB (sender + broker + receiver) vs the inline path. One frame")
    out.append("  holds at most 128 KiB, so inline above a frame is impossible: 'inline' is the")
    out.append("  payload in consecutive calls of 120 KiB each. Ratio = inline / large path")
    out.append("  (above 1: the large path costs less CPU).")
    sizes = sorted({k[2] for k in results if k[0] == mode and k[1] in METHODS})
    for s in sizes:
        inl = get(results, mode, "inline", s, "cpu_s_per_gib")
        cells = []
        for m in LARGE_PATHS:
            c = get(results, mode, m, s, "cpu_s_per_gib")
            cells.append(f"{m} {fmt(c, '{:.3f}')} ({fmt(ratio(inl, c))}x)")
        out.append(f"    {size_name(s):>8}: inline {fmt(inl, '{:.3f}')}; " + "; ".join(cells))
    return out


def crossovers(results, mode):
    out = [f"Crossovers ({mode})", ""]
    sizes = sorted({k[2] for k in results if k[0] == mode and k[1] in METHODS})

    out.append("  memfd vs process_vm (GB/s of the median repetition; CPU s/GiB):")
    for s in sizes:
        pv = get(results, mode, "process-vm", s, "gbps_p50")
        mf = get(results, mode, "memfd", s, "gbps_p50")
        bf = get(results, mode, "buffer", s, "gbps_p50")
        pvc = get(results, mode, "process-vm", s, "cpu_s_per_gib")
        mfc = get(results, mode, "memfd", s, "cpu_s_per_gib")
        win = "-"
        if pv is not None and mf is not None:
            win = "process_vm" if pv > mf else "memfd"
        out.append(f"    {size_name(s):>8}: process_vm {fmt(pv)}, memfd {fmt(mf)}, plx_buffer {fmt(bf)} GB/s"
                   f" -> faster: {win}; CPU process_vm {fmt(pvc, '{:.3f}')}, memfd {fmt(mfc, '{:.3f}')}")

    out.append("")
    out.append("  Large path vs inline, for the threshold: the smallest size from which the large")
    out.append("  path is better at every larger measured size up to 1 MiB, by CPU per GiB,")
    out.append("  median GB/s and fastest GB/s:")
    for m in LARGE_PATHS:
        cells = []
        for key, better, title in (("cpu_s_per_gib", lambda a, b: a < b, "CPU"),
                                   ("gbps_p50", lambda a, b: a > b, "median GB/s"),
                                   ("gbps_best", lambda a, b: a > b, "fastest GB/s")):
            first = None
            for s in sizes:
                if s > MiB:
                    break
                g = get(results, mode, m, s, key)
                i = get(results, mode, "inline", s, key)
                if g is None or i is None:
                    continue
                if better(g, i):
                    if first is None:
                        first = s
                else:
                    first = None
            cells.append(f"{title}: " + (f"from {size_name(first)}" if first else "never"))
        out.append(f"    {m}: " + "; ".join(cells))
    return out


def fanout(results, mode):
    out = [f"Fan-out ({mode}): one signal to several subscribers, each sums it", ""]
    for m in FANOUT:
        for (md, meth, s), r in sorted(results.items()):
            if md != mode or meth != m:
                continue
            if r is None:
                out.append(f"  {m:18} {size_name(s)}: FAILED")
                continue
            out.append(f"  {m:18} {size_name(s)} to {int(r['receivers'])}: "
                       f"{fmt(r.get('gbps_p50'))} GB/s delivered (median), "
                       f"{fmt(r.get('p50_ms'), '{:.1f}')} ms per signal, "
                       f"CPU {fmt(r.get('cpu_s_per_gib'), '{:.3f}')} s/GiB delivered")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--config", required=True)
    a = ap.parse_args()

    results, lines = parse_results(a.results)
    out = [f"Plexus large-message benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
           "(bench/run.sh --large; docs/performance.md explains the method)", ""]
    out.append("Machine:")
    for k, v in parse_kv_file(a.machine):
        out.append(f"  {k}: {v}")
    for mode in MODES:
        r = results.get((mode, "syscall", 8))
        if r:
            out.append(f"  null system call (getppid), {mode}: {r['ns_per_call_min']:.0f} ns (fastest loop), "
                       f"{r['ns_per_call_p50']:.0f} ns (median loop), {r['ns_per_call_cpu']:.0f} ns of CPU")
            if "first_touch_ns_per_4k" in r:
                out.append(f"  first write to a fresh 4 KiB page (fault + zeroing), {mode}: "
                           f"{r['first_touch_ns_per_4k']:.0f} ns of CPU; writing it again: "
                           f"{r['rewrite_gbps']:.1f} GB/s")
    out.append("Configuration:")
    for k, v in parse_kv_file(a.config):
        out.append(f"  {k}: {v}")
    out.append("")
    out.append("Methods: memcpy = memcpy() + sum in one process (the bound); raw sock = AF_UNIX")
    out.append("stream socketpair, write / read into a buffer / 8-byte answer; proc_vm = plexus")
    out.append("PLX_LARGE_PROCESS_VM, sync plx_bus_call(); memfd = PLX_LARGE_MEMFD (library copies")
    out.append("into a sealed memfd); plx_buf = plx_bus_call_buffer() of a plx_buffer the sender")
    out.append("filled (filling is untimed, see prep_seconds); inline* = PLX_LARGE_INLINE, the")
    out.append("payload in calls of 120 KiB; dbus-brk = sd_bus_call() of Sum(ay) via dbus-broker.")
    out.append("Every receiver sums every 8-byte word and answers with the sum, checked.")

    modes = [m for m in MODES if any(k[0] == m for k in results)]
    for mode in modes:
        sizes = sorted({k[2] for k in results if k[0] == mode and k[1] in METHODS})
        out.append("")
        out.append(f"=== {mode} ===")
        out.append("")
        out += table(results, mode, sizes, "gbps_p50", "{:.2f}",
                     f"GB/s ({mode}, median repetition; higher is better)")
        out.append("")
        out += table(results, mode, sizes, "gbps_best", "{:.2f}",
                     f"GB/s ({mode}, fastest repetition: what the path does when no other task "
                     "holds the CPU it needs)")
        out.append("")
        out += table(results, mode, sizes, "cpu_s_per_gib", "{:.3f}",
                     f"CPU seconds per GiB, sender + broker + receiver ({mode}; lower is better)")
        out.append("")
        out += fanout(results, mode)
        out.append("")
        out += goals(results, mode)
        out.append("")
        out += crossovers(results, mode)

    failed = [k for k, v in results.items() if v is None]
    if failed:
        out.append("")
        out.append("FAILED: " + ", ".join(f"{m} {meth} {size_name(s)}" for m, meth, s in failed))
    out.append("")
    out.append("Raw results (mode, method, size, plexus-bench-large output):")
    out += lines
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
