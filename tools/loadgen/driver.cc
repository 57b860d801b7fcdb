#include "tools/loadgen/driver.h"

#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tools/loadgen/histogram.h"
#include "tools/loadgen/pacer.h"
#include "tools/loadgen/payload.h"
#include "tools/loadgen/proc_stats.h"
#include "tools/loadgen/report.h"
#include "tools/loadgen/ws_client.h"

namespace parley::loadgen {
namespace {

// CLOCK_MONOTONIC: one clock for every process on the machine.
int64_t NowNanos() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

double SelfCpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) /
             1e6;
}

int64_t UnixMillis() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

int64_t SelfRssKib() {
  absl::StatusOr<ProcSample> s = SampleProcess(getpid());
  return s.ok() ? s->rss_kib : 0;
}

enum class Phase { kConnecting, kWarmup, kMeasuring, kDraining, kDone };

class Driver;

// One connection slot: the protocol session, the socket, and the sender's
// bookkeeping. A slot outlives its WsClients (churn makes many).
class Conn final : public SessionEvents, public WsClientHandler {
 public:
  Conn(Driver* driver, int index) : driver_(driver), index_(index) {}

  void OnReady() override;
  void OnDelivery(absl::string_view text) override;
  void OnAck(absl::string_view client_id) override;
  void OnError(absl::string_view kind, absl::string_view client_id) override;
  void SendPayload(absl::string_view payload) override {
    if (ws_ != nullptr) ws_->Send(session_->DataOpcode(), payload);
  }
  void OnWsOpen() override { session_->OnOpen(*this); }
  void OnWsMessage(WsOpcode, absl::string_view payload) override;
  void OnWsClosed(const std::string& code) override;

  Driver* driver_;
  const int index_;
  std::unique_ptr<ProtocolSession> session_;
  std::shared_ptr<WsClient> ws_;
  bool ready_ = false;
  bool closing_ = false;  // We closed it on purpose (churn, end of run).
  int64_t connect_start_ = 0;
  // Sender state.
  int inflight_ = 0;
  uint64_t next_seq_ = 0;
  std::unordered_map<uint64_t, int> pending_;  // seq -> deliveries missing.
};

class Driver {
 public:
  Driver(const DriverOptions& options, const Protocol& protocol,
         const std::vector<SessionSpec>& specs)
      : options_(options),
        protocol_(protocol),
        specs_(specs),
        tick_(io_),
        phase_timer_(io_) {
    for (size_t i = 0; i < specs.size(); ++i) {
      conns_.push_back(std::make_unique<Conn>(this, static_cast<int>(i)));
    }
    const bool fanout = options.workload == "fanout";
    if (fanout) {
      senders_.push_back(0);
      deliveries_per_send_ = static_cast<int>(specs.size()) - 1;
    } else if (options.workload == "pairs") {
      for (size_t i = 0; i + 1 < specs.size(); i += 2) {
        senders_.push_back(static_cast<int>(i));
        senders_.push_back(static_cast<int>(i + 1));
      }
    }
  }

  Report Run() {
    report_.set_target(protocol_.name());
    report_.set_workload(options_.workload);
    report_.set_connections_requested(static_cast<int>(conns_.size()));
    report_.set_inflight(options_.inflight);
    report_.set_offered_rate(options_.rate);
    report_.set_payload_bytes(options_.payload_bytes);
    if (options_.workload == "fanout") {
      report_.set_group_size(static_cast<int>(conns_.size()));
    }
    SampleProcesses(&start_samples_);
    start_cpu_ = SelfCpuSeconds();
    start_rss_ = SelfRssKib();
    window_start_ = NowNanos();
    connect_began_ = window_start_;
    if (options_.workload == "churn") {
      phase_ = Phase::kMeasuring;
      report_.set_window_start_unix_ms(UnixMillis());
      ArmPhaseTimer(options_.duration, [this] { EndWindow(); });
    } else {
      ArmPhaseTimer(options_.connect_timeout, [this] { ConnectPhaseDone(); });
    }
    LaunchMore();
    io_.run();
    return std::move(report_);
  }

  // Called by Conn.
  void Ready(Conn* c) {
    c->ready_ = true;
    const int64_t now = NowNanos();
    ++handshakes_;
    --connecting_;
    last_ready_ = now;
    handshake_latency_.Record(now - c->connect_start_);
    if (options_.workload == "churn") {
      if (phase_ == Phase::kMeasuring) {
        c->closing_ = true;
        c->ws_->Close(1000);
      }
      return;
    }
    LaunchMore();
    if (phase_ == Phase::kConnecting) {
      MaybeConnectPhaseDone();
    } else if (phase_ == Phase::kWarmup || phase_ == Phase::kMeasuring) {
      Fill(c);
    }
  }

  void Closed(Conn* c, const std::string& code) {
    const bool was_ready = c->ready_;
    if (!was_ready) --connecting_;
    c->ready_ = false;
    c->ws_.reset();
    if (!c->closing_ || code != "1000") ++closes_[code];
    c->closing_ = false;
    // Messages this sender still had in flight will never be matched.
    lost_ += c->pending_.size();
    c->pending_.clear();
    c->inflight_ = 0;
    if (options_.workload == "churn") {
      if (phase_ == Phase::kMeasuring) {
        pending_launch_.push_back(c->index_);
        LaunchMore();
      }
      return;
    }
    if (!was_ready) {
      ++failed_;
      LaunchMore();
      if (phase_ == Phase::kConnecting) MaybeConnectPhaseDone();
    }
  }

  void Delivered(Conn* c, absl::string_view text) {
    const int64_t now = NowNanos();
    std::optional<PayloadInfo> info = ParsePayload(text);
    if (!info.has_value()) {
      ++errors_["foreign_message"];
      return;
    }
    const int64_t sender = info->sender - options_.index_offset;
    if (sender == c->index_) return;  // Our own send echoed to us.
    if (phase_ == Phase::kMeasuring) {
      ++delivered_;
      e2e_.Record(now - info->sent_nanos);
    }
    if (sender < 0 || sender >= static_cast<int64_t>(conns_.size())) return;
    Conn* s = conns_[sender].get();
    auto it = s->pending_.find(info->seq);
    if (it == s->pending_.end()) return;
    if (--it->second > 0) return;
    s->pending_.erase(it);
    --s->inflight_;
    if (phase_ == Phase::kDraining && InFlight() == 0) {
      Finish();
      return;
    }
    if (options_.rate <= 0) Fill(s);
  }

  void Acked(absl::string_view client_id) {
    if (phase_ != Phase::kMeasuring) return;
    std::optional<int64_t> sent = ClientIdSentNanos(client_id);
    if (!sent.has_value()) return;
    ++acks_;
    ack_latency_.Record(NowNanos() - *sent);
  }

  void Error(Conn* c, absl::string_view kind, absl::string_view client_id) {
    ++errors_[std::string(kind)];
    if (client_id.empty()) return;
    const size_t dot = client_id.find('.');
    uint64_t seq = 0;
    if (dot == absl::string_view::npos ||
        !absl::SimpleAtoi(client_id.substr(0, dot), &seq)) {
      return;
    }
    if (c->pending_.erase(seq) > 0) --c->inflight_;
  }

  void FrameError(Conn* c, const absl::Status& status) {
    // The report keys errors by their first 60 characters; the first of
    // each key goes to stderr whole.
    if (++errors_[absl::StrCat("bad_frame: ",
                               status.message().substr(0, 60))] == 1) {
      std::fprintf(stderr, "parley-loadgen: bad frame: %s\n",
                   std::string(status.message()).c_str());
    }
    if (std::shared_ptr<WsClient> ws = c->ws_; ws != nullptr) ws->Abort();
  }

 private:
  template <typename F>
  void ArmPhaseTimer(std::chrono::milliseconds after, F f) {
    phase_timer_.expires_after(after);
    phase_timer_.async_wait([f](const asio::error_code& ec) {
      if (!ec) f();
    });
  }

  void Launch(int index) {
    Conn* c = conns_[index].get();
    c->session_ = protocol_.NewSession(specs_[index]);
    WsClientOptions o;
    const Target& target = TargetFor(options_.targets, index);
    o.remote = target.endpoint;
    if (!options_.sources.empty()) {
      o.source = options_.sources[launches_ % options_.sources.size()];
    }
    o.host_header = target.host_header;
    o.resource = c->session_->Resource();
    o.subprotocol = c->session_->Subprotocol();
    c->ws_ = std::make_shared<WsClient>(
        io_, std::move(o), c, static_cast<uint32_t>(index * 7919 + 1));
    c->connect_start_ = NowNanos();
    ++connecting_;
    ++launches_;
    // Start() may fail at once and call back into Closed(), which drops
    // c->ws_: keep the client alive through the call.
    std::shared_ptr<WsClient> ws = c->ws_;
    ws->Start();
  }

  void LaunchMore() {
    if (options_.workload == "churn") {
      while (!pending_launch_.empty() &&
             connecting_ < options_.connect_concurrency) {
        const int index = pending_launch_.back();
        pending_launch_.pop_back();
        Launch(index);
      }
      while (next_launch_ < static_cast<int>(conns_.size()) &&
             connecting_ < options_.connect_concurrency) {
        Launch(next_launch_++);
      }
      return;
    }
    while (next_launch_ < static_cast<int>(conns_.size()) &&
           connecting_ < options_.connect_concurrency &&
           phase_ == Phase::kConnecting) {
      Launch(next_launch_++);
    }
  }

  void MaybeConnectPhaseDone() {
    if (handshakes_ + failed_ >= static_cast<int64_t>(conns_.size())) {
      ConnectPhaseDone();
    }
  }

  void ConnectPhaseDone() {
    if (phase_ != Phase::kConnecting) return;
    const double seconds =
        static_cast<double>(last_ready_ - connect_began_) / 1e9;
    report_.set_connections_ready(static_cast<int>(handshakes_));
    report_.set_handshake_seconds(seconds);
    report_.set_handshakes_per_second(seconds > 0 ? handshakes_ / seconds : 0);
    *report_.mutable_handshake_latency() = Summarize(handshake_latency_);
    if (options_.workload == "idle") {
      phase_ = Phase::kMeasuring;
      report_.set_window_start_unix_ms(UnixMillis());
      ArmPhaseTimer(options_.hold, [this] {
        int held = 0;
        for (const auto& c : conns_) held += c->ready_ ? 1 : 0;
        report_.set_connections_held(held);
        EndWindow();
      });
      return;
    }
    phase_ = Phase::kWarmup;
    if (options_.rate > 0) {
      const int64_t max_debt = std::max<int64_t>(
          1, static_cast<int64_t>(senders_.size()) * options_.inflight);
      pacer_.emplace(options_.rate, NowNanos(), max_debt);
      Tick();
    } else {
      for (int s : senders_) Fill(conns_[s].get());
    }
    ArmPhaseTimer(options_.warmup, [this] { StartWindow(); });
  }

  void StartWindow() {
    phase_ = Phase::kMeasuring;
    start_samples_.clear();
    SampleProcesses(&start_samples_);
    start_cpu_ = SelfCpuSeconds();
    window_start_ = NowNanos();
    report_.set_window_start_unix_ms(UnixMillis());
    sent_ = 0;
    skipped_at_start_ = pacer_.has_value() ? pacer_->skipped() : 0;
    ArmPhaseTimer(options_.duration, [this] { EndWindow(); });
  }

  void EndWindow() {
    window_end_ = NowNanos();
    report_.set_window_end_unix_ms(UnixMillis());
    const double seconds =
        static_cast<double>(window_end_ - window_start_) / 1e9;
    report_.set_duration_seconds(seconds);
    std::vector<std::pair<std::string, ProcSample>> end_samples;
    SampleProcesses(&end_samples);
    for (const DriverOptions::Watched& w : options_.watch) {
      const std::string& name = w.name;
      ProcessStats* p = report_.add_processes();
      p->set_name(name);
      p->set_pid(w.pid);
      for (const auto& [n, s] : start_samples_) {
        if (n != name) continue;
        p->set_rss_start_kib(s.rss_kib);
        p->set_cpu_seconds(-s.cpu_seconds);
      }
      for (const auto& [n, s] : end_samples) {
        if (n != name) continue;
        p->set_rss_end_kib(s.rss_kib);
        p->set_cpu_seconds(p->cpu_seconds() + s.cpu_seconds);
      }
      p->set_cpu_percent(seconds > 0 ? 100 * p->cpu_seconds() / seconds : 0);
    }
    ProcessStats* self = report_.mutable_loadgen();
    self->set_name("loadgen");
    self->set_pid(getpid());
    self->set_rss_start_kib(start_rss_);
    self->set_rss_end_kib(SelfRssKib());
    self->set_cpu_seconds(SelfCpuSeconds() - start_cpu_);
    self->set_cpu_percent(seconds > 0 ? 100 * self->cpu_seconds() / seconds
                                      : 0);
    if (options_.workload == "churn") {
      report_.set_connections_ready(static_cast<int>(handshakes_));
      report_.set_handshake_seconds(seconds);
      report_.set_handshakes_per_second(seconds > 0 ? handshakes_ / seconds
                                                    : 0);
      *report_.mutable_handshake_latency() = Summarize(handshake_latency_);
    }
    report_.set_sent(sent_);
    report_.set_delivered(delivered_);
    report_.set_delivered_per_second(seconds > 0 ? delivered_ / seconds : 0);
    *report_.mutable_end_to_end() = Summarize(e2e_);
    report_.set_acks(acks_);
    report_.set_acks_per_second(seconds > 0 ? acks_ / seconds : 0);
    *report_.mutable_ack_latency() = Summarize(ack_latency_);
    report_.set_pacer_skipped(
        pacer_.has_value() ? pacer_->skipped() - skipped_at_start_ : 0);
    phase_ = Phase::kDraining;
    if (InFlight() == 0) {
      Finish();
      return;
    }
    ArmPhaseTimer(options_.drain, [this] { Finish(); });
  }

  void Finish() {
    if (phase_ == Phase::kDone) return;
    phase_ = Phase::kDone;
    report_.set_undelivered(InFlight());
    for (const auto& [k, v] : errors_) (*report_.mutable_errors())[k] = v;
    for (const auto& [k, v] : closes_) (*report_.mutable_closes())[k] = v;
    if (lost_ > 0) (*report_.mutable_errors())["lost_in_flight"] = lost_;
    tick_.cancel();
    phase_timer_.cancel();
    for (auto& c : conns_) {
      if (std::shared_ptr<WsClient> ws = c->ws_; ws != nullptr) {
        c->closing_ = true;
        ws->Abort();
      }
    }
    io_.stop();
  }

  int64_t InFlight() const {
    int64_t n = 0;
    for (int s : senders_) n += conns_[s]->inflight_;
    return n;
  }

  bool Sending() const {
    return phase_ == Phase::kWarmup || phase_ == Phase::kMeasuring;
  }

  bool SendOne(Conn* c) {
    if (!c->ready_ || c->ws_ == nullptr || c->inflight_ >= options_.inflight) {
      return false;
    }
    const int64_t now = NowNanos();
    const uint64_t seq = c->next_seq_++;
    const std::string text =
        FormatPayload({c->index_ + options_.index_offset, seq, now},
                      static_cast<size_t>(options_.payload_bytes));
    c->ws_->Send(c->session_->DataOpcode(),
                 c->session_->EncodeSend(FormatClientId(seq, now), text));
    c->pending_[seq] = deliveries_per_send_;
    ++c->inflight_;
    if (phase_ == Phase::kMeasuring) ++sent_;
    return true;
  }

  // Open loop: keep the window full.
  void Fill(Conn* c) {
    if (!Sending() || options_.rate > 0) return;
    bool is_sender = options_.workload == "pairs" ||
                     (options_.workload == "fanout" && c->index_ == 0);
    if (!is_sender) return;
    while (SendOne(c)) {
    }
  }

  // Paced: hand the due sends round-robin to senders with room.
  void Tick() {
    if (!Sending() || senders_.empty()) return;
    int64_t due = pacer_->Due(NowNanos());
    size_t misses = 0;
    while (due > 0 && misses < senders_.size()) {
      Conn* c = conns_[senders_[cursor_]].get();
      cursor_ = (cursor_ + 1) % senders_.size();
      if (SendOne(c)) {
        pacer_->Take(1);
        --due;
        misses = 0;
      } else {
        ++misses;
      }
    }
    tick_.expires_after(std::chrono::microseconds(500));
    tick_.async_wait([this](const asio::error_code& ec) {
      if (!ec) Tick();
    });
  }

  void SampleProcesses(std::vector<std::pair<std::string, ProcSample>>* out) {
    for (const DriverOptions::Watched& w : options_.watch) {
      absl::StatusOr<ProcSample> s =
          w.tree ? SampleProcessTree(w.pid) : SampleProcess(w.pid);
      if (s.ok()) out->emplace_back(w.name, *s);
    }
  }

  const DriverOptions& options_;
  const Protocol& protocol_;
  const std::vector<SessionSpec>& specs_;
  asio::io_context io_{1};
  asio::steady_timer tick_;
  asio::steady_timer phase_timer_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<int> senders_;
  int deliveries_per_send_ = 1;
  Phase phase_ = Phase::kConnecting;
  Report report_;

  int next_launch_ = 0;
  int64_t launches_ = 0;
  int connecting_ = 0;
  std::vector<int> pending_launch_;
  int64_t handshakes_ = 0;
  int64_t failed_ = 0;
  int64_t connect_began_ = 0;
  int64_t last_ready_ = 0;
  LatencyHistogram handshake_latency_;

  std::optional<RatePacer> pacer_;
  int64_t skipped_at_start_ = 0;
  size_t cursor_ = 0;
  int64_t window_start_ = 0;
  int64_t window_end_ = 0;
  int64_t sent_ = 0;
  int64_t delivered_ = 0;
  int64_t acks_ = 0;
  int64_t lost_ = 0;
  LatencyHistogram e2e_;
  LatencyHistogram ack_latency_;
  std::map<std::string, int64_t> errors_;
  std::map<std::string, int64_t> closes_;
  std::vector<std::pair<std::string, ProcSample>> start_samples_;
  double start_cpu_ = 0;
  int64_t start_rss_ = 0;
};

void Conn::OnReady() {
  if (!ready_) driver_->Ready(this);
}
void Conn::OnDelivery(absl::string_view text) {
  driver_->Delivered(this, text);
}
void Conn::OnAck(absl::string_view client_id) { driver_->Acked(client_id); }
void Conn::OnError(absl::string_view kind, absl::string_view client_id) {
  driver_->Error(this, kind, client_id);
}
void Conn::OnWsMessage(WsOpcode, absl::string_view payload) {
  absl::Status s = session_->OnFrame(payload, *this);
  if (!s.ok()) driver_->FrameError(this, s);
}
void Conn::OnWsClosed(const std::string& code) { driver_->Closed(this, code); }

}  // namespace

absl::StatusOr<Report> RunWorkload(const DriverOptions& options,
                                   const Protocol& protocol,
                                   const std::vector<SessionSpec>& specs) {
  const std::string& w = options.workload;
  if (w != "pairs" && w != "fanout" && w != "churn" && w != "idle") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown workload \"", w, "\"; use pairs, fanout, churn or idle"));
  }
  if (specs.empty()) return absl::InvalidArgumentError("no connections");
  if (w == "fanout" && !protocol.supports_groups()) {
    return absl::InvalidArgumentError(
        absl::StrCat(protocol.name(), " has no group fan-out"));
  }
  if (options.inflight < 1) {
    return absl::InvalidArgumentError("inflight must be at least 1");
  }
  Driver driver(options, protocol, specs);
  return driver.Run();
}

}  // namespace parley::loadgen
