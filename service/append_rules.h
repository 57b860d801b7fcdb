// The IM rules of an append, once for every Store: who may send to whom,
// which inboxes a message enters, idempotency, and the numbering of the two
// gapless sequences (a conversation's seq, a user's inbox_seq).
//
// A store reads what a batch of appends needs inside its transaction (the
// batch's idempotency keys already stored, which of the users it names
// exist, its groups and their members, the blocks between the users of its
// direct messages, the counters), hands that to
// PlanAppends, and writes the rows of the requests planned to be stored.
// The rules, in order, for each request:
//   1. (sender, client_msg_id) stored before, or earlier in the same batch:
//      a duplicate, answered with the original; nothing is stored.
//   2. The sender must exist (NOT_FOUND); an empty sender is an operator.
//   3. A group message: the group must exist (NOT_FOUND) and the sender be a
//      member (PERMISSION_DENIED; an operator need not be); it enters every
//      member's inbox.
//      A direct message: the peer must exist (NOT_FOUND) and neither of the
//      two may have blocked the other (BlockedError, naming which way); it
//      enters the sender's and the peer's inboxes (one inbox for a note to
//      oneself). Blocks do not apply to group messages, nor to an operator,
//      whose direct message enters the inboxes of the conversation's users
//      that exist.
//   4. An edit or delete event: its target, the message at target_seq of the
//      conversation, must exist (NOT_FOUND), be the sender's own (an
//      operator may delete any; PERMISSION_DENIED), be a text message and
//      not deleted (FAILED_PRECONDITION), and, for a user, have been sent at
//      most edit_window before the event (FAILED_PRECONDITION). Only users
//      edit (INVALID_ARGUMENT for an operator). The event is addressed like
//      its target (`to`), carries the edit's text (a delete none), and
//      changes the target: an edit its text and edited_at, a delete makes
//      it a tombstone (empty text, deleted) and empties the text of its
//      earlier edit events, which the store does.
//   4b. A group event (kind kGroupEvent, to_group) changes its group; the
//      sender must exist and, but for kCreated, be a member
//      (PERMISSION_DENIED; an operator need not be and may do everything):
//      * kCreated: the group must not exist (ALREADY_EXISTS); the users
//        named and the sender (its owner; an operator's group has none) must
//        exist (NOT_FOUND) and be at most max_group_members
//        (RESOURCE_EXHAUSTED).
//      * kMembersAdded: by the owner or an admin (PERMISSION_DENIED); the
//        users must exist (NOT_FOUND); those already members are skipped,
//        none left is FAILED_PRECONDITION; at most max_group_members after.
//      * kMembersRemoved: the owner removes anyone but themself, an admin
//        plain members (PERMISSION_DENIED); non-members are skipped, none
//        left is FAILED_PRECONDITION.
//      * kMemberLeft: any member but the owner while others remain
//        (FAILED_PRECONDITION: pass ownership first); not an operator.
//      * kRenamed: by the owner or an admin.
//      * kRoleChanged: by the owner, of one other member, to a role they do
//        not have (FAILED_PRECONDITION); to kOwner passes the ownership, the
//        previous owner becoming an admin.
//      It enters the inboxes of the members after the change and of those
//      it removed; the event names the users it really changed (kCreated:
//      all members). The store writes `group_writes`.
//   5. It takes the conversation's next seq and each recipient's next
//      inbox_seq: two appends of one batch to one conversation or user get
//      consecutive numbers, in batch order.
// A refused request stores nothing and numbers nothing.
//
//   AppendSnapshot snapshot = ReadWhatTheBatchNeeds(txn, batch);
//   std::vector<PlannedAppend> plan = PlanAppends(batch, snapshot);
//   WriteRows(txn, plan);  // sets message_id of every stored result
//   WriteTargets(txn, snapshot);  // the targets in `changed_targets`
//   WriteGroups(txn, snapshot);   // `group_writes`
//   ResolveDuplicates(plan);
//
// Threading: plain functions over values.
#ifndef PARLEY_SERVICE_APPEND_RULES_H_
#define PARLEY_SERVICE_APPEND_RULES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "service/store.h"

namespace parley::service {

// A group's members and their roles.
using MemberRoles = std::map<std::string, GroupRole>;

// How a batch's group events change one group's rows, in their final state.
struct GroupWrite {
  // The group is new: insert its row (title, created_at).
  bool created = false;
  absl::Time created_at;
  // The title, when created or renamed.
  std::optional<std::string> title;
  // The members whose row changes: their role now, or nullopt once removed.
  std::map<std::string, std::optional<GroupRole>> members;
};

// What a store's transaction read for a batch of appends.
struct AppendSnapshot {
  // (sender, client_msg_id) -> the original's result, as stored: `message`
  // and `sender_inbox_seq` set.
  std::map<std::pair<std::string, std::string>, AppendResult> sent;
  // Which of the users the batch names (senders, direct peers, members of
  // its groups, users its group events name) exist.
  std::set<std::string> users;
  // The batch's groups that exist, with their members' roles. PlanAppends
  // changes them as its group events do.
  std::map<std::string, MemberRoles> groups;
  // The blocks between the two users of each of the batch's direct
  // messages, as (blocker, blocked).
  std::set<std::pair<std::string, std::string>> blocks;
  // The highest seq of each of the batch's conversations and the highest
  // inbox_seq of each of its users; a missing entry is 0. PlanAppends
  // advances them.
  std::map<std::string, uint64_t> conversation_heads;
  std::map<std::string, uint64_t> inbox_heads;
  // The targets of the batch's edit and delete events that exist, by
  // (conversation, seq). PlanAppends changes them as its events do (and adds
  // a text message of the batch that a later event of it targets); the
  // store then writes each in `changed_targets` as it is here: text,
  // edited_at, deleted (and for a deleted one, empties the text of its edit
  // events).
  std::map<std::pair<std::string, uint64_t>, StoredMessage> targets;
  std::set<std::pair<std::string, uint64_t>> changed_targets;
  // What the batch's group events change, by group: the store writes each.
  // (The inbox heads of the users they add must be in `inbox_heads`.)
  std::map<std::string, GroupWrite> group_writes;
};

// What to do with one request.
struct PlannedAppend {
  // The error (store nothing), a duplicate (store nothing) or the new
  // message with its seq and every recipient's inbox_seq (store it; the
  // store sets message.message_id).
  absl::StatusOr<AppendResult> result;
  // For a duplicate of a request earlier in the batch: that request's index.
  int same_as = -1;

  bool store() const { return result.ok() && !result->duplicate; }
};

// The two users of a direct conversation, in id order (one for a note to
// oneself): the sender and `to`, or for an operator's request (no sender)
// the users its conversation id names.
std::vector<std::string> DirectPair(const AppendRequest& request);

// Whether the request is an operator's (no sender).
inline bool ByOperator(const AppendRequest& request) {
  return request.sender.empty();
}

// Plans `batch` in order against `snapshot` (see above).
std::vector<PlannedAppend> PlanAppends(
    const std::vector<const AppendRequest*>& batch, AppendSnapshot& snapshot);

// Gives each in-batch duplicate the message its original was stored as
// (message_id included): call once the store has set the message ids.
void ResolveDuplicates(std::vector<PlannedAppend>& plan);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_APPEND_RULES_H_
