// PgStore: the Store on PostgreSQL, for several parley-service replicas
// writing to one database at once.
//
// Writes: a CommitPipeline (commit_pipeline.h): ONE writer thread and
// connection take everything queued into one transaction (group commit) and
// the callbacks run after COMMIT returned, in commit order. A batch costs two
// round trips whatever its size, with libpq's pipeline mode and set-based
// statements over arrays:
//   1. BEGIN; lock the batch's conversation counters (creating direct
//      conversations), then its users' inbox counters, each set sorted by id
//      with one statement, so that batches of several replicas always lock
//      in one global order and cannot deadlock; read its groups' members,
//      the blocks between the users of its direct messages (after the user
//      locks, which SetBlocked takes too: a block and an append are
//      ordered), its idempotency keys already stored, its read cursors and
//      its transaction id.
//   2. The IM rules (append_rules.h) decide each request; one statement
//      writes the messages, inbox rows, idempotency keys and both counters;
//      one raises the read cursors; one records the transaction id in the
//      writer's row of writer_commits; COMMIT.
// seq and inbox_seq come from counter rows updated in the transaction
// (`conversations.last_seq`, `users.inbox_head`), so they are gapless across
// replicas; PostgreSQL sequences are not, and number only message ids.
// Membership changes lock the group's conversation counter first too. If
// PostgreSQL still reports a deadlock, a serialization failure or a
// concurrent replica's insert of the same idempotency key, the batch runs
// again (it then finds the key: a duplicate); callers never see those. The
// connection runs with synchronous_commit=on: COMMIT returns once durable.
//
// Admin writes (users, groups) and reads run on a small pool of connections.
//
// PostgreSQL unreachable (restarting): writes in flight and queued fail with
// UNAVAILABLE (retryable), as do reads; a batch or read that finds its
// connection closed since its last use (a restart while it was idle) runs
// again once on a new one. The writer's connections are named (its
// application_name, "parley-service writer <random id>"): on reconnecting,
// the writer ends its earlier backends, which a network cut can leave
// holding a transaction and its row locks open; any connection's backend
// (admin writes run on the pool) that waits inside a transaction for its
// client longer than idle_in_transaction_timeout is ended by the server
// itself. A COMMIT whose answer was lost is in doubt: the writer, once
// reconnected, waits for the transaction to end (pg_xact_status()), then
// reads its row in writer_commits: if the batch committed, its callbacks
// run as for any commit; if not, it fails.
// Only a server away longer than commit_in_doubt_timeout leaves the outcome
// unknown (UNAVAILABLE saying so; a retried send is then answered from its
// idempotency key with the original inbox_seq if it had committed). Each
// connection reconnects by itself, the writer with a growing backoff;
// `store.pg_connection_lost` and `store.pg_reconnected` name the server and
// the reason.
//
// The schema is the store's own: Open() creates it and applies the
// migrations this binary knows, in order, each in a transaction, under an
// advisory lock (replicas starting together take turns); a database whose
// schema is newer than the binary is refused.
//
//   PgStoreOptions options;
//   options.url = "postgres://parley@db:5432/parley";
//   absl::StatusOr<std::unique_ptr<PgStore>> store = PgStore::Open(options);
//
// Threading: thread-safe. Synchronous methods block on the network.
// Destruction commits what is queued, runs its callbacks, then closes.
#ifndef PARLEY_SERVICE_PG_STORE_H_
#define PARLEY_SERVICE_PG_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/commit_pipeline.h"
#include "service/store.h"

namespace parley::service {

struct PgStoreOptions {
  // A libpq connection URI or keyword string, passed to libpq as is.
  std::string url;
  // Group commit: batch size, queue bound, callback backlog.
  CommitPipelineOptions pipeline;
  // Connections in the pool for reads and admin writes.
  int read_connections = 4;
  // How often a batch runs again after a deadlock, serialization failure or
  // concurrent insert of its idempotency key before its writes fail with
  // UNAVAILABLE.
  int max_attempts = 20;
  // The writer's reconnect backoff grows from the first to the second.
  absl::Duration reconnect_min = absl::Milliseconds(50);
  absl::Duration reconnect_max = absl::Seconds(2);
  // How long the writer tries to learn whether a batch whose COMMIT answer
  // was lost committed (the queued writes wait meanwhile).
  absl::Duration commit_in_doubt_timeout = absl::Seconds(10);
  // PostgreSQL ends a backend of this store's that has waited inside a
  // transaction for its client longer than this
  // (idle_in_transaction_session_timeout; 0 never). A network cut can leave
  // a backend whose client is gone holding a transaction open, and with it
  // row locks that every replica's writes to those users and groups wait
  // for, until the server's TCP keepalive notices (hours by default). The
  // store's own transactions never wait on the store for so long.
  absl::Duration idle_in_transaction_timeout = absl::Seconds(10);
  // Called on the writer thread after every batch, before its callbacks,
  // with its operations and how long it took (for metrics).
  std::function<void(size_t operations, absl::Duration latency)> on_commit;
};

class PgStore final : public Store {
 public:
  // Connects, creates or migrates the schema and starts the writer.
  // UNAVAILABLE when PostgreSQL cannot be reached, FAILED_PRECONDITION when
  // its schema is newer than this binary's.
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(PgStoreOptions options);
  ~PgStore() override;

  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  // The newest schema version this binary knows.
  static int LatestSchemaVersion();

  void Flush() override;
  // Transactions the writer ran so far.
  uint64_t transactions() const;

  absl::Status CreateUser(const UserRecord& user) override;
  absl::StatusOr<UserRecord> GetUser(absl::string_view id) override;
  absl::StatusOr<std::vector<UserRecord>> ListUsers(absl::string_view after_id,
                                                    int limit) override;
  absl::Status DeleteUser(absl::string_view id) override;
  absl::Status RevokeTokens(absl::string_view id,
                            absl::Time not_before) override;

  absl::Status CreateGroup(const GroupRecord& group,
                           size_t max_members) override;
  absl::StatusOr<GroupRecord> GetGroup(absl::string_view id) override;
  absl::StatusOr<std::vector<GroupRecord>> ListGroups(
      absl::string_view after_id, int limit) override;
  absl::StatusOr<GroupRecord> AddMembers(
      absl::string_view group_id, const std::vector<std::string>& user_ids,
      size_t max_members) override;
  absl::StatusOr<GroupRecord> RemoveMembers(
      absl::string_view group_id,
      const std::vector<std::string>& user_ids) override;

  void Append(AppendRequest request, AppendCallback done) override;
  absl::StatusOr<uint64_t> InboxHead(absl::string_view user) override;
  absl::StatusOr<std::vector<InboxMessage>> ReadInbox(absl::string_view user,
                                                      uint64_t after_seq,
                                                      uint64_t upto_seq,
                                                      int limit) override;
  absl::StatusOr<HistoryPage> ReadHistory(absl::string_view conversation,
                                          uint64_t before_seq,
                                          int limit) override;
  absl::StatusOr<uint64_t> ConversationHead(
      absl::string_view conversation) override;

  absl::StatusOr<ConversationPage> ListConversations(
      absl::string_view user, absl::string_view page_token, int limit) override;
  absl::StatusOr<uint64_t> CountUnread(absl::string_view user,
                                       absl::string_view conversation,
                                       uint64_t after_seq) override;

  void AdvanceReadCursor(std::string user, std::string conversation,
                         uint64_t seq, CursorCallback done) override;
  absl::StatusOr<uint64_t> ReadCursor(absl::string_view user,
                                      absl::string_view conversation) override;

  absl::StatusOr<std::vector<std::string>> Contacts(
      absl::string_view user, size_t max_group_members) override;
  absl::StatusOr<bool> SetBlocked(absl::string_view user,
                                  absl::string_view other, bool blocked,
                                  size_t max_blocked) override;
  absl::StatusOr<std::vector<std::string>> ListBlocked(
      absl::string_view user) override;
  absl::StatusOr<bool> BlockedEitherWay(absl::string_view a,
                                        absl::string_view b) override;
  absl::StatusOr<StoreStats> Stats() override;
  const std::string& Generation() const override { return generation_; }

  class Connection;  // A libpq connection with its prepared statements.
  struct WriteOp;    // One queued append or read-cursor advance.

 private:
  explicit PgStore(PgStoreOptions options);

  // The writer's connection, reconnected (with backoff) if it was lost,
  // ending the lost connection's backend; UNAVAILABLE while PostgreSQL
  // cannot be reached.
  absl::Status EnsureWriter();
  // Logs the loss of the writer's connection and drops it.
  void WriterLost(const absl::Status& why);
  std::vector<absl::Status> CommitBatch(std::vector<WriteOp>& batch);
  // Runs `ops` in one transaction, again after a deadlock, serialization
  // failure or concurrent insert of a key (up to max_attempts), setting
  // each operation's outcome when it commits.
  absl::Status RunBatch(const std::vector<WriteOp*>& ops);
  // One attempt at `ops`; ABORTED when it should run again, UNAVAILABLE
  // when the connection was lost. Each operation's outcome is set before
  // the COMMIT is sent, and holds only if the transaction commits;
  // `sent_xact` is then its transaction id (xid8, with the epoch), and stays
  // 0 when the attempt failed before.
  absl::Status TryBatch(const std::vector<WriteOp*>& ops, uint64_t* sent_xact);
  // After the writer lost its connection with the COMMIT of transaction
  // `sent_xact` on its way (`lost`): reconnects, waits for the transaction
  // to end and reads the writer's mark, until commit_in_doubt_timeout. OK if
  // it committed, `lost` if not, UNAVAILABLE saying the outcome is unknown
  // otherwise.
  absl::Status ResolveInDoubt(uint64_t sent_xact, const absl::Status& lost);
  // The application_name of the writer's connections, which names them
  // among the server's backends.
  std::string WriterApplicationName() const;
  // Runs `fn` on a pooled connection, reconnected if it was lost; a
  // `read_only` `fn` runs again once on a new connection if the pooled one
  // turns out to be lost (the server restarted since its last use).
  template <typename T>
  T WithConnection(const std::function<T(Connection&)>& fn, bool read_only);
  // Runs `fn` inside a transaction on a pooled connection, again after a
  // deadlock or serialization failure.
  absl::Status InTransaction(
      const std::function<absl::Status(Connection&)>& fn);

  const PgStoreOptions options_;
  std::string server_;      // "host:port", for logs and errors.
  std::string generation_;  // Set by Open.
  // This store's row in writer_commits, which every batch sets to its
  // transaction id: random, so that replicas never share one.
  const std::string writer_id_;

  // Writer thread only: its connection (null while lost), why it was lost,
  // since when, and when to try again.
  std::unique_ptr<Connection> writer_conn_;
  std::string writer_lost_reason_;
  absl::Time writer_lost_at_;
  absl::Time writer_retry_at_ = absl::InfinitePast();
  absl::Duration writer_backoff_;

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(pool_mu_);

  // Last: destroyed first, committing what is queued while the connections
  // still exist.
  std::unique_ptr<CommitPipeline<WriteOp>> pipeline_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_PG_STORE_H_
