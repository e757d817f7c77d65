// netpool/detail/keyed_state.hpp — the shared state behind keyed_pool: the key -> sub-pool map,
// sub-pool creation and eviction, the global budget's wiring, and the sweeper thread.
//
// Lookup: a std::shared_mutex guards an unordered_map of std::shared_ptr<keyed_entry>. A get takes
// the lock shared (one atomic RMW on the lock word, shared by every thread of this keyed pool:
// unlike the lock-free core beneath, the keyed layer's lookup is a reader lock), copies the entry's
// shared_ptr (so that the sub-pool outlives the lookup while the get blocks outside the lock), and
// lets go. Creation and eviction take it exclusively, briefly; building a sub-pool (make_config,
// pool::create) happens outside it, under create_mutex_, so that lookups of other keys never wait
// for a creation.
//
// Invariants (cited as KSn):
//   KS1  An entry is in map_ iff its `retired` flag is false; both change together under the
//        exclusive lock (with `evicted` too when the sweeper retires it). A retired entry's
//        sub-pool is closed (after the lock is released), never reopened. A get that reached an
//        evicted one through an older lookup sees pool_closed and looks again: eviction is the
//        keyed pool's own decision and never fails a get. remove() and close() are the caller's:
//        gets in flight on what they retire fail with pool_closed.
//   KS2  A get (try_get too) refreshes its entry's last_get while it holds the shared lock
//        (touch()), so an eviction, which re-checks last_get under the exclusive lock, does not
//        remove an entry that a get found just before; only a get stalled for evict_after between
//        its lookup and its sub-pool's get can meet an evicted sub-pool (KS1 then looks again).
//   KS3  last_get lags the last get by at most touch_resolution_ (evict_after_ / 8, at most 1 ms:
//        reclaim_idle()'s least-recently-used order holds to within that). It is stored only when
//        older than that, to keep the shared line read-mostly; eviction therefore waits for
//        evict_after_ + touch_resolution_ of silence, so a sub-pool is never evicted less than
//        evict_after_ after its last get.
//   KS4  Every sub-pool's factory and on_close are wrapped (wrap_config): a dial takes a budget
//        token first and gives it back if it fails or throws; on_close gives it back (KB1).
//   KS5  The wrapped factories hold raw pointers to this state (to reclaim idle connections of
//        other keys) and to their own entry. Factories run inside a get on a sub-pool, or on its
//        maintainer or dialer threads, which the sub-pool's handle joins when it is destroyed;
//        the entry owns that handle, and the state's destructor (after close()) destroys every
//        entry it still holds. Gets must not race the destructor (documented on keyed_pool), so no
//        factory runs once the state is gone. Only on_close outlives the state (a lease returned
//        later), and it holds the budget by shared_ptr, not these pointers.
//   KS6  A retired entry is destroyed only by the graveyard (collect()), once nobody else holds it:
//        on the sweeper, or in remove(), close(), maintain() or the destructor — never on a
//        sub-pool's own dialer thread, which may hold other entries while it reclaims. (Destroying
//        a sub-pool joins its threads: two dialers each destroying the other's sub-pool would
//        deadlock, and one destroying another's would wait for that one's dial.) Nobody can take a
//        new reference to a retired entry (it is out of the map), so use_count() == 1 is final.
//   KS7  total() counts every sub-pool's counters exactly once, so that they never go down (a
//        Prometheus scrape would read a dip as a counter reset): a sub-pool in map_ through its
//        stats(); one that left it through retired_counters_. The move is atomic for total(): an
//        entry leaves map_ and is folded (fold(), under retired_mutex_) while the exclusive map
//        lock is held, and total() holds the map lock shared and retired_mutex_ together. Counts
//        the sub-pool adds later (its close(), leases returned after it) are folded again as it is
//        closed and as it is destroyed; the entry's `folded` remembers what was already added.
//        Meanwhile total() adds a graveyard entry's growth since its last fold (graveyard_mutex_
//        held too), and the graveyard keeps an entry until its sub-pool has no lease out and no
//        dial in flight, so a lease returned after its sub-pool was removed is counted, not lost.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "netpool/config.hpp"
#include "netpool/detail/keyed_budget.hpp"
#include "netpool/detail/keyed_stats_sum.hpp"
#include "netpool/detail/sync_point.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/lease.hpp"
#include "netpool/pool.hpp"
#include "netpool/result.hpp"
#include "netpool/stats.hpp"

namespace netpool::detail {

// How long the sweeper sleeps after a round that says the next is due in `next`: that long, but
// at most an hour (wait_for adds it to now(), which a due time of centuries would overflow; the
// round after an hour's sleep computes the rest), and without a timeout only when nothing at all
// is due (nanoseconds::max()).
inline std::optional<std::chrono::nanoseconds> keyed_sweeper_wait(std::chrono::nanoseconds next) noexcept {
  if (next == std::chrono::nanoseconds::max()) return std::nullopt;
  return std::min<std::chrono::nanoseconds>(next, std::chrono::hours(1));
}

template <class Key, class Conn>
struct keyed_entry {
  explicit keyed_entry(const Key& k) : key(k) {}

  const Key key;
  // Engaged before the entry is published in the map; never disengaged while the entry lives.
  std::optional<pool<Conn>> sub;
  // Nanoseconds since the state's epoch of the last get (coarse, KS3); relaxed: a heuristic read
  // by the sweeper and by reclaim's LRU order, ordered by the map lock where it matters (KS2).
  std::atomic<std::int64_t> last_get{0};
  std::atomic<bool> retired{false};  // KS1: out of the map, sub-pool closed (or closing)
  std::atomic<bool> evicted{false};  // KS1: retired by the sweeper (set before `retired`)
  pool_stats folded;  // guarded by the state's retired_mutex_: counters already in retired_counters_ (KS7)
  bool self_maintained = false;   // created with background_maintenance = false: the sweeper maintains it
  std::int64_t maintain_due = 0;  // guarded by maintain_mutex_: when its next maintain() is due
};

template <class Key, class Conn, class Hash, class KeyEq>
class keyed_state {
 public:
  using clock = std::chrono::steady_clock;
  using entry = keyed_entry<Key, Conn>;
  using entry_ptr = std::shared_ptr<entry>;
  using make_config_function = std::function<pool_config<Conn>(const Key&)>;

  // Why a key's sub-pool config is rejected: one of the keyed rules, or the core's own check.
  enum class sub_problem { none, make_config_threw, min_size_with_global_limit, pool_config_rejected };

  keyed_state(make_config_function make_config, std::size_t per_key_max, std::size_t global_max,
              std::chrono::nanoseconds evict_after, bool background)
      : make_config_(std::move(make_config)),
        per_key_max_(per_key_max),
        evict_after_(evict_after),
        touch_resolution_(evict_after > std::chrono::nanoseconds::zero()
                              ? std::clamp<std::int64_t>(evict_after.count() / 8, 1, max_touch_resolution_ns)
                              : max_touch_resolution_ns),
        // Saturating: evict_idle_after = nanoseconds::max() ("practically never") must not wrap to
        // a negative silence that every sub-pool has already kept.
        quiet_needed_(evict_after.count() > std::numeric_limits<std::int64_t>::max() - touch_resolution_
                          ? std::numeric_limits<std::int64_t>::max()
                          : evict_after.count() + touch_resolution_),
        relook_ns_(std::max<std::int64_t>(evict_after.count() / 8, min_period_ns)),
        background_(background),
        budget_(std::make_shared<keyed_budget>(global_max)) {}

  keyed_state(const keyed_state&) = delete;
  keyed_state& operator=(const keyed_state&) = delete;
  ~keyed_state() {
    close();
    // KS6: the sub-pools' own threads may still hold a few retired entries for the length of a
    // reclaim (one reclaim_idle() call): wait for them to let go. No get runs any more (the
    // destructor must not race other calls), so every other reference is already gone.
    for (;;) {
      collect(true);
      {
        std::lock_guard lock(graveyard_mutex_);
        if (graveyard_.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // Starts the sweeper (eviction, and maintenance of self-maintained sub-pools).
  void start() {
    if (!background_) return;
    sweeper_ = std::thread([this] { sweeper_loop(); });
    sweeper_id_ = sweeper_.get_id();  // before the keyed pool is shared: read without a lock
  }

  // ---- lookup ---------------------------------------------------------------------------------

  // The entry for `key`, created on first use. Errors: pool_closed, invalid_config (make_config
  // threw, or its config was rejected), not_enough_memory, or pool::create's error.
  result<entry_ptr> find_or_create(const Key& key) noexcept {
    try {
      {
        std::shared_lock lock(map_mutex_);
        if (closed_.load(std::memory_order_relaxed)) return errc::pool_closed;  // under the lock: KS1
        if (auto it = map_.find(key); it != map_.end()) {
          touch(*it->second);  // KS2: under the shared lock
          return entry_ptr(it->second);
        }
      }
      return create(key);
    } catch (const std::bad_alloc&) {
      return std::make_error_code(std::errc::not_enough_memory);
    } catch (...) {  // a throwing Hash or KeyEq
      return errc::invalid_config;
    }
  }

  // For try_get(): the entry for `key` if it exists, touched as a get (KS2), so that a key served
  // only by try_get() is not evicted while in use; never creates one.
  entry_ptr find_for_get(const Key& key) const {
    std::shared_lock lock(map_mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return entry_ptr();
    touch(*it->second);  // KS2: under the shared lock
    return it->second;
  }

  // The entry for `key` if it exists; never creates one, and is no use of it (stats).
  entry_ptr find(const Key& key) const {
    std::shared_lock lock(map_mutex_);
    auto it = map_.find(key);
    return it != map_.end() ? it->second : entry_ptr();
  }

  [[nodiscard]] std::size_t size() const {
    std::shared_lock lock(map_mutex_);
    return map_.size();
  }

  [[nodiscard]] bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }

  // ---- removal --------------------------------------------------------------------------------

  // Removes and closes `key`'s sub-pool now, whatever it is doing (leases stay valid).
  bool remove(const Key& key) {
    entry_ptr gone;
    {
      std::unique_lock lock(map_mutex_);
      auto it = map_.find(key);
      if (it == map_.end()) return false;
      gone = std::move(it->second);
      gone->retired.store(true, std::memory_order_relaxed);  // KS1
      map_.erase(it);
      fold(*gone);                                       // KS7: under the map lock
      removed_.fetch_add(1, std::memory_order_relaxed);  // counted as it leaves the map
    }
    retire(*gone);
    bury(std::move(gone));
    collect();  // KS6: destroyed here (its threads joined) unless a get still holds it
    // Still held (a lease out, a dial or a get in flight): the sweeper's rounds look for its end,
    // but it may be waiting without a timeout (nothing was due before this entry).
    bool held = false;
    {
      std::lock_guard lock(graveyard_mutex_);
      held = !graveyard_.empty();
    }
    if (held) kick_sweeper();
    return true;
  }

  // Idempotent. Fails dials waiting for a global token, stops the sweeper, closes and drops every
  // sub-pool. Blocks while the sweeper finishes its round and while sub-pools' maintainers stop.
  void close() noexcept {
    closed_.store(true, std::memory_order_seq_cst);
    budget_->close();
    stop_sweeper();
    std::unordered_map<Key, entry_ptr, Hash, KeyEq> all;
    {
      std::unique_lock lock(map_mutex_);
      all.swap(map_);
      for (auto& kv : all) {
        kv.second->retired.store(true, std::memory_order_relaxed);  // KS1
        fold(*kv.second);                                           // KS7: under the map lock
      }
    }
    for (auto& kv : all) {
      retire(*kv.second);
      bury(std::move(kv.second));
    }
    collect();  // KS6: the sub-pools nobody else holds are destroyed now (their threads joined)
  }

  // ---- maintenance ------------------------------------------------------------------------------

  // One round: evict sub-pools idle long enough, maintain self-maintained sub-pools. Returns how
  // long until the next round is due (nanoseconds::max() when nothing is).
  std::chrono::nanoseconds maintain_once() {
    using std::chrono::nanoseconds;
    // One round at a time: keyed_pool::maintain() may run beside the sweeper; maintain_due is ours.
    std::lock_guard round(maintain_mutex_);
    std::vector<entry_ptr> all = snapshot();
    const std::int64_t now = now_ns();
    std::int64_t next = std::numeric_limits<std::int64_t>::max();
    std::vector<entry_ptr> idle;
    for (const entry_ptr& e : all) {
      if (e->self_maintained) {
        if (e->maintain_due <= now) {
          // At least every self_maintain_period: a sub-pool that had nothing due ("max") when it
          // was empty does not tell us when a connection appears (its own maintainer is woken).
          const std::int64_t due =
              std::min<std::int64_t>(e->sub->maintain().count(), self_maintain_period_ns);
          e->maintain_due = now + std::max<std::int64_t>(due, 0);
        }
        next = std::min(next, e->maintain_due - now);
      }
      if (evict_after_ <= nanoseconds::zero()) continue;
      const std::int64_t quiet = now - e->last_get.load(std::memory_order_relaxed);
      if (quiet < quiet_needed_) {
        next = std::min(next, quiet_needed_ - quiet);
        continue;
      }
      const pool_stats s = e->sub->stats();
      if (s.in_use == 0 && s.waiters == 0 && s.dialing == 0) {
        idle.push_back(e);
      } else {
        next = std::min(next, relook_ns_);  // look again
      }
    }
    if (!idle.empty()) next = std::min(next, evict(idle));
    all.clear();
    idle.clear();
    collect();
    {
      std::lock_guard lock(graveyard_mutex_);
      for (const entry_ptr& e : graveyard_) {
        // A get or a reclaim holds it for a moment: look again soon. Only leases out (or a dial
        // ending): they may stay out for as long as their holders like; look now and then.
        next = std::min(next, e.use_count() > 1 ? graveyard_poll_ns : graveyard_lease_poll_ns);
      }
    }
    if (next == std::numeric_limits<std::int64_t>::max()) return nanoseconds::max();
    return nanoseconds(std::max<std::int64_t>(next, min_period_ns));
  }

  // ---- reclaiming ----------------------------------------------------------------------------

  // Closes one idle connection of a sub-pool other than `requester`, least recently used key first,
  // so that its budget token comes back. Returns whether it closed one: the victim's
  // pool::reclaim_idle(), one idle connection closed without being lent (closed_reclaimed; on_close
  // sees close_reason::reclaimed). Never the requester's own: a connection of its key returned
  // while this dial waits is its get's to take (has_idle()); reclaiming it made a busy key redial
  // for about every other get.
  bool reclaim_idle(const entry* requester) noexcept {
    try {
      std::vector<std::pair<std::int64_t, entry_ptr>> candidates;
      {
        std::shared_lock lock(map_mutex_);
        candidates.reserve(map_.size());
        for (const auto& kv : map_) {
          if (kv.second.get() != requester) {
            candidates.emplace_back(kv.second->last_get.load(std::memory_order_relaxed), kv.second);
          }
        }
      }
      std::sort(candidates.begin(), candidates.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (auto& c : candidates) {
        if (c.second->sub->reclaim_idle()) {
          reclaimed_.fetch_add(1, std::memory_order_relaxed);
          return true;
        }
      }
    } catch (...) {  // bad_alloc building the candidate list: nothing reclaimed this time
    }
    return false;
  }

  // Whether `self`'s sub-pool has an idle connection now: asked by a dial of it that waits for a
  // token (keyed_budget::take). One that came back while the dial waited is its get's to take:
  // the dial ends with errc::dial_not_needed and keyed_pool's get looks again. (Closing it to free
  // a token instead made a busy key redial for about every other get.) Through the map and a
  // shared_ptr, not self->sub: a dialer thread's dial may still run while close() destroys a
  // retired entry, whose pool handle is torn down before its threads are joined; a retired entry
  // is not in the map. The graveyard holds such an entry too, so ours is never the last reference
  // (KS6).
  bool has_idle(const entry* self) noexcept {
    try {
      entry_ptr e;
      {
        std::shared_lock lock(map_mutex_);
        auto it = map_.find(self->key);  // key: destroyed after sub, whose end joins this thread
        if (it == map_.end() || it->second.get() != self) return false;
        e = it->second;
      }
      // Not len(): it counts an idle connection no other get can take yet (pool_core's
      // has_takeable_idle() says which), and the get this dial is for would dial again.
      const pool_core<Conn>* core = e->sub->core();
      return core != nullptr && core->has_takeable_idle();
    } catch (...) {  // a throwing Hash or KeyEq
      return false;
    }
  }

  // keyed_pool::get_until()'s look after a dial that was not needed: `sub`'s try_get(), but with
  // the get's deadline. As in its get_until(), once a check (health check, on_borrow) has failed,
  // no other starts past the deadline; and a look that finds nothing once the deadline has passed
  // is the get's timeout (errc::timeout, counted), so that no further round starts another.
  static result<lease<Conn>> try_get_until(const pool<Conn>& sub, clock::time_point deadline,
                                           source_location where) noexcept {
    pool_core<Conn>* core = sub.core();
    if (core == nullptr) return errc::pool_closed;
    result<lease<Conn>> got =
        core->acquire(deadline, pool_core<Conn>::acquire_mode::try_idle_until, nullptr, where);
    if (!got && got.error() == errc::exhausted && clock::now() >= deadline) return core->time_out_get();
    return got;
  }

  // What create() would do with make_config(key), without creating anything (keyed_pool::check_key).
  sub_problem check(const Key& key, config_problem& pool_problem) const {
    std::lock_guard creating(create_mutex_);  // make_config never runs concurrently with itself
    pool_config<Conn> config;
    return prepare(key, config, pool_problem);
  }

  // ---- observation ------------------------------------------------------------------------------

  // Sums every sub-pool's stats, and the counters of sub-pools already gone.
  pool_stats total() const {
    pool_stats sum;
    // KS7: all three locks at once, so that no entry is between map_, the graveyard and
    // retired_counters_.
    std::shared_lock map_lock(map_mutex_);
    std::lock_guard graveyard_lock(graveyard_mutex_);
    std::lock_guard lock(retired_mutex_);
    add_counters(sum, retired_counters_);
    // Retired sub-pools still in the graveyard: what they counted since their last fold (leases
    // returned since).
    for (const entry_ptr& e : graveyard_) add_counter_growth(sum, e->sub->stats(), e->folded);
    for (const auto& kv : map_) {
      const pool_stats s = kv.second->sub->stats();
      add_counters(sum, s);
      add_gauges(sum, s);
    }
    return sum;
  }

  // Each current sub-pool's key and stats (keyed_pool::stats_by_key()).
  std::vector<std::pair<Key, pool_stats>> stats_by_key() const {
    std::vector<std::pair<Key, pool_stats>> all;
    std::shared_lock lock(map_mutex_);
    all.reserve(map_.size());
    for (const auto& kv : map_) all.emplace_back(kv.first, kv.second->sub->stats());
    return all;
  }

  [[nodiscard]] const keyed_budget& budget() const noexcept { return *budget_; }
  [[nodiscard]] std::uint64_t created() const noexcept { return created_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t evicted() const noexcept { return evicted_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t removed() const noexcept { return removed_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t reclaimed() const noexcept {
    return reclaimed_.load(std::memory_order_relaxed);
  }

 private:
  static constexpr std::int64_t min_period_ns = 1'000'000;  // the sweeper never spins faster than 1 ms
  // KS3: last_get is stored at most this long after the last get (1 ms), however long evict_after_.
  static constexpr std::int64_t max_touch_resolution_ns = 1'000'000;
  static constexpr std::int64_t self_maintain_period_ns = 100'000'000;    // 100 ms
  static constexpr std::int64_t graveyard_poll_ns = 10'000'000;           // 10 ms
  static constexpr std::int64_t graveyard_lease_poll_ns = 1'000'000'000;  // 1 s

  std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - epoch_).count();
  }

  // KS2/KS3: a relaxed load, and a store only when last_get is older than the resolution, so that
  // threads getting the same key mostly share its cache line instead of bouncing it.
  void touch(entry& e) const noexcept {
    const std::int64_t now = now_ns();
    if (now - e.last_get.load(std::memory_order_relaxed) > touch_resolution_) {
      e.last_get.store(now, std::memory_order_relaxed);
    }
  }

  std::vector<entry_ptr> snapshot() const {
    std::vector<entry_ptr> all;
    std::shared_lock lock(map_mutex_);
    all.reserve(map_.size());
    for (const auto& kv : map_) all.push_back(kv.second);
    return all;
  }

  result<entry_ptr> create(const Key& key) {
    // One creation at a time: a burst of first gets on a key builds one sub-pool, not one each.
    std::lock_guard creating(create_mutex_);
    {
      std::shared_lock lock(map_mutex_);
      if (closed_.load(std::memory_order_relaxed)) return errc::pool_closed;
      if (auto it = map_.find(key); it != map_.end()) {
        touch(*it->second);
        return entry_ptr(it->second);
      }
    }
    pool_config<Conn> config;
    config_problem ignored = config_problem::none;
    if (prepare(key, config, ignored) != sub_problem::none) return errc::invalid_config;
    auto e = std::make_shared<entry>(key);
    e->self_maintained = !config.background_maintenance;
    wrap_config(config, e.get());
    auto made = pool<Conn>::create(std::move(config));
    if (!made) return made.error();
    e->sub.emplace(std::move(*made));
    e->last_get.store(now_ns(), std::memory_order_relaxed);
    {
      std::unique_lock lock(map_mutex_);
      if (closed_.load(std::memory_order_relaxed)) {
        lock.unlock();
        e->sub->close();
        return errc::pool_closed;
      }
      map_.emplace(key, e);
    }
    created_.fetch_add(1, std::memory_order_relaxed);
    kick_sweeper();  // it may now have a sub-pool to evict or maintain
    return e;
  }

  // make_config(key), with the keyed rules applied (max_size and max_size_limit capped at
  // per_key_max) and checked; create_mutex_ held. `pool_problem` says which field when the core's
  // check rejects it. bad_alloc propagates.
  sub_problem prepare(const Key& key, pool_config<Conn>& config, config_problem& pool_problem) const {
    try {
      config = make_config_(key);
    } catch (const std::bad_alloc&) {
      throw;
    } catch (...) {
      return sub_problem::make_config_threw;
    }
    config.max_size = std::min(config.max_size, per_key_max_);
    // Nobody can grow a sub-pool (set_max_size is not exposed): preallocate no more than it may use.
    config.max_size_limit = std::min(config.max_size_limit, per_key_max_);
    // Background refills competing for global tokens would take them from keys whose callers
    // wait, and a refill that cannot get one counts as a failed dial (backoff) for this key.
    if (budget_->max() > 0 && config.min_size > 0) return sub_problem::min_size_with_global_limit;
    pool_problem = validate_for_pool(config);
    return pool_problem == config_problem::none ? sub_problem::none : sub_problem::pool_config_rejected;
  }

  // KS4: the budget's hooks around the user's factory and on_close.
  void wrap_config(pool_config<Conn>& config, const entry* self) {
    config.factory = [user = std::move(config.factory), budget = budget_, state = this,
                      self](clock::time_point deadline) -> result<Conn> {
      // KS5: `state` outlives every call of this factory.
      // A sub-pool removed while its dial waits (a dialer thread's, or a caller's) stops waiting:
      // its handle's destruction joins that thread.
      const auto reclaim = [state, self] { return state->reclaim_idle(self); };
      const auto not_needed = [state, self] { return state->has_idle(self); };
      const auto abandoned = [self] { return self->retired.load(std::memory_order_relaxed); };
      if (std::error_code ec = budget->take(deadline, reclaim, not_needed, abandoned)) return ec;
      scope_guard token([&budget] { budget->give_back(); });  // the dial failed or threw: KB1
      result<Conn> made = user(deadline);
      // dial_not_needed is the budget's verdict above, and keyed_pool's get looks again on it until
      // its deadline: the user's factory must not be able to send it round that loop.
      if (!made && made.error() == errc::dial_not_needed) return errc::dial_failed;
      // From now on the connection holds the token (on_close gives it back). Not one that says it
      // is closed: the core fails that dial and destroys it without on_close.
      if (made && !made_closed(*made)) token.dismiss();
      return made;
    };
    config.on_close = [user = std::move(config.on_close), budget = budget_](Conn& c, close_reason why) {
      if (user) {
        try {
          user(c, why);  // first, so that the user's own count never runs ahead of the budget
        } catch (...) {  // the core would swallow it too; the token must come back regardless
        }
      }
      budget->give_back();  // KB1
    };
  }

  // Retires the entries of `idle` that are still quiet under the exclusive lock. Returns how long
  // until one it kept (a get touched it meanwhile) is due for another look, or the maximum if it
  // kept none: the round would otherwise forget it, and with nothing else due the sweeper would
  // wait without a timeout while that key stays in the map for good.
  std::int64_t evict(const std::vector<entry_ptr>& idle) {
    std::int64_t next = std::numeric_limits<std::int64_t>::max();
    std::vector<entry_ptr> gone;
    gone.reserve(idle.size());  // before the lock: nothing below throws once an entry left the map
    NETPOOL_SYNC_POINT("keyed_evict:lock");  // a get now touches an entry found quiet
    {
      std::unique_lock lock(map_mutex_);
      const std::int64_t now = now_ns();
      for (const entry_ptr& e : idle) {
        // KS2: a get that found it since our check refreshed last_get before we took the lock.
        if (const std::int64_t quiet = now - e->last_get.load(std::memory_order_relaxed);
            quiet < quiet_needed_) {
          next = std::min(next, quiet_needed_ - quiet);
          continue;
        }
        typename std::unordered_map<Key, entry_ptr, Hash, KeyEq>::iterator it;
        try {
          it = map_.find(e->key);
        } catch (...) {  // a throwing Hash or KeyEq: leave this one, and look again next round
          next = std::min(next, relook_ns_);
          continue;
        }
        if (it == map_.end() || it->second != e) continue;  // removed or replaced meanwhile
        e->evicted.store(true, std::memory_order_relaxed);  // KS1
        e->retired.store(true, std::memory_order_relaxed);
        map_.erase(it);
        fold(*e);                                          // KS7: under the map lock
        evicted_.fetch_add(1, std::memory_order_relaxed);  // counted as it leaves the map
        gone.push_back(e);
      }
    }
    for (entry_ptr& e : gone) {
      retire(*e);
      bury(std::move(e));
    }
    return next;
  }

  // KS6: keeps a retired entry until collect() finds nobody else holding it. Out of memory for the
  // graveyard (close() is noexcept), the entry is let go here instead: destroyed on this thread,
  // or by whichever get still holds it, the one case where KS6 is not kept.
  void bury(entry_ptr e) noexcept {
    std::lock_guard lock(graveyard_mutex_);
    try {
      graveyard_.push_back(std::move(e));  // strong guarantee: on bad_alloc `e` still holds it
    } catch (const std::bad_alloc&) {
    }
  }

  // KS6: destroys the retired entries only the graveyard still holds (joining their sub-pools'
  // threads, never on a sub-pool's own thread); nothing is allocated.
  // KS7: an entry whose sub-pool still has a lease out or a dial in flight stays (total() counts
  // what they add as they end), unless the state is going away (`final`): once its sub-pool has no
  // connection left and nobody else holds the entry, nothing can count there any more.
  // One entry at a time: folded and taken out under graveyard_mutex_ (atomic for total()), then
  // destroyed after the lock is released, so that a stats() call never waits for sub-pools'
  // threads to be joined.
  // The scan resumes where it let go of the lock, so each entry is looked at once per call (a
  // close() of many keys stays linear); an entry moved meanwhile by another thread is at worst
  // looked at twice or left to the next call.
  void collect(bool final = false) noexcept {
    for (std::size_t i = 0;;) {
      entry_ptr gone;
      {
        std::lock_guard lock(graveyard_mutex_);
        for (; i < graveyard_.size(); ++i) {
          entry_ptr& e = graveyard_[i];
          if (e.use_count() != 1 || (!final && e->sub->stats().active != 0)) continue;
          // acquire: stats() read the slot words relaxed; this orders the counters fold() reads
          // after the releases that freed those slots, so a count made just before is not missed.
          std::atomic_thread_fence(std::memory_order_acquire);
          fold(*e);  // KS7: what it counted since it was closed (leases that came back)
          // Out of the graveyard without allocating or shifting (its order does not matter): the
          // last entry takes its place, and is looked at next.
          gone = std::move(e);
          e = std::move(graveyard_.back());  // a self-move when e is the last: left empty, popped
          graveyard_.pop_back();
          break;
        }
      }
      if (!gone) return;
      gone.reset();  // joins its sub-pool's threads (KS6: nobody else holds it)
    }
  }

  // Closes a retired entry's sub-pool and adds what its close counted to total(). Its leases stay
  // valid.
  void retire(entry& e) noexcept {
    e.sub->close();
    fold(e);
  }

  // KS7: adds what `e`'s counters grew by since its last fold to retired_counters_. The stats are
  // read under the lock, so that two folds of one entry cannot apply out of order.
  void fold(entry& e) noexcept {
    std::lock_guard lock(retired_mutex_);
    const pool_stats now = e.sub->stats();
    add_counter_growth(retired_counters_, now, e.folded);
    e.folded = now;
  }

  // ---- the sweeper thread ---------------------------------------------------------------------

  void sweeper_loop() {
    std::unique_lock lock(sweep_mutex_);
    while (!stop_) {
      kicked_ = false;
      lock.unlock();
      std::chrono::nanoseconds next = std::chrono::nanoseconds::max();
      try {
        next = maintain_once();
      } catch (...) {  // bad_alloc in a snapshot: try again soon
        next = std::chrono::milliseconds(100);
      }
      lock.lock();
      const auto woken = [this] { return stop_ || kicked_; };
      if (const std::optional<std::chrono::nanoseconds> wait = keyed_sweeper_wait(next)) {
        sweep_cv_.wait_for(lock, *wait, woken);
      } else {
        NETPOOL_SYNC_POINT("keyed_sweeper:sleep");  // with nothing due, until kicked
        sweep_cv_.wait(lock, woken);  // nothing due until a sub-pool is created or removed (or close)
      }
    }
  }

  void kick_sweeper() {
    if (!background_) return;
    {
      std::lock_guard lock(sweep_mutex_);
      kicked_ = true;
    }
    sweep_cv_.notify_all();  // (closers may wait on sweep_cv_ too: notify_one could wake one of them)
  }

  // close() may run on several threads at once, and on the sweeper itself (from a sub-pool's hook):
  // one caller joins, the others wait until it has (so that every close() returns after the
  // sweeper's last round), and the sweeper neither joins nor waits for itself. Two joins of one
  // std::thread would race on it: the second blocks forever or throws inside noexcept.
  void stop_sweeper() noexcept {
    if (!background_) return;
    std::unique_lock lock(sweep_mutex_);
    stop_ = true;
    sweep_cv_.notify_all();  // the sweeper, and closers waiting for the join
    if (sweeper_id_ == std::this_thread::get_id()) return;
    if (sweeper_joining_) {
      sweep_cv_.wait(lock, [this] { return sweeper_joined_; });
      return;
    }
    sweeper_joining_ = true;
    lock.unlock();
    sweeper_.join();
    lock.lock();
    sweeper_joined_ = true;
    sweep_cv_.notify_all();
  }

  const make_config_function make_config_;
  const std::size_t per_key_max_;
  const std::chrono::nanoseconds evict_after_;
  const std::int64_t touch_resolution_;  // KS3
  const std::int64_t quiet_needed_;  // KS3: the silence before an eviction, evict_after_ + touch_resolution_
  // When the sweeper looks again at a sub-pool quiet long enough but still in use: evict_after_ / 8,
  // at least min_period_ns. (Not touch_resolution_, which is at most 1 ms: a lease held for hours
  // would have the sweeper look a thousand times a second.)
  const std::int64_t relook_ns_;
  const bool background_;
  const clock::time_point epoch_ = clock::now();
  const std::shared_ptr<keyed_budget> budget_;  // shared with every sub-pool's on_close

  mutable std::shared_mutex map_mutex_;
  std::unordered_map<Key, entry_ptr, Hash, KeyEq> map_;  // guarded by map_mutex_ (KS1)
  mutable std::mutex create_mutex_;                      // serialises create()
  std::mutex maintain_mutex_;                            // serialises maintain_once()
  std::atomic<bool> closed_{false};

  std::atomic<std::uint64_t> created_{0}, evicted_{0}, removed_{0}, reclaimed_{0};
  mutable std::mutex graveyard_mutex_;  // taken after map_mutex_, never before
  std::vector<entry_ptr> graveyard_;    // guarded by graveyard_mutex_: retired entries (KS6)
  mutable std::mutex retired_mutex_;    // taken after map_mutex_ or graveyard_mutex_, never before
  pool_stats retired_counters_;         // guarded by retired_mutex_: counters of sub-pools gone (KS7)

  std::mutex sweep_mutex_;
  std::condition_variable sweep_cv_;
  bool stop_ = false;             // guarded by sweep_mutex_
  bool kicked_ = false;           // guarded by sweep_mutex_
  bool sweeper_joining_ = false;  // guarded by sweep_mutex_: a closer has taken on the join
  bool sweeper_joined_ = false;   // guarded by sweep_mutex_
  std::thread sweeper_;           // joined by the one closer that set sweeper_joining_
  std::thread::id sweeper_id_;    // written once in start(), before the keyed pool is shared
};

}  // namespace netpool::detail
