#!/usr/bin/env bash
# Instructions and system calls per get+put, counted by callgrind and strace (exact and repeatable,
# unlike wall time on a shared machine). Builds netpool_bench_instructions (in build-bench/, as
# scripts/bench.sh does), runs each pool for N and 2N iterations and prints (I(2N) - I(N)) / N, and
# the same difference of system calls (issue 4: "no system call on the fast path"). The -burst rows
# hold three leases at once: two of each three gets miss the thread's hint and are served by its
# cache of walked slots. The -walk rows hold twelve: two of each three gets walk the idle bitmap
# (the miss path). The -exhausted rows are per try_get() on a pool of 1 000 whose connections are
# all lent, each finding nothing: the full walk of the idle bitmap (netpool_bench_instructions_exhausted).
#
#   bash scripts/instructions.sh [N]        # default N = 200000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-bench"
n=${1:-200000}

if ! command -v valgrind >/dev/null || ! command -v strace >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind strace
  else
    echo "instructions.sh: valgrind and strace are needed" >&2
    exit 1
  fi
fi
if [[ ! -f "$build/build.ninja" && ! -f "$build/Makefile" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DNETPOOL_BUILD_BENCHMARKS=ON -DNETPOOL_BUILD_TESTS=OFF -DNETPOOL_BUILD_EXAMPLES=OFF >/dev/null
fi
cmake --build "$build" --target netpool_bench_instructions netpool_bench_instructions_exhausted -j2 >/dev/null

tool_of() {  # kind -> the measuring program and its argument
  case $1 in
    *-exhausted) echo "$build/bench/netpool_bench_instructions_exhausted ${1%-exhausted}" ;;
    *) echo "$build/bench/netpool_bench_instructions $1" ;;
  esac
}

count() {  # kind iterations -> total instructions
  local out
  # shellcheck disable=SC2046  # tool_of's program and argument, split on purpose
  out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null $(tool_of "$1") "$2" 2>&1)
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' <<<"$out" | head -1
}

syscalls() {  # kind iterations -> system calls of the whole process (strace -c's total)
  local out
  out=$(mktemp)
  # shellcheck disable=SC2046
  strace -f -c -o "$out" $(tool_of "$1") "$2" >/dev/null 2>&1
  awk '$NF == "total" { print $(NF - 2) ~ /^[0-9]+$/ ? $(NF - 2) : $(NF - 1) }' "$out"
  rm -f "$out"
}

per_op() {  # a(N) b(2N) ops-per-iteration -> (b - a) / (N * ops)
  python3 -c "print(f'{($2 - $1) / ($n * $3):.1f}')"
}

echo "| loop | instructions per get+put | system calls per get+put |"
echo "|---|---:|---:|"
for kind in basic standard basic-burst standard-burst basic-walk standard-walk basic-exhausted standard-exhausted; do
  ops=1
  [[ $kind == *-burst ]] && ops=3
  [[ $kind == *-walk ]] && ops=12
  a=$(count "$kind" "$n")
  b=$(count "$kind" $((2 * n)))
  sa=$(syscalls "$kind" "$n")
  sb=$(syscalls "$kind" $((2 * n)))
  printf '| %s | %s | %s |\n' "$kind" "$(per_op "$a" "$b" "$ops")" "$(per_op "$sa" "$sb" "$ops")"
done
echo
echo "($(c++ --version | head -1); -O2; callgrind and strace -f -c, 1 thread; N = $n. Per get+put of"
echo " the measuring loop, which adds about 5 instructions of its own per iteration (counter, increment,"
echo " compare, branch); docs/design.md has the split. -burst: 3 gets then 3 puts per iteration;"
echo " -walk: 12 gets then 12 puts; -exhausted: per try_get() on a pool of 1 000, all lent.)"
