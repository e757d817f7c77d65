// A get that starts once close() has begun, while close() is still at work on the slots (held
// here inside its first on_close), says pool_closed (pool.hpp: "get() returns pool_closed from
// now on").
// - A miss (a thread with no hint for the pool): the lean miss path (acquire_slow()) once took any
//   idle slot not yet flagged. Found by review 10; both tests failed on 4bf4e22.
// - A get on the thread's hint (the fast path, which never reads closed_): it took its hint slot
//   when close() flagged the slots one by one after setting closed_. close() now flags every slot
//   first. Found by review 19; both tests failed on 049bbdb.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"
#include "worker_thread.hpp"

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
  // (slot 0; before review 19's fix, slots 1..7 were not flagged yet), then runs `get` and returns
  // what it got: empty if it was lent a connection. On a new thread, which has no hint (a miss);
  // or, `on_hint`, on the thread that opened the connections, whose hint is the slot returned
  // last, slot 7.
  template <class Get>
  std::error_code get_during_close(Get get, bool on_hint = false) {
    constexpr std::size_t max = 8;
    std::atomic<bool> closing{false};  // close() is in its first on_close
    std::atomic<bool> let_go{false};
    auto config = this->config(max);
    config.on_close = [&](tracked_conn&, netpool::close_reason) {
      if (closing.exchange(true)) return;  // only the first close is held
      (void)wait_for([&] { return let_go.load(); });
    };
    auto pool = P::create(std::move(config)).value();
    netpool::test::worker opener;
    opener.run([&pool] { netpool::test::open_idle(pool, max); });
    if (pool.stats().idle != max) return make_error_code(errc::dial_failed);
    auto closer = run_async([&pool] { pool.close(); });
    EXPECT_TRUE(wait_for([&] { return closing.load(); }));
    EXPECT_TRUE(pool.closed());
    auto get_once = [&pool, &get]() -> std::error_code {
      auto l = get(pool);
      return l ? std::error_code{} : l.error();  // a lease goes back (and is closed) here
    };
    auto got = on_hint ? opener.post(get_once) : run_async(get_once);
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
  EXPECT_EQ(this->get_during_close([](TypeParam& pool) { return pool.try_get(); }),
            make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent a connection (lean miss path)";
}

// The same through get_for() (acquire_mode::wait).
TYPED_TEST(LeanMissCloseTest, AMissGetForThatStartsAfterClosedIsTrueSaysPoolClosed) {
  EXPECT_EQ(
      this->get_during_close([](TypeParam& pool) { return pool.get_for(std::chrono::milliseconds(100)); }),
      make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent a connection (lean miss path)";
}

// A get on the thread's hint, after closed() is true, says pool_closed too: the hint slot (7)
// must already be flagged. Through try_get() and get_for().
TYPED_TEST(LeanMissCloseTest, AGetOnItsHintThatStartsAfterClosedIsTrueSaysPoolClosed) {
  EXPECT_EQ(this->get_during_close([](TypeParam& pool) { return pool.try_get(); }, true),
            make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent its hint slot (fast path)";
  EXPECT_EQ(this->get_during_close(
                [](TypeParam& pool) { return pool.get_for(std::chrono::milliseconds(100)); }, true),
            make_error_code(errc::pool_closed))
      << "a get that began after closed() was true was lent its hint slot (fast path)";
}

}  // namespace
