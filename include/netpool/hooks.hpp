// netpool/hooks.hpp — what a pool tells your code about its connections: close reasons and leaks.
//
//   netpool::pool_config<netpool::socket> cfg;
//   cfg.on_connect = [](netpool::socket& s, std::chrono::steady_clock::time_point deadline) {
//     return authenticate(s, deadline);  // send AUTH, read its reply by the dial's deadline
//   };                                   // error: the dial failed
//   cfg.on_return = [](netpool::socket& s) { return s.probe() == netpool::liveness::alive; };
//   cfg.on_close = [](netpool::socket&, netpool::close_reason why) { log(netpool::to_string(why)); };
//   cfg.leak_threshold = std::chrono::seconds(30);
//   cfg.on_leak = [](const netpool::leak_report& r) {
//     std::fprintf(stderr, "lease from %s:%u %s after %lld ms\n", r.where.file_name(), r.where.line(),
//                  r.returned ? "came back" : "still out", (long long)(r.held /
//                  std::chrono::milliseconds(1)));
//   };
//
// The hook fields themselves live in pool_config (config.hpp), next to their contracts. Hooks run on
// the thread that triggered them: a caller's get or put; a dialer thread (on_connect); the
// maintainer; the thread calling close(), reset(), set_max_size() or the destructor, or returning a
// lease after the pool is gone (on_close). Never under a lock that the get/put path takes, but a
// maintenance round or a resize runs them under its own (config.hpp says what that forbids).
// A hook that throws is treated as a refusal: the connection is closed and counted, never leaked,
// and no exception leaves the pool.
#pragma once

#include <chrono>
#include <cstddef>

namespace netpool {

// Where a get() was called, for leak reports. std::source_location's interface, built from the
// compiler builtins behind it: clang 14 with libstdc++ has no <source_location>, and one type on
// every compiler keeps leak_report's layout the same in every translation unit.
class source_location {
 public:
  // As a default argument, the builtins name the caller of the function that has the default.
  [[nodiscard]] static constexpr source_location current(const char* file = __builtin_FILE(),
                                                         const char* function = __builtin_FUNCTION(),
                                                         unsigned line = __builtin_LINE()) noexcept {
    return source_location(file, function, line);
  }
  constexpr source_location() noexcept = default;

  [[nodiscard]] constexpr const char* file_name() const noexcept { return file_; }
  [[nodiscard]] constexpr const char* function_name() const noexcept { return function_; }
  [[nodiscard]] constexpr unsigned line() const noexcept { return line_; }

 private:
  constexpr source_location(const char* file, const char* function, unsigned line) noexcept
      : file_(file), function_(function), line_(line) {}
  const char* file_ = "";
  const char* function_ = "";
  unsigned line_ = 0;
};

// Why the pool closed a connection: passed to on_close, and one counter each in pool_stats.
enum class close_reason : unsigned char {
  idle,         // idle longer than max_idle_time
  lifetime,     // older than max_lifetime
  health,       // the liveness probe or health_check said it is dead (or the check threw)
  error,        // put_with_error / lease::discard: the caller saw it fail
  reset,        // pool::reset()
  pool_closed,  // the pool was closed (or destroyed)
  hook,         // on_connect, on_borrow or on_return refused it (or threw)
  resize,       // set_max_size() shrank the pool below the number open
  reclaimed,    // an idle one closed to free room elsewhere: pool::reclaim_idle(), as keyed_pool
                // does for its global limit
};
inline constexpr std::size_t close_reason_count = 9;

// "idle", "lifetime", ...: stable names, used as Prometheus label values.
[[nodiscard]] const char* to_string(close_reason reason) noexcept;

// A lease held longer than pool_config::leak_threshold (leak detection; pool only).
struct leak_report {
  source_location where;             // where get() was called
  std::chrono::nanoseconds held{0};  // how long it has been out (when reported) or was out (returned)
  bool returned = false;             // false: first report, still out; true: it has just come back
};

}  // namespace netpool
