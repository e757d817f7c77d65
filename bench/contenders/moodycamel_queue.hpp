// bench/contenders/moodycamel_queue.hpp — moodycamel::BlockingConcurrentQueue<socket*> used as a
// pool (libconcurrentqueue-dev): try_dequeue, else dial below max_size, else wait_dequeue();
// release = enqueue(). Built with capacity max_size so its blocks are preallocated; no tokens,
// as a user reaching for it as a pool would write it. It allocates through std::malloc (its
// Traits), which alloc_counter.cpp sees.
#pragma once

#include <concurrentqueue/blockingconcurrentqueue.h>

#include <cstddef>

#include "queue_pool.hpp"

namespace bench {

struct moodycamel_queue_ops {
  using queue = moodycamel::BlockingConcurrentQueue<netpool::socket*>;
  static queue make(std::size_t max_size) { return queue(max_size); }
  static bool try_pop(queue& q, netpool::socket*& out) noexcept { return q.try_dequeue(out); }
  static void pop(queue& q, netpool::socket*& out) noexcept { q.wait_dequeue(out); }
  static bool push(queue& q, netpool::socket* item) noexcept { return q.enqueue(item); }
};

class moodycamel_queue : public queue_pool<moodycamel_queue_ops> {
 public:
  static constexpr const char* name = "moodycamel_queue";
  using queue_pool::queue_pool;
};

}  // namespace bench
