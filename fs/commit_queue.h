// Group commit for the filesystem's tables. Every change runs inside one LMDB write
// transaction that stays open while changes keep coming and is committed (durably)
// once it is `interval` old, when no change has come for a fifth of a second, or at
// once when a caller asks.
// Many operations thus share one commit and one sync, as in a journal, and a crash
// loses at most the last interval of changes that nobody asked to be durable.
//
// Jobs run on the caller's own thread, one at a time under the queue's mutex: a FUSE
// request that changes metadata costs no hand-off to another thread, only a lock.
// LMDB ties a write transaction's lock to the thread that began it, so the queue's
// own thread begins and commits every transaction; callers only borrow it, and wait
// for that thread only when no transaction is open or when they need a commit.
//
// Reading jobs run in the open write transaction when there is one, so they see
// every change made before them; otherwise in a fresh read transaction on the
// caller's thread, in parallel with other readers, so reads alone never take LMDB's
// writer lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "fs/long_work.h"
#include "store/lmdb.h"

namespace casfs {

enum class Durability {
  kLater,  // committed with the next group commit
  kNow,    // committed (and synced) before the job's caller returns
};

class CommitQueue {
 public:
  CommitQueue(LmdbEnv& env, std::chrono::milliseconds interval);
  ~CommitQueue();  // commits what is pending, then stops
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Runs f(LmdbTxn&) in the write transaction and returns its result; its exception
  // propagates. A job that throws must leave the transaction as it found it (the
  // namespace and file-data operations check before they change anything).
  template <typename F>
  auto write(F&& f, Durability durability = Durability::kLater) {
    using Result = std::invoke_result_t<F&, LmdbTxn&>;
    std::unique_lock lock = lock_announcing_wait(mutex_);
    LmdbTxn& txn = open_write(lock);
    const std::uint64_t generation = generation_;
    last_job_at_ = std::chrono::steady_clock::now();
    if (durability == Durability::kLater) return f(txn);
    if constexpr (std::is_void_v<Result>) {
      f(txn);
      wait_for_commit(lock, generation);
    } else {
      Result result = f(txn);
      wait_for_commit(lock, generation);
      return result;
    }
  }
  // Runs f(const LmdbTxn&) seeing every change made so far.
  template <typename F>
  auto read(F&& f) {
    std::unique_lock lock = lock_announcing_wait(mutex_);
    if (txn_) return f(std::as_const(*txn_));
    // Begun under the lock, so the snapshot holds every change whose job has returned.
    const LmdbTxn snapshot = LmdbTxn::read(env_);
    lock.unlock();
    return f(snapshot);
  }
  // Commits and syncs everything so far.
  void commit();

 private:
  // Returns the open write transaction, having the queue's thread begin one first
  // when none is open. Called with the lock held; returns with it held.
  LmdbTxn& open_write(std::unique_lock<std::mutex>& lock);
  // Asks the queue's thread to commit transaction `generation` (if it is still
  // open) and waits for the outcome.
  void wait_for_commit(std::unique_lock<std::mutex>& lock, std::uint64_t generation);
  void loop();
  // Commits the open transaction with the lock held; on failure every change since
  // the last commit is gone, which the recorded error says.
  void commit_open();

  LmdbEnv& env_;
  const std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_queue_;    // work for the queue's thread
  std::condition_variable wake_callers_;  // a transaction opened or committed
  bool stopping_ = false;
  bool open_wanted_ = false;
  bool commit_wanted_ = false;
  std::optional<LmdbTxn> txn_;  // begun and committed only by the queue's thread
  // generation_ numbers transactions: the open one, or the next one to open. The
  // last few failed commits are kept so that a waiter learns its own transaction's
  // fate even when it wakes after later commits.
  std::uint64_t generation_ = 1;
  std::vector<std::pair<std::uint64_t, std::exception_ptr>> failed_commits_;
  std::uint64_t open_attempts_ = 0;
  std::exception_ptr open_failure_;
  std::chrono::steady_clock::time_point opened_at_;
  std::chrono::steady_clock::time_point last_job_at_;
  std::thread thread_;
};

}  // namespace casfs
