// What casfsctl and the mount daemon say to each other over the control socket,
// STORE/run/control.sock: a Unix stream socket, mode 0600, on which the daemon talks
// only to its own uid and to root (it checks SO_PEERCRED).
//
// The client writes one JSON object per line; for each, the daemon writes zero or
// more progress lines and then one final line, the one with "ok" in it:
//
//   {"cmd":"status"}                     → {"ok":true,"status":{…}}
//   {"cmd":"flush"}                      → {"ok":true}
//   {"cmd":"jobs"}                       → {"ok":true,"jobs":[JOB,…]}
//   {"cmd":"job","id":N,"wait":BOOL}     → {"ok":true,"job":JOB}
//   {"cmd":"pack"|"gc"|"verify","wait":BOOL}
//   {"cmd":"repack","wait":BOOL,"threshold":PCT}
//       without wait                     → {"ok":true,"job":JOB}     (JOB still running)
//       with wait                        → {"progress":{"job":N,"done":D,"total":T}}…
//                                          {"ok":true,"job":JOB}     (JOB finished)
//   anything else, or a failure          → {"ok":false,"error":"one line"}
//
// JOB is {"id","kind","state":"running"|"done"|"failed","progress":{"done","total"},
// "started","ended","result"}; a failed job's result is {"error": …}. A request for a
// kind of job that is already running answers with that job. The "status" object has
// the keys of `casfs store status --json` plus the filesystem's: "mountpoint",
// "logical_bytes", "dedup_ratio", "compression_ratio", "cache_hit_rate" (null before
// any read or with the cache off), "cache" {"capacity","bytes","hits","misses"},
// "packer", "jobs_running". A connection may carry any number of requests, one after another.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>

#include "store/unique_fd.h"

namespace casfs {

// Under STORE/run/.
inline constexpr char kControlSocketName[] = "control.sock";
// Longer request lines are refused and end the connection.
inline constexpr std::size_t kMaxRequestLine = 64 << 10;

// A Unix socket address for `path`. sun_path holds 107 characters; a longer path is
// reached through its directory's descriptor under /proc/self/fd, which the kernel
// resolves like any other path, so stores may live anywhere. `dir` keeps that
// descriptor open while the address is used. Returns false when neither fits.
struct UnixAddress {
  sockaddr_un addr{};
  socklen_t size = 0;
  UniqueFd dir;

  bool set(const std::filesystem::path& path) {
    std::string name = path.string();
    if (name.size() >= sizeof addr.sun_path) {
      dir.reset(::open(path.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!dir) return false;
      name = "/proc/self/fd/" + std::to_string(dir.get()) + "/" + path.filename().string();
      if (name.size() >= sizeof addr.sun_path) return false;
    }
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, name.c_str(), name.size() + 1);
    size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
    return true;
  }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr); }
};

}  // namespace casfs
