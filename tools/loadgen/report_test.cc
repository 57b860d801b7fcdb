#include "tools/loadgen/report.h"

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ReportTest, SummarizeConvertsNanosToMilliseconds) {
  LatencyHistogram h;
  for (int i = 1; i <= 100; ++i) h.Record(i * 10000);  // 0.01 .. 1 ms.
  LatencySummary s = Summarize(h);
  EXPECT_EQ(s.count(), 100);
  EXPECT_NEAR(s.p50_ms(), 0.5, 0.5 / 50);
  EXPECT_NEAR(s.p99_ms(), 0.99, 0.99 / 50);
  EXPECT_DOUBLE_EQ(s.max_ms(), 1.0);
}

Report SampleReport() {
  Report r;
  r.set_target("relay");
  r.set_workload("pairs");
  r.set_connections_requested(10);
  r.set_connections_ready(9);
  r.set_handshakes_per_second(1234.4);
  r.set_sent(100);
  r.set_delivered(98);
  r.set_delivered_per_second(49.0);
  r.mutable_end_to_end()->set_p99_ms(1.25);
  (*r.mutable_closes())["1006"] = 1;
  (*r.mutable_errors())["parley.RATE_LIMITED"] = 3;
  ProcessStats* p = r.add_processes();
  p->set_name("gateway");
  p->set_pid(42);
  p->set_rss_end_kib(2048);
  return r;
}

TEST(ReportTest, TableShowsEveryMeasuredFigure) {
  const std::string table = FormatTable(SampleReport());
  EXPECT_THAT(table, HasSubstr("pairs against relay"));
  EXPECT_THAT(table, HasSubstr("9 / 10"));
  EXPECT_THAT(table, HasSubstr("1234"));
  EXPECT_THAT(table, HasSubstr("100 / 98"));
  EXPECT_THAT(table, HasSubstr("p99 1.250"));
  EXPECT_THAT(table, HasSubstr("1006=1"));
  EXPECT_THAT(table, HasSubstr("parley.RATE_LIMITED=3"));
  EXPECT_THAT(table, HasSubstr("process gateway"));
  EXPECT_THAT(table, HasSubstr("2048 KiB"));
}

TEST(ReportTest, TableOmitsTrafficRowsForConnectionOnlyRuns) {
  Report r;
  r.set_workload("idle");
  r.set_connections_held(5);
  const std::string table = FormatTable(r);
  EXPECT_THAT(table, HasSubstr("connections held"));
  EXPECT_THAT(table, Not(HasSubstr("end-to-end")));
}

TEST(ReportTest, JsonRoundTripsWithProtoFieldNames) {
  const std::string json = FormatJson(SampleReport());
  EXPECT_THAT(json, HasSubstr("\"delivered_per_second\":49"));
  EXPECT_THAT(json, HasSubstr("\"acks\":\"0\""));  // Zeros are printed too.
  EXPECT_EQ(json.find('\n'), std::string::npos);
  Report back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
  EXPECT_EQ(back.delivered(), 98);
  EXPECT_EQ(back.processes(0).rss_end_kib(), 2048);
}

}  // namespace
}  // namespace parley::loadgen
