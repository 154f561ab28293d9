// The bytes written to one file that are not in the store yet: sorted,
// non-overlapping ranges, merged as writes touch or overlap them. Reads overlay
// these on the file's stored extents; a flush hands them to FileData::prepare_write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "fs/file_data.h"

namespace casfs {

class DirtyBuffer {
 public:
  // Copies `data` in at `offset`, replacing what was buffered there.
  void write(std::uint64_t offset, std::span<const std::byte> data);
  // Copies in the parts of `data` (at `offset`) that nothing buffered covers: older
  // bytes going back under newer ones.
  void write_under(std::uint64_t offset, std::span<const std::byte> data);
  // Copies buffered bytes that fall inside [offset, offset + out.size()) into `out`,
  // leaving the rest of `out` untouched.
  void overlay(std::uint64_t offset, std::span<std::byte> out) const;
  // Drops everything at or past `size` (the file was truncated there).
  void truncate(std::uint64_t size);
  void clear();

  bool empty() const { return ranges_.empty(); }
  std::uint64_t bytes() const { return bytes_; }
  // The ranges in offset order, pointing into this buffer (valid until it changes).
  std::vector<DirtyRange> ranges() const;
  // Whether [offset, offset + length) holds any buffered byte; for SEEK_DATA.
  bool overlaps(std::uint64_t offset, std::uint64_t length) const;
  // The first buffered range ending after `offset`, as [start, end); for SEEK_DATA.
  bool next_range(std::uint64_t offset, std::uint64_t& start, std::uint64_t& end) const;

 private:
  std::map<std::uint64_t, std::vector<std::byte>> ranges_;  // start → bytes
  std::uint64_t bytes_ = 0;
};

}  // namespace casfs
