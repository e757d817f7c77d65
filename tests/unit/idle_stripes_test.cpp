// The idle bitmap in stripes (pool_core.hpp, listed_): in a pool of more than 64 slots, slot i's
// bit is in stripe i % stripes, and a miss walk starts in its CPU's stripe, so that threads on
// different CPUs take and return connections in different lines. These tests pin the stripe count
// and each thread's home stripe (idle_stripes, home_stripe) so that they know which connection a
// walk takes: its own stripe's lowest idle slot first, then the next stripe's, and never one it
// cannot see. Slot k holds the k-th connection dialed: open_idle() dials them in order on one
// thread, each into the lowest free slot.
//
// Each step runs on a named worker thread: a fresh thread has no hint and no cache of walked
// slots, so its gets take the walk.
#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <vector>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "worker_thread.hpp"

namespace {

using netpool::errc;
using netpool::test::home_stripe;
using netpool::test::idle_stripes;
using netpool::test::tracked_conn;
using netpool::test::worker;
using lease_type = netpool::lease<tracked_conn>;

template <class P>
class IdleStripesTest : public netpool::test::pool_fixture<P> {};
TYPED_TEST_SUITE(IdleStripesTest, netpool::test::both_pools, netpool::test::pool_names);

// On a worker whose walks start in stripe `stripe`: takes up to n connections with try_get() and
// returns their ids in the order taken (the leases go into `held`).
template <class P>
std::vector<int> take_from_stripe(worker& w, P& pool, int stripe, std::size_t n,
                                  std::vector<lease_type>& held) {
  return w.run([&] {
    home_stripe home(stripe);
    std::vector<int> ids;
    for (std::size_t i = 0; i < n; ++i) {
      auto l = pool.try_get();
      if (!l) break;
      ids.push_back((*l)->id());
      held.push_back(std::move(*l));
    }
    return ids;
  });
}

// Two stripes: a thread of stripe 0 takes slots 0, 2, 4, ..., one of stripe 1 slots 1, 3, 5, ...
TYPED_TEST(IdleStripesTest, EachThreadTakesTheLowestIdleSlotsOfItsOwnStripe) {
  const idle_stripes two(2);
  auto pool = this->make(128);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 128));
  std::vector<lease_type> held_even, held_odd;
  worker even, odd;
  const std::vector<int> evens = take_from_stripe(even, pool, 0, 5, held_even);
  const std::vector<int> odds = take_from_stripe(odd, pool, 1, 5, held_odd);
  ASSERT_EQ(evens.size(), 5u);
  ASSERT_EQ(odds.size(), 5u);
  const int first = evens[0];  // slot 0's connection
  for (std::size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(evens[k], first + 2 * static_cast<int>(k)) << "stripe 0, get " << k;
    EXPECT_EQ(odds[k], first + 1 + 2 * static_cast<int>(k)) << "stripe 1, get " << k;
  }
  even.run([&] { held_even.clear(); });
  odd.run([&] { held_odd.clear(); });
  EXPECT_EQ(netpool::test::idle_found_by_a_fresh_thread(pool), 128u);
}

// A walk whose stripe has no idle connection goes on to the next stripe (wrapping round), lowest
// first there; every idle connection is found, and then try_get() says exhausted.
TYPED_TEST(IdleStripesTest, AWalkWhoseStripeIsEmptyTakesFromTheNextStripe) {
  const idle_stripes four(4);
  auto pool = this->make(100);  // 25 slots a stripe
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 100));
  std::vector<lease_type> held;
  worker w;
  const std::vector<int> ids = take_from_stripe(w, pool, 3, 100, held);
  ASSERT_EQ(ids.size(), 100u);
  const int slot0 = ids[25];  // stripe 3 (slots 3, 7, ..., 99) first, then stripe 0 from slot 0
  for (std::size_t k = 0; k < 100; ++k) {
    const std::size_t stripe = (3 + k / 25) % 4;
    const int slot = static_cast<int>(stripe + 4 * (k % 25));
    EXPECT_EQ(ids[k], slot0 + slot) << "get " << k;
  }
  w.run([&] {
    auto none = pool.try_get();
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error(), errc::exhausted);
    held.clear();
  });
  EXPECT_EQ(pool.stats().idle, 100u);
  EXPECT_EQ(netpool::test::idle_found_by_a_fresh_thread(pool), 100u);
}

// A pool with a summary (a stripe of more than 8 words: 600 slots, 10 words) wraps round as well:
// with its own stripe all lent, a walk from stripe 0 takes stripe 1's lowest slot, and one from
// stripe 1 then takes nothing of stripe 0's (all lent) and nothing past the pool's end.
TYPED_TEST(IdleStripesTest, AWalkWrapsRoundTheStripesOfASummarizedPool) {
  const idle_stripes two(2);
  auto pool = this->make(1200);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 1200));
  std::vector<lease_type> held_even, held_odd;
  worker even, odd;
  const std::vector<int> evens = take_from_stripe(even, pool, 0, 601, held_even);
  ASSERT_EQ(evens.size(), 601u);
  for (std::size_t k = 0; k < 600; ++k) ASSERT_EQ(evens[k], 2 * static_cast<int>(k)) << "get " << k;
  EXPECT_EQ(evens[600], 1) << "stripe 0 all lent: stripe 1's lowest";
  const std::vector<int> odds = take_from_stripe(odd, pool, 1, 600, held_odd);
  ASSERT_EQ(odds.size(), 599u) << "every connection lent after 1200 gets";
  for (std::size_t k = 0; k < odds.size(); ++k)
    EXPECT_EQ(odds[k], 3 + 2 * static_cast<int>(k)) << "get " << k;
  even.run([&] { held_even.clear(); });
  odd.run([&] { held_odd.clear(); });
  EXPECT_EQ(netpool::test::idle_found_by_a_fresh_thread(pool), 1200u);
}

// A pool of one word keeps one stripe whatever is asked: the walk takes slot 0 first from any
// stripe.
TYPED_TEST(IdleStripesTest, APoolOfOneWordHasOneStripe) {
  const idle_stripes two(2);
  auto pool = this->make(64);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 64));
  std::vector<lease_type> held;
  worker w;
  const std::vector<int> ids = take_from_stripe(w, pool, 1, 64, held);
  ASSERT_EQ(ids.size(), 64u);
  for (std::size_t k = 1; k < 64; ++k) EXPECT_EQ(ids[k], ids[0] + static_cast<int>(k)) << "get " << k;
  w.run([&] { held.clear(); });
}

// When a connection fails its check, the get goes on from the next slot in the walk's order (the
// stripe's next slot), not the next slot index: with slots 0 and 2 failing, a get from stripe 0
// takes slot 4, and checks each of 0, 2 and 4 once.
class IdleStripesCheckTest : public netpool::test::pool_fixture<netpool::test::std_pool> {};

TEST_F(IdleStripesCheckTest, AGetWhoseCheckFailsGoesOnWithTheNextSlotOfItsStripe) {
  const idle_stripes two(2);
  std::atomic<bool> checking{false};
  std::vector<int> checked;  // by the worker's get only
  auto cfg = config(128);
  cfg.health_check = [&](tracked_conn& c) {
    // relaxed: set before the worker's job is queued, which synchronizes with it.
    if (!checking.load(std::memory_order_relaxed)) return true;
    checked.push_back(c.id());
    return c.id() != 0 && c.id() != 2;
  };
  auto pool = make(std::move(cfg));
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 128));
  checking.store(true, std::memory_order_relaxed);
  worker w;
  w.run([&] {
    const home_stripe home(0);
    auto l = pool.try_get();
    ASSERT_TRUE(l) << l.error().message();
    EXPECT_EQ((*l)->id(), 4);
  });
  EXPECT_EQ(checked, (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(pool.stats().idle, 126u);
}

}  // namespace
