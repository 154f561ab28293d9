#include "store/hash.h"

#include <openssl/evp.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

#include "store/error.h"

namespace casfs {

namespace {
constexpr char kHexDigits[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string ObjectId::hex() const {
  std::string out(64, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kHexDigits[bytes[i] >> 4];
    out[2 * i + 1] = kHexDigits[bytes[i] & 0xf];
  }
  return out;
}

std::optional<ObjectId> ObjectId::from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  ObjectId id;
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return id;
}

ObjectId ObjectId::from_bytes(std::span<const std::byte> raw32) {
  ObjectId id;
  std::memcpy(id.bytes.data(), raw32.data(), id.bytes.size());
  return id;
}

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
  ~Ctx() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  if (ctx_->md == nullptr || EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) != 1)
    throw StoreError(ENOMEM, "cannot initialise SHA-256 (OpenSSL)");
}

Sha256::~Sha256() = default;

void Sha256::update(std::span<const std::byte> data) {
  if (!data.empty()) EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

ObjectId Sha256::finish() {
  ObjectId id;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, id.bytes.data(), &len);
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
  return id;
}

ObjectId Sha256::of(std::span<const std::byte> data) {
  ObjectId id;
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), id.bytes.data(), &len, EVP_sha256(), nullptr);
  return id;
}

struct Xxh3::State {
  XXH3_state_t s;
};

Xxh3::Xxh3() : state_(std::make_unique<State>()) {
  reset();
}
Xxh3::~Xxh3() = default;

void Xxh3::reset() {
  XXH3_64bits_reset(&state_->s);
}

void Xxh3::update(std::span<const std::byte> data) {
  XXH3_64bits_update(&state_->s, data.data(), data.size());
}

std::uint64_t Xxh3::digest() const {
  return XXH3_64bits_digest(&state_->s);
}

std::uint64_t Xxh3::of(std::span<const std::byte> data) {
  return XXH3_64bits(data.data(), data.size());
}

}  // namespace casfs
