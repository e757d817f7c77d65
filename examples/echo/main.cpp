// echo: many threads share one pool of connections to an embedded loopback echo server.
//
//   netpool_example_echo [threads=8] [requests_per_thread=2000]
//
// Each thread does request/response round trips on a borrowed connection, checks every echo, and
// returns the connection (or discards it on an I/O error). The pool allows 4 connections, so with
// more threads than that most gets wait for a connection another thread returns. Exits 0 only if
// every echo matched and the pool's counters agree with what the threads did.
#include <netpool/netpool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <thread>
#include <vector>

#include "loopback_echo.hpp"

namespace {

constexpr std::size_t pool_max = 4;

// A positive count from argv (bounded, so that a typo cannot start an endless run).
std::uint64_t parse_count(const char* text, std::uint64_t max) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || value == 0 || value > max) {
    std::fprintf(stderr, "echo: expected a count in [1, %llu], got \"%s\"\n",
                 static_cast<unsigned long long>(max), text);
    std::exit(2);
  }
  return value;
}

struct tally {
  std::atomic<std::uint64_t> ok{0};
  std::atomic<std::uint64_t> get_errors{0};
  std::atomic<std::uint64_t> io_errors{0};
  std::atomic<std::uint64_t> mismatches{0};
};

void client(netpool::pool<netpool::socket>& pool, unsigned id, std::uint64_t requests, tally& t) {
  char request[64];
  char reply[64];
  for (std::uint64_t i = 0; i < requests; ++i) {
    // Waiting is expected (more threads than connections); 5 s without one means something is wrong.
    auto conn = pool.get_for(std::chrono::seconds(5));
    if (!conn) {
      std::fprintf(stderr, "thread %u: get: %s\n", id, conn.error().message().c_str());
      t.get_errors.fetch_add(1, std::memory_order_relaxed);
      return;  // the counts will show the requests never made
    }
    // Unique per thread and request, so that a reply meant for another borrower cannot pass.
    const int length = std::snprintf(request, sizeof request, "thread %u request %llu\n", id,
                                     static_cast<unsigned long long>(i));
    const std::string_view sent(request, static_cast<std::size_t>(length));
    // A server that stops answering fails the request instead of hanging the thread.
    const auto io_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::error_code ec = (*conn)->send_all(sent, io_deadline);
    if (!ec) ec = (*conn)->recv_all(reply, sent.size(), io_deadline);  // or end_of_stream, io_timeout
    if (ec) {
      std::fprintf(stderr, "thread %u: request %llu: %s\n", id, static_cast<unsigned long long>(i),
                   ec.message().c_str());
      t.io_errors.fetch_add(1, std::memory_order_relaxed);
      conn->discard();  // its state is unknown: close it; the slot is free for a fresh dial
      continue;
    }
    if (std::string_view(reply, sent.size()) != sent) {
      t.mismatches.fetch_add(1, std::memory_order_relaxed);
      conn->discard();  // out of sync with the server: never hand it to anyone else
      continue;
    }
    t.ok.fetch_add(1, std::memory_order_relaxed);
    // ~lease() returns the connection to the pool here, for the next get of any thread.
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 3) {
    std::fprintf(stderr, "usage: %s [threads=8] [requests_per_thread=2000]\n", argv[0]);
    return 2;
  }
  const auto threads = static_cast<unsigned>(argc > 1 ? parse_count(argv[1], 256) : 8);
  const std::uint64_t requests = argc > 2 ? parse_count(argv[2], 1'000'000) : 2000;

  netpool::examples::loopback_echo_server server;

  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer("127.0.0.1", server.port());
  cfg.max_size = pool_max;
  cfg.dial_timeout = std::chrono::seconds(2);
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg));
  if (!pool) {
    std::fprintf(stderr, "echo: create: %s\n", pool.error().message().c_str());
    return 1;
  }

  tally t;
  const auto start = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> clients;
    clients.reserve(threads);
    for (unsigned id = 0; id < threads; ++id) {
      clients.emplace_back([&pool, &t, id, requests] { client(*pool, id, requests, t); });
    }
  }  // joins every client
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;

  const netpool::pool_stats s = pool->stats();
  const std::uint64_t expected = threads * requests;
  const std::uint64_t discards = t.io_errors.load() + t.mismatches.load();
  std::printf("echo: %u threads x %llu requests over %zu connections: %llu ok in %.3f s (%.0f requests/s)\n",
              threads, static_cast<unsigned long long>(requests), pool_max,
              static_cast<unsigned long long>(t.ok.load()), elapsed.count(),
              static_cast<double>(t.ok.load()) / elapsed.count());
  std::printf(
      "stats: gets %llu, gets_waited %llu (%.3f ms waiting in total), dials %llu, dial_failures %llu,\n"
      "       closed_error %llu; now active %zu, idle %zu, in_use %zu, waiters %zu\n",
      static_cast<unsigned long long>(s.gets), static_cast<unsigned long long>(s.gets_waited),
      std::chrono::duration<double, std::milli>(s.wait_time).count(),
      static_cast<unsigned long long>(s.dials), static_cast<unsigned long long>(s.dial_failures),
      static_cast<unsigned long long>(s.closed_error), s.active, s.idle, s.in_use, s.waiters);

  // What must hold once every thread is done. Each check names what would be wrong.
  bool ok = true;
  const auto check = [&ok](bool holds, const char* what) {
    if (!holds) {
      std::fprintf(stderr, "echo: FAILED: %s\n", what);
      ok = false;
    }
  };
  check(t.ok.load() == expected, "every request got its own echo back");
  check(t.mismatches.load() == 0, "no reply was meant for another request");
  check(t.get_errors.load() == 0 && t.io_errors.load() == 0, "no get or I/O error");
  check(s.gets == expected, "stats.gets counts every connection handed out");
  check(s.closed_error == discards, "stats.closed_error counts every discard");
  check(s.dials - s.dial_failures <= pool_max + discards, "connections are reused, not redialed");
  check(s.in_use == 0 && s.waiters == 0, "nothing is lent out or waiting once all threads are done");
  check(s.active <= pool_max, "never more than max_size connections open");
  check(s.active == s.idle + s.in_use + s.dialing, "every open connection is idle once all threads are done");
  return ok ? 0 : 1;
}
