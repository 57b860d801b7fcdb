// LocalRouter: the Router (router.h) of one replica: which client sessions
// are live on this replica's gateway link streams, in memory only (after a
// service restart the gateways re-announce their sessions).
//
// Per-session order. A live session that was sent everything up to L
// (replay, deliveries, Acks: an Ack's inbox_seq is a place in the inbox
// too) takes the next inbox message or Ack at L+1 at once. At or below L a
// message is dropped as already delivered (an Ack still goes out: it
// answers a repeated Send, but it moves nothing). Above L+1 is a gap: the
// session holds that frame and everything after it, asks for a catch-up of
// (L, gap) through the CatchUp function, and once FinishCatchUp() brings the
// missing messages it sends them, then the held frames minus what the
// catch-up covered, and is live again. Nothing is dropped to get ahead and
// nothing waits for a later message to reveal a gap. With one replica the
// store's callbacks come in commit order, so gaps never happen; with
// several, a replica's own commits and other replicas' publishes interleave
// in any order, and a lost publish shows up as a gap at the next frame or a
// CatchUpTo().
//
// A catch-up reads at most the replay limit; a session further behind gets
// what was read and sees the rest as a gap its client syncs (inbox rule 3).
// A failed read is retried (the request's `attempt` counts the failures; the
// CatchUp function chooses the delay): the session stays held meanwhile.
//
//   LocalRouter router(16);
//   router.SetCatchUp([&](LocalRouter::CatchUpRequest r) { post(r); });
//   router.AddStream(&stream, "gw-1");
//   ... on a worker: router.FinishCatchUp(r, ReadInboxMessages(...));
//
// Threading: thread-safe; one mutex guards everything and LinkStream::Send()
// and the CatchUp function are called under it (neither may call back into
// the Router). Never blocks on I/O.
#ifndef PARLEY_SERVICE_LOCAL_ROUTER_H_
#define PARLEY_SERVICE_LOCAL_ROUTER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/link_stream.h"
#include "service/router.h"
#include "service/store.h"

namespace parley::service {

class LocalRouter final : public Router {
 public:
  // A session behind: it wants its user's inbox messages with
  // after_seq < inbox_seq <= upto_seq.
  struct CatchUpRequest {
    std::string session_id;
    std::string user;
    uint64_t after_seq = 0;
    uint64_t upto_seq = 0;
    // Matches FinishCatchUp() to the session's current catch-up.
    uint64_t id = 0;
    // Failed reads before this one (0 on the first).
    int attempt = 0;
  };
  // Starts the read of a catch-up, elsewhere (it is called under the
  // router's mutex): the read's outcome goes to FinishCatchUp().
  using CatchUp = std::function<void(CatchUpRequest)>;

  explicit LocalRouter(size_t max_sessions_per_user);

  LocalRouter(const LocalRouter&) = delete;
  LocalRouter& operator=(const LocalRouter&) = delete;

  // Without a CatchUp function (or after it was reset for shutdown), a frame
  // past a gap goes out at once and the client syncs (inbox rule 3).
  void SetCatchUp(CatchUp catch_up);
  // The messages read for `request` (in inbox_seq order, possibly fewer
  // than asked), or the read's error (the catch-up is asked again).
  void FinishCatchUp(const CatchUpRequest& request,
                     absl::StatusOr<std::vector<v1::Message>> messages);
  // The user's inbox holds at least `head`: sessions sent less catch up (a
  // replica that may have missed publishes calls this with InboxHead).
  void CatchUpTo(absl::string_view user, uint64_t head);
  // Users with a session on this replica.
  std::vector<std::string> Users() const;
  // Distinct gateway ids among the connected streams.
  std::vector<std::string> GatewayIds() const;

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

  // Live sessions on one stream get one Delivery listing each session's
  // inbox_seq, so a group message crosses each stream once.
  size_t DeliverMessage(const std::vector<InboxEntry>& recipients,
                        const v1::Message& message,
                        absl::string_view except_session) override;
  void SendToSession(absl::string_view session_id, v1::ServerFrame frame,
                     uint64_t inbox_seq = 0) override;
  void SendToUser(const std::string& user, const v1::ServerFrame& frame,
                  absl::string_view except_session = "") override;
  // One Delivery per stream names every live session of `users` (the
  // gateway encodes the frame once).
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

 private:
  struct Held {
    v1::ServerFrame frame;
    uint64_t inbox_seq = 0;  // Of an inbox message or Ack; 0 otherwise.
    bool is_message = false;
  };
  struct Session {
    SessionInfo info;
    LinkStream* stream = nullptr;
    // Opened (CompleteOpen).
    bool live = false;
    // The id of the catch-up in flight, 0 when none.
    uint64_t catch_up_id = 0;
    // The highest inbox_seq this session was sent (or, after a catch-up cut
    // short, left to its client's sync).
    uint64_t last_inbox_seq = 0;
    // Beyond what is held, the session is owed messages up to this
    // inbox_seq (held messages dropped at the bound, CatchUpTo()).
    uint64_t owed_upto = 0;
    // While opening or catching up.
    std::vector<Held> held;
  };
  struct Stream {
    std::string gateway_id;
    std::set<std::string> sessions;
  };

  // Forgets a session; returns whether its user has no session left.
  bool RemoveLocked(const std::string& session_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SendToUser(s): one Delivery per stream naming every live session of
  // `users` except `except_session`; opening sessions hold the frame.
  void SendToUsersLocked(const std::vector<std::string>& users,
                         const v1::ServerFrame& frame,
                         absl::string_view except_session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends, drops (already sent) or holds a frame for a session; a frame
  // past a gap starts a catch-up.
  void ToSessionLocked(Session& session, v1::ServerFrame frame,
                       uint64_t inbox_seq, bool is_message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HoldLocked(Session& session, v1::ServerFrame frame, uint64_t inbox_seq,
                  bool is_message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks for (last_inbox_seq, upto_seq]; the session holds until it comes.
  void StartCatchUpLocked(Session& session, uint64_t upto_seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes a session live and sends what it held, in order.
  void ReleaseLocked(Session& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_sessions_per_user_;
  mutable absl::Mutex mu_;
  std::map<std::string, Session, std::less<>> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<std::string>, std::less<>> by_user_
      ABSL_GUARDED_BY(mu_);
  std::map<LinkStream*, Stream> streams_ ABSL_GUARDED_BY(mu_);
  CatchUp catch_up_ ABSL_GUARDED_BY(mu_);
  uint64_t next_catch_up_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_LOCAL_ROUTER_H_
