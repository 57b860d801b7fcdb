#include "service/nats_bus.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/nats_server_process.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Everything a connection received and the events it fired, for a test to
// wait on.
class Recorder {
 public:
  void Add(const std::string& data) {
    absl::MutexLock lock(&mu_);
    received_.push_back(data);
  }
  void AddEvent(Bus::Event event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }
  bool WaitForReceived(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return received_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10));
  }
  bool WaitForEvent(Bus::Event event, size_t n = 1) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t count = 0;
      for (Bus::Event e : events_) count += e == event ? 1 : 0;
      return count >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20));
  }
  std::vector<std::string> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> received_ ABSL_GUARDED_BY(mu_);
  std::vector<Bus::Event> events_ ABSL_GUARDED_BY(mu_);
};

class NatsBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsServerProcess>> server =
        NatsServerProcess::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  std::unique_ptr<NatsBus> Connect(const std::string& name, Recorder* events,
                                   int max_pending = 100000) {
    NatsBusOptions options;
    options.max_pending_messages = max_pending;
    options.servers = {server_->url()};
    options.name = name;
    options.reconnect_wait = absl::Milliseconds(50);
    absl::StatusOr<std::unique_ptr<NatsBus>> bus = NatsBus::Connect(options);
    EXPECT_TRUE(bus.ok()) << bus.status();
    if (!bus.ok()) return nullptr;
    (*bus)->SetEventHandler([events](Bus::Event e) { events->AddEvent(e); });
    return *std::move(bus);
  }

  std::unique_ptr<NatsServerProcess> server_;
};

TEST_F(NatsBusTest, APublishReachesOtherSubscribersInOrderButNotItsPublisher) {
  Recorder a_events, b_events, a_got, b_got;
  std::unique_ptr<NatsBus> a = Connect("a", &a_events);
  std::unique_ptr<NatsBus> b = Connect("b", &b_events);
  ASSERT_TRUE(a->Subscribe("t.>", [&](const Bus::Message& m) {
                 a_got.Add(m.data);
               }).ok());
  ASSERT_TRUE(b->Subscribe("t.>", [&](const Bus::Message& m) {
                 b_got.Add(m.subject + "=" + m.data);
               }).ok());
  a->Publish("t.x", "1");
  a->Publish("t.y", "2");
  a->Publish("u.x", "not subscribed");
  a->Publish("t.z", "3");
  ASSERT_TRUE(b_got.WaitForReceived(3));
  EXPECT_THAT(b_got.received(), ElementsAre("t.x=1", "t.y=2", "t.z=3"));
  // The publisher's own subscription saw none of it (no echo): a round trip
  // through b proves a's would have arrived by now.
  b->Publish("t.back", "from b");
  ASSERT_TRUE(a_got.WaitForReceived(1));
  EXPECT_THAT(a_got.received(), ElementsAre("from b"));
}

TEST_F(NatsBusTest, ARequestGathersTheRepliesOfEverySubscriber) {
  Recorder events;
  std::unique_ptr<NatsBus> a = Connect("a", &events);
  std::unique_ptr<NatsBus> b = Connect("b", &events);
  std::unique_ptr<NatsBus> c = Connect("c", &events);
  NatsBus* bp = b.get();
  NatsBus* cp = c.get();
  ASSERT_TRUE(b->Subscribe("q", [bp](const Bus::Message& m) {
                 bp->Reply(m.reply, "b:" + m.data);
               }).ok());
  ASSERT_TRUE(c->Subscribe("q", [cp](const Bus::Message& m) {
                 cp->Reply(m.reply, "c:" + m.data);
               }).ok());
  std::vector<std::string> answers = a->Request(
      "q", "ping", absl::Seconds(5),
      [](const std::vector<std::string>& got) { return got.size() >= 2; });
  EXPECT_THAT(answers, UnorderedElementsAre("b:ping", "c:ping"));
}

TEST_F(NatsBusTest,
       AfterTheServerIsKilledAndBackTheBusReconnectsAndResubscribes) {
  Recorder a_events, b_events, b_got;
  std::unique_ptr<NatsBus> a = Connect("a", &a_events);
  std::unique_ptr<NatsBus> b = Connect("b", &b_events);
  ASSERT_TRUE(b->Subscribe("t", [&](const Bus::Message& m) {
                 b_got.Add(m.data);
               }).ok());
  a->Publish("t", "before");
  ASSERT_TRUE(b_got.WaitForReceived(1));

  server_->Kill();
  ASSERT_TRUE(a_events.WaitForEvent(Bus::Event::kDisconnected));
  ASSERT_TRUE(b_events.WaitForEvent(Bus::Event::kDisconnected));
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_TRUE(a_events.WaitForEvent(Bus::Event::kReconnected));
  ASSERT_TRUE(b_events.WaitForEvent(Bus::Event::kReconnected));

  a->Publish("t", "after");
  ASSERT_TRUE(b_got.WaitForReceived(2));
  EXPECT_EQ(b_got.received().back(), "after");
}

TEST_F(NatsBusTest, ASlowConsumerIsToldItLostMessages) {
  Recorder a_events, b_events;
  std::unique_ptr<NatsBus> a = Connect("a", &a_events);
  std::unique_ptr<NatsBus> b = Connect("b", &b_events, /*max_pending=*/4);
  absl::Notification unblock;
  ASSERT_TRUE(b->Subscribe("t", [&](const Bus::Message&) {
                 unblock.WaitForNotification();
               }).ok());
  for (int i = 0; i < 100; ++i) a->Publish("t", std::to_string(i));
  EXPECT_TRUE(b_events.WaitForEvent(Bus::Event::kMessagesLost));
  unblock.Notify();
}

TEST_F(NatsBusTest, ABusStartedWithoutAServerConnectsWhenOneComes) {
  const int port = server_->port();
  server_->Kill();
  Recorder events, got;
  NatsBusOptions options;
  options.servers = {"nats://127.0.0.1:" + std::to_string(port)};
  options.reconnect_wait = absl::Milliseconds(50);
  absl::StatusOr<std::unique_ptr<NatsBus>> bus = NatsBus::Connect(options);
  ASSERT_TRUE(bus.ok()) << bus.status();
  (*bus)->SetEventHandler([&](Bus::Event e) { events.AddEvent(e); });
  EXPECT_FALSE((*bus)->connected());
  ASSERT_TRUE(server_->Restart().ok());
  ASSERT_TRUE(events.WaitForEvent(Bus::Event::kReconnected));
  EXPECT_TRUE((*bus)->connected());
}

}  // namespace
}  // namespace parley::service
