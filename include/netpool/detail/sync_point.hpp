// Named places inside the pool's race windows where a test can hold a thread, so that a race the
// scheduler wins once in thousands of runs can be replayed on every run:
//
//   // tests/race/, compiled with -DNETPOOL_SYNC_POINTS
//   netpool::detail::sync_point_hook = [](const char* where) noexcept {
//     if (std::string_view(where) == "wait_in_line:queued" && is_first_waiter) hold_until_released();
//   };
//
// Without NETPOOL_SYNC_POINTS (every build but the race tests) a point compiles to nothing. The
// points sit only in member functions of templates on the connection type (pool_core<Conn>,
// keyed_state<Key, Conn, ...>, keyed_pool<Key, Conn, ...>), and the race tests instantiate them
// with a connection type of their own, so no binary holds two definitions of one function.
#pragma once

#ifdef NETPOOL_SYNC_POINTS

namespace netpool::detail {

// Set by a test while no pool thread runs; called on every pass of every point, with its name.
inline void (*sync_point_hook)(const char* where) noexcept = nullptr;

}  // namespace netpool::detail

#define NETPOOL_SYNC_POINT(where)                                                               \
  do {                                                                                          \
    if (auto* netpool_sync_hook = ::netpool::detail::sync_point_hook) netpool_sync_hook(where); \
  } while (false)

#else

#define NETPOOL_SYNC_POINT(where) static_cast<void>(0)

#endif
