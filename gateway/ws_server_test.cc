// WsServer with real sockets on port 0, a real UpstreamLink, and an
// in-process FakeGatewayLink as the service. Clients are RawWsClient (written
// from RFC 6455, able to misbehave).
#include "gateway/ws_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/frame_codec.h"
#include "common/metrics.h"
#include "gateway/testing/fake_gateway_link.h"
#include "gateway/testing/raw_ws_client.h"
#include "gateway/upstream_link.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

using parley::v1::ServerFrame;
using testing::FakeGatewayLink;
using ::testing::HasSubstr;
using testing::RawWsClient;

bool Eventually(const std::function<bool()>& done,
                absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// The server-side socket of a loopback connection, found among this
// process's descriptors by its two ports.
int FindAcceptedFd(int server_port, int client_port) {
  DIR* dir = opendir("/proc/self/fd");
  int found = -1;
  while (dirent* entry = readdir(dir)) {
    int fd = 0;
    if (!absl::SimpleAtoi(entry->d_name, &fd)) continue;
    sockaddr_in local{}, peer{};
    socklen_t len = sizeof(local);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
        local.sin_family != AF_INET) {
      continue;
    }
    len = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
      continue;
    }
    if (ntohs(local.sin_port) == server_port &&
        ntohs(peer.sin_port) == client_port) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

int NoDelay(int fd) {
  int value = -1;
  socklen_t len = sizeof(value);
  getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &len);
  return value;
}

ServerFrame Decode(const RawWsClient::Frame& frame) {
  ServerFrame out;
  EXPECT_TRUE(
      DecodeFrame(frame.opcode == 0x2 ? Encoding::kBinary : Encoding::kJson,
                  frame.payload, &out)
          .ok())
      << frame.payload;
  return out;
}

// Reads frames until a data frame arrives; returns it decoded.
ServerFrame ReadServerFrame(RawWsClient& client) {
  while (true) {
    absl::StatusOr<RawWsClient::Frame> frame = client.ReadFrame();
    if (!frame.ok()) {
      ADD_FAILURE() << frame.status();
      return ServerFrame();
    }
    if (frame->opcode == 0x1 || frame->opcode == 0x2) return Decode(*frame);
    if (frame->opcode == 0x8) {
      ADD_FAILURE() << "closed " << frame->close_code() << " "
                    << frame->close_reason();
      return ServerFrame();
    }
  }
}

class WsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    link_options_.service_address = fake_.Start();
    link_options_.gateway_id = "gw-test";
    link_options_.backoff_initial = std::chrono::milliseconds(20);
    link_options_.backoff_max = std::chrono::milliseconds(200);
    link_ = std::make_unique<UpstreamLink>(link_options_, registry_);
    link_->Start();
    ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
    options_.listen_address = "127.0.0.1:0";
    options_.io_threads = 2;
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Drain(absl::Now() + absl::Seconds(2));
    link_->Shutdown(absl::Seconds(2));
    fake_.Stop();
  }

  void StartServer() {
    server_ = std::make_unique<WsServer>(options_, link_.get(), registry_);
    absl::StatusOr<std::string> address = server_->Start();
    ASSERT_TRUE(address.ok()) << address.status();
    ASSERT_TRUE(
        absl::SimpleAtoi(address->substr(address->rfind(':') + 1), &port_));
  }

  uint64_t Counter(const std::string& name, const Labels& labels = {}) {
    return registry_.GetCounter(name, "", labels).Value();
  }

  // Opens a live session for `user` (token in the query) and reads Welcome.
  void OpenLive(RawWsClient& client, const std::string& user) {
    ASSERT_TRUE(client.Open(port_, "/?token=ok:" + user).ok());
    ServerFrame welcome = ReadServerFrame(client);
    ASSERT_TRUE(welcome.has_welcome()) << welcome.DebugString();
    ASSERT_EQ(welcome.welcome().user_id(), user);
  }

  FakeGatewayLink fake_;
  Registry registry_;
  UpstreamLinkOptions link_options_;
  std::unique_ptr<UpstreamLink> link_;
  WsServerOptions options_;
  std::unique_ptr<WsServer> server_;
  int port_ = 0;
};

TEST_F(WsServerTest, NodelayIsSetOnTheAcceptedSocket) {
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Open(port_, "/").ok());
  const int accepted = FindAcceptedFd(port_, client.local_port());
  ASSERT_GE(accepted, 0);
  EXPECT_EQ(NoDelay(accepted), 1);
  // The check can tell: the client's socket keeps the default.
  EXPECT_EQ(NoDelay(client.fd()), 0);
}

TEST_F(WsServerTest,
       SilentPeersAreDroppedAtHandshakeDeadlineWhileOthersConnect) {
  options_.handshake_timeout = std::chrono::milliseconds(500);
  StartServer();
  constexpr int kSilent = 1000;
  std::vector<std::unique_ptr<RawWsClient>> silent;
  const absl::Time opened = absl::Now();
  for (int i = 0; i < kSilent; ++i) {
    silent.push_back(std::make_unique<RawWsClient>());
    ASSERT_TRUE(silent.back()->Connect(port_).ok());
  }
  // Half a request.
  ASSERT_TRUE(silent.back()->SendRaw("GET / HTTP/1.1\r\nHost: 12").ok());

  // Meanwhile a well-behaved client is served at once: before the first
  // silent peer reaches its deadline (a server that waited on the silent
  // peers would serve it only after dropping them).
  RawWsClient good;
  OpenLive(good, "alice");
  EXPECT_EQ(Counter("parley_gateway_handshakes_total", {{"result", "timeout"}}),
            0u);

  for (auto& peer : silent) {
    ASSERT_TRUE(peer->WaitForEof(absl::Seconds(5)).ok());
  }
  const absl::Duration waited = absl::Now() - opened;
  EXPECT_GE(waited, absl::Milliseconds(450));
  EXPECT_LT(waited, absl::Seconds(3));
  EXPECT_TRUE(Eventually([&] {
    return Counter("parley_gateway_handshakes_total",
                   {{"result", "timeout"}}) >= kSilent;
  }));
  // The good client is still fine.
  ASSERT_TRUE(good.SendText(R"({"ping":{"nonce":"still"}})").ok());
  EXPECT_EQ(ReadServerFrame(good).pong().nonce(), "still");
}

TEST_F(WsServerTest, UnauthenticatedConnectionIsClosed4008AtAuthDeadline) {
  options_.auth_timeout = std::chrono::milliseconds(300);
  StartServer();
  RawWsClient client;
  const absl::Time start = absl::Now();
  ASSERT_TRUE(client.Open(port_, "/").ok());
  absl::StatusOr<RawWsClient::Frame> close = client.ReadUntilClose();
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->close_code(), 4008);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(280));
}

TEST_F(WsServerTest, HelloFrameAuthenticates) {
  options_.auth_timeout = std::chrono::milliseconds(300);
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Open(port_, "/").ok());
  ASSERT_TRUE(client.SendText(R"({"hello":{"token":"ok:carol"}})").ok());
  EXPECT_EQ(ReadServerFrame(client).welcome().user_id(), "carol");
  // Past the auth deadline, still open.
  absl::SleepFor(absl::Milliseconds(400));
  ASSERT_TRUE(client.SendText(R"({"ping":{"nonce":"p"}})").ok());
  EXPECT_TRUE(ReadServerFrame(client).has_pong());
}

TEST_F(WsServerTest, BadTokenIsClosed4001WithReason) {
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Open(port_, "/?token=forged").ok());
  absl::StatusOr<RawWsClient::Frame> close = client.ReadUntilClose();
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->close_code(), 4001);
  EXPECT_EQ(close->close_reason(), "token is malformed");
}

TEST_F(WsServerTest, DisallowedOriginGets403BeforeUpgrade) {
  options_.allowed_origins = {"https://chat.example"};
  StartServer();
  RawWsClient bad;
  ASSERT_TRUE(bad.Connect(port_).ok());
  auto response = bad.Handshake("/", {{"Origin", "https://evil.example"}});
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 403);
  RawWsClient good;
  EXPECT_TRUE(good.Open(port_, "/", {{"Origin", "https://chat.example"}}).ok());
  EXPECT_EQ(Counter("parley_gateway_handshakes_total", {{"result", "origin"}}),
            1u);
  // No Origin at all: a native client, not a browser on another site.
  RawWsClient native;
  EXPECT_TRUE(native.Open(port_, "/").ok());
}

TEST_F(WsServerTest, RequireOriginRefusesARequestWithoutOne) {
  options_.require_origin = true;
  StartServer();
  RawWsClient native;
  ASSERT_TRUE(native.Connect(port_).ok());
  auto response = native.Handshake("/", {});
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 403);
  RawWsClient browser;
  EXPECT_TRUE(
      browser.Open(port_, "/", {{"Origin", "https://any.example"}}).ok());
}

TEST_F(WsServerTest, OnlyVersion13IsAccepted) {
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Connect(port_).ok());
  auto response = client.Handshake("/", {{"Sec-WebSocket-Version", "8"}});
  ASSERT_TRUE(response.ok());
  EXPECT_NE(response->status, 101);
}

TEST_F(WsServerTest, OverMaxConnectionsGets503) {
  options_.max_connections = 2;
  StartServer();
  RawWsClient a, b, c;
  ASSERT_TRUE(a.Open(port_, "/").ok());
  ASSERT_TRUE(b.Open(port_, "/").ok());
  ASSERT_TRUE(c.Connect(port_).ok());
  auto response = c.Handshake("/");
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 503);
  // A slot frees up when one closes.
  a.Close();
  RawWsClient d;
  EXPECT_TRUE(Eventually([&] { return d.Open(port_, "/").ok(); }));
}

TEST_F(WsServerTest, OversizeMessageCloses1009) {
  options_.max_message_bytes = 1024;
  StartServer();
  RawWsClient client;
  OpenLive(client, "alice");
  ASSERT_TRUE(client.SendText(std::string(2000, 'x')).ok());
  absl::StatusOr<RawWsClient::Frame> close = client.ReadUntilClose();
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->close_code(), 1009);
}

TEST_F(WsServerTest, InvalidUtf8Closes1007) {
  StartServer();
  RawWsClient client;
  OpenLive(client, "alice");
  ASSERT_TRUE(client.SendText("{\"ping\":{\"nonce\":\"\xff\xfe\"}}").ok());
  absl::StatusOr<RawWsClient::Frame> close = client.ReadUntilClose();
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->close_code(), 1007);
}

// websocketpp checks that a text message ends on a whole code point only when
// it came in one frame; the gateway checks fragmented ones (a case found by
// gateway/fuzz/ws_frame_fuzzer).
TEST_F(WsServerTest, FragmentedTextEndingMidCodePointCloses1007) {
  StartServer();
  RawWsClient client;
  OpenLive(client, "alice");
  // Masked with the all-zero key, so the payload is sent as it is.
  const std::string first = "{\"ping\":{\"nonce\":\"caf\"}}";
  const std::string last = "\xc3";
  ASSERT_TRUE(client
                  .SendRaw(std::string("\x01") +
                           static_cast<char>(0x80 | first.size()) +
                           std::string(4, '\0') + first + "\x80" +
                           static_cast<char>(0x80 | last.size()) +
                           std::string(4, '\0') + last)
                  .ok());
  absl::StatusOr<RawWsClient::Frame> close = client.ReadUntilClose();
  ASSERT_TRUE(close.ok()) << close.status();
  EXPECT_EQ(close->close_code(), 1007);
}

TEST_F(WsServerTest, MalformedFramesGetErrorFramesAndConnectionStaysOpen) {
  StartServer();
  RawWsClient client;
  OpenLive(client, "alice");
  for (const char* bad : {"{not json", R"({"dance":{}})", "{}",
                          R"({"send":{"clientMsgId":"c1"}})"}) {
    ASSERT_TRUE(client.SendText(bad).ok());
    ServerFrame error = ReadServerFrame(client);
    ASSERT_TRUE(error.has_error()) << bad;
    EXPECT_FALSE(error.error().message().empty());
  }
  ASSERT_TRUE(client.SendText(R"({"ping":{"nonce":"alive"}})").ok());
  EXPECT_EQ(ReadServerFrame(client).pong().nonce(), "alive");
}

TEST_F(WsServerTest, AppPingAndWebSocketPingAreAnswered) {
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Open(port_, "/").ok());
  ASSERT_TRUE(client.SendText(R"({"ping":{"nonce":"n-1"}})").ok());
  EXPECT_EQ(ReadServerFrame(client).pong().nonce(), "n-1");
  ASSERT_TRUE(client.SendFrame(0x9, "hb").ok());
  absl::StatusOr<RawWsClient::Frame> pong = client.ReadFrame();
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(pong->opcode, 0xA);
  EXPECT_EQ(pong->payload, "hb");
}

TEST_F(WsServerTest, ServerPingsAndDropsAPeerThatNeverPongs) {
  options_.ping_interval = std::chrono::milliseconds(100);
  options_.pong_timeout = std::chrono::milliseconds(150);
  options_.close_timeout = std::chrono::milliseconds(200);
  StartServer();
  RawWsClient mute, polite;
  OpenLive(mute, "mute");
  OpenLive(polite, "polite");
  // The mute one is pinged, then closed, not before its pong was due.
  absl::Time pinged = absl::InfinitePast(), closed = absl::InfinitePast();
  std::string close_reason;
  std::thread mute_reader([&] {
    while (true) {
      auto frame = mute.ReadFrame(absl::Seconds(3));
      if (!frame.ok()) return;
      if (frame->opcode == 0x9 && pinged == absl::InfinitePast()) {
        pinged = absl::Now();
      }
      if (frame->opcode == 0x8) {
        closed = absl::Now();
        close_reason = frame->close_reason();
        return;
      }
    }
  });
  // The polite client answers pings for a while.
  const absl::Time until = absl::Now() + absl::Milliseconds(700);
  int pings = 0;
  while (absl::Now() < until) {
    auto frame = polite.ReadFrame(until - absl::Now());
    if (!frame.ok()) break;
    if (frame->opcode == 0x9) {
      ++pings;
      EXPECT_TRUE(polite.SendFrame(0xA, frame->payload).ok());
    }
  }
  EXPECT_GE(pings, 3);
  mute_reader.join();
  ASSERT_NE(pinged, absl::InfinitePast());
  ASSERT_NE(closed, absl::InfinitePast());
  EXPECT_EQ(close_reason, "pong timeout");
  EXPECT_GE(closed - pinged, absl::Milliseconds(140));
  EXPECT_EQ(Counter("parley_gateway_pong_timeouts_total"), 1u);
  ASSERT_TRUE(polite.SendText(R"({"ping":{"nonce":"ok"}})").ok());
  while (true) {
    auto frame = polite.ReadFrame();
    ASSERT_TRUE(frame.ok()) << frame.status();
    if (frame->opcode == 0x9) {
      ASSERT_TRUE(polite.SendFrame(0xA, frame->payload).ok());
      continue;
    }
    EXPECT_EQ(Decode(*frame).pong().nonce(), "ok");
    break;
  }
}

TEST_F(WsServerTest, HeartbeatSpreadsItsPingsOverTheInterval) {
  // 25 ticks of 80 ms per interval. Connections opened together fall in
  // consecutive slices, so their pings come a tick or more apart, not in
  // one burst at the same tick.
  options_.ping_interval = std::chrono::milliseconds(2000);
  options_.pong_timeout = std::chrono::milliseconds(10000);
  StartServer();
  constexpr int kClients = 4;
  RawWsClient clients[kClients];
  for (int i = 0; i < kClients; ++i) {
    ASSERT_NO_FATAL_FAILURE(OpenLive(clients[i], absl::StrCat("c", i)));
  }
  absl::Time pinged[kClients];
  std::vector<std::thread> readers;
  for (int i = 0; i < kClients; ++i) {
    pinged[i] = absl::InfinitePast();
    readers.emplace_back([&clients, &pinged, i] {
      const absl::Time until = absl::Now() + absl::Seconds(10);
      while (true) {
        auto frame = clients[i].ReadFrame(until - absl::Now());
        if (!frame.ok()) return;
        if (frame->opcode == 0x9) {
          pinged[i] = absl::Now();
          return;
        }
      }
    });
  }
  for (std::thread& reader : readers) reader.join();
  for (absl::Time at : pinged) ASSERT_NE(at, absl::InfinitePast());
  const auto [first, last] = std::minmax_element(pinged, pinged + kClients);
  EXPECT_GE(*last - *first, absl::Milliseconds(160));
}

TEST_F(WsServerTest, SlowConsumerIsClosed1013AndOutputStops) {
  options_.session.send_buffer_cap_bytes = 256 * 1024;
  options_.close_timeout = std::chrono::milliseconds(500);
  StartServer();
  RawWsClient slow;
  ASSERT_TRUE(slow.Connect(port_, /*rcvbuf=*/4096).ok());
  auto response = slow.Handshake("/?token=ok:slow");
  ASSERT_TRUE(response.ok() && response->status == 101);
  ASSERT_TRUE(ReadServerFrame(slow).has_welcome());
  const std::string session = fake_.WaitForSession("slow");
  ASSERT_FALSE(session.empty());

  // 400 x 32 KiB = 12.8 MB for a client that reads nothing.
  constexpr int kPushes = 400;
  parley::v1::ServiceEvent event;
  event.mutable_delivery()->add_session_ids(session);
  auto* message = event.mutable_delivery()->mutable_frame()->mutable_message();
  message->set_text(std::string(32 * 1024, 'z'));
  const uint64_t frames_before = Counter("parley_gateway_frames_out_total");
  for (int i = 0; i < kPushes; ++i) {
    message->set_inbox_seq(i + 1);
    if (!fake_.Push(session, event)) break;
  }
  ASSERT_TRUE(Eventually([&] {
    return Counter("parley_gateway_closes_total", {{"code", "1013"}}) == 1;
  }));
  // The gateway stopped writing to it: bounded by the cap, not the 12.8 MB.
  const uint64_t written =
      Counter("parley_gateway_frames_out_total") - frames_before;
  EXPECT_LT(written, static_cast<uint64_t>(kPushes) / 2);
  // The client, reading at last, finds the close after what was buffered.
  absl::StatusOr<RawWsClient::Frame> close =
      slow.ReadUntilClose(absl::Seconds(10));
  if (close.ok()) {
    EXPECT_EQ(close->close_code(), 1013);
    EXPECT_EQ(close->close_reason(), "slow consumer");
  }
}

TEST_F(WsServerTest, ProtoSubprotocolUsesBinaryFrames) {
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Connect(port_).ok());
  auto response = client.Handshake(
      "/?token=ok:bin", {{"Sec-WebSocket-Protocol", "parley.v1.proto"}});
  ASSERT_TRUE(response.ok());
  ASSERT_EQ(response->status, 101);
  EXPECT_EQ(response->headers["sec-websocket-protocol"], "parley.v1.proto");
  auto welcome = client.ReadFrame();
  ASSERT_TRUE(welcome.ok());
  EXPECT_EQ(welcome->opcode, 0x2);
  EXPECT_EQ(Decode(*welcome).welcome().user_id(), "bin");
}

// The gateway writes its frames' headers itself (ws_server.cc, Send): every
// length form of RFC 6455 (7-bit, 16-bit, 64-bit) in both encodings reaches
// a client that parses frames by the RFC, unaltered.
TEST_F(WsServerTest, FramesOfEveryLengthFormArriveIntact) {
  StartServer();
  for (const std::string subprotocol : {"json", "proto"}) {
    SCOPED_TRACE(subprotocol);
    RawWsClient client;
    ASSERT_TRUE(client.Connect(port_).ok());
    auto response = client.Handshake(
        "/?token=ok:" + subprotocol,
        {{"Sec-WebSocket-Protocol", "parley.v1." + subprotocol}});
    ASSERT_TRUE(response.ok() && response->status == 101);
    ASSERT_TRUE(ReadServerFrame(client).has_welcome());
    const std::string session = fake_.WaitForSession(subprotocol);
    ASSERT_FALSE(session.empty());
    uint64_t seq = 0;
    for (size_t size :
         {0, 1, 60, 100, 125, 126, 200, 65000, 65535, 65536, 70000, 300000}) {
      parley::v1::ServiceEvent event;
      event.mutable_delivery()->add_session_ids(session);
      auto* message =
          event.mutable_delivery()->mutable_frame()->mutable_message();
      message->set_text(std::string(size, static_cast<char>('a' + size % 26)));
      message->set_inbox_seq(++seq);
      ASSERT_TRUE(fake_.Push(session, event));
      ServerFrame got = ReadServerFrame(client);
      EXPECT_EQ(got.message().inbox_seq(), seq);
      EXPECT_EQ(got.message().text(), message->text()) << "size " << size;
    }
  }
}

TEST_F(WsServerTest, UnknownSubprotocolIsRefused) {
  StartServer();
  RawWsClient client;
  ASSERT_TRUE(client.Connect(port_).ok());
  auto response =
      client.Handshake("/", {{"Sec-WebSocket-Protocol", "chat.v9"}});
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 400);
}

TEST_F(WsServerTest, TwoUsersChatThroughTheService) {
  StartServer();
  RawWsClient alice, bob;
  OpenLive(alice, "alice");
  OpenLive(bob, "bob");
  ASSERT_TRUE(
      alice
          .SendText(
              R"({"send":{"clientMsgId":"a1","to":{"user":"bob"},"text":"hi bob"}})")
          .ok());
  ServerFrame ack = ReadServerFrame(alice);
  EXPECT_EQ(ack.ack().client_msg_id(), "a1");
  ServerFrame message = ReadServerFrame(bob);
  EXPECT_EQ(message.message().text(), "hi bob");
  EXPECT_EQ(message.message().from(), "alice");
}

TEST_F(WsServerTest, ServiceRestartKeepsSocketsOpenAndResendsUnacked) {
  StartServer();
  RawWsClient alice;
  OpenLive(alice, "alice");
  fake_.SetRefuse(true);
  fake_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return !link_->AllStreamsUp(); }));
  // Sent while the service is away: held, then re-sent.
  ASSERT_TRUE(
      alice
          .SendText(
              R"({"send":{"clientMsgId":"a9","to":{"user":"bob"},"text":"later"}})")
          .ok());
  fake_.SetRefuse(false);
  ServerFrame ack = ReadServerFrame(alice);
  EXPECT_EQ(ack.ack().client_msg_id(), "a9");
  EXPECT_EQ(Counter("parley_gateway_closes_total", {{"code", "1013"}}), 0u);
}

TEST_F(WsServerTest, RefusalCountersArePresentFromTheStartAndCount) {
  options_.session.rate_limit_per_second = 1;
  options_.session.rate_limit_burst = 2;
  StartServer();
  const std::string text = registry_.Render();
  for (const char* series :
       {"parley_gateway_frames_refused_total{reason=\"rate_limit\"} 0\n",
        "parley_gateway_frames_refused_total{reason=\"backpressure\"} 0\n",
        "parley_gateway_slow_consumer_closes_total 0\n"}) {
    EXPECT_THAT(text, HasSubstr(series));
  }
  RawWsClient alice;
  OpenLive(alice, "alice");
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(alice.SendText(R"({"ping":{"nonce":"x"}})").ok());
  }
  ASSERT_TRUE(Eventually([&] {
    return Counter("parley_gateway_frames_refused_total",
                   {{"reason", "rate_limit"}}) >= 2;
  }));
  EXPECT_EQ(Counter("parley_gateway_frames_refused_total",
                    {{"reason", "backpressure"}}),
            0u);
}

TEST_F(WsServerTest, HttpEndpointsAndStaticFiles) {
  const std::string root = ::testing::TempDir() + "/web";
  std::filesystem::create_directories(root + "/js");
  std::ofstream(root + "/index.html") << "<h1>parley</h1>";
  std::ofstream(root + "/js/app.js") << "console.log(1)";
  // Not the page's: its docs, its tests, hidden and unknown files.
  std::ofstream(root + "/README.md") << "# notes";
  std::ofstream(root + "/js/app.test.mjs") << "test()";
  std::ofstream(root + "/.env") << "SECRET=1";
  std::ofstream(root + "/dump.bin") << "x";
  options_.web_root = root;
  StartServer();
  auto health = RawWsClient::Get(port_, "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  auto ready = RawWsClient::Get(port_, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200);
  RawWsClient live;
  OpenLive(live, "alice");
  // Metrics are served on a listener of their own (main.cc), never here.
  auto metrics = RawWsClient::Get(port_, "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(metrics->status, 404);
  auto index = RawWsClient::Get(port_, "/");
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(index->body, "<h1>parley</h1>");
  EXPECT_THAT(index->headers["content-type"], HasSubstr("text/html"));
  auto js = RawWsClient::Get(port_, "/js/app.js");
  ASSERT_TRUE(js.ok());
  EXPECT_THAT(js->headers["content-type"], HasSubstr("javascript"));
  auto escape = RawWsClient::Get(port_, "/../BUILD.bazel");
  ASSERT_TRUE(escape.ok());
  EXPECT_EQ(escape->status, 404);
  for (const char* path :
       {"/README.md", "/js/app.test.mjs", "/.env", "/dump.bin"}) {
    auto refused = RawWsClient::Get(port_, path);
    ASSERT_TRUE(refused.ok());
    EXPECT_EQ(refused->status, 404) << path;
  }

  // Not ready while the upstream is down.
  fake_.SetRefuse(true);
  fake_.BreakStreams();
  ASSERT_TRUE(Eventually([&] {
    auto r = RawWsClient::Get(port_, "/readyz");
    return r.ok() && r->status == 503;
  }));
  fake_.SetRefuse(false);
}

TEST_F(WsServerTest, DrainClosesClientsWith1001AndStopsAccepting) {
  options_.close_timeout = std::chrono::milliseconds(300);
  StartServer();
  RawWsClient a, b;
  OpenLive(a, "alice");
  OpenLive(b, "bob");
  std::thread drain([&] { server_->Drain(absl::Now() + absl::Seconds(5)); });
  for (RawWsClient* c : {&a, &b}) {
    absl::StatusOr<RawWsClient::Frame> close = c->ReadUntilClose();
    ASSERT_TRUE(close.ok()) << close.status();
    EXPECT_EQ(close->close_code(), 1001);
    EXPECT_EQ(close->close_reason(), "going away");
  }
  drain.join();
  RawWsClient late;
  EXPECT_FALSE(late.Open(port_, "/").ok());
  // The service heard both sessions end.
  EXPECT_TRUE(fake_.WaitFor([](const auto& events) {
    int closes = 0;
    for (const auto& e : events) closes += e.has_close();
    return closes == 2;
  }));
}

}  // namespace
}  // namespace parley::gateway
