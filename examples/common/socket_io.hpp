// examples/common/socket_io.hpp — a small I/O helper shared by the echo and redis_ping examples.
//
//   const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
//   std::error_code ec = (*conn)->send_all(request, deadline);
//   if (!ec) ec = netpool::examples::read_exact(*conn, buffer, size, deadline);
//   if (ec) conn->discard();  // broken, timed out (errc::io_timeout) or closed mid-reply
//
// Why a deadline: the pool bounds waiting for a connection and dialing one, but a request on a
// borrowed socket would otherwise block as long as the server takes. With one, a stuck server
// turns into an error (and a discarded connection) instead of a hung thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <system_error>

#include <netpool/netpool.hpp>

namespace netpool::examples {

// Receives exactly `size` bytes by `deadline` (recv may return fewer at a time). A peer that closes
// first is an error.
inline std::error_code read_exact(netpool::socket& s, char* data, std::size_t size,
                                  std::chrono::steady_clock::time_point deadline) noexcept {
  for (std::size_t got = 0; got < size;) {
    netpool::result<std::size_t> n = s.recv(data + got, size - got, deadline);
    if (!n) return n.error();
    if (*n == 0) return std::make_error_code(std::errc::connection_aborted);  // EOF mid-reply
    got += *n;
  }
  return {};
}

}  // namespace netpool::examples
