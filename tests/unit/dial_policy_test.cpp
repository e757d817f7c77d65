// How the standard pool dials and queues (issue 6): max_connecting caps concurrent dials without
// losing a wake-up, a failed dial starts an exponential backoff during which gets fail fast with
// the last dial error, a real refused port followed by a listener on that port (bounded connect
// attempts, prompt recovery), and first-come-first-served waiters. Backoff is measured on an
// injected clock, so every step is deterministic; the real-socket test and the thread tests wait
// for conditions with generous deadlines and never assert how soon something happened.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::test::wait_for;

// Generous bound for "this must happen": a busy 2-core machine under TSan is slow, never this slow.
constexpr auto patience = 20s;

// ---- helpers -------------------------------------------------------------------------------------

// A clock the test moves by hand (pool_config::clock): drives the backoff deterministically.
class manual_clock {
 public:
  manual_clock() = default;
  manual_clock(const manual_clock&) = delete;
  manual_clock& operator=(const manual_clock&) = delete;

  [[nodiscard]] std::function<clock_type::time_point()> function() {
    return [this] { return base_ + std::chrono::nanoseconds(offset_.load(std::memory_order_acquire)); };
  }
  void set(std::chrono::nanoseconds since_start) noexcept {
    offset_.store(since_start.count(), std::memory_order_release);
  }
  [[nodiscard]] std::chrono::nanoseconds now() const noexcept {
    return std::chrono::nanoseconds(offset_.load(std::memory_order_acquire));
  }

 private:
  const clock_type::time_point base_ = clock_type::now();
  std::atomic<std::int64_t> offset_{0};
};

// Opened by hand; a factory can wait at it (until its deadline). Stays open once opened.
class gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait_until(clock_type::time_point deadline) {
    std::unique_lock lock(mutex_);
    return cv_.wait_until(lock, deadline, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

// A user connection type that counts how many exist.
class counted_conn {
 public:
  explicit counted_conn(std::atomic<int>& live) noexcept : live_(&live) { live.fetch_add(1); }
  counted_conn(counted_conn&& other) noexcept : live_(std::exchange(other.live_, nullptr)) {}
  counted_conn& operator=(counted_conn&&) = delete;
  counted_conn(const counted_conn&) = delete;
  counted_conn& operator=(const counted_conn&) = delete;
  ~counted_conn() {
    if (live_ != nullptr) live_->fetch_sub(1);
  }

 private:
  std::atomic<int>* live_;
};

// A factory the test steers: it may hold each call at a gate, fail with ECONNREFUSED, and it
// records how many calls ran at once.
class dial_control {
 public:
  dial_control() = default;
  dial_control(const dial_control&) = delete;
  dial_control& operator=(const dial_control&) = delete;

  [[nodiscard]] netpool::factory_function<counted_conn> function() {
    return [this](clock_type::time_point deadline) { return call(deadline); };
  }

  void fail(bool on) noexcept { fail_.store(on); }
  void hold_at_gate() noexcept { hold_.store(true); }
  void open_gate() { gate_.open(); }

  [[nodiscard]] int calls() const noexcept { return calls_.load(); }
  [[nodiscard]] int in_flight() const noexcept { return in_flight_.load(); }
  [[nodiscard]] int max_in_flight() const noexcept { return max_in_flight_.load(); }
  [[nodiscard]] int live() const noexcept { return live_.load(); }

  static std::error_code refused() { return netpool::make_dial_error(ECONNREFUSED); }

 private:
  netpool::result<counted_conn> call(clock_type::time_point deadline) {
    calls_.fetch_add(1);
    const int now = in_flight_.fetch_add(1) + 1;
    int seen = max_in_flight_.load();
    while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
    }
    bool admitted = true;
    if (hold_.load()) {
      admitted = gate_.wait_until(std::min(deadline, clock_type::now() + patience));
    } else {
      std::this_thread::yield();  // let other dials overlap with this one if the pool allows it
    }
    in_flight_.fetch_sub(1);
    if (!admitted) return errc::timeout;
    if (fail_.load()) return refused();
    return counted_conn(live_);
  }

  gate gate_;
  std::atomic<bool> hold_{false};
  std::atomic<bool> fail_{false};
  std::atomic<int> calls_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::atomic<int> live_{0};
};

using conn_pool = netpool::pool<counted_conn>;
using conn_lease = netpool::lease<counted_conn>;

// Runs `f` when the scope ends: unblocks threads (close the pool, open gates) before they are
// joined, so that a failed assertion never turns into a hang.
template <class F>
class at_exit {
 public:
  explicit at_exit(F f) : f_(std::move(f)) {}
  at_exit(const at_exit&) = delete;
  at_exit& operator=(const at_exit&) = delete;
  ~at_exit() { f_(); }

 private:
  F f_;
};

class joined_threads {
 public:
  joined_threads() = default;
  joined_threads(const joined_threads&) = delete;
  joined_threads& operator=(const joined_threads&) = delete;
  ~joined_threads() { join(); }
  template <class F>
  void spawn(F f) {
    threads_.emplace_back(std::move(f));
  }
  void join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::vector<std::thread> threads_;
};

class DialPolicyTest : public ::testing::Test {
 protected:
  netpool::pool_config<counted_conn> config(std::size_t max_size) {
    netpool::pool_config<counted_conn> c;
    c.factory = dials.function();
    c.max_size = max_size;
    return c;
  }
  // Backoff measured on the manual clock; no maintainer thread.
  netpool::pool_config<counted_conn> manual_config(std::size_t max_size) {
    auto c = config(max_size);
    c.clock = clock.function();
    c.background_maintenance = false;
    return c;
  }
  static conn_pool make(netpool::pool_config<counted_conn> c) {
    auto p = conn_pool::create(std::move(c));
    if (!p) throw std::system_error(p.error(), "pool::create");
    return std::move(*p);
  }

  void TearDown() override { EXPECT_EQ(dials.live(), 0) << "connections leaked"; }

  // A get that must dial now, at the manual clock's current time: true if it called the factory.
  bool get_dials(conn_pool& pool) {
    const int before = dials.calls();
    auto l = pool.get_for(patience);
    EXPECT_FALSE(l) << "the factory is set to fail";
    if (!l) {
      EXPECT_EQ(l.error(), dial_control::refused()) << l.error().message();
    }
    return dials.calls() != before;
  }

  dial_control dials;
  manual_clock clock;
};

// ---- max_connecting ------------------------------------------------------------------------------

// With 8 callers and max_connecting 2, at most 2 dials run at once; the other 6 wait in line and
// every one of them is served once the dials complete (no lost wake-up).
TEST_F(DialPolicyTest, MaxConnectingCapsConcurrentDials) {
  constexpr int callers = 8;
  auto cfg = config(callers);
  cfg.max_connecting = 2;
  auto pool = make(std::move(cfg));
  dials.hold_at_gate();

  std::atomic<int> served{0};
  std::atomic<int> failed{0};
  std::atomic<bool> release{false};
  joined_threads threads;
  const at_exit unblock([&] {
    release.store(true);
    dials.open_gate();
    pool.close();
  });
  for (int t = 0; t < callers; ++t) {
    threads.spawn([&] {
      auto l = pool.get_for(patience);
      if (!l) {
        failed.fetch_add(1);
        return;
      }
      served.fetch_add(1);
      // Hold it until everyone is served, so that every get needs its own dial.
      (void)wait_for([&] { return release.load(); }, patience);
    });
  }
  ASSERT_TRUE(
      wait_for([&] { return dials.in_flight() == 2 && pool.stats().waiters == callers - 2; }, patience))
      << "in flight " << dials.in_flight() << ", waiters " << pool.stats().waiters;
  EXPECT_EQ(dials.calls(), 2);
  EXPECT_EQ(pool.stats().dialing, 2u);

  dials.open_gate();
  ASSERT_TRUE(wait_for([&] { return served.load() + failed.load() == callers; }, patience))
      << "served " << served.load() << ", failed " << failed.load() << ": a waiter was never woken";
  EXPECT_EQ(served.load(), callers);
  EXPECT_EQ(dials.calls(), callers);
  EXPECT_LE(dials.max_in_flight(), 2);
  release.store(true);
  threads.join();
  EXPECT_EQ(pool.stats().dials, static_cast<std::uint64_t>(callers));
  EXPECT_EQ(pool.len(), static_cast<std::size_t>(callers));
}

// Churn: 8 threads get and discard (every get dials), so dial tokens and freed slots are passed
// between waiters all the time. Every get succeeds and the cap is never exceeded.
TEST_F(DialPolicyTest, MaxConnectingHoldsUnderChurn) {
  for (const std::size_t max_connecting : {std::size_t{1}, std::size_t{2}}) {
    SCOPED_TRACE(max_connecting);
    dial_control local;
    auto cfg = config(4);
    cfg.factory = local.function();
    cfg.max_connecting = max_connecting;
    auto pool = make(std::move(cfg));
    constexpr int threads_n = 8;
    constexpr int rounds = 40;
    std::atomic<int> failures{0};
    {
      joined_threads threads;
      const at_exit unblock([&] { pool.close(); });
      for (int t = 0; t < threads_n; ++t) {
        threads.spawn([&, t] {
          for (int i = 0; i < rounds; ++i) {
            auto l = pool.get_for(patience);
            if (!l) {
              failures.fetch_add(1);
              continue;
            }
            if ((i + t) % 2 == 0) {
              l->discard();  // frees the slot: the next dial
            }                // else: back to the pool (a waiter gets it directly)
          }
        });
      }
      threads.join();
    }
    EXPECT_EQ(failures.load(), 0);
    EXPECT_LE(local.max_in_flight(), static_cast<int>(max_connecting));
    EXPECT_EQ(pool.stats().in_use, 0u);
    EXPECT_EQ(pool.stats().dialing, 0u);
    pool.close();
    EXPECT_EQ(local.live(), 0);
  }
}

// ---- backoff after a failed dial -----------------------------------------------------------------

// After a failed dial, gets that would dial fail at once with the last dial error (fast_failures,
// last_dial_error()) — whatever their deadline — until the backoff passes; then a dial is tried.
TEST_F(DialPolicyTest, FailedDialMakesGetsFailFastUntilTheBackoffPasses) {
  auto cfg = manual_config(4);
  cfg.dial_backoff_floor = 100ms;
  cfg.dial_backoff_cap = 1s;
  auto pool = make(std::move(cfg));
  EXPECT_FALSE(pool.last_dial_error());
  dials.fail(true);

  ASSERT_TRUE(get_dials(pool));  // the first failure: backoff 100 ms, waiting drawn in [50, 100] ms
  EXPECT_EQ(pool.last_dial_error(), dial_control::refused());
  for (int i = 0; i < 5; ++i) {
    const auto start = clock_type::now();
    auto l = pool.get_for(1h);  // a caller willing to wait still fails at once
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error(), dial_control::refused());
    EXPECT_EQ(l.error(), std::errc::connection_refused);
    EXPECT_EQ(l.error(), netpool::condition::dial_failed);
    EXPECT_LT(clock_type::now() - start, patience);
  }
  auto s = pool.stats();
  EXPECT_EQ(dials.calls(), 1);
  EXPECT_EQ(s.dials, 1u);
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.fast_failures, 5u);
  EXPECT_EQ(s.active, 0u) << "a fast failure gives its slot back";
  EXPECT_EQ(s.dialing, 0u);

  auto t = pool.try_get();  // never dials: exhausted, not a dial error
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error(), errc::exhausted);

  clock.set(49ms);
  EXPECT_FALSE(get_dials(pool));
  clock.set(100ms);
  EXPECT_TRUE(get_dials(pool)) << "no dial was tried once the backoff passed";
  EXPECT_EQ(pool.stats().fast_failures, 6u);
}

// A get whose deadline has already passed, while the pool backs off, reports the dial error
// (the backend is known to be down), not a bare timeout.
TEST_F(DialPolicyTest, ExpiredDeadlineDuringBackoffReportsTheDialError) {
  auto cfg = manual_config(4);
  cfg.dial_backoff_floor = 1s;
  auto pool = make(std::move(cfg));
  dials.fail(true);
  ASSERT_TRUE(get_dials(pool));
  auto l = pool.get_until(clock_type::now() - 1s);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error(), dial_control::refused()) << l.error().message();
  auto z = pool.get_for(0ms);
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error(), dial_control::refused()) << z.error().message();
  EXPECT_EQ(dials.calls(), 1);
}

// The wait after a failure is drawn per pool: pools that failed together (one backend down for
// many services) must not all retry at the same instant. 16 pools fail at the same manual time;
// stepping 1 ms at a time through [backoff/2, backoff], their first retries must spread out. A
// backoff without jitter (always backoff, or always backoff/2) gives one instant for all 16.
TEST_F(DialPolicyTest, PoolsThatFailTogetherRetryAtDifferentTimes) {
  constexpr int pool_count = 16;
  std::vector<conn_pool> pools;
  for (int i = 0; i < pool_count; ++i) {
    auto cfg = manual_config(1);
    cfg.dial_backoff_floor = 100ms;
    cfg.dial_backoff_cap = 100ms;
    pools.push_back(make(std::move(cfg)));
  }
  dials.fail(true);
  const auto failed_at = clock.now();
  for (auto& pool : pools) ASSERT_TRUE(get_dials(pool));

  std::vector<int> retried_at_ms(pool_count, -1);
  for (int ms = 49; ms <= 100; ++ms) {
    clock.set(failed_at + std::chrono::milliseconds(ms));
    for (int i = 0; i < pool_count; ++i) {
      if (retried_at_ms[static_cast<std::size_t>(i)] < 0 && get_dials(pools[static_cast<std::size_t>(i)]))
        retried_at_ms[static_cast<std::size_t>(i)] = ms;
    }
  }
  std::set<int> distinct;
  for (const int ms : retried_at_ms) {
    EXPECT_GE(ms, 50) << "a pool retried before backoff/2, or never within backoff";
    distinct.insert(ms);
  }
  EXPECT_GE(distinct.size(), 4u) << "16 pools retried at only " << distinct.size() << " distinct times";
}

// The backoff doubles with each further failure (each wait drawn from [backoff/2, backoff]) up to
// dial_backoff_cap.
TEST_F(DialPolicyTest, BackoffGrowsExponentiallyUpToTheCap) {
  auto cfg = manual_config(4);
  cfg.dial_backoff_floor = 100ms;
  cfg.dial_backoff_cap = 800ms;
  auto pool = make(std::move(cfg));
  dials.fail(true);

  ASSERT_TRUE(get_dials(pool));
  auto failed_at = clock.now();
  const std::chrono::milliseconds expected[] = {100ms, 200ms, 400ms, 800ms, 800ms, 800ms, 800ms};
  for (const auto backoff : expected) {
    SCOPED_TRACE("backoff " + std::to_string(backoff.count()) + " ms");
    clock.set(failed_at + backoff / 2 - 1ms);  // before the earliest retry
    EXPECT_FALSE(get_dials(pool)) << "dialed before backoff/2";
    clock.set(failed_at + backoff);  // the latest retry
    ASSERT_TRUE(get_dials(pool)) << "no dial after the whole backoff";
    failed_at = clock.now();
  }
  EXPECT_EQ(dials.calls(), 8);
}

// A successful dial resets the backoff: the next failure backs off from the floor again.
TEST_F(DialPolicyTest, SuccessResetsTheBackoff) {
  auto cfg = manual_config(4);
  cfg.dial_backoff_floor = 100ms;
  cfg.dial_backoff_cap = 800ms;
  auto pool = make(std::move(cfg));
  dials.fail(true);
  ASSERT_TRUE(get_dials(pool));
  for (const auto backoff : {100ms, 200ms, 400ms}) {  // now at 800 ms
    clock.set(clock.now() + backoff);
    ASSERT_TRUE(get_dials(pool));
  }

  dials.fail(false);
  clock.set(clock.now() + 800ms);
  auto ok = pool.get();
  ASSERT_TRUE(ok) << ok.error().message();  // held: the next get must dial

  dials.fail(true);
  ASSERT_TRUE(get_dials(pool));
  const auto failed_at = clock.now();
  clock.set(failed_at + 49ms);
  EXPECT_FALSE(get_dials(pool));
  clock.set(failed_at + 100ms);
  EXPECT_TRUE(get_dials(pool)) << "the backoff did not restart from the floor after a success";
}

// dial_backoff_floor = 0 turns backoff off: every get dials.
TEST_F(DialPolicyTest, ZeroFloorDisablesBackoff) {
  auto cfg = manual_config(4);
  cfg.dial_backoff_floor = 0ns;
  cfg.dial_backoff_cap = 0ns;
  auto pool = make(std::move(cfg));
  dials.fail(true);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(get_dials(pool));
  const auto s = pool.stats();
  EXPECT_EQ(s.dial_failures, 5u);
  EXPECT_EQ(s.fast_failures, 0u);
  EXPECT_EQ(pool.last_dial_error(), dial_control::refused());
}

// While backing off, idle connections are still handed out; only gets that would dial fail fast.
TEST_F(DialPolicyTest, IdleConnectionsAreServedWhileBackingOff) {
  auto cfg = manual_config(3);
  cfg.dial_backoff_floor = 1s;
  auto pool = make(std::move(cfg));
  auto a = pool.get();
  auto b = pool.get();
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  dials.fail(true);
  ASSERT_TRUE(get_dials(pool));  // backing off from now on
  b->release();

  auto again = pool.get_for(patience);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(pool.stats().fast_failures, 0u);
  EXPECT_FALSE(get_dials(pool)) << "the next get would have to dial: fails fast";
  EXPECT_EQ(pool.stats().fast_failures, 1u);
}

// A waiter granted the right to dial while the pool backs off fails fast too, with the error of
// the dial that started the backoff — it does not dial a backend that just refused.
TEST_F(DialPolicyTest, WaiterGrantedADialFailsFastWhileBackingOff) {
  auto cfg = manual_config(2);
  cfg.max_connecting = 2;
  cfg.dial_backoff_floor = 1s;
  auto pool = make(std::move(cfg));
  auto held = pool.get();  // slot 1 of 2
  ASSERT_TRUE(held);

  dials.hold_at_gate();
  dials.fail(true);
  std::future<std::error_code> dialer;
  std::future<std::error_code> waiter;
  const at_exit unblock([&] {  // destroyed before the futures, whose destructors wait
    dials.open_gate();
    pool.close();
  });
  dialer = std::async(std::launch::async, [&] { return pool.get_for(patience).error(); });
  ASSERT_TRUE(wait_for([&] { return dials.in_flight() == 1; }, patience));  // slot 2: dialing
  waiter = std::async(std::launch::async, [&] { return pool.get_for(patience).error(); });
  ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }, patience));

  dials.open_gate();  // the dial fails: backoff starts, and its slot goes to the waiter
  ASSERT_EQ(dialer.wait_for(patience), std::future_status::ready);
  EXPECT_EQ(dialer.get(), dial_control::refused());
  ASSERT_EQ(waiter.wait_for(patience), std::future_status::ready);
  EXPECT_EQ(waiter.get(), dial_control::refused());
  EXPECT_EQ(dials.calls(), 2) << "the waiter dialed during the backoff";
  const auto s = pool.stats();
  EXPECT_EQ(s.fast_failures, 1u);
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.dialing, 0u);
}

// The min_size refill respects the backoff too, and maintain() says when to come back.
TEST_F(DialPolicyTest, MinSizeRefillRespectsTheBackoff) {
  dials.fail(true);
  auto cfg = manual_config(4);
  cfg.min_size = 1;
  cfg.dial_backoff_floor = 100ms;
  cfg.dial_backoff_cap = 1s;
  auto pool = make(std::move(cfg));  // creation's refill: one failed dial
  EXPECT_EQ(dials.calls(), 1);

  auto next = pool.maintain();
  EXPECT_EQ(dials.calls(), 1) << "the refill dialed during the backoff";
  EXPECT_GE(next, 50ms);
  EXPECT_LE(next, 100ms);

  clock.set(100ms);
  next = pool.maintain();
  EXPECT_EQ(dials.calls(), 2);
  EXPECT_GE(next, 100ms);  // 200 ms backoff: retry in [100, 200] ms
  EXPECT_LE(next, 200ms);

  dials.fail(false);
  clock.set(300ms);
  pool.maintain();
  EXPECT_EQ(dials.calls(), 3);
  EXPECT_EQ(pool.len(), 1u);
}

TEST_F(DialPolicyTest, InvalidDialPolicySettingsAreRejected) {
  struct bad_case {
    std::chrono::nanoseconds floor, cap;
    std::size_t max_connecting;
    netpool::config_problem problem;
  };
  const bad_case cases[] = {
      {-1ns, 1s, 2, netpool::config_problem::backoff_negative},
      {100ms, 99ms, 2, netpool::config_problem::backoff_cap_below_floor},
      {10ms, 1s, 0, netpool::config_problem::max_connecting_zero},
  };
  for (const auto& c : cases) {
    auto cfg = config(4);
    cfg.dial_backoff_floor = c.floor;
    cfg.dial_backoff_cap = c.cap;
    cfg.max_connecting = c.max_connecting;
    EXPECT_EQ(netpool::validate_for_pool(cfg), c.problem);
    EXPECT_EQ(netpool::validate_for_lean_pool(cfg), c.problem);
    auto p = conn_pool::create(cfg);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), errc::invalid_config);
  }
  auto cfg = config(4);
  cfg.dial_backoff_floor = 1s;  // cap == floor: a constant backoff
  cfg.dial_backoff_cap = 1s;
  cfg.max_connecting = 1;
  EXPECT_EQ(netpool::validate_for_pool(cfg), netpool::config_problem::none);
  EXPECT_EQ(dials.calls(), 0);
}

// ---- a real backend that refuses, then comes back ------------------------------------------------

// A loopback port that refuses connections (bound, not listening) until listen() is called on the
// same socket: no other process can take the port in between.
class late_listener {
 public:
  late_listener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof a;
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &length) != 0) {
      const int e = errno;
      ::close(fd_);
      throw std::system_error(e, std::generic_category(), "bind");
    }
    port_ = ntohs(a.sin_port);
  }
  late_listener(const late_listener&) = delete;
  late_listener& operator=(const late_listener&) = delete;
  ~late_listener() { ::close(fd_); }

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // From now on connects complete (the kernel queues them; the pool needs nothing more).
  void listen() {
    if (::listen(fd_, 64) != 0) throw std::system_error(errno, std::generic_category(), "listen");
  }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

// Against a port that refuses, callers hammering get() cause a bounded number of connect attempts
// per second (backoff, max_connecting), not one per call; once a listener appears the pool
// recovers within about one backoff cap.
TEST_F(DialPolicyTest, RefusedPortThenListenerBoundedAttemptsAndRecovery) {
  const std::size_t fds_before = netpool::test::open_fd_count();
  {
    late_listener backend;
    std::atomic<int> attempts{0};
    std::atomic<std::int64_t> listening_since{std::numeric_limits<std::int64_t>::max()};
    std::atomic<int> failures_after_listen{0};
    constexpr auto cap = 200ms;

    netpool::pool_config<netpool::socket> cfg;
    cfg.max_size = 2;
    cfg.max_connecting = 2;
    cfg.dial_backoff_floor = 10ms;
    cfg.dial_backoff_cap = cap;
    cfg.dial_timeout = 5s;
    cfg.factory = [&,
                   dial = netpool::tcp_dialer("127.0.0.1", backend.port())](clock_type::time_point deadline) {
      const std::int64_t started = clock_type::now().time_since_epoch().count();
      attempts.fetch_add(1);
      const bool after_listen = started >= listening_since.load();
      auto s = dial(deadline);
      if (!s && after_listen) failures_after_listen.fetch_add(1);
      return s;
    };
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();

    std::atomic<bool> stop{false};
    std::atomic<int> gets{0};
    std::atomic<int> successes{0};
    std::atomic<int> unexpected_errors{0};
    joined_threads threads;
    const at_exit unblock([&] {
      stop.store(true);
      pool.close();
    });
    for (int t = 0; t < 3; ++t) {
      threads.spawn([&] {
        // Bounded in count and time whatever happens.
        const auto give_up = clock_type::now() + 2 * patience;
        for (int i = 0; i < 100000 && !stop.load() && clock_type::now() < give_up; ++i) {
          auto l = pool.get_for(20ms);
          gets.fetch_add(1);
          if (l) {
            successes.fetch_add(1);
          } else if (l.error() != netpool::condition::dial_failed && l.error() != errc::timeout) {
            unexpected_errors.fetch_add(1);
          }
          std::this_thread::sleep_for(1ms);
        }
      });
    }

    // Phase 1: the backend refuses for a while.
    const auto refused_from = clock_type::now();
    std::this_thread::sleep_for(1s);
    const int refused_attempts = attempts.load();
    const auto refused_for = clock_type::now() - refused_from;
    const double periods =
        std::chrono::duration<double>(refused_for) / std::chrono::duration<double>(cap / 2);
    // Reaching the cap takes at most 5 backoffs (10..160 ms); after that a retry at most every
    // cap/2; each retry round may start up to max_connecting dials.
    const int bound = 2 * (8 + static_cast<int>(periods));
    RecordProperty("refused_attempts", refused_attempts);
    RecordProperty("refused_gets", gets.load());
    EXPECT_GT(refused_attempts, 0);
    EXPECT_LE(refused_attempts, bound)
        << "connect attempts while refused: " << refused_attempts << " in "
        << std::chrono::duration<double>(refused_for).count() << " s, for " << gets.load() << " gets";
    EXPECT_GT(pool.stats().fast_failures, 0u);
    EXPECT_EQ(successes.load(), 0);
    EXPECT_EQ(pool.last_dial_error(), std::errc::connection_refused);

    // Phase 2: the backend starts listening. Dials that start from now on must succeed.
    backend.listen();
    const auto listen_at = clock_type::now();
    listening_since.store(listen_at.time_since_epoch().count());
    ASSERT_TRUE(wait_for([&] { return successes.load() > 0; }, patience)) << "the pool never recovered";
    const auto recovered_after = clock_type::now() - listen_at;
    RecordProperty(
        "recovered_after_us",
        static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(recovered_after).count()));
    // Generous: the next retry is due within one cap; the rest is scheduling on a busy machine.
    EXPECT_LT(recovered_after, cap + 5s)
        << "recovered after " << std::chrono::duration<double>(recovered_after).count() << " s";
    EXPECT_EQ(failures_after_listen.load(), 0) << "a dial started after the listener appeared failed";
    stop.store(true);
    threads.join();
    EXPECT_EQ(unexpected_errors.load(), 0);
    EXPECT_GE(pool.stats().dials - pool.stats().dial_failures, 1u);
  }
  EXPECT_EQ(netpool::test::open_fd_count(), fds_before) << "descriptors leaked";
}

// ---- fair waiters --------------------------------------------------------------------------------

// With one connection and N callers queued in a known order (caller k+1 starts only once k is
// waiting), they are served first come, first served — whether the connection is handed back
// (put) or discarded (its slot goes to the oldest waiter, who dials).
TEST_F(DialPolicyTest, WaitersAreServedInArrivalOrder) {
  for (const bool discard : {false, true}) {
    SCOPED_TRACE(discard ? "discard: a freed slot each time" : "put: the connection is handed over");
    auto pool = make(config(1));
    auto held = pool.get();
    ASSERT_TRUE(held);

    constexpr int callers = 6;
    std::mutex order_mutex;
    std::vector<int> order;
    {
      joined_threads threads;
      const at_exit unblock([&] { pool.close(); });
      for (int k = 0; k < callers; ++k) {
        threads.spawn([&, k] {
          auto l = pool.get_for(patience);
          if (!l) return;
          {
            std::lock_guard lock(order_mutex);
            order.push_back(k);
          }
          std::this_thread::sleep_for(1ms);
          if (discard) l->discard();
        });
        ASSERT_TRUE(
            wait_for([&] { return pool.stats().waiters == static_cast<std::size_t>(k + 1); }, patience))
            << "caller " << k << " did not start waiting";
      }
      if (discard) {
        held->discard();
      } else {
        held->release();
      }
      threads.join();
    }
    const std::vector<int> fifo{0, 1, 2, 3, 4, 5};
    EXPECT_EQ(order, fifo);
    EXPECT_GE(pool.stats().gets_waited, static_cast<std::uint64_t>(callers));
  }
}

// While others wait, a newcomer cannot take the connection: try_get() fails (exhausted) until the
// line is empty, and a newcomer's get() queues behind everyone already waiting.
TEST_F(DialPolicyTest, NewArrivalsDoNotJumpTheQueue) {
  auto pool = make(config(1));
  auto held = pool.get();
  ASSERT_TRUE(held);

  constexpr int queued = 4;
  constexpr int late = queued;        // the get() that arrives last
  constexpr int barger = queued + 1;  // try_get() in a loop from before the first hand-over
  std::mutex order_mutex;
  std::vector<int> order;
  auto record = [&](int who) {
    std::lock_guard lock(order_mutex);
    order.push_back(who);
  };
  std::atomic<int> barger_misses{0};
  {
    joined_threads threads;
    const at_exit unblock([&] { pool.close(); });
    for (int k = 0; k <= late; ++k) {
      threads.spawn([&, k] {
        auto l = pool.get_for(patience);
        if (!l) return;
        record(k);
        std::this_thread::sleep_for(2ms);  // the barger gets chances while each one holds it
      });
      ASSERT_TRUE(
          wait_for([&] { return pool.stats().waiters == static_cast<std::size_t>(k + 1); }, patience));
    }
    threads.spawn([&] {
      const auto give_up = clock_type::now() + patience;
      while (clock_type::now() < give_up) {
        auto l = pool.try_get();
        if (l) {
          record(barger);
          return;
        }
        if (l.error() != errc::exhausted) return;
        barger_misses.fetch_add(1);
        std::this_thread::sleep_for(100us);
      }
    });
    ASSERT_TRUE(wait_for([&] { return barger_misses.load() > 0; }, patience));
    held->release();
    threads.join();
  }
  const std::vector<int> expected{0, 1, 2, 3, late, barger};
  EXPECT_EQ(order, expected);
  EXPECT_EQ(pool.stats().dials, 1u) << "one connection, handed from waiter to waiter";
}

}  // namespace
