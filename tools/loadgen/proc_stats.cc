#include "tools/loadgen/proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::loadgen {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<int64_t> ParseRssKib(absl::string_view status_text) {
  for (absl::string_view line : absl::StrSplit(status_text, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kib)) return kib;
    return absl::InvalidArgumentError("bad VmRSS line");
  }
  return absl::InvalidArgumentError("no VmRSS line");
}

absl::StatusOr<int64_t> ParseCpuTicks(absl::string_view stat_text) {
  // The command name (field 2) is in parentheses and may hold spaces: the
  // fields after its closing parenthesis start at field 3 (state).
  const size_t close = stat_text.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("no ')' in stat");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat_text.substr(close + 1), ' ', absl::SkipWhitespace());
  // utime and stime are fields 14 and 15: indexes 11 and 12 after field 2.
  int64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return absl::InvalidArgumentError("bad stat fields");
  }
  return utime + stime;
}

absl::StatusOr<ProcSample> SampleProcess(int pid) {
  absl::StatusOr<std::string> status =
      ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return status.status();
  absl::StatusOr<std::string> stat =
      ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return stat.status();
  absl::StatusOr<int64_t> rss = ParseRssKib(*status);
  if (!rss.ok()) return rss.status();
  absl::StatusOr<int64_t> ticks = ParseCpuTicks(*stat);
  if (!ticks.ok()) return ticks.status();
  ProcSample sample;
  sample.rss_kib = *rss;
  sample.cpu_seconds =
      static_cast<double>(*ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return sample;
}

}  // namespace parley::loadgen
