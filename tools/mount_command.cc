#include "tools/mount_command.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fs/control_server.h"
#include "fs/filesystem.h"
#include "fs/fuse_mount.h"
#include "store/background_packer.h"
#include "store/log.h"
#include "store/store.h"

namespace casfs::cli {

namespace {

struct MountRequest {
  std::string store;
  std::string mountpoint;
  bool foreground = false;
  std::vector<std::string> options;  // as given to -o, possibly comma-separated
};

// What the -o options say, split into casfs's own and those passed to FUSE.
struct MountSettings {
  FsOptions fs;
  FuseContext fuse;
  std::vector<std::string> fuse_options;
  std::string logfile;
  std::optional<log::Level> loglevel;
  PackerOptions packer;
  OpenOptions store{.cache_bytes = 64ull << 20, .append_small_batches = true};
};

double parse_seconds(const std::string& key, const std::string& value) {
  try {
    std::size_t used = 0;
    double seconds = std::stod(value, &used);
    if (used == value.size() && seconds >= 0 && seconds <= 86400) return seconds;
  } catch (const std::exception&) {
  }
  throw CommandError("-o " + key + "=" + value + ": expected a number of seconds (0 to 86400)");
}

// A count or a size: digits, optionally followed by K, M, G or T (powers of 1024).
std::uint64_t parse_count(const std::string& key, const std::string& value, bool size) {
  std::size_t used = 0;
  unsigned long long n = 0;
  try {
    if (!value.empty() && value[0] != '-') n = std::stoull(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  int shift = 0;
  if (size && used > 0 && used + 1 == value.size()) {
    const std::string units = "KMGT";
    const std::size_t unit = units.find(static_cast<char>(std::toupper(value[used])));
    if (unit != std::string::npos) {
      shift = 10 * static_cast<int>(unit + 1);
      ++used;
    }
  }
  if (used == 0 || used != value.size() || n == 0 || n > (~0ull >> shift))
    throw CommandError("-o " + key + "=" + value + ": expected a positive " +
                       (size ? "number of bytes (K, M, G or T may follow)" : "whole number"));
  return static_cast<std::uint64_t>(n) << shift;
}

MountSettings parse_options(const MountRequest& request) {
  MountSettings s;
  bool has_default_permissions = false;
  for (const auto& group : request.options) {
    std::size_t start = 0;
    while (start <= group.size()) {
      std::size_t comma = group.find(',', start);
      if (comma == std::string::npos) comma = group.size();
      std::string option = group.substr(start, comma - start);
      start = comma + 1;
      if (option.empty()) continue;
      const std::size_t eq = option.find('=');
      const std::string key = option.substr(0, eq);
      const std::string value = eq == std::string::npos ? "" : option.substr(eq + 1);
      if (key == "commit_interval") {
        s.fs.commit_interval = std::chrono::milliseconds(
            std::max<long long>(1, static_cast<long long>(parse_seconds(key, value) * 1000)));
      } else if (key == "attr_timeout") {
        s.fuse.attr_timeout = parse_seconds(key, value);
      } else if (key == "entry_timeout") {
        s.fuse.entry_timeout = parse_seconds(key, value);
      } else if (key == "pack_loose_objects") {
        s.packer.loose_objects = parse_count(key, value, /*size=*/false);
      } else if (key == "pack_loose_bytes") {
        s.packer.loose_bytes = parse_count(key, value, /*size=*/true);
      } else if (key == "pack_age") {
        s.packer.age = std::chrono::milliseconds(
            std::max<long long>(1, static_cast<long long>(parse_seconds(key, value) * 1000)));
      } else if (key == "uring") {
        if (!FuseRing::kernel_allows())
          throw CommandError(
              "-o uring: this kernel does not let FUSE use io_uring (it needs Linux 6.14 or "
              "later with /sys/module/fuse/parameters/enable_uring set to Y)");
        s.fuse.uring = true;
      } else if (key == "readahead") {
        // 0 leaves the kernel's window; more than 1 GiB only pins page cache.
        s.fuse.readahead = value == "0" ? 0 : parse_count(key, value, /*size=*/true);
        if (s.fuse.readahead > (std::uint64_t{1} << 30) || (s.fuse.readahead & 1023) != 0)
          throw CommandError("-o readahead=" + value +
                             ": expected a whole number of KiB up to 1G, or 0 for the "
                             "kernel's default");
      } else if (key == "cache") {
        // 0 turns the cache off; it lives in the daemon's memory, so keep it modest.
        s.store.cache_bytes = value == "0" ? 0 : parse_count(key, value, /*size=*/true);
        if (s.store.cache_bytes > (std::uint64_t{16} << 30))
          throw CommandError("-o cache=" + value + ": expected at most 16G, or 0 for none");
      } else if (key == "intake") {
        // 0: every new object a loose file, as before intake packs.
        s.store.intake_min_objects = value == "0" ? 0 : parse_count(key, value, /*size=*/false);
      } else if (key == "nopacker") {
        s.packer.enabled = false;
      } else if (key == "logfile") {
        if (value.empty()) throw CommandError("-o logfile= needs a path");
        s.logfile = std::filesystem::absolute(value).string();
      } else if (key == "loglevel") {
        s.loglevel = log::parse_level(value);
        if (!s.loglevel)
          throw CommandError("-o loglevel=" + value + ": expected error, warning, info or debug");
      } else if (key == "rw" || key == "defaults") {
        // mount(8) passes these along; they ask for nothing beyond the default.
      } else {
        if (key == "default_permissions") has_default_permissions = true;
        // libfuse logs each request at debug level: asking for that means asking to see it.
        if (key == "debug" && !s.loglevel) s.loglevel = log::Level::kDebug;
        s.fuse_options.push_back(option);
      }
    }
  }
  // The kernel checks permissions against the modes casfs stores; the daemon runs
  // as root and must not be a way around them.
  if (!has_default_permissions) s.fuse_options.push_back("default_permissions");
  s.fuse_options.push_back("fsname=" + std::filesystem::absolute(request.store).string());
  s.fuse_options.push_back("subtype=casfs");
  return s;
}

// Serves until unmounted. `ready` is called once the mount is live.
int serve(const MountRequest& request, const MountSettings& settings,
          const std::function<void()>& ready) {
  // File data passes through the daemon in buffers of up to a few MiB, allocated
  // and freed on many threads. Left to itself glibc gives each thread an arena and
  // raises the mmap threshold as buffers are freed, so freed buffers pile up in
  // arenas: the daemon's resident size grew past 900 MiB copying one large file.
  // A fixed threshold returns large buffers to the system at once.
  ::mallopt(M_ARENA_MAX, 2);
  ::mallopt(M_MMAP_THRESHOLD, 256 << 10);
  std::unique_ptr<Store> store;
  try {
    store = Store::open(request.store, settings.store);
  } catch (const StoreError& e) {
    if (e.code() == EBUSY)
      throw CommandError("cannot mount " + request.store + ": it is already mounted or in use (" +
                         e.what() + ")");
    throw;
  }
  FsOptions fs_options = settings.fs;
  fs_options.stamp_writes = !settings.fuse.writeback_cache;
  Filesystem fs(*store, fs_options);
  FuseContext context = settings.fuse;
  context.fs = &fs;
  FuseMount mount(context, request.mountpoint, settings.fuse_options);
  // Started once the mount exists, and before `casfs mount` returns, so casfsctl
  // works as soon as it has; stopped (in reverse order) before the filesystem goes.
  BackgroundPacker packer(*store, settings.packer);
  ControlServer control(*store, fs, packer,
                        std::filesystem::absolute(request.mountpoint).lexically_normal().string());
  ready();
  log::info("serving %s on %s", request.store.c_str(), request.mountpoint.c_str());
  const int rc = mount.run();
  log::info("%s unmounted; writing out and closing the store", request.mountpoint.c_str());
  // Both stop at their next batch. Ask both before waiting for either: a control job
  // may be waiting for the store's maintenance lock while the packer holds it.
  packer.request_stop();
  control.request_stop();
  return rc;
}

void check_mountpoint(const std::string& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    throw CommandError("mountpoint " + path + " does not exist (create it with mkdir)");
  if (!std::filesystem::is_directory(status))
    throw CommandError("mountpoint " + path + " is not a directory");
}

// Points stdin and stdout at /dev/null and stderr at the log file (or /dev/null),
// so that the daemon holds nothing of the terminal or of the caller's pipes.
void detach_stdio(const std::string& logfile) {
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int log_fd = logfile.empty()
                   ? -1
                   : ::open(logfile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (null_fd >= 0) {
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(log_fd >= 0 ? log_fd : null_fd, STDERR_FILENO);
    ::close(null_fd);
  }
  if (log_fd >= 0) ::close(log_fd);
}

// libfuse's own messages go where casfs's go, at the matching level.
void log_fuse_message(fuse_log_level level, const char* format, va_list args) {
  log::Level ours = level <= FUSE_LOG_ERR       ? log::Level::kError
                    : level == FUSE_LOG_WARNING ? log::Level::kWarning
                    : level == FUSE_LOG_DEBUG   ? log::Level::kDebug
                                                : log::Level::kInfo;
  log::vwrite(ours, format, args);
}

int mount_command(const MountRequest& request) {
  check_mountpoint(request.mountpoint);
  MountSettings settings = parse_options(request);
  if (settings.loglevel) log::set_level(*settings.loglevel);
  fuse_set_log_func(log_fuse_message);
  if (request.foreground) return serve(request, settings, [] {});

  // The daemon is forked before anything starts threads. It reports over a pipe
  // whether the mount came up, so that this process exits 0 only for a live mount
  // and otherwise prints the daemon's one-line error.
  int status[2];
  if (::pipe2(status, O_CLOEXEC) != 0) throw CommandError("cannot create a pipe");
  const pid_t pid = ::fork();
  if (pid < 0) throw CommandError("cannot fork the mount daemon");
  if (pid > 0) {
    ::close(status[1]);
    std::string message;
    char buf[512];
    ssize_t n;
    while ((n = ::read(status[0], buf, sizeof buf)) > 0)
      message.append(buf, static_cast<std::size_t>(n));
    ::close(status[0]);
    if (message == "ok") return kExitOk;
    ::waitpid(pid, nullptr, 0);
    throw CommandError(message.empty() ? "the mount daemon stopped before the mount was ready"
                                       : message);
  }
  ::close(status[0]);
  ::setsid();
  int rc;
  try {
    rc = serve(request, settings, [&] {
      detach_stdio(settings.logfile);
      log::set_sink(settings.logfile.empty() ? log::Sink::kSyslog : log::Sink::kFile);
      if (::chdir("/") != 0) {
        // Nothing depends on the working directory; it is only left so as not to pin it.
      }
      const char ok[] = "ok";
      (void)!::write(status[1], ok, 2);
      ::close(status[1]);
      status[1] = -1;
    });
  } catch (const std::exception& e) {
    if (status[1] >= 0) {
      std::string message = e.what();
      (void)!::write(status[1], message.data(), message.size());
    } else {
      log::error("%s", e.what());
    }
    std::_Exit(kExitFailure);
  }
  std::exit(rc);
}

}  // namespace

void add_mount_command(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("mount", "Mount a store as a filesystem");
  auto request = std::make_shared<MountRequest>();
  cmd->add_option("STORE", request->store, "The store (made by casfs mkfs)")->required();
  cmd->add_option("MNT", request->mountpoint, "An existing directory to mount on")->required();
  cmd->add_flag("-f,--foreground", request->foreground, "Stay in the foreground, log to stderr");
  cmd->add_option("-o", request->options,
                  "Mount options, comma-separated: FUSE's (allow_other, ro, ...) and casfs's "
                  "(commit_interval=SECONDS, attr_timeout=SECONDS, entry_timeout=SECONDS, "
                  "logfile=PATH, loglevel=error|warning|info|debug, pack_loose_objects=N, "
                  "pack_loose_bytes=BYTES, "
                  "pack_age=SECONDS, nopacker, intake=N, readahead=BYTES, cache=BYTES, uring)")
      ->take_all()
      ->allow_extra_args(false);
  cmd->callback([&action, request] { action = [request] { return mount_command(*request); }; });
}

}  // namespace casfs::cli
