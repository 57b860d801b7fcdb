// Driver: the workloads and the statistics, over N connections of one target
// protocol (protocol.h) carried by WsClient (ws_client.h).
//
// Workloads:
//   pairs  - connections 2i and 2i+1 send to each other: at `rate` messages
//            per second over all senders, or open loop (rate 0) with
//            `inflight` undelivered messages per connection at all times;
//   fanout - connection 0 sends to a group of all connections (the sender
//            excluded from the delivery count); a message stays in flight
//            until every other member has it;
//   churn  - every connection connects, authenticates, closes, reconnects,
//            for `duration`; measures handshakes per second;
//   idle   - connect all, hold them for `hold`, count those still open.
// A message is "in flight" from the send until the recipient connection of
// this same process receives it, so in-flight windows and latencies mean the
// same thing for every target (Parley's acks are reported on their own).
//
// Threading: Run() drives a single-threaded io_context to completion; one
// Driver per process (scale out with processes, as the fd limit demands).
#ifndef PARLEY_TOOLS_LOADGEN_DRIVER_H_
#define PARLEY_TOOLS_LOADGEN_DRIVER_H_

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "asio.hpp"
#include "tools/loadgen/protocol.h"
#include "tools/loadgen/report.pb.h"
#include "tools/loadgen/target_list.h"

namespace parley::loadgen {

struct DriverOptions {
  // "pairs", "fanout", "churn" or "idle".
  std::string workload = "pairs";
  // Where to connect: connection i uses TargetFor(targets, i). Not empty.
  std::vector<Target> targets;
  // Source addresses, used round-robin (127.0.0.1..127.0.0.x to pass ~28k
  // connections per destination). Empty = the kernel's choice.
  std::vector<asio::ip::address> sources;
  // Handshakes in progress at once while connecting.
  int connect_concurrency = 256;
  // Give up on connections not ready after this long.
  std::chrono::milliseconds connect_timeout{60000};
  // Total messages per second over all senders; 0 = open loop.
  double rate = 0;
  // Undelivered messages allowed per sending connection.
  int inflight = 1;
  // Message text size in bytes.
  int payload_bytes = 64;
  // Traffic before the measured window, the window, and the wait for
  // in-flight messages after it.
  std::chrono::milliseconds warmup{1000};
  std::chrono::milliseconds duration{5000};
  std::chrono::milliseconds drain{2000};
  // Idle workload: how long to hold the connections.
  std::chrono::milliseconds hold{10000};
  // Processes whose RSS and CPU time to report; a `tree` one is summed with
  // its descendants (SampleProcessTree).
  struct Watched {
    std::string name;
    int pid = 0;
    bool tree = false;
  };
  std::vector<Watched> watch;
  // Client index of spec 0, so several generator processes use distinct
  // senders in their payloads.
  int64_t index_offset = 0;
};

// Runs `options.workload` with one connection per spec and returns the
// report. `protocol` must outlive the call.
absl::StatusOr<Report> RunWorkload(const DriverOptions& options,
                                   const Protocol& protocol,
                                   const std::vector<SessionSpec>& specs);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_DRIVER_H_
