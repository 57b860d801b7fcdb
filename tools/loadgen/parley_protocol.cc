// The Parley client protocol adapter (see proto/parley/v1/client.proto).
#include "absl/strings/str_cat.h"
#include "common/frame_codec.h"
#include "parley/v1/client.pb.h"
#include "tools/loadgen/protocol.h"

namespace parley::loadgen {
namespace {

class ParleySession final : public ProtocolSession {
 public:
  ParleySession(const SessionSpec& spec, Encoding encoding)
      : spec_(spec), encoding_(encoding) {}

  std::string Resource() const override {
    return absl::StrCat("/?token=", spec_.token);
  }
  std::string Subprotocol() const override {
    return std::string(SubprotocolName(encoding_));
  }
  WsOpcode DataOpcode() const override {
    return encoding_ == Encoding::kJson ? WsOpcode::kText : WsOpcode::kBinary;
  }
  // Authentication rides on ?token=; Welcome says the session is live.
  void OnOpen(SessionEvents&) override {}

  std::string EncodeSend(absl::string_view client_id,
                         absl::string_view text) override {
    send_.Clear();
    v1::Send* send = send_.mutable_send();
    send->set_client_msg_id(std::string(client_id));
    if (spec_.to_group) {
      send->mutable_to()->set_group(spec_.to);
    } else {
      send->mutable_to()->set_user(spec_.to);
    }
    send->set_text(std::string(text));
    return EncodeFrame(encoding_, send_);
  }

  absl::Status OnFrame(absl::string_view payload,
                       SessionEvents& events) override {
    if (absl::Status s = DecodeFrame(encoding_, payload, &frame_); !s.ok()) {
      return s;
    }
    switch (frame_.frame_case()) {
      case v1::ServerFrame::kWelcome:
        events.OnReady();
        break;
      case v1::ServerFrame::kMessage:
        events.OnDelivery(frame_.message().text());
        break;
      case v1::ServerFrame::kAck:
        events.OnAck(frame_.ack().client_msg_id());
        break;
      case v1::ServerFrame::kError:
        events.OnError(
            absl::StrCat("parley.", v1::ErrorCode_Name(frame_.error().code())),
            frame_.error().client_msg_id());
        break;
      default:
        break;  // Presence, typing, receipts: not part of the measurement.
    }
    return absl::OkStatus();
  }

 private:
  const SessionSpec spec_;
  const Encoding encoding_;
  v1::ClientFrame send_;
  v1::ServerFrame frame_;
};

class ParleyProtocol final : public Protocol {
 public:
  explicit ParleyProtocol(bool binary) : binary_(binary) {}
  std::string name() const override {
    return binary_ ? "parley-proto" : "parley";
  }
  bool has_acks() const override { return true; }
  bool supports_groups() const override { return true; }
  std::unique_ptr<ProtocolSession> NewSession(
      const SessionSpec& spec) const override {
    return std::make_unique<ParleySession>(
        spec, binary_ ? Encoding::kBinary : Encoding::kJson);
  }

 private:
  const bool binary_;
};

}  // namespace

std::unique_ptr<Protocol> MakeParleyProtocol(bool binary) {
  return std::make_unique<ParleyProtocol>(binary);
}

}  // namespace parley::loadgen
