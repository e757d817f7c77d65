// deadline.hpp — a timeout turned into a steady_clock deadline without overflow.
//
//   const auto deadline = netpool::detail::deadline_after(std::chrono::milliseconds(50));
#pragma once

#include <chrono>

namespace netpool::detail {

// now + timeout; now for a timeout <= 0 (or NaN); time_point::max() when the sum would overflow
// (e.g. hours::max(), which would also overflow on conversion to nanoseconds).
template <class Rep, class Period>
[[nodiscard]] std::chrono::steady_clock::time_point deadline_after(
    std::chrono::duration<Rep, Period> timeout) noexcept {
  using clock = std::chrono::steady_clock;
  const clock::time_point now = clock::now();
  if (!(timeout > timeout.zero())) return now;  // (not <=: a floating-point NaN is neither)
  // Compared as double: converting e.g. hours::max() to nanoseconds would overflow.
  if (std::chrono::duration<double>(timeout) >=
      std::chrono::duration<double>(clock::time_point::max() - now)) {
    return clock::time_point::max();
  }
  return now + std::chrono::duration_cast<clock::duration>(timeout);
}

}  // namespace netpool::detail
