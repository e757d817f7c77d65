// bench/loopback_server.hpp — the accept/echo server every netpool_bench contender connects to.
//
//   bench::loopback_server server;                 // 127.0.0.1, ephemeral port, child process
//   netpool::tcp_dialer dial("127.0.0.1", server.port());
//   ... pooled connections sit idle; echo/… benchmarks send 64 bytes and read them back ...
//   server.wait_open_at_most(0, std::chrono::seconds(30));   // after closing a big pool
//   // ~loopback_server(): stops the child process and reaps it
//
// It runs in a child process forked by the constructor (construct it before any thread exists):
// a pool of 10 000 loopback connections then needs 10 000 descriptors on each side instead of
// 20 000 in one process, and the server's heap, context switches and descriptors stay out of the
// benchmark process's counters. The child is one epoll loop, level-triggered: it accepts, echoes
// whatever arrives, closes on EOF or error, keeps no per-connection state, and dies with its parent
// (PR_SET_PDEATHSIG). The destructor stops it through an eventfd and reaps it by pid.
// Binds 127.0.0.1 only (never any other address).
//
// Thread safety: port() and open_connections() from any thread; the rest from the owning thread.
// Errors: the constructor throws std::system_error if socket/bind/listen/epoll setup or fork fails.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace bench {

class loopback_server {
 public:
  loopback_server();
  ~loopback_server();
  loopback_server(const loopback_server&) = delete;
  loopback_server& operator=(const loopback_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  // Accepted connections not yet closed by the server (it closes its end when the client's FIN or
  // an error arrives).
  [[nodiscard]] std::size_t open_connections() const noexcept {
    return open_->load(std::memory_order_relaxed);
  }

  // Waits (polling every millisecond) until open_connections() <= n or the timeout passes.
  bool wait_open_at_most(std::size_t n, std::chrono::milliseconds timeout) const;

 private:
  [[noreturn]] void serve() noexcept;  // the child process
  void run() noexcept;
  void accept_all() noexcept;
  void echo(int fd) noexcept;
  void close_connection(int fd) noexcept;

  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int stop_fd_ = -1;  // eventfd: written by the destructor to end run()
  std::uint16_t port_ = 0;
  int child_ = -1;  // pid of the serving process
  // Accepted-and-open count, in a MAP_SHARED page: written by the child, read by the parent.
  std::atomic<std::size_t>* open_ = nullptr;
};

}  // namespace bench
