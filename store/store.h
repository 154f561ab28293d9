// casfs's content-addressed object store: the public interface.
//
// Objects are byte strings of any size, keyed by the SHA-256 of their bytes. New
// objects land in the loose tier (one file each under loose/XX/…), or, when many
// arrive in one batch, raw in an intake pack of their own (intake_pack.cc); pack()
// moves both into append-only, compressed, checksummed pack files. One LMDB environment under
// meta/ holds the index (id → where, sizes, checksum, refcount) and, later, the
// filesystem's own tables, so both can change in one transaction.
//
// A Store object owns the store directory's lock: one process at a time. Within
// the process every method is safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "store/compress.h"
#include "store/error.h"
#include "store/hash.h"
#include "store/object_cache.h"

namespace casfs {

class IoEngine;
class LmdbEnv;
class LmdbTxn;
class Index;

enum class Tier : std::uint8_t { kLoose = 1, kPacked = 2 };

struct ObjectInfo {
  ObjectId id;
  Tier tier = Tier::kLoose;
  Codec codec = Codec::kRaw;
  std::uint32_t pack_id = 0;  // packed only
  std::uint64_t offset = 0;   // packed only: offset of the record header
  std::uint64_t raw_size = 0;
  std::uint64_t stored_size = 0;  // payload bytes on disk
  std::uint64_t checksum = 0;     // XXH3-64 of the stored payload
  std::uint64_t refcount = 0;
  // Raw objects only, and only some of them: one sum per 4 KiB block, for reading
  // part of the object (see block_sums.h). Empty: the object is read whole.
  std::vector<std::uint32_t> block_sums;
};

// Settings fixed when a store is created, kept in STORE/casfs.json.
struct StoreSettings {
  int compression_level = 3;
  std::uint64_t pack_target_bytes = 4ull << 30;  // a pack is closed once it reaches this
  std::uint32_t chunk_min = 16 << 10;            // content-defined chunking, for the fs
  std::uint32_t chunk_avg = 64 << 10;
  std::uint32_t chunk_max = 256 << 10;
};

struct InsertResult {
  ObjectId id;
  std::uint64_t size = 0;
  bool added = false;  // false: the object was already there (only its refcount moved)
};

// Called now and then during long operations: done units out of total.
using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;

struct PackReport {
  std::uint64_t objects = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t stored_bytes = 0;
};

struct GcReport {
  std::uint64_t loose_removed = 0;
  std::uint64_t packed_dropped = 0;
  std::uint64_t bytes_freed = 0;  // loose bytes unlinked now; packed bytes become dead
};

struct RepackOptions {
  double dead_threshold = 0.25;  // rewrite a pack once this share of it is dead
  bool merge_small = true;       // merge small packs so sizes stay geometric (×2)
};

struct RepackReport {
  std::uint64_t packs_rewritten = 0;
  std::uint64_t packs_removed = 0;
  std::uint64_t bytes_before = 0;
  std::uint64_t bytes_after = 0;
};

struct VerifyProblem {
  ObjectId id;
  std::string what;
};

struct VerifyReport {
  std::uint64_t objects_checked = 0;
  std::uint64_t bytes_checked = 0;
  std::vector<VerifyProblem> problems;
  bool clean() const { return problems.empty(); }
};

struct RebuildReport {
  std::uint64_t loose_objects = 0;
  std::uint64_t packed_objects = 0;
  std::uint64_t torn_bytes = 0;       // ignored at pack tails
  std::uint64_t damaged_bytes = 0;    // records inside packs that did not check
  std::uint64_t bad_loose_files = 0;  // content does not match name; left alone
  // Objects the old index had, with references, that no pack or loose file holds
  // intact any more (only known when the old index was readable).
  std::vector<ObjectId> lost_objects;
};

struct StoreStatus {
  std::uint64_t loose_objects = 0;
  std::uint64_t intake_objects = 0;  // raw in intake packs, waiting for pack() as loose ones do
  std::uint64_t packed_objects = 0;  // in packs, intake packs excepted
  std::uint64_t loose_bytes = 0;     // raw == stored for loose
  std::uint64_t intake_bytes = 0;    // and for intake
  std::uint64_t packed_raw_bytes = 0;
  std::uint64_t packed_stored_bytes = 0;
  std::uint64_t packs = 0;  // intake packs included
  std::uint64_t intake_packs = 0;
  std::uint64_t pack_file_bytes = 0;       // on disk, headers and dead records included
  std::uint64_t dead_bytes = 0;            // in packs, reclaimable by repack
  std::uint64_t unreferenced_objects = 0;  // refcount 0, reclaimable by gc
  std::uint64_t logical_bytes = 0;         // sum of raw_size × refcount: bytes files name
  std::string io_engine;
  std::uint64_t raw_bytes() const { return loose_bytes + intake_bytes + packed_raw_bytes; }
  std::uint64_t stored_bytes() const { return loose_bytes + intake_bytes + packed_stored_bytes; }
  // What pack() has to do.
  std::uint64_t unpacked_objects() const { return loose_objects + intake_objects; }
  std::uint64_t unpacked_bytes() const { return loose_bytes + intake_bytes; }
  // Every entry of the index.
  std::uint64_t objects() const { return unpacked_objects() + packed_objects; }
};

// Objects a Store has indexed as loose or intake since it was opened (what pack()
// will have to move); the counts never go down.
struct LooseAdded {
  std::uint64_t objects = 0;
  std::uint64_t bytes = 0;
};

// Receives extracted bytes. data() may be called several times per object (large
// objects are streamed), always in order; then exactly one of done() or error().
// A packed object's checksum is checked before any of its bytes are delivered, so
// error() never follows data() because of corruption.
struct ExtractSink {
  std::function<void(std::size_t index, std::span<const std::byte> bytes)> data;
  std::function<void(std::size_t index)> done;
  std::function<void(std::size_t index, const StoreError& error)> error;
};

// A byte range of one object, for Store::extract_parts.
struct ObjectPart {
  ObjectId id;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

// An insert whose index update goes into the caller's own write transaction, so
// that the filesystem commits new objects, their references and its own tables
// (extents) at once. Made by Store::prepare_insert, completed by
// Store::commit_insert; see there.
class PendingInsert {
 public:
  PendingInsert(PendingInsert&&) noexcept;
  PendingInsert& operator=(PendingInsert&&) noexcept;
  ~PendingInsert();  // lets gc in again; removes loose files made surplus

  // The objects' ids, in the order given to prepare_insert.
  std::vector<ObjectId> ids() const;

 private:
  friend class Store;
  struct State;
  explicit PendingInsert(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

struct OpenOptions {
  // Open even when meta/ is missing or belongs to another store, so that
  // rebuild_index() can recreate it. Everything else must wait for that rebuild.
  bool allow_missing_index = false;
  // Room for the bytes of recently read objects (see object_cache.h), which
  // extract_many uses when asked to; 0: none. The mount daemon sets it (-o cache=).
  std::uint64_t cache_bytes = 0;
  // A batch of at least this many new objects is written as one intake pack rather
  // than as loose files (as git keeps a push of many objects as a pack); 0: never.
  std::size_t intake_min_objects = 16;
  // Smaller batches are appended to one intake pack kept open for them instead of
  // being written as loose files (intake_pack.h says why); not when
  // intake_min_objects is 0. The mount daemon sets it: an fsync writes such a batch.
  bool append_small_batches = false;
};

class Store {
 public:
  // Creates a new, empty store in `dir` (created if missing; must be empty if it
  // exists). Throws StoreError with a one-line message on failure.
  static void init(const std::filesystem::path& dir, const StoreSettings& settings = {});

  // Opens an existing store and takes its lock. Throws StoreError (one-line message,
  // nothing changed) when dir is missing, is not a store, has a newer format
  // version, or is locked by another process.
  static std::unique_ptr<Store> open(const std::filesystem::path& dir,
                                     const OpenOptions& options = {});

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& dir() const;
  const StoreSettings& settings() const;
  IoEngine& io();
  LmdbEnv& env();  // for the filesystem's own tables in the same environment
  Index& index();

  // --- adding objects -------------------------------------------------------
  // Each insert adds `refs` references (0 is allowed: the object is then
  // unreferenced until add_ref, and gc may drop it). Object bytes are durable
  // before the index entry that names them is committed.
  InsertResult insert(std::span<const std::byte> data, std::uint32_t refs = 1);
  // Streams from `read` (returns bytes placed in buf, 0 at end) in bounded memory.
  InsertResult insert_stream(const std::function<std::size_t(std::span<std::byte>)>& read,
                             std::uint32_t refs = 1);
  InsertResult insert_file(const std::filesystem::path& path, std::uint32_t refs = 1);
  // Many files: small ones are batched as insert_many does (one sync and one index
  // commit per batch, not per file), large ones streamed. `done` is called once per
  // path, in order, with either the result or the error for that path (a missing
  // file or a directory fails only that path).
  using FileDoneFn =
      std::function<void(std::size_t index, const InsertResult* result, const StoreError* error)>;
  void insert_files(std::span<const std::filesystem::path> paths, const FileDoneFn& done,
                    std::uint32_t refs = 1);
  // Many small objects: written in batches through the io engine, made durable with
  // one sync per batch, indexed in one transaction per batch. `next` returns the
  // next object or nullopt at the end; the bytes it points at must stay valid until
  // insert_many returns (objects are held until their batch is written). Results
  // come back in input order.
  std::vector<InsertResult> insert_many(
      const std::function<std::optional<std::span<const std::byte>>()>& next,
      std::uint32_t refs = 1);
  std::vector<InsertResult> insert_many(std::span<const std::span<const std::byte>> objects,
                                        std::uint32_t refs = 1);

  // Two-phase insert. prepare_insert writes the objects the store lacks and makes
  // them durable (the bytes must stay valid until commit_insert). commit_insert adds
  // their index entries and `refs` references each inside `txn`, which the caller
  // commits (or aborts: the written files are then unreferenced, and gc's to
  // remove); only then may the PendingInsert be dropped. Until it is, gc waits, so
  // a thread holding one must not start another insert (it could wait on gc, which
  // waits on it). Call prepare_insert before beginning the write transaction: the
  // writing and syncing should not hold LMDB's single writer lock.
  //
  // `ids` are given when the caller has hashed the objects already (the filesystem
  // hashes each chunk to compare it with a file's old extents): SHA-256 is the
  // dearest step of an insert, and is then not done twice. ids[i] must be the
  // SHA-256 of objects[i].
  PendingInsert prepare_insert(std::span<const std::span<const std::byte>> objects,
                               std::span<const ObjectId> ids = {});
  std::vector<InsertResult> commit_insert(LmdbTxn& txn, PendingInsert& pending,
                                          std::uint32_t refs = 1);

  // --- reading --------------------------------------------------------------
  bool has(const ObjectId& id);
  std::optional<ObjectInfo> stat(const ObjectId& id);
  // Every object, in id order.
  void list(const std::function<void(const ObjectInfo&)>& visit);
  // The whole object in memory (for objects known to be small). Throws
  // StoreError(ENOENT) if missing, StoreError(EIO) if corrupt.
  std::vector<std::byte> read(const ObjectId& id);
  // Streams one object to `out` in bounded memory; throws as read() does, before
  // writing anything if the object is corrupt.
  void extract(const ObjectId& id, const std::function<void(std::span<const std::byte>)>& out);
  // Many objects: read in one pass ordered by (pack, offset), batched through the io
  // engine; the sink gets index = position in `ids`.
  //
  // With Cache::kUse, objects read recently come from memory (checked when they were
  // read from the disk, and never stale: an id is its bytes' hash) and objects read
  // now are kept there. Only for callers that name objects they hold references to
  // (a hit skips the index), and never for checking the disk (verify, fsck).
  enum class Cache { kBypass, kUse };
  void extract_many(std::span<const ObjectId> ids, const ExtractSink& sink,
                    Cache cache = Cache::kBypass);
  // Parts of objects: as extract_many, but the sink gets only each part's bytes
  // (`length` bytes from `offset`, fewer where the object ends first). When each part
  // needs at most half of its object and every object has block sums (block_sums.h),
  // only the blocks the parts cover are read, checked against their sums, and not
  // cached; otherwise the parts are cut from whole objects.
  void extract_parts(std::span<const ObjectPart> parts, const ExtractSink& sink,
                     Cache cache = Cache::kBypass);
  // How extract_many's cache of recently read objects is doing.
  ObjectCacheStats cache_stats() const;

  // --- references -----------------------------------------------------------
  // Throw StoreError(ENOENT) if the object is missing; release of an object whose
  // refcount is already 0 throws StoreError(EINVAL) and changes nothing.
  void add_ref(const ObjectId& id, std::uint64_t n = 1);
  void release(const ObjectId& id, std::uint64_t n = 1);

  // --- maintenance ----------------------------------------------------------
  PackReport pack(const ProgressFn& progress = {});
  GcReport gc(const ProgressFn& progress = {});
  RepackReport repack(const RepackOptions& options = {}, const ProgressFn& progress = {});
  VerifyReport verify(const ProgressFn& progress = {});
  RebuildReport rebuild_index(const ProgressFn& progress = {});
  // Raises the store's format version to this casfs's, so that it gets what the
  // versions since add: block sums (version 2; computed now for every object, which
  // rebuilds the index from the bytes) and intake packs (version 3). A casfs older
  // than the new version can no longer open the store. Returns the version the
  // store had; nothing happens when it is current.
  int upgrade(const ProgressFn& progress = {});
  StoreStatus status();
  // Cheap, unlike status(), which walks the whole index: the background packer adds
  // the growth since its last status() to the loose count that status() found. An
  // insert counts when it is indexed, before its transaction commits.
  LooseAdded loose_added() const;

  // The implementation, shared by the files that make up the store (store_impl.h).
  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace casfs
