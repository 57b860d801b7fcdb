// The Store: every fact parley-service keeps (users, groups, members,
// messages, inboxes, read cursors), behind an interface implemented by the
// embedded SQLite store (sqlite_store.h), the PostgreSQL store that several
// replicas share (pg_store.h) and an in-memory fake for tests of the domain
// logic (fake_store.h). The rules of an append are the same code in all three
// (append_rules.h).
//
// The two sequences the inbox rule of client.proto rests on are the Store's
// to keep:
//   * every conversation has a gapless `seq` from 1;
//   * every user has a gapless `inbox_seq` from 1, advanced once for every
//     message that enters their inbox (their own sends included).
// Both are assigned when the message is committed, atomically with it.
//
// Writes that the data plane makes (Append, AdvanceReadCursor) are
// asynchronous: the callback runs once the write is durable, and callbacks of
// one Store run one at a time, in commit order. That is what lets the caller
// deliver messages in inbox_seq order without further locking. (A write
// refused before it is queued, e.g. on overload, may call back at once on the
// caller's thread with its error.) Callbacks must
// not call the Store's write methods (they would wait for themselves); reads
// are fine. Admin writes (users, groups) are synchronous.
//
//   store.Append(request, [](absl::StatusOr<AppendResult> result) {
//     if (result.ok()) DeliverToRecipients(*result);
//   });
//
// Threading: every method may be called from any thread. Synchronous methods
// block on disk I/O: never call them from a gRPC reactor or asio callback.
#ifndef PARLEY_SERVICE_STORE_H_
#define PARLEY_SERVICE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace parley::service {

// A registered user.
struct UserRecord {
  std::string id;
  std::string display_name;
  absl::Time created_at;
  // Tokens issued before this time are refused (RevokeTokens); InfinitePast
  // when none ever were. (Initialised so that callers may list the three
  // fields above in braces.)
  absl::Time tokens_not_before = absl::InfinitePast();
};

// A member's role in a group (client.proto's GroupRole, same values): the
// owner may do everything, admins add and remove plain members and rename,
// members may send and leave.
enum class GroupRole : int { kMember = 0, kAdmin = 1, kOwner = 2 };

// A group and its members (sorted).
struct GroupRecord {
  std::string id;
  std::string display_name;
  std::vector<std::string> members;
  absl::Time created_at;
  // The members whose role is not kMember (a group made by an operator may
  // have no owner).
  std::map<std::string, GroupRole> roles = {};
};

// What a stored message is: a text, an event that changes the text message
// at `target_seq` of the same conversation, or a change of its group's
// membership (client.proto's MessageKind, same values).
enum class MessageKind : int {
  kText = 0,
  kEdit = 1,
  kDelete = 2,
  kGroupEvent = 3
};

// What a group event changed (client.proto's GroupEventType, same values).
enum class GroupEventType : int {
  kNone = 0,
  kCreated = 1,
  kMembersAdded = 2,
  kMembersRemoved = 3,
  kMemberLeft = 4,
  kRenamed = 5,
  kRoleChanged = 6,
};

// A group event's change; its actor is the message's `from` (empty: an
// operator) and a new title (kCreated, kRenamed) its `text`.
struct GroupEvent {
  GroupEventType type = GroupEventType::kNone;
  // kCreated: every member; kMembersAdded/kMembersRemoved: those added or
  // removed; kMemberLeft: who left; kRoleChanged: whose role changed.
  // Sorted.
  std::vector<std::string> users;
  // kRoleChanged: the new role (kOwner: ownership passed to `users`, and the
  // previous owner became an admin).
  GroupRole role = GroupRole::kMember;
};

// GroupEvent as the SQL stores keep it in one text column: "<type> <role>
// <user>..." (user ids hold no spaces); Decode is lenient with damage.
std::string EncodeGroupEvent(const GroupEvent& event);
GroupEvent DecodeGroupEvent(absl::string_view encoded);

// A stored message as its conversation holds it.
struct StoredMessage {
  // Unique across the service (decimal, assigned at commit).
  std::string message_id;
  // "d:<a>:<b>" or "g:<group>".
  std::string conversation;
  // Gapless position in the conversation, from 1.
  uint64_t seq = 0;
  std::string from;
  // The recipient as the sender named it: a group id when `to_group`, else a
  // user id.
  bool to_group = false;
  std::string to;
  // A text message's current text (empty once deleted); an edit event's new
  // text (empty once its target is deleted); a delete event's is empty.
  std::string text;
  absl::Time sent_at;
  std::string client_msg_id;
  // An edit or delete event: what it is and the seq of the text message it
  // changes. Its `from` is empty when an operator deleted the message.
  MessageKind kind = MessageKind::kText;
  uint64_t target_seq = 0;
  // A text message: when it was last edited (InfinitePast: never), and
  // whether it was deleted.
  absl::Time edited_at = absl::InfinitePast();
  bool deleted = false;
  // A group event (kind kGroupEvent): its change.
  GroupEvent group_event = {};
};

// A message as one user's inbox holds it.
struct InboxMessage {
  uint64_t inbox_seq = 0;
  StoredMessage message;
};

// What Append() stores: a text message, an edit or delete event, or a group
// event that changes a group (see append_rules.h for their rules).
struct AppendRequest {
  // The sending user; empty for an operator's delete (moderation: any
  // message, no window; the event's `from` is empty).
  std::string sender;
  // Idempotency key: a repeat of (sender, client_msg_id) stores nothing.
  std::string client_msg_id;
  // The conversation id, computed by the caller from sender and recipient.
  std::string conversation;
  bool to_group = false;
  // The recipient user (direct) or group id.
  std::string to;
  // A text's text or an edit's new text; empty for a delete.
  std::string text;
  absl::Time sent_at;
  // kText, or an event changing the message at `target_seq` of
  // `conversation`.
  MessageKind kind = MessageKind::kText;
  uint64_t target_seq = 0;
  // An event of a user: how long after the target was sent (until
  // `sent_at`) its sender may still change it.
  absl::Duration edit_window = absl::InfiniteDuration();
  // kGroupEvent (to_group, `to` the group): the change, its users named as
  // the sender asked (kCreated: the members besides the sender; kMemberLeft:
  // none) and, for kCreated and kRenamed, the title in `text`.
  GroupEvent group_event = {};
  // kGroupEvent: the most members the group may have after the change.
  size_t max_group_members = 0;
};

// One inbox a message entered.
struct InboxEntry {
  std::string user;
  uint64_t inbox_seq = 0;
};

// Append()'s outcome.
struct AppendResult {
  StoredMessage message;
  // The message's inbox_seq in the sender's own inbox.
  uint64_t sender_inbox_seq = 0;
  // True when (sender, client_msg_id) was stored before: `message` is the
  // original and `recipients` is empty (they were served the first time).
  bool duplicate = false;
  // Every inbox the message entered, the sender's included, in user order.
  std::vector<InboxEntry> recipients;
};

// A page of one conversation, in increasing seq order.
struct HistoryPage {
  std::vector<StoredMessage> messages;
  // Older messages exist before the first one returned.
  bool more = false;
};

// One conversation of a user, as ListConversations shows it.
struct ConversationSummary {
  // "d:<a>:<b>" or "g:<group>".
  std::string conversation;
  bool group = false;
  // The group's display name; for a direct conversation the peer's (their id
  // when it is empty or the peer was deleted).
  std::string title;
  // Direct conversations: the other user (the user themselves in a
  // conversation with themselves). Empty for groups.
  std::string peer;
  // The highest seq (0: a group without messages).
  uint64_t head_seq = 0;
  // The last text message's sent_at, or the group's created_at without one:
  // what the list is ordered by (an edit or delete does not move it).
  absl::Time last_activity;
  // The newest text message (kText, as it is now: edited or a tombstone),
  // when there is one.
  std::optional<StoredMessage> last_message;
  // The user's read cursor, and the unread messages after it: text messages
  // sent by someone else and not deleted.
  uint64_t read_seq = 0;
  uint64_t unread = 0;
  // Direct conversations: the peer's read cursor.
  uint64_t peer_read_seq = 0;
};

// A page of ListConversations.
struct ConversationPage {
  // Most recent activity first; ties by conversation id, descending.
  std::vector<ConversationSummary> conversations;
  // Where the next page starts (opaque); empty when this is the last.
  std::string next_page_token;
};

// Where a conversation stands in ListConversations' order: after the page
// token's position come the conversations with an earlier activity, or the
// same activity and a smaller id. Stores encode the last entry of a page
// with EncodeConversationCursor and decode a page token with
// DecodeConversationCursor (INVALID_ARGUMENT for a malformed one).
struct ConversationCursor {
  int64_t activity_us = 0;
  std::string conversation;
};
std::string EncodeConversationCursor(const ConversationCursor& cursor);
absl::StatusOr<ConversationCursor> DecodeConversationCursor(
    absl::string_view page_token);

// Counts for operators.
struct StoreStats {
  uint64_t users = 0;
  uint64_t messages = 0;
};

// A new, random store generation (see Store::Generation): 16 hex digits.
std::string NewStoreGeneration();

// The refusal of a direct message between two users one of whom blocked the
// other: PERMISSION_DENIED marked so that IsBlockedError tells it apart
// (clients get ERROR_CODE_BLOCKED for it).
absl::Status BlockedError(absl::string_view message);
bool IsBlockedError(const absl::Status& status);

// SetBlocked's refusal of one more block for a user who already blocks
// `blocks` users, the limit being `max_blocked`.
absl::Status TooManyBlocksError(absl::string_view user, uint64_t blocks,
                                size_t max_blocked);

using AppendCallback = std::function<void(absl::StatusOr<AppendResult>)>;
// Receives whether the cursor advanced (false: it was already at or past).
using CursorCallback = std::function<void(absl::StatusOr<bool>)>;

class Store {
 public:
  virtual ~Store() = default;

  // Users. CreateUser: ALREADY_EXISTS when taken. DeleteUser also removes the
  // user's group memberships, inbox, read cursors, idempotency keys and
  // blocks (theirs and those of them); the messages they sent stay in their
  // conversations.
  virtual absl::Status CreateUser(const UserRecord& user) = 0;
  virtual absl::StatusOr<UserRecord> GetUser(absl::string_view id) = 0;
  // Users with id > `after_id`, in id order, at most `limit`.
  virtual absl::StatusOr<std::vector<UserRecord>> ListUsers(
      absl::string_view after_id, int limit) = 0;
  virtual absl::Status DeleteUser(absl::string_view id) = 0;
  // Revokes the user's tokens issued before `not_before` (a password change,
  // a stolen device): GetUser reports it as tokens_not_before, which never
  // moves back (the later of two calls holds). NOT_FOUND for unknown users.
  virtual absl::Status RevokeTokens(absl::string_view id,
                                    absl::Time not_before) = 0;

  // Groups. Members must be existing users (NOT_FOUND naming the first one
  // missing). A group never holds more than `max_members` (RESOURCE_EXHAUSTED,
  // checked atomically with the change).
  virtual absl::Status CreateGroup(const GroupRecord& group,
                                   size_t max_members) = 0;
  virtual absl::StatusOr<GroupRecord> GetGroup(absl::string_view id) = 0;
  virtual absl::StatusOr<std::vector<GroupRecord>> ListGroups(
      absl::string_view after_id, int limit) = 0;
  virtual absl::StatusOr<GroupRecord> AddMembers(
      absl::string_view group_id, const std::vector<std::string>& user_ids,
      size_t max_members) = 0;
  virtual absl::StatusOr<GroupRecord> RemoveMembers(
      absl::string_view group_id, const std::vector<std::string>& user_ids) = 0;

  // Stores a message and enters it into every recipient's inbox: for a direct
  // message the sender and the peer, for a group message the members at
  // commit time (for a group event, the members after the change and those
  // it removed). Fails with NOT_FOUND (sender, peer or group missing),
  // PERMISSION_DENIED (sender not a group member) or BlockedError (a direct
  // message between two users one of whom blocked the other, read in the
  // append's own transaction); a failed append stores nothing. An edit or
  // delete event also changes its target message in the same transaction
  // (text and edited_at, or a tombstone whose earlier edit events lose their
  // text too), a group event its group (created, members, roles, title), and
  // both fail as append_rules.h says. `done` runs once, after the commit is
  // durable, in commit order.
  virtual void Append(AppendRequest request, AppendCallback done) = 0;

  // The user's highest inbox_seq (0 when empty). NOT_FOUND for unknown users.
  virtual absl::StatusOr<uint64_t> InboxHead(absl::string_view user) = 0;
  // Inbox messages with after_seq < inbox_seq <= upto_seq (0 = no bound), in
  // order, at most `limit`.
  virtual absl::StatusOr<std::vector<InboxMessage>> ReadInbox(
      absl::string_view user, uint64_t after_seq, uint64_t upto_seq,
      int limit) = 0;
  // The newest `limit` messages with seq < before_seq (0 = no bound).
  virtual absl::StatusOr<HistoryPage> ReadHistory(
      absl::string_view conversation, uint64_t before_seq, int limit) = 0;
  // The conversation's highest seq (0 when it has no messages yet).
  virtual absl::StatusOr<uint64_t> ConversationHead(
      absl::string_view conversation) = 0;

  // The user's conversations (direct ones with at least one message, and
  // every group they are a member of), most recent activity first, at most
  // `limit` from `page_token` on (empty: from the most recent); see
  // ConversationSummary. NOT_FOUND for unknown users, INVALID_ARGUMENT for a
  // malformed page_token. A page costs one index lookup per conversation of
  // the user (to order them all), then for each conversation returned its
  // last message, two read cursors and a count of its unread messages.
  virtual absl::StatusOr<ConversationPage> ListConversations(
      absl::string_view user, absl::string_view page_token, int limit) = 0;

  // How many text messages of the conversation with seq > after_seq, not
  // deleted, were sent by someone other than `user`: the unread count at a
  // read cursor. Costs
  // O(that many messages).
  virtual absl::StatusOr<uint64_t> CountUnread(absl::string_view user,
                                               absl::string_view conversation,
                                               uint64_t after_seq) = 0;

  // Raises the user's read cursor in a conversation to `seq` (monotonic).
  // `done` runs after commit, in commit order with appends.
  virtual void AdvanceReadCursor(std::string user, std::string conversation,
                                 uint64_t seq, CursorCallback done) = 0;
  // The user's read cursor in a conversation (0 when never read).
  virtual absl::StatusOr<uint64_t> ReadCursor(
      absl::string_view user, absl::string_view conversation) = 0;

  // Users who share a direct conversation, or a group of at most
  // `max_group_members` members, with `user` (sorted, without `user`), less
  // those whom `user` blocked or who blocked `user`: who is told about the
  // user's presence. (Presence in every large group would cost members
  // squared frames as they come online.)
  virtual absl::StatusOr<std::vector<std::string>> Contacts(
      absl::string_view user, size_t max_group_members) = 0;

  // Blocking. SetBlocked records that `user` blocks `other` (`blocked`) or no
  // longer does, and returns whether that changed anything. INVALID_ARGUMENT
  // when both are the same user, NOT_FOUND naming a missing one,
  // RESOURCE_EXHAUSTED when `user` would block more than `max_blocked` users.
  // Ordered with appends: an append that commits after it sees the change.
  virtual absl::StatusOr<bool> SetBlocked(absl::string_view user,
                                          absl::string_view other, bool blocked,
                                          size_t max_blocked) = 0;
  // The users `user` has blocked, sorted. NOT_FOUND for unknown users.
  virtual absl::StatusOr<std::vector<std::string>> ListBlocked(
      absl::string_view user) = 0;
  // Whether `a` blocked `b` or `b` blocked `a`.
  virtual absl::StatusOr<bool> BlockedEitherWay(absl::string_view a,
                                                absl::string_view b) = 0;

  virtual absl::StatusOr<StoreStats> Stats() = 0;

  // The store's generation: an id created with its data and renewed whenever
  // the data is replaced by a restore from a backup. inbox_seq, seq and
  // message ids count within one generation (a restore rewinds them), so a
  // position a client holds is only meaningful with the generation it came
  // from. Fixed while the store is open; never empty.
  virtual const std::string& Generation() const = 0;

  // Blocks until every write queued before the call has committed and its
  // callback has run. Not from a Store callback.
  virtual void Flush() = 0;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_STORE_H_
