// Content-defined chunking (FastCDC: gear rolling hash with normalized chunking).
//
// Files are cut where the bytes themselves say so, not at fixed offsets, so an
// insertion or deletion changes only the chunks around it and the same bytes at a
// shifted offset still produce the same chunks. The gear table and the masks are
// part of the store format: changing them changes every boundary, so they are
// fixed here, derived from a constant seed, and must never change for a format
// version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace casfs {

struct ChunkerParams {
  std::uint32_t min_size = 16 << 10;
  std::uint32_t avg_size = 64 << 10;  // a power of two
  std::uint32_t max_size = 256 << 10;
};

class Chunker {
 public:
  // Throws StoreError(EINVAL) unless 64 <= min < avg < max and avg is a power of two.
  explicit Chunker(const ChunkerParams& params);

  const ChunkerParams& params() const { return params_; }

  // Length of the chunk that starts at data[0]. When `at_end` is false and the data
  // ends before a boundary could be decided (less than max_size bytes available and
  // no cut point found), returns 0: call again with more data.
  std::size_t next_chunk(std::span<const std::byte> data, bool at_end) const;

  // Cuts a whole buffer; returns the chunk lengths, in order.
  std::vector<std::size_t> split(std::span<const std::byte> data) const;

 private:
  ChunkerParams params_;
  std::uint64_t mask_small_;  // harder to match: used before avg_size
  std::uint64_t mask_large_;  // easier to match: used after avg_size
};

}  // namespace casfs
