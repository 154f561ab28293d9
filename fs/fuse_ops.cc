// The FUSE low-level handlers. Each one only translates: it unpacks the kernel's
// request, calls Filesystem, and packs the reply. Errors become errno values in one
// place (reply_error), so the library never needs to know about FUSE.
#include "fs/fuse_ops.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "fs/fs_error.h"
#include "fs/fuse_session_io.h"
#include "store/error.h"
#include "store/log.h"

namespace casfs {

namespace {

Filesystem& fs_of(fuse_req_t req) {
  return *static_cast<FuseContext*>(fuse_req_userdata(req))->fs;
}
const FuseContext& context_of(fuse_req_t req) {
  return *static_cast<FuseContext*>(fuse_req_userdata(req));
}

// The one place where failures become errno values for the kernel.
int errno_of_current_exception() {
  try {
    throw;
  } catch (const FsError& e) {
    return e.code();
  } catch (const StoreError& e) {
    // The store's own errors reach a file operation only as lost or unreachable
    // data, except for running out of room, which the caller can act on.
    switch (e.code()) {
      case ENOSPC:
      case EDQUOT:
      case EROFS:
      case ENOMEM:
        return e.code();
      default:
        log::error("%s", e.what());
        return EIO;
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  } catch (const std::exception& e) {
    log::error("unexpected error: %s", e.what());
    return EIO;
  }
}

template <typename F>
void handle(fuse_req_t req, F&& f) {
  try {
    f();
  } catch (...) {
    fuse_reply_err(req, errno_of_current_exception());
  }
}

struct timespec to_timespec(const Timespec& t) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(t.sec);
  ts.tv_nsec = static_cast<long>(t.nsec);
  return ts;
}

Timespec from_timespec(const struct timespec& ts) {
  return Timespec{ts.tv_sec, static_cast<std::uint32_t>(ts.tv_nsec)};
}

struct stat to_stat(const Inode& n) {
  struct stat st {};
  st.st_ino = n.ino;
  st.st_mode = n.mode;
  st.st_nlink = n.nlink;
  st.st_uid = n.uid;
  st.st_gid = n.gid;
  st.st_rdev = n.rdev;
  st.st_blksize = 4096;
  if (S_ISDIR(n.mode)) {
    // What ext4 shows for a directory of one block; tools such as du expect a size.
    st.st_size = 4096;
    st.st_blocks = 8;
  } else {
    st.st_size = static_cast<off_t>(n.size);
    st.st_blocks = S_ISREG(n.mode) ? static_cast<blkcnt_t>((n.allocated + 511) / 512) : 0;
  }
  st.st_atim = to_timespec(n.atime);
  st.st_mtim = to_timespec(n.mtime);
  st.st_ctim = to_timespec(n.ctime);
  return st;
}

fuse_entry_param to_entry(const FuseContext& ctx, const Inode& n) {
  fuse_entry_param e{};
  e.ino = n.ino;
  e.generation = n.generation;
  e.attr = to_stat(n);
  e.attr_timeout = ctx.attr_timeout;
  e.entry_timeout = ctx.entry_timeout;
  return e;
}

Caller caller_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{static_cast<std::uint32_t>(ctx->uid), static_cast<std::uint32_t>(ctx->gid),
                static_cast<std::uint32_t>(ctx->umask)};
}

// Whether the caller is in group `gid`, as its primary group or a supplementary one,
// which /proc lists (libfuse 3.14's fuse_req_getgroups reads past the end of its
// buffer there). Unknown counts as no, which clears the bit.
bool caller_in_group(fuse_req_t req, std::uint32_t gid) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (static_cast<std::uint32_t>(ctx->gid) == gid) return true;
  std::ifstream status("/proc/" + std::to_string(ctx->pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("Groups:")) continue;
    std::istringstream groups(line.substr(7));
    for (std::uint32_t group = 0; groups >> group;)
      if (group == gid) return true;
    return false;
  }
  return false;
}

// The set-ID bits that the kernel's VFS clears when a file is written or truncated
// by a caller without CAP_FSETID (`privileged` false), or chowned: set-user-ID, and
// set-group-ID if the group may execute or the caller is outside the file's group.
// Under FUSE_HANDLE_KILLPRIV_V2 (fuse_session_io.h) the kernel leaves that to us.
std::uint32_t set_id_bits_to_clear(fuse_req_t req, const Inode& inode, bool privileged) {
  if (S_ISDIR(inode.mode)) return 0;
  std::uint32_t bits = inode.mode & S_ISUID;
  if ((inode.mode & S_ISGID) &&
      ((inode.mode & S_IXGRP) || (!privileged && !caller_in_group(req, inode.gid))))
    bits |= S_ISGID;
  return bits;
}

// Clears what set_id_bits_to_clear names for a caller without CAP_FSETID, and makes
// the kernel drop the mode it caches: the replies to WRITE, OPEN, FALLOCATE and
// COPY_FILE_RANGE carry no attributes, and it would show the old mode for a second.
void clear_set_id_bits(fuse_req_t req, fuse_ino_t ino) {
  Filesystem& fs = fs_of(req);
  AttrChanges c;
  c.clear_set_id_bits = set_id_bits_to_clear(req, fs.getattr(ino), false);
  if (c.clear_set_id_bits == 0) return;
  fs.setattr(ino, c);
  fuse_lowlevel_notify_inval_inode(context_of(req).session, ino, -1, 0);
}

// FALLOCATE and COPY_FILE_RANGE change a file's bytes without the kernel's mark of a
// caller without CAP_FSETID that WRITE carries: root is taken to hold it, as for chown.
void clear_set_id_bits_unless_root(fuse_req_t req, fuse_ino_t ino) {
  if (fuse_req_ctx(req)->uid != 0) clear_set_id_bits(req, ino);
}

void reply_entry(fuse_req_t req, const Inode& inode) {
  fuse_entry_param e = to_entry(context_of(req), inode);
  // The reference counted for this entry is dropped if the kernel never got it.
  if (fuse_reply_entry(req, &e) != 0) fs_of(req).forget(inode.ino, 1);
}

// --- handlers -----------------------------------------------------------------

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* ctx = static_cast<FuseContext*>(userdata);
  if (choose_capabilities(*ctx, conn)) ctx->fs->enable_posix_acls();
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  handle(req, [&] {
    if (auto inode = fs_of(req).lookup(parent, name)) {
      reply_entry(req, *inode);
      return;
    }
    // A negative entry the kernel may cache as long as a positive one.
    fuse_entry_param none{};
    none.entry_timeout = context_of(req).entry_timeout;
    fuse_reply_entry(req, &none);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  try {
    fs_of(req).forget(ino, nlookup);
  } catch (...) {
    errno_of_current_exception();
  }
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) {
    try {
      fs_of(req).forget(forgets[i].ino, forgets[i].nlookup);
    } catch (...) {
      errno_of_current_exception();
    }
  }
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  handle(req, [&] {
    struct stat st = to_stat(fs_of(req).getattr(ino));
    fuse_reply_attr(req, &st, context_of(req).attr_timeout);
  });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  handle(req, [&] {
    AttrChanges c;
    const Timespec now = now_timespec();
    if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) c.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) c.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) c.size = static_cast<std::uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      c.atime = now;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      c.atime = from_timespec(attr->st_atim);
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      c.mtime = now;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      c.mtime = from_timespec(attr->st_mtim);
    }
    if (to_set & FUSE_SET_ATTR_CTIME) c.ctime = from_timespec(attr->st_ctim);
    // A truncate the kernel marked, or a chown (by root, it keeps set-group-ID
    // without group execute). chown(f, -1, -1) clears the bits as any chown does on
    // ext4, but arrives as a change of ctime alone: the kernel drops its mark to kill
    // them and has no owner to send. Nothing else sends ctime alone (utimensat with
    // both times omitted returns before it reaches the filesystem).
    const bool is_chown =
        (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) != 0 || to_set == FUSE_SET_ATTR_CTIME;
    if (request_drops_set_id() || is_chown)
      c.clear_set_id_bits = set_id_bits_to_clear(req, fs_of(req).getattr(ino),
                                                 is_chown && fuse_req_ctx(req)->uid == 0);
    struct stat st = to_stat(fs_of(req).setattr(ino, c));
    fuse_reply_attr(req, &st, context_of(req).attr_timeout);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  handle(req, [&] { fuse_reply_readlink(req, fs_of(req).readlink(ino).c_str()); });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  handle(req,
         [&] { reply_entry(req, fs_of(req).make_node(parent, name, mode, rdev, caller_of(req))); });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  handle(req, [&] {
    reply_entry(req,
                fs_of(req).make_node(parent, name, S_IFDIR | (mode & 07777), 0, caller_of(req)));
  });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  handle(req, [&] {
    fs_of(req).unlink(parent, name);
    fuse_reply_err(req, 0);
  });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  handle(req, [&] {
    fs_of(req).rmdir(parent, name);
    fuse_reply_err(req, 0);
  });
}

void op_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  handle(req, [&] { reply_entry(req, fs_of(req).symlink(parent, name, target, caller_of(req))); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned int flags) {
  handle(req, [&] {
    if (flags & ~(kRenameNoReplace | kRenameExchange))
      throw FsError(EINVAL, "rename flags " + std::to_string(flags) + " are not supported");
    fs_of(req).rename(parent, name, new_parent, new_name, flags);
    fuse_reply_err(req, 0);
  });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  handle(req, [&] { reply_entry(req, fs_of(req).link(ino, new_parent, new_name)); });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  handle(req, [&] {
    if (request_drops_set_id()) clear_set_id_bits(req, ino);
    fs_of(req).open(ino, (fi->flags & O_TRUNC) != 0);
    // casfs is the only writer, so cached pages stay valid from one open to the next.
    fi->keep_cache = 1;
    if (fuse_reply_open(req, fi) != 0) fs_of(req).release(ino);
  });
}

// One buffer per serving thread, kept from READ to READ. A fresh one per READ cost
// more than the copy it receives: readahead READs are 1 MiB, above malloc's mmap
// threshold, so each was mapped, zeroed page by page by the kernel and unmapped.
std::span<std::byte> read_buffer(std::size_t size) {
  thread_local std::unique_ptr<std::byte[]> buffer;
  thread_local std::size_t capacity = 0;
  if (capacity < size) {
    buffer = std::make_unique_for_overwrite<std::byte[]>(size);
    capacity = size;
  }
  return {buffer.get(), size};
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  handle(req, [&] {
    const std::span<std::byte> buffer = read_buffer(size);
    const std::size_t n = fs_of(req).read(ino, static_cast<std::uint64_t>(off), buffer);
    fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), n);
  });
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info*) {
  handle(req, [&] {
    if (request_drops_set_id()) clear_set_id_bits(req, ino);
    fs_of(req).write(ino, static_cast<std::uint64_t>(off),
                     std::span(reinterpret_cast<const std::byte*>(buf), size));
    fuse_reply_write(req, size);
  });
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // close(2) does not sync on ext4 either; the flusher writes the file out once it
  // is released. ENOSYS tells the kernel to stop sending FLUSH, which saves a round
  // trip on every close; it still writes cached pages back (and reports their
  // errors) at close before it would have sent one.
  fuse_reply_err(req, ENOSYS);
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  handle(req, [&] {
    fs_of(req).release(ino);
    fuse_reply_err(req, 0);
  });
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  handle(req, [&] {
    fs_of(req).fsync(ino);
    fuse_reply_err(req, 0);
  });
}

void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  handle(req, [&] {
    fs_of(req).fsync(ino);
    fuse_reply_err(req, 0);
  });
}

void list_directory(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  handle(req, [&] {
    std::vector<char> buffer(size);
    std::size_t used = 0;
    std::string name;
    const FuseContext& ctx = context_of(req);
    fs_of(req).readdir(
        ino, static_cast<std::uint64_t>(off), plus,
        [&](const ListedEntry& entry, std::uint64_t next) {
          name.assign(entry.name);  // the kernel wants a NUL-terminated name
          const auto next_off = static_cast<off_t>(next);
          std::size_t needed;
          if (plus) {
            fuse_entry_param e{};
            if (entry.inode) {
              e = to_entry(ctx, *entry.inode);
            } else {  // "." and "..": the kernel neither looks them up nor counts them
              e.attr.st_ino = entry.ino;
              e.attr.st_mode = static_cast<mode_t>(entry.d_type) << 12;
            }
            needed = fuse_add_direntry_plus(req, buffer.data() + used, size - used, name.c_str(),
                                            &e, next_off);
          } else {
            struct stat st {};
            st.st_ino = entry.ino;
            st.st_mode = static_cast<mode_t>(entry.d_type) << 12;
            needed = fuse_add_direntry(req, buffer.data() + used, size - used, name.c_str(), &st,
                                       next_off);
          }
          if (needed > size - used) return false;
          used += needed;
          return true;
        });
    fuse_reply_buf(req, buffer.data(), used);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  list_directory(req, ino, size, off, false);
}

void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  list_directory(req, ino, size, off, true);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  handle(req, [&] {
    FsStat s = fs_of(req).statfs();
    struct statvfs out {};
    out.f_bsize = s.block_size;
    out.f_frsize = s.block_size;
    out.f_blocks = s.blocks;
    out.f_bfree = s.blocks_free;
    out.f_bavail = s.blocks_available;
    out.f_files = s.files;
    out.f_ffree = s.files_free;
    out.f_favail = s.files_free;
    out.f_namemax = s.name_max;
    fuse_reply_statfs(req, &out);
  });
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) {
  handle(req, [&] {
    fs_of(req).setxattr(ino, name, std::span(reinterpret_cast<const std::byte*>(value), size),
                        flags);
    fuse_reply_err(req, 0);
  });
}

// getxattr and listxattr: size 0 asks for the length only; too small is ERANGE.
void reply_sized(fuse_req_t req, const void* data, std::size_t length, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, length);
  } else if (length > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, static_cast<const char*>(data), length);
  }
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  handle(req, [&] {
    auto value = fs_of(req).getxattr(ino, name);
    if (!value) {
      fuse_reply_err(req, ENODATA);
      return;
    }
    reply_sized(req, value->data(), value->size(), size);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  handle(req, [&] {
    std::string names = fs_of(req).listxattr(ino);
    reply_sized(req, names.data(), names.size(), size);
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  handle(req, [&] {
    fs_of(req).removexattr(ino, name);
    fuse_reply_err(req, 0);
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
  handle(req, [&] {
    Filesystem& fs = fs_of(req);
    Inode inode = fs.make_node(parent, name, S_IFREG | (mode & 07777), 0, caller_of(req));
    fs.open(inode.ino, false);
    fi->keep_cache = 1;
    fuse_entry_param e = to_entry(context_of(req), inode);
    if (fuse_reply_create(req, &e, fi) != 0) {
      fs.release(inode.ino);
      fs.forget(inode.ino, 1);
    }
  });
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                  fuse_file_info*) {
  handle(req, [&] {
    if (offset < 0 || length <= 0) throw FsError(EINVAL, "bad fallocate range");
    clear_set_id_bits_unless_root(req, ino);
    fs_of(req).fallocate(ino, mode, static_cast<std::uint64_t>(offset),
                         static_cast<std::uint64_t>(length));
    fuse_reply_err(req, 0);
  });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info*,
                        fuse_ino_t ino_out, off_t off_out, fuse_file_info*, size_t len, int flags) {
  handle(req, [&] {
    if (flags != 0) throw FsError(EINVAL, "copy_file_range flags must be 0");
    clear_set_id_bits_unless_root(req, ino_out);
    const std::uint64_t copied =
        fs_of(req).copy_range(ino_in, static_cast<std::uint64_t>(off_in), ino_out,
                              static_cast<std::uint64_t>(off_out), len);
    fuse_reply_write(req, copied);
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) {
  handle(req, [&] {
    if (whence != SEEK_DATA && whence != SEEK_HOLE) throw FsError(EINVAL, "unexpected lseek");
    if (off < 0) throw FsError(ENXIO, "negative offset");
    const std::uint64_t pos =
        fs_of(req).seek_data_hole(ino, static_cast<std::uint64_t>(off), whence);
    fuse_reply_lseek(req, static_cast<off_t>(pos));
  });
}

}  // namespace

bool choose_capabilities(const FuseContext& context, fuse_conn_info* conn) {
  auto want = [&](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  if (context.writeback_cache) want(FUSE_CAP_WRITEBACK_CACHE);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_READDIRPLUS_AUTO);
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_CACHE_SYMLINKS);
  // Locks stay in the kernel: casfs is the only server, so local locks are exact.
  conn->want &= ~(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  // libfuse asks for this by default. casfs takes its successor instead, which
  // libfuse 3.14 does not know (fuse_session_io.h): with v1 the kernel leaves the
  // set-ID bits of a file written through the writeback cache alone.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // With this (libfuse's default too) O_TRUNC arrives with open, not as a setattr.
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  conn->max_write = 1 << 20;
  conn->max_readahead = conn->max_readahead > (1u << 20) ? (1u << 20) : conn->max_readahead;
  conn->time_gran = 1;
  // max_background stays at the kernel's 12. Random reads through the page cache are
  // background READs, and a caller's io_uring polls its reads again and again until
  // they are in (a FUSE file cannot wait for a page asynchronously): with 16 or 64
  // in flight, fio's 16-deep random reads took that much more CPU beside the daemon
  // that they fell from 31-34k to 17-19k IOPS over FUSE's io_uring transport.
  //
  // POSIX ACLs: the kernel enforces them and leaves the umask to us, so that a
  // directory's default ACL can take its place for what is created in it.
  if ((conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
    return true;
  }
  return false;
}

fuse_lowlevel_ops fuse_operations() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.symlink = op_symlink;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.fsyncdir = op_fsyncdir;
  ops.statfs = op_statfs;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.create = op_create;
  ops.fallocate = op_fallocate;
  ops.copy_file_range = op_copy_file_range;
  ops.lseek = op_lseek;
  return ops;
}

}  // namespace casfs
