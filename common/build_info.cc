#include "common/build_info.h"

#include "absl/strings/str_cat.h"
#include "common/build_stamp.h"

namespace parley {
const BuildInfo& GetBuildInfo() {
  static const BuildInfo* info =
      new BuildInfo{kParleyVersion, kParleyCommit, kParleyBuildMode};
  return *info;
}

std::string VersionLine(absl::string_view binary) {
  const BuildInfo& b = GetBuildInfo();
  return absl::StrCat(binary, " ", b.version, " (commit ", b.commit, ", ",
                      b.mode, ")");
}

void ExportBuildInfo(Registry& registry) {
  const BuildInfo& b = GetBuildInfo();
  registry
      .GetGauge(
          "parley_build_info",
          "The running binary's version, commit and build mode (always "
          "1).",
          {{"version", b.version}, {"commit", b.commit}, {"mode", b.mode}})
      .Set(1);
}

}  // namespace parley
