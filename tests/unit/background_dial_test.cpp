// pool dials for a caller that may give up (a deadline sooner than the dial's, or a stop token) on
// a dialer thread, on the pool's own dial deadline: the caller waits in line, and if it gives up
// the dial still completes and its connection goes to the next waiter or the idle set.
// factory_control's gate holds dials inside the factory for as long as a test needs.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <stop_token>
#include <system_error>
#include <thread>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
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
using netpool::test::std_pool;
using netpool::test::tracked_conn;
using netpool::test::wait_for;

class BackgroundDialTest : public netpool::test::pool_fixture<std_pool> {};

TEST_F(BackgroundDialTest, ACallerThatGivesUpLeavesTheDialRunningAndItsConnectionGoesToTheNextWaiter) {
  auto pool = make(1);
  factory.close_gate();
  // The impatient caller gives up on command (a stop token: its dial goes to a dialer thread),
  // not on a short deadline that could pass before the patient one has joined the line.
  std::stop_source give_up;
  auto impatient = run_async([&] { return pool.get(give_up.get_token()); });
  ASSERT_TRUE(wait_for([&] { return factory.at_gate() == 1; }));
  auto patient = run_async([&] { return pool.get_for(patience); });
  // Declared after the futures, so destroyed before them: a failed assertion closes the pool and
  // their destructors do not wait for gets that nobody ends.
  close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 2; }));

  give_up.request_stop();
  ASSERT_TRUE(ready_within(impatient));
  EXPECT_EQ(impatient.get().error(), errc::cancelled);
  EXPECT_EQ(factory.at_gate(), 1) << "the dial goes on without its caller";

  factory.open_gate();
  ASSERT_TRUE(ready_within(patient));
  auto got = patient.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(factory.calls(), 1) << "one dial served the waiter: no second handshake";
  EXPECT_EQ(pool.stats().dials, 1u);
}

TEST_F(BackgroundDialTest, WithNobodyLeftWaitingTheConnectionGoesIdle) {
  auto pool = make(2);
  factory.close_gate();
  EXPECT_EQ(pool.get_for(20ms).error(), errc::timeout);
  factory.open_gate();
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 1; }));
  auto got = pool.try_get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(factory.calls(), 1);
}

TEST_F(BackgroundDialTest, TheDialRunsOnThePoolsDeadlineNotTheCallers) {
  auto cfg = config(2);
  cfg.dial_timeout = 30s;
  auto pool = make(std::move(cfg));
  const auto before = clock_type::now();
  auto got = pool.get_for(2s);
  const auto after = clock_type::now();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_GE(factory.last_deadline(), before + 30s);
  EXPECT_LE(factory.last_deadline(), after + 30s);
}

TEST_F(BackgroundDialTest, OnlyCallersThatMayGiveUpHandTheirDialOver) {
  std::thread::id dialer;
  auto cfg = config(2);
  cfg.factory = [&, inner = factory.function()](clock_type::time_point deadline) {
    dialer = std::this_thread::get_id();  // read after the get returns: ordered by the hand-over
    return inner(deadline);
  };
  auto pool = make(std::move(cfg));
  auto a = pool.get();  // no deadline, no stop token: nothing to give up, no hand-over
  ASSERT_TRUE(a);
  EXPECT_EQ(dialer, std::this_thread::get_id());
  auto b = pool.get_for(patience);  // 10 s: later than the dial's own deadline (5 s)
  ASSERT_TRUE(b);
  EXPECT_EQ(dialer, std::this_thread::get_id()) << "a deadline later than the dial's changes nothing";
}

TEST_F(BackgroundDialTest, ACancelledCallerLeavesTheDialRunning) {
  auto pool = make(1);
  factory.close_gate();
  std::stop_source stop;
  auto caller = run_async([&] { return pool.get(stop.get_token()); });
  ASSERT_TRUE(wait_for([&] { return factory.at_gate() == 1; }));
  stop.request_stop();
  ASSERT_TRUE(ready_within(caller));
  EXPECT_EQ(caller.get().error(), errc::cancelled);
  factory.open_gate();
  ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 1; }));
}

TEST_F(BackgroundDialTest, AFailedDialFailsTheOldestWaiterWithItsError) {
  auto cfg = config(1);
  cfg.dial_timeout = 3 * patience;  // the caller's deadline is sooner: a dialer thread dials
  auto pool = make(std::move(cfg));
  factory.close_gate();
  factory.fail_with(std::make_error_code(std::errc::connection_refused));
  auto caller = run_async([&] { return pool.get_for(patience / 2); });
  ASSERT_TRUE(wait_for([&] { return factory.at_gate() == 1; }));
  factory.open_gate();
  ASSERT_TRUE(ready_within(caller));
  EXPECT_EQ(caller.get().error(), std::errc::connection_refused) << "not a bare timeout";
  // The dialer frees the slot before it tells the waiter: with nobody else in line, nothing is
  // left of the dial.
  const auto after = pool.stats();
  EXPECT_EQ(after.active, 0u);
  EXPECT_EQ(after.dialing, 0u);
}

TEST_F(BackgroundDialTest, DestroyingThePoolWaitsForTheDialAndClosesItsConnection) {
  {
    netpool::test::thread_group opener;  // joined after the pool is gone
    auto pool = make(1);
    factory.close_gate();
    EXPECT_EQ(pool.get_for(10ms).error(), errc::timeout);
    ASSERT_TRUE(wait_for([&] { return factory.at_gate() == 1; }));
    opener.spawn([&] {
      std::this_thread::sleep_for(20ms);  // ~pool is (most likely) waiting for the dial by now
      factory.open_gate();
    });
  }  // ~pool joins the dialer; the connection it made is closed (TearDown checks each once)
  EXPECT_EQ(registry.made(), 1);
  EXPECT_EQ(registry.live(), 0);
}

}  // namespace
