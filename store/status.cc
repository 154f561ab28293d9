// status: counts objects, bytes and packs from the index.
#include <unordered_set>

#include "store/status_json.h"
#include "store/store_impl.h"

namespace casfs {

StoreStatus Store::status() {
  auto& impl = *impl_;
  StoreStatus s;
  s.io_engine = impl.io->name();
  auto txn = LmdbTxn::read(*impl.env);
  std::unordered_set<std::uint32_t> intake;
  impl.index->for_each_pack(txn, [&](const PackInfo& p) {
    if (p.intake) intake.insert(p.id);
  });
  impl.index->for_each(txn, [&](const ObjectInfo& info) {
    if (info.tier == Tier::kLoose) {
      s.loose_objects += 1;
      s.loose_bytes += info.raw_size;
    } else if (intake.contains(info.pack_id)) {
      s.intake_objects += 1;
      s.intake_bytes += info.raw_size;
    } else {
      s.packed_objects += 1;
      s.packed_raw_bytes += info.raw_size;
      s.packed_stored_bytes += info.stored_size;
    }
    if (info.refcount == 0) s.unreferenced_objects += 1;
    s.logical_bytes += info.raw_size * info.refcount;
    return true;
  });
  impl.index->for_each_pack(txn, [&](const PackInfo& p) {
    s.packs += 1;
    if (p.intake) s.intake_packs += 1;
    s.pack_file_bytes += p.size;
    s.dead_bytes += p.dead_bytes;
  });
  return s;
}

LooseAdded Store::loose_added() const {
  return LooseAdded{impl_->loose_added_objects.load(), impl_->loose_added_bytes.load()};
}

nlohmann::ordered_json status_json(const std::string& store_dir, const StoreStatus& s) {
  nlohmann::ordered_json j;
  j["store"] = store_dir;
  j["io_engine"] = s.io_engine;
  j["objects"] = {{"loose", s.loose_objects},
                  {"intake", s.intake_objects},
                  {"packed", s.packed_objects},
                  {"total", s.objects()},
                  {"unreferenced", s.unreferenced_objects}};
  j["bytes"] = {{"raw", s.raw_bytes()},
                {"stored", s.stored_bytes()},
                {"loose", s.loose_bytes},
                {"intake", s.intake_bytes},
                {"packed_raw", s.packed_raw_bytes},
                {"packed_stored", s.packed_stored_bytes},
                {"pack_files", s.pack_file_bytes},
                {"dead", s.dead_bytes}};
  j["packs"] = s.packs;
  j["intake_packs"] = s.intake_packs;
  return j;
}

}  // namespace casfs
