#include "store/compress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "store/error.h"
#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using casfs::testing::random_bytes;
using casfs::testing::test_seed;

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// Repetitive but not trivially so, like source code or logs.
std::vector<std::byte> text_bytes(std::size_t size) {
  static constexpr std::string_view kWords[] = {
      "object ", "store ", "pack ", "index ", "chunk ", "zstd ", "header\n", "record ", "loose "};
  std::string s;
  std::size_t i = 0;
  while (s.size() < size) s += kWords[(i++ * 7) % std::size(kWords)];
  s.resize(size);
  return bytes_of(s);
}

std::vector<std::byte> with_prefix(std::string_view prefix, std::size_t size) {
  std::vector<std::byte> data = text_bytes(size);
  std::memcpy(data.data(), prefix.data(), prefix.size());
  return data;
}

std::vector<std::byte> round_trip(const std::vector<std::byte>& raw, int level) {
  std::vector<std::byte> frame;
  std::size_t n = zstd_compress(raw, level, frame);
  EXPECT_EQ(n, frame.size());
  std::vector<std::byte> back(raw.size());
  zstd_decompress(frame, back);
  return back;
}

int error_code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const StoreError& e) {
    return e.code();
  }
  return 0;
}

TEST(Compress, CodecNames) {
  EXPECT_STREQ(codec_name(Codec::kRaw), "raw");
  EXPECT_STREQ(codec_name(Codec::kZstd), "zstd");
}

TEST(Compress, RoundTripEmpty) {
  std::vector<std::byte> raw;
  EXPECT_EQ(round_trip(raw, 3), raw);
}

TEST(Compress, RoundTripOneByte) {
  std::vector<std::byte> raw{std::byte{0x5a}};
  EXPECT_EQ(round_trip(raw, 3), raw);
}

TEST(Compress, RoundTripIncompressible) {
  std::mt19937_64 rng(test_seed());
  std::vector<std::byte> raw = random_bytes(rng, 200'000);
  EXPECT_EQ(round_trip(raw, 3), raw);
}

TEST(Compress, RoundTripCompressibleShrinks) {
  std::vector<std::byte> raw = text_bytes(1 << 20);
  std::vector<std::byte> frame;
  zstd_compress(raw, 3, frame);
  EXPECT_LT(frame.size(), raw.size() / 20);
  std::vector<std::byte> back(raw.size());
  zstd_decompress(frame, back);
  EXPECT_EQ(back, raw);
}

TEST(Compress, CompressAppendsToExistingOutput) {
  std::vector<std::byte> raw = text_bytes(5000);
  std::vector<std::byte> out = bytes_of("prefix");
  std::size_t n = zstd_compress(raw, 1, out);
  ASSERT_EQ(out.size(), 6 + n);
  EXPECT_EQ(std::memcmp(out.data(), "prefix", 6), 0);
  std::vector<std::byte> back(raw.size());
  zstd_decompress(std::span<const std::byte>(out).subspan(6), back);
  EXPECT_EQ(back, raw);
}

TEST(Compress, WorthCompressingDecisions) {
  std::mt19937_64 rng(test_seed());
  std::vector<std::byte> text = text_bytes(64 * 1024);
  EXPECT_TRUE(worth_compressing(text, text.size()));
  // Only the head is seen; the total size may be much larger.
  EXPECT_TRUE(worth_compressing(std::span(text).first(4096), 1ULL << 30));

  std::vector<std::byte> noise = random_bytes(rng, 64 * 1024);
  EXPECT_FALSE(worth_compressing(noise, noise.size()));

  std::vector<std::byte> tiny = text_bytes(kMinCompressSize - 1);
  EXPECT_FALSE(worth_compressing(tiny, tiny.size()));
  std::vector<std::byte> just_enough = text_bytes(kMinCompressSize * 4);
  EXPECT_TRUE(worth_compressing(just_enough, just_enough.size()));
}

TEST(Compress, WorthCompressingSkipsKnownMagics) {
  // Compressible bodies behind each magic: the magic alone must decide.
  const std::string_view magics[] = {
      std::string_view("\x1F\x8B", 2),           // gzip
      std::string_view("\x28\xB5\x2F\xFD", 4),   // zstd
      std::string_view("\x89PNG\r\n\x1A\n", 8),  // PNG
      std::string_view("\xFD"
                       "7zXZ\x00",
                       6),                               // xz
      std::string_view("BZh9", 4),                       // bzip2
      std::string_view("PK\x03\x04", 4),                 // zip
      std::string_view("\xFF\xD8\xFF\xE0", 4),           // JPEG
      std::string_view("GIF89a", 6),                     // GIF
      std::string_view("RIFF\x10\x00\x00\x00WEBP", 12),  // WebP
      std::string_view("\x00\x00\x00\x20"
                       "ftypisom",
                       12),
      std::string_view("OggS", 4),
      std::string_view("fLaC", 4),
      std::string_view("\x04\x22\x4D\x18", 4),  // lz4
      std::string_view("Rar!\x1A\x07", 6),
      std::string_view("7z\xBC\xAF\x27\x1C", 6),
  };
  for (std::string_view magic : magics) {
    std::vector<std::byte> data = with_prefix(magic, 32 * 1024);
    EXPECT_FALSE(worth_compressing(data, data.size()))
        << "magic " << ::testing::PrintToString(magic);
  }
  // A RIFF that is not WebP (e.g. WAV) falls through to the trial.
  std::vector<std::byte> wav = with_prefix(std::string_view("RIFF\x10\x00\x00\x00WAVE", 12), 32768);
  EXPECT_TRUE(worth_compressing(wav, wav.size()));
}

TEST(Compress, CompressIfWorthKeepsOnlyWhatPays) {
  std::mt19937_64 rng(casfs::testing::test_seed());
  for (std::size_t size : {std::size_t{200}, std::size_t{16 << 10}, std::size_t{1 << 20}}) {
    std::vector<std::byte> out(5, std::byte{7});
    auto text = text_bytes(size);
    std::size_t n = compress_if_worth(text, 3, out);
    ASSERT_GT(n, 0u) << size;
    EXPECT_EQ(out.size(), 5 + n);
    std::vector<std::byte> back(size);
    zstd_decompress(std::span<const std::byte>(out).subspan(5), back);
    EXPECT_EQ(back, text);

    std::vector<std::byte> untouched(5, std::byte{7});
    auto noise = casfs::testing::random_bytes(rng, size);
    EXPECT_EQ(compress_if_worth(noise, 3, untouched), 0u) << size;
    EXPECT_EQ(untouched, std::vector<std::byte>(5, std::byte{7}));
    EXPECT_EQ(compress_if_worth(with_prefix("\x1F\x8B", size), 3, untouched), 0u) << size;
  }
  std::vector<std::byte> out;
  EXPECT_EQ(compress_if_worth(text_bytes(kMinCompressSize - 1), 3, out), 0u);
  EXPECT_TRUE(out.empty());
}

TEST(Compress, CorruptFrameThrowsEio) {
  std::vector<std::byte> raw = text_bytes(100'000);
  std::vector<std::byte> frame;
  zstd_compress(raw, 3, frame);
  std::vector<std::byte> back(raw.size());

  std::vector<std::byte> bad_magic = frame;
  bad_magic[0] ^= std::byte{0xff};
  EXPECT_EQ(error_code_of([&] { zstd_decompress(bad_magic, back); }), EIO);

  std::vector<std::byte> truncated(frame.begin(), frame.end() - 5);
  EXPECT_EQ(error_code_of([&] { zstd_decompress(truncated, back); }), EIO);

  std::vector<std::byte> trailing = frame;
  trailing.push_back(std::byte{0});
  EXPECT_EQ(error_code_of([&] { zstd_decompress(trailing, back); }), EIO);

  EXPECT_EQ(error_code_of([&] { zstd_decompress({}, back); }), EIO);

  std::vector<std::byte> garbage = bytes_of("this is not a zstd frame at all");
  EXPECT_EQ(error_code_of([&] { zstd_decompress(garbage, back); }), EIO);
}

TEST(Compress, FlippedBitsFailOnlyWithEio) {
  // zstd frames here carry no checksum, so a flip deep in the literals may decode to
  // different bytes; the pack record's XXH3 catches that. What must never happen is a
  // crash or an out-of-bounds write: decoding is bounded by out.size().
  std::vector<std::byte> raw = text_bytes(20'000);
  std::vector<std::byte> frame;
  zstd_compress(raw, 3, frame);
  std::vector<std::byte> back(raw.size());
  int errors = 0;
  for (std::size_t i = 0; i < frame.size(); ++i) {
    std::vector<std::byte> bad = frame;
    bad[i] ^= std::byte{0x10};
    int code = error_code_of([&] { zstd_decompress(bad, back); });
    if (code != 0) {
      EXPECT_EQ(code, EIO);
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(Compress, WrongOutputSizeThrowsEio) {
  std::vector<std::byte> raw = text_bytes(10'000);
  std::vector<std::byte> frame;
  zstd_compress(raw, 3, frame);
  std::vector<std::byte> too_small(raw.size() - 1);
  EXPECT_EQ(error_code_of([&] { zstd_decompress(frame, too_small); }), EIO);
  std::vector<std::byte> too_big(raw.size() + 1);
  EXPECT_EQ(error_code_of([&] { zstd_decompress(frame, too_big); }), EIO);
  std::vector<std::byte> exact(raw.size());
  EXPECT_EQ(error_code_of([&] { zstd_decompress(frame, exact); }), 0);
}

// Feeds `data` to `feed` in pieces of random size up to `max_piece` (some empty).
template <typename Feed>
void feed_in_pieces(std::mt19937_64& rng, std::span<const std::byte> data, std::size_t max_piece,
                    Feed feed) {
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t n = std::min<std::size_t>(rng() % (max_piece + 1), data.size() - pos);
    feed(data.subspan(pos, n));
    pos += n;
  }
}

TEST(Compress, StreamingRoundTripTenMiB) {
  std::mt19937_64 rng(test_seed());
  // Half compressible, half noise, so both zstd paths are exercised.
  std::vector<std::byte> raw = text_bytes(5 << 20);
  std::vector<std::byte> noise = random_bytes(rng, 5 << 20);
  raw.insert(raw.end(), noise.begin(), noise.end());

  std::vector<std::byte> frame;
  ZstdCompressStream cs(3);
  feed_in_pieces(rng, raw, 300'000, [&](std::span<const std::byte> p) { cs.update(p, frame); });
  cs.finish(frame);
  EXPECT_LT(frame.size(), raw.size());

  // The streamed frame is an ordinary frame: the one-shot decoder accepts it too.
  std::vector<std::byte> one_shot(raw.size());
  zstd_decompress(frame, one_shot);
  EXPECT_TRUE(one_shot == raw);

  std::vector<std::byte> back;
  ZstdDecompressStream ds;
  feed_in_pieces(rng, frame, 100'000, [&](std::span<const std::byte> p) {
    EXPECT_FALSE(ds.finished());
    ds.update(p, back);
  });
  EXPECT_TRUE(ds.finished());
  ASSERT_EQ(back.size(), raw.size());
  EXPECT_TRUE(back == raw);
}

TEST(Compress, StreamingEmptyAndTinyObjects) {
  for (std::size_t size : {0, 1, 100}) {
    std::vector<std::byte> raw = text_bytes(size);
    std::vector<std::byte> frame;
    ZstdCompressStream cs(1);
    cs.update(raw, frame);
    cs.finish(frame);
    ASSERT_FALSE(frame.empty());

    std::vector<std::byte> back;
    ZstdDecompressStream ds;
    ds.update(frame, back);
    EXPECT_TRUE(ds.finished()) << size;
    EXPECT_EQ(back, raw) << size;
  }
}

TEST(Compress, StreamingTruncatedFrameIsNotFinished) {
  std::vector<std::byte> raw = text_bytes(300'000);
  std::vector<std::byte> frame;
  zstd_compress(raw, 3, frame);

  std::vector<std::byte> back;
  ZstdDecompressStream ds;
  ds.update(std::span<const std::byte>(frame).first(frame.size() - 3), back);
  EXPECT_FALSE(ds.finished());
  EXPECT_LT(back.size(), raw.size());
  // The rest completes it.
  ds.update(std::span<const std::byte>(frame).last(3), back);
  EXPECT_TRUE(ds.finished());
  EXPECT_EQ(back, raw);
}

TEST(Compress, StreamingCorruptFrameThrowsEio) {
  std::vector<std::byte> garbage = bytes_of("definitely not a zstd frame, just some text");
  std::vector<std::byte> back;
  ZstdDecompressStream ds;
  EXPECT_EQ(error_code_of([&] { ds.update(garbage, back); }), EIO);
}

TEST(Compress, StreamingTrailingBytesThrowEio) {
  std::vector<std::byte> raw = text_bytes(1000);
  std::vector<std::byte> frame;
  zstd_compress(raw, 3, frame);
  frame.push_back(std::byte{0x28});
  std::vector<std::byte> back;
  ZstdDecompressStream ds;
  EXPECT_EQ(error_code_of([&] { ds.update(frame, back); }), EIO);
}

}  // namespace
}  // namespace casfs
