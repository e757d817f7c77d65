// bench/bench_memory.cpp — section 5 of issue 4: heap bytes per pool and per pooled connection.
//
//   memory/<contender>/max:N   N = 100 and 10 000 (min 0: the empty pool dials nothing)
// Counters, from the counting allocator in this binary (alloc_counter.hpp: net bytes allocated and
// not freed, by malloc_usable_size, by every thread including the pool's own):
//   pool_bytes   heap kept by an empty pool of max N (preallocated slots, queues, thread state)
//   conn_bytes   heap added per connection, measured by opening 100 connections into that pool
//                (getting 100 at once and putting them back), divided by 100
// Kernel memory of the sockets is not heap and not counted (it is the same for every contender).
// The timings of this section mean nothing; it runs one iteration per repetition.
#include <vector>

#include "alloc_counter.hpp"
#include "contenders/all.hpp"
#include "harness.hpp"
#include "sections.hpp"

namespace bench {
namespace {

constexpr std::size_t kFill = 100;

void setup_empty(const benchmark::State&) {
  pool_cache::clear();
}

template <class C>
void memory(benchmark::State& state) {
  const pool_params params{static_cast<std::size_t>(state.range(0)), 0};
  double pool_bytes = 0;
  double conn_bytes = 0;
  for (auto _ : state) {
    std::vector<typename C::handle> held;
    held.reserve(kFill);  // before the measurement: the benchmark's own vector is not the pool's
    alloc::byte_tracking tracking;
    const std::int64_t base = alloc::live_bytes();
    try {
      C pool(params);
      const std::int64_t empty = alloc::live_bytes();
      bool ok = true;
      for (std::size_t i = 0; i < kFill; ++i) {
        held.push_back(pool.acquire());
        ok = ok && static_cast<bool>(held.back());
      }
      for (auto& h : held) {
        if (h) ok = pool.release(h) && ok;
      }
      const std::int64_t filled = alloc::live_bytes();
      held.clear();
      if (!ok) {
        state.SkipWithError("acquire or release failed");
        break;
      }
      pool_bytes = static_cast<double>(empty - base);
      conn_bytes = static_cast<double>(filled - empty) / static_cast<double>(kFill);
    } catch (const std::exception& error) {
      state.SkipWithError(error.what());
      break;
    }
  }
  state.counters["pool_bytes"] = pool_bytes;
  state.counters["conn_bytes"] = conn_bytes;
}

}  // namespace

void register_memory() {
  for_each_type(pool_contenders{}, []<class C>() {
    benchmark::RegisterBenchmark((std::string("memory/") + C::name).c_str(), memory<C>)
        ->ArgName("max")
        ->Arg(100)
        ->Arg(10000)
        ->Setup(setup_empty)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  });
}

}  // namespace bench
