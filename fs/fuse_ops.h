// The FUSE low-level operations table for a Filesystem.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include <cstdint>

namespace casfs {

class Filesystem;
class FuseRing;

// The session's userdata: the filesystem and how the kernel may cache what it says.
struct FuseContext {
  Filesystem* fs = nullptr;
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  bool writeback_cache = true;
  // Serve requests through FUSE over io_uring (fuse_ring.h) when the kernel offers it.
  bool uring = false;
  FuseRing* ring = nullptr;         // set by FuseMount while the ring is attached
  fuse_session* session = nullptr;  // set by FuseMount, for notifications
  // The kernel's readahead window for files on the mount, in bytes; 0 leaves the
  // kernel's default (128 KiB for FUSE). See FuseMount::run().
  std::uint64_t readahead = 4 << 20;
};

fuse_lowlevel_ops fuse_operations();

// What casfs asks of the kernel in FUSE_INIT, given what it offers: the caches,
// readdirplus, the largest WRITE, kernel-side locks, POSIX ACLs. Returns whether the
// kernel enforces POSIX ACLs (and leaves the umask to the daemon). Shared with the
// benchmark's FUSE floor (tests/bench/fuse_floor.cc), which must be mounted alike.
bool choose_capabilities(const FuseContext& context, fuse_conn_info* conn);

}  // namespace casfs
