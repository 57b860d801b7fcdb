#include "tools/loadgen/pacer.h"

#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

constexpr int64_t kMs = 1000000;

TEST(RatePacerTest, NothingIsDueBeforeStart) {
  RatePacer pacer(1000, 10 * kMs, 100);
  EXPECT_EQ(pacer.Due(5 * kMs), 0);
}

TEST(RatePacerTest, SendsFollowTheScheduleNotTheCaller) {
  RatePacer pacer(1000, 0, 1000);  // One per millisecond.
  EXPECT_EQ(pacer.Due(0), 1);
  pacer.Take(1);
  EXPECT_EQ(pacer.Due(kMs / 2), 0);
  // 10 ms later, sends at 1..10 ms are due regardless of when we asked.
  EXPECT_EQ(pacer.Due(10 * kMs), 10);
  pacer.Take(4);
  EXPECT_EQ(pacer.Due(10 * kMs), 6);
}

TEST(RatePacerTest, RateOverOneSecondIsExact) {
  RatePacer pacer(12345, 0, 1 << 30);
  int64_t sent = 0;
  for (int64_t t = 0; t < 1000 * kMs; t += kMs / 3) {
    const int64_t due = pacer.Due(t);
    pacer.Take(due);
    sent += due;
  }
  EXPECT_NEAR(sent, 12345, 2);
}

TEST(RatePacerTest, DebtIsCappedAndSkippedSendsAreCounted) {
  RatePacer pacer(1000, 0, 5);
  // A 100 ms stall: 101 sends scheduled, only 5 may burst.
  EXPECT_EQ(pacer.Due(100 * kMs), 5);
  EXPECT_EQ(pacer.skipped(), 96);
  pacer.Take(5);
  EXPECT_EQ(pacer.Due(100 * kMs), 0);
  EXPECT_EQ(pacer.Due(101 * kMs), 1);
}

TEST(RatePacerTest, NextDueIsTheNextScheduledSend) {
  RatePacer pacer(100, 0, 10);  // Every 10 ms.
  pacer.Take(pacer.Due(0));
  EXPECT_EQ(pacer.NextDueNanos(), 10 * kMs);
}

}  // namespace
}  // namespace parley::loadgen
