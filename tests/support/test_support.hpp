// test_support.hpp — loopback servers and helpers for netpool's tests (library netpool_test_support).
//
//   netpool::test::echo_server server;                        // 127.0.0.1, ephemeral port, echoes
//   netpool::tcp_dialer dial("127.0.0.1", server.port());
//   auto s = dial(std::chrono::steady_clock::now() + std::chrono::seconds(5));
//   ASSERT_TRUE(netpool::test::wait_for([&] { return server.connection_count() == 1; }));
//   server.restart();                                         // same port, every connection closed
//
//   netpool::test::full_backlog_listener stuck;               // connects to stuck.port() hang
//   netpool::test::refused_port refused;                      // connects to refused.port() are refused
//   const std::size_t fds = netpool::test::open_fd_count();   // for leak checks
//
// The servers are independent of the library under test (plain POSIX sockets), bind only to
// loopback (127.0.0.1 by default, another 127.0.0.0/8 address on request, or ::1) and run a
// bounded number of threads: one event loop per echo server.
// Setup failures throw std::system_error / std::runtime_error (GoogleTest reports them).
// Thread safety: every public member function of the servers may be called from any thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace netpool::test {

// What a server does with each connection it accepts.
enum class server_mode {
  echo,             // sends back every byte it receives
  close_on_accept,  // accepts, then closes at once (the client sees EOF)
  reset_on_accept,  // accepts, then closes with SO_LINGER 0 (the client sees ECONNRESET)
  silent,           // accepts and reads, never answers (a stalled backend)
};

// How a server closes the connections it holds.
enum class close_style {
  fin,    // orderly close(): the client reads EOF
  reset,  // SO_LINGER 0 then close(): the client gets ECONNRESET
};

struct echo_server_options {
  server_mode mode = server_mode::echo;
  bool ipv6 = false;  // listen on ::1 instead of 127.0.0.1
  int backlog = 128;
  // The IPv4 address to listen on (ignored when ipv6). Must be in 127.0.0.0/8 (the constructor
  // throws std::invalid_argument otherwise): 127.0.0.2, 127.0.0.3 ... give tests several distinct
  // loopback hosts, e.g. one per shard of a keyed pool.
  std::string ipv4_address = "127.0.0.1";
};

namespace detail {
// Counters and settings shared between a server object and its event loop thread.
struct server_state {
  static constexpr std::size_t not_parked = static_cast<std::size_t>(-1);
  std::atomic<std::size_t> open{0};        // connections the loop holds
  std::atomic<std::uint64_t> accepted{0};  // connections ever accepted (across restarts)
  std::atomic<server_mode> mode{server_mode::echo};
  // While the loop is blocked in poll(): how many connections it watches; not_parked otherwise.
  std::atomic<std::size_t> parked{not_parked};
};
class server_loop;  // one poll() thread serving one listener (echo_server.cpp)
}  // namespace detail

// A TCP server on loopback with an ephemeral port, served by one poll() thread.
class echo_server {
 public:
  echo_server();
  explicit echo_server(server_mode mode);
  explicit echo_server(echo_server_options options);
  ~echo_server();
  echo_server(const echo_server&) = delete;
  echo_server& operator=(const echo_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // options.ipv4_address ("127.0.0.1" by default) or "::1".
  [[nodiscard]] const char* host() const noexcept {
    return options_.ipv6 ? "::1" : options_.ipv4_address.c_str();
  }

  // Server-side connections currently open (decreases when the server notices a client's close).
  [[nodiscard]] std::size_t connection_count() const noexcept;
  // Connections accepted since construction (across restarts), including those closed on accept.
  [[nodiscard]] std::uint64_t accepted_total() const noexcept;
  // True while the event loop is blocked in poll() watching exactly `connections` connections: it
  // has done its work for them (its allocations included) and runs no code until something
  // happens on a socket or a command arrives. Once accepted_total() has reached n, it reflects
  // all n: parked_with(0) then means the server has seen every one of them close (a condition
  // connection_count() == 0 cannot give: it is briefly 0 while an accepted connection is being
  // added). The allocation-counting tests, whose counter is process-wide, wait for it too.
  [[nodiscard]] bool parked_with(std::size_t connections) const noexcept;

  // Changes what happens to connections accepted from now on, and whether open ones are echoed
  // (echo <-> silent).
  void set_mode(server_mode mode);

  // Closes the listener and every connection, joins the thread. Idempotent; the destructor calls it.
  void stop(close_style style = close_style::fin);
  // stop(style), then listens again on the same port (SO_REUSEADDR).
  void restart(close_style style = close_style::fin);
  // Closes every accepted connection from the server side, keeping the listener. Returns once done.
  void close_all_connections(close_style style = close_style::fin);
  // Queues `bytes` for every open connection (unsolicited data). Returns once queued.
  void send_to_all(std::string bytes);

 private:
  void start();  // control_ held

  echo_server_options options_;
  std::uint16_t port_ = 0;
  detail::server_state state_;
  mutable std::mutex control_;  // serialises stop/restart/commands against the replacement of loop_
  std::unique_ptr<detail::server_loop> loop_;
};

// The same server on a Unix-domain stream socket, at a path in a private temporary directory that
// the destructor removes.
class unix_echo_server {
 public:
  explicit unix_echo_server(server_mode mode = server_mode::echo);
  ~unix_echo_server();
  unix_echo_server(const unix_echo_server&) = delete;
  unix_echo_server& operator=(const unix_echo_server&) = delete;

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::size_t connection_count() const noexcept;
  [[nodiscard]] std::uint64_t accepted_total() const noexcept;
  [[nodiscard]] bool parked_with(std::size_t connections) const noexcept;
  void set_mode(server_mode mode);
  void stop(close_style style = close_style::fin);
  void restart(close_style style = close_style::fin);
  void close_all_connections(close_style style = close_style::fin);
  void send_to_all(std::string bytes);

 private:
  void start();  // control_ held

  std::string dir_;
  std::string path_;
  detail::server_state state_;
  mutable std::mutex control_;
  std::unique_ptr<detail::server_loop> loop_;
};

// A loopback listener that never accepts and whose accept queue is full, so that a new connect()
// to port() stays in SYN_SENT (the kernel drops its SYNs) until the client gives up: a dial to it
// ends with the dial deadline. How: listen(fd, 0) lets Linux queue exactly one connection
// (it counts "full" as queued > backlog); the constructor connects filler sockets, each waited for
// until it completes, until one does not complete within a grace period: that proves the queue is
// full on this kernel. Throws if the queue never fills.
class full_backlog_listener {
 public:
  full_backlog_listener();
  ~full_backlog_listener();
  full_backlog_listener(const full_backlog_listener&) = delete;
  full_backlog_listener& operator=(const full_backlog_listener&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // Number of filler connections it took to fill the queue (1 with backlog 0 on Linux, checked on 6.18).
  [[nodiscard]] std::size_t filler_count() const noexcept { return fillers_.size(); }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> fillers_;
};

// A 127.0.0.1 port with a bound but not listening socket: connecting to it gets ECONNREFUSED, and
// no one else can bind it (nor pick it as an ephemeral port) while this object lives.
class refused_port {
 public:
  refused_port();
  ~refused_port();
  refused_port(const refused_port&) = delete;
  refused_port& operator=(const refused_port&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// Descriptors open in this process (entries of /proc/self/fd, not counting the one used to read it).
[[nodiscard]] std::size_t open_fd_count();
// Sockets among them. For leak checks taken while other threads start up: a sanitizer runtime or
// libc may hold a file or pipe open for a moment then, which a count of all descriptors takes in.
[[nodiscard]] std::size_t open_socket_count();

// Polls `pred` every few milliseconds until it returns true (-> true) or `timeout` passes (-> false).
// Deadlines are generous by default: the tests run on busy 2-core machines.
template <class Pred>
[[nodiscard]] bool wait_for(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Debian's /usr/bin/redis-server on a free 127.0.0.1 port, started with fork+exec and stopped by
// SIGTERM to its own pid (never by name). No persistence; its working directory is a private
// temporary directory removed by the destructor. Tests call GTEST_SKIP() when !available().
class redis_server {
 public:
  static constexpr const char* binary = "/usr/bin/redis-server";
  [[nodiscard]] static bool available();

  // Starts the server and waits until it answers PING (throws if it does not within 10 s).
  redis_server();
  // The same, with `--requirepass password`: every connection must AUTH before its commands.
  explicit redis_server(std::string password);
  ~redis_server();
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] bool running() const noexcept { return pid_ > 0; }

  // SIGTERM, then waitpid (SIGKILL after 10 s). Idempotent; the destructor calls it.
  void stop();
  // Starts again on the same port (after stop()); waits for PING as the constructor does.
  void start();

 private:
  void spawn_and_wait();

  std::string dir_;
  std::string password_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace netpool::test
