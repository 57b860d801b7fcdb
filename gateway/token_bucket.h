// TokenBucket: a rate limiter with a burst, driven by the caller's clock.
//
// Used by Session for the per-connection inbound frame and byte rates and for
// the error budget that turns sustained abuse into a 1008 close. The caller
// passes the current time, so tests need no sleeps.
//
//   TokenBucket bucket(/*rate_per_second=*/50, /*burst=*/100, now);
//   if (!bucket.TryTake(now)) { ... reject ... }
//
// Thread-compatible: one owner (a Session, on its connection's executor).
#ifndef PARLEY_GATEWAY_TOKEN_BUCKET_H_
#define PARLEY_GATEWAY_TOKEN_BUCKET_H_

#include <algorithm>

#include "absl/time/time.h"

namespace parley::gateway {

class TokenBucket final {
 public:
  // Starts full. `rate_per_second` >= 0 refills; `burst` >= 1 is the size.
  TokenBucket(double rate_per_second, double burst, absl::Time now)
      : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}

  // Takes `n` tokens if there are that many (none otherwise).
  bool TryTake(absl::Time now, double n = 1.0) {
    Refill(now);
    if (tokens_ < n) return false;
    tokens_ -= n;
    return true;
  }

  // Tokens available at `now` (for tests and metrics).
  double Available(absl::Time now) {
    Refill(now);
    return tokens_;
  }

 private:
  void Refill(absl::Time now) {
    if (now > last_) {
      tokens_ = std::min(burst_,
                         tokens_ + rate_ * absl::ToDoubleSeconds(now - last_));
      last_ = now;
    }
  }

  const double rate_;
  const double burst_;
  double tokens_;
  absl::Time last_;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_TOKEN_BUCKET_H_
