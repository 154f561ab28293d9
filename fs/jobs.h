// The daemon's table of maintenance jobs started through the control socket: each
// runs on a thread of its own, reports progress, and ends done (with a result) or
// failed (with an error); finished jobs are kept for a while so `casfsctl jobs` can
// show them.
//
// Asking for a job of a kind that is already running joins that job instead of
// queueing a second one behind the store's maintenance lock, which would only
// repeat the work.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "store/store.h"

namespace casfs {

enum class JobState { kRunning, kDone, kFailed };

const char* to_string(JobState state);

struct JobSnapshot {
  std::uint64_t id = 0;
  std::string kind;
  JobState state = JobState::kRunning;
  std::uint64_t done = 0;
  std::uint64_t total = 0;
  std::chrono::system_clock::time_point started;
  std::optional<std::chrono::system_clock::time_point> ended;
  // Done: what the job returned. Failed: {"error": message}.
  nlohmann::ordered_json result;

  bool finished() const { return state != JobState::kRunning; }
  // {"id", "kind", "state", "progress": {"done", "total"}, "started", "ended",
  //  "result"}, times as ISO 8601 UTC.
  nlohmann::ordered_json to_json() const;
};

// ISO 8601 UTC with seconds: "2024-05-01T12:00:00Z".
std::string format_utc(std::chrono::system_clock::time_point t);

class JobTable {
 public:
  // Does the work and returns the result. `progress` may be called from any thread
  // the body uses; once the table is stopping it throws, which ends the body early
  // (the store's jobs call it only between committed batches).
  using Body = std::function<nlohmann::ordered_json(const ProgressFn& progress)>;

  // Keeps at most `keep_finished` finished jobs, dropping the oldest.
  explicit JobTable(std::size_t keep_finished = 32);
  // Stops every running job at its next progress call and waits for it.
  ~JobTable();
  JobTable(const JobTable&) = delete;
  JobTable& operator=(const JobTable&) = delete;

  // Starts `body` as a job of `kind`, or returns the running job of that kind.
  // Throws std::runtime_error once the table is stopping.
  std::uint64_t start(const std::string& kind, Body body);

  std::optional<JobSnapshot> get(std::uint64_t id) const;
  // Every job kept, in the order they were started.
  std::vector<JobSnapshot> list() const;
  std::size_t running() const;

  // The job once it has finished, or as it is after `timeout`; nullopt if unknown.
  std::optional<JobSnapshot> wait(std::uint64_t id, std::chrono::milliseconds timeout) const;

  // From now on start() refuses and running jobs stop at their next progress call.
  void request_stop();

 private:
  struct Job {
    JobSnapshot snapshot;
    std::thread thread;
  };

  void run(Job& job, const Body& body);
  // Moves the threads of finished jobs past the limit out, to be joined without the
  // lock (a finishing job takes it).
  std::vector<std::thread> trim_locked();

  const std::size_t keep_finished_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  bool stopping_ = false;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, std::unique_ptr<Job>> jobs_;  // by id: the order of starting
};

}  // namespace casfs
