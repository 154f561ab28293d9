// zstd compression of object payloads, and the cheap per-object decision whether
// compressing is worth it at all (as disk-objectstore does): tiny objects, data that
// starts with a known compressed format's magic, and data whose sample barely
// shrinks under a fast trial compression are stored raw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

namespace casfs {

enum class Codec : std::uint8_t { kRaw = 0, kZstd = 1 };

const char* codec_name(Codec codec);

// Objects smaller than this are never compressed: the frame overhead eats the gain.
inline constexpr std::size_t kMinCompressSize = 64;

// Decides from the first bytes of an object (up to 64 KiB are looked at) and its
// total size whether zstd is worth trying. Fast: one trial compression of at most a
// 16 KiB sample at level 1, kept only if it saves at least ~10%.
bool worth_compressing(std::span<const std::byte> head, std::uint64_t total_size);

// Compresses a whole object into `out` (appended) when that pays, i.e. saves at
// least ~10%, and returns the compressed size; returns 0 and leaves `out` as it was
// when the object is better stored raw. Objects up to kDirectTrialLimit are
// compressed outright, the compression being its own trial (a separate trial would
// cost as much again); larger ones are first sampled with worth_compressing.
inline constexpr std::size_t kDirectTrialLimit = 64 << 10;
std::size_t compress_if_worth(std::span<const std::byte> in, int level,
                              std::vector<std::byte>& out);

// One-shot compression of a whole (small or medium) object. Appends to `out` and
// returns the compressed size. Reuses a per-thread context.
std::size_t zstd_compress(std::span<const std::byte> in, int level, std::vector<std::byte>& out);

// One-shot decompression into `out`, which must be exactly the raw size. Throws
// StoreError(EIO) if the frame is corrupt or does not decode to exactly out.size().
void zstd_decompress(std::span<const std::byte> in, std::span<std::byte> out);

// Streaming compression for objects too large to hold in memory.
class ZstdCompressStream {
 public:
  explicit ZstdCompressStream(int level);
  ~ZstdCompressStream();
  ZstdCompressStream(const ZstdCompressStream&) = delete;
  ZstdCompressStream& operator=(const ZstdCompressStream&) = delete;

  // Feeds input; appends whatever compressed output is ready to `out`.
  void update(std::span<const std::byte> in, std::vector<std::byte>& out);
  // Ends the frame; appends the rest to `out`.
  void finish(std::vector<std::byte>& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming decompression: feed compressed pieces, receive raw pieces.
class ZstdDecompressStream {
 public:
  ZstdDecompressStream();
  ~ZstdDecompressStream();
  ZstdDecompressStream(const ZstdDecompressStream&) = delete;
  ZstdDecompressStream& operator=(const ZstdDecompressStream&) = delete;

  // Appends the raw bytes decoded from `in` to `out`. Throws StoreError(EIO) on a
  // corrupt frame.
  void update(std::span<const std::byte> in, std::vector<std::byte>& out);
  // The same, handing the raw bytes to `sink` one bounded buffer at a time.
  void update(std::span<const std::byte> in,
              const std::function<void(std::span<const std::byte>)>& sink);
  // True once a whole frame has been decoded; a caller at the end of its input
  // with no finished frame has a truncated payload.
  bool finished() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace casfs
