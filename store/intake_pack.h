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
#include "store/unique_fd.h"

namespace casfs {

// The intake packs written but not yet committed (or given up on) in this process,
// and the one kept open for appending (OpenIntakePack).
class IntakeInFlight {
 public:
  // Ids of the packs in flight now. Files listed before this call that are neither
  // named by the index read after it nor in this set are orphans.
  std::unordered_set<std::uint32_t> ids() const;
  bool contains(std::uint32_t pack_id) const;

 private:
  friend class IntakeWrite;
  mutable std::mutex mutex_;
  // A pack is in flight while any write into it is: an open pack's appends overlap.
  std::unordered_map<std::uint32_t, std::uint32_t> writes_;
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

// One batch's records in an intake pack, from before they are written (before the
// file is created, for a new pack) until the insert that indexes them is over
// (committed or dropped).
class IntakeWrite {
 public:
  IntakeWrite(IntakeInFlight& in_flight, std::uint32_t pack_id);
  ~IntakeWrite();
  IntakeWrite(const IntakeWrite&) = delete;
  IntakeWrite& operator=(const IntakeWrite&) = delete;

  std::uint32_t pack_id() const { return pack_id_; }
  // Where the batch's records start and end in the file.
  std::uint64_t start = 0;
  std::uint64_t size = 0;
  // Where each object's record starts.
  std::unordered_map<ObjectId, std::uint64_t, ObjectIdHash> offsets;

 private:
  IntakeInFlight& in_flight_;
  std::uint32_t pack_id_;
};

// Small batches (an fsync'd file's few new chunks, the few files the flusher found
// closed) are appended to one intake pack kept open for them: one write and one
// fdatasync, where loose objects cost a file, a directory entry and syncs of both
// each. On ext4 here a synced 8 KiB append took 130-155 µs, a synced new file and
// its directory 310-365 µs; an fsync made four syncs, now three.
//
// The pack is in flight for as long as it is open, so that neither gc's orphan
// sweep nor pack()'s removal of drained intake packs takes it from under the
// appends; pack() may move its committed records out meanwhile, as from any intake
// pack. It is let go once it passes kMaxBytes, or when a write to it fails (what
// follows a torn record could not be found by a scan), and is then an ordinary
// intake pack. Batches may commit out of order: its entry's size is the end of the
// furthest batch indexed, and the bytes of batches below it not indexed (yet) count
// as dead until they are. A batch dropped before its commit, or cut off by a crash,
// stays dead bytes or a tail past the size, which go when pack() drops the pack.
struct OpenIntakePack {
  static constexpr std::uint64_t kMaxBytes = 64ull << 20;

  std::mutex mutex;  // guards the rest; held from choosing a record's place to its sync
  std::unique_ptr<IntakeWrite> hold;  // keeps the pack in flight while it is open
  UniqueFd fd;                        // not open: the next append starts a pack
  std::uint64_t end = 0;              // where the next record goes
};

}  // namespace casfs
