// PgStore beyond the Store contract (store_test.cc runs that): several
// processes writing to one database, PostgreSQL restarting under an open
// store, a replica killed mid-batch, and the schema's versioning. Every test
// runs on a real PostgreSQL started for it.
#include "service/pg_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <postgresql/libpq-fe.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/testing/append_sync.h"
#include "service/testing/postgres_server.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

constexpr int kUsers = 6;

std::string UserId(int i) { return absl::StrCat("u", i); }

AppendRequest Direct(const std::string& from, const std::string& to,
                     const std::string& key) {
  AppendRequest r;
  r.sender = from;
  r.to = to;
  r.client_msg_id = key;
  r.text = key;
  r.sent_at = absl::FromUnixSeconds(100);
  r.conversation = "d:" + std::min(from, to) + ":" + std::max(from, to);
  return r;
}

AppendRequest ToGroup(const std::string& from, const std::string& group,
                      const std::string& key) {
  AppendRequest r = Direct(from, from, key);
  r.to = group;
  r.to_group = true;
  r.conversation = "g:" + group;
  return r;
}

using testing::AppendSync;

// Runs one SQL command on `url`; its first value, or "error: ...".
std::string Sql(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string out;
  PGresult* r = PQexec(conn, sql.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
    out = PQgetvalue(r, 0, 0);
  } else if (PQresultStatus(r) != PGRES_COMMAND_OK &&
             PQresultStatus(r) != PGRES_TUPLES_OK) {
    out = std::string("error: ") + PQerrorMessage(conn);
  }
  PQclear(r);
  PQfinish(conn);
  return out;
}

// A TCP proxy in front of PostgreSQL that, once armed, loses the first
// COMMIT it sees in one of two ways: kAnswer lets it through to the server
// and cuts the connection before the server's answer reaches the client (it
// committed); kCommit cuts the client off without passing it on, and keeps
// the server's side open, so the transaction stays open on a backend that
// does not know its client is gone. Either way the client cannot know the
// outcome. kLocks loses the answer to the first statement that contains
// `locks_trigger` instead (by default a batch's first round trip, which
// asks for pg_current_xact_id()), keeping the server's side open: the
// backend holds the transaction's row locks. Once Refuse() is called it cuts
// every new connection at once.
class CommitLosingProxy {
 public:
  enum class Lose { kAnswer, kCommit, kLocks };

  CommitLosingProxy(int server_port, Lose lose,
                    std::string locks_trigger = "pg_current_xact_id")
      : server_port_(server_port),
        lose_(lose),
        trigger_(lose == Lose::kLocks ? std::move(locks_trigger) : "COMMIT") {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(listen(listen_fd_, 16), 0);
    EXPECT_EQ(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len),
              0);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(pipe(stop_), 0);
    acceptor_ = std::thread([this] { Accept(); });
  }

  ~CommitLosingProxy() {
    char byte = 0;
    (void)write(stop_[1], &byte, 1);
    acceptor_.join();
    for (std::thread& t : relays_) t.join();
    for (int fd : kept_) close(fd);
    close(listen_fd_);
    close(stop_[0]);
    close(stop_[1]);
  }

  int port() const { return port_; }
  void Arm() { armed_ = true; }
  void Refuse(bool refuse) { refuse_ = refuse; }
  bool dropped() const { return dropped_; }

 private:
  void Accept() {
    for (;;) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) return;
      if (fds[1].revents != 0) return;
      const int client = accept(listen_fd_, nullptr, nullptr);
      if (client < 0) return;
      if (refuse_) {
        close(client);
        continue;
      }
      const int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(server_port_);
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0) {
        close(client);
        close(server);
        continue;
      }
      relays_.emplace_back([this, client, server] { Relay(client, server); });
    }
  }

  // Copies bytes both ways until either side closes (or the stop pipe).
  void Relay(int client, int server) {
    bool cut_after_answer = false;
    bool keep_server = false;
    char buf[65536];
    for (;;) {
      pollfd fds[3] = {
          {client, POLLIN, 0}, {server, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (poll(fds, 3, -1) < 0 || fds[2].revents != 0) break;
      if (fds[0].revents != 0) {
        const ssize_t n = read(client, buf, sizeof(buf));
        if (n <= 0) break;
        if (armed_ && !dropped_ &&
            absl::string_view(buf, n).find(trigger_) !=
                absl::string_view::npos) {
          dropped_ = true;
          if (lose_ == Lose::kCommit) {
            keep_server = true;
            break;
          }
          cut_after_answer = true;
          keep_server = lose_ == Lose::kLocks;
        }
        if (write(server, buf, n) != n) break;
      }
      if (fds[1].revents != 0) {
        const ssize_t n = read(server, buf, sizeof(buf));
        if (n <= 0) break;
        // The server has answered: the commit is done; the client never
        // hears of it.
        if (cut_after_answer) break;
        if (write(client, buf, n) != n) break;
      }
    }
    close(client);
    if (keep_server) {
      absl::MutexLock lock(&mu_);
      kept_.push_back(server);
    } else {
      close(server);
    }
  }

  const int server_port_;
  const Lose lose_;
  const std::string trigger_;
  int listen_fd_ = -1;
  int port_ = 0;
  int stop_[2] = {-1, -1};
  std::atomic<bool> armed_{false};
  std::atomic<bool> dropped_{false};
  std::atomic<bool> refuse_{false};
  std::thread acceptor_;
  std::vector<std::thread> relays_;  // Acceptor thread only, then joined.
  absl::Mutex mu_;
  std::vector<int> kept_ ABSL_GUARDED_BY(mu_);
};

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = testing::PostgresServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    auto url = server_->CreateDatabase("parley");
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
  }

  std::unique_ptr<PgStore> Open() {
    PgStoreOptions options;
    options.url = url_;
    options.reconnect_min = absl::Milliseconds(10);
    options.reconnect_max = absl::Milliseconds(100);
    auto store = PgStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Users u0..u5, all members of group "team".
  void CreateUsersAndGroup() {
    std::unique_ptr<PgStore> store = Open();
    ASSERT_NE(store, nullptr);
    GroupRecord team{"team", "", {}, absl::Now()};
    for (int i = 0; i < kUsers; ++i) {
      ASSERT_TRUE(store->CreateUser({UserId(i), "", absl::Now()}).ok());
      team.members.push_back(UserId(i));
    }
    ASSERT_TRUE(store->CreateGroup(team, 100).ok());
  }

  std::unique_ptr<testing::PostgresServer> server_;
  std::string url_;
};

// Lets forked replicas start appending at the same moment: each says it is
// ready on one pipe and waits for a byte on the other.
struct StartLine {
  int ready[2];
  int go[2];
};

// A replica: `count` appends from process `replica` (all in flight at once,
// so they commit in batches) to conversations and users the other replica
// writes to too, every third with a client_msg_id the other replica sends
// as well. Runs in a forked child; exits 0 when every append succeeded.
[[noreturn]] void RunReplica(const std::string& url, int replica, int count,
                             const StartLine& start) {
  PgStoreOptions options;
  options.url = url;
  options.pipeline.max_batch = 64;  // Many transactions, many overlaps.
  auto store = PgStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "replica %d: %s\n", replica,
                 store.status().ToString().c_str());
    _exit(2);
  }
  char byte = 0;
  if (write(start.ready[1], &byte, 1) != 1 ||
      read(start.go[0], &byte, 1) != 1) {
    _exit(3);
  }
  absl::Mutex mu;
  int failed = 0;
  std::string first_error;
  for (int i = 0; i < count; ++i) {
    const std::string key = i % 3 == 0 ? absl::StrCat("shared-", i)
                                       : absl::StrCat("r", replica, "-", i);
    const std::string from = UserId(i % kUsers);
    AppendRequest r = i % 5 == 0
                          ? ToGroup(from, "team", key)
                          : Direct(from, UserId((i / kUsers) % kUsers), key);
    (*store)->Append(std::move(r), [&](absl::StatusOr<AppendResult> result) {
      if (result.ok()) return;
      absl::MutexLock lock(&mu);
      if (failed++ == 0) first_error = result.status().ToString();
    });
  }
  (*store)->Flush();
  if (failed > 0) {
    std::fprintf(stderr, "replica %d: %d appends failed, first: %s\n", replica,
                 failed, first_error.c_str());
    _exit(1);
  }
  _exit(0);
}

pid_t ForkReplica(const std::string& url, int replica, int count,
                  const StartLine& start) {
  const pid_t pid = fork();
  if (pid == 0) RunReplica(url, replica, count, start);
  return pid;
}

// Opens a start line; Release() waits until `n` replicas are ready and
// starts them.
class StartGate {
 public:
  StartGate() {
    EXPECT_EQ(pipe(line_.ready), 0);
    EXPECT_EQ(pipe(line_.go), 0);
  }
  ~StartGate() {
    for (int fd : {line_.ready[0], line_.ready[1], line_.go[0], line_.go[1]}) {
      close(fd);
    }
  }
  const StartLine& line() const { return line_; }
  bool Release(int n) {
    char bytes[8] = {};
    for (int got = 0; got < n;) {
      const ssize_t r = read(line_.ready[0], bytes, 1);
      if (r != 1) return false;
      ++got;
    }
    return write(line_.go[1], bytes, n) == n;
  }

 private:
  StartLine line_;
};

// Every conversation's seqs and every user's inbox_seqs are 1..N; returns
// the number of messages.
void ExpectGapless(PgStore& store, size_t* messages) {
  std::set<std::string> conversations = {"g:team"};
  for (int i = 0; i < kUsers; ++i) {
    for (int j = i; j < kUsers; ++j) {
      conversations.insert("d:" + UserId(i) + ":" + UserId(j));
    }
  }
  std::set<std::pair<std::string, std::string>> keys;
  size_t total = 0;
  for (const std::string& c : conversations) {
    auto page = store.ReadHistory(c, 0, 1000000);
    ASSERT_TRUE(page.ok()) << page.status();
    for (size_t i = 0; i < page->messages.size(); ++i) {
      ASSERT_EQ(page->messages[i].seq, i + 1) << c;
      // Each idempotency key is stored once.
      EXPECT_TRUE(
          keys.insert({page->messages[i].from, page->messages[i].client_msg_id})
              .second)
          << page->messages[i].client_msg_id;
    }
    EXPECT_EQ(*store.ConversationHead(c), page->messages.size());
    total += page->messages.size();
  }
  for (int u = 0; u < kUsers; ++u) {
    auto inbox = store.ReadInbox(UserId(u), 0, 0, 1000000);
    ASSERT_TRUE(inbox.ok()) << inbox.status();
    for (size_t i = 0; i < inbox->size(); ++i) {
      ASSERT_EQ((*inbox)[i].inbox_seq, i + 1) << UserId(u);
    }
    EXPECT_EQ(*store.InboxHead(UserId(u)), inbox->size());
  }
  EXPECT_EQ(store.Stats()->messages, total);
  *messages = total;
}

TEST_F(PgStoreTest, TwoProcessesWritingTheSameConversationsStayGapless) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  constexpr int kPerReplica = 3000;
  StartGate gate;
  const pid_t a = ForkReplica(url_, 1, kPerReplica, gate.line());
  const pid_t b = ForkReplica(url_, 2, kPerReplica, gate.line());
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  // Both connected before either appends: their batches overlap.
  EXPECT_TRUE(gate.Release(2));
  for (pid_t pid : {a, b}) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    // Exit code 0: no append failed, deadlocks included.
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "replica " << pid << " status " << status;
  }
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  size_t messages = 0;
  ASSERT_NO_FATAL_FAILURE(ExpectGapless(*store, &messages));
  // Each replica's own keys once, the shared ones once between them.
  const size_t shared = (kPerReplica + 2) / 3;
  EXPECT_EQ(messages, 2 * (kPerReplica - shared) + shared);
}

TEST_F(PgStoreTest, ReplicaKilledMidBatchLeavesNoGapOrHalfMessage) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  StartGate gate;
  const pid_t victim = ForkReplica(url_, 1, 1000000, gate.line());
  ASSERT_GT(victim, 0);
  ASSERT_TRUE(gate.Release(1));
  // Wait until it has committed something, then kill it mid-stream.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (Sql(url_, "SELECT count(*) FROM messages") == "0" &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(victim, &status, 0), victim);
  ASSERT_TRUE(WIFSIGNALED(status));
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  size_t messages = 0;
  ASSERT_NO_FATAL_FAILURE(ExpectGapless(*store, &messages));
  EXPECT_GT(messages, 0u);
  // Every message entered its inboxes: nothing half-written.
  EXPECT_EQ(Sql(url_,
                "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 "
                "FROM inbox i WHERE i.message_id = m.id) OR NOT EXISTS "
                "(SELECT 1 FROM sent s WHERE s.message_id = m.id)"),
            "0");
  // The survivors go on from the counters.
  auto next = AppendSync(*store, Direct("u0", "u1", "after-kill"));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->message.seq, *store->ConversationHead("d:u0:u1"));
}

TEST_F(PgStoreTest, PostgresRestartFailsWritesUnavailableThenRecovers) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  auto before = AppendSync(*store, Direct("u0", "u1", "before"));
  ASSERT_TRUE(before.ok()) << before.status();

  ASSERT_TRUE(server_->Stop().ok());
  auto down = AppendSync(*store, Direct("u0", "u1", "while-down"));
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable)
      << down.status();
  EXPECT_THAT(std::string(down.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));
  EXPECT_EQ(store->InboxHead("u0").status().code(),
            absl::StatusCode::kUnavailable);

  ASSERT_TRUE(server_->Restart().ok());
  // Reads succeed at once: each pooled connection the restart closed is
  // replaced on its first use.
  for (int i = 0; i < 8; ++i) {
    auto head = store->InboxHead("u1");
    ASSERT_TRUE(head.ok()) << head.status();
    EXPECT_EQ(*head, 1u);
  }
  // The store reconnects by itself; as the gateway does, retry the send.
  absl::StatusOr<AppendResult> again;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    again = AppendSync(*store, Direct("u0", "u1", "while-down"));
  } while (absl::IsUnavailable(again.status()) && absl::Now() < deadline);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->duplicate);
  EXPECT_EQ(again->message.seq, 2u);
  // What was acknowledged before is there.
  auto history = store->ReadHistory("d:u0:u1", 0, 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->messages.size(), 2u);
  EXPECT_EQ(history->messages[0].client_msg_id, "before");
  EXPECT_EQ(*store->InboxHead("u1"), 2u);
  // A retry of the acknowledged send is answered with the original.
  auto dup = AppendSync(*store, Direct("u0", "u1", "before"));
  ASSERT_TRUE(dup.ok());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->sender_inbox_seq, before->sender_inbox_seq);
}

TEST_F(PgStoreTest, FirstWriteAfterARestartWhileIdleSucceeds) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(AppendSync(*store, Direct("u0", "u1", "before")).ok());

  // Restarted while the writer had nothing to write: its connection is
  // closed, which it learns only from the next batch.
  ASSERT_TRUE(server_->Stop().ok());
  ASSERT_TRUE(server_->Restart().ok());
  auto after = AppendSync(*store, Direct("u0", "u1", "after"));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->message.seq, 2u);
  EXPECT_EQ(*store->InboxHead("u1"), 2u);
}

TEST_F(PgStoreTest, WriteTheServerRefusesFailsAloneNotItsBatch) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  // Queued together, most of them commit in one batch with the bad one.
  constexpr int kAppends = 50;
  absl::Mutex mu;
  std::map<int, absl::Status> results;
  for (int i = 0; i < kAppends; ++i) {
    AppendRequest r = Direct("u0", "u1", absl::StrCat("k", i));
    // An invalid UTF-8 byte: PostgreSQL refuses the text.
    if (i == kAppends / 2) r.text = "bad \xff byte";
    store->Append(std::move(r), [&, i](absl::StatusOr<AppendResult> result) {
      absl::MutexLock lock(&mu);
      results[i] = result.status();
    });
  }
  store->Flush();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(results.size(), static_cast<size_t>(kAppends));
  for (const auto& [i, status] : results) {
    EXPECT_EQ(status.ok(), i != kAppends / 2) << i << ": " << status;
  }
  EXPECT_EQ(*store->ConversationHead("d:u0:u1"), kAppends - 1u);
  // A NUL is refused before the server sees it (libpq would cut it).
  auto nul = AppendSync(*store, Direct("u0", "u1", std::string("n\0ul", 4)));
  EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->GetUser(std::string("u0\0x", 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Events queued together commit in one batch, several on one target: the
// target row is written once, as the last of them left it, and the delete
// empties the text of the edit before it in the same transaction.
TEST_F(PgStoreTest, EditsAndDeletesOfOneBatchLeaveTheTargetAsTheLastLeftIt) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  AppendRequest text = ToGroup("u0", "team", "c1");
  text.text = "secret";
  ASSERT_TRUE(AppendSync(*store, text).ok());
  auto change = [](const std::string& key, const std::string& new_text) {
    AppendRequest r = ToGroup("u0", "team", key);
    r.kind = new_text.empty() ? MessageKind::kDelete : MessageKind::kEdit;
    r.target_seq = 1;
    r.text = new_text;
    return r;
  };
  const uint64_t transactions = store->transactions();
  absl::Mutex mu;
  std::vector<absl::StatusOr<AppendResult>> results(4);
  const AppendRequest requests[] = {change("e1", "still secret"),
                                    change("x1", ""), change("e2", "again"),
                                    ToGroup("u1", "team", "c2")};
  for (int i = 0; i < 4; ++i) {
    store->Append(requests[i], [&, i](absl::StatusOr<AppendResult> result) {
      absl::MutexLock lock(&mu);
      results[i] = std::move(result);
    });
  }
  store->Flush();
  // The first may commit alone; the rest wait for it and go together.
  EXPECT_LE(store->transactions() - transactions, 2u);
  absl::MutexLock lock(&mu);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(results[3].ok()) << results[3].status();
  EXPECT_EQ(results[3]->message.seq, 4u);
  auto history = store->ReadHistory("g:team", 0, 10);
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->messages.size(), 4u);
  EXPECT_TRUE(history->messages[0].deleted);
  EXPECT_EQ(history->messages[0].text, "");
  EXPECT_NE(history->messages[0].edited_at, absl::InfinitePast());
  EXPECT_EQ(history->messages[1].text, "");
  EXPECT_EQ(history->messages[2].kind, MessageKind::kDelete);
  EXPECT_EQ(Sql(url_,
                "SELECT count(*) FROM messages WHERE text LIKE "
                "'%secret%'"),
            "0");
}

// Users and g:team created as in PgStoreTest, and a store reaching
// PostgreSQL through proxy_, which loses what `lose` names once the store's
// next batch runs: the store's view of a COMMIT whose outcome it may not know.
class PgStoreInDoubtTest : public PgStoreTest {
 protected:
  // The store learns a lost commit's fate within `in_doubt`, and its
  // backends end themselves after `idle_in_transaction` (by default never,
  // so that the store alone must end a backend left behind); null (with the
  // failure reported) if it could not be opened.
  std::unique_ptr<PgStore> OpenArmed(
      CommitLosingProxy::Lose lose, absl::Duration in_doubt,
      absl::Duration idle_in_transaction = absl::ZeroDuration(),
      std::string locks_trigger = "pg_current_xact_id") {
    CreateUsersAndGroup();
    if (HasFatalFailure()) return nullptr;
    proxy_ = std::make_unique<CommitLosingProxy>(server_->port(), lose,
                                                 std::move(locks_trigger));
    PgStoreOptions options;
    options.url =
        absl::StrCat("postgres://parley@127.0.0.1:", proxy_->port(), "/parley");
    options.reconnect_min = absl::Milliseconds(10);
    options.reconnect_max = absl::Milliseconds(50);
    options.commit_in_doubt_timeout = in_doubt;
    options.idle_in_transaction_timeout = idle_in_transaction;
    auto store = PgStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    proxy_->Arm();
    return std::move(store).value();
  }

  // Outlives the tests' stores, which close their connections through it.
  std::unique_ptr<CommitLosingProxy> proxy_;
};

// The gateway's retry of a send whose outcome it was not told: answered
// from the idempotency key if it was stored.
absl::StatusOr<AppendResult> RetryUntilAnswered(Store& store,
                                                const AppendRequest& request) {
  absl::StatusOr<AppendResult> retry;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    retry = AppendSync(store, request);
  } while (absl::IsUnavailable(retry.status()) && absl::Now() < deadline);
  return retry;
}

TEST_F(PgStoreInDoubtTest,
       CommitWhoseAnswerIsLostIsAckedOnceItsStatusIsLearned) {
  std::unique_ptr<PgStore> store =
      OpenArmed(CommitLosingProxy::Lose::kAnswer, absl::Seconds(30));
  ASSERT_NE(store, nullptr);
  auto lost = AppendSync(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(proxy_->dropped());
  // It committed: acked as any commit, with the message's numbers.
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_FALSE(lost->duplicate);
  EXPECT_EQ(lost->sender_inbox_seq, 1u);
  EXPECT_EQ(lost->message.seq, 1u);
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM messages"), "1");

  auto again = AppendSync(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->message.message_id, lost->message.message_id);
  EXPECT_EQ(*store->InboxHead("u1"), 1u);
}

TEST_F(PgStoreInDoubtTest, CommitThatNeverArrivedEndsItsTransactionAndFails) {
  std::unique_ptr<PgStore> store =
      OpenArmed(CommitLosingProxy::Lose::kCommit, absl::Seconds(30));
  ASSERT_NE(store, nullptr);
  auto lost = AppendSync(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(proxy_->dropped());
  // Its backend still held the transaction (and the users' locks) open: the
  // writer ended it, so the answer is certain and the next write can lock.
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable)
      << lost.status();
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM messages"), "0");

  auto retry = RetryUntilAnswered(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->duplicate);
  EXPECT_EQ(retry->sender_inbox_seq, 1u);
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM messages"), "1");
}

TEST_F(PgStoreInDoubtTest, CommitWhoseStatusCannotBeLearnedFailsSayingSo) {
  std::unique_ptr<PgStore> store =
      OpenArmed(CommitLosingProxy::Lose::kAnswer, absl::Milliseconds(300));
  ASSERT_NE(store, nullptr);
  proxy_->Refuse(true);  // PostgreSQL unreachable from the store from now on.
  auto lost = AppendSync(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(proxy_->dropped());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(lost.status().message(),
              HasSubstr("could not learn within 300ms whether it was stored"));
  EXPECT_THAT(lost.status().message(), HasSubstr("same client_msg_id"));

  // It did commit: the retry is answered from the idempotency key, acked
  // once with the original inbox_seq.
  proxy_->Refuse(false);
  auto retry = RetryUntilAnswered(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->sender_inbox_seq, 1u);
  EXPECT_EQ(retry->message.seq, 1u);
  EXPECT_EQ(*store->InboxHead("u1"), 1u);
}

TEST_F(PgStoreInDoubtTest, BackendLeftHoldingTheBatchsLocksIsEndedOnReconnect) {
  // The first round trip's answer is lost while its backend holds u0's and
  // u1's row locks and waits for a client that is gone. The batch runs
  // again on a new connection, which could not take the locks (and no
  // write to u0 or u1 could, from any replica) had the reconnect not ended
  // that backend.
  std::unique_ptr<PgStore> store =
      OpenArmed(CommitLosingProxy::Lose::kLocks, absl::Seconds(30));
  ASSERT_NE(store, nullptr);
  auto sent = AppendSync(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(proxy_->dropped());
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->message.seq, 1u);
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM messages"), "1");
}

TEST_F(PgStoreInDoubtTest, AdminTransactionCutOffLetsGoOfItsLocks) {
  // DeleteUser's connection is cut once its transaction has locked g:team's
  // counter and u2's row; the backend, not told, waits for the next
  // statement. Every write to u2 or g:team, from any replica, would wait
  // for it had the server not ended it after idle_in_transaction.
  std::unique_ptr<PgStore> store =
      OpenArmed(CommitLosingProxy::Lose::kLocks, absl::Seconds(30),
                absl::Seconds(1), "FROM users WHERE id = $1 FOR UPDATE");
  ASSERT_NE(store, nullptr);
  absl::Status deleted = store->DeleteUser("u2");
  ASSERT_TRUE(proxy_->dropped());
  EXPECT_EQ(deleted.code(), absl::StatusCode::kUnavailable) << deleted;

  auto sent = AppendSync(*store, Direct("u2", "u0", "k"));
  ASSERT_TRUE(sent.ok()) << sent.status();
  auto group = AppendSync(*store, ToGroup("u0", "team", "g"));
  ASSERT_TRUE(group.ok()) << group.status();
  // The cut transaction rolled back: u2 is still there.
  EXPECT_TRUE(store->GetUser("u2").ok());
}

TEST_F(PgStoreInDoubtTest,
       CommitLostInACrashIsNotTakenForTheTransactionReusingItsId) {
  // The WAL writer idle: the batch's first round trip stays in the WAL
  // buffers, and the crash loses its transaction id with it.
  ASSERT_EQ(Sql(url_, "ALTER SYSTEM SET wal_writer_delay = '10s'"), "");
  ASSERT_EQ(Sql(url_, "SELECT pg_reload_conf()"), "t");

  std::unique_ptr<PgStore> store =
      OpenArmed(CommitLosingProxy::Lose::kCommit, absl::Seconds(30));
  ASSERT_NE(store, nullptr);
  proxy_->Refuse(true);  // The writer cannot come back before the crash.
  absl::StatusOr<AppendResult> lost;
  std::thread send([&] { lost = AppendSync(*store, Direct("u0", "u1", "k")); });
  // Joined on every way out (the writer gives up after 30 s without a
  // server).
  struct Join {
    CommitLosingProxy& proxy;
    std::thread& thread;
    ~Join() {
      proxy.Refuse(false);
      if (thread.joinable()) thread.join();
    }
  } join{*proxy_, send};
  std::string xact;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (xact.empty() && absl::Now() < deadline) {
    xact = Sql(url_,
               "SELECT backend_xid FROM pg_stat_activity WHERE backend_xid IS "
               "NOT NULL AND pid <> pg_backend_pid()");
  }
  ASSERT_TRUE(proxy_->dropped());
  ASSERT_FALSE(xact.empty());
  ASSERT_TRUE(server_->Crash().ok());
  ASSERT_TRUE(server_->Restart().ok());
  // Other transactions take the lost one's id, and commit.
  uint64_t reused = 0;
  ASSERT_LE(std::stoull(Sql(url_, "SELECT pg_current_xact_id()")),
            std::stoull(xact))
      << "the crash kept the transaction's id";
  while (reused < std::stoull(xact)) {
    reused = std::stoull(Sql(url_, "SELECT pg_current_xact_id()"));
  }
  ASSERT_EQ(Sql(url_, "SELECT pg_xact_status('" + xact + "'::xid8)"),
            "committed");

  proxy_->Refuse(false);
  send.join();
  // The writer's mark says the batch did not commit: never acked.
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable)
      << lost.status();
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM messages"), "0");
  auto retry = RetryUntilAnswered(*store, Direct("u0", "u1", "k"));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->duplicate);
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM messages"), "1");
}

// A block committing while an append waits for the users' row locks: the
// append reads the blocks after it holds the locks, so it sees the block.
// Another writer's transaction (what a replica's batch or SetBlocked does),
// held open on its own connection until Commit().
class OpenTransaction {
 public:
  OpenTransaction(const std::string& url,
                  std::initializer_list<const char*> statements)
      : conn_(PQconnectdb(url.c_str())) {
    EXPECT_EQ(PQstatus(conn_), CONNECTION_OK);
    Run("BEGIN");
    for (const char* sql : statements) Run(sql);
  }
  ~OpenTransaction() { PQfinish(conn_); }
  void Commit() { Run("COMMIT"); }

 private:
  void Run(const char* sql) {
    PGresult* r = PQexec(conn_, sql);
    EXPECT_NE(PQresultStatus(r), PGRES_FATAL_ERROR) << PQerrorMessage(conn_);
    PQclear(r);
  }
  PGconn* conn_;
};

// An append in flight, its result once done.
struct PendingAppend {
  PendingAppend(Store& store, AppendRequest r) {
    store.Append(std::move(r), [this](absl::StatusOr<AppendResult> out) {
      result = std::move(out);
      done.Notify();
    });
  }
  absl::StatusOr<AppendResult> result;
  absl::Notification done;
};

// Waits until one backend waits for a row lock (an event PostgreSQL shows,
// polled); fails if `pending` finished first.
void AwaitLockWait(const std::string& url, const PendingAppend& pending) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (Sql(url,
             "SELECT count(*) FROM pg_stat_activity WHERE "
             "wait_event_type = 'Lock'") != "1") {
    ASSERT_LT(absl::Now(), deadline) << "the append never waited";
    ASSERT_FALSE(pending.done.HasBeenNotified()) << pending.result.status();
    absl::SleepFor(absl::Milliseconds(5));
  }
}

TEST_F(PgStoreTest, AppendWaitingOnABlocksLocksSeesTheBlock) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  // What SetBlocked does, held open.
  OpenTransaction blocker(
      url_, {"SELECT id FROM users WHERE id = 'u0' OR id = 'u1' ORDER BY id "
             "FOR UPDATE",
             "INSERT INTO blocks(user_id, blocked) VALUES ('u1', 'u0')"});
  PendingAppend append(*store, Direct("u0", "u1", "k"));
  ASSERT_NO_FATAL_FAILURE(AwaitLockWait(url_, append));
  blocker.Commit();
  append.done.WaitForNotification();
  EXPECT_TRUE(IsBlockedError(append.result.status())) << append.result.status();
  EXPECT_EQ(*store->ConversationHead("d:u0:u1"), 0u);
}

// An edit waiting for another replica's batch that deleted its target is
// refused, not applied to the tombstone: its rules read the target as that
// batch left it.
TEST_F(PgStoreTest, EditWaitingForAReplicaThatDeletedItsTargetIsRefused) {
  ASSERT_NO_FATAL_FAILURE(CreateUsersAndGroup());
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(AppendSync(*store, Direct("u0", "u1", "first")).ok());
  // Another replica's delete of the message: a tombstone and a new head.
  OpenTransaction other(
      url_,
      {"SELECT id FROM conversations WHERE id = 'd:u0:u1' FOR UPDATE",
       "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = 'd:u0:u1'",
       "UPDATE messages SET text = '', deleted = true WHERE conversation = "
       "'d:u0:u1' AND seq = 1"});
  AppendRequest edit = Direct("u0", "u1", "edit");
  edit.kind = MessageKind::kEdit;
  edit.target_seq = 1;
  edit.text = "changed";
  PendingAppend append(*store, edit);
  ASSERT_NO_FATAL_FAILURE(AwaitLockWait(url_, append));
  other.Commit();
  append.done.WaitForNotification();
  EXPECT_EQ(append.result.status().code(),
            absl::StatusCode::kFailedPrecondition)
      << append.result.status();
  auto history = store->ReadHistory("d:u0:u1", 0, 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->messages.size(), 1u);
  EXPECT_TRUE(history->messages[0].deleted);
  EXPECT_EQ(history->messages[0].text, "");
  EXPECT_EQ(*store->ConversationHead("d:u0:u1"), 2u);
}

TEST_F(PgStoreTest, ReopenKeepsDataAndGeneration) {
  std::string generation;
  {
    std::unique_ptr<PgStore> store = Open();
    ASSERT_NE(store, nullptr);
    generation = store->Generation();
    ASSERT_TRUE(store->CreateUser({"alice", "A", absl::Now()}).ok());
  }
  std::unique_ptr<PgStore> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->Generation(), generation);
  EXPECT_EQ(store->GetUser("alice")->display_name, "A");
  EXPECT_EQ(Sql(url_, "SELECT max(version) FROM schema_version"),
            absl::StrCat(PgStore::LatestSchemaVersion()));
}

TEST_F(PgStoreTest, ReplicasStartingTogetherMigrateOnce) {
  std::vector<std::unique_ptr<PgStore>> stores(4);
  std::vector<std::thread> threads;
  for (auto& s : stores) {
    threads.emplace_back([&] { s = Open(); });
  }
  for (std::thread& t : threads) t.join();
  for (auto& s : stores) {
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->Generation(), stores[0]->Generation());
  }
  EXPECT_EQ(Sql(url_, "SELECT count(*) FROM schema_version"),
            absl::StrCat(PgStore::LatestSchemaVersion()));
}

TEST_F(PgStoreTest, NewerSchemaIsRefused) {
  ASSERT_NE(Open(), nullptr);
  ASSERT_EQ(Sql(url_, "INSERT INTO schema_version VALUES (999)"), "");
  PgStoreOptions options;
  options.url = url_;
  auto store = PgStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("999"));
}

TEST_F(PgStoreTest, UnreachableServerIsUnavailableNamingIt) {
  ASSERT_TRUE(server_->Stop().ok());
  PgStoreOptions options;
  options.url = url_;
  auto store = PgStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr(absl::StrCat("127.0.0.1:", server_->port())));
}

TEST_F(PgStoreTest, OptionsOutOfRangeAreRefused) {
  PgStoreOptions options;
  options.url = url_;
  options.idle_in_transaction_timeout = absl::Seconds(-1);
  auto store = PgStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("idle_in_transaction_timeout"));
  options.idle_in_transaction_timeout = absl::ZeroDuration();
  options.read_connections = 0;
  EXPECT_EQ(PgStore::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace parley::service
