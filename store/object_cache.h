// A bounded in-memory cache of objects' bytes as readers get them: checked and
// decompressed. A read that needs only part of an object (a 4 KiB read of a 64 KiB
// chunk) still reads, checks and decompresses all of it; the cache keeps the rest
// for the next read nearby, and serves the same chunk to every file that shares it.
//
// An object's id is the hash of its bytes, so an entry can never go stale: gc,
// repack and packing move or drop where the bytes live, never what they are.
// Entries are bytes that passed the read's check. A copy on disk damaged after it
// was cached is found by verify, which reads the disk and never this cache, and
// the failed check drops the entry, so reads fail from then on as verify reports.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "store/hash.h"

namespace casfs {

struct ObjectCacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t bytes = 0;     // held now, with each entry's overhead
  std::uint64_t capacity = 0;  // 0: caching is off
};

class ObjectCache {
 public:
  using Bytes = std::shared_ptr<const std::vector<std::byte>>;

  // At most `capacity` bytes of objects are held; 0 turns the cache off.
  explicit ObjectCache(std::uint64_t capacity);

  // The object's bytes, or null. Counts a hit or a miss.
  Bytes find(const ObjectId& id);
  // Copies `bytes` in as the object `id`, evicting the least recently used entries
  // of its shard to make room. Objects larger than a quarter of a shard are not
  // kept (see keeps): one would flush most of the others.
  void insert(const ObjectId& id, std::span<const std::byte> bytes);
  void erase(const ObjectId& id);
  // Whether insert keeps an object of this size.
  bool keeps(std::uint64_t size) const { return size > 0 && size <= max_object_; }

  ObjectCacheStats stats() const;

  // What an entry costs beyond its bytes (list and map nodes, the shared_ptr's
  // control block, the vector, malloc's rounding), charged against the capacity so
  // that a cache of many small objects stays near its size in memory too.
  static constexpr std::uint64_t kEntryOverhead = 256;

 private:
  // Shards by the id's first byte keep readers on different objects from queueing
  // on one mutex.
  static constexpr std::size_t kShards = 16;
  struct Shard {
    mutable std::mutex mutex;
    struct Entry {
      ObjectId id;
      Bytes bytes;
    };
    std::list<Entry> lru;  // most recently used first
    std::unordered_map<ObjectId, std::list<Entry>::iterator, ObjectIdHash> where;
    std::uint64_t bytes = 0;
  };
  Shard& shard_of(const ObjectId& id) { return shards_[id.bytes[0] % kShards]; }

  const std::uint64_t capacity_;
  const std::uint64_t shard_capacity_;
  const std::uint64_t max_object_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
};

}  // namespace casfs
