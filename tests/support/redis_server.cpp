// redis_server: a private redis-server process for integration tests.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support_detail.hpp"
#include "test_support.hpp"

extern char** environ;

namespace netpool::test {
namespace {

using detail::throw_errno;
using detail::unique_fd;

// A port that was free a moment ago: bind port 0, read it, close. Another process could take it
// before redis binds it; redis then exits and the caller retries with a new port.
std::uint16_t pick_free_port() {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw_errno("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) throw_errno("bind");
  socklen_t length = sizeof a;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &length) != 0) throw_errno("getsockname");
  return ntohs(a.sin_port);
}

// One PING round trip; true on the answer our server gives: "+PONG", or "-NOAUTH" when it was
// started with a password (another redis that took the port would most likely answer otherwise).
bool answers_ping(std::uint16_t port, bool wants_password) {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return false;
  const timeval tv{1, 0};  // a live redis answers in microseconds; never hang the test on it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) return false;
  static constexpr char ping[] = "PING\r\n";
  if (::send(fd.get(), ping, sizeof ping - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof ping - 1))
    return false;
  std::string reply;
  char buf[64];
  while (reply.find("\r\n") == std::string::npos) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) return false;
    reply.append(buf, static_cast<std::size_t>(n));
  }
  return reply.rfind(wants_password ? "-NOAUTH" : "+PONG\r\n", 0) == 0;
}

}  // namespace

bool redis_server::available() {
  return ::access(binary, X_OK) == 0;
}

redis_server::redis_server() : redis_server(std::string()) {}

redis_server::redis_server(std::string password) : password_(std::move(password)) {
  if (!available()) throw std::runtime_error(std::string("redis_server: ") + binary + " not found");
  std::string pattern = (std::filesystem::temp_directory_path() / "netpool-redis-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw_errno("mkdtemp");
  dir_ = pattern;
  try {
    // A few attempts: the port picked may be taken by someone else before redis binds it.
    for (int attempt = 0;; ++attempt) {
      port_ = pick_free_port();
      try {
        spawn_and_wait();
        return;
      } catch (const std::exception&) {
        if (attempt == 2) throw;
      }
    }
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

redis_server::~redis_server() {
  stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void redis_server::start() {
  if (running()) return;
  spawn_and_wait();
}

void redis_server::spawn_and_wait() {
  const std::string port = std::to_string(port_);
  const std::string log = dir_ + "/redis.log";
  std::vector<std::string> args = {binary,   "--port", port,           "--bind",    "127.0.0.1",
                                   "--save", "",       "--appendonly", "no",        "--daemonize",
                                   "no",     "--dir",  dir_,           "--logfile", log};
  if (!password_.empty()) {
    args.emplace_back("--requirepass");
    args.push_back(password_);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, binary, &actions, nullptr, argv.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    errno = rc;
    throw_errno("posix_spawn redis-server");
  }
  pid_ = pid;

  const bool ready = wait_for(
      [&] {
        int status;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_ || (r < 0 && errno == ECHILD)) {
          pid_ = -1;  // exited (port taken?): reaped, nothing left to stop
          return true;
        }
        return answers_ping(port_, !password_.empty());
      },
      std::chrono::seconds(10));
  if (pid_ < 0) throw std::runtime_error("redis_server: redis-server exited at startup, see " + log);
  if (!ready) {
    stop();
    throw std::runtime_error("redis_server: no PONG within 10 s, see " + log);
  }
}

void redis_server::stop() {
  if (pid_ <= 0) return;
  // Our own child, by pid: never a process found by name.
  ::kill(pid_, SIGTERM);
  int status;
  const bool exited = wait_for(
      [&] {
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        return r == pid_ || (r < 0 && errno == ECHILD);  // ECHILD: already reaped
      },
      std::chrono::seconds(10));
  if (!exited) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

}  // namespace netpool::test
