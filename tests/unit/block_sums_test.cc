// Parts of objects read through their per-block sums (store/block_sums.h): the bytes
// are right, only the blocks a part needs are read and checked, damage is found by
// the read that touches it and by verify, and the sums survive pack, repack and
// rebuild_index. On a real disk, with whichever io engine CASFS_IO selects.
#include "store/block_sums.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "store/index.h"
#include "store/lmdb.h"
#include "store/pack_format.h"
#include "store/store_config.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::random_bytes;
using testing::TempDir;

struct PartResult {
  std::vector<std::byte> bytes;
  std::optional<StoreError> error;
};

PartResult read_part(Store& store, const ObjectId& id, std::uint64_t offset, std::uint64_t length) {
  PartResult r;
  bool done = false;
  ExtractSink sink;
  sink.data = [&](std::size_t, std::span<const std::byte> b) {
    r.bytes.insert(r.bytes.end(), b.begin(), b.end());
  };
  sink.done = [&](std::size_t) { done = true; };
  sink.error = [&](std::size_t, const StoreError& e) { r.error = e; };
  const ObjectPart part{id, offset, length};
  store.extract_parts(std::span(&part, 1), sink);
  EXPECT_NE(done, r.error.has_value());
  return r;
}

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::uint64_t offset,
                             std::uint64_t length) {
  if (offset >= v.size()) return {};
  const auto n = std::min<std::uint64_t>(length, v.size() - offset);
  return {v.begin() + static_cast<std::ptrdiff_t>(offset),
          v.begin() + static_cast<std::ptrdiff_t>(offset + n)};
}

void flip_byte(const std::filesystem::path& file, std::uint64_t at) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(at));
  const int old = f.get();
  f.seekp(static_cast<std::streamoff>(at));
  f.put(static_cast<char>(old ^ 0x5a));
}

class BlockSumsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "store";
    Store::init(dir_);
    store_ = Store::open(dir_);
  }
  std::filesystem::path loose_file(const ObjectId& id) const {
    return dir_ / "loose" / id.hex().substr(0, 2) / id.hex().substr(2);
  }
  std::filesystem::path pack_file(const ObjectId& id) const {
    return dir_ / "packs" / (std::to_string(store_->stat(id)->pack_id) + ".pack");
  }
  // Every interesting part of `data` reads back as the same slice of it.
  void expect_parts_read_right(const ObjectId& id, const std::vector<std::byte>& data) {
    const std::uint64_t n = data.size();
    const std::pair<std::uint64_t, std::uint64_t> parts[] = {{0, 1},
                                                             {4095, 2},
                                                             {5000, 4096},
                                                             {8192, 4096},
                                                             {n - 10, 100},
                                                             {n - 4096, 4096},
                                                             {0, n},
                                                             {n / 2, n},
                                                             {n + 5, 10},
                                                             {123, 0},
                                                             {0, UINT64_MAX},
                                                             {7, UINT64_MAX},
                                                             {12288, 3 * kSumBlockSize}};
    for (auto [offset, length] : parts) {
      auto r = read_part(*store_, id, offset, length);
      ASSERT_FALSE(r.error) << offset << "+" << length << ": " << r.error->what();
      EXPECT_EQ(r.bytes, slice(data, offset, length)) << offset << "+" << length;
    }
  }

  TempDir tmp_;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(BlockSumsTest, ObjectsBetweenTwoBlocksAndOneMebibyteGetThem) {
  std::mt19937_64 rng(testing::test_seed());
  for (std::uint64_t size :
       {0ull, 100ull, 8192ull, 8193ull, 65536ull + 123, 1ull << 20, (1ull << 20) + 1}) {
    auto data = random_bytes(rng, size);
    auto info = store_->stat(store_->insert(data).id);
    ASSERT_TRUE(info);
    if (size > 8192 && size <= (1u << 20)) {
      EXPECT_EQ(info->block_sums, block_sums_of(data)) << size;
      EXPECT_EQ(info->block_sums.size(), (size + 4095) / 4096) << size;
    } else {
      EXPECT_TRUE(info->block_sums.empty()) << size;
    }
  }
}

TEST_F(BlockSumsTest, PartsReadRightFromLooseAndPackedObjects) {
  std::mt19937_64 rng(testing::test_seed());
  auto data = random_bytes(rng, 17 * kSumBlockSize - 300);
  auto id = store_->insert(data).id;
  auto filler = store_->insert(random_bytes(rng, 100000)).id;
  ASSERT_FALSE(store_->stat(id)->block_sums.empty());
  expect_parts_read_right(id, data);
  store_->pack();
  ASSERT_EQ(store_->stat(id)->tier, Tier::kPacked);
  ASSERT_EQ(store_->stat(id)->codec, Codec::kRaw);  // random bytes are not worth zstd
  EXPECT_EQ(store_->stat(id)->block_sums, block_sums_of(data));
  expect_parts_read_right(id, data);
  // Repack moves the record out of a pack that is mostly dead; the sums go with it.
  const auto pack_before = store_->stat(id)->pack_id;
  store_->release(filler);
  store_->gc();
  EXPECT_EQ(store_->repack().packs_rewritten, 1u);
  EXPECT_NE(store_->stat(id)->pack_id, pack_before);
  EXPECT_EQ(store_->stat(id)->block_sums, block_sums_of(data));
  expect_parts_read_right(id, data);
}

// Packed blocks are read with O_DIRECT, aligned around the bytes asked for: records
// start anywhere in a pack, and the last one ends where the file does.
TEST_F(BlockSumsTest, PartsReadRightAtEveryRecordOffsetAndAtThePackEnd) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  for (int k = 0; k < 20; ++k) objects.push_back(random_bytes(rng, 9000 + rng() % 120000));
  std::vector<std::span<const std::byte>> spans(objects.begin(), objects.end());
  std::vector<ObjectId> ids;
  for (const auto& r : store_->insert_many(spans)) ids.push_back(r.id);
  auto read_all = [&](const char* where) {
    std::uint64_t last_end = 0;
    for (std::size_t k = 0; k < objects.size(); ++k) {
      SCOPED_TRACE(std::string(where) + ", object " + std::to_string(k));
      const auto info = store_->stat(ids[k]);
      ASSERT_TRUE(info && info->tier == Tier::kPacked && !info->block_sums.empty());
      last_end = std::max(last_end, info->offset + kRecordHeaderSize + info->stored_size);
      expect_parts_read_right(ids[k], objects[k]);
    }
    // One of them is the pack file's last record.
    EXPECT_EQ(std::filesystem::file_size(pack_file(ids[0])), last_end);
  };
  ASSERT_EQ(store_->status().intake_packs, 1u);  // 20 new objects at once: one intake pack
  read_all("intake pack");
  store_->pack();
  ASSERT_EQ(store_->status().intake_packs, 0u);
  read_all("regular pack");
}

TEST_F(BlockSumsTest, CompressedObjectsLoseTheirSumsAndStillReadInParts) {
  std::vector<std::byte> text;
  for (int i = 0; text.size() < 40000; ++i) {
    auto line = "line " + std::to_string(i) + " of a very compressible object\n";
    for (char c : line) text.push_back(std::byte(c));
  }
  auto id = store_->insert(text).id;
  EXPECT_FALSE(store_->stat(id)->block_sums.empty());
  store_->pack();
  ASSERT_EQ(store_->stat(id)->codec, Codec::kZstd);
  EXPECT_TRUE(store_->stat(id)->block_sums.empty());
  expect_parts_read_right(id, text);
}

// A part reads and checks its own blocks only: damage elsewhere in the object does not
// fail it (a whole read would), damage inside it does, and verify names the object.
TEST_F(BlockSumsTest, DamageFailsTheReadsThatTouchItAndVerify) {
  std::mt19937_64 rng(testing::test_seed());
  auto loose_data = random_bytes(rng, 16 * kSumBlockSize);
  auto packed_data = random_bytes(rng, 16 * kSumBlockSize);
  auto packed = store_->insert(packed_data).id;
  store_->pack();
  auto loose = store_->insert(loose_data).id;
  const std::uint64_t damaged_block = 9;
  flip_byte(loose_file(loose), damaged_block * kSumBlockSize + 17);
  const auto info = *store_->stat(packed);
  ASSERT_EQ(info.codec, Codec::kRaw);
  flip_byte(pack_file(packed),
            info.offset + kRecordHeaderSize + damaged_block * kSumBlockSize + 17);

  for (const auto& [id, data] : {std::pair{loose, loose_data}, std::pair{packed, packed_data}}) {
    auto before = read_part(*store_, id, 4096, 4096);
    ASSERT_FALSE(before.error) << before.error->what();
    EXPECT_EQ(before.bytes, slice(data, 4096, 4096));
    auto after = read_part(*store_, id, 15 * kSumBlockSize - 10, 10);
    ASSERT_FALSE(after.error) << after.error->what();
    EXPECT_EQ(after.bytes, slice(data, 15 * kSumBlockSize - 10, 10));

    auto hit = read_part(*store_, id, damaged_block * kSumBlockSize + 4000, 200);
    ASSERT_TRUE(hit.error);
    EXPECT_EQ(hit.error->code(), EIO);
    EXPECT_NE(std::string(hit.error->what()).find("block 9"), std::string::npos)
        << hit.error->what();
    EXPECT_THROW(store_->read(id), StoreError);
  }
  auto report = store_->verify();
  ASSERT_EQ(report.problems.size(), 2u);

  // Beside a part that needs its whole object, every object is read whole (one
  // round trip, and the whole objects can be cached): the damage is then found.
  auto other_data = random_bytes(rng, 10000);
  auto other = store_->insert(other_data).id;
  const ObjectPart both[] = {{loose, 4096, 4096}, {other, 0, other_data.size()}};
  std::vector<int> errors(2, 0);
  std::vector<std::vector<std::byte>> got(2);
  ExtractSink sink;
  sink.data = [&](std::size_t i, std::span<const std::byte> b) {
    got[i].insert(got[i].end(), b.begin(), b.end());
  };
  sink.done = [](std::size_t) {};
  sink.error = [&](std::size_t i, const StoreError& e) { errors[i] = e.code(); };
  store_->extract_parts(both, sink);
  EXPECT_EQ(errors[0], EIO);
  EXPECT_EQ(errors[1], 0);
  EXPECT_EQ(got[1], other_data);
}

TEST_F(BlockSumsTest, VerifyFindsSumsThatDoNotMatchTheBytes) {
  std::mt19937_64 rng(testing::test_seed());
  auto data = random_bytes(rng, 40000);
  auto id = store_->insert(data).id;
  auto info = *store_->stat(id);
  info.block_sums[3] ^= 1;
  {
    auto txn = LmdbTxn::write(store_->env());
    store_->index().put(txn, info);
    txn.commit();
  }
  EXPECT_EQ(store_->read(id), data);  // whole reads check the object's own XXH3
  auto part = read_part(*store_, id, 3 * kSumBlockSize, 10);
  ASSERT_TRUE(part.error);
  EXPECT_EQ(part.error->code(), EIO);
  auto report = store_->verify();
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_EQ(report.problems[0].id, id);
  EXPECT_NE(report.problems[0].what.find("block sums"), std::string::npos);
  // The index is the one at fault, and rebuilding it recomputes them from the bytes.
  store_->rebuild_index();
  EXPECT_TRUE(store_->verify().clean());
  EXPECT_EQ(read_part(*store_, id, 3 * kSumBlockSize, 10).bytes,
            slice(data, 3 * kSumBlockSize, 10));
}

TEST_F(BlockSumsTest, RebuildIndexRecomputesThemForLooseAndPackedObjects) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<ObjectId> ids;
  ids.reserve(12);
  for (int i = 0; i < 6; ++i) ids.push_back(store_->insert(random_bytes(rng, 9000 + i * 20000)).id);
  store_->pack();
  for (int i = 0; i < 6; ++i) ids.push_back(store_->insert(random_bytes(rng, 9000 + i * 20000)).id);
  std::vector<std::vector<std::uint32_t>> before;
  for (const auto& id : ids) {
    before.push_back(store_->stat(id)->block_sums);
    ASSERT_FALSE(before.back().empty());
  }
  store_.reset();
  std::filesystem::remove_all(dir_ / "meta");
  store_ = Store::open(dir_, OpenOptions{.allow_missing_index = true});
  store_->rebuild_index();
  for (std::size_t i = 0; i < ids.size(); ++i)
    EXPECT_EQ(store_->stat(ids[i])->block_sums, before[i]);
}

// Version 1 stores stay readable by the casfs that made them: no entry gets sums.
TEST(BlockSumsOldStoreTest, AVersionOneStoreGetsNoSumsAndReadsPartsWhole) {
  TempDir tmp;
  auto dir = tmp.path() / "store";
  Store::init(dir);
  nlohmann::json j;
  std::ifstream(dir / "casfs.json") >> j;
  ASSERT_EQ(j["version"], kStoreFormatVersion);
  j["version"] = 1;
  std::ofstream(dir / "casfs.json") << j.dump();

  auto store = Store::open(dir);
  std::mt19937_64 rng(testing::test_seed());
  auto data = random_bytes(rng, 50000);
  auto loose = store->insert(data).id;
  EXPECT_TRUE(store->stat(loose)->block_sums.empty());
  store->pack();
  store->rebuild_index();
  EXPECT_TRUE(store->stat(loose)->block_sums.empty());
  auto r = read_part(*store, loose, 4096, 100);
  ASSERT_FALSE(r.error);
  EXPECT_EQ(r.bytes, slice(data, 4096, 100));
}

}  // namespace
}  // namespace casfs
