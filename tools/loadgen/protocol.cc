#include "tools/loadgen/protocol.h"

#include "absl/strings/str_cat.h"

namespace parley::loadgen {

absl::StatusOr<std::unique_ptr<Protocol>> MakeProtocol(absl::string_view name) {
  if (name == "parley") return MakeParleyProtocol(/*binary=*/false);
  if (name == "parley-proto") return MakeParleyProtocol(/*binary=*/true);
  if (name == "relay") return MakeRelayProtocol();
  if (name == "nats") return MakeNatsProtocol();
  if (name == "jetstream") return MakeJetStreamProtocol();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown target protocol \"", name,
                   "\"; use parley, parley-proto, relay, nats or jetstream"));
}

}  // namespace parley::loadgen
