// bench/contenders/apr_reslist.hpp — APR-util's resource list (libaprutil1-dev): min = min_size
// (APR's "minimum idle", created at apr_reslist_create), smax = hmax = max_size, no TTL.
//
// Note on APR's semantics: its min counts *idle* resources, and every release runs its maintenance,
// which dials while fewer than min are idle. Under concurrency a few more than min_size connections
// get opened (bounded by max_size); that is APR's documented behaviour and part of its cost.
#pragma once

#include <apr_allocator.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_reslist.h>

#include <cstdlib>
#include <stdexcept>

#include "../environment.hpp"
#include "contender.hpp"

namespace bench {

class apr_reslist {
 public:
  static constexpr const char* name = "apr_reslist";
  using handle = netpool::socket*;

  explicit apr_reslist(const pool_params& params) {
    initialize_apr_once();
    // The reslist's memory pool gets its own APR allocator (owned by the pool, freed with it): APR's
    // global allocator would recycle blocks between pools and hide their cost from memory/….
    apr_allocator_t* allocator = nullptr;
    if (apr_allocator_create(&allocator) != APR_SUCCESS)
      throw std::runtime_error("apr_allocator_create failed");
    if (apr_pool_create_ex(&memory_, nullptr, nullptr, allocator) != APR_SUCCESS) {
      apr_allocator_destroy(allocator);
      throw std::runtime_error("apr_pool_create_ex failed");
    }
    apr_allocator_owner_set(allocator, memory_);
    const int max_size = static_cast<int>(params.max_size);
    if (apr_reslist_create(&list_, static_cast<int>(params.min_size), max_size, max_size, 0, &construct,
                           &destruct, nullptr, memory_) != APR_SUCCESS) {
      apr_pool_destroy(memory_);
      throw std::runtime_error("apr_reslist_create failed (dial error?)");
    }
    // Only consulted when every resource is lent out: bounds a hang, never shortens a measured wait.
    apr_reslist_timeout_set(list_, apr_time_from_sec(60));
  }

  ~apr_reslist() {
    apr_reslist_destroy(list_);  // every resource is back by now (apr asserts it)
    apr_pool_destroy(memory_);
  }

  apr_reslist(const apr_reslist&) = delete;
  apr_reslist& operator=(const apr_reslist&) = delete;

  handle acquire() noexcept {
    void* resource = nullptr;
    if (apr_reslist_acquire(list_, &resource) != APR_SUCCESS) return nullptr;
    return static_cast<netpool::socket*>(resource);
  }

  bool release(handle& connection) noexcept {
    const bool ok = apr_reslist_release(list_, connection) == APR_SUCCESS;
    connection = nullptr;
    return ok;
  }

  static netpool::socket& connection(handle& h) noexcept { return *h; }

 private:
  static void initialize_apr_once() {
    static const bool initialized = [] {
      if (apr_initialize() != APR_SUCCESS) throw std::runtime_error("apr_initialize failed");
      std::atexit(apr_terminate);
      return true;
    }();
    (void)initialized;
  }

  static apr_status_t construct(void** resource, void*, apr_pool_t*) {
    auto connection = dial();
    if (!connection) return APR_EGENERAL;
    *resource = new (std::nothrow) netpool::socket(std::move(*connection));
    return *resource != nullptr ? APR_SUCCESS : APR_ENOMEM;
  }

  static apr_status_t destruct(void* resource, void*, apr_pool_t*) {
    delete static_cast<netpool::socket*>(resource);
    return APR_SUCCESS;
  }

  apr_pool_t* memory_ = nullptr;
  apr_reslist_t* list_ = nullptr;
};

}  // namespace bench
