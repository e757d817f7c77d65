// netpool/detail/put_status.hpp — what returning a connection did.
//
// The put path reports an enum, not a std::error_code: building an error_code calls into the
// category functions, which is measurable on a path of a few dozen instructions. The public
// lease::release() / pool::put() convert it; ~lease() ignores it.
#pragma once

#include <system_error>

#include "netpool/error.hpp"

namespace netpool::detail {

enum class put_status {
  ok,      // back in the pool, or handed to a waiter, or its slot freed (discard)
  closed,  // the pool was closed: the connection was closed
  stale,   // the lease did not match its slot (cannot happen through the public API)
};

// std::error_code{} without its call: the default constructor calls std::system_category(), an
// out-of-line function reached through the PLT, on every successful put. The reference is taken
// once (a function-local static: safe during static initialisation); the result compares equal
// to std::error_code{} (same value, same category object).
inline std::error_code success() noexcept {
  static const std::error_category& category = std::system_category();
  return std::error_code(0, category);
}

inline std::error_code to_error_code(put_status status) noexcept {
  switch (status) {
    case put_status::ok:
      return success();
    case put_status::closed:
      return errc::pool_closed;
    case put_status::stale:
      return errc::empty_lease;
  }
  return success();
}

}  // namespace netpool::detail
