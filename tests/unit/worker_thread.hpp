// worker_thread.hpp — one test thread that runs the jobs given to it, in order, so that its
// thread-local state (the pool's per-thread hint) persists between them, as a real caller's would.
//
//   netpool::test::worker owner;
//   owner.run([&] { auto l = pool.try_get(); });     // runs there, waits, returns its result
//   auto later = owner.post([&] { return pool.get(); });  // runs there; this thread goes on
//   ASSERT_TRUE(netpool::test::ready_within(later));
#pragma once

#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace netpool::test {

class worker {
 public:
  worker() : thread_([this] { loop(); }) {}
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;
  // Runs the jobs still queued, then joins.
  ~worker() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  // Queues f to run on this worker after the jobs before it; its result comes through the future.
  template <class F>
  auto post(F f) -> std::future<decltype(f())> {
    // Shared: std::function needs a copyable target, and packaged_task is move-only.
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::move(f));
    auto result = task->get_future();
    {
      std::lock_guard lock(mutex_);
      queue_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return result;
  }

  // Runs f on this worker and returns its result.
  template <class F>
  auto run(F f) -> decltype(f()) {
    return post(std::move(f)).get();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return done_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.erase(queue_.begin());
      }
      job();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> queue_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace netpool::test
