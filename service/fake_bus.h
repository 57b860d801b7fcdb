// FakeBus: an in-memory Bus (bus.h) for unit tests. Connections made from
// one FakeBusNetwork reach each other, as replicas on one nats-server do. A
// test can make the network lose publishes, hold them and release them in
// another order, and cut one connection off and bring it back (firing its
// Bus events).
//
//   FakeBusNetwork network;
//   FakeBus a(&network), b(&network);
//   network.Hold();  ... a.Publish(...) ...  network.Release(/*reverse=*/true);
//
// Delivery is synchronous: a publish runs the matching handlers of the other
// connections on the publisher's thread before Publish() returns (unless
// held or lost). Requests and their replies are never held or lost.
//
// Threading: thread-safe; handlers and event handlers run without the
// network's lock held.
#ifndef PARLEY_SERVICE_FAKE_BUS_H_
#define PARLEY_SERVICE_FAKE_BUS_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/bus.h"

namespace parley::service {

class FakeBus;

class FakeBusNetwork final {
 public:
  // Publishes from now on are lost.
  void SetLosing(bool losing);
  // Publishes from now on are kept until Release().
  void Hold();
  // Delivers what was held, in publish order or reversed, and stops holding.
  void Release(bool reverse = false);
  // How many publishes are held.
  size_t held() const;
  // Cuts a connection off: it gets kDisconnected; what it publishes and what
  // is published to it is lost until Reconnect(), which fires kReconnected.
  void Disconnect(FakeBus* bus);
  void Reconnect(FakeBus* bus);
  // Fires kMessagesLost on a connection, as a slow consumer's would.
  void LoseMessagesOf(FakeBus* bus);
  // Publishes seen (lost, held or delivered), for tests to wait on.
  size_t published() const;

 private:
  friend class FakeBus;
  struct Pending {
    FakeBus* from;
    Bus::Message message;
  };
  void Attach(FakeBus* bus);
  void Detach(FakeBus* bus);
  // Publish(): lost, held or delivered.
  void Route(FakeBus* from, Bus::Message message, bool reliable);
  void Deliver(FakeBus* from, const Bus::Message& message);

  mutable absl::Mutex mu_;
  std::vector<FakeBus*> buses_ ABSL_GUARDED_BY(mu_);
  bool losing_ ABSL_GUARDED_BY(mu_) = false;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Pending> held_ ABSL_GUARDED_BY(mu_);
  size_t published_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_inbox_ ABSL_GUARDED_BY(mu_) = 1;
};

class FakeBus final : public Bus {
 public:
  explicit FakeBus(FakeBusNetwork* network);
  ~FakeBus() override;

  void SetEventHandler(EventHandler handler) override;
  void Publish(const std::string& subject, std::string data) override;
  void Reply(const std::string& reply, std::string data) override;
  absl::StatusOr<Subscription> Subscribe(const std::string& subject,
                                         Handler handler) override;
  void Unsubscribe(Subscription subscription) override;
  std::vector<std::string> Request(
      const std::string& subject, std::string data, absl::Duration timeout,
      const std::function<bool(const std::vector<std::string>&)>& enough)
      override;

 private:
  friend class FakeBusNetwork;
  // The handlers whose subscription matches `subject`.
  std::vector<std::shared_ptr<Handler>> Matching(const std::string& subject);
  void Fire(Event event);
  bool connected();

  FakeBusNetwork* const network_;
  absl::Mutex mu_;
  EventHandler on_event_ ABSL_GUARDED_BY(mu_);
  std::map<Subscription, std::pair<std::string, std::shared_ptr<Handler>>>
      subscriptions_ ABSL_GUARDED_BY(mu_);
  Subscription next_subscription_ ABSL_GUARDED_BY(mu_) = 1;
  bool connected_ ABSL_GUARDED_BY(mu_) = true;
};

// Whether `subject` matches `pattern` ("*" one token, a final ">" the rest).
bool SubjectMatches(const std::string& pattern, const std::string& subject);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_FAKE_BUS_H_
