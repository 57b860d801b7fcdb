// RatePacer: open-loop send schedule for a target rate.
//
// The i-th send is due at start + i / rate, whatever happened to earlier sends
// (an open-loop schedule, so a slow server does not slow the offered load).
// Due() says how many sends are due now and not yet taken; Take() records
// sends made. When the caller cannot send (its in-flight window is full) the
// debt is capped at `max_debt`, so a stall is followed by a bounded burst, not
// by an unbounded catch-up.
//
//   RatePacer pacer(/*per_second=*/1000, start, /*max_debt=*/64);
//   for (int64_t n = pacer.Due(now); n > 0 && CanSend(); --n) { Send();
//   pacer.Take(1); }
//
// Thread-compatible. Time is whatever monotonic nanosecond clock the caller
// uses.
#ifndef PARLEY_TOOLS_LOADGEN_PACER_H_
#define PARLEY_TOOLS_LOADGEN_PACER_H_

#include <cstdint>

namespace parley::loadgen {

class RatePacer final {
 public:
  // `per_second` > 0. `max_debt` >= 1.
  RatePacer(double per_second, int64_t start_nanos, int64_t max_debt);

  // Sends due at `now_nanos` and not yet taken (>= 0, <= max_debt). Skips the
  // schedule forward past sends that exceed the debt cap.
  int64_t Due(int64_t now_nanos);
  // Records `n` sends.
  void Take(int64_t n) { taken_ += n; }
  // When the next send after the ones taken is due.
  int64_t NextDueNanos() const;
  // Sends dropped from the schedule because the debt cap was hit.
  int64_t skipped() const { return skipped_; }

 private:
  double per_second_;
  int64_t start_;
  int64_t max_debt_;
  int64_t taken_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_PACER_H_
