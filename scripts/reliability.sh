#!/usr/bin/env bash
# scripts/reliability.sh — build netpool (Release), run the fault suite, print the README's Reliability table.
#
#   scripts/reliability.sh            # prints the markdown table (also written to <build>/reliability.md)
#   scripts/reliability.sh --readme   # and replaces the table in README.md between the markers
#                                     # <!-- reliability-table:begin --> and <!-- reliability-table:end -->
#
# The fault tests (ctest -L fault) run one at a time (-j1: the recovery times are not measured while
# another test competes for the cores), each appending one JSON line per scenario to the file named
# by NETPOOL_RELIABILITY_JSON; scripts/reliability_report.py turns those lines into the table. Fails
# (after printing the table) if a test failed or leaked a descriptor.
#
# Environment (optional): CXX (compiler), NETPOOL_RELIABILITY_BUILD_DIR (default: build-reliability),
# NETPOOL_JOBS (build jobs, default 2).
set -euo pipefail

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

readme=0
for arg in "$@"; do
  case "$arg" in
    --readme) readme=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "reliability.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${NETPOOL_RELIABILITY_BUILD_DIR:-$root/build-reliability}"
jobs="${NETPOOL_JOBS:-2}"

configure=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DNETPOOL_BUILD_TESTS=ON
  -DNETPOOL_BUILD_BENCHMARKS=OFF -DNETPOOL_BUILD_EXAMPLES=OFF -DNETPOOL_INSTALL=OFF -DNETPOOL_SANITIZE=)
if command -v ninja >/dev/null 2>&1 && [[ ! -f $build/CMakeCache.txt ]]; then
  configure+=(-G Ninja)
fi
if [[ -n ${CXX:-} ]]; then
  configure+=(-DCMAKE_CXX_COMPILER="$(command -v "$CXX")")
fi

echo "==> configuring $build (Release)" >&2
cmake "${configure[@]}" >/dev/null
echo "==> building netpool_fault_tests" >&2
cmake --build "$build" --target netpool_fault_tests --parallel "$jobs" >&2

json="$build/reliability.jsonl"
rm -f "$json"
echo "==> running the fault suite (ctest -L fault -j1)" >&2
tests_ok=1
NETPOOL_RELIABILITY_JSON="$json" ctest --test-dir "$build" -L fault -j1 --output-on-failure --no-tests=error >&2 ||
  tests_ok=0

report=(python3 "$root/scripts/reliability_report.py" "$json" --build-dir "$build" --out "$build/reliability.md")
if [[ $readme -eq 1 ]]; then
  report+=(--readme "$root/README.md")
fi
report_ok=1
"${report[@]}" || report_ok=0

# ---- stress and fuzzer figures -------------------------------------------------------------------
# The stress suite prints one line per run ("[threads N, max M, ...] ops K: ..."): sum them. The
# model-based fuzzer needs clang (libFuzzer): built in its own directory and run for 60 s from the
# seed corpus; its final stats give the executions.
extra="$build/reliability-extra.md"
: >"$extra"
echo "==> building and running the stress suite" >&2
cmake --build "$build" --target netpool_stress_tests --parallel "$jobs" >&2
stress_log="$build/stress.log"
stress_start=$SECONDS
"$build/tests/netpool_stress_tests" >"$stress_log" 2>&1 || tests_ok=0
stress_secs=$((SECONDS - stress_start))
python3 - "$stress_log" "$stress_secs" >>"$extra" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
runs = re.findall(r"\[([^\]]*)\] ops (\d+)", text)
threads = sorted({int(t) for d, _ in runs for t in re.findall(r"(\d+) threads?", d)})
tests = re.search(r"\[  PASSED  \] (\d+) tests?", text)
print(f"- Stress (`tests/stress/`, Release): {sum(int(o) for _, o in runs):,} pool operations in {len(runs)} runs "
      f"of {', '.join(map(str, threads)) or '?'} threads, {tests.group(1) if tests else '?'} tests passed "
      f"in {sys.argv[2]} s; invariants checked throughout (exclusive ownership, in_use <= max, no lost wake-up).")
PY
if command -v clang++ >/dev/null 2>&1; then
  fuzz_build="$build-fuzz"
  echo "==> building the fuzzer (clang, $fuzz_build)" >&2
  fuzz_cfg=(-S "$root" -B "$fuzz_build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$(command -v clang++)"
    -DNETPOOL_BUILD_FUZZERS=ON -DNETPOOL_BUILD_TESTS=OFF -DNETPOOL_BUILD_BENCHMARKS=OFF
    -DNETPOOL_BUILD_EXAMPLES=OFF -DNETPOOL_INSTALL=OFF)
  if command -v ninja >/dev/null 2>&1 && [[ ! -f $fuzz_build/CMakeCache.txt ]]; then fuzz_cfg+=(-G Ninja); fi
  cmake "${fuzz_cfg[@]}" >/dev/null
  cmake --build "$fuzz_build" --target netpool_fuzz --parallel "$jobs" >&2
  corpus="$fuzz_build/reliability-corpus"
  rm -rf "$corpus" && mkdir -p "$corpus"
  echo "==> running the fuzzer for 60 s" >&2
  fuzz_log="$fuzz_build/fuzz.log"
  "$fuzz_build/tests/netpool_fuzz" -max_total_time=60 -print_final_stats=1 "$corpus" \
    "$root/tests/fuzz/corpus/pool_model" >"$fuzz_log" 2>&1 || tests_ok=0
  python3 - "$fuzz_log" >>"$extra" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
execs = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
secs = re.search(r"stat::average_exec_per_sec:\s*(\d+)", text)
cov = re.findall(r"cov: (\d+)", text)
print(f"- Model-based fuzzer (`netpool_fuzz`, clang + ASan/UBSan, 60 s from the seed corpus): "
      f"{int(execs.group(1)):,} executions ({secs.group(1) if secs else '?'}/s), "
      f"{cov[-1] if cov else '?'} coverage edges, no disagreement with the model and no crash."
      if execs else "- Model-based fuzzer: no final stats (see the log)")
PY
fi
cat "$extra"
if [[ $readme -eq 1 ]]; then
  python3 - "$root/README.md" "$extra" <<'PY'
import sys
readme, extra = sys.argv[1], open(sys.argv[2]).read().strip()
begin, end = "<!-- reliability-extra:begin -->", "<!-- reliability-extra:end -->"
text = open(readme).read()
i, j = text.index(begin) + len(begin), text.index(end)
open(readme, "w").write(text[:i] + "\n" + extra + "\n" + text[j:])
PY
fi

if [[ $tests_ok -eq 0 || $report_ok -eq 0 ]]; then
  echo "reliability.sh: a fault, stress or fuzz run failed, or a test leaked a descriptor (see above)" >&2
  exit 1
fi
