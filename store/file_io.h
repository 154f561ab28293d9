// Positioned reads and writes that retry interrupted and short transfers: the one
// place casfs loops over pread/pwrite, in an errno-returning form (for the io
// engines, which report per operation) and a throwing form (for the store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
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

// Memory for O_DIRECT transfers, which want their buffers aligned.
struct FreeAligned {
  void operator()(std::byte* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<std::byte, FreeAligned>;
// `size` bytes at a multiple of `align` (a power of two; `size` a multiple of it).
// Throws StoreError(ENOMEM).
AlignedBytes allocate_aligned(std::size_t align, std::size_t size);

}  // namespace casfs
