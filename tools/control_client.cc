#include "tools/control_client.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

#include "fs/control_protocol.h"
#include "tools/cli.h"

namespace casfs::cli {

namespace {

namespace fs = std::filesystem;

// A reply line longer than this is not one the daemon would send.
constexpr std::size_t kMaxReplyLine = 256 << 20;

std::string no_mount(const std::string& shown) {
  return "no casfs mount at " + shown + " (is the daemon running?)";
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string_view digits = field.substr(i + 1, 3);
      if (digits.size() == 3 && digits.find_first_not_of("01234567") == std::string_view::npos) {
        out +=
            static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0'));
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

struct CasfsMount {
  fs::path mountpoint;
  fs::path store;
};

std::vector<CasfsMount> casfs_mounts() {
  std::vector<CasfsMount> mounts;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    std::istringstream fields(line);
    std::vector<std::string> before;
    std::string field;
    while (fields >> field && field != "-") before.push_back(field);
    std::string type, source;
    if (before.size() < 5 || !(fields >> type >> source)) continue;
    if (type != "fuse.casfs") continue;
    mounts.push_back({unescape(before[4]), unescape(source)});
  }
  return mounts;
}

// `path` made absolute, through symlinks where it can be; lexically where it cannot
// (a mount whose daemon died answers every look-up with an error).
fs::path absolute_path(const std::string& path) {
  std::error_code ec;
  fs::path canonical = fs::canonical(path, ec);
  if (!ec) return canonical;
  return fs::absolute(path).lexically_normal();
}

bool inside(const fs::path& path, const fs::path& dir) {
  auto p = path.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++p) {
    if (d->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *d) return false;
  }
  return true;
}

}  // namespace

ControlTarget resolve_target(const std::optional<std::string>& mnt) {
  ControlTarget target;
  fs::path path;
  if (mnt) {
    target.shown = *mnt;
    std::error_code ec;
    if (fs::exists(fs::path(*mnt) / "casfs.json", ec)) {
      target.store = absolute_path(*mnt);
      return target;
    }
    path = absolute_path(*mnt);
  } else {
    std::error_code ec;
    path = fs::current_path(ec);
    if (ec) throw CommandError("cannot tell the current directory: " + ec.message());
    target.shown = path.string();
  }
  std::size_t best = 0;
  for (const auto& m : casfs_mounts()) {
    const std::size_t depth =
        static_cast<std::size_t>(std::distance(m.mountpoint.begin(), m.mountpoint.end()));
    if (inside(path, m.mountpoint) && (target.store.empty() || depth >= best)) {
      target.store = m.store;
      best = depth;
    }
  }
  if (target.store.empty()) throw CommandError(no_mount(target.shown));
  return target;
}

ControlClient::ControlClient(const ControlTarget& target)
    : target_(target),
      socket_(target.store / "run" / kControlSocketName),
      fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
  if (!fd_) throw CommandError(std::string("cannot create a socket: ") + std::strerror(errno));
  UnixAddress address;
  if (!address.set(socket_)) throw CommandError(no_mount(target.shown));
  int rc;
  do {
    rc = ::connect(fd_.get(), address.get(), address.size);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return;
  const int error = errno;
  if (error == ENOENT || error == ECONNREFUSED || error == ENOTDIR)
    throw CommandError(no_mount(target.shown));
  if (error == EACCES || error == EPERM)
    throw CommandError("cannot connect to " + socket_.string() +
                       ": permission denied (only the daemon's user and root may control it)");
  throw CommandError("cannot connect to " + socket_.string() + ": " + std::strerror(error));
}

std::string ControlClient::read_line() {
  for (;;) {
    const std::size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > kMaxReplyLine)
      throw CommandError("garbled reply from the daemon at " + socket_.string() +
                         ": a line longer than any reply");
    char chunk[65536];
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw CommandError("cannot read from " + socket_.string() + ": " + std::strerror(errno));
    }
    if (n == 0)
      throw CommandError("the daemon at " + socket_.string() +
                         " closed the connection without answering");
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

ControlClient::Json ControlClient::call(const Json& request,
                                        const std::function<void(const Json&)>& progress) {
  const std::string line = request.dump() + "\n";
  // A daemon that refuses us says why and hangs up, perhaps before our request is
  // through: then its reason, if it gave one, is the error to show.
  std::string send_error;
  for (std::size_t sent = 0; sent < line.size();) {
    ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      send_error = "cannot send to " + socket_.string() + ": " + std::strerror(errno);
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  for (;;) {
    std::string text;
    try {
      text = read_line();
    } catch (const CommandError&) {
      if (!send_error.empty()) throw CommandError(send_error);
      throw;
    }
    Json reply;
    try {
      reply = Json::parse(text);
    } catch (const Json::exception&) {
    }
    auto garbled = [&] {
      return CommandError("garbled reply from the daemon at " + socket_.string() + ": '" +
                          text.substr(0, 80) + (text.size() > 80 ? "...'" : "'"));
    };
    if (!reply.is_object()) throw garbled();
    if (auto ok = reply.find("ok"); ok != reply.end()) {
      if (!ok->is_boolean()) throw garbled();
      if (ok->get<bool>()) return reply;
      auto error = reply.find("error");
      throw CommandError(error != reply.end() && error->is_string() ? error->get<std::string>()
                                                                    : "the daemon refused");
    }
    if (!reply.contains("progress")) throw garbled();
    if (progress) progress(reply);
  }
}

}  // namespace casfs::cli
