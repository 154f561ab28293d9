// FUSE over io_uring (Linux 6.14 and later): the kernel hands requests to the daemon
// through one io_uring queue per CPU instead of read(2) on /dev/fuse, and the daemon
// serves each queue on a thread bound to that CPU. A request is then served on the
// CPU of the process that made it, and the round trip needs no wake-up of another
// CPU. On a 2-CPU virtual machine a getxattr round trip took 46 µs through /dev/fuse
// (123 µs when reader and caller sat on different CPUs) and 16 µs with both on one.
//
// libfuse 3.14 predates this transport, so it is attached through the session's I/O
// hooks (fuse_session_io.h) and leaves the handlers untouched: a request from a ring
// is laid out as read(2) on /dev/fuse would have delivered it and handed to
// fuse_session_process_buf; the reply, which libfuse writes through the writev hook
// on the same thread, is committed to the ring instead. /dev/fuse stays in use for
// what the kernel still sends there (FUSE_INIT, FORGET, INTERRUPT) and for
// notifications.
//
// The kernel offers the transport in FUSE_INIT only when its module parameter
// enable_uring is on; the ring starts once the kernel has taken the INIT reply that
// accepts it. Each queue thread serves its CPU's requests one at a time, except
// those that may wait on the disk or a commit (reads, fsync), which a few workers
// per queue serve in parallel and hand back to the queue's thread for the commit.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace casfs {

class FuseRing {
 public:
  // Whether the running kernel lets FUSE use io_uring: its module parameter
  // /sys/module/fuse/parameters/enable_uring is on.
  static bool kernel_allows();

  // For `session`, mounted and not yet served, whose I/O hooks (install_session_io)
  // pass libfuse's replies to write_reply and write_init_reply.
  explicit FuseRing(fuse_session* session);
  // Stops and joins the queue threads; call after the session's loop has ended.
  void stop();
  ~FuseRing();  // stop()
  FuseRing(const FuseRing&) = delete;
  FuseRing& operator=(const FuseRing&) = delete;

  // Called by the session's hooks with each reply libfuse writes: to the ring for a
  // request that came from it, else to /dev/fuse.
  ssize_t write_reply(int fd, struct iovec* iov, int count);
  // The INIT reply, given what the kernel offered in INIT (fuse_init_in's flags, and
  // flags2 shifted into the upper half): accepts the transport if it was offered, and
  // starts the queues once the kernel has taken the reply.
  ssize_t write_init_reply(int fd, struct iovec* iov, int count, std::uint64_t offered);

 private:
  struct Entry;
  struct Queue;
  // After the kernel took the INIT reply that accepted the transport.
  void start(std::size_t payload_size);
  void serve(Queue& queue);
  // A request has arrived on `queue`: served at once, or handed to the queue's workers
  // when it may block and other requests are waiting (`alone` is false).
  void handle(Queue& queue, Entry& entry, bool alone);
  void work(Queue& queue);
  // Runs the request's handler; its reply lands in the entry.
  void process(Entry& entry);
  // Queues the entry's commit (its reply) and the fetch of its next request.
  void commit(Queue& queue, Entry& entry);
  // Queues `cmd` (register or commit-and-fetch) for the entry, and remembers it.
  void send_command(Queue& queue, Entry& entry, std::uint32_t cmd);

  fuse_session* session_;
  std::atomic<bool> started_{false};
  std::mutex queues_mutex_;
  std::vector<std::unique_ptr<Queue>> queues_;
};

}  // namespace casfs
