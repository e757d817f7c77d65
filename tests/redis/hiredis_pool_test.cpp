// A real client library's connections in the pool: hiredis redisContexts (the connection type of
// examples/hiredis, redis_connection.hpp) against a private redis-server on a free loopback port,
// started and stopped by pid (tests/support's redis_server). What is checked: on_connect's SELECT
// puts every pooled command in the right database, on_return keeps a context hiredis has marked
// failed out of the pool, an error reply to on_connect fails the dial without leaking a descriptor,
// and the pool recovers from a restarted server. The tests skip themselves without redis-server.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <netpool/netpool.hpp>

#include "redis_connection.hpp"
#include "test_support.hpp"

namespace {

// Built by appending: g++ 12 -O3 warns (-Wrestrict, a known false positive) on "literal" + string.
std::string key_of(unsigned thread, unsigned n) {
  std::string key = "k:";
  key.append(std::to_string(thread)).append(":").append(std::to_string(n));
  return key;
}
std::string value_of(unsigned thread, unsigned n) {
  std::string value = "v";
  value.append(std::to_string(thread * 1000 + n));
  return value;
}

using namespace std::chrono_literals;
using netpool::close_reason;
using netpool::examples::redis_connection;
using netpool::examples::redis_dialer;
using netpool::examples::redis_reply;
using netpool::test::wait_for;

constexpr long long pooled_db = 3;

std::string_view text(const redis_reply& r) {
  return (r &&
          (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR))
             ? std::string_view(r->str, r->len)
             : std::string_view("<no string reply>");
}

long long integer(const redis_reply& r) {
  return (r && r->type == REDIS_REPLY_INTEGER) ? r->integer : -1;
}

class HiredisPoolTest : public ::testing::Test {
 protected:
  // hiredis writes with write(2); a write to a connection redis has closed must not kill the test.
  static void SetUpTestSuite() { std::signal(SIGPIPE, SIG_IGN); }

  void SetUp() override {
    if (!netpool::test::redis_server::available()) GTEST_SKIP() << "redis-server is not installed";
    redis_.emplace();
  }

  [[nodiscard]] std::uint16_t port() const { return redis_->port(); }

  // The example's configuration: SELECT db on connect, usable() on return, closes counted.
  netpool::pool_config<redis_connection> config(long long db, std::size_t max_size,
                                                std::chrono::nanoseconds command_timeout = 5s) {
    netpool::pool_config<redis_connection> cfg;
    cfg.factory = redis_dialer("127.0.0.1", port(), command_timeout);
    cfg.max_size = max_size;
    cfg.dial_timeout = 5s;
    cfg.on_connect = [db](redis_connection& c) { return c.select(db); };
    cfg.on_return = [](redis_connection& c) { return c.usable(); };
    cfg.on_close = [this](redis_connection& c, close_reason why) {
      EXPECT_TRUE(static_cast<bool>(c)) << "on_close got an empty connection";
      closes_[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
    };
    return cfg;
  }

  [[nodiscard]] std::uint64_t closes(close_reason why) const {
    return closes_[static_cast<std::size_t>(why)].load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t all_closes() const {
    std::uint64_t n = 0;
    for (const auto& c : closes_) n += c.load(std::memory_order_relaxed);
    return n;
  }

  // A context outside the pool, to look at what the pooled ones did.
  redis_connection observer(long long db) {
    netpool::result<redis_connection> c =
        redis_dialer("127.0.0.1", port(), 5s)(std::chrono::steady_clock::now() + 5s);
    if (!c) {
      ADD_FAILURE() << "observer connection: " << c.error().message();
      return {};
    }
    if (const std::error_code ec = c->select(db))
      ADD_FAILURE() << "observer SELECT " << db << ": " << ec.message();
    return std::move(*c);
  }

  // connected_clients from INFO clients: what the server thinks is open.
  long long connected_clients() {
    redis_connection c = observer(0);
    if (!c) return -1;
    const redis_reply info = c.command("INFO", "clients");
    const std::string_view s = text(info);
    const std::string_view field = "connected_clients:";
    const auto at = s.find(field);
    if (at == std::string_view::npos) return -1;
    return std::stoll(std::string(s.substr(at + field.size(), s.find('\r', at) - at - field.size()))) -
           1;  // not counting the observer itself
  }

  std::optional<netpool::test::redis_server> redis_;
  std::array<std::atomic<std::uint64_t>, netpool::close_reason_count> closes_{};
};

TEST_F(HiredisPoolTest, SetGetAcrossThreadsLandInTheDatabaseOnConnectSelected) {
  constexpr unsigned threads = 4;
  constexpr unsigned pairs = 200;
  auto pool = netpool::pool<redis_connection>::create(config(pooled_db, 3));
  ASSERT_TRUE(pool) << pool.error().message();

  std::atomic<unsigned> matched{0};
  std::atomic<unsigned> failures{0};
  {
    std::vector<std::jthread> workers;
    for (unsigned t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (unsigned n = 0; n < pairs; ++n) {
          auto conn = pool->get_for(10s);
          if (!conn) {
            ADD_FAILURE() << "get: " << conn.error().message();
            failures.fetch_add(1);
            return;
          }
          const std::string key = key_of(t, n);
          const std::string value = value_of(t, n);
          const redis_reply set = (*conn)->command("SET", key, value);
          const redis_reply got = (*conn)->command("GET", key);
          if (text(set) == "OK" && text(got) == value) {
            matched.fetch_add(1);
          } else {
            failures.fetch_add(1);
          }
        }
      });
    }
  }
  EXPECT_EQ(matched.load(), threads * pairs);
  EXPECT_EQ(failures.load(), 0U);

  const netpool::pool_stats s = pool->stats();
  EXPECT_EQ(s.gets, threads * pairs);
  EXPECT_GE(s.dials_ok, 1U);
  EXPECT_LE(s.dials_ok, 3U);
  EXPECT_EQ(s.dial_failures, 0U);
  EXPECT_EQ(s.closed_hook, 0U) << "on_return refused a healthy connection";
  EXPECT_EQ(all_closes(), 0U);

  // The keys are in database 3, where on_connect put every pooled connection, and not in 0.
  redis_connection db3 = observer(pooled_db);
  ASSERT_TRUE(db3);
  EXPECT_EQ(integer(db3.command("DBSIZE")), static_cast<long long>(threads * pairs));
  for (unsigned t = 0; t < threads; ++t) {
    for (unsigned n = 0; n < pairs; n += 37) {
      EXPECT_EQ(text(db3.command("GET", key_of(t, n))), value_of(t, n));
    }
  }
  redis_connection db0 = observer(0);
  ASSERT_TRUE(db0);
  EXPECT_EQ(integer(db0.command("DBSIZE")), 0);
  const redis_reply missing = db0.command("GET", "k:0:0");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->type, REDIS_REPLY_NIL);

  // Closing the pool closes every connection it opened, each once, through on_close.
  const std::uint64_t opened = s.dials_ok;
  pool->close();
  EXPECT_EQ(closes(close_reason::pool_closed), opened);
  EXPECT_EQ(all_closes(), opened);
}

TEST_F(HiredisPoolTest, ContextKilledByTheServerIsRefusedByOnReturnAndReplaced) {
  auto pool = netpool::pool<redis_connection>::create(config(pooled_db, 1));
  ASSERT_TRUE(pool) << pool.error().message();
  redis_connection admin = observer(0);
  ASSERT_TRUE(admin);

  long long killed_id = -1;
  {
    auto conn = pool->get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    killed_id = integer((*conn)->command("CLIENT", "ID"));
    ASSERT_GT(killed_id, 0);
    // The server closes it before answering the kill; the pooled context does not know yet.
    ASSERT_EQ(integer(admin.command("CLIENT", "KILL", "ID", std::to_string(killed_id))), 1);
    EXPECT_TRUE((*conn)->usable());

    const redis_reply ping = (*conn)->command("PING");
    EXPECT_FALSE(ping) << "a killed connection answered: " << text(ping);
    EXPECT_NE((*conn)->get()->err, 0);
    EXPECT_FALSE((*conn)->usable());
    EXPECT_TRUE((*conn)->error()) << "no error mapped from hiredis's " << (*conn)->get()->errstr;
  }  // ~lease(): a plain put; on_return refuses it

  netpool::pool_stats s = pool->stats();
  EXPECT_EQ(s.closed_hook, 1U);
  EXPECT_EQ(closes(close_reason::hook), 1U);
  EXPECT_EQ(s.active, 0U) << "the refused connection still holds its slot";
  EXPECT_EQ(s.dials_ok, 1U);

  // max_size is 1: the next get can only be served by a fresh dial, which selects db 3 again.
  auto conn = pool->get_for(10s);
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_NE(integer((*conn)->command("CLIENT", "ID")), killed_id);
  EXPECT_EQ(text((*conn)->command("SET", "after-kill", "yes")), "OK");
  s = pool->stats();
  EXPECT_EQ(s.dials_ok, 2U);
  EXPECT_EQ(s.dial_failures, 0U);
  redis_connection db3 = observer(pooled_db);
  EXPECT_EQ(text(db3.command("GET", "after-kill")), "yes");
}

TEST_F(HiredisPoolTest, CommandTimeoutBreaksTheContextAndOnReturnRefusesIt) {
  auto pool = netpool::pool<redis_connection>::create(config(pooled_db, 1, 200ms));
  ASSERT_TRUE(pool) << pool.error().message();
  {
    auto conn = pool->get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    // The server holds the reply back for 5 s; the command timeout (SO_RCVTIMEO) gives up first.
    const auto start = std::chrono::steady_clock::now();
    const redis_reply r = (*conn)->command("BLPOP", "no-such-list", "5");
    EXPECT_FALSE(r) << "BLPOP answered within the command timeout: " << text(r);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
    EXPECT_EQ((*conn)->error(), netpool::errc::io_timeout)
        << (*conn)->error().message() << " / " << (*conn)->get()->errstr;
    EXPECT_FALSE((*conn)->usable());  // its reply would arrive later, out of turn: never reuse it
  }
  EXPECT_EQ(pool->stats().closed_hook, 1U);
  EXPECT_EQ(closes(close_reason::hook), 1U);
  auto conn = pool->get_for(10s);
  ASSERT_TRUE(conn) << conn.error().message();
  EXPECT_EQ(text((*conn)->command("PING")), "PONG");
  EXPECT_EQ(pool->stats().dials_ok, 2U);
}

TEST_F(HiredisPoolTest, ErrorReplyToOnConnectFailsTheDialWithoutLeaks) {
  const std::size_t fds_before = netpool::test::open_fd_count();
  {
    // 99999 is past redis's 16 databases: SELECT gets "-ERR DB index is out of range".
    auto cfg = config(99999, 2);
    cfg.dial_backoff_floor = 1ms;
    cfg.dial_backoff_cap = 5ms;
    auto pool = netpool::pool<redis_connection>::create(std::move(cfg));
    ASSERT_TRUE(pool) << pool.error().message();

    auto conn = pool->get_for(10s);
    ASSERT_FALSE(conn);
    EXPECT_EQ(conn.error(), netpool::errc::hook_rejected) << conn.error().message();
    netpool::pool_stats s = pool->stats();
    EXPECT_EQ(s.dials, 1U);
    EXPECT_EQ(s.dial_failures, 1U);
    EXPECT_EQ(s.dials_ok, 0U);
    EXPECT_EQ(s.active, 0U);
    EXPECT_EQ(pool->last_dial_error(), netpool::errc::hook_rejected);
    // The refused context was freed at once: no descriptor here, no client on the server.
    EXPECT_EQ(netpool::test::open_fd_count(), fds_before);
    EXPECT_TRUE(wait_for([&] { return connected_clients() == 0; })) << connected_clients() << " clients";

    // Once the backoff passes, every further dial fails the same way (fast failures in between
    // return the same error without dialing).
    EXPECT_TRUE(wait_for([&] {
      auto again = pool->get_for(1s);
      EXPECT_FALSE(again);
      if (again) return true;
      EXPECT_EQ(again.error(), netpool::errc::hook_rejected) << again.error().message();
      return pool->stats().dial_failures >= 3;
    }));
    // A get that gave up may have left its dial to a background dialer: wait for it to finish.
    EXPECT_TRUE(wait_for([&] {
      s = pool->stats();
      return s.dials == s.dial_failures && s.active == 0 && closes(close_reason::hook) == s.dial_failures;
    })) << s.dials
        << " dials, " << s.dial_failures << " failed, " << s.active << " active, "
        << closes(close_reason::hook) << " refused connections seen by on_close";
    EXPECT_EQ(s.dials_ok, 0U);
    EXPECT_EQ(netpool::test::open_fd_count(), fds_before);
  }
  EXPECT_EQ(netpool::test::open_fd_count(), fds_before);
}

TEST_F(HiredisPoolTest, RecoversAfterRedisRestartsOnTheSamePort) {
  auto cfg = config(pooled_db, 2);
  cfg.dial_backoff_cap = 50ms;  // notice the restarted server soon
  auto pool = netpool::pool<redis_connection>::create(std::move(cfg));
  ASSERT_TRUE(pool) << pool.error().message();
  {
    auto a = pool->get_for(10s);
    auto b = pool->get_for(10s);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(text((*a)->command("PING")), "PONG");
    EXPECT_EQ(text((*b)->command("PING")), "PONG");
  }
  ASSERT_EQ(pool->stats().idle, 2U);

  redis_->stop();
  // The two pooled contexts are dead: each is either found dead by the idle probe (closed_health)
  // or lent, fails its command and is refused on return (closed_hook). Then gets fail with the
  // dial error, ECONNREFUSED.
  std::error_code down_error;
  EXPECT_TRUE(wait_for([&] {
    auto conn = pool->get_for(1s);
    if (!conn) {
      down_error = conn.error();
      return conn.error() == std::errc::connection_refused;
    }
    EXPECT_FALSE((*conn)->command("PING")) << "a stopped redis answered";
    return false;
  })) << "last error: "
      << down_error.message();
  EXPECT_EQ(down_error, netpool::condition::dial_failed);
  netpool::pool_stats s = pool->stats();
  EXPECT_EQ(s.closed_hook + s.closed_health, 2U);
  EXPECT_EQ(s.idle + s.in_use, 0U) << "a dead context is still in the pool";

  redis_->start();  // the same port
  EXPECT_TRUE(wait_for([&] {
    auto conn = pool->get_for(1s);
    return conn && text((*conn)->command("SET", "after-restart", "yes")) == "OK";
  }));
  s = pool->stats();
  EXPECT_GE(s.dial_failures, 1U);
  EXPECT_GE(s.dials_ok, 3U);
  redis_connection db3 = observer(pooled_db);
  EXPECT_EQ(text(db3.command("GET", "after-restart")), "yes") << "the new connection skipped on_connect";
}

// The factory alone: its error mapping and what it does to the descriptor.
TEST(RedisDialerTest, MapsConnectFailures) {
  netpool::test::refused_port refused;
  const redis_dialer to_refused("127.0.0.1", refused.port(), 1s);
  netpool::result<redis_connection> c = to_refused(std::chrono::steady_clock::now() + 5s);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), std::errc::connection_refused) << c.error().message();
  EXPECT_EQ(c.error(), netpool::condition::dial_failed);

  // A deadline already passed: nothing is tried.
  c = to_refused(std::chrono::steady_clock::now() - 1ms);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), netpool::errc::timeout);

  // A listener whose accept queue is full: the connect hangs until the dial deadline.
  netpool::test::full_backlog_listener stuck;
  const auto start = std::chrono::steady_clock::now();
  c = redis_dialer("127.0.0.1", stuck.port(), 1s)(start + 200ms);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error(), netpool::errc::timeout) << c.error().message();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
}

TEST_F(HiredisPoolTest, ConnectionIsMoveOnlyCloseOnExecAndFreedOnce) {
  const std::size_t fds_before = netpool::test::open_fd_count();
  {
    netpool::result<redis_connection> c =
        redis_dialer("127.0.0.1", port(), 5s)(std::chrono::steady_clock::now() + 5s);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(::fcntl((*c)->fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    EXPECT_EQ(c->probe(), netpool::liveness::alive);
    EXPECT_EQ(netpool::test::open_fd_count(), fds_before + 1);

    redis_connection moved(std::move(*c));
    EXPECT_FALSE(static_cast<bool>(*c));  // NOLINT(bugprone-use-after-move): the moved-from state
    EXPECT_EQ(text(moved.command("PING")), "PONG");
    redis_connection assigned;
    assigned = std::move(moved);
    EXPECT_FALSE(static_cast<bool>(moved));  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_EQ(text(assigned.command("PING")), "PONG");
    EXPECT_EQ(netpool::test::open_fd_count(), fds_before + 1);

    // Bytes nobody asked for: an appended command whose reply was never read.
    ASSERT_EQ(redisAppendCommand(assigned.get(), "PING"), REDIS_OK);
    EXPECT_FALSE(assigned.usable()) << "an unsent command is pending";
    int done = 0;
    ASSERT_EQ(redisBufferWrite(assigned.get(), &done), REDIS_OK);
    EXPECT_TRUE(wait_for([&] { return assigned.probe() == netpool::liveness::unread_data; }));

    static_assert(std::is_nothrow_move_constructible_v<redis_connection>);
    static_assert(std::is_nothrow_move_assignable_v<redis_connection>);
    static_assert(!std::is_copy_constructible_v<redis_connection>);
  }
  EXPECT_EQ(netpool::test::open_fd_count(), fds_before);
}

}  // namespace
