// Conversions between absl::Time and google.protobuf.Timestamp.
//
// Threading: pure functions.
#ifndef PARLEY_SERVICE_TIMESTAMPS_H_
#define PARLEY_SERVICE_TIMESTAMPS_H_

#include <cstdint>

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace parley::service {

// Microsecond precision, which is what the Store keeps.
inline google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  const int64_t us = absl::ToUnixMicros(t);
  int64_t seconds = us / 1000000;
  int64_t micros = us % 1000000;
  if (micros < 0) {
    micros += 1000000;
    --seconds;
  }
  google::protobuf::Timestamp ts;
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(micros * 1000));
  return ts;
}

}  // namespace parley::service

#endif  // PARLEY_SERVICE_TIMESTAMPS_H_
