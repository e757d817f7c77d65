// netpool/netpool.hpp — everything netpool offers, in one include.
//
//   #include <netpool/netpool.hpp>
//
//   netpool::pool_config<netpool::socket> cfg;
//   cfg.factory = netpool::tcp_dialer("127.0.0.1", 6379);
//   auto pool = netpool::pool<netpool::socket>::create(std::move(cfg)).value();
//   if (auto conn = pool.get_for(std::chrono::seconds(1))) {
//     if ((*conn)->send_all("PING\r\n")) conn->discard();  // broken: closed, its slot freed
//   }  // returned to the pool here
//
// The pieces, one concept per header:
//   error.hpp   errc, condition and categories      result.hpp  result<T>
//   socket.hpp  socket (the default connection)     dialer.hpp  tcp_dialer, unix_dialer
//   config.hpp  pool_config, validate()             stats.hpp   pool_stats
//   lease.hpp   lease<Conn> (RAII borrow)            pool.hpp    pool, lean_pool
//   hooks.hpp   close_reason, leak_report (what hooks get)
//   keyed_pool.hpp  keyed_pool (one pool per endpoint, a global limit)
//   prometheus.hpp  write_prometheus (stats as Prometheus text)
//   version.hpp     NETPOOL_VERSION, version_string
#pragma once

#include "netpool/config.hpp"
#include "netpool/dialer.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/keyed_pool.hpp"
#include "netpool/lease.hpp"
#include "netpool/pool.hpp"
#include "netpool/prometheus.hpp"
#include "netpool/result.hpp"
#include "netpool/socket.hpp"
#include "netpool/stats.hpp"
#include "netpool/version.hpp"
