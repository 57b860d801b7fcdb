// Session logic with a fake Connection and a fake Upstream: no sockets, no
// threads, a manual clock.
#include "gateway/session.h"

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/frame_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

using parley::v1::ClientFrame;
using parley::v1::GatewayEvent;
using parley::v1::ServerFrame;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// ConnectParams with a ?token= (and ?device=, ?inboxSeq= when given).
ConnectParams WithToken(std::string token, std::string device,
                        std::optional<uint64_t> inbox_seq = std::nullopt) {
  ConnectParams params;
  params.token = std::move(token);
  params.device = std::move(device);
  params.inbox_seq = inbox_seq;
  return params;
}

class FakeConnection final : public Connection {
 public:
  void Send(const std::string& frame) noexcept override {
    sent.push_back(frame);
    buffered += frame.size() * (stalled ? 1 : 0);
  }
  void Close(uint16_t code, absl::string_view reason) noexcept override {
    ++close_calls;
    close_code = code;
    close_reason = std::string(reason);
  }
  size_t BufferedAmount() const noexcept override { return buffered; }

  // Decodes every sent frame (JSON).
  std::vector<ServerFrame> Frames(Encoding encoding = Encoding::kJson) const {
    std::vector<ServerFrame> out;
    for (const std::string& s : sent) {
      ServerFrame f;
      EXPECT_TRUE(DecodeFrame(encoding, s, &f).ok()) << s;
      out.push_back(f);
    }
    return out;
  }
  ServerFrame Last() const { return Frames().back(); }

  std::vector<std::string> sent;
  size_t buffered = 0;
  bool stalled = false;
  int close_calls = 0;
  uint16_t close_code = 0;
  std::string close_reason;
};

class FakeUpstream final : public Upstream {
 public:
  std::optional<uint64_t> Open(const parley::v1::SessionOpen& open) override {
    if (!up) return std::nullopt;
    GatewayEvent e;
    *e.mutable_open() = open;
    events.push_back(e);
    return generation;
  }
  bool Frame(uint64_t gen, parley::v1::SessionFrame frame) override {
    if (!up || gen != generation) return false;
    GatewayEvent e;
    *e.mutable_frame() = std::move(frame);
    events.push_back(e);
    return true;
  }
  void Close(parley::v1::SessionClose close) override {
    if (!up) return;
    GatewayEvent e;
    *e.mutable_close() = std::move(close);
    events.push_back(e);
  }

  // The client_msg_ids of the Send frames forwarded, in order.
  std::vector<std::string> SendIds() const {
    std::vector<std::string> ids;
    for (const auto& e : events) {
      if (e.has_frame() && e.frame().frame().has_send()) {
        ids.push_back(e.frame().frame().send().client_msg_id());
      }
    }
    return ids;
  }

  bool up = true;
  uint64_t generation = 1;
  std::vector<GatewayEvent> events;
};

std::string Json(const ClientFrame& frame) {
  return EncodeFrame(Encoding::kJson, frame);
}

std::string SendJson(const std::string& id, const std::string& to = "bob") {
  ClientFrame f;
  f.mutable_send()->set_client_msg_id(id);
  f.mutable_send()->mutable_to()->set_user(to);
  f.mutable_send()->set_text("hi " + id);
  return Json(f);
}

ServerFrame AckFor(const std::string& id, uint64_t inbox_seq) {
  ServerFrame f;
  f.mutable_ack()->set_client_msg_id(id);
  f.mutable_ack()->set_inbox_seq(inbox_seq);
  return f;
}

ServerFrame MessageWith(uint64_t inbox_seq) {
  ServerFrame f;
  f.mutable_message()->set_inbox_seq(inbox_seq);
  f.mutable_message()->set_text("m");
  return f;
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() { Reset(SessionOptions{}); }

  void Reset(const SessionOptions& options, Encoding encoding = Encoding::kJson,
             HeldBudget* held_budget = nullptr) {
    session_ = std::make_unique<Session>(
        options, "gw-1", encoding, "127.0.0.1:5000", &connection_, &upstream_,
        [this] { return now_; }, SessionObserver{}, held_budget);
  }

  // Authenticates with ?token= and accepts the session.
  void GoLive(uint64_t head = 10) {
    session_->Start(WithToken("tok", "phone"));
    parley::v1::SessionAccepted accepted;
    accepted.set_session_id("gw-1");
    accepted.set_user_id("alice");
    accepted.set_inbox_seq(head);
    session_->OnAccepted(accepted);
    ASSERT_EQ(session_->state(), Session::State::kLive);
  }

  void Deliver(const ServerFrame& frame) {
    session_->OnDelivery(OutboundFrame(frame), 0);
  }

  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  FakeConnection connection_;
  FakeUpstream upstream_;
  std::unique_ptr<Session> session_;
};

TEST_F(SessionTest, QueryTokenOpensUpstreamImmediately) {
  session_->Start(WithToken("tok", "phone", 7));
  EXPECT_EQ(session_->state(), Session::State::kOpening);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  const auto& open = upstream_.events[0].open();
  EXPECT_EQ(open.session_id(), "gw-1");
  EXPECT_EQ(open.token(), "tok");
  EXPECT_EQ(open.device(), "phone");
  EXPECT_EQ(open.resume_after(), 7u);
  EXPECT_EQ(open.peer_address(), "127.0.0.1:5000");
  EXPECT_FALSE(open.reannounce());
}

TEST_F(SessionTest, HelloFrameOpensSessionAndAcceptSendsWelcome) {
  session_->Start({});
  EXPECT_TRUE(upstream_.events.empty());
  session_->OnClientMessage(
      R"({"hello":{"token":"t","device":"web","inboxSeq":"3"}})", false);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_EQ(upstream_.events[0].open().token(), "t");
  EXPECT_EQ(upstream_.events[0].open().resume_after(), 3u);

  parley::v1::SessionAccepted accepted;
  accepted.set_user_id("alice");
  accepted.set_inbox_seq(9);
  accepted.set_replayed_after(3);
  session_->OnAccepted(accepted);
  ASSERT_THAT(connection_.sent, SizeIs(1));
  const ServerFrame welcome = connection_.Last();
  ASSERT_TRUE(welcome.has_welcome());
  EXPECT_EQ(welcome.welcome().session_id(), "gw-1");
  EXPECT_EQ(welcome.welcome().user_id(), "alice");
  EXPECT_EQ(welcome.welcome().inbox_seq(), 9u);
  EXPECT_EQ(welcome.welcome().heartbeat_ms(), 25000u);
  // The client resumes from 3: the service replays 4..9 next.
  EXPECT_EQ(session_->resume_point(), 3u);
}

TEST_F(SessionTest, FramesSentWhileOpeningAreForwardedAfterAccept) {
  session_->Start(WithToken("tok", ""));
  session_->OnClientMessage(SendJson("c1"), false);
  session_->OnClientMessage(R"({"sync":{"afterSeq":"0"}})", false);
  EXPECT_THAT(upstream_.events, SizeIs(1));  // Only the open.
  parley::v1::SessionAccepted accepted;
  accepted.set_user_id("alice");
  session_->OnAccepted(accepted);
  ASSERT_THAT(upstream_.events, SizeIs(3));
  EXPECT_TRUE(upstream_.events[1].frame().frame().has_send());
  EXPECT_TRUE(upstream_.events[2].frame().frame().has_sync());
  EXPECT_EQ(session_->buffered_frames(), 0u);
}

TEST_F(SessionTest, FrameBeforeAuthGetsUnauthenticatedErrorAndStaysOpen) {
  session_->Start({});
  session_->OnClientMessage(SendJson("c1"), false);
  ASSERT_THAT(connection_.sent, SizeIs(1));
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_UNAUTHENTICATED);
  EXPECT_EQ(connection_.close_calls, 0);
  EXPECT_TRUE(upstream_.events.empty());
}

TEST_F(SessionTest, EmptyHelloTokenClosesUnauthorized) {
  session_->Start({});
  session_->OnClientMessage(R"({"hello":{"device":"x"}})", false);
  EXPECT_EQ(connection_.close_code, kCloseUnauthorized);
  EXPECT_TRUE(upstream_.events.empty());
}

TEST_F(SessionTest, MalformedFramesGetErrorFramesAndConnectionStaysOpen) {
  GoLive();
  connection_.sent.clear();
  session_->OnClientMessage("{not json", false);
  session_->OnClientMessage(R"({"dance":{}})", false);
  session_->OnClientMessage("{}", false);
  session_->OnClientMessage(
      R"({"send":{"clientMsgId":"c9","to":{"user":"b"}}})", false);
  session_->OnClientMessage("\x08\x01", true);  // Binary on the JSON protocol.
  const auto frames = connection_.Frames();
  ASSERT_THAT(frames, SizeIs(5));
  EXPECT_EQ(frames[0].error().code(), parley::v1::ERROR_CODE_INVALID_FRAME);
  EXPECT_EQ(frames[1].error().code(), parley::v1::ERROR_CODE_INVALID_FRAME);
  EXPECT_EQ(frames[2].error().code(), parley::v1::ERROR_CODE_INVALID_FRAME);
  EXPECT_THAT(frames[2].error().message(), HasSubstr("no known frame"));
  EXPECT_EQ(frames[3].error().code(), parley::v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_EQ(frames[3].error().client_msg_id(), "c9");
  EXPECT_THAT(frames[3].error().message(), HasSubstr("text"));
  EXPECT_EQ(frames[4].error().code(), parley::v1::ERROR_CODE_INVALID_FRAME);
  EXPECT_EQ(connection_.close_calls, 0);
  EXPECT_EQ(session_->state(), Session::State::kLive);
  // Nothing malformed went upstream: only the open.
  EXPECT_THAT(upstream_.events, SizeIs(1));
}

TEST_F(SessionTest, AppPingIsAnsweredWithPongEvenBeforeAuth) {
  session_->Start({});
  session_->OnClientMessage(R"({"ping":{"nonce":"n1"}})", false);
  ASSERT_THAT(connection_.sent, SizeIs(1));
  EXPECT_EQ(connection_.Last().pong().nonce(), "n1");
  EXPECT_TRUE(upstream_.events.empty());
}

TEST_F(SessionTest, ErrorsAndPongsTheGatewayAnswersCarryTheRequestId) {
  session_->Start({});
  session_->OnClientMessage(R"({"ping":{"nonce":"n1"},"requestId":"r1"})",
                            false);
  session_->OnClientMessage(R"({"listBlocked":{},"requestId":"r2"})", false);
  const auto before = connection_.Frames();
  ASSERT_THAT(before, SizeIs(2));
  EXPECT_EQ(before[0].pong().nonce(), "n1");
  EXPECT_EQ(before[0].request_id(), "r1");
  EXPECT_EQ(before[1].error().code(), parley::v1::ERROR_CODE_UNAUTHENTICATED);
  EXPECT_EQ(before[1].request_id(), "r2");
  GoLive();
  connection_.sent.clear();
  session_->OnClientMessage(R"({"history":{},"requestId":"r3"})", false);
  session_->OnClientMessage(absl::StrCat(R"({"listBlocked":{},"requestId":")",
                                         std::string(65, 'x'), R"("})"),
                            false);
  session_->OnClientMessage(R"({"listBlocked":{},"requestId":"r5"})", false);
  const auto frames = connection_.Frames();
  ASSERT_THAT(frames, SizeIs(2));
  EXPECT_EQ(frames[0].error().code(), parley::v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_EQ(frames[0].request_id(), "r3");
  EXPECT_EQ(frames[1].error().code(), parley::v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_THAT(frames[1].error().message(), HasSubstr("requestId"));
  // The valid one goes upstream with its request_id for the service to echo.
  EXPECT_EQ(upstream_.events.back().frame().frame().request_id(), "r5");
}

TEST_F(SessionTest, ABackpressureErrorCarriesTheRequestId) {
  SessionOptions options;
  options.max_buffered_frames = 1;
  Reset(options);
  GoLive();
  upstream_.up = false;
  session_->OnLinkDown(1);
  session_->OnClientMessage(R"({"listBlocked":{},"requestId":"a"})", false);
  session_->OnClientMessage(R"({"listBlocked":{},"requestId":"b"})", false);
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_BACKPRESSURE);
  EXPECT_EQ(connection_.Last().request_id(), "b");
}

TEST_F(SessionTest, ProtoSubprotocolUsesBinaryFrames) {
  Reset(SessionOptions{}, Encoding::kBinary);
  ClientFrame ping;
  ping.mutable_ping()->set_nonce("b");
  session_->OnClientMessage(EncodeFrame(Encoding::kBinary, ping), true);
  ASSERT_THAT(connection_.sent, SizeIs(1));
  EXPECT_EQ(connection_.Frames(Encoding::kBinary)[0].pong().nonce(), "b");
  session_->OnClientMessage(R"({"ping":{}})", false);
  EXPECT_EQ(connection_.Frames(Encoding::kBinary)[1].error().code(),
            parley::v1::ERROR_CODE_INVALID_FRAME);
}

TEST_F(SessionTest, AuthDeadlineClosesWith4008UnlessLive) {
  session_->Start({});
  session_->OnAuthDeadline();
  EXPECT_EQ(connection_.close_code, kCloseAuthTimeout);
  EXPECT_EQ(session_->state(), Session::State::kClosed);
}

TEST_F(SessionTest, AuthDeadlineWhileOpeningClosesAndTellsService) {
  session_->Start(WithToken("tok", ""));
  session_->OnAuthDeadline();
  EXPECT_EQ(connection_.close_code, kCloseAuthTimeout);
  ASSERT_THAT(upstream_.events, SizeIs(2));
  EXPECT_EQ(upstream_.events[1].close().session_id(), "gw-1");
}

TEST_F(SessionTest, AuthDeadlineAfterLiveDoesNothing) {
  GoLive();
  session_->OnAuthDeadline();
  EXPECT_EQ(connection_.close_calls, 0);
}

TEST_F(SessionTest, ServiceUnreachableAtAuthClosesWith1013) {
  upstream_.up = false;
  session_->Start(WithToken("tok", ""));
  EXPECT_EQ(connection_.close_code, kCloseTryAgainLater);
}

TEST_F(SessionTest, LinkDownWhileOpeningClosesWith1013) {
  session_->Start(WithToken("tok", ""));
  session_->OnLinkDown(1);
  EXPECT_EQ(connection_.close_code, kCloseTryAgainLater);
}

// The link moved the session to another replica's stream before the
// service answered its open: it opens again there, the same way.
TEST_F(SessionTest, LinkUpNewerThanTheOpenWhileOpeningOpensAgain) {
  session_->Start(WithToken("tok", "phone", 7));
  upstream_.generation = 5;
  session_->OnLinkUp(5);
  ASSERT_THAT(upstream_.events, SizeIs(2));
  for (const auto& event : upstream_.events) {
    EXPECT_EQ(event.open().token(), "tok");
    EXPECT_EQ(event.open().device(), "phone");
    EXPECT_EQ(event.open().resume_after(), 7u);
    EXPECT_FALSE(event.open().reannounce());
  }
  EXPECT_EQ(session_->state(), Session::State::kOpening);
  EXPECT_EQ(connection_.close_code, 0);
  parley::v1::SessionAccepted accepted;
  accepted.set_session_id("gw-1");
  accepted.set_user_id("alice");
  session_->OnAccepted(accepted);
  EXPECT_EQ(session_->state(), Session::State::kLive);
}

TEST_F(SessionTest, LinkUpNoNewerThanTheOpenWhileOpeningSendsNothing) {
  session_->Start(WithToken("tok", ""));
  session_->OnLinkUp(1);
  EXPECT_THAT(upstream_.events, SizeIs(1));
}

TEST_F(SessionTest, LinkUpWithNoStreamWhileOpeningClosesWith1013) {
  session_->Start(WithToken("tok", ""));
  upstream_.up = false;
  session_->OnLinkUp(2);
  EXPECT_EQ(connection_.close_code, kCloseTryAgainLater);
}

TEST_F(SessionTest, RejectionsMapToCloseCodes) {
  struct Case {
    parley::v1::RejectReason reason;
    uint16_t code;
  };
  for (const Case& c :
       std::vector<Case>{{parley::v1::REJECT_REASON_TOKEN_MALFORMED, 4001},
                         {parley::v1::REJECT_REASON_TOKEN_BAD_SIGNATURE, 4001},
                         {parley::v1::REJECT_REASON_TOKEN_EXPIRED, 4001},
                         {parley::v1::REJECT_REASON_TOKEN_REVOKED, 4001},
                         {parley::v1::REJECT_REASON_UNKNOWN_USER, 4001},
                         {parley::v1::REJECT_REASON_TOO_MANY_SESSIONS, 4029},
                         {parley::v1::REJECT_REASON_UNAVAILABLE, 1013}}) {
    connection_ = FakeConnection();
    upstream_.events.clear();
    Reset(SessionOptions{});
    session_->Start(WithToken("tok", ""));
    parley::v1::SessionRejected rejected;
    rejected.set_reason(c.reason);
    rejected.set_message("token expired at noon");
    session_->OnRejected(rejected);
    EXPECT_EQ(connection_.close_code, c.code) << c.reason;
    EXPECT_EQ(connection_.close_reason, "token expired at noon");
    // The service already dropped the session: no SessionClose.
    EXPECT_THAT(upstream_.events, SizeIs(1));
  }
}

TEST_F(SessionTest, ExpiredTokenOnReannounceAsksForAFreshToken) {
  GoLive();
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  parley::v1::SessionRejected rejected;
  rejected.set_reason(parley::v1::REJECT_REASON_TOKEN_EXPIRED);
  rejected.set_message("token expired");
  session_->OnRejected(rejected);
  EXPECT_EQ(connection_.close_code, kCloseAuthTimeout);
  EXPECT_THAT(connection_.close_reason, HasSubstr("fresh token"));
}

// Large frames are limited by bytes too: at the frame rate, 64 KiB frames
// would be 3.2 MB/s per connection.
TEST_F(SessionTest, ByteRateLimitRefusesLargeFramesWithTheirClientMsgId) {
  SessionOptions options;
  options.rate_limit_bytes_per_second = 1000;
  options.rate_limit_bytes_burst = 1500;
  Reset(options);
  GoLive();
  connection_.sent.clear();
  auto big = [](const std::string& id) {
    ClientFrame f;
    f.mutable_send()->set_client_msg_id(id);
    f.mutable_send()->mutable_to()->set_user("bob");
    f.mutable_send()->set_text(std::string(1000, 'x'));
    return Json(f);
  };
  session_->OnClientMessage(big("c-big"), false);
  EXPECT_EQ(session_->unacked_sends(), 1u);
  // ~1 KB of the 1.5 KB burst is spent: the next large frame is refused.
  session_->OnClientMessage(big("c-big2"), false);
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_RATE_LIMITED);
  EXPECT_EQ(connection_.Last().error().client_msg_id(), "c-big2");
  EXPECT_THAT(connection_.Last().error().message(),
              HasSubstr("1000 bytes per second"));
  EXPECT_EQ(session_->unacked_sends(), 1u);
  // A small frame still fits, and a second later a large one does again.
  session_->OnClientMessage(R"({"ping":{"nonce":"x"}})", false);
  EXPECT_TRUE(connection_.Last().has_pong());
  now_ += absl::Seconds(1);
  session_->OnClientMessage(big("c-big3"), false);
  EXPECT_EQ(session_->unacked_sends(), 2u);
}

TEST_F(SessionTest, RateLimitErrorsThenSustainedAbuseCloses1008) {
  SessionOptions options;
  options.rate_limit_per_second = 10;
  options.rate_limit_burst = 5;
  options.abuse_error_burst = 3;
  options.abuse_error_per_second = 1;
  Reset(options);
  GoLive();
  connection_.sent.clear();
  for (int i = 0; i < 4; ++i) {
    session_->OnClientMessage(R"({"ping":{"nonce":"x"}})", false);
  }
  // The 5th token was spent by nothing: GoLive used none (query token).
  session_->OnClientMessage(R"({"ping":{"nonce":"x"}})", false);
  session_->OnClientMessage(R"({"ping":{"nonce":"x"}})", false);
  auto frames = connection_.Frames();
  ASSERT_THAT(frames, SizeIs(6));
  EXPECT_TRUE(frames[4].has_pong());
  EXPECT_EQ(frames[5].error().code(), parley::v1::ERROR_CODE_RATE_LIMITED);
  EXPECT_EQ(connection_.close_calls, 0);

  // A tenth of a second later one token is back.
  now_ += absl::Milliseconds(100);
  session_->OnClientMessage(R"({"ping":{"nonce":"y"}})", false);
  EXPECT_TRUE(connection_.Last().has_pong());

  // A refused Send names its clientMsgId, so the client can retry it.
  session_->OnClientMessage(SendJson("c-limited"), false);
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_RATE_LIMITED);
  EXPECT_EQ(connection_.Last().error().client_msg_id(), "c-limited");
  EXPECT_EQ(session_->unacked_sends(), 0u);

  // Keep hammering: one more error uses the budget, then 1008.
  for (int i = 0; i < 2; ++i) {
    session_->OnClientMessage(R"({"ping":{"nonce":"z"}})", false);
  }
  EXPECT_EQ(connection_.close_code, kClosePolicyViolation);
  EXPECT_EQ(session_->state(), Session::State::kClosed);
}

TEST_F(SessionTest, SlowConsumerIsClosedWith1013AndOutputDropped) {
  SessionOptions options;
  options.send_buffer_cap_bytes = 1000;
  Reset(options);
  GoLive();
  connection_.stalled = true;
  ServerFrame big = MessageWith(11);
  big.mutable_message()->set_text(std::string(400, 'x'));
  Deliver(big);
  Deliver(big);
  EXPECT_EQ(connection_.close_calls, 0);
  Deliver(big);
  EXPECT_EQ(connection_.close_code, kCloseTryAgainLater);
  EXPECT_EQ(connection_.close_reason, "slow consumer");
  const size_t sent = connection_.sent.size();
  for (int i = 0; i < 100; ++i) Deliver(big);
  EXPECT_EQ(connection_.sent.size(), sent);
  EXPECT_EQ(connection_.close_calls, 1);
}

TEST_F(SessionTest, LinkRestartReannouncesWithResumeAfterAndResendsUnacked) {
  GoLive(/*head=*/10);
  session_->OnClientMessage(SendJson("c1"), false);
  session_->OnClientMessage(SendJson("c2"), false);
  Deliver(AckFor("c1", 11));
  Deliver(MessageWith(12));
  EXPECT_EQ(session_->resume_point(), 12u);
  EXPECT_EQ(session_->unacked_sends(), 1u);

  // The stream breaks: the service never saw these.
  upstream_.up = false;
  session_->OnLinkDown(1);
  session_->OnClientMessage(SendJson("c3"), false);
  session_->OnClientMessage(R"({"read":{"conversation":"d:a:b","seq":"4"}})",
                            false);
  session_->OnClientMessage(R"({"typing":{"to":{"user":"bob"}}})", false);
  EXPECT_EQ(connection_.close_calls, 0);
  EXPECT_EQ(session_->buffered_frames(), 1u);  // The read; typing dropped.
  upstream_.events.clear();

  upstream_.up = true;
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(4));
  const auto& open = upstream_.events[0].open();
  EXPECT_TRUE(open.reannounce());
  EXPECT_EQ(open.resume_after(), 12u);
  EXPECT_EQ(open.token(), "tok");
  EXPECT_THAT(upstream_.SendIds(), ElementsAre("c2", "c3"));
  EXPECT_TRUE(upstream_.events[3].frame().frame().has_read());
  EXPECT_EQ(session_->buffered_frames(), 0u);
  // No second Welcome.
  int welcomes = 0;
  for (const auto& f : connection_.Frames()) welcomes += f.has_welcome();
  EXPECT_EQ(welcomes, 1);
}

// A new device (no hello inbox_seq) starts at the head it is welcomed at; a
// reconnect must resume from there, even when that head is 0, or a message
// stored while the link was down is never delivered.
TEST_F(SessionTest, NewDeviceResumesFromTheHeadItWasWelcomedAt) {
  for (uint64_t head : {0u, 5u}) {
    SCOPED_TRACE(head);
    Reset(SessionOptions{});
    upstream_.events.clear();
    upstream_.generation = 1;
    GoLive(head);
    EXPECT_FALSE(upstream_.events[0].open().has_resume_after())
        << "a new device asks for no replay";
    upstream_.events.clear();
    session_->OnLinkDown(1);
    upstream_.generation = 2;
    session_->OnLinkUp(2);
    ASSERT_THAT(upstream_.events, SizeIs(1));
    ASSERT_TRUE(upstream_.events[0].open().has_resume_after());
    EXPECT_EQ(upstream_.events[0].open().resume_after(), head);
  }
}

TEST_F(SessionTest, HelloWithInboxSeqZeroResumesFromZero) {
  session_->Start({});
  session_->OnClientMessage(R"({"hello":{"token":"t","inboxSeq":"0"}})", false);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  ASSERT_TRUE(upstream_.events[0].open().has_resume_after());
  EXPECT_EQ(upstream_.events[0].open().resume_after(), 0u);
}

TEST_F(SessionTest, InvalidInboxSeqInTheQueryClosesWithAReason) {
  ConnectParams params;
  params.token = "tok";
  params.inbox_seq_invalid = true;
  session_->Start(params);
  EXPECT_EQ(connection_.close_code, kClosePolicyViolation);
  EXPECT_THAT(connection_.close_reason, HasSubstr("inboxSeq"));
  EXPECT_TRUE(upstream_.events.empty());
}

// A session that only sent (its Acks told it its own inbox_seqs) resumes after
// them: resuming from before would replay its own sends as Messages.
TEST_F(SessionTest, AnAckRaisesTheResumePoint) {
  GoLive(/*head=*/0);
  session_->OnClientMessage(SendJson("c1"), false);
  Deliver(AckFor("c1", 1));
  EXPECT_EQ(session_->resume_point(), 1u);
  upstream_.events.clear();
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_EQ(upstream_.events[0].open().resume_after(), 1u);
}

TEST_F(SessionTest, ConversationListAndHistoryGoUpstreamAndMoveNoResumePoint) {
  GoLive(/*head=*/5);
  session_->OnClientMessage(R"({"listConversations":{"limit":2}})", false);
  session_->OnClientMessage(
      R"({"history":{"conversation":"d:alice:bob","beforeSeq":"9"}})", false);
  session_->OnClientMessage(R"({"history":{"limit":3}})", false);
  ASSERT_THAT(upstream_.events, SizeIs(3));  // The open and two frames.
  EXPECT_EQ(upstream_.events[1].frame().frame().list_conversations().limit(),
            2u);
  EXPECT_EQ(upstream_.events[2].frame().frame().history().before_seq(), 9u);
  auto errors = connection_.Frames();
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors.back().error().code(),
            parley::v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_THAT(errors.back().error().message(), HasSubstr("conversation"));

  // History and list answers carry messages outside the inbox (inbox_seq
  // 0): they reach the client and leave the resume point where it was.
  ServerFrame page;
  page.mutable_history()->set_conversation("d:alice:bob");
  page.mutable_history()->add_messages()->set_seq(8);
  ServerFrame list;
  list.mutable_conversations()->add_conversations()->mutable_last_message();
  connection_.sent.clear();
  Deliver(page);
  Deliver(list);
  ASSERT_THAT(connection_.Frames(), SizeIs(2));
  EXPECT_TRUE(connection_.Frames()[0].has_history());
  EXPECT_TRUE(connection_.Frames()[1].has_conversations());
  EXPECT_EQ(session_->resume_point(), 5u);
}

// The stream broke after the service stored a Send and before its Ack
// arrived: the replay carries the message, and the re-sent Send's answer
// repeats the Ack. The client gets one Ack and never its own message.
TEST_F(SessionTest, ReplayedOwnUnackedSendReachesTheClientAsItsAckOnce) {
  GoLive(/*head=*/10);
  session_->OnClientMessage(SendJson("c1"), false);
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  EXPECT_THAT(upstream_.SendIds(), ElementsAre("c1", "c1"));
  connection_.sent.clear();

  ServerFrame replayed;
  parley::v1::Message* m = replayed.mutable_message();
  m->set_inbox_seq(11);
  m->set_message_id("981");
  m->set_conversation("d:alice:bob");
  m->set_seq(4);
  m->set_from("alice");
  m->mutable_to()->set_user("bob");
  m->set_text("hi c1");
  m->set_client_msg_id("c1");
  m->mutable_sent_at()->set_seconds(1'800'000'000);
  Deliver(replayed);
  ServerFrame repeat = AckFor("c1", 11);
  Deliver(repeat);

  ASSERT_THAT(connection_.sent, SizeIs(1));
  const ServerFrame ack = connection_.Last();
  ASSERT_TRUE(ack.has_ack()) << ack.DebugString();
  EXPECT_EQ(ack.ack().client_msg_id(), "c1");
  EXPECT_EQ(ack.ack().message_id(), "981");
  EXPECT_EQ(ack.ack().conversation(), "d:alice:bob");
  EXPECT_EQ(ack.ack().seq(), 4u);
  EXPECT_EQ(ack.ack().inbox_seq(), 11u);
  EXPECT_EQ(ack.ack().sent_at().seconds(), 1'800'000'000);
  EXPECT_EQ(session_->unacked_sends(), 0u);
  EXPECT_EQ(session_->resume_point(), 11u);

  // The user's message from another device is a message.
  m->set_inbox_seq(12);
  m->set_client_msg_id("other-device-1");
  Deliver(replayed);
  ASSERT_THAT(connection_.sent, SizeIs(2));
  EXPECT_TRUE(connection_.Last().has_message());
}

// A send re-sent after a reconnect was stored by its first attempt (its
// Ack arrives), and the re-sent copy fails (a replica that lost its store
// connection): the client, already told it was stored, is not told it
// failed.
TEST_F(SessionTest, AnErrorForASendAlreadyAckedIsDropped) {
  GoLive(/*head=*/10);
  session_->OnClientMessage(SendJson("c1"), false);
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  connection_.sent.clear();

  Deliver(AckFor("c1", 11));
  ServerFrame failed;
  failed.mutable_error()->set_code(parley::v1::ERROR_CODE_UNAVAILABLE);
  failed.mutable_error()->set_message("lost the connection to PostgreSQL");
  failed.mutable_error()->set_client_msg_id("c1");
  Deliver(failed);

  ASSERT_THAT(connection_.sent, SizeIs(1));
  EXPECT_TRUE(connection_.Last().has_ack());
  EXPECT_EQ(session_->unacked_sends(), 0u);

  // An error for a send in flight reaches the client.
  session_->OnClientMessage(SendJson("c2"), false);
  failed.mutable_error()->set_client_msg_id("c2");
  Deliver(failed);
  ASSERT_THAT(connection_.sent, SizeIs(2));
  EXPECT_EQ(connection_.Last().error().client_msg_id(), "c2");
  EXPECT_EQ(session_->unacked_sends(), 0u);
}

TEST_F(SessionTest, TheStoreGenerationGoesFromHelloToWelcomeAndReannounces) {
  session_->Start({});
  session_->OnClientMessage(
      R"({"hello":{"token":"t","inboxSeq":"4","storeGeneration":"g1"}})",
      false);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_EQ(upstream_.events[0].open().store_generation(), "g1");
  parley::v1::SessionAccepted accepted;
  accepted.set_user_id("alice");
  accepted.set_inbox_seq(9);
  accepted.set_store_generation("g1");
  accepted.set_replayed_after(4);
  session_->OnAccepted(accepted);
  EXPECT_EQ(connection_.Last().welcome().store_generation(), "g1");
  EXPECT_EQ(session_->resume_point(), 4u);

  upstream_.events.clear();
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_EQ(upstream_.events[0].open().store_generation(), "g1");
}

// The client's position was void (from before a restore, or from a client
// that predates generations and is beyond the head): the service replays the
// inbox from its start, so the session resumes from 0, not from the hello's
// point.
TEST_F(SessionTest, AVoidPositionResumesFromWhereTheServiceReplayed) {
  session_->Start(WithToken("tok", "", 390));
  parley::v1::SessionAccepted accepted;
  accepted.set_user_id("alice");
  accepted.set_inbox_seq(176);
  accepted.set_store_generation("g2");
  accepted.set_replayed_after(0);
  session_->OnAccepted(accepted);
  EXPECT_EQ(connection_.Last().welcome().store_generation(), "g2");
  EXPECT_EQ(session_->resume_point(), 0u);
}

TEST_F(SessionTest, ARestoreWhileConnectedClosesWithServiceRestart) {
  GoLive();
  parley::v1::SessionRejected rejected;
  rejected.set_reason(parley::v1::REJECT_REASON_STORE_RESTORED);
  rejected.set_message(
      "the service's data was restored from a backup; reconnect");
  session_->OnRejected(rejected);
  EXPECT_EQ(connection_.close_code, kCloseServiceRestart);
  EXPECT_THAT(connection_.close_reason, HasSubstr("restored"));
}

TEST_F(SessionTest, FrameRefusedOnNewGenerationWaitsForReannounce) {
  GoLive();
  // The link bounced before this session heard of it.
  upstream_.generation = 2;
  upstream_.events.clear();
  session_->OnClientMessage(R"({"read":{"conversation":"d:a:b","seq":"1"}})",
                            false);
  EXPECT_TRUE(upstream_.events.empty());
  session_->OnLinkDown(1);
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(2));
  EXPECT_TRUE(upstream_.events[0].open().reannounce());
  EXPECT_TRUE(upstream_.events[1].frame().frame().has_read());
}

TEST_F(SessionTest, UnansweredSyncIsResentAfterReconnect) {
  GoLive();
  session_->OnClientMessage(R"({"sync":{"afterSeq":"2"}})", false);
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  upstream_.events.clear();
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(2));
  EXPECT_EQ(upstream_.events[1].frame().frame().sync().after_seq(), 2u);

  ServerFrame synced;
  synced.mutable_synced()->add_messages()->set_inbox_seq(15);
  Deliver(synced);
  EXPECT_EQ(session_->resume_point(), 15u);
  session_->OnLinkDown(2);
  upstream_.generation = 3;
  upstream_.events.clear();
  session_->OnLinkUp(3);
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_EQ(upstream_.events[0].open().resume_after(), 15u);
}

TEST_F(SessionTest, FullBufferGivesRetryableBackpressureError) {
  SessionOptions options;
  options.max_buffered_frames = 2;
  Reset(options);
  GoLive();
  upstream_.up = false;
  session_->OnLinkDown(1);
  session_->OnClientMessage(SendJson("c1"), false);
  session_->OnClientMessage(SendJson("c2"), false);
  session_->OnClientMessage(SendJson("c3"), false);
  const ServerFrame last = connection_.Last();
  EXPECT_EQ(last.error().code(), parley::v1::ERROR_CODE_BACKPRESSURE);
  EXPECT_EQ(last.error().client_msg_id(), "c3");
  EXPECT_EQ(connection_.close_calls, 0);
  EXPECT_EQ(session_->unacked_sends(), 2u);
}

TEST_F(SessionTest, HeldBytesAreCappedAndReleasedOnAck) {
  SessionOptions options;
  options.max_buffered_bytes = 3000;
  Reset(options);
  GoLive();
  ClientFrame big;
  big.mutable_send()->set_client_msg_id("b1");
  big.mutable_send()->mutable_to()->set_user("bob");
  big.mutable_send()->set_text(std::string(1400, 'x'));
  session_->OnClientMessage(Json(big), false);
  big.mutable_send()->set_client_msg_id("b2");
  session_->OnClientMessage(Json(big), false);
  EXPECT_EQ(session_->unacked_sends(), 2u);
  EXPECT_GT(session_->held_bytes(), 2800u);
  big.mutable_send()->set_client_msg_id("b3");
  session_->OnClientMessage(Json(big), false);
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_BACKPRESSURE);
  EXPECT_EQ(connection_.Last().error().client_msg_id(), "b3");
  Deliver(AckFor("b1", 11));
  Deliver(AckFor("b2", 12));
  EXPECT_EQ(session_->held_bytes(), 0u);
  session_->OnClientMessage(Json(big), false);
  EXPECT_EQ(session_->unacked_sends(), 1u);
}

TEST_F(SessionTest, GatewayBudgetIsSharedAndReturnedOnAckAndClose) {
  HeldBudget budget(3000);
  Reset(SessionOptions{}, Encoding::kJson, &budget);
  GoLive();
  ClientFrame big;
  big.mutable_send()->mutable_to()->set_user("bob");
  big.mutable_send()->set_text(std::string(1400, 'x'));
  big.mutable_send()->set_client_msg_id("a1");
  session_->OnClientMessage(Json(big), false);
  big.mutable_send()->set_client_msg_id("a2");
  session_->OnClientMessage(Json(big), false);
  ASSERT_EQ(session_->unacked_sends(), 2u);
  EXPECT_EQ(budget.used(), session_->held_bytes());

  // Another session of the same gateway, far below its own limits.
  FakeConnection other_connection;
  FakeUpstream other_upstream;
  Session other(
      SessionOptions{}, "gw-2", Encoding::kJson, "127.0.0.1:5001",
      &other_connection, &other_upstream, [this] { return now_; },
      SessionObserver{}, &budget);
  other.Start(WithToken("tok", "web"));
  parley::v1::SessionAccepted accepted;
  accepted.set_session_id("gw-2");
  accepted.set_user_id("carol");
  other.OnAccepted(accepted);
  big.mutable_send()->set_client_msg_id("c1");
  other.OnClientMessage(Json(big), false);
  EXPECT_EQ(other.unacked_sends(), 0u);
  EXPECT_EQ(other_connection.Last().error().code(),
            parley::v1::ERROR_CODE_BACKPRESSURE);
  EXPECT_EQ(other_connection.Last().error().client_msg_id(), "c1");
  EXPECT_THAT(other_connection.Last().error().message(),
              HasSubstr("the gateway holds all it may"));

  // An Ack here makes room there.
  Deliver(AckFor("a1", 11));
  other.OnClientMessage(Json(big), false);
  EXPECT_EQ(other.unacked_sends(), 1u);
  EXPECT_EQ(budget.used(), session_->held_bytes() + other.held_bytes());

  // A closed connection returns all it held.
  session_->OnConnectionClosed("client closed");
  EXPECT_EQ(budget.used(), other.held_bytes());
  other.OnConnectionClosed("client closed");
  EXPECT_EQ(budget.used(), 0u);
}

TEST_F(SessionTest, UnansweredSyncsCountAgainstTheLimitsWhileTheLinkIsUp) {
  SessionOptions options;
  options.max_buffered_frames = 2;
  Reset(options);
  GoLive();
  session_->OnClientMessage(R"({"sync":{"afterSeq":"1"}})", false);
  session_->OnClientMessage(R"({"sync":{"afterSeq":"2"}})", false);
  EXPECT_GT(session_->held_bytes(), 0u);
  session_->OnClientMessage(R"({"sync":{"afterSeq":"3"}})", false);
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_BACKPRESSURE);
  EXPECT_EQ(upstream_.events.size(), 3u);  // The open and two Syncs.
  ServerFrame synced;
  synced.mutable_synced();
  Deliver(synced);
  session_->OnClientMessage(R"({"sync":{"afterSeq":"3"}})", false);
  EXPECT_EQ(upstream_.events.size(), 4u);
  EXPECT_EQ(upstream_.events[3].frame().frame().sync().after_seq(), 3u);
}

TEST_F(SessionTest, RepeatedClientMsgIdIsForwardedButTrackedOnce) {
  GoLive();
  session_->OnClientMessage(SendJson("c1"), false);
  session_->OnClientMessage(SendJson("c1"), false);
  EXPECT_THAT(upstream_.SendIds(), ElementsAre("c1", "c1"));
  EXPECT_EQ(session_->unacked_sends(), 1u);
}

// Edit and Delete are answered with an Ack like a Send: tracked until then,
// so the Ack reaches the client (an untracked Ack would be dropped), and
// re-sent after a reconnect.
// CreateGroup and UpdateGroup are answered with an Ack like a Send: tracked
// until then, so the Ack reaches the client, and re-sent after a reconnect;
// GetGroup's answer passes untracked.
TEST_F(SessionTest, GroupChangesAreTrackedAndTheirAcksReachTheClient) {
  GoLive(/*head=*/10);
  session_->OnClientMessage(
      R"({"createGroup":{"clientMsgId":"g1","title":"Team","members":["bob"]}})",
      false);
  session_->OnClientMessage(
      R"({"updateGroup":{"clientMsgId":"u1","group":"gx","rename":"Crew"}})",
      false);
  session_->OnClientMessage(R"({"getGroup":{"group":"gx"}})", false);
  EXPECT_EQ(session_->unacked_sends(), 2u);
  ASSERT_THAT(upstream_.events, SizeIs(4));
  EXPECT_EQ(upstream_.events[1].frame().frame().create_group().title(), "Team");
  EXPECT_EQ(upstream_.events[2].frame().frame().update_group().rename(),
            "Crew");

  Deliver(AckFor("g1", 11));
  ASSERT_TRUE(connection_.Last().has_ack());
  EXPECT_EQ(connection_.Last().ack().client_msg_id(), "g1");
  EXPECT_EQ(session_->unacked_sends(), 1u);
  // The link breaks before the update's Ack: it is re-sent.
  upstream_.events.clear();
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(2));
  EXPECT_EQ(upstream_.events[1].frame().frame().update_group().client_msg_id(),
            "u1");
  Deliver(AckFor("u1", 12));
  ASSERT_TRUE(connection_.Last().has_ack());
  EXPECT_EQ(connection_.Last().ack().client_msg_id(), "u1");
  EXPECT_EQ(session_->unacked_sends(), 0u);

  ServerFrame info;
  info.mutable_group()->set_id("gx");
  Deliver(info);
  ASSERT_TRUE(connection_.Last().has_group());
  EXPECT_EQ(connection_.Last().group().id(), "gx");
}

TEST_F(SessionTest, GroupChangesWithoutAKeyOrGroupAreRefusedAtTheGateway) {
  GoLive();
  session_->OnClientMessage(R"({"createGroup":{"title":"Team"}})", false);
  ASSERT_TRUE(connection_.Last().has_error());
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_THAT(connection_.Last().error().message(),
              HasSubstr("createGroup.clientMsgId"));
  session_->OnClientMessage(
      R"({"updateGroup":{"clientMsgId":"u1","leave":{}}})", false);
  ASSERT_TRUE(connection_.Last().has_error());
  EXPECT_THAT(connection_.Last().error().message(),
              HasSubstr("updateGroup.group is empty"));
  EXPECT_EQ(connection_.Last().error().client_msg_id(), "u1");
  EXPECT_THAT(upstream_.events, SizeIs(1));  // The open only.
  EXPECT_EQ(session_->unacked_sends(), 0u);
}

TEST_F(SessionTest, EditAndDeleteAreTrackedAndTheirAcksReachTheClient) {
  GoLive(/*head=*/10);
  session_->OnClientMessage(
      R"({"edit":{"clientMsgId":"e1","conversation":"d:alice:bob","seq":"3",)"
      R"("text":"fixed"}})",
      false);
  session_->OnClientMessage(
      R"({"delete":{"clientMsgId":"x1","conversation":"d:alice:bob",)"
      R"("seq":"4"}})",
      false);
  EXPECT_EQ(session_->unacked_sends(), 2u);
  ASSERT_THAT(upstream_.events, SizeIs(3));
  EXPECT_EQ(upstream_.events[1].frame().frame().edit().text(), "fixed");
  EXPECT_EQ(upstream_.events[2].frame().frame().delete_().seq(), 4u);

  // The link breaks before the delete's Ack: it is re-sent.
  Deliver(AckFor("e1", 11));
  ASSERT_TRUE(connection_.Last().has_ack());
  EXPECT_EQ(connection_.Last().ack().client_msg_id(), "e1");
  upstream_.events.clear();
  session_->OnLinkDown(1);
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  ASSERT_THAT(upstream_.events, SizeIs(2));
  EXPECT_EQ(upstream_.events[1].frame().frame().delete_().client_msg_id(),
            "x1");

  // Its event, replayed, reaches the client as its Ack, once.
  connection_.sent.clear();
  ServerFrame replayed;
  parley::v1::Message* m = replayed.mutable_message();
  m->set_inbox_seq(12);
  m->set_message_id("77");
  m->set_conversation("d:alice:bob");
  m->set_seq(6);
  m->set_from("alice");
  m->set_client_msg_id("x1");
  m->set_kind(parley::v1::MESSAGE_KIND_DELETE);
  m->set_target_seq(4);
  Deliver(replayed);
  Deliver(AckFor("x1", 12));
  ASSERT_THAT(connection_.sent, SizeIs(1));
  ASSERT_TRUE(connection_.Last().has_ack());
  EXPECT_EQ(connection_.Last().ack().client_msg_id(), "x1");
  EXPECT_EQ(connection_.Last().ack().seq(), 6u);
  EXPECT_EQ(session_->unacked_sends(), 0u);
  EXPECT_EQ(session_->resume_point(), 12u);
}

TEST_F(SessionTest, InvalidEditAndDeleteFieldsAreRefusedAtTheGateway) {
  GoLive();
  upstream_.events.clear();
  const std::pair<const char*, const char*> cases[] = {
      {R"({"edit":{"conversation":"d:a:b","seq":"1","text":"t"}})",
       "edit.clientMsgId"},
      {R"({"edit":{"clientMsgId":"e1","seq":"1","text":"t"}})",
       "edit.conversation"},
      {R"({"edit":{"clientMsgId":"e2","conversation":"d:a:b","text":"t"}})",
       "edit.seq"},
      {R"({"edit":{"clientMsgId":"e3","conversation":"d:a:b","seq":"1"}})",
       "edit.text"},
      {R"({"delete":{"clientMsgId":"x1","conversation":"d:a:b"}})",
       "delete.seq"},
  };
  for (const auto& [json, named] : cases) {
    SCOPED_TRACE(json);
    session_->OnClientMessage(json, false);
    const ServerFrame last = connection_.Last();
    ASSERT_TRUE(last.has_error());
    EXPECT_EQ(last.error().code(), parley::v1::ERROR_CODE_INVALID_ARGUMENT);
    EXPECT_THAT(last.error().message(), HasSubstr(named));
  }
  EXPECT_EQ(connection_.Last().error().client_msg_id(), "x1");
  EXPECT_TRUE(upstream_.events.empty());
  EXPECT_EQ(session_->unacked_sends(), 0u);
}

TEST_F(SessionTest, SendErrorFromServiceStopsTracking) {
  GoLive();
  session_->OnClientMessage(SendJson("c1", "nobody"), false);
  ServerFrame error;
  error.mutable_error()->set_code(parley::v1::ERROR_CODE_NOT_FOUND);
  error.mutable_error()->set_client_msg_id("c1");
  Deliver(error);
  EXPECT_EQ(session_->unacked_sends(), 0u);
  EXPECT_EQ(connection_.Last().error().code(),
            parley::v1::ERROR_CODE_NOT_FOUND);
}

// A group message comes once per stream with each session's inbox_seq beside
// it; every session's client must get the same bytes as for a frame that
// carried its inbox_seq, in either encoding, and resume after it.
TEST_F(SessionTest, ADeliveryWithThisSessionsInboxSeqSendsTheMessageAtIt) {
  for (Encoding encoding : {Encoding::kJson, Encoding::kBinary}) {
    SCOPED_TRACE(SubprotocolName(encoding));
    Reset(SessionOptions{}, encoding);
    connection_.sent.clear();
    GoLive(10);
    connection_.sent.clear();
    ServerFrame shared;
    shared.mutable_message()->set_text("to the team");
    shared.mutable_message()->set_conversation("g:team");
    const OutboundFrame frame(shared);
    session_->OnDelivery(frame, 12);
    ServerFrame expected = shared;
    expected.mutable_message()->set_inbox_seq(12);
    ASSERT_THAT(connection_.sent, SizeIs(1));
    EXPECT_EQ(connection_.sent[0], EncodeFrame(encoding, expected));
    EXPECT_EQ(session_->resume_point(), 12u);
  }
}

TEST_F(SessionTest, AckAndDeliveryLatenciesAreObserved) {
  std::vector<absl::Duration> acks, deliveries;
  SessionObserver observer;
  observer.ack_latency = [&](absl::Duration d) { acks.push_back(d); };
  observer.delivery_latency = [&](absl::Duration d) {
    deliveries.push_back(d);
  };
  session_ = std::make_unique<Session>(
      SessionOptions{}, "gw-1", Encoding::kJson, "p", &connection_, &upstream_,
      [this] { return now_; }, observer);
  GoLive();
  session_->OnClientMessage(SendJson("c1"), false);
  now_ += absl::Milliseconds(3);
  Deliver(AckFor("c1", 11));
  EXPECT_THAT(acks, ElementsAre(absl::Milliseconds(3)));

  ServerFrame message = MessageWith(12);
  const absl::Time sent = now_ - absl::Milliseconds(7);
  message.mutable_message()->mutable_sent_at()->set_seconds(
      absl::ToUnixSeconds(sent));
  message.mutable_message()->mutable_sent_at()->set_nanos(static_cast<int32_t>(
      (sent - absl::FromUnixSeconds(absl::ToUnixSeconds(sent))) /
      absl::Nanoseconds(1)));
  Deliver(message);
  EXPECT_THAT(deliveries, ElementsAre(absl::Milliseconds(7)));
}

TEST_F(SessionTest, DisconnectOrderClosesWithOperatorCodeAndReconnectPrefix) {
  GoLive();
  parley::v1::DisconnectOrder order;
  order.set_close_code(4003);
  order.set_reason("maintenance");
  order.set_reconnect(false);
  session_->OnDisconnect(order);
  EXPECT_EQ(connection_.close_code, kCloseOperator);
  EXPECT_EQ(connection_.close_reason, "no-reconnect: maintenance");
}

// A code no close frame may carry would leave the socket open (websocketpp
// refuses it) with the session closed (found by service_batch_fuzzer).
TEST_F(SessionTest, DisconnectOrderWithAnUnsendableCodeClosesWith4003) {
  for (const uint32_t code : {0u, 999u, 1005u, 1006u, 2000u, 5000u, 70003u}) {
    Reset(SessionOptions{});
    connection_.close_code = 0;
    GoLive();
    parley::v1::DisconnectOrder order;
    order.set_close_code(code);
    order.set_reason("maintenance");
    session_->OnDisconnect(order);
    EXPECT_EQ(connection_.close_code, kCloseOperator) << code;
  }
}

TEST_F(SessionTest, ClientCloseTellsServiceOnce) {
  GoLive();
  upstream_.events.clear();
  session_->OnConnectionClosed("client closed 1000");
  session_->OnConnectionClosed("client closed 1000");
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_EQ(upstream_.events[0].close().reason(), "client closed 1000");
}

TEST_F(SessionTest, ShutdownClosesWithGivenCodeAndTellsService) {
  GoLive();
  upstream_.events.clear();
  session_->Shutdown(kCloseGoingAway, "going away");
  EXPECT_EQ(connection_.close_code, kCloseGoingAway);
  EXPECT_EQ(connection_.close_reason, "going away");
  ASSERT_THAT(upstream_.events, SizeIs(1));
  EXPECT_TRUE(upstream_.events[0].has_close());
  session_->OnConnectionClosed("closed");
  EXPECT_THAT(upstream_.events, SizeIs(1));
}

TEST_F(SessionTest, StaleLinkDownIsIgnored) {
  GoLive();
  upstream_.generation = 2;
  session_->OnLinkUp(2);
  session_->OnLinkDown(1);
  upstream_.events.clear();
  session_->OnClientMessage(SendJson("c5"), false);
  EXPECT_THAT(upstream_.SendIds(), ElementsAre("c5"));
}

TEST_F(SessionTest, ArbitraryInputNeverCrashesAndOnlyErrorsOrCloses) {
  std::mt19937 rng(42);
  const std::vector<std::string> seeds = {
      R"({"send":{"clientMsgId":"c","to":{"user":"b"},"text":"t"}})",
      R"({"sync":{"afterSeq":"1","limit":5}})",
      R"({"read":{"conversation":"d:a:b","seq":"2"}})",
      R"({"typing":{"to":{"group":"g"}}})",
      R"({"hello":{"token":"t"}})",
      R"({"ping":{"nonce":"n"}})"};
  for (Encoding encoding : {Encoding::kJson, Encoding::kBinary}) {
    for (int round = 0; round < 300; ++round) {
      connection_ = FakeConnection();
      upstream_.events.clear();
      SessionOptions options;
      options.rate_limit_burst = 1e9;
      options.abuse_error_burst = 1e9;
      Reset(options, encoding);
      GoLive();
      for (int i = 0; i < 20; ++i) {
        std::string payload = seeds[rng() % seeds.size()];
        if (encoding == Encoding::kBinary) {
          ClientFrame f;
          (void)DecodeFrame(Encoding::kJson, payload, &f);
          payload = EncodeFrame(Encoding::kBinary, f);
        }
        // Flip, cut or splice random bytes.
        const int edits = static_cast<int>(rng() % 4);
        for (int e = 0; e < edits && !payload.empty(); ++e) {
          const size_t at = rng() % payload.size();
          switch (rng() % 3) {
            case 0:
              payload[at] = static_cast<char>(rng());
              break;
            case 1:
              payload.resize(at);
              break;
            default:
              payload.insert(at, 1, static_cast<char>(rng()));
              break;
          }
        }
        session_->OnClientMessage(payload, encoding == Encoding::kBinary);
      }
      // Whatever came back decodes, and is an error, pong, welcome or close.
      for (const std::string& sent : connection_.sent) {
        ServerFrame f;
        ASSERT_TRUE(DecodeFrame(encoding, sent, &f).ok());
        EXPECT_TRUE(f.has_error() || f.has_pong() || f.has_welcome())
            << f.DebugString();
      }
      // Anything forwarded upstream is a well-formed non-hello frame.
      for (const auto& e : upstream_.events) {
        if (!e.has_frame()) continue;
        EXPECT_FALSE(e.frame().frame().has_hello());
        EXPECT_NE(e.frame().frame().frame_case(), ClientFrame::FRAME_NOT_SET);
      }
    }
  }
}

TEST_F(SessionTest, SharedFrameIsEncodedOncePerEncoding) {
  OutboundFrame frame(MessageWith(3));
  const std::string& a = frame.Encoded(Encoding::kJson);
  const std::string& b = frame.Encoded(Encoding::kJson);
  EXPECT_EQ(&a, &b);
  ServerFrame decoded;
  ASSERT_TRUE(
      DecodeFrame(Encoding::kBinary, frame.Encoded(Encoding::kBinary), &decoded)
          .ok());
  EXPECT_EQ(decoded.message().inbox_seq(), 3u);
}

}  // namespace
}  // namespace parley::gateway
