#!/usr/bin/env python3
"""Turns netpool_bench's Google Benchmark JSON into the README's markdown tables and charts.

    scripts/bench_report.py bench/results/results.json --out-dir bench/results \
        --build-dir build-bench --command "scripts/bench.sh"

Prints the markdown (method first: machine, compiler, flags, command), writes it to
<out-dir>/results.md, and draws <out-dir>/get_put.png (ns per get+put by thread count, one line per
contender, log y) and <out-dir>/get_put_work.png with gnuplot. Cells are medians: Google Benchmark's
"median" aggregates when the run had repetitions, else the median of the runs present. Ratios are
against the hand-written mutex pool measured in the same run (ratios across runs are meaningless:
contended figures move 2-3x between runs on a shared 2-core VM).

Only the Python standard library is used; gnuplot (Debian: gnuplot-nox) is optional: without it the
charts are skipped with a message.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict

CONTENDERS = ["netpool_standard", "netpool_basic", "netpool_basic_unfair", "mutex_pool", "poco_objectpool",
              "apr_reslist", "tbb_queue", "moodycamel_queue"]
BASELINE = "mutex_pool"
ECHO_VARIANTS = ["netpool_standard", "netpool_basic", "mutex_pool", "dial_per_request", "shared_connection"]
TO_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


# ---- reading ----------------------------------------------------------------------------------

class Result:
    """One benchmark (one name, i.e. one thread count / argument), reduced to its median."""

    def __init__(self, section, contender, args, threads, real_ns, counters, error=None):
        self.section = section      # "get_put", "handoff", "scaling/get_put", ...
        self.contender = contender  # "mutex_pool", "dial_per_request", "work_only", ...
        self.args = args            # {"max": 4} / {"size": 100}
        self.threads = threads
        self.real_ns = real_ns      # real time per iteration, ns
        self.counters = counters
        self.error = error

    @property
    def ns_per_op(self):
        """Wall time from the start of the run until its last thread finished, per op of all threads.

        netpool_bench's wall_ns_per_op counter; Google Benchmark's own real time is the mean of the
        threads' wall times, which flatters pools that let one thread finish early."""
        wall = self.counters.get("wall_ns_per_op")
        if wall:
            return wall
        rate = self.counters.get("items_per_second")
        if rate:
            return 1e9 / rate
        return self.real_ns

    @property
    def ops_per_second(self):
        ns = self.ns_per_op
        return 1e9 / ns if ns else 0.0


def parse_name(name):
    parts = name.split("/")
    threads = 1
    args = {}
    rest = []
    for part in parts:
        if part in ("real_time", "manual_time", "process_time"):
            continue
        m = re.fullmatch(r"(\w+):(\d+)", part)
        if m:
            key, value = m.group(1), int(m.group(2))
            if key == "threads":
                threads = value
            elif key not in ("iterations", "repeats", "min_time"):
                args[key] = value
            continue
        rest.append(part)
    if rest and rest[0] == "scaling" and len(rest) >= 3:
        return "scaling/" + rest[1], rest[2], args, threads
    return rest[0], (rest[1] if len(rest) > 1 else ""), args, threads


COUNTER_SKIP = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads", "iterations",
                "real_time", "cpu_time", "time_unit", "family_index", "per_family_instance_index",
                "aggregate_name", "aggregate_unit", "error_occurred", "error_message", "label"}


def load(path):
    with open(path) as f:
        data = json.load(f)
    runs = data.get("benchmarks", [])
    has_median = any(r.get("run_type") == "aggregate" and r.get("aggregate_name") == "median" for r in runs)
    grouped = defaultdict(list)
    errors = {}
    for r in runs:
        run_name = r.get("run_name", r["name"])
        if r.get("error_occurred"):
            errors[run_name] = r.get("error_message", "error")
            continue
        if has_median:
            if r.get("run_type") == "aggregate" and r.get("aggregate_name") == "median":
                grouped[run_name].append(r)
        elif r.get("run_type", "iteration") == "iteration":
            grouped[run_name].append(r)
    results = []
    for run_name, rs in grouped.items():
        section, contender, args, threads = parse_name(run_name)
        unit = TO_NS.get(rs[0].get("time_unit", "ns"), 1.0)
        real_ns = statistics.median(r["real_time"] * unit for r in rs)
        keys = {k for r in rs for k, v in r.items() if k not in COUNTER_SKIP and isinstance(v, (int, float))}
        counters = {k: statistics.median(r[k] for r in rs if k in r) for k in keys}
        results.append(Result(section, contender, args, threads, real_ns, counters))
    for run_name, message in errors.items():
        if run_name in grouped:
            continue
        section, contender, args, threads = parse_name(run_name)
        results.append(Result(section, contender, args, threads, None, {}, error=message))
    return data.get("context", {}), results


def index(results):
    """(section, contender, frozenset(args), threads) -> Result"""
    return {(r.section, r.contender, frozenset(r.args.items()), r.threads): r for r in results}


# ---- formatting -------------------------------------------------------------------------------

def fmt_ns(ns):
    if ns is None:
        return "—"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    if ns >= 100:
        return f"{ns:.0f} ns"
    return f"{ns:.1f} ns"


def fmt_signed_ns(ns):
    """+3.1 ns / −1.6 ns: a difference, with a real minus sign."""
    return ("+" if ns >= 0 else "−") + fmt_ns(abs(ns))


def fmt_signed_ratio(x):
    return ("" if x >= 0 else "−") + f"{abs(x):.2f}×"


def fmt_ratio(value, base):
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}×)"


def fmt_bytes(b):
    if b is None:
        return "—"
    if abs(b) >= 1 << 20:
        return f"{b / (1 << 20):.1f} MiB"
    if abs(b) >= 1 << 10:
        return f"{b / (1 << 10):.1f} KiB"
    return f"{b:.0f} B"


def fmt_count(x):
    if x is None:
        return "—"
    if x == 0:
        return "0"
    if abs(x) < 0.001:
        return f"{x:.1e}"
    if abs(x) < 10:
        return f"{x:.3g}"
    return f"{x:.0f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def present(results, section):
    names = {r.contender for r in results if r.section == section}
    ordered = [c for c in CONTENDERS + ECHO_VARIANTS if c in names]
    seen = set()
    ordered = [c for c in ordered if not (c in seen or seen.add(c))]
    return ordered + sorted(names - set(ordered))


def threads_of(results, section, args=frozenset()):
    return sorted({r.threads for r in results if r.section == section and frozenset(r.args.items()) == args})


def error_note(results, section):
    errs = [r for r in results if r.section == section and r.error]
    if not errs:
        return ""
    lines = [f"- `{r.section}/{r.contender}` {dict(r.args) or ''} threads {r.threads}: skipped: {r.error}"
             for r in errs]
    return "\n\nSkipped:\n" + "\n".join(lines)


# ---- sections ---------------------------------------------------------------------------------

def get_put_table(results, idx, section, title, explanation):
    contenders = present(results, section)
    if not contenders:
        return None
    threads = threads_of(results, section)
    rows = []
    for c in contenders:
        row = [f"`{c}`"]
        allocs = []
        for t in threads:
            r = idx.get((section, c, frozenset(), t))
            base = idx.get((section, BASELINE, frozenset(), t))
            if r is None or r.error:
                row.append("skipped" if r is not None else "—")
                continue
            row.append(fmt_ns(r.ns_per_op) + fmt_ratio(r.ns_per_op, base.ns_per_op if base and not base.error else None))
            allocs.append(r.counters.get("allocs_per_op", 0.0))
        row.append(fmt_count(max(allocs)) if allocs else "—")
        rows.append(row)
    header = ["contender"] + [f"{t} thread" + ("s" if t > 1 else "") for t in threads] + ["allocs/op (max)"]
    return f"### {title}\n\n{explanation}\n\n" + table(header, rows) + error_note(results, section)


def work_table(results, idx):
    section = "get_put_work"
    contenders = [c for c in present(results, section) if c != "work_only"]
    if not contenders:
        return None
    threads = threads_of(results, section)
    work = {t: idx.get((section, "work_only", frozenset(), t)) for t in threads}
    rows = []
    for c in contenders:
        row = [f"`{c}`"]
        for t in threads:
            r = idx.get((section, c, frozenset(), t))
            w = work.get(t)
            base = idx.get((section, BASELINE, frozenset(), t))
            if r is None or r.error or w is None or w.error:
                row.append("—")
                continue
            above = r.ns_per_op - w.ns_per_op
            base_above = base.ns_per_op - w.ns_per_op if base and not base.error else None
            ratio = f" ({fmt_signed_ratio(above / base_above)})" if base_above and base_above > 0 else ""
            cs = r.counters.get("ctx_switches_per_op")
            cell = f"{fmt_signed_ns(above)}{ratio}"
            row.append(f"{cell}, {fmt_count(cs)} cs/op" if cs is not None else cell)
        rows.append(row)
    work_row = ["work alone"] + [fmt_ns(work[t].ns_per_op) if work.get(t) and not work[t].error else "—"
                                 for t in threads]
    rows.append(work_row)
    header = ["contender"] + [f"{t} threads" for t in threads]
    return ("### With ~100 ns of work held (`get_put_work/…`)\n\n"
            "Cost above the work alone (ns per op minus `get_put_work/work_only`), ratio against the mutex "
            "pool's cost above the work, and voluntary context switches per op (whole process, getrusage).\n\n"
            + table(header, rows) + error_note(results, section))


def handoff_tables(results, idx):
    section = "handoff"
    contenders = present(results, section)
    if not contenders:
        return None
    maxes = sorted({r.args.get("max") for r in results if r.section == section and "max" in r.args})
    out = ["### Exhaustion and hand-off (`handoff/…`)\n\n"
           "max = min = 1 or 4 connections, each held ~1 µs, ~1 µs of work between gets; ns per get+put "
           "(ratio vs mutex pool), then get latency p50 / p99 / max over all threads. The ideal on 2 cores "
           "is ~1 µs per op."]
    for m in maxes:
        args = frozenset({"max": m}.items())
        threads = threads_of(results, section, args)
        rows = []
        for c in contenders:
            row = [f"`{c}`"]
            for t in threads:
                r = idx.get((section, c, args, t))
                base = idx.get((section, BASELINE, args, t))
                if r is None or r.error:
                    row.append("—")
                    continue
                ratio = fmt_ratio(r.ns_per_op, base.ns_per_op if base and not base.error else None)
                p = r.counters
                row.append(f"{fmt_ns(r.ns_per_op)}{ratio}; {fmt_ns(p.get('get_p50_ns'))} / "
                           f"{fmt_ns(p.get('get_p99_ns'))} / {fmt_ns(p.get('get_max_ns'))}")
            rows.append(row)
        out.append(f"**max {m}**\n\n" + table(["contender"] + [f"{t} threads" for t in threads], rows))
    return "\n\n".join(out) + error_note(results, section)


def scaling_tables(results, idx):
    out = []
    explain = {
        "scaling/get_put": "get + put (pool of max = min = size, all connections open and idle; the hint path)",
        "scaling/get_put_burst": "get ×3 + put ×3 with half the pool lent out for the whole run (max = min = "
                                 "size; netpool: the hint and the walked-slot cache); ns per get+put",
        "scaling/get_put_walk": "get ×12 + put ×12 with half the pool lent out for the whole run (max = min = "
                                "size; netpool: two gets in three walk the idle bitmap); ns per get+put",
        "scaling/try_get_exhausted": "a get that never waits (netpool's `try_get()`) on a pool whose "
                                     "connections are all lent (max = min = size); ns per get, each finding "
                                     "nothing. `apr_reslist` has no such get",
    }
    for section, what in explain.items():
        contenders = present(results, section)
        if not contenders:
            continue
        sizes = sorted({r.args.get("size") for r in results if r.section == section})
        for t in sorted({r.threads for r in results if r.section == section}):
            rows = []
            for c in contenders:
                row = [f"`{c}`"]
                by_size = {}
                for s in sizes:
                    r = idx.get((section, c, frozenset({"size": s}.items()), t))
                    by_size[s] = r.ns_per_op if r is not None and not r.error else None
                    row.append(fmt_ns(by_size[s]) if r is not None and not r.error else ("skipped" if r else "—"))
                if by_size.get(10000) and by_size.get(100):
                    row.append(f"{by_size[10000] / by_size[100]:.2f}×")
                else:
                    row.append("—")
                rows.append(row)
            header = ["contender"] + [f"size {s}" for s in sizes] + ["10 000 / 100"]
            out.append(f"**`{section}`, {plural(t)}**: {what}\n\n" + table(header, rows))
        out[-1] += error_note(results, section)
    section = "scaling/try_get_exhausted_stripes"
    striped = sorted((r for r in results if r.section == section), key=lambda r: (r.args.get("size", 0),
                                                                                  r.args.get("stripes", 0)))
    if striped:
        rows = [[f"`{r.contender}`", f"{r.args.get('size')}", f"{r.args.get('stripes')}",
                 fmt_ns(r.ns_per_op) if not r.error else "skipped"] for r in striped]
        out.append(f"**`{section}`, 1 thread**: the same get on netpool's pool with its idle bitmap in a given "
                   "number of stripes (pinned for the benchmark; netpool gives a pool of more than 64 slots one "
                   "stripe per CPU, up to 8): what the get pays on a machine of that many CPUs\n\n"
                   + table(["contender", "size", "stripes", "ns per get"], rows) + error_note(results, section))
    section = "scaling/create_close"
    contenders = present(results, section)
    if contenders:
        maxes = sorted({r.args.get("max") for r in results if r.section == section})
        rows = []
        for c in contenders:
            row = [f"`{c}`"]
            for m in maxes:
                r = idx.get((section, c, frozenset({"max": m}.items()), 1))
                row.append(fmt_ns(r.real_ns) if r is not None and not r.error else "—")
            rows.append(row)
        out.append("**create + close an empty pool** (min 0: no connection dialed)\n\n"
                   + table(["contender"] + [f"max {m}" for m in maxes], rows) + error_note(results, section))
    if not out:
        return None
    return "### Scaling (`scaling/…`)\n\n" + "\n\n".join(out)


def echo_table(results, idx):
    section = "echo"
    variants = present(results, section)
    if not variants:
        return None
    threads = threads_of(results, section)
    rows = []
    for v in variants:
        row = [f"`{v}`"]
        for t in threads:
            r = idx.get((section, v, frozenset(), t))
            dial = idx.get((section, "dial_per_request", frozenset(), t))
            if r is None or r.error:
                row.append("—")
                continue
            rps = r.ops_per_second
            vs = ""
            if dial and not dial.error and dial.ops_per_second:
                vs = f" ({rps / dial.ops_per_second:.1f}× dial)"
            share = r.counters.get("pool_share")
            row.append(f"{rps / 1e3:.1f}k req/s{vs}, {share * 100:.2f}% in pool" if share is not None
                       else f"{rps / 1e3:.1f}k req/s{vs}")
        rows.append(row)
    return ("### With real work: 64-byte loopback echo (`echo/…`)\n\n"
            "Requests per second over all threads (and against dialing per request), and the share of each "
            "request's time spent getting and returning the connection (dial + close for "
            "`dial_per_request`, waiting for the mutex for `shared_connection`).\n\n"
            + table(["variant"] + [f"{t} thread" + ("s" if t > 1 else "") for t in threads], rows)
            + error_note(results, section))


def memory_table(results, idx):
    section = "memory"
    contenders = present(results, section)
    if not contenders:
        return None
    maxes = sorted({r.args.get("max") for r in results if r.section == section})
    rows = []
    for c in contenders:
        row = [f"`{c}`"]
        conn = None
        for m in maxes:
            r = idx.get((section, c, frozenset({"max": m}.items()), 1))
            row.append(fmt_bytes(r.counters.get("pool_bytes")) if r is not None and not r.error else "—")
            if r is not None and not r.error and conn is None:
                conn = r.counters.get("conn_bytes")
        row.append(fmt_bytes(conn))
        rows.append(row)
    return ("### Memory (`memory/…`)\n\n"
            "Heap kept by an empty pool, and heap added per open connection (100 opened), from the counting "
            "allocator in the benchmark binary (malloc usable sizes). Kernel socket buffers are not heap. "
            "APR takes its pool memory with mmap on Debian, so `apr_reslist`'s blocks do not appear here.\n\n"
            + table(["contender"] + [f"pool, max {m}" for m in maxes] + ["per connection"], rows)
            + error_note(results, section))


# ---- targets (issue 4) --------------------------------------------------------------------------

def plural(n, word="thread"):
    return f"{n} {word}" + ("" if n == 1 else "s")


# Sections where netpool's get and put run, for the zero-allocation target (create_close and
# memory allocate on purpose: they measure a pool's own memory).
GET_PUT_SECTIONS = ["get_put", "get_put_work", "get_put_burst", "get_put_walk", "handoff", "scaling/get_put",
                    "scaling/get_put_burst", "scaling/get_put_walk"]


def targets(results, idx):
    def get(section, c, t, args=frozenset()):
        r = idx.get((section, c, args, t))
        return None if r is None or r.error else r

    lines = []

    def check(label, ok, detail):
        lines.append(f"- {'met' if ok else '**MISSED**'}: {label} — {detail}")

    def not_measured(label, why):
        """A target this run cannot check says so, instead of vanishing from the list."""
        lines.append(f"- **NOT MEASURED**: {label} — {why}")

    def not_counted(label, why):
        lines.append(f"- not counted: {label} — {why}")

    def why_missing(*pairs):
        """The reason a check lacks data: the first (name, result) whose benchmark is absent or failed."""
        for name, (section, c, t, args) in pairs:
            r = idx.get((section, c, args, t))
            if r is None:
                return f"`{name}` did not run"
            if r.error:
                return f"`{name}` was skipped: {r.error}"
        return "no data"

    def speed_targets(section, path, all_threads=(1, 2, 4, 16)):
        """issue 4's get+put targets, on the hint path (get_put), the hint and the cache of walked slots
        (get_put_burst) or the walk (get_put_walk)."""
        for t in (1, 2):
            b, m = get(section, "netpool_basic", t), get(section, BASELINE, t)
            label = f"Basic ≤ 0.5× mutex pool, {plural(t)}{path}"
            if b and m:
                check(label, b.ns_per_op <= 0.5 * m.ns_per_op, f"{b.ns_per_op / m.ns_per_op:.2f}×")
            else:
                not_measured(label, why_missing(("basic", (section, "netpool_basic", t, frozenset())),
                                                ("mutex", (section, BASELINE, t, frozenset()))))
        for t in all_threads:
            b = get(section, "netpool_basic", t)
            others = [(c, get(section, c, t)) for c in CONTENDERS if not c.startswith("netpool")]
            others = [(c, r) for c, r in others if r]
            label = f"Basic faster than every other contender, {plural(t)}{path}"
            if b and others:
                best_c, best = min(others, key=lambda cr: cr[1].ns_per_op)
                check(label, b.ns_per_op < best.ns_per_op,
                      f"{fmt_ns(b.ns_per_op)} vs best other `{best_c}` {fmt_ns(best.ns_per_op)}")
            else:
                not_measured(label, why_missing(("basic", (section, "netpool_basic", t, frozenset()))))
            s_ = get(section, "netpool_standard", t)
            label = f"Standard ≤ 1.5× Basic, {plural(t)}{path}"
            if b and s_:
                check(label, s_.ns_per_op <= 1.5 * b.ns_per_op, f"{s_.ns_per_op / b.ns_per_op:.2f}×")
            else:
                not_measured(label, why_missing(("standard", (section, "netpool_standard", t, frozenset())),
                                                ("basic", (section, "netpool_basic", t, frozenset()))))

    speed_targets("get_put", "")
    speed_targets("get_put_burst", " (3 held per thread: the hint and the walked-slot cache)")
    speed_targets("get_put_walk", " (walk: 12 held per thread, two gets in three walk)", (1, 2, 4))

    for c in ("netpool_standard", "netpool_basic"):
        allocs = [(r.counters.get("allocs_per_op"), r) for r in results
                  if r.contender == c and r.section in GET_PUT_SECTIONS and not r.error]
        label = f"0 heap allocations per op, `{c}` (every get+put benchmark)"
        if not allocs or any(a is None for a, _ in allocs):
            not_measured(label, "no allocs_per_op counter")
            continue
        worst, where = max(allocs, key=lambda ar: ar[0])
        check(label, worst == 0,
              f"max {fmt_count(worst)} allocs/op over {len(allocs)} benchmarks"
              + ("" if worst == 0 else f" (`{where.section}`, {plural(where.threads)})"))

    for t in (2, 4, 16):
        w, m = get("get_put_work", "work_only", t), get("get_put_work", BASELINE, t)
        for c in ("netpool_basic", "netpool_standard"):
            n = get("get_put_work", c, t)
            label = f"with ~100 ns work, `{c}` above the work ≤ 1/3 of the mutex pool's, {plural(t)}"
            if n and w and m and m.ns_per_op > w.ns_per_op:
                above, base = n.ns_per_op - w.ns_per_op, m.ns_per_op - w.ns_per_op
                check(label, above <= base / 3, f"{fmt_signed_ns(above)} vs {fmt_signed_ns(base)}")
            elif n and w and m:
                not_measured(label, "the mutex pool measured at or below the work alone (noise)")
            else:
                not_measured(label, why_missing(("work", ("get_put_work", c, t, frozenset())),
                                                ("work_only", ("get_put_work", "work_only", t, frozenset())),
                                                ("mutex", ("get_put_work", BASELINE, t, frozenset()))))

    for section, path in (("scaling/get_put", " (hint path: all idle, 1 held per thread)"),
                          ("scaling/get_put_burst", " (half the pool lent, 3 held per thread)"),
                          ("scaling/get_put_walk", " (walk: half the pool lent, 12 held per thread)")):
        for c in ("netpool_standard", "netpool_basic"):
            for t in (1, 2):
                small, large = frozenset({"size": 100}.items()), frozenset({"size": 10000}.items())
                a, z = get(section, c, t, small), get(section, c, t, large)
                label = f"`{c}` at 10 000 connections within 1.2× of 100, {plural(t)}{path}"
                if a and z:
                    check(label, z.ns_per_op <= 1.2 * a.ns_per_op,
                          f"{z.ns_per_op / a.ns_per_op:.2f}× ({fmt_ns(a.ns_per_op)} → {fmt_ns(z.ns_per_op)})")
                else:
                    not_measured(label, why_missing(("size 100", (section, c, t, small)),
                                                    ("size 10 000", (section, c, t, large))))

    maxes = sorted({r.args.get("max") for r in results if r.section == "handoff"})
    for c in ("netpool_standard", "netpool_basic", "netpool_basic_unfair"):
        for m in maxes:
            args = frozenset({"max": m}.items())
            for t in threads_of(results, "handoff", args):
                n, b = get("handoff", c, t, args), get("handoff", BASELINE, t, args)
                label = f"hand-off `{c}` max {m}, {plural(t)}: no slower than the mutex pool, lower p99"
                if t <= m:
                    not_counted(label, "no more threads than connections: no get waits, so no hand-off")
                elif n and b:
                    check(label,
                          n.ns_per_op <= b.ns_per_op and n.counters.get("get_p99_ns", 0) < b.counters.get("get_p99_ns", 0),
                          f"{fmt_ns(n.ns_per_op)} vs {fmt_ns(b.ns_per_op)}, p99 {fmt_ns(n.counters.get('get_p99_ns'))} "
                          f"vs {fmt_ns(b.counters.get('get_p99_ns'))}")
                else:
                    not_measured(label, why_missing((c, ("handoff", c, t, args)), ("mutex", ("handoff", BASELINE, t, args))))

    for c in ("netpool_standard", "netpool_basic"):
        for t in threads_of(results, "echo"):
            n, d = get("echo", c, t), get("echo", "dial_per_request", t)
            if n:
                check(f"echo `{c}`, {plural(t)}: pool share < 1%", n.counters.get("pool_share", 1) < 0.01,
                      f"{n.counters.get('pool_share', 0) * 100:.2f}%")
                label = f"echo `{c}`, {plural(t)}: several times the requests/s of dialing per request"
                if d and d.ops_per_second:
                    ratio = n.ops_per_second / d.ops_per_second
                    check(label, ratio >= 3, f"{ratio:.1f}×")
                else:
                    not_measured(label, why_missing(("dial", ("echo", "dial_per_request", t, frozenset()))))
    if not lines:
        return None
    met = sum(1 for line in lines if line.startswith("- met"))
    missed = sum(1 for line in lines if line.startswith("- **MISSED**"))
    unmeasured = sum(1 for line in lines if line.startswith("- **NOT MEASURED**"))
    summary = f"{met} met, {missed} missed" + (f", {unmeasured} not measured" if unmeasured else "")
    return ("### Targets of issue 4 (checked within this run)\n\n"
            "Instruction counts and system calls per get+put come from `scripts/instructions.sh`, not from "
            f"this run. Here: {summary}.\n\n" + "\n".join(lines))


# ---- method -----------------------------------------------------------------------------------

def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def method(context, args, idx):
    # The machine and the compiler as the run recorded them (bench/build_info.cpp); the reporting
    # host's only for a results.json from before they were recorded.
    model = context.get("netpool_bench.cpu_model", "")
    if not model:
        for line in run(["lscpu"]).splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    cpus = str(context.get("num_cpus", "")) or run(["nproc"]) or "?"
    kernel = context.get("netpool_bench.kernel") or f"{platform.system()} {platform.release()}"
    compiler, flags = context.get("netpool_bench.compiler", ""), ""
    if args.build_dir:
        cc_path = os.path.join(args.build_dir, "compile_commands.json")
        if os.path.exists(cc_path):
            with open(cc_path) as f:
                for entry in json.load(f):
                    if entry.get("file", "").endswith(os.path.join("bench", "main.cpp")):
                        cmd = entry.get("command") or " ".join(entry.get("arguments", []))
                        words = cmd.split()
                        if words and not compiler:
                            compiler = (run([words[0], "--version"]).splitlines() or [""])[0]
                        flags = " ".join(w for w in words[1:]
                                         if w.startswith(("-O", "-std", "-f", "-m", "-W", "-g")) or w == "-DNDEBUG")
                        break
    lines = [
        f"- Machine: {model or platform.processor() or '?'}, {cpus} CPUs, {kernel}",
        f"- Compiler: {compiler or '?'}",
        f"- Flags: `{flags or '?'}`",
        f"- Google Benchmark{(' ' + context['library_version']) if context.get('library_version') else ''} "
        f"(library built as {context.get('library_build_type', '?')}), run {context.get('date', '?')}",
    ]
    versions = [(name, context.get(f"netpool_bench.{key}_version")) for name, key in
                (("Poco", "poco"), ("APR", "apr"), ("APR-util", "apr_util"), ("oneTBB", "tbb"),
                 ("concurrentqueue", "concurrentqueue"))]
    if any(v for _, v in versions):
        lines.append("- Contenders built against: " + ", ".join(f"{n} {v or '?'}" for n, v in versions))
    load = context.get("load_avg")
    if load:
        lines.append(f"- Load average when the run started: {', '.join(f'{x:.2f}' for x in load)} "
                     "(other processes on a 2-core machine move contended figures a lot)")
    if args.command:
        lines.append(f"- Command: `{args.command}`")
    if args.run_flags:
        lines.append(f"- Benchmark flags: `{args.run_flags}`")
    busy = context.get("netpool_bench.busy_work_ns_per_iteration")
    if busy:
        lines.append(f"- Busy work: {float(busy):.3f} ns per loop step (calibrated at start-up); "
                     f"~100 ns = {context.get('netpool_bench.work_100ns_iterations', '?')} steps")
    round_trip = context.get("netpool_bench.line_round_trip_ns")
    if round_trip:
        lines.append(f"- Cache line round trip between the two CPUs: {float(round_trip):.0f} ns (two spinning threads "
                     "hand one line back and forth, measured at start-up, median of 5 rounds): what a line that "
                     "both CPUs write costs per hand-over, so every contended figure below moves with it "
                     "from host to host")
    trip = idx.get(("machine", "line_round_trip", frozenset(), 1))
    if trip and not trip.error:
        lines.append(f"- Cache line round trip between the two CPUs (`machine/line_round_trip`: two spinning "
                     f"threads hand one line back and forth): {fmt_ns(trip.real_ns)}, median of the run. A line "
                     "that both CPUs write costs a one-way trip per hand-over, so the contended figures below "
                     "move with it; it depends on where the host put the two vCPUs")
    lines.append("- ns per op = wall time from the start of a run until its last thread finishes, divided by the "
                 "ops of all threads (the `wall_ns_per_op` counter; Google Benchmark's `real_time` is the mean of "
                 "the threads' wall times, which flatters a pool that lets one thread finish early), median of "
                 "the repetitions. Every contender pools real loopback TCP connections (max 100, min 50 "
                 "pre-filled) to a server the benchmark forks; nothing is pinned.")
    return "## Method\n\n" + "\n".join(lines)


# ---- charts -----------------------------------------------------------------------------------

def chart(results, idx, section, out_png, title, ylabel, value, log_y=True):
    """One line per contender. On a log y axis a value <= 0 cannot be drawn: such a point is left
    out and the contender's legend entry says so, so no contender silently disappears."""
    if not shutil.which("gnuplot"):
        print(f"(gnuplot not found: {out_png} not drawn; Debian: apt-get install gnuplot-nox)", file=sys.stderr)
        return False
    contenders = [c for c in present(results, section) if c != "work_only"]
    threads = threads_of(results, section)
    if not contenders or not threads:
        return False
    data_path = out_png[:-4] + ".dat"
    dropped = defaultdict(list)
    with open(data_path, "w") as f:
        f.write("threads " + " ".join(contenders) + "\n")
        for t in threads:
            cells = []
            for c in contenders:
                v = value(c, t)
                drawable = v is not None and (v > 0 or not log_y)
                if v is not None and not drawable:
                    dropped[c].append(t)
                cells.append(f"{v:.4g}" if drawable else "NaN")
            f.write(f"{t} " + " ".join(cells) + "\n")

    def legend(c):
        if not dropped[c]:
            return c
        return f"{c} (not drawn at {', '.join(map(str, dropped[c]))} threads: {'≤ 0' if log_y else 'no data'})"

    plots = ", ".join(f"'{data_path}' using 1:{i + 2} with linespoints lw 2 pt 7 title '{legend(c)}'"
                      for i, c in enumerate(contenders))
    script = f"""
set terminal pngcairo noenhanced size 960,600 font 'sans,11'
set output '{out_png}'
set title '{title}'
set xlabel 'threads (2 cores)'
set ylabel '{ylabel}'
set logscale x 2
set xrange [{threads[0] / 1.25}:{threads[-1] * 1.25}]
{"set logscale y" if log_y else "set yzeroaxis lt -1"}
set xtics ({", ".join(str(t) for t in threads)})
set grid ytics mytics xtics
set key outside right top
set datafile missing 'NaN'
plot {plots}
"""
    proc = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    os.remove(data_path)
    if proc.returncode != 0:
        print(f"gnuplot failed for {out_png}: {proc.stderr.strip()}", file=sys.stderr)
        return False
    return True


# ---- main -------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="Google Benchmark JSON output of netpool_bench")
    parser.add_argument("--out-dir", default=None, help="where results.md and the PNGs go (default: the JSON's dir)")
    parser.add_argument("--build-dir", default=None, help="build tree (compile_commands.json: compiler and flags)")
    parser.add_argument("--command", default=None, help="the command line that produced the run, for the method")
    parser.add_argument("--run-flags", default=None, help="the benchmark flags used, for the method")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick smoke run: say that its figures and verdicts mean nothing")
    args = parser.parse_args()

    context, results = load(args.json)
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.json))
    os.makedirs(out_dir, exist_ok=True)
    idx = index(results)

    parts = ["# netpool benchmark results", method(context, args, idx)]
    if args.smoke:
        parts.insert(1, "**Smoke run** (`--quick`: `get_put/` only, one short repetition each): it shows that "
                        "the benchmark runs; its figures and ratios are noise, so no target is checked. "
                        "`scripts/bench.sh` without `--quick` makes the run the README quotes.")
    charts = []
    if chart(results, idx, "get_put", os.path.join(out_dir, "get_put.png"),
             "get + put, ns per op (log scale), lower is better", "ns per get+put",
             lambda c, t: (r.ns_per_op if (r := idx.get(("get_put", c, frozenset(), t))) and not r.error else None)):
        charts.append("![get + put, ns per op by thread count](get_put.png)")

    def above_work(c, t):
        r, w = idx.get(("get_put_work", c, frozenset(), t)), idx.get(("get_put_work", "work_only", frozenset(), t))
        if r is None or w is None or r.error or w.error:
            return None
        return r.ns_per_op - w.ns_per_op

    # Linear: netpool's cost above the work is within noise of zero, and may be negative.
    if chart(results, idx, "get_put_work", os.path.join(out_dir, "get_put_work.png"),
             "cost above ~100 ns of held work, ns per op (linear scale; 0 = the work alone)",
             "ns per op above the work", above_work, log_y=False):
        charts.append("![cost above ~100 ns of held work](get_put_work.png)")

    sections = [
        get_put_table(results, idx, "get_put", "Get + put (`get_put/…`)",
                      "ns per get+put (ratio vs `mutex_pool` at the same thread count); 16 threads oversubscribe "
                      "the 2 cores."),
        get_put_table(results, idx, "get_put_burst", "Three connections held per thread (`get_put_burst/…`)",
                      "get, get, get, put, put, put; ns per get+put (ratio vs `mutex_pool`). netpool's fast "
                      "path is the slot this thread returned last, so it serves one of the three; the other "
                      "two come from the thread's cache of the slots it walked to before (up to 4)."),
        get_put_table(results, idx, "get_put_walk", "Twelve connections held per thread (`get_put_walk/…`)",
                      "get ×12, then put ×12; ns per get+put (ratio vs `mutex_pool`). netpool's hint and "
                      "walked-slot cache serve 4 of the 12: two gets in three walk the idle bitmap (the "
                      "miss path). 48 held at 4 threads; 16 threads would need more than the pool's 100."),
        "\n\n".join(charts) if charts else None,
        work_table(results, idx),
        handoff_tables(results, idx),
        scaling_tables(results, idx),
        echo_table(results, idx),
        memory_table(results, idx),
        None if args.smoke else targets(results, idx),
    ]
    markdown = "\n\n".join(p for p in parts + [s for s in sections if s]) + "\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
