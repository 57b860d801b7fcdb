#include "tools/loadgen/payload.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::loadgen {

std::string FormatPayload(const PayloadInfo& info, size_t min_size) {
  std::string text =
      absl::StrCat("lg ", info.sender, " ", info.seq, " ", info.sent_nanos);
  if (text.size() + 1 < min_size) {
    text += ' ';
    text.append(min_size - text.size(), 'x');
  }
  return text;
}

std::optional<PayloadInfo> ParsePayload(absl::string_view text) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits(' ', 4));
  PayloadInfo info;
  if (parts.size() < 4 || parts[0] != "lg" ||
      !absl::SimpleAtoi(parts[1], &info.sender) ||
      !absl::SimpleAtoi(parts[2], &info.seq) ||
      !absl::SimpleAtoi(parts[3], &info.sent_nanos)) {
    return std::nullopt;
  }
  return info;
}

std::string FormatClientId(uint64_t seq, int64_t sent_nanos) {
  return absl::StrCat(seq, ".", sent_nanos);
}

std::optional<int64_t> ClientIdSentNanos(absl::string_view client_id) {
  const size_t dot = client_id.find('.');
  int64_t nanos = 0;
  if (dot == absl::string_view::npos ||
      !absl::SimpleAtoi(client_id.substr(dot + 1), &nanos)) {
    return std::nullopt;
  }
  return nanos;
}

}  // namespace parley::loadgen
