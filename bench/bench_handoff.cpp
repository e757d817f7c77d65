// bench/bench_handoff.cpp — section 2 of issue 4: exhaustion and hand-off.
//
//   handoff/<contender>/max:1 and max:4, threads 2, 4, 8, 16 (contenders: all, and
//   netpool_basic_unfair, lean_pool with fair_waiters = false)
//
// The pool has max = min = 1 or 4 connections (all pre-filled). Each thread gets a connection,
// holds it for ~1 us of calibrated busy work, puts it back, then works ~1 us without a connection
// (as a real caller does between requests) before its next get. With more threads than
// connections the others find the pool empty and block, and the released connection must go to a
// sleeping waiter or wait for the releasing thread to come back: what is measured is the cost of
// blocking, waking and handing off, and its fairness. On 2 cores the ideal is ~1 us per op (hold
// and think are CPU work); everything above it is hand-off cost.
// Counters: get_p50_ns / get_p99_ns / get_p999_ns, latency of get() alone (steady_clock around the
// call, the same two reads for every contender, on every get), from up to 65 536 gets per thread
// sampled at an even stride over the whole run (not its end: when a barging pool lets threads
// finish early, the end of a run is less contended than the rest); get_max_ns over every get.
// Every thread runs the same number of gets, so a pool that lets one thread barge ahead shows it in
// the tail and the maximum, not in the median.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "contenders/all.hpp"
#include "harness.hpp"
#include "sections.hpp"

namespace bench {
namespace {

constexpr std::chrono::nanoseconds kHold{1000};
constexpr std::chrono::nanoseconds kThink{1000};
constexpr std::size_t kSamplesPerThread = 1 << 16;
// A thread's stripe: its samples, then its maximum, padded to a cache line of its own.
constexpr std::size_t kMaxSlot = kSamplesPerThread;
constexpr std::size_t kStripe = kSamplesPerThread + 64 / sizeof(std::uint32_t);

// Latency samples, written by each benchmark thread into its own stripe during the timed loop and
// read by thread 0 after the loop (Google Benchmark's end-of-loop barrier orders the two). Sized
// in Setup so that recording never allocates.
std::vector<std::uint32_t> g_samples;

template <class C>
void setup_exhausted(const benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  pool_cache::prepare<C>(pool_params{size, size});
  g_samples.assign(static_cast<std::size_t>(state.threads()) * kStripe, 0);
}

std::uint64_t sample_stride(const benchmark::State& state) {
  const auto iterations = static_cast<std::uint64_t>(state.max_iterations);
  return std::max<std::uint64_t>(1, (iterations + kSamplesPerThread - 1) / kSamplesPerThread);
}

double percentile(std::vector<std::uint32_t>& values, double fraction) {
  if (values.empty()) return 0;
  const auto rank = static_cast<std::size_t>(fraction * static_cast<double>(values.size() - 1));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(rank), values.end());
  return values[rank];
}

template <class C>
void handoff(benchmark::State& state) {
  C* pool = pool_cache::current_or_skip<C>(state);
  if (pool == nullptr) return;
  const std::uint64_t hold = work_iterations(kHold);
  const std::uint64_t think = work_iterations(kThink);
  std::uint32_t* stripe = g_samples.data() + static_cast<std::size_t>(state.thread_index()) * kStripe;
  // Record every stride-th get, so that the samples span the whole run.
  const std::uint64_t stride = sample_stride(state);
  std::uint64_t until_sample = stride;
  std::size_t sampled = 0;
  std::uint32_t longest = 0;
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    const auto start = std::chrono::steady_clock::now();
    auto h = pool->acquire();
    const auto got = std::chrono::steady_clock::now();
    if (!h) return skip(state, "acquire failed");
    const auto waited = static_cast<std::uint32_t>(std::min<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(got - start).count(), UINT32_MAX));
    if (--until_sample == 0) {
      until_sample = stride;
      stripe[sampled++] = waited;
    }
    if (waited > longest) [[unlikely]] {
      longest = waited;
      stripe[kMaxSlot] = longest;
    }
    busy_work(hold);
    if (!pool->release(h)) return skip(state, "release failed");
    busy_work(think);
    return true;
  });
  counters.finish(state, 1, /*context_switches=*/true);
  if (state.thread_index() == 0 && !state.error_occurred()) {
    // Every thread ran state.iterations() iterations with the same stride: same sample count.
    const auto per_thread = static_cast<std::size_t>(static_cast<std::uint64_t>(state.iterations()) / stride);
    std::vector<std::uint32_t> all;
    all.reserve(per_thread * static_cast<std::size_t>(state.threads()));
    std::uint32_t max = 0;
    for (int t = 0; t < state.threads(); ++t) {
      const std::uint32_t* samples = g_samples.data() + static_cast<std::size_t>(t) * kStripe;
      all.insert(all.end(), samples, samples + per_thread);
      max = std::max(max, samples[kMaxSlot]);
    }
    state.counters["get_p50_ns"] = percentile(all, 0.50);
    state.counters["get_p99_ns"] = percentile(all, 0.99);
    state.counters["get_p999_ns"] = percentile(all, 0.999);
    state.counters["get_max_ns"] = max;
    state.counters["hold_ns"] = static_cast<double>(kHold.count());
    state.counters["think_ns"] = static_cast<double>(kThink.count());
  }
}

}  // namespace

void register_handoff() {
  // Every contender, and netpool without FIFO hand-off: the price and the payoff of fairness.
  for_each_type(handoff_contenders{}, []<class C>() {
    register_threaded(std::string("handoff/") + C::name, handoff<C>, {2, 4, 8, 16})
        ->ArgName("max")
        ->Arg(1)
        ->Arg(4)
        ->Setup(setup_exhausted<C>);
  });
}

}  // namespace bench
