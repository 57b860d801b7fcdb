// WalWriteVfs: an SQLite VFS that hands everything to the default VFS
// ("unix") except one thing: consecutive writes to a WAL file are gathered in
// memory and reach the file as one write at the WAL's next sync (or before a
// read, size, truncate, file control or close of it).
//
// Why: SQLite writes each WAL frame with two calls (its 24-byte header, then
// the page), so a commit of N pages costs 2N pwrite calls, and since a frame
// is not page-aligned each call walks the kernel's write path for one or two
// page-cache pages. A 1000-member group message dirties ~1000 inbox pages:
// ~2000 calls per commit, a quarter of the writer thread's time. Gathered,
// it is one call per 64 KiB (the unix VFS takes less than 128 KiB a call).
//
// Correct only when every commit syncs the WAL before SQLite publishes the
// new frames in the wal-index (PRAGMA synchronous=FULL or EXTRA): readers on
// other connections read published frames through their own file
// descriptors, so those frames must be in the file by then. With NORMAL or
// OFF nothing syncs at commit; SqliteStore then opens with the default VFS.
// Nothing becomes less durable: a frame SQLite has not synced could be lost
// in a crash anyway, and a gathered write that fails is reported by the
// sync, which fails the commit.
//
// Threading: registration is thread-safe (once per process). Each file
// object is used by one connection at a time, as SQLite requires of a VFS.
#ifndef PARLEY_SERVICE_WAL_WRITE_VFS_H_
#define PARLEY_SERVICE_WAL_WRITE_VFS_H_

#include <cstdint>

namespace parley::service {

// Registers the VFS (not as the default) on the first call and returns its
// name, for sqlite3_open_v2's zVfs.
const char* WalWriteVfsName();

// Writes that reached a WAL file through this VFS, and the calls SQLite made
// to write to a WAL, since the process started (for tests and diagnostics).
struct WalWriteStats {
  uint64_t writes_requested = 0;
  uint64_t writes_issued = 0;
};
WalWriteStats GetWalWriteStats();

}  // namespace parley::service

#endif  // PARLEY_SERVICE_WAL_WRITE_VFS_H_
