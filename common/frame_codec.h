// Encoding and decoding client-protocol frames in the two encodings.
//
// The WebSocket subprotocol picks the encoding: "parley.v1.json" (text
// frames, protobuf's canonical JSON mapping; the default) or
// "parley.v1.proto" (binary frames). The gateway, the load generator and the
// tests all use this one codec. Thread-safe: pure functions.
#ifndef PARLEY_COMMON_FRAME_CODEC_H_
#define PARLEY_COMMON_FRAME_CODEC_H_

#include <cstdint>
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

// OK when EncodeFrame can encode `frame` in both encodings: when every
// google.protobuf.Timestamp in it lies in RFC 3339's range (years 1 to 9999,
// nanos 0 to 999999999), as the JSON mapping prints no other (EncodeFrame
// would give a cut-off JSON text). Frames Parley builds always pass; a frame
// a peer sent (the service's, over the link) may not. INVALID_ARGUMENT naming
// the field otherwise.
absl::Status CheckEncodable(const google::protobuf::Message& frame);

// What EncodeFrame gives for a ServerFrame holding a Message whose inbox_seq
// is `inbox_seq`, made from `encoded`, EncodeFrame's output for the same frame
// with inbox_seq 0 (or `encoded` itself when `inbox_seq` is 0). inbox_seq is
// the Message's field 1 and both encodings write fields in number order, so
// it is written in at the front rather than the frame encoded again: a group
// message is encoded once per gateway and spliced for every member.
// INVALID_ARGUMENT if `encoded` is not such a frame.
absl::StatusOr<std::string> SpliceInboxSeq(Encoding encoding,
                                           absl::string_view encoded,
                                           uint64_t inbox_seq);

}  // namespace parley

#endif  // PARLEY_COMMON_FRAME_CODEC_H_
