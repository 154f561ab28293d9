// The daemon's job table: states, results, progress, joining a running job of the
// same kind, stopping, and how many finished jobs it keeps.
#include "fs/jobs.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

namespace casfs {
namespace {

using Json = nlohmann::ordered_json;
using namespace std::chrono_literals;

JobSnapshot wait_done(const JobTable& table, std::uint64_t id) {
  for (int i = 0; i < 100; ++i) {
    auto job = table.wait(id, 100ms);
    if (job && job->finished()) return *job;
  }
  ADD_FAILURE() << "job " << id << " did not finish";
  return {};
}

TEST(JobTableTest, DoneJobKeepsItsResult) {
  JobTable table;
  const auto id = table.start("pack", [](const ProgressFn&) { return Json{{"objects", 3}}; });
  const JobSnapshot job = wait_done(table, id);
  EXPECT_EQ(job.state, JobState::kDone);
  EXPECT_EQ(job.kind, "pack");
  EXPECT_EQ(job.result["objects"], 3);
  ASSERT_TRUE(job.ended.has_value());
  EXPECT_GE(*job.ended, job.started);
  const Json j = job.to_json();
  EXPECT_EQ(j["state"], "done");
  EXPECT_EQ(j["id"], id);
  EXPECT_TRUE(j["ended"].is_string());
}

TEST(JobTableTest, ThrowingJobFailsWithItsMessage) {
  JobTable table;
  const auto id = table.start(
      "gc", [](const ProgressFn&) -> Json { throw std::runtime_error("disk on fire"); });
  const JobSnapshot job = wait_done(table, id);
  EXPECT_EQ(job.state, JobState::kFailed);
  EXPECT_EQ(job.result["error"], "disk on fire");
  EXPECT_EQ(job.to_json()["state"], "failed");
}

TEST(JobTableTest, ProgressShowsAndSameKindJoinsTheRunningJob) {
  JobTable table;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> reported;
  const auto id = table.start("verify", [&, released](const ProgressFn& progress) {
    progress(3, 10);
    reported.set_value();
    released.wait();
    progress(10, 10);
    return Json{{"clean", true}};
  });
  reported.get_future().wait();
  auto running = table.get(id);
  ASSERT_TRUE(running);
  EXPECT_EQ(running->state, JobState::kRunning);
  EXPECT_EQ(running->done, 3u);
  EXPECT_EQ(running->total, 10u);
  EXPECT_EQ(table.running(), 1u);
  // The same kind joins; wait() returns a running job once its time is up.
  EXPECT_EQ(table.start("verify", [](const ProgressFn&) { return Json(); }), id);
  EXPECT_EQ(table.wait(id, 10ms)->state, JobState::kRunning);
  // Another kind is a job of its own.
  const auto other = table.start("gc", [](const ProgressFn&) { return Json(); });
  EXPECT_NE(other, id);
  release.set_value();
  EXPECT_EQ(wait_done(table, id).done, 10u);
  wait_done(table, other);
  EXPECT_EQ(table.running(), 0u);
  // Once finished, the kind starts afresh.
  EXPECT_NE(table.start("verify", [](const ProgressFn&) { return Json(); }), id);
}

TEST(JobTableTest, StopEndsRunningJobsAtTheirNextProgressCall) {
  JobTable table;
  std::promise<void> started;
  const auto id = table.start("pack", [&](const ProgressFn& progress) -> Json {
    started.set_value();
    for (std::uint64_t i = 0;; ++i) {
      progress(i, 0);
      std::this_thread::sleep_for(1ms);
    }
  });
  started.get_future().wait();
  table.request_stop();
  const JobSnapshot job = wait_done(table, id);
  EXPECT_EQ(job.state, JobState::kFailed);
  EXPECT_NE(job.result["error"].get<std::string>().find("shutting down"), std::string::npos);
  EXPECT_THROW(table.start("gc", [](const ProgressFn&) { return Json(); }), std::runtime_error);
}

TEST(JobTableTest, DestructorStopsAndWaitsForRunningJobs) {
  auto table = std::make_unique<JobTable>();
  std::atomic<bool> ended{false};
  std::promise<void> started;
  table->start("repack", [&](const ProgressFn& progress) -> Json {
    started.set_value();
    try {
      for (;;) {
        progress(0, 0);
        std::this_thread::sleep_for(1ms);
      }
    } catch (...) {
      ended = true;
      throw;
    }
  });
  started.get_future().wait();
  table.reset();
  EXPECT_TRUE(ended);
}

TEST(JobTableTest, KeepsABoundedNumberOfFinishedJobs) {
  JobTable table(/*keep_finished=*/2);
  std::uint64_t last = 0;
  for (int i = 0; i < 6; ++i) {
    last = table.start("pack", [i](const ProgressFn&) { return Json{{"n", i}}; });
    wait_done(table, last);
  }
  const auto jobs = table.list();
  ASSERT_LE(jobs.size(), 3u);
  EXPECT_EQ(jobs.back().id, last);
  for (std::size_t i = 1; i < jobs.size(); ++i) EXPECT_LT(jobs[i - 1].id, jobs[i].id);
  EXPECT_FALSE(table.get(1).has_value());
  EXPECT_FALSE(table.wait(1, 1ms).has_value());
}

}  // namespace
}  // namespace casfs
