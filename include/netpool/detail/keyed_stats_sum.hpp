// netpool/detail/keyed_stats_sum.hpp — adding up pool_stats across the sub-pools of a keyed_pool.
#pragma once

#include <algorithm>
#include <cstddef>

#include "netpool/stats.hpp"

namespace netpool::detail {

// Applies `op(into_field, from_field)` to each counter that adds up across sub-pools (everything
// counted since creation except max_wait, a maximum).
template <class Op>
void combine_counters(pool_stats& into, const pool_stats& from, Op op) noexcept {
  op(into.gets, from.gets);
  op(into.gets_immediate, from.gets_immediate);
  op(into.gets_waited, from.gets_waited);
  op(into.wait_time, from.wait_time);
  for (std::size_t i = 0; i < into.wait_histogram.size(); ++i)
    op(into.wait_histogram[i], from.wait_histogram[i]);
  op(into.timeouts, from.timeouts);
  op(into.cancellations, from.cancellations);
  op(into.dials, from.dials);
  op(into.dials_ok, from.dials_ok);
  op(into.dial_failures, from.dial_failures);
  op(into.fast_failures, from.fast_failures);
  op(into.leaks, from.leaks);
  for (std::size_t i = 0; i < into.closed.size(); ++i) op(into.closed[i], from.closed[i]);
  op(into.closed_idle, from.closed_idle);
  op(into.closed_health, from.closed_health);
  op(into.closed_error, from.closed_error);
  op(into.closed_pool, from.closed_pool);
  op(into.closed_lifetime, from.closed_lifetime);
  op(into.closed_reset, from.closed_reset);
  op(into.closed_hook, from.closed_hook);
  op(into.closed_resize, from.closed_resize);
  op(into.closed_reclaimed, from.closed_reclaimed);
}

// Adds `from`'s counters into `into`.
inline void add_counters(pool_stats& into, const pool_stats& from) noexcept {
  combine_counters(into, from, [](auto& a, const auto& b) { a += b; });
  into.max_wait = std::max(into.max_wait, from.max_wait);
}

// Adds what `from`'s counters grew by since `before` (an earlier stats() of the same pool: counters
// never go down, so no field goes below zero).
inline void add_counter_growth(pool_stats& into, const pool_stats& from, const pool_stats& before) noexcept {
  add_counters(into, from);
  combine_counters(into, before, [](auto& a, const auto& b) { a -= b; });
}

// Adds `from`'s gauges (what is true now: open, idle, lent, sizes, waiters) into `into`.
inline void add_gauges(pool_stats& into, const pool_stats& from) noexcept {
  into.active += from.active;
  into.idle += from.idle;
  into.in_use += from.in_use;
  into.dialing += from.dialing;
  into.max += from.max;
  into.min += from.min;
  into.waiters += from.waiters;
}

}  // namespace netpool::detail
