// The inside of Store, shared by store.cc (insert, read, references) and the
// maintenance jobs, each in a file of its own (pack_job.cc, gc_job.cc,
// repack_job.cc, verify_job.cc, rebuild_index_job.cc).
#pragma once

#include <fcntl.h>

#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <unordered_set>

#include "store/index.h"
#include "store/intake_pack.h"
#include "store/io_engine.h"
#include "store/lmdb.h"
#include "store/loose.h"
#include "store/object_cache.h"
#include "store/pack_file.h"
#include "store/store.h"
#include "store/store_config.h"
#include "store/store_lock.h"

namespace casfs {

// Objects up to this size are read, checked and handed over whole; larger ones are
// streamed in pieces of kStreamPiece (checked in a first pass, then delivered).
inline constexpr std::uint64_t kInMemoryLimit = 8 << 20;
inline constexpr std::size_t kStreamPiece = 1 << 20;

// Whether reading the object whole would hold too much: a small stored payload can
// still decode to gigabytes.
inline bool must_stream(const ObjectInfo& info) {
  return info.raw_size > kInMemoryLimit || info.stored_size > kInMemoryLimit;
}
// Bytes and operations per batch when many objects are read (pack, extract_many).
inline constexpr std::uint64_t kReadBatchBytes = 32 << 20;
inline constexpr std::size_t kReadBatchOps = 2048;

// A shared/exclusive lock that lets a waiting exclusive holder in: glibc's rwlock
// prefers readers, so a steady stream of inserts would starve gc (which holds the
// maintenance lock meanwhile, so pack would starve too). An exclusive locker takes
// `entry_` first, which holds back new shared lockers until it is through.
class InsertGate {
 public:
  void lock_shared() {
    std::lock_guard entry(entry_);
    gate_.lock_shared();
  }
  void unlock_shared() { gate_.unlock_shared(); }
  void lock() {
    entry_.lock();
    gate_.lock();
  }
  void unlock() {
    gate_.unlock();
    entry_.unlock();
  }

 private:
  std::mutex entry_;
  std::shared_mutex gate_;
};

struct Blob {
  explicit Blob(std::span<const std::byte> d) : data(d) {}
  // `known` is the bytes' SHA-256, taken by the caller.
  Blob(std::span<const std::byte> d, const ObjectId& known) : data(d), id(known), id_known(true) {}

  std::span<const std::byte> data;
  ObjectId id;
  std::uint64_t checksum = 0;
  bool id_known = false;                  // the caller hashed it; write_new_objects does not again
  std::vector<std::uint32_t> block_sums;  // when the store keeps them for this object
};

// What write_new_objects wrote: the ids of the objects the index lacked, and the
// intake pack that holds them when the batch was large enough for one (else they
// are loose files).
struct WrittenObjects {
  std::unordered_set<ObjectId, ObjectIdHash> ids;
  std::unique_ptr<IntakeWrite> intake;
};

struct Store::Impl {
  std::filesystem::path dir;
  StoreConfig config;
  StoreLock lock;
  std::unique_ptr<IoEngine> io;
  std::unique_ptr<LmdbEnv> env;
  std::unique_ptr<Index> index;
  LooseTier loose;
  PackFiles packs;
  UniqueFd store_fd;  // for syncfs
  // Inserts hold it shared from "is it there?" to the index commit; gc holds it
  // exclusively while it drops entries and unlinks their files, so an insert can
  // never count a reference on an object whose file is being deleted.
  InsertGate loose_gate;
  // One maintenance job (pack, gc, repack, verify, rebuild) at a time.
  std::mutex maintenance;
  // Pack ids are handed out here, never twice: the index records every id it has
  // named (Index::next_pack_id), and open() starts past those and past every file.
  std::atomic<std::uint32_t> next_pack_id{1};
  std::uint32_t new_pack_id() { return next_pack_id.fetch_add(1); }
  // Batches of at least this many new objects go to an intake pack (0: never), in
  // stores that take them.
  std::size_t intake_min_objects = 0;
  std::size_t intake_threshold() const { return takes_intake_packs() ? intake_min_objects : 0; }
  IntakeInFlight intake_in_flight;
  IntakeBuffers intake_buffers;
  // Batches smaller than the intake threshold are appended to open_intake rather
  // than written as loose files (OpenOptions::append_small_batches).
  bool append_small_batches = false;
  OpenIntakePack open_intake;
  // What Store::loose_added() reports.
  std::atomic<std::uint64_t> loose_added_objects{0};
  std::atomic<std::uint64_t> loose_added_bytes{0};
  // Checked, decompressed bytes of recently read objects (extract_many, on request).
  ObjectCache cache;

  Impl(const std::filesystem::path& d, StoreConfig c, std::uint64_t cache_bytes)
      // Absolute, so that paths built on it hold after the process changes directory
      // (the mount daemon moves to /).
      : dir(std::filesystem::absolute(d).lexically_normal()),
        config(std::move(c)),
        lock(d),
        io(make_io_engine(d)),
        loose(d),
        packs(d),
        store_fd(::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
        cache(cache_bytes) {
    if (!store_fd) throw_errno("cannot open " + d.string());
  }

  // config.version, which upgrade() may raise while other threads insert.
  std::atomic<int> format_version{1};
  // Whether new index entries get per-block sums (format version 2 on).
  bool keeps_block_sums() const { return format_version.load() >= 2; }
  // Whether batch inserts may write intake packs (format version 3 on).
  bool takes_intake_packs() const { return format_version.load() >= 3; }

  // --- inserting ---------------------------------------------------------------
  std::vector<InsertResult> insert_batch(std::vector<Blob>& blobs, std::uint32_t refs);
  // The two halves of insert_batch, for callers that commit in their own
  // transaction; both need loose_gate held shared. write_new_objects hashes the
  // blobs, writes those the index lacks and makes them durable, and returns their
  // ids; index_objects adds entries and references in `txn` and names files made
  // surplus (objects packed meanwhile) for removal after the commit.
  WrittenObjects write_new_objects(std::vector<Blob>& blobs);
  std::vector<InsertResult> index_objects(LmdbTxn& txn, const std::vector<Blob>& blobs,
                                          WrittenObjects& written, std::uint32_t refs,
                                          std::vector<ObjectId>& redundant_files);
  // Writes blobs[which[...]] as the raw records of a new intake pack and syncs it.
  std::unique_ptr<IntakeWrite> write_intake_pack(const std::vector<Blob>& blobs,
                                                 std::span<const std::size_t> which);
  // Appends them to the open intake pack (starting one when none is open) and syncs.
  std::unique_ptr<IntakeWrite> append_intake_records(const std::vector<Blob>& blobs,
                                                     std::span<const std::size_t> which);
  InsertResult commit_streamed(const std::string& staging_name, const ObjectId& id,
                               std::uint64_t size, std::uint64_t checksum, std::uint32_t refs);

  // --- reading -----------------------------------------------------------------
  std::optional<ObjectInfo> lookup(const ObjectId& id) {
    auto txn = LmdbTxn::read(*env);
    return index->get(txn, id);
  }
  void read_object(const ObjectInfo& info,
                   const std::function<void(std::span<const std::byte>)>& out);
  void read_object_retrying(const ObjectId& id,
                            const std::function<void(std::span<const std::byte>)>& out);
  void stream_packed(const ObjectInfo& info, int fd,
                     const std::function<void(std::span<const std::byte>)>& out);
  void stream_loose(const ObjectInfo& info, int fd,
                    const std::function<void(std::span<const std::byte>)>& out);
  void extract_batch(std::span<const ObjectInfo> infos, std::span<const std::size_t> order,
                     const ExtractSink& sink, bool use_cache);
  // Reads and checks only some blocks of objects that have block sums: for each slot,
  // object bytes [begin, end), begin a multiple of the block size, handed to
  // deliver(slot, begin, bytes) and then whole.done(slot). An object that moved
  // since its look-up is read whole from its new place into `whole`.
  struct BlockRead {
    std::size_t slot = 0;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
  };
  using DeliverAt = std::function<void(std::size_t slot, std::uint64_t object_offset,
                                       std::span<const std::byte> bytes)>;
  void extract_blocks(std::span<const ObjectInfo> infos, std::span<const BlockRead> reads,
                      const DeliverAt& deliver, const ExtractSink& whole);

  // --- maintenance -----------------------------------------------------------------
  // The newest regular pack if it has room, else a new one (maintenance lock held).
  PackAppender open_pack_for_append();
  // Removes pack files that no pack table entry names: the remains of a pack or
  // repack that crashed before its commit, or after it but before its unlinks.
  void remove_orphan_packs();
};

}  // namespace casfs
