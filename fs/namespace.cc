#include "fs/namespace.h"

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "fs/fs_error.h"
#include "store/byte_order.h"

namespace casfs {

namespace {

constexpr std::size_t kDirentValueSize = 17;  // ino, d_type, slot
constexpr std::size_t kSlotValueHeader = 9;   // ino, d_type; the name follows
// Deeper than any real tree; past it the parent chain must be a cycle (damage).
constexpr int kMaxDepth = 1 << 20;

std::array<std::byte, 8> ino_key(std::uint64_t ino) {
  std::array<std::byte, 8> k;
  put_be64(k.data(), ino);
  return k;
}

class DirentKey {
 public:
  DirentKey(std::uint64_t parent, std::string_view name) : size_(8 + name.size()) {
    put_be64(buf_.data(), parent);
    std::memcpy(buf_.data() + 8, name.data(), name.size());
  }
  Bytes bytes() const { return {buf_.data(), size_}; }

 private:
  std::array<std::byte, 8 + kMaxNameLength> buf_;
  std::size_t size_;
};

std::array<std::byte, 16> slot_key(std::uint64_t parent, std::uint64_t slot) {
  std::array<std::byte, 16> k;
  put_be64(k.data(), parent);
  put_be64(k.data() + 8, slot);
  return k;
}

std::string quote(std::string_view name) {
  return "\"" + std::string(name) + "\"";
}

// The name rules every operation that makes a name shares. Dot names are refused by
// the callers, each with the errno Linux uses for that call.
void check_name(std::string_view name) {
  if (name.empty()) throw FsError(ENOENT, "empty file name");
  if (name.size() > kMaxNameLength) {
    throw FsError(ENAMETOOLONG, "file name of " + std::to_string(name.size()) +
                                    " bytes is longer than " + std::to_string(kMaxNameLength));
  }
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    throw FsError(EINVAL, "file name " + quote(name) + " contains '/' or NUL");
  }
}

bool is_dot(std::string_view name) {
  return name == "." || name == "..";
}

void touch_dir(Inode& dir, Timespec now) {
  dir.mtime = now;
  dir.ctime = now;
}

bool known_type(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFIFO:
    case S_IFSOCK:
    case S_IFCHR:
    case S_IFBLK:
      return true;
    default:
      return false;
  }
}

}  // namespace

Namespace::Namespace(LmdbEnv& env)
    : inodes_(env.open_db("inodes")),
      dirents_(env.open_db("dirents")),
      dirslots_(env.open_db("dirslots")),
      orphans_(env.open_db("orphans")),
      meta_(env.open_db("fs_meta")) {}

void Namespace::format(LmdbTxn& txn, std::uint32_t root_mode, std::uint32_t uid, std::uint32_t gid,
                       Timespec now) {
  std::array<std::byte, 4> version;
  if (auto v = txn.get(meta_, as_bytes("format_version"))) {
    if (v->size() != 4 || get_le<std::uint32_t>(v->data()) != kFormatVersion) {
      throw FsError(EIO, "namespace has an unknown format version");
    }
  } else {
    put_le<std::uint32_t>(version.data(), kFormatVersion);
    txn.put(meta_, as_bytes("format_version"), version);
  }
  if (!txn.get(meta_, as_bytes("next_ino"))) {
    std::array<std::byte, 8> next;
    put_le<std::uint64_t>(next.data(), kRootIno + 1);
    txn.put(meta_, as_bytes("next_ino"), next);
  }
  if (get(txn, kRootIno)) return;
  Inode root;
  root.ino = kRootIno;
  root.mode = S_IFDIR | (root_mode & 07777);
  root.uid = uid;
  root.gid = gid;
  root.nlink = 2;
  root.parent = kRootIno;
  root.atime = root.mtime = root.ctime = root.btime = now;
  put(txn, root);
}

std::optional<Inode> Namespace::get(const LmdbTxn& txn, std::uint64_t ino) const {
  auto v = txn.get(inodes_, ino_key(ino));
  if (!v) return std::nullopt;
  return Inode::decode(*v);
}

void Namespace::put(LmdbTxn& txn, const Inode& inode) {
  auto v = inode.encode();
  txn.put(inodes_, ino_key(inode.ino), v);
}

Inode Namespace::must_get(const LmdbTxn& txn, std::uint64_t ino) const {
  auto inode = get(txn, ino);
  if (!inode) throw FsError(ENOENT, "inode " + std::to_string(ino) + " does not exist");
  return *inode;
}

Inode Namespace::must_get_dir(const LmdbTxn& txn, std::uint64_t ino) const {
  Inode dir = must_get(txn, ino);
  if (!dir.is_dir()) throw FsError(ENOTDIR, "inode " + std::to_string(ino) + " is not a directory");
  // A removed directory still open somewhere: nothing is found in it or added to it.
  if (dir.nlink == 0) throw FsError(ENOENT, "directory " + std::to_string(ino) + " was removed");
  return dir;
}

std::optional<DirEntry> Namespace::find(const LmdbTxn& txn, std::uint64_t parent,
                                        std::string_view name) const {
  if (name.empty() || name.size() > kMaxNameLength) return std::nullopt;
  auto v = txn.get(dirents_, DirentKey(parent, name).bytes());
  if (!v) return std::nullopt;
  if (v->size() != kDirentValueSize) {
    throw FsError(
        EIO, "directory entry " + quote(name) + " in " + std::to_string(parent) + " is damaged");
  }
  return DirEntry{get_le<std::uint64_t>(v->data()), static_cast<std::uint8_t>((*v)[8]),
                  get_le<std::uint64_t>(v->data() + 9)};
}

std::optional<DirEntry> Namespace::lookup(const LmdbTxn& txn, std::uint64_t parent,
                                          std::string_view name) const {
  Inode dir = must_get_dir(txn, parent);
  if (name.size() > kMaxNameLength) {
    throw FsError(ENAMETOOLONG, "file name of " + std::to_string(name.size()) + " bytes");
  }
  if (name == ".") return DirEntry{dir.ino, d_type_of(S_IFDIR), 0};
  if (name == "..") return DirEntry{dir.parent, d_type_of(S_IFDIR), 0};
  return find(txn, parent, name);
}

bool Namespace::is_empty_dir(const LmdbTxn& txn, std::uint64_t dir) const {
  LmdbCursor cursor(txn, dirslots_);
  auto prefix = ino_key(dir);
  if (!cursor.seek(prefix)) return true;
  Bytes key = cursor.key();
  return key.size() < 8 || std::memcmp(key.data(), prefix.data(), 8) != 0;
}

bool Namespace::is_ancestor(const LmdbTxn& txn, std::uint64_t ancestor, std::uint64_t dir) const {
  for (int depth = 0; depth < kMaxDepth; ++depth) {
    if (dir == ancestor) return true;
    if (dir == kRootIno) return false;
    dir = must_get(txn, dir).parent;
  }
  throw FsError(EIO, "directory parent chain does not reach the root");
}

std::uint64_t Namespace::allocate_ino(LmdbTxn& txn) {
  auto v = txn.get(meta_, as_bytes("next_ino"));
  if (!v || v->size() != 8) throw FsError(EIO, "namespace is not formatted (no inode counter)");
  std::uint64_t ino = get_le<std::uint64_t>(v->data());
  std::array<std::byte, 8> next;
  put_le<std::uint64_t>(next.data(), ino + 1);
  txn.put(meta_, as_bytes("next_ino"), next);
  return ino;
}

void Namespace::write_entry(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                            const DirEntry& entry) {
  std::array<std::byte, kDirentValueSize> v;
  put_le<std::uint64_t>(v.data(), entry.ino);
  v[8] = std::byte{entry.d_type};
  put_le<std::uint64_t>(v.data() + 9, entry.slot);
  txn.put(dirents_, DirentKey(parent, name).bytes(), v);

  std::array<std::byte, kSlotValueHeader + kMaxNameLength> s;
  put_le<std::uint64_t>(s.data(), entry.ino);
  s[8] = std::byte{entry.d_type};
  std::memcpy(s.data() + kSlotValueHeader, name.data(), name.size());
  txn.put(dirslots_, slot_key(parent, entry.slot), Bytes(s.data(), kSlotValueHeader + name.size()));
}

void Namespace::add_entry(LmdbTxn& txn, Inode& dir, std::string_view name, std::uint64_t ino,
                          std::uint8_t d_type) {
  write_entry(txn, dir.ino, name, DirEntry{ino, d_type, dir.next_slot++});
}

void Namespace::remove_entry(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                             const DirEntry& entry) {
  txn.del(dirents_, DirentKey(parent, name).bytes());
  txn.del(dirslots_, slot_key(parent, entry.slot));
}

Inode Namespace::create(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                        std::uint32_t mode, std::uint32_t uid, std::uint32_t gid,
                        std::uint64_t rdev, Timespec now) {
  Inode dir = must_get_dir(txn, parent);
  check_name(name);
  if (is_dot(name)) throw FsError(EINVAL, "cannot create " + quote(name));
  if ((mode & S_IFMT) == 0) mode |= S_IFREG;  // as mknod does
  if (!known_type(mode)) throw FsError(EINVAL, "unknown file type in mode " + std::to_string(mode));
  if (find(txn, parent, name)) throw FsError(EEXIST, quote(name) + " already exists");
  Inode inode;
  inode.mode = mode;
  if (inode.is_dir() && dir.nlink >= kMaxLinks) {
    throw FsError(EMLINK, "directory " + std::to_string(parent) + " has too many subdirectories");
  }
  inode.ino = allocate_ino(txn);
  inode.uid = uid;
  inode.gid = gid;
  inode.rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
  inode.atime = inode.mtime = inode.ctime = inode.btime = now;
  if (inode.is_dir()) {
    inode.nlink = 2;  // its name and its own "."
    inode.parent = parent;
    ++dir.nlink;  // the new directory's ".."
  } else {
    inode.nlink = 1;
  }
  put(txn, inode);
  add_entry(txn, dir, name, inode.ino, d_type_of(mode));
  touch_dir(dir, now);
  put(txn, dir);
  return inode;
}

void Namespace::link(LmdbTxn& txn, std::uint64_t ino, std::uint64_t new_parent,
                     std::string_view new_name, Timespec now) {
  Inode inode = must_get(txn, ino);
  Inode dir = must_get_dir(txn, new_parent);
  check_name(new_name);
  if (is_dot(new_name)) throw FsError(EEXIST, quote(new_name) + " already exists");
  if (inode.is_dir()) throw FsError(EPERM, "cannot hard-link a directory");
  // A file whose last name is gone cannot get a new one (linkat on an unlinked file).
  if (inode.nlink == 0) throw FsError(ENOENT, "inode " + std::to_string(ino) + " was deleted");
  if (inode.nlink >= kMaxLinks) throw FsError(EMLINK, "too many links to " + std::to_string(ino));
  if (find(txn, new_parent, new_name)) throw FsError(EEXIST, quote(new_name) + " already exists");
  ++inode.nlink;
  inode.ctime = now;
  put(txn, inode);
  add_entry(txn, dir, new_name, ino, d_type_of(inode.mode));
  touch_dir(dir, now);
  put(txn, dir);
}

UnlinkResult Namespace::unlink(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                               Timespec now) {
  Inode dir = must_get_dir(txn, parent);
  check_name(name);
  if (is_dot(name)) throw FsError(EISDIR, "cannot unlink " + quote(name));
  auto entry = find(txn, parent, name);
  if (!entry) throw FsError(ENOENT, quote(name) + " does not exist");
  Inode inode = must_get(txn, entry->ino);
  if (inode.is_dir()) throw FsError(EISDIR, quote(name) + " is a directory");
  remove_entry(txn, parent, name, *entry);
  --inode.nlink;
  inode.ctime = now;
  put(txn, inode);
  touch_dir(dir, now);
  put(txn, dir);
  return UnlinkResult{inode.ino, inode.nlink};
}

std::uint64_t Namespace::rmdir(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                               Timespec now) {
  Inode dir = must_get_dir(txn, parent);
  check_name(name);
  if (name == ".") throw FsError(EINVAL, "cannot remove \".\"");
  if (name == "..") throw FsError(ENOTEMPTY, "cannot remove \"..\"");
  auto entry = find(txn, parent, name);
  if (!entry) throw FsError(ENOENT, quote(name) + " does not exist");
  Inode victim = must_get(txn, entry->ino);
  if (!victim.is_dir()) throw FsError(ENOTDIR, quote(name) + " is not a directory");
  if (victim.ino == kRootIno) throw FsError(EBUSY, "cannot remove the root directory");
  if (!is_empty_dir(txn, victim.ino)) throw FsError(ENOTEMPTY, quote(name) + " is not empty");
  remove_entry(txn, parent, name, *entry);
  --dir.nlink;  // the removed directory's ".."
  touch_dir(dir, now);
  put(txn, dir);
  victim.nlink = 0;
  victim.ctime = now;
  put(txn, victim);
  return victim.ino;
}

RenameResult Namespace::rename(LmdbTxn& txn, std::uint64_t old_parent, std::string_view old_name,
                               std::uint64_t new_parent, std::string_view new_name, unsigned flags,
                               Timespec now) {
  if ((flags & ~(kRenameNoReplace | kRenameExchange)) != 0 ||
      flags == (kRenameNoReplace | kRenameExchange)) {
    throw FsError(EINVAL, "unknown rename flags " + std::to_string(flags));
  }
  Inode old_dir = must_get_dir(txn, old_parent);
  Inode new_dir_storage;
  const bool same_dir = old_parent == new_parent;
  if (!same_dir) new_dir_storage = must_get_dir(txn, new_parent);
  Inode& new_dir = same_dir ? old_dir : new_dir_storage;
  check_name(old_name);
  check_name(new_name);
  if (is_dot(old_name) || is_dot(new_name)) throw FsError(EBUSY, "cannot rename \".\" or \"..\"");

  auto src = find(txn, old_parent, old_name);
  if (!src) throw FsError(ENOENT, quote(old_name) + " does not exist");
  auto dst = find(txn, new_parent, new_name);
  if ((flags & kRenameNoReplace) && dst) throw FsError(EEXIST, quote(new_name) + " exists");
  if ((flags & kRenameExchange) && !dst) throw FsError(ENOENT, quote(new_name) + " does not exist");
  // Two names of one inode (or one name twice): POSIX says do nothing.
  if (dst && dst->ino == src->ino) return {};

  Inode src_inode = must_get(txn, src->ino);
  std::optional<Inode> dst_inode;
  if (dst) dst_inode = must_get(txn, dst->ino);
  const bool src_is_dir = src_inode.is_dir();
  const bool dst_is_dir = dst_inode && dst_inode->is_dir();

  // A directory cannot move below itself; the kernel's checks, in its order.
  if (src_is_dir && !same_dir && is_ancestor(txn, src->ino, new_parent)) {
    throw FsError(EINVAL, "cannot move a directory into itself");
  }
  if (dst_is_dir && !same_dir && is_ancestor(txn, dst->ino, old_parent)) {
    if (flags & kRenameExchange) throw FsError(EINVAL, "cannot move a directory into itself");
    throw FsError(ENOTEMPTY, quote(new_name) + " is not empty");
  }

  RenameResult result;
  if (flags & kRenameExchange) {
    if (!same_dir && src_is_dir != dst_is_dir) {
      Inode& gains = src_is_dir ? new_dir : old_dir;  // the side the directory moves to
      if (gains.nlink >= kMaxLinks) throw FsError(EMLINK, "too many subdirectories");
      ++gains.nlink;
      --(src_is_dir ? old_dir : new_dir).nlink;
    }
    // The names and their slots stay; only the inodes behind them swap, as ext4 does.
    write_entry(txn, old_parent, old_name, DirEntry{dst->ino, dst->d_type, src->slot});
    write_entry(txn, new_parent, new_name, DirEntry{src->ino, src->d_type, dst->slot});
    if (src_is_dir) src_inode.parent = new_parent;
    if (dst_is_dir) dst_inode->parent = old_parent;
    src_inode.ctime = now;
    dst_inode->ctime = now;
    put(txn, src_inode);
    put(txn, *dst_inode);
  } else {
    if (dst) {
      if (src_is_dir && !dst_is_dir)
        throw FsError(ENOTDIR, quote(new_name) + " is not a directory");
      if (!src_is_dir && dst_is_dir) throw FsError(EISDIR, quote(new_name) + " is a directory");
      if (dst_is_dir && !is_empty_dir(txn, dst->ino)) {
        throw FsError(ENOTEMPTY, quote(new_name) + " is not empty");
      }
    }
    if (src_is_dir && !same_dir && !dst_is_dir && new_dir.nlink >= kMaxLinks) {
      throw FsError(EMLINK, "too many subdirectories");
    }
    // Checks are done; from here on nothing throws for a reason the caller could cause.
    remove_entry(txn, old_parent, old_name, *src);
    if (dst) {
      remove_entry(txn, new_parent, new_name, *dst);
      if (dst_is_dir) {
        --new_dir.nlink;  // the replaced directory's ".."
        dst_inode->nlink = 0;
        dst_inode->ctime = now;
        put(txn, *dst_inode);
        result.replaced_ino = dst->ino;
        result.replaced_nlink = 0;
      } else {
        --dst_inode->nlink;
        dst_inode->ctime = now;
        put(txn, *dst_inode);
        result.replaced_ino = dst->ino;
        result.replaced_nlink = dst_inode->nlink;
      }
    }
    if (src_is_dir && !same_dir) {
      --old_dir.nlink;
      ++new_dir.nlink;
      src_inode.parent = new_parent;
    }
    // A new slot, so a listing under way sees the entry again rather than never.
    add_entry(txn, new_dir, new_name, src->ino, src->d_type);
    src_inode.ctime = now;
    put(txn, src_inode);
  }
  touch_dir(old_dir, now);
  put(txn, old_dir);
  if (!same_dir) {
    touch_dir(new_dir, now);
    put(txn, new_dir);
  }
  return result;
}

void Namespace::readdir(
    const LmdbTxn& txn, std::uint64_t dir, std::uint64_t cookie,
    const std::function<bool(const DirEntryView& entry, std::uint64_t next_cookie)>& emit) const {
  Inode inode = must_get(txn, dir);
  if (!inode.is_dir())
    throw FsError(ENOTDIR, "inode " + std::to_string(dir) + " is not a directory");
  if (inode.nlink == 0) return;  // removed while open: empty, not even "." and "..", as on ext4
  if (cookie == 0 && !emit(DirEntryView{inode.ino, d_type_of(S_IFDIR), "."}, 1)) return;
  if (cookie <= 1 && !emit(DirEntryView{inode.parent, d_type_of(S_IFDIR), ".."}, 2)) return;
  std::uint64_t first_slot = cookie <= 2 ? 0 : cookie - 2;  // the slot after cookie - 3
  LmdbCursor cursor(txn, dirslots_);
  auto start = slot_key(dir, first_slot);
  for (bool ok = cursor.seek(start); ok; ok = cursor.next()) {
    Bytes key = cursor.key();
    if (key.size() != 16 || get_be64(key.data()) != dir) return;
    Bytes v = cursor.value();
    if (v.size() < kSlotValueHeader) {
      throw FsError(EIO, "directory slot in " + std::to_string(dir) + " is damaged");
    }
    std::uint64_t slot = get_be64(key.data() + 8);
    DirEntryView entry{get_le<std::uint64_t>(v.data()), static_cast<std::uint8_t>(v[8]),
                       std::string_view(reinterpret_cast<const char*>(v.data()) + kSlotValueHeader,
                                        v.size() - kSlotValueHeader)};
    if (!emit(entry, slot + 3)) return;
  }
}

void Namespace::add_orphan(LmdbTxn& txn, std::uint64_t ino) {
  txn.put(orphans_, ino_key(ino), Bytes{});
}

void Namespace::remove_orphan(LmdbTxn& txn, std::uint64_t ino) {
  txn.del(orphans_, ino_key(ino));
}

std::vector<std::uint64_t> Namespace::orphans(const LmdbTxn& txn) const {
  std::vector<std::uint64_t> out;
  LmdbCursor cursor(txn, orphans_);
  for (bool ok = cursor.first(); ok; ok = cursor.next()) {
    if (cursor.key().size() != 8) throw FsError(EIO, "orphan record is damaged");
    out.push_back(get_be64(cursor.key().data()));
  }
  return out;
}

void Namespace::free_inode(LmdbTxn& txn, std::uint64_t ino) {
  if (!txn.del(inodes_, ino_key(ino))) {
    throw FsError(ENOENT, "inode " + std::to_string(ino) + " does not exist");
  }
  txn.del(orphans_, ino_key(ino));
}

std::uint64_t Namespace::inode_count(const LmdbTxn& txn) const {
  MDB_stat stat;
  check_mdb(mdb_stat(txn.get(), inodes_, &stat), "mdb_stat");
  return stat.ms_entries;
}

// --- for fsck ---------------------------------------------------------------

void Namespace::for_each_inode(
    const LmdbTxn& txn,
    const std::function<void(std::uint64_t ino, const Inode* inode)>& visit) const {
  LmdbCursor cursor(txn, inodes_);
  for (bool ok = cursor.first(); ok; ok = cursor.next()) {
    if (cursor.key().size() != 8) throw FsError(EIO, "inode table has a malformed key");
    const std::uint64_t ino = get_be64(cursor.key().data());
    std::optional<Inode> inode;
    try {
      inode = Inode::decode(cursor.value());
    } catch (const FsError&) {
      // Reported to the visitor as a record that does not decode.
    }
    visit(ino, inode ? &*inode : nullptr);
  }
}

void Namespace::for_each_dirent(
    const LmdbTxn& txn,
    const std::function<void(std::uint64_t parent, std::string_view name, const DirEntry* entry)>&
        visit) const {
  LmdbCursor cursor(txn, dirents_);
  for (bool ok = cursor.first(); ok; ok = cursor.next()) {
    Bytes key = cursor.key();
    if (key.size() < 8) throw FsError(EIO, "directory entry table has a malformed key");
    std::string_view name(reinterpret_cast<const char*>(key.data()) + 8, key.size() - 8);
    Bytes v = cursor.value();
    if (v.size() != kDirentValueSize) {
      visit(get_be64(key.data()), name, nullptr);
      continue;
    }
    DirEntry entry{get_le<std::uint64_t>(v.data()), static_cast<std::uint8_t>(v[8]),
                   get_le<std::uint64_t>(v.data() + 9)};
    visit(get_be64(key.data()), name, &entry);
  }
}

void Namespace::for_each_dirslot(
    const LmdbTxn& txn,
    const std::function<void(std::uint64_t parent, std::uint64_t slot, const DirEntryView* entry)>&
        visit) const {
  LmdbCursor cursor(txn, dirslots_);
  for (bool ok = cursor.first(); ok; ok = cursor.next()) {
    Bytes key = cursor.key();
    if (key.size() != 16) throw FsError(EIO, "directory slot table has a malformed key");
    const std::uint64_t parent = get_be64(key.data());
    const std::uint64_t slot = get_be64(key.data() + 8);
    Bytes v = cursor.value();
    if (v.size() < kSlotValueHeader) {
      visit(parent, slot, nullptr);
      continue;
    }
    DirEntryView entry{get_le<std::uint64_t>(v.data()), static_cast<std::uint8_t>(v[8]),
                       std::string_view(reinterpret_cast<const char*>(v.data()) + kSlotValueHeader,
                                        v.size() - kSlotValueHeader)};
    visit(parent, slot, &entry);
  }
}

std::optional<std::uint32_t> Namespace::format_version(const LmdbTxn& txn) const {
  auto v = txn.get(meta_, as_bytes("format_version"));
  if (!v) return std::nullopt;
  return v->size() == 4 ? get_le<std::uint32_t>(v->data()) : 0;  // 0: malformed, unknown
}

std::optional<std::uint64_t> Namespace::next_ino(const LmdbTxn& txn) const {
  auto v = txn.get(meta_, as_bytes("next_ino"));
  if (!v || v->size() != 8) return std::nullopt;
  return get_le<std::uint64_t>(v->data());
}

void Namespace::set_next_ino(LmdbTxn& txn, std::uint64_t ino) {
  std::array<std::byte, 8> next;
  put_le<std::uint64_t>(next.data(), ino);
  txn.put(meta_, as_bytes("next_ino"), next);
}

void Namespace::put_entry(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                          const DirEntry& entry) {
  check_name(name);
  write_entry(txn, parent, name, entry);
}

void Namespace::erase_dirent(LmdbTxn& txn, std::uint64_t parent, std::string_view name) {
  // Any length: a damaged table may hold names no operation would have made.
  std::vector<std::byte> key(8 + name.size());
  put_be64(key.data(), parent);
  std::memcpy(key.data() + 8, name.data(), name.size());
  txn.del(dirents_, key);
}

void Namespace::erase_dirslot(LmdbTxn& txn, std::uint64_t parent, std::uint64_t slot) {
  txn.del(dirslots_, slot_key(parent, slot));
}

}  // namespace casfs
