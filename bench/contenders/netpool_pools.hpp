// bench/contenders/netpool_pools.hpp — the two netpool contenders:
//   netpool_standard: netpool::pool<socket> with idle tracking on (max_idle_time = 1 min, far longer
//                     than any benchmark holds a connection idle, so nothing expires mid-run), no
//                     health check; its maintainer thread runs as it does for users.
//   netpool_basic:    netpool::lean_pool<socket> (no idle tracking, health check or thread).
//   netpool_basic_unfair: netpool_basic with fair_waiters = false (returned connections go idle
//                     and a woken waiter competes for them); only in handoff/, where it shows what
//                     FIFO hand-off costs and buys (issue 6).
// Both dial through netpool::tcp_dialer to the embedded server. min_size connections are made to
// exist before the first timed get by getting and putting back min_size leases (the Standard pool
// would fill them in the background anyway; doing it here keeps every dial out of timed regions).
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "../environment.hpp"
#include "contender.hpp"
#include "netpool/pool.hpp"

namespace bench {

template <template <class> class Pool, bool IdleTracking, bool Fair = true>
class netpool_contender {
 public:
  using pool_type = Pool<netpool::socket>;
  using handle = netpool::result<netpool::lease<netpool::socket>>;

  explicit netpool_contender(const pool_params& params) : pool_(create(params)) {
    std::vector<handle> opened;
    opened.reserve(params.min_size);
    for (std::size_t i = 0; i < params.min_size; ++i) {
      opened.push_back(pool_.get());
      if (!opened.back()) throw std::system_error(opened.back().error(), "netpool get while pre-filling");
    }
    for (handle& lease : opened) {
      if (const std::error_code error = lease->release()) throw std::system_error(error, "netpool put");
    }
  }

  ~netpool_contender() { pool_.close(); }

  netpool_contender(const netpool_contender&) = delete;
  netpool_contender& operator=(const netpool_contender&) = delete;

  handle acquire() noexcept { return pool_.get(); }
  handle try_acquire() noexcept { return pool_.try_get(); }

  bool release(handle& lease) noexcept { return !lease->release(); }

  static netpool::socket& connection(handle& h) noexcept { return h->get(); }

 private:
  static pool_type create(const pool_params& params) {
    netpool::pool_config<netpool::socket> config;
    config.factory = dialer();  // netpool::tcp_dialer to 127.0.0.1:<server port>, as users write it
    config.max_size = params.max_size;
    config.min_size = params.min_size;
    if constexpr (IdleTracking) config.max_idle_time = std::chrono::minutes(1);
    config.fair_waiters = Fair;
    // The stripe count is read once, when the pool is created (pool_params::idle_stripes).
    // relaxed: the hook is read by create() on this thread; nothing is published through it.
    const std::uint32_t library_choice =
        netpool::detail::idle_stripes_for_tests.exchange(params.idle_stripes, std::memory_order_relaxed);
    auto created = pool_type::create(std::move(config));
    netpool::detail::idle_stripes_for_tests.store(library_choice, std::memory_order_relaxed);
    if (!created) throw std::system_error(created.error(), "netpool create");
    return std::move(*created);
  }

  pool_type pool_;
};

class netpool_standard : public netpool_contender<netpool::pool, true> {
 public:
  static constexpr const char* name = "netpool_standard";
  using netpool_contender::netpool_contender;
};

class netpool_basic : public netpool_contender<netpool::lean_pool, false> {
 public:
  static constexpr const char* name = "netpool_basic";
  using netpool_contender::netpool_contender;
};

class netpool_basic_unfair : public netpool_contender<netpool::lean_pool, false, false> {
 public:
  static constexpr const char* name = "netpool_basic_unfair";
  using netpool_contender::netpool_contender;
};

}  // namespace bench
