// Security (issue 5 §3): what a hostile or sloppy peer, a sloppy borrower, or a child process must
// never get from a pool of sockets.
//
//   - a connection with unread bytes pending (a reply the last borrower did not read, or data the
//     server pushed unasked) is never handed to the next borrower: a probe() health check discards
//     it, and no borrower ever reads a reply meant for another request;
//   - pooled descriptors are close-on-exec: a fork+exec'd child inherits none of them;
//   - writing to a peer that has gone returns EPIPE/ECONNRESET and never kills the process with
//     SIGPIPE (checked in a child process with SIGPIPE at its default action, next to a control
//     child that a plain send() does kill);
//   - a moved-from or returned lease is empty: returning it again is a clear error that changes
//     nothing, and dereferencing it asserts in debug builds.
//
// Test suites are named Security* so that CTest can label them `security` (ctest -L security).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "fault_harness.hpp"
#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/lease.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"
#include "socket_helpers.hpp"
#include "test_support.hpp"

namespace netpool::fault {
namespace {

using netpool::liveness;
using netpool::test::echo_server;
using netpool::test::wait_for;
using socket_pool = netpool::pool<netpool::socket>;

netpool::pool_config<netpool::socket> tcp_config(const echo_server& server) {
  netpool::pool_config<netpool::socket> cfg;
  cfg.factory = netpool::tcp_dialer(server.host(), server.port());
  return cfg;
}

using netpool::test::read_exactly;

// ---- unread bytes ------------------------------------------------------------------------------------

// The server pushes an extra response to every idle connection. Each of them must be discarded by
// the probe() health check; every later borrower reads exactly the reply to its own request.
TEST(SecurityUnreadData, ExtraResponseIsNeverHandedOut) {
  const fd_leak_check fds;
  echo_server server;
  constexpr std::size_t size = 4;
  auto cfg = tcp_config(server);
  cfg.max_size = size;
  cfg.health_check = probe_alive;
  auto pool = socket_pool::create(std::move(cfg)).value();
  std::vector<int> idle_fds;
  {
    std::vector<netpool::lease<netpool::socket>> held;
    for (std::size_t i = 0; i < size; ++i) {
      auto l = pool.get_for(patience);
      ASSERT_TRUE(l) << l.error().message();
      idle_fds.push_back((*l)->native_handle());
      held.push_back(std::move(*l));
    }
  }
  ASSERT_EQ(pool.len(), size);
  ASSERT_TRUE(wait_for([&] { return server.connection_count() == size; }));

  server.send_to_all("+UNSOLICITED reply\r\n");
  ASSERT_TRUE(wait_for([&] {
    for (const int fd : idle_fds)
      if (peek(fd) != liveness::unread_data) return false;
    return true;
  })) << "the extra response did not reach every pooled socket";

  for (std::uint64_t i = 0; i < 3 * size; ++i) {
    auto l = pool.get_for(patience);
    ASSERT_TRUE(l) << l.error().message();
    EXPECT_EQ((*l)->probe(), liveness::alive) << "handed out a connection with bytes pending";
    EXPECT_EQ(round_trip(**l, request("request ", 0, i)), std::nullopt)
        << "a reply did not match its request";
  }
  const auto s = pool.stats();
  EXPECT_EQ(s.closed_health, size) << "each connection holding the extra response was discarded";
  EXPECT_EQ(server.accepted_total(), size + 1) << "one fresh connection served the later requests";
}

// A borrower reads only part of its reply and returns the connection. The rest of the reply must
// not reach the next borrower.
TEST(SecurityUnreadData, PartiallyReadReplyIsNeverHandedOut) {
  const fd_leak_check fds;
  echo_server server;
  auto cfg = tcp_config(server);
  cfg.max_size = 1;
  cfg.health_check = probe_alive;
  auto pool = socket_pool::create(std::move(cfg)).value();
  int fd = -1;
  {
    auto l = pool.get();
    ASSERT_TRUE(l) << l.error().message();
    fd = (*l)->native_handle();
    ASSERT_FALSE((*l)->send_all("GET balance of alice\n"));
    ASSERT_EQ(read_exactly(**l, 4), "GET ");  // the sloppy borrower stops reading here
    ASSERT_TRUE(wait_for([&] { return peek(fd) == liveness::unread_data; }));
  }  // returned with the rest of alice's reply pending

  auto l = pool.get_for(patience);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(round_trip(**l, "GET balance of bob\n"), std::nullopt) << "bob read alice's reply";
  EXPECT_EQ(pool.stats().closed_health, 1u);
  EXPECT_EQ(server.accepted_total(), 2u);
}

// Why the check matters, and proof that round_trip() detects it: the same sloppy sequence on one
// socket without a pool in between makes the next request read the previous reply.
TEST(SecurityUnreadData, ControlReusingSuchASocketDesynchronisesTheProtocol) {
  const fd_leak_check fds;
  echo_server server;
  auto s = netpool::tcp_dialer(server.host(), server.port())(clock_type::now() + patience);
  ASSERT_TRUE(s) << s.error().message();
  ASSERT_FALSE(s->send_all("GET balance of alice\n"));
  ASSERT_EQ(read_exactly(*s, 4), "GET ");
  ASSERT_TRUE(wait_for([&] { return peek(s->native_handle()) == liveness::unread_data; }));
  EXPECT_EQ(round_trip(*s, "GET balance of bob\n"), std::optional<std::string>("garbled"));
}

// ---- close-on-exec --------------------------------------------------------------------------------------

// "socket:[inode]": how /proc/<pid>/fd names a socket, in this process and in a child alike.
std::string socket_name(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return "fstat failed";
  return "socket:[" + std::to_string(st.st_ino) + "]";
}

// fork + execve("/bin/ls -l /proc/self/fd/"): the child lists the descriptors it inherited (as
// "N -> socket:[inode]"). Only async-signal-safe calls between fork and exec (the process has
// threads: the servers' loops, the pool's maintainer).
std::string descriptors_of_an_exec_child() {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2");
  char path[] = "/bin/ls";
  char arg0[] = "ls";
  char arg1[] = "-l";
  char arg2[] = "/proc/self/fd/";
  char* argv[] = {arg0, arg1, arg2, nullptr};
  char* envp[] = {nullptr};
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);  // dup2 clears CLOEXEC on the copy: the child's stdout
    ::execve(path, argv, envp);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string listing;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n > 0) {
      listing.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "ls failed: status " << status;
  return listing;
}

TEST(SecurityCloexec, ExecChildInheritsNoPooledSocket) {
  const fd_leak_check fds;
  echo_server tcp_server;
  netpool::test::unix_echo_server unix_server;
  auto tcp_pool = socket_pool::create(tcp_config(tcp_server)).value();
  netpool::pool_config<netpool::socket> unix_cfg;
  unix_cfg.factory = netpool::unix_dialer(unix_server.path());
  auto unix_pool = socket_pool::create(std::move(unix_cfg)).value();

  // Some lent out, some idle in the pool: both kinds must stay out of the child.
  std::vector<netpool::lease<netpool::socket>> held;
  for (int i = 0; i < 3; ++i) {
    auto t = tcp_pool.get_for(patience);
    auto u = unix_pool.get_for(patience);
    ASSERT_TRUE(t && u);
    held.push_back(std::move(*t));
    held.push_back(std::move(*u));
  }
  std::vector<int> pooled;
  for (auto& l : held) pooled.push_back(l->native_handle());
  held.erase(held.begin(), held.begin() + 2);  // two go back to idle
  for (const int fd : pooled) {
    const int flags = ::fcntl(fd, F_GETFD);
    ASSERT_GE(flags, 0);
    EXPECT_NE(flags & FD_CLOEXEC, 0) << "descriptor " << fd << " is not close-on-exec";
  }

  // Control: a socket opened without SOCK_CLOEXEC does show up in the child's listing.
  const int inheritable = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(inheritable, 0);
  const std::string listing = descriptors_of_an_exec_child();
  EXPECT_NE(listing.find(socket_name(inheritable)), std::string::npos)
      << "the method failed to see an inherited socket:\n"
      << listing;
  ::close(inheritable);
  for (const int fd : pooled) {
    EXPECT_EQ(listing.find(socket_name(fd)), std::string::npos)
        << "the child inherited pooled descriptor " << fd << ":\n"
        << listing;
  }
}

// ---- SIGPIPE ----------------------------------------------------------------------------------------------

// Run in a child (death-test machinery) with SIGPIPE at its default action, as a process that never
// touched its signals has it: the parent's disposition (a test runner may ignore SIGPIPE) must not
// hide the bug. Exit codes say which check failed.
[[noreturn]] void write_to_a_dead_peer_through_the_pool() {
  std::signal(SIGPIPE, SIG_DFL);
  echo_server server;
  auto pool = socket_pool::create(tcp_config(server)).value();
  auto l = pool.get_for(patience);
  if (!l) std::_Exit(10);
  if (!wait_for([&] { return server.connection_count() == 1; })) std::_Exit(11);
  server.close_all_connections();  // FIN; our next write draws an RST, the one after it EPIPE
  const std::string chunk(4096, 'x');
  std::error_code ec;
  for (int i = 0; i < 1000 && !ec; ++i) {
    ec = (*l)->send_all(chunk);
    if (!ec) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!ec) std::_Exit(12);  // never noticed the peer had gone
  if (ec != std::errc::broken_pipe && ec != std::errc::connection_reset) std::_Exit(13);
  auto again = (*l)->send("x", 1);  // the connection is dead for good: EPIPE, still no signal
  if (again) std::_Exit(14);
  if (again.error() != std::errc::broken_pipe) std::_Exit(15);
  if (pool.put_with_error(std::move(*l))) std::_Exit(16);
  std::_Exit(0);
}

// The control: the same with a plain send() (flags 0) does die of SIGPIPE in that child, so the
// test above would notice a missing MSG_NOSIGNAL.
[[noreturn]] void write_to_a_dead_peer_with_plain_send() {
  std::signal(SIGPIPE, SIG_DFL);
  echo_server server;
  auto s = netpool::tcp_dialer(server.host(), server.port())(clock_type::now() + patience);
  if (!s) std::_Exit(10);
  if (!wait_for([&] { return server.connection_count() == 1; })) std::_Exit(11);
  server.close_all_connections();
  const std::string chunk(4096, 'x');
  for (int i = 0; i < 1000; ++i) {
    (void)::send(s->native_handle(), chunk.data(), chunk.size(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::_Exit(0);  // not killed: the control failed
}

TEST(SecuritySigpipe, WritingToADeadPeerReturnsAnErrorNotSigpipe) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes the binary: safe with threads
  EXPECT_EXIT(write_to_a_dead_peer_through_the_pool(), ::testing::ExitedWithCode(0), "");
}

TEST(SecuritySigpipe, ControlPlainSendIsKilledBySigpipe) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(write_to_a_dead_peer_with_plain_send(), ::testing::KilledBySignal(SIGPIPE), "");
}

// ---- leases after return
// ------------------------------------------------------------------------------------

// A moved-from or returned lease is empty; returning it again (put, put_with_error, release,
// discard) is errc::empty_lease and changes nothing: no double return reaches the pool.
TEST(SecurityLease, MovedFromAndReturnedLeasesAreEmptyAndInert) {
  const fd_leak_check fds;
  echo_server server;
  auto pool = socket_pool::create(tcp_config(server)).value();
  auto other = socket_pool::create(tcp_config(server)).value();

  auto got = pool.get();
  ASSERT_TRUE(got);
  netpool::lease<netpool::socket> a = std::move(*got);
  netpool::lease<netpool::socket> b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_FALSE(static_cast<bool>(a));
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(round_trip(*b, "through the moved-to lease\n"), std::nullopt);

  // A lease of another pool is refused and left untouched.
  EXPECT_EQ(other.put(std::move(b)), errc::wrong_pool);
  ASSERT_FALSE(b.empty());  // NOLINT(bugprone-use-after-move)

  EXPECT_FALSE(pool.put(std::move(b)));
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(pool.put(std::move(b)), errc::empty_lease);
  EXPECT_EQ(pool.put_with_error(std::move(b)), errc::empty_lease);
  EXPECT_EQ(b.release(), errc::empty_lease);
  EXPECT_EQ(b.discard(), errc::empty_lease);
  EXPECT_EQ(pool.put(std::move(a)), errc::empty_lease);

  auto s = pool.stats();
  EXPECT_EQ(s.idle, 1u);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.active, 1u);
  EXPECT_EQ(s.closed_error, 0u) << "a repeated return reached the pool";
  // The pool is intact: the connection comes back once, and only once.
  auto again = pool.get();
  ASSERT_TRUE(again);
  EXPECT_EQ(round_trip(**again, "still one connection\n"), std::nullopt);
  EXPECT_EQ(pool.try_get().error(), errc::exhausted) << "the connection was lent twice";
  EXPECT_EQ(pool.stats().dials, 1u);
  EXPECT_EQ(other.stats().gets, 0u);
}

TEST(SecurityLease, DereferencingAnEmptyLeaseAssertsInDebugBuilds) {
#ifndef NDEBUG
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  echo_server server;
  auto pool = socket_pool::create(tcp_config(server)).value();
  auto got = pool.get();
  ASSERT_TRUE(got);
  netpool::lease<netpool::socket> moved_from = std::move(*got);
  netpool::lease<netpool::socket> holder = std::move(moved_from);
  netpool::lease<netpool::socket> returned = std::move(holder);
  ASSERT_FALSE(returned.release());
  // NOLINTBEGIN(bugprone-use-after-move): the point of the test
  EXPECT_DEATH((void)moved_from->native_handle(), "empty");
  EXPECT_DEATH((void)*returned, "empty");
  EXPECT_DEATH((void)returned.get(), "empty");
  // NOLINTEND(bugprone-use-after-move)
#else
  GTEST_SKIP() << "assertions are compiled out (NDEBUG)";
#endif
}

}  // namespace
}  // namespace netpool::fault
