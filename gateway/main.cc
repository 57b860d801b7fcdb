// parley-gateway: terminates client WebSockets and multiplexes their sessions
// over GatewayLink streams to parley-service. See gateway/ws_server.h,
// gateway/session.h and gateway/upstream_link.h; flags in gateway_flags.cc.
//
// Signals: SIGTERM and SIGINT start a drain (stop accepting, close clients
// with 1001, flush the upstream) that ends within --drain_timeout; a second
// signal during the drain is ignored. They are blocked in every thread and
// taken synchronously here with sigwait(), so no handler runs in signal
// context.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/build_info.h"
#include "common/config.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/termination_signals.h"
#include "gateway/gateway_flags.h"
#include "gateway/upstream_link.h"
#include "gateway/ws_server.h"

int main(int argc, char** argv) {
  parley::ParseConfig(
      argc, argv,
      "parley-gateway: WebSocket gateway for Parley.\n"
      "Every flag can also be set as PARLEY_<FLAG NAME IN UPPER CASE>.");
  absl::StatusOr<parley::gateway::GatewayConfig> config =
      parley::gateway::GatewayConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "parley-gateway: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }

  // Before any thread exists, so every thread inherits the blocked mask.
  const parley::TerminationSignals signals;

  parley::Registry& registry = parley::DefaultRegistry();
  parley::AddProcessMetrics(registry);
  parley::ExportBuildInfo(registry);

  parley::gateway::UpstreamLink link(config->upstream, registry);
  parley::gateway::WsServer server(config->server, &link, registry);
  absl::StatusOr<std::string> address = server.Start();
  if (!address.ok()) {
    parley::LogError("gateway.start_failed",
                     {{"error", address.status().message()}});
    return 1;
  }
  std::string gateway_id = config->upstream.gateway_id;
  if (gateway_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    gateway_id =
        absl::StrCat(host, ":", address->substr(address->rfind(':') + 1));
  }
  link.Start(gateway_id);
  // /metrics on a listener of its own, never on the public port.
  std::unique_ptr<parley::HttpServer> metrics;
  std::string metrics_address = "-";
  if (!config->metrics_address.empty()) {
    metrics = std::make_unique<parley::HttpServer>(
        [&registry, &link](absl::string_view path) {
          if (path == "/metrics") {
            return parley::HttpResponse{200, "text/plain; version=0.0.4",
                                        registry.Render()};
          }
          if (path == "/healthz") {
            return parley::HttpResponse{200, "text/plain", "ok\n"};
          }
          // As on the public port, for probes that should not speak TLS.
          if (path == "/readyz") {
            return link.Ready()
                       ? parley::HttpResponse{200, "text/plain", "ready\n"}
                       : parley::HttpResponse{503, "text/plain", "not ready\n"};
          }
          return parley::HttpResponse{404, "text/plain", "not found\n"};
        });
    absl::StatusOr<std::string> bound = metrics->Start(config->metrics_address);
    if (!bound.ok()) {
      parley::LogError("gateway.start_failed",
                       {{"error", bound.status().message()}});
      return 1;
    }
    metrics_address = *bound;
  }
  parley::LogInfo(
      "gateway.ready",
      {{"address", *address},
       {"metrics_address", metrics_address},
       {"gateway_id", gateway_id},
       {"service_address", config->upstream.service_address},
       {"replicas", absl::StrJoin(link.Replicas(), ",")},
       {"tls", config->server.tls_cert_file.empty() ? "false" : "true"},
       {"streams", config->upstream.streams}});

  const int signal_number = signals.Wait();
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + config->drain_timeout;
  parley::LogInfo(
      "gateway.drain",
      {{"signal", signal_number},
       {"open_connections", server.open_connections()},
       {"deadline_ms", absl::ToInt64Milliseconds(config->drain_timeout)}});
  // Leave a fifth of the time for the upstream flush.
  server.Drain(start + config->drain_timeout * 4 / 5);
  link.Shutdown(std::max(deadline - absl::Now(), absl::ZeroDuration()));
  if (metrics != nullptr) metrics->Stop();
  parley::LogInfo(
      "gateway.stopped",
      {{"drain_ms", absl::ToInt64Milliseconds(absl::Now() - start)}});
  return 0;
}
