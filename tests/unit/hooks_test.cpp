// Hooks (on_connect, on_borrow, on_return, on_close) and close reasons, on both pools. The tracked
// connections of pool_test_helpers.hpp check, at the end of every test, that each connection made
// was closed exactly once: a refusing or throwing hook must never leak one.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "netpool/config.hpp"
#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::close_reason;
using netpool::errc;
using netpool::test::patience;
using netpool::test::tracked_conn;

// What on_close saw, by reason.
struct close_log {
  std::mutex mutex;
  std::vector<close_reason> reasons;
  std::vector<int> ids;

  auto hook() {
    return [this](tracked_conn& c, close_reason why) {
      std::lock_guard lock(mutex);
      reasons.push_back(why);
      ids.push_back(c.id());
    };
  }
  std::size_t count(close_reason why) {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (close_reason r : reasons) n += r == why ? 1 : 0;
    return n;
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return reasons.size();
  }
};

std::uint64_t closed_for(const netpool::pool_stats& s, close_reason why) {
  return s.closed[static_cast<std::size_t>(why)];
}

template <class P>
class HooksTest : public netpool::test::pool_fixture<P> {};
TYPED_TEST_SUITE(HooksTest, netpool::test::both_pools, netpool::test::pool_names);

TYPED_TEST(HooksTest, OnConnectRunsOnceOnEachNewConnectionBeforeItIsLent) {
  auto cfg = this->config(2);
  std::atomic<int> connects{0};
  cfg.on_connect = [&](tracked_conn& c) {
    connects.fetch_add(1);
    c.touch();  // the caller sees the effect: the hook ran on this very connection, before the get
    return std::error_code();
  };
  auto pool = this->make(std::move(cfg));
  {
    auto a = pool.get();
    auto b = pool.get();
    ASSERT_TRUE(a && b);
    EXPECT_EQ((*a)->uses(), 1u);
    EXPECT_EQ((*b)->uses(), 1u);
  }
  auto again = pool.get();  // reused: no new connect
  ASSERT_TRUE(again);
  EXPECT_EQ(connects.load(), 2);
  EXPECT_EQ(pool.stats().dials_ok, 2u);
}

TYPED_TEST(HooksTest, OnConnectErrorFailsTheGetClosesTheConnectionAndCountsAFailedDial) {
  auto cfg = this->config(2);
  cfg.on_connect = [](tracked_conn&) { return std::make_error_code(std::errc::permission_denied); };
  close_log closes;
  cfg.on_close = closes.hook();
  auto pool = this->make(std::move(cfg));

  auto got = pool.get_for(patience);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), std::errc::permission_denied);
  EXPECT_EQ(this->registry.live(), 0) << "the refused connection must be closed at once";
  EXPECT_EQ(closes.count(close_reason::hook), 1u);
  EXPECT_EQ(pool.last_dial_error(), std::errc::permission_denied);
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.dials, 1u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.dials_ok, 0u);
  EXPECT_EQ(s.closed_hook, 1u);
  EXPECT_EQ(s.active, 0u) << "the slot is free again";
}

// exhausted and dial_not_needed say that a dial did not happen (no capacity, no need): no backoff
// follows them, and a keyed get dials again on dial_not_needed. From on_connect, which refuses a
// connection just made, they are a refusal like any other: hook_rejected, with backoff.
TYPED_TEST(HooksTest, OnConnectReturningACodeForNoDialIsARefusal) {
  for (const errc code : {errc::exhausted, errc::dial_not_needed}) {
    SCOPED_TRACE(std::error_code(code).message());
    auto cfg = this->config(2);
    cfg.on_connect = [code](tracked_conn&) { return std::error_code(code); };
    cfg.dial_backoff_floor = 10 * patience;  // the second get must fail fast
    cfg.dial_backoff_cap = 10 * patience;
    auto pool = this->make(std::move(cfg));
    auto got = pool.get_for(patience);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error(), errc::hook_rejected);
    EXPECT_EQ(pool.last_dial_error(), errc::hook_rejected);
    auto again = pool.get_for(patience);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), errc::hook_rejected);
    const netpool::pool_stats s = pool.stats();
    EXPECT_EQ(s.dials, 1u) << "dialed again: no backoff after the refusal";
    EXPECT_EQ(s.fast_failures, 1u);
    EXPECT_EQ(s.closed_hook, 1u);
    EXPECT_EQ(this->registry.live(), 0);
  }
}

TYPED_TEST(HooksTest, OnConnectWhoseIoTimesOutIsADialThatTimedOut) {
  // Set-up I/O bounded by the socket's own deadline (errc::io_timeout): the backend did not
  // answer in time, which is what a dial that runs out of dial_timeout says too.
  auto cfg = this->config(1);
  cfg.on_connect = [](tracked_conn&) { return std::error_code(errc::io_timeout); };
  auto pool = this->make(std::move(cfg));
  auto got = pool.get_for(patience);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), netpool::make_dial_error(ETIMEDOUT));
  EXPECT_EQ(got.error(), netpool::condition::dial_failed);
  EXPECT_NE(got.error(), errc::timeout);  // not "every connection busy"
  EXPECT_EQ(pool.last_dial_error(), netpool::make_dial_error(ETIMEDOUT));
  EXPECT_EQ(this->registry.live(), 0);
  EXPECT_EQ(pool.stats().dial_failures, 1u);
}

TYPED_TEST(HooksTest, OnConnectTimingOutPastAShortCallersDeadlineIsStillADialFailure) {
  // The one-argument on_connect is given no deadline: its io_timeout is its own limit. Were it taken
  // for the caller's timeout, a backend that accepts but never answers the set-up would start no
  // backoff, and every get would dial and wait out on_connect's limit again. Both ways a get can
  // dial: on its own thread (lean_pool; pool without background maintenance), where the dial
  // outlives the caller's deadline, and through a dialer thread (pool), which the caller leaves.
  for (const bool background : {false, true}) {
    SCOPED_TRACE(background ? "background maintenance" : "dial on the caller's thread");
    auto cfg = this->config(1);
    cfg.background_maintenance = background;
    cfg.dial_timeout = 10s;
    cfg.dial_backoff_floor = 10s;  // the next get must meet the backoff, however slow the machine
    cfg.dial_backoff_cap = 10s;
    cfg.on_connect = [](tracked_conn&) {
      std::this_thread::sleep_for(50ms);  // its own I/O limit, longer than the caller's patience
      return std::error_code(errc::io_timeout);
    };
    auto pool = this->make(std::move(cfg));
    auto got = pool.get_for(5ms);
    ASSERT_FALSE(got);
    // The caller may have given up first (a dialer thread runs the dial): its own timeout.
    EXPECT_TRUE(got.error() == netpool::make_dial_error(ETIMEDOUT) || got.error() == errc::timeout)
        << got.error().message();
    ASSERT_TRUE(netpool::test::wait_for([&] {
      return pool.last_dial_error() == netpool::make_dial_error(ETIMEDOUT);
    })) << "the set-up's timeout was not recorded as a failed dial: "
        << pool.last_dial_error().message();
    auto next = pool.get_for(5ms);  // fails fast with the backend's error, without dialing again
    ASSERT_FALSE(next);
    EXPECT_EQ(next.error(), netpool::make_dial_error(ETIMEDOUT)) << next.error().message();
    const netpool::pool_stats s = pool.stats();
    EXPECT_EQ(s.dials, 1u);
    EXPECT_EQ(s.dial_failures, 1u);
    EXPECT_EQ(s.fast_failures, 1u);
  }
}

TYPED_TEST(HooksTest, OnConnectTakingTheDeadlineIsGivenTheFactorysDeadline) {
  // dial_timeout bounds a dial and its set-up together: the two-argument on_connect is given the
  // deadline the factory was given. That is the pool's own (now + dial_timeout) for a get with no
  // deadline, and for a dialer thread's dial; where a caller's own thread dials for a sooner
  // deadline (lean_pool; pool without background maintenance), the caller's.
  using clock = std::chrono::steady_clock;
  for (const bool background : {false, true}) {
    SCOPED_TRACE(background ? "background maintenance" : "no background maintenance");
    auto cfg = this->config(2);
    cfg.background_maintenance = background;
    cfg.dial_timeout = 3s;
    std::mutex mutex;
    std::vector<clock::time_point> factory_deadlines;
    std::vector<clock::time_point> hook_deadlines;
    cfg.factory = [&mutex, &factory_deadlines, inner = std::move(cfg.factory)](clock::time_point deadline) {
      {
        std::lock_guard lock(mutex);
        factory_deadlines.push_back(deadline);
      }
      return inner(deadline);
    };
    cfg.on_connect = [&mutex, &hook_deadlines](tracked_conn&, clock::time_point deadline) {
      std::lock_guard lock(mutex);
      hook_deadlines.push_back(deadline);
      return std::error_code();
    };
    auto pool = this->make(std::move(cfg));

    const clock::time_point before_first = clock::now();
    auto first = pool.get();
    const clock::time_point after_first = clock::now();
    ASSERT_TRUE(first) << first.error().message();
    const clock::time_point before_second = clock::now();
    auto second = pool.get_for(1s);  // sooner than dial_timeout
    const clock::time_point after_second = clock::now();
    ASSERT_TRUE(second) << second.error().message();

    std::lock_guard lock(mutex);
    ASSERT_EQ(factory_deadlines.size(), 2u);
    EXPECT_EQ(hook_deadlines, factory_deadlines);
    EXPECT_GE(hook_deadlines[0], before_first + 3s);
    EXPECT_LE(hook_deadlines[0], after_first + 3s);
    const bool callers_thread_dials = netpool::test::is_lean_v<TypeParam> || !background;
    const auto second_limit = callers_thread_dials ? std::chrono::nanoseconds(1s) : 3s;
    EXPECT_GE(hook_deadlines[1], before_second + second_limit);
    EXPECT_LE(hook_deadlines[1], after_second + second_limit);
  }
}

TYPED_TEST(HooksTest, OnConnectTakingTheDeadlineThatTimesOutAtTheCallersDeadlineIsTheCallersTimeout) {
  // Given the caller's deadline, on_connect is held to it as the factory is: a timeout there says
  // the caller ran out of patience, not that the backend is down. The get says errc::timeout,
  // nothing is recorded, no backoff starts: the next get dials at once. (The one-argument form's
  // timeout is its own limit instead: OnConnectTimingOutPastAShortCallersDeadlineIsStillADialFailure.)
  using clock = std::chrono::steady_clock;
  auto cfg = this->config(1);
  cfg.background_maintenance = false;  // the caller's own thread dials, on the caller's deadline
  cfg.dial_timeout = 10s;
  cfg.dial_backoff_floor = 10s;  // a backoff, had one started, would fail the next get at once
  cfg.dial_backoff_cap = 10s;
  std::atomic<bool> answer{false};
  cfg.on_connect = [&answer](tracked_conn&, clock::time_point deadline) {
    if (answer.load()) return std::error_code();
    std::this_thread::sleep_until(deadline);  // a backend slower than this caller's patience
    return std::error_code(errc::io_timeout);
  };
  auto pool = this->make(std::move(cfg));
  auto impatient = pool.get_for(20ms);
  ASSERT_FALSE(impatient);
  EXPECT_EQ(impatient.error(), errc::timeout) << impatient.error().message();
  EXPECT_FALSE(pool.last_dial_error()) << pool.last_dial_error().message();
  EXPECT_EQ(this->registry.live(), 0);
  answer.store(true);
  auto patient = pool.get_for(patience);
  ASSERT_TRUE(patient) << patient.error().message();
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.fast_failures, 0u);
}

TYPED_TEST(HooksTest, OnConnectTakingTheDeadlineWhoseOwnLimitRunsOutFirstIsADialFailure) {
  // A timeout before the caller's deadline is the hook's own limit, not the caller's patience:
  // a failed dial, ETIMEDOUT, and the backoff starts.
  using clock = std::chrono::steady_clock;
  auto cfg = this->config(1);
  cfg.background_maintenance = false;  // the caller's own thread dials, on the caller's deadline
  cfg.dial_timeout = 10s;
  cfg.dial_backoff_floor = 10s;
  cfg.dial_backoff_cap = 10s;
  cfg.on_connect = [](tracked_conn&, clock::time_point) { return std::error_code(errc::io_timeout); };
  auto pool = this->make(std::move(cfg));
  auto got = pool.get_for(patience);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), netpool::make_dial_error(ETIMEDOUT)) << got.error().message();
  EXPECT_EQ(pool.last_dial_error(), netpool::make_dial_error(ETIMEDOUT));
  auto next = pool.get_for(patience);  // backing off: fails at once, without a dial
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error(), netpool::make_dial_error(ETIMEDOUT));
  EXPECT_EQ(pool.stats().dials, 1u);
  EXPECT_EQ(pool.stats().fast_failures, 1u);
}

TEST(OnConnectOnADialerThread, ATimeoutAtThePoolsOwnDeadlineIsADialFailure) {
  // pool with background maintenance: a caller with a sooner deadline queues and posts the dial,
  // which runs on a dialer thread to the pool's own deadline. The hook is given that deadline;
  // running out of it says the backend did not answer in dial_timeout, whoever waited.
  using clock = std::chrono::steady_clock;
  netpool::test::connection_registry registry;
  netpool::test::factory_control factory{registry};
  {
    netpool::pool_config<tracked_conn> cfg;
    cfg.factory = factory.function();
    cfg.max_size = 1;
    cfg.dial_timeout = 300ms;
    cfg.dial_backoff_floor = 10s;
    cfg.dial_backoff_cap = 10s;
    std::atomic<clock::rep> given{0};
    cfg.on_connect = [&given](tracked_conn&, clock::time_point deadline) {
      given.store(deadline.time_since_epoch().count());
      std::this_thread::sleep_until(deadline);
      return std::error_code(errc::io_timeout);
    };
    auto pool = netpool::pool<tracked_conn>::create(std::move(cfg)).value();
    const clock::time_point start = clock::now();
    auto impatient = pool.get_for(20ms);
    ASSERT_FALSE(impatient);
    EXPECT_EQ(impatient.error(), errc::timeout) << impatient.error().message();  // its own wait
    ASSERT_TRUE(netpool::test::wait_for([&] {
      return pool.last_dial_error() == netpool::make_dial_error(ETIMEDOUT);
    })) << pool.last_dial_error().message();
    EXPECT_GE(clock::time_point(clock::duration(given.load())), start + 300ms) << "not the pool's deadline";
    auto next = pool.get_for(patience);
    ASSERT_FALSE(next);
    EXPECT_EQ(next.error(), netpool::make_dial_error(ETIMEDOUT));
    EXPECT_EQ(pool.stats().dials, 1u);
  }
  EXPECT_EQ(registry.live(), 0);
}

TYPED_TEST(HooksTest, OnConnectThatThrowsIsHookRejected) {
  auto cfg = this->config(1);
  cfg.dial_backoff_floor = 0ns;  // every get dials: the second must behave as the first
  cfg.on_connect = [](tracked_conn&) -> std::error_code { throw std::runtime_error("auth server down"); };
  auto pool = this->make(std::move(cfg));
  for (int i = 0; i < 2; ++i) {
    auto got = pool.get_for(patience);
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error(), errc::hook_rejected);
  }
  EXPECT_EQ(this->registry.made(), 2);
  EXPECT_EQ(this->registry.live(), 0);
  EXPECT_EQ(pool.stats().closed_hook, 2u);
}

TYPED_TEST(HooksTest, OnBorrowRefusalClosesThatConnectionAndTheGetGoesOnWithAnother) {
  auto cfg = this->config(3);
  std::atomic<int> refuse_below{-1};  // refuse connections with an id below this
  cfg.on_borrow = [&](tracked_conn& c) { return c.id() >= refuse_below.load(); };
  auto pool = this->make(std::move(cfg));
  {
    auto a = pool.get();
    auto b = pool.get();
    ASSERT_TRUE(a && b);
    ASSERT_EQ((*a)->id() + (*b)->id(), 1);  // ids 0 and 1
  }
  refuse_below.store(2);  // both idle ones are refused in turn: the get dials a third
  auto got = pool.get();
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)->id(), 2);
  EXPECT_EQ(this->registry.close_count(0), 1);
  EXPECT_EQ(this->registry.close_count(1), 1);
  EXPECT_EQ(pool.stats().closed_hook, 2u);
  EXPECT_EQ(pool.stats().active, 1u);
}

TYPED_TEST(HooksTest, OnBorrowRefusingAFreshConnectionFailsTheGetWithHookRejected) {
  auto cfg = this->config(1);
  cfg.on_borrow = [](tracked_conn&) -> bool { throw std::runtime_error("nope"); };
  auto pool = this->make(std::move(cfg));
  auto got = pool.get_for(patience);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), errc::hook_rejected);
  EXPECT_EQ(this->registry.live(), 0);
  EXPECT_EQ(pool.stats().active, 0u);
}

TYPED_TEST(HooksTest, OnReturnRefusalClosesInsteadOfPoolingAndThePutStillSucceeds) {
  auto cfg = this->config(2);
  std::atomic<bool> accept{true};
  cfg.on_return = [&](tracked_conn&) { return accept.load(); };
  close_log closes;
  cfg.on_close = closes.hook();
  auto pool = this->make(std::move(cfg));

  auto kept = pool.get();
  ASSERT_TRUE(kept);
  EXPECT_FALSE(pool.put(std::move(*kept)));
  EXPECT_EQ(pool.len(), 1u);

  accept.store(false);
  auto refused = pool.get();
  ASSERT_TRUE(refused);
  EXPECT_FALSE(pool.put(std::move(*refused))) << "a refused return is not the caller's error";
  EXPECT_EQ(pool.len(), 0u);
  EXPECT_EQ(pool.stats().active, 0u);
  EXPECT_EQ(closes.count(close_reason::hook), 1u);
  EXPECT_EQ(this->registry.live(), 0);
}

TYPED_TEST(HooksTest, OnReturnThatThrowsClosesTheConnectionAndTheFreedSlotServesAWaiter) {
  auto cfg = this->config(1);
  cfg.on_return = [](tracked_conn& c) -> bool {
    if (c.broken()) throw std::runtime_error("session state unknown");
    return true;
  };
  auto pool = this->make(std::move(cfg));
  netpool::test::thread_group threads;
  netpool::test::close_on_exit guard(pool);

  auto held = pool.get();
  ASSERT_TRUE(held);
  const int first_id = (*held)->id();
  auto waiter = netpool::test::run_async([&] { return pool.get_for(patience); });
  ASSERT_TRUE(netpool::test::still_blocked(waiter));
  ASSERT_TRUE(netpool::test::wait_for([&] { return pool.stats().waiters == 1; }));
  (*held)->mark_broken();
  held->release();

  ASSERT_TRUE(netpool::test::ready_within(waiter));
  auto got = waiter.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_NE((*got)->id(), first_id) << "the waiter dialed a fresh one into the freed slot";
  EXPECT_EQ(this->registry.close_count(first_id), 1);
  EXPECT_EQ(pool.stats().closed_hook, 1u);
}

// A put after close() closes the connection whatever on_return would say: the hook (a session reset,
// often I/O) is not run on a connection about to be closed, and the caller learns pool_closed, as
// without hooks. Both the refusing and the accepting hook: a refusal used to report success.
TYPED_TEST(HooksTest, OnReturnIsNotCalledForAPutAfterClose) {
  for (const bool accepts : {false, true}) {
    SCOPED_TRACE(accepts ? "on_return accepts" : "on_return refuses");
    auto cfg = this->config(2);
    std::atomic<int> calls{0};
    cfg.on_return = [&](tracked_conn&) {
      calls.fetch_add(1);
      return accepts;
    };
    close_log closes;
    cfg.on_close = closes.hook();
    auto pool = this->make(std::move(cfg));
    auto a = pool.get();
    auto b = pool.get();
    ASSERT_TRUE(a && b);
    pool.close();
    EXPECT_EQ(pool.put(std::move(*a)), errc::pool_closed);
    EXPECT_EQ(b->release(), errc::pool_closed);
    EXPECT_EQ(calls.load(), 0);
    EXPECT_EQ(closes.count(close_reason::pool_closed), 2u);
    EXPECT_EQ(closes.count(close_reason::hook), 0u);
    EXPECT_EQ(pool.stats().closed_pool, 2u);
    EXPECT_EQ(this->registry.live(), 0);
  }
}

// close() waits for the return hooks under way on other threads (ReturnHooksRaceTest), but not when
// called from inside one: an on_return that closes its pool, here from inside a nested return of
// another lease, must not wait for itself.
TYPED_TEST(HooksTest, OnReturnMayCloseItsOwnPool) {
  auto cfg = this->config(2);
  TypeParam* self = nullptr;
  std::optional<netpool::lease<tracked_conn>> inner;
  std::atomic<int> calls{0};
  cfg.on_return = [&](tracked_conn&) {
    if (calls.fetch_add(1) == 0) {
      EXPECT_EQ(inner->release(), errc::pool_closed);  // nested: on_return again, closing the pool
    } else {
      self->close();
    }
    return true;
  };
  auto pool = this->make(std::move(cfg));
  self = &pool;
  auto outer = pool.get();
  auto held = pool.get();
  ASSERT_TRUE(outer && held);
  inner.emplace(std::move(*held));
  auto returned = netpool::test::run_async([&] { return outer->release(); });
  ASSERT_TRUE(netpool::test::ready_within(returned)) << "close() in on_return waited for itself";
  EXPECT_EQ(returned.get(), errc::pool_closed);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_TRUE(pool.closed());
  EXPECT_EQ(pool.stats().closed_pool, 2u);
}

// Two returns whose on_return each close the pool (the server said it is going away), both hooks
// running when either closes: neither close() may wait for the other's hook. A close() that waited
// for every hook but its own thread's left both threads waiting for each other (found by review,
// session 27).
TYPED_TEST(HooksTest, TwoOnReturnsThatEachCloseThePoolBothReturn) {
  auto cfg = this->config(2);
  TypeParam* self = nullptr;
  std::atomic<int> running{0};
  cfg.on_return = [&](tracked_conn&) {
    running.fetch_add(1);
    // Both hooks are under way before either closes (bounded, should the other never come).
    (void)netpool::test::wait_for([&] { return running.load() == 2; });
    self->close();
    return true;
  };
  auto pool = this->make(std::move(cfg));
  self = &pool;
  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a && b);
  auto returned_a = netpool::test::run_async([&] { return a->release(); });
  auto returned_b = netpool::test::run_async([&] { return b->release(); });
  ASSERT_TRUE(netpool::test::ready_within(returned_a)) << "the two hooks' close() calls wait for each other";
  ASSERT_TRUE(netpool::test::ready_within(returned_b)) << "the two hooks' close() calls wait for each other";
  EXPECT_EQ(returned_a.get(), errc::pool_closed);
  EXPECT_EQ(returned_b.get(), errc::pool_closed);
  EXPECT_EQ(running.load(), 2);
  EXPECT_EQ(pool.stats().closed_pool, 2u);
}

TYPED_TEST(HooksTest, OnCloseSeesEveryConnectionTheFactoryMadeExactlyOnceWithItsReason) {
  close_log closes;
  {
    auto cfg = this->config(4);
    cfg.on_close = closes.hook();
    auto pool = this->make(std::move(cfg));
    auto a = pool.get();
    auto b = pool.get();
    auto c = pool.get();
    ASSERT_TRUE(a && b && c);
    EXPECT_FALSE(pool.put_with_error(std::move(*a)));  // error
    EXPECT_FALSE(pool.put(std::move(*b)));             // idle, closed by close()
    pool.close();
    EXPECT_EQ(c->release(), errc::pool_closed);  // returned after close
    EXPECT_EQ(closes.count(close_reason::error), 1u);
    EXPECT_EQ(closes.count(close_reason::pool_closed), 2u);
    const netpool::pool_stats s = pool.stats();
    EXPECT_EQ(s.closed_error, 1u);
    EXPECT_EQ(s.closed_pool, 2u);
    EXPECT_EQ(closed_for(s, close_reason::pool_closed), s.closed_pool);
  }
  EXPECT_EQ(static_cast<long>(closes.size()), this->registry.made());
  std::vector<int> ids = closes.ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "on_close twice for one connection";
}

// The counters add up however the hooks refuse (stats.hpp): every dial ends a success or a
// failure, and every connection a dial made is open or closed for one reason. A connection that
// on_connect refuses is made and closed (closed_hook) without being a successful dial, so
// dials_ok + those refusals == active + every closed count. Checked after each of 120 rounds in
// which on_connect, on_borrow and on_return each refuse some connections and some leases are
// discarded, and after close().
TYPED_TEST(HooksTest, TheCountersAddUpWhileHooksRefuse) {
  auto cfg = this->config(4);
  std::atomic<int> connects{0};
  std::atomic<int> borrows{0};
  std::atomic<int> returns{0};
  std::atomic<std::uint64_t> refused_at_connect{0};
  cfg.on_connect = [&](tracked_conn&) {
    if (connects.fetch_add(1) % 3 != 2) return std::error_code();
    refused_at_connect.fetch_add(1);
    return std::make_error_code(std::errc::permission_denied);
  };
  cfg.on_borrow = [&](tracked_conn&) { return borrows.fetch_add(1) % 5 != 4; };
  cfg.on_return = [&](tracked_conn&) { return returns.fetch_add(1) % 4 != 3; };
  cfg.dial_backoff_floor = 0ns;  // a refused connect must not make the next gets fail fast
  cfg.dial_backoff_cap = 0ns;
  auto pool = this->make(std::move(cfg));
  const auto expect_counts_add_up = [&](int round) {
    const netpool::pool_stats s = pool.stats();
    std::uint64_t closed = 0;
    for (const std::uint64_t n : s.closed) closed += n;
    EXPECT_EQ(s.dials, s.dials_ok + s.dial_failures) << "round " << round;
    EXPECT_EQ(s.dials_ok + refused_at_connect.load(), s.active + closed) << "round " << round;
    EXPECT_EQ(this->registry.live(), static_cast<long>(s.active)) << "round " << round;
    EXPECT_EQ(this->registry.made(), static_cast<long>(s.dials_ok + refused_at_connect.load()))
        << "round " << round;
  };
  std::vector<netpool::lease<tracked_conn>> held;
  int served = 0;
  for (int round = 0; round < 120; ++round) {
    for (int i = 0; i < 3; ++i) {
      auto got = pool.get_for(patience);
      if (got) {
        held.push_back(std::move(*got));
      } else {
        // on_connect refused a fresh connection, or on_borrow did (config.hpp)
        EXPECT_TRUE(got.error() == std::errc::permission_denied || got.error() == errc::hook_rejected)
            << got.error().message();
      }
    }
    served += static_cast<int>(held.size());
    for (std::size_t i = 0; i < held.size(); ++i) {
      if ((static_cast<std::size_t>(round) + i) % 7 == 0) {
        EXPECT_FALSE(held[i].discard());
      } else {
        (void)held[i].release();  // on_return may refuse: the connection is closed, not returned
      }
    }
    held.clear();
    expect_counts_add_up(round);
  }
  const netpool::pool_stats s = pool.stats();
  EXPECT_GT(served, 0);
  EXPECT_GT(refused_at_connect.load(), 0u);
  EXPECT_GT(s.closed_hook, refused_at_connect.load()) << "on_borrow or on_return never refused";
  EXPECT_GT(s.closed_error, 0u);
  pool.close();
  expect_counts_add_up(-1);
  EXPECT_EQ(pool.stats().active, 0u);
}

TYPED_TEST(HooksTest, OnCloseForALeaseThatOutlivesItsPool) {
  close_log closes;
  netpool::lease<tracked_conn> survivor;
  {
    auto cfg = this->config(2);
    cfg.on_close = closes.hook();
    auto pool = this->make(std::move(cfg));
    auto got = pool.get();
    ASSERT_TRUE(got);
    survivor = std::move(*got);
  }
  EXPECT_EQ(closes.size(), 0u);
  EXPECT_EQ(survivor.release(), errc::pool_closed);
  EXPECT_EQ(closes.count(close_reason::pool_closed), 1u);
}

TYPED_TEST(HooksTest, AThrowingOnCloseChangesNothing) {
  auto cfg = this->config(2);
  cfg.on_close = [](tracked_conn&, close_reason) { throw std::runtime_error("logger down"); };
  auto pool = this->make(std::move(cfg));
  auto got = pool.get();
  ASSERT_TRUE(got);
  EXPECT_FALSE(pool.put_with_error(std::move(*got)));
  EXPECT_EQ(this->registry.live(), 0);
  EXPECT_EQ(pool.stats().closed_error, 1u);
}

// A connection type's own probe() is user code too: one that throws condemns that connection (as a
// throwing health check does) instead of ending the process from the pool's noexcept get.
struct throwing_probe_conn {
  std::shared_ptr<std::atomic<bool>> throws;
  netpool::liveness probe() const {
    if (throws->load()) throw std::runtime_error("probe failed oddly");
    return netpool::liveness::alive;
  }
};

TEST(UserProbe, AThrowingProbeClosesThatConnectionAndTheGetDialsAnother) {
  auto throws = std::make_shared<std::atomic<bool>>(false);
  netpool::pool_config<throwing_probe_conn> cfg;
  cfg.factory = [throws](auto) -> netpool::result<throwing_probe_conn> {
    return throwing_probe_conn{throws};
  };
  cfg.probe_after = std::chrono::nanoseconds::zero();  // probe on every borrow of a pooled one
  cfg.background_maintenance = false;
  auto pool = netpool::pool<throwing_probe_conn>::create(std::move(cfg)).value();
  {
    auto fresh = pool.get();  // dialed now: not probed
    ASSERT_TRUE(fresh);
  }
  throws->store(true);
  auto again = pool.get();  // the pooled one's probe throws: closed, and a new one dialed
  ASSERT_TRUE(again) << again.error().message();
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.closed_health, 1u);
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.active, 1u);
}

TEST(ConnectHook, TakesEitherShapeAndKnowsWhichAndEmptyStaysEmpty) {
  using clock = std::chrono::steady_clock;
  using hook = netpool::connect_hook<tracked_conn>;
  netpool::test::connection_registry registry;
  {
    tracked_conn conn(registry);
    const clock::time_point deadline = clock::now() + 1s;

    hook empty;
    EXPECT_FALSE(empty);
    EXPECT_TRUE(empty == nullptr);
    EXPECT_THROW(empty(conn, deadline), std::bad_function_call);

    clock::time_point seen{};
    hook with_deadline = [&seen](tracked_conn&, clock::time_point d) {
      seen = d;
      return std::error_code(errc::io_timeout);
    };
    EXPECT_TRUE(with_deadline);
    EXPECT_TRUE(with_deadline.takes_deadline());
    EXPECT_EQ(with_deadline(conn, deadline), errc::io_timeout);
    EXPECT_EQ(seen, deadline);

    int calls = 0;
    hook without = [&calls](tracked_conn&) {
      ++calls;
      return std::make_error_code(std::errc::permission_denied);
    };
    EXPECT_TRUE(without);
    EXPECT_FALSE(without.takes_deadline());
    EXPECT_EQ(without(conn, deadline), std::errc::permission_denied);
    EXPECT_EQ(calls, 1);

    // Callables that can be called both ways count as one-argument hooks: they may never see the
    // deadline (std::bind drops what its placeholders do not name), so their timeouts are their own.
    hook generic = [](auto&&...) { return std::error_code(); };
    EXPECT_TRUE(generic);
    EXPECT_FALSE(generic.takes_deadline());
    EXPECT_FALSE(generic(conn, deadline));
    std::error_code (*select_db)(tracked_conn&, int) = [](tracked_conn&, int db) {
      return db == 3 ? std::error_code() : std::make_error_code(std::errc::invalid_argument);
    };
    hook bound = std::bind(select_db, std::placeholders::_1, 3);
    EXPECT_FALSE(bound.takes_deadline());
    EXPECT_FALSE(bound(conn, deadline));
    // A variadic forwarder whose body cannot take two arguments still compiles (the two-argument
    // check must not instantiate it).
    auto one = [](tracked_conn&) { return std::error_code(errc::hook_rejected); };
    hook forwarder = [one](auto&&... args) { return one(args...); };
    EXPECT_FALSE(forwarder.takes_deadline());
    EXPECT_EQ(forwarder(conn, deadline), errc::hook_rejected);
    // A const copy of a mutable lambda, as std::function takes it.
    const auto counting = [n = 0](tracked_conn&) mutable {
      ++n;
      return std::error_code();
    };
    hook from_const = counting;
    EXPECT_FALSE(from_const(conn, deadline));
    // Wrapping the configured hook: the wrapper forwards the deadline.
    clock::time_point forwarded{};
    hook wrapped = [inner = with_deadline, &forwarded](tracked_conn& c, clock::time_point d) {
      forwarded = d;
      return inner(c, d);
    };
    EXPECT_TRUE(wrapped.takes_deadline());
    EXPECT_EQ(wrapped(conn, deadline), errc::io_timeout);
    EXPECT_EQ(forwarded, deadline);
    EXPECT_EQ(seen, deadline);
    // config.hpp's idiom for wrapping whatever hook is configured keeps its shape, so that a
    // one-argument hook's own timeouts stay its own.
    int logged = 0;
    auto wrap = [&logged](const hook& inner) {
      return inner.takes_deadline() ? hook([inner, &logged](tracked_conn& c, hook::deadline_type d) {
        ++logged;
        return inner(c, d);
      })
                                    : hook([inner, &logged](tracked_conn& c) {
                                        ++logged;
                                        return inner(c, {});
                                      });
    };
    const hook wrapped_one = wrap(without);
    EXPECT_FALSE(wrapped_one.takes_deadline());
    EXPECT_EQ(wrapped_one(conn, deadline), std::errc::permission_denied);
    const hook wrapped_two = wrap(with_deadline);
    EXPECT_TRUE(wrapped_two.takes_deadline());
    EXPECT_EQ(wrapped_two(conn, deadline), errc::io_timeout);
    EXPECT_EQ(logged, 2);

    // What the field held before it was a connect_hook still assigns, and an empty one stays empty.
    EXPECT_FALSE(hook(std::function<std::error_code(tracked_conn&)>()));
    EXPECT_FALSE(hook(std::function<std::error_code(tracked_conn&, clock::time_point)>()));
    std::error_code (*no_function)(tracked_conn&) = nullptr;
    EXPECT_FALSE(hook(no_function));
    hook from_function = std::function<std::error_code(tracked_conn&)>(
        [](tracked_conn&) { return std::error_code(errc::hook_rejected); });
    EXPECT_EQ(from_function(conn, deadline), errc::hook_rejected);
    from_function = nullptr;
    EXPECT_FALSE(from_function);
  }
  EXPECT_EQ(registry.live(), 0);
}

TEST(ConnectHookOnASocket, DialTimeoutBoundsTheSetUpOfABackendThatNeverAnswers) {
  // The case the deadline is for: a backend that accepts connections and never answers their
  // set-up (AUTH). on_connect waits for the reply until the deadline it is given, so a get with no
  // deadline of its own fails after about dial_timeout, with the dial failure a hanging connect
  // gives, instead of hanging with it.
  using clock = std::chrono::steady_clock;
  netpool::test::echo_server silent(netpool::test::server_mode::silent);
  auto check = [&silent](auto make_pool) {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(silent.host(), silent.port());
    cfg.max_size = 1;
    cfg.dial_timeout = 200ms;
    cfg.on_connect = [](netpool::socket& s, clock::time_point deadline) -> std::error_code {
      if (std::error_code ec = s.send_all("AUTH secret\r\n", deadline)) return ec;
      char reply[5];
      auto got = s.recv(reply, sizeof reply, deadline);
      return got ? std::error_code() : got.error();
    };
    auto pool = make_pool(std::move(cfg));
    const clock::time_point start = clock::now();
    auto got = pool.get();
    const auto waited = clock::now() - start;
    ASSERT_FALSE(got);
    EXPECT_EQ(got.error(), netpool::make_dial_error(ETIMEDOUT)) << got.error().message();
    EXPECT_EQ(pool.last_dial_error(), netpool::make_dial_error(ETIMEDOUT));
    EXPECT_GE(waited, 200ms);
    EXPECT_LT(waited, 8s) << "the set-up was not bounded by dial_timeout";
    const netpool::pool_stats s = pool.stats();
    EXPECT_EQ(s.dial_failures, 1u);
    EXPECT_EQ(s.closed_hook, 1u);
    EXPECT_EQ(s.active, 0u);
  };
  check([](netpool::pool_config<netpool::socket> c) {
    return netpool::pool<netpool::socket>::create(std::move(c)).value();
  });
  check([](netpool::pool_config<netpool::socket> c) {
    return netpool::lean_pool<netpool::socket>::create(std::move(c)).value();
  });
}

TEST(HookNames, CloseReasonsHaveStableNames) {
  EXPECT_STREQ(netpool::to_string(close_reason::idle), "idle");
  EXPECT_STREQ(netpool::to_string(close_reason::lifetime), "lifetime");
  EXPECT_STREQ(netpool::to_string(close_reason::health), "health");
  EXPECT_STREQ(netpool::to_string(close_reason::error), "error");
  EXPECT_STREQ(netpool::to_string(close_reason::reset), "reset");
  EXPECT_STREQ(netpool::to_string(close_reason::pool_closed), "pool_closed");
  EXPECT_STREQ(netpool::to_string(close_reason::hook), "hook");
  EXPECT_STREQ(netpool::to_string(close_reason::resize), "resize");
  EXPECT_STREQ(netpool::to_string(close_reason::reclaimed), "reclaimed");
}

}  // namespace
