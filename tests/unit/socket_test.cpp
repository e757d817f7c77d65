// netpool::socket: ownership (close exactly once, move, release), I/O errors, probe().
#include "netpool/socket.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "netpool/dialer.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using netpool::liveness;
using netpool::test::echo_server;
using netpool::test::wait_for;

bool fd_is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

int new_fd() {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) ADD_FAILURE() << "eventfd: " << std::strerror(errno);
  return fd;
}

netpool::socket dial(const echo_server& server) {
  auto s = netpool::tcp_dialer(server.host(), server.port())(std::chrono::steady_clock::now() + 10s);
  if (!s) ADD_FAILURE() << "dial: " << s.error().message();
  return s ? std::move(*s) : netpool::socket();
}

// Reads exactly n bytes (the echo may arrive in pieces).
std::string read_n(netpool::socket& s, std::size_t n) {
  std::string out;
  char buf[256];
  while (out.size() < n) {
    auto got = s.recv(buf, std::min(sizeof buf, n - out.size()));
    if (!got || *got == 0) break;
    out.append(buf, *got);
  }
  return out;
}

TEST(SocketTest, DefaultIsEmpty) {
  netpool::socket s;
  EXPECT_FALSE(s.is_open());
  EXPECT_FALSE(s);
  EXPECT_EQ(s.native_handle(), -1);
  EXPECT_FALSE(s.close());
  EXPECT_EQ(s.release(), -1);
  EXPECT_EQ(s.probe(), liveness::error);
  auto sent = s.send("x", 1);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), std::errc::bad_file_descriptor);
}

TEST(SocketTest, CloseClosesExactlyOnce) {
  const int fd = new_fd();
  netpool::socket s(fd);
  EXPECT_TRUE(s.is_open());
  EXPECT_EQ(s.native_handle(), fd);
  EXPECT_FALSE(s.close());
  EXPECT_FALSE(s.is_open());
  EXPECT_FALSE(fd_is_open(fd));

  // Put another descriptor at the same number, as a concurrent open() in another thread could (the
  // kernel hands out the lowest free number, so usually the new descriptor simply gets it).
  // A second close() and the destructor must leave it alone.
  const int other = new_fd();
  if (other != fd) {
    ASSERT_EQ(::dup3(other, fd, O_CLOEXEC), fd);
    ::close(other);
  }
  EXPECT_FALSE(s.close());
  { netpool::socket gone(std::move(s)); }
  EXPECT_TRUE(fd_is_open(fd));
  ::close(fd);
}

TEST(SocketTest, DestructorCloses) {
  const int fd = new_fd();
  { netpool::socket s(fd); }
  EXPECT_FALSE(fd_is_open(fd));
}

TEST(SocketTest, MoveConstructionTransfersOwnership) {
  const int fd = new_fd();
  netpool::socket a(fd);
  netpool::socket b(std::move(a));
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(b.native_handle(), fd);
  { netpool::socket drop(std::move(a)); }  // an empty socket's destructor closes nothing
  EXPECT_TRUE(fd_is_open(fd));
  b.close();
  EXPECT_FALSE(fd_is_open(fd));
}

TEST(SocketTest, MoveAssignmentClosesThePreviousDescriptor) {
  const int first = new_fd();
  const int second = new_fd();
  netpool::socket a(first);
  netpool::socket b(second);
  b = std::move(a);
  EXPECT_FALSE(fd_is_open(second));
  EXPECT_TRUE(fd_is_open(first));
  EXPECT_EQ(b.native_handle(), first);
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move)

  netpool::socket& alias = b;
  b = std::move(alias);  // self-move keeps the descriptor
  EXPECT_EQ(b.native_handle(), first);
  EXPECT_TRUE(fd_is_open(first));
}

TEST(SocketTest, ReleaseGivesUpOwnership) {
  const int fd = new_fd();
  int released;
  {
    netpool::socket s(fd);
    released = s.release();
    EXPECT_FALSE(s.is_open());
  }
  EXPECT_EQ(released, fd);
  EXPECT_TRUE(fd_is_open(fd));
  ::close(fd);
}

TEST(SocketTest, SendAllAndRecvRoundTrip) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  const std::string message(100000, 'x');  // larger than one segment: exercises partial writes
  std::thread writer([&] { EXPECT_FALSE(s.send_all(message)); });
  const std::string echoed = read_n(s, message.size());
  writer.join();
  EXPECT_EQ(echoed, message);
}

TEST(SocketTest, RecvReturnsZeroWhenPeerCloses) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.close_all_connections();
  char c;
  auto n = s.recv(&c, 1);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 0u);
}

TEST(SocketTest, SendToClosedPeerFailsWithoutSigpipe) {
  // The point is that MSG_NOSIGNAL, not a process-wide SIG_IGN, protects us: put the default
  // disposition (terminate) in force, whatever the test runner set, so that a stray SIGPIPE kills
  // this test.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGPIPE, &default_action, &previous), 0);
  struct restore_on_exit {
    struct sigaction action;
    ~restore_on_exit() { ::sigaction(SIGPIPE, &action, nullptr); }
  } restore{previous};

  echo_server server(netpool::test::server_mode::close_on_accept);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_for([&] { return s.probe() == liveness::peer_closed; }));

  // The first write after the FIN is accepted and answered by an RST; the next ones fail.
  std::error_code failure;
  for (int i = 0; i < 200 && !failure; ++i) {
    failure = s.send_all("PING\r\n");
    if (!failure) std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(failure) << "writing to a closed peer never failed";
  EXPECT_TRUE(failure == std::errc::broken_pipe || failure == std::errc::connection_reset)
      << failure.message();
  EXPECT_EQ(failure.category(), std::system_category());

  auto again = s.send("x", 1);
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error() == std::errc::broken_pipe || again.error() == std::errc::connection_reset);
}

TEST(SocketTest, ProbeAliveAndUnreadData) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  EXPECT_EQ(s.probe(), liveness::alive);

  // A reply the borrower never read.
  ASSERT_FALSE(s.send_all("abc"));
  ASSERT_TRUE(wait_for([&] { return s.probe() == liveness::unread_data; }));
  EXPECT_EQ(s.probe(), liveness::unread_data);  // peeking consumed nothing
  EXPECT_EQ(read_n(s, 3), "abc");
  EXPECT_EQ(s.probe(), liveness::alive);

  // Unsolicited bytes from the server.
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.send_to_all("+extra\r\n");
  ASSERT_TRUE(wait_for([&] { return s.probe() == liveness::unread_data; }));
  EXPECT_EQ(read_n(s, 8), "+extra\r\n");
  EXPECT_EQ(s.probe(), liveness::alive);
}

TEST(SocketTest, ProbePeerClosed) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.close_all_connections();
  ASSERT_TRUE(wait_for([&] { return s.probe() != liveness::alive; }));
  EXPECT_EQ(s.probe(), liveness::peer_closed);
}

TEST(SocketTest, ProbeReportsReset) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.close_all_connections(netpool::test::close_style::reset);
  // The pending ECONNRESET is reported once; later peeks see the closed stream.
  liveness first = liveness::alive;
  ASSERT_TRUE(wait_for([&] { return (first = s.probe()) != liveness::alive; }));
  EXPECT_EQ(first, liveness::error);
}

}  // namespace
