// reset() and the maintainer's rounds racing a slot's owner in the middle of something.
//
// RedialTest: a waiter handed a connection that fails its check closes it and dials a new one into
// the same slot. While it dials, the slot holds no connection, and nothing the pool does meanwhile
// (reset(), a lifetime round of the maintainer) may treat it as a lent connection: dooming it
// closed the fresh connection on arrival, failed the get with pool_closed on an open pool, and
// freed the slot without waking the next waiter, who then slept forever with room in the pool.
//
// KeepaliveResetTest: a reset() while a keepalive round checks an idle connection must still close
// that connection (it was open before the reset); it used to go back to the pool, and be lent
// after, say, a failover.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <system_error>
#include <thread>
#include <utility>

#include "manual_clock.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::test::patience;
using netpool::test::tracked_conn;

class RedialTest : public netpool::test::pool_fixture<netpool::test::std_pool> {
 protected:
  enum class doom { reset, lifetime };

  // Two connections lent (max 2) and two waiters, B then C. The first connection comes back
  // failing its check: B closes it and dials into its slot, held at the factory's gate, while
  // `way` runs. B must get its fresh connection; C must still be served when B's comes back.
  void run(doom way) {
    netpool::test::manual_clock clock;  // outlives the pool
    std::atomic<bool> unhealthy{false};
    auto cfg = config(2);
    cfg.background_maintenance = false;
    cfg.health_check = [&](tracked_conn&) { return !unhealthy.load(); };
    if (way == doom::lifetime) {
      cfg.clock = clock.function();
      cfg.max_lifetime = 10s;
      cfg.lifetime_jitter = 0.0;
    }
    auto pool = make(std::move(cfg));
    netpool::test::close_on_exit guard(pool);

    auto first = pool.get();
    auto second = pool.get();
    ASSERT_TRUE(first && second);
    const int first_id = (*first)->id();
    auto b = netpool::test::run_async([&] { return pool.get_for(patience); });
    ASSERT_TRUE(netpool::test::wait_for([&] { return pool.stats().waiters == 1; }));
    auto c = netpool::test::run_async([&] { return pool.get_for(patience); });
    ASSERT_TRUE(netpool::test::wait_for([&] { return pool.stats().waiters == 2; }));

    unhealthy.store(true);
    factory.close_gate();
    EXPECT_FALSE(first->release());  // to B, whose check refuses it: B dials into the slot
    ASSERT_TRUE(netpool::test::wait_for([&] { return factory.at_gate() == 1; }));
    EXPECT_EQ(registry.close_count(first_id), 1);
    if (way == doom::reset) {
      pool.reset();  // dooms what is lent: `second`, not B's dial
    } else {
      clock.set(11s);  // past every connection's lifetime
      pool.maintain();
    }
    unhealthy.store(false);
    factory.open_gate();

    ASSERT_TRUE(netpool::test::ready_within(b));
    auto got_b = b.get();
    ASSERT_TRUE(got_b) << "B's fresh connection was lost: " << got_b.error().message();
    EXPECT_FALSE(pool.closed());
    EXPECT_TRUE(netpool::test::still_blocked(c)) << "both connections are still lent";

    EXPECT_FALSE(got_b->release());  // fresh: pooled and handed to C, not closed
    ASSERT_TRUE(netpool::test::ready_within(c)) << "C was never woken";
    auto got_c = c.get();
    ASSERT_TRUE(got_c) << got_c.error().message();
    const netpool::pool_stats s = pool.stats();
    EXPECT_EQ(s.closed_pool, 0u);
    EXPECT_EQ(way == doom::reset ? s.closed_reset : s.closed_lifetime, 0u) << "nothing came back doomed yet";
    EXPECT_EQ(s.in_use, 2u);

    EXPECT_FALSE(second->release());  // doomed while lent: closed now, not pooled
    const netpool::pool_stats after = pool.stats();
    EXPECT_EQ(way == doom::reset ? after.closed_reset : after.closed_lifetime, 1u);
    EXPECT_EQ(after.in_use, 1u);
    EXPECT_EQ(after.idle, 0u);
  }
};

TEST_F(RedialTest, ResetDuringTheRedialLeavesTheFreshConnectionAlone) {
  run(doom::reset);
}

TEST_F(RedialTest, LifetimeRoundDuringTheRedialLeavesTheFreshConnectionAlone) {
  run(doom::lifetime);
}

class KeepaliveResetTest : public netpool::test::pool_fixture<netpool::test::std_pool> {};

TEST_F(KeepaliveResetTest, ResetWhileKeepaliveChecksAConnectionClosesItWhenTheCheckEnds) {
  netpool::test::manual_clock clock;  // outlives the pool
  std::atomic<bool> hold{false};
  std::atomic<bool> in_check{false};
  std::atomic<bool> let_go{false};
  auto cfg = config(2);
  cfg.background_maintenance = false;
  cfg.clock = clock.function();
  cfg.keepalive_interval = 1s;
  cfg.health_check = [&](tracked_conn&) {
    if (hold.load()) {
      in_check.store(true);
      (void)netpool::test::wait_for([&] { return let_go.load(); });
    }
    return true;
  };
  auto pool = make(std::move(cfg));
  {
    auto l = pool.get();
    ASSERT_TRUE(l);
  }
  ASSERT_EQ(pool.len(), 1u);

  hold.store(true);
  std::thread round([&] { (void)pool.maintain(); });  // the first keepalive round: holds the slot
  const bool checking = netpool::test::wait_for([&] { return in_check.load(); });
  if (checking) pool.reset();  // sees the slot busy
  let_go.store(true);
  round.join();
  ASSERT_TRUE(checking) << "the keepalive round never checked the connection";

  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.closed_reset, 1u) << "the connection the round held survived the reset";
  EXPECT_EQ(s.closed_health, 0u);
  EXPECT_EQ(pool.len(), 0u);
  EXPECT_EQ(registry.live(), 0);
}

}  // namespace
