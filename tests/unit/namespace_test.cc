// The namespace tables on a real LMDB environment on disk: every operation, every
// error it reports, nlink bookkeeping, readdir stability under change, a large
// directory, persistence, and a randomized comparison against an in-memory model.
#include "fs/namespace.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fs/fs_error.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::TempDir;

Timespec at(std::int64_t sec, std::uint32_t nsec = 0) {
  return Timespec{sec, nsec};
}

// The errno an operation fails with, or 0 when it succeeds.
template <typename F>
int error_of(F&& f) {
  try {
    f();
  } catch (const FsError& e) {
    return e.code();
  }
  return 0;
}

struct Listed {
  std::string name;
  std::uint64_t ino;
  std::uint8_t d_type;
  std::uint64_t cookie;
};

class NamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    open();
    auto txn = LmdbTxn::write(*env_);
    ns_->format(txn, 0755, 1000, 100, at(1));
    txn.commit();
  }
  void open() {
    env_ = std::make_unique<LmdbEnv>(tmp_.path() / "meta", true);
    ns_ = std::make_unique<Namespace>(*env_);
  }
  void close() {
    ns_.reset();
    env_.reset();
  }
  LmdbTxn write() { return LmdbTxn::write(*env_); }
  LmdbTxn read() { return LmdbTxn::read(*env_); }

  Inode mkfile(LmdbTxn& txn, std::uint64_t parent, std::string_view name, std::int64_t now = 10) {
    return ns_->create(txn, parent, name, S_IFREG | 0644, 1000, 100, 0, at(now));
  }
  Inode mkdir(LmdbTxn& txn, std::uint64_t parent, std::string_view name, std::int64_t now = 10) {
    return ns_->create(txn, parent, name, S_IFDIR | 0755, 1000, 100, 0, at(now));
  }
  Inode inode(const LmdbTxn& txn, std::uint64_t ino) {
    auto n = ns_->get(txn, ino);
    EXPECT_TRUE(n.has_value()) << "inode " << ino;
    return n.value_or(Inode{});
  }
  std::uint64_t ino_of(const LmdbTxn& txn, std::uint64_t parent, std::string_view name) {
    auto e = ns_->lookup(txn, parent, name);
    EXPECT_TRUE(e.has_value()) << "lookup " << name;
    return e ? e->ino : 0;
  }
  // The whole listing, dots included, in the order readdir gives it.
  std::vector<Listed> list(const LmdbTxn& txn, std::uint64_t dir) {
    std::vector<Listed> out;
    ns_->readdir(txn, dir, 0, [&](const DirEntryView& e, std::uint64_t next) {
      out.push_back({std::string(e.name), e.ino, e.d_type, next});
      return true;
    });
    return out;
  }
  std::vector<std::string> names(const LmdbTxn& txn, std::uint64_t dir) {
    std::vector<std::string> out;
    for (const auto& e : list(txn, dir)) {
      if (e.name != "." && e.name != "..") out.push_back(e.name);
    }
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<LmdbEnv> env_;
  std::unique_ptr<Namespace> ns_;
};

TEST(InodeTest, EncodeDecodeRoundTripsAndRejectsForeignRecords) {
  Inode n;
  n.ino = 0x0102030405060708;
  n.mode = S_IFREG | 0640;
  n.uid = 4000000000u;
  n.gid = 7;
  n.nlink = 3;
  n.size = 1ull << 40;
  n.rdev = 99;
  n.parent = 5;
  n.next_slot = 17;
  n.atime = at(-5, 999999999);
  n.mtime = at(1700000000, 1);
  n.ctime = at(2, 3);
  n.btime = at(4, 5);
  n.generation = 6;
  auto bytes = n.encode();
  EXPECT_EQ(bytes[0], std::byte{Inode::kVersion});
  EXPECT_EQ(Inode::decode(bytes), n);

  EXPECT_EQ(error_of([&] { Inode::decode(std::span(bytes).first(bytes.size() - 1)); }), EIO);
  auto wrong_version = bytes;
  wrong_version[0] = std::byte{Inode::kVersion + 1};
  EXPECT_EQ(error_of([&] { Inode::decode(wrong_version); }), EIO);
  EXPECT_EQ(error_of([&] { Inode::decode({}); }), EIO);
}

TEST_F(NamespaceTest, FormatCreatesTheRootOnceAndIsIdempotent) {
  {
    auto txn = read();
    Inode root = inode(txn, kRootIno);
    EXPECT_EQ(root.mode, S_IFDIR | 0755u);
    EXPECT_EQ(root.uid, 1000u);
    EXPECT_EQ(root.gid, 100u);
    EXPECT_EQ(root.nlink, 2u);
    EXPECT_EQ(root.parent, kRootIno);
    EXPECT_EQ(root.btime, at(1));
    EXPECT_TRUE(names(txn, kRootIno).empty());
  }
  auto txn = write();
  Inode f = mkfile(txn, kRootIno, "keep");
  ns_->format(txn, 0700, 0, 0, at(50));
  Inode root = inode(txn, kRootIno);
  EXPECT_EQ(root.mode, S_IFDIR | 0755u);  // unchanged
  EXPECT_EQ(root.uid, 1000u);
  EXPECT_EQ(ino_of(txn, kRootIno, "keep"), f.ino);
  // The counter is not reset either.
  EXPECT_GT(mkfile(txn, kRootIno, "next").ino, f.ino);
}

TEST_F(NamespaceTest, CreatesEveryFileTypeAndUpdatesTheParent) {
  auto txn = write();
  Inode reg = ns_->create(txn, kRootIno, "reg", S_IFREG | 0600, 1, 2, 0, at(20, 5));
  Inode dir = ns_->create(txn, kRootIno, "dir", S_IFDIR | 0700, 1, 2, 0, at(21));
  Inode lnk = ns_->create(txn, kRootIno, "lnk", S_IFLNK | 0777, 1, 2, 0, at(22));
  Inode fifo = ns_->create(txn, kRootIno, "fifo", S_IFIFO | 0600, 1, 2, 0, at(23));
  Inode sock = ns_->create(txn, kRootIno, "sock", S_IFSOCK | 0600, 1, 2, 0, at(24));
  Inode chr = ns_->create(txn, kRootIno, "chr", S_IFCHR | 0600, 1, 2, makedev(1, 3), at(25));
  Inode blk = ns_->create(txn, kRootIno, "blk", S_IFBLK | 0600, 1, 2, makedev(8, 0), at(26));
  Inode plain = ns_->create(txn, kRootIno, "plain", 0644, 1, 2, 0, at(27));

  EXPECT_EQ(plain.mode, S_IFREG | 0644u);  // no type bits means a regular file, as mknod
  EXPECT_EQ(reg.nlink, 1u);
  EXPECT_EQ(reg.atime, at(20, 5));
  EXPECT_EQ(reg.btime, at(20, 5));
  EXPECT_EQ(reg.uid, 1u);
  EXPECT_EQ(reg.gid, 2u);
  EXPECT_EQ(dir.nlink, 2u);
  EXPECT_EQ(dir.parent, kRootIno);
  EXPECT_EQ(chr.rdev, makedev(1, 3));
  EXPECT_EQ(blk.rdev, makedev(8, 0));

  std::vector<std::pair<std::string, Inode>> all = {{"reg", reg},   {"dir", dir},    {"lnk", lnk},
                                                    {"fifo", fifo}, {"sock", sock},  {"chr", chr},
                                                    {"blk", blk},   {"plain", plain}};
  std::set<std::uint64_t> inos;
  for (const auto& [name, n] : all) {
    EXPECT_EQ(inode(txn, n.ino), n) << name;
    auto e = ns_->lookup(txn, kRootIno, name);
    ASSERT_TRUE(e) << name;
    EXPECT_EQ(e->ino, n.ino);
    EXPECT_EQ(e->d_type, d_type_of(n.mode)) << name;
    inos.insert(n.ino);
  }
  EXPECT_EQ(inos.size(), all.size());
  EXPECT_EQ(ns_->lookup(txn, kRootIno, "reg")->d_type, DT_REG);
  EXPECT_EQ(ns_->lookup(txn, kRootIno, "dir")->d_type, DT_DIR);
  EXPECT_EQ(ns_->lookup(txn, kRootIno, "lnk")->d_type, DT_LNK);

  Inode root = inode(txn, kRootIno);
  EXPECT_EQ(root.mtime, at(27));
  EXPECT_EQ(root.ctime, at(27));
  EXPECT_EQ(root.nlink, 3u);  // one subdirectory
  EXPECT_FALSE(ns_->lookup(txn, kRootIno, "missing"));
}

TEST_F(NamespaceTest, DirectoryNlinkCountsSubdirectories) {
  auto txn = write();
  Inode d = mkdir(txn, kRootIno, "d");
  for (const char* name : {"a", "b", "c"}) mkdir(txn, d.ino, name);
  mkfile(txn, d.ino, "file");  // files do not count
  EXPECT_EQ(inode(txn, d.ino).nlink, 5u);
  EXPECT_EQ(inode(txn, kRootIno).nlink, 3u);
  ns_->rmdir(txn, d.ino, "b", at(30));
  EXPECT_EQ(inode(txn, d.ino).nlink, 4u);
}

TEST_F(NamespaceTest, CreateRejectsBadNamesAndParentsWithoutChangingAnything) {
  auto txn = write();
  Inode file = mkfile(txn, kRootIno, "file");
  auto mk = [&](std::uint64_t parent, std::string_view name) {
    return error_of([&] { mkfile(txn, parent, name, 40); });
  };
  EXPECT_EQ(mk(kRootIno, "file"), EEXIST);
  EXPECT_EQ(error_of([&] { mkdir(txn, kRootIno, "file"); }), EEXIST);
  EXPECT_EQ(mk(file.ino, "x"), ENOTDIR);
  EXPECT_EQ(mk(12345, "x"), ENOENT);
  EXPECT_EQ(mk(kRootIno, std::string(256, 'n')), ENAMETOOLONG);
  EXPECT_EQ(mk(kRootIno, "a/b"), EINVAL);
  EXPECT_EQ(mk(kRootIno, std::string_view("a\0b", 3)), EINVAL);
  EXPECT_EQ(mk(kRootIno, "."), EINVAL);
  EXPECT_EQ(mk(kRootIno, ".."), EINVAL);
  EXPECT_EQ(error_of([&] { ns_->create(txn, kRootIno, "x", 0170000, 0, 0, 0, at(1)); }), EINVAL);

  // Nothing above changed the root or used up an inode number.
  Inode root = inode(txn, kRootIno);
  EXPECT_EQ(root.mtime, at(10));
  EXPECT_EQ(names(txn, kRootIno), std::vector<std::string>{"file"});
  EXPECT_EQ(mkfile(txn, kRootIno, "second").ino, file.ino + 1);

  // The longest name and arbitrary bytes are fine.
  std::string longest(255, 'L');
  std::string binary = "\xff\x01 \t\n\x80name";
  Inode a = mkfile(txn, kRootIno, longest);
  Inode b = mkfile(txn, kRootIno, binary);
  EXPECT_EQ(ino_of(txn, kRootIno, longest), a.ino);
  EXPECT_EQ(ino_of(txn, kRootIno, binary), b.ino);
  EXPECT_EQ(error_of([&] { ns_->lookup(txn, kRootIno, std::string(256, 'L')); }), ENAMETOOLONG);
  EXPECT_EQ(error_of([&] { ns_->lookup(txn, file.ino, "x"); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { ns_->lookup(txn, 999, "x"); }), ENOENT);
}

TEST_F(NamespaceTest, LookupResolvesDotAndDotDot) {
  auto txn = write();
  Inode a = mkdir(txn, kRootIno, "a");
  Inode b = mkdir(txn, a.ino, "b");
  EXPECT_EQ(ino_of(txn, b.ino, "."), b.ino);
  EXPECT_EQ(ino_of(txn, b.ino, ".."), a.ino);
  EXPECT_EQ(ino_of(txn, a.ino, ".."), kRootIno);
  EXPECT_EQ(ino_of(txn, kRootIno, ".."), kRootIno);
  EXPECT_EQ(ns_->lookup(txn, b.ino, "..")->d_type, DT_DIR);
}

TEST_F(NamespaceTest, InodeNumbersAreNeverReused) {
  auto txn = write();
  Inode a = mkfile(txn, kRootIno, "a");
  ns_->unlink(txn, kRootIno, "a", at(11));
  ns_->free_inode(txn, a.ino);
  Inode d = mkdir(txn, kRootIno, "d");
  EXPECT_EQ(ns_->rmdir(txn, kRootIno, "d", at(12)), d.ino);
  ns_->free_inode(txn, d.ino);
  EXPECT_FALSE(ns_->get(txn, a.ino));
  EXPECT_FALSE(ns_->get(txn, d.ino));
  EXPECT_EQ(mkfile(txn, kRootIno, "a").ino, d.ino + 1);
}

TEST_F(NamespaceTest, HardLinksShareTheInode) {
  auto txn = write();
  Inode d = mkdir(txn, kRootIno, "d");
  Inode f = mkfile(txn, kRootIno, "f");
  ns_->link(txn, f.ino, d.ino, "g", at(50));
  ns_->link(txn, f.ino, kRootIno, "h", at(51));
  EXPECT_EQ(ino_of(txn, d.ino, "g"), f.ino);
  EXPECT_EQ(ino_of(txn, kRootIno, "h"), f.ino);
  EXPECT_EQ(ns_->lookup(txn, d.ino, "g")->d_type, DT_REG);
  Inode now = inode(txn, f.ino);
  EXPECT_EQ(now.nlink, 3u);
  EXPECT_EQ(now.ctime, at(51));
  EXPECT_EQ(now.mtime, at(10));
  EXPECT_EQ(inode(txn, d.ino).mtime, at(50));
  EXPECT_EQ(inode(txn, d.ino).nlink, 2u);  // file links do not count

  EXPECT_EQ(error_of([&] { ns_->link(txn, d.ino, kRootIno, "dlink", at(52)); }), EPERM);
  EXPECT_EQ(error_of([&] { ns_->link(txn, f.ino, kRootIno, "d", at(52)); }), EEXIST);
  EXPECT_EQ(error_of([&] { ns_->link(txn, f.ino, f.ino, "x", at(52)); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { ns_->link(txn, 999, kRootIno, "x", at(52)); }), ENOENT);
  EXPECT_EQ(error_of([&] { ns_->link(txn, f.ino, kRootIno, "a/b", at(52)); }), EINVAL);
  EXPECT_EQ(error_of([&] { ns_->link(txn, f.ino, kRootIno, std::string(256, 'x'), at(52)); }),
            ENAMETOOLONG);
  EXPECT_EQ(inode(txn, f.ino).nlink, 3u);

  Inode many = mkfile(txn, kRootIno, "many");
  many.nlink = kMaxLinks;
  ns_->put(txn, many);
  EXPECT_EQ(error_of([&] { ns_->link(txn, many.ino, kRootIno, "one-more", at(53)); }), EMLINK);
  many.nlink = kMaxLinks - 1;
  ns_->put(txn, many);
  ns_->link(txn, many.ino, kRootIno, "one-more", at(53));
  EXPECT_EQ(inode(txn, many.ino).nlink, kMaxLinks);
}

TEST_F(NamespaceTest, UnlinkKeepsTheInodeAtZeroLinksAndOrphansAreTracked) {
  auto txn = write();
  Inode f = mkfile(txn, kRootIno, "f");
  ns_->link(txn, f.ino, kRootIno, "g", at(11));
  UnlinkResult r = ns_->unlink(txn, kRootIno, "f", at(20));
  EXPECT_EQ(r.ino, f.ino);
  EXPECT_EQ(r.nlink, 1u);
  EXPECT_FALSE(ns_->lookup(txn, kRootIno, "f"));
  EXPECT_EQ(ino_of(txn, kRootIno, "g"), f.ino);
  EXPECT_EQ(inode(txn, kRootIno).mtime, at(20));

  r = ns_->unlink(txn, kRootIno, "g", at(21));
  EXPECT_EQ(r.nlink, 0u);
  Inode gone = inode(txn, f.ino);  // still there: an open file may hold it
  EXPECT_EQ(gone.nlink, 0u);
  EXPECT_EQ(gone.ctime, at(21));
  EXPECT_TRUE(names(txn, kRootIno).empty());
  // An unlinked inode cannot get a name back.
  EXPECT_EQ(error_of([&] { ns_->link(txn, f.ino, kRootIno, "back", at(22)); }), ENOENT);

  Inode other = mkfile(txn, kRootIno, "other");
  ns_->unlink(txn, kRootIno, "other", at(23));
  EXPECT_TRUE(ns_->orphans(txn).empty());
  ns_->add_orphan(txn, other.ino);
  ns_->add_orphan(txn, f.ino);
  ns_->add_orphan(txn, f.ino);  // twice is once
  EXPECT_EQ(ns_->orphans(txn), (std::vector<std::uint64_t>{f.ino, other.ino}));
  ns_->remove_orphan(txn, other.ino);
  EXPECT_EQ(ns_->orphans(txn), std::vector<std::uint64_t>{f.ino});
  ns_->free_inode(txn, f.ino);
  EXPECT_FALSE(ns_->get(txn, f.ino));
  EXPECT_TRUE(ns_->orphans(txn).empty());  // freeing drops the orphan record too
  EXPECT_EQ(error_of([&] { ns_->free_inode(txn, f.ino); }), ENOENT);

  Inode d = mkdir(txn, kRootIno, "d");
  EXPECT_EQ(error_of([&] { ns_->unlink(txn, kRootIno, "d", at(30)); }), EISDIR);
  EXPECT_EQ(error_of([&] { ns_->unlink(txn, kRootIno, "missing", at(30)); }), ENOENT);
  EXPECT_EQ(error_of([&] { ns_->unlink(txn, d.ino, ".", at(30)); }), EISDIR);
  EXPECT_EQ(error_of([&] { ns_->unlink(txn, other.ino, "x", at(30)); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { ns_->unlink(txn, 999, "x", at(30)); }), ENOENT);
  EXPECT_EQ(ino_of(txn, kRootIno, "d"), d.ino);
}

TEST_F(NamespaceTest, RmdirRemovesOnlyEmptyDirectories) {
  auto txn = write();
  Inode d = mkdir(txn, kRootIno, "d");
  Inode sub = mkdir(txn, d.ino, "sub");
  Inode f = mkfile(txn, d.ino, "f");
  EXPECT_EQ(inode(txn, sub.ino).parent, d.ino);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, kRootIno, "d", at(20)); }), ENOTEMPTY);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, d.ino, "f", at(20)); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, d.ino, "missing", at(20)); }), ENOENT);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, d.ino, ".", at(20)); }), EINVAL);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, d.ino, "..", at(20)); }), ENOTEMPTY);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, f.ino, "x", at(20)); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { ns_->rmdir(txn, 999, "x", at(20)); }), ENOENT);
  Inode e = mkdir(txn, d.ino, "e");
  EXPECT_EQ(inode(txn, d.ino).nlink, 4u);
  EXPECT_EQ(ns_->rmdir(txn, d.ino, "e", at(25)), e.ino);
  // Kept with no links for the caller to orphan or free, and closed to new entries.
  EXPECT_EQ(inode(txn, e.ino).nlink, 0u);
  EXPECT_EQ(error_of([&] { mkfile(txn, e.ino, "late"); }), ENOENT);
  EXPECT_EQ(error_of([&] { ns_->lookup(txn, e.ino, "x"); }), ENOENT);
  int listed = 0;
  ns_->readdir(txn, e.ino, 0, [&](const DirEntryView&, std::uint64_t) { return ++listed, true; });
  EXPECT_EQ(listed, 0);
  ns_->free_inode(txn, e.ino);
  EXPECT_FALSE(ns_->get(txn, e.ino));
  EXPECT_FALSE(ns_->lookup(txn, d.ino, "e"));
  Inode now = inode(txn, d.ino);
  EXPECT_EQ(now.nlink, 3u);
  EXPECT_EQ(now.mtime, at(25));
  EXPECT_EQ(now.ctime, at(25));
}

TEST_F(NamespaceTest, RenameMovesFilesAndGivesThemANewSlot) {
  auto txn = write();
  Inode a = mkdir(txn, kRootIno, "a");
  Inode b = mkdir(txn, kRootIno, "b");
  Inode f = mkfile(txn, a.ino, "f");
  mkfile(txn, a.ino, "g");
  RenameResult r = ns_->rename(txn, a.ino, "f", a.ino, "f2", 0, at(30));
  EXPECT_FALSE(r.replaced_ino);
  EXPECT_FALSE(ns_->lookup(txn, a.ino, "f"));
  EXPECT_EQ(ino_of(txn, a.ino, "f2"), f.ino);
  EXPECT_EQ(names(txn, a.ino), (std::vector<std::string>{"g", "f2"}));  // new slot: last
  EXPECT_EQ(inode(txn, f.ino).ctime, at(30));
  EXPECT_EQ(inode(txn, a.ino).mtime, at(30));

  ns_->rename(txn, a.ino, "f2", b.ino, "f3", 0, at(31));
  EXPECT_EQ(names(txn, a.ino), std::vector<std::string>{"g"});
  EXPECT_EQ(names(txn, b.ino), std::vector<std::string>{"f3"});
  EXPECT_EQ(inode(txn, a.ino).mtime, at(31));
  EXPECT_EQ(inode(txn, b.ino).ctime, at(31));
  EXPECT_EQ(inode(txn, a.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, b.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, f.ino).nlink, 1u);

  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, "nope", b.ino, "x", 0, at(32)); }), ENOENT);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, "g", f.ino, "x", 0, at(32)); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, 999, "g", b.ino, "x", 0, at(32)); }), ENOENT);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, "g", b.ino, "x/y", 0, at(32)); }), EINVAL);
  EXPECT_EQ(
      error_of([&] { ns_->rename(txn, a.ino, "g", b.ino, std::string(256, 'x'), 0, at(32)); }),
      ENAMETOOLONG);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, ".", b.ino, "x", 0, at(32)); }), EBUSY);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, "g", b.ino, "..", 0, at(32)); }), EBUSY);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, "g", b.ino, "x", 4, at(32)); }), EINVAL);
  EXPECT_EQ(error_of([&] {
              ns_->rename(txn, a.ino, "g", b.ino, "x", kRenameNoReplace | kRenameExchange, at(32));
            }),
            EINVAL);
  EXPECT_EQ(names(txn, a.ino), std::vector<std::string>{"g"});
  EXPECT_EQ(inode(txn, a.ino).mtime, at(31));
}

TEST_F(NamespaceTest, RenameOverAFileReportsTheReplacedInode) {
  auto txn = write();
  Inode src = mkfile(txn, kRootIno, "src");
  Inode victim = mkfile(txn, kRootIno, "victim");
  ns_->link(txn, victim.ino, kRootIno, "victim-link", at(11));
  RenameResult r = ns_->rename(txn, kRootIno, "src", kRootIno, "victim", 0, at(40));
  ASSERT_TRUE(r.replaced_ino);
  EXPECT_EQ(*r.replaced_ino, victim.ino);
  EXPECT_EQ(r.replaced_nlink, 1u);
  EXPECT_EQ(ino_of(txn, kRootIno, "victim"), src.ino);
  EXPECT_EQ(inode(txn, victim.ino).nlink, 1u);
  EXPECT_EQ(inode(txn, victim.ino).ctime, at(40));

  Inode other = mkfile(txn, kRootIno, "other");
  r = ns_->rename(txn, kRootIno, "other", kRootIno, "victim-link", 0, at(41));
  EXPECT_EQ(r.replaced_ino, victim.ino);
  EXPECT_EQ(r.replaced_nlink, 0u);
  EXPECT_EQ(inode(txn, victim.ino).nlink, 0u);  // kept for the caller to orphan or free
  EXPECT_EQ(names(txn, kRootIno), (std::vector<std::string>{"victim", "victim-link"}));
  EXPECT_EQ(ino_of(txn, kRootIno, "victim-link"), other.ino);
}

TEST_F(NamespaceTest, RenameMovesDirectoriesAndKeepsNlinksAndParents) {
  auto txn = write();
  Inode a = mkdir(txn, kRootIno, "a");
  Inode b = mkdir(txn, kRootIno, "b");
  Inode d = mkdir(txn, a.ino, "d");
  mkfile(txn, d.ino, "inside");
  EXPECT_EQ(inode(txn, a.ino).nlink, 3u);
  ns_->rename(txn, a.ino, "d", b.ino, "d", 0, at(50));
  EXPECT_EQ(inode(txn, a.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, b.ino).nlink, 3u);
  EXPECT_EQ(inode(txn, d.ino).parent, b.ino);
  EXPECT_EQ(ino_of(txn, d.ino, ".."), b.ino);
  EXPECT_EQ(inode(txn, d.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, kRootIno).nlink, 4u);
  EXPECT_EQ(list(txn, d.ino)[1].ino, b.ino);  // ".." in readdir

  // Within one directory nothing moves between parents.
  ns_->rename(txn, b.ino, "d", b.ino, "e", 0, at(51));
  EXPECT_EQ(inode(txn, b.ino).nlink, 3u);
  EXPECT_EQ(inode(txn, d.ino).parent, b.ino);

  // Over an empty directory: it is left with no links for the caller to orphan or
  // free, and the parent's count stays right.
  Inode empty = mkdir(txn, a.ino, "empty");
  RenameResult r = ns_->rename(txn, b.ino, "e", a.ino, "empty", 0, at(52));
  EXPECT_EQ(r.replaced_ino, empty.ino);
  EXPECT_EQ(r.replaced_nlink, 0u);
  EXPECT_EQ(inode(txn, empty.ino).nlink, 0u);
  EXPECT_EQ(ino_of(txn, a.ino, "empty"), d.ino);
  EXPECT_EQ(inode(txn, a.ino).nlink, 3u);
  EXPECT_EQ(inode(txn, b.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, d.ino).parent, a.ino);
  EXPECT_EQ(names(txn, d.ino), std::vector<std::string>{"inside"});
}

TEST_F(NamespaceTest, RenameRefusesMismatchedOrNonEmptyTargets) {
  auto txn = write();
  Inode dir = mkdir(txn, kRootIno, "dir");
  Inode full = mkdir(txn, kRootIno, "full");
  mkfile(txn, full.ino, "x");
  mkfile(txn, kRootIno, "file");
  auto rn = [&](std::string_view from, std::string_view to, unsigned flags = 0) {
    return error_of([&] { ns_->rename(txn, kRootIno, from, kRootIno, to, flags, at(60)); });
  };
  EXPECT_EQ(rn("dir", "file"), ENOTDIR);
  EXPECT_EQ(rn("file", "dir"), EISDIR);
  EXPECT_EQ(rn("dir", "full"), ENOTEMPTY);
  EXPECT_EQ(rn("file", "dir", kRenameNoReplace), EEXIST);
  EXPECT_EQ(rn("file", "newname", kRenameExchange), ENOENT);
  EXPECT_EQ(rn("missing", "file", kRenameExchange), ENOENT);
  EXPECT_EQ(rn("file", "file", kRenameNoReplace), EEXIST);
  EXPECT_EQ(names(txn, kRootIno), (std::vector<std::string>{"dir", "full", "file"}));
  EXPECT_EQ(inode(txn, kRootIno).nlink, 4u);
  EXPECT_EQ(inode(txn, kRootIno).mtime, at(10));
  EXPECT_EQ(rn("file", "fresh", kRenameNoReplace), 0);
  EXPECT_EQ(ino_of(txn, kRootIno, "dir"), dir.ino);
}

TEST_F(NamespaceTest, RenameOfOneInodeOntoItselfDoesNothing) {
  auto txn = write();
  Inode f = mkfile(txn, kRootIno, "f");
  ns_->link(txn, f.ino, kRootIno, "g", at(11));
  RenameResult r = ns_->rename(txn, kRootIno, "f", kRootIno, "g", 0, at(70));
  EXPECT_FALSE(r.replaced_ino);
  r = ns_->rename(txn, kRootIno, "f", kRootIno, "f", 0, at(70));
  EXPECT_FALSE(r.replaced_ino);
  EXPECT_EQ(names(txn, kRootIno), (std::vector<std::string>{"f", "g"}));
  EXPECT_EQ(inode(txn, f.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, kRootIno).mtime, at(11));
}

TEST_F(NamespaceTest, RenameNoReplaceAndExchange) {
  auto txn = write();
  Inode p = mkdir(txn, kRootIno, "p");
  Inode q = mkdir(txn, kRootIno, "q");
  Inode file = mkfile(txn, p.ino, "file");
  Inode dir = mkdir(txn, q.ino, "dir");
  Inode sub = mkdir(txn, dir.ino, "sub");
  EXPECT_EQ(inode(txn, p.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, q.ino).nlink, 3u);

  ns_->rename(txn, p.ino, "file", q.ino, "dir", kRenameExchange, at(80));
  EXPECT_EQ(ino_of(txn, p.ino, "file"), dir.ino);
  EXPECT_EQ(ns_->lookup(txn, p.ino, "file")->d_type, DT_DIR);
  EXPECT_EQ(ino_of(txn, q.ino, "dir"), file.ino);
  EXPECT_EQ(ns_->lookup(txn, q.ino, "dir")->d_type, DT_REG);
  EXPECT_EQ(inode(txn, dir.ino).parent, p.ino);
  EXPECT_EQ(ino_of(txn, dir.ino, ".."), p.ino);
  EXPECT_EQ(inode(txn, sub.ino).parent, dir.ino);
  EXPECT_EQ(inode(txn, p.ino).nlink, 3u);
  EXPECT_EQ(inode(txn, q.ino).nlink, 2u);
  EXPECT_EQ(inode(txn, file.ino).ctime, at(80));
  EXPECT_EQ(inode(txn, dir.ino).ctime, at(80));
  EXPECT_EQ(inode(txn, p.ino).mtime, at(80));
  EXPECT_EQ(inode(txn, q.ino).mtime, at(80));
  // The names keep their places in the listing; readdir shows the new types.
  auto lp = list(txn, p.ino);
  ASSERT_EQ(lp.size(), 3u);
  EXPECT_EQ(lp[2].name, "file");
  EXPECT_EQ(lp[2].ino, dir.ino);
  EXPECT_EQ(lp[2].d_type, DT_DIR);

  // Two directories in different parents swap their parents.
  Inode other = mkdir(txn, q.ino, "other");
  ns_->rename(txn, p.ino, "file", q.ino, "other", kRenameExchange, at(81));
  EXPECT_EQ(inode(txn, dir.ino).parent, q.ino);
  EXPECT_EQ(inode(txn, other.ino).parent, p.ino);
  EXPECT_EQ(inode(txn, p.ino).nlink, 3u);
  EXPECT_EQ(inode(txn, q.ino).nlink, 3u);

  // Exchange within one directory.
  Inode x = mkfile(txn, q.ino, "x");
  ns_->rename(txn, q.ino, "x", q.ino, "other", kRenameExchange, at(82));
  EXPECT_EQ(ino_of(txn, q.ino, "x"), dir.ino);
  EXPECT_EQ(ino_of(txn, q.ino, "other"), x.ino);
  EXPECT_EQ(inode(txn, q.ino).nlink, 3u);

  EXPECT_EQ(
      error_of([&] { ns_->rename(txn, q.ino, "x", q.ino, "other", kRenameNoReplace, at(83)); }),
      EEXIST);
  ns_->rename(txn, q.ino, "x", p.ino, "moved", kRenameNoReplace, at(83));
  EXPECT_EQ(ino_of(txn, p.ino, "moved"), dir.ino);
}

TEST_F(NamespaceTest, RenameRefusesToMoveADirectoryIntoItsOwnSubtree) {
  auto txn = write();
  Inode a = mkdir(txn, kRootIno, "a");
  Inode b = mkdir(txn, a.ino, "b");
  Inode c = mkdir(txn, b.ino, "c");
  Inode d = mkdir(txn, c.ino, "d");
  mkfile(txn, kRootIno, "f");
  EXPECT_EQ(error_of([&] { ns_->rename(txn, kRootIno, "a", d.ino, "a", 0, at(90)); }), EINVAL);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, kRootIno, "a", a.ino, "x", 0, at(90)); }), EINVAL);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, a.ino, "b", c.ino, "b", 0, at(90)); }), EINVAL);
  EXPECT_EQ(error_of([&] { ns_->rename(txn, c.ino, "d", kRootIno, "a", kRenameExchange, at(90)); }),
            EINVAL);
  // Renaming over one's own ancestor: it is not empty.
  EXPECT_EQ(error_of([&] { ns_->rename(txn, c.ino, "d", kRootIno, "a", 0, at(90)); }), ENOTEMPTY);
  EXPECT_EQ(inode(txn, b.ino).parent, a.ino);
  EXPECT_EQ(inode(txn, a.ino).nlink, 3u);
  // Moving up or sideways is fine; files never loop.
  ns_->rename(txn, c.ino, "d", kRootIno, "d", 0, at(91));
  EXPECT_EQ(inode(txn, d.ino).parent, kRootIno);
  ns_->rename(txn, kRootIno, "f", d.ino, "f", 0, at(91));
  ns_->rename(txn, kRootIno, "a", d.ino, "a", 0, at(92));  // no longer an ancestor
  EXPECT_EQ(inode(txn, a.ino).parent, d.ino);
  EXPECT_EQ(inode(txn, d.ino).nlink, 3u);
  EXPECT_EQ(inode(txn, kRootIno).nlink, 3u);
}

TEST_F(NamespaceTest, ReaddirListsDotsThenEntriesAndResumesByCookie) {
  auto txn = write();
  Inode d = mkdir(txn, kRootIno, "d");
  std::vector<Inode> files;
  for (int i = 0; i < 5; ++i) files.push_back(mkfile(txn, d.ino, "f" + std::to_string(i)));
  auto all = list(txn, d.ino);
  ASSERT_EQ(all.size(), 7u);
  EXPECT_EQ(all[0].name, ".");
  EXPECT_EQ(all[0].ino, d.ino);
  EXPECT_EQ(all[0].cookie, 1u);
  EXPECT_EQ(all[0].d_type, DT_DIR);
  EXPECT_EQ(all[1].name, "..");
  EXPECT_EQ(all[1].ino, kRootIno);
  EXPECT_EQ(all[1].cookie, 2u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(all[i + 2].name, "f" + std::to_string(i));
    EXPECT_EQ(all[i + 2].ino, files[i].ino);
    EXPECT_EQ(all[i + 2].d_type, DT_REG);
    EXPECT_GT(all[i + 2].cookie, all[i + 1].cookie);
  }
  // Every cookie resumes right after its entry; a refused entry is not consumed.
  for (std::size_t i = 0; i < all.size(); ++i) {
    std::vector<std::string> rest;
    ns_->readdir(txn, d.ino, all[i].cookie, [&](const DirEntryView& e, std::uint64_t) {
      rest.emplace_back(e.name);
      return true;
    });
    ASSERT_EQ(rest.size(), all.size() - i - 1);
    if (!rest.empty()) {
      EXPECT_EQ(rest[0], all[i + 1].name);
    }
  }
  // A full buffer: the third entry is refused, so resuming after the second gives it again.
  int calls = 0;
  std::uint64_t resume = 0;
  ns_->readdir(txn, d.ino, 0, [&](const DirEntryView&, std::uint64_t next) {
    if (++calls == 3) return false;
    resume = next;
    return true;
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(resume, 2u);
  std::string first_after;
  ns_->readdir(txn, d.ino, resume, [&](const DirEntryView& e, std::uint64_t) {
    first_after = e.name;
    return false;
  });
  EXPECT_EQ(first_after, "f0");
  Inode f = mkfile(txn, kRootIno, "plain");
  EXPECT_EQ(error_of([&] { list(txn, f.ino); }), ENOTDIR);
  EXPECT_EQ(error_of([&] { list(txn, 999); }), ENOENT);
}

TEST_F(NamespaceTest, ReaddirIsStableWhileTheDirectoryChanges) {
  std::uint64_t dir;
  std::set<std::string> originals;
  {
    auto txn = write();
    dir = mkdir(txn, kRootIno, "d").ino;
    for (int i = 0; i < 60; ++i) {
      std::string name = "orig" + std::to_string(i);
      mkfile(txn, dir, name);
      originals.insert(name);
    }
    txn.commit();
  }
  std::multiset<std::string> seen;
  std::set<std::string> removed_unseen, added;
  std::uint64_t cookie = 0;
  int round = 0;
  for (bool done = false; !done; ++round) {
    {
      auto txn = read();
      int taken = 0;
      done = true;
      ns_->readdir(txn, dir, cookie, [&](const DirEntryView& e, std::uint64_t next) {
        if (taken == 7) {
          done = false;
          return false;
        }
        ++taken;
        seen.emplace(e.name);
        cookie = next;
        return true;
      });
    }
    if (done) break;
    auto txn = write();
    // Remove one name already listed and one not yet listed, add two new ones.
    for (const auto& name : originals) {
      bool listed = seen.count(name) > 0;
      if (!ns_->lookup(txn, dir, name)) continue;
      if (listed) {
        ns_->unlink(txn, dir, name, at(100));
        break;
      }
    }
    for (auto it = originals.rbegin(); it != originals.rend(); ++it) {
      if (!seen.count(*it) && !removed_unseen.count(*it) && ns_->lookup(txn, dir, *it)) {
        ns_->unlink(txn, dir, *it, at(100));
        removed_unseen.insert(*it);
        break;
      }
    }
    for (int k = 0; k < 2; ++k) {
      std::string name = "new" + std::to_string(round) + "-" + std::to_string(k);
      mkfile(txn, dir, name);
      added.insert(name);
    }
    txn.commit();
  }
  for (const auto& name : seen) EXPECT_EQ(seen.count(name), 1u) << name << " repeated";
  EXPECT_EQ(seen.count("."), 1u);
  EXPECT_EQ(seen.count(".."), 1u);
  for (const auto& name : originals) {
    if (removed_unseen.count(name)) {
      EXPECT_EQ(seen.count(name), 0u) << name << " was removed before it was reached";
    } else {
      EXPECT_EQ(seen.count(name), 1u) << name << " existed throughout but was skipped";
    }
  }
  // New names get later slots, so a listing still under way reaches them.
  for (const auto& name : added) EXPECT_EQ(seen.count(name), 1u) << name;
  EXPECT_GT(round, 5);
  EXPECT_FALSE(removed_unseen.empty());
}

TEST_F(NamespaceTest, AHundredThousandEntriesInOneDirectory) {
  constexpr int kCount = 100000;
  auto name_of = [](int i) { return "entry-" + std::to_string(i * 7919 % kCount); };
  auto start = std::chrono::steady_clock::now();
  std::uint64_t dir;
  std::vector<std::uint64_t> inos(kCount);
  {
    auto txn = write();
    dir = mkdir(txn, kRootIno, "big").ino;
    for (int i = 0; i < kCount; ++i) inos[i] = mkfile(txn, dir, name_of(i)).ino;
    txn.commit();
  }
  auto txn = read();
  std::mt19937_64 rng(testing::test_seed());
  for (int k = 0; k < 20000; ++k) {
    int i = static_cast<int>(rng() % kCount);
    auto e = ns_->lookup(txn, dir, name_of(i));
    ASSERT_TRUE(e) << name_of(i);
    ASSERT_EQ(e->ino, inos[i]);
    ASSERT_EQ(e->slot, static_cast<std::uint64_t>(i));
  }
  EXPECT_FALSE(ns_->lookup(txn, dir, "entry-100000"));
  std::size_t n = 0;
  std::uint64_t last_cookie = 0;
  bool in_order = true;
  ns_->readdir(txn, dir, 0, [&](const DirEntryView& e, std::uint64_t next) {
    if (n >= 2 && e.name != name_of(static_cast<int>(n - 2))) in_order = false;
    if (next <= last_cookie) in_order = false;
    last_cookie = next;
    ++n;
    return true;
  });
  EXPECT_EQ(n, kCount + 2u);
  EXPECT_TRUE(in_order);
  EXPECT_EQ(inode(txn, dir).next_slot, static_cast<std::uint64_t>(kCount));
  auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 15.0);
}

TEST_F(NamespaceTest, EverythingSurvivesClosingAndReopening) {
  Inode d, f, orphan;
  {
    auto txn = write();
    d = mkdir(txn, kRootIno, "d");
    f = mkfile(txn, d.ino, "f", 12);
    ns_->link(txn, f.ino, kRootIno, "f-link", at(13));
    orphan = mkfile(txn, kRootIno, "orphan");
    ns_->unlink(txn, kRootIno, "orphan", at(14));
    ns_->add_orphan(txn, orphan.ino);
    txn.commit();
  }
  {
    // An aborted transaction leaves no trace.
    auto txn = write();
    mkfile(txn, kRootIno, "aborted");
  }
  close();
  open();
  {
    auto txn = write();
    ns_->format(txn, 0700, 0, 0, at(99));  // a no-op on an existing namespace
    EXPECT_EQ(ino_of(txn, kRootIno, "d"), d.ino);
    EXPECT_EQ(ino_of(txn, d.ino, "f"), f.ino);
    EXPECT_EQ(ino_of(txn, kRootIno, "f-link"), f.ino);
    EXPECT_FALSE(ns_->lookup(txn, kRootIno, "aborted"));
    EXPECT_FALSE(ns_->lookup(txn, kRootIno, "orphan"));
    EXPECT_EQ(inode(txn, f.ino).nlink, 2u);
    EXPECT_EQ(inode(txn, f.ino).btime, at(12));
    EXPECT_EQ(inode(txn, kRootIno).nlink, 3u);
    EXPECT_EQ(inode(txn, kRootIno).mode, S_IFDIR | 0755u);
    EXPECT_EQ(ns_->orphans(txn), std::vector<std::uint64_t>{orphan.ino});
    EXPECT_EQ(names(txn, kRootIno), (std::vector<std::string>{"d", "f-link"}));
    // The counter survived: the aborted create's number is not handed out twice
    // either way, and nothing older is reused.
    EXPECT_GT(mkfile(txn, kRootIno, "after").ino, orphan.ino);
    EXPECT_EQ(names(txn, kRootIno), (std::vector<std::string>{"d", "f-link", "after"}));
  }
}

// A plain in-memory filesystem to compare the namespace against.
class Model {
 public:
  struct Node {
    bool dir = false;
    std::uint64_t nlink = 0;  // files only; a directory's is derived from its entries
    std::uint64_t parent = 0;
    std::map<std::string, std::uint64_t> entries;
  };

  Model() { nodes[kRootIno] = Node{true, 0, kRootIno, {}}; }

  std::uint64_t expected_nlink(std::uint64_t ino) const {
    const Node& n = nodes.at(ino);
    if (!n.dir) return n.nlink;
    std::uint64_t links = 2;
    for (const auto& [name, child] : n.entries) links += nodes.at(child).dir;
    return links;
  }
  bool is_ancestor(std::uint64_t ancestor, std::uint64_t dir) const {
    for (;;) {
      if (dir == ancestor) return true;
      if (dir == kRootIno) return false;
      dir = nodes.at(dir).parent;
    }
  }
  std::optional<std::uint64_t> find(std::uint64_t dir, const std::string& name) const {
    const auto& e = nodes.at(dir).entries;
    auto it = e.find(name);
    if (it == e.end()) return std::nullopt;
    return it->second;
  }

  // The errno rename should fail with, applying it when it succeeds.
  int rename(std::uint64_t op, const std::string& on, std::uint64_t np, const std::string& nn,
             unsigned flags, std::optional<std::uint64_t>& replaced) {
    auto src = find(op, on);
    if (!src) return ENOENT;
    auto dst = find(np, nn);
    if ((flags & kRenameNoReplace) && dst) return EEXIST;
    if ((flags & kRenameExchange) && !dst) return ENOENT;
    if (dst && *dst == *src) return 0;
    bool src_dir = nodes.at(*src).dir;
    bool dst_dir = dst && nodes.at(*dst).dir;
    if (src_dir && op != np && is_ancestor(*src, np)) return EINVAL;
    if (dst_dir && op != np && is_ancestor(*dst, op)) {
      return (flags & kRenameExchange) ? EINVAL : ENOTEMPTY;
    }
    if (flags & kRenameExchange) {
      nodes[op].entries[on] = *dst;
      nodes[np].entries[nn] = *src;
      if (src_dir) nodes[*src].parent = np;
      if (dst_dir) nodes[*dst].parent = op;
      return 0;
    }
    if (dst) {
      if (src_dir && !dst_dir) return ENOTDIR;
      if (!src_dir && dst_dir) return EISDIR;
      if (dst_dir && !nodes.at(*dst).entries.empty()) return ENOTEMPTY;
      if (dst_dir) {
        nodes.erase(*dst);  // gone from the model; the test frees the inode
        replaced = *dst;
      } else {
        --nodes[*dst].nlink;
        replaced = *dst;
      }
    }
    nodes[op].entries.erase(on);
    nodes[np].entries[nn] = *src;
    if (src_dir) nodes[*src].parent = np;
    return 0;
  }

  std::map<std::uint64_t, Node> nodes;  // live inodes, orphans included until freed
  std::set<std::uint64_t> orphans;
};

TEST_F(NamespaceTest, RandomOperationsMatchAnInMemoryModel) {
  std::mt19937_64 rng(testing::test_seed());
  Model model;
  const std::vector<std::string> pool = {"a", "b", "c", "d", "e", "f", "g", "\xff\x7f"};
  auto pick_name = [&] { return pool[rng() % pool.size()]; };
  auto pick = [&](bool want_dir) -> std::optional<std::uint64_t> {
    std::vector<std::uint64_t> c;
    for (const auto& [ino, n] : model.nodes) {
      if (n.dir == want_dir && (n.dir || n.nlink > 0)) c.push_back(ino);
    }
    if (c.empty()) return std::nullopt;
    return c[rng() % c.size()];
  };
  auto verify = [&](const LmdbTxn& txn, int step) {
    for (const auto& [ino, n] : model.nodes) {
      auto got = ns_->get(txn, ino);
      ASSERT_TRUE(got) << "step " << step << " inode " << ino;
      ASSERT_EQ(got->nlink, model.expected_nlink(ino)) << "step " << step << " inode " << ino;
      ASSERT_EQ(got->is_dir(), n.dir);
      if (!n.dir) continue;
      ASSERT_EQ(got->parent, n.parent) << "step " << step << " inode " << ino;
      std::map<std::string, std::uint64_t> listed;
      std::vector<std::string> dots;
      std::uint64_t last = 0;
      ns_->readdir(txn, ino, 0, [&](const DirEntryView& e, std::uint64_t next) {
        EXPECT_GT(next, last);
        last = next;
        if (e.name == "." || e.name == "..") {
          dots.emplace_back(e.name);
          EXPECT_EQ(e.ino, e.name == "." ? ino : n.parent);
        } else {
          EXPECT_TRUE(listed.emplace(std::string(e.name), e.ino).second) << "repeated " << e.name;
          EXPECT_EQ(e.d_type, model.nodes.at(e.ino).dir ? DT_DIR : DT_REG);
        }
        return true;
      });
      ASSERT_EQ(listed, n.entries) << "step " << step << " dir " << ino;
      ASSERT_EQ(dots, (std::vector<std::string>{".", ".."}));
      for (const auto& [name, child] : n.entries) {
        auto e = ns_->lookup(txn, ino, name);
        ASSERT_TRUE(e);
        ASSERT_EQ(e->ino, child);
      }
      ASSERT_EQ(ns_->lookup(txn, ino, "..")->ino, n.parent);
    }
    auto orphans = ns_->orphans(txn);
    ASSERT_EQ(std::set<std::uint64_t>(orphans.begin(), orphans.end()), model.orphans);
  };
  auto lost_a_link = [&](LmdbTxn& txn, std::uint64_t ino) {
    if (model.nodes.at(ino).nlink == 0) {
      ns_->add_orphan(txn, ino);
      model.orphans.insert(ino);
    }
  };

  constexpr int kOps = 20000;
  std::map<std::string, int> successes;
  std::map<int, int> rename_outcomes;  // by errno, 0 for success
  auto txn = std::make_unique<LmdbTxn>(write());
  for (int step = 1; step <= kOps; ++step) {
    Timespec now = at(1000 + step);
    std::uint64_t dir = *pick(true);
    std::string name = pick_name();
    // Half the time an existing name, so removals and renames mostly find something.
    const auto& entries = model.nodes.at(dir).entries;
    if (!entries.empty() && rng() % 2 == 0) {
      name = std::next(entries.begin(), static_cast<long>(rng() % entries.size()))->first;
    }
    int op = static_cast<int>(rng() % 100);
    int want = 0, got = 0;
    std::string kind;
    if (op < 20) {
      kind = "create";
      want = model.find(dir, name) ? EEXIST : 0;
      Inode made;
      got = error_of([&] { made = mkfile(*txn, dir, name); });
      if (want == 0 && got == 0) {
        model.nodes[made.ino] = Model::Node{false, 1, 0, {}};
        model.nodes[dir].entries[name] = made.ino;
      }
    } else if (op < 32) {
      kind = "mkdir";
      std::size_t dirs = 0;
      for (const auto& [ino, n] : model.nodes) dirs += n.dir;
      if (dirs > 40) continue;
      want = model.find(dir, name) ? EEXIST : 0;
      Inode made;
      got = error_of([&] { made = mkdir(*txn, dir, name); });
      if (want == 0 && got == 0) {
        model.nodes[made.ino] = Model::Node{true, 0, dir, {}};
        model.nodes[dir].entries[name] = made.ino;
      }
    } else if (op < 44) {
      kind = "link";
      auto target = pick(rng() % 8 != 0 ? false : true);
      if (!target) continue;
      want = model.nodes.at(*target).dir ? EPERM : model.find(dir, name) ? EEXIST : 0;
      got = error_of([&] { ns_->link(*txn, *target, dir, name, now); });
      if (want == 0 && got == 0) {
        ++model.nodes[*target].nlink;
        model.nodes[dir].entries[name] = *target;
      }
    } else if (op < 60) {
      kind = "unlink";
      auto child = model.find(dir, name);
      want = !child ? ENOENT : model.nodes.at(*child).dir ? EISDIR : 0;
      UnlinkResult r{};
      got = error_of([&] { r = ns_->unlink(*txn, dir, name, now); });
      if (want == 0 && got == 0) {
        --model.nodes[*child].nlink;
        model.nodes[dir].entries.erase(name);
        EXPECT_EQ(r.ino, *child);
        EXPECT_EQ(r.nlink, model.nodes[*child].nlink);
        lost_a_link(*txn, *child);
      }
    } else if (op < 70) {
      kind = "rmdir";
      std::vector<std::string> subdirs;
      for (const auto& [n, ino] : entries) {
        if (model.nodes.at(ino).dir) subdirs.push_back(n);
      }
      if (!subdirs.empty() && rng() % 4 != 0) name = subdirs[rng() % subdirs.size()];
      auto child = model.find(dir, name);
      want = !child                                    ? ENOENT
             : !model.nodes.at(*child).dir             ? ENOTDIR
             : !model.nodes.at(*child).entries.empty() ? ENOTEMPTY
                                                       : 0;
      got = error_of([&] { ns_->rmdir(*txn, dir, name, now); });
      if (want == 0 && got == 0) {
        ns_->free_inode(*txn, *child);
        model.nodes.erase(*child);
        model.nodes[dir].entries.erase(name);
      }
    } else if (op < 92) {
      kind = "rename";
      std::uint64_t to_dir = rng() % 3 == 0 ? dir : *pick(true);
      std::string to_name = pick_name();
      unsigned flags = rng() % 4 == 0 ? kRenameExchange : rng() % 4 == 0 ? kRenameNoReplace : 0;
      std::optional<std::uint64_t> replaced;
      Model before = model;
      want = model.rename(dir, name, to_dir, to_name, flags, replaced);
      RenameResult r;
      got = error_of([&] { r = ns_->rename(*txn, dir, name, to_dir, to_name, flags, now); });
      if (want != 0 || got != 0) {
        model = before;
      } else {
        EXPECT_EQ(r.replaced_ino, replaced) << "step " << step;
        if (replaced && !model.nodes.contains(*replaced)) {  // a replaced directory
          EXPECT_EQ(r.replaced_nlink, 0u);
          ns_->free_inode(*txn, *replaced);
        } else if (replaced) {
          EXPECT_EQ(r.replaced_nlink, model.nodes.at(*replaced).nlink);
          lost_a_link(*txn, *replaced);
        }
      }
    } else if (op < 97) {
      // Unlinks every file in the directory so that rmdir has empty directories to take.
      kind = "empty";
      auto copy = entries;
      for (const auto& [n, ino] : copy) {
        if (model.nodes.at(ino).dir) continue;
        auto r = ns_->unlink(*txn, dir, n, now);
        --model.nodes[ino].nlink;
        model.nodes[dir].entries.erase(n);
        EXPECT_EQ(r.nlink, model.nodes[ino].nlink);
        lost_a_link(*txn, ino);
      }
    } else {
      kind = "free orphans";
      for (std::uint64_t ino : model.orphans) {
        ns_->free_inode(*txn, ino);
        model.nodes.erase(ino);
      }
      model.orphans.clear();
    }
    ASSERT_EQ(got, want) << "step " << step << ": " << kind << " in " << dir << " of " << name;
    if (got == 0) ++successes[kind];
    if (kind == "rename") ++rename_outcomes[got];
    if (step % 400 == 0) {
      verify(*txn, step);
      if (::testing::Test::HasFatalFailure()) return;
      txn->commit();
      txn = std::make_unique<LmdbTxn>(write());
    }
  }
  txn->commit();
  verify(read(), kOps);
  // The mix really exercised every operation.
  for (const auto& [kind, n] : successes) std::printf("%s: %d successful\n", kind.c_str(), n);
  for (const char* kind : {"create", "mkdir", "link", "unlink", "rmdir", "rename"}) {
    EXPECT_GT(successes[kind], 50) << kind;
  }
  for (int code : {0, ENOENT, EEXIST, EINVAL, ENOTEMPTY, ENOTDIR, EISDIR}) {
    std::printf("rename errno %d: %d times\n", code, rename_outcomes[code]);
    EXPECT_GT(rename_outcomes[code], 0) << "rename never gave errno " << code;
  }
}

}  // namespace
}  // namespace casfs
