// Group commit for the filesystem's tables. Every change runs as a job on one
// thread, inside one LMDB write transaction that stays open while jobs keep coming
// and is committed (durably) once it is `interval` old, when no job has come for a
// fifth of a second, or at once when a job asks.
// Many operations thus share one commit and one sync, as in a journal, and a crash
// loses at most the last interval of changes that nobody asked to be durable.
//
// Reading jobs run in the open write transaction when there is one, so they see
// every change made before them; otherwise in a fresh read transaction, so reads
// alone never take LMDB's writer lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

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
  // is rethrown here. A job that throws must leave the transaction as it found it
  // (the namespace and file-data operations check before they change anything).
  template <typename F>
  auto write(F&& f, Durability durability = Durability::kLater) {
    return run<std::invoke_result_t<F&, LmdbTxn&>>([&](LmdbTxn& txn) { return f(txn); }, true,
                                                   durability);
  }
  // Runs f(const LmdbTxn&) seeing every change made so far.
  template <typename F>
  auto read(F&& f) {
    return run<std::invoke_result_t<F&, const LmdbTxn&>>(
        [&](LmdbTxn& txn) { return f(std::as_const(txn)); }, false, Durability::kLater);
  }
  // Commits and syncs everything so far.
  void commit();

 private:
  struct Job {
    std::function<void(LmdbTxn&)> fn;
    bool writes = false;
    Durability durability = Durability::kLater;
    std::promise<void> done;  // set after the job ran (and, for kNow, was committed)
  };

  template <typename R, typename F>
  R run(F&& f, bool writes, Durability durability) {
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> result;
    std::exception_ptr error;
    Job job;
    job.writes = writes;
    job.durability = durability;
    job.fn = [&](LmdbTxn& txn) {
      try {
        if constexpr (std::is_void_v<R>) {
          f(txn);
          result.emplace(true);
        } else {
          result.emplace(f(txn));
        }
      } catch (...) {
        error = std::current_exception();
      }
    };
    std::future<void> done = job.done.get_future();
    submit(std::move(job));
    done.get();  // throws when the commit that the job needed failed
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<R>) return std::move(*result);
  }

  void submit(Job job);
  void loop();
  // Commits the open transaction; on failure every change since the last commit is
  // gone, which the error says.
  void commit_open(std::exception_ptr& failure);

  LmdbEnv& env_;
  const std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::optional<LmdbTxn> txn_;  // the open write transaction; the queue thread's only
  std::chrono::steady_clock::time_point opened_at_;
  std::chrono::steady_clock::time_point last_job_at_;
  std::thread thread_;
};

}  // namespace casfs
