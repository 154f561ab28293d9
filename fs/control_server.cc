#include "fs/control_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string_view>
#include <vector>

#include "fs/control_protocol.h"
#include "store/error.h"

namespace casfs {

namespace {

// Clients served at once; more are told to try again.
constexpr std::size_t kMaxConnections = 16;
// A client that stops reading must not hold a thread (and unmount) for ever.
constexpr int kSendTimeoutSeconds = 30;

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool send_line(int fd, const nlohmann::ordered_json& reply) {
  // Replacing bad UTF-8 rather than throwing: an error message may quote garbage.
  std::string line =
      reply.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  return write_all(fd, line);
}

// Waits until `fd` is readable or `stop_fd` says stop; false for stop or an error.
bool wait_readable(int fd, int stop_fd) {
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (fds[1].revents != 0) return false;
    if (fds[0].revents != 0) return true;
  }
}

}  // namespace

std::filesystem::path ControlServer::socket_path(const std::filesystem::path& store_dir) {
  return store_dir / "run" / kControlSocketName;
}

ControlServer::ControlServer(Store& store, Filesystem& fs, BackgroundPacker& packer,
                             const std::string& mountpoint)
    : requests_(store, fs, packer, mountpoint),
      path_(std::filesystem::absolute(socket_path(store.dir()))),
      listen_fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)),
      stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  const std::string where = "control socket " + path_.string();
  if (!listen_fd_ || !stop_fd_) throw_errno("cannot create the " + where);
  std::error_code ec;
  std::filesystem::create_directories(path_.parent_path(), ec);
  // Whatever is there is a dead daemon's: the store lock we hold says so.
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT)
    throw_errno("cannot remove a stale " + where);

  const std::filesystem::path temp =
      path_.parent_path() / (std::string(kControlSocketName) + "." + std::to_string(::getpid()));
  ::unlink(temp.c_str());
  UnixAddress address;
  if (!address.set(temp))
    throw StoreError(ENAMETOOLONG, "the path of the " + where + " is too long");
  if (::bind(listen_fd_.get(), address.get(), address.size) != 0)
    throw_errno("cannot bind the " + where);
  if (::chmod(temp.c_str(), 0600) != 0 || ::listen(listen_fd_.get(), 16) != 0 ||
      ::rename(temp.c_str(), path_.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temp.c_str());
    throw_errno(saved, "cannot set up the " + where);
  }
  acceptor_ = std::thread([this] { accept_loop(); });
}

ControlServer::~ControlServer() {
  request_stop();
  acceptor_.join();
  reap(/*all=*/true);
  ::unlink(path_.c_str());
}

void ControlServer::request_stop() {
  if (stopping_.exchange(true)) return;
  requests_.request_stop();
  const std::uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof one);
}

void ControlServer::accept_loop() {
  while (wait_readable(listen_fd_.get(), stop_fd_.get())) {
    reap(/*all=*/false);
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      // Out of descriptors: wait a little rather than spin on the pending client.
      if (errno == EMFILE || errno == ENFILE) ::usleep(100'000);
      continue;
    }
    timeval timeout{kSendTimeoutSeconds, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    ucred peer{};
    socklen_t size = sizeof peer;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 ||
        (peer.uid != 0 && peer.uid != ::geteuid())) {
      const std::string who =
          ::geteuid() == 0 ? "root" : "uid " + std::to_string(::geteuid()) + " and root";
      send_line(fd.get(), ControlRequests::error_reply("permission denied: only " + who +
                                                       " may control this mount"));
      continue;
    }
    std::lock_guard lock(connections_mutex_);
    if (connections_.size() >= kMaxConnections) {
      send_line(fd.get(), ControlRequests::error_reply("too many clients; try again"));
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->fd = std::move(fd);
    Connection& ref = *connection;
    connections_.push_back(std::move(connection));
    // Assigned under the lock, so reap() never sees a connection without its thread.
    ref.thread = std::thread([this, &ref] {
      serve(ref);
      ref.fd.reset();  // the client sees the end now, not when the thread is reaped
      ref.finished = true;
    });
  }
}

void ControlServer::serve(Connection& connection) {
  const int fd = connection.fd.get();
  auto send = [fd](const nlohmann::ordered_json& reply) { return send_line(fd, reply); };
  std::string buffer;
  char chunk[4096];
  bool eof = false;
  while (!stopping_) {
    std::size_t newline = buffer.find('\n');
    if (newline == std::string::npos && eof) {
      if (buffer.find_first_not_of(" \t\r") == std::string::npos) return;
      newline = buffer.size();  // a last request without its newline
      buffer += '\n';
    }
    if (newline != std::string::npos) {
      std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      requests_.handle(line, send);
      continue;
    }
    if (buffer.size() > kMaxRequestLine) {
      send(ControlRequests::error_reply("request line too long (at most " +
                                        std::to_string(kMaxRequestLine) + " bytes)"));
      return;
    }
    if (!wait_readable(fd, stop_fd_.get())) return;
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (n == 0) {
      eof = true;
      continue;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

void ControlServer::reap(bool all) {
  std::vector<std::thread> threads;
  std::vector<std::unique_ptr<Connection>> gone;
  {
    std::lock_guard lock(connections_mutex_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (all || (*it)->finished) {
        threads.push_back(std::move((*it)->thread));
        gone.push_back(std::move(*it));
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Joined before their connections (and fds) go away.
  for (auto& t : threads) t.join();
}

}  // namespace casfs
