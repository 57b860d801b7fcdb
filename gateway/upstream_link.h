// UpstreamLink: the gRPC adapter between the gateway's sessions and
// parley-service's GatewayLink.Connect, spread over the service's replicas.
//
// The service address list (gateway/service_addresses.h) names one or more
// hosts; every address they resolve to is a replica, with a channel of its
// own and `streams` long-lived bidirectional streams on it (callback API, no
// thread per stream). Every client session is multiplexed over one of them.
//
//   * Replicas: the list is resolved at Start() and again every
//     `resolve_interval`. A new address gets its channel and streams at
//     once (so an added replica takes new sessions without a restart); an
//     address that went away gets no new sessions and is dropped once its
//     streams have ended (they are not cut): its channel is released, while
//     the little the link keeps of it (its streams' slots and metric series)
//     stays. A name that fails to resolve keeps the addresses it had.
//   * Placement: a session is placed when it opens, by rendezvous hashing of
//     its id over the live streams (up, not draining, of a replica still
//     listed), and stays there while that stream is up.
//   * Failover: when a stream ends and some other replica has a live
//     stream, the stream's sessions are told to re-announce at once; their
//     SessionOpen (reannounce = true, with the resume point) finds their
//     stream down and places them on a live one (another replica's first),
//     where they re-send what was not acknowledged; one still opening sends
//     its first SessionOpen there. When no other replica is up they wait
//     for their own stream, as they always did, unless another replica comes
//     up first and adopts them. A session that moved stays when its old
//     replica returns.
//   * Generations (gateway/upstream.h) come from one counter for the whole
//     link: each Open() and each stream coming up takes the next number, so a
//     session's generation only grows, across streams and replicas, and a
//     Frame() is accepted only on the stream and up-period of the session's
//     last Open().
//   * Batching: events queue per stream while a write is in flight and go out
//     together as one GatewayBatch (capped in events and bytes), so under load
//     there is not one gRPC write per client frame.
//   * First event on every stream: LinkHello{gateway_id, stream_index} (the
//     index within its replica). The stream counts as up once that write
//     completes and the service either sent initial metadata or left the
//     stream open for `ready_grace` (a refusing service ends it at once).
//   * When a stream ends (service restart, deploy, network), its sessions are
//     told OnLinkDown, queued events are dropped (sessions keep what
//     matters), and the link reconnects after a jittered exponential
//     backoff. Client WebSockets stay open throughout.
//   * Inbound ServiceBatch events are routed to sessions by id
//     (DispatchServiceBatch, gateway/service_batch_dispatch.h) and posted to
//     each session's executor through its SessionHandle: gRPC threads never
//     touch a Session or a websocketpp object.
//
// Threading: thread-safe. Upstream methods, Attach() and Detach() may be
// called from any thread and never block on the network; a session's own
// calls come from its executor, one at a time. Start() resolves the list
// once (blocking on DNS). Shutdown() blocks (up to its timeout) and must not
// be called from a gRPC callback or a session's executor.
#ifndef PARLEY_GATEWAY_UPSTREAM_LINK_H_
#define PARLEY_GATEWAY_UPSTREAM_LINK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "gateway/service_addresses.h"
#include "gateway/service_batch_dispatch.h"
#include "gateway/session.h"
#include "gateway/upstream.h"
#include "grpcpp/channel.h"
#include "parley/v1/gateway_link.grpc.pb.h"

namespace parley::gateway {

struct UpstreamLinkOptions {
  // Where parley-service's GatewayLink listens: a comma-separated list of
  // host:port (see gateway/service_addresses.h); every address a host
  // resolves to is one replica.
  std::string service_address = "127.0.0.1:7400";
  // This gateway's id in LinkHello (unique among gateways).
  std::string gateway_id;
  // Connect streams per replica (>= 1).
  int streams = 1;
  // How often the address list is resolved again.
  std::chrono::milliseconds resolve_interval{5000};
  // Reconnect backoff: first delay, growth factor, cap, and +/- jitter
  // fraction applied to each delay.
  std::chrono::milliseconds backoff_initial{100};
  double backoff_multiplier = 2.0;
  std::chrono::milliseconds backoff_max{5000};
  double backoff_jitter = 0.2;
  // gRPC keepalive: ping the service this often with no traffic, and drop
  // the connection if the ack takes longer than the timeout. Agreed with
  // parley-service, which permits pings every 10 s.
  std::chrono::milliseconds keepalive_time{20000};
  std::chrono::milliseconds keepalive_timeout{10000};
  // A new stream counts as up when the service sends initial metadata, or
  // when it is still open this long after the LinkHello was written.
  std::chrono::milliseconds ready_grace{250};
  // Caps on one GatewayBatch.
  size_t max_batch_events = 1024;
  size_t max_batch_bytes = 1 << 20;

  // Checks the values; INVALID_ARGUMENT naming the field (and, for
  // service_address, the bad entry) otherwise.
  absl::Status Validate() const;
};

class UpstreamLink final : public Upstream, private SessionDirectory {
 public:
  // Makes the stub for one replica address ("10.0.0.5:7400").
  using StubFactory =
      std::function<std::unique_ptr<parley::v1::GatewayLink::StubInterface>(
          const std::string& address)>;
  // Resolves one entry of the list to replica addresses; by default
  // ResolveServiceAddress (getaddrinfo).
  using Resolver = std::function<absl::StatusOr<std::vector<std::string>>(
      const ServiceAddress& entry)>;

  // A channel to one replica `address` with the keepalive and reconnect
  // settings of `options`.
  static std::shared_ptr<grpc::Channel> MakeChannel(
      const UpstreamLinkOptions& options, const std::string& address);

  // `options` must be valid (Validate()). `stubs` defaults to GatewayLink
  // stubs over MakeChannel(); `resolver` to ResolveServiceAddress. Metrics
  // go to `registry`. Nothing happens until Start().
  UpstreamLink(UpstreamLinkOptions options, Registry& registry,
               StubFactory stubs = nullptr, Resolver resolver = nullptr);
  ~UpstreamLink() override;
  UpstreamLink(const UpstreamLink&) = delete;
  UpstreamLink& operator=(const UpstreamLink&) = delete;

  // Resolves the address list, opens the streams and starts the reconnect
  // and resolver threads. A non-empty `gateway_id` replaces
  // options.gateway_id (main() learns it only after the listener is bound).
  void Start(std::string gateway_id = "");

  // Routes service events for `session_id` to `handle` from now on.
  void Attach(const std::string& session_id,
              std::shared_ptr<SessionHandle> handle);
  void Detach(const std::string& session_id);

  // For /readyz: at least one listed replica has all its streams up.
  bool Ready() const;
  // Every stream of every listed replica is up (and there is one).
  bool AllStreamsUp() const;
  // The replica addresses currently listed, sorted.
  std::vector<std::string> Replicas() const;
  // The replica address a session's last Open() went to; empty if none.
  std::string ReplicaOf(const std::string& session_id) const;

  // Stops accepting events, writes what is queued, half-closes the streams
  // and waits for them to end; cancels whatever is left at `timeout`. Stops
  // reconnecting and resolving. Idempotent.
  void Shutdown(absl::Duration timeout);

  // Upstream.
  std::optional<uint64_t> Open(const parley::v1::SessionOpen& open) override;
  bool Frame(uint64_t generation, parley::v1::SessionFrame frame) override;
  void Close(parley::v1::SessionClose close) override;

 private:
  class StreamReactor;
  struct Replica;
  struct Slot {
    // An event waiting for the next write, with its encoded size.
    struct Queued {
      parley::v1::GatewayEvent event;
      size_t bytes;
    };
    // Position in slots_ (names the stream to DispatchServiceBatch).
    int index = 0;
    // Index among its replica's streams (LinkHello.stream_index).
    int stream_index = 0;
    Replica* replica = nullptr;
    // The rendezvous weight seed of this stream: hash of address and index.
    uint64_t key = 0;
    absl::Mutex mu;
    // The stream attempt in progress (null between attempts).
    StreamReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    std::shared_ptr<grpc::ClientContext> context ABSL_GUARDED_BY(mu);
    bool up ABSL_GUARDED_BY(mu) = false;
    bool draining ABSL_GUARDED_BY(mu) = false;
    // The generation the stream came up with (its current up-period).
    uint64_t generation ABSL_GUARDED_BY(mu) = 0;
    bool write_in_flight ABSL_GUARDED_BY(mu) = false;
    std::deque<Queued> pending ABSL_GUARDED_BY(mu);
    int failures ABSL_GUARDED_BY(mu) = 0;
    // Times the stream came up (the ones after the first are reconnects).
    int ups ABSL_GUARDED_BY(mu) = 0;
    // Counts Connect() calls; names the current attempt.
    uint64_t attempt ABSL_GUARDED_BY(mu) = 0;
    // Reconnect scheduling, guarded by UpstreamLink::mu_: when to connect
    // next (InfiniteFuture: connected, connecting, or dormant), when to
    // confirm a quiet new stream as up and which attempt, and whether an
    // attempt exists or is scheduled (false: dormant, its replica is gone).
    absl::Time next_attempt = absl::InfiniteFuture();
    absl::Time confirm_at = absl::InfiniteFuture();
    uint64_t confirm_attempt = 0;
    bool active = false;
  };
  struct Replica {
    std::string address;
    // Guarded by UpstreamLink::mu_ while the replica is unlisted; released
    // (by the reconnect thread) once it is unlisted and all its streams have
    // ended, made again if it is listed again. Set whenever a stream of it
    // is active, so a stream attempt may use it without the lock.
    std::unique_ptr<parley::v1::GatewayLink::StubInterface> stub;
    std::vector<Slot*> slots;
    // Still in the resolved list. Guarded by UpstreamLink::mu_.
    bool listed = true;
    // For the replica_up/replica_down log lines, guarded by
    // UpstreamLink::mu_: its streams whose coming up was handled and whose
    // going down was not yet (each stream that came up reports down once),
    // and the sessions told to move since it was last down.
    int reported_up = 0;
    size_t moving = 0;
    Gauge* streams_up = nullptr;
    Counter* reconnects = nullptr;
    Counter* sessions_moved_in = nullptr;
  };
  struct Attached {
    // Null for a session opened without Attach() (tests).
    std::shared_ptr<SessionHandle> handle;
    // Where the session's last Open() went (null before its first).
    Slot* slot = nullptr;
    // The generation that Open() returned, and the stream's up-period it
    // was queued in: Frame() must match both.
    uint64_t generation = 0;
    uint64_t period = 0;
  };

  // Queues `event` on `slot` if it is up (and in up-period `period` when
  // given); returns the up-period or nullopt.
  std::optional<uint64_t> Enqueue(Slot& slot, parley::v1::GatewayEvent event,
                                  std::optional<uint64_t> period);
  // The live stream rendezvous hashing picks for `session_id` among those
  // not of `avoid` (any live one when only `avoid` has some), or null.
  Slot* Place(const std::string& session_id, const Replica* avoid)
      ABSL_LOCKS_EXCLUDED(mu_);
  static bool Live(Slot& slot) ABSL_LOCKS_EXCLUDED(slot.mu);
  // Resolves the address list (Start(), then the resolver thread). Blocks
  // on DNS.
  void Resolve() ABSL_LOCKS_EXCLUDED(mu_);
  // Adds replicas for new addresses and unlists the ones gone.
  void SetReplicas(const std::vector<std::string>& addresses);
  void AddReplicaLocked(const std::string& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Connect(Slot& slot);
  void ReconnectLoop();
  void ResolveLoop();
  void ScheduleReconnect(Slot& slot, absl::Duration delay);
  void ScheduleConfirm(Slot& slot, uint64_t attempt);
  void ConfirmStream(Slot& slot, uint64_t attempt);
  void ReportUp(Slot& slot, uint64_t generation);
  absl::Duration NextBackoff(int failures);
  // Routes one batch that arrived on stream `slot` (DispatchServiceBatch);
  // frames are moved out.
  void Dispatch(parley::v1::ServiceBatch* batch, Slot& slot);
  // Tells the sessions of `slot` that it went down (and, when another
  // replica is up, to move) or came up (and adopts sessions stranded on
  // replicas with no stream up).
  void PostLinkState(Slot& slot, uint64_t generation, bool up);
  // Counts `replica`'s streams up and down as their notices are handled:
  // logs replica_up for the first, and replica_down with the sessions told
  // to move when the last one went down.
  void LogReplicaState(Replica& replica, bool up, size_t moving, size_t adopted,
                       size_t replicas_up);
  // Streams of `replica` up right now.
  int StreamsUp(const Replica& replica) const;
  std::vector<Slot*> AllSlots() const ABSL_LOCKS_EXCLUDED(mu_);
  static bool NoLiveReactors(UpstreamLink* link)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(link->mu_);

  // SessionDirectory: the attached sessions.
  std::shared_ptr<SessionHandle> HandleFor(
      const std::string& session_id) const override;
  std::vector<std::shared_ptr<SessionHandle>> HandlesFor(
      const google::protobuf::RepeatedPtrField<std::string>& ids)
      const override;
  std::vector<std::shared_ptr<SessionHandle>> HandlesOnStream(
      int stream) const override;

  const UpstreamLinkOptions options_;
  const StubFactory stubs_;
  const Resolver resolver_;
  Registry& registry_;
  // Set once by Start(), before any stream exists.
  std::string gateway_id_;
  // Source of every generation (see the top of this file).
  std::atomic<uint64_t> generations_{0};

  // Lock order: sessions_mu_, then mu_, then a Slot's mu.
  mutable absl::Mutex sessions_mu_;
  std::unordered_map<std::string, Attached> sessions_
      ABSL_GUARDED_BY(sessions_mu_);

  mutable absl::Mutex mu_;
  absl::CondVar reconnect_cv_;
  absl::CondVar resolve_cv_;
  // The parsed address list and each entry's last good resolution.
  std::vector<ServiceAddress> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<std::string>> resolved_ ABSL_GUARDED_BY(mu_);
  // Every replica ever listed (unlisted ones stay, dormant, so a returning
  // address reuses its streams), by address; and all their streams. Both
  // only grow, so Slot and Replica pointers stay valid for the link's life.
  std::map<std::string, std::unique_ptr<Replica>> replicas_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // Stream attempts not yet done (OnDone not yet run).
  int live_reactors_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  std::thread reconnect_thread_;
  std::thread resolve_thread_;

  Gauge& queued_events_;
  Histogram& batch_events_;
  Counter& events_out_;
  Counter& events_in_;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_UPSTREAM_LINK_H_
