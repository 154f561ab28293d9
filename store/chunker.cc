#include "store/chunker.h"

#include <array>
#include <bit>

#include "store/error.h"

namespace casfs {

namespace {

// splitmix64 from a fixed seed: a reproducible table of 256 well-mixed words.
constexpr std::array<std::uint64_t, 256> make_gear_table() {
  std::array<std::uint64_t, 256> table{};
  std::uint64_t state = 0x63617366735f6364ull;  // "casfs_cd"
  for (auto& entry : table) {
    state += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    entry = z ^ (z >> 31);
  }
  return table;
}

constexpr std::array<std::uint64_t, 256> kGear = make_gear_table();

// The gear hash shifts left, so its high bits depend on the most bytes: masks take
// their ones from the top.
constexpr std::uint64_t top_bits(unsigned n) {
  return n == 0 ? 0 : ~std::uint64_t{0} << (64 - n);
}

}  // namespace

Chunker::Chunker(const ChunkerParams& params) : params_(params) {
  if (params.min_size < 64 || params.min_size >= params.avg_size ||
      params.avg_size >= params.max_size || !std::has_single_bit(params.avg_size)) {
    throw StoreError(EINVAL,
                     "chunk sizes must satisfy 64 <= min < avg < max with avg a power of two");
  }
  unsigned bits = static_cast<unsigned>(std::countr_zero(params.avg_size));
  // Normalized chunking, level 2: two bits harder before the average, two easier
  // after, which narrows the spread of chunk sizes around the average.
  mask_small_ = top_bits(bits + 2);
  mask_large_ = top_bits(bits > 2 ? bits - 2 : 1);
}

std::size_t Chunker::next_chunk(std::span<const std::byte> data, bool at_end) const {
  const std::size_t n = data.size();
  if (n <= params_.min_size) return at_end ? n : 0;
  const std::size_t limit = std::min<std::size_t>(n, params_.max_size);
  const std::size_t normal = std::min<std::size_t>(limit, params_.avg_size);
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  std::uint64_t hash = 0;
  std::size_t i = params_.min_size;
  for (; i < normal; ++i) {
    hash = (hash << 1) + kGear[p[i]];
    if ((hash & mask_small_) == 0) return i + 1;
  }
  for (; i < limit; ++i) {
    hash = (hash << 1) + kGear[p[i]];
    if ((hash & mask_large_) == 0) return i + 1;
  }
  if (limit == params_.max_size) return limit;
  return at_end ? n : 0;
}

std::vector<std::size_t> Chunker::split(std::span<const std::byte> data) const {
  std::vector<std::size_t> sizes;
  while (!data.empty()) {
    std::size_t len = next_chunk(data, true);
    sizes.push_back(len);
    data = data.subspan(len);
  }
  return sizes;
}

}  // namespace casfs
