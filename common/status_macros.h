// Status propagation macros. Debian's Abseil (20220623) ships none.
//
//   absl::Status Open() {
//     RETURN_IF_ERROR(CheckPath(path));
//     ASSIGN_OR_RETURN(Db db, Db::Open(path));
//     ...
//   }
//
// Both evaluate their argument once and return the failed status unchanged.
// Thread-compatible: they are plain expressions.
#ifndef PARLEY_COMMON_STATUS_MACROS_H_
#define PARLEY_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PARLEY_STATUS_CONCAT_INNER_(a, b) a##b
#define PARLEY_STATUS_CONCAT_(a, b) PARLEY_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)               \
  do {                                      \
    ::absl::Status parley_status_ = (expr); \
    if (!parley_status_.ok()) {             \
      return parley_status_;                \
    }                                       \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else
// assigns (moves) the value to `lhs`, which may be a declaration.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  PARLEY_ASSIGN_OR_RETURN_IMPL_(     \
      PARLEY_STATUS_CONCAT_(parley_statusor_, __LINE__), lhs, rexpr)

#define PARLEY_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) {                                     \
    return std::move(statusor).status();                    \
  }                                                         \
  lhs = std::move(statusor).value()

#endif  // PARLEY_COMMON_STATUS_MACROS_H_
