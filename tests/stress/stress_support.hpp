// stress_support.hpp — what the stress suites share: whether this build runs under a sanitizer (the
// suites then do fewer operations, to stay within their time), and a cheap random generator.
//
//   constexpr int ops = netpool::test::stress_sanitized ? 8'000 : 20'000;
//   netpool::test::stress_rng r(seed);  // one per thread: not thread-safe
//   if (r.below(100) < 8) { ... }       // in [0, 100)
#pragma once

#include <cstdint>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)  // g++
#define NETPOOL_STRESS_SANITIZED 1
#elif defined(__has_feature)  // clang
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define NETPOOL_STRESS_SANITIZED 1
#endif
#endif
#ifndef NETPOOL_STRESS_SANITIZED
#define NETPOOL_STRESS_SANITIZED 0
#endif

namespace netpool::test {

inline constexpr bool stress_sanitized = NETPOOL_STRESS_SANITIZED != 0;

// xorshift64*: cheap, no allocation, and the same sequence on every run for a seed.
class stress_rng {
 public:
  explicit stress_rng(std::uint64_t seed) noexcept : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() noexcept {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  // In [0, n); n > 0.
  unsigned below(unsigned n) noexcept { return static_cast<unsigned>(next() % n); }

 private:
  std::uint64_t s_;
};

}  // namespace netpool::test
