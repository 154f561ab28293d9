// The io_uring engine. Rings are persistent and pooled: creating a ring costs a few
// syscalls and some locked memory, so one is set up per concurrent caller and then
// reused, never one per operation. Whole batches go to the kernel at once, refilled
// as completions arrive so that at most queue_depth operations (or open→…→close
// chains) are in flight.
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/error.h"
#include "store/io_engine.h"

namespace casfs {
namespace {

// IORING_OP_READ/WRITE take a 32-bit length; the kernel caps a single transfer just
// below 2 GiB anyway. Longer ranges are done in pieces (read/write) or by syscalls.
constexpr std::size_t kMaxTransfer = std::size_t{1} << 30;
// write_files sends bigger files to plain syscalls: a linked chain cannot resume a
// short write, and for large files the submission cost is noise.
constexpr std::size_t kMaxChainedWrite = std::size_t{1} << 20;
// Longest chain we submit: open, write, fdatasync, close.
constexpr unsigned kMaxChainLength = 4;
// Far beyond any device's useful depth; keeps the ring within the kernel's limits.
constexpr unsigned kMaxDepth = 4096;
// Free rings kept beyond this are closed instead of pooled.
constexpr std::size_t kMaxPooledRings = 64;

// One io_uring instance with a sparse table of `depth` direct-descriptor slots.
class Ring {
 public:
  explicit Ring(unsigned depth) {
    io_uring_params params{};
    // SUBMIT_ALL keeps a bad SQE from stalling the rest of the batch; COOP_TASKRUN
    // avoids interrupting the caller for completions it will reap anyway. Both are
    // optimisations, so older kernels get a plain ring.
    params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    unsigned entries = depth * kMaxChainLength;
    int r = io_uring_queue_init_params(entries, &ring_, &params);
    if (r == -EINVAL) {
      params = io_uring_params{};
      r = io_uring_queue_init_params(entries, &ring_, &params);
    }
    if (r < 0) throw_errno(-r, "io_uring_queue_init");
    r = io_uring_register_files_sparse(&ring_, depth);
    if (r < 0) {
      io_uring_queue_exit(&ring_);
      // EINVAL here means a kernel without sparse tables (before 5.19).
      throw_errno(r == -EINVAL ? ENOSYS : -r, "io_uring_register_files_sparse");
    }
  }
  ~Ring() { io_uring_queue_exit(&ring_); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* get() { return &ring_; }

 private:
  io_uring ring_;
};

class RingPool {
 public:
  explicit RingPool(unsigned depth) : depth_(depth) {}

  // A ring borrowed for one call. If the call unwinds with an exception the ring may
  // still hold unreaped or even unsubmitted work, so it is destroyed, not pooled.
  class Lease {
   public:
    Lease(RingPool& pool, std::unique_ptr<Ring> ring)
        : pool_(pool), ring_(std::move(ring)), exceptions_(std::uncaught_exceptions()) {}
    ~Lease() {
      if (std::uncaught_exceptions() == exceptions_) pool_.put(std::move(ring_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    io_uring* get() { return ring_->get(); }

   private:
    RingPool& pool_;
    std::unique_ptr<Ring> ring_;
    int exceptions_;
  };

  Lease take() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        std::unique_ptr<Ring> ring = std::move(free_.back());
        free_.pop_back();
        return Lease(*this, std::move(ring));
      }
    }
    return Lease(*this, std::make_unique<Ring>(depth_));
  }

  void put(std::unique_ptr<Ring> ring) {
    std::lock_guard lock(mu_);
    if (free_.size() < kMaxPooledRings) free_.push_back(std::move(ring));
  }

 private:
  const unsigned depth_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Ring>> free_;
};

// Submits whatever is queued and waits for at least one completion, polling for up
// to `poll` before sleeping (ReadPolling). Transient refusals are retried; anything
// else means the ring is unusable.
void submit_and_wait(io_uring* ring, std::chrono::microseconds poll) {
  if (poll.count() > 0 && io_uring_submit(ring) >= 0) {
    const auto until = std::chrono::steady_clock::now() + poll;
    do {
      if (io_uring_cq_ready(ring) > 0) return;
      // With COOP_TASKRUN a completion waits, as task work, for this thread's next
      // entry into the kernel: this is that entry.
      io_uring_get_events(ring);
    } while (std::chrono::steady_clock::now() < until);
    if (io_uring_cq_ready(ring) > 0) return;
  }
  for (int attempt = 0;; ++attempt) {
    int r = io_uring_submit_and_wait(ring, 1);
    if (r >= 0) return;
    if (r == -EINTR) continue;
    if ((r == -EAGAIN || r == -EBUSY) && attempt < 1000) {
      // The kernel is short of resources or the CQ is backed up: give completions a
      // moment, then try again. The caller reaps whatever arrived.
      io_uring_cqe* cqe = nullptr;
      __kernel_timespec ts{.tv_sec = 0, .tv_nsec = 1'000'000};
      int w = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
      if (w == 0) return;
      continue;
    }
    throw_errno(-r, "io_uring_submit");
  }
}

// Calls fn(user_data, res) for every completion that is ready.
template <typename Fn>
void reap(io_uring* ring, Fn&& fn) {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(ring, &cqe) == 0) {
    std::uint64_t data = cqe->user_data;
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    fn(data, res);
  }
}

// The SQ is sized for queue_depth chains, so running out means a bookkeeping bug.
io_uring_sqe* get_sqe(io_uring* ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) throw StoreError(EIO, "io_uring: submission queue unexpectedly full");
  return sqe;
}

// user_data for chained requests: op index and the step within the chain.
enum Step : std::uint64_t { kOpen = 0, kData = 1, kSync = 2, kClose = 3 };
constexpr std::uint64_t tag(std::size_t index, Step step) {
  return (static_cast<std::uint64_t>(index) << 2) | step;
}

// Per-chain state while open→…→close is in flight.
struct Chain {
  unsigned slot = 0;
  unsigned pending = 0;  // CQEs still to come; the slot is free when this hits 0
  int open_res = 0;
  int data_res = 0;
  int sync_res = 0;
  int close_res = 0;
};

class UringEngine final : public IoEngine {
 public:
  explicit UringEngine(unsigned queue_depth)
      : depth_(std::clamp(queue_depth, 1u, kMaxDepth)),
        pool_(depth_),
        fallback_(make_sync_engine(1)) {
    // Build the first ring now so that an unusable io_uring is reported at creation
    // rather than on the first read.
    RingPool::Lease lease = pool_.take();
    std::unique_ptr<io_uring_probe, void (*)(io_uring_probe*)> probe(
        io_uring_get_probe_ring(lease.get()), io_uring_free_probe);
    if (!probe) throw StoreError(ENOSYS, "io_uring: kernel does not support opcode probing");
    struct Needed {
      int op;
      const char* name;
    };
    for (Needed n : {Needed{IORING_OP_READ, "READ"}, Needed{IORING_OP_WRITE, "WRITE"},
                     Needed{IORING_OP_OPENAT, "OPENAT"}, Needed{IORING_OP_CLOSE, "CLOSE"},
                     Needed{IORING_OP_FSYNC, "FSYNC"}, Needed{IORING_OP_RENAMEAT, "RENAMEAT"},
                     Needed{IORING_OP_UNLINKAT, "UNLINKAT"}}) {
      if (!io_uring_opcode_supported(probe.get(), n.op)) {
        throw StoreError(ENOSYS, std::string("io_uring: kernel lacks IORING_OP_") + n.name);
      }
    }
  }

  IoEngineKind kind() const override { return IoEngineKind::kUring; }
  const char* name() const override { return "io_uring"; }
  unsigned queue_depth() const override { return depth_; }

  void read(std::span<ReadOp> ops) override {
    for (ReadOp& op : ops) op.result = 0;
    transfer(
        ops.size(), [&](std::size_t i) { return ops[i].buf.size(); },
        [&](io_uring_sqe* sqe, std::size_t i, std::size_t done, unsigned len) {
          ReadOp& op = ops[i];
          io_uring_prep_read(sqe, op.fd, op.buf.data() + done, len, op.offset + done);
        },
        [&](std::size_t i) -> std::int64_t& { return ops[i].result; }, /*is_read=*/true);
  }

  void write(std::span<WriteOp> ops) override {
    for (WriteOp& op : ops) op.result = 0;
    transfer(
        ops.size(), [&](std::size_t i) { return ops[i].data.size(); },
        [&](io_uring_sqe* sqe, std::size_t i, std::size_t done, unsigned len) {
          WriteOp& op = ops[i];
          io_uring_prep_write(sqe, op.fd, op.data.data() + done, len, op.offset + done);
        },
        [&](std::size_t i) -> std::int64_t& { return ops[i].result; }, /*is_read=*/false);
  }

  void read_files(std::span<ReadFileOp> ops) override {
    std::vector<std::size_t> by_syscall;
    auto usable = [&](std::size_t i) {
      const ReadFileOp& op = ops[i];
      if (op.path == nullptr || op.buf.size() > kMaxTransfer) {
        by_syscall.push_back(i);
        return false;
      }
      return true;
    };
    // The read is hard-linked to the close: a short read (the normal case when buf
    // is larger than the file) counts as a failure for IOSQE_IO_LINK and would
    // otherwise cancel the close and leak the slot.
    auto prep = [&](io_uring* ring, std::size_t i, unsigned slot) {
      const ReadFileOp& op = ops[i];
      io_uring_sqe* sqe = get_sqe(ring);
      io_uring_prep_openat_direct(sqe, op.dir_fd, op.path, O_RDONLY, 0, slot);
      sqe->flags |= IOSQE_IO_LINK;
      sqe->user_data = tag(i, kOpen);
      sqe = get_sqe(ring);
      io_uring_prep_read(sqe, static_cast<int>(slot), op.buf.data(),
                         static_cast<unsigned>(op.buf.size()), op.offset);
      sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
      sqe->user_data = tag(i, kData);
      sqe = get_sqe(ring);
      io_uring_prep_close_direct(sqe, slot);
      sqe->user_data = tag(i, kClose);
      return 3u;
    };
    auto finish = [&](std::size_t i, const Chain& c) {
      // A failed open cancels the rest (-ECANCELED); its own error is the answer.
      // Close errors are ignored: the data is already in buf.
      ops[i].result = c.open_res < 0 ? c.open_res : c.data_res;
    };
    run_chains(ops.size(), 3, usable, prep, finish, ReadPolling::budget());

    if (!by_syscall.empty()) {
      std::vector<ReadFileOp> rest;
      rest.reserve(by_syscall.size());
      for (std::size_t i : by_syscall) rest.push_back(ops[i]);
      fallback_->read_files(rest);
      for (std::size_t k = 0; k < by_syscall.size(); ++k)
        ops[by_syscall[k]].result = rest[k].result;
    }
  }

  void write_files(std::span<WriteFileOp> ops) override {
    std::vector<std::size_t> by_syscall;
    auto usable = [&](std::size_t i) {
      const WriteFileOp& op = ops[i];
      if (op.path == nullptr || op.data.size() > kMaxChainedWrite) {
        by_syscall.push_back(i);
        return false;
      }
      return true;
    };
    // open links to the rest so that a failed open cancels everything. The write and
    // fdatasync are hard-linked so that the close always runs once the file is open;
    // their errors are picked up from their own completions instead. The rename
    // must not run after a failure, which a hard link cannot express, so renames are
    // a second pass.
    auto prep = [&](io_uring* ring, std::size_t i, unsigned slot) {
      const WriteFileOp& op = ops[i];
      io_uring_sqe* sqe = get_sqe(ring);
      io_uring_prep_openat_direct(sqe, op.dir_fd, op.path, O_WRONLY | O_CREAT | O_EXCL, 0444, slot);
      sqe->flags |= IOSQE_IO_LINK;
      sqe->user_data = tag(i, kOpen);
      sqe = get_sqe(ring);
      io_uring_prep_write(sqe, static_cast<int>(slot), op.data.data(),
                          static_cast<unsigned>(op.data.size()), 0);
      sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
      sqe->user_data = tag(i, kData);
      unsigned count = 3;
      if (op.sync) {
        sqe = get_sqe(ring);
        io_uring_prep_fsync(sqe, static_cast<int>(slot), IORING_FSYNC_DATASYNC);
        sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
        sqe->user_data = tag(i, kSync);
        ++count;
      }
      sqe = get_sqe(ring);
      io_uring_prep_close_direct(sqe, slot);
      sqe->user_data = tag(i, kClose);
      return count;
    };
    std::vector<std::size_t> to_rename;
    auto finish = [&](std::size_t i, const Chain& c) {
      WriteFileOp& op = ops[i];
      if (c.open_res < 0) {
        // Nothing was created; with O_EXCL an existing file is not ours to remove.
        op.result = c.open_res;
        return;
      }
      std::int64_t res = static_cast<std::int64_t>(op.data.size());
      bool retry = false;
      if (c.data_res < 0) {
        res = c.data_res;
      } else if (static_cast<std::size_t>(c.data_res) != op.data.size()) {
        retry = true;  // short write: the chain cannot resume it, syscalls can
      } else if (op.sync && c.sync_res < 0) {
        res = c.sync_res;
      } else if (c.close_res < 0) {
        res = c.close_res;
      }
      if (res < 0 || retry) {
        // Best effort; the first error is what counts.
        if (op.unlink_on_failure) ::unlinkat(op.dir_fd, op.path, 0);
        if (retry) by_syscall.push_back(i);
        op.result = res;
        return;
      }
      op.result = res;
      if (op.rename_path != nullptr) to_rename.push_back(i);
    };
    run_chains(ops.size(), op_chain_length(ops), usable, prep, finish);

    if (!to_rename.empty()) rename_all(ops, to_rename);

    if (!by_syscall.empty()) {
      std::vector<WriteFileOp> rest;
      rest.reserve(by_syscall.size());
      for (std::size_t i : by_syscall) rest.push_back(ops[i]);
      fallback_->write_files(rest);
      for (std::size_t k = 0; k < by_syscall.size(); ++k)
        ops[by_syscall[k]].result = rest[k].result;
    }
  }

  void remove_files(std::span<RemoveFileOp> ops) override {
    each_op(
        ops.size(),
        [&](io_uring_sqe* sqe, std::size_t i) {
          io_uring_prep_unlinkat(sqe, ops[i].dir_fd, ops[i].path, 0);
        },
        [&](std::size_t i, int res) { ops[i].result = res; });
  }

  void sync(std::span<const int> fds, bool data_only, std::span<int> results) override {
    each_op(
        std::min(fds.size(), results.size()),
        [&](io_uring_sqe* sqe, std::size_t i) {
          io_uring_prep_fsync(sqe, fds[i], data_only ? IORING_FSYNC_DATASYNC : 0);
        },
        [&](std::size_t i, int res) { results[i] = res; });
  }

 private:
  // One SQE per op, at most depth_ in flight; done(i, res) for each completion.
  template <typename PrepFn, typename DoneFn>
  void each_op(std::size_t n, PrepFn prep, DoneFn done) {
    if (n == 0) return;
    auto lease = pool_.take();
    io_uring* ring = lease.get();
    std::size_t next = 0;
    unsigned inflight = 0;
    while (next < n || inflight > 0) {
      while (next < n && inflight < depth_) {
        io_uring_sqe* sqe = get_sqe(ring);
        prep(sqe, next);
        sqe->user_data = next++;
        ++inflight;
      }
      submit_and_wait(ring, std::chrono::microseconds{0});
      reap(ring, [&](std::uint64_t i, int res) {
        --inflight;
        done(static_cast<std::size_t>(i), res);
      });
    }
  }

  static unsigned op_chain_length(std::span<WriteFileOp> ops) {
    bool any_sync =
        std::any_of(ops.begin(), ops.end(), [](const WriteFileOp& op) { return op.sync; });
    return any_sync ? 4 : 3;
  }

  // Reads or writes of byte ranges, at most depth_ in flight. A transfer that comes
  // back short is resubmitted for the remainder, except a read that hits EOF.
  template <typename SizeFn, typename PrepFn, typename ResultFn>
  void transfer(std::size_t n, SizeFn size_of, PrepFn prep, ResultFn result_of, bool is_read) {
    auto lease = pool_.take();
    io_uring* ring = lease.get();
    std::vector<std::size_t> again;  // ops with a remainder to resubmit
    std::size_t next = 0;
    unsigned inflight = 0;
    while (next < n || !again.empty() || inflight > 0) {
      while (inflight < depth_ && (!again.empty() || next < n)) {
        std::size_t i;
        if (!again.empty()) {
          i = again.back();
          again.pop_back();
        } else {
          i = next++;
          if (size_of(i) == 0) continue;  // result stays 0
        }
        std::size_t done = static_cast<std::size_t>(result_of(i));
        auto len = static_cast<unsigned>(std::min(size_of(i) - done, kMaxTransfer));
        io_uring_sqe* sqe = get_sqe(ring);
        prep(sqe, i, done, len);
        sqe->user_data = i;
        ++inflight;
      }
      if (inflight == 0) break;
      submit_and_wait(ring, is_read ? ReadPolling::budget() : std::chrono::microseconds{0});
      reap(ring, [&](std::uint64_t i, int res) {
        --inflight;
        std::int64_t& result = result_of(i);
        if (res < 0) {
          result = res;
        } else if (res == 0) {
          // EOF for a read; for a write the device takes nothing, so retrying
          // would spin forever.
          if (!is_read) result = -EIO;
        } else {
          result += res;
          if (static_cast<std::size_t>(result) < size_of(i)) again.push_back(i);
        }
      });
    }
  }

  // Runs one chain per usable op, each holding a direct-descriptor slot from open
  // to close, so slots bound the chains in flight to depth_.
  template <typename UsableFn, typename PrepFn, typename FinishFn>
  void run_chains(std::size_t n, unsigned max_chain, UsableFn usable, PrepFn prep, FinishFn finish,
                  std::chrono::microseconds poll = {}) {
    if (n == 0) return;
    auto lease = pool_.take();
    io_uring* ring = lease.get();
    std::vector<Chain> chains(n);
    std::vector<unsigned> free_slots(depth_);
    for (unsigned s = 0; s < depth_; ++s) free_slots[s] = depth_ - 1 - s;
    std::size_t next = 0;
    unsigned active = 0;
    while (next < n || active > 0) {
      // A chain must not straddle two submissions: the kernel ends a link at the end
      // of each submit, so only start one when all of its SQEs fit.
      while (next < n && !free_slots.empty() && io_uring_sq_space_left(ring) >= max_chain) {
        std::size_t i = next++;
        if (!usable(i)) continue;
        Chain& c = chains[i];
        c.slot = free_slots.back();
        free_slots.pop_back();
        c.pending = prep(ring, i, c.slot);
        ++active;
      }
      if (active == 0) break;
      submit_and_wait(ring, poll);
      reap(ring, [&](std::uint64_t data, int res) {
        std::size_t i = data >> 2;
        Chain& c = chains[i];
        switch (static_cast<Step>(data & 3)) {
          case kOpen:
            c.open_res = res;
            break;
          case kData:
            c.data_res = res;
            break;
          case kSync:
            c.sync_res = res;
            break;
          case kClose:
            c.close_res = res;
            break;
        }
        if (--c.pending == 0) {
          free_slots.push_back(c.slot);
          --active;
          finish(i, c);
        }
      });
    }
  }

  // Second pass of write_files: renames of the files whose chain succeeded.
  void rename_all(std::span<WriteFileOp> ops, const std::vector<std::size_t>& which) {
    each_op(
        which.size(),
        [&](io_uring_sqe* sqe, std::size_t k) {
          const WriteFileOp& op = ops[which[k]];
          io_uring_prep_renameat(sqe, op.dir_fd, op.path, op.rename_dir_fd, op.rename_path, 0);
        },
        [&](std::size_t k, int res) {
          if (res >= 0) return;
          WriteFileOp& op = ops[which[k]];
          op.result = res;
          ::unlinkat(op.dir_fd, op.path, 0);
        });
  }

  const unsigned depth_;
  RingPool pool_;
  // Does the few ops a chain cannot (huge buffers, resuming short writes).
  std::unique_ptr<IoEngine> fallback_;
};

}  // namespace

std::unique_ptr<IoEngine> make_uring_engine(unsigned queue_depth) {
  return std::make_unique<UringEngine>(queue_depth);
}

}  // namespace casfs
