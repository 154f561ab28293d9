// fsck on a real store: a filesystem built through Filesystem (no FUSE), closed,
// then damaged one way at a time directly in its LMDB tables or files. Each test
// checks that fsck finds exactly that damage, that --repair fixes what it can, and
// that a second fsck is then clean.
#include "fs/fsck.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fs/file_data.h"
#include "fs/filesystem.h"
#include "fs/namespace.h"
#include "fs/symlinks.h"
#include "fs/xattrs.h"
#include "store/byte_order.h"
#include "store/index.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::TempDir;

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return {b.begin(), b.end()};
}

std::string dump(const FsckReport& r) {
  std::string out;
  for (const auto& p : r.problems) {
    out += std::string("  ") + fsck_kind_name(p.kind) + ": " + p.what + " [" + p.fix +
           (p.repaired ? ", repaired" : "") + "]\n";
  }
  for (const auto& path : r.lost_files) out += "  lost: " + path + "\n";
  return out.empty() ? "  (no problems)\n" : out;
}

std::multiset<FsckKind> kinds(const FsckReport& r) {
  std::multiset<FsckKind> out;
  for (const auto& p : r.problems) out.insert(p.kind);
  return out;
}

// The open tables of a closed filesystem, for damaging them in one transaction.
struct Tables {
  explicit Tables(const std::filesystem::path& dir)
      : store(Store::open(dir)),
        ns(store->env()),
        data(*store),
        xattrs(store->env()),
        symlinks(store->env()),
        extents_db(store->env().open_db("extents")),
        dirents_db(store->env().open_db("dirents")),
        txn(LmdbTxn::write(store->env())) {}

  std::uint64_t ino_of(std::string_view path) {
    std::uint64_t ino = kRootIno;
    std::size_t start = 1;
    while (start < path.size()) {
      std::size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      auto entry = ns.lookup(txn, ino, path.substr(start, slash - start));
      EXPECT_TRUE(entry) << path;
      ino = entry ? entry->ino : 0;
      start = slash + 1;
    }
    return ino;
  }
  Inode inode(std::string_view path) { return *ns.get(txn, ino_of(path)); }
  // An extent record written as file_data.cc lays it out, references untouched.
  void put_extent(std::uint64_t ino, const Extent& e) {
    std::array<std::byte, 16> key;
    put_be64(key.data(), ino);
    put_be64(key.data() + 8, e.offset);
    std::array<std::byte, 40> value;
    std::memcpy(value.data(), e.id.bytes.data(), 32);
    put_le<std::uint64_t>(value.data() + 32, e.length);
    txn.put(extents_db, key, value);
  }
  void commit() { txn.commit(); }

  std::unique_ptr<Store> store;
  Namespace ns;
  FileData data;
  Xattrs xattrs;
  Symlinks symlinks;
  // Every table is opened before the transaction begins: open_db takes LMDB's
  // writer lock, which the transaction holds.
  MDB_dbi extents_db;
  MDB_dbi dirents_db;
  LmdbTxn txn;
};

class FsckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = tmp_.path() / "store";
    Store::init(dir_);
    rng_.seed(testing::test_seed());
  }

  // /a             300 KiB of random bytes (several chunks), an xattr
  // /d/            a directory
  // /d/b, /d/copy  the same 6 bytes: one object with two references
  // /d/a2          a second name for /a
  // /d/e/          an empty directory
  // /s             a symbolic link to "a"
  void build() {
    auto store = Store::open(dir_);
    Filesystem fs(*store, FsOptions{});
    const Caller me{::getuid(), ::getgid()};
    Inode a = fs.make_node(kRootIno, "a", S_IFREG | 0644, 0, me);
    fs.write(a.ino, 0, testing::random_bytes(rng_, 300 << 10));
    fs.setxattr(a.ino, "user.note", bytes_of("kept"), 0);
    Inode d = fs.make_node(kRootIno, "d", S_IFDIR | 0755, 0, me);
    for (const char* name : {"b", "copy"}) {
      Inode f = fs.make_node(d.ino, name, S_IFREG | 0644, 0, me);
      fs.write(f.ino, 0, bytes_of("hello\n"));
    }
    fs.link(a.ino, d.ino, "a2");
    fs.make_node(d.ino, "e", S_IFDIR | 0755, 0, me);
    fs.symlink(kRootIno, "s", "a", me);
    fs.sync_all();
  }

  FsckReport fsck(bool repair = false) { return run_fsck(dir_, FsckOptions{repair, {}}); }

  // Damage found as exactly `want`, repaired (every problem with a fix), then clean.
  void expect_found_and_repaired(const std::multiset<FsckKind>& want) {
    FsckReport found = fsck();
    EXPECT_EQ(kinds(found), want) << dump(found);
    EXPECT_FALSE(found.clean()) << dump(found);
    EXPECT_EQ(found.errors_repaired(), 0u);

    FsckReport repaired = fsck(true);
    EXPECT_EQ(kinds(repaired), want) << dump(repaired);
    EXPECT_EQ(repaired.errors_repaired(), repaired.errors()) << dump(repaired);

    FsckReport after = fsck();
    EXPECT_TRUE(after.problems.empty()) << dump(after);
    EXPECT_TRUE(after.unreferenced.empty());
    EXPECT_TRUE(after.lost_files.empty());
  }

  std::vector<std::byte> read_file(std::string_view path) {
    auto store = Store::open(dir_);
    Filesystem fs(*store, FsOptions{});
    std::uint64_t ino = kRootIno;
    std::size_t start = 1;
    while (start < path.size()) {
      std::size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      ino = fs.lookup(ino, path.substr(start, slash - start)).value().ino;
      start = slash + 1;
    }
    std::vector<std::byte> out(fs.getattr(ino).size);
    out.resize(fs.read(ino, 0, out));
    return out;
  }

  TempDir tmp_;
  std::filesystem::path dir_;
  std::mt19937_64 rng_;
};

TEST_F(FsckTest, FreshStoreHoldsNoFilesystemAndIsClean) {
  FsckReport r = fsck();
  EXPECT_TRUE(r.problems.empty()) << dump(r);
  EXPECT_TRUE(r.no_filesystem);
  EXPECT_TRUE(r.clean());
}

TEST_F(FsckTest, CleanFilesystemGivesACleanReport) {
  build();
  for (bool repair : {false, true}) {
    FsckReport r = fsck(repair);
    EXPECT_TRUE(r.problems.empty()) << dump(r);
    EXPECT_FALSE(r.no_filesystem);
    EXPECT_TRUE(r.lost_files.empty());
    EXPECT_TRUE(r.unreferenced.empty());
    EXPECT_FALSE(r.gc);
    EXPECT_EQ(r.counts.inodes, 7u);  // /, a, d, b, copy, e, s
    EXPECT_EQ(r.counts.directories, 3u);
    EXPECT_EQ(r.counts.files, 3u);
    EXPECT_EQ(r.counts.symlinks, 1u);
    EXPECT_GE(r.counts.extents, 3u);
    EXPECT_EQ(r.counts.objects, r.counts.extents - 1);  // b and copy share one
    EXPECT_GE(r.counts.bytes_verified, (300u << 10) + 6);
  }
}

TEST_F(FsckTest, WrongRefcount) {
  build();
  ObjectId id;
  {
    Tables t(dir_);
    id = t.data.extents(t.txn, t.ino_of("/d/b")).at(0).id;
    auto info = t.store->index().get(t.txn, id);
    ASSERT_EQ(info->refcount, 2u);
    info->refcount = 5;
    t.store->index().put(t.txn, *info);
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kRefcount});
  auto store = Store::open(dir_);
  EXPECT_EQ(store->stat(id)->refcount, 2u);
}

TEST_F(FsckTest, ExtraNlink) {
  build();
  {
    Tables t(dir_);
    Inode b = t.inode("/d/b");
    ++b.nlink;
    t.ns.put(t.txn, b);
    Inode d = t.inode("/d");
    d.nlink = 7;
    t.ns.put(t.txn, d);
    t.commit();
  }
  FsckReport r = fsck();
  ASSERT_EQ(r.problems.size(), 2u) << dump(r);
  EXPECT_NE(r.problems[0].what.find("/d"), std::string::npos) << dump(r);
  expect_found_and_repaired({FsckKind::kNlink, FsckKind::kNlink});
  Tables t(dir_);
  EXPECT_EQ(t.inode("/d/b").nlink, 1u);
  EXPECT_EQ(t.inode("/d").nlink, 3u);  // its name, ".", and e's ".."
}

TEST_F(FsckTest, OrphanLeftByACrashIsNotAnErrorAndRepairFreesIt) {
  build();
  std::uint64_t orphan = 0;
  {
    auto store = Store::open(dir_);
    Filesystem fs(*store, FsOptions{});
    Inode o = fs.make_node(kRootIno, "open-file", S_IFREG | 0644, 0, Caller{});
    orphan = o.ino;
    fs.open(o.ino, false);
    fs.write(o.ino, 0, testing::random_bytes(rng_, 100 << 10));
    fs.fsync(o.ino);
    fs.unlink(kRootIno, "open-file");
    // Still open when the filesystem goes away: what a crash leaves behind.
  }
  {
    Tables t(dir_);
    ASSERT_EQ(t.ns.orphans(t.txn), std::vector<std::uint64_t>{orphan});
    ASSERT_FALSE(t.data.extents(t.txn, orphan).empty());
  }
  FsckReport found = fsck();
  EXPECT_EQ(kinds(found), std::multiset<FsckKind>{FsckKind::kOrphan}) << dump(found);
  EXPECT_TRUE(found.clean());

  FsckReport repaired = fsck(true);
  EXPECT_EQ(kinds(repaired), std::multiset<FsckKind>{FsckKind::kOrphan}) << dump(repaired);
  EXPECT_TRUE(repaired.problems[0].repaired);
  // Its objects lost their last reference and were collected.
  EXPECT_FALSE(repaired.unreferenced.empty());
  ASSERT_TRUE(repaired.gc);
  EXPECT_EQ(repaired.gc->loose_removed, repaired.unreferenced.size());

  FsckReport after = fsck();
  EXPECT_TRUE(after.problems.empty()) << dump(after);
  EXPECT_TRUE(after.unreferenced.empty());
  Tables t(dir_);
  EXPECT_TRUE(t.ns.orphans(t.txn).empty());
  EXPECT_FALSE(t.ns.get(t.txn, orphan));
  EXPECT_TRUE(t.data.extents(t.txn, orphan).empty());
}

TEST_F(FsckTest, LeakedInodeWithNoOrphanRecord) {
  build();
  {
    Tables t(dir_);
    Inode b = t.inode("/d/copy");
    t.ns.unlink(t.txn, t.ino_of("/d"), "copy", Timespec{});
    ASSERT_EQ(t.ns.get(t.txn, b.ino)->nlink, 0u);
    t.commit();
  }
  // Freeing it releases its references: the shared object's refcount follows, and is
  // no problem of its own.
  expect_found_and_repaired({FsckKind::kLeakedInode});
}

TEST_F(FsckTest, EntryForAMissingInode) {
  build();
  {
    Tables t(dir_);
    Inode root = *t.ns.get(t.txn, kRootIno);
    t.ns.put_entry(t.txn, kRootIno, "ghost", DirEntry{9999, d_type_of(S_IFREG), root.next_slot++});
    t.ns.put(t.txn, root);
    t.commit();
  }
  FsckReport r = fsck();
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_NE(r.problems[0].what.find("/ghost"), std::string::npos) << dump(r);
  expect_found_and_repaired({FsckKind::kEntry});
}

TEST_F(FsckTest, ExtentNamingAMissingObjectListsTheFileAsLost) {
  build();
  {
    Tables t(dir_);
    const std::uint64_t ino = t.ino_of("/d/b");
    Inode b = t.inode("/d/b");
    ObjectId nowhere = Sha256::of(bytes_of("never stored"));
    t.put_extent(ino, Extent{100, 12, nowhere});
    b.size = 112;
    b.allocated += 12;
    t.ns.put(t.txn, b);
    t.commit();
  }
  const std::vector<std::string> lost{"/d/b"};
  for (bool repair : {false, true, false}) {
    FsckReport r = fsck(repair);
    EXPECT_EQ(kinds(r), std::multiset<FsckKind>{FsckKind::kDataLost}) << dump(r);
    EXPECT_EQ(r.lost_files, lost);
    EXPECT_NE(r.problems.at(0).what.find("/d/b"), std::string::npos);
    EXPECT_FALSE(r.problems.at(0).repaired);
    EXPECT_FALSE(r.clean());
  }
  // Repair left the file alone: its stored bytes still read back.
  auto store = Store::open(dir_);
  Namespace ns(store->env());
  auto txn = LmdbTxn::read(store->env());
  auto d = ns.lookup(txn, kRootIno, "d");
  EXPECT_TRUE(ns.lookup(txn, d->ino, "b"));
}

TEST_F(FsckTest, CorruptObjectIsReportedWithEveryFileUsingIt) {
  build();
  ObjectId id;
  {
    Tables t(dir_);
    id = t.data.extents(t.txn, t.ino_of("/d/b")).at(0).id;
  }
  const auto hex = id.hex();
  std::ofstream(dir_ / "loose" / hex.substr(0, 2) / hex.substr(2), std::ios::trunc) << "HELLO\n";
  const std::vector<std::string> lost{"/d/b", "/d/copy"};
  FsckReport r = fsck();
  EXPECT_EQ(kinds(r), std::multiset<FsckKind>{FsckKind::kBadObject}) << dump(r);
  EXPECT_EQ(r.lost_files, lost);
  EXPECT_NE(r.problems.at(0).what.find("/d/b"), std::string::npos) << dump(r);
  EXPECT_NE(r.problems.at(0).what.find("/d/copy"), std::string::npos) << dump(r);

  // No intact copy anywhere: the rebuilt index drops it, and the files stay listed.
  FsckReport repaired = fsck(true);
  EXPECT_TRUE(repaired.index_rebuilt);
  EXPECT_EQ(repaired.lost_files, lost) << dump(repaired);
  EXPECT_FALSE(repaired.clean());
  FsckReport after = fsck();
  EXPECT_EQ(kinds(after), (std::multiset<FsckKind>{FsckKind::kDataLost, FsckKind::kDataLost}))
      << dump(after);
  EXPECT_EQ(after.lost_files, lost);
}

TEST_F(FsckTest, MissingIndexDirectory) {
  build();
  std::filesystem::remove_all(dir_ / "meta");
  FsckReport found = fsck();
  EXPECT_EQ(kinds(found), std::multiset<FsckKind>{FsckKind::kIndex}) << dump(found);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "meta")) << "a check must not create meta/";

  // The filesystem's tables were in meta/ too: the objects survive, the names do not.
  FsckReport repaired = fsck(true);
  EXPECT_TRUE(repaired.index_rebuilt);
  EXPECT_TRUE(repaired.no_filesystem);
  EXPECT_EQ(kinds(repaired), (std::multiset<FsckKind>{FsckKind::kIndex, FsckKind::kNamespace}))
      << dump(repaired);
  EXPECT_TRUE(repaired.problems.at(0).repaired);
  EXPECT_TRUE(repaired.unreferenced.empty());
  EXPECT_GE(repaired.counts.objects, 3u);

  FsckReport after = fsck();
  EXPECT_TRUE(after.problems.empty()) << dump(after);
  EXPECT_TRUE(after.no_filesystem);
}

TEST_F(FsckTest, ForeignIndexIsRebuiltAndRefcountsComeFromTheExtents) {
  build();
  {
    Tables t(dir_);
    t.store->index().put_meta(t.txn, "store_uuid", "someone-else");
    t.commit();
  }
  FsckReport found = fsck();
  EXPECT_EQ(kinds(found), std::multiset<FsckKind>{FsckKind::kIndex}) << dump(found);

  // A rebuild from an index it cannot trust gives each object one reference; the
  // object /d/b and /d/copy share needs two.
  FsckReport repaired = fsck(true);
  EXPECT_EQ(kinds(repaired), (std::multiset<FsckKind>{FsckKind::kIndex, FsckKind::kRefcount}))
      << dump(repaired);
  EXPECT_EQ(repaired.errors_repaired(), repaired.errors());
  FsckReport after = fsck();
  EXPECT_TRUE(after.problems.empty()) << dump(after);
  EXPECT_EQ(read_file("/d/copy"), bytes_of("hello\n"));
}

TEST_F(FsckTest, InodeWithNoNameGoesToLostAndFound) {
  build();
  std::uint64_t ino = 0;
  {
    Tables t(dir_);
    const std::uint64_t d = t.ino_of("/d");
    ino = t.ino_of("/d/b");
    auto entry = t.ns.lookup(t.txn, d, "b");
    t.ns.erase_dirent(t.txn, d, "b");
    t.ns.erase_dirslot(t.txn, d, entry->slot);
    t.commit();
  }
  FsckReport r = fsck();
  EXPECT_EQ(kinds(r), std::multiset<FsckKind>{FsckKind::kUnreachable}) << dump(r);
  expect_found_and_repaired({FsckKind::kUnreachable});
  Tables t(dir_);
  EXPECT_EQ(t.ino_of("/lost+found/#" + std::to_string(ino)), ino);
  EXPECT_EQ(t.inode("/").nlink, 4u);  // d and lost+found
  t.txn.abort();
  t.store.reset();
  EXPECT_EQ(read_file("/lost+found/#" + std::to_string(ino)), bytes_of("hello\n"));
}

TEST_F(FsckTest, DirectoryLoopIsCutOpen) {
  build();
  {
    Tables t(dir_);
    const std::uint64_t d = t.ino_of("/d");
    const std::uint64_t e = t.ino_of("/d/e");
    auto entry = t.ns.lookup(t.txn, d, "e");
    t.ns.erase_dirent(t.txn, d, "e");
    t.ns.erase_dirslot(t.txn, d, entry->slot);
    Inode dir_e = *t.ns.get(t.txn, e);
    t.ns.put_entry(t.txn, e, "self", DirEntry{e, d_type_of(S_IFDIR), dir_e.next_slot++});
    t.ns.put(t.txn, dir_e);
    t.commit();
  }
  FsckReport found = fsck();
  EXPECT_GT(kinds(found).count(FsckKind::kUnreachable), 0u) << dump(found);
  FsckReport repaired = fsck(true);
  EXPECT_EQ(repaired.errors_repaired(), repaired.errors()) << dump(repaired);
  FsckReport after = fsck();
  EXPECT_TRUE(after.problems.empty()) << dump(after);
}

TEST_F(FsckTest, DirentsAndSlotsDisagree) {
  build();
  {
    Tables t(dir_);
    const std::uint64_t d = t.ino_of("/d");
    t.ns.erase_dirslot(t.txn, d, t.ns.lookup(t.txn, d, "b")->slot);  // readdir misses b
    t.ns.erase_dirent(t.txn, d, "copy");                             // lookups miss copy
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kSlot, FsckKind::kSlot});
  Tables t(dir_);
  std::vector<std::string> listed;
  t.ns.readdir(t.txn, t.ino_of("/d"), 0, [&](const DirEntryView& e, std::uint64_t) {
    listed.emplace_back(e.name);
    return true;
  });
  EXPECT_EQ(listed, (std::vector<std::string>{".", "..", "b", "copy", "a2", "e"}));
}

TEST_F(FsckTest, TwoEntriesShareASlot) {
  build();
  {
    Tables t(dir_);
    const std::uint64_t d = t.ino_of("/d");
    DirEntry copy = *t.ns.lookup(t.txn, d, "copy");
    copy.slot = t.ns.lookup(t.txn, d, "b")->slot;
    t.ns.put_entry(t.txn, d, "copy", copy);  // its old slot record stays behind
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kSlot, FsckKind::kSlot});
  Tables t(dir_);
  std::multiset<std::string> listed;
  t.ns.readdir(t.txn, t.ino_of("/d"), 0, [&](const DirEntryView& e, std::uint64_t) {
    listed.emplace(e.name);
    return true;
  });
  EXPECT_EQ(listed, (std::multiset<std::string>{".", "..", "a2", "b", "copy", "e"}));
}

TEST_F(FsckTest, WrongAllocatedAndDirectoryParent) {
  build();
  {
    Tables t(dir_);
    Inode a = t.inode("/a");
    a.allocated += 4096;
    t.ns.put(t.txn, a);
    Inode e = t.inode("/d/e");
    e.parent = kRootIno;
    t.ns.put(t.txn, e);
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kAllocated, FsckKind::kParent});
}

TEST_F(FsckTest, OrphanRecordOnANamedFileIsRemovedNotTheFile) {
  build();
  {
    Tables t(dir_);
    t.ns.add_orphan(t.txn, t.ino_of("/d/b"));
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kStray});
  EXPECT_EQ(read_file("/d/b"), bytes_of("hello\n"));
}

TEST_F(FsckTest, StrayRecordsAndABackwardInodeCounter) {
  build();
  {
    Tables t(dir_);
    const Extent some = t.data.extents(t.txn, t.ino_of("/a")).at(0);
    t.put_extent(7777, some);  // a file that does not exist
    t.xattrs.set(t.txn, 5000, "user.gone", bytes_of("x"), 0);
    t.symlinks.set(t.txn, t.ino_of("/a"), "not a symlink");
    t.ns.set_next_ino(t.txn, 3);
    t.commit();
  }
  expect_found_and_repaired(
      {FsckKind::kNamespace, FsckKind::kStray, FsckKind::kStray, FsckKind::kStray});
  Tables t(dir_);
  EXPECT_EQ(t.ns.next_ino(t.txn), 8u);
  EXPECT_EQ(t.data.extents(t.txn, 7777).size(), 0u);
}

TEST_F(FsckTest, ExtentPastTheEndIsDropped) {
  build();
  {
    Tables t(dir_);
    const std::uint64_t b = t.ino_of("/d/b");
    Extent e = t.data.extents(t.txn, b).at(0);
    e.offset = 4096;
    t.put_extent(b, e);
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kExtent});
  EXPECT_EQ(read_file("/d/b"), bytes_of("hello\n"));
}

TEST_F(FsckTest, MissingRootIsMadeAnew) {
  build();
  {
    Tables t(dir_);
    t.ns.free_inode(t.txn, kRootIno);
    t.commit();
  }
  // The new root starts with nlink 2 and no slots: both follow from its entries.
  expect_found_and_repaired({FsckKind::kNamespace, FsckKind::kSlot, FsckKind::kNlink});
  EXPECT_EQ(read_file("/d/b"), bytes_of("hello\n"));
}

TEST_F(FsckTest, MalformedEntryIsRestoredFromItsSlot) {
  build();
  {
    Tables t(dir_);
    const std::uint64_t d = t.ino_of("/d");
    std::vector<std::byte> key(8 + 1);
    put_be64(key.data(), d);
    key[8] = std::byte{'b'};
    t.txn.put(t.dirents_db, key, bytes_of("bad"));
    t.commit();
  }
  expect_found_and_repaired({FsckKind::kEntry, FsckKind::kSlot});
  EXPECT_EQ(read_file("/d/b"), bytes_of("hello\n"));
}

TEST_F(FsckTest, StoreInUseIsAnOperationalError) {
  build();
  auto store = Store::open(dir_);
  try {
    fsck();
    FAIL() << "fsck ran on a store in use";
  } catch (const StoreError& e) {
    EXPECT_EQ(e.code(), EBUSY);
  }
}

TEST_F(FsckTest, MissingStoreIsAnOperationalError) {
  EXPECT_THROW(run_fsck(tmp_.path() / "nothing-here", FsckOptions{}), StoreError);
}

}  // namespace
}  // namespace casfs
