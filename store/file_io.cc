#include "store/file_io.h"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <vector>

#include "store/error.h"

namespace casfs {

std::int64_t pread_retrying(int fd, std::span<std::byte> buf, std::uint64_t offset) noexcept {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n =
        ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<std::int64_t>(done);
}

std::int64_t pwrite_retrying(int fd, std::span<const std::byte> data,
                             std::uint64_t offset) noexcept {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    // A zero-byte write would loop forever; the device is not taking data.
    if (n == 0) return -EIO;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<std::int64_t>(done);
}

std::size_t pread_full(int fd, std::span<std::byte> buf, std::uint64_t offset) {
  std::int64_t n = pread_retrying(fd, buf, offset);
  if (n < 0) throw_errno(static_cast<int>(-n), "read failed");
  return static_cast<std::size_t>(n);
}

void pwrite_full(int fd, std::span<const std::byte> data, std::uint64_t offset) {
  std::int64_t n = pwrite_retrying(fd, data, offset);
  if (n < 0) throw_errno(static_cast<int>(-n), "write failed");
}

void pwrite_gathered(int fd, std::span<const std::span<const std::byte>> pieces,
                     std::uint64_t offset) {
  std::vector<iovec> iov;
  iov.reserve(std::min<std::size_t>(pieces.size(), IOV_MAX));
  std::size_t next = 0;
  std::size_t skip = 0;  // bytes of pieces[next] already written
  while (next < pieces.size()) {
    iov.clear();
    for (std::size_t k = next; k < pieces.size() && iov.size() < IOV_MAX; ++k) {
      auto piece = k == next ? pieces[k].subspan(skip) : pieces[k];
      if (piece.empty()) continue;
      iov.push_back(iovec{const_cast<std::byte*>(piece.data()), piece.size()});
    }
    if (iov.empty()) return;
    ssize_t n = ::pwritev(fd, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("write failed");
    if (n == 0) throw_errno(EIO, "write failed");
    offset += static_cast<std::uint64_t>(n);
    // Step past what was written: whole pieces, then part of one.
    auto left = static_cast<std::size_t>(n);
    while (next < pieces.size() && pieces[next].size() - skip <= left) {
      left -= pieces[next].size() - skip;
      skip = 0;
      ++next;
    }
    skip += left;
  }
}

}  // namespace casfs
