// netpool::socket (the default connection) pooled against a private redis-server on a free
// loopback port, started and stopped by pid (tests/support's redis_server): the raw RESP a user
// writes without a client library, with the socket's I/O deadlines, AUTH in on_connect and a PING
// health check. Skips without redis-server.
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

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

// on_connect's job in practice: AUTH on each new connection to a redis that wants a password,
// its I/O bounded by the dial's deadline (the two-argument hook). A reply other than +OK refuses
// the connection, and the dial fails with permission_denied.
netpool::connect_hook<netpool::socket> authenticate(const std::string& password) {
  std::string auth = "*2\r\n$4\r\nAUTH\r\n$";  // appended, not concatenated: g++ 12 -O3 -Wrestrict
  auth += std::to_string(password.size());
  auth += "\r\n";
  auth += password;
  auth += "\r\n";
  return [auth](netpool::socket& s, steady::time_point deadline) -> std::error_code {
    if (std::error_code ec = s.send_all(auth, deadline)) return ec;
    char reply[5];  // "+OK\r\n", or the first bytes of -WRONGPASS...
    if (std::error_code ec = s.recv_all(reply, sizeof reply, deadline)) return ec;
    if (std::string_view(reply, sizeof reply) != "+OK\r\n") {
      return std::make_error_code(std::errc::permission_denied);
    }
    return {};
  };
}

std::string ping(netpool::socket& s) {
  const auto deadline = steady::now() + 10s;
  std::error_code ec = s.send_all("*1\r\n$4\r\nPING\r\n", deadline);
  std::string reply(7, '\0');  // +PONG\r\n, or the first bytes of -NOAUTH ...
  if (!ec) ec = s.recv_all(reply.data(), reply.size(), deadline);
  return ec ? ec.message() : reply;
}

// A pool of plain sockets to `redis` whose on_connect sends AUTH with `password`.
netpool::pool<netpool::socket> authenticating_pool(const netpool::test::redis_server& redis,
                                                   const std::string& password, std::size_t max_size) {
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer("127.0.0.1", redis.port());
  cfg.max_size = max_size;
  cfg.on_connect = authenticate(password);
  return netpool::pool<netpool::socket>::create(std::move(cfg)).value();
}

TEST(RedisAuthTest, OnConnectAuthenticatesEveryNewConnection) {
  if (!netpool::test::redis_server::available()) GTEST_SKIP() << "redis-server is not installed";
  netpool::test::redis_server redis("s3cret-pass");
  auto pool = authenticating_pool(redis, "s3cret-pass", 2);
  {
    auto a = pool.get_for(10s);
    auto b = pool.get_for(10s);  // two connections at once: each dialed and authenticated
    ASSERT_TRUE(a && b) << (a ? b.error().message() : a.error().message());
    EXPECT_EQ(ping(**a), "+PONG\r\n");
    EXPECT_EQ(ping(**b), "+PONG\r\n");
  }
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.dials_ok, 2u);
  EXPECT_EQ(s.dial_failures, 0u);

  // Without the hook the same server refuses the command: the AUTH above is what let PING in.
  auto bare = netpool::tcp_dialer("127.0.0.1", redis.port())(steady::now() + 10s);
  ASSERT_TRUE(bare) << bare.error().message();
  EXPECT_EQ(ping(*bare), "-NOAUTH");
}

TEST(RedisAuthTest, AWrongPasswordFailsTheDialAndClosesTheConnection) {
  if (!netpool::test::redis_server::available()) GTEST_SKIP() << "redis-server is not installed";
  netpool::test::redis_server redis("s3cret-pass");
  auto pool = authenticating_pool(redis, "wrong", 1);
  auto got = pool.get_for(10s);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), std::errc::permission_denied) << got.error().message();
  EXPECT_EQ(pool.last_dial_error(), std::errc::permission_denied);
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.dial_failures, 1u);
  EXPECT_EQ(s.closed_hook, 1u);
  EXPECT_EQ(s.active, 0u);
}

// health_check's job in practice: PING before a borrow, bounded by the deadline the pool gives it
// (health_check_timeout). A redis that stops answering (CLIENT PAUSE, as a server stalled by a slow
// command or a failover would) fails the check at that deadline: the stalled connection is closed
// and the get goes on with a fresh dial, long before the server answers again.
TEST(RedisHealthCheckTest, APingCheckBoundedByHealthCheckTimeoutReplacesAStalledConnection) {
  if (!netpool::test::redis_server::available()) GTEST_SKIP() << "redis-server is not installed";
  netpool::test::redis_server redis;
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer("127.0.0.1", redis.port());
  cfg.max_size = 2;
  cfg.health_check_timeout = 300ms;
  // Each check's deadline, and when it ended. Checks run on the getting thread (this one) only.
  std::vector<std::pair<steady::time_point, steady::time_point>> checks;
  cfg.health_check = [&checks](netpool::socket& s, steady::time_point deadline) {
    std::error_code ec = s.send_all("*1\r\n$4\r\nPING\r\n", deadline);
    const std::string reply = ec ? std::string() : read_reply(s, 7, deadline, ec);
    checks.emplace_back(deadline, steady::now());
    return reply == "+PONG\r\n";
  };
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
  {
    auto fresh = pool.get_for(10s);  // dialed now: not checked
    ASSERT_TRUE(fresh) << fresh.error().message();
  }
  {
    auto checked = pool.get_for(10s);
    ASSERT_TRUE(checked) << checked.error().message();
    ASSERT_EQ(checks.size(), 1u);
    EXPECT_EQ(ping(**checked), "+PONG\r\n");
  }

  // Another client pauses every client's commands for 5 s (CLIENT PAUSE's default, ALL since redis
  // 6.2); the pooled connection's PING waits.
  auto admin = netpool::tcp_dialer("127.0.0.1", redis.port())(steady::now() + 10s);
  ASSERT_TRUE(admin) << admin.error().message();
  const steady::time_point paused_at = steady::now();
  ASSERT_FALSE(admin->send_all("*3\r\n$6\r\nCLIENT\r\n$5\r\nPAUSE\r\n$4\r\n5000\r\n", paused_at + 10s));
  std::error_code ec;
  ASSERT_EQ(read_reply(*admin, 5, paused_at + 10s, ec), "+OK\r\n") << ec.message();

  auto replaced = pool.get_for(10s);
  const steady::duration waited = steady::now() - paused_at;
  ASSERT_TRUE(replaced) << replaced.error().message();
  ASSERT_EQ(checks.size(), 2u);
  EXPECT_GE(checks[1].first, paused_at + 300ms);
  EXPECT_GE(checks[1].second, checks[1].first) << "the check gave up before its deadline";
  EXPECT_LT(waited, 4s) << "the check waited for the pause to end, not for health_check_timeout";
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.closed_health, 1u);
  EXPECT_EQ(s.dials, 2u);
  // The fresh connection's first reply is its own, once the pause is over.
  EXPECT_EQ(ping(**replaced), "+PONG\r\n");
}

}  // namespace
