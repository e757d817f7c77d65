// pool and lean_pool: the behaviours both share (typed tests), with a connection type that records
// every close. What the Go original's tests check — get/put, blocking and resuming, timeouts,
// cancellation, put with error, stats, close, concurrency basics — plus LIFO reuse, FIFO hand-off,
// factory failures and the lifetime rules. Standard-pool-only behaviour (idle reaping, min_size
// upkeep, health checks) is in pool_standard_test.cpp; lean_pool-only in lean_pool_test.cpp.
#include "netpool/pool.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <future>
#include <mutex>
#include <optional>
#include <stop_token>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/error.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::test::close_on_exit;
using netpool::test::patience;
using netpool::test::ready_within;
using netpool::test::run_async;
using netpool::test::still_blocked;
using netpool::test::thread_group;
using netpool::test::tracked_conn;
using netpool::test::tracked_lease;
using netpool::test::wait_for;

template <class P>
using PoolTest = netpool::test::pool_fixture<P>;
TYPED_TEST_SUITE(PoolTest, netpool::test::both_pools, netpool::test::pool_names);

// ---- get / put ---------------------------------------------------------------------------------

TYPED_TEST(PoolTest, GetDialsAndPutKeepsTheConnection) {
  auto pool = this->make(4);
  auto got = pool.get();
  ASSERT_TRUE(got) << got.error().message();
  tracked_lease l = std::move(*got);
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->owns_connection());
  const int id = l->id();
  EXPECT_EQ(this->factory.calls(), 1);

  auto s = pool.stats();
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.in_use, 1u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(pool.len(), 0u);

  EXPECT_FALSE(pool.put(std::move(l)));
  EXPECT_FALSE(l);  // NOLINT(bugprone-use-after-move): put() empties the lease, by contract
  s = pool.stats();
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(pool.len(), 1u);
  EXPECT_EQ(this->registry.live(), 1);  // kept open, not closed

  auto again = pool.get();
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->id(), id) << "the idle connection is reused";
  EXPECT_EQ(this->factory.calls(), 1) << "no second dial";
  EXPECT_EQ(pool.stats().gets, 2u);
}

TYPED_TEST(PoolTest, LeaseDestructorPutsTheConnectionBack) {
  auto pool = this->make(2);
  {
    auto l = pool.get();
    ASSERT_TRUE(l);
    EXPECT_EQ(pool.stats().in_use, 1u);
  }
  EXPECT_EQ(pool.stats().in_use, 0u);
  EXPECT_EQ(pool.len(), 1u);
  EXPECT_EQ(this->registry.live(), 1);
}

TYPED_TEST(PoolTest, ReleaseAndDiscardThroughTheLease) {
  auto pool = this->make(2);
  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a && b);
  const int b_id = (*b)->id();
  EXPECT_FALSE(a->release());
  EXPECT_FALSE(*a);
  EXPECT_EQ(a->release(), errc::empty_lease) << "a second release is refused";
  EXPECT_FALSE(b->discard());
  EXPECT_EQ(b->discard(), errc::empty_lease);
  EXPECT_EQ(this->registry.close_count(b_id), 1);
  const auto s = pool.stats();
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.closed_error, 1u);
}

TYPED_TEST(PoolTest, FillsUpToMaxSizeThenGetBlocksAndTryGetIsExhausted) {
  auto pool = this->make(3);
  std::vector<tracked_lease> held;
  for (int i = 0; i < 3; ++i) {
    auto l = pool.get();
    ASSERT_TRUE(l);
    held.push_back(std::move(*l));
  }
  EXPECT_EQ(this->factory.calls(), 3);
  EXPECT_EQ(pool.stats().active, 3u);
  auto t = pool.try_get();
  EXPECT_EQ(t.error(), errc::exhausted);
  auto f = pool.get_for(1ms);
  EXPECT_EQ(f.error(), errc::timeout);
  EXPECT_EQ(this->factory.calls(), 3) << "never dials past max_size";
}

// The connection returned last is the next one handed out on the same thread (LIFO).
TYPED_TEST(PoolTest, ReusesTheConnectionReturnedLast) {
  auto pool = this->make(4);
  std::vector<tracked_lease> held;
  std::vector<int> ids;
  for (int i = 0; i < 3; ++i) {
    auto l = pool.get();
    ASSERT_TRUE(l);
    ids.push_back((*l)->id());
    held.push_back(std::move(*l));
  }
  for (const int last : {2, 0, 1}) {
    // Return all three, `last` last, then take one.
    for (int i = 0; i < 3; ++i) {
      if (i != last) {
        EXPECT_FALSE(held[static_cast<std::size_t>(i)].release());
      }
    }
    EXPECT_FALSE(held[static_cast<std::size_t>(last)].release());
    auto next = pool.get();
    ASSERT_TRUE(next);
    EXPECT_EQ((*next)->id(), ids[static_cast<std::size_t>(last)]) << "last returned: index " << last;
    // Take the other two back, matching each lease to its slot in `held` by id.
    held[static_cast<std::size_t>(last)] = std::move(*next);
    for (int i = 0; i < 2; ++i) {
      auto other = pool.try_get();
      ASSERT_TRUE(other);
      const int other_id = (*other)->id();
      for (std::size_t k = 0; k < 3; ++k) {
        if (ids[k] == other_id) held[k] = std::move(*other);
      }
    }
    for (const auto& l : held) {
      ASSERT_TRUE(l);
    }
  }
  EXPECT_EQ(this->factory.calls(), 3);
}

// ---- blocking, timeouts, deadlines --------------------------------------------------------------

TYPED_TEST(PoolTest, GetBlocksWhenExhaustedAndResumesOnPutFromAnotherThread) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  const int id = (*held)->id();

  auto fut = run_async([&] { return pool.get(); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  EXPECT_TRUE(still_blocked(fut));

  std::thread returner([&] { EXPECT_FALSE(pool.put(std::move(*held))); });
  returner.join();
  ASSERT_TRUE(ready_within(fut));
  auto got = fut.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ((*got)->id(), id) << "handed over, not redialed";
  const auto s = pool.stats();
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_EQ(s.gets, 2u);
  EXPECT_EQ(s.gets_waited, 1u);
  EXPECT_GT(s.wait_time, 0ns);
  EXPECT_EQ(this->factory.calls(), 1);
}

TYPED_TEST(PoolTest, GetForTimesOutWhileExhausted) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  const auto t0 = clock_type::now();
  auto r = pool.get_for(50ms);
  const auto elapsed = clock_type::now() - t0;
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_GE(elapsed, 50ms) << "never gives up before the timeout";
  const auto s = pool.stats();
  EXPECT_EQ(s.waiters, 0u) << "the timed-out waiter left the line";
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.gets_waited, 1u);
  EXPECT_EQ(s.in_use, 1u);
  // The pool still works: the held connection goes back and is handed out again.
  held->release();
  auto again = pool.get_for(patience);
  EXPECT_TRUE(again);
}

TYPED_TEST(PoolTest, GetForIsServedByAPutBeforeItsTimeout) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto fut = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  ASSERT_TRUE(ready_within(fut));
  EXPECT_TRUE(fut.get());
}

TYPED_TEST(PoolTest, GetUntilHonoursTheDeadline) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);

  // A deadline already in the past: no wait at all.
  auto past = pool.get_until(clock_type::now() - 1s);
  EXPECT_EQ(past.error(), errc::timeout);

  const auto deadline = clock_type::now() + 50ms;
  auto r = pool.get_until(deadline);
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_GE(clock_type::now(), deadline);

  // A far deadline: served by a put.
  auto fut = run_async([&] { return pool.get_until(clock_type::now() + 60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  ASSERT_TRUE(ready_within(fut));
  EXPECT_TRUE(fut.get());
}

// A zero or negative timeout still takes an idle connection: it only bounds waiting.
TYPED_TEST(PoolTest, ZeroTimeoutTakesAnIdleConnection) {
  auto pool = this->make(2);
  { auto warm = pool.get(); }
  auto a = pool.get_for(0ms);
  ASSERT_TRUE(a) << a.error().message();
  a->release();
  auto b = pool.get_for(-5s);
  ASSERT_TRUE(b) << b.error().message();
  b->release();
  auto c = pool.get_until(clock_type::time_point::min());
  ASSERT_TRUE(c) << c.error().message();
}

// "Wait practically forever" written with the largest value of a coarse duration must wait, not
// overflow into a deadline in the past.
TYPED_TEST(PoolTest, HugeTimeoutsWaitInsteadOfOverflowing) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  close_on_exit guard(pool);

  auto check = [&](auto timeout, const char* name) {
    SCOPED_TRACE(name);
    auto fut = run_async([&pool, timeout] { return pool.get_for(timeout); });
    const bool queued = wait_for([&] { return pool.stats().waiters == 1 || ready_within(fut, 0ms); }) &&
                        pool.stats().waiters == 1;
    EXPECT_TRUE(queued) << "get_for(" << name << ") did not wait";
    if (!queued) {
      ASSERT_TRUE(ready_within(fut));
      auto r = fut.get();
      EXPECT_TRUE(r) << "returned " << r.error().message();
      return;
    }
    EXPECT_FALSE(held->release());
    ASSERT_TRUE(ready_within(fut));
    auto r = fut.get();
    ASSERT_TRUE(r) << r.error().message();
    *held = std::move(*r);
  };
  check(std::chrono::nanoseconds::max(), "nanoseconds::max()");
  check(std::chrono::microseconds::max(), "microseconds::max()");
  check(std::chrono::milliseconds::max(), "milliseconds::max()");
  check(std::chrono::seconds::max(), "seconds::max()");
  check(std::chrono::hours::max(), "hours::max()");
  check(std::chrono::duration<double>(1e300), "duration<double>(1e300)");
}

// ---- cancellation -------------------------------------------------------------------------------

TYPED_TEST(PoolTest, StopRequestFromAnotherThreadWakesABlockedGet) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  auto fut = run_async([&] { return pool.get(stop.get_token()); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  EXPECT_TRUE(still_blocked(fut));

  std::thread stopper([&] { stop.request_stop(); });
  stopper.join();
  ASSERT_TRUE(ready_within(fut, 5s)) << "a stop request must wake the waiter promptly";
  EXPECT_EQ(fut.get().error(), errc::cancelled);
  const auto s = pool.stats();
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_EQ(s.cancellations, 1u);
  EXPECT_EQ(s.in_use, 1u);

  // The line is intact: a new waiter is served by the next put.
  auto next = run_async([&] { return pool.get_for(60s); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  ASSERT_TRUE(ready_within(next));
  EXPECT_TRUE(next.get());
}

TYPED_TEST(PoolTest, StopRequestWakesGetForWithToken) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  auto fut = run_async([&] { return pool.get_for(1h, stop.get_token()); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  stop.request_stop();
  ASSERT_TRUE(ready_within(fut, 5s));
  EXPECT_EQ(fut.get().error(), errc::cancelled);
  EXPECT_EQ(pool.stats().waiters, 0u);
}

TYPED_TEST(PoolTest, StopRequestWakesGetUntilWithToken) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  auto fut = run_async([&] { return pool.get_until(clock_type::now() + 1h, stop.get_token()); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  stop.request_stop();
  ASSERT_TRUE(ready_within(fut, 5s));
  EXPECT_EQ(fut.get().error(), errc::cancelled);
}

TYPED_TEST(PoolTest, TokenThatIsNeverStoppedBehavesLikePlainGet) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  auto fut = run_async([&] { return pool.get_for(60s, stop.get_token()); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  ASSERT_TRUE(ready_within(fut));
  EXPECT_TRUE(fut.get());
  EXPECT_EQ(pool.stats().cancellations, 0u);
}

TYPED_TEST(PoolTest, StopRequestedBeforeTheCallWhileExhausted) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  stop.request_stop();
  EXPECT_EQ(pool.get(stop.get_token()).error(), errc::cancelled);
  EXPECT_EQ(pool.get_for(1h, stop.get_token()).error(), errc::cancelled);
  EXPECT_EQ(pool.stats().waiters, 0u);
  EXPECT_EQ(pool.stats().cancellations, 2u);
}

TYPED_TEST(PoolTest, StopRequestedBeforeTheCallDoesNotDial) {
  auto pool = this->make(2);
  std::stop_source stop;
  stop.request_stop();
  EXPECT_EQ(pool.get(stop.get_token()).error(), errc::cancelled);
  EXPECT_EQ(this->factory.calls(), 0);
  EXPECT_EQ(pool.stats().active, 0u);
}

// Without dialer threads (lean_pool; pool with background_maintenance = false) a get dials on its
// own thread, and a factory cannot be interrupted. A stop requested meanwhile is answered when the
// dial ends: a connection it made is pooled and the get says cancelled; a failed dial says why.
TYPED_TEST(PoolTest, StopRequestedWhileThisThreadDialsIsAnsweredWithCancelled) {
  for (const bool dial_fails : {false, true}) {
    SCOPED_TRACE(dial_fails ? "the dial fails" : "the dial succeeds");
    auto cfg = this->config(1);
    cfg.background_maintenance = false;
    cfg.dial_backoff_floor = 0ns;
    auto pool = this->make(std::move(cfg));
    this->factory.close_gate();
    std::stop_source stop;
    auto fut = run_async([&] { return pool.get(stop.get_token()); });
    close_on_exit guard(pool);
    ASSERT_TRUE(wait_for([&] { return this->factory.at_gate() == 1; }));
    stop.request_stop();
    if (dial_fails) {
      this->factory.fail_one_at_gate(netpool::make_dial_error(ECONNREFUSED));
    } else {
      this->factory.open_gate();
    }
    ASSERT_TRUE(ready_within(fut));
    EXPECT_EQ(fut.get().error(), dial_fails ? netpool::make_dial_error(ECONNREFUSED) : errc::cancelled);
    const auto s = pool.stats();
    EXPECT_EQ(s.cancellations, dial_fails ? 0u : 1u);
    EXPECT_EQ(s.idle, dial_fails ? 0u : 1u) << "the new connection is pooled";
    EXPECT_EQ(s.active, dial_fails ? 0u : 1u);
    this->factory.open_gate();
  }
}

// A get dialing on its own thread passes its deadline to the factory when it is the earlier one.
// A dial cut short there is that caller's timeout, not a backend failure: no backoff, no last
// dial error, counted in `timeouts`; the next, patient get dials and succeeds. (It used to start
// the backoff, and the next get failed at once with timeout.)
TYPED_TEST(PoolTest, ADialCutShortByTheCallersOwnDeadlineStartsNoBackoff) {
  auto cfg = this->config(2);
  cfg.background_maintenance = false;
  cfg.dial_backoff_floor = std::chrono::hours(1);  // a backoff, once started, would outlast the test
  cfg.dial_backoff_cap = std::chrono::hours(1);
  auto pool = this->make(std::move(cfg));
  this->factory.close_gate();  // the factory waits until its deadline, then says errc::timeout
  EXPECT_EQ(pool.get_for(20ms).error(), errc::timeout);
  auto s = pool.stats();
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.fast_failures, 0u);
  EXPECT_FALSE(pool.last_dial_error()) << pool.last_dial_error().message();
  this->factory.open_gate();
  auto patient = pool.get_for(patience);
  ASSERT_TRUE(patient) << patient.error().message();
  EXPECT_EQ(this->factory.calls(), 2);
  s = pool.stats();
  EXPECT_EQ(s.fast_failures, 0u);
  EXPECT_EQ(s.dials_ok, 1u);
}

// A stop already requested wins over an idle connection, whichever thread asks: the result must
// not depend on whether this thread happens to hold the pool's fast-path hint.
TYPED_TEST(PoolTest, StopRequestedBeforeTheCallWinsOverAnIdleConnection) {
  auto pool = this->make(2);
  { auto warm = pool.get(); }  // one idle connection; this thread's hint points at it
  std::stop_source stop;
  stop.request_stop();

  std::thread other([&] {  // no hint on this thread: the slow path
    auto r = pool.get(stop.get_token());
    EXPECT_EQ(r.error(), errc::cancelled) << "other thread: got a connection";
  });
  other.join();
  auto r = pool.get(stop.get_token());  // the thread that returned the connection last
  EXPECT_EQ(r.error(), errc::cancelled) << "hinted thread: got a connection";
  auto r2 = pool.get_for(1h, stop.get_token());
  EXPECT_EQ(r2.error(), errc::cancelled) << "hinted thread, get_for: got a connection";
}

// ---- try_get ------------------------------------------------------------------------------------

TYPED_TEST(PoolTest, TryGetNeverDials) {
  auto pool = this->make(2);
  auto r = pool.try_get();
  EXPECT_EQ(r.error(), errc::exhausted);
  EXPECT_EQ(this->factory.calls(), 0);
  EXPECT_EQ(pool.stats().active, 0u);

  { auto warm = pool.get(); }
  auto idle = pool.try_get();
  ASSERT_TRUE(idle) << "takes an idle connection";
  auto second = pool.try_get();
  EXPECT_EQ(second.error(), errc::exhausted) << "room to dial, but try_get never dials";
  EXPECT_EQ(this->factory.calls(), 1);
}

TYPED_TEST(PoolTest, TryGetDoesNotWaitForADialInProgress) {
  auto pool = this->make(1);
  this->factory.close_gate();
  auto dialing = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return this->factory.at_gate() == 1; }));
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);
  this->factory.open_gate();
  ASSERT_TRUE(ready_within(dialing));
  EXPECT_TRUE(dialing.get());
}

// With callers waiting, a returned connection goes to the oldest waiter: a try_get that arrives
// just after cannot take it.
TYPED_TEST(PoolTest, ReturnedConnectionGoesToTheWaiterNotToABarger) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);
  ASSERT_TRUE(ready_within(waiter));
  EXPECT_TRUE(waiter.get());
}

// ---- dialing -------------------------------------------------------------------------------------

// Dialing happens outside any critical section: while one caller is stuck in the factory, another
// takes an idle connection without waiting.
TYPED_TEST(PoolTest, ASlowDialDoesNotBlockTakingIdleConnections) {
  auto pool = this->make(3);
  auto x = pool.get();
  ASSERT_TRUE(x);
  const int x_id = (*x)->id();
  this->factory.close_gate();
  auto dialing = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return this->factory.at_gate() == 1; }));
  EXPECT_EQ(pool.stats().dialing, 1u);
  EXPECT_EQ(pool.stats().active, 2u);

  EXPECT_FALSE(x->release());
  auto y = pool.try_get();
  ASSERT_TRUE(y) << y.error().message();
  EXPECT_EQ((*y)->id(), x_id);
  y->release();
  auto z = pool.get_for(1s);
  ASSERT_TRUE(z) << z.error().message();
  EXPECT_EQ((*z)->id(), x_id);

  this->factory.open_gate();
  ASSERT_TRUE(ready_within(dialing));
  auto d = dialing.get();
  ASSERT_TRUE(d);
  EXPECT_NE((*d)->id(), x_id);
  EXPECT_EQ(pool.stats().dialing, 0u);
}

TYPED_TEST(PoolTest, FactoryErrorPassesThroughAndFreesTheSlot) {
  auto cfg = this->config(1);
  cfg.dial_backoff_floor = 0ns;  // every get dials (backoff is tested below)
  auto pool = this->make(std::move(cfg));
  const std::error_code refused = netpool::make_dial_error(ECONNREFUSED);
  this->factory.fail_with(refused);
  auto r = pool.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), refused) << r.error().message();
  EXPECT_EQ(r.error(), netpool::condition::dial_failed);
  EXPECT_EQ(r.error(), std::errc::connection_refused);
  auto s = pool.stats();
  EXPECT_EQ(s.active, 0u) << "the failed dial's slot is free again";
  EXPECT_EQ(s.dialing, 0u);
  EXPECT_EQ(s.dials, 1u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.gets, 0u);

  // A custom category passes through untouched too.
  this->factory.fail_with(std::make_error_code(std::errc::host_unreachable));
  EXPECT_EQ(pool.get().error(), std::make_error_code(std::errc::host_unreachable));

  this->factory.succeed();
  auto ok = pool.get();  // max_size 1: only possible if the slot came back
  ASSERT_TRUE(ok) << ok.error().message();
  s = pool.stats();
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.dials, 3u);
  EXPECT_EQ(s.dial_failures, 2u);
}

TYPED_TEST(PoolTest, FactoryThatThrowsBecomesAnErrorAndFreesTheSlot) {
  auto cfg = this->config(1);
  cfg.dial_backoff_floor = 0ns;  // every get dials (backoff is tested below)
  // Longer than the get_for below, so that pool hands that get's dial to a dialer thread (a new
  // one, which a loaded machine may be slow to start): the exception must reach the caller from
  // there too.
  cfg.dial_timeout = 2 * patience;
  auto pool = this->make(std::move(cfg));
  this->factory.throw_always();
  auto r = pool.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::factory_threw);
  EXPECT_EQ(r.error(), netpool::condition::dial_failed);
  EXPECT_FALSE(r.error().message().empty());
  auto s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(pool.get_for(patience).error(), errc::factory_threw);

  this->factory.succeed();
  auto ok = pool.get();
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(pool.stats().active, 1u);
  EXPECT_EQ(this->registry.made(), 1);
}

// A factory that fails with an empty error_code (say, std::error_code(errno, ...) after a call
// that left errno 0) breaks result's precondition (asserted in debug builds). In a release build
// the get must still fail with an error that reads as one, not with a code that says success, and
// the failure must count as a failed dial (backoff, last_dial_error).
TYPED_TEST(PoolTest, FactoryFailingWithAnEmptyCodeFailsTheGetWithDialFailed) {
#ifndef NDEBUG
  GTEST_SKIP() << "result<T>(std::error_code{}) asserts in debug builds: the factory breaks a precondition";
#else
  auto cfg = this->config(1);
  cfg.dial_backoff_floor = 0ns;
  auto pool = this->make(std::move(cfg));
  this->factory.fail_with(std::error_code{});
  auto r = pool.get_for(patience);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::dial_failed);
  EXPECT_EQ(pool.last_dial_error(), errc::dial_failed);
  EXPECT_EQ(pool.stats().dial_failures, 1u);
  EXPECT_EQ(pool.stats().active, 0u);
  this->factory.succeed();
  EXPECT_TRUE(pool.get_for(patience));
#endif
}

// A failed dial hands its slot to the next waiter, which then dials for itself. (Callers dial on
// their own thread here: with background maintenance, pool dials for callers that may give up on
// dialer threads instead, tested in background_dial_test.cpp.)
TYPED_TEST(PoolTest, FailedDialLetsTheNextWaiterDial) {
  auto cfg = this->config(1);
  cfg.background_maintenance = false;
  cfg.dial_backoff_floor = 0ns;  // with backoff, the waiter would fail fast with the first's error
  // Gated dials end on the test's command, not on this (bounds a failed test's clean-up).
  cfg.dial_timeout = 2 * patience;
  auto pool = this->make(std::move(cfg));
  this->factory.close_gate();
  // The first caller's dial fails when the test says so (fail_one_at_gate below), once the second
  // caller is in line: no deadline of its own decides it.
  auto first = run_async([&] { return pool.get_for(60s); });
  std::future<netpool::result<tracked_lease>> second;
  // Declared after the futures, so destroyed before them: a failed assertion closes the pool and
  // their destructors do not wait for gets that nobody ends.
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return this->factory.at_gate() == 1; }));
  second = run_async([&] { return pool.get_for(60s); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));

  this->factory.fail_one_at_gate(std::make_error_code(std::errc::connection_refused));
  ASSERT_TRUE(ready_within(first));
  EXPECT_EQ(first.get().error(), std::errc::connection_refused) << "the first caller's own dial error";
  ASSERT_TRUE(wait_for([&] { return this->factory.calls() == 2 && this->factory.at_gate() == 1; }))
      << "the waiter was not given the freed slot to dial";
  this->factory.open_gate();
  ASSERT_TRUE(ready_within(second));
  auto got = second.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(pool.stats().active, 1u);
}

// With dial backoff on (the default), a failed dial makes the gets that would dial fail at once
// with that dial's error, without calling the factory; idle connections are still handed out.
TYPED_TEST(PoolTest, DuringDialBackoffGetsFailFastWithTheLastDialError) {
  auto cfg = this->config(3);
  cfg.dial_backoff_floor = 1h;  // the backoff cannot end during the test
  cfg.dial_backoff_cap = 1h;
  auto pool = this->make(std::move(cfg));
  auto a = pool.get();
  ASSERT_TRUE(a);
  EXPECT_FALSE(pool.last_dial_error());

  const std::error_code refused = netpool::make_dial_error(ECONNREFUSED);
  this->factory.fail_with(refused);
  auto failed = pool.get();
  EXPECT_EQ(failed.error(), refused);
  EXPECT_EQ(this->factory.calls(), 2);
  EXPECT_EQ(pool.last_dial_error(), refused);

  this->factory.succeed();  // the backend is back, but the pool does not know yet
  auto fast = pool.get_for(10s);
  EXPECT_EQ(fast.error(), refused) << "failed fast with the last dial error";
  EXPECT_EQ(pool.get(std::stop_token{}).error(), refused);
  EXPECT_EQ(pool.get_for(0ms).error(), refused) << "the backend's state says more than a timeout";
  EXPECT_EQ(this->factory.calls(), 2) << "no dial during backoff";
  auto s = pool.stats();
  EXPECT_EQ(s.fast_failures, 3u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.active, 1u) << "fast failures hold no slot";
  EXPECT_EQ(s.waiters, 0u);

  // An idle connection is still handed out: backoff only stops dialing.
  a->release();
  auto idle = pool.get();
  ASSERT_TRUE(idle) << idle.error().message();
  EXPECT_EQ(pool.try_get().error(), errc::exhausted);
}

TYPED_TEST(PoolTest, AfterTheBackoffDialsAreTriedAgain) {
  auto cfg = this->config(2);
  cfg.dial_backoff_floor = 20ms;
  cfg.dial_backoff_cap = 20ms;
  auto pool = this->make(std::move(cfg));
  this->factory.throw_always();
  EXPECT_EQ(pool.get().error(), errc::factory_threw);
  this->factory.succeed();
  netpool::result<tracked_lease> l = errc::dial_failed;
  EXPECT_TRUE(wait_for([&] {
    l = pool.get();
    return static_cast<bool>(l);
  })) << "still failing: "
      << l.error().message();
  EXPECT_EQ(this->factory.calls(), 2) << "one dial after the backoff, none during it";
}

// A caller dialing on its own thread gives the factory min(caller's deadline, now + dial_timeout).
// (background_maintenance off: see FailedDialLetsTheNextWaiterDial.)
TYPED_TEST(PoolTest, FactoryDeadlineIsTheSoonerOfCallerDeadlineAndDialTimeout) {
  auto cfg = this->config(4);
  cfg.background_maintenance = false;
  cfg.dial_timeout = 30s;
  auto pool = this->make(std::move(cfg));
  std::vector<tracked_lease> held;

  auto before = clock_type::now();
  auto a = pool.get();
  auto after = clock_type::now();
  ASSERT_TRUE(a);
  EXPECT_GE(this->factory.last_deadline(), before + 30s);
  EXPECT_LE(this->factory.last_deadline(), after + 30s);
  held.push_back(std::move(*a));

  before = clock_type::now();
  auto b = pool.get_for(2s);
  after = clock_type::now();
  ASSERT_TRUE(b);
  EXPECT_GE(this->factory.last_deadline(), before + 2s);
  EXPECT_LE(this->factory.last_deadline(), after + 2s);
  held.push_back(std::move(*b));

  const auto far = clock_type::now() + 1h;
  auto c = pool.get_until(far);
  ASSERT_TRUE(c);
  EXPECT_LT(this->factory.last_deadline(), far) << "dial_timeout bounds a far caller deadline";
}

// ---- put_with_error / discard ------------------------------------------------------------------

TYPED_TEST(PoolTest, PutWithErrorFreesTheSlotForABlockedWaiter) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  const int old_id = (*held)->id();
  auto fut = run_async([&] { return pool.get(); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));

  EXPECT_FALSE(pool.put_with_error(std::move(*held)));
  EXPECT_EQ(this->registry.close_count(old_id), 1) << "closed at once";
  ASSERT_TRUE(ready_within(fut));
  auto got = fut.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_NE((*got)->id(), old_id) << "the waiter dialed a new connection";
  const auto s = pool.stats();
  EXPECT_EQ(s.closed_error, 1u);
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.active, 1u);
}

TYPED_TEST(PoolTest, LeaseDiscardFreesTheSlotForABlockedWaiter) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto fut = run_async([&] { return pool.get_for(60s); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  std::thread other([l = std::move(*held)]() mutable { EXPECT_FALSE(l.discard()); });
  other.join();
  ASSERT_TRUE(ready_within(fut));
  EXPECT_TRUE(fut.get());
  EXPECT_EQ(this->factory.calls(), 2);
}

TYPED_TEST(PoolTest, DiscardWithoutWaitersFreesTheSlot) {
  auto pool = this->make(1);
  auto a = pool.get();
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->discard());
  EXPECT_EQ(pool.stats().active, 0u);
  EXPECT_EQ(this->registry.live(), 0);
  auto b = pool.try_get();
  EXPECT_EQ(b.error(), errc::exhausted) << "nothing idle after a discard";
  auto c = pool.get();
  EXPECT_TRUE(c) << "room to dial again";
}

// reclaim_idle(): one idle connection closed without being lent, the one in the highest idle slot
// (a get's miss path takes the lowest), as close_reason::reclaimed. No get is counted and no
// hook but on_close runs; lent connections are never touched; the freed slot can be dialed again.
TYPED_TEST(PoolTest, ReclaimIdleClosesTheHighestIdleConnectionWithoutLendingIt) {
  auto cfg = this->config(3);
  std::vector<netpool::close_reason> reasons;  // on_close runs on this thread (reclaim_idle's)
  cfg.on_close = [&reasons](netpool::test::tracked_conn&, netpool::close_reason why) {
    reasons.push_back(why);
  };
  int borrows = 0;
  cfg.on_borrow = [&borrows](netpool::test::tracked_conn&) {
    ++borrows;
    return true;
  };
  auto pool = this->make(std::move(cfg));
  auto a = pool.get();
  auto b = pool.get();
  auto c = pool.get();
  ASSERT_TRUE(a && b && c);
  const int a_id = (*a)->id();
  const int c_id = (*c)->id();
  ASSERT_FALSE(a->release());  // slot 0 idle
  ASSERT_FALSE(c->release());  // slot 2 idle; b stays lent
  const auto before = pool.stats();
  const int borrows_before = borrows;

  EXPECT_TRUE(pool.reclaim_idle());
  EXPECT_EQ(this->registry.close_count(c_id), 1) << "not the highest idle slot's connection";
  EXPECT_EQ(this->registry.close_count(a_id), 0);
  EXPECT_TRUE(pool.reclaim_idle());
  EXPECT_EQ(this->registry.close_count(a_id), 1);
  EXPECT_FALSE(pool.reclaim_idle()) << "only a lent connection is left";
  EXPECT_EQ(reasons, (std::vector<netpool::close_reason>{netpool::close_reason::reclaimed,
                                                         netpool::close_reason::reclaimed}));
  const auto s = pool.stats();
  EXPECT_EQ(s.closed_reclaimed, 2u);
  EXPECT_EQ(s.closed[static_cast<std::size_t>(netpool::close_reason::reclaimed)], 2u);
  EXPECT_EQ(s.closed_error, 0u);
  EXPECT_EQ(s.gets, before.gets) << "a reclaim is not a get";
  EXPECT_EQ(borrows, borrows_before);  // no hand-out: on_borrow does not run
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.in_use, 1u);
  EXPECT_EQ(this->registry.close_count((*b)->id()), 0);
  // The slots are free again: two more connections can be dialed.
  auto d = pool.get();
  auto e = pool.get();
  EXPECT_TRUE(d && e);
}

// ---- FIFO fairness -------------------------------------------------------------------------------

TYPED_TEST(PoolTest, WaitersAreServedInArrivalOrder) {
  constexpr int k = 5;
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::mutex m;
  std::vector<int> order;
  thread_group threads;
  close_on_exit guard(pool);
  for (int i = 0; i < k; ++i) {
    threads.spawn([&, i] {
      auto l = pool.get_for(60s);
      if (!l) {
        ADD_FAILURE() << "waiter " << i << ": " << l.error().message();
        return;
      }
      std::lock_guard lock(m);
      order.push_back(i);
      // ~lease hands the connection to the next waiter in line.
    });
    // Wait until this one is queued before starting the next: the arrival order is known.
    ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == static_cast<std::size_t>(i + 1); }));
  }
  held->release();
  threads.join_all();
  std::vector<int> expected;
  for (int i = 0; i < k; ++i) expected.push_back(i);
  EXPECT_EQ(order, expected);
  EXPECT_EQ(this->factory.calls(), 1);
  EXPECT_EQ(pool.stats().gets_waited, static_cast<std::uint64_t>(k));
}

// ---- stats ---------------------------------------------------------------------------------------

TYPED_TEST(PoolTest, StatsFollowEachOperation) {
  auto cfg = this->config(3);
  cfg.dial_backoff_floor = 0ns;  // each failing get below really dials
  auto pool = this->make(std::move(cfg));
  auto s = pool.stats();
  EXPECT_EQ(s.max, 3u);
  EXPECT_EQ(s.min, 0u);
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.gets, 0u);
  EXPECT_EQ(s.dials, 0u);

  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a && b);
  s = pool.stats();
  EXPECT_EQ(s.active, 2u);
  EXPECT_EQ(s.in_use, 2u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(s.dialing, 0u);
  EXPECT_EQ(s.gets, 2u);
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.gets_waited, 0u);
  EXPECT_EQ(s.wait_time, 0ns);

  a->release();
  b->discard();
  s = pool.stats();
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(pool.len(), 1u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.closed_error, 1u);

  auto c = pool.get();  // the idle one
  ASSERT_TRUE(c);
  this->factory.fail_with(std::make_error_code(std::errc::connection_refused));
  EXPECT_FALSE(pool.get());
  this->factory.throw_always();
  EXPECT_FALSE(pool.get());
  this->factory.succeed();
  s = pool.stats();
  EXPECT_EQ(s.gets, 3u);
  EXPECT_EQ(s.dials, 4u);
  EXPECT_EQ(s.dial_failures, 2u);
  EXPECT_EQ(s.fast_failures, 0u);
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.in_use, 1u);
  EXPECT_EQ(s.closed_idle, 0u);
  EXPECT_EQ(s.closed_health, 0u);
  EXPECT_EQ(s.closed_pool, 0u);
  // stats() derives active from the slots; the registry counts the connections really alive.
  EXPECT_EQ(this->registry.live(), static_cast<long>(s.active)) << "the pool's count drifted from reality";

  auto d = pool.get();
  ASSERT_TRUE(d);
  d->release();
  pool.close();
  s = pool.stats();
  EXPECT_EQ(s.closed_pool, 1u) << "the idle connection";
  EXPECT_EQ(s.active, 1u) << "c is still out";
  c->release();
  s = pool.stats();
  EXPECT_EQ(s.closed_pool, 2u);
  EXPECT_EQ(s.active, 0u);
}

TYPED_TEST(PoolTest, StatsCountADialInProgress) {
  auto pool = this->make(2);
  this->factory.close_gate();
  auto fut = run_async([&] { return pool.get(); });
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return this->factory.at_gate() == 1; }));
  auto s = pool.stats();
  EXPECT_EQ(s.dialing, 1u);
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.idle, 0u);
  this->factory.open_gate();
  ASSERT_TRUE(ready_within(fut));
  auto l = fut.get();
  ASSERT_TRUE(l);
  s = pool.stats();
  EXPECT_EQ(s.dialing, 0u);
  EXPECT_EQ(s.in_use, 1u);
}

// ---- close -------------------------------------------------------------------------------------

TYPED_TEST(PoolTest, CloseIsIdempotentClosesIdleAndRefusesGets) {
  auto pool = this->make(4);
  std::vector<tracked_lease> held;
  for (int i = 0; i < 3; ++i) {
    auto l = pool.get();
    ASSERT_TRUE(l);
    held.push_back(std::move(*l));
  }
  const int out_id = held[2]->id();
  held[0].release();
  held[1].release();
  EXPECT_FALSE(pool.closed());

  pool.close();
  EXPECT_TRUE(pool.closed());
  EXPECT_EQ(this->registry.live(), 1) << "idle connections closed; the leased one is not";
  EXPECT_EQ(pool.len(), 0u);
  EXPECT_EQ(pool.stats().closed_pool, 2u);
  pool.close();  // idempotent
  pool.close();
  EXPECT_TRUE(pool.closed());
  EXPECT_EQ(pool.stats().closed_pool, 2u);

  EXPECT_EQ(pool.get().error(), errc::pool_closed);
  EXPECT_EQ(pool.get_for(1s).error(), errc::pool_closed);
  EXPECT_EQ(pool.get_until(clock_type::now() + 1s).error(), errc::pool_closed);
  std::stop_source stop;
  EXPECT_EQ(pool.get(stop.get_token()).error(), errc::pool_closed);
  EXPECT_EQ(pool.try_get().error(), errc::pool_closed);
  EXPECT_EQ(this->factory.calls(), 3) << "no dial after close";

  // The leased connection stays usable until returned; returning it closes it.
  EXPECT_TRUE(held[2]->owns_connection());
  held[2]->touch();
  EXPECT_EQ(pool.put(std::move(held[2])), errc::pool_closed);
  EXPECT_EQ(this->registry.close_count(out_id), 1);
  EXPECT_EQ(this->registry.live(), 0);
  const auto s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.closed_pool, 3u);
}

TYPED_TEST(PoolTest, LeaseReturnedAfterCloseIsClosedWhicheverWay) {
  auto pool = this->make(4);
  auto a = pool.get();
  auto b = pool.get();
  auto c = pool.get();
  ASSERT_TRUE(a && b && c);
  pool.close();
  EXPECT_EQ(a->release(), errc::pool_closed);
  // Discarding closes the connection as asked; the pool being closed is not an error for it:
  // discard() always succeeds (pool_core::discard() reports ok whatever the pool's state).
  const int b_id = (*b)->id();
  EXPECT_FALSE(b->discard());
  EXPECT_EQ(this->registry.close_count(b_id), 1);
  { tracked_lease dropped = std::move(*c); }  // the destructor
  EXPECT_EQ(this->registry.live(), 0);
  EXPECT_EQ(pool.stats().active, 0u);
}

TYPED_TEST(PoolTest, CloseWakesEveryWaiterAtOnce) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  std::stop_source stop;
  using result_type = netpool::result<tracked_lease>;
  std::vector<std::future<result_type>> waiters;
  close_on_exit guard(pool);
  waiters.push_back(run_async([&] { return pool.get(); }));
  waiters.push_back(run_async([&] { return pool.get_for(1h); }));
  waiters.push_back(run_async([&] { return pool.get(stop.get_token()); }));
  waiters.push_back(run_async([&] { return pool.get_until(clock_type::now() + 1h, stop.get_token()); }));
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == waiters.size(); }));

  std::thread closer([&] { pool.close(); });
  closer.join();
  for (auto& w : waiters) {
    ASSERT_TRUE(ready_within(w, 5s)) << "close must wake every waiter";
    EXPECT_EQ(w.get().error(), errc::pool_closed);
  }
  EXPECT_EQ(pool.stats().waiters, 0u);
  EXPECT_EQ(held->release(), errc::pool_closed);
}

// A caller dialing when the pool closes gets pool_closed and its new connection is closed.
TYPED_TEST(PoolTest, DialThatFinishesAfterCloseIsClosed) {
  auto pool = this->make(2);
  this->factory.close_gate();
  auto fut = run_async([&] { return pool.get(); });
  ASSERT_TRUE(wait_for([&] { return this->factory.at_gate() == 1; }));
  pool.close();
  this->factory.open_gate();
  ASSERT_TRUE(ready_within(fut));
  EXPECT_EQ(fut.get().error(), errc::pool_closed);
  EXPECT_EQ(this->registry.made(), 1);
  EXPECT_EQ(this->registry.live(), 0);
  EXPECT_EQ(pool.stats().active, 0u);
}

// ---- lifetime --------------------------------------------------------------------------------------

TYPED_TEST(PoolTest, DestroyingThePoolWhileLeasesAreOut) {
  std::optional<TypeParam> pool(this->make(4));
  std::vector<tracked_lease> held;
  for (int i = 0; i < 4; ++i) {
    auto l = pool->get();
    ASSERT_TRUE(l);
    held.push_back(std::move(*l));
  }
  std::vector<int> ids;
  for (const auto& l : held) ids.push_back(l->id());
  held[3].release();  // one idle at destruction

  pool.reset();
  EXPECT_EQ(this->registry.close_count(ids[3]), 1) << "idle connection closed with the pool";
  EXPECT_EQ(this->registry.live(), 3);

  // Leases stay usable.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(held[static_cast<std::size_t>(i)]);
    held[static_cast<std::size_t>(i)]->touch();
  }
  EXPECT_EQ(held[0].release(), errc::pool_closed);
  EXPECT_EQ(this->registry.close_count(ids[0]), 1);
  // Discarding after the pool is gone succeeds too (as LeaseReturnedAfterCloseIsClosedWhicheverWay).
  EXPECT_FALSE(held[1].discard());
  EXPECT_EQ(this->registry.close_count(ids[1]), 1);
  std::thread other([l = std::move(held[2])]() mutable { EXPECT_EQ(l.release(), errc::pool_closed); });
  other.join();
  EXPECT_EQ(this->registry.close_count(ids[2]), 1);
  EXPECT_EQ(this->registry.live(), 0);
}

TYPED_TEST(PoolTest, MoveAssigningOverAPoolDestroysTheOldOne) {
  auto pool = this->make(2);
  auto l = pool.get();
  ASSERT_TRUE(l);
  { auto idle = pool.get(); }
  pool = this->make(2);  // the old pool is destroyed: its idle connection closed
  EXPECT_EQ(this->registry.live(), 1);
  EXPECT_EQ(pool.stats().active, 0u);
  EXPECT_EQ(pool.put(std::move(*l)), errc::wrong_pool) << "belongs to the old pool";
  EXPECT_TRUE(*l);
  EXPECT_EQ(l->release(), errc::pool_closed);
  EXPECT_EQ(this->registry.live(), 0);
}

TYPED_TEST(PoolTest, MovedPoolKeepsItsLeasesAndTheMovedFromHandleIsClosed) {
  auto pool = this->make(2);
  auto l = pool.get();
  ASSERT_TRUE(l);
  TypeParam moved(std::move(pool));
  // NOLINTBEGIN(bugprone-use-after-move): a moved-from handle is documented to act closed
  EXPECT_TRUE(pool.closed());
  EXPECT_EQ(pool.get().error(), errc::pool_closed);
  EXPECT_EQ(pool.try_get().error(), errc::pool_closed);
  EXPECT_EQ(pool.stats().max, 0u);
  EXPECT_EQ(pool.len(), 0u);
  pool.close();
  // No pool behind the handle: refused like a closed pool, and the lease is left untouched.
  EXPECT_EQ(pool.put(std::move(*l)), errc::pool_closed);
  EXPECT_EQ(pool.put_with_error(std::move(*l)), errc::pool_closed);
  // NOLINTEND(bugprone-use-after-move)
  ASSERT_TRUE(*l);
  EXPECT_EQ(this->registry.close_count((*l)->id()), 0);
  EXPECT_FALSE(moved.closed());
  EXPECT_FALSE(moved.put(std::move(*l))) << "the lease belongs to the moved-to handle";
  EXPECT_EQ(moved.len(), 1u);
}

// The per-thread fast-path hint has a few ways: a thread that uses many pools in turn still gets
// correct results from each, and each pool reuses its own connections.
TYPED_TEST(PoolTest, OneThreadUsingManyPools) {
  std::vector<TypeParam> pools;
  for (int i = 0; i < 20; ++i) pools.push_back(this->make(2));
  std::vector<int> first_ids(pools.size(), -1);
  for (int round = 0; round < 5; ++round) {
    for (std::size_t i = 0; i < pools.size(); ++i) {
      auto l = pools[i].get();
      ASSERT_TRUE(l);
      if (round == 0) first_ids[i] = (*l)->id();
      EXPECT_EQ((*l)->id(), first_ids[i]) << "pool " << i << " handed out another pool's connection";
    }
  }
  for (auto& p : pools) {
    const auto s = p.stats();
    EXPECT_EQ(s.dials, 1u);
    EXPECT_EQ(s.gets, 5u);
    EXPECT_EQ(s.idle, 1u);
  }
}

// Several threads, get/put in a loop: the basic concurrent use the Go tests check (the stress
// suite does far more).
TYPED_TEST(PoolTest, ConcurrentGetPut) {
  constexpr int threads_n = 4;
  constexpr int rounds = 500;
  auto pool = this->make(2);
  std::atomic<int> held{0};
  std::atomic<int> max_held{0};
  std::atomic<int> failures{0};
  {
    thread_group threads;
    for (int t = 0; t < threads_n; ++t) {
      threads.spawn([&] {
        for (int i = 0; i < rounds; ++i) {
          auto l = pool.get_for(patience);
          if (!l) {
            failures.fetch_add(1);
            continue;
          }
          if (!(*l)->claim()) failures.fetch_add(1);
          const int now = held.fetch_add(1) + 1;
          int seen = max_held.load();
          while (now > seen && !max_held.compare_exchange_weak(seen, now)) {
          }
          (*l)->touch();
          held.fetch_sub(1);
          (*l)->unclaim();
        }
      });
    }
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(max_held.load(), 2);
  const auto s = pool.stats();
  EXPECT_EQ(s.gets, static_cast<std::uint64_t>(threads_n * rounds));
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_LE(s.active, 2u);
  EXPECT_EQ(s.active, s.idle);
  EXPECT_EQ(static_cast<std::size_t>(this->registry.live()), s.active);
}

}  // namespace
