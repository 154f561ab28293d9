// gc: drops objects nobody references (refcount 0).
//
// A loose object's entry is removed in one transaction, then its file is unlinked;
// a packed object's entry is removed and its record counted as dead bytes in the
// pack, for repack (or, in an intake pack, pack) to reclaim. gc also removes files
// left behind by crashes: loose files no entry names as loose (pack crashed before
// unlinking them, or an insert crashed before indexing) and pack files no pack entry
// names (an intake pack whose insert crashed before indexing it).
#include <unordered_set>

#include "store/failpoint.h"
#include "store/store_impl.h"

namespace casfs {

namespace {
constexpr std::size_t kGcBatch = 1024;
}

void Store::Impl::remove_orphan_packs() {
  // In this order: a file listed here that an insert is writing was registered in
  // flight before it was created, and stays so until after the commit that puts
  // its entry in the index; so it shows in one of the two sets read after.
  const auto files = packs.list_files();
  auto known = intake_in_flight.ids();
  {
    auto txn = LmdbTxn::read(*env);
    index->for_each_pack(txn, [&](const PackInfo& p) { known.insert(p.id); });
  }
  for (std::uint32_t id : files) {
    if (known.contains(id)) continue;
    // Only a file that is plainly a pack of ours, under its own name: anything else
    // (a damaged header, a newer format) is left for a person to look at.
    std::shared_ptr<const UniqueFd> fd;
    try {
      fd = packs.open_read(id);
    } catch (const StoreError&) {
      continue;  // gone meanwhile
    }
    std::array<std::byte, kPackHeaderSize> bytes;
    auto header = pread_full(fd->get(), bytes, 0) == bytes.size() ? PackFileHeader::decode(bytes)
                                                                  : std::nullopt;
    if (header && header->version <= kPackFormatVersion && header->pack_id == id) packs.remove(id);
  }
}

GcReport Store::gc(const ProgressFn& progress) {
  auto& impl = *impl_;
  std::lock_guard job(impl.maintenance);
  GcReport report;
  impl.remove_orphan_packs();

  std::vector<ObjectInfo> dead;
  {
    auto txn = LmdbTxn::read(*impl.env);
    impl.index->for_each(txn, [&](const ObjectInfo& info) {
      if (info.refcount == 0) dead.push_back(info);
      return true;
    });
  }
  const std::uint64_t total = dead.size() + 256;
  std::uint64_t done = 0;

  for (std::size_t from = 0; from < dead.size(); from += kGcBatch) {
    std::size_t to = std::min(dead.size(), from + kGcBatch);
    // Exclusive: no insert may find one of these entries and count a reference on
    // it between our commit and our unlink.
    std::unique_lock gate(impl.loose_gate);
    std::vector<ObjectId> unlink;
    auto txn = LmdbTxn::write(*impl.env);
    for (std::size_t i = from; i < to; ++i) {
      auto info = impl.index->get(txn, dead[i].id);
      if (!info || info->refcount != 0) continue;  // referenced again meanwhile
      impl.index->erase(txn, info->id);
      if (info->tier == Tier::kLoose) {
        unlink.push_back(info->id);
        report.loose_removed += 1;
        report.bytes_freed += info->raw_size;
        continue;
      }
      auto pack = impl.index->get_pack(txn, info->pack_id);
      if (pack) {
        pack->record_died(kRecordHeaderSize + info->stored_size);
        impl.index->put_pack(txn, *pack);
      }
      report.packed_dropped += 1;
      report.bytes_freed += kRecordHeaderSize + info->stored_size;
    }
    txn.commit();
    failpoint("gc.dropped");
    impl.loose.remove(*impl.io, unlink);
    done += to - from;
    if (progress) progress(done, total);
  }

  // Loose files that no loose entry names.
  for (unsigned prefix = 0; prefix < 256; ++prefix) {
    std::unique_lock gate(impl.loose_gate);
    auto txn = LmdbTxn::read(*impl.env);
    std::vector<std::string> orphans;
    std::vector<std::string> temp_files;
    impl.loose.for_each_in_prefix(prefix,
                                  [&](const ObjectId& id, const std::string& rel, bool valid) {
                                    if (!valid) {
                                      // With the gate held no insert is under way: a temporary file
                                      // is a crash's.
                                      if (LooseTier::is_temp_name(rel.substr(3)))
                                        temp_files.push_back(rel);
                                      return;
                                    }
                                    auto info = impl.index->get(txn, id);
                                    if (!info || info->tier != Tier::kLoose) orphans.push_back(rel);
                                  });
    txn.abort();
    for (const auto& rel : orphans) {
      if (::unlinkat(impl.loose.dir_fd(), rel.c_str(), 0) == 0) report.loose_removed += 1;
    }
    for (const auto& rel : temp_files) ::unlinkat(impl.loose.dir_fd(), rel.c_str(), 0);
    if (progress) progress(++done, total);
  }
  return report;
}

}  // namespace casfs
