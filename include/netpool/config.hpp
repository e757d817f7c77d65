// netpool/config.hpp — what a pool is created with, and how it is checked.
//
//   netpool::pool_config<netpool::socket> cfg;
//   cfg.factory = netpool::tcp_dialer("127.0.0.1", 6379);   // required: how to open a connection
//   cfg.max_size = 32;                                      // at most 32 open at once
//   cfg.min_size = 4;                                       // kept open in the background (pool only)
//   cfg.dial_timeout = std::chrono::seconds(2);
//   cfg.max_idle_time = std::chrono::minutes(5);            // pool only; 0 = never close idle ones
//   cfg.health_check = [](netpool::socket& s) { return s.probe() == netpool::liveness::alive; };
//   if (auto problem = netpool::validate_for_pool(cfg); problem != netpool::config_problem::none) {
//     std::puts(netpool::describe(problem));                 // which field, and its constraint
//   }
//   auto pool = netpool::pool<netpool::socket>::create(std::move(cfg));  // errc::invalid_config too
//
// Every field's constraint is written next to it; create() checks them all once and rejects a bad
// configuration with errc::invalid_config (never undefined behaviour). validate() says which field.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "netpool/hooks.hpp"
#include "netpool/result.hpp"

namespace netpool {

// Opens one connection, giving up at `deadline`. Any callable of this shape works: the built-in
// tcp_dialer / unix_dialer, or a lambda that builds your own client object. It may fail by
// returning an error or by throwing (the pool catches it: errc::factory_threw).
// The error it returns is the one a get that needed the dial returns, unchanged. Return
// make_dial_error(errno) (or errc::dial_failed) for a connection that could not be made, so that
// callers' `ec == netpool::condition::dial_failed` recognises it: a plain std::errc or
// system_category() code is passed through as it is and does not match that condition. A timeout
// (errc::timeout or std::errc::timed_out) when the deadline given was the pool's own (dial_timeout)
// becomes make_dial_error(ETIMEDOUT); when it was the caller's sooner one, errc::timeout.
// An error result must carry a non-empty code: result's constructor asserts it in debug builds
// (`return std::error_code(errno, ...)` after a call that did not set errno is the usual slip);
// without assertions the pool reports an empty one as errc::dial_failed.
// A connection type with `bool is_open() const` (netpool::socket) is checked: one returned not
// open (a socket of fd -1) is a failed dial, errc::dial_failed, and is never lent.
template <class Conn>
using factory_function = std::function<result<Conn>(std::chrono::steady_clock::time_point deadline)>;

// A hook the pool may give a deadline: `Result(Conn&, steady_clock::time_point deadline)` or
// `Result(Conn&)`. Two fields take one:
//
//   cfg.on_connect = [](netpool::socket& s, std::chrono::steady_clock::time_point deadline) {
//     return authenticate(s, deadline);  // send_all / recv with the deadline: std::error_code
//   };
//   cfg.on_connect = [](netpool::socket& s) { return select_db(s); };  // bounds its own I/O
//   cfg.health_check = [](netpool::socket& s, std::chrono::steady_clock::time_point deadline) {
//     return ping(s, deadline);          // bool: false condemns the connection
//   };
//
// connect_hook<Conn> (on_connect) returns std::error_code and is given the dial's deadline;
// check_hook<Conn> (health_check) returns bool and is given now + health_check_timeout. Their
// fields in pool_config say what each deadline is and how a timeout is read.
//
// A callable that can be called both ways (std::bind(f, _1), which drops extra arguments; a
// generic `(auto&&...)` lambda) counts as the one-argument form: taken for the other, an
// on_connect that never sees the deadline would have its own timeouts read as the caller's. Empty
// by default; an empty std::function or a null function pointer leaves it empty.
//
// Unlike the std::function<Result(Conn&)> these fields were (on_connect before 0.2, health_check
// before 0.3), a deadline_hook is called with the deadline too. A wrapper around the configured
// on_connect must keep its shape, or a one-argument hook's own timeouts would be read as the
// caller's (a two-argument wrapper around a one-argument check only costs a clock read);
// takes_deadline() says which:
//
//   using hook = netpool::connect_hook<Conn>;
//   hook inner = cfg.on_connect;
//   cfg.on_connect = inner.takes_deadline()
//                        ? hook([inner](Conn& c, hook::deadline_type d) { log(); return inner(c, d); })
//                        : hook([inner](Conn& c) { log(); return inner(c, {}); });  // {}: unused
//
// Spell a wrapper's parameters out: a variadic `(auto&&... a)` forwarder to a two-argument
// callable does not compile, because the one-argument check instantiates its body.
template <class Result, class Conn>
class deadline_hook;

template <class Conn>
using connect_hook = deadline_hook<std::error_code, Conn>;
template <class Conn>
using check_hook = deadline_hook<bool, Conn>;

namespace detail {
// Checked on the decayed type, as std::function does, so that a const copy of a mutable lambda
// qualifies too; and the one-argument shape first, so that the two-argument check never
// instantiates the body of a variadic lambda that cannot take two.
template <class F, class Result, class Conn>
concept hook_taking_connection = (std::is_invocable_r_v<Result, std::decay_t<F>&, Conn&>);
template <class F, class Result, class Conn>
concept hook_taking_deadline =
    !hook_taking_connection<F, Result, Conn> &&
    (std::is_invocable_r_v<Result, std::decay_t<F>&, Conn&, std::chrono::steady_clock::time_point>);
// What a deadline_hook is built from: either shape of hook, but not a deadline_hook, which is
// callable too and must be copied and moved by its own constructors.
template <class F, class Result, class Conn>
concept deadline_hook_callable =
    !std::is_same_v<std::remove_cvref_t<F>, deadline_hook<Result, Conn>> &&
    (hook_taking_connection<F, Result, Conn> || hook_taking_deadline<F, Result, Conn>);
}  // namespace detail

template <class Result, class Conn>
class deadline_hook {
 public:
  using deadline_type = std::chrono::steady_clock::time_point;

  deadline_hook() noexcept = default;
  // Implicit, so that `cfg.on_connect = nullptr;` and `cfg.health_check = [](Conn&) {...};` read as
  // they did when the fields were std::functions. (The concept keeps the forwarding constructor
  // off deadline_hook itself; clang-tidy 14 looks for enable_if only.)
  deadline_hook(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)
  template <detail::deadline_hook_callable<Result, Conn> F>
  // NOLINTNEXTLINE(google-explicit-constructor,bugprone-forwarding-reference-overload)
  deadline_hook(F&& f) : takes_deadline_(detail::hook_taking_deadline<F, Result, Conn>) {
    if constexpr (detail::hook_taking_deadline<F, Result, Conn>) {
      call_ = std::forward<F>(f);
    } else {
      // Through std::function first, which knows an empty std::function or a null pointer when it
      // sees one: wrapped directly, it would make a non-empty hook that throws bad_function_call.
      std::function<Result(Conn&)> without_deadline(std::forward<F>(f));
      if (without_deadline) {
        call_ = [hook = std::move(without_deadline)](Conn& c, deadline_type) { return hook(c); };
      }
    }
  }

  [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(call_); }
  [[nodiscard]] friend bool operator==(const deadline_hook& h, std::nullptr_t) noexcept { return !h; }
  // Whether the hook takes the deadline (the two-argument form). For on_connect, a timeout from
  // one that does, at a caller's deadline, is that caller's; from one that does not, the hook's own
  // limit. A health check that does not is given no deadline (no clock is read for it).
  [[nodiscard]] bool takes_deadline() const noexcept { return takes_deadline_; }

  // Runs the hook; one that ignores the deadline is called without it. Empty: throws
  // std::bad_function_call, as std::function does.
  Result operator()(Conn& conn, deadline_type deadline) const { return call_(conn, deadline); }

 private:
  std::function<Result(Conn&, deadline_type)> call_;
  bool takes_deadline_ = false;
};

template <class Conn>
struct pool_config {
  // Required. Called possibly from several threads at once: callers' gets, and (pool) dialer
  // threads and the maintainer. Never under a lock that gets and puts take; the maintainer's
  // min_size refill runs inside its maintenance round, so a maintain() elsewhere waits for it.
  factory_function<Conn> factory;

  // Upper bound on open connections (idle + in use + being dialed). Must be in [1, max_supported].
  std::size_t max_size = 15;

  // Connections the maintainer keeps open in the background (pool only; lean_pool dials them once
  // at creation). Must be <= max_size.
  std::size_t min_size = 0;

  // Bound on one dial (the factory's deadline is now + dial_timeout, or the caller's deadline if
  // sooner). Must be > 0.
  std::chrono::nanoseconds dial_timeout = std::chrono::seconds(5);

  // pool only: an idle connection older than this is closed, by the maintainer or when found on
  // get. 0 turns it off. Must be >= 0. Resolution: max_idle_time / 8, at least 1 ms.
  std::chrono::nanoseconds max_idle_time = std::chrono::nanoseconds::zero();

  // pool only, optional: called on a pooled connection before it is handed out. false (or a throw)
  // closes that connection (close_reason::health) and the get goes on with another one or a fresh
  // dial. Runs on the getting thread, outside the pool's locks (keepalive_interval also runs it in
  // the maintenance round). It may take (Conn&) or (Conn&, deadline), see deadline_hook above.
  // The pool cannot interrupt a check: the two-argument form is given now + health_check_timeout
  // to bound its I/O by (socket::send_all/recv_all take a deadline), and the one-argument form
  // must bound its own. A check that runs out of time should return false: its request may have
  // gone out and its reply still be on the way, so the connection is not fit to lend.
  check_hook<Conn> health_check;

  // pool only: how long a two-argument health_check is given, from when it starts, on a get and in
  // a keepalive round. Not cut to a get_for()'s deadline: a check cut short must condemn a
  // connection that may be fine, and a get_for(0) would close every idle connection it looked at.
  // So a get may overrun its deadline by up to one check, no more: once it has run a check and its
  // deadline has passed, its scan of the idle connections starts no other. It bounds each check,
  // not a get or a round: a get with no deadline (try_get() too) that meets several idle
  // connections failing their checks runs one check each until one passes, and a keepalive round
  // checks each idle connection in turn. Must be > 0.
  std::chrono::nanoseconds health_check_timeout = std::chrono::seconds(1);

  // pool only: a connection older than this (since it was dialed) is closed when it comes back or
  // is found idle — never while lent. 0 turns it off. Must be >= 0. Each connection's limit is
  // shortened by a random fraction of up to lifetime_jitter, so that connections opened together
  // do not all expire (and reconnect) together. Ages are counted by maintenance rounds: the round
  // that sees a connection expired closes it if idle and marks it if lent. Until that round, the
  // get fast path (a thread taking back the connection it returned last) does not look at its
  // age, so an expired connection can be lent once more: for at most one tick with the maintainer
  // thread; with background_maintenance = false, until your next maintain().
  std::chrono::nanoseconds max_lifetime = std::chrono::nanoseconds::zero();
  double lifetime_jitter = 0.05;  // in [0, 1]

  // pool only (lean_pool never probes), for connection types with a probe() (netpool::socket):
  // before lending a connection
  // that has been idle at least this long, a non-blocking peek checks it — no round trip — and
  // discards it if the peer closed it, reset it, or left unread bytes behind. 0 probes on every
  // borrow; nanoseconds::max() never. Must be >= 0. One idle for less is lent unprobed: a
  // connection whose I/O failed or timed out (a late reply may still arrive) must be discarded
  // (lease::discard()), not returned, or its next borrower may read that reply.
  std::chrono::nanoseconds probe_after = std::chrono::milliseconds(500);

  // pool only: every keepalive_interval the maintainer checks each idle connection (probe, then
  // health_check) and closes dead ones, so that servers, NATs and load balancers that drop quiet
  // connections do not leave dead ones waiting in the pool. 0 turns it off. Must be >= 0.
  std::chrono::nanoseconds keepalive_interval = std::chrono::nanoseconds::zero();

  // Dials in flight at once (callers and maintainer together). More callers than this wait in
  // line for the connections being dialed. Must be >= 1.
  std::size_t max_connecting = 2;

  // After a failed dial, no dial is tried for a backoff that starts at dial_backoff_floor and
  // doubles with each further failure up to dial_backoff_cap (with jitter: each wait is drawn from
  // [backoff/2, backoff]). Meanwhile gets that would have to dial fail at once with the last dial
  // error instead of each hammering a backend that is down. A success resets it. A floor of 0
  // turns backoff off. Must be >= 0, and cap >= floor. A factory that fails with errc::exhausted
  // (it had no capacity to dial: keyed_pool's global limit) or errc::dial_not_needed starts no
  // backoff.
  std::chrono::nanoseconds dial_backoff_floor = std::chrono::milliseconds(10);
  std::chrono::nanoseconds dial_backoff_cap = std::chrono::seconds(1);

  // When every connection is in use, waiters are served first come, first served: a returned
  // connection goes straight to the oldest waiter (each hand-off then waits for that waiter to be
  // woken and scheduled). false, Go's sync.Mutex policy: it goes back to the idle set and the
  // oldest waiter is woken to compete for it with threads arriving meanwhile, which may take it
  // first (if it loses, it goes back to the front of the line); a waiter that has waited over
  // starvation_threshold is handed the next returned connection directly, so none starves. Far
  // more hand-offs per second under exhaustion, less strict order.
  bool fair_waiters = true;

  // How long the oldest waiter polls for a hand-off before it goes to sleep in the kernel. A
  // hand-off to a polling waiter costs no system call on either side; one to a sleeping waiter
  // costs a wake-up, and until that waiter runs the connection is idle (a thread woken on an
  // idle core takes 30-60 µs on our VMs). Spinning a little longer than one hold keeps a chain of
  // hand-offs from turning into a chain of wake-ups. Only the oldest waiter spins; 0 sleeps at
  // once (no CPU spent waiting). Must be in [0, max_wait_spin]: a get() without a deadline would
  // otherwise spin, taking a CPU from the thread that is to return the connection, for as long as
  // it waits, and no wake-up costs anywhere near a millisecond.
  std::chrono::nanoseconds wait_spin = std::chrono::microseconds(10);

  // pool only: false starts no maintainer thread; the owner calls pool::maintain() (e.g. from an
  // event loop, or a deterministic test) to reap idle connections and refill to min_size.
  bool background_maintenance = true;

  // Optional: the clock that measures idle time and backoff (not callers' deadlines, not dial
  // timeouts, not health_check_timeout). Inject one to drive time deterministically in tests.
  // Empty: steady_clock::now. It must not throw: the pool calls it from noexcept code (a throw
  // would terminate).
  std::function<std::chrono::steady_clock::time_point()> clock;

  // ---- hooks (hooks.hpp has the types). Each is optional and costs nothing when empty. ----------
  // Hooks run inside the pool's own operations, some under its internal locks (a maintenance
  // round, a resize; in lean_pool also a get whose dial ends over a max_size shrunk meanwhile,
  // which trims the surplus: on_close then runs on the getting thread, under the resize lock):
  // they must not call the same pool's maintain(), set_max_size() or set_min_size(), which take
  // those locks, nor the draining close(deadline), which would wait for the very connection the
  // hook is looking at.

  // After each successful dial, before the connection is used (e.g. AUTH, SELECT a database); it
  // may take (Conn&) or (Conn&, deadline), see deadline_hook above. The two-argument form is given
  // the dial's deadline, the one the factory was given: dial_timeout (or a sooner caller's
  // deadline, where the caller's thread dials) bounds the dial and its set-up together, as the Go
  // original's dial timeout bounds its whole dial. An error (or a throw: errc::hook_rejected)
  // closes the connection and counts as a failed dial: the get that dialed fails with that error,
  // and backoff starts as for any failed dial. The error is passed through as the factory's is:
  // return make_dial_error() or errc::dial_failed for `ec == condition::dial_failed` to hold
  // (errc::hook_rejected does not match it: it also stands for on_borrow's refusal).
  // errc::exhausted and errc::dial_not_needed, which say that a dial did not happen, become
  // errc::hook_rejected here. A timeout (errc::io_timeout,
  // or any code == std::errc::timed_out) is read as the factory's is: on the pool's own dial
  // deadline, a failed dial, ETIMEDOUT; on a sooner caller's deadline it was given, that caller's
  // errc::timeout, no backoff. The one-argument form is not given a deadline, so its timeout is
  // always its own limit: a failed dial, ETIMEDOUT, with backoff. Bound its I/O yourself
  // (socket::send_all/recv/recv_all take a deadline): nothing else does.
  connect_hook<Conn> on_connect;
  // Before each hand-out (pooled or freshly dialed), after the health checks. false (or a throw)
  // closes the connection (close_reason::hook) and the get goes on with another one; a freshly
  // dialed one it refuses fails the get with errc::hook_rejected (dialing again could loop).
  std::function<bool(Conn&)> on_borrow;
  // On each put, before the connection is pooled or handed to a waiter (e.g. reset session state).
  // false (or a throw) closes it instead (close_reason::hook); the put still succeeds. Not called
  // once the pool is closed: that put closes the connection (close_reason::pool_closed) and returns
  // errc::pool_closed.
  std::function<bool(Conn&)> on_return;
  // Just before the pool destroys a connection, with the reason. Exceptions are swallowed. It also
  // runs for a lease returned after close(), even after the pool object is destroyed (the lease
  // keeps what it needs alive): whatever it captures must outlive every lease.
  std::function<void(Conn&, close_reason)> on_close;

  // ---- leak detection (pool only) --------------------------------------------------------------

  // A lease held longer than this is reported once through on_leak (with where get() was called),
  // and again when it finally comes back, if the pool is still open (once it is closed, the pool
  // object and what on_leak captures may be gone). 0 turns it off (get() then records nothing).
  // Checked by the maintainer, so reports come within about a quarter of the threshold. Must be
  // >= 0, and on_leak must be set when it is > 0. A pool's on_leak calls never overlap, and a
  // lease's "still out" comes before its "came back"; on_leak must not return a lease to the pool.
  std::chrono::nanoseconds leak_threshold = std::chrono::nanoseconds::zero();
  std::function<void(const leak_report&)> on_leak;

  // ---- resizing ---------------------------------------------------------------------------------

  // The largest max_size that set_max_size() may grow to later: slots are preallocated up to it
  // (one cache line each). 0 means max_size (no growth beyond it). Must be 0 or in
  // [max_size, max_supported].
  std::size_t max_size_limit = 0;

  // ---- fair_waiters = false ----------------------------------------------------------------------

  // fair_waiters = false only: how long a waiter may wait before it is served first (Go's
  // sync.Mutex uses 1 ms). Lower bounds the tail more tightly and gives back throughput; 0 serves
  // every waiter in order (barging only while nobody waits). Must be >= 0.
  std::chrono::nanoseconds starvation_threshold = std::chrono::milliseconds(1);

  // The longest wait_spin accepted.
  static constexpr std::chrono::nanoseconds max_wait_spin = std::chrono::milliseconds(1);

  // The largest max_size accepted: slots are preallocated, one cache line each.
  static constexpr std::size_t max_supported = std::size_t{1} << 20;
};

// Why a configuration was rejected; config_problem::none when it is valid.
enum class config_problem {
  none,
  missing_factory,
  max_size_zero,
  max_size_too_large,
  min_above_max,
  dial_timeout_not_positive,
  max_idle_time_negative,
  max_connecting_zero,
  lifetime_negative,
  lifetime_jitter_out_of_range,
  probe_after_negative,
  keepalive_negative,
  backoff_negative,
  backoff_cap_below_floor,
  idle_tracking_on_lean_pool,  // lean_pool has no idle tracking: use pool
  health_check_on_lean_pool,   // lean_pool has no health check: use pool
  lifetime_on_lean_pool,       // lean_pool has no maintainer to enforce max_lifetime: use pool
  keepalive_on_lean_pool,      // lean_pool has no maintainer to run keepalive rounds: use pool
  leak_threshold_negative,
  leak_callback_missing,        // leak_threshold > 0 needs on_leak
  max_size_limit_out_of_range,  // must be 0 or in [max_size, max_supported]
  leak_detection_on_lean_pool,  // lean_pool has no maintainer to watch leases: use pool
  starvation_threshold_negative,
  wait_spin_out_of_range,  // must be in [0, pool_config::max_wait_spin]
  health_check_timeout_not_positive,
  // The factory is a built-in dialer that would fail every dial (checked with libstdc++ 11 or
  // later only: docs/design.md, "A built-in dialer that cannot dial").
  tcp_options_out_of_range,  // a tcp_dialer whose options are out of range
  unix_path_invalid,         // a unix_dialer whose path names no socket
};

// A short sentence naming the field and its constraint, for logs.
[[nodiscard]] const char* describe(config_problem problem) noexcept;

class socket;  // socket.hpp

namespace detail {
// A built-in dialer (tcp_dialer, unix_dialer) given as the factory itself, whose settings would
// fail every dial: the pool would take that for a backend that is down. src/dialer.cpp, out of
// line, so that this header needs neither dialer.hpp nor RTTI.
[[nodiscard]] config_problem builtin_dialer_problem(const factory_function<socket>& factory) noexcept;
}  // namespace detail

template <class Conn>
[[nodiscard]] config_problem validate(const pool_config<Conn>& config) noexcept {
  if (!config.factory) return config_problem::missing_factory;
  if constexpr (std::is_same_v<Conn, socket>) {
    if (const config_problem problem = detail::builtin_dialer_problem(config.factory);
        problem != config_problem::none) {
      return problem;
    }
  }
  if (config.max_size == 0) return config_problem::max_size_zero;
  if (config.max_size > pool_config<Conn>::max_supported) return config_problem::max_size_too_large;
  if (config.min_size > config.max_size) return config_problem::min_above_max;
  if (config.dial_timeout <= std::chrono::nanoseconds::zero())
    return config_problem::dial_timeout_not_positive;
  if (config.max_idle_time < std::chrono::nanoseconds::zero()) return config_problem::max_idle_time_negative;
  if (config.health_check_timeout <= std::chrono::nanoseconds::zero())
    return config_problem::health_check_timeout_not_positive;
  if (config.max_connecting == 0) return config_problem::max_connecting_zero;
  if (config.max_lifetime < std::chrono::nanoseconds::zero()) return config_problem::lifetime_negative;
  if (!(config.lifetime_jitter >= 0.0 && config.lifetime_jitter <= 1.0)) {
    return config_problem::lifetime_jitter_out_of_range;
  }
  if (config.probe_after < std::chrono::nanoseconds::zero()) return config_problem::probe_after_negative;
  if (config.keepalive_interval < std::chrono::nanoseconds::zero()) return config_problem::keepalive_negative;
  if (config.dial_backoff_floor < std::chrono::nanoseconds::zero()) return config_problem::backoff_negative;
  if (config.dial_backoff_cap < config.dial_backoff_floor) return config_problem::backoff_cap_below_floor;
  if (config.leak_threshold < std::chrono::nanoseconds::zero())
    return config_problem::leak_threshold_negative;
  if (config.leak_threshold > std::chrono::nanoseconds::zero() && !config.on_leak) {
    return config_problem::leak_callback_missing;
  }
  if (config.max_size_limit != 0 &&
      (config.max_size_limit < config.max_size || config.max_size_limit > pool_config<Conn>::max_supported)) {
    return config_problem::max_size_limit_out_of_range;
  }
  if (config.wait_spin < std::chrono::nanoseconds::zero() ||
      config.wait_spin > pool_config<Conn>::max_wait_spin) {
    return config_problem::wait_spin_out_of_range;
  }
  if (config.starvation_threshold < std::chrono::nanoseconds::zero()) {
    return config_problem::starvation_threshold_negative;
  }
  return config_problem::none;
}

}  // namespace netpool
