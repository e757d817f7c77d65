// bench/alloc_counter.cpp — the malloc / operator new replacements behind alloc_counter.hpp.
//
// glibc supports replacing malloc in the executable ("Replacing malloc" in its manual): the dynamic
// linker binds every library's malloc/free calls to these definitions. Each forwards to the
// __libc_* entry points, so the allocator itself is unchanged; only the counting is added.
#include "alloc_counter.hpp"

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <new>

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* ptr, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
void __libc_free(void* ptr);
}

namespace {

// Plain thread-local counter: the executable's own TLS needs no allocation to reach, and no other
// thread ever writes this cache line.
thread_local std::uint64_t t_allocations = 0;

// Read on every malloc/free; written only when a memory/… benchmark starts or stops measuring, so
// the line stays shared (read-only) in every core's cache and costs nothing under contention.
std::atomic<bool> g_tracking{false};
std::atomic<std::int64_t> g_live_bytes{0};

void on_alloc(void* ptr) noexcept {
  ++t_allocations;
  if (ptr != nullptr && g_tracking.load(std::memory_order_relaxed)) {
    g_live_bytes.fetch_add(static_cast<std::int64_t>(malloc_usable_size(ptr)), std::memory_order_relaxed);
  }
}

void on_free(void* ptr) noexcept {
  if (ptr != nullptr && g_tracking.load(std::memory_order_relaxed)) {
    g_live_bytes.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(ptr)), std::memory_order_relaxed);
  }
}

void* counted_malloc(std::size_t size) noexcept {
  void* ptr = __libc_malloc(size);
  on_alloc(ptr);
  return ptr;
}

void* counted_memalign(std::size_t alignment, std::size_t size) noexcept {
  void* ptr = __libc_memalign(alignment, size);
  on_alloc(ptr);
  return ptr;
}

void counted_free(void* ptr) noexcept {
  on_free(ptr);
  __libc_free(ptr);
}

void* new_or_throw(std::size_t size) {
  if (void* ptr = counted_malloc(size)) return ptr;
  throw std::bad_alloc();
}

void* aligned_new_or_throw(std::size_t size, std::align_val_t alignment) {
  if (void* ptr = counted_memalign(static_cast<std::size_t>(alignment), size)) return ptr;
  throw std::bad_alloc();
}

}  // namespace

namespace bench::alloc {

std::uint64_t thread_allocations() noexcept {
  return t_allocations;
}

std::int64_t live_bytes() noexcept {
  return g_live_bytes.load(std::memory_order_relaxed);
}

void note_allocation(std::int64_t bytes) noexcept {
  ++t_allocations;
  if (g_tracking.load(std::memory_order_relaxed)) g_live_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

void note_deallocation(std::int64_t bytes) noexcept {
  if (g_tracking.load(std::memory_order_relaxed)) g_live_bytes.fetch_sub(bytes, std::memory_order_relaxed);
}

byte_tracking::byte_tracking() noexcept {
  g_tracking.store(true, std::memory_order_seq_cst);
}
byte_tracking::~byte_tracking() {
  g_tracking.store(false, std::memory_order_seq_cst);
}

}  // namespace bench::alloc

// ---- C allocation functions -------------------------------------------------------------------

extern "C" {

void* malloc(std::size_t size) noexcept {
  return counted_malloc(size);
}

void* calloc(std::size_t count, std::size_t size) noexcept {
  void* ptr = __libc_calloc(count, size);
  on_alloc(ptr);
  return ptr;
}

void* realloc(void* ptr, std::size_t size) noexcept {
  on_free(ptr);
  void* moved = __libc_realloc(ptr, size);
  if (moved == nullptr && ptr != nullptr && size != 0) {
    on_alloc(ptr);  // failed: the old block is still allocated (counted again as a heap call)
    return nullptr;
  }
  on_alloc(moved);
  return moved;
}

void free(void* ptr) noexcept {
  counted_free(ptr);
}

void* memalign(std::size_t alignment, std::size_t size) noexcept {
  return counted_memalign(alignment, size);
}

void* aligned_alloc(std::size_t alignment, std::size_t size) noexcept {
  return counted_memalign(alignment, size);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t size) noexcept {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* ptr = counted_memalign(alignment, size);
  if (ptr == nullptr) return ENOMEM;
  *out = ptr;
  return 0;
}

}  // extern "C"

// ---- C++ allocation functions -----------------------------------------------------------------

void* operator new(std::size_t size) {
  return new_or_throw(size);
}
void* operator new[](std::size_t size) {
  return new_or_throw(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return counted_malloc(size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return counted_malloc(size);
}
void* operator new(std::size_t size, std::align_val_t alignment) {
  return aligned_new_or_throw(size, alignment);
}
void* operator new[](std::size_t size, std::align_val_t alignment) {
  return aligned_new_or_throw(size, alignment);
}
void* operator new(std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return counted_memalign(static_cast<std::size_t>(alignment), size);
}
void* operator new[](std::size_t size, std::align_val_t alignment, const std::nothrow_t&) noexcept {
  return counted_memalign(static_cast<std::size_t>(alignment), size);
}

void operator delete(void* ptr) noexcept {
  counted_free(ptr);
}
void operator delete[](void* ptr) noexcept {
  counted_free(ptr);
}
void operator delete(void* ptr, std::size_t) noexcept {
  counted_free(ptr);
}
void operator delete[](void* ptr, std::size_t) noexcept {
  counted_free(ptr);
}
void operator delete(void* ptr, const std::nothrow_t&) noexcept {
  counted_free(ptr);
}
void operator delete[](void* ptr, const std::nothrow_t&) noexcept {
  counted_free(ptr);
}
void operator delete(void* ptr, std::align_val_t) noexcept {
  counted_free(ptr);
}
void operator delete[](void* ptr, std::align_val_t) noexcept {
  counted_free(ptr);
}
void operator delete(void* ptr, std::size_t, std::align_val_t) noexcept {
  counted_free(ptr);
}
void operator delete[](void* ptr, std::size_t, std::align_val_t) noexcept {
  counted_free(ptr);
}
void operator delete(void* ptr, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(ptr);
}
void operator delete[](void* ptr, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(ptr);
}
