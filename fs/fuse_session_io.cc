#include "fs/fuse_session_io.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>

#include "fs/fuse_ops.h"
#include "fs/fuse_ring.h"
#include "store/log.h"

namespace casfs {

namespace {

// Set for each request by the thread that serves it: the one that read it from
// /dev/fuse, or the ring's thread that hands it to libfuse.
thread_local bool drops_set_id = false;

// The INIT request's id, while its reply is still to come, and what the kernel
// offered in it (fuse_init_in's flags, flags2 in the upper half). A daemon serves
// one session.
std::atomic<std::uint64_t> init_unique{0};
std::atomic<std::uint64_t> init_offered{0};

// Whether the request's argument (what follows its header) has `bit` in `field`.
template <typename Arg, typename Field>
bool argument_has(const void* request, std::size_t size, Field Arg::*field, std::uint32_t bit) {
  Arg arg;
  if (size < sizeof(fuse_in_header) + sizeof arg) return false;
  std::memcpy(&arg, static_cast<const std::byte*>(request) + sizeof(fuse_in_header), sizeof arg);
  return (arg.*field & bit) != 0;
}

FuseRing* ring_of(void* userdata) {
  return static_cast<FuseContext*>(userdata)->ring;
}

// Whether this is the reply to INIT (once: the id is forgotten on the way).
bool is_init_reply(const struct iovec* iov, int count) {
  fuse_out_header out;
  if (count < 2 || iov[0].iov_len < sizeof out) return false;
  std::memcpy(&out, iov[0].iov_base, sizeof out);
  const std::uint64_t unique = init_unique.load();
  if (unique == 0 || out.unique != unique || out.error != 0) return false;
  init_unique = 0;
  return true;
}

// Accepts FUSE_HANDLE_KILLPRIV_V2 in libfuse's INIT reply, in place, when the kernel
// offered it. Handlers apply the set-ID rules whether or not it was accepted: without
// it the kernel sends the resulting mode itself.
void accept_killpriv_v2(struct iovec* iov) {
  if ((init_offered & FUSE_HANDLE_KILLPRIV_V2) == 0 ||
      iov[1].iov_len < offsetof(fuse_init_out, flags) + sizeof(fuse_init_out::flags))
    return;
  std::uint32_t flags;
  auto* field = static_cast<std::byte*>(iov[1].iov_base) + offsetof(fuse_init_out, flags);
  std::memcpy(&flags, field, sizeof flags);
  flags |= FUSE_HANDLE_KILLPRIV_V2;
  std::memcpy(field, &flags, sizeof flags);
}

// The hooks are called from libfuse's C code, which no exception may cross. They are
// not noexcept all the same: libfuse ends its threads with pthread_cancel while they
// wait in read(2), and that unwinding must pass through (a noexcept frame aborts).
ssize_t read_hook(int fd, void* buf, size_t len, void*) {
  const ssize_t n = ::read(fd, buf, len);
  if (n > 0) note_request(buf, static_cast<std::size_t>(n));
  return n;
}

ssize_t writev_hook(int fd, struct iovec* iov, int count, void* userdata) {
  const bool init = is_init_reply(iov, count);
  if (init) accept_killpriv_v2(iov);
  FuseRing* ring = ring_of(userdata);
  if (ring == nullptr) return ::writev(fd, iov, count);
  try {
    return init ? ring->write_init_reply(fd, iov, count, init_offered)
                : ring->write_reply(fd, iov, count);
  } catch (const std::exception& e) {
    log::error("FUSE over io_uring: a reply failed: %s", e.what());
    errno = EIO;
    return -1;
  }
}

}  // namespace

void install_session_io(fuse_session* session) {
  static const fuse_custom_io hooks = {
      .writev = &writev_hook,
      .read = &read_hook,
      .splice_receive = nullptr,
      .splice_send = nullptr,
  };
  if (fuse_session_custom_io(session, &hooks, fuse_session_fd(session)) != 0)
    throw std::runtime_error("cannot attach casfs's I/O hooks to the FUSE session");
}

void note_request(const void* request, std::size_t size) {
  drops_set_id = false;
  fuse_in_header in;
  if (size < sizeof in) return;
  std::memcpy(&in, request, sizeof in);
  switch (in.opcode) {
    case FUSE_WRITE:
      drops_set_id =
          argument_has(request, size, &fuse_write_in::write_flags, FUSE_WRITE_KILL_SUIDGID);
      break;
    case FUSE_OPEN:
      drops_set_id = argument_has(request, size, &fuse_open_in::open_flags, FUSE_OPEN_KILL_SUIDGID);
      break;
    case FUSE_SETATTR:
      drops_set_id = argument_has(request, size, &fuse_setattr_in::valid, FATTR_KILL_SUIDGID);
      break;
    case FUSE_INIT: {
      fuse_init_in init;
      std::memset(&init, 0, sizeof init);
      std::memcpy(&init, static_cast<const std::byte*>(request) + sizeof in,
                  std::min(sizeof init, size - sizeof in));
      init_offered = init.flags | (static_cast<std::uint64_t>(init.flags2) << 32);
      init_unique = in.unique;
      break;
    }
    default:
      break;
  }
}

bool request_drops_set_id() {
  return drops_set_id;
}

}  // namespace casfs
