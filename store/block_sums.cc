#include "store/block_sums.h"

#include <algorithm>

#include "store/hash.h"
#include "store/object_check.h"

namespace casfs {

namespace {
std::uint32_t block_sum(std::span<const std::byte> block) {
  return static_cast<std::uint32_t>(Xxh3::of(block));
}
}  // namespace

std::vector<std::uint32_t> block_sums_of(std::span<const std::byte> data) {
  std::vector<std::uint32_t> sums;
  sums.reserve(block_count(data.size()));
  for (std::uint64_t at = 0; at < data.size(); at += kSumBlockSize) {
    sums.push_back(block_sum(data.subspan(at, std::min(kSumBlockSize, data.size() - at))));
  }
  return sums;
}

void check_blocks(const ObjectInfo& info, std::uint64_t first_block,
                  std::span<const std::byte> data) {
  std::uint64_t b = first_block;
  for (std::uint64_t at = 0; at < data.size(); at += kSumBlockSize, ++b) {
    auto block = data.subspan(at, std::min(kSumBlockSize, data.size() - at));
    if (b >= info.block_sums.size() || block_sum(block) != info.block_sums[b]) {
      throw corrupt_object(info.id, "checksum mismatch in block " + std::to_string(b));
    }
  }
}

}  // namespace casfs
