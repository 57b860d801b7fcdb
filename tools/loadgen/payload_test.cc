#include "tools/loadgen/payload.h"

#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

TEST(PayloadTest, RoundTripsAndPadsToTheRequestedSize) {
  const std::string text = FormatPayload({12, 345, 987654321}, 64);
  EXPECT_EQ(text.size(), 64u);
  std::optional<PayloadInfo> info = ParsePayload(text);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->sender, 12);
  EXPECT_EQ(info->seq, 345u);
  EXPECT_EQ(info->sent_nanos, 987654321);
}

TEST(PayloadTest, ShortSizeKeepsTheHeader) {
  const std::string text = FormatPayload({1, 2, 3}, 1);
  EXPECT_EQ(text, "lg 1 2 3");
  EXPECT_TRUE(ParsePayload(text).has_value());
}

TEST(PayloadTest, ForeignTextIsRejected) {
  EXPECT_FALSE(ParsePayload("hello there").has_value());
  EXPECT_FALSE(ParsePayload("lg x 2 3").has_value());
  EXPECT_FALSE(ParsePayload("").has_value());
}

TEST(PayloadTest, ClientIdCarriesTheSendTime) {
  EXPECT_EQ(ClientIdSentNanos(FormatClientId(7, 123456789)), 123456789);
  EXPECT_FALSE(ClientIdSentNanos("c1").has_value());
}

}  // namespace
}  // namespace parley::loadgen
