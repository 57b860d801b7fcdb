#include "service/local_router.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace parley::service {
namespace {

// Inbox messages held for one session beyond this are not kept: they are
// read back from the store when the session is released, and memory stays
// bounded.
constexpr size_t kMaxHeldMessages = 4096;

v1::ServiceEvent DeliveryEvent(const std::vector<std::string>& session_ids,
                               const v1::ServerFrame& frame) {
  v1::ServiceEvent event;
  v1::Delivery* delivery = event.mutable_delivery();
  for (const std::string& id : session_ids) delivery->add_session_ids(id);
  *delivery->mutable_frame() = frame;
  return event;
}

}  // namespace

LocalRouter::LocalRouter(size_t max_sessions_per_user)
    : max_sessions_per_user_(max_sessions_per_user) {}

void LocalRouter::AddStream(LinkStream* stream, std::string gateway_id) {
  absl::MutexLock lock(&mu_);
  streams_[stream].gateway_id = std::move(gateway_id);
}

std::vector<std::string> LocalRouter::RemoveStream(LinkStream* stream) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> gone;
  auto it = streams_.find(stream);
  if (it == streams_.end()) return gone;
  const std::set<std::string> ids = it->second.sessions;
  for (const std::string& id : ids) {
    const std::string user = sessions_.at(id).info.user_id;
    if (RemoveLocked(id)) gone.push_back(user);
  }
  streams_.erase(stream);
  return gone;
}

bool LocalRouter::RemoveLocked(const std::string& session_id) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return false;
  const std::string user = it->second.info.user_id;
  auto stream = streams_.find(it->second.stream);
  if (stream != streams_.end()) stream->second.sessions.erase(session_id);
  sessions_.erase(it);
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return true;
  u->second.erase(session_id);
  if (!u->second.empty()) return false;
  by_user_.erase(u);
  return true;
}

absl::StatusOr<bool> LocalRouter::BeginOpen(LinkStream* stream,
                                            const SessionInfo& info) {
  absl::MutexLock lock(&mu_);
  auto s = streams_.find(stream);
  if (s == streams_.end()) {
    return absl::FailedPreconditionError("the link stream is closed");
  }
  // A re-announce replaces the session wherever it was.
  RemoveLocked(info.session_id);
  auto u = by_user_.find(info.user_id);
  const bool first = u == by_user_.end() || u->second.empty();
  if (!first && u->second.size() >= max_sessions_per_user_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "user \"", info.user_id, "\" already has ", u->second.size(),
        " sessions; the limit is ", max_sessions_per_user_));
  }
  Session& session = sessions_[info.session_id];
  session.info = info;
  session.info.gateway_id = s->second.gateway_id;
  session.stream = stream;
  s->second.sessions.insert(info.session_id);
  by_user_[info.user_id].insert(info.session_id);
  return first;
}

bool LocalRouter::CompleteOpen(const std::string& session_id,
                               const v1::SessionAccepted& accepted,
                               const std::vector<v1::Message>& replay) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second.live) return false;
  Session& session = it->second;
  v1::ServiceEvent event;
  *event.mutable_accepted() = accepted;
  session.stream->Send(std::move(event));
  // A session is owed messages after its head; the replay starts lower.
  session.last_inbox_seq = accepted.inbox_seq();
  if (!replay.empty()) {
    session.last_inbox_seq =
        std::max(session.last_inbox_seq, replay.back().inbox_seq());
  }
  for (const v1::Message& m : replay) {
    v1::ServerFrame frame;
    *frame.mutable_message() = m;
    session.stream->Send(DeliveryEvent({session_id}, frame));
  }
  session.live = true;
  ReleaseLocked(session);
  return true;
}

void LocalRouter::ReleaseLocked(Session& session) {
  std::vector<Held> held = std::move(session.held);
  session.held.clear();
  for (size_t i = 0; i < held.size(); ++i) {
    if (session.catch_up_id != 0) {
      // A new gap: what is left waits for its catch-up.
      for (; i < held.size(); ++i) {
        session.held.push_back(std::move(held[i]));
      }
      return;
    }
    ToSessionLocked(session, std::move(held[i].frame), held[i].inbox_seq,
                    held[i].is_message);
  }
  // Without a CatchUp function the client's sync finds what is owed.
  if (session.catch_up_id == 0 && session.owed_upto > session.last_inbox_seq &&
      catch_up_) {
    StartCatchUpLocked(session, session.owed_upto);
  }
}

void LocalRouter::SetCatchUp(CatchUp catch_up) {
  absl::MutexLock lock(&mu_);
  catch_up_ = std::move(catch_up);
}

void LocalRouter::StartCatchUpLocked(Session& session, uint64_t upto_seq) {
  session.catch_up_id = next_catch_up_id_++;
  CatchUpRequest request;
  request.session_id = session.info.session_id;
  request.user = session.info.user_id;
  request.after_seq = session.last_inbox_seq;
  request.upto_seq = upto_seq;
  request.id = session.catch_up_id;
  // Never with one replica (commit order is delivery order): worth a line.
  LogInfo("router.catch_up", {{"session", request.session_id},
                              {"user", request.user},
                              {"after", request.after_seq},
                              {"upto", request.upto_seq}});
  catch_up_(std::move(request));
}

void LocalRouter::FinishCatchUp(
    const CatchUpRequest& request,
    absl::StatusOr<std::vector<v1::Message>> messages) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(request.session_id);
  if (it == sessions_.end() || it->second.catch_up_id != request.id) return;
  Session& session = it->second;
  if (!messages.ok()) {
    LogWarn("router.catch_up_failed",
            {{"session", request.session_id},
             {"user", request.user},
             {"attempt", request.attempt + 1},
             {"error", messages.status().ToString()}});
    if (catch_up_) {
      CatchUpRequest again = request;
      ++again.attempt;
      catch_up_(std::move(again));
      return;
    }
    // Shutting down: nothing can read any more; the client syncs.
    messages = std::vector<v1::Message>();
  }
  // The catch-up and the held Acks and messages up to upto_seq go out in
  // inbox_seq order; an Ack takes its message's place (the session sent
  // it), a held message repeats one read.
  std::map<uint64_t, v1::ServerFrame> in_order;
  for (v1::Message& m : *messages) {
    if (m.inbox_seq() <= session.last_inbox_seq ||
        m.inbox_seq() > request.upto_seq) {
      continue;
    }
    const uint64_t seq = m.inbox_seq();
    *in_order[seq].mutable_message() = std::move(m);
  }
  std::vector<Held> rest;
  for (Held& h : session.held) {
    if (h.inbox_seq > session.last_inbox_seq &&
        h.inbox_seq <= request.upto_seq) {
      if (!h.is_message || in_order.count(h.inbox_seq) == 0) {
        in_order[h.inbox_seq] = std::move(h.frame);
      }
      continue;
    }
    rest.push_back(std::move(h));
  }
  for (auto& [seq, frame] : in_order) {
    SendFrameTo(session.stream, session.info.session_id, std::move(frame));
  }
  // Past what was read (the limit cut it short) the client syncs.
  session.last_inbox_seq = request.upto_seq;
  session.catch_up_id = 0;
  session.held = std::move(rest);
  ReleaseLocked(session);
}

void LocalRouter::CatchUpTo(absl::string_view user, uint64_t head) {
  absl::MutexLock lock(&mu_);
  auto u = by_user_.find(user);
  if (u == by_user_.end()) return;
  for (const std::string& id : u->second) {
    Session& session = sessions_.at(id);
    if (head <= session.last_inbox_seq) continue;
    session.owed_upto = std::max(session.owed_upto, head);
    if (session.live && session.catch_up_id == 0 && catch_up_) {
      StartCatchUpLocked(session, head);
    }
  }
}

std::vector<std::string> LocalRouter::Users() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  out.reserve(by_user_.size());
  for (const auto& [user, ids] : by_user_) out.push_back(user);
  return out;
}

bool LocalRouter::AbortOpen(LinkStream* stream,
                            const v1::SessionRejected& rejected) {
  absl::MutexLock lock(&mu_);
  bool last = false;
  auto it = sessions_.find(rejected.session_id());
  if (it != sessions_.end() && it->second.stream == stream) {
    last = RemoveLocked(rejected.session_id());
  }
  v1::ServiceEvent event;
  *event.mutable_rejected() = rejected;
  stream->Send(std::move(event));
  return last;
}

std::optional<std::string> LocalRouter::Close(LinkStream* stream,
                                              absl::string_view session_id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second.stream != stream) {
    return std::nullopt;
  }
  std::string user = it->second.info.user_id;
  if (!RemoveLocked(std::string(session_id))) return std::nullopt;
  return user;
}

std::optional<std::string> LocalRouter::UserOf(
    LinkStream* stream, absl::string_view session_id) const {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second.stream != stream) {
    return std::nullopt;
  }
  return it->second.info.user_id;
}

void LocalRouter::HoldLocked(Session& session, v1::ServerFrame frame,
                             uint64_t inbox_seq, bool is_message) {
  if (is_message && session.held.size() >= kMaxHeldMessages) {
    // Read back from the store once the session is released.
    session.owed_upto = std::max(session.owed_upto, inbox_seq);
    return;
  }
  session.held.push_back({std::move(frame), inbox_seq, is_message});
}

void LocalRouter::ToSessionLocked(Session& session, v1::ServerFrame frame,
                                  uint64_t inbox_seq, bool is_message) {
  if (!session.live || session.catch_up_id != 0) {
    HoldLocked(session, std::move(frame), inbox_seq, is_message);
    return;
  }
  if (inbox_seq != 0) {
    if (inbox_seq <= session.last_inbox_seq) {
      // Already sent. An Ack still answers its (repeated) Send.
      if (is_message) return;
    } else if (inbox_seq == session.last_inbox_seq + 1 || !catch_up_) {
      session.last_inbox_seq = inbox_seq;
    } else {
      HoldLocked(session, std::move(frame), inbox_seq, is_message);
      StartCatchUpLocked(session, inbox_seq - 1);
      return;
    }
  }
  SendFrameTo(session.stream, session.info.session_id, std::move(frame));
}

size_t LocalRouter::DeliverMessage(const std::vector<InboxEntry>& recipients,
                                   const v1::Message& message,
                                   absl::string_view except_session) {
  absl::MutexLock lock(&mu_);
  std::map<LinkStream*, v1::ServiceEvent> batch;
  size_t count = 0;
  for (const InboxEntry& recipient : recipients) {
    auto u = by_user_.find(recipient.user);
    if (u == by_user_.end()) continue;
    for (const std::string& id : u->second) {
      if (id == except_session) continue;
      Session& session = sessions_.at(id);
      if (recipient.inbox_seq <= session.last_inbox_seq) continue;
      if (!session.live || session.catch_up_id != 0 ||
          (recipient.inbox_seq != session.last_inbox_seq + 1 && catch_up_)) {
        // Held, or past a gap: one frame of its own.
        v1::ServerFrame frame;
        *frame.mutable_message() = message;
        frame.mutable_message()->set_inbox_seq(recipient.inbox_seq);
        ToSessionLocked(session, std::move(frame), recipient.inbox_seq, true);
        ++count;
        continue;
      }
      session.last_inbox_seq = recipient.inbox_seq;
      v1::Delivery* delivery = batch[session.stream].mutable_delivery();
      delivery->add_session_ids(id);
      delivery->add_inbox_seqs(recipient.inbox_seq);
      ++count;
    }
  }
  for (auto& [stream, event] : batch) {
    v1::Message* shared =
        event.mutable_delivery()->mutable_frame()->mutable_message();
    *shared = message;
    shared->clear_inbox_seq();
    stream->Send(std::move(event));
  }
  return count;
}

void LocalRouter::SendToSession(absl::string_view session_id,
                                v1::ServerFrame frame, uint64_t inbox_seq) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  ToSessionLocked(it->second, std::move(frame), inbox_seq, false);
}

void LocalRouter::SendToUser(const std::string& user,
                             const v1::ServerFrame& frame,
                             absl::string_view except_session) {
  absl::MutexLock lock(&mu_);
  SendToUsersLocked({user}, frame, except_session);
}

void LocalRouter::SendToUsers(const std::vector<std::string>& users,
                              const v1::ServerFrame& frame) {
  absl::MutexLock lock(&mu_);
  SendToUsersLocked(users, frame, "");
}

void LocalRouter::SendToUsersLocked(const std::vector<std::string>& users,
                                    const v1::ServerFrame& frame,
                                    absl::string_view except_session) {
  std::map<LinkStream*, std::vector<std::string>> batch;
  for (const std::string& user : users) {
    auto u = by_user_.find(user);
    if (u == by_user_.end()) continue;
    for (const std::string& id : u->second) {
      if (id == except_session) continue;
      Session& session = sessions_.at(id);
      if (!session.live || session.catch_up_id != 0) {
        ToSessionLocked(session, frame, 0, false);
      } else {
        batch[session.stream].push_back(id);
      }
    }
  }
  for (auto& [stream, ids] : batch) stream->Send(DeliveryEvent(ids, frame));
}

Router::Disconnected LocalRouter::Disconnect(absl::string_view user_id,
                                             absl::string_view session_id,
                                             uint32_t close_code,
                                             const std::string& reason,
                                             bool reconnect) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  if (!session_id.empty()) {
    if (sessions_.count(session_id) > 0) ids.emplace_back(session_id);
  } else {
    auto u = by_user_.find(user_id);
    if (u != by_user_.end()) ids.assign(u->second.begin(), u->second.end());
  }
  std::map<LinkStream*, std::vector<std::string>> batch;
  Disconnected out;
  for (const std::string& id : ids) {
    const Session& session = sessions_.at(id);
    batch[session.stream].push_back(id);
    const std::string user = session.info.user_id;
    if (RemoveLocked(id)) out.offline_users.push_back(user);
    ++out.sessions;
  }
  for (auto& [stream, session_ids] : batch) {
    v1::ServiceEvent event;
    v1::DisconnectOrder* order = event.mutable_disconnect();
    for (const std::string& id : session_ids) order->add_session_ids(id);
    order->set_close_code(close_code);
    order->set_reason(reason);
    order->set_reconnect(reconnect);
    stream->Send(std::move(event));
  }
  return out;
}

Router::Broadcasted LocalRouter::Broadcast(const v1::ServerFrame& frame) {
  absl::MutexLock lock(&mu_);
  Broadcasted out;
  std::set<std::string> gateways;
  for (auto& [stream, entry] : streams_) {
    v1::ServiceEvent event;
    *event.mutable_broadcast()->mutable_frame() = frame;
    stream->Send(std::move(event));
    gateways.insert(entry.gateway_id);
  }
  out.gateways = static_cast<uint32_t>(gateways.size());
  out.sessions = static_cast<uint32_t>(sessions_.size());
  return out;
}

std::vector<SessionInfo> LocalRouter::ListSessions(
    absl::string_view user_id) const {
  absl::MutexLock lock(&mu_);
  std::vector<SessionInfo> out;
  for (const auto& [user, ids] : by_user_) {
    if (!user_id.empty() && user != user_id) continue;
    for (const std::string& id : ids) out.push_back(sessions_.at(id).info);
  }
  return out;
}

bool LocalRouter::IsOnline(absl::string_view user_id) const {
  absl::MutexLock lock(&mu_);
  return by_user_.count(user_id) > 0;
}

size_t LocalRouter::session_count() const {
  absl::MutexLock lock(&mu_);
  return sessions_.size();
}

size_t LocalRouter::gateway_count() const { return GatewayIds().size(); }

std::vector<std::string> LocalRouter::GatewayIds() const {
  absl::MutexLock lock(&mu_);
  std::set<std::string> gateways;
  for (const auto& [stream, entry] : streams_) {
    gateways.insert(entry.gateway_id);
  }
  return {gateways.begin(), gateways.end()};
}

Router::Census LocalRouter::TakeCensus() const {
  return {session_count(), gateway_count()};
}

size_t LocalRouter::stream_count() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

}  // namespace parley::service
