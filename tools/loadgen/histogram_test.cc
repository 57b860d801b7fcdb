#include "tools/loadgen/histogram.h"

#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

TEST(LatencyHistogramTest, EmptyHistogramReportsZeros) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.Percentile(99), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.min(), 0);
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram h;
  for (int v = 1; v <= 100; ++v) h.Record(v);
  EXPECT_EQ(h.Percentile(50), 50);
  EXPECT_EQ(h.Percentile(99), 99);
  EXPECT_EQ(h.Percentile(100), 100);
  EXPECT_EQ(h.min(), 1);
  EXPECT_DOUBLE_EQ(h.Mean(), 50.5);
}

TEST(LatencyHistogramTest, LargeValuesAreWithinTwoPercent) {
  LatencyHistogram h;
  // 1..10000 microseconds.
  for (int64_t us = 1; us <= 10000; ++us) h.Record(us * 1000);
  const struct {
    double percent;
    int64_t exact;
  } cases[] = {{50, 5000000}, {90, 9000000}, {99, 9900000}, {99.9, 9990000}};
  for (const auto& c : cases) {
    const int64_t got = h.Percentile(c.percent);
    EXPECT_GE(got, c.exact) << c.percent;
    EXPECT_LE(got, c.exact + c.exact / 50) << c.percent;
  }
  EXPECT_EQ(h.max(), 10000000);
  EXPECT_EQ(h.Percentile(100), 10000000);
}

TEST(LatencyHistogramTest, TailPercentileSeesTheOutlier) {
  LatencyHistogram h;
  for (int i = 0; i < 999; ++i) h.Record(1000);
  h.Record(50000000);
  EXPECT_LE(h.Percentile(99), 1000);
  EXPECT_GE(h.Percentile(99.95), 49000000);
  EXPECT_EQ(h.max(), 50000000);
}

TEST(LatencyHistogramTest, NegativeValuesCountAsZero) {
  LatencyHistogram h;
  h.Record(-5);
  EXPECT_EQ(h.count(), 1);
  EXPECT_EQ(h.Percentile(50), 0);
}

TEST(LatencyHistogramTest, MergeAddsCountsAndKeepsExtremes) {
  LatencyHistogram a, b;
  a.Record(10);
  a.Record(20);
  b.Record(5);
  b.Record(1000000);
  a.Merge(b);
  EXPECT_EQ(a.count(), 4);
  EXPECT_EQ(a.min(), 5);
  EXPECT_EQ(a.max(), 1000000);
  EXPECT_EQ(a.Percentile(50), 10);
}

TEST(LatencyHistogramTest, HugeValuesDoNotOverflow) {
  LatencyHistogram h;
  h.Record(INT64_MAX);
  EXPECT_EQ(h.Percentile(50), INT64_MAX);
}

}  // namespace
}  // namespace parley::loadgen
