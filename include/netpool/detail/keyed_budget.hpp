// netpool/detail/keyed_budget.hpp — the global connection budget of one keyed_pool.
//
// One token per connection that is open or being dialed, across every sub-pool of a keyed_pool.
// The keyed pool wraps each sub-pool's factory so that a dial takes a token first, and each
// sub-pool's on_close so that the token comes back when the core closes the connection; a dial that
// fails (or throws) gives its token back at once. The core stays unaware of it: its own counts are
// per sub-pool, this one spans them.
//
// Invariants (cited as KBn):
//   KB1  taken_ == tokens taken and not yet given back == connections open or being dialed by the
//        sub-pools of this keyed pool (every connection the factory produced holds exactly one,
//        given back by on_close, which the core calls exactly once per connection it closes).
//   KB2  taken_ <= max_ when max_ > 0: take() raises it only by a CAS from a value below max_.
//   KB3  No lost wake-up: give_back() lowers taken_ (seq_cst) and then loads waiting_ (seq_cst); a
//        waiter raises waiting_ (seq_cst RMW) under mutex_, then tries the CAS, then sleeps on cv_
//        without releasing mutex_ in between. Either the waiter's CAS sees the token, or the giver
//        sees waiting_ > 0, takes mutex_ (so the waiter is asleep or has not yet looked) and
//        notifies.
//
// Lifetime: shared (std::shared_ptr) by the keyed pool and by every sub-pool's on_close, so that a
// lease outliving its keyed pool can still give its token back when it is finally returned.
#pragma once

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <utility>

#include "netpool/error.hpp"

namespace netpool::detail {

// Runs `f` on scope exit unless dismissed (the keyed layer's token and flag cleanups).
template <class F>
class scope_guard {
 public:
  explicit scope_guard(F f) noexcept : f_(std::move(f)) {}
  scope_guard(const scope_guard&) = delete;
  scope_guard& operator=(const scope_guard&) = delete;
  ~scope_guard() {
    if (armed_) f_();
  }
  void dismiss() noexcept { armed_ = false; }

 private:
  F f_;
  bool armed_ = true;
};

class keyed_budget {
 public:
  using clock = std::chrono::steady_clock;

  // max == 0: no global limit; tokens are still counted (keyed_pool_stats::open).
  explicit keyed_budget(std::size_t max) noexcept : max_(max) {}

  // A token now, or false. Never blocks. KB2.
  [[nodiscard]] bool try_take() noexcept {
    if (max_ == 0) {
      taken_.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: KB3 (uniform with the CAS below)
      return true;
    }
    std::size_t n = taken_.load(std::memory_order_seq_cst);
    do {
      if (n >= max_) return false;
      // seq_cst: KB3, pairs with give_back()'s decrement followed by its load of waiting_.
    } while (!taken_.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst, std::memory_order_seq_cst));
    return true;
  }

  // A token, waiting until `deadline` if none is free. Between waits it calls reclaim() (outside
  // the lock), which may free one by closing an idle connection of another sub-pool and says
  // whether it closed one, and, if it did not, not_needed() (outside the lock too), which says
  // whether the dial's own sub-pool has an idle connection now. While every connection is lent,
  // nothing announces a connection that becomes idle, so the wait is also a poll: every 1 ms at
  // first, doubling up to 16 ms; each poll also asks abandoned() whether the dial is still wanted
  // (its sub-pool was removed).
  // Errors: errc::exhausted when the deadline passes, errc::dial_not_needed once not_needed() says
  // so, errc::pool_closed after close() or once abandoned() says so. Only a take that has to wait
  // sees close(): a free token is taken even after it (the dial's sub-pool is closed by then, or
  // is about to be, and closes what the dial makes, which gives the token back).
  template <class Reclaim, class NotNeeded, class Abandoned>
  [[nodiscard]] std::error_code take(clock::time_point deadline, Reclaim&& reclaim, NotNeeded&& not_needed,
                                     Abandoned&& abandoned) {
    if (try_take()) return {};
    waits_.fetch_add(1, std::memory_order_relaxed);
    std::unique_lock lock(mutex_);
    waiting_.fetch_add(1, std::memory_order_seq_cst);  // KB3
    const scope_guard leave([this] { waiting_.fetch_sub(1, std::memory_order_relaxed); });
    std::chrono::nanoseconds poll = std::chrono::milliseconds(1);
    // Bounded by the deadline (each pass either takes a token, or sleeps, or reaches it) and by
    // close(); a pass that reclaimed a connection someone else then took sleeps no less.
    for (;;) {
      if (closed_) return errc::pool_closed;
      if (abandoned()) {
        // give_back()'s notify_one may have picked us for a token we will not take: pass it on,
        // or another waiter sleeps beside that token until its next poll.
        cv_.notify_one();
        return errc::pool_closed;
      }
      if (try_take()) return {};  // KB3: under mutex_, right before sleeping or reclaiming
      lock.unlock();
      // Outside the lock: reclaiming closes a connection, whose on_close calls give_back(); and
      // not_needed() looks the dial's sub-pool up in the keyed pool's map.
      const bool freed = reclaim();
      const bool idle_at_home = !freed && not_needed();
      lock.lock();
      if (closed_) return errc::pool_closed;
      if (idle_at_home) {
        cv_.notify_one();  // as for abandoned(): a wake-up we may have been picked for goes on
        return errc::dial_not_needed;
      }
      if (try_take()) return {};
      const clock::time_point now = clock::now();
      if (now >= deadline) {
        exhausted_.fetch_add(1, std::memory_order_relaxed);
        return errc::exhausted;
      }
      if (freed) continue;  // somebody else took the freed token: reclaim again, without sleeping
      const clock::time_point wake = deadline - now > poll ? now + poll : deadline;
      cv_.wait_until(lock, wake);
      poll = std::min<std::chrono::nanoseconds>(poll * 2, std::chrono::milliseconds(16));
    }
  }

  // Gives one token back: its connection was closed (on_close), or its dial failed.
  void give_back() noexcept {
    [[maybe_unused]] const std::size_t before = taken_.fetch_sub(1, std::memory_order_seq_cst);  // KB3
    assert(before > 0 && "netpool: keyed_pool token given back twice");                          // KB1
    if (waiting_.load(std::memory_order_seq_cst) != 0) {
      { std::lock_guard lock(mutex_); }  // KB3: the waiter is asleep on cv_ or has not looked yet
      cv_.notify_one();
    }
  }

  // Wakes every waiter with errc::pool_closed, and fails later waits. Tokens still go on being
  // given back by connections closed later.
  void close() noexcept {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  [[nodiscard]] std::size_t max() const noexcept { return max_; }
  // Best effort under concurrency, as every gauge.
  [[nodiscard]] std::size_t taken() const noexcept { return taken_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t waiting() const noexcept { return waiting_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t waits() const noexcept { return waits_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t exhausted() const noexcept {
    return exhausted_.load(std::memory_order_relaxed);
  }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> taken_{0};        // KB1, KB2
  std::atomic<std::size_t> waiting_{0};      // threads inside take()'s wait loop; KB3
  std::atomic<std::uint64_t> waits_{0};      // takes that found no free token (counter)
  std::atomic<std::uint64_t> exhausted_{0};  // takes that gave up at their deadline (counter)
  std::mutex mutex_;                         // guards closed_; the waiters' side of KB3
  std::condition_variable cv_;
  bool closed_ = false;  // guarded by mutex_
};

}  // namespace netpool::detail
