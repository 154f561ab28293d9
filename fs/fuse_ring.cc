#include "fs/fuse_ring.h"

#include <fcntl.h>
#include <liburing.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <string>

#include "fs/fuse_ops.h"
#include "fs/fuse_session_io.h"
#include "fs/long_work.h"
#include "store/io_engine.h"
#include "store/log.h"
#include "store/thread_placement.h"

namespace casfs {

namespace {

// The kernel's interface (include/uapi/linux/fuse.h of Linux 6.14); Debian 12's
// headers are older, so the parts used here are spelled out.
constexpr std::uint64_t kFuseOverIoUring = 1ull << 41;  // FUSE_OVER_IO_URING, in flags2
constexpr std::uint32_t kCmdRegister = 1;               // FUSE_IO_URING_CMD_REGISTER
constexpr std::uint32_t kCmdCommitAndFetch = 2;         // FUSE_IO_URING_CMD_COMMIT_AND_FETCH

struct RingEntInOut {  // struct fuse_uring_ent_in_out
  std::uint64_t flags;
  std::uint64_t commit_id;
  std::uint32_t payload_sz;
  std::uint32_t padding;
  std::uint64_t reserved;
};

struct RingHeader {           // struct fuse_uring_req_header
  unsigned char in_out[128];  // fuse_in_header of a request, fuse_out_header of a reply
  unsigned char op_in[128];   // the request's first argument (its per-operation header)
  RingEntInOut ent;
};

struct RingCmd {  // struct fuse_uring_cmd_req, in the 80 bytes an SQE128 adds
  std::uint64_t flags;
  std::uint64_t commit_id;
  std::uint16_t qid;
  std::uint8_t padding[6];
};

static_assert(sizeof(RingHeader) == 288);
static_assert(sizeof(RingCmd) == 24);

// Entries per queue: how many of one CPU's requests may be in the daemon at once
// (served in turn by the queue's thread, or at the same time by its workers). Each
// costs a payload buffer.
constexpr unsigned kQueueDepth = 8;
// Threads per queue for requests that may wait on the disk or on a commit (reads,
// fsync): served on the queue's own thread, one cold read would hold up every other
// request of that CPU.
constexpr unsigned kWorkersPerQueue = 4;

bool may_block(std::uint32_t opcode) {
  return opcode == FUSE_READ || opcode == FUSE_FSYNC || opcode == FUSE_FSYNCDIR;
}
// A READ this large is the kernel's readahead of a file read in sequence, which sends
// the next READs of the window while this one is served: they must not wait for it.
// A WRITE this large is the kernel's writeback of a file written in sequence, which
// may stop to write the file out (write-behind) while the next WRITEs fill a fresh
// buffer: served on the queue's thread, it would hold every one of them up.
constexpr std::uint32_t kLargeTransfer = 256 << 10;
// How long a READ served on the queue's thread polls for the disk before it sleeps
// (store/io_engine.h, ReadPolling): a few times a cold read of an SSD or a virtual
// disk (50 µs here), a small part of one from a spinning disk.
constexpr std::chrono::microseconds kReadPollBudget{200};

// The bytes a READ or WRITE asks to move; 0 for other requests.
template <std::size_t N>
std::uint32_t transfer_size(std::uint32_t opcode, const unsigned char (&op_in)[N],
                            std::size_t op_size) {
  auto size_field = [&](auto args) -> std::uint32_t {
    if (op_size < sizeof args) return 0;
    std::memcpy(&args, op_in, sizeof args);
    return args.size;
  };
  if (opcode == FUSE_READ) return size_field(fuse_read_in{});
  if (opcode == FUSE_WRITE) return size_field(fuse_write_in{});
  return 0;
}

// Room in front of every payload buffer, where a request's headers are put back
// in front of its payload so that libfuse sees /dev/fuse's layout without a copy.
constexpr std::size_t kHeadroom = 4096;
static_assert(kHeadroom >= sizeof(fuse_in_header) + sizeof(RingHeader::op_in));

// The request whose handler runs on this thread, so that its reply can be told apart
// from replies to requests that came through /dev/fuse.
thread_local void* current_entry = nullptr;

// The kernel keeps one queue for every possible CPU (nr_cpu_ids).
unsigned possible_cpus() {
  std::ifstream in("/sys/devices/system/cpu/possible");
  std::string text;
  if (std::getline(in, text)) {
    // "0-1", "0-3,6-7", "0": the largest number names the last CPU.
    unsigned last = 0, number = 0;
    bool digits = false;
    for (char c : text + ",") {
      if (c >= '0' && c <= '9') {
        number = number * 10 + static_cast<unsigned>(c - '0');
        digits = true;
      } else {
        if (digits) last = std::max(last, number);
        number = 0;
        digits = false;
      }
    }
    return last + 1;
  }
  return static_cast<unsigned>(std::max(1, get_nprocs_conf()));
}

// Threads runnable right now, this one included (the fourth field of /proc/loadavg,
// "running/total"); a large number when it cannot be read.
unsigned runnable_threads() {
  char text[128];
  const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ~0u;
  const ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0) return ~0u;
  text[n] = '\0';
  unsigned running = 0;
  if (std::sscanf(text, "%*s %*s %*s %u/", &running) != 1) return ~0u;
  return running;
}

}  // namespace

struct FuseRing::Entry {
  RingHeader header{};
  std::unique_ptr<std::byte[]> buffer;  // kHeadroom, then the payload
  std::byte* payload = nullptr;
  std::size_t payload_size = 0;
  iovec iov[2]{};
  std::uint64_t unique = 0;      // of the request being served
  std::uint64_t commit_id = 0;   // the kernel's name for it
  std::byte* request = nullptr;  // the request laid out as /dev/fuse delivers it
  std::size_t request_size = 0;
  std::uint32_t last_cmd = kCmdRegister;
  bool replied = false;
};

struct FuseRing::Queue {
  unsigned qid = 0;
  std::size_t payload_size = 0;
  io_uring ring{};
  int stop_fd = -1;  // written once: the queue's thread ends
  int done_fd = -1;  // written by workers: entries in `done` wait for their commit
  std::vector<std::unique_ptr<Entry>> entries;
  std::thread thread;

  std::mutex mutex;
  std::condition_variable work_ready;
  std::deque<Entry*> work;   // handed to the workers
  std::vector<Entry*> done;  // served by a worker
  bool stopping = false;
  std::vector<std::thread> workers;
  std::size_t handed_out = 0;  // entries with the workers (the queue's thread only)
  bool idle_policy = false;    // the queue's thread is SCHED_IDLE now (that thread only)
  bool cpus_to_spare = false;  // at the last look, fewer threads ran than there are CPUs

  // Changes the queue thread's policy only when it differs: each change is a system
  // call that costs about as much as serving a metadata request.
  void set_idle_policy(bool idle) {
    if (idle_policy == idle) return;
    const sched_param no_priority{};
    if (::sched_setscheduler(0, idle ? SCHED_IDLE : SCHED_OTHER, &no_priority) == 0)
      idle_policy = idle;
  }
};

bool FuseRing::kernel_allows() {
  std::ifstream in("/sys/module/fuse/parameters/enable_uring");
  std::string value;
  return std::getline(in, value) && (value == "Y" || value == "1");
}

FuseRing::FuseRing(fuse_session* session) : session_(session) {}

FuseRing::~FuseRing() {
  stop();
}

void FuseRing::stop() {
  std::lock_guard lock(queues_mutex_);
  for (auto& queue : queues_) {
    const std::uint64_t one = 1;
    if (queue->stop_fd >= 0) (void)!::write(queue->stop_fd, &one, sizeof one);
  }
  for (auto& queue : queues_) {
    if (queue->thread.joinable()) queue->thread.join();
    if (queue->stop_fd >= 0) ::close(queue->stop_fd);
    if (queue->done_fd >= 0) ::close(queue->done_fd);
    queue->stop_fd = queue->done_fd = -1;
  }
}

ssize_t FuseRing::write_reply(int fd, struct iovec* iov, int count) {
  fuse_out_header out;
  if (count < 1 || iov[0].iov_len < sizeof out) return ::writev(fd, iov, count);
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  std::size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;

  auto* entry = static_cast<Entry*>(current_entry);
  if (entry != nullptr && !entry->replied && out.unique == entry->unique) {
    // Everything after the out header goes to the payload buffer.
    std::size_t payload = 0;
    std::size_t skip = sizeof out;
    bool fits = total - sizeof out <= entry->payload_size;
    for (int i = 0; i < count && fits; ++i) {
      const auto* bytes = static_cast<const std::byte*>(iov[i].iov_base);
      std::size_t length = iov[i].iov_len;
      const std::size_t skipped = std::min(skip, length);
      skip -= skipped;
      std::memcpy(entry->payload + payload, bytes + skipped, length - skipped);
      payload += length - skipped;
    }
    if (!fits) {
      log::error("a FUSE reply of %zu bytes does not fit the ring's %zu-byte buffer", total,
                 entry->payload_size);
      out.error = -EIO;
      payload = 0;
    }
    out.len = static_cast<std::uint32_t>(sizeof out + payload);
    std::memcpy(entry->header.in_out, &out, sizeof out);
    entry->header.ent.payload_sz = static_cast<std::uint32_t>(payload);
    entry->replied = true;
    return static_cast<ssize_t>(total);
  }

  return ::writev(fd, iov, count);
}

ssize_t FuseRing::write_init_reply(int fd, struct iovec* iov, int count, std::uint64_t offered) {
  // Accept the transport if the kernel offered it. The reply's buffer is libfuse's
  // own, written here in place.
  const bool offers = (offered & FUSE_INIT_EXT) != 0 && (offered & kFuseOverIoUring) != 0;
  fuse_init_out init{};
  const std::size_t init_size = std::min(sizeof init, iov[1].iov_len);
  std::memcpy(&init, iov[1].iov_base, init_size);
  const bool room = init_size >= offsetof(fuse_init_out, flags2) + sizeof init.flags2;
  const bool accept = offers && room;
  if (accept) {
    init.flags |= FUSE_INIT_EXT;
    init.flags2 |= static_cast<std::uint32_t>(kFuseOverIoUring >> 32);
    std::memcpy(iov[1].iov_base, &init, init_size);
  }
  const ssize_t n = ::writev(fd, iov, count);
  if (n < 0 || !accept) {
    if (n >= 0)
      log::warning("the kernel did not offer FUSE over io_uring; serving through /dev/fuse");
    return n;
  }
  // The kernel sizes every payload buffer by what INIT settled.
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t pages =
      (init.flags & FUSE_MAX_PAGES) ? std::max<std::size_t>(1, init.max_pages) : 32;
  try {
    start(std::max({std::size_t{8192}, static_cast<std::size_t>(init.max_write), pages * page}));
  } catch (const std::exception& e) {
    // The kernel uses the rings only once every queue has registered its entries.
    log::error("FUSE over io_uring: %s; serving through /dev/fuse", e.what());
  }
  return n;
}

void FuseRing::start(std::size_t payload_size) {
  if (started_.exchange(true)) return;
  const unsigned cpus = possible_cpus();
  std::lock_guard lock(queues_mutex_);
  for (unsigned qid = 0; qid < cpus; ++qid) {
    auto queue = std::make_unique<Queue>();
    queue->qid = qid;
    queue->payload_size = payload_size;
    queue->stop_fd = ::eventfd(0, EFD_CLOEXEC);
    queue->done_fd = ::eventfd(0, EFD_CLOEXEC);
    queues_.push_back(std::move(queue));
  }
  for (auto& queue : queues_) {
    Queue* q = queue.get();
    q->thread = std::thread([this, q] { serve(*q); });
  }
  log::info("serving FUSE requests through io_uring: %u queues of %u", cpus, kQueueDepth);
}

namespace {

// Every entry has at most one command in flight and the ring has a slot for each,
// besides the stop poll: running out of slots is a bug.
io_uring_sqe* next_sqe(io_uring& ring) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  if (sqe == nullptr) {
    log::error("FUSE over io_uring: no free submission slot");
    std::abort();
  }
  return sqe;
}

void prepare_command(io_uring_sqe* sqe, int dev_fd, std::uint32_t cmd, unsigned qid,
                     std::uint64_t commit_id, void* data) {
  // An SQE128 slot: the SQE and the 64 bytes after it, where the command goes.
  std::memset(static_cast<void*>(sqe), 0, 2 * sizeof(io_uring_sqe));
  sqe->opcode = IORING_OP_URING_CMD;
  sqe->fd = dev_fd;
  sqe->cmd_op = cmd;
  io_uring_sqe_set_data(sqe, data);
  RingCmd request{};
  request.commit_id = commit_id;
  request.qid = static_cast<std::uint16_t>(qid);
  std::memcpy(sqe->cmd, &request, sizeof request);
}

}  // namespace

void FuseRing::serve(Queue& queue) {
  const std::string name = "casfs-ring-" + std::to_string(queue.qid);
  ::pthread_setname_np(::pthread_self(), name.c_str());
  // Bound to its CPU, so that the requests of that CPU's processes are served there.
  // A CPU that is offline or outside this process's set keeps an unbound thread.
  // The workers are not bound: they serve what may wait or take long, and must be
  // free to run on the other CPUs meanwhile (bound beside this thread, a depth-16
  // random read served a third fewer requests per second than /dev/fuse's threads).
  const CpuAffinity process_cpus = CpuAffinity::of_this_thread();
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(queue.qid, &cpus);
  (void)::sched_setaffinity(0, sizeof cpus, &cpus);

  io_uring_params params{};
  params.flags = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE;
  // A slot per entry, and one each for the stop and done polls.
  constexpr unsigned kSlots = kQueueDepth + 2;
  params.cq_entries = 2 * kSlots;
  if (int rc = io_uring_queue_init_params(kSlots, &queue.ring, &params); rc < 0) {
    log::warning("FUSE over io_uring: queue %u cannot start: %s; requests stay on /dev/fuse",
                 queue.qid, std::strerror(-rc));
    return;
  }
  for (unsigned i = 0; i < kQueueDepth; ++i) {
    auto entry = std::make_unique<Entry>();
    entry->buffer = std::make_unique_for_overwrite<std::byte[]>(kHeadroom + queue.payload_size);
    entry->payload = entry->buffer.get() + kHeadroom;
    entry->payload_size = queue.payload_size;
    entry->iov[0] = iovec{&entry->header, sizeof entry->header};
    entry->iov[1] = iovec{entry->payload, entry->payload_size};
    send_command(queue, *entry, kCmdRegister);
    queue.entries.push_back(std::move(entry));
  }
  io_uring_sqe* stop = next_sqe(queue.ring);
  io_uring_prep_poll_add(stop, queue.stop_fd, POLLIN);
  io_uring_sqe_set_data(stop, nullptr);
  auto watch_done = [&] {
    io_uring_sqe* sqe = next_sqe(queue.ring);
    io_uring_prep_poll_add(sqe, queue.done_fd, POLLIN);
    io_uring_sqe_set_data(sqe, &queue.done);
  };
  watch_done();
  for (unsigned i = 0; i < kWorkersPerQueue; ++i) {
    queue.workers.emplace_back([this, &queue, process_cpus] {
      process_cpus.apply_to_this_thread();
      work(queue);
    });
  }

  // While the machine has CPUs to spare, the thread is SCHED_IDLE. The replies it
  // submits wake their callers, and the scheduler puts a woken caller on a CPU that runs
  // nothing but SCHED_IDLE threads as readily as on an idle one: the caller stays on
  // this CPU (its next request comes back to this queue) instead of being sent to an
  // idle CPU, whose wake-up is the dearest part of a round trip in a virtual machine (a
  // getxattr loop here: 26 us against 80 us; an untar of the Linux tree 14 s against
  // 23 s). When other work keeps the CPUs busy, a SCHED_IDLE thread waits long for its
  // turn after a request arrives (a small untar beside two busy loops: 1.3 s against
  // 1.05 s), so this is done only while the machine has CPUs to spare, judged from the
  // number of runnable threads in /proc/loadavg every 100 ms.
  // The thread stays SCHED_IDLE while it serves quick requests (switching back and
  // forth around every wait took a fifth of the untar's time). It takes the normal
  // policy before a request may block or take long: READ and FSYNC, and wherever the
  // filesystem says so (long_work.h: a write-out, a wait for a commit or for a lock
  // another thread holds), and it waits at the normal policy while workers hold
  // requests. What stays is a short job under the commit queue's lock at the idle
  // policy: if another thread takes the CPU meanwhile, those waiting for the lock wait
  // for that thread. Only where the thread may switch back (root, or RLIMIT_NICE
  // allows nice 0).
  queue.idle_policy = ::sched_getscheduler(0) == SCHED_IDLE;
  set_long_work_hook([](void* q) { static_cast<Queue*>(q)->set_idle_policy(false); }, &queue);
  rlimit nice_limit{};
  const bool may_idle =
      ::geteuid() == 0 || (::getrlimit(RLIMIT_NICE, &nice_limit) == 0 && nice_limit.rlim_cur >= 20);
  const unsigned online_cpus = std::max(1u, std::thread::hardware_concurrency());
  auto next_look = std::chrono::steady_clock::time_point{};
  std::size_t live = queue.entries.size();
  bool stopping = false;
  while (live > 0 && !stopping) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_look) {
      next_look = now + std::chrono::milliseconds(100);
      queue.cpus_to_spare = runnable_threads() <= online_cpus;
    }
    // With requests out at the workers, what wakes the thread next is most likely a
    // worker's answer to commit, on a CPU that the workers and the caller keep busy.
    const bool idle_wait = queue.cpus_to_spare && queue.handed_out == 0;
    if (may_idle) queue.set_idle_policy(idle_wait);
    const int rc = io_uring_submit_and_wait(&queue.ring, 1);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      log::error("FUSE over io_uring: queue %u: %s", queue.qid, std::strerror(-rc));
      break;
    }
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    // A request that arrived alone, with the workers idle, is served here even if it
    // may block: nothing waits behind it, and a hand-off costs two wake-ups.
    const bool alone = io_uring_cq_ready(&queue.ring) == 1 && queue.handed_out == 0;
    io_uring_for_each_cqe(&queue.ring, head, cqe) {
      ++seen;
      void* data = io_uring_cqe_get_data(cqe);
      if (data == nullptr) {
        stopping = true;
        continue;
      }
      if (data == &queue.done) {
        std::uint64_t count;
        (void)!::read(queue.done_fd, &count, sizeof count);
        std::vector<Entry*> served;
        {
          std::lock_guard lock(queue.mutex);
          served.swap(queue.done);
        }
        queue.handed_out -= served.size();
        for (Entry* entry : served) commit(queue, *entry);
        watch_done();
        continue;
      }
      auto* entry = static_cast<Entry*>(data);
      if (cqe->res == 0) {
        handle(queue, *entry, alone);
      } else if (cqe->res == -EAGAIN || cqe->res == -EINTR) {
        send_command(queue, *entry, entry->last_cmd);
      } else {
        // ENOTCONN and ECANCELED: the filesystem is gone. Anything else: the kernel
        // refused the entry, and requests go through /dev/fuse.
        --live;
        if (cqe->res != -ENOTCONN && cqe->res != -ECANCELED)
          log::warning("FUSE over io_uring: queue %u: %s", queue.qid, std::strerror(-cqe->res));
      }
    }
    io_uring_cq_advance(&queue.ring, seen);
  }
  {
    std::lock_guard lock(queue.mutex);
    queue.stopping = true;
  }
  queue.work_ready.notify_all();
  for (auto& worker : queue.workers) worker.join();
  set_long_work_hook(nullptr, nullptr);
  io_uring_queue_exit(&queue.ring);
}

void FuseRing::work(Queue& queue) {
  const std::string name = "casfs-ringw-" + std::to_string(queue.qid);
  ::pthread_setname_np(::pthread_self(), name.c_str());
  for (;;) {
    Entry* entry;
    {
      std::unique_lock lock(queue.mutex);
      queue.work_ready.wait(lock, [&] { return queue.stopping || !queue.work.empty(); });
      if (queue.stopping) return;
      entry = queue.work.front();
      queue.work.pop_front();
    }
    process(*entry);
    {
      std::lock_guard lock(queue.mutex);
      queue.done.push_back(entry);
    }
    const std::uint64_t one = 1;
    (void)!::write(queue.done_fd, &one, sizeof one);
  }
}

void FuseRing::handle(Queue& queue, Entry& entry, bool alone) {
  RingHeader& header = entry.header;
  fuse_in_header in;
  std::memcpy(&in, header.in_out, sizeof in);
  entry.unique = in.unique;
  entry.commit_id = header.ent.commit_id;
  entry.replied = false;
  entry.request = nullptr;
  const std::size_t payload = header.ent.payload_sz;
  // The first argument went to op_in and the rest to the payload; the length in the
  // header counts all of them, which gives the first one's size.
  const bool well_formed = payload <= entry.payload_size && in.len >= sizeof in + payload &&
                           in.len - sizeof in - payload <= sizeof header.op_in;
  if (!well_formed) {
    log::error("FUSE over io_uring: malformed request (opcode %u, length %u, payload %zu)",
               in.opcode, in.len, payload);
    process(entry);  // answers EIO
    commit(queue, entry);
    return;
  }
  const std::size_t op_size = in.len - sizeof in - payload;
  entry.request = entry.payload - op_size - sizeof in;
  entry.request_size = in.len;
  std::memcpy(entry.request, &in, sizeof in);
  std::memcpy(entry.request + sizeof in, header.op_in, op_size);
  const bool hand_off = (may_block(in.opcode) && !alone) ||
                        transfer_size(in.opcode, header.op_in, op_size) >= kLargeTransfer;
  // What else takes long (a WRITE that writes a file out, a wait for a commit) says
  // so through long_work.h.
  if (may_block(in.opcode) && !hand_off) queue.set_idle_policy(false);
  if (hand_off) {
    ++queue.handed_out;
    {
      std::lock_guard lock(queue.mutex);
      queue.work.push_back(&entry);
    }
    queue.work_ready.notify_one();
    return;
  }
  // A READ served here is alone: its caller waits and, while the machine has CPUs to
  // spare, this one has nothing else to do, so the store polls for the disk's answer
  // instead of sleeping for it.
  std::optional<ReadPolling> polling;
  if (in.opcode == FUSE_READ && queue.cpus_to_spare) polling.emplace(kReadPollBudget);
  process(entry);
  commit(queue, entry);
}

void FuseRing::process(Entry& entry) {
  if (entry.request != nullptr) {
    fuse_buf buf{};
    buf.mem = entry.request;
    buf.size = entry.request_size;
    current_entry = &entry;
    note_request(entry.request, entry.request_size);
    fuse_session_process_buf(session_, &buf);
    current_entry = nullptr;
  }
  if (!entry.replied) {
    // No reply came on this thread: a malformed request, or one that takes no reply.
    // The kernel still waits for the entry to come back.
    fuse_out_header out{sizeof(fuse_out_header), -EIO, entry.unique};
    std::memcpy(entry.header.in_out, &out, sizeof out);
    entry.header.ent.payload_sz = 0;
  }
}

void FuseRing::commit(Queue& queue, Entry& entry) {
  send_command(queue, entry, kCmdCommitAndFetch);
}

void FuseRing::send_command(Queue& queue, Entry& entry, std::uint32_t cmd) {
  io_uring_sqe* sqe = next_sqe(queue.ring);
  prepare_command(sqe, fuse_session_fd(session_), cmd, queue.qid, entry.commit_id, &entry);
  // Registering hands over the entry's buffers; a commit reuses them.
  if (cmd == kCmdRegister) {
    sqe->addr = reinterpret_cast<std::uintptr_t>(entry.iov);
    sqe->len = 2;
  }
  entry.last_cmd = cmd;  // what to send again if the kernel answers EAGAIN
}

}  // namespace casfs
