// Pack files on disk: opening them for reading (a bounded cache of fds, since the
// process may hold at most 20,000), appending records, and scanning records from
// the start without the index (verify, rebuild_index).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "store/file_io.h"
#include "store/pack_format.h"
#include "store/unique_fd.h"

namespace casfs {

// How a reader goes through a pack.
enum class PackAccess {
  // Many records in file order: the page cache and its readahead help.
  kSequential,
  // A few blocks here and there (a small random read of a file): O_DIRECT, aligned
  // to block_align(). A buffered read of the one or two blocks a 4 KiB read of a file
  // needs brought whole folios around them in from the disk: 14 KiB a read with
  // readahead off, 17.5 KiB with it, against 8.5 KiB direct (measured), which at
  // queue depth 16 spends the device's bandwidth. The FUSE side's page cache keeps
  // what the reader reads.
  kBlocks,
};

class PackFiles {
 public:
  explicit PackFiles(const std::filesystem::path& store_dir, std::size_t max_open = 256);

  static std::string file_name(std::uint32_t id);  // "N.pack"
  const std::filesystem::path& dir() const { return dir_; }
  int dir_fd() const { return dir_fd_.get(); }

  // A shared read-only fd for pack `id`, opened on first use and cached. A pack
  // removed by repack stays readable through fds handed out before its removal.
  // Throws StoreError(ENOENT) when the file is gone. A kBlocks fd is buffered with
  // readahead off (POSIX_FADV_RANDOM, which applies to one open file, not to the
  // inode) where the filesystem refuses O_DIRECT.
  std::shared_ptr<const UniqueFd> open_read(std::uint32_t id,
                                            PackAccess access = PackAccess::kSequential);
  // What reads through kBlocks fds align their offsets, lengths and buffers to: the
  // filesystem's direct I/O alignment once a kBlocks fd has been opened, 4096 before.
  std::size_t block_align() const { return block_align_.load(std::memory_order_relaxed); }
  // Unlinks the file and drops the cached fd.
  void remove(std::uint32_t id);
  // Ids of the N.pack files present on disk, ascending.
  std::vector<std::uint32_t> list_files() const;

 private:
  std::filesystem::path dir_;
  UniqueFd dir_fd_;
  std::size_t max_open_;
  std::mutex mutex_;
  // Open files are keyed by pack id and access: (id << 1) | blocks.
  static std::uint64_t key_of(std::uint32_t id, PackAccess access) {
    return (std::uint64_t{id} << 1) | (access == PackAccess::kBlocks ? 1 : 0);
  }
  // Takes the filesystem's direct I/O alignment from an O_DIRECT fd, where it says.
  void note_direct_align(int fd);
  std::list<std::uint64_t> lru_;  // most recently used first
  struct Entry {
    std::shared_ptr<const UniqueFd> fd;
    std::list<std::uint64_t>::iterator lru_pos;
  };
  std::unordered_map<std::uint64_t, Entry> open_;
  std::atomic<std::size_t> block_align_{4096};
};

// The pack being appended to. Appends go at the committed end: bytes a crashed
// process appended past it (never indexed) are cut off when the pack is opened.
class PackAppender {
 public:
  // Creates packs/N.pack with its file header, durably.
  static PackAppender create(PackFiles& files, std::uint32_t id);
  // Reopens an existing pack, truncated to `committed_size`.
  static PackAppender reopen(PackFiles& files, std::uint32_t id, std::uint64_t committed_size);

  std::uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  std::uint64_t size() const { return size_; }
  // Reserves `n` bytes at the end and returns their offset; the caller writes them.
  std::uint64_t reserve(std::uint64_t n) {
    std::uint64_t at = size_;
    size_ += n;
    return at;
  }
  void sync();  // fdatasync

 private:
  PackAppender(std::uint32_t id, UniqueFd fd, std::uint64_t size)
      : id_(id), fd_(std::move(fd)), size_(size) {}
  std::uint32_t id_;
  UniqueFd fd_;
  std::uint64_t size_;
};

struct PackScanResult {
  std::uint64_t valid_end = 0;  // end of the last intact record
  std::uint64_t file_size = 0;
  std::uint64_t damaged_bytes = 0;  // stepped over between intact records
  bool header_ok = false;           // the file header decodes (version, pack_id valid)
  std::uint32_t version = 0;
  std::uint32_t pack_id = 0;
};

// Walks the records of an open pack from the start, calling visit(offset, header)
// for each whose header checks and whose payload lies inside the file. Payloads are
// not read here. A record that does not check is stepped over to the next intact
// one; what follows the last intact record is the torn tail. A pack of a newer
// format version is not scanned.
PackScanResult scan_pack(int fd,
                         const std::function<void(std::uint64_t, const RecordHeader&)>& visit);

}  // namespace casfs
