// Little-endian encoding of fixed-width integers for on-disk structures, written
// byte by byte so the format does not depend on the host.
#pragma once

#include <cstddef>
#include <cstdint>

namespace casfs {

template <typename T>
inline void put_le(std::byte* out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<std::byte>(value >> (8 * i));
}

template <typename T>
inline T get_le(const std::byte* in) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(in[i]) << (8 * i);
  return value;
}

// Big-endian, for LMDB keys that must sort numerically.
inline void put_be32(std::byte* out, std::uint32_t value) {
  for (std::size_t i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(value >> (8 * (3 - i)));
}

inline std::uint32_t get_be32(const std::byte* in) {
  std::uint32_t value = 0;
  for (std::size_t i = 0; i < 4; ++i) value = value << 8 | static_cast<std::uint32_t>(in[i]);
  return value;
}

inline void put_be64(std::byte* out, std::uint64_t value) {
  put_be32(out, static_cast<std::uint32_t>(value >> 32));
  put_be32(out + 4, static_cast<std::uint32_t>(value));
}

inline std::uint64_t get_be64(const std::byte* in) {
  return std::uint64_t{get_be32(in)} << 32 | get_be32(in + 4);
}

}  // namespace casfs
