// netpool in a nutshell: borrow a pooled TCP connection, send "hello", read the echo, give it back.
#include <netpool/netpool.hpp>

#include <chrono>
#include <cstddef>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "loopback_echo.hpp"  // a tiny echo server on 127.0.0.1, so that the example runs anywhere

int main() {
  netpool::examples::loopback_echo_server server;

  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer("127.0.0.1", server.port());  // how to open a connection
  cfg.max_size = 4;                                               // at most 4 open at once
  cfg.dial_timeout = std::chrono::seconds(1);
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg));
  if (!pool) {
    std::cerr << "create: " << pool.error().message() << '\n';  // errc::invalid_config
    return 1;
  }

  // An idle connection, or a fresh dial (on this thread: 2 s is longer than the dial timeout) if
  // none is idle; waits at most 2 s while all 4 are busy.
  auto conn = pool->get_for(std::chrono::seconds(2));
  if (!conn) {
    std::cerr << "get: " << conn.error().message() << '\n';  // timeout, dial failure, ...
    return 1;
  }

  constexpr std::string_view request = "hello";
  std::string reply(request.size(), '\0');
  // A backend that stops answering must not hold this thread: the exchange gets 1 s in all.
  const auto io_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::error_code ec = (*conn)->send_all(request, io_deadline);              // never raises SIGPIPE
  if (!ec) ec = (*conn)->recv_all(reply.data(), reply.size(), io_deadline);  // all of it, or an error
  if (ec || reply != request) {
    conn->discard();  // broken, timed out or out of sync: close it and free its slot
    std::cerr << "echo failed: " << (ec ? ec.message() : reply) << '\n';
    return 1;
  }
  conn->release();  // back to the pool for the next get (~lease() would do the same)

  const netpool::pool_stats s = pool->stats();
  std::cout << "echoed \"" << reply << "\"; open " << s.active << ", idle " << s.idle << ", in use "
            << s.in_use << "; gets " << s.gets << ", dials " << s.dials << '\n';
}
