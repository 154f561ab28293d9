#include "fs/xattrs.h"

#include <sys/xattr.h>

#include <cstring>

#include "fs/fs_error.h"
#include "store/byte_order.h"

namespace casfs {

namespace {

std::vector<std::byte> key_of(std::uint64_t ino, std::string_view name) {
  std::vector<std::byte> key(8 + name.size());
  put_be64(key.data(), ino);
  // An empty name (remove_all's prefix) may have a null data(): memcpy from null
  // is undefined even for zero bytes.
  if (!name.empty()) std::memcpy(key.data() + 8, name.data(), name.size());
  return key;
}

void check_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxXattrNameLength)
    throw FsError(ERANGE, "extended attribute name of " + std::to_string(name.size()) +
                              " bytes (1 to 255 allowed)");
}

}  // namespace

Xattrs::Xattrs(LmdbEnv& env) : db_(env.open_db("xattrs")) {}

void Xattrs::set(LmdbTxn& txn, std::uint64_t ino, std::string_view name, Bytes value, int flags) {
  check_name(name);
  if (value.size() > kMaxXattrValueSize)
    throw FsError(E2BIG, "extended attribute value of " + std::to_string(value.size()) +
                             " bytes (at most 65536 allowed)");
  auto key = key_of(ino, name);
  const bool exists = txn.get(db_, key).has_value();
  if ((flags & XATTR_CREATE) && exists)
    throw FsError(EEXIST, "extended attribute " + std::string(name) + " exists");
  if ((flags & XATTR_REPLACE) && !exists)
    throw FsError(ENODATA, "no extended attribute " + std::string(name));
  txn.put(db_, key, value);
}

std::optional<std::vector<std::byte>> Xattrs::get(const LmdbTxn& txn, std::uint64_t ino,
                                                  std::string_view name) const {
  check_name(name);
  auto value = txn.get(db_, key_of(ino, name));
  if (!value) return std::nullopt;
  return std::vector<std::byte>(value->begin(), value->end());
}

std::string Xattrs::list(const LmdbTxn& txn, std::uint64_t ino) const {
  std::string out;
  LmdbCursor cursor(txn, db_);
  auto prefix = key_of(ino, {});
  for (bool ok = cursor.seek(prefix); ok; ok = cursor.next()) {
    Bytes key = cursor.key();
    if (key.size() < 8 || get_be64(key.data()) != ino) break;
    out.append(reinterpret_cast<const char*>(key.data()) + 8, key.size() - 8);
    out.push_back('\0');
  }
  return out;
}

void Xattrs::remove(LmdbTxn& txn, std::uint64_t ino, std::string_view name) {
  check_name(name);
  if (!txn.del(db_, key_of(ino, name)))
    throw FsError(ENODATA, "no extended attribute " + std::string(name));
}

void Xattrs::remove_all(LmdbTxn& txn, std::uint64_t ino) {
  std::vector<std::vector<std::byte>> keys;
  {
    LmdbCursor cursor(txn, db_);
    auto prefix = key_of(ino, {});
    for (bool ok = cursor.seek(prefix); ok; ok = cursor.next()) {
      Bytes key = cursor.key();
      if (key.size() < 8 || get_be64(key.data()) != ino) break;
      keys.emplace_back(key.begin(), key.end());
    }
  }
  for (const auto& key : keys) txn.del(db_, key);
}

}  // namespace casfs
