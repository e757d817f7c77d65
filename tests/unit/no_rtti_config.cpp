// Compiled with -fno-rtti: see no_rtti_config.hpp.
#include "no_rtti_config.hpp"

#include <string>
#include <utility>

#include "netpool/dialer.hpp"
#include "netpool/pool.hpp"
#include "netpool/socket.hpp"

#ifdef __cpp_rtti
#error "no_rtti_config.cpp must be compiled with -fno-rtti"
#endif

namespace netpool::test::no_rtti {
namespace {

pool_config<socket> with_tcp_dialer(int keep_alive_count) {
  tcp_options options;
  options.keep_alive_count = keep_alive_count;
  pool_config<socket> config;
  config.factory = tcp_dialer("127.0.0.1", 1, options);  // never dialed
  return config;
}

}  // namespace

config_problem validate_out_of_range_tcp_dialer() {
  return validate_for_pool(with_tcp_dialer(128));
}

config_problem validate_default_tcp_dialer() {
  return validate_for_pool(with_tcp_dialer(0));
}

config_problem validate_empty_unix_dialer() {
  pool_config<socket> config;
  config.factory = unix_dialer(std::string());
  return validate_for_pool(config);
}

std::error_code create_with_out_of_range_tcp_dialer() {
  auto created = pool<socket>::create(with_tcp_dialer(128));
  return created ? std::error_code() : created.error();
}

}  // namespace netpool::test::no_rtti
