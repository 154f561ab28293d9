// Filesystem: start-up, the live-inode table, and the operations on names,
// attributes and extended attributes. File contents are in file_contents.cc.
#include "fs/filesystem.h"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "fs/fs_error.h"
#include "fs/posix_acl.h"
#include "store/log.h"

namespace casfs {

Timespec now_timespec() {
  // The kernel's clock for file times (current_time(): the coarse clock, one tick of
  // resolution; since Linux 6.13 at times a little later, when another filesystem
  // asked the kernel for a fine-grained time in the same tick), so that casfs's times
  // and the kernel's mostly agree. It also saves a round trip per new file: a write in
  // the tick of the file's creation finds times that are already "now" and leaves them
  // alone, so the kernel has no times to send back before the next chown, chmod or
  // utimes.
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return Timespec{ts.tv_sec, static_cast<std::uint32_t>(ts.tv_nsec)};
}

namespace {

FsError no_inode(std::uint64_t ino) {
  return FsError(ENOENT, "inode " + std::to_string(ino) + " does not exist");
}

}  // namespace

bool Filesystem::OpenFile::needs_flush() const {
  return dirty_bytes > 0 || mtime || ctime || size_changed;
}

Filesystem::Filesystem(Store& store, const FsOptions& options)
    : store_(store),
      options_(options),
      namespace_(store.env()),
      data_(store),
      xattrs_(store.env()),
      symlinks_(store.env()),
      queue_(store.env(), options.commit_interval) {
  queue_.write(
      [&](LmdbTxn& txn) {
        namespace_.format(txn, 0755, ::getuid(), ::getgid(), now_timespec());
        // Files unlinked while open when the last mount ended without a clean stop.
        // A record naming an inode that is gone, or has a name again, is stale.
        for (std::uint64_t ino : namespace_.orphans(txn)) {
          auto inode = namespace_.get(txn, ino);
          if (!inode || inode->nlink > 0) {
            namespace_.remove_orphan(txn, ino);
          } else {
            free_inode(txn, ino);
          }
        }
      },
      Durability::kNow);
  flusher_ = std::thread([this] { flusher_loop(); });
}

Filesystem::~Filesystem() {
  {
    std::lock_guard lock(flusher_mutex_);
    flusher_stop_ = true;
  }
  flusher_wake_.notify_one();
  flusher_.join();
  try {
    sync_all();
  } catch (const std::exception& e) {
    log::error("writing out at unmount failed: %s", e.what());
  }
}

void Filesystem::reserve_space(std::uint64_t bytes) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(space_mutex_);
  auto refresh = [&] {
    struct statvfs backing;
    if (::statvfs(store_.dir().c_str(), &backing) != 0) return false;
    const std::uint64_t unit = backing.f_frsize ? backing.f_frsize : backing.f_bsize;
    space_available_ = backing.f_bavail * unit;
    // 2% of the filesystem, at least 4 MiB and at most 256 MiB.
    space_reserve_ =
        std::clamp<std::uint64_t>(backing.f_blocks * unit / 50, 4ull << 20, 256ull << 20);
    space_checked_ = now;
    return true;
  };
  // A recent answer will do while there is room; a refusal is always checked afresh,
  // since space may just have been freed.
  if (now - space_checked_ > std::chrono::milliseconds(100) && !refresh()) return;
  auto enough = [&] { return space_available_ >= space_reserve_ + dirty_total_.load() + bytes; };
  if (enough()) return;
  if (space_checked_ != now && refresh() && enough()) return;
  throw FsError(ENOSPC, "the store's filesystem is full");
}

// --- the live-inode table ---------------------------------------------------

void Filesystem::count_lookup(std::uint64_t ino) {
  std::lock_guard lock(live_mutex_);
  ++live_[ino].lookups;
}

void Filesystem::overlay(Inode& inode) {
  if (!S_ISREG(inode.mode)) return;
  std::shared_ptr<OpenFile> file;
  {
    std::lock_guard lock(live_mutex_);
    auto it = live_.find(inode.ino);
    if (it == live_.end() || !it->second.file) return;
    file = it->second.file;
  }
  std::lock_guard lock(file->attr);
  inode.size = file->size;
  inode.allocated += file->dirty_bytes;
  if (file->mtime) inode.mtime = *file->mtime;
  if (file->ctime) inode.ctime = *file->ctime;
}

std::shared_ptr<Filesystem::OpenFile> Filesystem::find_file(std::uint64_t ino) {
  std::lock_guard lock(live_mutex_);
  auto it = live_.find(ino);
  return it == live_.end() ? nullptr : it->second.file;
}

std::shared_ptr<Filesystem::OpenFile> Filesystem::file_of(std::uint64_t ino) {
  if (auto file = find_file(ino)) return file;
  Inode inode = queue_.read([&](const LmdbTxn& txn) {
    auto n = namespace_.get(txn, ino);
    if (!n) throw no_inode(ino);
    return *n;
  });
  if (S_ISDIR(inode.mode))
    throw FsError(EISDIR, "inode " + std::to_string(ino) + " is a directory");
  if (!S_ISREG(inode.mode))
    throw FsError(EINVAL, "inode " + std::to_string(ino) + " is not a regular file");
  std::lock_guard lock(live_mutex_);
  auto& live = live_[ino];
  if (!live.file) {
    auto file = std::make_shared<OpenFile>();
    file->stored_size = file->size = inode.size;
    file->stored_alloc = inode.allocated;
    live.file = std::move(file);
  }
  return live.file;
}

void Filesystem::after_last_name(LmdbTxn& txn, std::uint64_t ino) {
  {
    std::lock_guard lock(live_mutex_);
    auto it = live_.find(ino);
    if (it != live_.end()) {
      it->second.unlinked = true;
      namespace_.add_orphan(txn, ino);
      return;
    }
  }
  free_inode(txn, ino);
}

void Filesystem::free_inode(LmdbTxn& txn, std::uint64_t ino) {
  auto inode = namespace_.get(txn, ino);
  if (!inode) return;
  if (S_ISREG(inode->mode)) data_.release_all(txn, ino);
  if (S_ISLNK(inode->mode)) symlinks_.remove(txn, ino);
  xattrs_.remove_all(txn, ino);
  namespace_.free_inode(txn, ino);
}

void Filesystem::maybe_retire(std::uint64_t ino) {
  std::shared_ptr<OpenFile> file;
  bool unlinked = false;
  {
    std::lock_guard lock(live_mutex_);
    auto it = live_.find(ino);
    if (it == live_.end() || it->second.lookups > 0 || it->second.opens > 0) return;
    unlinked = it->second.unlinked;
    file = it->second.file;
    if (file && !unlinked) {
      std::lock_guard attr(file->attr);
      if (file->needs_flush()) return;  // the flusher writes it out, then retires it
    }
    live_.erase(it);
  }
  if (!unlinked) return;
  if (file) {
    // Wait out a write-out in progress; what is still dirty is not needed by anyone.
    auto io = lock_exclusive(*file);
    dirty_total_ -= file->dirty.bytes();
    file->dirty.clear();
  }
  queue_.write([&](LmdbTxn& txn) {
    auto inode = namespace_.get(txn, ino);
    if (inode && inode->nlink == 0) free_inode(txn, ino);
  });
}

// --- names and attributes ---------------------------------------------------

Inode Filesystem::getattr(std::uint64_t ino) {
  Inode inode = queue_.read([&](const LmdbTxn& txn) {
    auto n = namespace_.get(txn, ino);
    if (!n) throw no_inode(ino);
    return *n;
  });
  overlay(inode);
  return inode;
}

std::optional<Inode> Filesystem::lookup(std::uint64_t parent, std::string_view name) {
  std::optional<Inode> inode = queue_.read([&](const LmdbTxn& txn) -> std::optional<Inode> {
    auto entry = namespace_.lookup(txn, parent, name);
    if (!entry) return std::nullopt;
    auto n = namespace_.get(txn, entry->ino);
    if (!n) throw no_inode(entry->ino);
    count_lookup(n->ino);
    return *n;
  });
  if (inode) overlay(*inode);
  return inode;
}

void Filesystem::forget(std::uint64_t ino, std::uint64_t count) {
  {
    std::lock_guard lock(live_mutex_);
    auto it = live_.find(ino);
    if (it == live_.end()) return;
    it->second.lookups -= std::min(count, it->second.lookups);
  }
  maybe_retire(ino);
}

Inode Filesystem::setattr(std::uint64_t ino, const AttrChanges& changes) {
  std::shared_ptr<OpenFile> file = changes.size ? file_of(ino) : find_file(ino);
  // Held across the update so that a write-out cannot store older times over these.
  std::unique_lock<std::shared_mutex> io;
  if (file) io = lock_exclusive(*file);
  const Timespec now = now_timespec();
  if (changes.size) truncate_locked(ino, *file, *changes.size, now);

  const bool other_changes = changes.mode || changes.uid || changes.gid || changes.atime ||
                             changes.mtime || changes.ctime || changes.clear_set_id_bits != 0;
  if (other_changes) {
    queue_.write([&](LmdbTxn& txn) {
      auto inode = namespace_.get(txn, ino);
      if (!inode) throw no_inode(ino);
      if (changes.mode) {
        inode->mode = (inode->mode & S_IFMT) | (*changes.mode & 07777);
        // chmod moves the ACL's owner, group-class and other entries along.
        if (posix_acls_)
          if (auto bytes = xattrs_.get(txn, ino, kAclAccess)) {
            PosixAcl acl = PosixAcl::decode(*bytes);
            acl.set_mode_bits(inode->mode);
            xattrs_.set(txn, ino, kAclAccess, acl.encode(), 0);
          }
      }
      inode->mode &= ~(changes.clear_set_id_bits & (S_ISUID | S_ISGID));
      if (changes.uid) inode->uid = *changes.uid;
      if (changes.gid) inode->gid = *changes.gid;
      if (changes.atime) inode->atime = *changes.atime;
      if (changes.mtime) inode->mtime = *changes.mtime;
      inode->ctime = changes.ctime ? *changes.ctime : now;
      namespace_.put(txn, *inode);
    });
    if (file) {
      std::lock_guard attr(file->attr);
      if (changes.mtime) file->mtime.reset();
      file->ctime.reset();
    }
  }
  io = {};
  return getattr(ino);
}

std::string Filesystem::readlink(std::uint64_t ino) {
  return queue_.read([&](const LmdbTxn& txn) {
    auto inode = namespace_.get(txn, ino);
    if (!inode) throw no_inode(ino);
    if (!S_ISLNK(inode->mode))
      throw FsError(EINVAL, "inode " + std::to_string(ino) + " is not a symbolic link");
    return symlinks_.get(txn, ino);
  });
}

Inode Filesystem::make_node(std::uint64_t parent, std::string_view name, std::uint32_t mode,
                            std::uint64_t rdev, const Caller& caller) {
  reserve_space(0);
  return queue_.write([&](LmdbTxn& txn) {
    std::uint32_t gid = caller.gid;
    // A set-group-ID directory hands its group down, and its bit to subdirectories.
    if (auto dir = namespace_.get(txn, parent); dir && (dir->mode & S_ISGID)) {
      gid = dir->gid;
      if (S_ISDIR(mode)) mode |= S_ISGID;
    }
    // With ACLs on, a directory's default ACL takes the umask's place (as on ext4).
    std::optional<std::vector<std::byte>> access_acl, default_acl;
    if (posix_acls_) {
      if (auto inherited = xattrs_.get(txn, parent, kAclDefault)) {
        PosixAcl acl = PosixAcl::decode(*inherited);
        mode = acl.mask_for_create(mode);
        if (!acl.equivalent_to_mode()) access_acl = acl.encode();
        if (S_ISDIR(mode)) default_acl = std::move(inherited);
      } else {
        mode &= ~(caller.umask & 0777);
      }
    }
    Inode inode = namespace_.create(txn, parent, name, mode, caller.uid, gid, rdev, now_timespec());
    if (access_acl) xattrs_.set(txn, inode.ino, kAclAccess, *access_acl, 0);
    if (default_acl) xattrs_.set(txn, inode.ino, kAclDefault, *default_acl, 0);
    count_lookup(inode.ino);
    return inode;
  });
}

Inode Filesystem::symlink(std::uint64_t parent, std::string_view name, std::string_view target,
                          const Caller& caller) {
  if (target.empty()) throw FsError(ENOENT, "a symbolic link needs a target");
  if (target.size() > kMaxSymlinkLength)
    throw FsError(ENAMETOOLONG, "symbolic link target too long");
  reserve_space(0);
  return queue_.write([&](LmdbTxn& txn) {
    std::uint32_t gid = caller.gid;
    if (auto dir = namespace_.get(txn, parent); dir && (dir->mode & S_ISGID)) gid = dir->gid;
    Inode inode =
        namespace_.create(txn, parent, name, S_IFLNK | 0777, caller.uid, gid, 0, now_timespec());
    symlinks_.set(txn, inode.ino, target);
    inode.size = target.size();
    namespace_.put(txn, inode);
    count_lookup(inode.ino);
    return inode;
  });
}

Inode Filesystem::link(std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name) {
  Inode inode = queue_.write([&](LmdbTxn& txn) {
    namespace_.link(txn, ino, new_parent, new_name, now_timespec());
    auto n = namespace_.get(txn, ino);
    if (!n) throw no_inode(ino);
    count_lookup(ino);
    return *n;
  });
  overlay(inode);
  return inode;
}

void Filesystem::unlink(std::uint64_t parent, std::string_view name) {
  queue_.write([&](LmdbTxn& txn) {
    UnlinkResult result = namespace_.unlink(txn, parent, name, now_timespec());
    if (result.nlink == 0) after_last_name(txn, result.ino);
  });
}

void Filesystem::rmdir(std::uint64_t parent, std::string_view name) {
  queue_.write([&](LmdbTxn& txn) {
    after_last_name(txn, namespace_.rmdir(txn, parent, name, now_timespec()));
  });
}

void Filesystem::rename(std::uint64_t old_parent, std::string_view old_name,
                        std::uint64_t new_parent, std::string_view new_name, unsigned flags) {
  queue_.write([&](LmdbTxn& txn) {
    RenameResult result =
        namespace_.rename(txn, old_parent, old_name, new_parent, new_name, flags, now_timespec());
    if (result.replaced_ino && result.replaced_nlink == 0)
      after_last_name(txn, *result.replaced_ino);
  });
}

void Filesystem::readdir(
    std::uint64_t dir, std::uint64_t cookie, bool plus,
    const std::function<bool(const ListedEntry&, std::uint64_t next_cookie)>& emit) {
  queue_.read([&](const LmdbTxn& txn) {
    namespace_.readdir(txn, dir, cookie, [&](const DirEntryView& e, std::uint64_t next) {
      ListedEntry listed{e.name, e.ino, e.d_type, nullptr};
      Inode inode;
      const bool dot = e.name == "." || e.name == "..";
      if (plus && !dot) {
        auto n = namespace_.get(txn, e.ino);
        if (!n) throw no_inode(e.ino);
        inode = *n;
        overlay(inode);
        listed.inode = &inode;
      }
      if (!emit(listed, next)) return false;
      if (listed.inode) count_lookup(e.ino);
      return true;
    });
  });
}

FsStat Filesystem::statfs() {
  struct statvfs backing;
  if (::statvfs(store_.dir().c_str(), &backing) != 0)
    throw FsError(errno, "cannot stat the store's filesystem");
  FsStat out;
  const std::uint64_t unit = backing.f_frsize ? backing.f_frsize : backing.f_bsize;
  out.blocks = backing.f_blocks * unit / out.block_size;
  out.blocks_free = backing.f_bfree * unit / out.block_size;
  out.blocks_available = backing.f_bavail * unit / out.block_size;
  const std::uint64_t used =
      queue_.read([&](const LmdbTxn& txn) { return namespace_.inode_count(txn); });
  // Every new file may need a loose object file on the store's filesystem.
  out.files_free = backing.f_favail;
  out.files = used + out.files_free;
  return out;
}

// --- extended attributes ----------------------------------------------------

void Filesystem::check_xattr_name(std::string_view name) const {
  // Of system. names only the POSIX ACLs mean something, and only once the kernel
  // enforces them; the others are refused, as on ext4.
  if (name.starts_with("system.") && !(posix_acls_ && (name == kAclAccess || name == kAclDefault)))
    throw FsError(EOPNOTSUPP, "extended attribute " + std::string(name) + " is not supported");
}

void Filesystem::setxattr(std::uint64_t ino, std::string_view name,
                          std::span<const std::byte> value, int flags) {
  check_xattr_name(name);
  queue_.write([&](LmdbTxn& txn) {
    auto inode = namespace_.get(txn, ino);
    if (!inode) throw no_inode(ino);
    if (name == kAclAccess) {
      // setfacl: the mode follows the ACL, and an ACL that says no more than a mode
      // is not kept at all (as ext4 does).
      PosixAcl acl = PosixAcl::decode(value);
      inode->mode = (inode->mode & ~0777u) | acl.mode_bits();
      if (acl.equivalent_to_mode()) {
        if (xattrs_.get(txn, ino, name)) xattrs_.remove(txn, ino, name);
      } else {
        xattrs_.set(txn, ino, name, acl.encode(), flags);
      }
    } else {
      if (name == kAclDefault) PosixAcl::decode(value);  // refuse what is not an ACL
      xattrs_.set(txn, ino, name, value, flags);
    }
    inode->ctime = now_timespec();
    namespace_.put(txn, *inode);
  });
}

std::optional<std::vector<std::byte>> Filesystem::getxattr(std::uint64_t ino,
                                                           std::string_view name) {
  check_xattr_name(name);
  return queue_.read([&](const LmdbTxn& txn) { return xattrs_.get(txn, ino, name); });
}

std::string Filesystem::listxattr(std::uint64_t ino) {
  return queue_.read([&](const LmdbTxn& txn) { return xattrs_.list(txn, ino); });
}

void Filesystem::removexattr(std::uint64_t ino, std::string_view name) {
  check_xattr_name(name);
  queue_.write([&](LmdbTxn& txn) {
    auto inode = namespace_.get(txn, ino);
    if (!inode) throw no_inode(ino);
    xattrs_.remove(txn, ino, name);
    inode->ctime = now_timespec();
    namespace_.put(txn, *inode);
  });
}

}  // namespace casfs
