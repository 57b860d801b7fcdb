// CommitPipeline: the write path of a database Store, shared by the stores
// so that none re-implements it: a queue, group commit, backpressure and
// callbacks in commit order.
//
// Writers Submit() operations. ONE writer thread takes everything queued (up
// to `max_batch`) and hands it to the store's `commit` function, which runs
// the whole batch in one transaction and returns each operation's status.
// Each operation's `done(status)` then runs on a callback thread of its own,
// one at a time, in commit order, while the writer commits the next batch;
// at most `max_pending_batches` committed batches wait for their callbacks
// before the writer waits too. Beyond `max_queued` waiting operations
// Submit() refuses at once with UNAVAILABLE (retryable), calling `done` on
// the caller's thread: an overload costs a retry, not unbounded memory.
//
// `Op` is the store's operation type; it needs a member
// `std::function<void(absl::Status)> done`.
//
//   CommitPipeline<WriteOp> pipeline(
//       options, [this](std::vector<WriteOp>& batch) {
//         return CommitBatch(batch);  // one status per operation
//       });
//   pipeline.Submit(WriteOp{..., [](absl::Status s) { ... }});
//
// Threading: Submit and Flush from any thread except a callback (Flush
// would wait for itself). `commit` runs on the writer thread only.
// Destruction commits what is queued, runs its callbacks, then joins both
// threads; destroy the pipeline before what `commit` uses.
#ifndef PARLEY_SERVICE_COMMIT_PIPELINE_H_
#define PARLEY_SERVICE_COMMIT_PIPELINE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace parley::service {

struct CommitPipelineOptions {
  // Most operations in one transaction.
  size_t max_batch = 1024;
  // Most operations waiting for the writer; beyond it Submit refuses with
  // UNAVAILABLE.
  size_t max_queued = 100000;
  // Committed batches whose callbacks may wait; beyond it the writer waits.
  size_t max_pending_batches = 8;
};

template <typename Op>
class CommitPipeline {
 public:
  // Runs a batch in one transaction; one status per operation, in order.
  using CommitFn = std::function<std::vector<absl::Status>(std::vector<Op>&)>;

  // Starts the writer and callback threads.
  CommitPipeline(CommitPipelineOptions options, CommitFn commit)
      : options_(options), commit_(std::move(commit)) {
    writer_ = std::thread([this] { WriterLoop(); });
    callbacks_ = std::thread([this] { CallbackLoop(); });
  }

  ~CommitPipeline() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    writer_.join();
    callbacks_.join();
  }

  CommitPipeline(const CommitPipeline&) = delete;
  CommitPipeline& operator=(const CommitPipeline&) = delete;

  void Submit(Op op) {
    absl::Status refused;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        refused = absl::UnavailableError("the store is closing");
      } else if (queue_.size() >= options_.max_queued) {
        refused = absl::UnavailableError(
            absl::StrCat("the store is overloaded (", queue_.size(),
                         " writes queued); retry later"));
      } else {
        queue_.push_back(std::move(op));
        ++submitted_;
        return;
      }
    }
    op.done(std::move(refused));
  }

  // Blocks until every operation submitted before the call has committed
  // (or failed) and its callback has run.
  void Flush() {
    absl::MutexLock lock(&mu_);
    const uint64_t target = submitted_;
    auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return finished_ >= target;
    };
    mu_.Await(absl::Condition(&done));
  }

  // Batches handed to `commit` so far.
  uint64_t transactions() const {
    absl::MutexLock lock(&mu_);
    return transactions_;
  }
  // Operations waiting for the writer.
  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queue_.size();
  }

 private:
  struct Committed {
    std::vector<Op> ops;
    std::vector<absl::Status> statuses;
  };

  void WriterLoop() {
    for (;;) {
      std::vector<Op> batch;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || stopping_;
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) {  // Stopping, and everything is committed.
          writer_done_ = true;
          return;
        }
        const size_t n = std::min(queue_.size(), options_.max_batch);
        batch.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      std::vector<absl::Status> statuses = commit_(batch);
      statuses.resize(batch.size(),
                      absl::InternalError("the store returned no status"));
      absl::MutexLock lock(&mu_);
      ++transactions_;
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return committed_.size() < options_.max_pending_batches;
      };
      mu_.Await(absl::Condition(&room));
      committed_.push_back({std::move(batch), std::move(statuses)});
    }
  }

  void CallbackLoop() {
    for (;;) {
      Committed batch;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !committed_.empty() || writer_done_;
        };
        mu_.Await(absl::Condition(&ready));
        if (committed_.empty()) return;
        batch = std::move(committed_.front());
        committed_.pop_front();
      }
      for (size_t i = 0; i < batch.ops.size(); ++i) {
        batch.ops[i].done(std::move(batch.statuses[i]));
      }
      absl::MutexLock lock(&mu_);
      finished_ += batch.ops.size();
    }
  }

  const CommitPipelineOptions options_;
  const CommitFn commit_;

  mutable absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;  // Ops ever queued.
  uint64_t finished_ ABSL_GUARDED_BY(mu_) = 0;   // Ops whose done() ran.
  uint64_t transactions_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Committed> committed_ ABSL_GUARDED_BY(mu_);
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;

  std::thread writer_;
  std::thread callbacks_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_COMMIT_PIPELINE_H_
