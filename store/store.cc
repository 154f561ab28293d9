#include "store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "store/block_sums.h"
#include "store/failpoint.h"
#include "store/object_check.h"
#include "store/pack_format.h"
#include "store/store_impl.h"

namespace casfs {

namespace {

// insert_many: objects per batch (one sync and one index commit each).
constexpr std::size_t kInsertBatchObjects = 4096;
constexpr std::uint64_t kInsertBatchBytes = 64 << 20;
// Batches with at most this many new objects sync file by file; larger ones sync the
// whole filesystem once, which costs the same however many files it covers.
constexpr std::size_t kPerFileSyncLimit = 4;
// extract_many merges reads of records that lie this close together in a pack.
constexpr std::uint64_t kCoalesceGap = 4096;
constexpr std::uint64_t kCoalesceMax = 4 << 20;

}  // namespace

// ---------------------------------------------------------------------------------
// Opening and creating

void Store::init(const std::filesystem::path& dir, const StoreSettings& settings) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::is_directory(dir, ec)) {
      throw StoreError(ENOTDIR, dir.string() + " exists and is not a directory");
    }
    if (std::filesystem::exists(dir / "casfs.json", ec)) {
      throw StoreError(EEXIST, dir.string() + " is already a casfs store");
    }
    if (!std::filesystem::is_empty(dir, ec)) {
      throw StoreError(ENOTEMPTY, dir.string() + " is not empty; give a new or empty directory");
    }
  } else {
    std::filesystem::create_directories(dir, ec);
    if (ec) throw StoreError(ec.value(), "cannot create " + dir.string() + ": " + ec.message());
  }
  if (settings.compression_level < 1 || settings.compression_level > 19) {
    throw StoreError(EINVAL, "compression level must be between 1 and 19");
  }
  auto config = StoreConfig::create(settings);
  try {
    LooseTier::create_layout(dir);
    std::filesystem::create_directories(dir / "packs");
    std::filesystem::create_directories(dir / "run");
    {
      LmdbEnv env(dir / "meta", /*create=*/true);
      Index index(env);
      auto txn = LmdbTxn::write(env);
      index.put_meta(txn, "store_uuid", config.uuid);
      txn.commit();
    }
    // casfs.json last: until it exists the directory is not a store.
    config.save(dir);
  } catch (const std::filesystem::filesystem_error& e) {
    throw StoreError(e.code().value(), "cannot create store in " + dir.string() + ": " + e.what());
  }
}

std::unique_ptr<Store> Store::open(const std::filesystem::path& dir, const OpenOptions& options) {
  auto config = StoreConfig::load(dir);
  auto impl = std::make_unique<Impl>(dir, std::move(config), options.cache_bytes);
  std::error_code ec;
  bool have_index = std::filesystem::exists(dir / "meta" / "data.mdb", ec);
  if (!have_index && !options.allow_missing_index) {
    throw StoreError(ENOENT, "the index of store " + dir.string() +
                                 " (meta/) is missing; run `casfs store rebuild-index " +
                                 dir.string() + "`");
  }
  impl->env = std::make_unique<LmdbEnv>(dir / "meta", /*create=*/true);
  impl->index = std::make_unique<Index>(*impl->env);
  impl->format_version = impl->config.version;
  impl->intake_min_objects = options.intake_min_objects;
  impl->append_small_batches = options.append_small_batches;
  {
    std::uint32_t next = 1;
    if (have_index) {
      auto txn = LmdbTxn::read(*impl->env);
      next = impl->index->next_pack_id(txn);
    }
    // A file the index never named (a crash's) keeps its id until gc removes it.
    for (std::uint32_t id : impl->packs.list_files()) next = std::max(next, id + 1);
    impl->next_pack_id = next;
  }
  {
    std::optional<std::string> uuid;
    {
      auto txn = LmdbTxn::read(*impl->env);
      uuid = impl->index->get_meta(txn, "store_uuid");
    }
    if (!uuid && !options.allow_missing_index) {
      // An index from before the store's uuid was recorded in it: record it now, so
      // that a meta/ copied from another store is caught from here on.
      auto txn = LmdbTxn::write(*impl->env);
      impl->index->put_meta(txn, "store_uuid", impl->config.uuid);
      txn.commit();
      uuid = impl->config.uuid;
    }
    if (!options.allow_missing_index && uuid != impl->config.uuid) {
      throw StoreError(EINVAL, "the index in " + (dir / "meta").string() +
                                   " belongs to another store; run `casfs store rebuild-index " +
                                   dir.string() + "`");
    }
  }
  impl->loose.clean_staging();
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

const std::filesystem::path& Store::dir() const {
  return impl_->dir;
}
const StoreSettings& Store::settings() const {
  return impl_->config.settings;
}
IoEngine& Store::io() {
  return *impl_->io;
}
LmdbEnv& Store::env() {
  return *impl_->env;
}
Index& Store::index() {
  return *impl_->index;
}

// ---------------------------------------------------------------------------------
// Inserting

WrittenObjects Store::Impl::write_new_objects(std::vector<Blob>& blobs) {
  for (auto& b : blobs) {
    if (!b.id_known) b.id = Sha256::of(b.data);
    b.checksum = Xxh3::of(b.data);
    if (keeps_block_sums() && wants_block_sums(b.data.size())) b.block_sums = block_sums_of(b.data);
  }
  // Which objects need their bytes written: absent from the index, first in batch.
  std::vector<std::size_t> to_write;
  {
    std::unordered_set<ObjectId, ObjectIdHash> seen;
    auto txn = LmdbTxn::read(*env);
    for (std::size_t i = 0; i < blobs.size(); ++i) {
      if (!seen.insert(blobs[i].id).second) continue;
      if (!index->get(txn, blobs[i].id)) to_write.push_back(i);
    }
  }
  WrittenObjects written;
  for (std::size_t i : to_write) written.ids.insert(blobs[i].id);
  if (to_write.empty()) return written;
  failpoint("insert.write_objects");
  // Batches hold objects small enough to be in memory, which an intake pack's reader
  // (pack()) counts on.
  const std::size_t intake_from = intake_threshold();
  if (intake_from > 0 &&
      std::all_of(to_write.begin(), to_write.end(),
                  [&](std::size_t i) { return blobs[i].data.size() <= kInMemoryLimit; })) {
    if (to_write.size() >= intake_from) {
      written.intake = write_intake_pack(blobs, to_write);
      return written;
    }
    if (append_small_batches) {
      written.intake = append_intake_records(blobs, to_write);
      return written;
    }
  }

  // New objects are created directly under their final names (O_EXCL), sparing a
  // rename each. A name that exists already is a crash's leftover, or another
  // thread's copy of the same object: those are written to a temporary name and
  // renamed over it, which is atomic and leaves identical bytes in either case.
  // A failed direct write leaves its file in place rather than risk unlinking a
  // complete copy renamed there meanwhile; unindexed, it is gc's to remove.
  std::vector<std::string> final_names(to_write.size());
  std::vector<WriteFileOp> ops(to_write.size());
  bool per_file_sync = to_write.size() <= kPerFileSyncLimit;
  for (std::size_t k = 0; k < to_write.size(); ++k) {
    const Blob& b = blobs[to_write[k]];
    final_names[k] = LooseTier::relative_path(b.id);
    ops[k].dir_fd = loose.dir_fd();
    ops[k].path = final_names[k].c_str();
    ops[k].data = b.data;
    ops[k].sync = per_file_sync;
    ops[k].unlink_on_failure = false;
  }
  io->write_files(ops);
  std::vector<std::string> temp_names;
  std::vector<WriteFileOp> replace;
  for (std::size_t k = 0; k < ops.size(); ++k) {
    if (ops[k].result != -EEXIST) continue;
    temp_names.push_back(loose.new_temp_name(blobs[to_write[k]].id));
  }
  for (std::size_t k = 0, t = 0; k < ops.size(); ++k) {
    if (ops[k].result != -EEXIST) continue;
    WriteFileOp op = ops[k];
    op.path = temp_names[t++].c_str();
    op.rename_dir_fd = loose.dir_fd();
    op.rename_path = final_names[k].c_str();
    op.unlink_on_failure = true;
    // It replaces a file that may already be indexed: it must be on disk first.
    op.sync = true;
    replace.push_back(op);
  }
  if (!replace.empty()) io->write_files(replace);
  for (std::size_t k = 0, r = 0; k < ops.size(); ++k) {
    std::int64_t result = ops[k].result == -EEXIST ? replace[r++].result : ops[k].result;
    if (result < 0) {
      throw_errno(static_cast<int>(-result), "cannot write loose object " + final_names[k]);
    }
  }
  // Object bytes are durable before the index entry that names them.
  if (per_file_sync) {
    for (std::size_t i : to_write) loose.sync_dir_of(blobs[i].id);
  } else if (::syncfs(store_fd.get()) != 0) {
    throw_errno("cannot sync the store's filesystem");
  }
  return written;
}

std::vector<InsertResult> Store::Impl::index_objects(LmdbTxn& txn, const std::vector<Blob>& blobs,
                                                     WrittenObjects& written, std::uint32_t refs,
                                                     std::vector<ObjectId>& redundant_files) {
  IntakeWrite* intake = written.intake.get();
  PackInfo intake_info;
  if (intake) {
    // The open intake pack's entry is shared by its batches, which may commit in any
    // order (intake_pack.h): the bytes between the committed end and a batch past it
    // count as dead until their own batch commits.
    intake_info = index->get_pack(txn, intake->pack_id())
                      .value_or(PackInfo{intake->pack_id(), kPackHeaderSize, 0, 0, 0});
    intake_info.intake = true;
    if (intake->start >= intake_info.size) {
      intake_info.dead_bytes += intake->start - intake_info.size;
      intake_info.size = intake->size;
    } else {
      intake_info.dead_bytes -= std::min(intake_info.dead_bytes, intake->size - intake->start);
    }
  }
  std::unordered_set<ObjectId, ObjectIdHash> indexed_here;
  std::vector<InsertResult> results(blobs.size());
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    const Blob& b = blobs[i];
    results[i].id = b.id;
    results[i].size = b.data.size();
    if (auto existing = index->get(txn, b.id)) {
      existing->refcount += refs;
      index->put(txn, *existing);
      if (indexed_here.contains(b.id) || !written.ids.erase(b.id)) continue;
      // Another writer indexed it first: our copy is surplus. A loose file is removed
      // if theirs was packed since (else it is theirs too); an intake record is dead.
      if (intake) {
        intake_info.dead_bytes += kRecordHeaderSize + b.data.size();
      } else if (existing->tier == Tier::kPacked) {
        redundant_files.push_back(b.id);
      }
      continue;
    }
    if (!written.ids.contains(b.id)) {
      // Dropped by gc between our look-up and now is impossible (the gate), so this is
      // a store invariant broken; refuse rather than index bytes we did not write.
      throw StoreError(EIO, "object " + b.id.hex() + " vanished during insert");
    }
    ObjectInfo info;
    info.id = b.id;
    info.tier = Tier::kLoose;
    info.codec = Codec::kRaw;
    info.raw_size = info.stored_size = b.data.size();
    info.checksum = b.checksum;
    info.block_sums = b.block_sums;
    info.refcount = refs;
    if (intake) {
      info.tier = Tier::kPacked;
      info.pack_id = intake->pack_id();
      info.offset = intake->offsets.at(b.id);
      intake_info.live_bytes += kRecordHeaderSize + info.stored_size;
      intake_info.live_records += 1;
    }
    index->put(txn, info);
    indexed_here.insert(b.id);
    results[i].added = true;
    loose_added_objects += 1;
    loose_added_bytes += info.raw_size;
  }
  if (intake) index->put_pack(txn, intake_info);
  return results;
}

std::vector<InsertResult> Store::Impl::insert_batch(std::vector<Blob>& blobs, std::uint32_t refs) {
  std::shared_lock gate(loose_gate);
  auto written = write_new_objects(blobs);
  std::vector<ObjectId> redundant_files;
  auto txn = LmdbTxn::write(*env);
  auto results = index_objects(txn, blobs, written, refs, redundant_files);
  txn.commit();
  loose.remove(*io, redundant_files);
  return results;
}

struct PendingInsert::State {
  Store::Impl* impl = nullptr;
  std::shared_lock<InsertGate> gate;
  std::vector<Blob> blobs;
  WrittenObjects written;
  std::vector<ObjectId> redundant_files;
  bool committed = false;
};

PendingInsert::PendingInsert(std::unique_ptr<State> state) : state_(std::move(state)) {}
PendingInsert::PendingInsert(PendingInsert&&) noexcept = default;
PendingInsert& PendingInsert::operator=(PendingInsert&&) noexcept = default;

PendingInsert::~PendingInsert() {
  if (!state_ || state_->redundant_files.empty()) return;
  try {
    state_->impl->loose.remove(*state_->impl->io, state_->redundant_files);
  } catch (const StoreError&) {
    // Surplus copies of packed objects: gc removes whatever is left.
  }
}

std::vector<ObjectId> PendingInsert::ids() const {
  std::vector<ObjectId> ids;
  for (const auto& b : state_->blobs) ids.push_back(b.id);
  return ids;
}

PendingInsert Store::prepare_insert(std::span<const std::span<const std::byte>> objects,
                                    std::span<const ObjectId> ids) {
  if (!ids.empty() && ids.size() != objects.size())
    throw StoreError(EINVAL, "prepare_insert: " + std::to_string(ids.size()) + " ids for " +
                                 std::to_string(objects.size()) + " objects");
  auto state = std::make_unique<PendingInsert::State>();
  state->impl = impl_.get();
  state->gate = std::shared_lock(impl_->loose_gate);
  for (std::size_t i = 0; i < objects.size(); ++i)
    state->blobs.push_back(ids.empty() ? Blob(objects[i]) : Blob(objects[i], ids[i]));
  state->written = impl_->write_new_objects(state->blobs);
  return PendingInsert(std::move(state));
}

std::vector<InsertResult> Store::commit_insert(LmdbTxn& txn, PendingInsert& pending,
                                               std::uint32_t refs) {
  auto& state = *pending.state_;
  if (state.committed) throw StoreError(EINVAL, "this insert has been committed already");
  if (!txn.writable()) throw StoreError(EINVAL, "commit_insert needs a write transaction");
  auto results = impl_->index_objects(txn, state.blobs, state.written, refs, state.redundant_files);
  state.committed = true;
  return results;
}

std::vector<InsertResult> Store::insert_many(
    const std::function<std::optional<std::span<const std::byte>>()>& next, std::uint32_t refs) {
  std::vector<InsertResult> results;
  std::vector<Blob> batch;
  std::uint64_t batch_bytes = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    auto r = impl_->insert_batch(batch, refs);
    results.insert(results.end(), r.begin(), r.end());
    batch.clear();
    batch_bytes = 0;
  };
  while (auto data = next()) {
    if (data->size() > kInMemoryLimit) {
      flush();
      results.push_back(insert(*data, refs));
      continue;
    }
    batch.push_back(Blob(*data));
    batch_bytes += data->size();
    if (batch.size() >= kInsertBatchObjects || batch_bytes >= kInsertBatchBytes) flush();
  }
  flush();
  return results;
}

std::vector<InsertResult> Store::insert_many(std::span<const std::span<const std::byte>> objects,
                                             std::uint32_t refs) {
  std::size_t i = 0;
  return insert_many(
      [&]() -> std::optional<std::span<const std::byte>> {
        if (i == objects.size()) return std::nullopt;
        return objects[i++];
      },
      refs);
}

InsertResult Store::insert(std::span<const std::byte> data, std::uint32_t refs) {
  if (data.size() <= kInMemoryLimit) {
    std::vector<Blob> one{Blob(data)};
    return impl_->insert_batch(one, refs).front();
  }
  std::size_t pos = 0;
  return insert_stream(
      [&](std::span<std::byte> buf) {
        std::size_t n = std::min(buf.size(), data.size() - pos);
        std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(pos), n, buf.begin());
        pos += n;
        return n;
      },
      refs);
}

InsertResult Store::insert_stream(const std::function<std::size_t(std::span<std::byte>)>& read,
                                  std::uint32_t refs) {
  auto& impl = *impl_;
  std::string staging = impl.loose.new_staging_name();
  UniqueFd fd(::openat(impl.loose.staging_fd(), staging.c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!fd) throw_errno("cannot create a staging file in " + (impl.dir / "staging").string());
  auto discard = [&] { ::unlinkat(impl.loose.staging_fd(), staging.c_str(), 0); };
  try {
    Sha256 sha;
    Xxh3 xxh;
    std::vector<std::byte> buf(kStreamPiece);
    std::uint64_t size = 0;
    for (;;) {
      std::size_t n = read(buf);
      if (n == 0) break;
      auto piece = std::span<const std::byte>(buf).first(n);
      sha.update(piece);
      xxh.update(piece);
      pwrite_full(fd.get(), piece, size);
      size += n;
    }
    if (::fdatasync(fd.get()) != 0) throw_errno("cannot sync staging file");
    fd.reset();
    return impl.commit_streamed(staging, sha.finish(), size, xxh.digest(), refs);
  } catch (...) {
    discard();
    throw;
  }
}

InsertResult Store::Impl::commit_streamed(const std::string& staging_name, const ObjectId& id,
                                          std::uint64_t size, std::uint64_t checksum,
                                          std::uint32_t refs) {
  std::shared_lock gate(loose_gate);
  InsertResult result{id, size, false};
  auto txn = LmdbTxn::write(*env);
  if (auto existing = index->get(txn, id)) {
    existing->refcount += refs;
    index->put(txn, *existing);
    txn.commit();
    ::unlinkat(loose.staging_fd(), staging_name.c_str(), 0);
    return result;
  }
  std::string final_name = LooseTier::relative_path(id);
  if (::renameat(loose.staging_fd(), staging_name.c_str(), loose.dir_fd(), final_name.c_str()) !=
      0) {
    throw_errno("cannot move object " + id.hex() + " into the loose tier");
  }
  loose.sync_dir_of(id);
  ObjectInfo info;
  info.id = id;
  info.raw_size = info.stored_size = size;
  info.checksum = checksum;
  info.refcount = refs;
  index->put(txn, info);
  txn.commit();
  result.added = true;
  loose_added_objects += 1;
  loose_added_bytes += size;
  return result;
}

namespace {

// Reads a whole small regular file; nullopt when it is not one (too large, not
// regular, or it grew past the limit while being read).
std::optional<std::vector<std::byte>> read_small_file(int fd, const struct stat& st,
                                                      const std::filesystem::path& path) {
  if (!S_ISREG(st.st_mode) || static_cast<std::uint64_t>(st.st_size) > kInMemoryLimit) {
    return std::nullopt;
  }
  // One byte more than its size, to notice a file that grew since fstat.
  std::vector<std::byte> data(static_cast<std::size_t>(st.st_size) + 1);
  std::size_t got = 0;
  for (;;) {
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read " + path.string());
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got == data.size()) return std::nullopt;
  }
  data.resize(got);
  return data;
}

UniqueFd open_input_file(const std::filesystem::path& path, struct stat& st) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("cannot open " + path.string());
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + path.string());
  if (S_ISDIR(st.st_mode)) throw StoreError(EISDIR, path.string() + " is a directory");
  return fd;
}

std::function<std::size_t(std::span<std::byte>)> fd_reader(int fd,
                                                           const std::filesystem::path& path) {
  return [fd, path](std::span<std::byte> buf) -> std::size_t {
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) throw_errno("cannot read " + path.string());
    }
  };
}

}  // namespace

InsertResult Store::insert_file(const std::filesystem::path& path, std::uint32_t refs) {
  struct stat st;
  UniqueFd fd = open_input_file(path, st);
  if (::lseek(fd.get(), 0, SEEK_CUR) == 0) {
    if (auto data = read_small_file(fd.get(), st, path)) return insert(*data, refs);
    ::lseek(fd.get(), 0, SEEK_SET);
  }
  return insert_stream(fd_reader(fd.get(), path), refs);
}

void Store::insert_files(std::span<const std::filesystem::path> paths, const FileDoneFn& done,
                         std::uint32_t refs) {
  std::vector<std::vector<std::byte>> contents;
  std::vector<std::size_t> owners;  // path index of each batched file
  std::uint64_t batch_bytes = 0;
  auto flush = [&] {
    if (contents.empty()) return;
    std::vector<Blob> blobs;
    blobs.reserve(contents.size());
    for (const auto& c : contents) blobs.push_back(Blob(c));
    try {
      auto results = impl_->insert_batch(blobs, refs);
      for (std::size_t k = 0; k < owners.size(); ++k) done(owners[k], &results[k], nullptr);
    } catch (const StoreError& e) {
      for (std::size_t owner : owners) done(owner, nullptr, &e);
    }
    contents.clear();
    owners.clear();
    batch_bytes = 0;
  };
  for (std::size_t i = 0; i < paths.size(); ++i) {
    try {
      struct stat st;
      UniqueFd fd = open_input_file(paths[i], st);
      if (auto data = read_small_file(fd.get(), st, paths[i])) {
        batch_bytes += data->size();
        contents.push_back(std::move(*data));
        owners.push_back(i);
        if (contents.size() >= kInsertBatchObjects || batch_bytes >= kInsertBatchBytes) flush();
        continue;
      }
      flush();  // keep `done` in path order
      ::lseek(fd.get(), 0, SEEK_SET);
      InsertResult r = insert_stream(fd_reader(fd.get(), paths[i]), refs);
      done(i, &r, nullptr);
    } catch (const StoreError& e) {
      flush();
      done(i, nullptr, &e);
    }
  }
  flush();
}

// ---------------------------------------------------------------------------------
// Reading

bool Store::has(const ObjectId& id) {
  return impl_->lookup(id).has_value();
}

std::optional<ObjectInfo> Store::stat(const ObjectId& id) {
  return impl_->lookup(id);
}

void Store::list(const std::function<void(const ObjectInfo&)>& visit) {
  auto txn = LmdbTxn::read(*impl_->env);
  impl_->index->for_each(txn, [&](const ObjectInfo& info) {
    visit(info);
    return true;
  });
}

void Store::Impl::stream_loose(const ObjectInfo& info, int fd,
                               const std::function<void(std::span<const std::byte>)>& out) {
  std::vector<std::byte> buf(kStreamPiece);
  // First pass checks, second delivers: no byte leaves before the object is known good.
  Xxh3 xxh;
  std::uint64_t size = 0;
  while (std::size_t n = pread_full(fd, buf, size)) {
    xxh.update(std::span<const std::byte>(buf).first(n));
    size += n;
  }
  if (size != info.raw_size) throw corrupt_object(info.id, "loose file has the wrong size");
  if (xxh.digest() != info.checksum) throw corrupt_object(info.id, "checksum mismatch");
  for (std::uint64_t off = 0; off < size;) {
    std::size_t n = pread_full(fd, buf, off);
    if (n == 0) throw corrupt_object(info.id, "loose file shrank while being read");
    out(std::span<const std::byte>(buf).first(n));
    off += n;
  }
}

void Store::Impl::stream_packed(const ObjectInfo& info, int fd,
                                const std::function<void(std::span<const std::byte>)>& out) {
  std::array<std::byte, kRecordHeaderSize> hb;
  if (pread_full(fd, hb, info.offset) != hb.size())
    throw corrupt_object(info.id, "record is truncated");
  auto header = RecordHeader::decode(hb);
  if (!header || header->id != info.id || header->stored_size != info.stored_size ||
      header->raw_size != info.raw_size || header->codec != info.codec) {
    throw corrupt_object(info.id, "record header does not match the index");
  }
  const std::uint64_t start = info.offset + kRecordHeaderSize;
  auto sum = xxh3_of_range(fd, start, info.stored_size);
  if (!sum) throw corrupt_object(info.id, "record is truncated");
  if (*sum != info.checksum || header->payload_xxh3 != info.checksum) {
    throw corrupt_object(info.id, "payload checksum mismatch");
  }
  std::vector<std::byte> buf(kStreamPiece);
  ZstdDecompressStream zstd;
  std::uint64_t delivered = 0;
  for (std::uint64_t done = 0; done < info.stored_size;) {
    auto want = std::min<std::uint64_t>(buf.size(), info.stored_size - done);
    std::size_t n = pread_full(fd, std::span<std::byte>(buf).first(want), start + done);
    if (n != want) throw corrupt_object(info.id, "record is truncated");
    auto piece = std::span<const std::byte>(buf).first(n);
    done += n;
    if (info.codec == Codec::kRaw) {
      out(piece);
      delivered += n;
      continue;
    }
    zstd.update(piece, [&](std::span<const std::byte> raw) {
      delivered += raw.size();
      if (delivered > info.raw_size) {
        throw corrupt_object(info.id, "decodes to more bytes than recorded");
      }
      out(raw);
    });
  }
  if (delivered != info.raw_size || (info.codec == Codec::kZstd && !zstd.finished())) {
    throw corrupt_object(info.id, "decodes to fewer bytes than recorded");
  }
}

void Store::Impl::read_object(const ObjectInfo& info,
                              const std::function<void(std::span<const std::byte>)>& out) {
  if (info.tier == Tier::kLoose) {
    UniqueFd fd = loose.open_read(info.id);
    if (!fd) throw_errno("cannot open loose object " + info.id.hex());
    if (must_stream(info)) return stream_loose(info, fd.get(), out);
    std::vector<std::byte> buf(info.raw_size + 1);
    std::size_t got = pread_full(fd.get(), buf, 0);
    check_loose(info, buf, static_cast<std::int64_t>(got));
    out(std::span<const std::byte>(buf).first(info.raw_size));
    return;
  }
  auto fd = packs.open_read(info.pack_id);
  if (must_stream(info)) return stream_packed(info, fd->get(), out);
  std::vector<std::byte> rec(kRecordHeaderSize + info.stored_size);
  pread_full(fd->get(), rec, info.offset);
  std::vector<std::byte> scratch;
  out(decode_payload(info, check_record(info, rec), scratch));
}

void Store::Impl::read_object_retrying(const ObjectId& id,
                                       const std::function<void(std::span<const std::byte>)>& out) {
  // A concurrent pack or repack may move the object between our look-up and our
  // read; the old location then no longer exists (ENOENT) and the index has the new.
  for (int attempt = 0;; ++attempt) {
    auto info = lookup(id);
    if (!info) throw StoreError(ENOENT, "object " + id.hex() + " is not in the store");
    try {
      read_object(*info, out);
      return;
    } catch (const StoreError& e) {
      if (e.code() != ENOENT || attempt == 3) throw;
    }
  }
}

std::vector<std::byte> Store::read(const ObjectId& id) {
  std::vector<std::byte> result;
  impl_->read_object_retrying(id, [&](std::span<const std::byte> piece) {
    result.insert(result.end(), piece.begin(), piece.end());
  });
  return result;
}

void Store::extract(const ObjectId& id,
                    const std::function<void(std::span<const std::byte>)>& out) {
  impl_->read_object_retrying(id, out);
}

void Store::Impl::extract_batch(std::span<const ObjectInfo> infos,
                                std::span<const std::size_t> order, const ExtractSink& sink,
                                bool use_cache) {
  // Packed records: coalesce neighbours into one read.
  struct Range {
    int fd;
    std::uint64_t start, end;
    std::vector<std::byte> buf;
  };
  std::vector<Range> ranges;
  std::vector<std::shared_ptr<const UniqueFd>> pack_fds;
  std::vector<std::size_t> range_of(order.size(), SIZE_MAX);
  std::vector<std::size_t> loose_slots;
  std::vector<std::string> loose_paths;
  std::vector<std::vector<std::byte>> loose_bufs;
  std::vector<int> open_errors(order.size(), 0);

  std::uint32_t current_pack = 0;
  int current_fd = -1;
  for (std::size_t k = 0; k < order.size(); ++k) {
    const ObjectInfo& info = infos[order[k]];
    if (info.tier == Tier::kLoose) {
      loose_slots.push_back(k);
      continue;
    }
    if (current_fd < 0 || info.pack_id != current_pack) {
      try {
        pack_fds.push_back(packs.open_read(info.pack_id));
        current_fd = pack_fds.back()->get();
        current_pack = info.pack_id;
      } catch (const StoreError& e) {
        open_errors[k] = e.code();
        current_fd = -1;
        continue;
      }
    }
    std::uint64_t start = info.offset, end = info.offset + kRecordHeaderSize + info.stored_size;
    if (!ranges.empty() && ranges.back().fd == current_fd && start >= ranges.back().end &&
        start - ranges.back().end <= kCoalesceGap && end - ranges.back().start <= kCoalesceMax) {
      ranges.back().end = end;
    } else {
      ranges.push_back(Range{current_fd, start, end, {}});
    }
    range_of[k] = ranges.size() - 1;
  }

  std::vector<ReadOp> reads(ranges.size());
  for (std::size_t r = 0; r < ranges.size(); ++r) {
    ranges[r].buf.resize(ranges[r].end - ranges[r].start);
    reads[r] = ReadOp{ranges[r].fd, ranges[r].start, ranges[r].buf, 0};
  }
  std::vector<ReadFileOp> file_reads(loose_slots.size());
  loose_paths.resize(loose_slots.size());
  loose_bufs.resize(loose_slots.size());
  for (std::size_t j = 0; j < loose_slots.size(); ++j) {
    const ObjectInfo& info = infos[order[loose_slots[j]]];
    loose_paths[j] = LooseTier::relative_path(info.id);
    loose_bufs[j].resize(info.raw_size + 1);
    file_reads[j].dir_fd = loose.dir_fd();
    file_reads[j].path = loose_paths[j].c_str();
    file_reads[j].buf = loose_bufs[j];
  }
  if (!reads.empty()) io->read(reads);
  if (!file_reads.empty()) io->read_files(file_reads);

  std::vector<std::byte> scratch;
  std::size_t next_loose = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    std::size_t slot = order[k];
    const ObjectInfo& info = infos[slot];
    try {
      std::span<const std::byte> raw;
      if (info.tier == Tier::kLoose) {
        std::size_t j = next_loose++;
        if (file_reads[j].result == -ENOENT) {
          // Packed since we looked: read it from its new home.
          read_object_retrying(info.id, [&](auto piece) { sink.data(slot, piece); });
          sink.done(slot);
          continue;
        }
        check_loose(info, loose_bufs[j], file_reads[j].result);
        raw = std::span<const std::byte>(loose_bufs[j]).first(info.raw_size);
      } else {
        if (open_errors[k] != 0) {
          if (open_errors[k] != ENOENT) throw StoreError(open_errors[k], "cannot open pack");
          read_object_retrying(info.id, [&](auto piece) { sink.data(slot, piece); });
          sink.done(slot);
          continue;
        }
        const Range& range = ranges[range_of[k]];
        const ReadOp& op = reads[range_of[k]];
        if (op.result < 0) throw StoreError(static_cast<int>(-op.result), "cannot read pack");
        std::uint64_t at = info.offset - range.start;
        std::uint64_t avail = static_cast<std::uint64_t>(op.result) > at ? op.result - at : 0;
        auto rec = std::span<const std::byte>(range.buf).subspan(
            at, std::min<std::uint64_t>(avail, kRecordHeaderSize + info.stored_size));
        raw = decode_payload(info, check_record(info, rec), scratch);
      }
      if (use_cache) cache.insert(info.id, raw);
      sink.data(slot, raw);
      sink.done(slot);
    } catch (const StoreError& e) {
      // A copy cached before the disk's went bad goes too: once a check has found
      // the damage (verify does), reads fail as verify says they do.
      cache.erase(info.id);
      sink.error(slot, e);
    }
  }
}

void Store::Impl::extract_blocks(std::span<const ObjectInfo> infos,
                                 std::span<const BlockRead> reads, const DeliverAt& deliver,
                                 const ExtractSink& whole) {
  // Each read's bytes are bufs[k] from skip[k] on, for r.end - r.begin bytes: a pack's
  // direct read covers the aligned range around them.
  std::vector<AlignedBytes> bufs(reads.size());
  std::vector<std::size_t> skip(reads.size(), 0);
  std::vector<std::int64_t> results(reads.size(), 0);
  std::vector<std::shared_ptr<const UniqueFd>> pack_fds;
  std::vector<ReadOp> pack_ops;
  std::vector<std::size_t> pack_op_of;
  std::vector<std::string> loose_paths;
  loose_paths.reserve(reads.size());  // the ops point into these strings
  std::vector<ReadFileOp> loose_ops;
  std::vector<std::size_t> loose_op_of;
  const std::size_t align = packs.block_align();
  auto wanted = [&](std::size_t k) {
    return std::span<std::byte>(bufs[k].get() + skip[k],
                                static_cast<std::size_t>(reads[k].end - reads[k].begin));
  };
  for (std::size_t k = 0; k < reads.size(); ++k) {
    const BlockRead& r = reads[k];
    const ObjectInfo& info = infos[r.slot];
    const auto length = static_cast<std::size_t>(r.end - r.begin);
    if (info.tier == Tier::kLoose) {
      constexpr std::size_t kMalloc = alignof(std::max_align_t);
      bufs[k] = allocate_aligned(kMalloc, (length + kMalloc) / kMalloc * kMalloc);
      loose_paths.push_back(LooseTier::relative_path(info.id));
      ReadFileOp op;
      op.dir_fd = loose.dir_fd();
      op.path = loose_paths.back().c_str();
      op.offset = r.begin;
      op.buf = wanted(k);
      loose_ops.push_back(op);
      loose_op_of.push_back(k);
      continue;
    }
    try {
      pack_fds.push_back(packs.open_read(info.pack_id, PackAccess::kBlocks));
    } catch (const StoreError& e) {
      results[k] = -e.code();
      continue;
    }
    const std::uint64_t at = info.offset + kRecordHeaderSize + r.begin;
    const std::uint64_t from = at / align * align;
    const std::uint64_t to = (at + length + align - 1) / align * align;
    bufs[k] = allocate_aligned(align, static_cast<std::size_t>(to - from));
    skip[k] = static_cast<std::size_t>(at - from);
    pack_ops.push_back(ReadOp{pack_fds.back()->get(), from,
                              std::span(bufs[k].get(), static_cast<std::size_t>(to - from)), 0});
    pack_op_of.push_back(k);
  }
  if (!pack_ops.empty()) io->read(pack_ops);
  if (!loose_ops.empty()) io->read_files(loose_ops);
  for (std::size_t j = 0; j < pack_ops.size(); ++j) {
    const std::size_t k = pack_op_of[j];
    std::int64_t got = pack_ops[j].result;
    if (got == -EINVAL) {
      // The filesystem took the O_DIRECT open but not this read: read it buffered.
      try {
        got = pread_retrying(packs.open_read(infos[reads[k].slot].pack_id)->get(), wanted(k),
                             pack_ops[j].offset + skip[k]);
      } catch (const StoreError& e) {
        got = -e.code();
      }
    } else if (got >= 0) {
      // Bytes of the range asked for: those before it do not count.
      got = std::max<std::int64_t>(0, got - static_cast<std::int64_t>(skip[k]));
      got = std::min<std::int64_t>(got, static_cast<std::int64_t>(wanted(k).size()));
    }
    results[k] = got;
  }
  for (std::size_t j = 0; j < loose_ops.size(); ++j) results[loose_op_of[j]] = loose_ops[j].result;

  for (std::size_t k = 0; k < reads.size(); ++k) {
    const BlockRead& r = reads[k];
    const ObjectInfo& info = infos[r.slot];
    const bool is_loose = info.tier == Tier::kLoose;
    try {
      if (results[k] == -ENOENT) {
        // Packed or repacked since the look-up: read it from its new home.
        read_object_retrying(info.id, [&](auto piece) { whole.data(r.slot, piece); });
      } else if (results[k] < 0) {
        throw StoreError(static_cast<int>(-results[k]),
                         is_loose ? "cannot read loose object " + info.id.hex()
                                  : "cannot read pack " + PackFiles::file_name(info.pack_id));
      } else if (static_cast<std::uint64_t>(results[k]) != r.end - r.begin) {
        throw corrupt_object(info.id,
                             is_loose ? "loose file has the wrong size" : "record is truncated");
      } else {
        check_blocks(info, r.begin / kSumBlockSize, wanted(k));
        deliver(r.slot, r.begin, wanted(k));
      }
      whole.done(r.slot);
    } catch (const StoreError& e) {
      cache.erase(info.id);  // as extract_batch does: a failed check drops any copy
      whole.error(r.slot, e);
    }
  }
}

void Store::extract_many(std::span<const ObjectId> ids, const ExtractSink& sink, Cache cache) {
  std::vector<ObjectPart> parts(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i)
    parts[i] = ObjectPart{ids[i], 0, std::numeric_limits<std::uint64_t>::max()};
  extract_parts(parts, sink, cache);
}

void Store::extract_parts(std::span<const ObjectPart> parts, const ExtractSink& sink, Cache cache) {
  const bool use_cache = cache == Cache::kUse;
  auto& impl = *impl_;
  // Everything below hands over object bytes from some offset on; this cuts them
  // down to the part asked for.
  auto part_end = [&](std::size_t i) {
    const auto& p = parts[i];
    return p.length > std::numeric_limits<std::uint64_t>::max() - p.offset ? p.length
                                                                           : p.offset + p.length;
  };
  const Impl::DeliverAt deliver = [&](std::size_t i, std::uint64_t at,
                                      std::span<const std::byte> bytes) {
    const std::uint64_t lo = std::max(at, parts[i].offset);
    const std::uint64_t hi = std::min(at + bytes.size(), part_end(i));
    if (lo < hi) sink.data(i, bytes.subspan(lo - at, hi - lo));
  };
  std::vector<std::uint64_t> delivered(parts.size(), 0);
  ExtractSink whole;
  whole.data = [&](std::size_t i, std::span<const std::byte> bytes) {
    deliver(i, delivered[i], bytes);
    delivered[i] += bytes.size();
  };
  whole.done = sink.done;
  whole.error = sink.error;

  std::vector<ObjectInfo> infos(parts.size());
  std::vector<std::size_t> order;
  std::vector<Impl::BlockRead> block_reads;
  order.reserve(parts.size());
  {
    auto txn = LmdbTxn::read(*impl.env);
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (auto cached = use_cache ? impl.cache.find(parts[i].id) : nullptr) {
        whole.data(i, *cached);
        whole.done(i);
        continue;
      }
      auto info = impl.index->get(txn, parts[i].id);
      if (!info) {
        sink.error(i, StoreError(ENOENT, "object " + parts[i].id.hex() + " is not in the store"));
        continue;
      }
      infos[i] = std::move(*info);
      if (!infos[i].block_sums.empty()) {
        // The blocks the part covers, if they are at most half of the object.
        const std::uint64_t size = infos[i].raw_size;
        const std::uint64_t first = std::min(parts[i].offset, size) / kSumBlockSize;
        const std::uint64_t last =
            (std::min(part_end(i), size) + kSumBlockSize - 1) / kSumBlockSize;
        if (2 * (last - first) <= block_count(size)) {
          block_reads.push_back(
              Impl::BlockRead{i, first * kSumBlockSize, std::min(last * kSumBlockSize, size)});
          continue;
        }
      }
      order.push_back(i);
    }
  }
  // Partial reads pay when every object of the request is read in part: a small
  // random read. Beside whole objects (a large read, such as readahead's) they would
  // be extra round trips, and a whole object read now serves the rest of it to the
  // next request from the cache.
  if (!order.empty()) {
    for (const auto& r : block_reads) order.push_back(r.slot);
    block_reads.clear();
  }
  for (std::size_t from = 0; from < block_reads.size(); from += kReadBatchOps) {
    impl.extract_blocks(infos,
                        std::span<const Impl::BlockRead>(block_reads)
                            .subspan(from, std::min(kReadBatchOps, block_reads.size() - from)),
                        deliver, whole);
  }
  // Packs in file order first (sequential reads), then loose objects.
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto& x = infos[a];
    const auto& y = infos[b];
    if (x.tier != y.tier) return x.tier == Tier::kPacked;
    if (x.tier == Tier::kPacked)
      return std::tie(x.pack_id, x.offset) < std::tie(y.pack_id, y.offset);
    return x.id < y.id;
  });
  std::vector<std::size_t> batch;
  std::uint64_t batch_bytes = 0;
  auto flush = [&] {
    if (!batch.empty()) impl.extract_batch(infos, batch, whole, use_cache);
    batch.clear();
    batch_bytes = 0;
  };
  for (std::size_t i : order) {
    const ObjectInfo& info = infos[i];
    if (must_stream(info)) {
      try {
        impl.read_object_retrying(info.id, [&](auto piece) { whole.data(i, piece); });
        whole.done(i);
      } catch (const StoreError& e) {
        whole.error(i, e);
      }
      continue;
    }
    batch.push_back(i);
    batch_bytes += info.stored_size + kRecordHeaderSize;
    if (batch.size() >= kReadBatchOps || batch_bytes >= kReadBatchBytes) flush();
  }
  flush();
}

ObjectCacheStats Store::cache_stats() const {
  return impl_->cache.stats();
}

// ---------------------------------------------------------------------------------
// References

void Store::add_ref(const ObjectId& id, std::uint64_t n) {
  auto txn = LmdbTxn::write(*impl_->env);
  impl_->index->add_ref(txn, id, n);
  txn.commit();
}

void Store::release(const ObjectId& id, std::uint64_t n) {
  auto txn = LmdbTxn::write(*impl_->env);
  impl_->index->release(txn, id, n);
  txn.commit();
}

}  // namespace casfs
