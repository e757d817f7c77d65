// INV12: the miss path finds idle connections through a bitmap of slots that may be idle, and a
// connection taken off it must be listed again when it comes back, whichever path returns it. A
// connection that is idle but unlisted is invisible to every thread but the one whose hint points
// at it: try_get() from any other thread would answer `exhausted` beside it, and a get would wait.
//
// Threads matter here (the hint is per thread), so each step runs on a named worker thread; a
// fresh thread has no hint and takes the miss path.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"
#include "worker_thread.hpp"

namespace {

using netpool::test::tracked_conn;
using netpool::test::worker;
using lease_type = netpool::lease<tracked_conn>;

using netpool::test::idle_found_by_a_fresh_thread;

template <class P>
class IdleListingTest : public netpool::test::pool_fixture<P> {};
TYPED_TEST_SUITE(IdleListingTest, netpool::test::both_pools, netpool::test::pool_names);

// A lease the miss path took is unlisted; its owner returns it through the fast path (its own
// hint). It must be listed again: the fresh thread finds both idle connections.
TYPED_TEST(IdleListingTest, ALeaseTakenByTheMissPathIsListedAgainByTheFastPut) {
  auto pool = this->make(2);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 2));
  {
    worker owner;
    owner.run([&pool] {
      auto l = pool.try_get();  // no hint on this thread: the miss path
      ASSERT_TRUE(l) << l.error().message();
      l->release();  // the fast path: this thread's hint is now this slot
    });
  }
  EXPECT_EQ(pool.stats().idle, 2u);
  EXPECT_EQ(idle_found_by_a_fresh_thread(pool), 2u);
}

// A lease the fast path took (its owner's hint) stays listed; a scanner that meets it unlists it.
// Returned through the fast path, it must be listed again.
TYPED_TEST(IdleListingTest, ALeaseAScannerUnlistedIsListedAgainByTheFastPut) {
  auto pool = this->make(2);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 2));
  worker owner;
  owner.run([&pool] {
    auto first = pool.try_get();  // miss path, then back through the fast path: the hint is set
    ASSERT_TRUE(first) << first.error().message();
  });
  std::optional<lease_type> held;
  owner.run([&] {
    auto l = pool.try_get();  // the fast path: the hint's slot, still listed
    ASSERT_TRUE(l) << l.error().message();
    held.emplace(std::move(*l));
  });
  ASSERT_TRUE(held);
  {
    worker scanner;  // walks past the held slot (unlisting it) to the other one
    scanner.run([&pool] {
      auto other = pool.try_get();
      ASSERT_TRUE(other) << other.error().message();
    });
  }
  owner.run([&] { held.reset(); });  // the fast path again
  EXPECT_EQ(pool.stats().idle, 2u);
  EXPECT_EQ(idle_found_by_a_fresh_thread(pool), 2u);
}

// pool's dialer threads hand a connection they dialed straight to the waiter they dialed for. That
// slot was never listed: the waiter's put must list it.
class IdleListingDialerTest : public netpool::test::pool_fixture<netpool::test::std_pool> {};

TEST_F(IdleListingDialerTest, AConnectionDialedForAWaiterIsListedWhenItComesBack) {
  auto pool = make(1);
  {
    // No connection yet: this get waits while a dialer thread dials for it (a get that may give up,
    // here through its stop token, leaves the dial to the pool's threads).
    worker waiter;
    waiter.run([&pool] {
      std::stop_source stop;
      auto l = pool.get(stop.get_token());
      ASSERT_TRUE(l) << l.error().message();
    });
  }
  EXPECT_EQ(pool.stats().gets_waited, 1u) << "served by the dialer thread, after waiting";
  EXPECT_EQ(pool.stats().idle, 1u);
  EXPECT_EQ(idle_found_by_a_fresh_thread(pool), 1u);
}

// Two threads each holding three at a time on a pool half lent out: every get must be served (a
// get that cannot find an idle connection waits, and with 8 idle and at most 6 held here, a wait
// that lasts means an idle connection nobody can see). Bounded in gets and time.
TYPED_TEST(IdleListingTest, TwoThreadsHoldingThreeEachAreAlwaysServed) {
  auto cfg = this->config(16);
  cfg.min_size = 16;  // dialed by the pool itself (the maintainer's dials, or lean_pool's create())
  auto pool = this->make(std::move(cfg));
  ASSERT_TRUE(netpool::test::wait_for([&] { return pool.stats().idle == 16; }));
  std::vector<lease_type> half;
  for (int i = 0; i < 8; ++i) {
    auto l = pool.try_get();
    ASSERT_TRUE(l);
    half.push_back(std::move(*l));
  }
  std::atomic<int> failures{0};
  auto burst = [&] {
    for (int round = 0; round < 20000 && failures.load() == 0; ++round) {
      std::array<std::optional<lease_type>, 3> held;
      for (auto& h : held) {
        auto l = pool.get_for(std::chrono::seconds(5));
        if (!l) {
          failures.fetch_add(1);
          return;
        }
        h.emplace(std::move(*l));
      }
    }
  };
  std::thread a(burst), b(burst);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0) << "a get waited 5 s with idle connections in the pool";
  half.clear();
  EXPECT_EQ(idle_found_by_a_fresh_thread(pool), 16u);
}

// The same over slots spread across several bitmap words, with gets, puts and discards in random
// order on three threads, each with its own hint: after every step the miss path finds exactly the
// idle connections stats() counts. 130 slots: three words; 700: eleven, with a summary (INV13).
// Each step runs as if on a random CPU (home_stripe): its gets walk from that stripe first and its
// puts list their slots there, so that in a pool with stripes connections move between stripes,
// and a slot unlisted from one stripe may be listed in another.
template <class P>
void miss_path_finds_every_idle_connection_after_random_steps(P& pool, std::size_t max, std::size_t burst) {
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, max));
  std::mt19937 random(12345);  // fixed: a failure replays
  std::vector<worker> threads(3);
  std::vector<std::vector<lease_type>> held(threads.size());
  for (int step = 0; step < 150; ++step) {
    const std::size_t t = random() % threads.size();
    const unsigned action = random() % 8;
    const std::size_t count = 1 + random() % burst;
    const int stripe = static_cast<int>(random() % 4);  // masked to the pool's stripes
    threads[t].run([&, t] {
      const netpool::test::home_stripe home(stripe);
      auto& mine = held[t];
      for (std::size_t i = 0; i < count; ++i) {
        if (action < 4) {  // get: the hint first, then the miss path
          auto l = pool.try_get();
          if (!l) break;
          mine.push_back(std::move(*l));
        } else if (!mine.empty()) {  // put (or discard) the most recent: the fast path, mostly
          if (action == 7) {
            mine.back().discard();
          }
          mine.pop_back();
        }
      }
    });
    const auto s = pool.stats();
    std::size_t held_now = 0;
    for (const auto& h : held) held_now += h.size();
    ASSERT_EQ(s.in_use, held_now) << "step " << step;
    ASSERT_EQ(idle_found_by_a_fresh_thread(pool), s.idle) << "step " << step;
  }
  for (std::size_t t = 0; t < threads.size(); ++t) threads[t].run([&, t] { held[t].clear(); });
}

// 130 slots in 1, 2 and 4 stripes (pool_core.hpp, listed_).
TYPED_TEST(IdleListingTest, TheMissPathFindsEveryIdleConnectionAfterRandomSteps) {
  for (std::uint32_t stripes : {1u, 2u, 4u}) {
    SCOPED_TRACE(testing::Message() << stripes << " stripes");
    const netpool::test::idle_stripes layout(stripes);
    auto pool = this->make(130);
    ASSERT_NO_FATAL_FAILURE(miss_path_finds_every_idle_connection_after_random_steps(pool, 130, 40));
  }
}

// With a summary: 700 slots in one stripe (11 words), and 1200 in two (19 words each).
TYPED_TEST(IdleListingTest, TheMissPathFindsEveryIdleConnectionAfterRandomStepsWithASummary) {
  {
    const netpool::test::idle_stripes one(1);
    auto pool = this->make(700);
    ASSERT_NO_FATAL_FAILURE(miss_path_finds_every_idle_connection_after_random_steps(pool, 700, 230));
  }
  const netpool::test::idle_stripes two(2);
  auto pool = this->make(1200);
  ASSERT_NO_FATAL_FAILURE(miss_path_finds_every_idle_connection_after_random_steps(pool, 1200, 400));
}

}  // namespace
