#include "fs/file_data.h"

#include <lmdb.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

#include "fs/fs_error.h"
#include "store/byte_order.h"
#include "store/error.h"
#include "store/index.h"

namespace casfs {
namespace {

constexpr std::size_t kKeySize = 16;
constexpr std::size_t kValueSize = 32 + 8;
constexpr std::uint64_t kNoEnd = std::numeric_limits<std::uint64_t>::max();

using Key = std::array<std::byte, kKeySize>;

Key extent_key(std::uint64_t ino, std::uint64_t offset) {
  Key key;
  put_be64(key.data(), ino);
  put_be64(key.data() + 8, offset);
  return key;
}

std::array<std::byte, kValueSize> extent_value(const Extent& e) {
  std::array<std::byte, kValueSize> value;
  std::memcpy(value.data(), e.id.bytes.data(), 32);
  put_le<std::uint64_t>(value.data() + 32, e.length);
  return value;
}

// Decodes an entry; nullopt when the key belongs to another inode.
std::optional<Extent> decode(std::uint64_t ino, Bytes key, Bytes value) {
  if (key.size() != kKeySize || get_be64(key.data()) != ino) return std::nullopt;
  if (value.size() != kValueSize)
    throw FsError(EIO, "file " + std::to_string(ino) + ": malformed extent record");
  Extent e;
  e.offset = get_be64(key.data() + 8);
  e.id = ObjectId::from_bytes(value.first(32));
  e.length = get_le<std::uint64_t>(value.data() + 32);
  return e;
}

// Runs `f`, turning the store's errors into the fs layer's, naming the file.
template <typename F>
auto for_file(std::uint64_t ino, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const StoreError& e) {
    throw FsError(e.code(), "file " + std::to_string(ino) + ": " + e.what());
  }
}

// LmdbCursor only walks forward; finding the extent that contains an offset needs a
// step back, so this one is raw.
class BackCursor {
 public:
  BackCursor(const LmdbTxn& txn, MDB_dbi dbi) {
    check_mdb(mdb_cursor_open(txn.get(), dbi, &cursor_), "mdb_cursor_open");
  }
  ~BackCursor() { mdb_cursor_close(cursor_); }
  BackCursor(const BackCursor&) = delete;
  BackCursor& operator=(const BackCursor&) = delete;

  // The entry with the greatest key <= `key`; false when there is none.
  bool at_or_before(Bytes key) {
    key_ = MDB_val{key.size(), const_cast<std::byte*>(key.data())};
    int rc = mdb_cursor_get(cursor_, &key_, &val_, MDB_SET_RANGE);
    if (rc == 0 && key_.mv_size == key.size() &&
        std::memcmp(key_.mv_data, key.data(), key.size()) == 0)
      return true;
    if (rc == MDB_NOTFOUND) {
      rc = mdb_cursor_get(cursor_, &key_, &val_, MDB_LAST);
    } else {
      check_mdb(rc, "mdb_cursor_get");
      rc = mdb_cursor_get(cursor_, &key_, &val_, MDB_PREV);
    }
    if (rc == MDB_NOTFOUND) return false;
    check_mdb(rc, "mdb_cursor_get");
    return true;
  }
  Bytes key() const { return {static_cast<const std::byte*>(key_.mv_data), key_.mv_size}; }
  Bytes value() const { return {static_cast<const std::byte*>(val_.mv_data), val_.mv_size}; }

 private:
  MDB_cursor* cursor_ = nullptr;
  MDB_val key_{};
  MDB_val val_{};
};

bool all_zero(std::span<const std::byte> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

ChunkerParams chunker_params(const StoreSettings& s) {
  return ChunkerParams{s.chunk_min, s.chunk_avg, s.chunk_max};
}

}  // namespace

std::optional<Extent> decode_extent_record(std::uint64_t ino, Bytes key, Bytes value) {
  return decode(ino, key, value);
}

FileData::FileData(Store& store)
    : store_(store),
      chunker_(chunker_params(store.settings())),
      extents_(store.env().open_db("extents")),
      helper_cpus_(CpuAffinity::of_this_thread()),
      helper_policy_(SchedulingPolicy::of_this_thread()) {}

std::optional<Extent> FileData::at_or_before(const LmdbTxn& txn, std::uint64_t ino,
                                             std::uint64_t pos) const {
  BackCursor cursor(txn, extents_);
  auto key = extent_key(ino, pos);
  if (!cursor.at_or_before(key)) return std::nullopt;
  return decode(ino, cursor.key(), cursor.value());
}

std::vector<Extent> FileData::overlapping(const LmdbTxn& txn, std::uint64_t ino, std::uint64_t from,
                                          std::uint64_t to) const {
  std::vector<Extent> out;
  if (from >= to) return out;
  // The extent containing `from` starts before it: begin the walk there.
  std::uint64_t start = from;
  if (auto e = at_or_before(txn, ino, from)) start = e->offset;
  LmdbCursor cursor(txn, extents_);
  auto key = extent_key(ino, start);
  for (bool ok = cursor.seek(key); ok; ok = cursor.next()) {
    auto e = decode(ino, cursor.key(), cursor.value());
    if (!e || e->offset >= to) break;
    if (e->end() > from) out.push_back(*e);
  }
  return out;
}

std::vector<Extent> FileData::extents(const LmdbTxn& txn, std::uint64_t ino) const {
  return for_file(ino, [&] { return overlapping(txn, ino, 0, kNoEnd); });
}

std::size_t FileData::read(const LmdbTxn& txn, std::uint64_t ino, std::uint64_t file_size,
                           std::uint64_t offset, std::span<std::byte> out) {
  if (offset >= file_size || out.empty()) return 0;
  const std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), file_size - offset));
  const std::uint64_t end = offset + n;
  // What no extent covers is a hole, read as zeros.
  auto zero = [&](std::uint64_t from, std::uint64_t to) {
    if (from < to) std::memset(out.data() + (from - offset), 0, to - from);
  };

  return for_file(ino, [&] {
    auto exts = overlapping(txn, ino, offset, end);
    if (exts.empty()) {
      zero(offset, end);
      return n;
    }
    // For each extent: the part of its object this read needs, and where it goes.
    std::vector<ObjectPart> parts;
    std::vector<std::byte*> dsts;
    std::vector<std::uint64_t> got;  // bytes of each part delivered so far
    parts.reserve(exts.size());
    dsts.reserve(exts.size());
    std::uint64_t covered = offset;
    for (const auto& e : exts) {
      const std::uint64_t from = std::max(offset, e.offset);
      const std::uint64_t to = std::min(end, e.end());
      zero(covered, from);
      covered = std::max(covered, to);
      parts.push_back(ObjectPart{e.id, from - e.offset, to - from});
      dsts.push_back(out.data() + (from - offset));
    }
    zero(covered, end);
    got.assign(parts.size(), 0);
    std::optional<StoreError> failure;
    ExtractSink sink;
    sink.data = [&](std::size_t i, std::span<const std::byte> bytes) {
      std::memcpy(dsts[i] + got[i], bytes.data(), bytes.size());
      got[i] += bytes.size();
    };
    sink.done = [&](std::size_t i) {
      // The store stops at the object's end: a short part means a short object.
      if (got[i] != parts[i].length && !failure)
        failure.emplace(EIO, "object " + parts[i].id.hex() + " is shorter than its extent (" +
                                 std::to_string(exts[i].length) + " bytes)");
    };
    sink.error = [&](std::size_t, const StoreError& e) {
      if (!failure) failure = e;
    };
    store_.extract_parts(parts, sink, Store::Cache::kUse);
    if (failure) throw *failure;
    return n;
  });
}

namespace {

// A chunk prepare_write has cut, to be hashed once all of the write is cut.
struct CutChunk {
  std::uint64_t offset;
  std::vector<std::byte> bytes;
  ObjectId id;
};

// SHA-256 is the largest part of a big write-out's CPU time (0.85 s of the daemon's
// 2.1 s for a 1.36 GB copy), and a file's write-outs cut and hash one at a time, as
// each must know where the last one cut. With enough to hash, a second thread takes
// every other chunk: cp + sync of that file 2.47-2.58 s against 2.61-2.89 s. The
// thread costs tens of µs against the ~20 ms it saves on a 64 MiB write-out.
void hash_chunks(std::vector<CutChunk>& chunks, const CpuAffinity& helper_cpus,
                 const SchedulingPolicy& helper_policy) {
  constexpr std::uint64_t kTwoThreadsFrom = 4ull << 20;
  std::uint64_t total = 0;
  for (const auto& c : chunks) total += c.bytes.size();
  auto hash_every_other = [&chunks](std::size_t first) {
    for (std::size_t k = first; k < chunks.size(); k += 2)
      chunks[k].id = Sha256::of(chunks[k].bytes);
  };
  if (total < kTwoThreadsFrom || chunks.size() < 2) {
    for (auto& c : chunks) c.id = Sha256::of(c.bytes);
    return;
  }
  std::jthread helper;
  try {
    helper = std::jthread([&] {
      helper_cpus.apply_to_this_thread();
      helper_policy.apply_to_this_thread();
      hash_every_other(1);
    });
  } catch (const std::system_error&) {
    hash_every_other(1);  // no thread to be had: hash them all here
  }
  hash_every_other(0);
}

}  // namespace

PendingWrite FileData::prepare_write(const LmdbTxn& snapshot, std::uint64_t ino,
                                     std::uint64_t old_size, std::uint64_t new_size,
                                     std::span<const DirtyRange> dirty, const WriteShape& shape) {
  const std::string file = "file " + std::to_string(ino);
  for (std::size_t k = 0; k < dirty.size(); ++k) {
    const auto& d = dirty[k];
    if (d.offset > new_size || d.data.size() > new_size - d.offset)
      throw FsError(EINVAL, file + ": dirty range past the new size");
    if (k > 0 && dirty[k - 1].offset + dirty[k - 1].data.size() > d.offset)
      throw FsError(EINVAL, file + ": dirty ranges unsorted or overlapping");
  }

  return for_file(ino, [&] {
    PendingWrite pw;
    pw.ino_ = ino;
    pw.stored_end_ = new_size;
    // Old bytes survive only below both sizes; between old_size and new_size is a hole.
    const std::uint64_t keep_old = std::min(old_size, new_size);
    const std::uint64_t chunk_max = chunker_.params().max_size;

    // Where re-chunking must start and the end of the bytes it must cover.
    struct Item {
      std::uint64_t start = 0;
      std::uint64_t end = 0;
    };
    std::vector<Item> items;
    for (const auto& d : dirty) {
      if (d.data.empty()) continue;
      // Start at the boundary of the old chunk holding the range start, or at the one
      // just ending there (so appends grow the last chunk instead of adding tiny ones).
      std::uint64_t start = d.offset;
      const bool starts_chunk = shape.old_end_is_cut && d.offset == old_size;
      if (auto e = at_or_before(snapshot, ino, d.offset);
          e && (e->end() > d.offset || (e->end() == d.offset && !starts_chunk)))
        start = e->offset;
      items.push_back(Item{start, d.offset + d.data.size()});
    }
    if (new_size < old_size) {
      // Everything at or past the new end goes; a chunk straddling it is cut and
      // re-chunked so that no extent reaches past the end of the file.
      for (const auto& e : overlapping(snapshot, ino, new_size, kNoEnd))
        if (e.offset >= new_size) pw.removed_.push_back(e);
      if (new_size > 0)
        if (auto e = at_or_before(snapshot, ino, new_size - 1); e && e->end() > new_size)
          items.push_back(Item{e->offset, new_size});
    }
    std::sort(items.begin(), items.end(),
              [](const Item& a, const Item& b) { return a.start < b.start; });

    // The new content of [from, to): old bytes overlaid with dirty bytes, zeros elsewhere.
    // Old bytes under dirty ranges are not read at all.
    auto materialise = [&](std::uint64_t from, std::uint64_t to, std::byte* out) {
      auto dend = [&](std::size_t k) { return dirty[k].offset + dirty[k].data.size(); };
      std::size_t first =
          static_cast<std::size_t>(std::partition_point(dirty.begin(), dirty.end(),
                                                        [&](const DirtyRange& d) {
                                                          return d.offset + d.data.size() <= from;
                                                        }) -
                                   dirty.begin());
      const std::uint64_t old_end = std::min(to, keep_old);
      std::uint64_t cur = from;
      for (std::size_t k = first; cur < old_end; ++k) {
        const bool more = k < dirty.size() && dirty[k].offset < old_end;
        const std::uint64_t gap_end = more ? std::max(cur, dirty[k].offset) : old_end;
        if (gap_end > cur)
          read(snapshot, ino, old_size, cur,
               std::span<std::byte>(out + (cur - from), static_cast<std::size_t>(gap_end - cur)));
        if (!more) break;
        cur = std::max(cur, dend(k));
      }
      // Zeros only where neither old nor dirty bytes land (past the old end, between
      // ranges): filling everything first would write every byte twice.
      std::uint64_t z = std::max(from, old_end);
      for (std::size_t k = first; z < to; ++k) {
        const bool more = k < dirty.size() && dirty[k].offset < to;
        const std::uint64_t gap_end = more ? std::max<std::uint64_t>(z, dirty[k].offset) : to;
        if (gap_end > z) std::fill_n(out + (z - from), gap_end - z, std::byte{0});
        if (!more) break;
        z = std::max<std::uint64_t>(z, dend(k));
      }
      for (std::size_t k = first; k < dirty.size() && dirty[k].offset < to; ++k) {
        const std::uint64_t lo = std::max(from, dirty[k].offset);
        const std::uint64_t hi = std::min(to, dend(k));
        if (lo < hi)
          std::memcpy(out + (lo - from), dirty[k].data.data() + (lo - dirty[k].offset), hi - lo);
      }
    };

    // A sliding window of new content, holding at least one maximal chunk past `pos`
    // (or up to the new end), so memory stays bounded whatever the region's length.
    std::vector<std::byte> window;
    std::uint64_t window_start = 0;
    auto ensure = [&](std::uint64_t pos) {
      const std::uint64_t want_end = std::min(new_size, pos + chunk_max);
      const std::uint64_t window_end = window_start + window.size();
      if (pos >= window_start && want_end <= window_end) return;
      if (pos >= window_start && pos <= window_end) {
        window.erase(window.begin(),
                     window.begin() + static_cast<std::ptrdiff_t>(pos - window_start));
      } else {
        window.clear();
      }
      window_start = pos;
      const std::uint64_t from = window_start + window.size();
      const std::uint64_t to = std::min(new_size, std::max(want_end, from + chunk_max));
      const std::size_t had = window.size();
      window.resize(had + static_cast<std::size_t>(to - from));
      materialise(from, to, window.data() + had);
    };

    std::vector<Extent> replaced;
    std::vector<CutChunk> cut;
    std::unordered_map<ObjectId, std::vector<std::byte>, ObjectIdHash> chunk_bytes;
    std::size_t next_item = 0;
    while (next_item < items.size()) {
      const std::uint64_t region_start = items[next_item].start;
      std::uint64_t need = items[next_item].end;
      ++next_item;
      std::uint64_t pos = region_start;
      while (pos < new_size) {
        ensure(pos);
        const std::uint64_t window_end = window_start + window.size();
        std::span<const std::byte> avail(window.data() + (pos - window_start),
                                         static_cast<std::size_t>(window_end - pos));
        const bool at_end = window_end == new_size;
        // A tail the chunker cannot cut on its own, all of it new bytes, may wait
        // for the bytes that follow it.
        std::size_t len = 0;
        if (shape.defer_tail && at_end && pos >= old_size) {
          len = chunker_.next_chunk(avail, /*at_end=*/false);
          if (len == 0) {
            pw.stored_end_ = pos;
            pw.tail_deferred_ = true;
            next_item = items.size();  // the regions left start inside the tail
            break;
          }
        }
        if (len == 0) len = chunker_.next_chunk(avail, at_end);
        if (len == 0) throw FsError(EIO, file + ": the chunker made no progress");
        auto chunk = avail.first(len);
        // All-zero chunks stay holes: no object, no extent.
        if (!all_zero(chunk)) cut.push_back(CutChunk{pos, {chunk.begin(), chunk.end()}, {}});
        pos += len;
        // A later region whose start this chunk has passed joins this one.
        while (next_item < items.size() && items[next_item].start < pos)
          need = std::max(need, items[next_item++].end);
        if (pos >= need) {
          // Resynchronised when the cut lands where no old extent straddles it: from
          // here on the old layout describes the (unchanged) bytes exactly.
          auto e = at_or_before(snapshot, ino, pos);
          if (!(e && e->offset < pos && e->end() > pos)) break;
        }
      }
      pw.rechunked_bytes_ += pos - region_start;
      for (const auto& e : overlapping(snapshot, ino, region_start, pos)) replaced.push_back(e);
    }

    hash_chunks(cut, helper_cpus_, helper_policy_);
    // One copy of each distinct chunk is kept, to be staged.
    for (auto& c : cut) {
      pw.added_.push_back(Extent{c.offset, c.bytes.size(), c.id});
      if (!chunk_bytes.contains(c.id)) chunk_bytes.emplace(c.id, std::move(c.bytes));
    }
    cut.clear();

    // A re-chunked extent identical to the one it replaces is left alone.
    std::map<std::uint64_t, Extent> old_at;
    for (const auto& e : replaced) old_at.emplace(e.offset, e);
    std::vector<Extent> added;
    for (const auto& e : pw.added_) {
      auto it = old_at.find(e.offset);
      if (it != old_at.end() && it->second == e) {
        old_at.erase(it);
      } else {
        added.push_back(e);
      }
    }
    pw.added_ = std::move(added);
    for (const auto& [offset, e] : old_at) pw.removed_.push_back(e);
    std::sort(pw.removed_.begin(), pw.removed_.end(),
              [](const Extent& a, const Extent& b) { return a.offset < b.offset; });

    for (const auto& e : pw.added_) {
      auto it = chunk_bytes.find(e.id);
      if (it == chunk_bytes.end()) continue;  // staged already
      pw.staged_bytes_.push_back(std::move(it->second));
      pw.staged_ids_.push_back(e.id);
      chunk_bytes.erase(it);
    }
    chunk_bytes.clear();
    if (shape.stage) stage(pw);
    return pw;
  });
}

void FileData::commit_write(LmdbTxn& txn, PendingWrite& pending) {
  if (pending.committed_)
    throw FsError(EINVAL, "file " + std::to_string(pending.ino_) + ": write committed already");
  if (!pending.insert_ && !pending.staged_bytes_.empty())
    throw FsError(EINVAL, "file " + std::to_string(pending.ino_) + ": write was never staged");
  // Index the new objects with no references; apply counts one per extent.
  for_file(pending.ino_, [&] {
    if (pending.insert_) store_.commit_insert(txn, *pending.insert_, 0);
  });
  apply(txn, pending);
}

void FileData::stage(PendingWrite& write) {
  if (write.insert_)
    throw FsError(EINVAL, "file " + std::to_string(write.ino_) + ": staged already");
  if (write.staged_bytes_.empty()) return;
  std::vector<std::span<const std::byte>> objects(write.staged_bytes_.begin(),
                                                  write.staged_bytes_.end());
  write.insert_.emplace(store_.prepare_insert(objects, write.staged_ids_));
}

void FileData::stage(WriteBatch& batch) {
  if (batch.insert_) throw FsError(EINVAL, "write batch staged already");
  std::vector<std::span<const std::byte>> objects;
  std::vector<ObjectId> ids;
  for (const PendingWrite& w : batch.writes_) {
    for (const auto& bytes : w.staged_bytes_) objects.emplace_back(bytes);
    ids.insert(ids.end(), w.staged_ids_.begin(), w.staged_ids_.end());
  }
  if (!objects.empty()) batch.insert_.emplace(store_.prepare_insert(objects, ids));
}

void FileData::commit(LmdbTxn& txn, WriteBatch& batch) {
  if (batch.committed_) throw FsError(EINVAL, "write batch committed already");
  bool staged_all = true;
  for (const PendingWrite& w : batch.writes_) staged_all &= w.staged_bytes_.empty();
  if (!batch.insert_ && !staged_all) throw FsError(EINVAL, "write batch was never staged");
  if (batch.insert_) store_.commit_insert(txn, *batch.insert_, 0);
  for (PendingWrite& w : batch.writes_) apply(txn, w);
  batch.committed_ = true;
}

void FileData::apply(LmdbTxn& txn, PendingWrite& pending) {
  const std::uint64_t ino = pending.ino_;
  if (pending.committed_)
    throw FsError(EINVAL, "file " + std::to_string(ino) + ": write committed already");
  for_file(ino, [&] {
    std::map<ObjectId, std::uint64_t> gained;
    std::map<ObjectId, std::uint64_t> lost;
    for (const auto& e : pending.removed_) {
      txn.del(extents_, extent_key(ino, e.offset));
      ++lost[e.id];
    }
    for (const auto& e : pending.added_) {
      txn.put(extents_, extent_key(ino, e.offset), extent_value(e));
      ++gained[e.id];
    }
    // Gains go first so an object moving between extents never dips below zero.
    auto& index = store_.index();
    for (const auto& [id, n] : gained) index.add_ref(txn, id, n);
    for (const auto& [id, n] : lost) index.release(txn, id, n);
  });
  pending.committed_ = true;
}

void FileData::release_all(LmdbTxn& txn, std::uint64_t ino) {
  for_file(ino, [&] {
    std::map<ObjectId, std::uint64_t> lost;
    for (const auto& e : overlapping(txn, ino, 0, kNoEnd)) {
      txn.del(extents_, extent_key(ino, e.offset));
      ++lost[e.id];
    }
    auto& index = store_.index();
    for (const auto& [id, n] : lost) index.release(txn, id, n);
  });
}

// --- for fsck ---------------------------------------------------------------

void FileData::for_each(const LmdbTxn& txn,
                        const std::function<void(std::uint64_t ino, std::uint64_t offset,
                                                 const Extent* extent)>& visit) const {
  LmdbCursor cursor(txn, extents_);
  for (bool ok = cursor.first(); ok; ok = cursor.next()) {
    Bytes key = cursor.key();
    if (key.size() != kKeySize) throw FsError(EIO, "extents table has a malformed key");
    const std::uint64_t ino = get_be64(key.data());
    const std::uint64_t offset = get_be64(key.data() + 8);
    if (cursor.value().size() != kValueSize) {
      visit(ino, offset, nullptr);
      continue;
    }
    auto extent = decode(ino, key, cursor.value());
    visit(ino, offset, &*extent);
  }
}

void FileData::drop(LmdbTxn& txn, std::uint64_t ino, std::uint64_t offset) {
  txn.del(extents_, extent_key(ino, offset));
}

void FileData::drop_all(LmdbTxn& txn, std::uint64_t ino) {
  std::vector<std::uint64_t> offsets;
  {
    LmdbCursor cursor(txn, extents_);
    auto start = extent_key(ino, 0);
    for (bool ok = cursor.seek(start); ok; ok = cursor.next()) {
      Bytes key = cursor.key();
      if (key.size() != kKeySize || get_be64(key.data()) != ino) break;
      offsets.push_back(get_be64(key.data() + 8));
    }
  }
  for (std::uint64_t offset : offsets) drop(txn, ino, offset);
}

}  // namespace casfs
