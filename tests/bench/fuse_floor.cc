// casfs_fuse_floor: what FUSE itself costs, for the filesystem benchmark.
//
// A FUSE daemon that does no work: its tree lives in memory, a WRITE only moves the
// file's size, a READ answers zeros, and nothing reaches a disk. It is mounted like
// casfs (the same capabilities, the same threads, FUSE over io_uring with -o uring),
// so the kernel sends it the same requests for the same workload. Its times are the
// floor of any FUSE filesystem on the machine: the kernel's share, the round trips
// and the switches between the caller and the daemon, which casfs can never go
// below. fs_bench.sh runs it beside ext4 and casfs; see tests/bench/README.md.
//
//   casfs_fuse_floor MOUNTPOINT [-o uring]
//
// Serves in the foreground until unmounted (fusermount3 -u MOUNTPOINT).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fs/fuse_mount.h"
#include "fs/fuse_ops.h"

namespace {

struct Node {
  struct stat attr {};
  std::map<std::string, fuse_ino_t, std::less<>> entries;  // a directory's names
  std::string target;                                      // a symlink's target
};

// The whole filesystem, behind one lock: no request holds it for more than a lookup.
class Tree {
 public:
  Tree() {
    Node& root = nodes_[FUSE_ROOT_ID];
    fill(root, FUSE_ROOT_ID, S_IFDIR | 0755, 0, 0);
    root.attr.st_nlink = 2;
  }

  std::mutex mutex;

  Node* find(fuse_ino_t ino) {
    const auto it = nodes_.find(ino);
    return it == nodes_.end() ? nullptr : &it->second;
  }
  // The new node `name` in directory `parent`, or an errno.
  int add(fuse_ino_t parent, const char* name, mode_t mode, const fuse_ctx* caller, Node** added) {
    Node* dir = find(parent);
    if (dir == nullptr) return ENOENT;
    if (!S_ISDIR(dir->attr.st_mode)) return ENOTDIR;
    if (dir->entries.contains(name)) return EEXIST;
    const fuse_ino_t ino = next_ino_++;
    Node& node = nodes_[ino];
    // The kernel leaves the umask to the daemon when it enforces POSIX ACLs.
    if (acls_) mode &= ~(caller->umask & 0777);
    fill(node, ino, mode, caller->uid, caller->gid);
    dir->entries.emplace(name, ino);
    if (S_ISDIR(mode)) dir->attr.st_nlink++;  // the new directory's ".."
    touch(*dir);
    *added = &node;
    return 0;
  }
  void set_acls(bool acls) { acls_ = acls; }

  static timespec now() {
    timespec t{};
    clock_gettime(CLOCK_REALTIME, &t);
    return t;
  }
  static void touch(Node& node) { node.attr.st_mtim = node.attr.st_ctim = now(); }

 private:
  static void fill(Node& node, fuse_ino_t ino, mode_t mode, uid_t uid, gid_t gid) {
    node.attr.st_ino = ino;
    node.attr.st_mode = mode;
    node.attr.st_nlink = S_ISDIR(mode) ? 2 : 1;
    node.attr.st_uid = uid;
    node.attr.st_gid = gid;
    node.attr.st_blksize = 4096;
    node.attr.st_atim = node.attr.st_mtim = node.attr.st_ctim = now();
  }

  std::unordered_map<fuse_ino_t, Node> nodes_;
  fuse_ino_t next_ino_ = FUSE_ROOT_ID + 1;
  bool acls_ = false;
};

Tree tree;
constexpr double kTimeout = 1.0;  // as casfs's default attribute and entry timeouts

fuse_entry_param entry_of(const Node& node) {
  fuse_entry_param e{};
  e.ino = node.attr.st_ino;
  e.attr = node.attr;
  e.attr_timeout = kTimeout;
  e.entry_timeout = kTimeout;
  return e;
}

void reply_entry(fuse_req_t req, const Node& node) {
  const fuse_entry_param e = entry_of(node);
  fuse_reply_entry(req, &e);
}

void floor_init(void* userdata, fuse_conn_info* conn) {
  tree.set_acls(casfs::choose_capabilities(*static_cast<casfs::FuseContext*>(userdata), conn));
}

void floor_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  std::unique_lock lock(tree.mutex);
  const Node* dir = tree.find(parent);
  if (dir == nullptr) return (void)fuse_reply_err(req, ENOENT);
  const auto it = dir->entries.find(std::string_view(name));
  if (it != dir->entries.end()) return reply_entry(req, *tree.find(it->second));
  fuse_entry_param none{};
  none.entry_timeout = kTimeout;
  fuse_reply_entry(req, &none);
}

void floor_forget(fuse_req_t req, fuse_ino_t, uint64_t) {
  fuse_reply_none(req);
}

void floor_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  std::unique_lock lock(tree.mutex);
  const Node* node = tree.find(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  fuse_reply_attr(req, &node->attr, kTimeout);
}

void floor_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  std::unique_lock lock(tree.mutex);
  Node* node = tree.find(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  struct stat& st = node->attr;
  if (to_set & FUSE_SET_ATTR_MODE) st.st_mode = (st.st_mode & S_IFMT) | (attr->st_mode & 07777);
  if (to_set & FUSE_SET_ATTR_UID) st.st_uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) st.st_gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) st.st_size = attr->st_size;
  const timespec now = Tree::now();
  if (to_set & FUSE_SET_ATTR_ATIME) st.st_atim = attr->st_atim;
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) st.st_atim = now;
  if (to_set & FUSE_SET_ATTR_MTIME) st.st_mtim = attr->st_mtim;
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) st.st_mtim = now;
  st.st_ctim = (to_set & FUSE_SET_ATTR_CTIME) ? attr->st_ctim : now;
  fuse_reply_attr(req, &st, kTimeout);
}

void make(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
          const char* target = nullptr, fuse_file_info* fi = nullptr) {
  std::unique_lock lock(tree.mutex);
  Node* node = nullptr;
  if (const int error = tree.add(parent, name, mode, fuse_req_ctx(req), &node))
    return (void)fuse_reply_err(req, error);
  if (target != nullptr) {
    node->target = target;
    node->attr.st_size = static_cast<off_t>(node->target.size());
  }
  if (fi == nullptr) return reply_entry(req, *node);
  fi->keep_cache = 1;
  const fuse_entry_param e = entry_of(*node);
  fuse_reply_create(req, &e, fi);
}

void floor_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  make(req, parent, name, mode);
}
void floor_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  make(req, parent, name, S_IFDIR | (mode & 07777));
}
void floor_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  make(req, parent, name, S_IFLNK | 0777, target);
}
void floor_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                  fuse_file_info* fi) {
  make(req, parent, name, S_IFREG | (mode & 07777), nullptr, fi);
}

void floor_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) {
  std::unique_lock lock(tree.mutex);
  Node* node = tree.find(ino);
  Node* dir = tree.find(parent);
  if (node == nullptr || dir == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (!dir->entries.emplace(name, ino).second) return (void)fuse_reply_err(req, EEXIST);
  node->attr.st_nlink++;
  Tree::touch(*dir);
  reply_entry(req, *node);
}

void remove_entry(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_dir) {
  std::unique_lock lock(tree.mutex);
  Node* dir = tree.find(parent);
  if (dir == nullptr) return (void)fuse_reply_err(req, ENOENT);
  const auto it = dir->entries.find(std::string_view(name));
  if (it == dir->entries.end()) return (void)fuse_reply_err(req, ENOENT);
  Node* node = tree.find(it->second);
  if (is_dir != S_ISDIR(node->attr.st_mode))
    return (void)fuse_reply_err(req, is_dir ? ENOTDIR : EISDIR);
  if (is_dir && !node->entries.empty()) return (void)fuse_reply_err(req, ENOTEMPTY);
  dir->entries.erase(it);
  if (is_dir) dir->attr.st_nlink--;
  node->attr.st_nlink = is_dir ? 0 : node->attr.st_nlink - 1;
  Tree::touch(*dir);
  fuse_reply_err(req, 0);
}
void floor_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  remove_entry(req, parent, name, false);
}
void floor_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  remove_entry(req, parent, name, true);
}

void floor_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
                  const char* new_name, unsigned int flags) {
  std::unique_lock lock(tree.mutex);
  Node* from = tree.find(parent);
  Node* to = tree.find(new_parent);
  if (from == nullptr || to == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (flags & RENAME_EXCHANGE) return (void)fuse_reply_err(req, EINVAL);
  const auto it = from->entries.find(std::string_view(name));
  if (it == from->entries.end()) return (void)fuse_reply_err(req, ENOENT);
  const fuse_ino_t ino = it->second;
  const auto there = to->entries.find(std::string_view(new_name));
  if (there != to->entries.end()) {
    if (flags & RENAME_NOREPLACE) return (void)fuse_reply_err(req, EEXIST);
    tree.find(there->second)->attr.st_nlink = 0;
    to->entries.erase(there);
  }
  from->entries.erase(from->entries.find(std::string_view(name)));
  to->entries.emplace(new_name, ino);
  Tree::touch(*from);
  Tree::touch(*to);
  fuse_reply_err(req, 0);
}

void floor_readlink(fuse_req_t req, fuse_ino_t ino) {
  std::unique_lock lock(tree.mutex);
  const Node* node = tree.find(ino);
  if (node == nullptr || !S_ISLNK(node->attr.st_mode)) return (void)fuse_reply_err(req, EINVAL);
  fuse_reply_readlink(req, node->target.c_str());
}

void floor_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  std::unique_lock lock(tree.mutex);
  Node* node = tree.find(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (fi->flags & O_TRUNC) node->attr.st_size = 0;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

// No data is kept: a READ answers zeros up to the file's size.
void floor_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  static const std::vector<char> zeros(1 << 20);
  off_t file_size = 0;
  {
    std::unique_lock lock(tree.mutex);
    if (const Node* node = tree.find(ino)) file_size = node->attr.st_size;
  }
  const off_t left = std::max<off_t>(0, file_size - offset);
  fuse_reply_buf(req, zeros.data(), std::min({size, zeros.size(), static_cast<size_t>(left)}));
}

void floor_write(fuse_req_t req, fuse_ino_t ino, const char*, size_t size, off_t offset,
                 fuse_file_info*) {
  std::unique_lock lock(tree.mutex);
  Node* node = tree.find(ino);
  if (node == nullptr) return (void)fuse_reply_err(req, ENOENT);
  node->attr.st_size = std::max<off_t>(node->attr.st_size, offset + static_cast<off_t>(size));
  Tree::touch(*node);
  fuse_reply_write(req, size);
}

// As casfs: no FLUSH round trip at each close.
void floor_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, ENOSYS);
}
void floor_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}
void floor_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

void list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, bool plus) {
  std::unique_lock lock(tree.mutex);
  const Node* dir = tree.find(ino);
  if (dir == nullptr) return (void)fuse_reply_err(req, ENOENT);
  std::vector<char> buffer(size);
  size_t used = 0;
  off_t next = 0;
  for (const auto& [name, child] : dir->entries) {
    if (next++ < offset) continue;
    const Node& node = *tree.find(child);
    char* at = buffer.data() + used;
    const fuse_entry_param e = entry_of(node);
    const size_t need = plus ? fuse_add_direntry_plus(req, at, size - used, name.c_str(), &e, next)
                             : fuse_add_direntry(req, at, size - used, name.c_str(), &e.attr, next);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buffer.data(), used);
}
void floor_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  list(req, ino, size, offset, false);
}
// The kernel counts a lookup for each entry it takes; the floor never forgets anyway.
void floor_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  list(req, ino, size, offset, true);
}

void floor_getxattr(fuse_req_t req, fuse_ino_t, const char*, size_t) {
  fuse_reply_err(req, ENODATA);
}
void floor_listxattr(fuse_req_t req, fuse_ino_t, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, 0);
  fuse_reply_buf(req, nullptr, 0);
}
void floor_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  fuse_reply_err(req, ENOTSUP);
}

fuse_lowlevel_ops floor_operations() {
  fuse_lowlevel_ops ops{};
  ops.init = floor_init;
  ops.lookup = floor_lookup;
  ops.forget = floor_forget;
  ops.getattr = floor_getattr;
  ops.setattr = floor_setattr;
  ops.readlink = floor_readlink;
  ops.mknod = floor_mknod;
  ops.mkdir = floor_mkdir;
  ops.unlink = floor_unlink;
  ops.rmdir = floor_rmdir;
  ops.symlink = floor_symlink;
  ops.rename = floor_rename;
  ops.link = floor_link;
  ops.open = floor_open;
  ops.read = floor_read;
  ops.write = floor_write;
  ops.flush = floor_flush;
  ops.release = floor_release;
  ops.fsync = floor_fsync;
  ops.readdir = floor_readdir;
  ops.readdirplus = floor_readdirplus;
  ops.getxattr = floor_getxattr;
  ops.listxattr = floor_listxattr;
  ops.setxattr = floor_setxattr;
  ops.create = floor_create;
  return ops;
}

int usage() {
  std::fprintf(stderr, "usage: casfs_fuse_floor MOUNTPOINT [-o uring]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && !(argc == 4 && std::strcmp(argv[2], "-o") == 0)) return usage();
  casfs::FuseContext context;
  if (argc == 4) {
    if (std::strcmp(argv[3], "uring") != 0) {
      std::fprintf(stderr, "casfs_fuse_floor: unknown option '%s'; the one option is uring\n",
                   argv[3]);
      return 2;
    }
    if (!casfs::FuseRing::kernel_allows()) {
      std::fprintf(stderr,
                   "casfs_fuse_floor: -o uring, but the kernel's FUSE does not allow io_uring;"
                   " echo Y > /sys/module/fuse/parameters/enable_uring\n");
      return 1;
    }
    context.uring = true;
  }
  try {
    casfs::FuseMount mount(context, argv[1], {"fsname=casfs-floor", "default_permissions"},
                           floor_operations());
    return mount.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "casfs_fuse_floor: %s\n", e.what());
    return 1;
  }
}
