#include "fs/jobs.h"

#include <ctime>
#include <exception>
#include <stdexcept>

namespace casfs {

namespace {

// Thrown from a job's progress callback once the table is stopping.
class JobStopped : public std::runtime_error {
 public:
  JobStopped() : std::runtime_error("stopped: the daemon is shutting down") {}
};

}  // namespace

const char* to_string(JobState state) {
  switch (state) {
    case JobState::kRunning:
      return "running";
    case JobState::kDone:
      return "done";
    case JobState::kFailed:
      return "failed";
  }
  return "unknown";
}

std::string format_utc(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::ordered_json JobSnapshot::to_json() const {
  nlohmann::ordered_json j;
  j["id"] = id;
  j["kind"] = kind;
  j["state"] = to_string(state);
  j["progress"] = {{"done", done}, {"total", total}};
  j["started"] = format_utc(started);
  j["ended"] = ended ? nlohmann::ordered_json(format_utc(*ended)) : nlohmann::ordered_json(nullptr);
  j["result"] = result;
  return j;
}

JobTable::JobTable(std::size_t keep_finished) : keep_finished_(keep_finished) {}

JobTable::~JobTable() {
  request_stop();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, job] : jobs_) {
      if (job->thread.joinable()) threads.push_back(std::move(job->thread));
    }
  }
  for (auto& t : threads) t.join();
}

void JobTable::request_stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
}

std::uint64_t JobTable::start(const std::string& kind, Body body) {
  std::vector<std::thread> finished;
  std::uint64_t id;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw std::runtime_error("the daemon is shutting down");
    for (const auto& [running_id, job] : jobs_) {
      if (job->snapshot.kind == kind && !job->snapshot.finished()) return running_id;
    }
    id = next_id_++;
    auto job = std::make_unique<Job>();
    job->snapshot.id = id;
    job->snapshot.kind = kind;
    job->snapshot.started = std::chrono::system_clock::now();
    Job& ref = *job;
    jobs_.emplace(id, std::move(job));
    // Started under the lock, so the entry has its thread before anyone can look.
    ref.thread = std::thread([this, &ref, body = std::move(body)] { run(ref, body); });
    finished = trim_locked();
  }
  for (auto& t : finished) t.join();
  return id;
}

void JobTable::run(Job& job, const Body& body) {
  ProgressFn progress = [this, &job](std::uint64_t done, std::uint64_t total) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) throw JobStopped();
      job.snapshot.done = done;
      job.snapshot.total = total;
    }
    changed_.notify_all();
  };
  nlohmann::ordered_json result;
  JobState state = JobState::kDone;
  try {
    result = body(progress);
  } catch (const std::exception& e) {
    state = JobState::kFailed;
    result = {{"error", e.what()}};
  } catch (...) {
    state = JobState::kFailed;
    result = {{"error", "unexpected error"}};
  }
  {
    std::lock_guard lock(mutex_);
    job.snapshot.state = state;
    job.snapshot.result = std::move(result);
    job.snapshot.ended = std::chrono::system_clock::now();
  }
  // From here on `job` may be gone (trimmed); only the table is touched.
  changed_.notify_all();
}

std::vector<std::thread> JobTable::trim_locked() {
  std::vector<std::thread> threads;
  std::size_t finished = 0;
  for (const auto& [id, job] : jobs_) finished += job->snapshot.finished() ? 1 : 0;
  for (auto it = jobs_.begin(); it != jobs_.end() && finished > keep_finished_;) {
    if (!it->second->snapshot.finished()) {
      ++it;
      continue;
    }
    if (it->second->thread.joinable()) threads.push_back(std::move(it->second->thread));
    it = jobs_.erase(it);
    --finished;
  }
  return threads;
}

std::optional<JobSnapshot> JobTable::get(std::uint64_t id) const {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second->snapshot;
}

std::vector<JobSnapshot> JobTable::list() const {
  std::lock_guard lock(mutex_);
  std::vector<JobSnapshot> out;
  for (const auto& [id, job] : jobs_) out.push_back(job->snapshot);
  return out;
}

std::size_t JobTable::running() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (const auto& [id, job] : jobs_) n += job->snapshot.finished() ? 0 : 1;
  return n;
}

std::optional<JobSnapshot> JobTable::wait(std::uint64_t id,
                                          std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return std::nullopt;
    if (it->second->snapshot.finished()) return it->second->snapshot;
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      it = jobs_.find(id);
      if (it == jobs_.end()) return std::nullopt;
      return it->second->snapshot;
    }
  }
}

}  // namespace casfs
