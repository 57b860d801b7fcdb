#include "common/frame_codec.h"

#include "absl/strings/str_cat.h"
#include "common/json_codec.h"

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
  absl::Status status = JsonToMessage(data, out);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "frame is not valid JSON for the protocol: ", status.message()));
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
  return MessageToJson(frame);
}

}  // namespace parley
