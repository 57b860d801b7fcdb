#include "service/bus_router.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "service/timestamps.h"

namespace parley::service {
namespace {

uint64_t Digest(const std::set<std::string>& users) {
  uint64_t digest = 0;
  for (const std::string& u : users) digest ^= Fnv1a64(u);
  return digest;
}

}  // namespace

std::string EncodeSubjectToken(absl::string_view id) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(id.size());
  for (unsigned char c : id) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out.empty() ? "%" : out;
}

uint64_t Fnv1a64(absl::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

BusRouter::BusRouter(LocalRouter* local, Bus* bus, Store* store,
                     Runner run_blocking, BusRouterOptions options)
    : local_(local),
      bus_(bus),
      store_(store),
      run_blocking_(std::move(run_blocking)),
      options_(std::move(options)) {}

BusRouter::~BusRouter() { Stop(); }

void BusRouter::RunBlocking(std::function<void()> task) {
  absl::MutexLock lock(&run_mu_);
  if (!stopped_) run_blocking_(std::move(task));
}

void BusRouter::Stop() {
  {
    // From here nothing is handed to run_blocking_ (its pool may be next to
    // go).
    absl::MutexLock lock(&run_mu_);
    stopped_ = true;
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (heartbeats_.joinable()) heartbeats_.join();
  for (Bus::Subscription sub : subscriptions_) bus_->Unsubscribe(sub);
  subscriptions_.clear();
  bus_->SetEventHandler(nullptr);
}

std::string BusRouter::Subject(absl::string_view suffix) const {
  return absl::StrCat(options_.subject_prefix, ".", suffix);
}

absl::Status BusRouter::Start() {
  bus_->SetEventHandler([this](Bus::Event e) { OnBusEvent(e); });
  for (const auto& [subject, handler] :
       std::vector<std::pair<std::string, Bus::Handler>>{
           {Subject("ev"), [this](const Bus::Message& m) { OnEvent(m); }},
           {Subject("req"), [this](const Bus::Message& m) { OnRequest(m); }},
           {Subject(absl::StrCat("replica.",
                                 EncodeSubjectToken(options_.replica_id))),
            [this](const Bus::Message& m) { OnRequest(m); }}}) {
    absl::StatusOr<Bus::Subscription> sub = bus_->Subscribe(subject, handler);
    if (!sub.ok()) return sub.status();
    subscriptions_.push_back(*sub);
  }
  // Which users the replicas already running hold; those that do not answer
  // in time are learnt from their heartbeats.
  v1::BusEvent ask;
  ask.set_replica_id(options_.replica_id);
  ask.mutable_users();
  const std::vector<std::string> answers = bus_->Request(
      Subject("req"), ask.SerializeAsString(), options_.request_timeout,
      [](const std::vector<std::string>&) { return false; });
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& data : answers) {
      v1::BusAnswer answer;
      if (!answer.ParseFromString(data)) continue;
      replicas_[answer.replica_id()].last_seen = absl::Now();
      SetReplicaUsersLocked(answer.replica_id(),
                            {answer.users().begin(), answer.users().end()},
                            nullptr, nullptr);
    }
  }
  LogInfo("bus.started", {{"replica", options_.replica_id},
                          {"replicas_answered", answers.size()}});
  heartbeats_ = std::thread([this] { RunHeartbeats(); });
  return absl::OkStatus();
}

void BusRouter::Publish(v1::BusEvent event) {
  event.set_replica_id(options_.replica_id);
  bus_->Publish(Subject("ev"), event.SerializeAsString());
}

std::vector<v1::BusAnswer> BusRouter::Ask(v1::BusEvent event) const {
  event.set_replica_id(options_.replica_id);
  const size_t expected = Replicas().size();
  std::vector<v1::BusAnswer> out;
  if (expected == 0) return out;
  for (const std::string& data : bus_->Request(
           Subject("req"), event.SerializeAsString(), options_.request_timeout,
           [expected](const std::vector<std::string>& got) {
             return got.size() >= expected;
           })) {
    v1::BusAnswer answer;
    if (answer.ParseFromString(data)) out.push_back(std::move(answer));
  }
  if (out.size() < expected) {
    LogWarn("bus.request_incomplete",
            {{"expected", expected}, {"answered", out.size()}});
  }
  return out;
}

bool BusRouter::RemoteHasLocked(absl::string_view user) const {
  auto it = remote_users_.find(user);
  return it != remote_users_.end() && !it->second.empty();
}

void BusRouter::SetReplicaUsersLocked(const std::string& replica,
                                      std::set<std::string> users,
                                      std::vector<std::string>* online,
                                      std::vector<std::string>* offline) {
  Replica& r = replicas_[replica];
  for (const std::string& u : r.users) {
    if (users.count(u) > 0) continue;
    auto it = remote_users_.find(u);
    if (it != remote_users_.end()) {
      it->second.erase(replica);
      if (it->second.empty()) remote_users_.erase(it);
    }
    if (offline != nullptr && !RemoteHasLocked(u) && !local_->IsOnline(u)) {
      offline->push_back(u);
    }
  }
  for (const std::string& u : users) {
    if (r.users.count(u) > 0) continue;
    if (online != nullptr && !RemoteHasLocked(u) && !local_->IsOnline(u)) {
      online->push_back(u);
    }
    remote_users_[u].insert(replica);
  }
  r.users = std::move(users);
}

void BusRouter::PublishPresence(const std::string& user, bool online,
                                bool announced) {
  v1::BusEvent event;
  v1::BusPresence* p = event.mutable_presence();
  p->set_user(user);
  p->set_online(online);
  p->set_announced(announced);
  Publish(std::move(event));
}

void BusRouter::OnEvent(const Bus::Message& message) {
  v1::BusEvent event;
  if (!event.ParseFromString(message.data) ||
      event.replica_id() == options_.replica_id) {
    return;
  }
  const std::string& from = event.replica_id();
  switch (event.kind_case()) {
    case v1::BusEvent::kDelivery: {
      std::vector<InboxEntry> recipients;
      recipients.reserve(event.delivery().recipients_size());
      for (const v1::BusRecipient& r : event.delivery().recipients()) {
        recipients.push_back({r.user(), r.inbox_seq()});
      }
      local_->DeliverMessage(recipients, event.delivery().message(),
                             event.delivery().except_session());
      return;
    }
    case v1::BusEvent::kFrame: {
      const v1::BusFrame& f = event.frame();
      if (f.except_session().empty()) {
        local_->SendToUsers({f.users().begin(), f.users().end()}, f.frame());
      } else {
        for (const std::string& user : f.users()) {
          local_->SendToUser(user, f.frame(), f.except_session());
        }
      }
      return;
    }
    case v1::BusEvent::kPresence: {
      const v1::BusPresence& p = event.presence();
      bool went_offline = false;
      {
        absl::MutexLock lock(&mu_);
        Replica& r = replicas_[from];
        r.last_seen = absl::Now();
        const bool was_online =
            RemoteHasLocked(p.user()) || local_->IsOnline(p.user());
        if (p.online()) {
          r.users.insert(p.user());
          remote_users_[p.user()].insert(from);
        } else {
          r.users.erase(p.user());
          auto it = remote_users_.find(p.user());
          if (it != remote_users_.end()) {
            it->second.erase(from);
            if (it->second.empty()) remote_users_.erase(it);
          }
          went_offline = was_online && !RemoteHasLocked(p.user()) &&
                         !local_->IsOnline(p.user());
        }
      }
      // The sender saw the user elsewhere (here, or on a replica that closed
      // meanwhile) and told nobody: each replica tells its own sessions.
      if (went_offline && !p.announced()) AnnounceLocally({p.user()}, false);
      return;
    }
    case v1::BusEvent::kHeartbeat: {
      bool refresh = false;
      {
        absl::MutexLock lock(&mu_);
        Replica& r = replicas_[from];
        r.last_seen = absl::Now();
        r.gone = false;
        if ((r.users.size() != event.heartbeat().users() ||
             Digest(r.users) != event.heartbeat().users_digest()) &&
            refreshing_.insert(from).second) {
          refresh = true;
        }
      }
      if (refresh) RunBlocking([this, from] { RefreshReplica(from); });
      return;
    }
    case v1::BusEvent::kCatchUp:
      LogInfo("bus.catch_up_asked", {{"by", from}});
      RunBlocking([this] { CatchUpAll(); });
      return;
    default:
      return;
  }
}

void BusRouter::OnRequest(const Bus::Message& message) {
  v1::BusEvent event;
  if (message.reply.empty() || !event.ParseFromString(message.data) ||
      event.replica_id() == options_.replica_id) {
    return;
  }
  {
    // A replica that asks is alive (a new one asks for users at start).
    absl::MutexLock lock(&mu_);
    Replica& r = replicas_[event.replica_id()];
    r.last_seen = absl::Now();
  }
  v1::BusAnswer answer;
  answer.set_replica_id(options_.replica_id);
  switch (event.kind_case()) {
    case v1::BusEvent::kDisconnect: {
      const v1::BusDisconnect& d = event.disconnect();
      Disconnected closed =
          local_->Disconnect(d.user_id(), d.session_id(), d.close_code(),
                             d.reason(), d.reconnect());
      answer.set_sessions(closed.sessions);
      for (const std::string& user : closed.offline_users) {
        // The asking replica announces (it hears every answer).
        PublishPresence(user, false, /*announced=*/true);
        answer.add_offline_users(user);
      }
      break;
    }
    case v1::BusEvent::kBroadcast: {
      answer.set_sessions(
          local_->Broadcast(event.broadcast().frame()).sessions);
      for (const std::string& id : local_->GatewayIds()) {
        answer.add_gateway_ids(id);
      }
      break;
    }
    case v1::BusEvent::kListSessions:
      for (const SessionInfo& s :
           local_->ListSessions(event.list_sessions().user_id())) {
        v1::SessionInfo* info = answer.add_session_list();
        info->set_session_id(s.session_id);
        info->set_user_id(s.user_id);
        info->set_device(s.device);
        info->set_gateway_id(s.gateway_id);
        info->set_peer_address(s.peer_address);
        *info->mutable_connected_at() = ToTimestamp(s.connected_at);
      }
      break;
    case v1::BusEvent::kCensus:
      answer.set_sessions(local_->session_count());
      for (const std::string& id : local_->GatewayIds()) {
        answer.add_gateway_ids(id);
      }
      break;
    case v1::BusEvent::kUsers:
      for (const std::string& user : local_->Users()) answer.add_users(user);
      break;
    default:
      return;
  }
  bus_->Reply(message.reply, answer.SerializeAsString());
}

void BusRouter::OnBusEvent(Bus::Event event) {
  switch (event) {
    case Bus::Event::kReconnected:
      // Both ways: what was published to us meanwhile, and what we
      // published, may be lost.
      RunBlocking([this] { CatchUpAll(); });
      {
        v1::BusEvent ask;
        ask.mutable_catch_up();
        Publish(std::move(ask));
      }
      return;
    case Bus::Event::kMessagesLost:
      RunBlocking([this] { CatchUpAll(); });
      return;
    case Bus::Event::kPublishesLost:
      owe_catch_up_call_.store(true);
      return;
    case Bus::Event::kDisconnected:
      return;
  }
}

void BusRouter::CatchUpAll() {
  const std::vector<std::string> users = local_->Users();
  LogInfo("bus.catch_up_all", {{"users", users.size()}});
  for (const std::string& user : users) {
    absl::StatusOr<uint64_t> head = store_->InboxHead(user);
    if (!head.ok()) {
      // The session's next delivery reveals the gap, or the next call.
      LogWarn("bus.catch_up_head_failed",
              {{"user", user}, {"error", head.status().ToString()}});
      continue;
    }
    local_->CatchUpTo(user, *head);
  }
}

void BusRouter::AnnounceLocally(std::vector<std::string> users, bool online) {
  if (users.empty()) return;
  RunBlocking([this, users = std::move(users), online] {
    for (const std::string& user : users) {
      absl::StatusOr<std::vector<std::string>> contacts =
          store_->Contacts(user, options_.presence_max_group_members);
      if (!contacts.ok()) {
        LogWarn("presence.contacts_failed",
                {{"user", user}, {"error", contacts.status().ToString()}});
        continue;
      }
      v1::ServerFrame frame;
      frame.mutable_presence()->set_user(user);
      frame.mutable_presence()->set_online(online);
      local_->SendToUsers(*contacts, frame);
    }
  });
}

void BusRouter::RefreshReplica(const std::string& replica) {
  v1::BusEvent ask;
  ask.set_replica_id(options_.replica_id);
  ask.mutable_users();
  const std::vector<std::string> answers = bus_->Request(
      Subject(absl::StrCat("replica.", EncodeSubjectToken(replica))),
      ask.SerializeAsString(), options_.request_timeout,
      [](const std::vector<std::string>& got) { return !got.empty(); });
  std::vector<std::string> online, offline;
  {
    absl::MutexLock lock(&mu_);
    refreshing_.erase(replica);
    v1::BusAnswer answer;
    if (answers.empty() || !answer.ParseFromString(answers[0])) return;
    SetReplicaUsersLocked(replica,
                          {answer.users().begin(), answer.users().end()},
                          &online, &offline);
  }
  AnnounceLocally(std::move(online), true);
  AnnounceLocally(std::move(offline), false);
}

void BusRouter::RunHeartbeats() {
  do {
    Heartbeat();
  } while (!stop_.WaitForNotificationWithTimeout(options_.heartbeat_interval));
}

void BusRouter::Heartbeat() {
  if (owe_catch_up_call_.exchange(false)) {
    v1::BusEvent ask;
    ask.mutable_catch_up();
    Publish(std::move(ask));
  }
  const std::vector<std::string> users = local_->Users();
  v1::BusEvent beat;
  beat.mutable_heartbeat()->set_users(users.size());
  beat.mutable_heartbeat()->set_users_digest(
      Digest({users.begin(), users.end()}));
  Publish(std::move(beat));
  std::vector<std::string> offline;
  bool gone = false;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    for (auto& [id, r] : replicas_) {
      if (r.gone || now - r.last_seen < options_.replica_timeout) continue;
      LogWarn("bus.replica_gone", {{"replica", id}});
      r.gone = true;
      gone = true;
      SetReplicaUsersLocked(id, {}, nullptr, &offline);
    }
  }
  AnnounceLocally(std::move(offline), false);
  // A replica that died may have committed messages it never published.
  if (gone) RunBlocking([this] { CatchUpAll(); });
}

std::vector<std::string> BusRouter::Replicas() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [id, r] : replicas_) {
    if (!r.gone) out.push_back(id);
  }
  return out;
}

void BusRouter::AddStream(LinkStream* stream, std::string gateway_id) {
  local_->AddStream(stream, std::move(gateway_id));
}

std::vector<std::string> BusRouter::RemoveStream(LinkStream* stream) {
  std::vector<std::string> gone = local_->RemoveStream(stream);
  // Messaging announces them after the grace if no session is back.
  for (const std::string& user : gone) PublishPresence(user, false, true);
  return gone;
}

absl::StatusOr<bool> BusRouter::BeginOpen(LinkStream* stream,
                                          const SessionInfo& info) {
  absl::StatusOr<bool> first = local_->BeginOpen(stream, info);
  if (!first.ok() || !*first) return first;
  bool elsewhere = false;
  {
    absl::MutexLock lock(&mu_);
    elsewhere = RemoteHasLocked(info.user_id);
  }
  PublishPresence(info.user_id, true, !elsewhere);
  return !elsewhere;
}

bool BusRouter::CompleteOpen(const std::string& session_id,
                             const v1::SessionAccepted& accepted,
                             const std::vector<v1::Message>& replay) {
  return local_->CompleteOpen(session_id, accepted, replay);
}

bool BusRouter::AbortOpen(LinkStream* stream,
                          const v1::SessionRejected& rejected) {
  const std::optional<std::string> user =
      local_->UserOf(stream, rejected.session_id());
  const bool last = local_->AbortOpen(stream, rejected);
  // The open was never announced: neither is its end.
  if (last && user.has_value()) PublishPresence(*user, false, true);
  return last;
}

std::optional<std::string> BusRouter::Close(LinkStream* stream,
                                            absl::string_view session_id) {
  std::optional<std::string> user = local_->Close(stream, session_id);
  if (!user.has_value()) return user;
  bool elsewhere = false;
  {
    absl::MutexLock lock(&mu_);
    elsewhere = RemoteHasLocked(*user);
  }
  PublishPresence(*user, false, !elsewhere);
  if (elsewhere) return std::nullopt;
  return user;
}

std::optional<std::string> BusRouter::UserOf(
    LinkStream* stream, absl::string_view session_id) const {
  return local_->UserOf(stream, session_id);
}

size_t BusRouter::DeliverMessage(const std::vector<InboxEntry>& recipients,
                                 const v1::Message& message,
                                 absl::string_view except_session) {
  const size_t n = local_->DeliverMessage(recipients, message, except_session);
  v1::BusEvent event;
  v1::BusDelivery* d = event.mutable_delivery();
  *d->mutable_message() = message;
  d->mutable_message()->clear_inbox_seq();
  for (const InboxEntry& r : recipients) {
    v1::BusRecipient* out = d->add_recipients();
    out->set_user(r.user);
    out->set_inbox_seq(r.inbox_seq);
  }
  d->set_except_session(std::string(except_session));
  Publish(std::move(event));
  return n;
}

void BusRouter::SendToSession(absl::string_view session_id,
                              v1::ServerFrame frame, uint64_t inbox_seq) {
  // Only this replica's own sessions are ever answered this way.
  local_->SendToSession(session_id, std::move(frame), inbox_seq);
}

void BusRouter::SendToUser(const std::string& user,
                           const v1::ServerFrame& frame,
                           absl::string_view except_session) {
  local_->SendToUser(user, frame, except_session);
  v1::BusEvent event;
  event.mutable_frame()->add_users(user);
  *event.mutable_frame()->mutable_frame() = frame;
  event.mutable_frame()->set_except_session(std::string(except_session));
  Publish(std::move(event));
}

void BusRouter::SendToUsers(const std::vector<std::string>& users,
                            const v1::ServerFrame& frame) {
  local_->SendToUsers(users, frame);
  if (users.empty()) return;
  v1::BusEvent event;
  for (const std::string& user : users) event.mutable_frame()->add_users(user);
  *event.mutable_frame()->mutable_frame() = frame;
  Publish(std::move(event));
}

Router::Disconnected BusRouter::Disconnect(absl::string_view user_id,
                                           absl::string_view session_id,
                                           uint32_t close_code,
                                           const std::string& reason,
                                           bool reconnect) {
  Disconnected out =
      local_->Disconnect(user_id, session_id, close_code, reason, reconnect);
  for (const std::string& user : out.offline_users) {
    PublishPresence(user, false, true);
  }
  // Session ids are unique in the cluster: found here, it is nowhere else.
  std::set<std::string> candidates(out.offline_users.begin(),
                                   out.offline_users.end());
  if (session_id.empty() || out.sessions == 0) {
    v1::BusEvent ask;
    v1::BusDisconnect* d = ask.mutable_disconnect();
    d->set_user_id(std::string(user_id));
    d->set_session_id(std::string(session_id));
    d->set_close_code(close_code);
    d->set_reason(reason);
    d->set_reconnect(reconnect);
    const std::vector<v1::BusAnswer> answers = Ask(std::move(ask));
    absl::MutexLock lock(&mu_);
    for (const v1::BusAnswer& a : answers) {
      out.sessions += a.sessions();
      for (const std::string& user : a.offline_users()) {
        replicas_[a.replica_id()].users.erase(user);
        auto it = remote_users_.find(user);
        if (it != remote_users_.end()) {
          it->second.erase(a.replica_id());
          if (it->second.empty()) remote_users_.erase(it);
        }
        candidates.insert(user);
      }
    }
  }
  out.offline_users.clear();
  for (const std::string& user : candidates) {
    if (!IsOnline(user)) out.offline_users.push_back(user);
  }
  return out;
}

Router::Broadcasted BusRouter::Broadcast(const v1::ServerFrame& frame) {
  Broadcasted out = local_->Broadcast(frame);
  const std::vector<std::string> mine = local_->GatewayIds();
  std::set<std::string> gateways(mine.begin(), mine.end());
  v1::BusEvent ask;
  *ask.mutable_broadcast()->mutable_frame() = frame;
  for (const v1::BusAnswer& a : Ask(std::move(ask))) {
    out.sessions += static_cast<uint32_t>(a.sessions());
    gateways.insert(a.gateway_ids().begin(), a.gateway_ids().end());
  }
  out.gateways = static_cast<uint32_t>(gateways.size());
  return out;
}

std::vector<SessionInfo> BusRouter::ListSessions(
    absl::string_view user_id) const {
  std::vector<SessionInfo> out = local_->ListSessions(user_id);
  v1::BusEvent ask;
  ask.mutable_list_sessions()->set_user_id(std::string(user_id));
  for (const v1::BusAnswer& a : Ask(std::move(ask))) {
    for (const v1::SessionInfo& s : a.session_list()) {
      SessionInfo info;
      info.session_id = s.session_id();
      info.user_id = s.user_id();
      info.device = s.device();
      info.gateway_id = s.gateway_id();
      info.peer_address = s.peer_address();
      info.connected_at = absl::FromUnixSeconds(s.connected_at().seconds()) +
                          absl::Nanoseconds(s.connected_at().nanos());
      out.push_back(std::move(info));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const SessionInfo& a, const SessionInfo& b) {
              return std::tie(a.user_id, a.session_id) <
                     std::tie(b.user_id, b.session_id);
            });
  return out;
}

bool BusRouter::IsOnline(absl::string_view user_id) const {
  if (local_->IsOnline(user_id)) return true;
  absl::MutexLock lock(&mu_);
  return RemoteHasLocked(user_id);
}

size_t BusRouter::session_count() const { return local_->session_count(); }

size_t BusRouter::gateway_count() const { return local_->gateway_count(); }

size_t BusRouter::stream_count() const { return local_->stream_count(); }

Router::Census BusRouter::TakeCensus() const {
  Census out;
  out.sessions = local_->session_count();
  const std::vector<std::string> mine = local_->GatewayIds();
  std::set<std::string> gateways(mine.begin(), mine.end());
  v1::BusEvent ask;
  ask.mutable_census();
  for (const v1::BusAnswer& a : Ask(std::move(ask))) {
    out.sessions += a.sessions();
    gateways.insert(a.gateway_ids().begin(), a.gateway_ids().end());
  }
  out.gateways = gateways.size();
  return out;
}

}  // namespace parley::service
