// netpool/keyed_pool.hpp — one pool per endpoint (shard, replica), under one global limit.
//
//   netpool::keyed_pool_config<std::string> cfg;                 // Key = "host" here
//   cfg.make_config = [](const std::string& host) {               // a sub-pool's config, on first use
//     netpool::pool_config<netpool::socket> c;
//     c.factory = netpool::tcp_dialer(host, 6379);
//     c.max_idle_time = std::chrono::minutes(1);
//     return c;
//   };
//   cfg.per_key_max = 8;                                          // at most 8 to each host
//   cfg.global_max = 32;                                          // at most 32 across all hosts
//   cfg.evict_idle_after = std::chrono::minutes(5);               // forget hosts unused this long
//   auto pools = netpool::keyed_pool<std::string>::create(std::move(cfg));
//   if (!pools) return pools.error();                             // errc::invalid_config
//
//   auto conn = pools->get_for("127.0.0.2", std::chrono::milliseconds(100));
//   if (!conn) return conn.error();            // timeout (key full), exhausted (global limit), ...
//   if ((*conn)->send_all("PING\r\n")) conn->discard();  // a plain netpool::lease of that host's pool
//   // ~lease() returns it to its sub-pool; pools->stats() sums every sub-pool
//
// Thread safety: every member function may be called concurrently from any thread, except that
// the destructor and move assignment must not race with other calls on the same object.
// Blocking: get*() block as pool::get*() does, and also while the global limit is reached (see
// keyed_pool_config::global_max); the first get of a key builds its sub-pool (make_config and
// pool::create: a thread start, no dial unless min_size > 0 with background_maintenance = false).
// The destructor waits for the sub-pools' own threads (maintainer, dialers) to stop; close() and
// remove() do for every sub-pool with nothing in flight, and leave one with a dial in flight or a
// lease out to be destroyed later (by maintain(), by the sweeper while the keyed pool is open, at
// the latest by the destructor).
// Errors: as pool (timeout, dial errors, pool_closed after close()), plus errc::exhausted when a
// dial waited for a global token until its deadline, and errc::invalid_config when a key's
// config is rejected (check_key() says why).
// Lifetime: leases are sub-pool leases and may outlive both their sub-pool (evicted or removed)
// and the keyed pool; returning one then closes its connection, and its global token comes back.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/config.hpp"
#include "netpool/detail/deadline.hpp"
#include "netpool/detail/keyed_state.hpp"
#include "netpool/detail/sync_point.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/lease.hpp"
#include "netpool/pool.hpp"
#include "netpool/result.hpp"
#include "netpool/socket.hpp"
#include "netpool/stats.hpp"

namespace netpool {

template <class Key, class Conn = socket>
struct keyed_pool_config {
  // Required. A key's sub-pool config (factory, timeouts, hooks ...), called once per sub-pool
  // when a key is first used (and again if it was evicted). Called under the keyed pool's creation
  // lock, never concurrently with itself: it must not call back into the keyed pool, and neither
  // may the sub-pools' hooks. A throw rejects the key (invalid_config).
  // Its max_size is capped at per_key_max (so a key may be given a smaller pool, never a larger
  // one); with a global limit its min_size must be 0. The sub-pool is always a netpool::pool.
  std::function<pool_config<Conn>(const Key&)> make_config;

  // Connections to one key at most (open + being dialed). Must be in [1, pool_config::max_supported].
  std::size_t per_key_max = 8;

  // Connections across all keys at most (open + being dialed); 0: no global limit. When it is
  // reached, a dial first closes an idle connection of another key (least recently used key
  // first), and otherwise waits for one to close until the dial's own deadline (then the get
  // fails with errc::exhausted, or errc::timeout if the get's deadline came first), or until a
  // connection of its own key comes back idle (then the get takes that one). A dial that ends
  // either way counts as failed but starts no dial backoff: the limit says nothing about the
  // key's backend (docs/design.md, "Keyed pools"). Any value is accepted; below per_key_max it is
  // the tighter of the two.
  std::size_t global_max = 0;

  // A sub-pool with no connection lent, no waiter, no dial and no get for this long is closed and
  // removed (its leases stay valid). 0: never. Must be >= 0. Evicted within about 1.2x this.
  std::chrono::nanoseconds evict_idle_after = std::chrono::nanoseconds::zero();

  // true: one keyed-pool thread evicts idle sub-pools and maintains the sub-pools whose config
  // says background_maintenance = false (so that many keys need not mean many threads). false:
  // no thread; call keyed_pool::maintain() (an event loop, a deterministic test).
  bool background_maintenance = true;
};

// Why a keyed configuration (or one key's sub-pool config) is rejected; none when it is valid.
enum class keyed_config_problem {
  none,
  missing_make_config,
  per_key_max_zero,
  per_key_max_too_large,
  evict_idle_after_negative,
  make_config_threw,           // make_config threw for this key
  min_size_with_global_limit,  // global_max > 0 needs the key's min_size == 0
  pool_config_rejected,        // the key's pool_config failed validate_for_pool (after capping max_size)
};

// A short sentence naming the field and its constraint, for logs.
[[nodiscard]] constexpr const char* describe(keyed_config_problem problem) noexcept {
  switch (problem) {
    case keyed_config_problem::none:
      return "valid";
    case keyed_config_problem::missing_make_config:
      return "make_config is required";
    case keyed_config_problem::per_key_max_zero:
      return "per_key_max must be at least 1";
    case keyed_config_problem::per_key_max_too_large:
      return "per_key_max must be at most pool_config::max_supported";
    case keyed_config_problem::evict_idle_after_negative:
      return "evict_idle_after must be >= 0";
    case keyed_config_problem::make_config_threw:
      return "make_config threw for this key";
    case keyed_config_problem::min_size_with_global_limit:
      return "with global_max > 0, a key's min_size must be 0";
    case keyed_config_problem::pool_config_rejected:
      return "the key's pool_config was rejected (see validate_for_pool)";
  }
  return "unknown keyed_config_problem";
}

template <class Key, class Conn>
[[nodiscard]] keyed_config_problem validate(const keyed_pool_config<Key, Conn>& config) noexcept {
  if (!config.make_config) return keyed_config_problem::missing_make_config;
  if (config.per_key_max == 0) return keyed_config_problem::per_key_max_zero;
  if (config.per_key_max > pool_config<Conn>::max_supported)
    return keyed_config_problem::per_key_max_too_large;
  if (config.evict_idle_after < std::chrono::nanoseconds::zero()) {
    return keyed_config_problem::evict_idle_after_negative;
  }
  return keyed_config_problem::none;
}

// What check_key() found: the keyed rule broken, and for pool_config_rejected the core's reason.
struct key_config_check {
  keyed_config_problem problem = keyed_config_problem::none;
  config_problem pool_problem = config_problem::none;
};

// keyed_pool_stats, what stats() returns, is in stats.hpp.

template <class Key, class Conn = socket, class Hash = std::hash<Key>, class KeyEq = std::equal_to<Key>>
class keyed_pool {
  using state_type = detail::keyed_state<Key, Conn, Hash, KeyEq>;

 public:
  using key_type = Key;
  using connection_type = Conn;
  using lease_type = lease<Conn>;
  using clock = std::chrono::steady_clock;

  // Validates `config` (errc::invalid_config; validate() says why) and starts the keyed pool's
  // thread (if background_maintenance). No sub-pool exists until a key is used.
  [[nodiscard]] static result<keyed_pool> create(keyed_pool_config<Key, Conn> config) {
    if (validate(config) != keyed_config_problem::none) return errc::invalid_config;
    try {
      auto state =
          std::make_unique<state_type>(std::move(config.make_config), config.per_key_max, config.global_max,
                                       config.evict_idle_after, config.background_maintenance);
      state->start();
      return keyed_pool(std::move(state));
    } catch (const std::system_error& e) {  // the thread could not start
      return e.code();
    } catch (const std::bad_alloc&) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
  }

  keyed_pool(keyed_pool&&) noexcept = default;
  keyed_pool& operator=(keyed_pool&& other) noexcept {
    if (this != &other) state_ = std::move(other.state_);  // the old state closes as it goes
    return *this;
  }
  keyed_pool(const keyed_pool&) = delete;
  keyed_pool& operator=(const keyed_pool&) = delete;
  // Closes (see close()). Leases still out stay valid.
  ~keyed_pool() = default;

  // A connection to `key`, creating its sub-pool on first use; blocks while the key is full. At
  // the global limit a dial waits for room until its own deadline (dial_timeout, or the get's if
  // sooner), then the get fails with exhausted: a get() without a deadline gives up there too.
  // Errors: as pool::get(); exhausted (global limit, see keyed_pool_config::global_max);
  // invalid_config (the key's config, see check_key()); pool_closed after close().
  [[nodiscard]] result<lease_type> get(const Key& key,
                                       source_location where = source_location::current()) noexcept {
    return get_until(key, clock::time_point::max(), where);
  }
  // As get(), but gives up with errc::timeout (or exhausted, waiting for the global limit) after
  // `timeout`.
  template <class Rep, class Period>
  [[nodiscard]] result<lease_type> get_for(const Key& key, std::chrono::duration<Rep, Period> timeout,
                                           source_location where = source_location::current()) noexcept {
    return get_until(key, detail::deadline_after(timeout), where);
  }
  // As get(), but gives up at `deadline`.
  [[nodiscard]] result<lease_type> get_until(const Key& key, clock::time_point deadline,
                                             source_location where = source_location::current()) noexcept {
    if (!state_) return errc::pool_closed;
    // A sub-pool evicted between our lookup and its get answers pool_closed: look again, since
    // eviction must never fail a get (KS1). It takes a get stalled for evict_idle_after (KS2), so
    // a second round is already rare; the last error is returned after three.
    result<lease_type> got = errc::pool_closed;
    for (int round = 0, not_needed = 0; round < 3;) {
      auto found = state_->find_or_create(key);
      if (!found) return found.error();
      got = (*found)->sub->get_until(deadline, where);
      // This get's dial waited for the global limit, and a connection of this key came back idle
      // meanwhile: the dial ended (dial_not_needed) so that this get takes that one. It looks at
      // once, as the sub-pool's try_get() does (but with the deadline: try_get_until()), and
      // nearly always takes it, unless another get of the key took it first. Only the budget's
      // wait says dial_not_needed (from the user's factory it becomes dial_failed in
      // wrap_config, from on_connect hook_rejected in the core), so each round that finds
      // nothing is a connection lost to another get, and this get goes on until its deadline, as
      // one waiting in its sub-pool's line does (though not in FIFO order: each returned
      // connection goes to whichever get looks first; pause_after_lost_look() between rounds).
      if (!got && got.error() == errc::dial_not_needed) {
        NETPOOL_SYNC_POINT("keyed_get:dial_not_needed");
        got = state_type::try_get_until(*(*found)->sub, deadline, where);
        if (got || got.error() == errc::timeout) break;
        // pool_closed is no connection lost to another get: the sub-pool closed since the dial
        // ended, and the get goes on below as one that found it closed (going round would create
        // a removed key's sub-pool anew).
        if (got.error() != errc::pool_closed) {
          NETPOOL_SYNC_POINT("keyed_get:lost_to_another_get");
          pause_after_lost_look(not_needed, deadline);
          continue;
        }
      }
      if (!evicted_under_us(got, **found)) break;
      ++round;
    }
    // A dial on this thread waits for the global limit until the sooner of its dial deadline and
    // ours, and says exhausted either way; if it was ours, this get timed out.
    if (!got && got.error() == errc::exhausted && clock::now() >= deadline) return errc::timeout;
    return got;
  }
  // An idle connection to `key` now, or errc::exhausted (also when the key has no sub-pool: it
  // is not created). Never waits, never dials (the sub-pool's health check and on_borrow may block).
  [[nodiscard]] result<lease_type> try_get(const Key& key,
                                           source_location where = source_location::current()) noexcept {
    if (!state_ || state_->closed()) return errc::pool_closed;
    try {
      // As in get_until(): a sub-pool evicted between our lookup and its try_get answers
      // pool_closed, but eviction must never fail a get (KS1): look again (it is gone by then).
      result<lease_type> got = errc::exhausted;
      for (int round = 0; round < 3; ++round) {
        const auto e = state_->find_for_get(key);
        if (!e) return errc::exhausted;
        got = e->sub->try_get(where);
        if (!evicted_under_us(got, *e)) return got;
      }
      return got;
    } catch (...) {  // bad_alloc is impossible here; a throwing Hash or KeyEq
      return errc::invalid_config;
    }
  }

  // `key`'s sub-pool's stats, or nullopt when it has none (never used, evicted or removed).
  [[nodiscard]] std::optional<pool_stats> stats(const Key& key) const {
    if (!state_) return std::nullopt;
    if (auto e = state_->find(key)) return e->sub->stats();
    return std::nullopt;
  }
  // Every sub-pool added up, and the keyed layer's own numbers. O(sub-pools x per_key_max).
  [[nodiscard]] keyed_pool_stats stats() const {
    keyed_pool_stats s;
    if (!state_) return s;
    s.total = state_->total();
    s.pools = state_->size();
    s.open = state_->budget().taken();
    s.global_max = state_->budget().max();
    s.global_waiters = state_->budget().waiting();
    s.pools_created = state_->created();
    s.pools_evicted = state_->evicted();
    s.pools_removed = state_->removed();
    s.global_waits = state_->budget().waits();
    s.global_exhausted = state_->budget().exhausted();
    s.reclaimed = state_->reclaimed();
    return s;
  }
  // Each current sub-pool's key and stats, in no particular order: for per-key metrics (e.g.
  // write_prometheus() with a "key" label for each). Allocates; O(sub-pools x per_key_max).
  [[nodiscard]] std::vector<std::pair<Key, pool_stats>> stats_by_key() const {
    if (!state_) return {};
    return state_->stats_by_key();
  }
  // Number of sub-pools now.
  [[nodiscard]] std::size_t size() const { return state_ ? state_->size() : 0; }

  // Why a get of `key` would be rejected with invalid_config (runs make_config; creates nothing).
  [[nodiscard]] key_config_check check_key(const Key& key) const {
    key_config_check check;
    if (!state_) return check;
    switch (state_->check(key, check.pool_problem)) {
      case state_type::sub_problem::none:
        break;
      case state_type::sub_problem::make_config_threw:
        check.problem = keyed_config_problem::make_config_threw;
        break;
      case state_type::sub_problem::min_size_with_global_limit:
        check.problem = keyed_config_problem::min_size_with_global_limit;
        break;
      case state_type::sub_problem::pool_config_rejected:
        check.problem = keyed_config_problem::pool_config_rejected;
        break;
    }
    return check;
  }

  // Closes `key`'s sub-pool now and forgets it (e.g. a replica left the topology): gets in flight
  // on it (waiting, or dialing — a dial waiting for a global token stops within ~16 ms) fail with
  // pool_closed, its idle connections close, its leases stay valid. A later get of the key
  // creates a new one. Returns false if there was none. Blocks while the sub-pool's threads stop.
  bool remove(const Key& key) { return state_ && state_->remove(key); }

  // One round of the keyed pool's maintenance on the calling thread: evict idle sub-pools, run
  // maintain() on sub-pools created with background_maintenance = false. For keyed pools created
  // with background_maintenance = false; harmless otherwise. Returns how long until the next round
  // is due (nanoseconds::max() when nothing is).
  std::chrono::nanoseconds maintain() {
    return state_ ? state_->maintain_once() : std::chrono::nanoseconds::max();
  }

  // Idempotent: fails dials waiting for a global token, closes every sub-pool (their waiters fail
  // with pool_closed; their idle connections close) and forgets them; get() returns pool_closed
  // from now on. Leases stay valid; returning them closes their connections. A dial already
  // running on a sub-pool's dialer thread is not waited for: it ends within dial_timeout, and its
  // connection, if any, is closed; until then stats().open counts it.
  void close() noexcept {
    if (state_) state_->close();
  }
  [[nodiscard]] bool closed() const noexcept { return !state_ || state_->closed(); }

 private:
  // The longest pause between two rounds of a get whose dials were not needed (get_until()).
  static constexpr int max_not_needed_pause_us = 1000;

  // get_until(), between rounds of a get whose look after a dial not needed found nothing (`lost`
  // such rounds so far, counted here): gives the other threads the CPU, then backs off, 1 us more
  // each round up to max_not_needed_pause_us, never past the deadline.
  static void pause_after_lost_look(int& lost, clock::time_point deadline) noexcept {
    if (lost < max_not_needed_pause_us + 8) ++lost;
    if (lost > 8) {
      const clock::time_point now = clock::now();
      if (now < deadline) {
        const std::chrono::nanoseconds pause = std::chrono::microseconds(lost - 8);
        std::this_thread::sleep_for(deadline - now < pause ? deadline - now : pause);
      }
    } else if (lost > 1) {
      std::this_thread::yield();
    }
  }

  explicit keyed_pool(std::unique_ptr<state_type> state) noexcept : state_(std::move(state)) {}

  // The get on `e`'s sub-pool failed only because the sweeper evicted it after our lookup (not
  // remove() or close(), which are the caller's): look the key up again (KS1).
  template <class Entry>
  bool evicted_under_us(const result<lease_type>& got, const Entry& e) const noexcept {
    return !got && got.error() == errc::pool_closed && e.evicted.load(std::memory_order_relaxed) &&
           !state_->closed();
  }

  // unique_ptr: the state's address is stable across moves of the handle (the sub-pools'
  // factories point at it, KS5).
  std::unique_ptr<state_type> state_;
};

}  // namespace netpool
