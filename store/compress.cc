#include "store/compress.h"

#include <zstd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "store/error.h"

namespace casfs {

namespace {

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using CCtxPtr = std::unique_ptr<ZSTD_CCtx, CCtxDeleter>;
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, DCtxDeleter>;

CCtxPtr new_cctx() {
  CCtxPtr c(ZSTD_createCCtx());
  if (!c) throw StoreError(ENOMEM, "cannot allocate a zstd compression context");
  return c;
}

DCtxPtr new_dctx() {
  DCtxPtr d(ZSTD_createDCtx());
  if (!d) throw StoreError(ENOMEM, "cannot allocate a zstd decompression context");
  return d;
}

// Contexts are expensive to create (hundreds of KiB of tables), so each thread keeps
// one for the one-shot calls instead of allocating per object.
ZSTD_CCtx* thread_cctx() {
  thread_local CCtxPtr cctx = new_cctx();
  return cctx.get();
}

ZSTD_DCtx* thread_dctx() {
  thread_local DCtxPtr dctx = new_dctx();
  return dctx.get();
}

std::string zstd_error(const char* what, std::size_t code) {
  return std::string(what) + ": " + ZSTD_getErrorName(code);
}

constexpr std::size_t kTrialSampleSize = std::size_t{16} * 1024;

struct Magic {
  std::size_t offset;
  std::string_view bytes;
};

using namespace std::string_view_literals;

// Formats that are already compressed: a second pass costs CPU and gains nothing.
// Brotli has no magic, so it is left to the trial compression.
constexpr std::array kCompressedMagics{
    Magic{0, "\x28\xB5\x2F\xFD"sv},          // zstd
    Magic{0, "\x1F\x8B"sv},                  // gzip
    Magic{0, "\xFD\x37\x7A\x58\x5A\x00"sv},  // xz
    Magic{0, "BZh"sv},                       // bzip2
    Magic{0, "PK\x03\x04"sv},                // zip, jar, docx, ...
    Magic{0, "\x37\x7A\xBC\xAF\x27\x1C"sv},  // 7z
    Magic{0, "\x89\x50\x4E\x47"sv},          // PNG
    Magic{0, "\xFF\xD8\xFF"sv},              // JPEG
    Magic{0, "GIF8"sv},                      // GIF
    Magic{4, "ftyp"sv},                      // MP4, MOV, HEIC, ...
    Magic{0, "OggS"sv},                      // Ogg
    Magic{0, "fLaC"sv},                      // FLAC
    Magic{0, "\x04\x22\x4D\x18"sv},          // lz4 frame
    Magic{0, "Rar!"sv},                      // RAR
};

bool has_at(std::span<const std::byte> head, std::size_t offset, std::string_view magic) {
  if (head.size() < offset + magic.size()) return false;
  return std::memcmp(head.data() + offset, magic.data(), magic.size()) == 0;
}

bool has_compressed_magic(std::span<const std::byte> head) {
  for (const Magic& m : kCompressedMagics) {
    if (has_at(head, m.offset, m.bytes)) return true;
  }
  // WebP is a RIFF container; other RIFF files (WAV, AVI) are often uncompressed.
  return has_at(head, 0, "RIFF"sv) && has_at(head, 8, "WEBP"sv);
}

}  // namespace

const char* codec_name(Codec codec) {
  switch (codec) {
    case Codec::kRaw:
      return "raw";
    case Codec::kZstd:
      return "zstd";
  }
  return "unknown";
}

bool worth_compressing(std::span<const std::byte> head, std::uint64_t total_size) {
  if (total_size < kMinCompressSize) return false;
  if (has_compressed_magic(head)) return false;
  std::span<const std::byte> sample = head.first(std::min(head.size(), kTrialSampleSize));
  if (sample.empty()) return false;

  thread_local std::vector<std::byte> scratch;
  scratch.resize(ZSTD_compressBound(kTrialSampleSize));
  std::size_t n = ZSTD_compressCCtx(thread_cctx(), scratch.data(), scratch.size(), sample.data(),
                                    sample.size(), 1);
  if (ZSTD_isError(n)) return false;
  // Below ~10% savings the CPU spent on every later read is not paid back.
  return n * 10 < sample.size() * 9;
}

std::size_t compress_if_worth(std::span<const std::byte> in, int level,
                              std::vector<std::byte>& out) {
  if (in.size() < kMinCompressSize) return 0;
  if (in.size() > kDirectTrialLimit && !worth_compressing(in.first(64 << 10), in.size())) return 0;
  if (in.size() <= kDirectTrialLimit && has_compressed_magic(in)) return 0;
  const std::size_t old = out.size();
  std::size_t n = zstd_compress(in, level, out);
  if (n * 10 < in.size() * 9) return n;
  out.resize(old);
  return 0;
}

std::size_t zstd_compress(std::span<const std::byte> in, int level, std::vector<std::byte>& out) {
  const std::size_t old = out.size();
  out.resize(old + ZSTD_compressBound(in.size()));
  // The simple API records the content size in the frame header, which lets a reader
  // reject a frame of the wrong size before decoding it.
  std::size_t n = ZSTD_compressCCtx(thread_cctx(), out.data() + old, out.size() - old, in.data(),
                                    in.size(), level);
  if (ZSTD_isError(n)) {
    out.resize(old);
    throw StoreError(EIO, zstd_error("zstd compression failed", n));
  }
  out.resize(old + n);
  return n;
}

void zstd_decompress(std::span<const std::byte> in, std::span<std::byte> out) {
  // Exactly one frame, no trailing bytes: a payload is one object.
  std::size_t frame = ZSTD_findFrameCompressedSize(in.data(), in.size());
  if (ZSTD_isError(frame)) throw StoreError(EIO, zstd_error("corrupt zstd frame", frame));
  if (frame != in.size()) {
    throw StoreError(EIO, "zstd payload has " + std::to_string(in.size() - frame) +
                              " bytes after the end of its frame");
  }
  unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) throw StoreError(EIO, "corrupt zstd frame header");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != out.size()) {
    throw StoreError(EIO, "zstd frame holds " + std::to_string(declared) + " bytes, expected " +
                              std::to_string(out.size()));
  }
  std::size_t n = ZSTD_decompressDCtx(thread_dctx(), out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) throw StoreError(EIO, zstd_error("zstd decompression failed", n));
  if (n != out.size()) {
    throw StoreError(EIO, "zstd frame decoded to " + std::to_string(n) + " bytes, expected " +
                              std::to_string(out.size()));
  }
}

struct ZstdCompressStream::Impl {
  CCtxPtr cctx = new_cctx();
};

ZstdCompressStream::ZstdCompressStream(int level) : impl_(std::make_unique<Impl>()) {
  std::size_t r = ZSTD_CCtx_setParameter(impl_->cctx.get(), ZSTD_c_compressionLevel, level);
  if (ZSTD_isError(r)) throw StoreError(EINVAL, zstd_error("zstd compression level", r));
}

ZstdCompressStream::~ZstdCompressStream() = default;

namespace {

// Runs one ZSTD_compressStream2 directive until it has consumed all input (and, for
// ZSTD_e_end, flushed the whole frame), appending output to `out`.
void compress_stream(ZSTD_CCtx* cctx, std::span<const std::byte> in, ZSTD_EndDirective mode,
                     std::vector<std::byte>& out) {
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  const std::size_t chunk = ZSTD_CStreamOutSize();
  for (;;) {
    const std::size_t old = out.size();
    out.resize(old + chunk);
    ZSTD_outBuffer output{out.data() + old, chunk, 0};
    std::size_t remaining = ZSTD_compressStream2(cctx, &output, &input, mode);
    out.resize(old + output.pos);
    if (ZSTD_isError(remaining)) {
      throw StoreError(EIO, zstd_error("zstd stream compression failed", remaining));
    }
    const bool done = mode == ZSTD_e_end ? remaining == 0 : input.pos == input.size;
    if (done) return;
  }
}

}  // namespace

void ZstdCompressStream::update(std::span<const std::byte> in, std::vector<std::byte>& out) {
  if (in.empty()) return;
  compress_stream(impl_->cctx.get(), in, ZSTD_e_continue, out);
}

void ZstdCompressStream::finish(std::vector<std::byte>& out) {
  compress_stream(impl_->cctx.get(), {}, ZSTD_e_end, out);
}

struct ZstdDecompressStream::Impl {
  DCtxPtr dctx = new_dctx();
  bool finished = false;
  std::vector<std::byte> out;
};

ZstdDecompressStream::ZstdDecompressStream() : impl_(std::make_unique<Impl>()) {}

ZstdDecompressStream::~ZstdDecompressStream() = default;

void ZstdDecompressStream::update(std::span<const std::byte> in, std::vector<std::byte>& out) {
  update(in, [&out](std::span<const std::byte> piece) {
    out.insert(out.end(), piece.begin(), piece.end());
  });
}

void ZstdDecompressStream::update(std::span<const std::byte> in,
                                  const std::function<void(std::span<const std::byte>)>& sink) {
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  // Output goes out one buffer at a time: a little input can decode to gigabytes
  // (a run of zeros), which must never be held in memory at once.
  std::vector<std::byte>& buf = impl_->out;
  buf.resize(ZSTD_DStreamOutSize());
  for (;;) {
    if (impl_->finished) {
      // A payload is exactly one frame; anything after it is damage, not a second object.
      if (input.pos < input.size) {
        throw StoreError(EIO, "zstd stream has " + std::to_string(input.size - input.pos) +
                                  " bytes after the end of its frame");
      }
      return;
    }
    ZSTD_outBuffer output{buf.data(), buf.size(), 0};
    std::size_t r = ZSTD_decompressStream(impl_->dctx.get(), &output, &input);
    if (ZSTD_isError(r)) throw StoreError(EIO, zstd_error("corrupt zstd stream", r));
    if (output.pos > 0) sink(std::span<const std::byte>(buf.data(), output.pos));
    if (r == 0) {
      impl_->finished = true;
      continue;
    }
    // A full output buffer may mean more decoded bytes are waiting inside the context.
    if (input.pos == input.size && output.pos < output.size) return;
  }
}

bool ZstdDecompressStream::finished() const {
  return impl_->finished;
}

}  // namespace casfs
