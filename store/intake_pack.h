// Intake packs: a batch insert of many new objects writes them, raw, as the records
// of one new pack file instead of one loose file each, as git keeps a push of many
// objects as a pack rather than exploding it.
//
// Why: a loose file costs a file creation (on an aged ext4, finding a free inode was
// a fifth of the daemon's time while a big file was written), a directory entry, a
// share of a syncfs, and later an unlink; a batch of a thousand objects becomes one
// file, one gathered write and one fdatasync. The records are raw, as loose objects
// are, so writing costs no compression; pack() compresses them later as it does
// loose objects, then removes the intake pack. Reading them is reading a pack.
//
// Crash safety: the file and its directory entry are synced before the index
// transaction that adds the pack entry and the objects' entries commits. Until
// then the pack is in flight, and remove_orphan_packs leaves it alone; after a
// crash before the commit it is an orphan, which gc and repack remove.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "store/hash.h"

namespace casfs {

// The intake packs written but not yet committed (or given up on) in this process.
class IntakeInFlight {
 public:
  // Ids of the packs in flight now. Files listed before this call that are neither
  // named by the index read after it nor in this set are orphans.
  std::unordered_set<std::uint32_t> ids() const;

 private:
  friend class IntakeWrite;
  mutable std::mutex mutex_;
  std::unordered_set<std::uint32_t> ids_;
};

// One batch's intake pack, from before its file is created until the insert that
// indexes it is over (committed or dropped).
class IntakeWrite {
 public:
  IntakeWrite(IntakeInFlight& in_flight, std::uint32_t pack_id);
  ~IntakeWrite();
  IntakeWrite(const IntakeWrite&) = delete;
  IntakeWrite& operator=(const IntakeWrite&) = delete;

  std::uint32_t pack_id() const { return pack_id_; }
  // The file's length once written.
  std::uint64_t size = 0;
  // Where each object's record starts.
  std::unordered_map<ObjectId, std::uint64_t, ObjectIdHash> offsets;

 private:
  IntakeInFlight& in_flight_;
  std::uint32_t pack_id_;
};

}  // namespace casfs
