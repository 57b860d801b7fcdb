#include "tools/loadgen/proc_stats.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>

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

TEST(ProcStatsTest, ParsesParentAndReapedChildrenTicks) {
  // ppid (4th field) = 1, cutime (16th) = 40, cstime (17th) = 2.
  constexpr char kStat[] =
      "4242 (postgres) S 1 4242 4242 0 -1 4194560 100 0 0 0 700 300 40 2 "
      "20 0 3 0 100 1000 200";
  absl::StatusOr<StatFields> f = ParseStat(kStat);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->parent_pid, 1);
  EXPECT_EQ(f->cpu_ticks, 1000);
  EXPECT_EQ(f->child_cpu_ticks, 42);
}

TEST(ProcStatsTest, TreeCountsALiveChildAndThenTheReapedOne) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Burn 0.3 s of CPU, say so, then wait to be killed.
    while (static_cast<double>(clock()) / CLOCKS_PER_SEC < 0.3) {
    }
    char c = 1;
    (void)!write(ready[1], &c, 1);
    pause();
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  absl::StatusOr<ProcSample> self = SampleProcess(getpid());
  absl::StatusOr<ProcSample> tree = SampleProcessTree(getpid());
  ASSERT_TRUE(self.ok() && tree.ok());
  EXPECT_GE(tree->cpu_seconds, self->cpu_seconds + 0.25);
  EXPECT_GT(tree->rss_kib, self->rss_kib);

  kill(child, SIGKILL);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  absl::StatusOr<ProcSample> after = SampleProcessTree(getpid());
  ASSERT_TRUE(after.ok());
  EXPECT_GE(after->cpu_seconds, self->cpu_seconds + 0.25);
  close(ready[0]);
  close(ready[1]);
}

TEST(ProcStatsTest, SamplesThisProcess) {
  absl::StatusOr<ProcSample> s = SampleProcess(getpid());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_GT(s->rss_kib, 0);
  EXPECT_GE(s->cpu_seconds, 0);
}

TEST(ProcStatsTest, GoneProcessIsNotFound) {
  EXPECT_EQ(SampleProcess(-1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(SampleProcessTree(-1).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace parley::loadgen
