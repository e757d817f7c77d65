// netpool/version.hpp — which netpool this is: for #if checks at compile time and for logs.
//
//   #include <netpool/version.hpp>
//   #if NETPOOL_VERSION >= 500  // 0.5.0: major * 10000 + minor * 100 + patch, as fmt's FMT_VERSION
//   std::clog << "netpool " << netpool::version_string << '\n';  // "0.5.6"
//   #endif
//
// This header is where the version is set: CMakeLists.txt reads the three numbers from it for
// project(VERSION), so the installed package's netpoolConfigVersion.cmake says the same.
// 0.2.0: pool_config::on_connect is a connect_hook (config.hpp), no longer a std::function; recv_all.
// 0.3.0: pool_config::health_check is a check_hook, given now + health_check_timeout; connect_hook
//        is an alias of deadline_hook<std::error_code, Conn> (a forward declaration of it as a class
//        template no longer compiles).
// 0.4.0: a pool whose factory is a tcp_dialer with tcp_options out of range, or a unix_dialer whose
//        path cannot name a socket, is rejected at creation: new config_problem values
//        tcp_options_out_of_range and unix_path_invalid (a switch over config_problem must handle
//        them); validate(tcp_options). An on_connect that returns errc::exhausted or
//        errc::dial_not_needed refuses the connection (errc::hook_rejected, with backoff). A keyed
//        get never returns dial_not_needed.
// 0.5.0: a connection that comes back closed (is_open() false) is discarded, not pooled
//        (closed_error); an on_connect that closes it is a failed dial. errc::timeout's message is
//        "timed out waiting for a connection". A unix_dialer path with a NUL inside is rejected at
//        creation (unix_path_invalid) and fails its dials with EINVAL. close() flags every slot
//        before closed() is true. keyed_pool_stats is declared in stats.hpp; labelled_stats has a
//        `keyed` member; write_prometheus() takes keyed pools; keyed_pool::stats_by_key().
// 0.5.1: a get that misses its thread's hint first tries the up to 4 slots the thread last took
//        through the walk of idle slots, so it may be lent one of those rather than the lowest idle
//        connection, and a thread keeps up to 5 connections warm (docs/design.md, "LIFO reuse").
// 0.5.2: in a pool of more than 64 slots, a get that misses takes the lowest idle connection of
//        its CPU's stripe of slots (slot i is in stripe i % stripes, one stripe per CPU, at most 8)
//        before the other stripes', so LIFO reuse holds per stripe (docs/design.md, "Stripes of
//        the idle bitmap"). Pools of up to 64 slots keep their order.
// 0.5.3: in such a pool a put lists its connection in the stripe of the CPU it runs on, so a get
//        that misses takes the lowest idle connection of those returned on its CPU first (not of
//        a stripe fixed by the slot's index); a CPU that emptied its stripe no longer shares
//        another CPU's (docs/design.md, "Listing a slot in the stripe of the CPU that returned it").
// 0.5.4: no change in behaviour: a get that finds no idle connection at once (an exhausted pool,
//        try_get(), a waiter's look) reads the idle bitmap's empty words a line at a time, about 5×
//        faster on a pool of 10 000 (docs/design.md, "The full walk a line at a time").
// 0.5.5: a slot to dial into (the end of a dial, a slot freed while gets wait) goes to the oldest
//        waiter that does not await a dial of its own, not simply the oldest: a get whose dial runs
//        on a dialer thread is no longer granted a second one (docs/design.md, "One get, one dial").
// 0.5.6: close() (and so ~pool()) returns only once the on_return and on_leak ("came back") calls
//        already running on other threads have ended (unless called from inside one); it may now
//        wait for such a hook. A keyed get whose sub-pool is removed while its dial ends fails
//        with pool_closed (it created the removed key's sub-pool anew). A keyed pool with
//        evict_idle_after set reclaims by each key's last get to within 1 ms (it was to within
//        evict_idle_after / 8), and evicts a sub-pool after evict_idle_after + at most 1 ms of
//        silence (it was + evict_idle_after / 8).
#pragma once

#include <string_view>

#define NETPOOL_VERSION_MAJOR 0
#define NETPOOL_VERSION_MINOR 5
#define NETPOOL_VERSION_PATCH 6

#define NETPOOL_VERSION (NETPOOL_VERSION_MAJOR * 10000 + NETPOOL_VERSION_MINOR * 100 + NETPOOL_VERSION_PATCH)

#define NETPOOL_DETAIL_STRINGIFY(x) #x
#define NETPOOL_DETAIL_VERSION_STRING(major, minor, patch) \
  NETPOOL_DETAIL_STRINGIFY(major) "." NETPOOL_DETAIL_STRINGIFY(minor) "." NETPOOL_DETAIL_STRINGIFY(patch)

namespace netpool {

// "MAJOR.MINOR.PATCH", spelled from the macros.
inline constexpr std::string_view version_string =
    NETPOOL_DETAIL_VERSION_STRING(NETPOOL_VERSION_MAJOR, NETPOOL_VERSION_MINOR, NETPOOL_VERSION_PATCH);

}  // namespace netpool
