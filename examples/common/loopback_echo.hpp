// examples/common/loopback_echo.hpp — a tiny TCP echo server on 127.0.0.1 for the examples.
//
//   netpool::examples::loopback_echo_server server;  // listening on 127.0.0.1, a free port
//   cfg.factory = netpool::tcp_dialer("127.0.0.1", server.port());
//
// Not part of netpool: just enough server for the examples to talk to, so that they run anywhere
// without a network. One thread per accepted connection (a pool opens only a handful).
// Thread safety: construct and destroy from one thread; port() from any.
// Lifetime: the destructor stops accepting, cuts every connection and joins every thread.
// Errors: the constructor throws std::system_error if it cannot listen.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <thread>
#include <vector>

namespace netpool::examples {

class loopback_echo_server {
 public:
  loopback_echo_server() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener_ < 0) throw std::system_error(errno, std::system_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // loopback only; port 0: the kernel picks one
    socklen_t length = sizeof addr;
    if (::bind(listener_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, SOMAXCONN) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      const int error = errno;
      ::close(listener_);
      throw std::system_error(error, std::system_category(), "listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    try {
      acceptor_ = std::thread([this] { accept_loop(); });
    } catch (...) {
      ::close(listener_);
      throw;
    }
  }

  ~loopback_echo_server() {
    // On Linux, shutdown() wakes a thread blocked in accept() or recv() on that socket; close()
    // would not, and would let the descriptor number be reused under the blocked thread.
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();  // from here on, connections_ and workers_ no longer change
    for (const int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    for (std::thread& worker : workers_) worker.join();
    for (const int fd : connections_) ::close(fd);  // closed only once no thread can use them
    ::close(listener_);
  }

  loopback_echo_server(const loopback_echo_server&) = delete;
  loopback_echo_server& operator=(const loopback_echo_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // the destructor shut the listener down
      }
      connections_.push_back(fd);
      try {
        workers_.emplace_back([fd] { echo(fd); });
      } catch (const std::system_error&) {  // no thread for it: drop this connection, keep serving
        ::close(fd);
        connections_.pop_back();
      }
    }
  }

  // Sends back every byte received until the peer closes (or the destructor shuts it down).
  static void echo(int fd) noexcept {
    char buffer[4096];
    for (;;) {
      const ssize_t received = ::recv(fd, buffer, sizeof buffer, 0);
      if (received < 0 && errno == EINTR) continue;
      if (received <= 0) return;
      for (ssize_t sent = 0; sent < received;) {
        const ssize_t n = ::send(fd, buffer + sent, static_cast<std::size_t>(received - sent), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        sent += n;
      }
    }
  }

  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<int> connections_;  // touched by the acceptor only, then by the destructor after join
  std::vector<std::thread> workers_;
};

}  // namespace netpool::examples
