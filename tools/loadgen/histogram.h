// LatencyHistogram: a fixed-memory log-linear histogram of durations, for the
// load generator's end-to-end, ack and handshake latencies.
//
// Values are nanoseconds. Buckets are exact below 1 us; above, each power of
// two is split into 64 linear sub-buckets, so any reported percentile is
// within 1/64 (1.6%) of a recorded value. Max and min are exact. Recording is
// O(1) with no allocation, so it can sit on the receive path.
//
//   LatencyHistogram h;
//   h.Record(absl::ToInt64Nanoseconds(latency));
//   int64_t p99 = h.Percentile(99.0);
//
// Thread-compatible: one histogram per thread, Merge() them afterwards.
#ifndef PARLEY_TOOLS_LOADGEN_HISTOGRAM_H_
#define PARLEY_TOOLS_LOADGEN_HISTOGRAM_H_

#include <array>
#include <cstdint>

namespace parley::loadgen {

class LatencyHistogram final {
 public:
  LatencyHistogram();

  // Records one value; negative values count as 0.
  void Record(int64_t nanos);
  // Adds every value recorded in `other`.
  void Merge(const LatencyHistogram& other);
  // Forgets everything.
  void Reset();

  int64_t count() const { return count_; }
  // 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double Mean() const;

  // The smallest value v such that at least `percent`% of the recorded values
  // are <= v (reported as the upper edge of v's bucket, capped at max()).
  // 0 when empty. `percent` is clamped to [0, 100].
  int64_t Percentile(double percent) const;

 private:
  static constexpr int kSubBits = 6;
  static constexpr int kSub = 1 << kSubBits;
  // Values below kSub * 16 ns are exact; 58 octaves above cover int64.
  static constexpr int kLinear = kSub * 16;
  static constexpr int kBuckets = kLinear + 58 * kSub;

  static int BucketOf(int64_t nanos);
  static int64_t UpperEdge(int bucket);

  std::array<int64_t, kBuckets> counts_;
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_HISTOGRAM_H_
