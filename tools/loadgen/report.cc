#include "tools/loadgen/report.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/util/json_util.h"

namespace parley::loadgen {
namespace {

double Ms(int64_t nanos) { return static_cast<double>(nanos) / 1e6; }

void Row(std::string* out, absl::string_view name, absl::string_view value) {
  absl::StrAppendFormat(out, "  %-28s %s\n", name, value);
}

std::string Latency(const LatencySummary& s) {
  return absl::StrFormat(
      "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms  (n=%d)",
      s.p50_ms(), s.p90_ms(), s.p99_ms(), s.p999_ms(), s.max_ms(), s.count());
}

std::string Counts(const google::protobuf::Map<std::string, int64_t>& m) {
  if (m.empty()) return "none";
  // Sorted, so the table is stable from run to run.
  std::map<std::string, int64_t> sorted(m.begin(), m.end());
  std::string out;
  for (const auto& [k, v] : sorted) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", k, "=", v);
  }
  return out;
}

std::string Process(const ProcessStats& p) {
  return absl::StrFormat(
      "pid %d  rss %d -> %d KiB  cpu %.2f s (%.0f%% of a core)", p.pid(),
      p.rss_start_kib(), p.rss_end_kib(), p.cpu_seconds(), p.cpu_percent());
}

}  // namespace

LatencySummary Summarize(const LatencyHistogram& h) {
  LatencySummary s;
  s.set_count(h.count());
  s.set_p50_ms(Ms(h.Percentile(50)));
  s.set_p90_ms(Ms(h.Percentile(90)));
  s.set_p99_ms(Ms(h.Percentile(99)));
  s.set_p999_ms(Ms(h.Percentile(99.9)));
  s.set_max_ms(Ms(h.max()));
  s.set_mean_ms(h.Mean() / 1e6);
  return s;
}

std::string FormatTable(const Report& r) {
  std::string out = absl::StrCat("parley-loadgen: ", r.workload(), " against ",
                                 r.target(), "\n");
  if (r.workload() == "churn") {
    Row(&out, "handshakes / slots",
        absl::StrCat(r.connections_ready(), " / ", r.connections_requested()));
  } else {
    Row(&out, "connections ready",
        absl::StrCat(r.connections_ready(), " / ", r.connections_requested()));
  }
  Row(&out, "handshakes/s",
      absl::StrFormat("%.0f (%.2f s)", r.handshakes_per_second(),
                      r.handshake_seconds()));
  Row(&out, "handshake latency", Latency(r.handshake_latency()));
  if (r.connections_held() > 0) {
    Row(&out, "connections held", absl::StrCat(r.connections_held()));
  }
  if (r.sent() > 0 || r.delivered() > 0) {
    Row(&out, "shape",
        absl::StrFormat(
            "inflight %d, offered %s, group %d, payload %d B", r.inflight(),
            r.offered_rate() > 0 ? absl::StrFormat("%.0f/s", r.offered_rate())
                                 : std::string("open loop"),
            r.group_size(), r.payload_bytes()));
    Row(&out, "window", absl::StrFormat("%.2f s", r.duration_seconds()));
    Row(&out, "sent / delivered",
        absl::StrCat(r.sent(), " / ", r.delivered(), " (undelivered ",
                     r.undelivered(), ", pacer skipped ", r.pacer_skipped(),
                     ")"));
    Row(&out, "delivered msgs/s",
        absl::StrFormat("%.0f", r.delivered_per_second()));
    Row(&out, "end-to-end latency", Latency(r.end_to_end()));
    Row(&out, "acks/s", absl::StrFormat("%.0f", r.acks_per_second()));
    Row(&out, "ack latency", Latency(r.ack_latency()));
  }
  Row(&out, "errors", Counts(r.errors()));
  Row(&out, "closes by code", Counts(r.closes()));
  for (const ProcessStats& p : r.processes()) {
    Row(&out, absl::StrCat("process ", p.name()), Process(p));
  }
  Row(&out, "process loadgen", Process(r.loadgen()));
  return out;
}

std::string FormatJson(const Report& report) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  // Printing a well-formed message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(report, &json, options);
  return json;
}

}  // namespace parley::loadgen
