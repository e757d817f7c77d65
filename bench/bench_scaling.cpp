// bench/bench_scaling.cpp — section 3 of issue 4: does the cost per op grow with the pool's size?
//
//   scaling/get_put/<contender>/size:N       get + put on a pool of N connections, max = min = N
//                                            (all pre-filled), N = 1, 16, 100, 10 000; threads 1, 2
//                                            (with 2 threads and N = 1 every other get waits)
//   scaling/get_put_burst/<contender>/size:N  the path behind a per-thread cache, on a pool half in
//                                            use: max = min = N, N/2 connections held by the setup
//                                            for the whole run, and each thread gets 3 and puts 3
//                                            (ns per get+put); N = 16, 100, 10 000; threads 1, 2
//   scaling/get_put_walk/<contender>/size:N   the same with 12 held per thread (two gets in three
//                                            walk netpool's idle bitmap); N = 100, 10 000
//                                            (2 x 12 held of the 50 idle at 100); threads 1, 2
//   scaling/create_close/<contender>/max:N   create an empty pool of max N (min 0, so no dial) and
//                                            close it: the fixed cost of a pool, e.g. preallocated
//                                            slots and, for netpool Standard, its maintainer thread
// A pool of 10 000 loopback connections holds 10 000 descriptors in this process (the server's
// ends are in its own process); environment.cpp raises RLIMIT_NOFILE as far as it may, and without
// enough descriptors the benchmark skips itself with a message.
#include <cstddef>
#include <vector>

#include "contenders/all.hpp"
#include "harness.hpp"
#include "sections.hpp"

namespace bench {
namespace {

// get_put_burst: 2 threads x burst_size (3) = 6 of the 8 idle at size 16.

template <class C>
void setup_sized(const benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  pool_cache::prepare<C>(pool_params{size, size});
}

template <class C>
void scaled_get_put(benchmark::State& state) {
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

// The connections the setup of scaling/get_put_burst holds for the whole run: half the pool.
template <class C>
std::vector<typename C::handle>& held_by_setup() {
  static std::vector<typename C::handle> held;
  return held;
}

template <class C>
void setup_half_lent(const benchmark::State& state) {
  setup_sized<C>(state);
  C* pool = pool_cache::current<C>();
  if (pool == nullptr) return;  // the benchmark skips itself, saying why
  auto& held = held_by_setup<C>();
  const auto size = static_cast<std::size_t>(state.range(0));
  held.reserve(size / 2);
  while (held.size() < size / 2) {
    auto h = pool->acquire();
    if (!h) break;  // the benchmark then measures with fewer held; cannot happen with all pre-filled
    held.push_back(std::move(h));
  }
}

template <class C>
void teardown_half_lent(const benchmark::State&) {
  C* pool = pool_cache::current<C>();
  auto& held = held_by_setup<C>();
  if (pool != nullptr) {
    for (auto& h : held) pool->release(h);
  }
  held.clear();
}

// scaling/get_put_burst/ (N = burst_size) and scaling/get_put_walk/ (N = walk_burst_size): N held
// at once by each thread, beside the half of the pool the setup holds.
template <class C, std::size_t N>
void scaled_get_put_held(benchmark::State& state) {
  C* pool = pool_cache::current_or_skip<C>(state);
  if (pool == nullptr) return;
  if (held_by_setup<C>().size() != static_cast<std::size_t>(state.range(0)) / 2) {
    state.SkipWithError("the setup could not lend half the pool");
    return;
  }
  op_counters counters(state);
  timed_loop(state, counters,
             [&] { return get_burst_then_put<N>(*pool) || skip(state, "acquire or release failed"); });
  counters.finish(state, N);
}

// No cached pool may stay open while pools are created and closed in a loop.
void setup_empty(const benchmark::State&) {
  pool_cache::clear();
}

template <class C>
void create_close(benchmark::State& state) {
  const pool_params params{static_cast<std::size_t>(state.range(0)), 0};
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    try {
      C pool(params);
      benchmark::DoNotOptimize(&pool);
      return true;
    } catch (const std::exception& error) {
      return skip(state, error.what());
    }
  });
  counters.finish(state);
}

}  // namespace

void register_scaling() {
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("scaling/get_put/") + C::name, scaled_get_put<C>, {1, 2})
        ->ArgName("size")
        ->Arg(1)
        ->Arg(16)
        ->Arg(100)
        ->Arg(10000)
        ->Setup(setup_sized<C>);
  });
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("scaling/get_put_burst/") + C::name, scaled_get_put_held<C, burst_size>,
                      {1, 2})
        ->ArgName("size")
        ->Arg(16)
        ->Arg(100)
        ->Arg(10000)
        ->Setup(setup_half_lent<C>)
        ->Teardown(teardown_half_lent<C>);
  });
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("scaling/get_put_walk/") + C::name, scaled_get_put_held<C, walk_burst_size>,
                      {1, 2})
        ->ArgName("size")
        ->Arg(100)
        ->Arg(10000)
        ->Setup(setup_half_lent<C>)
        ->Teardown(teardown_half_lent<C>);
  });
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("scaling/create_close/") + C::name, create_close<C>, {1})
        ->ArgName("max")
        ->Arg(1)
        ->Arg(16)
        ->Arg(100)
        ->Arg(10000)
        ->Setup(setup_empty)
        ->Unit(benchmark::kMicrosecond);
  });
}

}  // namespace bench
