#include "service/fake_bus.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::service {

bool SubjectMatches(const std::string& pattern, const std::string& subject) {
  std::vector<absl::string_view> p = absl::StrSplit(pattern, '.');
  std::vector<absl::string_view> s = absl::StrSplit(subject, '.');
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">") return i < s.size();
    if (i >= s.size()) return false;
    if (p[i] != "*" && p[i] != s[i]) return false;
  }
  return p.size() == s.size();
}

void FakeBusNetwork::Attach(FakeBus* bus) {
  absl::MutexLock lock(&mu_);
  buses_.push_back(bus);
}

void FakeBusNetwork::Detach(FakeBus* bus) {
  absl::MutexLock lock(&mu_);
  buses_.erase(std::remove(buses_.begin(), buses_.end(), bus), buses_.end());
  held_.erase(std::remove_if(held_.begin(), held_.end(),
                             [bus](const Pending& p) { return p.from == bus; }),
              held_.end());
}

void FakeBusNetwork::SetLosing(bool losing) {
  absl::MutexLock lock(&mu_);
  losing_ = losing;
}

void FakeBusNetwork::Hold() {
  absl::MutexLock lock(&mu_);
  holding_ = true;
}

void FakeBusNetwork::Release(bool reverse) {
  std::deque<Pending> held;
  {
    absl::MutexLock lock(&mu_);
    holding_ = false;
    held.swap(held_);
  }
  if (reverse) std::reverse(held.begin(), held.end());
  for (const Pending& p : held) Deliver(p.from, p.message);
}

size_t FakeBusNetwork::held() const {
  absl::MutexLock lock(&mu_);
  return held_.size();
}

size_t FakeBusNetwork::published() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

void FakeBusNetwork::Disconnect(FakeBus* bus) {
  {
    absl::MutexLock lock(&bus->mu_);
    bus->connected_ = false;
  }
  bus->Fire(Bus::Event::kDisconnected);
}

void FakeBusNetwork::Reconnect(FakeBus* bus) {
  {
    absl::MutexLock lock(&bus->mu_);
    bus->connected_ = true;
  }
  bus->Fire(Bus::Event::kReconnected);
}

void FakeBusNetwork::LoseMessagesOf(FakeBus* bus) {
  bus->Fire(Bus::Event::kMessagesLost);
}

void FakeBusNetwork::Route(FakeBus* from, Bus::Message message, bool reliable) {
  {
    absl::MutexLock lock(&mu_);
    ++published_;
    if (!reliable) {
      if (losing_) return;
      if (holding_) {
        held_.push_back({from, std::move(message)});
        return;
      }
    }
  }
  Deliver(from, message);
}

void FakeBusNetwork::Deliver(FakeBus* from, const Bus::Message& message) {
  if (!from->connected()) return;
  std::vector<FakeBus*> buses;
  {
    absl::MutexLock lock(&mu_);
    buses = buses_;
  }
  for (FakeBus* bus : buses) {
    if (bus == from || !bus->connected()) continue;
    for (const auto& handler : bus->Matching(message.subject)) {
      (*handler)(message);
    }
  }
}

FakeBus::FakeBus(FakeBusNetwork* network) : network_(network) {
  network_->Attach(this);
}

FakeBus::~FakeBus() { network_->Detach(this); }

void FakeBus::SetEventHandler(EventHandler handler) {
  absl::MutexLock lock(&mu_);
  on_event_ = std::move(handler);
}

void FakeBus::Fire(Event event) {
  EventHandler handler;
  {
    absl::MutexLock lock(&mu_);
    handler = on_event_;
  }
  if (handler) handler(event);
}

bool FakeBus::connected() {
  absl::MutexLock lock(&mu_);
  return connected_;
}

void FakeBus::Publish(const std::string& subject, std::string data) {
  network_->Route(this, {subject, std::move(data), ""}, false);
}

void FakeBus::Reply(const std::string& reply, std::string data) {
  network_->Route(this, {reply, std::move(data), ""}, true);
}

absl::StatusOr<Bus::Subscription> FakeBus::Subscribe(const std::string& subject,
                                                     Handler handler) {
  absl::MutexLock lock(&mu_);
  const Subscription id = next_subscription_++;
  subscriptions_[id] = {subject, std::make_shared<Handler>(std::move(handler))};
  return id;
}

void FakeBus::Unsubscribe(Subscription subscription) {
  absl::MutexLock lock(&mu_);
  subscriptions_.erase(subscription);
}

std::vector<std::shared_ptr<Bus::Handler>> FakeBus::Matching(
    const std::string& subject) {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Handler>> out;
  for (const auto& [id, sub] : subscriptions_) {
    if (SubjectMatches(sub.first, subject)) out.push_back(sub.second);
  }
  return out;
}

std::vector<std::string> FakeBus::Request(
    const std::string& subject, std::string data, absl::Duration timeout,
    const std::function<bool(const std::vector<std::string>&)>& enough) {
  std::string inbox;
  {
    absl::MutexLock lock(&network_->mu_);
    inbox = absl::StrCat("_INBOX.fake.", network_->next_inbox_++);
  }
  absl::Mutex mu;
  std::vector<std::string> answers;
  absl::StatusOr<Subscription> sub = Subscribe(inbox, [&](const Message& m) {
    absl::MutexLock lock(&mu);
    answers.push_back(m.data);
  });
  network_->Route(this, {subject, std::move(data), inbox}, true);
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return enough(answers);
    };
    mu.AwaitWithTimeout(absl::Condition(&done), timeout);
  }
  Unsubscribe(*sub);
  absl::MutexLock lock(&mu);
  return answers;
}

}  // namespace parley::service
