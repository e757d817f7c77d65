// bench/alloc_counter.hpp — counts heap allocations and live heap bytes inside netpool_bench.
//
//   const std::uint64_t before = bench::alloc::thread_allocations();
//   ... timed loop ...
//   state.counters["allocs_per_op"] = ... (bench::alloc::thread_allocations() - before) / ops;
//
//   bench::alloc::byte_tracking tracking;          // memory/… benchmarks only
//   const std::int64_t base = bench::alloc::live_bytes();
//   ... create a pool ...  bench::alloc::live_bytes() - base  == bytes it kept on the heap
//
// How: alloc_counter.cpp replaces malloc/calloc/realloc/free/memalign/posix_memalign/aligned_alloc
// and every global operator new/delete in this binary; each forwards to glibc's __libc_* functions.
// So every heap allocation of the process is seen, whoever makes it: netpool, libstdc++, Poco, APR,
// TBB (through bench::counted_allocator, see contenders/tbb_queue.hpp: TBB's own allocator may
// bypass malloc via libtbbmalloc) and moodycamel.
//
// Cost: one thread-local increment per allocation (no shared cache line), so counting does not
// penalise a contender under contention. Byte tracking (a shared atomic, usable sizes from
// malloc_usable_size) is switched on only while a memory/… benchmark measures.
#pragma once

#include <cstdint>

namespace bench::alloc {

// Heap allocations (malloc family + operator new) made by the calling thread since it started.
[[nodiscard]] std::uint64_t thread_allocations() noexcept;

// Net heap bytes (malloc_usable_size) allocated minus freed by all threads while tracking was on.
[[nodiscard]] std::int64_t live_bytes() noexcept;

// Counts allocations made by any allocator this file does not see (used by counted_allocator).
void note_allocation(std::int64_t bytes) noexcept;
void note_deallocation(std::int64_t bytes) noexcept;

// Turns live-byte tracking on for its lifetime. Not nestable; one at a time.
class byte_tracking {
 public:
  byte_tracking() noexcept;
  ~byte_tracking();
  byte_tracking(const byte_tracking&) = delete;
  byte_tracking& operator=(const byte_tracking&) = delete;
};

}  // namespace bench::alloc
