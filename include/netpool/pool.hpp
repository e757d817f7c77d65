// netpool/pool.hpp — the connection pools: pool (standard) and lean_pool (basic).
//
//   netpool::pool_config<netpool::socket> cfg;
//   cfg.factory = netpool::tcp_dialer("127.0.0.1", 6379);
//   cfg.max_size = 16;
//   cfg.max_idle_time = std::chrono::minutes(1);
//   auto pool = netpool::pool<netpool::socket>::create(std::move(cfg));
//   if (!pool) return pool.error();                        // errc::invalid_config
//
//   auto conn = pool->get_for(std::chrono::milliseconds(100));  // blocks while all are busy
//   if (!conn) return conn.error();                        // timeout, dial error, pool_closed...
//   if ((*conn)->send_all("PING\r\n")) conn->discard();    // broken: close it, free the slot
//   // ~lease() puts it back; pool->stats() shows active / idle / in_use / waiters
//
// pool:      max/min size, dial timeout, max idle time, health check, lifetime, keepalive, leak
//            detection, and a background maintainer thread that keeps min_size open and closes
//            stale idle connections.
// lean_pool: the same API without idle tracking, health check or thread — the shortest path.
// Both:      hooks (config.hpp), drain with close(deadline), resize with set_max_size().
//
// Thread safety: every member function may be called concurrently from any thread, except that
// the destructor and move assignment must not race with other calls on the same handle.
// Blocking: get(), get_for(), get_until() block while every connection is in use and the pool is
// full, and while dialing (bounded by dial_timeout). try_get() never waits and never dials (only
// the health check and on_borrow it runs on an idle connection, user code, may block). put,
// put_with_error, stats, len and close never block on the network themselves (close() does not
// wait for leased connections; it fails waiters at once). close(), and so the destructor, waits
// for the on_return and on_leak calls already running on other threads: do not close or destroy a
// pool while holding anything such a hook may wait for.
// Errors: see error.hpp. pool_closed after close(); timeout when the deadline passes (waiting or
// dialing); cancelled when the stop_token fires; the factory's own error when a dial fails.
// Lifetime: leases may outlive the pool; returning one then closes its connection.
#pragma once

#include <chrono>
#include <cstddef>
#include <stop_token>
#include <system_error>
#include <utility>

#include "netpool/config.hpp"
#include "netpool/detail/deadline.hpp"
#include "netpool/detail/pool_core.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/lease.hpp"
#include "netpool/result.hpp"
#include "netpool/socket.hpp"
#include "netpool/stats.hpp"

namespace netpool {

namespace detail {

template <class Key, class Conn, class Hash, class KeyEq>
class keyed_state;

// The API both pools share. Not used directly: see pool and lean_pool below.
template <class Conn, pool_kind Kind>
class pool_handle {
 public:
  using connection_type = Conn;
  using lease_type = lease<Conn>;
  using clock = std::chrono::steady_clock;

  pool_handle(pool_handle&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
  pool_handle& operator=(pool_handle&& other) noexcept {
    if (this != &other) {
      release_core();
      core_ = std::exchange(other.core_, nullptr);
    }
    return *this;
  }
  pool_handle(const pool_handle&) = delete;
  pool_handle& operator=(const pool_handle&) = delete;
  // Closes the pool (see close()). Leases still out stay valid; returning them closes them.
  // Blocking: waits for the maintainer and the dialer threads to stop. The maintainer stops at the
  // next connection of its round, but a dial in flight (a min_size refill, or a dial posted for a
  // caller) runs to its end first, at most dial_timeout, and so does the keepalive health check it
  // is running (a two-argument one is given health_check_timeout).
  ~pool_handle() { release_core(); }

  // Every get takes a trailing source_location, defaulted to the caller's: with leak detection on
  // (pool_config::leak_threshold) it says where a leaked lease was taken; otherwise it is unused.

  // Blocks until a connection is available (idle, or room to dial one).
  [[nodiscard, gnu::always_inline]] result<lease_type> get(
      source_location where = source_location::current()) noexcept {
    return acquire(clock::time_point::max(), nullptr, where);
  }
  // As get(), but returns errc::cancelled promptly once `stop` is requested. A dial on this
  // thread cannot be interrupted (lean_pool, or pool with background_maintenance = false; pool
  // otherwise hands it to a dialer thread): the stop is answered when it ends, within the
  // dial_timeout: errc::cancelled, the new connection pooled; or the dial's error if it failed.
  [[nodiscard]] result<lease_type> get(std::stop_token stop,
                                       source_location where = source_location::current()) noexcept {
    return acquire(clock::time_point::max(), &stop, where);
  }
  // As get(), but gives up with errc::timeout after `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] result<lease_type> get_for(std::chrono::duration<Rep, Period> timeout,
                                           source_location where = source_location::current()) noexcept {
    return acquire(detail::deadline_after(timeout), nullptr, where);
  }
  template <class Rep, class Period>
  [[nodiscard]] result<lease_type> get_for(std::chrono::duration<Rep, Period> timeout, std::stop_token stop,
                                           source_location where = source_location::current()) noexcept {
    return acquire(detail::deadline_after(timeout), &stop, where);
  }
  // As get(), but gives up with errc::timeout at `deadline`.
  [[nodiscard]] result<lease_type> get_until(clock::time_point deadline,
                                             source_location where = source_location::current()) noexcept {
    return acquire(deadline, nullptr, where);
  }
  [[nodiscard]] result<lease_type> get_until(clock::time_point deadline, std::stop_token stop,
                                             source_location where = source_location::current()) noexcept {
    return acquire(deadline, &stop, where);
  }
  // An idle connection now, or errc::exhausted. Never waits for one and never dials (dialing
  // blocks); the health check (a two-argument one bounded by health_check_timeout) and on_borrow
  // it runs on the idle connections it meets are user code, which may.
  [[nodiscard]] result<lease_type> try_get(source_location where = source_location::current()) noexcept {
    if (core_ == nullptr) return errc::pool_closed;
    return core_->acquire(clock::time_point::min(), pool_core<Conn>::acquire_mode::try_idle, nullptr, where);
  }

  // Returns a connection for reuse. Errors (nothing is lost in either case):
  //   empty_lease — the lease is empty (moved-from or already returned);
  //   wrong_pool  — it belongs to another pool; it stays in `l`, untouched;
  //   pool_closed — the pool was closed: the connection was closed; or this handle was moved
  //                 from: it stays in `l`, untouched, as for wrong_pool.
  std::error_code put(lease_type&& l) noexcept {
    if (std::error_code ec = check_ownership(l)) return ec;
    return l.release();
  }
  // Closes the connection and frees its slot so that a waiter can dial (after an I/O error).
  // Errors: empty_lease, wrong_pool and (moved-from handle) pool_closed, as for put(); after
  // close() it succeeds (the connection is closed either way, counted as closed_error).
  std::error_code put_with_error(lease_type&& l) noexcept {
    if (std::error_code ec = check_ownership(l)) return ec;
    return l.discard();
  }

  // Closes one idle connection now (the highest idle slot's: gets that miss their own recent slots
  // take the lowest, so the high ones are the least in demand), to give its resources back (another
  // pool's room under a shared limit: keyed_pool's global_max). Returns whether there was one. It
  // is not a get: no hook but on_close runs (close_reason::reclaimed), counted in closed_reclaimed.
  bool reclaim_idle() noexcept { return core_ != nullptr && core_->reclaim_idle(); }

  [[nodiscard]] pool_stats stats() const noexcept { return core_ != nullptr ? core_->stats() : pool_stats{}; }
  // Idle connections (the original's Len()).
  [[nodiscard]] std::size_t len() const noexcept { return core_ != nullptr ? core_->idle_count() : 0; }

  // Idempotent: wakes every waiter with errc::pool_closed, closes idle connections; connections
  // returned later are closed; get() returns pool_closed from now on. A dial already running (on
  // a dialer thread, or a caller's) is not waited for: it ends when the factory returns (within
  // dial_timeout for one that keeps its deadline, as tcp_dialer does) and its connection is
  // closed; until then stats() counts it in dialing and active. Once close() has returned, no
  // on_return or on_leak runs: it waits for those already running on other threads, unless it is
  // called from inside one (a hook may close its pool).
  void close() noexcept {
    if (core_ != nullptr) core_->close();
  }
  [[nodiscard]] bool closed() const noexcept { return core_ == nullptr || core_->is_closed(); }

  // Drain: as close() (waiters fail at once, idle connections close, gets return pool_closed),
  // then waits until every lent connection has come back — each is closed as it does — or
  // `deadline` passes. Returns how many were still lent at the end (0: fully drained); those are
  // closed whenever they come back. Blocks the caller (polling every few ms).
  std::size_t close(clock::time_point deadline) noexcept {
    return core_ != nullptr ? core_->close_and_drain(deadline) : 0;
  }

  // Changes max_size at run time, up to pool_config::max_size_limit (slots are preallocated).
  // Growing lets waiters dial at once. Shrinking closes surplus idle connections now and surplus
  // lent ones when they come back (close_reason::resize), never while in use; dials already in
  // flight finish, and their surplus is trimmed as they end (pool: by the maintainer's next round,
  // or the next maintain() without background maintenance; lean_pool: by the dial itself).
  // Errors: invalid_config (0, above max_size_limit, or below min_size), pool_closed.
  std::error_code set_max_size(std::size_t n) noexcept {
    return core_ != nullptr ? core_->set_max_size(n) : std::error_code(errc::pool_closed);
  }

  // The error of the most recent failed dial (an empty error_code if none has failed): what a
  // timeout while the backend is down was really about (ECONNREFUSED, or ETIMEDOUT for a dial that
  // ran out of dial_timeout). errc::pool_closed on a moved-from handle.
  [[nodiscard]] std::error_code last_dial_error() const noexcept {
    return core_ != nullptr ? core_->last_dial_error() : std::error_code(errc::pool_closed);
  }

 protected:
  explicit pool_handle(pool_core<Conn>* core) noexcept : core_(core) {}
  [[nodiscard]] pool_core<Conn>* core() const noexcept { return core_; }

  static result<pool_core<Conn>*> make_core(pool_config<Conn> config) {
    return pool_core<Conn>::create(std::move(config), Kind);
  }

 private:
  [[gnu::always_inline]] result<lease_type> acquire(clock::time_point deadline, const std::stop_token* stop,
                                                    source_location where) noexcept {
    if (core_ == nullptr) return errc::pool_closed;
    return core_->acquire(deadline, pool_core<Conn>::acquire_mode::wait, stop, where);
  }

  std::error_code check_ownership(const lease_type& l) const noexcept {
    if (l.empty()) return errc::empty_lease;
    if (core_ == nullptr) return errc::pool_closed;  // a moved-from handle: no pool behind it
    if (!l.belongs_to(core_)) return errc::wrong_pool;
    return {};
  }

  void release_core() noexcept {
    if (core_ != nullptr) std::exchange(core_, nullptr)->destroy_handle();
  }

  pool_core<Conn>* core_ = nullptr;
};

}  // namespace detail

// The standard pool (the original's New): max/min size, dial timeout, max idle time, health check,
// and a background maintainer thread.
template <class Conn = socket>
class pool : public detail::pool_handle<Conn, detail::pool_kind::standard> {
  using base = detail::pool_handle<Conn, detail::pool_kind::standard>;

 public:
  // Validates `config` (errc::invalid_config; validate_for_pool() says why), starts the
  // maintainer, and begins dialing min_size connections in the background (with
  // background_maintenance = false there is no maintainer: create() runs the first round itself,
  // dialing min_size on the calling thread, each dial bounded by dial_timeout). Never fails
  // because a dial failed; other errors: not_enough_memory, or a thread that could not start.
  [[nodiscard]] static result<pool> create(pool_config<Conn> config) {
    auto core = base::make_core(std::move(config));
    if (!core) return core.error();
    return pool(*core);
  }

  // One round of maintenance on the calling thread: advance the idle clock, close connections
  // idle longer than max_idle_time, dial up to min_size. For pools created with
  // background_maintenance = false; harmless otherwise. Returns how long until the next round is
  // due: nanoseconds::max() when nothing is (no time-based option is set, or, with a maintainer
  // thread, no connection is open). With background_maintenance = false and max_idle_time,
  // max_lifetime, keepalive_interval, probe_after or leak_threshold set, it is the tick period
  // even while the pool is empty: a connection a get dials later needs the rounds to age it.
  // The tick period is the finest of max_idle_time / 8, probe_after / 4 (Conn with probe()),
  // keepalive_interval / 4, leak_threshold / 4 and, for max_lifetime, a quarter of its jitter
  // window (at least 1 % of it), or an eighth of it without jitter; within [1 ms, 1 s].
  std::chrono::nanoseconds maintain() noexcept {
    return this->core() != nullptr ? this->core()->maintain_once() : std::chrono::nanoseconds::max();
  }

  // Closes every idle connection now and every lent one when it comes back (e.g. after a
  // failover), without failing waiters or recreating the pool; the maintainer refills min_size.
  void reset() noexcept {
    if (this->core() != nullptr) this->core()->reset();
  }

  // Blocks until min_size connections are open, the deadline passes, or the pool closes; returns
  // how many are open. create() does not wait for the warm-up unless background_maintenance is
  // false (and a failed warm-up dial never fails creation); call this when a service should not
  // take traffic before it is warm. It dials nothing itself: with background_maintenance = false
  // only maintain() refills, so this just waits out the deadline for a pool below min_size.
  std::size_t wait_for_min_size(std::chrono::steady_clock::time_point deadline) noexcept {
    return this->core() != nullptr ? this->core()->wait_for_min_size(deadline) : 0;
  }

  // Changes min_size at run time: the maintainer dials up to a higher one in the background; above
  // a lower one, idle connections age out by max_idle_time as usual.
  // Errors: invalid_config (above max_size), pool_closed.
  std::error_code set_min_size(std::size_t n) noexcept {
    return this->core() != nullptr ? this->core()->set_min_size(n) : std::error_code(errc::pool_closed);
  }

 private:
  // A keyed pool's waiting dial asks its sub-pool's core whether an idle connection can be taken
  // (keyed_state::has_idle()): not part of the API.
  template <class Key, class C, class Hash, class KeyEq>
  friend class detail::keyed_state;

  explicit pool(detail::pool_core<Conn>* core) noexcept : base(core) {}
};

// The basic pool (the original's NewBasic): no idle tracking, no health check, no thread. min_size
// connections are dialed once, at creation (a failed dial does not fail creation); they are not
// replenished. Rejects max_idle_time, health_check, max_lifetime, keepalive_interval and
// leak_threshold with errc::invalid_config (validate_for_lean_pool() says which).
template <class Conn = socket>
class lean_pool : public detail::pool_handle<Conn, detail::pool_kind::lean> {
  using base = detail::pool_handle<Conn, detail::pool_kind::lean>;

 public:
  [[nodiscard]] static result<lean_pool> create(pool_config<Conn> config) {
    auto core = base::make_core(std::move(config));
    if (!core) return core.error();
    return lean_pool(*core);
  }

 private:
  explicit lean_pool(detail::pool_core<Conn>* core) noexcept : base(core) {}
};

// Why create() would reject `config` for pool / lean_pool (config_problem::none if it would not).
template <class Conn>
[[nodiscard]] config_problem validate_for_pool(const pool_config<Conn>& config) noexcept {
  return detail::pool_core<Conn>::check(config, detail::pool_kind::standard);
}
template <class Conn>
[[nodiscard]] config_problem validate_for_lean_pool(const pool_config<Conn>& config) noexcept {
  return detail::pool_core<Conn>::check(config, detail::pool_kind::lean);
}

}  // namespace netpool
