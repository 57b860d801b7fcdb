// bus_bench: measures live delivery across two replicas in one process:
// both on one SQLite store (standing in for the shared store), joined by a
// nats-server this program starts on a free port and stops. `--messages`
// sends from alice's session on replica 1 (with --both, alternately from
// carol's on replica 2) to bob's on replica 2; prints the rate at which
// bob's session got them, whether they came in inbox order, and how many
// catch-ups the receiving side needed. (It has no client: what a client
// would Sync for is missing from `received`.)
//
//   bazel run //service:bus_bench -- --messages=20000
#include <stdlib.h>

#include <cstdio>
#include <memory>
#include <string>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/jwt.h"
#include "common/metrics.h"
#include "service/bus_router.h"
#include "service/executor.h"
#include "service/local_router.h"
#include "service/messaging.h"
#include "service/nats_bus.h"
#include "service/nats_server_process.h"
#include "service/service_metrics.h"
#include "service/sqlite_store.h"

ABSL_FLAG(int, messages, 20000, "Sends in total (count). Default 20000.");
ABSL_FLAG(bool, both, false,
          "Half the sends come from carol's session on bob's replica, "
          "interleaved: bob's session then mixes its own replica's commits "
          "with the other's publishes, which arrive later (gaps, caught up "
          "from the store). Default false.");

namespace parley::service {
namespace {

constexpr char kSecret[] = "bench";

// Counts what one session gets and checks the inbox order: a repeat is a
// message at or below the last one (the inbox rule forbids it); a jump is
// one past the last + 1 (a catch-up cut at the replay limit, which a client
// fills by a Sync).
class CountingStream final : public LinkStream {
 public:
  void Send(v1::ServiceEvent event) override {
    if (!event.has_delivery()) return;
    const v1::Delivery& d = event.delivery();
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < d.session_ids_size(); ++i) {
      if (d.frame().has_ack()) ++acks_;
      if (!d.frame().has_message()) continue;
      const uint64_t seq = i < d.inbox_seqs_size()
                               ? d.inbox_seqs(i)
                               : d.frame().message().inbox_seq();
      if (seq <= last_) ++repeats_;
      if (seq > last_ + 1) ++jumps_;
      last_ = seq;
      ++messages_;
    }
  }
  void AwaitMessages(int n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return messages_ >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(120));
  }
  void AwaitAcks(int n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acks_ >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(120));
  }
  int messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  int jumps() {
    absl::MutexLock lock(&mu_);
    return jumps_;
  }
  int repeats() {
    absl::MutexLock lock(&mu_);
    return repeats_;
  }

 private:
  absl::Mutex mu_;
  int messages_ ABSL_GUARDED_BY(mu_) = 0;
  int acks_ ABSL_GUARDED_BY(mu_) = 0;
  int jumps_ ABSL_GUARDED_BY(mu_) = 0;
  // Repeated or backwards: what the inbox rule forbids.
  int repeats_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Replica {
  Replica(const std::string& id, Store* store, const std::string& url,
          ThreadPool* pool) {
    local.SetCatchUp([this, store, pool](LocalRouter::CatchUpRequest r) {
      catch_ups.fetch_add(1);
      pool->Post([this, store, r] {
        local.FinishCatchUp(r, ReadInboxMessages(*store, r.user, r.after_seq,
                                                 r.upto_seq, 1000));
      });
    });
    NatsBusOptions nats;
    nats.servers = {url};
    nats.name = id;
    bus = *NatsBus::Connect(nats);
    BusRouterOptions options;
    options.replica_id = id;
    options.request_timeout = absl::Milliseconds(300);
    router = std::make_unique<BusRouter>(
        &local, bus.get(), store,
        [pool](std::function<void()> t) { pool->Post(std::move(t)); }, options);
    MessagingOptions o;
    o.tokens = TokenVerifier::WithSecret(kSecret);
    messaging = std::make_unique<Messaging>(store, router.get(), &metrics, o);
  }
  Registry registry;
  ServiceMetrics metrics{registry};
  LocalRouter local{4};
  std::unique_ptr<NatsBus> bus;
  std::unique_ptr<BusRouter> router;
  std::unique_ptr<Messaging> messaging;
  CountingStream stream;
  std::atomic<int> catch_ups{0};
};

int Run() {
  const int messages = absl::GetFlag(FLAGS_messages);
  absl::StatusOr<std::unique_ptr<NatsServerProcess>> nats =
      NatsServerProcess::Start();
  if (!nats.ok()) return 1;
  std::string dir = "/tmp/bus_bench.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return 1;
  SqliteStoreOptions store_options;
  store_options.path = dir + "/parley.db";
  std::unique_ptr<SqliteStore> store = *SqliteStore::Open(store_options);
  for (const char* user : {"alice", "bob", "carol"}) {
    if (!store->CreateUser({user, "", absl::Now()}).ok()) return 1;
  }
  auto pool = std::make_unique<ThreadPool>(2);
  Replica r1("r1", store.get(), (*nats)->url(), pool.get());
  Replica r2("r2", store.get(), (*nats)->url(), pool.get());
  for (Replica* r : {&r1, &r2}) {
    if (!r->router->Start().ok()) return 1;
    v1::LinkHello hello;
    hello.set_gateway_id("gw");
    r->messaging->StreamOpened(&r->stream, hello);
  }
  for (auto [r, session, user] :
       {std::tuple{&r1, "a1", "alice"}, std::tuple{&r2, "b1", "bob"},
        std::tuple{&r2, "c1", "carol"}}) {
    v1::SessionOpen open;
    open.set_session_id(session);
    open.set_token(MintToken(
        {user, absl::Now() + absl::Hours(1), absl::Now(), "bench"}, kSecret));
    r->messaging->OpenSession(&r->stream, open);
  }
  const bool both = absl::GetFlag(FLAGS_both);
  const absl::Time start = absl::Now();
  for (int i = 0; i < messages; ++i) {
    const bool from_carol = both && i % 2 == 1;
    Replica& from = from_carol ? r2 : r1;
    v1::SessionFrame f;
    f.set_session_id(from_carol ? "c1" : "a1");
    f.mutable_frame()->mutable_send()->set_client_msg_id(std::to_string(i));
    f.mutable_frame()->mutable_send()->mutable_to()->set_user("bob");
    f.mutable_frame()->mutable_send()->set_text("x");
    from.messaging->HandleFrame(&from.stream, f);
  }
  // r2's stream counts carol's Acks too.
  r1.stream.AwaitAcks(both ? (messages + 1) / 2 : messages);
  if (both) r2.stream.AwaitAcks(messages / 2);
  const absl::Duration acked = absl::Now() - start;
  r2.stream.AwaitMessages(messages);
  const absl::Duration delivered = absl::Now() - start;
  std::printf(
      "messages=%d acked in %.0f ms (%.0f/s); delivered on the other replica "
      "in %.0f ms (%.0f/s); received=%d repeats=%d jumps=%d catch_ups=%d\n",
      messages, absl::ToDoubleMilliseconds(acked),
      messages / absl::ToDoubleSeconds(acked),
      absl::ToDoubleMilliseconds(delivered),
      messages / absl::ToDoubleSeconds(delivered), r2.stream.messages(),
      r2.stream.repeats(), r2.stream.jumps(), r2.catch_ups.load());
  store->Flush();
  for (Replica* r : {&r1, &r2}) {
    r->router->Stop();
    r->local.SetCatchUp(nullptr);
  }
  pool.reset();
  return 0;
}

}  // namespace
}  // namespace parley::service

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return parley::service::Run();
}
