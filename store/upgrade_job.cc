// upgrade: raises a store's format version to this casfs's (store_config.h).
//
// What the new version adds is made first, casfs.json is rewritten (atomically,
// synced) last: after a crash in between, the store still says its old version, and
// upgrade runs again from the start. Only this casfs (or a newer one) reads the
// store meanwhile, as its index may already hold entries with block sums.
#include "store/store_config.h"
#include "store/store_impl.h"

namespace casfs {

int Store::upgrade(const ProgressFn& progress) {
  auto& impl = *impl_;
  int from;
  {
    std::lock_guard job(impl.maintenance);
    from = impl.config.version;
    if (from >= kStoreFormatVersion) return from;
    // New objects get what the new version keeps from here on.
    impl.format_version = kStoreFormatVersion;
  }
  try {
    // Version 1 indexes have no block sums: rebuilding from the bytes computes them,
    // keeping every object's references.
    if (from < 2) rebuild_index(progress);
    std::lock_guard job(impl.maintenance);
    StoreConfig raised = impl.config;
    raised.version = kStoreFormatVersion;
    raised.save(impl.dir);
    impl.config.version = raised.version;
  } catch (...) {
    impl.format_version = from;
    throw;
  }
  return from;
}

}  // namespace casfs
