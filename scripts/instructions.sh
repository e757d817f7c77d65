#!/usr/bin/env bash
# Instructions per get+put, counted by callgrind (exact and repeatable, unlike wall time on a shared
# machine). Builds netpool_bench_instructions (in build-bench/, as scripts/bench.sh does), runs each
# pool for N and 2N iterations and prints (I(2N) - I(N)) / N.
#
#   bash scripts/instructions.sh [N]        # default N = 200000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"
n=${1:-200000}

if ! command -v valgrind >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind
  else
    echo "instructions.sh: valgrind is needed" >&2
    exit 1
  fi
fi
if [[ ! -f "$build/build.ninja" && ! -f "$build/Makefile" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DNETPOOL_BUILD_BENCHMARKS=ON -DNETPOOL_BUILD_TESTS=OFF -DNETPOOL_BUILD_EXAMPLES=OFF >/dev/null
fi
cmake --build "$build" --target netpool_bench_instructions -j2 >/dev/null

count() {  # kind iterations -> total instructions
  local out
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$build/bench/netpool_bench_instructions" "$1" "$2" 2>&1)
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' <<<"$out" | head -1
}

echo "| pool | instructions per get+put |"
echo "|---|---:|"
for kind in basic standard; do
  a=$(count "$kind" "$n")
  b=$(count "$kind" $((2 * n)))
  printf '| %s | %s |\n' "$kind" "$(python3 -c "print(f'{($b - $a) / $n:.1f}')")"
done
echo
echo "($(c++ --version | head -1); -O2; callgrind, 1 thread; N = $n. Per iteration of the measuring"
echo " loop, which adds about 5 of its own: counter, increment, compare, branch; docs/design.md has the split.)"
