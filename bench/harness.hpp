// bench/harness.hpp — the pieces every netpool_bench section shares.
//
//   template <class C> void setup(const benchmark::State&) { bench::pool_cache::prepare<C>({100, 50}); }
//   template <class C> void my_bench(benchmark::State& state) {
//     C* pool = bench::pool_cache::current_or_skip<C>(state);
//     if (pool == nullptr) return;
//     bench::op_counters counters(state);       // just before the timed loop
//     bench::timed_loop(state, counters, [&] { auto h = pool->acquire(); ...; return pool->release(h); });
//     counters.finish(state);                   // just after it: wall_ns_per_op, allocs_per_op, ...
//   }
//   benchmark::RegisterBenchmark("get_put/…", my_bench<C>)->Setup(setup<C>)->UseRealTime()->Threads(2);
#pragma once

#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>
#include <utility>

#include "contenders/contender.hpp"
#include "environment.hpp"

namespace bench {

// The contender the running benchmark uses. prepare() runs in a benchmark's Setup callback: on the
// main thread, before the benchmark's threads start, outside every timed region. The contender is
// kept across Google Benchmark's runs of the same benchmark (its iteration-count trials, and the
// repetitions and thread counts when they run back to back) so that its connections are dialed
// once; a different contender or size replaces it. scripts/bench.sh interleaves repetitions at
// random, so there most repetitions start from a pool made (and pre-filled) just before them, for
// every contender alike; dialing stays outside the timed region.
class pool_cache {
 public:
  template <class C>
  static void prepare(const pool_params& params) noexcept {
    entry& s = get();
    if (s.object && s.type == &typeid(C) && s.params == params) return;
    clear();
    // The client end of every connection lives in this process (the server's in its own).
    const std::uint64_t needed = params.max_size + 256;
    if (needed > descriptor_limit()) {
      s.error = std::string(C::name) + ": needs " + std::to_string(needed) +
                " descriptors, RLIMIT_NOFILE is " + std::to_string(descriptor_limit()) +
                " (run as root or raise ulimit -n)";
      return;
    }
    try {
      s.object = std::make_shared<C>(params);
      s.type = &typeid(C);
      s.params = params;
    } catch (const std::exception& error) {
      s.error = std::string(C::name) + ": " + error.what();
    }
  }

  // The prepared contender, or nullptr after SkipWithError(the reason) when prepare failed.
  template <class C>
  static C* current_or_skip(benchmark::State& state) noexcept {
    entry& s = get();
    if (s.type == &typeid(C)) return static_cast<C*>(s.object.get());
    state.SkipWithError(s.error.empty() ? "contender not prepared" : s.error.c_str());
    return nullptr;
  }

  // The prepared contender, or nullptr when prepare failed (for Setup and Teardown callbacks).
  template <class C>
  static C* current() noexcept {
    entry& s = get();
    return s.type == &typeid(C) ? static_cast<C*>(s.object.get()) : nullptr;
  }

  // Destroys the cached contender (closing its connections) and waits until the server has closed
  // its ends, so that the next benchmark starts from a quiet server.
  static void clear() noexcept;

 private:
  struct entry {
    std::shared_ptr<void> object;
    const std::type_info* type = nullptr;
    pool_params params;
    std::string error;
  };
  static entry& get() noexcept;
};

// Per-thread counters of a timed loop, set up by timed_loop() below. Construct just before the
// loop, call finish() just after.
//   wall_ns_per_op       wall time from the start of the run (the first iteration of any thread, just
//                        after Google Benchmark's start barrier) until the LAST thread finished,
//                        divided by the ops of all threads. Google Benchmark's own real time is the *mean*
//                        of the threads' wall times, which, when threads outnumber cores or a pool
//                        lets one thread run ahead, is shorter than the run and flatters unfair
//                        pools (a barging pool's first thread finishes early). The report uses this.
//   allocs_per_op        heap allocations made by the benchmark threads per op (alloc_counter.hpp)
//   ctx_switches_per_op  voluntary context switches of the whole process per op (getrusage
//                        RUSAGE_SELF ru_nvcsw; measured by thread 0 around the run), when asked
//   items_per_second     Google Benchmark's rate (ops / mean thread wall time), kept for reference
// An op is one get + put; `ops_per_iteration` says how many one loop iteration performs.
class op_counters {
 public:
  explicit op_counters(const benchmark::State& state) noexcept;
  void started(const benchmark::State& state) noexcept;
  void finish(benchmark::State& state, std::uint64_t ops_per_iteration = 1,
              bool context_switches = false) const;

 private:
  std::uint64_t allocations_;
  std::int64_t switches_ = 0;
};

// Reports a failure from inside a timed_loop() body: `return skip(state, "why");`.
inline bool skip(benchmark::State& state, const char* why) {
  state.SkipWithError(why);
  return false;
}

// The timed loop of every section: body() once per iteration until Google Benchmark has run its
// iterations or body() returns false (after calling state.SkipWithError). The first-iteration branch
// (predicted away after one iteration) marks the start of the run for wall_ns_per_op.
template <class Body>
void timed_loop(benchmark::State& state, op_counters& counters, Body&& body) {
  bool first = true;
  for (auto _ : state) {
    if (first) [[unlikely]] {
      first = false;
      counters.started(state);
    }
    if (!body()) [[unlikely]]
      break;
  }
}

// One iteration of the burst benchmarks (get_put_burst/, scaling/get_put_burst/: burst_size;
// get_put_walk/, scaling/get_put_walk/: walk_burst_size): get N connections, then give them all
// back in the order they were got. False if a get or a put failed.
inline constexpr std::size_t burst_size = 3;
// netpool serves a thread that holds up to 4 at once from its own slots (the hint and the cache
// of walked slots); with 12, two gets in three walk the idle bitmap, as two in three missed the
// hint in get_put_burst/ before that cache existed.
inline constexpr std::size_t walk_burst_size = 12;
template <std::size_t N = burst_size, class C>
bool get_burst_then_put(C& pool) noexcept {
  // Braced: the gets run in order, left to right.
  auto held = [&pool]<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<typename C::handle, N>{((void)I, pool.acquire())...};
  }
  (std::make_index_sequence<N>{});
  bool ok = true;
  for (auto& h : held) ok = ok && static_cast<bool>(h);
  for (auto& h : held) {
    if (h) ok = pool.release(h) && ok;
  }
  return ok;
}

// Registers `function` under `name` with real-time measurement and the given thread counts.
benchmark::internal::Benchmark* register_threaded(const std::string& name,
                                                  void (*function)(benchmark::State&),
                                                  std::initializer_list<int> threads);

}  // namespace bench
