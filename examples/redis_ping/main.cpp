// redis_ping: pooled connections to a real redis-server, checked before each use.
//
//   netpool_example_redis_ping [host=127.0.0.1] [port=6379]
//
// 4 threads share a pool of at most 4 connections and each sends 100 PINGs, expecting +PONG. A
// health check (socket::probe(), a non-blocking peek: no round trip) runs on every idle connection
// before it is handed out, so one that redis closed meanwhile (timeout, restart, CLIENT KILL) is
// replaced by a fresh dial instead of failing the request. Each PING must be answered within 5 s
// (the socket's I/O deadline); a connection that fails or times out mid-request is discarded.
// Exits 0 only if all 400 PINGs were answered with +PONG.
#include <netpool/netpool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr unsigned thread_count = 4;
constexpr unsigned pings_per_thread = 100;

// Reads one RESP line ("+PONG\r\n", "-ERR ...\r\n") by `deadline` (else errc::io_timeout). Bounded: a
// reply this long is not a PONG.
std::error_code read_line(netpool::socket& s, std::string& line,
                          std::chrono::steady_clock::time_point deadline) {
  line.clear();
  char buffer[256];
  while (line.size() < 2 || line.compare(line.size() - 2, 2, "\r\n") != 0) {
    if (line.size() >= 512) return std::make_error_code(std::errc::message_size);
    netpool::result<std::size_t> n = s.recv(buffer, sizeof buffer, deadline);
    if (!n) return n.error();
    if (*n == 0) return netpool::errc::end_of_stream;  // redis closed it
    line.append(buffer, *n);
  }
  return {};
}

void pinger(netpool::pool<netpool::socket>& pool, unsigned id, std::atomic<unsigned>& pongs) {
  std::string reply;
  for (unsigned i = 0; i < pings_per_thread; ++i) {
    auto conn = pool.get_for(std::chrono::seconds(5));
    if (!conn) {  // e.g. "dial failed: Connection refused": redis is not there
      std::fprintf(stderr, "thread %u: get: %s\n", id, conn.error().message().c_str());
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::error_code ec = (*conn)->send_all("PING\r\n", deadline);
    if (!ec) ec = read_line(**conn, reply, deadline);
    if (ec) {
      std::fprintf(stderr, "thread %u: PING: %s\n", id, ec.message().c_str());
      conn->discard();  // its state is unknown: close it and free the slot for a fresh dial
      continue;
    }
    if (reply != "+PONG\r\n") {  // e.g. -NOAUTH: redis wants a password
      std::fprintf(stderr, "thread %u: unexpected reply: %s", id, reply.c_str());
      conn->discard();
      continue;
    }
    pongs.fetch_add(1, std::memory_order_relaxed);
  }  // each ~lease() returns its connection to the pool
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 3) {
    std::fprintf(stderr, "usage: %s [host=127.0.0.1] [port=6379]\n", argv[0]);
    return 2;
  }
  const std::string host = argc > 1 ? argv[1] : "127.0.0.1";
  char* end = nullptr;
  const unsigned long port = argc > 2 ? std::strtoul(argv[2], &end, 10) : 6379;
  if (port == 0 || port > 65535 || (end != nullptr && *end != '\0')) {
    std::fprintf(stderr, "redis_ping: bad port \"%s\"\n", argv[2]);
    return 2;
  }

  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer(host, static_cast<std::uint16_t>(port));
  cfg.max_size = 4;
  cfg.dial_timeout = std::chrono::seconds(2);
  cfg.health_check = [](netpool::socket& s) { return s.probe() == netpool::liveness::alive; };
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg));
  if (!pool) {
    std::fprintf(stderr, "redis_ping: create: %s\n", pool.error().message().c_str());
    return 1;
  }

  std::atomic<unsigned> pongs{0};
  {
    std::vector<std::jthread> threads;
    for (unsigned id = 0; id < thread_count; ++id) {
      threads.emplace_back([&pool, &pongs, id] { pinger(*pool, id, pongs); });
    }
  }  // joins every thread

  const netpool::pool_stats s = pool->stats();
  const unsigned expected = thread_count * pings_per_thread;
  std::printf(
      "redis_ping %s:%lu: %u/%u PONG; gets %llu (waited %llu), dials %llu (failed %llu), "
      "closed by health check %llu, discarded %llu\n",
      host.c_str(), port, pongs.load(), expected, static_cast<unsigned long long>(s.gets),
      static_cast<unsigned long long>(s.gets_waited), static_cast<unsigned long long>(s.dials),
      static_cast<unsigned long long>(s.dial_failures), static_cast<unsigned long long>(s.closed_health),
      static_cast<unsigned long long>(s.closed_error));
  return pongs.load() == expected ? 0 : 1;
}
