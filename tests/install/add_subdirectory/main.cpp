// A user that vendors netpool with add_subdirectory() and pools its own connection type (not a
// socket): both pool flavours must work for any movable type made by a user's factory.
// Exit status 0 only if every step and count is as expected.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <system_error>
#include <utility>

#include <netpool/netpool.hpp>

namespace {

struct conn {
  int id;
};

int fail(const char* flavour, const char* what) {
  std::fprintf(stderr, "FAIL [%s]: %s\n", flavour, what);
  return 1;
}

int fail(const char* flavour, const char* what, const std::error_code& ec) {
  std::fprintf(stderr, "FAIL [%s]: %s: %s\n", flavour, what, ec.message().c_str());
  return 1;
}

template <template <class> class Pool>
int exercise(const char* flavour) {
  int dialed = 0;
  netpool::pool_config<conn> config;
  config.factory = [&dialed](std::chrono::steady_clock::time_point) -> netpool::result<conn> {
    return conn{++dialed};
  };
  config.max_size = 2;

  auto created = Pool<conn>::create(std::move(config));
  if (!created) return fail(flavour, "create", created.error());
  Pool<conn>& pool = *created;

  {
    // Fill the pool: two dials, then try_get has nothing left to give.
    auto a = pool.get();
    auto b = pool.get();
    if (!a || !b) return fail(flavour, "get");
    if ((*a)->id == (*b)->id) return fail(flavour, "two leases share one connection");
    auto c = pool.try_get();
    if (c || c.error() != netpool::errc::exhausted)
      return fail(flavour, "try_get on a full pool did not say exhausted");
    if (std::error_code ec = pool.put(std::move(*a))) return fail(flavour, "put", ec);
    // b goes back through the lease's destructor.
  }
  {
    auto again = pool.get();  // an idle connection is reused, not dialed
    if (!again) return fail(flavour, "get after put", again.error());
  }

  const netpool::pool_stats s = pool.stats();
  std::printf("[%s] active=%zu idle=%zu in_use=%zu max=%zu dials=%llu\n", flavour, s.active, s.idle, s.in_use,
              s.max, static_cast<unsigned long long>(s.dials));
  if (dialed != 2 || s.dials != 2) return fail(flavour, "expected exactly two dials");
  if (s.active != 2 || s.idle != 2 || s.in_use != 0 || s.max != 2) return fail(flavour, "unexpected gauges");
  if (pool.len() != 2) return fail(flavour, "len() != 2");

  pool.close();
  auto after = pool.get();
  if (after || after.error() != netpool::errc::pool_closed)
    return fail(flavour, "get after close did not fail with pool_closed");
  return 0;
}

}  // namespace

int main() {
  if (int rc = exercise<netpool::pool>("pool")) return rc;
  if (int rc = exercise<netpool::lean_pool>("lean_pool")) return rc;
  std::puts("add_subdirectory consumer: OK");
  return 0;
}
