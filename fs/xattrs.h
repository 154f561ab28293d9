// Extended attributes: xattrs: ino (u64 BE) + name bytes → value bytes.
// A file's attributes are contiguous, so listing them is one cursor walk.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/lmdb.h"

namespace casfs {

inline constexpr std::size_t kMaxXattrNameLength = 255;   // XATTR_NAME_MAX
inline constexpr std::size_t kMaxXattrValueSize = 65536;  // XATTR_SIZE_MAX

class Xattrs {
 public:
  // Opens (creating) the table; call before any transaction that uses it begins.
  explicit Xattrs(LmdbEnv& env);

  // setxattr(2): flags XATTR_CREATE (EEXIST if present) or XATTR_REPLACE (ENODATA
  // if absent). Throws FsError(ERANGE / E2BIG) for names or values that are too long.
  void set(LmdbTxn& txn, std::uint64_t ino, std::string_view name, Bytes value, int flags);
  std::optional<std::vector<std::byte>> get(const LmdbTxn& txn, std::uint64_t ino,
                                            std::string_view name) const;
  // Names, each followed by a NUL, as listxattr(2) returns them.
  std::string list(const LmdbTxn& txn, std::uint64_t ino) const;
  // Throws FsError(ENODATA) when absent.
  void remove(LmdbTxn& txn, std::uint64_t ino, std::string_view name);
  void remove_all(LmdbTxn& txn, std::uint64_t ino);

 private:
  MDB_dbi db_;
};

}  // namespace casfs
