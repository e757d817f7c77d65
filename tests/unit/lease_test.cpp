// lease<Conn>: the RAII borrow. Empty leases, moves (within and across threads), assignment over a
// lease that holds a connection, returning to the wrong pool, and leases that outlive their pool.
// Every test runs on both pools; the fixture checks that each connection is closed exactly once.
#include "netpool/lease.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::errc;
using netpool::test::thread_group;
using netpool::test::tracked_conn;
using netpool::test::tracked_lease;

static_assert(!std::is_copy_constructible_v<tracked_lease>);
static_assert(!std::is_copy_assignable_v<tracked_lease>);
static_assert(std::is_nothrow_move_constructible_v<tracked_lease>);
static_assert(std::is_nothrow_move_assignable_v<tracked_lease>);
static_assert(!std::is_convertible_v<tracked_lease, bool>, "operator bool is explicit");
// Only the pool can make a non-empty lease: the constructor it uses needs a key nobody else can
// make, and result<lease>'s in-place constructor (the get fast path) goes through the same key.
static_assert(!std::is_default_constructible_v<netpool::detail::lease_key<tracked_conn>>);
static_assert(!std::is_constructible_v<tracked_lease, netpool::detail::pool_core<tracked_conn>*,
                                       tracked_conn*, void*, std::uint64_t>);
static_assert(
    !std::is_constructible_v<netpool::result<tracked_lease>, std::in_place_t,
                             netpool::detail::pool_core<tracked_conn>*, tracked_conn*, void*, std::uint64_t>);

TEST(LeaseTest, DefaultConstructedIsEmpty) {
  tracked_lease l;
  EXPECT_FALSE(l);
  EXPECT_TRUE(l.empty());
  EXPECT_EQ(l.release(), errc::empty_lease);
  EXPECT_EQ(l.discard(), errc::empty_lease);
}

#ifndef NDEBUG
TEST(LeaseDeathTest, DereferencingAnEmptyLeaseAsserts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  tracked_lease l;
  EXPECT_DEATH((void)*l, "empty");
  EXPECT_DEATH((void)l.get(), "empty");
  EXPECT_DEATH((void)l->id(), "empty");
}
#else
TEST(LeaseDeathTest, DereferencingAnEmptyLeaseAsserts) {
  GTEST_SKIP() << "assertions are compiled out (NDEBUG)";
}
#endif

template <class P>
using LeaseOnPoolTest = netpool::test::pool_fixture<P>;
TYPED_TEST_SUITE(LeaseOnPoolTest, netpool::test::both_pools, netpool::test::pool_names);

#ifndef NDEBUG
TYPED_TEST(LeaseOnPoolTest, DereferencingAMovedFromOrReturnedLeaseAsserts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto pool = this->make(2);
  auto a = pool.get();
  ASSERT_TRUE(a);
  tracked_lease b = std::move(*a);
  EXPECT_DEATH((void)(*a)->id(), "empty");  // NOLINT(bugprone-use-after-move): the point of the test
  b.release();
  EXPECT_DEATH((void)b->id(), "empty");
}
#endif

// A successful put returns exactly std::error_code{} (value 0, system category), not merely a
// falsy code: users compare it with ==, and the put path builds it without calling
// std::system_category() (detail::success()).
TYPED_TEST(LeaseOnPoolTest, ASuccessfulPutIsTheDefaultErrorCode) {
  auto pool = this->make(2);
  auto a = pool.get();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->release(), std::error_code{});
  auto b = pool.get();  // the fast path: the slot this thread just returned
  ASSERT_TRUE(b);
  EXPECT_EQ(pool.put(std::move(*b)), std::error_code{});
  EXPECT_EQ(pool.stats().idle, 1u);
}

TYPED_TEST(LeaseOnPoolTest, PutOfAnEmptyLeaseIsRefused) {
  auto pool = this->make(2);
  EXPECT_EQ(pool.put(tracked_lease{}), errc::empty_lease);
  EXPECT_EQ(pool.put_with_error(tracked_lease{}), errc::empty_lease);
  EXPECT_EQ(pool.stats().active, 0u);
}

TYPED_TEST(LeaseOnPoolTest, PutOfAMovedFromLeaseIsRefused) {
  auto pool = this->make(2);
  auto a = pool.get();
  ASSERT_TRUE(a);
  tracked_lease kept = std::move(*a);
  // NOLINTNEXTLINE(bugprone-use-after-move): putting a moved-from lease is the case under test
  EXPECT_EQ(pool.put(std::move(*a)), errc::empty_lease);
  EXPECT_EQ(pool.put_with_error(std::move(*a)), errc::empty_lease);
  EXPECT_TRUE(kept);
  EXPECT_EQ(pool.stats().in_use, 1u) << "the moved-to lease still holds it";
  EXPECT_FALSE(pool.put(std::move(kept)));
  // NOLINTNEXTLINE(bugprone-use-after-move): returning twice is the case under test
  EXPECT_EQ(pool.put(std::move(kept)), errc::empty_lease) << "returning twice";
  EXPECT_EQ(pool.len(), 1u);
}

TYPED_TEST(LeaseOnPoolTest, PutToTheWrongPoolLeavesTheLeaseIntact) {
  auto a = this->make(2);
  auto b = this->make(2);
  auto l = a.get();
  ASSERT_TRUE(l);
  const int id = (*l)->id();
  EXPECT_EQ(b.put(std::move(*l)), errc::wrong_pool);
  EXPECT_EQ(b.put_with_error(std::move(*l)), errc::wrong_pool);
  ASSERT_TRUE(*l) << "the lease still holds its connection";
  EXPECT_EQ((*l)->id(), id);
  (*l)->touch();
  EXPECT_EQ(this->registry.close_count(id), 0);
  EXPECT_EQ(b.stats().active, 0u);
  EXPECT_EQ(b.len(), 0u);

  EXPECT_FALSE(a.put(std::move(*l))) << "returned properly to its own pool";
  EXPECT_EQ(a.len(), 1u);
  EXPECT_EQ(a.stats().in_use, 0u);
  auto again = a.get();
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->id(), id);
}

TYPED_TEST(LeaseOnPoolTest, MoveConstructionTransfersOwnership) {
  auto pool = this->make(2);
  auto a = pool.get();
  ASSERT_TRUE(a);
  tracked_conn* conn = &**a;
  tracked_lease b(std::move(*a));
  EXPECT_FALSE(*a);  // NOLINT(bugprone-use-after-move)
  ASSERT_TRUE(b);
  EXPECT_EQ(&*b, conn) << "the same connection object, not a copy";
  EXPECT_EQ(pool.stats().in_use, 1u);
}

TYPED_TEST(LeaseOnPoolTest, AssigningOverALeaseReturnsTheFirst) {
  auto pool = this->make(3);
  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a && b);
  const int a_id = (*a)->id();
  const int b_id = (*b)->id();
  *a = std::move(*b);
  EXPECT_EQ((*a)->id(), b_id);
  EXPECT_FALSE(*b);  // NOLINT(bugprone-use-after-move)
  auto s = pool.stats();
  EXPECT_EQ(s.in_use, 1u);
  EXPECT_EQ(s.idle, 1u) << "the connection a held went back";
  EXPECT_EQ(this->registry.close_count(a_id), 0) << "returned, not closed";

  *a = tracked_lease{};  // assigning an empty lease returns it too
  s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.idle, 2u);
}

TYPED_TEST(LeaseOnPoolTest, AssigningOverALeaseAfterCloseClosesTheFirst) {
  auto pool = this->make(3);
  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a && b);
  const int a_id = (*a)->id();
  pool.close();
  *a = std::move(*b);
  EXPECT_EQ(this->registry.close_count(a_id), 1);
  EXPECT_TRUE(*a);
}

TYPED_TEST(LeaseOnPoolTest, ALeaseCanMoveToAnotherThreadAndBeReturnedThere) {
  auto pool = this->make(1);
  auto l = pool.get();
  ASSERT_TRUE(l);
  const int id = (*l)->id();
  std::thread other([lease = std::move(*l), &pool]() mutable {
    lease->touch();
    EXPECT_FALSE(pool.put(std::move(lease)));
  });
  other.join();
  EXPECT_EQ(pool.len(), 1u);
  auto back = pool.get_for(1s);  // max_size 1: only if it really came back
  ASSERT_TRUE(back);
  EXPECT_EQ((*back)->id(), id);
  EXPECT_EQ((*back)->uses(), 1u);
}

// Ping-pong one lease between threads many times: each hand-over must keep the connection.
TYPED_TEST(LeaseOnPoolTest, ALeasePassedAlongAChainOfThreads) {
  auto pool = this->make(1);
  auto first = pool.get();
  ASSERT_TRUE(first);
  tracked_lease l = std::move(*first);
  for (int i = 0; i < 20; ++i) {
    std::thread t([&l] {
      tracked_lease mine = std::move(l);
      mine->touch();
      l = std::move(mine);
    });
    t.join();
  }
  ASSERT_TRUE(l);
  EXPECT_EQ(l->uses(), 20u);
  EXPECT_EQ(pool.stats().in_use, 1u);
}

// The pool goes away while several threads still hold leases and return them at the same time.
TYPED_TEST(LeaseOnPoolTest, LeasesReturnedConcurrentlyAfterThePoolIsDestroyed) {
  constexpr int n = 8;
  std::optional<TypeParam> pool(this->make(n));
  std::vector<tracked_lease> leases;
  for (int i = 0; i < n; ++i) {
    auto l = pool->get();
    ASSERT_TRUE(l);
    leases.push_back(std::move(*l));
  }
  std::atomic<bool> go{false};
  std::atomic<int> bad{0};
  {
    thread_group threads;
    for (int i = 0; i < n; ++i) {
      threads.spawn([&, i, l = std::move(leases[static_cast<std::size_t>(i)])]() mutable {
        while (!go.load()) std::this_thread::yield();
        l->touch();
        const std::error_code ec = (i % 2 == 0) ? l.release() : l.discard();
        // Racing with the destruction: either it got back in time (ok) or the pool was closed.
        if (ec && ec != errc::pool_closed) bad.fetch_add(1);
      });
    }
    go.store(true);
    pool.reset();
  }
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(this->registry.live(), 0);
}

// A connection type of the user's with `bool is_open() const`, which its borrower can close and
// whose is_open() is not noexcept (and throws, once, when `throw_on_ask` is set).
class closable_conn {
 public:
  closable_conn(std::atomic<int>& live, std::atomic<bool>& throw_on_ask)
      : live_(&live), throw_(&throw_on_ask) {
    live_->fetch_add(1);
  }
  closable_conn(closable_conn&& other) noexcept
      : live_(std::exchange(other.live_, nullptr)),
        throw_(other.throw_),
        open_(std::exchange(other.open_, false)) {}
  closable_conn& operator=(closable_conn&&) = delete;
  closable_conn(const closable_conn&) = delete;
  closable_conn& operator=(const closable_conn&) = delete;
  ~closable_conn() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }
  bool is_open() const {  // NOLINT(modernize-use-nodiscard): the shape the pool looks for
    if (throw_->exchange(false)) throw std::runtime_error("is_open");  // once, then answers
    return open_;
  }
  void shut() noexcept { open_ = false; }

 private:
  std::atomic<int>* live_;
  std::atomic<bool>* throw_;
  bool open_ = true;
};

// A returned connection that says it is not open is discarded, as a discard() would do
// (closed_error), on both pools and whichever way it comes back; one whose is_open() throws on
// the put counts as not open (the put path is noexcept: a throw there would terminate), even if
// a second call would say open (the put asks once; it asked twice, and pooled it, before review
// 19's check).
TEST(LeaseClosedByItsBorrowerTest, IsDiscardedOnReturnAndAThrowingIsOpenCountsAsClosed) {
  std::atomic<int> live{0};
  std::atomic<bool> throw_on_ask{false};
  netpool::pool_config<closable_conn> cfg;
  cfg.factory = [&](auto) -> netpool::result<closable_conn> { return closable_conn(live, throw_on_ask); };
  cfg.max_size = 2;
  auto check = [&](auto pool) {
    {
      auto open = pool.get();
      ASSERT_TRUE(open);
    }
    EXPECT_EQ(pool.stats().idle, 1u) << "an open one goes back";
    {
      auto shut = pool.get();
      ASSERT_TRUE(shut);
      (*shut)->shut();
    }
    auto s = pool.stats();
    EXPECT_EQ(s.idle, 0u);
    EXPECT_EQ(s.active, 0u);
    EXPECT_EQ(s.closed_error, 1u);
    EXPECT_EQ(live.load(), 0);
    {
      auto shut = pool.get();
      ASSERT_TRUE(shut);
      (*shut)->shut();
      EXPECT_FALSE(pool.put(std::move(*shut)));
    }
    EXPECT_EQ(pool.stats().closed_error, 2u);
    {
      auto asked = pool.get();
      ASSERT_TRUE(asked);
      throw_on_ask.store(true);
    }
    EXPECT_FALSE(throw_on_ask.load()) << "the put never asked is_open()";
    s = pool.stats();
    EXPECT_EQ(s.closed_error, 3u);
    EXPECT_EQ(s.active, 0u);
    EXPECT_EQ(live.load(), 0);
    auto again = pool.get();
    ASSERT_TRUE(again);
    EXPECT_TRUE((*again)->is_open());
    EXPECT_EQ(pool.stats().dials, 4u);
  };
  check(netpool::pool<closable_conn>::create(cfg).value());
  check(netpool::lean_pool<closable_conn>::create(std::move(cfg)).value());
  EXPECT_EQ(live.load(), 0);
}

}  // namespace
