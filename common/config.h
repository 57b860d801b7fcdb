// Configuration: absl flags, each overridable by a PARLEY_* environment
// variable, for both binaries.
//
// Precedence: command line > environment > the flag's default. The variable
// for flag `--listen_address` is `PARLEY_LISTEN_ADDRESS` (upper case, same
// underscores). Only flags defined in Parley's own files take part.
//
//   int main(int argc, char** argv) {
//     std::vector<char*> args = parley::ParseConfig(argc, argv, "usage...");
//     absl::StatusOr<Options> options = Options::FromFlags();
//     ...
//   }
//
// Call once from main() before starting threads.
#ifndef PARLEY_COMMON_CONFIG_H_
#define PARLEY_COMMON_CONFIG_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parley {

// The environment variable that overrides `flag_name`.
std::string EnvVarForFlag(absl::string_view flag_name);

// Applies PARLEY_* overrides to every Parley flag. `getenv` is injectable for
// tests. Fails naming the variable when a value does not parse.
absl::Status ApplyEnvironmentOverrides(
    const std::function<const char*(const char*)>& getenv);

// Sets the usage text and --version's line (common/build_info.h), applies
// environment overrides, parses the command line (which wins) and sets the
// log level from --log_level. Exits with a message
// on bad input. Returns the positional arguments (argv[0] first). Also turns
// off absl::Mutex's deadlock detection (see config.cc).
std::vector<char*> ParseConfig(int argc, char** argv, absl::string_view usage);

}  // namespace parley

#endif  // PARLEY_COMMON_CONFIG_H_
