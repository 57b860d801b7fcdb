// parley-loadgen: opens N WebSocket connections to Parley, the raw relay or
// nats-server, runs one workload and prints the report (see driver.h for the
// workloads, report.proto for the fields).
//
//   parley-loadgen --target=parley --address=127.0.0.1:8080
//     --admin_address=127.0.0.1:7401 --admin_key=K --token_secret=S
//     --workload=pairs --connections=200 --inflight=10 --duration=10s
//     --watch=gateway:1234,service:1235 --json_out=run.json
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/config.h"
#include "common/jwt.h"
#include "common/log.h"
#include "grpcpp/grpcpp.h"
#include "tools/loadgen/admin_setup.h"
#include "tools/loadgen/driver.h"
#include "tools/loadgen/report.h"
#include "tools/loadgen/target_list.h"

ABSL_FLAG(std::string, target, "parley",
          "Target protocol: parley, parley-proto, relay, nats or jetstream.");
ABSL_FLAG(std::string, address, "127.0.0.1:8080",
          "host:port of the WebSocket endpoint (IPv4 literal), or a comma "
          "list of them: connection i goes to the (i mod N)-th, so the two "
          "members of a pair sit on different endpoints.");
ABSL_FLAG(std::string, workload, "pairs", "pairs, fanout, churn or idle.");
ABSL_FLAG(int32_t, connections, 100, "Connections (this process).");
ABSL_FLAG(int32_t, connect_concurrency, 256, "Handshakes in progress at once.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(60),
          "Give up on connections not ready by then.");
ABSL_FLAG(int32_t, source_addresses, 1,
          "Spread connections over source addresses 127.0.0.1..127.0.0.N.");
ABSL_FLAG(double, rate, 0,
          "Messages per second over all senders; 0 = open loop.");
ABSL_FLAG(int32_t, inflight, 1, "Undelivered messages per sender.");
ABSL_FLAG(int32_t, payload_bytes, 64, "Message text size.");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "Traffic before the window.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "The measured window.");
ABSL_FLAG(absl::Duration, drain, absl::Seconds(2),
          "Wait for in-flight messages after the window.");
ABSL_FLAG(absl::Duration, hold, absl::Seconds(10), "Idle: hold time.");
ABSL_FLAG(std::string, admin_address, "",
          "Parley admin API host:port (parley targets: users are created).");
ABSL_FLAG(std::string, admin_key, "", "Parley admin key.");
ABSL_FLAG(std::string, token_secret, "", "Parley token secret (HS256).");
ABSL_FLAG(int32_t, admin_concurrency, 16, "Parallel CreateUser calls.");
ABSL_FLAG(std::string, user_prefix, "",
          "Prefix of user ids, subjects and pair keys (default lg<pid>-).");
ABSL_FLAG(int64_t, index_offset, 0,
          "First user index of this process (several processes).");
ABSL_FLAG(std::string, watch, "",
          "Processes to report RSS/CPU for: name:pid,name:pid.");
ABSL_FLAG(std::string, watch_tree, "",
          "Like --watch, each process summed with all its descendants "
          "(PostgreSQL forks a backend per connection): name:pid,...");
ABSL_FLAG(std::string, json_out, "", "Also write the JSON report here.");
ABSL_FLAG(bool, json, false, "Print JSON instead of the table.");

namespace parley::loadgen {
namespace {

absl::StatusOr<DriverOptions> OptionsFromFlags() {
  DriverOptions o;
  o.workload = absl::GetFlag(FLAGS_workload);
  absl::StatusOr<std::vector<Target>> targets =
      ParseTargets(absl::GetFlag(FLAGS_address));
  if (!targets.ok()) return targets.status();
  o.targets = *std::move(targets);
  const int sources = absl::GetFlag(FLAGS_source_addresses);
  if (sources < 1 || sources > 254) {
    return absl::InvalidArgumentError("--source_addresses must be 1..254");
  }
  if (sources > 1) {
    for (int i = 1; i <= sources; ++i) {
      o.sources.push_back(asio::ip::make_address(absl::StrCat("127.0.0.", i)));
    }
  }
  o.connect_concurrency = absl::GetFlag(FLAGS_connect_concurrency);
  o.connect_timeout =
      absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_connect_timeout));
  o.rate = absl::GetFlag(FLAGS_rate);
  o.inflight = absl::GetFlag(FLAGS_inflight);
  o.payload_bytes = absl::GetFlag(FLAGS_payload_bytes);
  o.warmup = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_warmup));
  o.duration = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_duration));
  o.drain = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_drain));
  o.hold = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_hold));
  o.index_offset = absl::GetFlag(FLAGS_index_offset);
  for (const bool tree : {false, true}) {
    const std::string watch =
        absl::GetFlag(tree ? FLAGS_watch_tree : FLAGS_watch);
    for (absl::string_view item :
         absl::StrSplit(watch, ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(item, ':');
      int pid = 0;
      if (!absl::SimpleAtoi(kv.second, &pid)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--watch wants name:pid, got ", item));
      }
      o.watch.push_back({kv.first, pid, tree});
    }
  }
  return o;
}

int Main(int argc, char** argv) {
  ParseConfig(argc, argv,
              "parley-loadgen: WebSocket load generator for Parley, a raw "
              "relay and nats-server");
  absl::StatusOr<DriverOptions> options = OptionsFromFlags();
  if (!options.ok()) {
    LogError("loadgen.flags", {{"error", options.status().ToString()}});
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Protocol>> protocol =
      MakeProtocol(absl::GetFlag(FLAGS_target));
  if (!protocol.ok()) {
    LogError("loadgen.flags", {{"error", protocol.status().ToString()}});
    return 2;
  }
  const int n = absl::GetFlag(FLAGS_connections);
  std::string prefix = absl::GetFlag(FLAGS_user_prefix);
  if (prefix.empty()) prefix = absl::StrCat("lg", getpid(), "-");
  const int64_t offset = options->index_offset;
  const bool fanout = options->workload == "fanout";
  const bool parley = absl::StartsWith((*protocol)->name(), "parley");
  std::vector<std::string> users;
  for (int i = 0; i < n; ++i)
    users.push_back(absl::StrCat(prefix, "u", i + offset));
  // Pairs are (2i, 2i+1); an odd last connection talks to itself.
  auto peer = [n](int i) { return (i ^ 1) < n ? (i ^ 1) : i; };
  const std::string group = absl::StrCat(prefix, "g", offset);

  std::vector<SessionSpec> specs(n);
  for (int i = 0; i < n; ++i) {
    SessionSpec& s = specs[i];
    s.self = users[i];
    s.to = fanout ? group : users[peer(i)];
    s.to_group = fanout;
    s.pair = absl::StrCat(prefix, "p", (i + offset) / 2);
    if (fanout && !parley) s.group_subject = group;
  }
  if (parley) {
    const std::string secret = absl::GetFlag(FLAGS_token_secret);
    const std::string admin = absl::GetFlag(FLAGS_admin_address);
    if (secret.empty() || admin.empty()) {
      LogError("loadgen.flags", {{"error",
                                  "parley targets need --token_secret and "
                                  "--admin_address"}});
      return 2;
    }
    auto channel =
        grpc::CreateChannel(admin, grpc::InsecureChannelCredentials());
    std::unique_ptr<v1::Admin::Stub> stub = v1::Admin::NewStub(channel);
    const absl::Time t0 = absl::Now();
    absl::Status s = CreateUsers(stub.get(), absl::GetFlag(FLAGS_admin_key),
                                 users, absl::GetFlag(FLAGS_admin_concurrency));
    if (s.ok() && fanout) {
      s = CreateGroup(stub.get(), absl::GetFlag(FLAGS_admin_key), group, users);
    }
    if (!s.ok()) {
      LogError("loadgen.setup", {{"error", s.ToString()}});
      return 1;
    }
    LogInfo(
        "loadgen.users_created",
        {{"users", n}, {"seconds", absl::ToDoubleSeconds(absl::Now() - t0)}});
    TokenClaims claims;
    claims.expires_at = absl::Now() + absl::Hours(6);
    claims.issued_at = absl::Now();
    claims.device = "loadgen";
    for (int i = 0; i < n; ++i) {
      claims.subject = users[i];
      specs[i].token = MintToken(claims, secret);
    }
  }

  absl::StatusOr<Report> report = RunWorkload(*options, **protocol, specs);
  if (!report.ok()) {
    LogError("loadgen.run", {{"error", report.status().ToString()}});
    return 2;
  }
  const std::string json = FormatJson(*report);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << json << std::endl;
  } else {
    std::cout << FormatTable(*report) << std::flush;
  }
  const std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (!json_out.empty()) {
    std::ofstream out(json_out);
    out << json << "\n";
    if (!out) {
      LogError("loadgen.json_out", {{"path", json_out}});
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace parley::loadgen

int main(int argc, char** argv) { return parley::loadgen::Main(argc, argv); }
