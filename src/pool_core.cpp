// The non-template parts of the pool: futex calls, pool ids, configuration messages.
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <ctime>

#include "netpool/config.hpp"
#include "netpool/detail/futex.hpp"
#include "netpool/detail/pool_core.hpp"

namespace netpool {

const char* describe(config_problem problem) noexcept {
  switch (problem) {
    case config_problem::none:
      return "valid configuration";
    case config_problem::missing_factory:
      return "factory is required";
    case config_problem::max_size_zero:
      return "max_size must be > 0";
    case config_problem::max_size_too_large:
      return "max_size must be <= pool_config::max_supported (1048576)";
    case config_problem::min_above_max:
      return "min_size must be <= max_size";
    case config_problem::dial_timeout_not_positive:
      return "dial_timeout must be > 0";
    case config_problem::max_idle_time_negative:
      return "max_idle_time must be >= 0 (0 turns it off)";
    case config_problem::max_connecting_zero:
      return "max_connecting must be >= 1";
    case config_problem::lifetime_negative:
      return "max_lifetime must be >= 0 (0 turns it off)";
    case config_problem::lifetime_jitter_out_of_range:
      return "lifetime_jitter must be in [0, 1]";
    case config_problem::probe_after_negative:
      return "probe_after must be >= 0 (nanoseconds::max() turns it off)";
    case config_problem::keepalive_negative:
      return "keepalive_interval must be >= 0 (0 turns it off)";
    case config_problem::backoff_negative:
      return "dial_backoff_floor must be >= 0 (0 turns backoff off)";
    case config_problem::backoff_cap_below_floor:
      return "dial_backoff_cap must be >= dial_backoff_floor";
    case config_problem::idle_tracking_on_lean_pool:
      return "lean_pool does not track idle time: leave max_idle_time at 0 or use pool";
    case config_problem::health_check_on_lean_pool:
      return "lean_pool has no health check: leave health_check empty or use pool";
    case config_problem::lifetime_on_lean_pool:
      return "lean_pool cannot enforce max_lifetime (no maintainer): leave it at 0 or use pool";
    case config_problem::keepalive_on_lean_pool:
      return "lean_pool runs no keepalive rounds (no maintainer): leave keepalive_interval at 0 or use pool";
    case config_problem::leak_threshold_negative:
      return "leak_threshold must be >= 0 (0 turns leak detection off)";
    case config_problem::leak_callback_missing:
      return "leak_threshold > 0 needs on_leak: who would be told?";
    case config_problem::max_size_limit_out_of_range:
      return "max_size_limit must be 0 (= max_size) or in [max_size, pool_config::max_supported]";
    case config_problem::leak_detection_on_lean_pool:
      return "lean_pool cannot watch leases (no maintainer): leave leak_threshold at 0 or use pool";
    case config_problem::starvation_threshold_negative:
      return "starvation_threshold must be >= 0";
    case config_problem::wait_spin_out_of_range:
      return "wait_spin must be in [0, 1 ms] (0 sleeps at once)";
    case config_problem::health_check_timeout_not_positive:
      return "health_check_timeout must be > 0";
    case config_problem::tcp_options_out_of_range:
      return "factory: the tcp_dialer's tcp_options are out of range (validate(options) says which)";
    case config_problem::unix_path_invalid:
      return "factory: the unix_dialer's path is empty, too long for sockaddr_un (a path: 107 bytes "
             "and its NUL; an abstract name: 108), or a path with a NUL inside";
  }
  return "unknown configuration problem";
}

const char* to_string(close_reason reason) noexcept {
  switch (reason) {
    case close_reason::idle:
      return "idle";
    case close_reason::lifetime:
      return "lifetime";
    case close_reason::health:
      return "health";
    case close_reason::error:
      return "error";
    case close_reason::reset:
      return "reset";
    case close_reason::pool_closed:
      return "pool_closed";
    case close_reason::hook:
      return "hook";
    case close_reason::resize:
      return "resize";
    case close_reason::reclaimed:
      return "reclaimed";
  }
  return "unknown";
}

namespace detail {

std::uint64_t next_pool_id() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);  // relaxed: uniqueness is all we need
}

wait_status futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       std::chrono::steady_clock::time_point deadline) noexcept {
  // The kernel reads the word; it does not write it. const_cast only to fit the syscall's type.
  auto* address = const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
  timespec abs{};
  const timespec* timeout = nullptr;
  if (deadline != std::chrono::steady_clock::time_point::max()) {
    const auto since_epoch = deadline.time_since_epoch();
    if (since_epoch.count() < 0) return wait_status::timed_out;
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    abs.tv_sec = static_cast<time_t>(secs.count());
    abs.tv_nsec =
        static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    timeout = &abs;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (steady_clock on Linux), so a
  // spurious wake-up does not stretch the total wait.
  const long rc = syscall(SYS_futex, address, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, timeout,
                          nullptr, FUTEX_BITSET_MATCH_ANY);
  if (rc == -1 && errno == ETIMEDOUT) return wait_status::timed_out;
  return wait_status::woken;  // woken, EAGAIN (value changed), EINTR: the caller re-checks
}

void futex_wake(const void* word, int count) noexcept {
  syscall(SYS_futex, const_cast<void*>(word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, count, nullptr, nullptr, 0);
}

}  // namespace detail
}  // namespace netpool
