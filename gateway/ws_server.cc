#include "gateway/ws_server.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/frame_codec.h"
#include "common/log.h"
#include "common/ws_frame.h"
#include "gateway/client_message_check.h"
#include "websocketpp/config/asio.hpp"
#include "websocketpp/server.hpp"

namespace parley::gateway {
namespace {

// Frees what a websocketpp connection keeps of its upgrade for its whole
// life: the request and response (header maps and buffers) and the parsed
// URI, ~1.5 KiB per connection, replaced by empty ones (`blank_uri` is one
// shared instance). websocketpp 0.8 reads them only up to the open handler
// (validation, the handshake, log_open_result) and in log_fail_result, which
// never runs after open; Parley reads them in validation and in OnOpen
// before this. The request and response accessors are const, the members
// are not, so assigning through const_cast is well defined.
template <typename Con>
void ReleaseHandshake(Con& con, const websocketpp::uri_ptr& blank_uri) {
  using Request =
      std::remove_cv_t<std::remove_reference_t<decltype(con.get_request())>>;
  using Response =
      std::remove_cv_t<std::remove_reference_t<decltype(con.get_response())>>;
  const_cast<Request&>(con.get_request()) = Request();
  const_cast<Response&>(con.get_response()) = Response();
  con.set_uri(blank_uri);
}

// websocketpp's asio config with Parley's limits: a 176-byte read buffer inside
// each connection object, no library logging (the adapter logs errors once,
// with the peer), and permessage-deflate left out (websocketpp's default
// `disabled` extension). The runtime limits (timeouts, max message size) are
// set on the endpoint.
//
// The read buffer is most of what an idle connection costs beyond websocketpp's
// fixed ~3.9 KiB (the default is 16 KiB). 176 bytes is what lets the
// connection object, allocated with make_shared, fit jemalloc's 4 KiB size
// class (//common:malloc); at 512 it took the 5 KiB class, and a gateway
// holding 19,000 idle connections used 8.3 instead of 7.4 KiB per connection.
// A frame longer than the buffer takes several reads. Measured against 512
// bytes: 1:1 with 64-byte texts ~4% fewer messages per second (within
// run-to-run noise); with 3.5 KB texts ~25% more gateway CPU per message. Chat
// traffic is mostly small frames and most connections idle, so memory wins.
template <typename Base, typename SocketEndpoint>
struct GatewayConfig : public Base {
  typedef GatewayConfig type;
  typedef Base base;
  typedef typename base::concurrency_type concurrency_type;
  typedef typename base::request_type request_type;
  typedef typename base::response_type response_type;
  typedef typename base::message_type message_type;
  typedef typename base::con_msg_manager_type con_msg_manager_type;
  typedef typename base::endpoint_msg_manager_type endpoint_msg_manager_type;
  typedef typename base::alog_type alog_type;
  typedef typename base::elog_type elog_type;
  typedef typename base::rng_type rng_type;

  struct transport_config : public base::transport_config {
    typedef typename type::concurrency_type concurrency_type;
    typedef typename type::alog_type alog_type;
    typedef typename type::elog_type elog_type;
    typedef typename type::request_type request_type;
    typedef typename type::response_type response_type;
    typedef SocketEndpoint socket_type;
  };
  typedef websocketpp::transport::asio::endpoint<transport_config>
      transport_type;

  static const size_t connection_read_buffer_size = 176;
  static const websocketpp::log::level elog_level =
      websocketpp::log::elevel::none;
  static const websocketpp::log::level alog_level =
      websocketpp::log::alevel::none;
};

// ws:// and wss://: the same settings on plain and TLS sockets.
using PlainConfig =
    GatewayConfig<websocketpp::config::asio,
                  websocketpp::transport::asio::basic_socket::endpoint>;
// make_shared puts the object after a 16-byte control block (libstdc++).
static_assert(sizeof(websocketpp::connection<PlainConfig>) + 16 <= 4096,
              "a plain connection no longer fits jemalloc's 4 KiB size class: "
              "shrink connection_read_buffer_size (see GatewayConfig)");
using TlsConfig =
    GatewayConfig<websocketpp::config::asio_tls,
                  websocketpp::transport::asio::tls_socket::endpoint>;

using Hdl = websocketpp::connection_hdl;

// Close reasons are at most 123 bytes; cut at a UTF-8 boundary.
std::string TruncateReason(absl::string_view reason) {
  if (reason.size() <= 123) return std::string(reason);
  size_t n = 123;
  while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
  return std::string(reason.substr(0, n));
}

// The content type of a page asset; empty for any other file.
std::string ContentType(const std::string& path) {
  static const auto* types = new std::map<std::string, std::string>{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".map", "application/json"},
      {".wasm", "application/wasm"},
  };
  const std::string ext = std::filesystem::path(path).extension().string();
  auto it = types->find(ext);
  return it == types->end() ? "" : it->second;
}

// Whether a file under --web_root is served: the page's own assets only, not
// its tests (name.test.js), docs (README.md: no asset type) or hidden files.
bool IsPageAsset(const std::filesystem::path& rel) {
  for (const auto& part : rel) {
    if (!part.empty() && part.string()[0] == '.') return false;
  }
  const std::string name = rel.filename().string();
  if (absl::StrContains(name, ".test.") || absl::StrContains(name, ".spec.")) {
    return false;
  }
  return !ContentType(name).empty();
}

// Query parameters of a request target (no percent-decoding beyond what a
// JWT, a device name and a number need: '+' and %XX).
std::map<std::string, std::string> ParseQuery(absl::string_view target) {
  std::map<std::string, std::string> out;
  size_t q = target.find('?');
  if (q == absl::string_view::npos) return out;
  for (absl::string_view part :
       absl::StrSplit(target.substr(q + 1), '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    std::string value;
    for (size_t i = 0; i < kv.second.size(); ++i) {
      char c = kv.second[i];
      if (c == '+') {
        value.push_back(' ');
      } else if (c == '%' && i + 2 < kv.second.size()) {
        int hi = 0, lo = 0;
        auto hex = [](char h, int* v) {
          if (h >= '0' && h <= '9')
            *v = h - '0';
          else if (h >= 'a' && h <= 'f')
            *v = h - 'a' + 10;
          else if (h >= 'A' && h <= 'F')
            *v = h - 'A' + 10;
          else
            return false;
          return true;
        };
        if (hex(kv.second[i + 1], &hi) && hex(kv.second[i + 2], &lo)) {
          value.push_back(static_cast<char>(hi * 16 + lo));
          i += 2;
        } else {
          value.push_back(c);
        }
      } else {
        value.push_back(c);
      }
    }
    out[std::string(kv.first)] = std::move(value);
  }
  return out;
}

// Runs `fn`; an exception is logged with the peer and goes no further.
template <typename Fn>
void NoThrow(absl::string_view what, absl::string_view peer, Fn&& fn) noexcept {
  try {
    fn();
  } catch (const std::exception& e) {
    LogError("gateway.handler_exception",
             {{"handler", what}, {"peer", peer}, {"what", e.what()}});
  }
}

absl::StatusOr<asio::ip::tcp::endpoint> ParseListenAddress(
    const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" has a bad port"));
  }
  asio::error_code ec;
  asio::ip::address ip =
      asio::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", address, "\": bad host: ", ec.message()));
  }
  return asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(port));
}

// The heartbeat ticks this many times per ping interval, pinging one slice
// of the connections each time: one tick a second at the default 25 s, and
// never ticks shorter than 10 ms.
int HeartbeatSlices(std::chrono::milliseconds interval) {
  return static_cast<int>(std::clamp<int64_t>(interval.count() / 10, 1, 25));
}

}  // namespace

// What WsServer forwards to: one ServerImpl per websocketpp config.
class WsServerImpl {
 public:
  virtual ~WsServerImpl() = default;
  virtual absl::StatusOr<std::string> Start() = 0;
  virtual void Drain(absl::Time deadline) = 0;
  virtual int open_connections() const = 0;
};

absl::Status WsServerOptions::Validate() const {
  if (io_threads < 0) {
    return absl::InvalidArgumentError("--io_threads must be >= 0");
  }
  if (handshake_timeout.count() <= 0 || close_timeout.count() <= 0 ||
      auth_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "--handshake_timeout, --close_timeout and --auth_timeout must be > 0");
  }
  if (ping_interval.count() <= 0 || pong_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "--ping_interval and --pong_timeout must be > 0");
  }
  if (max_message_bytes < 64) {
    return absl::InvalidArgumentError("--max_message_bytes must be >= 64");
  }
  if (max_connections < 1) {
    return absl::InvalidArgumentError("--max_connections must be >= 1");
  }
  if (max_held_bytes_total < session.max_buffered_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_held_bytes_total must be >= --max_buffered_bytes (",
        session.max_buffered_bytes, "), got ", max_held_bytes_total));
  }
  if (tls_cert_file.empty() != tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key must be given together");
  }
  return ParseListenAddress(listen_address).status();
}

// One client connection: the Connection a Session writes to, and the
// SessionHandle the upstream link posts to. Everything but construction and
// Post() runs on the websocketpp connection's strand.
template <typename Config>
class WsConnection final
    : public Connection,
      public SessionHandle,
      public std::enable_shared_from_this<WsConnection<Config>> {
 public:
  using ConnectionPtr = typename websocketpp::server<Config>::connection_ptr;
  using TimerPtr = typename websocketpp::server<Config>::timer_ptr;

  WsConnection(ConnectionPtr con, Encoding encoding, std::string peer,
               Counter& frames_out, Counter& bytes_out)
      : con_(std::move(con)),
        encoding_(encoding),
        peer_(std::move(peer)),
        strand_(con_->get_strand()),
        frames_out_(frames_out),
        bytes_out_(bytes_out) {}

  // Hands websocketpp a finished ("prepared") frame, which it queues as it
  // is. Its own path would copy the payload into a second message and scan
  // text payloads for valid UTF-8; every frame the gateway sends is encoded
  // from protobuf messages, whose strings are valid UTF-8 by construction.
  void Send(const std::string& frame) noexcept override {
    const websocketpp::frame::opcode::value op =
        encoding_ == Encoding::kJson ? websocketpp::frame::opcode::text
                                     : websocketpp::frame::opcode::binary;
    typename Config::message_type::ptr msg = con_->get_message(op, 0);
    std::string header;
    AppendWsFrameHeader(static_cast<uint8_t>(op), frame.size(),
                        /*masked=*/false, &header);
    msg->set_header(header);
    msg->set_payload(frame);
    msg->set_prepared(true);
    const websocketpp::lib::error_code ec = con_->send(msg);
    if (!ec) {
      frames_out_.Increment();
      bytes_out_.Increment(frame.size());
    }
  }
  void Close(uint16_t code, absl::string_view reason) noexcept override {
    close_code_ = code;
    websocketpp::lib::error_code ec;
    con_->close(code, TruncateReason(reason), ec);
  }
  size_t BufferedAmount() const noexcept override {
    return con_->get_buffered_amount();
  }

  void Post(std::function<void(Session&)> fn) override {
    asio::post(*strand_, [self = this->shared_from_this(), fn = std::move(fn)] {
      if (self->session_ == nullptr || self->closed_) return;
      NoThrow("upstream_event", self->peer_, [&] {
        fn(*self->session_);
        self->ReleaseAuthTimerIfLive();
      });
    });
  }

  // Pings the peer unless a ping is still unanswered, and expects its pong
  // within `pong_timeout`. Thread-safe: runs on the strand.
  void PostPing(std::chrono::milliseconds pong_timeout) {
    asio::post(*strand_, [self = this->shared_from_this(), pong_timeout] {
      if (self->session_ == nullptr || self->closed_ || self->awaiting_pong_) {
        return;
      }
      websocketpp::lib::error_code ec;
      self->con_->ping("", ec);
      if (ec) return;
      self->awaiting_pong_ = true;
      self->pong_due_ns_.store(
          SteadyNanos(std::chrono::steady_clock::now() + pong_timeout),
          std::memory_order_relaxed);
    });
  }

  // The peer's pong came back. On the strand.
  void OnPong() {
    awaiting_pong_ = false;
    pong_due_ns_.store(0, std::memory_order_relaxed);
  }

  // True, once per ping, when that ping's pong is due by `now_ns` and has
  // not come; the caller then calls PostPongTimeout(). Any thread.
  bool TakeOverduePong(int64_t now_ns) {
    int64_t due = pong_due_ns_.load(std::memory_order_relaxed);
    return due != 0 && due <= now_ns &&
           pong_due_ns_.compare_exchange_strong(due, 0,
                                                std::memory_order_relaxed);
  }

  // Closes the session (1001, "pong timeout"), counted in `timeouts`, unless
  // the pong came back in the meantime. Thread-safe: runs on the strand.
  void PostPongTimeout(Counter& timeouts) {
    asio::post(*strand_, [self = this->shared_from_this(), &timeouts] {
      if (self->session_ == nullptr || self->closed_ || !self->awaiting_pong_) {
        return;
      }
      NoThrow("pong_timeout", self->peer_, [&] {
        timeouts.Increment();
        LogInfo("gateway.pong_timeout", {{"peer", self->peer_}});
        self->session_->Shutdown(kCloseGoingAway, "pong timeout");
      });
    });
  }

  static int64_t SteadyNanos(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               t.time_since_epoch())
        .count();
  }

  // Frees the auth timer once the session is live (it would only fire to do
  // nothing, holding memory until then). On the strand.
  void ReleaseAuthTimerIfLive() {
    if (auth_timer_ != nullptr && session_ != nullptr &&
        session_->state() == Session::State::kLive) {
      auth_timer_->cancel();
      auth_timer_.reset();
    }
  }

  const ConnectionPtr& con() const { return con_; }
  Encoding encoding() const { return encoding_; }
  const std::string& peer() const { return peer_; }

  // Strand-confined state, managed by ServerImpl.
  std::unique_ptr<Session> session_;
  bool closed_ = false;
  // A ping is out and its pong has not come back. While it is, no new ping
  // is sent.
  bool awaiting_pong_ = false;
  // The heartbeat tick that pings it (of HeartbeatSlices()); set before the
  // connection is listed, then read only.
  int heartbeat_slice_ = 0;
  uint16_t close_code_ = 0;  // What this side closed with, if it did.
  TimerPtr auth_timer_;

 private:
  const ConnectionPtr con_;
  const Encoding encoding_;
  const std::string peer_;
  const std::shared_ptr<asio::io_context::strand> strand_;
  // When the outstanding ping's pong is due (steady clock, ns), or 0. The
  // heartbeat checks it on every tick: one timer for all connections, where
  // websocketpp's pong timeout would keep a timer per connection alive.
  std::atomic<int64_t> pong_due_ns_{0};
  Counter& frames_out_;
  Counter& bytes_out_;
};

// The server for one websocketpp config (plain or TLS).
template <typename Config>
class ServerImpl final : public WsServerImpl {
 public:
  using Endpoint = websocketpp::server<Config>;
  using ConnectionPtr = typename Endpoint::connection_ptr;
  using Conn = WsConnection<Config>;
  static constexpr bool kTls = std::is_same_v<Config, TlsConfig>;

  ServerImpl(WsServerOptions options, UpstreamLink* link, Registry& registry)
      : options_(std::move(options)),
        link_(link),
        registry_(registry),
        open_gauge_(registry.GetGauge("parley_gateway_connections_open",
                                      "Open client WebSocket connections.")),
        frames_in_(registry.GetCounter("parley_gateway_frames_in_total",
                                       "Client frames received.")),
        frames_out_(registry.GetCounter("parley_gateway_frames_out_total",
                                        "Frames sent to clients.")),
        bytes_in_(registry.GetCounter("parley_gateway_bytes_in_total",
                                      "Client frame payload bytes received.")),
        bytes_out_(registry.GetCounter("parley_gateway_bytes_out_total",
                                       "Frame payload bytes sent to clients.")),
        ack_latency_(registry.GetHistogram(
            "parley_gateway_send_ack_seconds",
            "From a client Send arriving to its Ack leaving the gateway.",
            Histogram::LatencyBuckets())),
        delivery_latency_(registry.GetHistogram(
            "parley_gateway_delivery_seconds",
            "From a message being stored (its sent_at) to the gateway "
            "writing it to a client.",
            Histogram::LatencyBuckets())),
        refused_rate_(Refused("rate_limit")),
        refused_backpressure_(Refused("backpressure")),
        slow_consumer_closes_(registry.GetCounter(
            "parley_gateway_slow_consumer_closes_total",
            "Sessions closed 1013 because their client did not read what was "
            "sent to it (--send_buffer_cap_bytes).")),
        pong_timeouts_(registry.GetCounter(
            "parley_gateway_pong_timeouts_total",
            "Connections closed 1001 because their peer did not answer a "
            "WebSocket ping within --pong_timeout.")),
        held_budget_(
            std::make_shared<HeldBudget>(options_.max_held_bytes_total)) {
    registry.AddCallbackGauge(
        "parley_gateway_held_bytes",
        "Bytes of client frames held for the service (unacknowledged Sends, "
        "unanswered Syncs, frames waiting for the link), all sessions.",
        [budget = held_budget_] {
          return static_cast<double>(budget->used());
        });
    // Unique across gateways and restarts without knowing the gateway id
    // (which may depend on the port bound later).
    absl::BitGen gen;
    id_prefix_ = absl::StrCat(
        absl::Hex(absl::Uniform<uint64_t>(gen), absl::kZeroPad16), "-");
  }

  ~ServerImpl() override {
    if (started_) Drain(absl::Now());
  }

  absl::StatusOr<std::string> Start() override;
  void Drain(absl::Time deadline) override;
  int open_connections() const override {
    return static_cast<int>(open_gauge_.Value());
  }

 private:
  Counter& Handshakes(absl::string_view result) {
    return registry_.GetCounter(
        "parley_gateway_handshakes_total",
        "WebSocket handshakes by result (ok or the failure reason).",
        {{"result", std::string(result)}});
  }
  Counter& Refused(absl::string_view reason) {
    return registry_.GetCounter(
        "parley_gateway_frames_refused_total",
        "Client frames refused with an error frame, by reason: rate_limit "
        "(RATE_LIMITED) or backpressure (BACKPRESSURE).",
        {{"reason", std::string(reason)}});
  }
  Counter& Closes(uint16_t code) {
    return registry_.GetCounter("parley_gateway_closes_total",
                                "Closed WebSockets by close code.",
                                {{"code", absl::StrCat(code)}});
  }
  std::shared_ptr<Conn> Find(const Hdl& hdl) {
    ConnectionPtr con = endpoint_.get_con_from_hdl(hdl);
    absl::MutexLock lock(&mu_);
    auto it = connections_.find(con.get());
    return it == connections_.end() ? nullptr : it->second;
  }
  std::shared_ptr<Conn> Erase(const Hdl& hdl) {
    ConnectionPtr con = endpoint_.get_con_from_hdl(hdl);
    absl::MutexLock lock(&mu_);
    auto it = connections_.find(con.get());
    if (it == connections_.end()) return nullptr;
    auto conn = std::move(it->second);
    connections_.erase(it);
    return conn;
  }

  // Runs `fn`, turning any exception into a log line and a closed
  // connection: exceptions never cross a websocketpp callback.
  template <typename Fn>
  void Guard(const Hdl& hdl, absl::string_view what, Fn&& fn) noexcept {
    try {
      fn();
    } catch (const std::exception& e) {
      LogError("gateway.handler_exception",
               {{"handler", what}, {"what", e.what()}});
      websocketpp::lib::error_code ec;
      endpoint_.close(hdl, websocketpp::close::status::internal_endpoint_error,
                      "internal error", ec);
    }
  }

  void OnTcpPreInit(Hdl hdl);
  bool OnValidate(Hdl hdl);
  void OnOpen(Hdl hdl);
  void OnMessage(Hdl hdl, typename Endpoint::message_ptr msg);
  void OnClose(Hdl hdl);
  void OnFail(Hdl hdl);
  void OnHttp(Hdl hdl);
  // One timer for every connection's heartbeat (a timer per connection
  // would cost ~0.5 KiB each). It ticks HeartbeatSlices() times per ping
  // interval, and each tick pings the open connections of one slice (dealt
  // round-robin as they open): every connection is pinged once per
  // interval, and a gateway holding many does not post all their pings,
  // and allocate their frames, in the same instant. Each tick also closes
  // the connections whose pong is overdue: a peer that stops answering is
  // closed between pong_timeout and pong_timeout plus a tick after its ping.
  void ArmHeartbeat();
  // wss: a context with --tls_cert and --tls_key, the files' identity, and
  // the periodic check that swaps in a renewed pair.
  absl::StatusOr<std::shared_ptr<asio::ssl::context>> MakeTlsContext() const;
  // OpenSSL's certificate callback: the pair in force, on `ssl`. 1 on
  // success.
  int UseCurrentCertificate(SSL* ssl);
  std::string TlsStamp() const;
  void ArmTlsReload();
  absl::Status LoadWebRoot();
  std::string NextSessionId() {
    return absl::StrCat(id_prefix_, next_session_.fetch_add(1) + 1);
  }

  const WsServerOptions options_;
  UpstreamLink* const link_;
  Registry& registry_;
  Endpoint endpoint_;
  // After endpoint_: destroyed before the io_context it runs on.
  std::unique_ptr<asio::steady_timer> heartbeat_;
  // wss: the certificate in force for new connections, and what its files
  // looked like when it was loaded (TlsStamp). The stamp and the timer are
  // used on the io thread that runs the reload only.
  absl::Mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_context_ ABSL_GUARDED_BY(tls_mu_);
  // The context every connection is made with (options, and the callback
  // that takes tls_context_'s pair at each handshake).
  std::shared_ptr<asio::ssl::context> tls_base_;
  std::string tls_stamp_;
  std::unique_ptr<asio::steady_timer> tls_timer_;
  std::vector<std::thread> threads_;
  std::string id_prefix_;
  // What open connections' URIs are replaced with (see ReleaseHandshake).
  const websocketpp::uri_ptr blank_uri_ =
      std::make_shared<websocketpp::uri>("ws://parley/");
  std::atomic<uint64_t> next_session_{0};
  std::atomic<bool> draining_{false};
  bool started_ = false;
  // Path -> (content type, body).
  std::unordered_map<std::string, std::pair<std::string, std::string>> files_;

  absl::Mutex mu_;
  // Connections past validation, keyed by the websocketpp connection.
  std::unordered_map<const void*, std::shared_ptr<Conn>> connections_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_heartbeat_slice_ ABSL_GUARDED_BY(mu_) = 0;
  // The heartbeat's ticks so far; its timer's handler only.
  uint64_t heartbeat_ticks_ = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  Gauge& open_gauge_;
  Counter& frames_in_;
  Counter& frames_out_;
  Counter& bytes_in_;
  Counter& bytes_out_;
  Histogram& ack_latency_;
  Histogram& delivery_latency_;
  // Present from the start (zero), not only after the first event.
  Counter& refused_rate_;
  Counter& refused_backpressure_;
  Counter& slow_consumer_closes_;
  Counter& pong_timeouts_;
  // Shared with the metrics callback, which may outlive the server.
  const std::shared_ptr<HeldBudget> held_budget_;
};

template <typename Config>
absl::Status ServerImpl<Config>::LoadWebRoot() {
  if (options_.web_root.empty()) return absl::OkStatus();
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path root = fs::canonical(options_.web_root, ec);
  if (ec || !fs::is_directory(root)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--web_root \"", options_.web_root, "\" is not a directory"));
  }
  constexpr size_t kMaxTotal = 64 << 20;
  size_t total = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root, ec)) {
    if (!entry.is_regular_file() ||
        !IsPageAsset(fs::relative(entry.path(), root))) {
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream body;
    body << in.rdbuf();
    total += body.str().size();
    if (total > kMaxTotal) {
      return absl::ResourceExhaustedError(
          absl::StrCat("--web_root holds more than ", kMaxTotal, " bytes"));
    }
    const std::string rel =
        "/" + fs::relative(entry.path(), root).generic_string();
    files_[rel] = {ContentType(rel), body.str()};
  }
  auto index = files_.find("/index.html");
  if (index != files_.end()) files_["/"] = index->second;
  LogInfo("gateway.web_root",
          {{"dir", root.string()}, {"files", files_.size()}});
  return absl::OkStatus();
}

template <typename Config>
absl::StatusOr<std::string> ServerImpl<Config>::Start() {
  absl::Status loaded = LoadWebRoot();
  if (!loaded.ok()) return loaded;
  absl::StatusOr<asio::ip::tcp::endpoint> address =
      ParseListenAddress(options_.listen_address);
  if (!address.ok()) return address.status();

  websocketpp::lib::error_code ec;
  endpoint_.init_asio(ec);
  if (ec) return absl::InternalError("init_asio: " + ec.message());
  started_ = true;
  if constexpr (kTls) {
    tls_stamp_ = TlsStamp();
    absl::StatusOr<std::shared_ptr<asio::ssl::context>> context =
        MakeTlsContext();
    if (!context.ok()) return context.status();
    {
      absl::MutexLock lock(&tls_mu_);
      tls_context_ = *std::move(context);
    }
    // websocketpp prepares each connection (and its SSL object) before a
    // client arrives, so the certificate is chosen later, per handshake:
    // the connections' context hands every handshake the pair loaded last.
    tls_base_ = *MakeTlsContext();
    SSL_CTX_set_cert_cb(
        tls_base_->native_handle(),
        +[](SSL* ssl, void* self) {
          return static_cast<ServerImpl*>(self)->UseCurrentCertificate(ssl);
        },
        this);
    endpoint_.set_tls_init_handler([this](Hdl) { return tls_base_; });
  }
  endpoint_.clear_access_channels(websocketpp::log::alevel::all);
  endpoint_.clear_error_channels(websocketpp::log::elevel::all);
  if (options_.access_log) {
    endpoint_.set_access_channels(websocketpp::log::alevel::connect |
                                  websocketpp::log::alevel::disconnect);
  }
  endpoint_.set_open_handshake_timeout(options_.handshake_timeout.count());
  endpoint_.set_close_handshake_timeout(options_.close_timeout.count());
  endpoint_.set_max_message_size(options_.max_message_bytes);
  endpoint_.set_max_http_body_size(64 * 1024);
  endpoint_.set_listen_backlog(options_.listen_backlog);
  endpoint_.set_reuse_addr(true);
  endpoint_.set_user_agent("parley-gateway");

  using websocketpp::lib::placeholders::_1;
  using websocketpp::lib::placeholders::_2;
  endpoint_.set_tcp_pre_init_handler([this](Hdl h) { OnTcpPreInit(h); });
  endpoint_.set_validate_handler([this](Hdl h) { return OnValidate(h); });
  endpoint_.set_open_handler([this](Hdl h) { OnOpen(h); });
  endpoint_.set_message_handler(
      [this](Hdl h, typename Endpoint::message_ptr m) { OnMessage(h, m); });
  endpoint_.set_close_handler([this](Hdl h) { OnClose(h); });
  endpoint_.set_fail_handler([this](Hdl h) { OnFail(h); });
  endpoint_.set_http_handler([this](Hdl h) { OnHttp(h); });
  endpoint_.set_pong_handler([this](Hdl h, std::string) {
    Guard(h, "pong", [&] {
      if (auto conn = Find(h)) conn->OnPong();
    });
  });

  endpoint_.listen(*address, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options_.listen_address, ": ", ec.message()));
  }
  endpoint_.start_accept(ec);
  if (ec) return absl::InternalError("start_accept: " + ec.message());
  asio::error_code aec;
  asio::ip::tcp::endpoint bound = endpoint_.get_local_endpoint(aec);
  if (aec) return absl::InternalError("local endpoint: " + aec.message());

  heartbeat_ = std::make_unique<asio::steady_timer>(endpoint_.get_io_service());
  ArmHeartbeat();
  tls_timer_ = std::make_unique<asio::steady_timer>(endpoint_.get_io_service());
  if (kTls && options_.tls_reload_interval.count() > 0) ArmTlsReload();

  int threads = options_.io_threads;
  if (threads == 0) {
    threads = std::max(1u, std::thread::hardware_concurrency());
  }
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      // Handlers catch their own exceptions; this is the last line.
      while (true) {
        try {
          endpoint_.run();
          return;
        } catch (const std::exception& e) {
          LogError("gateway.io_exception", {{"what", e.what()}});
        }
      }
    });
  }
  LogInfo("gateway.origins",
          {{"allowed", options_.allowed_origins.empty()
                           ? std::string("*")
                           : absl::StrJoin(options_.allowed_origins, ",")},
           {"require_origin", options_.require_origin ? 1 : 0}});
  const std::string host =
      bound.address().is_v6()
          ? absl::StrCat("[", bound.address().to_string(), "]")
          : bound.address().to_string();
  return absl::StrCat(host, ":", bound.port());
}

template <typename Config>
void ServerImpl<Config>::OnTcpPreInit(Hdl hdl) {
  Guard(hdl, "tcp_pre_init", [&] {
    ConnectionPtr con = endpoint_.get_con_from_hdl(hdl);
    asio::error_code ec;
    con->get_raw_socket().set_option(asio::ip::tcp::no_delay(true), ec);
    // While draining, websocketpp's stop_listening() races its own accept
    // loop for a moment (accepts on the closed acceptor fail with EBADF):
    // nothing worth logging.
    if (ec && !draining_.load()) {
      LogWarn("gateway.nodelay_failed",
              {{"peer", con->get_remote_endpoint()}, {"error", ec.message()}});
    }
  });
}

template <typename Config>
bool ServerImpl<Config>::OnValidate(Hdl hdl) {
  bool accepted = false;
  Guard(hdl, "validate", [&] {
    ConnectionPtr con = endpoint_.get_con_from_hdl(hdl);
    auto reject = [&](websocketpp::http::status_code::value status,
                      absl::string_view reason, absl::string_view body) {
      con->set_status(status);
      con->set_body(std::string(body));
      Handshakes(reason).Increment();
    };
    if (draining_.load()) {
      reject(websocketpp::http::status_code::service_unavailable, "draining",
             "draining\n");
      return;
    }
    if (con->get_request_header("Sec-WebSocket-Version") != "13") {
      con->replace_header("Sec-WebSocket-Version", "13");
      reject(websocketpp::http::status_code::upgrade_required, "version",
             "only WebSocket version 13 is supported\n");
      return;
    }
    const std::string& origin = con->get_origin();
    if (origin.empty() && options_.require_origin) {
      reject(websocketpp::http::status_code::forbidden, "origin",
             "an Origin header is required\n");
      return;
    }
    if (!origin.empty() && !options_.allowed_origins.empty() &&
        std::find(options_.allowed_origins.begin(),
                  options_.allowed_origins.end(),
                  origin) == options_.allowed_origins.end()) {
      reject(websocketpp::http::status_code::forbidden, "origin",
             "origin not allowed\n");
      return;
    }
    Encoding encoding = Encoding::kJson;
    const auto& requested = con->get_requested_subprotocols();
    if (!requested.empty()) {
      bool found = false;
      for (const std::string& name : requested) {
        absl::StatusOr<Encoding> e = EncodingForSubprotocol(name);
        if (e.ok()) {
          encoding = *e;
          con->select_subprotocol(name);
          found = true;
          break;
        }
      }
      if (!found) {
        reject(websocketpp::http::status_code::bad_request, "subprotocol",
               absl::StrCat("unsupported subprotocol; use ", kJsonSubprotocol,
                            " or ", kProtoSubprotocol, "\n"));
        return;
      }
    }
    auto conn = std::make_shared<Conn>(
        con, encoding, con->get_remote_endpoint(), frames_out_, bytes_out_);
    absl::MutexLock lock(&mu_);
    if (static_cast<int>(connections_.size()) >= options_.max_connections) {
      reject(websocketpp::http::status_code::service_unavailable, "capacity",
             "too many connections\n");
      return;
    }
    conn->heartbeat_slice_ = static_cast<int>(
        next_heartbeat_slice_++ % HeartbeatSlices(options_.ping_interval));
    connections_[con.get()] = std::move(conn);
    accepted = true;
  });
  return accepted;
}

template <typename Config>
void ServerImpl<Config>::OnOpen(Hdl hdl) {
  Guard(hdl, "open", [&] {
    std::shared_ptr<Conn> conn = Find(hdl);
    if (conn == nullptr) return;
    Handshakes("ok").Increment();
    open_gauge_.Add(1);
    const std::string id = NextSessionId();
    conn->session_ = std::make_unique<Session>(
        options_.session, id, conn->encoding(), conn->peer(), conn.get(), link_,
        [] { return absl::Now(); },
        SessionObserver{[this](absl::Duration d) {
                          ack_latency_.Observe(absl::ToDoubleSeconds(d));
                        },
                        [this](absl::Duration d) {
                          delivery_latency_.Observe(absl::ToDoubleSeconds(d));
                        },
                        [this](absl::string_view reason) {
                          (reason == "rate_limit" ? refused_rate_
                                                  : refused_backpressure_)
                              .Increment();
                        },
                        [this] { slow_consumer_closes_.Increment(); }},
        held_budget_.get());
    link_->Attach(id, conn);

    std::weak_ptr<Conn> weak = conn;
    conn->auth_timer_ = conn->con()->set_timer(
        options_.auth_timeout.count(),
        [weak](const websocketpp::lib::error_code& ec) {
          auto c = weak.lock();
          if (ec || c == nullptr || c->closed_) return;
          NoThrow("auth_timer", c->peer(),
                  [&] { c->session_->OnAuthDeadline(); });
        });

    const auto query = ParseQuery(conn->con()->get_resource());
    ConnectParams params;
    if (auto it = query.find("token"); it != query.end())
      params.token = it->second;
    if (auto it = query.find("device"); it != query.end()) {
      params.device = it->second;
    }
    if (auto it = query.find("inboxSeq"); it != query.end()) {
      uint64_t inbox_seq = 0;
      if (absl::SimpleAtoi(it->second, &inbox_seq)) {
        params.inbox_seq = inbox_seq;
      } else {
        params.inbox_seq_invalid = true;
      }
    }
    if (auto it = query.find("storeGeneration"); it != query.end()) {
      params.store_generation = it->second;
    }
    conn->session_->Start(params);
    ReleaseHandshake(*conn->con(), blank_uri_);
  });
}

template <typename Config>
absl::StatusOr<std::shared_ptr<asio::ssl::context>>
ServerImpl<Config>::MakeTlsContext() const {
  auto context =
      std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  asio::error_code tls_ec;
  context->set_options(
      asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
          asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
          asio::ssl::context::no_tlsv1_1,
      tls_ec);
  if (!tls_ec) {
    context->use_certificate_chain_file(options_.tls_cert_file, tls_ec);
  }
  if (tls_ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_cert \"", options_.tls_cert_file, "\": ", tls_ec.message()));
  }
  context->use_private_key_file(options_.tls_key_file, asio::ssl::context::pem,
                                tls_ec);
  if (tls_ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key \"", options_.tls_key_file, "\": ", tls_ec.message()));
  }
  return context;
}

template <typename Config>
int ServerImpl<Config>::UseCurrentCertificate(SSL* ssl) {
  std::shared_ptr<asio::ssl::context> current;
  {
    absl::MutexLock lock(&tls_mu_);
    current = tls_context_;
  }
  SSL_CTX* ctx = current->native_handle();
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx, &chain);
  return SSL_use_cert_and_key(ssl, SSL_CTX_get0_certificate(ctx),
                              SSL_CTX_get0_privatekey(ctx), chain,
                              /*override=*/1);
}

template <typename Config>
std::string ServerImpl<Config>::TlsStamp() const {
  std::string stamp;
  for (const std::string& path :
       {options_.tls_cert_file, options_.tls_key_file}) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0) {
      absl::StrAppend(&stamp, st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":",
                      st.st_size, ":", st.st_ino, ";");
    } else {
      absl::StrAppend(&stamp, "missing;");
    }
  }
  return stamp;
}

template <typename Config>
void ServerImpl<Config>::ArmTlsReload() {
  tls_timer_->expires_after(options_.tls_reload_interval);
  tls_timer_->async_wait([this](const asio::error_code& ec) {
    if (ec || draining_.load()) return;
    NoThrow("tls_reload", "", [&] {
      const std::string stamp = TlsStamp();
      if (stamp != tls_stamp_) {
        // Not retried until the files change again.
        tls_stamp_ = stamp;
        absl::StatusOr<std::shared_ptr<asio::ssl::context>> context =
            MakeTlsContext();
        if (context.ok()) {
          absl::MutexLock lock(&tls_mu_);
          tls_context_ = *std::move(context);
          LogInfo("gateway.tls_reloaded", {{"cert", options_.tls_cert_file}});
        } else {
          LogWarn("gateway.tls_reload_failed",
                  {{"reason", context.status().message()},
                   {"keeping", "the certificate loaded before"}});
        }
      }
      ArmTlsReload();
    });
  });
}

template <typename Config>
void ServerImpl<Config>::ArmHeartbeat() {
  const int slices = HeartbeatSlices(options_.ping_interval);
  heartbeat_->expires_after(options_.ping_interval / slices);
  heartbeat_->async_wait([this, slices](const asio::error_code& ec) {
    if (ec || draining_.load()) return;
    NoThrow("heartbeat", "", [&] {
      const int slice = static_cast<int>(heartbeat_ticks_++ % slices);
      const int64_t now_ns =
          Conn::SteadyNanos(std::chrono::steady_clock::now());
      std::vector<std::shared_ptr<Conn>> due, overdue;
      {
        absl::MutexLock lock(&mu_);
        due.reserve(connections_.size() / slices + 1);
        for (auto& [key, conn] : connections_) {
          if (conn->heartbeat_slice_ == slice) due.push_back(conn);
          if (conn->TakeOverduePong(now_ns)) overdue.push_back(conn);
        }
      }
      for (auto& conn : overdue) conn->PostPongTimeout(pong_timeouts_);
      for (auto& conn : due) conn->PostPing(options_.pong_timeout);
      ArmHeartbeat();
    });
  });
}

template <typename Config>
void ServerImpl<Config>::OnMessage(Hdl hdl,
                                   typename Endpoint::message_ptr msg) {
  Guard(hdl, "message", [&] {
    std::shared_ptr<Conn> conn = Find(hdl);
    if (conn == nullptr || conn->session_ == nullptr) return;
    frames_in_.Increment();
    bytes_in_.Increment(msg->get_payload().size());
    const bool binary = msg->get_opcode() == websocketpp::frame::opcode::binary;
    if (const std::optional<MessageClose> close =
            CheckClientMessage(msg->get_payload(), binary)) {
      conn->session_->Shutdown(close->code, close->reason);
      return;
    }
    conn->session_->OnClientMessage(msg->get_payload(), binary);
    conn->ReleaseAuthTimerIfLive();
  });
}

template <typename Config>
void ServerImpl<Config>::OnClose(Hdl hdl) {
  Guard(hdl, "close", [&] {
    std::shared_ptr<Conn> conn = Erase(hdl);
    if (conn == nullptr) return;
    conn->closed_ = true;
    if (conn->auth_timer_) conn->auth_timer_->cancel();
    const ConnectionPtr& con = conn->con();
    const uint16_t code = conn->close_code_ != 0 ? conn->close_code_
                                                 : con->get_remote_close_code();
    Closes(code).Increment();
    if (conn->session_ != nullptr) {
      conn->session_->OnConnectionClosed(
          absl::StrCat(conn->close_code_ != 0 ? "gateway" : "client",
                       " closed ", code, " ", con->get_remote_close_reason()));
      link_->Detach(conn->session_->session_id());
      open_gauge_.Add(-1);
    }
  });
}

template <typename Config>
void ServerImpl<Config>::OnFail(Hdl hdl) {
  Guard(hdl, "fail", [&] {
    ConnectionPtr con = endpoint_.get_con_from_hdl(hdl);
    std::shared_ptr<Conn> conn = Erase(hdl);
    const websocketpp::lib::error_code ec = con->get_ec();
    if (conn != nullptr && conn->session_ != nullptr) {
      // Failed after open (e.g. the socket broke): same as a close.
      conn->closed_ = true;
      if (conn->auth_timer_) conn->auth_timer_->cancel();
      conn->session_->OnConnectionClosed("connection failed: " + ec.message());
      link_->Detach(conn->session_->session_id());
      open_gauge_.Add(-1);
      Closes(1006).Increment();
      return;
    }
    // Rejections were counted in OnValidate; an HTTP request ends here too.
    // While draining, aborted accepts end here (see OnTcpPreInit).
    if (!ec || draining_.load() ||
        ec ==
            websocketpp::error::make_error_code(websocketpp::error::rejected) ||
        ec == websocketpp::error::make_error_code(
                  websocketpp::error::http_connection_ended)) {
      return;
    }
    const bool timeout = ec == websocketpp::error::make_error_code(
                                   websocketpp::error::open_handshake_timeout);
    Handshakes(timeout ? "timeout" : "error").Increment();
    LogInfo("gateway.handshake_failed",
            {{"peer", con->get_remote_endpoint()}, {"error", ec.message()}});
  });
}

template <typename Config>
void ServerImpl<Config>::OnHttp(Hdl hdl) {
  Guard(hdl, "http", [&] {
    ConnectionPtr con = endpoint_.get_con_from_hdl(hdl);
    std::string path = con->get_resource();
    if (size_t q = path.find('?'); q != std::string::npos) path.resize(q);
    if (path == "/healthz") {
      con->set_status(websocketpp::http::status_code::ok);
      con->replace_header("Content-Type", "text/plain");
      con->set_body("ok\n");
      return;
    }
    if (path == "/readyz") {
      const bool ready = !draining_.load() && link_->Ready();
      con->set_status(
          ready ? websocketpp::http::status_code::ok
                : websocketpp::http::status_code::service_unavailable);
      con->replace_header("Content-Type", "text/plain");
      con->set_body(ready ? "ready\n" : "not ready\n");
      return;
    }
    auto it = files_.find(path);
    if (it == files_.end()) {
      con->set_status(websocketpp::http::status_code::not_found);
      con->replace_header("Content-Type", "text/plain");
      con->set_body("not found\n");
      return;
    }
    con->set_status(websocketpp::http::status_code::ok);
    con->replace_header("Content-Type", it->second.first);
    con->set_body(it->second.second);
  });
}

template <typename Config>
void ServerImpl<Config>::Drain(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  draining_.store(true);
  if (!threads_.empty()) {
    // The acceptor belongs to the io_context: close it from there.
    auto stopped_listening = std::make_shared<absl::Notification>();
    asio::post(endpoint_.get_io_service(), [this, stopped_listening] {
      websocketpp::lib::error_code ec;
      endpoint_.stop_listening(ec);
      heartbeat_->cancel();
      tls_timer_->cancel();
      stopped_listening->Notify();
    });
    stopped_listening->WaitForNotificationWithDeadline(deadline);

    std::vector<std::shared_ptr<Conn>> all;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [key, conn] : connections_) all.push_back(conn);
    }
    LogInfo("gateway.draining", {{"connections", all.size()}});
    for (auto& conn : all) {
      conn->Post([](Session& s) { s.Shutdown(kCloseGoingAway, "going away"); });
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(
        absl::Condition(
            +[](std::unordered_map<const void*, std::shared_ptr<Conn>>* m) {
              return m->empty();
            },
            &connections_),
        deadline);
  }
  endpoint_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  absl::MutexLock lock(&mu_);
  // Break the connection <-> handler cycles of anything left.
  connections_.clear();
}

WsServer::WsServer(WsServerOptions options, UpstreamLink* link,
                   Registry& registry) {
  if (options.tls_cert_file.empty()) {
    impl_ = std::make_unique<ServerImpl<PlainConfig>>(std::move(options), link,
                                                      registry);
  } else {
    impl_ = std::make_unique<ServerImpl<TlsConfig>>(std::move(options), link,
                                                    registry);
  }
}

WsServer::~WsServer() = default;

absl::StatusOr<std::string> WsServer::Start() { return impl_->Start(); }

void WsServer::Drain(absl::Time deadline) { impl_->Drain(deadline); }

int WsServer::open_connections() const { return impl_->open_connections(); }

}  // namespace parley::gateway
