// Values of the LMDB tables as read back from meta/: the store's objects and packs
// tables (store/index.h) and the filesystem's inodes, extents and POSIX ACL xattrs.
// The first byte picks the decoder, so one corpus covers them all; a value must
// either decode to something that encodes back to the same bytes, or be refused with
// the layer's own error (StoreError, FsError), never anything else.
#include <algorithm>
#include <cstring>

#include "fs/file_data.h"
#include "fs/fs_error.h"
#include "fs/inode.h"
#include "fs/posix_acl.h"
#include "store/error.h"
#include "store/index.h"
#include "tests/fuzz/fuzz_check.h"

namespace casfs {
namespace {

enum Table : std::uint8_t { kObjects, kPacks, kInodes, kExtents, kAcl, kTables };

// Keys come first, at their fixed sizes, the value is the rest.
void decode_one(Table table, std::span<const std::byte> in) {
  switch (table) {
    case kObjects: {
      if (in.size() < 32) return;
      ObjectInfo info = decode_object_value(in.first(32), in.subspan(32));
      FUZZ_CHECK(info.tier == Tier::kLoose || info.tier == Tier::kPacked);
      FUZZ_CHECK(info.codec == Codec::kRaw || info.codec == Codec::kZstd);
      FUZZ_CHECK(std::memcmp(info.id.bytes.data(), in.data(), 32) == 0);
      return;
    }
    case kPacks: {
      if (in.size() < 4) return;
      decode_pack_value(in.first(4), in.subspan(4));
      return;
    }
    case kInodes: {
      Inode inode = Inode::decode(in);
      auto again = inode.encode();
      // Bytes 1..3 are padding the decoder ignores.
      FUZZ_CHECK(again.size() == in.size() && again[0] == in[0] &&
                 std::equal(again.begin() + 4, again.end(), in.begin() + 4));
      return;
    }
    case kExtents: {
      if (in.size() < 16) return;
      auto extent = decode_extent_record(1, in.first(16), in.subspan(16));
      if (extent) FUZZ_CHECK(std::memcmp(extent->id.bytes.data(), in.data() + 16, 32) == 0);
      return;
    }
    case kAcl: {
      PosixAcl acl = PosixAcl::decode(in);
      auto again = acl.encode();
      FUZZ_CHECK(std::equal(again.begin(), again.end(), in.begin(), in.end()));
      (void)acl.equivalent_to_mode();
      (void)acl.mode_bits();
      return;
    }
    case kTables:
      return;
  }
}

}  // namespace
}  // namespace casfs

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace casfs;
  if (size == 0) return 0;
  const auto table = static_cast<Table>(data[0] % kTables);
  try {
    decode_one(table, fuzz::as_bytes(data + 1, size - 1));
  } catch (const StoreError&) {
  } catch (const FsError&) {
  }
  return 0;
}
