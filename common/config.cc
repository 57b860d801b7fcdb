#include "common/config.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/build_info.h"
#include "common/log.h"

ABSL_FLAG(std::string, log_level, "info",
          "Lowest log level written to stderr: debug, info, warn or error.");

namespace parley {
namespace {

// Parley's flags are defined in its own packages; Abseil's and gRPC's are not.
bool IsParleyFlag(const absl::CommandLineFlag& flag) {
  const std::string file = flag.Filename();
  for (absl::string_view dir :
       {"common/", "service/", "gateway/", "tools/", "tests/"}) {
    if (absl::StartsWith(file, dir) ||
        absl::StrContains(file, absl::StrCat("/", dir))) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string EnvVarForFlag(absl::string_view flag_name) {
  return absl::StrCat("PARLEY_", absl::AsciiStrToUpper(flag_name));
}

absl::Status ApplyEnvironmentOverrides(
    const std::function<const char*(const char*)>& getenv) {
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsParleyFlag(*flag)) continue;
    const std::string var = EnvVarForFlag(name);
    const char* value = getenv(var.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("environment variable ", var, "=\"", value,
                       "\" is not a valid value for --", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

std::vector<char*> ParseConfig(int argc, char** argv, absl::string_view usage) {
  absl::FlagsUsageConfig usage_config;
  usage_config.contains_helpshort_flags = [](absl::string_view file) {
    return !absl::StrContains(file, "absl/");
  };
  usage_config.contains_help_flags = usage_config.contains_helpshort_flags;
  // --version: "<binary> <version> (commit <commit>, <mode>)".
  const std::string binary(argc > 0
                               ? absl::string_view(argv[0]).substr(
                                     absl::string_view(argv[0]).rfind('/') + 1)
                               : "parley");
  usage_config.version_string = [binary] { return VersionLine(binary) + "\n"; };
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(usage);
  absl::Status env = ApplyEnvironmentOverrides(
      [](const char* name) { return std::getenv(name); });
  if (!env.ok()) {
    std::fprintf(stderr, "%s\n", std::string(env.message()).c_str());
    std::exit(2);
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  absl::StatusOr<LogLevel> level =
      ParseLogLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) {
    std::fprintf(stderr, "--log_level: %s\n",
                 std::string(level.status().message()).c_str());
    std::exit(2);
  }
  SetLogLevel(*level);
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's deadlock
  // detection on: every Lock takes one process-wide spinlock to update a lock
  // graph, and a suspected lock-order cycle aborts the process. A debugging
  // aid, not for serving; unit tests (which do not come here) keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return args;
}

}  // namespace parley
