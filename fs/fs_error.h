// The filesystem layer reports failures as FsError: the errno value the kernel should
// see (the FUSE boundary maps code() to a reply in one place) plus a one-line message.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace casfs {

class FsError : public std::runtime_error {
 public:
  FsError(int errno_code, const std::string& message)
      : std::runtime_error(message), code_(errno_code) {}
  int code() const { return code_; }

 private:
  int code_;
};

}  // namespace casfs
