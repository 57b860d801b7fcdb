// Router: the one place frames for client sessions go through, and the
// registry of which sessions are live on which gateway link stream. An
// interface, so that one replica's router (local_router.h) can be wrapped by
// one that also reaches sessions on other replicas (bus_router.h).
//
// Callers: Messaging (opens, closes, deliveries after commit), AdminApi
// (operator actions, listings, stats), the link service through Messaging.
//
// Per-session order. A session gets its inbox messages (and its Acks, whose
// inbox_seq is a place in the same inbox) in increasing inbox_seq, each
// exactly once (client.proto's inbox rule). Opening a session is two steps
// so that nothing is lost or repeated while its replay is read:
//   1. BeginOpen() registers the session as "opening": from now on every
//      frame for it is held back.
//   2. The caller reads the inbox head H and the replay (resume_after, H].
//   3. CompleteOpen() sends SessionAccepted, the replay, then the held frames
//      minus inbox messages the replay already covered, and makes the session
//      live.
//
//   router.AddStream(&stream, "gw-1");
//   ASSIGN_OR_RETURN(bool first, router.BeginOpen(&stream, info));
//   ... read head and replay ...
//   router.CompleteOpen(info.session_id, accepted, replay);
//
// Threading: implementations are thread-safe and never block on I/O; they
// call LinkStream::Send() (which must not call back into the Router).
#ifndef PARLEY_SERVICE_ROUTER_H_
#define PARLEY_SERVICE_ROUTER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/link_stream.h"
#include "service/store.h"

namespace parley::service {

class Router {
 public:
  virtual ~Router() = default;

  // A stream said LinkHello.
  virtual void AddStream(LinkStream* stream, std::string gateway_id) = 0;
  // Forgets a stream and its sessions without telling anyone: the gateway
  // keeps its clients and re-announces them when it reconnects, so this is
  // not a presence change (yet). After it returns, `stream` is never used
  // again. Returns the users who have no session left.
  virtual std::vector<std::string> RemoveStream(LinkStream* stream) = 0;

  // Step 1 of an open. Registers the session as opening on `stream`,
  // replacing a session with the same id (a re-announce). Returns whether it
  // is the user's first session (the user comes online), or
  // RESOURCE_EXHAUSTED when the user already holds the maximum.
  virtual absl::StatusOr<bool> BeginOpen(LinkStream* stream,
                                         const SessionInfo& info) = 0;
  // Step 3 of an open; see the file comment. False when the session went
  // away meanwhile (nothing is sent then).
  virtual bool CompleteOpen(const std::string& session_id,
                            const v1::SessionAccepted& accepted,
                            const std::vector<v1::Message>& replay) = 0;
  // An open failed after BeginOpen: forgets the session and sends the
  // rejection. Returns whether the user has no session left.
  virtual bool AbortOpen(LinkStream* stream,
                         const v1::SessionRejected& rejected) = 0;

  // The gateway closed a session. Returns the user when it was their last
  // session (the user goes offline); nothing for unknown sessions.
  virtual std::optional<std::string> Close(LinkStream* stream,
                                           absl::string_view session_id) = 0;

  // The user of a session registered on `stream`, if any.
  virtual std::optional<std::string> UserOf(
      LinkStream* stream, absl::string_view session_id) const = 0;

  // Delivers an inbox message, after its commit, to every session of each
  // recipient except `except_session`, at that recipient's inbox_seq
  // (`message`'s own is ignored). Returns how many sessions of this replica
  // it was queued for.
  virtual size_t DeliverMessage(const std::vector<InboxEntry>& recipients,
                                const v1::Message& message,
                                absl::string_view except_session) = 0;
  // Sends a frame to one session (an Ack, a Synced, an error). `inbox_seq`,
  // when not 0, is the inbox position the frame covers (an Ack's).
  virtual void SendToSession(absl::string_view session_id,
                             v1::ServerFrame frame, uint64_t inbox_seq = 0) = 0;
  // Sends a frame that is not an inbox message (receipt, typing, presence)
  // to every session of `user` except `except_session`.
  virtual void SendToUser(const std::string& user, const v1::ServerFrame& frame,
                          absl::string_view except_session = "") = 0;
  // The same for many users.
  virtual void SendToUsers(const std::vector<std::string>& users,
                           const v1::ServerFrame& frame) = 0;

  // Operator actions. Disconnect closes one session (`session_id`) or all of
  // a user's (`user_id`); it sends DisconnectOrders and forgets the sessions.
  struct Disconnected {
    size_t sessions = 0;
    // Users who have no session left.
    std::vector<std::string> offline_users;
  };
  virtual Disconnected Disconnect(absl::string_view user_id,
                                  absl::string_view session_id,
                                  uint32_t close_code,
                                  const std::string& reason,
                                  bool reconnect) = 0;
  struct Broadcasted {
    uint32_t gateways = 0;
    uint32_t sessions = 0;
  };
  virtual Broadcasted Broadcast(const v1::ServerFrame& frame) = 0;

  // Sessions (opening ones included), by user then session id; all when
  // `user_id` is empty.
  virtual std::vector<SessionInfo> ListSessions(
      absl::string_view user_id) const = 0;
  // Whether the user has a session (on any replica).
  virtual bool IsOnline(absl::string_view user_id) const = 0;
  // Sessions, distinct gateways and link streams of this replica (metrics).
  virtual size_t session_count() const = 0;
  virtual size_t gateway_count() const = 0;
  virtual size_t stream_count() const = 0;
  // Sessions and distinct gateways of every replica (operators' stats). A
  // router spanning replicas asks them: it may block for a short timeout.
  struct Census {
    size_t sessions = 0;
    size_t gateways = 0;
  };
  virtual Census TakeCensus() const = 0;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_ROUTER_H_
