// Filesystem: file contents. Reads overlay the file's dirty bytes on its stored
// extents; writes land in the dirty buffer; write-out (flush_locked) turns the
// buffer into chunks in the store and commits extents, size and times at once. A
// writer that fills the buffer writes it out behind the file's lock (write_behind),
// so that a large file keeps streaming in while its earlier bytes are stored.
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>

#include "fs/filesystem.h"
#include "fs/fs_error.h"
#include "fs/long_work.h"
#include "store/error.h"
#include "store/log.h"

namespace casfs {

namespace {

// ext4's limit for a file with 4 KiB blocks is 16 TiB; ours is the offset type's.
constexpr std::uint64_t kMaxFileSize = std::numeric_limits<std::int64_t>::max();
constexpr std::size_t kZeroPiece = 1 << 20;

// A chunk that cannot be read is lost data, whatever the store's reason: EIO.
template <typename F>
auto reading(std::uint64_t ino, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const FsError& e) {
    if (e.code() == ENOENT) throw FsError(EIO, e.what());
    throw;
  } catch (const StoreError& e) {
    throw FsError(EIO, "file " + std::to_string(ino) + ": " + e.what());
  }
}

}  // namespace

std::uint64_t Filesystem::writing_bytes(const OpenFile& file) {
  std::uint64_t bytes = 0;
  for (const DirtyBuffer& frozen : file.writing) bytes += frozen.bytes();
  return bytes;
}

void Filesystem::open(std::uint64_t ino, bool truncate) {
  auto file = file_of(ino);
  if (truncate) {
    auto io = lock_exclusive(*file);
    truncate_locked(ino, *file, 0, now_timespec());
  }
  std::lock_guard lock(live_mutex_);
  ++live_[ino].opens;
}

void Filesystem::release(std::uint64_t ino) {
  {
    std::lock_guard lock(live_mutex_);
    auto it = live_.find(ino);
    if (it == live_.end()) return;
    if (it->second.opens > 0) --it->second.opens;
  }
  // A closed dirty file is written out by the flusher's next round, together with
  // the others closed meanwhile.
  maybe_retire(ino);
}

std::size_t Filesystem::read(std::uint64_t ino, std::uint64_t offset, std::span<std::byte> out) {
  auto file = file_of(ino);
  std::shared_lock io(file->io);
  std::uint64_t size;
  {
    std::lock_guard attr(file->attr);
    size = file->size;
  }
  if (offset >= size || out.empty()) return 0;
  const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size - offset));
  auto part = out.first(n);
  reading(ino, [&] {
    LmdbTxn snapshot = LmdbTxn::read(store_.env());
    // Stored extents end at stored_size; past it the file is dirty bytes or a hole.
    data_.read(snapshot, ino, std::min(size, file->stored_size), offset, part);
    if (file->stored_size < offset + n) {
      const std::uint64_t from = std::max(offset, file->stored_size);
      std::fill(part.begin() + static_cast<std::ptrdiff_t>(from - offset), part.end(),
                std::byte{0});
    }
  });
  for (const DirtyBuffer& frozen : file->writing) frozen.overlay(offset, part);
  file->dirty.overlay(offset, part);
  return n;
}

std::unique_lock<std::shared_mutex> Filesystem::lock_exclusive(OpenFile& file) {
  std::unique_lock io = lock_announcing_wait(file.io);
  if (!file.writing.empty()) {
    before_long_work();
    ++file.exclusive_waiters;
    file.written.wait(io, [&] { return file.writing.empty(); });
    --file.exclusive_waiters;
    file.written.notify_all();  // write-behinds held back for this one may go on
  }
  return io;
}

bool Filesystem::write_locked(OpenFile& file, std::uint64_t offset, std::span<const std::byte> data,
                              Timespec now, bool needs_space) {
  if (data.empty()) return false;
  if (offset > kMaxFileSize || data.size() > kMaxFileSize - offset)
    throw FsError(EFBIG, "write past the largest file size");
  if (needs_space) reserve_space(data.size());
  const std::uint64_t before = file.dirty.bytes();
  file.dirty.write(offset, data);
  const std::uint64_t after = file.dirty.bytes();
  if (after >= before) {
    dirty_total_ += after - before;
  } else {
    dirty_total_ -= before - after;
  }
  {
    std::lock_guard attr(file.attr);
    if (!file.needs_flush()) file.dirty_since = std::chrono::steady_clock::now();
    if (offset + data.size() > file.size) {
      file.size = offset + data.size();
      file.size_changed = true;
    }
    file.dirty_bytes = after + writing_bytes(file);
    if (options_.stamp_writes) file.mtime = file.ctime = now;
  }
  if (after >= options_.dirty_file_limit || dirty_total_ >= options_.dirty_total_limit) return true;
  if (dirty_total_ >= options_.dirty_total_limit / 2) flusher_wake_.notify_one();
  return false;
}

void Filesystem::write(std::uint64_t ino, std::uint64_t offset, std::span<const std::byte> data) {
  auto file = file_of(ino);
  std::unique_lock io(file->io);
  if (write_locked(*file, offset, data, now_timespec(), /*needs_space=*/true))
    write_behind(ino, *file, io);
}

void Filesystem::truncate_locked(std::uint64_t ino, OpenFile& file, std::uint64_t size,
                                 Timespec now) {
  if (size > kMaxFileSize) throw FsError(EFBIG, "size past the largest file size");
  const std::uint64_t before = file.dirty.bytes();
  file.dirty.truncate(size);
  dirty_total_ -= before - file.dirty.bytes();
  {
    std::lock_guard attr(file.attr);
    if (!file.needs_flush()) file.dirty_since = std::chrono::steady_clock::now();
    file.size = size;
    file.size_changed = true;
    file.dirty_bytes = file.dirty.bytes();
    if (options_.stamp_writes) file.mtime = file.ctime = now;
  }
  // Stored bytes past the new end must go before the file can grow again over them.
  if (size < file.stored_size) flush_locked(ino, file);
}

std::uint64_t Filesystem::allocated_after(std::uint64_t allocated, const PendingWrite& w) {
  for (const Extent& e : w.added()) allocated += e.length;
  for (const Extent& e : w.removed()) allocated -= std::min(allocated, e.length);
  return allocated;
}

void Filesystem::store_written(Inode& inode, std::uint64_t size, std::uint64_t allocated,
                               const std::optional<Timespec>& mtime,
                               const std::optional<Timespec>& ctime) {
  inode.size = size;
  inode.allocated = allocated;
  if (mtime) inode.mtime = *mtime;
  if (ctime) inode.ctime = *ctime;
}

void Filesystem::finish_flush(OpenFile& file) {
  dirty_total_ -= file.dirty.bytes();
  file.dirty.clear();
  std::lock_guard attr(file.attr);
  file.dirty_bytes = 0;
  file.size_changed = false;
  file.mtime.reset();
  file.ctime.reset();
}

void Filesystem::flush_locked(std::uint64_t ino, OpenFile& file) {
  std::uint64_t new_size;
  std::optional<Timespec> mtime, ctime;
  {
    std::lock_guard attr(file.attr);
    if (!file.needs_flush()) return;
    new_size = file.size;
    mtime = file.mtime;
    ctime = file.ctime;
  }
  before_long_work();
  auto ranges = file.dirty.ranges();
  PendingWrite pending = [&] {
    LmdbTxn snapshot = LmdbTxn::read(store_.env());
    return data_.prepare_write(snapshot, ino, file.stored_size, new_size, ranges,
                               WriteShape{.old_end_is_cut = file.stored_end_is_cut});
  }();
  commit_write_out(ino, file, pending, new_size, mtime, ctime);
  finish_flush(file);
}

void Filesystem::commit_write_out(std::uint64_t ino, OpenFile& file, PendingWrite& pending,
                                  std::uint64_t new_size, const std::optional<Timespec>& mtime,
                                  const std::optional<Timespec>& ctime) {
  const std::uint64_t allocated = allocated_after(file.stored_alloc, pending);
  queue_.write(
      [&](LmdbTxn& txn) {
        auto inode = namespace_.get(txn, ino);
        if (!inode) return;  // freed meanwhile: nothing references the new chunks
        data_.commit_write(txn, pending);
        store_written(*inode, new_size, allocated, mtime, ctime);
        namespace_.put(txn, *inode);
      },
      Durability::kNow);
  file.stored_size = new_size;
  file.stored_alloc = allocated;
  file.stored_end_is_cut = pending.tail_deferred();
}

void Filesystem::flush(std::uint64_t ino, const std::shared_ptr<OpenFile>& file) {
  auto io = lock_exclusive(*file);
  flush_locked(ino, *file);
}

void Filesystem::give_back(OpenFile& file, DirtyBuffer& frozen, std::uint64_t from) {
  const std::uint64_t before = frozen.bytes() + file.dirty.bytes();
  for (const DirtyRange& r : frozen.ranges()) {
    if (r.offset + r.data.size() <= from) continue;
    const std::uint64_t start = std::max(r.offset, from);
    file.dirty.write_under(start, r.data.subspan(start - r.offset));
  }
  frozen.truncate(from);
  dirty_total_ += frozen.bytes() + file.dirty.bytes();
  dirty_total_ -= before;
}

void Filesystem::write_behind(std::uint64_t ino, OpenFile& file,
                              std::unique_lock<std::shared_mutex>& io) {
  before_long_work();
  // A write-behind in flight leaves the file stored up to planned_size. The next may
  // cut its bytes before that one commits only if it stops at a cut and nothing was
  // written below it since: then no snapshot, from before or after that commit, holds
  // an extent past it, and the new layout needs none of the file's stored bytes.
  // Two at a time at most, as each holds its bytes twice (buffer and chunks) until
  // it commits.
  auto may_follow = [&] {
    std::uint64_t first = 0, first_end = 0;
    return file.writing.size() == 1 && file.planned_cut && !file.writing_failed &&
           (!file.dirty.next_range(0, first, first_end) || first >= file.planned_size);
  };
  file.written.wait(io, [&] {
    return !file.chunking && file.exclusive_waiters == 0 && (file.writing.empty() || may_follow());
  });
  // The one waited for may have taken this writer's bytes along.
  if (file.dirty.bytes() < options_.dirty_file_limit && dirty_total_ < options_.dirty_total_limit)
    return;
  std::uint64_t new_size;
  std::optional<Timespec> mtime, ctime;
  {
    std::lock_guard attr(file.attr);
    new_size = file.size;
    mtime = file.mtime;
    ctime = file.ctime;
  }
  const bool follows = !file.writing.empty();
  const std::uint64_t old_size = follows ? file.planned_size : file.stored_size;
  const bool old_end_is_cut = follows ? file.planned_cut : file.stored_end_is_cut;
  // Until the commit only writes change the file (everything else waits in
  // lock_exclusive), so its stored state holds still and its size only grows.
  file.writing.push_back(std::move(file.dirty));
  file.dirty.clear();
  DirtyBuffer& frozen = file.writing.back();
  file.chunking = true;
  io.unlock();
  std::exception_ptr failure;
  std::optional<PendingWrite> pending;
  try {
    LmdbTxn snapshot = LmdbTxn::read(store_.env());
    pending.emplace(data_.prepare_write(
        snapshot, ino, old_size, new_size, frozen.ranges(),
        WriteShape{.old_end_is_cut = old_end_is_cut, .defer_tail = true, .stage = false}));
  } catch (...) {
    failure = std::current_exception();
  }
  io.lock();
  file.chunking = false;
  file.planned_cut = false;
  if (!failure) {
    const std::uint64_t end = pending->stored_end();
    // The tail goes back for the next write-out.
    if (pending->tail_deferred()) give_back(file, frozen, end);
    file.planned_size = end;
    file.planned_cut = pending->tail_deferred();
  }
  file.written.notify_all();
  if (!failure) {
    io.unlock();
    try {
      data_.stage(*pending);
    } catch (...) {
      failure = std::current_exception();
    }
    io.lock();
  }
  // Commits go in the order the write-behinds began; after a failure, none commits
  // until the failed one's bytes are back in the buffer.
  file.written.wait(io, [&] { return &file.writing.front() == &frozen; });
  if (!failure && file.writing_failed)
    failure = std::make_exception_ptr(
        FsError(EIO, "file " + std::to_string(ino) + ": an earlier write-out failed"));
  if (!failure) {
    try {
      commit_write_out(ino, file, *pending, pending->stored_end(), mtime, ctime);
      dirty_total_ -= frozen.bytes();
    } catch (...) {
      failure = std::current_exception();
    }
  }
  if (failure) {
    give_back(file, frozen, 0);  // nothing is lost
    file.writing_failed = file.writing.size() > 1;
  }
  file.writing.pop_front();
  if (file.writing.empty()) file.writing_failed = false;
  {
    std::lock_guard attr(file.attr);
    file.dirty_bytes = file.dirty.bytes() + writing_bytes(file);
    if (!failure) {
      file.size_changed = file.size != file.stored_size;
      // Times set by writes since are newer, and stay to be stored.
      if (file.mtime == mtime) file.mtime.reset();
      if (file.ctime == ctime) file.ctime.reset();
    }
  }
  file.written.notify_all();
  if (failure) std::rethrow_exception(failure);
}

void Filesystem::fsync(std::uint64_t ino) {
  if (auto file = find_file(ino)) flush(ino, file);
  queue_.commit();
}

void Filesystem::flush_all() {
  write_out(/*everything=*/true);
}

void Filesystem::sync_all() {
  flush_all();
  queue_.commit();
}

void Filesystem::flusher_loop() {
  const auto tick = std::min<std::chrono::milliseconds>(options_.commit_interval / 4,
                                                        std::chrono::milliseconds(500));
  std::unique_lock lock(flusher_mutex_);
  while (!flusher_stop_) {
    flusher_wake_.wait_for(lock, tick);
    if (flusher_stop_) break;
    lock.unlock();
    try {
      write_out(/*everything=*/false);
    } catch (const std::exception& e) {
      // The files stay dirty and are tried again; fsync on one reports its error.
      log::error("writing out files failed: %s", e.what());
    }
    lock.lock();
  }
}

void Filesystem::write_out(bool everything) {
  // Closed files at once; open ones once their oldest change is an interval old.
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<std::uint64_t, std::shared_ptr<OpenFile>>> due;
  {
    std::lock_guard live_lock(live_mutex_);
    for (auto& [ino, live] : live_) {
      if (!live.file) continue;
      std::lock_guard attr(live.file->attr);
      if (!live.file->needs_flush()) continue;
      if (everything || live.opens == 0 || now - live.file->dirty_since >= options_.commit_interval)
        due.emplace_back(ino, live.file);
    }
  }
  // In inode order, which is the order the files were created in and readdir lists
  // them in: the new chunks then lie in the intake pack in that order, and reading a
  // freshly written tree back reads the pack forwards, where the kernel's readahead
  // merges the reads. live_ is a hash map, and its order put them mostly backwards
  // (in a cold read of an untarred tree, 18,793 of 20,000 successive disk reads went
  // back from the one before).
  std::sort(due.begin(), due.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // Batches of files share one staging sync and one commit, bounded in bytes so that
  // the locks they hold are not held for long.
  constexpr std::uint64_t kBatchBytes = 64ull << 20;
  std::size_t next = 0;
  while (next < due.size()) {
    struct Member {
      std::uint64_t ino;
      OpenFile* file;
      std::unique_lock<std::shared_mutex> io;
      std::uint64_t new_size;
      std::uint64_t allocated;
      std::optional<Timespec> mtime, ctime;
    };
    std::vector<Member> members;
    WriteBatch batch;
    std::uint64_t bytes = 0;
    {
      LmdbTxn snapshot = LmdbTxn::read(store_.env());
      for (; next < due.size() && bytes < kBatchBytes; ++next) {
        auto& [ino, file] = due[next];
        auto io = lock_exclusive(*file);
        Member m{ino, file.get(), {}, 0, 0, {}, {}};
        {
          std::lock_guard attr(file->attr);
          if (!file->needs_flush()) continue;
          m.new_size = file->size;
          m.mtime = file->mtime;
          m.ctime = file->ctime;
        }
        auto ranges = file->dirty.ranges();
        PendingWrite w = data_.prepare_write(
            snapshot, ino, file->stored_size, m.new_size, ranges,
            WriteShape{.old_end_is_cut = file->stored_end_is_cut, .stage = false});
        m.allocated = allocated_after(file->stored_alloc, w);
        bytes += file->dirty.bytes();
        batch.add(std::move(w));
        m.io = std::move(io);
        members.push_back(std::move(m));
      }
    }
    if (members.empty()) continue;
    data_.stage(batch);
    queue_.write(
        [&](LmdbTxn& txn) {
          data_.commit(txn, batch);
          for (const Member& m : members) {
            auto inode = namespace_.get(txn, m.ino);
            if (!inode) continue;
            store_written(*inode, m.new_size, m.allocated, m.mtime, m.ctime);
            namespace_.put(txn, *inode);
          }
        },
        Durability::kNow);
    for (Member& m : members) {
      m.file->stored_size = m.new_size;
      m.file->stored_alloc = m.allocated;
      m.file->stored_end_is_cut = false;
      finish_flush(*m.file);
      m.io.unlock();
    }
    for (const Member& m : members) maybe_retire(m.ino);
  }
}

void Filesystem::fallocate(std::uint64_t ino, int mode, std::uint64_t offset,
                           std::uint64_t length) {
  constexpr int kSupported = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
  if ((mode & ~kSupported) != 0)
    throw FsError(EOPNOTSUPP, "fallocate mode " + std::to_string(mode) + " is not supported");
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
    throw FsError(EOPNOTSUPP, "punching a hole needs FALLOC_FL_KEEP_SIZE");
  if (length == 0) throw FsError(EINVAL, "fallocate of zero bytes");
  if (offset > kMaxFileSize || length > kMaxFileSize - offset)
    throw FsError(EFBIG, "fallocate past the largest file size");
  auto file = file_of(ino);
  auto io = lock_exclusive(*file);
  const Timespec now = now_timespec();
  std::uint64_t size;
  {
    std::lock_guard attr(file->attr);
    size = file->size;
  }
  const std::uint64_t end = offset + length;
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    // Zeros written over the range become holes when the file is written out:
    // all-zero chunks are not stored.
    static const std::array<std::byte, kZeroPiece> zeros{};
    const std::uint64_t zero_end = keep_size ? std::min(end, size) : end;
    for (std::uint64_t pos = offset; pos < zero_end; pos += kZeroPiece) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kZeroPiece, zero_end - pos));
      // Zeros take no room once written out (holes), so a full disk does not stop them.
      if (write_locked(*file, pos, std::span(zeros).first(n), now, /*needs_space=*/false))
        flush_locked(ino, *file);
    }
  }
  if (!keep_size && end > size) {
    std::lock_guard attr(file->attr);
    if (!file->needs_flush()) file->dirty_since = std::chrono::steady_clock::now();
    file->size = std::max(file->size, end);
    file->size_changed = true;
    if (options_.stamp_writes) file->mtime = file->ctime = now;
  }
}

std::uint64_t Filesystem::copy_range(std::uint64_t in_ino, std::uint64_t in_offset,
                                     std::uint64_t out_ino, std::uint64_t out_offset,
                                     std::uint64_t length) {
  std::vector<std::byte> buffer(std::min<std::uint64_t>(length, 1 << 20));
  std::uint64_t copied = 0;
  while (copied < length) {
    const auto want =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - copied));
    const std::size_t got = read(in_ino, in_offset + copied, std::span(buffer).first(want));
    if (got == 0) break;
    write(out_ino, out_offset + copied, std::span(buffer).first(got));
    copied += got;
  }
  return copied;
}

std::uint64_t Filesystem::seek_data_hole(std::uint64_t ino, std::uint64_t offset, int whence) {
  auto file = file_of(ino);
  std::shared_lock io(file->io);
  std::uint64_t size;
  {
    std::lock_guard attr(file->attr);
    size = file->size;
  }
  if (offset >= size) throw FsError(ENXIO, "offset past the end of the file");
  // Data is where stored extents or dirty bytes are; everything else is a hole.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> data;
  {
    LmdbTxn snapshot = LmdbTxn::read(store_.env());
    for (const Extent& e : data_.extents(snapshot, ino))
      if (e.end() > offset && e.offset < size) data.emplace_back(e.offset, std::min(e.end(), size));
  }
  auto add_ranges = [&](const DirtyBuffer& buffer) {
    for (const DirtyRange& r : buffer.ranges())
      if (r.offset + r.data.size() > offset) data.emplace_back(r.offset, r.offset + r.data.size());
  };
  for (const DirtyBuffer& frozen : file->writing) add_ranges(frozen);
  add_ranges(file->dirty);
  std::sort(data.begin(), data.end());
  if (whence == SEEK_DATA) {
    for (const auto& [start, end] : data)
      if (end > offset) return std::max(start, offset);
    throw FsError(ENXIO, "no data past the offset");
  }
  std::uint64_t pos = offset;
  for (const auto& [start, end] : data) {
    if (start > pos) break;
    pos = std::max(pos, end);
  }
  return std::min(pos, size);
}

}  // namespace casfs
