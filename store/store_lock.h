// The lock that gives one process at a time the store: an exclusive flock on
// STORE/run/lock, which also records the holder's pid for the error message.
// The kernel drops the lock when the process dies, so a crash never leaves a
// stale lock behind.
#pragma once

#include <filesystem>

#include "store/unique_fd.h"

namespace casfs {

class StoreLock {
 public:
  // Throws StoreError(EBUSY) naming the holder's pid when another process holds it.
  explicit StoreLock(const std::filesystem::path& store_dir);

 private:
  UniqueFd fd_;
};

}  // namespace casfs
