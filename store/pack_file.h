// Pack files on disk: opening them for reading (a bounded cache of fds, since the
// process may hold at most 20,000), appending records, and scanning records from
// the start without the index (verify, rebuild_index).
#pragma once

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

class PackFiles {
 public:
  explicit PackFiles(const std::filesystem::path& store_dir, std::size_t max_open = 256);

  static std::string file_name(std::uint32_t id);  // "N.pack"
  const std::filesystem::path& dir() const { return dir_; }
  int dir_fd() const { return dir_fd_.get(); }

  // A shared read-only fd for pack `id`, opened on first use and cached. A pack
  // removed by repack stays readable through fds handed out before its removal.
  // Throws StoreError(ENOENT) when the file is gone.
  std::shared_ptr<const UniqueFd> open_read(std::uint32_t id);
  // Unlinks the file and drops the cached fd.
  void remove(std::uint32_t id);
  // Ids of the N.pack files present on disk, ascending.
  std::vector<std::uint32_t> list_files() const;

 private:
  std::filesystem::path dir_;
  UniqueFd dir_fd_;
  std::size_t max_open_;
  std::mutex mutex_;
  std::list<std::uint32_t> lru_;  // most recently used first
  struct Entry {
    std::shared_ptr<const UniqueFd> fd;
    std::list<std::uint32_t>::iterator lru_pos;
  };
  std::unordered_map<std::uint32_t, Entry> open_;
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
