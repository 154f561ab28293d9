// Messages from the store, the filesystem and the mount daemon: one line each, with a
// level, to one sink chosen once when the daemon starts. Commands that are not the
// daemon keep the default (stderr), so their messages stay where they always were.
//
// The sink and the level may change while threads log (the daemon picks its sink once
// the mount is live, after its threads have started), so both are atomics and a
// message is written with a single write(2) or syslog(3) call.
#pragma once

#include <cstdarg>
#include <optional>
#include <string_view>

namespace casfs::log {

// In order of importance; a message is written when its level is at most the
// threshold set with set_level.
enum class Level { kError, kWarning, kInfo, kDebug };

enum class Sink {
  kStderr,  // "casfs: [level: ]message", as commands print their errors
  kFile,    // stderr too (a log file put there by the daemon), each line timestamped
  kSyslog,  // syslog(3), ident "casfs", LOG_PID, facility LOG_DAEMON
};

// The default threshold is kInfo, or kDebug when CASFS_DEBUG is set and non-empty.
void set_level(Level level);
Level level();
bool enabled(Level level);

// Chooses where messages go from now on; kSyslog opens the syslog connection.
void set_sink(Sink sink);

// "error", "warning", "info" or "debug"; nothing for anything else.
std::optional<Level> parse_level(std::string_view name);

// printf-style; a trailing newline is neither needed nor wanted. Each checks the
// level before formatting anything.
void error(const char* format, ...) __attribute__((format(printf, 1, 2)));
void warning(const char* format, ...) __attribute__((format(printf, 1, 2)));
void info(const char* format, ...) __attribute__((format(printf, 1, 2)));
void debug(const char* format, ...) __attribute__((format(printf, 1, 2)));
// For messages from libraries that hand over a va_list (libfuse's log hook); trailing
// newlines are dropped.
void vwrite(Level level, const char* format, va_list args) __attribute__((format(printf, 2, 0)));

}  // namespace casfs::log
