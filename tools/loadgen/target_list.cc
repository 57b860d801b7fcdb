#include "tools/loadgen/target_list.h"

#include <cassert>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::loadgen {

absl::StatusOr<std::vector<Target>> ParseTargets(absl::string_view list) {
  std::vector<Target> out;
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    std::vector<std::string> hp = absl::StrSplit(item, ':');
    int port = 0;
    if (hp.size() != 2 || !absl::SimpleAtoi(hp[1], &port) || port <= 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("--address wants host:port, got \"", item, "\""));
    }
    asio::error_code ec;
    asio::ip::address host = asio::ip::make_address(hp[0], ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("--address needs an IP literal, got \"", item, "\""));
    }
    out.push_back({asio::ip::tcp::endpoint(host, static_cast<uint16_t>(port)),
                   std::string(item)});
  }
  if (out.empty()) return absl::InvalidArgumentError("--address is empty");
  return out;
}

const Target& TargetFor(const std::vector<Target>& targets, int index) {
  assert(!targets.empty() && index >= 0);
  return targets[static_cast<size_t>(index) % targets.size()];
}

}  // namespace parley::loadgen
