// bench/contenders/poco_objectpool.hpp — Poco::ObjectPool (libpoco-dev, PocoFoundation) with a
// factory that dials: capacity = peak capacity = max_size; min_size borrowed and returned once so
// that they exist before the first timed get.
#pragma once

#include <Poco/Exception.h>
#include <Poco/ObjectPool.h>

#include <vector>

#include "../environment.hpp"
#include "contender.hpp"

namespace bench {

class poco_objectpool {
 public:
  static constexpr const char* name = "poco_objectpool";
  using handle = netpool::socket*;

  explicit poco_objectpool(const pool_params& params)
      : pool_(socket_factory{}, params.max_size, params.max_size) {
    std::vector<handle> opened;
    opened.reserve(params.min_size);
    for (std::size_t i = 0; i < params.min_size; ++i) {
      handle connection = acquire();
      if (connection == nullptr) {
        for (handle c : opened) pool_.returnObject(c);
        throw std::runtime_error("poco_objectpool: dial failed");
      }
      opened.push_back(connection);
    }
    for (handle c : opened) pool_.returnObject(c);
  }

  handle acquire() noexcept {
    try {
      // The timeout only matters when the pool is exhausted (Poco waits on its condition then);
      // it bounds a hang, it never shortens a measured wait.
      return pool_.borrowObject(kExhaustedWaitMs);
    } catch (...) {  // the factory's dial failed
      return nullptr;
    }
  }

  // borrowObject(0): no wait when every object is lent (below capacity it would create one).
  handle try_acquire() noexcept {
    try {
      return pool_.borrowObject(0);
    } catch (...) {  // the factory's dial failed
      return nullptr;
    }
  }
  bool release(handle& connection) noexcept {
    pool_.returnObject(connection);
    connection = nullptr;
    return true;
  }

  static netpool::socket& connection(handle& h) noexcept { return *h; }

 private:
  static constexpr long kExhaustedWaitMs = 60'000;

  // Poco's factory policy: ObjectPool calls these by name (no virtual functions).
  struct socket_factory {
    netpool::socket* createObject() {
      auto connection = dial();
      if (!connection) throw Poco::IOException("dial 127.0.0.1: " + connection.error().message());
      return new netpool::socket(std::move(*connection));
    }
    bool validateObject(netpool::socket*) { return true; }  // no health check, like every contender
    void activateObject(netpool::socket*) {}
    void deactivateObject(netpool::socket*) {}
    void destroyObject(netpool::socket* connection) { delete connection; }
  };

  Poco::ObjectPool<netpool::socket, netpool::socket*, socket_factory> pool_;
};

}  // namespace bench
