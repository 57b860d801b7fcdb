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

#include <cstdint>
#include <string>

#include "absl/status/status.h"
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

// The gateway-service link protocol (proto/parley/v1/gateway_link.proto)
// this build speaks, and the oldest it still accepts from a peer. Raised
// when the link changes incompatibly; a release accepts the previous
// protocol so that gateways and services can be upgraded one at a time.
inline constexpr uint32_t kLinkProtocol = 1;
inline constexpr uint32_t kMinLinkProtocol = 1;

// OK when a peer speaking `peer_protocol` (0: a build from before the link
// carried it, protocol 1) may talk to this one; FAILED_PRECONDITION naming
// both sides otherwise.
absl::Status CheckLinkProtocol(uint32_t peer_protocol,
                               absl::string_view peer_version,
                               absl::string_view peer);

}  // namespace parley

#endif  // PARLEY_COMMON_BUILD_INFO_H_
