#include "store/pack_format.h"

#include <algorithm>
#include <cstring>

#include "store/byte_order.h"
#include "store/hash.h"

namespace casfs {

namespace {

constexpr std::array<std::byte, 8> kPackMagic{std::byte{'C'}, std::byte{'A'}, std::byte{'S'},
                                              std::byte{'F'}, std::byte{'S'}, std::byte{'P'},
                                              std::byte{'K'}, std::byte{0}};
constexpr std::array<std::byte, 4> kRecordMagic{std::byte{'C'}, std::byte{'R'}, std::byte{'E'},
                                                std::byte{'C'}};

constexpr std::size_t kChecksummedBytes = 64;
constexpr std::byte kIntakeFlag{1};

}  // namespace

std::array<std::byte, kPackHeaderSize> PackFileHeader::encode() const {
  std::array<std::byte, kPackHeaderSize> out{};
  std::copy(kPackMagic.begin(), kPackMagic.end(), out.begin());
  put_le<std::uint32_t>(out.data() + 8, version);
  put_le<std::uint32_t>(out.data() + 12, pack_id);
  return out;
}

std::optional<PackFileHeader> PackFileHeader::decode(std::span<const std::byte> bytes) {
  if (bytes.size() < kPackHeaderSize) return std::nullopt;
  if (!std::equal(kPackMagic.begin(), kPackMagic.end(), bytes.begin())) return std::nullopt;
  PackFileHeader h;
  h.version = get_le<std::uint32_t>(bytes.data() + 8);
  h.pack_id = get_le<std::uint32_t>(bytes.data() + 12);
  return h;
}

std::array<std::byte, kRecordHeaderSize> RecordHeader::encode() const {
  std::array<std::byte, kRecordHeaderSize> out{};
  std::copy(kRecordMagic.begin(), kRecordMagic.end(), out.begin());
  out[4] = static_cast<std::byte>(codec);
  out[5] = intake ? kIntakeFlag : std::byte{0};
  // Bytes 6..7 (reserved) stay zero.
  std::memcpy(out.data() + 8, id.bytes.data(), id.bytes.size());
  put_le<std::uint64_t>(out.data() + 40, raw_size);
  put_le<std::uint64_t>(out.data() + 48, stored_size);
  put_le<std::uint64_t>(out.data() + 56, payload_xxh3);
  put_le<std::uint64_t>(out.data() + 64,
                        Xxh3::of(std::span<const std::byte>(out.data(), kChecksummedBytes)));
  return out;
}

std::optional<RecordHeader> RecordHeader::decode(std::span<const std::byte> bytes) {
  if (bytes.size() < kRecordHeaderSize) return std::nullopt;
  if (!std::equal(kRecordMagic.begin(), kRecordMagic.end(), bytes.begin())) return std::nullopt;
  // The checksum comes before any field is trusted: a torn or overwritten header must
  // not be mistaken for a record with odd but plausible sizes.
  if (get_le<std::uint64_t>(bytes.data() + 64) != Xxh3::of(bytes.first(kChecksummedBytes))) {
    return std::nullopt;
  }
  const auto codec_byte = std::to_integer<std::uint8_t>(bytes[4]);
  if (codec_byte != static_cast<std::uint8_t>(Codec::kRaw) &&
      codec_byte != static_cast<std::uint8_t>(Codec::kZstd)) {
    return std::nullopt;
  }
  // Flags and reserved bits mean a writer newer than this reader; guessing is worse
  // than refusing.
  if ((bytes[5] & ~kIntakeFlag) != std::byte{0} || bytes[6] != std::byte{0} ||
      bytes[7] != std::byte{0}) {
    return std::nullopt;
  }
  RecordHeader h;
  h.codec = static_cast<Codec>(codec_byte);
  h.intake = bytes[5] == kIntakeFlag;
  // Only raw records are taken in.
  if (h.intake && h.codec != Codec::kRaw) return std::nullopt;
  h.id = ObjectId::from_bytes(bytes.subspan(8, 32));
  h.raw_size = get_le<std::uint64_t>(bytes.data() + 40);
  h.stored_size = get_le<std::uint64_t>(bytes.data() + 48);
  h.payload_xxh3 = get_le<std::uint64_t>(bytes.data() + 56);
  if (h.codec == Codec::kRaw && h.stored_size != h.raw_size) return std::nullopt;
  // No object comes near 2^62 bytes; a size past it (a header forged to pass the
  // checksum) would make offset + record_size() wrap, and a pack scan loop for ever.
  constexpr std::uint64_t kMaxSize = std::uint64_t{1} << 62;
  if (h.stored_size > kMaxSize || h.raw_size > kMaxSize) return std::nullopt;
  return h;
}

}  // namespace casfs
