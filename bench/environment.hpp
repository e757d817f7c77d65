// bench/environment.hpp — what every netpool_bench benchmark shares: the embedded loopback server,
// the dialer pointed at it, and the calibrated busy-loop that stands for "work".
//
//   bench::environment env;                 // main(): starts the server, calibrates the work loop
//   auto conn = bench::dial();              // any thread: a fresh loopback connection (5 s deadline)
//   bench::busy_work(bench::work_iterations(std::chrono::nanoseconds(100)));   // ~100 ns of CPU
//
// Thread safety: dial(), busy_work() and the accessors are safe from any thread while the
// environment exists (it is created once, in main, before any benchmark runs).
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <memory>

#include "loopback_server.hpp"
#include "netpool/dialer.hpp"
#include "netpool/result.hpp"
#include "netpool/socket.hpp"

namespace bench {

class environment {
 public:
  environment();  // throws std::system_error if the server cannot start
  ~environment();
  environment(const environment&) = delete;
  environment& operator=(const environment&) = delete;
};

[[nodiscard]] loopback_server& server() noexcept;

// The tcp_dialer (127.0.0.1:<server port>) every contender dials through.
[[nodiscard]] const netpool::tcp_dialer& dialer() noexcept;

// A new blocking TCP connection to the embedded server (127.0.0.1), through netpool::tcp_dialer.
[[nodiscard]] netpool::result<netpool::socket> dial() noexcept;
// The same, heap-allocated, for pools that hand out pointers; throws std::system_error on failure.
[[nodiscard]] std::unique_ptr<netpool::socket> dial_or_throw();

// A dependent busy loop the optimiser cannot remove: `iterations` steps of roughly one cycle each.
// One out-of-line copy (environment.cpp) for every caller and for the calibration: inlined, each
// benchmark got its own copy of the loop at its own address, and a copy whose 9 bytes crossed a
// 32-byte boundary ran at half speed on our EPYC VMs, so one contender's "1 µs" of work took 2 µs
// (it made the Standard pool look 1.5-1.9x slower at hand-off than the Basic pool, with the same
// pool code on both). The call costs a few ns, the same for every contender, and the calibration
// includes it.
void busy_work(std::uint64_t iterations) noexcept;

// Iterations of busy_work() that take about `duration` on this machine (calibrated once at start-up,
// best of several runs, before any benchmark thread exists).
[[nodiscard]] std::uint64_t work_iterations(std::chrono::nanoseconds duration) noexcept;
[[nodiscard]] double busy_work_ns_per_iteration() noexcept;

// Descriptors this process may open (RLIMIT_NOFILE soft limit, raised to the hard limit at start-up).
[[nodiscard]] std::uint64_t descriptor_limit() noexcept;

}  // namespace bench
