// The store's tables inside the shared LMDB environment:
//   objects: SHA-256 (32 bytes) → ObjectInfo (where, sizes, codec, checksum, refcount)
//   packs:   pack id (u32, big-endian so ids sort) → PackInfo
//   meta:    small named values (the store's uuid, the next pack id)
// Every method takes the caller's transaction, so the filesystem can change its own
// tables and the refcounts they imply in one commit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "store/lmdb.h"
#include "store/store.h"

namespace casfs {

struct PackInfo {
  std::uint32_t id = 0;
  std::uint64_t size = 0;        // committed length of the file; bytes past it are torn
  std::uint64_t live_bytes = 0;  // records the index points at (header + payload)
  std::uint64_t live_records = 0;
  std::uint64_t dead_bytes = 0;  // records nobody points at any more
  // Raw records written by a batch insert, for pack() to compress into a regular
  // pack; pack() removes the intake pack once it has moved every live record.
  bool intake = false;

  // One live record of `record_bytes` (header and payload) is dead now: gc dropped
  // its object, or pack() moved it elsewhere.
  void record_died(std::uint64_t record_bytes) {
    live_bytes -= std::min(live_bytes, record_bytes);
    live_records -= std::min<std::uint64_t>(live_records, 1);
    dead_bytes += record_bytes;
  }
};

// The table values on their own, as read from LMDB (tests/fuzz feeds them arbitrary
// bytes). Both throw StoreError(EIO) for bytes that are not such a value.
ObjectInfo decode_object_value(Bytes key, Bytes value);
PackInfo decode_pack_value(Bytes key, Bytes value);

class Index {
 public:
  explicit Index(LmdbEnv& env);

  std::optional<ObjectInfo> get(const LmdbTxn& txn, const ObjectId& id) const;
  void put(LmdbTxn& txn, const ObjectInfo& info);
  bool erase(LmdbTxn& txn, const ObjectId& id);
  // Visits entries in id order, starting at `from` when given; stop by returning false.
  void for_each(const LmdbTxn& txn, const std::function<bool(const ObjectInfo&)>& visit,
                const ObjectId* from = nullptr) const;
  // How many objects there are, without a walk: LMDB keeps the count.
  std::uint64_t object_count(const LmdbTxn& txn) const;

  // Reference counting inside the caller's write transaction. add_ref/release throw
  // StoreError(ENOENT) for a missing object; release below zero throws EINVAL.
  // Both return the new refcount.
  std::uint64_t add_ref(LmdbTxn& txn, const ObjectId& id, std::uint64_t n);
  std::uint64_t release(LmdbTxn& txn, const ObjectId& id, std::uint64_t n);

  std::optional<PackInfo> get_pack(const LmdbTxn& txn, std::uint32_t id) const;
  // Also moves the recorded next pack id past info.id, so that no id an index has
  // named is ever handed out again.
  void put_pack(LmdbTxn& txn, const PackInfo& info);
  void erase_pack(LmdbTxn& txn, std::uint32_t id);
  void for_each_pack(const LmdbTxn& txn, const std::function<void(const PackInfo&)>& visit) const;

  std::optional<std::string> get_meta(const LmdbTxn& txn, std::string_view key) const;
  void put_meta(LmdbTxn& txn, std::string_view key, std::string_view value);

  // The lowest pack id no pack entry has ever had (1 in a new index). Pack ids are
  // handed out in memory (Store::Impl::new_pack_id) from this and the files on disk.
  std::uint32_t next_pack_id(const LmdbTxn& txn) const;

  // Empties the objects and packs tables (rebuild_index).
  void clear_objects_and_packs(LmdbTxn& txn);

 private:
  MDB_dbi objects_;
  MDB_dbi packs_;
  MDB_dbi meta_;
};

}  // namespace casfs
