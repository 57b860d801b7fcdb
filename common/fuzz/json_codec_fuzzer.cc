// libFuzzer target: the JSON client-frame decoder (common/json_codec.h), the
// first thing a "parley.v1.json" client's text frame reaches in the gateway,
// checked against its reference, protobuf's json_util.
//
// Every input is parsed as a ClientFrame (what clients send) and as a
// ServerFrame (what the web client and the load generator read), and each
// time:
//   * JsonToMessage and json_util accept or reject alike, and read the same
//     message when they accept; a rejection is INVALID_ARGUMENT and leaves
//     the message cleared;
//   * MessageToJson prints what json_util prints, byte for byte;
//   * what it prints parses back to the same message.
// Built and run by tests/fuzz/run.sh (--config=fuzz, clang).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_check.h"
#include "common/json_codec.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "parley/v1/client.pb.h"

namespace parley {
namespace {

using ::google::protobuf::util::MessageDifferencer;

template <typename Frame>
void CheckAgainstJsonUtil(absl::string_view json) {
  const std::string name = Frame::descriptor()->name();
  Frame fast;
  const absl::Status status = JsonToMessage(json, &fast);
  Frame reference;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const bool reference_ok =
      google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(json.data(), json.size()), &reference,
          options)
          .ok();
  if (status.ok() != reference_ok) {
    FuzzFail(absl::StrCat(name, ": JsonToMessage says \"", status.ToString(),
                          "\" but json_util ",
                          reference_ok ? "accepts" : "rejects", " the input"));
  }
  if (!status.ok()) {
    if (status.code() != absl::StatusCode::kInvalidArgument) {
      FuzzFail(absl::StrCat(name, ": rejected with ", status.ToString()));
    }
    if (fast.ByteSizeLong() != 0) {
      FuzzFail(absl::StrCat(name, ": a rejected input left ",
                            fast.ShortDebugString()));
    }
    return;
  }
  if (!MessageDifferencer::Equals(fast, reference)) {
    FuzzFail(absl::StrCat(name, ": JsonToMessage read ",
                          fast.ShortDebugString(), ", json_util read ",
                          reference.ShortDebugString()));
  }
  const std::string printed = MessageToJson(fast);
  std::string reference_printed;
  const bool printable =
      google::protobuf::util::MessageToJsonString(fast, &reference_printed)
          .ok();
  if (printed != reference_printed) {
    FuzzFail(absl::StrCat(name, ": MessageToJson printed ", printed,
                          ", json_util printed ", reference_printed));
  }
  if (!printable) return;
  Frame again;
  const absl::Status reparsed = JsonToMessage(printed, &again);
  if (!reparsed.ok() || !MessageDifferencer::Equals(fast, again)) {
    FuzzFail(absl::StrCat(name, ": ", printed, " parses back as ",
                          again.ShortDebugString(), " (", reparsed.ToString(),
                          "), want ", fast.ShortDebugString()));
  }
}

}  // namespace
}  // namespace parley

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view json(reinterpret_cast<const char*>(data), size);
  parley::CheckAgainstJsonUtil<parley::v1::ClientFrame>(json);
  parley::CheckAgainstJsonUtil<parley::v1::ServerFrame>(json);
  return 0;
}
