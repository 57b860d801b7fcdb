#include "tools/loadgen/protocol.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/frame_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/client.pb.h"
#include "tools/loadgen/pair_table.h"

namespace parley::loadgen {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Records what a session reports.
class RecordingEvents final : public SessionEvents {
 public:
  void OnReady() override { log.push_back("ready"); }
  void OnDelivery(absl::string_view text) override {
    log.push_back(absl::StrCat("delivery:", text));
  }
  void OnAck(absl::string_view id) override {
    log.push_back(absl::StrCat("ack:", id));
  }
  void OnError(absl::string_view kind, absl::string_view id) override {
    log.push_back(absl::StrCat("error:", kind, ":", id));
  }
  void SendPayload(absl::string_view payload) override {
    sent.emplace_back(payload);
  }
  std::vector<std::string> log;
  std::vector<std::string> sent;
};

SessionSpec Spec() {
  SessionSpec s;
  s.self = "alice";
  s.to = "bob";
  s.token = "tok.en.sig";
  s.pair = "p7";
  return s;
}

TEST(ParleyProtocolTest, AuthenticatesByQueryAndSendsJsonToThePeer) {
  auto session = MakeParleyProtocol(false)->NewSession(Spec());
  EXPECT_EQ(session->Resource(), "/?token=tok.en.sig");
  EXPECT_EQ(session->Subprotocol(), "parley.v1.json");
  EXPECT_EQ(session->DataOpcode(), WsOpcode::kText);
  v1::ClientFrame frame;
  ASSERT_TRUE(
      DecodeFrame(Encoding::kJson, session->EncodeSend("1.5", "hi"), &frame)
          .ok());
  EXPECT_EQ(frame.send().client_msg_id(), "1.5");
  EXPECT_EQ(frame.send().to().user(), "bob");
  EXPECT_EQ(frame.send().text(), "hi");
}

TEST(ParleyProtocolTest, GroupSendsNameTheGroup) {
  SessionSpec spec = Spec();
  spec.to = "g1";
  spec.to_group = true;
  auto session = MakeParleyProtocol(true)->NewSession(spec);
  EXPECT_EQ(session->DataOpcode(), WsOpcode::kBinary);
  v1::ClientFrame frame;
  ASSERT_TRUE(
      DecodeFrame(Encoding::kBinary, session->EncodeSend("1.5", "hi"), &frame)
          .ok());
  EXPECT_EQ(frame.send().to().group(), "g1");
}

TEST(ParleyProtocolTest, ServerFramesBecomeEvents) {
  auto session = MakeParleyProtocol(false)->NewSession(Spec());
  RecordingEvents events;
  session->OnOpen(events);
  EXPECT_TRUE(events.log.empty()) << "ready only after Welcome";
  v1::ServerFrame welcome, message, ack, error;
  welcome.mutable_welcome()->set_user_id("alice");
  message.mutable_message()->set_text("lg 1 2 3");
  ack.mutable_ack()->set_client_msg_id("2.3");
  error.mutable_error()->set_code(v1::ERROR_CODE_RATE_LIMITED);
  error.mutable_error()->set_client_msg_id("4.5");
  for (const auto* f : {&welcome, &message, &ack, &error}) {
    ASSERT_TRUE(
        session->OnFrame(EncodeFrame(Encoding::kJson, *f), events).ok());
  }
  EXPECT_THAT(events.log,
              ElementsAre("ready", "delivery:lg 1 2 3", "ack:2.3",
                          "error:parley.ERROR_CODE_RATE_LIMITED:4.5"));
  EXPECT_FALSE(session->OnFrame("{not json", events).ok());
}

TEST(RelayProtocolTest, PairsByQueryAndPassesPayloadsThrough) {
  auto session = MakeRelayProtocol()->NewSession(Spec());
  EXPECT_EQ(session->Resource(), "/?pair=p7");
  RecordingEvents events;
  session->OnOpen(events);
  EXPECT_TRUE(events.log.empty()) << "ready only once the pair is complete";
  EXPECT_EQ(session->EncodeSend("id", "payload"), "payload");
  ASSERT_TRUE(session->OnFrame(kRelayPairedNotice, events).ok());
  ASSERT_TRUE(session->OnFrame("lg 1 2 3", events).ok());
  // Again after the peer reconnected: not a delivery, not ready twice.
  ASSERT_TRUE(session->OnFrame(kRelayPairedNotice, events).ok());
  EXPECT_THAT(events.log, ElementsAre("ready", "delivery:lg 1 2 3"));
}

TEST(RelayProtocolTest, AFrameBeforeThePairingNoticeIsAnError) {
  auto session = MakeRelayProtocol()->NewSession(Spec());
  RecordingEvents events;
  session->OnOpen(events);
  absl::Status s = session->OnFrame("lg 1 2 3", events);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("before relay.paired"));
  EXPECT_TRUE(events.log.empty());
}

TEST(NatsProtocolTest, SubscribesThenIsReadyOnPong) {
  SessionSpec spec = Spec();
  spec.group_subject = "g1";
  auto session = MakeNatsProtocol()->NewSession(spec);
  RecordingEvents events;
  session->OnOpen(events);
  ASSERT_EQ(events.sent.size(), 1u);
  EXPECT_THAT(events.sent[0], HasSubstr("CONNECT {"));
  EXPECT_THAT(events.sent[0], HasSubstr("SUB alice 1\r\n"));
  EXPECT_THAT(events.sent[0], HasSubstr("SUB g1 2\r\n"));
  EXPECT_THAT(events.sent[0], HasSubstr("PING\r\n"));
  ASSERT_TRUE(session->OnFrame("INFO {\"server_id\":\"x\"}\r\n", events).ok());
  EXPECT_TRUE(events.log.empty());
  ASSERT_TRUE(session->OnFrame("PONG\r\n", events).ok());
  EXPECT_THAT(events.log, ElementsAre("ready"));
  EXPECT_EQ(session->EncodeSend("id", "hello"), "PUB bob 5\r\nhello\r\n");
}

TEST(NatsProtocolTest, MessagesSplitAcrossAndPackedIntoFramesAreDelivered) {
  auto session = MakeNatsProtocol()->NewSession(Spec());
  RecordingEvents events;
  ASSERT_TRUE(session->OnFrame("MSG alice 1 5\r\nhel", events).ok());
  EXPECT_TRUE(events.log.empty());
  ASSERT_TRUE(
      session->OnFrame("lo\r\nPING\r\nMSG alice 1 reply.x 2\r\nok\r\n", events)
          .ok());
  EXPECT_THAT(events.log, ElementsAre("delivery:hello", "delivery:ok"));
  EXPECT_THAT(events.sent, ElementsAre("PONG\r\n"));
}

TEST(NatsProtocolTest, ServerErrorsAndGarbageAreReported) {
  auto session = MakeNatsProtocol()->NewSession(Spec());
  RecordingEvents events;
  ASSERT_TRUE(session->OnFrame("-ERR 'Slow Consumer'\r\n", events).ok());
  EXPECT_THAT(events.log, ElementsAre("error:nats.err:"));
  EXPECT_FALSE(session->OnFrame("BOGUS\r\n", events).ok());
}

TEST(JetStreamProtocolTest, CreatesStreamThenConsumerThenIsReadyOnPong) {
  auto session = MakeJetStreamProtocol()->NewSession(Spec());
  RecordingEvents events;
  session->OnOpen(events);
  ASSERT_EQ(events.sent.size(), 1u);
  EXPECT_THAT(events.sent[0], HasSubstr("SUB _INBOX.alice.> 1\r\n"));
  EXPECT_THAT(events.sent[0], HasSubstr("SUB d.alice 2\r\n"));
  EXPECT_THAT(
      events.sent[0],
      HasSubstr("PUB $JS.API.STREAM.CREATE.PARLEY _INBOX.alice.stream "));
  EXPECT_THAT(events.sent[0], HasSubstr("\"storage\":\"file\""));
  ASSERT_TRUE(
      session->OnFrame("MSG _INBOX.alice.stream 1 8\r\n{\"ok\":1}\r\n", events)
          .ok());
  ASSERT_EQ(events.sent.size(), 2u);
  EXPECT_THAT(events.sent[1], HasSubstr("PUB $JS.API.CONSUMER.CREATE.PARLEY "
                                        "_INBOX.alice.consumer "));
  EXPECT_THAT(events.sent[1], HasSubstr("\"filter_subject\":\"u.alice\""));
  EXPECT_THAT(events.sent[1], HasSubstr("\"ack_policy\":\"explicit\""));
  ASSERT_TRUE(
      session->OnFrame("MSG _INBOX.alice.consumer 1 2\r\n{}\r\n", events).ok());
  EXPECT_EQ(events.sent.back(), "PING\r\n");
  EXPECT_TRUE(events.log.empty());
  ASSERT_TRUE(session->OnFrame("PONG\r\n", events).ok());
  EXPECT_THAT(events.log, ElementsAre("ready"));
  EXPECT_EQ(session->EncodeSend("c1", "hello"),
            "PUB u.bob _INBOX.alice.ack.c1 5\r\nhello\r\n");
}

TEST(JetStreamProtocolTest, PubAcksAckAndDeliveriesAreAckedBack) {
  auto session = MakeJetStreamProtocol()->NewSession(Spec());
  RecordingEvents events;
  ASSERT_TRUE(
      session
          ->OnFrame("MSG _INBOX.alice.ack.c1 1 27\r\n"
                    "{\"stream\":\"PARLEY\",\"seq\":7}\r\n"
                    "MSG u.alice 2 $JS.ACK.PARLEY.x.1.7.7.1.0 2\r\nhi\r\n"
                    "MSG _INBOX.alice.ack.c2 1 17\r\n"
                    "{\"error\":{\"x\":1}}\r\n",
                    events)
          .ok());
  EXPECT_THAT(events.log, ElementsAre("ack:c1", "delivery:hi",
                                      "error:jetstream.puback:c2"));
  EXPECT_THAT(events.sent,
              ElementsAre("PUB $JS.ACK.PARLEY.x.1.7.7.1.0 4\r\n+ACK\r\n"));
}

// nats-server 2.9 refuses some of many creations at once: each is asked for
// again up to five times in all (each retry counted), then it is fatal.
void ExpectRetriedFourTimesThenFatal(absl::string_view what,
                                     absl::string_view api) {
  auto session = MakeJetStreamProtocol()->NewSession(Spec());
  RecordingEvents events;
  session->OnOpen(events);
  if (what == "consumer") {
    ASSERT_TRUE(
        session
            ->OnFrame("MSG _INBOX.alice.stream 1 8\r\n{\"ok\":1}\r\n", events)
            .ok());
  }
  const size_t sent_before = events.sent.size();
  const std::string refusal = absl::StrCat(
      "MSG _INBOX.alice.", what, " 1 17\r\n{\"error\":{\"x\":1}}\r\n");
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(session->OnFrame(refusal, events).ok()) << what << i;
    EXPECT_THAT(events.sent.back(), HasSubstr(absl::StrCat("PUB ", api, " ")));
  }
  EXPECT_EQ(events.sent.size(), sent_before + 4);
  ASSERT_EQ(events.log.size(), 4u);
  EXPECT_EQ(events.log[0],
            absl::StrCat("error:jetstream.", what, "_create_retried:"));
  absl::Status s = session->OnFrame(refusal, events);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("JetStream refused ", what)));
}

TEST(JetStreamProtocolTest, ARefusedStreamIsAskedForAgainAFewTimes) {
  ExpectRetriedFourTimesThenFatal("stream", "$JS.API.STREAM.CREATE.PARLEY");
}

TEST(JetStreamProtocolTest, ARefusedConsumerIsAskedForAgainAFewTimes) {
  ExpectRetriedFourTimesThenFatal("consumer", "$JS.API.CONSUMER.CREATE.PARLEY");
}

TEST(MakeProtocolTest, KnowsTheFiveTargets) {
  for (const char* name :
       {"parley", "parley-proto", "relay", "nats", "jetstream"}) {
    absl::StatusOr<std::unique_ptr<Protocol>> p = MakeProtocol(name);
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_EQ((*p)->name(), name);
  }
  EXPECT_FALSE(MakeProtocol("mqtt").ok());
  EXPECT_TRUE((*MakeProtocol("parley"))->has_acks());
  EXPECT_TRUE((*MakeProtocol("jetstream"))->has_acks());
  EXPECT_FALSE((*MakeProtocol("nats"))->has_acks());
  EXPECT_FALSE((*MakeProtocol("relay"))->supports_groups());
}

}  // namespace
}  // namespace parley::loadgen
