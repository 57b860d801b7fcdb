// CheckClientMessage: the gateway's own check on each complete message a
// client sends, before its Session reads it.
//
// websocketpp enforces RFC 6455 on what it reads (frame syntax, the message
// size limit, UTF-8 in text frames) but misses one case: a fragmented text
// message that ends mid code point (see common/ws_frame.h). This closes that
// gap with 1007, as websocketpp closes every other invalid text message.
//
// Called by the websocketpp adapter (gateway/ws_server.cc) for every message
// it reads, and by the ws_frame fuzz target on the same websocketpp reader,
// so both act on the same decision.
//
// Example:
//   if (auto close = CheckClientMessage(payload, binary)) {
//     session->Shutdown(close->code, close->reason);
//     return;
//   }
//   session->OnClientMessage(payload, binary);
//
// Thread-safe: a pure function.
#ifndef PARLEY_GATEWAY_CLIENT_MESSAGE_CHECK_H_
#define PARLEY_GATEWAY_CLIENT_MESSAGE_CHECK_H_

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace parley::gateway {

// A close the gateway starts instead of handing a message to the Session.
struct MessageClose {
  // The WebSocket close code (session.h's kClose* codes).
  uint16_t code;
  // The close frame's reason; a literal, valid for the life of the program.
  absl::string_view reason;
};

// The close that a complete client message calls for, or nullopt when the
// Session may read it. `binary` is its opcode: binary, else text.
std::optional<MessageClose> CheckClientMessage(absl::string_view payload,
                                               bool binary);

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_CLIENT_MESSAGE_CHECK_H_
