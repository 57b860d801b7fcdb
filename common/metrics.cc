#include "common/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace parley {
namespace {

std::string EscapeLabelValue(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string RenderLabels(const Labels& labels) {
  return absl::StrJoin(labels, ",", [](std::string* out, const auto& kv) {
    absl::StrAppend(out, kv.first, "=\"", EscapeLabelValue(kv.second), "\"");
  });
}

std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  // The shortest decimal that reads back as the same double: le="0.00025",
  // not le="0.00025000000000000001".
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

// `name{labels}` or `name` when there are none; `extra` is appended inside.
std::string Series(absl::string_view name, const std::string& labels,
                   const std::string& extra = "") {
  std::string all = labels;
  if (!extra.empty()) {
    if (!all.empty()) all += ",";
    all += extra;
  }
  if (all.empty()) return std::string(name);
  return absl::StrCat(name, "{", all, "}");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i + 1 < bounds_.size(); ++i) {
    assert(bounds_[i] < bounds_[i + 1]);
  }
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double old = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(old, old + value,
                                     std::memory_order_relaxed)) {
  }
}

std::vector<double> Histogram::LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
}

std::vector<double> Histogram::SizeBuckets() {
  std::vector<double> b;
  for (double v = 1; v <= 4096; v *= 2) b.push_back(v);
  return b;
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return out;
}

Registry::Family& Registry::FamilyFor(absl::string_view name,
                                      absl::string_view help, Type type) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{}).first;
    it->second.type = type;
    it->second.help = std::string(help);
  }
  assert(it->second.type == type && "metric registered with two types");
  return it->second;
}

Counter& Registry::GetCounter(absl::string_view name, absl::string_view help,
                              const Labels& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot =
      FamilyFor(name, help, Type::kCounter).counters[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::GetGauge(absl::string_view name, absl::string_view help,
                          const Labels& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot = FamilyFor(name, help, Type::kGauge).gauges[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Registry::GetHistogram(absl::string_view name,
                                  absl::string_view help,
                                  const std::vector<double>& bounds,
                                  const Labels& labels) {
  absl::MutexLock lock(&mu_);
  auto& slot =
      FamilyFor(name, help, Type::kHistogram).histograms[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

void Registry::AddCallbackGauge(absl::string_view name, absl::string_view help,
                                std::function<double()> value) {
  absl::MutexLock lock(&mu_);
  FamilyFor(name, help, Type::kCallback).callback = std::move(value);
}

std::string Registry::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    const char* type = "gauge";
    if (family.type == Type::kCounter) type = "counter";
    if (family.type == Type::kHistogram) type = "histogram";
    absl::StrAppend(&out, "# HELP ", name, " ", family.help, "\n", "# TYPE ",
                    name, " ", type, "\n");
    for (const auto& [labels, c] : family.counters) {
      absl::StrAppend(&out, Series(name, labels), " ", c->Value(), "\n");
    }
    for (const auto& [labels, g] : family.gauges) {
      absl::StrAppend(&out, Series(name, labels), " ", g->Value(), "\n");
    }
    if (family.callback) {
      absl::StrAppend(&out, name, " ", FormatDouble(family.callback()), "\n");
    }
    for (const auto& [labels, h] : family.histograms) {
      const std::vector<uint64_t> counts = h->BucketCounts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        const std::string le =
            i < h->bounds().size() ? FormatDouble(h->bounds()[i]) : "+Inf";
        absl::StrAppend(&out,
                        Series(absl::StrCat(name, "_bucket"), labels,
                               absl::StrCat("le=\"", le, "\"")),
                        " ", cumulative, "\n");
      }
      absl::StrAppend(&out, Series(absl::StrCat(name, "_sum"), labels), " ",
                      FormatDouble(h->Sum()), "\n");
      absl::StrAppend(&out, Series(absl::StrCat(name, "_count"), labels), " ",
                      h->Count(), "\n");
    }
  }
  return out;
}

Registry& DefaultRegistry() {
  static Registry* registry = new Registry();
  return *registry;
}

void AddProcessMetrics(Registry& registry) {
  // When the process started, read once: the first call is at start.
  static const int64_t started = absl::ToUnixSeconds(absl::Now());
  registry.AddCallbackGauge(
      "process_start_time_seconds",
      "When this process started, in seconds since the Unix epoch.",
      [] { return static_cast<double>(started); });
  registry.AddCallbackGauge(
      "process_resident_memory_bytes", "Resident set size in bytes.", [] {
        std::ifstream statm("/proc/self/statm");
        long pages_total = 0, pages_resident = 0;
        statm >> pages_total >> pages_resident;
        return static_cast<double>(pages_resident) * sysconf(_SC_PAGESIZE);
      });
  registry.AddCallbackGauge(
      "process_cpu_seconds_total", "User and system CPU time in seconds.", [] {
        std::ifstream stat("/proc/self/stat");
        std::string line;
        std::getline(stat, line);
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 (1-based) of the whole line.
        std::istringstream rest(line.substr(line.rfind(')') + 2));
        std::string field;
        unsigned long long utime = 0, stime = 0;
        for (int i = 3; i <= 15 && rest >> field; ++i) {
          if (i == 14) utime = std::stoull(field);
          if (i == 15) stime = std::stoull(field);
        }
        return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
      });
  registry.AddCallbackGauge("process_open_fds", "Open file descriptors.", [] {
    double n = 0;
    if (DIR* dir = opendir("/proc/self/fd")) {
      while (readdir(dir) != nullptr) ++n;
      closedir(dir);
      n -= 3;  // ".", ".." and the directory's own descriptor.
    }
    return n;
  });
}

}  // namespace parley
