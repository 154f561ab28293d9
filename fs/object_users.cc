#include "fs/object_users.h"

#include <dirent.h>

#include <algorithm>
#include <set>
#include <unordered_map>
#include <utility>

#include "fs/namespace.h"
#include "store/byte_order.h"

namespace casfs {

namespace {
constexpr std::size_t kExtentKeySize = 16;
constexpr std::size_t kExtentValueMin = 32;  // the object id comes first
constexpr std::size_t kDirentValueMin = 9;   // child ino, then d_type
// Deeper than any real tree; stops a walk up a damaged table that loops.
constexpr int kMaxDepth = 4096;
}  // namespace

ObjectUsers::ObjectUsers(LmdbEnv& env)
    : extents_(env.open_db("extents")), dirents_(env.open_db("dirents")) {}

std::map<ObjectId, std::vector<std::string>> ObjectUsers::paths_using(
    const LmdbTxn& txn, const std::vector<ObjectId>& ids) const {
  const std::set<ObjectId> wanted(ids.begin(), ids.end());
  std::map<std::uint64_t, std::set<ObjectId>> users;  // ino → the wanted objects it names
  {
    LmdbCursor cursor(txn, extents_);
    for (bool ok = cursor.first(); ok; ok = cursor.next()) {
      Bytes key = cursor.key(), value = cursor.value();
      if (key.size() != kExtentKeySize || value.size() < kExtentValueMin) continue;
      ObjectId id = ObjectId::from_bytes(value.first(32));
      if (wanted.contains(id)) users[get_be64(key.data())].insert(id);
    }
  }
  std::map<ObjectId, std::vector<std::string>> result;
  if (users.empty()) return result;

  // A directory has one name, so its entry says where it hangs; files may have many.
  std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::string>> dir_name;
  std::map<std::uint64_t, std::vector<std::pair<std::uint64_t, std::string>>> file_names;
  {
    LmdbCursor cursor(txn, dirents_);
    for (bool ok = cursor.first(); ok; ok = cursor.next()) {
      Bytes key = cursor.key(), value = cursor.value();
      if (key.size() < 8 || value.size() < kDirentValueMin) continue;
      const std::uint64_t parent = get_be64(key.data());
      std::string name(reinterpret_cast<const char*>(key.data() + 8), key.size() - 8);
      const auto child = get_le<std::uint64_t>(value.data());
      if (static_cast<std::uint8_t>(value[8]) == DT_DIR) dir_name[child] = {parent, name};
      if (users.contains(child)) file_names[child].emplace_back(parent, std::move(name));
    }
  }
  auto dir_path = [&](std::uint64_t dir) {
    std::string path;
    for (int depth = 0; dir != kRootIno; ++depth) {
      auto it = dir_name.find(dir);
      if (it == dir_name.end() || depth == kMaxDepth)
        return "(directory " + std::to_string(dir) + ")" + path;
      path = "/" + it->second.second + path;
      dir = it->second.first;
    }
    return path;
  };
  for (const auto& [ino, objects] : users) {
    std::vector<std::string> paths;
    auto it = file_names.find(ino);
    if (it == file_names.end()) {
      paths.push_back("(unlinked inode " + std::to_string(ino) + ")");
    } else {
      for (const auto& [parent, name] : it->second) paths.push_back(dir_path(parent) + "/" + name);
    }
    for (const ObjectId& id : objects) {
      auto& out = result[id];
      out.insert(out.end(), paths.begin(), paths.end());
    }
  }
  for (auto& [id, paths] : result) {
    std::sort(paths.begin(), paths.end());
    paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  }
  return result;
}

}  // namespace casfs
