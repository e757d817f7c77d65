// netpool/socket.hpp — the default pooled connection: a move-only owning socket descriptor.
//
//   netpool::tcp_dialer dial("127.0.0.1", 6379);
//   auto s = dial(std::chrono::steady_clock::now() + std::chrono::seconds(1));
//   if (!s) return s.error();
//   if (auto ec = s->send_all("PING\r\n")) return ec;  // EPIPE if the peer left; never SIGPIPE
//   char buf[64];
//   auto n = s->recv(buf, sizeof buf);                 // result<std::size_t>; 0 = peer closed
//   // or instead, when the reply's length is known:
//   char pong[7];
//   auto ec = s->recv_all(pong, sizeof pong);          // "+PONG\r\n": all 7 bytes, or an error
//   // ~socket() closes the descriptor exactly once
//
//   // A backend that stops answering must not hold the thread: give the I/O a deadline.
//   const auto io_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
//   auto m = s->recv(buf, sizeof buf, io_deadline);    // waits at most until io_deadline
//   if (!m && m.error() == netpool::errc::io_timeout) { /* a reply may still come: discard it */ }
//
// Thread safety: one thread at a time per socket (as with any descriptor).
// Lifetime: the socket owns its descriptor; moving transfers ownership and leaves the source empty.
// Errors: send/recv/close report errno as std::system_category() codes (compare them with
// std::errc: `ec == std::errc::broken_pipe`); a passed deadline is errc::io_timeout; a peer that
// closes before recv_all has all its bytes, errc::end_of_stream.
// Blocking: send/recv without a deadline block as the descriptor does (the built-in dialers hand
// out blocking sockets); with a deadline they wait at most until it, blocking descriptor or not;
// probe() never blocks.
#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>
#include <system_error>

#include "netpool/error.hpp"  // errc::io_timeout, errc::end_of_stream
#include "netpool/result.hpp"

namespace netpool {

// What a non-blocking peek says about a connection that sat idle (see socket::probe()).
enum class liveness {
  alive,        // no data pending and no EOF: safe to hand out
  unread_data,  // bytes are waiting that the previous borrower never read: handing it out would
                // desynchronise the protocol
  peer_closed,  // the peer sent FIN
  error,        // the socket reported an error (reset, ...)
};

class socket {
 public:
  socket() noexcept = default;
  explicit socket(int fd) noexcept : fd_(fd) {}
  socket(socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  socket& operator=(socket&& other) noexcept;
  socket(const socket&) = delete;
  socket& operator=(const socket&) = delete;
  ~socket() { close(); }

  [[nodiscard]] int native_handle() const noexcept { return fd_; }
  [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return is_open(); }

  // Closes the descriptor if open; later calls do nothing. Returns close()'s error, if any (the
  // descriptor is released either way). A pooled socket closed through its lease is discarded
  // when the lease comes back.
  std::error_code close() noexcept;
  // Gives up ownership without closing; the socket becomes empty (pooled: as close()).
  [[nodiscard]] int release() noexcept;

  // send(2) with MSG_NOSIGNAL, retried on EINTR: writing to a peer that has gone returns EPIPE (or
  // ECONNRESET), never SIGPIPE. May send less than `size`.
  result<std::size_t> send(const void* data, std::size_t size) noexcept;
  // Sends everything (looping over partial writes and EINTR). The (data, size) form is the same
  // for bytes that are not characters (a binary header, a std::vector<std::byte>).
  [[nodiscard]] std::error_code send_all(std::string_view data) noexcept;
  [[nodiscard]] std::error_code send_all(const void* data, std::size_t size) noexcept;
  // recv(2), retried on EINTR; 0 means the peer closed, or size was 0 (then it returns at once).
  result<std::size_t> recv(void* data, std::size_t size) noexcept;
  // Receives exactly `size` bytes (looping over short reads and EINTR). A peer that closes first
  // is errc::end_of_stream. After an error, how much of `data` was filled is not reported: the
  // stream is out of step, and the connection is for discarding. On a non-blocking descriptor this
  // form fails with EAGAIN once nothing is ready; the one with a deadline waits.
  [[nodiscard]] std::error_code recv_all(void* data, std::size_t size) noexcept;

  // The same five, waiting (ppoll) for the socket at most until `deadline`; then they fail with
  // errc::io_timeout (which is also `== std::errc::timed_out`). What can be sent or read at once
  // is, even past the deadline (so a deadline already passed makes a non-blocking attempt).
  // send_all's and recv_all's deadline bounds the whole message; when it passes part way, part of
  // the message has gone (or come). After a timeout the stream is out of step with the protocol
  // (a late reply may still arrive): discard the connection (lease::discard(), put_with_error)
  // rather than return it. A socket with entries on its error queue (SO_TIMESTAMPING,
  // MSG_ZEROCOPY) cannot be waited on this way: a wait fails with EOPNOTSUPP rather than spin.
  result<std::size_t> send(const void* data, std::size_t size,
                           std::chrono::steady_clock::time_point deadline) noexcept;
  [[nodiscard]] std::error_code send_all(std::string_view data,
                                         std::chrono::steady_clock::time_point deadline) noexcept;
  [[nodiscard]] std::error_code send_all(const void* data, std::size_t size,
                                         std::chrono::steady_clock::time_point deadline) noexcept;
  result<std::size_t> recv(void* data, std::size_t size,
                           std::chrono::steady_clock::time_point deadline) noexcept;
  [[nodiscard]] std::error_code recv_all(void* data, std::size_t size,
                                         std::chrono::steady_clock::time_point deadline) noexcept;

  // A non-blocking recv(MSG_PEEK | MSG_DONTWAIT) of one byte: no round trip, no data consumed.
  // An empty socket reports liveness::error.
  [[nodiscard]] liveness probe() const noexcept;

 private:
  int fd_ = -1;
};

}  // namespace netpool
