// manual_clock.hpp — a clock a test moves by hand, for pool_config::clock.
//
//   netpool::test::manual_clock clock;        // declared before the pool: it must outlive it
//   cfg.clock = clock.function();
//   cfg.background_maintenance = false;       // the test calls pool.maintain() itself
//   clock.set(std::chrono::milliseconds(150));
//   pool.maintain();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>

namespace netpool::test {

// A clock the test moves by hand (pool_config::clock). The pool's tick is milliseconds since the
// clock's reading at creation, so with the clock created at 0, "tick" == set()'s milliseconds.
class manual_clock {
 public:
  manual_clock() = default;
  manual_clock(const manual_clock&) = delete;
  manual_clock& operator=(const manual_clock&) = delete;
  manual_clock(manual_clock&&) = delete;  // function() hands out `this`
  manual_clock& operator=(manual_clock&&) = delete;
  ~manual_clock() = default;

  // For pool_config::clock. `this` must outlive the pool.
  [[nodiscard]] std::function<std::chrono::steady_clock::time_point()> function() {
    return [this] {
      // relaxed: a count only. The clock must not synchronise the threads that read it, or it
      // would hide data races inside the pool from ThreadSanitizer.
      calls_.fetch_add(1, std::memory_order_relaxed);
      return base_ + std::chrono::nanoseconds(offset_.load(std::memory_order_acquire));
    };
  }
  void set(std::chrono::nanoseconds since_start) noexcept {
    offset_.store(since_start.count(), std::memory_order_release);
  }
  void advance(std::chrono::nanoseconds by) noexcept {
    offset_.fetch_add(by.count(), std::memory_order_acq_rel);
  }
  // How often the pool has read the clock.
  [[nodiscard]] int calls() const noexcept { return calls_.load(std::memory_order_relaxed); }

 private:
  const std::chrono::steady_clock::time_point base_ = std::chrono::steady_clock::now();
  std::atomic<std::int64_t> offset_{0};
  std::atomic<int> calls_{0};
};

}  // namespace netpool::test
