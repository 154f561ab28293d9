// Positioned reads and writes that retry interrupted and short transfers: the one
// place casfs loops over pread/pwrite, in an errno-returning form (for the io
// engines, which report per operation) and a throwing form (for the store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace casfs {

// Bytes read (short only at end of file) or -errno.
std::int64_t pread_retrying(int fd, std::span<std::byte> buf, std::uint64_t offset) noexcept;
// data.size() or -errno (-EIO if the file takes no bytes at all).
std::int64_t pwrite_retrying(int fd, std::span<const std::byte> data,
                             std::uint64_t offset) noexcept;

// The same, throwing StoreError on failure.
std::size_t pread_full(int fd, std::span<std::byte> buf, std::uint64_t offset);
void pwrite_full(int fd, std::span<const std::byte> data, std::uint64_t offset);

}  // namespace casfs
