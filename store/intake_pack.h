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
// The file is written with O_DIRECT, through a reused aligned buffer, where the
// filesystem allows it: its bytes are synced at once anyway, and on this machine's
// virtual machine, filling fresh page cache for a new file cost more than the copy
// into the buffer and the device write together (a 1.36 GB file written in 64 MiB
// intake packs: copy_folio_from_iter_atomic was 42 % of the daemon's time).
//
// Crash safety: the file and its directory entry are synced before the index
// transaction that adds the pack entry and the objects' entries commits. Until
// then the pack is in flight, and remove_orphan_packs leaves it alone; after a
// crash before the commit it is an orphan, which gc and repack remove.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "store/file_io.h"
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

// Aligned buffers for direct writes, kept for reuse: new memory costs page faults.
class IntakeBuffers {
 public:
  static constexpr std::size_t kAlign = 4096;  // covers every device's logical block
  static constexpr std::size_t kSize = 8 << 20;
  static constexpr std::size_t kKept = 4;  // as many write-outs as run at once, about

  using Buffer = AlignedBytes;

  Buffer take();
  void give_back(Buffer buffer) noexcept;

 private:
  std::mutex mutex_;
  std::vector<Buffer> free_;
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
