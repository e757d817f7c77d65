// health_check's deadline: a two-argument check is given now + health_check_timeout, on a get (not
// cut to the get's own deadline) and in a keepalive round (real time, not the injected clock); the
// shapes a check_hook takes; and a backend that stops answering, which the pool's bound catches.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "manual_clock.hpp"
#include "netpool/config.hpp"
#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "pool_test_helpers.hpp"
#include "socket_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::test::patience;
using netpool::test::tracked_conn;
using check = netpool::check_hook<tracked_conn>;

static_assert(std::is_same_v<decltype(netpool::pool_config<tracked_conn>::health_check), check>);
// A check answers yes or no, a connect hook with an error: neither takes the other's callable.
static_assert(!std::is_constructible_v<check, std::error_code (*)(tracked_conn&)>);
static_assert(!std::is_constructible_v<netpool::connect_hook<tracked_conn>, bool (*)(tracked_conn&)>);

class HealthCheckDeadline : public netpool::test::pool_fixture<netpool::test::std_pool> {
 protected:
  // No maintainer thread: every check below runs on this thread, in the order the test calls.
  netpool::pool_config<tracked_conn> recording_config(std::vector<clock_type::time_point>& given) {
    auto cfg = config(2);
    cfg.background_maintenance = false;
    cfg.health_check_timeout = 3s;
    cfg.health_check = [&given](tracked_conn&, clock_type::time_point deadline) {
      given.push_back(deadline);
      return true;
    };
    return cfg;
  }
};

// The deadline a check is given is now + health_check_timeout whatever the get's own: a get with
// none, a get_for() sooner than the timeout, a get_for(0). Cut to the get's deadline, a check
// would condemn connections that are fine, every one a get_for(0) looked at.
TEST_F(HealthCheckDeadline, AGetGivesTheCheckNowPlusTheTimeoutWhateverTheGetsOwnDeadline) {
  std::vector<clock_type::time_point> given;
  auto pool = make(recording_config(given));
  {
    auto fresh = pool.get();  // dialed now: not checked
    ASSERT_TRUE(fresh);
  }
  ASSERT_TRUE(given.empty());

  std::vector<std::pair<clock_type::time_point, clock_type::time_point>> windows;
  for (const auto wait : {std::chrono::nanoseconds::max(), std::chrono::nanoseconds(1ms), 0ns}) {
    const clock_type::time_point before = clock_type::now();
    auto l = wait == std::chrono::nanoseconds::max() ? pool.get() : pool.get_for(wait);
    const clock_type::time_point after = clock_type::now();
    ASSERT_TRUE(l) << l.error().message();
    windows.emplace_back(before, after);
  }
  ASSERT_EQ(given.size(), windows.size()) << "one check per get of the pooled connection";
  for (std::size_t i = 0; i < given.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_GE(given[i], windows[i].first + 3s);
    EXPECT_LE(given[i], windows[i].second + 3s);
  }
  EXPECT_EQ(pool.stats().closed_health, 0u);
}

// A keepalive round gives each check the same bound, in real time: the injected clock measures idle
// time, not deadlines (here it is an hour ahead, which a deadline read off it would show).
TEST_F(HealthCheckDeadline, AKeepaliveRoundGivesEachCheckNowPlusTheTimeoutInRealTime) {
  netpool::test::manual_clock idle_clock;
  std::vector<clock_type::time_point> given;
  auto cfg = recording_config(given);
  cfg.clock = idle_clock.function();
  cfg.keepalive_interval = 1s;
  cfg.probe_after = std::chrono::nanoseconds::max();
  auto pool = make(std::move(cfg));
  {
    auto a = pool.get();
    auto b = pool.get();
    ASSERT_TRUE(a && b);
  }
  ASSERT_EQ(pool.len(), 2u);
  idle_clock.advance(1h);
  const clock_type::time_point before = clock_type::now();
  pool.maintain();
  const clock_type::time_point after = clock_type::now();
  ASSERT_EQ(given.size(), 2u) << "a keepalive round checks both idle connections";
  for (const clock_type::time_point d : given) {
    EXPECT_GE(d, before + 3s);
    EXPECT_LE(d, after + 3s);
  }
  EXPECT_EQ(pool.len(), 2u);
}

// A two-argument check that throws condemns its connection as a one-argument one does; the get goes
// on with a fresh dial.
TEST_F(HealthCheckDeadline, AThrowingCheckClosesThatConnectionAndTheGetDialsAnother) {
  auto cfg = config(2);
  cfg.health_check = [](tracked_conn&, clock_type::time_point) -> bool { throw std::runtime_error("check"); };
  auto pool = make(std::move(cfg));
  {
    auto fresh = pool.get();
    ASSERT_TRUE(fresh);
  }
  auto again = pool.get();
  ASSERT_TRUE(again) << again.error().message();
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.closed_health, 1u);
  EXPECT_EQ(s.dials, 2u);
}

// Each check has its own deadline, read as it starts: not one per get, nor one per keepalive round
// (a get or a round that checks several connections would give the later ones less than their
// timeout). The first check takes 30 ms here; the next one's deadline is at least that much later.
TEST_F(HealthCheckDeadline, EachCheckIsGivenItsOwnDeadlineOnAGetAndInAKeepaliveRound) {
  netpool::test::manual_clock idle_clock;
  std::vector<clock_type::time_point> given;
  bool slow_next = false;   // the next check takes 30 ms...
  bool slow_passes = true;  // ...and then says this
  auto cfg = recording_config(given);
  cfg.clock = idle_clock.function();
  cfg.keepalive_interval = 1s;
  cfg.probe_after = std::chrono::nanoseconds::max();
  cfg.health_check = [&](tracked_conn&, clock_type::time_point deadline) {
    given.push_back(deadline);
    if (!std::exchange(slow_next, false)) return true;
    std::this_thread::sleep_for(30ms);
    return slow_passes;
  };
  auto pool = make(std::move(cfg));
  const auto two_idle = [&] {
    auto a = pool.get();
    auto b = pool.get();
    ASSERT_TRUE(a && b);
  };
  two_idle();
  ASSERT_EQ(pool.len(), 2u);

  // A get: the first connection it looks at fails its 30 ms check, the second passes.
  given.clear();
  slow_next = true;
  slow_passes = false;
  {
    auto l = pool.get();
    ASSERT_TRUE(l) << l.error().message();
  }
  ASSERT_EQ(given.size(), 2u);
  EXPECT_GE(given[1], given[0] + 30ms);
  EXPECT_EQ(pool.stats().closed_health, 1u);

  // A keepalive round over two idle connections: both pass, the first after 30 ms.
  two_idle();
  ASSERT_EQ(pool.len(), 2u);
  given.clear();
  slow_next = true;
  slow_passes = true;
  idle_clock.advance(1h);
  pool.maintain();
  ASSERT_EQ(given.size(), 2u) << "a keepalive round checks both idle connections";
  EXPECT_GE(given[1], given[0] + 30ms);
  EXPECT_EQ(pool.len(), 2u);
}

TEST(CheckHook, TakesEitherShapeAndKnowsWhichAndEmptyStaysEmpty) {
  netpool::test::connection_registry registry;
  {
    tracked_conn conn(registry);
    const clock_type::time_point deadline = clock_type::now() + 1s;

    check empty;
    EXPECT_FALSE(empty);
    EXPECT_TRUE(empty == nullptr);
    EXPECT_THROW((void)empty(conn, deadline), std::bad_function_call);

    clock_type::time_point seen{};
    check with_deadline = [&seen](tracked_conn&, clock_type::time_point d) {
      seen = d;
      return false;
    };
    EXPECT_TRUE(with_deadline.takes_deadline());
    EXPECT_FALSE(with_deadline(conn, deadline));
    EXPECT_EQ(seen, deadline);

    // The shape the field had until 0.3, a function of the connection alone, among them the
    // helpers the other tests use.
    check without = netpool::test::healthy_unless_broken;
    EXPECT_TRUE(without);
    EXPECT_FALSE(without.takes_deadline());
    EXPECT_TRUE(without(conn, deadline));
    conn.mark_broken();
    EXPECT_FALSE(without(conn, deadline));

    // Callables that can be called both ways never see the deadline: one-argument checks.
    check generic = [](auto&&...) { return true; };
    EXPECT_FALSE(generic.takes_deadline());
    EXPECT_TRUE(generic(conn, deadline));
    bool (*at_most)(tracked_conn&, int) = [](tracked_conn& c, int id) { return c.id() <= id; };
    check bound = std::bind(at_most, std::placeholders::_1, 1000);
    EXPECT_FALSE(bound.takes_deadline());
    EXPECT_TRUE(bound(conn, deadline));

    // Empty stays empty, however it comes.
    EXPECT_FALSE(check(std::function<bool(tracked_conn&)>()));
    EXPECT_FALSE(check(std::function<bool(tracked_conn&, clock_type::time_point)>()));
    bool (*no_function)(tracked_conn&) = nullptr;
    EXPECT_FALSE(check(no_function));
    check reassigned = std::function<bool(tracked_conn&)>([](tracked_conn&) { return true; });
    EXPECT_TRUE(reassigned);
    reassigned = nullptr;
    EXPECT_FALSE(reassigned);
  }
  EXPECT_EQ(registry.live(), 0);
}

// The case the deadline is for: a backend that stops answering. The check sends a ping and waits
// for its echo until the deadline it is given, so a get with no deadline of its own closes the
// stalled connection after health_check_timeout and goes on with a fresh dial, instead of hanging.
// And a get_for() sooner than that lets its check run to the check's own deadline (none is cut
// short), then fails with the caller's timeout, without dialing past its deadline.
TEST(HealthCheckOnASocket, TheTimeoutBoundsTheCheckOfABackendThatStopsAnswering) {
  const netpool::test::fd_leak_check fds;
  netpool::test::echo_server server;
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer(server.host(), server.port());
  cfg.max_size = 1;
  cfg.health_check_timeout = 200ms;
  // Each check's deadline, and when it ended. Only the getting thread (this one) checks.
  struct check_record {
    clock_type::time_point deadline, ended;
  };
  std::vector<check_record> checks;
  cfg.health_check = [&checks](netpool::socket& s, clock_type::time_point deadline) {
    // Capped by patience, so that a deadline that never comes fails the test instead of hanging it.
    const clock_type::time_point until = std::min(deadline, clock_type::now() + patience);
    char echo[5];
    const bool answered = !s.send_all("ping\n", until) && !s.recv_all(echo, sizeof echo, until);
    checks.push_back({deadline, clock_type::now()});
    return answered;
  };
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
  {
    auto first = pool.get();
    ASSERT_TRUE(first) << first.error().message();
  }
  {
    auto healthy = pool.get();  // the check's ping is echoed
    ASSERT_TRUE(healthy) << healthy.error().message();
    ASSERT_EQ(checks.size(), 1u);
  }
  EXPECT_EQ(pool.stats().closed_health, 0u);

  server.set_mode(netpool::test::server_mode::silent);
  const clock_type::time_point start = clock_type::now();
  auto replaced = pool.get();
  const clock_type::duration waited = clock_type::now() - start;
  ASSERT_TRUE(replaced) << replaced.error().message();
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_GE(checks[1].deadline, start + 200ms);
  EXPECT_GE(checks[1].ended, checks[1].deadline) << "the check gave up before its deadline";
  EXPECT_LT(waited, patience / 2) << "the check was not bounded by health_check_timeout";
  netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.closed_health, 1u);
  EXPECT_EQ(s.dials, 2u) << "a fresh dial replaced the stalled connection";

  server.set_mode(netpool::test::server_mode::echo);
  EXPECT_TRUE(netpool::test::echoed_whole(**replaced, "after the stall\n"));
  replaced->release();

  server.set_mode(netpool::test::server_mode::silent);
  const clock_type::time_point impatient_start = clock_type::now();
  auto impatient = pool.get_for(20ms);
  ASSERT_FALSE(impatient);
  EXPECT_EQ(impatient.error(), errc::timeout) << impatient.error().message();
  ASSERT_EQ(checks.size(), 3u);
  EXPECT_GE(checks[2].deadline, impatient_start + 200ms) << "the check was cut to the get's 20 ms";
  EXPECT_GE(checks[2].ended, checks[2].deadline);
  s = pool.stats();
  EXPECT_EQ(s.closed_health, 2u);
  EXPECT_EQ(s.dials, 2u) << "no dial past the get's deadline";
}

}  // namespace
