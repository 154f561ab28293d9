// STORE/casfs.json: the store's identity and the settings fixed at creation.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "store/store.h"

namespace casfs {

// 1: the first format. 2: index entries of raw objects may carry per-block sums
// (block_sums.h), which version 1's readers refuse. 3: intake packs (intake_pack.h),
// whose records carry a flag that version 2's readers refuse. Stores keep the version
// they were made with: this casfs reads all three, and adds block sums only to
// version 2 and 3 stores and intake packs only to version 3 stores.
inline constexpr int kStoreFormatVersion = 3;

struct StoreConfig {
  int version = kStoreFormatVersion;
  std::string uuid;
  StoreSettings settings;

  static StoreConfig create(const StoreSettings& settings);  // with a fresh uuid
  // Throws StoreError with a one-line message: missing directory, not a store,
  // unreadable or malformed casfs.json, or a newer format version.
  static StoreConfig load(const std::filesystem::path& store_dir);
  // The same checks on casfs.json's text (tests/fuzz feeds it arbitrary bytes);
  // `store_dir` only names the store in messages.
  static StoreConfig parse(std::string_view text, const std::filesystem::path& store_dir);
  // Written to a temporary file, synced and renamed into place.
  void save(const std::filesystem::path& store_dir) const;
};

}  // namespace casfs
