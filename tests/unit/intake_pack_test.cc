// Intake packs (store/intake_pack.h): batches of many new objects written as one raw
// pack, indexed, read, collected, rebuilt and finally compressed away by pack(), on a
// real disk with whichever io engine CASFS_IO selects.
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "store/hash.h"
#include "store/index.h"
#include "store/lmdb.h"
#include "store/pack_format.h"
#include "store/store.h"
#include "store/store_config.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::byte>;
using testing::random_bytes;
using testing::TempDir;

Bytes text(std::mt19937_64& rng, std::size_t size) {
  static const char* words[] = {"intake ", "pack ", "record ", "casfs ", "raw ", "zstd\n"};
  Bytes out;
  while (out.size() < size) {
    for (const char* c = words[rng() % 6]; *c && out.size() < size; ++c)
      out.push_back(std::byte(*c));
  }
  return out;
}

std::vector<std::span<const std::byte>> spans_of(const std::vector<Bytes>& objects) {
  return {objects.begin(), objects.end()};
}

class IntakePackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "store";
    Store::init(dir_);
    store_ = Store::open(dir_);
  }
  // `count` distinct objects of about `size` bytes, text (compressible) or random.
  std::vector<Bytes> objects(std::size_t count, std::size_t size, bool compressible = true) {
    std::vector<Bytes> out;
    for (std::size_t i = 0; i < count; ++i) {
      Bytes b = compressible ? text(rng_, size + i) : random_bytes(rng_, size + i);
      out.push_back(std::move(b));
    }
    return out;
  }
  std::vector<ObjectId> insert(const std::vector<Bytes>& objs, std::uint32_t refs = 1) {
    std::vector<ObjectId> ids;
    for (const auto& r : store_->insert_many(spans_of(objs), refs)) ids.push_back(r.id);
    return ids;
  }
  void expect_reads(const std::vector<Bytes>& objs, const std::vector<ObjectId>& ids) {
    for (std::size_t i = 0; i < objs.size(); ++i)
      ASSERT_EQ(store_->read(ids[i]), objs[i]) << "object " << i;
  }
  std::map<std::uint32_t, PackInfo> packs() { return testing::pack_table(*store_); }
  std::uint64_t files_in(const char* sub) {
    std::uint64_t n = 0;
    for (auto& e : fs::recursive_directory_iterator(dir_ / sub)) n += e.is_regular_file();
    return n;
  }

  std::mt19937_64 rng_{testing::test_seed()};
  TempDir tmp_;
  fs::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(IntakePackTest, ALargeBatchIsOneRawPackThatPackCompressesAndRemoves) {
  auto objs = objects(100, 20000);
  auto ids = insert(objs);
  auto s = store_->status();
  EXPECT_EQ(s.intake_objects, 100u);
  EXPECT_EQ(s.loose_objects, 0u);
  EXPECT_EQ(s.packed_objects, 0u);
  EXPECT_EQ(s.intake_packs, 1u);
  EXPECT_EQ(s.intake_bytes, s.stored_bytes()) << "intake records are raw";
  EXPECT_EQ(files_in("loose"), 0u);
  EXPECT_EQ(files_in("packs"), 1u);
  auto p = packs().begin()->second;
  EXPECT_TRUE(p.intake);
  EXPECT_EQ(p.live_records, 100u);
  EXPECT_EQ(p.dead_bytes, 0u);
  const std::uint32_t intake_id = p.id;
  for (const auto& id : ids) {
    auto info = store_->stat(id);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->tier, Tier::kPacked);
    EXPECT_EQ(info->pack_id, intake_id);
    EXPECT_EQ(info->codec, Codec::kRaw);
    EXPECT_FALSE(info->block_sums.empty()) << "20 KB raw objects keep block sums";
  }
  expect_reads(objs, ids);
  EXPECT_TRUE(store_->verify().clean());

  auto report = store_->pack();
  EXPECT_EQ(report.objects, 100u);
  s = store_->status();
  EXPECT_EQ(s.unpacked_objects(), 0u);
  EXPECT_EQ(s.packed_objects, 100u);
  EXPECT_EQ(s.intake_packs, 0u);
  EXPECT_LT(s.packed_stored_bytes, s.packed_raw_bytes / 2) << "text compresses";
  EXPECT_FALSE(fs::exists(dir_ / "packs" / (std::to_string(intake_id) + ".pack")));
  EXPECT_EQ(files_in("packs"), 1u);
  expect_reads(objs, ids);
  EXPECT_TRUE(store_->verify().clean());

  // The ids of removed packs are not handed out again, even after reopening.
  store_.reset();
  store_ = Store::open(dir_);
  insert(objects(30, 3000));
  for (const auto& [id, info] : packs()) EXPECT_GT(id, intake_id);
}

TEST_F(IntakePackTest, SmallBatchesAndStoresWithoutIntakeStayLoose) {
  auto few = objects(15, 3000);
  insert(few);
  EXPECT_EQ(store_->status().loose_objects, 15u);
  EXPECT_EQ(store_->status().intake_objects, 0u);

  store_.reset();
  OpenOptions off;
  off.intake_min_objects = 0;
  store_ = Store::open(dir_, off);
  insert(objects(100, 3000));
  EXPECT_EQ(store_->status().loose_objects, 115u);

  // A store of format version 2: a casfs of that version must be able to read it.
  store_.reset();
  auto old_dir = tmp_.path() / "v2";
  Store::init(old_dir);
  {
    std::ifstream in(old_dir / "casfs.json");
    std::string json((std::istreambuf_iterator<char>(in)), {});
    auto at = json.find("\"version\": 3");
    ASSERT_NE(at, std::string::npos) << json;
    json.replace(at, 12, "\"version\": 2");
    std::ofstream(old_dir / "casfs.json") << json;
  }
  store_ = Store::open(old_dir);
  insert(objects(100, 3000));
  EXPECT_EQ(store_->status().loose_objects, 100u);
  EXPECT_EQ(store_->status().intake_packs, 0u);

  // Until it is upgraded; from then on it takes them, and says so after reopening.
  EXPECT_EQ(store_->upgrade(), 2);
  EXPECT_EQ(store_->upgrade(), kStoreFormatVersion);
  insert(objects(100, 3000));
  EXPECT_EQ(store_->status().intake_objects, 100u);
  store_.reset();
  store_ = Store::open(old_dir);
  insert(objects(20, 3000));
  EXPECT_EQ(store_->status().intake_objects, 120u);
  EXPECT_EQ(store_->status().loose_objects, 100u);
}

TEST_F(IntakePackTest, ObjectsAlreadyStoredAreNotWrittenAgain) {
  auto objs = objects(40, 5000);
  auto ids = insert(objs);
  auto more = objects(40, 9000);
  std::vector<Bytes> mixed = objs;  // 40 known
  mixed.insert(mixed.end(), more.begin(), more.end());
  mixed.push_back(more[0]);  // and one twice in the batch
  auto results = store_->insert_many(spans_of(mixed));
  std::size_t added = 0;
  for (const auto& r : results) added += r.added;
  EXPECT_EQ(added, 40u);
  auto s = store_->status();
  EXPECT_EQ(s.intake_objects, 80u);
  EXPECT_EQ(s.intake_packs, 2u);
  for (const auto& [id, p] : packs()) EXPECT_EQ(p.dead_bytes, 0u) << "pack " << id;
  EXPECT_EQ(store_->stat(ids[0])->refcount, 2u);
  EXPECT_EQ(store_->stat(results[40].id)->refcount, 2u);
}

// Two inserts of the same new objects, both written before either commits (as two
// files written out at once): the second's records are dead, and pack() drops them
// and its pack.
TEST_F(IntakePackTest, ACopyIndexedFirstByAnotherInsertLeavesDeadRecords) {
  auto objs = objects(30, 4000);
  auto spans = spans_of(objs);
  {
    auto first = store_->prepare_insert(spans);
    auto second = store_->prepare_insert(spans);
    EXPECT_EQ(files_in("packs"), 2u);
    for (auto* pending : {&first, &second}) {
      auto txn = LmdbTxn::write(store_->env());
      store_->commit_insert(txn, *pending);
      txn.commit();
    }
  }
  auto ps = packs();
  ASSERT_EQ(ps.size(), 2u);
  auto a = ps.begin()->second, b = std::next(ps.begin())->second;
  EXPECT_EQ(a.live_records + b.live_records, 30u);
  EXPECT_EQ(a.dead_bytes + b.dead_bytes, b.size - kPackHeaderSize)
      << "one pack's records are all dead";
  for (const auto& o : objs) EXPECT_EQ(store_->stat(Sha256::of(o))->refcount, 2u);
  store_->pack();
  EXPECT_EQ(store_->status().intake_packs, 0u);
  EXPECT_EQ(files_in("packs"), 1u);
  for (const auto& o : objs) EXPECT_EQ(store_->read(Sha256::of(o)), o);
}

// Until an insert is over (its PendingInsert gone), more may be committed into its
// pack, as into the open intake pack: pack() moves the records but keeps the file.
TEST_F(IntakePackTest, PackKeepsADrainedIntakePackWhileAnInsertIntoItIsInFlight) {
  auto objs = objects(20, 3000);
  auto spans = spans_of(objs);
  {
    auto pending = store_->prepare_insert(spans);
    auto txn = LmdbTxn::write(store_->env());
    store_->commit_insert(txn, pending);
    txn.commit();
    store_->pack();
    EXPECT_EQ(store_->status().intake_objects, 0u);
    EXPECT_EQ(store_->status().intake_packs, 1u);
    EXPECT_EQ(files_in("packs"), 2u);
  }
  store_->pack();
  EXPECT_EQ(store_->status().intake_packs, 0u);
  EXPECT_EQ(files_in("packs"), 1u);
  for (const auto& o : objs) EXPECT_EQ(store_->read(Sha256::of(o)), o);
}

TEST_F(IntakePackTest, AnUncommittedIntakePackIsAnOrphanForGcButNotWhileInFlight) {
  auto objs = objects(20, 3000);
  auto spans = spans_of(objs);
  {
    auto pending = store_->prepare_insert(spans);
    // In flight: repack, which removes orphan packs as gc does (gc would wait for the
    // insert to end), must leave it alone.
    store_->repack();
    EXPECT_EQ(files_in("packs"), 1u);
    auto txn = LmdbTxn::write(store_->env());
    store_->commit_insert(txn, pending);
    txn.abort();  // the caller gave up: nothing names the pack
  }
  EXPECT_EQ(store_->status().intake_objects, 0u);
  EXPECT_EQ(files_in("packs"), 1u);
  store_->gc();
  EXPECT_EQ(files_in("packs"), 0u);
  EXPECT_FALSE(store_->has(Sha256::of(objs[0])));
}

TEST_F(IntakePackTest, GcDropsUnreferencedIntakeObjectsAndPackRemovesTheirPack) {
  auto keep = objects(20, 3000);
  auto drop = objects(20, 3000);
  auto keep_ids = insert(keep);
  insert(drop, /*refs=*/0);
  auto gc = store_->gc();
  EXPECT_EQ(gc.packed_dropped, 20u);
  auto s = store_->status();
  EXPECT_EQ(s.intake_objects, 20u);
  EXPECT_EQ(s.intake_packs, 2u);
  EXPECT_GT(s.dead_bytes, 0u);
  // repack leaves intake packs to pack(), however dead they are.
  RepackOptions eager;
  eager.dead_threshold = 0.0;
  store_->repack(eager);
  EXPECT_EQ(store_->status().intake_packs, 2u);
  store_->pack();
  s = store_->status();
  EXPECT_EQ(s.intake_packs, 0u);
  EXPECT_EQ(s.packed_objects, 20u);
  EXPECT_EQ(s.dead_bytes, 0u);
  EXPECT_EQ(files_in("packs"), 1u);
  expect_reads(keep, keep_ids);
}

TEST_F(IntakePackTest, RebuildIndexKnowsIntakePacksAgain) {
  auto objs = objects(50, 9000);  // over 8 KiB: with block sums
  auto ids = insert(objs);
  insert(objects(16, 100, /*compressible=*/false));
  auto before = store_->status();
  ASSERT_EQ(before.intake_packs, 2u);
  std::filesystem::remove_all(dir_ / "meta");
  store_.reset();
  OpenOptions rebuild;
  rebuild.allow_missing_index = true;
  store_ = Store::open(dir_, rebuild);
  auto report = store_->rebuild_index();
  EXPECT_EQ(report.packed_objects, 66u);
  auto after = store_->status();
  EXPECT_EQ(after.intake_objects, 66u);
  EXPECT_EQ(after.intake_packs, 2u);
  EXPECT_EQ(after.intake_bytes, before.intake_bytes);
  for (const auto& id : ids) EXPECT_FALSE(store_->stat(id)->block_sums.empty());
  store_->pack();
  EXPECT_EQ(store_->status().intake_packs, 0u);
  expect_reads(objs, ids);
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(IntakePackTest, ADamagedRecordIsAnErrorAndStaysWhilePackMovesTheRest) {
  auto objs = objects(30, 5000);
  auto ids = insert(objs);
  auto victim = store_->stat(ids[7]);
  ASSERT_TRUE(victim);
  auto path = dir_ / "packs" / (std::to_string(victim->pack_id) + ".pack");
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(victim->offset + kRecordHeaderSize + 100);
    f.seekg(at);
    const int old_byte = f.get();
    f.seekp(at);
    f.put(static_cast<char>(old_byte ^ 0x5a));
  }
  EXPECT_THROW(store_->read(ids[7]), StoreError);
  auto verify = store_->verify();
  ASSERT_EQ(verify.problems.size(), 1u);
  EXPECT_EQ(verify.problems[0].id, ids[7]);
  auto report = store_->pack();
  EXPECT_EQ(report.objects, 29u);
  auto s = store_->status();
  EXPECT_EQ(s.intake_objects, 1u) << "the damaged object stays where it is";
  EXPECT_EQ(s.intake_packs, 1u);
  for (std::size_t i = 0; i < objs.size(); ++i) {
    if (i == 7) continue;
    EXPECT_EQ(store_->read(ids[i]), objs[i]);
  }
}

}  // namespace
}  // namespace casfs
