#include "tools/cli.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <new>

#include "store/error.h"

namespace casfs::cli {

void print_error(std::string_view message) {
  // Keep the message on one line even if a lower layer put a newline in it.
  std::string line(message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cout.flush();  // keep stdout lines printed so far ahead of the error on a tty
  std::cerr << "casfs: " << line << '\n' << std::flush;
}

int run_action(const Action& action) {
  try {
    int code = action();
    std::cout.flush();
    if (!std::cout) throw CommandError("cannot write to standard output");
    return code;
  } catch (const StoreError& e) {
    print_error(e.what());
  } catch (const CommandError& e) {
    print_error(e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    print_error(e.what());
  } catch (const std::bad_alloc&) {
    print_error("out of memory");
  } catch (const std::exception& e) {
    print_error(e.what());
  } catch (...) {
    print_error("unexpected error");
  }
  return kExitFailure;
}

ObjectId parse_object_id(std::string_view text) {
  if (auto id = ObjectId::from_hex(text)) return *id;
  std::string shown(text.substr(0, 80));
  throw CommandError("not an object id (64 hex digits expected): '" + shown + "'");
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf,
                value < 10    ? "%.2f %s"
                : value < 100 ? "%.1f %s"
                              : "%.0f %s",
                value, kUnits[unit]);
  return buf;
}

void write_stdout(std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(STDOUT_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw CommandError(std::string("cannot write to standard output: ") + std::strerror(errno));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

bool stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

Progress::Progress(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled && stderr_is_terminal()) {}

Progress::~Progress() {
  clear();
}

void Progress::update(std::uint64_t done, std::uint64_t total) {
  if (!enabled_) return;
  std::lock_guard lock(mutex_);
  // Redraw at most ~10 times a second, but always show completion.
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  drawn_ = true;
  if (total > 0) {
    unsigned pct = static_cast<unsigned>(done >= total ? 100 : done * 100 / total);
    std::fprintf(stderr, "\r\033[K%s: %llu/%llu (%u%%)", label_.c_str(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                 pct);
  } else {
    std::fprintf(stderr, "\r\033[K%s: %llu", label_.c_str(), static_cast<unsigned long long>(done));
  }
  std::fflush(stderr);
}

ProgressFn Progress::callback() {
  return [this](std::uint64_t done, std::uint64_t total) { update(done, total); };
}

void Progress::clear() {
  std::lock_guard lock(mutex_);
  if (!drawn_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace casfs::cli
