// A user of an installed netpool: pools TCP connections to a loopback listener it opens itself,
// through the built-in tcp_dialer (so the compiled part of the library is linked and exercised,
// not only the headers). Exit status 0 only if every step and count is as expected.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <utility>

#include <netpool/netpool.hpp>

namespace {

int fail(const char* what) {
  std::fprintf(stderr, "FAIL: %s\n", what);
  return 1;
}

int fail(const char* what, const std::error_code& ec) {
  std::fprintf(stderr, "FAIL: %s: %s\n", what, ec.message().c_str());
  return 1;
}

// A listening socket on 127.0.0.1 with a kernel-chosen port. Nothing accepts: a connect completes
// once it is in the accept queue, which is all a pooled dial needs.
class loopback_listener {
 public:
  loopback_listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  loopback_listener(const loopback_listener&) = delete;
  loopback_listener& operator=(const loopback_listener&) = delete;
  ~loopback_listener() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] bool ok() const { return fd_ >= 0; }
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace

extern "C" int netpool_plugin_round_trip(std::uint16_t port);  // plugin.cpp, a shared library

namespace {

void print(const netpool::pool_stats& s) {
  std::printf("active=%zu idle=%zu in_use=%zu max=%zu gets=%llu dials=%llu dial_failures=%llu\n", s.active,
              s.idle, s.in_use, s.max, static_cast<unsigned long long>(s.gets),
              static_cast<unsigned long long>(s.dials), static_cast<unsigned long long>(s.dial_failures));
}

}  // namespace

int main() {
  // The package found (its netpoolConfigVersion.cmake) and the installed version.hpp agree.
  if (netpool::version_string != NETPOOL_PACKAGE_VERSION) return fail("version.hpp and the package differ");

  loopback_listener listener;
  if (!listener.ok()) return fail("cannot open a loopback listener");

  netpool::pool_config<netpool::socket> config;
  config.factory = netpool::tcp_dialer("127.0.0.1", listener.port());
  config.max_size = 2;
  config.dial_timeout = std::chrono::seconds(5);

  auto created = netpool::pool<netpool::socket>::create(std::move(config));
  if (!created) return fail("pool::create", created.error());
  netpool::pool<netpool::socket>& pool = *created;

  // First get dials; put returns the connection to the pool.
  {
    auto lease = pool.get_for(std::chrono::seconds(5));
    if (!lease) return fail("get_for", lease.error());
    if (!(*lease)->is_open()) return fail("leased socket is not open");
    if (std::error_code ec = pool.put(std::move(*lease))) return fail("put", ec);
  }
  // Second get reuses the idle connection; the lease's destructor returns it.
  {
    auto lease = pool.try_get();
    if (!lease) return fail("try_get", lease.error());
  }

  const netpool::pool_stats s = pool.stats();
  print(s);
  if (s.dials != 1 || s.gets != 2 || s.dial_failures != 0) return fail("unexpected dials/gets");
  if (s.active != 1 || s.idle != 1 || s.in_use != 0 || s.max != 2) return fail("unexpected gauges");
  if (pool.len() != 1) return fail("len() != 1");

  pool.close();
  if (!pool.closed()) return fail("closed() is false after close()");
  auto after = pool.try_get();
  if (after || after.error() != netpool::errc::pool_closed)
    return fail("try_get after close did not fail with pool_closed");
  if (pool.stats().idle != 0) return fail("idle connections survived close()");

  if (const int step = netpool_plugin_round_trip(listener.port()); step != 0) {
    std::fprintf(stderr, "FAIL: the pool inside a shared library, step %d\n", step);
    return 1;
  }

  std::puts("find_package consumer: OK");
  return 0;
}
