// Intake packs: writing one (see intake_pack.h). Indexing it is
// Store::Impl::index_objects's; moving its records into a regular pack is pack()'s.
#include "store/intake_pack.h"

#include <fcntl.h>
#include <unistd.h>

#include "store/failpoint.h"
#include "store/file_io.h"
#include "store/pack_format.h"
#include "store/store_impl.h"

namespace casfs {

std::unordered_set<std::uint32_t> IntakeInFlight::ids() const {
  std::lock_guard lock(mutex_);
  return ids_;
}

IntakeWrite::IntakeWrite(IntakeInFlight& in_flight, std::uint32_t pack_id)
    : in_flight_(in_flight), pack_id_(pack_id) {
  std::lock_guard lock(in_flight_.mutex_);
  in_flight_.ids_.insert(pack_id_);
}

IntakeWrite::~IntakeWrite() {
  std::lock_guard lock(in_flight_.mutex_);
  in_flight_.ids_.erase(pack_id_);
}

std::unique_ptr<IntakeWrite> Store::Impl::write_intake_pack(const std::vector<Blob>& blobs,
                                                            std::span<const std::size_t> which) {
  // Registered before the file exists, so that no orphan sweep can see it unclaimed.
  auto intake = std::make_unique<IntakeWrite>(intake_in_flight, new_pack_id());
  const std::string name = PackFiles::file_name(intake->pack_id());
  UniqueFd fd(
      ::openat(packs.dir_fd(), name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) throw_errno("cannot create intake pack " + name);
  try {
    const auto file_header = PackFileHeader{kPackFormatVersion, intake->pack_id()}.encode();
    std::vector<std::array<std::byte, kRecordHeaderSize>> headers(which.size());
    std::vector<std::span<const std::byte>> pieces;
    pieces.reserve(1 + 2 * which.size());
    pieces.emplace_back(file_header);
    std::uint64_t at = kPackHeaderSize;
    for (std::size_t k = 0; k < which.size(); ++k) {
      const Blob& b = blobs[which[k]];
      RecordHeader h;
      h.codec = Codec::kRaw;
      h.intake = true;
      h.id = b.id;
      h.raw_size = h.stored_size = b.data.size();
      h.payload_xxh3 = b.checksum;  // of the raw bytes, which are the payload
      headers[k] = h.encode();
      intake->offsets.emplace(b.id, at);
      at += h.record_size();
      pieces.emplace_back(headers[k]);
      pieces.push_back(b.data);
    }
    pwrite_gathered(fd.get(), pieces, 0);
    failpoint("intake.written");
    if (::fdatasync(fd.get()) != 0 || ::fsync(packs.dir_fd()) != 0)
      throw_errno("cannot sync intake pack " + name);
    intake->size = at;
  } catch (...) {
    // Nothing names it yet.
    ::unlinkat(packs.dir_fd(), name.c_str(), 0);
    throw;
  }
  return intake;
}

}  // namespace casfs
