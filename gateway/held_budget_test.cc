#include "gateway/held_budget.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

TEST(HeldBudgetTest, ReservesUpToTheLimitAndNoFurther) {
  HeldBudget budget(100);
  EXPECT_TRUE(budget.TryReserve(60));
  EXPECT_TRUE(budget.TryReserve(40));
  EXPECT_FALSE(budget.TryReserve(1));
  EXPECT_EQ(budget.used(), 100u);
  budget.Release(40);
  EXPECT_FALSE(budget.TryReserve(41));
  EXPECT_TRUE(budget.TryReserve(40));
}

TEST(HeldBudgetTest, AReservationLargerThanTheLimitFailsWithoutOverflow) {
  HeldBudget budget(100);
  ASSERT_TRUE(budget.TryReserve(90));
  EXPECT_FALSE(budget.TryReserve(~size_t{0}));
  EXPECT_EQ(budget.used(), 90u);
}

TEST(HeldBudgetTest, ConcurrentReservationsNeverExceedTheLimit) {
  constexpr size_t kLimit = 1000;
  HeldBudget budget(kLimit);
  std::atomic<size_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        if (budget.TryReserve(7)) granted.fetch_add(7);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(granted.load(), kLimit);
  EXPECT_EQ(budget.used(), granted.load());
  EXPECT_GT(granted.load(), kLimit - 7);
}

}  // namespace
}  // namespace parley::gateway
