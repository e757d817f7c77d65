// netpool/detail/futex.hpp — sleeping on a 32-bit atomic with a deadline.
//
// std::atomic::wait has no timeout, and get_for / get_until need one; std::counting_semaphore's
// timed waits poll on libstdc++ 12. So waiters sleep on the futex directly: FUTEX_WAIT_BITSET takes
// an absolute CLOCK_MONOTONIC deadline, which is what std::chrono::steady_clock is on Linux.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace netpool::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

enum class wait_status { woken, timed_out };

// Sleeps while `*word == expected`, until woken, the deadline passes, or spuriously. Returns
// timed_out only when the deadline has passed; callers re-check their condition either way.
// `deadline == time_point::max()` sleeps without a deadline.
wait_status futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                       std::chrono::steady_clock::time_point deadline) noexcept;

// Wakes up to `count` threads sleeping on `word`. Takes a plain address: a waker may call it after
// the waiter has already seen its grant and left (the word lived on the waiter's stack). A wake on
// such an address is harmless: at worst a spurious wake-up of a later wait there, which every wait
// loop tolerates; the kernel never writes through the address.
void futex_wake(const void* word, int count) noexcept;

// A CPU hint for short spins: lets the sibling hyper-thread run and saves power.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace netpool::detail
