#include "gateway/upstream_link.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <functional>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/build_info.h"
#include "common/log.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_callback.h"

namespace parley::gateway {

using parley::v1::GatewayBatch;
using parley::v1::GatewayEvent;
using parley::v1::ServiceBatch;

// A stream that lived this long after coming up ended "normally": the next
// attempt starts at the initial backoff.
constexpr absl::Duration kHealthyStream = absl::Seconds(1);

// One Connect attempt. Lifetime: created by Connect(), deleted in OnDone().
//
// Writes: at most one write (or the half-close) is in flight, tracked by
// Slot::write_in_flight under Slot::mu; whoever sets it calls StartWrite()
// after releasing the lock. A hold (AddHold before StartCall) keeps the
// reactor alive until the stream is finishing AND no write is in flight or
// about to start, so a write started from a session's thread never races
// with OnDone(). Slot::up is cleared in the same critical section that marks
// the stream finishing, so no new write can start on a finishing stream.
class UpstreamLink::StreamReactor final
    : public grpc::ClientBidiReactor<GatewayBatch, ServiceBatch> {
 public:
  StreamReactor(UpstreamLink* link, Slot* slot,
                std::shared_ptr<grpc::ClientContext> context)
      : link_(link), slot_(slot), context_(std::move(context)) {}

  void Begin() {
    GatewayEvent hello;
    hello.mutable_hello()->set_gateway_id(link_->gateway_id_);
    hello.mutable_hello()->set_stream_index(slot_->stream_index);
    hello.mutable_hello()->set_gateway_version(GetBuildInfo().version);
    hello.mutable_hello()->set_link_protocol(kLinkProtocol);
    *out_.add_events() = std::move(hello);
    slot_->replica->stub->async()->Connect(context_.get(), this);
    AddHold();
    StartRead(&in_);
    StartWrite(&out_);
    StartCall();
  }

  // Moves queued events into out_, up to the batch caps. Call with
  // slot_->mu held and write_in_flight just set.
  void TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    out_.Clear();
    size_t bytes = 0;
    while (!slot_->pending.empty() &&
           static_cast<size_t>(out_.events_size()) <
               link_->options_.max_batch_events &&
           (bytes == 0 || bytes < link_->options_.max_batch_bytes)) {
      Slot::Queued& queued = slot_->pending.front();
      bytes += queued.bytes;
      *out_.add_events() = std::move(queued.event);
      slot_->pending.pop_front();
    }
    link_->queued_events_.Add(-out_.events_size());
    link_->batch_events_.Observe(out_.events_size());
    link_->events_out_.Increment(out_.events_size());
  }

  void StartBatchWrite() { StartWrite(&out_); }

  // Claims the write slot for the half-close if the stream is not finishing
  // and nothing is queued or in flight; the caller then calls
  // StartWritesDone() after releasing the lock.
  bool TryBeginWritesDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    if (finishing_ || writes_done_ || slot_->write_in_flight ||
        !slot_->pending.empty()) {
      return false;
    }
    slot_->write_in_flight = true;
    writes_done_ = true;
    return true;
  }

  // Real initial metadata (not a trailers-only refusal) means the service
  // accepted the stream.
  void OnReadInitialMetadataDone(bool ok) override {
    if (!ok) return;
    if (!ServiceCompatible()) return;
    std::optional<uint64_t> up;
    {
      absl::MutexLock lock(&slot_->mu);
      metadata_received_ = true;
      up = ConfirmUpLocked(/*grace_elapsed=*/false);
    }
    if (up.has_value()) link_->ReportUp(*slot_, *up);
  }

  // Checks the service's link protocol (initial metadata; absent from
  // services older than it, which speak protocol 1). An incompatible service
  // is logged and its stream cancelled (and retried with backoff).
  bool ServiceCompatible() {
    const auto& metadata = context_->GetServerInitialMetadata();
    auto text = [&metadata](const char* key) -> std::string {
      auto it = metadata.find(key);
      return it == metadata.end()
                 ? std::string()
                 : std::string(it->second.data(), it->second.size());
    };
    uint32_t protocol = 0;
    (void)absl::SimpleAtoi(text("parley-link-protocol"), &protocol);
    absl::Status compatible =
        CheckLinkProtocol(protocol, text("parley-version"),
                          absl::StrCat("service ", slot_->replica->address));
    if (compatible.ok()) return true;
    LogError("gateway.upstream_incompatible",
             {{"replica", slot_->replica->address},
              {"reason", compatible.message()}});
    context_->TryCancel();
    return false;
  }

  // The stream is up once the LinkHello is written and either the service
  // sent initial metadata or the stream survived the grace period. Returns
  // the new generation when this call brought it up.
  std::optional<uint64_t> ConfirmUpLocked(bool grace_elapsed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    if (came_up_ || finishing_ || !hello_written_) return std::nullopt;
    if (!metadata_received_ && !grace_elapsed) return std::nullopt;
    came_up_ = true;
    up_at_ = absl::Now();
    slot_->up = !slot_->draining;
    ++slot_->ups;
    generation_ = ++link_->generations_;
    slot_->generation = generation_;
    return generation_;
  }

  void OnWriteDone(bool ok) override { AfterWrite(ok); }
  void OnWritesDoneDone(bool ok) override { AfterWrite(ok); }

  void OnReadDone(bool ok) override {
    if (ok) {
      link_->Dispatch(&in_, *slot_);
      StartRead(&in_);
      return;
    }
    bool release = false;
    std::optional<uint64_t> down;
    {
      absl::MutexLock lock(&slot_->mu);
      down = FinishLocked();
      if (!slot_->write_in_flight && !hold_released_) {
        hold_released_ = true;
        release = true;
      }
    }
    if (down.has_value()) link_->PostLinkState(*slot_, *down, false);
    if (release) RemoveHold();
  }

  void OnDone(const grpc::Status& status) override {
    std::optional<uint64_t> down;
    int failures = 0;
    {
      absl::MutexLock lock(&slot_->mu);
      down = FinishLocked();
      slot_->reactor = nullptr;
      slot_->context.reset();
      // A stream refused or dropped soon after it came up counts as a failed
      // attempt, so a service that accepts and then ends streams (draining)
      // is not hammered.
      if (came_up_ && absl::Now() - up_at_ >= kHealthyStream) {
        slot_->failures = 0;
      } else {
        ++slot_->failures;
      }
      failures = slot_->failures;
    }
    if (down.has_value()) link_->PostLinkState(*slot_, *down, false);
    LogWarn("gateway.upstream_stream_ended",
            {{"replica", slot_->replica->address},
             {"stream", slot_->stream_index},
             {"code", static_cast<int>(status.error_code())},
             {"message", status.error_message()},
             {"was_up", came_up_ ? "true" : "false"}});
    UpstreamLink* const link = link_;
    Slot* const slot = slot_;
    const absl::Duration backoff = link->NextBackoff(failures);
    // The context holds a channel reference: drop it while the link's stub
    // still holds another. Once ScheduleReconnect() counts this reactor done,
    // Shutdown() may return and the link (and the stub's channel) go away;
    // the last channel reference must not be dropped on this gRPC callback
    // thread, whose own completion queue it would shut down.
    delete this;
    link->ScheduleReconnect(*slot, backoff);
  }

 private:
  void AfterWrite(bool ok) {
    bool start_write = false;
    bool release = false;
    std::optional<uint64_t> up;
    std::optional<uint64_t> down;
    std::optional<uint64_t> confirm_later;
    {
      absl::MutexLock lock(&slot_->mu);
      slot_->write_in_flight = false;
      if (!ok) {
        down = FinishLocked();
      } else if (!hello_written_) {
        hello_written_ = true;
        up = ConfirmUpLocked(/*grace_elapsed=*/false);
        if (!up.has_value()) confirm_later = slot_->attempt;
      }
      if (!finishing_ && !writes_done_ && !slot_->pending.empty()) {
        slot_->write_in_flight = true;
        TakeBatch();
        start_write = true;
      } else if (finishing_ && !hold_released_) {
        hold_released_ = true;
        release = true;
      }
    }
    if (up.has_value()) link_->ReportUp(*slot_, *up);
    if (confirm_later.has_value()) {
      link_->ScheduleConfirm(*slot_, *confirm_later);
    }
    if (down.has_value()) link_->PostLinkState(*slot_, *down, false);
    if (start_write) StartWrite(&out_);
    if (release) RemoveHold();
  }

  // Marks the stream finishing; returns the generation to report down, once.
  std::optional<uint64_t> FinishLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    finishing_ = true;
    if (!came_up_ || reported_down_) return std::nullopt;
    reported_down_ = true;
    slot_->up = false;
    link_->queued_events_.Add(-static_cast<int64_t>(slot_->pending.size()));
    slot_->pending.clear();
    slot_->replica->streams_up->Add(-1);
    return generation_;
  }

  UpstreamLink* const link_;
  Slot* const slot_;
  const std::shared_ptr<grpc::ClientContext> context_;
  GatewayBatch out_;
  ServiceBatch in_;
  // Guarded by slot_->mu.
  bool hello_written_ = false;
  bool metadata_received_ = false;
  bool came_up_ = false;
  absl::Time up_at_;
  bool finishing_ = false;
  bool writes_done_ = false;
  bool hold_released_ = false;
  bool reported_down_ = false;
  uint64_t generation_ = 0;
};

namespace {

// SplitMix64's finalizer: spreads a 64-bit hash over all bits, so the
// rendezvous scores of one session on different streams are unrelated.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

absl::Status UpstreamLinkOptions::Validate() const {
  absl::StatusOr<std::vector<ServiceAddress>> entries =
      ParseServiceAddresses(service_address);
  if (!entries.ok()) return entries.status();
  if (streams < 1 || streams > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--upstream_streams must be 1..64, got ", streams));
  }
  if (resolve_interval.count() <= 0) {
    return absl::InvalidArgumentError("--service_resolve_interval must be > 0");
  }
  if (backoff_initial.count() <= 0 || backoff_max < backoff_initial) {
    return absl::InvalidArgumentError(
        "upstream backoff: need 0 < initial <= max");
  }
  if (backoff_multiplier < 1.0 || backoff_jitter < 0 || backoff_jitter >= 1) {
    return absl::InvalidArgumentError(
        "upstream backoff: need multiplier >= 1 and 0 <= jitter < 1");
  }
  if (max_batch_events < 1 || max_batch_bytes < 1) {
    return absl::InvalidArgumentError("upstream batch caps must be positive");
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> UpstreamLink::MakeChannel(
    const UpstreamLinkOptions& options, const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC's own subchannel backoff (1 s initial, 120 s max by default) would
  // hide a restarted service from our faster stream backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_initial.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_initial.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_max.count()));
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                   args);
}

UpstreamLink::UpstreamLink(UpstreamLinkOptions options, Registry& registry,
                           StubFactory stubs, Resolver resolver)
    : options_(std::move(options)),
      stubs_(stubs != nullptr
                 ? std::move(stubs)
                 : StubFactory([options = options_](const std::string& a) {
                     return parley::v1::GatewayLink::NewStub(
                         MakeChannel(options, a));
                   })),
      resolver_(resolver != nullptr ? std::move(resolver)
                                    : Resolver(&ResolveServiceAddress)),
      registry_(registry),
      queued_events_(registry.GetGauge(
          "parley_gateway_upstream_queued_events",
          "Events queued for the upstream, not yet written.")),
      batch_events_(registry.GetHistogram(
          "parley_gateway_upstream_batch_events",
          "Events per GatewayBatch written.", Histogram::SizeBuckets())),
      events_out_(
          registry.GetCounter("parley_gateway_upstream_events_out_total",
                              "Events written to the service.")),
      events_in_(registry.GetCounter("parley_gateway_upstream_events_in_total",
                                     "Events received from the service.")) {
  absl::StatusOr<std::vector<ServiceAddress>> entries =
      ParseServiceAddresses(options_.service_address);
  // Validate() refused a bad list before the link was built.
  assert(entries.ok());
  absl::MutexLock lock(&mu_);
  if (entries.ok()) entries_ = *std::move(entries);
  resolved_.resize(entries_.size());
}

UpstreamLink::~UpstreamLink() { Shutdown(absl::ZeroDuration()); }

void UpstreamLink::Start(std::string gateway_id) {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || shutting_down_) return;
    started_ = true;
    gateway_id_ =
        gateway_id.empty() ? options_.gateway_id : std::move(gateway_id);
  }
  Resolve();
  reconnect_thread_ = std::thread([this] { ReconnectLoop(); });
  resolve_thread_ = std::thread([this] { ResolveLoop(); });
}

void UpstreamLink::Resolve() {
  std::vector<ServiceAddress> entries;
  {
    absl::MutexLock lock(&mu_);
    entries = entries_;
  }
  std::vector<absl::StatusOr<std::vector<std::string>>> results;
  results.reserve(entries.size());
  for (const ServiceAddress& entry : entries) {
    results.push_back(resolver_(entry));
  }
  std::vector<std::string> addresses;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].ok()) {
        resolved_[i] = *std::move(results[i]);
      } else {
        // A DNS hiccup must not drop live replicas: keep what it gave last.
        LogWarn("gateway.resolve_failed",
                {{"entry", entries[i].text},
                 {"error", results[i].status().message()},
                 {"kept", resolved_[i].size()}});
      }
      addresses.insert(addresses.end(), resolved_[i].begin(),
                       resolved_[i].end());
    }
  }
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()),
                  addresses.end());
  SetReplicas(addresses);
}

void UpstreamLink::SetReplicas(const std::vector<std::string>& addresses) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  const absl::Time now = absl::Now();
  for (const std::string& address : addresses) {
    auto it = replicas_.find(address);
    if (it == replicas_.end()) {
      AddReplicaLocked(address);
      continue;
    }
    Replica& replica = *it->second;
    if (replica.listed) continue;
    replica.listed = true;
    if (replica.stub == nullptr) replica.stub = stubs_(address);
    LogInfo("gateway.replica_listed", {{"replica", address}});
    for (Slot* slot : replica.slots) {
      if (slot->active || !started_) continue;
      slot->active = true;
      slot->next_attempt = now;
    }
  }
  for (auto& [address, replica] : replicas_) {
    if (!replica->listed ||
        std::binary_search(addresses.begin(), addresses.end(), address)) {
      continue;
    }
    // Its streams are left to end by themselves; no new session goes there
    // and ended streams are not reopened.
    replica->listed = false;
    LogInfo("gateway.replica_unlisted",
            {{"replica", address}, {"streams_up", StreamsUp(*replica)}});
  }
  reconnect_cv_.Signal();
}

void UpstreamLink::AddReplicaLocked(const std::string& address) {
  auto replica = std::make_unique<Replica>();
  replica->address = address;
  replica->stub = stubs_(address);
  const Labels labels = {{"replica", address}};
  replica->streams_up = &registry_.GetGauge(
      "parley_gateway_upstream_streams_up",
      "Upstream GatewayLink streams up, per service replica.", labels);
  replica->reconnects = &registry_.GetCounter(
      "parley_gateway_upstream_reconnects_total",
      "Times an upstream stream came back up after ending, per replica.",
      labels);
  replica->sessions_moved_in = &registry_.GetCounter(
      "parley_gateway_upstream_sessions_moved_total",
      "Sessions that re-announced on this replica after their own stream "
      "ended.",
      labels);
  for (int i = 0; i < options_.streams; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->index = static_cast<int>(slots_.size());
    slot->stream_index = i;
    slot->replica = replica.get();
    slot->key = Mix(std::hash<std::string>()(absl::StrCat(address, "#", i)));
    if (started_) {
      slot->active = true;
      slot->next_attempt = absl::Now();
    }
    replica->slots.push_back(slot.get());
    slots_.push_back(std::move(slot));
  }
  LogInfo("gateway.replica_added",
          {{"replica", address}, {"streams", options_.streams}});
  replicas_.emplace(address, std::move(replica));
}

void UpstreamLink::ResolveLoop() {
  absl::MutexLock lock(&mu_);
  while (!shutting_down_) {
    resolve_cv_.WaitWithTimeout(&mu_,
                                absl::FromChrono(options_.resolve_interval));
    if (shutting_down_) break;
    mu_.Unlock();
    Resolve();
    mu_.Lock();
  }
}

void UpstreamLink::Attach(const std::string& session_id,
                          std::shared_ptr<SessionHandle> handle) {
  absl::MutexLock lock(&sessions_mu_);
  sessions_[session_id].handle = std::move(handle);
}

void UpstreamLink::Detach(const std::string& session_id) {
  absl::MutexLock lock(&sessions_mu_);
  sessions_.erase(session_id);
}

int UpstreamLink::StreamsUp(const Replica& replica) const {
  int up = 0;
  for (Slot* slot : replica.slots) {
    absl::MutexLock lock(&slot->mu);
    up += slot->up ? 1 : 0;
  }
  return up;
}

bool UpstreamLink::Ready() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [address, replica] : replicas_) {
    if (replica->listed && StreamsUp(*replica) == options_.streams) {
      return true;
    }
  }
  return false;
}

bool UpstreamLink::AllStreamsUp() const {
  absl::MutexLock lock(&mu_);
  bool any = false;
  for (const auto& [address, replica] : replicas_) {
    if (!replica->listed) continue;
    if (StreamsUp(*replica) != options_.streams) return false;
    any = true;
  }
  return any;
}

std::vector<std::string> UpstreamLink::Replicas() const {
  std::vector<std::string> listed;
  absl::MutexLock lock(&mu_);
  for (const auto& [address, replica] : replicas_) {
    if (replica->listed) listed.push_back(address);
  }
  return listed;
}

std::string UpstreamLink::ReplicaOf(const std::string& session_id) const {
  absl::ReaderMutexLock lock(&sessions_mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end() || it->second.slot == nullptr) return "";
  return it->second.slot->replica->address;
}

std::vector<UpstreamLink::Slot*> UpstreamLink::AllSlots() const {
  std::vector<Slot*> slots;
  absl::MutexLock lock(&mu_);
  slots.reserve(slots_.size());
  for (const auto& slot : slots_) slots.push_back(slot.get());
  return slots;
}

bool UpstreamLink::Live(Slot& slot) {
  absl::MutexLock lock(&slot.mu);
  return slot.up && !slot.draining;
}

UpstreamLink::Slot* UpstreamLink::Place(const std::string& session_id,
                                        const Replica* avoid) {
  const uint64_t hash = std::hash<std::string>()(session_id);
  Slot* best = nullptr;
  uint64_t best_score = 0;
  bool best_avoided = false;
  absl::MutexLock lock(&mu_);
  for (const auto& slot : slots_) {
    if (!slot->replica->listed || !Live(*slot)) continue;
    const bool avoided = slot->replica == avoid;
    const uint64_t score = Mix(hash ^ slot->key);
    if (best == nullptr || (best_avoided && !avoided) ||
        (best_avoided == avoided && score > best_score)) {
      best = slot.get();
      best_score = score;
      best_avoided = avoided;
    }
  }
  return best;
}

std::optional<uint64_t> UpstreamLink::Open(
    const parley::v1::SessionOpen& open) {
  const std::string& id = open.session_id();
  Slot* slot = nullptr;
  Replica* moved_from = nullptr;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&sessions_mu_);
    Attached& attached = sessions_[id];
    slot = attached.slot;
    // A session stays on its stream while that is up; otherwise (first
    // open, or its stream ended) it goes where rendezvous hashing says.
    if (slot == nullptr || !Live(*slot)) {
      // When one stream of a replica ends, its others usually follow (the
      // replica died): prefer another replica, so a session moves once.
      Slot* placed = Place(id, slot == nullptr ? nullptr : slot->replica);
      if (placed != nullptr) {
        if (slot != nullptr && slot->replica != placed->replica) {
          moved_from = slot->replica;
        }
        slot = placed;
        attached.slot = placed;
      }
    }
    if (slot == nullptr) {
      if (attached.handle == nullptr) sessions_.erase(id);
      return std::nullopt;
    }
    // Taken before the event is queued, so a down notice for this stream
    // that reads it is never older than what the session will hold.
    generation = ++generations_;
    attached.generation = generation;
    attached.period = 0;
  }
  GatewayEvent event;
  *event.mutable_open() = open;
  const std::optional<uint64_t> period =
      Enqueue(*slot, std::move(event), std::nullopt);
  if (!period.has_value()) return std::nullopt;
  if (moved_from != nullptr) slot->replica->sessions_moved_in->Increment();
  absl::MutexLock lock(&sessions_mu_);
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.generation == generation) {
    it->second.period = *period;
  }
  return generation;
}

bool UpstreamLink::Frame(uint64_t generation, parley::v1::SessionFrame frame) {
  Slot* slot = nullptr;
  uint64_t period = 0;
  {
    absl::ReaderMutexLock lock(&sessions_mu_);
    auto it = sessions_.find(frame.session_id());
    if (it == sessions_.end() || it->second.slot == nullptr ||
        it->second.generation != generation || it->second.period == 0) {
      return false;
    }
    slot = it->second.slot;
    period = it->second.period;
  }
  GatewayEvent event;
  *event.mutable_frame() = std::move(frame);
  return Enqueue(*slot, std::move(event), period).has_value();
}

void UpstreamLink::Close(parley::v1::SessionClose close) {
  Slot* slot = nullptr;
  {
    absl::ReaderMutexLock lock(&sessions_mu_);
    auto it = sessions_.find(close.session_id());
    if (it != sessions_.end()) slot = it->second.slot;
  }
  if (slot == nullptr) slot = Place(close.session_id(), nullptr);
  if (slot == nullptr) return;
  GatewayEvent event;
  *event.mutable_close() = std::move(close);
  Enqueue(*slot, std::move(event), std::nullopt);
}

std::optional<uint64_t> UpstreamLink::Enqueue(Slot& slot, GatewayEvent event,
                                              std::optional<uint64_t> period) {
  StreamReactor* writer = nullptr;
  uint64_t current;
  // Sized outside the lock; the batch caps use it.
  const size_t bytes = event.ByteSizeLong();
  {
    absl::MutexLock lock(&slot.mu);
    if (!slot.up || slot.draining) return std::nullopt;
    if (period.has_value() && *period != slot.generation) {
      return std::nullopt;
    }
    current = slot.generation;
    slot.pending.push_back(Slot::Queued{std::move(event), bytes});
    queued_events_.Add(1);
    if (!slot.write_in_flight) {
      slot.write_in_flight = true;
      writer = slot.reactor;
      writer->TakeBatch();
    }
  }
  if (writer != nullptr) writer->StartBatchWrite();
  return current;
}

void UpstreamLink::Connect(Slot& slot) {
  auto context = std::make_shared<grpc::ClientContext>();
  auto* reactor = new StreamReactor(this, &slot, context);
  {
    absl::MutexLock lock(&slot.mu);
    ++slot.attempt;
    slot.reactor = reactor;
    slot.context = context;
    slot.write_in_flight = true;  // The LinkHello.
  }
  reactor->Begin();
}

void UpstreamLink::ScheduleReconnect(Slot& slot, absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  --live_reactors_;
  if (shutting_down_) return;
  if (!slot.replica->listed) {
    slot.active = false;
    LogInfo(
        "gateway.replica_stream_dropped",
        {{"replica", slot.replica->address}, {"stream", slot.stream_index}});
    reconnect_cv_.Signal();
    return;
  }
  slot.next_attempt = absl::Now() + delay;
  reconnect_cv_.Signal();
}

absl::Duration UpstreamLink::NextBackoff(int failures) {
  double ms = static_cast<double>(options_.backoff_initial.count()) *
              std::pow(options_.backoff_multiplier, std::max(0, failures - 1));
  ms = std::min(ms, static_cast<double>(options_.backoff_max.count()));
  absl::MutexLock lock(&mu_);
  const double jitter = absl::Uniform(bitgen_, 1.0 - options_.backoff_jitter,
                                      1.0 + options_.backoff_jitter);
  return absl::Milliseconds(ms * jitter);
}

void UpstreamLink::ReportUp(Slot& slot, uint64_t generation) {
  bool reconnect = false;
  {
    absl::MutexLock lock(&slot.mu);
    reconnect = slot.ups > 1;
  }
  slot.replica->streams_up->Add(1);
  if (reconnect) slot.replica->reconnects->Increment();
  PostLinkState(slot, generation, true);
}

void UpstreamLink::ScheduleConfirm(Slot& slot, uint64_t attempt) {
  absl::MutexLock lock(&mu_);
  slot.confirm_at = absl::Now() + absl::FromChrono(options_.ready_grace);
  slot.confirm_attempt = attempt;
  reconnect_cv_.Signal();
}

void UpstreamLink::ConfirmStream(Slot& slot, uint64_t attempt) {
  std::optional<uint64_t> up;
  {
    absl::MutexLock lock(&slot.mu);
    // A live reactor is only deleted after OnDone clears slot.reactor.
    if (slot.attempt == attempt && slot.reactor != nullptr) {
      up = slot.reactor->ConfirmUpLocked(/*grace_elapsed=*/true);
    }
  }
  if (up.has_value()) ReportUp(slot, *up);
}

void UpstreamLink::ReconnectLoop() {
  absl::MutexLock lock(&mu_);
  while (!shutting_down_) {
    const absl::Time now = absl::Now();
    absl::Time earliest = absl::InfiniteFuture();
    std::vector<Slot*> due;
    std::vector<std::pair<Slot*, uint64_t>> confirms;
    for (const auto& owned : slots_) {
      Slot& slot = *owned;
      if (slot.next_attempt <= now) {
        slot.next_attempt = absl::InfiniteFuture();
        if (slot.replica->listed) {
          due.push_back(&slot);
          ++live_reactors_;
        } else {
          slot.active = false;
        }
      } else {
        earliest = std::min(earliest, slot.next_attempt);
      }
      if (slot.confirm_at <= now) {
        confirms.emplace_back(&slot, slot.confirm_attempt);
        slot.confirm_at = absl::InfiniteFuture();
      } else {
        earliest = std::min(earliest, slot.confirm_at);
      }
    }
    // An unlisted replica whose streams have all ended lets go of its
    // channel (here, not on the gRPC thread that ended the last stream,
    // whose completion queue the channel's destruction would shut down).
    std::vector<std::unique_ptr<parley::v1::GatewayLink::StubInterface>>
        released;
    for (auto& [address, replica] : replicas_) {
      if (replica->listed || replica->stub == nullptr ||
          std::any_of(replica->slots.begin(), replica->slots.end(),
                      [](const Slot* slot) { return slot->active; })) {
        continue;
      }
      released.push_back(std::move(replica->stub));
      LogInfo("gateway.replica_dropped", {{"replica", address}});
    }
    if (!due.empty() || !confirms.empty() || !released.empty()) {
      mu_.Unlock();
      released.clear();
      for (const auto& [slot, attempt] : confirms) {
        ConfirmStream(*slot, attempt);
      }
      for (Slot* slot : due) Connect(*slot);
      mu_.Lock();
      continue;
    }
    reconnect_cv_.WaitWithDeadline(&mu_, earliest);
  }
}

void UpstreamLink::Dispatch(ServiceBatch* batch, Slot& slot) {
  events_in_.Increment(batch->events_size());
  DispatchServiceBatch(batch, slot.index, *this);
}

bool UpstreamLink::NoLiveReactors(UpstreamLink* link) {
  return link->live_reactors_ == 0;
}

std::shared_ptr<SessionHandle> UpstreamLink::HandleFor(
    const std::string& session_id) const {
  absl::ReaderMutexLock lock(&sessions_mu_);
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? nullptr : it->second.handle;
}

std::vector<std::shared_ptr<SessionHandle>> UpstreamLink::HandlesFor(
    const google::protobuf::RepeatedPtrField<std::string>& ids) const {
  std::vector<std::shared_ptr<SessionHandle>> handles;
  handles.reserve(ids.size());
  absl::ReaderMutexLock lock(&sessions_mu_);
  for (const std::string& id : ids) {
    auto it = sessions_.find(id);
    handles.push_back(it == sessions_.end() ? nullptr : it->second.handle);
  }
  return handles;
}

std::vector<std::shared_ptr<SessionHandle>> UpstreamLink::HandlesOnStream(
    int stream) const {
  std::vector<std::shared_ptr<SessionHandle>> handles;
  absl::ReaderMutexLock lock(&sessions_mu_);
  for (const auto& [id, attached] : sessions_) {
    if (attached.handle != nullptr && attached.slot != nullptr &&
        attached.slot->index == stream) {
      handles.push_back(attached.handle);
    }
  }
  return handles;
}

void UpstreamLink::PostLinkState(Slot& slot, uint64_t generation, bool up) {
  Replica& replica = *slot.replica;
  // Replicas with a live stream right now, taken before sessions_mu_ (lock
  // order).
  std::set<const Replica*> live;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& other : slots_) {
      if (other->replica != &replica && other->replica->listed &&
          Live(*other)) {
        live.insert(other->replica);
      }
    }
  }
  struct Notice {
    std::shared_ptr<SessionHandle> handle;
    uint64_t generation;
  };
  std::vector<Notice> on_stream;
  std::vector<std::shared_ptr<SessionHandle>> stranded;
  {
    absl::ReaderMutexLock lock(&sessions_mu_);
    for (const auto& [id, attached] : sessions_) {
      if (attached.handle == nullptr || attached.slot == nullptr) continue;
      if (attached.slot == &slot) {
        on_stream.push_back({attached.handle, attached.generation});
      } else if (up && attached.slot->replica != &replica &&
                 live.count(attached.slot->replica) == 0 &&
                 !Live(*attached.slot)) {
        // Its replica has no stream up: it may come here rather than wait.
        stranded.push_back(attached.handle);
      }
    }
  }
  if (up) {
    // Every generation handed out so far is below this stream's, so each
    // session here re-announces, unless it already opened on this up-period.
    for (Notice& notice : on_stream) {
      notice.handle->Post([generation](Session& s) { s.OnLinkUp(generation); });
    }
    const uint64_t adopt = ++generations_;
    for (auto& handle : stranded) {
      handle->Post([adopt](Session& s) { s.OnLinkUp(adopt); });
    }
    LogInfo("gateway.upstream_up", {{"replica", replica.address},
                                    {"stream", slot.stream_index},
                                    {"generation", generation},
                                    {"sessions", on_stream.size()},
                                    {"sessions_adopted", stranded.size()}});
    LogReplicaState(replica, true, 0, stranded.size(), live.size() + 1);
    return;
  }
  // Another replica is up: re-announce there now (a session still opening
  // opens there) instead of waiting for this stream. The notice's generation
  // is above every one handed out, so it cannot be mistaken for a stale one;
  // each session's Open() then finds its stream down and places it on a
  // live one. Until it runs, the session's frames are refused and held.
  // Otherwise the sessions wait for a stream (one still opening is closed
  // 1013, as it always was).
  const bool move = !live.empty() && !on_stream.empty();
  if (move) {
    const uint64_t kick = ++generations_;
    for (Notice& notice : on_stream) {
      notice.handle->Post([kick](Session& s) { s.OnLinkUp(kick); });
    }
  } else {
    for (Notice& notice : on_stream) {
      const uint64_t was = notice.generation;
      notice.handle->Post([was](Session& s) { s.OnLinkDown(was); });
    }
  }
  const size_t moving = move ? on_stream.size() : 0;
  LogWarn("gateway.upstream_down", {{"replica", replica.address},
                                    {"stream", slot.stream_index},
                                    {"generation", generation},
                                    {"sessions", on_stream.size()},
                                    {"sessions_moving", moving}});
  LogReplicaState(replica, false, moving, 0, live.size());
}

void UpstreamLink::LogReplicaState(Replica& replica, bool up, size_t moving,
                                   size_t adopted, size_t replicas_up) {
  absl::MutexLock lock(&mu_);
  replica.moving += moving;
  replica.reported_up += up ? 1 : -1;
  if (up && replica.reported_up == 1) {
    LogInfo("gateway.replica_up", {{"replica", replica.address},
                                   {"sessions_adopted", adopted},
                                   {"replicas_up", replicas_up}});
  } else if (!up && replica.reported_up == 0) {
    LogWarn("gateway.replica_down", {{"replica", replica.address},
                                     {"sessions_moving", replica.moving},
                                     {"replicas_up", replicas_up}});
    replica.moving = 0;
  }
}

void UpstreamLink::Shutdown(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    reconnect_cv_.Signal();
    resolve_cv_.Signal();
  }
  if (reconnect_thread_.joinable()) reconnect_thread_.join();
  if (resolve_thread_.joinable()) resolve_thread_.join();
  const std::vector<Slot*> slots = AllSlots();
  for (Slot* slot : slots) {
    absl::MutexLock lock(&slot->mu);
    slot->draining = true;
  }
  // Write what is queued, then half-close each stream.
  for (Slot* slot : slots) {
    StreamReactor* reactor = nullptr;
    {
      absl::MutexLock lock(&slot->mu);
      slot->mu.AwaitWithDeadline(
          absl::Condition(
              +[](Slot* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
                return s->reactor == nullptr ||
                       (!s->write_in_flight && s->pending.empty());
              },
              slot),
          deadline);
      if (slot->reactor != nullptr &&
          slot->reactor->TryBeginWritesDoneLocked()) {
        reactor = slot->reactor;
      }
    }
    // Safe: the claimed write keeps the reactor's hold.
    if (reactor != nullptr) reactor->StartWritesDone();
  }
  // Wait for the service to end the streams, then cancel what is left.
  {
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithDeadline(absl::Condition(&NoLiveReactors, this),
                              deadline)) {
      return;
    }
  }
  for (Slot* slot : slots) {
    std::shared_ptr<grpc::ClientContext> context;
    {
      absl::MutexLock lock(&slot->mu);
      context = slot->context;
    }
    if (context != nullptr) context->TryCancel();
  }
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&NoLiveReactors, this));
}

}  // namespace parley::gateway
