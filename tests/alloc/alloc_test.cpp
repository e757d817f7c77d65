// Heap allocations on the pools' hot paths, counted by replacing the global operator new/delete
// (every form: plain, array, nothrow, aligned) and malloc/calloc/realloc/free (forwarded to glibc's
// __libc_* entry points). This binary is not built under sanitizers, which replace them too.
//
// Only allocations inside a measured window count: the window opens after warm-up (the first get
// dials, gtest allocates, std::thread allocates its state) and closes before any assertion.
// The same allocator can make operator new throw std::bad_alloc on the calling thread after a given
// number of allocations, and counts the heap blocks alive: out_of_memory_test.cpp uses both.
// Guarantees checked: after warm-up, get+put of an idle connection allocates nothing on pool (with
// idle tracking and a health check too) and lean_pool, whichever acquire call is used; a blocked
// get served by a hand-off from another thread allocates nothing; nor does a wait that times out
// or is cancelled through a stop_token; and a pool's own threads allocate nothing of their own.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <ostream>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../unit/tracked_connection.hpp"
#include "netpool/dialer.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "test_support.hpp"

// ---- counting allocator ------------------------------------------------------------------------

namespace {
std::atomic<std::uint64_t> g_allocations{0};  // every successful allocation, any API
std::atomic<std::int64_t> g_live_blocks{0};   // allocated and not yet freed, any API
// out_of_memory_test.cpp: operator new on this thread throws after this many more (0: never).
thread_local int t_fail_countdown = 0;
// BackgroundAllocTest: allocations on threads the test has not marked as its own (a pool's
// threads), any API.
thread_local bool t_foreground = false;
std::atomic<std::uint64_t> g_background_allocations{0};
void count_allocation() noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  g_live_blocks.fetch_add(1, std::memory_order_relaxed);
  if (!t_foreground) g_background_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

namespace netpool::test {
void fail_operator_new_after(int successes) noexcept {
  t_fail_countdown = successes + 1;
}
void stop_failing_operator_new() noexcept {
  t_fail_countdown = 0;
}
bool operator_new_failure_pending() noexcept {
  return t_fail_countdown > 0;
}
std::int64_t live_heap_blocks() noexcept {
  return g_live_blocks.load();
}
}  // namespace netpool::test

extern "C" {
// glibc's own allocator entry points: the replacements below forward to them.
// NOLINTBEGIN(bugprone-reserved-identifier)
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
// NOLINTEND(bugprone-reserved-identifier)

void* malloc(std::size_t size) {
  void* p = __libc_malloc(size);
  if (p != nullptr) {
    count_allocation();
  }
  return p;
}
void* calloc(std::size_t n, std::size_t size) {
  void* p = __libc_calloc(n, size);
  if (p != nullptr) {
    count_allocation();
  }
  return p;
}
void* realloc(void* old, std::size_t size) {
  void* p = __libc_realloc(old, size);
  if (p != nullptr) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (p != nullptr && !t_foreground) g_background_allocations.fetch_add(1, std::memory_order_relaxed);
  // Live blocks: a new one from nothing, one fewer when realloc(p, 0) frees; otherwise one for one.
  if (old == nullptr && p != nullptr) g_live_blocks.fetch_add(1, std::memory_order_relaxed);
  if (old != nullptr && p == nullptr && size == 0) g_live_blocks.fetch_sub(1, std::memory_order_relaxed);
  return p;
}
void free(void* p) {
  if (p != nullptr) g_live_blocks.fetch_sub(1, std::memory_order_relaxed);
  __libc_free(p);
}
}

namespace {
void counted_delete(void* p) noexcept {
  if (p != nullptr) g_live_blocks.fetch_sub(1, std::memory_order_relaxed);
  __libc_free(p);
}
void fail_if_asked() {
  if (t_fail_countdown > 0 && --t_fail_countdown == 0) throw std::bad_alloc();
}
void* counted_new(std::size_t size) {
  fail_if_asked();
  void* p = __libc_malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  count_allocation();
  return p;
}
void* counted_new(std::size_t size, std::align_val_t align) {
  fail_if_asked();
  void* p = __libc_memalign(static_cast<std::size_t>(align), size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  count_allocation();
  return p;
}
}  // namespace

void* operator new(std::size_t size) {
  return counted_new(size);
}
void* operator new[](std::size_t size) {
  return counted_new(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_new(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_new(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t align) {
  return counted_new(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_new(size, align);
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  try {
    return counted_new(size, align);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  try {
    return counted_new(size, align);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  counted_delete(p);
}
void operator delete[](void* p) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::size_t) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  counted_delete(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  counted_delete(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_delete(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_delete(p);
}

namespace {

using namespace std::chrono_literals;
using netpool::test::connection_registry;
using netpool::test::factory_control;
using netpool::test::tracked_conn;
using lease_type = netpool::lease<tracked_conn>;

// Allocations made by `f` (on any thread, while it runs).
template <class F>
std::uint64_t allocations_in(F&& f) {
  const std::uint64_t before = g_allocations.load(std::memory_order_seq_cst);
  f();
  return g_allocations.load(std::memory_order_seq_cst) - before;
}

constexpr int cycles = 10'000;

// Makes `p` observable, so that the compiler cannot elide a new/delete or malloc/free pair (which
// C++14 allows and clang does).
void escape(void* p) {
  asm volatile("" : : "g"(p) : "memory");
}

// The counter itself must see allocations, or every zero below would be meaningless.
TEST(AllocCounterTest, CountsNewAndMalloc) {
  const auto n = allocations_in([] {
    auto* p = new int(1);
    escape(p);
    delete p;
    auto* a = new int[4];
    escape(a);
    delete[] a;
    void* m = std::malloc(16);
    escape(m);
    std::free(m);
    struct alignas(64) big {
      char c[64];
    };
    auto* b = new big;
    escape(b);
    delete b;
  });
  EXPECT_EQ(n, 4u);
}

enum class flavour { lean, standard, idle_tracking, health_check };

void PrintTo(flavour f, std::ostream* os) {
  *os << static_cast<int>(f);
}

struct flavour_name {
  std::string operator()(const ::testing::TestParamInfo<flavour>& info) const {
    switch (info.param) {
      case flavour::lean:
        return "lean_pool";
      case flavour::standard:
        return "pool";
      case flavour::idle_tracking:
        return "pool_with_max_idle_time";
      case flavour::health_check:
        return "pool_with_health_check";
    }
    return "unknown";
  }
};

class AllocTest : public ::testing::TestWithParam<flavour> {
 protected:
  netpool::pool_config<tracked_conn> config(std::size_t max_size) {
    netpool::pool_config<tracked_conn> c;
    c.factory = factory.function();
    c.max_size = max_size;
    if (GetParam() == flavour::idle_tracking) c.max_idle_time = 10min;
    if (GetParam() == flavour::health_check)
      c.health_check = [](tracked_conn& conn) { return !conn.broken(); };
    return c;
  }

  // Runs `body(pool)` for whichever pool the parameter names, after warming it up.
  template <class Body>
  void with_pool(std::size_t max_size, Body body) {
    if (GetParam() == flavour::lean) {
      auto pool = netpool::lean_pool<tracked_conn>::create(config(max_size)).value();
      warm_up(pool, max_size);
      body(pool);
    } else {
      auto pool = netpool::pool<tracked_conn>::create(config(max_size)).value();
      warm_up(pool, max_size);
      body(pool);
    }
  }

  template <class P>
  static void warm_up(P& pool, std::size_t n) {
    std::vector<lease_type> all;
    for (std::size_t i = 0; i < n; ++i) {
      auto l = pool.get();
      ASSERT_TRUE(l);
      all.push_back(std::move(*l));
    }
    all.clear();
    for (int i = 0; i < 100; ++i) {
      auto l = pool.get();
      ASSERT_TRUE(l);
    }
  }

  connection_registry registry;
  factory_control factory{registry};
};

INSTANTIATE_TEST_SUITE_P(Pools, AllocTest,
                         ::testing::Values(flavour::lean, flavour::standard, flavour::idle_tracking,
                                           flavour::health_check),
                         flavour_name{});

TEST_P(AllocTest, GetPutCyclesAllocateNothing) {
  with_pool(4, [&](auto& pool) {
    int failures = 0;
    const auto n = allocations_in([&] {
      for (int i = 0; i < cycles; ++i) {
        auto l = pool.get();
        if (!l) ++failures;
      }
    });
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(n, 0u) << n << " allocations in " << cycles << " get+put cycles";
  });
}

TEST_P(AllocTest, EveryAcquireAndReturnFormAllocatesNothing) {
  with_pool(8, [&](auto& pool) {  // five leases are held at once below
    std::stop_source stop;        // allocates its shared state here, outside the window
    int failures = 0;
    const auto n = allocations_in([&] {
      for (int i = 0; i < cycles; ++i) {
        auto a = pool.get_for(100ms);
        auto b = pool.get_until(std::chrono::steady_clock::now() + 100ms);
        auto c = pool.try_get();
        auto d = pool.get(stop.get_token());
        auto e = pool.get_for(100ms, stop.get_token());
        if (!a || !b || !c || !d || !e) {
          ++failures;
          continue;
        }
        if (pool.put(std::move(*a))) ++failures;
        if (b->release()) ++failures;
        lease_type moved = std::move(*c);  // the destructor returns it
        *d = std::move(*e);                // assignment returns d's connection
      }
    });
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(n, 0u);
  });
}

TEST_P(AllocTest, StatsAndLenAllocateNothing) {
  with_pool(8, [&](auto& pool) {
    std::size_t sink = 0;
    const auto n = allocations_in([&] {
      for (int i = 0; i < 1000; ++i) sink += pool.stats().active + pool.len();
    });
    EXPECT_EQ(sink, 2u * 8u * 1000u);  // 8 active + 8 idle, 1000 times
    EXPECT_EQ(n, 0u);
  });
}

// A get that waits and is then served by a put from another thread. The waiting thread exists
// before the window opens (std::thread allocates); inside it, it calls get(), blocks, receives
// the hand-off and returns the connection.
TEST_P(AllocTest, BlockedGetServedByAHandOffAllocatesNothing) {
  with_pool(1, [&](auto& pool) {
    auto held = pool.get();
    ASSERT_TRUE(held);
    std::atomic<int> phase{0};  // 0: parked, 1: go, 2: done
    bool waiter_ok = false;
    std::thread waiter([&] {
      phase.wait(0);
      auto l = pool.get();
      waiter_ok = static_cast<bool>(l);
      l = netpool::result<lease_type>(lease_type{});  // return it inside the window
      phase.store(2);
      phase.notify_one();
    });
    const auto n = allocations_in([&] {
      phase.store(1);
      phase.notify_one();
      while (pool.stats().waiters == 0) std::this_thread::yield();
      (void)held->release();  // hand-off to the waiter
      phase.wait(1);
    });
    waiter.join();
    EXPECT_TRUE(waiter_ok);
    EXPECT_EQ(n, 0u) << "a hand-off to a blocked waiter allocated";
  });
}

TEST_P(AllocTest, WaitThatTimesOutAllocatesNothing) {
  with_pool(1, [&](auto& pool) {
    auto held = pool.get();
    ASSERT_TRUE(held);
    std::error_code ec;
    const auto n = allocations_in([&] {
      for (int i = 0; i < 20; ++i) ec = pool.get_for(1ms).error();
    });
    EXPECT_EQ(ec, netpool::errc::timeout);
    EXPECT_EQ(n, 0u);
  });
}

TEST_P(AllocTest, WaitCancelledByAStopTokenAllocatesNothing) {
  with_pool(1, [&](auto& pool) {
    auto held = pool.get();
    ASSERT_TRUE(held);
    std::stop_source stop;
    std::stop_token token = stop.get_token();
    std::atomic<int> phase{0};
    std::error_code ec;
    std::thread waiter([&] {
      phase.wait(0);
      ec = pool.get(token).error();
      phase.store(2);
      phase.notify_one();
    });
    const auto n = allocations_in([&] {
      phase.store(1);
      phase.notify_one();
      while (pool.stats().waiters == 0) std::this_thread::yield();
      stop.request_stop();
      phase.wait(1);
    });
    waiter.join();
    EXPECT_EQ(ec, netpool::errc::cancelled);
    EXPECT_EQ(n, 0u);
  });
}

// The default connection type against a loopback echo server: pool<socket> probes a connection
// idle longer than probe_after before lending it (a recv(MSG_PEEK) syscall): with probe_after 0
// every borrow is probed. Neither path may allocate.
TEST(SocketAllocTest, PoolOfSocketsGetPutAllocatesNothing) {
  netpool::test::echo_server server;
  for (const auto probe_after : {std::chrono::nanoseconds(500ms), std::chrono::nanoseconds(0)}) {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_size = 2;
    cfg.probe_after = probe_after;
    const std::uint64_t accepted_before = server.accepted_total();
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
    for (int i = 0; i < 100; ++i) {
      auto l = pool.get();
      ASSERT_TRUE(l) << l.error().message();
    }
    // The counter is process-wide, and the server's thread allocates when it takes on a
    // connection (its connection list, its poll set), on a loaded machine perhaps not yet. Wait
    // until it has accepted this pool's connection, let go of the previous pool's, and is blocked
    // in poll() with just this one: it then runs no code during the measured window (the gets
    // below send nothing; a probe only peeks at the client's socket).
    ASSERT_TRUE(netpool::test::wait_for([&] {
      return server.accepted_total() == accepted_before + 1 && server.parked_with(1);
    })) << "accepted "
        << server.accepted_total() - accepted_before << ", open " << server.connection_count();
    int failures = 0;
    const auto n = allocations_in([&] {
      for (int i = 0; i < cycles; ++i) {
        auto l = pool.get_for(1s);
        if (!l) ++failures;
      }
    });
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(n, 0u) << "probe_after " << probe_after.count() << " ns";
    EXPECT_EQ(pool.stats().dials, 1u);
  }
}

// Not a guarantee the issue asks for, measured so that a change shows: discarding a connection
// and dialing a new one through a factory that itself does not allocate.
TEST_P(AllocTest, DiscardAndRedialWithANonAllocatingFactory) {
  with_pool(2, [&](auto& pool) {
    int failures = 0;
    const auto n = allocations_in([&] {
      for (int i = 0; i < 1000; ++i) {
        auto l = pool.get();
        if (!l || l->discard()) ++failures;
      }
    });
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(n, 0u);
  });
}

// A pool's own threads (the maintainer, the dialers) allocate nothing of their own, so running
// out of memory can reach them only through user code (the factory, a health check, hooks), whose
// throws the pool catches and turns into errors (PoolTest.FactoryThatThrowsBecomesAnErrorAndFreesTheSlot,
// HooksTest, StandardPoolTest.HealthCheckThatThrowsClosesTheConnection): their noexcept loops never
// meet a std::bad_alloc. Counted on every thread but this one, over a life that gives each of them
// work: the maintainer dials up to min_size, runs keepalive checks and closes idle connections past
// max_idle_time; dialer threads dial for callers whose deadline is shorter than the dial timeout.
// (Starting a thread allocates its state on the thread that starts it: this one.)
TEST(BackgroundAllocTest, PoolThreadsAllocateNothingOfTheirOwn) {
  t_foreground = true;
  // The counter must see another thread's allocations, or the zero below would mean nothing.
  const std::uint64_t seen_before = g_background_allocations.load();
  std::thread([] {
    auto* p = new int(1);
    escape(p);
    delete p;
  }).join();
  ASSERT_GE(g_background_allocations.load() - seen_before, 1u);

  connection_registry registry;
  factory_control factory{registry};
  std::atomic<int> checks{0};
  std::atomic<int> dials_elsewhere{0};  // dials on the pool's threads, not on this one
  netpool::pool_config<tracked_conn> cfg;
  cfg.factory = [&dials_elsewhere, dial = factory.function()](auto deadline) {
    if (!t_foreground) dials_elsewhere.fetch_add(1);
    return dial(deadline);
  };
  cfg.max_size = 4;
  cfg.min_size = 2;
  cfg.dial_timeout = 30s;  // longer than the gets' deadlines below: their dials are posted
  cfg.max_idle_time = 20ms;
  cfg.keepalive_interval = 5ms;
  cfg.health_check = [&](tracked_conn&) {
    checks.fetch_add(1);
    return true;
  };
  const std::uint64_t before = g_background_allocations.load();
  {
    auto pool = netpool::pool<tracked_conn>::create(std::move(cfg)).value();
    ASSERT_EQ(pool.wait_for_min_size(std::chrono::steady_clock::now() + 30s), 2u);
    std::vector<lease_type> held;
    for (int i = 0; i < 4; ++i) {
      auto l = pool.get_for(10s);
      ASSERT_TRUE(l) << l.error().message();
      held.push_back(std::move(*l));
    }
    held.clear();
    // Keepalive rounds check the idle ones; the two above min_size are closed once idle 20 ms.
    EXPECT_TRUE(netpool::test::wait_for([&] { return pool.stats().closed_idle >= 2 && checks.load() >= 8; }))
        << "closed idle: " << pool.stats().closed_idle << ", checks: " << checks.load();
    EXPECT_EQ(pool.stats().dials, 4u);
    EXPECT_EQ(dials_elsewhere.load(), 4) << "two by the maintainer (min_size), two by dialer threads";
  }  // the pool's threads are joined here
  EXPECT_EQ(g_background_allocations.load() - before, 0u);
  EXPECT_EQ(registry.live(), 0);
  t_foreground = false;
}

}  // namespace
