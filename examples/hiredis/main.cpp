// hiredis: a pool of hiredis connections (redisContext) to a real redis-server, with hooks.
//
//   netpool_example_hiredis [host=127.0.0.1] [port=6379]
//
// 4 threads share a pool of at most 3 connections; each does 100 SET/GET round trips in database 3
// (keys netpool:example:<thread>:<n>, which expire after 60 s). The pool's hooks: on_connect
// selects database 3 on every new connection (a refusal fails the dial), on_return pools a
// connection again only if hiredis still finds it usable, and on_close counts the connections the
// pool closes, by reason. Then one connection is broken on purpose (QUIT: redis closes it and the
// next command on it fails): giving it back is all it takes, on_return refuses it and the pool
// closes it. Exits 0 only if every GET read back what was SET and the broken connection was
// discarded and replaced. redis_connection.hpp, next to this file, is the connection type.
#include <netpool/netpool.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "redis_connection.hpp"

namespace {

using netpool::examples::redis_connection;
using netpool::examples::redis_dialer;
using netpool::examples::redis_reply;

constexpr unsigned thread_count = 4;
constexpr unsigned pairs_per_thread = 100;
constexpr long long database = 3;

// [README: hiredis pool]
// Connections closed by the pool, by reason (on_close).
using close_counts = std::array<std::atomic<std::uint64_t>, netpool::close_reason_count>;

netpool::pool_config<redis_connection> make_config(std::string host, std::uint16_t port, long long db,
                                                   close_counts& closes) {
  netpool::pool_config<redis_connection> cfg;
  // redisConnectWithTimeout bounded by the dial deadline; then every command by a 2 s timeout.
  cfg.factory = redis_dialer(std::move(host), port, std::chrono::seconds(2));
  cfg.max_size = 3;
  cfg.dial_timeout = std::chrono::seconds(2);
  // After each dial: SELECT db. An error reply fails the dial, and the get returns that error.
  cfg.on_connect = [db](redis_connection& c) { return c.select(db); };
  // On each put: a context hiredis has marked as failed (ctx->err) is closed, not pooled.
  cfg.on_return = [](redis_connection& c) { return c.usable(); };
  cfg.on_close = [&closes](redis_connection&, netpool::close_reason why) {
    closes[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
  };
  return cfg;
}
// [README end: hiredis pool]

// What went wrong with a command: the connection's error, or the reply redis sent instead.
std::string describe(const redis_connection& c, const redis_reply& reply) {
  if (!reply) return c.error().message();
  if (reply->type == REDIS_REPLY_ERROR) return std::string(reply->str, reply->len);
  return std::string("unexpected reply type ").append(std::to_string(reply->type));
}

void worker(netpool::pool<redis_connection>& pool, unsigned id, std::atomic<unsigned>& matched) {
  for (unsigned n = 0; n < pairs_per_thread; ++n) {
    auto conn = pool.get_for(std::chrono::seconds(5));
    if (!conn) {  // e.g. "dial failed: Connection refused": redis is not there
      std::fprintf(stderr, "thread %u: get: %s\n", id, conn.error().message().c_str());
      return;
    }
    const std::string key =
        std::string("netpool:example:").append(std::to_string(id)).append(":").append(std::to_string(n));
    const std::string value = std::string("value ").append(std::to_string(n));
    // A failed command leaves the context broken (ctx->err); the lease still goes back as usual,
    // and on_return refuses it.
    const redis_reply set = (*conn)->command("SET", key, value, "EX", "60");
    if (!set || set->type != REDIS_REPLY_STATUS) {
      std::fprintf(stderr, "thread %u: SET: %s\n", id, describe(**conn, set).c_str());
      continue;
    }
    const redis_reply got = (*conn)->command("GET", key);
    if (!got || got->type != REDIS_REPLY_STRING) {
      std::fprintf(stderr, "thread %u: GET: %s\n", id, describe(**conn, got).c_str());
      continue;
    }
    if (std::string_view(got->str, got->len) != value) {
      std::fprintf(stderr, "thread %u: GET %s: %.*s\n", id, key.c_str(), static_cast<int>(got->len),
                   got->str);
      continue;
    }
    matched.fetch_add(1, std::memory_order_relaxed);
  }  // each ~lease() returns its connection: on_return, then back to the pool
}

// QUIT: redis answers +OK and closes the connection, which hiredis learns only when the next
// command fails. Returning that lease is then enough: on_return sees ctx->err and refuses it.
bool break_one_connection(netpool::pool<redis_connection>& pool) {
  const std::uint64_t refused_before = pool.stats().closed_hook;
  {
    auto conn = pool.get_for(std::chrono::seconds(5));
    if (!conn) return false;
    const redis_reply quit = (*conn)->command("QUIT");
    const redis_reply ping = (*conn)->command("PING");
    if (ping) {
      std::fprintf(stderr, "PING after QUIT was answered\n");
      return false;
    }
    std::printf("PING after QUIT failed as it should: %s\n", (*conn)->error().message().c_str());
  }  // ~lease(): on_return says false, the pool closes it (close_reason::hook)
  if (pool.stats().closed_hook != refused_before + 1) {
    std::fprintf(stderr, "the broken connection was not refused by on_return\n");
    return false;
  }
  auto conn = pool.get_for(std::chrono::seconds(5));  // a pooled connection, or a fresh dial
  const redis_reply pong = conn ? (*conn)->command("PING") : redis_reply();
  return pong && pong->type == REDIS_REPLY_STATUS && std::string_view(pong->str, pong->len) == "PONG";
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
    std::fprintf(stderr, "hiredis: bad port \"%s\"\n", argv[2]);
    return 2;
  }
  // hiredis writes with write(2): on a connection redis has closed, that would raise SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);

  close_counts closes{};
  auto pool = netpool::pool<redis_connection>::create(
      make_config(host, static_cast<std::uint16_t>(port), database, closes));
  if (!pool) {
    std::fprintf(stderr, "hiredis: create: %s\n", pool.error().message().c_str());
    return 1;
  }

  std::atomic<unsigned> matched{0};
  {
    std::vector<std::jthread> threads;
    for (unsigned id = 0; id < thread_count; ++id) {
      threads.emplace_back([&pool, &matched, id] { worker(*pool, id, matched); });
    }
  }  // joins every thread
  const bool discarded = break_one_connection(*pool);

  pool->close();  // closes the idle connections: on_close (close_reason::pool_closed)
  const netpool::pool_stats s = pool->stats();
  const unsigned expected = thread_count * pairs_per_thread;
  std::printf(
      "hiredis %s:%lu db %lld: %u/%u SET/GET matched; gets %llu (waited %llu), dials %llu (ok %llu, failed "
      "%llu)\n",
      host.c_str(), port, database, matched.load(), expected, static_cast<unsigned long long>(s.gets),
      static_cast<unsigned long long>(s.gets_waited), static_cast<unsigned long long>(s.dials),
      static_cast<unsigned long long>(s.dials_ok), static_cast<unsigned long long>(s.dial_failures));
  std::printf("on_close:");
  for (std::size_t r = 0; r < netpool::close_reason_count; ++r) {
    if (const std::uint64_t n = closes[r].load(std::memory_order_relaxed); n != 0) {
      std::printf(" %s %llu", netpool::to_string(static_cast<netpool::close_reason>(r)),
                  static_cast<unsigned long long>(n));
    }
  }
  std::printf("\n");
  return matched.load() == expected && discarded ? 0 : 1;
}
