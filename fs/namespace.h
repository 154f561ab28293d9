// The filesystem namespace in the shared LMDB environment:
//   inodes:   ino (u64 BE) → Inode
//   dirents:  parent (u64 BE) + name bytes → child ino (u64 LE), d_type (u8), slot (u64 LE)
//   dirslots: parent (u64 BE) + slot (u64 BE) → child ino (u64 LE), d_type (u8), name bytes
//   orphans:  ino (u64 BE) → nothing; inodes with no names that still need freeing
//   fs_meta:  the next inode number and the namespace format version
// Keys start with the parent so a directory's entries are contiguous: lookups are one
// B-tree search and listings one cursor walk, whatever the directory's size.
//
// Every operation takes the caller's transaction, so the filesystem can batch many
// operations, and the store refcounts they imply, into one commit. Operations check
// everything before they change anything, so a failed one leaves the transaction as it
// was and the caller can go on using it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "fs/inode.h"
#include "store/lmdb.h"

namespace casfs {

inline constexpr std::uint64_t kRootIno = 1;
inline constexpr std::size_t kMaxNameLength = 255;
inline constexpr std::uint64_t kMaxLinks = 65000;

// The renameat2 flags, with the kernel's values so the FUSE layer can pass them on.
inline constexpr unsigned kRenameNoReplace = 1;
inline constexpr unsigned kRenameExchange = 2;

struct DirEntry {
  std::uint64_t ino = 0;
  std::uint8_t d_type = 0;
  std::uint64_t slot = 0;  // 0 for "." and "..", which have no stored entry
};

// Valid only inside the readdir callback: the name points into the database.
struct DirEntryView {
  std::uint64_t ino = 0;
  std::uint8_t d_type = 0;
  std::string_view name;
};

struct UnlinkResult {
  std::uint64_t ino = 0;
  std::uint64_t nlink = 0;  // after the unlink; at 0 the caller orphans or frees the inode
};

struct RenameResult {
  // The inode that lost a name because it was renamed over, and its nlink now; at 0
  // the caller orphans or frees it (a replaced empty directory is always at 0).
  std::optional<std::uint64_t> replaced_ino;
  std::uint64_t replaced_nlink = 0;
};

class Namespace {
 public:
  static constexpr std::uint32_t kFormatVersion = 1;

  // Opens (creating) the tables; call before any transaction that uses them begins.
  explicit Namespace(LmdbEnv& env);

  // Creates the root directory (kRootIno) with permissions `root_mode` unless it exists.
  void format(LmdbTxn& txn, std::uint32_t root_mode, std::uint32_t uid, std::uint32_t gid,
              Timespec now);

  std::optional<Inode> get(const LmdbTxn& txn, std::uint64_t ino) const;
  void put(LmdbTxn& txn, const Inode& inode);

  // The entry `name` in directory `parent`, "." and ".." included; nullopt when absent.
  // Throws ENOENT / ENOTDIR for a missing or non-directory parent.
  std::optional<DirEntry> lookup(const LmdbTxn& txn, std::uint64_t parent,
                                 std::string_view name) const;

  // Makes a new inode of any type (S_IFMT bits of `mode`; none means a regular file)
  // named `name` in `parent`.
  Inode create(LmdbTxn& txn, std::uint64_t parent, std::string_view name, std::uint32_t mode,
               std::uint32_t uid, std::uint32_t gid, std::uint64_t rdev, Timespec now);

  // A new name for the non-directory `ino`.
  void link(LmdbTxn& txn, std::uint64_t ino, std::uint64_t new_parent, std::string_view new_name,
            Timespec now);

  // Removes a non-directory's name. The inode stays, even at nlink 0: open files keep
  // it alive, so the caller decides when to free it (add_orphan / free_inode).
  UnlinkResult unlink(LmdbTxn& txn, std::uint64_t parent, std::string_view name, Timespec now);

  // Removes an empty directory's name and returns its inode, which stays with nlink 0
  // (an open handle can still stat it) for the caller to orphan or free. Nothing can
  // be looked up in it or added to it any more, and it lists as empty.
  std::uint64_t rmdir(LmdbTxn& txn, std::uint64_t parent, std::string_view name, Timespec now);

  // renameat2 with flags 0, kRenameNoReplace or kRenameExchange.
  RenameResult rename(LmdbTxn& txn, std::uint64_t old_parent, std::string_view old_name,
                      std::uint64_t new_parent, std::string_view new_name, unsigned flags,
                      Timespec now);

  // Lists `dir` from after `cookie` (0: from the start). "." and ".." come first with
  // cookies 1 and 2, stored entries follow in slot order with cookie slot + 3. `emit`
  // gets each entry and the cookie that resumes after it; returning false means the
  // entry was not taken (buffer full) and stops the listing. Entries added while a
  // listing is under way appear after it resumes, removed ones vanish, and nothing is
  // repeated or skipped, because slots only grow.
  void readdir(
      const LmdbTxn& txn, std::uint64_t dir, std::uint64_t cookie,
      const std::function<bool(const DirEntryView& entry, std::uint64_t next_cookie)>& emit) const;

  // Inodes with nlink 0 still held open; recorded so that a crash does not leak them.
  void add_orphan(LmdbTxn& txn, std::uint64_t ino);
  void remove_orphan(LmdbTxn& txn, std::uint64_t ino);
  std::vector<std::uint64_t> orphans(const LmdbTxn& txn) const;

  // Erases the inode record (and any orphan record). The caller releases its data first.
  void free_inode(LmdbTxn& txn, std::uint64_t ino);

  // How many inodes exist (for statfs).
  std::uint64_t inode_count(const LmdbTxn& txn) const;

  // --- for fsck ---------------------------------------------------------------
  // Raw access to the tables, without the checks and the nlink and slot bookkeeping
  // of the operations above: fsck must read tables that break those rules, and it
  // repairs them record by record. Nothing else should need these.

  // Every inode record in ino order; `inode` is null when the record does not decode.
  void for_each_inode(
      const LmdbTxn& txn,
      const std::function<void(std::uint64_t ino, const Inode* inode)>& visit) const;
  // Every directory entry in (parent, name) order; `entry` is null when its value is
  // malformed.
  void for_each_dirent(const LmdbTxn& txn,
                       const std::function<void(std::uint64_t parent, std::string_view name,
                                                const DirEntry* entry)>& visit) const;
  // Every readdir slot in (parent, slot) order; `entry` is null when its value is
  // malformed.
  void for_each_dirslot(const LmdbTxn& txn,
                        const std::function<void(std::uint64_t parent, std::uint64_t slot,
                                                 const DirEntryView* entry)>& visit) const;
  // The format version fs_meta records; nullopt on a store never mounted.
  std::optional<std::uint32_t> format_version(const LmdbTxn& txn) const;
  // The inode number the next create gets; nullopt when unformatted or malformed.
  std::optional<std::uint64_t> next_ino(const LmdbTxn& txn) const;
  void set_next_ino(LmdbTxn& txn, std::uint64_t ino);
  // Writes both halves of an entry (dirents and dirslots), or deletes one half.
  void put_entry(LmdbTxn& txn, std::uint64_t parent, std::string_view name, const DirEntry& entry);
  void erase_dirent(LmdbTxn& txn, std::uint64_t parent, std::string_view name);
  void erase_dirslot(LmdbTxn& txn, std::uint64_t parent, std::uint64_t slot);

 private:
  Inode must_get(const LmdbTxn& txn, std::uint64_t ino) const;
  Inode must_get_dir(const LmdbTxn& txn, std::uint64_t ino) const;
  std::optional<DirEntry> find(const LmdbTxn& txn, std::uint64_t parent,
                               std::string_view name) const;
  bool is_empty_dir(const LmdbTxn& txn, std::uint64_t dir) const;
  // True when `ancestor` is `dir` or one of the directories above it.
  bool is_ancestor(const LmdbTxn& txn, std::uint64_t ancestor, std::uint64_t dir) const;
  std::uint64_t allocate_ino(LmdbTxn& txn);
  // Adds `name` to `dir` with the directory's next slot (the caller stores `dir`).
  void add_entry(LmdbTxn& txn, Inode& dir, std::string_view name, std::uint64_t ino,
                 std::uint8_t d_type);
  void write_entry(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                   const DirEntry& entry);
  void remove_entry(LmdbTxn& txn, std::uint64_t parent, std::string_view name,
                    const DirEntry& entry);

  MDB_dbi inodes_;
  MDB_dbi dirents_;
  MDB_dbi dirslots_;
  MDB_dbi orphans_;
  MDB_dbi meta_;
};

}  // namespace casfs
