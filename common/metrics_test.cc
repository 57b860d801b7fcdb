#include "common/metrics.h"

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CounterRendersWithHelpTypeAndLabels) {
  Registry r;
  r.GetCounter("parley_closes_total", "Closes by code.", {{"code", "1009"}})
      .Increment(3);
  r.GetCounter("parley_closes_total", "Closes by code.", {{"code", "1001"}})
      .Increment();
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# HELP parley_closes_total Closes by code.\n"
                              "# TYPE parley_closes_total counter\n"));
  EXPECT_THAT(text, HasSubstr("parley_closes_total{code=\"1009\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("parley_closes_total{code=\"1001\"} 1\n"));
}

TEST(MetricsTest, SameNameAndLabelsIsTheSameMetric) {
  Registry r;
  Counter& a = r.GetCounter("c", "h", {{"k", "v"}});
  Counter& b = r.GetCounter("c", "h", {{"k", "v"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &r.GetCounter("c", "h", {{"k", "w"}}));
}

TEST(MetricsTest, GaugeGoesUpAndDown) {
  Registry r;
  Gauge& g = r.GetGauge("parley_connections", "Open connections.");
  g.Add(5);
  g.Add(-2);
  EXPECT_THAT(r.Render(), HasSubstr("parley_connections 3\n"));
  g.Set(-1);
  EXPECT_THAT(r.Render(), HasSubstr("parley_connections -1\n"));
}

TEST(MetricsTest, BucketBoundsAndValuesPrintAsShortDecimals) {
  Registry r;
  Histogram& h =
      r.GetHistogram("t_seconds", "T.", {1e-05, 0.00025, 0.1, 0.3, 2.5e6});
  h.Observe(0.1 + 0.2);  // 0.30000000000000004 must keep its digits.
  Gauge& g = r.GetGauge("g", "G.");
  g.Set(7);
  std::string text = r.Render();
  for (const char* le : {"0.00025", "0.1", "0.3", "1e-05", "2.5e+06"}) {
    EXPECT_THAT(text,
                HasSubstr(absl::StrCat("t_seconds_bucket{le=\"", le, "\"}")));
  }
  EXPECT_THAT(text, HasSubstr("t_seconds_sum 0.30000000000000004\n"));
  EXPECT_THAT(text, HasSubstr("g 7\n"));
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry r;
  Histogram& h = r.GetHistogram("lat_seconds", "Latency.", {0.001, 0.01});
  h.Observe(0.0005);
  h.Observe(0.001);  // On the bound: counts in le="0.001".
  h.Observe(0.005);
  h.Observe(2);
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE lat_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"0.001\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"0.01\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_bucket{le=\"+Inf\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_sum 2.0065"));
  EXPECT_THAT(text, HasSubstr("lat_seconds_count 4\n"));
}

TEST(MetricsTest, HistogramLabelsComeBeforeLe) {
  Registry r;
  r.GetHistogram("h", "help", {1}, {{"op", "append"}}).Observe(0.5);
  EXPECT_THAT(r.Render(), HasSubstr("h_bucket{op=\"append\",le=\"1\"} 1\n"));
  EXPECT_THAT(r.Render(), HasSubstr("h_count{op=\"append\"} 1\n"));
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  Registry r;
  r.GetCounter("c", "h", {{"reason", "a \"b\"\\\n"}}).Increment();
  EXPECT_THAT(r.Render(), HasSubstr("c{reason=\"a \\\"b\\\"\\\\\\n\"} 1\n"));
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter& c = r.GetCounter("c", "h");
  Histogram& h = r.GetHistogram("h", "h", {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Increment();
        h.Observe(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 40000u);
  EXPECT_EQ(h.Count(), 40000u);
  EXPECT_DOUBLE_EQ(h.Sum(), 40000);
}

TEST(MetricsTest, ProcessMetricsReadProc) {
  Registry r;
  AddProcessMetrics(r);
  std::string text = r.Render();
  EXPECT_THAT(text, HasSubstr("# TYPE process_resident_memory_bytes gauge"));
  EXPECT_THAT(text, HasSubstr("process_cpu_seconds_total "));
  EXPECT_THAT(text, HasSubstr("process_open_fds "));
  EXPECT_THAT(text, HasSubstr("process_start_time_seconds "));
  EXPECT_THAT(text,
              ::testing::Not(HasSubstr("process_resident_memory_bytes 0\n")));
}

}  // namespace
}  // namespace parley
