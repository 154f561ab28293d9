// Pieces shared by the casfs subcommands: how a parsed command line becomes an
// action, how errors become exit codes, progress on a terminal, and output helpers.
//
// Each family of subcommands (store, mkfs, later mount and fsck) lives in its own
// file and registers itself on the CLI11 app; parsing only records which action to
// run, so every action runs after parsing, under one error handler in main.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "store/store.h"

namespace casfs::cli {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the operation failed or found problems
inline constexpr int kExitUsage = 2;    // the command line itself is wrong

// The action the parsed command line selected; returns the exit code.
using Action = std::function<int()>;

// A failure that is fully described by its one-line message (bad arguments that
// CLI11 cannot check, write errors on stdout, ...). Exits with kExitFailure.
class CommandError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Runs `action`, turning every exception into "casfs: <message>" on stderr and
// exit code 1, so no command ends in a stack trace or an abort.
int run_action(const Action& action);

// Prints "casfs: <message>" on stderr.
void print_error(std::string_view message);

// Parses a 64-digit hex object id; throws CommandError naming the argument.
ObjectId parse_object_id(std::string_view text);

// "1.5 MiB", "312 B": sizes for people.
std::string format_bytes(std::uint64_t bytes);

// Writes all of `bytes` to file descriptor 1, bypassing iostreams, so large objects
// go out in the pieces the store hands over. Throws CommandError on failure.
void write_stdout(std::span<const std::byte> bytes);

// True when stderr is a terminal: only then are progress lines worth drawing.
bool stderr_is_terminal();

// A self-overwriting progress line on stderr ("packing: 120/400 (30%)"), drawn only
// when stderr is a terminal and at most a few times a second, so scripts and logs
// get nothing but the final summary. The store may report from worker threads,
// hence the mutex.
class Progress {
 public:
  // `enabled` can only narrow the default: nothing is drawn unless stderr is a tty.
  explicit Progress(std::string label, bool enabled = true);
  ~Progress();  // clears the line if one was drawn
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(std::uint64_t done, std::uint64_t total);
  // A callback for the store's long operations; valid while this object lives.
  ProgressFn callback();
  // Removes the progress line so the summary starts on a clean line.
  void clear();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
  std::mutex mutex_;
};

}  // namespace casfs::cli
