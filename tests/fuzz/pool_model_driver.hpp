// pool_model_driver.hpp — the model-based fuzzer's engine: decodes bytes into pool operations,
// applies each to a real netpool pool and to a small single-threaded reference model, and checks
// after every step that the two agree. Shared by the libFuzzer target (tests/fuzz/pool_model.cpp)
// and by the regression test that replays saved inputs in every build (tests/unit/
// fuzz_regression_test.cpp), so a crash found by clang's fuzzer stays fixed under g++ too.
//
//   const netpool::fuzz::run_result r = netpool::fuzz::run_pool_model(data, size);
//   if (!r.ok) std::fprintf(stderr, "%s\n", r.failure.c_str());   // what disagreed, at which step
//
// Input format (every byte is meaningful, so libFuzzer's mutations stay valid):
//   byte 0  bit 0 lean_pool (else pool) | bit 1 health check | bits 2-3 dial backoff
//           (off, 10ms..1s, 1ms..4ms, 5ms..5ms) | bits 4-6 max_idle_time (see idle_choices) |
//           bit 7 max_connecting 1 (else 2)
//   byte 1  bits 0-2 max_size - 1 | bits 3-5 min_size (mod max_size + 1) | bits 6-7 dial_timeout
//   byte 2  bits 0-2 the factory's mode at creation (dial_mode) | bit 3 tear down leases first |
//           bits 4-5 probe_after (off, 0, 1ms, 500ms)
//   byte 3  bits 0-1 max_lifetime (off, 5ms, 20ms, 1s; lifetime_jitter 0) | bits 2-3
//           keepalive_interval (off, 2ms, 10ms, 100ms) | bits 4-5 health_check_timeout (1s, 1ns,
//           1h, nanoseconds::max())
//   (lean_pool ignores byte 0 bits 1 and 4-6, byte 2 bits 4-5 and byte 3: those are pool only)
//   then two bytes per operation: [opcode (low 4 bits)] [parameter], see `op` below.
//
// The model is written from the documented contract (pool.hpp, config.hpp, lease.hpp, design.md)
// and pins down what the single-threaded contract leaves to the implementation the way the
// implementation does it: a thread gets back the slot it returned last (LIFO); a miss first tries
// the up to 4 slots this thread last took through the walk (pool_core's cache of walked slots, in
// its order), else walks to the lowest idle slot (and remembers it there), and if that one fails
// its checks scans the slots from 0; a dial takes the lowest free slot. Idle time is measured in ticks of 1
// ms that only pool::maintain() advances (background_maintenance = false, injected clock), from the tick at
// which the connection became idle. max_lifetime runs with lifetime_jitter = 0, so that each
// connection's expiry is known. The dial backoff's jitter is not predictable (it is seeded per
// pool), so the model keeps the window the docs promise ([backoff/2, backoff] after the failure)
// and narrows it from what the pool is seen to do; any observation outside the window is a failure.
//
// Thread safety: none; one run at a time per thread (the thread's LIFO hint is part of the model).
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "netpool/pool.hpp"

namespace netpool::fuzz {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;
using steady = std::chrono::steady_clock;

// ---- the world the pool lives in: connections, factory, health check ----------------------------

enum class health : std::uint8_t { ok, dead, throws };
enum class dial_mode : std::uint8_t { ok, refused, reset, failed, throws };
inline constexpr int dial_modes = 5;

struct conn_record {
  int closes = 0;
  health state = health::ok;         // what the health check answers
  liveness probe = liveness::alive;  // what probe() answers
  bool held = false;                 // a lease holds it now (set and cleared by the driver)
};

// Everything the pool's callbacks touch. Owned by the driver, outlives every pool and connection.
struct world {
  std::vector<conn_record> conns;  // by connection id
  dial_mode mode = dial_mode::ok;
  std::uint64_t factory_calls = 0;
  std::uint64_t health_calls = 0;
  std::uint64_t probe_calls = 0;
  long objects = 0;                                     // fuzz_conn objects alive, moved-from ones included
  std::string violation;                                // the first contract breach seen inside a callback
  steady::time_point pool_time{std::chrono::hours(1)};  // the injected clock
  // What the factory's deadline must be: min(caller's deadline, now + dial_timeout).
  nanoseconds dial_timeout{0};
  nanoseconds caller_budget = nanoseconds::max();  // max: the caller has no deadline
  // What the health check's deadline must be: now + health_check_timeout, whatever the caller's.
  nanoseconds health_check_timeout{0};
  steady::time_point op_start{};

  void violate(std::string what) {
    if (violation.empty()) violation = std::move(what);
  }
};

// A user-defined connection: records its life and asserts that it is closed exactly once and
// never while a lease holds it (the way rigtorp's TestType counts constructions).
class fuzz_conn {
 public:
  explicit fuzz_conn(world& w) : world_(&w), id_(static_cast<int>(w.conns.size())), owns_(true) {
    w.conns.emplace_back();
    ++w.objects;
  }
  fuzz_conn(fuzz_conn&& other) noexcept
      : world_(other.world_), id_(other.id_), owns_(std::exchange(other.owns_, false)) {
    ++world_->objects;
  }
  fuzz_conn& operator=(fuzz_conn&&) = delete;  // the pool constructs connections in place
  fuzz_conn(const fuzz_conn&) = delete;
  fuzz_conn& operator=(const fuzz_conn&) = delete;
  ~fuzz_conn() {
    --world_->objects;
    if (!owns_) return;
    conn_record& r = world_->conns[static_cast<std::size_t>(id_)];
    if (++r.closes != 1) world_->violate("connection " + std::to_string(id_) + " closed twice");
    if (r.held) world_->violate("connection " + std::to_string(id_) + " closed while a lease holds it");
  }

  [[nodiscard]] int id() const noexcept { return id_; }

  // The built-in liveness probe (pool_config::probe_after, keepalive) uses this when present.
  [[nodiscard]] liveness probe() const noexcept {
    ++world_->probe_calls;
    const conn_record& r = world_->conns[static_cast<std::size_t>(id_)];
    if (!owns_) world_->violate("probe() on a moved-from connection");
    if (r.held) world_->violate("probe() ran on connection " + std::to_string(id_) + " while lent");
    return r.probe;
  }

 private:
  world* world_;
  int id_;
  bool owns_;
};

inline steady::time_point saturating_add(steady::time_point t, nanoseconds d) {
  if (d >= steady::time_point::max() - t) return steady::time_point::max();
  return t + std::chrono::duration_cast<steady::duration>(d);
}

inline std::error_code dial_error(dial_mode m) {
  switch (m) {
    case dial_mode::refused:
      return make_dial_error(ECONNREFUSED);
    case dial_mode::reset:
      return make_dial_error(ECONNRESET);
    case dial_mode::failed:
      return errc::dial_failed;
    case dial_mode::throws:
      return errc::factory_threw;  // what the pool reports for a factory that threw
    case dial_mode::ok:
      break;
  }
  return {};
}

inline factory_function<fuzz_conn> make_factory(world& w) {
  return [&w](steady::time_point deadline) -> result<fuzz_conn> {
    ++w.factory_calls;
    const nanoseconds budget = std::min(w.dial_timeout, w.caller_budget);
    const steady::time_point lo = saturating_add(w.op_start, budget);
    const steady::time_point hi = saturating_add(steady::now(), budget);
    if (deadline < lo || deadline > hi)
      w.violate("the factory's deadline is not min(caller's, now + dial_timeout)");
    switch (w.mode) {
      case dial_mode::ok:
        return fuzz_conn(w);
      case dial_mode::throws:
        throw std::runtime_error("pool_model: the factory throws");
      default:
        return dial_error(w.mode);
    }
  };
}

inline std::function<bool(fuzz_conn&, steady::time_point)> make_health_check(world& w) {
  return [&w](fuzz_conn& c, steady::time_point deadline) -> bool {
    ++w.health_calls;
    const steady::time_point lo = saturating_add(w.op_start, w.health_check_timeout);
    const steady::time_point hi = saturating_add(steady::now(), w.health_check_timeout);
    if (deadline < lo || deadline > hi)
      w.violate("the health check's deadline is not now + health_check_timeout");
    const conn_record& r = w.conns[static_cast<std::size_t>(c.id())];
    if (r.held) w.violate("health check ran on connection " + std::to_string(c.id()) + " while lent");
    if (r.closes != 0) w.violate("health check ran on closed connection " + std::to_string(c.id()));
    switch (r.state) {
      case health::ok:
        return true;
      case health::dead:
        return false;
      case health::throws:
        throw std::runtime_error("pool_model: the health check throws");
    }
    return true;
  };
}

// ---- configuration --------------------------------------------------------------------------------

inline constexpr std::array<nanoseconds, 8> idle_choices{0ns, 1ms, 2500us, 8ms, 10ms, 50ms, 1s, 3ms};
inline constexpr std::array<nanoseconds, 4> dial_timeout_choices{5s, 1ms, std::chrono::hours(1),
                                                                 nanoseconds::max()};
inline constexpr std::array<nanoseconds, 4> probe_choices{nanoseconds::max(), 0ns, 1ms, 500ms};
inline constexpr std::array<nanoseconds, 4> lifetime_choices{0ns, 5ms, 20ms, 1s};
inline constexpr std::array<nanoseconds, 4> keepalive_choices{0ns, 2ms, 10ms, 100ms};
inline constexpr std::array<nanoseconds, 4> check_timeout_choices{1s, 1ns, std::chrono::hours(1),
                                                                  nanoseconds::max()};
inline constexpr std::size_t registers = 8;  // leases the input can hold at once

// How a run goes. The defaults read the environment: NETPOOL_FUZZ_TRACE=1 prints each step;
// NETPOOL_FUZZ_KNOWN_BUGS=1 stops steering around known library bugs (to replay
// tests/fuzz/known_bugs/pool_model/).
struct run_options {
  bool trace = std::getenv("NETPOOL_FUZZ_TRACE") != nullptr;
  // Known library bugs to steer around, so that the fuzzer keeps finding new ones (none now: the
  // probe's idle-age bug it found is fixed; its reproducers are in regressions/).
  bool avoid_known_bugs = std::getenv("NETPOOL_FUZZ_KNOWN_BUGS") == nullptr;
};

struct settings {
  bool lean = false;
  bool health_check = false;
  nanoseconds backoff_floor{0}, backoff_cap{0};
  nanoseconds max_idle{0};
  std::size_t max_connecting = 2;
  std::size_t max_size = 1, min_size = 0;
  nanoseconds dial_timeout = 5s;
  nanoseconds probe_after = nanoseconds::max();  // max: off
  nanoseconds max_lifetime{0};
  nanoseconds keepalive{0};
  nanoseconds health_check_timeout = 1s;
  dial_mode initial_mode = dial_mode::ok;
  bool leases_first = false;  // teardown order

  static settings decode(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d,
                         [[maybe_unused]] const run_options& o) {  // o: for steering around known bugs
    settings s;
    s.lean = (a & 1) != 0;
    s.health_check = !s.lean && (a & 2) != 0;
    switch ((a >> 2) & 3) {
      case 0:
        break;  // floor 0: backoff off
      case 1:
        s.backoff_floor = 10ms;
        s.backoff_cap = 1s;
        break;
      case 2:
        s.backoff_floor = 1ms;
        s.backoff_cap = 4ms;
        break;
      default:
        s.backoff_floor = 5ms;
        s.backoff_cap = 5ms;
        break;
    }
    s.max_idle = s.lean ? 0ns : idle_choices[(a >> 4) & 7];
    s.max_connecting = (a & 0x80) != 0 ? 1 : 2;
    s.max_size = 1 + (b & 7);
    s.min_size = ((b >> 3) & 7) % (s.max_size + 1);
    s.dial_timeout = dial_timeout_choices[(b >> 6) & 3];
    const int m = c & 7;
    s.initial_mode = m < dial_modes ? static_cast<dial_mode>(m) : dial_mode::ok;
    s.leases_first = (c & 8) != 0;
    if (!s.lean) {
      s.probe_after = probe_choices[(c >> 4) & 3];
      s.max_lifetime = lifetime_choices[d & 3];
      s.keepalive = keepalive_choices[(d >> 2) & 3];
      s.health_check_timeout = check_timeout_choices[(d >> 4) & 3];
    }
    return s;
  }

  pool_config<fuzz_conn> config(world& w) const {
    pool_config<fuzz_conn> cfg;
    cfg.factory = make_factory(w);
    cfg.max_size = max_size;
    cfg.min_size = min_size;
    cfg.dial_timeout = dial_timeout;
    cfg.max_idle_time = max_idle;
    if (health_check) cfg.health_check = make_health_check(w);
    cfg.health_check_timeout = health_check_timeout;
    cfg.max_connecting = max_connecting;
    cfg.probe_after = probe_after;
    cfg.max_lifetime = max_lifetime;
    cfg.lifetime_jitter = 0.0;  // each connection's expiry is then known exactly
    cfg.keepalive_interval = keepalive;
    cfg.dial_backoff_floor = backoff_floor;
    cfg.dial_backoff_cap = backoff_cap;
    cfg.background_maintenance = false;  // pool::maintain() is called by the input, on this thread
    cfg.clock = [&w] { return w.pool_time; };
    return cfg;
  }
};

// ---- the reference model --------------------------------------------------------------------------

enum class get_kind {
  wait,       // get(), get_for(long), get_until(far): called only when it will not block
  past,       // get_for(0), get_until(past): never waits, never dials
  try_idle,   // try_get(): never waits, never dials
  cancelled,  // a stop_token already stopped
};

// What the pool was seen to do, for the choices the model cannot predict (the backoff's jitter).
struct observation {
  std::uint64_t dials_delta = 0;
  std::uint64_t fast_failures_delta = 0;
  nanoseconds maintain_result{0};
};

struct outcome {
  std::error_code error;  // when no connection is lent
  int conn = -1;          // the connection lent, or -1
  int slot = -1;
};

class pool_model {
 public:
  enum class phase : std::uint8_t { free, idle, leased };
  enum class doom : std::uint8_t { none, lifetime, reset };  // closed when it comes back, and why
  struct slot {
    phase p = phase::free;
    int conn = -1;
    std::uint64_t idle_since = 0;  // tick at which it became idle
    std::uint64_t expires_at = 0;  // tick (max_lifetime)
    doom doomed = doom::none;
  };
  struct lease_ref {
    int slot = -1;
    int conn = -1;
    [[nodiscard]] bool empty() const { return slot < 0; }
  };
  struct counters {
    std::uint64_t gets = 0, timeouts = 0, cancellations = 0, dials = 0, dial_failures = 0, fast_failures = 0;
    std::uint64_t closed_idle = 0, closed_health = 0, closed_error = 0, closed_pool = 0, closed_reset = 0,
                  closed_lifetime = 0, closed_reclaimed = 0;
  };

  pool_model(const settings& s, world& w)
      : s_(s),
        w_(w),
        slots_(s.max_size),
        track_idle_(!s.lean && s.max_idle > 0ns),
        probes_(!s.lean && s.probe_after != nanoseconds::max()),
        checks_on_get_(track_idle_ || s.health_check || probes_),
        max_idle_ticks_(track_idle_ ? ticks_ceil(s.max_idle) : 0),
        probe_ticks_(probes_ && s.probe_after > 0ns ? ticks_ceil(s.probe_after) : 0),
        lifetime_ticks_(!s.lean && s.max_lifetime > 0ns ? ticks_ceil(s.max_lifetime) : 0),
        keepalive_ticks_(!s.lean && s.keepalive > 0ns ? ticks_ceil(s.keepalive) : 0),
        uses_tick_(track_idle_ || probes_ || lifetime_ticks_ != 0 || keepalive_ticks_ != 0),
        fast_ticks_(std::min(track_idle_ ? max_idle_ticks_ : no_limit, probes_ ? probe_ticks_ : no_limit)),
        tick_period_(tick_period_of(s)) {}

  // create(): the first fill to min_size, on the creating thread.
  void create() { fill_to_min({}); }

  // ---- queries ----
  [[nodiscard]] std::size_t count(phase p) const {
    return static_cast<std::size_t>(
        std::count_if(slots_.begin(), slots_.end(), [p](const slot& s) { return s.p == p; }));
  }
  [[nodiscard]] std::size_t active() const { return slots_.size() - count(phase::free); }
  [[nodiscard]] bool closed() const { return closed_ || destroyed_; }
  [[nodiscard]] bool destroyed() const { return destroyed_; }
  [[nodiscard]] bool would_block() const {
    return !closed() && count(phase::idle) == 0 && active() == slots_.size();
  }
  [[nodiscard]] const counters& stats() const { return c_; }
  [[nodiscard]] std::uint64_t health_calls() const { return health_calls_; }
  [[nodiscard]] std::uint64_t probe_calls() const { return probe_calls_; }
  [[nodiscard]] std::error_code last_dial_error() const { return last_error_; }
  [[nodiscard]] bool conn_closed(std::size_t id) const { return conn_closed_[id]; }
  [[nodiscard]] std::size_t made() const { return conn_closed_.size(); }
  [[nodiscard]] const lease_ref& reg(std::size_t r) const { return regs_[r]; }

  // ---- operations ----
  void advance(nanoseconds d) { now_ += d.count(); }

  outcome get(get_kind kind, const observation& obs, std::string& problem) {
    if (destroyed_) return {errc::pool_closed};
    const std::uint64_t checks_before = health_calls_;
    // Fast path: the slot this thread returned last (skipped when a stop was requested). Lent
    // without any check while idle for less than every time-based threshold and no health check.
    if (kind != get_kind::cancelled && hint_ >= 0 && at(hint_).p == phase::idle) {
      const int i = hint_;
      at(i).p = phase::leased;
      const bool unchecked = !checks_on_get_ || (!s_.health_check && idle_ticks(i) < fast_ticks_);
      if (unchecked || passes_checks(i)) return lend(i);
      free_slot(i);
    }
    if (kind == get_kind::cancelled) {
      ++c_.cancellations;
      return {errc::cancelled};
    }
    if (closed_) return {errc::pool_closed};
    // The lean miss path (pool_core::acquire_slow), unless the fast path ran a health check: one
    // candidate, from this thread's cache of walked slots or else the lowest idle slot.
    if (health_calls_ == checks_before) {
      int candidate = -1;
      for (const int cached : walked_) {
        // Passed over when idle past every time-based threshold (pool_core::take_walked()).
        const bool stale =
            checks_on_get_ && !s_.health_check && cached >= 0 && idle_ticks(cached) >= fast_ticks_;
        if (cached >= 0 && at(cached).p == phase::idle && !stale) {
          candidate = cached;
          break;
        }
      }
      if (candidate < 0) {
        for (int i = 0; i < static_cast<int>(slots_.size()) && candidate < 0; ++i) {
          if (at(i).p == phase::idle) candidate = i;
        }
        if (candidate >= 0) remember_walked(candidate);
      }
      if (candidate >= 0) {
        at(candidate).p = phase::leased;
        if (passes_checks(candidate)) return lend(candidate);
        free_slot(candidate);
      }
    }
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {  // then a scan from slot 0
      if (at(i).p != phase::idle) continue;
      // Once this get has run a health check (which may block), on the fast path or here, no new
      // one starts past its deadline (pool_core::scan_idle); try_get has no deadline and checks
      // them all.
      if (kind == get_kind::past && health_calls_ != checks_before) break;
      at(i).p = phase::leased;
      if (passes_checks(i)) return lend(i);
      free_slot(i);
    }
    if (kind == get_kind::try_idle) return {errc::exhausted};
    if (active() == slots_.size()) {
      if (kind == get_kind::past) {
        ++c_.timeouts;
        return {errc::timeout};
      }
      problem = "model: a waiting get was issued on a pool that would block";
      return {errc::timeout};
    }
    // Room to dial. While backing off, the last dial error wins even over a passed deadline
    // (dial_for_caller checks the backoff first: "the backend is down" says more than "timeout").
    if (backing_off(obs.fast_failures_delta > 0)) {
      ++c_.fast_failures;
      return {last_error_};
    }
    if (kind == get_kind::past) {  // room to dial, but the deadline has passed: no dial
      ++c_.timeouts;
      return {errc::timeout};
    }
    const int i = lowest_free();
    const int conn = dial();
    if (conn < 0) return {last_error_};
    at(i) = new_slot(phase::leased, conn);
    return lend(i);
  }

  // A lease the driver stored in register r (after a get). The register's previous lease, if any,
  // goes back afterwards: lease's move assignment returns it once the get has taken the new one.
  void store(std::size_t r, const outcome& got) {
    const lease_ref old = regs_[r];
    regs_[r] = lease_ref{got.slot, got.conn};
    if (!old.empty()) (void)put_back(old);
  }

  // put(lease) through the pool handle (via_handle) or lease.release(); and the silent forms
  // (move-assigning an empty lease, destroying the lease), which return nothing.
  std::error_code put(std::size_t r, bool via_handle) {
    const lease_ref l = regs_[r];
    if (l.empty()) return errc::empty_lease;
    if (via_handle && destroyed_) return errc::pool_closed;  // the handle no longer has a pool
    regs_[r] = {};
    return put_back(l);
  }
  std::error_code discard(std::size_t r, bool via_handle) {
    const lease_ref l = regs_[r];
    if (l.empty()) return errc::empty_lease;
    if (via_handle && destroyed_) return errc::pool_closed;
    regs_[r] = {};
    close_conn(at(l.slot).conn);
    ++c_.closed_error;
    free_slot(l.slot);
    return {};
  }
  void move(std::size_t from, std::size_t to) {
    if (from == to) return;  // self-move assignment: nothing happens
    const lease_ref old = regs_[to];
    regs_[to] = regs_[from];
    regs_[from] = {};
    if (!old.empty()) (void)put_back(old);
  }

  void close() {
    if (destroyed_) return;
    closed_ = true;
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
      if (at(i).p != phase::idle) continue;
      close_conn(at(i).conn);
      ++c_.closed_pool;
      free_slot(i);
    }
  }
  void destroy() {
    close();
    destroyed_ = true;
  }

  // pool::reset(): idle connections closed now, lent ones when they come back.
  void reset() {
    if (closed()) return;
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
      if (at(i).p == phase::idle) {
        close_conn(at(i).conn);
        ++c_.closed_reset;
        free_slot(i);
      } else if (at(i).p == phase::leased && at(i).doomed == doom::none) {
        at(i).doomed = doom::reset;
      }
    }
  }

  // pool::reclaim_idle(): the highest idle connection is closed (reclaimed), without a get.
  bool reclaim() {
    if (closed()) return false;
    for (int i = static_cast<int>(slots_.size()) - 1; i >= 0; --i) {
      if (at(i).p != phase::idle) continue;
      close_conn(at(i).conn);
      ++c_.closed_reclaimed;
      free_slot(i);
      return true;
    }
    return false;
  }

  // pool::wait_for_min_size(deadline already passed): how many are open now.
  [[nodiscard]] std::size_t open() const {
    return destroyed_ ? 0 : count(phase::idle) + count(phase::leased);
  }

  // pool::maintain(): advance the tick, reap idle connections, expire lifetimes, keepalive, refill
  // to min_size. Returns the expected result; a backoff-dependent one is checked against the
  // window (problem) and learned.
  nanoseconds maintain(const observation& obs, std::string& problem) {
    if (destroyed_) return nanoseconds::max();
    tick_ = std::max(tick_, static_cast<std::uint64_t>(now_ / 1'000'000));
    if (track_idle_) {
      for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
        if (active() <= s_.min_size) break;  // min_size connections are kept, however old
        if (at(i).p != phase::idle || idle_ticks(i) < max_idle_ticks_) continue;
        close_conn(at(i).conn);
        ++c_.closed_idle;
        free_slot(i);
      }
    }
    if (lifetime_ticks_ != 0 && !closed_) {  // idle ones closed now, lent ones doomed
      for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
        slot& s = at(i);
        if (s.p == phase::free || s.doomed != doom::none || tick_ < s.expires_at) continue;
        if (s.p == phase::idle) {
          close_conn(s.conn);
          ++c_.closed_lifetime;
          free_slot(i);
        } else {
          s.doomed = doom::lifetime;
        }
      }
    }
    if (keepalive_ticks_ != 0 && tick_ >= next_keepalive_) {
      for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
        if (at(i).p != phase::idle) continue;
        if (probe_ok(i) && (!s_.health_check || health_ok(i))) continue;  // idle age unchanged
        close_conn(at(i).conn);
        ++c_.closed_health;
        free_slot(i);
      }
      next_keepalive_ = tick_ + keepalive_ticks_;
    }
    fill_to_min(obs);
    if (closed_) return nanoseconds::max();
    if (active() < s_.min_size) {
      // The refill stopped (a failed dial, or backing off): come back when a retry is allowed,
      // clamped to [1 ms, 1 s]. retry_at is only known to lie in [lo_, hi_].
      const auto clamp = [](std::int64_t d) {
        return nanoseconds(std::clamp<std::int64_t>(d, 1'000'000, 1'000'000'000));
      };
      if (!armed_) return clamp(-now_);
      const nanoseconds lo = clamp(lo_ - now_), hi = clamp(hi_ - now_), got = obs.maintain_result;
      if (got < lo || got > hi) {
        problem = "maintain() returned " + std::to_string(got.count()) + " ns; the backoff window allows [" +
                  std::to_string(lo.count()) + ", " + std::to_string(hi.count()) + "]";
        return got;
      }
      if (got == 1ms) {
        hi_ = std::min(hi_, now_ + 1'000'000);
      } else if (got == 1s) {
        lo_ = std::max(lo_, now_ + 1'000'000'000);
      } else {
        lo_ = hi_ = now_ + got.count();  // now known exactly
      }
      return got;
    }
    // The pools here run without a maintainer thread (background_maintenance = false), so a
    // time-based option makes every round name the tick period, even on an empty pool: a get
    // may dial later, and nothing else would run the rounds that age its connection.
    if (uses_tick_) return tick_period_;
    return nanoseconds::max();
  }

 private:
  static constexpr std::uint64_t no_limit = ~std::uint64_t{0};

  slot& at(int i) { return slots_[static_cast<std::size_t>(i)]; }

  static std::uint64_t ticks_ceil(nanoseconds d) {
    return static_cast<std::uint64_t>(
        std::max<std::int64_t>(std::chrono::ceil<std::chrono::milliseconds>(d).count(), 1));
  }
  static std::uint64_t ticks_since(std::uint64_t now, std::uint64_t stamp) {
    return now > stamp ? now - stamp : 0;
  }
  std::uint64_t idle_ticks(int i) { return ticks_since(tick_, at(i).idle_since); }

  // maintain()'s period when time-based features are on: fine enough for the finest of them
  // (design.md: max_idle_time / 8, probe_after / 4, a quarter of the lifetime jitter window or,
  // without jitter, max_lifetime / 8, keepalive_interval / 4), at most 1 s and at least 1 ms.
  static nanoseconds tick_period_of(const settings& s) {
    nanoseconds p = 1s;
    if (!s.lean && s.max_idle > 0ns) p = std::min(p, s.max_idle / 8);
    if (s.probe_after > 0ns && s.probe_after != nanoseconds::max()) p = std::min(p, s.probe_after / 4);
    if (s.max_lifetime > 0ns) p = std::min(p, s.max_lifetime / 8);  // jitter 0: no spread to keep
    if (s.keepalive > 0ns) p = std::min(p, s.keepalive / 4);
    return std::max<nanoseconds>(p, 1ms);
  }

  int lowest_free() {
    for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
      if (at(i).p == phase::free) return i;
    }
    return -1;
  }
  void free_slot(int i) { at(i) = slot{}; }
  void close_conn(int id) { conn_closed_[static_cast<std::size_t>(id)] = true; }
  slot new_slot(phase p, int conn) const {
    // jitter 0: the lifetime is exactly max_lifetime, from the tick of the dial.
    return slot{p, conn, tick_, lifetime_ticks_ != 0 ? tick_ + lifetime_ticks_ : 0, doom::none};
  }

  outcome lend(int i) {
    ++c_.gets;
    return {{}, at(i).conn, i};
  }

  bool probe_ok(int i) {
    ++probe_calls_;
    return w_.conns[static_cast<std::size_t>(at(i).conn)].probe == liveness::alive;
  }
  bool health_ok(int i) {  // false when the check said false or threw
    ++health_calls_;
    return w_.conns[static_cast<std::size_t>(at(i).conn)].state == health::ok;
  }

  // The checks a pooled connection passes before it is lent (standard pool), in order; on failure
  // the model closes it and the caller frees the slot.
  bool passes_checks(int i) {
    slot& s = at(i);
    const std::uint64_t idle = idle_ticks(i);
    if (track_idle_ && idle >= max_idle_ticks_ && active() > s_.min_size) {
      close_conn(s.conn);
      ++c_.closed_idle;
      return false;
    }
    if (lifetime_ticks_ != 0 && tick_ >= s.expires_at) {
      close_conn(s.conn);
      ++c_.closed_lifetime;
      return false;
    }
    if ((probes_ && idle >= probe_ticks_ && !probe_ok(i)) || (s_.health_check && !health_ok(i))) {
      close_conn(s.conn);
      ++c_.closed_health;
      return false;
    }
    return true;
  }

  std::error_code put_back(const lease_ref& l) {
    hint_ = l.slot;  // LIFO: this thread's next get tries this slot first
    slot& s = at(l.slot);
    if (closed()) {
      close_conn(s.conn);
      ++c_.closed_pool;
      free_slot(l.slot);
      return errc::pool_closed;
    }
    if (s.doomed != doom::none) {  // not an error: the pool decided to close it
      close_conn(s.conn);
      ++(s.doomed == doom::reset ? c_.closed_reset : c_.closed_lifetime);
      free_slot(l.slot);
      return {};
    }
    s.p = phase::idle;
    s.idle_since = tick_;
    return {};
  }

  // One factory call: the new connection's id, or -1 (last_error_ says why). A successful dial
  // in a standard pool with any time-based feature refreshes the tick first (pool_core's
  // stamp_new_connection), so the new connection's expiry and idle stamp are measured from now.
  int dial() {
    ++c_.dials;
    const std::error_code e = dial_error(w_.mode);
    if (!e) {
      const bool uses_tick = !s_.lean && (s_.max_idle > 0ns || s_.probe_after != nanoseconds::max() ||
                                          s_.max_lifetime > 0ns || s_.keepalive > 0ns);
      if (uses_tick) tick_ = std::max(tick_, static_cast<std::uint64_t>(now_ / 1'000'000));
      if (armed_) {  // a success resets the backoff
        backoff_ = 0;
        armed_ = false;
      }
      conn_closed_.push_back(false);
      return static_cast<int>(conn_closed_.size()) - 1;
    }
    ++c_.dial_failures;
    last_error_ = e;
    if (s_.backoff_floor > 0ns) {
      backoff_ = std::clamp<std::int64_t>(backoff_ * 2, s_.backoff_floor.count(), s_.backoff_cap.count());
      const std::int64_t half = backoff_ / 2;
      armed_ = true;
      lo_ = now_ + half;  // config.hpp: each wait is drawn from [backoff/2, backoff]
      hi_ = now_ + 2 * half;
    }
    return -1;
  }

  // Whether dials are held back now. Inside the jitter window the pool's observed behaviour
  // decides, and narrows the window for the next question.
  bool backing_off(bool observed) {
    if (!armed_ || now_ >= hi_) return false;
    if (now_ < lo_) return true;
    if (observed) {
      lo_ = now_ + 1;
    } else {
      hi_ = now_;
    }
    return observed;
  }

  void fill_to_min(const observation& obs) {
    while (!closed_ && active() < s_.min_size) {
      if (backing_off(obs.dials_delta == 0)) return;  // only the first check can be uncertain
      const int i = lowest_free();
      const int conn = dial();
      if (conn < 0) return;
      at(i) = new_slot(phase::idle, conn);
    }
  }

  settings s_;
  world& w_;
  std::vector<slot> slots_;
  std::array<lease_ref, registers> regs_{};
  int hint_ = -1;
  // pool_core's thread_walked for this pool: the slots this thread last took through the walk,
  // replaced oldest first; -1 is an empty entry.
  std::array<int, detail::walked_slots_per_way> walked_ = [] {
    std::array<int, detail::walked_slots_per_way> empty{};
    empty.fill(-1);
    return empty;
  }();
  std::size_t walked_next_ = 0;
  void remember_walked(int i) {
    if (std::find(walked_.begin(), walked_.end(), i) != walked_.end()) return;
    walked_[walked_next_] = i;
    walked_next_ = (walked_next_ + 1) % walked_.size();
  }
  bool closed_ = false, destroyed_ = false;
  std::int64_t now_ = 0;    // pool time since creation, ns
  std::uint64_t tick_ = 0;  // ms, advanced by maintain()
  std::uint64_t next_keepalive_ = 0;
  const bool track_idle_, probes_, checks_on_get_;
  const std::uint64_t max_idle_ticks_, probe_ticks_, lifetime_ticks_, keepalive_ticks_;
  const bool uses_tick_;
  const std::uint64_t fast_ticks_;
  const nanoseconds tick_period_;
  counters c_;
  std::uint64_t health_calls_ = 0, probe_calls_ = 0;
  std::vector<bool> conn_closed_;  // by connection id
  // Dial backoff: exact but for retry_at, known to lie in [lo_, hi_] while armed_.
  std::error_code last_error_;
  std::int64_t backoff_ = 0;
  bool armed_ = false;
  std::int64_t lo_ = 0, hi_ = 0;
};

// ---- the driver -----------------------------------------------------------------------------------

// Opcodes: the low 4 bits of an operation's first byte. The second byte `p` is its parameter;
// r is a lease register (0-7).
enum class op : std::uint8_t {
  // r = p & 7; form = p >> 3 & 7: get(), get_for(1h), get_until(now + 1h), get(stop_token),
  // get(stopped token), get_for(1h, stopped token), get_until(now + 1h, stop_token),
  // get_for(hours::max()). A form that could wait is issued only when the model says it will not
  // block (an idle connection, or room to dial); otherwise get_for(0) is issued instead.
  get = 0,
  try_get = 1,    // r = p & 7; p & 0x80: reclaim_idle() instead (no register; a bit no saved input sets)
  get_past = 2,   // r = p & 7; p >> 3 & 3: get_for(0), get_for(-1ms), get_until(now - 1s), get_until(min)
  put = 3,        // r = p & 7; p >> 3 & 3: pool.put(r), r.release(), r = {}, ~r
  put_error = 4,  // r = p & 7; p >> 3 & 1: pool.put_with_error(r), r.discard()
  move = 5,       // register (p & 7) moved into register (p >> 3 & 7)
  // r = p & 7; p >> 3 & 3: other.put(r), other.put_with_error(r), pool.put(other's lease),
  // pool.put_with_error(other's lease): wrong_pool, and the lease stays where it was.
  wrong_pool = 6,
  close = 7,
  destroy = 8,    // the handle goes away (leases stay valid); p & 1: moved out and back instead
  advance = 9,    // pool time += advance_choices[p & 15]; then maintain() unless p & 16 (pool only)
  maintain = 10,  // pool only: maintain(), or (p & 1) wait_for_min_size(a deadline already passed)
  // Connection (p & 63) % made becomes, by p >> 6: healthy; health check false; health check
  // throws; probe() reports a dead socket (unread data, EOF or error).
  health = 11,
  restart = 12,    // server restart: every connection fails both checks; the factory's mode is p % 5
  dial_mode = 13,  // the factory's mode becomes p % 5: ok, refused, reset, dial_failed, throws
  reset = 14,      // pool::reset() (pool only)
  get_any = 15,    // as get (form = p & 7) into the first empty register, else r = p >> 3 & 7
};

inline constexpr std::array<liveness, 3> dead_probes{liveness::unread_data, liveness::peer_closed,
                                                     liveness::error};
inline constexpr std::array<nanoseconds, 16> advance_choices{1ns,  100us, 999us, 1ms,   2ms,   3ms, 5ms, 8ms,
                                                             10ms, 15ms,  50ms,  100ms, 500ms, 1s,  5s,  60s};

struct run_result {
  bool ok = true;
  std::string failure;
  std::size_t steps = 0;
};

inline const char* op_name(op o) {
  static constexpr std::array<const char*, 16> names{
      "get",     "try_get", "get_past", "put",    "put_error", "move",      "wrong_pool", "close",
      "destroy", "advance", "maintain", "health", "restart",   "dial_mode", "reset",      "get_any"};
  return names[static_cast<std::size_t>(o) & 15];
}

template <class Pool>
class driver {
  static constexpr bool standard = std::is_same_v<Pool, netpool::pool<fuzz_conn>>;
  using lease_type = lease<fuzz_conn>;

 public:
  driver(const settings& s, bool trace) : s_(s), model_(s, world_), trace_(trace) {
    world_.dial_timeout = s.dial_timeout;
    world_.health_check_timeout = s.health_check_timeout;
    world_.mode = s.initial_mode;
    other_world_.dial_timeout = 5s;
  }
  driver(const driver&) = delete;
  driver& operator=(const driver&) = delete;
  driver(driver&&) = delete;  // the pool's callbacks hold references into world_
  driver& operator=(driver&&) = delete;
  ~driver() = default;

  run_result run(const std::uint8_t* data, std::size_t size) {
    setup();
    std::size_t pos = 0;
    while (failure_.empty() && pos < size) {
      const auto code = static_cast<op>(data[pos] & 15);
      const std::uint8_t p = pos + 1 < size ? data[pos + 1] : 0;
      pos += 2;
      ++steps_;
      current_ = std::string(op_name(code)) + "(0x" + hex(p) + ")";
      if (trace_) std::fprintf(stderr, "pool_model step %zu: %s\n", steps_, current_.c_str());
      step(code, p);
      if (failure_.empty()) compare();
    }
    teardown();
    return {failure_.empty(), failure_, steps_};
  }

 private:
  static std::string hex(unsigned v) {
    static constexpr char digits[] = "0123456789abcdef";
    return {digits[(v >> 4) & 15], digits[v & 15]};
  }

  void fail(const std::string& what) {
    if (!failure_.empty()) return;
    failure_ = "pool_model: " + std::string(standard ? "pool" : "lean_pool") + ", step " +
               std::to_string(steps_) + " (" + current_ + "): " + what;
  }
  template <class A, class B>
  void expect_eq(const char* what, const A& got, const B& want) {
    if (!(got == want)) fail(std::string(what) + ": pool " + show(got) + ", model " + show(want));
  }
  static std::string show(const std::error_code& e) {
    return e ? e.category().name() + std::string(":") + e.message() : "ok";
  }
  static std::string show(nanoseconds d) { return std::to_string(d.count()) + "ns"; }
  template <class T>
  static std::string show(const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      return v ? "true" : "false";
    } else {
      return std::to_string(v);
    }
  }

  void begin_op(nanoseconds caller_budget = nanoseconds::max()) {
    world_.caller_budget = caller_budget;
    world_.op_start = steady::now();
  }

  void setup() {
    current_ = "create";
    pool_config<fuzz_conn> other_cfg;
    other_cfg.factory = make_factory(other_world_);
    other_cfg.max_size = 1;
    other_cfg.background_maintenance = false;
    begin_op();
    other_world_.op_start = world_.op_start;
    auto other = netpool::pool<fuzz_conn>::create(std::move(other_cfg));
    if (!other) return fail("creating the second pool: " + show(other.error()));
    other_.emplace(std::move(*other));
    auto taken = other_->try_get();
    if (taken) return fail("try_get() on a fresh pool with min_size 0 lent a connection");
    auto l = other_->get();
    if (!l) return fail("get() on the second pool: " + show(l.error()));
    other_lease_ = std::move(*l);

    auto made = Pool::create(s_.config(world_));
    if (!made) return fail("create: " + show(made.error()));
    pool_.emplace(std::move(*made));
    model_.create();
    compare();
  }

  void teardown() {
    current_ = "teardown";
    const auto drop_leases = [this] {
      for (std::size_t r = 0; r < registers; ++r) {
        if (!regs_[r].empty()) world_.conns[static_cast<std::size_t>(regs_[r]->id())].held = false;
        regs_[r] = lease_type{};
      }
    };
    if (s_.leases_first) drop_leases();
    pool_.reset();  // destroys the handle: leases still out outlive it (INV9)
    drop_leases();
    other_lease_ = lease_type{};
    other_.reset();
    if (!failure_.empty()) return;
    if (!world_.violation.empty()) return fail(world_.violation);
    if (!other_world_.violation.empty()) return fail("second pool: " + other_world_.violation);
    for (std::size_t id = 0; id < world_.conns.size(); ++id) {
      if (world_.conns[id].closes != 1) {
        return fail("connection " + std::to_string(id) + " closed " +
                    std::to_string(world_.conns[id].closes) + " times in all");
      }
    }
    if (world_.objects != 0) fail(std::to_string(world_.objects) + " connection objects never destroyed");
    if (other_world_.objects != 0 || other_world_.conns.size() != 1 || other_world_.conns[0].closes != 1) {
      fail("the second pool's connection was not closed exactly once");
    }
  }

  void hold(const lease_type& l) {
    conn_record& r = world_.conns[static_cast<std::size_t>(l->id())];
    if (r.held) fail("connection " + std::to_string(l->id()) + " handed to two leases at once");
    r.held = true;
  }
  // The driver is about to give register r's lease back (the pool may close it right away).
  void unhold(std::size_t r) {
    if (!regs_[r].empty()) world_.conns[static_cast<std::size_t>(regs_[r]->id())].held = false;
  }
  void rehold(std::size_t r) {
    if (!regs_[r].empty()) world_.conns[static_cast<std::size_t>(regs_[r]->id())].held = true;
  }

  observation observe(const pool_stats& before, const pool_stats& after) const {
    observation o;
    o.dials_delta = after.dials - before.dials;
    o.fast_failures_delta = after.fast_failures - before.fast_failures;
    return o;
  }

  void step(op code, std::uint8_t p) {
    switch (code) {
      case op::get:
        return do_get(p & 7, (p >> 3) & 7);
      case op::get_any: {
        std::size_t r = (p >> 3) & 7;
        for (std::size_t i = 0; i < registers; ++i) {
          if (model_.reg(i).empty()) {
            r = i;
            break;
          }
        }
        return do_get(r, p & 7);
      }
      case op::try_get:
        if ((p & 0x80) != 0) {
          const bool closed_one = pool_->reclaim_idle();
          return expect_eq("reclaim_idle()", closed_one, model_.reclaim());
        }
        return do_get(p & 7, 8);
      case op::get_past:
        return do_get(p & 7, 9 + ((p >> 3) & 3));
      case op::put:
        return do_put(p & 7, (p >> 3) & 3);
      case op::put_error:
        return do_put_error(p & 7, (p >> 3) & 1);
      case op::move: {
        const std::size_t from = p & 7, to = (p >> 3) & 7;
        if (from != to) unhold(to);
        regs_[to] = std::move(regs_[from]);
        model_.move(from, to);
        return;
      }
      case op::wrong_pool:
        return do_wrong_pool(p & 7, (p >> 3) & 3);
      case op::close:
        pool_->close();
        model_.close();
        return;
      case op::destroy:
        if ((p & 1) != 0) {  // a round trip through another handle changes nothing
          Pool moved = std::move(*pool_);
          *pool_ = std::move(moved);
          return;
        }
        {
          Pool doomed = std::move(*pool_);  // *pool_ is now an empty handle
        }
        model_.destroy();
        return;
      case op::advance:
        world_.pool_time += advance_choices[p & 15];
        model_.advance(advance_choices[p & 15]);
        if ((p & 16) == 0) do_maintain();
        return;
      case op::maintain:
        if ((p & 1) == 0) return do_maintain();
        if constexpr (requires(Pool & pl) { pl.wait_for_min_size(steady::now()); }) {
          expect_eq("wait_for_min_size(past)", pool_->wait_for_min_size(steady::now() - 1ms), model_.open());
        }
        return;
      case op::health:
        if (!world_.conns.empty()) {
          const std::size_t id = (p & 63) % world_.conns.size();
          conn_record& c = world_.conns[id];
          c.state = health::ok;
          c.probe = liveness::alive;
          switch (p >> 6) {
            case 1:
              c.state = health::dead;
              break;
            case 2:
              c.state = health::throws;
              break;
            case 3:
              c.probe = dead_probes[id % dead_probes.size()];
              break;
            default:
              break;
          }
        }
        return;
      case op::restart:
        for (std::size_t id = 0; id < world_.conns.size(); ++id) {
          world_.conns[id].state = health::dead;
          world_.conns[id].probe = dead_probes[id % dead_probes.size()];
        }
        world_.mode = static_cast<dial_mode>(p % dial_modes);
        return;
      case op::dial_mode:
        world_.mode = static_cast<dial_mode>(p % dial_modes);
        return;
      case op::reset:
        if constexpr (requires(Pool & pl) { pl.reset(); }) {
          pool_->reset();
          model_.reset();
        }
        return;
    }
  }

  // form 0-7: get_forms; 8: try_get; 9-12: get_past forms.
  void do_get(std::size_t r, unsigned form) {
    Pool& pl = *pool_;
    get_kind kind = form == 8                  ? get_kind::try_idle
                    : form >= 9                ? get_kind::past
                    : (form == 4 || form == 5) ? get_kind::cancelled
                                               : get_kind::wait;
    if (kind == get_kind::wait && model_.would_block()) {
      kind = get_kind::past;  // the fuzzer is single-threaded: a blocking get would hang
      form = 9;
    }
    if (kind == get_kind::wait) {
      const pool_stats now = pl.stats();
      if (!pl.closed() && now.idle == 0 && now.active >= now.max) {
        return fail("the pool would block (idle 0, active == max) but the model says it would not");
      }
    }
    const pool_stats before = pl.stats();
    std::stop_source stopped;
    stopped.request_stop();
    std::stop_source running;
    const bool long_deadline = form == 1 || form == 2 || form == 5 || form == 6;
    begin_op(long_deadline ? nanoseconds(std::chrono::hours(1)) : nanoseconds::max());
    result<lease_type> got = [&]() -> result<lease_type> {
      switch (form) {
        case 0:
          return pl.get();
        case 1:
          return pl.get_for(std::chrono::hours(1));
        case 2:
          return pl.get_until(steady::now() + std::chrono::hours(1));
        case 3:
          return pl.get(running.get_token());
        case 4:
          return pl.get(stopped.get_token());
        case 5:
          return pl.get_for(std::chrono::hours(1), stopped.get_token());
        case 6:
          return pl.get_until(steady::now() + std::chrono::hours(1), running.get_token());
        case 7:
          return pl.get_for(std::chrono::hours::max());
        case 8:
          return pl.try_get();
        case 9:
          return pl.get_for(0ns);
        case 10:
          return pl.get_for(-1ms);
        case 11:
          return pl.get_until(steady::now() - 1s);
        default:
          return pl.get_until(steady::time_point::min());
      }
    }();
    std::string problem;
    const outcome want = model_.get(kind, observe(before, pl.stats()), problem);
    if (!problem.empty()) return fail(problem);
    if (want.conn >= 0) {
      if (!got)
        return fail("get: pool failed with " + show(got.error()) + ", model lends connection " +
                    std::to_string(want.conn));
      if ((*got)->id() != want.conn) {
        return fail("get lent connection " + std::to_string((*got)->id()) + ", model (LIFO) expects " +
                    std::to_string(want.conn));
      }
    } else if (got) {
      return fail("get lent connection " + std::to_string((*got)->id()) + ", model expects " +
                  show(want.error));
    } else {
      expect_eq("get error", got.error(), want.error);
      return;
    }
    hold(*got);
    unhold(r);  // the register's previous lease goes back when the new one is assigned
    regs_[r] = std::move(*got);
    model_.store(r, want);
  }

  // how: 0 pool.put, 1 lease.release(), 2 lease = {}, 3 ~lease.
  void do_put(std::size_t r, unsigned how) {
    unhold(r);
    std::error_code got;
    switch (how) {
      case 0:
        got = pool_->put(std::move(regs_[r]));
        break;
      case 1:
        got = regs_[r].release();
        break;
      case 2:
        regs_[r] = lease_type{};
        break;
      default: {
        lease_type gone = std::move(regs_[r]);
      } break;
    }
    const std::error_code want = model_.put(r, how == 0);
    rehold(r);  // still held if the put refused it (wrong_pool)
    if (how <= 1) expect_eq("put", got, want);
  }

  void do_put_error(std::size_t r, unsigned how) {
    unhold(r);
    const std::error_code got = how == 0 ? pool_->put_with_error(std::move(regs_[r])) : regs_[r].discard();
    const std::error_code want = model_.discard(r, how == 0);
    rehold(r);
    expect_eq("put_with_error", got, want);
  }

  // Leases given to a pool they do not belong to come back untouched.
  void do_wrong_pool(std::size_t r, unsigned form) {
    std::error_code got;
    std::error_code want = errc::wrong_pool;
    switch (form) {
      case 0:
        got = other_->put(std::move(regs_[r]));
        break;
      case 1:
        got = other_->put_with_error(std::move(regs_[r]));
        break;
      case 2:
        got = pool_->put(std::move(other_lease_));
        break;
      default:
        got = pool_->put_with_error(std::move(other_lease_));
        break;
    }
    if (form <= 1 && model_.reg(r).empty()) want = errc::empty_lease;
    if (form >= 2 && model_.destroyed()) want = errc::pool_closed;  // a handle without a pool
    expect_eq("put to the wrong pool", got, want);
  }

  void do_maintain() {
    if constexpr (standard) {
      const pool_stats before = pool_->stats();
      begin_op();
      const nanoseconds got = pool_->maintain();
      observation obs = observe(before, pool_->stats());
      obs.maintain_result = got;
      std::string problem;
      const nanoseconds want = model_.maintain(obs, problem);
      if (!problem.empty()) return fail(problem);
      expect_eq("maintain() result", got, want);
    }
  }

  void compare() {
    if (!failure_.empty()) return;
    if (!world_.violation.empty()) return fail(world_.violation);
    const Pool& pl = *pool_;
    const pool_stats got = pl.stats();
    pool_stats want;
    if (!model_.destroyed()) {  // an empty handle reports zeros
      const auto& c = model_.stats();
      want.idle = model_.count(pool_model::phase::idle);
      want.in_use = model_.count(pool_model::phase::leased);
      want.active = model_.active();
      want.max = s_.max_size;
      want.min = s_.min_size;
      want.gets = c.gets;
      want.timeouts = c.timeouts;
      want.cancellations = c.cancellations;
      want.dials = c.dials;
      want.dial_failures = c.dial_failures;
      want.fast_failures = c.fast_failures;
      want.closed_idle = c.closed_idle;
      want.closed_health = c.closed_health;
      want.closed_error = c.closed_error;
      want.closed_pool = c.closed_pool;
    }
    compare_stats(got, want, model_.destroyed() ? pool_model::counters{} : model_.stats());
    expect_eq("len()", pl.len(), want.idle);
    expect_eq("closed()", pl.closed(), model_.closed());
    expect_eq("last_dial_error()", pl.last_dial_error(),
              model_.destroyed() ? std::error_code(errc::pool_closed) : model_.last_dial_error());
    expect_eq("factory calls", world_.factory_calls, model_.stats().dials);
    expect_eq("health check calls", world_.health_calls, model_.health_calls());
    expect_eq("probe() calls", world_.probe_calls, model_.probe_calls());
    expect_eq("connections made", world_.conns.size(), model_.made());
    for (std::size_t id = 0; id < world_.conns.size() && id < model_.made(); ++id) {
      if (world_.conns[id].closes != (model_.conn_closed(id) ? 1 : 0)) {
        return fail("connection " + std::to_string(id) + " closed " +
                    std::to_string(world_.conns[id].closes) +
                    " times, model: " + (model_.conn_closed(id) ? "closed" : "open"));
      }
    }
    for (std::size_t r = 0; r < registers; ++r) {
      const pool_model::lease_ref& m = model_.reg(r);
      if (regs_[r].empty() != m.empty()) {
        return fail("register " + std::to_string(r) + (regs_[r].empty() ? " is empty" : " holds a lease") +
                    ", model disagrees");
      }
      // Dereferencing a lease after its pool was destroyed is valid (ASan checks it).
      if (!m.empty()) expect_eq("register's connection", regs_[r]->id(), m.conn);
    }
    if (other_lease_.empty() || other_lease_->id() != 0) fail("the second pool's lease was touched");
    if (!other_world_.violation.empty()) fail("second pool: " + other_world_.violation);
  }

  // Fields added to pool_stats later are compared when present (the model counts them).
  template <class Stats>
  void compare_stats(const Stats& got, const Stats& want, const pool_model::counters& c) {
    expect_eq("stats.active", got.active, want.active);
    expect_eq("stats.idle", got.idle, want.idle);
    expect_eq("stats.in_use", got.in_use, want.in_use);
    expect_eq("stats.dialing", got.dialing, want.dialing);
    expect_eq("stats.max", got.max, want.max);
    expect_eq("stats.min", got.min, want.min);
    expect_eq("stats.waiters", got.waiters, want.waiters);
    expect_eq("stats.gets", got.gets, want.gets);
    expect_eq("stats.gets_waited", got.gets_waited, want.gets_waited);
    expect_eq("stats.wait_time", got.wait_time, want.wait_time);
    expect_eq("stats.timeouts", got.timeouts, want.timeouts);
    expect_eq("stats.cancellations", got.cancellations, want.cancellations);
    expect_eq("stats.dials", got.dials, want.dials);
    expect_eq("stats.dial_failures", got.dial_failures, want.dial_failures);
    expect_eq("stats.fast_failures", got.fast_failures, want.fast_failures);
    expect_eq("stats.closed_idle", got.closed_idle, want.closed_idle);
    expect_eq("stats.closed_health", got.closed_health, want.closed_health);
    expect_eq("stats.closed_error", got.closed_error, want.closed_error);
    expect_eq("stats.closed_pool", got.closed_pool, want.closed_pool);
    if constexpr (requires { got.closed_reset; })
      expect_eq("stats.closed_reset", got.closed_reset, c.closed_reset);
    if constexpr (requires { got.closed_lifetime; }) {
      expect_eq("stats.closed_lifetime", got.closed_lifetime, c.closed_lifetime);
    }
    if constexpr (requires { got.closed_reclaimed; }) {
      expect_eq("stats.closed_reclaimed", got.closed_reclaimed, c.closed_reclaimed);
    }
  }

  // Destroyed in reverse: leases, then pools, then the model and the worlds they point into.
  settings s_;
  world world_;
  world other_world_;
  pool_model model_;
  std::optional<netpool::pool<fuzz_conn>> other_;
  std::optional<Pool> pool_;
  lease_type other_lease_;
  std::array<lease_type, registers> regs_;
  bool trace_;
  std::size_t steps_ = 0;
  std::string current_;
  std::string failure_;
};

// Runs one input.
inline run_result run_pool_model(const std::uint8_t* data, std::size_t size,
                                 const run_options& options = {}) {
  std::array<std::uint8_t, 4> head{};
  const std::size_t skip = std::min(size, head.size());
  std::copy(data, data + skip, head.begin());
  const settings s = settings::decode(head[0], head[1], head[2], head[3], options);
  if (s.lean) return driver<netpool::lean_pool<fuzz_conn>>(s, options.trace).run(data + skip, size - skip);
  return driver<netpool::pool<fuzz_conn>>(s, options.trace).run(data + skip, size - skip);
}

}  // namespace netpool::fuzz
