// One interface for batched file I/O, two engines behind it:
//  - io_uring: persistent rings (one per calling thread, reused), whole batches
//    submitted at once, open→read→close linked for whole-file reads;
//  - sync: pread/pwrite on a small thread pool, used when io_uring cannot start or
//    CASFS_IO=sync is set.
// Every method is safe to call from many threads at once. Errors are reported per
// operation in `result` (negative errno), never thrown; a throw means the engine
// itself is broken.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>

namespace casfs {

// pread of buf.size() bytes at offset. result: bytes read (short only at end of
// file; the engine retries short reads that are not at EOF) or -errno.
struct ReadOp {
  int fd = -1;
  std::uint64_t offset = 0;
  std::span<std::byte> buf;
  std::int64_t result = 0;
};

// pwrite of all of data at offset. result: data.size() or -errno.
struct WriteOp {
  int fd = -1;
  std::uint64_t offset = 0;
  std::span<const std::byte> data;
  std::int64_t result = 0;
};

// openat(dir_fd, path, O_RDONLY) → read up to buf.size() bytes from offset → close.
// result: bytes read or -errno (-ENOENT when the file is missing).
struct ReadFileOp {
  int dir_fd = AT_FDCWD_VALUE;
  const char* path = nullptr;
  std::uint64_t offset = 0;
  std::span<std::byte> buf;
  std::int64_t result = 0;
  static constexpr int AT_FDCWD_VALUE = -100;  // == AT_FDCWD
};

// Creates a new file and fills it: openat(dir_fd, path, O_WRONLY|O_CREAT|O_EXCL,
// 0444) → write all of data → fdatasync if `sync` → close → if rename_path is set,
// renameat(dir_fd, path, rename_dir_fd, rename_path). result: data.size() or -errno
// of the first step that failed; the partly written file is then unlinked unless
// unlink_on_failure is false (for a caller that must not remove a path another
// writer may have replaced meanwhile).
struct WriteFileOp {
  int dir_fd = ReadFileOp::AT_FDCWD_VALUE;
  const char* path = nullptr;
  std::span<const std::byte> data;
  bool sync = false;
  int rename_dir_fd = ReadFileOp::AT_FDCWD_VALUE;
  const char* rename_path = nullptr;  // nullptr: leave the file at path
  bool unlink_on_failure = true;
  std::int64_t result = 0;
};

// unlinkat(dir_fd, path, 0). result: 0 or -errno. Unlinks are worth batching:
// where the filesystem discards freed blocks synchronously (ext4 mounted with
// -o discard), each one waits for the device, and many in flight hide that wait.
struct RemoveFileOp {
  int dir_fd = ReadFileOp::AT_FDCWD_VALUE;
  const char* path = nullptr;
  int result = 0;
};

// Polling for reads. A thread whose caller waits for its reads, and whose CPU has
// nothing else to do meanwhile, may let the io_uring engine poll for their
// completions for up to `budget` before it sleeps. A sleeping thread needs a wake-up
// when the device answers, and on a virtual machine whose disk interrupts another
// CPU that is an interrupt to a halted CPU and a switch back: 25-30 µs, as long as
// the rest of a cold 4 KiB read from a FUSE mount (fio at depth 1 on this project's
// test machine: 73-82 µs per read polling, 90-113 µs sleeping). Polling spends the
// CPU it spins on, so it is for a caller that knows the CPU is otherwise idle; with
// sixteen reads in flight, workers polling beside each other lost a third of the
// reads per second. Scoped to the thread that creates it; the sync engine ignores it.
class ReadPolling {
 public:
  explicit ReadPolling(std::chrono::microseconds budget) noexcept;
  ~ReadPolling();
  ReadPolling(const ReadPolling&) = delete;
  ReadPolling& operator=(const ReadPolling&) = delete;
  // This thread's budget: zero outside any ReadPolling.
  static std::chrono::microseconds budget() noexcept;

 private:
  std::chrono::microseconds previous_;
};

enum class IoEngineKind { kUring, kSync };

class IoEngine {
 public:
  virtual ~IoEngine() = default;

  virtual IoEngineKind kind() const = 0;
  virtual const char* name() const = 0;  // "io_uring" or "sync"
  // How many operations the engine keeps in flight at once.
  virtual unsigned queue_depth() const = 0;

  // Each call returns when every op in the batch has completed.
  virtual void read(std::span<ReadOp> ops) = 0;
  virtual void write(std::span<WriteOp> ops) = 0;
  virtual void read_files(std::span<ReadFileOp> ops) = 0;
  virtual void write_files(std::span<WriteFileOp> ops) = 0;
  virtual void remove_files(std::span<RemoveFileOp> ops) = 0;
  // fdatasync (data_only) or fsync of each fd; results[i] is 0 or -errno.
  virtual void sync(std::span<const int> fds, bool data_only, std::span<int> results) = 0;
};

// The engine for a store whose data lives under data_dir: io_uring unless the
// environment says CASFS_IO=sync or io_uring cannot start (then sync, silently
// except for one line at debug level). CASFS_IO=uring makes a failure to start
// io_uring an error instead of a fallback.
std::unique_ptr<IoEngine> make_io_engine(const std::filesystem::path& data_dir);

// The two engines directly (tests and benchmarks run both). make_uring_engine
// throws StoreError when io_uring is unavailable.
std::unique_ptr<IoEngine> make_uring_engine(unsigned queue_depth);
std::unique_ptr<IoEngine> make_sync_engine(unsigned threads);

// Queue depth for the device that holds `path`: nr_requests/2 of its disk
// (a partition resolved to its whole disk via /sys/dev/block/MAJ:MIN), clamped to
// [8, 128]; 64 when it cannot be determined.
unsigned queue_depth_for(const std::filesystem::path& path);

}  // namespace casfs
