#include "service/nats_bus.h"

#include <set>
#include <utility>

#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "nats/nats.h"

namespace parley::service {
namespace {

// libnats may call back after a connection or subscription is gone (its
// callbacks run on its own threads, also after natsConnection_Destroy), so
// a callback first checks that its closure is alive, under this lock held
// shared for the whole call; forgetting a closure takes it exclusively, so
// it also waits for the calls in progress.
absl::Mutex live_mu(absl::kConstInit);
std::set<const void*>& Live() ABSL_EXCLUSIVE_LOCKS_REQUIRED(live_mu) {
  static auto* live = new std::set<const void*>();
  return *live;
}

void Forget(const void* closure) {
  absl::MutexLock lock(&live_mu);
  Live().erase(closure);
}

void Remember(const void* closure) {
  absl::MutexLock lock(&live_mu);
  Live().insert(closure);
}

absl::Status NatsError(absl::string_view what, natsStatus s) {
  return absl::UnavailableError(
      absl::StrCat(what, ": ", natsStatus_GetText(s)));
}

void OnDisconnected(natsConnection*, void* closure) {
  absl::ReaderMutexLock lock(&live_mu);
  if (Live().count(closure) == 0) return;
  LogWarn("bus.disconnected");
  static_cast<NatsBus*>(closure)->Fire(Bus::Event::kDisconnected);
}

void OnReconnected(natsConnection*, void* closure) {
  absl::ReaderMutexLock lock(&live_mu);
  if (Live().count(closure) == 0) return;
  LogInfo("bus.connected");
  static_cast<NatsBus*>(closure)->Fire(Bus::Event::kReconnected);
}

void OnError(natsConnection*, natsSubscription*, natsStatus err,
             void* closure) {
  absl::ReaderMutexLock lock(&live_mu);
  if (Live().count(closure) == 0) return;
  LogWarn("bus.error", {{"error", natsStatus_GetText(err)}});
  if (err == NATS_SLOW_CONSUMER) {
    static_cast<NatsBus*>(closure)->Fire(Bus::Event::kMessagesLost);
  }
}

// The handler of one subscription, on its libnats delivery thread.
void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg,
               void* closure) {
  absl::ReaderMutexLock lock(&live_mu);
  if (Live().count(closure) == 0) {
    natsMsg_Destroy(msg);
    return;
  }
  Bus::Message message;
  message.subject = natsMsg_GetSubject(msg);
  message.data.assign(natsMsg_GetData(msg),
                      static_cast<size_t>(natsMsg_GetDataLength(msg)));
  if (natsMsg_GetReply(msg) != nullptr) message.reply = natsMsg_GetReply(msg);
  natsMsg_Destroy(msg);
  static_cast<NatsBus::Sub*>(closure)->handler(message);
}

}  // namespace

NatsBus::NatsBus(NatsBusOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<NatsBus>> NatsBus::Connect(
    NatsBusOptions options) {
  if (options.servers.empty()) {
    return absl::InvalidArgumentError("no NATS server URL");
  }
  std::unique_ptr<NatsBus> bus(new NatsBus(std::move(options)));
  Remember(bus.get());
  const NatsBusOptions& o = bus->options_;
  std::vector<const char*> servers;
  for (const std::string& s : o.servers) servers.push_back(s.c_str());
  natsStatus s = natsOptions_Create(&bus->opts_);
  if (s != NATS_OK) return NatsError("natsOptions_Create", s);
  natsOptions* opts = bus->opts_;
  void* self = bus.get();
  for (natsStatus step : {
           natsOptions_SetServers(opts, servers.data(),
                                  static_cast<int>(servers.size())),
           natsOptions_SetName(opts, o.name.c_str()),
           natsOptions_SetNoEcho(opts, true),
           natsOptions_SetAllowReconnect(opts, true),
           // Forever: a replica without the bus still serves its sessions.
           natsOptions_SetMaxReconnect(opts, -1),
           natsOptions_SetReconnectWait(
               opts, absl::ToInt64Milliseconds(o.reconnect_wait)),
           natsOptions_SetMaxPendingMsgs(opts, o.max_pending_messages),
           natsOptions_SetDisconnectedCB(opts, OnDisconnected, self),
           natsOptions_SetReconnectedCB(opts, OnReconnected, self),
           natsOptions_SetErrorHandler(opts, OnError, self),
           natsOptions_SetRetryOnFailedConnect(opts, true, OnReconnected, self),
       }) {
    if (step != NATS_OK) {
      return absl::InvalidArgumentError(
          absl::StrCat("NATS options: ", natsStatus_GetText(step)));
    }
  }
  s = natsConnection_Connect(&bus->conn_, opts);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    return NatsError(absl::StrCat("cannot connect to ", o.servers[0]), s);
  }
  if (s == NATS_NOT_YET_CONNECTED) {
    LogWarn("bus.not_yet_connected", {{"servers", o.servers[0]}});
  }
  bus->publisher_ = std::thread([b = bus.get()] { b->RunPublisher(); });
  return bus;
}

NatsBus::~NatsBus() {
  {
    absl::MutexLock lock(&subs_mu_);
    for (auto& [id, sub] : subs_) Forget(sub.get());
  }
  Forget(this);
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (publisher_.joinable()) publisher_.join();
  if (conn_ != nullptr) {
    natsConnection_FlushTimeout(conn_, 1000);
    {
      absl::MutexLock lock(&subs_mu_);
      for (auto& [id, sub] : subs_) natsSubscription_Destroy(sub->sub);
    }
    natsConnection_Close(conn_);
    natsConnection_Destroy(conn_);
  }
  if (opts_ != nullptr) natsOptions_Destroy(opts_);
}

void NatsBus::SetEventHandler(EventHandler handler) {
  absl::MutexLock lock(&event_mu_);
  on_event_ = std::move(handler);
}

void NatsBus::Fire(Event event) {
  // Held across the call, so that once SetEventHandler() returns the old
  // handler is not running any more.
  absl::MutexLock lock(&event_mu_);
  if (on_event_) on_event_(event);
}

bool NatsBus::connected() const {
  return natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED;
}

void NatsBus::Publish(const std::string& subject, std::string data) {
  absl::MutexLock lock(&queue_mu_);
  if (queue_.size() >= options_.max_queued_publishes) {
    // Reported by the publisher thread: the caller may be an event handler.
    dropped_ = true;
    return;
  }
  queue_.emplace_back(subject, std::move(data));
}

void NatsBus::Reply(const std::string& reply, std::string data) {
  Publish(reply, std::move(data));
}

void NatsBus::RunPublisher() {
  for (;;) {
    std::deque<std::pair<std::string, std::string>> batch;
    bool lost = false;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return stopping_ || !queue_.empty();
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;
      batch.swap(queue_);
      lost = dropped_;
      dropped_ = false;
    }
    if (lost) Fire(Event::kPublishesLost);
    for (const auto& [subject, data] : batch) {
      // While reconnecting the client buffers the publish; past its buffer
      // (or on any other refusal) it is lost, and the others must catch up.
      if (natsConnection_Publish(conn_, subject.c_str(), data.data(),
                                 static_cast<int>(data.size())) != NATS_OK) {
        Fire(Event::kPublishesLost);
      }
    }
  }
}

absl::StatusOr<Bus::Subscription> NatsBus::Subscribe(const std::string& subject,
                                                     Handler handler) {
  auto sub = std::make_unique<Sub>();
  sub->handler = std::move(handler);
  Remember(sub.get());
  natsStatus s = natsConnection_Subscribe(&sub->sub, conn_, subject.c_str(),
                                          OnMessage, sub.get());
  if (s != NATS_OK) {
    Forget(sub.get());
    return NatsError(absl::StrCat("cannot subscribe to ", subject), s);
  }
  natsSubscription_SetPendingLimits(sub->sub, options_.max_pending_messages,
                                    -1);
  // The SUB reaches the server before this returns when connected; else
  // the client sends it on connecting.
  if (connected()) natsConnection_FlushTimeout(conn_, 2000);
  absl::MutexLock lock(&subs_mu_);
  const Subscription id = next_sub_++;
  subs_[id] = std::move(sub);
  return id;
}

void NatsBus::Unsubscribe(Subscription subscription) {
  std::unique_ptr<Sub> sub;
  {
    absl::MutexLock lock(&subs_mu_);
    auto it = subs_.find(subscription);
    if (it == subs_.end()) return;
    sub = std::move(it->second);
    subs_.erase(it);
  }
  Forget(sub.get());
  natsSubscription_Unsubscribe(sub->sub);
  natsSubscription_Destroy(sub->sub);
}

std::vector<std::string> NatsBus::Request(
    const std::string& subject, std::string data, absl::Duration timeout,
    const std::function<bool(const std::vector<std::string>&)>& enough) {
  std::vector<std::string> answers;
  // Cut off, nobody can answer: do not wait for them.
  if (!connected()) return answers;
  natsInbox* inbox = nullptr;
  natsSubscription* sub = nullptr;
  if (natsInbox_Create(&inbox) != NATS_OK) return answers;
  if (natsConnection_SubscribeSync(&sub, conn_, inbox) != NATS_OK) {
    natsInbox_Destroy(inbox);
    return answers;
  }
  const absl::Time deadline = absl::Now() + timeout;
  if (natsConnection_PublishRequest(conn_, subject.c_str(), inbox, data.data(),
                                    static_cast<int>(data.size())) == NATS_OK) {
    while (!enough(answers)) {
      const int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (left <= 0) break;
      natsMsg* msg = nullptr;
      if (natsSubscription_NextMsg(&msg, sub, left) != NATS_OK) break;
      answers.emplace_back(natsMsg_GetData(msg),
                           static_cast<size_t>(natsMsg_GetDataLength(msg)));
      natsMsg_Destroy(msg);
    }
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  natsInbox_Destroy(inbox);
  return answers;
}

}  // namespace parley::service
