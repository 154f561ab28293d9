#include "fs/commit_queue.h"

#include <utility>
#include <vector>

#include "store/error.h"

namespace casfs {

namespace {
constexpr std::chrono::milliseconds kIdleCommit{200};
}  // namespace

CommitQueue::CommitQueue(LmdbEnv& env, std::chrono::milliseconds interval)
    : env_(env), interval_(interval), thread_([this] { loop(); }) {}

CommitQueue::~CommitQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void CommitQueue::submit(Job job) {
  {
    std::lock_guard lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void CommitQueue::commit() {
  write([](LmdbTxn&) {}, Durability::kNow);
}

void CommitQueue::commit_open(std::exception_ptr& failure) {
  if (!txn_) return;
  try {
    txn_->commit();
  } catch (const StoreError& e) {
    failure = std::make_exception_ptr(StoreError(
        e.code(), std::string("filesystem changes of the last moments were lost: ") + e.what()));
  }
  txn_.reset();
}

void CommitQueue::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (jobs_.empty()) {
      if (stopping_) break;
      if (txn_) {
        // Commit an interval after opening, or sooner once nothing has come for a
        // while: a quiet filesystem should not hold LMDB's writer lock (the store's
        // packer needs it) nor leave changes waiting.
        const auto deadline = std::min(opened_at_ + interval_, last_job_at_ + kIdleCommit);
        if (wake_.wait_until(lock, deadline, [&] { return !jobs_.empty() || stopping_; })) continue;
        lock.unlock();
        std::exception_ptr ignored;  // nobody is waiting; the next commit will tell
        commit_open(ignored);
        lock.lock();
      } else {
        wake_.wait(lock, [&] { return !jobs_.empty() || stopping_; });
      }
      continue;
    }
    std::deque<Job> batch;
    batch.swap(jobs_);
    lock.unlock();
    last_job_at_ = std::chrono::steady_clock::now();

    std::vector<Job*> waiting_for_commit;
    bool commit_now = false;
    for (Job& job : batch) {
      if (job.writes && !txn_) {
        try {
          txn_.emplace(LmdbTxn::write(env_));
          opened_at_ = std::chrono::steady_clock::now();
        } catch (...) {
          job.done.set_exception(std::current_exception());
          continue;
        }
      }
      if (txn_) {
        job.fn(*txn_);
      } else {
        try {
          LmdbTxn snapshot = LmdbTxn::read(env_);
          job.fn(snapshot);
        } catch (...) {
          job.done.set_exception(std::current_exception());
          continue;
        }
      }
      if (job.durability == Durability::kNow) {
        commit_now = true;
        waiting_for_commit.push_back(&job);
      } else {
        job.done.set_value();
      }
    }
    if (commit_now || (txn_ && std::chrono::steady_clock::now() - opened_at_ >= interval_)) {
      std::exception_ptr failure;
      commit_open(failure);
      for (Job* job : waiting_for_commit) {
        if (failure) {
          job->done.set_exception(failure);
        } else {
          job->done.set_value();
        }
      }
    }
    lock.lock();
  }
  lock.unlock();
  std::exception_ptr ignored;
  commit_open(ignored);
}

}  // namespace casfs
