// netpool_bench_instructions_exhausted: try_get() on a pool whose connections are all lent, for
// counting instructions under callgrind (scripts/instructions.sh, its -exhausted rows).
//
//   valgrind --tool=callgrind ./netpool_bench_instructions_exhausted basic 100000
//
// A pool of 1 000 socketpair connections, every one lent by the setup, then `iterations` calls of
// try_get(), each finding nothing: the lean walk of the idle bitmap (through its summary), then
// the full walk of every stripe's words. scripts/instructions.sh runs it for N and 2N and reports
// the difference / N. A program of its own, not a loop of netpool_bench_instructions: there, a
// caller of try_get() beside the get+put loops changed what the compiler specialises in the
// library's shared miss path (acquire_slow()), and with it those loops' counts (a burst get+put
// 3.3 instructions more, with the same library).
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include <netpool/netpool.hpp>

#include "socketpair_connection.hpp"

namespace {

constexpr std::size_t pool_size = 1000;

template <class Pool>
[[gnu::noinline]] int run(netpool::pool_config<netpool::socket> cfg, long iterations) {
  auto pool = Pool::create(std::move(cfg));
  if (!pool) {
    std::fprintf(stderr, "create: %s\n", pool.error().message().c_str());
    return 1;
  }
  std::vector<netpool::result<netpool::lease<netpool::socket>>> held;
  held.reserve(pool_size);
  while (held.size() < pool_size) {
    held.push_back(pool->get());
    if (!held.back()) {
      std::fprintf(stderr, "get: %s\n", held.back().error().message().c_str());
      return 1;
    }
  }
  long found = 0;
  for (long i = 0; i < iterations; ++i) found += pool->try_get() ? 1 : 0;
  return found == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view kind = argc > 1 ? argv[1] : "basic";
  const long iterations = argc > 2 ? std::atol(argv[2]) : 100000;
  std::vector<netpool::socket> peers;
  peers.reserve(pool_size);

  netpool::pool_config<netpool::socket> cfg;
  // Real descriptors without a server: each connection is one end of a Unix socketpair.
  cfg.factory = [&peers](auto) { return bench::socketpair_connection(peers); };
  cfg.max_size = pool_size;
  cfg.min_size = 0;  // dialed by the setup's gets
  if (kind == "basic") return run<netpool::lean_pool<netpool::socket>>(std::move(cfg), iterations);
  if (kind == "standard") {
    cfg.max_idle_time = std::chrono::minutes(1);  // idle tracking on, as in the benchmark
    cfg.background_maintenance = false;           // as in netpool_bench_instructions
    return run<netpool::pool<netpool::socket>>(std::move(cfg), iterations);
  }
  std::fprintf(stderr, "usage: %s basic|standard [iterations]\n", argv[0]);
  return 2;
}
