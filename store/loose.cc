#include "store/loose.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <memory>

#include "store/error.h"
#include "store/io_engine.h"

namespace casfs {

namespace {

UniqueFd open_dir(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open " + path.string());
  return fd;
}

std::string prefix_name(unsigned prefix) {
  char name[3];
  std::snprintf(name, sizeof(name), "%02x", prefix & 0xff);
  return name;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

// Opens a directory stream on a fresh fd relative to dir_fd.
DirHandle open_dir_stream(int dir_fd, const std::string& rel) {
  int fd = ::openat(dir_fd, rel.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) ::close(fd);
  return DirHandle(d);
}

}  // namespace

void LooseTier::create_layout(const std::filesystem::path& store_dir) {
  for (unsigned p = 0; p < 256; ++p) {
    std::filesystem::create_directories(store_dir / "loose" / prefix_name(p));
  }
  std::filesystem::create_directories(store_dir / "staging");
}

LooseTier::LooseTier(const std::filesystem::path& store_dir)
    : dir_(store_dir / "loose"),
      loose_dir_(open_dir(store_dir / "loose")),
      staging_dir_(open_dir(store_dir / "staging")) {}

std::string LooseTier::relative_path(const ObjectId& id) {
  std::string hex = id.hex();
  return hex.substr(0, 2) + "/" + hex.substr(2);
}

namespace {
std::string unique_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  return std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
}
}  // namespace

std::string LooseTier::new_staging_name() {
  return unique_suffix() + ".tmp";
}

std::string LooseTier::new_temp_name(const ObjectId& id) {
  return prefix_name(id.bytes[0]) + "/.tmp-" + unique_suffix();
}

void LooseTier::clean_staging() {
  DirHandle d = open_dir_stream(staging_dir_.get(), ".");
  if (!d) return;
  while (dirent* e = ::readdir(d.get())) {
    if (e->d_type != DT_DIR) ::unlinkat(staging_dir_.get(), e->d_name, 0);
  }
}

void LooseTier::remove(IoEngine& io, std::span<const ObjectId> ids) {
  std::vector<std::string> paths;
  paths.reserve(ids.size());
  std::vector<RemoveFileOp> ops(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    paths.push_back(relative_path(ids[i]));
    ops[i].dir_fd = loose_dir_.get();
    ops[i].path = paths.back().c_str();
  }
  io.remove_files(ops);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ops[i].result < 0 && ops[i].result != -ENOENT) {
      throw_errno(-ops[i].result, "cannot remove loose object " + ids[i].hex());
    }
  }
}

UniqueFd LooseTier::open_read(const ObjectId& id) const {
  return UniqueFd(::openat(loose_dir_.get(), relative_path(id).c_str(), O_RDONLY | O_CLOEXEC));
}

void LooseTier::sync_dir_of(const ObjectId& id) const {
  UniqueFd d(::openat(loose_dir_.get(), prefix_name(id.bytes[0]).c_str(),
                      O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d || ::fsync(d.get()) != 0)
    throw_errno("cannot sync " + (dir_ / prefix_name(id.bytes[0])).string());
}

void LooseTier::for_each_in_prefix(
    unsigned prefix,
    const std::function<void(const ObjectId&, const std::string&, bool)>& visit) const {
  std::string pre = prefix_name(prefix);
  DirHandle d = open_dir_stream(loose_dir_.get(), pre);
  if (!d) return;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    auto id = ObjectId::from_hex(pre + name);
    std::string rel = pre + "/" + name;
    if (id && id->hex() == pre + name) {
      visit(*id, rel, true);
    } else {
      visit(ObjectId{}, rel, false);
    }
  }
}

}  // namespace casfs
