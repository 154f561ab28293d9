#include "store/pack_format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "store/hash.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using casfs::testing::random_bytes;
using casfs::testing::test_seed;

RecordHeader sample_header(std::mt19937_64& rng, Codec codec) {
  RecordHeader h;
  h.codec = codec;
  std::vector<std::byte> raw = random_bytes(rng, 32);
  h.id = ObjectId::from_bytes(raw);
  h.raw_size = 0x0102030405060708ULL;
  h.stored_size = codec == Codec::kRaw ? h.raw_size : 0x00000000A0B0C0D0ULL;
  h.payload_xxh3 = rng();
  return h;
}

void expect_equal(const RecordHeader& a, const RecordHeader& b) {
  EXPECT_EQ(a.codec, b.codec);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.raw_size, b.raw_size);
  EXPECT_EQ(a.stored_size, b.stored_size);
  EXPECT_EQ(a.payload_xxh3, b.payload_xxh3);
}

// Writes a valid checksum over the (possibly edited) first 64 bytes, so a test can
// reach the checks that come after the checksum.
void reseal(std::array<std::byte, kRecordHeaderSize>& bytes) {
  std::uint64_t sum = Xxh3::of(std::span<const std::byte>(bytes.data(), 64));
  for (int i = 0; i < 8; ++i) bytes[64 + i] = static_cast<std::byte>(sum >> (8 * i));
}

std::uint64_t read_le64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::to_integer<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

TEST(PackFormat, RecordHeaderRoundTrip) {
  std::mt19937_64 rng(test_seed());
  for (Codec codec : {Codec::kRaw, Codec::kZstd}) {
    RecordHeader h = sample_header(rng, codec);
    auto bytes = h.encode();
    std::optional<RecordHeader> back = RecordHeader::decode(bytes);
    ASSERT_TRUE(back.has_value());
    expect_equal(*back, h);
    EXPECT_EQ(back->record_size(), kRecordHeaderSize + h.stored_size);
  }
}

TEST(PackFormat, RecordHeaderLayoutIsLittleEndian) {
  std::mt19937_64 rng(test_seed());
  RecordHeader h = sample_header(rng, Codec::kZstd);
  auto bytes = h.encode();
  EXPECT_EQ(std::memcmp(bytes.data(), "CREC", 4), 0);
  EXPECT_EQ(bytes[4], std::byte{1});
  EXPECT_EQ(bytes[5], std::byte{0});
  EXPECT_EQ(bytes[6], std::byte{0});
  EXPECT_EQ(bytes[7], std::byte{0});
  EXPECT_EQ(std::memcmp(bytes.data() + 8, h.id.bytes.data(), 32), 0);
  EXPECT_EQ(bytes[40], std::byte{0x08});
  EXPECT_EQ(bytes[47], std::byte{0x01});
  EXPECT_EQ(read_le64(bytes.data() + 40), h.raw_size);
  EXPECT_EQ(read_le64(bytes.data() + 48), h.stored_size);
  EXPECT_EQ(read_le64(bytes.data() + 56), h.payload_xxh3);
  EXPECT_EQ(read_le64(bytes.data() + 64), Xxh3::of(std::span<const std::byte>(bytes.data(), 64)));
}

TEST(PackFormat, RecordHeaderEveryBitFlipIsRejected) {
  std::mt19937_64 rng(test_seed());
  for (Codec codec : {Codec::kRaw, Codec::kZstd}) {
    const auto good = sample_header(rng, codec).encode();
    ASSERT_TRUE(RecordHeader::decode(good).has_value());
    for (std::size_t i = 0; i < kRecordHeaderSize; ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        auto bad = good;
        bad[i] ^= static_cast<std::byte>(1u << bit);
        EXPECT_FALSE(RecordHeader::decode(bad).has_value()) << "byte " << i << " bit " << bit;
      }
    }
  }
}

TEST(PackFormat, RecordHeaderWrongMagicRejectedEvenWithValidChecksum) {
  std::mt19937_64 rng(test_seed());
  auto bytes = sample_header(rng, Codec::kZstd).encode();
  std::memcpy(bytes.data(), "CREX", 4);
  reseal(bytes);
  EXPECT_FALSE(RecordHeader::decode(bytes).has_value());
}

TEST(PackFormat, RecordHeaderUnknownCodecRejected) {
  std::mt19937_64 rng(test_seed());
  auto bytes = sample_header(rng, Codec::kZstd).encode();
  bytes[4] = std::byte{2};
  reseal(bytes);
  EXPECT_FALSE(RecordHeader::decode(bytes).has_value());
}

TEST(PackFormat, RecordHeaderNonzeroFlagsRejected) {
  std::mt19937_64 rng(test_seed());
  auto bytes = sample_header(rng, Codec::kZstd).encode();
  bytes[5] = std::byte{1};
  reseal(bytes);
  EXPECT_FALSE(RecordHeader::decode(bytes).has_value());
}

TEST(PackFormat, RecordHeaderRawSizeMismatchRejected) {
  std::mt19937_64 rng(test_seed());
  RecordHeader h = sample_header(rng, Codec::kRaw);
  h.stored_size = h.raw_size - 1;
  // encode() writes what it is given; decode() is where consistency is enforced.
  EXPECT_FALSE(RecordHeader::decode(h.encode()).has_value());
  h.codec = Codec::kZstd;
  EXPECT_TRUE(RecordHeader::decode(h.encode()).has_value());
}

TEST(PackFormat, RecordHeaderShortInputRejected) {
  std::mt19937_64 rng(test_seed());
  auto bytes = sample_header(rng, Codec::kRaw).encode();
  EXPECT_FALSE(RecordHeader::decode(std::span(bytes).first(kRecordHeaderSize - 1)).has_value());
  EXPECT_FALSE(RecordHeader::decode({}).has_value());
  // Extra bytes after the header (the payload) are not its concern.
  std::vector<std::byte> longer(bytes.begin(), bytes.end());
  longer.resize(200, std::byte{0xee});
  EXPECT_TRUE(RecordHeader::decode(longer).has_value());
}

TEST(PackFormat, PackFileHeaderRoundTrip) {
  PackFileHeader h;
  h.pack_id = 0xdeadbeef;
  auto bytes = h.encode();
  EXPECT_EQ(std::memcmp(bytes.data(), "CASFSPK\0", 8), 0);
  EXPECT_EQ(bytes[8], std::byte{kPackFormatVersion});
  EXPECT_EQ(bytes[12], std::byte{0xef});
  EXPECT_EQ(bytes[15], std::byte{0xde});
  std::optional<PackFileHeader> back = PackFileHeader::decode(bytes);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->version, kPackFormatVersion);
  EXPECT_EQ(back->pack_id, 0xdeadbeefu);
}

TEST(PackFormat, PackFileHeaderKeepsNewerVersion) {
  PackFileHeader h;
  h.version = kPackFormatVersion + 7;
  h.pack_id = 3;
  std::optional<PackFileHeader> back = PackFileHeader::decode(h.encode());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->version, kPackFormatVersion + 7);
  EXPECT_EQ(back->pack_id, 3u);
}

TEST(PackFormat, PackFileHeaderBadMagicRejected) {
  PackFileHeader h;
  const auto good = h.encode();
  for (std::size_t i = 0; i < 8; ++i) {
    auto bad = good;
    bad[i] ^= std::byte{0x01};
    EXPECT_FALSE(PackFileHeader::decode(bad).has_value()) << "byte " << i;
  }
  EXPECT_FALSE(PackFileHeader::decode(std::span(good).first(kPackHeaderSize - 1)).has_value());
}

}  // namespace
}  // namespace casfs
