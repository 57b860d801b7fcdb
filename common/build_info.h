// BuildInfo: what a Parley binary is (version, commit, build mode), stamped
// at build time from VERSION and git by tools/workspace_status.sh, for
// `--version`, the `parley_build_info` metric and the link handshake.
//
//   std::printf("%s\n", parley::VersionLine("parley-service").c_str());
//   // parley-service 0.5.0 (commit 3f2a9c1d0e4b, opt)
//   parley::ExportBuildInfo(parley::DefaultRegistry());
//
// Threading: thread-safe (constants).
#ifndef PARLEY_COMMON_BUILD_INFO_H_
#define PARLEY_COMMON_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"
#include "common/metrics.h"

namespace parley {

struct BuildInfo {
  std::string version;  // From VERSION, e.g. "0.5.0".
  std::string commit;   // Short git commit, "-dirty" if modified; "unknown".
  std::string mode;     // Bazel's compilation mode: opt, fastbuild or dbg.
};

const BuildInfo& GetBuildInfo();

// "<binary> <version> (commit <commit>, <mode>)".
std::string VersionLine(absl::string_view binary);

// Adds parley_build_info{version,commit,mode} 1 to `registry`.
void ExportBuildInfo(Registry& registry);

}  // namespace parley

#endif  // PARLEY_COMMON_BUILD_INFO_H_
