// casfsctl's side of the control socket (fs/control_protocol.h): finding the daemon
// that serves a path, and exchanging a request for its reply.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "store/unique_fd.h"

namespace casfs::cli {

struct ControlTarget {
  std::filesystem::path store;  // the store directory, whose run/ holds the socket
  std::string shown;            // what the user named, for messages
};

// MNT is a store directory or any path inside a casfs mount; none means the current
// directory. A mount is found in /proc/self/mountinfo (type fuse.casfs; its source
// is the store's absolute path, since the daemon mounts with fsname=STORE), the
// innermost one containing the path. Throws CommandError
// "no casfs mount at MNT (is the daemon running?)" when there is none.
ControlTarget resolve_target(const std::optional<std::string>& mnt);

class ControlClient {
 public:
  using Json = nlohmann::ordered_json;

  // Connects; throws CommandError when nothing listens there or access is refused.
  explicit ControlClient(const ControlTarget& target);

  // Sends one request and returns the final reply (the line with "ok": true);
  // `progress` gets each progress line before it. Throws CommandError with the
  // daemon's message for {"ok": false}, and for a reply that is not the protocol's.
  Json call(const Json& request, const std::function<void(const Json&)>& progress = {});

 private:
  std::string read_line();

  ControlTarget target_;
  std::filesystem::path socket_;
  UniqueFd fd_;
  std::string buffer_;
};

}  // namespace casfs::cli
