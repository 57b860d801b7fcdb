// Router: which client sessions are live on which gateway link stream, and
// the one place frames for sessions go through. In memory only: after a
// service restart the gateways re-announce their sessions.
//
// Per-session order. The Router puts a session's frames on its stream in the
// order it is called, and the callers call it in commit order (store
// callbacks run one at a time), so a session sees its inbox messages in
// increasing inbox_seq. Opening a session is two steps so that nothing is
// lost or repeated while its replay is read:
//   1. BeginOpen() registers the session as "opening": from now on every
//      frame for it is held back.
//   2. The caller reads the inbox head H and the replay (resume_after, H].
//   3. CompleteOpen() sends SessionAccepted, the replay, then the held frames
//      minus inbox messages the replay already covered, and makes the session
//      live.
// From then on an inbox message at or below the highest inbox_seq the session
// was sent (by replay, delivery or Ack) is dropped as already delivered.
//
//   Router router(16);
//   router.AddStream(&stream, "gw-1");
//   ASSIGN_OR_RETURN(bool first, router.BeginOpen(&stream, info));
//   ... read head and replay ...
//   router.CompleteOpen(info.session_id, accepted, replay);
//
// Threading: thread-safe; one mutex guards everything and LinkStream::Send()
// is called under it (Send must not call back into the Router). Never blocks
// on I/O.
#ifndef PARLEY_SERVICE_ROUTER_H_
#define PARLEY_SERVICE_ROUTER_H_

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
#include "absl/time/time.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/store.h"

namespace parley::service {

// The service's end of one GatewayLink stream, as the logic sees it.
class LinkStream {
 public:
  virtual ~LinkStream() = default;
  // Queues one event for the gateway. Never blocks; events queued one after
  // the other are sent in that order.
  virtual void Send(v1::ServiceEvent event) = 0;
};

// What operators see of a session.
struct SessionInfo {
  std::string session_id;
  std::string user_id;
  std::string device;
  std::string gateway_id;
  std::string peer_address;
  absl::Time connected_at;
};

// Sends one frame to one session on `stream`, registered or not (answers
// about sessions the Router does not know, such as "not open").
void SendFrameTo(LinkStream* stream, absl::string_view session_id,
                 v1::ServerFrame frame);

class Router final {
 public:
  explicit Router(size_t max_sessions_per_user);

  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // A stream said LinkHello.
  void AddStream(LinkStream* stream, std::string gateway_id);
  // Forgets a stream and its sessions without telling anyone: the gateway
  // keeps its clients and re-announces them when it reconnects, so this is
  // not a presence change (yet). After it returns, `stream` is never used
  // again. Returns the users who have no session left.
  std::vector<std::string> RemoveStream(LinkStream* stream);

  // Step 1 of an open. Registers the session as opening on `stream`,
  // replacing a session with the same id (a re-announce). Returns whether it
  // is the user's first session (the user comes online), or
  // RESOURCE_EXHAUSTED when the user already holds the maximum.
  absl::StatusOr<bool> BeginOpen(LinkStream* stream, const SessionInfo& info);
  // Step 3 of an open; see the file comment. False when the session went
  // away meanwhile (nothing is sent then).
  bool CompleteOpen(const std::string& session_id,
                    const v1::SessionAccepted& accepted,
                    const std::vector<v1::Message>& replay);
  // An open failed after BeginOpen: forgets the session and sends the
  // rejection. Returns whether the user has no session left.
  bool AbortOpen(LinkStream* stream, const v1::SessionRejected& rejected);

  // The gateway closed a session. Returns the user when it was their last
  // session (the user goes offline); nothing for unknown sessions.
  std::optional<std::string> Close(LinkStream* stream,
                                   absl::string_view session_id);

  // The user of a session registered on `stream`, if any.
  std::optional<std::string> UserOf(LinkStream* stream,
                                    absl::string_view session_id) const;

  // Delivers an inbox message to every session of each recipient, except
  // `except_session`, at that recipient's inbox_seq (`message`'s own is
  // ignored). Live sessions on one stream get one Delivery listing each
  // session's inbox_seq, so a group message crosses each stream once.
  // Returns how many sessions it was queued for.
  size_t DeliverMessage(const std::vector<InboxEntry>& recipients,
                        const v1::Message& message,
                        absl::string_view except_session);
  // Sends a frame to one session (an Ack, a Synced, an error). `inbox_seq`,
  // when not 0, is the inbox position the frame covers (an Ack's): the
  // session is not sent that message again.
  void SendToSession(absl::string_view session_id, v1::ServerFrame frame,
                     uint64_t inbox_seq = 0);
  // Sends a frame that is not an inbox message (receipt, typing, presence)
  // to every session of `user` except `except_session`.
  void SendToUser(const std::string& user, const v1::ServerFrame& frame,
                  absl::string_view except_session = "");
  // The same for many users: one Delivery per stream names every live
  // session of theirs (the gateway encodes the frame once).
  void SendToUsers(const std::vector<std::string>& users,
                   const v1::ServerFrame& frame);

  // Operator actions. Disconnect closes one session (`session_id`) or all of
  // a user's (`user_id`); it sends DisconnectOrders and forgets the sessions.
  struct Disconnected {
    size_t sessions = 0;
    // Users who have no session left.
    std::vector<std::string> offline_users;
  };
  Disconnected Disconnect(absl::string_view user_id,
                          absl::string_view session_id, uint32_t close_code,
                          const std::string& reason, bool reconnect);
  struct Broadcasted {
    uint32_t gateways = 0;
    uint32_t sessions = 0;
  };
  Broadcasted Broadcast(const v1::ServerFrame& frame);

  // Sessions (opening ones included), by user then session id; all when
  // `user_id` is empty.
  std::vector<SessionInfo> ListSessions(absl::string_view user_id) const;
  bool IsOnline(absl::string_view user_id) const;
  size_t session_count() const;
  // Distinct gateway ids among the connected streams.
  size_t gateway_count() const;
  size_t stream_count() const;

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

#endif  // PARLEY_SERVICE_ROUTER_H_
