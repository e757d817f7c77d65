// netpool::socket: thin wrappers over close/send/recv with the error handling pooled use needs.
#include "netpool/socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string_view>

#include "netpool/error.hpp"

namespace netpool {
namespace {

using steady_time = std::chrono::steady_clock::time_point;

std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

// Waits until `fd` is ready for `event` (POLLIN or POLLOUT), or reports errc::io_timeout once
// `deadline` has passed. A hang-up counts as ready: the send or recv that follows reports it.
std::error_code wait_until_ready(int fd, short event, steady_time deadline) noexcept {
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return errc::io_timeout;
    // deadline > now, so the difference neither overflows nor goes negative (even for
    // time_point::max()); ppoll takes nanoseconds, where poll's milliseconds would round.
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(left);
    const timespec timeout{static_cast<std::time_t>(seconds.count()),
                           static_cast<long>((left - seconds).count())};
    pollfd watched{fd, event, 0};
    const int ready = ::ppoll(&watched, 1, &timeout, nullptr);
    if (ready > 0) {
      if ((watched.revents & (event | POLLHUP | POLLNVAL)) != 0) return {};
      // POLLERR alone: a pending socket error, which we take (SO_ERROR clears it) and report; or,
      // with none, entries on the error queue (SO_TIMESTAMPING, MSG_ZEROCOPY), which keep ppoll
      // returning while send/recv say EAGAIN: waiting on would spin, so the wait fails instead.
      int error = 0;
      socklen_t length = sizeof error;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return last_error();
      return {error != 0 ? error : EOPNOTSUPP, std::system_category()};
    }
    // 0: the timeout ran out; the loop's clock check decides (ppoll's clock is not steady_clock).
    if (ready < 0 && errno != EINTR) return last_error();
  }
}

// One send or recv with MSG_DONTWAIT (`attempt`), retried on EINTR, and after EAGAIN once
// wait_until_ready() says the socket is ready for `event`: whatever the descriptor's blocking mode,
// only wait_until_ready() waits, and it waits at most until `deadline`.
template <class Attempt>
result<std::size_t> attempt_until(int fd, short event, steady_time deadline, Attempt attempt) noexcept {
  for (;;) {
    const ssize_t n = attempt();
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return last_error();
    if (auto ec = wait_until_ready(fd, event, deadline)) return ec;
  }
}

// The loops of send_all and recv_all, over a send or recv of part of the rest (timed or not).
template <class SendSome>
std::error_code send_all_with(std::string_view data, SendSome send_some) noexcept {
  while (!data.empty()) {
    result<std::size_t> sent = send_some(data.data(), data.size());
    if (!sent) return sent.error();
    data.remove_prefix(*sent);
  }
  return {};
}

template <class RecvSome>
std::error_code recv_all_with(void* data, std::size_t size, RecvSome recv_some) noexcept {
  auto* bytes = static_cast<char*>(data);
  for (std::size_t got = 0; got < size;) {
    result<std::size_t> n = recv_some(bytes + got, size - got);
    if (!n) return n.error();
    if (*n == 0) return make_error_code(errc::end_of_stream);  // not an error to recv(): EOF
    got += *n;
  }
  return {};
}

}  // namespace

socket& socket::operator=(socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

std::error_code socket::close() noexcept {
  if (fd_ < 0) return {};
  const int fd = fd_;
  // Forget the descriptor before closing: whatever close() reports, the number is no longer ours
  // and may already belong to another thread's new descriptor.
  fd_ = -1;
  if (::close(fd) != 0) {
    // Never retry: on Linux the descriptor is released even when close() fails with EINTR, and
    // a retry could close a descriptor another thread has just been given. EINTR says nothing
    // about the connection, so it is not reported.
    if (errno == EINTR) return {};
    return last_error();
  }
  return {};
}

int socket::release() noexcept {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

result<std::size_t> socket::send(const void* data, std::size_t size) noexcept {
  for (;;) {
    // MSG_NOSIGNAL: a peer that has gone yields EPIPE here instead of a process-killing SIGPIPE,
    // without touching the process-wide signal disposition.
    const ssize_t n = ::send(fd_, data, size, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return last_error();
  }
}

std::error_code socket::send_all(std::string_view data) noexcept {
  return send_all_with(data, [&](const char* rest, std::size_t size) { return send(rest, size); });
}

result<std::size_t> socket::recv(void* data, std::size_t size) noexcept {
  // recv(2) of 0 bytes on a stream socket waits for data to arrive (and reads none): not what a
  // call asking for nothing means.
  if (size == 0) return std::size_t{0};
  for (;;) {
    const ssize_t n = ::recv(fd_, data, size, 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EINTR) return last_error();
  }
}

std::error_code socket::send_all(const void* data, std::size_t size) noexcept {
  return send_all(std::string_view(static_cast<const char*>(data), size));
}

std::error_code socket::recv_all(void* data, std::size_t size) noexcept {
  return recv_all_with(data, size, [&](char* rest, std::size_t left) { return recv(rest, left); });
}

result<std::size_t> socket::send(const void* data, std::size_t size, steady_time deadline) noexcept {
  return attempt_until(fd_, POLLOUT, deadline,
                       [&] { return ::send(fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT); });
}

std::error_code socket::send_all(std::string_view data, steady_time deadline) noexcept {
  return send_all_with(data, [&](const char* rest, std::size_t size) { return send(rest, size, deadline); });
}

result<std::size_t> socket::recv(void* data, std::size_t size, steady_time deadline) noexcept {
  if (size == 0) return std::size_t{0};  // as the untimed recv: nothing asked, nothing waited for
  return attempt_until(fd_, POLLIN, deadline, [&] { return ::recv(fd_, data, size, MSG_DONTWAIT); });
}

std::error_code socket::send_all(const void* data, std::size_t size, steady_time deadline) noexcept {
  return send_all(std::string_view(static_cast<const char*>(data), size), deadline);
}

std::error_code socket::recv_all(void* data, std::size_t size, steady_time deadline) noexcept {
  return recv_all_with(data, size, [&](char* rest, std::size_t left) { return recv(rest, left, deadline); });
}

liveness socket::probe() const noexcept {
  char byte;
  const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return liveness::unread_data;
  if (n == 0) return liveness::peer_closed;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return liveness::alive;
  // ECONNRESET, ETIMEDOUT (keep-alive gave up), EBADF on an empty socket, ...
  return liveness::error;
}

}  // namespace netpool
