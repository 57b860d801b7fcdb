#include "common/ws_frame.h"

#include <string>

#include "gtest/gtest.h"

namespace parley {
namespace {

std::string Header(uint8_t opcode, uint64_t length, bool masked) {
  std::string out;
  AppendWsFrameHeader(opcode, length, masked, &out);
  return out;
}

TEST(WsFrameHeaderTest, ShortLengthsFitTheSecondByte) {
  EXPECT_EQ(Header(0x1, 0, false), std::string("\x81\x00", 2));
  EXPECT_EQ(Header(0x2, 125, false), "\x82\x7d");
  EXPECT_EQ(Header(0x1, 5, true), "\x81\x85");
}

TEST(WsFrameHeaderTest, SixteenBitLengthsFrom126To65535) {
  EXPECT_EQ(Header(0x1, 126, false), std::string("\x81\x7e\x00\x7e", 4));
  EXPECT_EQ(Header(0x2, 65535, false), "\x82\x7e\xff\xff");
  EXPECT_EQ(Header(0x2, 300, true), "\x82\xfe\x01\x2c");
}

TEST(WsFrameHeaderTest, SixtyFourBitLengthsFrom65536) {
  EXPECT_EQ(Header(0x2, 65536, false),
            std::string("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10));
  EXPECT_EQ(Header(0x1, 0x0102030405ull, true),
            std::string("\x81\xff\x00\x00\x00\x01\x02\x03\x04\x05", 10));
}

TEST(WsFrameHeaderTest, AppendsAfterWhatIsThere) {
  std::string out = "ab";
  AppendWsFrameHeader(0x9, 0, false, &out);
  EXPECT_EQ(out, std::string("ab\x89\x00", 4));
}

TEST(EndsOnWholeCodePointTest, WholeSequencesAtTheEnd) {
  EXPECT_TRUE(EndsOnWholeCodePoint(""));
  EXPECT_TRUE(EndsOnWholeCodePoint("{}"));
  EXPECT_TRUE(EndsOnWholeCodePoint("caf\xc3\xa9"));
  EXPECT_TRUE(EndsOnWholeCodePoint("\xe2\x82\xac"));
  EXPECT_TRUE(EndsOnWholeCodePoint("ok \xf0\x9f\x98\x80"));
}

// What websocketpp lets through at the end of a fragmented text message
// (found by gateway/fuzz/ws_frame_fuzzer).
TEST(EndsOnWholeCodePointTest, CutSequencesAtTheEnd) {
  EXPECT_FALSE(EndsOnWholeCodePoint("caf\xc3"));
  EXPECT_FALSE(EndsOnWholeCodePoint("\xe2"));
  EXPECT_FALSE(EndsOnWholeCodePoint("\xe2\x82"));
  EXPECT_FALSE(EndsOnWholeCodePoint("ok \xf0\x9f\x98"));
  EXPECT_FALSE(EndsOnWholeCodePoint("\x80"));
}

}  // namespace
}  // namespace parley
