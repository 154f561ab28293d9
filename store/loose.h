// The loose tier: one file per object, STORE/loose/XX/<62 more hex digits>, holding
// the object's raw bytes. Files are written in STORE/staging/ and renamed into
// place, so a loose path never names a partly written file.
#pragma once

#include <filesystem>
#include <functional>
#include <span>
#include <string>

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
  // staging_fd(). With an id it lies in staging/XX/, XX being the id's first byte:
  // spreading new files over many directories keeps concurrent creates from queueing
  // on one directory's lock, and ext4 spreads the directories' inodes over groups.
  std::string new_staging_name(const ObjectId* id = nullptr);
  // Removes everything in staging/ and makes sure staging/XX/ exist (called at open,
  // under the store lock: whatever is there was left by a process that died).
  void clean_staging();

  // Unlinks the objects' files, many at once through `io`; a missing file is not an
  // error.
  void remove(IoEngine& io, std::span<const ObjectId> ids);
  // Opens the object's file for reading; an invalid fd (errno set) if missing.
  UniqueFd open_read(const ObjectId& id) const;
  // fsyncs the directory loose/XX that holds `id`, making a rename into it durable.
  void sync_dir_of(const ObjectId& id) const;
  // Visits every file in loose/XX for one prefix byte: (id, name is valid).
  // Files whose names are not object ids are passed with valid=false and an
  // all-zero id.
  void for_each_in_prefix(unsigned prefix,
                          const std::function<void(const ObjectId&, const std::string& rel,
                                                   bool valid)>& visit) const;

 private:
  std::filesystem::path dir_;
  UniqueFd loose_dir_;
  UniqueFd staging_dir_;
};

}  // namespace casfs
