// libFuzzer target: the protobuf client-frame decoder (common/frame_codec.h),
// DecodeFrame(Encoding::kBinary, ...), which the gateway runs on every binary
// frame of a "parley.v1.proto" client, and the codec's other byte-level code,
// SpliceInboxSeq.
//
// The input is decoded as a ClientFrame, and parsed as a ServerFrame:
//   * a refusal is INVALID_ARGUMENT;
//   * a ClientFrame decoded survives both encodings: EncodeFrame then
//     DecodeFrame gives it back (in JSON, without the unknown fields JSON
//     cannot carry);
//   * for a ServerFrame holding a Message, SpliceInboxSeq on its encoding
//     without inbox_seq gives, byte for byte, EncodeFrame of the frame with
//     the inbox_seq set, in both encodings (the inbox_seq written in is the
//     Message's own seq, so the fuzzer picks it); it may refuse only a
//     binary frame with unknown fields beside the Message;
//   * SpliceInboxSeq on the raw input never breaks memory safety.
// Built and run by tests/fuzz/run.sh (--config=fuzz, clang).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/frame_codec.h"
#include "common/fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "parley/v1/client.pb.h"

namespace parley {
namespace {

using ::google::protobuf::util::MessageDifferencer;

const char* Name(Encoding encoding) {
  return encoding == Encoding::kJson ? "JSON" : "binary";
}

void CheckRoundTrip(const v1::ClientFrame& frame, Encoding encoding) {
  v1::ClientFrame want = frame;
  if (encoding == Encoding::kJson) want.DiscardUnknownFields();
  const std::string encoded = EncodeFrame(encoding, frame);
  v1::ClientFrame decoded;
  const absl::Status status = DecodeFrame(encoding, encoded, &decoded);
  if (!status.ok() || !MessageDifferencer::Equals(decoded, want)) {
    FuzzFail(absl::StrCat(Name(encoding), ": ", want.ShortDebugString(),
                          " encoded as ", encoded, " decodes as ",
                          decoded.ShortDebugString(), " (", status.ToString(),
                          ")"));
  }
}

void CheckSplice(const v1::ServerFrame& frame, Encoding encoding) {
  const uint64_t inbox_seq = frame.message().seq();
  v1::ServerFrame without = frame;
  without.mutable_message()->clear_inbox_seq();
  v1::ServerFrame with = without;
  with.mutable_message()->set_inbox_seq(inbox_seq);
  if (encoding == Encoding::kJson) {
    // json_util cannot print some frames (a Timestamp out of range); what
    // EncodeFrame makes of them is no frame to splice into.
    std::string ignored;
    if (!google::protobuf::util::MessageToJsonString(with, &ignored).ok()) {
      return;
    }
  }
  const absl::StatusOr<std::string> spliced =
      SpliceInboxSeq(encoding, EncodeFrame(encoding, without), inbox_seq);
  // Fields this build does not know, outside the Message, follow it in the
  // binary encoding: not a frame SpliceInboxSeq takes (its caller encodes
  // such a frame in full).
  if (!spliced.ok() && encoding == Encoding::kBinary &&
      !frame.GetReflection()->GetUnknownFields(frame).empty()) {
    return;
  }
  const std::string want = EncodeFrame(encoding, with);
  if (!spliced.ok() || *spliced != want) {
    FuzzFail(absl::StrCat(Name(encoding), ": splicing inbox_seq ", inbox_seq,
                          " into ", without.ShortDebugString(), " gives ",
                          spliced.ok() ? *spliced : spliced.status().ToString(),
                          ", want ", want));
  }
}

}  // namespace
}  // namespace parley

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every string field that is not UTF-8; the fuzzer makes
  // many.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using parley::Encoding;
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  parley::v1::ClientFrame client;
  const absl::Status status =
      parley::DecodeFrame(Encoding::kBinary, bytes, &client);
  if (status.ok()) {
    parley::CheckRoundTrip(client, Encoding::kBinary);
    parley::CheckRoundTrip(client, Encoding::kJson);
  } else if (status.code() != absl::StatusCode::kInvalidArgument) {
    parley::FuzzFail(absl::StrCat("refused with ", status.ToString()));
  }
  parley::v1::ServerFrame server;
  if (server.ParseFromArray(data, static_cast<int>(size)) &&
      server.has_message()) {
    parley::CheckSplice(server, Encoding::kBinary);
    parley::CheckSplice(server, Encoding::kJson);
  }
  for (const Encoding encoding : {Encoding::kBinary, Encoding::kJson}) {
    (void)parley::SpliceInboxSeq(encoding, bytes, size);
  }
  return 0;
}
