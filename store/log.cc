#include "store/log.h"

#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

namespace casfs::log {

namespace {

Level initial_level() {
  const char* debug = std::getenv("CASFS_DEBUG");
  return debug && *debug ? Level::kDebug : Level::kInfo;
}

std::atomic<Level> g_level{initial_level()};
std::atomic<Sink> g_sink{Sink::kStderr};

int syslog_priority(Level level) {
  switch (level) {
    case Level::kError:
      return LOG_ERR;
    case Level::kWarning:
      return LOG_WARNING;
    case Level::kInfo:
      return LOG_INFO;
    case Level::kDebug:
      return LOG_DEBUG;
  }
  return LOG_INFO;
}

// Errors and info read as they always have ("casfs: <message>"); the other two say
// what they are, since neither is something the user asked to see.
const char* stderr_tag(Level level) {
  switch (level) {
    case Level::kWarning:
      return "warning: ";
    case Level::kDebug:
      return "debug: ";
    default:
      return "";
  }
}

__attribute__((format(printf, 2, 0))) void emit(Level level, const char* format, va_list args) {
  char message[2048];
  const int n = std::vsnprintf(message, sizeof message, format, args);
  if (n < 0) return;
  std::size_t length = std::min<std::size_t>(static_cast<std::size_t>(n), sizeof message - 1);
  while (length > 0 && (message[length - 1] == '\n' || message[length - 1] == '\r')) --length;
  message[length] = '\0';

  const Sink sink = g_sink.load(std::memory_order_relaxed);
  if (sink == Sink::kSyslog) {
    ::syslog(syslog_priority(level), "%s", message);
    return;
  }
  std::string line;
  if (sink == Sink::kFile) {
    // A log file has no timestamps of its own, unlike the journal.
    char stamp[40];
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    tm local{};
    ::localtime_r(&now.tv_sec, &local);
    const std::size_t used = std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
    std::snprintf(stamp + used, sizeof stamp - used, ".%03ld ", now.tv_nsec / 1000000);
    line = stamp;
    line += "casfs[" + std::to_string(::getpid()) + "]: ";
  } else {
    line = "casfs: ";
  }
  line += stderr_tag(level);
  line.append(message, length);
  line += '\n';
  // One write, so lines from different threads never interleave.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

void set_level(Level level) {
  g_level.store(level, std::memory_order_relaxed);
}

Level level() {
  return g_level.load(std::memory_order_relaxed);
}

bool enabled(Level level) {
  return level <= g_level.load(std::memory_order_relaxed);
}

void set_sink(Sink sink) {
  if (sink == Sink::kSyslog) ::openlog("casfs", LOG_PID, LOG_DAEMON);
  g_sink.store(sink, std::memory_order_relaxed);
}

std::optional<Level> parse_level(std::string_view name) {
  if (name == "error") return Level::kError;
  if (name == "warning") return Level::kWarning;
  if (name == "info") return Level::kInfo;
  if (name == "debug") return Level::kDebug;
  return std::nullopt;
}

void vwrite(Level level, const char* format, va_list args) {
  if (enabled(level)) emit(level, format, args);
}

#define CASFS_LOG_FUNCTION(name, level_value) \
  void name(const char* format, ...) {        \
    if (!enabled(level_value)) return;        \
    va_list args;                             \
    va_start(args, format);                   \
    emit(level_value, format, args);          \
    va_end(args);                             \
  }
CASFS_LOG_FUNCTION(error, Level::kError)
CASFS_LOG_FUNCTION(warning, Level::kWarning)
CASFS_LOG_FUNCTION(info, Level::kInfo)
CASFS_LOG_FUNCTION(debug, Level::kDebug)
#undef CASFS_LOG_FUNCTION

}  // namespace casfs::log
