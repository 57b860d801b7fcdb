#include "common/frame_codec.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
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

namespace {

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Reads a varint from the front of `data`, advancing it.
bool ReadVarint(absl::string_view* data, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 64 && !data->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(data->front());
    data->remove_prefix(1);
    *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// ServerFrame.message: field 3, length-delimited.
constexpr uint64_t kMessageTag = (3 << 3) | 2;
// Message.inbox_seq: field 1, varint.
constexpr char kInboxSeqTag = (1 << 3) | 0;
constexpr absl::string_view kJsonMessagePrefix = R"({"message":{)";

}  // namespace

absl::StatusOr<std::string> SpliceInboxSeq(Encoding encoding,
                                           absl::string_view encoded,
                                           uint64_t inbox_seq) {
  const absl::Status not_a_message = absl::InvalidArgumentError(
      "not an encoded ServerFrame holding a Message without inbox_seq");
  if (inbox_seq == 0) return std::string(encoded);
  std::string out;
  if (encoding == Encoding::kJson) {
    if (!absl::ConsumePrefix(&encoded, kJsonMessagePrefix) ||
        absl::StartsWith(encoded, R"("inboxSeq")")) {
      return not_a_message;
    }
    out = absl::StrCat(kJsonMessagePrefix, R"("inboxSeq":")", inbox_seq, "\"",
                       absl::StartsWith(encoded, "}") ? "" : ",", encoded);
    return out;
  }
  uint64_t tag = 0;
  uint64_t length = 0;
  if (!ReadVarint(&encoded, &tag) || tag != kMessageTag ||
      !ReadVarint(&encoded, &length) || length != encoded.size() ||
      (!encoded.empty() && encoded.front() == kInboxSeqTag)) {
    return not_a_message;
  }
  std::string field(1, kInboxSeqTag);
  AppendVarint(inbox_seq, &field);
  AppendVarint(tag, &out);
  AppendVarint(length + field.size(), &out);
  absl::StrAppend(&out, field, encoded);
  return out;
}

namespace {

// RFC 3339's range, as protobuf's JSON mapping checks it.
constexpr int64_t kMinTimestampSeconds = -62135596800;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxTimestampSeconds = 253402300799;  // 9999-12-31T23:59:59Z

absl::Status CheckEncodable(const google::protobuf::Message& message,
                            const std::string& path) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* reflection = message.GetReflection();
  if (message.GetDescriptor()->full_name() == "google.protobuf.Timestamp") {
    const auto* descriptor = message.GetDescriptor();
    const int64_t seconds =
        reflection->GetInt64(message, descriptor->FindFieldByNumber(1));
    const int32_t nanos =
        reflection->GetInt32(message, descriptor->FindFieldByNumber(2));
    if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds ||
        nanos < 0 || nanos > 999999999) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", path, ": timestamp ", seconds, "s ", nanos,
                       "ns is outside RFC 3339's range"));
    }
    return absl::OkStatus();
  }
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string field_path =
        path.empty() ? field->name() : absl::StrCat(path, ".", field->name());
    if (!field->is_repeated()) {
      absl::Status status =
          CheckEncodable(reflection->GetMessage(message, field), field_path);
      if (!status.ok()) return status;
      continue;
    }
    for (int i = 0; i < reflection->FieldSize(message, field); ++i) {
      absl::Status status =
          CheckEncodable(reflection->GetRepeatedMessage(message, field, i),
                         absl::StrCat(field_path, "[", i, "]"));
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckEncodable(const google::protobuf::Message& frame) {
  return CheckEncodable(frame, "");
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
