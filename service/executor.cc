#include "service/executor.h"

#include <utility>

namespace parley::service {

ThreadPool::ThreadPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void ThreadPool::Run() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !tasks_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

Timer::Timer() : thread_([this] { Run(); }) {}

Timer::~Timer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    changed_.Signal();
  }
  thread_.join();
}

void Timer::RunAfter(absl::Duration delay, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.emplace(absl::Now() + delay, std::move(task));
  changed_.Signal();
}

void Timer::Run() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    if (tasks_.empty()) {
      changed_.Wait(&mu_);
      continue;
    }
    auto first = tasks_.begin();
    if (first->first > absl::Now()) {
      changed_.WaitWithDeadline(&mu_, first->first);
      continue;
    }
    std::function<void()> task = std::move(first->second);
    tasks_.erase(first);
    mu_.Unlock();
    task();
    mu_.Lock();
  }
}

std::shared_ptr<SerialExecutor> SerialExecutor::Create(ThreadPool* pool) {
  return std::shared_ptr<SerialExecutor>(new SerialExecutor(pool));
}

void SerialExecutor::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
  if (!scheduled_) {
    scheduled_ = true;
    pool_->Post([self = shared_from_this()] { self->Drain(); });
  }
}

void SerialExecutor::Dispatch(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    if (scheduled_) {
      tasks_.push_back(std::move(task));
      return;
    }
    scheduled_ = true;  // This thread runs the strand for now.
  }
  const std::shared_ptr<SerialExecutor> self = shared_from_this();
  task();
  absl::MutexLock lock(&mu_);
  if (tasks_.empty()) {
    scheduled_ = false;
    return;
  }
  // Posted while the task ran: the pool drains them.
  pool_->Post([self] { self->Drain(); });
}

void SerialExecutor::Drain() {
  // A bounded turn, then back into the pool's queue: one busy stream must not
  // hold a pool thread forever.
  constexpr int kTasksPerTurn = 64;
  for (int i = 0; i < kTasksPerTurn; ++i) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      if (tasks_.empty()) {
        scheduled_ = false;
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
  pool_->Post([self = shared_from_this()] { self->Drain(); });
}

}  // namespace parley::service
