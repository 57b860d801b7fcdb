#include "tools/loadgen/ws_codec.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

using ::testing::HasSubstr;

std::string ServerFrame(WsOpcode op, const std::string& payload,
                        bool fin = true) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | static_cast<int>(op)));
  const size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xFFFF) {
    out.push_back(126);
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(127);
    for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>(n >> s));
  }
  return out + payload;
}

TEST(WsCodecTest, HandshakeRequestNamesKeyAndSubprotocol) {
  const std::string req = BuildHandshakeRequest("127.0.0.1:80", "/?token=t",
                                                "a2V5", "parley.v1.json");
  EXPECT_THAT(req, HasSubstr("GET /?token=t HTTP/1.1\r\n"));
  EXPECT_THAT(req, HasSubstr("Host: 127.0.0.1:80\r\n"));
  EXPECT_THAT(req, HasSubstr("Sec-WebSocket-Key: a2V5\r\n"));
  EXPECT_THAT(req, HasSubstr("Sec-WebSocket-Protocol: parley.v1.json\r\n"));
  EXPECT_TRUE(req.size() > 4 && req.substr(req.size() - 4) == "\r\n\r\n");
  EXPECT_THAT(BuildHandshakeRequest("h", "/", "k", ""),
              ::testing::Not(HasSubstr("Protocol")));
}

TEST(WsCodecTest, ResponseIsIncompleteUntilTheBlankLine) {
  absl::StatusOr<HandshakeResponse> r =
      ParseHandshakeResponse("HTTP/1.1 101 Switching Protocols\r\nUpg");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->consumed, 0u);
}

TEST(WsCodecTest, ResponseGivesStatusSubprotocolAndLength) {
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      "sec-websocket-protocol: parley.v1.proto\r\n\r\n";
  absl::StatusOr<HandshakeResponse> r = ParseHandshakeResponse(head + "\x81");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 101);
  EXPECT_EQ(r->subprotocol, "parley.v1.proto");
  EXPECT_EQ(r->consumed, head.size());
}

TEST(WsCodecTest, RefusedUpgradeReportsItsStatus) {
  absl::StatusOr<HandshakeResponse> r =
      ParseHandshakeResponse("HTTP/1.1 503 Service Unavailable\r\n\r\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_FALSE(ParseHandshakeResponse("SSH-2.0\r\n\r\n").ok());
}

TEST(WsCodecTest, ClientFramesAreMaskedAndDecodeBack) {
  for (size_t n : {0, 5, 125, 126, 65535, 65536}) {
    const std::string payload(n, 'p');
    std::string frame;
    AppendClientFrame(WsOpcode::kText, payload, 0xA1B2C3D4, &frame);
    const uint8_t b1 = static_cast<uint8_t>(frame[1]);
    ASSERT_EQ(static_cast<uint8_t>(frame[0]), 0x81);
    ASSERT_TRUE(b1 & 0x80) << "client frames must be masked";
    size_t header = 2;
    if ((b1 & 0x7F) == 126) header = 4;
    if ((b1 & 0x7F) == 127) header = 10;
    const uint8_t* mask = reinterpret_cast<const uint8_t*>(&frame[header]);
    EXPECT_EQ(mask[0], 0xA1);
    std::string decoded = frame.substr(header + 4);
    ASSERT_EQ(decoded.size(), n);
    for (size_t i = 0; i < n; ++i) decoded[i] ^= static_cast<char>(mask[i % 4]);
    EXPECT_EQ(decoded, payload) << n;
  }
}

TEST(WsCodecTest, ServerFramesOfEveryLengthEncodingParse) {
  for (size_t n : {0, 125, 126, 70000}) {
    const std::string wire =
        ServerFrame(WsOpcode::kBinary, std::string(n, 'z'));
    WsFrame frame;
    absl::StatusOr<size_t> used = ParseServerFrame(wire, 1 << 20, &frame);
    ASSERT_TRUE(used.ok());
    EXPECT_EQ(*used, wire.size());
    EXPECT_EQ(frame.opcode, WsOpcode::kBinary);
    EXPECT_EQ(frame.payload.size(), n);
    // Every strict prefix is incomplete, not an error.
    absl::StatusOr<size_t> partial = ParseServerFrame(
        absl::string_view(wire).substr(0, wire.size() - 1), 1 << 20, &frame);
    ASSERT_TRUE(partial.ok());
    EXPECT_EQ(*partial, 0u);
  }
}

TEST(WsCodecTest, MaskedOrOversizedServerFramesAreErrors) {
  WsFrame frame;
  EXPECT_FALSE(
      ParseServerFrame(std::string("\x81\x81\0\0\0\0x", 7), 100, &frame).ok());
  EXPECT_FALSE(
      ParseServerFrame(ServerFrame(WsOpcode::kText, std::string(200, 'a')), 100,
                       &frame)
          .ok());
}

TEST(WsCodecTest, CloseCodeIsReadFromThePayload) {
  EXPECT_EQ(CloseCode(std::string("\x0f\xa1"
                                  "bye",
                                  5)),
            4001);
  EXPECT_EQ(CloseCode(""), 1005);
}

}  // namespace
}  // namespace parley::loadgen
