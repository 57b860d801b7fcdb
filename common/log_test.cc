#include "common/log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(LogTest, LineHasTimestampLevelEventAndFields) {
  std::string line =
      FormatLogLine(LogLevel::kWarn, "handshake.failed",
                    {{"peer", "127.0.0.1:5000"}, {"code", 1009}});
  EXPECT_THAT(line, MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z "
                                 "level=warn event=handshake.failed "
                                 "peer=127.0.0.1:5000 code=1009"));
}

TEST(LogTest, ValuesThatWouldBreakParsingAreQuotedAndEscaped) {
  std::string line = FormatLogLine(LogLevel::kInfo, "e",
                                   {{"reason", "Handshake not finished"},
                                    {"q", "say \"hi\""},
                                    {"eq", "a=b"},
                                    {"nl", "x\ny"},
                                    {"empty", ""}});
  EXPECT_THAT(line, HasSubstr(" reason=\"Handshake not finished\""));
  EXPECT_THAT(line, HasSubstr(" q=\"say \\\"hi\\\"\""));
  EXPECT_THAT(line, HasSubstr(" eq=\"a=b\""));
  EXPECT_THAT(line, HasSubstr(" nl=\"x\\ny\""));
  EXPECT_THAT(line, EndsWith(" empty=\"\""));
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(LogTest, LevelFiltersLowerLevels) {
  SetLogLevel(LogLevel::kWarn);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kWarn));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  SetLogLevel(LogLevel::kDebug);
  EXPECT_TRUE(LogEnabled(LogLevel::kDebug));
  SetLogLevel(LogLevel::kInfo);
}

TEST(LogTest, ParsesLevelNamesAndRejectsOthers) {
  EXPECT_EQ(*ParseLogLevel("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  absl::StatusOr<LogLevel> bad = ParseLogLevel("verbose");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("verbose"));
}

}  // namespace
}  // namespace parley
