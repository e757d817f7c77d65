// A miss get (a thread with no hint for the pool) that starts once close() has begun, while close()
// is still flagging the slots one by one (held here inside its first on_close), says pool_closed.
// The lean miss path (acquire_slow()) once took any idle slot not yet flagged: a pool that already
// said closed() lent a connection. Found by review 10; both tests failed on 4bf4e22.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using netpool::errc;
using netpool::test::ready_within;
using netpool::test::run_async;
using netpool::test::tracked_conn;
using netpool::test::wait_for;

template <class P>
class LeanMissCloseTest : public netpool::test::pool_fixture<P> {
 protected:
  // Opens 8 connections (all idle and listed), starts close() and holds it in its first on_close
  // (slot 0; slots 1..7 not flagged yet), then runs `get` on a new thread, which has no hint (a
  // miss), and returns what it got: empty if it was lent a connection.
  template <class Get>
  std::error_code miss_get_during_close(Get get) {
    constexpr std::size_t max = 8;
    std::atomic<bool> closing{false};  // close() is in its first on_close
    std::atomic<bool> let_go{false};
    auto config = this->config(max);
    config.on_close = [&](tracked_conn&, netpool::close_reason) {
      if (closing.exchange(true)) return;  // only the first close is held
      (void)wait_for([&] { return let_go.load(); });
    };
    auto pool = P::create(std::move(config)).value();
    netpool::test::open_idle(pool, max);
    if (::testing::Test::HasFatalFailure()) return make_error_code(errc::dial_failed);
    auto closer = run_async([&pool] { pool.close(); });
    EXPECT_TRUE(wait_for([&] { return closing.load(); }));
    EXPECT_TRUE(pool.closed());
    auto got = run_async([&pool, &get]() -> std::error_code {
      auto l = get(pool);
      return l ? std::error_code{} : l.error();  // a lease goes back (and is closed) here
    });
    const bool got_ready = ready_within(got);
    let_go.store(true);
    EXPECT_TRUE(ready_within(closer));
    EXPECT_TRUE(got_ready);
    return got_ready ? got.get() : make_error_code(errc::timeout);
  }
};
TYPED_TEST_SUITE(LeanMissCloseTest, netpool::test::both_pools, netpool::test::pool_names);

// A get that starts once closed() is true, from a thread with no hint, must say pool_closed
// (pool.hpp: "get() returns pool_closed from now on"; acquire_or_wait() tests is_closed() first).
TYPED_TEST(LeanMissCloseTest, AMissGetThatStartsAfterClosedIsTrueSaysPoolClosed) {
  EXPECT_EQ(this->miss_get_during_close([](TypeParam& pool) { return pool.try_get(); }),
            make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent a connection (lean miss path)";
}

// The same through get_for() (acquire_mode::wait).
TYPED_TEST(LeanMissCloseTest, AMissGetForThatStartsAfterClosedIsTrueSaysPoolClosed) {
  EXPECT_EQ(this->miss_get_during_close(
                [](TypeParam& pool) { return pool.get_for(std::chrono::milliseconds(100)); }),
            make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent a connection (lean miss path)";
}

}  // namespace
