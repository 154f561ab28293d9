// fsck: an offline check (and, asked, repair) of a whole store and the filesystem in
// it, run while nothing has the store open:
//   - the index: readable and this store's (rebuilt from packs and loose files if not);
//   - the namespace: dirents ↔ dirslots, every name → an existing inode of its
//     d_type, directories' parent fields, nlink counts, orphans a crash left, inodes
//     with no name (attached under /lost+found, as e2fsck does), the inode counter;
//   - file data: extents ordered, inside the file, naming indexed objects of their
//     length; `allocated` = the sum of extent lengths; symlink targets; records of
//     inodes that no longer exist;
//   - objects: every refcount = the number of extents naming it; every object's bytes
//     re-hashed (Store::verify), each bad one reported with the files that use it.
// Files whose data is lost (a missing or damaged object) are listed by path; repair
// never deletes a user's file.
//
// Repair works on the same in-memory picture of the tables as the check, changing it
// and the tables together in one write transaction, so later checks see earlier
// repairs and a check without repair reports what a repair would change.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace casfs {

enum class FsckKind {
  kIndex,        // the object index is missing, unreadable or another store's
  kNamespace,    // the namespace's own records (format, root, inode counter)
  kInode,        // an inode record that does not decode or names another inode
  kEntry,        // a name for a missing inode, in a non-directory, of the wrong d_type
  kSlot,         // dirents and dirslots disagree, or a slot past next_slot
  kParent,       // a directory's parent field, or a directory with several names
  kNlink,        // nlink differs from the names (and subdirectories) found
  kUnreachable,  // an inode no path from / reaches
  kLeakedInode,  // nlink 0, no name, and not recorded as an orphan
  kOrphan,       // nlink 0, recorded: a file deleted while open (not an error)
  kExtent,       // extents overlapping, past the end, malformed, of another length
  kDataLost,     // extents naming objects the index does not have
  kAllocated,    // a regular file's allocated bytes differ from its extents'
  kSymlink,      // a symbolic link without a target, or with the wrong size
  kStray,        // extents, xattrs, symlink or orphan records of no (fitting) inode
  kRefcount,     // an object's refcount differs from the extents naming it
  kBadObject,    // an object whose bytes do not check (Store::verify)
};

// "nlink", "data-lost", ...: the kind as the command prints it.
const char* fsck_kind_name(FsckKind kind);
// Everything but kOrphan: a recorded orphan is the state a crash is meant to leave.
bool fsck_kind_is_error(FsckKind kind);

struct FsckProblem {
  FsckKind kind;
  std::string what;  // one line, naming paths where there are any
  std::string fix;   // what repair does about it; empty when nothing can be done
  bool repaired = false;
};

struct FsckCounts {
  std::uint64_t inodes = 0;
  std::uint64_t directories = 0;
  std::uint64_t files = 0;  // regular files
  std::uint64_t symlinks = 0;
  std::uint64_t extents = 0;
  std::uint64_t objects = 0;         // index entries checked
  std::uint64_t bytes_verified = 0;  // object bytes re-hashed
};

struct FsckReport {
  std::vector<FsckProblem> problems;
  FsckCounts counts;
  // The store holds no filesystem yet (never mounted): only the objects were checked.
  bool no_filesystem = false;
  bool index_rebuilt = false;
  // Objects nobody references once the repairs are made (a check counts as if they
  // were): allowed, gc's to remove. With repair, gc has removed them and `gc` says
  // what it did.
  std::vector<ObjectId> unreferenced;
  std::uint64_t unreferenced_bytes = 0;
  std::optional<GcReport> gc;
  // Every path (each name of each file) whose data is lost, sorted; names escaped
  // as in problem lines (\\, \n, \xHH for other control bytes).
  std::vector<std::string> lost_files;
  std::uint64_t files_lost = 0;  // the files behind lost_files (a file may have many names)

  std::uint64_t errors() const;           // problems that are errors
  std::uint64_t errors_repaired() const;  // of those, repaired
  bool clean() const { return errors() == 0; }
};

struct FsckOptions {
  bool repair = false;
  ProgressFn progress;  // during the object check, the long part
};

// Checks (and with options.repair, repairs) the store in `dir`. Throws StoreError
// for what keeps fsck from running at all: no store there, a newer format, the
// store in use (code EBUSY: a mounted filesystem holds its lock), I/O errors.
FsckReport run_fsck(const std::filesystem::path& dir, const FsckOptions& options);

}  // namespace casfs
