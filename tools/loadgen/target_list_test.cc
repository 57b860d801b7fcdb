#include "tools/loadgen/target_list.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

TEST(TargetListTest, OneAddressIsOneTarget) {
  absl::StatusOr<std::vector<Target>> t = ParseTargets("127.0.0.1:8080");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 1u);
  EXPECT_EQ((*t)[0].endpoint.port(), 8080);
  EXPECT_EQ((*t)[0].endpoint.address().to_string(), "127.0.0.1");
  EXPECT_EQ((*t)[0].host_header, "127.0.0.1:8080");
}

TEST(TargetListTest, CommaListKeepsOrderAndHostHeaders) {
  absl::StatusOr<std::vector<Target>> t =
      ParseTargets("127.0.0.1:8080,127.0.0.2:9090");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[1].endpoint.address().to_string(), "127.0.0.2");
  EXPECT_EQ((*t)[1].endpoint.port(), 9090);
  EXPECT_EQ((*t)[1].host_header, "127.0.0.2:9090");
}

TEST(TargetListTest, ConnectionsAlternateSoPairMembersSplitOverTwoTargets) {
  absl::StatusOr<std::vector<Target>> t =
      ParseTargets("127.0.0.1:1000,127.0.0.1:2000");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(TargetFor(*t, 0).endpoint.port(), 1000);
  EXPECT_EQ(TargetFor(*t, 1).endpoint.port(), 2000);
  EXPECT_EQ(TargetFor(*t, 2).endpoint.port(), 1000);
  EXPECT_EQ(TargetFor(*t, 5).endpoint.port(), 2000);
}

TEST(TargetListTest, MalformedItemsAreRejectedByName) {
  for (const char* bad : {"", ",", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:0",
                          "localhost:80", "127.0.0.1:80,127.0.0.1"}) {
    absl::StatusOr<std::vector<Target>> t = ParseTargets(bad);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ParseTargets("127.0.0.1:80,nope:1").status().message(),
              testing::HasSubstr("nope:1"));
}

}  // namespace
}  // namespace parley::loadgen
