// The store layer reports failures as StoreError: an errno-style code (so the FUSE
// boundary can map it to a reply in one place) plus a one-line message that says
// what is wrong and, where there is one, what to do.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace casfs {

class StoreError : public std::runtime_error {
 public:
  StoreError(int errno_code, const std::string& message)
      : std::runtime_error(message), code_(errno_code) {}
  // The errno value that best describes the failure (EIO for corruption, ENOENT for
  // a missing object, ...).
  int code() const { return code_; }

 private:
  int code_;
};

// Throws StoreError carrying errno, with "what: strerror(errno)" as message.
[[noreturn]] void throw_errno(const std::string& what);
[[noreturn]] void throw_errno(int errno_code, const std::string& what);

}  // namespace casfs
