// RFC 6455 frame headers (section 5.2), written by Parley's own code where it
// builds frames itself: the gateway, which hands websocketpp finished frames
// (gateway/ws_server.cc), and the load generator's client
// (tools/loadgen/ws_codec.h).
//
// Thread-safe: a pure function.
#ifndef PARLEY_COMMON_WS_FRAME_H_
#define PARLEY_COMMON_WS_FRAME_H_

#include <cstdint>
#include <string>

namespace parley {

// Appends the header of one final (FIN) frame with `opcode` and a payload of
// `length` bytes, in the shortest length form. `masked` sets the MASK bit;
// the 4-byte masking key that must follow is the caller's to append.
void AppendWsFrameHeader(uint8_t opcode, uint64_t length, bool masked,
                         std::string* out);

}  // namespace parley

#endif  // PARLEY_COMMON_WS_FRAME_H_
