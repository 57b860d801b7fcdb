// Structured logging: one line per event on stderr, key=value fields.
//
//   LogInfo("session.open", {{"peer", peer}, {"user", user_id}});
//   => 2026-11-24T10:00:00.123Z level=info event=session.open peer=127.0.0.1:5
//   user=alice
//
// Values with spaces, quotes, '=' or control characters are quoted and
// escaped, so every line splits on spaces into key=value pairs. Why a thin
// layer and not spdlog: Parley needs exactly this format and one write per
// line; see docs/logging.md.
//
// Thread-safe: each line is written with a single write(2) to fd 2, so lines
// from different threads never interleave. The level is a global atomic.
#ifndef PARLEY_COMMON_LOG_H_
#define PARLEY_COMMON_LOG_H_

#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace parley {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// One key=value pair. Accepts anything absl::StrCat accepts.
struct LogField {
  LogField(absl::string_view k, const absl::AlphaNum& v)
      : key(k), value(v.Piece()) {}
  absl::string_view key;
  std::string value;
};

// Sets the lowest level that is written (default kInfo).
void SetLogLevel(LogLevel level);
// Parses "debug", "info", "warn" or "error".
absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view name);
// Whether `level` is written; check it before building costly fields.
bool LogEnabled(LogLevel level);

// Formats one line (without the trailing newline); exposed for tests.
std::string FormatLogLine(LogLevel level, absl::string_view event,
                          std::initializer_list<LogField> fields);

// Writes one line if `level` is enabled.
void Log(LogLevel level, absl::string_view event,
         std::initializer_list<LogField> fields = {});

inline void LogDebug(absl::string_view event,
                     std::initializer_list<LogField> fields = {}) {
  if (LogEnabled(LogLevel::kDebug)) Log(LogLevel::kDebug, event, fields);
}
inline void LogInfo(absl::string_view event,
                    std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, event, fields);
}
inline void LogWarn(absl::string_view event,
                    std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarn, event, fields);
}
inline void LogError(absl::string_view event,
                     std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, event, fields);
}

}  // namespace parley

#endif  // PARLEY_COMMON_LOG_H_
