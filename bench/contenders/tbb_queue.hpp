// bench/contenders/tbb_queue.hpp — oneTBB's concurrent_bounded_queue<socket*> used as a pool
// (libtbb-dev): try_pop, else dial below max_size, else the blocking pop(); release = push().
//
// Allocation counting: TBB's default cache_aligned_allocator takes its memory from libtbbmalloc
// (dlopen'ed at run time), which never calls malloc, so alloc_counter.cpp would not see the pages
// the queue allocates as items flow through it. counted_allocator is that same default allocator
// with a count added, so the queue allocates exactly as it does for users and allocs_per_op is true.
#pragma once

#include <tbb/cache_aligned_allocator.h>
#include <tbb/concurrent_queue.h>

#include <cstddef>

#include "../alloc_counter.hpp"
#include "queue_pool.hpp"

namespace bench {

template <class T>
struct counted_allocator {
  using value_type = T;

  counted_allocator() noexcept = default;
  template <class U>
  counted_allocator(const counted_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    T* memory = tbb::cache_aligned_allocator<T>().allocate(n);
    alloc::note_allocation(static_cast<std::int64_t>(n * sizeof(T)));
    return memory;
  }
  void deallocate(T* memory, std::size_t n) noexcept {
    alloc::note_deallocation(static_cast<std::int64_t>(n * sizeof(T)));
    tbb::cache_aligned_allocator<T>().deallocate(memory, n);
  }

  template <class U>
  bool operator==(const counted_allocator<U>&) const noexcept {
    return true;
  }
};

struct tbb_queue_ops {
  using queue = tbb::concurrent_bounded_queue<netpool::socket*, counted_allocator<netpool::socket*>>;
  static queue make(std::size_t) { return queue(); }  // unbounded: at most max_size items ever
  static bool try_pop(queue& q, netpool::socket*& out) noexcept { return q.try_pop(out); }
  static void pop(queue& q, netpool::socket*& out) noexcept { q.pop(out); }
  static bool push(queue& q, netpool::socket* item) noexcept {
    q.push(item);  // a failed page allocation throws, which ends the benchmark (noexcept)
    return true;
  }
};

class tbb_queue : public queue_pool<tbb_queue_ops> {
 public:
  static constexpr const char* name = "tbb_queue";
  using queue_pool::queue_pool;
};

}  // namespace bench
