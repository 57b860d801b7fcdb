#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <cmath>

namespace parley::loadgen {

LatencyHistogram::LatencyHistogram() { Reset(); }

void LatencyHistogram::Reset() {
  counts_.fill(0);
  count_ = 0;
  min_ = 0;
  max_ = 0;
  sum_ = 0;
}

int LatencyHistogram::BucketOf(int64_t nanos) {
  if (nanos < kLinear) return static_cast<int>(nanos);
  // octave 0 is [kLinear, 2*kLinear), each split into kSub buckets.
  const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(nanos));
  const int base_msb = 63 - __builtin_clzll(static_cast<uint64_t>(kLinear));
  const int octave = msb - base_msb;
  const int sub = static_cast<int>((nanos >> (msb - kSubBits)) & (kSub - 1));
  return kLinear + octave * kSub + sub;
}

int64_t LatencyHistogram::UpperEdge(int bucket) {
  if (bucket < kLinear) return bucket;
  const int rel = bucket - kLinear;
  const int octave = rel / kSub;
  const int sub = rel % kSub;
  const int base_msb = 63 - __builtin_clzll(static_cast<uint64_t>(kLinear));
  const int msb = base_msb + octave;
  const int shift = msb - kSubBits;
  const uint64_t low = (uint64_t{1} << msb) | (uint64_t(sub) << shift);
  const uint64_t high = low + (uint64_t{1} << shift) - 1;
  return high > uint64_t(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(high);
}

void LatencyHistogram::Record(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  ++counts_[BucketOf(nanos)];
  if (count_ == 0 || nanos < min_) min_ = nanos;
  if (nanos > max_) max_ = nanos;
  ++count_;
  sum_ += static_cast<double>(nanos);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  if (count_ == 0 || other.min_ < min_) min_ = other.min_;
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

double LatencyHistogram::Mean() const {
  return count_ == 0 ? 0 : sum_ / static_cast<double>(count_);
}

int64_t LatencyHistogram::Percentile(double percent) const {
  if (count_ == 0) return 0;
  percent = std::clamp(percent, 0.0, 100.0);
  // The rank of the value sought, 1-based: ceil(p * n), at least 1.
  int64_t rank = static_cast<int64_t>(
      std::ceil(percent / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(UpperEdge(i), max_);
  }
  return max_;
}

}  // namespace parley::loadgen
