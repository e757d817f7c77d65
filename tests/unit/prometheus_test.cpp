// netpool::write_prometheus: the exact text for a hand-built snapshot, label escaping and
// validation (nothing written on a bad label), several pools in one scrape (each family's HELP and
// TYPE once, its samples together), cumulative histogram buckets, independence from the stream's
// locale, stream failures, a real pool's counters, and `promtool check metrics` on the output when
// promtool (Debian's prometheus package) is installed.
#include "netpool/prometheus.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <locale>
#include <map>
#include <span>
#include <sstream>
#include <streambuf>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/dialer.hpp"
#include "netpool/keyed_pool.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "netpool/stats.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::labelled_stats;
using netpool::pool_stats;
using netpool::prometheus_label;
using netpool::write_prometheus;

// The pool overloads take both pools, and nothing whose stats() could throw out of a noexcept call.
struct throwing_stats {
  pool_stats stats() const;  // not noexcept
};
static_assert(netpool::stats_source<netpool::pool<netpool::socket>>);
static_assert(netpool::stats_source<netpool::lean_pool<netpool::socket>>);
static_assert(!netpool::stats_source<throwing_stats>);
static_assert(!netpool::stats_source<pool_stats>);

// Every field different, so that a field written in the wrong place shows up.
pool_stats sample_stats() {
  pool_stats s;
  s.active = 6;
  s.idle = 3;
  s.in_use = 2;
  s.dialing = 1;
  s.max = 10;
  s.min = 2;
  s.waiters = 4;
  s.gets = 100;
  s.gets_immediate = 90;
  s.gets_waited = 12;
  s.wait_time = 2'345'678'901ns;
  s.max_wait = 1'250'000'000ns;
  s.wait_histogram = {1, 2, 0, 3, 1, 2, 1, 2};  // 12 in all: cumulative 1 3 3 6 7 9 10 12
  s.timeouts = 2;
  s.cancellations = 1;
  s.dials = 20;
  s.dials_ok = 15;
  s.dial_failures = 4;
  s.fast_failures = 7;
  s.leaks = 11;
  s.closed = {21, 22, 23, 24, 25, 26, 27, 28, 29};
  return s;
}

std::string render(const pool_stats& s, std::span<const prometheus_label> labels = {}) {
  std::ostringstream out;
  const std::error_code ec = write_prometheus(out, s, labels);
  EXPECT_FALSE(ec) << ec.message();
  return out.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool has_line(const std::string& text, std::string_view line) {
  for (const std::string& l : lines_of(text)) {
    if (l == line) return true;
  }
  return false;
}

// The value of the sample line that starts with `series` + ' ' (empty if there is none).
std::string value_of(const std::string& text, const std::string& series) {
  for (const std::string& l : lines_of(text)) {
    if (l.size() > series.size() && l.compare(0, series.size(), series) == 0 && l[series.size()] == ' ') {
      return l.substr(series.size() + 1);
    }
  }
  return {};
}

TEST(PrometheusTest, ExactTextForAHandBuiltSnapshot) {
  const prometheus_label labels[] = {{"pool", "orders"}};
  EXPECT_EQ(
      render(sample_stats(), labels),
      R"(# HELP netpool_connections Connections the pool holds, by state: idle (open, in the pool), in_use (lent out), dialing (being opened, checked or closed by the pool).
# TYPE netpool_connections gauge
netpool_connections{pool="orders",state="idle"} 3
netpool_connections{pool="orders",state="in_use"} 2
netpool_connections{pool="orders",state="dialing"} 1
# HELP netpool_connections_max Most connections the pool may hold (max_size).
# TYPE netpool_connections_max gauge
netpool_connections_max{pool="orders"} 10
# HELP netpool_connections_min Connections the pool keeps open even when unused (min_size).
# TYPE netpool_connections_min gauge
netpool_connections_min{pool="orders"} 2
# HELP netpool_waiters Callers blocked in get, waiting for a connection.
# TYPE netpool_waiters gauge
netpool_waiters{pool="orders"} 4
# HELP netpool_gets_total Connections handed out by get: kind=waited after waiting in line (every connection in use, or the dial on a dialer thread), kind=immediate otherwise (a dial on the caller's own thread included).
# TYPE netpool_gets_total counter
netpool_gets_total{pool="orders",kind="immediate"} 90
netpool_gets_total{pool="orders",kind="waited"} 10
# HELP netpool_get_timeouts_total Gets that failed because their deadline passed while waiting.
# TYPE netpool_get_timeouts_total counter
netpool_get_timeouts_total{pool="orders"} 2
# HELP netpool_get_cancellations_total Gets that failed because their stop_token asked to stop.
# TYPE netpool_get_cancellations_total counter
netpool_get_cancellations_total{pool="orders"} 1
# HELP netpool_get_fast_failures_total Gets failed at once with the last dial error while dialing was backing off.
# TYPE netpool_get_fast_failures_total counter
netpool_get_fast_failures_total{pool="orders"} 7
# HELP netpool_dials_total Finished dials (factory calls): result=ok opened a connection that on_connect accepted, result=failed did not.
# TYPE netpool_dials_total counter
netpool_dials_total{pool="orders",result="ok"} 15
netpool_dials_total{pool="orders",result="failed"} 4
# HELP netpool_leaks_total Leases held longer than leak_threshold (each reported once to on_leak).
# TYPE netpool_leaks_total counter
netpool_leaks_total{pool="orders"} 11
# HELP netpool_connections_closed_total Connections the pool closed, by reason (close_reason).
# TYPE netpool_connections_closed_total counter
netpool_connections_closed_total{pool="orders",reason="idle"} 21
netpool_connections_closed_total{pool="orders",reason="lifetime"} 22
netpool_connections_closed_total{pool="orders",reason="health"} 23
netpool_connections_closed_total{pool="orders",reason="error"} 24
netpool_connections_closed_total{pool="orders",reason="reset"} 25
netpool_connections_closed_total{pool="orders",reason="pool_closed"} 26
netpool_connections_closed_total{pool="orders",reason="hook"} 27
netpool_connections_closed_total{pool="orders",reason="resize"} 28
netpool_connections_closed_total{pool="orders",reason="reclaimed"} 29
# HELP netpool_get_wait_seconds Time gets spent blocked waiting for a connection (gets served without blocking are not observed).
# TYPE netpool_get_wait_seconds histogram
netpool_get_wait_seconds_bucket{pool="orders",le="0.00001"} 1
netpool_get_wait_seconds_bucket{pool="orders",le="0.0001"} 3
netpool_get_wait_seconds_bucket{pool="orders",le="0.001"} 3
netpool_get_wait_seconds_bucket{pool="orders",le="0.01"} 6
netpool_get_wait_seconds_bucket{pool="orders",le="0.1"} 7
netpool_get_wait_seconds_bucket{pool="orders",le="1"} 9
netpool_get_wait_seconds_bucket{pool="orders",le="10"} 10
netpool_get_wait_seconds_bucket{pool="orders",le="+Inf"} 12
netpool_get_wait_seconds_sum{pool="orders"} 2.345678901
netpool_get_wait_seconds_count{pool="orders"} 12
# HELP netpool_get_wait_max_seconds Longest time a single get spent blocked, since the pool was created.
# TYPE netpool_get_wait_max_seconds gauge
netpool_get_wait_max_seconds{pool="orders"} 1.25
)");
}

TEST(PrometheusTest, NoLabelsMeansNoBraces) {
  const std::string text = render(sample_stats());
  EXPECT_TRUE(has_line(text, "netpool_waiters 4")) << text;
  EXPECT_TRUE(has_line(text, "netpool_connections{state=\"idle\"} 3")) << text;
  EXPECT_TRUE(has_line(text, "netpool_get_wait_seconds_sum 2.345678901")) << text;
  EXPECT_TRUE(has_line(text, "netpool_get_wait_seconds_count 12")) << text;
  EXPECT_TRUE(has_line(text, "netpool_get_wait_seconds_bucket{le=\"+Inf\"} 12")) << text;
}

TEST(PrometheusTest, LabelsWrittenInPlace) {
  std::ostringstream out;
  ASSERT_FALSE(write_prometheus(out, sample_stats(), {{"pool", "orders"}, {"zone", "b"}}));
  EXPECT_TRUE(has_line(out.str(), R"(netpool_waiters{pool="orders",zone="b"} 4)")) << out.str();
  std::ostringstream bad;
  EXPECT_EQ(write_prometheus(bad, sample_stats(), {{"le", "1"}}),
            std::make_error_code(std::errc::invalid_argument));
  EXPECT_TRUE(bad.str().empty());
}

TEST(PrometheusTest, SeveralLabelsKeepTheirOrderBeforeNetpoolsOwn) {
  const prometheus_label labels[] = {{"service", "api"}, {"pool", "orders"}, {"_shard", "3"}};
  const std::string text = render(sample_stats(), labels);
  EXPECT_TRUE(has_line(text, R"(netpool_dials_total{service="api",pool="orders",_shard="3",result="ok"} 15)"))
      << text;
}

TEST(PrometheusTest, SecondsAreExactDecimals) {
  pool_stats s;
  s.max_wait = 1ns;
  s.wait_time = 10s;
  std::string text = render(s);
  EXPECT_EQ(value_of(text, "netpool_get_wait_max_seconds"), "0.000000001");
  EXPECT_EQ(value_of(text, "netpool_get_wait_seconds_sum"), "10");
  s.max_wait = 0ns;
  s.wait_time = std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max());
  text = render(s);
  EXPECT_EQ(value_of(text, "netpool_get_wait_max_seconds"), "0");
  EXPECT_EQ(value_of(text, "netpool_get_wait_seconds_sum"), "9223372036.854775807");
}

TEST(PrometheusTest, LargeCountersAreWrittenInFull) {
  pool_stats s;
  s.leaks = std::numeric_limits<std::uint64_t>::max();
  EXPECT_EQ(value_of(render(s), "netpool_leaks_total"), "18446744073709551615");
}

TEST(PrometheusTest, EscapesBackslashQuoteAndNewlineInValues) {
  const prometheus_label labels[] = {{"path", "C:\\dir \"x\"\nnext"}, {"utf8", "Zürich ✓"}};
  const std::string text = render(sample_stats(), labels);
  EXPECT_TRUE(has_line(text, R"(netpool_waiters{path="C:\\dir \"x\"\nnext",utf8="Zürich ✓"} 4)")) << text;
}

// Each call must fail with invalid_argument and leave the stream untouched.
void expect_rejected(std::span<const labelled_stats> pools, const std::string& what) {
  std::ostringstream out;
  out << "before";
  EXPECT_EQ(write_prometheus(out, pools), std::make_error_code(std::errc::invalid_argument)) << what;
  EXPECT_EQ(out.str(), "before") << what << ": nothing may be written";
}

TEST(PrometheusTest, RejectsBadLabelNamesAndWritesNothing) {
  const pool_stats s = sample_stats();
  for (const std::string_view bad : {"", "1pool", "po-ol", "po ol", "pool.name", "__pool", "__", "state",
                                     "kind", "result", "reason", "le", "Zürich"}) {
    const prometheus_label labels[] = {{"ok", "1"}, {bad, "v"}};
    const labelled_stats one[] = {{&s, labels}};
    expect_rejected(one, "label name '" + std::string(bad) + "'");
    // The single-pool overload rejects the same way.
    std::ostringstream out;
    EXPECT_EQ(write_prometheus(out, s, labels), std::make_error_code(std::errc::invalid_argument)) << bad;
    EXPECT_TRUE(out.str().empty()) << bad;
  }
}

TEST(PrometheusTest, AcceptsEveryValidLabelName) {
  const pool_stats s = sample_stats();
  for (const std::string_view good : {"_", "_x", "a", "Pool_2", "a__b", "State", "lev", "reasons"}) {
    const prometheus_label labels[] = {{good, "v"}};
    std::ostringstream out;
    EXPECT_FALSE(write_prometheus(out, s, labels)) << good;
    EXPECT_NE(out.str().find("netpool_waiters{" + std::string(good) + "=\"v\"} 4\n"), std::string::npos)
        << good;
  }
}

TEST(PrometheusTest, RejectsDuplicateNamesInvalidUtf8NullStatsAndDuplicateSeries) {
  const pool_stats s = sample_stats();
  {
    const prometheus_label labels[] = {{"pool", "a"}, {"pool", "b"}};
    const labelled_stats one[] = {{&s, labels}};
    expect_rejected(one, "the same label name twice");
  }
  for (const std::string_view bad_utf8 : {std::string_view("\xff"), std::string_view("ab\xc3"),
                                          std::string_view("\xc0\xaf"),           // overlong '/'
                                          std::string_view("\xed\xa0\x80"),       // surrogate U+D800
                                          std::string_view("\xf4\x90\x80\x80")})  // past U+10FFFF
  {
    const prometheus_label labels[] = {{"pool", bad_utf8}};
    const labelled_stats one[] = {{&s, labels}};
    expect_rejected(one, "a value that is not UTF-8");
  }
  {
    const labelled_stats one[] = {{nullptr, {}}};
    expect_rejected(one, "null stats");
  }
  {
    const prometheus_label a[] = {{"pool", "x"}, {"zone", "1"}};
    const prometheus_label b[] = {{"zone", "1"}, {"pool", "x"}};  // the same set, in another order
    const labelled_stats two[] = {{&s, a}, {&s, b}};
    expect_rejected(two, "two pools with the same label set");
    const labelled_stats unlabelled[] = {{&s, {}}, {&s, {}}};
    expect_rejected(unlabelled, "two pools without labels");
  }
  {
    // Prometheus reads a label with an empty value as no label: {pool=""} is the series {}.
    const prometheus_label empty[] = {{"pool", ""}};
    const labelled_stats two[] = {{&s, {}}, {&s, empty}};
    expect_rejected(two, "{} and {pool=\"\"}");
    const prometheus_label a[] = {{"pool", ""}, {"zone", "1"}};
    const prometheus_label b[] = {{"zone", "1"}, {"shard", ""}};
    const labelled_stats also_two[] = {{&s, a}, {&s, b}};
    expect_rejected(also_two, "{pool=\"\",zone=\"1\"} and {zone=\"1\",shard=\"\"}");
  }
}

TEST(PrometheusTest, AnEmptyLabelValueIsNoLabelOnlyForTheDuplicateCheck) {
  const pool_stats s = sample_stats();
  const prometheus_label empty[] = {{"pool", ""}};
  const prometheus_label named[] = {{"pool", "x"}};
  const labelled_stats two[] = {{&s, empty}, {&s, named}};
  std::ostringstream out;
  EXPECT_FALSE(write_prometheus(out, std::span<const labelled_stats>(two)));
  // Written as given: Prometheus drops the empty label when it reads the sample.
  EXPECT_NE(out.str().find("netpool_waiters{pool=\"\"} 4\n"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("netpool_waiters{pool=\"x\"} 4\n"), std::string::npos) << out.str();
}

// For each family (named by its TYPE line): how many HELP and TYPE lines it has, and the order of
// the pools (by their `pool` label) in its samples, which must be contiguous.
struct family_info {
  int help = 0;
  int type = 0;
  std::vector<std::string> pools;  // one entry per run of samples of the same pool
};

std::map<std::string, family_info> families_of(const std::string& text) {
  std::map<std::string, family_info> families;
  std::string current;
  std::vector<std::string> closed;  // families whose samples have ended
  for (const std::string& line : lines_of(text)) {
    std::istringstream in(line);
    std::string hash, keyword, name;
    if (line.starts_with("# ")) {
      in >> hash >> keyword >> name;
      if (keyword == "HELP") ++families[name].help;
      if (keyword == "TYPE") {
        ++families[name].type;
        if (!current.empty()) closed.push_back(current);
        current = name;
      }
      continue;
    }
    const std::string series = line.substr(0, line.find_first_of("{ "));
    EXPECT_TRUE(series.starts_with(current)) << "sample " << line << " outside its family " << current;
    for (const std::string& done : closed) EXPECT_NE(series, done) << "family " << done << " split: " << line;
    const auto at = line.find("pool=\"");
    const std::string pool =
        at == std::string::npos ? "" : line.substr(at + 6, line.find('"', at + 6) - at - 6);
    auto& pools = families[current].pools;
    if (pools.empty() || pools.back() != pool) pools.push_back(pool);
  }
  return families;
}

std::vector<pool_stats> two_snapshots() {
  std::vector<pool_stats> snapshots{sample_stats(), pool_stats{}};
  snapshots[1].idle = 7;
  snapshots[1].max = 8;
  snapshots[1].gets = 5;
  snapshots[1].gets_immediate = 5;
  return snapshots;
}

TEST(PrometheusTest, SeveralPoolsWriteEachFamilyOnce) {
  const auto snapshots = two_snapshots();
  const prometheus_label a[] = {{"pool", "primary"}};
  const prometheus_label b[] = {{"pool", "replica"}};
  const labelled_stats pools[] = {{&snapshots[0], a}, {&snapshots[1], b}};
  std::ostringstream out;
  ASSERT_FALSE(write_prometheus(out, pools));
  const std::string text = out.str();

  const auto families = families_of(text);
  EXPECT_EQ(families.size(), 13u) << text;
  for (const auto& [name, info] : families) {
    EXPECT_EQ(info.help, 1) << name;
    EXPECT_EQ(info.type, 1) << name;
    EXPECT_EQ(info.pools, (std::vector<std::string>{"primary", "replica"}))
        << name << ": one run per pool, in order";
  }
  EXPECT_TRUE(has_line(text, R"(netpool_connections{pool="primary",state="idle"} 3)")) << text;
  EXPECT_TRUE(has_line(text, R"(netpool_connections{pool="replica",state="idle"} 7)")) << text;
  EXPECT_TRUE(has_line(text, R"(netpool_connections_max{pool="replica"} 8)")) << text;
  EXPECT_TRUE(has_line(text, R"(netpool_gets_total{pool="replica",kind="immediate"} 5)")) << text;
  EXPECT_TRUE(has_line(text, R"(netpool_gets_total{pool="replica",kind="waited"} 0)")) << text;
  EXPECT_TRUE(has_line(text, R"(netpool_get_wait_seconds_bucket{pool="replica",le="+Inf"} 0)")) << text;

  // Pools may differ in their label names; each still gets its own series.
  const prometheus_label c[] = {{"pool", "primary"}, {"zone", "b"}};
  const labelled_stats mixed[] = {{&snapshots[0], a}, {&snapshots[1], c}};
  std::ostringstream out2;
  EXPECT_FALSE(write_prometheus(out2, mixed));
  EXPECT_TRUE(has_line(out2.str(), R"(netpool_waiters{pool="primary",zone="b"} 0)")) << out2.str();

  std::ostringstream empty;
  EXPECT_FALSE(write_prometheus(empty, std::span<const labelled_stats>{}));
  EXPECT_TRUE(empty.str().empty());
}

// The bucket values of `text` for the series prefix (e.g. "netpool_get_wait_seconds_bucket{"), in order.
std::vector<std::uint64_t> buckets_of(const std::string& text) {
  std::vector<std::uint64_t> values;
  for (const std::string& line : lines_of(text)) {
    if (line.starts_with("netpool_get_wait_seconds_bucket{")) {
      values.push_back(std::stoull(line.substr(line.rfind(' ') + 1)));
    }
  }
  return values;
}

TEST(PrometheusTest, BucketsAreCumulativeAndInfEqualsCount) {
  pool_stats s;
  s.wait_histogram = {0, 4, 0, 0, 9, 0, 0, 3};
  s.gets_waited = 16;
  const std::string text = render(s);
  EXPECT_EQ(buckets_of(text), (std::vector<std::uint64_t>{0, 4, 4, 4, 13, 13, 13, 16}));
  EXPECT_EQ(value_of(text, "netpool_get_wait_seconds_count"), "16");

  // Bucket bounds come from wait_bucket_bounds, in seconds.
  std::vector<std::string> le;
  for (const std::string& line : lines_of(text)) {
    const auto at = line.find("le=\"");
    if (at != std::string::npos) le.push_back(line.substr(at + 4, line.find('"', at + 4) - at - 4));
  }
  EXPECT_EQ(le, (std::vector<std::string>{"0.00001", "0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"}));
}

TEST(PrometheusTest, ASnapshotThatRacedStaysConsistent) {
  // Read while gets ran: the histogram ahead of gets_waited, gets_immediate ahead of gets.
  pool_stats s;
  s.wait_histogram = {1, 1, 1, 1, 1, 1, 1, 1};
  s.gets_waited = 6;
  s.gets = 3;
  s.gets_immediate = 4;
  const std::string text = render(s);
  const auto buckets = buckets_of(text);
  ASSERT_EQ(buckets.size(), netpool::wait_buckets);
  EXPECT_EQ(buckets.back(), 8u) << "+Inf is never below a finite bucket";
  EXPECT_EQ(value_of(text, "netpool_get_wait_seconds_count"), "8") << "+Inf == _count";
  EXPECT_EQ(value_of(text, "netpool_gets_total{kind=\"waited\"}"), "0") << "never negative (no wrap-around)";
}

// Groups thousands with '.' and uses ',' as the decimal point, like de_DE, without needing that
// locale to be installed.
struct german_numbers : std::numpunct<char> {
  char do_decimal_point() const override { return ','; }
  char do_thousands_sep() const override { return '.'; }
  std::string do_grouping() const override { return "\3"; }
};

TEST(PrometheusTest, TheStreamsLocaleChangesNothing) {
  pool_stats s = sample_stats();
  s.gets = 1'234'567;
  std::ostringstream plain;
  std::ostringstream german;
  german.imbue(std::locale(std::locale::classic(), new german_numbers));  // the locale owns the facet
  german << 1234567 << ' ' << 1.5;
  ASSERT_EQ(german.str(), "1.234.567 1,5") << "the facet is in effect";
  german.str("");
  ASSERT_FALSE(write_prometheus(plain, s));
  ASSERT_FALSE(write_prometheus(german, s));
  EXPECT_EQ(german.str(), plain.str());
  EXPECT_TRUE(has_line(german.str(), "netpool_get_wait_seconds_sum 2.345678901"));
}

// A stream buffer that accepts nothing.
struct failing_buffer : std::streambuf {
  int_type overflow(int_type) override { return traits_type::eof(); }
  std::streamsize xsputn(const char*, std::streamsize) override { return 0; }
};

TEST(PrometheusTest, StreamFailuresAreReportedNotThrown) {
  const pool_stats s = sample_stats();
  {
    failing_buffer buffer;
    std::ostream out(&buffer);
    EXPECT_EQ(write_prometheus(out, s), std::make_error_code(std::errc::io_error));
  }
  {
    failing_buffer buffer;
    std::ostream out(&buffer);
    out.exceptions(std::ios::badbit | std::ios::failbit);  // the stream would throw
    std::error_code ec;
    EXPECT_NO_THROW(ec = write_prometheus(out, s));
    EXPECT_EQ(ec, std::make_error_code(std::errc::io_error));
  }
  {
    std::ostringstream out;
    out.setstate(std::ios::failbit);  // already failed: nothing is attempted
    EXPECT_EQ(write_prometheus(out, s), std::make_error_code(std::errc::io_error));
    EXPECT_TRUE(out.str().empty());
  }
}

// --- real pools -------------------------------------------------------------------------------

netpool::pool_config<netpool::socket> echo_config(const netpool::test::echo_server& server) {
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer(server.host(), server.port());
  cfg.max_size = 1;
  return cfg;
}

// Drives a pool of one connection through every path whose counter is cheap to provoke: an
// immediate get, a get that waits and is served, a timeout, a discarded (closed) connection.
template <class Pool>
void exercise(Pool& pool) {
  {
    auto first = pool.get_for(10s);  // dials
    ASSERT_TRUE(first) << first.error().message();
    auto timed_out = pool.get_for(1ms);  // the only connection is out: waits, then times out
    ASSERT_FALSE(timed_out);
    EXPECT_EQ(timed_out.error(), netpool::errc::timeout);
    first->discard();  // closed with reason error
  }
  {
    auto held = pool.get_for(10s);  // dials again
    ASSERT_TRUE(held) << held.error().message();
    std::thread waiter([&pool] {
      auto served = pool.get_for(60s);  // blocks until `held` comes back
      EXPECT_TRUE(served) << served.error().message();
    });
    EXPECT_TRUE(netpool::test::wait_for([&] { return pool.stats().waiters == 1; }));
    held->release();
    waiter.join();
  }
  auto again = pool.get_for(10s);  // the idle connection, at once
  ASSERT_TRUE(again) << again.error().message();
}

TEST(PrometheusTest, ARealPoolsCountersShowUp) {
  netpool::test::echo_server server;
  auto cfg = echo_config(server);
  cfg.background_maintenance = false;  // nothing changes the stats behind the test's back
  auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
  exercise(pool);
  if (HasFatalFailure()) return;

  std::ostringstream out;
  ASSERT_FALSE(write_prometheus(out, pool, {{"pool", "echo"}}));
  const std::string text = out.str();
  const pool_stats s = pool.stats();
  // What the test did, as the contract of each counter says it must be counted.
  EXPECT_EQ(value_of(text, R"(netpool_dials_total{pool="echo",result="ok"})"), "2") << text;
  EXPECT_EQ(value_of(text, R"(netpool_dials_total{pool="echo",result="failed"})"), "0") << text;
  EXPECT_EQ(value_of(text, R"(netpool_get_timeouts_total{pool="echo"})"), "1") << text;
  EXPECT_EQ(value_of(text, R"(netpool_gets_total{pool="echo",kind="waited"})"), "1") << text;
  EXPECT_EQ(value_of(text, R"(netpool_connections_closed_total{pool="echo",reason="error"})"), "1") << text;
  EXPECT_EQ(value_of(text, R"(netpool_connections{pool="echo",state="in_use"})"), "0") << text;
  EXPECT_EQ(value_of(text, R"(netpool_connections{pool="echo",state="idle"})"), "1") << text;
  EXPECT_EQ(value_of(text, R"(netpool_connections_max{pool="echo"})"), "1") << text;
  // The timed-out get and the served one both waited.
  EXPECT_EQ(value_of(text, R"(netpool_get_wait_seconds_count{pool="echo"})"), "2") << text;
  EXPECT_EQ(value_of(text, R"(netpool_get_wait_seconds_bucket{pool="echo",le="+Inf"})"), "2") << text;
  EXPECT_NE(value_of(text, R"(netpool_get_wait_seconds_sum{pool="echo"})"), "0") << text;
  EXPECT_NE(value_of(text, R"(netpool_get_wait_max_seconds{pool="echo"})"), "0") << text;
  // And every number is the snapshot's (the pool is quiescent).
  EXPECT_EQ(value_of(text, R"(netpool_gets_total{pool="echo",kind="immediate"})"),
            std::to_string(s.gets_immediate));
  EXPECT_EQ(s.gets, 4u);
  EXPECT_EQ(s.gets_immediate, 3u)
      << "the two that dialed and the one served from idle: none waited for a lease";
}

TEST(PrometheusTest, ALeanPoolWorksToo) {
  netpool::test::echo_server server;
  auto pool = netpool::lean_pool<netpool::socket>::create(echo_config(server)).value();
  {
    auto conn = pool.get_for(10s);
    ASSERT_TRUE(conn) << conn.error().message();
  }
  std::ostringstream out;
  const prometheus_label labels[] = {{"pool", "lean"}};
  ASSERT_FALSE(write_prometheus(out, pool, std::span<const prometheus_label>(labels)));
  EXPECT_EQ(value_of(out.str(), R"(netpool_dials_total{pool="lean",result="ok"})"), "1") << out.str();
  EXPECT_EQ(value_of(out.str(), R"(netpool_connections{pool="lean",state="idle"})"), "1") << out.str();
  std::ostringstream unlabelled;
  ASSERT_FALSE(write_prometheus(unlabelled, pool));
  EXPECT_TRUE(has_line(unlabelled.str(), "netpool_connections_max 1")) << unlabelled.str();
}

// --- keyed pools ----------------------------------------------------------------------------

// keyed_pool has its own overloads (its stats() returns keyed_pool_stats and may throw).
static_assert(netpool::keyed_stats_source<netpool::keyed_pool<std::string>>);
static_assert(!netpool::stats_source<netpool::keyed_pool<std::string>>);
static_assert(!netpool::keyed_stats_source<netpool::pool<netpool::socket>>);

// Every keyed field different, and a total that is sample_stats().
netpool::keyed_pool_stats keyed_sample() {
  netpool::keyed_pool_stats k;
  k.total = sample_stats();
  k.pools = 3;
  k.open = 5;
  k.global_max = 8;
  k.global_waiters = 2;
  k.pools_created = 7;
  k.pools_evicted = 3;
  k.pools_removed = 1;
  k.global_waits = 40;
  k.global_exhausted = 6;
  k.reclaimed = 9;
  return k;
}

std::size_t count_of(const std::string& text, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// A keyed pool: its total exactly as a pool's, then its own families, each with HELP and TYPE.
TEST(PrometheusTest, AKeyedPoolWritesItsTotalThenItsOwnFamilies) {
  const netpool::keyed_pool_stats k = keyed_sample();
  std::ostringstream out;
  ASSERT_FALSE(write_prometheus(out, k, {{"pool", "shards"}}));
  const std::string text = out.str();
  std::ostringstream total;
  ASSERT_FALSE(write_prometheus(total, k.total, {{"pool", "shards"}}));
  EXPECT_TRUE(text.starts_with(total.str())) << text;
  EXPECT_EQ(total.str().find("netpool_keyed"), std::string::npos) << "a plain pool writes no keyed family";
  const std::pair<const char*, const char*> expected[] = {
      {R"(netpool_keyed_pools{pool="shards"})", "3"},
      {R"(netpool_keyed_connections_open{pool="shards"})", "5"},
      {R"(netpool_keyed_connections_global_max{pool="shards"})", "8"},
      {R"(netpool_keyed_global_waiters{pool="shards"})", "2"},
      {R"(netpool_keyed_pools_created_total{pool="shards"})", "7"},
      {R"(netpool_keyed_pools_evicted_total{pool="shards"})", "3"},
      {R"(netpool_keyed_pools_removed_total{pool="shards"})", "1"},
      {R"(netpool_keyed_global_waits_total{pool="shards"})", "40"},
      {R"(netpool_keyed_global_exhausted_total{pool="shards"})", "6"},
      {R"(netpool_keyed_reclaimed_total{pool="shards"})", "9"},
  };
  for (const auto& [series, value] : expected)
    EXPECT_EQ(value_of(text, series), value) << series << "\n" << text;
  EXPECT_TRUE(has_line(text, "# TYPE netpool_keyed_pools gauge")) << text;
  EXPECT_TRUE(has_line(text, "# TYPE netpool_keyed_reclaimed_total counter")) << text;
  EXPECT_EQ(count_of(text, "# HELP netpool_keyed_"), std::size(expected));
}

// Plain and keyed pools in one scrape: each family once; the keyed families have samples for the
// keyed pools only. A labelled_stats with neither stats nor keyed is rejected, nothing written.
TEST(PrometheusTest, PlainAndKeyedPoolsInOneScrapeWriteEachFamilyOnce) {
  const pool_stats plain = sample_stats();
  const netpool::keyed_pool_stats k = keyed_sample();
  const prometheus_label a[] = {{"pool", "a"}};
  const prometheus_label b[] = {{"pool", "b"}};
  const labelled_stats pools[] = {{&plain, a}, {nullptr, b, &k}};
  std::ostringstream out;
  ASSERT_FALSE(write_prometheus(out, pools));
  const std::string text = out.str();
  EXPECT_EQ(count_of(text, "# TYPE netpool_connections "), 1u);
  EXPECT_EQ(count_of(text, "# TYPE netpool_keyed_pools "), 1u);
  EXPECT_EQ(value_of(text, R"(netpool_dials_total{pool="a",result="ok"})"), "15") << text;
  EXPECT_EQ(value_of(text, R"(netpool_dials_total{pool="b",result="ok"})"), "15") << text;
  EXPECT_EQ(value_of(text, R"(netpool_keyed_pools{pool="b"})"), "3") << text;
  EXPECT_EQ(text.find(R"(netpool_keyed_pools{pool="a"})"), std::string::npos) << text;

  const labelled_stats none[] = {{&plain, a}, {nullptr, b, nullptr}};
  std::ostringstream rejected;
  EXPECT_EQ(write_prometheus(rejected, none), std::errc::invalid_argument);
  EXPECT_EQ(rejected.str(), "");
}

// A real keyed pool: write_prometheus(out, keyed_pool) in total, and per key through
// stats_by_key() with a "key" label of the caller's.
TEST(PrometheusTest, ARealKeyedPoolInTotalAndPerKey) {
  netpool::test::echo_server server;
  netpool::keyed_pool_config<std::string> cfg;
  cfg.make_config = [&server](const std::string&) { return echo_config(server); };
  cfg.global_max = 4;
  auto pools = netpool::keyed_pool<std::string>::create(std::move(cfg)).value();
  for (const char* key : {"a", "b", "b"}) {
    auto conn = pools.get_for(key, 10s);
    ASSERT_TRUE(conn) << conn.error().message();
  }
  std::ostringstream out;
  ASSERT_FALSE(write_prometheus(out, pools, {{"pool", "k"}}));
  const std::string text = out.str();
  EXPECT_EQ(value_of(text, R"(netpool_keyed_pools{pool="k"})"), "2") << text;
  EXPECT_EQ(value_of(text, R"(netpool_keyed_connections_open{pool="k"})"), "2") << text;
  EXPECT_EQ(value_of(text, R"(netpool_keyed_connections_global_max{pool="k"})"), "4") << text;
  EXPECT_EQ(value_of(text, R"(netpool_keyed_pools_created_total{pool="k"})"), "2") << text;
  EXPECT_EQ(value_of(text, R"(netpool_dials_total{pool="k",result="ok"})"), "2") << text;
  EXPECT_EQ(value_of(text, R"(netpool_gets_total{pool="k",kind="immediate"})"), "3") << text;

  auto by_key = pools.stats_by_key();
  ASSERT_EQ(by_key.size(), 2u);
  std::sort(by_key.begin(), by_key.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  EXPECT_EQ(by_key[0].first, "a");
  EXPECT_EQ(by_key[0].second.gets, 1u);
  EXPECT_EQ(by_key[1].first, "b");
  EXPECT_EQ(by_key[1].second.gets, 2u);
  std::vector<std::array<prometheus_label, 1>> labels(by_key.size());
  std::vector<labelled_stats> per_key(by_key.size());
  for (std::size_t i = 0; i < by_key.size(); ++i) {
    labels[i] = {prometheus_label{"key", by_key[i].first}};
    per_key[i] = {&by_key[i].second, labels[i]};
  }
  std::ostringstream keys;
  ASSERT_FALSE(write_prometheus(keys, per_key));
  EXPECT_EQ(value_of(keys.str(), R"(netpool_gets_total{key="a",kind="immediate"})"), "1") << keys.str();
  EXPECT_EQ(value_of(keys.str(), R"(netpool_gets_total{key="b",kind="immediate"})"), "2") << keys.str();
}

// --- promtool -------------------------------------------------------------------------------

// promtool's path if it is on PATH, else empty.
std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): no thread sets the environment
  std::istringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

struct command_result {
  int status = -1;  // exit status, or -1 if it did not exit normally
  std::string output;
};

// Runs `promtool check metrics < file` with stderr folded into stdout.
command_result promtool_check(const std::string& promtool, const std::string& text) {
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("netpool_prometheus_" + std::to_string(::getpid()) + ".txt");
  std::ofstream(file) << text;
  const std::string command = "'" + promtool + "' check metrics < '" + file.string() + "' 2>&1";
  command_result result;
  FILE* pipe = ::popen(command.c_str(), "r");  // NOLINT(cert-env33-c): a fixed command, no user input
  if (pipe == nullptr) {
    std::filesystem::remove(file);
    return result;
  }
  std::array<char, 512> buffer{};
  for (int chunks = 0; chunks < 10'000; ++chunks) {  // bounded: promtool prints a few lines at most
    const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe);
    if (n == 0) break;
    result.output.append(buffer.data(), n);
  }
  const int raw = ::pclose(pipe);
  if (raw != -1 && WIFEXITED(raw)) result.status = WEXITSTATUS(raw);
  std::filesystem::remove(file);
  return result;
}

TEST(PrometheusTest, PromtoolCheckMetricsAcceptsTheOutput) {
  const std::string promtool = find_on_path("promtool");
  if (promtool.empty()) {
    GTEST_SKIP() << "promtool not on PATH: install Debian's prometheus package to check the output "
                    "with `promtool check metrics`";
  }
  // Two pools with labels that need escaping, and a real pool's output.
  const auto snapshots = two_snapshots();
  const prometheus_label a[] = {{"pool", "primary \"main\""}, {"path", "C:\\x\ny"}};
  const prometheus_label b[] = {{"pool", "replica ✓"}};
  const labelled_stats pools[] = {{&snapshots[0], a}, {&snapshots[1], b}};
  std::ostringstream two;
  ASSERT_FALSE(write_prometheus(two, pools));

  netpool::test::echo_server server;
  auto pool = netpool::pool<netpool::socket>::create(echo_config(server)).value();
  exercise(pool);
  std::ostringstream real;
  ASSERT_FALSE(write_prometheus(real, pool));

  // A plain pool and a keyed one in one scrape.
  const netpool::keyed_pool_stats keyed = keyed_sample();
  const labelled_stats mixed_pools[] = {{&snapshots[0], a}, {nullptr, b, &keyed}};
  std::ostringstream mixed;
  ASSERT_FALSE(write_prometheus(mixed, mixed_pools));

  for (const std::string& text : {two.str(), real.str(), render(pool_stats{}), mixed.str()}) {
    const command_result checked = promtool_check(promtool, text);
    EXPECT_EQ(checked.status, 0) << checked.output << "\n--- input ---\n" << text;
    EXPECT_EQ(checked.output, "") << "promtool reported problems:\n"
                                  << checked.output << "\n--- input ---\n"
                                  << text;
  }
}

}  // namespace
