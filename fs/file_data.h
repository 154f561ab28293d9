// A regular file's bytes, kept as extents of content-defined chunks in the store:
//   extents: ino (u64 BE) + file offset (u64 BE) → object id (32 bytes) + length (u64 LE)
// Each extent is one whole object (a chunk) placed at its offset. Gaps between
// extents, and the tail past the last extent up to the file size, are holes and read
// as zeros; holes are not stored. Each extent holds exactly one reference on its
// object, so an object's refcount is the number of extents naming it.
//
// Writes are two-phase so that the filesystem commits the new extents, the refcounts
// they imply and its own inode update in one transaction: prepare_write works from a
// read snapshot, chunks and stages the new objects (writing and syncing them outside
// LMDB's writer lock); commit_write then applies the layout change in the caller's
// write transaction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "store/chunker.h"
#include "store/hash.h"
#include "store/lmdb.h"
#include "store/store.h"
#include "store/thread_placement.h"

namespace casfs {

struct Extent {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  ObjectId id;

  std::uint64_t end() const { return offset + length; }
  bool operator==(const Extent&) const = default;
};

// An extents-table entry as read from LMDB: nullopt when the key belongs to another
// inode; FsError(EIO) when the value is not an extent.
std::optional<Extent> decode_extent_record(std::uint64_t ino, Bytes key, Bytes value);

// New bytes for [offset, offset + data.size()) of a file.
struct DirtyRange {
  std::uint64_t offset = 0;
  std::span<const std::byte> data;
};

// How FileData::prepare_write may lay out a write.
struct WriteShape {
  // The stored extents end (at old_size) where the chunker cut on its own, not where
  // the data happened to end: bytes appended there start a new chunk, and the last
  // stored chunk is neither read back nor re-chunked. Any cut made before the end of
  // the data depends only on the bytes before it, so chunking the whole file in one
  // go would cut there too.
  bool old_end_is_cut = false;
  // Leaves the bytes after the last cut unstored when the chunker could not cut them
  // on its own and they all lie at or past old_size: PendingWrite::stored_end() says
  // where the stored bytes then end, and the caller keeps the rest dirty. A file
  // written out in parts while it grows is then chunked as if written in one go.
  bool defer_tail = false;
  // False: the new objects are only computed, for a WriteBatch or stage() to stage.
  bool stage = true;
};

// The result of FileData::prepare_write, to be handed to commit_write. Holds the new
// chunks' bytes and the store's staged insert; drop it only after the transaction that
// commit_write used has been committed (or aborted).
class PendingWrite {
 public:
  PendingWrite(PendingWrite&&) noexcept = default;
  PendingWrite& operator=(PendingWrite&&) noexcept = default;
  PendingWrite(const PendingWrite&) = delete;
  PendingWrite& operator=(const PendingWrite&) = delete;
  ~PendingWrite() = default;

  std::uint64_t ino() const { return ino_; }
  // Old extents that the commit deletes, and the new ones it puts, in offset order.
  const std::vector<Extent>& removed() const { return removed_; }
  const std::vector<Extent>& added() const { return added_; }
  // Bytes of file content that were run through the chunker (dirty data plus margins).
  std::uint64_t rechunked_bytes() const { return rechunked_bytes_; }
  // The file size the new layout describes: new_size, or less when a tail was left
  // unstored (WriteShape::defer_tail).
  std::uint64_t stored_end() const { return stored_end_; }
  bool tail_deferred() const { return tail_deferred_; }

 private:
  friend class FileData;
  PendingWrite() = default;

  std::uint64_t ino_ = 0;
  std::vector<Extent> removed_;
  std::vector<Extent> added_;
  std::uint64_t rechunked_bytes_ = 0;
  std::uint64_t stored_end_ = 0;
  bool tail_deferred_ = false;
  // One entry per distinct new object; prepare_insert needs the bytes until commit.
  std::vector<std::vector<std::byte>> staged_bytes_;
  std::vector<ObjectId> staged_ids_;  // staged_bytes_'s, hashed once by prepare_write
  std::optional<PendingInsert> insert_;
  bool committed_ = false;
};

// Several files' writes whose new objects are staged together (one prepare_insert,
// so one sync for all of them) and committed in one transaction: how the flusher
// writes out many small files at the cost of one.
class WriteBatch {
 public:
  // `write` comes from prepare_write with WriteShape::stage false.
  void add(PendingWrite write) { writes_.push_back(std::move(write)); }
  const std::vector<PendingWrite>& writes() const { return writes_; }
  bool empty() const { return writes_.empty(); }

 private:
  friend class FileData;
  std::vector<PendingWrite> writes_;
  std::optional<PendingInsert> insert_;
  bool committed_ = false;
};

class FileData {
 public:
  // Opens (creating) the extents table; call before any transaction that uses it begins.
  explicit FileData(Store& store);

  // All extents of `ino`, in offset order.
  std::vector<Extent> extents(const LmdbTxn& txn, std::uint64_t ino) const;

  // Fills `out` with the file's bytes from `offset` (zeros in holes); returns the number
  // of bytes read, short at end of file. Throws FsError(EIO) for a corrupt object and
  // FsError(ENOENT) for a missing one.
  std::size_t read(const LmdbTxn& txn, std::uint64_t ino, std::uint64_t file_size,
                   std::uint64_t offset, std::span<std::byte> out);

  // Computes the layout after writing `dirty` (sorted, non-overlapping, all inside
  // [0, new_size)) and resizing the file from old_size to new_size, re-chunking only
  // the regions around the dirty ranges, and stages the new objects in the store.
  // `snapshot` shows the file's current extents; make it a read transaction (or a write
  // transaction with nothing uncommitted): old bytes are fetched through the store,
  // which sees only committed objects.
  PendingWrite prepare_write(const LmdbTxn& snapshot, std::uint64_t ino, std::uint64_t old_size,
                             std::uint64_t new_size, std::span<const DirtyRange> dirty,
                             const WriteShape& shape = {});

  // Applies a prepared write inside `txn`: extents and refcounts. The caller commits.
  // No other write to the same inode may happen between prepare_write and this.
  void commit_write(LmdbTxn& txn, PendingWrite& pending);

  // Stages the new objects of a write prepared with WriteShape::stage false.
  void stage(PendingWrite& write);
  // Stages the new objects of every write in the batch at once; then commit() applies
  // them all inside `txn`. The batch must outlive the commit of that transaction.
  void stage(WriteBatch& batch);
  void commit(LmdbTxn& txn, WriteBatch& batch);

  // Deletes every extent of `ino` and releases their references (freeing an inode).
  void release_all(LmdbTxn& txn, std::uint64_t ino);

  // --- for fsck ---------------------------------------------------------------
  // Raw access to the extents table: fsck reads it whole and sets every refcount
  // from it afterwards, so these touch no references.

  // Every extent of every file in (ino, offset) order; `extent` is null when the
  // record's value is malformed (its ino and offset still come from the key).
  void for_each(const LmdbTxn& txn,
                const std::function<void(std::uint64_t ino, std::uint64_t offset,
                                         const Extent* extent)>& visit) const;
  // Deletes one extent record, or every one of `ino`, keeping refcounts as they are.
  void drop(LmdbTxn& txn, std::uint64_t ino, std::uint64_t offset);
  void drop_all(LmdbTxn& txn, std::uint64_t ino);

 private:
  // The extent with the greatest offset <= pos, if any.
  std::optional<Extent> at_or_before(const LmdbTxn& txn, std::uint64_t ino,
                                     std::uint64_t pos) const;
  // Extents and references of one write; its objects are indexed already.
  void apply(LmdbTxn& txn, PendingWrite& pending);
  // Extents overlapping [from, to), in offset order.
  std::vector<Extent> overlapping(const LmdbTxn& txn, std::uint64_t ino, std::uint64_t from,
                                  std::uint64_t to) const;

  Store& store_;
  Chunker chunker_;
  MDB_dbi extents_;
  // Where the thread that helps hash a large write runs: as the thread that made
  // this FileData, not as a FUSE queue thread (bound to one CPU) that may start it.
  const CpuAffinity helper_cpus_;
  const SchedulingPolicy helper_policy_;
};

}  // namespace casfs
