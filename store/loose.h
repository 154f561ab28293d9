// The loose tier: one file per object, STORE/loose/XX/<62 more hex digits>, holding
// the object's raw bytes. Files are written in STORE/staging/ and renamed into
// place, so a loose path never names a partly written file.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "store/hash.h"
#include "store/unique_fd.h"

namespace casfs {

class IoEngine;

class LooseTier {
 public:
  // Creates loose/00 … loose/ff and staging/ (store creation).
  static void create_layout(const std::filesystem::path& store_dir);

  explicit LooseTier(const std::filesystem::path& store_dir);

  int dir_fd() const { return loose_dir_.get(); }
  int staging_fd() const { return staging_dir_.get(); }

  // "ab/cdef…", relative to dir_fd().
  static std::string relative_path(const ObjectId& id);
  // A name in staging/ that no other writer in this process uses, relative to
  // staging_fd(): for objects streamed in, whose id is known only at the end.
  std::string new_staging_name();
  // A temporary name beside the object's final one ("XX/.tmp-…", relative to
  // dir_fd()), for objects whose id is known before they are written. Renaming
  // within one directory spares the filesystem-wide lock that the kernel takes for
  // every rename across directories, which serialized concurrent inserts.
  std::string new_temp_name(const ObjectId& id);
  static bool is_temp_name(std::string_view name) { return name.starts_with(".tmp-"); }
  // Removes everything in staging/ (called at open, under the store lock: whatever
  // is there was left by a process that died). Temporary files in loose/XX/ are
  // left to gc, which visits those directories anyway.
  void clean_staging();

  // Unlinks the objects' files, many at once through `io`; a missing file is not an
  // error.
  void remove(IoEngine& io, std::span<const ObjectId> ids);
  // Opens the object's file for reading; an invalid fd (errno set) if missing.
  UniqueFd open_read(const ObjectId& id) const;
  // fsyncs the directory loose/XX that holds `id`, making a rename into it durable.
  void sync_dir_of(const ObjectId& id) const;
  // Visits every file in loose/XX for one prefix byte: (id, path relative to
  // dir_fd(), name is an object id). Other files (temporary ones among them) are
  // passed with valid=false and an all-zero id.
  void for_each_in_prefix(
      unsigned prefix,
      const std::function<void(const ObjectId&, const std::string& rel, bool valid)>& visit) const;

 private:
  std::filesystem::path dir_;
  UniqueFd loose_dir_;
  UniqueFd staging_dir_;
};

}  // namespace casfs
