// waiter_queue: the intrusive FIFO of blocked callers. insert_by_age() is how a waiter woken to
// compete (fair_waiters = false) and beaten goes back in line: ahead of every younger waiter, behind
// every older one.
#include "netpool/detail/waiter_queue.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <vector>

namespace {

using netpool::detail::waiter;
using netpool::detail::waiter_queue;
using std::chrono::steady_clock;

steady_clock::time_point at(int ms) {
  return steady_clock::time_point(std::chrono::milliseconds(ms));
}

std::vector<waiter*> drain(waiter_queue& q) {
  std::vector<waiter*> order;
  while (waiter* w = q.pop_front()) order.push_back(w);
  return order;
}

TEST(WaiterQueueTest, PushBackIsFirstInFirstOut) {
  std::array<waiter, 3> w;
  waiter_queue q;
  for (waiter& n : w) q.push_back(n);
  EXPECT_EQ(q.front(), &w[0]);
  EXPECT_EQ(drain(q), (std::vector<waiter*>{&w[0], &w[1], &w[2]}));
  EXPECT_TRUE(q.empty());
  for (const waiter& n : w) EXPECT_FALSE(n.queued);
}

TEST(WaiterQueueTest, InsertByAgeGoesAheadOfYoungerWaitersOnly) {
  std::array<waiter, 4> w;
  w[0].waiting_since = at(10);
  w[1].waiting_since = at(20);
  w[2].waiting_since = at(30);
  w[3].waiting_since = at(15);  // rejoins: younger than w[0], older than w[1]
  waiter_queue q;
  q.push_back(w[0]);
  q.push_back(w[1]);
  q.push_back(w[2]);
  q.insert_by_age(w[3]);
  EXPECT_TRUE(w[3].queued);
  EXPECT_EQ(drain(q), (std::vector<waiter*>{&w[0], &w[3], &w[1], &w[2]}));
}

// Two waiters woken by two returns, both beaten: the older must end up first, whatever order they
// rejoin in (pushing each at the front would put the younger first).
TEST(WaiterQueueTest, TwoRejoinersKeepTheirOrderWhicheverRejoinsFirst) {
  std::array<waiter, 3> w;
  w[0].waiting_since = at(1);  // woken first
  w[1].waiting_since = at(2);  // woken second
  w[2].waiting_since = at(3);  // still in line
  waiter_queue q;
  q.push_back(w[2]);
  q.insert_by_age(w[0]);
  q.insert_by_age(w[1]);
  EXPECT_EQ(q.front(), &w[0]);
  EXPECT_EQ(drain(q), (std::vector<waiter*>{&w[0], &w[1], &w[2]}));
}

TEST(WaiterQueueTest, InsertByAgeIntoAnEmptyQueueOrBehindOlderOnes) {
  std::array<waiter, 2> w;
  w[0].waiting_since = at(1);
  w[1].waiting_since = at(5);
  waiter_queue q;
  q.insert_by_age(w[1]);
  EXPECT_EQ(q.front(), &w[1]);
  q.insert_by_age(w[0]);
  EXPECT_EQ(q.front(), &w[0]);
  EXPECT_EQ(drain(q), (std::vector<waiter*>{&w[0], &w[1]}));
}

TEST(WaiterQueueTest, UnlinkFromTheMiddleKeepsTheRestInOrder) {
  std::array<waiter, 3> w;
  waiter_queue q;
  for (waiter& n : w) q.push_back(n);
  q.unlink(w[1]);
  EXPECT_FALSE(w[1].queued);
  q.unlink(w[1]);  // a second unlink is a no-op
  EXPECT_EQ(drain(q), (std::vector<waiter*>{&w[0], &w[2]}));
}

// insert_by_age() with a tie: a rejoining waiter goes "before every node that began waiting later
// than it", so behind one that began waiting at the same instant (the existing tests use distinct
// times only).
TEST(WaiterQueueTest, InsertByAgeGoesBehindAWaiterOfTheSameAge) {
  using netpool::detail::waiter;
  std::array<waiter, 3> w;
  const auto t = std::chrono::steady_clock::time_point(std::chrono::milliseconds(5));
  w[0].waiting_since = t;
  w[1].waiting_since = t + std::chrono::milliseconds(1);
  w[2].waiting_since = t;  // rejoins: same age as w[0]
  netpool::detail::waiter_queue q;
  q.push_back(w[0]);
  q.push_back(w[1]);
  q.insert_by_age(w[2]);
  std::vector<waiter*> order;
  while (waiter* x = q.pop_front()) order.push_back(x);
  EXPECT_EQ(order, (std::vector<waiter*>{&w[0], &w[2], &w[1]}));
}

}  // namespace
