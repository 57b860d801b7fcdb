// TargetList: the WebSocket endpoints parley-loadgen connects to, parsed from
// `--address` ("host:port" or a comma list of them), and which one each
// connection uses.
//
// Connection i goes to endpoint i mod N, so with two gateways the members of
// a pair (2i, 2i+1) sit on different gateways and every 1:1 message crosses
// from one to the other, as it would behind a load balancer. Called once at
// start by main.cc and then read by the driver's thread only.
#ifndef PARLEY_TOOLS_LOADGEN_TARGET_LIST_H_
#define PARLEY_TOOLS_LOADGEN_TARGET_LIST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "asio.hpp"

namespace parley::loadgen {

struct Target {
  asio::ip::tcp::endpoint endpoint;
  // The Host header to send: the address as it was given.
  std::string host_header;
};

// Parses "ip:port[,ip:port...]" (IPv4 literals). InvalidArgument names the
// item that is not ip:port; an empty list is InvalidArgument too.
absl::StatusOr<std::vector<Target>> ParseTargets(absl::string_view list);

// The target of connection `index` (round-robin). `targets` is not empty.
const Target& TargetFor(const std::vector<Target>& targets, int index);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_TARGET_LIST_H_
