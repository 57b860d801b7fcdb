#include "service/append_rules.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace parley::service {
namespace {

absl::Status NotFoundUser(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("user \"", id, "\" does not exist"));
}

}  // namespace

std::vector<std::string> DirectPair(const AppendRequest& request) {
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
    if (snapshot.users.count(r.sender) == 0) {
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
      if (!std::binary_search(recipients.begin(), recipients.end(), r.sender)) {
        p.result = absl::PermissionDeniedError(absl::StrCat(
            "user \"", r.sender, "\" is not a member of group \"", r.to, "\""));
        continue;
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
    AppendResult result;
    StoredMessage& m = result.message;
    m.conversation = r.conversation;
    m.seq = ++snapshot.conversation_heads[r.conversation];
    m.from = r.sender;
    m.to_group = r.to_group;
    m.to = r.to;
    m.text = r.text;
    m.sent_at = r.sent_at;
    m.client_msg_id = r.client_msg_id;
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
