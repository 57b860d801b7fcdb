// RFC 6455 where Parley's own code does it rather than websocketpp: frame
// headers (section 5.2), written where Parley builds frames itself (the
// gateway, which hands websocketpp finished frames, gateway/ws_server.cc, and
// the load generator's client, tools/loadgen/ws_codec.h), and the one check on
// the messages it reads that websocketpp misses (section 8.1).
//
// Thread-safe: pure functions.
#ifndef PARLEY_COMMON_WS_FRAME_H_
#define PARLEY_COMMON_WS_FRAME_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace parley {

// Appends the header of one final (FIN) frame with `opcode` and a payload of
// `length` bytes, in the shortest length form. `masked` sets the MASK bit;
// the 4-byte masking key that must follow is the caller's to append.
void AppendWsFrameHeader(uint8_t opcode, uint64_t length, bool masked,
                         std::string* out);

// Whether `text` ends on a whole code point, given that every sequence before
// its last is UTF-8. That is all websocketpp 0.8.2 leaves unchecked in a text
// message: it validates each frame as it arrives, but tests that the message
// ends on a whole code point only for a message of one frame
// (processor::hybi13::finalize_message reads the last frame's opcode, which
// for a fragmented message is "continuation"). The gateway closes with 1007
// when this is false.
bool EndsOnWholeCodePoint(std::string_view text);

}  // namespace parley

#endif  // PARLEY_COMMON_WS_FRAME_H_
