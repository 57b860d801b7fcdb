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

absl::Status CheckLinkProtocol(uint32_t peer_protocol,
                               absl::string_view peer_version,
                               absl::string_view peer) {
  const uint32_t protocol = peer_protocol == 0 ? 1 : peer_protocol;
  if (protocol >= kMinLinkProtocol && protocol <= kLinkProtocol) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "incompatible link protocol: ", peer, " ",
      peer_version.empty() ? "(version unknown)" : peer_version,
      " speaks protocol ", protocol, ", this ", GetBuildInfo().version,
      " accepts ", kMinLinkProtocol, "..", kLinkProtocol,
      "; upgrade the older side (docs/operators.md, Upgrades)"));
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
