#include "store/pack_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>

#include "store/error.h"

namespace casfs {

PackFiles::PackFiles(const std::filesystem::path& store_dir, std::size_t max_open)
    : dir_(store_dir / "packs"), max_open_(max_open) {
  dir_fd_ = UniqueFd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd_) throw_errno("cannot open " + dir_.string());
}

void PackFiles::note_direct_align(int fd) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0) return;
  if (!(stx.stx_mask & STATX_DIOALIGN) || stx.stx_dio_offset_align == 0) return;
  // 4096 (the default) covers every common device; a filesystem that says more wins.
  block_align_.store(std::max<std::size_t>(stx.stx_dio_offset_align, stx.stx_dio_mem_align),
                     std::memory_order_relaxed);
}

std::string PackFiles::file_name(std::uint32_t id) {
  return std::to_string(id) + ".pack";
}

std::shared_ptr<const UniqueFd> PackFiles::open_read(std::uint32_t id, PackAccess access) {
  const std::uint64_t key = key_of(id, access);
  std::lock_guard lock(mutex_);
  if (auto it = open_.find(key); it != open_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru_pos);
    return it->second.fd;
  }
  const std::string name = file_name(id);
  UniqueFd fd;
  if (access == PackAccess::kBlocks) {
    fd = UniqueFd(::openat(dir_fd_.get(), name.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
    if (fd) {
      note_direct_align(fd.get());
    } else if (errno == EINVAL) {
      fd = UniqueFd(::openat(dir_fd_.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
      // Only advice: a kernel that ignores it still reads the right bytes.
      if (fd) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_RANDOM);
    }
  } else {
    fd = UniqueFd(::openat(dir_fd_.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
  }
  if (!fd) throw_errno("cannot open pack " + (dir_ / name).string());
  auto shared = std::make_shared<const UniqueFd>(std::move(fd));
  if (open_.size() >= max_open_) {
    open_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(key);
  open_.emplace(key, Entry{shared, lru_.begin()});
  return shared;
}

void PackFiles::remove(std::uint32_t id) {
  {
    std::lock_guard lock(mutex_);
    for (PackAccess access : {PackAccess::kSequential, PackAccess::kBlocks}) {
      if (auto it = open_.find(key_of(id, access)); it != open_.end()) {
        lru_.erase(it->second.lru_pos);
        open_.erase(it);
      }
    }
  }
  if (::unlinkat(dir_fd_.get(), file_name(id).c_str(), 0) != 0 && errno != ENOENT) {
    throw_errno("cannot remove pack " + (dir_ / file_name(id)).string());
  }
}

std::vector<std::uint32_t> PackFiles::list_files() const {
  std::vector<std::uint32_t> ids;
  int fd = ::openat(dir_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot list " + dir_.string());
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    throw_errno("cannot list " + dir_.string());
  }
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (!name.ends_with(".pack")) continue;
    std::string_view digits = name.substr(0, name.size() - 5);
    std::uint32_t id = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
    if (ec == std::errc() && ptr == digits.data() + digits.size() && file_name(id) == name) {
      ids.push_back(id);
    }
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

PackAppender PackAppender::create(PackFiles& files, std::uint32_t id) {
  auto name = PackFiles::file_name(id);
  UniqueFd fd(::openat(files.dir_fd(), name.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0444));
  if (!fd) throw_errno("cannot create pack " + (files.dir() / name).string());
  PackFileHeader header;
  header.pack_id = id;
  auto bytes = header.encode();
  pwrite_full(fd.get(), bytes, 0);
  if (::fdatasync(fd.get()) != 0 || ::fsync(files.dir_fd()) != 0) {
    throw_errno("cannot sync new pack " + (files.dir() / name).string());
  }
  return PackAppender(id, std::move(fd), kPackHeaderSize);
}

PackAppender PackAppender::reopen(PackFiles& files, std::uint32_t id,
                                  std::uint64_t committed_size) {
  auto name = PackFiles::file_name(id);
  UniqueFd fd(::openat(files.dir_fd(), name.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) throw_errno("cannot open pack " + (files.dir() / name).string());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat pack " + name);
  if (static_cast<std::uint64_t>(st.st_size) < committed_size) {
    throw StoreError(EIO, "pack " + (files.dir() / name).string() + " is shorter (" +
                              std::to_string(st.st_size) + " bytes) than the index records (" +
                              std::to_string(committed_size) + "); run `casfs store verify`");
  }
  if (static_cast<std::uint64_t>(st.st_size) > committed_size &&
      ::ftruncate(fd.get(), static_cast<off_t>(committed_size)) != 0) {
    throw_errno("cannot cut the torn tail of pack " + name);
  }
  return PackAppender(id, std::move(fd), committed_size);
}

void PackAppender::sync() {
  if (::fdatasync(fd_.get()) != 0) throw_errno("cannot sync pack " + PackFiles::file_name(id_));
}

namespace {

constexpr std::array<std::byte, 4> kRecordMagic{std::byte{'C'}, std::byte{'R'}, std::byte{'E'},
                                                std::byte{'C'}};

// The offset of the first intact record at or after `from`, or nullopt: used to
// step over a damaged record, so one bad byte loses one record, not a pack.
std::optional<std::uint64_t> find_next_record(int fd, std::uint64_t from, std::uint64_t file_size) {
  constexpr std::size_t kWindow = 1 << 20;
  std::vector<std::byte> window(kWindow);
  std::array<std::byte, kRecordHeaderSize> hb;
  for (std::uint64_t start = from; start + kRecordHeaderSize <= file_size;) {
    std::size_t n = pread_full(fd, window, start);
    if (n < kRecordMagic.size()) return std::nullopt;
    for (std::size_t i = 0; i + kRecordMagic.size() <= n; ++i) {
      if (!std::equal(kRecordMagic.begin(), kRecordMagic.end(),
                      window.begin() + static_cast<std::ptrdiff_t>(i))) {
        continue;
      }
      std::uint64_t at = start + i;
      if (at + kRecordHeaderSize > file_size) return std::nullopt;
      if (pread_full(fd, hb, at) != hb.size()) return std::nullopt;
      auto rec = RecordHeader::decode(hb);
      if (rec && at + rec->record_size() <= file_size) return at;
    }
    start += n - (kRecordMagic.size() - 1);
  }
  return std::nullopt;
}

}  // namespace

PackScanResult scan_pack(int fd,
                         const std::function<void(std::uint64_t, const RecordHeader&)>& visit) {
  PackScanResult result;
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno("cannot stat pack");
  result.file_size = static_cast<std::uint64_t>(st.st_size);
  std::array<std::byte, kPackHeaderSize> fh;
  if (pread_full(fd, fh, 0) == fh.size()) {
    if (auto header = PackFileHeader::decode(fh)) {
      result.header_ok = true;
      result.version = header->version;
      result.pack_id = header->pack_id;
      if (header->version > kPackFormatVersion) return result;
    }
  }
  // A damaged file header does not stop the scan: the records describe themselves.

  // Headers are read through a buffer so that a pack of many small records costs
  // few system calls.
  constexpr std::size_t kWindow = 1 << 20;
  std::vector<std::byte> window(kWindow);
  std::uint64_t window_start = 0, window_len = 0;
  std::uint64_t offset = kPackHeaderSize;
  result.valid_end = std::min<std::uint64_t>(offset, result.file_size);
  while (offset + kRecordHeaderSize <= result.file_size) {
    std::optional<RecordHeader> rec;
    if (offset < window_start || offset + kRecordHeaderSize > window_start + window_len) {
      window_start = offset;
      window_len = pread_full(fd, window, offset);
    }
    if (offset + kRecordHeaderSize <= window_start + window_len) {
      rec = RecordHeader::decode(
          std::span<const std::byte>(window).subspan(offset - window_start, kRecordHeaderSize));
    }
    if (!rec || offset + rec->record_size() > result.file_size) {
      auto next = find_next_record(fd, offset + 1, result.file_size);
      if (!next) break;  // nothing intact after this: a torn tail
      result.damaged_bytes += *next - offset;
      offset = *next;
      continue;
    }
    visit(offset, *rec);
    offset += rec->record_size();
    result.valid_end = offset;
  }
  return result;
}

}  // namespace casfs
