// SqliteStore: the embedded Store, one SQLite database file in WAL mode.
//
// Writes: a CommitPipeline (commit_pipeline.h): ONE writer thread owns the
// only writing connection. Writes queue up while a transaction commits; the
// writer then takes everything queued (up to `max_batch` operations) into the
// next transaction, each operation under its own SAVEPOINT so one failing
// operation rolls back alone, and commits once: many appends per transaction
// and per fsync (group commit). Appends follow the IM rules every store
// shares (append_rules.h). With
// `synchronous=FULL` (the default) a commit returns only after the WAL is
// fsynced, so every callback observes a durable write. Callbacks run after
// the commit, in commit order, on a callback thread of their own: the writer
// commits the next batch while the previous batch's callbacks deliver it.
//
// A batch first runs without savepoints (they cost a statement journal per
// operation); only if one of its operations fails is the transaction rolled
// back and the batch run again with one SAVEPOINT per operation, so a failing
// operation still rolls back alone. An operation's `apply` may therefore run
// twice and must set its outputs rather than add to them.
//
// Checkpoints (copying the WAL back into the database file) run on a thread
// and connection of their own, not inside the writer's commits: the writer
// reports the WAL's length after each commit and the checkpointer runs a
// PASSIVE checkpoint whenever `checkpoint_frames` more have been written. A WAL
// starts over only once a checkpoint has copied all of it, which a writer that
// never pauses would prevent; so past four times the threshold the writer runs
// one checkpoint itself between two transactions (one checkpoint at a time).
//
// Inboxes are stored as runs, not as a row per message and recipient: a row
// (user, inbox_seq i, message at seq s of conversation c, span) stands for
// the messages s, s+1, ... of c at inbox_seq i, i+1, ...; span 0 (open) means
// as many as c has, up to the user's next row. A user gets a new row only
// when their inbox moves to another conversation (or they join one); every
// further message of the same conversation extends the open run without a
// write. So a group message costs one message row, not one row per member,
// and a run of direct messages between two users costs no inbox rows after
// the first. A run is closed (its span set) when its user leaves the group,
// since the group's later messages are not theirs. The writer keeps each
// recent recipient's last row in memory (InboxTail); the view
// `inbox_entries` lists the inboxes one row per message, for operators.
//
// Reads: a small pool of read connections with prepared statements; in WAL
// mode they never wait for the writer.
//
// A full disk: writes fail with UNAVAILABLE ("the store's disk is full",
// retryable), reads go on, and writes commit again as soon as space is
// freed, without a restart. The store logs `store.disk_full` when writes
// start failing for it and `store.disk_full_cleared` at the first commit
// after a second without such a failure. A checkpoint that fails (the
// database file cannot grow) is retried once the WAL has grown by another
// interval or space is back, not before every transaction. Open() fails,
// naming the path and the reason, if the database or its directory is not
// writable.
//
//   SqliteStoreOptions options;
//   options.path = "/var/lib/parley/parley.db";
//   absl::StatusOr<std::unique_ptr<SqliteStore>> store =
//       SqliteStore::Open(options);
//
// Threading: thread-safe. Synchronous methods block (disk I/O, or waiting for
// the writer for admin writes). Destruction commits what is queued, runs its
// callbacks, then closes.
#ifndef PARLEY_SERVICE_SQLITE_STORE_H_
#define PARLEY_SERVICE_SQLITE_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/commit_pipeline.h"
#include "service/store.h"

namespace parley::service {

// Who ran a checkpoint: the checkpointer thread (appends go on meanwhile), or
// the writer between two transactions so that the WAL starts over (appends
// wait).
enum class CheckpointBy { kCheckpointer, kWriter };

// Options for SqliteStore.
struct SqliteStoreOptions {
  // The database file; created with its schema if missing.
  std::string path;
  // PRAGMA synchronous: "FULL" (fsync every commit; the default, what makes
  // an ack durable), "NORMAL" (may lose the last commits on power loss),
  // "OFF", or "EXTRA".
  std::string synchronous = "FULL";
  // Most write operations in one transaction.
  size_t max_batch = 1024;
  // Most write operations waiting for the writer. Beyond it writes fail at
  // once with UNAVAILABLE (retryable), so an overload costs a retry, not
  // unbounded memory.
  size_t max_queued = 100000;
  // Committed batches whose callbacks may wait; beyond it the writer waits.
  size_t max_pending_batches = 8;
  // Read connections in the pool.
  int read_connections = 4;
  // How long a connection waits on a lock before failing.
  absl::Duration busy_timeout = absl::Seconds(5);
  // Page cache of each connection, in KiB (PRAGMA cache_size).
  int64_t cache_kib = 64 * 1024;
  // WAL length (in pages) at which the checkpointer copies the WAL back into
  // the database. SQLite's own default is 1000; a longer interval copies a
  // page that many commits rewrite (a group's members' inbox pages) once
  // instead of once per commit.
  int checkpoint_frames = 8192;
  // Write each commit's WAL frames with one call instead of two per frame
  // (service/wal_write_vfs.h). Applies only with synchronous FULL or EXTRA.
  bool gather_wal_writes = true;
  // Called on the writer thread after every commit, before the batch's
  // callbacks, with the number of operations in it and how long it took,
  // from a writer's checkpoint if one was due through COMMIT (for metrics).
  std::function<void(size_t operations, absl::Duration latency)> on_commit;
  // Called after every completed checkpoint, on the thread that ran it, with
  // how long it took including the wait for a checkpoint already running
  // (for metrics). For kWriter that is how long appends waited.
  std::function<void(CheckpointBy by, absl::Duration latency)> on_checkpoint;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) the database and starts the writer thread.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      SqliteStoreOptions options);
  ~SqliteStore() override;

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // Blocks until every write queued before the call has committed and its
  // callback has run (used on shutdown to finish in-flight writes).
  void Flush() override;

  // Transactions committed so far (each holds one or more operations).
  uint64_t transactions() const;
  // Checkpoints completed, by the checkpointer thread or the writer.
  uint64_t checkpoints() const;
  // Write operations waiting for the writer thread.
  size_t queued_writes() const;

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

  class Connection;  // A sqlite3 handle with its prepared statements.

 private:
  // One queued write: `apply` runs inside the batch transaction under its own
  // savepoint (an error rolls back this operation only); `done` runs after
  // the commit with apply's status, or the commit's failure.
  struct WriteOp {
    std::function<absl::Status(Connection&)> apply;
    std::function<void(absl::Status)> done;
  };

  explicit SqliteStore(SqliteStoreOptions options);

  void Submit(WriteOp op);
  // Submits `apply` and waits for its commit.
  absl::Status WriteAndWait(std::function<absl::Status(Connection&)> apply);

  void CheckpointLoop();
  // One PASSIVE checkpoint on `c`, one at a time; false if it failed (logged).
  bool Checkpoint(Connection& c, CheckpointBy by);
  // Whether the writer runs a checkpoint before its next transaction.
  bool WriterCheckpointDue() const;
  // Runs the batch in one transaction; returns each operation's status.
  std::vector<absl::Status> CommitBatch(std::vector<WriteOp>& batch);
  // Runs every operation of the batch in the open transaction, each under its
  // own savepoint when `savepoints`; false if one failed (without savepoints
  // it stops at the first failure). If SQLite rolled the whole transaction
  // back itself (a full disk, an I/O error), it stops there and sets `lost`
  // to that operation's status.
  bool ApplyBatch(std::vector<WriteOp>& batch, bool savepoints,
                  std::vector<absl::Status>& statuses, absl::Status& lost);
  // Logs when writes start failing because the disk is full, and when they
  // commit again (once each, not per write).
  void NoteDiskFull(const std::vector<absl::Status>& statuses, bool committed);

  // Runs `read` on a pooled read connection.
  template <typename T>
  T WithReader(const std::function<T(Connection&)>& read);

  const SqliteStoreOptions options_;
  std::string generation_;                   // Set by Open.
  std::unique_ptr<Connection> writer_conn_;  // Used by the writer thread only.
  // Used by the checkpointer thread only.
  std::unique_ptr<Connection> checkpoint_conn_;

  mutable absl::Mutex mu_;
  // The writer has committed everything and stopped (the checkpointer ends).
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  int last_wal_frames_ = 0;  // Set by the WAL hook, on the writer thread.
  // Writer thread only: the WAL's length when the writer's last checkpoint
  // failed (-1: it did not); whether writes fail because the disk is full,
  // since when, and the last write refused for it.
  int writer_checkpoint_failed_at_ = -1;
  bool disk_full_ = false;
  absl::Time disk_full_since_;
  absl::Time last_refused_;
  uint64_t refused_while_full_ = 0;
  int wal_frames_ ABSL_GUARDED_BY(mu_) = 0;  // After the last commit.
  uint64_t checkpoints_ ABSL_GUARDED_BY(mu_) = 0;
  // The WAL's length at the last checkpoint, whether it copied everything or
  // a reader's snapshot held frames back: the next one is due
  // `checkpoint_frames` later (not at once, which ran pass after pass for as
  // long as a read lasted).
  int checkpoint_mark_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_
      ABSL_GUARDED_BY(pool_mu_);

  absl::Mutex checkpoint_mu_;  // Held while a checkpoint runs.
  std::thread checkpointer_;
  // Destroyed first (see the destructor), while the connections exist.
  std::unique_ptr<CommitPipeline<WriteOp>> pipeline_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SQLITE_STORE_H_
