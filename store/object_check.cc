#include "store/object_check.h"

#include <algorithm>

#include "store/file_io.h"
#include "store/pack_format.h"

namespace casfs {

StoreError corrupt_object(const ObjectId& id, const std::string& what) {
  return StoreError(EIO, "object " + id.hex() + " is corrupt: " + what);
}

std::span<const std::byte> check_record(const ObjectInfo& info, std::span<const std::byte> rec) {
  if (rec.size() < kRecordHeaderSize + info.stored_size) {
    throw corrupt_object(info.id, "record is truncated");
  }
  auto header = RecordHeader::decode(rec.first(kRecordHeaderSize));
  if (!header) throw corrupt_object(info.id, "record header does not check");
  if (header->id != info.id || header->stored_size != info.stored_size ||
      header->raw_size != info.raw_size || header->codec != info.codec) {
    throw corrupt_object(info.id, "record header does not match the index");
  }
  auto payload = rec.subspan(kRecordHeaderSize, info.stored_size);
  if (Xxh3::of(payload) != info.checksum || header->payload_xxh3 != info.checksum) {
    throw corrupt_object(info.id, "payload checksum mismatch");
  }
  return payload;
}

std::span<const std::byte> decode_payload(const ObjectInfo& info,
                                          std::span<const std::byte> payload,
                                          std::vector<std::byte>& scratch) {
  if (info.codec == Codec::kRaw) return payload;
  scratch.resize(info.raw_size);
  try {
    zstd_decompress(payload, scratch);
  } catch (const StoreError& e) {
    throw corrupt_object(info.id, e.what());
  }
  return {scratch.data(), scratch.size()};
}

std::optional<std::uint64_t> xxh3_of_range(int fd, std::uint64_t offset, std::uint64_t size) {
  std::vector<std::byte> buf(std::min<std::uint64_t>(size, std::uint64_t{1} << 20));
  Xxh3 xxh;
  for (std::uint64_t done = 0; done < size;) {
    auto piece = std::span<std::byte>(buf).first(std::min<std::uint64_t>(buf.size(), size - done));
    if (pread_full(fd, piece, offset + done) != piece.size()) return std::nullopt;
    xxh.update(piece);
    done += piece.size();
  }
  return xxh.digest();
}

void check_loose(const ObjectInfo& info, std::span<const std::byte> data, std::int64_t got) {
  if (got < 0) {
    throw StoreError(static_cast<int>(-got), "cannot read loose object " + info.id.hex());
  }
  if (static_cast<std::uint64_t>(got) != info.raw_size) {
    throw corrupt_object(info.id, "loose file has the wrong size");
  }
  if (Xxh3::of(data.first(info.raw_size)) != info.checksum) {
    throw corrupt_object(info.id, "checksum mismatch");
  }
}

}  // namespace casfs
