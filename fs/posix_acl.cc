#include "fs/posix_acl.h"

#include "fs/fs_error.h"
#include "store/byte_order.h"

namespace casfs {

namespace {
// The kernel's xattr representation (include/uapi/linux/posix_acl_xattr.h).
constexpr std::uint32_t kVersion = 2;
constexpr std::uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08,
                        kMask = 0x10, kOther = 0x20;
constexpr std::size_t kHeaderSize = 4, kEntrySize = 8;
}  // namespace

PosixAcl PosixAcl::decode(std::span<const std::byte> bytes) {
  if (bytes.size() < kHeaderSize || (bytes.size() - kHeaderSize) % kEntrySize != 0 ||
      get_le<std::uint32_t>(bytes.data()) != kVersion)
    throw FsError(EINVAL, "not a POSIX ACL");
  PosixAcl acl;
  for (std::size_t at = kHeaderSize; at < bytes.size(); at += kEntrySize) {
    Entry e{get_le<std::uint16_t>(bytes.data() + at), get_le<std::uint16_t>(bytes.data() + at + 2),
            get_le<std::uint32_t>(bytes.data() + at + 4)};
    if (e.perm & ~7u) throw FsError(EINVAL, "POSIX ACL entry with bad permissions");
    switch (e.tag) {
      case kUserObj:
      case kUser:
      case kGroupObj:
      case kGroup:
      case kMask:
      case kOther:
        break;
      default:
        throw FsError(EINVAL, "POSIX ACL entry with an unknown tag");
    }
    acl.entries_.push_back(e);
  }
  if (!acl.find(kUserObj) || !acl.find(kGroupObj) || !acl.find(kOther))
    throw FsError(EINVAL, "POSIX ACL without owner, group or other entries");
  return acl;
}

std::vector<std::byte> PosixAcl::encode() const {
  std::vector<std::byte> out(kHeaderSize + entries_.size() * kEntrySize);
  put_le<std::uint32_t>(out.data(), kVersion);
  std::size_t at = kHeaderSize;
  for (const Entry& e : entries_) {
    put_le<std::uint16_t>(out.data() + at, e.tag);
    put_le<std::uint16_t>(out.data() + at + 2, e.perm);
    put_le<std::uint32_t>(out.data() + at + 4, e.id);
    at += kEntrySize;
  }
  return out;
}

PosixAcl::Entry* PosixAcl::find(std::uint16_t tag) {
  for (Entry& e : entries_)
    if (e.tag == tag) return &e;
  return nullptr;
}

bool PosixAcl::equivalent_to_mode() const {
  for (const Entry& e : entries_)
    if (e.tag == kUser || e.tag == kGroup || e.tag == kMask) return false;
  return true;
}

std::uint32_t PosixAcl::mode_bits() const {
  std::uint32_t mode = 0;
  bool has_mask = false;
  for (const Entry& e : entries_) has_mask |= e.tag == kMask;
  for (const Entry& e : entries_) {
    if (e.tag == kUserObj) mode |= std::uint32_t{e.perm} << 6;
    if (e.tag == (has_mask ? kMask : kGroupObj)) mode |= std::uint32_t{e.perm} << 3;
    if (e.tag == kOther) mode |= e.perm;
  }
  return mode;
}

void PosixAcl::set_mode_bits(std::uint32_t mode) {
  Entry* group_class = find(kMask);
  if (!group_class) group_class = find(kGroupObj);
  find(kUserObj)->perm = (mode >> 6) & 7;
  group_class->perm = (mode >> 3) & 7;
  find(kOther)->perm = mode & 7;
}

std::uint32_t PosixAcl::mask_for_create(std::uint32_t mode) {
  Entry* owner = find(kUserObj);
  owner->perm &= (mode >> 6) & 7;
  Entry* other = find(kOther);
  other->perm &= mode & 7;
  Entry* group_class = find(kMask);
  if (!group_class) group_class = find(kGroupObj);
  group_class->perm &= (mode >> 3) & 7;
  return (mode & ~0777u) | (std::uint32_t{owner->perm} << 6) |
         (std::uint32_t{group_class->perm} << 3) | other->perm;
}

}  // namespace casfs
