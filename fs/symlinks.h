// Symbolic link targets: symlinks: ino (u64 BE) → target bytes.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "store/lmdb.h"

namespace casfs {

inline constexpr std::size_t kMaxSymlinkLength = 4095;  // PATH_MAX less the NUL

class Symlinks {
 public:
  // Opens (creating) the table; call before any transaction that uses it begins.
  explicit Symlinks(LmdbEnv& env);

  void set(LmdbTxn& txn, std::uint64_t ino, std::string_view target);
  // Throws FsError(EIO) when the link has no stored target.
  std::string get(const LmdbTxn& txn, std::uint64_t ino) const;
  void remove(LmdbTxn& txn, std::uint64_t ino);

 private:
  MDB_dbi db_;
};

}  // namespace casfs
