// Reading a process's resident memory and CPU time from /proc/<pid>, for the
// gateway, service, relay and nats-server under test (pids passed as flags),
// or of a whole process tree, for PostgreSQL (a backend process per client
// connection, forked by the postmaster).
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
// The fields of /proc/<pid>/stat that SampleProcessTree() needs.
struct StatFields {
  int parent_pid = 0;
  // utime + stime, clock ticks.
  int64_t cpu_ticks = 0;
  // cutime + cstime: the children this process has waited for.
  int64_t child_cpu_ticks = 0;
};
absl::StatusOr<StatFields> ParseStat(absl::string_view stat_text);
// utime + stime (clock ticks) from the text of /proc/<pid>/stat.
absl::StatusOr<int64_t> ParseCpuTicks(absl::string_view stat_text);

// Reads both for `pid`; NOT_FOUND when the process is gone.
absl::StatusOr<ProcSample> SampleProcess(int pid);

// The sum over `pid` and every live descendant, plus the CPU of the
// descendants `pid` has already reaped, so a child that exits between two
// samples is still counted. RSS is the plain sum (memory shared between the
// processes, such as PostgreSQL's shared buffers, counts once per process).
// NOT_FOUND when `pid` is gone.
absl::StatusOr<ProcSample> SampleProcessTree(int pid);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_PROC_STATS_H_
