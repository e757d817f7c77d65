// Built-in dialers: name resolution, deadline-bounded connect, socket options.
//
// Descriptor ownership: every descriptor is wrapped in a netpool::socket the moment socket(2)
// returns it, so each early return closes it exactly once and the success path moves it out.
#include "netpool/dialer.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>

#include "netpool/config.hpp"
#include "netpool/error.hpp"

namespace netpool {
namespace {

using steady = std::chrono::steady_clock;

// getaddrinfo with `flags`; appends the results to `out`. Returns the EAI_* value (0 on success).
int lookup(const char* host, const char* service, int flags, std::vector<endpoint>& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  // AI_NUMERICSERV: the port is always a number, never an /etc/services name.
  // No AI_ADDRCONFIG: it hides ::1 on hosts whose only IPv6 address is the loopback one.
  hints.ai_flags = flags | AI_NUMERICSERV;
  addrinfo* raw = nullptr;
  const int rc = ::getaddrinfo(host, service, &hints, &raw);
  if (rc != 0) return rc;
  // Owned at once: push_back below may throw bad_alloc, which the pool turns into factory_threw.
  const std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(raw, ::freeaddrinfo);
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addr == nullptr || ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    endpoint ep;
    std::memcpy(&ep.address, ai->ai_addr, ai->ai_addrlen);
    ep.length = static_cast<socklen_t>(ai->ai_addrlen);
    out.push_back(ep);
  }
  return 0;
}

// Sets the descriptor back to blocking mode (the pooled socket is used with plain send/recv).
std::error_code set_blocking(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) return make_dial_error(errno);
  return {};
}

std::error_code set_int_option(int fd, int level, int option, int value) noexcept {
  if (::setsockopt(fd, level, option, &value, sizeof value) != 0) return make_dial_error(errno);
  return {};
}

std::error_code set_flag(int fd, int level, int option) noexcept {
  return set_int_option(fd, level, option, 1);
}

// The kernel's limits (net/ipv4/tcp.c: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT),
// checked before connecting so that a bad option costs no connection to the backend.
constexpr std::int64_t max_keep_alive_seconds = 32767;
constexpr int max_keep_alive_count = 127;

// TCP_NODELAY, keep-alive and its timers, TCP_USER_TIMEOUT, as `options` asks.
std::error_code apply_tcp_options(int fd, const tcp_options& options) noexcept {
  if (options.no_delay) {
    if (auto ec = set_flag(fd, IPPROTO_TCP, TCP_NODELAY)) return ec;
  }
  const bool timers = options.keep_alive_idle.count() > 0 || options.keep_alive_interval.count() > 0 ||
                      options.keep_alive_count > 0;
  if (options.keep_alive || timers) {
    if (auto ec = set_flag(fd, SOL_SOCKET, SO_KEEPALIVE)) return ec;
  }
  // Each value fits in an int: validate() has checked it.
  if (options.keep_alive_idle.count() > 0) {
    const int idle = static_cast<int>(options.keep_alive_idle.count());
    if (auto ec = set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle)) return ec;
  }
  if (options.keep_alive_interval.count() > 0) {
    const int interval = static_cast<int>(options.keep_alive_interval.count());
    if (auto ec = set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval)) return ec;
  }
  if (options.keep_alive_count > 0) {
    if (auto ec = set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, options.keep_alive_count)) return ec;
  }
  if (options.user_timeout.count() > 0) {
    const int timeout = static_cast<int>(options.user_timeout.count());
    if (auto ec = set_int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, timeout)) return ec;
  }
  return {};
}

// Waits until `fd`'s non-blocking connect completes or `deadline` passes. Returns the connect
// result (SO_ERROR), or errc::timeout.
std::error_code wait_connected(int fd, steady::time_point deadline) noexcept {
  for (;;) {
    const auto now = steady::now();
    if (now >= deadline) return errc::timeout;
    // Round up so that less than a millisecond left still sleeps rather than spins.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd p{fd, POLLOUT, 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<decltype(left)>(left, INT_MAX)));
    if (n < 0) {
      // A signal: go round again with the time that is left.
      if (errno == EINTR) continue;
      return make_dial_error(errno);
    }
    if (n > 0) break;
    // n == 0: the timeout elapsed; the check at the top decides.
  }
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return make_dial_error(errno);
  if (error != 0) return make_dial_error(error);
  return {};
}

// One TCP connection attempt to `ep`, bounded by `deadline`.
result<socket> connect_tcp(const endpoint& ep, steady::time_point deadline) noexcept {
  socket s(::socket(ep.address.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) return make_dial_error(errno);
  if (::connect(s.native_handle(), reinterpret_cast<const sockaddr*>(&ep.address), ep.length) != 0) {
    // EINTR on connect does not abort it: the connection proceeds asynchronously, exactly as with
    // EINPROGRESS, and poll() reports its outcome.
    if (errno != EINPROGRESS && errno != EINTR) return make_dial_error(errno);
    if (auto ec = wait_connected(s.native_handle(), deadline)) return ec;
  }
  if (auto ec = set_blocking(s.native_handle())) return ec;
  return s;
}

// Converts the time left before `deadline` into a non-zero timeval (zero would mean "no timeout"
// to SO_SNDTIMEO). Returns false when the deadline has passed.
bool time_left(steady::time_point deadline, timeval& tv) noexcept {
  const auto now = steady::now();
  if (now >= deadline) return false;
  const auto left = std::chrono::ceil<std::chrono::microseconds>(deadline - now);
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(left);
  tv.tv_sec = static_cast<time_t>(seconds.count());
  tv.tv_usec = static_cast<suseconds_t>((left - seconds).count());
  return true;
}

// A name that starts with a NUL byte is in Linux's abstract namespace: it is exactly its bytes (a
// terminating NUL would be one more byte of the name, and another name), and may fill sun_path.
// A path needs room for its terminating NUL.
bool is_abstract(const std::string& path) noexcept {
  return !path.empty() && path.front() == '\0';
}
constexpr std::size_t sun_path_size = sizeof(sockaddr_un::sun_path);
bool fits_sun_path(const std::string& path) noexcept {
  return path.size() + (is_abstract(path) ? 0 : 1) <= sun_path_size;
}
// A filesystem path with a NUL inside: the kernel would read it only up to that NUL and connect
// to another path than the one given. (An abstract name is exact bytes, NULs included.)
bool cut_short_by_nul(const std::string& path) noexcept {
  return !is_abstract(path) && path.find('\0') != std::string::npos;
}

}  // namespace

tcp_options_problem validate(const tcp_options& options) noexcept {
  const auto timer_ok = [](std::chrono::seconds timer) {
    return timer.count() >= 0 && timer.count() <= max_keep_alive_seconds;
  };
  if (!timer_ok(options.keep_alive_idle)) return tcp_options_problem::keep_alive_idle_out_of_range;
  if (!timer_ok(options.keep_alive_interval)) return tcp_options_problem::keep_alive_interval_out_of_range;
  if (options.keep_alive_count < 0 || options.keep_alive_count > max_keep_alive_count) {
    return tcp_options_problem::keep_alive_count_out_of_range;
  }
  if (options.user_timeout.count() < 0 || options.user_timeout.count() > INT_MAX) {
    return tcp_options_problem::user_timeout_out_of_range;
  }
  return tcp_options_problem::none;
}

const char* describe(tcp_options_problem problem) noexcept {
  switch (problem) {
    case tcp_options_problem::none:
      return "valid TCP options";
    case tcp_options_problem::keep_alive_idle_out_of_range:
      return "tcp_options::keep_alive_idle must be in [0 s, 32767 s]";
    case tcp_options_problem::keep_alive_interval_out_of_range:
      return "tcp_options::keep_alive_interval must be in [0 s, 32767 s]";
    case tcp_options_problem::keep_alive_count_out_of_range:
      return "tcp_options::keep_alive_count must be in [0, 127]";
    case tcp_options_problem::user_timeout_out_of_range:
      return "tcp_options::user_timeout must be in [0 ms, 2147483647 ms]";
  }
  return "unknown TCP options problem";
}

namespace detail {

// A lambda around a dialer is opaque; only a std::function that holds the dialer itself is looked
// into, with target(). The std::function was built in the user's code, whose RTTI setting this
// file cannot know, so only libstdc++ from GCC 11 on is asked: its target() compares the stored
// manager function first, and a manager built without RTTI answers a type_info query with
// nullptr. Before GCC 11 such a manager leaves the answer unset, and libc++'s target() is a
// virtual that a std::function built without RTTI does not have. Elsewhere nothing is checked and
// the dials fail.
config_problem builtin_dialer_problem([[maybe_unused]] const factory_function<socket>& factory) noexcept {
#if defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 11
  if (const auto* tcp = factory.target<tcp_dialer>()) {
    if (validate(tcp->options()) != tcp_options_problem::none)
      return config_problem::tcp_options_out_of_range;
  }
  if (const auto* local = factory.target<unix_dialer>()) {
    if (!local->path_fits()) return config_problem::unix_path_invalid;
  }
#endif
  return config_problem::none;
}

}  // namespace detail

std::error_code system_resolver(std::string_view host, std::uint16_t port, std::vector<endpoint>& out) {
  // "[::1]" is the URL spelling of an IPv6 literal; getaddrinfo wants it bare.
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  // getaddrinfo reads a C string: "127.0.0.1\0.example" would resolve its first part. A name with a
  // NUL in it names no host.
  if (host.find('\0') != std::string_view::npos) return make_resolve_error(EAI_NONAME);
  const std::string name(host);
  char service[8] = {};
  std::to_chars(service, service + sizeof service - 1, port);

  // Literals first, with AI_NUMERICHOST: this guarantees that "127.0.0.1" or "::1" never reaches
  // NSS (no /etc/hosts scan, no DNS query), whatever the libc does for numeric strings.
  int rc = lookup(name.c_str(), service, AI_NUMERICHOST, out);
  if (rc == EAI_NONAME) rc = lookup(name.c_str(), service, 0, out);
  if (rc == EAI_SYSTEM) {
    // The cause is in errno; keep it rather than the uninformative "System error".
    const int e = errno;
    return e != 0 ? make_dial_error(e) : make_resolve_error(rc);
  }
  if (rc != 0) return make_resolve_error(rc);
  if (out.empty()) return make_resolve_error(EAI_NONAME);
  return {};
}

tcp_dialer::tcp_dialer(std::string host, std::uint16_t port, tcp_options options)
    : host_(std::move(host)), port_(port), options_(std::move(options)) {
  if (!options_.resolve) options_.resolve = system_resolver;
}

result<socket> tcp_dialer::operator()(steady::time_point deadline) const {
  // A caller already out of time gets the answer at once, without a (possibly slow) lookup.
  if (steady::now() >= deadline) return errc::timeout;
  if (validate(options_) != tcp_options_problem::none) return make_dial_error(EINVAL);

  std::vector<endpoint> endpoints;
  if (auto ec = options_.resolve(host_, port_, endpoints)) return ec;
  if (endpoints.empty()) return make_resolve_error(EAI_NONAME);

  std::error_code last;
  for (const endpoint& ep : endpoints) {
    if (steady::now() >= deadline) return errc::timeout;
    auto connected = connect_tcp(ep, deadline);
    if (!connected) {
      // A timeout ends the whole dial: the deadline has passed for the next addresses too.
      if (connected.error() == errc::timeout) return connected;
      last = connected.error();
      continue;
    }
    const bool is_tcp = ep.address.ss_family == AF_INET || ep.address.ss_family == AF_INET6;
    if (is_tcp) {
      if (auto ec = apply_tcp_options(connected->native_handle(), options_)) return ec;
    } else if (options_.keep_alive) {
      // An endpoint from a custom resolver that is not TCP: only SO_KEEPALIVE means anything.
      if (auto ec = set_flag(connected->native_handle(), SOL_SOCKET, SO_KEEPALIVE)) return ec;
    }
    return connected;
  }
  return last;
}

unix_dialer::unix_dialer(std::string path) : path_(std::move(path)) {}

bool unix_dialer::path_fits() const noexcept {
  return !path_.empty() && fits_sun_path(path_) && !cut_short_by_nul(path_);
}

result<socket> unix_dialer::operator()(steady::time_point deadline) const {
  if (steady::now() >= deadline) return errc::timeout;

  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (!fits_sun_path(path_)) return make_dial_error(ENAMETOOLONG);
  if (path_.empty()) return make_dial_error(ENOENT);  // names nothing
  if (cut_short_by_nul(path_)) return make_dial_error(EINVAL);
  const bool abstract = is_abstract(path_);
  std::memcpy(address.sun_path, path_.data(), path_.size());
  const auto length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + (abstract ? 0 : 1));

  // Unlike TCP, a non-blocking connect to a Unix socket whose accept queue is full fails at once
  // with EAGAIN; there is nothing to poll for. So connect in blocking mode, bounded by
  // SO_SNDTIMEO (which the kernel applies to the connect wait), and reset the timeout afterwards.
  socket s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return make_dial_error(errno);
  const int fd = s.native_handle();
  for (;;) {
    timeval tv{};
    if (!time_left(deadline, tv)) return errc::timeout;
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) return make_dial_error(errno);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), length) == 0) break;
    // EINTR: the attempt was abandoned (the socket is still unconnected), retry with the time
    // left. EAGAIN: the queue stayed full for the whole timeout; the check above decides whether
    // any time is left.
    if (errno != EINTR && errno != EAGAIN) return make_dial_error(errno);
  }
  const timeval none{};
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none) != 0) return make_dial_error(errno);
  return s;
}

}  // namespace netpool
