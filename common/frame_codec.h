// Encoding and decoding client-protocol frames in the two encodings.
//
// The WebSocket subprotocol picks the encoding: "parley.v1.json" (text
// frames, protobuf's canonical JSON mapping; the default) or
// "parley.v1.proto" (binary frames). The gateway, the load generator and the
// tests all use this one codec. Thread-safe: pure functions.
#ifndef PARLEY_COMMON_FRAME_CODEC_H_
#define PARLEY_COMMON_FRAME_CODEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace parley {

enum class Encoding { kJson, kBinary };

inline constexpr absl::string_view kJsonSubprotocol = "parley.v1.json";
inline constexpr absl::string_view kProtoSubprotocol = "parley.v1.proto";

// The encoding a subprotocol names; NOT_FOUND for any other name.
absl::StatusOr<Encoding> EncodingForSubprotocol(absl::string_view name);
// The subprotocol name of an encoding.
absl::string_view SubprotocolName(Encoding encoding);

// Parses one frame into `out` (cleared first). Unknown JSON fields are
// errors. INVALID_ARGUMENT with the parser's reason on failure.
absl::Status DecodeFrame(Encoding encoding, absl::string_view data,
                         google::protobuf::Message* out);

// Serialises one frame.
std::string EncodeFrame(Encoding encoding,
                        const google::protobuf::Message& frame);

}  // namespace parley

#endif  // PARLEY_COMMON_FRAME_CODEC_H_
