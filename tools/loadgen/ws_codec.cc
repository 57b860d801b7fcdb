#include "tools/loadgen/ws_codec.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/ws_frame.h"

namespace parley::loadgen {

std::string BuildHandshakeRequest(absl::string_view host_port,
                                  absl::string_view resource,
                                  absl::string_view key,
                                  absl::string_view subprotocol) {
  std::string out =
      absl::StrCat("GET ", resource, " HTTP/1.1\r\nHost: ", host_port,
                   "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ",
                   key, "\r\n");
  if (!subprotocol.empty()) {
    absl::StrAppend(&out, "Sec-WebSocket-Protocol: ", subprotocol, "\r\n");
  }
  out += "\r\n";
  return out;
}

absl::StatusOr<HandshakeResponse> ParseHandshakeResponse(
    absl::string_view buffer) {
  HandshakeResponse response;
  const size_t end = buffer.find("\r\n\r\n");
  if (end == absl::string_view::npos) {
    if (buffer.size() > 16384) {
      return absl::InvalidArgumentError("handshake response head too long");
    }
    return response;
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(buffer.substr(0, end), "\r\n");
  std::vector<absl::string_view> status_line =
      absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_line.size() < 2 || !absl::StartsWith(status_line[0], "HTTP/") ||
      !absl::SimpleAtoi(status_line[1], &response.status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an HTTP status line: ", lines[0]));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    if (absl::EqualsIgnoreCase(lines[i].substr(0, colon),
                               "Sec-WebSocket-Protocol")) {
      response.subprotocol =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
  }
  response.consumed = end + 4;
  return response;
}

void AppendClientFrame(WsOpcode opcode, absl::string_view payload,
                       uint32_t mask_key, std::string* out) {
  const size_t n = payload.size();
  AppendWsFrameHeader(static_cast<uint8_t>(opcode), n, /*masked=*/true, out);
  const uint8_t mask[4] = {static_cast<uint8_t>(mask_key >> 24),
                           static_cast<uint8_t>(mask_key >> 16),
                           static_cast<uint8_t>(mask_key >> 8),
                           static_cast<uint8_t>(mask_key)};
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(mask[i]));
  const size_t start = out->size();
  out->append(payload.data(), n);
  char* data = out->data() + start;
  for (size_t i = 0; i < n; ++i) data[i] ^= static_cast<char>(mask[i & 3]);
}

absl::StatusOr<size_t> ParseServerFrame(absl::string_view buffer,
                                        uint64_t max_payload, WsFrame* frame) {
  if (buffer.size() < 2) return 0;
  const uint8_t b0 = static_cast<uint8_t>(buffer[0]);
  const uint8_t b1 = static_cast<uint8_t>(buffer[1]);
  if ((b0 & 0x70) != 0) {
    return absl::InvalidArgumentError("reserved bits set in a server frame");
  }
  if ((b1 & 0x80) != 0) {
    return absl::InvalidArgumentError("masked server frame");
  }
  size_t header = 2;
  uint64_t length = b1 & 0x7F;
  if (length == 126) {
    if (buffer.size() < 4) return 0;
    length = (uint64_t{static_cast<uint8_t>(buffer[2])} << 8) |
             static_cast<uint8_t>(buffer[3]);
    header = 4;
  } else if (length == 127) {
    if (buffer.size() < 10) return 0;
    length = 0;
    for (int i = 2; i < 10; ++i) {
      length = (length << 8) | static_cast<uint8_t>(buffer[i]);
    }
    header = 10;
  }
  if (length > max_payload) {
    return absl::InvalidArgumentError(
        absl::StrCat("server frame of ", length, " bytes is over the limit"));
  }
  if (buffer.size() < header + length) return 0;
  frame->fin = (b0 & 0x80) != 0;
  frame->opcode = static_cast<WsOpcode>(b0 & 0x0F);
  frame->payload = buffer.substr(header, length);
  return header + length;
}

int CloseCode(absl::string_view close_payload) {
  if (close_payload.size() < 2) return 1005;
  return (static_cast<uint8_t>(close_payload[0]) << 8) |
         static_cast<uint8_t>(close_payload[1]);
}

}  // namespace parley::loadgen
