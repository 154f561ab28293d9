#include "store/chunker.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "store/error.h"
#include "store/hash.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::random_bytes;

std::vector<ObjectId> chunk_ids(const Chunker& c, std::span<const std::byte> data) {
  std::vector<ObjectId> ids;
  for (std::size_t len : c.split(data)) {
    ids.push_back(Sha256::of(data.first(len)));
    data = data.subspan(len);
  }
  return ids;
}

TEST(ChunkerTest, ChunksCoverTheInputWithinTheSizeBounds) {
  std::mt19937_64 rng(testing::test_seed());
  Chunker c(ChunkerParams{});
  auto data = random_bytes(rng, 32 << 20);
  auto sizes = c.split(data);
  std::size_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    total += sizes[i];
    EXPECT_LE(sizes[i], c.params().max_size);
    if (i + 1 < sizes.size()) {
      EXPECT_GT(sizes[i], c.params().min_size);
    }
  }
  EXPECT_EQ(total, data.size());
  double avg = static_cast<double>(total) / static_cast<double>(sizes.size());
  EXPECT_GT(avg, 0.7 * c.params().avg_size) << "average chunk " << avg;
  EXPECT_LT(avg, 1.3 * c.params().avg_size) << "average chunk " << avg;
}

TEST(ChunkerTest, BoundariesAreTheSameWhetherDataComesWholeOrInPieces) {
  std::mt19937_64 rng(testing::test_seed());
  Chunker c(ChunkerParams{});
  auto data = random_bytes(rng, 4 << 20);
  auto whole = c.split(data);
  // Feed growing windows, as a streaming writer would.
  std::vector<std::size_t> streamed;
  std::size_t start = 0, avail = 0;
  while (start < data.size()) {
    avail = std::min(data.size(), avail + 1 + rng() % 100000);
    bool at_end = avail == data.size();
    auto window = std::span<const std::byte>(data).subspan(start, avail - start);
    while (std::size_t len = c.next_chunk(window, at_end)) {
      streamed.push_back(len);
      start += len;
      window = window.subspan(len);
      if (window.empty()) break;
    }
  }
  EXPECT_EQ(streamed, whole);
}

TEST(ChunkerTest, InsertingOneByteAtTheStartChangesOnlyAFewChunks) {
  std::mt19937_64 rng(testing::test_seed());
  Chunker c(ChunkerParams{});
  auto data = random_bytes(rng, 10 << 20);
  auto before = chunk_ids(c, data);
  auto shifted = data;
  shifted.insert(shifted.begin(), std::byte{42});
  auto after = chunk_ids(c, shifted);
  std::set<ObjectId> known(before.begin(), before.end());
  int fresh = 0;
  for (const auto& id : after) fresh += !known.contains(id);
  EXPECT_LE(fresh, 3) << "of " << after.size() << " chunks";
  EXPECT_GT(after.size(), 100u);
}

TEST(ChunkerTest, SameBytesAtAnOffsetInAnotherFileGiveTheSameChunks) {
  // Two streams cut the same bytes alike once both cut at one point; with normalized
  // chunking that takes a few chunks (a cut both must take is rarer than the average
  // cut), so the check is on bytes: nearly all of the shared bytes dedup.
  std::mt19937_64 rng(testing::test_seed());
  Chunker c(ChunkerParams{});
  auto shared = random_bytes(rng, 16 << 20);
  auto a = random_bytes(rng, 1 + rng() % 200000);
  a.insert(a.end(), shared.begin(), shared.end());
  auto b = random_bytes(rng, 1 + rng() % 200000);
  b.insert(b.end(), shared.begin(), shared.end());
  auto ids_a = chunk_ids(c, a);
  std::set<ObjectId> in_a(ids_a.begin(), ids_a.end());
  std::span<const std::byte> rest(b);
  std::size_t common_bytes = 0;
  for (std::size_t len : c.split(b)) {
    if (in_a.contains(Sha256::of(rest.first(len)))) common_bytes += len;
    rest = rest.subspan(len);
  }
  EXPECT_GE(common_bytes, shared.size() * 9 / 10)
      << "only " << common_bytes << " of " << shared.size() << " shared bytes dedup";
}

TEST(ChunkerTest, BoundariesAreFixedByTheFormat) {
  // The gear table is part of the on-disk format: these sizes must never change.
  std::vector<std::byte> data(1 << 20);
  std::uint32_t x = 1;
  for (auto& b : data) {
    x = x * 1103515245u + 12345u;
    b = static_cast<std::byte>(x >> 16);
  }
  Chunker c(ChunkerParams{});
  auto sizes = c.split(data);
  std::vector<std::size_t> first(sizes.begin(),
                                 sizes.begin() + std::min<std::size_t>(4, sizes.size()));
  // Recorded from this implementation when the format was fixed.
  EXPECT_EQ(first, (std::vector<std::size_t>{90011, 50544, 70319, 74198}));
}

// Every cut the chunker makes, over many sizes of chunk and of data, odd and even
// (so that cuts fall at every edge: the end of the minimum, the average, the maximum
// and the data), random and low-entropy bytes, whole and in pieces, folded into one
// digest per size. Recorded from the one-byte-at-a-time gear loop of the format's
// definition: a faster loop must cut exactly where it did.
std::uint64_t cuts_digest(const ChunkerParams& params, std::uint64_t seed) {
  Chunker chunker(params);
  std::mt19937_64 rng(seed);
  std::uint64_t digest = 0;
  for (int round = 0; round < 60; ++round) {
    std::vector<std::byte> data(rng() % (3 * params.max_size) + 1);
    const bool runs = round % 3 == 0;
    for (auto& b : data) b = static_cast<std::byte>(runs ? rng() % 3 : rng());
    for (bool at_end : {true, false}) {
      std::span<const std::byte> rest(data);
      while (!rest.empty()) {
        const std::size_t cut = chunker.next_chunk(rest, at_end);
        digest = digest * 1000003 ^ cut;
        if (cut == 0) break;
        rest = rest.subspan(cut);
      }
    }
  }
  return digest;
}

TEST(ChunkerTest, CutsOfManySizesAreFixedByTheFormat) {
  EXPECT_EQ(cuts_digest(ChunkerParams{64, 128, 1000}, 1), 7396507870695241657u);
  EXPECT_EQ(cuts_digest(ChunkerParams{65, 256, 777}, 2), 11947504530103494463u);
  EXPECT_EQ(cuts_digest(ChunkerParams{100, 512, 4096}, 3), 7043770939295627773u);
  EXPECT_EQ(cuts_digest(ChunkerParams{}, 4), 9523013098795174990u);
}

TEST(ChunkerTest, RejectsInconsistentSizes) {
  EXPECT_THROW(Chunker(ChunkerParams{100, 64, 1000}), StoreError);
  EXPECT_THROW(Chunker(ChunkerParams{16, 64, 1000}), StoreError);
  EXPECT_THROW(Chunker(ChunkerParams{1000, 3000, 10000}), StoreError);
  EXPECT_THROW(Chunker(ChunkerParams{1000, 4096, 4096}), StoreError);
}

}  // namespace
}  // namespace casfs
