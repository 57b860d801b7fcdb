// Two replicas on one SQLite store, joined by a real nats-server: delivery
// across them, and NATS killed and restarted while messages are sent.
#include <stdlib.h>

#include <memory>
#include <string>
#include <vector>

#include "common/jwt.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/bus_router.h"
#include "service/executor.h"
#include "service/local_router.h"
#include "service/messaging.h"
#include "service/nats_bus.h"
#include "service/nats_server_process.h"
#include "service/recording_link_stream.h"
#include "service/service_metrics.h"
#include "service/sqlite_store.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;

constexpr char kSecret[] = "test-secret";

// One replica: its routers, a NATS connection and Messaging over the
// shared store, with one gateway stream.
struct Replica {
  Replica(const std::string& id, Store* store, const std::string& nats_url,
          ThreadPool* pool) {
    local.SetCatchUp([this, store, pool](LocalRouter::CatchUpRequest r) {
      pool->Post([this, store, r] {
        local.FinishCatchUp(r, ReadInboxMessages(*store, r.user, r.after_seq,
                                                 r.upto_seq, 1000));
      });
    });
    NatsBusOptions nats;
    nats.servers = {nats_url};
    nats.name = id;
    nats.reconnect_wait = absl::Milliseconds(50);
    bus = *NatsBus::Connect(nats);
    BusRouterOptions options;
    options.replica_id = id;
    options.request_timeout = absl::Milliseconds(300);
    options.heartbeat_interval = absl::Milliseconds(100);
    router = std::make_unique<BusRouter>(
        &local, bus.get(), store,
        [pool](std::function<void()> t) { pool->Post(std::move(t)); }, options);
    MessagingOptions o;
    o.tokens = TokenVerifier::WithSecret(kSecret);
    messaging = std::make_unique<Messaging>(store, router.get(), &metrics, o);
  }

  v1::ServiceEvent Open(const std::string& session, const std::string& user) {
    v1::SessionOpen open;
    open.set_session_id(session);
    open.set_token(MintToken(
        {user, absl::Now() + absl::Hours(1), absl::Now(), "phone"}, kSecret));
    messaging->OpenSession(&gw, open);
    return gw.events().back();
  }
  void Send(const std::string& session, const std::string& to,
            const std::string& id) {
    v1::SessionFrame f;
    f.set_session_id(session);
    f.mutable_frame()->mutable_send()->set_client_msg_id(id);
    f.mutable_frame()->mutable_send()->mutable_to()->set_user(to);
    f.mutable_frame()->mutable_send()->set_text(id);
    messaging->HandleFrame(&gw, f);
  }
  // Waits until `session` got `n` frames of `kind`; returns those it got.
  std::vector<v1::ServerFrame> Await(const std::string& session,
                                     v1::ServerFrame::FrameCase kind,
                                     size_t n) {
    auto of_kind = [&](const std::vector<v1::ServiceEvent>& events) {
      std::vector<v1::ServerFrame> out;
      for (const v1::ServiceEvent& e : events) {
        if (!e.has_delivery()) continue;
        for (int i = 0; i < e.delivery().session_ids_size(); ++i) {
          v1::ServerFrame f = FrameForSession(e.delivery(), i);
          if (e.delivery().session_ids(i) == session &&
              f.frame_case() == kind) {
            out.push_back(std::move(f));
          }
        }
      }
      return out;
    };
    gw.WaitFor([&](const std::vector<v1::ServiceEvent>& events) {
      return of_kind(events).size() >= n;
    });
    return of_kind(gw.events());
  }

  Registry registry;
  ServiceMetrics metrics{registry};
  LocalRouter local{4};
  std::unique_ptr<NatsBus> bus;
  std::unique_ptr<BusRouter> router;
  std::unique_ptr<Messaging> messaging;
  RecordingLinkStream gw;
};

std::vector<uint64_t> Seqs(const std::vector<v1::ServerFrame>& frames) {
  std::vector<uint64_t> out;
  for (const v1::ServerFrame& f : frames)
    out.push_back(f.message().inbox_seq());
  return out;
}

class BusRouterNatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsServerProcess>> nats =
        NatsServerProcess::Start();
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
    std::string dir = ::testing::TempDir() + "/bus_router_nats_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    SqliteStoreOptions options;
    options.path = dir + "/parley.db";
    absl::StatusOr<std::unique_ptr<SqliteStore>> store =
        SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    for (const char* user : {"alice", "bob"}) {
      ASSERT_TRUE(store_->CreateUser({user, "", absl::Now()}).ok());
    }
    for (const char* id : {"r1", "r2"}) {
      replicas_.push_back(std::make_unique<Replica>(id, store_.get(),
                                                    nats_->url(), pool_.get()));
      v1::LinkHello hello;
      hello.set_gateway_id(std::string("gw-") + id);
      replicas_.back()->messaging->StreamOpened(&replicas_.back()->gw, hello);
      // The second one's start asks the first: they know each other.
      ASSERT_TRUE(replicas_.back()->router->Start().ok());
    }
  }
  void TearDown() override {
    store_->Flush();
    // No more work for the pool, then its queued work runs while the
    // replicas exist.
    for (auto& r : replicas_) {
      r->router->Stop();
      r->local.SetCatchUp(nullptr);
    }
    pool_.reset();
  }

  std::unique_ptr<NatsServerProcess> nats_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<ThreadPool> pool_ = std::make_unique<ThreadPool>(2);
  std::vector<std::unique_ptr<Replica>> replicas_;
};

TEST_F(BusRouterNatsTest,
       SendsDuringANatsOutageAreAckedAndCaughtUpWhenItIsBack) {
  Replica& r1 = *replicas_[0];
  Replica& r2 = *replicas_[1];
  ASSERT_EQ(r1.router->Replicas(), std::vector<std::string>{"r2"});
  ASSERT_EQ(r2.router->Replicas(), std::vector<std::string>{"r1"});
  ASSERT_TRUE(r1.Open("a1", "alice").has_accepted());
  ASSERT_TRUE(r2.Open("b1", "bob").has_accepted());

  r1.Send("a1", "bob", "c1");
  EXPECT_THAT(Seqs(r2.Await("b1", v1::ServerFrame::kMessage, 1)),
              ElementsAre(1));

  nats_->Kill();
  r1.Send("a1", "bob", "c2");
  r1.Send("a1", "bob", "c3");
  // Stored and acknowledged with NATS down.
  EXPECT_EQ(r1.Await("a1", v1::ServerFrame::kAck, 3).size(), 3u);

  ASSERT_TRUE(nats_->Restart().ok());
  // Both reconnect; each catches its sessions up from the store.
  EXPECT_THAT(Seqs(r2.Await("b1", v1::ServerFrame::kMessage, 3)),
              ElementsAre(1, 2, 3));
  r1.Send("a1", "bob", "c4");
  EXPECT_THAT(Seqs(r2.Await("b1", v1::ServerFrame::kMessage, 4)),
              ElementsAre(1, 2, 3, 4));
}

}  // namespace
}  // namespace parley::service
