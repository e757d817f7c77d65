// wait_spin: the oldest waiter polls for its hand-off for up to wait_spin before it sleeps. The
// spin must never outlast what a sleeping waiter would honour: its deadline, a cancellation, and
// close(). Each test sets a spin far longer than its bound (kLongSpin), so a spin that ignored
// one of them would show as a wait of kLongSpin, not a flaky timing. Both pools, both policies
// where it matters.
#include <gtest/gtest.h>

#include <chrono>
#include <stop_token>
#include <thread>

#include "netpool/config.hpp"
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
using clock_type = std::chrono::steady_clock;

// Longer than every bound below (patience is 10 s), shorter than CTest's timeout: a spin that
// ignored a bound fails the test instead of hanging it.
constexpr auto kLongSpin = std::chrono::seconds(40);

template <class P>
class WaitSpinTest : public netpool::test::pool_fixture<P> {
 protected:
  P make_spinning(std::chrono::nanoseconds spin, bool fair = true) {
    auto cfg = this->config(1);
    cfg.wait_spin = spin;
    cfg.fair_waiters = fair;
    return this->make(std::move(cfg));
  }

  // One connection held, one get waiting for it: returning the connection serves the waiter.
  void expect_waiter_served(P& pool, bool fair) {
    netpool::test::close_on_exit guard(pool);
    auto held = pool.get();
    ASSERT_TRUE(held);
    auto waiter = run_async([&] { return pool.get_for(patience); });
    ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
    held->release();
    ASSERT_TRUE(ready_within(waiter)) << "fair " << fair;
    auto got = waiter.get();
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(pool.stats().gets_waited, 1u);
  }
};
TYPED_TEST_SUITE(WaitSpinTest, netpool::test::both_pools, netpool::test::pool_names);

TYPED_TEST(WaitSpinTest, TheDefaultIsTenMicroseconds) {
  EXPECT_EQ(netpool::pool_config<netpool::test::tracked_conn>{}.wait_spin, 10us);
}

TYPED_TEST(WaitSpinTest, ASpinningWaiterReceivesTheHandOff) {
  for (const bool fair : {true, false}) {
    auto pool = this->make_spinning(kLongSpin, fair);
    this->expect_waiter_served(pool, fair);
  }
}

TYPED_TEST(WaitSpinTest, ZeroSleepsAtOnceAndStillReceivesTheHandOff) {
  for (const bool fair : {true, false}) {
    auto pool = this->make_spinning(0ns, fair);
    this->expect_waiter_served(pool, fair);
  }
}

TYPED_TEST(WaitSpinTest, TheSpinEndsAtTheDeadline) {
  auto pool = this->make_spinning(kLongSpin);
  netpool::test::close_on_exit guard(pool);
  auto held = pool.get();
  ASSERT_TRUE(held);
  const auto start = clock_type::now();
  auto got = pool.get_for(50ms);
  const auto waited = clock_type::now() - start;
  EXPECT_EQ(got.error(), errc::timeout);
  EXPECT_GE(waited, 50ms);
  EXPECT_LT(waited, patience) << "the spin outlasted the get's deadline";
}

TYPED_TEST(WaitSpinTest, TheSpinEndsWhenTheGetIsCancelled) {
  auto pool = this->make_spinning(kLongSpin);
  netpool::test::close_on_exit guard(pool);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  auto waiter = run_async([&] { return pool.get(stop.get_token()); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  stop.request_stop();
  ASSERT_TRUE(ready_within(waiter)) << "the spin ignored the cancellation";
  EXPECT_EQ(waiter.get().error(), errc::cancelled);
}

TYPED_TEST(WaitSpinTest, TheSpinEndsWhenThePoolCloses) {
  auto pool = this->make_spinning(kLongSpin);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = run_async([&] { return pool.get(); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  pool.close();
  ASSERT_TRUE(ready_within(waiter)) << "the spin ignored close()";
  EXPECT_EQ(waiter.get().error(), errc::pool_closed);
}

}  // namespace
