// netpool::socket (the default connection) pooled against a private redis-server on a free
// loopback port, started and stopped by pid (tests/support's redis_server): the raw RESP a user
// writes without a client library, with the socket's I/O deadlines. Skips without redis-server.
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <netpool/netpool.hpp>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// Reads `size` bytes by `deadline` and returns them; empty, with `ec` set, if they did not all come.
std::string read_reply(netpool::socket& s, std::size_t size, steady::time_point deadline,
                       std::error_code& ec) {
  std::string out(size, '\0');
  ec = s.recv_all(out.data(), size, deadline);
  if (ec) out.clear();
  return out;
}

TEST(RedisSocketDeadlineTest, ACommandThatBlocksOnTheServerTimesOutAndItsConnectionIsReplaced) {
  if (!netpool::test::redis_server::available()) GTEST_SKIP() << "redis-server is not installed";
  netpool::test::redis_server redis;
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer("127.0.0.1", redis.port());
  cfg.max_size = 1;
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();

  {
    auto conn = pool.get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    // BLPOP on an empty list: redis answers only after its own 5 s timeout (a nil array).
    const std::string_view blpop = "*3\r\n$5\r\nBLPOP\r\n$12\r\nno-such-list\r\n$1\r\n5\r\n";
    ASSERT_FALSE((*conn)->send_all(blpop, steady::now() + 10s));
    const auto start = steady::now();
    std::error_code ec;
    const std::string reply = read_reply(**conn, 1, start + 200ms, ec);
    EXPECT_EQ(reply, "") << "redis answered BLPOP early";
    EXPECT_EQ(ec, netpool::errc::io_timeout) << ec.message();
    EXPECT_GE(steady::now() - start, 200ms);
    // Its reply would still come, out of turn for the next borrower: discard it.
    EXPECT_FALSE(conn->discard());
  }

  // The slot is free: the next get dials a fresh connection, whose first reply is its own.
  auto next = pool.get_for(10s);
  ASSERT_TRUE(next) << next.error().message();
  const auto deadline = steady::now() + 10s;
  ASSERT_FALSE((*next)->send_all("*1\r\n$4\r\nPING\r\n", deadline));
  std::error_code ec;
  EXPECT_EQ(read_reply(**next, 7, deadline, ec), "+PONG\r\n");
  EXPECT_FALSE(ec) << ec.message();
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.dials, 2u);
  EXPECT_EQ(s.closed_error, 1u);
}

}  // namespace
