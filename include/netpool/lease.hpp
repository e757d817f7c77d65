// netpool/lease.hpp — a borrowed connection that goes back to its pool by itself.
//
//   if (auto conn = pool.get_for(std::chrono::seconds(1))) {
//     netpool::lease<netpool::socket>& lease = *conn;
//     if (auto ec = lease->send_all("PING\r\n")) {
//       lease.discard();            // broken: close it and free its slot (put_with_error)
//     }
//     // ... read the reply ...
//   }                               // ~lease(): the connection goes back to the pool (put)
//
// Thread safety: a lease is used by one thread at a time; it may be moved to and returned from any
// thread.
// Lifetime: a lease may outlive its pool: returning it then closes the connection; the pool's
// internals stay alive until the last lease comes back. A moved-from or returned lease is empty;
// dereferencing an empty lease is a precondition violation (asserted in debug builds).
// Errors: release()/discard() of an empty lease return errc::empty_lease and do nothing else.
// A connection closed through the lease (lease->close() on a netpool::socket, or any Conn whose
// `bool is_open() const` says false) is never lent again: when it comes back its slot is freed as
// discard() would do (counted as an error close), or, if the pool meanwhile closed or doomed the
// lease (close(), a shrink, max_lifetime, reset()), for that reason, and release() reports it as
// it would for an open connection (errc::pool_closed after close()).
#pragma once

#include <cassert>
#include <cstdint>
#include <system_error>
#include <utility>

#include "netpool/detail/put_status.hpp"
#include "netpool/error.hpp"
#include "netpool/result.hpp"

namespace netpool {

namespace detail {
template <class Conn>
class pool_core;

// Permission to build a non-empty lease: only the pool can make one (its constructor is private),
// so the lease constructor that takes it can be public — which lets result<lease> build a lease in
// place on the get fast path — without letting anyone else forge a lease.
template <class Conn>
class lease_key {
  friend class pool_core<Conn>;
  lease_key() = default;
};
}  // namespace detail

template <class Conn>
class lease {
 public:
  lease() noexcept = default;
  lease(lease&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)),
        conn_(std::exchange(other.conn_, nullptr)),
        slot_(other.slot_),
        word_(other.word_) {}
  lease& operator=(lease&& other) noexcept {
    if (this != &other) {
      if (core_ != nullptr) (void)core_->put_back(slot_, word_);  // return what we held
      core_ = std::exchange(other.core_, nullptr);
      conn_ = std::exchange(other.conn_, nullptr);
      slot_ = other.slot_;
      word_ = other.word_;
    }
    return *this;
  }
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  // always_inline, as release(): the put's fast path is a CAS and a few loads; left to the
  // compiler, a function that ends several leases got calls instead (docs/design.md).
  [[gnu::always_inline]] ~lease() {
    if (core_ != nullptr) (void)core_->put_back(slot_, word_);
  }

  [[nodiscard]] Conn& get() const noexcept {
    assert(conn_ != nullptr && "netpool: use of an empty (moved-from or returned) lease");
    return *conn_;
  }
  Conn& operator*() const noexcept { return get(); }
  Conn* operator->() const noexcept { return &get(); }
  explicit operator bool() const noexcept { return core_ != nullptr; }
  [[nodiscard]] bool empty() const noexcept { return core_ == nullptr; }

  // Returns the connection to the pool for reuse (pool::put). The lease becomes empty.
  [[gnu::always_inline]] std::error_code release() noexcept {
    if (core_ == nullptr) return errc::empty_lease;
    conn_ = nullptr;
    return detail::to_error_code(std::exchange(core_, nullptr)->put_back(slot_, word_));
  }

  // Closes the connection and frees its slot so that a waiter can dial (pool::put_with_error).
  std::error_code discard() noexcept {
    if (core_ == nullptr) return errc::empty_lease;
    conn_ = nullptr;
    return detail::to_error_code(std::exchange(core_, nullptr)->discard(slot_, word_));
  }

  // True when this lease came from the pool whose core is `core` (used to reject wrong-pool puts).
  [[nodiscard]] bool belongs_to(const detail::pool_core<Conn>* core) const noexcept { return core_ == core; }

  // For the pool only (the key says so): the connection in `slot` of `core`, lent as `word`.
  lease(detail::lease_key<Conn> /*only the pool has one*/, detail::pool_core<Conn>* core, Conn* conn,
        void* slot, std::uint64_t word) noexcept
      : core_(core), conn_(conn), slot_(slot), word_(word) {}

 private:
  friend class detail::pool_core<Conn>;

  detail::pool_core<Conn>* core_ = nullptr;
  Conn* conn_ = nullptr;
  void* slot_ = nullptr;    // the core's slot (opaque here)
  std::uint64_t word_ = 0;  // the slot's state word when it was lent to us
};

}  // namespace netpool

#include "netpool/detail/pool_core.hpp"  // lease's member bodies call into the core
