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

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "netpool/hooks.hpp"

namespace netpool {

// Upper bounds of the wait-time histogram's buckets (the last bucket, past 10 s, has none).
inline constexpr std::array<std::chrono::nanoseconds, 7> wait_bucket_bounds{
    std::chrono::microseconds(10), std::chrono::microseconds(100), std::chrono::milliseconds(1),
    std::chrono::milliseconds(10), std::chrono::milliseconds(100), std::chrono::seconds(1),
    std::chrono::seconds(10)};
inline constexpr std::size_t wait_buckets = wait_bucket_bounds.size() + 1;

struct pool_stats {
  // Gauges.
  std::size_t active = 0;   // slots holding or opening a connection: idle + in_use + dialing
  std::size_t idle = 0;     // open connections waiting in the pool (== len())
  std::size_t in_use = 0;   // connections lent out
  std::size_t dialing = 0;  // slots being dialed, checked or closed by the pool right now
  std::size_t max = 0;      // config max_size
  std::size_t min = 0;      // config min_size
  std::size_t waiters = 0;  // callers blocked in get

  // Counters since creation. Hot-path counts live in each slot's own cache line and are summed
  // here; the rest are written only on slow paths (waiting, dialing, closing).
  std::uint64_t gets = 0;                 // connections handed out
  std::uint64_t gets_immediate = 0;       // of those, handed out without waiting in line: a get that
                                          // dialed on its own thread counts here, however long it took
  std::uint64_t gets_waited = 0;          // gets that waited in line before being served (or failing):
                                          // every connection was in use, or (pool) their dial ran on
                                          // a dialer thread, as it does for a get that may give up
                                          // first (a deadline sooner than dial_timeout, a stop token)
  std::chrono::nanoseconds wait_time{0};  // total time spent in line by those gets
  std::chrono::nanoseconds max_wait{0};   // the longest single block
  // gets_waited by how long they blocked: wait_histogram[i] counts waits <= wait_bucket_bounds[i]
  // (and > the bound before); the last entry counts waits past the last bound. Not cumulative.
  std::array<std::uint64_t, wait_buckets> wait_histogram{};
  std::uint64_t timeouts = 0;       // gets that failed with errc::timeout at their own deadline
                                    // (waiting, or about to dial); not a dial's own timeout
  std::uint64_t cancellations = 0;  // gets that failed with errc::cancelled
  std::uint64_t dials = 0;          // factory calls
  std::uint64_t dials_ok = 0;       // dials that produced a connection (and passed on_connect)
  std::uint64_t dial_failures = 0;  // dials that failed, threw, or were refused by on_connect
  std::uint64_t fast_failures = 0;  // gets failed at once with the last dial error (backing off)
  std::uint64_t leaks = 0;          // leases reported to on_leak as held past leak_threshold

  // Connections closed, by reason (closed[static_cast<size_t>(close_reason::idle)], ...). The
  // named fields below are the same numbers, kept for readability.
  std::array<std::uint64_t, close_reason_count> closed{};
  std::uint64_t closed_idle = 0;       // closed for exceeding max_idle_time
  std::uint64_t closed_health = 0;     // closed because the probe or health check said dead (or threw)
  std::uint64_t closed_error = 0;      // closed by put_with_error / lease::discard
  std::uint64_t closed_pool = 0;       // closed because the pool was closed
  std::uint64_t closed_lifetime = 0;   // closed for exceeding max_lifetime
  std::uint64_t closed_reset = 0;      // closed by reset()
  std::uint64_t closed_hook = 0;       // refused by on_connect, on_borrow or on_return (or it threw).
                                       // An on_connect refusal counts here and in dial_failures, never
                                       // in dials_ok: dials_ok - (sum of closed) is active minus those
  std::uint64_t closed_resize = 0;     // closed because set_max_size() shrank the pool
  std::uint64_t closed_reclaimed = 0;  // idle, closed by reclaim_idle() (keyed_pool's global limit)
};

// keyed_pool::stats() (keyed_pool.hpp): a snapshot across every sub-pool. Best effort under
// concurrency, as pool_stats.
struct keyed_pool_stats {
  // Every current sub-pool's stats added up (gauges: now; max: the sum of max_size). Counters also
  // include the sub-pools already evicted or removed (with what their close counted, and their
  // leases returned before the sub-pool was destroyed), so they never go down.
  pool_stats total;
  std::size_t pools = 0;           // sub-pools now (== size())
  std::size_t open = 0;            // connections open or being dialed across keys: global tokens taken
  std::size_t global_max = 0;      // the configured global_max (0: none)
  std::size_t global_waiters = 0;  // dials waiting for a global token now
  std::uint64_t pools_created = 0;
  std::uint64_t pools_evicted = 0;     // closed by evict_idle_after
  std::uint64_t pools_removed = 0;     // closed by remove()
  std::uint64_t global_waits = 0;      // dials that found no global token free at first
  std::uint64_t global_exhausted = 0;  // of those, dials that gave up at their deadline (exhausted)
  std::uint64_t reclaimed = 0;         // idle connections closed to free a token for a dial
};

}  // namespace netpool
