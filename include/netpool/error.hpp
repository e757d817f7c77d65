// netpool/error.hpp — netpool's error codes.
//
// Every fallible netpool operation reports failure as a std::error_code value; nothing on the
// get/put path throws. Codes produced by the pool itself live in netpool_category(); codes produced
// by the built-in dialers keep the operating system's errno (or the resolver's EAI_* value) in
// dial_category(), so the original cause is never lost:
//
//   auto conn = pool.get_for(std::chrono::milliseconds(200));
//   if (!conn) {
//     if (conn.error() == netpool::errc::timeout) { /* every connection busy: retry later */ }
//     else if (conn.error() == netpool::condition::dial_failed) {
//       // the backend refused, could not be reached, or did not answer within dial_timeout;
//       // conn.error().value() is the errno
//       log("backend down: ", conn.error().message());   // "dial failed: Connection refused"
//     }
//     else if (conn.error() == netpool::errc::pool_closed) { /* shutting down */ }
//   }
//
// A dial that runs out of the pool's dial_timeout is a dial failure, make_dial_error(ETIMEDOUT)
// ("dial failed: Connection timed out", == std::errc::timed_out), whatever the factory reported for
// it; errc::timeout is only ever the get's own deadline (including a dial cut short by it).
//
// Which errors are worth retrying: timeout, exhausted and cancelled say nothing about the backend
// and may succeed later; io_timeout says the backend was slow to answer on that connection
// (discard it: a late reply may still arrive); end_of_stream says the peer closed that connection
// before a whole reply came (discard it; a retry on another may succeed); dial_failed codes may
// succeed once the backend is back; invalid_config, empty_lease and wrong_pool are programming
// errors and will not; pool_closed will not on the same pool (after keyed_pool::remove(key), a get
// of that key builds a new sub-pool).
#pragma once

#include <string>
#include <system_error>

namespace netpool {

// Errors raised by netpool itself (netpool_category()).
enum class errc : int {
  pool_closed = 1,          // the pool was closed (or destroyed) before or while the call ran
  timeout = 2,              // the get's own deadline passed: waiting for a connection, or while
                            // its dial ran (a dial's own dial_timeout is ETIMEDOUT, a dial failure)
  cancelled = 3,            // the caller's std::stop_token asked to stop
  exhausted = 4,            // try_get(): no idle connection to hand out now (it never dials); keyed
                            // pool: a dial waited for the global limit until its own deadline
  dial_failed = 5,          // a factory reported failure without a more specific code
  invalid_config = 6,       // configuration rejected at creation (validate_for_pool() etc. say why),
                            // a bad set_max_size()/set_min_size(), a keyed Hash/KeyEq that threw
  empty_lease = 7,          // put()/discard() of an empty (moved-from or already returned) lease
  wrong_pool = 8,           // pool::put()/put_with_error() of a lease that belongs to another pool
  factory_threw = 9,        // the connection factory threw an exception (it was caught)
  health_check_threw = 10,  // reserved: a throwing health check counts as a failed check (the
                            // connection is closed, stats().closed_health), so get never returns it
  hook_rejected = 11,       // a user hook refused the connection
  dial_not_needed = 12,     // a factory ended its dial because a connection of its pool went idle
                            // while it waited (keyed_pool, at its global limit): no backoff; a
                            // keyed_pool get then looks again and takes that connection, so its
                            // callers never see it (a keyed sub-pool's own factory that returns
                            // it fails its dial with dial_failed; from on_connect it is a
                            // refusal, hook_rejected)
  io_timeout = 13,          // socket::send/send_all/recv/recv_all with a deadline: it passed.
                            // == std::errc::timed_out, as the kernel's own ETIMEDOUT (keep-alive,
                            // TCP_USER_TIMEOUT: a system_category() code) is; == errc::io_timeout
                            // tells the caller's deadline from the kernel's verdict
  end_of_stream = 14,       // socket::recv_all: the peer closed the connection before all the
                            // bytes asked for came (none, or a reply cut short). No std::errc
                            // equivalent: EOF is not an errno
};

// What kind of failure a code describes, whatever category produced it (error_condition enum).
enum class condition : int {
  dial_failed = 1,  // a connection could not be established: any dial_category() code, errc::dial_failed,
                    // errc::factory_threw
};

// "netpool": errc values.
[[nodiscard]] const std::error_category& netpool_category() noexcept;
// "netpool.dial": the built-in dialers' failures; errno values (> 0), equivalent to the generic
// std::errc conditions, and getaddrinfo EAI_* values (< 0).
[[nodiscard]] const std::error_category& dial_category() noexcept;
// "netpool.condition": the condition enum.
[[nodiscard]] const std::error_category& condition_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), netpool_category()};
}
[[nodiscard]] inline std::error_condition make_error_condition(condition c) noexcept {
  return {static_cast<int>(c), condition_category()};
}

// A dial failure carrying an errno value (ECONNREFUSED, ETIMEDOUT, ...). Compares equal to the
// matching std::errc condition and to condition::dial_failed; message() reads
// "dial failed: Connection refused".
[[nodiscard]] inline std::error_code make_dial_error(int errno_value) noexcept {
  return {errno_value, dial_category()};
}

// A name-resolution failure carrying getaddrinfo's EAI_* value as is (negative on glibc, so it never
// collides with an errno value in the same category). Compares equal to condition::dial_failed and to
// no std::errc; message() is "resolve failed: " + gai_strerror's text. EAI_SYSTEM carries no cause of
// its own: prefer make_dial_error(errno) for it (system_resolver does so).
[[nodiscard]] std::error_code make_resolve_error(int eai_value) noexcept;

}  // namespace netpool

template <>
struct std::is_error_code_enum<netpool::errc> : std::true_type {};
template <>
struct std::is_error_condition_enum<netpool::condition> : std::true_type {};
