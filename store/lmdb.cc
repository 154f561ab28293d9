#include "store/lmdb.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <utility>

#include "store/error.h"

namespace casfs {

namespace {
// Address space, not disk: LMDB grows the file only as pages are used.
constexpr std::size_t kMapSize = std::size_t{1} << 40;
constexpr unsigned kMaxDbs = 32;

MDB_val to_val(Bytes b) {
  return MDB_val{b.size(), const_cast<std::byte*>(b.data())};
}
}  // namespace

void check_mdb(int rc, const char* what) {
  if (rc == 0) return;
  int code = rc > 0 ? rc : EIO;  // positive codes are errno values
  if (rc == MDB_MAP_FULL) code = ENOSPC;
  throw StoreError(code, std::string(what) + ": " + mdb_strerror(rc));
}

LmdbEnv::LmdbEnv(const std::filesystem::path& dir, bool create) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    if (!create) throw StoreError(ENOENT, "index directory " + dir.string() + " is missing");
    std::filesystem::create_directories(dir, ec);
    if (ec) throw StoreError(ec.value(), "cannot create " + dir.string() + ": " + ec.message());
  }
  check_mdb(mdb_env_create(&env_), "mdb_env_create");
  try {
    check_mdb(mdb_env_set_mapsize(env_, kMapSize), "mdb_env_set_mapsize");
    check_mdb(mdb_env_set_maxdbs(env_, kMaxDbs), "mdb_env_set_maxdbs");
    check_mdb(mdb_env_set_maxreaders(env_, 1024), "mdb_env_set_maxreaders");
    // NOTLS: read transactions are not tied to threads, so worker pools can use them.
    check_mdb(mdb_env_open(env_, dir.c_str(), MDB_NOTLS, 0600),
              ("cannot open index in " + dir.string()).c_str());
    read_at_random_if_large(dir / "data.mdb");
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
}

// The kernel's readahead stays on for the map (LMDB's MDB_NORDAHEAD turns it off):
// a cold walk of a tree then reads the index's pages in clusters of neighbours, not
// one fault at a time (a cold find + stat of the Linux tree: 120 reads of the disk
// instead of 4,710, 0.67-0.72 s instead of 0.88-1.04 s), and for a map whose faults
// keep missing the kernel stops reading ahead by itself. An index larger than half
// the memory is read at random, as LMDB's documentation advises: there, pages read
// ahead would push out pages still in use.
void LmdbEnv::read_at_random_if_large(const std::filesystem::path& data_file) {
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(data_file, ec);
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (ec || pages <= 0 || page_size <= 0) return;
  if (size <= static_cast<std::uintmax_t>(pages) * static_cast<std::uintmax_t>(page_size) / 2)
    return;
  MDB_envinfo info;
  if (mdb_env_info(env_, &info) == 0)
    (void)::madvise(info.me_mapaddr, info.me_mapsize, MADV_RANDOM);
}

LmdbEnv::~LmdbEnv() {
  mdb_env_close(env_);
}

MDB_dbi LmdbEnv::open_db(const char* name, unsigned flags) {
  LmdbTxn txn = LmdbTxn::write(*this);
  MDB_dbi dbi;
  check_mdb(mdb_dbi_open(txn.get(), name, flags | MDB_CREATE, &dbi), "mdb_dbi_open");
  txn.commit();
  return dbi;
}

void LmdbEnv::sync() {
  check_mdb(mdb_env_sync(env_, 1), "mdb_env_sync");
}

LmdbTxn LmdbTxn::read(LmdbEnv& env) {
  MDB_txn* txn;
  check_mdb(mdb_txn_begin(env.get(), nullptr, MDB_RDONLY, &txn), "mdb_txn_begin (read)");
  return LmdbTxn(txn, false);
}

LmdbTxn LmdbTxn::write(LmdbEnv& env) {
  MDB_txn* txn;
  check_mdb(mdb_txn_begin(env.get(), nullptr, 0, &txn), "mdb_txn_begin (write)");
  return LmdbTxn(txn, true);
}

LmdbTxn::LmdbTxn(LmdbTxn&& other) noexcept
    : txn_(std::exchange(other.txn_, nullptr)), writable_(other.writable_) {}

LmdbTxn::~LmdbTxn() {
  abort();
}

void LmdbTxn::commit() {
  MDB_txn* txn = std::exchange(txn_, nullptr);
  check_mdb(mdb_txn_commit(txn), "index commit");
}

void LmdbTxn::abort() {
  if (txn_ != nullptr) mdb_txn_abort(std::exchange(txn_, nullptr));
}

std::optional<Bytes> LmdbTxn::get(MDB_dbi dbi, Bytes key) const {
  MDB_val k = to_val(key);
  MDB_val v;
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check_mdb(rc, "index lookup");
  return Bytes{static_cast<const std::byte*>(v.mv_data), v.mv_size};
}

void LmdbTxn::put(MDB_dbi dbi, Bytes key, Bytes value, unsigned flags) {
  MDB_val k = to_val(key);
  MDB_val v = to_val(value);
  check_mdb(mdb_put(txn_, dbi, &k, &v, flags), "index update");
}

bool LmdbTxn::del(MDB_dbi dbi, Bytes key) {
  MDB_val k = to_val(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  check_mdb(rc, "index delete");
  return true;
}

void LmdbTxn::clear(MDB_dbi dbi) {
  check_mdb(mdb_drop(txn_, dbi, 0), "index clear");
}

LmdbCursor::LmdbCursor(const LmdbTxn& txn, MDB_dbi dbi) {
  check_mdb(mdb_cursor_open(txn.get(), dbi, &cursor_), "mdb_cursor_open");
}

LmdbCursor::~LmdbCursor() {
  mdb_cursor_close(cursor_);
}

bool LmdbCursor::move(MDB_cursor_op op) {
  int rc = mdb_cursor_get(cursor_, &key_, &val_, op);
  if (rc == MDB_NOTFOUND) return false;
  check_mdb(rc, "index scan");
  return true;
}

bool LmdbCursor::first() {
  return move(MDB_FIRST);
}
bool LmdbCursor::next() {
  return move(MDB_NEXT);
}
bool LmdbCursor::seek(Bytes key) {
  key_ = to_val(key);
  return move(MDB_SET_RANGE);
}

}  // namespace casfs
