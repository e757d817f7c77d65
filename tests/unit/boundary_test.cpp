// Exact boundaries and outcomes the other suites did not pin down (each found by a mutation of the
// code that every other test let pass): idle and lifetime limits at exactly their value, resize
// limits that are inclusive, the end of the dial backoff, the reason a refused fresh connection is
// closed for, close(deadline) and a dial in flight, and maintain() on an empty pool. Deterministic:
// a manual clock and background_maintenance off, unless a test says otherwise.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <ratio>
#include <thread>
#include <utility>
#include <vector>

#include "manual_clock.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::errc;
using netpool::test::manual_clock;
using netpool::test::std_pool;
using netpool::test::tracked_lease;

class BoundaryTest : public netpool::test::pool_fixture<std_pool> {
 protected:
  manual_clock clock;  // a member declared after the fixture's registry; pools are test-body locals
  netpool::pool_config<netpool::test::tracked_conn> manual(std::size_t max_size) {
    auto c = config(max_size);
    c.clock = clock.function();
    c.background_maintenance = false;
    return c;
  }
};

// The get path closes a connection idle for exactly max_idle_time, as the reaper does (both use
// idle >= max_idle_time, in whole milliseconds). The tick is advanced by a maintain() round that
// does not reap (min_size covers every connection); min_size is then lowered, so only the get's
// own check can close it.
TEST_F(BoundaryTest, GetClosesAConnectionIdleForExactlyMaxIdleTime) {
  auto cfg = manual(2);
  cfg.min_size = 2;
  cfg.max_idle_time = 100ms;
  auto pool = make(std::move(cfg));  // create() dials both on this thread at t = 0
  ASSERT_EQ(pool.stats().idle, 2u);
  clock.set(100ms);
  pool.maintain();  // tick = 100; active (2) <= min_size (2): nothing reaped
  ASSERT_EQ(pool.stats().closed_idle, 0u);
  ASSERT_FALSE(pool.set_min_size(0));
  auto l = pool.get_for(1s);
  ASSERT_TRUE(l);
  EXPECT_EQ(pool.stats().closed_idle, 2u) << "both were idle for max_idle_time: closed on the get";
  EXPECT_EQ(factory.calls(), 3) << "the get dialed a fresh connection";
}

// The reaper closes a connection idle for exactly max_idle_time.
TEST_F(BoundaryTest, ReaperClosesAConnectionIdleForExactlyMaxIdleTime) {
  auto cfg = manual(2);
  cfg.max_idle_time = 100ms;
  auto pool = make(std::move(cfg));
  {
    auto l = pool.get_for(1s);
    ASSERT_TRUE(l);
  }  // dialed and returned at t = 0
  clock.set(99ms);
  pool.maintain();
  EXPECT_EQ(pool.stats().closed_idle, 0u) << "idle 99 ms < 100 ms";
  clock.set(100ms);
  pool.maintain();
  EXPECT_EQ(pool.stats().closed_idle, 1u) << "idle exactly max_idle_time";
}

// on_borrow refusing a connection just dialed for this get: the get fails with hook_rejected and
// the connection is closed as close_reason::hook (the existing test checks only the error and live()).
TEST_F(BoundaryTest, OnBorrowRefusingAFreshConnectionClosesItAsHook) {
  auto cfg = config(1);
  cfg.on_borrow = [](netpool::test::tracked_conn&) { return false; };
  std::vector<netpool::close_reason> reasons;
  cfg.on_close = [&](netpool::test::tracked_conn&, netpool::close_reason why) { reasons.push_back(why); };
  auto pool = make(std::move(cfg));
  auto got = pool.get_for(1s);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), errc::hook_rejected);
  EXPECT_EQ(pool.stats().closed_hook, 1u);
  EXPECT_EQ(pool.stats().closed_health, 0u);
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_EQ(reasons[0], netpool::close_reason::hook);
}

// The limits are inclusive: max_size may be lowered to exactly min_size, and min_size raised to
// exactly max_size (the existing tests only try one below / one above).
TEST_F(BoundaryTest, MaxSizeMayEqualMinSizeAndMinSizeMayEqualMaxSize) {
  auto cfg = manual(4);
  cfg.min_size = 2;
  auto pool = make(std::move(cfg));
  EXPECT_EQ(pool.set_max_size(1), errc::invalid_config);
  EXPECT_FALSE(pool.set_max_size(2)) << "max_size == min_size is valid";
  EXPECT_EQ(pool.stats().max, 2u);
  EXPECT_FALSE(pool.set_max_size(4));
  EXPECT_EQ(pool.set_min_size(5), errc::invalid_config);
  EXPECT_FALSE(pool.set_min_size(4)) << "min_size == max_size is valid";
  EXPECT_EQ(pool.stats().min, 4u);
}

// A get that finds an idle connection whose max_lifetime has just run out (tick == expires_at)
// closes it as lifetime, as the maintainer would. The tick is moved by a dial (which refreshes it),
// not by maintain(), so that only the get's own check can see the expiry. The get runs on a thread
// with no LIFO hint for this pool, so it takes the slow path, which checks lifetimes.
TEST_F(BoundaryTest, GetClosesAConnectionWhoseLifetimeEndsExactlyNow) {
  auto cfg = manual(2);
  cfg.max_lifetime = 100ms;
  cfg.lifetime_jitter = 0.0;
  auto pool = make(std::move(cfg));
  auto a = pool.get_for(1s);  // dialed at t = 0: expires at tick 100
  ASSERT_TRUE(a);
  const int a_id = (*a)->id();
  clock.set(100ms);
  auto b = pool.get_for(1s);  // dialed at t = 100: the tick is 100 now; b expires at 200
  ASSERT_TRUE(b);
  a->release();
  b->release();
  int got_id = -1;
  std::thread([&] {
    auto c = pool.get_for(1s);
    ASSERT_TRUE(c);
    got_id = (*c)->id();
  }).join();
  EXPECT_EQ(pool.stats().closed_lifetime, 1u) << "a reached max_lifetime: closed on the get";
  EXPECT_NE(got_id, a_id);
}

// The dial backoff ends at retry_at inclusive ("pool time before which no dial is tried"). With
// dial_backoff_floor == cap == 1 ns the jitter window is empty (half = 0), so retry_at is exactly the
// failure's time: a get at that same instant may dial again. (Clock moved off 0 first: retry_at 0
// means "no backoff".)
TEST_F(BoundaryTest, BackoffEndsExactlyAtRetryAt) {
  auto cfg = manual(2);
  cfg.dial_backoff_floor = 1ns;
  cfg.dial_backoff_cap = 1ns;
  auto pool = make(std::move(cfg));
  clock.set(10ms);
  factory.fail_with(std::make_error_code(std::errc::connection_refused));
  auto failed = pool.get_for(1s);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), std::errc::connection_refused);
  factory.succeed();
  auto again = pool.get_for(1s);  // same pool time == retry_at: backoff is over
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(pool.stats().fast_failures, 0u);
  EXPECT_EQ(factory.calls(), 2);
}

// dial_backoff_cap = nanoseconds::max() means "no cap". Doubling the backoff, and adding it to the
// pool's time, must saturate there, not overflow (undefined behaviour; UBSan reports the doubling).
// Two dials fail together, each doubling the backoff, 200 years into the pool's time (the manual
// clock's): a sum that wrapped round made a retry time in the past, and the pool dialed again at
// once; saturated, the next get fails fast, even 50 years later.
TEST_F(BoundaryTest, AnUncappedBackoffSaturatesInsteadOfOverflowing) {
  using years = std::chrono::duration<std::int64_t, std::ratio<31'556'952>>;
  auto cfg = manual(2);
  cfg.dial_backoff_floor = std::chrono::nanoseconds::max();
  cfg.dial_backoff_cap = std::chrono::nanoseconds::max();
  auto pool = make(std::move(cfg));
  clock.set(years(200));
  factory.close_gate();
  auto first = netpool::test::run_async([&] { return pool.get_for(netpool::test::patience); });
  auto second = netpool::test::run_async([&] { return pool.get_for(netpool::test::patience); });
  ASSERT_TRUE(netpool::test::wait_for([&] { return factory.at_gate() == 2; }));
  factory.fail_one_at_gate(std::make_error_code(std::errc::connection_refused));
  factory.fail_one_at_gate(std::make_error_code(std::errc::connection_refused));
  ASSERT_TRUE(netpool::test::ready_within(first));
  ASSERT_TRUE(netpool::test::ready_within(second));
  EXPECT_EQ(first.get().error(), std::errc::connection_refused);
  EXPECT_EQ(second.get().error(), std::errc::connection_refused);
  factory.open_gate();
  factory.succeed();
  clock.set(years(250));
  auto third = pool.get_for(1s);
  ASSERT_FALSE(third) << "no backoff after two failed dials with an uncapped backoff";
  EXPECT_EQ(third.error(), std::errc::connection_refused);
  EXPECT_EQ(pool.stats().fast_failures, 1u);
  EXPECT_EQ(factory.calls(), 2);
}

// close(deadline) waits for dials in flight too ("until every lent connection has come back ...
// and every dial in flight has ended"), not only for leases. The dial is held at the factory's gate
// and released 200 ms later; close() must not return before it has ended.
TEST_F(BoundaryTest, DrainWaitsForADialInFlight) {
  auto pool = make(2);
  factory.close_gate();
  auto got = netpool::test::run_async([&] { return pool.get(); });
  ASSERT_TRUE(netpool::test::wait_for([&] { return factory.at_gate() == 1; }));
  std::thread opener([&] {
    std::this_thread::sleep_for(200ms);
    factory.open_gate();
  });
  const std::size_t left = pool.close(std::chrono::steady_clock::now() + netpool::test::patience);
  const auto s = pool.stats();
  opener.join();
  EXPECT_EQ(left, 0u);
  EXPECT_EQ(s.dialing, 0u) << "close(deadline) returned while a dial was still in flight";
  ASSERT_TRUE(netpool::test::ready_within(got));
  auto r = got.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::pool_closed);
}

// With background_maintenance = false the caller runs the rounds. maintain() on an empty pool
// must not answer "nothing is due" when a time-based option is set: a get dials later, and no
// maintainer thread is there to be woken (it used to return nanoseconds::max(), and a loop that
// obeyed it never ran another round, so max_lifetime was never enforced).
TEST_F(BoundaryTest, MaintainOnAnEmptyPoolWithoutAMaintainerSaysWhenToComeBack) {
  auto cfg = manual(2);
  cfg.max_lifetime = 100ms;
  auto pool = make(std::move(cfg));
  const auto next = pool.maintain();
  EXPECT_LT(next, std::chrono::nanoseconds::max()) << "a get may dial at any time";
  EXPECT_GT(next, std::chrono::nanoseconds::zero());
  auto plain = make(manual(2));  // no time-based option: nothing is ever due
  EXPECT_EQ(plain.maintain(), std::chrono::nanoseconds::max());
}

// The round period follows the finest time-based option. A lifetime with jitter is rounded to a
// quarter of its jitter window, so that the spread survives; one without jitter has no spread, and
// an eighth of it is as fine as max_idle_time's rounds. It used to be a quarter of a 1 % window:
// 200 ms without jitter asked for a round every 1 ms (user review).
TEST_F(BoundaryTest, ALifetimeWithoutJitterAsksForRoundsOfAnEighthOfIt) {
  auto exact = manual(2);
  exact.max_lifetime = 200ms;
  exact.lifetime_jitter = 0.0;
  auto pool = make(std::move(exact));
  EXPECT_EQ(pool.maintain(), 25ms);
  auto jittered = manual(2);
  jittered.max_lifetime = 200ms;
  jittered.lifetime_jitter = 0.2;  // a 40 ms window
  auto spread = make(std::move(jittered));
  EXPECT_EQ(spread.maintain(), 10ms);
}

}  // namespace
