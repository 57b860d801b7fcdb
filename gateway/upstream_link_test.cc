// UpstreamLink against an in-process FakeGatewayLink on port 0: the hello,
// routing, batching, reconnect with re-announcement and re-send, and the
// flush on shutdown.
#include "gateway/upstream_link.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
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
using ::testing::ElementsAre;
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

// Two FakeGatewayLinks as two parley-service replicas behind one name that
// the test resolves (replicas.test:7400), so it can add and remove one.
class UpstreamLinkReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = fake_a_.Start();
    b_ = fake_b_.Start();
    options_.service_address = "replicas.test:7400";
    options_.gateway_id = "gw-test";
    options_.streams = 2;
    options_.resolve_interval = std::chrono::milliseconds(20);
    options_.backoff_initial = std::chrono::milliseconds(20);
    options_.backoff_max = std::chrono::milliseconds(100);
    SetResolved({a_, b_});
  }
  void TearDown() override {
    if (link_ != nullptr) link_->Shutdown(absl::Seconds(2));
    fake_a_.Stop();
    fake_b_.Stop();
  }

  void SetResolved(std::vector<std::string> addresses) {
    absl::MutexLock lock(&resolved_mu_);
    resolved_ = std::move(addresses);
  }
  void StartLink() {
    link_ = std::make_unique<UpstreamLink>(
        options_, registry_,
        [this](const std::string& address) {
          absl::MutexLock lock(&resolved_mu_);
          ++stubs_made_[address];
          return parley::v1::GatewayLink::NewStub(
              UpstreamLink::MakeChannel(options_, address));
        },
        [this](const ServiceAddress& entry)
            -> absl::StatusOr<std::vector<std::string>> {
          EXPECT_EQ(entry.text, "replicas.test:7400");
          absl::MutexLock lock(&resolved_mu_);
          return resolved_;
        });
    link_->Start();
    ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
  }
  // Starts `n` clients named s-<prefix><i> for users <prefix><i> and waits
  // for their Welcomes.
  void Connect(const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      const std::string user = absl::StrCat(prefix, i);
      clients_[user] = std::make_unique<TestClient>(link_.get(), "s-" + user);
      clients_[user]->Run(
          [user](Session& s) { s.Start(WithToken("ok:" + user, "")); });
    }
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(
          clients_[absl::StrCat(prefix, i)]->connection().WaitFor(HasWelcome));
    }
  }
  // Users whose session the link put on `replica`.
  std::vector<std::string> UsersOn(const std::string& replica) {
    std::vector<std::string> users;
    for (const auto& [user, client] : clients_) {
      if (link_->ReplicaOf("s-" + user) == replica) users.push_back(user);
    }
    return users;
  }
  int64_t StreamsUp(const std::string& replica) {
    return registry_
        .GetGauge("parley_gateway_upstream_streams_up", "",
                  {{"replica", replica}})
        .Value();
  }

  FakeGatewayLink fake_a_;
  FakeGatewayLink fake_b_;
  std::string a_;
  std::string b_;
  UpstreamLinkOptions options_;
  Registry registry_;
  absl::Mutex resolved_mu_;
  std::vector<std::string> resolved_ ABSL_GUARDED_BY(resolved_mu_);
  // Channels (stubs) the link made per replica address.
  std::map<std::string, int> stubs_made_ ABSL_GUARDED_BY(resolved_mu_);
  std::unique_ptr<UpstreamLink> link_;
  // After link_: destroyed first, each detaching from the link.
  std::map<std::string, std::unique_ptr<TestClient>> clients_;
};

bool OpenedOn(const FakeGatewayLink& fake, const std::string& session_id) {
  const std::vector<std::string> ids = fake.Sessions();
  return std::find(ids.begin(), ids.end(), session_id) != ids.end();
}

TEST_F(UpstreamLinkReplicasTest, SessionsSpreadOverEveryResolvedReplica) {
  StartLink();
  EXPECT_THAT(link_->Replicas(),
              ElementsAre(std::min(a_, b_), std::max(a_, b_)));
  // The gauges count a stream just after it is usable.
  EXPECT_TRUE(Eventually([&] { return StreamsUp(a_) == 2; }));
  EXPECT_TRUE(Eventually([&] { return StreamsUp(b_) == 2; }));
  Connect("u", 24);
  const std::vector<std::string> on_a = UsersOn(a_);
  const std::vector<std::string> on_b = UsersOn(b_);
  // 24 sessions over 4 streams: one replica with none has odds of 2^-23.
  EXPECT_FALSE(on_a.empty());
  EXPECT_FALSE(on_b.empty());
  EXPECT_EQ(on_a.size() + on_b.size(), 24u);
  for (const std::string& user : on_a)
    EXPECT_TRUE(OpenedOn(fake_a_, "s-" + user));
  for (const std::string& user : on_b)
    EXPECT_TRUE(OpenedOn(fake_b_, "s-" + user));
  // Each replica saw LinkHellos for its own stream indexes 0 and 1.
  for (FakeGatewayLink* fake : {&fake_a_, &fake_b_}) {
    std::set<uint32_t> indexes;
    for (const auto& e : fake->Events()) {
      if (e.has_hello()) indexes.insert(e.hello().stream_index());
    }
    EXPECT_EQ(indexes, (std::set<uint32_t>{0, 1}));
  }
}

TEST_F(UpstreamLinkReplicasTest, SessionsMoveToTheLiveReplicaWhenTheirsDies) {
  StartLink();
  Connect("u", 16);
  const std::vector<std::string> on_a = UsersOn(a_);
  ASSERT_FALSE(on_a.empty());
  ASSERT_FALSE(UsersOn(b_).empty());
  // An unacknowledged Send on A must be re-sent on B; an acked one must not.
  const std::string& mover = on_a.front();
  TestClient& client = *clients_[mover];
  client.SendText(SendJson("c1", "acked"));
  ASSERT_TRUE(client.connection().WaitFor(
      [](const auto& frames) { return frames.back().has_ack(); }));
  client.SendText(SendJson("c2", "hold me"));
  ASSERT_TRUE(fake_a_.WaitFor([](const std::vector<GatewayEvent>& events) {
    return events.back().has_frame() &&
           events.back().frame().frame().send().client_msg_id() == "c2";
  }));

  // Replica A dies and stays dead.
  fake_a_.SetRefuse(true);
  fake_a_.BreakStreams();
  ASSERT_TRUE(fake_b_.WaitFor([&](const std::vector<GatewayEvent>& events) {
    std::set<std::string> reannounced;
    bool resent = false;
    for (const auto& e : events) {
      if (e.has_open() && e.open().reannounce()) {
        reannounced.insert(e.open().session_id());
      }
      if (e.has_frame() && e.frame().session_id() == "s-" + mover &&
          e.frame().frame().send().client_msg_id() == "c2") {
        // Re-sent after the session re-announced on B.
        resent = reannounced.count("s-" + mover) > 0;
      }
    }
    for (const std::string& user : on_a) {
      if (reannounced.count("s-" + user) == 0) return false;
    }
    return resent;
  }));
  for (const auto& e : fake_b_.Events()) {
    EXPECT_FALSE(e.has_frame() &&
                 e.frame().frame().send().client_msg_id() == "c1");
    // Only A's sessions re-announce: B's own streams never went down.
    if (e.has_open() && e.open().reannounce()) {
      EXPECT_THAT(on_a, ::testing::Contains(e.open().session_id().substr(2)));
    }
  }
  for (const std::string& user : on_a) {
    EXPECT_EQ(link_->ReplicaOf("s-" + user), b_);
  }
  for (const auto& [user, c] : clients_) {
    EXPECT_EQ(c->connection().close_code(), 0) << user;
  }
  // Counted once the re-announcement is queued, which may be after B read
  // it.
  EXPECT_TRUE(Eventually([&] {
    return registry_
               .GetCounter("parley_gateway_upstream_sessions_moved_total", "",
                           {{"replica", b_}})
               .Value() == on_a.size();
  }));
  // A stream that carried none of the sessions may end a little later.
  EXPECT_TRUE(Eventually([&] { return StreamsUp(a_) == 0; }));
  EXPECT_TRUE(link_->Ready());
  EXPECT_FALSE(link_->AllStreamsUp());

  // A moved session keeps working on B: a message to it arrives. (The fake
  // delivers only to sessions it has accepted, and replays nothing, so the
  // message waits for that.)
  ASSERT_EQ(fake_b_.WaitForSession(mover), "s-" + mover);
  TestClient& sender =
      *clients_[UsersOn(b_).front() == mover ? UsersOn(b_).back()
                                             : UsersOn(b_).front()];
  ClientFrame to_mover;
  to_mover.mutable_send()->set_client_msg_id("c3");
  to_mover.mutable_send()->mutable_to()->set_user(mover);
  to_mover.mutable_send()->set_text("after the move");
  sender.SendText(EncodeFrame(Encoding::kJson, to_mover));
  ASSERT_TRUE(client.connection().WaitFor([](const auto& frames) {
    for (const auto& f : frames) {
      if (f.message().text() == "after the move") return true;
    }
    return false;
  }));
}

TEST_F(UpstreamLinkReplicasTest, MovedSessionsStayWhenTheirReplicaReturns) {
  StartLink();
  Connect("u", 16);
  const std::vector<std::string> on_a = UsersOn(a_);
  ASSERT_FALSE(on_a.empty());
  fake_a_.SetRefuse(true);
  fake_a_.BreakStreams();
  // Every moved session's re-announcement has reached B.
  ASSERT_TRUE(fake_b_.WaitFor([&](const std::vector<GatewayEvent>& events) {
    size_t reannounced = 0;
    for (const auto& e : events) {
      reannounced += e.has_open() && e.open().reannounce();
    }
    return reannounced == on_a.size();
  }));
  const size_t opens_on_b = fake_b_.Events().size();

  fake_a_.SetRefuse(false);
  ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
  // New sessions go to A again...
  Connect("v", 16);
  EXPECT_FALSE(UsersOn(a_).empty());
  // ...but none of the moved ones went back, nor re-announced anywhere.
  for (const std::string& user : on_a) {
    EXPECT_EQ(link_->ReplicaOf("s-" + user), b_);
    EXPECT_FALSE(OpenedOn(fake_a_, "s-" + user));
  }
  const std::vector<GatewayEvent> events = fake_b_.Events();
  for (size_t i = opens_on_b; i < events.size(); ++i) {
    EXPECT_FALSE(events[i].has_open() && events[i].open().reannounce());
  }
  // A frame from a moved session still goes to B.
  clients_[on_a.front()]->SendText(SendJson("c9", "still on b"));
  ASSERT_TRUE(fake_b_.WaitFor([](const std::vector<GatewayEvent>& e) {
    return e.back().has_frame() &&
           e.back().frame().frame().send().text() == "still on b";
  }));
}

TEST_F(UpstreamLinkReplicasTest, GenerationOnlyGrowsAcrossAMove) {
  StartLink();
  parley::v1::SessionOpen open;
  open.set_session_id("s-raw");
  open.set_token("ok:raw");
  const std::optional<uint64_t> first = link_->Open(open);
  ASSERT_TRUE(first.has_value());
  const std::string from = link_->ReplicaOf("s-raw");
  ASSERT_FALSE(from.empty());
  FakeGatewayLink& dying = from == a_ ? fake_a_ : fake_b_;
  FakeGatewayLink& other = from == a_ ? fake_b_ : fake_a_;
  dying.SetRefuse(true);
  dying.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return StreamsUp(from) == 0; }));

  parley::v1::SessionFrame frame;
  frame.set_session_id("s-raw");
  frame.mutable_frame()->mutable_read()->set_conversation("d:a:b");
  // The old generation is dead: nothing can overtake the re-announcement.
  EXPECT_FALSE(link_->Frame(*first, frame));
  open.set_reannounce(true);
  const std::optional<uint64_t> second = link_->Open(open);
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(*second, *first);
  EXPECT_NE(link_->ReplicaOf("s-raw"), from);
  EXPECT_FALSE(link_->Frame(*first, frame));
  EXPECT_TRUE(link_->Frame(*second, frame));
  ASSERT_TRUE(other.WaitFor(
      [](const std::vector<GatewayEvent>& e) { return e.back().has_frame(); }));
  // On the new replica the re-announcement comes before the frame.
  bool opened = false;
  for (const auto& e : other.Events()) {
    if (e.has_open() && e.open().session_id() == "s-raw") opened = true;
    if (e.has_frame() && e.frame().session_id() == "s-raw") {
      EXPECT_TRUE(opened);
    }
  }
  // Its old replica coming back neither moves it nor revives the old
  // generation.
  dying.SetRefuse(false);
  ASSERT_TRUE(Eventually([&] { return link_->AllStreamsUp(); }));
  EXPECT_NE(link_->ReplicaOf("s-raw"), from);
  EXPECT_FALSE(link_->Frame(*first, frame));
  EXPECT_TRUE(link_->Frame(*second, frame));
  link_->Detach("s-raw");
}

TEST_F(UpstreamLinkReplicasTest, ResolverAddsAndDropsReplicasWithoutRestart) {
  SetResolved({a_});
  StartLink();
  EXPECT_THAT(link_->Replicas(), ElementsAre(a_));
  Connect("u", 8);
  EXPECT_EQ(UsersOn(a_).size(), 8u);
  EXPECT_EQ(fake_b_.streams_opened(), 0);

  // A replica is added: the periodic resolve opens its streams and new
  // sessions spread onto it; existing ones stay.
  SetResolved({a_, b_});
  ASSERT_TRUE(Eventually([&] { return StreamsUp(b_) == 2; }));
  EXPECT_THAT(link_->Replicas(),
              ElementsAre(std::min(a_, b_), std::max(a_, b_)));
  Connect("v", 24);
  EXPECT_FALSE(UsersOn(b_).empty());
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(link_->ReplicaOf(absl::StrCat("s-u", i)), a_);
  }

  // A is removed from the name: its streams are not cut, but it gets no new
  // session...
  SetResolved({b_});
  ASSERT_TRUE(Eventually([&] { return link_->Replicas().size() == 1; }));
  EXPECT_THAT(link_->Replicas(), ElementsAre(b_));
  EXPECT_EQ(StreamsUp(a_), 2);
  Connect("w", 8);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(link_->ReplicaOf(absl::StrCat("s-w", i)), b_);
  }
  // ...and once its streams end its sessions move to B and it is not
  // reconnected.
  const std::vector<std::string> on_a = UsersOn(a_);
  ASSERT_FALSE(on_a.empty());
  const int opened = fake_a_.streams_opened();
  fake_a_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return UsersOn(a_).empty(); }));
  for (const auto& [user, c] : clients_) {
    EXPECT_EQ(c->connection().close_code(), 0) << user;
  }
  // Backoff is 20-100 ms: a reconnect would have happened in this time.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(fake_a_.streams_opened(), opened);
  EXPECT_EQ(StreamsUp(a_), 0);

  // Listed again, A gets a new channel (the old one was released) and its
  // streams back.
  SetResolved({a_, b_});
  ASSERT_TRUE(Eventually([&] { return StreamsUp(a_) == 2; }));
  absl::MutexLock lock(&resolved_mu_);
  EXPECT_EQ(stubs_made_[a_], 2);
  EXPECT_EQ(stubs_made_[b_], 1);
}

TEST_F(UpstreamLinkReplicasTest, ReadyWhileOneReplicaHasAllItsStreams) {
  StartLink();
  fake_a_.SetRefuse(true);
  fake_a_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return StreamsUp(a_) == 0; }));
  EXPECT_TRUE(link_->Ready());
  EXPECT_FALSE(link_->AllStreamsUp());
  fake_b_.SetRefuse(true);
  fake_b_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return StreamsUp(b_) == 0; }));
  EXPECT_FALSE(link_->Ready());
  // With no replica up a new session cannot open (the client gets 1013).
  TestClient late(link_.get(), "s-late");
  late.Run([](Session& s) { s.Start(WithToken("ok:late", "")); });
  ASSERT_TRUE(Eventually([&] { return late.connection().close_code() != 0; }));
  EXPECT_EQ(late.connection().close_code(), kCloseTryAgainLater);
  fake_a_.SetRefuse(false);
  ASSERT_TRUE(Eventually([&] { return link_->Ready(); }));
}

TEST_F(UpstreamLinkReplicasTest,
       SessionsWaitForTheirStreamWhenNoOtherReplicaIsUp) {
  StartLink();
  Connect("u", 16);
  const std::vector<std::string> on_a = UsersOn(a_);
  const std::vector<std::string> on_b = UsersOn(b_);
  ASSERT_FALSE(on_a.empty());
  ASSERT_FALSE(on_b.empty());
  fake_b_.SetRefuse(true);
  fake_b_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return UsersOn(b_).empty(); }));
  // Now A dies too while B is still down: A's sessions have nowhere to go.
  fake_a_.SetRefuse(true);
  fake_a_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return !link_->Ready(); }));
  // A comes back: every session re-announces there; no client was closed.
  const size_t before = fake_a_.Events().size();
  fake_a_.SetRefuse(false);
  ASSERT_TRUE(fake_a_.WaitFor([&](const std::vector<GatewayEvent>& events) {
    std::set<std::string> reannounced;
    for (size_t i = before; i < events.size(); ++i) {
      if (events[i].has_open() && events[i].open().reannounce()) {
        reannounced.insert(events[i].open().session_id());
      }
    }
    return reannounced.size() == 16;
  }));
  for (const auto& [user, c] : clients_) {
    EXPECT_EQ(c->connection().close_code(), 0) << user;
    EXPECT_EQ(link_->ReplicaOf("s-" + user), a_);
  }
}

TEST_F(UpstreamLinkReplicasTest, ReplicaComingUpFirstAdoptsStrandedSessions) {
  StartLink();
  Connect("u", 16);
  // B dies (its sessions move to A), then A dies too: nowhere to go.
  fake_b_.SetRefuse(true);
  fake_b_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return UsersOn(b_).empty(); }));
  fake_a_.SetRefuse(true);
  fake_a_.BreakStreams();
  ASSERT_TRUE(Eventually([&] { return StreamsUp(a_) == 0; }));
  // B comes back first: every session stranded on A re-announces on B
  // rather than wait for A.
  const size_t before = fake_b_.Events().size();
  fake_b_.SetRefuse(false);
  ASSERT_TRUE(fake_b_.WaitFor([&](const std::vector<GatewayEvent>& events) {
    std::set<std::string> reannounced;
    for (size_t i = before; i < events.size(); ++i) {
      if (events[i].has_open() && events[i].open().reannounce()) {
        reannounced.insert(events[i].open().session_id());
      }
    }
    return reannounced.size() == 16;
  }));
  for (const auto& [user, c] : clients_) {
    EXPECT_EQ(link_->ReplicaOf("s-" + user), b_) << user;
    EXPECT_EQ(c->connection().close_code(), 0) << user;
  }
}

TEST_F(UpstreamLinkReplicasTest, SessionStillOpeningMovesWithItsReplica) {
  StartLink();
  // Neither replica answers yet: the session stays opening on one of them.
  fake_a_.SetAutoReply(false);
  fake_b_.SetAutoReply(false);
  TestClient carol(link_.get(), "s-carol");
  carol.Run([](Session& s) { s.Start(WithToken("ok:carol", "")); });
  ASSERT_TRUE(Eventually([&] { return !link_->ReplicaOf("s-carol").empty(); }));
  const std::string from = link_->ReplicaOf("s-carol");
  FakeGatewayLink& dying = from == a_ ? fake_a_ : fake_b_;
  FakeGatewayLink& other = from == a_ ? fake_b_ : fake_a_;
  other.SetAutoReply(true);
  dying.SetRefuse(true);
  dying.BreakStreams();
  // It opens on the other replica (a first open, not a re-announcement)
  // and the client gets its Welcome; its socket was never closed.
  ASSERT_TRUE(carol.connection().WaitFor(HasWelcome));
  EXPECT_EQ(carol.connection().close_code(), 0);
  EXPECT_NE(link_->ReplicaOf("s-carol"), from);
  bool opened = false;
  for (const auto& e : other.Events()) {
    if (e.has_open() && e.open().session_id() == "s-carol") {
      EXPECT_FALSE(e.open().reannounce());
      opened = true;
    }
  }
  EXPECT_TRUE(opened);
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
