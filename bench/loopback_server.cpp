// bench/loopback_server.cpp — see loopback_server.hpp.
#include "loopback_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <system_error>
#include <thread>

namespace bench {
namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The child's echo buffer (static: the child allocates nothing).
alignas(64) char g_buffer[16384];

}  // namespace

loopback_server::loopback_server() {
  void* shared = ::mmap(nullptr, sizeof(std::atomic<std::size_t>), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) throw_errno("mmap");
  static_assert(std::atomic<std::size_t>::is_always_lock_free, "the count is shared between processes");
  open_ = new (shared) std::atomic<std::size_t>(0);

  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw_errno("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    throw_errno("bind");
  // A deep backlog: pools of 10 000 are filled by dialing back to back.
  if (::listen(listen_fd_, 4096) != 0) throw_errno("listen");
  socklen_t length = sizeof address;
  if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw_errno("getsockname");
  port_ = ntohs(address.sin_port);

  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw_errno("epoll_create1");
  stop_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd_ < 0) throw_errno("eventfd");
  for (int fd : {listen_fd_, stop_fd_}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) throw_errno("epoll_ctl");
  }

  const pid_t parent = ::getpid();
  child_ = ::fork();
  if (child_ < 0) throw_errno("fork");
  if (child_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(0);  // the parent died before prctl took effect
    serve();
  }
  // The parent only dials: it keeps nothing of the server but the eventfd that stops it.
  ::close(listen_fd_);
  ::close(epoll_fd_);
  listen_fd_ = epoll_fd_ = -1;
}

loopback_server::~loopback_server() {
  const std::uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  // Reap the child by pid; if it has not exited within 10 s, kill it (by pid) and reap it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (::waitpid(child_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ::close(stop_fd_);
  ::munmap(open_, sizeof(std::atomic<std::size_t>));
}

bool loopback_server::wait_open_at_most(std::size_t n, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (open_connections() > n) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

void loopback_server::serve() noexcept {
  run();
  // Exiting closes every accepted descriptor; _exit skips the parent's atexit handlers and buffers.
  ::_exit(0);
}

void loopback_server::run() noexcept {
  epoll_event events[256];
  for (;;) {
    const int n = ::epoll_wait(epoll_fd_, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == stop_fd_) return;
      if (fd == listen_fd_) {
        accept_all();
      } else {
        echo(fd);
      }
    }
  }
}

void loopback_server::accept_all() noexcept {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: drained; EMFILE and the like: the client sees its dial time out
    epoll_event event{};
    event.events = EPOLLIN | EPOLLRDHUP;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      ::close(fd);
      continue;
    }
    open_->fetch_add(1, std::memory_order_relaxed);
  }
}

void loopback_server::echo(int fd) noexcept {
  const ssize_t received = ::recv(fd, g_buffer, sizeof g_buffer, MSG_DONTWAIT);
  if (received == 0) {
    close_connection(fd);
    return;
  }
  if (received < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) close_connection(fd);
    return;
  }
  // The client waits for its reply, so the socket's send buffer is nearly always free; when it is
  // not, wait for it (bounded: a client that stops reading for a second loses its connection).
  std::size_t sent = 0;
  while (sent < static_cast<std::size_t>(received)) {
    const ssize_t n =
        ::send(fd, g_buffer + sent, static_cast<std::size_t>(received) - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    pollfd writable{fd, POLLOUT, 0};
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && ::poll(&writable, 1, 1000) == 1) continue;
    close_connection(fd);
    return;
  }
}

void loopback_server::close_connection(int fd) noexcept {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
  open_->fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace bench
