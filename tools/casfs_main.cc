// casfs: the command-line entry point. Each subcommand family registers itself from
// its own file; main only parses, maps usage errors to exit code 2 and runs the
// selected action under one error handler.
#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "tools/fsck_command.h"
#include "tools/mkfs_command.h"
#include "tools/mount_command.h"
#include "tools/store_commands.h"

#ifndef CASFS_VERSION
#define CASFS_VERSION "unknown"
#endif

namespace {

// CLI11 reports an unknown subcommand as "A subcommand is required"; name the word
// it could not place instead, which is what the user needs to see.
std::string usage_message(CLI::App& app, const CLI::ParseError& error) {
  CLI::App* deepest = &app;
  while (!deepest->get_subcommands().empty()) deepest = deepest->get_subcommands().front();
  std::vector<std::string> extra = deepest->remaining();
  if (!extra.empty() && deepest->get_require_subcommand_min() > 0) {
    std::string where = deepest == &app ? "casfs" : "casfs " + deepest->get_name();
    return "unknown command '" + extra.front() + "' for " + where;
  }
  return error.what();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"casfs: a deduplicating, content-addressed filesystem", "casfs"};
  app.set_version_flag("--version", "casfs " CASFS_VERSION);
  app.require_subcommand(1);

  casfs::cli::Action action;
  casfs::cli::add_store_commands(app, action);
  casfs::cli::add_mkfs_command(app, action);
  casfs::cli::add_mount_command(app, action);
  casfs::cli::add_fsck_command(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive as "errors" with exit code 0.
    if (e.get_exit_code() == 0) return app.exit(e);
    casfs::cli::print_error(usage_message(app, e) + " (see --help)");
    return casfs::cli::kExitUsage;
  }
  if (!action) {  // cannot happen with require_subcommand, but never run an empty action
    casfs::cli::print_error("no command given (see --help)");
    return casfs::cli::kExitUsage;
  }
  return casfs::cli::run_action(action);
}
