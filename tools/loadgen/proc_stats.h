// Reading a process's resident memory and CPU time from /proc/<pid>, for the
// gateway, service, relay and nats-server under test (pids passed as flags).
//
// Parsing is apart from reading so it is tested on fixed text. Thread-safe.
#ifndef PARLEY_TOOLS_LOADGEN_PROC_STATS_H_
#define PARLEY_TOOLS_LOADGEN_PROC_STATS_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::loadgen {

struct ProcSample {
  int64_t rss_kib = 0;
  // utime + stime, in seconds.
  double cpu_seconds = 0;
};

// VmRSS from the text of /proc/<pid>/status.
absl::StatusOr<int64_t> ParseRssKib(absl::string_view status_text);
// utime + stime (clock ticks) from the text of /proc/<pid>/stat.
absl::StatusOr<int64_t> ParseCpuTicks(absl::string_view stat_text);

// Reads both for `pid`; NOT_FOUND when the process is gone.
absl::StatusOr<ProcSample> SampleProcess(int pid);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_PROC_STATS_H_
