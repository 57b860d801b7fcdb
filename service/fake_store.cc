#include "service/fake_store.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "service/append_rules.h"
#include "service/conversation.h"

namespace parley::service {

absl::Status FakeStore::CreateUser(const UserRecord& user) {
  absl::MutexLock lock(&mu_);
  if (users_.count(user.id) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("user \"", user.id, "\" already exists"));
  }
  users_[user.id].record = user;
  return absl::OkStatus();
}

absl::StatusOr<UserRecord> FakeStore::GetUser(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(id);
  if (it == users_.end()) {
    return absl::NotFoundError(
        absl::StrCat("user \"", id, "\" does not exist"));
  }
  return it->second.record;
}

absl::StatusOr<std::vector<UserRecord>> FakeStore::ListUsers(
    absl::string_view after_id, int limit) {
  absl::MutexLock lock(&mu_);
  std::vector<UserRecord> out;
  for (auto it = users_.upper_bound(after_id);
       it != users_.end() && static_cast<int>(out.size()) < limit; ++it) {
    out.push_back(it->second.record);
  }
  return out;
}

absl::Status FakeStore::RevokeTokens(absl::string_view id,
                                     absl::Time not_before) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(id);
  if (it == users_.end()) {
    return absl::NotFoundError(
        absl::StrCat("user \"", id, "\" does not exist"));
  }
  absl::Time& t = it->second.record.tokens_not_before;
  t = std::max(t, not_before);
  return absl::OkStatus();
}

absl::Status FakeStore::DeleteUser(absl::string_view id) {
  absl::MutexLock order(&order_mu_);
  absl::MutexLock lock(&mu_);
  auto it = users_.find(id);
  if (it == users_.end()) {
    return absl::NotFoundError(
        absl::StrCat("user \"", id, "\" does not exist"));
  }
  const std::string user(id);
  users_.erase(it);
  for (auto& [gid, group] : groups_) group.members.erase(user);
  for (auto i = idempotency_.begin(); i != idempotency_.end();) {
    i = i->first.first == user ? idempotency_.erase(i) : std::next(i);
  }
  for (auto i = cursors_.begin(); i != cursors_.end();) {
    i = i->first.first == user ? cursors_.erase(i) : std::next(i);
  }
  for (auto i = blocks_.begin(); i != blocks_.end();) {
    i = i->first == user || i->second == user ? blocks_.erase(i) : std::next(i);
  }
  return absl::OkStatus();
}

GroupRecord FakeStore::ToRecord(const Group& group) const {
  GroupRecord record = group.record;
  for (const auto& [user, role] : group.members) {
    record.members.push_back(user);
    if (role != GroupRole::kMember) record.roles[user] = role;
  }
  return record;
}

absl::Status FakeStore::CreateGroup(const GroupRecord& group,
                                    size_t max_members) {
  absl::MutexLock lock(&mu_);
  if (groups_.count(group.id) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("group \"", group.id, "\" already exists"));
  }
  std::set<std::string> members(group.members.begin(), group.members.end());
  for (const std::string& m : members) {
    if (users_.count(m) == 0) {
      return absl::NotFoundError(
          absl::StrCat("user \"", m, "\" does not exist"));
    }
  }
  if (members.size() > max_members) {
    return absl::ResourceExhaustedError(
        absl::StrCat("group would have ", members.size(),
                     " members; the limit is ", max_members));
  }
  Group& g = groups_[group.id];
  g.record = group;
  g.record.members.clear();
  g.record.roles.clear();
  for (const std::string& m : members) g.members[m] = GroupRole::kMember;
  conversations_[absl::StrCat("g:", group.id)];
  return absl::OkStatus();
}

absl::StatusOr<GroupRecord> FakeStore::GetGroup(absl::string_view id) {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(id);
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("group \"", id, "\" does not exist"));
  }
  return ToRecord(it->second);
}

absl::StatusOr<std::vector<GroupRecord>> FakeStore::ListGroups(
    absl::string_view after_id, int limit) {
  absl::MutexLock lock(&mu_);
  std::vector<GroupRecord> out;
  for (auto it = groups_.upper_bound(after_id);
       it != groups_.end() && static_cast<int>(out.size()) < limit; ++it) {
    out.push_back(ToRecord(it->second));
  }
  return out;
}

absl::StatusOr<GroupRecord> FakeStore::AddMembers(
    absl::string_view group_id, const std::vector<std::string>& user_ids,
    size_t max_members) {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("group \"", group_id, "\" does not exist"));
  }
  std::map<std::string, GroupRole> members = it->second.members;
  for (const std::string& u : user_ids) {
    if (users_.count(u) == 0) {
      return absl::NotFoundError(
          absl::StrCat("user \"", u, "\" does not exist"));
    }
    members.emplace(u, GroupRole::kMember);
  }
  if (members.size() > max_members) {
    return absl::ResourceExhaustedError(
        absl::StrCat("group would have ", members.size(),
                     " members; the limit is ", max_members));
  }
  it->second.members = std::move(members);
  return ToRecord(it->second);
}

absl::StatusOr<GroupRecord> FakeStore::RemoveMembers(
    absl::string_view group_id, const std::vector<std::string>& user_ids) {
  absl::MutexLock lock(&mu_);
  auto it = groups_.find(group_id);
  if (it == groups_.end()) {
    return absl::NotFoundError(
        absl::StrCat("group \"", group_id, "\" does not exist"));
  }
  for (const std::string& u : user_ids) it->second.members.erase(u);
  return ToRecord(it->second);
}

absl::StatusOr<AppendResult> FakeStore::AppendLocked(
    const AppendRequest& request) {
  // What a database store's transaction would read; the rules decide.
  AppendSnapshot snapshot;
  auto dup = idempotency_.find({request.sender, request.client_msg_id});
  if (dup != idempotency_.end()) {
    AppendResult original;
    original.message = messages_[dup->second.first];
    original.sender_inbox_seq = dup->second.second;
    snapshot.sent[dup->first] = std::move(original);
  }
  // A direct pair holds its sender; an operator is no user.
  std::vector<std::string> named = {request.sender};
  if (!request.to_group) named = DirectPair(request);
  named.insert(named.end(), request.group_event.users.begin(),
               request.group_event.users.end());
  for (const std::string& user : named) {
    auto it = users_.find(user);
    if (it == users_.end()) continue;
    snapshot.users.insert(user);
    snapshot.inbox_heads[user] = it->second.inbox.size();
  }
  if (request.to_group) {
    if (auto g = groups_.find(request.to); g != groups_.end()) {
      snapshot.groups[request.to] = g->second.members;
      for (const auto& [m, role] : g->second.members) {
        if (auto u = users_.find(m); u != users_.end()) {
          snapshot.inbox_heads[m] = u->second.inbox.size();
        }
      }
    }
  }
  if (!request.to_group) {
    for (const auto& key : {std::make_pair(request.sender, request.to),
                            std::make_pair(request.to, request.sender)}) {
      if (blocks_.count(key) > 0) snapshot.blocks.insert(key);
    }
  }
  if (auto c = conversations_.find(request.conversation);
      c != conversations_.end()) {
    snapshot.conversation_heads[request.conversation] = c->second.size();
    if (request.kind != MessageKind::kText && request.target_seq >= 1 &&
        request.target_seq <= c->second.size()) {
      snapshot.targets[{request.conversation, request.target_seq}] =
          messages_[c->second[request.target_seq - 1]];
    }
  }
  std::vector<PlannedAppend> plan = PlanAppends({&request}, snapshot);
  if (!plan[0].store()) return std::move(plan[0].result);
  for (const auto& [id, write] : snapshot.group_writes) {
    Group& group = groups_[id];
    if (write.created) {
      group.record = {id, write.title.value_or(""), {}, write.created_at};
      conversations_[GroupConversation(id)];
    } else if (write.title.has_value()) {
      group.record.display_name = *write.title;
    }
    for (const auto& [user, role] : write.members) {
      if (role.has_value()) {
        group.members[user] = *role;
      } else {
        group.members.erase(user);
      }
    }
  }
  for (const auto& key : snapshot.changed_targets) {
    const std::vector<size_t>& conversation = conversations_[key.first];
    const StoredMessage& changed = snapshot.targets[key];
    messages_[conversation[key.second - 1]] = changed;
    if (!changed.deleted) continue;
    for (size_t i : conversation) {
      StoredMessage& m = messages_[i];
      if (m.kind == MessageKind::kEdit && m.target_seq == key.second) {
        m.text.clear();
      }
    }
  }

  AppendResult& result = *plan[0].result;
  result.message.message_id = absl::StrCat(messages_.size() + 1);
  messages_.push_back(result.message);
  const size_t index = messages_.size() - 1;
  conversations_[request.conversation].push_back(index);
  for (const InboxEntry& entry : result.recipients) {
    users_[entry.user].inbox.push_back(index);
  }
  if (!request.to_group && !ByOperator(request)) {
    direct_peers_[request.sender].insert(request.to);
    direct_peers_[request.to].insert(request.sender);
  }
  idempotency_[{request.sender, request.client_msg_id}] = {
      index, result.sender_inbox_seq};
  return std::move(plan[0].result);
}

void FakeStore::Append(AppendRequest request, AppendCallback done) {
  absl::MutexLock order(&order_mu_);
  absl::StatusOr<AppendResult> result;
  {
    absl::MutexLock lock(&mu_);
    result = AppendLocked(request);
  }
  done(std::move(result));
}

absl::StatusOr<uint64_t> FakeStore::InboxHead(absl::string_view user) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  if (it == users_.end()) {
    return absl::NotFoundError(
        absl::StrCat("user \"", user, "\" does not exist"));
  }
  return it->second.inbox.size();
}

absl::StatusOr<std::vector<InboxMessage>> FakeStore::ReadInbox(
    absl::string_view user, uint64_t after_seq, uint64_t upto_seq, int limit) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  if (it == users_.end()) {
    return absl::NotFoundError(
        absl::StrCat("user \"", user, "\" does not exist"));
  }
  const std::vector<size_t>& inbox = it->second.inbox;
  uint64_t end = inbox.size();
  if (upto_seq != 0) end = std::min<uint64_t>(end, upto_seq);
  std::vector<InboxMessage> out;
  for (uint64_t seq = after_seq + 1;
       seq <= end && static_cast<int>(out.size()) < limit; ++seq) {
    out.push_back({seq, messages_[inbox[seq - 1]]});
  }
  return out;
}

absl::StatusOr<HistoryPage> FakeStore::ReadHistory(
    absl::string_view conversation, uint64_t before_seq, int limit) {
  absl::MutexLock lock(&mu_);
  HistoryPage page;
  auto it = conversations_.find(conversation);
  if (it == conversations_.end()) return page;
  const std::vector<size_t>& all = it->second;
  uint64_t end = all.size();  // Exclusive bound, as a count of seqs.
  if (before_seq != 0) end = std::min<uint64_t>(end, before_seq - 1);
  const uint64_t begin = end > static_cast<uint64_t>(limit)
                             ? end - static_cast<uint64_t>(limit)
                             : 0;
  for (uint64_t i = begin; i < end; ++i) {
    page.messages.push_back(messages_[all[i]]);
  }
  page.more = begin > 0;
  return page;
}

absl::StatusOr<uint64_t> FakeStore::ConversationHead(
    absl::string_view conversation) {
  absl::MutexLock lock(&mu_);
  auto it = conversations_.find(conversation);
  return it == conversations_.end() ? 0 : it->second.size();
}

// Whether `m` counts in `user`'s unread count: a text by someone else, not
// deleted (see Store::ListConversations).
static bool CountsAsUnread(const StoredMessage& m, absl::string_view user) {
  return m.from != user && m.kind == MessageKind::kText && !m.deleted;
}

absl::StatusOr<ConversationPage> FakeStore::ListConversations(
    absl::string_view user, absl::string_view page_token, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("limit must be at least 1");
  std::optional<ConversationCursor> after;
  if (!page_token.empty()) {
    absl::StatusOr<ConversationCursor> cursor =
        DecodeConversationCursor(page_token);
    if (!cursor.ok()) return cursor.status();
    after = *std::move(cursor);
  }
  absl::MutexLock lock(&mu_);
  if (users_.count(user) == 0) {
    return absl::NotFoundError(
        absl::StrCat("user \"", user, "\" does not exist"));
  }
  const std::string me(user);
  auto cursor_of = [&](const std::string& u, const std::string& c)
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                         auto it = cursors_.find({u, c});
                         return it == cursors_.end() ? uint64_t{0} : it->second;
                       };
  std::vector<ConversationSummary> all;
  for (const auto& [id, indexes] : conversations_) {
    ConversationSummary s;
    s.conversation = id;
    if (id.rfind("g:", 0) == 0) {
      auto g = groups_.find(absl::string_view(id).substr(2));
      if (g == groups_.end() || g->second.members.count(me) == 0) continue;
      s.group = true;
      s.title = g->second.record.display_name;
      s.last_activity = g->second.record.created_at;
    } else {
      const StoredMessage& first = messages_[indexes.front()];
      const std::string& a = first.from;
      const std::string& b = first.to;
      if (a != me && b != me) continue;
      s.peer = a == me ? b : a;
      auto p = users_.find(s.peer);
      s.title = p == users_.end() || p->second.record.display_name.empty()
                    ? s.peer
                    : p->second.record.display_name;
      s.peer_read_seq = cursor_of(s.peer, id);
    }
    s.head_seq = indexes.size();
    for (auto i = indexes.rbegin(); i != indexes.rend(); ++i) {
      if (messages_[*i].kind != MessageKind::kText) continue;
      s.last_message = messages_[*i];
      s.last_activity = s.last_message->sent_at;
      break;
    }
    s.read_seq = cursor_of(me, id);
    for (uint64_t seq = s.read_seq + 1; seq <= indexes.size(); ++seq) {
      if (CountsAsUnread(messages_[indexes[seq - 1]], me)) ++s.unread;
    }
    all.push_back(std::move(s));
  }
  auto key = [](const ConversationSummary& s) {
    return std::make_pair(absl::ToUnixMicros(s.last_activity),
                          absl::string_view(s.conversation));
  };
  std::sort(all.begin(), all.end(),
            [&](const ConversationSummary& x, const ConversationSummary& y) {
              return key(x) > key(y);
            });
  ConversationPage page;
  for (ConversationSummary& s : all) {
    if (after.has_value() &&
        key(s) >= std::make_pair(after->activity_us,
                                 absl::string_view(after->conversation))) {
      continue;
    }
    if (static_cast<int>(page.conversations.size()) == limit) {
      const ConversationSummary& last = page.conversations.back();
      page.next_page_token = EncodeConversationCursor(
          {absl::ToUnixMicros(last.last_activity), last.conversation});
      break;
    }
    page.conversations.push_back(std::move(s));
  }
  return page;
}

absl::StatusOr<uint64_t> FakeStore::CountUnread(absl::string_view user,
                                                absl::string_view conversation,
                                                uint64_t after_seq) {
  absl::MutexLock lock(&mu_);
  auto it = conversations_.find(conversation);
  if (it == conversations_.end()) return 0;
  uint64_t unread = 0;
  for (uint64_t seq = after_seq + 1; seq <= it->second.size(); ++seq) {
    if (CountsAsUnread(messages_[it->second[seq - 1]], user)) ++unread;
  }
  return unread;
}

void FakeStore::AdvanceReadCursor(std::string user, std::string conversation,
                                  uint64_t seq, CursorCallback done) {
  absl::MutexLock order(&order_mu_);
  absl::StatusOr<bool> result;
  {
    absl::MutexLock lock(&mu_);
    if (users_.count(user) == 0) {
      result = absl::NotFoundError(
          absl::StrCat("user \"", user, "\" does not exist"));
    } else {
      uint64_t& cursor = cursors_[{user, conversation}];
      result = seq > cursor;
      cursor = std::max(cursor, seq);
    }
  }
  done(std::move(result));
}

absl::StatusOr<uint64_t> FakeStore::ReadCursor(absl::string_view user,
                                               absl::string_view conversation) {
  absl::MutexLock lock(&mu_);
  auto it = cursors_.find({std::string(user), std::string(conversation)});
  return it == cursors_.end() ? 0 : it->second;
}

absl::StatusOr<std::vector<std::string>> FakeStore::Contacts(
    absl::string_view user, size_t max_group_members) {
  absl::MutexLock lock(&mu_);
  std::set<std::string> out;
  const std::string me(user);
  for (const auto& [id, group] : groups_) {
    if (group.members.count(me) == 0) continue;
    if (group.members.size() > max_group_members) continue;
    for (const auto& [member, role] : group.members) out.insert(member);
  }
  auto peers = direct_peers_.find(user);
  if (peers != direct_peers_.end()) {
    for (const std::string& p : peers->second) {
      if (users_.count(p) > 0) out.insert(p);
    }
  }
  out.erase(me);
  for (auto i = out.begin(); i != out.end();) {
    const bool blocked =
        blocks_.count({me, *i}) > 0 || blocks_.count({*i, me}) > 0;
    i = blocked ? out.erase(i) : std::next(i);
  }
  return std::vector<std::string>(out.begin(), out.end());
}

absl::StatusOr<bool> FakeStore::SetBlocked(absl::string_view user,
                                           absl::string_view other,
                                           bool blocked, size_t max_blocked) {
  absl::MutexLock lock(&mu_);
  if (user == other) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\" cannot block themselves"));
  }
  for (absl::string_view id : {user, other}) {
    if (users_.count(id) == 0) {
      return absl::NotFoundError(
          absl::StrCat("user \"", id, "\" does not exist"));
    }
  }
  const std::pair<std::string, std::string> key(user, other);
  if (!blocked) return blocks_.erase(key) > 0;
  if (blocks_.count(key) > 0) return false;
  const auto first = blocks_.lower_bound({std::string(user), ""});
  size_t count = 0;
  for (auto i = first; i != blocks_.end() && i->first == user; ++i) ++count;
  if (count >= max_blocked) {
    return TooManyBlocksError(user, count, max_blocked);
  }
  blocks_.insert(key);
  return true;
}

absl::StatusOr<std::vector<std::string>> FakeStore::ListBlocked(
    absl::string_view user) {
  absl::MutexLock lock(&mu_);
  if (users_.count(user) == 0) {
    return absl::NotFoundError(
        absl::StrCat("user \"", user, "\" does not exist"));
  }
  std::vector<std::string> out;
  for (auto i = blocks_.lower_bound({std::string(user), ""});
       i != blocks_.end() && i->first == user; ++i) {
    out.push_back(i->second);
  }
  return out;
}

absl::StatusOr<bool> FakeStore::BlockedEitherWay(absl::string_view a,
                                                 absl::string_view b) {
  absl::MutexLock lock(&mu_);
  const std::string x(a), y(b);
  return blocks_.count({x, y}) > 0 || blocks_.count({y, x}) > 0;
}

absl::StatusOr<StoreStats> FakeStore::Stats() {
  absl::MutexLock lock(&mu_);
  return StoreStats{users_.size(), messages_.size()};
}

}  // namespace parley::service
