#include "service/service_metrics.h"

#include <string>

namespace parley::service {
namespace {

Histogram& CheckpointSeconds(Registry& r, absl::string_view by) {
  return r.GetHistogram(
      "parley_service_store_checkpoint_seconds",
      "WAL checkpoints by who ran them: by=\"writer\" is how long appends "
      "waited for the WAL to start over.",
      Histogram::LatencyBuckets(), {{"by", std::string(by)}});
}

}  // namespace

ServiceMetrics::ServiceMetrics(Registry& r)
    : registry(r),
      sessions(r.GetGauge("parley_service_sessions",
                          "Client sessions registered (live or opening).")),
      link_streams(r.GetGauge("parley_service_link_streams",
                              "GatewayLink streams connected.")),
      sends(r.GetCounter("parley_service_sends_total",
                         "Sends accepted for storing (clients and admin).")),
      acks(r.GetCounter("parley_service_acks_total",
                        "Acks sent after a durable store, duplicates too.")),
      duplicate_sends(r.GetCounter(
          "parley_service_duplicate_sends_total",
          "Sends that repeated a (sender, client_msg_id) and stored nothing.")),
      deliveries(r.GetCounter(
          "parley_service_deliveries_total",
          "Inbox messages queued to sessions (live deliveries and replays).")),
      sync_calls(r.GetCounter("parley_service_sync_calls_total",
                              "Sync requests answered.")),
      receipts(r.GetCounter("parley_service_receipts_total",
                            "Read receipts that advanced a cursor.")),
      typing(r.GetCounter("parley_service_typing_total",
                          "Typing notices relayed.")),
      presence(r.GetCounter("parley_service_presence_changes_total",
                            "Users coming online or going offline.")),
      append_seconds(r.GetHistogram(
          "parley_service_store_append_seconds",
          "From submitting an append to its durable commit callback.",
          Histogram::LatencyBuckets())),
      read_seconds(r.GetHistogram(
          "parley_service_store_read_seconds",
          "Store reads on the data plane (inbox head, replay, sync).",
          Histogram::LatencyBuckets())),
      commit_seconds(r.GetHistogram(
          "parley_service_store_commit_seconds",
          "One group commit: the writer's checkpoint if one is due, then BEGIN "
          "to durable COMMIT.",
          Histogram::LatencyBuckets())),
      commit_batch_size(
          r.GetHistogram("parley_service_store_commit_batch_size",
                         "Write operations per group-commit transaction.",
                         Histogram::SizeBuckets())),
      checkpointer_seconds(CheckpointSeconds(r, "checkpointer")),
      writer_checkpoint_seconds(CheckpointSeconds(r, "writer")) {
  // Every error code from the start (zero), so that a rate of refusals
  // (BACKPRESSURE, UNAVAILABLE, ...) can be graphed and alerted on before
  // the first one.
  for (int code = v1::ErrorCode_MIN; code <= v1::ErrorCode_MAX; ++code) {
    if (v1::ErrorCode_IsValid(code) && code != v1::ERROR_CODE_UNSPECIFIED) {
      Errors(static_cast<v1::ErrorCode>(code));
    }
  }
}

Counter& ServiceMetrics::Frames(absl::string_view kind) {
  return registry.GetCounter("parley_service_frames_total",
                             "Client frames received, by kind.",
                             {{"kind", std::string(kind)}});
}

Counter& ServiceMetrics::Errors(v1::ErrorCode code) {
  return registry.GetCounter("parley_service_errors_total",
                             "Error frames sent to clients, by code.",
                             {{"code", v1::ErrorCode_Name(code)}});
}

Counter& ServiceMetrics::Opens(absl::string_view result) {
  return registry.GetCounter("parley_service_session_opens_total",
                             "Session opens, by result.",
                             {{"result", std::string(result)}});
}

}  // namespace parley::service
