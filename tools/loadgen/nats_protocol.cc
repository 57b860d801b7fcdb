// The NATS adapters: the NATS client text protocol carried in WebSocket
// binary frames (nats-server's websocket listener). A NATS operation may span
// frames and a frame may hold several, so a session keeps a byte buffer.
//
//   * nats: core NATS, at most once, nothing stored: SUB own subject, a send
//     is a PUB to the peer's subject, MSG = delivery, no acks.
//   * jetstream: a durable peer. One file-storage stream "PARLEY" holds the
//     subjects u.<user> (each user's messages); each connection creates an
//     ephemeral push consumer with explicit acks filtered on its own subject.
//     A send is a PUB with a reply subject, acked by JetStream's PubAck once
//     stored; a delivery is acked back (+ACK) to the consumer.
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/loadgen/protocol.h"

namespace parley::loadgen {
namespace {

// The NATS operations both adapters read, split out of the byte stream.
class NatsConnection : public ProtocolSession {
 public:
  std::string Resource() const override { return "/"; }
  std::string Subprotocol() const override { return ""; }
  WsOpcode DataOpcode() const override { return WsOpcode::kBinary; }

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
        if (parts.size() < 4 || parts.size() > 5 ||
            !absl::SimpleAtoi(parts.back(), &n)) {
          status = absl::InvalidArgumentError(
              absl::StrCat("bad NATS MSG line: ", line));
          break;
        }
        if (buffer_.size() < eol + 2 + n + 2) break;  // Payload not here yet.
        status = OnMsg(parts[1], parts[2], parts.size() == 5 ? parts[3] : "",
                       absl::string_view(buffer_.data() + eol + 2, n), events);
        pos = eol + 2 + n + 2;
        continue;
      }
      if (line == "PING") {
        events.SendPayload("PONG\r\n");
      } else if (line == "PONG") {
        OnPong(events);
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

 protected:
  // A message on the session's subscription `sid`.
  virtual absl::Status OnMsg(absl::string_view subject, absl::string_view sid,
                             absl::string_view reply, absl::string_view payload,
                             SessionEvents& events) = 0;
  virtual void OnPong(SessionEvents& events) = 0;

 private:
  std::string buffer_;
};

constexpr absl::string_view kConnect =
    "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\n";

class NatsSession final : public NatsConnection {
 public:
  explicit NatsSession(const SessionSpec& spec) : spec_(spec) {}

  void OnOpen(SessionEvents& events) override {
    std::string hello = absl::StrCat(kConnect, "SUB ", spec_.self, " 1\r\n");
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

 private:
  absl::Status OnMsg(absl::string_view, absl::string_view, absl::string_view,
                     absl::string_view payload,
                     SessionEvents& events) override {
    events.OnDelivery(payload);
    return absl::OkStatus();
  }
  void OnPong(SessionEvents& events) override {
    if (!ready_) {
      ready_ = true;
      events.OnReady();
    }
  }

  const SessionSpec spec_;
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

// The stream every jetstream session asks for; creating it again with the
// same configuration succeeds, so whichever session comes first creates it.
constexpr absl::string_view kStreamCreate =
    "{\"name\":\"PARLEY\",\"subjects\":[\"u.*\"],\"storage\":\"file\","
    "\"retention\":\"limits\",\"discard\":\"old\",\"num_replicas\":1}";

class JetStreamSession final : public NatsConnection {
 public:
  // The subscription to the consumer's deliver subject.
  static constexpr absl::string_view kConsumerSid = "2";

  explicit JetStreamSession(const SessionSpec& spec)
      : spec_(spec), inbox_(absl::StrCat("_INBOX.", spec.self)) {}

  void OnOpen(SessionEvents& events) override {
    ++stream_attempts_;
    events.SendPayload(absl::StrCat(kConnect, "SUB ", inbox_, ".> 1\r\n",
                                    "SUB d.", spec_.self, " 2\r\n",
                                    StreamCreate()));
  }

  std::string EncodeSend(absl::string_view client_id,
                         absl::string_view text) override {
    return Pub(absl::StrCat("u.", spec_.to),
               absl::StrCat(inbox_, ".ack.", client_id), text);
  }

 private:
  static std::string Pub(absl::string_view subject, absl::string_view reply,
                         absl::string_view payload) {
    return absl::StrCat("PUB ", subject, " ", reply, reply.empty() ? "" : " ",
                        payload.size(), "\r\n", payload, "\r\n");
  }

  // Whether a JetStream API answer or PubAck is an error (it then holds an
  // "error" object).
  static bool IsError(absl::string_view payload) {
    return absl::StrContains(payload, "\"error\"");
  }

  absl::Status OnMsg(absl::string_view subject, absl::string_view sid,
                     absl::string_view reply, absl::string_view payload,
                     SessionEvents& events) override {
    if (sid == kConsumerSid) {
      // A stored message pushed by this session's consumer (under its
      // original subject): ack it.
      events.OnDelivery(payload);
      if (!reply.empty()) events.SendPayload(Pub(reply, "", "+ACK"));
      return absl::OkStatus();
    }
    absl::string_view rest = subject;
    if (!absl::ConsumePrefix(&rest, inbox_) ||
        !absl::ConsumePrefix(&rest, ".")) {
      return absl::InvalidArgumentError(
          absl::StrCat("MSG on an unexpected subject: ", subject));
    }
    if (absl::ConsumePrefix(&rest, "ack.")) {
      if (IsError(payload)) {
        events.OnError("jetstream.puback", rest);
      } else {
        events.OnAck(rest);
      }
      return absl::OkStatus();
    }
    // Creating the stream again with the same configuration succeeds, and a
    // consumer may be asked for again, so a refusal of either is retried a
    // few times before it is fatal: nats-server 2.9 refuses some of many
    // creations at once (on a busy machine a few consumers of 200; and when
    // sessions create the same stream at the same moment, some get "subjects
    // overlap with an existing stream", err_code 10065, from the one being
    // created).
    if (IsError(payload)) {
      if (rest == "stream" && stream_attempts_ < kCreateAttempts) {
        events.OnError("jetstream.stream_create_retried", "");
        CreateStream(events);
        return absl::OkStatus();
      }
      if (rest == "consumer" && consumer_attempts_ < kCreateAttempts) {
        events.OnError("jetstream.consumer_create_retried", "");
        CreateConsumer(events);
        return absl::OkStatus();
      }
      return absl::FailedPreconditionError(
          absl::StrCat("JetStream refused ", rest, " creation: ", payload));
    }
    if (rest == "stream") {
      CreateConsumer(events);
      return absl::OkStatus();
    }
    if (rest == "consumer") {
      // The PONG to this PING proves the consumer's subscription is live.
      events.SendPayload("PING\r\n");
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        absl::StrCat("MSG on an unexpected subject: ", subject));
  }

  void OnPong(SessionEvents& events) override {
    if (!ready_) {
      ready_ = true;
      events.OnReady();
    }
  }

  static constexpr int kCreateAttempts = 5;

  std::string StreamCreate() const {
    return Pub("$JS.API.STREAM.CREATE.PARLEY", inbox_ + ".stream",
               kStreamCreate);
  }

  void CreateStream(SessionEvents& events) {
    ++stream_attempts_;
    events.SendPayload(StreamCreate());
  }

  void CreateConsumer(SessionEvents& events) {
    ++consumer_attempts_;
    const std::string config = absl::StrCat(
        "{\"stream_name\":\"PARLEY\",\"config\":{\"deliver_subject\":\"d.",
        spec_.self, "\",\"filter_subject\":\"u.", spec_.self,
        "\",\"ack_policy\":\"explicit\",\"deliver_policy\":\"new\","
        "\"max_ack_pending\":100000}}");
    events.SendPayload(
        Pub("$JS.API.CONSUMER.CREATE.PARLEY", inbox_ + ".consumer", config));
  }

  const SessionSpec spec_;
  const std::string inbox_;
  bool ready_ = false;
  int stream_attempts_ = 0;
  int consumer_attempts_ = 0;
};

class JetStreamProtocol final : public Protocol {
 public:
  std::string name() const override { return "jetstream"; }
  bool has_acks() const override { return true; }
  // A consumer filters on one subject in nats-server 2.9, so a member would
  // need a consumer per group: not modelled.
  bool supports_groups() const override { return false; }
  std::unique_ptr<ProtocolSession> NewSession(
      const SessionSpec& spec) const override {
    return std::make_unique<JetStreamSession>(spec);
  }
};

}  // namespace

std::unique_ptr<Protocol> MakeNatsProtocol() {
  return std::make_unique<NatsProtocol>();
}

std::unique_ptr<Protocol> MakeJetStreamProtocol() {
  return std::make_unique<JetStreamProtocol>();
}

}  // namespace parley::loadgen
