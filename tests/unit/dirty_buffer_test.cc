// DirtyBuffer against a plain byte array with a "written" mask: random writes,
// writes under what is buffered, truncations and reads must agree, ranges must stay
// sorted and disjoint, and the byte count must match the mask.
#include "fs/dirty_buffer.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tests/unit/support/test_support.h"

namespace casfs {
namespace {

using testing::random_bytes;
using testing::test_seed;

struct Model {
  std::vector<std::byte> bytes;
  std::vector<bool> written;
  void write(std::uint64_t offset, const std::vector<std::byte>& data) {
    if (bytes.size() < offset + data.size()) {
      bytes.resize(offset + data.size());
      written.resize(offset + data.size());
    }
    for (std::size_t i = 0; i < data.size(); ++i) {
      bytes[offset + i] = data[i];
      written[offset + i] = true;
    }
  }
  void write_under(std::uint64_t offset, const std::vector<std::byte>& data) {
    if (bytes.size() < offset + data.size()) {
      bytes.resize(offset + data.size());
      written.resize(offset + data.size());
    }
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (written[offset + i]) continue;
      bytes[offset + i] = data[i];
      written[offset + i] = true;
    }
  }
  void truncate(std::uint64_t size) {
    if (size < bytes.size()) {
      bytes.resize(size);
      written.resize(size);
    }
  }
  std::uint64_t count() const {
    return static_cast<std::uint64_t>(std::count(written.begin(), written.end(), true));
  }
};

TEST(DirtyBufferTest, AgreesWithAByteModel) {
  std::mt19937_64 rng(test_seed());
  for (int round = 0; round < 20; ++round) {
    DirtyBuffer buffer;
    Model model;
    for (int op = 0; op < 400; ++op) {
      const int kind = static_cast<int>(rng() % 11);
      if (kind < 7) {
        // Mostly sequential appends (the common case), else anywhere, overlapping.
        std::uint64_t offset =
            (kind < 3 && !model.bytes.empty()) ? model.bytes.size() : rng() % 20000;
        auto data = random_bytes(rng, 1 + rng() % 3000);
        buffer.write(offset, data);
        model.write(offset, data);
      } else if (kind < 8) {
        std::uint64_t size = rng() % 25000;
        buffer.truncate(size);
        model.truncate(size);
      } else if (kind == 10) {
        // Older bytes going back under newer ones, as after a write-out.
        const std::uint64_t offset = rng() % 20000;
        auto data = random_bytes(rng, 1 + rng() % 6000);
        buffer.write_under(offset, data);
        model.write_under(offset, data);
      } else {
        // A read over a background of 0xEE: written bytes replace it, others keep it.
        std::uint64_t offset = rng() % 22000;
        std::vector<std::byte> out(1 + rng() % 5000, std::byte{0xEE});
        buffer.overlay(offset, out);
        for (std::size_t i = 0; i < out.size(); ++i) {
          const std::uint64_t pos = offset + i;
          const bool w = pos < model.written.size() && model.written[pos];
          ASSERT_EQ(out[i], w ? model.bytes[pos] : std::byte{0xEE}) << "at " << pos;
        }
      }
      ASSERT_EQ(buffer.bytes(), model.count());
      std::uint64_t last_end = 0;
      bool first = true;
      for (const DirtyRange& r : buffer.ranges()) {
        ASSERT_FALSE(r.data.empty());
        if (!first) {
          ASSERT_GE(r.offset, last_end);
        }
        first = false;
        last_end = r.offset + r.data.size();
        for (std::size_t i = 0; i < r.data.size(); ++i) {
          ASSERT_TRUE(model.written[r.offset + i]);
          ASSERT_EQ(r.data[i], model.bytes[r.offset + i]);
        }
      }
    }
  }
}

TEST(DirtyBufferTest, NextRangeFindsDataForSeek) {
  DirtyBuffer buffer;
  std::vector<std::byte> data(100, std::byte{1});
  buffer.write(1000, data);
  buffer.write(5000, data);
  std::uint64_t start = 0, end = 0;
  ASSERT_TRUE(buffer.next_range(0, start, end));
  EXPECT_EQ(start, 1000u);
  EXPECT_EQ(end, 1100u);
  ASSERT_TRUE(buffer.next_range(1050, start, end));
  EXPECT_EQ(start, 1000u);
  ASSERT_TRUE(buffer.next_range(1100, start, end));
  EXPECT_EQ(start, 5000u);
  EXPECT_FALSE(buffer.next_range(5100, start, end));
  EXPECT_TRUE(buffer.overlaps(900, 101));
  EXPECT_FALSE(buffer.overlaps(900, 100));
}

// A long sequential write is kept in pieces; reads, ranges and overwrites across
// the pieces' seams must not notice.
TEST(DirtyBufferTest, LongSequentialWritesKeptInPieces) {
  DirtyBuffer buffer;
  const std::size_t total = 5 << 20;
  const std::size_t step = 128 << 10;
  std::vector<std::byte> expect(total);
  for (std::size_t i = 0; i < total; ++i)
    expect[i] = static_cast<std::byte>((i * 7 + i / 4096) & 0xff);
  for (std::size_t off = 0; off < total; off += step)
    buffer.write(off, std::span(expect).subspan(off, step));
  EXPECT_EQ(buffer.bytes(), total);
  const auto ranges = buffer.ranges();
  EXPECT_GT(ranges.size(), 1u);
  std::uint64_t next = 0;
  for (const DirtyRange& r : ranges) {
    EXPECT_EQ(r.offset, next);
    next = r.offset + r.data.size();
  }
  EXPECT_EQ(next, total);

  // Overwrite across every seam, then read the whole buffer back.
  for (const DirtyRange& r : ranges) {
    if (r.offset == 0) continue;
    std::vector<std::byte> patch(1000, std::byte{0xAB});
    buffer.write(r.offset - 500, patch);
    std::fill_n(expect.begin() + static_cast<std::ptrdiff_t>(r.offset - 500), 1000,
                std::byte{0xAB});
  }
  EXPECT_EQ(buffer.bytes(), total);
  std::vector<std::byte> got(total);
  buffer.overlay(0, got);
  EXPECT_TRUE(got == expect);
}

}  // namespace
}  // namespace casfs
