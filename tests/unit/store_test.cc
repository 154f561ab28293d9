// The store through its public interface, on a real disk, with whichever io engine
// CASFS_IO selects (ctest runs this file once per engine).
#include "store/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "store/index.h"
#include "store/intake_pack.h"
#include "store/lmdb.h"
#include "store/pack_format.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::random_bytes;
using testing::TempDir;

// A string_view, so that a literal's bytes (static) outlive any container of spans.
std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::vector<std::byte> compressible(std::mt19937_64& rng, std::size_t size) {
  static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "casfs ", "chunk\n"};
  std::vector<std::byte> out;
  out.reserve(size);
  while (out.size() < size) {
    for (const char* c = words[rng() % 6]; *c && out.size() < size; ++c)
      out.push_back(std::byte(*c));
  }
  return out;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "store";
    Store::init(dir_);
    store_ = Store::open(dir_);
  }
  void reopen() {
    store_.reset();
    store_ = Store::open(dir_);
  }
  std::uint64_t count_files(const std::filesystem::path& d) {
    std::uint64_t n = 0;
    for (auto& e : std::filesystem::recursive_directory_iterator(d)) n += e.is_regular_file();
    return n;
  }

  TempDir tmp_;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, RoundTripsObjectsOfEverySizeInBothTiers) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects = {{},
                                                 random_bytes(rng, 1),
                                                 random_bytes(rng, 100),
                                                 compressible(rng, 5000),
                                                 random_bytes(rng, 1 << 20),
                                                 compressible(rng, 20 << 20),
                                                 random_bytes(rng, 9 << 20)};
  std::vector<ObjectId> ids;
  for (const auto& o : objects) {
    auto r = store_->insert(o);
    EXPECT_TRUE(r.added);
    EXPECT_EQ(r.size, o.size());
    EXPECT_EQ(r.id, Sha256::of(o));
    ids.push_back(r.id);
  }
  auto check_all = [&] {
    for (std::size_t i = 0; i < objects.size(); ++i) {
      EXPECT_EQ(store_->read(ids[i]), objects[i]) << "object " << i;
      std::vector<std::byte> streamed;
      store_->extract(
          ids[i], [&](auto piece) { streamed.insert(streamed.end(), piece.begin(), piece.end()); });
      EXPECT_EQ(streamed, objects[i]) << "object " << i;
    }
  };
  check_all();
  auto report = store_->pack();
  EXPECT_EQ(report.objects, objects.size());
  auto s = store_->status();
  EXPECT_EQ(s.loose_objects, 0u);
  EXPECT_EQ(s.packed_objects, objects.size());
  EXPECT_LT(s.packed_stored_bytes, s.packed_raw_bytes);  // text compressed
  EXPECT_EQ(count_files(dir_ / "loose"), 0u);
  check_all();
  reopen();
  check_all();
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, IdenticalBytesAreStoredOnceAndCounted) {
  std::string text = "the same bytes";
  auto a = store_->insert(bytes_of(text));
  auto b = store_->insert(bytes_of(text));
  EXPECT_TRUE(a.added);
  EXPECT_FALSE(b.added);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(store_->stat(a.id)->refcount, 2u);
  EXPECT_EQ(count_files(dir_ / "loose"), 1u);
  store_->pack();
  auto c = store_->insert(bytes_of(text));
  EXPECT_FALSE(c.added);
  EXPECT_EQ(store_->stat(a.id)->refcount, 3u);
  EXPECT_EQ(count_files(dir_ / "loose"), 0u) << "a packed object must not be written loose again";
}

TEST_F(StoreTest, LeftoverFileUnderAnObjectsNameIsReplacedOnInsert) {
  // What a crash in the middle of a loose write leaves: a torn file, not indexed.
  std::string text = "the whole object, as it should be";
  ObjectId id = Sha256::of(bytes_of(text));
  auto path = dir_ / "loose" / id.hex().substr(0, 2) / id.hex().substr(2);
  std::ofstream(path) << "the whole";
  std::vector<std::span<const std::byte>> many(10, bytes_of(text));
  many.push_back(bytes_of("another object"));
  auto results = store_->insert_many(many);  // a batch: the synced-together path
  EXPECT_TRUE(results[0].added);
  EXPECT_EQ(store_->read(id), std::vector<std::byte>(bytes_of(text).begin(), bytes_of(text).end()));
  EXPECT_EQ(store_->stat(id)->refcount, 10u);
  EXPECT_TRUE(store_->verify().clean());
  // And through the small-batch path, for an object with a leftover of another size.
  std::string other = "a second object";
  ObjectId id2 = Sha256::of(bytes_of(other));
  std::ofstream(dir_ / "loose" / id2.hex().substr(0, 2) / id2.hex().substr(2))
      << "junk junk junk junk";
  store_->insert(bytes_of(other));
  EXPECT_EQ(store_->read(id2).size(), other.size());
  store_->pack();
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, InsertManyAndExtractManyKeepOrderAndDedup) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  for (int i = 0; i < 10000; ++i) objects.push_back(random_bytes(rng, rng() % 1000));
  for (int i = 0; i < 500; ++i) objects.push_back(objects[rng() % 10000]);  // duplicates
  std::vector<std::span<const std::byte>> spans(objects.begin(), objects.end());
  auto results = store_->insert_many(spans);
  ASSERT_EQ(results.size(), objects.size());
  std::map<ObjectId, int> expected_refs;
  for (std::size_t i = 0; i < objects.size(); ++i) {
    ASSERT_EQ(results[i].id, Sha256::of(objects[i]));
    expected_refs[results[i].id] += 1;
  }
  for (auto& [id, n] : expected_refs)
    ASSERT_EQ(store_->stat(id)->refcount, static_cast<std::uint64_t>(n));

  auto extract_all = [&] {
    std::vector<ObjectId> ids;
    for (auto& r : results) ids.push_back(r.id);
    std::vector<std::vector<std::byte>> got(ids.size());
    std::vector<int> done(ids.size(), 0);
    ExtractSink sink;
    sink.data = [&](std::size_t i, auto piece) {
      got[i].insert(got[i].end(), piece.begin(), piece.end());
    };
    sink.done = [&](std::size_t i) { done[i] += 1; };
    sink.error = [&](std::size_t i, const StoreError& e) {
      ADD_FAILURE() << i << ": " << e.what();
    };
    store_->extract_many(ids, sink);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      ASSERT_EQ(done[i], 1) << i;
      ASSERT_EQ(got[i], objects[i]) << i;
    }
  };
  extract_all();
  store_->pack();
  extract_all();
}

TEST_F(StoreTest, InsertFilesReportsEachPathInOrder) {
  std::mt19937_64 rng(testing::test_seed());
  auto files = tmp_.path() / "files";
  std::filesystem::create_directories(files / "a-directory");
  std::vector<std::filesystem::path> paths;
  std::vector<std::vector<std::byte>> contents;
  auto add = [&](const std::string& name, std::vector<std::byte> data) {
    paths.push_back(files / name);
    std::ofstream(paths.back(), std::ios::binary)
        .write(reinterpret_cast<const char*>(data.data()),
               static_cast<std::streamsize>(data.size()));
    contents.push_back(std::move(data));
  };
  for (int i = 0; i < 50; ++i) add("small" + std::to_string(i), random_bytes(rng, rng() % 5000));
  add("empty", {});
  add("big", random_bytes(rng, 10 << 20));  // streamed, between batched ones
  add("copy", contents[3]);
  paths.insert(paths.begin() + 10, files / "a-directory");
  contents.insert(contents.begin() + 10, std::vector<std::byte>{});
  paths.insert(paths.begin() + 20, files / "missing");
  contents.insert(contents.begin() + 20, std::vector<std::byte>{});

  std::vector<std::size_t> order;
  store_->insert_files(paths, [&](std::size_t i, const InsertResult* r, const StoreError* e) {
    order.push_back(i);
    if (i == 10) {
      ASSERT_NE(e, nullptr);
      EXPECT_EQ(e->code(), EISDIR);
    } else if (i == 20) {
      ASSERT_NE(e, nullptr);
      EXPECT_EQ(e->code(), ENOENT);
    } else {
      ASSERT_NE(r, nullptr) << paths[i] << ": " << (e ? e->what() : "");
      EXPECT_EQ(r->id, Sha256::of(contents[i])) << paths[i];
    }
  });
  std::vector<std::size_t> expected(paths.size());
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(order, expected);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (i == 10 || i == 20) continue;
    EXPECT_EQ(store_->read(Sha256::of(contents[i])), contents[i]) << paths[i];
  }
  EXPECT_EQ(store_->stat(Sha256::of(contents[3]))->refcount, 2u);
}

TEST_F(StoreTest, TwoPhaseInsertCommitsWithTheCallersOwnTable) {
  // The filesystem's way: objects, references and its own rows in one commit.
  MDB_dbi own = store_->env().open_db("test_own_table");
  std::string a = "first chunk", b = "second chunk";
  std::vector<std::span<const std::byte>> objects = {bytes_of(a), bytes_of(b), bytes_of(a)};
  {
    auto pending = store_->prepare_insert(objects);
    auto txn = LmdbTxn::write(store_->env());
    auto results = store_->commit_insert(txn, pending);
    ASSERT_EQ(results.size(), 3u);
    EXPECT_TRUE(results[0].added);
    EXPECT_FALSE(results[2].added);
    txn.put(own, as_bytes(std::string_view("row")), std::as_bytes(std::span(results[0].id.bytes)));
    EXPECT_THROW(store_->commit_insert(txn, pending), StoreError);
    txn.commit();
  }
  reopen();
  ObjectId id_a = Sha256::of(bytes_of(a));
  EXPECT_EQ(store_->stat(id_a)->refcount, 2u);
  EXPECT_EQ(store_->stat(Sha256::of(bytes_of(b)))->refcount, 1u);
  {
    MDB_dbi again = store_->env().open_db("test_own_table");
    auto txn = LmdbTxn::read(store_->env());
    auto row = txn.get(again, as_bytes(std::string_view("row")));
    ASSERT_TRUE(row.has_value());
    EXPECT_EQ(ObjectId::from_bytes(*row), id_a);
  }

  // Aborted: nothing indexed, and gc removes the bytes that were written.
  std::string c = "never committed";
  std::vector<std::span<const std::byte>> one = {bytes_of(c)};
  {
    auto pending = store_->prepare_insert(one);
    auto txn = LmdbTxn::write(store_->env());
    store_->commit_insert(txn, pending);
    txn.abort();
  }
  ObjectId id_c = Sha256::of(bytes_of(c));
  EXPECT_FALSE(store_->has(id_c));
  EXPECT_EQ(count_files(dir_ / "loose"), 3u);
  store_->gc();
  EXPECT_EQ(count_files(dir_ / "loose"), 2u);
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, TwoPhaseInsertTakesTheCallersHashes) {
  std::string a = "hashed by the caller", b = "and this one too";
  std::vector<std::span<const std::byte>> objects = {bytes_of(a), bytes_of(b), bytes_of(a)};
  const std::vector<ObjectId> ids = {Sha256::of(bytes_of(a)), Sha256::of(bytes_of(b)),
                                     Sha256::of(bytes_of(a))};
  {
    auto pending = store_->prepare_insert(objects, ids);
    EXPECT_EQ(pending.ids(), ids);
    auto txn = LmdbTxn::write(store_->env());
    auto results = store_->commit_insert(txn, pending);
    ASSERT_EQ(results.size(), 3u);
    EXPECT_TRUE(results[0].added);
    EXPECT_TRUE(results[1].added);
    EXPECT_FALSE(results[2].added);
    txn.commit();
  }
  reopen();
  EXPECT_EQ(store_->read(ids[0]), std::vector<std::byte>(bytes_of(a).begin(), bytes_of(a).end()));
  EXPECT_EQ(store_->read(ids[1]), std::vector<std::byte>(bytes_of(b).begin(), bytes_of(b).end()));
  EXPECT_EQ(store_->stat(ids[0])->refcount, 2u);
  EXPECT_TRUE(store_->verify().clean());

  // As many ids as objects, or the call is refused before anything is written.
  const std::size_t loose_before = count_files(dir_ / "loose");
  std::string c = "with one id too few";
  std::vector<std::span<const std::byte>> two = {bytes_of(c), bytes_of(a)};
  try {
    store_->prepare_insert(two, std::span(ids).first(1));
    ADD_FAILURE() << "prepare_insert took 1 id for 2 objects";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), EINVAL);
  }
  EXPECT_EQ(count_files(dir_ / "loose"), loose_before);
}

TEST_F(StoreTest, SmallBatchesAreAppendedToOneOpenIntakePack) {
  store_.reset();
  store_ = Store::open(dir_, OpenOptions{.append_small_batches = true});
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  std::vector<ObjectId> ids;
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<std::span<const std::byte>> spans;
    for (int i = 0; i < 3; ++i) {
      // One empty object; every other one at least a byte long, so that no seed makes
      // a second empty one, which dedup would count once.
      objects.push_back(random_bytes(rng, batch == 0 && i == 0 ? 0 : 1 + rng() % 5000));
      spans.push_back(objects.back());
    }
    for (const auto& r : store_->insert_many(spans)) ids.push_back(r.id);
  }
  auto s = store_->status();
  EXPECT_EQ(s.loose_objects, 0u);
  EXPECT_EQ(s.intake_objects, 30u);
  EXPECT_EQ(s.intake_packs, 1u) << "every batch in the one open pack";
  EXPECT_EQ(count_files(dir_ / "packs"), 1u);
  EXPECT_EQ(count_files(dir_ / "loose"), 0u);
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(store_->read(ids[i]), objects[i]);

  // Two-phase inserts into it commit in any order, or not at all; the pack's entry
  // counts every byte below its committed end as live or dead.
  auto prepare = [&](std::size_t n) {
    std::vector<std::span<const std::byte>> spans;
    for (std::size_t i = 0; i < n; ++i) {
      objects.push_back(random_bytes(rng, 100 + rng() % 3000));
      spans.push_back(objects.back());
    }
    return store_->prepare_insert(spans);
  };
  auto commit = [&](PendingInsert& pending) {
    auto txn = LmdbTxn::write(store_->env());
    for (const auto& r : store_->commit_insert(txn, pending)) ids.push_back(r.id);
    txn.commit();
  };
  objects.reserve(objects.size() + 16);  // the spans above point into it
  std::uint64_t dropped_bytes = 0;
  {
    auto first = prepare(2);
    auto second = prepare(3);
    auto dropped = prepare(1);
    auto last = prepare(2);
    dropped_bytes = kRecordHeaderSize + objects[objects.size() - 3].size();
    commit(second);
    commit(last);
    commit(first);
  }
  const auto packs = testing::pack_table(*store_);
  ASSERT_EQ(packs.size(), 1u);
  const PackInfo& p = packs.begin()->second;
  EXPECT_TRUE(p.intake);
  EXPECT_EQ(p.live_records, 37u);
  EXPECT_EQ(p.dead_bytes, dropped_bytes) << "the dropped batch only";
  EXPECT_EQ(p.size, kPackHeaderSize + p.live_bytes + p.dead_bytes);
  EXPECT_EQ(std::filesystem::file_size(dir_ / "packs" / (std::to_string(p.id) + ".pack")), p.size);
  ASSERT_EQ(ids.size(), 37u);
  for (std::size_t i = 0; i < objects.size(); ++i) {
    if (i == objects.size() - 3) continue;  // the dropped one
    ASSERT_EQ(store_->read(Sha256::of(objects[i])), objects[i]) << "object " << i;
  }
  EXPECT_TRUE(store_->verify().clean());

  // pack() moves its records but leaves the open pack, which later batches go on
  // filling; once the store is closed it is an ordinary intake pack, removed when
  // drained.
  auto report = store_->pack();
  EXPECT_EQ(report.objects, 37u);
  EXPECT_EQ(store_->status().intake_packs, 1u);
  std::vector<std::byte> after = random_bytes(rng, 4000);
  const ObjectId after_id = store_->insert(after).id;
  EXPECT_EQ(store_->status().intake_objects, 1u);
  EXPECT_EQ(store_->status().intake_packs, 1u);
  store_.reset();
  store_ = Store::open(dir_, OpenOptions{.append_small_batches = true});
  store_->pack();
  s = store_->status();
  EXPECT_EQ(s.intake_packs, 0u);
  EXPECT_EQ(s.packs, 1u);
  EXPECT_EQ(count_files(dir_ / "packs"), 1u);
  EXPECT_EQ(store_->read(after_id), after);
  for (std::size_t i = 0; i < 30; ++i) ASSERT_EQ(store_->read(ids[i]), objects[i]);
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, OpenIntakePackIsLetGoOnceFull) {
  store_.reset();
  store_ = Store::open(dir_, OpenOptions{.append_small_batches = true});
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  std::vector<ObjectId> ids;
  std::uint64_t bytes = 0;
  while (bytes < OpenIntakePack::kMaxBytes + (4 << 20)) {
    objects.push_back(random_bytes(rng, 1 << 20));
    ids.push_back(store_->insert(objects.back()).id);
    bytes += objects.back().size();
  }
  const auto packs = testing::pack_table(*store_);
  ASSERT_EQ(packs.size(), 2u);
  EXPECT_GE(packs.begin()->second.size, OpenIntakePack::kMaxBytes);
  for (const auto& [id, p] : packs) {
    EXPECT_TRUE(p.intake);
    EXPECT_EQ(p.size, kPackHeaderSize + p.live_bytes + p.dead_bytes) << "pack " << id;
  }
  // The full one is no longer in flight: pack() drains and removes it.
  store_->pack();
  EXPECT_EQ(store_->status().intake_packs, 1u) << "only the open one is left";
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(store_->read(ids[i]), objects[i]);
}

TEST_F(StoreTest, ExtractManyReportsMissingObjectsOnly) {
  auto a = store_->insert(bytes_of("present"));
  ObjectId absent = Sha256::of(bytes_of("absent"));
  std::vector<ObjectId> ids = {absent, a.id};
  std::vector<int> errors(2, 0), done(2, 0);
  ExtractSink sink;
  sink.data = [](std::size_t, auto) {};
  sink.done = [&](std::size_t i) { done[i]++; };
  sink.error = [&](std::size_t i, const StoreError& e) {
    errors[i]++;
    EXPECT_EQ(e.code(), ENOENT);
  };
  store_->extract_many(ids, sink);
  EXPECT_EQ(errors, (std::vector<int>{1, 0}));
  EXPECT_EQ(done, (std::vector<int>{0, 1}));
  EXPECT_THROW(store_->read(absent), StoreError);
}

// What extract_many read it keeps: read again, the bytes come from memory, as the
// counts show and as an object whose file is gone meanwhile proves. With the cache
// off the same second read goes to the disk and finds nothing.
TEST_F(StoreTest, ExtractManyServesObjectsItReadRecentlyFromItsCache) {
  std::mt19937_64 rng(testing::test_seed());
  const auto bytes = random_bytes(rng, 50000);
  const ObjectId id = store_->insert(bytes).id;
  store_.reset();
  store_ = Store::open(dir_, OpenOptions{.cache_bytes = 64 << 20});
  const auto path = dir_ / "loose" / id.hex().substr(0, 2) / id.hex().substr(2);
  auto extract = [&](Store& store, Store::Cache cache = Store::Cache::kUse) {
    std::vector<std::byte> got;
    int errors = 0;
    ExtractSink sink;
    sink.data = [&](std::size_t, std::span<const std::byte> b) {
      got.insert(got.end(), b.begin(), b.end());
    };
    sink.done = [](std::size_t) {};
    sink.error = [&](std::size_t, const StoreError&) { ++errors; };
    std::vector<ObjectId> ids = {id};
    store.extract_many(ids, sink, cache);
    return errors == 0 ? got : std::vector<std::byte>{};
  };

  EXPECT_EQ(extract(*store_), bytes);
  EXPECT_EQ(store_->cache_stats().misses, 1u);
  EXPECT_EQ(store_->cache_stats().bytes, bytes.size() + ObjectCache::kEntryOverhead);
  const auto saved = tmp_.path() / "saved";
  std::filesystem::copy_file(path, saved);
  std::filesystem::remove(path);
  EXPECT_EQ(extract(*store_), bytes);
  EXPECT_EQ(store_->cache_stats().hits, 1u);
  EXPECT_THROW(store_->read(id), StoreError) << "read() goes to the disk";
  EXPECT_TRUE(extract(*store_, Store::Cache::kBypass).empty()) << "so does a bypassing read";
  EXPECT_FALSE(store_->verify().clean()) << "verify checks the disk, not the cache";
  EXPECT_TRUE(extract(*store_).empty()) << "a failed check drops the cached copy";
  EXPECT_EQ(store_->cache_stats().bytes, 0u);

  std::filesystem::copy_file(saved, path);
  store_.reset();
  store_ = Store::open(dir_, OpenOptions{.cache_bytes = 0});
  EXPECT_EQ(extract(*store_), bytes);
  std::filesystem::remove(path);
  EXPECT_TRUE(extract(*store_).empty()) << "with the cache off, a missing file is an error";
  EXPECT_EQ(store_->cache_stats().hits + store_->cache_stats().misses, 0u);
}

TEST_F(StoreTest, ReleaseBelowZeroIsRefusedAndChangesNothing) {
  auto a = store_->insert(bytes_of("x"));
  store_->release(a.id);
  try {
    store_->release(a.id);
    FAIL() << "release below zero succeeded";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), EINVAL);
  }
  EXPECT_EQ(store_->stat(a.id)->refcount, 0u);
  EXPECT_EQ(store_->read(a.id), std::vector<std::byte>(1, std::byte{'x'}));
  EXPECT_THROW(store_->add_ref(Sha256::of(bytes_of("nope"))), StoreError);
}

TEST_F(StoreTest, FlippedByteInPackIsAnErrorAndVerifyNamesTheObject) {
  std::mt19937_64 rng(testing::test_seed());
  auto victim_bytes = compressible(rng, 100000);
  auto other_bytes = random_bytes(rng, 5000);
  auto victim = store_->insert(victim_bytes);
  auto other = store_->insert(other_bytes);
  store_->pack();
  auto info = store_->stat(victim.id);
  ASSERT_EQ(info->tier, Tier::kPacked);
  {
    auto pack = dir_ / "packs" / (std::to_string(info->pack_id) + ".pack");
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    auto at = static_cast<std::streamoff>(info->offset + 72 + info->stored_size / 2);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(at);
    f.write(&c, 1);
  }
  try {
    store_->read(victim.id);
    FAIL() << "read of a corrupt object returned bytes";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), EIO);
  }
  bool delivered = false;
  EXPECT_THROW(store_->extract(victim.id, [&](auto) { delivered = true; }), StoreError);
  EXPECT_FALSE(delivered) << "no bytes of a corrupt object may be delivered";
  EXPECT_EQ(store_->read(other.id), other_bytes);
  auto report = store_->verify();
  ASSERT_EQ(report.problems.size(), 1u);
  EXPECT_EQ(report.problems[0].id, victim.id);
}

TEST_F(StoreTest, DamagedLooseFileIsAnErrorNeverWrongBytes) {
  auto a = store_->insert(bytes_of("loose bytes here"));
  auto path = dir_ / "loose" / a.id.hex().substr(0, 2) / a.id.hex().substr(2);
  ::chmod(path.c_str(), 0644);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << "loose bytes HERE";
  }
  EXPECT_THROW(store_->read(a.id), StoreError);
  EXPECT_EQ(store_->verify().problems.size(), 1u);
  std::filesystem::remove(path);
  EXPECT_THROW(store_->read(a.id), StoreError);
}

TEST_F(StoreTest, GcAndRepackReclaimSpace) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  std::vector<ObjectId> ids;
  for (int i = 0; i < 200; ++i) {
    objects.push_back(random_bytes(rng, 10000));
    ids.push_back(store_->insert(objects.back()).id);
  }
  store_->pack();
  // Half become unreferenced; one loose object too.
  for (int i = 0; i < 100; ++i) store_->release(ids[i]);
  auto loose = store_->insert(bytes_of("short-lived"), 0);
  auto before = store_->status();
  EXPECT_EQ(before.unreferenced_objects, 101u);

  auto gc = store_->gc();
  EXPECT_EQ(gc.packed_dropped, 100u);
  EXPECT_EQ(gc.loose_removed, 1u);
  EXPECT_FALSE(store_->has(loose.id));
  EXPECT_FALSE(store_->has(ids[0]));
  auto after_gc = store_->status();
  EXPECT_GT(after_gc.dead_bytes, 100u * 10000);

  auto repack = store_->repack();
  EXPECT_GE(repack.packs_rewritten, 1u);
  auto after = store_->status();
  EXPECT_EQ(after.dead_bytes, 0u);
  EXPECT_LT(after.pack_file_bytes, before.pack_file_bytes * 6 / 10);
  std::uint64_t on_disk = 0;
  for (auto& e : std::filesystem::directory_iterator(dir_ / "packs")) on_disk += e.file_size();
  EXPECT_EQ(on_disk, after.pack_file_bytes);
  for (int i = 100; i < 200; ++i) ASSERT_EQ(store_->read(ids[i]), objects[i]);
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, DamagedRecordHeaderLosesThatObjectOnlyEvenAfterRebuild) {
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  std::vector<ObjectId> ids;
  for (int i = 0; i < 5; ++i) {
    objects.push_back(random_bytes(rng, 10000));
    ids.push_back(store_->insert(objects.back()).id);
  }
  store_->pack();
  // The first record in the pack: damage to the last one is indistinguishable from a
  // torn tail, and is rightly cut off as one.
  std::size_t v = 0;
  for (std::size_t i = 1; i < ids.size(); ++i) {
    if (store_->stat(ids[i])->offset < store_->stat(ids[v])->offset) v = i;
  }
  auto victim = store_->stat(ids[v]);
  auto pack = dir_ / "packs" / (std::to_string(victim->pack_id) + ".pack");
  auto size_before = std::filesystem::file_size(pack);
  {
    // Flipped rather than overwritten: a constant would leave the header intact for
    // the one id in 256 that already holds it there.
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(victim->offset + 10);  // inside the header
    f.seekg(at);
    const int old_byte = f.get();
    f.seekp(at);
    f.put(static_cast<char>(old_byte ^ 0x5a));
  }
  auto report = store_->rebuild_index();
  ASSERT_EQ(report.lost_objects.size(), 1u);
  EXPECT_EQ(report.lost_objects[0], ids[v]);
  EXPECT_GT(report.damaged_bytes, 0u);
  EXPECT_FALSE(store_->has(ids[v]));
  auto check_others = [&] {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i != v) {
        EXPECT_EQ(store_->read(ids[i]), objects[i]) << i;
      }
    }
  };
  check_others();
  // Appending to that pack must not cut off the intact records after the damage.
  auto more = random_bytes(rng, 3000);
  store_->insert(more);
  store_->pack();
  EXPECT_GE(std::filesystem::file_size(pack), size_before);
  check_others();
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, PackWithDamagedFileHeaderIsRebuiltAndNeverRemoved) {
  std::mt19937_64 rng(testing::test_seed());
  auto data = random_bytes(rng, 50000);
  auto id = store_->insert(data).id;
  store_->pack();
  auto pack = dir_ / "packs" / (std::to_string(store_->stat(id)->pack_id) + ".pack");
  {
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1);
    f.put('\x00');
  }
  store_->rebuild_index();
  EXPECT_EQ(store_->read(id), data);
  store_->gc();
  store_->repack();
  EXPECT_EQ(store_->read(id), data);
}

TEST_F(StoreTest, HugeCompressibleObjectIsStreamedInBoundedPieces) {
  std::vector<std::byte> zeros(64 << 20);
  zeros[12345] = std::byte{1};
  auto id = store_->insert(zeros).id;
  store_->pack();
  auto info = store_->stat(id);
  ASSERT_EQ(info->codec, Codec::kZstd);
  ASSERT_LT(info->stored_size, 1u << 20);  // tiny on disk, 64 MiB raw
  std::size_t largest = 0, total = 0, calls = 0;
  store_->extract(id, [&](std::span<const std::byte> piece) {
    largest = std::max(largest, piece.size());
    total += piece.size();
    ++calls;
    for (std::size_t i = 0; i < piece.size(); ++i) {
      if (piece[i] != zeros[total - piece.size() + i])
        FAIL() << "wrong byte at " << total - piece.size() + i;
    }
  });
  EXPECT_EQ(total, zeros.size());
  EXPECT_LE(largest, std::size_t{1} << 20);
  EXPECT_GT(calls, 1u);
}

TEST(StoreRepackTest, MergesEqualPacksIntoOneAndKeepsGeometricOnesApart) {
  TempDir tmp;
  StoreSettings settings;
  settings.pack_target_bytes = 50000;  // each round below fills a pack past this
  Store::init(tmp.path() / "s", settings);
  auto store = Store::open(tmp.path() / "s");
  std::mt19937_64 rng(testing::test_seed());
  std::vector<std::vector<std::byte>> objects;
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 20; ++i) {
      objects.push_back(random_bytes(rng, 4000));
      store->insert(objects.back());
    }
    store->pack();
  }
  EXPECT_EQ(store->status().packs, 4u);
  auto report = store->repack();
  EXPECT_EQ(report.packs_removed, 4u);
  EXPECT_EQ(store->status().packs, 1u);
  for (const auto& o : objects) ASSERT_EQ(store->read(Sha256::of(o)), o);

  // One big pack and one a quarter of its size form a geometric pair: left alone.
  for (int i = 0; i < 20; ++i) {
    objects.push_back(random_bytes(rng, 4000));
    store->insert(objects.back());
  }
  store->pack();
  EXPECT_EQ(store->status().packs, 2u);
  EXPECT_EQ(store->repack().packs_rewritten, 0u);
  EXPECT_EQ(store->status().packs, 2u);
  for (const auto& o : objects) ASSERT_EQ(store->read(Sha256::of(o)), o);
  EXPECT_TRUE(store->verify().clean());
}

TEST_F(StoreTest, RebuildIndexReproducesTheIndex) {
  std::mt19937_64 rng(testing::test_seed());
  // Small objects, and chunk-sized ones that carry block sums, in both tiers.
  for (int i = 0; i < 300; ++i) store_->insert(random_bytes(rng, rng() % 3000));
  for (int i = 0; i < 10; ++i) store_->insert(random_bytes(rng, 9000 + rng() % 100000));
  store_->pack();
  for (int i = 0; i < 50; ++i) store_->insert(compressible(rng, rng() % 3000 + 1));
  for (int i = 0; i < 10; ++i) store_->insert(random_bytes(rng, 9000 + rng() % 100000));
  auto snapshot = [&] {
    std::vector<std::tuple<ObjectId, Tier, Codec, std::uint32_t, std::uint64_t, std::uint64_t,
                           std::uint64_t, std::uint64_t, std::vector<std::uint32_t>, std::uint64_t>>
        rows;
    store_->list([&](const ObjectInfo& i) {
      rows.emplace_back(i.id, i.tier, i.codec, i.pack_id, i.offset, i.raw_size, i.stored_size,
                        i.checksum, i.block_sums, i.refcount);
    });
    return rows;
  };
  auto before = snapshot();
  auto status_before = store_->status();
  auto report = store_->rebuild_index();
  EXPECT_EQ(report.packed_objects + report.loose_objects, before.size());
  EXPECT_EQ(snapshot(), before);

  // Without any index at all: same locations, one reference each.
  store_.reset();
  std::filesystem::remove_all(dir_ / "meta");
  EXPECT_THROW(Store::open(dir_), StoreError);
  store_ = Store::open(dir_, OpenOptions{.allow_missing_index = true});
  store_->rebuild_index();
  store_.reset();
  store_ = Store::open(dir_);
  auto rebuilt = snapshot();
  ASSERT_EQ(rebuilt.size(), before.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    auto expected = before[i];
    std::get<9>(expected) = 1;
    EXPECT_EQ(rebuilt[i], expected);
  }
  auto status_after = store_->status();
  EXPECT_EQ(status_after.packs, status_before.packs);
  EXPECT_EQ(status_after.pack_file_bytes, status_before.pack_file_bytes);
  EXPECT_TRUE(store_->verify().clean());
}

TEST_F(StoreTest, TornPackTailIsIgnoredAndCutOff) {
  std::mt19937_64 rng(testing::test_seed());
  auto a = random_bytes(rng, 3000);
  auto id = store_->insert(a).id;
  store_->pack();
  auto info = store_->stat(id);
  auto pack = dir_ / "packs" / (std::to_string(info->pack_id) + ".pack");
  auto committed = std::filesystem::file_size(pack);
  {
    std::ofstream f(pack, std::ios::binary | std::ios::app);
    auto junk = random_bytes(rng, 100);
    f.write(reinterpret_cast<const char*>(junk.data()), static_cast<std::streamsize>(junk.size()));
  }
  auto report = store_->rebuild_index();
  EXPECT_EQ(report.torn_bytes, 100u);
  EXPECT_EQ(store_->read(id), a);
  auto b = random_bytes(rng, 3000);
  auto id_b = store_->insert(b).id;
  store_->pack();
  EXPECT_EQ(store_->stat(id_b)->offset, committed) << "the torn tail was not cut off";
  EXPECT_EQ(store_->read(id_b), b);
  EXPECT_TRUE(store_->verify().clean());
}

TEST(StoreOpenTest, BadStoresAreRefusedWithOneLineErrorsAndLeftAlone) {
  TempDir tmp;
  auto expect_error = [](const std::filesystem::path& p, const char* fragment) {
    try {
      Store::open(p);
      ADD_FAILURE() << "opened " << p;
    } catch (const StoreError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(fragment), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    }
  };
  expect_error(tmp.path() / "missing", "does not exist");
  std::filesystem::create_directories(tmp.path() / "plain");
  expect_error(tmp.path() / "plain", "not a casfs store");
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path() / "plain"));

  auto dir = tmp.path() / "store";
  Store::init(dir);
  {
    auto held = Store::open(dir);
    expect_error(dir, "in use");
  }
  EXPECT_THROW(Store::init(dir), StoreError);

  nlohmann::json j;
  std::ifstream(dir / "casfs.json") >> j;
  j["version"] = 99;
  std::ofstream(dir / "casfs.json") << j.dump();
  expect_error(dir, "newer");

  auto other = tmp.path() / "other";
  Store::init(other);
  j["version"] = 1;
  std::ofstream(dir / "casfs.json") << j.dump();
  std::filesystem::remove_all(dir / "meta");
  std::filesystem::copy(other / "meta", dir / "meta");
  expect_error(dir, "another store");
}

// Numbers in casfs.json that do not fit their setting are refused with the setting's
// name, not cast: a float, a negative or a too large number would otherwise become
// undefined behaviour or a silently different chunk size.
TEST(StoreOpenTest, SettingsThatAreNotWholeNumbersInRangeAreRefused) {
  TempDir tmp;
  auto dir = tmp.path() / "store";
  Store::init(dir);
  nlohmann::json good;
  std::ifstream(dir / "casfs.json") >> good;
  const std::vector<std::pair<nlohmann::json::json_pointer, nlohmann::json>> bad = {
      {nlohmann::json::json_pointer("/chunking/min"), 1.63e86},
      {nlohmann::json::json_pointer("/chunking/min"), 16384.5},
      {nlohmann::json::json_pointer("/chunking/avg"), -1},
      {nlohmann::json::json_pointer("/chunking/max"), 4294967296ull},
      {nlohmann::json::json_pointer("/version"), 1e300},
      {nlohmann::json::json_pointer("/compression/level"), 2147483648ull},
      {nlohmann::json::json_pointer("/packs/target_bytes"), -5},
  };
  for (const auto& [where, value] : bad) {
    nlohmann::json j = good;
    j[where] = value;
    std::ofstream(dir / "casfs.json") << j.dump();
    // As the error names it: "/chunking/min" is chunking.min.
    std::string name = where.to_string().substr(1);
    std::replace(name.begin(), name.end(), '/', '.');
    try {
      Store::open(dir);
      ADD_FAILURE() << name << " = " << value.dump() << " was accepted";
    } catch (const StoreError& e) {
      EXPECT_EQ(e.code(), EINVAL) << name;
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  }
  std::ofstream(dir / "casfs.json") << good.dump();
  EXPECT_NO_THROW(Store::open(dir));
}

// Stores whose index predates the uuid record get it on their next open, and from
// then on an index copied from another store is refused.
TEST(StoreOpenTest, AnIndexWithoutTheStoreUuidGetsItOnOpen) {
  TempDir tmp;
  auto dir = tmp.path() / "store";
  Store::init(dir);
  {
    auto store = Store::open(dir);
    const MDB_dbi meta = store->env().open_db("meta");  // opening takes its own write txn
    auto txn = LmdbTxn::write(store->env());
    ASSERT_TRUE(txn.del(meta, as_bytes("store_uuid")));
    txn.commit();
  }
  nlohmann::json config;
  std::ifstream(dir / "casfs.json") >> config;
  {
    auto store = Store::open(dir);
    auto txn = LmdbTxn::read(store->env());
    EXPECT_EQ(store->index().get_meta(txn, "store_uuid"), config["uuid"].get<std::string>());
  }
  auto other = tmp.path() / "other";
  Store::init(other);
  std::filesystem::remove_all(dir / "meta");
  std::filesystem::copy(other / "meta", dir / "meta");
  EXPECT_THROW(Store::open(dir), StoreError);
}

}  // namespace
}  // namespace casfs
