#include "common/frame_codec.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace parley {

absl::StatusOr<Encoding> EncodingForSubprotocol(absl::string_view name) {
  if (name == kJsonSubprotocol) return Encoding::kJson;
  if (name == kProtoSubprotocol) return Encoding::kBinary;
  return absl::NotFoundError(absl::StrCat("unknown subprotocol \"", name,
                                          "\" (want ", kJsonSubprotocol, " or ",
                                          kProtoSubprotocol, ")"));
}

absl::string_view SubprotocolName(Encoding encoding) {
  return encoding == Encoding::kJson ? kJsonSubprotocol : kProtoSubprotocol;
}

absl::Status DecodeFrame(Encoding encoding, absl::string_view data,
                         google::protobuf::Message* out) {
  out->Clear();
  if (encoding == Encoding::kBinary) {
    if (!out->ParseFromArray(data.data(), static_cast<int>(data.size()))) {
      return absl::InvalidArgumentError(
          "frame is not a valid protobuf message");
    }
    return absl::OkStatus();
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(data.data(), data.size()), out, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame is not valid JSON for the protocol: ",
                     std::string(status.message())));
  }
  return absl::OkStatus();
}

std::string EncodeFrame(Encoding encoding,
                        const google::protobuf::Message& frame) {
  std::string out;
  if (encoding == Encoding::kBinary) {
    frame.SerializeToString(&out);
    return out;
  }
  // Printing a valid message to JSON cannot fail.
  (void)google::protobuf::util::MessageToJsonString(frame, &out);
  return out;
}

}  // namespace parley
