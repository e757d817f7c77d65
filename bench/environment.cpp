// bench/environment.cpp — see environment.hpp.
#include "environment.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <system_error>

namespace bench {
namespace {

loopback_server* g_server = nullptr;
netpool::tcp_dialer* g_dialer = nullptr;
double g_ns_per_iteration = 1.0;
std::uint64_t g_descriptor_limit = 0;

// Pools of 10 000 loopback connections hold 10 000 descriptors here (and as many in the server's
// process): raise the soft limit to the hard one, and the hard one too when allowed (root). A failure is not
// fatal: the benchmarks that need more descriptors than allowed skip themselves with a message.
void raise_descriptor_limit() noexcept {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  constexpr rlim_t wanted = 1 << 16;
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) {
    rlimit raised{wanted, wanted};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, wanted);
    (void)::setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) g_descriptor_limit = limit.rlim_cur;
}

// The fastest of many short rounds spread over ~0.2 s: on a virtual machine the CPU can run at a
// fraction of its speed for some milliseconds (a 7-round, ~8 ms calibration once read 0.55 ns per
// step where the loop runs at 0.27), and a minimum over a longer window finds the real speed.
double calibrate_busy_work() noexcept {
  constexpr std::uint64_t iterations = 1 << 20;
  double best = 1e300;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  for (int round = 0; round < 1000 && (round < 7 || std::chrono::steady_clock::now() < until); ++round) {
    const auto start = std::chrono::steady_clock::now();
    busy_work(iterations);
    const auto elapsed = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
    best = std::min(best, elapsed.count() / static_cast<double>(iterations));
  }
  return best;
}

}  // namespace

// Aligned to a cache line so that the loop's place in the instruction stream is the same in every
// build of this file (see the header); noinline so that this is the only copy.
[[gnu::noinline, gnu::aligned(64)]] void busy_work(std::uint64_t iterations) noexcept {
  for (std::uint64_t i = 0; i < iterations; ++i) benchmark::DoNotOptimize(i);
}

environment::environment() {
  raise_descriptor_limit();
  g_ns_per_iteration = calibrate_busy_work();
  g_server = new loopback_server();
  g_dialer = new netpool::tcp_dialer("127.0.0.1", g_server->port());
}

environment::~environment() {
  delete g_dialer;
  g_dialer = nullptr;
  delete g_server;
  g_server = nullptr;
}

loopback_server& server() noexcept {
  return *g_server;
}

const netpool::tcp_dialer& dialer() noexcept {
  return *g_dialer;
}

netpool::result<netpool::socket> dial() noexcept {
  try {
    return (*g_dialer)(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  } catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

std::unique_ptr<netpool::socket> dial_or_throw() {
  auto connection = dial();
  if (!connection) throw std::system_error(connection.error(), "dial 127.0.0.1");
  return std::make_unique<netpool::socket>(std::move(*connection));
}

std::uint64_t work_iterations(std::chrono::nanoseconds duration) noexcept {
  return static_cast<std::uint64_t>(std::llround(static_cast<double>(duration.count()) / g_ns_per_iteration));
}

double busy_work_ns_per_iteration() noexcept {
  return g_ns_per_iteration;
}

std::uint64_t descriptor_limit() noexcept {
  return g_descriptor_limit;
}

}  // namespace bench
