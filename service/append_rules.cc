#include "service/append_rules.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "service/conversation.h"

namespace parley::service {
namespace {

absl::Status NotFoundUser(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("user \"", id, "\" does not exist"));
}

absl::string_view KindName(MessageKind kind) {
  switch (kind) {
    case MessageKind::kText:
      return "text message";
    case MessageKind::kEdit:
      return "edit";
    case MessageKind::kDelete:
      return "delete";
  }
  return "message";
}

// Rule 4 for an edit or delete event `r`: its target, or why it may not
// change it.
absl::StatusOr<StoredMessage*> CheckTarget(const AppendRequest& r,
                                           AppendSnapshot& snapshot) {
  const std::string what =
      absl::StrCat("message ", r.target_seq, " of \"", r.conversation, "\"");
  if (ByOperator(r) && r.kind == MessageKind::kEdit) {
    return absl::InvalidArgumentError(
        "an operator may delete a message, not "
        "edit it");
  }
  auto it = snapshot.targets.find({r.conversation, r.target_seq});
  if (it == snapshot.targets.end()) {
    return absl::NotFoundError(absl::StrCat(what, " does not exist"));
  }
  StoredMessage& target = it->second;
  if (!ByOperator(r) && target.from != r.sender) {
    return absl::PermissionDeniedError(absl::StrCat(
        what, " was sent by \"", target.from, "\"; only its ", "sender may ",
        r.kind == MessageKind::kEdit ? "edit" : "delete", " it"));
  }
  if (target.kind != MessageKind::kText) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is an ", KindName(target.kind), " event, not a text message"));
  }
  if (target.deleted) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is already deleted"));
  }
  if (!ByOperator(r) && r.sent_at - target.sent_at > r.edit_window) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is older than the edit window (",
        absl::FormatDuration(r.edit_window), "): it can no longer be ",
        r.kind == MessageKind::kEdit ? "edited" : "deleted"));
  }
  return &target;
}

}  // namespace

std::vector<std::string> DirectPair(const AppendRequest& request) {
  if (ByOperator(request)) {
    absl::StatusOr<ConversationRef> ref =
        ParseConversation(request.conversation);
    if (!ref.ok() || ref->group) return {};
    std::vector<std::string> pair = {ref->user_a, ref->user_b};
    if (pair[0] == pair[1]) pair.pop_back();
    return pair;
  }
  std::vector<std::string> pair = {std::min(request.sender, request.to),
                                   std::max(request.sender, request.to)};
  if (pair[0] == pair[1]) pair.pop_back();
  return pair;
}

std::vector<PlannedAppend> PlanAppends(
    const std::vector<const AppendRequest*>& batch, AppendSnapshot& snapshot) {
  std::vector<PlannedAppend> plan(batch.size());
  // Keys stored earlier in this batch -> their index.
  std::map<std::pair<std::string, std::string>, int> planned;
  // Messages the batch's events target, so that a text message of the batch
  // is a target for the events after it.
  std::set<std::pair<std::string, uint64_t>> wanted;
  for (const AppendRequest* r : batch) {
    if (r->kind != MessageKind::kText) {
      wanted.insert({r->conversation, r->target_seq});
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    const AppendRequest& r = *batch[i];
    PlannedAppend& p = plan[i];
    const std::pair<std::string, std::string> key = {r.sender, r.client_msg_id};
    if (auto it = planned.find(key); it != planned.end()) {
      p.same_as = it->second;
      AppendResult dup = *plan[it->second].result;
      dup.duplicate = true;
      dup.recipients.clear();
      p.result = std::move(dup);
      continue;
    }
    if (auto it = snapshot.sent.find(key); it != snapshot.sent.end()) {
      AppendResult dup = it->second;
      dup.duplicate = true;
      dup.recipients.clear();
      p.result = std::move(dup);
      continue;
    }
    if (!ByOperator(r) && snapshot.users.count(r.sender) == 0) {
      p.result = NotFoundUser(r.sender);
      continue;
    }
    std::vector<std::string> recipients;
    if (r.to_group) {
      auto group = snapshot.groups.find(r.to);
      if (group == snapshot.groups.end()) {
        p.result = absl::NotFoundError(
            absl::StrCat("group \"", r.to, "\" does not exist"));
        continue;
      }
      recipients = group->second;
      std::sort(recipients.begin(), recipients.end());
      if (!ByOperator(r) &&
          !std::binary_search(recipients.begin(), recipients.end(), r.sender)) {
        p.result = absl::PermissionDeniedError(absl::StrCat(
            "user \"", r.sender, "\" is not a member of group \"", r.to, "\""));
        continue;
      }
    } else if (ByOperator(r)) {
      for (std::string& user : DirectPair(r)) {
        if (snapshot.users.count(user) > 0) recipients.push_back(user);
      }
    } else {
      if (snapshot.users.count(r.to) == 0) {
        p.result = NotFoundUser(r.to);
        continue;
      }
      // Says which way, and no more: the peer learns that it blocked, not
      // when or what else.
      if (snapshot.blocks.count({r.sender, r.to}) > 0) {
        p.result = BlockedError(
            absl::StrCat("you blocked \"", r.to, "\"; unblock them to send"));
        continue;
      }
      if (snapshot.blocks.count({r.to, r.sender}) > 0) {
        p.result = BlockedError(
            absl::StrCat("user \"", r.to, "\" does not accept your messages"));
        continue;
      }
      recipients = DirectPair(r);
    }
    StoredMessage* target = nullptr;
    if (r.kind != MessageKind::kText) {
      absl::StatusOr<StoredMessage*> checked = CheckTarget(r, snapshot);
      if (!checked.ok()) {
        p.result = checked.status();
        continue;
      }
      target = *checked;
    }
    AppendResult result;
    StoredMessage& m = result.message;
    m.conversation = r.conversation;
    m.seq = ++snapshot.conversation_heads[r.conversation];
    m.from = r.sender;
    m.to_group = r.to_group;
    m.to = r.to;
    m.text = r.kind == MessageKind::kDelete ? "" : r.text;
    m.sent_at = r.sent_at;
    m.client_msg_id = r.client_msg_id;
    m.kind = r.kind;
    if (target != nullptr) {
      m.target_seq = r.target_seq;
      m.to_group = target->to_group;
      m.to = target->to;
      if (r.kind == MessageKind::kEdit) {
        target->text = r.text;
        target->edited_at = r.sent_at;
      } else {
        target->text.clear();
        target->deleted = true;
      }
      snapshot.changed_targets.insert({r.conversation, r.target_seq});
    } else if (wanted.count({m.conversation, m.seq}) > 0) {
      snapshot.targets[{m.conversation, m.seq}] = m;
    }
    for (const std::string& user : recipients) {
      const uint64_t inbox_seq = ++snapshot.inbox_heads[user];
      result.recipients.push_back({user, inbox_seq});
      if (user == r.sender) result.sender_inbox_seq = inbox_seq;
    }
    p.result = std::move(result);
    planned.emplace(key, static_cast<int>(i));
  }
  return plan;
}

void ResolveDuplicates(std::vector<PlannedAppend>& plan) {
  for (PlannedAppend& p : plan) {
    if (p.same_as < 0 || !p.result.ok()) continue;
    const AppendResult& original = *plan[p.same_as].result;
    p.result->message = original.message;
    p.result->sender_inbox_seq = original.sender_inbox_seq;
  }
}

}  // namespace parley::service
