// bench/contenders/contender.hpp — the shape every pool in netpool_bench is adapted to.
//
//   bench::mutex_pool pool({.max_size = 100, .min_size = 50});   // 50 connections dialed now
//   auto h = pool.acquire();                     // blocks while all max_size are lent out
//   if (!h) ...                                  // failure (dial error, timeout): empty handle
//   netpool::socket& s = bench::mutex_pool::connection(h);
//   if (!pool.release(h)) ...                    // gives it back; false if the pool refused it
//
// A contender C provides:
//   static constexpr const char* name;           // the <contender> part of benchmark names
//   using handle = ...;                          // what acquire() returns: movable, testable
//   explicit C(const pool_params&);              // opens min_size connections or throws
//   handle acquire() noexcept;
//   bool release(handle&) noexcept;
//   static netpool::socket& connection(handle&) noexcept;
// and, where the library has a get that never waits (scaling/try_get_exhausted/ measures it on a
// pool whose connections are all lent; apr_reslist has none: its acquire waits, forever by default):
//   handle try_acquire() noexcept;               // an idle connection, else an empty handle at once
//
// Every contender pools real loopback TCP connections (netpool::socket from netpool::tcp_dialer,
// see environment.hpp), opens at most max_size, has min_size open and idle once constructed, dials
// the rest on demand when none is idle, and blocks when max_size are lent out. None checks health
// (netpool Standard runs with idle tracking on, as the issue asks). Each adapter is the way a user
// of that library would write the pool: its documented acquire/release calls, no tuning.
#pragma once

#include <cstddef>
#include <cstdint>

#include "netpool/socket.hpp"

namespace bench {

struct pool_params {
  std::size_t max_size = 100;  // open connections at most
  std::size_t min_size = 50;   // open and idle once the contender is constructed
  // netpool only: the idle bitmap's stripe count, pinned through the library's test hook so that
  // scaling/try_get_exhausted_stripes/ shows on 2 CPUs what a pool pays on a machine of that many
  // (netpool gives a pool of more than 64 slots one stripe per CPU, up to 8). 0: the library's choice.
  std::uint32_t idle_stripes = 0;

  friend bool operator==(const pool_params&, const pool_params&) = default;
};

}  // namespace bench
