#include "service/wal_write_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

namespace parley::service {
namespace {

// Most bytes gathered into one write. The unix VFS writes at most 128 KiB - 1
// bytes per call (seekAndWriteFd() masks the length with 0x1ffff, and a
// longer write comes back as SQLITE_FULL), and a bound keeps a big
// transaction from holding its WAL in memory.
constexpr size_t kMaxGathered = 64 << 10;

std::atomic<uint64_t> g_requested{0};
std::atomic<uint64_t> g_issued{0};

// What SQLite allocates for each open file: this header, then the default
// VFS's own file object.
struct ShimFile {
  sqlite3_file base;
  sqlite3_file* real;
  // WAL files only (null otherwise): bytes written but not yet in the file,
  // and the file offset of their first byte.
  std::string* gathered;
  sqlite3_int64 start;
};

constexpr size_t kShimSize = (sizeof(ShimFile) + 7) & ~size_t{7};

sqlite3_vfs* Real(sqlite3_vfs* vfs) {
  return static_cast<sqlite3_vfs*>(vfs->pAppData);
}
ShimFile* Shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }
sqlite3_file* RealFile(sqlite3_file* f) { return Shim(f)->real; }

int IssueWrite(sqlite3_file* real, const void* data, int n,
               sqlite3_int64 offset) {
  g_issued.fetch_add(1, std::memory_order_relaxed);
  return real->pMethods->xWrite(real, data, n, offset);
}

int Flush(ShimFile* f) {
  std::string& g = *f->gathered;
  if (g.empty()) return SQLITE_OK;
  const int rc =
      IssueWrite(f->real, g.data(), static_cast<int>(g.size()), f->start);
  g.clear();
  return rc;
}

// --- Methods shared by every file: forward to the real file. ---

int Read(sqlite3_file* f, void* data, int n, sqlite3_int64 offset) {
  return RealFile(f)->pMethods->xRead(RealFile(f), data, n, offset);
}
int Write(sqlite3_file* f, const void* data, int n, sqlite3_int64 offset) {
  return RealFile(f)->pMethods->xWrite(RealFile(f), data, n, offset);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return RealFile(f)->pMethods->xTruncate(RealFile(f), size);
}
int Sync(sqlite3_file* f, int flags) {
  return RealFile(f)->pMethods->xSync(RealFile(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return RealFile(f)->pMethods->xFileSize(RealFile(f), size);
}
int Lock(sqlite3_file* f, int level) {
  return RealFile(f)->pMethods->xLock(RealFile(f), level);
}
int Unlock(sqlite3_file* f, int level) {
  return RealFile(f)->pMethods->xUnlock(RealFile(f), level);
}
int CheckReservedLock(sqlite3_file* f, int* out) {
  return RealFile(f)->pMethods->xCheckReservedLock(RealFile(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return RealFile(f)->pMethods->xFileControl(RealFile(f), op, arg);
}
int SectorSize(sqlite3_file* f) {
  return RealFile(f)->pMethods->xSectorSize(RealFile(f));
}
int DeviceCharacteristics(sqlite3_file* f) {
  return RealFile(f)->pMethods->xDeviceCharacteristics(RealFile(f));
}
int ShmMap(sqlite3_file* f, int page, int size, int extend,
           void volatile** out) {
  return RealFile(f)->pMethods->xShmMap(RealFile(f), page, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return RealFile(f)->pMethods->xShmLock(RealFile(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) {
  RealFile(f)->pMethods->xShmBarrier(RealFile(f));
}
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  return RealFile(f)->pMethods->xShmUnmap(RealFile(f), delete_flag);
}
int Fetch(sqlite3_file* f, sqlite3_int64 offset, int n, void** out) {
  return RealFile(f)->pMethods->xFetch(RealFile(f), offset, n, out);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return RealFile(f)->pMethods->xUnfetch(RealFile(f), offset, p);
}
int Close(sqlite3_file* f) {
  return RealFile(f)->pMethods->xClose(RealFile(f));
}

// --- WAL files: gather writes; flush before anything that looks at the
// file. ---

int WalWrite(sqlite3_file* file, const void* data, int n,
             sqlite3_int64 offset) {
  g_requested.fetch_add(1, std::memory_order_relaxed);
  ShimFile* f = Shim(file);
  std::string& g = *f->gathered;
  const size_t size = static_cast<size_t>(n);
  if (!g.empty()) {
    const sqlite3_int64 end = f->start + static_cast<sqlite3_int64>(g.size());
    // SQLite rewrites a frame of the current transaction in place when the
    // same page changes again.
    if (offset >= f->start && offset + n <= end) {
      std::memcpy(&g[static_cast<size_t>(offset - f->start)], data, size);
      return SQLITE_OK;
    }
    if (offset == end && g.size() + size <= kMaxGathered) {
      g.append(static_cast<const char*>(data), size);
      return SQLITE_OK;
    }
    const int rc = Flush(f);
    if (rc != SQLITE_OK) return rc;
  }
  if (size >= kMaxGathered) return IssueWrite(f->real, data, n, offset);
  f->start = offset;
  g.assign(static_cast<const char*>(data), size);
  return SQLITE_OK;
}

template <auto kMethod, typename... Args>
int FlushThen(sqlite3_file* f, Args... args) {
  const int rc = Flush(Shim(f));
  if (rc != SQLITE_OK) return rc;
  return kMethod(f, args...);
}

int WalClose(sqlite3_file* f) {
  const int flushed = Flush(Shim(f));
  delete Shim(f)->gathered;
  Shim(f)->gathered = nullptr;
  const int rc = Close(f);
  return flushed != SQLITE_OK ? flushed : rc;
}

sqlite3_io_methods MakeMethods(bool wal, int version) {
  sqlite3_io_methods m{};
  m.iVersion = version;
  m.xClose = wal ? WalClose : Close;
  m.xRead = wal ? FlushThen<Read, void*, int, sqlite3_int64> : Read;
  m.xWrite = wal ? WalWrite : Write;
  m.xTruncate = wal ? FlushThen<Truncate, sqlite3_int64> : Truncate;
  m.xSync = wal ? FlushThen<Sync, int> : Sync;
  m.xFileSize = wal ? FlushThen<FileSize, sqlite3_int64*> : FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReservedLock;
  m.xFileControl = wal ? FlushThen<FileControl, int, void*> : FileControl;
  m.xSectorSize = SectorSize;
  m.xDeviceCharacteristics = DeviceCharacteristics;
  if (version >= 2) {
    m.xShmMap = ShmMap;
    m.xShmLock = ShmLock;
    m.xShmBarrier = ShmBarrier;
    m.xShmUnmap = ShmUnmap;
  }
  if (version >= 3) {
    m.xFetch = wal ? FlushThen<Fetch, sqlite3_int64, int, void**> : Fetch;
    m.xUnfetch = Unfetch;
  }
  return m;
}

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags,
         int* out_flags) {
  ShimFile* f = Shim(file);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) +
                                            kShimSize);
  f->gathered = nullptr;
  f->start = 0;
  const int rc = Real(vfs)->xOpen(Real(vfs), name, f->real, flags, out_flags);
  // SQLite calls xClose whenever pMethods is set, also after a failed open.
  if (f->real->pMethods == nullptr) return rc;
  // io_methods versions 1-3; ours matches the real file's.
  const int version = std::clamp(f->real->pMethods->iVersion, 1, 3);
  static const sqlite3_io_methods kPass[3] = {
      MakeMethods(false, 1), MakeMethods(false, 2), MakeMethods(false, 3)};
  static const sqlite3_io_methods kWal[3] = {
      MakeMethods(true, 1), MakeMethods(true, 2), MakeMethods(true, 3)};
  if ((flags & SQLITE_OPEN_WAL) != 0) {
    f->gathered = new (std::nothrow) std::string;
    if (f->gathered == nullptr) {
      f->real->pMethods->xClose(f->real);
      return SQLITE_NOMEM;
    }
    f->base.pMethods = &kWal[version - 1];
  } else {
    f->base.pMethods = &kPass[version - 1];
  }
  return rc;
}

// --- VFS methods other than xOpen: the real VFS's, on the real VFS. ---

int Delete(sqlite3_vfs* v, const char* name, int sync_dir) {
  return Real(v)->xDelete(Real(v), name, sync_dir);
}
int Access(sqlite3_vfs* v, const char* name, int flags, int* out) {
  return Real(v)->xAccess(Real(v), name, flags, out);
}
int FullPathname(sqlite3_vfs* v, const char* name, int n, char* out) {
  return Real(v)->xFullPathname(Real(v), name, n, out);
}
void* DlOpen(sqlite3_vfs* v, const char* name) {
  return Real(v)->xDlOpen(Real(v), name);
}
void DlError(sqlite3_vfs* v, int n, char* out) {
  Real(v)->xDlError(Real(v), n, out);
}
void (*DlSym(sqlite3_vfs* v, void* handle, const char* symbol))(void) {
  return Real(v)->xDlSym(Real(v), handle, symbol);
}
void DlClose(sqlite3_vfs* v, void* handle) {
  Real(v)->xDlClose(Real(v), handle);
}
int Randomness(sqlite3_vfs* v, int n, char* out) {
  return Real(v)->xRandomness(Real(v), n, out);
}
int Sleep(sqlite3_vfs* v, int micros) {
  return Real(v)->xSleep(Real(v), micros);
}
int CurrentTime(sqlite3_vfs* v, double* out) {
  return Real(v)->xCurrentTime(Real(v), out);
}
int GetLastError(sqlite3_vfs* v, int n, char* out) {
  return Real(v)->xGetLastError(Real(v), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* v, sqlite3_int64* out) {
  return Real(v)->xCurrentTimeInt64(Real(v), out);
}

}  // namespace

const char* WalWriteVfsName() {
  static constexpr char kName[] = "parley-wal-write";
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    static sqlite3_vfs vfs{};
    vfs.iVersion = 2;
    vfs.szOsFile = static_cast<int>(kShimSize) + real->szOsFile;
    vfs.mxPathname = real->mxPathname;
    vfs.zName = kName;
    vfs.pAppData = real;
    vfs.xOpen = Open;
    vfs.xDelete = Delete;
    vfs.xAccess = Access;
    vfs.xFullPathname = FullPathname;
    vfs.xDlOpen = DlOpen;
    vfs.xDlError = DlError;
    vfs.xDlSym = DlSym;
    vfs.xDlClose = DlClose;
    vfs.xRandomness = Randomness;
    vfs.xSleep = Sleep;
    vfs.xCurrentTime = CurrentTime;
    vfs.xGetLastError = GetLastError;
    vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    sqlite3_vfs_register(&vfs, /*makeDflt=*/0);
  });
  return kName;
}

WalWriteStats GetWalWriteStats() {
  return {g_requested.load(std::memory_order_relaxed),
          g_issued.load(std::memory_order_relaxed)};
}

}  // namespace parley::service
