#include "common/build_info.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

TEST(BuildInfoTest, StampedWithTheVersionFileTheCommitAndTheMode) {
  const BuildInfo& b = GetBuildInfo();
  EXPECT_THAT(b.version, MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+.*"));
  EXPECT_NE(b.commit, "");
  EXPECT_THAT(b.mode, MatchesRegex("opt|fastbuild|dbg"));
  EXPECT_EQ(VersionLine("parley-x"), "parley-x " + b.version + " (commit " +
                                         b.commit + ", " + b.mode + ")");
}

TEST(BuildInfoTest, LinkProtocolsInTheAcceptedRangeOnly) {
  EXPECT_TRUE(CheckLinkProtocol(kLinkProtocol, "0.5.0", "gateway gw-1").ok());
  EXPECT_TRUE(CheckLinkProtocol(0, "", "gateway gw-1").ok());  // Before 0.5.
  absl::Status newer = CheckLinkProtocol(kLinkProtocol + 1, "9.0.0", "gw-1");
  EXPECT_EQ(newer.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(newer.message()),
              HasSubstr("gw-1 9.0.0 speaks protocol " +
                        std::to_string(kLinkProtocol + 1)));
  EXPECT_THAT(std::string(newer.message()), HasSubstr("upgrade the older"));
}

TEST(BuildInfoTest, ExportsBuildInfo) {
  Registry r;
  ExportBuildInfo(r);
  const std::string text = r.Render();
  const BuildInfo& b = GetBuildInfo();
  EXPECT_THAT(text, HasSubstr("parley_build_info{version=\"" + b.version +
                              "\",commit=\"" + b.commit + "\",mode=\"" +
                              b.mode + "\"} 1\n"));
}

}  // namespace
}  // namespace parley
