// pool_test_helpers.hpp — the fixture and small helpers the pool unit tests share.
//
//   template <class P> using MyTest = netpool::test::pool_fixture<P>;
//   TYPED_TEST_SUITE(MyTest, netpool::test::both_pools, netpool::test::pool_names);
//   TYPED_TEST(MyTest, Something) {
//     auto pool = this->make(2);                  // factory = this->factory, max_size 2
//     netpool::test::thread_group threads;        // joined at scope exit...
//     netpool::test::close_on_exit guard(pool);   // ...after the pool is closed (no hang on failure)
//   }                                             // TearDown: every connection closed exactly once
//
// Blocking helpers never assert tight timing: they wait for conditions with generous deadlines.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "tracked_connection.hpp"
#include "worker_thread.hpp"

namespace netpool::test {

using std_pool = netpool::pool<tracked_conn>;
using lean = netpool::lean_pool<tracked_conn>;
using tracked_lease = netpool::lease<tracked_conn>;
using both_pools = ::testing::Types<std_pool, lean>;

template <class P>
inline constexpr bool is_lean_v = std::is_same_v<P, lean>;

struct pool_names {
  template <class P>
  static std::string GetName(int) {
    return is_lean_v<P> ? "lean_pool" : "pool";
  }
};

// Generous bound for "this must happen": a busy 2-core machine under TSan is slow, never this slow.
inline constexpr std::chrono::seconds patience{10};

template <class P>
class pool_fixture : public ::testing::Test {
 protected:
  using pool_type = P;

  netpool::pool_config<tracked_conn> config(std::size_t max_size = 4) {
    netpool::pool_config<tracked_conn> c;
    c.factory = factory.function();
    c.max_size = max_size;
    return c;
  }
  // fair_waiters off; the default threshold is the pool's own (1 ms).
  netpool::pool_config<tracked_conn> unfair_config(
      std::size_t max_size, std::chrono::nanoseconds starvation_threshold = std::chrono::milliseconds(1)) {
    auto c = config(max_size);
    c.fair_waiters = false;
    c.starvation_threshold = starvation_threshold;
    return c;
  }
  P make(std::size_t max_size = 4) { return P::create(config(max_size)).value(); }
  P make(netpool::pool_config<tracked_conn> c) { return P::create(std::move(c)).value(); }

  void TearDown() override {
    // Every pool and lease of the test is gone by now.
    EXPECT_EQ(registry.double_closes(), 0) << "a connection was closed twice";
    EXPECT_EQ(registry.live(), 0) << "connections leaked: made " << registry.made() << ", closed "
                                  << registry.closed();
    EXPECT_EQ(registry.overflow(), 0);
  }

  connection_registry registry;
  factory_control factory{registry};
};

// Threads joined when the group goes out of scope.
class thread_group {
 public:
  thread_group() = default;
  thread_group(const thread_group&) = delete;
  thread_group& operator=(const thread_group&) = delete;
  ~thread_group() { join_all(); }

  template <class F>
  void spawn(F f) {
    threads_.emplace_back(std::move(f));
  }
  void join_all() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::vector<std::thread> threads_;
};

// Closes the pool when the scope ends, so that a failed assertion does not leave a thread blocked
// in get() that a thread_group destructor would then wait for forever. Declare it after the
// thread_group: it is destroyed first.
template <class P>
class close_on_exit {
 public:
  explicit close_on_exit(P& pool) noexcept : pool_(pool) {}
  close_on_exit(const close_on_exit&) = delete;
  close_on_exit& operator=(const close_on_exit&) = delete;
  ~close_on_exit() { pool_.close(); }

 private:
  P& pool_;
};

// Opens n connections, all idle (and listed) afterwards, from the calling thread: each get finds
// every connection held and dials. Fails the test if one cannot be opened within `patience`.
template <class P>
void open_idle(P& pool, std::size_t n) {
  std::vector<tracked_lease> opened;
  for (std::size_t i = 0; i < n; ++i) {
    auto l = pool.get_for(patience);
    ASSERT_TRUE(l) << l.error().message();
    opened.push_back(std::move(*l));
  }
}

// Takes every idle connection with try_get() from a thread that has never used the pool (no hint
// and no cache of walked slots: the walk alone), gives them back, and returns how many it got.
// An idle connection the walk cannot see (INV12) is missing from the count.
template <class P>
std::size_t idle_found_by_a_fresh_thread(P& pool) {
  worker fresh;
  return fresh.run([&pool] {
    std::vector<tracked_lease> taken;
    for (;;) {
      auto l = pool.try_get();
      if (!l) {
        EXPECT_EQ(l.error(), netpool::errc::exhausted);
        break;
      }
      taken.push_back(std::move(*l));
    }
    return taken.size();
  });
}

template <class F>
auto run_async(F f) {
  return std::async(std::launch::async, std::move(f));
}

template <class T>
[[nodiscard]] bool ready_within(const std::future<T>& f, std::chrono::milliseconds d = patience) {
  return f.wait_for(d) == std::future_status::ready;
}

// True if the future is still pending after `d`: used to check that a call really blocks. Can only
// fail if the call returned, so it cannot flake on a slow machine.
template <class T>
[[nodiscard]] bool still_blocked(const std::future<T>& f,
                                 std::chrono::milliseconds d = std::chrono::milliseconds(50)) {
  return f.wait_for(d) == std::future_status::timeout;
}

// Pools created while it lives split their idle bitmap into `n` stripes (pool_core.hpp,
// idle_stripes_for_tests), whatever the machine's CPU count: a test that knows the layout can
// know which idle connection a walk takes. Pools of up to 64 slots keep one stripe regardless.
class idle_stripes {
 public:
  explicit idle_stripes(std::uint32_t n) noexcept
      : previous_(netpool::detail::idle_stripes_for_tests.exchange(n)) {}
  idle_stripes(const idle_stripes&) = delete;
  idle_stripes& operator=(const idle_stripes&) = delete;
  ~idle_stripes() { netpool::detail::idle_stripes_for_tests.store(previous_); }

 private:
  std::uint32_t previous_;
};

// While it lives, the calling thread's miss walks start in stripe `t`, and its puts list their
// slots in stripe `t` (pool_core.hpp, thread_home_stripe_for_tests), whichever CPU it runs on.
class home_stripe {
 public:
  explicit home_stripe(int t) noexcept
      : previous_(std::exchange(netpool::detail::thread_home_stripe_for_tests, t)) {}
  home_stripe(const home_stripe&) = delete;
  home_stripe& operator=(const home_stripe&) = delete;
  ~home_stripe() { netpool::detail::thread_home_stripe_for_tests = previous_; }

 private:
  int previous_;
};

}  // namespace netpool::test
