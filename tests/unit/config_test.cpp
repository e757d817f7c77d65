// pool_config validation: every invalid configuration is rejected at creation with
// errc::invalid_config (never undefined behaviour), and validate() / validate_for_pool() /
// validate_for_lean_pool() / describe() name the field at fault.
#include "netpool/config.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <utility>

#include "netpool/dialer.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "tracked_connection.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::config_problem;
using netpool::errc;
using netpool::test::connection_registry;
using netpool::test::factory_control;
using netpool::test::tracked_conn;
using config_type = netpool::pool_config<tracked_conn>;

class ConfigTest : public ::testing::Test {
 protected:
  config_type valid() {
    config_type c;
    c.factory = factory.function();
    return c;
  }
  // Creating either pool from `c` fails with invalid_config and dials nothing.
  void expect_rejected_by_both(const config_type& c) {
    config_type for_pool = c;
    auto p = netpool::pool<tracked_conn>::create(std::move(for_pool));
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), errc::invalid_config);
    config_type for_lean = c;
    auto l = netpool::lean_pool<tracked_conn>::create(std::move(for_lean));
    ASSERT_FALSE(l);
    EXPECT_EQ(l.error(), errc::invalid_config);
    EXPECT_EQ(factory.calls(), 0);
  }
  void TearDown() override { EXPECT_EQ(registry.live(), 0); }

  connection_registry registry;
  factory_control factory{registry};
};

// describe(problem) is a sentence that names `field`.
void expect_description_mentions(config_problem problem, const char* field) {
  const char* text = netpool::describe(problem);
  ASSERT_NE(text, nullptr);
  EXPECT_NE(std::strstr(text, field), nullptr) << "describe() says \"" << text << "\", not naming " << field;
}

// The original's defaults (max 15, min 0, no idle limit, no health check), and the rest as the
// README's configuration table states them: this keeps the two in step.
TEST_F(ConfigTest, DefaultsAreTheOriginalsAndThoseTheReadmeTableStates) {
  const config_type c;
  EXPECT_EQ(c.max_size, 15u);
  EXPECT_EQ(c.min_size, 0u);
  EXPECT_EQ(c.max_idle_time, 0ns);
  EXPECT_FALSE(c.health_check);
  EXPECT_FALSE(c.factory);
  EXPECT_EQ(c.dial_timeout, 5s);
  EXPECT_EQ(c.max_lifetime, 0ns);
  EXPECT_EQ(c.lifetime_jitter, 0.05);
  EXPECT_EQ(c.probe_after, 500ms);
  EXPECT_EQ(c.keepalive_interval, 0ns);
  EXPECT_EQ(c.max_connecting, 2u);
  EXPECT_EQ(c.health_check_timeout, 1s);
  EXPECT_EQ(c.dial_backoff_floor, 10ms);
  EXPECT_EQ(c.dial_backoff_cap, 1s);
  EXPECT_TRUE(c.background_maintenance);
  EXPECT_TRUE(c.fair_waiters);
  EXPECT_EQ(c.wait_spin, 10us);
  EXPECT_EQ(c.starvation_threshold, 1ms);
  EXPECT_FALSE(c.clock);
  EXPECT_FALSE(c.on_connect);
  EXPECT_FALSE(c.on_borrow);
  EXPECT_FALSE(c.on_return);
  EXPECT_FALSE(c.on_close);
  EXPECT_EQ(c.leak_threshold, 0ns);
  EXPECT_EQ(c.max_size_limit, 0u);
}

TEST_F(ConfigTest, AValidConfigurationIsAccepted) {
  const config_type c = valid();
  EXPECT_EQ(netpool::validate(c), config_problem::none);
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  EXPECT_EQ(netpool::validate_for_lean_pool(c), config_problem::none);
  EXPECT_TRUE(netpool::pool<tracked_conn>::create(valid()));
  EXPECT_TRUE(netpool::lean_pool<tracked_conn>::create(valid()));
  EXPECT_NE(std::strlen(netpool::describe(config_problem::none)), 0u);
}

TEST_F(ConfigTest, BoundaryValuesAreAccepted) {
  config_type c = valid();
  c.max_size = 1;
  c.min_size = 1;  // min == max
  c.dial_timeout = 1ns;
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  EXPECT_EQ(netpool::validate_for_lean_pool(c), config_problem::none);
  c.max_size = config_type::max_supported;
  c.min_size = 0;
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  c.max_idle_time = 1ns;
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
}

TEST_F(ConfigTest, MissingFactory) {
  config_type c = valid();
  c.factory = nullptr;
  EXPECT_EQ(netpool::validate(c), config_problem::missing_factory);
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::missing_factory);
  EXPECT_EQ(netpool::validate_for_lean_pool(c), config_problem::missing_factory);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::missing_factory, "factory");
}

TEST_F(ConfigTest, MaxSizeZero) {
  config_type c = valid();
  c.max_size = 0;
  EXPECT_EQ(netpool::validate(c), config_problem::max_size_zero);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::max_size_zero, "max_size");
}

TEST_F(ConfigTest, MaxSizeTooLarge) {
  config_type c = valid();
  c.max_size = config_type::max_supported + 1;
  EXPECT_EQ(netpool::validate(c), config_problem::max_size_too_large);
  expect_rejected_by_both(c);
  c.max_size = static_cast<std::size_t>(-1);
  EXPECT_EQ(netpool::validate(c), config_problem::max_size_too_large);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::max_size_too_large, "max_size");
}

TEST_F(ConfigTest, MinAboveMax) {
  config_type c = valid();
  c.max_size = 3;
  c.min_size = 4;
  EXPECT_EQ(netpool::validate(c), config_problem::min_above_max);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::min_above_max, "min_size");
}

TEST_F(ConfigTest, DialTimeoutNotPositive) {
  config_type c = valid();
  c.dial_timeout = 0ns;
  EXPECT_EQ(netpool::validate(c), config_problem::dial_timeout_not_positive);
  expect_rejected_by_both(c);
  c.dial_timeout = -1s;
  EXPECT_EQ(netpool::validate(c), config_problem::dial_timeout_not_positive);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::dial_timeout_not_positive, "dial_timeout");
}

TEST_F(ConfigTest, NegativeMaxIdleTime) {
  config_type c = valid();
  c.max_idle_time = -1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::max_idle_time_negative);
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::max_idle_time_negative);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::max_idle_time_negative, "max_idle_time");
}

TEST_F(ConfigTest, LeanPoolRejectsIdleTracking) {
  config_type c = valid();
  c.max_idle_time = 1min;
  EXPECT_EQ(netpool::validate(c), config_problem::none) << "fine for pool";
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  EXPECT_EQ(netpool::validate_for_lean_pool(c), config_problem::idle_tracking_on_lean_pool);
  auto l = netpool::lean_pool<tracked_conn>::create(c);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error(), errc::invalid_config);
  EXPECT_TRUE(netpool::pool<tracked_conn>::create(c));
  expect_description_mentions(config_problem::idle_tracking_on_lean_pool, "max_idle_time");
}

TEST_F(ConfigTest, LeanPoolRejectsHealthCheck) {
  config_type c = valid();
  c.health_check = [](tracked_conn&) { return true; };
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  EXPECT_EQ(netpool::validate_for_lean_pool(c), config_problem::health_check_on_lean_pool);
  auto l = netpool::lean_pool<tracked_conn>::create(c);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error(), errc::invalid_config);
  EXPECT_TRUE(netpool::pool<tracked_conn>::create(c));
  expect_description_mentions(config_problem::health_check_on_lean_pool, "health_check");
}

TEST_F(ConfigTest, MaxConnectingZero) {
  config_type c = valid();
  c.max_connecting = 0;
  EXPECT_EQ(netpool::validate(c), config_problem::max_connecting_zero);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::max_connecting_zero, "max_connecting");
}

TEST_F(ConfigTest, NegativeMaxLifetime) {
  config_type c = valid();
  c.max_lifetime = -1s;
  EXPECT_EQ(netpool::validate(c), config_problem::lifetime_negative);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::lifetime_negative, "max_lifetime");
}

TEST_F(ConfigTest, LifetimeJitterOutOfRange) {
  for (const double jitter :
       {-0.01, 1.01, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    config_type c = valid();
    c.lifetime_jitter = jitter;
    EXPECT_EQ(netpool::validate(c), config_problem::lifetime_jitter_out_of_range) << jitter;
    expect_rejected_by_both(c);
  }
  config_type edge = valid();
  edge.lifetime_jitter = 0.0;
  EXPECT_EQ(netpool::validate(edge), config_problem::none);
  edge.lifetime_jitter = 1.0;
  EXPECT_EQ(netpool::validate(edge), config_problem::none);
  expect_description_mentions(config_problem::lifetime_jitter_out_of_range, "lifetime_jitter");
}

TEST_F(ConfigTest, NegativeProbeAfter) {
  config_type c = valid();
  c.probe_after = -1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::probe_after_negative);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::probe_after_negative, "probe_after");
}

TEST_F(ConfigTest, NegativeKeepaliveInterval) {
  config_type c = valid();
  c.keepalive_interval = -1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::keepalive_negative);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::keepalive_negative, "keepalive_interval");
}

TEST_F(ConfigTest, StarvationThresholdMustNotBeNegative) {
  config_type c = valid();
  c.starvation_threshold = -1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::starvation_threshold_negative);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::starvation_threshold_negative, "starvation_threshold");
  c.starvation_threshold = 0ms;  // allowed: every waiter is served in order
  EXPECT_EQ(netpool::validate(c), config_problem::none);
}

TEST_F(ConfigTest, WaitSpinIsBetweenZeroAndOneMillisecond) {
  EXPECT_EQ(config_type{}.wait_spin, 10us);
  EXPECT_EQ(config_type::max_wait_spin, 1ms);
  config_type c = valid();
  c.wait_spin = -1ns;
  EXPECT_EQ(netpool::validate(c), config_problem::wait_spin_out_of_range);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::wait_spin_out_of_range, "wait_spin");
  // Too long: a get() without a deadline would spin for as long as it waits.
  c.wait_spin = 1ms + 1ns;
  EXPECT_EQ(netpool::validate(c), config_problem::wait_spin_out_of_range);
  c.wait_spin = std::chrono::nanoseconds::max();
  EXPECT_EQ(netpool::validate(c), config_problem::wait_spin_out_of_range);
  c.wait_spin = 0ns;  // allowed: waiters sleep at once
  EXPECT_EQ(netpool::validate(c), config_problem::none);
  c.wait_spin = 1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::none);
}

TEST_F(ConfigTest, HealthCheckTimeoutMustBePositive) {
  config_type c = valid();
  c.health_check_timeout = 0ns;
  EXPECT_EQ(netpool::validate(c), config_problem::health_check_timeout_not_positive);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::health_check_timeout_not_positive, "health_check_timeout");
  c.health_check_timeout = -1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::health_check_timeout_not_positive);
  c.health_check_timeout = 1ns;
  EXPECT_EQ(netpool::validate(c), config_problem::none);
}

TEST_F(ConfigTest, DialBackoffBounds) {
  config_type c = valid();
  c.dial_backoff_floor = -1ms;
  EXPECT_EQ(netpool::validate(c), config_problem::backoff_negative);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::backoff_negative, "dial_backoff_floor");

  c = valid();
  c.dial_backoff_floor = 2s;
  c.dial_backoff_cap = 1s;
  EXPECT_EQ(netpool::validate(c), config_problem::backoff_cap_below_floor);
  expect_rejected_by_both(c);
  expect_description_mentions(config_problem::backoff_cap_below_floor, "dial_backoff_cap");

  c = valid();
  c.dial_backoff_floor = 0ns;  // backoff off
  c.dial_backoff_cap = 0ns;
  EXPECT_EQ(netpool::validate(c), config_problem::none);
}

// lean_pool has no lifetime tracking and no maintainer. It rejects the pool-only max_idle_time and
// health_check rather than ignore them; max_lifetime and keepalive_interval are documented as
// pool-only in the same way, so a lean_pool given one must not silently drop it either.
TEST_F(ConfigTest, LeanPoolRejectsOtherPoolOnlySettings) {
  config_type c = valid();
  c.max_lifetime = 10min;
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  EXPECT_NE(netpool::validate_for_lean_pool(c), config_problem::none)
      << "lean_pool accepts max_lifetime and never enforces it";
  c = valid();
  c.keepalive_interval = 30s;
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
  EXPECT_NE(netpool::validate_for_lean_pool(c), config_problem::none)
      << "lean_pool accepts keepalive_interval and never runs a keepalive round";
}

// An invalid minimum never starts a dial in the background (the pool was never created).
TEST_F(ConfigTest, RejectedConfigurationDialsNothing) {
  config_type c = valid();
  c.max_size = 2;
  c.min_size = 5;
  expect_rejected_by_both(c);
  EXPECT_EQ(registry.made(), 0);
}

TEST_F(ConfigTest, InvalidConfigErrorReadsWell) {
  const std::error_code ec = errc::invalid_config;
  EXPECT_FALSE(ec.message().empty());
  EXPECT_STREQ(ec.category().name(), "netpool");
}

// Every problem has its own description.
TEST_F(ConfigTest, EveryProblemHasADistinctDescription) {
  const config_problem all[] = {
      config_problem::none,
      config_problem::missing_factory,
      config_problem::max_size_zero,
      config_problem::max_size_too_large,
      config_problem::min_above_max,
      config_problem::dial_timeout_not_positive,
      config_problem::max_idle_time_negative,
      config_problem::max_connecting_zero,
      config_problem::lifetime_negative,
      config_problem::lifetime_jitter_out_of_range,
      config_problem::probe_after_negative,
      config_problem::keepalive_negative,
      config_problem::backoff_negative,
      config_problem::backoff_cap_below_floor,
      config_problem::idle_tracking_on_lean_pool,
      config_problem::health_check_on_lean_pool,
      config_problem::lifetime_on_lean_pool,
      config_problem::keepalive_on_lean_pool,
      config_problem::leak_threshold_negative,
      config_problem::leak_callback_missing,
      config_problem::max_size_limit_out_of_range,
      config_problem::leak_detection_on_lean_pool,
      config_problem::starvation_threshold_negative,
      config_problem::wait_spin_out_of_range,
      config_problem::health_check_timeout_not_positive,
      config_problem::tcp_options_out_of_range,
      config_problem::unix_path_invalid,
  };
  for (const auto a : all) {
    for (const auto b : all) {
      if (a != b) {
        EXPECT_STRNE(netpool::describe(a), netpool::describe(b));
      }
    }
  }
}

// The default connection type works with the default configuration's types.
TEST_F(ConfigTest, SocketConfigValidates) {
  netpool::pool_config<netpool::socket> c;
  EXPECT_EQ(netpool::validate(c), config_problem::missing_factory);
  c.factory = [](std::chrono::steady_clock::time_point) -> netpool::result<netpool::socket> {
    return errc::dial_failed;
  };
  EXPECT_EQ(netpool::validate_for_pool(c), config_problem::none);
}

// A built-in dialer given as the factory itself is checked at creation: options out of the
// kernel's range, or a Unix path that names no socket, would fail every dial, and the pool would
// take that for a backend that is down (backoff, fast failures). A dialer wrapped in a lambda is
// not seen through; its dials fail (dialer_test).
TEST_F(ConfigTest, ABuiltInDialerThatCannotDialIsRejectedAtCreation) {
#if !(defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 11)
  GTEST_SKIP() << "the library looks inside the factory only with libstdc++ 11 or later";
#endif
  using socket_config = netpool::pool_config<netpool::socket>;
  const auto expect_rejected = [](const socket_config& c, config_problem expected, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(netpool::validate_for_pool(c), expected);
    EXPECT_EQ(netpool::validate_for_lean_pool(c), expected);
    auto p = netpool::pool<netpool::socket>::create(c);
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error(), errc::invalid_config);
    auto lean = netpool::lean_pool<netpool::socket>::create(c);
    ASSERT_FALSE(lean);
    EXPECT_EQ(lean.error(), errc::invalid_config);
  };
  const auto tcp = [](auto change) {
    netpool::tcp_options options;
    change(options);
    socket_config c;
    c.factory = netpool::tcp_dialer("127.0.0.1", 1, options);  // never dialed
    return c;
  };
  const auto local = [](std::string path) {
    socket_config c;
    c.factory = netpool::unix_dialer(std::move(path));
    return c;
  };
  expect_rejected(tcp([](netpool::tcp_options& o) { o.keep_alive_idle = 32768s; }),
                  config_problem::tcp_options_out_of_range, "keep_alive_idle");
  expect_rejected(tcp([](netpool::tcp_options& o) { o.keep_alive_interval = -1s; }),
                  config_problem::tcp_options_out_of_range, "keep_alive_interval");
  expect_rejected(tcp([](netpool::tcp_options& o) { o.keep_alive_count = 128; }),
                  config_problem::tcp_options_out_of_range, "keep_alive_count");
  expect_rejected(tcp([](netpool::tcp_options& o) { o.user_timeout = -1ms; }),
                  config_problem::tcp_options_out_of_range, "user_timeout");
  expect_rejected(local(""), config_problem::unix_path_invalid, "empty path");
  expect_rejected(local(std::string(108, 'p')), config_problem::unix_path_invalid, "108-byte path");
  expect_rejected(local(std::string(1, '\0') + std::string(108, 'a')), config_problem::unix_path_invalid,
                  "109-byte abstract name");
  expect_rejected(local(std::string("/tmp/a") + std::string(1, '\0') + "b"),
                  config_problem::unix_path_invalid, "path with a NUL inside");
  expect_description_mentions(config_problem::tcp_options_out_of_range, "tcp_options");
  expect_description_mentions(config_problem::unix_path_invalid, "path");

  // The limits themselves pass, and so does the default dialer.
  EXPECT_EQ(netpool::validate_for_pool(tcp([](netpool::tcp_options& o) {
              o.keep_alive_idle = 32767s;
              o.keep_alive_interval = 32767s;
              o.keep_alive_count = 127;
              o.user_timeout = std::chrono::milliseconds(std::numeric_limits<int>::max());
            })),
            config_problem::none);
  EXPECT_EQ(netpool::validate_for_pool(tcp([](netpool::tcp_options&) {})), config_problem::none);
  EXPECT_EQ(netpool::validate_for_pool(local(std::string(107, 'p'))), config_problem::none);
  EXPECT_EQ(netpool::validate_for_pool(local(std::string(1, '\0') + std::string(107, 'a'))),
            config_problem::none);

  // Wrapped, the dialer is not seen: the configuration passes, and its dials fail instead.
  netpool::tcp_options bad;
  bad.keep_alive_count = 128;
  socket_config wrapped;
  wrapped.factory = [dial = netpool::tcp_dialer("127.0.0.1", 1, bad)](
                        std::chrono::steady_clock::time_point d) { return dial(d); };
  EXPECT_EQ(netpool::validate_for_pool(wrapped), config_problem::none);
}

}  // namespace
