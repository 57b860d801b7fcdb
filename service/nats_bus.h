// NatsBus: the Bus (bus.h) over core NATS, with the NATS C client
// (libnats). The only file that includes nats.h.
//
// One connection per replica. It reconnects forever (every
// `reconnect_wait`), also when no server answers at start: the service
// runs without the bus and catches up once it is back. Subscriptions are
// restored by the client on reconnect. Events: kDisconnected and
// kReconnected from the client's disconnected/reconnected (and first
// connected) callbacks, kMessagesLost from its asynchronous error handler
// (NATS_SLOW_CONSUMER: a subscription's pending limit overflowed),
// kPublishesLost when the outbound queue overflows.
//
// Publish() never blocks: it queues, and one thread hands the queue to the
// client (whose writes may wait for the socket). The queue is bounded; a
// publish that does not fit is dropped and reported. The connection does not
// echo a replica's own publishes back to it.
//
//   NatsBusOptions options;
//   options.servers = {"nats://127.0.0.1:4222"};
//   ASSIGN_OR_RETURN(std::unique_ptr<NatsBus> bus, NatsBus::Connect(options));
//
// Threading: thread-safe; handlers and events run on libnats' threads (one
// per subscription, in arrival order).
#ifndef PARLEY_SERVICE_NATS_BUS_H_
#define PARLEY_SERVICE_NATS_BUS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/bus.h"

struct __natsConnection;
struct __natsOptions;
struct __natsSubscription;

namespace parley::service {

struct NatsBusOptions {
  // Server URLs (nats://host:port); at least one.
  std::vector<std::string> servers;
  // The connection's name as the server shows it (the replica id).
  std::string name;
  // Between reconnect attempts.
  absl::Duration reconnect_wait = absl::Milliseconds(250);
  // Publishes waiting to be handed to the client.
  size_t max_queued_publishes = 100000;
  // Messages one subscription may have waiting for its handler before the
  // client drops them (kMessagesLost).
  int max_pending_messages = 100000;
};

class NatsBus final : public Bus {
 public:
  // Starts the connection; OK also when no server answers yet (it keeps
  // trying). INVALID_ARGUMENT for unusable options.
  static absl::StatusOr<std::unique_ptr<NatsBus>> Connect(
      NatsBusOptions options);
  ~NatsBus() override;

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

  // Whether the connection is up now.
  bool connected() const;

  // For libnats' callbacks.
  void Fire(Event event);
  struct Sub {
    __natsSubscription* sub = nullptr;
    Handler handler;
  };

 private:
  explicit NatsBus(NatsBusOptions options);
  void RunPublisher();

  const NatsBusOptions options_;
  __natsOptions* opts_ = nullptr;
  __natsConnection* conn_ = nullptr;

  absl::Mutex event_mu_;
  EventHandler on_event_ ABSL_GUARDED_BY(event_mu_);

  absl::Mutex subs_mu_;
  std::map<Subscription, std::unique_ptr<Sub>> subs_ ABSL_GUARDED_BY(subs_mu_);
  Subscription next_sub_ ABSL_GUARDED_BY(subs_mu_) = 1;

  absl::Mutex queue_mu_;
  std::deque<std::pair<std::string, std::string>> queue_
      ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  // A publish did not fit in the queue since the last report.
  bool dropped_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread publisher_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_NATS_BUS_H_
