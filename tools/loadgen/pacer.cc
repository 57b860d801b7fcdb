#include "tools/loadgen/pacer.h"

#include <cmath>

namespace parley::loadgen {

RatePacer::RatePacer(double per_second, int64_t start_nanos, int64_t max_debt)
    : per_second_(per_second), start_(start_nanos), max_debt_(max_debt) {}

int64_t RatePacer::Due(int64_t now_nanos) {
  if (now_nanos < start_) return 0;
  // Sends scheduled in [start, now]: the one at `start` counts.
  const double elapsed = static_cast<double>(now_nanos - start_) / 1e9;
  const int64_t scheduled =
      static_cast<int64_t>(std::floor(elapsed * per_second_)) + 1;
  int64_t due = scheduled - taken_ - skipped_;
  if (due > max_debt_) {
    skipped_ += due - max_debt_;
    due = max_debt_;
  }
  return due < 0 ? 0 : due;
}

int64_t RatePacer::NextDueNanos() const {
  const double index = static_cast<double>(taken_ + skipped_);
  return start_ + static_cast<int64_t>(std::ceil(index / per_second_ * 1e9));
}

}  // namespace parley::loadgen
