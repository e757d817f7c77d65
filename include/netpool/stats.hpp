// netpool/stats.hpp — a snapshot of a pool's gauges and counters.
//
//   netpool::pool_stats s = pool.stats();
//   std::printf("%zu open (%zu idle, %zu in use) of %zu; %zu waiting\n",
//               s.active, s.idle, s.in_use, s.max, s.waiters);
//   std::printf("%llu gets, %llu waited, %llu dial failures\n", ...);
//
// Thread safety: stats() may be called from any thread at any time.
// Guarantee: best effort under concurrency. Each field is read atomically, but the fields are not
// read at one instant, so a snapshot taken while other threads get and put may be off by the
// operations in flight. When the pool is quiescent, active == idle + in_use + dialing exactly.
// Cost: gauges are derived by reading every slot's state (O(max_size)), not kept as shared counters:
// a shared counter written on every get and put would cost as much as the pool itself.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace netpool {

struct pool_stats {
  // Gauges.
  std::size_t active = 0;   // slots holding or opening a connection: idle + in_use + dialing
  std::size_t idle = 0;     // open connections waiting in the pool (== len())
  std::size_t in_use = 0;   // connections lent out
  std::size_t dialing = 0;  // slots being dialed, checked or closed by the pool right now
  std::size_t max = 0;      // config max_size
  std::size_t min = 0;      // config min_size
  std::size_t waiters = 0;  // callers blocked in get

  // Counters since creation.
  std::uint64_t gets = 0;                 // connections handed out
  std::uint64_t gets_waited = 0;          // gets that had to block before being served (or failing)
  std::chrono::nanoseconds wait_time{0};  // total time spent blocked by those gets
  std::uint64_t timeouts = 0;             // gets that failed with errc::timeout while waiting
  std::uint64_t cancellations = 0;        // gets that failed with errc::cancelled
  std::uint64_t dials = 0;                // factory calls
  std::uint64_t dial_failures = 0;        // factory calls that failed or threw
  std::uint64_t fast_failures = 0;        // gets failed at once with the last dial error (backing off)
  std::uint64_t closed_idle = 0;          // closed for exceeding max_idle_time
  std::uint64_t closed_health = 0;        // closed because the health check said false or threw
  std::uint64_t closed_error = 0;         // closed by put_with_error / lease::discard
  std::uint64_t closed_pool = 0;          // closed because the pool was closed
  std::uint64_t closed_lifetime = 0;      // closed for exceeding max_lifetime
  std::uint64_t closed_reset = 0;         // closed by reset()
};

}  // namespace netpool
