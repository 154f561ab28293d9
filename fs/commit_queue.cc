#include "fs/commit_queue.h"

#include <string>
#include <utility>

#include "fs/long_work.h"
#include "store/error.h"

namespace casfs {

namespace {
constexpr std::chrono::milliseconds kIdleCommit{200};
constexpr std::size_t kFailedCommitsKept = 16;
}  // namespace

CommitQueue::CommitQueue(LmdbEnv& env, std::chrono::milliseconds interval)
    : env_(env), interval_(interval), thread_([this] { loop(); }) {}

CommitQueue::~CommitQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_queue_.notify_one();
  thread_.join();
}

LmdbTxn& CommitQueue::open_write(std::unique_lock<std::mutex>& lock) {
  if (!txn_) before_long_work();
  while (!txn_) {
    if (stopping_) throw StoreError(ESHUTDOWN, "the filesystem is shutting down");
    const std::uint64_t attempt = open_attempts_;
    open_wanted_ = true;
    wake_queue_.notify_one();
    wake_callers_.wait(lock, [&] { return txn_ || open_attempts_ != attempt || stopping_; });
    if (!txn_ && open_attempts_ != attempt && open_failure_) std::rethrow_exception(open_failure_);
  }
  return *txn_;
}

void CommitQueue::wait_for_commit(std::unique_lock<std::mutex>& lock, std::uint64_t generation) {
  before_long_work();
  if (generation_ == generation && txn_) {
    commit_wanted_ = true;
    wake_queue_.notify_one();
  }
  wake_callers_.wait(lock, [&] { return generation_ > generation; });
  for (const auto& [failed, error] : failed_commits_)
    if (failed == generation) std::rethrow_exception(error);
}

void CommitQueue::commit() {
  std::unique_lock lock(mutex_);
  // Without an open transaction everything is committed already.
  if (txn_) wait_for_commit(lock, generation_);
}

void CommitQueue::commit_open() {
  if (!txn_) return;
  const std::uint64_t generation = generation_++;
  try {
    txn_->commit();
  } catch (const StoreError& e) {
    // Nobody may be waiting for this commit; the next one that is waited for tells.
    failed_commits_.emplace_back(
        generation,
        std::make_exception_ptr(StoreError(
            e.code(),
            std::string("filesystem changes of the last moments were lost: ") + e.what())));
    if (failed_commits_.size() > kFailedCommitsKept) failed_commits_.erase(failed_commits_.begin());
  }
  txn_.reset();
}

void CommitQueue::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (txn_ && (commit_wanted_ || stopping_ || now >= opened_at_ + interval_ ||
                 now >= last_job_at_ + kIdleCommit)) {
      // Commit an interval after opening, or sooner once nothing has come for a
      // while: a quiet filesystem should not hold LMDB's writer lock (the store's
      // packer needs it) nor leave changes waiting.
      commit_wanted_ = false;
      commit_open();
      wake_callers_.notify_all();
      continue;
    }
    if (stopping_) break;
    if (open_wanted_ && !txn_) {
      open_wanted_ = false;
      // Begun without the lock: LMDB's writer lock may be held by the store's packer
      // for a while, and readers need not wait for it meanwhile.
      lock.unlock();
      std::optional<LmdbTxn> opened;
      std::exception_ptr failure;
      try {
        opened.emplace(LmdbTxn::write(env_));
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      if (opened) {
        txn_.emplace(std::move(*opened));
        opened_at_ = last_job_at_ = std::chrono::steady_clock::now();
      }
      open_failure_ = failure;
      ++open_attempts_;
      wake_callers_.notify_all();
      continue;
    }
    commit_wanted_ = false;  // nothing open, so nothing to commit
    if (txn_) {
      wake_queue_.wait_until(lock, std::min(opened_at_ + interval_, last_job_at_ + kIdleCommit));
    } else {
      wake_queue_.wait(lock, [&] { return open_wanted_ || stopping_; });
    }
  }
}

}  // namespace casfs
