// pool (the standard pool) only: idle reaping, min_size upkeep by the background maintainer, and
// the health check. Timing-dependent behaviour is observed by waiting for a condition with a
// generous deadline, never by asserting how soon it happened.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::test::close_on_exit;
using netpool::test::ready_within;
using netpool::test::run_async;
using netpool::test::std_pool;
using netpool::test::tracked_conn;
using netpool::test::tracked_lease;
using netpool::test::wait_for;

class StandardPoolTest : public netpool::test::pool_fixture<std_pool> {};

// ---- idle reaping -------------------------------------------------------------------------------

TEST_F(StandardPoolTest, IdleConnectionsAreClosedAfterMaxIdleTime) {
  auto cfg = config(4);
  cfg.max_idle_time = 50ms;
  auto pool = make(std::move(cfg));
  std::vector<tracked_lease> held;
  for (int i = 0; i < 3; ++i) {
    auto l = pool.get();
    ASSERT_TRUE(l);
    held.push_back(std::move(*l));
  }
  held.clear();  // all three idle now
  // (Not checked with len() here: with a 50 ms limit the maintainer may already be reaping them.
  // closed_idle == 3 below says that each of them went idle, and was closed for it.)
  ASSERT_TRUE(wait_for([&] { return pool.stats().active == 0; })) << "idle connections were not reaped";
  const auto s = pool.stats();
  EXPECT_EQ(s.closed_idle, 3u);
  EXPECT_EQ(s.closed_error + s.closed_health + s.closed_pool, 0u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(pool.len(), 0u);
  EXPECT_EQ(registry.live(), 0);

  // The pool dials afresh afterwards.
  auto again = pool.get();
  ASSERT_TRUE(again);
  EXPECT_EQ(factory.calls(), 4);
}

TEST_F(StandardPoolTest, LeasedConnectionsAreNeverReaped) {
  auto cfg = config(2);
  cfg.max_idle_time = 20ms;
  auto pool = make(std::move(cfg));
  auto l = pool.get();
  ASSERT_TRUE(l);
  const int id = (*l)->id();
  std::this_thread::sleep_for(200ms);  // many idle periods pass while it is leased
  EXPECT_EQ(registry.close_count(id), 0);
  EXPECT_TRUE((*l)->owns_connection());
  EXPECT_EQ(pool.stats().closed_idle, 0u);
  EXPECT_FALSE(l->release()) << "a connection returned after a long lease is accepted";
  ASSERT_TRUE(wait_for([&] { return registry.close_count(id) == 1; })) << "then reaped once idle";
  EXPECT_EQ(pool.stats().closed_idle, 1u);
}

// A connection put back recently is reused; one that sat idle too long is not handed out.
TEST_F(StandardPoolTest, RecentlyReturnedConnectionIsReused) {
  auto cfg = config(2);
  cfg.max_idle_time = 10s;
  auto pool = make(std::move(cfg));
  int id = -1;
  {
    auto l = pool.get();
    ASSERT_TRUE(l);
    id = (*l)->id();
  }
  auto again = pool.get();
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->id(), id);
  EXPECT_EQ(pool.stats().closed_idle, 0u);
}

TEST_F(StandardPoolTest, ReapingStopsAtMinSize) {
  auto cfg = config(4);
  cfg.min_size = 1;
  cfg.max_idle_time = 50ms;
  auto pool = make(std::move(cfg));
  // The warm-up connection first, so that the gets below take it and dial exactly two more.
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 1; })) << "min_size was not dialed";
  {
    std::vector<tracked_lease> held;
    for (int i = 0; i < 3; ++i) {
      auto l = pool.get();
      ASSERT_TRUE(l);
      held.push_back(std::move(*l));
    }
  }
  ASSERT_EQ(registry.made(), 3);
  ASSERT_TRUE(wait_for([&] {
    const auto s = pool.stats();
    return s.active == 1 && s.idle == 1;
  })) << "reaped down to min_size";
  std::this_thread::sleep_for(300ms);  // several more idle periods
  const auto s = pool.stats();
  EXPECT_EQ(s.active, 1u) << "min_size connections are kept";
  // Exactly the two surplus ones were reaped: reaping all three and dialing a new one for
  // min_size would also end with one open, but with made() == 4 and closed_idle == 3.
  EXPECT_EQ(s.closed_idle, 2u);
  EXPECT_EQ(registry.made(), 3);
  EXPECT_EQ(s.dials, 3u);
}

// The maintainer keeps min_size connections open even when they exceed max_idle_time. Such a
// connection should then be usable: closing it on get() (and dialing a replacement on the caller's
// path, while the maintainer dials yet another) defeats the purpose of min_size.
TEST_F(StandardPoolTest, MinSizeConnectionKeptPastMaxIdleTimeIsHandedOut) {
  auto cfg = config(4);
  cfg.min_size = 1;
  cfg.max_idle_time = 30ms;
  auto pool = make(std::move(cfg));
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 1; }));
  std::this_thread::sleep_for(300ms);  // >> max_idle_time: the maintainer kept it for min_size
  ASSERT_EQ(pool.stats().idle, 1u);
  ASSERT_EQ(factory.calls(), 1);
  auto l = pool.get();
  ASSERT_TRUE(l);
  EXPECT_EQ((*l)->id(), 0) << "the kept connection was closed on get instead of being used";
  EXPECT_EQ(pool.stats().closed_idle, 0u);
}

// ---- min_size ------------------------------------------------------------------------------------

TEST_F(StandardPoolTest, MinSizeIsDialedInTheBackground) {
  auto cfg = config(5);
  cfg.min_size = 3;
  auto pool = make(std::move(cfg));
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 3; }));
  auto s = pool.stats();
  EXPECT_EQ(s.active, 3u);
  EXPECT_EQ(s.min, 3u);
  EXPECT_EQ(s.dials, 3u);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(factory.calls(), 3) << "no more than min_size";
}

TEST_F(StandardPoolTest, MinSizeIsRefilledAfterDiscards) {
  auto cfg = config(5);
  cfg.min_size = 3;
  auto pool = make(std::move(cfg));
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 3; }));
  std::vector<tracked_lease> held;
  for (int i = 0; i < 3; ++i) {
    auto l = pool.try_get();
    ASSERT_TRUE(l) << "the min_size connections are idle";
    held.push_back(std::move(*l));
  }
  EXPECT_EQ(factory.calls(), 3);
  held[0].discard();
  held[1].discard();
  ASSERT_TRUE(wait_for([&] {
    const auto s = pool.stats();
    return s.active == 3 && s.idle == 2;
  })) << "the maintainer refills to min_size";
  EXPECT_EQ(factory.calls(), 5);
  held.clear();
  EXPECT_EQ(pool.stats().idle, 3u);

  // Room above min_size is still available to callers.
  std::vector<tracked_lease> all;
  for (int i = 0; i < 5; ++i) {
    auto l = pool.get_for(5s);
    ASSERT_TRUE(l) << l.error().message();
    all.push_back(std::move(*l));
  }
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);
}

TEST_F(StandardPoolTest, MinSizeDialFailuresBackOff) {
  factory.fail_with(std::make_error_code(std::errc::connection_refused));
  auto cfg = config(4);
  cfg.min_size = 2;
  auto pool = make(std::move(cfg));  // creation never fails because a dial failed
  ASSERT_TRUE(wait_for([&] { return factory.calls() >= 2; }));
  std::this_thread::sleep_for(500ms);
  // Backoff starts at 10 ms and doubles: a handful of attempts in 0.5 s, not thousands.
  const auto s = pool.stats();  // read before calls(): the maintainer may dial in between
  EXPECT_LE(factory.calls(), 30) << "the maintainer retries without backing off";
  EXPECT_EQ(s.active, 0u);
  EXPECT_GE(s.dial_failures, 2u);
  EXPECT_LE(s.dial_failures, static_cast<std::uint64_t>(factory.calls()));

  factory.succeed();
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 2; })) << "recovers once dials succeed";
}

// A caller waiting while the pool is full is served by a connection the maintainer dials.
TEST_F(StandardPoolTest, MaintainerDialServesAWaiter) {
  auto cfg = config(1);
  cfg.min_size = 1;
  factory.close_gate();
  auto pool = make(std::move(cfg));
  ASSERT_TRUE(wait_for([&] { return factory.at_gate() == 1; }));  // the maintainer dials
  auto fut = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  factory.open_gate();
  ASSERT_TRUE(ready_within(fut));
  auto l = fut.get();
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(factory.calls(), 1);
}

TEST_F(StandardPoolTest, DestroyingThePoolStopsTheMaintainerPromptly) {
  auto cfg = config(4);
  cfg.min_size = 2;
  cfg.max_idle_time = 1h;  // the maintainer sleeps a long tick between passes
  std::optional<std::chrono::nanoseconds> took;
  {
    auto pool = make(std::move(cfg));
    ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 2; }));
    std::this_thread::sleep_for(20ms);  // let it go to sleep
    const auto t0 = clock_type::now();
    pool.close();
    { auto gone = std::move(pool); }
    took = clock_type::now() - t0;
  }
  EXPECT_LT(*took, 5s) << "the destructor waited for the maintainer's tick";
  EXPECT_EQ(registry.live(), 0);
}

// ---- health check -------------------------------------------------------------------------------

TEST_F(StandardPoolTest, FailedHealthCheckClosesAndDialsAnother) {
  auto cfg = config(2);
  cfg.health_check = netpool::test::healthy_unless_broken;
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  ASSERT_TRUE(a);
  const int a_id = (*a)->id();
  (*a)->mark_broken();
  a->release();

  auto b = pool.get();
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_NE((*b)->id(), a_id);
  EXPECT_EQ(registry.close_count(a_id), 1);
  const auto s = pool.stats();
  EXPECT_EQ(s.closed_health, 1u);
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.active, 1u);
}

TEST_F(StandardPoolTest, FailedHealthCheckGoesOnWithAnotherIdleConnection) {
  auto cfg = config(3);
  cfg.health_check = netpool::test::healthy_unless_broken;
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a && b);
  const int a_id = (*a)->id();
  const int b_id = (*b)->id();
  (*a)->mark_broken();
  b->release();
  a->release();  // returned last: the first one the next get looks at

  auto c = pool.get();
  ASSERT_TRUE(c);
  EXPECT_EQ((*c)->id(), b_id);
  EXPECT_EQ(registry.close_count(a_id), 1);
  EXPECT_EQ(factory.calls(), 2) << "no dial: a healthy idle connection was there";
  EXPECT_EQ(pool.stats().closed_health, 1u);
}

TEST_F(StandardPoolTest, FailedHealthCheckOnTryGet) {
  auto cfg = config(2);
  cfg.health_check = netpool::test::healthy_unless_broken;
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  ASSERT_TRUE(a);
  (*a)->mark_broken();
  a->release();
  EXPECT_EQ(pool.try_get().error(), errc::exhausted) << "the only idle one was unhealthy; no dial";
  EXPECT_EQ(factory.calls(), 1);
  EXPECT_EQ(pool.stats().active, 0u);
}

TEST_F(StandardPoolTest, HealthCheckThatThrowsClosesTheConnection) {
  auto cfg = config(2);
  cfg.health_check = [](tracked_conn& c) -> bool {
    if (c.broken()) throw std::runtime_error("health check: broken");
    return true;
  };
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  ASSERT_TRUE(a);
  const int a_id = (*a)->id();
  (*a)->mark_broken();
  a->release();

  auto b = pool.get();
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_NE((*b)->id(), a_id);
  EXPECT_EQ(registry.close_count(a_id), 1);
  EXPECT_EQ(pool.stats().closed_health, 1u);
  EXPECT_EQ(pool.stats().active, 1u);
}

TEST_F(StandardPoolTest, HealthCheckIsNotRunOnAFreshDial) {
  std::atomic<int> checks{0};
  auto cfg = config(2);
  cfg.health_check = [&checks](tracked_conn&) {
    checks.fetch_add(1);
    return true;
  };
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  ASSERT_TRUE(a);
  EXPECT_EQ(checks.load(), 0);
  a->release();
  auto b = pool.get();
  ASSERT_TRUE(b);
  EXPECT_EQ(checks.load(), 1) << "checked when taken from the pool";
}

// A slow health check is the user's to bound, but the pool must not run one per idle connection
// past the caller's deadline: once a check has failed after the deadline, the get gives up.
TEST_F(StandardPoolTest, SlowFailingHealthChecksDoNotStretchGetForPastItsDeadline) {
  std::atomic<int> checks{0};
  std::atomic<bool> fail_all{false};
  auto cfg = config(4);
  cfg.health_check = [&](tracked_conn&) {
    if (!fail_all.load()) return true;
    checks.fetch_add(1);
    std::this_thread::sleep_for(300ms);
    return false;
  };
  auto pool = make(std::move(cfg));
  {
    std::vector<tracked_lease> held;
    for (int i = 0; i < 3; ++i) {
      auto l = pool.get();
      ASSERT_TRUE(l);
      held.push_back(std::move(*l));
    }
  }
  ASSERT_EQ(pool.len(), 3u);
  fail_all.store(true);
  // From a thread that never returned a connection here: no fast-path hint, straight to the scan.
  auto fut = run_async([&] { return pool.get_for(50ms); });
  ASSERT_TRUE(ready_within(fut));
  EXPECT_EQ(fut.get().error(), errc::timeout);
  EXPECT_EQ(checks.load(), 1) << "health checks kept running after the deadline";
  EXPECT_EQ(pool.len(), 2u) << "the unchecked connections stay idle";
  EXPECT_EQ(pool.stats().closed_health, 1u);
}

// The health check of a waiter's hand-off: a connection returned broken to a waiter is checked
// and replaced, and the waiter still gets a connection.
TEST_F(StandardPoolTest, UnhealthyHandOffToAWaiterIsReplaced) {
  auto cfg = config(1);
  cfg.health_check = netpool::test::healthy_unless_broken;
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  ASSERT_TRUE(a);
  const int a_id = (*a)->id();
  auto fut = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  (*a)->mark_broken();
  a->release();
  ASSERT_TRUE(ready_within(fut));
  auto got = fut.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_NE((*got)->id(), a_id);
  EXPECT_EQ(registry.close_count(a_id), 1);
  EXPECT_EQ(pool.stats().closed_health, 1u);
}

}  // namespace
