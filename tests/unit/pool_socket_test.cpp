// The pools with real sockets: pool<socket> / lean_pool<socket> with tcp_dialer and unix_dialer
// against the loopback test servers. Round trips through pooled connections, a server that drops
// idle connections (caught by a probe() health check, or by the caller and discarded), a refused
// port, a dial timeout against a listener whose accept queue is full — and no descriptor leaked by
// any test (counted before the test's servers exist and after its pools are gone).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "pool_test_helpers.hpp"
#include "socket_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::errc;
using netpool::liveness;
using netpool::test::echo_server;
using netpool::test::wait_for;

using netpool::test::echoed_whole;
using netpool::test::fd_leak_check;

bool probe_alive(netpool::socket& s) {
  return s.probe() == liveness::alive;
}

// What a peek at descriptor `fd` would say, without owning it: lets a test wait until an idle
// pooled socket has really received the server's FIN or data before the pool looks at it.
liveness peek(int fd) {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return liveness::unread_data;
  if (n == 0) return liveness::peer_closed;
  return (errno == EAGAIN || errno == EWOULDBLOCK) ? liveness::alive : liveness::error;
}

template <class P>
class PoolSocketTest : public ::testing::Test {};

struct socket_pool_names {
  template <class P>
  static std::string GetName(int) {
    return std::is_same_v<P, netpool::lean_pool<netpool::socket>> ? "lean_pool" : "pool";
  }
};
using socket_pools = ::testing::Types<netpool::pool<netpool::socket>, netpool::lean_pool<netpool::socket>>;
TYPED_TEST_SUITE(PoolSocketTest, socket_pools, socket_pool_names);

TYPED_TEST(PoolSocketTest, RoundTripsThroughPooledConnections) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_size = 3;
    auto pool = TypeParam::create(std::move(cfg)).value();

    constexpr int threads_n = 4;
    constexpr int rounds = 50;
    std::atomic<int> failures{0};
    netpool::test::thread_group threads;
    for (int t = 0; t < threads_n; ++t) {
      threads.spawn([&, t] {
        for (int i = 0; i < rounds; ++i) {
          auto conn = pool.get_for(10s);
          if (!conn) {
            failures.fetch_add(1);
            continue;
          }
          const std::string msg = "thread " + std::to_string(t) + " round " + std::to_string(i) + "\n";
          if (!echoed_whole(**conn, msg)) {
            failures.fetch_add(1);
            conn->discard();
          }
        }
      });
    }
    threads.join_all();
    EXPECT_EQ(failures.load(), 0);
    const auto s = pool.stats();
    EXPECT_LE(s.dials, 3u) << "connections are reused, never more than max_size";
    EXPECT_EQ(s.gets, static_cast<std::uint64_t>(threads_n * rounds));
    EXPECT_EQ(s.in_use, 0u);
    EXPECT_EQ(server.accepted_total(), s.dials);
    EXPECT_TRUE(wait_for([&] { return server.connection_count() == s.active; }));
  }
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 0; })) << "the pool closed every socket";
}

TYPED_TEST(PoolSocketTest, UnixDialerRoundTrip) {
  const fd_leak_check fds;
  netpool::test::unix_echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::unix_dialer(server.path());
    cfg.max_size = 2;
    auto pool = TypeParam::create(std::move(cfg)).value();
    for (int i = 0; i < 10; ++i) {
      auto conn = pool.get_for(10s);
      ASSERT_TRUE(conn) << conn.error().message();
      EXPECT_TRUE(echoed_whole(**conn, "unix " + std::to_string(i)));
    }
    EXPECT_EQ(pool.stats().dials, 1u);
  }
}

TYPED_TEST(PoolSocketTest, RefusedPortIsADialFailureAndFreesTheSlot) {
  const fd_leak_check fds;
  netpool::test::refused_port refused;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer("127.0.0.1", refused.port());
    cfg.max_size = 1;
    auto pool = TypeParam::create(std::move(cfg)).value();
    auto r = pool.get();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), netpool::condition::dial_failed) << r.error().message();
    EXPECT_EQ(r.error(), std::errc::connection_refused) << r.error().message();
    EXPECT_EQ(pool.stats().active, 0u);
    EXPECT_EQ(pool.stats().dial_failures, 1u);
    // max_size 1: a second attempt fails at once (fast, during the dial backoff) rather than
    // waiting for a slot that was never given back.
    auto again = pool.get_for(5s);
    EXPECT_EQ(again.error(), std::errc::connection_refused) << again.error().message();
    EXPECT_EQ(pool.stats().active, 0u);
  }
}

// A factory that "succeeds" with a socket that is not open (fd -1, say a wrapper that forgot to
// check a call's result) has failed: lent, it would fail the caller's first I/O with EBADF instead.
TYPED_TEST(PoolSocketTest, AFactoryThatReturnsAClosedSocketIsAFailedDial) {
  const fd_leak_check fds;
  echo_server server;
  {
    std::atomic<bool> broken{true};
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = [&broken, dial = netpool::tcp_dialer(server.host(), server.port())](
                      clock_type::time_point deadline) -> netpool::result<netpool::socket> {
      if (broken.load()) return netpool::socket();
      return dial(deadline);
    };
    cfg.max_size = 1;
    cfg.dial_backoff_floor = 0ns;  // the second get dials again at once
    cfg.dial_backoff_cap = 0ns;
    auto pool = TypeParam::create(std::move(cfg)).value();
    auto r = pool.get_for(10s);
    ASSERT_FALSE(r) << "an empty socket was lent";
    EXPECT_EQ(r.error(), errc::dial_failed) << r.error().message();
    EXPECT_EQ(r.error(), netpool::condition::dial_failed);
    auto s = pool.stats();
    EXPECT_EQ(s.active, 0u);
    EXPECT_EQ(s.dial_failures, 1u);
    EXPECT_EQ(s.dials_ok, 0u);
    // The slot was freed: a working factory fills it.
    broken.store(false);
    auto conn = pool.get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_TRUE(echoed_whole(**conn, "open"));
  }
}

// A borrower that closes its socket (lease->close(), or socket::release() and a close of its own)
// and then lets the lease go, instead of discard(), has returned no connection: the put frees the
// slot as discard() would (closed_error), and the next get dials a fresh socket. Before, the pool
// kept the dead socket idle and lent it again: its next user's first I/O failed with EBADF, and a
// lean_pool of one handed out nothing else. Also through pool::put() and a lease's move
// assignment, with a waiter in line (it gets a fresh dial, not the dead socket), and after on_return
// is set (no hook sees the dead socket).
TYPED_TEST(PoolSocketTest, ASocketClosedByItsBorrowerIsDiscardedWhenReturned) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_size = 1;
    auto pool = TypeParam::create(std::move(cfg)).value();

    auto expect_fresh_and_working = [&](std::uint64_t dials, const char* how) {
      auto next = pool.get_for(10s);
      ASSERT_TRUE(next) << how << ": " << next.error().message();
      EXPECT_TRUE((*next)->is_open()) << how << ": a closed socket was lent again";
      EXPECT_TRUE(echoed_whole(**next, how)) << how;
      EXPECT_EQ(pool.stats().dials, dials) << how;
    };

    {  // lease->close(), then the lease's destructor
      auto conn = pool.get_for(10s);
      ASSERT_TRUE(conn) << conn.error().message();
      EXPECT_FALSE((*conn)->close());
    }
    auto s = pool.stats();
    EXPECT_EQ(s.active, 0u);
    EXPECT_EQ(s.idle, 0u);
    EXPECT_EQ(s.closed_error, 1u);
    expect_fresh_and_working(2, "after ~lease()");

    {  // socket::release(), closed by the borrower; returned through pool::put()
      auto conn = pool.get_for(10s);
      ASSERT_TRUE(conn) << conn.error().message();
      const int fd = (*conn)->release();
      ASSERT_GE(fd, 0);
      ::close(fd);
      EXPECT_FALSE(pool.put(std::move(*conn)));
    }
    EXPECT_EQ(pool.stats().closed_error, 2u);
    expect_fresh_and_working(3, "after put()");

    {  // a waiter in line when the dead socket comes back through a lease's move assignment
      auto conn = pool.get_for(10s);
      ASSERT_TRUE(conn) << conn.error().message();
      auto waiter = netpool::test::run_async([&] { return pool.get_for(netpool::test::patience); });
      ASSERT_TRUE(wait_for([&] { return pool.stats().waiters == 1; }));
      EXPECT_FALSE((*conn)->close());
      *conn = netpool::lease<netpool::socket>();
      ASSERT_TRUE(netpool::test::ready_within(waiter));
      auto got = waiter.get();
      ASSERT_TRUE(got) << got.error().message();
      EXPECT_TRUE((*got)->is_open()) << "the waiter was handed the closed socket";
      EXPECT_TRUE(echoed_whole(**got, "waiter"));
    }
    s = pool.stats();
    EXPECT_EQ(s.closed_error, 3u);
    EXPECT_EQ(s.dials, 4u);
    EXPECT_EQ(s.active, 1u);
    EXPECT_EQ(s.idle, 1u);
  }
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 0; })) << "the pool closed every socket";
}

// The same with on_return set: the put takes the hooked path, and on_return never sees the dead
// socket (on_close does, once: a keyed pool gives its global token back there). And an on_connect
// that closes the socket but reports success made no connection: a failed dial,
// errc::dial_failed, closed as the hook's refusal.
TYPED_TEST(PoolSocketTest, HooksAndASocketClosedByItsBorrowerOrByOnConnect) {
  const fd_leak_check fds;
  echo_server server;
  {
    std::atomic<int> returns{0};
    std::atomic<bool> close_on_connect{false};
    std::atomic<int> closes_heard{0};
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_size = 1;
    cfg.dial_backoff_floor = 0ns;  // the next get dials again at once
    cfg.dial_backoff_cap = 0ns;
    cfg.on_return = [&](netpool::socket& c) {
      EXPECT_TRUE(c.is_open()) << "on_return was given a closed socket";
      returns.fetch_add(1);
      return true;
    };
    cfg.on_connect = [&](netpool::socket& c) -> std::error_code {
      if (close_on_connect.load()) (void)c.close();
      return {};
    };
    cfg.on_close = [&](netpool::socket&, netpool::close_reason) { closes_heard.fetch_add(1); };
    auto pool = TypeParam::create(std::move(cfg)).value();
    {
      auto conn = pool.get_for(10s);
      ASSERT_TRUE(conn) << conn.error().message();
      EXPECT_FALSE((*conn)->close());
    }
    auto s = pool.stats();
    EXPECT_EQ(returns.load(), 0);
    EXPECT_EQ(s.closed_error, 1u);
    EXPECT_EQ(s.active, 0u);
    EXPECT_EQ(closes_heard.load(), 1);

    close_on_connect.store(true);
    auto refused = pool.get_for(10s);
    ASSERT_FALSE(refused) << "a socket that on_connect closed was lent";
    EXPECT_EQ(refused.error(), errc::dial_failed) << refused.error().message();
    EXPECT_EQ(refused.error(), netpool::condition::dial_failed);
    s = pool.stats();
    EXPECT_EQ(s.dial_failures, 1u);
    EXPECT_EQ(s.closed_hook, 1u);
    EXPECT_EQ(s.active, 0u);
    EXPECT_EQ(closes_heard.load(), 2);

    close_on_connect.store(false);
    {
      auto conn = pool.get_for(10s);
      ASSERT_TRUE(conn) << conn.error().message();
      EXPECT_TRUE(echoed_whole(**conn, "open"));
    }
    EXPECT_EQ(returns.load(), 1);
    EXPECT_EQ(pool.stats().idle, 1u);
  }
}

TYPED_TEST(PoolSocketTest, DialTimeoutAgainstAFullAcceptQueue) {
  const fd_leak_check fds;
  netpool::test::full_backlog_listener stuck;
  {
    netpool::pool_config<netpool::socket> cfg;
    // The deadline the pool gives the dialer is recorded: that it is dial_timeout away is checked
    // exactly, and the elapsed time only has to tell "the dialer kept to it" from "the kernel gave
    // up" (SYN retries: about two minutes), so its bound can be generous.
    std::atomic<clock_type::time_point> dial_deadline{};
    cfg.factory = [dial = netpool::tcp_dialer("127.0.0.1", stuck.port()),
                   &dial_deadline](clock_type::time_point deadline) {
      dial_deadline.store(deadline);
      return dial(deadline);
    };
    cfg.max_size = 1;
    cfg.dial_timeout = 500ms;
    auto pool = TypeParam::create(std::move(cfg)).value();
    const auto t0 = clock_type::now();
    auto r = pool.get();
    const auto elapsed = clock_type::now() - t0;
    ASSERT_FALSE(r);
    // The backend did not answer within dial_timeout: a failed dial that timed out, not the get's
    // own timeout (it had none), which would read as "every connection busy".
    EXPECT_EQ(r.error(), std::errc::timed_out) << r.error().message();
    EXPECT_EQ(r.error(), netpool::condition::dial_failed) << r.error().message();
    EXPECT_NE(r.error(), errc::timeout);
    EXPECT_EQ(pool.last_dial_error(), r.error());
    EXPECT_GE(dial_deadline.load(), t0 + 500ms) << "the dial was not given dial_timeout";
    EXPECT_LE(dial_deadline.load(), t0 + elapsed + 500ms) << "the dial was not given dial_timeout";
    EXPECT_LT(elapsed, 30s) << "the dial did not end at its deadline";
    EXPECT_EQ(pool.stats().active, 0u);
    EXPECT_EQ(pool.stats().dial_failures, 1u);
    EXPECT_EQ(pool.stats().timeouts, 0u);
    // The next get fails at once during the backoff, or dials and times out again: either way it
    // says the same.
    auto again = pool.get();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error(), netpool::condition::dial_failed) << again.error().message();
    EXPECT_EQ(again.error(), std::errc::timed_out) << again.error().message();
  }
}

// A caller dialing on its own thread (lean_pool; pool without background maintenance) is bounded
// by its deadline when it is sooner than dial_timeout. (pool with background maintenance lets the
// dial go on without the caller: background_dial_test.cpp.)
TYPED_TEST(PoolSocketTest, CallerDeadlineBoundsTheDial) {
  const fd_leak_check fds;
  netpool::test::full_backlog_listener stuck;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer("127.0.0.1", stuck.port());
    cfg.background_maintenance = false;
    cfg.dial_timeout = 60s;
    auto pool = TypeParam::create(std::move(cfg)).value();
    const auto t0 = clock_type::now();
    auto r = pool.get_for(400ms);
    const auto elapsed = clock_type::now() - t0;
    EXPECT_EQ(r.error(), errc::timeout) << r.error().message();
    // Half of dial_timeout: a dial bounded by it instead of the caller's 400 ms would take 60 s.
    EXPECT_LT(elapsed, 30s);
    EXPECT_EQ(pool.stats().active, 0u);
  }
}

// Without a health check, a connection the server dropped is handed out; the caller sees the
// failure, discards it, and the next get dials a fresh one.
TYPED_TEST(PoolSocketTest, DeadConnectionDiscardedByTheCallerIsReplaced) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_size = 1;
    auto pool = TypeParam::create(std::move(cfg)).value();
    {
      auto conn = pool.get();
      ASSERT_TRUE(conn);
      ASSERT_TRUE(echoed_whole(**conn, "hello"));
    }
    server.close_all_connections();
    {
      auto conn = pool.get();
      ASSERT_TRUE(conn);
      EXPECT_FALSE(echoed_whole(**conn, "anyone?")) << "the server closed this connection";
      EXPECT_FALSE(pool.put_with_error(std::move(*conn)));
    }
    auto fresh = pool.get_for(10s);
    ASSERT_TRUE(fresh) << fresh.error().message();
    EXPECT_TRUE(echoed_whole(**fresh, "again"));
    EXPECT_EQ(pool.stats().closed_error, 1u);
    EXPECT_EQ(server.accepted_total(), 2u);
  }
}

class StandardPoolSocketTest : public ::testing::Test {};

// The server closes the idle connection; the probe() health check notices before it is handed out.
TEST_F(StandardPoolSocketTest, HealthCheckDetectsAConnectionTheServerClosed) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_size = 2;
    cfg.health_check = probe_alive;
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
    int fd = -1;
    {
      auto conn = pool.get();
      ASSERT_TRUE(conn);
      ASSERT_TRUE(echoed_whole(**conn, "first"));
      fd = (*conn)->native_handle();
    }
    ASSERT_EQ(pool.len(), 1u);
    server.close_all_connections();
    // The pooled socket is idle (still open: the pool owns it); wait until its FIN has arrived.
    ASSERT_TRUE(wait_for([&] { return peek(fd) == liveness::peer_closed; }));

    auto conn = pool.get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_TRUE(echoed_whole(**conn, "second")) << "a live connection was handed out";
    const auto s = pool.stats();
    EXPECT_EQ(s.closed_health, 1u);
    EXPECT_EQ(s.dials, 2u);
    EXPECT_EQ(server.accepted_total(), 2u);
  }
}

// Reset instead of FIN: the probe reports an error; same outcome.
TEST_F(StandardPoolSocketTest, HealthCheckDetectsAResetConnection) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.health_check = probe_alive;
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
    int fd = -1;
    {
      auto conn = pool.get();
      ASSERT_TRUE(conn);
      fd = (*conn)->native_handle();
    }
    ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
    server.close_all_connections(netpool::test::close_style::reset);
    // The first peek after the RST reports the error (and consumes it); later ones read EOF.
    ASSERT_TRUE(wait_for([&] { return peek(fd) != liveness::alive; }));
    auto conn = pool.get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_TRUE(echoed_whole(**conn, "after reset"));
    EXPECT_EQ(pool.stats().closed_health, 1u);
  }
}

// Bytes nobody read (a late reply, unsolicited data) would desynchronise the next borrower.
TEST_F(StandardPoolSocketTest, HealthCheckRejectsAConnectionWithUnreadData) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.health_check = probe_alive;
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
    int fd = -1;
    {
      auto conn = pool.get();
      ASSERT_TRUE(conn);
      fd = (*conn)->native_handle();
    }
    ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
    server.send_to_all("stale reply\n");
    ASSERT_TRUE(wait_for([&] { return peek(fd) == liveness::unread_data; }));
    auto conn = pool.get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
    EXPECT_EQ((*conn)->probe(), liveness::alive);
    EXPECT_EQ(pool.stats().closed_health, 1u);
  }
}

// Idle sockets are closed by the maintainer after max_idle_time: the server sees them go.
TEST_F(StandardPoolSocketTest, IdleSocketsAreClosedAfterMaxIdleTime) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.max_idle_time = 50ms;
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
    {
      auto a = pool.get();
      auto b = pool.get();
      ASSERT_TRUE(a && b);
    }
    // accepted_total() only grows (connection_count() may already be falling again, or not yet
    // include the second). Once it is 2, parked_with(0) says the server saw both close.
    ASSERT_TRUE(wait_for([&] { return server.accepted_total() >= 2; }));
    EXPECT_TRUE(wait_for([&] { return server.parked_with(0); })) << "idle sockets not reaped";
    EXPECT_EQ(pool.stats().closed_idle, 2u);
    EXPECT_EQ(server.accepted_total(), 2u);
  }
}

// min_size connections to a server that is down: the pool keeps trying in the background and
// fills up once the server is back, without leaking a descriptor per failed attempt.
TEST_F(StandardPoolSocketTest, MinSizeRefillsWhenTheServerComesBack) {
  const fd_leak_check fds;
  echo_server server;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    cfg.min_size = 2;
    cfg.max_size = 4;
    server.stop();
    auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
    ASSERT_TRUE(wait_for([&] { return pool.stats().dial_failures >= 1; }));
    server.restart();
    ASSERT_TRUE(wait_for([&] { return pool.stats().idle == 2; })) << "the maintainer did not retry";
    EXPECT_TRUE(wait_for([&] { return server.connection_count() == 2; }));
  }
}

// Leases outliving a pool of sockets: returning them closes the descriptors.
TYPED_TEST(PoolSocketTest, SocketLeasesOutlivingThePoolAreClosedOnReturn) {
  const fd_leak_check fds;
  echo_server server;
  std::vector<netpool::lease<netpool::socket>> leases;
  {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = netpool::tcp_dialer(server.host(), server.port());
    auto pool = TypeParam::create(std::move(cfg)).value();
    for (int i = 0; i < 3; ++i) {
      auto l = pool.get();
      ASSERT_TRUE(l);
      leases.push_back(std::move(*l));
    }
  }
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 3; }));
  for (auto& l : leases) EXPECT_TRUE(echoed_whole(*l, "still usable"));
  leases.clear();
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 0; }));
}

}  // namespace
