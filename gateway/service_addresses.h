// The parley-service replicas a gateway links to: parsing the
// --service_address list and resolving each entry to the addresses behind
// it.
//
//   absl::StatusOr<std::vector<ServiceAddress>> entries =
//       ParseServiceAddresses("svc-a:7400,[::1]:7401,10.0.0.5:7400");
//   absl::StatusOr<std::vector<std::string>> replicas =
//       ResolveServiceAddress((*entries)[0]);  // {"10.1.0.7:7400", ...}
//
// An entry's host may be a DNS name that resolves to several addresses (a
// compose service scaled up, a Kubernetes headless service): each address is
// one replica. UpstreamLink (gateway/upstream_link.h) parses the list once at
// start and resolves it again every --service_resolve_interval.
//
// Threading: plain functions, thread-safe. ResolveServiceAddress blocks for
// as long as the system resolver takes, so it never runs on a gRPC or
// connection thread.
#ifndef PARLEY_GATEWAY_SERVICE_ADDRESSES_H_
#define PARLEY_GATEWAY_SERVICE_ADDRESSES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::gateway {

// One entry of the list: a host (name, IPv4 literal, or IPv6 literal without
// its brackets) and a port.
struct ServiceAddress {
  std::string host;
  int port = 0;
  // The entry as written, for messages.
  std::string text;
};

// Splits a comma-separated list of host:port (IPv6 literals in brackets);
// spaces around entries are ignored. INVALID_ARGUMENT naming the first bad
// entry: empty, no port, a port outside 1..65535, or a host that is no DNS
// name or address.
absl::StatusOr<std::vector<ServiceAddress>> ParseServiceAddresses(
    absl::string_view list);

// The entry's addresses as gRPC targets ("10.0.0.5:7400", "[::1]:7400"),
// sorted, without duplicates, from getaddrinfo (TCP). UNAVAILABLE naming the
// entry when the name does not resolve.
absl::StatusOr<std::vector<std::string>> ResolveServiceAddress(
    const ServiceAddress& address);

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_SERVICE_ADDRESSES_H_
