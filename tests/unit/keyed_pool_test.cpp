// keyed_pool: one sub-pool per endpoint, a per-key and a global limit, idle sub-pools evicted.
// Every test runs against real echo servers, one per loopback address (127.0.0.1 ... 127.0.0.4),
// and checks through the servers and through the peer address of each connection that a key's
// connections really go to that key's endpoint. Nothing asserts timing: conditions are waited for
// with generous deadlines.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/detail/keyed_state.hpp"
#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/keyed_pool.hpp"
#include "netpool/socket.hpp"
#include "pool_test_helpers.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::errc;
using netpool::keyed_config_problem;
using netpool::test::echo_server;
using netpool::test::wait_for;

// A key that is not hashable by std::hash: exercises the Hash parameter.
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
  bool operator==(const endpoint&) const = default;
};
struct endpoint_hash {
  std::size_t operator()(const endpoint& e) const noexcept {
    return std::hash<std::string>{}(e.host) * 31 + e.port;
  }
};

using keyed = netpool::keyed_pool<endpoint, netpool::socket, endpoint_hash>;
using keyed_config = netpool::keyed_pool_config<endpoint>;
using socket_lease = netpool::lease<netpool::socket>;

// The address the socket is connected to ("127.0.0.2"), or "" on error.
std::string peer_host(const netpool::socket& s) {
  sockaddr_in a{};
  socklen_t length = sizeof a;
  if (::getpeername(s.native_handle(), reinterpret_cast<sockaddr*>(&a), &length) != 0) return "";
  char text[INET_ADDRSTRLEN] = {};
  return ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text) != nullptr ? std::string(text) : "";
}

// One round trip through the echo server (bounded by an I/O deadline, never hangs).
bool echoes(netpool::socket& s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  if (s.send_all("ping\n", deadline)) return false;
  char buffer[5];
  if (s.recv_all(buffer, sizeof buffer, deadline)) return false;
  return std::string(buffer, sizeof buffer) == "ping\n";
}

// Counts what the user's own hooks see (the keyed pool chains them behind its own).
struct hook_counts {
  std::atomic<int> dials{0};        // connections the user's factory made
  std::atomic<int> closes{0};       // on_close calls
  std::atomic<int> borrows{0};      // on_borrow calls
  std::atomic<int> hook_closes{0};  // on_close with close_reason::hook
};

class KeyedPoolTest : public ::testing::Test {
 protected:
  static constexpr std::size_t server_count = 4;

  KeyedPoolTest() {
    for (std::size_t i = 0; i < server_count; ++i) {
      netpool::test::echo_server_options options;
      options.ipv4_address = "127.0.0." + std::to_string(i + 1);
      servers_.push_back(std::make_unique<echo_server>(std::move(options)));
    }
  }

  endpoint key(std::size_t i) const { return {servers_[i]->host(), servers_[i]->port()}; }
  echo_server& server(std::size_t i) { return *servers_[i]; }

  // make_config dials the key's endpoint; counts go to `counts`.
  keyed_config config(std::size_t per_key_max, std::size_t global_max) {
    keyed_config cfg;
    cfg.per_key_max = per_key_max;
    cfg.global_max = global_max;
    cfg.make_config = [counts = counts_](const endpoint& e) {
      netpool::pool_config<netpool::socket> c;
      netpool::tcp_dialer dial(e.host, e.port);
      c.factory = [dial, counts](std::chrono::steady_clock::time_point deadline) {
        auto s = dial(deadline);
        if (s) counts->dials.fetch_add(1);
        return s;
      };
      c.on_close = [counts](netpool::socket&, netpool::close_reason why) {
        counts->closes.fetch_add(1);
        if (why == netpool::close_reason::hook) counts->hook_closes.fetch_add(1);
      };
      c.on_borrow = [counts](netpool::socket&) {
        counts->borrows.fetch_add(1);
        return true;
      };
      c.dial_timeout = 10s;
      return c;
    };
    return cfg;
  }

  keyed make(keyed_config cfg) {
    auto made = keyed::create(std::move(cfg));
    if (!made) throw std::system_error(made.error(), "keyed_pool::create");
    return std::move(*made);
  }

  // Every connection the user's factory made has been closed (on_close), none twice.
  bool all_closed() const { return counts_->dials.load() == counts_->closes.load(); }

  std::vector<std::unique_ptr<echo_server>> servers_;
  std::shared_ptr<hook_counts> counts_ = std::make_shared<hook_counts>();
};

TEST_F(KeyedPoolTest, EchoServerListensOnTheLoopbackAddressAskedFor) {
  EXPECT_STREQ(server(2).host(), "127.0.0.3");
  netpool::tcp_dialer dial(server(2).host(), server(2).port());
  auto s = dial(std::chrono::steady_clock::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(peer_host(*s), "127.0.0.3");
  EXPECT_TRUE(echoes(*s));
  netpool::test::echo_server_options outside;
  outside.ipv4_address = "10.0.0.1";  // never bound: not loopback
  EXPECT_THROW(echo_server{std::move(outside)}, std::invalid_argument);
}

TEST_F(KeyedPoolTest, SubPoolIsCreatedOnFirstUseAndDialsItsOwnEndpoint) {
  keyed pools = make(config(2, 0));
  EXPECT_EQ(pools.size(), 0u);
  EXPECT_FALSE(pools.stats(key(0)).has_value());

  auto a = pools.get(key(0));
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(pools.size(), 1u);
  EXPECT_EQ(peer_host(a->get()), "127.0.0.1");
  EXPECT_TRUE(echoes(a->get()));

  auto b = pools.get_for(key(1), 10s);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(pools.size(), 2u);
  EXPECT_EQ(peer_host(b->get()), "127.0.0.2");
  EXPECT_TRUE(echoes(b->get()));
  EXPECT_TRUE(wait_for([&] { return server(0).accepted_total() == 1 && server(1).accepted_total() == 1; }));
  EXPECT_EQ(server(2).accepted_total(), 0u);

  // try_get never creates a sub-pool.
  auto none = pools.try_get(key(2));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), errc::exhausted);
  EXPECT_EQ(pools.size(), 2u);

  // A returned connection is reused by the next get of its key: no new dial.
  ASSERT_FALSE(a->release());
  auto again = pools.get(key(0));
  ASSERT_TRUE(again);
  EXPECT_TRUE(echoes(again->get()));
  EXPECT_EQ(pools.stats(key(0))->dials, 1u);

  const auto per_key = pools.stats(key(0));
  ASSERT_TRUE(per_key.has_value());
  EXPECT_EQ(per_key->gets, 2u);
  EXPECT_EQ(per_key->in_use, 1u);
  EXPECT_EQ(per_key->max, 2u);
  const netpool::keyed_pool_stats all = pools.stats();
  EXPECT_EQ(all.pools, 2u);
  EXPECT_EQ(all.pools_created, 2u);
  EXPECT_EQ(all.total.gets, 3u);
  EXPECT_EQ(all.total.in_use, 2u);
  EXPECT_EQ(all.total.max, 4u);
  EXPECT_EQ(all.open, 2u);
}

TEST_F(KeyedPoolTest, ConcurrentFirstGetsOfOneKeyBuildOneSubPool) {
  keyed pools = make(config(8, 0));
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto l = pools.get_for(key(0), 10s);
      if (l && echoes(l->get())) ok.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(pools.stats().pools_created, 1u);
  EXPECT_EQ(pools.size(), 1u);
}

TEST_F(KeyedPoolTest, FullKeyTimesOutWhileAnotherKeyWorks) {
  keyed pools = make(config(2, 0));
  auto a = pools.get(key(0));
  auto b = pools.get(key(0));
  ASSERT_TRUE(a && b);

  auto third = pools.get_for(key(0), 50ms);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error(), errc::timeout);
  EXPECT_EQ(pools.stats(key(0))->dials, 2u);  // the per-key limit held: no third connection

  auto other = pools.get_for(key(1), 10s);
  ASSERT_TRUE(other) << other.error().message();
  EXPECT_TRUE(echoes(other->get()));

  ASSERT_FALSE(a->release());  // room again on key 0
  auto again = pools.get_for(key(0), 10s);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(pools.stats(key(0))->in_use, 2u);
}

TEST_F(KeyedPoolTest, MakeConfigMayGiveAKeyASmallerPoolNeverALargerOne) {
  keyed_config cfg = config(3, 0);
  cfg.make_config = [inner = cfg.make_config, small = key(2)](const endpoint& e) {
    auto c = inner(e);
    c.max_size = e == small ? 1 : 100;  // 100: capped at per_key_max
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto a = pools.get(key(2));
  auto b = pools.get(key(0));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(pools.stats(key(2))->max, 1u);
  EXPECT_EQ(pools.stats(key(0))->max, 3u);
  auto blocked = pools.get_for(key(2), 20ms);
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error(), errc::timeout);
}

TEST_F(KeyedPoolTest, GlobalLimitBlocksANewKeyUntilAConnectionIsReturnedThenReclaimsIt) {
  keyed pools = make(config(3, 3));
  auto l0 = pools.get(key(0));
  auto l1 = pools.get(key(1));
  auto l2 = pools.get(key(2));
  ASSERT_TRUE(l0 && l1 && l2);
  EXPECT_EQ(pools.stats().open, 3u);

  std::atomic<bool> done{false};
  std::optional<socket_lease> fourth;
  std::error_code fourth_error;
  std::thread getter([&] {
    auto l = pools.get_for(key(3), 30s);
    if (l) {
      fourth.emplace(std::move(*l));
    } else {
      fourth_error = l.error();
    }
    done.store(true);
  });
  // It waits for a global token: the limit holds while all three connections are lent.
  ASSERT_TRUE(wait_for([&] { return pools.stats().global_waiters == 1; }));
  EXPECT_FALSE(done.load());
  EXPECT_EQ(pools.stats().open, 3u);
  EXPECT_EQ(server(3).accepted_total(), 0u);

  // Key 1's connection comes back idle: the waiting dial closes it and takes its token.
  ASSERT_FALSE(l1->release());
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  getter.join();
  ASSERT_TRUE(fourth.has_value()) << fourth_error.message();
  EXPECT_EQ(peer_host(fourth->get()), "127.0.0.4");
  EXPECT_TRUE(echoes(fourth->get()));

  const netpool::keyed_pool_stats s = pools.stats();
  EXPECT_EQ(s.open, 3u);
  EXPECT_EQ(s.reclaimed, 1u);
  EXPECT_GE(s.global_waits, 1u);
  EXPECT_EQ(pools.stats(key(1))->active, 0u);
  EXPECT_TRUE(wait_for([&] { return server(1).connection_count() == 0; }));
  // The reclaim did not run the user's on_borrow on the connection it closed, is no get of key 1,
  // and is no error: it used to be a try_get() and a discard(), counted as both.
  EXPECT_EQ(counts_->borrows.load(), 4);
  const netpool::pool_stats victim = *pools.stats(key(1));
  EXPECT_EQ(victim.closed_reclaimed, 1u);
  EXPECT_EQ(victim.closed_error, 0u);
  EXPECT_EQ(victim.gets, 1u);
}

TEST_F(KeyedPoolTest, IdleConnectionOfAnotherKeyIsReclaimedAtOnceLeastRecentlyUsedFirst) {
  keyed pools = make(config(2, 2));
  {
    auto a = pools.get(key(0));
    ASSERT_TRUE(a);
  }
  // Key 0 last used strictly before key 1: a sleep only ever makes the gap longer, never shorter.
  std::this_thread::sleep_for(5ms);
  {
    auto b = pools.get(key(1));
    ASSERT_TRUE(b);
  }
  EXPECT_EQ(pools.stats().open, 2u);
  auto c = pools.get_for(key(2), 10s);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(pools.stats().reclaimed, 1u);
  EXPECT_EQ(pools.stats().open, 2u);
  EXPECT_EQ(pools.stats(key(0))->active, 0u);  // the least recently used key gave its connection up
  EXPECT_EQ(pools.stats(key(1))->idle, 1u);
}

// "Least recently used" is by each key's last get, not its first: key 0, created first but used
// again after key 1, keeps its connection. With eviction on, the last get was stored only when the
// one before was older than evict_idle_after / 8 (75 s here), so key 0 still looked older and lost
// its connection (found by review, session 27); it is now stored to within 1 ms.
TEST_F(KeyedPoolTest, ReclaimGoesByEachKeysLastGetNotItsFirst) {
  auto cfg = config(2, 2);
  cfg.evict_idle_after = 10min;
  keyed pools = make(std::move(cfg));
  ASSERT_TRUE(pools.get(key(0)));
  std::this_thread::sleep_for(5ms);  // each gap well over 1 ms: a sleep only ever makes it longer
  ASSERT_TRUE(pools.get(key(1)));
  std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(pools.get(key(0)));
  auto c = pools.get_for(key(2), 10s);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(pools.stats().reclaimed, 1u);
  EXPECT_EQ(pools.stats(key(1))->active, 0u) << "the key used longest ago kept its connection";
  EXPECT_EQ(pools.stats(key(0))->idle, 1u);
}

// The dial's own deadline ends its wait for a global token: here dial_timeout (50 ms) is sooner
// than the get's (30 s), so the get dials on its own thread and fails with exhausted.
TEST_F(KeyedPoolTest, DialGivesUpWithExhaustedAtItsDeadlineAndLosesNoToken) {
  keyed_config cfg = config(3, 3);
  cfg.make_config = [inner = cfg.make_config](const endpoint& e) {
    auto c = inner(e);
    c.dial_timeout = 50ms;
    // A backoff after the exhausted dial would fail the key's next gets at once for 5-10 s.
    c.dial_backoff_floor = 10s;
    c.dial_backoff_cap = 10s;
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto l0 = pools.get(key(0));
  auto l1 = pools.get(key(1));
  auto l2 = pools.get(key(2));
  ASSERT_TRUE(l0 && l1 && l2);

  auto fourth = pools.get_for(key(3), 30s);
  ASSERT_FALSE(fourth);
  EXPECT_EQ(fourth.error(), errc::exhausted);
  const netpool::keyed_pool_stats s = pools.stats();
  EXPECT_EQ(s.global_exhausted, 1u);
  EXPECT_EQ(s.global_waiters, 0u);
  EXPECT_EQ(s.open, 3u);
  EXPECT_EQ(s.total.active, 3u);
  // The global limit says nothing about key 3's backend: no backoff, no "last dial error".
  EXPECT_EQ(pools.stats(key(3))->dial_failures, 1u);  // counted, as a dial that made nothing

  // Once a connection comes back the key works at once: it used to back off after the exhausted
  // dial and fail fast with exhausted (the reviewer saw ~8 ms of it with the default backoff).
  ASSERT_FALSE(l0->release());
  auto got = pools.get_for(key(3), 10s);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(peer_host(got->get()), "127.0.0.4");
  EXPECT_EQ(pools.stats().open, 3u);
  EXPECT_EQ(pools.stats(key(3))->fast_failures, 0u);
}

// A get whose deadline comes before the dial's gives up on its own deadline. Whether its dial
// went on without it (on a dialer thread of the sub-pool, waiting for a token on the dial's own
// deadline) or ended with the get, no token is lost, and the key works once room comes back.
TEST_F(KeyedPoolTest, ImpatientGetAtTheGlobalLimitLosesNoToken) {
  keyed pools = make(config(3, 3));
  auto l0 = pools.get(key(0));
  auto l1 = pools.get(key(1));
  auto l2 = pools.get(key(2));
  ASSERT_TRUE(l0 && l1 && l2);

  auto fourth = pools.get_for(key(3), 50ms);
  ASSERT_FALSE(fourth);
  // Its own deadline came first (its dial's is dial_timeout away), whether its sub-pool dials on
  // a dialer thread (the get times out in line) or on this thread (the dial's wait for a token
  // ends at the get's deadline).
  EXPECT_EQ(fourth.error(), errc::timeout) << fourth.error().message();
  EXPECT_EQ(pools.stats().open, 3u);

  ASSERT_FALSE(l0->release());
  std::optional<socket_lease> got;
  EXPECT_TRUE(wait_for([&] {
    auto l = pools.get_for(key(3), 1s);
    if (l) got.emplace(std::move(*l));
    return got.has_value();
  }));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(peer_host(got->get()), "127.0.0.4");
  // A dial started for the retries may still wait for a token on its own deadline: tokens, not
  // slots, are what the global limit counts.
  EXPECT_EQ(pools.stats().open, 3u);
}

TEST_F(KeyedPoolTest, FailedDialsGiveTheirTokenBack) {
  netpool::test::refused_port refused;
  keyed pools = make(config(2, 1));
  const endpoint dead{"127.0.0.1", refused.port()};
  auto failed = pools.get_for(dead, 10s);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), std::errc::connection_refused);
  EXPECT_EQ(pools.stats().open, 0u);

  auto ok = pools.get_for(key(1), 10s);  // the only token is free again
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_EQ(pools.stats().open, 1u);
}

TEST_F(KeyedPoolTest, OnConnectRefusalClosesTheConnectionAndGivesItsTokenBack) {
  keyed_config cfg = config(2, 1);
  cfg.make_config = [inner = cfg.make_config, refused_key = key(1)](const endpoint& e) {
    auto c = inner(e);
    if (e == refused_key) {
      c.on_connect = [](netpool::socket&) { return std::make_error_code(std::errc::permission_denied); };
    }
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto refused = pools.get_for(key(1), 10s);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), std::errc::permission_denied);
  EXPECT_EQ(counts_->hook_closes.load(), 1);  // the user's on_close still ran (chained)
  EXPECT_EQ(pools.stats().open, 0u);
  auto ok = pools.get_for(key(0), 10s);
  ASSERT_TRUE(ok) << ok.error().message();
}

TEST_F(KeyedPoolTest, OnConnectTakingTheDeadlineIsGivenTheDialsDeadline) {
  using clock = std::chrono::steady_clock;
  keyed_config cfg = config(2, 1);
  std::atomic<clock::rep> given{0};
  cfg.make_config = [inner = cfg.make_config, &given](const endpoint& e) {
    auto c = inner(e);
    c.dial_timeout = 3s;
    c.on_connect = [&given](netpool::socket&, clock::time_point deadline) {
      given.store(deadline.time_since_epoch().count());
      return std::error_code();
    };
    return c;
  };
  keyed pools = make(std::move(cfg));
  const clock::time_point before = clock::now();
  auto got = pools.get_for(key(0), 10s);  // more patient than dial_timeout: the pool's own deadline
  const clock::time_point after = clock::now();
  ASSERT_TRUE(got) << got.error().message();
  const clock::time_point deadline{clock::duration(given.load())};
  EXPECT_GE(deadline, before + 3s);
  EXPECT_LE(deadline, after + 3s);
}

// A factory that returns a socket that is not open made no connection: the core fails that dial
// (errc::dial_failed) and destroys the socket without on_close. The wrapped factory must give the
// global token back itself: it used to keep it, and the limit shrank by one for good.
TEST_F(KeyedPoolTest, AFactoryThatReturnsAClosedSocketLosesNoToken) {
  keyed_config cfg = config(2, 1);
  cfg.make_config = [inner = cfg.make_config, broken = key(1)](const endpoint& e) {
    auto c = inner(e);
    if (e == broken) {
      c.factory = [](std::chrono::steady_clock::time_point) -> netpool::result<netpool::socket> {
        return netpool::socket();  // fd -1
      };
    }
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto failed = pools.get_for(key(1), 10s);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), errc::dial_failed);
  EXPECT_EQ(pools.stats().open, 0u);
  auto ok = pools.get_for(key(0), 10s);  // the only token is free again
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(echoes(ok->get()));
  EXPECT_EQ(pools.stats().open, 1u);
}

// dial_not_needed is the keyed pool's own word for a dial that a returned connection made
// unnecessary, and a keyed get looks again on it until its deadline. A factory of the user's that
// returns it fails its dial with dial_failed, and an on_connect that does refuses the connection
// (hook_rejected): a get without a deadline would otherwise go round for ever, dialing (and, for
// on_connect, closing) a connection each round. (It used to give up after a thousand rounds and
// return the internal code.) With and without a global limit: the budget's wait is on the way only
// with one.
TEST_F(KeyedPoolTest, AFactoryOrOnConnectThatReturnsDialNotNeededFailsItsDial) {
  for (const bool from_on_connect : {false, true}) {
    for (const std::size_t global_max : {std::size_t{0}, std::size_t{1}}) {
      SCOPED_TRACE(testing::Message()
                   << (from_on_connect ? "on_connect" : "factory") << ", global_max " << global_max);
      keyed_config cfg = config(2, global_max);
      cfg.make_config = [inner = cfg.make_config, from_on_connect](const endpoint& e) {
        auto c = inner(e);
        c.dial_backoff_floor = 100s;  // the second get below fails fast, however slow the machine
        c.dial_backoff_cap = 100s;
        if (from_on_connect) {
          c.on_connect = [](netpool::socket&) { return std::error_code(errc::dial_not_needed); };
        } else {
          c.factory = [](std::chrono::steady_clock::time_point) -> netpool::result<netpool::socket> {
            return errc::dial_not_needed;
          };
        }
        return c;
      };
      keyed pools = make(std::move(cfg));
      auto get = std::async(std::launch::async, [&] { return pools.get(key(0)); });  // no deadline
      if (get.wait_for(20s) != std::future_status::ready) {
        pools.close();  // ends the get (pool_closed): its future's destructor would wait for ever
        FAIL() << "the get went round and round";
      }
      auto got = get.get();
      const errc expected = from_on_connect ? errc::hook_rejected : errc::dial_failed;
      ASSERT_FALSE(got);
      EXPECT_EQ(got.error(), expected);
      EXPECT_EQ(pools.stats().total.dial_failures, 1u);
      EXPECT_EQ(pools.stats().total.closed_hook, from_on_connect ? 1u : 0u);
      EXPECT_EQ(pools.stats().open, 0u);
      auto again = pools.get_for(key(0), 10s);  // the token was given back, and the key backs off
      ASSERT_FALSE(again);
      EXPECT_EQ(again.error(), expected);
      EXPECT_EQ(pools.stats().total.dial_failures, 1u) << "dialed again: the key did not back off";
    }
  }
}

// The look a keyed get takes after a dial that was not needed (keyed_state::try_get_until) is the
// sub-pool's try_get(), but with the get's deadline: once a check has failed, it starts no other
// past the deadline, and finding nothing then is the get's timeout. try_get() checks every idle
// connection it meets, which could hold a get long past its deadline.
TEST(KeyedStateTest, TheLookAfterADialNotNeededKeepsTheDeadline) {
  using tracked = netpool::test::tracked_conn;
  using state = netpool::detail::keyed_state<int, tracked, std::hash<int>, std::equal_to<int>>;
  netpool::test::connection_registry registry;
  netpool::test::factory_control factory{registry};
  std::atomic<int> checks{0};
  netpool::pool_config<tracked> cfg;
  cfg.factory = factory.function();
  cfg.max_size = 3;
  cfg.health_check = [&checks](tracked&) {
    checks.fetch_add(1);
    return false;  // every check fails: the connection is closed and the look goes on
  };
  auto pool = netpool::pool<tracked>::create(cfg).value();
  const auto fill = [&] {
    std::vector<netpool::lease<tracked>> held;
    held.reserve(3);
    for (int i = 0; i < 3; ++i) held.push_back(std::move(pool.get_for(netpool::test::patience).value()));
    // idle now: the checks below condemn them
  };
  const auto now = std::chrono::steady_clock::now();

  fill();
  auto past = state::try_get_until(pool, now - 1s, netpool::source_location::current());
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error(), errc::timeout);
  EXPECT_EQ(checks.load(), 1) << "a second check started past the deadline";
  EXPECT_EQ(pool.stats().timeouts, 1u);

  checks = 0;
  (void)pool.try_get();  // the other two: nothing idle is left to check afterwards
  fill();
  checks = 0;
  auto later = state::try_get_until(pool, now + 1h, netpool::source_location::current());
  ASSERT_FALSE(later);
  EXPECT_EQ(later.error(), errc::exhausted);  // nothing idle, and time left: the get goes on
  EXPECT_EQ(checks.load(), 3) << "before its deadline the look checks every idle connection";

  fill();
  checks = 0;
  EXPECT_FALSE(pool.try_get());  // try_get() has no deadline of its own
  EXPECT_EQ(checks.load(), 3);
}

// A get whose dial waits for a global token while a connection of its own key comes back idle:
// the get waits inside its dial, not in its sub-pool's line, so no put hands that connection over.
// The dial ends (dial_not_needed, no backoff) and the get looks again and takes it. It used to
// sleep beside it until the dial's deadline and fail with exhausted; closing it to free a token
// instead (tried in review 14) made a busy key redial for about every other get.
TEST_F(KeyedPoolTest, ADialWaitingForATokenGivesWayToAConnectionOfItsOwnKey) {
  keyed_config cfg = config(2, 1);  // global_max below per_key_max: a key's second get waits
  cfg.make_config = [inner = cfg.make_config](const endpoint& e) {
    auto c = inner(e);
    c.dial_timeout = 30s;        // beyond the wait below: only the idle connection ends it in time
    c.dial_backoff_floor = 10s;  // a backoff after the ended dial would fail the next dial at once
    c.dial_backoff_cap = 10s;
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto held = pools.get(key(0));
  ASSERT_TRUE(held);
  const int held_fd = held->get().native_handle();
  // No deadline: the get dials on its own thread, and that dial waits for the only token.
  auto second = std::async(std::launch::async, [&] { return pools.get(key(0)); });
  ASSERT_TRUE(wait_for([&] { return pools.stats().global_waiters == 1; }));
  ASSERT_FALSE(held->release());  // idle, in the key whose dial waits

  ASSERT_EQ(second.wait_for(20s), std::future_status::ready) << "the get slept beside an idle connection";
  auto got = second.get();
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->get().native_handle(), held_fd) << "not the connection that came back";
  EXPECT_TRUE(echoes(got->get()));
  const netpool::keyed_pool_stats s = pools.stats();
  EXPECT_EQ(s.reclaimed, 0u);
  EXPECT_EQ(s.open, 1u);
  EXPECT_EQ(s.total.dial_failures, 1u);  // the dial that was not needed
  EXPECT_EQ(s.total.fast_failures, 0u);
  EXPECT_EQ(server(0).accepted_total(), 1u) << "a second connection was dialed";
}

// A busy key above the global limit: threads get and return its connections. Each returned
// connection goes to a get (directly, or through a dial that gives way to it); none is closed to
// make room for another dial of the same key, and no get fails. Bounded in gets, not timed.
TEST_F(KeyedPoolTest, ABusyKeyAtTheGlobalLimitKeepsItsConnections) {
  keyed_config cfg = config(8, 2);
  cfg.make_config = [inner = cfg.make_config](const endpoint& e) {
    auto c = inner(e);
    c.dial_timeout = 10s;  // bounds each get: a dial that waits this long for a token fails it
    return c;
  };
  keyed pools = make(std::move(cfg));
  constexpr int threads = 4;
  constexpr int gets_each = 150;
  std::atomic<int> failed{0};
  netpool::test::thread_group workers;
  for (int t = 0; t < threads; ++t) {
    workers.spawn([&] {
      for (int i = 0; i < gets_each; ++i) {
        auto l = pools.get(key(0));  // no deadline of its own: its dial runs on this thread
        if (!l) {
          failed.fetch_add(1);
          continue;
        }
        std::this_thread::yield();
      }
    });
  }
  workers.join_all();
  EXPECT_EQ(failed.load(), 0);
  const netpool::keyed_pool_stats s = pools.stats();
  EXPECT_EQ(s.reclaimed, 0u);
  EXPECT_LE(counts_->dials.load(), 2) << "connections of the busy key were closed and dialed again";
  EXPECT_EQ(s.total.gets, static_cast<std::uint64_t>(threads * gets_each));
}

TEST_F(KeyedPoolTest, IdleSubPoolsAreEvictedBusyOnesAreNot) {
  keyed_config cfg = config(2, 0);
  cfg.evict_idle_after = 30ms;
  keyed pools = make(std::move(cfg));
  {
    auto a = pools.get(key(0));
    ASSERT_TRUE(a);
  }
  auto held = pools.get(key(1));
  ASSERT_TRUE(held);

  ASSERT_TRUE(wait_for([&] { return !pools.stats(key(0)).has_value(); }));
  EXPECT_TRUE(wait_for([&] { return server(0).connection_count() == 0; }));  // its idle connection closed
  // Key 1 has a lent connection: whatever the time, it stays.
  EXPECT_TRUE(pools.stats(key(1)).has_value());
  EXPECT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools.stats().pools_evicted, 1u);
  EXPECT_TRUE(echoes(held->get()));

  ASSERT_FALSE(held->release());
  ASSERT_TRUE(wait_for([&] { return pools.size() == 0; }));
  EXPECT_EQ(pools.stats().pools_evicted, 2u);
  // An evicted sub-pool leaves the map a moment before the sweeper closes it and keeps its counters.
  EXPECT_TRUE(wait_for([&] { return pools.stats().open == 0 && pools.stats().total.closed_pool == 2; }));
  EXPECT_EQ(pools.stats().total.gets, 2u);  // counters outlive their sub-pools

  // A key used again gets a new sub-pool.
  auto again = pools.get_for(key(0), 10s);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_TRUE(echoes(again->get()));
  EXPECT_EQ(pools.stats().pools_created, 3u);
}

TEST_F(KeyedPoolTest, ManualMaintenanceEvictsWithoutAThread) {
  keyed_config cfg = config(2, 0);
  cfg.evict_idle_after = 1ms;
  cfg.background_maintenance = false;
  keyed pools = make(std::move(cfg));
  {
    auto a = pools.get(key(0));
    ASSERT_TRUE(a);
  }
  EXPECT_EQ(pools.size(), 1u);
  EXPECT_TRUE(wait_for([&] {
    (void)pools.maintain();
    return pools.size() == 0;
  }));
  EXPECT_EQ(pools.stats().pools_evicted, 1u);
}

TEST_F(KeyedPoolTest, SubPoolsWithoutTheirOwnMaintainerAreMaintainedByTheKeyedPool) {
  keyed_config cfg = config(2, 0);
  cfg.make_config = [inner = cfg.make_config](const endpoint& e) {
    auto c = inner(e);
    c.background_maintenance = false;  // no thread per key ...
    c.max_idle_time = 20ms;            // ... yet idle connections are still reaped
    return c;
  };
  keyed pools = make(std::move(cfg));
  {
    auto a = pools.get(key(0));
    ASSERT_TRUE(a);
    EXPECT_TRUE(echoes(a->get()));
  }
  EXPECT_TRUE(wait_for([&] { return server(0).connection_count() == 0; }));
  ASSERT_TRUE(pools.stats(key(0)).has_value());  // no eviction configured: the sub-pool stays
  EXPECT_EQ(pools.stats(key(0))->closed_idle, 1u);
  EXPECT_TRUE(wait_for([&] { return pools.stats().open == 0; }));
}

TEST_F(KeyedPoolTest, RemoveClosesTheSubPoolButNotItsLeases) {
  keyed pools = make(config(2, 2));
  auto held = pools.get(key(0));
  ASSERT_TRUE(held);
  EXPECT_TRUE(pools.remove(key(0)));
  EXPECT_FALSE(pools.remove(key(0)));
  EXPECT_EQ(pools.size(), 0u);
  EXPECT_EQ(pools.stats().pools_removed, 1u);
  EXPECT_TRUE(echoes(held->get()));   // still valid
  EXPECT_EQ(pools.stats().open, 1u);  // and still counted

  EXPECT_EQ(held->release(), errc::pool_closed);  // returning it closes it
  EXPECT_TRUE(wait_for([&] { return server(0).connection_count() == 0; }));
  EXPECT_EQ(pools.stats().open, 0u);
  auto fresh = pools.get(key(0));
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(echoes(fresh->get()));
}

TEST_F(KeyedPoolTest, RemovingAKeyStopsItsDialWaitingForTheGlobalLimit) {
  keyed_config cfg = config(3, 3);
  cfg.make_config = [inner = cfg.make_config](const endpoint& e) {
    auto c = inner(e);
    c.dial_timeout = 60s;  // far beyond the wait below: only the removal can end the dial's wait
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto l0 = pools.get(key(0));
  auto l1 = pools.get(key(1));
  auto l2 = pools.get(key(2));
  ASSERT_TRUE(l0 && l1 && l2);
  std::atomic<bool> done{false};
  std::error_code getter_error;
  std::thread getter([&] {
    auto l = pools.get_for(key(3), 60s);
    getter_error = l ? std::error_code() : l.error();
    done.store(true);
  });
  ASSERT_TRUE(wait_for([&] { return pools.stats().global_waiters == 1; }));

  EXPECT_TRUE(pools.remove(key(3)));
  EXPECT_TRUE(wait_for([&] { return done.load() && pools.stats().global_waiters == 0; }));
  getter.join();
  EXPECT_EQ(getter_error, errc::pool_closed);
  EXPECT_EQ(pools.stats().open, 3u);
  EXPECT_EQ(server(3).accepted_total(), 0u);
}

TEST_F(KeyedPoolTest, LeasesOutliveTheKeyedPool) {
  std::optional<socket_lease> kept;
  {
    keyed pools = make(config(2, 2));
    auto a = pools.get(key(0));
    auto b = pools.get(key(1));
    ASSERT_TRUE(a && b);
    kept.emplace(std::move(*a));
  }  // b returns to a closed pool; the keyed pool and both sub-pools are gone
  EXPECT_TRUE(echoes(kept->get()));
  EXPECT_TRUE(wait_for([&] { return server(1).connection_count() == 0; }));
  EXPECT_EQ(server(0).connection_count(), 1u);
  EXPECT_EQ(counts_->closes.load(), 1);

  EXPECT_EQ(kept->release(), errc::pool_closed);
  EXPECT_TRUE(wait_for([&] { return server(0).connection_count() == 0; }));
  EXPECT_TRUE(all_closed());
}

TEST_F(KeyedPoolTest, CloseFailsWaitersClosesIdleConnectionsAndLeavesLeasesValid) {
  keyed pools = make(config(1, 0));
  auto held = pools.get(key(0));
  ASSERT_TRUE(held);
  {
    auto idle = pools.get(key(1));
    ASSERT_TRUE(idle);
  }
  std::atomic<bool> done{false};
  std::error_code waiter_error;
  std::thread waiter([&] {
    auto l = pools.get_for(key(0), 30s);  // key 0 is full: waits in its sub-pool
    waiter_error = l ? std::error_code() : l.error();
    done.store(true);
  });
  ASSERT_TRUE(wait_for([&] {
    auto s = pools.stats(key(0));
    return s && s->waiters == 1;
  }));

  pools.close();
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  waiter.join();
  EXPECT_EQ(waiter_error, errc::pool_closed);
  EXPECT_TRUE(pools.closed());
  EXPECT_EQ(pools.size(), 0u);
  auto after = pools.get(key(0));
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error(), errc::pool_closed);
  EXPECT_EQ(pools.try_get(key(0)).error(), errc::pool_closed);
  pools.close();  // idempotent

  EXPECT_TRUE(wait_for([&] { return server(1).connection_count() == 0; }));  // idle: closed at once
  EXPECT_TRUE(echoes(held->get()));                                          // lent: still valid
  EXPECT_EQ(pools.stats().open, 1u);
  EXPECT_EQ(held->release(), errc::pool_closed);
  EXPECT_EQ(pools.stats().open, 0u);
  EXPECT_TRUE(all_closed());
  EXPECT_TRUE(wait_for([&] { return server(0).connection_count() == 0; }));
}

TEST_F(KeyedPoolTest, CloseWakesDialsWaitingForTheGlobalLimit) {
  keyed pools = make(config(3, 3));
  auto l0 = pools.get(key(0));
  auto l1 = pools.get(key(1));
  auto l2 = pools.get(key(2));
  ASSERT_TRUE(l0 && l1 && l2);
  std::atomic<bool> done{false};
  std::error_code waiter_error;
  std::thread waiter([&] {
    auto l = pools.get_for(key(3), 30s);
    waiter_error = l ? std::error_code() : l.error();
    done.store(true);
  });
  ASSERT_TRUE(wait_for([&] { return pools.stats().global_waiters == 1; }));

  pools.close();
  ASSERT_TRUE(wait_for([&] { return done.load(); }));
  waiter.join();
  EXPECT_EQ(waiter_error, errc::pool_closed);

  // Every token comes back as the leases do.
  EXPECT_EQ(pools.stats().open, 3u);
  (void)l0->release();
  (void)l1->release();
  (void)l2->release();
  EXPECT_EQ(pools.stats().open, 0u);
  EXPECT_TRUE(all_closed());
  EXPECT_EQ(server(3).accepted_total(), 0u);
}

TEST_F(KeyedPoolTest, InvalidKeyedConfigIsRejected) {
  keyed_config missing;
  EXPECT_EQ(netpool::validate(missing), keyed_config_problem::missing_make_config);
  auto r = keyed::create(missing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_config);

  keyed_config zero = config(0, 0);
  EXPECT_EQ(netpool::validate(zero), keyed_config_problem::per_key_max_zero);
  EXPECT_EQ(keyed::create(zero).error(), errc::invalid_config);

  keyed_config huge = config(netpool::pool_config<netpool::socket>::max_supported + 1, 0);
  EXPECT_EQ(netpool::validate(huge), keyed_config_problem::per_key_max_too_large);
  EXPECT_EQ(keyed::create(huge).error(), errc::invalid_config);

  keyed_config negative = config(2, 0);
  negative.evict_idle_after = -1ms;
  EXPECT_EQ(netpool::validate(negative), keyed_config_problem::evict_idle_after_negative);
  EXPECT_EQ(keyed::create(negative).error(), errc::invalid_config);

  for (auto p :
       {keyed_config_problem::none, keyed_config_problem::missing_make_config,
        keyed_config_problem::per_key_max_zero, keyed_config_problem::per_key_max_too_large,
        keyed_config_problem::evict_idle_after_negative, keyed_config_problem::make_config_threw,
        keyed_config_problem::min_size_with_global_limit, keyed_config_problem::pool_config_rejected}) {
    EXPECT_STRNE(netpool::describe(p), "");
    EXPECT_STRNE(netpool::describe(p), "unknown keyed_config_problem");
  }
}

TEST_F(KeyedPoolTest, InvalidKeyConfigFailsThatKeyOnly) {
  keyed_config cfg = config(2, 2);
  const endpoint no_factory{"127.0.0.1", 1};
  const endpoint throws{"127.0.0.1", 2};
  const endpoint warm{"127.0.0.1", 3};
  const endpoint bad_options{"127.0.0.1", 4};
  cfg.make_config = [inner = cfg.make_config, no_factory, throws, warm, bad_options](const endpoint& e) {
    auto c = inner(e);
    if (e == no_factory) c.factory = nullptr;
    if (e == throws) throw std::runtime_error("no such shard");
    if (e == warm) c.min_size = 1;  // not with a global limit
    if (e == bad_options) {
      netpool::tcp_options options;
      options.keep_alive_count = 128;  // out of the kernel's range: every dial would fail
      c.factory = netpool::tcp_dialer(e.host, e.port, options);
    }
    return c;
  };
  keyed pools = make(std::move(cfg));

  for (const endpoint& bad : {no_factory, throws, warm, bad_options}) {
    auto r = pools.get_for(bad, 1s);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), errc::invalid_config);
  }
  EXPECT_EQ(pools.size(), 0u);
  const netpool::key_config_check missing = pools.check_key(no_factory);
  EXPECT_EQ(missing.problem, keyed_config_problem::pool_config_rejected);
  EXPECT_EQ(missing.pool_problem, netpool::config_problem::missing_factory);
  EXPECT_EQ(pools.check_key(throws).problem, keyed_config_problem::make_config_threw);
  EXPECT_EQ(pools.check_key(warm).problem, keyed_config_problem::min_size_with_global_limit);
  const netpool::key_config_check options = pools.check_key(bad_options);
  EXPECT_EQ(options.problem, keyed_config_problem::pool_config_rejected);
  EXPECT_EQ(options.pool_problem, netpool::config_problem::tcp_options_out_of_range);
  EXPECT_EQ(pools.check_key(key(0)).problem, keyed_config_problem::none);

  auto good = pools.get_for(key(0), 10s);  // other keys are unaffected
  ASSERT_TRUE(good) << good.error().message();
}

TEST_F(KeyedPoolTest, MinSizeWorksWithoutAGlobalLimit) {
  keyed_config cfg = config(2, 0);
  cfg.make_config = [inner = cfg.make_config](const endpoint& e) {
    auto c = inner(e);
    c.min_size = 2;
    return c;
  };
  keyed pools = make(std::move(cfg));
  auto l = pools.get(key(0));
  ASSERT_TRUE(l);
  // The sub-pool's maintainer opens a second one beside the lent one.
  EXPECT_TRUE(wait_for([&] { return pools.stats(key(0))->idle == 1; }));
  EXPECT_EQ(pools.stats().open, 2u);
}

TEST_F(KeyedPoolTest, MovedKeyedPoolKeepsWorking) {
  keyed first = make(config(2, 2));
  auto a = first.get(key(0));
  ASSERT_TRUE(a);
  keyed second = std::move(first);
  EXPECT_EQ(second.size(), 1u);
  auto b = second.get(key(1));
  ASSERT_TRUE(b);
  EXPECT_TRUE(echoes(b->get()));
  // The global limit is reached: key 2's dial reclaims (nothing is idle) and waits, through the
  // factory's pointer to the state, which survived the move.
  auto c = second.get_for(key(2), 50ms);
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error() == errc::timeout || c.error() == errc::exhausted) << c.error().message();
  EXPECT_EQ(second.stats().open, 2u);
}

// Sockets, not all descriptors: in one CI run under AddressSanitizer (ctest -j2) a count of every
// descriptor taken here, just after the fixture started the servers' threads, was 16, and 14 for
// the rest of the test: two descriptors open for a moment at the start, before any pool existed,
// so not the pools', and the check failed with nothing leaked. Every descriptor a pool opens is a
// socket, and the servers' sockets all exist by the time their constructors return.
TEST_F(KeyedPoolTest, NoDescriptorLeaks) {
  const std::size_t before = netpool::test::open_socket_count();
  {
    keyed_config cfg = config(2, 3);
    cfg.evict_idle_after = 10ms;
    keyed pools = make(std::move(cfg));
    for (int round = 0; round < 3; ++round) {
      for (std::size_t i = 0; i < server_count; ++i) {
        auto l = pools.get_for(key(i), 10s);
        ASSERT_TRUE(l) << l.error().message();
        EXPECT_TRUE(echoes(l->get()));
        if (i == 2) (void)l->discard();
      }
    }
    auto held = pools.get(key(0));
    ASSERT_TRUE(held);
    EXPECT_TRUE(wait_for([&] { return pools.size() == 1; }));  // the others were evicted
  }
  EXPECT_TRUE(all_closed());
  // Server-side descriptors close once each server notices its client left.
  EXPECT_TRUE(wait_for([&] { return netpool::test::open_socket_count() == before; }))
      << "open sockets: " << netpool::test::open_socket_count() << ", before: " << before;
}

// ---- counters of sub-pools that go away (no sockets needed) ---------------------------------------

struct plain_conn {
  int id = 0;
};
using plain_keyed = netpool::keyed_pool<std::string, plain_conn>;

// Sub-pools of plain_conns; `adjust` changes each sub-pool's config.
netpool::keyed_pool_config<std::string, plain_conn> plain_keyed_config(
    std::function<void(netpool::pool_config<plain_conn>&)> adjust = {}) {
  netpool::keyed_pool_config<std::string, plain_conn> cfg;
  cfg.make_config = [adjust = std::move(adjust)](const std::string&) {
    netpool::pool_config<plain_conn> c;
    c.factory = [](auto) -> netpool::result<plain_conn> { return plain_conn{1}; };
    if (adjust) adjust(c);
    return c;
  };
  return cfg;
}

// A scrape while a sub-pool is being closed (its on_close can take a while: a QUIT round trip) must
// not see its counters vanish: Prometheus reads any drop of a counter as a reset. on_close holds the
// close open until the test has read the stats inside it.
TEST(KeyedPoolCounters, NeverGoDownWhileASubPoolIsRemovedEvictedOrClosed) {
  enum class how { remove, evict, close };
  for (const how way : {how::remove, how::evict, how::close}) {
    SCOPED_TRACE(way == how::remove ? "remove" : way == how::evict ? "evict" : "close");
    std::atomic<bool> closing{false};
    std::atomic<bool> checked{false};
    netpool::keyed_pool_config<std::string, plain_conn> cfg;
    cfg.background_maintenance = false;
    cfg.evict_idle_after = way == how::evict ? 1ms : 0ms;
    cfg.make_config = [&](const std::string&) {
      netpool::pool_config<plain_conn> c;
      c.background_maintenance = false;
      c.factory = [](auto) -> netpool::result<plain_conn> { return plain_conn{1}; };
      c.on_close = [&](plain_conn&, netpool::close_reason) {
        closing.store(true);
        (void)wait_for([&] { return checked.load(); });
      };
      return c;
    };
    auto made = plain_keyed::create(std::move(cfg));
    ASSERT_TRUE(made);
    plain_keyed& pools = *made;
    for (int i = 0; i < 10; ++i) {
      auto a = pools.get("a");
      auto b = pools.get("a");
      ASSERT_TRUE(a && b);
    }
    const netpool::pool_stats before = pools.stats().total;
    ASSERT_EQ(before.gets, 20u);
    std::thread closer([&] {
      switch (way) {
        case how::remove:
          (void)pools.remove("a");
          break;
        case how::evict:
          (void)wait_for([&] {
            (void)pools.maintain();
            return pools.size() == 0;
          });
          break;
        case how::close:
          pools.close();
          break;
      }
    });
    const bool in_close = wait_for([&] { return closing.load(); });
    const netpool::pool_stats during = pools.stats().total;
    checked.store(true);
    closer.join();
    ASSERT_TRUE(in_close);
    EXPECT_EQ(during.gets, before.gets);
    EXPECT_EQ(during.dials, before.dials);
    const netpool::pool_stats after = pools.stats().total;
    EXPECT_EQ(after.gets, before.gets);
    EXPECT_EQ(after.dials, 2u);
    EXPECT_EQ(after.closed_pool, 2u) << "the two idle connections closed as the sub-pool went";
    EXPECT_EQ(pools.size(), 0u);
  }
}

// A lease can outlive its sub-pool (remove() or close() while it is out). What it adds when it
// comes back (the sub-pool closes it) must show in the keyed pool's counters: the retired sub-pool
// used to be destroyed as soon as no get held it, and a lease returned after that counted nowhere.
TEST(KeyedPoolCounters, ALeaseReturnedAfterItsSubPoolWentIsCounted) {
  enum class how { remove, close };
  for (const how way : {how::remove, how::close}) {
    SCOPED_TRACE(way == how::remove ? "remove" : "close");
    auto cfg =
        plain_keyed_config([](netpool::pool_config<plain_conn>& c) { c.background_maintenance = false; });
    cfg.background_maintenance = false;
    auto made = plain_keyed::create(std::move(cfg));
    ASSERT_TRUE(made);
    plain_keyed& pools = *made;
    auto held = pools.get("a");
    ASSERT_TRUE(held);
    { ASSERT_TRUE(pools.get("a")); }  // a second connection, idle from here on
    if (way == how::remove) {
      ASSERT_TRUE(pools.remove("a"));
    } else {
      pools.close();
    }
    const netpool::pool_stats before = pools.stats().total;
    EXPECT_EQ(before.closed_pool, 1u) << "the idle connection closed as the sub-pool went";

    EXPECT_EQ(held->release(), netpool::errc::pool_closed);
    const netpool::pool_stats after = pools.stats().total;
    EXPECT_EQ(after.closed_pool, 2u) << "the returned lease's connection, closed by its sub-pool";
    EXPECT_EQ(after.gets, 2u);
    EXPECT_EQ(after.dials, 2u);
    // Once nothing is out, the graveyard lets the sub-pool go; its counts stay.
    (void)pools.maintain();
    EXPECT_EQ(pools.stats().total.closed_pool, 2u);
    EXPECT_EQ(pools.stats().total.gets, 2u);
  }
}

// close() is idempotent and may be called from any thread: two at once used to both join the
// sweeper thread (the second join hung, or threw inside noexcept). Every caller must return, and
// only after the sweeper has stopped.
TEST(KeyedPoolClose, FromSeveralThreadsAtOnceEveryCallReturns) {
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    auto cfg = plain_keyed_config();
    cfg.background_maintenance = true;  // the sweeper thread
    auto made = plain_keyed::create(std::move(cfg));
    ASSERT_TRUE(made);
    plain_keyed& pools = *made;
    { ASSERT_TRUE(pools.get("a")); }  // the sweeper has a sub-pool to look after
    std::atomic<int> ready{0};
    std::atomic<int> returned{0};
    std::vector<std::thread> closers;
    closers.reserve(3);
    for (int t = 0; t < 3; ++t) {
      closers.emplace_back([&] {
        ready.fetch_add(1);
        while (ready.load() < 3) std::this_thread::yield();
        pools.close();
        returned.fetch_add(1);
      });
    }
    const bool all_returned = wait_for([&] { return returned.load() == 3; });
    if (!all_returned) {
      ADD_FAILURE() << "concurrent close() calls did not all return: " << returned.load() << " of 3";
      std::fflush(nullptr);
      std::_Exit(1);  // a hung closer cannot be joined
    }
    for (auto& t : closers) t.join();
    EXPECT_EQ(pools.size(), 0u);
    EXPECT_EQ(pools.get("a").error(), errc::pool_closed);
  }
}

// At the global limit, a get whose own deadline comes before its dial's fails with timeout, as the
// README says, whether its sub-pool dials on a dialer thread or on the caller's thread. (The
// caller-thread dial's wait for a token used to end at the get's deadline with exhausted.)
TEST(KeyedPoolGlobalLimit, AGetWhoseOwnDeadlineComesFirstTimesOut) {
  for (const bool background : {true, false}) {
    SCOPED_TRACE(background ? "dialer threads" : "dials on the caller's thread");
    auto cfg = plain_keyed_config([background](netpool::pool_config<plain_conn>& c) {
      c.dial_timeout = 10s;
      c.background_maintenance = background;
    });
    cfg.global_max = 1;
    auto made = plain_keyed::create(std::move(cfg));
    ASSERT_TRUE(made);
    plain_keyed& pools = *made;
    auto held = pools.get("a");
    ASSERT_TRUE(held);
    auto second = pools.get_for("b", 50ms);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error(), errc::timeout) << second.error().message();
    EXPECT_EQ(pools.stats().open, 1u);
  }
}

// try_get() is a use of its key: a key served only through try_get() must not be evicted as idle
// (it was, and from then on every try_get() answered `exhausted`: try_get creates no sub-pool).
TEST(KeyedPoolEviction, AKeyUsedOnlyThroughTryGetIsNotEvictedWhileInUse) {
  auto cfg = plain_keyed_config();
  // Long against the ~5 ms between uses, so that a busy machine's late wake-up is no quiet spell.
  cfg.evict_idle_after = 300ms;
  cfg.background_maintenance = false;  // deterministic: the test runs the rounds
  auto made = plain_keyed::create(std::move(cfg));
  ASSERT_TRUE(made);
  plain_keyed& pools = *made;
  { ASSERT_TRUE(pools.get_for("a", 1s)); }  // creates the sub-pool; one idle connection
  // Used every ~5 ms for over two eviction periods; a round after each use.
  const auto end = std::chrono::steady_clock::now() + 700ms;
  int served = 0;
  while (std::chrono::steady_clock::now() < end) {
    auto l = pools.try_get("a");
    ASSERT_TRUE(l) << "after " << served << " uses: " << l.error().message() << " (evicted "
                   << pools.stats().pools_evicted << ")";
    ++served;
    EXPECT_FALSE(l->release());
    std::this_thread::sleep_for(5ms);
    (void)pools.maintain();
  }
  EXPECT_EQ(pools.stats().pools_evicted, 0u);
  EXPECT_EQ(pools.stats().total.dials, 1u) << "one connection, reused throughout";
  // Once the key goes quiet it is evicted as usual.
  EXPECT_TRUE(wait_for([&] {
    (void)pools.maintain();
    return pools.size() == 0;
  }));
}

// "Practically never" must mean never: evict_idle_after + its touch resolution used to overflow
// and wrap negative, and every quiet sub-pool was evicted at the next round.
TEST(KeyedPoolCounters, EvictIdleAfterMaxNeverEvicts) {
  auto cfg = plain_keyed_config();
  cfg.background_maintenance = false;
  cfg.evict_idle_after = std::chrono::nanoseconds::max();
  auto made = plain_keyed::create(std::move(cfg));
  ASSERT_TRUE(made);
  {
    auto l = made->get("a");
    ASSERT_TRUE(l);
  }
  (void)made->maintain();
  EXPECT_EQ(made->size(), 1u);
  EXPECT_EQ(made->stats().pools_evicted, 0u);
}

// evict_idle_after = 2 h: a quiet sub-pool is due in about 2 h (its touch resolution, at most 1 ms,
// added). The sweeper waited without a timeout for any due time of an hour or more, so such
// sub-pools were evicted only if another key was created meanwhile. It sleeps at most an hour at a
// time now, and without a timeout only when nothing at all is due. (With 60 min, the round's due
// time was 67.5 min until 0.5.6 capped the resolution at 1 ms; now it is 60 min + 1 ms minus the
// time since the get, under an hour on a slow run: ASan in CI.)
TEST(KeyedPoolEviction, TheSweeperSleepsAtMostAnHourAndForeverOnlyWhenNothingIsDue) {
  using netpool::detail::keyed_sweeper_wait;
  EXPECT_EQ(keyed_sweeper_wait(std::chrono::nanoseconds::max()), std::nullopt);
  EXPECT_EQ(keyed_sweeper_wait(5ms), std::chrono::nanoseconds(5ms));
  EXPECT_EQ(keyed_sweeper_wait(1h), std::chrono::nanoseconds(1h));
  EXPECT_EQ(keyed_sweeper_wait(std::chrono::nanoseconds::max() - 1ns), std::chrono::nanoseconds(1h));

  auto cfg = plain_keyed_config();
  cfg.background_maintenance = false;
  cfg.evict_idle_after = 2h;
  auto made = plain_keyed::create(std::move(cfg));
  ASSERT_TRUE(made);
  {
    auto l = made->get("a");
    ASSERT_TRUE(l);
  }
  const std::chrono::nanoseconds next = made->maintain();
  EXPECT_GT(next, 60min);                                             // what the round says...
  EXPECT_EQ(keyed_sweeper_wait(next), std::chrono::nanoseconds(1h));  // ...and how long the sweeper sleeps
}

// A Hash that throws while an eviction holds the map's lock (here: on the second key's lookup)
// must not strand the first key: it was erased from the map already, and the exception used to
// skip its close and its burial, so its connection stayed open and its counters left total().
struct flaky_hash {
  static inline std::atomic<bool> throw_for_b{false};
  std::size_t operator()(const std::string& key) const {
    if (key == "b" && throw_for_b.load()) throw std::runtime_error("flaky_hash");
    return std::hash<std::string>{}(key);
  }
};

TEST(KeyedPoolEviction, AHashThatThrowsDuringAnEvictionStrandsNoSubPool) {
  using flaky_keyed = netpool::keyed_pool<std::string, plain_conn, flaky_hash>;
  netpool::keyed_pool_config<std::string, plain_conn> cfg = plain_keyed_config();
  cfg.background_maintenance = false;
  cfg.evict_idle_after = 1ms;
  auto made = flaky_keyed::create(std::move(cfg));
  ASSERT_TRUE(made);
  flaky_keyed& pools = *made;
  for (const char* key : {"a", "b"}) {
    auto l = pools.get(key);
    ASSERT_TRUE(l);
  }
  flaky_hash::throw_for_b = true;
  // Key "a" is evicted; "b" cannot be looked up while its hash throws, and stays.
  EXPECT_TRUE(wait_for([&] {
    try {
      (void)pools.maintain();
    } catch (const std::runtime_error&) {
    }
    return pools.stats().pools_evicted >= 1;
  }));
  flaky_hash::throw_for_b = false;
  EXPECT_EQ(pools.stats().pools_evicted, 1u);
  EXPECT_EQ(pools.size(), 1u);
  const netpool::keyed_pool_stats s = pools.stats();
  EXPECT_EQ(s.total.gets, 2u) << "the evicted sub-pool's counters left total()";
  EXPECT_EQ(s.total.closed_pool, 1u) << "the evicted sub-pool's idle connection was not closed";
  EXPECT_EQ(s.open, 1u);
  // Once the hash works again, "b" goes too.
  EXPECT_TRUE(wait_for([&] {
    (void)pools.maintain();
    return pools.size() == 0;
  }));
}

}  // namespace
