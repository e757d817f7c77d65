// netpool/detail/waiter_queue.hpp — the FIFO of callers blocked in get().
//
// Waiting is the slow path: every connection is in use, so the caller is about to sleep anyway. A
// small mutex guards the queue; what matters for speed is that nobody touches it while nobody waits
// (pool_core reads the atomic waiter count instead), and that a released connection goes straight
// to the oldest waiter instead of back to the idle set (fair, and no thundering herd).
//
// Each waiter's node lives on its own stack for the duration of the get: no allocation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <system_error>

namespace netpool::detail {

struct waiter {
  // The node's state word is also the futex the waiter sleeps on.
  enum state_value : std::uint32_t {
    waiting = 0,                 // queued, awake (the oldest one spins up to wait_spin)
    sleeping = 1,                // queued, asleep in futex_wait: a granter must wake it
    granted_connection = 2,      // `slot` is leased to this waiter (generation `generation`)
    granted_dial = 3,            // `slot` is reserved (busy) for this waiter to dial into
    pool_closed = 4,             // the pool closed while it waited
    cancelled = 5,               // its stop_token asked to stop
    dial_failed = 6,             // a dialer thread's dial failed: `error` says why
    granted_new_connection = 7,  // as granted_connection, but just dialed: no checks needed
    retry = 8,                   // fair_waiters off: a connection went idle (slot `slot`, or any
                                 // if out of range); compete for it
  };

  std::atomic<std::uint32_t> state{waiting};
  std::uint32_t slot = 0;        // written by the granter before it publishes the grant (release)
  std::uint64_t generation = 0;  // likewise
  std::error_code error;         // dial_failed: written by the failer before it publishes
  std::chrono::steady_clock::time_point waiting_since{};  // when the get began to wait (its owner's)
  // The dial this waiter posted to a dialer thread, if any: the state word of its slot, and the
  // value it holds until that dial delivers (or will not run). Written before the node is queued.
  const std::atomic<std::uint64_t>* own_dial = nullptr;
  std::uint64_t own_dial_word = 0;
  waiter* prev = nullptr;  // queue links, guarded by the pool's wait mutex
  waiter* next = nullptr;
  bool queued = false;  // guarded by the pool's wait mutex

  [[nodiscard]] static bool is_pending(std::uint32_t s) noexcept { return s == waiting || s == sleeping; }
};

// Intrusive doubly-linked FIFO. Not thread-safe: the owner's mutex guards every call.
class waiter_queue {
 public:
  [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
  [[nodiscard]] waiter* front() const noexcept { return head_; }

  // The oldest node for which `pred` holds, left in line (nullptr if none).
  template <class Pred>
  [[nodiscard]] waiter* first_where(Pred pred) const noexcept {
    waiter* w = head_;
    while (w != nullptr && !pred(*w)) w = w->next;
    return w;
  }

  void push_back(waiter& w) noexcept {
    w.prev = tail_;
    w.next = nullptr;
    if (tail_ != nullptr) {
      tail_->next = &w;
    } else {
      head_ = &w;
    }
    tail_ = &w;
    w.queued = true;
  }

  // Puts a node back at the front (a grant that could not be completed keeps its place in line).
  void push_front(waiter& w) noexcept {
    w.prev = nullptr;
    w.next = head_;
    if (head_ != nullptr) {
      head_->prev = &w;
    } else {
      tail_ = &w;
    }
    head_ = &w;
    w.queued = true;
  }

  // Puts a node back in line before every node that began waiting later than it (fair_waiters off:
  // a woken waiter that lost the race for its connection). Not simply at the front: two waiters
  // woken by two returns and both beaten would otherwise rejoin newest-first, and the older one,
  // perhaps starving, would wait behind the younger. Rejoiners are near the front: a short walk.
  void insert_by_age(waiter& w) noexcept {
    waiter* before = head_;
    while (before != nullptr && before->waiting_since <= w.waiting_since) before = before->next;
    if (before == nullptr) {
      push_back(w);
      return;
    }
    w.next = before;
    w.prev = before->prev;
    if (before->prev != nullptr) {
      before->prev->next = &w;
    } else {
      head_ = &w;
    }
    before->prev = &w;
    w.queued = true;
  }

  waiter* pop_front() noexcept {
    waiter* w = head_;
    if (w != nullptr) unlink(*w);
    return w;
  }

  void unlink(waiter& w) noexcept {
    if (!w.queued) return;
    if (w.prev != nullptr) {
      w.prev->next = w.next;
    } else {
      head_ = w.next;
    }
    if (w.next != nullptr) {
      w.next->prev = w.prev;
    } else {
      tail_ = w.prev;
    }
    w.prev = w.next = nullptr;
    w.queued = false;
  }

 private:
  waiter* head_ = nullptr;
  waiter* tail_ = nullptr;
};

}  // namespace netpool::detail
