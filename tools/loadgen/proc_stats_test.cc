#include "tools/loadgen/proc_stats.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

TEST(ProcStatsTest, ParsesVmRss) {
  constexpr char kStatus[] =
      "Name:\tparley-gateway\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\n"
      "Threads:\t3\n";
  absl::StatusOr<int64_t> rss = ParseRssKib(kStatus);
  ASSERT_TRUE(rss.ok()) << rss.status();
  EXPECT_EQ(*rss, 12345);
}

TEST(ProcStatsTest, MissingVmRssIsAnError) {
  EXPECT_FALSE(ParseRssKib("Name:\tx\n").ok());
}

TEST(ProcStatsTest, ParsesCpuTicksPastACommandWithSpacesAndParens) {
  // utime (14th field) = 700, stime (15th) = 300.
  constexpr char kStat[] =
      "4242 (odd (name) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 300 0 0 "
      "20 0 3 0 100 1000 200";
  absl::StatusOr<int64_t> ticks = ParseCpuTicks(kStat);
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  EXPECT_EQ(*ticks, 1000);
}

TEST(ProcStatsTest, SamplesThisProcess) {
  absl::StatusOr<ProcSample> s = SampleProcess(getpid());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->rss_kib, 0);
  EXPECT_GE(s->cpu_seconds, 0);
}

TEST(ProcStatsTest, GoneProcessIsNotFound) {
  EXPECT_EQ(SampleProcess(-1).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace parley::loadgen
