// The NATS adapter: the NATS client text protocol carried in WebSocket binary
// frames (nats-server's websocket listener). A NATS operation may span frames
// and a frame may hold several, so the session keeps a byte buffer.
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/loadgen/protocol.h"

namespace parley::loadgen {
namespace {

class NatsSession final : public ProtocolSession {
 public:
  explicit NatsSession(const SessionSpec& spec) : spec_(spec) {}

  std::string Resource() const override { return "/"; }
  std::string Subprotocol() const override { return ""; }
  WsOpcode DataOpcode() const override { return WsOpcode::kBinary; }

  void OnOpen(SessionEvents& events) override {
    std::string hello = absl::StrCat(
        "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\n",
        "SUB ", spec_.self, " 1\r\n");
    if (!spec_.group_subject.empty()) {
      absl::StrAppend(&hello, "SUB ", spec_.group_subject, " 2\r\n");
    }
    // The PONG to this PING proves the subscriptions are in place.
    hello += "PING\r\n";
    events.SendPayload(hello);
  }

  std::string EncodeSend(absl::string_view, absl::string_view text) override {
    return absl::StrCat("PUB ", spec_.to, " ", text.size(), "\r\n", text,
                        "\r\n");
  }

  absl::Status OnFrame(absl::string_view payload,
                       SessionEvents& events) override {
    buffer_.append(payload.data(), payload.size());
    size_t pos = 0;
    absl::Status status;
    while (status.ok()) {
      const size_t eol = buffer_.find("\r\n", pos);
      if (eol == std::string::npos) break;
      absl::string_view line(buffer_.data() + pos, eol - pos);
      if (absl::StartsWith(line, "MSG ")) {
        // MSG <subject> <sid> [reply-to] <#bytes>
        std::vector<absl::string_view> parts =
            absl::StrSplit(line, ' ', absl::SkipEmpty());
        size_t n = 0;
        if (parts.size() < 4 || !absl::SimpleAtoi(parts.back(), &n)) {
          status = absl::InvalidArgumentError(
              absl::StrCat("bad NATS MSG line: ", line));
          break;
        }
        if (buffer_.size() < eol + 2 + n + 2) break;  // Payload not here yet.
        events.OnDelivery(absl::string_view(buffer_.data() + eol + 2, n));
        pos = eol + 2 + n + 2;
        continue;
      }
      if (line == "PING") {
        events.SendPayload("PONG\r\n");
      } else if (line == "PONG") {
        if (!ready_) {
          ready_ = true;
          events.OnReady();
        }
      } else if (absl::StartsWith(line, "-ERR")) {
        events.OnError("nats.err", "");
      } else if (!absl::StartsWith(line, "INFO") && line != "+OK") {
        status = absl::InvalidArgumentError(
            absl::StrCat("unknown NATS operation: ", line));
      }
      pos = eol + 2;
    }
    buffer_.erase(0, pos);
    return status;
  }

 private:
  const SessionSpec spec_;
  std::string buffer_;
  bool ready_ = false;
};

class NatsProtocol final : public Protocol {
 public:
  std::string name() const override { return "nats"; }
  bool has_acks() const override { return false; }
  bool supports_groups() const override { return true; }
  std::unique_ptr<ProtocolSession> NewSession(
      const SessionSpec& spec) const override {
    return std::make_unique<NatsSession>(spec);
  }
};

}  // namespace

std::unique_ptr<Protocol> MakeNatsProtocol() {
  return std::make_unique<NatsProtocol>();
}

}  // namespace parley::loadgen
