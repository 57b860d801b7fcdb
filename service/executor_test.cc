#include "service/executor.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

// Records which tasks ran, in order, and whether two ever ran at once.
class RunRecorder {
 public:
  void Record(int task) {
    if (running_.fetch_add(1) != 0) overlapped_.store(true);
    {
      absl::MutexLock lock(&mu_);
      order_.push_back(task);
    }
    running_.fetch_sub(1);
  }
  std::vector<int> order() const {
    absl::MutexLock lock(&mu_);
    return order_;
  }
  bool overlapped() const { return overlapped_.load(); }

 private:
  mutable absl::Mutex mu_;
  std::vector<int> order_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> running_{0};
  std::atomic<bool> overlapped_{false};
};

TEST(SerialExecutorTest, RunsTasksOneAtATimeInPostOrder) {
  ThreadPool pool(4);
  auto strand = SerialExecutor::Create(&pool);
  RunRecorder runs;
  absl::Notification done;
  constexpr int kTasks = 1000;
  for (int i = 0; i < kTasks; ++i) {
    strand->Post([&, i] {
      runs.Record(i);
      if (i == kTasks - 1) done.Notify();
    });
  }
  done.WaitForNotification();
  EXPECT_FALSE(runs.overlapped());
  const std::vector<int> order = runs.order();
  ASSERT_EQ(order.size(), static_cast<size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) ASSERT_EQ(order[i], i);
}

TEST(SerialExecutorTest, TwoStrandsRunConcurrently) {
  ThreadPool pool(2);
  auto a = SerialExecutor::Create(&pool);
  auto b = SerialExecutor::Create(&pool);
  absl::Notification a_started, b_ran;
  a->Post([&] {
    a_started.Notify();
    // Blocks until b's task ran: would deadlock if strands shared a thread.
    b_ran.WaitForNotification();
  });
  a_started.WaitForNotification();
  b->Post([&] { b_ran.Notify(); });
  EXPECT_TRUE(b_ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(SerialExecutorTest, TheLastTaskMayDropTheLastReference) {
  ThreadPool pool(1);
  auto strand = SerialExecutor::Create(&pool);
  absl::Notification done;
  auto* holder = new std::shared_ptr<SerialExecutor>(strand);
  strand.reset();
  (*holder)->Post([holder, &done] {
    delete holder;
    done.Notify();
  });
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(SerialExecutorTest, DispatchRunsAtOnceOnTheCallerWhenIdle) {
  ThreadPool pool(2);
  auto strand = SerialExecutor::Create(&pool);
  std::thread::id ran_on;
  strand->Dispatch([&] { ran_on = std::this_thread::get_id(); });
  // Ran before Dispatch returned, on this thread.
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(SerialExecutorTest, DispatchQueuesBehindARunningTaskInOrder) {
  ThreadPool pool(2);
  auto strand = SerialExecutor::Create(&pool);
  absl::Notification started, release, done;
  RunRecorder runs;
  std::thread::id dispatched_on;
  strand->Post([&] {
    started.Notify();
    release.WaitForNotification();
    runs.Record(1);
  });
  started.WaitForNotification();
  strand->Dispatch([&] {
    dispatched_on = std::this_thread::get_id();
    runs.Record(2);
    done.Notify();
  });
  // The strand is busy: Dispatch returned without running the task.
  EXPECT_TRUE(runs.order().empty());
  release.Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(dispatched_on, std::this_thread::get_id());
  EXPECT_THAT(runs.order(), ::testing::ElementsAre(1, 2));
}

TEST(SerialExecutorTest, TasksPostedDuringADispatchedTaskRunAfterIt) {
  ThreadPool pool(2);
  auto strand = SerialExecutor::Create(&pool);
  RunRecorder runs;
  absl::Notification done;
  strand->Dispatch([&] {
    // Another thread posts while this task still runs on the caller: the
    // posted task must wait for it, then run on the pool.
    std::thread poster([&] {
      strand->Post([&] {
        runs.Record(2);
        done.Notify();
      });
    });
    poster.join();
    runs.Record(1);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(runs.overlapped());
  EXPECT_THAT(runs.order(), ::testing::ElementsAre(1, 2));
}

TEST(TimerTest, RunsTasksInDueOrderAfterTheirDelay) {
  Timer timer;
  absl::Mutex mu;
  std::vector<int> order;
  absl::Notification done;
  const absl::Time start = absl::Now();
  timer.RunAfter(absl::Milliseconds(60), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(2);
    done.Notify();
  });
  timer.RunAfter(absl::Milliseconds(20), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(1);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(60));
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ::testing::ElementsAre(1, 2));
}

TEST(TimerTest, PendingTasksAreDroppedOnDestruction) {
  std::atomic<bool> ran{false};
  {
    Timer timer;
    timer.RunAfter(absl::Hours(1), [&] { ran.store(true); });
  }
  EXPECT_FALSE(ran.load());
}

}  // namespace
}  // namespace parley::service
