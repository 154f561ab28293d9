// POSIX ACLs in the form the kernel hands them over as the system.posix_acl_access
// and system.posix_acl_default extended attributes. The kernel enforces them;
// the filesystem keeps them in step with the file mode (chmod, setfacl) and hands
// a directory's default ACL down to what is created in it, as ext4 does.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace casfs {

inline constexpr std::string_view kAclAccess = "system.posix_acl_access";
inline constexpr std::string_view kAclDefault = "system.posix_acl_default";

class PosixAcl {
 public:
  // Throws FsError(EINVAL) for bytes that are not a valid ACL.
  static PosixAcl decode(std::span<const std::byte> bytes);
  std::vector<std::byte> encode() const;

  // Whether the ACL says no more than a file mode can (owner, group, other only).
  bool equivalent_to_mode() const;
  // The permission bits (0777) the ACL gives owner, group class and others.
  std::uint32_t mode_bits() const;
  // chmod: the owner, group class (the mask if there is one) and other entries
  // take the new permission bits.
  void set_mode_bits(std::uint32_t mode);
  // For a new inode inheriting this (default) ACL as its access ACL: each class's
  // permissions are limited by the requested mode, and the mode by the ACL; returns
  // the resulting mode bits (posix_acl_create_masq).
  std::uint32_t mask_for_create(std::uint32_t mode);

 private:
  struct Entry {
    std::uint16_t tag = 0;
    std::uint16_t perm = 0;
    std::uint32_t id = 0;
  };
  Entry* find(std::uint16_t tag);
  std::vector<Entry> entries_;
};

}  // namespace casfs
