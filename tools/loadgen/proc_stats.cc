#include "tools/loadgen/proc_stats.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
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

absl::StatusOr<StatFields> ParseStat(absl::string_view stat_text) {
  // The command name (field 2) is in parentheses and may hold spaces: the
  // fields after its closing parenthesis start at field 3 (state).
  const size_t close = stat_text.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("no ')' in stat");
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat_text.substr(close + 1), ' ', absl::SkipWhitespace());
  // ppid is field 4, utime, stime, cutime and cstime fields 14 to 17: indexes
  // 1 and 11 to 14 after field 2.
  StatFields out;
  int64_t utime = 0, stime = 0, cutime = 0, cstime = 0;
  if (fields.size() < 15 || !absl::SimpleAtoi(fields[1], &out.parent_pid) ||
      !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime) ||
      !absl::SimpleAtoi(fields[13], &cutime) ||
      !absl::SimpleAtoi(fields[14], &cstime)) {
    return absl::InvalidArgumentError("bad stat fields");
  }
  out.cpu_ticks = utime + stime;
  out.child_cpu_ticks = cutime + cstime;
  return out;
}

absl::StatusOr<int64_t> ParseCpuTicks(absl::string_view stat_text) {
  absl::StatusOr<StatFields> f = ParseStat(stat_text);
  if (!f.ok()) return f.status();
  return f->cpu_ticks;
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

absl::StatusOr<ProcSample> SampleProcessTree(int pid) {
  absl::StatusOr<std::string> root_stat =
      ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!root_stat.ok()) return root_stat.status();
  absl::StatusOr<StatFields> root = ParseStat(*root_stat);
  if (!root.ok()) return root.status();
  // Parent links of every process, read once; processes that exit while the
  // directory is read are skipped.
  std::map<int, std::vector<int>> children;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    int child = 0;
    if (!absl::SimpleAtoi(entry.path().filename().string(), &child)) continue;
    absl::StatusOr<std::string> text =
        ReadFile(absl::StrCat("/proc/", child, "/stat"));
    if (!text.ok()) continue;
    absl::StatusOr<StatFields> f = ParseStat(*text);
    if (f.ok()) children[f->parent_pid].push_back(child);
  }
  absl::StatusOr<ProcSample> total = SampleProcess(pid);
  if (!total.ok()) return total.status();
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  total->cpu_seconds += static_cast<double>(root->child_cpu_ticks) / tick;
  std::vector<int> todo = children[pid];
  while (!todo.empty()) {
    const int next = todo.back();
    todo.pop_back();
    absl::StatusOr<ProcSample> s = SampleProcess(next);
    if (!s.ok()) continue;
    total->rss_kib += s->rss_kib;
    total->cpu_seconds += s->cpu_seconds;
    for (int c : children[next]) todo.push_back(c);
  }
  return total;
}

}  // namespace parley::loadgen
