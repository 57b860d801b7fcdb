// LocalRouter: the Router (router.h) of one replica: which client sessions
// are live on this replica's gateway link streams, in memory only (after a
// service restart the gateways re-announce their sessions).
//
// Per-session order. The Router puts a session's frames on its stream in the
// order it is called, and the callers call it in commit order (store
// callbacks run one at a time), so a session sees its inbox messages in
// increasing inbox_seq. From the open on, an inbox message at or below the
// highest inbox_seq the session was sent (by replay, delivery or Ack) is
// dropped as already delivered.
//
//   LocalRouter router(16);
//   router.AddStream(&stream, "gw-1");
//
// Threading: thread-safe; one mutex guards everything and LinkStream::Send()
// is called under it (Send must not call back into the Router). Never blocks
// on I/O.
#ifndef PARLEY_SERVICE_LOCAL_ROUTER_H_
#define PARLEY_SERVICE_LOCAL_ROUTER_H_

#include <cstddef>
#include <cstdint>
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
  explicit LocalRouter(size_t max_sessions_per_user);

  LocalRouter(const LocalRouter&) = delete;
  LocalRouter& operator=(const LocalRouter&) = delete;

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

 private:
  struct Held {
    v1::ServerFrame frame;
    uint64_t inbox_seq = 0;  // Of an inbox message or Ack; 0 otherwise.
    bool is_message = false;
  };
  struct Session {
    SessionInfo info;
    LinkStream* stream = nullptr;
    bool live = false;
    // The highest inbox_seq this session was sent.
    uint64_t last_inbox_seq = 0;
    std::vector<Held> held;  // While opening.
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
  // Sends or holds a frame for a session.
  void ToSessionLocked(Session& session, v1::ServerFrame frame,
                       uint64_t inbox_seq, bool is_message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_sessions_per_user_;
  mutable absl::Mutex mu_;
  std::map<std::string, Session, std::less<>> sessions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::set<std::string>, std::less<>> by_user_
      ABSL_GUARDED_BY(mu_);
  std::map<LinkStream*, Stream> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_LOCAL_ROUTER_H_
