// socket_helpers.hpp — reading a whole reply from a netpool::socket, for the tests that talk to
// the echo server through the library's own socket, and a descriptor leak check (header-only; the
// servers in test_support.hpp stay independent of the library under test).
//
//   const netpool::test::fd_leak_check fds;               // first in the test: destroyed last
//   ASSERT_FALSE(s.send_all("abc"));
//   EXPECT_EQ(netpool::test::read_exactly(s, 3), "abc");
//   EXPECT_TRUE(netpool::test::echoed_whole(s, "hello"));  // send, then read the echo back
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>

#include "netpool/socket.hpp"
#include "test_support.hpp"

namespace netpool::test {

// Reads exactly n bytes (a reply may arrive in pieces); empty on EOF or an error.
inline std::string read_exactly(netpool::socket& s, std::size_t n) {
  std::string out(n, '\0');
  if (s.recv_all(out.data(), n)) out.clear();
  return out;
}

// One request/response through an echoing peer: true if `message` came back whole.
inline bool echoed_whole(netpool::socket& s, const std::string& message) {
  return !s.send_all(message) && read_exactly(s, message.size()) == message;
}

// Declared first in a test, destroyed last: compares the process's descriptors at both ends.
class fd_leak_check {
 public:
  fd_leak_check() : before_(netpool::test::open_fd_count()) {}
  fd_leak_check(const fd_leak_check&) = delete;
  fd_leak_check& operator=(const fd_leak_check&) = delete;
  ~fd_leak_check() { EXPECT_EQ(netpool::test::open_fd_count(), before_) << "descriptors leaked"; }

 private:
  std::size_t before_;
};

}  // namespace netpool::test
