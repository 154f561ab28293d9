// Helpers shared by the unit tests: temporary directories on the real disk and
// seeded random data (the seed is printed so a failure can be reproduced).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "store/index.h"
#include "store/store.h"

namespace casfs::testing {

// A fresh directory under $CASFS_TEST_DIR (default: /var/tmp), removed on
// destruction. /var/tmp rather than /tmp so tests use a real disk, not tmpfs.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A test that starts with a new store, "s" in its own temporary directory, opened
// with the default options.
class FreshStoreTest : public ::testing::Test {
 protected:
  void SetUp() override;
  TempDir dir_;
  std::unique_ptr<Store> store_;
};

// The seed for this test: $CASFS_TEST_SEED if set, else random; printed once.
std::uint64_t test_seed();

std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t size);

// The store's pack table as committed now, by pack id.
std::map<std::uint32_t, PackInfo> pack_table(Store& store);

}  // namespace casfs::testing
