// File data as extents of content-defined chunks, on a real store on disk: round trips
// of small, empty, large and sparse files, truncation, zeros kept as holes, the dedup
// that partial re-chunking buys, exact refcounts, corruption reported as EIO, and a
// randomized comparison against an in-memory model.
#include "fs/file_data.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "fs/fs_error.h"
#include "store/index.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::TempDir;

constexpr std::uint64_t kMiB = 1 << 20;

struct Applied {
  std::vector<Extent> removed;
  std::vector<Extent> added;
  std::uint64_t rechunked = 0;
};

class FileDataTest : public ::testing::Test {
 protected:
  void SetUp() override { open_store(StoreSettings{}); }

  // A fresh store (a new directory each time), e.g. with small chunks for the model test.
  void open_store(const StoreSettings& settings) {
    file_data_.reset();
    store_.reset();
    dir_ = tmp_.path() / ("store" + std::to_string(++stores_));
    Store::init(dir_, settings);
    store_ = Store::open(dir_);
    file_data_ = std::make_unique<FileData>(*store_);
  }

  // One write as the filesystem will do it: prepare on a snapshot, commit in one txn.
  Applied apply(std::uint64_t ino, std::uint64_t old_size, std::uint64_t new_size,
                std::vector<DirtyRange> dirty) {
    auto snapshot = LmdbTxn::read(store_->env());
    auto pending = file_data_->prepare_write(snapshot, ino, old_size, new_size, dirty);
    snapshot.abort();
    auto txn = LmdbTxn::write(store_->env());
    file_data_->commit_write(txn, pending);
    txn.commit();
    return Applied{pending.removed(), pending.added(), pending.rechunked_bytes()};
  }
  // Replaces the whole content of `ino` (old size `old_size`) by `data`.
  Applied write_all(std::uint64_t ino, std::uint64_t old_size, const std::vector<std::byte>& data) {
    std::vector<DirtyRange> dirty;
    if (!data.empty()) dirty.push_back(DirtyRange{0, data});
    return apply(ino, old_size, data.size(), dirty);
  }

  std::vector<std::byte> read(std::uint64_t ino, std::uint64_t size, std::uint64_t offset,
                              std::size_t len) {
    std::vector<std::byte> out(len, std::byte{0x5a});
    auto txn = LmdbTxn::read(store_->env());
    out.resize(file_data_->read(txn, ino, size, offset, out));
    return out;
  }
  std::vector<std::byte> read_all(std::uint64_t ino, std::uint64_t size) {
    return read(ino, size, 0, static_cast<std::size_t>(size));
  }
  std::vector<Extent> extents(std::uint64_t ino) {
    auto txn = LmdbTxn::read(store_->env());
    return file_data_->extents(txn, ino);
  }
  std::uint64_t refcount(const ObjectId& id) {
    auto info = store_->stat(id);
    return info ? info->refcount : 0;
  }

  // Every object's refcount equals the number of extents naming it, over `inos`.
  void expect_exact_refcounts(const std::vector<std::uint64_t>& inos) {
    std::map<ObjectId, std::uint64_t> named;
    for (auto ino : inos)
      for (const auto& e : extents(ino)) ++named[e.id];
    std::uint64_t objects = 0;
    store_->list([&](const ObjectInfo& info) {
      ++objects;
      auto it = named.find(info.id);
      EXPECT_EQ(info.refcount, it == named.end() ? 0u : it->second) << info.id.hex();
    });
    for (const auto& [id, n] : named) EXPECT_TRUE(store_->has(id)) << id.hex();
  }

  // Extents sorted, disjoint, whole chunks, inside the file.
  void expect_sane_layout(std::uint64_t ino, std::uint64_t size) {
    std::uint64_t prev_end = 0;
    for (const auto& e : extents(ino)) {
      EXPECT_GE(e.offset, prev_end) << "ino " << ino;
      EXPECT_GT(e.length, 0u);
      EXPECT_LE(e.length, store_->settings().chunk_max);
      EXPECT_LE(e.end(), size) << "ino " << ino;
      prev_end = e.end();
    }
  }

  // New objects land loose or in intake packs, by batch size.
  std::uint64_t unpacked_objects() { return store_->status().unpacked_objects(); }

  TempDir tmp_;
  int stores_ = 0;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<FileData> file_data_;
  std::mt19937_64 rng_{testing::test_seed()};
};

std::vector<std::byte> slice(const std::vector<std::byte>& v, std::uint64_t offset,
                             std::size_t len) {
  if (offset >= v.size()) return {};
  auto n = std::min<std::size_t>(len, v.size() - offset);
  return std::vector<std::byte>(v.begin() + static_cast<std::ptrdiff_t>(offset),
                                v.begin() + static_cast<std::ptrdiff_t>(offset + n));
}

bool zeros(const std::vector<std::byte>& v) {
  return std::all_of(v.begin(), v.end(), [](std::byte b) { return b == std::byte{0}; });
}

TEST_F(FileDataTest, SmallEmptyAndLargeFilesReadBack) {
  auto small = testing::random_bytes(rng_, 100);
  auto large = testing::random_bytes(rng_, 20 * kMiB);
  write_all(1, 0, small);
  write_all(2, 0, {});
  write_all(3, 0, large);

  EXPECT_EQ(read_all(1, small.size()), small);
  EXPECT_EQ(extents(1).size(), 1u);
  EXPECT_TRUE(read_all(2, 0).empty());
  EXPECT_TRUE(extents(2).empty());
  EXPECT_EQ(read_all(3, large.size()), large);

  // Whole chunks, back to back, covering the file exactly.
  auto exts = extents(3);
  EXPECT_GT(exts.size(), 20 * kMiB / store_->settings().chunk_max);
  std::uint64_t at = 0;
  for (const auto& e : exts) {
    EXPECT_EQ(e.offset, at);
    at = e.end();
  }
  EXPECT_EQ(at, large.size());
  expect_sane_layout(3, large.size());

  // Random reads, across extent boundaries and past the end.
  std::uniform_int_distribution<std::uint64_t> off(0, large.size() + 1000);
  std::uniform_int_distribution<std::size_t> len(0, 700 << 10);
  for (int i = 0; i < 100; ++i) {
    auto o = off(rng_);
    auto n = len(rng_);
    ASSERT_EQ(read(3, large.size(), o, n), slice(large, o, n)) << "offset " << o << " len " << n;
  }
  for (const auto& e : exts) {
    if (e.offset == 0) continue;
    ASSERT_EQ(read(3, large.size(), e.offset - 7, 20), slice(large, e.offset - 7, 20));
  }
  EXPECT_EQ(read(1, small.size(), 90, 50), slice(small, 90, 50));
  EXPECT_TRUE(read(1, small.size(), 100, 10).empty());
  EXPECT_TRUE(read(1, small.size(), 5000, 10).empty());
  expect_exact_refcounts({1, 2, 3});
}

// A large write is hashed on two threads; chunks repeated within it are still
// stored once and counted per extent.
TEST_F(FileDataTest, RepeatedBlocksInOneLargeWriteAreStoredOnce) {
  const auto block = testing::random_bytes(rng_, 2 * kMiB);
  std::vector<std::byte> content;
  for (int i = 0; i < 8; ++i) content.insert(content.end(), block.begin(), block.end());
  write_all(1, 0, block);
  const auto one_copy = unpacked_objects();
  auto r = write_all(2, 0, content);
  EXPECT_EQ(read_all(2, content.size()), content);
  // Each copy of the block is cut as the first one is once the chunker is back in step
  // (a chunk or two after each seam): far fewer objects than eight copies would make.
  EXPECT_LE(unpacked_objects(), 2 * one_copy + 16);
  std::map<ObjectId, std::uint64_t> uses;
  for (const auto& e : extents(2)) {
    ++uses[e.id];
    ASSERT_EQ(e.id, Sha256::of(std::span(content).subspan(e.offset, e.length)))
        << "extent at " << e.offset;
  }
  std::uint64_t repeated = 0;
  for (const auto& [id, n] : uses) repeated += n > 1;
  EXPECT_GT(repeated, one_copy / 2) << "most chunks of the block recur in every copy";
  EXPECT_EQ(r.added.size(), extents(2).size());
  expect_exact_refcounts({1, 2});
}

TEST_F(FileDataTest, SparseFilesGrowAndShrink) {
  const std::uint64_t at = 100 * kMiB;
  auto data = testing::random_bytes(rng_, 300 << 10);
  auto r = apply(1, 0, at + data.size(), {DirtyRange{at, data}});
  EXPECT_LE(r.rechunked, data.size() + store_->settings().chunk_max);
  std::uint64_t size = at + data.size();
  auto exts = extents(1);
  ASSERT_FALSE(exts.empty());
  for (const auto& e : exts) EXPECT_GE(e.offset, at);
  EXPECT_TRUE(zeros(read(1, size, 0, 1 << 20)));
  EXPECT_TRUE(zeros(read(1, size, 50 * kMiB, 1 << 20)));
  auto around = read(1, size, at - 1000, 5000);
  ASSERT_EQ(around.size(), 5000u);
  EXPECT_TRUE(zeros(slice(around, 0, 1000)));
  EXPECT_EQ(slice(around, 1000, 4000), slice(data, 0, 4000));
  EXPECT_EQ(read(1, size, at, data.size()), data);

  // Growing without data adds a hole, not objects.
  auto objects = unpacked_objects();
  r = apply(1, size, size + 10 * kMiB, {});
  EXPECT_TRUE(r.added.empty());
  EXPECT_TRUE(r.removed.empty());
  EXPECT_EQ(unpacked_objects(), objects);
  EXPECT_EQ(extents(1), exts);
  size += 10 * kMiB;
  EXPECT_TRUE(zeros(read(1, size, size - 3 * kMiB, 4 * kMiB)));
  EXPECT_EQ(read(1, size, size - 3 * kMiB, 4 * kMiB).size(), 3 * kMiB);

  // Shrinking into the middle of a chunk cuts it and drops everything past.
  auto content = testing::random_bytes(rng_, 1 * kMiB);
  write_all(2, 0, content);
  auto before = extents(2);
  const std::uint64_t cut = 500'001;
  bool mid_chunk = std::any_of(before.begin(), before.end(),
                               [&](const Extent& e) { return e.offset < cut && e.end() > cut; });
  EXPECT_TRUE(mid_chunk) << "pick a cut inside a chunk";
  r = apply(2, content.size(), cut, {});
  EXPECT_FALSE(r.added.empty());
  for (const auto& e : extents(2)) EXPECT_LE(e.end(), cut);
  EXPECT_EQ(read_all(2, cut), slice(content, 0, cut));
  // Growing back shows zeros, never the old bytes.
  apply(2, cut, content.size(), {});
  auto back = read_all(2, content.size());
  EXPECT_EQ(slice(back, 0, cut), slice(content, 0, cut));
  EXPECT_TRUE(zeros(slice(back, cut, content.size())));
  // Down to nothing.
  apply(2, content.size(), 0, {});
  EXPECT_TRUE(extents(2).empty());
  expect_exact_refcounts({1, 2});
}

TEST_F(FileDataTest, ZerosBecomeHoles) {
  const std::uint64_t max = store_->settings().chunk_max;
  auto content = testing::random_bytes(rng_, 2 * kMiB);
  write_all(1, 0, content);
  std::vector<std::byte> zero(1 * kMiB, std::byte{0});
  const std::uint64_t at = 512 << 10;
  apply(1, content.size(), content.size(), {DirtyRange{at, zero}});
  std::copy(zero.begin(), zero.end(), content.begin() + static_cast<std::ptrdiff_t>(at));
  // A chunk holding any nonzero byte is at most chunk_max long, so nothing may cover the
  // middle of the zeroed range.
  for (const auto& e : extents(1))
    EXPECT_TRUE(e.end() <= at + max || e.offset >= at + zero.size() - max)
        << "extent at " << e.offset << " length " << e.length;
  EXPECT_EQ(read_all(1, content.size()), content);

  write_all(2, 0, zero);
  EXPECT_TRUE(extents(2).empty());
  EXPECT_EQ(read_all(2, zero.size()), zero);
  expect_exact_refcounts({1, 2});
}

TEST_F(FileDataTest, DedupAcrossFilesAndEdits) {
  auto content = testing::random_bytes(rng_, 20 * kMiB);
  write_all(1, 0, content);
  auto objects = unpacked_objects();
  write_all(2, 0, content);
  EXPECT_EQ(unpacked_objects(), objects) << "the same content must add no objects";
  for (const auto& e : extents(2)) ASSERT_EQ(refcount(e.id), 2u);
  EXPECT_EQ(read_all(2, content.size()), content);
  // Flushing the same bytes again changes no extent at all.
  auto same = write_all(2, content.size(), content);
  EXPECT_TRUE(same.added.empty());
  EXPECT_TRUE(same.removed.empty());

  // One byte inserted at the start: the chunker resynchronises after a chunk or two.
  auto ten = testing::random_bytes(rng_, 10 * kMiB);
  write_all(3, 0, ten);
  objects = unpacked_objects();
  std::vector<std::byte> shifted(ten.size() + 1);
  shifted[0] = std::byte{0x42};
  std::copy(ten.begin(), ten.end(), shifted.begin() + 1);
  write_all(3, ten.size(), shifted);
  EXPECT_LE(unpacked_objects() - objects, 4u);
  EXPECT_EQ(read_all(3, shifted.size()), shifted);

  // 100 bytes overwritten in the middle: only the chunks around them change.
  write_all(4, 0, ten);
  auto before = extents(4);
  objects = unpacked_objects();
  auto patch = testing::random_bytes(rng_, 100);
  const std::uint64_t at = 5 * kMiB + 12345;
  auto r = apply(4, ten.size(), ten.size(), {DirtyRange{at, patch}});
  std::copy(patch.begin(), patch.end(), ten.begin() + static_cast<std::ptrdiff_t>(at));
  auto after = extents(4);
  std::set<std::pair<std::uint64_t, ObjectId>> old_set;
  for (const auto& e : before) old_set.emplace(e.offset, e.id);
  std::size_t changed = 0;
  for (const auto& e : after) changed += old_set.count({e.offset, e.id}) == 0;
  EXPECT_GE(changed, 1u);
  EXPECT_LE(changed, 4u);
  EXPECT_LE(r.removed.size(), 4u);
  EXPECT_LE(r.rechunked, 4 * store_->settings().chunk_max);
  EXPECT_LE(unpacked_objects() - objects, 4u);
  EXPECT_EQ(read_all(4, ten.size()), ten);
  expect_exact_refcounts({1, 2, 3, 4});
}

// Small appends re-chunk the file's last chunk rather than starting a new one at each
// append, so a file written piecemeal ends up with the chunks a single write gives it.
TEST_F(FileDataTest, AppendsGrowTheLastChunk) {
  auto content = testing::random_bytes(rng_, 2 * kMiB);
  const std::size_t piece = 8 << 10;
  for (std::uint64_t at = 0; at < content.size(); at += piece)
    apply(1, at, at + piece, {DirtyRange{at, std::span(content).subspan(at, piece)}});
  EXPECT_EQ(read_all(1, content.size()), content);
  write_all(2, 0, content);
  EXPECT_EQ(extents(1), extents(2));
  expect_exact_refcounts({1, 2});
}

// A growing file written out in parts, each leaving the bytes after its last cut for
// the next (as write-behind does), gets the chunks one write gives it, and no part
// replaces a chunk that an earlier part stored.
TEST_F(FileDataTest, DeferredTailsChunkAGrowingFileAsOneWriteDoes) {
  auto content = testing::random_bytes(rng_, 6 * kMiB + 12345);
  const std::uint64_t part = kMiB + 777;
  std::uint64_t stored = 0;  // where the stored bytes end
  bool at_cut = false;
  for (std::uint64_t end = part; stored < content.size(); end += part) {
    const bool last = end >= content.size();
    end = std::min<std::uint64_t>(end, content.size());
    // The dirty bytes: the previous part's tail and this part.
    std::vector<DirtyRange> dirty{
        DirtyRange{stored, std::span(content).subspan(stored, end - stored)}};
    auto snapshot = LmdbTxn::read(store_->env());
    auto pending = file_data_->prepare_write(
        snapshot, 1, stored, end, dirty, WriteShape{.old_end_is_cut = at_cut, .defer_tail = !last});
    snapshot.abort();
    EXPECT_TRUE(pending.removed().empty()) << "a chunk stored before was replaced at " << stored;
    if (last) {
      EXPECT_EQ(pending.stored_end(), end);
    } else {
      ASSERT_TRUE(pending.tail_deferred()) << "no tail left at " << end;
      EXPECT_LT(pending.stored_end(), end);
      EXPECT_GT(pending.stored_end(), stored);
      EXPECT_LE(end - pending.stored_end(), store_->settings().chunk_max);
    }
    auto txn = LmdbTxn::write(store_->env());
    file_data_->commit_write(txn, pending);
    txn.commit();
    stored = pending.stored_end();
    at_cut = pending.tail_deferred();
    EXPECT_EQ(read_all(1, stored), slice(content, 0, stored));
  }
  write_all(2, 0, content);
  EXPECT_EQ(extents(1), extents(2));
  expect_exact_refcounts({1, 2});
  store_->list([&](const ObjectInfo& info) { EXPECT_GT(info.refcount, 0u) << info.id.hex(); });
}

// A tail is left only where it holds no stored byte: an overwrite of a file's end
// stores everything.
TEST_F(FileDataTest, NoTailIsDeferredOverStoredBytes) {
  auto content = testing::random_bytes(rng_, 2 * kMiB);
  write_all(1, 0, content);
  auto edit = testing::random_bytes(rng_, 100000);
  const std::uint64_t at = content.size() - edit.size();
  std::vector<DirtyRange> dirty{DirtyRange{at, edit}};
  auto snapshot = LmdbTxn::read(store_->env());
  auto pending = file_data_->prepare_write(snapshot, 1, content.size(), content.size(), dirty,
                                           WriteShape{.defer_tail = true});
  EXPECT_FALSE(pending.tail_deferred());
  EXPECT_EQ(pending.stored_end(), content.size());
}

TEST_F(FileDataTest, RefcountsExactAndReleaseAllFreesEverything) {
  auto a = testing::random_bytes(rng_, 3 * kMiB);
  auto b = a;
  auto patch = testing::random_bytes(rng_, 200 << 10);
  std::copy(patch.begin(), patch.end(), b.begin() + (1 << 20));
  write_all(1, 0, a);
  write_all(2, 0, b);
  write_all(3, 0, a);
  apply(3, a.size(), a.size(), {DirtyRange{2 * kMiB, patch}});
  apply(1, a.size(), 2 * kMiB + 7, {});
  apply(2, b.size(), b.size(), {DirtyRange{100, std::span(patch).first(1000)}});
  expect_exact_refcounts({1, 2, 3});

  const auto objects = unpacked_objects();
  EXPECT_GT(objects, 0u);
  {
    auto txn = LmdbTxn::write(store_->env());
    for (std::uint64_t ino : {1, 2, 3}) file_data_->release_all(txn, ino);
    txn.commit();
  }
  for (std::uint64_t ino : {1, 2, 3}) EXPECT_TRUE(extents(ino).empty());
  store_->list([](const ObjectInfo& info) { EXPECT_EQ(info.refcount, 0u) << info.id.hex(); });
  EXPECT_EQ(store_->status().unreferenced_objects, objects);
  auto gc = store_->gc();
  EXPECT_EQ(gc.loose_removed + gc.packed_dropped, objects);
  EXPECT_EQ(unpacked_objects(), 0u);
}

TEST_F(FileDataTest, CorruptObjectIsEioForThatFileOnly) {
  auto a = testing::random_bytes(rng_, 600 << 10);
  auto b = testing::random_bytes(rng_, 600 << 10);
  write_all(1, 0, a);
  write_all(2, 0, b);
  auto exts = extents(1);
  ASSERT_GE(exts.size(), 2u);
  const auto& victim = exts.back();
  auto hex = victim.id.hex();
  auto path = dir_ / "loose" / hex.substr(0, 2) / hex.substr(2);
  ::chmod(path.c_str(), 0644);
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    ASSERT_TRUE(f.good()) << path;
    f.seekg(10);
    char c = 0;
    f.get(c);
    f.seekp(10);
    f.put(static_cast<char>(c ^ 0x01));
  }
  int code = 0;
  try {
    read_all(1, a.size());
  } catch (const FsError& e) {
    code = e.code();
  }
  EXPECT_EQ(code, EIO);
  // The intact part of the same file and other files still read.
  EXPECT_EQ(read(1, a.size(), 0, exts.front().length), slice(a, 0, exts.front().length));
  EXPECT_EQ(read_all(2, b.size()), b);
}

TEST_F(FileDataTest, BadDirtyRangesAreEinval) {
  auto data = testing::random_bytes(rng_, 100);
  auto txn = LmdbTxn::read(store_->env());
  int code = 0;
  try {
    std::vector<DirtyRange> dirty{DirtyRange{50, data}};
    file_data_->prepare_write(txn, 1, 0, 100, dirty);
  } catch (const FsError& e) {
    code = e.code();
  }
  EXPECT_EQ(code, EINVAL);
  code = 0;
  try {
    std::vector<DirtyRange> dirty{DirtyRange{0, std::span(data).first(60)},
                                  DirtyRange{50, std::span(data).first(10)}};
    file_data_->prepare_write(txn, 1, 0, 100, dirty);
  } catch (const FsError& e) {
    code = e.code();
  }
  EXPECT_EQ(code, EINVAL);
}

// Random writes, zero fills, copies, multi-range writes and truncations on a few files
// with small chunks, checked after every step against plain byte vectors.
TEST_F(FileDataTest, RandomizedAgainstModel) {
  StoreSettings small;
  small.chunk_min = 256;
  small.chunk_avg = 1024;
  small.chunk_max = 4096;
  open_store(small);
  std::vector<std::vector<std::byte>> model(3);
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  };
  for (int step = 0; step < 300; ++step) {
    const std::uint64_t ino = pick(0, model.size() - 1);
    auto& m = model[ino];
    const std::uint64_t old_size = m.size();
    const int op = static_cast<int>(pick(0, 9));
    std::vector<std::vector<std::byte>> buffers;
    std::vector<DirtyRange> dirty;
    std::uint64_t new_size = old_size;
    if (op <= 6) {
      // One to three ranges, each random, zero or copied from elsewhere in the file.
      std::uint64_t at = pick(0, old_size + 20000);
      const int ranges = static_cast<int>(pick(1, 3));
      for (int k = 0; k < ranges; ++k) {
        const std::size_t len = static_cast<std::size_t>(pick(1, 30000));
        const int kind = static_cast<int>(pick(0, 3));
        std::vector<std::byte> data;
        if (kind == 0) {
          data.assign(len, std::byte{0});
        } else if (kind == 1 && m.size() > len) {
          auto from = pick(0, m.size() - len);
          data = slice(m, from, len);
        } else {
          data = testing::random_bytes(rng_, len);
        }
        buffers.push_back(std::move(data));
        dirty.push_back(DirtyRange{at, buffers.back()});
        at += len + pick(0, 10000);
      }
      new_size = std::max(old_size, dirty.back().offset + dirty.back().data.size());
      if (op == 6) new_size += pick(0, 50000);
    } else {
      new_size = pick(0, old_size + old_size / 4 + 1000);
    }
    apply(ino, old_size, new_size, dirty);
    m.resize(new_size, std::byte{0});
    for (const auto& d : dirty)
      std::copy(d.data.begin(), d.data.end(), m.begin() + static_cast<std::ptrdiff_t>(d.offset));
    ASSERT_EQ(read_all(ino, m.size()), m) << "step " << step << " ino " << ino << " op " << op;
    if (step % 10 == 0) {
      auto o = pick(0, m.size() + 100);
      auto n = static_cast<std::size_t>(pick(0, 20000));
      ASSERT_EQ(read(ino, m.size(), o, n), slice(m, o, n)) << "step " << step;
    }
    expect_sane_layout(ino, m.size());
    if (step % 50 == 49) expect_exact_refcounts({0, 1, 2});
  }
  expect_exact_refcounts({0, 1, 2});
}

}  // namespace
}  // namespace casfs
