// casfs's hooks on libfuse's reading of requests from /dev/fuse and writing of replies
// to it (libfuse's "custom I/O"), installed on every session. They carry what libfuse
// 3.14 does not know about:
//
// - FUSE_HANDLE_KILLPRIV_V2 (Linux 5.11). With it the daemon, not the kernel, clears
//   set-user-ID and set-group-ID bits when a file is written, truncated or chowned,
//   and the kernel marks the filesystem SB_NOSEC. The kernel then asks whether a file
//   has a security.capability attribute once per inode instead of before every
//   write(2), and no longer fetches a file's attributes afresh before each chown to
//   work the bits out itself: extracting the Linux tree's kernel/ (562 files) took
//   6,310 requests instead of 8,022. libfuse neither accepts the flag in its INIT
//   reply nor passes on the bits the kernel sends with it (FUSE_WRITE_KILL_SUIDGID in
//   WRITE, FUSE_OPEN_KILL_SUIDGID in OPEN, FATTR_KILL_SUIDGID in SETATTR), so the
//   hooks read them from each request before libfuse decodes it, on the thread that
//   goes on to serve it.
// - FUSE over io_uring (fuse_ring.h), to which they hand the INIT reply (with what
//   the kernel offered in INIT) and every other reply, some of which go to its queues.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

#include <cstddef>

namespace casfs {

// Installs the hooks on `session`, whose userdata is the FuseContext; before the
// session is served.
void install_session_io(fuse_session* session);

// Called with each request as the kernel laid it out (fuse_in_header, then its
// arguments) by the thread that is about to serve it.
void note_request(const void* request, std::size_t size);

// Whether the request this thread serves asks the daemon to clear set-ID bits: a
// write, truncate or O_TRUNC open by a caller without CAP_FSETID.
bool request_drops_set_id();

}  // namespace casfs
