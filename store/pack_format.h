// On-disk format of pack files (STORE/packs/N.pack).
//
// A pack is a file header followed by records, appended and never rewritten in
// place. Every record is self-describing, so any pack can be verified, and the
// index rebuilt, from the pack alone; a torn tail (a crash mid-append) shows as a
// record whose header does not check or whose payload runs past the end of file,
// and everything from there on is ignored.
//
//   file header (16 bytes): "CASFSPK\0" | u32 format version | u32 pack id
//   record header (72 bytes), all integers little-endian:
//      0 u32  magic "CREC"
//      4 u8   codec (0 raw, 1 zstd)
//      5 u8   flags: bit 0 marks a record of an intake pack (intake_pack.h); the
//             other bits are 0
//      6 u16  reserved (0)
//      8 u8[32] SHA-256 of the raw bytes (the object id)
//     40 u64  raw size
//     48 u64  stored size (payload bytes that follow)
//     56 u64  XXH3-64 of the payload
//     64 u64  XXH3-64 of header bytes 0..63
//   payload (stored size bytes)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "store/compress.h"
#include "store/hash.h"

namespace casfs {

inline constexpr std::uint32_t kPackFormatVersion = 1;
inline constexpr std::size_t kPackHeaderSize = 16;
inline constexpr std::size_t kRecordHeaderSize = 72;

struct PackFileHeader {
  std::uint32_t version = kPackFormatVersion;
  std::uint32_t pack_id = 0;

  std::array<std::byte, kPackHeaderSize> encode() const;
  // nullopt when the magic is wrong; the version is returned as found so the caller
  // can refuse a newer one with a clear message.
  static std::optional<PackFileHeader> decode(std::span<const std::byte> bytes);
};

struct RecordHeader {
  Codec codec = Codec::kRaw;
  // Written into an intake pack: raw, awaiting pack(). It marks the pack as one on
  // disk, so that rebuild_index knows it again.
  bool intake = false;
  ObjectId id;
  std::uint64_t raw_size = 0;
  std::uint64_t stored_size = 0;
  std::uint64_t payload_xxh3 = 0;

  std::array<std::byte, kRecordHeaderSize> encode() const;
  // nullopt when the magic or the header checksum is wrong, the codec or a flag is
  // unknown, or the sizes are inconsistent (raw codec with stored != raw).
  static std::optional<RecordHeader> decode(std::span<const std::byte> bytes);

  std::uint64_t record_size() const { return kRecordHeaderSize + stored_size; }
};

}  // namespace casfs
