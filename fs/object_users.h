// Which files use given objects: verify reports a damaged object together with the
// paths of the files that read it.
//
// A read-only scan of two of the filesystem's tables, with the layouts it relies on
// (from fs/file_data.h and fs/namespace.h):
//   extents: ino (u64 BE) + file offset (u64 BE) → object id (32 bytes) + length (u64 LE)
//   dirents: parent (u64 BE) + name bytes → child ino (u64 LE), d_type (u8), slot (u64 LE)
// Both are walked whole, once per question: this is for rare reports, not for
// anything a request waits on.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "store/hash.h"
#include "store/lmdb.h"

namespace casfs {

class ObjectUsers {
 public:
  // Opens the tables (they exist already: the filesystem made them). Takes LMDB's
  // writer lock for a moment, as every open_db does, so call it at start-up.
  explicit ObjectUsers(LmdbEnv& env);

  // For each of `ids` that some file uses, the paths of those files from the root
  // ("/dir/name", every hard link), sorted; a file with no name left (unlinked while
  // open) shows as "(unlinked inode N)".
  std::map<ObjectId, std::vector<std::string>> paths_using(const LmdbTxn& txn,
                                                           const std::vector<ObjectId>& ids) const;

 private:
  MDB_dbi extents_;
  MDB_dbi dirents_;
};

}  // namespace casfs
