// Turning measurements into the Report (report.proto) and printing it: a table
// for people, one-line JSON for scripts.
//
// Thread-safe: pure functions.
#ifndef PARLEY_TOOLS_LOADGEN_REPORT_H_
#define PARLEY_TOOLS_LOADGEN_REPORT_H_

#include <string>

#include "tools/loadgen/histogram.h"
#include "tools/loadgen/report.pb.h"

namespace parley::loadgen {

// Percentiles of `histogram` (nanoseconds) in milliseconds.
LatencySummary Summarize(const LatencyHistogram& histogram);

// A fixed-width, human-readable table of every field that has a value.
std::string FormatTable(const Report& report);

// The report as one line of JSON (field names as in report.proto).
std::string FormatJson(const Report& report);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_REPORT_H_
