// What a program built without RTTI sees when it gives a pool a built-in dialer as its factory:
// no_rtti_config.cpp is compiled with -fno-rtti (tests/CMakeLists.txt), so the std::function that
// holds the dialer is made without type_info, and the check in src/dialer.cpp must still find it.
#pragma once

#include <system_error>

#include "netpool/config.hpp"

namespace netpool::test::no_rtti {

// validate_for_pool() of a pool_config<socket> made without RTTI, whose factory is a tcp_dialer
// with keep_alive_count 128 (out of range), one with default options, and a unix_dialer with an
// empty path.
[[nodiscard]] config_problem validate_out_of_range_tcp_dialer();
[[nodiscard]] config_problem validate_default_tcp_dialer();
[[nodiscard]] config_problem validate_empty_unix_dialer();
// pool<socket>::create() of the first: its error.
[[nodiscard]] std::error_code create_with_out_of_range_tcp_dialer();

}  // namespace netpool::test::no_rtti
