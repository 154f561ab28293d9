// The filesystem as a library: POSIX operations on inodes and names over a store,
// with no FUSE in sight. The FUSE handlers (fuse_ops.cc) only translate between the
// kernel's requests and these calls, and map FsError to errno in one place.
//
// Metadata changes go through one CommitQueue (group commit). File contents written
// through write() are buffered per inode in a DirtyBuffer and written out into the
// store as content-defined chunks when the file is closed, fsync'd, truncated below
// its stored size, or holds too many dirty bytes; a flusher thread writes out closed
// files at once and open ones within the commit interval.
//
// Lifetime of inodes follows the kernel's: lookup() and every call that returns an
// entry count a reference, forget() drops them; an inode whose last name is gone
// lives (as an orphan, recorded so a crash does not leak it) until the kernel
// forgets it.
#pragma once

#include <sys/statvfs.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fs/commit_queue.h"
#include "fs/dirty_buffer.h"
#include "fs/file_data.h"
#include "fs/inode.h"
#include "fs/namespace.h"
#include "fs/symlinks.h"
#include "fs/xattrs.h"
#include "store/store.h"

namespace casfs {

struct FsOptions {
  // Changes nobody asked to be durable (fsync) are committed at least this often.
  std::chrono::milliseconds commit_interval{5000};
  // A file holding more dirty bytes than this is written out by the writer itself.
  std::uint64_t dirty_file_limit = 64ull << 20;
  // All files together; past this each writer writes out its own file. The daemon's
  // peak memory is about this plus a write-out batch's copy of its bytes: at 512 MiB
  // an untar of the Linux tree, whose large generated headers arrive faster than one
  // flusher tick writes them, peaked at 435-472 MiB RSS; at 256 MiB, 358-363 MiB,
  // and no slower. Once the untar got faster (10 s), 256 MiB peaked at 417-495 MiB
  // and 192 MiB at 398-422 MiB, again no slower.
  std::uint64_t dirty_total_limit = 192ull << 20;
  // Whether changes to a file's bytes (write, truncate, fallocate) set its mtime and
  // ctime. Not under FUSE's writeback cache: there the kernel keeps a file's times
  // and hands them over with setattr; a write reaching the daemon later must not
  // stamp another time over them.
  bool stamp_writes = true;
};

// Who asks: the owner of new files.
struct Caller {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t umask = 0;  // applied here only once POSIX ACLs are on (see enable_posix_acls)
};

// setattr(2)'s changes; times already resolved (UTIME_NOW is the caller's clock).
struct AttrChanges {
  std::optional<std::uint32_t> mode;  // permission bits only
  std::optional<std::uint32_t> uid, gid;
  std::optional<std::uint64_t> size;
  std::optional<Timespec> atime, mtime, ctime;
  // S_ISUID and S_ISGID to clear (after `mode`; other bits are ignored): the FUSE
  // layer works out which ones the kernel's rules clear on a write, truncate or chown.
  std::uint32_t clear_set_id_bits = 0;
};

struct FsStat {
  std::uint64_t block_size = 4096;
  std::uint64_t blocks = 0, blocks_free = 0, blocks_available = 0;
  std::uint64_t files = 0, files_free = 0;
  std::uint64_t name_max = kMaxNameLength;
};

// One readdir entry; `inode` only for readdirplus (and not for "." and "..").
struct ListedEntry {
  std::string_view name;
  std::uint64_t ino = 0;
  std::uint8_t d_type = 0;
  const Inode* inode = nullptr;
};

Timespec now_timespec();

class Filesystem {
 public:
  // Creates the root directory on a new store, and frees the orphans a crash left.
  Filesystem(Store& store, const FsOptions& options);
  // Writes out every dirty file and commits.
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  // Turns on POSIX ACLs (system.posix_acl_access and _default): from then on the
  // caller's umask is applied here, unless a default ACL is inherited instead, and
  // modes and ACLs are kept in step. The FUSE layer calls this when the kernel
  // agrees to enforce ACLs; it must come before any request.
  void enable_posix_acls() { posix_acls_ = true; }

  // --- inodes and names -----------------------------------------------------
  Inode getattr(std::uint64_t ino);
  // Counts a reference; nullopt (no exception: most lookups of a new name miss) when
  // `name` is not in `parent`.
  std::optional<Inode> lookup(std::uint64_t parent, std::string_view name);
  void forget(std::uint64_t ino, std::uint64_t count);
  Inode setattr(std::uint64_t ino, const AttrChanges& changes);
  std::string readlink(std::uint64_t ino);
  // mknod, mkdir and create: the S_IFMT bits of `mode` say what. Counts a reference.
  Inode make_node(std::uint64_t parent, std::string_view name, std::uint32_t mode,
                  std::uint64_t rdev, const Caller& caller);
  Inode symlink(std::uint64_t parent, std::string_view name, std::string_view target,
                const Caller& caller);
  Inode link(std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name);
  void unlink(std::uint64_t parent, std::string_view name);
  void rmdir(std::uint64_t parent, std::string_view name);
  void rename(std::uint64_t old_parent, std::string_view old_name, std::uint64_t new_parent,
              std::string_view new_name, unsigned flags);
  // Lists `dir` after `cookie`; `emit` returns false when its buffer is full. With
  // `plus`, entries carry their inode and each one taken counts a reference.
  void readdir(std::uint64_t dir, std::uint64_t cookie, bool plus,
               const std::function<bool(const ListedEntry&, std::uint64_t next_cookie)>& emit);
  FsStat statfs();

  // --- extended attributes -------------------------------------------------
  void setxattr(std::uint64_t ino, std::string_view name, std::span<const std::byte> value,
                int flags);
  // nullopt when the attribute is not set: without an exception, since the kernel asks
  // for security.capability before every write(2) to a file.
  std::optional<std::vector<std::byte>> getxattr(std::uint64_t ino, std::string_view name);
  std::string listxattr(std::uint64_t ino);
  void removexattr(std::uint64_t ino, std::string_view name);

  // --- file contents (file_contents.cc) -------------------------------------
  // With `truncate` (O_TRUNC), the file is emptied as ftruncate(fd, 0) would.
  void open(std::uint64_t ino, bool truncate);
  void release(std::uint64_t ino);
  std::size_t read(std::uint64_t ino, std::uint64_t offset, std::span<std::byte> out);
  void write(std::uint64_t ino, std::uint64_t offset, std::span<const std::byte> data);
  // Data and metadata of `ino` durable (and, as ext4's journal does, everything
  // committed before it).
  void fsync(std::uint64_t ino);
  // Everything durable.
  void sync_all();
  void fallocate(std::uint64_t ino, int mode, std::uint64_t offset, std::uint64_t length);
  std::uint64_t copy_range(std::uint64_t in_ino, std::uint64_t in_offset, std::uint64_t out_ino,
                           std::uint64_t out_offset, std::uint64_t length);
  // SEEK_DATA / SEEK_HOLE; throws FsError(ENXIO) past the end or when no data follows.
  std::uint64_t seek_data_hole(std::uint64_t ino, std::uint64_t offset, int whence);

 private:
  // A regular file with state beyond its stored record: open, or holding bytes or
  // a size that are not in the store yet.
  struct OpenFile {
    // Shared for reads, exclusive for writes and write-out (held across a flush).
    std::shared_mutex io;
    DirtyBuffer dirty;  // guarded by io
    // The bytes of the write-behinds in flight (see write_behind), oldest first,
    // moved out of `dirty`: reads see them, in order, under `dirty` until they are
    // committed. Guarded by io, as is everything down to stored_end_is_cut; `written`
    // is notified (io held) when one has been cut into chunks and when one is gone.
    std::deque<DirtyBuffer> writing;
    std::condition_variable_any written;
    bool chunking = false;        // the newest write-behind is cutting its bytes
    bool writing_failed = false;  // one failed: those after it give up too
    // What stored_size and stored_end_is_cut will be once the write-behinds in flight
    // have committed.
    std::uint64_t planned_size = 0;
    bool planned_cut = false;
    std::uint32_t exclusive_waiters = 0;  // in lock_exclusive: no write-behind starts
    std::uint64_t stored_size = 0;        // the size the extents describe
    std::uint64_t stored_alloc = 0;       // the inode's allocated bytes
    bool stored_end_is_cut = false;       // see WriteShape::old_end_is_cut

    // Guarded by attr (never held while waiting for anything, so the commit queue
    // may take it): what getattr shows on top of the stored inode.
    mutable std::mutex attr;
    std::uint64_t size = 0;
    std::uint64_t dirty_bytes = 0;         // in `dirty` and `writing`
    bool size_changed = false;             // size differs from stored_size
    std::optional<Timespec> mtime, ctime;  // set by writes, stored at write-out
    std::chrono::steady_clock::time_point dirty_since{};

    bool needs_flush() const;  // call with attr held
  };
  // What the process knows of an inode besides its record.
  struct LiveInode {
    std::uint64_t lookups = 0;
    std::uint32_t opens = 0;
    bool unlinked = false;  // nlink reached 0; freed when the last reference goes
    std::shared_ptr<OpenFile> file;
  };

  // Shows unflushed size and times on top of a stored inode.
  void overlay(Inode& inode);
  void count_lookup(std::uint64_t ino);
  // Which extended attribute names may be used (throws FsError(EOPNOTSUPP)).
  void check_xattr_name(std::string_view name) const;
  // Throws FsError(ENOSPC) unless the store's filesystem has room for `bytes` more
  // besides the dirty bytes not yet written out and a reserve kept for LMDB, whose
  // commits must never fail for lack of space (a failed commit loses every change
  // made since the last one).
  void reserve_space(std::uint64_t bytes);
  // After a change that may have left `ino` with no names: orphans it if the kernel
  // still refers to it, frees it otherwise. Runs on the commit queue.
  void after_last_name(LmdbTxn& txn, std::uint64_t ino);
  // Frees the inode and everything it owns.
  void free_inode(LmdbTxn& txn, std::uint64_t ino);
  // Drops the live record when nothing holds it any more; frees unlinked inodes.
  void maybe_retire(std::uint64_t ino);
  std::shared_ptr<OpenFile> file_of(std::uint64_t ino);  // loads it if needed
  std::shared_ptr<OpenFile> find_file(std::uint64_t ino);

  // `file.io` held exclusively, once no write-behind runs on the file: all but plain
  // writes need the file's bytes to hold still.
  static std::unique_lock<std::shared_mutex> lock_exclusive(OpenFile& file);
  // The next three need file.io held exclusively by the caller. write_locked returns
  // whether the file (or all files together) now hold too many dirty bytes.
  bool write_locked(OpenFile& file, std::uint64_t offset, std::span<const std::byte> data,
                    Timespec now, bool needs_space);
  void truncate_locked(std::uint64_t ino, OpenFile& file, std::uint64_t size, Timespec now);
  // Writes out the file's dirty bytes, size and times into the store, durably.
  void flush_locked(std::uint64_t ino, OpenFile& file);
  void flush(std::uint64_t ino, const std::shared_ptr<OpenFile>& file);
  // Commits a prepared write-out of one file (extents, size, times) and syncs it;
  // updates the file's stored size and allocation.
  void commit_write_out(std::uint64_t ino, OpenFile& file, PendingWrite& pending,
                        std::uint64_t new_size, const std::optional<Timespec>& mtime,
                        const std::optional<Timespec>& ctime);
  // A writer past the dirty limit writes the file's dirty bytes out with `io`
  // (held exclusively on entry and on return) released meanwhile, so that the
  // kernel's other writes to the file fill a fresh buffer instead of waiting: chunking,
  // hashing and writing objects overlap receiving the next bytes. The bytes after the
  // last cut stay dirty (WriteShape::defer_tail), so that the next writer past the
  // limit can cut its bytes while this one still writes and commits; commits go in
  // order. A writer that wrote below where the one before stops waits for it instead.
  void write_behind(std::uint64_t ino, OpenFile& file, std::unique_lock<std::shared_mutex>& io);
  // Moves a write-behind's bytes at or past `from` back into the file's buffer, under
  // the bytes written since (io held exclusively).
  void give_back(OpenFile& file, DirtyBuffer& frozen, std::uint64_t from);
  // Bytes of the file's write-behinds in flight (io held).
  static std::uint64_t writing_bytes(const OpenFile& file);
  static std::uint64_t allocated_after(std::uint64_t allocated, const PendingWrite& write);
  static void store_written(Inode& inode, std::uint64_t size, std::uint64_t allocated,
                            const std::optional<Timespec>& mtime,
                            const std::optional<Timespec>& ctime);
  // After a write-out has committed (io held exclusively).
  void finish_flush(OpenFile& file);
  void flusher_loop();
  // Writes out dirty files in batches: all of them, or those closed or dirty for an
  // interval.
  void write_out(bool everything);
  void flush_all();

  Store& store_;
  const FsOptions options_;
  Namespace namespace_;
  FileData data_;
  Xattrs xattrs_;
  Symlinks symlinks_;
  CommitQueue queue_;

  std::mutex live_mutex_;  // never held while waiting on the commit queue
  std::unordered_map<std::uint64_t, LiveInode> live_;
  std::atomic<std::uint64_t> dirty_total_{0};
  std::atomic<bool> posix_acls_{false};

  std::mutex space_mutex_;
  std::chrono::steady_clock::time_point space_checked_{};
  std::uint64_t space_available_ = 0;  // bytes, as of space_checked_
  std::uint64_t space_reserve_ = 0;

  std::mutex flusher_mutex_;
  std::condition_variable flusher_wake_;
  bool flusher_stop_ = false;
  std::thread flusher_;
};

}  // namespace casfs
