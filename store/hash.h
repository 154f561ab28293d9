// Object identity (SHA-256 of the raw bytes) and the fast payload checksum (XXH3-64).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace casfs {

struct ObjectId {
  std::array<std::uint8_t, 32> bytes{};

  std::string hex() const;
  // Parses 64 lowercase or uppercase hex digits; nullopt for anything else.
  static std::optional<ObjectId> from_hex(std::string_view hex);
  static ObjectId from_bytes(std::span<const std::byte> raw32);

  auto operator<=>(const ObjectId&) const = default;
};

struct ObjectIdHash {
  std::size_t operator()(const ObjectId& id) const {
    std::size_t h;
    static_assert(sizeof(h) <= sizeof(id.bytes));
    __builtin_memcpy(&h, id.bytes.data(), sizeof(h));
    return h;  // already uniformly distributed
  }
};

// Streaming SHA-256 over OpenSSL EVP, which picks SHA-NI where the CPU has it.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const std::byte> data);
  ObjectId finish();  // resets the state, so the hasher can be reused

  static ObjectId of(std::span<const std::byte> data);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Streaming XXH3-64 (seed 0).
class Xxh3 {
 public:
  Xxh3();
  ~Xxh3();
  Xxh3(const Xxh3&) = delete;
  Xxh3& operator=(const Xxh3&) = delete;

  void update(std::span<const std::byte> data);
  std::uint64_t digest() const;
  void reset();

  static std::uint64_t of(std::span<const std::byte> data);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace casfs
