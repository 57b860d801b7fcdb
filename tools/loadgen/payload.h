// The measurement payload carried in every message text: who sent it, its
// sequence number and the send time, so the receiving side of the same load
// generator can compute end-to-end latency on one clock (CLOCK_MONOTONIC is
// shared by every process on the machine) and match it to its sender.
//
//   "lg 12 345 987654321 xxxx"  = sender 12, seq 345, sent at 987654321 ns,
//                                 padded with 'x' to the requested size.
//
// The client id of a send ("<seq>.<nanos>") carries the send time too, so an
// Ack's latency needs no lookup. Thread-safe: pure functions.
#ifndef PARLEY_TOOLS_LOADGEN_PAYLOAD_H_
#define PARLEY_TOOLS_LOADGEN_PAYLOAD_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace parley::loadgen {

struct PayloadInfo {
  int64_t sender = 0;
  uint64_t seq = 0;
  int64_t sent_nanos = 0;
};

// At least `min_size` bytes (padded), never less than the header.
std::string FormatPayload(const PayloadInfo& info, size_t min_size);
// nullopt when `text` is not a load generator payload.
std::optional<PayloadInfo> ParsePayload(absl::string_view text);

std::string FormatClientId(uint64_t seq, int64_t sent_nanos);
// The send time in a client id; nullopt if it is not one of ours.
std::optional<int64_t> ClientIdSentNanos(absl::string_view client_id);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_PAYLOAD_H_
