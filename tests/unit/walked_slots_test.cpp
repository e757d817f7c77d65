// The miss path first tries the slots its thread last took through the walk (thread_walked in
// pool_core.hpp): a thread that holds up to walked_slots_per_way connections at once gets its own
// back without walking the idle bitmap, which every CPU writes. These tests pin down what that
// cache may and may not do: serve this thread's own slots ahead of lower idle ones, never hand
// out a closed, freed or foreign slot, and never hide an idle connection from other threads.
//
// Each step runs on a named worker thread, because the cache (like the hint) is per thread.
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "manual_clock.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "worker_thread.hpp"

namespace {

using netpool::errc;
using netpool::test::tracked_conn;
using netpool::test::worker;
using lease_type = netpool::lease<tracked_conn>;

template <class P>
class WalkedSlotsTest : public netpool::test::pool_fixture<P> {};
TYPED_TEST_SUITE(WalkedSlotsTest, netpool::test::both_pools, netpool::test::pool_names);

// Takes n connections with try_get(), in order, and returns them (they go back in that order when
// the vector is destroyed).
template <class P>
std::vector<lease_type> take(P& pool, std::size_t n) {
  std::vector<lease_type> taken;
  for (std::size_t i = 0; i < n; ++i) {
    auto l = pool.try_get();
    EXPECT_TRUE(l) << "get " << i << ": " << l.error().message();
    if (!l) break;
    taken.push_back(std::move(*l));
  }
  return taken;
}

std::set<int> ids_of(const std::vector<lease_type>& leases) {
  std::set<int> ids;
  for (const auto& l : leases) ids.insert(l->id());
  return ids;
}

// Another thread holds the two lowest slots while `owner` walks to four higher ones; once the
// low slots are idle again, the walk alone would take them (lowest first), but the owner gets its
// own four back. Fails without the cache: the owner then gets slots 0 and 1 and only two of its own.
TYPED_TEST(WalkedSlotsTest, AThreadGetsBackTheSlotsItWalkedToAheadOfLowerIdleOnes) {
  auto pool = this->make(8);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 8));
  worker other;
  worker owner;
  std::optional<std::vector<lease_type>> low;
  other.run([&] { low.emplace(take(pool, 2)); });
  ASSERT_EQ(low->size(), 2u);
  const std::set<int> first = owner.run([&] { return ids_of(take(pool, 4)); });  // walked, returned
  ASSERT_EQ(first.size(), 4u);
  for (int id : ids_of(*low)) EXPECT_EQ(first.count(id), 0u);
  other.run([&] { low.reset(); });  // the two lowest slots are idle again
  const std::set<int> again = owner.run([&] { return ids_of(take(pool, 4)); });
  EXPECT_EQ(again, first);
  EXPECT_EQ(pool.stats().idle, 8u);
  EXPECT_EQ(pool.stats().in_use, 0u);
}

// The cached slots stay visible to everyone: taken from the cache and returned, they are still
// listed, and a fresh thread's walk finds every idle connection. The other thread's walk in the
// middle unlists the owner's held slots (it meets them lent); the owner's puts list them again.
TYPED_TEST(WalkedSlotsTest, SlotsTakenFromTheCacheStayVisibleToOtherThreads) {
  auto pool = this->make(8);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 8));
  worker owner;
  owner.run([&] { (void)take(pool, 4); });  // walks: the cache now holds four slots
  std::optional<std::vector<lease_type>> held;
  owner.run([&] { held.emplace(take(pool, 4)); });  // from the hint and the cache
  ASSERT_EQ(held->size(), 4u);
  {
    worker scanner;  // walks past the owner's four (unlisting them) and takes the other four
    const std::size_t got = scanner.run([&] { return take(pool, 4).size(); });
    EXPECT_EQ(got, 4u);
  }
  owner.run([&] { held.reset(); });
  const std::size_t found = netpool::test::idle_found_by_a_fresh_thread(pool);
  EXPECT_EQ(found, 8u);
}

// A cached slot whose connection was discarded (the slot freed), or closed by close() (by then
// freed too), is never handed out from the cache. A slot that is idle but flagged (in transit) is
// WalkedSlotRaceTest's.
TYPED_TEST(WalkedSlotsTest, AFreedOrClosedSlotIsNotTakenFromTheCache) {
  auto pool = this->make(4);
  ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(pool, 4));
  worker owner;
  owner.run([&] {
    auto leases = take(pool, 4);  // all four walked: all cached
    ASSERT_EQ(leases.size(), 4u);
    leases[0].discard();  // freed
    leases[1].discard();
  });
  EXPECT_EQ(pool.stats().active, 2u);
  owner.run([&] {
    auto leases = take(pool, 2);  // the two still open, from the hint and the cache
    EXPECT_EQ(leases.size(), 2u);
    auto none = pool.try_get();  // the freed slots are cached but not idle: try_get() dials none
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error(), errc::exhausted);
  });
  pool.close();
  owner.run([&] {
    auto l = pool.try_get();
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error(), errc::pool_closed);
  });
  EXPECT_EQ(pool.stats().active, 0u);
}

// Pools share the thread's cache ways (way = pool id % 8, ids consecutive): one thread that moves
// between two live pools of the same way (b is the eighth pool made after a), each destroyed and
// replaced every round (possibly at the same address), only ever gets each pool's own connections.
TYPED_TEST(WalkedSlotsTest, AThreadMovingBetweenPoolsGetsOnlyEachPoolsOwnConnections) {
  worker owner;
  for (int round = 0; round < 20; ++round) {
    auto a = this->make(4);
    for (int i = 0; i < 7; ++i) (void)this->make(1);  // ids a + 1 .. a + 7, destroyed at once
    auto b = this->make(4);
    ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(a, 4));
    ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(b, 4));
    owner.run([&] {
      for (int i = 0; i < 3; ++i) {
        auto from_a = take(a, 3);
        auto from_b = take(b, 3);
        ASSERT_EQ(from_a.size(), 3u);
        ASSERT_EQ(from_b.size(), 3u);
        for (int id : ids_of(from_a)) EXPECT_EQ(ids_of(from_b).count(id), 0u);
        EXPECT_EQ(a.stats().in_use, 3u);
        EXPECT_EQ(b.stats().in_use, 3u);
      }
    });
    EXPECT_EQ(a.stats().idle, 4u);
    EXPECT_EQ(b.stats().idle, 4u);
  }
}

// A Standard pool with max_idle_time passes over cached slots idle past it: taken, each would be
// closed on this get, where the walk finds the lowest idle slot, the most recently used one. Here
// the owner's four cached slots (2-5) were returned at t = 0, the other thread's two (0, 1) at
// 90 ms, and the get runs at 100 ms with max_idle_time 100 ms. The owner's hint (slot 5) is
// closed on its fast path, as before the cache; then its miss must take slot 0, closing no other.
// Fails without the cache's idle-age test: the miss takes slot 2 and closes it (closed_idle 2).
// Deterministic: a manual clock, background_maintenance off.
class WalkedSlotsIdleTimeTest : public netpool::test::pool_fixture<netpool::test::std_pool> {
 protected:
  netpool::test::manual_clock clock;  // declared before the pools, which are test-body locals
};

TEST_F(WalkedSlotsIdleTimeTest, ACachedSlotIdlePastMaxIdleTimeIsPassedOver) {
  using namespace std::chrono_literals;
  auto cfg = config(8);
  cfg.clock = clock.function();
  cfg.background_maintenance = false;
  cfg.min_size = 8;  // maintain() advances the tick without closing anything
  cfg.max_idle_time = 100ms;
  auto pool = make(std::move(cfg));  // create() dials all 8 on this thread at t = 0: slots 0-7
  ASSERT_EQ(pool.stats().idle, 8u);
  worker other;
  worker owner;
  std::optional<std::vector<lease_type>> low;
  other.run([&] { low.emplace(take(pool, 2)); });  // slots 0 and 1
  ASSERT_EQ(low->size(), 2u);
  const std::set<int> cached = owner.run([&] { return ids_of(take(pool, 4)); });  // 2-5, back at 0
  ASSERT_EQ(cached.size(), 4u);
  clock.set(90ms);
  pool.maintain();  // tick 90: nothing closed (min_size covers all 8)
  const std::set<int> fresh = ids_of(*low);
  other.run([&] { low.reset(); });  // slots 0 and 1 idle since 90 ms
  clock.set(100ms);
  pool.maintain();  // tick 100: slots 2-7 idle for max_idle_time; still nothing closed
  ASSERT_EQ(pool.stats().closed_idle, 0u);
  ASSERT_FALSE(pool.set_min_size(0));  // from now on only the get's own checks close
  const int got = owner.run([&] {
    auto l = pool.try_get();
    EXPECT_TRUE(l) << l.error().message();
    return l ? (*l)->id() : -1;
  });
  EXPECT_EQ(fresh.count(got), 1u) << "the miss took connection " << got << ", not slot 0's or 1's";
  EXPECT_EQ(pool.stats().closed_idle, 1u) << "only the owner's hint (slot 5) is closed on the get";
}

}  // namespace
