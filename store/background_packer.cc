#include "store/background_packer.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>

#include "store/index.h"
#include "store/io_engine.h"
#include "store/lmdb.h"
#include "store/log.h"

namespace casfs {

namespace {

// Thrown from pack()'s progress callback to end a run at a batch boundary: pack()
// calls it only after a batch is committed, and its unlink helper is waited for as
// the exception passes, so nothing is left half done.
struct Stopped {};

// From <linux/ioprio.h>, which C++ cannot include (a parameter there is named
// `class`).
constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassBestEffort = 2;
constexpr int kIoprioClassShift = 13;

// After a failed run (a full disk, say) the packer waits this long, or the age
// threshold if that is longer, before it tries again.
constexpr std::chrono::seconds kRetryAfterFailure{30};

std::chrono::milliseconds poll_interval(std::chrono::milliseconds age) {
  return std::clamp(age / 4, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
}

// The sync engine starts its worker threads on first use, and a thread inherits its
// creator's priority: were the packer the first to use the engine, every foreground
// read and write handed to those workers afterwards would run at the packer's
// priority. So they are started here, on the caller's thread. (io_uring's workers
// belong to the ring of the thread that submits, so the packer's stay its own.)
void start_io_workers(IoEngine& io) {
  if (io.kind() != IoEngineKind::kSync) return;
  std::array<ReadOp, 4> ops{};  // fd -1: each fails at once with EBADF
  io.read(ops);
}

}  // namespace

const char* to_string(PackerState::Phase phase) {
  switch (phase) {
    case PackerState::Phase::kOff:
      return "off";
    case PackerState::Phase::kIdle:
      return "idle";
    case PackerState::Phase::kPacking:
      return "packing";
  }
  return "unknown";
}

void lower_thread_priority() {
  const pid_t tid = ::gettid();
  // Failing only leaves the packer as fast as the foreground, which is no reason to
  // stop packing: the results are ignored.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 19);
  (void)::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid,
                  kIoprioClassBestEffort << kIoprioClassShift | 7);
}

BackgroundPacker::BackgroundPacker(Store& store, const PackerOptions& options)
    : store_(store), options_(options), poll_(poll_interval(options.age)) {
  state_.options = options;
  if (!options.enabled) return;
  start_io_workers(store.io());
  state_.phase = PackerState::Phase::kIdle;
  thread_ = std::thread([this] { loop(); });
}

BackgroundPacker::~BackgroundPacker() {
  request_stop();
  if (thread_.joinable()) thread_.join();
}

void BackgroundPacker::request_stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
}

void BackgroundPacker::recount() {
  {
    std::lock_guard lock(mutex_);
    recount_ = true;
  }
  wake_.notify_all();
}

PackerState BackgroundPacker::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

std::uint64_t BackgroundPacker::object_count() {
  auto txn = LmdbTxn::read(store_.env());
  return store_.index().object_count(txn);
}

BackgroundPacker::Baseline BackgroundPacker::walk() {
  Baseline base;
  // Taken before the walk: bytes added during it are counted twice at worst, which
  // only makes the next run come a little early.
  base.added = store_.loose_added();
  StoreStatus s = store_.status();
  // The index's entries in the snapshot the walk counted, so that each object
  // committed since shows once, as growth of the count. (Counted in a transaction
  // of its own before the walk, an object committed in between was counted twice.)
  base.entries = s.objects();
  base.objects = s.unpacked_objects();
  base.bytes = s.unpacked_bytes();
  return base;
}

bool BackgroundPacker::run_pack() {
  const auto started = std::chrono::system_clock::now();
  PackReport report;
  std::string error;
  try {
    report = store_.pack([this](std::uint64_t done, std::uint64_t total) {
      if (stop_) throw Stopped{};
      std::lock_guard lock(mutex_);
      state_.progress_done = done;
      state_.progress_total = total;
    });
  } catch (const Stopped&) {
    return false;
  } catch (const std::exception& e) {
    error = e.what();
    log::error("background pack failed: %s", e.what());
  }
  if (error.empty() && report.objects > 0) {
    log::info("background pack: %llu objects, %llu bytes -> %llu bytes",
              static_cast<unsigned long long>(report.objects),
              static_cast<unsigned long long>(report.raw_bytes),
              static_cast<unsigned long long>(report.stored_bytes));
  }
  std::lock_guard lock(mutex_);
  state_.runs += 1;
  state_.objects_packed += report.objects;
  state_.last_start = started;
  state_.last_end = std::chrono::system_clock::now();
  state_.last_report = report;
  state_.last_error = error;
  state_.progress_done = state_.progress_total = 0;
  state_.phase = PackerState::Phase::kIdle;
  return true;
}

void BackgroundPacker::loop() {
  lower_thread_priority();
  Baseline base;
  // Loose objects that the last run left behind (damaged ones, which pack skips):
  // they must not set off run after run.
  std::uint64_t stuck = 0;
  // When loose objects newer than the last run were first seen (while `fresh` is
  // nonzero): the age threshold counts from here.
  Clock::time_point fresh_since{};
  bool had_fresh = false;
  Clock::time_point not_before{};  // backing off after a failure

  std::unique_lock lock(mutex_);
  while (!stop_) {
    if (recount_) {
      recount_ = false;
      lock.unlock();
      try {
        base = walk();
      } catch (const std::exception& e) {
        log::warning("background packer cannot count loose objects: %s", e.what());
        not_before = Clock::now() + kRetryAfterFailure;
      }
      lock.lock();
      continue;
    }
    // Objects are only added between walks (pack keeps the count, and gc, which
    // drops some, asks for a recount), so the count's growth is the new loose ones.
    std::uint64_t entries = base.entries;
    try {
      entries = object_count();
    } catch (const std::exception&) {
      // Counted again at the next poll.
    }
    const LooseAdded added = store_.loose_added();
    const std::uint64_t objects =
        base.objects + (entries > base.entries ? entries - base.entries : 0);
    const std::uint64_t bytes = base.bytes + (added.bytes - base.added.bytes);
    state_.loose_objects = objects;
    state_.loose_bytes = bytes;
    const std::uint64_t fresh = objects > stuck ? objects - stuck : 0;
    const auto now = Clock::now();
    if (fresh == 0 || !had_fresh) fresh_since = now;
    had_fresh = fresh > 0;
    const bool due = fresh > 0 && now >= not_before &&
                     (objects >= options_.loose_objects || bytes >= options_.loose_bytes ||
                      now - fresh_since >= options_.age);
    if (!due) {
      wake_.wait_for(lock, poll_, [&] { return stop_.load() || recount_; });
      continue;
    }

    state_.phase = PackerState::Phase::kPacking;
    lock.unlock();
    std::uint64_t before = base.entries;
    try {
      before = object_count();
    } catch (const std::exception&) {
    }
    if (!run_pack()) {
      lock.lock();
      break;
    }
    bool failed;
    {
      std::lock_guard relock(mutex_);
      failed = !state_.last_error.empty();
    }
    try {
      base = walk();
      // What is still loose and was there before the run is what the run could not
      // pack; objects added during the run are fresh.
      const std::uint64_t added_during = base.entries > before ? base.entries - before : 0;
      stuck = base.objects > added_during ? base.objects - added_during : 0;
    } catch (const std::exception& e) {
      log::warning("background packer cannot count loose objects: %s", e.what());
      failed = true;
    }
    had_fresh = false;  // the age counts afresh from the next poll
    if (failed) {
      not_before = Clock::now() + std::max<Clock::duration>(kRetryAfterFailure, options_.age);
    }
    lock.lock();
  }
  state_.phase = PackerState::Phase::kOff;
}

}  // namespace casfs
