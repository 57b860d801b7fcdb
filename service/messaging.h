// Messaging: the IM rules of parley-service, with no gRPC in sight.
//
// It turns GatewayLink events (session open, client frames, session close)
// into Store reads and writes and Router frames:
//   * SessionOpen: the token is verified (common/jwt.h) and the user looked
//     up; a rejection names its reason. An accepted session is registered,
//     gets SessionAccepted with the user's inbox head H, the replay
//     (resume_after, H] (at most `max_replay` messages; none when the open
//     has no resume_after: a new device starts at the head),
//     then live frames: see router.h for why nothing is lost or repeated.
//   * Send: validated, then appended; once the append is durable every
//     recipient's sessions get the Message with their own inbox_seq (the
//     sender's other sessions too) and the sending session gets the Ack,
//     whose inbox_seq is the message's place in the sender's inbox. A repeat
//     of (sender, client_msg_id) gets the original Ack and nothing else.
//   * Edit, Delete: validated like a Send (the conversation must name the
//     user, for a direct one), then appended as an edit or delete event
//     (append_rules.h checks the target); delivered and acknowledged like a
//     Send. The offline webhook is told of text messages only.
//   * CreateGroup, UpdateGroup: validated, then appended as a group event
//     (append_rules.h checks the roles and applies the change atomically
//     with the event); delivered to the members after the change and those
//     it removed, and acknowledged like a Send. GetGroup: the group with its
//     roles, for members only.
//   * Sync: a page of the user's inbox after `after_seq`, with the head.
//   * Read: the user's read cursor rises (never falls); when it rose, the
//     other members get a Receipt, and the user's own other sessions get it
//     with the conversation's unread count for them (counted as the read is
//     queued: a message stored while the read commits may be missing from
//     it or counted twice by a client; ListConversations is exact).
//   * ListConversations: a page of the user's conversations with unread
//     counts (Store::ListConversations).
//   * History: a page of one conversation's messages, for its members only
//     (a group's current members see its whole history).
//   * Typing: relayed to the other members' live sessions, never stored;
//     dropped without an error between two users one of whom blocked the
//     other (group typing is unaffected).
//   * Block / ListBlocked: the store records the block (or unblock); the
//     user's BlockList answers the session, and after a change goes to every
//     session of the user instead. The two users stop getting each other's
//     presence (Store::Contacts leaves them out): after a block, each online
//     one appears offline to the other if they were contacts; after an
//     unblock, each online one is announced online to the other if they are
//     contacts again. Direct messages between them are refused by the
//     store's append rules (ERROR_CODE_BLOCKED).
//   * Presence: a new (not re-announced) session first learns which of its
//     user's contacts are online; when a user's first session opens or last
//     one closes, their
//     contacts (Store::Contacts: direct peers and members of groups up to
//     `presence_max_group_members`) get a Presence frame. Re-announces after a
//     link reconnect are not presence changes, and losing a stream is not one
//     at once: a user whose sessions all went with a lost stream is announced
//     offline only if no session of theirs is back after `presence_grace`
//     (the gateway re-announces within it when it reconnects); a later
//     re-announce then announces them online again.
// Failures go back to the one session as an Error frame (client.proto's
// ErrorCode) naming the problem.
//
// Threading: thread-safe. The link methods of one stream must be called in
// stream order, one at a time, from a worker thread: they block on Store
// reads. Store callbacks (commit order) deliver; they never block.
#ifndef PARLEY_SERVICE_MESSAGING_H_
#define PARLEY_SERVICE_MESSAGING_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/token_verifier.h"
#include "parley/v1/client.pb.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/router.h"
#include "service/service_metrics.h"
#include "service/store.h"

namespace parley::service {

// Options for Messaging; defaults are the service's.
struct MessagingOptions {
  // The keys client tokens are checked with (required).
  std::shared_ptr<const TokenVerifier> tokens;
  // Called after a durable append, on the store's callback thread, for each
  // recipient other than the sender who had no live session anywhere in the
  // cluster (Router::IsOnline): the offline-notification webhook
  // (webhook_notifier.h). Must not block. Empty: nobody is told.
  std::function<void(const StoredMessage& message, const std::string& recipient,
                     uint64_t inbox_seq)>
      on_offline;
  // Longest message text, in bytes of UTF-8.
  size_t max_text_bytes = 4096;
  // How long after sending a user may edit or delete a message; zero: no
  // limit.
  absl::Duration edit_window = absl::Hours(48);
  // Most members in one group (CreateGroup, UpdateGroup; the admin API's
  // group calls too).
  size_t max_group_members = 1000;
  // Longest group title, in bytes of UTF-8.
  size_t max_group_title_bytes = 128;
  // Longest client_msg_id, in bytes.
  size_t max_client_msg_id_bytes = 128;
  // Sync page size when the client asks for 0, and the most it may ask for.
  // (Also History's.)
  uint32_t default_page_size = 100;
  uint32_t max_page_size = 1000;
  // ListConversations' page size when the client asks for 0, and the most it
  // may ask for (each entry counts its unread messages).
  uint32_t default_conversation_page = 50;
  uint32_t max_conversation_page = 200;
  // Most messages replayed when a session opens with resume_after; a client
  // further behind sees a gap and syncs (inbox rule 3).
  int max_replay = 1000;
  // How long users of a lost link stream stay "online" waiting for the
  // gateway to re-announce them.
  absl::Duration presence_grace = absl::Seconds(30);
  // Groups larger than this do not make their members each other's contacts
  // for presence (direct conversations always do).
  size_t presence_max_group_members = 100;
  // Most users one user may block (beyond: ERROR_CODE_TOO_LARGE).
  size_t max_blocked_users = 10000;
};

// Where a client request came from: its session, and the request_id
// (client.proto) that every frame answering it carries back.
struct Origin {
  std::string session_id;
  std::string request_id;
};

class Messaging final {
 public:
  using Clock = std::function<absl::Time()>;
  // Runs a task after a delay on a thread where it may block (store reads).
  using Scheduler =
      std::function<void(absl::Duration delay, std::function<void()> task)>;

  // `store`, `router` and `metrics` must outlive this object, and so must
  // whatever `schedule` runs (without one, users of a lost stream are never
  // announced offline).
  Messaging(
      Store* store, Router* router, ServiceMetrics* metrics,
      MessagingOptions options, Clock clock = [] { return absl::Now(); },
      Scheduler schedule = nullptr);

  Messaging(const Messaging&) = delete;
  Messaging& operator=(const Messaging&) = delete;

  // Link events, in stream order (see the threading contract).
  void StreamOpened(LinkStream* stream, const v1::LinkHello& hello);
  // Waits for the stream's pending writes (their Acks go out first), then
  // forgets its sessions.
  void StreamClosed(LinkStream* stream);
  void OpenSession(LinkStream* stream, const v1::SessionOpen& open);
  void HandleFrame(LinkStream* stream, const v1::SessionFrame& frame);
  // Whether HandleFrame(frame) never blocks: a Send (queued for the store),
  // a Ping, a frame of no known kind. Such frames may be handled on a thread
  // that must not block; every other kind may read the store.
  static bool HandlesWithoutBlocking(const v1::SessionFrame& frame);
  void CloseSession(LinkStream* stream, const v1::SessionClose& close);

  // Stores a message from `sender` as a client Send would (the admin API's
  // SendMessage). `done` runs once: with the Ack after the durable commit and
  // the deliveries, or with an error status (INVALID_ARGUMENT,
  // RESOURCE_EXHAUSTED, NOT_FOUND, PERMISSION_DENIED, UNAVAILABLE). Never
  // blocks.
  void SendAs(const std::string& sender, const v1::Send& send,
              std::function<void(absl::StatusOr<v1::Ack>)> done);

  // Deletes the message at `seq` of `conversation` as an operator
  // (moderation: any sender's message, no edit window): a delete event with
  // an empty `from` in every member's inbox, delivered live. Idempotent: a
  // repeat answers the first delete's Ack. `done` runs once, with the event's
  // Ack (its inbox_seq 0: an operator has no inbox) or an error status
  // (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE). Never
  // blocks.
  void DeleteAsOperator(const std::string& conversation, uint64_t seq,
                        std::function<void(absl::StatusOr<v1::Ack>)> done);

  // Changes `group` as an operator (the admin API's CreateGroup, AddMembers,
  // RemoveMembers): a group event with an empty `from` in the inboxes of the
  // members after the change and of those it removed, delivered live.
  // `client_msg_id` must be new for each call; `title` is a created
  // group's. `done` runs once, with the event's Ack (inbox_seq 0) or an
  // error status (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
  // RESOURCE_EXHAUSTED, FAILED_PRECONDITION: nothing to change,
  // UNAVAILABLE). Never blocks.
  void ChangeGroupAsOperator(const std::string& client_msg_id,
                             const std::string& group, GroupEvent change,
                             const std::string& title,
                             std::function<void(absl::StatusOr<v1::Ack>)> done);

  // Tells the contacts of `users` that they went offline (after an operator
  // closed their sessions). Blocks on a Store read.
  void AnnounceOffline(const std::vector<std::string>& users);

  // While draining, new sessions are rejected with UNAVAILABLE.
  void SetDraining(bool draining) { draining_.store(draining); }

  // Messages stored per second over the last 10 seconds.
  double MessagesPerSecond();

 private:
  void HandleSend(const Origin& origin, const std::string& user,
                  const v1::Send& send);
  // Appends a validated request (or sends its error) and answers the
  // session with the Ack.
  void AppendAndAck(const Origin& origin, absl::StatusOr<AppendRequest> request,
                    const std::string& client_msg_id);
  // The admin API's appends (SendAs, DeleteAsOperator,
  // ChangeGroupAsOperator): appends a prepared request and delivers it,
  // `done` getting the Ack or the error.
  void AppendForAdmin(absl::StatusOr<AppendRequest> request,
                      std::function<void(absl::StatusOr<v1::Ack>)> done);
  void HandleSync(const Origin& origin, const std::string& user,
                  const v1::Sync& sync);
  void HandleRead(const Origin& origin, const std::string& user,
                  const v1::Read& read);
  void HandleTyping(const Origin& origin, const std::string& user,
                    const v1::Typing& typing);
  void HandleListConversations(const Origin& origin, const std::string& user,
                               const v1::ListConversations& list);
  void HandleHistory(const Origin& origin, const std::string& user,
                     const v1::History& history);
  void HandleBlock(const Origin& origin, const std::string& user,
                   const v1::Block& block);
  void HandleListBlocked(const Origin& origin, const std::string& user);
  // Tells each of two users whether the other, when online, is online: after
  // a block (false) or an unblock (true) between them.
  void ShowPresenceBetween(const std::string& a, const std::string& b,
                           bool online);

  // Validates a Send and builds its AppendRequest.
  absl::StatusOr<AppendRequest> PrepareSend(const std::string& sender,
                                            const v1::Send& send);
  // Validates an Edit or Delete (`text` empty for a delete) of `sender`
  // (empty: an operator's delete) and builds its AppendRequest.
  absl::StatusOr<AppendRequest> PrepareChange(const std::string& sender,
                                              MessageKind kind,
                                              const std::string& client_msg_id,
                                              const std::string& conversation,
                                              uint64_t seq,
                                              const std::string& text);
  // Validates a group change of `sender` (empty: an operator) and builds its
  // AppendRequest: `title` is a created group's or the new one.
  absl::StatusOr<AppendRequest> PrepareGroupChange(
      const std::string& sender, const std::string& client_msg_id,
      const std::string& group, GroupEvent change, const std::string& title);
  // Answers GetGroup with the group, to members only.
  void HandleGetGroup(const Origin& origin, const std::string& user,
                      const v1::GetGroup& get);
  // After a durable append: delivers to every recipient's sessions except
  // `origin_session` (which gets the Ack instead) and returns the Ack.
  v1::Ack Deliver(const AppendResult& result,
                  const std::string& origin_session);
  // Tells a newly opened session which of its user's contacts are online
  // now (Presence frames); changes after that arrive as they happen.
  void SendPresenceSnapshot(const std::string& session_id,
                            const std::string& user);
  void AnnouncePresence(const std::string& user, bool online);
  // The user's presence contacts; nullopt (logged) if the store fails.
  std::optional<std::vector<std::string>> PresenceContacts(
      const std::string& user);
  void Reject(LinkStream* stream, const std::string& session_id,
              v1::RejectReason reason, absl::string_view message,
              bool registered);
  // Answers the request `to` came with: `frame` carries its request_id.
  void Reply(const Origin& to, v1::ServerFrame frame);
  void SendError(const Origin& to, v1::ErrorCode code,
                 absl::string_view message,
                 absl::string_view client_msg_id = "");
  void CountStored(int64_t n);
  // After presence_grace: announces offline who is still without a session.
  void AnnounceLost(const std::vector<std::string>& users);

  Store* const store_;
  Router* const router_;
  ServiceMetrics* const metrics_;
  const MessagingOptions options_;
  const Clock clock_;
  const Scheduler schedule_;
  std::atomic<bool> draining_{false};

  // Users announced offline after a lost stream: a re-announce of theirs is
  // then a presence change after all.
  absl::Mutex lost_mu_;
  std::set<std::string> announced_lost_ ABSL_GUARDED_BY(lost_mu_);

  // Messages stored per unix second, for the last 10 seconds.
  absl::Mutex rate_mu_;
  int64_t rate_seconds_[10] ABSL_GUARDED_BY(rate_mu_) = {};
  int64_t rate_counts_[10] ABSL_GUARDED_BY(rate_mu_) = {};
};

// The client ErrorCode for a failed Store or validation status.
v1::ErrorCode ErrorCodeFor(const absl::Status& status);

// A stored message as the client protocol shows it, at `inbox_seq` in the
// receiving user's inbox (0 where no inbox is meant, as in history).
v1::Message ToMessage(const StoredMessage& m, uint64_t inbox_seq);

// A conversation list entry as the client protocol shows it.
v1::ConversationSummary ToConversationSummary(const ConversationSummary& s);

// The user's inbox messages with after_seq < inbox_seq <= upto_seq, at most
// `limit`, as the client protocol shows them (a router's catch-up). Blocks
// on the store.
absl::StatusOr<std::vector<v1::Message>> ReadInboxMessages(
    Store& store, absl::string_view user, uint64_t after_seq, uint64_t upto_seq,
    int limit);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_MESSAGING_H_
