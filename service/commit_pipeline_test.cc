#include "service/commit_pipeline.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

struct Op {
  int value = 0;
  std::function<void(absl::Status)> done;
};

TEST(CommitPipelineTest, CallbacksRunInCommitOrderWithEachStatus) {
  absl::Mutex mu;
  std::vector<int> order;
  {
    CommitPipeline<Op> pipeline({}, [](std::vector<Op>& batch) {
      std::vector<absl::Status> out;
      for (const Op& op : batch) {
        out.push_back(op.value % 2 == 0 ? absl::OkStatus()
                                        : absl::NotFoundError("odd"));
      }
      return out;
    });
    for (int i = 0; i < 100; ++i) {
      pipeline.Submit({i, [&, i](absl::Status s) {
                         absl::MutexLock lock(&mu);
                         EXPECT_EQ(s.ok(), i % 2 == 0);
                         order.push_back(i);
                       }});
    }
    pipeline.Flush();
    absl::MutexLock lock(&mu);
    ASSERT_EQ(order.size(), 100u);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  }
}

TEST(CommitPipelineTest, QueuedWritesCommitInFewBatches) {
  absl::Notification release;
  std::vector<size_t> sizes;
  CommitPipelineOptions options;
  options.max_batch = 50;
  CommitPipeline<Op> pipeline(options, [&](std::vector<Op>& batch) {
    release.WaitForNotification();
    sizes.push_back(batch.size());
    return std::vector<absl::Status>(batch.size());
  });
  for (int i = 0; i < 101; ++i) pipeline.Submit({i, [](absl::Status) {}});
  release.Notify();
  pipeline.Flush();
  // The first batch may have started before the rest were queued.
  EXPECT_LE(sizes.size(), 4u);
  for (size_t n : sizes) EXPECT_LE(n, 50u);
  EXPECT_EQ(pipeline.transactions(), sizes.size());
}

TEST(CommitPipelineTest, FullQueueRefusesWithUnavailableOnTheCaller) {
  absl::Notification taken;
  absl::Notification release;
  CommitPipelineOptions options;
  options.max_queued = 2;
  CommitPipeline<Op> pipeline(options, [&](std::vector<Op>& batch) {
    if (!taken.HasBeenNotified()) taken.Notify();
    release.WaitForNotification();
    return std::vector<absl::Status>(batch.size());
  });
  // The writer takes the first into a batch and blocks; two more queue.
  pipeline.Submit({0, [](absl::Status) {}});
  taken.WaitForNotification();
  pipeline.Submit({1, [](absl::Status) {}});
  pipeline.Submit({2, [](absl::Status) {}});
  absl::Status refused;
  pipeline.Submit({3, [&](absl::Status s) { refused = s; }});
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  release.Notify();
  pipeline.Flush();
}

TEST(CommitPipelineTest, DestructionCommitsWhatIsQueued) {
  int done = 0;
  {
    CommitPipeline<Op> pipeline({}, [](std::vector<Op>& batch) {
      return std::vector<absl::Status>(batch.size());
    });
    for (int i = 0; i < 10; ++i) {
      pipeline.Submit({i, [&](absl::Status s) { done += s.ok() ? 1 : 0; }});
    }
  }
  EXPECT_EQ(done, 10);
}

}  // namespace
}  // namespace parley::service
