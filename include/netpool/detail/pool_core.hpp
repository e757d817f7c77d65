// netpool/detail/pool_core.hpp — the shared state behind pool and lean_pool.
//
// Design in one paragraph (docs/design.md draws it): connections live in a fixed array of slots,
// one cache line each. A slot's whole state is one 64-bit word (phase, flags, generation), so every
// ownership change is a single CAS on a line that, in steady state, only one thread touches: the
// thread that returned a connection last takes the same slot back (a thread-local hint), which is
// why get+put costs two uncontended atomic operations instead of a fight over a shared head or
// counter. Callers that must wait queue in FIFO order under a small mutex; a returned connection
// goes straight to the oldest waiter. Gauges are derived by reading the slots, never kept as shared
// counters on the hot path.
//
// Invariants (cited in the code as INVn):
//   INV1  A slot's phase is exactly one of free, idle, leased, busy. Only the slot's owner — the
//         thread that moved it to leased or busy — touches its connection, until it moves the
//         slot to idle or free (or hands it to a waiter, who becomes the owner).
//   INV2  (slots not free) <= active_ <= max_size. reserve_slot() raises active_ before claiming
//         a free slot; release_slot() marks the slot free before lowering active_. So a thread that
//         raised active_ always finds a free slot (once transit bits clear).
//   INV3  The generation grows on every change of owner, so a CAS that expects a word read before
//         a slot changed hands fails: no ABA. (60 bits: no wrap in practice.)
//   INV4  `closed` and `orphan` bits are never cleared; no slot becomes idle once closed.
//   INV5  While a slot's `transit` bit is set, only the thread that set it writes the slot's word
//         (close() and the orphan sweep wait for it to clear). The thread that set it still counts
//         as using the core, so the core cannot be freed under it; clearing transit (a plain
//         store) is its last access to the core.
//   INV6  No lost wake-up for idle connections: make_idle() publishes the slot with a seq_cst RMW
//         and then loads waiters_ (seq_cst); a waiter raises waiters_ (seq_cst RMW) and then scans
//         the slots (seq_cst loads, waiting out transit). In the single total order one of them
//         sees the other: either the waiter finds the idle slot, or the returner sees the waiter
//         and hands the connection over.
//   INV7  No lost wake-up for free slots: release_slot() lowers active_ (seq_cst) then loads
//         waiters_; a waiter raises waiters_ then tries reserve_slot() (seq_cst CAS on active_).
//   INV8  waiters_ == number of nodes in queue_; both change only under wait_mutex_. A waiter node
//         taken off the queue by a granter (or close) waits, without deadline, for its outcome to
//         be published, so the granter may unlock wait_mutex_ before it writes the node. The node
//         lives on the waiter's stack: once the outcome is published the granter writes nothing
//         more to it (it only wakes its address). Whatever core access follows is covered by the
//         granter's own hold on the core (INV5, a lease's or the handle's reference, INV9; a
//         dialer thread is joined by destroy_handle()). A dialer whose dial failed publishes only
//         after release_slot() and end_dial() (dial_for_pool()), so the imminent publication
//         also waits for those: bounded, no user code, no wait on the waiter.
//   INV10 No lost wake-up for dial tokens (max_connecting): end_dial() lowers connecting_
//         (seq_cst) then loads waiters_; a waiter raises waiters_ then tries reserve_slot(), which
//         takes a token with a seq_cst CAS. A waiter is never left asleep while both room and a
//         token are free, unless it awaits the dial it posted (awaits_own_dial()): that dial's
//         end_dial() then grants it one if the dial served another. The waiter raises waiters_, the
//         granter (or the waiter) reads the dial's slot word, all seq_cst; the delivery that changes
//         the word comes before end_dial()'s seq_cst fence and its load of waiters_.
//   INV11 No lost wake-up for the maintainer's tick: a maintainer about to sleep without a timeout
//         stores maintainer_sleeps_indefinitely_ (seq_cst) then loads active_; a dial raises
//         active_ (seq_cst RMW in reserve_count()) and, once it has its connection, loads the flag
//         in after_dial(). Either the maintainer sees the connection and runs another round, or
//         the dial sees the flag and wakes it: a pool with open connections keeps its tick moving.
//   INV12 No idle connection is invisible to the miss path: a slot that is idle, or leased with
//         its `unlisted` flag clear, has its bit set in listed_, except (a) while its owner holds
//         it in transit, having made it idle, before relist() sets the bit, and (b) while a
//         scanner that cleared the bit has yet to reload the slot's word: until that scanner
//         runs again (it may be descheduled), the slot is hidden from every other thread, and
//         the scanner then takes it itself. Only unlist() and unlist_taken() clear bits, and
//         always set `unlisted` first. unlist(), for a slot the scanner does not own, then checks
//         that the flag is still set (a relist() in between is undone by the clear: start over)
//         and reloads the word: a slot idle by then is taken by the scanner itself. unlist_taken()
//         is for a slot the scanner has just taken: nobody else makes it idle, so it need not
//         look again. A put that makes a slot idle loads
//         `unlisted` after its seq_cst CAS and, if set, relists before it looks for waiters
//         (INV6); slow paths relist always. In the single total order, either the put sees the
//         flag or the scanner's reload sees the put. The fast get, and a miss served from the
//         thread's cache of walked slots (take_walked()), leave the bit as it is (a leased slot
//         may be listed: scanners unlist it when they meet it; an unlisted one has its flag set,
//         so its put relists it), so neither writes a shared line; the fast put reads only its
//         own slot's flag. A scanner may leave its own
//         hint slot listed while it is leased, but only if the scanner has not cleared its bit:
//         after a clear, it leaves a slot only with the flag set.
//         With stripes, "its bit" is its bit in any stripe: relist() sets it in the stripe of
//         the putting thread's CPU, and a scanner clears the bit it found, in the stripe it found
//         it in. So a slot may be listed in several stripes (a relist into another stripe between
//         a scanner's flag and its clear; a slow put, which relists always, of a slot still
//         listed elsewhere; a take, which clears only the bit it found): an extra bit stays until
//         a walk of its stripe meets it, and costs that walk a look. A clear never removes a bit
//         set in another stripe, so the argument above, per word, holds in each: a relist into
//         the stripe being cleared is the case it covers.
//   INV13 A pool whose stripes span more than 8 words of listed_ each (pools of more than 512
//         slots) keeps a summary, one bit per word of listed_ (padding words between stripes are
//         never listed, so their bits stay 0): once the relist() or clear in flight on a word is
//         done, a non-empty word has its bit set. relist() sets the slot's bit, then loads the
//         summary and sets the word's bit if clear; whoever sees a word empty after clearing a
//         slot's bit clears the word's summary bit, then reloads the word and sets the bit back if
//         the word is not empty (all seq_cst: one of the two sees the other). Only the lean miss
//         walk (take_lowest_idle()) reads it, and falls back on the full walk when it finds
//         nothing: a momentarily wrong summary costs a slower get, never a lost connection or
//         wake-up (waiters never read it).
//   INV9  The core is freed exactly once, by whoever drops refs_ to zero: the pool handle holds one
//         reference, and the orphan sweep adds one per slot that was still leased or busy when the
//         handle went away; that slot's owner drops it when it returns the slot.
//   INV14 free_[i / 64] bit i % 64 is set when slot i is free and out of transit, and, briefly,
//         while the reserver that has just taken it has not cleared it yet. Only the slot's owner
//         sets it (and the constructor, for every slot), while it holds the slot free in transit,
//         just before it clears transit (mark_free()); only the reserver whose CAS took the slot
//         from free clears it, before it returns. The two are ordered by the slot's ownership, so
//         no bit of a free slot is lost. A hint only (all relaxed): reserve_slot() looks there
//         first, and scans every slot when it finds nothing (INV2 still promises a free slot), so
//         a bit read late costs a slower reserve, never a wrong one.
#pragma once

#include <sched.h>
// current_cpu() reads the rseq area through the thread pointer: glibc 2.35+ for the symbols, and
// a compiler that can give the thread pointer (__builtin_thread_pointer: clang; GCC 11+ on x86-64,
// all versions on AArch64). Elsewhere it falls back on sched_getcpu().
#if defined(__linux__) && __has_include(<sys/rseq.h>) && defined(__has_builtin)
#if __has_builtin(__builtin_thread_pointer) && \
    (defined(__clang__) || defined(__aarch64__) || (defined(__x86_64__) && __GNUC__ >= 11))
#include <sys/rseq.h>  // __rseq_offset, __rseq_size, struct rseq
#define NETPOOL_HAS_RSEQ 1
#endif
#endif
#ifndef NETPOOL_HAS_RSEQ
#define NETPOOL_HAS_RSEQ 0
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <stop_token>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "netpool/config.hpp"
#include "netpool/detail/deadline.hpp"
#include "netpool/detail/futex.hpp"
#include "netpool/detail/put_status.hpp"
#include "netpool/detail/sync_point.hpp"
#include "netpool/detail/waiter_queue.hpp"
#include "netpool/error.hpp"
#include "netpool/hooks.hpp"
#include "netpool/lease.hpp"
#include "netpool/result.hpp"
#include "netpool/socket.hpp"
#include "netpool/stats.hpp"

namespace netpool::detail {

inline constexpr std::size_t cache_line = 64;
// 64-bit words to a cache line: the idle bitmap's walk reads this many with one miss.
inline constexpr std::uint32_t words_per_line = cache_line / sizeof(std::uint64_t);

// The idle bitmap's stripes (pool_core::listed_): each has a bit for every slot; a put lists its
// slot in the stripe of the CPU it runs on, and a miss walk starts in that stripe too, so that
// walks and puts on different CPUs write different lines, and idle connections gather where they
// are returned (docs/design.md, "Stripes of the idle bitmap"). At most this many, and one per 32
// slots: a pool of up to 64 slots keeps one word.
inline constexpr std::uint32_t max_idle_stripes = 8;

// The CPU this thread runs on now (a guess: it may move at once), or 0 if unknown. With glibc 2.35
// or later, which registers each thread's rseq area, the kernel keeps the area's cpu_id current:
// one load from the thread's own memory. Otherwise (rseq not registered, as under valgrind)
// sched_getcpu(), through the vDSO: no system call either.
inline std::uint32_t current_cpu() noexcept {
#if NETPOOL_HAS_RSEQ
  if (__rseq_size != 0) [[likely]] {
    // volatile: the kernel rewrites it when the thread moves; each call must load it afresh.
    const auto* area = reinterpret_cast<const volatile struct rseq*>(
        static_cast<char*>(__builtin_thread_pointer()) + __rseq_offset);
    return area->cpu_id;
  }
#endif
#if defined(__linux__)
  const int cpu = sched_getcpu();
  return cpu < 0 ? 0 : static_cast<std::uint32_t>(cpu);
#else
  return 0;
#endif
}

// For tests, so that they can know which idle connection a walk takes whatever the machine: when
// not negative, the stripe this thread's miss walks start in and its puts list slots in, instead
// of its CPU's; and when not
// 0, the number of stripes of pools created from now on (a power of two up to max_idle_stripes,
// still one for pools of up to 64 slots), instead of one per CPU.
inline thread_local int thread_home_stripe_for_tests = -1;
inline std::atomic<std::uint32_t> idle_stripes_for_tests{0};

// The slot word: [ generation : 58 | doomed | orphan | closed | transit | phase : 2 ].
namespace word {
inline constexpr std::uint64_t phase_mask = 0x3;
inline constexpr std::uint64_t free = 0;           // no connection; may be reserved for a dial
inline constexpr std::uint64_t idle = 1;           // holds a connection waiting in the pool
inline constexpr std::uint64_t leased = 2;         // holds a connection lent to a caller (the owner)
inline constexpr std::uint64_t busy = 3;           // owned by the pool itself: dialing, checking or closing
inline constexpr std::uint64_t transit = 1u << 2;  // INV5: the owner is finishing a release
inline constexpr std::uint64_t closed = 1u << 3;   // INV4: the pool was closed
inline constexpr std::uint64_t orphan = 1u << 4;   // INV9: the pool handle was destroyed
inline constexpr std::uint64_t doomed = 1u << 5;   // close this connection when it comes back
inline constexpr std::uint64_t flag_mask = transit | closed | orphan | doomed;
inline constexpr unsigned generation_shift = 6;
inline constexpr std::uint64_t generation_mask = ~std::uint64_t{0} << generation_shift;
inline constexpr std::uint64_t one_generation = std::uint64_t{1} << generation_shift;
// idle(g) + idle_to_leased == leased(g + 1): a get in one add (phases are 1 and 2, no flags).
inline constexpr std::uint64_t idle_to_leased = one_generation + (leased - idle);

constexpr std::uint64_t phase(std::uint64_t w) noexcept {
  return w & phase_mask;
}
constexpr std::uint64_t generation(std::uint64_t w) noexcept {
  return w >> generation_shift;
}
constexpr std::uint64_t with_phase(std::uint64_t w, std::uint64_t p) noexcept {
  return (w & ~phase_mask) | p;
}
// A new owner takes the slot: new phase, next generation (INV3), flags kept.
constexpr std::uint64_t next_owner(std::uint64_t w, std::uint64_t p) noexcept {
  return (with_phase(w, p) & ~doomed) + one_generation;  // `doomed` belongs to the old owner
}
constexpr std::uint64_t make(std::uint64_t generation, std::uint64_t p) noexcept {
  return (generation << generation_shift) | p;
}
}  // namespace word

// The slot a thread returned last, per pool. A few ways so that a thread using several pools keeps
// its hint in each; a stale hint is harmless because the CAS on the slot word decides. Way w holds
// (thread_hint_pool[w], thread_hint_slot[w]); a pool uses way id % hint_ways, computed once. Two
// arrays of 8-byte entries rather than one of pairs: an entry is then one scaled-index operand,
// with no multiply on the hot path (2 instructions fewer per get and per put).
inline constexpr std::size_t hint_ways = 8;
inline thread_local std::uint64_t thread_hint_pool[hint_ways]{};
inline thread_local void* thread_hint_slot[hint_ways]{};  // a slot of that pool

// The slots this thread last took through the miss walk, per pool (same ways as the hint). The
// miss path tries them before it walks: a thread that holds up to walked_slots_per_way connections
// at once then finds one of its own idle on every get, and never writes the idle bitmap, which
// every CPU shares (docs/design.md, "Two CPUs writing one bitmap"). Like the hint, an entry is
// only a guess: the CAS on the slot word decides, and `pool` (a pool id, never reused) tells
// whether the slots belong to the pool asking. Filled by the miss path only: the put stays as is.
inline constexpr std::size_t walked_slots_per_way = 4;
struct walked_slots {
  std::uint64_t pool = 0;  // id of the pool whose slots these are; 0: none
  std::array<void*, walked_slots_per_way> slot{};
  std::uint32_t next = 0;  // the entry the next walked slot replaces (round robin)
};
inline thread_local walked_slots thread_walked[hint_ways]{};

// How many return hooks (on_return, on_leak's "came back") this thread is running, of any pool: a
// hook may return another lease. close() waits for the return hooks under way on other threads,
// but not when called from inside one (pool_core::return_hooks).
inline thread_local std::uint32_t thread_return_hooks = 0;

// Raises `a` to `value` unless it is already at least that: an atomic maximum. relaxed: no caller
// publishes anything through the value itself (each says why at its call).
inline void raise_to(std::atomic<std::uint64_t>& a, std::uint64_t value) noexcept {
  std::uint64_t seen = a.load(std::memory_order_relaxed);
  while (seen < value && !a.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// Unique for the life of the process (never reused, unlike an address), starting at 1.
std::uint64_t next_pool_id() noexcept;

// A connection type that can say whether it is open: `bool is_open() const` (netpool::socket).
template <class Conn>
concept reports_open = requires(const Conn& conn) {
  { conn.is_open() } -> std::same_as<bool>;
};
// ... and says so without throwing. A concept, not noexcept(conn.is_open()) in the function that
// uses it: clang-tidy 14's bugprone-exception-escape reads that unevaluated call as a throw.
template <class Conn>
concept reports_open_nothrow = reports_open<Conn> && requires(const Conn& conn) {
  { conn.is_open() }
  noexcept;
};

// A connection that says it is not open (a netpool::socket of fd -1) is no connection: lent, it
// would fail the caller's first I/O (EBADF) instead of the get. The factory's result is then a
// failed dial: call_factory() says so (and so does run_on_connect() for one the hook closed), and
// keyed_pool's wrapped factory gives back the global token it took for it (KB1). May throw if
// is_open() does (its callers run it inside the factory's or the hook's try).
template <class Conn>
bool made_closed(const Conn& conn) {
  if constexpr (reports_open<Conn>) {
    return !conn.is_open();
  } else {
    return false;
  }
}

// made_closed() for a connection coming back from a borrower, who may have closed it
// (lease->close(), socket::release()): such a one is discarded, never lent again. On the put
// path, which must not throw: an is_open() that throws counts as closed.
template <class Conn>
bool returned_closed(const Conn& conn) noexcept {
  if constexpr (!reports_open<Conn>) {
    return false;
  } else if constexpr (reports_open_nothrow<Conn>) {
    return !conn.is_open();
  } else {
    try {
      return !conn.is_open();
    } catch (...) {
      return true;
    }
  }
}

enum class pool_kind { standard, lean };

template <class Conn>
class pool_core {
  static_assert(std::is_nothrow_move_constructible_v<Conn>,
                "netpool: the connection type must be nothrow move-constructible");
  static_assert(std::is_nothrow_destructible_v<Conn>,
                "netpool: the connection type must not throw on destruction");

 public:
  using clock = std::chrono::steady_clock;
  using lease_type = lease<Conn>;

  enum class acquire_mode {
    try_idle,  // try_get: an idle connection or errc::exhausted; never dials, never waits
    // keyed_pool's look after a dial that was not needed (keyed_state::try_get_until()): as
    // try_idle, but once a check has failed, none starts past the deadline (as in wait)
    try_idle_until,
    wait,  // get*: idle, else dial if there is room, else wait (until the deadline)
  };

  // Validates, allocates and starts the pool. The caller owns the returned core's one reference.
  static result<pool_core*> create(pool_config<Conn> config, pool_kind kind) {
    const config_problem problem = check(config, kind);
    if (problem != config_problem::none) return errc::invalid_config;
    std::unique_ptr<pool_core> core(new (std::nothrow) pool_core(std::move(config), kind));
    if (!core || !core->slots_ || !core->listed_storage_ || !core->free_ ||
        (core->summarized_ && !core->listed_summary_) || (core->leak_ns_ != 0 && !core->lent_) ||
        (core->max_dialers_ != 0 && !core->jobs_)) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
    try {
      core->dialers_.reserve(core->max_dialers_);
    } catch (const std::bad_alloc&) {
      return std::make_error_code(std::errc::not_enough_memory);
    }
    if (kind == pool_kind::lean || !core->config_.background_maintenance) {
      core->fill_to_min();  // lean_pool's one-time warm-up; or the first manual round
    } else {
      try {
        core->maintainer_ = std::thread([c = core.get()] { c->maintainer_loop(); });
      } catch (const std::system_error& e) {
        return e.code();
      } catch (const std::bad_alloc&) {  // the thread's state
        return std::make_error_code(std::errc::not_enough_memory);
      }
    }
    return core.release();
  }

  static config_problem check(const pool_config<Conn>& config, pool_kind kind) noexcept {
    const config_problem problem = validate(config);
    if (problem != config_problem::none || kind == pool_kind::standard) return problem;
    if (config.max_idle_time != std::chrono::nanoseconds::zero())
      return config_problem::idle_tracking_on_lean_pool;
    if (config.health_check) return config_problem::health_check_on_lean_pool;
    if (config.max_lifetime != std::chrono::nanoseconds::zero()) return config_problem::lifetime_on_lean_pool;
    if (config.keepalive_interval != std::chrono::nanoseconds::zero()) {
      return config_problem::keepalive_on_lean_pool;
    }
    if (config.leak_threshold != std::chrono::nanoseconds::zero())
      return config_problem::leak_detection_on_lean_pool;
    return config_problem::none;
  }

  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;

  // Only create() (on failure) and release_ref() destroy a core; the handle calls destroy_handle().
  ~pool_core() {
    if (maintainer_.joinable()) {
      stop_maintainer();
      maintainer_.join();
    }
    stop_dialers();  // none were started unless the handle existed, which stopped them already
  }

  // ---- get ---------------------------------------------------------------------------------

  // `where` is recorded only with leak detection on (it is unused, and optimised away, otherwise).
  [[gnu::always_inline]] result<lease_type> acquire(clock::time_point deadline, acquire_mode mode,
                                                    const std::stop_token* stop,
                                                    source_location where) noexcept {
    // The fast path's connection ran a user check and failed it (scan_idle()). A plain value, not
    // an out-parameter of hand_out(): address-taken, it cost a store on the fast path.
    bool user_checked = false;
    // Fast path: the slot this thread returned last, unless someone waits (waiters go first).
    // relaxed: a fairness heuristic; INV6 does not depend on this load.
    // A stop already requested wins over an idle connection: acquire_slow() reports it.
    // fair_waiters = false masks the waiter count out: arrivals may barge past the line.
    if ((waiters_.load(std::memory_order_relaxed) & waiter_gate_) == 0 &&
        (stop == nullptr || !stop->stop_requested())) {
      if (thread_hint_pool[hint_way_] == id_) {
        slot_type& s = *static_cast<slot_type*>(thread_hint_slot[hint_way_]);
        std::uint64_t w = s.state.load(std::memory_order_relaxed);  // relaxed: the CAS decides
        const std::uint64_t owned = w + word::idle_to_leased;
        // acquire on success: pairs with the release CAS in make_idle() that published the
        // connection. The test excludes every flag: a slot in transit or closed is not ours.
        if ((w & ~word::generation_mask) == word::idle &&
            s.state.compare_exchange_strong(w, owned, std::memory_order_acquire, std::memory_order_relaxed))
            [[likely]] {
          if (needs_no_check(s)) [[likely]] {
            count_borrow(s);
            // Built in place: a lease_type temporary would be moved from and then destroyed, and
            // its destructor, too large to inline, would be a call on every get.
            return result<lease_type>(std::in_place, lease_key<Conn>{}, this, &*s.conn, &s, owned);
          }
          checked_lease checked = hand_out(index_of(s), owned, where);
          if (checked.lease) return std::move(checked.lease);
          user_checked = checked.user_checked;
        }
      }
    }
    // Built apart and moved: the fast path then never takes the result's address, so after
    // inlining the compiler keeps it in registers.
    result<lease_type> slow = acquire_slow(deadline, mode, stop, where, user_checked);
    return result<lease_type>(std::move(slow));
  }

  // ---- put ---------------------------------------------------------------------------------

  // Called by lease::release() and ~lease(): puts the connection back, LIFO for this thread.
  // `owned` is the slot's word as lent (leased, no flags).
  [[gnu::always_inline]] put_status put_back(void* slot, std::uint64_t owned) noexcept {
    slot_type& s = *static_cast<slot_type*>(slot);
    thread_hint_pool[hint_way_] = id_;
    thread_hint_slot[hint_way_] = slot;
    if (put_work_ != put_work::none) {
      if (put_work_ == put_work::hooks) [[unlikely]]
        return put_back_hooked(s, owned);
      // relaxed: published by the release CAS below (or by a grant's publication).
      s.idle_since.store(tick_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    // A connection its borrower closed (lease->close(), socket::release()) must not go back idle:
    // its CAS expects `owned | 1`, busy in our generation, which the word cannot be while the slot
    // is ours, so the CAS fails and put_back_slow() closes it (error; or the flags' reason). Folded into the
    // CAS's operand, this costs the put 1 instruction where a branch of its own cost 3 (for a Conn with
    // is_open() only; none for any other).
    static_assert((word::leased | 1) == word::busy, "the expected word of a closed connection");
    std::uint64_t w = owned | static_cast<std::uint64_t>(returned_closed(*s.conn));
    const std::uint64_t idle = owned - (word::leased - word::idle);  // same generation, no flags
    // idle has no flags, so + is | here; as an add the compiler folds it into one lea from owned.
    const std::uint64_t idle_in_transit = idle + word::transit;
    // Publish the slot as idle in transit. seq_cst: INV6; its release part publishes the
    // connection and idle_since. No look at waiters_ first: one who waits is served from transit
    // below, in the same order as by make_idle_slow()'s grant (nobody can take a slot in transit),
    // and the look cost the hot path 3 instructions, which INV12's flag test (below) now uses.
    if (s.state.compare_exchange_strong(w, idle_in_transit, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) [[likely]] {
      NETPOOL_SYNC_POINT("put_back:idle_in_transit");  // nothing, outside the race tests
      // seq_cst: INV12, after our CAS, with a scanner's unlist() (then its reload of the word). On
      // the slot's own line, which the CAS has just written: no miss, no shared write.
      if (s.unlisted.load(std::memory_order_seq_cst) != 0) [[unlikely]]
        relist_returned(s);
      if (waiters_.load(std::memory_order_seq_cst) == 0) [[likely]] {  // seq_cst: INV6
        // release: clears transit; our last access to the core (INV5).
        s.state.store(idle, std::memory_order_release);
        return put_status::ok;
      }
      regrant_from_transit(index_of(s), idle_in_transit, waiter::granted_connection);
      return put_status::ok;
    }
    return put_back_slow(s, owned);
  }

  // Called by lease::discard(): closes the connection and frees its slot.
  put_status discard(void* slot, std::uint64_t owned) noexcept {
    slot_type& s = *static_cast<slot_type*>(slot);
    const std::uint32_t i = index_of(s);
    // acquire: pairs with the release that made us the owner (it is our own write, or a grant's).
    const std::uint64_t current = s.state.load(std::memory_order_acquire);
    if ((current & ~word::flag_mask) != owned) return put_status::stale;
    // A leaked lease is reported again when it comes back, whichever way (not after close(): see
    // return_hooks).
    if (lent_) report_if_leaked(i, owned);
    close_conn(s, close_reason::error);
    release_slot(i);
    return put_status::ok;
  }

  // ---- close and lifetime ------------------------------------------------------------------

  // Idempotent. Fails every waiter at once, closes idle connections, marks every slot so that
  // connections returned later are closed (INV4), and asks the maintainer to stop. Returns once the
  // return hooks under way on other threads have ended, unless called from inside one (return_hooks).
  void close() noexcept {
    // Every slot is flagged before closed_ is set: the fast path never reads closed_, and its CAS
    // (a word without flags) would otherwise lend a connection from a slot not yet flagged while
    // is_closed() already said true (review 19). Meanwhile a put's CAS fails on the flag and
    // closes its connection (pool_closed a moment before is_closed() says so); a get finds
    // nothing to take or reserve and queues, to be failed below.
    for (std::uint32_t i = 0; i < capacity_; ++i) (void)add_flags(i, word::closed);
    // seq_cst: a getter that reads closed_ == false afterwards must find the waiter queue open and
    // will be failed below; one that reads true returns pool_closed.
    closed_.store(true, std::memory_order_seq_cst);
    stop_maintainer();

    waiter* failed = nullptr;
    {
      std::lock_guard lock(wait_mutex_);
      while (waiter* w = queue_.pop_front()) {
        waiters_.fetch_sub(1, std::memory_order_seq_cst);  // INV8
        w->next = failed;  // reuse the link for a private list: the node is ours until published
        failed = w;
      }
    }
    while (failed != nullptr) {
      waiter* w = failed;
      failed = w->next;
      publish(*w, waiter::pool_closed);
    }

    // The analyzer (clang-analyzer-cplusplus.NewDelete) assumes that the release_ref() in
    // retire_after_close() can free the core mid-loop. It runs only for an orphaned slot, and no
    // slot is orphaned while the handle that calls close() exists (INV9).
    // NOLINTBEGIN(clang-analyzer-cplusplus.NewDelete)
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // acquire: pairs with make_idle()'s release CAS (the connection we may close). Every slot is
      // flagged, so none becomes idle any more: an idle one now stays so until it is closed here
      // (or by a concurrent close(): close_idle_after_close()'s CAS picks one of us).
      const std::uint64_t w = slots_[i].state.load(std::memory_order_acquire);
      if (word::phase(w) == word::idle) close_idle_after_close(i, w);
    }
    // NOLINTEND(clang-analyzer-cplusplus.NewDelete)
    wait_for_return_hooks();
  }

  [[nodiscard]] bool is_closed() const noexcept {
    return closed_.load(std::memory_order_acquire);  // acquire: pairs with close()'s store
  }

  // Drain: close(), then wait until every lent connection has come back (and been closed) and
  // every dial in flight has ended, or `deadline`. Returns how many were still lent at the end.
  // Polls (1 ms, growing to 10 ms): a shutdown path, not a hot one.
  std::size_t close_and_drain(clock::time_point deadline) noexcept {
    close();
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      const pool_stats now = stats();
      if ((now.in_use == 0 && now.dialing == 0) || clock::now() >= deadline) return now.in_use;
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(10));
    }
  }

  [[nodiscard]] std::size_t max_size() const noexcept { return limit_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t min_size() const noexcept { return min_.load(std::memory_order_relaxed); }

  // Growing lets waiters dial at once; shrinking closes surplus idle connections now and dooms
  // surplus lent ones (closed when they come back, never while in use).
  std::error_code set_max_size(std::size_t n) noexcept {
    std::lock_guard lock(resize_mutex_);
    if (is_closed()) return errc::pool_closed;
    if (n == 0 || n > capacity_ || n < min_size()) return errc::invalid_config;
    // seq_cst: like INV7, a waiter raises waiters_ then tries reserve_count() (seq_cst), and we
    // store the new limit then load waiters_: one of us sees the other, so no waiter sleeps
    // through a growth.
    const std::size_t old = limit_.exchange(n, std::memory_order_seq_cst);
    if (n > old) {
      for (std::size_t room = n - old; room > 0 && waiters_.load(std::memory_order_seq_cst) != 0; --room) {
        if (!start_dial_for_waiter()) break;  // tokens busy: their end_dial() pumps the rest
      }
    } else if (n < old) {
      // Not all covered (dials in flight): their after_dial() trims it (lean_pool) or wakes the
      // maintainer, whose rounds then come back until it is.
      (void)shrink_to_max_size();
    }
    return {};
  }

  // The maintainer (pool) dials up to the new minimum, or lets surplus idle ones age out.
  std::error_code set_min_size(std::size_t n) noexcept {
    std::lock_guard lock(resize_mutex_);
    if (is_closed()) return errc::pool_closed;
    if (n > max_size()) return errc::invalid_config;
    min_.store(n, std::memory_order_relaxed);  // relaxed: read as a target by the maintainer
    wake_maintainer();
    return {};
  }

  // The pool handle is going away: stop the maintainer, close, and hand the core's lifetime to the
  // leases still out (INV9). Must not race with any other call through the handle.
  void destroy_handle() noexcept {
    stop_maintainer();
    if (maintainer_.joinable()) maintainer_.join();
    close();
    stop_dialers();  // after close(): their dials end at once or with the connection closed
    // The analyzer (clang-analyzer-cplusplus.NewDelete) assumes a release_ref() below can free the
    // core mid-loop; each follows a fetch_add of its own, and the handle's reference is dropped
    // only after the loop.
    // NOLINTBEGIN(clang-analyzer-cplusplus.NewDelete)
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // relaxed: the reference is published by the orphan bit's RMW below, which the slot's owner
      // reads with acquire before dropping the reference.
      refs_.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t before = add_flags(i, word::orphan | word::closed);
      const std::uint64_t p = word::phase(before);
      if (p != word::leased && p != word::busy) release_ref();  // nobody will come back for it
    }
    // NOLINTEND(clang-analyzer-cplusplus.NewDelete)
    release_ref();
  }

  // ---- observation -------------------------------------------------------------------------

  [[nodiscard]] pool_stats stats() const noexcept {
    pool_stats s;
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // relaxed: a best-effort snapshot (documented); nothing is read through the word.
      switch (word::phase(slots_[i].state.load(std::memory_order_relaxed))) {
        case word::idle:
          ++s.idle;
          break;
        case word::leased:
          ++s.in_use;
          break;
        case word::busy:
          ++s.dialing;
          break;
        default:
          break;
      }
      s.gets_immediate += slots_[i].borrows.load(std::memory_order_relaxed);
    }
    s.active = s.idle + s.in_use + s.dialing;
    // relaxed, all of them: independent counters, documented as a best-effort snapshot.
    s.max = max_size();
    s.min = min_size();
    s.waiters = waiters_.load(std::memory_order_relaxed);
    s.gets_waited = counters_.gets_waited.load(std::memory_order_relaxed);
    // Served at once (the slots' borrows) and after waiting: disjoint counters (lend_tracked()),
    // so that each total only grows from one call to the next.
    s.gets = s.gets_immediate + counters_.waited_served.load(std::memory_order_relaxed);
    s.wait_time = std::chrono::nanoseconds(counters_.wait_ns.load(std::memory_order_relaxed));
    s.max_wait = std::chrono::nanoseconds(counters_.max_wait_ns.load(std::memory_order_relaxed));
    for (std::size_t b = 0; b < wait_buckets; ++b) {
      s.wait_histogram[b] = counters_.wait_histogram[b].load(std::memory_order_relaxed);
    }
    s.timeouts = counters_.timeouts.load(std::memory_order_relaxed);
    s.cancellations = counters_.cancellations.load(std::memory_order_relaxed);
    s.leaks = counters_.leaks.load(std::memory_order_relaxed);
    s.dials = counters_.dials.load(std::memory_order_relaxed);
    s.dial_failures = counters_.dial_failures.load(std::memory_order_relaxed);
    // Its own counter, not dials - dial_failures: dials counts a dial as it starts, so the
    // difference counted one in flight as a success and went down again if it failed.
    s.dials_ok = counters_.dials_ok.load(std::memory_order_relaxed);
    s.fast_failures = counters_.fast_failures.load(std::memory_order_relaxed);
    for (std::size_t r = 0; r < close_reason_count; ++r) {
      s.closed[r] = counters_.closed[r].load(std::memory_order_relaxed);
    }
    const auto closed = [&s](close_reason r) { return s.closed[static_cast<std::size_t>(r)]; };
    s.closed_idle = closed(close_reason::idle);
    s.closed_health = closed(close_reason::health);
    s.closed_error = closed(close_reason::error);
    s.closed_pool = closed(close_reason::pool_closed);
    s.closed_lifetime = closed(close_reason::lifetime);
    s.closed_reset = closed(close_reason::reset);
    s.closed_hook = closed(close_reason::hook);
    s.closed_resize = closed(close_reason::resize);
    s.closed_reclaimed = closed(close_reason::reclaimed);
    return s;
  }

  // The error of the most recent failed dial (empty if none failed yet).
  [[nodiscard]] std::error_code last_dial_error() noexcept {
    std::lock_guard lock(dial_mutex_);
    return last_dial_error_;
  }

  [[nodiscard]] std::size_t idle_count() const noexcept {
    std::size_t n = 0;
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // relaxed: best effort, like stats().
      if (word::phase(slots_[i].state.load(std::memory_order_relaxed)) == word::idle) ++n;
    }
    return n;
  }

  // keyed_pool's get, which looked for a connection outside acquire_or_wait()
  // (keyed_state::try_get_until()) and found none once its deadline had passed: it times out
  // there, counted as a get of this pool that timed out, as acquire_or_wait() counts its own.
  std::error_code time_out_get() noexcept {
    counters_.timeouts.fetch_add(1, std::memory_order_relaxed);  // a statistic
    return errc::timeout;
  }

  // Whether a get's miss path could take an idle connection now: one that is idle, out of
  // transit and listed. An idle slot that is not is in the hands of its returner, who has yet to
  // list it (INV12 (a)), or of a scanner, who has cleared its bit and will take it itself (b): no
  // other get can take it. keyed_pool asks this of a key whose dial waits for a token
  // (keyed_state::has_idle()). It asked len(), which counts those too: such a connection ended
  // the dial (dial_not_needed), the get found nothing and dialed again, round after round, while
  // that thread was descheduled, until the get gave up with dial_not_needed (seen in CI).
  // It walks the listed bits, as take_next_idle() does, and reads only those slots' words.
  [[nodiscard]] bool has_takeable_idle() const noexcept {
    for (std::uint32_t t = 0; t < stripes(); ++t) {
      // relaxed, all: a hint, polled again by the waiting dial (keyed_budget::take()).
      for (std::uint32_t j = first_listed_word<std::memory_order_relaxed>(t, 0); j < stripe_words_;
           j = first_listed_word<std::memory_order_relaxed>(t, j + 1)) {
        for (std::uint64_t bits = listed_[t * listed_stride_ + j].load(std::memory_order_relaxed); bits != 0;
             bits &= bits - 1) {
          const std::uint64_t w = slots_[listed_slot(j, bits)].state.load(std::memory_order_relaxed);
          if (word::phase(w) == word::idle && (w & word::flag_mask) == 0) return true;
        }
      }
    }
    return false;
  }

 private:
  struct alignas(cache_line) slot_type {
    std::atomic<std::uint64_t> state{0};
    // INV12: 1 when this slot's bit in listed_ may be clear while it holds a connection, so that
    // whoever next makes it idle must set the bit again (relist()). On the slot's own line: the
    // put that reads it has just written `state`.
    std::atomic<std::uint8_t> unlisted{0};
    // 1 while the slot's owner runs its return hooks (return_hooks, below), which close() waits for.
    // In the padding after `unlisted`: the slot stays one line.
    std::atomic<std::uint32_t> returning{0};
    // Tick at which the connection last became idle (standard pool). Written by the owner before
    // the release CAS that publishes the slot; read by the next owner or the maintainer after an
    // acquire on the same word. relaxed atomic only so that stats-free readers are race-free.
    std::atomic<std::uint64_t> idle_since{0};
    // Connections handed out from this slot. Written only by the owner (plain load+store, no RMW:
    // uncontended by INV1), read by stats().
    std::atomic<std::uint64_t> borrows{0};
    // Tick at which the connection must go (max_lifetime, jittered); set by the dialer, read by the
    // owner and the maintainer after acquiring the slot word (owner-written, as idle_since).
    std::atomic<std::uint64_t> expires_at{0};
    // The connection's number in dial order (dial_seq_): reset() closes only those numbered
    // before it started, not the replacements dialed meanwhile. Written by the dialer (owner).
    std::atomic<std::uint64_t> born{0};
    // Why `doomed` was set, tagged with the lease it was set for: the lease's generation bits (as
    // in `state`) | the close_reason. Written before the flag's release CAS, read after the
    // owner's failed CAS (acquire). See doom_leased() for who may overwrite it.
    std::atomic<std::uint64_t> doom_reason{0};
    std::optional<Conn> conn;  // engaged while the slot holds a connection (INV1)
  };
  static_assert(alignof(slot_type) == cache_line);

  std::uint32_t index_of(const slot_type& s) const noexcept {
    return static_cast<std::uint32_t>(&s - slots_.get());
  }

  // Slow-path counters, written with relaxed RMWs off the hot path; read by stats().
  struct alignas(cache_line) slow_counters {
    std::atomic<std::uint64_t> gets_waited{0}, waited_served{0}, wait_ns{0}, max_wait_ns{0};
    std::atomic<std::uint64_t> timeouts{0}, cancellations{0}, leaks{0};
    std::atomic<std::uint64_t> dials{0}, dials_ok{0}, dial_failures{0}, fast_failures{0};
    std::array<std::atomic<std::uint64_t>, wait_buckets> wait_histogram{};
    std::array<std::atomic<std::uint64_t>, close_reason_count> closed{};
  };

  pool_core(pool_config<Conn> config, pool_kind kind)
      : id_(next_pool_id()),
        hint_way_(static_cast<std::uint32_t>(id_ % hint_ways)),
        capacity_(
            static_cast<std::uint32_t>(config.max_size_limit != 0 ? config.max_size_limit : config.max_size)),
        lean_(kind == pool_kind::lean),
        track_idle_(kind == pool_kind::standard && config.max_idle_time > std::chrono::nanoseconds::zero()),
        has_health_check_(static_cast<bool>(config.health_check)),
        probes_(kind == pool_kind::standard && is_probeable &&
                config.probe_after != std::chrono::nanoseconds::max()),
        checks_every_get_(has_health_check_ || static_cast<bool>(config.on_borrow) ||
                          config.leak_threshold > std::chrono::nanoseconds::zero()),
        checks_on_get_(track_idle_ || probes_ || checks_every_get_),
        stamps_idle_(track_idle_ || probes_),
        fair_(config.fair_waiters),
        waiter_gate_(fair_ ? ~std::uint32_t{0} : 0),
        put_work_(config.on_return || config.leak_threshold > std::chrono::nanoseconds::zero()
                      ? put_work::hooks
                  : stamps_idle_ ? put_work::stamp
                                 : put_work::none),
        max_idle_ticks_(track_idle_ ? to_ticks_ceil(config.max_idle_time) : 0),
        config_(std::move(config)),
        max_connecting_(config_.max_connecting),
        max_dialers_(lean_ || !config_.background_maintenance
                         ? 0
                         : std::min<std::size_t>(config_.max_connecting, capacity_)),
        probe_ticks_(probes_ ? probe_ticks_of(config_.probe_after) : 0),
        lifetime_ticks_(lean_ ? 0 : to_ticks_or_zero(config_.max_lifetime)),
        keepalive_ticks_(lean_ ? 0 : to_ticks_or_zero(config_.keepalive_interval)),
        leak_ns_(lean_ ? 0 : std::max<std::int64_t>(config_.leak_threshold.count(), 0)),
        uses_tick_(track_idle_ || probes_ || lifetime_ticks_ != 0 || keepalive_ticks_ != 0 || leak_ns_ != 0),
        fast_ticks_(std::min(track_idle_ ? max_idle_ticks_ : no_limit, probes_ ? probe_ticks_ : no_limit)),
        tick_period_(tick_period_of(config_)),
        epoch_(config_.clock ? config_.clock() : clock::now()),
        slots_(new (std::nothrow) slot_type[capacity_]),
        bitmap_words_((capacity_ + 63) / 64),
        stripe_shift_(stripe_shift_for(capacity_)),
        stripe_words_(bitmap_words_),
        listed_stride_(stripe_shift_ == 0
                           ? stripe_words_
                           : (stripe_words_ + words_per_line - 1) / words_per_line * words_per_line),
        listed_storage_(new (std::nothrow) std::atomic<std::uint64_t>[listed_words() + words_per_line - 1]()),
        listed_(line_aligned(listed_storage_.get())),
        summarized_(stripe_words_ > words_per_line),
        summary_words_(summarized_ ? (listed_words() + 63) / 64 : 0),
        listed_summary_(summarized_ ? new (std::nothrow) std::atomic<std::uint64_t>[summary_words_]()
                                    : nullptr),
        free_(new (std::nothrow) std::atomic<std::uint64_t>[bitmap_words_]()),
        lent_(leak_ns_ != 0 ? new (std::nothrow) lent_info[capacity_] : nullptr),
        limit_(config_.max_size),
        min_(config_.min_size),
        jitter_(static_cast<std::uint32_t>(id_ * 2654435761u)),
        jobs_(max_dialers_ != 0 ? new (std::nothrow) dial_job[max_dialers_] : nullptr) {
    if (!free_) return;                                  // create() reports it
    for (std::uint32_t k = 0; k < bitmap_words_; ++k) {  // every slot starts free (INV14)
      const std::uint32_t in_word = std::min<std::uint32_t>(capacity_ - k * 64, 64);
      free_[k].store(in_word == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << in_word) - 1,
                     std::memory_order_relaxed);  // relaxed: published with the core
    }
  }

  void release_ref() noexcept {
    // acq_rel: release our last writes to the core; the thread that drops it to zero acquires
    // everyone's before destroying it (INV9).
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }

  // Out of line: the cold path, and g++ 12's -Wuse-after-free would otherwise flag uses of `this`
  // after an inlined delete on paths that never drop the last reference (e.g. dialer threads,
  // which the handle joins before the orphan sweep gives slots a reference to drop).
  [[gnu::noinline]] void destroy() noexcept { delete this; }

  // Adds `flags` to slot i's word once no transit is in progress (INV5). Returns the word before.
  std::uint64_t add_flags(std::uint32_t i, std::uint64_t flags) noexcept {
    std::atomic<std::uint64_t>& state = slots_[i].state;
    std::uint64_t w = state.load(std::memory_order_acquire);
    for (;;) {
      if ((w & word::transit) != 0) {
        std::this_thread::yield();  // the owner is a few instructions from clearing it
        w = state.load(std::memory_order_acquire);
        continue;
      }
      if ((w & flags) == flags) return w;
      // acq_rel: acquire the owner's writes (the connection) before we may close it; release so
      // that an owner whose CAS now fails sees our flags together with what preceded them.
      if (state.compare_exchange_weak(w, w | flags, std::memory_order_acq_rel, std::memory_order_acquire))
        return w;
    }
  }

  // ---- time ---------------------------------------------------------------------------------

  static constexpr bool is_probeable = requires(const Conn& c) {
    { c.probe() } -> std::same_as<liveness>;
  };
  static constexpr std::uint64_t no_limit = ~std::uint64_t{0};

  static std::uint64_t to_ticks_or_zero(std::chrono::nanoseconds d) noexcept {
    return d > std::chrono::nanoseconds::zero() ? to_ticks_ceil(d) : 0;
  }
  // probe_after 0 means every borrow: a connection idle 0 ticks still fails `< 0`.
  static std::uint64_t probe_ticks_of(std::chrono::nanoseconds d) noexcept {
    return d > std::chrono::nanoseconds::zero() ? to_ticks_ceil(d) : 0;
  }
  // How often the maintainer advances the tick: fine enough for the finest time-based feature.
  static std::chrono::nanoseconds tick_period_of(const pool_config<Conn>& c) noexcept {
    using std::chrono::nanoseconds;
    nanoseconds p = std::chrono::seconds(1);
    if (c.max_idle_time > nanoseconds::zero()) p = std::min(p, c.max_idle_time / 8);
    if (is_probeable && c.probe_after > nanoseconds::zero() && c.probe_after != nanoseconds::max()) {
      p = std::min(p, c.probe_after / 4);
    }
    if (c.max_lifetime > nanoseconds::zero()) {
      // A quarter of the jitter window, so that a cohort's spread survives the rounding. Without
      // jitter there is no spread to keep: an eighth of the lifetime, as for max_idle_time (the
      // 1 % floor alone asked for 1 ms rounds for any lifetime under 400 ms).
      if (c.lifetime_jitter > 0.0) {
        const double window = std::max(c.lifetime_jitter, 0.01) * static_cast<double>(c.max_lifetime.count());
        p = std::min(p, nanoseconds(static_cast<std::int64_t>(window / 4)));
      } else {
        p = std::min(p, c.max_lifetime / 8);
      }
    }
    if (c.keepalive_interval > nanoseconds::zero()) p = std::min(p, c.keepalive_interval / 4);
    if (c.leak_threshold > nanoseconds::zero()) p = std::min(p, c.leak_threshold / 4);
    return std::max<nanoseconds>(p, std::chrono::milliseconds(1));
  }

  static std::uint64_t to_ticks_ceil(std::chrono::nanoseconds d) noexcept {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
    return static_cast<std::uint64_t>(std::max<std::int64_t>(ms, 1));
  }
  std::uint64_t ticks_at(clock::time_point t) const noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(t - epoch_).count());
  }

  // The pool's own clock (config.clock, for deterministic tests) drives idle ages, the tick and
  // backoff. Deadlines given by callers and dial deadlines are always steady_clock.
  clock::time_point pool_now() const noexcept { return config_.clock ? config_.clock() : clock::now(); }
  std::int64_t pool_now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(pool_now() - epoch_).count();
  }

  // ---- taking idle connections --------------------------------------------------------------

  // Slot s (ours, just taken) may be lent without hand_out(): no check runs on every get, and it
  // was idle for less than every time-based check's threshold. The fast path's test, and the lean
  // miss path's (which adds max_lifetime).
  [[gnu::always_inline]] bool needs_no_check(const slot_type& s) const noexcept {
    return !checks_on_get_ || (!checks_every_get_ && fresh(s));
  }
  // Idle for less than every time-based check's threshold (max_idle_time, probe_after): lend it
  // without looking. idle_since was published to us by the acquire that made us the owner; the
  // tick is a coarse timestamp (relaxed).
  [[gnu::always_inline]] bool fresh(const slot_type& s) const noexcept { return idle_ticks(s) < fast_ticks_; }
  // always_inline: on the Standard pool's get path (via fresh()); g++ kept it out of line.
  [[gnu::always_inline]] std::uint64_t idle_ticks(const slot_type& s) const noexcept {
    return ticks_since(tick_.load(std::memory_order_relaxed), s.idle_since.load(std::memory_order_relaxed));
  }

  // We own slot i (leased, word `owned`) with a pooled connection: check it, then lend it; or
  // close it, free the slot, and return an empty lease. `user_checked`: see passes_checks().
  struct checked_lease {
    lease_type lease;
    bool user_checked = false;
  };
  [[gnu::noinline]] checked_lease hand_out(std::uint32_t i, std::uint64_t owned, source_location where,
                                           bool after_wait = false) noexcept {
    checked_lease out;
    if (passes_checks(i, out.user_checked)) {
      out.lease = lend_tracked(i, owned, where, after_wait);
    } else {
      release_slot(i);
    }
    return out;
  }

  // Standard pool: is the pooled connection in slot i (ours) still worth lending? If not, it is
  // closed and counted; the caller still owns the (now empty) slot. Sets `user_checked` when it
  // runs user code that may block (the health check, on_borrow): scan_idle() starts no more of
  // those past the get's deadline.
  bool passes_checks(std::uint32_t i, bool& user_checked) noexcept {
    slot_type& s = slots_[i];
    // Past max_idle_time, but kept if closing it would leave fewer than min_size open: the
    // maintainer keeps those on purpose (relaxed: a count, as in reap_idle()).
    const std::uint64_t idle = (track_idle_ || probes_) ? idle_ticks(s) : 0;
    if (track_idle_ && idle >= max_idle_ticks_ && active_.load(std::memory_order_relaxed) > min_size()) {
      close_conn(s, close_reason::idle);
      return false;
    }
    if (lifetime_ticks_ != 0 &&
        tick_.load(std::memory_order_relaxed) >= s.expires_at.load(std::memory_order_relaxed)) {
      close_conn(s, close_reason::lifetime);
      return false;
    }
    if (probes_ && idle >= probe_ticks_ && !alive(*s.conn)) {
      close_conn(s, close_reason::health);
      return false;
    }
    if (has_health_check_ || config_.on_borrow) user_checked = true;
    if (has_health_check_ && !healthy(*s.conn)) {
      close_conn(s, close_reason::health);
      return false;
    }
    if (config_.on_borrow && !hook_accepts(config_.on_borrow, *s.conn)) {
      close_conn(s, close_reason::hook);
      return false;
    }
    return true;
  }

  [[gnu::always_inline]] static void count_borrow(slot_type& s) noexcept {
    // relaxed load+store: only the owner writes borrows (INV1); no RMW needed.
    s.borrows.store(s.borrows.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // Lends slot i (ours, leased: word `owned`) off the fast path, recording where and when for leak
  // detection. `after_wait`: the get blocked first, and is counted in waited_served instead of the
  // slot's borrows, so that stats() reads gets served at once (the borrows) and after waiting as
  // two disjoint counters, each of which only grows (a difference of the two, read apart, could go
  // down). The thread hint is set when the lease comes back (put_back), which is what LIFO needs.
  lease_type lend_tracked(std::uint32_t i, std::uint64_t owned, source_location where,
                          bool after_wait) noexcept {
    slot_type& s = slots_[i];
    if (lent_) record_lent(i, owned, where);
    if (after_wait) {
      counters_.waited_served.fetch_add(1, std::memory_order_relaxed);  // relaxed: a counter
    } else {
      count_borrow(s);
    }
    return lease_type(lease_key<Conn>{}, this, &*s.conn, &s, owned);
  }

  // Destroys slot s's connection (ours, INV1) for `why`: tells on_close, then counts it. Every
  // connection the pool closes passes here, so on_close sees each exactly once.
  void close_conn(slot_type& s, close_reason why) noexcept {
    notify_close(*s.conn, why);
    s.conn.reset();
  }
  // For a connection not (yet) in a slot: on_connect refused it.
  void notify_close(Conn& conn, close_reason why) noexcept {
    if (config_.on_close) {
      try {
        config_.on_close(conn, why);
      } catch (...) {  // a notification: its failure changes nothing
      }
    }
    counters_.closed[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
  }

  // on_borrow / on_return: false or a throw refuses the connection.
  static bool hook_accepts(const std::function<bool(Conn&)>& hook, Conn& conn) noexcept {
    try {
      return hook(conn);
    } catch (...) {
      return false;
    }
  }

  static bool alive(Conn& conn) noexcept {
    if constexpr (is_probeable) {
      try {  // no cost on the path that does not throw (table-based unwinding)
        return conn.probe() == liveness::alive;
      } catch (...) {
        return false;  // a user type's probe that throws condemns the connection, as a health check does
      }
    } else {
      return true;
    }
  }

  // The check's deadline is its own (health_check_timeout in config.hpp says why it is not the
  // get's); a one-argument check ignores it, and reading the clock for one would be wasted.
  bool healthy(Conn& conn) noexcept {
    try {
      const clock::time_point deadline = config_.health_check.takes_deadline()
                                             ? deadline_after(config_.health_check_timeout)
                                             : clock::time_point{};
      return config_.health_check(conn, deadline);
    } catch (...) {
      return false;  // a throwing check condemns the connection, never the caller
    }
  }

  // Scans every slot for an idle connection. Waits out transit on idle slots so that a waiter's
  // re-scan cannot miss a connection being returned right now (INV6).
  // A connection that fails its checks is closed and the scan goes on, but once this get has run
  // one user check (`user_checked`, kept across the get's scans), none starts past `deadline`: a
  // slow check must not stretch a get_for() by one check per idle connection. The first one runs
  // whatever the deadline, so that get_for(0) still takes an idle connection.
  lease_type scan_idle(clock::time_point deadline, source_location where, bool& user_checked,
                       bool after_wait) noexcept {
    for (std::uint32_t from = 0;;) {
      if (checks_over(user_checked, deadline)) return {};
      const auto [i, mine] = take_next_idle(from);  // moves `from` past the slot it takes
      if (i == capacity_) return {};
      checked_lease checked = hand_out(i, mine, where, after_wait);
      if (checked.lease) return std::move(checked.lease);
      user_checked = user_checked || checked.user_checked;
    }
  }

  // In its scan (scan_idle()), a get that has run one user check starts no other past its deadline.
  // (A connection handed to it in line is still checked, but it queued before its deadline.)
  static bool checks_over(bool user_checked, clock::time_point deadline) noexcept {
    return user_checked && clock::now() >= deadline;
  }

  // The first word of stripe t, at index j or later, with a bit set; stripe_words_ if none. The
  // full walk reads every stripe's words, and on an exhausted pool nearly all of them are 0 (a get
  // about to wait, try_get(), has_takeable_idle()): so a line of 8 words per branch, not a branch
  // per word. Word by word up to the next line boundary first (each stripe starts a line: the
  // array is line-aligned and a stride of several stripes a whole number of lines), so that a
  // walk resumed mid-line, or through a run of listed words, reads each word once here, not a
  // line from each. Every word it passes over was loaded with `Order` and seen 0, as a walk a word
  // at a time would have seen it. The caller loads the word it returns again: a later look, which
  // may find its bits cleared meanwhile, as any look after this one could.
  template <std::memory_order Order>
  std::uint32_t first_listed_word(std::uint32_t t, std::uint32_t j) const noexcept {
    const std::atomic<std::uint64_t>* const words = listed_ + std::size_t{t} * listed_stride_;
    const std::uint32_t end = stripe_words_;  // a local: the atomic loads make the compiler reload members
    for (; j < end && j % words_per_line != 0; ++j) {
      if (words[j].load(Order) != 0) return j;
    }
    for (; j + words_per_line <= end; j += words_per_line) {
      const std::atomic<std::uint64_t>* const line = words + j;
      std::uint64_t any = 0;
      // Unrolled by hand (g++ 12 kept a loop: 5 instructions a word); a comma fold, so that
      // the loads stay in order.
      [&]<std::size_t... K>(std::index_sequence<K...>) {
        ((any |= line[K].load(Order)), ...);
      }
      (std::make_index_sequence<words_per_line>{});
      if (any != 0) break;
    }
    while (j < end && words[j].load(Order) == 0) ++j;
    return j;
  }

  // Takes the first idle slot listed at walk position `from` or later, and sets `from` past it.
  // A walk position is a stripe's number times its bits, plus a slot's index: stripe by stripe
  // from 0, lowest slot first in each, so that the slots past the ones in use stay idle long enough
  // for max_idle_time to close them. Waits out transit on idle slots so that a waiter's re-scan
  // cannot miss a connection being returned right now (INV6). Only listed slots are looked at
  // (INV12). Returns its index and new (leased) word, or capacity_ when there is none.
  std::pair<std::uint32_t, std::uint64_t> take_next_idle(std::uint32_t& from) noexcept {
    const std::uint32_t stripe_bits = stripe_words_ * 64;
    for (std::uint32_t t = from / stripe_bits; t < stripes(); ++t) {
      const std::uint32_t start = t == from / stripe_bits ? from % stripe_bits : 0;
      // seq_cst, here and in first_listed_word(): after a waiter's seq_cst increment of waiters_,
      // these loads must not move before it; and in INV12's single order with relist()'s RMW (INV6).
      for (std::uint32_t j = first_listed_word<std::memory_order_seq_cst>(t, start / 64); j < stripe_words_;
           j = first_listed_word<std::memory_order_seq_cst>(t, j + 1)) {
        std::uint64_t bits = listed_[t * listed_stride_ + j].load(std::memory_order_seq_cst);
        if (j == start / 64) bits &= ~std::uint64_t{0} << (start % 64);
        for (; bits != 0; bits &= bits - 1) {
          const std::uint32_t i = listed_slot(j, bits);
          if (const std::uint64_t mine = take_listed(i, t); mine != not_taken) {
            from = t * stripe_bits + i + 1;
            return {i, mine};
          }
        }
      }
    }
    return {capacity_, 0};
  }
  // Walk positions: at most stripes * stripe_words_ * 64, under 8 * (max_supported + 64).
  static_assert(pool_config<Conn>::max_supported <= (std::uint64_t{1} << 28), "walk positions are 32-bit");

  // The lean miss path's walk: the lowest idle slot of this CPU's stripe (home_stripe()), else of
  // the next stripe, and so on; through the summary (INV13) in a pool that has one, so that only
  // words whose summary bit is set are read. It may miss a connection listed in a word whose
  // summary bit is in flight (set or cleared this instant); its caller then goes round
  // acquire_or_wait(), whose full walk does not.
  std::pair<std::uint32_t, std::uint64_t> take_lowest_idle() noexcept {
    const std::uint32_t home = home_stripe();
    for (std::uint32_t n = 0; n < stripes(); ++n) {
      const std::uint32_t t = (home + n) & stripe_mask();
      const auto [i, mine] =
          summarized_ ? take_lowest_idle_in_summarized_stripe(t) : take_lowest_idle_in_stripe(t);
      if (i != capacity_) return {i, mine};
    }
    NETPOOL_SYNC_POINT("take_lowest_idle:none");
    return {capacity_, 0};
  }

  std::pair<std::uint32_t, std::uint64_t> take_lowest_idle_in_stripe(std::uint32_t t) noexcept {
    for (std::uint32_t j = 0; j < stripe_words_; ++j) {
      // seq_cst: as in take_next_idle().
      for (std::uint64_t bits = listed_[t * listed_stride_ + j].load(std::memory_order_seq_cst); bits != 0;
           bits &= bits - 1) {
        const std::uint32_t i = listed_slot(j, bits);
        if (const std::uint64_t mine = take_listed(i, t); mine != not_taken) return {i, mine};
      }
    }
    return {capacity_, 0};
  }

  std::pair<std::uint32_t, std::uint64_t> take_lowest_idle_in_summarized_stripe(std::uint32_t t) noexcept {
    const std::uint32_t first = t * listed_stride_;  // stripe t's words: [first, first + stripe_words_)
    for (std::uint32_t g = first / 64; g * 64 < first + stripe_words_; ++g) {
      // relaxed: a hint (above); the word loads below are seq_cst, as in take_next_idle(). Padding
      // words past a stripe's stripe_words_ are never listed, so their summary bits stay clear;
      // only the words of earlier stripes sharing summary word g are masked off.
      std::uint64_t words = listed_summary_[g].load(std::memory_order_relaxed);
      if (g * 64 < first) words &= ~std::uint64_t{0} << (first - g * 64);
      for (; words != 0; words &= words - 1) {
        const std::uint32_t k = g * 64 + static_cast<std::uint32_t>(std::countr_zero(words));
        if (k >= first + stripe_words_) return {capacity_, 0};  // the next stripe's
        for (std::uint64_t bits = listed_[k].load(std::memory_order_seq_cst); bits != 0; bits &= bits - 1) {
          const std::uint32_t i = listed_slot(k - first, bits);
          if (const std::uint64_t mine = take_listed(i, t); mine != not_taken) return {i, mine};
        }
      }
    }
    return {capacity_, 0};
  }

  // The stripe this thread's puts list slots in and its miss walks try first: its CPU's, so that
  // threads on different CPUs take and return connections in different lines of the bitmap.
  std::uint32_t home_stripe() const noexcept {
    if (stripe_shift_ == 0) return 0;
    if (thread_home_stripe_for_tests >= 0) [[unlikely]]
      return static_cast<std::uint32_t>(thread_home_stripe_for_tests) & stripe_mask();
    return current_cpu() & stripe_mask();
  }

  // One of the slots this thread last took through the walk (thread_walked), if one is idle: taken
  // as the fast path takes its hint, by one CAS from idle with no flag (not closed, not doomed, not
  // in transit) to leased. The slot stays listed or unlisted as it was, as on the fast path: a
  // listed slot may stay listed while lent, and an unlisted one is listed again by our put, which
  // finds its flag set (INV12). Returns its index and leased word, or capacity_ when none is idle.
  std::pair<std::uint32_t, std::uint64_t> take_walked() noexcept {
    walked_slots& walked = thread_walked[hint_way_];
    if (walked.pool != id_) return {capacity_, 0};
    for (void* entry : walked.slot) {
      if (entry == nullptr) continue;
      slot_type& s = *static_cast<slot_type*>(entry);
      // A slot idle past max_idle_time or probe_after is passed over: taken, it would be closed
      // or probed on this get, where the walk's lowest idle slot is the one most recently used
      // (LIFO). A guess, like the rest: idle_since is read before the slot is ours.
      if (checks_on_get_ && !checks_every_get_ && !fresh(s)) continue;
      std::uint64_t w = s.state.load(std::memory_order_relaxed);  // relaxed: the CAS decides
      const std::uint64_t owned = w + word::idle_to_leased;
      // acquire on success: pairs with the release store that ended the put's transit (put_back(),
      // make_idle_slow()), which published the connection and idle_since.
      if ((w & ~word::generation_mask) == word::idle &&
          s.state.compare_exchange_strong(w, owned, std::memory_order_acquire, std::memory_order_relaxed)) {
        return {index_of(s), owned};
      }
    }
    return {capacity_, 0};
  }

  // Slot i was just taken through the walk: this thread tries it first on its next miss. Replaces
  // the oldest entry; an entry for another pool (same way) starts the list afresh.
  void remember_walked(std::uint32_t i) noexcept {
    walked_slots& walked = thread_walked[hint_way_];
    if (walked.pool != id_) walked = walked_slots{id_, {}, 0};
    void* const slot = &slots_[i];
    for (void* entry : walked.slot) {
      if (entry == slot) return;
    }
    walked.slot[walked.next] = slot;
    walked.next = (walked.next + 1) % walked_slots_per_way;
  }

  // Slot i was listed in stripe t: take it if it is idle; if it is not, unlist it from there
  // (INV12), unless it came back meanwhile, in which case take it after all. Returns the new
  // (leased) word if it is ours, else not_taken. Not a std::optional: returned through memory, its
  // one-byte flag was stored and then read back as part of a wider load, which no store forwarding
  // serves (a stall on every miss).
  static constexpr std::uint64_t not_taken = 0;  // a leased word has phase `leased`: never 0
  static_assert(word::leased != 0);
  std::uint64_t take_listed(std::uint32_t i, std::uint32_t t) noexcept {
    slot_type& s = slots_[i];
    std::uint64_t w = settled_word(s);
    // This thread's own hint, lent through the fast path (which leaves it listed): it comes back
    // to this thread's put soon (LIFO), and unlisting it would cost that put a relist, three
    // RMWs for every burst of gets. Leaving a leased slot listed is allowed (INV12); its line is
    // ours already. Only while leased: a hint slot closed or freed is unlisted like any other.
    // A stale hint (a slot of a pool since destroyed, whose memory we reuse) can match: it
    // only leaves a bit set, which is always allowed. On the first look only: once our unlist()
    // has cleared the bit (below), leaving without the flag would leave the slot with neither,
    // and once its owner returned it through the fast path it would sit idle where no scanner or
    // waiter looks (a stress run's hang: idle 1, waiters 2; HintListingRaceTest).
    if (&s == thread_hint_slot[hint_way_] && word::phase(w) == word::leased) return not_taken;
    for (;;) {
      if (word::phase(w) == word::idle) {
        if ((w & word::flag_mask) != 0) return not_taken;  // closed: nobody takes it any more
        const std::uint64_t mine = word::next_owner(w, word::leased);
        // acquire: pairs with make_idle()'s release CAS (the connection's state).
        if (s.state.compare_exchange_strong(w, mine, std::memory_order_acquire, std::memory_order_relaxed)) {
          unlist_taken(i, t);  // ours now; our put lists it again (INV12)
          return mine;
        }
        // Taken first: look at what it is now.
      } else {
        // Lent, being dialed or checked, or free: off the list. Then look once more: a slot made
        // idle before our unlist() could see our flag must be taken by us (INV12), or a waiter
        // that finds its bit clear would sleep beside an idle connection.
        unlist(i, t);
        // A put that relisted the slot between our flag and our clear (its flag cleared, its bit
        // cleared by us if it listed the slot in stripe t too) would leave it listed nowhere once
        // its owner took it back through the fast path, which looks at neither: look again, and
        // flag it again. seq_cst: after our RMW, which read the relist's RMW if it came first
        // (INV12). (A relist into another stripe leaves the slot listed there: looking again
        // costs nothing but the look.)
        if (s.unlisted.load(std::memory_order_seq_cst) != 0) {
          // seq_cst: after unlist()'s RMW, in INV12's single order with the put's CAS on the word
          // (seq_cst too: release alone would not order its later load of the flag).
          const std::uint64_t now = s.state.load(std::memory_order_seq_cst);
          if (word::phase(now) != word::idle) return not_taken;
        }
      }
      w = settled_word(s);
    }
  }

  // Slot s's word, once no transit on an idle slot is in progress. seq_cst: INV6 (see
  // take_next_idle()) and INV12 (the reload after unlist()).
  std::uint64_t settled_word(slot_type& s) noexcept {
    std::uint64_t w = s.state.load(std::memory_order_seq_cst);
    while (word::phase(w) == word::idle && (w & word::transit) != 0) {
      std::this_thread::yield();
      w = s.state.load(std::memory_order_seq_cst);
    }
    return w;
  }

  // INV12: slot i's bit is cleared only after its `unlisted` flag is set, so that whoever makes the
  // slot idle next lists it again. seq_cst both: a Dekker pair with a put's CAS on the slot word
  // followed by its load of the flag (put_back(), relist()); see take_listed().
  void unlist(std::uint32_t i, std::uint32_t t) noexcept {
    slots_[i].unlisted.store(1, std::memory_order_seq_cst);
    NETPOOL_SYNC_POINT("unlist:flagged");  // a relist() into stripe t now would be undone by our clear
    clear_listed_bit(i, t);
  }

  // unlist() for the slot this thread has just taken (its CAS made it leased to us). Nobody else
  // makes it idle while we own it, so no relist() can come between our flag and our clear, and no
  // put of it can miss the flag: the put is ours, later on this thread. Hence relaxed (a plain
  // store), where unlist() needs seq_cst (an exchange on x86: one RMW less per miss get). A
  // scanner's re-check that reads a stale 0 here only makes it look at the slot once more.
  void unlist_taken(std::uint32_t i, std::uint32_t t) noexcept {
    slots_[i].unlisted.store(1, std::memory_order_relaxed);
    clear_listed_bit(i, t);
  }

  // relist() for put_back(): out of line and cold, so that the hot put stays small enough for
  // ~lease() to be inlined into the caller (inlined, this branch made it a call: +17 instructions).
  [[gnu::noinline, gnu::cold]] void relist_returned(slot_type& s) noexcept { relist(index_of(s)); }

  // INV12: the owner makes slot i idle (it holds the slot in transit): set its bit, before it looks
  // for waiters (INV6), so that a waiter that raised waiters_ after that look finds the bit. In the
  // stripe of this thread's CPU: the connection is then found first by walks on the CPU that
  // returned it, which keeps each CPU's walks and puts in its own stripe's lines.
  void relist(std::uint32_t i) noexcept {
    // relaxed: the RMW below publishes it. That holds only while every write to listed_ is an
    // atomic RMW (a later clear then reads our fetch_or and sees this store): a plain store to
    // the bitmap, say a bulk reset, would break take_listed()'s re-check of the flag.
    slots_[i].unlisted.store(0, std::memory_order_relaxed);
    const std::uint32_t k = listed_word_of(home_stripe(), i);
    // seq_cst: INV6/INV12, with a waiter's or scanner's loads of the word (take_next_idle()). The
    // old value unused, so that this is one `lock or`: using it makes a CAS loop, which retries
    // under contention.
    listed_[k].fetch_or(listed_bit_of(i), std::memory_order_seq_cst);
    // INV13: make sure the word's summary bit is set. seq_cst: in one order with
    // summary_emptied()'s clear of the bit and its reload of the word. Read first: the bit is
    // nearly always set, and a load leaves the summary's line shared.
    if (summarized_) {
      const std::uint64_t bit = std::uint64_t{1} << (k % 64);
      if ((listed_summary_[k / 64].load(std::memory_order_seq_cst) & bit) == 0) [[unlikely]]
        listed_summary_[k / 64].fetch_or(bit, std::memory_order_seq_cst);
    }
  }

  // INV12: clears slot i's bit in stripe t (its `unlisted` flag is set already). seq_cst: INV12's
  // single order with relist()'s RMW and a put's load of the flag.
  void clear_listed_bit(std::uint32_t i, std::uint32_t t) noexcept {
    const std::uint32_t k = listed_word_of(t, i);
    listed_[k].fetch_and(~listed_bit_of(i), std::memory_order_seq_cst);  // one `lock and`
    // seq_cst: INV13, with relist()'s RMW on the word and its load of the summary.
    if (summarized_ && listed_[k].load(std::memory_order_seq_cst) == 0) [[unlikely]]
      summary_emptied(k);
  }

  // INV13: listed_[k] was seen empty: clear its summary bit, then look at the word again, and set
  // the bit back if it is not empty now. Against a relist() (set the word's bit, then load the
  // summary and set its bit if clear), in the single order of these seq_cst operations: if our
  // clear comes after the relist's load of the summary, our reload comes after its set of the word
  // and sees it (we set the bit back); if before, the relist's load sees our clear (it sets the bit
  // back). So once both are done, a non-empty word has its summary bit set. In between the summary
  // may be wrong: it is only a hint for take_lowest_idle(), whose caller falls back on the full
  // walk (take_next_idle()); waiters never use it, so INV6 does not depend on it.
  [[gnu::noinline]] void summary_emptied(std::uint32_t k) noexcept {
    const std::uint64_t bit = std::uint64_t{1} << (k % 64);
    NETPOOL_SYNC_POINT("summary_emptied:start");  // a relist() now sees the bit set, and leaves it
    listed_summary_[k / 64].fetch_and(~bit, std::memory_order_seq_cst);
    NETPOOL_SYNC_POINT("summary_emptied:cleared");
    if (listed_[k].load(std::memory_order_seq_cst) != 0)
      listed_summary_[k / 64].fetch_or(bit, std::memory_order_seq_cst);
  }

  // ---- the idle bitmap's layout (listed_) -------------------------------------------------------

  // log2 of the number of stripes of listed_ for a pool of `capacity` slots: one per CPU (a power
  // of two, at most max_idle_stripes), but none for a pool of one word, and no more than one per
  // 32 slots: each stripe costs a walk that finds its own stripe empty one more line to read.
  static std::uint32_t stripe_shift_for(std::uint32_t capacity) noexcept {
    if (capacity <= 64) return 0;
    // relaxed: set by a test before it creates the pool, on the same thread.
    const std::uint32_t forced = idle_stripes_for_tests.load(std::memory_order_relaxed);
    if (forced != 0)
      return static_cast<std::uint32_t>(std::countr_zero(std::bit_floor(std::min(forced, max_idle_stripes))));
    // Once per process: hardware_concurrency() asks the kernel, and pools may be created often.
    static const std::uint32_t cpus = std::max<std::uint32_t>(std::thread::hardware_concurrency(), 1);
    const std::uint32_t stripes =
        std::min({std::bit_floor(cpus), max_idle_stripes, std::bit_floor(capacity / 32)});
    return static_cast<std::uint32_t>(std::countr_zero(stripes));
  }
  static std::atomic<std::uint64_t>* line_aligned(std::atomic<std::uint64_t>* p) noexcept {
    if (p == nullptr) return nullptr;
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    return p + (((cache_line - address % cache_line) % cache_line) / sizeof(std::uint64_t));
  }
  std::uint32_t stripes() const noexcept { return 1u << stripe_shift_; }
  std::uint32_t stripe_mask() const noexcept { return stripes() - 1; }
  std::uint32_t listed_words() const noexcept { return stripes() * listed_stride_; }
  // Slot i's bit in stripe t: bit i % 64 of the stripe's word i / 64.
  std::uint32_t listed_word_of(std::uint32_t t, std::uint32_t i) const noexcept {
    return t * listed_stride_ + i / 64;
  }
  static std::uint64_t listed_bit_of(std::uint32_t i) noexcept { return std::uint64_t{1} << (i % 64); }
  // The slot of the lowest set bit in `bits`, word j of a stripe.
  std::uint32_t listed_slot(std::uint32_t j, std::uint64_t bits) const noexcept {
    const std::uint32_t i = j * 64 + static_cast<std::uint32_t>(std::countr_zero(bits));
    assert(i < capacity_);  // only slots of the pool are ever listed: a bit past them is a bad index
    return i;
  }

  // ---- slots for dialing --------------------------------------------------------------------

  // Reserves room for one more connection (INV2) and a dial token (INV10), and claims a free
  // slot, now busy and ours. Returns the slot and its new word, or nothing when the pool is full,
  // max_connecting dials are in flight, or the pool is closed. The caller must end_dial() once.
  std::optional<std::pair<std::uint32_t, std::uint64_t>> reserve_slot() noexcept {
    if (!take_dial_token()) return std::nullopt;
    while (!reserve_count()) {
      NETPOOL_SYNC_POINT("reserve_slot:full");  // holding a token that no dial will use
      return_dial_token();
      // While we held the token, a release that freed room may have been refused it (release_slot,
      // regrant_from_transit, start_dial_for_waiter): each trusts the token's holder to pump the
      // line when its dial ends, and we dial nothing. Such a release lowered active_ before it
      // tried the token, so this seq_cst load (after our seq_cst return) sees the room: take it
      // and serve the line ourselves. Bounded: each retry follows a release we were in the way of.
      if (active_.load(std::memory_order_seq_cst) >= max_size() || !take_dial_token()) return std::nullopt;
    }

    // The lowest free slot the bitmap knows of (INV14), else any free slot: a bit may be read
    // late, and a slot freed this instant is still in transit.
    for (std::uint32_t k = 0; k < bitmap_words_; ++k) {
      // relaxed: a hint (INV14); the slot's CAS decides.
      for (std::uint64_t bits = free_[k].load(std::memory_order_relaxed); bits != 0; bits &= bits - 1) {
        const std::uint32_t i = k * 64 + static_cast<std::uint32_t>(std::countr_zero(bits));
        if (const claim c = claim_free(i); c.outcome != claim::not_free) return reserved(i, c);
      }
    }
    NETPOOL_SYNC_POINT("reserve_slot:scan");  // the bitmap showed none: look at every slot
    for (;;) {
      for (std::uint32_t i = 0; i < capacity_; ++i) {
        if (const claim c = claim_free(i); c.outcome != claim::not_free) return reserved(i, c);
      }
      // INV2 says a free slot exists; it is in transit. Its owner is finishing a release.
      std::this_thread::yield();
    }
  }

  struct claim {
    enum { ours, closed, not_free } outcome;
    std::uint64_t word;  // ours: the slot's new (busy) word
  };

  // reserve_slot() at slot i: takes it if it is free and out of transit (not_free: it is not, or
  // another reserver took it first).
  claim claim_free(std::uint32_t i) noexcept {
    std::atomic<std::uint64_t>& state = slots_[i].state;
    std::uint64_t w = state.load(std::memory_order_relaxed);  // relaxed: the CAS decides
    if ((w & word::closed) != 0) return {claim::closed, 0};
    if (word::phase(w) != word::free || (w & word::transit) != 0) return {claim::not_free, 0};
    const std::uint64_t mine = word::next_owner(w, word::busy);
    // acquire: pairs with release_slot()'s release, so the slot's old connection is gone.
    if (!state.compare_exchange_strong(w, mine, std::memory_order_acquire, std::memory_order_relaxed))
      return {claim::not_free, 0};
    // Ours: clear its bit, before we can free it again (INV14). relaxed: a hint.
    free_[i / 64].fetch_and(~(std::uint64_t{1} << (i % 64)), std::memory_order_relaxed);
    return {claim::ours, mine};
  }

  // reserve_slot()'s answer for a slot claimed (ours or closed).
  std::optional<std::pair<std::uint32_t, std::uint64_t>> reserved(std::uint32_t i, claim c) noexcept {
    if (c.outcome == claim::ours) return std::make_pair(i, c.word);
    active_.fetch_sub(1, std::memory_order_relaxed);  // closed: nobody reserves any more
    return_dial_token();
    return std::nullopt;
  }

  // INV14: slot i, ours and free in transit, is about to be left free: list it for reserve_slot().
  // Before transit is cleared, which may be our last access to the core (INV5). relaxed: a hint.
  void mark_free(std::uint32_t i) noexcept {
    free_[i / 64].fetch_or(std::uint64_t{1} << (i % 64), std::memory_order_relaxed);
  }

  // ---- dial tokens and backoff --------------------------------------------------------------

  bool take_dial_token() noexcept {
    std::size_t n = connecting_.load(std::memory_order_seq_cst);
    do {
      if (n >= max_connecting_) return false;
      // seq_cst: INV10, pairs with end_dial()'s decrement followed by its load of waiters_.
    } while (
        !connecting_.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst, std::memory_order_seq_cst));
    return true;
  }

  // Gives a token back when nobody can be waiting for it (no pump).
  void return_dial_token() noexcept { connecting_.fetch_sub(1, std::memory_order_seq_cst); }

  // A dial is over (either way): give its token back, and if someone waits, start their dial.
  void end_dial() noexcept {
    connecting_.fetch_sub(1, std::memory_order_seq_cst);  // INV10
    // seq_cst fence: INV10. The dial's delivery (or the release of its slot) is sequenced before
    // this, so a waiter that found its own dial undelivered (awaits_own_dial(), seq_cst, after its
    // waiters_ increment) is seen in waiters_ below, and its turn comes in start_dial_for_waiter().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (waiters_.load(std::memory_order_seq_cst) != 0) start_dial_for_waiter();
  }

  // True when a waiter was given a slot to dial into.
  bool start_dial_for_waiter() noexcept {
    auto reserved = reserve_slot();
    if (!reserved) return false;  // full, or the tokens are taken: their end_dial() pumps again
    if (grant(reserved->first, reserved->second, waiter::granted_dial)) return true;  // token goes along
    return_dial_token();  // nobody waits after all
    release_slot(reserved->first);
    return false;
  }

  // While backing off after a failed dial, the error that dial returned: callers fail fast with it
  // instead of each dialing a backend that is down. Empty when a dial may be tried.
  std::error_code backoff_error() noexcept {
    // relaxed: a hint; the error itself is read under dial_mutex_.
    const std::int64_t retry_at = retry_at_ns_.load(std::memory_order_relaxed);
    if (retry_at == 0 || pool_now_ns() >= retry_at) return {};
    std::lock_guard lock(dial_mutex_);
    return last_dial_error_;
  }

  void record_dial_result(const std::error_code& error) noexcept {
    if (!error) {
      // relaxed: see backoff_error(); the common case (no backoff) writes nothing.
      if (retry_at_ns_.load(std::memory_order_relaxed) != 0) {
        std::lock_guard lock(dial_mutex_);
        backoff_ = std::chrono::nanoseconds::zero();
        retry_at_ns_.store(0, std::memory_order_relaxed);
      }
      return;
    }
    std::lock_guard lock(dial_mutex_);
    last_dial_error_ = error;
    if (config_.dial_backoff_floor <= std::chrono::nanoseconds::zero()) return;
    // Doubled without overflow: dials that were in flight together each double it, and the cap
    // may be nanoseconds::max() ("no cap").
    const auto cap = config_.dial_backoff_cap;
    backoff_ = std::clamp(backoff_ > cap / 2 ? cap : backoff_ * 2, config_.dial_backoff_floor, cap);
    // Jitter in [backoff/2, backoff]: pools that failed together do not retry together.
    const auto half = backoff_.count() / 2;
    std::uniform_int_distribution<std::int64_t> spread(0, half);
    const std::int64_t wait = half + spread(jitter_);  // <= backoff_
    const std::int64_t now = pool_now_ns();
    // (max - wait cannot overflow, wait >= 0; now may be negative, a clock set before the epoch.)
    const std::int64_t retry_at = now > std::numeric_limits<std::int64_t>::max() - wait
                                      ? std::numeric_limits<std::int64_t>::max()
                                      : now + wait;
    retry_at_ns_.store(retry_at, std::memory_order_relaxed);
  }

  // A fresh connection's deadline: max_lifetime shortened by up to lifetime_jitter, drawn per
  // connection, so that a cohort dialed together does not expire (and reconnect) together.
  void stamp_new_connection(slot_type& s) noexcept {
    // relaxed: a number, read by reset() only to choose; its CAS on the slot word decides.
    s.born.store(dial_seq_.fetch_add(1, std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // The tick may be stale (a maintainer asleep, or maintenance driven by hand): refresh it, so
    // that this connection's expiry and its first idle stamp are measured from now.
    if (uses_tick_) advance_tick(pool_now());
    if (lifetime_ticks_ == 0) return;
    thread_local std::minstd_rand rng(
        static_cast<std::uint32_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())));
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const double jitter = std::clamp(config_.lifetime_jitter, 0.0, 1.0);
    const auto life = static_cast<std::uint64_t>(static_cast<double>(lifetime_ticks_) * (1.0 - jitter * u));
    s.expires_at.store(tick_.load(std::memory_order_relaxed) + std::max<std::uint64_t>(life, 1),
                       std::memory_order_relaxed);
  }

  // One dial: the factory, then on_connect. A refusal by on_connect is a failed dial (its error,
  // or errc::hook_rejected for a throw), and the connection is closed as close_reason::hook.
  // `callers_deadline`: `deadline` is a waiting caller's, earlier than the pool's own dial
  // deadline. A dial that times out there says the caller ran out of patience, not that the
  // backend is down: it starts no backoff and is not the last dial error (a get_for(30ms) against a
  // backend that takes 100 ms to answer would otherwise fail the next, patient caller at once),
  // and it counts as that caller's timeout. A timeout on the pool's own deadline is a failed dial,
  // ETIMEDOUT; errc::exhausted (no capacity to dial) starts no backoff. on_connect is part of the
  // dial: in its two-argument form it is given `deadline` too, and its timeouts are read the same
  // way. The one-argument form is not: a timeout it reports is its own limit, a failed dial,
  // whatever the caller's deadline.
  result<Conn> call_factory(clock::time_point deadline, bool callers_deadline = false) noexcept {
    counters_.dials.fetch_add(1, std::memory_order_relaxed);
    std::error_code error;
    bool hooks_own_timeout = false;  // on_connect failed, and was not given `deadline`
    try {
      result<Conn> made = config_.factory(deadline);
      if (made && made_closed(*made)) made = errc::dial_failed;
      if (made && config_.on_connect) {
        error = run_on_connect(*made, deadline);
        hooks_own_timeout = error && !config_.on_connect.takes_deadline();
      }
      if (made && !error) {
        counters_.dials_ok.fetch_add(1, std::memory_order_relaxed);
        record_dial_result({});
        return made;
      }
      // A failure with an empty code (say, std::error_code(errno, ...) with errno 0; result's
      // constructor asserts against it, so only without assertions) would make a failed get look
      // like success to `if (!r) return r.error();`.
      if (!made) error = made.error() ? made.error() : make_error_code(errc::dial_failed);
    } catch (...) {
      error = errc::factory_threw;
    }
    counters_.dial_failures.fetch_add(1, std::memory_order_relaxed);
    if (callers_deadline && !hooks_own_timeout && is_timeout(error) && clock::now() >= deadline) {
      counters_.timeouts.fetch_add(1, std::memory_order_relaxed);  // the caller's get timed out
      return errc::timeout;
    }
    // No capacity to dial (keyed_pool: its global limit held until this dial's deadline), or no
    // need (a connection went idle while it waited) says nothing about the backend: no backoff,
    // and not the last dial error, or gets would fail fast with it after capacity came back.
    if (error == errc::exhausted || error == errc::dial_not_needed) return error;
    // Otherwise a timeout is the dial's own (dial_timeout, or the factory's inner limits): the
    // backend did not answer in time. That says something about the backend, which errc::timeout
    // (a get's own deadline: every connection busy) does not, so it becomes a dial failure,
    // ETIMEDOUT: `== condition::dial_failed` and `== std::errc::timed_out` hold, `== errc::timeout`
    // does not, for this get and for the gets that fail fast with it during the backoff.
    if (is_timeout(error)) error = make_dial_error(ETIMEDOUT);
    record_dial_result(error);
    return error;
  }

  static bool is_timeout(const std::error_code& error) noexcept {
    return error == errc::timeout || error == std::errc::timed_out;
  }

  std::error_code run_on_connect(Conn& conn, clock::time_point deadline) noexcept {
    std::error_code error;
    try {
      error = config_.on_connect(conn, deadline);
      // A hook that closed the connection and still said yes (say, a failed handshake that closed
      // it) made none: a failed dial, as the factory's closed one is, and refused as the hook's own.
      if (!error && made_closed(conn)) error = errc::dial_failed;
    } catch (...) {
      error = errc::hook_rejected;
    }
    // exhausted and dial_not_needed say that a dial did not happen (no capacity, no need), which
    // call_factory() answers without backoff and a keyed get by dialing again; from a hook that
    // refuses a connection just made they would make a loop of dials that closes each one.
    if (error == errc::exhausted || error == errc::dial_not_needed) error = errc::hook_rejected;
    if (error) notify_close(conn, close_reason::hook);  // destroyed by the caller's result
    return error;
  }

  // Dials into slot i, which we own (busy or leased, no connection), for a caller. The caller
  // holds a dial token; this gives it back. The factory cannot be interrupted: a stop requested
  // meanwhile is answered when it returns: a connection it made is pooled, and the get says
  // `cancelled`; a failed dial's error is returned as is.
  result<lease_type> dial_for_caller(std::uint32_t i, std::uint64_t owned, clock::time_point caller_deadline,
                                     const std::stop_token* stop, source_location where,
                                     bool after_wait) noexcept {
    const clock::time_point now = clock::now();
    // The backend is known to be down: say so, rather than a bare timeout.
    if (std::error_code down = backoff_error()) {
      release_slot(i);
      end_dial();
      counters_.fast_failures.fetch_add(1, std::memory_order_relaxed);
      return down;
    }
    if (now >= caller_deadline) {
      release_slot(i);
      end_dial();
      counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
      return errc::timeout;
    }
    const clock::time_point pools_deadline = dial_deadline(now);
    const bool callers_deadline = caller_deadline < pools_deadline;
    result<Conn> made = call_factory(callers_deadline ? caller_deadline : pools_deadline, callers_deadline);
    if (!made) {
      release_slot(i);
      end_dial();
      return made.error();  // (stopped or not: why it failed says more)
    }
    end_dial();
    slot_type& s = slots_[i];
    s.conn.emplace(std::move(*made));
    stamp_new_connection(s);
    // INV12: a slot dialed into may have its bit clear; our put lists it. Our own slot (INV1): the
    // flag is read by ourselves, or by a waiter we hand it to, through that hand-off.
    s.unlisted.store(1, std::memory_order_relaxed);
    std::uint64_t w = owned;
    const std::uint64_t leased = word::next_owner(owned, word::leased);
    // release: nothing to publish to others yet, but close()'s flags may have arrived: the CAS
    // tells (only close() flags a busy slot: see leased_to_busy()). acquire on failure: see the
    // flags' writer's effects before retiring.
    if (!s.state.compare_exchange_strong(w, leased, std::memory_order_acq_rel, std::memory_order_acquire)) {
      close_conn(s, close_reason::pool_closed);
      retire_after_close(i, w);
      return errc::pool_closed;
    }
    after_dial();
    if (stop != nullptr && stop->stop_requested()) {
      (void)make_idle(i, leased);  // to the oldest waiter, or idle
      counters_.cancellations.fetch_add(1, std::memory_order_relaxed);
      return errc::cancelled;
    }
    return lend_new(i, leased, where, after_wait);
  }

  // Slot i is ours, leased (word `owned`), its connection just closed, and we are about to dial
  // into it. Makes it busy: a leased slot looks lent to expire_lifetimes(), reset() and
  // shrink_to_max_size(), whose doom landing mid-dial would close the fresh connection (and fail
  // the get); nothing dooms a busy slot. A doom already there was for the closed connection and is
  // dropped. Returns the busy word, or nothing if the pool closed (still ours, still leased).
  std::optional<std::uint64_t> leased_to_busy(std::uint32_t i, std::uint64_t owned) noexcept {
    std::atomic<std::uint64_t>& state = slots_[i].state;
    const std::uint64_t busy = word::next_owner(owned, word::busy);
    std::uint64_t w = owned;
    // relaxed: the slot stays ours throughout, so there is nothing to publish; the only words
    // that can race are a doom (dropped) and close()'s flags (release_slot() acquires them).
    while (!state.compare_exchange_weak(w, busy, std::memory_order_relaxed, std::memory_order_relaxed)) {
      if ((w & word::closed) != 0) return std::nullopt;
    }
    return busy;
  }

  // Lends a connection dialed for this get (slot i is ours, leased): no health check or probe,
  // it has just been made. on_borrow still runs; a fresh connection it refuses fails the get,
  // since dialing again could loop forever.
  result<lease_type> lend_new(std::uint32_t i, std::uint64_t leased, source_location where,
                              bool after_wait) noexcept {
    slot_type& s = slots_[i];
    if (config_.on_borrow && !hook_accepts(config_.on_borrow, *s.conn)) {
      close_conn(s, close_reason::hook);
      release_slot(i);
      return errc::hook_rejected;
    }
    return lend_tracked(i, leased, where, after_wait);
  }

  clock::time_point dial_deadline(clock::time_point now) const noexcept {
    const auto room = clock::time_point::max() - now;
    return config_.dial_timeout >= room
               ? clock::time_point::max()
               : now + std::chrono::duration_cast<clock::duration>(config_.dial_timeout);
  }

  // ---- returning slots ----------------------------------------------------------------------

  // put_back() with on_return or leak detection on: the hooks, then the usual return.
  [[gnu::noinline]] put_status put_back_hooked(slot_type& s, std::uint64_t owned) noexcept {
    const std::uint32_t i = index_of(s);
    // acquire: pairs with the release that made us the owner (see discard()).
    const std::uint64_t current = s.state.load(std::memory_order_acquire);
    if ((current & ~word::flag_mask) != owned) return put_status::stale;
    // Closed by its borrower (see put_back()): on_return never sees it, on_leak still does.
    const bool closed_by_borrower = returned_closed(*s.conn);
    if (lent_) report_if_leaked(i, owned);
    bool refused = false;
    if (config_.on_return && !closed_by_borrower) {
      const return_hooks hooks(s);
      refused = hooks.may_run() && !hook_accepts(config_.on_return, *s.conn);
    }  // from here on, close() may return: no hook of the return runs
    if (closed_by_borrower) {
      // Freed as discard() frees one; with the slot's flags (close(), a doom), closed for their
      // reason as any return is.
      if ((current & word::flag_mask) != 0) return make_idle_slow(i, owned);
      close_conn(s, close_reason::error);
      release_slot(i);
      return put_status::ok;
    }
    if (refused) {
      close_conn(s, close_reason::hook);
      release_slot(i);  // frees it (or lets a waiter dial into it); retires it if the pool closed
      return put_status::ok;
    }
    return make_idle(i, owned);
  }

  // The scope of a return's hook (on_return; on_leak's "came back" report): it runs only while the
  // pool is open, and close() returns only once those under way on other threads have ended
  // (wait_for_return_hooks()). After close() the connection is closed, not pooled: on_return
  // would reset a session about to end; and once close() (or ~pool()) has returned, whatever the
  // hooks capture may be gone with the pool object (the README says they do not run then).
  class return_hooks {
   public:
    explicit return_hooks(slot_type& s) noexcept : slot_(s), may_run_(enter(s)) {
      if (may_run_) ++thread_return_hooks;
    }
    ~return_hooks() {
      if (may_run_) --thread_return_hooks;
      // release: what the hook did happens before the return of a close() that waited for it.
      slot_.returning.store(0, std::memory_order_release);
      // seq_cst fence: store buffering again, with a close() that loaded our 1 and sleeps until
      // it is 0: it flagged the word before its fence, so if our fence follows its fence we see
      // the flag and wake it; if ours comes first, its load after its fence sees the 0.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if ((slot_.state.load(std::memory_order_relaxed) & word::closed) != 0) {
        futex_wake(&slot_.returning, std::numeric_limits<int>::max());  // every close() waiting
      }
    }
    return_hooks(const return_hooks&) = delete;
    return_hooks& operator=(const return_hooks&) = delete;

    [[nodiscard]] bool may_run() const noexcept { return may_run_; }

   private:
    // Marks the slot as returning, then reads whether the pool is still open.
    static bool enter(slot_type& s) noexcept {
      s.returning.store(1, std::memory_order_relaxed);
      // seq_cst fence: store buffering with close(), which flags the slot's word, fences, and loads
      // `returning` (wait_for_return_hooks()): either it sees our 1 and waits for us, or we see its
      // flag here and run no hook.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      return (s.state.load(std::memory_order_relaxed) & word::closed) == 0;
    }

    slot_type& slot_;
    const bool may_run_;
  };

  // close(), once every slot is flagged: waits until the return hooks that saw the pool open have
  // ended. Not from inside a return hook (of any pool): its own hook runs on anyway, and two hooks
  // that each close the pool (or one another's pools) would wait for each other for ever.
  void wait_for_return_hooks() noexcept {
    if (thread_return_hooks != 0) return;
    // seq_cst fence: pairs with return_hooks' two fences (store buffering, see there).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      const std::atomic<std::uint32_t>& returning = slots_[i].returning;
      // acquire (here and below): pairs with ~return_hooks()'s release store of 0, so that what a
      // hook did happens before close() returns, also when it ended just before this load.
      if (returning.load(std::memory_order_acquire) == 0) continue;
      NETPOOL_SYNC_POINT("close:waits_for_return_hooks");
      while (returning.load(std::memory_order_acquire) != 0) {
        (void)futex_wait(returning, 1, clock::time_point::max());
      }
    }
  }

  // put_back() whose CAS failed: the slot's word has flags (closed, doomed), or the connection was
  // closed by its borrower (the CAS expected owned | 1), or the lease is stale. The word says
  // which, without a second is_open(), which may answer otherwise (one that threw, then did not,
  // pooled the connection; review 19): still exactly `owned` means only our `| 1` failed the CAS,
  // since no flag is cleared while the slot is ours. Then it is freed as discard() frees one; with
  // flags, make_idle_slow() closes it for their reason (pool_closed, the doom's), as any return.
  [[gnu::noinline]] put_status put_back_slow(slot_type& s, std::uint64_t owned) noexcept {
    // acquire: as discard()'s load (our own writes, or a grant's).
    if (s.state.load(std::memory_order_acquire) == owned) return discard(&s, owned);
    return make_idle_slow(index_of(s), owned);
  }

  // We own slot i (word `owned`, leased or busy) holding a connection: make it idle, or hand it to
  // the oldest waiter. pool_closed (connection closed) when the pool closed meanwhile.
  put_status make_idle(std::uint32_t i, std::uint64_t owned) noexcept {
    if (stamps_idle_) {
      // relaxed: published by the release CAS in make_idle_slow (or by a grant's publication).
      slots_[i].idle_since.store(tick_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    return make_idle_slow(i, owned);
  }

  // make_idle() once idle_since is stamped: the general case (waiters, close, stale leases).
  [[gnu::noinline]] put_status make_idle_slow(std::uint32_t i, std::uint64_t owned) noexcept {
    slot_type& s = slots_[i];
    // Someone waits: give it this connection directly (FIFO, and nobody can barge in).
    // relaxed: a shortcut only; INV6 is kept by the seq_cst pair below.
    if (fair_ && waiters_.load(std::memory_order_relaxed) != 0 &&
        grant(i, owned, waiter::granted_connection)) {
      return put_status::ok;
    }

    std::uint64_t w = owned;
    const std::uint64_t idle_transit = word::with_phase(owned, word::idle) | word::transit;
    // seq_cst: INV6 (and release: publishes the connection and idle_since to the next owner).
    if (!s.state.compare_exchange_strong(w, idle_transit, std::memory_order_seq_cst,
                                         std::memory_order_acquire)) {
      if ((w & ~word::flag_mask) != owned) return put_status::stale;  // not ours: stale lease
      if ((w & word::closed) == 0) {  // doomed while lent (max_lifetime, reset(), resize): not an error
        close_conn(s, doom_reason_of(s));
        release_slot(i);
        return put_status::ok;
      }
      close_conn(s, close_reason::pool_closed);
      retire_after_close(i, w);
      return put_status::closed;
    }
    // Idle (in transit): listed before we look for waiters (INV12, INV6). Always here: the slot
    // may come from busy (a dial, a keepalive check) or from a lease the miss path took.
    relist(i);
    if (waiters_.load(std::memory_order_seq_cst) != 0) {  // seq_cst: INV6
      regrant_from_transit(i, idle_transit, waiter::granted_connection);
      return put_status::ok;
    }
    // release: clears transit; the connection was already published by the CAS. Our last access
    // to the core (INV5).
    s.state.store(word::with_phase(owned, word::idle), std::memory_order_release);
    return put_status::ok;
  }

  static_assert(close_reason_count <= (std::uint64_t{1} << word::generation_shift),
                "a doom tag keeps the reason below the generation bits");
  // The owner found its lease doomed (its failed CAS acquired the flag's release): why.
  static close_reason doom_reason_of(const slot_type& s) noexcept {
    // relaxed: ordered by that acquire. The doomer that set the flag read or wrote this lease's
    // tag before its release CAS (read-read coherence covers a tag written by another doomer of
    // the same lease), and no later lease exists to write a newer one.
    const std::uint64_t tag = s.doom_reason.load(std::memory_order_relaxed);
    return static_cast<close_reason>(tag & ~word::generation_mask);
  }

  // Marks the connection lent from slot i (word `w`, leased) to be closed when it comes back.
  // False if the slot is no longer leased (it came back first).
  bool doom_leased(std::uint32_t i, std::uint64_t w, close_reason why) noexcept {
    NETPOOL_SYNC_POINT("doom_leased:start");  // `w` may be an older lease's by now
    slot_type& s = slots_[i];
    // The reason is the first doomer's of this lease (lifetime, reset() and resize may race to
    // doom one lease; each is true of it), and only a newer lease's tag replaces an older one's:
    // a doomer holding the word of a lease that has since come back (the maintainer reads words
    // ahead of its CAS) used to overwrite the reason of the lease lent after it.
    const std::uint64_t lease = w & word::generation_mask;
    // relaxed: the tag travels to the owner with the flag (the release CAS below).
    std::uint64_t tag = s.doom_reason.load(std::memory_order_relaxed);
    while ((tag & word::generation_mask) < lease &&
           !s.doom_reason.compare_exchange_weak(tag, lease | static_cast<std::uint64_t>(why),
                                                std::memory_order_relaxed, std::memory_order_relaxed)) {
    }
    // release: the reason travels with the flag to the owner's failed CAS (acquire). A leased
    // slot is never in transit (INV5), so only the owner or close() can race with us.
    return s.state.compare_exchange_strong(w, w | word::doomed, std::memory_order_release,
                                           std::memory_order_relaxed);
  }

  // Takes idle slot i (word `w`) and closes its connection for `why`. False if it was taken first.
  bool close_idle(std::uint32_t i, std::uint64_t w, close_reason why) noexcept {
    slot_type& s = slots_[i];
    // acquire: pairs with make_idle()'s release; we are about to destroy the connection.
    if (!s.state.compare_exchange_strong(w, word::next_owner(w, word::busy), std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
      return false;
    }
    close_conn(s, why);
    release_slot(i);
    return true;
  }

  // We own slot i (leased or busy) and its connection is gone: free the slot, or let the oldest
  // waiter dial into it.
  void release_slot(std::uint32_t i) noexcept {
    slot_type& s = slots_[i];
    std::uint64_t w = s.state.load(std::memory_order_acquire);  // acquire: see close()'s flags' cause
    // relaxed: a shortcut only; INV7 is kept by the seq_cst pair below. A waiter given the slot
    // dials into it, so it needs a token too (INV10).
    // Not while shrinking (more open than max_size): the slot must be freed, not refilled.
    if ((w & word::closed) == 0 && waiters_.load(std::memory_order_relaxed) != 0 &&
        active_.load(std::memory_order_relaxed) <= max_size() && take_dial_token()) {
      if (grant(i, w, waiter::granted_dial)) return;
      return_dial_token();
    }
    for (;;) {
      if ((w & word::closed) != 0) {
        retire_after_close(i, w);
        return;
      }
      // seq_cst (release part): the connection's destruction happens-before the next reserver.
      if (s.state.compare_exchange_weak(w, (word::with_phase(w, word::free) & ~word::doomed) | word::transit,
                                        std::memory_order_seq_cst, std::memory_order_acquire)) {
        break;
      }
    }
    const std::uint64_t free_transit = (word::with_phase(w, word::free) & ~word::doomed) | word::transit;
    active_.fetch_sub(1, std::memory_order_seq_cst);  // INV2 (after the slot is free), INV7
    if (const std::size_t min = min_size(); min != 0 && active_.load(std::memory_order_relaxed) < min) {
      wake_maintainer();
    }
    if (waiters_.load(std::memory_order_seq_cst) != 0) {            // INV7
      regrant_from_transit(i, free_transit, waiter::granted_dial);  // clears transit either way
      return;
    }
    mark_free(i);
    // release: clears transit; our last access to the core (INV5).
    s.state.store(word::with_phase(w, word::free) & ~word::doomed, std::memory_order_release);
  }

  // We own slot i and the pool is closed (word `w` carries the flags); its connection is gone.
  // Frees the slot; drops the orphan reference if the handle is gone (INV9).
  void retire_after_close(std::uint32_t i, std::uint64_t w) noexcept {
    active_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: nobody reserves after close
    std::atomic<std::uint64_t>& state = slots_[i].state;
    // acq_rel: release our writes to whoever frees the core; acquire the orphan sweep's flag.
    while (!state.compare_exchange_weak(w, word::with_phase(w, word::free) & ~(word::transit | word::doomed),
                                        std::memory_order_acq_rel, std::memory_order_acquire)) {
    }
    if ((w & word::orphan) != 0) release_ref();  // the last touch: the core may be gone after it
  }

  // close() found slot i idle (with the closed flag): take it, close it, free it.
  void close_idle_after_close(std::uint32_t i, std::uint64_t w) noexcept {
    slot_type& s = slots_[i];
    const std::uint64_t mine = word::next_owner(w, word::busy);
    // acquire: pairs with make_idle()'s release CAS; we are about to destroy the connection.
    if (!s.state.compare_exchange_strong(w, mine, std::memory_order_acquire, std::memory_order_relaxed))
      return;
    close_conn(s, close_reason::pool_closed);
    retire_after_close(i, mine);
  }

  // ---- resizing -----------------------------------------------------------------------------

  // More open than max_size (set_max_size shrank it): close idle ones, then doom lent ones until
  // the surplus is covered. Returns whether it is: slots being dialed are left, and their
  // after_dial() trims (lean_pool) or wakes the maintainer to look again.
  // Under resize_mutex_: two shrinks at once (set_max_size() and a maintenance round) each counted
  // the same surplus, and when one doomed a lease the other had just read, the other's doom failed
  // and it doomed the next lease too: one connection too many closed.
  // A lease already doomed (by an earlier shrink, lifetime or reset) closes when it comes back, so
  // it covers one connection of the surplus; they are counted first, and the surplus is re-read at
  // every step: a doomed lease that came back, or any other close meanwhile, lowers active_, so a
  // surplus taken once went stale, and an idle connection or another lease was closed as well (two
  // closed for one surplus, found by a test that two dials in flight over a shrink made flaky).
  // But a counted doomed lease that comes back during the walks lowers active_ and not the count,
  // so the walks stop short: the count is taken again after them, and they run again while the
  // surplus is not covered (review 19: a lean_pool, which has no maintainer to come back to it,
  // stayed above max_size for good). A pass repeats only if it made progress (closed or doomed
  // one) or saw active_ drop (a return or a failed dial may have stopped it short): a pass that
  // did neither would find what it found, so the rest of the surplus is dials in flight, and the
  // caller is told it is not covered. Bounded: each repeat needs a connection closed, doomed or
  // gone, and dials cannot open more than max_size meanwhile (capacity_ passes at most, to be sure).
  // Left: a doomed lease whose release_slot() has freed its word but not yet lowered active_ is
  // neither counted nor subtracted, so a step in that window (a few instructions) closes one more
  // than needed; the pool is then one below max_size until a get dials again.
  bool shrink_to_max_size() noexcept {
    // The stores and CASes that made slots leased (a dial's, on another thread) against our
    // loads of the words: see after_dial().
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // relaxed: counts; the CASes decide (and resize_mutex_ orders us against other shrinks).
    const auto open_now = [&] { return active_.load(std::memory_order_relaxed); };
    for (std::uint32_t pass = 0; pass <= capacity_; ++pass) {
      std::size_t covered = doomed_leases();  // connections already on their way out
      const auto uncovered = [&] { return open_now() > max_size() + covered; };
      if (!uncovered()) return true;
      const std::size_t open_at_start = open_now();
      bool progress = false;
      for (std::uint32_t i = 0; i < capacity_ && uncovered(); ++i) {
        const std::uint64_t w = slots_[i].state.load(std::memory_order_acquire);  // the CAS decides
        if (word::phase(w) == word::idle && (w & word::flag_mask) == 0)
          progress |= close_idle(i, w, close_reason::resize);
      }
      for (std::uint32_t i = 0; i < capacity_ && uncovered(); ++i) {
        const std::uint64_t w = slots_[i].state.load(std::memory_order_acquire);
        if (word::phase(w) != word::leased || (w & (word::closed | word::transit | word::doomed)) != 0)
          continue;
        if (doom_leased(i, w, close_reason::resize)) {
          ++covered;
          progress = true;
        }
      }
      if (!progress && open_now() >= open_at_start) break;
    }
    return open_now() <= max_size() + doomed_leases();
  }

  // Leases doomed while lent (a shrink, max_lifetime, reset()): each closes when it comes back.
  std::size_t doomed_leases() const noexcept {
    std::size_t n = 0;
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      const std::uint64_t w = slots_[i].state.load(std::memory_order_relaxed);  // a count only
      if (word::phase(w) == word::leased &&
          (w & (word::closed | word::transit | word::doomed)) == word::doomed) {
        ++n;
      }
    }
    return n;
  }

  // ---- leak detection ------------------------------------------------------------------------

  // Who holds lent slot i. A seqlock keyed by the lease's generation: the owner writes the fields
  // between setting `generation` to 0 and to the lease's generation; a reader keeps what it read
  // only if `generation` named the lease it looked at before and after (INV3: never reused).
  struct lent_info {
    std::atomic<std::uint64_t> generation{0};
    std::atomic<std::int64_t> since_ns{0};  // pool time of the get
    std::atomic<const char*> file{""};
    std::atomic<const char*> function{""};
    std::atomic<std::uint32_t> line{0};
    std::atomic<std::uint64_t> reported{0};  // generation of the lease reported as leaked (once)
  };

  void record_lent(std::uint32_t i, std::uint64_t owned, source_location where) noexcept {
    lent_info& info = lent_[i];
    // relaxed + release fence: the seqlock's "writing" mark is ordered before the fields.
    info.generation.store(0, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    info.since_ns.store(pool_now_ns(), std::memory_order_relaxed);
    info.file.store(where.file_name(), std::memory_order_relaxed);
    info.function.store(where.function_name(), std::memory_order_relaxed);
    info.line.store(where.line(), std::memory_order_relaxed);
    // release: publishes the fields to a reader that acquires this generation.
    info.generation.store(word::generation(owned), std::memory_order_release);
  }

  // Maintainer: reports, once each, leases held longer than leak_threshold.
  void check_leaks() noexcept {
    const std::int64_t now = pool_now_ns();
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      const std::uint64_t w = slots_[i].state.load(std::memory_order_relaxed);  // the seqlock decides
      if (word::phase(w) != word::leased) continue;
      lent_info& info = lent_[i];
      const std::uint64_t g = word::generation(w);
      if (info.generation.load(std::memory_order_acquire) != g) continue;  // acquire: the fields
      const std::int64_t since = info.since_ns.load(std::memory_order_relaxed);
      const source_location where = source_location::current(info.file.load(std::memory_order_relaxed),
                                                             info.function.load(std::memory_order_relaxed),
                                                             info.line.load(std::memory_order_relaxed));
      std::atomic_thread_fence(std::memory_order_acquire);  // the field loads before the re-check
      if (info.generation.load(std::memory_order_relaxed) != g) continue;  // re-lent meanwhile
      if (now - since < leak_ns_) continue;
      std::uint64_t seen = info.reported.load(std::memory_order_relaxed);
      if (seen == g) continue;
      // Claimed and told under leak_mutex_: an owner that sees the claim (report_if_leaked) takes
      // it too before it says "came back", so on_leak never hears that before "still out".
      std::lock_guard tell(leak_mutex_);
      // acq_rel: one report per lease, whoever wins; the returner acquires it (report_if_leaked).
      if (!info.reported.compare_exchange_strong(seen, g, std::memory_order_acq_rel)) continue;
      NETPOOL_SYNC_POINT("check_leaks:claimed");  // the report is ours, not yet told
      counters_.leaks.fetch_add(1, std::memory_order_relaxed);
      tell_leak({where, std::chrono::nanoseconds(now - since), false});
    }
  }

  // The owner returns slot i: if its lease was reported as leaked, report that it came back.
  void report_if_leaked(std::uint32_t i, std::uint64_t owned) noexcept {
    lent_info& info = lent_[i];
    if (info.reported.load(std::memory_order_acquire) != word::generation(owned)) return;
    NETPOOL_SYNC_POINT("report_if_leaked:lock");
    std::lock_guard tell(leak_mutex_);  // after check_leaks() has told "still out"
    // The scope inside the lock: check_leaks() tells "still out" under it, and if that on_leak
    // closes the pool, close() must not wait for a return that waits for this lock.
    const return_hooks hooks(slots_[i]);
    if (!hooks.may_run()) return;  // not after close() (return_hooks)
    // Our own lease: we wrote these fields (INV1), so plain relaxed loads are current.
    const std::int64_t since = info.since_ns.load(std::memory_order_relaxed);
    tell_leak({source_location::current(info.file.load(std::memory_order_relaxed),
                                        info.function.load(std::memory_order_relaxed),
                                        info.line.load(std::memory_order_relaxed)),
               std::chrono::nanoseconds(pool_now_ns() - since), true});
  }

  void tell_leak(const leak_report& report) noexcept {
    try {
      config_.on_leak(report);
    } catch (...) {  // a notification: its failure changes nothing
    }
  }

  // ---- waiters ------------------------------------------------------------------------------

  // Under wait_mutex_: the waiter a grant of `kind` goes to, left in line. A connection goes to the
  // oldest. A slot to dial into goes to the oldest that does not await a dial of its own: a get
  // whose dial was posted to a dialer thread (wait_in_line()) and has not delivered would
  // otherwise dial a second time, and one connection more than asked for would go idle (one get,
  // two dials). That dial's outcome goes to the oldest waiter (dial_for_pool()); if that is not
  // its poster, its end_dial() finds the poster no longer awaiting it, and grants it a dial (INV10).
  waiter* next_to_grant(std::uint32_t kind) const noexcept {
    if (kind != waiter::granted_dial) return queue_.front();
    return queue_.first_where([](const waiter& w) { return !awaits_own_dial(w); });
  }

  // True while the dial this waiter posted has not delivered its connection (or its error), and
  // still may: its slot holds the word it was posted with (a delivery, a release, a close or a
  // doom changes it; generations never repeat).
  static bool awaits_own_dial(const waiter& w) noexcept {
    // seq_cst: INV10, in the single order with the poster's waiters_ increment before it and with
    // end_dial()'s fence after the dial's delivery (which changes the word).
    return w.own_dial != nullptr && w.own_dial->load(std::memory_order_seq_cst) == w.own_dial_word;
  }

  // Hands slot i (owned, word `owned`) to the oldest waiter as `kind` (a dial: the oldest not
  // awaiting its own, next_to_grant()). False when nobody (such) waits or the pool closed meanwhile
  // (then nothing changed).
  bool grant(std::uint32_t i, std::uint64_t owned, std::uint32_t kind) noexcept {
    waiter* w = nullptr;
    std::uint64_t theirs = 0;
    {
      std::lock_guard lock(wait_mutex_);
      w = next_to_grant(kind);
      if (w == nullptr) return false;
      theirs = word::next_owner(owned, kind == waiter::granted_dial ? word::busy : word::leased);
      // INV12: a slot lent from busy (a fresh dial, a keepalive check) may have its bit clear; the
      // waiter's put must list it. relaxed: published to the waiter by the CAS below.
      if (kind != waiter::granted_dial) slots_[i].unlisted.store(1, std::memory_order_relaxed);
      std::uint64_t expect = owned;
      // seq_cst: release/acquire, as the waiter acquires the slot (and connection) through its
      // node's publication; and in the single order of keep_alive()'s reset check, whose hold a
      // grant can end. This CAS fails if close() flagged the slot (close() will fail the waiter) or
      // a doom landed on a leased one (our caller then closes the connection and releases it).
      if (!slots_[i].state.compare_exchange_strong(expect, theirs, std::memory_order_seq_cst,
                                                   std::memory_order_relaxed)) {
        return false;  // the node keeps its place in line
      }
      queue_.unlink(*w);
      waiters_.fetch_sub(1, std::memory_order_seq_cst);  // INV8
      w->slot = i;
      w->generation = word::generation(theirs);
    }
    publish(*w, kind);  // INV8: after the unlock, only the node is touched
    return true;
  }

  // We hold slot i in transit (word `transit_word`, idle or free) and saw a waiter: give the
  // slot to the oldest one, or clear transit. True when a waiter got it.
  bool regrant_from_transit(std::uint32_t i, std::uint64_t transit_word, std::uint32_t kind) noexcept {
    slot_type& s = slots_[i];
    if (!fair_ && kind == waiter::granted_connection) return regrant_unfair(i, transit_word);
    waiter* w = nullptr;
    {
      std::lock_guard lock(wait_mutex_);
      w = next_to_grant(kind);
      if (w != nullptr && kind == waiter::granted_dial) {
        if (!take_dial_token()) {
          w = nullptr;  // max_connecting dials in flight: the next end_dial() pumps
        } else if (!reserve_count()) {
          return_dial_token();
          w = nullptr;  // a concurrent reserver took the room; it will take this slot
        }
      }
      if (w != nullptr) {
        queue_.unlink(*w);
        waiters_.fetch_sub(1, std::memory_order_seq_cst);  // INV8
        const std::uint64_t theirs = word::next_owner(
            transit_word & ~word::transit, kind == waiter::granted_dial ? word::busy : word::leased);
        // release: INV5 lets us store; the waiter acquires through the node's publication.
        s.state.store(theirs, std::memory_order_release);
        w->slot = i;
        w->generation = word::generation(theirs);
      }
    }
    if (w != nullptr) {
      publish(*w, kind);
      return true;
    }
    if (word::phase(transit_word) == word::free) mark_free(i);  // nobody to dial into it (INV14)
    // release: clears transit (INV5): our last access to the core.
    s.state.store(transit_word & ~word::transit, std::memory_order_release);
    return false;
  }

  // Raises active_ by one if there is room (the slot itself is already ours).
  bool reserve_count() noexcept {
    std::size_t n = active_.load(std::memory_order_seq_cst);
    do {
      // seq_cst (not max_size()'s relaxed): set_max_size()'s argument against a waiter's
      // waiters_ increment needs this load in the single order too.
      if (n >= limit_.load(std::memory_order_seq_cst)) return false;
    } while (!active_.compare_exchange_weak(n, n + 1, std::memory_order_seq_cst, std::memory_order_seq_cst));
    return true;
  }

  static void publish(waiter& w, std::uint32_t outcome) noexcept {
    // acq_rel: release the slot and grant fields to the waiter's acquire load; acquire so that we
    // read whether it went to sleep.
    if (w.state.exchange(outcome, std::memory_order_acq_rel) == waiter::sleeping) futex_wake(&w.state, 1);
  }

  // A dial handed to a dialer thread: slot `slot` (ours, word `owned`) and its dial token.
  struct dial_job {
    std::uint32_t slot;
    std::uint64_t owned;
  };

  // As awaits_own_dial(), for a get out of line: true while the dial it posted has not delivered.
  bool awaits_dial(const std::optional<dial_job>& posted) const noexcept {
    // seq_cst: as in awaits_own_dial(); a get out of line queues (wait_in_line()) and looks again.
    return posted && slots_[posted->slot].state.load(std::memory_order_seq_cst) == posted->owned;
  }

  struct wait_outcome {
    std::uint32_t kind = 0;  // a waiter::state_value past the pending ones, or `timed_out`
    std::uint32_t slot = 0;
    std::uint64_t generation = 0;
    std::error_code error;  // waiter::dial_failed
  };
  static constexpr std::uint32_t timed_out = 100;

  // `user_checked`: this get's fast path already ran a user check; see scan_idle().
  [[gnu::noinline]] result<lease_type> acquire_slow(clock::time_point deadline, acquire_mode mode,
                                                    const std::stop_token* stop, source_location where,
                                                    bool user_checked) noexcept {
    // The miss path (the hint was taken, or there was none), as lean as the fast path while nobody
    // waits: one of this thread's walked slots if one is idle (and fresh), else the lowest listed
    // idle connection, lent at once if it needs no check. Everything else
    // (waiters, checks, dials, errors) goes round acquire_or_wait(), which scans again.
    // relaxed: a fairness heuristic, as on the fast path; INV6 does not depend on it.
    // Once closed() is true every slot is flagged (close() flags them first), so the walk's CAS
    // takes none, and acquire_or_wait() says pool_closed (review 10's F1 had this path read
    // closed_ instead, while close() still flagged the slots after setting it).
    if (!user_checked && (waiters_.load(std::memory_order_relaxed) & waiter_gate_) == 0 &&
        (stop == nullptr || !stop->stop_requested())) {
      // First the slots this thread walked to before: no shared line written if one is idle.
      auto [i, owned] = take_walked();
      if (i == capacity_) {
        std::tie(i, owned) = take_lowest_idle();
        if (i != capacity_) remember_walked(i);
      }
      if (i != capacity_) {
        slot_type& s = slots_[i];
        // As on the fast path, but a miss also checks max_lifetime (in hand_out()): the fast path
        // leaves that to the maintainer's rounds, the miss path always looked.
        if (lifetime_ticks_ == 0 && needs_no_check(s)) {
          count_borrow(s);
          return result<lease_type>(std::in_place, lease_key<Conn>{}, this, &*s.conn, &s, owned);
        }
        checked_lease checked = hand_out(i, owned, where);
        if (checked.lease) return std::move(checked.lease);
        user_checked = checked.user_checked;
      }
    }
    bool waited = false;
    return acquire_or_wait(deadline, mode, stop, where, waited, user_checked);
  }

  // One get's time in line: total, maximum, and histogram (relaxed: independent counters).
  void record_wait(clock::time_point wait_start) noexcept {
    const auto ns = std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - wait_start).count(), 0);
    const auto waited = static_cast<std::uint64_t>(ns);
    counters_.gets_waited.fetch_add(1, std::memory_order_relaxed);
    counters_.wait_ns.fetch_add(waited, std::memory_order_relaxed);
    raise_to(counters_.max_wait_ns, waited);  // a statistic, read by stats() only
    std::size_t bucket = 0;
    while (bucket < wait_bucket_bounds.size() && std::chrono::nanoseconds(ns) > wait_bucket_bounds[bucket]) {
      ++bucket;
    }
    counters_.wait_histogram[bucket].fetch_add(1, std::memory_order_relaxed);
  }

  result<lease_type> acquire_or_wait(clock::time_point deadline, acquire_mode mode,
                                     const std::stop_token* stop, source_location where, bool& waited,
                                     bool user_checked) noexcept {
    clock::time_point wait_start{};
    auto finish_wait = [&] {
      if (waited) record_wait(wait_start);
    };
    // A dial to hand to a dialer thread once we are in line (wait_in_line posts it): queued first,
    // we are there to receive its connection or its error.
    std::optional<dial_job> to_post;
    // The last dial we posted. While it has not delivered, we dial no other (one get, one dial):
    // its outcome goes to the oldest waiter, and its end_dial() gives us a dial if we still wait.
    std::optional<dial_job> posted;
    bool woken_to_compete = false;  // fair_waiters = false: our last wait ended in `retry`
    // A slot reserved for a dial this get no longer waits for: free it for the next caller.
    auto drop_post = [&] {
      if (to_post) abandon_dial(std::exchange(to_post, std::nullopt)->slot);
    };
    for (;;) {
      if (stop != nullptr && stop->stop_requested()) {
        drop_post();
        // Woken to compete for a returned connection (fair_waiters = false), we leave without
        // trying: pass the wake-up on, or the next waiter sleeps on while it sits idle (INV6).
        if (woken_to_compete) wake_next_to_compete();
        counters_.cancellations.fetch_add(1, std::memory_order_relaxed);
        finish_wait();
        return errc::cancelled;
      }
      if (is_closed()) {
        drop_post();
        finish_wait();
        return errc::pool_closed;
      }
      // Nobody waits: take any idle connection, else dial if there is room. With waiters, join
      // the line behind them (FIFO). With a dial to post, go straight to the line.
      if (to_post) {
        // (a slot granted to us that we will have dialed by a dialer thread)
      } else if (!fair_ || waiters_.load(std::memory_order_seq_cst) == 0) {
        // try_get() has no deadline to keep (it never waits): it checks every idle connection.
        // keyed_pool's look after a dial that was not needed (try_idle_until) keeps its get's.
        if (lease_type taken = scan_idle(mode == acquire_mode::try_idle ? clock::time_point::max() : deadline,
                                         where, user_checked, waited)) {
          finish_wait();
          return taken;
        }
        if (mode != acquire_mode::wait) return errc::exhausted;
        // Woken to compete (fair_waiters = false), the scan may have stopped short of the idle
        // connection it was woken for (a check already ran and the deadline passed): this get is
        // about to time out, so pass the wake-up on, or the next waiter sleeps on while it sits
        // idle (INV6), as for a cancellation. If the scan did compete and lost, the wake-up is
        // spurious: a turn round the next waiter's loop.
        if (woken_to_compete && checks_over(user_checked, deadline)) {
          wake_next_to_compete();
          woken_to_compete = false;
        }
        if (auto reserved = awaits_dial(posted) ? std::nullopt : reserve_slot()) {
          if (!wants_background_dial(deadline, stop)) {
            finish_wait();
            return dial_for_caller(reserved->first, reserved->second, deadline, stop, where, waited);
          }
          to_post = dial_job{reserved->first, reserved->second};
        }
      } else if (mode != acquire_mode::wait) {
        return errc::exhausted;
      }
      if (clock::now() >= deadline) {
        drop_post();
        counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
        finish_wait();
        return errc::timeout;
      }
      if (!waited) {
        waited = true;
        wait_start = clock::now();
      }

      if (to_post) posted = to_post;
      const wait_outcome got = wait_in_line(deadline, stop, to_post, posted, wait_start, woken_to_compete);
      to_post.reset();
      woken_to_compete = false;
      switch (got.kind) {
        case waiter::granted_connection: {
          const std::uint64_t owned = word::make(got.generation, word::leased);
          if (passes_checks(got.slot, user_checked)) {
            finish_wait();
            return lend_tracked(got.slot, owned, where, waited);
          }
          // It failed its check and was closed: the slot is ours; dial into it if we may, and if
          // no dial we posted is still to deliver (else the slot goes to the line, or free).
          if (const std::optional<std::uint64_t> busy =
                  awaits_dial(posted) ? std::nullopt : leased_to_busy(got.slot, owned);
              busy && take_dial_token()) {
            if (wants_background_dial(deadline, stop)) {
              to_post = dial_job{got.slot, *busy};
              continue;
            }
            finish_wait();
            return dial_for_caller(got.slot, *busy, deadline, stop, where, waited);
          }
          release_slot(got.slot);  // busy or still leased; retired if the pool closed
          continue;
        }
        case waiter::granted_dial: {
          const std::uint64_t owned = word::make(got.generation, word::busy);
          if (wants_background_dial(deadline, stop)) {
            to_post = dial_job{got.slot, owned};
            continue;
          }
          finish_wait();
          return dial_for_caller(got.slot, owned, deadline, stop, where, waited);
        }
        case waiter::pool_closed:
          finish_wait();
          return errc::pool_closed;
        case waiter::granted_new_connection:  // dialed for the line by a dialer thread or the maintainer
          finish_wait();
          return lend_new(got.slot, word::make(got.generation, word::leased), where, waited);
        case waiter::dial_failed:  // the dial a dialer thread ran for the line failed
          finish_wait();
          return got.error;
        case waiter::cancelled:
          counters_.cancellations.fetch_add(1, std::memory_order_relaxed);
          finish_wait();
          return errc::cancelled;
        case timed_out:
          counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
          finish_wait();
          return errc::timeout;
        default:  // retry: woken to compete (fair_waiters = false), or the line changed under us
          // As in Go's sync.Mutex: a woken waiter that loses the race goes back to the front of
          // the line (ahead of younger waiters), not the back, so barging arrivals cannot push it
          // back again and again.
          woken_to_compete = !fair_ && got.kind == waiter::retry;
          NETPOOL_SYNC_POINT("acquire:compete_again");
          continue;
      }
    }
  }

  // Queues, re-checks (INV6, INV7), then (if first in line) spins for up to wait_spin and sleeps until
  // granted, closed, cancelled or the deadline. With `to_post`, hands that dial to a dialer thread once
  // queued. `own_dial`: the dial this get posted last (`to_post` if any); while it has not delivered,
  // the node is passed over for grants of a dial (next_to_grant()) and the free-slot re-check is
  // skipped: that dial's end (end_dial) hands any free slot to the oldest waiter not awaiting its own,
  // and reserving another here would dial twice for one get.
  // `since`: when this get started waiting (kept across retries; fair_waiters = false reads it).
  // `rejoining`: a woken waiter that lost the race for its connection goes back ahead of every
  // younger waiter (waiter_queue::insert_by_age).
  wait_outcome wait_in_line(clock::time_point deadline, const std::stop_token* stop,
                            const std::optional<dial_job>& to_post, const std::optional<dial_job>& own_dial,
                            clock::time_point since, bool rejoining) noexcept {
    waiter node;
    node.waiting_since = since;
    if (own_dial) {
      node.own_dial = &slots_[own_dial->slot].state;
      node.own_dial_word = own_dial->owned;
    }
    bool first_in_line = false;
    bool closed = false;  // (not node.queued: a granter may take the node off the line at once)
    {
      std::lock_guard lock(wait_mutex_);
      closed = is_closed();
      if (!closed) {
        if (rejoining) {
          queue_.insert_by_age(node);
        } else {
          queue_.push_back(node);
        }
        // INV6, INV7, INV8
        waiters_.fetch_add(1, std::memory_order_seq_cst);
        first_in_line = queue_.front() == &node;
      }
    }
    if (closed) {
      if (to_post) abandon_dial(to_post->slot);
      return {waiter::pool_closed, 0, 0, {}};
    }
    NETPOOL_SYNC_POINT("wait_in_line:queued");  // counted in waiters_, not yet re-checked

    // Queued, we are there for the dial's outcome. If no dialer can take it, the slot is freed,
    // which grants it to the oldest waiter awaiting no dial (INV7): at worst us (once freed, the
    // slot no longer holds our dial's word), and we then dial ourselves.
    if (to_post && !post_dial(*to_post)) abandon_dial(to_post->slot);
    // A connection or slot freed just before our increment is found here (a slot: unless our own
    // dial is still to deliver; INV10 says why its end_dial() sees us).
    if (auto reserved = (to_post || awaits_own_dial(node)) ? std::nullopt : reserve_slot()) {
      if (leave_line(node))
        return {waiter::granted_dial, reserved->first, word::generation(reserved->second), {}};
      // A granter already took our node: we get its grant too; give the extra slot back. (If we
      // were only woken to compete for an idle connection, that one saves a dial.)
      release_slot(reserved->first);
      end_dial();
      return await_publication(node);
    }
    // If a granter took our node meanwhile, its publication decides: a grant means we hold two, so
    // we give ours back; `retry` (fair_waiters = false: woken to compete for a connection that
    // went idle) means we have already won, so we keep it. Giving it back instead woke a second
    // waiter to race us for it, and a younger waiter could win it: first in line, yet not served.
    // If we were woken for another connection than the one we took, that wake-up is passed on
    // (INV6: it is idle and someone may wait).
    if (const taken_slot taken = scan_idle_raw(); taken.ok) {
      NETPOOL_SYNC_POINT("wait_in_line:took_idle");
      if (leave_line(node)) return {waiter::granted_connection, taken.slot, taken.generation, {}};
      const wait_outcome granted = await_publication(node);
      if (granted.kind == waiter::retry) {
        if (granted.slot != taken.slot) wake_next_to_compete();
        return {waiter::granted_connection, taken.slot, taken.generation, {}};
      }
      // To the next waiter, idle_since unchanged: it was idle all along, and a fresh stamp would let
      // a connection idle for minutes skip its probe and max_idle_time check.
      (void)make_idle_slow(taken.slot, word::make(taken.generation, word::leased));
      return granted;
    }

    NETPOOL_SYNC_POINT("wait_in_line:rechecked");  // about to spin or sleep

    // The stop callback may run on another thread at any time until it is destroyed (its
    // destructor waits for a running invocation), so it is declared after `node`.
    std::optional<std::stop_callback<canceller>> on_stop;
    if (stop != nullptr && stop->stop_possible()) on_stop.emplace(*stop, canceller{this, &node});

    // Spin for up to wait_spin: a hand-off within that time costs no system call on either side.
    // Only the oldest waiter spins: grants go to it first, and on an oversubscribed machine the
    // others' spinning would only take the CPU from the thread that is about to release. Bounded
    // by time, not by a count of pauses (a `pause` takes ~25 ns here and ~3-40 ns elsewhere): a
    // budget shorter than a hold lets one sleeping waiter start a convoy, each hand-off going to a
    // thread that must first be woken (docs/design.md, "Why the spin is bounded by time"). The
    // clock is read every `spins_per_clock_read` pauses, so the spin may overrun its end by that
    // many; a cancellation or close() ends it through the node.
    if (first_in_line && config_.wait_spin > std::chrono::nanoseconds::zero()) {
      const clock::time_point spin_end = std::min(deadline, deadline_after(config_.wait_spin));
      for (std::uint32_t spin = 1;; ++spin) {
        const std::uint32_t s = node.state.load(std::memory_order_acquire);  // acquire: the grant
        if (!waiter::is_pending(s)) return outcome_of(node, s);
        if (spin == 1) NETPOOL_SYNC_POINT("wait_in_line:spinning");
        cpu_relax();
        if (spin % spins_per_clock_read == 0 && clock::now() >= spin_end) break;
      }
    }
    NETPOOL_SYNC_POINT("wait_in_line:sleep");  // about to ask to be woken
    std::uint32_t expected = waiter::waiting;
    // acq_rel: announce that a granter must wake us; acquire a grant that beat us to it.
    if (node.state.compare_exchange_strong(expected, waiter::sleeping, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
      while (node.state.load(std::memory_order_acquire) == waiter::sleeping) {
        if (futex_wait(node.state, waiter::sleeping, deadline) == wait_status::timed_out) break;
      }
    }
    const std::uint32_t s = node.state.load(std::memory_order_acquire);
    if (!waiter::is_pending(s)) return outcome_of(node, s);
    // The deadline passed. Leave the line, unless a granter already took us off it.
    if (leave_line(node)) return {timed_out, 0, 0, {}};
    return await_publication(node);
  }

  // On x86 a vDSO clock read costs about one `pause` (~25 ns here); elsewhere cpu_relax() is
  // cheaper, and the spin reads the clock relatively more often.
  static constexpr std::uint32_t spins_per_clock_read = 16;

  struct canceller {
    pool_core* core;
    waiter* node;
    void operator()() const noexcept { core->cancel(*node); }
  };

  struct taken_slot {
    std::uint32_t slot = 0;
    std::uint64_t generation = 0;
    bool ok = false;
  };
  // A scan_idle() that takes the slot without validating it: the waiter may still hand it back.
  taken_slot scan_idle_raw() noexcept {
    std::uint32_t from = 0;
    const auto [i, mine] = take_next_idle(from);
    if (i == capacity_) return {};
    return {i, word::generation(mine), true};
  }

  // Takes our node off the line if it is still queued. False if a granter or close() took it
  // first: then a publication is on its way (INV8).
  bool leave_line(waiter& node) noexcept {
    std::lock_guard lock(wait_mutex_);
    if (!node.queued) return false;
    queue_.unlink(node);
    waiters_.fetch_sub(1, std::memory_order_seq_cst);  // INV8
    return true;
  }

  // Runs on whichever thread requests the stop.
  void cancel(waiter& node) noexcept {
    {
      std::lock_guard lock(wait_mutex_);
      if (!node.queued) return;  // already granted or closed: that outcome wins
      queue_.unlink(node);
      waiters_.fetch_sub(1, std::memory_order_seq_cst);  // INV8
    }
    publish(node, waiter::cancelled);
  }

  // Our node was taken off the line by a granter or close(): its publication is imminent.
  wait_outcome await_publication(waiter& node) noexcept {
    for (;;) {
      std::uint32_t s = node.state.load(std::memory_order_acquire);  // acquire: the grant
      if (!waiter::is_pending(s)) return outcome_of(node, s);
      if (s == waiter::waiting) {
        // acq_rel/acquire as in wait_in_line: ask to be woken, or see the grant.
        node.state.compare_exchange_strong(s, waiter::sleeping, std::memory_order_acq_rel,
                                           std::memory_order_acquire);
        continue;
      }
      futex_wait(node.state, waiter::sleeping, clock::time_point::max());
    }
  }

  static wait_outcome outcome_of(const waiter& node, std::uint32_t s) noexcept {
    return {s, node.slot, node.generation, node.error};
  }

  // ---- background maintenance (standard pool) ---------------------------------------------

  void wake_maintainer() noexcept {
    if (lean_ || !config_.background_maintenance) return;
    {
      std::lock_guard lock(maintainer_mutex_);
      maintainer_wake_ = true;
    }
    maintainer_cv_.notify_one();
  }

  void stop_maintainer() noexcept {
    // relaxed: a hint that cuts the round in progress short (keep_alive(), fill_to_min()), so that
    // close() and the destructor do not wait for a check or a dial of every connection; the
    // maintainer's loop still stops on maintainer_stop_, read under the mutex.
    maintainer_stopping_.store(true, std::memory_order_relaxed);
    {
      std::lock_guard lock(maintainer_mutex_);
      maintainer_stop_ = true;
    }
    NETPOOL_SYNC_POINT("stop_maintainer:requested");
    maintainer_cv_.notify_one();
  }
  // Whether a maintenance round should end at the next connection (stop_maintainer()).
  [[nodiscard]] bool maintainer_stopping() const noexcept {
    return maintainer_stopping_.load(std::memory_order_relaxed);  // relaxed: a hint, as stored
  }

  // A dial succeeded, its connection lent or idle: a maintainer asleep with nothing to do must
  // start advancing the tick (the tick itself was refreshed by stamp_new_connection()); and a dial
  // that was in flight when set_max_size() shrank the pool leaves a surplus that the shrink could
  // not close (the slot was busy): a maintenance round trims it, or for lean_pool this dial.
  void after_dial() noexcept {
    // seq_cst: INV11 (pairs with maintainer_loop's store of the flag and load of active_).
    if (uses_tick_ && maintainer_sleeps_indefinitely_.load(std::memory_order_seq_cst)) wake_maintainer();
    // The slot's word became leased or idle before this fence; set_max_size() stores the new limit
    // before shrink_to_max_size()'s fence and reads the words after it. Either we read the new
    // limit below, or the shrink read our slot no longer busy and closed or doomed it (review 19:
    // without the fences both could read the old values). relaxed loads: after the fence.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (active_.load(std::memory_order_relaxed) > max_size()) {
      if (lean_) {
        // No maintainer: the dial trims the surplus itself (closes an idle connection, or dooms a
        // lent one, maybe its own). No dial runs under resize_mutex_, so it is free here.
        std::lock_guard resize(resize_mutex_);
        (void)shrink_to_max_size();
      } else {
        wake_maintainer();  // with background_maintenance off, the next maintain() trims it
      }
    }
  }

  // The tick only moves forward, whoever advances it.
  void advance_tick(clock::time_point now) noexcept {
    raise_to(tick_, ticks_at(now));  // a coarse timestamp; nothing else is published through it
  }

  // Ticks between a stamp and now, zero if the stamp is newer (it was read from the same tick).
  [[gnu::always_inline]] static std::uint64_t ticks_since(std::uint64_t now, std::uint64_t stamp) noexcept {
    return now > stamp ? now - stamp : 0;
  }

  void maintainer_loop() noexcept {
    std::unique_lock lock(maintainer_mutex_);
    while (!maintainer_stop_) {
      maintainer_wake_ = false;
      lock.unlock();
      const std::chrono::nanoseconds next = maintain_once();
      NETPOOL_SYNC_POINT("maintainer:round_done");  // `next` decided from this round's counts
      lock.lock();
      if (maintainer_stop_) break;
      if (maintainer_wake_) continue;
      const auto wake = [this] { return maintainer_stop_ || maintainer_wake_; };
      if (next == std::chrono::nanoseconds::max()) {
        // Nothing is due until a dial, a slot freed below min_size, or close(): no polling.
        // seq_cst: INV11. A dial raises active_ (seq_cst RMW) before its after_dial() loads this
        // flag: either that load sees the flag and wakes us, or this load sees the connection
        // (the round may have counted none just before it was dialed) and we go round again.
        maintainer_sleeps_indefinitely_.store(true, std::memory_order_seq_cst);
        if (uses_tick_ && active_.load(std::memory_order_seq_cst) != 0) {
          maintainer_sleeps_indefinitely_.store(false, std::memory_order_relaxed);
          continue;
        }
        maintainer_cv_.wait(lock, wake);
        maintainer_sleeps_indefinitely_.store(false, std::memory_order_relaxed);
      } else {
        maintainer_cv_.wait_for(lock, next, wake);
      }
    }
  }

 public:
  // One round of maintenance: advance the tick, close stale idle connections, dial up to
  // min_size. Returns the time until the next round is due (nanoseconds::max(): nothing is due).
  std::chrono::nanoseconds maintain_once() noexcept {
    // One round at a time: a manual maintain() may run while the maintainer thread does.
    std::lock_guard round(maintain_round_mutex_);
    advance_tick(pool_now());
    if (track_idle_) reap_idle();
    if (lifetime_ticks_ != 0) expire_lifetimes();
    if (keepalive_ticks_ != 0 && tick_.load(std::memory_order_relaxed) >= next_keepalive_tick_) {
      keep_alive();
      next_keepalive_tick_ = tick_.load(std::memory_order_relaxed) + keepalive_ticks_;
    }
    if (lent_) check_leaks();
    // Dials in flight when set_max_size() shrank the pool may have left a surplus.
    bool surplus_left = false;
    if (active_.load(std::memory_order_relaxed) > max_size()) {
      std::lock_guard resize(resize_mutex_);  // see shrink_to_max_size()
      surplus_left = !shrink_to_max_size();
    }
    fill_to_min();
    if (is_closed()) return std::chrono::nanoseconds::max();
    if (active_.load(std::memory_order_relaxed) < min_size()) {
      // The refill stopped: backing off after a failure, or every dial token is in use by
      // callers (their dials refill the pool too). Come back when a retry is allowed.
      const std::int64_t retry_at = retry_at_ns_.load(std::memory_order_relaxed);  // relaxed: a hint
      const std::int64_t now = pool_now_ns();
      // retry_at may be the saturated maximum (record_dial_result()) and now negative (a clock set
      // before the epoch): no overflow either way.
      constexpr std::int64_t longest = std::numeric_limits<std::int64_t>::max();
      const std::int64_t wait = now < 0 && retry_at > longest + now ? longest : retry_at - now;
      return std::chrono::nanoseconds(std::clamp<std::int64_t>(wait, 1'000'000, 1'000'000'000));
    }
    // Not all of it could be closed or doomed (dials still in flight, a walk cut short): soon again.
    if (surplus_left) return std::chrono::milliseconds(10);
    // With no connection open the maintainer thread may sleep until a dial wakes it (INV11). A
    // caller that runs the rounds itself (background_maintenance = false) gets no such wake-up: a
    // get that dials later would leave its ages unenforced, so it is told the tick period.
    if (uses_tick_ && (active_.load(std::memory_order_relaxed) != 0 || !config_.background_maintenance))
      return tick_period_;
    return std::chrono::nanoseconds::max();
  }

 private:
  // Closes idle connections past their lifetime; dooms lent ones (closed when they come back).
  void expire_lifetimes() noexcept {
    const std::uint64_t now = tick_.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      slot_type& s = slots_[i];
      // acquire: expires_at was written by the slot's owner before its release of the word. It
      // may be rewritten by a new owner as we read it (hence atomic); the CAS in close_idle() /
      // doom_leased() then fails on the generation (INV3), so a stale read decides nothing.
      const std::uint64_t w = s.state.load(std::memory_order_acquire);
      if ((w & word::flag_mask) != 0 || now < s.expires_at.load(std::memory_order_relaxed)) continue;
      if (word::phase(w) == word::idle) {
        (void)close_idle(i, w, close_reason::lifetime);
      } else if (word::phase(w) == word::leased) {
        (void)doom_leased(i, w, close_reason::lifetime);
      }
    }
  }

  // Checks every idle connection (probe, health check) so that dead ones are found before a
  // caller borrows them — including the min_size ones nobody uses. The idle stamp is kept. Stops at
  // the next connection once the pool is closing: each check may take health_check_timeout.
  void keep_alive() noexcept {
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      if (maintainer_stopping()) return;
      slot_type& s = slots_[i];
      std::uint64_t w = s.state.load(std::memory_order_relaxed);  // relaxed: the CAS decides
      if (word::phase(w) != word::idle || (w & word::flag_mask) != 0) continue;
      const std::uint64_t mine = word::next_owner(w, word::busy);
      // seq_cst: before the slot is ours; see the reset check below.
      const std::uint64_t resets_ended = resets_ended_.load(std::memory_order_seq_cst);
      // seq_cst: acquire pairs with make_idle()'s release (we are about to use the connection);
      // and in the one order of the reset check below.
      if (!s.state.compare_exchange_strong(w, mine, std::memory_order_seq_cst, std::memory_order_relaxed))
        continue;
      if (alive(*s.conn) && (!has_health_check_ || healthy(*s.conn))) {
        (void)make_idle_slow(i, mine);  // back as it was (or to a waiter), idle_since unchanged
        // A reset() that scanned the slot while we held it saw it busy and passed it over (busy is
        // "a dial is new"). Such a reset began before the slot came back and had not ended when we
        // took it. seq_cst: these two loads, our CASes and reset()'s counters and scan are in one
        // order: if its scan saw our busy word, its begin comes before the load below and its end
        // after the load above. Looking again when it may not be needed is harmless.
        if (resets_begun_.load(std::memory_order_seq_cst) != resets_ended) {
          reset_slot(i, reset_cutoff_.load(std::memory_order_relaxed));  // relaxed: stored before `begun`
        }
      } else {
        close_conn(s, close_reason::health);
        release_slot(i);
      }
    }
  }

 public:
  // Closes one idle connection (close_reason::reclaimed): the highest idle slot's, as the miss
  // path walks to the lowest (LIFO by index), so the high ones are the least in demand. Not strictly
  // the least recently used: a thread's own hint and walked slots may be any slots. False if none is idle. It
  // is not lent: no get is counted and no hook but on_close runs. A walk over every slot's word, for a rare
  // call (keyed_pool reclaiming room for its global limit), not a hot path.
  bool reclaim_idle() noexcept {
    for (std::uint32_t i = capacity_; i-- > 0;) {
      const std::uint64_t w = slots_[i].state.load(std::memory_order_acquire);  // the CAS decides
      if (word::phase(w) == word::idle && (w & word::flag_mask) == 0 &&
          close_idle(i, w, close_reason::reclaimed))
        return true;
    }
    return false;
  }

  // reset(): closes every idle connection now and every lent one when it comes back; waiters and
  // the pool itself carry on (the maintainer refills min_size).
  void reset() noexcept {
    // Connections numbered up to `cutoff` were dialed before this call; the maintainer may dial
    // replacements while we scan (woken by our own closes), and those must survive.
    const std::uint64_t cutoff = dial_seq_.load(std::memory_order_relaxed);
    // The largest cutoff: of two concurrent resets, the later one's. Published to keep_alive() by
    // the seq_cst increment below.
    raise_to(reset_cutoff_, cutoff);
    // seq_cst: around the scan's seq_cst loads; keep_alive() reads both (see there).
    resets_begun_.fetch_add(1, std::memory_order_seq_cst);
    for (std::uint32_t i = 0; i < capacity_; ++i) reset_slot(i, cutoff);
    resets_ended_.fetch_add(1, std::memory_order_seq_cst);
    wake_maintainer();
  }

 private:
  // reset() for slot i: closes its connection if idle, dooms it if lent, when it was dialed
  // before `cutoff`. A busy slot is left: it is being dialed (new) or checked by keep_alive(),
  // which looks again when it is done.
  void reset_slot(std::uint32_t i, std::uint64_t cutoff) noexcept {
    std::atomic<std::uint64_t>& state = slots_[i].state;
    // seq_cst: between reset()'s two counters (see keep_alive()).
    for (std::uint64_t w = state.load(std::memory_order_seq_cst);;) {
      if ((w & (word::closed | word::doomed)) != 0) return;
      // relaxed: a stale number only makes the CAS below fail on the generation (INV3).
      if (slots_[i].born.load(std::memory_order_relaxed) > cutoff) return;  // dialed after we began
      if ((w & word::transit) != 0) {
        std::this_thread::yield();  // INV5: its owner is a few instructions from done
        w = state.load(std::memory_order_seq_cst);
        continue;
      }
      const std::uint64_t p = word::phase(w);
      if (p == word::idle && close_idle(i, w, close_reason::reset)) return;
      if (p == word::leased && doom_leased(i, w, close_reason::reset)) return;
      if (p == word::free || p == word::busy) return;  // nothing old to close (see above)
      w = state.load(std::memory_order_seq_cst);       // it changed hands: look again
    }
  }

 public:
  // Blocks until min_size connections are open (or the deadline passes, or the pool closes);
  // returns how many are open. Polls every millisecond: a start-up call, not a hot path.
  std::size_t wait_for_min_size(clock::time_point deadline) noexcept {
    for (;;) {
      const pool_stats now = stats();
      const std::size_t open = now.idle + now.in_use;
      if (open >= min_size() || is_closed() || clock::now() >= deadline) return open;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

 private:
  // Closes connections idle longer than max_idle_time while more than min_size are open.
  void reap_idle() noexcept {
    const std::uint64_t now = tick_.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      if (active_.load(std::memory_order_relaxed) <= min_size()) return;
      slot_type& s = slots_[i];
      // acquire: pairs with make_idle()'s release, so that the stamp read below is this idle
      // period's, not the last one's (the CAS would not notice: the word has not changed since).
      std::uint64_t w = s.state.load(std::memory_order_acquire);
      if (word::phase(w) != word::idle || (w & word::flag_mask) != 0) continue;
      // The stamp may be newer if the slot changes hands now; the CAS below then fails (INV3).
      if (ticks_since(now, s.idle_since.load(std::memory_order_relaxed)) < max_idle_ticks_) continue;
      const std::uint64_t mine = word::next_owner(w, word::busy);
      // acquire: pairs with make_idle()'s release; we are about to destroy the connection.
      if (!s.state.compare_exchange_strong(w, mine, std::memory_order_acquire, std::memory_order_relaxed))
        continue;
      close_conn(s, close_reason::idle);
      release_slot(i);
    }
  }

  // Dials until min_size connections are open, or a dial fails, or backoff or max_connecting
  // says not now. A new connection goes to the oldest waiter, or idle.
  void fill_to_min() noexcept {
    // One dial after another, each up to dial_timeout: a closing pool stops at the next one.
    while (!is_closed() && !maintainer_stopping() && active_.load(std::memory_order_relaxed) < min_size()) {
      if (backoff_error()) return;
      auto reserved = reserve_slot();
      if (!reserved) return;
      if (!dial_for_pool(reserved->first, reserved->second)) return;
    }
  }

  // Dials into slot i (ours, busy or leased, holding a dial token) on the pool's own deadline,
  // for whoever comes first: the oldest waiter, else the idle set. Gives the token back. False
  // if the dial failed (the slot is then freed, or handed to a waiter, who fails fast).
  // `for_waiter`: the dial was posted by a caller (wait_in_line); its failure goes to the
  // oldest waiter, as it would have gone to a caller that dialed on its own thread.
  bool dial_for_pool(std::uint32_t i, std::uint64_t owned, bool for_waiter = false) noexcept {
    result<Conn> made = call_factory(dial_deadline(clock::now()));
    if (!made) {
      // The oldest waiter gets the error: out of line before the slot is released (or the slot
      // would go to it, to dial again), told after (so that a caller whose get failed does not
      // find the dial still in stats()). A node off the line waits for its outcome (INV8); the
      // core outlives this thread (destroy_handle() joins it).
      waiter* failed = for_waiter ? take_oldest_waiter() : nullptr;
      NETPOOL_SYNC_POINT("dial_for_pool:failed");  // the waiter, if any, must not be told yet
      release_slot(i);
      end_dial();
      if (failed != nullptr) tell_dial_failed(*failed, made.error());
      return false;
    }
    slots_[i].conn.emplace(std::move(*made));
    stamp_new_connection(slots_[i]);
    // To the oldest waiter as a new connection (it skips the checks a pooled one gets), else
    // idle. relaxed: a shortcut; make_idle() keeps INV6 for a waiter that arrives meanwhile.
    if (waiters_.load(std::memory_order_relaxed) == 0 || !grant(i, owned, waiter::granted_new_connection)) {
      (void)make_idle(i, owned);  // closes it instead if the pool closed meanwhile
    }
    NETPOOL_SYNC_POINT("dial_for_pool:delivered");  // its token still held: end_dial() to come
    after_dial();  // the slot no longer busy: a shrink can see it (see after_dial())
    end_dial();
    return true;
  }

  // ---- dialer threads (standard pool) ---------------------------------------------------------
  // A caller that may give up before a dial would end (its deadline is sooner than the dial's, or
  // it can be cancelled) does not dial on its own thread: a dialer thread dials on the pool's
  // deadline, and the caller waits in line. If it gives up, the dial still completes and its
  // connection goes to the next waiter or the idle set: no half-finished handshake is thrown away,
  // and a backend that answers slowly is not hit by one abandoned connection per impatient caller.
  // At most max_connecting threads (the dial tokens bound the jobs too), started on first need,
  // parked on a condition variable, joined when the pool handle is destroyed.

  // Should this caller's dial run on a dialer thread? Yes when the caller may give up before the
  // dial would end (a sooner deadline, or a stop token) and dialer threads are possible.
  bool wants_background_dial(clock::time_point caller_deadline, const std::stop_token* stop) noexcept {
    // lean_pool, and a pool without background_maintenance, start no thread: the caller dials, on
    // its own deadline. So does every caller once starting a dialer thread has failed.
    if (max_dialers_ == 0 || dialers_unavailable_.load(std::memory_order_relaxed)) return false;
    const clock::time_point now = clock::now();
    // Past its deadline, the caller is not owed a dial at all: dial_for_caller() says timeout.
    if (now >= caller_deadline) return false;
    const bool may_give_up =
        (stop != nullptr && stop->stop_possible()) || caller_deadline < dial_deadline(now);
    return may_give_up && !backoff_error();  // backing off: dial_for_caller() fails fast with it
  }

  // A reserved slot (with its dial token) nobody will dial into after all.
  void abandon_dial(std::uint32_t i) noexcept {
    release_slot(i);  // to the oldest waiter to dial into, or free (retired if the pool closed)
    end_dial();
  }

  bool post_dial(dial_job job) noexcept {
    {
      std::lock_guard lock(dialer_mutex_);
      if (dialers_stop_ || job_count_ == max_dialers_) return false;
      if (idle_dialers_ <= job_count_ && dialers_.size() < max_dialers_) {
        try {
          dialers_.emplace_back([this] { dialer_loop(); });  // capacity reserved: only the thread throws
        } catch (...) {  // std::system_error (no thread), std::bad_alloc (its state): dial ourselves
          if (dialers_.empty()) {
            // relaxed: a hint read by wants_background_dial(); callers dial themselves from now on.
            dialers_unavailable_.store(true, std::memory_order_relaxed);
            return false;
          }
        }
      }
      jobs_[(job_head_ + job_count_) % max_dialers_] = job;
      ++job_count_;
    }
    dialer_cv_.notify_one();
    return true;
  }

  void dialer_loop() noexcept {
    std::unique_lock lock(dialer_mutex_);
    for (;;) {
      ++idle_dialers_;
      dialer_cv_.wait(lock, [this] { return dialers_stop_ || job_count_ != 0; });
      --idle_dialers_;
      if (job_count_ == 0) return;  // stopping, and nothing left to finish
      const dial_job job = jobs_[job_head_];
      job_head_ = (job_head_ + 1) % max_dialers_;
      --job_count_;
      lock.unlock();
      if (is_closed()) {
        abandon_dial(job.slot);  // retires it (closed flag): no dial for a closed pool
      } else {
        (void)dial_for_pool(job.slot, job.owned, /*for_waiter=*/true);
      }
      lock.lock();
    }
  }

  // fair_waiters = false, Go's sync.Mutex policy: a connection returned while someone waits goes
  // back to the idle set, where threads arriving meanwhile may take it (barging keeps the
  // connection busy while the woken waiter is still being scheduled), and the oldest waiter leaves
  // the line to compete for it. But a waiter that has waited longer than starvation_threshold gets it
  // directly, as in FIFO mode, so no waiter starves. We hold slot i in transit (word
  // `transit_word`, idle). True when the waiter was handed the connection.
  bool regrant_unfair(std::uint32_t i, std::uint64_t transit_word) noexcept {
    slot_type& s = slots_[i];
    // After the unlock the node is ours until we publish to it (INV8), and the slot stays ours
    // while its transit bit is set (INV5).
    waiter* w = take_oldest_waiter();
    const bool starving = w != nullptr && clock::now() - w->waiting_since >= config_.starvation_threshold;
    if (starving) {
      const std::uint64_t theirs = word::next_owner(transit_word & ~word::transit, word::leased);
      // release: INV5 lets us store; the waiter acquires through the node's publication.
      s.state.store(theirs, std::memory_order_release);
      w->slot = i;
      w->generation = word::generation(theirs);
    } else {
      // release: clears transit (INV5) and publishes the connection to whoever takes it.
      s.state.store(transit_word & ~word::transit, std::memory_order_release);
      if (w != nullptr) w->slot = i;  // which connection `retry` is for (wait_in_line reads it)
    }
    if (w != nullptr) publish(*w, starving ? waiter::granted_connection : waiter::retry);
    return starving;
  }

  // Takes the oldest waiter off the line (nullptr if none). Its node is then ours alone until we
  // publish to it: we may fill it in after the unlock (INV8).
  waiter* take_oldest_waiter() noexcept {
    std::lock_guard lock(wait_mutex_);
    waiter* w = queue_.pop_front();
    if (w != nullptr) waiters_.fetch_sub(1, std::memory_order_seq_cst);  // INV8
    return w;
  }

  // fair_waiters = false: the oldest waiter is woken to compete for a connection that went idle.
  // A spurious wake-up (someone took it meanwhile) costs that waiter a turn round its loop.
  void wake_next_to_compete() noexcept {
    if (waiter* w = take_oldest_waiter()) {
      w->slot = capacity_;  // for whichever connection is idle
      publish(*w, waiter::retry);
    }
  }

  // A waiter taken off the line: the dial it waited for failed with `error`.
  void tell_dial_failed(waiter& w, const std::error_code& error) noexcept {
    w.error = error;  // published by the release in publish()
    publish(w, waiter::dial_failed);
  }

  // Waits for the dials in flight (each bounded by dial_timeout); jobs not started are retired.
  void stop_dialers() noexcept {
    {
      std::lock_guard lock(dialer_mutex_);
      dialers_stop_ = true;
    }
    dialer_cv_.notify_all();
    for (std::thread& t : dialers_) {
      if (t.joinable()) t.join();
    }
  }

  // ---- data ---------------------------------------------------------------------------------
  // Read on every get/put, written never or rarely: one line, shared read-only by all cores.
  alignas(cache_line) const std::uint64_t id_;
  const std::uint32_t hint_way_;  // id_ % hint_ways: this pool's entry in the thread hints
  const std::uint32_t capacity_;  // slots allocated: max_size_limit (the most set_max_size allows)
  const bool lean_;
  const bool track_idle_;
  const bool has_health_check_;
  const bool probes_;                // the built-in liveness probe runs on borrow (Conn has probe())
  const bool checks_every_get_;      // health check, on_borrow or leak tracking: every get goes to hand_out()
  const bool checks_on_get_;         // hand_out() may have to look at the connection
  const bool stamps_idle_;           // a put records idle_since (idle tracking or the probe reads it)
  const bool fair_;                  // fair_waiters: returned connections go to the oldest waiter
  const std::uint32_t waiter_gate_;  // ~0 when fair (waiters block the fast path), 0 when not
  enum class put_work : std::uint8_t { none, stamp, hooks };
  const put_work put_work_;  // what a put does besides the CAS: one test on the fast path
  const std::uint64_t max_idle_ticks_;
  pool_config<Conn> config_;
  const std::size_t max_connecting_;
  const std::size_t max_dialers_;        // min(max_connecting, slots); 0: no dialer threads (lean_pool,
                                         // or background_maintenance off)
  const std::uint64_t probe_ticks_;      // probe a connection idle at least this long
  const std::uint64_t lifetime_ticks_;   // 0: no max_lifetime
  const std::uint64_t keepalive_ticks_;  // 0: no keepalive rounds
  const std::int64_t leak_ns_;           // leak_threshold; 0: leak detection off
  const bool uses_tick_;                 // someone reads tick_: the maintainer must advance it
  const std::uint64_t fast_ticks_;       // idle less than this: lend without any check
  const std::chrono::nanoseconds tick_period_;
  std::mutex maintain_round_mutex_;        // serialises maintenance rounds
  std::uint64_t next_keepalive_tick_ = 0;  // guarded by maintain_round_mutex_
  const clock::time_point epoch_;
  const std::unique_ptr<slot_type[]> slots_;
  const std::uint32_t bitmap_words_;  // of free_: slot i's bit is bit i % 64 of free_[i / 64]
  // INV12: slot i's bit in listed_ is set when slot i may be idle. The miss path looks for idle
  // connections here, 64 slots to a load, instead of reading every slot's own line, which made a
  // get+put on a pool of 10 000 half in use ~60x one on a pool of 100. The hot path never writes
  // it (relist() and unlist() run on the miss path only). listed_ has 2^stripe_shift_ stripes,
  // each with a bit for every slot (bit i % 64 of its word i / 64: listed_word_of(),
  // listed_bit_of()). A put lists its slot in its CPU's stripe (relist()), so a slot's bit moves
  // with the CPU that returned it; a slot may be listed in more than one stripe for a while
  // (INV12). Each stripe's words start a line of their own (listed_stride_ is a multiple of a
  // line, the array line-aligned), so that a walk or a put in one stripe writes no line of
  // another: with one shared line, 12 held per thread cost 4-6x the mutex pool at 2 threads
  // (docs/design.md, "Stripes of the idle bitmap"). With one stripe (pools of up to 64 slots, or
  // one CPU) this is the plain layout.
  const std::uint32_t stripe_shift_;
  const std::uint32_t stripe_words_;   // words of listed_ that hold one stripe's bits (all slots')
  const std::uint32_t listed_stride_;  // from one stripe's first word to the next's
  const std::unique_ptr<std::atomic<std::uint64_t>[]> listed_storage_;  // listed_, plus alignment
  std::atomic<std::uint64_t>* const listed_;
  // INV13: bit k % 64 of listed_summary_[k / 64] is set when listed_[k] may be non-zero, so that
  // the lean miss walk (take_lowest_idle()) skips 64 empty words to a load: on a pool of 10 000
  // with the lower half in use, a walk crossed 78 empty words, 117-173 ns a get+put against 41-65
  // at 100. Only for pools whose stripes are past one line of words (summarized_): below that a
  // stripe's walk is one line.
  const bool summarized_;
  const std::uint32_t summary_words_;
  const std::unique_ptr<std::atomic<std::uint64_t>[]> listed_summary_;
  // INV14: bit i % 64 of free_[i / 64] is set when slot i is free, so that a dial finds a free
  // slot 64 to a load. Scanning every slot's own line from 0 made a dial pay for every slot in
  // use: filling a pool of 9 000 (bench/fill.cpp), 6.0-8.2 us a get+dial over the first quarter
  // and 10.7-17.3 us over the last, against 5.1-7.1 us in every quarter with the bitmap.
  const std::unique_ptr<std::atomic<std::uint64_t>[]> free_;
  const std::unique_ptr<lent_info[]> lent_;  // leak detection only: who holds each lent slot

  // Read on every get and put; written only when callers start or stop waiting.
  alignas(cache_line) std::atomic<std::uint32_t> waiters_{0};
  // Read on every put and checked get (standard pool); written by the maintainer each tick.
  alignas(cache_line) std::atomic<std::uint64_t> tick_{0};
  // Written on dials and closes only (INV2).
  alignas(cache_line) std::atomic<std::size_t> active_{0};
  // max_size and min_size, changed at run time by set_max_size / set_min_size (under resize_mutex_).
  // Read relaxed: a resize takes effect for the operations that start after it.
  std::atomic<std::size_t> limit_;
  std::atomic<std::size_t> min_;
  std::mutex resize_mutex_;  // set_max_size, set_min_size, shrink_to_max_size
  std::atomic<bool> closed_{false};
  std::atomic<std::uint32_t> refs_{1};          // INV9
  std::atomic<std::size_t> connecting_{0};      // dials in flight (INV10)
  std::atomic<std::uint64_t> dial_seq_{0};      // connections dialed so far (reset()'s cutoff)
  std::atomic<std::uint64_t> resets_begun_{0};  // reset() calls begun and ended: keep_alive() looks
  std::atomic<std::uint64_t> resets_ended_{0};  // again when one may have scanned past its slot
  std::atomic<std::uint64_t> reset_cutoff_{0};  // the largest cutoff of those calls
  std::atomic<std::int64_t> retry_at_ns_{0};    // pool time before which no dial is tried; 0: none

  std::mutex dial_mutex_;  // guards the three below; taken only when dials fail or recover
  std::error_code last_dial_error_;
  std::chrono::nanoseconds backoff_{0};
  std::minstd_rand jitter_;

  slow_counters counters_;
  std::mutex leak_mutex_;  // a leaked lease's two reports, in order (check_leaks, report_if_leaked)

  alignas(cache_line) std::mutex wait_mutex_;
  waiter_queue queue_;  // guarded by wait_mutex_

  std::mutex maintainer_mutex_;
  std::condition_variable maintainer_cv_;
  bool maintainer_stop_ = false;                  // guarded by maintainer_mutex_
  bool maintainer_wake_ = false;                  // guarded by maintainer_mutex_
  std::atomic<bool> maintainer_stopping_{false};  // set once, with maintainer_stop_
  std::atomic<bool> maintainer_sleeps_indefinitely_{false};
  std::thread maintainer_;

  std::mutex dialer_mutex_;  // guards everything down to dialers_ (taken only to hand off dials)
  std::condition_variable dialer_cv_;
  std::unique_ptr<dial_job[]> jobs_;  // a ring of max_dialers_ (a job holds a dial token and a slot)
  std::size_t job_head_ = 0;
  std::size_t job_count_ = 0;
  std::size_t idle_dialers_ = 0;
  bool dialers_stop_ = false;
  std::atomic<bool> dialers_unavailable_{false};  // no dialer thread could be started
  std::vector<std::thread> dialers_;              // capacity reserved: starting one does not reallocate
};

}  // namespace netpool::detail
