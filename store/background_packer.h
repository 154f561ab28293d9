// The mount daemon's packer: a thread that moves loose objects into packs while the
// filesystem is in use, once they pass a count, a byte or an age threshold.
//
// It watches cheaply: one status() walk of the index at start and after each run,
// and in between, once a poll, the index's object count (which LMDB keeps, and which
// only committed inserts move) and Store::loose_added() for their bytes (counted
// when indexed, so the bytes of inserts not yet committed at a walk show only at the
// next one). An idle store costs nearly nothing. It runs
// at the lowest CPU and a low I/O priority so that foreground reads and writes keep
// theirs; pack() bounds its own memory.
//
// Deadlocks: the packer holds nothing of the filesystem. pack() takes the store's
// maintenance lock and, per batch, LMDB's writer lock, which the filesystem's commit
// queue may hold for up to its commit interval; the packer then simply waits. It
// never takes the loose gate that inserts hold while they wait for that queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "store/store.h"

namespace casfs {

struct PackerOptions {
  bool enabled = true;
  // Any one of these starts a run: this many loose objects, this many loose bytes,
  // or loose objects that appeared since the last run existing for this long.
  std::uint64_t loose_objects = 20000;
  std::uint64_t loose_bytes = 256ull << 20;
  std::chrono::milliseconds age{300'000};
};

struct PackerState {
  enum class Phase { kOff, kIdle, kPacking };
  Phase phase = Phase::kOff;
  PackerOptions options;
  // Loose objects now, as estimated from the last walk plus what was added since
  // (gc's removals show only at the next walk).
  std::uint64_t loose_objects = 0;
  std::uint64_t loose_bytes = 0;
  std::uint64_t runs = 0;            // finished runs, failed ones included
  std::uint64_t objects_packed = 0;  // by every run so far
  std::uint64_t progress_done = 0;   // of the run under way
  std::uint64_t progress_total = 0;
  // The last finished run.
  std::optional<std::chrono::system_clock::time_point> last_start, last_end;
  PackReport last_report;
  std::string last_error;  // empty when the last run succeeded
};

const char* to_string(PackerState::Phase phase);

// Gives the calling thread the lowest CPU priority (nice 19) and best-effort I/O
// priority 7. Threads it starts afterwards (pack()'s std::async helpers) inherit
// both: Linux copies a thread's nice value and I/O priority to the threads it
// creates. Not the idle I/O class: the packer holds LMDB's writer lock while it
// commits a batch, and an idle-class sync could hold up the filesystem's commits
// behind any foreground I/O for as long as that lasts.
void lower_thread_priority();

class BackgroundPacker {
 public:
  // Starts the thread unless options.enabled is false.
  BackgroundPacker(Store& store, const PackerOptions& options);
  // Stops a run under way at its next batch (what was committed stays packed).
  ~BackgroundPacker();
  BackgroundPacker(const BackgroundPacker&) = delete;
  BackgroundPacker& operator=(const BackgroundPacker&) = delete;

  // Asks the thread to stop without waiting for it (the destructor waits).
  void request_stop();
  // Someone else packed or collected: count the loose objects again before deciding.
  void recount();
  PackerState state() const;

 private:
  using Clock = std::chrono::steady_clock;
  // What the last walk of the index found, and the object count and loose_added()
  // just before it.
  struct Baseline {
    std::uint64_t objects = 0;
    std::uint64_t bytes = 0;
    std::uint64_t entries = 0;
    LooseAdded added;
  };

  void loop();
  Baseline walk();
  std::uint64_t object_count();
  // Runs pack(); returns false when asked to stop meanwhile.
  bool run_pack();

  Store& store_;
  const PackerOptions options_;
  const std::chrono::milliseconds poll_;
  std::atomic<bool> stop_{false};

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool recount_ = true;
  PackerState state_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace casfs
