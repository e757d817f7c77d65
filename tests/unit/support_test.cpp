// The test servers themselves: if they misbehave, every other test's verdict is worthless.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::test::close_style;
using netpool::test::echo_server;
using netpool::test::server_mode;
using netpool::test::wait_for;

// Plain POSIX client, independent of the library under test. Returns the fd or -errno.
int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;
    ::close(fd);
    return -e;
  }
  return fd;
}

// Reads with a timeout: the bytes read, "" on EOF, or "<errno N>" / "<timeout>".
std::string read_some(int fd, int timeout_ms = 10000) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return "<timeout>";
  char buf[256];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n < 0) return "<errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<std::size_t>(n));
}

TEST(EchoServerTest, EchoesAndCountsConnections) {
  echo_server server;
  EXPECT_STREQ(server.host(), "127.0.0.1");
  EXPECT_NE(server.port(), 0);
  const int a = connect_to(server.port());
  const int b = connect_to(server.port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 2; }));
  EXPECT_EQ(server.accepted_total(), 2u);
  ASSERT_EQ(::send(a, "ping", 4, MSG_NOSIGNAL), 4);
  EXPECT_EQ(read_some(a), "ping");
  ::close(a);
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  ::close(b);
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 0; }));
  EXPECT_EQ(server.accepted_total(), 2u);
}

TEST(EchoServerTest, RestartKeepsThePortAndDropsConnections) {
  echo_server server;
  const std::uint16_t port = server.port();
  const int before = connect_to(port);
  ASSERT_GE(before, 0);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));

  server.restart();
  EXPECT_EQ(server.port(), port);
  EXPECT_EQ(server.connection_count(), 0u);
  EXPECT_EQ(read_some(before), "");  // the old connection was closed (EOF)
  ::close(before);

  const int after = connect_to(port);
  ASSERT_GE(after, 0) << std::strerror(-after);
  ASSERT_EQ(::send(after, "again", 5, MSG_NOSIGNAL), 5);
  EXPECT_EQ(read_some(after), "again");
  ::close(after);
  EXPECT_EQ(server.accepted_total(), 2u);
}

TEST(EchoServerTest, RestartWithResetSendsRst) {
  echo_server server;
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.restart(close_style::reset);
  EXPECT_EQ(read_some(fd), "<errno " + std::to_string(ECONNRESET) + ">");
  ::close(fd);
}

TEST(EchoServerTest, StopRefusesAndIsIdempotent) {
  echo_server server;
  const std::uint16_t port = server.port();
  server.stop();
  server.stop();
  EXPECT_EQ(connect_to(port), -ECONNREFUSED);
  server.close_all_connections();  // harmless on a stopped server
  server.send_to_all("x");
  server.restart();
  const int fd = connect_to(port);
  EXPECT_GE(fd, 0);
  if (fd >= 0) ::close(fd);
}

TEST(EchoServerTest, CloseAllConnectionsKeepsListening) {
  echo_server server;
  const int first = connect_to(server.port());
  ASSERT_GE(first, 0);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.close_all_connections();
  EXPECT_EQ(server.connection_count(), 0u);
  EXPECT_EQ(read_some(first), "");
  ::close(first);
  const int second = connect_to(server.port());
  ASSERT_GE(second, 0);
  ASSERT_EQ(::send(second, "x", 1, MSG_NOSIGNAL), 1);
  EXPECT_EQ(read_some(second), "x");
  ::close(second);
}

TEST(EchoServerTest, CloseOnAcceptMode) {
  echo_server server(server_mode::close_on_accept);
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_some(fd), "");
  EXPECT_EQ(server.accepted_total(), 1u);
  EXPECT_EQ(server.connection_count(), 0u);
  ::close(fd);
}

TEST(EchoServerTest, ResetOnAcceptMode) {
  echo_server server(server_mode::reset_on_accept);
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_some(fd), "<errno " + std::to_string(ECONNRESET) + ">");
  ::close(fd);
}

TEST(EchoServerTest, SilentModeNeverAnswers) {
  echo_server server(server_mode::silent);
  const int fd = connect_to(server.port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "hello", 5, MSG_NOSIGNAL), 5);
  EXPECT_EQ(read_some(fd, 300), "<timeout>");
  EXPECT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  // Switching to echo answers what comes next.
  server.set_mode(server_mode::echo);
  ASSERT_EQ(::send(fd, "again", 5, MSG_NOSIGNAL), 5);
  EXPECT_EQ(read_some(fd), "again");
  ::close(fd);
}

TEST(EchoServerTest, SendToAllPushesUnsolicitedBytes) {
  echo_server server;
  const int a = connect_to(server.port());
  const int b = connect_to(server.port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 2; }));
  server.send_to_all("+extra\r\n");
  EXPECT_EQ(read_some(a), "+extra\r\n");
  EXPECT_EQ(read_some(b), "+extra\r\n");
  ::close(a);
  ::close(b);
}

TEST(EchoServerTest, Ipv6Loopback) {
  std::unique_ptr<echo_server> server;
  try {
    server = std::make_unique<echo_server>(netpool::test::echo_server_options{.ipv6 = true});
  } catch (const std::system_error& e) {
    GTEST_SKIP() << "no IPv6 loopback: " << e.what();
  }
  EXPECT_STREQ(server->host(), "::1");
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  a.sin6_port = htons(server->port());
  EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  ASSERT_EQ(::send(fd, "v6", 2, MSG_NOSIGNAL), 2);
  EXPECT_EQ(read_some(fd), "v6");
  ::close(fd);
}

TEST(EchoServerTest, StopReleasesEveryDescriptor) {
  const std::size_t before = netpool::test::open_fd_count();
  {
    echo_server server;
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
    server.restart();
    ::close(fd);
  }
  EXPECT_EQ(netpool::test::open_fd_count(), before);
}

TEST(UnixEchoServerTest, EchoesRestartsAndCleansUp) {
  std::string path;
  {
    netpool::test::unix_echo_server server;
    path = server.path();
    EXPECT_EQ(::access(path.c_str(), F_OK), 0);
    for (int round = 0; round < 2; ++round) {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strcpy(a.sun_path, path.c_str());
      ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
      ASSERT_EQ(::send(fd, "unix", 4, MSG_NOSIGNAL), 4);
      EXPECT_EQ(read_some(fd), "unix");
      EXPECT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
      server.restart();
      EXPECT_EQ(read_some(fd), "");
      ::close(fd);
    }
    EXPECT_EQ(server.accepted_total(), 2u);
  }
  EXPECT_NE(::access(path.c_str(), F_OK), 0) << "socket file left behind";
}

TEST(FullBacklogListenerTest, ConnectsHang) {
  netpool::test::full_backlog_listener stuck;
  EXPECT_GE(stuck.filler_count(), 1u);
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(stuck.port());
  ASSERT_NE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(errno, EINPROGRESS);
  pollfd p{fd, POLLOUT, 0};
  EXPECT_EQ(::poll(&p, 1, 300), 0) << "the connect completed";
  ::close(fd);
}

TEST(RefusedPortTest, ConnectIsRefused) {
  netpool::test::refused_port refused;
  EXPECT_NE(refused.port(), 0);
  EXPECT_EQ(connect_to(refused.port()), -ECONNREFUSED);
  // The port stays taken: nobody else can listen on it meanwhile.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(refused.port());
  EXPECT_NE(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(errno, EADDRINUSE);
  ::close(fd);
}

TEST(OpenFdCountTest, CountsOpenDescriptors) {
  const std::size_t before = netpool::test::open_fd_count();
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(netpool::test::open_fd_count(), before + 1);
  ::close(fd);
  EXPECT_EQ(netpool::test::open_fd_count(), before);
}

TEST(WaitForTest, ReturnsTrueOnceThePredicateHoldsAndFalseAtTheTimeout) {
  int calls = 0;
  EXPECT_TRUE(wait_for([&] { return ++calls == 3; }, 10s));
  EXPECT_EQ(calls, 3);
  EXPECT_FALSE(wait_for([] { return false; }, 20ms));
}

TEST(RedisServerTest, StartsAnswersAndStops) {
  if (!netpool::test::redis_server::available()) GTEST_SKIP() << "redis-server is not installed";
  netpool::test::redis_server redis;
  ASSERT_TRUE(redis.running());
  const pid_t pid = redis.pid();
  const int fd = connect_to(redis.port());
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::send(fd, "PING\r\n", 6, MSG_NOSIGNAL), 6);
  EXPECT_EQ(read_some(fd), "+PONG\r\n");
  ::close(fd);

  redis.stop();
  EXPECT_FALSE(redis.running());
  EXPECT_NE(::kill(pid, 0), 0) << "the redis process is still there";
  EXPECT_EQ(connect_to(redis.port()), -ECONNREFUSED);

  redis.start();
  const int again = connect_to(redis.port());
  EXPECT_GE(again, 0);
  if (again >= 0) ::close(again);
}

}  // namespace
