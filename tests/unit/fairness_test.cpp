// fair_waiters: by default a returned connection goes straight to the oldest waiter, so the thread
// that returned it cannot take it back; with fair_waiters off it goes idle and the oldest waiter is
// woken to compete for it. Only outcomes that cannot depend on scheduling are asserted.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::errc;
using netpool::test::patience;
using netpool::test::ready_within;
using netpool::test::run_async;
using netpool::test::wait_for;

template <class P>
using FairnessTest = netpool::test::pool_fixture<P>;
TYPED_TEST_SUITE(FairnessTest, netpool::test::both_pools, netpool::test::pool_names);

TYPED_TEST(FairnessTest, AReturnedConnectionGoesToTheWaiterNotBackToTheReturner) {
  auto pool = this->make(1);
  netpool::test::close_on_exit guard(pool);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = run_async([&] { return pool.get_for(patience); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  // The hand-off happened inside release(): nothing is left for this thread to take back.
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);
  ASSERT_TRUE(ready_within(waiter));
  EXPECT_TRUE(waiter.get());
}

TYPED_TEST(FairnessTest, WithoutFairnessAWokenWaiterIsStillServed) {
  auto cfg = this->unfair_config(1);
  auto pool = this->make(std::move(cfg));
  netpool::test::close_on_exit guard(pool);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = run_async([&] { return pool.get_for(patience); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();  // idle again; the waiter is woken to compete for it
  ASSERT_TRUE(ready_within(waiter));
  auto got = waiter.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(pool.stats().gets_waited, 1u);
}

TYPED_TEST(FairnessTest, WithoutFairnessAWaiterPastTheStarvationLimitIsHandedTheConnection) {
  auto cfg = this->unfair_config(1);
  auto pool = this->make(std::move(cfg));
  netpool::test::close_on_exit guard(pool);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = run_async([&] { return pool.get_for(patience); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  std::this_thread::sleep_for(5ms);  // over the 1 ms limit: the waiter now counts as starving
  held->release();
  // Handed over inside release(), as in FIFO mode: the returner cannot take it back.
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);
  ASSERT_TRUE(ready_within(waiter));
  EXPECT_TRUE(waiter.get());
}

// A woken waiter that loses the race for its connection keeps its place at the front of the line:
// tests/race/ (WokenWaiterRaceTest), where the race is replayed the same way on every run.

// starvation_threshold = 0: every waiter counts as starving, so a returned connection goes straight
// to the oldest waiter, as with fair_waiters (barging happens only while nobody waits).
TYPED_TEST(FairnessTest, WithoutFairnessAZeroStarvationThresholdServesWaitersInOrder) {
  auto cfg = this->unfair_config(1, std::chrono::nanoseconds(0));
  auto pool = this->make(std::move(cfg));
  netpool::test::close_on_exit guard(pool);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = run_async([&] { return pool.get_for(patience); });
  // Polled without sleeping, so that the waiter has usually waited well under the default 1 ms
  // when the connection comes back: then only the threshold of 0 makes it count as starving.
  const auto give_up = std::chrono::steady_clock::now() + patience;
  while (pool.stats().waiters != 1 && std::chrono::steady_clock::now() < give_up) {
  }
  ASSERT_EQ(pool.stats().waiters, 1u);
  held->release();
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);  // handed over inside release()
  ASSERT_TRUE(ready_within(waiter));
  EXPECT_TRUE(waiter.get());
}

TYPED_TEST(FairnessTest, WithoutFairnessManyWaitersAreAllServedEventually) {
  auto cfg = this->unfair_config(2);
  auto pool = this->make(std::move(cfg));
  netpool::test::close_on_exit guard(pool);
  netpool::test::thread_group threads;
  std::atomic<int> served{0};
  for (int t = 0; t < 6; ++t) {
    threads.spawn([&] {
      for (int i = 0; i < 200; ++i) {
        auto l = pool.get_for(patience);
        if (!l) return;
        l->get().touch();  // two owners at once would be a data race (TSan)
        served.fetch_add(1);
      }
    });
  }
  threads.join_all();
  EXPECT_EQ(served.load(), 6 * 200);
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_LE(s.active, 2u);
}

}  // namespace
