// The codec against its reference, protobuf's json_util: every client and
// server frame printed byte for byte alike and parsed back, every code point,
// timestamps across their range, and tables of invalid and unusual input that
// both must reject or both must read the same way.
#include "common/json_codec.h"

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/proto_test_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "parley/v1/client.pb.h"

namespace parley {
namespace {

using ::google::protobuf::Message;
using ::google::protobuf::util::MessageDifferencer;
using ::parley::v1::ClientFrame;
using ::parley::v1::ServerFrame;
using ::testing::StartsWith;

// What protobuf's json_util prints, with the options the codec matches.
std::string ProtobufJson(const Message& message) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out);
  return out;
}

bool ProtobufAccepts(const std::string& json, Message* out) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  return google::protobuf::util::JsonStringToMessage(json, out, options).ok();
}

// Strings that exercise escaping: quotes, backslashes, control characters,
// HTML-significant characters, U+2028, non-ASCII and a surrogate pair.
const char kTrickyText[] =
    "she said \"hi\" \\o/ <b>&amp;</b>\t\n\r\b\f\x01\x1f\x7f "
    "caf\u00e9 \u2028\u2029 \u00ad\ufeff \U0001F600\U0001F44D\U0001F3FD";

std::vector<ClientFrame> ClientSamples() {
  std::vector<ClientFrame> samples = {
      FromText<ClientFrame>(
          R"(hello { token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
                           device: "alice-laptop" inbox_seq: 1234567 })"),
      FromText<ClientFrame>(R"(hello { token: "t" })"),
      FromText<ClientFrame>(R"(hello { token: "t" inbox_seq: 0 })"),
      FromText<ClientFrame>(
          R"(send { client_msg_id: "c-8f14e45f" to { user: "bob" }
                           text: "are we still on for lunch?" })"),
      FromText<ClientFrame>(
          R"(send { client_msg_id: "c-2" to { group: "team-7" }
                           text: "standup in 5" })"),
      FromText<ClientFrame>(R"(send { client_msg_id: "c-3" to { user: "" } })"),
      FromText<ClientFrame>(
          R"(sync { after_seq: 18446744073709551615 limit: 4294967295 })"),
      FromText<ClientFrame>(R"(sync { after_seq: 1 })"),
      FromText<ClientFrame>(R"(read { conversation: "d:alice:bob" seq: 42 })"),
      FromText<ClientFrame>(R"(typing { to { group: "team-7" } })"),
      FromText<ClientFrame>(R"(typing { })"),
      FromText<ClientFrame>(R"(ping { nonce: "n-1717171717" })"),
      FromText<ClientFrame>(R"(ping { })"),
      FromText<ClientFrame>(
          R"(list_conversations { page_token: "MTcwMC9kOmE6Yg" limit: 20 })"),
      FromText<ClientFrame>(R"(list_conversations { })"),
      FromText<ClientFrame>(
          R"(history { conversation: "g:team-7" before_seq: 120 limit: 50 })"),
      FromText<ClientFrame>(R"(block { user: "bob" blocked: true })"),
      FromText<ClientFrame>(R"(block { user: "bob" })"),
      FromText<ClientFrame>(R"(list_blocked { })"),
      FromText<ClientFrame>(
          R"(edit { client_msg_id: "e-1" conversation: "d:alice:bob" seq: 4
                    text: "lunch at 1?" })"),
      FromText<ClientFrame>(
          R"(delete { client_msg_id: "x-1" conversation: "g:team-7" seq: 9 })"),
      FromText<ClientFrame>(R"(delete { })"),
      FromText<ClientFrame>(
          R"(create_group { client_msg_id: "g-1" title: "Trip \"26\""
                            members: "bob" members: "carol" })"),
      FromText<ClientFrame>(R"(create_group { })"),
      FromText<ClientFrame>(
          R"(update_group { client_msg_id: "u-1" group: "g1"
                            add_members { users: "dave" } })"),
      FromText<ClientFrame>(
          R"(update_group { group: "g1" remove_members { } })"),
      FromText<ClientFrame>(R"(update_group { group: "g1" rename: "Crew" })"),
      FromText<ClientFrame>(R"(update_group { group: "g1" leave { } })"),
      FromText<ClientFrame>(
          R"(update_group { group: "g1"
                            set_role { user: "bob" role: GROUP_ROLE_ADMIN } })"),
      FromText<ClientFrame>(R"(update_group { set_role { role: 7 } })"),
      FromText<ClientFrame>(R"(get_group { group: "g1" })"),
      ClientFrame(),
  };
  ClientFrame tricky;
  tricky.mutable_send()->set_client_msg_id("c-\"quoted\"");
  tricky.mutable_send()->mutable_to()->set_user("b\\o\\b");
  tricky.mutable_send()->set_text(kTrickyText);
  samples.push_back(tricky);
  ClientFrame nul;
  nul.mutable_ping()->set_nonce(std::string("a\0b", 3));
  samples.push_back(nul);
  return samples;
}

const char kMessage[] = R"(
  inbox_seq: 1234567 message_id: "1717171717000-42" conversation: "d:alice:bob"
  seq: 5678 from: "alice" to { user: "bob" } text: "lunch?"
  sent_at { seconds: 1717171717 nanos: 123000000 } client_msg_id: "c-8f14e45f")";

std::vector<ServerFrame> ServerSamples() {
  std::vector<ServerFrame> samples = {
      FromText<ServerFrame>(R"(welcome { session_id: "gw1-7f3a" user_id: "alice"
                           inbox_seq: 12 heartbeat_ms: 25000 })"),
      FromText<ServerFrame>(R"(ack { client_msg_id: "c-1" message_id: "123"
                           conversation: "d:alice:bob" seq: 4 inbox_seq: 9
                           sent_at { seconds: 1700000000 } })"),
      FromText<ServerFrame>(std::string("message {") + kMessage + "}"),
      FromText<ServerFrame>(R"(message { to { group: "team-7" } })"),
      FromText<ServerFrame>(std::string("synced { messages {") + kMessage +
                            "} messages { inbox_seq: 1234568 text: \"second\" "
                            "to { group: \"g\" } sent_at { seconds: 1717171718 "
                            "nanos: 5000 } } messages { inbox_seq: 1234569 "
                            "sent_at { seconds: 1717171719 nanos: 7 } } "
                            "inbox_seq: 1234569 more: true }"),
      FromText<ServerFrame>(R"(synced { inbox_seq: 3 })"),
      FromText<ServerFrame>(R"(synced { messages { } messages { } })"),
      FromText<ServerFrame>(
          R"(receipt { conversation: "g:team-7" user: "bob" seq: 3 })"),
      FromText<ServerFrame>(
          R"(receipt { conversation: "g:team-7" user: "alice" seq: 3
             unread: 18446744073709551615 })"),
      FromText<ServerFrame>(
          std::string("conversations { conversations { id: \"d:alice:bob\" "
                      "kind: CONVERSATION_KIND_DIRECT title: \"Bob\" "
                      "peer: \"bob\" head_seq: 5678 last_activity { seconds: "
                      "1717171717 nanos: 123000000 } last_message {") +
          kMessage +
          "} read_seq: 2 unread: 1 peer_read_seq: 3 } conversations { id: "
          "\"g:team-7\" kind: CONVERSATION_KIND_GROUP } next_page_token: "
          "\"MTcwMC9kOmE6Yg\" }"),
      FromText<ServerFrame>(R"(conversations { })"),
      FromText<ServerFrame>(std::string("history { conversation: "
                                        "\"d:alice:bob\" messages {") +
                            kMessage + "} more: true }"),
      FromText<ServerFrame>(
          R"(typing { from: "bob" conversation: "d:alice:bob" })"),
      FromText<ServerFrame>(R"(presence { user: "bob" online: true })"),
      FromText<ServerFrame>(R"(presence { user: "bob" online: false })"),
      FromText<ServerFrame>(R"(error { code: ERROR_CODE_RATE_LIMITED
                           message: "slow down" client_msg_id: "c-3" })"),
      FromText<ServerFrame>(R"(error { code: ERROR_CODE_UNSPECIFIED })"),
      FromText<ServerFrame>(
          R"(error { code: 99 message: "from a newer server" })"),
      FromText<ServerFrame>(R"(error { code: -5 })"),
      FromText<ServerFrame>(R"(pong { nonce: "n-1717171717" })"),
      FromText<ServerFrame>(R"(announcement { text: "maintenance at 10:00 UTC"
                           sent_at { seconds: 1700000000 nanos: 1000000 } })"),
      FromText<ServerFrame>(
          R"(announcement { sent_at { seconds: -1 nanos: 999999999 } })"),
      FromText<ServerFrame>(R"(announcement { sent_at { } })"),
      FromText<ServerFrame>(R"(blocked { users: "bob" users: "zed" })"),
      FromText<ServerFrame>(R"(blocked { })"),
      FromText<ServerFrame>(
          R"(group { id: "g1" title: "Trip" created_at { seconds: 1700000000 }
                     members { user: "alice" role: GROUP_ROLE_OWNER }
                     members { user: "bob" } })"),
      FromText<ServerFrame>(R"(group { })"),
      FromText<ServerFrame>(
          R"(message { inbox_seq: 12 conversation: "g:g1" seq: 2
                       from: "alice" to { group: "g1" }
                       kind: MESSAGE_KIND_GROUP_EVENT
                       group_event { type: GROUP_EVENT_TYPE_ROLE_CHANGED
                                     actor: "alice" users: "bob"
                                     role: GROUP_ROLE_ADMIN } })"),
      FromText<ServerFrame>(
          R"(message { kind: MESSAGE_KIND_GROUP_EVENT
                       group_event { type: GROUP_EVENT_TYPE_CREATED
                                     title: "Trip" users: "alice" } })"),
  };
  ServerFrame tricky;
  tricky.mutable_message()->set_text(kTrickyText);
  tricky.mutable_message()->set_from("\"alice\" <alice@example.com>");
  tricky.mutable_message()->set_client_msg_id("\u2028\\\"");
  samples.push_back(tricky);
  return samples;
}

TEST(JsonCodecTest, SamplesCoverEveryFrameType) {
  EXPECT_EQ(OneofMembersSet(ClientSamples(), "frame"),
            OneofMembers<ClientFrame>("frame"));
  EXPECT_EQ(OneofMembersSet(ServerSamples(), "frame"),
            OneofMembers<ServerFrame>("frame"));
}

template <typename T>
void ExpectPrintsLikeProtobufAndParsesBack(const std::vector<T>& samples) {
  for (const T& sample : samples) {
    SCOPED_TRACE(sample.ShortDebugString());
    const std::string reference = ProtobufJson(sample);
    EXPECT_EQ(MessageToJson(sample), reference);
    T parsed;
    ASSERT_TRUE(JsonToMessage(reference, &parsed).ok()) << reference;
    EXPECT_TRUE(MessageDifferencer::Equals(parsed, sample)) << reference;
  }
}

TEST(JsonCodecTest, EveryClientFramePrintsAsProtobufDoesAndParsesBack) {
  ExpectPrintsLikeProtobufAndParsesBack(ClientSamples());
}

TEST(JsonCodecTest, EveryServerFramePrintsAsProtobufDoesAndParsesBack) {
  ExpectPrintsLikeProtobufAndParsesBack(ServerSamples());
}

// The format itself, written out once, so that a change in both protobuf and
// the codec would still show.
TEST(JsonCodecTest, PrintsTheDocumentedFormat) {
  EXPECT_EQ(
      MessageToJson(ServerSamples()[2]),
      R"({"message":{"inboxSeq":"1234567","messageId":"1717171717000-42",)"
      R"("conversation":"d:alice:bob","seq":"5678","from":"alice",)"
      R"("to":{"user":"bob"},"text":"lunch?",)"
      R"("sentAt":"2024-05-31T16:08:37.123Z","clientMsgId":"c-8f14e45f"}})");
  ServerFrame tricky;
  tricky.mutable_pong()->set_nonce("\"\\<>&/\x01\x7f\u2028\u00e9\U0001F600");
  EXPECT_EQ(MessageToJson(tricky),
            "{\"pong\":{\"nonce\":\"\\\"\\\\\\u003c\\u003e&/\\u0001\\u007f"
            "\\u2028\u00e9\U0001F600\"}}");
}

// Hello.inbox_seq is proto3 `optional`: "0" given is a resume from 0, absent
// is a new device, and the codec must keep the two apart as protobuf does.
TEST(JsonCodecTest, AnOptionalFieldKeepsItsPresence) {
  for (const char* json : {R"({"hello":{"token":"t","inboxSeq":"0"}})",
                           R"({"hello":{"token":"t","inboxSeq":0}})"}) {
    SCOPED_TRACE(json);
    ClientFrame frame;
    ASSERT_TRUE(JsonToMessage(json, &frame).ok());
    EXPECT_TRUE(frame.hello().has_inbox_seq());
    EXPECT_EQ(MessageToJson(frame),
              R"({"hello":{"token":"t","inboxSeq":"0"}})");
  }
  for (const char* json : {R"({"hello":{"token":"t"}})",
                           R"({"hello":{"token":"t","inboxSeq":null}})"}) {
    SCOPED_TRACE(json);
    ClientFrame frame;
    ASSERT_TRUE(JsonToMessage(json, &frame).ok());
    EXPECT_FALSE(frame.hello().has_inbox_seq());
    EXPECT_EQ(MessageToJson(frame), R"({"hello":{"token":"t"}})");
  }
  ClientFrame twice;
  EXPECT_FALSE(
      JsonToMessage(R"({"hello":{"inboxSeq":"1","inboxSeq":"2"}})", &twice)
          .ok());
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

TEST(JsonCodecTest, EscapesEveryCodePointAsProtobufDoes) {
  constexpr uint32_t kChunk = 4096;
  for (uint32_t start = 0; start <= 0x10FFFF; start += kChunk) {
    ClientFrame frame;
    std::string* nonce = frame.mutable_ping()->mutable_nonce();
    for (uint32_t cp = start; cp < start + kChunk && cp <= 0x10FFFF; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;  // not scalar values
      AppendUtf8(cp, nonce);
    }
    const std::string reference = ProtobufJson(frame);
    ASSERT_EQ(MessageToJson(frame), reference) << "code points from " << start;
    ClientFrame parsed;
    ASSERT_TRUE(JsonToMessage(reference, &parsed).ok());
    ASSERT_EQ(parsed.ping().nonce(), *nonce) << "code points from " << start;
  }
}

TEST(JsonCodecTest, TimestampsAcrossTheRangePrintAndParseAsProtobufDoes) {
  constexpr int64_t kMin = -62135596800;  // 0001-01-01T00:00:00Z
  constexpr int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  std::vector<std::pair<int64_t, int32_t>> cases = {
      {kMin, 0},
      {kMax, 999999999},
      {0, 0},
      {-1, 999999999},
      {951782400, 0},
      {951868800, 1},  // 2000-02-29/03-01
      {4107542400, 10},
      {1700000000, 100000000},
      {1700000000, 120000},
      {1700000000, 1000},
      {1700000000, 999999},
      {1700000000, 1},
  };
  // A deterministic sweep of the whole range with every fraction width.
  uint64_t x = 88172645463325252u;
  for (int i = 0; i < 20000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const int64_t seconds =
        kMin + static_cast<int64_t>(x % static_cast<uint64_t>(kMax - kMin + 1));
    const int32_t nanos_options[] = {0,
                                     static_cast<int32_t>(x % 1000) * 1000000,
                                     static_cast<int32_t>(x % 1000000) * 1000,
                                     static_cast<int32_t>(x % 1000000000)};
    cases.emplace_back(seconds, nanos_options[i % 4]);
  }
  for (const auto& [seconds, nanos] : cases) {
    ServerFrame frame;
    frame.mutable_announcement()->mutable_sent_at()->set_seconds(seconds);
    frame.mutable_announcement()->mutable_sent_at()->set_nanos(nanos);
    const std::string reference = ProtobufJson(frame);
    ASSERT_EQ(MessageToJson(frame), reference) << seconds << "s " << nanos;
    ServerFrame parsed;
    ASSERT_TRUE(JsonToMessage(reference, &parsed).ok()) << reference;
    ASSERT_TRUE(MessageDifferencer::Equals(parsed, frame)) << reference;
  }
}

// json_util reports an error for these and the frame codec always used what
// it had printed anyway; the codec hands them to json_util so that this stays
// exactly as it was.
TEST(JsonCodecTest, WhatProtobufCannotPrintComesOutAsProtobufPrintsIt) {
  std::vector<ServerFrame> frames;
  for (const auto& [seconds, nanos] : std::vector<std::pair<int64_t, int32_t>>{
           {-62135596801, 0}, {253402300800, 0}, {0, -1}, {0, 1000000000}}) {
    ServerFrame frame;
    frame.mutable_ack()->set_client_msg_id("c-1");
    frame.mutable_ack()->mutable_sent_at()->set_seconds(seconds);
    frame.mutable_ack()->mutable_sent_at()->set_nanos(nanos);
    frames.push_back(frame);
  }
  for (const char* bad : {"\xff", "ok\xc3", "\xc0\x80", "\xed\xa0\x80"}) {
    ServerFrame frame;
    frame.mutable_pong()->set_nonce(bad);
    frames.push_back(frame);
  }
  for (const ServerFrame& frame : frames) {
    EXPECT_EQ(MessageToJson(frame), ProtobufJson(frame))
        << frame.ShortDebugString();
  }
}

struct Input {
  bool server;  // a ServerFrame, else a ClientFrame
  std::string json;
};

// A ClientFrame and a ServerFrame; For() picks the one an input is for.
struct Frames {
  ClientFrame client;
  ServerFrame server;
  Message* For(const Input& input) {
    return input.server ? static_cast<Message*>(&server) : &client;
  }
};

std::vector<Input> Rejected() {
  return {
      // Not one JSON object.
      {false, ""},
      {false, "   "},
      {false, "null"},
      {false, "[]"},
      {false, R"("ping")"},
      {false, "42"},
      {false, "{"},
      {false, "{}}"},
      {false, "{} {}"},
      {false, R"({"ping":{}}garbage)"},
      {false, std::string("{\"ping\":{}}\0", 12)},
      {false, std::string("{\"ping\":{}}\0x", 13)},
      {false, std::string("{\0\"ping\":{}}", 12)},
      {false, R"({"ping":{}}//comment)"},
      {false, R"(/*comment*/{"ping":{}})"},
      {false, "\xef\xbb\xbf{\"ping\":{}}"},
      {false, R"({"ping":{"nonce":"x"})"},
      {false, R"({"ping" {}})"},
      {false, R"({"ping":{"nonce":"x}})"},
      // Unknown fields (names are case-sensitive).
      {false, R"({"shout":{"text":"x"}})"},
      {false, R"({"send":{"ClientMsgId":"c"}})"},
      {false, R"({"send":{"clientmsgid":"c"}})"},
      {false, R"({"send":{"to":{"channel":"x"}}})"},
      {true, R"({"synced":{"messages":[{"bogus":1}]}})"},
      // More than one member of a oneof.
      {false, R"({"ping":{},"hello":{}})"},
      {false, R"({"ping":{},"ping":{}})"},
      {false, R"({"send":{"to":{"user":"a","group":"b"}}})"},
      {true, R"({"message":{},"ack":{"seq":"1"}})"},
      // Wrong JSON types.
      {false, R"({"hello":{"token":1}})"},
      {false, R"({"hello":{"token":true}})"},
      {false, R"({"hello":{"token":["a"]}})"},
      {false, R"({"hello":{"token":{}}})"},
      {false, R"({"hello":"token"})"},
      {false, R"({"hello":[]})"},
      {false, R"({"send":{"to":"bob"}})"},
      {false, R"({"send":{"to":[]}})"},
      {false, R"({"hello":{"inboxSeq":true}})"},
      {false, R"({"hello":{"inboxSeq":{}}})"},
      {false, R"({"hello":{"inboxSeq":[1]}})"},
      {true, R"({"synced":{"more":1}})"},
      {true, R"({"synced":{"messages":[1]}})"},
      {true, R"({"synced":{"messages":["x"]}})"},
      {true, R"({"ack":{"sentAt":1}})"},
      {true, R"({"ack":{"sentAt":[]}})"},
      {true, R"({"error":{"code":true}})"},
      {true, R"({"error":{"code":{}}})"},
      // Numbers out of range or not integers.
      {false, R"({"sync":{"limit":4294967296}})"},
      {false, R"({"sync":{"limit":-1}})"},
      {false, R"({"sync":{"limit":"-1"}})"},
      {false, R"({"sync":{"limit":1.5}})"},
      {false, R"({"sync":{"limit":"NaN"}})"},
      {false, R"({"hello":{"inboxSeq":-1}})"},
      {false, R"({"hello":{"inboxSeq":18446744073709551616}})"},
      {false, R"({"hello":{"inboxSeq":"18446744073709551616"}})"},
      {false, R"({"hello":{"inboxSeq":1e20}})"},
      {false, R"({"hello":{"inboxSeq":"-0"}})"},
      {false, R"({"hello":{"inboxSeq":"1e2"}})"},
      {false, R"({"hello":{"inboxSeq":"1.0"}})"},
      {false, R"({"hello":{"inboxSeq":"0x10"}})"},
      {false, R"({"hello":{"inboxSeq":""}})"},
      {false, R"({"hello":{"inboxSeq":" 1"}})"},
      {false, R"({"hello":{"inboxSeq":"1 "}})"},
      {true, R"({"error":{"code":2147483648}})"},
      {true, R"({"error":{"code":-2147483649}})"},
      {true, R"({"error":{"code":"99"}})"},
      {true, R"({"error":{"code":"RATE_LIMITED"}})"},
      {true, R"({"error":{"code":"error_code_rate_limited"}})"},
      // Number syntax JSON does not have.
      {false, R"({"sync":{"limit":01}})"},
      {false, R"({"sync":{"limit":0x10}})"},
      {false, R"({"sync":{"limit":.5}})"},
      {false, R"({"sync":{"limit":-}})"},
      {false, R"({"sync":{"limit":NaN}})"},
      {false, R"({"sync":{"limit":Infinity}})"},
      // Strings that are not UTF-8, raw or escaped.
      {false, "{\"ping\":{\"nonce\":\"\xff\"}}"},
      {false, "{\"ping\":{\"nonce\":\"\xc0\x80\"}}"},
      {false, "{\"ping\":{\"nonce\":\"\xed\xa0\x80\"}}"},
      {false, "{\"ping\":{\"nonce\":\"\xe2\x82\"}}"},
      {false, "{\"ping\":{\"nonce\":\"\xf4\x90\x80\x80\"}}"},
      {false, R"({"ping":{"nonce":"\ud83d"}})"},
      {false, R"({"ping":{"nonce":"\ude00"}})"},
      {false, R"({"ping":{"nonce":"\ud83d\u0041"}})"},
      {false, R"({"ping":{"nonce":"\u12"}})"},
      // Timestamps protobuf does not read.
      {true, R"({"ack":{"sentAt":""}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20.Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20+0100"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20+24:00"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14t22:13:20z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14 22:13:20Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20Zjunk"}})"},
      {true, R"({"ack":{"sentAt":"0000-01-01T00:00:00Z"}})"},
      {true, R"({"ack":{"sentAt":"12023-11-14T22:13:20Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-02-29T00:00:00Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-04-31T00:00:00Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T24:00:00Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T23:59:60Z"}})"},
      {true, R"({"ack":{"sentAt":"+2023-11-14T22:13:20Z"}})"},
      {true, R"({"ack":{"sentAt":"1700000000"}})"},
  };
}

TEST(JsonCodecTest, RejectsWhatProtobufRejects) {
  for (const Input& input : Rejected()) {
    SCOPED_TRACE(input.json);
    Frames expected;
    Message* reference = expected.For(input);
    ASSERT_FALSE(ProtobufAccepts(input.json, reference))
        << "the table is wrong: protobuf accepts this";
    Frames decoded;
    Message* out = decoded.For(input);
    const absl::Status status = JsonToMessage(input.json, out);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_FALSE(status.message().empty());
  }
}

// Nesting deeper than either parser allows is an error, not a crash.
TEST(JsonCodecTest, RejectsDeepNestingWithoutRecursingIntoIt) {
  ClientFrame frame;
  EXPECT_FALSE(JsonToMessage(std::string(1000000, '['), &frame).ok());
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += R"({"send":)";
  EXPECT_FALSE(JsonToMessage(deep, &frame).ok());
}

std::vector<Input> Accepted() {
  return {
      {false, "{}"},
      {false, " \n\t\r{ \"ping\" : { \"nonce\" : \"x\" } } \r\n\t "},
      {false, R"({"ping":{}})"},
      // Proto field names, and both spellings in one object.
      {false, R"({"send":{"client_msg_id":"c1","to":{"user":"bob"}}})"},
      {false, R"({"hello":{"inbox_seq":"5","token":"t"}})"},
      {false, R"({"sync":{"after_seq":7,"limit":"50"}})"},
      {true, R"({"ack":{"sent_at":"2023-11-14T22:13:20Z","message_id":"m"}})"},
      {true, R"({"synced":{"messages":[{"inbox_seq":"1","sentAt":null}]}})"},
      // 64-bit integers as numbers or strings, 32-bit ones as strings.
      {false, R"({"hello":{"inboxSeq":42}})"},
      {false, R"({"hello":{"inboxSeq":18446744073709551615}})"},
      {false, R"({"hello":{"inboxSeq":"18446744073709551615"}})"},
      {false, R"({"hello":{"inboxSeq":0}})"},
      {false, R"({"hello":{"inboxSeq":-0}})"},
      {false, R"({"hello":{"inboxSeq":"0"}})"},
      {false, R"({"sync":{"limit":"4294967295"}})"},
      // Enums by number (also unknown ones) or by name.
      {true, R"({"error":{"code":6}})"},
      {true, R"({"error":{"code":99}})"},
      {true, R"({"error":{"code":-5}})"},
      {true, R"({"error":{"code":-2147483648}})"},
      {true, R"({"error":{"code":"6"}})"},
      {true, R"({"error":{"code":"ERROR_CODE_UNSPECIFIED"}})"},
      // null means "not given", also for a oneof member.
      {false, R"({"hello":null})"},
      {false, R"({"hello":null,"ping":{}})"},
      {false, R"({"ping":{},"hello":null})"},
      {false, R"({"hello":{"token":null,"inboxSeq":null}})"},
      {false, R"({"hello":{"token":"a","token":null}})"},
      {false, R"({"send":{"to":{"user":null,"group":"g"}}})"},
      {false, R"({"send":{"to":{"user":"u","group":null}}})"},
      {false, R"({"send":{"to":null}})"},
      {true, R"({"synced":{"messages":null,"more":null}})"},
      {true, R"({"ack":{"sentAt":null}})"},
      {true, R"({"error":{"code":null}})"},
      // A oneof member with a default value is still set.
      {false, R"({"send":{"to":{"user":""}}})"},
      {true, R"({"presence":{"online":false}})"},
      {true, R"({"synced":{"messages":[]}})"},
      {true, R"({"synced":{"messages":[{},{}]}})"},
      // Escapes.
      {false, R"({"ping":{"nonce":"\u00e9\/\b\f\n\r\t\"\\"}})"},
      {false, R"({"ping":{"nonce":"\ud83d\ude00 \uD83D\uDE00"}})"},
      {false, R"({"ping":{"nonce":"a\u0000b"}})"},
      {false, R"({"ping":{"nonce":"\u2028\u003c\u0026"}})"},
      {false, "{\"ping\":{\"nonce\":\"\xf0\x9f\x98\x80 \xe2\x80\xa8\"}}"},
      {false, R"({"p\u0069ng":{}})"},
      // Timestamps: offsets, any fraction width, short fields, range edges.
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20+01:00"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20-01:30"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20+23:59"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20.5Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20.12345Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20.123456789Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20.1234567891Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20.000Z"}})"},
      {true, R"({"ack":{"sentAt":"2023-1-4T2:3:2Z"}})"},
      {true, R"({"ack":{"sentAt":"2024-02-29T00:00:00Z"}})"},
      {true, R"({"ack":{"sentAt":"0001-01-01T00:00:00Z"}})"},
      {true, R"({"ack":{"sentAt":"9999-12-31T23:59:59.999999999Z"}})"},
      // Outside the printable range once the offset is applied; protobuf's
      // TimeUtil::FromString would abort on these.
      {true, R"({"ack":{"sentAt":"0001-01-01T00:00:00+01:00"}})"},
      {true, R"({"ack":{"sentAt":"9999-12-31T23:59:59-01:00"}})"},
      {true, R"({"ack":{"sentAt":"2023-11-14T22:13:20Z\u0000junk"}})"},
      // json_util's leniencies, which the codec leaves to it.
      {false, R"({hello:{token:"t"}})"},
      {false, R"({'hello':{'token':'t'}})"},
      {false, R"({"hello":{"token":"t"},})"},
      {false, R"({"hello":{"token":"t",}})"},
      {false, "\f{\"ping\":{}}\v"},
      {false, "{\"ping\":{\"nonce\":\"a\x01\tb\"}}"},
      {false, R"({"ping":{"nonce":"\x"}})"},
      {false, R"({"hello":{"inboxSeq":1.0}})"},
      {false, R"({"hello":{"inboxSeq":1e2}})"},
      {false, R"({"hello":{"inboxSeq":"+1"}})"},
      {false, R"({"hello":{"inboxSeq":"007"}})"},
      {false, R"({"hello":{"token":"a","token":"b"}})"},
      {false, R"({"send":{"clientMsgId":"a","client_msg_id":"b"}})"},
      {true, R"({"synced":{"more":"true"}})"},
      {true, R"({"presence":{"online":"yes"}})"},
      {true, R"({"synced":{"messages":{"text":"one"}}})"},
      {true,
       R"({"synced":{"messages":[{"text":"a"}],"messages":[{"text":"b"}]}})"},
      {true, R"({"synced":{"messages":[null,{"text":"a"}]}})"},
      {true, R"({"message":{"to":{"user":"a"},"to":{"group":"b"}}})"},
      {true, R"({"ack":{"sentAt":{"seconds":"5","nanos":7}}})"},
      {true,
       R"({"ack":{"sentAt":"2023-11-14T22:13:20Z","sentAt":"1970-01-01T00:00:00Z"}})"},
  };
}

TEST(JsonCodecTest, AcceptsUnusualInputAsProtobufDoes) {
  for (const Input& input : Accepted()) {
    SCOPED_TRACE(input.json);
    Frames expected;
    Message* reference = expected.For(input);
    ASSERT_TRUE(ProtobufAccepts(input.json, reference))
        << "the table is wrong: protobuf rejects this";
    Frames decoded;
    Message* out = decoded.For(input);
    const absl::Status status = JsonToMessage(input.json, out);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_TRUE(MessageDifferencer::Equals(*out, *reference))
        << "codec: " << out->ShortDebugString()
        << "\nprotobuf: " << reference->ShortDebugString();
  }
}

std::string ErrorFor(const std::string& json, bool server = false) {
  ClientFrame client;
  ServerFrame server_frame;
  absl::Status status = server ? JsonToMessage(json, &server_frame)
                               : JsonToMessage(json, &client);
  return std::string(status.message());
}

TEST(JsonCodecTest, ErrorsNameTheFieldAndTheReason) {
  EXPECT_EQ(ErrorFor(R"({"send":{"to":{"user":5}}})"),
            "field send.to.user: expected a string, got a number");
  EXPECT_EQ(ErrorFor(R"({"send":{"client_msg_id":"c","bogus":1}})"),
            "field send.bogus: no such field in parley.v1.Send");
  EXPECT_EQ(ErrorFor(R"({"shout":{}})"),
            "field shout: no such field in parley.v1.ClientFrame");
  EXPECT_EQ(ErrorFor(R"({"ping":{},"hello":{}})"),
            "field hello: oneof frame already has ping; give only one of its "
            "fields");
  EXPECT_EQ(ErrorFor(R"({"sync":{"limit":-1}})"),
            "field sync.limit: -1 is out of range for a uint32 (number or "
            "decimal string)");
  EXPECT_EQ(ErrorFor(R"({"synced":{"messages":[{},{"seq":true}]}})", true),
            "field synced.messages[1].seq: expected a uint64 (number or "
            "decimal string), got a bool");
  EXPECT_EQ(ErrorFor(R"({"error":{"code":"LOUD"}})", true),
            "field error.code: \"LOUD\" is not a value of parley.v1.ErrorCode");
  EXPECT_THAT(ErrorFor(R"({"ack":{"sentAt":"yesterday"}})", true),
              StartsWith("field ack.sentAt: \"yesterday\" is not an RFC 3339 "
                         "timestamp"));
  EXPECT_EQ(ErrorFor("{\"ping\":{\"nonce\":\"\xff\"}}"),
            "field ping.nonce: string is not UTF-8");
  EXPECT_EQ(ErrorFor("[]"), "expected a JSON object, got an array");
  EXPECT_THAT(ErrorFor("{nope"), StartsWith("not valid JSON at offset 1: "));
  EXPECT_THAT(ErrorFor(R"({"ping":{}} {})"),
              StartsWith("not valid JSON at offset 12: "));
}

TEST(JsonCodecTest, OutputIsClearedFirstAndLeftClearOnError) {
  ClientFrame frame = ClientSamples()[0];
  ASSERT_TRUE(JsonToMessage(R"({"ping":{}})", &frame).ok());
  EXPECT_TRUE(
      MessageDifferencer::Equals(frame, FromText<ClientFrame>("ping {}")));
  frame = ClientSamples()[0];
  EXPECT_FALSE(
      JsonToMessage(R"({"ping":{"nonce":"x"},"bogus":1})", &frame).ok());
  EXPECT_EQ(frame.ByteSizeLong(), 0u);
}

// Types with their own JSON forms, or fields this codec does not handle, go
// to json_util whole.
TEST(JsonCodecTest, OtherMessageTypesBehaveAsWithProtobuf) {
  // (No Struct: its map's inline code built with TSan does not match
  // Debian's uninstrumented libprotobuf.)
  google::protobuf::ListValue list;
  list.add_values()->set_number_value(3.25);
  list.add_values()->set_bool_value(true);
  list.add_values()->set_string_value("<x>");
  google::protobuf::Duration d;
  d.set_seconds(3);
  d.set_nanos(500000000);
  google::protobuf::Timestamp t;
  t.set_seconds(1700000000);
  std::vector<const Message*> messages = {&list, &d, &t};
  for (const Message* m : messages) {
    SCOPED_TRACE(m->GetDescriptor()->full_name());
    const std::string reference = ProtobufJson(*m);
    EXPECT_EQ(MessageToJson(*m), reference);
    std::unique_ptr<Message> parsed(m->New());
    ASSERT_TRUE(JsonToMessage(reference, parsed.get()).ok()) << reference;
    EXPECT_TRUE(MessageDifferencer::Equals(*parsed, *m));
  }
  google::protobuf::Duration bad;
  EXPECT_EQ(JsonToMessage("\"forever\"", &bad).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JsonCodecTest, ThreadsUsingATypeForTheFirstTimeAgree) {
  // Types no other test has used as a top-level message.
  parley::v1::Synced synced = ServerSamples()[4].synced();
  parley::v1::Send send = ClientSamples()[2].send();
  const std::string synced_json = ProtobufJson(synced);
  const std::string send_json = ProtobufJson(send);
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        parley::v1::Synced a;
        parley::v1::Send b;
        if (MessageToJson(synced) != synced_json ||
            MessageToJson(send) != send_json ||
            !JsonToMessage(synced_json, &a).ok() ||
            !MessageDifferencer::Equals(a, synced) ||
            !JsonToMessage(send_json, &b).ok() ||
            !MessageDifferencer::Equals(b, send)) {
          ++failures[t];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(failures, ::testing::Each(0));
}

}  // namespace
}  // namespace parley
