// rebuild_index: recreates the objects and packs tables from the pack files and the
// loose files alone. Every pack record is checked (header and payload XXH3) and
// every loose file rehashed before it is indexed; the first good copy of an object
// wins (packed before loose). Refcounts are kept from the old index where it can be
// read and is this store's; otherwise each object found gets one reference (nothing
// is lost; the filesystem's fsck recomputes exact counts). An object that a readable
// old index did not have was dropped by gc: it stays out, its bytes count as dead.
#include <sys/stat.h>

#include <unordered_map>

#include "store/block_sums.h"
#include "store/object_check.h"
#include "store/store_impl.h"

namespace casfs {

RebuildReport Store::rebuild_index(const ProgressFn& progress) {
  auto& impl = *impl_;
  std::lock_guard job(impl.maintenance);
  // The tables are rewritten from what is on disk: no insert may commit meanwhile.
  std::unique_lock gate(impl.loose_gate);
  RebuildReport report;

  // What the old index knew, if it is ours.
  std::unordered_map<ObjectId, std::uint64_t, ObjectIdHash> old_refs;
  bool old_index_usable = false;
  try {
    auto txn = LmdbTxn::read(*impl.env);
    if (impl.index->get_meta(txn, "store_uuid") == impl.config.uuid) {
      impl.index->for_each(txn, [&](const ObjectInfo& info) {
        old_refs.emplace(info.id, info.refcount);
        return true;
      });
      old_index_usable = true;
    }
  } catch (const StoreError&) {
    old_refs.clear();
  }
  auto refcount_for = [&](const ObjectId& id) -> std::optional<std::uint64_t> {
    if (!old_index_usable) return 1;
    auto it = old_refs.find(id);
    if (it == old_refs.end()) return std::nullopt;
    return it->second;
  };

  std::unordered_map<ObjectId, ObjectInfo, ObjectIdHash> found;
  std::vector<PackInfo> packs;
  auto pack_ids = impl.packs.list_files();
  std::uint32_t max_pack_id = 0;
  std::uint64_t done = 0;
  const std::uint64_t total = pack_ids.size() + 256;
  std::vector<std::byte> buf;
  for (std::uint32_t pack_id : pack_ids) {
    max_pack_id = std::max(max_pack_id, pack_id);
    auto fd = impl.packs.open_read(pack_id);
    PackInfo pinfo{pack_id, 0, 0, 0, 0};
    auto scan = scan_pack(fd->get(), [&](std::uint64_t offset, const RecordHeader& h) {
      pinfo.intake = pinfo.intake || h.intake;  // an intake pack's records all say so
      // Check the payload before trusting the record. A raw one that gets block sums
      // (at most 1 MiB) is read once, for its check and its sums.
      const std::uint64_t payload_at = offset + kRecordHeaderSize;
      std::vector<std::uint32_t> sums;
      bool good = false;
      if (h.codec == Codec::kRaw && h.stored_size == h.raw_size && impl.keeps_block_sums() &&
          wants_block_sums(h.raw_size)) {
        std::vector<std::byte> payload(h.stored_size);
        good = pread_full(fd->get(), payload, payload_at) == payload.size() &&
               Xxh3::of(payload) == h.payload_xxh3;
        if (good) sums = block_sums_of(payload);
      } else {
        good = xxh3_of_range(fd->get(), payload_at, h.stored_size) ==
               std::optional<std::uint64_t>(h.payload_xxh3);
      }
      auto refs = refcount_for(h.id);
      if (!good || !refs || found.contains(h.id)) {
        pinfo.dead_bytes += h.record_size();
        return;
      }
      ObjectInfo info;
      info.id = h.id;
      info.tier = Tier::kPacked;
      info.codec = h.codec;
      info.pack_id = pack_id;
      info.offset = offset;
      info.raw_size = h.raw_size;
      info.stored_size = h.stored_size;
      info.checksum = h.payload_xxh3;
      info.refcount = *refs;
      info.block_sums = std::move(sums);
      found.emplace(h.id, info);
      pinfo.live_bytes += h.record_size();
      pinfo.live_records += 1;
      report.packed_objects += 1;
    });
    if (scan.header_ok && scan.version > kPackFormatVersion) continue;  // not ours to read
    pinfo.size = scan.valid_end;
    pinfo.dead_bytes += scan.damaged_bytes;
    report.torn_bytes += scan.file_size - scan.valid_end;
    report.damaged_bytes += scan.damaged_bytes;
    packs.push_back(pinfo);
    if (progress) progress(++done, total);
  }

  buf.resize(kStreamPiece);
  for (unsigned prefix = 0; prefix < 256; ++prefix) {
    impl.loose.for_each_in_prefix(
        prefix, [&](const ObjectId& id, const std::string& rel, bool valid) {
          if (!valid || found.contains(id)) return;
          UniqueFd fd(::openat(impl.loose.dir_fd(), rel.c_str(), O_RDONLY | O_CLOEXEC));
          if (!fd) return;
          Sha256 sha;
          Xxh3 xxh;
          std::uint64_t size = 0;
          // An object that gets block sums fits in the first piece.
          static_assert(kStreamPiece >= kMaxSummedObject);
          std::vector<std::uint32_t> first_piece_sums;
          while (std::size_t n = pread_full(fd.get(), buf, size)) {
            auto piece = std::span<const std::byte>(buf).first(n);
            sha.update(piece);
            xxh.update(piece);
            if (size == 0 && impl.keeps_block_sums()) first_piece_sums = block_sums_of(piece);
            size += n;
          }
          if (sha.finish() != id) {
            report.bad_loose_files += 1;
            return;
          }
          auto refs = refcount_for(id);
          if (!refs) return;  // gc's to remove
          ObjectInfo info;
          info.id = id;
          info.raw_size = info.stored_size = size;
          info.checksum = xxh.digest();
          info.refcount = *refs;
          if (wants_block_sums(size)) info.block_sums = std::move(first_piece_sums);
          found.emplace(id, info);
          report.loose_objects += 1;
        });
    if (progress) progress(++done, total);
  }

  for (const auto& [id, refs] : old_refs) {
    if (refs > 0 && !found.contains(id)) report.lost_objects.push_back(id);
  }

  auto txn = LmdbTxn::write(*impl.env);
  std::uint32_t next_id = 1;
  if (old_index_usable) {
    if (auto v = impl.index->get_meta(txn, "next_pack_id"))
      next_id = static_cast<std::uint32_t>(std::stoul(*v));
  }
  impl.index->clear_objects_and_packs(txn);
  for (const auto& [id, info] : found) impl.index->put(txn, info);
  for (const auto& p : packs) impl.index->put_pack(txn, p);
  impl.index->put_meta(txn, "store_uuid", impl.config.uuid);
  impl.index->put_meta(txn, "next_pack_id", std::to_string(std::max(next_id, max_pack_id + 1)));
  txn.commit();
  return report;
}

}  // namespace casfs
