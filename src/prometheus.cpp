// netpool::write_prometheus: pool_stats in the Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
//
// The format's rules this file keeps: each family's HELP and TYPE lines appear once, before all of
// its samples, and those samples are contiguous (hence one pass per family over every pool, not one
// pass per pool); a histogram's buckets are cumulative, end with le="+Inf", and that bucket equals
// _count; label values escape backslash, double quote and newline; label names match
// [a-zA-Z_][a-zA-Z0-9_]* (names starting with "__" are reserved to Prometheus).
#include "netpool/prometheus.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace netpool {
namespace {

using label_span = std::span<const prometheus_label>;

// The label names of netpool's own samples. A caller's label with one of these names would give a
// sample the same label twice, which Prometheus rejects.
constexpr std::array<std::string_view, 5> reserved_label_names{"state", "kind", "result", "reason", "le"};

bool is_name_start(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool valid_label_name(std::string_view name) noexcept {
  if (name.empty() || !is_name_start(name.front())) return false;
  if (name.starts_with("__")) return false;  // reserved for Prometheus' internal labels
  if (!std::all_of(name.begin(), name.end(),
                   [](char c) { return is_name_start(c) || (c >= '0' && c <= '9'); })) {
    return false;
  }
  return std::find(reserved_label_names.begin(), reserved_label_names.end(), name) ==
         reserved_label_names.end();
}

// UTF-8 as Prometheus' parser accepts it (Go's utf8.ValidString): no overlong forms, no surrogates,
// nothing past U+10FFFF.
bool valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    unsigned char low = 0x80;  // the range allowed for the second byte (the others: 0x80..0xBF)
    unsigned char high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong below U+0800
      if (lead == 0xED) high = 0x9F;  // U+D800..U+DFFF: surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong below U+10000
      if (lead == 0xF4) high = 0x8F;  // past U+10FFFF
    } else {
      return false;  // a continuation byte, C0/C1 (overlong) or F5..FF
    }
    if (text.size() - i < length) return false;
    const auto second = static_cast<unsigned char>(text[i + 1]);
    if (second < low || second > high) return false;
    for (std::size_t k = 2; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if (next < 0x80 || next > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

bool valid_labels(label_span labels) noexcept {
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (!valid_label_name(labels[i].name) || !valid_utf8(labels[i].value)) return false;
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[j].name == labels[i].name) return false;
    }
  }
  return true;
}

// Whether two label sets (each with unique names, checked first) name the same series, in
// whatever order. A label with an empty value is no label to Prometheus: {pool=""} is {}.
bool same_label_set(label_span a, label_span b) noexcept {
  const auto is_set = [](const prometheus_label& l) { return !l.value.empty(); };
  if (std::count_if(a.begin(), a.end(), is_set) != std::count_if(b.begin(), b.end(), is_set)) return false;
  return std::all_of(a.begin(), a.end(), [b](const prometheus_label& la) {
    return la.value.empty() || std::any_of(b.begin(), b.end(), [&la](const prometheus_label& lb) {
             return lb.name == la.name && lb.value == la.value;
           });
  });
}

bool valid_pools(std::span<const labelled_stats> pools) noexcept {
  for (std::size_t i = 0; i < pools.size(); ++i) {
    if ((pools[i].stats == nullptr && pools[i].keyed == nullptr) || !valid_labels(pools[i].labels))
      return false;
    for (std::size_t j = 0; j < i; ++j) {
      // Two series with the same name and labels: Prometheus would drop one as a duplicate.
      if (same_label_set(pools[j].labels, pools[i].labels)) return false;
    }
  }
  return true;
}

// Numbers: std::to_chars, which ignores every locale (the C++ one imbued in the stream and the C
// one set by setlocale), unlike operator<< and printf.
void append_uint(std::string& out, std::uint64_t value) {
  std::array<char, 20> digits{};  // 2^64 - 1 has 20 digits
  const auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), value);
  (void)ec;  // cannot fail: the buffer holds any uint64_t
  out.append(digits.data(), end);
}

// Seconds from nanoseconds, exactly: "2", "0.00001", "1.5" (no floating point, no rounding).
void append_seconds(std::string& out, std::chrono::nanoseconds duration) {
  static_assert(sizeof(std::chrono::nanoseconds::rep) == sizeof(std::int64_t), "nanoseconds::rep is 64 bits");
  constexpr std::uint64_t ns_per_s = 1'000'000'000;
  const std::int64_t ns = duration.count();
  // Unsigned negation: correct even for the most negative value.
  const std::uint64_t magnitude =
      ns < 0 ? 0 - static_cast<std::uint64_t>(ns) : static_cast<std::uint64_t>(ns);
  if (ns < 0) out += '-';
  append_uint(out, magnitude / ns_per_s);
  std::uint64_t fraction = magnitude % ns_per_s;
  if (fraction == 0) return;
  std::array<char, 9> digits{};
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    *it = static_cast<char>('0' + fraction % 10);
    fraction /= 10;
  }
  std::size_t length = digits.size();
  while (digits[length - 1] == '0') --length;  // fraction != 0: stops at a non-zero digit
  out += '.';
  out.append(digits.data(), length);
}

void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// The pool_stats written for a pool: its own, or a keyed pool's total.
const pool_stats& totals(const labelled_stats& pool) noexcept {
  return pool.stats != nullptr ? *pool.stats : pool.keyed->total;
}

// One of netpool's labels (state="idle"); an empty name: none.
struct own_label {
  std::string_view name;
  std::string_view value;
};

// Builds the whole text in memory: only out.write() touches the stream.
class exposition {
 public:
  explicit exposition(std::span<const labelled_stats> pools) : pools_(pools) {}

  // HELP and TYPE, once per family. The help texts are constants without backslash or newline,
  // the two characters HELP would need escaped.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    text_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    text_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }

  // `name{caller's labels, own} ` (no braces when there are no labels): the value comes next.
  void begin_sample(std::string_view name, label_span labels, own_label own = {}) {
    text_.append(name);
    if (labels.empty() && own.name.empty()) {
      text_ += ' ';
      return;
    }
    text_ += '{';
    const char* separator = "";
    for (const prometheus_label& label : labels) {
      text_.append(separator).append(label.name).append("=\"");
      append_label_value(text_, label.value);
      text_ += '"';
      separator = ",";
    }
    if (!own.name.empty()) {
      text_.append(separator).append(own.name).append("=\"").append(own.value).append("\"");
    }
    text_.append("} ");
  }

  void sample(std::string_view name, label_span labels, own_label own, std::uint64_t value) {
    begin_sample(name, labels, own);
    append_uint(text_, value);
    text_ += '\n';
  }

  void sample_seconds(std::string_view name, label_span labels, own_label own,
                      std::chrono::nanoseconds value) {
    begin_sample(name, labels, own);
    append_seconds(text_, value);
    text_ += '\n';
  }

  // A family with one sample per pool: value(stats) for each.
  template <class Value>
  void simple(std::string_view name, std::string_view type, std::string_view help, Value value) {
    family(name, type, help);
    for (const labelled_stats& pool : pools_) sample(name, pool.labels, {}, value(totals(pool)));
  }

  void write_all();

  [[nodiscard]] std::string take() noexcept { return std::move(text_); }

 private:
  void wait_histogram();
  void keyed_families();

  // A family with one sample per keyed pool.
  template <class Value>
  void keyed(std::string_view name, std::string_view type, std::string_view help, Value value) {
    family(name, type, help);
    for (const labelled_stats& pool : pools_) {
      if (pool.keyed != nullptr) sample(name, pool.labels, {}, value(*pool.keyed));
    }
  }

  std::span<const labelled_stats> pools_;
  std::string text_;
};

void exposition::write_all() {
  if (pools_.empty()) return;  // no samples: not even HELP and TYPE lines
  // --- gauges ---
  family("netpool_connections", "gauge",
         "Connections the pool holds, by state: idle (open, in the pool), in_use (lent out), dialing (being "
         "opened, checked or closed by the pool).");
  for (const labelled_stats& pool : pools_) {
    sample("netpool_connections", pool.labels, {"state", "idle"}, totals(pool).idle);
    sample("netpool_connections", pool.labels, {"state", "in_use"}, totals(pool).in_use);
    sample("netpool_connections", pool.labels, {"state", "dialing"}, totals(pool).dialing);
  }
  simple("netpool_connections_max", "gauge", "Most connections the pool may hold (max_size).",
         [](const pool_stats& s) { return s.max; });
  simple("netpool_connections_min", "gauge", "Connections the pool keeps open even when unused (min_size).",
         [](const pool_stats& s) { return s.min; });
  simple("netpool_waiters", "gauge", "Callers blocked in get, waiting for a connection.",
         [](const pool_stats& s) { return s.waiters; });

  // --- counters ---
  family("netpool_gets_total", "counter",
         "Connections handed out by get: kind=waited after waiting in line (every connection in use, or the "
         "dial on a dialer thread), kind=immediate otherwise (a dial on the caller's own thread included).");
  for (const labelled_stats& pool : pools_) {
    const pool_stats& s = totals(pool);
    // gets = gets_immediate + the gets served after waiting, two counters that only grow (pool
    // stats() reads them apart but adds them up itself; a keyed pool's sums keep that).
    const std::uint64_t waited = s.gets > s.gets_immediate ? s.gets - s.gets_immediate : 0;
    sample("netpool_gets_total", pool.labels, {"kind", "immediate"}, s.gets_immediate);
    sample("netpool_gets_total", pool.labels, {"kind", "waited"}, waited);
  }
  simple("netpool_get_timeouts_total", "counter",
         "Gets that failed because their deadline passed while waiting.",
         [](const pool_stats& s) { return s.timeouts; });
  simple("netpool_get_cancellations_total", "counter",
         "Gets that failed because their stop_token asked to stop.",
         [](const pool_stats& s) { return s.cancellations; });
  simple("netpool_get_fast_failures_total", "counter",
         "Gets failed at once with the last dial error while dialing was backing off.",
         [](const pool_stats& s) { return s.fast_failures; });
  family(
      "netpool_dials_total", "counter",
      "Finished dials (factory calls): result=ok opened a connection that on_connect accepted, result=failed "
      "did not.");
  for (const labelled_stats& pool : pools_) {
    sample("netpool_dials_total", pool.labels, {"result", "ok"}, totals(pool).dials_ok);
    sample("netpool_dials_total", pool.labels, {"result", "failed"}, totals(pool).dial_failures);
  }
  simple("netpool_leaks_total", "counter",
         "Leases held longer than leak_threshold (each reported once to on_leak).",
         [](const pool_stats& s) { return s.leaks; });
  family("netpool_connections_closed_total", "counter",
         "Connections the pool closed, by reason (close_reason).");
  for (const labelled_stats& pool : pools_) {
    for (std::size_t i = 0; i < close_reason_count; ++i) {
      sample("netpool_connections_closed_total", pool.labels,
             {"reason", to_string(static_cast<close_reason>(i))}, totals(pool).closed[i]);
    }
  }

  wait_histogram();

  family("netpool_get_wait_max_seconds", "gauge",
         "Longest time a single get spent blocked, since the pool was created.");
  for (const labelled_stats& pool : pools_) {
    sample_seconds("netpool_get_wait_max_seconds", pool.labels, {}, totals(pool).max_wait);
  }

  keyed_families();
}

// Written only when a keyed pool is among pools_, so that a scrape of plain pools is as before.
void exposition::keyed_families() {
  if (std::none_of(pools_.begin(), pools_.end(),
                   [](const labelled_stats& p) { return p.keyed != nullptr; })) {
    return;
  }
  using stats = keyed_pool_stats;
  keyed("netpool_keyed_pools", "gauge", "Sub-pools (keys) the keyed pool holds now.",
        [](const stats& s) { return s.pools; });
  keyed("netpool_keyed_connections_open", "gauge",
        "Connections open or being dialed across every key (global tokens taken).",
        [](const stats& s) { return s.open; });
  keyed("netpool_keyed_connections_global_max", "gauge",
        "Most connections across every key (global_max; 0: no global limit).",
        [](const stats& s) { return s.global_max; });
  keyed("netpool_keyed_global_waiters", "gauge", "Dials waiting for the global limit now.",
        [](const stats& s) { return s.global_waiters; });
  keyed("netpool_keyed_pools_created_total", "counter",
        "Sub-pools created (a key's first use, or after eviction).",
        [](const stats& s) { return s.pools_created; });
  keyed("netpool_keyed_pools_evicted_total", "counter", "Sub-pools closed by evict_idle_after.",
        [](const stats& s) { return s.pools_evicted; });
  keyed("netpool_keyed_pools_removed_total", "counter", "Sub-pools closed by remove().",
        [](const stats& s) { return s.pools_removed; });
  keyed("netpool_keyed_global_waits_total", "counter", "Dials that found the global limit reached at first.",
        [](const stats& s) { return s.global_waits; });
  keyed("netpool_keyed_global_exhausted_total", "counter",
        "Dials that waited for the global limit until their deadline and gave up (errc::exhausted).",
        [](const stats& s) { return s.global_exhausted; });
  keyed("netpool_keyed_reclaimed_total", "counter",
        "Idle connections of other keys closed to make room for a dial under the global limit.",
        [](const stats& s) { return s.reclaimed; });
}

void exposition::wait_histogram() {
  family("netpool_get_wait_seconds", "histogram",
         "Time gets spent blocked waiting for a connection (gets served without blocking are not observed).");
  // The le values, computed once: "0.00001", ..., "10".
  std::array<std::string, wait_bucket_bounds.size()> bounds;
  for (std::size_t i = 0; i < bounds.size(); ++i) append_seconds(bounds[i], wait_bucket_bounds[i]);

  for (const labelled_stats& pool : pools_) {
    const pool_stats& s = totals(pool);
    std::uint64_t observed = 0;
    for (const std::uint64_t n : s.wait_histogram) observed += n;
    // _count is gets_waited. A snapshot taken while gets wait may read the histogram a little ahead
    // of it: then the histogram's total is used, so that the +Inf bucket (which must equal _count)
    // is never below a finite bucket.
    const std::uint64_t count = std::max(s.gets_waited, observed);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      cumulative += s.wait_histogram[i];
      sample("netpool_get_wait_seconds_bucket", pool.labels, {"le", bounds[i]}, cumulative);
    }
    sample("netpool_get_wait_seconds_bucket", pool.labels, {"le", "+Inf"}, count);
    sample_seconds("netpool_get_wait_seconds_sum", pool.labels, {}, s.wait_time);
    sample("netpool_get_wait_seconds_count", pool.labels, {}, count);
  }
}

}  // namespace

std::error_code write_prometheus(std::ostream& out, std::span<const labelled_stats> pools) noexcept {
  if (!valid_pools(pools)) return std::make_error_code(std::errc::invalid_argument);
  std::string text;
  try {
    exposition builder(pools);
    builder.write_all();
    text = builder.take();
  } catch (...) {
    // Only std::string's allocation can throw here (bad_alloc; length_error would need a text
    // longer than memory).
    return std::make_error_code(std::errc::not_enough_memory);
  }
  try {
    // Not flushed: the caller owns the stream and decides when its buffer goes out.
    if (out) out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) return std::make_error_code(std::errc::io_error);
  } catch (...) {
    // Streams throw only when the caller set out.exceptions(); the contract is no exceptions.
    return std::make_error_code(std::errc::io_error);
  }
  return {};
}

std::error_code write_prometheus(std::ostream& out, const pool_stats& stats, label_span labels) noexcept {
  const std::array<labelled_stats, 1> one{labelled_stats{&stats, labels}};
  return write_prometheus(out, std::span<const labelled_stats>(one));
}

std::error_code write_prometheus(std::ostream& out, const keyed_pool_stats& stats,
                                 label_span labels) noexcept {
  const std::array<labelled_stats, 1> one{labelled_stats{nullptr, labels, &stats}};
  return write_prometheus(out, std::span<const labelled_stats>(one));
}

}  // namespace netpool
