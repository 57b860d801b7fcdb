// The client side of RFC 6455, as pure functions: the opening handshake
// request, parsing the server's 101 answer, masking client frames and parsing
// server frames. No sockets: ws_client.h does the I/O.
//
// Why not websocketpp's client: its connect path (asio::async_connect) closes
// and reopens the socket, so a source address bound beforehand is lost, and
// the load generator must pick source addresses over 127.0.0.x to pass 28k
// connections per destination. Its per-connection memory (16 KiB read buffer)
// would also cap how many connections one generator process can hold.
//
// Thread-safe: pure functions.
#ifndef PARLEY_TOOLS_LOADGEN_WS_CODEC_H_
#define PARLEY_TOOLS_LOADGEN_WS_CODEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::loadgen {

enum class WsOpcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// The GET request that opens a WebSocket. `key` is the base64 of 16 random
// bytes; `subprotocol` may be empty (no Sec-WebSocket-Protocol header).
std::string BuildHandshakeRequest(absl::string_view host_port,
                                  absl::string_view resource,
                                  absl::string_view key,
                                  absl::string_view subprotocol);

// The server's answer to the handshake.
struct HandshakeResponse {
  size_t consumed = 0;      // Bytes of the buffer the response took.
  int status = 0;           // The HTTP status code (101 on success).
  std::string subprotocol;  // Sec-WebSocket-Protocol, empty if absent.
};

// Parses the response head at the start of `buffer`. Returns consumed == 0
// while the head is incomplete; INVALID_ARGUMENT when it is not HTTP.
absl::StatusOr<HandshakeResponse> ParseHandshakeResponse(
    absl::string_view buffer);

// Appends one final, masked client frame to `out`.
void AppendClientFrame(WsOpcode opcode, absl::string_view payload,
                       uint32_t mask_key, std::string* out);

// One frame from the server (servers never mask).
struct WsFrame {
  WsOpcode opcode = WsOpcode::kText;
  bool fin = true;
  absl::string_view payload;  // Points into the parsed buffer.
};

// Parses the frame at the start of `buffer`. Returns the bytes it took, 0
// while incomplete; INVALID_ARGUMENT for masked, reserved-bit or oversized
// (> `max_payload`) frames.
absl::StatusOr<size_t> ParseServerFrame(absl::string_view buffer,
                                        uint64_t max_payload, WsFrame* frame);

// The status code in a close frame's payload; 1005 when it carries none.
int CloseCode(absl::string_view close_payload);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_WS_CODEC_H_
