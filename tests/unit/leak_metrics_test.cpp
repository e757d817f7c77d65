// Leak detection (leak_threshold, on_leak) and the wait metrics of pool_stats. Time is driven by
// hand (manual_clock, background_maintenance off) wherever the outcome depends on it.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "manual_clock.hpp"
#include "netpool/config.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::errc;
using netpool::leak_report;
using netpool::test::manual_clock;
using netpool::test::patience;
using netpool::test::tracked_conn;
using netpool::test::wait_for;

struct leak_log {
  std::mutex mutex;
  std::vector<leak_report> reports;
  auto hook() {
    return [this](const leak_report& r) {
      std::lock_guard lock(mutex);
      reports.push_back(r);
    };
  }
  std::vector<leak_report> snapshot() {
    std::lock_guard lock(mutex);
    return reports;
  }
};

class LeakTest : public ::testing::Test {
 protected:
  netpool::pool_config<tracked_conn> config(std::chrono::nanoseconds threshold) {
    netpool::pool_config<tracked_conn> c;
    c.factory = factory.function();
    c.max_size = 4;
    c.leak_threshold = threshold;
    c.on_leak = leaks.hook();
    c.clock = clock.function();
    c.background_maintenance = false;
    return c;
  }

  manual_clock clock;
  leak_log leaks;
  netpool::test::connection_registry registry;
  netpool::test::factory_control factory{registry};
};

TEST_F(LeakTest, ALeaseHeldPastTheThresholdIsReportedOnceWithItsCallSiteAndAgainWhenItComesBack) {
  auto pool = netpool::pool<tracked_conn>::create(config(100ms)).value();
  const unsigned line = __LINE__ + 1;
  auto held = pool.get();
  ASSERT_TRUE(held);

  clock.set(99ms);
  pool.maintain();
  EXPECT_TRUE(leaks.snapshot().empty()) << "not yet past the threshold";

  clock.set(150ms);
  pool.maintain();
  clock.set(400ms);
  pool.maintain();  // still out: not reported twice
  auto reports = leaks.snapshot();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_FALSE(reports[0].returned);
  EXPECT_EQ(reports[0].where.line(), line);
  EXPECT_NE(std::string_view(reports[0].where.file_name()).find("leak_metrics_test.cpp"),
            std::string_view::npos);
  EXPECT_NE(std::string_view(reports[0].where.function_name()).find("TestBody"), std::string_view::npos);
  EXPECT_EQ(reports[0].held, 150ms);
  EXPECT_EQ(pool.stats().leaks, 1u);

  clock.set(500ms);
  EXPECT_FALSE(held->release());
  reports = leaks.snapshot();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_TRUE(reports[1].returned);
  EXPECT_EQ(reports[1].held, 500ms);
  EXPECT_EQ(reports[1].where.line(), line);

  // The same connection lent again starts a new lease: not reported while it is young.
  auto again = pool.get();
  ASSERT_TRUE(again);
  clock.set(550ms);
  pool.maintain();
  EXPECT_EQ(leaks.snapshot().size(), 2u);
}

TEST_F(LeakTest, LeasesReturnedInTimeAreNeverReported) {
  auto pool = netpool::pool<tracked_conn>::create(config(100ms)).value();
  for (int i = 0; i < 5; ++i) {
    auto held = pool.get();
    ASSERT_TRUE(held);
    clock.advance(60ms);
    pool.maintain();
  }
  pool.maintain();
  EXPECT_TRUE(leaks.snapshot().empty());
  EXPECT_EQ(pool.stats().leaks, 0u);
}

TEST_F(LeakTest, AThrowingOnLeakIsHarmless) {
  auto cfg = config(10ms);
  cfg.on_leak = [](const leak_report&) { throw std::runtime_error("pager down"); };
  auto pool = netpool::pool<tracked_conn>::create(std::move(cfg)).value();
  auto held = pool.get();
  ASSERT_TRUE(held);
  clock.set(20ms);
  pool.maintain();
  EXPECT_FALSE(held->release());
  EXPECT_EQ(pool.stats().leaks, 1u);
  EXPECT_EQ(pool.len(), 1u);
}

// "Again when it comes back" holds whichever way it comes back: a lease held too long because
// its I/O hung, then discarded, is the typical leak.
TEST_F(LeakTest, ALeakedLeaseThatIsDiscardedIsReportedAgain) {
  auto pool = netpool::pool<tracked_conn>::create(config(100ms)).value();
  auto held = pool.get();
  ASSERT_TRUE(held);
  clock.set(150ms);
  pool.maintain();
  ASSERT_EQ(leaks.snapshot().size(), 1u);
  clock.set(200ms);
  EXPECT_FALSE(held->discard());
  const auto reports = leaks.snapshot();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_TRUE(reports[1].returned);
  EXPECT_EQ(reports[1].held, 200ms);
}

// on_leak's "it came back" report runs only while the pool is open: after close(), or after the
// pool object is gone, whatever on_leak captured may be gone with it (on_return is skipped too).
TEST_F(LeakTest, ALeakedLeaseReturnedAfterCloseOrDestructionIsNotReportedAgain) {
  for (const bool destroy : {false, true}) {
    SCOPED_TRACE(destroy ? "pool destroyed" : "pool closed");
    leak_log log;
    auto cfg = config(100ms);
    cfg.on_leak = log.hook();
    auto pool = std::make_unique<netpool::pool<tracked_conn>>(
        netpool::pool<tracked_conn>::create(std::move(cfg)).value());
    auto held = pool->get();
    ASSERT_TRUE(held);
    clock.advance(150ms);
    pool->maintain();
    ASSERT_EQ(log.snapshot().size(), 1u) << "reported once while out";
    if (destroy) {
      pool.reset();
    } else {
      pool->close();
    }
    EXPECT_EQ(held->release(), errc::pool_closed);
    EXPECT_EQ(log.snapshot().size(), 1u) << "not reported again once the pool is closed";
  }
  EXPECT_EQ(registry.live(), 0);
  EXPECT_EQ(registry.double_closes(), 0);
}

TEST_F(LeakTest, ConfigurationIsChecked) {
  auto cfg = config(10ms);
  cfg.on_leak = nullptr;
  EXPECT_EQ(netpool::validate_for_pool(cfg), netpool::config_problem::leak_callback_missing);
  cfg = config(-1ms);
  EXPECT_EQ(netpool::validate_for_pool(cfg), netpool::config_problem::leak_threshold_negative);
  cfg = config(10ms);
  cfg.clock = nullptr;
  cfg.background_maintenance = true;
  EXPECT_EQ(netpool::validate_for_lean_pool(cfg), netpool::config_problem::leak_detection_on_lean_pool);
  EXPECT_EQ(netpool::lean_pool<tracked_conn>::create(std::move(cfg)).error(), errc::invalid_config);
}

TEST(LeakThreadTest, TheMaintainerThreadReportsALeakOnItsOwn) {
  netpool::test::connection_registry registry;
  netpool::test::factory_control factory(registry);
  leak_log leaks;
  netpool::pool_config<tracked_conn> cfg;
  cfg.factory = factory.function();
  cfg.leak_threshold = 20ms;
  cfg.on_leak = leaks.hook();
  auto pool = netpool::pool<tracked_conn>::create(std::move(cfg)).value();
  auto held = pool.get();
  ASSERT_TRUE(held);
  ASSERT_TRUE(wait_for([&] { return !leaks.snapshot().empty(); }, patience));
  EXPECT_GE(leaks.snapshot()[0].held, 20ms);
}

// ---- dial metrics ------------------------------------------------------------------------------

// dials_ok counts dials that opened a connection, once they have: it used to be dials -
// dial_failures, which counted a dial in flight as a success and went down when it failed (a
// Prometheus counter read as a reset). (Found by review.)
class DialMetricsTest : public netpool::test::pool_fixture<netpool::test::std_pool> {};

TEST_F(DialMetricsTest, DialsOkCountsFinishedSuccessfulDialsOnly) {
  auto cfg = config(1);
  cfg.background_maintenance = false;  // the caller dials on its own thread
  cfg.dial_backoff_floor = 0ns;
  auto pool = make(std::move(cfg));
  factory.close_gate();
  auto got = netpool::test::run_async([&] { return pool.get_for(patience); });
  netpool::test::close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return factory.at_gate() == 1; }));
  EXPECT_EQ(pool.stats().dials, 1u);
  EXPECT_EQ(pool.stats().dials_ok, 0u) << "a dial in flight is no success yet";
  factory.fail_one_at_gate(netpool::make_dial_error(ECONNREFUSED));
  ASSERT_TRUE(netpool::test::ready_within(got));
  EXPECT_FALSE(got.get());
  EXPECT_EQ(pool.stats().dials_ok, 0u);
  EXPECT_EQ(pool.stats().dial_failures, 1u);
  factory.open_gate();
  EXPECT_TRUE(pool.get_for(patience));
  EXPECT_EQ(pool.stats().dials_ok, 1u);
  EXPECT_EQ(pool.stats().dials, 2u);
}

// ---- wait metrics ------------------------------------------------------------------------------

template <class P>
class WaitMetricsTest : public netpool::test::pool_fixture<P> {};
TYPED_TEST_SUITE(WaitMetricsTest, netpool::test::both_pools, netpool::test::pool_names);

std::size_t bucket_of(std::chrono::nanoseconds wait) {
  std::size_t b = 0;
  while (b < netpool::wait_bucket_bounds.size() && wait > netpool::wait_bucket_bounds[b]) ++b;
  return b;
}

TYPED_TEST(WaitMetricsTest, ServedAtOnceAndAfterWaitingAreCountedApart) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  auto waiter = netpool::test::run_async([&] { return pool.get(); });
  // Declared after the future, so destroyed before it: a failed assertion closes the pool, which
  // ends the get that the future's destructor waits for.
  netpool::test::close_on_exit guard(pool);
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
  held->release();
  ASSERT_TRUE(netpool::test::ready_within(waiter));
  ASSERT_TRUE(waiter.get());

  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.gets, 2u);
  EXPECT_EQ(s.gets_immediate, 1u);
  EXPECT_EQ(s.gets_waited, 1u);
  EXPECT_GT(s.max_wait, 0ns);
  EXPECT_EQ(s.wait_time, s.max_wait) << "one wait: its total is its maximum";
  EXPECT_EQ(std::accumulate(s.wait_histogram.begin(), s.wait_histogram.end(), std::uint64_t{0}), 1u);
  EXPECT_EQ(s.wait_histogram[bucket_of(s.max_wait)], 1u);
}

TYPED_TEST(WaitMetricsTest, ATimedOutWaitIsInTheHistogramAndTheMaximum) {
  auto pool = this->make(1);
  auto held = pool.get();
  ASSERT_TRUE(held);
  EXPECT_EQ(pool.get_for(20ms).error(), errc::timeout);
  EXPECT_EQ(pool.get_for(1ms).error(), errc::timeout);
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.timeouts, 2u);
  EXPECT_EQ(s.gets_waited, 2u);
  EXPECT_EQ(s.gets_immediate, 1u);
  EXPECT_GE(s.max_wait, 20ms);
  EXPECT_GE(s.wait_time, s.max_wait);
  EXPECT_EQ(std::accumulate(s.wait_histogram.begin(), s.wait_histogram.end(), std::uint64_t{0}), 2u);
  EXPECT_GE(s.wait_histogram[bucket_of(s.max_wait)], 1u);
}

TYPED_TEST(WaitMetricsTest, DialOutcomesAndTheClosedArrayMatchTheNamedCounters) {
  auto pool = this->make(2);
  auto a = pool.get();
  ASSERT_TRUE(a);
  this->factory.fail_with(std::make_error_code(std::errc::connection_refused));
  EXPECT_EQ(pool.get_for(patience).error(), std::errc::connection_refused);
  this->factory.succeed();
  EXPECT_FALSE(pool.put_with_error(std::move(*a)));
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.dials_ok, 1u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.closed_error, 1u);
  EXPECT_EQ(s.closed[static_cast<std::size_t>(netpool::close_reason::error)], 1u);
  EXPECT_EQ(std::accumulate(s.closed.begin(), s.closed.end(), std::uint64_t{0}), 1u);
}

}  // namespace
