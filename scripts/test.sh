#!/usr/bin/env bash
# Builds netpool, its tests and examples, and runs the whole test suite: the README's test command.
#
#   bash scripts/test.sh
#
# On Debian/Ubuntu, run as root, it first installs the packages it needs (only the missing ones).
# The comparison benchmark is not built here: it needs Poco, TBB, APR, moodycamel and Google
# Benchmark, and has its own command (scripts/bench.sh). CI builds it too, with
# NETPOOL_CMAKE_ARGS=-DNETPOOL_BUILD_BENCHMARKS=ON.
# Environment (all optional):
#   NETPOOL_BUILD_DIR   build directory                      (default: build)
#   CXX                 C++ compiler, e.g. clang++           (default: CMake's choice, g++ on Debian)
#   NETPOOL_BUILD_TYPE  CMAKE_BUILD_TYPE                     (default: Release)
#   NETPOOL_CMAKE_ARGS  extra configure arguments, split on spaces
#                       (e.g. "-DNETPOOL_SANITIZE=thread -DNETPOOL_BUILD_BENCHMARKS=OFF")
#   NETPOOL_JOBS        parallel build and test jobs         (default: 2)
#   NETPOOL_CTEST_ARGS  extra ctest arguments, e.g. "-L unit"
#   NETPOOL_SKIP_DEPS=1 do not check or install packages
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root_dir=$(pwd)

build_dir=${NETPOOL_BUILD_DIR:-build}
build_type=${NETPOOL_BUILD_TYPE:-Release}
jobs=${NETPOOL_JOBS:-2}
read -r -a extra_cmake_args <<<"${NETPOOL_CMAKE_ARGS:-}"
read -r -a extra_ctest_args <<<"${NETPOOL_CTEST_ARGS:-}"

# prometheus: only for promtool, which checks write_prometheus's output (Debian ships no promtool alone).
# pkg-config: the build finds hiredis through it; without it the redis suite and the hiredis
# example are silently left out.
packages=(cmake ninja-build g++ clang pkg-config libgtest-dev libgmock-dev libbenchmark-dev redis-server
  libhiredis-dev python3 prometheus)

log() { printf '[test.sh] %s\n' "$*"; }

install_missing_packages() {
  [[ ${NETPOOL_SKIP_DEPS:-0} == 1 ]] && return 0
  command -v dpkg >/dev/null 2>&1 || return 0  # not Debian: the user provides the dependencies
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]]; then
    log "missing packages: ${missing[*]}"
    log "install them with: sudo apt-get install --no-install-recommends ${missing[*]}"
    log "(trying to build anyway)"
    return 0
  fi
  log "installing: ${missing[*]}"
  local apt_log
  apt_log=$(mktemp)
  # redis-server and prometheus would start system services; the tests need only the binaries.
  # shellcheck source=scripts/no_service_starts.sh
  source "$(dirname "${BASH_SOURCE[0]}")/no_service_starts.sh"
  forbid_service_starts
  trap restore_service_policy EXIT
  # Quiet on success; the whole log on failure.
  if ! { apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"; } >"$apt_log" 2>&1; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    restore_service_policy
    trap - EXIT
    log "package installation failed" >&2
    return 1
  fi
  rm -f "$apt_log"
  restore_service_policy
  trap - EXIT
}

install_missing_packages

# NETPOOL_CMAKE_ARGS come last and so override these.
configure_args=(-S "$root_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE="$build_type" -DNETPOOL_WERROR=ON
  -DNETPOOL_BUILD_TESTS=ON -DNETPOOL_BUILD_EXAMPLES=ON -DNETPOOL_BUILD_BENCHMARKS=OFF)
if command -v ninja >/dev/null 2>&1; then
  configure_args+=(-G Ninja)
fi
if [[ -n ${CXX:-} ]]; then
  cxx_path=$(command -v "$CXX") || { log "compiler '$CXX' not found" >&2; exit 1; }
  configure_args+=(-DCMAKE_CXX_COMPILER="$cxx_path")
  # A build dir configured for another compiler (or generator) cannot be reused: start it afresh.
  cache="$build_dir/CMakeCache.txt"
  if [[ -f $cache ]]; then
    cached=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache")
    if [[ $(readlink -f "$cached" 2>/dev/null) != $(readlink -f "$cxx_path") ]]; then
      log "$build_dir was configured with $cached; reconfiguring from scratch for $cxx_path"
      rm -rf "$cache" "$build_dir/CMakeFiles"
    fi
  fi
fi
if [[ -f $build_dir/CMakeCache.txt ]] && command -v ninja >/dev/null 2>&1 &&
   ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$build_dir/CMakeCache.txt"; then
  log "$build_dir uses another generator; reconfiguring from scratch with Ninja"
  rm -rf "$build_dir/CMakeCache.txt" "$build_dir/CMakeFiles"
fi

start=$SECONDS
log "configure ($build_type) in $build_dir"
cmake "${configure_args[@]}" "${extra_cmake_args[@]}"
configured=$SECONDS
log "configured in $((configured - start))s; build (-j$jobs)"
cmake --build "$build_dir" --parallel "$jobs"
built=$SECONDS
log "built in $((built - configured))s; test (ctest -j$jobs)"
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$jobs" "${extra_ctest_args[@]}"
log "passed: configure $((configured - start))s, build $((built - configured))s, test $((SECONDS - built))s"
