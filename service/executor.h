// ThreadPool and SerialExecutor: where parley-service runs work that may
// block (store reads), so that gRPC reactor callbacks never do.
//
// A ThreadPool is a fixed set of threads taking tasks from one queue; a Timer
// runs tasks after a delay. A
// SerialExecutor (a "strand") runs the tasks posted to it one at a time, in
// the order posted, on some thread of a pool: each gateway link stream gets
// one, which keeps every session's events in order without a thread per
// stream.
//
//   ThreadPool pool(4);
//   auto strand = SerialExecutor::Create(&pool);
//   strand->Post([] { HandleBatch(); });
//   // Runs here, on this thread, if the strand is idle:
//   strand->Dispatch([] { HandleQuickBatch(); });
//
// Threading: Post() and Dispatch() are thread-safe. A SerialExecutor stays
// alive while it has tasks (it holds a reference to itself while running), so
// the last task may destroy its owner. ~ThreadPool runs every queued task, then
// joins.
#ifndef PARLEY_SERVICE_EXECUTOR_H_
#define PARLEY_SERVICE_EXECUTOR_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace parley::service {

class ThreadPool final {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void Post(std::function<void()> task);

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs tasks at a later time on its own thread; tasks should be short (post
// blocking work to a ThreadPool). Pending tasks are dropped on destruction.
class Timer final {
 public:
  Timer();
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void RunAfter(absl::Duration delay, std::function<void()> task);

 private:
  void Run();

  absl::Mutex mu_;
  absl::CondVar changed_;
  std::multimap<absl::Time, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class SerialExecutor final
    : public std::enable_shared_from_this<SerialExecutor> {
 public:
  static std::shared_ptr<SerialExecutor> Create(ThreadPool* pool);

  void Post(std::function<void()> task);
  // Runs `task` at once on the calling thread when no task of this strand is
  // queued or running (saving a hand-off to a pool thread), else queues it
  // like Post(). Only for tasks that never block: the caller may be a thread
  // that must not (a gRPC reactor callback).
  void Dispatch(std::function<void()> task);

 private:
  explicit SerialExecutor(ThreadPool* pool) : pool_(pool) {}
  void Drain();

  ThreadPool* const pool_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_EXECUTOR_H_
