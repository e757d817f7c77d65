// netpool/result.hpp — a value or an error_code, for C++20 (std::expected is C++23).
//
//   netpool::result<netpool::socket> r = dial(deadline);
//   if (!r) return r.error();          // std::error_code
//   netpool::socket s = std::move(*r); // the value
//
// Thread safety: a result is a plain value; one thread at a time.
// Errors: operator* and operator-> on an error are a precondition violation (asserted in debug
// builds); value() throws std::system_error instead, for callers who prefer exceptions.
#pragma once

#include <cassert>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

namespace netpool {

template <class T>
class [[nodiscard]] result {
  static_assert(!std::is_reference_v<T>, "result<T&> is not supported");

 public:
  using value_type = T;

  // Success.
  result(T value) noexcept(std::is_nothrow_move_constructible_v<T>) : has_value_(true) {
    new (&value_) T(std::move(value));
  }
  // Success, the value built in place from `args` (no temporary to move from and destroy).
  template <class... Args>
  requires std::is_constructible_v<T, Args...>
  explicit result(std::in_place_t, Args&&... args) noexcept(std::is_nothrow_constructible_v<T, Args...>)
      : has_value_(true) {
    new (&value_) T(std::forward<Args>(args)...);
  }
  // Failure; `error` must not be a success code.
  result(std::error_code error) noexcept : error_(error), has_value_(false) { assert(error); }
  template <class E, std::enable_if_t<std::is_error_code_enum_v<E>, int> = 0>
  result(E error) noexcept : result(std::error_code(make_error_code(error))) {}

  result(result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) : has_value_(other.has_value_) {
    if (has_value_) {
      new (&value_) T(std::move(other.value_));
    } else {
      error_ = other.error_;
    }
  }
  result& operator=(result&& other) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (this != &other) {
      destroy();
      has_value_ = other.has_value_;
      if (has_value_) {
        new (&value_) T(std::move(other.value_));
      } else {
        error_ = other.error_;
      }
    }
    return *this;
  }
  result(const result&) = delete;
  result& operator=(const result&) = delete;
  ~result() { destroy(); }

  [[nodiscard]] bool has_value() const noexcept { return has_value_; }
  explicit operator bool() const noexcept { return has_value_; }

  // The error; a default (success) error_code when has_value().
  [[nodiscard]] std::error_code error() const noexcept { return has_value_ ? std::error_code() : error_; }

  T& operator*() & noexcept {
    assert(has_value_);
    return value_;
  }
  const T& operator*() const& noexcept {
    assert(has_value_);
    return value_;
  }
  T&& operator*() && noexcept {
    assert(has_value_);
    return std::move(value_);
  }
  T* operator->() noexcept {
    assert(has_value_);
    return &value_;
  }
  const T* operator->() const noexcept {
    assert(has_value_);
    return &value_;
  }

  // The value, or throws std::system_error(error()).
  T& value() & {
    if (!has_value_) throw std::system_error(error_);
    return value_;
  }
  T&& value() && {
    if (!has_value_) throw std::system_error(error_);
    return std::move(value_);
  }

 private:
  void destroy() noexcept {
    if (has_value_) value_.~T();
  }

  union {
    T value_;
    std::error_code error_;
  };
  // Every constructor sets it; the initializer only tells clang-tidy so for the delegating one.
  bool has_value_ = false;
};

}  // namespace netpool
