// examples/hiredis/redis_connection.hpp — a hiredis redisContext as a connection netpool can pool.
//
//   netpool::pool_config<netpool::examples::redis_connection> cfg;
//   cfg.factory = netpool::examples::redis_dialer("127.0.0.1", 6379, std::chrono::seconds(2));
//   cfg.on_connect = [](netpool::examples::redis_connection& c) { return c.select(3); };
//   cfg.on_return = [](netpool::examples::redis_connection& c) { return c.usable(); };
//   auto pool = netpool::pool<netpool::examples::redis_connection>::create(std::move(cfg));
//
//   if (auto conn = pool->get_for(std::chrono::seconds(1))) {
//     netpool::examples::redis_reply r = (*conn)->command("SET", "key", "value");
//     if (!r) std::puts((*conn)->error().message().c_str());  // the context is broken now: on_return
//   }                                                          // refuses it and the pool closes it
//
// What the pool needs from a connection type is that it is nothrow-movable and that its destructor
// closes it; redis_connection is a move-only owner of one redisContext (redisFree, exactly once).
// Because it has probe(), netpool's pool also runs a non-blocking liveness peek on a connection that
// sat idle longer than pool_config::probe_after, as it does for netpool::socket.
//
// Thread safety: one redis_connection is used by one thread at a time (a lease guarantees that);
// redis_dialer is immutable, and concurrent calls are safe.
// Blocking: connecting is bounded by the pool's dial deadline, each command by the command timeout
// (redisSetTimeout: SO_RCVTIMEO / SO_SNDTIMEO); probe() and usable() never block.
// Signals: hiredis writes with write(2), which raises SIGPIPE on a connection the server closed.
// A process using it should ignore SIGPIPE (std::signal(SIGPIPE, SIG_IGN)), as servers usually do.
//
// Errors, mapped from hiredis's redisContext::err (and errno, which hiredis documents as the cause
// of REDIS_ERR_IO) to std::error_code:
//
//   hiredis                         while connecting (redis_dialer)     on a command (error())
//   REDIS_ERR_IO, EAGAIN            errc::timeout                       errc::io_timeout (the
//                                                                       command timeout)
//   REDIS_ERR_IO, ETIMEDOUT         errc::timeout                       as other errno (the kernel
//                                                                       gave up: keep-alive, ...)
//   REDIS_ERR_IO, other errno       make_dial_error(errno): e.g.        std::error_code(errno,
//                                   ECONNREFUSED (== std::errc::         system_category())
//                                   connection_refused)
//   REDIS_ERR_EOF                   errc::dial_failed                   std::errc::connection_aborted
//   REDIS_ERR_PROTOCOL              errc::dial_failed                   std::errc::protocol_error
//   REDIS_ERR_OOM, no context       std::errc::not_enough_memory        std::errc::not_enough_memory
//   REDIS_ERR_OTHER, REDIS_ERR_IO   errc::dial_failed (e.g. a name      std::errc::io_error
//   without errno                   that does not resolve)
//
// So a failed dial compares equal to netpool::condition::dial_failed unless it timed out (or memory
// ran out), like the built-in dialers' errors; a pool reports a timeout on its own dial deadline
// as make_dial_error(ETIMEDOUT), which does. After a failed command, hiredis's own text is in
// get()->errstr; a failed dial's context is freed at once, and only the code remains. An error
// *reply* (-ERR ...) is not a broken connection: command() returns it as a reply of type
// REDIS_REPLY_ERROR; select() turns one into errc::hook_rejected.
#pragma once

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <netpool/netpool.hpp>

namespace netpool::examples {

struct redis_reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
// One reply, freed with freeReplyObject. Null when the command failed (see redis_connection::error()).
using redis_reply = std::unique_ptr<redisReply, redis_reply_deleter>;

namespace detail {

// Rounded up, and at least 1 µs: hiredis treats a zero timeval as "do not wait at all".
inline timeval to_timeval(std::chrono::nanoseconds d) noexcept {
  const auto us = std::max<std::int64_t>(std::chrono::ceil<std::chrono::microseconds>(d).count(), 1);
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

// The mapping of the table above, for a context whose err is set; `saved_errno` is errno read right
// after the failing hiredis call (anything called later may overwrite errno).
inline std::error_code map_error(const redisContext& c, int saved_errno, bool connecting) noexcept {
  switch (c.err) {
    case 0:
      return {};
    case REDIS_ERR_IO:
      if (connecting && (saved_errno == ETIMEDOUT || saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
        return netpool::errc::timeout;  // the dial deadline, as the built-in dialers report it
      }
      if (!connecting && (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK)) {
        // The command timeout (SO_RCVTIMEO / SO_SNDTIMEO), as netpool::socket reports its own I/O
        // deadline; not errc::timeout (no pool was busy). The kernel's ETIMEDOUT (keep-alive,
        // TCP_USER_TIMEOUT) falls through and stays a system error.
        return netpool::errc::io_timeout;
      }
      if (saved_errno != 0) {
        return connecting ? netpool::make_dial_error(saved_errno)
                          : std::error_code(saved_errno, std::system_category());
      }
      break;
    case REDIS_ERR_OOM:
      return std::make_error_code(std::errc::not_enough_memory);
    case REDIS_ERR_EOF:
      if (!connecting) return std::make_error_code(std::errc::connection_aborted);  // server closed it
      break;
    case REDIS_ERR_PROTOCOL:
      if (!connecting) return std::make_error_code(std::errc::protocol_error);
      break;
    default:  // REDIS_ERR_OTHER
      break;
  }
  return connecting ? std::error_code(netpool::errc::dial_failed) : std::make_error_code(std::errc::io_error);
}

}  // namespace detail

// Owns one redisContext: move-only, closed (redisFree) exactly once, by the destructor.
class redis_connection {
 public:
  redis_connection() noexcept = default;
  explicit redis_connection(redisContext* context) noexcept : ctx_(context) {}
  redis_connection(redis_connection&& other) noexcept
      : ctx_(std::exchange(other.ctx_, nullptr)), errno_(other.errno_) {}
  redis_connection& operator=(redis_connection&& other) noexcept {
    if (this != &other) {
      if (ctx_ != nullptr) redisFree(ctx_);
      ctx_ = std::exchange(other.ctx_, nullptr);
      errno_ = other.errno_;
    }
    return *this;
  }
  redis_connection(const redis_connection&) = delete;
  redis_connection& operator=(const redis_connection&) = delete;
  ~redis_connection() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }

  [[nodiscard]] redisContext* get() const noexcept { return ctx_; }
  redisContext* operator->() const noexcept { return ctx_; }
  explicit operator bool() const noexcept { return ctx_ != nullptr; }

  // Sends one command, binary-safe (each argument is anything a std::string_view can be made
  // from), and blocks for its reply, bounded by the command timeout. Null when the connection
  // failed: hiredis has then set get()->err for good, the context is unusable and error() says why.
  // An error reply (-ERR ...) is a reply, of type REDIS_REPLY_ERROR. Precondition: *this is not empty.
  template <class... Args>
  redis_reply command(const Args&... args) noexcept {
    static_assert(sizeof...(Args) > 0, "a command has a name");
    assert(ctx_ != nullptr);
    const std::array<std::string_view, sizeof...(Args)> views{std::string_view(args)...};
    std::array<const char*, sizeof...(Args)> argv{};
    std::array<std::size_t, sizeof...(Args)> lengths{};
    for (std::size_t i = 0; i < views.size(); ++i) {
      argv[i] = views[i].data();
      lengths[i] = views[i].size();
    }
    errno = 0;
    redis_reply reply(static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lengths.data())));
    if (!reply) errno_ = errno;
    return reply;
  }

  // SELECT db. An error reply (e.g. "-ERR DB index is out of range") or any reply but +OK gives
  // errc::hook_rejected (the connection itself is fine); a failed connection, error().
  [[nodiscard]] std::error_code select(long long db) noexcept {
    const std::array<char, 24> digits = to_digits(db);
    const redis_reply r = command("SELECT", digits.data());
    if (!r) return error();
    if (r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "OK") return {};
    return netpool::errc::hook_rejected;
  }

  // Why the last command failed (the table at the top), or no error while the context is usable.
  [[nodiscard]] std::error_code error() const noexcept {
    if (ctx_ == nullptr) return std::make_error_code(std::errc::bad_file_descriptor);
    return detail::map_error(*ctx_, errno_, /*connecting=*/false);
  }

  // Can the next borrower use it? No error recorded by hiredis (after one, every command fails),
  // and nothing half-done left behind: no command appended but not sent (redisAppendCommand), no
  // reply bytes read but not consumed. The check for pool_config::on_return; never blocks.
  [[nodiscard]] bool usable() const noexcept {
    return ctx_ != nullptr && ctx_->err == 0 && (ctx_->obuf == nullptr || sdslen(ctx_->obuf) == 0) &&
           (ctx_->reader == nullptr || ctx_->reader->pos == ctx_->reader->len);
  }

  // Non-blocking peek at the socket, as netpool::socket::probe(): did the server close it (timeout,
  // restart, CLIENT KILL) or leave bytes nobody asked for? The pool calls it on idle connections.
  [[nodiscard]] netpool::liveness probe() const noexcept {
    if (!usable()) return netpool::liveness::error;
    char byte = 0;
    const ssize_t n = ::recv(ctx_->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return netpool::liveness::unread_data;
    if (n == 0) return netpool::liveness::peer_closed;
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? netpool::liveness::alive : netpool::liveness::error;
  }

 private:
  // Decimal, NUL-terminated: at most 20 characters for a long long.
  static std::array<char, 24> to_digits(long long v) noexcept {
    std::array<char, 24> out{};
    std::to_chars(out.data(), out.data() + out.size() - 1, v);
    return out;
  }

  redisContext* ctx_ = nullptr;
  int errno_ = 0;  // errno right after the last failed command (REDIS_ERR_IO's cause)
};

// A connection factory for pool_config::factory: connects to host:port with redisConnectWithTimeout,
// the timeout being what is left until the pool's dial deadline, then sets the command timeout.
// The descriptor is made close-on-exec (hiredis 0.14 does not), so that a child process started by
// another thread does not keep the connection open. `host` should be a numeric address: a name is
// resolved by getaddrinfo, which the deadline does not bound.
class redis_dialer {
 public:
  // command_timeout bounds each command's send and each wait for a reply; must be > 0.
  redis_dialer(std::string host, std::uint16_t port, std::chrono::nanoseconds command_timeout)
      : host_(std::move(host)), port_(port), command_timeout_(command_timeout) {
    assert(command_timeout > std::chrono::nanoseconds::zero());
  }

  // Errors: the "while connecting" column of the table at the top of this file.
  netpool::result<redis_connection> operator()(std::chrono::steady_clock::time_point deadline) const {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return netpool::errc::timeout;
    errno = 0;
    redis_connection c(redisConnectWithTimeout(host_.c_str(), port_, detail::to_timeval(left)));
    const int saved_errno = errno;
    if (!c) return std::make_error_code(std::errc::not_enough_memory);  // hiredis could not allocate
    if (c->err != 0) return detail::map_error(*c.get(), saved_errno, /*connecting=*/true);
    const int flags = ::fcntl(c->fd, F_GETFD);
    if (flags < 0 || ::fcntl(c->fd, F_SETFD, flags | FD_CLOEXEC) != 0) return netpool::make_dial_error(errno);
    if (redisSetTimeout(c.get(), detail::to_timeval(command_timeout_)) != REDIS_OK) {
      return netpool::make_dial_error(errno != 0 ? errno : EINVAL);
    }
    return c;
  }

 private:
  std::string host_;
  std::uint16_t port_;
  std::chrono::nanoseconds command_timeout_;
};

}  // namespace netpool::examples
