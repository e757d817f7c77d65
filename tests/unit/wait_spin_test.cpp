// wait_spin: the oldest waiter polls for its hand-off for up to wait_spin before it sleeps. What
// can be asserted without timing: a waiter is served whatever the spin (0 or the longest allowed),
// and a waiter that waits much longer than its spin burns CPU for about the spin, not for the
// whole wait (its thread's CPU time, a bound far from what a passing run uses).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <thread>

#include "netpool/config.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::test::patience;
using netpool::test::ready_within;
using netpool::test::run_async;
using netpool::test::wait_for;
using conn_config = netpool::pool_config<netpool::test::tracked_conn>;

// CPU time of the calling thread.
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

template <class P>
class WaitSpinTest : public netpool::test::pool_fixture<P> {
 protected:
  P make_spinning(std::chrono::nanoseconds spin, bool fair) {
    auto cfg = this->config(1);
    cfg.wait_spin = spin;
    cfg.fair_waiters = fair;
    return this->make(std::move(cfg));
  }

  // One connection held, one get waiting for it: returning the connection serves the waiter.
  void expect_waiter_served(P& pool, bool fair) {
    auto held = pool.get();
    ASSERT_TRUE(held);
    auto waiter = run_async([&] { return pool.get_for(patience); });
    netpool::test::close_on_exit guard(pool);  // after `waiter`: closes the pool before the join
    ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
    held->release();
    ASSERT_TRUE(ready_within(waiter)) << "fair " << fair;
    auto got = waiter.get();
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(pool.stats().gets_waited, 1u);
  }
};
TYPED_TEST_SUITE(WaitSpinTest, netpool::test::both_pools, netpool::test::pool_names);

TYPED_TEST(WaitSpinTest, AWaiterIsServedWithTheLongestSpin) {
  for (const bool fair : {true, false}) {
    auto pool = this->make_spinning(conn_config::max_wait_spin, fair);
    ASSERT_NO_FATAL_FAILURE(this->expect_waiter_served(pool, fair));
  }
}

TYPED_TEST(WaitSpinTest, AWaiterIsServedWithoutSpinning) {
  for (const bool fair : {true, false}) {
    auto pool = this->make_spinning(0ns, fair);
    ASSERT_NO_FATAL_FAILURE(this->expect_waiter_served(pool, fair));
  }
}

// get() has no deadline: only wait_spin bounds the spin. Waiting 300 ms with a 1 ms spin, the
// waiter must spend far less than 100 ms of CPU (a spin that ran until the hand-off would spend
// about 300 ms, or at least ~150 ms on a busy 2-core machine).
TYPED_TEST(WaitSpinTest, ALongWaitSleepsAfterTheSpin) {
  for (const bool fair : {true, false}) {
    auto pool = this->make_spinning(conn_config::max_wait_spin, fair);
    auto held = pool.get();
    ASSERT_TRUE(held);
    auto waiter = run_async([&] {
      const auto cpu_before = thread_cpu_time();
      auto got = pool.get();
      return std::make_pair(std::move(got), thread_cpu_time() - cpu_before);
    });
    netpool::test::close_on_exit guard(pool);  // after `waiter`: closes the pool before the join
    ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
    std::this_thread::sleep_for(300ms);
    held->release();
    ASSERT_TRUE(ready_within(waiter)) << "fair " << fair;
    auto [got, cpu] = waiter.get();
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_LT(cpu, 100ms) << "fair " << fair << ": the waiter spun for most of its wait";
  }
}

}  // namespace
