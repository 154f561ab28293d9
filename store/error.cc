#include "store/error.h"

#include <cstring>

namespace casfs {

void throw_errno(int errno_code, const std::string& what) {
  throw StoreError(errno_code, what + ": " + std::strerror(errno_code));
}

void throw_errno(const std::string& what) {
  throw_errno(errno, what);
}

}  // namespace casfs
