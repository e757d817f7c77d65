// fault_harness.hpp — the machinery shared by netpool's fault scenarios (tests/fault/*_test.cpp).
//
//   scenario_record rec("server restart");            // first in the test: counts descriptors now
//   echo_server server;
//   instrumented_factory factory(netpool::tcp_dialer(server.host(), server.port()));
//   auto pool = netpool::pool<netpool::socket>::create(factory.config()).value();
//   client_load load(pool, {.threads = 4});            // round trips until stopped (bounded)
//   ASSERT_TRUE(load.wait_successes(50));
//   load.fault_begins(); server.stop(); ...; server.restart(); load.fault_ends();
//   ASSERT_TRUE(load.wait_recovered());                // a round trip completed after the fault
//   load.finish();                                     // stop, join (a hang fails the test)
//   expect_consistent(pool, factory, load.tally());    // quiescent stats, exact accounting
//   rec.take(load);                                    // ~scenario_record: fd check + JSON line
//
// Every load is bounded in requests and in time. Nothing here asserts a tight timing: waits use
// generous deadlines, and durations are measured and reported, not compared with a budget.
//
// Figures: when NETPOOL_RELIABILITY_JSON names a file, every scenario appends one JSON line to it
// ({"scenario", "ops", "errors_by_code", "fds_leaked", "recovery_ms", ...}); scripts/reliability.sh
// runs the suite that way and scripts/reliability_report.py turns the lines into the README table.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "socket_helpers.hpp"
#include "test_support.hpp"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define NETPOOL_FAULT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define NETPOOL_FAULT_SANITIZED 1
#endif
#endif
#ifndef NETPOOL_FAULT_SANITIZED
#define NETPOOL_FAULT_SANITIZED 0
#endif

namespace netpool::fault {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using netpool::test::fd_leak_check;
using std::chrono::milliseconds;

// Sanitizers slow everything 2-15x: fewer threads and requests, same fault durations (those are
// wall time the pool has to live through, not work).
inline constexpr bool sanitized = NETPOOL_FAULT_SANITIZED != 0;
inline constexpr int default_threads = sanitized ? 3 : 4;
inline constexpr std::uint64_t max_requests_per_thread = sanitized ? 20'000 : 200'000;
// Beyond this a load thread stops by itself, whatever the scenario says (the test then fails if it
// still needed the load). Far above any scenario's length.
inline constexpr milliseconds load_time_limit = 20s;
// How long a scenario waits for something that should take milliseconds (recovery, warm-up).
inline constexpr milliseconds patience = sanitized ? 20s : 10s;
// A client's own bound on one request/response (the socket's I/O deadline), so that no test thread
// blocks forever on a stalled backend.
inline constexpr milliseconds default_io_timeout = 2s;

// ---- naming error codes ------------------------------------------------------------------------

inline std::string errno_name(int value) {
  if (const char* name = ::strerrorname_np(value)) return name;
  return "errno " + std::to_string(value);
}

inline std::string eai_name(int value) {
  switch (value) {
    case EAI_NONAME:
      return "EAI_NONAME";
    case EAI_AGAIN:
      return "EAI_AGAIN";
    case EAI_FAIL:
      return "EAI_FAIL";
    case EAI_FAMILY:
      return "EAI_FAMILY";
    case EAI_SERVICE:
      return "EAI_SERVICE";
    case EAI_MEMORY:
      return "EAI_MEMORY";
    case EAI_SYSTEM:
      return "EAI_SYSTEM";
    default:
      return "EAI " + std::to_string(value);
  }
}

// A short stable name for a code, as the README table shows it: netpool's own codes by their
// enumerator ("timeout"), dial failures by errno or EAI name ("ECONNREFUSED", "EAI_NONAME").
inline std::string code_name(const std::error_code& ec) {
  if (ec.category() == netpool::netpool_category()) {
    switch (static_cast<netpool::errc>(ec.value())) {
      case errc::pool_closed:
        return "pool_closed";
      case errc::timeout:
        return "timeout";
      case errc::cancelled:
        return "cancelled";
      case errc::exhausted:
        return "exhausted";
      case errc::dial_failed:
        return "dial_failed";
      case errc::invalid_config:
        return "invalid_config";
      case errc::empty_lease:
        return "empty_lease";
      case errc::wrong_pool:
        return "wrong_pool";
      case errc::factory_threw:
        return "factory_threw";
      case errc::health_check_threw:
        return "health_check_threw";
      case errc::hook_rejected:
        return "hook_rejected";
      case errc::dial_not_needed:
        return "dial_not_needed";
      case errc::io_timeout:
        return "io_timeout";
      case errc::end_of_stream:
        return "eof";
    }
    return "netpool " + std::to_string(ec.value());
  }
  if (ec.category() == netpool::dial_category())
    return ec.value() < 0 ? eai_name(ec.value()) : errno_name(ec.value());
  if (ec.category() == std::system_category() || ec.category() == std::generic_category())
    return errno_name(ec.value());
  return std::string(ec.category().name()) + " " + std::to_string(ec.value());
}

// ---- counting ------------------------------------------------------------------------------------

// What a scenario's clients saw, from every thread (the load's and the test's own probes).
class tally {
 public:
  using counts = std::map<std::string, std::uint64_t>;

  void get_attempted() noexcept { gets_.fetch_add(1, std::memory_order_relaxed); }
  void get_succeeded() noexcept { gets_ok_.fetch_add(1, std::memory_order_relaxed); }
  void get_failed(const std::error_code& ec) { add(get_errors_, code_name(ec)); }
  // A round trip through a leased connection failed: `what` is an errno name or "eof"/"garbled".
  void io_failed(const std::string& what) { add(io_errors_, what); }
  void round_trip_ok() noexcept { round_trips_.fetch_add(1, std::memory_order_relaxed); }
  void discarded(const std::error_code& ec) noexcept {
    (ec ? put_errors_ : discards_).fetch_add(1, std::memory_order_relaxed);
  }
  void returned(const std::error_code& ec) noexcept {
    if (ec) put_errors_.fetch_add(1, std::memory_order_relaxed);
  }
  void latency(clock_type::duration d) noexcept {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    std::int64_t seen = max_get_ns_.load(std::memory_order_relaxed);
    while (ns > seen && !max_get_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
    }
  }

  std::uint64_t gets() const noexcept { return gets_.load(); }
  std::uint64_t gets_ok() const noexcept { return gets_ok_.load(); }
  std::uint64_t round_trips() const noexcept { return round_trips_.load(); }
  std::uint64_t discards() const noexcept { return discards_.load(); }
  std::uint64_t put_errors() const noexcept { return put_errors_.load(); }
  milliseconds max_get_latency() const noexcept {
    return std::chrono::duration_cast<milliseconds>(std::chrono::nanoseconds(max_get_ns_.load()));
  }
  counts get_errors() const {
    std::lock_guard lock(mutex_);
    return get_errors_;
  }
  counts io_errors() const {
    std::lock_guard lock(mutex_);
    return io_errors_;
  }
  std::uint64_t get_errors_total() const {
    std::uint64_t n = 0;
    for (const auto& [name, count] : get_errors()) n += count;
    return n;
  }
  std::uint64_t get_errors_named(const std::string& name) const {
    const counts c = get_errors();
    const auto it = c.find(name);
    return it == c.end() ? 0 : it->second;
  }

 private:
  void add(counts& c, const std::string& name) {
    std::lock_guard lock(mutex_);
    ++c[name];
  }

  std::atomic<std::uint64_t> gets_{0}, gets_ok_{0}, round_trips_{0}, discards_{0}, put_errors_{0};
  std::atomic<std::int64_t> max_get_ns_{0};
  mutable std::mutex mutex_;
  counts get_errors_;
  counts io_errors_;
};

inline std::string describe(const tally::counts& c) {
  std::string out;
  for (const auto& [name, count] : c) {
    if (!out.empty()) out += ", ";
    out += name + " " + std::to_string(count);
  }
  return out.empty() ? "none" : out;
}

// ---- one request / response ----------------------------------------------------------------------

// Sends `message` and reads its echo, all within `io_timeout`. Empty on success; else what went wrong,
// as the table names it ("ECONNRESET", "io_timeout" when io_timeout ran out, "eof", "garbled").
inline std::optional<std::string> round_trip(netpool::socket& s, const std::string& message,
                                             milliseconds io_timeout = default_io_timeout) {
  const auto deadline = clock_type::now() + io_timeout;
  if (std::error_code ec = s.send_all(message, deadline)) return code_name(ec);
  std::string got(message.size(), '\0');
  if (std::error_code ec = s.recv_all(got.data(), got.size(), deadline)) return code_name(ec);
  if (got != message) return std::string("garbled");
  return std::nullopt;
}

// A request unique to its sender ("t3.1207\n"), so that a reply read by the wrong client shows.
// (snprintf rather than string concatenation: g++ 12 -O3 reports a false -Wrestrict on the latter.)
inline std::string request(const char* tag, std::uint64_t a, std::uint64_t b) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "%s%llu.%llu\n", tag, static_cast<unsigned long long>(a),
                              static_cast<unsigned long long>(b));
  return std::string(buf, static_cast<std::size_t>(n));
}

inline bool probe_alive(netpool::socket& s) {
  return s.probe() == netpool::liveness::alive;
}

// What a peek at descriptor `fd` says, without owning it: lets a test wait until an idle pooled
// socket has really received the server's FIN, RST or data before the pool looks at it.
inline netpool::liveness peek(int fd) {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return netpool::liveness::unread_data;
  if (n == 0) return netpool::liveness::peer_closed;
  return (errno == EAGAIN || errno == EWOULDBLOCK) ? netpool::liveness::alive : netpool::liveness::error;
}

// ---- the factory under test's control --------------------------------------------------------------

// Wraps a dialer: counts calls, dials in flight at once and the longest dial; throws while
// throw_now is set. Must outlive the pool (the pool calls it until its maintainer is joined).
class instrumented_factory {
 public:
  explicit instrumented_factory(netpool::tcp_dialer dialer) : dialer_(std::move(dialer)) {}
  instrumented_factory(const instrumented_factory&) = delete;
  instrumented_factory& operator=(const instrumented_factory&) = delete;

  // A pool configuration with this factory and the pool's defaults otherwise.
  netpool::pool_config<netpool::socket> config() {
    netpool::pool_config<netpool::socket> cfg;
    cfg.factory = [this](clock_type::time_point deadline) { return call(deadline); };
    return cfg;
  }

  std::atomic<bool> throw_now{false};

  std::uint64_t calls() const noexcept { return calls_.load(); }
  std::uint64_t failures() const noexcept { return failures_.load(); }
  std::size_t max_in_flight() const noexcept { return max_in_flight_.load(); }
  milliseconds max_duration() const noexcept {
    return std::chrono::duration_cast<milliseconds>(std::chrono::nanoseconds(max_ns_.load()));
  }

 private:
  netpool::result<netpool::socket> call(clock_type::time_point deadline) {
    calls_.fetch_add(1);
    const std::size_t now_in = in_flight_.fetch_add(1) + 1;
    std::size_t seen = max_in_flight_.load();
    while (now_in > seen && !max_in_flight_.compare_exchange_weak(seen, now_in)) {
    }
    struct leave {
      instrumented_factory& f;
      clock_type::time_point t0 = clock_type::now();
      ~leave() {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count();
        std::int64_t m = f.max_ns_.load();
        while (ns > m && !f.max_ns_.compare_exchange_weak(m, ns)) {
        }
        f.in_flight_.fetch_sub(1);
      }
    } guard{*this};

    if (throw_now.load()) {
      failures_.fetch_add(1);
      throw std::runtime_error("instrumented_factory: injected failure");
    }
    netpool::result<netpool::socket> s = dialer_(deadline);
    if (!s) failures_.fetch_add(1);
    return s;
  }

  netpool::tcp_dialer dialer_;
  std::atomic<std::uint64_t> calls_{0}, failures_{0};
  std::atomic<std::size_t> in_flight_{0}, max_in_flight_{0};
  std::atomic<std::int64_t> max_ns_{0};
};

// ---- client load -----------------------------------------------------------------------------------

struct load_options {
  int threads = default_threads;
  milliseconds get_timeout = 2s;
  // A client that just failed waits this long before its next request (as real clients back off);
  // zero hammers the pool.
  milliseconds pause_after_error = 1ms;
  // Each round trip's own deadline (round_trip()).
  milliseconds io_timeout = default_io_timeout;
};

// N threads doing get_for -> round trip -> put (put_with_error after a failed round trip) until
// finish(), max_requests_per_thread, or load_time_limit. Records the first round trip completed
// after fault_ends(): the recovery time.
template <class Pool>
class client_load {
 public:
  client_load(Pool& pool, tally& counts, load_options options = {})
      : pool_(pool), tally_(counts), options_(options) {
    for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { run(t); });
  }
  client_load(const client_load&) = delete;
  client_load& operator=(const client_load&) = delete;
  ~client_load() { finish(); }

  // Waits until `n` more round trips have succeeded (false if they did not within `timeout`).
  bool wait_successes(std::uint64_t n, milliseconds timeout = patience) {
    const std::uint64_t target = tally_.round_trips() + n;
    return netpool::test::wait_for([&] { return tally_.round_trips() >= target || running_ == 0; },
                                   timeout) &&
           tally_.round_trips() >= target;
  }

  void fault_begins() noexcept { fault_begin_ = clock_type::now(); }
  void fault_ends() noexcept {
    fault_end_ = clock_type::now();
    fault_end_ns_.store(since_epoch(fault_end_));
  }
  // Waits until a round trip has completed after fault_ends().
  bool wait_recovered(milliseconds timeout = patience) {
    return netpool::test::wait_for([&] { return recovered_ns_.load() != 0 || running_ == 0; }, timeout) &&
           recovered_ns_.load() != 0;
  }
  // Time from fault_ends() to the first round trip completed after it (by the load).
  std::optional<milliseconds> recovery() const noexcept {
    const std::int64_t r = recovered_ns_.load();
    if (r == 0) return std::nullopt;
    return std::chrono::duration_cast<milliseconds>(std::chrono::nanoseconds(r - fault_end_ns_.load()));
  }
  milliseconds fault_duration() const noexcept {
    return std::chrono::duration_cast<milliseconds>(fault_end_ - fault_begin_);
  }

  // Stops the threads and joins them. Fails the test if they do not stop within a generous bound
  // (a get or round trip that hangs); then it still joins (the test binary's timeout is the last
  // resort).
  void finish() {
    if (threads_.empty()) return;
    stop_.store(true);
    EXPECT_TRUE(netpool::test::wait_for([&] { return running_ == 0; }, options_.get_timeout + patience))
        << "a client thread is stuck in get() or a round trip";
    for (auto& t : threads_) t.join();
    threads_.clear();
    elapsed_ = std::chrono::duration_cast<milliseconds>(clock_type::now() - started_);
  }
  milliseconds elapsed() const noexcept { return elapsed_; }
  int threads() const noexcept { return options_.threads; }

 private:
  static std::int64_t since_epoch(clock_type::time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }

  void run(int thread_index) {
    const auto deadline = started_ + load_time_limit;
    for (std::uint64_t i = 0; i < max_requests_per_thread && !stop_.load(); ++i) {
      if (clock_type::now() >= deadline) break;
      tally_.get_attempted();
      const auto t0 = clock_type::now();
      auto conn = pool_.get_for(options_.get_timeout);
      tally_.latency(clock_type::now() - t0);
      if (!conn) {
        tally_.get_failed(conn.error());
        if (options_.pause_after_error.count() > 0) std::this_thread::sleep_for(options_.pause_after_error);
        continue;
      }
      tally_.get_succeeded();
      const std::string message = request("t", static_cast<std::uint64_t>(thread_index), i);
      if (auto failure = round_trip(**conn, message, options_.io_timeout)) {
        tally_.io_failed(*failure);
        tally_.discarded(pool_.put_with_error(std::move(*conn)));
        if (options_.pause_after_error.count() > 0) std::this_thread::sleep_for(options_.pause_after_error);
        continue;
      }
      tally_.returned(pool_.put(std::move(*conn)));
      tally_.round_trip_ok();
      const std::int64_t end = fault_end_ns_.load();
      if (end != 0) {
        const std::int64_t now = since_epoch(clock_type::now());
        std::int64_t none = 0;
        if (now >= end) recovered_ns_.compare_exchange_strong(none, now);
      }
    }
    running_.fetch_sub(1);
  }

  Pool& pool_;
  tally& tally_;
  const load_options options_;
  const clock_type::time_point started_ = clock_type::now();
  std::atomic<bool> stop_{false};
  std::atomic<int> running_{options_.threads};
  clock_type::time_point fault_begin_{}, fault_end_{};
  std::atomic<std::int64_t> fault_end_ns_{0};
  std::atomic<std::int64_t> recovered_ns_{0};
  milliseconds elapsed_{0};
  std::vector<std::thread> threads_;
};

// ---- checks -----------------------------------------------------------------------------------------

// Gets `n` connections at once and returns them: the pool then holds n idle connections.
template <class Pool>
void prewarm(Pool& pool, tally& counts, std::size_t n) {
  std::vector<netpool::lease<netpool::socket>> held;
  for (std::size_t i = 0; i < n; ++i) {
    counts.get_attempted();
    auto conn = pool.get_for(patience);
    ASSERT_TRUE(conn) << "prewarm: " << conn.error().message();
    counts.get_succeeded();
    held.push_back(std::move(*conn));
  }
  for (auto& l : held) counts.returned(pool.put(std::move(l)));
}

// Takes every idle connection at once (try_get: no dial) and round-trips through each; a failure is
// discarded. Returns how many failed. Run twice after a fault: the second pass must find only live
// connections (no stale connection survives in the pool).
template <class Pool>
std::size_t round_trip_every_idle(Pool& pool, tally& counts, const char* tag) {
  std::vector<netpool::lease<netpool::socket>> held;
  for (std::size_t i = 0; i < pool.stats().max; ++i) {
    auto conn = pool.try_get();
    if (!conn) {
      // The end of the idle set, not a client's failure: not counted.
      EXPECT_EQ(conn.error(), errc::exhausted) << conn.error().message();
      break;
    }
    counts.get_attempted();
    counts.get_succeeded();
    held.push_back(std::move(*conn));
  }
  std::size_t failed = 0;
  for (std::size_t i = 0; i < held.size(); ++i) {
    if (auto failure = round_trip(*held[i], request(tag, 0, i))) {
      counts.io_failed(*failure);
      counts.discarded(pool.put_with_error(std::move(held[i])));
      ++failed;
    } else {
      counts.round_trip_ok();
      counts.returned(pool.put(std::move(held[i])));
    }
  }
  return failed;
}

// Without the load: gets and round-trips until one succeeds (the pool recovered without being
// recreated). Returns the time it took, or nothing.
template <class Pool>
std::optional<milliseconds> round_trip_until_success(Pool& pool, tally& counts,
                                                     milliseconds timeout = patience) {
  const auto t0 = clock_type::now();
  for (int i = 0; clock_type::now() - t0 < timeout; ++i) {
    counts.get_attempted();
    auto conn = pool.get_for(1s);
    if (!conn) {
      counts.get_failed(conn.error());
      std::this_thread::sleep_for(5ms);
      continue;
    }
    counts.get_succeeded();
    if (auto failure = round_trip(**conn, request("check", 0, static_cast<std::uint64_t>(i)))) {
      counts.io_failed(*failure);
      counts.discarded(pool.put_with_error(std::move(*conn)));
      continue;
    }
    counts.round_trip_ok();
    counts.returned(pool.put(std::move(*conn)));
    return std::chrono::duration_cast<milliseconds>(clock_type::now() - t0);
  }
  return std::nullopt;
}

// The pool at rest (no client running): nothing lent or waiting, the connections it says it holds
// are the ones `factory` made and it did not close, and its counters equal to what the clients
// saw. `exact_errors`: every failed get is a timeout, a fast failure or a failed dial (true unless
// the maintainer dials: min_size > 0).
template <class Pool>
void expect_consistent(Pool& pool, const instrumented_factory& factory, const tally& counts,
                       bool exact_errors = true) {
  // A dial or check that a get gave up on may still be finishing for a moment.
  EXPECT_TRUE(netpool::test::wait_for([&] {
    const auto s = pool.stats();
    return s.dialing == 0 && s.waiters == 0;
  }));
  const netpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.in_use, 0u) << "a connection is still lent out";
  EXPECT_EQ(s.waiters, 0u);
  EXPECT_EQ(s.dialing, 0u);
  // stats() derives active from the slots' states; count it from outside instead: every connection
  // the factory made is either still in the pool or was closed by it, and each close is counted
  // under one reason (on_connect refusals included, as closed_hook).
  std::uint64_t closed = 0;
  for (const std::uint64_t n : s.closed) closed += n;
  const std::uint64_t made = factory.calls() - factory.failures();
  EXPECT_EQ(made - closed, s.active) << "made " << made << ", closed " << closed
                                     << ": the pool's count drifted";
  EXPECT_EQ(s.gets, counts.gets_ok()) << "every connection handed out reached a client";
  EXPECT_EQ(s.closed_error, counts.discards()) << "every put_with_error closed its connection";
  EXPECT_EQ(counts.put_errors(), 0u) << "put/put_with_error failed while the pool was open";
  EXPECT_EQ(counts.gets(), counts.gets_ok() + counts.get_errors_total()) << "a get returned neither";
  EXPECT_GE(s.dials, s.dial_failures);
  if (exact_errors) {
    // Every failed get is a timeout, a fast failure or a failed dial. pool also fails dials that
    // nobody waits for any more (a dialer thread's, after its caller gave up), so there it is a
    // range; lean_pool's callers dial for themselves and it is exact.
    EXPECT_GE(counts.get_errors_total(), s.timeouts + s.fast_failures) << describe(counts.get_errors());
    EXPECT_LE(counts.get_errors_total(), s.timeouts + s.fast_failures + s.dial_failures)
        << describe(counts.get_errors());
    if constexpr (!requires { pool.reset(); }) {
      EXPECT_EQ(counts.get_errors_total(), s.timeouts + s.fast_failures + s.dial_failures)
          << describe(counts.get_errors());
    }
  }
  const auto io = counts.io_errors();
  EXPECT_EQ(io.count("garbled"), 0u) << "a client read someone else's reply";
}

// close(): everything goes to zero (a dial in flight finishes first).
template <class Pool>
void expect_empty_after_close(Pool& pool) {
  pool.close();
  EXPECT_TRUE(netpool::test::wait_for([&] { return pool.stats().active == 0; }));
  const auto s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.idle, 0u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.dialing, 0u);
  EXPECT_EQ(s.waiters, 0u);
  auto after = pool.try_get();
  EXPECT_EQ(after.error(), errc::pool_closed);
}

// ---- descriptors and the scenario's record --------------------------------------------------------

// Declared first in a scenario (so destroyed last, after its pools and servers): counts the
// process's descriptors at both ends, and appends the scenario's JSON line when
// NETPOOL_RELIABILITY_JSON is set.
class scenario_record {
 public:
  explicit scenario_record(std::string scenario)
      : scenario_(std::move(scenario)), fds_before_(netpool::test::open_fd_count()) {}
  scenario_record(const scenario_record&) = delete;
  scenario_record& operator=(const scenario_record&) = delete;

  // The figures of a finished load (call after load.finish() and any recovery probe).
  template <class Load>
  void take(const Load& load, const tally& counts, std::optional<milliseconds> recovery) {
    threads_ = load.threads();
    duration_ = load.elapsed();
    fault_ = load.fault_duration();
    take(counts, recovery);
  }
  void take(const tally& counts, std::optional<milliseconds> recovery) {
    ops_ = counts.gets();
    round_trips_ = counts.round_trips();
    get_errors_ = counts.get_errors();
    io_errors_ = counts.io_errors();
    max_get_ms_ = counts.max_get_latency().count();
    recovery_ = recovery;
  }
  void note(std::string key, std::string json_value) {
    extra_.emplace_back(std::move(key), std::move(json_value));
  }

  ~scenario_record() {
    const long leaked = static_cast<long>(netpool::test::open_fd_count()) - static_cast<long>(fds_before_);
    EXPECT_EQ(leaked, 0) << "descriptors leaked";
    write_json(leaked);
  }

 private:
  static std::string quote(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += c;
      }
    }
    return out + "\"";
  }
  static std::string object(const tally::counts& c) {
    std::string out = "{";
    for (const auto& [name, count] : c) {
      if (out.size() > 1) out += ", ";
      out += quote(name) + ": " + std::to_string(count);
    }
    return out + "}";
  }

  void write_json(long leaked) const {
    const char* path = std::getenv("NETPOOL_RELIABILITY_JSON");
    if (path == nullptr || *path == '\0') return;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string line = "{\"scenario\": " + quote(scenario_);
    if (info != nullptr)
      line += ", \"test\": " + quote(std::string(info->test_suite_name()) + "." + info->name());
    line += ", \"ops\": " + std::to_string(ops_);
    line += ", \"round_trips\": " + std::to_string(round_trips_);
    line += ", \"errors_by_code\": " + object(get_errors_);
    line += ", \"io_errors\": " + object(io_errors_);
    line += ", \"fds_leaked\": " + std::to_string(leaked);
    line += ", \"recovery_ms\": " + (recovery_ ? std::to_string(recovery_->count()) : std::string("null"));
    line += ", \"threads\": " + std::to_string(threads_);
    line += ", \"fault_ms\": " + std::to_string(fault_.count());
    line += ", \"duration_ms\": " + std::to_string(duration_.count());
    line += ", \"max_get_ms\": " + std::to_string(max_get_ms_);
    line += ", \"sanitized\": " + std::string(sanitized ? "true" : "false");
    line += ", \"passed\": " + std::string(::testing::Test::HasFailure() ? "false" : "true");
    for (const auto& [key, value] : extra_) line += ", " + quote(key) + ": " + value;
    line += "}\n";
    // One write() on an O_APPEND descriptor: lines from concurrent test processes never interleave.
    const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      ADD_FAILURE() << "NETPOOL_RELIABILITY_JSON: cannot open " << path << ": " << std::strerror(errno);
      return;
    }
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      ADD_FAILURE() << "NETPOOL_RELIABILITY_JSON: short write to " << path;
    ::close(fd);
  }

  std::string scenario_;
  std::size_t fds_before_;
  std::uint64_t ops_ = 0, round_trips_ = 0;
  tally::counts get_errors_, io_errors_;
  std::optional<milliseconds> recovery_;
  int threads_ = 1;
  milliseconds duration_{0}, fault_{0};
  std::int64_t max_get_ms_ = 0;
  std::vector<std::pair<std::string, std::string>> extra_;
};

}  // namespace netpool::fault
