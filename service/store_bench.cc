// store_bench: persisted and acknowledged 1:1 appends per second of the
// SQLite store and the PostgreSQL store, one after the other in one run, on
// the same workload: `--messages` direct messages between `--users` users
// (round robin sender, next user as peer), at most `--window` awaiting their
// callback. Both durable per commit: SQLite synchronous=FULL, PostgreSQL
// fsync=on and synchronous_commit=on. Without --postgres_url it starts a
// PostgreSQL of its own (service/testing/postgres_server.h).
//
//   bazel run -c opt //service:store_bench -- --messages=100000
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "service/pg_store.h"
#include "service/sqlite_store.h"
#include "service/testing/postgres_server.h"

ABSL_FLAG(int, messages, 50000, "Appends per store (count). Default 50000.");
ABSL_FLAG(int, users, 100, "Users sending to each other (count). Default 100.");
ABSL_FLAG(int, window, 5000,
          "Most appends awaiting their callback (count). Default 5000.");
ABSL_FLAG(std::string, postgres_url, "",
          "An empty PostgreSQL database to use; default: start one.");

namespace parley::service {
namespace {

struct Measured {
  double per_second = 0;
  uint64_t failed = 0;
};

Measured Run(Store& store) {
  const int messages = absl::GetFlag(FLAGS_messages);
  const int users = absl::GetFlag(FLAGS_users);
  const int window = absl::GetFlag(FLAGS_window);
  for (int u = 0; u < users; ++u) {
    (void)store.CreateUser({absl::StrCat("u", u), "", absl::Now()});
  }
  absl::Mutex mu;
  int in_flight = 0;
  uint64_t failed = 0;
  const absl::Time start = absl::Now();
  for (int i = 0; i < messages; ++i) {
    {
      absl::MutexLock lock(&mu);
      auto room = [&]() { return in_flight < window; };
      mu.Await(absl::Condition(&room));
      ++in_flight;
    }
    AppendRequest r;
    r.sender = absl::StrCat("u", i % users);
    r.to = absl::StrCat("u", (i + 1) % users);
    r.client_msg_id = absl::StrCat("m", i);
    r.conversation =
        "d:" + std::min(r.sender, r.to) + ":" + std::max(r.sender, r.to);
    r.text = "hello, this is a message of a typical length";
    r.sent_at = absl::Now();
    store.Append(std::move(r), [&](absl::StatusOr<AppendResult> result) {
      absl::MutexLock lock(&mu);
      --in_flight;
      if (!result.ok()) ++failed;
    });
  }
  store.Flush();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return {messages / seconds, failed};
}

int Main() {
  std::string dir = "/tmp/store_bench.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return 1;
  Measured sqlite;
  {
    SqliteStoreOptions options;
    options.path = dir + "/parley.db";
    auto store = SqliteStore::Open(options);
    if (!store.ok()) {
      std::fprintf(stderr, "sqlite: %s\n", store.status().ToString().c_str());
      return 1;
    }
    sqlite = Run(**store);
  }
  std::filesystem::remove_all(dir);

  std::unique_ptr<testing::PostgresServer> server;
  std::string url = absl::GetFlag(FLAGS_postgres_url);
  if (url.empty()) {
    auto started = testing::PostgresServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    server = std::move(started).value();
    auto created = server->CreateDatabase("bench");
    if (!created.ok()) return 1;
    url = *created;
  }
  Measured pg;
  uint64_t pg_transactions = 0;
  {
    PgStoreOptions options;
    options.url = url;
    auto store = PgStore::Open(options);
    if (!store.ok()) {
      std::fprintf(stderr, "postgres: %s\n", store.status().ToString().c_str());
      return 1;
    }
    pg = Run(**store);
    pg_transactions = (*store)->transactions();
  }
  std::printf(
      "1:1 appends, persisted and acked: sqlite(FULL) %.0f/s (%llu failed), "
      "postgres(fsync, synchronous_commit=on) %.0f/s (%llu failed, %llu "
      "transactions), ratio %.2f\n",
      sqlite.per_second, static_cast<unsigned long long>(sqlite.failed),
      pg.per_second, static_cast<unsigned long long>(pg.failed),
      static_cast<unsigned long long>(pg_transactions),
      pg.per_second / sqlite.per_second);
  return 0;
}

}  // namespace
}  // namespace parley::service

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return parley::service::Main();
}
