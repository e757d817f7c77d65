#!/usr/bin/env bash
# scripts/bench.sh — build and run netpool's comparison benchmark, print the markdown table, draw the chart.
#
#   scripts/bench.sh            # full suite: every section, 5 interleaved repetitions, medians (~5 min)
#   scripts/bench.sh --quick    # smoke test: get_put/ only, 1 repetition, tiny min time (seconds)
#
# On a fresh Debian/Ubuntu machine, run as root (or with sudo available): missing packages are
# installed with apt-get. Then: configure Release into build-bench/, build netpool_bench, run it with
# JSON output, and hand the JSON to scripts/bench_report.py, which prints the markdown (machine,
# compiler, flags, command, tables with ratios against the hand-written mutex pool) and writes
#   bench/results/results.json, bench/results/results.md, bench/results/get_put.png (+ get_put_work.png)
# (--quick writes to bench/results/quick/ instead, leaving the full results alone).
#
# Environment: CXX picks the compiler (default: the system c++); BENCH_EXTRA_ARGS adds Google
# Benchmark flags (e.g. BENCH_EXTRA_ARGS='--benchmark_filter=^handoff/').
set -euo pipefail

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"
if [[ $quick -eq 1 ]]; then
  results="$root/bench/results/quick"
else
  results="$root/bench/results"
fi

# ---- packages -----------------------------------------------------------------------------------
packages=(cmake ninja-build g++ pkg-config libbenchmark-dev libpoco-dev libaprutil1-dev libapr1-dev libtbb-dev
  libconcurrentqueue-dev gnuplot-nox python3)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "==> installing: ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "bench.sh: missing packages (${missing[*]}) and not root; install them and run again" >&2
    exit 1
  fi
fi

# ---- build --------------------------------------------------------------------------------------
# -O2, as the measurements in the project's notes were made; the exact flags are printed in the report.
echo "==> configuring $build"
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DNETPOOL_BUILD_BENCHMARKS=ON \
  -DNETPOOL_BUILD_TESTS=OFF \
  -DNETPOOL_BUILD_EXAMPLES=OFF >/dev/null
echo "==> building netpool_bench"
cmake --build "$build" --target netpool_bench
bench_bin="$(find "$build" -type f -name netpool_bench -perm -u+x | head -n 1)"
if [[ -z "$bench_bin" ]]; then
  echo "bench.sh: netpool_bench was not built" >&2
  exit 1
fi

# ---- run ----------------------------------------------------------------------------------------
mkdir -p "$results"
json="$results/results.json"
# Bounded twice: the binary aborts itself after bench_timeout seconds, timeout(1) backs it up at
# hard_limit (SIGKILL 30 s later). A quick run takes seconds: its bounds only end a hang sooner.
if [[ $quick -eq 1 ]]; then
  run_flags=(--benchmark_filter='^get_put/' --benchmark_min_time=0.01 --benchmark_repetitions=1)
  command_line="scripts/bench.sh --quick"
  report_flags=(--smoke)
  bench_timeout=120
  hard_limit=180
else
  # Repetitions interleaved at random with every other benchmark's: on a shared VM a slow spell of
  # a few seconds (the CPU at a fraction of its speed) otherwise lands on all the repetitions of
  # the one contender that was running, and the median cannot filter it out. Interleaved, a spell
  # hits one repetition each of several contenders, and the median of 5 drops it.
  run_flags=(--benchmark_min_time=0.1 --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
    --benchmark_report_aggregates_only=true)
  command_line="scripts/bench.sh"
  report_flags=()
  bench_timeout=1800
  hard_limit=1900
fi
# shellcheck disable=SC2206  # BENCH_EXTRA_ARGS is deliberately split into words
run_flags+=(${BENCH_EXTRA_ARGS:-})
# moodycamel's header has no version macro (the binary records the other contenders' own): the
# Debian package's, into the results' context, as installed for this run.
context_flags=()
if queue_version=$(dpkg-query -W -f='${Version}' libconcurrentqueue-dev 2>/dev/null) && [[ -n $queue_version ]]; then
  context_flags=(--benchmark_context="netpool_bench.concurrentqueue_version=$queue_version")
fi

# Pools of 10 000 connections need 10 000+ descriptors (netpool_bench also raises its own limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "==> running $bench_bin ${run_flags[*]}"
timeout --kill-after=30 "$hard_limit" "$bench_bin" "${run_flags[@]}" "${context_flags[@]}" \
  --bench_timeout="$bench_timeout" --benchmark_out="$json" --benchmark_out_format=json

# ---- report -------------------------------------------------------------------------------------
echo
python3 "$root/scripts/bench_report.py" "$json" --out-dir "$results" --build-dir "$build" \
  --command "$command_line" --run-flags "${run_flags[*]}" "${report_flags[@]}"
echo "==> wrote $results/results.md, $results/results.json and the charts in $results/"
