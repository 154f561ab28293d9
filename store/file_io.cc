#include "store/file_io.h"

#include <unistd.h>

#include <cerrno>

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

AlignedBytes allocate_aligned(std::size_t align, std::size_t size) {
  AlignedBytes bytes(static_cast<std::byte*>(std::aligned_alloc(align, size)));
  if (!bytes && size > 0) throw StoreError(ENOMEM, "cannot allocate an aligned buffer");
  return bytes;
}

}  // namespace casfs
