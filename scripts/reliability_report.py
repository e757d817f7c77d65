#!/usr/bin/env python3
"""Turns the fault suite's JSON lines into the README's Reliability table.

    NETPOOL_RELIABILITY_JSON=build/reliability.jsonl ctest --test-dir build -L fault
    scripts/reliability_report.py build/reliability.jsonl --build-dir build [--readme README.md]

Each line is one fault scenario (tests/fault/fault_harness.hpp, scenario_record):
  {"scenario", "ops", "errors_by_code", "io_errors", "fds_leaked", "recovery_ms", "threads",
   "fault_ms", "passed", ...}
Prints the markdown (a line of method, the table, notes), and with --readme replaces the text
between the markers
    <!-- reliability-table:begin -->  and  <!-- reliability-table:end -->
in that file. A scenario present several times (several runs appended to one file) is shown once,
from its last line. Exit status 1 if a scenario failed or leaked a descriptor (the table is still
printed, marked), 2 on bad input.

Only the Python standard library is used.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

BEGIN = "<!-- reliability-table:begin -->"
END = "<!-- reliability-table:end -->"


def read_lines(path):
    scenarios = {}  # insertion-ordered: the suite's order
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"reliability_report: {path}:{number}: not JSON: {e}")
            for key in ("scenario", "ops", "errors_by_code", "fds_leaked", "recovery_ms"):
                if key not in record:
                    sys.exit(f"reliability_report: {path}:{number}: missing '{key}'")
            scenarios.pop(record["scenario"], None)
            scenarios[record["scenario"]] = record
    if not scenarios:
        sys.exit(f"reliability_report: {path}: no scenario lines (was NETPOOL_RELIABILITY_JSON set?)")
    return list(scenarios.values())


def by_code(counts):
    if not counts:
        return "none"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"`{name}` {count:,}" for name, count in items)


def compiler_of(build_dir):
    cache = os.path.join(build_dir, "CMakeCache.txt") if build_dir else None
    if not cache or not os.path.exists(cache):
        return None, None
    cxx = build_type = None
    with open(cache, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = re.match(r"CMAKE_CXX_COMPILER:[A-Z]+=(.*)", line)
            if m:
                cxx = m.group(1).strip()
            m = re.match(r"CMAKE_BUILD_TYPE:[A-Z]+=(.*)", line)
            if m:
                build_type = m.group(1).strip()
    version = None
    if cxx:
        try:
            out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=10).stdout
            version = out.splitlines()[0] if out else cxx
        except (OSError, subprocess.SubprocessError):
            version = cxx
    return version, build_type


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def render(records, build_dir, command):
    compiler, build_type = compiler_of(build_dir)
    method = (f"Measured by `{command}` on {datetime.date.today().isoformat()}: {os.cpu_count()} CPUs "
              f"({cpu_model()}), Linux {platform.release()}")
    if compiler:
        method += f", {compiler}, {build_type or 'default'} build"
    if any(r.get("sanitized") for r in records):
        method += ", **sanitizers on** (slower: figures not representative)"
    method += (". Each scenario runs a client load (threads doing get → echo round trip → put, "
               "put_with_error after a failed round trip) through one `pool<socket>` against a loopback "
               "server, injects the fault, ends it, and keeps the same pool.")

    out = [method, ""]
    out.append("| Fault | Threads | Gets | Errors returned by get (by code) | Failed round trips (discarded) "
               "| Descriptors leaked | Recovery after the fault ends |")
    out.append("|---|---:|---:|---|---|---:|---:|")
    notes = []
    ok = True
    for r in records:
        name = r["scenario"]
        if r.get("passed") is False:
            name += " **(FAILED)**"
            ok = False
        if r["fds_leaked"] != 0:
            ok = False
        fault = r.get("fault_ms")
        if fault:
            name += f" — fault lasted {fault:,} ms"
        recovery = "—" if r["recovery_ms"] is None else f"{r['recovery_ms']:,} ms"
        out.append(f"| {name} | {r.get('threads', '')} | {r['ops']:,} | {by_code(r['errors_by_code'])} "
                   f"| {by_code(r.get('io_errors', {}))} | {r['fds_leaked']} | {recovery} |")
        if "connect_attempts" in r:
            rate = r.get("connect_attempts_per_s")
            notes.append(f"*{r['scenario']}*: {r['connect_attempts']} connect attempts while the backend was "
                         f"down ({rate} per second; bound asserted: 200 per second), every other get failed "
                         f"fast with the last dial error.")
        if "max_dial_ms" in r:
            notes.append(f"*{r['scenario']}*: the longest dial took {r['max_dial_ms']} ms (dial_timeout "
                         f"300 ms); the longest get {r.get('max_get_ms', '?')} ms.")
    out.append("")
    out.append("Gets counts every get attempted (including the checks after the fault). Errors are the "
               "codes get() returned: `ECONNREFUSED`, `ETIMEDOUT` (a dial that ran out of dial_timeout), "
               "`EAI_NONAME`… are dial failures (`condition::dial_failed`; while the pool backs off after a failed dial, gets fail at once with that "
               "last error), `timeout` and `factory_threw` are `netpool::errc`. Failed round trips are "
               "what the clients' own I/O saw on a lent connection (`io_timeout`: the client's own I/O "
               "deadline passed; `eof`: the server closed) before returning it with `put_with_error`. Descriptors are "
               "counted in `/proc/self/fd` before the server starts and after the pool and server are "
               "gone. Recovery is the time from the fault's end to the first successful round trip; "
               "with the default backoff (10 ms doubling to 1 s) it is at most about one backoff "
               "period, plus, when the backend hung instead of refusing, the dial still in flight when "
               "the fault ended.")
    for n in notes:
        out.append("")
        out.append(n)
    return "\n".join(out) + "\n", ok


def update_readme(path, table):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        sys.exit(f"reliability_report: {path} has no '{BEGIN}' ... '{END}' markers")
    text = text[:start + len(BEGIN)] + "\n" + table + text[end:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jsonl", help="the file NETPOOL_RELIABILITY_JSON named")
    parser.add_argument("--build-dir", help="the build directory (for the compiler and build type)")
    parser.add_argument("--command", default="scripts/reliability.sh", help="the command to cite")
    parser.add_argument("--out", help="also write the markdown to this file")
    parser.add_argument("--readme", help="replace the table between the markers in this file")
    args = parser.parse_args()

    table, ok = render(read_lines(args.jsonl), args.build_dir, args.command)
    sys.stdout.write(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(table)
    if args.readme:
        update_readme(args.readme, table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
