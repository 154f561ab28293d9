// status: counts objects, bytes and packs from the index.
#include "store/store_impl.h"

namespace casfs {

StoreStatus Store::status() {
  auto& impl = *impl_;
  StoreStatus s;
  s.io_engine = impl.io->name();
  auto txn = LmdbTxn::read(*impl.env);
  impl.index->for_each(txn, [&](const ObjectInfo& info) {
    if (info.tier == Tier::kLoose) {
      s.loose_objects += 1;
      s.loose_bytes += info.raw_size;
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
    s.pack_file_bytes += p.size;
    s.dead_bytes += p.dead_bytes;
  });
  return s;
}

LooseAdded Store::loose_added() const {
  return LooseAdded{impl_->loose_added_objects.load(), impl_->loose_added_bytes.load()};
}

}  // namespace casfs
