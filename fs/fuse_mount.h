// A FUSE session serving a Filesystem at a mountpoint: created and mounted by the
// constructor, served by run(), unmounted and destroyed by the destructor.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fs/fuse_ops.h"
#include "fs/fuse_ring.h"

namespace casfs {

class FuseMount {
 public:
  // `options` are FUSE mount options as given to -o (allow_other, ro, ...), split at
  // commas. `ops` serve the requests: casfs's, or the benchmark's FUSE floor
  // (tests/bench/fuse_floor.cc). Throws std::runtime_error with a one-line message
  // when the session cannot be created or mounted.
  FuseMount(const FuseContext& context, const std::filesystem::path& mountpoint,
            const std::vector<std::string>& options,
            const fuse_lowlevel_ops& ops = fuse_operations());
  ~FuseMount();
  FuseMount(const FuseMount&) = delete;
  FuseMount& operator=(const FuseMount&) = delete;

  // Serves requests on several threads until the filesystem is unmounted or the
  // process gets SIGINT, SIGTERM or SIGHUP. Returns 0 on a clean end.
  int run();

 private:
  // Stops the ring's threads, then lets the session's hooks fall back to /dev/fuse.
  void detach_ring();

  std::unique_ptr<FuseContext> context_;
  std::filesystem::path mountpoint_;
  fuse_session* session_ = nullptr;
  std::unique_ptr<FuseRing> ring_;
  bool mounted_ = false;
};

}  // namespace casfs
