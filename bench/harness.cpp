// bench/harness.cpp — see harness.hpp.
#include "harness.hpp"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <limits>

#include "alloc_counter.hpp"

namespace bench {
namespace {

// Start of the current run: the earliest first iteration of any of its threads, in steady_clock ns.
// Reset by thread 0 before Google Benchmark's start barrier (so before any thread's first
// iteration), lowered by every thread's first iteration, read by thread 0 after the end barrier.
// Taking only thread 0's start would be wrong: when threads outnumber cores thread 0 may be
// scheduled late, after the others ran for a while, and the run would look shorter than it was.
std::atomic<std::int64_t> g_run_start_ns{0};

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::int64_t voluntary_switches() noexcept {
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return usage.ru_nvcsw;
}

}  // namespace

pool_cache::entry& pool_cache::get() noexcept {
  static entry instance;
  return instance;
}

void pool_cache::clear() noexcept {
  entry& s = get();
  s.error.clear();
  s.type = nullptr;
  if (!s.object) return;
  s.object.reset();
  // Generous: 10 000 connections close in well under a second on loopback.
  if (!server().wait_open_at_most(0, std::chrono::seconds(60))) {
    std::fprintf(stderr, "netpool_bench: the server still holds %zu connections after closing a pool\n",
                 server().open_connections());
  }
}

op_counters::op_counters(const benchmark::State& state) noexcept : allocations_(alloc::thread_allocations()) {
  if (state.thread_index() == 0) {
    switches_ = voluntary_switches();
    g_run_start_ns.store(std::numeric_limits<std::int64_t>::max(), std::memory_order_relaxed);
  }
}

void op_counters::started(const benchmark::State&) noexcept {
  const std::int64_t now = now_ns();
  std::int64_t earliest = g_run_start_ns.load(std::memory_order_relaxed);
  while (now < earliest && !g_run_start_ns.compare_exchange_weak(earliest, now, std::memory_order_relaxed)) {
  }
}

void op_counters::finish(benchmark::State& state, std::uint64_t ops_per_iteration,
                         bool context_switches) const {
  // Read first: setting a counter below inserts into a map, which allocates.
  const std::uint64_t allocations = alloc::thread_allocations() - allocations_;
  const auto per_op = static_cast<double>(ops_per_iteration);
  // Thread 0 gets here only after Google Benchmark's end barrier, i.e. once every thread finished.
  if (state.thread_index() == 0 && state.iterations() > 0 && !state.error_occurred()) {
    const auto wall = static_cast<double>(now_ns() - g_run_start_ns.load(std::memory_order_relaxed));
    const double ops = static_cast<double>(state.iterations()) * state.threads() * per_op;
    state.counters["wall_ns_per_op"] = wall / ops;
  }
  // kAvgIterations divides the sum over threads by the iterations of all threads.
  state.counters["allocs_per_op"] =
      benchmark::Counter(static_cast<double>(allocations) / per_op, benchmark::Counter::kAvgIterations);
  if (context_switches && state.thread_index() == 0) {
    state.counters["ctx_switches_per_op"] = benchmark::Counter(
        static_cast<double>(voluntary_switches() - switches_) / per_op, benchmark::Counter::kAvgIterations);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ops_per_iteration));
}

benchmark::internal::Benchmark* register_threaded(const std::string& name,
                                                  void (*function)(benchmark::State&),
                                                  std::initializer_list<int> threads) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), function)->UseRealTime();
  for (int n : threads) b->Threads(n);
  return b;
}

}  // namespace bench
