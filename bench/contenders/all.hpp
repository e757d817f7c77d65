// bench/contenders/all.hpp — the seven pool contenders, in the order the report lists them.
#pragma once

#include "apr_reslist.hpp"
#include "moodycamel_queue.hpp"
#include "mutex_pool.hpp"
#include "netpool_pools.hpp"
#include "poco_objectpool.hpp"
#include "tbb_queue.hpp"

namespace bench {

template <class... C>
struct type_list {};

// Calls f.template operator()<C>() for each type of the list, in order.
template <class... C, class F>
void for_each_type(type_list<C...>, F&& f) {
  (f.template operator()<C>(), ...);
}

using pool_contenders = type_list<netpool_standard, netpool_basic, mutex_pool, poco_objectpool, apr_reslist,
                                  tbb_queue, moodycamel_queue>;
// handoff/ also measures netpool without FIFO hand-off.
using handoff_contenders = type_list<netpool_standard, netpool_basic, netpool_basic_unfair, mutex_pool,
                                     poco_objectpool, apr_reslist, tbb_queue, moodycamel_queue>;

}  // namespace bench
