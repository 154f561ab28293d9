// Pack files as read back from disk (store/pack_format.h, store/pack_file.h): the file
// header, a record header and its payload, and the scan that rebuild-index and verify
// run over a whole pack. Checksums would stop the fuzzer at the first byte it
// changes, so each input is also tried with the header's and the payload's checksums
// made right: that is what reaches the size checks and the zstd decoder.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "store/byte_order.h"
#include "store/error.h"
#include "store/hash.h"
#include "store/object_check.h"
#include "store/pack_file.h"
#include "store/pack_format.h"
#include "store/unique_fd.h"
#include "tests/fuzz/fuzz_check.h"

namespace casfs {
namespace {

// The reader streams objects past this size instead of decoding them whole
// (store/store_impl.h); the fuzzer must not ask for gigabytes either.
constexpr std::uint64_t kWholeLimit = 8 << 20;

void try_record(std::span<const std::byte> bytes) {
  auto header = RecordHeader::decode(bytes);
  if (!header) return;
  // A header that decodes is one this code could have written.
  auto again = header->encode();
  FUZZ_CHECK(std::equal(again.begin(), again.end(), bytes.begin()));
  FUZZ_CHECK(header->codec != Codec::kRaw || header->raw_size == header->stored_size);
  if (header->stored_size > bytes.size() - kRecordHeaderSize) return;
  ObjectInfo info;
  info.id = header->id;
  info.tier = Tier::kPacked;
  info.codec = header->codec;
  info.raw_size = header->raw_size;
  info.stored_size = header->stored_size;
  info.checksum = header->payload_xxh3;
  if (info.raw_size > kWholeLimit) return;
  try {
    auto payload = check_record(info, bytes.first(header->record_size()));
    FUZZ_CHECK(payload.size() == info.stored_size);
    std::vector<std::byte> scratch;
    auto raw = decode_payload(info, payload, scratch);
    FUZZ_CHECK(raw.size() == info.raw_size);
  } catch (const StoreError&) {
    // Damage is reported as an error naming the object: what the reader wants.
  }
}

// `bytes` with the record header's checksums recomputed.
std::vector<std::byte> with_checksums(std::span<const std::byte> bytes) {
  std::vector<std::byte> fixed(bytes.begin(), bytes.end());
  const std::uint64_t stored = get_le<std::uint64_t>(fixed.data() + 48);
  if (stored <= fixed.size() - kRecordHeaderSize) {
    put_le<std::uint64_t>(fixed.data() + 56, Xxh3::of(std::span<const std::byte>(fixed).subspan(
                                                 kRecordHeaderSize, stored)));
  }
  put_le<std::uint64_t>(fixed.data() + 64, Xxh3::of(std::span<const std::byte>(fixed).first(64)));
  return fixed;
}

void try_scan(std::span<const std::byte> bytes) {
  UniqueFd fd(::memfd_create("casfs-fuzz-pack", MFD_CLOEXEC));
  FUZZ_CHECK(fd);
  FUZZ_CHECK(::write(fd.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  std::uint64_t last_end = 0;
  PackScanResult result;
  try {
    result = scan_pack(fd.get(), [&](std::uint64_t offset, const RecordHeader& h) {
      // Records come in order, do not overlap and lie inside the file.
      FUZZ_CHECK(offset >= last_end && offset <= bytes.size());
      FUZZ_CHECK(h.record_size() <= bytes.size() - offset);
      last_end = offset + h.record_size();
    });
  } catch (const StoreError&) {
    return;
  }
  FUZZ_CHECK(result.file_size == bytes.size());
  FUZZ_CHECK(result.valid_end <= result.file_size);
}

}  // namespace
}  // namespace casfs

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace casfs;
  const auto bytes = fuzz::as_bytes(data, size);
  if (auto header = PackFileHeader::decode(bytes)) {
    auto again = header->encode();
    FUZZ_CHECK(std::equal(again.begin(), again.end(), bytes.begin()));
  }
  try_record(bytes);
  if (bytes.size() >= kRecordHeaderSize) try_record(with_checksums(bytes));
  // A whole pack: the input as it is, and after a valid file header.
  try_scan(bytes);
  if (bytes.size() >= kRecordHeaderSize) {
    std::vector<std::byte> pack(kPackHeaderSize);
    auto header = PackFileHeader{}.encode();
    std::copy(header.begin(), header.end(), pack.begin());
    auto record = with_checksums(bytes);
    pack.insert(pack.end(), record.begin(), record.end());
    try_scan(pack);
  }
  return 0;
}
