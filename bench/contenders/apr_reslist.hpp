// bench/contenders/apr_reslist.hpp — APR-util's resource list (libaprutil1-dev): min = 0,
// smax = hmax = max_size, no TTL; min_size acquired and released once so that they exist before
// the first timed get, as for Poco.
//
// Why min = 0 and not min_size: APR's min counts *idle* resources, and every release runs APR's
// maintenance, which dials under the list's lock while fewer than min are idle. With min = min_size,
// threads that each hold one connection would make APR dial inside the timed loop, a cost no other
// contender pays there (they all dial outside it). With min = 0 the pool keeps what it opened
// (smax = max_size, no TTL), which is what every other contender's min_size means.
#pragma once

#include <apr_allocator.h>
#include <apr_general.h>
#include <apr_pools.h>
#include <apr_reslist.h>

#include <cstdlib>
#include <stdexcept>
#include <vector>

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
    if (apr_reslist_create(&list_, 0, max_size, max_size, 0, &construct, &destruct, nullptr, memory_) !=
        APR_SUCCESS) {
      apr_pool_destroy(memory_);
      throw std::runtime_error("apr_reslist_create failed");
    }
    // Only consulted when every resource is lent out: bounds a hang, never shortens a measured wait.
    apr_reslist_timeout_set(list_, apr_time_from_sec(60));
    std::vector<handle> opened;
    opened.reserve(params.min_size);
    for (std::size_t i = 0; i < params.min_size; ++i) {
      handle connection = acquire();
      if (connection == nullptr) break;
      opened.push_back(connection);
    }
    const bool all_opened = opened.size() == params.min_size;
    for (handle& c : opened) release(c);
    if (!all_opened) {
      apr_reslist_destroy(list_);
      apr_pool_destroy(memory_);
      throw std::runtime_error("apr_reslist: dial failed");
    }
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
