// The mount daemon's control socket, STORE/run/control.sock, served by casfsctl's
// requests (fs/control_protocol.h says what they are; fs/control_requests.h does
// them). One thread accepts; each client gets a thread of its own, up to a bound.
//
// Only the daemon's own uid and root may talk to it: the socket is created mode 0600
// (bound under a temporary name, chmod'ed, then renamed into place, so it never
// exists under its real name with looser permissions), and every connection's
// SO_PEERCRED is checked as well. A socket left by a daemon that died is replaced at
// start (the store lock says no other daemon is alive), and ours is removed at exit.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fs/control_requests.h"
#include "store/unique_fd.h"

namespace casfs {

class ControlServer {
 public:
  // Listens at once. Throws StoreError with a one-line message when the socket
  // cannot be made.
  ControlServer(Store& store, Filesystem& fs, BackgroundPacker& packer,
                const std::string& mountpoint);
  // Stops jobs and connections, waits for their threads, removes the socket.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Starts stopping without waiting (the destructor waits).
  void request_stop();

  static std::filesystem::path socket_path(const std::filesystem::path& store_dir);

 private:
  struct Connection {
    UniqueFd fd;
    std::atomic<bool> finished{false};
    std::thread thread;
  };

  void accept_loop();
  void serve(Connection& connection);
  // Joins the threads of connections that have ended.
  void reap(bool all);

  ControlRequests requests_;
  const std::filesystem::path path_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // an eventfd, readable once stopping: wakes every poll
  std::atomic<bool> stopping_{false};
  std::mutex connections_mutex_;
  std::list<std::unique_ptr<Connection>> connections_;
  std::thread acceptor_;  // last: started once everything above exists
};

}  // namespace casfs
