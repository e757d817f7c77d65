// bench/contenders/queue_pool.hpp — a concurrent queue used as a pool, the way a user builds one:
// idle connections live in the queue; acquire = non-blocking pop, or, when it is empty, dial a new
// connection while fewer than max_size are open, or else the queue's blocking pop; release = push.
// tbb_queue.hpp and moodycamel_queue.hpp plug their queue in through a small Ops policy:
//
//   struct Ops {
//     using queue = ...;
//     static queue make(std::size_t max_size);
//     static bool try_pop(queue&, netpool::socket*&) noexcept;
//     static void pop(queue&, netpool::socket*&) noexcept;   // blocks until an item arrives
//     static bool push(queue&, netpool::socket*) noexcept;   // false: not stored (no memory)
//   };
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "../environment.hpp"
#include "contender.hpp"

namespace bench {

template <class Ops>
class queue_pool {
 public:
  using handle = netpool::socket*;

  explicit queue_pool(const pool_params& params)
      : max_size_(params.max_size), idle_(Ops::make(params.max_size)) {
    owned_.reserve(max_size_);
    for (std::size_t i = 0; i < params.min_size; ++i) {
      owned_.push_back(dial_or_throw());
      if (!Ops::push(idle_, owned_.back().get())) throw std::bad_alloc();
    }
    opened_.store(owned_.size(), std::memory_order_relaxed);
  }

  ~queue_pool() {
    netpool::socket* connection = nullptr;
    while (Ops::try_pop(idle_, connection)) {
    }  // drain the queue's pointers; owned_ closes the connections
  }

  queue_pool(const queue_pool&) = delete;
  queue_pool& operator=(const queue_pool&) = delete;

  handle acquire() noexcept {
    netpool::socket* connection = nullptr;
    if (Ops::try_pop(idle_, connection)) return connection;
    return acquire_slow();
  }

  handle try_acquire() noexcept {
    netpool::socket* connection = nullptr;
    return Ops::try_pop(idle_, connection) ? connection : nullptr;
  }
  bool release(handle& connection) noexcept {
    const bool stored = Ops::push(idle_, connection);
    connection = nullptr;
    return stored;
  }

  static netpool::socket& connection(handle& h) noexcept { return *h; }

 private:
  handle acquire_slow() noexcept {
    std::size_t opened = opened_.load(std::memory_order_relaxed);
    while (opened < max_size_) {
      if (opened_.compare_exchange_weak(opened, opened + 1, std::memory_order_relaxed)) return open_one();
    }
    netpool::socket* connection = nullptr;
    Ops::pop(idle_, connection);
    return connection;
  }

  handle open_one() noexcept {
    auto connection = dial();
    if (connection) {
      std::lock_guard lock(owned_mutex_);
      try {
        owned_.push_back(std::make_unique<netpool::socket>(std::move(*connection)));
        return owned_.back().get();
      } catch (const std::bad_alloc&) {
      }
    }
    opened_.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }

  const std::size_t max_size_;
  typename Ops::queue idle_;
  std::atomic<std::size_t> opened_{0};  // connections owned or being dialed; <= max_size_
  std::mutex owned_mutex_;              // only taken when a connection is dialed
  std::vector<std::unique_ptr<netpool::socket>> owned_;
};

}  // namespace bench
