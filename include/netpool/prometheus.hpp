// netpool/prometheus.hpp — a pool's stats in the Prometheus text exposition format (version 0.0.4).
//
//   // In the handler of GET /metrics (Content-Type: text/plain; version=0.0.4):
//   std::ostringstream body;
//   if (auto ec = netpool::write_prometheus(body, pool, {{"pool", "orders"}, {"shard", "3"}})) {
//     return http_500(ec.message());  // a bad label name (invalid_argument), or the stream failed
//   }
//
//   // Several pools in one scrape: each metric family once, one sample per pool.
//   const netpool::prometheus_label primary[] = {{"pool", "primary"}};
//   const netpool::prometheus_label replica[] = {{"pool", "replica"}};
//   const netpool::pool_stats a = primary_pool.stats(), b = replica_pool.stats();
//   const netpool::labelled_stats pools[] = {{&a, primary}, {&b, replica}};
//   auto ec = netpool::write_prometheus(body, pools);
//
//   // A keyed pool: its total and its keyed families (per key: stats_by_key(), below).
//   auto ec = netpool::write_prometheus(body, keyed, {{"pool", "shards"}});
//
// Writes, for each pool (every sample carries the caller's labels first, then netpool's own):
//   netpool_connections{state="idle|in_use|dialing"}       gauge
//   netpool_connections_max, netpool_connections_min       gauge (max_size, min_size)
//   netpool_waiters                                         gauge
//   netpool_gets_total{kind="immediate|waited"}             counter (connections handed out)
//   netpool_get_timeouts_total, netpool_get_cancellations_total, netpool_get_fast_failures_total
//   netpool_dials_total{result="ok|failed"}                 counter
//   netpool_leaks_total                                     counter
//   netpool_connections_closed_total{reason="idle|lifetime|health|error|reset|pool_closed|hook|resize|reclaimed"}
//   netpool_get_wait_seconds                                histogram (le = wait_bucket_bounds, +Inf;
//                                                           every get that blocked, served or failed)
//   netpool_get_wait_max_seconds                            gauge
// and for a keyed pool (a labelled_stats with `keyed`, or the keyed overloads), its total as above,
// then the keyed layer's own numbers (keyed_pool_stats):
//   netpool_keyed_pools                                     gauge (sub-pools now)
//   netpool_keyed_connections_open, netpool_keyed_connections_global_max   gauge
//   netpool_keyed_global_waiters                            gauge
//   netpool_keyed_pools_created_total, _evicted_total, _removed_total      counter
//   netpool_keyed_global_waits_total, netpool_keyed_global_exhausted_total counter
//   netpool_keyed_reclaimed_total                           counter
// Per key: one labelled_stats per keyed_pool::stats_by_key() entry, with a label of your own
// (say "key") telling them apart. The total already sums them: a query that sums every series of
// a family over a scrape with both counts each key twice (filter on the key label).
//
// Thread safety: the functions only read their arguments; call them from any thread. The numbers
// are those of a stats() snapshot: best effort under concurrency (see stats.hpp).
// Blocking: only as much as writing to `out` blocks.
// Errors (returned, never thrown; every function is noexcept):
//   std::errc::invalid_argument  a label name is not [a-zA-Z_][a-zA-Z0-9_]*, starts with "__", is
//                                one netpool uses itself (state, kind, result, reason, le) or appears
//                                twice for one pool; a label value is not valid UTF-8; a
//                                labelled_stats has neither stats nor keyed; or two pools have the same label
//                                set (Prometheus would reject their samples as duplicates; a label with an
//                                empty value counts as absent, as Prometheus reads it, so {} and {pool=""}
//                                are the same set). Nothing is written.
//   std::errc::not_enough_memory the text could not be allocated. Nothing is written.
//   std::errc::io_error          `out` was already failed, failed while writing, or threw (an
//                                exception mask set with out.exceptions()): some of the text may
//                                have been written. The exception is caught, not propagated.
// The text is built in memory and written with one out.write(), so a validation error never leaves
// half a scrape behind; `out` is not flushed. Numbers never go through the stream's formatting:
// the stream's imbued locale (a decimal comma, digit grouping) cannot change them. Durations are
// exact decimal seconds (nanosecond resolution, e.g. 0.00001 for 10 us).
// Lifetime: labels and stats are read during the call only.
#pragma once

#include <concepts>
#include <initializer_list>
#include <iosfwd>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>

#include "netpool/stats.hpp"

namespace netpool {

// One label added to every sample of a pool: {"pool", "orders"} gives netpool_waiters{pool="orders"}.
// name: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", none of state, kind, result, reason, le.
// value: any UTF-8 text; backslash, double quote and newline are escaped on output.
struct prometheus_label {
  std::string_view name;
  std::string_view value;
};

// One pool of a multi-pool scrape; labels tell the pools apart (two pools with the same label set
// are rejected; an empty value is no label, as in Prometheus). A plain pool: stats, not null. A
// keyed pool: keyed, not null; its total is written as a pool's (stats, when given, is used for
// that instead) and its own numbers as the netpool_keyed_* families.
struct labelled_stats {
  const pool_stats* stats = nullptr;
  std::span<const prometheus_label> labels;
  const keyed_pool_stats* keyed = nullptr;
};

// Every pool in `pools`, each metric family once (HELP and TYPE lines, then one sample, or one per
// state/kind/result/reason/bucket, for each pool in order). An empty span writes nothing.
[[nodiscard]] std::error_code write_prometheus(std::ostream& out,
                                               std::span<const labelled_stats> pools) noexcept;

// One snapshot.
[[nodiscard]] std::error_code write_prometheus(std::ostream& out, const pool_stats& stats,
                                               std::span<const prometheus_label> labels = {}) noexcept;

// The same with the labels written in place: write_prometheus(out, stats, {{"pool", "orders"}}).
[[nodiscard]] inline std::error_code write_prometheus(
    std::ostream& out, const pool_stats& stats, std::initializer_list<prometheus_label> labels) noexcept {
  return write_prometheus(out, stats, std::span<const prometheus_label>(labels.begin(), labels.size()));
}

// A keyed pool's snapshot: its total and its netpool_keyed_* families.
[[nodiscard]] std::error_code write_prometheus(std::ostream& out, const keyed_pool_stats& stats,
                                               std::span<const prometheus_label> labels = {}) noexcept;

[[nodiscard]] inline std::error_code write_prometheus(
    std::ostream& out, const keyed_pool_stats& stats,
    std::initializer_list<prometheus_label> labels) noexcept {
  return write_prometheus(out, stats, std::span<const prometheus_label>(labels.begin(), labels.size()));
}

// What the pool overloads accept: netpool::pool, netpool::lean_pool, or anything with a noexcept
// stats() returning pool_stats.
template <class T>
concept stats_source = noexcept(std::declval<const T&>().stats()) && requires(const T& source) {
  { source.stats() } -> std::convertible_to<pool_stats>;
};

// A pool: takes one stats() snapshot and writes it.
template <stats_source Pool>
[[nodiscard]] std::error_code write_prometheus(std::ostream& out, const Pool& pool,
                                               std::span<const prometheus_label> labels) noexcept {
  const pool_stats stats = pool.stats();
  return write_prometheus(out, stats, labels);
}

template <stats_source Pool>
[[nodiscard]] std::error_code write_prometheus(std::ostream& out, const Pool& pool,
                                               std::initializer_list<prometheus_label> labels = {}) noexcept {
  const pool_stats stats = pool.stats();
  return write_prometheus(out, stats, std::span<const prometheus_label>(labels.begin(), labels.size()));
}

// What the keyed overloads accept: netpool::keyed_pool, whose stats() (keyed_pool_stats) may
// throw (std::bad_alloc, a throwing Hash): that is std::errc::not_enough_memory here, nothing
// written.
template <class T>
concept keyed_stats_source = requires(const T& source) {
  { source.stats() } -> std::same_as<keyed_pool_stats>;
};

// A keyed pool: takes one stats() snapshot and writes it.
template <keyed_stats_source Pool>
[[nodiscard]] std::error_code write_prometheus(std::ostream& out, const Pool& pool,
                                               std::span<const prometheus_label> labels) noexcept {
  try {
    const keyed_pool_stats stats = pool.stats();
    return write_prometheus(out, stats, labels);
  } catch (...) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
}

template <keyed_stats_source Pool>
[[nodiscard]] std::error_code write_prometheus(std::ostream& out, const Pool& pool,
                                               std::initializer_list<prometheus_label> labels = {}) noexcept {
  return write_prometheus(out, pool, std::span<const prometheus_label>(labels.begin(), labels.size()));
}

}  // namespace netpool
