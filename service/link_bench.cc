// link_bench: measures parley-service's send path end to end in one process:
// a Server on port 0 with a fresh SQLite database, one gRPC GatewayLink
// stream carrying `--sessions` sessions, `--messages` sends pipelined in
// batches of `--batch` events, each Ack awaited. Prints sends/s, Ack latency
// percentiles and the group-commit batch sizes.
//
//   bazel run //service:link_bench -- --messages=20000
//   --sqlite_synchronous=FULL   (or --store=postgres://...)
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/jwt.h"
#include "common/metrics.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "parley/v1/gateway_link.grpc.pb.h"
#include "service/server.h"
#include "service/store_url.h"

ABSL_FLAG(int, messages, 20000, "Sends in total (count). Default 20000.");
ABSL_FLAG(int, sessions, 50,
          "Sessions, one user each, sending round robin (count). Default 50.");
ABSL_FLAG(int, batch, 100,
          "Send events per GatewayBatch (count). Default 100.");
ABSL_FLAG(int, window, 5000,
          "Most sends awaiting their Ack (count). Default 5000.");
ABSL_FLAG(bool, group, false,
          "Send every message to one group of all the sessions' users "
          "(fan-out) instead of 1:1. Default false.");
ABSL_FLAG(std::string, sqlite_synchronous, "FULL",
          "SQLite PRAGMA synchronous for the run. Default FULL.");
ABSL_FLAG(std::string, store, "",
          "The store to run on, as --store of parley-service (an empty "
          "PostgreSQL database, say). Default: a fresh SQLite database in "
          "/tmp.");

namespace parley::service {
namespace {

constexpr char kSecret[] = "bench";

int Run() {
  const int messages = absl::GetFlag(FLAGS_messages);
  const int sessions = absl::GetFlag(FLAGS_sessions);
  const int batch_size = absl::GetFlag(FLAGS_batch);
  const int window = absl::GetFlag(FLAGS_window);

  std::string dir = "/tmp/link_bench.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return 1;
  ServerOptions options;
  options.link_address = "127.0.0.1:0";
  options.admin_address = "127.0.0.1:0";
  options.metrics_address = "";
  options.store.url = SqliteInDataDir(dir);
  if (!absl::GetFlag(FLAGS_store).empty()) {
    absl::StatusOr<StoreUrl> url = ParseStoreUrl(absl::GetFlag(FLAGS_store));
    if (!url.ok()) {
      std::fprintf(stderr, "--store: %s\n", url.status().ToString().c_str());
      return 1;
    }
    options.store.url = *url;
  }
  options.token_secret = kSecret;
  options.admin_key = "bench";
  options.store.sqlite.synchronous = absl::GetFlag(FLAGS_sqlite_synchronous);
  Registry registry;
  auto server = Server::Start(options, registry);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  const bool group = absl::GetFlag(FLAGS_group);
  std::vector<std::string> members;
  for (int i = 0; i < sessions; ++i) members.push_back("u" + std::to_string(i));
  for (int i = 0; i < sessions; ++i) {
    (void)(*server)->store().CreateUser(
        {"u" + std::to_string(i), "", absl::Now()});
  }

  if (group) {
    (void)(*server)->store().CreateGroup({"all", "", members, absl::Now()},
                                         members.size());
  }
  const absl::Time open_start = absl::Now();
  auto stub = v1::GatewayLink::NewStub(grpc::CreateChannel(
      (*server)->link_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  auto stream = stub->Connect(&context);
  {
    v1::GatewayBatch b;
    b.add_events()->mutable_hello()->set_gateway_id("bench");
    for (int i = 0; i < sessions; ++i) {
      v1::SessionOpen* open = b.add_events()->mutable_open();
      open->set_session_id("s" + std::to_string(i));
      open->set_token(MintToken({"u" + std::to_string(i),
                                 absl::Now() + absl::Hours(1), absl::Now(), ""},
                                kSecret));
    }
    stream->Write(b);
  }

  absl::Mutex mu;
  std::map<std::string, absl::Time> sent_at;
  std::vector<double> latencies_ms;
  int acked = 0, accepted = 0, errors = 0;
  int64_t delivered = 0;
  std::thread reader([&] {
    v1::ServiceBatch in;
    while (stream->Read(&in)) {
      const absl::Time now = absl::Now();
      absl::MutexLock lock(&mu);
      for (const v1::ServiceEvent& e : in.events()) {
        if (e.has_accepted()) ++accepted;
        if (!e.has_delivery()) continue;
        const v1::ServerFrame& f = e.delivery().frame();
        if (f.has_error()) ++errors;
        if (f.has_message()) delivered += e.delivery().session_ids_size();
        if (!f.has_ack()) continue;
        auto it = sent_at.find(f.ack().client_msg_id());
        if (it == sent_at.end()) continue;
        latencies_ms.push_back(absl::ToDoubleMilliseconds(now - it->second));
        sent_at.erase(it);
        ++acked;
      }
    }
  });
  {
    absl::MutexLock lock(&mu);
    auto all_open = [&]() { return accepted == sessions; };
    mu.Await(absl::Condition(&all_open));
  }
  std::printf("opened %d sessions in %.0f ms\n", sessions,
              absl::ToDoubleMilliseconds(absl::Now() - open_start));

  const absl::Time start = absl::Now();
  for (int i = 0; i < messages;) {
    v1::GatewayBatch b;
    {
      absl::MutexLock lock(&mu);
      auto room = [&]() {
        return static_cast<int>(sent_at.size()) + batch_size <= window;
      };
      mu.Await(absl::Condition(&room));
      for (int k = 0; k < batch_size && i < messages; ++k, ++i) {
        const int from = i % sessions;
        v1::SessionFrame* f = b.add_events()->mutable_frame();
        f->set_session_id("s" + std::to_string(from));
        v1::Send* send = f->mutable_frame()->mutable_send();
        send->set_client_msg_id("m" + std::to_string(i));
        if (group) {
          send->mutable_to()->set_group("all");
        } else {
          send->mutable_to()->set_user("u" +
                                       std::to_string((from + 1) % sessions));
        }
        send->set_text("benchmark message of a typical length, 60 bytes...");
        sent_at["m" + std::to_string(i)] = absl::Now();
      }
    }
    stream->Write(b);
  }
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() { return acked + errors >= messages; };
    mu.Await(absl::Condition(&done));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  context.TryCancel();
  reader.join();

  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0.0
                                : latencies_ms[static_cast<size_t>(
                                      p * (latencies_ms.size() - 1))];
  };
  const Histogram& batches = registry.GetHistogram(
      "parley_service_store_commit_batch_size", "", Histogram::SizeBuckets());
  const Histogram& commits = registry.GetHistogram(
      "parley_service_store_commit_seconds", "", Histogram::LatencyBuckets());
  std::printf(
      "synchronous=%s messages=%d sessions=%d batch=%d window=%d errors=%d\n"
      "deliveries/s=%.0f\n"
      "sends/s=%.0f ack latency ms p50=%.2f p90=%.2f p99=%.2f max=%.2f\n"
      "transactions=%llu ops/transaction=%.1f commit ms avg=%.2f\n",
      options.store.sqlite.synchronous.c_str(), messages, sessions, batch_size,
      window, errors, delivered / seconds, messages / seconds, pct(0.5),
      pct(0.9), pct(0.99), pct(1.0),
      static_cast<unsigned long long>(batches.Count()),
      batches.Count() ? batches.Sum() / batches.Count() : 0.0,
      commits.Count() ? 1000 * commits.Sum() / commits.Count() : 0.0);
  (*server)->Shutdown();
  server->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace parley::service

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return parley::service::Run();
}
