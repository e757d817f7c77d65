// tracked_connection.hpp — a user-defined connection type whose every life event is recorded, and a
// factory the tests can steer (fail, throw, hold at a gate). Shared by the unit and stress suites.
//
//   netpool::test::connection_registry registry;
//   netpool::test::factory_control factory(registry);
//   netpool::pool_config<netpool::test::tracked_conn> cfg;
//   cfg.factory = factory.function();
//   auto pool = netpool::pool<netpool::test::tracked_conn>::create(std::move(cfg)).value();
//   ...
//   EXPECT_EQ(registry.live(), 0);            // every connection made was closed...
//   EXPECT_EQ(registry.double_closes(), 0);   // ...exactly once
//
// Like rigtorp's MPMCQueue TestType: a connection is "closed" when an object that still owns it is
// destroyed (a moved-from object owns nothing). Each connection has an id; the registry counts the
// closes per id, so a double close or a leak names the connection.
// Thread safety: the registry and factory_control may be used from any thread. A tracked_conn is
// used by its owner only, except claim()/unclaim(), which are atomic on purpose: they detect two
// owners at once.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "netpool/config.hpp"
#include "netpool/error.hpp"
#include "netpool/result.hpp"

namespace netpool::test {

class connection_registry {
 public:
  explicit connection_registry(std::size_t capacity = std::size_t{1} << 16)
      : capacity_(capacity), closes_(new std::atomic<int>[capacity]) {
    for (std::size_t i = 0; i < capacity_; ++i) closes_[i].store(0, std::memory_order_relaxed);
  }
  connection_registry(const connection_registry&) = delete;
  connection_registry& operator=(const connection_registry&) = delete;
  ~connection_registry() = default;

  // A new connection's id.
  int open_new() noexcept {
    const long id = made_.fetch_add(1, std::memory_order_relaxed);
    if (static_cast<std::size_t>(id) >= capacity_) overflow_.fetch_add(1, std::memory_order_relaxed);
    return static_cast<int>(id);
  }

  // Connection `id` is being closed.
  void on_close(int id) noexcept {
    closed_.fetch_add(1, std::memory_order_relaxed);
    if (id < 0 || static_cast<std::size_t>(id) >= capacity_) return;  // counted in overflow()
    if (closes_[static_cast<std::size_t>(id)].fetch_add(1, std::memory_order_relaxed) != 0) {
      double_closes_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  [[nodiscard]] long made() const noexcept { return made_.load(std::memory_order_relaxed); }
  [[nodiscard]] long closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
  // Connections made and not yet closed. Reads made before closed, so that under concurrency it
  // may under-count but never over-count.
  [[nodiscard]] long live() const noexcept {
    const long m = made();
    return m - closed();
  }
  [[nodiscard]] long double_closes() const noexcept { return double_closes_.load(std::memory_order_relaxed); }
  [[nodiscard]] long overflow() const noexcept { return overflow_.load(std::memory_order_relaxed); }
  [[nodiscard]] int close_count(int id) const noexcept {
    return closes_[static_cast<std::size_t>(id)].load(std::memory_order_relaxed);
  }

 private:
  std::size_t capacity_;
  std::unique_ptr<std::atomic<int>[]> closes_;
  std::atomic<long> made_{0};
  std::atomic<long> closed_{0};
  std::atomic<long> double_closes_{0};
  std::atomic<long> overflow_{0};
};

class tracked_conn {
 public:
  explicit tracked_conn(connection_registry& registry) noexcept
      : registry_(&registry), id_(registry.open_new()) {}
  tracked_conn(tracked_conn&& other) noexcept
      : registry_(std::exchange(other.registry_, nullptr)),
        id_(other.id_),
        broken_(other.broken_),
        uses_(other.uses_),
        borrowed_(other.borrowed_.load(std::memory_order_relaxed)) {}
  // The pool constructs connections in place and never assigns them.
  tracked_conn& operator=(tracked_conn&&) = delete;
  tracked_conn(const tracked_conn&) = delete;
  tracked_conn& operator=(const tracked_conn&) = delete;
  ~tracked_conn() {
    if (registry_ != nullptr) registry_->on_close(id_);
  }

  [[nodiscard]] int id() const noexcept { return id_; }
  [[nodiscard]] bool owns_connection() const noexcept { return registry_ != nullptr; }

  // A flag the health checks in the tests look at (written by the owner before it returns the
  // connection; the pool's hand-over orders it before the check).
  void mark_broken() noexcept { broken_ = true; }
  [[nodiscard]] bool broken() const noexcept { return broken_; }

  // Exclusive-ownership check: true if nobody else holds this connection now.
  [[nodiscard]] bool claim() noexcept { return !borrowed_.exchange(true, std::memory_order_acq_rel); }
  void unclaim() noexcept { borrowed_.store(false, std::memory_order_release); }
  // Plain (non-atomic) use counter: two owners at once would be a data race that TSan reports.
  void touch() noexcept { ++uses_; }
  [[nodiscard]] std::uint64_t uses() const noexcept { return uses_; }

 private:
  connection_registry* registry_;
  int id_;
  bool broken_ = false;
  std::uint64_t uses_ = 0;
  std::atomic<bool> borrowed_{false};
};

// A factory the test steers. Every switch may be flipped from any thread.
class factory_control {
 public:
  explicit factory_control(connection_registry& registry) noexcept : registry_(&registry) {}
  factory_control(const factory_control&) = delete;
  factory_control& operator=(const factory_control&) = delete;
  ~factory_control() = default;

  // The callable to put in pool_config::factory. `this` must outlive the pool.
  [[nodiscard]] factory_function<tracked_conn> function() {
    return [this](std::chrono::steady_clock::time_point deadline) { return call(deadline); };
  }

  // Every call from now on fails with `code` (until succeed()).
  void fail_with(std::error_code code) noexcept {
    fail_code_value_.store(code.value(), std::memory_order_relaxed);
    fail_category_.store(&code.category(), std::memory_order_relaxed);
    mode_.store(mode::fail, std::memory_order_release);
  }
  // Every call from now on throws std::runtime_error.
  void throw_always() noexcept { mode_.store(mode::throw_exception, std::memory_order_release); }
  void succeed() noexcept { mode_.store(mode::ok, std::memory_order_release); }

  // While the gate is closed, calls wait inside the factory (until it opens or their deadline
  // passes: then they return errc::timeout, as a well-behaved dialer does).
  void close_gate() noexcept { gate_open_.store(false, std::memory_order_release); }
  void open_gate() noexcept { gate_open_.store(true, std::memory_order_release); }
  // One call held at the gate (or, if none is, the next one to arrive there) leaves it at once,
  // failing with `code`; the others stay. Lets a test end a gated dial with an error exactly when
  // it wants to, instead of on a deadline that a slow machine may reach too early.
  void fail_one_at_gate(std::error_code code) noexcept {
    gate_fail_value_.store(code.value(), std::memory_order_relaxed);
    gate_fail_category_.store(&code.category(), std::memory_order_relaxed);
    gate_failures_.fetch_add(1, std::memory_order_release);
  }

  [[nodiscard]] int calls() const noexcept { return calls_.load(std::memory_order_acquire); }
  [[nodiscard]] int failures() const noexcept { return failures_.load(std::memory_order_acquire); }
  // Calls currently held at the gate.
  [[nodiscard]] int at_gate() const noexcept { return at_gate_.load(std::memory_order_acquire); }
  // The deadline the last call was given.
  [[nodiscard]] std::chrono::steady_clock::time_point last_deadline() const noexcept {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_deadline_.load(std::memory_order_acquire)));
  }

 private:
  enum class mode { ok, fail, throw_exception };

  result<tracked_conn> call(std::chrono::steady_clock::time_point deadline) {
    calls_.fetch_add(1, std::memory_order_acq_rel);
    last_deadline_.store(deadline.time_since_epoch().count(), std::memory_order_release);
    if (!gate_open_.load(std::memory_order_acquire)) {
      at_gate_.fetch_add(1, std::memory_order_acq_rel);
      while (!gate_open_.load(std::memory_order_acquire)) {
        if (take_gate_failure()) {
          at_gate_.fetch_sub(1, std::memory_order_acq_rel);
          failures_.fetch_add(1, std::memory_order_acq_rel);
          return std::error_code(gate_fail_value_.load(std::memory_order_relaxed),
                                 *gate_fail_category_.load(std::memory_order_relaxed));
        }
        if (std::chrono::steady_clock::now() >= deadline) {
          at_gate_.fetch_sub(1, std::memory_order_acq_rel);
          failures_.fetch_add(1, std::memory_order_acq_rel);
          return errc::timeout;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
      at_gate_.fetch_sub(1, std::memory_order_acq_rel);
    }
    switch (mode_.load(std::memory_order_acquire)) {
      case mode::ok:
        return tracked_conn(*registry_);
      case mode::fail:
        failures_.fetch_add(1, std::memory_order_acq_rel);
        return std::error_code(fail_code_value_.load(std::memory_order_relaxed),
                               *fail_category_.load(std::memory_order_relaxed));
      case mode::throw_exception:
        failures_.fetch_add(1, std::memory_order_acq_rel);
        throw std::runtime_error("factory_control: told to throw");
    }
    return errc::dial_failed;
  }

  // Consumes one fail_one_at_gate() request, if there is one.
  bool take_gate_failure() noexcept {
    int n = gate_failures_.load(std::memory_order_acquire);
    while (n > 0) {
      if (gate_failures_.compare_exchange_weak(n, n - 1, std::memory_order_acq_rel,
                                               std::memory_order_acquire))
        return true;
    }
    return false;
  }

  connection_registry* registry_;
  std::atomic<mode> mode_{mode::ok};
  std::atomic<int> fail_code_value_{ECONNREFUSED};
  std::atomic<const std::error_category*> fail_category_{&std::generic_category()};
  std::atomic<bool> gate_open_{true};
  std::atomic<int> gate_failures_{0};  // fail_one_at_gate() requests not yet taken
  std::atomic<int> gate_fail_value_{ECONNREFUSED};
  std::atomic<const std::error_category*> gate_fail_category_{&std::generic_category()};
  std::atomic<int> calls_{0};
  std::atomic<int> failures_{0};
  std::atomic<int> at_gate_{0};
  std::atomic<std::chrono::steady_clock::duration::rep> last_deadline_{0};
};

// A health check on tracked_conn: false for a connection marked broken. Also asserts that nobody
// else holds the connection while it is checked.
inline bool healthy_unless_broken(tracked_conn& c) {
  if (!c.claim()) {
    ADD_FAILURE() << "health check ran on connection " << c.id() << " while someone else held it";
    return false;
  }
  const bool ok = !c.broken();
  c.unclaim();
  return ok;
}

}  // namespace netpool::test
