// Thin RAII layer over LMDB: the environment, transactions and cursors. Values are
// byte spans; encoding lives with the tables (index.cc, and the filesystem's own).
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>

namespace casfs {

using Bytes = std::span<const std::byte>;

inline Bytes as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// Throws StoreError(EIO or the mapped errno) naming `what` for a nonzero LMDB rc.
void check_mdb(int rc, const char* what);

class LmdbEnv {
 public:
  // Opens (creating if `create`) the environment in directory `dir`. The map is
  // sized generously; LMDB only uses the disk space it needs.
  LmdbEnv(const std::filesystem::path& dir, bool create);
  ~LmdbEnv();
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;

  MDB_env* get() const { return env_; }
  // Opens (creating if needed) a named database. Call during start-up only: a
  // transaction begun before the database was opened cannot use its handle.
  MDB_dbi open_db(const char* name, unsigned flags = 0);
  // Forces the environment to disk (after a commit made with relaxed durability).
  void sync();

 private:
  void read_at_random_if_large(const std::filesystem::path& data_file);

  MDB_env* env_ = nullptr;
};

class LmdbTxn {
 public:
  static LmdbTxn read(LmdbEnv& env);
  static LmdbTxn write(LmdbEnv& env);

  LmdbTxn(LmdbTxn&& other) noexcept;
  LmdbTxn& operator=(LmdbTxn&&) = delete;
  LmdbTxn(const LmdbTxn&) = delete;
  ~LmdbTxn();  // aborts unless committed

  MDB_txn* get() const { return txn_; }
  bool writable() const { return writable_; }
  void commit();
  void abort();

  std::optional<Bytes> get(MDB_dbi dbi, Bytes key) const;
  void put(MDB_dbi dbi, Bytes key, Bytes value, unsigned flags = 0);
  bool del(MDB_dbi dbi, Bytes key);
  void clear(MDB_dbi dbi);

 private:
  LmdbTxn(MDB_txn* txn, bool writable) : txn_(txn), writable_(writable) {}
  MDB_txn* txn_ = nullptr;
  bool writable_ = false;
};

class LmdbCursor {
 public:
  LmdbCursor(const LmdbTxn& txn, MDB_dbi dbi);
  ~LmdbCursor();
  LmdbCursor(const LmdbCursor&) = delete;
  LmdbCursor& operator=(const LmdbCursor&) = delete;

  // Positions at the first key (or the first key >= `key`); false when none.
  bool first();
  bool seek(Bytes key);
  bool next();
  Bytes key() const { return {static_cast<const std::byte*>(key_.mv_data), key_.mv_size}; }
  Bytes value() const { return {static_cast<const std::byte*>(val_.mv_data), val_.mv_size}; }

 private:
  bool move(MDB_cursor_op op);
  MDB_cursor* cursor_ = nullptr;
  MDB_val key_{};
  MDB_val val_{};
};

}  // namespace casfs
