// fsck: reads every table of the store into memory once, checks the picture, and,
// when repairing, changes the picture and the tables together in one write
// transaction. The order of the checks matters: each one may rely on what the
// earlier ones settled (entries only in existing directories, then dirents ↔
// dirslots, then each name's inode, then directories' single names, then what is
// reachable, then link counts, then file data, then refcounts from the final extents).
#include "fs/fsck.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "fs/file_data.h"
#include "fs/filesystem.h"
#include "fs/namespace.h"
#include "fs/symlinks.h"
#include "fs/xattrs.h"
#include "store/byte_order.h"
#include "store/index.h"
#include "store/store_config.h"

namespace casfs {

const char* fsck_kind_name(FsckKind kind) {
  switch (kind) {
    case FsckKind::kIndex:
      return "index";
    case FsckKind::kNamespace:
      return "namespace";
    case FsckKind::kInode:
      return "inode";
    case FsckKind::kEntry:
      return "entry";
    case FsckKind::kSlot:
      return "slot";
    case FsckKind::kParent:
      return "parent";
    case FsckKind::kNlink:
      return "nlink";
    case FsckKind::kUnreachable:
      return "unreachable";
    case FsckKind::kLeakedInode:
      return "leaked-inode";
    case FsckKind::kOrphan:
      return "orphan";
    case FsckKind::kExtent:
      return "extent";
    case FsckKind::kDataLost:
      return "data-lost";
    case FsckKind::kAllocated:
      return "allocated";
    case FsckKind::kSymlink:
      return "symlink";
    case FsckKind::kStray:
      return "stray";
    case FsckKind::kRefcount:
      return "refcount";
    case FsckKind::kBadObject:
      return "bad-object";
  }
  return "unknown";
}

bool fsck_kind_is_error(FsckKind kind) {
  return kind != FsckKind::kOrphan;
}

std::uint64_t FsckReport::errors() const {
  return static_cast<std::uint64_t>(
      std::count_if(problems.begin(), problems.end(),
                    [](const FsckProblem& p) { return fsck_kind_is_error(p.kind); }));
}

std::uint64_t FsckReport::errors_repaired() const {
  return static_cast<std::uint64_t>(
      std::count_if(problems.begin(), problems.end(),
                    [](const FsckProblem& p) { return fsck_kind_is_error(p.kind) && p.repaired; }));
}

namespace {

// Refcount problems can number in the millions after an index rebuild: past this
// many, one line sums up the rest.
constexpr std::size_t kMaxRefcountLines = 100;

// One line per problem whatever the names hold.
std::string printable(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

const char* type_name(std::uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symbolic link";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    case S_IFCHR:
      return "character device";
    case S_IFBLK:
      return "block device";
    default:
      return "inode of unknown type";
  }
}

bool valid_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxNameLength && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::string plural(std::uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

using EntryKey = std::pair<std::uint64_t, std::string>;   // (parent, name)
using SlotKey = std::pair<std::uint64_t, std::uint64_t>;  // (parent, slot)

struct Slot {
  std::uint64_t ino = 0;
  std::uint8_t d_type = 0;
  std::string name;
};

struct ObjectRec {
  std::uint64_t refcount = 0;
  std::uint64_t raw_size = 0;
};

class Fsck {
 public:
  Fsck(const std::filesystem::path& dir, const FsckOptions& options)
      : dir_(dir), options_(options), now_(now_timespec()) {}

  FsckReport run();

 private:
  // --- the store and its index ---------------------------------------------------
  bool open_store();  // false: the index is unusable and not being repaired
  std::optional<std::string> index_damage(const StoreConfig& config);
  void load_objects();
  void verify_objects();
  void check_objects(const std::vector<ObjectId>& ids, std::map<ObjectId, std::string>& bad);

  // --- the filesystem's tables ---------------------------------------------------
  void load_tables();
  bool has_filesystem() const;
  bool check_format();
  void check_inode_records();
  void check_next_ino();
  bool check_root();
  void check_entry_parents();
  void check_slots();
  void check_entry_children();
  void check_directory_names();
  void check_reachability();
  void check_nlink();
  void check_orphan_records();
  void check_file_data();
  void check_symlinks_and_xattrs();
  void check_refcounts();
  void report_bad_objects();

  // --- changes: the picture always, the tables when repairing ------------------------
  void put_inode(const Inode& inode);
  void set_entry(std::uint64_t parent, const std::string& name, const DirEntry& entry);
  void erase_dirent(std::uint64_t parent, const std::string& name);
  void erase_slot(std::uint64_t parent, std::uint64_t slot);
  void erase_entry(std::uint64_t parent, const std::string& name);
  void free_inode(std::uint64_t ino);
  void drop_extent(std::uint64_t ino, std::uint64_t offset);
  void drop_extents(std::uint64_t ino);
  void set_next_ino(std::uint64_t next);
  std::uint64_t allocate_slot(std::uint64_t dir);
  // /lost+found, made if missing; nullopt when the name is taken by something else.
  std::optional<std::uint64_t> lost_and_found();
  std::optional<std::string> attach(std::uint64_t ino);

  // --- reporting -----------------------------------------------------------------
  void problem(FsckKind kind, std::string what, std::string fix = {});
  std::string path_of(std::uint64_t ino) const;
  std::string path_in(std::uint64_t parent, std::string_view name) const;
  std::string describe(std::uint64_t ino) const;               // a path, or "inode N (type, size)"
  std::vector<std::string> paths_of(std::uint64_t ino) const;  // every name's path
  const Inode* inode(std::uint64_t ino) const;                 // null when missing or damaged
  Inode* inode(std::uint64_t ino);
  bool is_dir(std::uint64_t ino) const {
    const Inode* n = inode(ino);
    return n && n->is_dir();
  }
  std::vector<std::string> children_names(std::uint64_t dir) const;

  const std::filesystem::path dir_;
  const FsckOptions options_;
  const Timespec now_;
  FsckReport report_;
  bool meta_present_ = false;

  std::unique_ptr<Store> store_;
  std::optional<Namespace> ns_;
  std::optional<FileData> data_;
  std::optional<Xattrs> xattrs_;
  std::optional<Symlinks> symlinks_;
  MDB_dbi xattrs_db_ = 0;
  MDB_dbi symlinks_db_ = 0;
  std::optional<LmdbTxn> txn_;  // the repair transaction; none when only checking

  // The picture of the tables.
  std::map<std::uint64_t, std::optional<Inode>> inodes_;  // nullopt: does not decode
  std::map<EntryKey, DirEntry> dirents_;
  std::set<EntryKey> bad_dirents_;
  std::map<SlotKey, Slot> slots_;
  std::set<SlotKey> bad_slots_;
  std::map<std::uint64_t, std::set<EntryKey>> names_;  // ino → the entries naming it
  std::set<std::uint64_t> orphans_;
  std::map<std::uint64_t, std::vector<Extent>> extents_;
  std::set<std::pair<std::uint64_t, std::uint64_t>> bad_extents_;  // (ino, offset)
  std::set<std::uint64_t> xattr_inos_;
  std::map<std::uint64_t, std::string> symlink_targets_;
  std::optional<std::uint32_t> format_version_;
  std::optional<std::uint64_t> next_ino_;
  std::unordered_map<ObjectId, ObjectRec, ObjectIdHash> objects_;
  // References held by the extents fsck removed: a refcount that counted them was
  // right, and only follows the removal.
  std::unordered_map<ObjectId, std::uint64_t, ObjectIdHash> released_;

  std::map<ObjectId, std::string> bad_objects_;  // found by verify
  std::set<ObjectId> healed_objects_;            // bad, then good after a rebuild
  bool rebuilt_after_verify_ = false;
  std::vector<std::string> bad_packs_;
  std::set<std::uint64_t> lost_;  // inodes whose data is lost
  std::optional<std::uint64_t> lost_found_;
};

// ---------------------------------------------------------------------------------
// Reporting

void Fsck::problem(FsckKind kind, std::string what, std::string fix) {
  const bool repaired = options_.repair && !fix.empty();
  report_.problems.push_back(FsckProblem{kind, std::move(what), std::move(fix), repaired});
}

const Inode* Fsck::inode(std::uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() || !it->second ? nullptr : &*it->second;
}

Inode* Fsck::inode(std::uint64_t ino) {
  auto it = inodes_.find(ino);
  return it == inodes_.end() || !it->second ? nullptr : &*it->second;
}

std::string Fsck::path_of(std::uint64_t ino) const {
  if (ino == kRootIno) return "/";
  std::vector<std::string_view> parts;
  std::set<std::uint64_t> seen;
  std::string prefix;
  for (std::uint64_t cur = ino; cur != kRootIno;) {
    auto it = names_.find(cur);
    if (!seen.insert(cur).second) {
      prefix = "(loop)";
      break;
    }
    if (it == names_.end() || it->second.empty()) {
      prefix = "(inode " + std::to_string(cur) + ")";
      break;
    }
    const EntryKey& name = *it->second.begin();
    parts.push_back(name.second);
    cur = name.first;
  }
  std::string out = prefix;
  for (auto part = parts.rbegin(); part != parts.rend(); ++part) out += "/" + printable(*part);
  return out;
}

std::string Fsck::path_in(std::uint64_t parent, std::string_view name) const {
  return (parent == kRootIno ? std::string() : path_of(parent)) + "/" + printable(name);
}

std::string Fsck::describe(std::uint64_t ino) const {
  auto it = names_.find(ino);
  if (ino == kRootIno || (it != names_.end() && !it->second.empty())) return path_of(ino);
  std::string out = "inode " + std::to_string(ino);
  if (const Inode* n = inode(ino)) {
    out += std::string(" (") + type_name(n->mode);
    if (S_ISREG(n->mode)) out += ", " + plural(n->size, "byte", "bytes");
    out += ")";
  }
  return out;
}

std::vector<std::string> Fsck::paths_of(std::uint64_t ino) const {
  auto it = names_.find(ino);
  if (ino == kRootIno || it == names_.end() || it->second.empty()) return {describe(ino)};
  std::vector<std::string> out;
  for (const EntryKey& name : it->second) out.push_back(path_in(name.first, name.second));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Fsck::children_names(std::uint64_t dir) const {
  std::vector<std::string> out;
  for (auto it = dirents_.lower_bound(EntryKey{dir, ""});
       it != dirents_.end() && it->first.first == dir; ++it)
    out.push_back(it->first.second);
  return out;
}

// ---------------------------------------------------------------------------------
// Changes

void Fsck::put_inode(const Inode& n) {
  inodes_[n.ino] = n;
  if (txn_) ns_->put(*txn_, n);
}

void Fsck::set_entry(std::uint64_t parent, const std::string& name, const DirEntry& entry) {
  EntryKey key{parent, name};
  auto it = dirents_.find(key);
  if (it != dirents_.end()) {
    // The entry moves to another slot: its old slot goes, unless another name has it.
    auto old_slot = slots_.find(SlotKey{parent, it->second.slot});
    if (it->second.slot != entry.slot && old_slot != slots_.end() && old_slot->second.name == name)
      erase_slot(parent, it->second.slot);
    names_[it->second.ino].erase(key);
  }
  dirents_[key] = entry;
  slots_[SlotKey{parent, entry.slot}] = Slot{entry.ino, entry.d_type, name};
  names_[entry.ino].insert(key);
  if (txn_) ns_->put_entry(*txn_, parent, name, entry);
}

void Fsck::erase_dirent(std::uint64_t parent, const std::string& name) {
  EntryKey key{parent, name};
  if (auto it = dirents_.find(key); it != dirents_.end()) {
    names_[it->second.ino].erase(key);
    dirents_.erase(it);
  }
  bad_dirents_.erase(key);
  if (txn_) ns_->erase_dirent(*txn_, parent, name);
}

void Fsck::erase_slot(std::uint64_t parent, std::uint64_t slot) {
  slots_.erase(SlotKey{parent, slot});
  bad_slots_.erase(SlotKey{parent, slot});
  if (txn_) ns_->erase_dirslot(*txn_, parent, slot);
}

void Fsck::erase_entry(std::uint64_t parent, const std::string& name) {
  auto it = dirents_.find(EntryKey{parent, name});
  if (it != dirents_.end()) {
    auto slot = slots_.find(SlotKey{parent, it->second.slot});
    if (slot != slots_.end() && slot->second.name == name) erase_slot(parent, it->second.slot);
  }
  erase_dirent(parent, name);
}

// As Filesystem::free_inode, except that references are not released one by one:
// check_refcounts sets every refcount from the extents that remain.
void Fsck::free_inode(std::uint64_t ino) {
  drop_extents(ino);
  if (symlink_targets_.erase(ino) && txn_) symlinks_->remove(*txn_, ino);
  if (xattr_inos_.erase(ino) && txn_) xattrs_->remove_all(*txn_, ino);
  inodes_.erase(ino);
  orphans_.erase(ino);
  if (txn_) ns_->free_inode(*txn_, ino);
}

void Fsck::drop_extent(std::uint64_t ino, std::uint64_t offset) {
  auto it = extents_.find(ino);
  if (it != extents_.end()) {
    std::erase_if(it->second, [&](const Extent& e) {
      if (e.offset != offset) return false;
      ++released_[e.id];
      return true;
    });
    if (it->second.empty()) extents_.erase(it);
  }
  bad_extents_.erase({ino, offset});
  if (txn_) data_->drop(*txn_, ino, offset);
}

void Fsck::drop_extents(std::uint64_t ino) {
  if (auto it = extents_.find(ino); it != extents_.end()) {
    for (const Extent& e : it->second) ++released_[e.id];
    extents_.erase(it);
  }
  std::erase_if(bad_extents_, [&](const auto& b) { return b.first == ino; });
  if (txn_) data_->drop_all(*txn_, ino);
}

void Fsck::set_next_ino(std::uint64_t next) {
  next_ino_ = next;
  if (txn_) ns_->set_next_ino(*txn_, next);
}

std::uint64_t Fsck::allocate_slot(std::uint64_t dir) {
  Inode* d = inode(dir);
  const std::uint64_t slot = d->next_slot++;
  put_inode(*d);
  return slot;
}

std::optional<std::uint64_t> Fsck::lost_and_found() {
  if (lost_found_) return lost_found_;
  static constexpr const char* kName = "lost+found";
  if (auto it = dirents_.find(EntryKey{kRootIno, kName}); it != dirents_.end()) {
    if (!is_dir(it->second.ino)) return std::nullopt;
    return lost_found_ = it->second.ino;
  }
  Inode* root = inode(kRootIno);
  Inode lf;
  lf.ino = next_ino_.value_or(kRootIno + 1);
  set_next_ino(lf.ino + 1);
  lf.mode = S_IFDIR | 0700;
  lf.uid = root->uid;
  lf.gid = root->gid;
  lf.nlink = 2;
  lf.parent = kRootIno;
  lf.atime = lf.mtime = lf.ctime = lf.btime = now_;
  put_inode(lf);
  set_entry(kRootIno, kName, DirEntry{lf.ino, d_type_of(lf.mode), allocate_slot(kRootIno)});
  root = inode(kRootIno);
  ++root->nlink;
  root->mtime = root->ctime = now_;
  put_inode(*root);
  return lost_found_ = lf.ino;
}

// Gives `ino` the name /lost+found/#ino; returns that path, or nullopt when there is
// no lost+found to put it in.
std::optional<std::string> Fsck::attach(std::uint64_t ino) {
  auto lf = lost_and_found();
  if (!lf) return std::nullopt;
  std::string name = "#" + std::to_string(ino);
  for (int n = 1; dirents_.contains(EntryKey{*lf, name}); ++n)
    name = "#" + std::to_string(ino) + "." + std::to_string(n);
  Inode* n = inode(ino);
  set_entry(*lf, name, DirEntry{ino, d_type_of(n->mode), allocate_slot(*lf)});
  if (n->is_dir()) {
    n->parent = *lf;
    put_inode(*n);
    Inode* dir = inode(*lf);
    ++dir->nlink;
    put_inode(*dir);
  }
  return path_in(*lf, name);
}

// ---------------------------------------------------------------------------------
// The store and its index

std::optional<std::string> Fsck::index_damage(const StoreConfig& config) {
  try {
    auto txn = LmdbTxn::read(store_->env());
    auto& index = store_->index();
    auto uuid = index.get_meta(txn, "store_uuid");
    if (!uuid) return "the index in meta/ has no store id";
    if (*uuid != config.uuid) return "the index in meta/ belongs to another store";
    index.for_each(txn, [](const ObjectInfo&) { return true; });
    index.for_each_pack(txn, [](const PackInfo&) {});
  } catch (const StoreError& e) {
    return std::string("the index is damaged: ") + e.what();
  }
  return std::nullopt;
}

bool Fsck::open_store() {
  // A missing or foreign store, or a newer format, is no problem of the store's.
  StoreConfig config = StoreConfig::load(dir_);
  std::error_code ec;
  meta_present_ = std::filesystem::exists(dir_ / "meta" / "data.mdb", ec);
  std::optional<std::string> damage;
  if (!meta_present_) {
    damage = "the index (meta/) is missing";
    // Opening would create meta/; a check changes nothing.
    if (!options_.repair) {
      problem(FsckKind::kIndex, *damage + "; nothing else can be checked",
              "rebuilt from the packs and loose files");
      return false;
    }
  }
  store_ = Store::open(dir_, OpenOptions{.allow_missing_index = true});
  if (meta_present_) damage = index_damage(config);
  if (!damage) return true;
  if (!options_.repair) {
    problem(FsckKind::kIndex, *damage + "; nothing else can be checked",
            "rebuilt from the packs and loose files");
    return false;
  }
  RebuildReport rebuilt = store_->rebuild_index(options_.progress);
  report_.index_rebuilt = true;
  problem(FsckKind::kIndex, *damage,
          "rebuilt from the packs and loose files (" +
              plural(rebuilt.loose_objects + rebuilt.packed_objects, "object", "objects") +
              " found)");
  return true;
}

void Fsck::load_objects() {
  objects_.clear();
  auto txn = LmdbTxn::read(store_->env());
  store_->index().for_each(txn, [&](const ObjectInfo& info) {
    objects_[info.id] = ObjectRec{info.refcount, info.raw_size};
    return true;
  });
}

// Re-hashes `ids` as verify does; the bad ones go into `bad`.
void Fsck::check_objects(const std::vector<ObjectId>& ids, std::map<ObjectId, std::string>& bad) {
  Sha256 sha;
  ExtractSink sink;
  sink.data = [&](std::size_t, std::span<const std::byte> piece) { sha.update(piece); };
  sink.done = [&](std::size_t i) {
    if (sha.finish() != ids[i]) bad[ids[i]] = "content does not hash to the object's id";
  };
  sink.error = [&](std::size_t i, const StoreError& e) {
    sha.finish();
    bad[ids[i]] = e.what();
  };
  store_->extract_many(ids, sink);
}

void Fsck::verify_objects() {
  VerifyReport verified = store_->verify(options_.progress);
  report_.counts.bytes_verified = verified.bytes_checked;
  for (const auto& p : verified.problems) {
    if (p.id == ObjectId{}) {
      bad_packs_.push_back(p.what);
    } else {
      bad_objects_[p.id] = p.what;
    }
  }
  if (!options_.repair || (bad_objects_.empty() && bad_packs_.empty())) return;
  // Another copy may survive (a pack record and a loose file of one object): a rebuild
  // indexes the first intact one, and drops objects with none, whose files then show
  // up as having lost data.
  store_->rebuild_index(options_.progress);
  report_.index_rebuilt = true;
  rebuilt_after_verify_ = true;
  load_objects();
  std::vector<ObjectId> again;
  for (const auto& [id, what] : bad_objects_) {
    if (objects_.contains(id)) again.push_back(id);
  }
  std::map<ObjectId, std::string> still_bad;
  check_objects(again, still_bad);
  for (const ObjectId& id : again) {
    if (!still_bad.contains(id)) healed_objects_.insert(id);
  }
}

// ---------------------------------------------------------------------------------
// Loading the filesystem's tables

void Fsck::load_tables() {
  auto txn = LmdbTxn::read(store_->env());
  format_version_ = ns_->format_version(txn);
  next_ino_ = ns_->next_ino(txn);
  ns_->for_each_inode(txn, [&](std::uint64_t ino, const Inode* n) {
    inodes_[ino] = n ? std::optional<Inode>(*n) : std::nullopt;
  });
  ns_->for_each_dirent(txn, [&](std::uint64_t parent, std::string_view name, const DirEntry* e) {
    EntryKey key{parent, std::string(name)};
    if (!e) {
      bad_dirents_.insert(key);
      return;
    }
    dirents_[key] = *e;
    names_[e->ino].insert(key);
  });
  ns_->for_each_dirslot(txn, [&](std::uint64_t parent, std::uint64_t slot, const DirEntryView* e) {
    if (!e) {
      bad_slots_.insert(SlotKey{parent, slot});
      return;
    }
    slots_[SlotKey{parent, slot}] = Slot{e->ino, e->d_type, std::string(e->name)};
  });
  for (std::uint64_t ino : ns_->orphans(txn)) orphans_.insert(ino);
  data_->for_each(txn, [&](std::uint64_t ino, std::uint64_t offset, const Extent* e) {
    if (e) {
      extents_[ino].push_back(*e);
    } else {
      bad_extents_.insert({ino, offset});
    }
  });
  // Xattrs and symlinks are keyed by ino (u64 BE) first (see their headers).
  {
    LmdbCursor cursor(txn, xattrs_db_);
    for (bool ok = cursor.first(); ok; ok = cursor.next()) {
      if (cursor.key().size() >= 8) xattr_inos_.insert(get_be64(cursor.key().data()));
    }
  }
  {
    LmdbCursor cursor(txn, symlinks_db_);
    for (bool ok = cursor.first(); ok; ok = cursor.next()) {
      if (cursor.key().size() != 8) continue;
      Bytes v = cursor.value();
      symlink_targets_[get_be64(cursor.key().data())] =
          std::string(reinterpret_cast<const char*>(v.data()), v.size());
    }
  }
  auto& counts = report_.counts;
  counts.inodes = inodes_.size();
  for (const auto& [ino, n] : inodes_) {
    if (!n) continue;
    counts.directories += n->is_dir();
    counts.files += S_ISREG(n->mode);
    counts.symlinks += S_ISLNK(n->mode);
  }
  for (const auto& [ino, list] : extents_) counts.extents += list.size();
  counts.extents += bad_extents_.size();
}

bool Fsck::has_filesystem() const {
  return format_version_ || !inodes_.empty() || !dirents_.empty() || !slots_.empty() ||
         !extents_.empty() || !orphans_.empty();
}

// ---------------------------------------------------------------------------------
// The namespace

bool Fsck::check_format() {
  if (format_version_ && *format_version_ != Namespace::kFormatVersion) {
    problem(FsckKind::kNamespace,
            "the namespace has format version " + std::to_string(*format_version_) +
                ", which this casfs does not know; the filesystem was not checked");
    return false;
  }
  return true;
}

void Fsck::check_inode_records() {
  for (auto& [ino, n] : inodes_) {
    if (!n) {
      problem(FsckKind::kInode, "inode " + std::to_string(ino) + " (" + describe(ino) +
                                    "): its record does not decode; it is left as it is");
    } else if (n->ino != ino) {
      problem(FsckKind::kInode,
              describe(ino) + ": the record of inode " + std::to_string(ino) + " says inode " +
                  std::to_string(n->ino),
              "set to " + std::to_string(ino));
      n->ino = ino;
      put_inode(*n);
    }
  }
}

void Fsck::check_next_ino() {
  std::uint64_t want = kRootIno + 1;
  if (!inodes_.empty()) want = std::max(want, inodes_.rbegin()->first + 1);
  if (next_ino_ && *next_ino_ >= want) return;
  const std::string what = next_ino_ ? "the next inode number is " + std::to_string(*next_ino_) +
                                           " but inode " + std::to_string(want - 1) + " exists"
                                     : "the next inode number is not recorded";
  problem(FsckKind::kNamespace, what, "set to " + std::to_string(want));
  set_next_ino(want);
}

bool Fsck::check_root() {
  if (!format_version_) {
    problem(FsckKind::kNamespace, "the namespace has no format version record", "written");
    format_version_ = Namespace::kFormatVersion;
  }
  auto it = inodes_.find(kRootIno);
  if (it == inodes_.end()) {
    problem(FsckKind::kNamespace, "the root directory (inode 1) is missing", "made anew");
  } else if (!it->second || !it->second->is_dir()) {
    problem(FsckKind::kNamespace,
            "the root inode is not a directory, or does not decode; the namespace was not "
            "checked further");
    return false;
  }
  // format() writes what is missing of the version, the inode counter and the root.
  if (txn_) {
    ns_->format(*txn_, 0755, ::getuid(), ::getgid(), now_);
    if (!inode(kRootIno)) {
      auto root = ns_->get(*txn_, kRootIno);
      inodes_[kRootIno] = *root;
    }
  } else if (!inode(kRootIno)) {
    Inode root;  // what format() would make
    root.ino = kRootIno;
    root.mode = S_IFDIR | 0755;
    root.uid = ::getuid();
    root.gid = ::getgid();
    root.nlink = 2;
    root.parent = kRootIno;
    root.atime = root.mtime = root.ctime = root.btime = now_;
    inodes_[kRootIno] = root;
  }
  Inode* root = inode(kRootIno);
  if (root->parent != kRootIno) {
    problem(FsckKind::kParent, "/: its parent field says inode " + std::to_string(root->parent),
            "set to 1");
    root->parent = kRootIno;
    put_inode(*root);
  }
  return true;
}

// Entries must sit in existing directories under valid names; anything else is
// removed (the inode it names may then have no name, and go to /lost+found).
void Fsck::check_entry_parents() {
  for (const EntryKey& key : std::set<EntryKey>(bad_dirents_)) {
    problem(FsckKind::kEntry, path_in(key.first, key.second) + ": the entry's record is malformed",
            "removed (restored from its readdir slot if that is intact)");
    erase_dirent(key.first, key.second);
  }
  for (const SlotKey& key : std::set<SlotKey>(bad_slots_)) {
    problem(FsckKind::kSlot,
            describe(key.first) + ": readdir slot " + std::to_string(key.second) + " is malformed",
            "removed (restored from its entry if that is intact)");
    erase_slot(key.first, key.second);
  }
  auto unusable_parent = [&](std::uint64_t parent) -> std::optional<std::string> {
    auto it = inodes_.find(parent);
    if (it == inodes_.end())
      return "in directory inode " + std::to_string(parent) + ", which does not exist";
    if (it->second && !it->second->is_dir())
      return "in " + describe(parent) + ", which is not a directory";
    return std::nullopt;  // a directory, or a record that does not decode: left alone
  };
  for (const auto& [key, entry] : std::map<EntryKey, DirEntry>(dirents_)) {
    const auto& [parent, name] = key;
    if (auto why = unusable_parent(parent)) {
      problem(
          FsckKind::kEntry,
          "entry \"" + printable(name) + "\" for inode " + std::to_string(entry.ino) + " " + *why,
          "removed");
      erase_entry(parent, name);
    } else if (!valid_name(name)) {
      problem(FsckKind::kEntry, path_in(parent, name) + ": not a valid file name", "removed");
      erase_entry(parent, name);
    }
  }
  for (const auto& [key, slot] : std::map<SlotKey, Slot>(slots_)) {
    if (auto why = unusable_parent(key.first)) {
      problem(FsckKind::kSlot, "readdir slot for \"" + printable(slot.name) + "\" " + *why,
              "removed");
      erase_slot(key.first, key.second);
    }
  }
}

// dirents (lookup by name) and dirslots (readdir order) must describe the same
// entries, one slot each, below the directory's next_slot. The dirent wins where they
// disagree: it is what lookups see.
void Fsck::check_slots() {
  // Slots are never reused: new entries take next_slot and would overwrite those in
  // use. Settled first, so the slots handed out below are new.
  std::map<std::uint64_t, std::uint64_t> max_slot;
  for (const auto& [skey, slot] : slots_) max_slot[skey.first] = skey.second;
  for (const auto& [key, entry] : dirents_)
    max_slot[key.first] = std::max(max_slot[key.first], entry.slot);
  for (const auto& [dir, top] : max_slot) {
    Inode* d = inode(dir);
    if (!d || d->next_slot > top) continue;
    problem(FsckKind::kSlot,
            describe(dir) + ": the next readdir slot is " + std::to_string(d->next_slot) +
                " but slot " + std::to_string(top) + " is in use",
            "set to " + std::to_string(top + 1));
    d->next_slot = top + 1;
    put_inode(*d);
  }

  std::map<SlotKey, std::vector<std::string>> claims;
  for (const auto& [key, entry] : dirents_) {
    if (inode(key.first)) claims[SlotKey{key.first, entry.slot}].push_back(key.second);
  }
  for (const auto& [skey, names] : claims) {
    if (names.size() < 2) continue;
    auto slot = slots_.find(skey);
    std::string keep = names.front();
    if (slot != slots_.end() &&
        std::find(names.begin(), names.end(), slot->second.name) != names.end())
      keep = slot->second.name;
    for (const std::string& name : names) {
      if (name == keep) continue;
      problem(FsckKind::kSlot,
              path_in(skey.first, name) + " shares readdir slot " + std::to_string(skey.second) +
                  " with " + path_in(skey.first, keep),
              "given a slot of its own");
      DirEntry entry = dirents_.at(EntryKey{skey.first, name});
      entry.slot = allocate_slot(skey.first);
      set_entry(skey.first, name, entry);
    }
  }
  for (const auto& [key, entry] : std::map<EntryKey, DirEntry>(dirents_)) {
    if (!inode(key.first)) continue;
    auto slot = slots_.find(SlotKey{key.first, entry.slot});
    if (slot != slots_.end() && slot->second.ino == entry.ino &&
        slot->second.d_type == entry.d_type && slot->second.name == key.second)
      continue;
    problem(FsckKind::kSlot,
            path_in(key.first, key.second) + (slot == slots_.end()
                                                  ? ": readdir does not list it"
                                                  : ": its readdir slot says something else"),
            "slot rewritten");
    set_entry(key.first, key.second, entry);
  }
  for (const auto& [skey, slot] : std::map<SlotKey, Slot>(slots_)) {
    if (!inode(skey.first)) continue;
    auto entry = dirents_.find(EntryKey{skey.first, slot.name});
    if (entry != dirents_.end() && entry->second.slot == skey.second) continue;
    if (entry != dirents_.end()) {
      problem(FsckKind::kSlot,
              path_in(skey.first, slot.name) + " is listed twice by readdir (slots " +
                  std::to_string(entry->second.slot) + " and " + std::to_string(skey.second) + ")",
              "slot " + std::to_string(skey.second) + " removed");
      erase_slot(skey.first, skey.second);
    } else if (!valid_name(slot.name)) {
      problem(FsckKind::kSlot,
              describe(skey.first) + ": readdir slot " + std::to_string(skey.second) +
                  " holds an invalid name",
              "removed");
      erase_slot(skey.first, skey.second);
    } else {
      problem(FsckKind::kSlot,
              path_in(skey.first, slot.name) + " is listed by readdir but lookups cannot find it",
              "entry restored");
      set_entry(skey.first, slot.name, DirEntry{slot.ino, slot.d_type, skey.second});
    }
  }
}

void Fsck::check_entry_children() {
  for (const auto& [key, entry] : std::map<EntryKey, DirEntry>(dirents_)) {
    const auto& [parent, name] = key;
    auto it = inodes_.find(entry.ino);
    if (it == inodes_.end()) {
      problem(FsckKind::kEntry,
              path_in(parent, name) + " names inode " + std::to_string(entry.ino) +
                  ", which does not exist",
              "removed");
      erase_entry(parent, name);
      continue;
    }
    if (!it->second) continue;  // reported with the inode
    if (entry.ino == kRootIno) {
      problem(FsckKind::kParent, path_in(parent, name) + " is another name for /", "removed");
      erase_entry(parent, name);
      continue;
    }
    const std::uint8_t want = d_type_of(it->second->mode);
    if (entry.d_type != want) {
      problem(FsckKind::kEntry,
              path_in(parent, name) + ": the entry's d_type is " + std::to_string(entry.d_type) +
                  " but the inode is a " + type_name(it->second->mode),
              "d_type set to " + std::to_string(want));
      set_entry(parent, name, DirEntry{entry.ino, want, entry.slot});
    }
  }
}

// A directory has exactly one name, in the directory its parent field names.
void Fsck::check_directory_names() {
  for (auto& [ino, n] : inodes_) {
    if (!n || !n->is_dir() || ino == kRootIno) continue;
    std::set<EntryKey> names = names_[ino];
    if (names.size() > 1) {
      EntryKey keep = *names.begin();
      for (const EntryKey& name : names) {
        if (name.first == n->parent) keep = name;
      }
      for (const EntryKey& name : names) {
        if (name == keep) continue;
        problem(FsckKind::kParent,
                "directory " + path_in(keep.first, keep.second) + " has a second name " +
                    path_in(name.first, name.second),
                "second name removed");
        erase_entry(name.first, name.second);
      }
    }
    const auto& left = names_[ino];
    if (left.size() == 1 && left.begin()->first != n->parent) {
      const std::uint64_t holder = left.begin()->first;
      problem(FsckKind::kParent,
              "directory " + path_of(ino) + ": its parent field says inode " +
                  std::to_string(n->parent) + ", but " + describe(holder) + " holds it",
              "set to " + std::to_string(holder));
      n->parent = holder;
      put_inode(*n);
    }
  }
}

// Every inode must be reachable from /. Those with no name at all are freed when
// nothing refers to them (nlink 0: a file deleted while open) and attached under
// /lost+found otherwise; a loop of directories no path from / enters is cut open.
void Fsck::check_reachability() {
  std::set<std::uint64_t> given_up;  // cannot be attached; reported once
  for (std::size_t round = 0; round <= inodes_.size() + 1; ++round) {
    std::unordered_set<std::uint64_t> reached{kRootIno};
    std::deque<std::uint64_t> queue{kRootIno};
    while (!queue.empty()) {
      const std::uint64_t dir = queue.front();
      queue.pop_front();
      for (auto it = dirents_.lower_bound(EntryKey{dir, ""});
           it != dirents_.end() && it->first.first == dir; ++it) {
        const std::uint64_t child = it->second.ino;
        if (reached.insert(child).second && is_dir(child)) queue.push_back(child);
      }
    }

    bool changed = false;
    for (const auto& [ino, n] : std::map<std::uint64_t, std::optional<Inode>>(inodes_)) {
      if (!n || reached.contains(ino) || given_up.contains(ino) || !names_[ino].empty()) continue;
      const bool has_children = !children_names(ino).empty();
      if (n->nlink == 0 && !has_children) {
        if (orphans_.contains(ino)) {
          problem(FsckKind::kOrphan,
                  describe(ino) +
                      " was deleted while open and is not freed yet (the next mount "
                      "frees it)",
                  "freed");
        } else {
          problem(FsckKind::kLeakedInode,
                  describe(ino) + " has nlink 0 and no name, and is not recorded as an orphan",
                  "freed");
        }
        free_inode(ino);
        changed = true;
        continue;
      }
      const std::string what = describe(ino) + " has no name";
      if (auto path = attach(ino)) {
        problem(FsckKind::kUnreachable, what, "attached as " + *path);
        changed = true;
      } else {
        problem(FsckKind::kUnreachable, what + "; /lost+found is not a directory to attach it to");
        given_up.insert(ino);
      }
    }
    if (changed) continue;

    // Every unreached inode left has a name in an unreached directory. Follow the
    // names upward from each directory: a loop of directories shows up as a repeat.
    for (const auto& [ino, n] : inodes_) {
      if (!n || !n->is_dir() || reached.contains(ino) || given_up.contains(ino)) continue;
      std::set<std::uint64_t> seen;
      std::optional<std::uint64_t> in_loop;
      for (std::uint64_t cur = ino;;) {
        if (!seen.insert(cur).second) {
          in_loop = cur;
          break;
        }
        const auto& names = names_[cur];
        if (names.empty() || !is_dir(names.begin()->first)) break;  // no loop above
        cur = names.begin()->first;
      }
      if (!in_loop) continue;
      // Take the name of one directory in the loop away: next round attaches it.
      const EntryKey name = *names_[*in_loop].begin();
      problem(FsckKind::kUnreachable,
              "directory " + path_in(name.first, name.second) +
                  " is in a loop of directories that no path from / reaches",
              "taken out of the loop");
      erase_entry(name.first, name.second);
      changed = true;
      break;
    }
    if (changed) continue;

    for (const auto& [ino, n] : inodes_) {
      if (!n || reached.contains(ino) || given_up.contains(ino)) continue;
      problem(FsckKind::kUnreachable,
              path_of(ino) + " (inode " + std::to_string(ino) +
                  ") is reachable only through an inode whose record does not decode");
    }
    return;
  }
}

void Fsck::check_nlink() {
  std::map<std::uint64_t, std::uint64_t> subdirs;
  for (const auto& [key, entry] : dirents_) {
    const Inode* child = inode(entry.ino);
    if (child ? child->is_dir() : entry.d_type == d_type_of(S_IFDIR)) ++subdirs[key.first];
  }
  for (auto& [ino, n] : inodes_) {
    if (!n) continue;
    const std::uint64_t names = names_[ino].size();
    const std::uint64_t want = n->is_dir() ? 2 + subdirs[ino] : names;
    if (n->nlink == want) continue;
    std::string why = n->is_dir() ? "2 + " + plural(subdirs[ino], "subdirectory", "subdirectories")
                                  : plural(names, "name", "names");
    problem(FsckKind::kNlink,
            describe(ino) + ": nlink is " + std::to_string(n->nlink) + " but it has " + why,
            "set to " + std::to_string(want));
    n->nlink = want;
    put_inode(*n);
  }
}

// The mount frees every inode recorded as an orphan: a record for one that still
// has names would delete a file.
void Fsck::check_orphan_records() {
  for (std::uint64_t ino : std::set<std::uint64_t>(orphans_)) {
    auto it = inodes_.find(ino);
    std::string what;
    if (it == inodes_.end()) {
      what = "an orphan record names inode " + std::to_string(ino) + ", which does not exist";
    } else if (it->second && it->second->nlink > 0) {
      what = describe(ino) +
             " has names but is recorded as an orphan (the next mount would "
             "free it)";
    } else {
      continue;
    }
    problem(FsckKind::kStray, what, "orphan record removed");
    orphans_.erase(ino);
    if (txn_) ns_->remove_orphan(*txn_, ino);
  }
}

// ---------------------------------------------------------------------------------
// File data

void Fsck::check_file_data() {
  // Records of inodes that are gone, or that are not regular files.
  std::set<std::uint64_t> owners;
  for (const auto& [ino, list] : extents_) owners.insert(ino);
  for (const auto& [ino, offset] : bad_extents_) owners.insert(ino);
  for (std::uint64_t ino : owners) {
    auto it = inodes_.find(ino);
    if (it != inodes_.end() && (!it->second || S_ISREG(it->second->mode))) continue;
    const std::string whose = it == inodes_.end()
                                  ? "inode " + std::to_string(ino) + ", which does not exist,"
                                  : describe(ino) + ", which is not a regular file,";
    problem(FsckKind::kStray, whose + " has file extents", "removed");
    drop_extents(ino);
  }
  for (const auto& [ino, offset] : std::set(bad_extents_)) {
    problem(FsckKind::kExtent,
            describe(ino) + ": the extent record at offset " + std::to_string(offset) +
                " is malformed; its bytes are lost",
            "removed (the file reads zeros there)");
    lost_.insert(ino);
    drop_extent(ino, offset);
  }

  for (auto& [ino, n] : inodes_) {
    if (!n || !S_ISREG(n->mode)) continue;
    auto it = extents_.find(ino);
    std::vector<Extent> list = it == extents_.end() ? std::vector<Extent>{} : it->second;
    std::uint64_t end = 0;
    std::uint64_t allocated = 0;
    std::uint64_t missing = 0;
    std::uint64_t missing_bytes = 0;
    std::optional<Extent> first_missing;
    for (const Extent& e : list) {
      const std::string at = describe(ino) + ": the extent at offset " + std::to_string(e.offset);
      if (e.length == 0) {
        problem(FsckKind::kExtent, at + " is empty", "removed");
        drop_extent(ino, e.offset);
        continue;
      }
      if (e.offset >= n->size) {
        problem(FsckKind::kExtent,
                at + " lies past the end of the file (" + plural(n->size, "byte", "bytes") + ")",
                "removed");
        drop_extent(ino, e.offset);
        continue;
      }
      if (e.end() > n->size) {
        problem(FsckKind::kExtent,
                at + " runs past the end of the file (" + plural(n->size, "byte", "bytes") + ")");
      }
      if (e.offset < end) {
        problem(FsckKind::kExtent, at + " overlaps the extent before it");
      }
      end = std::max(end, e.end());
      allocated += e.length;
      auto object = objects_.find(e.id);
      if (object == objects_.end()) {
        ++missing;
        missing_bytes += e.length;
        if (!first_missing) first_missing = e;
      } else if (object->second.raw_size != e.length) {
        problem(FsckKind::kExtent, at + " is " + plural(e.length, "byte", "bytes") +
                                       " long but its object " + e.id.hex() + " holds " +
                                       std::to_string(object->second.raw_size));
        lost_.insert(ino);
      }
    }
    if (missing > 0) {
      problem(FsckKind::kDataLost,
              describe(ino) + ": " + plural(missing, "extent", "extents") + " (" +
                  plural(missing_bytes, "byte", "bytes") +
                  ") name objects the store does not have, the first at offset " +
                  std::to_string(first_missing->offset) + ": " + first_missing->id.hex());
      lost_.insert(ino);
    }
    if (n->allocated != allocated) {
      problem(FsckKind::kAllocated,
              describe(ino) + ": allocated is " + std::to_string(n->allocated) +
                  " bytes but its extents hold " + std::to_string(allocated),
              "set to " + std::to_string(allocated));
      n->allocated = allocated;
      put_inode(*n);
    }
  }
}

void Fsck::check_symlinks_and_xattrs() {
  for (auto& [ino, n] : inodes_) {
    if (!n || !S_ISLNK(n->mode)) continue;
    auto target = symlink_targets_.find(ino);
    if (target == symlink_targets_.end() || target->second.empty()) {
      problem(FsckKind::kSymlink, describe(ino) + ": the symbolic link has no target");
      lost_.insert(ino);
    } else if (n->size != target->second.size()) {
      problem(FsckKind::kSymlink,
              describe(ino) + ": size is " + std::to_string(n->size) + " but the target has " +
                  plural(target->second.size(), "byte", "bytes"),
              "set to " + std::to_string(target->second.size()));
      n->size = target->second.size();
      put_inode(*n);
    }
  }
  for (const auto& [ino, target] : std::map(symlink_targets_)) {
    auto it = inodes_.find(ino);
    if (it != inodes_.end() && (!it->second || S_ISLNK(it->second->mode))) continue;
    problem(FsckKind::kStray,
            (it == inodes_.end() ? "inode " + std::to_string(ino) + ", which does not exist,"
                                 : describe(ino) + ", which is not a symbolic link,") +
                " has a symbolic link target",
            "removed");
    symlink_targets_.erase(ino);
    if (txn_) symlinks_->remove(*txn_, ino);
  }
  for (std::uint64_t ino : std::set(xattr_inos_)) {
    if (inodes_.contains(ino)) continue;
    problem(FsckKind::kStray,
            "inode " + std::to_string(ino) + ", which does not exist, has extended attributes",
            "removed");
    xattr_inos_.erase(ino);
    if (txn_) xattrs_->remove_all(*txn_, ino);
  }
}

// ---------------------------------------------------------------------------------
// Objects

// Each extent holds one reference on its object (file_data.h).
void Fsck::check_refcounts() {
  std::unordered_map<ObjectId, std::uint64_t, ObjectIdHash> named;
  for (const auto& [ino, list] : extents_) {
    for (const Extent& e : list) ++named[e.id];
  }
  std::size_t lines = 0;
  std::uint64_t more = 0;
  // In id order, so the report is the same from run to run.
  std::vector<ObjectId> ids;
  ids.reserve(objects_.size());
  for (const auto& [id, rec] : objects_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (const ObjectId& id : ids) {
    ObjectRec& rec = objects_.at(id);
    auto it = named.find(id);
    const std::uint64_t want = it == named.end() ? 0 : it->second;
    if (rec.refcount != want) {
      auto dropped = released_.find(id);
      const bool follows = dropped != released_.end() && rec.refcount == want + dropped->second;
      if (follows) {
        // Not a problem of its own: the removal that caused it is reported.
      } else if (lines++ < kMaxRefcountLines) {
        problem(FsckKind::kRefcount,
                "object " + id.hex() + ": refcount " + std::to_string(rec.refcount) + " but " +
                    plural(want, "extent names", "extents name") + " it",
                "set to " + std::to_string(want));
      } else {
        ++more;
      }
      rec.refcount = want;
      if (txn_) {
        auto info = store_->index().get(*txn_, id);
        info->refcount = want;
        store_->index().put(*txn_, *info);
      }
    }
    if (rec.refcount == 0) {
      report_.unreferenced.push_back(id);
      report_.unreferenced_bytes += rec.raw_size;
    }
  }
  if (more > 0) {
    problem(FsckKind::kRefcount,
            plural(more, "more object has a refcount", "more objects have refcounts") +
                " that differ from the extents naming them",
            "set from the extents");
  }
}

void Fsck::report_bad_objects() {
  // A rebuild indexes what the pack files hold, whatever the old index said of them.
  for (const std::string& what : bad_packs_)
    problem(FsckKind::kBadObject, what,
            rebuilt_after_verify_ ? "the rebuilt index describes the packs as they are" : "");
  if (bad_objects_.empty()) return;
  std::map<ObjectId, std::set<std::uint64_t>> users;
  for (const auto& [ino, list] : extents_) {
    for (const Extent& e : list) {
      if (bad_objects_.contains(e.id)) users[e.id].insert(ino);
    }
  }
  for (const auto& [id, what] : bad_objects_) {
    std::string used = "used by no file";
    if (auto it = users.find(id); it != users.end()) {
      used = "used by ";
      std::string sep;
      for (std::uint64_t ino : it->second) {
        for (const std::string& path : paths_of(ino)) {
          used += sep + path;
          sep = ", ";
        }
      }
    }
    const bool healed = healed_objects_.contains(id);
    // The store's messages mostly name the object already.
    std::string line =
        what.find(id.hex()) == std::string::npos ? "object " + id.hex() + ": " + what : what;
    line += "; " + used;
    if (!healed && report_.index_rebuilt && !objects_.contains(id))
      line += "; no intact copy is left, the rebuilt index drops it";
    problem(FsckKind::kBadObject, line, healed ? "an intact copy was indexed" : "");
    if (healed) continue;
    if (auto it = users.find(id); it != users.end())
      lost_.insert(it->second.begin(), it->second.end());
  }
}

// ---------------------------------------------------------------------------------

FsckReport Fsck::run() {
  if (!open_store()) return std::move(report_);
  load_objects();
  // Open every table before any transaction begins (LmdbEnv::open_db).
  ns_.emplace(store_->env());
  data_.emplace(*store_);
  xattrs_.emplace(store_->env());
  symlinks_.emplace(store_->env());
  xattrs_db_ = store_->env().open_db("xattrs");
  symlinks_db_ = store_->env().open_db("symlinks");

  verify_objects();
  report_.counts.objects = objects_.size();
  load_tables();

  if (options_.repair) txn_.emplace(LmdbTxn::write(store_->env()));
  if (!has_filesystem()) {
    report_.no_filesystem = true;
    if (!meta_present_) {
      problem(FsckKind::kNamespace,
              "meta/ also held the filesystem's tables, if this store had a filesystem: every "
              "file's name and layout is lost; the objects are kept with a reference each "
              "(casfs store ls and cat reach them)");
    }
    for (const auto& [id, rec] : objects_) {
      if (rec.refcount > 0) continue;
      report_.unreferenced.push_back(id);
      report_.unreferenced_bytes += rec.raw_size;
    }
    std::sort(report_.unreferenced.begin(), report_.unreferenced.end());
    report_bad_objects();
  } else if (check_format()) {
    check_inode_records();
    check_next_ino();
    if (check_root()) {
      check_entry_parents();
      check_slots();
      check_entry_children();
      check_directory_names();
      check_reachability();
      check_nlink();
      check_orphan_records();
    }
    check_file_data();
    check_symlinks_and_xattrs();
    check_refcounts();
    report_bad_objects();
  }
  if (txn_) {
    txn_->commit();
    txn_.reset();
  }
  if (options_.repair && !report_.unreferenced.empty()) report_.gc = store_->gc();

  report_.files_lost = lost_.size();
  for (std::uint64_t ino : lost_) {
    for (std::string& path : paths_of(ino)) report_.lost_files.push_back(std::move(path));
  }
  std::sort(report_.lost_files.begin(), report_.lost_files.end());
  return std::move(report_);
}

}  // namespace

FsckReport run_fsck(const std::filesystem::path& dir, const FsckOptions& options) {
  return Fsck(dir, options).run();
}

}  // namespace casfs
