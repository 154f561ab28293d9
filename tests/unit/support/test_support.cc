#include "tests/unit/support/test_support.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "store/lmdb.h"

namespace casfs::testing {

TempDir::TempDir() {
  const char* base = std::getenv("CASFS_TEST_DIR");
  std::string pattern = std::string(base ? base : "/var/tmp") + "/casfs-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << pattern << " failed";
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void FreshStoreTest::SetUp() {
  Store::init(dir_.path() / "s");
  store_ = Store::open(dir_.path() / "s");
}

std::uint64_t test_seed() {
  const char* env = std::getenv("CASFS_TEST_SEED");
  std::uint64_t seed = env ? std::strtoull(env, nullptr, 0) : std::random_device{}();
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::printf("[   SEED   ] %s.%s CASFS_TEST_SEED=%llu\n", info ? info->test_suite_name() : "",
              info ? info->name() : "", static_cast<unsigned long long>(seed));
  return seed;
}

std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t size) {
  std::vector<std::byte> out(size);
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t v = rng();
    __builtin_memcpy(out.data() + i, &v, 8);
  }
  for (; i < size; ++i) out[i] = static_cast<std::byte>(rng());
  return out;
}

std::map<std::uint32_t, PackInfo> pack_table(Store& store) {
  std::map<std::uint32_t, PackInfo> packs;
  auto txn = LmdbTxn::read(store.env());
  store.index().for_each_pack(txn, [&](const PackInfo& p) { packs.emplace(p.id, p); });
  return packs;
}

}  // namespace casfs::testing
