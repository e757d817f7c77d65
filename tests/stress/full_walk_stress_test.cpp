// Concurrency stress for the full walk of a large pool: take_next_idle() and first_listed_word()
// in pool_core.hpp, which read the idle bitmap a line of 8 words at a time and skip a line whose
// words are all 0. The pool's other stress tests use at most 100 slots (2 words), so this is the
// one that runs the line loop while other threads list and unlist bits in the lines it reads.
//
// A standard pool of 1 200 tracked connections (19 words a stripe: two full lines and 3 words
// more), its bitmap pinned to 2 or 4 stripes, and 4 workers whose puts list in stripes 0..3 (as on
// a machine with that many CPUs). Each worker may hold a quarter of the pool, so that together
// they keep it nearly exhausted and a blocking get is always served eventually. The health check
// fails now and then: the get then goes on through the full walk (scan_idle()), past the slot it
// found, while the others return and take connections. Each round, in phases separated by
// barriers:
//
//   churn   each worker returns a few of its connections (some discarded) at random and takes as
//           many back, with try_get() (exhausted allowed) or get_for() (must succeed);
//   spread  each worker returns a random share of what it holds, so that idle connections lie all
//           over the bitmap;
//   drain   each worker takes connections with try_get() until it says exhausted, checks failing
//           more often (each failure sends that get through the full walk). Nobody returns a
//           connection meanwhile, so the idle set only shrinks: once every worker has seen
//           exhausted, stats().idle must be 0. A walk that passed over a line with a bit (or read
//           another stripe's line) leaves a connection idle and fails here.
//
// Throughout: every get's connection is claimed (two holders at once fail the test), and at the
// end every connection is idle, found by a fresh thread's walk, and closed exactly once. Bounded
// in rounds and in time.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../unit/pool_test_helpers.hpp"
#include "../unit/tracked_connection.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "stress_support.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::test::connection_registry;
using netpool::test::tracked_conn;
using netpool::test::wait_for;
using lease_type = netpool::lease<tracked_conn>;

constexpr bool sanitized = netpool::test::stress_sanitized;
constexpr std::size_t pool_size = 1200;  // 19 words a stripe: lines of 8 words, 8, then 3 words
constexpr int workers = 4;
constexpr std::size_t quota = pool_size / workers;  // held by one worker at most: gets never starve
constexpr int max_rounds = sanitized ? 40 : 300;
constexpr auto run_time = sanitized ? 3s : 1500ms;  // rounds started before this; a cap, not a target
constexpr int churn_steps = 200;                    // per worker and round
// A get_for() in the churn phase is always served (quota above); this only ends a hang.
constexpr auto get_deadline = 30s;

using rng = netpool::test::stress_rng;

// One in `failing_one_in` health checks fails (0: none), drawn from the checking thread's own rng.
std::atomic<std::uint64_t> failing_one_in{0};
thread_local rng check_rng{0};
// Checks failed on this thread. The check runs on the thread whose get it is for, so a get that
// sees this grow went on past a failed connection: through the full walk (scan_idle()).
thread_local std::uint64_t checks_failed_here = 0;

class FullWalkStress : public ::testing::TestWithParam<std::uint32_t> {
 protected:
  void run() {
    const netpool::test::idle_stripes pinned(GetParam());
    netpool::pool_config<tracked_conn> cfg;
    cfg.factory = [this](clock_type::time_point) -> netpool::result<tracked_conn> {
      return tracked_conn(registry_);
    };
    cfg.max_size = pool_size;
    cfg.dial_timeout = 60s;  // past get_deadline: a get_for()'s dial runs on a dialer thread
    cfg.health_check = [this](tracked_conn& c) {
      if (!c.claim()) {
        ownership_violations_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      c.unclaim();
      // relaxed: set by the main thread between phases; the barrier orders it before this get.
      const std::uint64_t one_in = failing_one_in.load(std::memory_order_relaxed);
      if (one_in == 0 || check_rng.next() % one_in != 0) return true;
      ++checks_failed_here;
      return false;
    };
    auto created = netpool::pool<tracked_conn>::create(std::move(cfg));
    ASSERT_TRUE(created) << created.error().message();
    pool_.emplace(std::move(*created));
    failing_one_in.store(0, std::memory_order_relaxed);
    ASSERT_NO_FATAL_FAILURE(netpool::test::open_idle(*pool_, pool_size));

    std::barrier phase(workers + 1);  // the workers and this thread, which checks between phases
    std::vector<std::thread> threads;
    threads.reserve(workers);
    for (int t = 0; t < workers; ++t) threads.emplace_back([this, t, &phase] { work(t, phase); });

    const auto stop_at = clock_type::now() + run_time;
    int rounds = 0;
    for (; rounds < max_rounds; ++rounds) {
      // After a failed round, one more (the workers learn of the end at the next barrier).
      const bool last = rounds + 1 == max_rounds || clock_type::now() >= stop_at || HasFailure();
      stop_.store(last, std::memory_order_relaxed);  // read by the workers after the next barrier
      failing_one_in.store(32, std::memory_order_relaxed);
      phase.arrive_and_wait();  // churn and spread start
      phase.arrive_and_wait();  // ... and end
      // A get served before the dial it posted ended leaves that dial's connection to become idle
      // later; the drain's count holds once no dial runs.
      EXPECT_TRUE(wait_for([&] { return pool_->stats().dialing == 0; }, 60s));
      failing_one_in.store(8, std::memory_order_relaxed);
      phase.arrive_and_wait();  // drain starts
      phase.arrive_and_wait();  // ... and ends
      check_drained(rounds);
      if (last) break;
    }
    failing_one_in.store(0, std::memory_order_relaxed);
    phase.arrive_and_wait();  // every worker gives back what it holds
    phase.arrive_and_wait();
    for (auto& t : threads) t.join();

    EXPECT_EQ(ownership_violations_.load(), 0u) << "a connection had two holders at once";
    EXPECT_EQ(unexpected_.load(), 0u) << "first unexpected result: " << first_unexpected();
    EXPECT_GT(full_walk_gets_.load(), 0u) << "no get went on past a failed check: the full walk never ran";
    ASSERT_TRUE(wait_for([&] { return pool_->stats().dialing == 0; }, 60s));
    const netpool::pool_stats s = pool_->stats();
    EXPECT_EQ(s.in_use, 0u);
    EXPECT_EQ(s.idle, s.active);
    EXPECT_EQ(static_cast<long>(s.active), registry_.live());
    EXPECT_EQ(netpool::test::idle_found_by_a_fresh_thread(*pool_), s.idle);
    // The format of pool_stress_test.cpp's summaries ("[...] ops N"), which scripts/reliability.sh sums.
    std::printf(
        "  [max_size %zu, %d threads, %u stripes, full walk] ops %llu: %d rounds, %llu gets that went on "
        "past a failed check, %llu exhausted\n",
        pool_size, workers, GetParam(), static_cast<unsigned long long>(get_calls_.load()), rounds + 1,
        static_cast<unsigned long long>(full_walk_gets_.load()),
        static_cast<unsigned long long>(exhausted_.load()));
    pool_.reset();
    EXPECT_EQ(registry_.live(), 0) << "made " << registry_.made() << ", closed " << registry_.closed();
    EXPECT_EQ(registry_.double_closes(), 0);
  }

 private:
  // Each round's three phases on one worker, between the main thread's barriers.
  void work(int id, std::barrier<>& phase) {
    const netpool::test::home_stripe home(id % static_cast<int>(GetParam()));
    check_rng = rng(static_cast<std::uint64_t>(id) + 101);
    rng r(static_cast<std::uint64_t>(id) + 1);
    std::vector<lease_type> held;
    held.reserve(quota);
    for (;;) {
      phase.arrive_and_wait();
      const bool last = stop_.load(std::memory_order_relaxed);
      for (int step = 0; step < churn_steps; ++step) {
        return_some(held, 1 + r.below(16), r);
        refill(held, r);
      }
      return_some(held, r.below(static_cast<unsigned>(held.size()) + 1), r);  // spread
      phase.arrive_and_wait();
      phase.arrive_and_wait();
      drain(held);
      held_after_drain_[static_cast<std::size_t>(id)].store(held.size(), std::memory_order_relaxed);
      phase.arrive_and_wait();
      if (last) break;
    }
    phase.arrive_and_wait();
    while (!held.empty()) return_some(held, held.size(), r);
    phase.arrive_and_wait();
  }

  // Gives back n of `held` (or all it has), chosen at random; one in 16 discarded.
  void return_some(std::vector<lease_type>& held, std::size_t n, rng& r) {
    for (n = std::min(n, held.size()); n > 0; --n) {
      const std::size_t k = r.below(static_cast<unsigned>(held.size()));
      std::swap(held[k], held.back());
      held.back()->unclaim();
      if (r.below(16) == 0) {
        if (const std::error_code ec = held.back().discard()) note_unexpected("discard: " + ec.message());
      }
      held.pop_back();  // ~lease(): back to the pool
    }
  }

  // Takes connections until `held` is at its quota, or a try_get() says exhausted.
  void refill(std::vector<lease_type>& held, rng& r) {
    while (held.size() < quota) {
      const bool try_only = r.below(2) == 0;
      const std::uint64_t failed_before = checks_failed_here;
      get_calls_.fetch_add(1, std::memory_order_relaxed);
      auto l = try_only ? pool_->try_get() : pool_->get_for(get_deadline);
      count_full_walk(failed_before);
      if (!l) {
        if (try_only && l.error() == errc::exhausted) {
          exhausted_.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        note_unexpected(std::string(try_only ? "try_get: " : "get_for: ") + l.error().message());
        return;
      }
      take(held, std::move(*l));
    }
  }

  // try_get() until exhausted. No connection is returned meanwhile (the others drain too).
  void drain(std::vector<lease_type>& held) {
    for (;;) {
      const std::uint64_t failed_before = checks_failed_here;
      get_calls_.fetch_add(1, std::memory_order_relaxed);
      auto l = pool_->try_get();
      count_full_walk(failed_before);
      if (!l) {
        if (l.error() != errc::exhausted) note_unexpected("drain: " + l.error().message());
        exhausted_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      take(held, std::move(*l));
    }
  }

  void take(std::vector<lease_type>& held, lease_type l) {
    if (!l->claim()) ownership_violations_.fetch_add(1, std::memory_order_relaxed);
    l->touch();  // a plain write: two holders at once are a data race under TSan
    held.push_back(std::move(l));
  }

  void check_drained(int round) {
    const netpool::pool_stats s = pool_->stats();
    std::size_t held = 0;
    for (const auto& h : held_after_drain_) held += h.load(std::memory_order_relaxed);
    EXPECT_EQ(s.idle, 0u) << "round " << round << ": every try_get said exhausted with " << s.idle
                          << " connections idle and nothing returned meanwhile";
    EXPECT_EQ(s.in_use, held) << "round " << round;
    EXPECT_EQ(s.active, s.idle + s.in_use) << "round " << round;
  }

  void count_full_walk(std::uint64_t checks_failed_before) {
    if (checks_failed_here != checks_failed_before) full_walk_gets_.fetch_add(1, std::memory_order_relaxed);
  }

  void note_unexpected(const std::string& what) {
    if (unexpected_.fetch_add(1) == 0) {
      const std::lock_guard<std::mutex> lock(first_mutex_);
      first_unexpected_ = what;
    }
  }
  std::string first_unexpected() {
    const std::lock_guard<std::mutex> lock(first_mutex_);
    return first_unexpected_;
  }

  connection_registry registry_{std::size_t{1} << 20};
  std::optional<netpool::pool<tracked_conn>> pool_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> held_after_drain_[workers] = {};
  std::atomic<std::uint64_t> ownership_violations_{0};
  std::atomic<std::uint64_t> unexpected_{0};
  std::atomic<std::uint64_t> get_calls_{0};  // try_get() and get_for() calls of the workers
  std::atomic<std::uint64_t> exhausted_{0};
  std::atomic<std::uint64_t> full_walk_gets_{0};
  std::mutex first_mutex_;
  std::string first_unexpected_;
};

TEST_P(FullWalkStress, NearlyExhaustedLargePool) {
  run();
}

INSTANTIATE_TEST_SUITE_P(Stripes, FullWalkStress, ::testing::Values(2u, 4u),
                         [](const ::testing::TestParamInfo<std::uint32_t>& info) {
                           return "stripes" + std::to_string(info.param);
                         });

}  // namespace
