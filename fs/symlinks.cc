#include "fs/symlinks.h"

#include <array>

#include "fs/fs_error.h"
#include "store/byte_order.h"

namespace casfs {

namespace {
std::array<std::byte, 8> key_of(std::uint64_t ino) {
  std::array<std::byte, 8> key;
  put_be64(key.data(), ino);
  return key;
}
}  // namespace

Symlinks::Symlinks(LmdbEnv& env) : db_(env.open_db("symlinks")) {}

void Symlinks::set(LmdbTxn& txn, std::uint64_t ino, std::string_view target) {
  if (target.empty()) throw FsError(ENOENT, "a symbolic link needs a target");
  if (target.size() > kMaxSymlinkLength)
    throw FsError(ENAMETOOLONG, "symbolic link target of " + std::to_string(target.size()) +
                                    " bytes (at most 4095 allowed)");
  txn.put(db_, key_of(ino), as_bytes(target));
}

std::string Symlinks::get(const LmdbTxn& txn, std::uint64_t ino) const {
  auto value = txn.get(db_, key_of(ino));
  if (!value) throw FsError(EIO, "symbolic link " + std::to_string(ino) + " has no target");
  return std::string(reinterpret_cast<const char*>(value->data()), value->size());
}

void Symlinks::remove(LmdbTxn& txn, std::uint64_t ino) {
  txn.del(db_, key_of(ino));
}

}  // namespace casfs
