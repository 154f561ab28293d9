// repack: rewrites packs into a new one, dropping dead records, so the space gc
// freed inside packs comes back; and merges small packs so that, as in git, each
// pack is at least twice the size of the next smaller one.
//
// Crash safety: live records are copied (checked, never recompressed) into a new
// pack, which is synced (repack.synced); one transaction points the objects at their
// new records and swaps the pack entries (repack.committed); then the old files are
// unlinked (repack.removed). Before the commit the new pack is an orphan file and
// after it the old ones are; gc and the next repack remove orphans. Readers that
// looked an object up before the commit keep reading the old file through its open
// fd, or retry the look-up if it is already gone.
#include <algorithm>
#include <map>

#include <unordered_set>

#include "store/failpoint.h"
#include "store/object_check.h"
#include "store/store_impl.h"

namespace casfs {

namespace {

// Packs to merge so that the rest form a geometric progression: sizes ascending, the
// smallest k packs are rolled into one whenever a pack is less than twice the one
// below it (or less than twice everything merged so far).
std::vector<std::uint32_t> geometric_merge_set(std::vector<PackInfo> packs) {
  std::sort(packs.begin(), packs.end(),
            [](const PackInfo& a, const PackInfo& b) { return a.size < b.size; });
  std::size_t k = 0;
  for (std::size_t i = 1; i < packs.size(); ++i) {
    if (packs[i].size < 2 * packs[i - 1].size) k = i + 1;
  }
  std::uint64_t merged = 0;
  for (std::size_t i = 0; i < k; ++i) merged += packs[i].size;
  while (k > 0 && k < packs.size() && packs[k].size < 2 * merged) merged += packs[k++].size;
  std::vector<std::uint32_t> ids;
  if (k >= 2) {
    for (std::size_t i = 0; i < k; ++i) ids.push_back(packs[i].id);
  }
  return ids;
}

struct Moved {
  ObjectId id;
  std::uint32_t old_pack;
  std::uint64_t old_offset;
  std::uint64_t new_offset;
  std::uint64_t record_size;
};

// Copies one record from `src` to the end of `dest`, checking its payload on the way.
// Returns false (and writes nothing the index will ever name) if it does not check.
bool copy_record(int src, const ObjectInfo& info, PackAppender& dest, std::vector<std::byte>& buf) {
  const std::uint64_t size = kRecordHeaderSize + info.stored_size;
  if (size <= kInMemoryLimit) {
    buf.resize(size);
    if (pread_full(src, buf, info.offset) != size) return false;
    try {
      check_record(info, buf);
    } catch (const StoreError&) {
      return false;
    }
    pwrite_full(dest.fd(), buf, dest.size());
    dest.reserve(size);
    return true;
  }
  std::array<std::byte, kRecordHeaderSize> hb;
  if (pread_full(src, hb, info.offset) != hb.size()) return false;
  auto header = RecordHeader::decode(hb);
  if (!header || header->id != info.id || header->stored_size != info.stored_size ||
      header->payload_xxh3 != info.checksum) {
    return false;
  }
  buf.resize(kStreamPiece);
  Xxh3 xxh;
  const std::uint64_t at = dest.size();
  pwrite_full(dest.fd(), hb, at);
  for (std::uint64_t done = 0; done < info.stored_size;) {
    auto want = std::min<std::uint64_t>(buf.size(), info.stored_size - done);
    auto piece = std::span<std::byte>(buf).first(want);
    if (pread_full(src, piece, info.offset + kRecordHeaderSize + done) != want) return false;
    xxh.update(piece);
    pwrite_full(dest.fd(), piece, at + kRecordHeaderSize + done);
    done += want;
  }
  if (xxh.digest() != info.checksum) return false;
  dest.reserve(size);
  return true;
}

}  // namespace

RepackReport Store::repack(const RepackOptions& options, const ProgressFn& progress) {
  auto& impl = *impl_;
  std::lock_guard job(impl.maintenance);
  impl.remove_orphan_packs();
  RepackReport report;

  std::vector<PackInfo> all;
  std::vector<ObjectInfo> objects;
  {
    auto txn = LmdbTxn::read(*impl.env);
    impl.index->for_each_pack(txn, [&](const PackInfo& p) { all.push_back(p); });
    impl.index->for_each(txn, [&](const ObjectInfo& info) {
      if (info.tier == Tier::kPacked) objects.push_back(info);
      return true;
    });
  }
  std::map<std::uint32_t, PackInfo> chosen;
  std::vector<PackInfo> mergeable;
  for (const auto& p : all) {
    if (p.intake) continue;  // pack()'s: its records are to be compressed, not copied
    std::uint64_t body = p.size > kPackHeaderSize ? p.size - kPackHeaderSize : 0;
    if (p.dead_bytes > 0 &&
        static_cast<double>(p.dead_bytes) >= options.dead_threshold * static_cast<double>(body)) {
      chosen.emplace(p.id, p);
    } else {
      mergeable.push_back(p);
    }
  }
  if (options.merge_small) {
    for (std::uint32_t id : geometric_merge_set(mergeable)) {
      auto it = std::find_if(all.begin(), all.end(), [&](const PackInfo& p) { return p.id == id; });
      chosen.emplace(id, *it);
    }
  }
  if (chosen.empty()) return report;

  std::sort(objects.begin(), objects.end(), [](const ObjectInfo& a, const ObjectInfo& b) {
    return std::tie(a.pack_id, a.offset) < std::tie(b.pack_id, b.offset);
  });
  const std::uint32_t dest_id = impl.new_pack_id();
  auto dest = PackAppender::create(impl.packs, dest_id);

  std::vector<Moved> moved;
  std::unordered_set<std::uint32_t> damaged;  // packs with a live record that did not check
  std::vector<std::byte> buf;
  std::uint64_t done = 0;
  for (const auto& [id, p] : chosen) {
    report.bytes_before += p.size;
    std::shared_ptr<const UniqueFd> src;
    try {
      src = impl.packs.open_read(id);
    } catch (const StoreError&) {
      damaged.insert(id);
      continue;
    }
    auto first =
        std::lower_bound(objects.begin(), objects.end(), id,
                         [](const ObjectInfo& o, std::uint32_t v) { return o.pack_id < v; });
    for (auto it = first; it != objects.end() && it->pack_id == id; ++it) {
      std::uint64_t at = dest.size();
      if (!copy_record(src->get(), *it, dest, buf)) {
        damaged.insert(id);
        break;
      }
      moved.push_back(Moved{it->id, id, it->offset, at, kRecordHeaderSize + it->stored_size});
    }
    if (progress) progress(++done, chosen.size());
  }
  dest.sync();
  failpoint("repack.synced");

  {
    auto txn = LmdbTxn::write(*impl.env);
    PackInfo dinfo{dest_id, dest.size(), 0, 0, 0};
    for (const auto& m : moved) {
      if (damaged.contains(m.old_pack)) {
        dinfo.dead_bytes += m.record_size;
        continue;
      }
      auto info = impl.index->get(txn, m.id);
      if (!info || info->tier != Tier::kPacked || info->pack_id != m.old_pack ||
          info->offset != m.old_offset) {
        dinfo.dead_bytes += m.record_size;
        continue;
      }
      info->pack_id = dest_id;
      info->offset = m.new_offset;
      impl.index->put(txn, *info);
      dinfo.live_bytes += m.record_size;
      dinfo.live_records += 1;
    }
    impl.index->put_pack(txn, dinfo);
    for (const auto& [id, p] : chosen) {
      if (!damaged.contains(id)) impl.index->erase_pack(txn, id);
    }
    txn.commit();
  }
  failpoint("repack.committed");
  for (const auto& [id, p] : chosen) {
    if (damaged.contains(id)) continue;
    impl.packs.remove(id);
    report.packs_removed += 1;
    failpoint("repack.removed");
  }
  report.packs_rewritten = chosen.size() - damaged.size();
  report.bytes_after = dest.size();
  if (dest.size() == kPackHeaderSize) {
    // Everything was dead: no need to keep an empty pack.
    auto txn = LmdbTxn::write(*impl.env);
    impl.index->erase_pack(txn, dest_id);
    txn.commit();
    impl.packs.remove(dest_id);
    report.bytes_after = 0;
  }
  for (std::uint32_t id : damaged) {
    auto it = chosen.find(id);
    report.bytes_before -= it->second.size;
  }
  return report;
}

}  // namespace casfs
