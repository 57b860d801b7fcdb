#include "service/append_rules.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "service/conversation.h"

namespace parley::service {
namespace {

absl::Status NotFoundUser(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("user \"", id, "\" does not exist"));
}

// What a message of `kind` is, with its article.
absl::string_view KindName(MessageKind kind) {
  switch (kind) {
    case MessageKind::kText:
      return "a text message";
    case MessageKind::kEdit:
      return "an edit event";
    case MessageKind::kDelete:
      return "a delete event";
    case MessageKind::kGroupEvent:
      return "a group event";
  }
  return "a message";
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
        what, " is ", KindName(target.kind), ", not a text message"));
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

absl::string_view RoleName(GroupRole role) {
  switch (role) {
    case GroupRole::kMember:
      return "a member";
    case GroupRole::kAdmin:
      return "an admin";
    case GroupRole::kOwner:
      return "the owner";
  }
  return "unknown";
}

// A group event's outcome (rule 4b).
struct GroupChange {
  // The group's members after it.
  MemberRoles members;
  // The event as stored: the users it really changed.
  GroupEvent event;
  // Who it removed (or who left).
  std::vector<std::string> removed;
  // The member rows it changes: role, or nullopt when removed.
  std::map<std::string, std::optional<GroupRole>> writes;
};

// Rule 4b: what the group event `r` changes, or why it may not.
absl::StatusOr<GroupChange> PlanGroupChange(const AppendRequest& r,
                                            const AppendSnapshot& snapshot) {
  const std::string group = absl::StrCat("group \"", r.to, "\"");
  const bool op = ByOperator(r);
  const GroupEventType type = r.group_event.type;
  const std::set<std::string> named(r.group_event.users.begin(),
                                    r.group_event.users.end());
  GroupChange c;
  c.event.type = type;
  auto must_exist = [&](const std::string& user) {
    return snapshot.users.count(user) > 0 ? absl::OkStatus()
                                          : NotFoundUser(user);
  };
  auto within_limit = [&](size_t n) {
    if (n <= r.max_group_members) return absl::OkStatus();
    return absl::ResourceExhaustedError(absl::StrCat(group, " would have ", n,
                                                     " members; the limit is ",
                                                     r.max_group_members));
  };
  auto group_it = snapshot.groups.find(r.to);
  if (type == GroupEventType::kCreated) {
    if (group_it != snapshot.groups.end()) {
      return absl::AlreadyExistsError(absl::StrCat(group, " already exists"));
    }
    std::set<std::string> members = named;
    if (!op) members.insert(r.sender);
    for (const std::string& user : members) {
      absl::Status exists = must_exist(user);
      if (!exists.ok()) return exists;
    }
    absl::Status limit = within_limit(members.size());
    if (!limit.ok()) return limit;
    for (const std::string& user : members) {
      const GroupRole role =
          !op && user == r.sender ? GroupRole::kOwner : GroupRole::kMember;
      c.members[user] = role;
      c.writes[user] = role;
      c.event.users.push_back(user);
    }
    return c;
  }
  if (group_it == snapshot.groups.end()) {
    return absl::NotFoundError(absl::StrCat(group, " does not exist"));
  }
  c.members = group_it->second;
  GroupRole actor = GroupRole::kOwner;
  if (!op) {
    auto me = c.members.find(r.sender);
    if (me == c.members.end()) {
      return absl::PermissionDeniedError(
          absl::StrCat("user \"", r.sender, "\" is not a member of ", group));
    }
    actor = me->second;
  }
  auto at_least_admin = [&](absl::string_view what) {
    if (op || actor != GroupRole::kMember) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("only the owner and admins of ", group, " may ", what,
                     "; \"", r.sender, "\" is a member"));
  };
  switch (type) {
    case GroupEventType::kMembersAdded: {
      absl::Status allowed = at_least_admin("add members");
      if (!allowed.ok()) return allowed;
      for (const std::string& user : named) {
        absl::Status exists = must_exist(user);
        if (!exists.ok()) return exists;
        if (c.members.count(user) > 0) continue;
        c.members[user] = GroupRole::kMember;
        c.writes[user] = GroupRole::kMember;
        c.event.users.push_back(user);
      }
      if (c.event.users.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("every user named is already a member of ", group));
      }
      absl::Status limit = within_limit(c.members.size());
      if (!limit.ok()) return limit;
      return c;
    }
    case GroupEventType::kMembersRemoved: {
      absl::Status allowed = at_least_admin("remove members");
      if (!allowed.ok()) return allowed;
      for (const std::string& user : named) {
        auto it = c.members.find(user);
        if (it == c.members.end()) continue;
        if (!op && user == r.sender) {
          return absl::InvalidArgumentError(
              absl::StrCat("\"", user, "\" cannot remove themself from ", group,
                           ": leave it instead"));
        }
        if (!op && (it->second == GroupRole::kOwner ||
                    (actor == GroupRole::kAdmin &&
                     it->second != GroupRole::kMember))) {
          return absl::PermissionDeniedError(absl::StrCat(
              "\"", r.sender, "\" (", RoleName(actor), ") may not remove \"",
              user, "\" (", RoleName(it->second), ") from ", group));
        }
        c.members.erase(it);
        c.writes[user] = std::nullopt;
        c.removed.push_back(user);
        c.event.users.push_back(user);
      }
      if (c.event.users.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("no user named is a member of ", group));
      }
      return c;
    }
    case GroupEventType::kMemberLeft:
      if (op) {
        return absl::InvalidArgumentError(
            "an operator is no member and cannot leave; remove members "
            "instead");
      }
      if (actor == GroupRole::kOwner && c.members.size() > 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("\"", r.sender, "\" owns ", group,
                         ": make another member the owner before leaving"));
      }
      c.members.erase(r.sender);
      c.writes[r.sender] = std::nullopt;
      c.removed.push_back(r.sender);
      c.event.users.push_back(r.sender);
      return c;
    case GroupEventType::kRenamed: {
      absl::Status allowed = at_least_admin("rename it");
      if (!allowed.ok()) return allowed;
      if (r.text.empty()) {
        return absl::InvalidArgumentError("a group's title may not be empty");
      }
      return c;
    }
    case GroupEventType::kRoleChanged: {
      if (!op && actor != GroupRole::kOwner) {
        return absl::PermissionDeniedError(
            absl::StrCat("only the owner of ", group, " may change roles; \"",
                         r.sender, "\" is ", RoleName(actor)));
      }
      if (named.size() != 1) {
        return absl::InvalidArgumentError("a role change names one user");
      }
      const std::string& user = *named.begin();
      auto it = c.members.find(user);
      if (it == c.members.end()) {
        return absl::NotFoundError(
            absl::StrCat("user \"", user, "\" is not a member of ", group));
      }
      if (!op && user == r.sender) {
        return absl::InvalidArgumentError(absl::StrCat(
            "the owner cannot change their own role: make another member "
            "the owner instead"));
      }
      const GroupRole role = r.group_event.role;
      if (it->second == role) {
        return absl::FailedPreconditionError(absl::StrCat(
            "\"", user, "\" is already ", RoleName(role), " of ", group));
      }
      if (role == GroupRole::kOwner) {
        for (auto& [member, member_role] : c.members) {
          if (member_role != GroupRole::kOwner) continue;
          member_role = GroupRole::kAdmin;
          c.writes[member] = GroupRole::kAdmin;
        }
      }
      it->second = role;
      c.writes[user] = role;
      c.event.users.push_back(user);
      c.event.role = role;
      return c;
    }
    case GroupEventType::kCreated:
    case GroupEventType::kNone:
      break;
  }
  return absl::InvalidArgumentError("the group event names no known change");
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
    if (r->kind == MessageKind::kEdit || r->kind == MessageKind::kDelete) {
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
    std::optional<GroupChange> change;
    if (r.kind == MessageKind::kGroupEvent) {
      absl::StatusOr<GroupChange> planned_change = PlanGroupChange(r, snapshot);
      if (!planned_change.ok()) {
        p.result = planned_change.status();
        continue;
      }
      change = *std::move(planned_change);
      for (const auto& [user, role] : change->members) {
        recipients.push_back(user);
      }
      recipients.insert(recipients.end(), change->removed.begin(),
                        change->removed.end());
      std::sort(recipients.begin(), recipients.end());
    } else if (r.to_group) {
      auto group = snapshot.groups.find(r.to);
      if (group == snapshot.groups.end()) {
        p.result = absl::NotFoundError(
            absl::StrCat("group \"", r.to, "\" does not exist"));
        continue;
      }
      for (const auto& [user, role] : group->second) recipients.push_back(user);
      if (!ByOperator(r) && group->second.count(r.sender) == 0) {
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
    if (r.kind == MessageKind::kEdit || r.kind == MessageKind::kDelete) {
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
    if (change.has_value()) {
      const GroupEventType type = change->event.type;
      if (type != GroupEventType::kCreated &&
          type != GroupEventType::kRenamed) {
        m.text.clear();
      }
      GroupWrite& write = snapshot.group_writes[r.to];
      if (type == GroupEventType::kCreated) {
        write.created = true;
        write.created_at = r.sent_at;
      }
      if (!m.text.empty()) write.title = m.text;
      for (auto& [user, role] : change->writes) write.members[user] = role;
      snapshot.groups[r.to] = std::move(change->members);
      m.group_event = std::move(change->event);
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
