// Checks applied to every object read, loose or packed: sizes against the index,
// XXH3 of the stored bytes, and the record header of packed objects. A mismatch is
// StoreError(EIO) naming the object; callers never hand out unchecked bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "store/error.h"
#include "store/store.h"

namespace casfs {

StoreError corrupt_object(const ObjectId& id, const std::string& what);

// Checks a packed record (header + payload, as read from the pack) against its
// index entry and returns the payload.
std::span<const std::byte> check_record(const ObjectInfo& info, std::span<const std::byte> record);

// Turns a checked payload into raw bytes; `scratch` holds them when decompressed.
std::span<const std::byte> decode_payload(const ObjectInfo& info,
                                          std::span<const std::byte> payload,
                                          std::vector<std::byte>& scratch);

// XXH3-64 of `size` bytes of `fd` at `offset`, read in bounded pieces; nullopt when
// the file ends first.
std::optional<std::uint64_t> xxh3_of_range(int fd, std::uint64_t offset, std::uint64_t size);

// Checks a loose file's bytes. `got` is what the read returned (bytes or -errno);
// callers read one byte more than raw_size so that a longer file is caught.
void check_loose(const ObjectInfo& info, std::span<const std::byte> data, std::int64_t got);

}  // namespace casfs
