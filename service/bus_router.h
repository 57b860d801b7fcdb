// BusRouter: the Router (router.h) of one replica among several that share
// a store, reaching the sessions on the other replicas over a Bus (bus.h).
// It wraps the replica's LocalRouter: every call serves the local sessions
// and, where other replicas' sessions are concerned, tells them (the wire
// format is proto/parley/v1/replica_bus.proto).
//
// Live delivery. After a commit, the committing replica delivers to its own
// sessions and publishes the message with every recipient's inbox_seq;
// the others deliver it to theirs. Frames that are no inbox messages
// (typing, receipts, presence) travel the same way. The bus loses and
// reorders (publishes of different replicas interleave in any order), so a
// receiving session relies on LocalRouter's per-session order: a message
// past a gap holds the session and catches it up from the store. A replica
// that may have missed publishes (it reconnected to the bus, or it was a
// slow consumer) catches up every local session from the store (InboxHead
// per user, then CatchUpTo); a replica whose own publishes may have been
// lost (it reconnected, its outbound queue overflowed) asks every replica to
// do the same (BusCatchUp), and so does every replica when another one goes
// silent (it may have died between a commit and its publish). Publishing
// never blocks a commit callback: with
// the bus down, sends are still stored and acknowledged.
//
// Every replica subscribes to every event (one subject, "<prefix>.ev"): no
// subscription per user to set up on the open path, so no window in which a
// just-opened session is missing from the bus's interest; the price is that
// every replica reads every delivery (see service/README.md).
//
// Cluster-wide state. Operator calls (Disconnect, Broadcast, ListSessions,
// TakeCensus) are requests every replica answers; the caller gathers answers
// until every replica it knows of (from heartbeats) answered or
// `request_timeout` passed. Presence: each replica keeps which users have a
// session on which other replica, from BusPresence events, corrected by the
// heartbeats' digests. A user is online while any replica holds a session
// of theirs; BeginOpen reports a first session, and Close a last one, when
// no other replica holds one. Races and replica death are described in
// service/README.md. max_sessions_per_user is per replica.
//
// Threading: thread-safe. Bus handlers never block; store reads (catch-up,
// contacts) run through `run_blocking`. Start() and the destructor are
// called by the owner.
#ifndef PARLEY_SERVICE_BUS_ROUTER_H_
#define PARLEY_SERVICE_BUS_ROUTER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "parley/v1/replica_bus.pb.h"
#include "service/bus.h"
#include "service/local_router.h"
#include "service/router.h"
#include "service/store.h"

namespace parley::service {

struct BusRouterOptions {
  // This replica's id, unique in the cluster (--replica_id).
  std::string replica_id;
  // The first token of every subject (--nats_subject_prefix), so clusters
  // can share a NATS server.
  std::string subject_prefix = "parley";
  // How long operator requests wait for every replica's answer.
  absl::Duration request_timeout = absl::Seconds(1);
  // Between heartbeats; a replica unheard of for `replica_timeout` is gone.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration replica_timeout = absl::Seconds(5);
  // As MessagingOptions::presence_max_group_members.
  size_t presence_max_group_members = 100;
};

class BusRouter final : public Router {
 public:
  // Runs a task where it may block on the store.
  using Runner = std::function<void(std::function<void()>)>;

  // Everything passed must outlive this object.
  BusRouter(LocalRouter* local, Bus* bus, Store* store, Runner run_blocking,
            BusRouterOptions options);
  ~BusRouter() override;

  BusRouter(const BusRouter&) = delete;
  BusRouter& operator=(const BusRouter&) = delete;

  // Subscribes, learns which users the other replicas hold (waiting up to
  // request_timeout for their answers) and starts the heartbeats. Before the
  // first session opens.
  absl::Status Start();
  // Stops the heartbeats and every subscription (no more bus events and no
  // more work for `run_blocking`); the Router calls keep working, for this
  // replica's sessions. Idempotent; the destructor calls it.
  void Stop();

  void AddStream(LinkStream* stream, std::string gateway_id) override;
  std::vector<std::string> RemoveStream(LinkStream* stream) override;
  absl::StatusOr<bool> BeginOpen(LinkStream* stream,
                                 const SessionInfo& info) override;
  bool CompleteOpen(const std::string& session_id,
                    const v1::SessionAccepted& accepted,
                    const std::vector<v1::Message>& replay) override;
  bool AbortOpen(LinkStream* stream,
                 const v1::SessionRejected& rejected) override;
  std::optional<std::string> Close(LinkStream* stream,
                                   absl::string_view session_id) override;
  std::optional<std::string> UserOf(
      LinkStream* stream, absl::string_view session_id) const override;
  size_t DeliverMessage(const std::vector<InboxEntry>& recipients,
                        const v1::Message& message,
                        absl::string_view except_session) override;
  void SendToSession(absl::string_view session_id, v1::ServerFrame frame,
                     uint64_t inbox_seq = 0) override;
  void SendToUser(const std::string& user, const v1::ServerFrame& frame,
                  absl::string_view except_session = "") override;
  void SendToUsers(const std::vector<std::string>& users,
                   const v1::ServerFrame& frame) override;
  Disconnected Disconnect(absl::string_view user_id,
                          absl::string_view session_id, uint32_t close_code,
                          const std::string& reason, bool reconnect) override;
  Broadcasted Broadcast(const v1::ServerFrame& frame) override;
  std::vector<SessionInfo> ListSessions(
      absl::string_view user_id) const override;
  bool IsOnline(absl::string_view user_id) const override;
  size_t session_count() const override;
  size_t gateway_count() const override;
  size_t stream_count() const override;
  Census TakeCensus() const override;

  // The other replicas heard from within replica_timeout.
  std::vector<std::string> Replicas() const;
  // Catches every local session up from the store (blocks on it): what a
  // replica does when it may have missed publishes.
  void CatchUpAll();

 private:
  struct Replica {
    absl::Time last_seen;
    std::set<std::string> users;
    // Declared gone (no heartbeat): back if it is heard from again.
    bool gone = false;
  };

  std::string Subject(absl::string_view suffix) const;
  void Publish(v1::BusEvent event);
  // Sends a request to every replica and parses their answers.
  std::vector<v1::BusAnswer> Ask(v1::BusEvent event) const;
  void OnEvent(const Bus::Message& message);
  void OnRequest(const Bus::Message& message);
  void OnBusEvent(Bus::Event event);
  // Publishes a presence change of this replica's.
  void PublishPresence(const std::string& user, bool online, bool announced);
  bool RemoteHasLocked(absl::string_view user) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces what a replica holds; returns the users who came online and
  // went offline cluster-wide by it.
  void SetReplicaUsersLocked(const std::string& replica,
                             std::set<std::string> users,
                             std::vector<std::string>* online,
                             std::vector<std::string>* offline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Tells this replica's sessions of the user's contacts (the others do
  // the same for theirs), on a blocking thread.
  void AnnounceLocally(std::vector<std::string> users, bool online);
  // Asks a replica for its users (after a digest mismatch).
  void RefreshReplica(const std::string& replica);
  void RunHeartbeats();
  void Heartbeat();
  // run_blocking_, unless stopped.
  void RunBlocking(std::function<void()> task);

  LocalRouter* const local_;
  Bus* const bus_;
  Store* const store_;
  const Runner run_blocking_;
  const BusRouterOptions options_;

  mutable absl::Mutex mu_;
  std::map<std::string, Replica> replicas_ ABSL_GUARDED_BY(mu_);
  // user -> other replicas with a session of theirs.
  std::map<std::string, std::set<std::string>, std::less<>> remote_users_
      ABSL_GUARDED_BY(mu_);
  // Replicas whose user list is being asked for.
  std::set<std::string> refreshing_ ABSL_GUARDED_BY(mu_);

  // A publish was dropped before it left: the next heartbeat asks every
  // replica to catch up.
  std::atomic<bool> owe_catch_up_call_{false};
  absl::Mutex run_mu_;
  bool stopped_ ABSL_GUARDED_BY(run_mu_) = false;
  std::vector<Bus::Subscription> subscriptions_;
  absl::Notification stop_;
  std::thread heartbeats_;
};

// `id` as one subject token: characters other than letters, digits, '-' and
// '_' become "%XX", so any id is a valid token.
std::string EncodeSubjectToken(absl::string_view id);

// 64-bit FNV-1a: the same in every process (BusHeartbeat's digest).
uint64_t Fnv1a64(absl::string_view s);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_BUS_ROUTER_H_
