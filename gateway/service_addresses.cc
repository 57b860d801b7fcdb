#include "gateway/service_addresses.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::gateway {
namespace {

absl::Status BadEntry(absl::string_view entry, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("--service_address entry \"", entry, "\" ", why,
                   " (want a comma-separated list of host:port)"));
}

// A DNS name (RFC 1123 labels; '_' too, which compose service names allow)
// or an IPv4 literal, which has the same characters.
bool IsHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
    }
  }
  return true;
}

bool IsIpv6(const std::string& host) {
  in6_addr addr;
  return inet_pton(AF_INET6, host.c_str(), &addr) == 1;
}

}  // namespace

absl::StatusOr<std::vector<ServiceAddress>> ParseServiceAddresses(
    absl::string_view list) {
  std::vector<ServiceAddress> entries;
  for (absl::string_view raw : absl::StrSplit(list, ',')) {
    const absl::string_view entry = absl::StripAsciiWhitespace(raw);
    if (entry.empty()) return BadEntry(entry, "is empty");
    ServiceAddress address;
    address.text = std::string(entry);
    absl::string_view port;
    if (entry.front() == '[') {
      const size_t close = entry.find(']');
      if (close == absl::string_view::npos ||
          entry.substr(close + 1, 1) != ":") {
        return BadEntry(entry, "is not [IPv6]:port");
      }
      address.host = std::string(entry.substr(1, close - 1));
      if (!IsIpv6(address.host)) return BadEntry(entry, "has no IPv6 address");
      port = entry.substr(close + 2);
    } else {
      const size_t colon = entry.rfind(':');
      if (colon == absl::string_view::npos) {
        return BadEntry(entry, "has no port");
      }
      address.host = std::string(entry.substr(0, colon));
      if (address.host.find(':') != std::string::npos) {
        return BadEntry(entry, "needs brackets around its IPv6 address");
      }
      if (!IsHostName(address.host)) {
        return BadEntry(entry, "has no valid host name");
      }
      port = entry.substr(colon + 1);
    }
    if (!absl::SimpleAtoi(port, &address.port) || address.port < 1 ||
        address.port > 65535 || !absl::ascii_isdigit(port.front())) {
      return BadEntry(entry, "needs a port in 1..65535");
    }
    entries.push_back(std::move(address));
  }
  return entries;
}

absl::StatusOr<std::vector<std::string>> ResolveServiceAddress(
    const ServiceAddress& address) {
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(address.port);
  const int rc =
      getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("--service_address entry \"", address.text,
                     "\" does not resolve: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owned(found,
                                                           &freeaddrinfo);
  std::vector<std::string> targets;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    if (ai->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
      targets.push_back(absl::StrCat(text, ":", address.port));
    } else if (ai->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
      targets.push_back(absl::StrCat("[", text, "]:", address.port));
    }
  }
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  if (targets.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "--service_address entry \"", address.text, "\" has no addresses"));
  }
  return targets;
}

}  // namespace parley::gateway
