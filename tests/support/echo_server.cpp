// echo_server and unix_echo_server: one poll() thread per server.
//
// Every descriptor of a server (listener, accepted connections) is created, used and closed by its
// loop thread only. Other threads never touch them: they post a command to the loop and wait for
// it to run. This keeps the loop free of locks around descriptors and rules out the classic poll()
// bug of closing a descriptor that another thread is polling (whose number may then be reused).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <utility>

#include "support_detail.hpp"
#include "test_support.hpp"

namespace netpool::test {
namespace detail {

void close_with_reset(int fd) noexcept {
  const linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

class server_loop {
 public:
  // Takes ownership of `listener`: a listening, non-blocking, CLOEXEC socket.
  server_loop(unique_fd listener, server_state& state) : listener_(std::move(listener)), state_(state) {
    wake_ = unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (wake_.get() < 0) throw_errno("eventfd");
    thread_ = std::thread([this] { run(); });
  }
  ~server_loop() { stop(close_style::fin); }
  server_loop(const server_loop&) = delete;
  server_loop& operator=(const server_loop&) = delete;

  void stop(close_style style) {
    if (!thread_.joinable()) return;
    execute([this, style] {
      close_all(style);
      listener_.reset();
      quit_ = true;
    });
    thread_.join();
  }

  void close_connections(close_style style) {
    execute([this, style] { close_all(style); });
  }

  void send_to_all(std::string bytes) {
    execute([this, &bytes] {
      for (connection& c : connections_) {
        c.out.append(bytes);
        flush(c);
      }
      reap();
    });
  }

 private:
  struct connection {
    int fd;
    std::string out;  // bytes accepted for sending but not yet sent (non-blocking socket)
    bool dead = false;
  };

  // Output above this much stops reading from the connection until the client reads its echo:
  // keeps memory bounded when a test writes without reading.
  static constexpr std::size_t max_pending_output = 1 << 20;

  // Runs `fn` on the loop thread and waits for it; inline if the loop has stopped (it then owns no
  // descriptor any more, and the joined thread cannot race with us).
  void execute(std::function<void()> fn) {
    if (!thread_.joinable()) {
      fn();
      return;
    }
    std::packaged_task<void()> task(std::move(fn));
    auto done = task.get_future();
    {
      std::lock_guard lock(mutex_);
      commands_.push_back(std::move(task));
    }
    const std::uint64_t one = 1;
    if (::write(wake_.get(), &one, sizeof one) < 0 && errno != EAGAIN) throw_errno("eventfd write");
    done.get();
  }

  void run() {
    std::vector<pollfd> fds;
    while (!quit_) {
      fds.clear();
      fds.push_back({wake_.get(), POLLIN, 0});
      fds.push_back({listener_.get(), POLLIN, 0});
      for (const connection& c : connections_) {
        short events = 0;
        if (c.out.size() < max_pending_output) events |= POLLIN;
        if (!c.out.empty()) events |= POLLOUT;
        fds.push_back({c.fd, events, 0});
      }
      // Everything for the connections so far is done (fds is built: the loop's last allocation
      // for them); until poll() returns, the loop runs no code.
      state_.parked.store(connections_.size());
      const int polled_fds = ::poll(fds.data(), fds.size(), -1);
      state_.parked.store(server_state::not_parked);
      if (polled_fds < 0) {
        if (errno == EINTR) continue;
        std::perror("echo server poll");
        std::abort();
      }
      if (fds[0].revents != 0) {
        // Commands may close connections: the revents gathered above no longer match
        // connections_, so run them and poll again (poll is level-triggered: nothing is lost).
        run_commands();
        continue;
      }
      // Only the connections that existed when fds was built; accept() below appends.
      const std::size_t polled = connections_.size();
      for (std::size_t i = 0; i < polled; ++i) {
        const short revents = fds[i + 2].revents;
        if (revents == 0) continue;
        connection& c = connections_[i];
        if (revents & (POLLIN | POLLHUP | POLLERR)) read_from(c);
        if (!c.dead && (revents & POLLOUT)) flush(c);
      }
      if (fds[1].revents & POLLIN) accept_all();
      reap();
    }
  }

  void run_commands() {
    std::uint64_t count;
    // The eventfd is non-blocking; EAGAIN only means another read already drained it.
    (void)!::read(wake_.get(), &count, sizeof count);
    std::vector<std::packaged_task<void()>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(commands_);
    }
    for (auto& task : batch) task();
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        // EAGAIN: queue drained. ECONNABORTED and friends: that client is gone, try the next.
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
        return;  // EMFILE etc.: leave it queued, the test will notice the missing connection
      }
      state_.accepted.fetch_add(1);
      switch (state_.mode.load()) {
        case server_mode::close_on_accept:
          ::close(fd);
          break;
        case server_mode::reset_on_accept:
          close_with_reset(fd);
          break;
        case server_mode::echo:
        case server_mode::silent:
          connections_.push_back({fd, {}});
          state_.open.store(connections_.size());
          break;
      }
    }
  }

  void read_from(connection& c) {
    char buf[16384];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (state_.mode.load() == server_mode::echo) {
        c.out.append(buf, static_cast<std::size_t>(n));
        flush(c);
      }
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    c.dead = true;  // EOF or error: the client is gone
  }

  void flush(connection& c) {
    while (!c.out.empty()) {
      // MSG_NOSIGNAL: a client that went away must not kill the test process with SIGPIPE.
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n > 0) {
        c.out.erase(0, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      c.dead = true;
      return;
    }
  }

  // Closes the connections marked dead.
  void reap() {
    std::erase_if(connections_, [](const connection& c) {
      if (c.dead) ::close(c.fd);
      return c.dead;
    });
    state_.open.store(connections_.size());
  }

  void close_all(close_style style) {
    for (const connection& c : connections_) {
      if (style == close_style::reset) {
        close_with_reset(c.fd);
      } else {
        ::close(c.fd);
      }
    }
    connections_.clear();
    state_.open.store(0);
  }

  unique_fd listener_;
  unique_fd wake_;
  server_state& state_;
  std::vector<connection> connections_;  // loop thread only
  bool quit_ = false;                    // loop thread only

  std::mutex mutex_;  // guards commands_
  std::vector<std::packaged_task<void()>> commands_;
  std::thread thread_;
};

}  // namespace detail

// ---- echo_server ---------------------------------------------------------------------------

echo_server::echo_server() : echo_server(echo_server_options{}) {}

echo_server::echo_server(server_mode mode) : echo_server(echo_server_options{.mode = mode}) {}

echo_server::echo_server(echo_server_options options) : options_(std::move(options)) {
  state_.mode.store(options_.mode);
  std::lock_guard lock(control_);
  start();
}

echo_server::~echo_server() {
  stop();
}

std::size_t echo_server::connection_count() const noexcept {
  return state_.open.load();
}
std::uint64_t echo_server::accepted_total() const noexcept {
  return state_.accepted.load();
}
bool echo_server::parked_with(std::size_t connections) const noexcept {
  return state_.parked.load() == connections;
}
void echo_server::set_mode(server_mode mode) {
  state_.mode.store(mode);
}

void echo_server::start() {
  const int family = options_.ipv6 ? AF_INET6 : AF_INET;
  detail::unique_fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) detail::throw_errno("socket");
  // SO_REUSEADDR: restart() binds the same port while the previous connections sit in TIME_WAIT.
  const int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
    detail::throw_errno("SO_REUSEADDR");

  sockaddr_storage address{};
  socklen_t length;
  if (options_.ipv6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&address);
    a6->sin6_family = AF_INET6;
    a6->sin6_addr = in6addr_loopback;
    a6->sin6_port = htons(port_);
    length = sizeof(sockaddr_in6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&address);
    a4->sin_family = AF_INET;
    // Checked here, not only at construction: restart() binds again. Loopback only (127.0.0.0/8).
    if (::inet_pton(AF_INET, options_.ipv4_address.c_str(), &a4->sin_addr) != 1 ||
        (ntohl(a4->sin_addr.s_addr) >> 24) != 127) {
      throw std::invalid_argument("echo_server: not a 127.0.0.0/8 address: " + options_.ipv4_address);
    }
    a4->sin_port = htons(port_);
    length = sizeof(sockaddr_in);
  }
  // On restart the port may be briefly held by a socket still being torn down: retry for a while.
  for (int attempt = 0;; ++attempt) {
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), length) == 0) break;
    if (errno != EADDRINUSE || port_ == 0 || attempt == 100) detail::throw_errno("bind");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (::listen(fd.get(), options_.backlog) != 0) detail::throw_errno("listen");
  if (port_ == 0) {
    length = sizeof address;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0)
      detail::throw_errno("getsockname");
    port_ = ntohs(options_.ipv6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                                : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  }
  loop_ = std::make_unique<detail::server_loop>(std::move(fd), state_);
}

void echo_server::stop(close_style style) {
  std::lock_guard lock(control_);
  if (loop_) loop_->stop(style);
}

void echo_server::restart(close_style style) {
  std::lock_guard lock(control_);
  if (loop_) loop_->stop(style);
  loop_.reset();
  start();
}

void echo_server::close_all_connections(close_style style) {
  std::lock_guard lock(control_);
  if (loop_) loop_->close_connections(style);
}

void echo_server::send_to_all(std::string bytes) {
  std::lock_guard lock(control_);
  if (loop_) loop_->send_to_all(std::move(bytes));
}

// ---- unix_echo_server ----------------------------------------------------------------------

unix_echo_server::unix_echo_server(server_mode mode) {
  state_.mode.store(mode);
  std::string pattern = (std::filesystem::temp_directory_path() / "netpool-unix-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) detail::throw_errno("mkdtemp");
  dir_ = pattern;
  path_ = dir_ + "/echo.sock";
  if (path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    std::filesystem::remove_all(dir_);
    throw std::runtime_error("unix_echo_server: socket path too long: " + path_);
  }
  std::lock_guard lock(control_);
  try {
    start();
  } catch (...) {
    std::filesystem::remove_all(dir_);
    throw;
  }
}

unix_echo_server::~unix_echo_server() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::size_t unix_echo_server::connection_count() const noexcept {
  return state_.open.load();
}
std::uint64_t unix_echo_server::accepted_total() const noexcept {
  return state_.accepted.load();
}
bool unix_echo_server::parked_with(std::size_t connections) const noexcept {
  return state_.parked.load() == connections;
}
void unix_echo_server::set_mode(server_mode mode) {
  state_.mode.store(mode);
}

void unix_echo_server::start() {
  detail::unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) detail::throw_errno("socket");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
  ::unlink(path_.c_str());  // a previous run's socket file (restart)
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    detail::throw_errno("bind " + path_);
  if (::listen(fd.get(), 128) != 0) detail::throw_errno("listen");
  loop_ = std::make_unique<detail::server_loop>(std::move(fd), state_);
}

void unix_echo_server::stop(close_style style) {
  std::lock_guard lock(control_);
  // The socket file stays until the destructor: connecting to a stopped server then gets
  // ECONNREFUSED, like a stopped TCP server.
  if (loop_) loop_->stop(style);
}

void unix_echo_server::restart(close_style style) {
  std::lock_guard lock(control_);
  if (loop_) loop_->stop(style);
  loop_.reset();
  start();
}

void unix_echo_server::close_all_connections(close_style style) {
  std::lock_guard lock(control_);
  if (loop_) loop_->close_connections(style);
}

void unix_echo_server::send_to_all(std::string bytes) {
  std::lock_guard lock(control_);
  if (loop_) loop_->send_to_all(std::move(bytes));
}

}  // namespace netpool::test
