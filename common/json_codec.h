// Protobuf's canonical proto3 JSON mapping, fast, for the client protocol.
//
// JsonToMessage and MessageToJson behave like Debian's protobuf 3.21
// google::protobuf::util::JsonStringToMessage (unknown fields are errors) and
// MessageToJsonString (default options), and are what common/frame_codec uses
// for the "parley.v1.json" subprotocol.
//
// Why this exists despite STYLE rule 12 (use protobuf's JSON mapping rather
// than a hand-written codec): protobuf 3.21's json_util converts through a
// TypeResolver and rebuilds google.protobuf.Type descriptions on every call,
// which made JSON framing the top CPU cost per message in profiles of the
// gateway and the load generator. Measured on the project's 2-core machine
// (g++ -O2 -DNDEBUG against Debian's libprotobuf, one thread, µs per frame):
//
//                                 json_util               this codec
//                           encode decode  total    encode decode  total
//   ServerFrame{message}      7.0   13.3   20.3      0.64   1.20   1.84
//   ClientFrame{send}         3.9    6.7   10.6      0.28   0.49   0.77
//
// The JSON syntax is RapidJSON's (its SAX reader, parsing a copy in place);
// the rest is protobuf reflection, with what it needs per message type
// looked up once and cached.
//
// How it stays identical to protobuf:
//   * Only messages built from the types the protocol uses are handled here:
//     generated proto3 classes (not DynamicMessage) whose fields (recursively)
//     are string, bool, the 32- and 64-bit integer types, open enums, messages,
//     oneofs (proto3 `optional` is a oneof of one field, so such a field is
//     printed whenever it is set, 0 included, as json_util does), repeated
//     fields of these and google.protobuf.Timestamp.
//     For any other message (double/float, bytes, maps, other well-known
//     types, proto2) the whole call goes to json_util; the
//     decision is made once per message type and cached.
//   * Printing reproduces json_util byte for byte: fields in field-number
//     order, defaults omitted (oneof members always printed), json_name keys,
//     64-bit integers quoted, enums by name (unknown numbers as numbers),
//     Timestamps in RFC 3339 with 0, 3, 6 or 9 fractional digits, and
//     protobuf's own string escaping (which is not RapidJSON's: it escapes
//     '<', '>', DEL, C1 controls, U+2028/2029 and other invisible code points,
//     with lowercase hex), so the string writer is written out here. A message
//     whose printing json_util would report as an error (a Timestamp out of
//     range, a string that is not UTF-8) is handed to json_util, which prints
//     exactly what it always did.
//   * Parsing takes RapidJSON's strict JSON and the canonical forms of each
//     field type: json_name or the proto field name, null as "not given",
//     integers as JSON integers or plain decimal strings, enum names or
//     numbers, RFC 3339 Timestamps as protobuf parses them. json_util is more
//     lenient than that (single quotes, unquoted keys, trailing commas, "yes"
//     for a bool, 1.0 for an integer, a repeated field given twice, ...), so
//     input the fast path does not take is parsed again by json_util: if it
//     accepts, its result is returned, so the two never disagree on what is
//     valid. If both reject, the error is this codec's, naming the field.
//     So invalid input costs a json_util parse on top, as much as every
//     frame used to; so does valid input in a non-canonical spelling.
//
// Example:
//   parley::v1::ClientFrame frame;
//   absl::Status s = JsonToMessage(R"({"ping":{"nonce":"n1"}})", &frame);
//   std::string json = MessageToJson(frame);  // {"ping":{"nonce":"n1"}}
//
// Thread-safe: both are pure functions of their arguments, callable from any
// thread. The per-type description cache behind them is built under a mutex
// on the first use of a type and read without locking afterwards.
#ifndef PARLEY_COMMON_JSON_CODEC_H_
#define PARLEY_COMMON_JSON_CODEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace parley {

// Parses `json`, one JSON object in protobuf's proto3 JSON mapping, into
// `out` (cleared first). Unknown fields are errors. On failure returns
// INVALID_ARGUMENT with a reason naming the field ("field send.to.user:
// expected a string, got a number") and leaves `out` cleared.
absl::Status JsonToMessage(absl::string_view json,
                           google::protobuf::Message* out);

// Prints `message` in protobuf's proto3 JSON mapping with json_util's default
// options: no whitespace, default values omitted.
std::string MessageToJson(const google::protobuf::Message& message);

}  // namespace parley

#endif  // PARLEY_COMMON_JSON_CODEC_H_
