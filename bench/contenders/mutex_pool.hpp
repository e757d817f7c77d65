// bench/contenders/mutex_pool.hpp — the pool people write by hand: std::mutex + std::vector (LIFO)
// + std::condition_variable, dialing outside the lock when empty and below max_size.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "../environment.hpp"
#include "contender.hpp"

namespace bench {

class mutex_pool {
 public:
  static constexpr const char* name = "mutex_pool";
  using handle = netpool::socket*;

  explicit mutex_pool(const pool_params& params) : max_size_(params.max_size) {
    owned_.reserve(max_size_);
    idle_.reserve(max_size_);
    for (std::size_t i = 0; i < params.min_size; ++i) {
      owned_.push_back(dial_or_throw());
      idle_.push_back(owned_.back().get());
    }
    opened_ = owned_.size();
  }

  handle acquire() noexcept {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!idle_.empty()) {
        netpool::socket* connection = idle_.back();
        idle_.pop_back();
        return connection;
      }
      if (opened_ < max_size_) {
        ++opened_;  // reserve the slot, then dial without holding the lock
        lock.unlock();
        return open_one();
      }
      available_.wait(lock);
    }
  }

  handle try_acquire() noexcept {
    std::lock_guard lock(mutex_);
    if (idle_.empty()) return nullptr;
    netpool::socket* connection = idle_.back();
    idle_.pop_back();
    return connection;
  }
  bool release(handle& connection) noexcept {
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(connection);  // never reallocates: capacity is max_size
    }
    available_.notify_one();
    connection = nullptr;
    return true;
  }

  static netpool::socket& connection(handle& h) noexcept { return *h; }

 private:
  handle open_one() noexcept {
    auto connection = dial();
    std::lock_guard lock(mutex_);
    if (!connection) {
      --opened_;
      available_.notify_one();  // let a waiter try the slot we gave back
      return nullptr;
    }
    try {
      owned_.push_back(std::make_unique<netpool::socket>(std::move(*connection)));
    } catch (const std::bad_alloc&) {
      --opened_;
      available_.notify_one();
      return nullptr;
    }
    return owned_.back().get();
  }

  const std::size_t max_size_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<netpool::socket*> idle_;                   // guarded by mutex_
  std::vector<std::unique_ptr<netpool::socket>> owned_;  // guarded by mutex_; every connection
  std::size_t opened_ = 0;                               // guarded by mutex_; owned + being dialed
};

}  // namespace bench
