// Bus: subjects that parley-service replicas publish bytes on and subscribe
// to, for live delivery across replicas (bus_router.h). At most once: a
// publish may be lost (the connection dropped, a consumer was too slow), so
// nothing durable travels only on the bus; the store is the truth and the
// events below tell the user when it must catch up from it.
//
// Implementations: NatsBus (nats_bus.h, core NATS) and FakeBus
// (fake_bus.h, in memory, for tests; it can drop and reorder).
//
//   bus.SetEventHandler([](Bus::Event e) { ... });
//   Bus::Subscription sub = bus.Subscribe("parley.msg", [](const Bus::Message&
//   m) {
//     Handle(m.data);
//   });
//   bus.Publish("parley.msg", bytes);
//
// Subjects are dot-separated tokens; a subscription may end in ">" (every
// subject under the prefix) or use "*" for one token. A connection does not
// receive what it published itself.
//
// Threading: thread-safe. Publish() never blocks. Handlers run on the bus's
// own threads, one subscription's messages one at a time in the order they
// arrived; they must not block for long and never call Unsubscribe() on
// their own subscription. Request() blocks its caller: never call it from a
// handler.
#ifndef PARLEY_SERVICE_BUS_H_
#define PARLEY_SERVICE_BUS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace parley::service {

class Bus {
 public:
  struct Message {
    std::string subject;
    std::string data;
    // Where an answer goes (Reply()); empty unless sent by Request().
    std::string reply;
  };
  using Handler = std::function<void(const Message&)>;
  using Subscription = uint64_t;

  enum class Event {
    // The connection is lost; publishes may be lost until kReconnected.
    kDisconnected,
    // Connected again (subscriptions restored): publishes to and from this
    // connection may have been lost meanwhile.
    kReconnected,
    // Messages addressed to this connection were dropped (a slow consumer).
    kMessagesLost,
    // Publishes of this connection were dropped before they left (its
    // outbound queue was full).
    kPublishesLost,
  };
  using EventHandler = std::function<void(Event)>;

  virtual ~Bus() = default;

  // Set before subscribing; called on a bus thread.
  virtual void SetEventHandler(EventHandler handler) = 0;
  // Queues `data` for `subject`. Never blocks; may be lost.
  virtual void Publish(const std::string& subject, std::string data) = 0;
  // Answers a Request() (`reply` from the Message).
  virtual void Reply(const std::string& reply, std::string data) = 0;
  // Calls `handler` for every message on subjects matching `subject`. The
  // subscription is in place at the server when this returns.
  virtual absl::StatusOr<Subscription> Subscribe(const std::string& subject,
                                                 Handler handler) = 0;
  // No handler call starts after this returns.
  virtual void Unsubscribe(Subscription subscription) = 0;
  // Publishes `data` with a reply address and gathers the answers until
  // `enough(answers)` holds or `timeout` passes; returns what arrived.
  virtual std::vector<std::string> Request(
      const std::string& subject, std::string data, absl::Duration timeout,
      const std::function<bool(const std::vector<std::string>&)>& enough) = 0;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_BUS_H_
