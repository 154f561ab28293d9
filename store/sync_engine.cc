// The fallback engine: plain blocking syscalls, spread over a small persistent thread
// pool so that a batch still has several operations in flight at once.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "store/file_io.h"
#include "store/io_engine.h"
#include "store/thread_placement.h"
#include "store/unique_fd.h"

namespace casfs {
namespace {

int open_retry(int dir_fd, const char* path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::openat(dir_fd, path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

void do_read(ReadOp& op) {
  op.result = pread_retrying(op.fd, op.buf, op.offset);
}

void do_write(WriteOp& op) {
  op.result = pwrite_retrying(op.fd, op.data, op.offset);
}

void do_read_file(ReadFileOp& op) {
  if (op.path == nullptr) {
    op.result = -EFAULT;
    return;
  }
  UniqueFd fd(open_retry(op.dir_fd, op.path, O_RDONLY | O_CLOEXEC));
  if (!fd) {
    op.result = -errno;
    return;
  }
  op.result = pread_retrying(fd.get(), op.buf, op.offset);
}

std::int64_t write_file_steps(WriteFileOp& op, UniqueFd& fd) {
  std::int64_t n = pwrite_retrying(fd.get(), op.data, 0);
  if (n < 0) return n;
  if (op.sync && ::fdatasync(fd.get()) != 0) return -errno;
  // close() is where NFS and friends report deferred write errors, so it is checked.
  if (::close(fd.release()) != 0 && errno != EINTR) return -errno;
  if (op.rename_path != nullptr &&
      ::renameat(op.dir_fd, op.path, op.rename_dir_fd, op.rename_path) != 0) {
    return -errno;
  }
  return static_cast<std::int64_t>(op.data.size());
}

void do_write_file(WriteFileOp& op) {
  if (op.path == nullptr) {
    op.result = -EFAULT;
    return;
  }
  UniqueFd fd(open_retry(op.dir_fd, op.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!fd) {
    // Nothing was created (with O_EXCL an EEXIST file is someone else's): no unlink.
    op.result = -errno;
    return;
  }
  op.result = write_file_steps(op, fd);
  if (op.result < 0 && op.unlink_on_failure) {
    fd.reset();
    ::unlinkat(op.dir_fd, op.path, 0);  // best effort; the error reported is op.result
  }
}

void do_sync(int fd, bool data_only, int& result) {
  int r = data_only ? ::fdatasync(fd) : ::fsync(fd);
  result = r == 0 ? 0 : -errno;
}

// Persistent workers that run queued jobs. Threads start on first use, so an engine
// that only ever sees tiny batches (or serves as a fallback) costs no threads.
// They start on whatever thread first posts, which may be bound to one CPU or wait
// at the idle policy (the mount daemon's FUSE queue threads do both); the workers
// take the CPUs and the policy of the thread that made the pool instead.
class ThreadPool {
 public:
  explicit ThreadPool(unsigned threads)
      : size_(std::max(1u, threads)),
        cpus_(CpuAffinity::of_this_thread()),
        policy_(SchedulingPolicy::of_this_thread()) {}
  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    // jthread joins in its destructor.
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  unsigned size() const { return size_; }

  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (workers_.empty()) {
        workers_.reserve(size_);
        for (unsigned i = 0; i < size_; ++i) {
          workers_.emplace_back([this] {
            cpus_.apply_to_this_thread();
            policy_.apply_to_this_thread();
            run();
          });
        }
      }
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stop_ and drained
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  const unsigned size_;
  const CpuAffinity cpus_;  // where the workers may run
  const SchedulingPolicy policy_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::jthread> workers_;  // last: joined before the members above go away
};

class SyncEngine final : public IoEngine {
 public:
  explicit SyncEngine(unsigned threads) : pool_(threads) {}

  IoEngineKind kind() const override { return IoEngineKind::kSync; }
  const char* name() const override { return "sync"; }
  unsigned queue_depth() const override { return pool_.size(); }

  void read(std::span<ReadOp> ops) override {
    for_each(ops.size(), [&](std::size_t i) { do_read(ops[i]); });
  }
  void write(std::span<WriteOp> ops) override {
    for_each(ops.size(), [&](std::size_t i) { do_write(ops[i]); });
  }
  void read_files(std::span<ReadFileOp> ops) override {
    for_each(ops.size(), [&](std::size_t i) { do_read_file(ops[i]); });
  }
  void write_files(std::span<WriteFileOp> ops) override {
    for_each(ops.size(), [&](std::size_t i) { do_write_file(ops[i]); });
  }
  void remove_files(std::span<RemoveFileOp> ops) override {
    for_each(ops.size(), [&](std::size_t i) {
      ops[i].result = ::unlinkat(ops[i].dir_fd, ops[i].path, 0) == 0 ? 0 : -errno;
    });
  }
  void sync(std::span<const int> fds, bool data_only, std::span<int> results) override {
    std::size_t n = std::min(fds.size(), results.size());
    for_each(n, [&](std::size_t i) { do_sync(fds[i], data_only, results[i]); });
  }

 private:
  // Shared with the pool jobs through a shared_ptr: a job that only gets to run after
  // the caller has already returned finds no work left and must not touch the
  // caller's stack.
  struct Batch {
    std::function<void(std::size_t)> fn;
    std::size_t count = 0;
    std::atomic<std::size_t> next{0};
    std::mutex mu;
    std::condition_variable cv;
    std::size_t finished = 0;

    // Claims items until none are left.
    void work() {
      std::size_t done_here = 0;
      for (std::size_t i; (i = next.fetch_add(1)) < count; ++done_here) fn(i);
      if (done_here == 0) return;
      std::lock_guard lock(mu);
      finished += done_here;
      if (finished == count) cv.notify_all();
    }
  };

  void for_each(std::size_t count, const std::function<void(std::size_t)>& fn) {
    // Handing one or two syscalls to another thread costs more than it saves.
    if (count <= kInlineOps) {
      for (std::size_t i = 0; i < count; ++i) fn(i);
      return;
    }
    auto batch = std::make_shared<Batch>();
    batch->fn = fn;
    batch->count = count;
    // The caller works too, so the batch has at most queue_depth() ops in flight and a
    // one-thread engine never starts a worker.
    std::size_t helpers = std::min<std::size_t>(pool_.size() - 1, count - 1);
    for (std::size_t h = 0; h < helpers; ++h) {
      pool_.post([batch] {
        if (batch->next.load(std::memory_order_relaxed) < batch->count) batch->work();
      });
    }
    batch->work();
    std::unique_lock lock(batch->mu);
    batch->cv.wait(lock, [&] { return batch->finished == batch->count; });
  }

  static constexpr std::size_t kInlineOps = 2;
  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<IoEngine> make_sync_engine(unsigned threads) {
  return std::make_unique<SyncEngine>(threads);
}

}  // namespace casfs
