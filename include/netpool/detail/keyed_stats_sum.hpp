// netpool/detail/keyed_stats_sum.hpp — adding up pool_stats across the sub-pools of a keyed_pool.
#pragma once

#include <algorithm>
#include <cstddef>

#include "netpool/stats.hpp"

namespace netpool::detail {

// Adds `from`'s counters (everything counted since creation) into `into`. max_wait is a maximum,
// not a sum.
inline void add_counters(pool_stats& into, const pool_stats& from) noexcept {
  into.gets += from.gets;
  into.gets_immediate += from.gets_immediate;
  into.gets_waited += from.gets_waited;
  into.wait_time += from.wait_time;
  into.max_wait = std::max(into.max_wait, from.max_wait);
  for (std::size_t i = 0; i < into.wait_histogram.size(); ++i)
    into.wait_histogram[i] += from.wait_histogram[i];
  into.timeouts += from.timeouts;
  into.cancellations += from.cancellations;
  into.dials += from.dials;
  into.dials_ok += from.dials_ok;
  into.dial_failures += from.dial_failures;
  into.fast_failures += from.fast_failures;
  into.leaks += from.leaks;
  for (std::size_t i = 0; i < into.closed.size(); ++i) into.closed[i] += from.closed[i];
  into.closed_idle += from.closed_idle;
  into.closed_health += from.closed_health;
  into.closed_error += from.closed_error;
  into.closed_pool += from.closed_pool;
  into.closed_lifetime += from.closed_lifetime;
  into.closed_reset += from.closed_reset;
  into.closed_hook += from.closed_hook;
  into.closed_resize += from.closed_resize;
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
