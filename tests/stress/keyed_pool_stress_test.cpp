// Concurrency stress for keyed_pool: 8 threads over several keys (echo servers on 127.0.0.1 ...
// 127.0.0.4, and one refused endpoint whose dials always fail), with a per-key and a global limit
// smaller than what the threads ask for, short eviction, remove() racing gets, and threads that
// hold two keys at once (so dials wait for the global limit, reclaim idle connections of other
// keys, and give up with errc::exhausted).
//
// The user's factory and on_close count connections as the user sees them: that count must never
// exceed global_max while the threads run (a monitor also checks stats().open), and at the end
// every connection the factory made has been closed exactly once and every global token is back.
// Bounded in operations and time (ops_per_thread or run_time, whichever comes first).
#include <sys/socket.h>
#include <sys/time.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/keyed_pool.hpp"
#include "netpool/socket.hpp"
#include "stress_support.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::test::echo_server;
using netpool::test::wait_for;

constexpr bool sanitized = netpool::test::stress_sanitized;
constexpr int thread_count = 8;
constexpr int ops_per_thread = sanitized ? 250 : 600;  // a few thousand in all
constexpr auto run_time = 20s;                         // a cap, not a target
constexpr std::size_t per_key_max = 3;
constexpr std::size_t global_max = 5;

// One shard: the port of a server on 127.0.0.<n> (or of a refused port).
struct shard {
  std::string host;
  std::uint16_t port = 0;
  bool operator==(const shard&) const = default;
};
struct shard_hash {
  std::size_t operator()(const shard& s) const noexcept { return std::hash<std::string>{}(s.host) ^ s.port; }
};
using keyed = netpool::keyed_pool<shard, netpool::socket, shard_hash>;
using socket_lease = netpool::lease<netpool::socket>;
using rng = netpool::test::stress_rng;

// Connections as the user's own factory and on_close see them.
struct connection_count {
  std::atomic<long> live{0};
  std::atomic<long> max_live{0};
  std::atomic<std::uint64_t> made{0};
  std::atomic<std::uint64_t> closed{0};

  void opened() {
    made.fetch_add(1);
    const long now = live.fetch_add(1) + 1;
    long seen = max_live.load();
    while (now > seen && !max_live.compare_exchange_weak(seen, now)) {
    }
  }
  void gone() {
    closed.fetch_add(1);
    live.fetch_sub(1);
  }
};

struct tally {
  std::atomic<std::uint64_t> gets{0}, timeouts{0}, exhausted{0}, refused{0}, pool_closed{0};
  std::atomic<std::uint64_t> removes{0}, echo_failures{0}, unexpected{0};
  std::atomic<int> last_unexpected{0};

  void failed(const std::error_code& ec) {
    // A get's own deadline, or a dial's (a loopback connect slowed by a busy machine, reported as
    // a dial failure that timed out).
    if (ec == errc::timeout || ec == std::errc::timed_out) {
      timeouts.fetch_add(1);
    } else if (ec == errc::exhausted) {
      exhausted.fetch_add(1);
    } else if (ec == std::errc::connection_refused) {
      refused.fetch_add(1);
    } else if (ec == errc::pool_closed) {
      pool_closed.fetch_add(1);
    } else {
      unexpected.fetch_add(1);
      last_unexpected.store(ec.value());
    }
  }
};

bool echoes(netpool::socket& s) {
  const timeval limit{10, 0};  // never hang on a broken echo
  if (::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) != 0) return false;
  if (s.send_all("x")) return false;
  char c = 0;
  auto n = s.recv(&c, 1);
  return n && *n == 1 && c == 'x';
}

class KeyedPoolStress : public ::testing::Test {
 protected:
  KeyedPoolStress() {
    for (int i = 1; i <= 4; ++i) {
      netpool::test::echo_server_options options;
      options.ipv4_address = "127.0.0." + std::to_string(i);
      servers_.push_back(std::make_unique<echo_server>(std::move(options)));
      shards_.push_back({servers_.back()->host(), servers_.back()->port()});
    }
    shards_.push_back({"127.0.0.1", refused_.port()});  // every dial fails: tokens must come back
  }

  keyed make() {
    netpool::keyed_pool_config<shard> cfg;
    cfg.per_key_max = per_key_max;
    cfg.global_max = global_max;
    cfg.evict_idle_after = 2ms;  // evictions race with everything else
    cfg.make_config = [count = count_](const shard& s) {
      netpool::pool_config<netpool::socket> c;
      netpool::tcp_dialer dial(s.host, s.port);
      c.factory = [dial, count](clock_type::time_point deadline) {
        auto made = dial(deadline);
        if (made) count->opened();
        return made;
      };
      c.on_close = [count](netpool::socket&, netpool::close_reason) { count->gone(); };
      // Short, so that dials waiting for a global token give up (exhausted) within the run. A
      // loopback connect is answered by the kernel at once; a slow one just counts as a timeout.
      c.dial_timeout = 100ms;
      c.dial_backoff_floor = 1ms;  // the refused shard retries often
      c.dial_backoff_cap = 5ms;
      return c;
    };
    return keyed::create(std::move(cfg)).value();
  }

  // One thread's run: a random mix of everything a caller does.
  void worker(keyed& pools, int id, clock_type::time_point stop_at) {
    rng r(static_cast<std::uint64_t>(id) + 1);
    for (int op = 0; op < ops_per_thread && clock_type::now() < stop_at; ++op) {
      const shard& s = shards_[r.below(static_cast<unsigned>(shards_.size()))];
      const unsigned roll = r.below(100);
      if (roll < 55) {  // get, maybe use, return
        auto l = pools.get_for(s, 2s);
        if (!l) {
          t_.failed(l.error());
          continue;
        }
        t_.gets.fetch_add(1);
        if (r.below(4) == 0 && !echoes(l->get())) t_.echo_failures.fetch_add(1);
      } else if (roll < 65) {  // get, then discard as if broken
        auto l = pools.get_for(s, 2s);
        if (!l) {
          t_.failed(l.error());
          continue;
        }
        t_.gets.fetch_add(1);
        (void)l->discard();
      } else if (roll < 75) {  // try_get: idle or nothing
        auto l = pools.try_get(s);
        if (l) {
          t_.gets.fetch_add(1);
        } else if (l.error() != errc::exhausted) {
          t_.failed(l.error());
        }
      } else if (roll < 93) {  // two keys at once: the global limit is what stops us
        auto first = pools.get_for(s, 2s);
        if (!first) {
          t_.failed(first.error());
          continue;
        }
        t_.gets.fetch_add(1);
        const shard& other = shards_[r.below(4)];
        // 20 ms: sooner than the dial's deadline, so the core dials on a dialer thread and the get
        // gives up first (timeout); 1 s: the get dials itself and the dial's deadline ends its wait
        // for a token (exhausted).
        auto second = pools.get_for(other, r.below(2) == 0 ? 20ms : 1000ms);
        if (second) {
          t_.gets.fetch_add(1);
        } else {
          t_.failed(second.error());
        }
      } else if (roll < 96) {
        if (pools.remove(s)) t_.removes.fetch_add(1);
      } else {
        const netpool::keyed_pool_stats st = pools.stats();
        if (st.open > global_max) over_limit_.fetch_add(1);
      }
    }
  }

  std::vector<std::unique_ptr<echo_server>> servers_;
  netpool::test::refused_port refused_;
  std::vector<shard> shards_;
  std::shared_ptr<connection_count> count_ = std::make_shared<connection_count>();
  tally t_;
  std::atomic<std::uint64_t> over_limit_{0};
};

TEST_F(KeyedPoolStress, GlobalLimitHoldsAndNoCountDrifts) {
  keyed pools = make();
  const auto stop_at = clock_type::now() + run_time;
  std::atomic<bool> running{true};
  std::thread monitor([&] {
    while (running.load()) {
      if (count_->live.load() > static_cast<long>(global_max)) over_limit_.fetch_add(1);
      if (pools.stats().open > global_max) over_limit_.fetch_add(1);
      std::this_thread::sleep_for(1ms);
    }
  });
  {
    std::vector<std::thread> threads;
    threads.reserve(thread_count);
    for (int id = 0; id < thread_count; ++id) threads.emplace_back([&, id] { worker(pools, id, stop_at); });
    for (auto& th : threads) th.join();
  }
  running.store(false);
  monitor.join();

  EXPECT_EQ(over_limit_.load(), 0u);
  EXPECT_LE(count_->max_live.load(), static_cast<long>(global_max));
  EXPECT_EQ(t_.unexpected.load(), 0u) << "last unexpected error value: " << t_.last_unexpected.load();
  EXPECT_EQ(t_.echo_failures.load(), 0u);
  EXPECT_GT(t_.gets.load(), 0u);
  EXPECT_GT(t_.refused.load(), 0u);  // the dead shard was tried

  // Quiescent: every lease is back, so eviction takes every sub-pool; then every token comes back
  // and every connection the user's factory made is closed. (An evicted sub-pool leaves the map
  // a moment before the sweeper closes it: wait for the closes, then look.)
  EXPECT_TRUE(wait_for(
      [&] { return pools.size() == 0 && pools.stats().open == 0 && count_->live.load() == 0; }, 60s));
  const netpool::keyed_pool_stats s = pools.stats();
  EXPECT_EQ(s.open, 0u);
  EXPECT_EQ(count_->live.load(), 0);
  EXPECT_EQ(count_->made.load(), count_->closed.load());
  EXPECT_EQ(s.total.active, 0u);
  EXPECT_EQ(s.global_waiters, 0u);

  // Every handed-out connection is a get the threads saw (a reclaim is not a get); a remove()
  // racing a get may lose that get's count (read before the core recorded it), at most one per
  // thread.
  const std::uint64_t seen = t_.gets.load();
  EXPECT_EQ(s.total.closed_reclaimed, s.reclaimed) << "each reclaim closes one connection, as reclaimed";
  EXPECT_LE(s.total.gets, seen);
  EXPECT_GE(s.total.gets + t_.removes.load() * thread_count, seen);

  // The full global capacity is still obtainable: no token leaked.
  {
    std::vector<socket_lease> all;
    all.reserve(global_max);
    for (std::size_t i = 0; i < global_max; ++i) {
      auto l = pools.get_for(shards_[i % 4], 10s);
      ASSERT_TRUE(l) << "lease " << i << ": " << l.error().message();
      all.push_back(std::move(*l));
    }
    EXPECT_EQ(pools.stats().open, global_max);
  }

  pools.close();
  EXPECT_EQ(pools.stats().open, 0u);
  EXPECT_EQ(count_->live.load(), 0);
  EXPECT_EQ(count_->made.load(), count_->closed.load());
  std::printf(
      "keyed stress: %llu gets, %llu timeouts, %llu exhausted, %llu refused, %llu removes, %llu reclaimed, "
      "%llu sub-pools created, %llu evicted, max %ld open\n",
      static_cast<unsigned long long>(t_.gets.load()), static_cast<unsigned long long>(t_.timeouts.load()),
      static_cast<unsigned long long>(t_.exhausted.load()),
      static_cast<unsigned long long>(t_.refused.load()), static_cast<unsigned long long>(t_.removes.load()),
      static_cast<unsigned long long>(s.reclaimed), static_cast<unsigned long long>(s.pools_created),
      static_cast<unsigned long long>(s.pools_evicted), count_->max_live.load());
}

TEST_F(KeyedPoolStress, CloseWhileThreadsHammerLosesNoToken) {
  std::optional<keyed> pools(make());
  const auto stop_at = clock_type::now() + run_time;
  std::vector<std::thread> threads;
  threads.reserve(thread_count);
  for (int id = 0; id < thread_count; ++id) threads.emplace_back([&, id] { worker(*pools, id, stop_at); });
  // Close once the threads are well under way (a condition, not a sleep).
  EXPECT_TRUE(wait_for([&] { return t_.gets.load() >= 200 || clock_type::now() >= stop_at; }, 60s));
  pools->close();
  for (auto& th : threads) th.join();

  EXPECT_EQ(t_.unexpected.load(), 0u) << "last unexpected error value: " << t_.last_unexpected.load();
  EXPECT_EQ(over_limit_.load(), 0u);
  EXPECT_LE(count_->max_live.load(), static_cast<long>(global_max));
  // Joining the threads does not end every dial: a get that gave up first (the 20 ms one) left
  // its dial to its sub-pool's dialer thread, and a dialer may even start one while close() runs
  // (the sub-pools are closed after the sweeper is joined). close() leaves such a sub-pool, now
  // retired, to end its dial (at most dial_timeout): the dial's token comes back as it fails, or
  // as its new connection is closed (the sub-pool is closed). Wait for that, then look: a token
  // that never comes back still fails here.
  EXPECT_TRUE(wait_for([&] { return pools->stats().open == 0 && count_->live.load() == 0; }, 60s));
  EXPECT_EQ(pools->stats().open, 0u);
  EXPECT_EQ(count_->live.load(), 0);
  pools.reset();
  EXPECT_EQ(count_->made.load(), count_->closed.load());
}

}  // namespace
