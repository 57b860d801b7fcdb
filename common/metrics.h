// A Prometheus text-format (0.0.4) metrics registry: counters, gauges and
// histograms, with labels. Both binaries expose Registry::Render() at
// /metrics.
//
//   Registry& r = parley::DefaultRegistry();
//   Counter& sends = r.GetCounter("parley_sends_total", "Sends accepted.");
//   Counter& closes = r.GetCounter("parley_closes_total", "Closes by code.",
//                                  {{"code", "1001"}});
//   Histogram& lat = r.GetHistogram("parley_store_seconds", "Store latency.",
//                                   Histogram::LatencyBuckets());
//   sends.Increment();  lat.Observe(0.0012);
//
// Threading: Get*() and Render() are thread-safe (a mutex guards the family
// maps). The returned references stay valid for the registry's lifetime, so
// callers look a metric up once and keep the reference; updates on it are
// lock-free atomics, safe from any thread.
#ifndef PARLEY_COMMON_METRICS_H_
#define PARLEY_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace parley {

// Label name/value pairs, e.g. {{"code", "1001"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count.
class Counter final {
 public:
  void Increment(uint64_t n = 1) {
    value_.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge final {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { value_.fetch_add(d, std::memory_order_relaxed); }
  int64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Counts observations into cumulative buckets with upper bounds (le).
class Histogram final {
 public:
  // `bounds` must be strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> bounds);

  void Observe(double value);

  // Seconds, 50 us to 10 s: for latencies.
  static std::vector<double> LatencyBuckets();
  // 1 to 4096 in powers of two: for batch sizes.
  static std::vector<double> SizeBuckets();

  const std::vector<double>& bounds() const { return bounds_; }
  // Per-bucket (non-cumulative) counts; the last is the +Inf bucket.
  std::vector<uint64_t> BucketCounts() const;
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Owns metric families and renders them.
class Registry final {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the metric with this name and labels, creating it on first use.
  // A name is one type; asking for it as another type is a programming error
  // (asserted). `help` is taken from the first call.
  Counter& GetCounter(absl::string_view name, absl::string_view help,
                      const Labels& labels = {});
  Gauge& GetGauge(absl::string_view name, absl::string_view help,
                  const Labels& labels = {});
  Histogram& GetHistogram(absl::string_view name, absl::string_view help,
                          const std::vector<double>& bounds,
                          const Labels& labels = {});

  // Registers a gauge whose value is computed at render time (e.g. RSS).
  void AddCallbackGauge(absl::string_view name, absl::string_view help,
                        std::function<double()> value);

  // The whole registry in Prometheus text format 0.0.4.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram, kCallback };
  struct Family {
    Type type;
    std::string help;
    // Keyed by the rendered label set, e.g. `code="1001"`.
    std::map<std::string, std::unique_ptr<Counter>> counters;
    std::map<std::string, std::unique_ptr<Gauge>> gauges;
    std::map<std::string, std::unique_ptr<Histogram>> histograms;
    std::function<double()> callback;
  };

  Family& FamilyFor(absl::string_view name, absl::string_view help, Type type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mu_);
};

// The process-wide registry that /metrics renders.
Registry& DefaultRegistry();

// Adds process_resident_memory_bytes, process_cpu_seconds_total and
// process_open_fds (read from /proc/self at render time) to `registry`.
void AddProcessMetrics(Registry& registry);

}  // namespace parley

#endif  // PARLEY_COMMON_METRICS_H_
