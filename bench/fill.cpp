// netpool_bench_fill: the cost of a dial as a pool fills up, which is where finding a free slot
// shows (INV14 in detail/pool_core.hpp: a bitmap of free slots, instead of a scan from slot 0).
//
//   cmake --build build-bench --target netpool_bench_fill   # build-bench/: as scripts/bench.sh makes it
//   build-bench/bench/netpool_bench_fill [connections]      # default 9000
//
// One thread takes `connections` leases from a lean_pool of that size and holds them all, so that
// every get dials: each connection is one end of a Unix socketpair (no server, no network). It
// prints the time per get+dial over each quarter of the fill. With a scan from slot 0 the later
// quarters cost more (each dial passes every slot in use); with the bitmap they cost the same.
// Each connection holds two descriptors: the soft limit is raised to the hard one first.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include <netpool/netpool.hpp>

#include "socketpair_connection.hpp"

int main(int argc, char** argv) {
  const long wanted = argc > 1 ? std::atol(argv[1]) : 9000;
  if (wanted < 4) {
    std::fprintf(stderr, "usage: %s [connections >= 4]\n", argv[0]);
    return 2;
  }
  const auto n = static_cast<std::size_t>(wanted);
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &files);
  }

  std::vector<netpool::socket> peers;  // the other ends, closed at exit
  peers.reserve(n);
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = [&peers](auto) { return bench::socketpair_connection(peers); };
  cfg.max_size = n;
  auto pool = netpool::lean_pool<netpool::socket>::create(std::move(cfg));
  if (!pool) {
    std::fprintf(stderr, "create: %s\n", pool.error().message().c_str());
    return 1;
  }

  using clock = std::chrono::steady_clock;
  std::vector<netpool::lease<netpool::socket>> held;
  held.reserve(n);
  const std::size_t quarter = n / 4;
  std::printf("filling a lean_pool of %zu (socketpair factory, 1 thread): us per get+dial\n", n);
  auto start = clock::now();
  for (std::size_t q = 0; q < 4; ++q) {
    const std::size_t end = q == 3 ? n : (q + 1) * quarter;
    const std::size_t count = end - held.size();
    for (std::size_t i = held.size(); i < end; ++i) {
      auto lease = pool->get();
      if (!lease) {
        std::fprintf(stderr, "get %zu: %s (too few descriptors? ulimit -Hn)\n", i,
                     lease.error().message().c_str());
        return 1;
      }
      held.push_back(std::move(*lease));
    }
    const auto now = clock::now();
    std::printf("  quarter %zu (connections %zu..%zu): %.2f us\n", q + 1, end - count + 1, end,
                std::chrono::duration<double, std::micro>(now - start).count() / static_cast<double>(count));
    start = now;
  }
  return 0;
}
