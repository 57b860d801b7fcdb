// The raw relay adapter: frames are the payload, the relay forwards each one
// to the other connection with the same ?pair= key (see relay_main.cc). The
// session is ready when the relay says the pair is complete.
#include "absl/strings/str_cat.h"
#include "tools/loadgen/pair_table.h"
#include "tools/loadgen/protocol.h"

namespace parley::loadgen {
namespace {

class RelaySession final : public ProtocolSession {
 public:
  explicit RelaySession(const SessionSpec& spec) : pair_(spec.pair) {}

  std::string Resource() const override {
    return absl::StrCat("/?pair=", pair_);
  }
  std::string Subprotocol() const override { return ""; }
  WsOpcode DataOpcode() const override { return WsOpcode::kText; }
  void OnOpen(SessionEvents&) override {}
  std::string EncodeSend(absl::string_view, absl::string_view text) override {
    return std::string(text);
  }
  absl::Status OnFrame(absl::string_view payload,
                       SessionEvents& events) override {
    if (payload == kRelayPairedNotice) {
      // Again when the peer was replaced (it reconnected): nothing to do.
      if (!paired_) events.OnReady();
      paired_ = true;
      return absl::OkStatus();
    }
    if (!paired_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "relay sent \"", payload, "\" before ", kRelayPairedNotice));
    }
    events.OnDelivery(payload);
    return absl::OkStatus();
  }

 private:
  const std::string pair_;
  bool paired_ = false;
};

class RelayProtocol final : public Protocol {
 public:
  std::string name() const override { return "relay"; }
  bool has_acks() const override { return false; }
  bool supports_groups() const override { return false; }
  std::unique_ptr<ProtocolSession> NewSession(
      const SessionSpec& spec) const override {
    return std::make_unique<RelaySession>(spec);
  }
};

}  // namespace

std::unique_ptr<Protocol> MakeRelayProtocol() {
  return std::make_unique<RelayProtocol>();
}

}  // namespace parley::loadgen
