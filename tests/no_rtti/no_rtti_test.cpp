// A program built entirely with -fno-rtti (tests/CMakeLists.txt: netpool_no_rtti_test, ctest
// unit.no_rtti) that gives a pool a built-in dialer as its factory. Its std::function holds the
// dialer without type_info; the library (built with RTTI, src/dialer.cpp) must still see a
// tcp_dialer whose options fail every dial, or a unix_dialer whose path names nothing, and reject
// the pool at creation, and accept a good one. Without GoogleTest, which this file would have to
// share with RTTI code: a plain main() whose exit status is the verdict.
#include <cstdio>
#include <string>
#include <system_error>
#include <utility>

#include "netpool/config.hpp"
#include "netpool/dialer.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"

#ifdef __cpp_rtti
#error "no_rtti_test.cpp must be compiled with -fno-rtti"
#endif

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

netpool::pool_config<netpool::socket> with_tcp_dialer(int keep_alive_count) {
  netpool::tcp_options options;
  options.keep_alive_count = keep_alive_count;
  netpool::pool_config<netpool::socket> config;
  config.factory = netpool::tcp_dialer("127.0.0.1", 1, options);  // never dialed
  return config;
}

}  // namespace

int main() {
  using netpool::config_problem;
#if defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 11
  expect(netpool::validate_for_pool(with_tcp_dialer(128)) == config_problem::tcp_options_out_of_range,
         "a tcp_dialer with keep_alive_count 128 is rejected");
  netpool::pool_config<netpool::socket> local;
  local.factory = netpool::unix_dialer(std::string());
  expect(netpool::validate_for_pool(local) == config_problem::unix_path_invalid,
         "a unix_dialer with an empty path is rejected");
  auto created = netpool::pool<netpool::socket>::create(with_tcp_dialer(128));
  expect(!created && created.error() == netpool::errc::invalid_config, "create() fails with invalid_config");
#else
  std::puts("not libstdc++ 11 or later: the library does not look inside the factory");
#endif
  expect(netpool::validate_for_pool(with_tcp_dialer(127)) == config_problem::none,
         "a tcp_dialer with keep_alive_count 127 is accepted");
  if (failures == 0) std::puts("no_rtti_test: passed");
  return failures == 0 ? 0 : 1;
}
