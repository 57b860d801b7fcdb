#include "service/bus_router.h"

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/jwt.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/fake_bus.h"
#include "service/fake_store.h"
#include "service/local_router.h"
#include "service/messaging.h"
#include "service/recording_link_stream.h"
#include "service/service_metrics.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr char kSecret[] = "test-secret";
const absl::Time kNow = absl::FromUnixSeconds(1700000000);

// Work the replicas hand to a thread that may block (store reads), run when
// the test says so.
class Tasks {
 public:
  void Post(std::function<void()> task) {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  // Runs tasks (and those they post) until none is left.
  void RunAll() {
    for (;;) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu_);
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }
  bool AwaitOne(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !tasks_.empty();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }

 private:
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
};

// One parley-service replica: its routers and Messaging over the shared
// store, one gateway stream, a bus connection.
struct Replica {
  Replica(const std::string& id, Store* store, FakeBusNetwork* network,
          Tasks* tasks, BusRouterOptions options)
      : bus(network),
        router(
            &local, &bus, store,
            [tasks](std::function<void()> t) { tasks->Post(std::move(t)); },
            [&] {
              options.replica_id = id;
              return options;
            }()),
        messaging(
            store, &router, &metrics,
            [] {
              MessagingOptions o;
              o.tokens = TokenVerifier::WithSecret(kSecret);
              return o;
            }(),
            [] { return kNow; }) {
    local.SetCatchUp([tasks, store, this](LocalRouter::CatchUpRequest r) {
      tasks->Post([store, this, r] {
        local.FinishCatchUp(r, ReadInboxMessages(*store, r.user, r.after_seq,
                                                 r.upto_seq, 1000));
      });
    });
    gw_hello.set_gateway_id("gw-" + id);
  }

  Registry registry;
  ServiceMetrics metrics{registry};
  LocalRouter local{4};
  FakeBus bus;
  BusRouter router;
  Messaging messaging;
  RecordingLinkStream gw;
  v1::LinkHello gw_hello;
};

class BusRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* id : {"alice", "bob", "carol"}) {
      ASSERT_TRUE(store_.CreateUser({id, "", kNow}).ok());
    }
    GroupRecord team;
    team.id = "team";
    team.members = {"alice", "bob", "carol"};
    ASSERT_TRUE(store_.CreateGroup(team, 10).ok());
  }
  void TearDown() override {
    tasks_.RunAll();
    replicas_.clear();
  }

  void StartReplicas(int n, BusRouterOptions options = Options()) {
    for (int i = 1; i <= n; ++i) {
      replicas_.push_back(std::make_unique<Replica>(
          "r" + std::to_string(i), &store_, &network_, &tasks_, options));
      Replica& r = *replicas_.back();
      ASSERT_TRUE(r.router.Start().ok());
      r.messaging.StreamOpened(&r.gw, r.gw_hello);
    }
    for (auto& r : replicas_) {
      ASSERT_EQ(r->router.Replicas().size(), static_cast<size_t>(n - 1));
    }
  }
  static BusRouterOptions Options() {
    BusRouterOptions options;
    options.request_timeout = absl::Milliseconds(50);
    // Heartbeats only at start, unless a test wants them.
    options.heartbeat_interval = absl::Hours(1);
    options.replica_timeout = absl::Hours(2);
    return options;
  }
  Replica& R(int i) { return *replicas_[i - 1]; }
  // Runs the replicas' tasks as they come (heartbeats post them) until
  // `done` holds; gives up after 10 s without a task.
  void RunTasksUntil(const std::function<bool()>& done) {
    while (!done() && tasks_.AwaitOne(absl::Seconds(10))) tasks_.RunAll();
  }

  void Open(int replica, const std::string& session, const std::string& user) {
    v1::SessionOpen open;
    open.set_session_id(session);
    open.set_token(
        MintToken({user, kNow + absl::Hours(1), kNow, "phone"}, kSecret));
    R(replica).messaging.OpenSession(&R(replica).gw, open);
    tasks_.RunAll();
  }
  void Close(int replica, const std::string& session) {
    v1::SessionClose close;
    close.set_session_id(session);
    R(replica).messaging.CloseSession(&R(replica).gw, close);
    tasks_.RunAll();
  }
  void Frame(int replica, const std::string& session,
             const v1::ClientFrame& frame) {
    v1::SessionFrame f;
    f.set_session_id(session);
    *f.mutable_frame() = frame;
    R(replica).messaging.HandleFrame(&R(replica).gw, f);
  }
  void Send(int replica, const std::string& session, const std::string& to,
            const std::string& id, bool group = false) {
    v1::ClientFrame frame;
    frame.mutable_send()->set_client_msg_id(id);
    if (group) {
      frame.mutable_send()->mutable_to()->set_group(to);
    } else {
      frame.mutable_send()->mutable_to()->set_user(to);
    }
    frame.mutable_send()->set_text("text of " + id);
    Frame(replica, session, frame);
  }
  std::vector<v1::ServerFrame> FramesOf(int replica, const std::string& s,
                                        v1::ServerFrame::FrameCase kind) {
    std::vector<v1::ServerFrame> out;
    for (const v1::ServerFrame& f : R(replica).gw.FramesFor(s)) {
      if (f.frame_case() == kind) out.push_back(f);
    }
    return out;
  }
  // The inbox_seqs of the messages a session got, in order.
  std::vector<uint64_t> Seqs(int replica, const std::string& s) {
    std::vector<uint64_t> out;
    for (const auto& f : FramesOf(replica, s, v1::ServerFrame::kMessage)) {
      out.push_back(f.message().inbox_seq());
    }
    return out;
  }
  // "user:online" for every Presence frame a session got.
  std::vector<std::string> Presence(int replica, const std::string& s) {
    std::vector<std::string> out;
    for (const auto& f : FramesOf(replica, s, v1::ServerFrame::kPresence)) {
      out.push_back(f.presence().user() + ":" +
                    (f.presence().online() ? "on" : "off"));
    }
    return out;
  }

  FakeStore store_;
  FakeBusNetwork network_;
  Tasks tasks_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

TEST_F(BusRouterTest, ADirectMessageReachesThePeersSessionOnAnotherReplica) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "b1", "bob");
  Send(1, "a1", "bob", "c1");
  ASSERT_EQ(FramesOf(1, "a1", v1::ServerFrame::kAck).size(), 1u);
  std::vector<v1::ServerFrame> got =
      FramesOf(2, "b1", v1::ServerFrame::kMessage);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message().inbox_seq(), 1u);
  EXPECT_EQ(got[0].message().from(), "alice");
  EXPECT_EQ(got[0].message().text(), "text of c1");
  // The sender's own inbox: the Ack, not a Message, on its session.
  EXPECT_THAT(Seqs(1, "a1"), IsEmpty());
}

TEST_F(BusRouterTest,
       AGroupMessageReachesMembersOnEveryReplicaAndTheSendersOtherDevice) {
  StartReplicas(3);
  Open(1, "a1", "alice");
  Open(2, "a2", "alice");
  Open(2, "b1", "bob");
  Open(3, "c1", "carol");
  Send(1, "a1", "team", "g1", /*group=*/true);
  EXPECT_THAT(Seqs(2, "a2"), ElementsAre(1));
  EXPECT_THAT(Seqs(2, "b1"), ElementsAre(1));
  EXPECT_THAT(Seqs(3, "c1"), ElementsAre(1));
  EXPECT_THAT(Seqs(1, "a1"), IsEmpty());
}

TEST_F(BusRouterTest, TypingAndReadReceiptsCrossReplicas) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "b1", "bob");
  Send(1, "a1", "bob", "c1");
  v1::ClientFrame typing;
  typing.mutable_typing()->mutable_to()->set_user("alice");
  Frame(2, "b1", typing);
  v1::ClientFrame read;
  read.mutable_read()->set_conversation("d:alice:bob");
  read.mutable_read()->set_seq(1);
  Frame(2, "b1", read);
  auto typed = FramesOf(1, "a1", v1::ServerFrame::kTyping);
  ASSERT_EQ(typed.size(), 1u);
  EXPECT_EQ(typed[0].typing().from(), "bob");
  auto receipts = FramesOf(1, "a1", v1::ServerFrame::kReceipt);
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].receipt().user(), "bob");
  EXPECT_EQ(receipts[0].receipt().seq(), 1u);
}

TEST_F(BusRouterTest,
       PresenceChangesOnlyWithTheFirstAndLastSessionInTheCluster) {
  StartReplicas(2);
  // alice and bob become contacts through their direct conversation.
  Open(1, "a0", "alice");
  Send(1, "a0", "bob", "c1");
  Close(1, "a0");
  Open(2, "b1", "bob");
  Open(1, "a1", "alice");
  // bob learnt alice came online; alice's new session learnt bob is online
  // although bob is on the other replica.
  EXPECT_THAT(Presence(2, "b1"), ElementsAre("alice:on"));
  EXPECT_THAT(Presence(1, "a1"), ElementsAre("bob:on"));
  EXPECT_TRUE(R(1).router.IsOnline("bob"));
  Open(2, "a2", "alice");  // Not alice's first session in the cluster.
  Close(1, "a1");          // Not her last.
  EXPECT_THAT(Presence(2, "b1"), ElementsAre("alice:on"));
  Close(2, "a2");
  EXPECT_THAT(Presence(2, "b1"), ElementsAre("alice:on", "alice:off"));
  EXPECT_FALSE(R(1).router.IsOnline("alice"));
}

TEST_F(BusRouterTest, LastSessionsClosingAtOnceOnTwoReplicasAreAnnouncedOnce) {
  StartReplicas(3);
  Open(1, "a0", "alice");
  Send(1, "a0", "bob", "c1");
  Open(3, "b1", "bob");
  Open(2, "a2", "alice");
  R(3).gw.Clear();
  // Each close sees the other replica's session: neither announces.
  network_.Hold();
  Close(1, "a0");
  Close(2, "a2");
  EXPECT_THAT(Presence(3, "b1"), IsEmpty());
  network_.Release();
  tasks_.RunAll();
  EXPECT_THAT(Presence(3, "b1"), ElementsAre("alice:off"));
  EXPECT_FALSE(R(3).router.IsOnline("alice"));
}

TEST_F(BusRouterTest, AnOperatorDisconnectClosesSessionsOnEveryReplica) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "a2", "alice");
  Open(2, "b1", "bob");
  Router::Disconnected out =
      R(1).router.Disconnect("alice", "", 4003, "no-reconnect: bye", false);
  EXPECT_EQ(out.sessions, 2u);
  EXPECT_THAT(out.offline_users, ElementsAre("alice"));
  bool ordered = false;
  for (const v1::ServiceEvent& e : R(2).gw.events()) {
    if (e.has_disconnect()) {
      EXPECT_THAT(e.disconnect().session_ids(), ElementsAre("a2"));
      ordered = true;
    }
  }
  EXPECT_TRUE(ordered);
  EXPECT_FALSE(R(2).router.IsOnline("alice"));
  EXPECT_FALSE(R(1).router.IsOnline("alice"));
  // One session by id, wherever it is.
  EXPECT_EQ(
      R(1).router.Disconnect("", "b1", 4003, "reconnect: x", true).sessions,
      1u);
}

TEST_F(BusRouterTest, BroadcastListSessionsAndCensusSpanEveryReplica) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "b1", "bob");
  Open(2, "b2", "bob");
  v1::ServerFrame frame;
  frame.mutable_announcement()->set_text("maintenance");
  Router::Broadcasted sent = R(1).router.Broadcast(frame);
  EXPECT_EQ(sent.sessions, 3u);
  EXPECT_EQ(sent.gateways, 2u);
  for (int r : {1, 2}) {
    bool got = false;
    for (const v1::ServiceEvent& e : R(r).gw.events()) {
      got |= e.has_broadcast();
    }
    EXPECT_TRUE(got) << r;
  }
  std::vector<std::string> ids;
  for (const SessionInfo& s : R(1).router.ListSessions("")) {
    ids.push_back(s.user_id + "/" + s.session_id + "@" + s.gateway_id);
  }
  EXPECT_THAT(ids,
              ElementsAre("alice/a1@gw-r1", "bob/b1@gw-r2", "bob/b2@gw-r2"));
  EXPECT_EQ(R(1).router.ListSessions("bob").size(), 2u);
  Router::Census census = R(2).router.TakeCensus();
  EXPECT_EQ(census.sessions, 3u);
  EXPECT_EQ(census.gateways, 2u);
  EXPECT_EQ(R(2).router.session_count(), 2u);  // This replica's, for metrics.
}

TEST_F(BusRouterTest, ReorderedPublishesAreDeliveredInInboxOrder) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "b1", "bob");
  network_.Hold();
  Send(1, "a1", "bob", "c1");
  Send(1, "a1", "bob", "c2");
  Send(1, "a1", "bob", "c3");
  EXPECT_EQ(FramesOf(1, "a1", v1::ServerFrame::kAck).size(), 3u);
  network_.Release(/*reverse=*/true);  // 3 arrives first: a gap.
  EXPECT_THAT(Seqs(2, "b1"), IsEmpty());
  tasks_.RunAll();  // The catch-up reads 1 and 2; the late 2 and 1 are old.
  EXPECT_THAT(Seqs(2, "b1"), ElementsAre(1, 2, 3));
}

TEST_F(BusRouterTest, ALostPublishIsCaughtUpWhenTheReceiverLostMessages) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "b1", "bob");
  network_.SetLosing(true);
  Send(1, "a1", "bob", "c1");
  network_.SetLosing(false);
  // Stored and acknowledged all the same.
  EXPECT_EQ(FramesOf(1, "a1", v1::ServerFrame::kAck).size(), 1u);
  EXPECT_THAT(Seqs(2, "b1"), IsEmpty());
  // A slow consumer's drop: no later message is needed to catch up.
  network_.LoseMessagesOf(&R(2).bus);
  tasks_.RunAll();
  EXPECT_THAT(Seqs(2, "b1"), ElementsAre(1));
}

TEST_F(BusRouterTest, AReplicaCutOffFromTheBusHasEveryoneCatchUpWhenBack) {
  StartReplicas(2);
  Open(1, "a1", "alice");
  Open(2, "b1", "bob");
  network_.Disconnect(&R(1).bus);
  Send(1, "a1", "bob", "c1");  // Published into the void.
  Send(1, "a1", "bob", "c2");
  EXPECT_EQ(FramesOf(1, "a1", v1::ServerFrame::kAck).size(), 2u);
  EXPECT_THAT(Seqs(2, "b1"), IsEmpty());
  network_.Reconnect(&R(1).bus);  // r1 asks every replica to catch up.
  tasks_.RunAll();
  EXPECT_THAT(Seqs(2, "b1"), ElementsAre(1, 2));
  Send(1, "a1", "bob", "c3");
  EXPECT_THAT(Seqs(2, "b1"), ElementsAre(1, 2, 3));
}

TEST_F(BusRouterTest, AReplicaThatDiesTakesItsUsersOfflineForTheOthers) {
  BusRouterOptions options = Options();
  options.heartbeat_interval = absl::Milliseconds(20);
  options.replica_timeout = absl::Milliseconds(200);
  StartReplicas(2, options);
  Open(1, "a0", "alice");
  Send(1, "a0", "bob", "c1");
  Open(2, "b1", "bob");
  ASSERT_TRUE(R(1).router.IsOnline("bob"));
  R(1).gw.Clear();
  replicas_.pop_back();  // r2 is gone, its heartbeats with it.
  RunTasksUntil([&] { return !Presence(1, "a0").empty(); });
  EXPECT_FALSE(R(1).router.IsOnline("bob"));
  EXPECT_THAT(Presence(1, "a0"), ElementsAre("bob:off"));
}

TEST_F(BusRouterTest, AReplicaThatDiesBetweenCommitAndPublishIsCaughtUpAfter) {
  BusRouterOptions options = Options();
  options.heartbeat_interval = absl::Milliseconds(20);
  options.replica_timeout = absl::Milliseconds(200);
  StartReplicas(3, options);
  Open(1, "a1", "alice");
  Open(3, "c1", "carol");
  network_.Disconnect(&R(1).bus);  // Its publishes go nowhere...
  Send(1, "a1", "carol", "c1");
  EXPECT_EQ(FramesOf(1, "a1", v1::ServerFrame::kAck).size(), 1u);
  replicas_[0].reset();  // ... and it dies before it could reconnect.
  RunTasksUntil([&] { return !Seqs(3, "c1").empty(); });
  EXPECT_THAT(Seqs(3, "c1"), ElementsAre(1));
}

TEST(EncodeSubjectTokenTest, AnyIdBecomesOneValidToken) {
  EXPECT_EQ(EncodeSubjectToken("host-1_a"), "host-1_a");
  EXPECT_EQ(EncodeSubjectToken("h.x:7400"), "h%2Ex%3A7400");
  EXPECT_EQ(EncodeSubjectToken("a b*>"), "a%20b%2A%3E");
  EXPECT_EQ(EncodeSubjectToken(""), "%");
}

}  // namespace
}  // namespace parley::service
