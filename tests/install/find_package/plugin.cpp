// A shared library of a user's that links the installed static netpool into itself (a plugin, a
// Python extension): netpool's objects must be position-independent for that to link at all.
// Exercises the compiled part of the library from inside the .so: a dial through tcp_dialer
// (dialer.cpp, socket.cpp) and an error message (error.cpp).
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include <netpool/netpool.hpp>

// 0 if a lean_pool inside this library dials `port` on 127.0.0.1 and lends and takes back one
// connection; otherwise a step number.
extern "C" int netpool_plugin_round_trip(std::uint16_t port) {
  netpool::pool_config<netpool::socket> config;
  config.factory = netpool::tcp_dialer("127.0.0.1", port);
  config.max_size = 1;
  auto created = netpool::lean_pool<netpool::socket>::create(std::move(config));
  if (!created) return 1;
  {
    auto lease = created->get_for(std::chrono::seconds(5));
    if (!lease || !(*lease)->is_open()) return 2;
  }
  if (created->len() != 1) return 3;
  if (netpool::make_error_code(netpool::errc::pool_closed).message().empty()) return 4;
  return 0;
}
