// tcp_dialer, unix_dialer and system_resolver, against loopback servers only.
#include "netpool/dialer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/error.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::test::echo_server;
using netpool::test::wait_for;
using steady = std::chrono::steady_clock;

netpool::endpoint loopback4(std::uint16_t port) {
  netpool::endpoint ep;
  auto* a = reinterpret_cast<sockaddr_in*>(&ep.address);
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a->sin_port = htons(port);
  ep.length = sizeof(sockaddr_in);
  return ep;
}

// A full round trip proves the descriptor is a working, connected stream.
void expect_echo(netpool::socket& s, const std::string& message = "hello") {
  ASSERT_FALSE(s.send_all(message));
  std::string got(message.size(), '\0');
  const std::error_code ec = s.recv_all(got.data(), got.size());
  ASSERT_FALSE(ec) << ec.message();  // end_of_stream: the peer closed
  EXPECT_EQ(got, message);
}

int int_option(int fd, int level, int option) {
  int value = -1;
  socklen_t length = sizeof value;
  EXPECT_EQ(::getsockopt(fd, level, option, &value, &length), 0) << std::strerror(errno);
  return value;
}

bool machine_has_ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// True when /etc/hosts maps "localhost": then getaddrinfo answers from the file ("files" comes
// first in Debian's nsswitch.conf) and no DNS query leaves the machine.
bool hosts_file_has_localhost() {
  std::ifstream hosts("/etc/hosts");
  std::string line;
  while (std::getline(hosts, line)) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string address, name;
    if (!(words >> address)) continue;
    while (words >> name) {
      if (name == "localhost") return true;
    }
  }
  return false;
}

bool is_loopback(const netpool::endpoint& ep) {
  if (ep.address.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ep.address);
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ep.address.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ep.address);
    return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
  }
  return false;
}

// A Unix listener with backlog 0 that never accepts: it holds one pending connection, and further
// connects wait for room (Unix sockets have no SYN to drop; the connecting thread sleeps).
class unix_full_listener {
 public:
  unix_full_listener() {
    char dir[] = "/tmp/netpool-unix-full-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    dir_ = dir;
    path_ = dir_ + "/full.sock";
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path_.c_str());
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd_, 0) != 0)
      throw std::system_error(errno, std::generic_category(), "unix listener");
  }
  ~unix_full_listener() {
    fillers_.clear();
    ::close(fd_);
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  unix_full_listener(const unix_full_listener&) = delete;
  unix_full_listener& operator=(const unix_full_listener&) = delete;

  // Connects fillers until one times out; true if the queue filled within a few.
  bool fill() {
    for (int i = 0; i < 8; ++i) {
      auto s = netpool::unix_dialer(path_)(steady::now() + 300ms);
      if (!s) return s.error() == netpool::errc::timeout;
      fillers_.push_back(std::move(*s));
    }
    return false;
  }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  std::vector<netpool::socket> fillers_;
};

// ---- system_resolver -------------------------------------------------------------------------

TEST(SystemResolverTest, Ipv4Literal) {
  std::vector<netpool::endpoint> out;
  ASSERT_FALSE(netpool::system_resolver("127.0.0.1", 6379, out));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].address.ss_family, AF_INET);
  EXPECT_EQ(out[0].length, sizeof(sockaddr_in));
  const auto* a = reinterpret_cast<const sockaddr_in*>(&out[0].address);
  EXPECT_EQ(ntohs(a->sin_port), 6379);
  EXPECT_EQ(ntohl(a->sin_addr.s_addr), INADDR_LOOPBACK);
}

// getaddrinfo reads a C string: a name with a NUL in it must not resolve as its first part (it
// used to connect to 127.0.0.1 here). Nothing is looked up, so nothing leaves the machine.
TEST(SystemResolverTest, ANameWithANulInItDoesNotResolve) {
  using namespace std::string_view_literals;
  std::vector<netpool::endpoint> out;
  const std::error_code ec = netpool::system_resolver("127.0.0.1\0.example"sv, 6379, out);
  EXPECT_EQ(ec, netpool::make_resolve_error(EAI_NONAME)) << ec.message();
  EXPECT_TRUE(out.empty());
}

TEST(SystemResolverTest, Ipv6LiteralBareAndBracketed) {
  for (const char* host : {"::1", "[::1]"}) {
    std::vector<netpool::endpoint> out;
    ASSERT_FALSE(netpool::system_resolver(host, 8080, out)) << host;
    ASSERT_EQ(out.size(), 1u) << host;
    ASSERT_EQ(out[0].address.ss_family, AF_INET6) << host;
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&out[0].address);
    EXPECT_EQ(ntohs(a->sin6_port), 8080);
    EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&a->sin6_addr));
  }
}

TEST(SystemResolverTest, LocalhostFromHostsFile) {
  if (!hosts_file_has_localhost()) GTEST_SKIP() << "/etc/hosts has no localhost entry (would query DNS)";
  std::vector<netpool::endpoint> out;
  ASSERT_FALSE(netpool::system_resolver("localhost", 80, out));
  ASSERT_FALSE(out.empty());
  for (const auto& ep : out) EXPECT_TRUE(is_loopback(ep));
}

// ---- tcp_dialer ------------------------------------------------------------------------------

TEST(TcpDialerTest, ConnectsOverIpv4) {
  echo_server server;
  netpool::tcp_dialer dial("127.0.0.1", server.port());
  EXPECT_EQ(dial.host(), "127.0.0.1");
  EXPECT_EQ(dial.port(), server.port());
  auto s = dial(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  expect_echo(*s);
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
}

TEST(TcpDialerTest, ConnectsOverIpv6) {
  if (!machine_has_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
  echo_server server(netpool::test::echo_server_options{.ipv6 = true});
  for (const char* host : {"::1", "[::1]"}) {
    auto s = netpool::tcp_dialer(host, server.port())(steady::now() + 10s);
    ASSERT_TRUE(s) << host << ": " << s.error().message();
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    ASSERT_EQ(::getpeername(s->native_handle(), reinterpret_cast<sockaddr*>(&peer), &length), 0);
    EXPECT_EQ(peer.ss_family, AF_INET6);
    EXPECT_NE(int_option(s->native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
    expect_echo(*s);
  }
  // The TCP options apply to an IPv6 connection as to an IPv4 one.
  netpool::tcp_options options;
  options.keep_alive_idle = 45s;
  options.user_timeout = 3s;
  auto s = netpool::tcp_dialer("::1", server.port(), options)(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_NE(int_option(s->native_handle(), SOL_SOCKET, SO_KEEPALIVE), 0);
  EXPECT_EQ(int_option(s->native_handle(), IPPROTO_TCP, TCP_KEEPIDLE), 45);
  EXPECT_EQ(int_option(s->native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT), 3000);
}

TEST(TcpDialerTest, ConnectsToLocalhostThroughSystemResolver) {
  if (!hosts_file_has_localhost()) GTEST_SKIP() << "/etc/hosts has no localhost entry (would query DNS)";
  echo_server server;
  // If localhost also maps to ::1 first, that attempt is refused and the dialer moves on.
  auto s = netpool::tcp_dialer("localhost", server.port())(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  expect_echo(*s);
}

TEST(TcpDialerTest, ResolverErrorSurfaces) {
  netpool::tcp_options options;
  std::string asked_host;
  std::uint16_t asked_port = 0;
  options.resolve = [&](std::string_view host, std::uint16_t port, std::vector<netpool::endpoint>&) {
    asked_host = host;
    asked_port = port;
    return netpool::make_resolve_error(EAI_NONAME);
  };
  auto s = netpool::tcp_dialer("db.invalid", 5432, options)(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_resolve_error(EAI_NONAME));
  EXPECT_EQ(s.error(), netpool::condition::dial_failed);
  EXPECT_EQ(asked_host, "db.invalid");
  EXPECT_EQ(asked_port, 5432);
}

TEST(TcpDialerTest, ResolverWithNoEndpointsIsANameError) {
  netpool::tcp_options options;
  options.resolve = [](std::string_view, std::uint16_t, std::vector<netpool::endpoint>&) {
    return std::error_code();
  };
  auto s = netpool::tcp_dialer("empty", 1, options)(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_resolve_error(EAI_NONAME));
}

TEST(TcpDialerTest, EmptyResolverFallsBackToSystemResolver) {
  echo_server server;
  netpool::tcp_options options;
  options.resolve = nullptr;
  auto s = netpool::tcp_dialer("127.0.0.1", server.port(), options)(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
}

TEST(TcpDialerTest, TriesEndpointsInOrderUntilOneConnects) {
  echo_server server;
  netpool::test::refused_port refused;
  netpool::tcp_options options;
  options.resolve = [&](std::string_view, std::uint16_t, std::vector<netpool::endpoint>& out) {
    out.push_back(loopback4(refused.port()));
    out.push_back(loopback4(server.port()));
    return std::error_code();
  };
  auto s = netpool::tcp_dialer("two-addresses", 1, options)(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  expect_echo(*s);
  EXPECT_EQ(server.accepted_total(), 1u);
}

TEST(TcpDialerTest, RefusedPortGivesEconnrefused) {
  netpool::test::refused_port refused;
  auto s = netpool::tcp_dialer("127.0.0.1", refused.port())(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_dial_error(ECONNREFUSED));
  EXPECT_EQ(s.error().category(), netpool::dial_category());
  EXPECT_EQ(s.error(), std::errc::connection_refused);
  EXPECT_EQ(s.error(), netpool::condition::dial_failed);
  EXPECT_EQ(s.error().message(), "dial failed: Connection refused");
}

TEST(TcpDialerTest, LastAddressErrorIsReported) {
  netpool::test::refused_port first;
  netpool::test::refused_port second;
  netpool::tcp_options options;
  int calls = 0;
  options.resolve = [&](std::string_view, std::uint16_t, std::vector<netpool::endpoint>& out) {
    ++calls;
    out.push_back(loopback4(first.port()));
    out.push_back(loopback4(second.port()));
    return std::error_code();
  };
  auto s = netpool::tcp_dialer("both-refuse", 1, options)(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_dial_error(ECONNREFUSED));
  EXPECT_EQ(calls, 1);
}

TEST(TcpDialerTest, FullBacklogTimesOutAtTheDeadline) {
  netpool::test::full_backlog_listener stuck;
  const std::size_t fds_before = netpool::test::open_fd_count();
  const auto timeout = 300ms;
  const auto start = steady::now();
  auto s = netpool::tcp_dialer("127.0.0.1", stuck.port())(start + timeout);
  const auto elapsed = steady::now() - start;
  ASSERT_FALSE(s) << "connected to a listener whose accept queue is full";
  EXPECT_EQ(s.error(), netpool::errc::timeout);
  EXPECT_NE(s.error(), netpool::condition::dial_failed);
  // Only a generous upper bound: a busy machine may wake us late, never early enough to matter.
  EXPECT_LT(elapsed, timeout + 5s);
  EXPECT_EQ(netpool::test::open_fd_count(), fds_before) << "the timed-out socket was not closed";
}

TEST(TcpDialerTest, TimeoutStopsTryingFurtherAddresses) {
  netpool::test::full_backlog_listener stuck;
  echo_server server;
  netpool::tcp_options options;
  options.resolve = [&](std::string_view, std::uint16_t, std::vector<netpool::endpoint>& out) {
    out.push_back(loopback4(stuck.port()));
    out.push_back(loopback4(server.port()));
    return std::error_code();
  };
  auto s = netpool::tcp_dialer("stuck-then-good", 1, options)(steady::now() + 200ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::errc::timeout);
  EXPECT_EQ(server.accepted_total(), 0u);
}

TEST(TcpDialerTest, PassedDeadlineTimesOutWithoutResolving) {
  netpool::tcp_options options;
  int calls = 0;
  options.resolve = [&](std::string_view, std::uint16_t, std::vector<netpool::endpoint>& out) {
    ++calls;
    out.push_back(loopback4(1));
    return std::error_code();
  };
  netpool::tcp_dialer dial("late", 1, options);
  auto s = dial(steady::now() - 1ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::errc::timeout);
  EXPECT_EQ(calls, 0);
}

TEST(TcpDialerTest, FarDeadline) {
  echo_server server;
  auto s = netpool::tcp_dialer("127.0.0.1", server.port())(steady::time_point::max());
  ASSERT_TRUE(s) << s.error().message();
  expect_echo(*s);
  auto late = netpool::tcp_dialer("127.0.0.1", server.port())(steady::time_point::min());
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), netpool::errc::timeout);
}

TEST(TcpDialerTest, SocketIsCloexecBlockingAndNoDelay) {
  echo_server server;
  auto s = netpool::tcp_dialer("127.0.0.1", server.port())(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  const int fd = s->native_handle();
  EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  EXPECT_FALSE(::fcntl(fd, F_GETFL) & O_NONBLOCK);
  EXPECT_NE(int_option(fd, IPPROTO_TCP, TCP_NODELAY), 0);
  EXPECT_EQ(int_option(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
}

TEST(TcpDialerTest, OptionsAreApplied) {
  echo_server server;
  netpool::tcp_options options;
  options.no_delay = false;
  options.keep_alive = true;
  auto s = netpool::tcp_dialer("127.0.0.1", server.port(), options)(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(int_option(s->native_handle(), IPPROTO_TCP, TCP_NODELAY), 0);
  EXPECT_NE(int_option(s->native_handle(), SOL_SOCKET, SO_KEEPALIVE), 0);
}

TEST(TcpDialerTest, KeepAliveTimersAndUserTimeoutAreApplied) {
  echo_server server;
  netpool::tcp_options options;
  options.keep_alive_idle = 30s;  // keep_alive itself left false: a timer turns it on
  options.keep_alive_interval = 5s;
  options.keep_alive_count = 3;
  options.user_timeout = 20s;
  auto s = netpool::tcp_dialer("127.0.0.1", server.port(), options)(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  const int fd = s->native_handle();
  EXPECT_NE(int_option(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE), 30);
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL), 5);
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), 20000);
  expect_echo(*s);
}

TEST(TcpDialerTest, ZeroKeepsTheKernelsDefaults) {
  echo_server server;
  netpool::tcp_options options;
  options.keep_alive = true;
  options.keep_alive_count = 4;  // only this one set
  auto s = netpool::tcp_dialer("127.0.0.1", server.port(), options)(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  // A socket with nothing set shows the kernel's defaults: the dialed one must show the same.
  const int plain = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(plain, 0);
  const int fd = s->native_handle();
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE), int_option(plain, IPPROTO_TCP, TCP_KEEPIDLE));
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL), int_option(plain, IPPROTO_TCP, TCP_KEEPINTVL));
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), int_option(plain, IPPROTO_TCP, TCP_USER_TIMEOUT));
  EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_KEEPCNT), 4);
  ::close(plain);
}

TEST(TcpDialerTest, AnOptionOutOfRangeFailsTheDialBeforeConnecting) {
  echo_server server;
  const auto dial_with = [&](auto change) {
    netpool::tcp_options options;
    change(options);
    return netpool::tcp_dialer("127.0.0.1", server.port(), options)(steady::now() + 10s);
  };
  const auto expect_einval = [](const netpool::result<netpool::socket>& s, const char* what) {
    ASSERT_FALSE(s) << what;
    EXPECT_EQ(s.error(), netpool::make_dial_error(EINVAL)) << what;
    EXPECT_EQ(s.error(), netpool::condition::dial_failed) << what;
  };
  const std::size_t fds = netpool::test::open_fd_count();
  expect_einval(dial_with([](netpool::tcp_options& o) { o.keep_alive_idle = 32768s; }), "idle");
  expect_einval(dial_with([](netpool::tcp_options& o) { o.keep_alive_idle = -1s; }), "idle < 0");
  expect_einval(dial_with([](netpool::tcp_options& o) { o.keep_alive_interval = 40000s; }), "interval");
  expect_einval(dial_with([](netpool::tcp_options& o) { o.keep_alive_count = 128; }), "count");
  expect_einval(dial_with([](netpool::tcp_options& o) { o.keep_alive_count = -1; }), "count < 0");
  expect_einval(dial_with([](netpool::tcp_options& o) { o.user_timeout = -1ms; }), "user timeout < 0");
  expect_einval(dial_with([](netpool::tcp_options& o) { o.user_timeout = std::chrono::hours(1000); }),
                "user timeout > INT_MAX ms");
  EXPECT_EQ(netpool::test::open_fd_count(), fds);

  // The limits themselves are accepted.
  auto edge = dial_with([](netpool::tcp_options& o) {
    o.keep_alive_idle = 32767s;
    o.keep_alive_interval = 32767s;
    o.keep_alive_count = 127;
    o.user_timeout = std::chrono::milliseconds(INT_MAX);
  });
  ASSERT_TRUE(edge) << edge.error().message();
  // No connection was made for any of the bad ones: the server accepts in order, so once it has
  // accepted this one, an earlier connection would have been counted before it.
  ASSERT_TRUE(wait_for([&] { return server.accepted_total() >= 1; }));
  EXPECT_EQ(server.accepted_total(), 1u);
  EXPECT_EQ(int_option(edge->native_handle(), IPPROTO_TCP, TCP_KEEPIDLE), 32767);
  EXPECT_EQ(int_option(edge->native_handle(), IPPROTO_TCP, TCP_KEEPCNT), 127);
  EXPECT_EQ(int_option(edge->native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT), INT_MAX);
}

// validate() names the first option out of range, which the dial above refuses with EINVAL, and
// describe() names it in words; a pool whose factory is the dialer itself is rejected
// (config_test).
TEST(TcpDialerTest, ValidateNamesTheOptionOutOfRange) {
  using problem = netpool::tcp_options_problem;
  const auto check = [](auto change) {
    netpool::tcp_options options;
    change(options);
    EXPECT_EQ(netpool::tcp_dialer("127.0.0.1", 1, options).options().keep_alive_count,
              options.keep_alive_count);
    return netpool::validate(options);
  };
  EXPECT_EQ(check([](netpool::tcp_options&) {}), problem::none);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.keep_alive_idle = 32768s; }),
            problem::keep_alive_idle_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.keep_alive_idle = -1s; }),
            problem::keep_alive_idle_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.keep_alive_interval = 32768s; }),
            problem::keep_alive_interval_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.keep_alive_interval = -1s; }),
            problem::keep_alive_interval_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.keep_alive_count = 128; }),
            problem::keep_alive_count_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.keep_alive_count = -1; }),
            problem::keep_alive_count_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.user_timeout = -1ms; }),
            problem::user_timeout_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) { o.user_timeout = std::chrono::milliseconds(INT_MAX) + 1ms; }),
            problem::user_timeout_out_of_range);
  EXPECT_EQ(check([](netpool::tcp_options& o) {
              o.keep_alive_idle = 32767s;
              o.keep_alive_interval = 32767s;
              o.keep_alive_count = 127;
              o.user_timeout = std::chrono::milliseconds(INT_MAX);
            }),
            problem::none);
  // The first in declaration order.
  EXPECT_EQ(check([](netpool::tcp_options& o) {
              o.keep_alive_count = 128;
              o.keep_alive_interval = -1s;
            }),
            problem::keep_alive_interval_out_of_range);

  const std::pair<problem, const char*> named[] = {
      {problem::keep_alive_idle_out_of_range, "keep_alive_idle"},
      {problem::keep_alive_interval_out_of_range, "keep_alive_interval"},
      {problem::keep_alive_count_out_of_range, "keep_alive_count"},
      {problem::user_timeout_out_of_range, "user_timeout"},
  };
  for (const auto& [p, field] : named) {
    EXPECT_NE(std::string_view(netpool::describe(p)).find(field), std::string_view::npos)
        << netpool::describe(p);
  }
  EXPECT_STREQ(netpool::describe(problem::none), "valid TCP options");
}

TEST(TcpDialerTest, ConcurrentDialsShareOneDialer) {
  echo_server server;
  const netpool::tcp_dialer dial("127.0.0.1", server.port());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        auto s = dial(steady::now() + 10s);
        if (s) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 100);
}

TEST(TcpDialerTest, NoDescriptorLeaksOnAnyPath) {
  echo_server server;
  netpool::test::refused_port refused;
  netpool::test::full_backlog_listener stuck;
  netpool::tcp_options failing;
  failing.resolve = [](std::string_view, std::uint16_t, std::vector<netpool::endpoint>&) {
    return netpool::make_resolve_error(EAI_AGAIN);
  };
  // Sockets: the server's thread has just started (see open_socket_count()).
  const std::size_t before = netpool::test::open_socket_count();
  for (int i = 0; i < 20; ++i) {
    auto good = netpool::tcp_dialer("127.0.0.1", server.port())(steady::now() + 10s);
    EXPECT_TRUE(good);
    EXPECT_FALSE(netpool::tcp_dialer("127.0.0.1", refused.port())(steady::now() + 10s));
    EXPECT_FALSE(netpool::tcp_dialer("x", 1, failing)(steady::now() + 10s));
    EXPECT_FALSE(netpool::tcp_dialer("127.0.0.1", 1)(steady::now() - 1s));
  }
  EXPECT_FALSE(netpool::tcp_dialer("127.0.0.1", stuck.port())(steady::now() + 50ms));
  // The server closes its side of the 20 good connections asynchronously.
  EXPECT_TRUE(wait_for([&] { return netpool::test::open_socket_count() == before; }))
      << "before " << before << ", after " << netpool::test::open_socket_count();
}

// ---- unix_dialer -----------------------------------------------------------------------------

TEST(UnixDialerTest, Connects) {
  netpool::test::unix_echo_server server;
  netpool::unix_dialer dial(server.path());
  EXPECT_EQ(dial.path(), server.path());
  auto s = dial(steady::now() + 10s);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_TRUE(::fcntl(s->native_handle(), F_GETFD) & FD_CLOEXEC);
  EXPECT_FALSE(::fcntl(s->native_handle(), F_GETFL) & O_NONBLOCK);
  expect_echo(*s);
  // The connect timeout must not linger as a send timeout on the pooled socket.
  timeval tv{-1, -1};
  socklen_t length = sizeof tv;
  ASSERT_EQ(::getsockopt(s->native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, &length), 0);
  EXPECT_EQ(tv.tv_sec, 0);
  EXPECT_EQ(tv.tv_usec, 0);
}

// Linux's abstract namespace: a name that starts with a NUL byte, bound and dialed with exactly
// its bytes as the address length. The dialer used to add one for a terminating NUL, which made it
// another name (ECONNREFUSED), and refused a name that filled sun_path (ENAMETOOLONG).
TEST(UnixDialerTest, ConnectsToAnAbstractName) {
  for (const std::size_t size : {std::size_t{24}, sizeof(sockaddr_un{}.sun_path)}) {
    SCOPED_TRACE("name of " + std::to_string(size) + " bytes");
    std::string name(1, '\0');
    name += "netpool-test-" + std::to_string(::getpid()) + "-";
    name.resize(size, 'a');
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name.data(), name.size());
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    ASSERT_EQ(::bind(listener, reinterpret_cast<const sockaddr*>(&address), length), 0)
        << std::strerror(errno);
    ASSERT_EQ(::listen(listener, 4), 0);

    auto s = netpool::unix_dialer(name)(steady::now() + 10s);
    EXPECT_TRUE(s) << s.error().message();
    if (s) {
      const int accepted = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      EXPECT_GE(accepted, 0) << "connected, but not to our listener";
      if (accepted >= 0) ::close(accepted);
    }
    ::close(listener);
  }
  // One byte more does not fit.
  std::string too_long(sizeof(sockaddr_un{}.sun_path) + 1, 'a');
  too_long.front() = '\0';
  auto s = netpool::unix_dialer(too_long)(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_dial_error(ENAMETOOLONG));
}

TEST(UnixDialerTest, MissingPathGivesEnoent) {
  const auto path = std::filesystem::temp_directory_path() / "netpool-no-such-dir" / "none.sock";
  auto s = netpool::unix_dialer(path.string())(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_dial_error(ENOENT));
  EXPECT_EQ(s.error(), netpool::condition::dial_failed);

  auto empty = netpool::unix_dialer("")(steady::now() + 10s);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), netpool::make_dial_error(ENOENT));
}

TEST(UnixDialerTest, TooLongPathGivesEnametoolong) {
  auto s = netpool::unix_dialer("/tmp/" + std::string(200, 'a'))(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_dial_error(ENAMETOOLONG));
}

// path_fits() is what a pool checks at creation (config_test): exactly the paths that the dials
// above refuse with ENAMETOOLONG, or with ENOENT for the empty one, do not fit.
TEST(UnixDialerTest, PathFitsSaysWhetherAPathCanNameASocket) {
  constexpr std::size_t sun_path = sizeof(sockaddr_un{}.sun_path);  // 108 on Linux
  const std::string abstract(1, '\0');
  EXPECT_TRUE(netpool::unix_dialer("/run/redis/redis.sock").path_fits());
  EXPECT_TRUE(netpool::unix_dialer(std::string(sun_path - 1, 'p')).path_fits());  // and its NUL
  EXPECT_FALSE(netpool::unix_dialer(std::string(sun_path, 'p')).path_fits());
  EXPECT_TRUE(netpool::unix_dialer(abstract + std::string(sun_path - 1, 'a')).path_fits());  // no NUL
  EXPECT_FALSE(netpool::unix_dialer(abstract + std::string(sun_path, 'a')).path_fits());
  EXPECT_FALSE(netpool::unix_dialer("").path_fits());

  auto too_long = netpool::unix_dialer(std::string(sun_path, 'p'))(steady::now() + 10s);
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error(), netpool::make_dial_error(ENAMETOOLONG));
}

// A filesystem path with a NUL inside: the kernel reads a path only up to its NUL, so the dial
// would reach the socket named by the part before it. It is refused (EINVAL) even with a server
// listening there, and the pool's creation check says it cannot dial. An abstract name is exact
// bytes: a NUL inside one is part of the name.
TEST(UnixDialerTest, APathWithANulInsideIsRefusedNotCutShort) {
  netpool::test::unix_echo_server server;
  const std::string cut = server.path() + std::string(1, '\0') + "junk";
  const netpool::unix_dialer dialer(cut);
  EXPECT_FALSE(dialer.path_fits());
  auto s = dialer(steady::now() + 10s);
  ASSERT_FALSE(s) << "connected to " << server.path() << ", the path before the NUL";
  EXPECT_EQ(s.error(), netpool::make_dial_error(EINVAL));
  EXPECT_TRUE(netpool::unix_dialer(std::string(1, '\0') + "name" + std::string(1, '\0') + "x").path_fits());
  auto whole = netpool::unix_dialer(server.path())(steady::now() + 10s);  // the server does listen
  ASSERT_TRUE(whole) << whole.error().message();
}

TEST(UnixDialerTest, StoppedServerRefuses) {
  netpool::test::unix_echo_server server;
  server.stop();
  auto s = netpool::unix_dialer(server.path())(steady::now() + 10s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::make_dial_error(ECONNREFUSED));
}

TEST(UnixDialerTest, FullBacklogTimesOutAtTheDeadline) {
  unix_full_listener stuck;
  ASSERT_TRUE(stuck.fill()) << "the accept queue never filled";
  const std::size_t fds_before = netpool::test::open_fd_count();
  const auto start = steady::now();
  auto s = netpool::unix_dialer(stuck.path())(start + 200ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), netpool::errc::timeout);
  EXPECT_LT(steady::now() - start, 200ms + 5s);
  EXPECT_EQ(netpool::test::open_fd_count(), fds_before);
}

TEST(UnixDialerTest, FarDeadlineAndPassedDeadline) {
  netpool::test::unix_echo_server server;
  auto s = netpool::unix_dialer(server.path())(steady::time_point::max());
  ASSERT_TRUE(s) << s.error().message();
  expect_echo(*s);
  auto late = netpool::unix_dialer(server.path())(steady::time_point::min());
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), netpool::errc::timeout);
}

// ---- signals ---------------------------------------------------------------------------------

TEST(DialerSignalTest, InterruptedWaitsResumeUntilTheDeadline) {
  // poll() and a blocking connect() fail with EINTR when a signal handler runs (no SA_RESTART
  // here, and poll is never restarted anyway). The dialers must go back to waiting with the time
  // left, not report EINTR.
  netpool::test::full_backlog_listener tcp_stuck;
  unix_full_listener unix_stuck;
  ASSERT_TRUE(unix_stuck.fill());

  struct sigaction handler {};
  handler.sa_handler = [](int) {};
  sigemptyset(&handler.sa_mask);
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGUSR1, &handler, &previous), 0);

  const auto under_signals = [](auto dial) {
    std::atomic<bool> done{false};
    std::error_code error;
    std::thread t([&] {
      auto s = dial(steady::now() + 400ms);
      error = s ? std::error_code() : s.error();
      done = true;
    });
    int signals = 0;
    while (!done) {
      ::pthread_kill(t.native_handle(), SIGUSR1);
      ++signals;
      std::this_thread::sleep_for(5ms);
    }
    t.join();
    EXPECT_GT(signals, 1);
    return error;
  };
  EXPECT_EQ(under_signals(netpool::tcp_dialer("127.0.0.1", tcp_stuck.port())), netpool::errc::timeout);
  EXPECT_EQ(under_signals(netpool::unix_dialer(unix_stuck.path())), netpool::errc::timeout);

  ::sigaction(SIGUSR1, &previous, nullptr);
}

}  // namespace
