// The proto round-trip tests: every ClientFrame and ServerFrame type through
// both encodings, and the JSON names client authors rely on.
#include "common/frame_codec.h"

#include <string>
#include <utility>
#include <vector>

#include "common/proto_test_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "parley/v1/client.pb.h"

namespace parley {
namespace {

using ::google::protobuf::Message;
using ::google::protobuf::util::MessageDifferencer;
using ::parley::v1::ClientFrame;
using ::parley::v1::ServerFrame;
using ::testing::HasSubstr;

// One fully populated sample of every client frame.
std::vector<ClientFrame> ClientSamples() {
  return {
      FromText<ClientFrame>(
          R"(hello { token: "a.b.c" device: "laptop" inbox_seq: 42 })"),
      FromText<ClientFrame>(
          R"(send { client_msg_id: "c-1" to { user: "bob" } text: "hi ✓" })"),
      FromText<ClientFrame>(
          R"(send { client_msg_id: "c-2" to { group: "team" } text: "all" })"),
      FromText<ClientFrame>(
          R"(sync { after_seq: 18446744073709551615 limit: 50 })"),
      FromText<ClientFrame>(R"(read { conversation: "d:alice:bob" seq: 7 })"),
      FromText<ClientFrame>(R"(typing { to { user: "bob" } })"),
      FromText<ClientFrame>(R"(ping { nonce: "n1" })"),
      FromText<ClientFrame>(
          R"(list_conversations { page_token: "MTcwMC9kOmE6Yg" limit: 20 })"),
      FromText<ClientFrame>(
          R"(history { conversation: "g:team" before_seq: 120 limit: 50 })"),
      FromText<ClientFrame>(R"(block { user: "bob" blocked: true })"),
      FromText<ClientFrame>(R"(list_blocked { })"),
      FromText<ClientFrame>(
          R"(edit { client_msg_id: "e-1" conversation: "d:alice:bob" seq: 4
                    text: "hello again" })"),
      FromText<ClientFrame>(
          R"(delete { client_msg_id: "x-1" conversation: "g:team" seq: 9 })"),
      FromText<ClientFrame>(
          R"(create_group { client_msg_id: "g-1" title: "Trip"
                            members: "bob" })"),
      FromText<ClientFrame>(
          R"(update_group { client_msg_id: "u-1" group: "g1"
                            set_role { user: "bob" role: GROUP_ROLE_OWNER } })"),
      FromText<ClientFrame>(R"(get_group { group: "g1" })"),
  };
}

const char kMessage[] = R"(
  inbox_seq: 9 message_id: "123" conversation: "d:alice:bob" seq: 4
  from: "alice" to { user: "bob" } text: "hello"
  sent_at { seconds: 1700000000 nanos: 5000000 } client_msg_id: "c-9")";

// One fully populated sample of every server frame.
std::vector<ServerFrame> ServerSamples() {
  return {
      FromText<ServerFrame>(R"(welcome { session_id: "gw1-7" user_id: "alice"
                            inbox_seq: 12 heartbeat_ms: 25000 })"),
      FromText<ServerFrame>(R"(ack { client_msg_id: "c-1" message_id: "123"
                            conversation: "d:alice:bob" seq: 4 inbox_seq: 9
                            sent_at { seconds: 1700000000 } })"),
      FromText<ServerFrame>(std::string("message {") + kMessage + "}"),
      FromText<ServerFrame>(std::string("synced { messages {") + kMessage +
                            "} inbox_seq: 20 more: true }"),
      FromText<ServerFrame>(
          R"(receipt { conversation: "g:team" user: "bob" seq: 3 })"),
      FromText<ServerFrame>(
          R"(typing { from: "bob" conversation: "d:alice:bob" })"),
      FromText<ServerFrame>(R"(presence { user: "bob" online: true })"),
      FromText<ServerFrame>(R"(error { code: ERROR_CODE_RATE_LIMITED
                            message: "slow down" client_msg_id: "c-3" })"),
      FromText<ServerFrame>(R"(pong { nonce: "n1" })"),
      FromText<ServerFrame>(R"(announcement { text: "maintenance at 10"
                            sent_at { seconds: 1700000000 } })"),
      FromText<ServerFrame>(
          R"(receipt { conversation: "g:team" user: "alice" seq: 3
             unread: 2 })"),
      FromText<ServerFrame>(
          std::string("conversations { conversations { id: \"d:alice:bob\" "
                      "kind: CONVERSATION_KIND_DIRECT title: \"Bob\" "
                      "peer: \"bob\" head_seq: 4 last_activity { seconds: "
                      "1700000000 } last_message {") +
          kMessage +
          "} read_seq: 2 unread: 1 peer_read_seq: 3 } "
          "next_page_token: \"MTcwMC9kOmE6Yg\" }"),
      FromText<ServerFrame>(std::string("history { conversation: "
                                        "\"d:alice:bob\" messages {") +
                            kMessage + "} more: true }"),
      FromText<ServerFrame>(R"(blocked { users: "bob" users: "zed" })"),
      FromText<ServerFrame>(
          R"(group { id: "g1" title: "Trip"
                     members { user: "alice" role: GROUP_ROLE_OWNER } })"),
      FromText<ServerFrame>(
          R"(message { inbox_seq: 12 conversation: "g:g1" seq: 2
                       kind: MESSAGE_KIND_GROUP_EVENT
                       group_event { type: GROUP_EVENT_TYPE_MEMBERS_ADDED
                                     actor: "alice" users: "dave" } })"),
      FromText<ServerFrame>(
          R"(message { inbox_seq: 11 conversation: "d:alice:bob" seq: 6
                       from: "alice" kind: MESSAGE_KIND_EDIT target_seq: 4
                       text: "hello again" })"),
      FromText<ServerFrame>(
          R"(message { conversation: "d:alice:bob" seq: 4 deleted: true
                       edited_at { seconds: 1700000100 } })"),
  };
}

TEST(FrameCodecTest, SamplesCoverEveryFrameType) {
  EXPECT_EQ(OneofMembersSet(ClientSamples(), "frame"),
            OneofMembers<ClientFrame>("frame"));
  EXPECT_EQ(OneofMembersSet(ServerSamples(), "frame"),
            OneofMembers<ServerFrame>("frame"));
}

template <typename T>
void ExpectRoundTrip(const std::vector<T>& samples) {
  for (Encoding encoding : {Encoding::kJson, Encoding::kBinary}) {
    for (const T& sample : samples) {
      const std::string wire = EncodeFrame(encoding, sample);
      T decoded;
      ASSERT_TRUE(DecodeFrame(encoding, wire, &decoded).ok()) << wire;
      EXPECT_TRUE(MessageDifferencer::Equals(sample, decoded))
          << "encoding " << static_cast<int>(encoding) << ": " << wire;
    }
  }
}

TEST(FrameCodecTest, EveryClientFrameRoundTripsInBothEncodings) {
  ExpectRoundTrip(ClientSamples());
}

TEST(FrameCodecTest, EveryServerFrameRoundTripsInBothEncodings) {
  ExpectRoundTrip(ServerSamples());
}

TEST(FrameCodecTest, JsonUsesTheDocumentedNames) {
  ClientFrame send = ClientSamples()[1];
  EXPECT_EQ(
      EncodeFrame(Encoding::kJson, send),
      R"({"send":{"clientMsgId":"c-1","to":{"user":"bob"},"text":"hi ✓"}})");
  std::string ack = EncodeFrame(Encoding::kJson, ServerSamples()[1]);
  EXPECT_THAT(ack, HasSubstr(R"("inboxSeq":"9")"));
  EXPECT_THAT(ack, HasSubstr(R"("sentAt":"2023-11-14T22:13:20Z")"));
  EXPECT_THAT(EncodeFrame(Encoding::kJson, ServerSamples()[7]),
              HasSubstr(R"("code":"ERROR_CODE_RATE_LIMITED")"));
}

TEST(FrameCodecTest, JsonAcceptsNumbersForSixtyFourBitFields) {
  ClientFrame f;
  ASSERT_TRUE(DecodeFrame(Encoding::kJson,
                          R"({"hello":{"token":"t","inboxSeq":42}})", &f)
                  .ok());
  EXPECT_EQ(f.hello().inbox_seq(), 42u);
}

TEST(FrameCodecTest, BadInputIsAnErrorNamingTheProblem) {
  ClientFrame f;
  absl::Status not_json = DecodeFrame(Encoding::kJson, "{nope", &f);
  EXPECT_EQ(not_json.code(), absl::StatusCode::kInvalidArgument);
  absl::Status unknown =
      DecodeFrame(Encoding::kJson, R"({"shout":{"text":"x"}})", &f);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("shout"));
  absl::Status bad_binary =
      DecodeFrame(Encoding::kBinary, std::string("\xff\xff\xff", 3), &f);
  EXPECT_EQ(bad_binary.code(), absl::StatusCode::kInvalidArgument);
}

TEST(FrameCodecTest, EmptyObjectDecodesToNoFrame) {
  ClientFrame f;
  ASSERT_TRUE(DecodeFrame(Encoding::kJson, "{}", &f).ok());
  EXPECT_EQ(f.frame_case(), ClientFrame::FRAME_NOT_SET);
}

TEST(FrameCodecTest, SplicingAnInboxSeqGivesWhatEncodingTheFrameGives) {
  std::vector<ServerFrame> messages = {
      FromText<ServerFrame>(std::string("message {") + kMessage + "}"),
      FromText<ServerFrame>(R"(message { text: "only text" })"),
      FromText<ServerFrame>(R"(message { })"),
  };
  for (ServerFrame& frame : messages)
    frame.mutable_message()->clear_inbox_seq();
  for (Encoding encoding : {Encoding::kJson, Encoding::kBinary}) {
    for (const ServerFrame& frame : messages) {
      const std::string base = EncodeFrame(encoding, frame);
      for (uint64_t seq : {uint64_t{0}, uint64_t{1}, uint64_t{127},
                           uint64_t{128}, uint64_t{300}, ~uint64_t{0}}) {
        ServerFrame full = frame;
        full.mutable_message()->set_inbox_seq(seq);
        auto spliced = SpliceInboxSeq(encoding, base, seq);
        ASSERT_TRUE(spliced.ok()) << spliced.status();
        EXPECT_EQ(*spliced, EncodeFrame(encoding, full))
            << frame.ShortDebugString() << " seq " << seq;
      }
    }
  }
}

TEST(FrameCodecTest, SplicingRefusesFramesThatAreNotBareMessages) {
  const ServerFrame pong = FromText<ServerFrame>(R"(pong { nonce: "n" })");
  const ServerFrame numbered =
      FromText<ServerFrame>(R"(message { inbox_seq: 4 })");
  for (Encoding encoding : {Encoding::kJson, Encoding::kBinary}) {
    for (const ServerFrame& frame : {pong, numbered}) {
      EXPECT_EQ(SpliceInboxSeq(encoding, EncodeFrame(encoding, frame), 5)
                    .status()
                    .code(),
                absl::StatusCode::kInvalidArgument)
          << frame.ShortDebugString();
    }
  }
}

TEST(FrameCodecTest, EveryFrameParleyBuildsIsEncodable) {
  for (const ServerFrame& frame : ServerSamples()) {
    EXPECT_TRUE(CheckEncodable(frame).ok()) << frame.ShortDebugString();
  }
  for (const ClientFrame& frame : ClientSamples()) {
    EXPECT_TRUE(CheckEncodable(frame).ok()) << frame.ShortDebugString();
  }
}

// A Timestamp JSON cannot print, as a peer may send one (a case found by
// gateway/fuzz/service_batch_fuzzer): EncodeFrame's JSON would be cut off.
TEST(FrameCodecTest, TimestampsOutOfRangeAreNotEncodable) {
  const std::pair<const char*, const char*> cases[] = {
      {R"(ack { sent_at { seconds: 253402300800 } })", "ack.sent_at"},
      {R"(ack { sent_at { seconds: -62135596801 } })", "ack.sent_at"},
      {R"(message { sent_at { nanos: 1767225600 } })", "message.sent_at"},
      {R"(synced { messages {} messages { sent_at { nanos: -1 } } })",
       "synced.messages[1].sent_at"},
  };
  for (const auto& [text, field] : cases) {
    const ServerFrame frame = FromText<ServerFrame>(text);
    const absl::Status status = CheckEncodable(frame);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(status.message()), HasSubstr(field)) << text;
    ServerFrame decoded;
    EXPECT_FALSE(DecodeFrame(Encoding::kJson,
                             EncodeFrame(Encoding::kJson, frame), &decoded)
                     .ok())
        << text;
  }
}

TEST(FrameCodecTest, SubprotocolNamesMapToEncodings) {
  EXPECT_EQ(*EncodingForSubprotocol("parley.v1.json"), Encoding::kJson);
  EXPECT_EQ(*EncodingForSubprotocol("parley.v1.proto"), Encoding::kBinary);
  EXPECT_EQ(EncodingForSubprotocol("chat").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(SubprotocolName(Encoding::kBinary), "parley.v1.proto");
}

}  // namespace
}  // namespace parley
