// netpool::socket: ownership (close exactly once, move, release), I/O errors, probe().
#include "netpool/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "netpool/dialer.hpp"
#include "socket_helpers.hpp"
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

netpool::socket dial(const char* host, std::uint16_t port) {
  auto s = netpool::tcp_dialer(host, port)(std::chrono::steady_clock::now() + 10s);
  if (!s) ADD_FAILURE() << "dial: " << s.error().message();
  return s ? std::move(*s) : netpool::socket();
}

netpool::socket dial(const echo_server& server) {
  return dial(server.host(), server.port());
}

using netpool::test::read_exactly;

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

  // With a deadline: the same error at once, not a wait for a descriptor that is not there.
  const auto later = std::chrono::steady_clock::now() + 60s;
  char c;
  auto got = s.recv(&c, 1, later);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), std::errc::bad_file_descriptor);
  EXPECT_EQ(s.send_all("x", later), std::errc::bad_file_descriptor);
  EXPECT_EQ(s.recv_all(&c, 1), std::errc::bad_file_descriptor);
  EXPECT_EQ(s.send_all(&c, 1), std::errc::bad_file_descriptor);
  EXPECT_EQ(s.send_all(&c, 1, later), std::errc::bad_file_descriptor);
  EXPECT_EQ(s.recv_all(&c, 1, later), std::errc::bad_file_descriptor);
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
  const std::string echoed = read_exactly(s, message.size());
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
  // With a deadline too: the end of the stream, at once, not a wait until the deadline.
  auto timed = s.recv(&c, 1, std::chrono::steady_clock::now() + 30s);
  ASSERT_TRUE(timed) << timed.error().message();
  EXPECT_EQ(*timed, 0u);
}

TEST(SocketTest, SendAllOfBytesCarriesZerosAndHighBytes) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  std::vector<std::byte> sent(70000);  // several segments, every byte value, zeros included
  for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<std::byte>(i * 7 % 256);
  for (const bool timed : {false, true}) {
    SCOPED_TRACE(timed ? "with a deadline" : "without a deadline");
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    std::vector<std::byte> echoed(sent.size());
    std::error_code received;
    {
      // One thread sends while this one reads: the echo would fill both buffers otherwise.
      std::jthread writer([&] {
        const std::error_code ec =
            timed ? s.send_all(sent.data(), sent.size(), deadline) : s.send_all(sent.data(), sent.size());
        EXPECT_FALSE(ec) << ec.message();
      });
      received = s.recv_all(echoed.data(), echoed.size(), deadline);
    }
    ASSERT_FALSE(received) << received.message();
    EXPECT_TRUE(echoed == sent);
  }
}

TEST(SocketTest, RecvAllGathersAMessageThatArrivesInPieces) {
  echo_server server(netpool::test::server_mode::silent);
  for (const bool timed : {false, true}) {
    SCOPED_TRACE(timed ? "with a deadline" : "without a deadline");
    netpool::socket s = dial(server);
    ASSERT_TRUE(s);
    ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
    std::jthread sender([&] {
      server.send_to_all("+PO");
      std::this_thread::sleep_for(50ms);  // the reader has taken the first piece by now, usually
      server.send_to_all("NG\r\n");
    });
    char reply[7];
    const std::error_code ec = timed ? s.recv_all(reply, sizeof reply, std::chrono::steady_clock::now() + 30s)
                                     : s.recv_all(reply, sizeof reply);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(reply, sizeof reply), "+PONG\r\n");
    sender.join();
    ASSERT_FALSE(s.close());
    ASSERT_TRUE(wait_for([&] { return server.connection_count() == 0; }));
  }
}

TEST(SocketTest, RecvAllReportsAPeerThatClosesMidMessageAsEndOfStream) {
  echo_server server(netpool::test::server_mode::silent);
  for (const bool timed : {false, true}) {
    SCOPED_TRACE(timed ? "with a deadline" : "without a deadline");
    netpool::socket s = dial(server);
    ASSERT_TRUE(s);
    ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
    server.send_to_all("+PO");
    server.close_all_connections();
    char reply[7] = {};
    const std::error_code ec = timed ? s.recv_all(reply, sizeof reply, std::chrono::steady_clock::now() + 30s)
                                     : s.recv_all(reply, sizeof reply);
    EXPECT_EQ(ec, netpool::errc::end_of_stream) << ec.message();
  }
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
  EXPECT_EQ(read_exactly(s, 3), "abc");
  EXPECT_EQ(s.probe(), liveness::alive);

  // Unsolicited bytes from the server.
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.send_to_all("+extra\r\n");
  ASSERT_TRUE(wait_for([&] { return s.probe() == liveness::unread_data; }));
  EXPECT_EQ(read_exactly(s, 8), "+extra\r\n");
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

// ---- I/O with a deadline ----------------------------------------------------------------------

using steady = std::chrono::steady_clock;

std::error_code timeout_error() {
  return netpool::errc::io_timeout;
}

// CPU time this thread has used (user + system): a wait that spins shows here, whatever the wall
// clock of a busy machine does.
std::chrono::microseconds thread_cpu_time() {
  rusage usage{};
  ::getrusage(RUSAGE_THREAD, &usage);
  const auto to_us = [](const timeval& t) {
    return std::chrono::seconds(t.tv_sec) + std::chrono::microseconds(t.tv_usec);
  };
  return to_us(usage.ru_utime) + to_us(usage.ru_stime);
}

// A loopback listener that never accepts, so nothing ever reads what a client connected to it
// sends: once the (small) buffers on both sides are full, a send has to wait. The kernel completes
// the handshake and queues the connection all the same.
class listener_that_never_reads {
 public:
  listener_that_never_reads() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) throw std::system_error(errno, std::system_category(), "socket");
    const int small = 4096;  // inherited by the queued connection: its receive buffer stays small
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      const int error = errno;
      ::close(fd_);
      throw std::system_error(error, std::system_category(), "bind/listen");
    }
    port_ = ntohs(address.sin_port);
  }
  ~listener_that_never_reads() { ::close(fd_); }
  listener_that_never_reads(const listener_that_never_reads&) = delete;
  listener_that_never_reads& operator=(const listener_that_never_reads&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  // A client connected to this listener with a small send buffer too: a few kilobytes in all fill
  // both sides' buffers.
  [[nodiscard]] netpool::socket dial_with_small_buffers() const {
    netpool::socket s = dial("127.0.0.1", port_);
    const int small = 4096;
    if (s && ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) != 0) {
      ADD_FAILURE() << "SO_SNDBUF: " << std::error_code(errno, std::system_category()).message();
    }
    return s;
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

TEST(SocketDeadlineTest, SendAllAndRecvRoundTripWithinTheDeadline) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  const auto deadline = steady::now() + 30s;
  const std::string message(100000, 'y');  // several segments: partial writes and reads
  std::string echoed;
  {
    // One thread sends while this one reads (the echo would fill both buffers otherwise): the
    // kernel allows a send and a recv at once on one descriptor, and netpool::socket keeps no
    // state of its own besides it.
    std::jthread writer([&] { EXPECT_FALSE(s.send_all(message, deadline)); });
    char buf[4096];
    while (echoed.size() < message.size()) {
      auto got = s.recv(buf, std::min(sizeof buf, message.size() - echoed.size()), deadline);
      EXPECT_TRUE(got && *got > 0) << (got ? "end of stream" : got.error().message());
      if (!got || *got == 0) break;
      echoed.append(buf, *got);
    }
  }
  EXPECT_EQ(echoed, message);
}

TEST(SocketDeadlineTest, RecvFromAServerThatNeverAnswersTimesOut) {
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_FALSE(s.send_all("PING\r\n", steady::now() + 30s));
  const auto start = steady::now();
  char c;
  auto got = s.recv(&c, 1, start + 100ms);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), timeout_error());
  EXPECT_EQ(got.error(), std::errc::timed_out);             // a timeout in the generic sense too
  EXPECT_NE(got.error(), netpool::errc::timeout);           // not "every connection busy"
  EXPECT_EQ(got.error().message(), "I/O deadline passed");  // not the kernel's ETIMEDOUT text
  EXPECT_GE(steady::now() - start, 100ms);                  // it waited for the deadline, not less
  // The socket is untouched: the server can still answer, and the answer is read.
  EXPECT_TRUE(s.is_open());
  EXPECT_EQ(s.probe(), liveness::alive);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.send_to_all("+PONG\r\n");
  auto late = s.recv(&c, 1, steady::now() + 30s);
  ASSERT_TRUE(late) << late.error().message();
  EXPECT_EQ(*late, 1u);
  EXPECT_EQ(c, '+');
}

TEST(SocketDeadlineTest, APassedDeadlineStillReadsWhatIsReady) {
  echo_server server;
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_FALSE(s.send_all("abc"));
  ASSERT_TRUE(wait_for([&] { return s.probe() == liveness::unread_data; }));
  const auto passed = steady::now() - 1s;
  char buf[8];
  auto got = s.recv(buf, sizeof buf, passed);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(std::string(buf, *got), "abc");
  // Nothing more is ready: the passed deadline makes it a non-blocking attempt.
  auto none = s.recv(buf, sizeof buf, passed);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), timeout_error());
  // The same for a send that has room: it goes out.
  auto sent = s.send("d", 1, passed);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(*sent, 1u);
  EXPECT_EQ(read_exactly(s, 1), "d");
  // recv_all too: what is all there is read, the deadline passed or not.
  ASSERT_FALSE(s.send_all("efg"));
  ASSERT_TRUE(wait_for([&] { return s.probe() == liveness::unread_data; }));
  ASSERT_TRUE(wait_for([&] {  // all three bytes back: recv_all must not need to wait for any
    char peek[3];
    return ::recv(s.native_handle(), peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT) == 3;
  }));
  char all[3];
  EXPECT_FALSE(s.recv_all(all, sizeof all, passed));
  EXPECT_EQ(std::string(all, sizeof all), "efg");
}

TEST(SocketDeadlineTest, SendAllToAPeerThatNeverReadsTimesOut) {
  listener_that_never_reads peer;
  netpool::socket s = peer.dial_with_small_buffers();
  ASSERT_TRUE(s);
  // Far more than the two small buffers hold (the kernel doubles and rounds them, still well
  // under a megabyte): the send must wait, and give up at the deadline.
  const std::string message(8 << 20, 'z');
  const auto start = steady::now();
  EXPECT_EQ(s.send_all(message, start + 100ms), timeout_error());
  EXPECT_GE(steady::now() - start, 100ms);
  EXPECT_TRUE(s.is_open());
}

TEST(SocketDeadlineTest, TheDeadlineBoundsAWaitOnANonBlockingDescriptorToo) {
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  const int flags = ::fcntl(s.native_handle(), F_GETFL);
  ASSERT_EQ(::fcntl(s.native_handle(), F_SETFL, flags | O_NONBLOCK), 0);
  const auto start = steady::now();
  char c;
  auto got = s.recv(&c, 1, start + 50ms);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), timeout_error());  // not EAGAIN at once
  EXPECT_GE(steady::now() - start, 50ms);
}

TEST(SocketDeadlineTest, WaitingUsesNoCpu) {
  // A wait that polled the wrong event, or with a zero timeout, would spin until the deadline:
  // 300 ms of wall time must cost far less than 300 ms of CPU.
  echo_server silent(netpool::test::server_mode::silent);
  netpool::socket quiet = dial(silent);
  ASSERT_TRUE(quiet);
  auto cpu_before = thread_cpu_time();
  char c;
  auto got = quiet.recv(&c, 1, steady::now() + 300ms);
  EXPECT_EQ(got ? std::error_code() : got.error(), timeout_error());
  EXPECT_LT(thread_cpu_time() - cpu_before, 100ms) << "recv spun while it waited";

  listener_that_never_reads peer;
  netpool::socket full = peer.dial_with_small_buffers();
  ASSERT_TRUE(full);
  const std::string message(8 << 20, 'w');
  // Fill the buffers first (not timed: the copy into them is work), then wait with them full.
  EXPECT_EQ(full.send_all(message, steady::now() + 100ms), timeout_error());
  cpu_before = thread_cpu_time();
  EXPECT_EQ(full.send_all(message, steady::now() + 300ms), timeout_error());
  EXPECT_LT(thread_cpu_time() - cpu_before, 100ms) << "send spun while it waited";
}

TEST(SocketDeadlineTest, AFarDeadlineWaitsForTheData) {
  // time_point::max() and a deadline seconds away take ppoll's seconds field (a conversion that
  // only a wait of a second or more exercises).
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  for (const auto deadline : {steady::time_point::max(), steady::now() + 60s}) {
    std::atomic<bool> waiting{false};
    netpool::result<std::size_t> got = std::size_t{0};
    char c = 0;
    {
      std::jthread reader([&] {
        waiting = true;
        got = s.recv(&c, 1, deadline);
      });
      // No ASSERT here: leaving the block without sending would leave the reader waiting for good.
      EXPECT_TRUE(wait_for([&] { return waiting.load(); }));
      std::this_thread::sleep_for(50ms);  // usually inside ppoll by now; either way it must read
      server.send_to_all("+");
    }
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(*got, 1u);
    EXPECT_EQ(c, '+');
  }
}

TEST(SocketDeadlineTest, RecvAllTimesOutWhenTheRestNeverComesAndTheStreamStaysReadable) {
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == 1; }));
  server.send_to_all("+PO");
  char reply[7] = {};
  const auto start = steady::now();
  const std::error_code ec = s.recv_all(reply, sizeof reply, start + 100ms);
  EXPECT_EQ(ec, timeout_error()) << ec.message();
  EXPECT_GE(steady::now() - start, 100ms);  // one deadline for the whole message, not per piece
  server.send_to_all("NG\r\n");             // the late rest is still read, in order
  char rest[4];
  EXPECT_FALSE(s.recv_all(rest, sizeof rest, steady::now() + 30s));
  EXPECT_EQ(std::string(rest, sizeof rest), "NG\r\n");
}

TEST(SocketDeadlineTest, ASizeOfZeroReturnsAtOnce) {
  // recv(2) of 0 bytes on a stream waits for data: neither recv may pass that on.
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  const timeval safety{5, 0};  // were it to block, fail after 5 s rather than hang
  ASSERT_EQ(::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &safety, sizeof safety), 0);
  char c;
  auto untimed = s.recv(&c, 0);
  ASSERT_TRUE(untimed) << untimed.error().message();
  EXPECT_EQ(*untimed, 0u);
  const auto start = steady::now();
  auto timed = s.recv(&c, 0, start + 30s);
  ASSERT_TRUE(timed) << timed.error().message();
  EXPECT_EQ(*timed, 0u);
  EXPECT_LT(steady::now() - start, 5s);  // did not wait for the deadline (30 s)
  EXPECT_FALSE(s.recv_all(&c, 0));
  EXPECT_FALSE(s.recv_all(&c, 0, steady::now() + 30s));
  EXPECT_LT(steady::now() - start, 5s);
}

TEST(SocketDeadlineTest, AnErrorQueueFailsTheWaitInsteadOfSpinning) {
  // A transmit timestamp on the error queue keeps ppoll reporting POLLERR while recv says EAGAIN.
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);
  const int stamps = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY;
  if (::setsockopt(s.native_handle(), SOL_SOCKET, SO_TIMESTAMPING, &stamps, sizeof stamps) != 0) {
    GTEST_SKIP() << "SO_TIMESTAMPING: " << std::error_code(errno, std::system_category()).message();
  }
  ASSERT_FALSE(s.send_all("stamp me", steady::now() + 30s));
  // The stamp is queued once the segment has left.
  ASSERT_TRUE(wait_for([&] {
    pollfd p{s.native_handle(), 0, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
  }));
  const auto cpu_before = thread_cpu_time();
  char c;
  auto got = s.recv(&c, 1, steady::now() + 10s);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error(), std::errc::operation_not_supported) << got.error().message();
  EXPECT_LT(thread_cpu_time() - cpu_before, 1s) << "it spun";
}

TEST(SocketDeadlineTest, InterruptedWaitsResumeUntilTheDeadline) {
  // ppoll() fails with EINTR when a signal handler runs, SA_RESTART or not: the wait must go on
  // with the time left, not report EINTR.
  echo_server server(netpool::test::server_mode::silent);
  netpool::socket s = dial(server);
  ASSERT_TRUE(s);

  struct sigaction handler {};
  handler.sa_handler = [](int) {};
  sigemptyset(&handler.sa_mask);
  struct sigaction previous {};
  ASSERT_EQ(::sigaction(SIGUSR1, &handler, &previous), 0);

  std::atomic<bool> done{false};
  std::error_code error;
  std::thread reader([&] {
    char c;
    auto got = s.recv(&c, 1, steady::now() + 300ms);
    error = got ? std::error_code() : got.error();
    done = true;
  });
  int signals = 0;
  while (!done) {
    ::pthread_kill(reader.native_handle(), SIGUSR1);
    ++signals;
    std::this_thread::sleep_for(5ms);
  }
  reader.join();
  ::sigaction(SIGUSR1, &previous, nullptr);
  EXPECT_GT(signals, 1);
  EXPECT_EQ(error, timeout_error());
}

}  // namespace
