// DataDirLock: an exclusive lock on parley-service's data directory, so that
// two services never share one database and `parley-service restore` never
// replaces a database a running service has open.
//
// The lock is flock(2) on the directory itself: the kernel releases it when
// the holder exits, however it exits (no stale lock after SIGKILL), it holds
// across containers that mount the same volume, and there is no lock file to
// delete by mistake. Server holds one from Start() until it is destroyed;
// the restore holds one while it replaces the database.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<DataDirLock> lock,
//                    DataDirLock::Acquire(options.data_dir));
//
// Threading: Acquire() may be called from any thread; the lock is released
// when the object is destroyed.
#ifndef PARLEY_SERVICE_DATA_DIR_LOCK_H_
#define PARLEY_SERVICE_DATA_DIR_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace parley::service {

class DataDirLock final {
 public:
  // Locks `dir` (which must exist) without waiting: FAILED_PRECONDITION when
  // another process (or another DataDirLock in this one) holds it,
  // UNAVAILABLE when the directory cannot be opened.
  static absl::StatusOr<std::unique_ptr<DataDirLock>> Acquire(
      const std::string& dir);
  ~DataDirLock();

  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}

  const int fd_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_DATA_DIR_LOCK_H_
