// full_backlog_listener, refused_port and open_fd_count.
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support_detail.hpp"
#include "test_support.hpp"

namespace netpool::test {
namespace {

using detail::throw_errno;
using detail::unique_fd;

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

// A socket bound to 127.0.0.1 on an ephemeral port; returns the port through `port`.
unique_fd bound_loopback_socket(std::uint16_t& port) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw_errno("socket");
  sockaddr_in a = loopback(0);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) throw_errno("bind");
  socklen_t length = sizeof a;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &length) != 0) throw_errno("getsockname");
  port = ntohs(a.sin_port);
  return fd;
}

// For a listening socket, Linux's TCP_INFO reports the accept queue: tcpi_unacked is the number
// of connections waiting for accept(), tcpi_sacked the listen() backlog (see tcp_get_info()).
bool accept_queue_full(int listener) {
  tcp_info info{};
  socklen_t length = sizeof info;
  if (::getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) throw_errno("TCP_INFO");
  // The kernel's sk_acceptq_is_full(): queued > backlog.
  return info.tcpi_unacked > info.tcpi_sacked;
}

// Starts a non-blocking connect to 127.0.0.1:port and waits up to `wait_ms` for it to complete.
// Returns the socket and whether it connected (false: still in progress when the wait ended).
std::pair<unique_fd, bool> connect_and_wait(std::uint16_t port, int wait_ms) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) throw_errno("socket");
  const sockaddr_in a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) return {std::move(fd), true};
  if (errno != EINPROGRESS) throw_errno("connect");
  pollfd p{fd.get(), POLLOUT, 0};
  int n;
  do {
    n = ::poll(&p, 1, wait_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw_errno("poll");
  if (n == 0) return {std::move(fd), false};
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) throw_errno("SO_ERROR");
  if (error != 0) {
    errno = error;
    throw_errno("filler connect");
  }
  return {std::move(fd), true};
}

}  // namespace

// ---- full_backlog_listener -----------------------------------------------------------------
//
// Why it works: when the accept queue of a listener is full, Linux drops incoming SYNs
// (tcp_conn_request(), before any SYN-cookie logic, so net.ipv4.tcp_syncookies does not matter).
// The client stays in SYN_SENT and retransmits after 1 s, 3 s, 7 s, ...; every retry is dropped
// too, so connect() only completes (ETIMEDOUT) after tcp_syn_retries, about two minutes: far past
// any dial deadline a test uses.

full_backlog_listener::full_backlog_listener() {
  unique_fd listener = bound_loopback_socket(port_);
  // Backlog 0: the queue is full once one connection waits (Linux treats full as queued > backlog).
  if (::listen(listener.get(), 0) != 0) throw_errno("listen");
  listener_ = listener.release();

  try {
    std::vector<unique_fd> fillers;
    // Bounded: on Linux one filler suffices; a kernel that queues more gets a few more tries.
    for (int i = 0; i < 16 && !accept_queue_full(listener_); ++i) {
      auto [fd, connected] = connect_and_wait(port_, 5000);
      if (!connected) break;  // already hanging: the queue filled up meanwhile
      fillers.push_back(std::move(fd));
      // The client side completes on SYN-ACK; the server queues the connection when the final
      // ACK arrives, a moment later. Wait for the count to catch up before deciding.
      const bool counted = wait_for(
          [&] {
            tcp_info info{};
            socklen_t length = sizeof info;
            ::getsockopt(listener_, IPPROTO_TCP, TCP_INFO, &info, &length);
            return info.tcpi_unacked >= fillers.size() || accept_queue_full(listener_);
          },
          std::chrono::seconds(5));
      if (!counted) break;
    }
    if (!accept_queue_full(listener_))
      throw std::runtime_error("full_backlog_listener: accept queue did not fill");

    // The proof: a fresh connect must stay pending. 300 ms is far longer than a loopback
    // handshake takes, and far shorter than the first SYN retransmission (1 s).
    auto [probe, connected] = connect_and_wait(port_, 300);
    if (connected)
      throw std::runtime_error("full_backlog_listener: connect completed despite a full accept queue");
    probe.reset();

    for (auto& f : fillers) fillers_.push_back(f.release());
  } catch (...) {
    ::close(listener_);
    throw;
  }
}

full_backlog_listener::~full_backlog_listener() {
  for (int fd : fillers_) ::close(fd);
  ::close(listener_);
}

// ---- refused_port --------------------------------------------------------------------------

refused_port::refused_port() {
  // Bound without SO_REUSEADDR and never listening: a SYN to it is answered by RST (ECONNREFUSED);
  // no other socket can bind the port, and the kernel skips it when picking ephemeral ports.
  fd_ = bound_loopback_socket(port_).release();
}

refused_port::~refused_port() {
  ::close(fd_);
}

// ---- open_fd_count, open_socket_count ------------------------------------------------------

namespace {

// Counts the entries of /proc/self/fd (not the one used to read it) whose name `counts`.
template <class Pred>
std::size_t count_open_fds(Pred counts) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) throw_errno("opendir /proc/self/fd");
  const int own = ::dirfd(dir);
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;  // "." and ".."
    if (std::atoi(entry->d_name) == own) continue;
    if (counts(entry->d_name)) ++count;
  }
  ::closedir(dir);
  return count;
}

}  // namespace

std::size_t open_fd_count() {
  return count_open_fds([](const char*) { return true; });
}

std::size_t open_socket_count() {
  return count_open_fds([](const char* name) {
    const std::string path = std::string("/proc/self/fd/") + name;
    char target[64];
    const ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    return n > 0 && std::string_view(target, static_cast<std::size_t>(n)).starts_with("socket:");
  });
}

}  // namespace netpool::test
