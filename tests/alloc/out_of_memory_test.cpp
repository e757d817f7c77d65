// Out of memory: operator new made to throw std::bad_alloc at each allocation in turn (on the
// calling thread; the hook lives in alloc_test.cpp's replacement allocator). The pool's own threads
// need no such test: they allocate nothing of their own (alloc_test.cpp, BackgroundAllocTest), so
// only user code they run can throw there, and the pool catches that. Whatever fails, the
// promise is the same as for a throwing factory: an error, never a crash, a leak or a lost
// connection. The loops end once an attempt runs without the failure being reached.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../unit/tracked_connection.hpp"
#include "netpool/dialer.hpp"
#include "netpool/keyed_pool.hpp"
#include "netpool/pool.hpp"
#include "test_support.hpp"

namespace netpool::test {
void fail_operator_new_after(int successes) noexcept;
void stop_failing_operator_new() noexcept;
bool operator_new_failure_pending() noexcept;
std::int64_t live_heap_blocks() noexcept;
}  // namespace netpool::test

namespace {

using namespace std::chrono_literals;
using netpool::test::connection_registry;
using netpool::test::factory_control;
using netpool::test::tracked_conn;

// Runs attempt() with the n-th operator new on this thread failing, for n = 0, 1, 2, ... until an
// attempt no longer reaches the failure (at most `limit`). Returns how many attempts met one.
template <class F>
int fail_each_allocation_in_turn(F attempt, int limit = 400) {
  for (int n = 0; n < limit; ++n) {
    netpool::test::fail_operator_new_after(n);
    const bool reached = attempt();
    netpool::test::stop_failing_operator_new();
    if (!reached) return n;
  }
  ADD_FAILURE() << "still failing allocations after " << limit << " attempts";
  return limit;
}

// Whether this attempt reached the allocation that was set to fail.
bool failure_was_reached() {
  return !netpool::test::operator_new_failure_pending();
}

TEST(OutOfMemory, SystemResolverFailsCleanlyAndLeaksNothing) {
  std::vector<netpool::endpoint> warm;
  ASSERT_FALSE(netpool::system_resolver("127.0.0.1", 9, warm));  // glibc's one-time set-up
  const int attempts = fail_each_allocation_in_turn([] {
    const std::int64_t before = netpool::test::live_heap_blocks();
    bool reached = true;
    {
      std::vector<netpool::endpoint> out;
      try {
        const std::error_code ec = netpool::system_resolver("127.0.0.1", 9, out);
        EXPECT_FALSE(ec) << ec.message();
      } catch (const std::bad_alloc&) {
        // Allowed: the pool turns it into factory_threw. What matters is what it left behind.
      }
    }
    reached = failure_was_reached();
    EXPECT_EQ(netpool::test::live_heap_blocks(), before) << "a heap block was leaked";
    return reached;
  });
  std::printf("  %d allocations failed in turn\n", attempts);
  EXPECT_GT(attempts, 0) << "the resolver never allocated: this test tested nothing";
}

// Every allocation of create() and of a get that dials (pool: on a dialer thread when the caller
// has a deadline) fails in turn: each attempt ends in an error or a lease, nothing crashes, and
// once the pool is gone every connection made was closed exactly once.
template <class P>
void create_and_get_under_oom() {
  connection_registry registry;
  factory_control factory(registry);
  const int attempts = fail_each_allocation_in_turn([&] {
    bool reached = true;
    {
      netpool::pool_config<tracked_conn> cfg;
      cfg.factory = factory.function();
      cfg.max_size = 2;
      cfg.dial_timeout = 30s;  // longer than the get's deadline: pool posts the dial
      auto made = P::create(std::move(cfg));
      if (made) {
        auto got = made->get_for(10s);
        if (got) {
          EXPECT_FALSE(got->release());
        } else {
          EXPECT_TRUE(got.error() == std::errc::not_enough_memory ||
                      got.error() == netpool::errc::factory_threw)
              << got.error().message();
        }
      } else {
        EXPECT_EQ(made.error(), std::errc::not_enough_memory) << made.error().message();
      }
      reached = failure_was_reached();
    }
    EXPECT_EQ(registry.live(), 0) << "a connection outlived its pool";
    EXPECT_EQ(registry.double_closes(), 0);
    return reached;
  });
  std::printf("  %d allocations failed in turn\n", attempts);
  EXPECT_GE(attempts, 2) << "create() and a dialing get allocate more than that";
}

TEST(OutOfMemory, PoolCreateAndGetFailCleanly) {
  create_and_get_under_oom<netpool::pool<tracked_conn>>();
}

TEST(OutOfMemory, LeanPoolCreateAndGetFailCleanly) {
  create_and_get_under_oom<netpool::lean_pool<tracked_conn>>();
}

}  // namespace
