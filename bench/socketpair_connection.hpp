// socketpair_connection.hpp — a connection for the bench tools that need real descriptors but no
// server: one end of a Unix socketpair, the other end kept in `peers` (closed when it goes).
//
//   std::vector<netpool::socket> peers;
//   cfg.factory = [&peers](auto) { return bench::socketpair_connection(peers); };
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include <netpool/netpool.hpp>

namespace bench {

inline netpool::result<netpool::socket> socketpair_connection(std::vector<netpool::socket>& peers) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return netpool::make_dial_error(errno);
  peers.emplace_back(fds[1]);
  return netpool::socket(fds[0]);
}

}  // namespace bench
