#include "store/index.h"

#include <array>
#include <vector>

#include "store/block_sums.h"
#include "store/byte_order.h"
#include "store/error.h"

namespace casfs {

namespace {

// Version 1: the fixed part alone. Version 2: the fixed part, then one u32 per
// block of the object (block_sums.h), as many as its raw size has blocks.
constexpr std::uint8_t kObjectValueVersion = 1;
constexpr std::uint8_t kObjectValueWithSums = 2;
constexpr std::size_t kObjectValueSize = 48;
constexpr std::uint8_t kPackValueVersion = 1;
constexpr std::size_t kPackValueSize = 40;

Bytes id_key(const ObjectId& id) {
  return std::as_bytes(std::span(id.bytes));
}

std::vector<std::byte> encode_object(const ObjectInfo& info) {
  std::vector<std::byte> v(kObjectValueSize + 4 * info.block_sums.size());
  v[0] = std::byte{info.block_sums.empty() ? kObjectValueVersion : kObjectValueWithSums};
  v[1] = static_cast<std::byte>(info.tier);
  v[2] = static_cast<std::byte>(info.codec);
  put_le<std::uint32_t>(&v[4], info.pack_id);
  put_le<std::uint64_t>(&v[8], info.offset);
  put_le<std::uint64_t>(&v[16], info.raw_size);
  put_le<std::uint64_t>(&v[24], info.stored_size);
  put_le<std::uint64_t>(&v[32], info.checksum);
  put_le<std::uint64_t>(&v[40], info.refcount);
  for (std::size_t b = 0; b < info.block_sums.size(); ++b)
    put_le<std::uint32_t>(&v[kObjectValueSize + 4 * b], info.block_sums[b]);
  return v;
}

ObjectInfo decode_object(Bytes key, Bytes v) {
  const auto unknown = [] {
    return StoreError(EIO, "index entry has an unknown layout; run `casfs store rebuild-index`");
  };
  if (key.size() != 32 || v.size() < kObjectValueSize) throw unknown();
  const bool with_sums = v[0] == std::byte{kObjectValueWithSums};
  if (!with_sums && (v[0] != std::byte{kObjectValueVersion} || v.size() != kObjectValueSize))
    throw unknown();
  ObjectInfo info;
  info.id = ObjectId::from_bytes(key);
  info.tier = static_cast<Tier>(v[1]);
  info.codec = static_cast<Codec>(v[2]);
  info.pack_id = get_le<std::uint32_t>(&v[4]);
  info.offset = get_le<std::uint64_t>(&v[8]);
  info.raw_size = get_le<std::uint64_t>(&v[16]);
  info.stored_size = get_le<std::uint64_t>(&v[24]);
  info.checksum = get_le<std::uint64_t>(&v[32]);
  info.refcount = get_le<std::uint64_t>(&v[40]);
  const auto damaged = [&] {
    return StoreError(
        EIO, "index entry for " + info.id.hex() + " is damaged; run `casfs store rebuild-index`");
  };
  if ((info.tier != Tier::kLoose && info.tier != Tier::kPacked) ||
      (info.codec != Codec::kRaw && info.codec != Codec::kZstd)) {
    throw damaged();
  }
  if (with_sums) {
    // Sums belong to raw bytes, one per block of them.
    const std::uint64_t sums = (v.size() - kObjectValueSize) / 4;
    if (info.codec != Codec::kRaw || (v.size() - kObjectValueSize) % 4 != 0 || sums == 0 ||
        sums != block_count(info.raw_size)) {
      throw damaged();
    }
    info.block_sums.resize(sums);
    for (std::size_t b = 0; b < sums; ++b)
      info.block_sums[b] = get_le<std::uint32_t>(&v[kObjectValueSize + 4 * b]);
  }
  return info;
}

std::array<std::byte, 4> pack_key(std::uint32_t id) {
  std::array<std::byte, 4> k;
  put_be32(k.data(), id);
  return k;
}

PackInfo decode_pack(Bytes key, Bytes v) {
  if (key.size() != 4 || v.size() != kPackValueSize || v[0] != std::byte{kPackValueVersion}) {
    throw StoreError(EIO,
                     "pack table entry has an unknown layout; run `casfs store rebuild-index`");
  }
  PackInfo p;
  p.id = get_be32(key.data());
  if (v[1] != std::byte{0} && v[1] != std::byte{1}) {
    throw StoreError(EIO, "pack table entry " + std::to_string(p.id) +
                              " is damaged; run `casfs store rebuild-index`");
  }
  p.intake = v[1] == std::byte{1};
  p.size = get_le<std::uint64_t>(&v[8]);
  p.live_bytes = get_le<std::uint64_t>(&v[16]);
  p.live_records = get_le<std::uint64_t>(&v[24]);
  p.dead_bytes = get_le<std::uint64_t>(&v[32]);
  return p;
}

}  // namespace

ObjectInfo decode_object_value(Bytes key, Bytes value) {
  return decode_object(key, value);
}
PackInfo decode_pack_value(Bytes key, Bytes value) {
  return decode_pack(key, value);
}

Index::Index(LmdbEnv& env)
    : objects_(env.open_db("objects")), packs_(env.open_db("packs")), meta_(env.open_db("meta")) {}

std::optional<ObjectInfo> Index::get(const LmdbTxn& txn, const ObjectId& id) const {
  auto v = txn.get(objects_, id_key(id));
  if (!v) return std::nullopt;
  return decode_object(id_key(id), *v);
}

void Index::put(LmdbTxn& txn, const ObjectInfo& info) {
  auto v = encode_object(info);
  txn.put(objects_, id_key(info.id), v);
}

bool Index::erase(LmdbTxn& txn, const ObjectId& id) {
  return txn.del(objects_, id_key(id));
}

void Index::for_each(const LmdbTxn& txn, const std::function<bool(const ObjectInfo&)>& visit,
                     const ObjectId* from) const {
  LmdbCursor cursor(txn, objects_);
  for (bool ok = from ? cursor.seek(id_key(*from)) : cursor.first(); ok; ok = cursor.next()) {
    if (!visit(decode_object(cursor.key(), cursor.value()))) return;
  }
}

std::uint64_t Index::object_count(const LmdbTxn& txn) const {
  MDB_stat stat;
  check_mdb(mdb_stat(txn.get(), objects_, &stat), "index stat");
  return stat.ms_entries;
}

std::uint64_t Index::add_ref(LmdbTxn& txn, const ObjectId& id, std::uint64_t n) {
  auto info = get(txn, id);
  if (!info) throw StoreError(ENOENT, "object " + id.hex() + " is not in the store");
  info->refcount += n;
  put(txn, *info);
  return info->refcount;
}

std::uint64_t Index::release(LmdbTxn& txn, const ObjectId& id, std::uint64_t n) {
  auto info = get(txn, id);
  if (!info) throw StoreError(ENOENT, "object " + id.hex() + " is not in the store");
  if (info->refcount < n) {
    throw StoreError(EINVAL, "object " + id.hex() + " has " + std::to_string(info->refcount) +
                                 " references; cannot release " + std::to_string(n));
  }
  info->refcount -= n;
  put(txn, *info);
  return info->refcount;
}

std::optional<PackInfo> Index::get_pack(const LmdbTxn& txn, std::uint32_t id) const {
  auto k = pack_key(id);
  auto v = txn.get(packs_, k);
  if (!v) return std::nullopt;
  return decode_pack(k, *v);
}

void Index::put_pack(LmdbTxn& txn, const PackInfo& p) {
  std::array<std::byte, kPackValueSize> v{};
  v[0] = std::byte{kPackValueVersion};
  // Byte 1 was reserved (zero) before intake packs: a casfs from then reads an intake
  // pack as a regular one, which is correct, only never compressed.
  v[1] = std::byte{p.intake ? std::uint8_t{1} : std::uint8_t{0}};
  put_le<std::uint64_t>(&v[8], p.size);
  put_le<std::uint64_t>(&v[16], p.live_bytes);
  put_le<std::uint64_t>(&v[24], p.live_records);
  put_le<std::uint64_t>(&v[32], p.dead_bytes);
  txn.put(packs_, pack_key(p.id), v);
  if (p.id >= next_pack_id(txn)) put_meta(txn, "next_pack_id", std::to_string(p.id + 1));
}

void Index::erase_pack(LmdbTxn& txn, std::uint32_t id) {
  txn.del(packs_, pack_key(id));
}

void Index::for_each_pack(const LmdbTxn& txn,
                          const std::function<void(const PackInfo&)>& visit) const {
  LmdbCursor cursor(txn, packs_);
  for (bool ok = cursor.first(); ok; ok = cursor.next()) {
    visit(decode_pack(cursor.key(), cursor.value()));
  }
}

std::optional<std::string> Index::get_meta(const LmdbTxn& txn, std::string_view key) const {
  auto v = txn.get(meta_, as_bytes(key));
  if (!v) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(v->data()), v->size());
}

void Index::put_meta(LmdbTxn& txn, std::string_view key, std::string_view value) {
  txn.put(meta_, as_bytes(key), as_bytes(value));
}

std::uint32_t Index::next_pack_id(const LmdbTxn& txn) const {
  auto v = get_meta(txn, "next_pack_id");
  if (!v) return 1;
  try {
    return static_cast<std::uint32_t>(std::stoul(*v));
  } catch (const std::exception&) {
    throw StoreError(EIO, "the index's next pack id is damaged; run `casfs store rebuild-index`");
  }
}

void Index::clear_objects_and_packs(LmdbTxn& txn) {
  txn.clear(objects_);
  txn.clear(packs_);
}

}  // namespace casfs
