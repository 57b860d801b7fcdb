#include "gateway/token_bucket.h"

#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

TEST(TokenBucketTest, AllowsBurstThenRefillsAtRate) {
  const absl::Time t0 = absl::FromUnixSeconds(100);
  TokenBucket bucket(/*rate_per_second=*/2, /*burst=*/3, t0);
  EXPECT_TRUE(bucket.TryTake(t0));
  EXPECT_TRUE(bucket.TryTake(t0));
  EXPECT_TRUE(bucket.TryTake(t0));
  EXPECT_FALSE(bucket.TryTake(t0));
  EXPECT_FALSE(bucket.TryTake(t0 + absl::Milliseconds(400)));
  EXPECT_TRUE(bucket.TryTake(t0 + absl::Milliseconds(500)));
  EXPECT_FALSE(bucket.TryTake(t0 + absl::Milliseconds(500)));
}

TEST(TokenBucketTest, TakesManyTokensAtOnceOrNone) {
  const absl::Time t0 = absl::FromUnixSeconds(100);
  TokenBucket bucket(/*rate_per_second=*/1000, /*burst=*/1500, t0);
  EXPECT_TRUE(bucket.TryTake(t0, 1000));
  EXPECT_FALSE(bucket.TryTake(t0, 600));  // 500 left: nothing is taken.
  EXPECT_DOUBLE_EQ(bucket.Available(t0), 500.0);
  EXPECT_TRUE(bucket.TryTake(t0 + absl::Milliseconds(100), 600));
}

TEST(TokenBucketTest, NeverHoldsMoreThanTheBurst) {
  const absl::Time t0 = absl::FromUnixSeconds(100);
  TokenBucket bucket(1000, 2, t0);
  EXPECT_DOUBLE_EQ(bucket.Available(t0 + absl::Hours(1)), 2.0);
}

}  // namespace
}  // namespace parley::gateway
