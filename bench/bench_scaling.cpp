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
//   scaling/try_get_exhausted/<contender>/size:N
//                                            a get that never waits (try_acquire: netpool's try_get)
//                                            on a pool whose N connections the setup holds: one op is
//                                            one get that finds nothing; N = 100, 10 000; 1 thread.
//                                            Contenders with such a get only (not apr_reslist)
//   scaling/try_get_exhausted_stripes/netpool_basic/size:10000/stripes:S
//                                            the same with netpool's idle bitmap in S stripes
//                                            (pinned: pool_params::idle_stripes), S = 1, 2, 4, 8: what
//                                            the get pays on a machine of S CPUs or more
//   scaling/create_close/<contender>/max:N   create an empty pool of max N (min 0, so no dial) and
//                                            close it: the fixed cost of a pool, e.g. preallocated
//                                            slots and, for netpool Standard, its maintainer thread
// A pool of 10 000 loopback connections holds 10 000 descriptors in this process (the server's
// ends are in its own process); environment.cpp raises RLIMIT_NOFILE as far as it may, and without
// enough descriptors the benchmark skips itself with a message.
#include <cstddef>
#include <cstdint>
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

// The connections the setup holds for the whole run: half the pool (scaling/get_put_burst/ and
// scaling/get_put_walk/) or all of it (scaling/try_get_exhausted/).
template <class C>
std::vector<typename C::handle>& held_by_setup() {
  static std::vector<typename C::handle> held;
  return held;
}

// Prepares a pool of max = min = `size` (all pre-filled) and lends `lent` of its connections to
// the setup for the whole run (held_by_setup).
template <class C>
void prepare_and_lend(std::size_t size, std::size_t lent, std::uint32_t idle_stripes = 0) {
  pool_cache::prepare<C>(pool_params{size, size, idle_stripes});
  C* pool = pool_cache::current<C>();
  if (pool == nullptr) return;  // the benchmark skips itself, saying why
  auto& held = held_by_setup<C>();
  held.reserve(lent);
  while (held.size() < lent) {
    auto h = pool->acquire();
    if (!h) break;  // the benchmark then skips itself; cannot happen with all pre-filled
    held.push_back(std::move(h));
  }
}

template <class C>
void setup_half_lent(const benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  prepare_and_lend<C>(size, size / 2);
}

// scaling/try_get_exhausted/: every connection lent.
template <class C>
void setup_all_lent(const benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  prepare_and_lend<C>(size, size);
}

// scaling/try_get_exhausted_stripes/: the same, range(1) pinning netpool's stripe count.
void setup_all_lent_striped(const benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  prepare_and_lend<netpool_basic>(size, size, static_cast<std::uint32_t>(state.range(1)));
}

template <class C>
void teardown_lent(const benchmark::State&) {
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

template <class C>
void try_get_exhausted(benchmark::State& state) {
  C* pool = pool_cache::current_or_skip<C>(state);
  if (pool == nullptr) return;
  if (held_by_setup<C>().size() != static_cast<std::size_t>(state.range(0))) {
    state.SkipWithError("the setup could not lend the whole pool");
    return;
  }
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    auto h = pool->try_acquire();
    if (!h) [[likely]]
      return true;
    pool->release(h);
    return skip(state, "a get found a connection in a pool whose connections are all lent");
  });
  counters.finish(state);
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
        ->Teardown(teardown_lent<C>);
  });
  for_each_type(pool_contenders{}, []<class C>() {
    register_threaded(std::string("scaling/get_put_walk/") + C::name, scaled_get_put_held<C, walk_burst_size>,
                      {1, 2})
        ->ArgName("size")
        ->Arg(100)
        ->Arg(10000)
        ->Setup(setup_half_lent<C>)
        ->Teardown(teardown_lent<C>);
  });
  for_each_type(pool_contenders{}, []<class C>() {
    if constexpr (requires(C & pool) { pool.try_acquire(); }) {
      register_threaded(std::string("scaling/try_get_exhausted/") + C::name, try_get_exhausted<C>, {1})
          ->ArgName("size")
          ->Arg(100)
          ->Arg(10000)
          ->Setup(setup_all_lent<C>)
          ->Teardown(teardown_lent<C>);
    }
  });
  register_threaded("scaling/try_get_exhausted_stripes/netpool_basic", try_get_exhausted<netpool_basic>, {1})
      ->ArgNames({"size", "stripes"})
      ->ArgsProduct({{10000}, {1, 2, 4, 8}})
      ->Setup(setup_all_lent_striped)
      ->Teardown(teardown_lent<netpool_basic>);
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
