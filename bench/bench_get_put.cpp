// bench/bench_get_put.cpp — section 1 of issue 4: get + put, the original's comparison.
//
//   get_put/<contender>         one op = acquire + release; max 100, min 50 (pre-filled)
//   get_put_work/<contender>    the connection held for ~100 ns of calibrated busy work; the baseline
//   get_put_work/work_only      is the work alone, so "cost above the work" = contender - work_only
//   get_put_burst/<contender>   each thread holds 3 connections at once (get, get, get, put, put,
//                               put; ns per get + put): a pool that caches one connection per
//                               thread serves at most one of the three from that cache, so this
//                               reports the path behind a per-thread cache of one connection
//                               (netpool: its hint, then its cache of walked slots, below)
//   get_put_walk/<contender>    each thread holds 12 at once (threads 1, 2, 4: 48 held at most,
//                               within the 50 pre-filled): netpool's hint and cache of 4 walked
//                               slots serve 4 of the 12, so two gets in three walk the idle bitmap
// ns per op = wall time of the whole run / ops of all threads (wall_ns_per_op, see harness.hpp);
// threads 1, 2, 4, 16 (work: 2, 4, 16, as the issue asks).
#include <chrono>
#include <cstddef>

#include "contenders/all.hpp"
#include "harness.hpp"
#include "sections.hpp"

namespace bench {
namespace {

constexpr std::chrono::nanoseconds kWork{100};
// get_put_burst: 16 threads x burst_size (3) = 48 held, within the 50 pre-filled connections.

template <class C>
void setup_default(const benchmark::State&) {
  pool_cache::prepare<C>(pool_params{100, 50});
}

template <class C>
void get_put(benchmark::State& state) {
  C* pool = pool_cache::current_or_skip<C>(state);
  if (pool == nullptr) return;
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    auto h = pool->acquire();
    if (!h) return skip(state, "acquire failed");
    if (!pool->release(h)) return skip(state, "release failed");
    return true;
  });
  counters.finish(state);
}

template <class C>
void get_put_work(benchmark::State& state) {
  C* pool = pool_cache::current_or_skip<C>(state);
  if (pool == nullptr) return;
  const std::uint64_t work = work_iterations(kWork);
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    auto h = pool->acquire();
    if (!h) return skip(state, "acquire failed");
    busy_work(work);
    benchmark::DoNotOptimize(C::connection(h).native_handle());  // a user touches the connection
    if (!pool->release(h)) return skip(state, "release failed");
    return true;
  });
  counters.finish(state, 1, /*context_switches=*/true);
}

void work_only(benchmark::State& state) {
  const std::uint64_t work = work_iterations(kWork);
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    busy_work(work);
    return true;
  });
  counters.finish(state, 1, /*context_switches=*/true);
}

// get_put_burst/ (N = burst_size) and get_put_walk/ (N = walk_burst_size): N held at once.
template <class C, std::size_t N>
void get_put_held(benchmark::State& state) {
  C* pool = pool_cache::current_or_skip<C>(state);
  if (pool == nullptr) return;
  op_counters counters(state);
  timed_loop(state, counters,
             [&] { return get_burst_then_put<N>(*pool) || skip(state, "acquire or release failed"); });
  counters.finish(state, N);
}

}  // namespace

void register_get_put() {
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("get_put/") + C::name, get_put<C>, {1, 2, 4, 16})->Setup(setup_default<C>);
  });
}

void register_get_put_work() {
  register_threaded("get_put_work/work_only", work_only, {2, 4, 16});
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("get_put_work/") + C::name, get_put_work<C>, {2, 4, 16})
        ->Setup(setup_default<C>);
  });
}

void register_get_put_burst() {
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("get_put_burst/") + C::name, get_put_held<C, burst_size>, {1, 2, 4, 16})
        ->Setup(setup_default<C>);
  });
}

void register_get_put_walk() {
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("get_put_walk/") + C::name, get_put_held<C, walk_burst_size>, {1, 2, 4})
        ->Setup(setup_default<C>);
  });
}

}  // namespace bench
