#include "store/object_cache.h"

namespace casfs {

ObjectCache::ObjectCache(std::uint64_t capacity)
    : capacity_(capacity),
      shard_capacity_(capacity / kShards),
      // A quarter of a shard: 1 MiB at the mount's default 64 MiB, four times the
      // largest chunk.
      max_object_(shard_capacity_ / 4) {}

ObjectCache::Bytes ObjectCache::find(const ObjectId& id) {
  if (capacity_ == 0) return nullptr;
  Shard& shard = shard_of(id);
  {
    std::lock_guard lock(shard.mutex);
    if (auto it = shard.where.find(id); it != shard.where.end()) {
      shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
      hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second->bytes;
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void ObjectCache::insert(const ObjectId& id, std::span<const std::byte> bytes) {
  if (!keeps(bytes.size())) return;
  // The copy is made outside the lock: readers of other objects in the shard go on.
  auto copy = std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end());
  Shard& shard = shard_of(id);
  const std::uint64_t cost = bytes.size() + kEntryOverhead;
  std::lock_guard lock(shard.mutex);
  if (shard.where.contains(id)) return;  // another reader cached it meanwhile
  while (!shard.lru.empty() && shard.bytes + cost > shard_capacity_) {
    shard.bytes -= shard.lru.back().bytes->size() + kEntryOverhead;
    shard.where.erase(shard.lru.back().id);
    shard.lru.pop_back();
  }
  shard.lru.push_front(Shard::Entry{id, std::move(copy)});
  shard.where.emplace(id, shard.lru.begin());
  shard.bytes += cost;
}

void ObjectCache::erase(const ObjectId& id) {
  if (capacity_ == 0) return;
  Shard& shard = shard_of(id);
  std::lock_guard lock(shard.mutex);
  if (auto it = shard.where.find(id); it != shard.where.end()) {
    shard.bytes -= it->second->bytes->size() + kEntryOverhead;
    shard.lru.erase(it->second);
    shard.where.erase(it);
  }
}

ObjectCacheStats ObjectCache::stats() const {
  ObjectCacheStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.capacity = capacity_;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    s.bytes += shard.bytes;
  }
  return s;
}

}  // namespace casfs
