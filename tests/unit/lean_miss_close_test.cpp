// A miss get (a thread with no hint for the pool) that starts once close() has begun, while close()
// is still flagging the slots one by one (held here inside its first on_close), says pool_closed.
// The lean miss path (acquire_slow()) once took any idle slot not yet flagged: a pool that already
// said closed() lent a connection. Found by review 10; both tests failed on 4bf4e22.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"

namespace {

using netpool::errc;
using netpool::test::patience;
using netpool::test::ready_within;
using netpool::test::run_async;
using netpool::test::tracked_conn;
using netpool::test::tracked_lease;

template <class P>
using LeanMissCloseTest = netpool::test::pool_fixture<P>;
TYPED_TEST_SUITE(LeanMissCloseTest, netpool::test::both_pools, netpool::test::pool_names);

// Holds close() inside its first on_close call until let_go().
struct close_gate {
  std::mutex m;
  std::condition_variable cv;
  bool entered = false;
  bool open = false;
  void hook() {
    std::unique_lock lock(m);
    if (entered) return;  // only the first close blocks
    entered = true;
    cv.notify_all();
    cv.wait_for(lock, patience, [this] { return open; });
  }
  bool wait_entered() {
    std::unique_lock lock(m);
    return cv.wait_for(lock, patience, [this] { return entered; });
  }
  void let_go() {
    {
      std::lock_guard lock(m);
      open = true;
    }
    cv.notify_all();
  }
};

// A get that starts once closed() is true, from a thread with no hint, must say pool_closed
// (pool.hpp: "get() returns pool_closed from now on"; acquire_or_wait() tests is_closed() first).
TYPED_TEST(LeanMissCloseTest, AMissGetThatStartsAfterClosedIsTrueSaysPoolClosed) {
  constexpr std::size_t max = 8;
  close_gate gate;
  auto config = this->config(max);
  config.on_close = [&gate](tracked_conn&, netpool::close_reason) { gate.hook(); };
  auto pool = TypeParam::create(std::move(config)).value();
  {
    std::vector<tracked_lease> opened;
    for (std::size_t i = 0; i < max; ++i) {
      auto l = pool.get_for(patience);
      ASSERT_TRUE(l) << l.error().message();
      opened.push_back(std::move(*l));
    }
  }  // all idle now, all listed
  auto closer = run_async([&pool] { pool.close(); });
  ASSERT_TRUE(gate.wait_entered());  // close() is closing slot 0: slots 1..7 not flagged yet
  ASSERT_TRUE(pool.closed());
  // A new thread: no hint, so its get is a miss.
  auto got = run_async([&pool]() -> std::error_code {
    auto l = pool.try_get();
    if (l) return {};  // served; the lease goes back (and is closed) here
    return l.error();
  });
  const bool got_ready = ready_within(got);
  gate.let_go();
  ASSERT_TRUE(ready_within(closer));
  ASSERT_TRUE(got_ready);
  EXPECT_EQ(got.get(), make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent a connection (lean miss path)";
}

// The same through get_for() (acquire_mode::wait).
TYPED_TEST(LeanMissCloseTest, AMissGetForThatStartsAfterClosedIsTrueSaysPoolClosed) {
  constexpr std::size_t max = 8;
  close_gate gate;
  auto config = this->config(max);
  config.on_close = [&gate](tracked_conn&, netpool::close_reason) { gate.hook(); };
  auto pool = TypeParam::create(std::move(config)).value();
  {
    std::vector<tracked_lease> opened;
    for (std::size_t i = 0; i < max; ++i) {
      auto l = pool.get_for(patience);
      ASSERT_TRUE(l) << l.error().message();
      opened.push_back(std::move(*l));
    }
  }
  auto closer = run_async([&pool] { pool.close(); });
  ASSERT_TRUE(gate.wait_entered());
  ASSERT_TRUE(pool.closed());
  auto got = run_async([&pool]() -> std::error_code {
    auto l = pool.get_for(std::chrono::milliseconds(100));
    if (l) return {};
    return l.error();
  });
  const bool got_ready = ready_within(got);
  gate.let_go();
  ASSERT_TRUE(ready_within(closer));
  ASSERT_TRUE(got_ready);
  EXPECT_EQ(got.get(), make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent a connection (lean miss path)";
}

}  // namespace
