// Error categories, messages and comparisons of netpool/error.hpp.
#include "netpool/error.hpp"

#include <gtest/gtest.h>
#include <netdb.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "netpool/result.hpp"

namespace {

TEST(ErrorTest, CategoryNames) {
  EXPECT_STREQ(netpool::netpool_category().name(), "netpool");
  EXPECT_STREQ(netpool::dial_category().name(), "netpool.dial");
  EXPECT_STREQ(netpool::condition_category().name(), "netpool.condition");
  // One object per category, whichever translation unit asks.
  EXPECT_EQ(&netpool::netpool_category(), &netpool::make_error_code(netpool::errc::timeout).category());
  EXPECT_EQ(&netpool::dial_category(), &netpool::make_dial_error(ECONNREFUSED).category());
}

TEST(ErrorTest, NetpoolMessagesReadWellInLogs) {
  using netpool::errc;
  EXPECT_EQ(std::error_code(errc::pool_closed).message(), "pool closed");
  EXPECT_EQ(std::error_code(errc::timeout).message(), "timed out waiting for a connection");
  EXPECT_EQ(std::error_code(errc::cancelled).message(), "cancelled");
  EXPECT_EQ(std::error_code(errc::exhausted).message(), "pool exhausted");
  EXPECT_EQ(std::error_code(errc::dial_failed).message(), "dial failed");
  EXPECT_EQ(std::error_code(errc::invalid_config).message(), "invalid pool configuration");
  EXPECT_EQ(std::error_code(errc::empty_lease).message(), "empty lease");
  EXPECT_EQ(std::error_code(errc::wrong_pool).message(), "lease belongs to another pool");
  EXPECT_EQ(std::error_code(errc::factory_threw).message(), "connection factory threw an exception");
  EXPECT_EQ(std::error_code(errc::health_check_threw).message(), "health check threw an exception");
  EXPECT_EQ(std::error_code(errc::hook_rejected).message(), "rejected by hook");
  EXPECT_EQ(std::error_code(errc::dial_not_needed).message(),
            "dial not needed: a connection went idle meanwhile");
  EXPECT_EQ(std::error_code(errc::io_timeout).message(), "I/O deadline passed");
  EXPECT_EQ(std::error_code(errc::end_of_stream).message(),
            "connection closed by the peer before all the bytes came");
  EXPECT_EQ(netpool::netpool_category().message(999), "unknown netpool error 999");
}

TEST(ErrorTest, EveryErrcIsNonZeroAndDistinct) {
  for (int v = static_cast<int>(netpool::errc::pool_closed);
       v <= static_cast<int>(netpool::errc::end_of_stream); ++v) {
    const std::error_code ec(static_cast<netpool::errc>(v));
    EXPECT_TRUE(ec) << v;
    EXPECT_EQ(ec.value(), v);
    EXPECT_EQ(ec.message().find("unknown"), std::string::npos) << v << " has no message";
  }
}

TEST(ErrorTest, DialErrorMessage) {
  EXPECT_EQ(netpool::make_dial_error(ECONNREFUSED).message(), "dial failed: Connection refused");
  EXPECT_EQ(netpool::make_dial_error(ETIMEDOUT).message(), "dial failed: Connection timed out");
  EXPECT_EQ(netpool::make_dial_error(ECONNREFUSED).value(), ECONNREFUSED);
}

TEST(ErrorTest, DialErrorComparesToGenericErrnoConditions) {
  const std::error_code refused = netpool::make_dial_error(ECONNREFUSED);
  EXPECT_EQ(refused, std::errc::connection_refused);
  EXPECT_NE(refused, std::errc::timed_out);
  EXPECT_EQ(refused.default_error_condition(), std::error_condition(std::errc::connection_refused));
  EXPECT_EQ(netpool::make_dial_error(ENAMETOOLONG), std::errc::filename_too_long);
  // Equivalence is with the condition, not with the system/generic error_code itself.
  EXPECT_NE(refused, std::error_code(ECONNREFUSED, std::generic_category()));
}

TEST(ErrorTest, DialFailedCondition) {
  using netpool::condition;
  EXPECT_EQ(netpool::make_dial_error(ECONNREFUSED), condition::dial_failed);
  EXPECT_EQ(netpool::make_dial_error(ENETUNREACH), condition::dial_failed);
  EXPECT_EQ(netpool::make_resolve_error(EAI_NONAME), condition::dial_failed);
  EXPECT_EQ(std::error_code(netpool::errc::dial_failed), condition::dial_failed);
  EXPECT_EQ(std::error_code(netpool::errc::factory_threw), condition::dial_failed);

  EXPECT_NE(std::error_code(netpool::errc::timeout), condition::dial_failed);
  EXPECT_NE(std::error_code(netpool::errc::pool_closed), condition::dial_failed);
  EXPECT_NE(std::error_code(netpool::errc::health_check_threw), condition::dial_failed);
  EXPECT_NE(std::error_code(ECONNREFUSED, std::system_category()), condition::dial_failed);
  EXPECT_NE(std::error_code(), condition::dial_failed);

  EXPECT_EQ(netpool::make_error_condition(condition::dial_failed).message(), "dial failed");
  EXPECT_EQ(netpool::make_error_condition(condition::dial_failed).category(), netpool::condition_category());
}

TEST(ErrorTest, ResolveErrorsAreDistinctFromErrno) {
  const std::error_code noname = netpool::make_resolve_error(EAI_NONAME);
  EXPECT_TRUE(noname);
  EXPECT_EQ(noname.category(), netpool::dial_category());
  EXPECT_EQ(noname.value(), EAI_NONAME);
  EXPECT_EQ(noname.message(), std::string("resolve failed: ") + ::gai_strerror(EAI_NONAME));
  // No errno value shares the code, and a resolver failure matches no std::errc condition.
  for (int e = 1; e < 135; ++e) EXPECT_NE(noname, netpool::make_dial_error(e)) << e;
  EXPECT_EQ(noname.default_error_condition().category(), netpool::dial_category());
  EXPECT_NE(noname, std::errc::no_such_file_or_directory);
  EXPECT_NE(netpool::make_resolve_error(EAI_AGAIN), netpool::make_resolve_error(EAI_FAIL));
}

TEST(ErrorTest, TimeoutComparesAsEnumAndFromResult) {
  netpool::result<int> r(netpool::errc::timeout);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), netpool::errc::timeout);
  EXPECT_NE(r.error(), netpool::errc::cancelled);
  EXPECT_EQ(r.error().message(), "timed out waiting for a connection");
}

TEST(ErrorTest, AnIoTimeoutIsATimeoutButNotTheKernels) {
  const std::error_code io = netpool::errc::io_timeout;
  EXPECT_EQ(io, std::errc::timed_out);                              // what a generic timeout check looks for
  const std::error_code kernel(ETIMEDOUT, std::system_category());  // keep-alive, TCP_USER_TIMEOUT
  EXPECT_EQ(kernel, std::errc::timed_out);
  EXPECT_NE(kernel, netpool::errc::io_timeout);  // told apart
  EXPECT_NE(io, netpool::errc::timeout);         // not "every connection busy"
  EXPECT_NE(io, netpool::condition::dial_failed);
  // The other netpool codes have no generic meaning: errc::timeout is not std::errc::timed_out.
  EXPECT_NE(std::error_code(netpool::errc::timeout), std::errc::timed_out);
}

TEST(ErrorTest, ResultValueThrowsSystemErrorWithTheCode) {
  netpool::result<int> r(netpool::make_dial_error(ECONNREFUSED));
  try {
    (void)r.value();
    FAIL() << "value() on an error must throw";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), netpool::make_dial_error(ECONNREFUSED));
  }
  netpool::result<int> ok(42);
  EXPECT_EQ(ok.value(), 42);
  EXPECT_FALSE(ok.error());
}

// Counts how it was built, for ResultBuildsItsValueInPlace.
struct counted_construction {
  counted_construction(int a, int b) : sum(a + b) { ++constructions; }
  counted_construction(counted_construction&& other) noexcept : sum(other.sum) { ++moves; }
  counted_construction(const counted_construction&) = delete;
  counted_construction& operator=(const counted_construction&) = delete;
  counted_construction& operator=(counted_construction&&) = delete;
  ~counted_construction() = default;
  int sum;
  static inline int constructions = 0;
  static inline int moves = 0;
};

TEST(ErrorTest, ResultBuildsItsValueInPlace) {
  counted_construction::constructions = 0;  // (--gtest_repeat runs this more than once)
  counted_construction::moves = 0;
  netpool::result<counted_construction> r(std::in_place, 40, 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sum, 42);
  EXPECT_EQ(counted_construction::constructions, 1);
  EXPECT_EQ(counted_construction::moves, 0);  // no temporary moved from
  EXPECT_EQ(r.error(), std::error_code{});
}

}  // namespace
