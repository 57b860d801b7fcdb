// ServiceMetrics: the Prometheus metrics of parley-service, looked up once
// from a Registry (the process-wide DefaultRegistry() in production, a fresh
// one per test) and then updated lock-free.
//
// Threading: the references are safe to update from any thread.
#ifndef PARLEY_SERVICE_SERVICE_METRICS_H_
#define PARLEY_SERVICE_SERVICE_METRICS_H_

#include "absl/strings/string_view.h"
#include "common/metrics.h"
#include "parley/v1/client.pb.h"

namespace parley::service {

struct ServiceMetrics {
  explicit ServiceMetrics(Registry& registry);

  // Client frames received by kind ("send", "sync", ...).
  Counter& Frames(absl::string_view kind);
  // Error frames sent to clients, by ErrorCode name.
  Counter& Errors(v1::ErrorCode code);
  // Session opens by result ("accepted" or a RejectReason name).
  Counter& Opens(absl::string_view result);

  Registry& registry;
  Gauge& sessions;
  Gauge& link_streams;
  Counter& sends;
  Counter& acks;
  Counter& duplicate_sends;
  Counter& deliveries;
  Counter& sync_calls;
  Counter& receipts;
  Counter& typing;
  Counter& presence;
  Histogram& append_seconds;
  Histogram& read_seconds;
  Histogram& commit_seconds;
  Histogram& commit_batch_size;
  // WAL checkpoints, by="checkpointer" (alongside appends) and by="writer"
  // (appends wait until the WAL can start over).
  Histogram& checkpointer_seconds;
  Histogram& writer_checkpoint_seconds;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SERVICE_METRICS_H_
