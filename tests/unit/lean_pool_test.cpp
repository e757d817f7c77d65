// lean_pool only: min_size dialed once at creation and never replenished, no background thread.
// (Everything it shares with pool is covered by the typed tests in pool_test.cpp; its
// configuration limits by config_test.cpp.)
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::test::lean;
using netpool::test::std_pool;
using netpool::test::tracked_lease;
using netpool::test::wait_for;

class LeanPoolTest : public netpool::test::pool_fixture<lean> {};

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

TEST_F(LeanPoolTest, MinSizeIsDialedAtCreation) {
  auto cfg = config(4);
  cfg.min_size = 3;
  auto pool = make(std::move(cfg));
  // No waiting: create() itself dialed them.
  const auto s = pool.stats();
  EXPECT_EQ(s.idle, 3u);
  EXPECT_EQ(s.active, 3u);
  EXPECT_EQ(s.min, 3u);
  EXPECT_EQ(s.dials, 3u);
  EXPECT_EQ(pool.len(), 3u);
  auto l = pool.try_get();
  EXPECT_TRUE(l) << "a warm connection is available without dialing";
  EXPECT_EQ(factory.calls(), 3);
}

TEST_F(LeanPoolTest, MinSizeIsNotReplenished) {
  auto cfg = config(4);
  cfg.min_size = 2;
  auto pool = make(std::move(cfg));
  std::vector<tracked_lease> held;
  for (int i = 0; i < 2; ++i) {
    auto l = pool.try_get();
    ASSERT_TRUE(l);
    held.push_back(std::move(*l));
  }
  held[0].discard();
  held[1].discard();
  EXPECT_EQ(pool.stats().active, 0u);
  std::this_thread::sleep_for(100ms);  // nothing runs in the background
  EXPECT_EQ(pool.stats().active, 0u);
  EXPECT_EQ(factory.calls(), 2);
}

TEST_F(LeanPoolTest, FailedWarmUpDoesNotFailCreation) {
  factory.fail_with(std::make_error_code(std::errc::connection_refused));
  auto cfg = config(4);
  cfg.min_size = 3;
  auto created = lean::create(std::move(cfg));
  ASSERT_TRUE(created) << created.error().message();
  auto& pool = *created;
  const auto s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_GE(s.dial_failures, 1u);
  EXPECT_EQ(s.dials, s.dial_failures);
  factory.succeed();
  // After the dial backoff (10-20 ms by default) the pool dials again.
  EXPECT_TRUE(wait_for([&] { return static_cast<bool>(pool.get()); })) << "the pool works once dials succeed";
}

TEST_F(LeanPoolTest, ThrowingFactoryDuringWarmUpDoesNotFailCreation) {
  factory.throw_always();
  auto cfg = config(2);
  cfg.min_size = 2;
  auto created = lean::create(std::move(cfg));
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(created->stats().active, 0u);
}

// The standard pool runs one maintainer thread; lean_pool runs none.
#if defined(__SANITIZE_THREAD__)
#define NETPOOL_TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NETPOOL_TEST_UNDER_TSAN 1
#endif
#endif

TEST_F(LeanPoolTest, HasNoBackgroundThread) {
#ifdef NETPOOL_TEST_UNDER_TSAN
  GTEST_SKIP() << "ThreadSanitizer starts threads of its own; the count would not be the pool's";
#endif
  const std::size_t before = thread_count();
  {
    auto pool = make(4);
    EXPECT_EQ(thread_count(), before);
    auto l = pool.get();
    ASSERT_TRUE(l);
    EXPECT_EQ(thread_count(), before);
  }
  {
    auto cfg = config(4);
    auto standard = std_pool::create(std::move(cfg)).value();
    EXPECT_EQ(thread_count(), before + 1) << "the comparison: pool has its maintainer";
  }
  EXPECT_TRUE(wait_for([&] { return thread_count() == before; })) << "the maintainer was not joined";
}

// pool with background_maintenance = false starts no thread at all: not the maintainer, and not the
// dialer threads that a get with a deadline sooner than dial_timeout (or a stop token) would hand
// its dial to. The comparison shows those gets do start one when maintenance is on.
TEST_F(LeanPoolTest, PoolWithoutBackgroundMaintenanceStartsNoThreadNotEvenToDial) {
#ifdef NETPOOL_TEST_UNDER_TSAN
  GTEST_SKIP() << "ThreadSanitizer starts threads of its own; the count would not be the pool's";
#endif
  const std::size_t before = thread_count();
  for (const bool background : {false, true}) {
    SCOPED_TRACE(background ? "background_maintenance = true" : "background_maintenance = false");
    auto cfg = config(4);
    cfg.background_maintenance = background;
    cfg.dial_timeout = 60s;  // longer than the gets' deadlines: with threads, the dials are posted
    auto pool = std_pool::create(std::move(cfg)).value();
    auto a = pool.get_for(30s);
    ASSERT_TRUE(a) << a.error().message();
    std::stop_source stop;
    auto b = pool.get(stop.get_token());
    ASSERT_TRUE(b) << b.error().message();
    if (background) {
      EXPECT_GE(thread_count(), before + 2) << "the maintainer and at least one dialer";
      EXPECT_LE(thread_count(), before + 3) << "at most min(max_connecting, max_size) dialers";
    } else {
      EXPECT_EQ(thread_count(), before);
    }
  }
  EXPECT_TRUE(wait_for([&] { return thread_count() == before; })) << "threads were not joined";
}

}  // namespace
