// An inode as stored in the "inodes" table: a fixed little-endian record with a
// leading version byte, so the layout can change later without guessing.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace casfs {

struct Timespec {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
  bool operator==(const Timespec&) const = default;
};

struct Inode {
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kEncodedSize = 128;

  std::uint64_t ino = 0;
  std::uint32_t mode = 0;  // file type and permission bits, as in st_mode
  std::uint32_t uid = 0, gid = 0;
  std::uint64_t nlink = 0;
  std::uint64_t size = 0;
  std::uint64_t rdev = 0;
  // Directories: the parent directory's ino (the root: itself), for ".." and the
  // rename loop check. Other files can have many parents, so it is 0 for them.
  std::uint64_t parent = 0;
  // Directories: the readdir slot the next new entry gets; slots are never reused,
  // which is what keeps a listing stable while the directory changes.
  std::uint64_t next_slot = 0;
  Timespec atime, mtime, ctime, btime;
  std::uint64_t generation = 0;
  // Regular files: bytes held in extents (holes excluded), which st_blocks reports.
  std::uint64_t allocated = 0;

  bool is_dir() const { return S_ISDIR(mode); }
  bool operator==(const Inode&) const = default;

  std::array<std::byte, kEncodedSize> encode() const;
  // Throws FsError(EIO) for a record of the wrong size or version.
  static Inode decode(std::span<const std::byte> bytes);
};

// The d_type readdir reports for a mode (DT_REG, DT_DIR, ...): Linux defines the DT_
// values as the S_IFMT bits shifted down.
inline std::uint8_t d_type_of(std::uint32_t mode) {
  return static_cast<std::uint8_t>((mode & S_IFMT) >> 12);
}

}  // namespace casfs
