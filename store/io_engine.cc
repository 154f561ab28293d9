#include "store/io_engine.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "store/error.h"
#include "store/log.h"

namespace casfs {
namespace {

// Threads for the fallback engine: enough to overlap a few blocking calls on a small
// machine without oversubscribing it.
constexpr unsigned kSyncThreads = 4;
constexpr unsigned kDefaultDepth = 64;
constexpr unsigned kMinDepth = 8;
constexpr unsigned kMaxDepth = 128;

thread_local std::chrono::microseconds read_poll_budget{0};

}  // namespace

ReadPolling::ReadPolling(std::chrono::microseconds budget) noexcept : previous_(read_poll_budget) {
  read_poll_budget = budget;
}

ReadPolling::~ReadPolling() {
  read_poll_budget = previous_;
}

std::chrono::microseconds ReadPolling::budget() noexcept {
  return read_poll_budget;
}

unsigned queue_depth_for(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return kDefaultDepth;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dev = fs::path("/sys/dev/block") /
                 (std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)));
  // Virtual and anonymous-device filesystems (proc, tmpfs, overlay, btrfs subvolumes)
  // have no entry here; their depth is unknown.
  if (!fs::is_directory(dev, ec)) return kDefaultDepth;
  // The request queue belongs to the whole disk, not to a partition of it.
  if (fs::exists(dev / "partition", ec)) {
    dev = fs::canonical(dev, ec).parent_path();
    if (ec) return kDefaultDepth;
  }
  std::ifstream in(dev / "queue" / "nr_requests");
  unsigned long nr_requests = 0;
  if (!(in >> nr_requests) || nr_requests == 0) return kDefaultDepth;
  return static_cast<unsigned>(std::clamp<unsigned long>(nr_requests / 2, kMinDepth, kMaxDepth));
}

std::unique_ptr<IoEngine> make_io_engine(const std::filesystem::path& data_dir) {
  const char* env = std::getenv("CASFS_IO");
  std::string_view choice = env ? env : "";
  if (choice == "sync") return make_sync_engine(kSyncThreads);
  if (choice == "uring") return make_uring_engine(queue_depth_for(data_dir));
  if (!choice.empty()) {
    throw StoreError(EINVAL, "CASFS_IO=" + std::string(choice) +
                                 " is not understood; use CASFS_IO=sync or CASFS_IO=uring");
  }
  try {
    return make_uring_engine(queue_depth_for(data_dir));
  } catch (const StoreError& e) {
    // Containers and hardened kernels often forbid io_uring; that is a supported
    // setup, not a problem worth a warning.
    log::debug("io_uring unavailable (%s); using the sync engine", e.what());
    return make_sync_engine(kSyncThreads);
  }
}

}  // namespace casfs
