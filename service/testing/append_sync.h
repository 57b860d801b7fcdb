// AppendSync: Store::Append for tests, waiting for its callback.
//
// Threading: blocks the calling thread until the append's callback ran;
// never call it from a Store callback.
#ifndef PARLEY_SERVICE_TESTING_APPEND_SYNC_H_
#define PARLEY_SERVICE_TESTING_APPEND_SYNC_H_

#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "service/store.h"

namespace parley::service::testing {

inline absl::StatusOr<AppendResult> AppendSync(Store& store, AppendRequest r) {
  absl::StatusOr<AppendResult> out;
  absl::Notification done;
  store.Append(std::move(r), [&](absl::StatusOr<AppendResult> result) {
    out = std::move(result);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

}  // namespace parley::service::testing

#endif  // PARLEY_SERVICE_TESTING_APPEND_SYNC_H_
