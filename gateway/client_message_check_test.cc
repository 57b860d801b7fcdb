#include "gateway/client_message_check.h"

#include <optional>

#include "gateway/session.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

TEST(CheckClientMessageTest, TextEndingMidCodePointClosesWithInvalidPayload) {
  // "caf" and the first byte of the two-byte "é": a fragmented message whose
  // last fragment cut the sequence (websocketpp passes it on).
  const std::optional<MessageClose> close =
      CheckClientMessage("caf\xc3", /*binary=*/false);
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->code, kCloseInvalidPayload);
  EXPECT_EQ(close->reason, "invalid UTF-8: a text message ends mid code point");
}

TEST(CheckClientMessageTest, WholeTextGoesToTheSession) {
  EXPECT_FALSE(CheckClientMessage("", /*binary=*/false).has_value());
  EXPECT_FALSE(
      CheckClientMessage("{\"ping\":{}}", /*binary=*/false).has_value());
  EXPECT_FALSE(CheckClientMessage("caf\xc3\xa9", /*binary=*/false).has_value());
}

TEST(CheckClientMessageTest, BinaryIsNotText) {
  // A protobuf frame may end in any byte.
  EXPECT_FALSE(CheckClientMessage("\x0a\x02\xc3", /*binary=*/true).has_value());
}

}  // namespace
}  // namespace parley::gateway
