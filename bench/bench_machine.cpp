// bench/bench_machine.cpp — what this machine charges for sharing, measured in the same run as the
// pools, so that a run's contended figures can be read against it.
//
//   machine/line_round_trip   ns for one cache line to go from this thread's CPU to another's and
//                             back: two spinning threads hand one atomic back and forth
//
// On a 2-CPU virtual machine this depends on where the host placed the two vCPUs, and it moves:
// 130 ns and 178 ns a round trip, in two runs minutes apart on one VM. Every contended figure
// follows it, since a pool whose threads write one line pays a one-way trip per op that moves it.
// Its repetitions are interleaved with the other benchmarks' (scripts/bench.sh), so the median
// spans the run. Nothing is pinned, as in every other benchmark.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <thread>

#include "sections.hpp"

namespace bench {
namespace {

void line_round_trip(benchmark::State& state) {
  // Odd: the partner's move (it answers with the next even value); even: ours. `stop` is never a
  // move's value.
  alignas(64) std::atomic<std::uint64_t> turn{0};
  constexpr std::uint64_t stop = ~std::uint64_t{0};
  std::thread partner([&turn] {
    for (;;) {
      // acquire/release: the hand-over itself, paired with the main thread's store and load.
      const std::uint64_t now = turn.load(std::memory_order_acquire);
      if (now == stop) return;
      if ((now & 1) != 0) turn.store(now + 1, std::memory_order_release);
    }
  });
  std::uint64_t move = 1;
  for (auto _ : state) {
    turn.store(move, std::memory_order_release);  // release/acquire: pairs with the partner's
    while (turn.load(std::memory_order_acquire) != move + 1) {
    }
    move += 2;
  }
  turn.store(stop, std::memory_order_release);
  partner.join();
}

}  // namespace

void register_machine() {
  benchmark::RegisterBenchmark("machine/line_round_trip", line_round_trip)->UseRealTime();
}

}  // namespace bench
