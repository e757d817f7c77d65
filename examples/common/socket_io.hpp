// examples/common/socket_io.hpp — small I/O helpers shared by the echo and redis_ping examples.
//
//   cfg.factory = netpool::examples::with_io_timeout(netpool::tcp_dialer(host, port), 5s);
//   if (std::error_code ec = netpool::examples::read_exact(*conn, buffer, size)) conn->discard();
//
// Why an I/O timeout: the pool bounds waiting for a connection and dialing one, but a request on a
// borrowed socket blocks as long as the server takes. SO_RCVTIMEO / SO_SNDTIMEO bound that too, so
// a stuck server turns into an error (and a discarded connection) instead of a hung thread.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <system_error>
#include <utility>

#include <netpool/netpool.hpp>

namespace netpool::examples {

// Bounds each blocking send/recv on `s` by `timeout` (they then fail with EAGAIN).
inline std::error_code set_io_timeout(netpool::socket& s, std::chrono::microseconds timeout) noexcept {
  const timeval tv{static_cast<time_t>(timeout.count() / 1'000'000),
                   static_cast<suseconds_t>(timeout.count() % 1'000'000)};
  for (const int option : {SO_RCVTIMEO, SO_SNDTIMEO}) {
    if (::setsockopt(s.native_handle(), SOL_SOCKET, option, &tv, sizeof tv) != 0) {
      return {errno, std::system_category()};
    }
  }
  return {};
}

// A connection factory: `dial`, then set_io_timeout() on the new socket.
template <class Dialer>
auto with_io_timeout(Dialer dial, std::chrono::microseconds timeout) {
  return [dial = std::move(dial), timeout](std::chrono::steady_clock::time_point deadline) {
    netpool::result<netpool::socket> s = dial(deadline);
    if (s) {
      if (std::error_code ec = set_io_timeout(*s, timeout)) return netpool::result<netpool::socket>(ec);
    }
    return s;
  };
}

// Receives exactly `size` bytes (recv may return fewer). A peer that closes first is an error.
inline std::error_code read_exact(netpool::socket& s, char* data, std::size_t size) noexcept {
  for (std::size_t got = 0; got < size;) {
    netpool::result<std::size_t> n = s.recv(data + got, size - got);
    if (!n) return n.error();
    if (*n == 0) return std::make_error_code(std::errc::connection_aborted);  // EOF mid-reply
    got += *n;
  }
  return {};
}

}  // namespace netpool::examples
