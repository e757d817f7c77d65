// The three error categories of netpool/error.hpp.
//
// Each category is a function-local static: one object per program, constructed on first use
// (thread-safe), so std::error_code comparisons, which compare category addresses, work from any
// translation unit and any thread.
#include "netpool/error.hpp"

#include <netdb.h>

#include <string>

namespace netpool {
namespace {

// make_resolve_error() stores EAI_* values as they are; on glibc (and musl) they are negative, so
// they can never collide with an errno value (always positive) in dial_category(). A platform with
// positive EAI_* values would need an offset here.
static_assert(EAI_NONAME < 0 && EAI_AGAIN < 0 && EAI_FAIL < 0 && EAI_SYSTEM < 0,
              "dial_category() relies on negative EAI_* values to tell them from errno values");

class netpool_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "netpool"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::pool_closed:
        return "pool closed";
      case errc::timeout:
        return "timed out waiting for a connection";
      case errc::cancelled:
        return "cancelled";
      case errc::exhausted:
        return "pool exhausted";
      case errc::dial_failed:
        return "dial failed";
      case errc::invalid_config:
        return "invalid pool configuration";
      case errc::empty_lease:
        return "empty lease";
      case errc::wrong_pool:
        return "lease belongs to another pool";
      case errc::factory_threw:
        return "connection factory threw an exception";
      case errc::health_check_threw:
        return "health check threw an exception";
      case errc::hook_rejected:
        return "rejected by hook";
      case errc::dial_not_needed:
        return "dial not needed: a connection went idle meanwhile";
      case errc::io_timeout:
        return "I/O deadline passed";
      case errc::end_of_stream:
        return "connection closed by the peer before all the bytes came";
    }
    return "unknown netpool error " + std::to_string(value);
  }

  // io_timeout is a timeout in the generic sense (ec == std::errc::timed_out holds, as for the
  // kernel's ETIMEDOUT); the others have no generic counterpart. errc::timeout stays apart: it says
  // that every connection was busy, which std::errc::timed_out would not tell a caller.
  std::error_condition default_error_condition(int value) const noexcept override {
    if (static_cast<errc>(value) == errc::io_timeout) return std::errc::timed_out;
    return {value, *this};
  }
};

class dial_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "netpool.dial"; }

  std::string message(int value) const override {
    if (value > 0) {
      // generic_category().message() is strerror_r's text, safe from any thread.
      return "dial failed: " + std::generic_category().message(value);
    }
    if (value < 0) {
      // gai_strerror returns a pointer to a static string: safe to call concurrently.
      return std::string("resolve failed: ") + ::gai_strerror(value);
    }
    return "success";
  }

  // errno values behave like std::generic_category() codes, so that
  // make_dial_error(ECONNREFUSED) == std::errc::connection_refused holds. Resolver values have no
  // portable counterpart and stay in this category.
  std::error_condition default_error_condition(int value) const noexcept override {
    if (value > 0) return {value, std::generic_category()};
    return {value, *this};
  }
};

class condition_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "netpool.condition"; }

  std::string message(int value) const override {
    switch (static_cast<condition>(value)) {
      case condition::dial_failed:
        return "dial failed";
    }
    return "unknown netpool condition " + std::to_string(value);
  }

  // Called for `code == condition::X` when code's own category does not claim the match.
  bool equivalent(const std::error_code& code, int value) const noexcept override {
    switch (static_cast<condition>(value)) {
      case condition::dial_failed:
        // Any failure to establish a connection, whoever reported it: the built-in dialers (every
        // dial_category() code, errno or resolver), a factory returning errc::dial_failed, or a
        // factory that threw.
        return (code.category() == dial_category() && code.value() != 0) || code == errc::dial_failed ||
               code == errc::factory_threw;
    }
    return false;
  }
};

}  // namespace

const std::error_category& netpool_category() noexcept {
  static const netpool_category_impl instance;
  return instance;
}

const std::error_category& dial_category() noexcept {
  static const dial_category_impl instance;
  return instance;
}

const std::error_category& condition_category() noexcept {
  static const condition_category_impl instance;
  return instance;
}

std::error_code make_resolve_error(int eai_value) noexcept {
  return {eai_value, dial_category()};
}

}  // namespace netpool
