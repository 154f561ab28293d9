// Per-block checksums of objects stored raw, so that a small read of a large object
// reads and checks only the blocks it needs (btrfs keeps a crc32c per 4 KiB block
// for the same reason). Without them a 4 KiB read of a 64 KiB chunk must read, and
// check, all 64 KiB: random reads are then bound by the disk's bandwidth, not by its
// operations per second.
//
// They live in the index entry (index.h), not in the pack record, so that loose and
// packed objects share them and the pack format stays as it is. Stores from format
// version 2 keep them; objects without them (older stores, compressed records,
// streamed inserts) are read whole, as before.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "store/store.h"

namespace casfs {

inline constexpr std::uint64_t kSumBlockSize = 4096;
inline constexpr std::uint64_t kMaxSummedObject = 1 << 20;

// Objects worth the index space: more than two blocks (smaller ones are read whole
// at no real cost), and small enough that their sums are a short index value (a
// content-defined chunk is at most 256 KiB; 1 MiB has 256 sums, 1 KiB).
inline bool wants_block_sums(std::uint64_t raw_size) {
  return raw_size > 2 * kSumBlockSize && raw_size <= kMaxSummedObject;
}

inline std::uint64_t block_count(std::uint64_t raw_size) {
  return (raw_size + kSumBlockSize - 1) / kSumBlockSize;
}

// The low 32 bits of each block's XXH3-64, in order; the last block may be short.
std::vector<std::uint32_t> block_sums_of(std::span<const std::byte> data);

// Checks `data`, the object's bytes from block `first_block` on (whole blocks, the
// last one ending at the object's end if it is short), against info.block_sums.
// Throws StoreError(EIO) naming the object on a mismatch.
void check_blocks(const ObjectInfo& info, std::uint64_t first_block,
                  std::span<const std::byte> data);

}  // namespace casfs
