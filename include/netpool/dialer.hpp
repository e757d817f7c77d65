// netpool/dialer.hpp — built-in connection factories: TCP (IPv4, IPv6, names) and Unix sockets.
//
//   netpool::pool_config<netpool::socket> cfg;
//   cfg.factory = netpool::tcp_dialer("127.0.0.1", 6379);          // TCP_NODELAY, CLOEXEC
//   cfg.factory = netpool::unix_dialer("/run/redis/redis.sock");   // or a Unix-domain socket
//
//   // A dialer is a callable: deadline in, socket or error out.
//   netpool::result<netpool::socket> s =
//       netpool::tcp_dialer("::1", 8080)(std::chrono::steady_clock::now() + std::chrono::seconds(1));
//
// Thread safety: a dialer is immutable after construction; concurrent calls are safe.
// Blocking: a call blocks until connected, refused, or the deadline passes (then errc::timeout).
// Errors: dial_category() codes with the errno of the last address tried (ECONNREFUSED, ...),
// make_resolve_error() codes for resolver failures, errc::timeout when the deadline passes (a pool
// reports that as make_dial_error(ETIMEDOUT) when the deadline was its dial_timeout).
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "netpool/result.hpp"
#include "netpool/socket.hpp"

namespace netpool {

// One address to try: what getaddrinfo returns, as a value.
struct endpoint {
  sockaddr_storage address{};
  socklen_t length = 0;
};

// Resolves (host, port) to the endpoints to try, in order. Return an error (e.g.
// make_resolve_error(EAI_NONAME)) or fill `out`. Injectable so that tests never send DNS queries.
using resolver =
    std::function<std::error_code(std::string_view host, std::uint16_t port, std::vector<endpoint>& out)>;

// The default resolver: getaddrinfo(AF_UNSPEC, SOCK_STREAM, AI_NUMERICSERV; AI_ADDRCONFIG not set),
// appending to `out`. Numeric IPv4 and IPv6 literals ("127.0.0.1", "::1", or bracketed "[::1]") are
// parsed without any query; names go through NSS (/etc/hosts, then DNS). Blocks for as long as
// getaddrinfo does: the dial deadline does not bound it. Errors: make_resolve_error(EAI_*), or
// make_dial_error(errno) when getaddrinfo reports EAI_SYSTEM.
std::error_code system_resolver(std::string_view host, std::uint16_t port, std::vector<endpoint>& out);

struct tcp_options {
  bool no_delay = true;                // TCP_NODELAY: pooled request/response traffic wants it
  bool keep_alive = false;             // SO_KEEPALIVE, with the timers below
  resolver resolve = system_resolver;  // replace to inject name resolution (tests, service discovery);
                                       // left empty, system_resolver is used

  // Keep-alive timers (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT): probe a connection quiet for
  // keep_alive_idle, every keep_alive_interval, and drop it after keep_alive_count unanswered
  // probes. 0 keeps the kernel's default (net.ipv4.tcp_keepalive_*: 2 h, 75 s, 9), far slower than
  // the minutes after which NATs and load balancers forget a quiet flow. Setting any of them turns
  // keep_alive on. Ranges (Linux): 1–32767 s, 1–32767 s, 1–127.
  std::chrono::seconds keep_alive_idle{0};
  std::chrono::seconds keep_alive_interval{0};
  int keep_alive_count = 0;
  // TCP_USER_TIMEOUT: how long sent data may stay unacknowledged before the kernel gives up on the
  // connection (the next send or recv fails with ETIMEDOUT). 0 keeps the kernel's default, ~15 min
  // of retransmissions. 0–2147483647 ms.
  std::chrono::milliseconds user_timeout{0};
  // An option out of its range (validate() says which) fails every dial with
  // make_dial_error(EINVAL), before connecting. A pool whose factory is a tcp_dialer itself
  // rejects it at creation (config_problem::tcp_options_out_of_range; with libstdc++ 11 or
  // later, see docs/design.md). One wrapped in a lambda of yours is not seen through, and its
  // dials fail, which the pool takes for a failing backend (backoff, fast failures): check values
  // you compute. The timers and user_timeout apply to TCP endpoints; a custom resolver's other
  // kinds of endpoint get keep_alive alone.
};

// Why tcp_options would fail every dial; tcp_options_problem::none when they are in range.
enum class tcp_options_problem {
  none,
  keep_alive_idle_out_of_range,      // must be in [0 s, 32767 s]
  keep_alive_interval_out_of_range,  // must be in [0 s, 32767 s]
  keep_alive_count_out_of_range,     // must be in [0, 127]
  user_timeout_out_of_range,         // must be in [0 ms, 2147483647 ms]
};

// The first option out of the kernel's range, in declaration order.
[[nodiscard]] tcp_options_problem validate(const tcp_options& options) noexcept;
// A short sentence naming the option and its range, for logs.
[[nodiscard]] const char* describe(tcp_options_problem problem) noexcept;

class tcp_dialer {
 public:
  tcp_dialer(std::string host, std::uint16_t port, tcp_options options = {});

  // Tries each resolved address in turn until one connects; non-blocking connect bounded by
  // `deadline`. The returned socket is blocking, CLOEXEC, with the requested options. Errors: the
  // resolver's error; errc::timeout if the deadline has passed before the call (nothing is
  // resolved) or passes while connecting; otherwise the last address's failure (ECONNREFUSED, ...).
  result<socket> operator()(std::chrono::steady_clock::time_point deadline) const;

  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] const tcp_options& options() const noexcept { return options_; }

 private:
  std::string host_;
  std::uint16_t port_;
  tcp_options options_;
};

class unix_dialer {
 public:
  // A filesystem path, or a Linux abstract-namespace name: one that starts with a NUL byte
  // (std::string("\0name", 5)), used as its exact bytes.
  explicit unix_dialer(std::string path);

  // Connects to the Unix-domain stream socket at `path` (CLOEXEC, blocking once connected). Waits
  // while the listener's accept queue is full, until `deadline` (then errc::timeout). Errors:
  // ENAMETOOLONG if `path` does not fit in sockaddr_un (107 bytes for a path, which needs its NUL;
  // 108 for an abstract name), ENOENT for a missing (or empty) path, EINVAL for a filesystem path
  // with a NUL inside (the kernel would stop reading there and connect elsewhere),
  // ECONNREFUSED when nothing listens there, as dial_category() codes.
  result<socket> operator()(std::chrono::steady_clock::time_point deadline) const;

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // Whether `path` can name a socket at all: not empty, fits in sockaddr_un, and no NUL inside
  // a filesystem path. A pool whose factory is a unix_dialer itself rejects one that cannot
  // (config_problem::unix_path_invalid; with libstdc++ 11 or later, see docs/design.md).
  [[nodiscard]] bool path_fits() const noexcept;

 private:
  std::string path_;
};

}  // namespace netpool
