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
//   2. The sender must exist (NOT_FOUND).
//   3. A group message: the group must exist (NOT_FOUND) and the sender be a
//      member (PERMISSION_DENIED); it enters every member's inbox.
//      A direct message: the peer must exist (NOT_FOUND) and neither of the
//      two may have blocked the other (BlockedError, naming which way); it
//      enters the sender's and the peer's inboxes (one inbox for a note to
//      oneself). Blocks do not apply to group messages.
//   4. It takes the conversation's next seq and each recipient's next
//      inbox_seq: two appends of one batch to one conversation or user get
//      consecutive numbers, in batch order.
// A refused request stores nothing and numbers nothing.
//
//   AppendSnapshot snapshot = ReadWhatTheBatchNeeds(txn, batch);
//   std::vector<PlannedAppend> plan = PlanAppends(batch, snapshot);
//   WriteRows(txn, plan);  // sets message_id of every stored result
//   ResolveDuplicates(plan);
//
// Threading: plain functions over values.
#ifndef PARLEY_SERVICE_APPEND_RULES_H_
#define PARLEY_SERVICE_APPEND_RULES_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "service/store.h"

namespace parley::service {

// What a store's transaction read for a batch of appends.
struct AppendSnapshot {
  // (sender, client_msg_id) -> the original's result, as stored: `message`
  // and `sender_inbox_seq` set.
  std::map<std::pair<std::string, std::string>, AppendResult> sent;
  // Which of the users the batch names (senders, direct peers, members of
  // its groups) exist.
  std::set<std::string> users;
  // The batch's groups that exist, with their members (any order).
  std::map<std::string, std::vector<std::string>> groups;
  // The blocks between the two users of each of the batch's direct
  // messages, as (blocker, blocked).
  std::set<std::pair<std::string, std::string>> blocks;
  // The highest seq of each of the batch's conversations and the highest
  // inbox_seq of each of its users; a missing entry is 0. PlanAppends
  // advances them.
  std::map<std::string, uint64_t> conversation_heads;
  std::map<std::string, uint64_t> inbox_heads;
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
// oneself).
std::vector<std::string> DirectPair(const AppendRequest& request);

// Plans `batch` in order against `snapshot` (see above).
std::vector<PlannedAppend> PlanAppends(
    const std::vector<const AppendRequest*>& batch, AppendSnapshot& snapshot);

// Gives each in-batch duplicate the message its original was stored as
// (message_id included): call once the store has set the message ids.
void ResolveDuplicates(std::vector<PlannedAppend>& plan);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_APPEND_RULES_H_
