// bench/bench_echo.cpp — section 4 of issue 4: the pool inside real request/response traffic.
//
//   echo/<variant>   threads 1, 4, 16; one op = one request: get a connection, send 64 bytes, read
//                    the 64-byte echo from the embedded server, give the connection back.
//   variants: netpool_standard, netpool_basic, mutex_pool   pooled (max 100, min 50)
//             dial_per_request                               tcp_dialer per request, closed after
//             shared_connection                              one connection behind a std::mutex
// Counters: items_per_second = requests per second; pool_share = the fraction of each request's
// time spent getting and giving back the connection (for dial_per_request: dialing and closing;
// for shared_connection: waiting for the mutex), from steady_clock reads around those calls;
// pool_ns_per_request the same in ns. Both include one clock read per interval (~20-50 ns here), so
// they overstate a fast pool's share rather than hide it.
#include <array>
#include <chrono>
#include <cstring>
#include <mutex>

#include "contenders/all.hpp"
#include "harness.hpp"
#include "sections.hpp"

namespace bench {
namespace {

constexpr std::size_t kMessage = 64;

// No pool: a fresh connection per request, closed after it, as code without a pool does.
class dial_per_request {
 public:
  static constexpr const char* name = "dial_per_request";
  using handle = netpool::result<netpool::socket>;
  explicit dial_per_request(const pool_params&) {}
  handle acquire() noexcept { return dial(); }
  bool release(handle& h) noexcept { return !h->close(); }
  static netpool::socket& connection(handle& h) noexcept { return *h; }
};

// One connection shared by every thread, a mutex serialising the requests.
class shared_connection {
 public:
  static constexpr const char* name = "shared_connection";
  struct handle {
    std::unique_lock<std::mutex> lock;
    netpool::socket* connection = nullptr;
    explicit operator bool() const noexcept { return connection != nullptr; }
  };
  explicit shared_connection(const pool_params&) : connection_(dial_or_throw()) {}
  handle acquire() noexcept { return handle{std::unique_lock(mutex_), connection_.get()}; }
  bool release(handle& h) noexcept {
    h.connection = nullptr;
    h.lock.unlock();
    return true;
  }
  static netpool::socket& connection(handle& h) noexcept { return *h.connection; }

 private:
  std::mutex mutex_;
  std::unique_ptr<netpool::socket> connection_;
};

template <class V>
void setup_echo(const benchmark::State&) {
  pool_cache::prepare<V>(pool_params{100, 50});
}

bool echo_once(netpool::socket& connection, std::array<char, kMessage>& buffer) noexcept {
  if (connection.send_all(std::string_view(buffer.data(), buffer.size()))) return false;
  std::size_t received = 0;
  while (received < kMessage) {
    auto n = connection.recv(buffer.data() + received, kMessage - received);
    if (!n || *n == 0) return false;
    received += *n;
  }
  return true;
}

template <class V>
void echo(benchmark::State& state) {
  V* variant = pool_cache::current_or_skip<V>(state);
  if (variant == nullptr) return;
  std::array<char, kMessage> buffer;
  std::memset(buffer.data(), 'x', buffer.size());
  std::chrono::nanoseconds pool_time{0};
  std::chrono::nanoseconds total_time{0};
  op_counters counters(state);
  timed_loop(state, counters, [&] {
    const auto t0 = std::chrono::steady_clock::now();
    auto h = variant->acquire();
    const auto t1 = std::chrono::steady_clock::now();
    if (!h) return skip(state, "acquire failed");
    if (!echo_once(V::connection(h), buffer)) return skip(state, "echo failed");
    const auto t2 = std::chrono::steady_clock::now();
    if (!variant->release(h)) return skip(state, "release failed");
    const auto t3 = std::chrono::steady_clock::now();
    pool_time += (t1 - t0) + (t3 - t2);
    total_time += t3 - t0;
    return true;
  });
  counters.finish(state);
  if (total_time.count() > 0) {
    // Each thread ran the same number of requests: the mean of the threads' shares is the share.
    state.counters["pool_share"] =
        benchmark::Counter(static_cast<double>(pool_time.count()) / static_cast<double>(total_time.count()),
                           benchmark::Counter::kAvgThreads);
    state.counters["pool_ns_per_request"] =
        benchmark::Counter(static_cast<double>(pool_time.count()), benchmark::Counter::kAvgIterations);
  }
}

template <class V>
void register_variant() {
  register_threaded(std::string("echo/") + V::name, echo<V>, {1, 4, 16})
      ->Setup(setup_echo<V>)
      ->Unit(benchmark::kMicrosecond);
}

}  // namespace

void register_echo() {
  register_variant<netpool_standard>();
  register_variant<netpool_basic>();
  register_variant<mutex_pool>();
  register_variant<dial_per_request>();
  register_variant<shared_connection>();
}

}  // namespace bench
