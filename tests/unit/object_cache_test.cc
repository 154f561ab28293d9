// The cache of recently read objects on its own: its bound, its eviction order, what
// it refuses to keep, and many threads at once (run under ThreadSanitizer too).
#include "store/object_cache.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

// Ids whose first byte is 0 all land in one shard, so its bound is easy to reach.
ObjectId id_in_first_shard(std::uint8_t n) {
  ObjectId id;
  id.bytes[0] = 0;
  id.bytes[1] = n;
  return id;
}

std::vector<std::byte> filled(std::size_t size, std::uint8_t value) {
  return std::vector<std::byte>(size, std::byte{value});
}

// 16 shards of 64 KiB: objects up to 16 KiB are kept; four of this size fill a shard.
constexpr std::uint64_t kCapacity = 1 << 20;
constexpr std::size_t kObject = (16 << 10) - ObjectCache::kEntryOverhead;
constexpr std::uint64_t kCost = kObject + ObjectCache::kEntryOverhead;

TEST(ObjectCacheTest, ServesWhatWasInsertedAndCountsHitsAndMisses) {
  ObjectCache cache(kCapacity);
  const ObjectId a = id_in_first_shard(1);
  EXPECT_EQ(cache.find(a), nullptr);
  cache.insert(a, filled(100, 7));
  auto got = cache.find(a);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(*got, filled(100, 7));
  const ObjectCacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.bytes, 100u + ObjectCache::kEntryOverhead) << "an entry costs more than its bytes";
  EXPECT_EQ(s.capacity, kCapacity);
}

TEST(ObjectCacheTest, EvictsTheLeastRecentlyUsedToStayWithinItsBound) {
  ObjectCache cache(kCapacity);
  for (std::uint8_t n = 0; n < 4; ++n) cache.insert(id_in_first_shard(n), filled(kObject, n));
  EXPECT_EQ(cache.stats().bytes, 4 * kCost);
  // Using 0 makes 1 the least recently used: the fifth object pushes 1 out, not 0.
  ASSERT_NE(cache.find(id_in_first_shard(0)), nullptr);
  cache.insert(id_in_first_shard(4), filled(kObject, 4));
  EXPECT_EQ(cache.find(id_in_first_shard(1)), nullptr);
  for (std::uint8_t n : {0, 2, 3, 4}) {
    auto got = cache.find(id_in_first_shard(n));
    ASSERT_NE(got, nullptr) << int(n);
    EXPECT_EQ(*got, filled(kObject, n));
  }
  EXPECT_EQ(cache.stats().bytes, 4 * kCost);
  cache.erase(id_in_first_shard(0));
  EXPECT_EQ(cache.find(id_in_first_shard(0)), nullptr);
  EXPECT_EQ(cache.stats().bytes, 3 * kCost);
  cache.erase(id_in_first_shard(0));  // gone already: nothing changes
  EXPECT_EQ(cache.stats().bytes, 3 * kCost);
}

TEST(ObjectCacheTest, KeepsNothingTooLargeAndNothingWhenOff) {
  ObjectCache cache(kCapacity);
  EXPECT_TRUE(cache.keeps(16 << 10));
  EXPECT_FALSE(cache.keeps((16 << 10) + 1));
  EXPECT_FALSE(cache.keeps(0));
  cache.insert(id_in_first_shard(1), filled((16 << 10) + 1, 1));
  EXPECT_EQ(cache.find(id_in_first_shard(1)), nullptr);
  EXPECT_EQ(cache.stats().bytes, 0u);

  ObjectCache off(0);
  EXPECT_FALSE(off.keeps(1));
  off.insert(id_in_first_shard(1), filled(1, 1));
  EXPECT_EQ(off.find(id_in_first_shard(1)), nullptr);
  const ObjectCacheStats s = off.stats();
  EXPECT_EQ(s.hits + s.misses, 0u) << "a cache that is off rates nothing";
  EXPECT_EQ(s.capacity, 0u);
}

TEST(ObjectCacheTest, ManyThreadsSeeOnlyWhatWasInsertedForEachId) {
  const auto seed = testing::test_seed();
  ObjectCache cache(kCapacity);
  // An object's bytes follow from its id, so any entry can be checked by any thread.
  auto bytes_for = [](const ObjectId& id) {
    return filled(1024 + id.bytes[1] * 64, static_cast<std::uint8_t>(id.bytes[0] ^ id.bytes[1]));
  };
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      for (int i = 0; i < 20000; ++i) {
        ObjectId id;
        id.bytes[0] = static_cast<std::uint8_t>(rng() % 32);
        id.bytes[1] = static_cast<std::uint8_t>(rng() % 64);
        if (auto got = cache.find(id)) {
          if (*got != bytes_for(id)) ++wrong;
        } else {
          cache.insert(id, bytes_for(id));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
  const ObjectCacheStats s = cache.stats();
  EXPECT_LE(s.bytes, kCapacity);
  EXPECT_EQ(s.hits + s.misses, 4u * 20000u);
  EXPECT_GT(s.hits, 0u);
}

}  // namespace
}  // namespace casfs
