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

if [[ $tests_ok -eq 0 || $report_ok -eq 0 ]]; then
  echo "reliability.sh: a fault test failed or leaked a descriptor (see above)" >&2
  exit 1
fi
