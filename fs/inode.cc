#include "fs/inode.h"

#include "fs/fs_error.h"
#include "store/byte_order.h"

namespace casfs {

namespace {

void put_time(std::byte* out, const Timespec& t) {
  put_le<std::uint64_t>(out, static_cast<std::uint64_t>(t.sec));
  put_le<std::uint32_t>(out + 8, t.nsec);
}

Timespec get_time(const std::byte* in) {
  return Timespec{static_cast<std::int64_t>(get_le<std::uint64_t>(in)),
                  get_le<std::uint32_t>(in + 8)};
}

}  // namespace

// Layout: 0 version, 1..3 zero, 4 mode, 8 uid, 12 gid, 16 ino, 24 nlink, 32 size,
// 40 rdev, 48 parent, 56 next_slot, 64/76/88/100 atime/mtime/ctime/btime (sec u64,
// nsec u32), 112 generation, 120 allocated.
std::array<std::byte, Inode::kEncodedSize> Inode::encode() const {
  std::array<std::byte, kEncodedSize> v{};
  v[0] = std::byte{kVersion};
  put_le<std::uint32_t>(&v[4], mode);
  put_le<std::uint32_t>(&v[8], uid);
  put_le<std::uint32_t>(&v[12], gid);
  put_le<std::uint64_t>(&v[16], ino);
  put_le<std::uint64_t>(&v[24], nlink);
  put_le<std::uint64_t>(&v[32], size);
  put_le<std::uint64_t>(&v[40], rdev);
  put_le<std::uint64_t>(&v[48], parent);
  put_le<std::uint64_t>(&v[56], next_slot);
  put_time(&v[64], atime);
  put_time(&v[76], mtime);
  put_time(&v[88], ctime);
  put_time(&v[100], btime);
  put_le<std::uint64_t>(&v[112], generation);
  put_le<std::uint64_t>(&v[120], allocated);
  return v;
}

Inode Inode::decode(std::span<const std::byte> v) {
  if (v.size() != kEncodedSize || v[0] != std::byte{kVersion}) {
    throw FsError(EIO, "inode record has an unknown layout (size " + std::to_string(v.size()) +
                           ", version " + std::to_string(v.empty() ? 0 : int(v[0])) + ")");
  }
  Inode n;
  n.mode = get_le<std::uint32_t>(&v[4]);
  n.uid = get_le<std::uint32_t>(&v[8]);
  n.gid = get_le<std::uint32_t>(&v[12]);
  n.ino = get_le<std::uint64_t>(&v[16]);
  n.nlink = get_le<std::uint64_t>(&v[24]);
  n.size = get_le<std::uint64_t>(&v[32]);
  n.rdev = get_le<std::uint64_t>(&v[40]);
  n.parent = get_le<std::uint64_t>(&v[48]);
  n.next_slot = get_le<std::uint64_t>(&v[56]);
  n.atime = get_time(&v[64]);
  n.mtime = get_time(&v[76]);
  n.ctime = get_time(&v[88]);
  n.btime = get_time(&v[100]);
  n.generation = get_le<std::uint64_t>(&v[112]);
  n.allocated = get_le<std::uint64_t>(&v[120]);
  return n;
}

}  // namespace casfs
