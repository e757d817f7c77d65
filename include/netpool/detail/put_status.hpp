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

inline std::error_code to_error_code(put_status status) noexcept {
  switch (status) {
    case put_status::ok:
      return {};
    case put_status::closed:
      return errc::pool_closed;
    case put_status::stale:
      return errc::empty_lease;
  }
  return {};
}

}  // namespace netpool::detail
