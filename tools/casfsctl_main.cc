// casfsctl: talks to a running casfs mount daemon over its control socket. main only
// parses, maps usage errors to exit code 2 and runs the selected action under one
// error handler; the subcommands are in ctl_commands.cc.
#include <CLI/CLI.hpp>

#include "tools/ctl_commands.h"

#ifndef CASFS_VERSION
#define CASFS_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  CLI::App app{"casfsctl: status and maintenance of a mounted casfs filesystem", "casfsctl"};
  app.set_version_flag("--version", "casfsctl " CASFS_VERSION);
  app.require_subcommand(1);

  casfs::cli::Action action;
  casfs::cli::add_ctl_commands(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive as "errors" with exit code 0.
    if (e.get_exit_code() == 0) return app.exit(e);
    // CLI11 calls an unknown command "A subcommand is required": name the word instead.
    const auto extra = app.remaining();
    if (app.get_subcommands().empty() && !extra.empty()) {
      std::cerr << "casfsctl: unknown command '" << extra.front() << "' (see --help)\n";
    } else {
      std::cerr << "casfsctl: " << e.what() << " (see --help)\n";
    }
    return casfs::cli::kExitUsage;
  }
  if (!action) {
    std::cerr << "casfsctl: no command given (see --help)\n";
    return casfs::cli::kExitUsage;
  }
  return casfs::cli::run_ctl_action(action);
}
