// UpstreamLink against an in-process FakeGatewayLink on port 0: the hello,
// routing, batching, reconnect with re-announcement and re-send, and the
// flush on shutdown.
#include "gateway/upstream_link.h"

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/frame_codec.h"
#include "common/metrics.h"
#include "gateway/session.h"
#include "gateway/testing/fake_gateway_link.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

using parley::v1::ClientFrame;
using parley::v1::GatewayEvent;
using parley::v1::ServerFrame;
using testing::FakeGatewayLink;

// Polls `done` until it holds; for state that has no event to wait on.
bool Eventually(const std::function<bool()>& done,
                absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// Runs tasks in order on one thread: a stand-in for a connection's strand.
// ConnectParams with a ?token= (and ?device=, ?inboxSeq= when given).
ConnectParams WithToken(std::string token, std::string device,
                        std::optional<uint64_t> inbox_seq = std::nullopt) {
  ConnectParams params;
  params.token = std::move(token);
  params.device = std::move(device);
  params.inbox_seq = inbox_seq;
  return params;
}

class Executor final {
 public:
  Executor() : thread_([this] { Run(); }) {}
  ~Executor() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
  void Post(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    if (!stop_) tasks_.push_back(std::move(fn));
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> fn;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](Executor* e) { return e->stop_ || !e->tasks_.empty(); }, this));
        if (stop_) return;
        fn = std::move(tasks_.front());
        tasks_.pop_front();
      }
      fn();
    }
  }
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::thread thread_;
};

class RecordingConnection final : public Connection {
 public:
  void Send(const std::string& frame) noexcept override {
    ServerFrame f;
    EXPECT_TRUE(DecodeFrame(Encoding::kJson, frame, &f).ok());
    absl::MutexLock lock(&mu_);
    frames_.push_back(f);
  }
  void Close(uint16_t code, absl::string_view) noexcept override {
    absl::MutexLock lock(&mu_);
    close_code_ = code;
  }
  size_t BufferedAmount() const noexcept override { return 0; }

  bool WaitFor(const std::function<bool(const std::vector<ServerFrame>&)>& p) {
    return Eventually([&] {
      absl::MutexLock lock(&mu_);
      return p(frames_);
    });
  }
  int close_code() {
    absl::MutexLock lock(&mu_);
    return close_code_;
  }

 private:
  absl::Mutex mu_;
  std::vector<ServerFrame> frames_;
  int close_code_ = 0;
};

class TestHandle final : public SessionHandle {
 public:
  TestHandle(Executor* executor, Session* session)
      : executor_(executor), session_(session) {}
  void Post(std::function<void(Session&)> fn) override {
    executor_->Post([this, fn = std::move(fn)] { fn(*session_); });
  }

 private:
  Executor* executor_;
  Session* session_;
};

// A session wired to the link the way ws_server wires a connection.
class TestClient {
 public:
  TestClient(UpstreamLink* link, const std::string& id) : link_(link), id_(id) {
    session_ = std::make_unique<Session>(SessionOptions{}, id, Encoding::kJson,
                                         "127.0.0.1:1", &connection_, link,
                                         [] { return absl::Now(); });
    link->Attach(id, std::make_shared<TestHandle>(&executor_, session_.get()));
  }
  ~TestClient() { link_->Detach(id_); }

  void Run(std::function<void(Session&)> fn) {
    executor_.Post([this, fn = std::move(fn)] { fn(*session_); });
  }
  void SendText(const std::string& json) {
    Run([json](Session& s) { s.OnClientMessage(json, false); });
  }
  RecordingConnection& connection() { return connection_; }

 private:
  UpstreamLink* link_;
  std::string id_;
  RecordingConnection connection_;
  std::unique_ptr<Session> session_;
  Executor executor_;  // Destroyed first: no task runs on a dead session.
};

std::string SendJson(const std::string& id, const std::string& text) {
  ClientFrame f;
  f.mutable_send()->set_client_msg_id(id);
  f.mutable_send()->mutable_to()->set_user("bob");
  f.mutable_send()->set_text(text);
  return EncodeFrame(Encoding::kJson, f);
}

bool HasWelcome(const std::vector<ServerFrame>& frames) {
  for (const auto& f : frames) {
    if (f.has_welcome()) return true;
  }
  return false;
}

class UpstreamLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.service_address = fake_.Start();
    options_.gateway_id = "gw-test";
    options_.backoff_initial = std::chrono::milliseconds(20);
    options_.backoff_max = std::chrono::milliseconds(200);
    link_ = std::make_unique<UpstreamLink>(options_, registry_);
    link_->Start();
    ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
  }
  void TearDown() override {
    link_->Shutdown(absl::Seconds(2));
    fake_.Stop();
  }

  FakeGatewayLink fake_;
  UpstreamLinkOptions options_;
  Registry registry_;
  std::unique_ptr<UpstreamLink> link_;
};

TEST_F(UpstreamLinkTest, LinkHelloIsFirstAndAcceptedSessionGetsWelcome) {
  TestClient alice(link_.get(), "s-alice");
  alice.Run([](Session& s) { s.Start(WithToken("ok:alice", "phone")); });
  ASSERT_TRUE(alice.connection().WaitFor(HasWelcome));
  const std::vector<GatewayEvent> events = fake_.Events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].hello().gateway_id(), "gw-test");
  EXPECT_EQ(events[0].hello().stream_index(), 0u);
  EXPECT_EQ(events[1].open().session_id(), "s-alice");
  EXPECT_EQ(events[1].open().device(), "phone");
}

TEST_F(UpstreamLinkTest, DeliveryReachesOnlyTheNamedSessions) {
  TestClient alice(link_.get(), "s-alice");
  TestClient bob(link_.get(), "s-bob");
  alice.Run([](Session& s) { s.Start(WithToken("ok:alice", "")); });
  bob.Run([](Session& s) { s.Start(WithToken("ok:bob", "")); });
  ASSERT_TRUE(alice.connection().WaitFor(HasWelcome));
  ASSERT_TRUE(bob.connection().WaitFor(HasWelcome));
  alice.SendText(SendJson("c1", "hello bob"));
  ASSERT_TRUE(bob.connection().WaitFor([](const auto& frames) {
    for (const auto& f : frames) {
      if (f.has_message()) return f.message().text() == "hello bob";
    }
    return false;
  }));
  ASSERT_TRUE(alice.connection().WaitFor(
      [](const auto& frames) { return frames.back().has_ack(); }));
  alice.connection().WaitFor([](const auto& frames) {
    for (const auto& f : frames) EXPECT_FALSE(f.has_message());
    return true;
  });
}

// A Delivery with inbox_seqs gives each named session its own; a session the
// gateway no longer has does not shift the others' seqs.
TEST_F(UpstreamLinkTest, EachSessionGetsItsOwnInboxSeqFromADelivery) {
  TestClient alice(link_.get(), "s-alice");
  alice.Run([](Session& s) { s.Start(WithToken("ok:alice", "")); });
  ASSERT_TRUE(alice.connection().WaitFor(HasWelcome));
  parley::v1::ServiceEvent event;
  parley::v1::Delivery* delivery = event.mutable_delivery();
  delivery->add_session_ids("s-gone");
  delivery->add_inbox_seqs(5);
  delivery->add_session_ids("s-alice");
  delivery->add_inbox_seqs(7);
  delivery->mutable_frame()->mutable_message()->set_text("to the team");
  ASSERT_TRUE(fake_.Push("s-alice", event));
  ServerFrame got;
  ASSERT_TRUE(alice.connection().WaitFor([&](const auto& frames) {
    if (!frames.back().has_message()) return false;
    got = frames.back();
    return true;
  }));
  EXPECT_EQ(got.message().inbox_seq(), 7u);
  EXPECT_EQ(got.message().text(), "to the team");
}

// A frame JSON cannot carry (a Timestamp out of range) would reach a client
// cut off mid-frame; it is dropped (a case found by service_batch_fuzzer).
TEST_F(UpstreamLinkTest, DeliveryThatCannotBeEncodedIsDropped) {
  TestClient alice(link_.get(), "s-alice");
  alice.Run([](Session& s) { s.Start(WithToken("ok:alice", "")); });
  ASSERT_TRUE(alice.connection().WaitFor(HasWelcome));
  parley::v1::ServiceEvent bad;
  bad.mutable_delivery()->add_session_ids("s-alice");
  parley::v1::Message* message =
      bad.mutable_delivery()->mutable_frame()->mutable_message();
  message->set_text("cut off");
  message->mutable_sent_at()->set_nanos(1767225600);
  ASSERT_TRUE(fake_.Push("s-alice", bad));
  parley::v1::ServiceEvent good;
  good.mutable_delivery()->add_session_ids("s-alice");
  good.mutable_delivery()->mutable_frame()->mutable_message()->set_text(
      "after");
  ASSERT_TRUE(fake_.Push("s-alice", good));
  ASSERT_TRUE(alice.connection().WaitFor([](const auto& frames) {
    return frames.back().message().text() == "after";
  }));
  alice.connection().WaitFor([](const auto& frames) {
    for (const auto& f : frames) EXPECT_NE(f.message().text(), "cut off");
    return true;
  });
}

TEST_F(UpstreamLinkTest, RejectedSessionIsClosedWithMappedCode) {
  TestClient eve(link_.get(), "s-eve");
  eve.Run([](Session& s) { s.Start(WithToken("forged", "")); });
  ASSERT_TRUE(Eventually([&] { return eve.connection().close_code() != 0; }));
  EXPECT_EQ(eve.connection().close_code(), kCloseUnauthorized);
}

TEST_F(UpstreamLinkTest, EventsQueuedDuringAWriteGoOutBatched) {
  constexpr int kFrames = 3000;
  std::optional<uint64_t> generation = link_->Open([] {
    parley::v1::SessionOpen open;
    open.set_session_id("s-load");
    open.set_token("ok:load");
    return open;
  }());
  ASSERT_TRUE(generation.has_value());
  for (int i = 0; i < kFrames; ++i) {
    parley::v1::SessionFrame frame;
    frame.set_session_id("s-load");
    frame.mutable_frame()->mutable_read()->set_conversation("d:a:b");
    frame.mutable_frame()->mutable_read()->set_seq(i + 1);
    ASSERT_TRUE(link_->Frame(*generation, std::move(frame)));
  }
  ASSERT_TRUE(fake_.WaitFor([](const std::vector<GatewayEvent>& e) {
    return e.size() >= 2 + kFrames;
  }));
  // In order, and fewer writes than frames. Without batching there would be
  // exactly one write per frame; how many share a write depends on how fast
  // the writer runs against this loop (7-10 per write measured, both idle
  // and under a full parallel test run), so the bound is loose.
  const auto events = fake_.Events();
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_EQ(events[2 + i].frame().frame().read().seq(),
              static_cast<uint64_t>(i + 1));
  }
  EXPECT_LT(fake_.batches(), kFrames / 2);
}

TEST_F(UpstreamLinkTest, StreamBreakReannouncesAndResendsUnackedSends) {
  TestClient alice(link_.get(), "s-alice");
  TestClient bob(link_.get(), "s-bob");
  alice.Run([](Session& s) { s.Start(WithToken("ok:alice", "")); });
  bob.Run([](Session& s) { s.Start(WithToken("ok:bob", "")); });
  ASSERT_TRUE(alice.connection().WaitFor(HasWelcome));
  ASSERT_TRUE(bob.connection().WaitFor(HasWelcome));
  alice.SendText(SendJson("c1", "acked"));
  ASSERT_TRUE(bob.connection().WaitFor(
      [](const auto& frames) { return frames.back().has_message(); }));
  // "hold..." is never acked by the fake: the gateway must re-send it.
  alice.SendText(SendJson("c2", "hold me"));
  ASSERT_TRUE(fake_.WaitFor([](const std::vector<GatewayEvent>& events) {
    return events.back().has_frame() &&
           events.back().frame().frame().send().client_msg_id() == "c2";
  }));
  const size_t before = fake_.Events().size();

  fake_.BreakStreams();
  ASSERT_TRUE(fake_.WaitFor([&](const std::vector<GatewayEvent>& events) {
    int reannounced = 0;
    bool resent = false;
    for (size_t i = before; i < events.size(); ++i) {
      if (events[i].has_open() && events[i].open().reannounce()) ++reannounced;
      if (events[i].has_frame() &&
          events[i].frame().frame().send().client_msg_id() == "c2") {
        resent = true;
      }
    }
    return reannounced == 2 && resent;
  }));
  const auto events = fake_.Events();
  EXPECT_TRUE(events[before].has_hello());
  for (size_t i = before; i < events.size(); ++i) {
    if (!events[i].has_open()) continue;
    // Bob got message inbox_seq 1; Alice's own inbox head was 0 at accept.
    if (events[i].open().session_id() == "s-bob") {
      EXPECT_EQ(events[i].open().resume_after(), 1u);
    }
  }
  // c1 was acked: never re-sent.
  for (size_t i = before; i < events.size(); ++i) {
    if (events[i].has_frame()) {
      EXPECT_NE(events[i].frame().frame().send().client_msg_id(), "c1");
    }
  }
  EXPECT_EQ(alice.connection().close_code(), 0);
  EXPECT_EQ(bob.connection().close_code(), 0);
  EXPECT_EQ(registry_
                .GetCounter("parley_gateway_upstream_reconnects_total", "",
                            {{"replica", options_.service_address}})
                .Value(),
            1u);
}

TEST_F(UpstreamLinkTest, ReconnectsOnceTheServiceStopsRefusing) {
  fake_.SetRefuse(true);
  fake_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return fake_.streams_opened() >= 3; }));
  EXPECT_FALSE(link_->AllStreamsUp());
  fake_.SetRefuse(false);
  ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
}

TEST_F(UpstreamLinkTest, BackoffGrowsBetweenRefusedAttempts) {
  fake_.SetRefuse(true);
  const int before = fake_.streams_opened();
  fake_.BreakStreams();
  absl::SleepFor(absl::Milliseconds(600));
  // 20, 40, 80, 160, 200 ms (+/- 20%) fit at most ~6 attempts in 600 ms;
  // without backoff there would be hundreds.
  const int attempts = fake_.streams_opened() - before;
  EXPECT_GE(attempts, 2);
  EXPECT_LE(attempts, 8);
  fake_.SetRefuse(false);
}

TEST_F(UpstreamLinkTest, QuietStreamCountsAsUpAfterGrace) {
  fake_.SetSendInitialMetadata(false);
  fake_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return fake_.streams_opened() >= 2; }));
  ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
  TestClient alice(link_.get(), "s-alice");
  alice.Run([](Session& s) { s.Start(WithToken("ok:alice", "")); });
  ASSERT_TRUE(alice.connection().WaitFor(HasWelcome));
}

TEST(UpstreamLinkStreamsTest, BroadcastReachesTheSessionsOfItsOwnStream) {
  FakeGatewayLink fake;
  UpstreamLinkOptions options;
  options.service_address = fake.Start();
  options.streams = 2;
  Registry registry;
  UpstreamLink link(options, registry);
  link.Start("gw-2");
  ASSERT_TRUE(Eventually([&] { return link.AllStreamsUp(); }));
  // Placement hashes over streams named by the fake's random port: with 16
  // sessions, all on one of two streams has odds of 2^-15.
  constexpr int kSessions = 16;
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < kSessions; ++i) {
    const std::string user = absl::StrCat("u", i);
    clients.push_back(std::make_unique<TestClient>(&link, "s-" + user));
    clients.back()->Run(
        [user](Session& s) { s.Start(WithToken("ok:" + user, "")); });
  }
  for (auto& c : clients) ASSERT_TRUE(c->connection().WaitFor(HasWelcome));
  // Both streams carry sessions, and each stream said hello with its index.
  std::set<uint32_t> indexes;
  for (const auto& e : fake.Events()) {
    if (e.has_hello()) indexes.insert(e.hello().stream_index());
  }
  EXPECT_EQ(indexes, (std::set<uint32_t>{0, 1}));

  // The service sends one broadcast per stream; each session gets one.
  parley::v1::ServiceEvent broadcast;
  broadcast.mutable_broadcast()
      ->mutable_frame()
      ->mutable_announcement()
      ->set_text("maintenance at noon");
  ASSERT_TRUE(fake.Push("s-u0", broadcast));
  // Find a session on the other stream.
  const int u0_stream = fake.StreamIndexOf("s-u0");
  std::string other;
  for (int i = 1; i < kSessions && other.empty(); ++i) {
    const std::string id = absl::StrCat("s-u", i);
    if (fake.StreamIndexOf(id) != u0_stream) other = id;
  }
  ASSERT_FALSE(other.empty());
  ASSERT_TRUE(fake.Push(other, broadcast));
  // A marker behind the broadcasts on each session's own stream: once it
  // is in, every broadcast that stream carried is in too.
  for (int i = 0; i < kSessions; ++i) {
    const std::string id = absl::StrCat("s-u", i);
    parley::v1::ServiceEvent marker;
    marker.mutable_delivery()->add_session_ids(id);
    marker.mutable_delivery()->mutable_frame()->mutable_pong()->set_nonce("m");
    ASSERT_TRUE(fake.Push(id, marker));
  }
  for (auto& c : clients) {
    ASSERT_TRUE(c->connection().WaitFor(
        [](const auto& frames) { return frames.back().has_pong(); }));
    c->connection().WaitFor([](const auto& frames) {
      int n = 0;
      for (const auto& f : frames) n += f.has_announcement();
      EXPECT_EQ(n, 1);
      return true;
    });
  }
  clients.clear();
  link.Shutdown(absl::Seconds(2));
  fake.Stop();
}

TEST_F(UpstreamLinkTest, ShutdownFlushesQueuedEvents) {
  constexpr int kCloses = 500;
  for (int i = 0; i < kCloses; ++i) {
    parley::v1::SessionClose close;
    close.set_session_id(absl::StrCat("s", i));
    link_->Close(std::move(close));
  }
  link_->Shutdown(absl::Seconds(5));
  const auto events = fake_.Events();
  int closes = 0;
  for (const auto& e : events) closes += e.has_close();
  EXPECT_EQ(closes, kCloses);
  // Nothing is accepted after shutdown.
  parley::v1::SessionOpen open;
  open.set_session_id("late");
  EXPECT_FALSE(link_->Open(open).has_value());
}

}  // namespace
}  // namespace parley::gateway
