#include "store/store_lock.h"

#include <fcntl.h>
#include <sys/file.h>

#include <string>

#include "store/error.h"

namespace casfs {

StoreLock::StoreLock(const std::filesystem::path& store_dir) {
  auto path = store_dir / "run" / "lock";
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  fd_ = UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd_) throw_errno("cannot open the store lock " + path.string());
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) throw_errno("cannot lock " + path.string());
    char buf[32] = {};
    ssize_t n = ::pread(fd_.get(), buf, sizeof(buf) - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
    std::string holder = pid.empty() ? "" : " (pid " + pid + ")";
    throw StoreError(EBUSY, "store " + store_dir.string() + " is in use by another casfs process" +
                                holder + "; unmount it or wait for that process to finish");
  }
  std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd_.get(), 0) == 0) {
    // Only for the message another process prints; failing to write it is harmless.
    [[maybe_unused]] auto ignored = ::pwrite(fd_.get(), pid.data(), pid.size(), 0);
  }
}

}  // namespace casfs
