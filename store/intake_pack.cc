// Intake packs: writing one (see intake_pack.h). Indexing it is
// Store::Impl::index_objects's; moving its records into a regular pack is pack()'s.
#include "store/intake_pack.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "store/failpoint.h"
#include "store/file_io.h"
#include "store/pack_format.h"
#include "store/store_impl.h"

namespace casfs {

std::unordered_set<std::uint32_t> IntakeInFlight::ids() const {
  std::lock_guard lock(mutex_);
  std::unordered_set<std::uint32_t> ids;
  for (const auto& [id, writes] : writes_) ids.insert(id);
  return ids;
}

bool IntakeInFlight::contains(std::uint32_t pack_id) const {
  std::lock_guard lock(mutex_);
  return writes_.contains(pack_id);
}

IntakeWrite::IntakeWrite(IntakeInFlight& in_flight, std::uint32_t pack_id)
    : in_flight_(in_flight), pack_id_(pack_id) {
  std::lock_guard lock(in_flight_.mutex_);
  in_flight_.writes_[pack_id_] += 1;
}

IntakeWrite::~IntakeWrite() {
  std::lock_guard lock(in_flight_.mutex_);
  auto it = in_flight_.writes_.find(pack_id_);
  if (--it->second == 0) in_flight_.writes_.erase(it);
}

IntakeBuffers::Buffer IntakeBuffers::take() {
  {
    std::lock_guard lock(mutex_);
    if (!free_.empty()) {
      Buffer b = std::move(free_.back());
      free_.pop_back();
      return b;
    }
  }
  return allocate_aligned(kAlign, kSize);
}

void IntakeBuffers::give_back(Buffer buffer) noexcept {
  std::lock_guard lock(mutex_);
  try {
    if (free_.size() < kKept) free_.push_back(std::move(buffer));
  } catch (const std::bad_alloc&) {
    // Freed instead of kept.
  }
}

namespace {

RecordHeader intake_record_header(const Blob& b) {
  RecordHeader h;
  h.codec = Codec::kRaw;
  h.intake = true;
  h.id = b.id;
  h.raw_size = h.stored_size = b.data.size();
  h.payload_xxh3 = b.checksum;  // of the raw bytes, which are the payload
  return h;
}

// Writes pieces one after another from offset 0 through an aligned buffer, with
// O_DIRECT while the file takes it (else as ordinary writes), and leaves the file
// exactly as long as the pieces.
class IntakeFileWriter {
 public:
  IntakeFileWriter(int fd, IntakeBuffers& buffers)
      : fd_(fd), buffers_(buffers), buffer_(buffers.take()) {}
  ~IntakeFileWriter() { buffers_.give_back(std::move(buffer_)); }
  IntakeFileWriter(const IntakeFileWriter&) = delete;
  IntakeFileWriter& operator=(const IntakeFileWriter&) = delete;

  void append(std::span<const std::byte> piece) {
    while (!piece.empty()) {
      const std::size_t n = std::min(piece.size(), IntakeBuffers::kSize - filled_);
      std::memcpy(buffer_.get() + filled_, piece.data(), n);
      filled_ += n;
      piece = piece.subspan(n);
      if (filled_ == IntakeBuffers::kSize) flush(filled_);
    }
  }
  // Writes what is left, padded to the alignment, then cuts the padding off.
  void finish() {
    const std::uint64_t end = written_ + filled_;
    const std::size_t padded = (filled_ + IntakeBuffers::kAlign - 1) & ~(IntakeBuffers::kAlign - 1);
    std::memset(buffer_.get() + filled_, 0, padded - filled_);
    flush(padded);
    if (::ftruncate(fd_, static_cast<off_t>(end)) != 0) throw_errno("cannot size intake pack");
  }

 private:
  void flush(std::size_t n) {
    auto bytes = std::span<const std::byte>(buffer_.get(), n);
    std::int64_t r = pwrite_retrying(fd_, bytes, written_);
    if (r == -EINVAL && direct()) {
      // The filesystem takes no direct writes (tmpfs, some FUSE ones): write through
      // the page cache instead.
      ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_DIRECT);
      r = pwrite_retrying(fd_, bytes, written_);
    }
    if (r < 0) throw_errno(static_cast<int>(-r), "cannot write intake pack");
    written_ += n;
    filled_ = 0;
  }
  bool direct() const { return (::fcntl(fd_, F_GETFL) & O_DIRECT) != 0; }

  int fd_;
  IntakeBuffers& buffers_;
  IntakeBuffers::Buffer buffer_;
  std::size_t filled_ = 0;
  std::uint64_t written_ = 0;
};

}  // namespace

std::unique_ptr<IntakeWrite> Store::Impl::write_intake_pack(const std::vector<Blob>& blobs,
                                                            std::span<const std::size_t> which) {
  // Registered before the file exists, so that no orphan sweep can see it unclaimed.
  auto intake = std::make_unique<IntakeWrite>(intake_in_flight, new_pack_id());
  const std::string name = PackFiles::file_name(intake->pack_id());
  constexpr int kCreate = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC;
  UniqueFd fd(::openat(packs.dir_fd(), name.c_str(), kCreate | O_DIRECT, 0644));
  if (!fd && errno == EINVAL) fd = UniqueFd(::openat(packs.dir_fd(), name.c_str(), kCreate, 0644));
  if (!fd) throw_errno("cannot create intake pack " + name);
  try {
    IntakeFileWriter out(fd.get(), intake_buffers);
    out.append(PackFileHeader{kPackFormatVersion, intake->pack_id()}.encode());
    std::uint64_t at = kPackHeaderSize;
    for (std::size_t k = 0; k < which.size(); ++k) {
      const Blob& b = blobs[which[k]];
      const RecordHeader h = intake_record_header(b);
      intake->offsets.emplace(b.id, at);
      at += h.record_size();
      out.append(h.encode());
      out.append(b.data);
    }
    out.finish();
    failpoint("intake.written");
    if (::fdatasync(fd.get()) != 0 || ::fsync(packs.dir_fd()) != 0)
      throw_errno("cannot sync intake pack " + name);
    intake->start = kPackHeaderSize;
    intake->size = at;
  } catch (...) {
    // Nothing names it yet.
    ::unlinkat(packs.dir_fd(), name.c_str(), 0);
    throw;
  }
  return intake;
}

std::unique_ptr<IntakeWrite> Store::Impl::append_intake_records(
    const std::vector<Blob>& blobs, std::span<const std::size_t> which) {
  std::vector<std::byte> records;
  std::vector<std::uint64_t> record_at;  // from the batch's start
  for (std::size_t i : which) {
    record_at.push_back(records.size());
    const auto header = intake_record_header(blobs[i]).encode();
    records.insert(records.end(), header.begin(), header.end());
    records.insert(records.end(), blobs[i].data.begin(), blobs[i].data.end());
  }
  OpenIntakePack& open = open_intake;
  std::lock_guard appending(open.mutex);
  if (!open.fd) {
    // Registered before the file exists, so that no orphan sweep can see it unclaimed.
    auto hold = std::make_unique<IntakeWrite>(intake_in_flight, new_pack_id());
    const std::string name = PackFiles::file_name(hold->pack_id());
    UniqueFd fd(
        ::openat(packs.dir_fd(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) throw_errno("cannot create intake pack " + name);
    const auto header = PackFileHeader{kPackFormatVersion, hold->pack_id()}.encode();
    // Its directory entry is synced once, here; appends only sync the file.
    const std::int64_t r = pwrite_retrying(fd.get(), header, 0);
    int error = r < 0 ? static_cast<int>(-r) : 0;
    if (error == 0 && (::fdatasync(fd.get()) != 0 || ::fsync(packs.dir_fd()) != 0)) error = errno;
    if (error != 0) {
      ::unlinkat(packs.dir_fd(), name.c_str(), 0);
      throw_errno(error, "cannot start intake pack " + name);
    }
    open.hold = std::move(hold);
    open.fd = std::move(fd);
    open.end = kPackHeaderSize;
  }
  const std::uint32_t pack_id = open.hold->pack_id();
  auto intake = std::make_unique<IntakeWrite>(intake_in_flight, pack_id);
  intake->start = open.end;
  intake->size = open.end + records.size();
  for (std::size_t k = 0; k < which.size(); ++k)
    intake->offsets.emplace(blobs[which[k]].id, open.end + record_at[k]);
  const std::int64_t written = pwrite_retrying(open.fd.get(), records, open.end);
  failpoint("intake.appended");
  int error = written < 0 ? static_cast<int>(-written) : 0;
  if (error == 0 && ::fdatasync(open.fd.get()) != 0) error = errno;
  if (error != 0) {
    // Nothing is known of what follows the last good record: the next batch starts
    // a new pack. The records before are committed ones, or a dropped batch's.
    open.fd.reset();
    open.hold.reset();
    throw_errno(error, "cannot append to intake pack " + std::to_string(pack_id));
  }
  open.end = intake->size;
  if (open.end >= OpenIntakePack::kMaxBytes) {
    open.fd.reset();
    open.hold.reset();
  }
  return intake;
}

}  // namespace casfs
