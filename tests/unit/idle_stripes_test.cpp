// The idle bitmap in stripes (pool_core.hpp, listed_): in a pool of more than 64 slots each stripe
// has a bit for every slot, a put lists its slot in the stripe of its thread's CPU, and a miss walk
// starts in its CPU's stripe, so that threads on different CPUs take and return connections in
// different lines. These tests pin the stripe count and each thread's home stripe (idle_stripes,
// home_stripe) so that they know where each connection is listed and which one a walk takes: its
// own stripe's lowest idle slot first, then the next stripe's, and never one it cannot see. Slot k
// holds the k-th connection dialed: open_idle() dials them in order on one thread, each into the
// lowest free slot.
//
// Each step runs on a named worker thread: a fresh thread has no hint and no cache of walked
// slots, so its gets take the walk.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <iterator>
#include <vector>

#include "netpool/error.hpp"
#include "netpool/keyed_pool.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"
#include "worker_thread.hpp"

namespace {

using namespace std::chrono_literals;
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

// Gives `held` back from the calling thread as if it ran on a CPU of stripe `stripe`: each
// connection a walk took is listed again in that stripe.
void return_to_stripe(int stripe, std::vector<lease_type>& held) {
  const home_stripe home(stripe);
  held.clear();
}

// Opens n connections from the calling thread, listed in stripe `stripe`.
template <class P>
void open_idle_in_stripe(P& pool, std::size_t n, int stripe) {
  const home_stripe home(stripe);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, n));
}

// Two stripes, every connection listed in stripe 0: a thread of stripe 1 finds its stripe empty and
// takes stripe 0's lowest; given back on stripe 1, those are listed there. Then a thread of stripe 0
// takes the lowest of the others, and one of stripe 1 takes the ones listed in its stripe.
TYPED_TEST(IdleStripesTest, AConnectionIsListedInTheStripeOfTheCpuThatReturnedIt) {
  const idle_stripes two(2);
  auto pool = this->make(128);
  ASSERT_NO_FATAL_FAILURE(open_idle_in_stripe(pool, 128, 0));
  std::vector<lease_type> held, held_0, held_1;
  worker first, on_0, on_1;
  const std::vector<int> moved = take_from_stripe(first, pool, 1, 5, held);
  ASSERT_EQ(moved.size(), 5u);
  const int slot0 = moved[0];
  for (std::size_t k = 0; k < 5; ++k) EXPECT_EQ(moved[k], slot0 + static_cast<int>(k)) << "get " << k;
  return_to_stripe(1, held);  // slots 0..4 now listed in stripe 1 only
  const std::vector<int> from_0 = take_from_stripe(on_0, pool, 0, 5, held_0);
  const std::vector<int> from_1 = take_from_stripe(on_1, pool, 1, 5, held_1);
  ASSERT_EQ(from_0.size(), 5u);
  ASSERT_EQ(from_1.size(), 5u);
  for (std::size_t k = 0; k < 5; ++k) {
    EXPECT_EQ(from_0[k], slot0 + 5 + static_cast<int>(k)) << "stripe 0, get " << k;
    EXPECT_EQ(from_1[k], slot0 + static_cast<int>(k)) << "stripe 1, get " << k;
  }
  held_0.clear();
  held_1.clear();
  EXPECT_EQ(netpool::test::idle_found_by_a_fresh_thread(pool), 128u);
}

// A walk whose stripe has no idle connection goes on to the next stripe (wrapping round), lowest
// first there; every idle connection is found, and then try_get() says exhausted. The layout, made
// by threads of stripes 1, 2 and 3 each taking 25 and giving them back: stripe 0 holds slots
// 75..99, stripe 1 0..24, stripe 2 25..49, stripe 3 50..74.
TYPED_TEST(IdleStripesTest, AWalkWhoseStripeIsEmptyTakesFromTheNextStripe) {
  const idle_stripes four(4);
  auto pool = this->make(100);
  ASSERT_NO_FATAL_FAILURE(open_idle_in_stripe(pool, 100, 0));
  int slot0 = -1;
  for (int t = 1; t <= 3; ++t) {
    std::vector<lease_type> held;
    worker w;
    const std::vector<int> ids = take_from_stripe(w, pool, t, 25, held);
    ASSERT_EQ(ids.size(), 25u);
    if (t == 1) slot0 = ids[0];
    EXPECT_EQ(ids[0], slot0 + 25 * (t - 1)) << "stripe " << t << ": stripe 0's lowest";
    return_to_stripe(t, held);
  }
  std::vector<lease_type> held;
  worker w;
  const std::vector<int> ids = take_from_stripe(w, pool, 3, 100, held);
  ASSERT_EQ(ids.size(), 100u);
  const int first_of_stripe[4] = {75, 0, 25, 50};
  for (std::size_t k = 0; k < 100; ++k) {
    const std::size_t stripe = (3 + k / 25) % 4;  // 3, 0, 1, 2
    EXPECT_EQ(ids[k], slot0 + first_of_stripe[stripe] + static_cast<int>(k % 25)) << "get " << k;
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

// A pool with a summary (stripes of more than 8 words: 1 200 slots, 19 words) wraps round as well.
// Stripe 1 holds slots 0..599 (moved there), stripe 0 600..1199: a walk from stripe 0 takes those,
// then stripe 1's lowest; one from stripe 1 then takes the rest of stripe 1, nothing of stripe 0's
// (all lent) and nothing past the pool's end.
TYPED_TEST(IdleStripesTest, AWalkWrapsRoundTheStripesOfASummarizedPool) {
  const idle_stripes two(2);
  auto pool = this->make(1200);
  ASSERT_NO_FATAL_FAILURE(open_idle_in_stripe(pool, 1200, 0));
  std::vector<lease_type> held_0, held_1;
  worker on_0, on_1;
  const std::vector<int> moved = take_from_stripe(on_1, pool, 1, 600, held_1);
  ASSERT_EQ(moved.size(), 600u);
  for (std::size_t k = 0; k < 600; ++k) ASSERT_EQ(moved[k], static_cast<int>(k)) << "get " << k;
  return_to_stripe(1, held_1);
  const std::vector<int> from_0 = take_from_stripe(on_0, pool, 0, 601, held_0);
  ASSERT_EQ(from_0.size(), 601u);
  for (std::size_t k = 0; k < 600; ++k) ASSERT_EQ(from_0[k], 600 + static_cast<int>(k)) << "get " << k;
  EXPECT_EQ(from_0[600], 0) << "stripe 0 all lent: stripe 1's lowest";
  worker fresh_on_1;  // on_1 would first try the slots it walked to last (its cache)
  const std::vector<int> from_1 = take_from_stripe(fresh_on_1, pool, 1, 600, held_1);
  ASSERT_EQ(from_1.size(), 599u) << "every connection lent after 1200 gets";
  for (std::size_t k = 0; k < from_1.size(); ++k)
    EXPECT_EQ(from_1[k], 1 + static_cast<int>(k)) << "get " << k;
  held_0.clear();
  held_1.clear();
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

// When a connection fails its check, the get goes on with the next listed slot in the walk's order:
// every connection listed in stripe 1, slots 0 and 1 failing, a get from stripe 0 finds its stripe
// empty, takes slot 0 in stripe 1 (its check fails), then slot 1, then slot 2, and checks each of
// them once.
class IdleStripesCheckTest : public netpool::test::pool_fixture<netpool::test::std_pool> {
 protected:
  struct walk_case {
    std::vector<int> failing;  // slots whose checks fail, the first taken by the lean walk
    int target;                // the slot the get must end with; -1: none given back
  };

  // TheFullWalkFindsAConnectionPastEmptyLinesOfTheBitmap, one pool per case: every connection
  // lent, then the case's given back into `stripe`, and a get from stripe 0.
  void full_walk_cases(std::size_t size, int stripe, const std::vector<walk_case>& cases) {
    for (const walk_case& c : cases) {
      SCOPED_TRACE(testing::Message() << "target " << c.target);
      std::atomic<bool> checking{false};
      std::vector<int> failing_ids;  // connection ids (this fixture numbers them across pools)
      std::vector<int> checked;      // by the worker's get only
      auto cfg = config(size);
      cfg.health_check = [&](tracked_conn& conn) {
        // relaxed: set before the worker's job is queued, which synchronizes with it.
        if (!checking.load(std::memory_order_relaxed)) return true;
        checked.push_back(conn.id());
        return std::find(failing_ids.begin(), failing_ids.end(), conn.id()) == failing_ids.end();
      };
      auto pool = make(std::move(cfg));
      ASSERT_NO_FATAL_FAILURE(open_idle_in_stripe(pool, size, 0));
      worker taker;
      std::vector<lease_type> held;  // held[k]: slot k (dialed in order, taken lowest first)
      ASSERT_EQ(take_from_stripe(taker, pool, 0, size, held).size(), size);
      std::vector<int> given_ids;
      std::vector<lease_type> back;
      std::vector<int> given = c.failing;
      if (c.target >= 0) given.push_back(c.target);
      const int first_id = held.front()->id();
      for (const int slot : given) {
        lease_type& lease = held[static_cast<std::size_t>(slot)];
        ASSERT_EQ(lease->id(), first_id + slot);
        given_ids.push_back(lease->id());
        back.push_back(std::move(lease));
      }
      failing_ids.assign(given_ids.begin(),
                         given_ids.begin() + static_cast<std::ptrdiff_t>(c.failing.size()));
      return_to_stripe(stripe, back);
      checking.store(true, std::memory_order_relaxed);
      worker w;
      w.run([&] {
        const home_stripe home(0);
        auto l = pool.try_get();
        if (c.target < 0) {
          EXPECT_EQ(l.error(), errc::exhausted);
        } else {
          ASSERT_TRUE(l) << l.error().message();
          EXPECT_EQ((*l)->id(), given_ids.back());
        }
      });
      EXPECT_EQ(checked, given_ids);
    }
  }
};

TEST_F(IdleStripesCheckTest, AGetWhoseCheckFailsGoesOnWithTheNextSlotOfTheOtherStripe) {
  const idle_stripes two(2);
  std::atomic<bool> checking{false};
  std::vector<int> checked;  // by the worker's get only
  auto cfg = config(128);
  cfg.health_check = [&](tracked_conn& c) {
    // relaxed: set before the worker's job is queued, which synchronizes with it.
    if (!checking.load(std::memory_order_relaxed)) return true;
    checked.push_back(c.id());
    return c.id() != 0 && c.id() != 1;
  };
  auto pool = make(std::move(cfg));
  ASSERT_NO_FATAL_FAILURE(open_idle_in_stripe(pool, 128, 1));
  checking.store(true, std::memory_order_relaxed);
  worker w;
  w.run([&] {
    const home_stripe home(0);
    auto l = pool.try_get();
    ASSERT_TRUE(l) << l.error().message();
    EXPECT_EQ((*l)->id(), 2);
  });
  EXPECT_EQ(checked, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(pool.stats().idle, 126u);  // two closed; the lease is back
}

// The full walk resumes where it found the connection whose check failed: in its stripe, past it.
// Every connection listed in stripe 1 but slot 9's, which a worker holds. A get from stripe 0
// takes slot 0 (its check fails), then walks: stripe 0 is empty, stripe 1 gives slot 1, and while
// slot 1's check runs (it fails too) slot 9 comes back into stripe 0. The walk goes on in stripe 1
// with slot 2; one that resumed at slot 1's index in stripe 0's positions would take slot 9.
TEST_F(IdleStripesCheckTest, AWalkResumesInTheStripeWhereItFoundTheFailedConnection) {
  const idle_stripes two(2);
  std::atomic<bool> checking{false};
  std::vector<int> checked;  // by the worker's get only
  worker returner;
  std::vector<lease_type> held;
  auto cfg = config(128);
  cfg.health_check = [&](tracked_conn& c) {
    // relaxed: set before the worker's job is queued, which synchronizes with it.
    if (!checking.load(std::memory_order_relaxed)) return true;
    checked.push_back(c.id());
    if (c.id() == 1) returner.run([&] { return_to_stripe(0, held); });  // slot 9, into stripe 0
    return c.id() != 0 && c.id() != 1;
  };
  auto pool = make(std::move(cfg));
  ASSERT_NO_FATAL_FAILURE(open_idle_in_stripe(pool, 128, 1));
  const std::vector<int> taken = take_from_stripe(returner, pool, 1, 10, held);  // slots 0..9
  ASSERT_EQ(taken.size(), 10u);
  ASSERT_EQ(taken[9], 9);
  returner.run([&] {
    std::vector<lease_type> back(std::make_move_iterator(held.begin()),
                                 std::make_move_iterator(held.begin() + 9));
    held.erase(held.begin(), held.begin() + 9);
    return_to_stripe(1, back);  // slots 0..8 into stripe 1 again; slot 9 stays lent
  });
  ASSERT_EQ(held.size(), 1u);
  checking.store(true, std::memory_order_relaxed);
  worker w;
  w.run([&] {
    const home_stripe home(0);
    auto l = pool.try_get();
    ASSERT_TRUE(l) << l.error().message();
    EXPECT_EQ((*l)->id(), 2);
  });
  EXPECT_EQ(checked, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(pool.stats().idle, 126u);  // two closed; slot 9 and the lease are back
}

// Pools whose stripes have full lines of 8 words in the bitmap, for the tests of the walks that
// pass over empty lines (first_listed_word()): 1 100 slots in one stripe (18 words: two full lines
// and 2 words more), and 1 200 in two stripes (19 words a stripe) with the connections given back
// into stripe 1, so that a walk first passes all of stripe 0 and then reads stripe 1's lines at
// its offset.
struct bitmap_layout {
  std::size_t size;
  std::uint32_t stripes;
  int stripe;  // the one the connections are given back into
};
constexpr bitmap_layout full_line_layouts[] = {{1100, 1, 0}, {1200, 2, 1}};

// The full walk passes over empty words a line (8 words) at a time (first_listed_word()). Every
// connection is lent but those a case gives back; checks fail on the `failing` ones, the first of
// which the lean walk takes, so that the get goes on through the full walk from the start (and
// resumes past each failing one). It must find `target` wherever it is: at the start or the end of
// a line, in the words after the last full line, in the word it resumes in, or nowhere, in both
// layouts above.
TEST_F(IdleStripesCheckTest, TheFullWalkFindsAConnectionPastEmptyLinesOfTheBitmap) {
  for (const bitmap_layout lay : full_line_layouts) {
    const int last = static_cast<int>(lay.size) - 1;
    const std::vector<walk_case> cases = {
        {{0}, 512},         // word 8: the first of the second line
        {{0}, 1023},        // word 15: the last of the second line
        {{0}, 1024},        // word 16: the first after the last full line
        {{0}, last},        // the last slot
        {{0, 600}, 601},    // resumes in word 9 and takes the next bit of that word
        {{0, 600}, 700},    // resumes in word 9 and finds word 10, in the same line
        {{0, 600}, 1050},   // resumes mid-line, passes the rest of it and finds word 16
        {{0, 1023}, last},  // resumes at word 16, after the last full line
        {{0, 700}, -1},     // nothing past slot 700
    };
    SCOPED_TRACE(testing::Message() << lay.size << " slots in " << lay.stripes << " stripes");
    const idle_stripes pinned(lay.stripes);
    ASSERT_NO_FATAL_FAILURE(full_walk_cases(lay.size, lay.stripe, cases));
  }
}

// has_takeable_idle() (pool_core.hpp) walks the bitmap as the full walk does, a line at a time,
// with relaxed loads: a keyed get whose dial waits for a global token asks it of its key's sub-pool,
// and a connection of that key given back ends the dial (dial_not_needed) and goes to the get.
// Every global token held by connections of the key but `target`'s; the get's dial waits (its
// dial_timeout, 30 s, is past the test's patience), `target` is given back, and the get must take
// it: in the second line of the bitmap, at the last word of a line, after the last full line. The
// same two layouts as the full walk's test above.
TEST(IdleStripesKeyedTest, ADialWaitingForATokenFindsAConnectionPastEmptyLinesOfTheBitmap) {
  using keyed = netpool::keyed_pool<int, tracked_conn>;
  for (const bitmap_layout lay : full_line_layouts) {
    SCOPED_TRACE(testing::Message() << lay.size << " slots in " << lay.stripes << " stripes");
    const idle_stripes pinned(lay.stripes);
    netpool::test::connection_registry registry;
    netpool::test::factory_control factory(registry);
    netpool::keyed_pool_config<int, tracked_conn> cfg;
    cfg.make_config = [&factory, &lay](const int&) {
      netpool::pool_config<tracked_conn> c;
      c.factory = factory.function();
      c.max_size = lay.size;
      c.dial_timeout = 30s;
      return c;
    };
    cfg.per_key_max = lay.size;
    cfg.global_max = lay.size - 16;  // below per_key_max: the key has room, the dial waits for a token
    auto created = keyed::create(std::move(cfg));
    ASSERT_TRUE(created) << created.error().message();
    keyed pools = std::move(*created);
    // held[k]: slot k. Each get dials into the lowest free slot, on its own thread (no deadline:
    // with one, a dialer thread may dial, and a connection may go to another get than the one whose
    // slot it was dialed into).
    std::vector<lease_type> held;
    for (std::size_t k = 0; k < lay.size - 16; ++k) {
      auto l = pools.get(0);
      ASSERT_TRUE(l) << l.error().message();
      ASSERT_EQ((*l)->id(), static_cast<int>(k));
      held.push_back(std::move(*l));
    }
    for (const std::size_t target : {std::size_t{520}, std::size_t{1023}, lay.size - 20}) {
      SCOPED_TRACE(testing::Message() << "slot " << target);
      auto getter = netpool::test::run_async([&] { return pools.get(0); });
      ASSERT_TRUE(netpool::test::wait_for([&] { return pools.stats().global_waiters == 1; }));
      std::vector<lease_type> back;
      back.push_back(std::move(held[target]));
      return_to_stripe(lay.stripe, back);
      ASSERT_TRUE(netpool::test::ready_within(getter)) << "the dial waited beside an idle connection";
      auto got = getter.get();
      ASSERT_TRUE(got) << got.error().message();
      EXPECT_EQ((*got)->id(), static_cast<int>(target));
      held[target] = std::move(*got);
    }
    EXPECT_EQ(registry.made(), static_cast<long>(lay.size - 16)) << "a connection was dialed";
    held.clear();
  }
}

}  // namespace
